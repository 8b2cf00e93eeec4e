/* usi_plot_metrics: the curves of plot_internal.h drawn with cairo. One
 * routine draws on a cairo context; the PNG comes from an image surface
 * (usi_cairo_png_write) and the SVG from an SVG surface. */
#include "train/plot.h"

#include <cairo-svg.h>
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/canvas.h"
#include "train/plot_internal.h"
#include "util/error.h"

enum { W = USI_PLOT_WIDTH, H = USI_PLOT_HEIGHT, PANEL_W = W / 2 };
/* Room around each plot area: tick labels left (and right, for the lr axis
 * of the loss panel), the title above, tick labels and the axis name below. */
enum { MARGIN_L = 62, MARGIN_R = 20, MARGIN_R_LR = 66, MARGIN_T = 34, MARGIN_B = 44 };
#define FONT "sans-serif"

static void set_rgb(cairo_t *cr, uint32_t rgb)
{
    cairo_set_source_rgb(cr, ((rgb >> 16) & 255) / 255.0, ((rgb >> 8) & 255) / 255.0, (rgb & 255) / 255.0);
}

/* ---- axes ---- */

typedef struct axis {
    double lo, hi, step; /* a range widened to whole ticks of `step` */
} axis;

/* Ticks at 1, 2 or 5 times a power of ten, about `want` of them, at least
 * min_step apart (1 for counts such as epochs; 0 for none). */
static axis nice_axis(double lo, double hi, int want, double min_step)
{
    if (!(hi > lo)) {
        double pad = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1.0;
        lo -= pad;
        hi += pad;
    }
    double raw = (hi - lo) / want, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    if (step < min_step) step = min_step;
    return (axis){floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step, step};
}

typedef struct frame {
    double x0, y0, x1, y1; /* plot area, pixels */
    axis x, y;
} frame;

static double px_x(const frame *f, double v) { return f->x0 + (v - f->x.lo) / (f->x.hi - f->x.lo) * (f->x1 - f->x0); }
static double px_y(const frame *f, const axis *a, double v)
{
    return f->y1 - (v - a->lo) / (a->hi - a->lo) * (f->y1 - f->y0);
}

/* "%g" of a tick, with -0 and rounding noise (0.30000000000000004) gone. */
static void tick_label(char *buf, size_t n, double v, double step)
{
    if (fabs(v) < step * 1e-6) v = 0;
    snprintf(buf, n, "%.4g", v);
}

static void text_at(cairo_t *cr, double x, double y, const char *s, double ax, double ay)
{
    cairo_text_extents_t te;
    cairo_text_extents(cr, s, &te);
    cairo_move_to(cr, x - te.width * ax - te.x_bearing, y - te.height * ay - te.y_bearing);
    cairo_show_text(cr, s);
}

/* Frame, grid, ticks and labels of one panel; the y axis at the left. */
static void draw_axes(cairo_t *cr, const frame *f, const char *title, const char *xname)
{
    cairo_set_line_width(cr, 1.0);
    set_rgb(cr, 0xe6e6e6u);
    for (double v = f->y.lo; v <= f->y.hi + f->y.step * 0.5; v += f->y.step) {
        double y = round(px_y(f, &f->y, v)) + 0.5;
        cairo_move_to(cr, f->x0, y);
        cairo_line_to(cr, f->x1, y);
    }
    cairo_stroke(cr);
    set_rgb(cr, 0x000000u);
    cairo_rectangle(cr, round(f->x0) + 0.5, round(f->y0) + 0.5, round(f->x1 - f->x0), round(f->y1 - f->y0));
    cairo_stroke(cr);
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 11);
    char buf[32];
    for (double v = f->y.lo; v <= f->y.hi + f->y.step * 0.5; v += f->y.step) {
        tick_label(buf, sizeof buf, v, f->y.step);
        text_at(cr, f->x0 - 6, px_y(f, &f->y, v), buf, 1.0, 0.5);
    }
    for (double v = f->x.lo; v <= f->x.hi + f->x.step * 0.5; v += f->x.step) {
        tick_label(buf, sizeof buf, v, f->x.step);
        double x = px_x(f, v);
        cairo_move_to(cr, x, f->y1);
        cairo_line_to(cr, x, f->y1 + 4);
        cairo_stroke(cr);
        text_at(cr, x, f->y1 + 8, buf, 0.5, 0.0);
    }
    cairo_set_font_size(cr, 12);
    text_at(cr, (f->x0 + f->x1) / 2, f->y1 + 26, xname, 0.5, 0.0);
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 14);
    text_at(cr, (f->x0 + f->x1) / 2, f->y0 - 10, title, 0.5, 1.0);
}

/* ---- curves ---- */

typedef struct style {
    uint32_t rgb;
    double width;
    int dashed, markers;
} style;

static void polyline(cairo_t *cr, const frame *f, const axis *ya, const double *x, const double *y, size_t n,
                     style st)
{
    cairo_save(cr);
    cairo_rectangle(cr, f->x0, f->y0, f->x1 - f->x0, f->y1 - f->y0);
    cairo_clip(cr);
    set_rgb(cr, st.rgb);
    cairo_set_line_width(cr, st.width);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    double dash[] = {6, 4};
    cairo_set_dash(cr, dash, st.dashed ? 2 : 0, 0);
    for (size_t i = 0; i < n; i++) {
        if (i) cairo_line_to(cr, px_x(f, x[i]), px_y(f, ya, y[i]));
        else cairo_move_to(cr, px_x(f, x[i]), px_y(f, ya, y[i]));
    }
    if (n > 1) cairo_stroke(cr);
    cairo_new_path(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_reset_clip(cr);
    /* markers show each evaluation, and a run of one epoch as a point; they
     * may stand over the frame where a value sits on it */
    for (size_t i = 0; st.markers && i < n; i++) {
        cairo_arc(cr, px_x(f, x[i]), px_y(f, ya, y[i]), 3.5, 0, 2 * M_PI);
        cairo_fill(cr);
    }
    cairo_restore(cr);
}

typedef struct legend_row {
    const char *label;
    style st;
} legend_row;

static void legend(cairo_t *cr, const frame *f, const legend_row *rows, int n)
{
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 11);
    double wmax = 0;
    for (int i = 0; i < n; i++) {
        cairo_text_extents_t te;
        cairo_text_extents(cr, rows[i].label, &te);
        wmax = te.x_advance > wmax ? te.x_advance : wmax;
    }
    double bw = wmax + 40, bh = 16.0 * n + 6, bx = f->x1 - bw - 6, by = f->y0 + 6;
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_rectangle(cr, bx, by, bw, bh);
    cairo_fill(cr);
    for (int i = 0; i < n; i++) {
        double y = by + 11 + 16.0 * i;
        set_rgb(cr, rows[i].st.rgb);
        cairo_set_line_width(cr, rows[i].st.width);
        double dash[] = {6, 4};
        cairo_set_dash(cr, dash, rows[i].st.dashed ? 2 : 0, 0);
        cairo_move_to(cr, bx + 6, y);
        cairo_line_to(cr, bx + 30, y);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        set_rgb(cr, 0x000000u);
        text_at(cr, bx + 36, y, rows[i].label, 0.0, 0.5);
    }
}

static void range_of(const usi_plot_series *s, double *lo, double *hi)
{
    for (size_t i = 0; i < s->n; i++) {
        *lo = s->y[i] < *lo ? s->y[i] : *lo;
        *hi = s->y[i] > *hi ? s->y[i] : *hi;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double d = *(const double *)a - *(const double *)b;
    return d < 0 ? -1 : d > 0;
}

/* The loss axis: from 0 to what the smoothed and validation curves reach
 * and the raw loss's 98th percentile, so a few Mixup spikes (clipped at the
 * top) don't flatten the rest. */
static double loss_top(const usi_plot_curves *c, const double *smooth, double *tmp)
{
    double lo = 0, hi = 0;
    range_of(&c->val_loss, &lo, &hi);
    for (size_t i = 0; i < c->loss.n; i++) {
        hi = smooth[i] > hi ? smooth[i] : hi;
        tmp[i] = c->loss.y[i];
    }
    if (c->loss.n) {
        qsort(tmp, c->loss.n, sizeof *tmp, cmp_double);
        double p98 = tmp[(size_t)floor(0.98 * (double)(c->loss.n - 1))];
        hi = p98 > hi ? p98 : hi;
    }
    return hi;
}

static void draw_loss_panel(cairo_t *cr, const usi_plot_curves *c, const double *smooth, double *tmp)
{
    frame f = {MARGIN_L, MARGIN_T, PANEL_W - MARGIN_R_LR, H - MARGIN_B, {0, 0, 0}, {0, 0, 0}};
    double xlo = 0, xhi = 0;
    for (size_t i = 0; i < c->loss.n; i++) xhi = c->loss.x[i] > xhi ? c->loss.x[i] : xhi;
    for (size_t i = 0; i < c->val_loss.n; i++) xhi = c->val_loss.x[i] > xhi ? c->val_loss.x[i] : xhi;
    f.x = nice_axis(xlo, xhi, 6, 1);
    f.y = nice_axis(0, loss_top(c, smooth, tmp), 5, 0);
    draw_axes(cr, &f, "loss", "step");
    legend_row rows[4];
    int n = 0;
    if (c->lr.n) {
        double lo = 0, hi = 0;
        range_of(&c->lr, &lo, &hi);
        axis lr = nice_axis(0, hi, 5, 0);
        cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
        cairo_set_font_size(cr, 11);
        set_rgb(cr, USI_PLOT_LR_RGB);
        char buf[32];
        for (double v = lr.lo; v <= lr.hi + lr.step * 0.5; v += lr.step) {
            tick_label(buf, sizeof buf, v, lr.step);
            text_at(cr, f.x1 + 6, px_y(&f, &lr, v), buf, 0.0, 0.5);
        }
        cairo_set_font_size(cr, 12);
        text_at(cr, f.x1 + 6, f.y1 + 26, "lr", 0.0, 0.0);
        style st = {USI_PLOT_LR_RGB, 1.5, 1, 0};
        polyline(cr, &f, &lr, c->lr.x, c->lr.y, c->lr.n, st);
        rows[n++] = (legend_row){"lr (right axis)", st};
    }
    style raw = {USI_PLOT_LOSS_RAW_RGB, 2.0, 0, 0}, sm = {USI_PLOT_LOSS_RGB, 2.5, 0, 0};
    polyline(cr, &f, &f.y, c->loss.x, c->loss.y, c->loss.n, raw);
    polyline(cr, &f, &f.y, c->loss.x, smooth, c->loss.n, sm);
    if (c->loss.n) {
        rows[n++] = (legend_row){"train loss", raw};
        rows[n++] = (legend_row){"train loss, smoothed", sm};
    }
    if (c->val_loss.n) {
        style st = {USI_PLOT_VAL_LOSS_RGB, 2.5, 0, 1};
        polyline(cr, &f, &f.y, c->val_loss.x, c->val_loss.y, c->val_loss.n, st);
        rows[n++] = (legend_row){"validation loss", st};
    }
    legend(cr, &f, rows, n);
}

static void draw_top1_panel(cairo_t *cr, const usi_plot_curves *c)
{
    frame f = {PANEL_W + MARGIN_L, MARGIN_T, W - MARGIN_R, H - MARGIN_B, {0, 0, 0}, {0, 0, 0}};
    double lo = 100, hi = 0, xhi = 1;
    range_of(&c->top1, &lo, &hi);
    range_of(&c->ema, &lo, &hi);
    for (size_t i = 0; i < c->top1.n; i++) xhi = c->top1.x[i] > xhi ? c->top1.x[i] : xhi;
    for (size_t i = 0; i < c->ema.n; i++) xhi = c->ema.x[i] > xhi ? c->ema.x[i] : xhi;
    if (lo > hi) lo = 0, hi = 100;
    f.x = nice_axis(0, xhi, 6, 1);
    f.y = nice_axis(lo, hi, 5, 0);
    draw_axes(cr, &f, "top-1 (%)", "epoch");
    if (!c->top1.n && !c->ema.n) {
        set_rgb(cr, 0x7f7f7fu);
        text_at(cr, (f.x0 + f.x1) / 2, (f.y0 + f.y1) / 2, "no evaluation yet", 0.5, 0.5);
        return;
    }
    style top = {USI_PLOT_TOP1_RGB, 2.5, 0, 1}, ema = {USI_PLOT_EMA_RGB, 2.5, 0, 1};
    polyline(cr, &f, &f.y, c->top1.x, c->top1.y, c->top1.n, top);
    polyline(cr, &f, &f.y, c->ema.x, c->ema.y, c->ema.n, ema);
    legend_row rows[2];
    int n = 0;
    if (c->top1.n) rows[n++] = (legend_row){"top-1", top};
    if (c->ema.n) rows[n++] = (legend_row){"EMA top-1", ema};
    legend(cr, &f, rows, n);
}

static usi_error *draw(cairo_t *cr, const usi_plot_curves *c)
{
    size_t n = c->loss.n ? c->loss.n : 1;
    double *smooth = malloc(n * sizeof *smooth), *tmp = malloc(n * sizeof *tmp);
    if (!smooth || !tmp) {
        free(smooth);
        free(tmp);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    usi_plot_smooth(c->loss.y, c->loss.n, smooth);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    draw_loss_panel(cr, c, smooth, tmp);
    draw_top1_panel(cr, c);
    free(smooth);
    free(tmp);
    cairo_status_t st = cairo_status(cr);
    return st ? usi_error_new(USI_ERR_INTERNAL, "drawing the curves: %s", cairo_status_to_string(st)) : NULL;
}

/* ---- output ---- */

static usi_error *write_png(const usi_plot_curves *c, const char *path)
{
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = cairo_create(s);
    usi_error *e = draw(cr, c);
    cairo_destroy(cr);
    cairo_surface_flush(s);
    if (!e) e = usi_cairo_png_write(s, path);
    cairo_surface_destroy(s);
    return e;
}

static usi_error *write_svg(const usi_plot_curves *c, const char *path)
{
    size_t n = strlen(path) + 8;
    char *tmp = malloc(n);
    if (!tmp) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp", path);
    cairo_surface_t *s = cairo_svg_surface_create(tmp, W, H);
    cairo_t *cr = cairo_create(s);
    usi_error *e = draw(cr, c);
    cairo_destroy(cr);
    cairo_surface_finish(s);
    cairo_status_t st = cairo_surface_status(s);
    cairo_surface_destroy(s);
    if (!e && st) e = usi_error_new(USI_ERR_IO, "cannot write %s: %s", path, cairo_status_to_string(st));
    if (!e && rename(tmp, path) != 0) e = usi_error_new(USI_ERR_IO, "cannot write %s: rename failed", path);
    if (e) unlink(tmp);
    free(tmp);
    return e;
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && !strcasecmp(s + n - k, tail);
}

usi_error *usi_plot_metrics(const char *metrics_path, const char *out_path)
{
    usi_plot_curves c;
    memset(&c, 0, sizeof c);
    usi_error *e = usi_plot_read(metrics_path, &c);
    if (!e && !c.loss.n && !c.top1.n && !c.ema.n)
        e = usi_error_new(USI_ERR_INVALID, "%s holds no loss or top-1 lines to plot", metrics_path);
    if (!e) e = ends_with(out_path, ".svg") ? write_svg(&c, out_path) : write_png(&c, out_path);
    usi_plot_curves_free(&c);
    return e;
}
