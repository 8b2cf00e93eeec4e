#include "data/canvas.h"

#include <cairo-svg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/decode.h"
#include "util/error.h"
#include "util/file.h"
#include "util/strutil.h"

usi_error *usi_cairo_png_write(cairo_surface_t *s, const char *path)
{
    int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
    int stride = cairo_image_surface_get_stride(s);
    const uint8_t *data = cairo_image_surface_get_data(s);
    if (!data || cairo_image_surface_get_format(s) != CAIRO_FORMAT_RGB24)
        return usi_error_new(USI_ERR_INTERNAL, "%s: not an RGB24 image surface", path);
    uint8_t *rgb = malloc((size_t)w * (size_t)h * 3);
    if (!rgb) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    /* RGB24 keeps each pixel in a native-endian uint32 as 0x00RRGGBB */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint32_t p;
            memcpy(&p, data + (size_t)y * (size_t)stride + (size_t)x * 4, 4);
            uint8_t *o = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
            o[0] = (uint8_t)(p >> 16);
            o[1] = (uint8_t)(p >> 8);
            o[2] = (uint8_t)p;
        }
    usi_image im = {sizeof(usi_image), w, h, 3, w * 3, rgb};
    usi_error *e = usi_png_write(path, &im);
    free(rgb);
    return e;
}

void usi_canvas_rgb(cairo_t *cr, uint32_t rgb)
{
    cairo_set_source_rgb(cr, ((rgb >> 16) & 255) / 255.0, ((rgb >> 8) & 255) / 255.0, (rgb & 255) / 255.0);
}

void usi_canvas_text(cairo_t *cr, double x, double y, const char *s, double ax, double ay)
{
    cairo_text_extents_t te;
    cairo_text_extents(cr, s, &te);
    cairo_move_to(cr, x - te.width * ax - te.x_bearing, y - te.height * ay - te.y_bearing);
    cairo_show_text(cr, s);
}

usi_canvas_axis usi_canvas_nice_axis(double lo, double hi, int want, double min_step)
{
    if (!(hi > lo)) {
        double pad = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1.0;
        lo -= pad;
        hi += pad;
    }
    double raw = (hi - lo) / want, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    if (step < min_step) step = min_step;
    return (usi_canvas_axis){floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step, step};
}

static usi_error *draw_checked(cairo_t *cr, usi_canvas_draw_fn draw, const void *ctx)
{
    usi_error *e = draw(cr, ctx);
    cairo_status_t st = cairo_status(cr);
    if (!e && st) e = usi_error_new(USI_ERR_INTERNAL, "drawing: %s", cairo_status_to_string(st));
    return e;
}

static usi_error *write_png(const char *path, int w, int h, usi_canvas_draw_fn draw, const void *ctx)
{
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    cairo_t *cr = cairo_create(s);
    usi_error *e = draw_checked(cr, draw, ctx);
    cairo_destroy(cr);
    cairo_surface_flush(s);
    if (!e) e = usi_cairo_png_write(s, path);
    cairo_surface_destroy(s);
    return e;
}

static cairo_status_t to_strbuf(void *closure, const unsigned char *data, unsigned int len)
{
    usi_strbuf *b = closure;
    size_t before = b->len;
    usi_strbuf_addf(b, "%.*s", (int)len, (const char *)data);
    return b->len == before + len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

static void add_xml_text(usi_strbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': usi_strbuf_addf(b, "&amp;"); break;
        case '<': usi_strbuf_addf(b, "&lt;"); break;
        case '>': usi_strbuf_addf(b, "&gt;"); break;
        default: usi_strbuf_addf(b, "%c", *s);
        }
    }
}

/* The SVG with <title> and <desc> as the first children of <svg>, where the
 * SVG specification wants them. */
static usi_error *with_text(const usi_strbuf *svg, const char *title, const char *desc, usi_strbuf *out)
{
    const char *open = svg->data ? strstr(svg->data, "<svg") : NULL, *end = open ? strchr(open, '>') : NULL;
    if (!end) return usi_error_new(USI_ERR_INTERNAL, "cairo wrote no <svg> element");
    usi_strbuf_addf(out, "%.*s\n", (int)(end + 1 - svg->data), svg->data);
    if (title) {
        usi_strbuf_addf(out, "<title>");
        add_xml_text(out, title);
        usi_strbuf_addf(out, "</title>\n");
    }
    if (desc) {
        usi_strbuf_addf(out, "<desc>");
        add_xml_text(out, desc);
        usi_strbuf_addf(out, "</desc>\n");
    }
    usi_strbuf_addf(out, "%s", end + 1 + (end[1] == '\n'));
    return out->data ? NULL : usi_error_new(USI_ERR_NOMEM, "out of memory");
}

static usi_error *write_svg(const char *path, int w, int h, usi_canvas_draw_fn draw, const void *ctx,
                            const char *title, const char *desc)
{
    usi_strbuf svg = {0}, out = {0};
    cairo_surface_t *s = cairo_svg_surface_create_for_stream(to_strbuf, &svg, w, h);
    cairo_t *cr = cairo_create(s);
    usi_error *e = draw_checked(cr, draw, ctx);
    cairo_destroy(cr);
    cairo_surface_finish(s);
    cairo_status_t st = cairo_surface_status(s);
    cairo_surface_destroy(s);
    if (!e && st) e = usi_error_new(USI_ERR_IO, "cannot write %s: %s", path, cairo_status_to_string(st));
    if (!e) e = with_text(&svg, title, desc, &out);
    if (!e) e = usi_file_write_atomic(path, out.data, out.len);
    usi_strbuf_free(&svg);
    usi_strbuf_free(&out);
    return e;
}

usi_error *usi_canvas_write(const char *path, int w, int h, usi_canvas_draw_fn draw, const void *ctx,
                            const char *svg_title, const char *svg_desc)
{
    if (usi_ends_with(path, ".svg") || usi_ends_with(path, ".SVG"))
        return write_svg(path, w, h, draw, ctx, svg_title, svg_desc);
    return write_png(path, w, h, draw, ctx);
}
