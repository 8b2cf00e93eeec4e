/* usi_plot_metrics: each curve is drawn in its colour, in its panel, going
 * the way the data goes; lines and text are anti-aliased; the SVG is well
 * formed and holds the same curves; the validation loss appears exactly
 * when the metrics carry it; malformed lines are errors naming the file
 * and line. */
#include <math.h>
#include <stdio.h>

#include "check.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/decode.h"
#include "train/plot.h"
#include "train/plot_internal.h"
#include "util/error.h"

static char dir[] = "/tmp/usi-plot-XXXXXX";

static const char *metrics_text =
    "{\"teacher_top1\": 91.5, \"teacher_top5\": 99.0}\n"
    "{\"epoch\": 1, \"step\": 10, \"loss\": 2.85, \"lr\": 0.00036, \"img_s\": 86.2}\n"
    "{\"epoch\": 1, \"step\": 20, \"loss\": 2.41, \"lr\": 0.00065, \"img_s\": 90.0}\n"
    "{\"epoch\": 1, \"step\": 31, \"top1\": 28.0, \"top5\": 67.6, \"ema_top1\": 14.4, \"ema_top5\": 63.0%s}\n"
    "\n"
    "{\"epoch\": 2, \"step\": 40, \"loss\": 1.90, \"lr\": 0.00090, \"img_s\": 91.0}\n"
    "{\"epoch\": 2, \"step\": 50, \"loss\": 1.75, \"lr\": 0.00088, \"img_s\": 91.0}\n"
    "{\"epoch\": 2, \"step\": 62, \"loss\": 1.52, \"lr\": 0.00080, \"img_s\": 92.0}\n"
    "{\"epoch\": 2, \"step\": 62, \"top1\": 41.0, \"top5\": 80.1, \"ema_top1\": 39.2, \"ema_top5\": 79.0%s}\n"
    "{\"epoch\": 3, \"step\": 75, \"loss\": 1.31, \"lr\": 0.00050, \"img_s\": 92.0}\n"
    "{\"epoch\": 3, \"step\": 93, \"loss\": 1.10, \"lr\": 0.00020, \"img_s\": 92.0}\n"
    "{\"epoch\": 3, \"step\": 93, \"top1\": 44.6, \"top5\": 83.3, \"ema_top1\": 44.1, \"ema_top5\": 83.0%s}\n";

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static void write_metrics(const char *path, int with_val)
{
    char text[4096];
    snprintf(text, sizeof text, metrics_text, with_val ? ", \"val_loss\": 2.2" : "",
             with_val ? ", \"val_loss\": 1.7" : "", with_val ? ", \"val_loss\": 1.5" : "");
    write_text(path, text);
}

static usi_image read_png(const char *path)
{
    usi_decoder *d = NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    usi_image im = {sizeof(usi_image), 0, 0, 0, 0, NULL};
    usi_error *e = usi_decoder_new(&d);
    if (!e) e = usi_read_file(path, &buf, &cap, &len);
    if (!e) e = usi_decode_image(d, buf, len, 0, &im);
    CHECK(!e, "decode %s: %s", path, e ? usi_error_message(e) : "");
    usi_error_free(e);
    free(buf);
    usi_decoder_free(d);
    return im;
}

static const uint8_t *px(const usi_image *im, int x, int y)
{
    return im->data + (size_t)y * (size_t)im->stride + (size_t)x * 3;
}

static int is_rgb(const uint8_t *p, uint32_t rgb)
{
    return p[0] == (uint8_t)(rgb >> 16) && p[1] == (uint8_t)(rgb >> 8) && p[2] == (uint8_t)rgb;
}

/* Pixels of exactly colour rgb in columns [x0, x1), and their mean row. */
static long count(const usi_image *im, uint32_t rgb, int x0, int x1, double *mean_y)
{
    long n = 0;
    double sy = 0;
    for (int y = 0; y < im->height; y++)
        for (int x = x0; x < x1; x++)
            if (is_rgb(px(im, x, y), rgb)) {
                n++;
                sy += y;
            }
    if (mean_y) *mean_y = n ? sy / (double)n : NAN;
    return n;
}

/* Pixels that are a partial blend of rgb over white (an anti-aliased edge),
 * each channel within 3 of white * (1 - a) + rgb * a for one a in (0.15, 0.85). */
static long blended(const usi_image *im, uint32_t rgb, int x0, int x1)
{
    int c[3] = {(int)(rgb >> 16) & 255, (int)(rgb >> 8) & 255, (int)rgb & 255};
    int m = 0; /* the channel furthest from white says how much of rgb */
    for (int k = 1; k < 3; k++) m = c[k] < c[m] ? k : m;
    long n = 0;
    for (int y = 0; y < im->height; y++)
        for (int x = x0; x < x1; x++) {
            const uint8_t *p = px(im, x, y);
            double a = (255.0 - p[m]) / (255.0 - c[m]);
            if (!(a > 0.15 && a < 0.85)) continue;
            int ok = 1;
            for (int k = 0; k < 3; k++) ok &= fabs(p[k] - (255.0 * (1 - a) + c[k] * a)) <= 3;
            n += ok;
        }
    return n;
}

static void test_png(void)
{
    char metrics[256], png[256];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    snprintf(png, sizeof png, "%s/curves.png", dir);
    write_metrics(metrics, 1);
    usi_error *e = usi_plot_metrics(metrics, png);
    CHECK(!e, "plot: %s", e ? usi_error_message(e) : "");
    usi_error_free(e);
    usi_image im = read_png(png);
    if (!im.data) return;
    CHECK(im.width == USI_PLOT_WIDTH && im.height == USI_PLOT_HEIGHT && im.channels == 3, "image %dx%dx%d",
          im.width, im.height, im.channels);
    int W = im.width, half = W / 2;
    /* each curve in its panel only */
    static const struct {
        uint32_t rgb;
        int left;
        long least;
        const char *name;
    } curves[] = {
        {USI_PLOT_LOSS_RGB, 1, 200, "smoothed loss"}, {USI_PLOT_LOSS_RAW_RGB, 1, 40, "raw loss"},
        {USI_PLOT_VAL_LOSS_RGB, 1, 100, "validation loss"}, {USI_PLOT_LR_RGB, 1, 40, "lr"},
        {USI_PLOT_TOP1_RGB, 0, 200, "top-1"}, {USI_PLOT_EMA_RGB, 0, 200, "EMA top-1"},
    };
    for (size_t i = 0; i < sizeof curves / sizeof *curves; i++) {
        long in = count(&im, curves[i].rgb, curves[i].left ? 0 : half, curves[i].left ? half : W, NULL);
        long out = count(&im, curves[i].rgb, curves[i].left ? half : 0, curves[i].left ? W : half, NULL);
        CHECK(in >= curves[i].least && out == 0, "%s colour: %ld px in its panel, %ld in the other", curves[i].name,
              in, out);
    }
    /* the loss falls and top-1 rises: compare the left and right thirds of
     * each plot area (the legend sits top right, above both curves' ends) */
    double y_early, y_late;
    count(&im, USI_PLOT_LOSS_RGB, 70, 170, &y_early);
    count(&im, USI_PLOT_LOSS_RGB, 300, 400, &y_late);
    CHECK(y_late > y_early + 40, "smoothed loss does not fall: mean row %.0f early, %.0f late", y_early, y_late);
    count(&im, USI_PLOT_TOP1_RGB, half + 100, half + 200, &y_early);
    count(&im, USI_PLOT_TOP1_RGB, half + 300, W - 30, &y_late);
    CHECK(y_late < y_early - 20, "top-1 does not rise: mean row %.0f early, %.0f late", y_early, y_late);
    /* anti-aliased lines: their edges blend into the background */
    long edge = blended(&im, USI_PLOT_LOSS_RGB, 0, half), edge_top = blended(&im, USI_PLOT_TOP1_RGB, half, W);
    CHECK(edge > 100 && edge_top > 100, "few blended edge pixels: %ld (loss), %ld (top-1)", edge, edge_top);
    /* the title is text in a real font: dark glyphs with grey edges */
    long dark = 0, grey = 0;
    for (int y = 0; y < 30; y++)
        for (int x = 100; x < 380; x++) {
            const uint8_t *p = px(&im, x, y);
            dark += p[0] < 60 && p[0] == p[1] && p[1] == p[2];
            grey += p[0] >= 60 && p[0] < 200 && p[0] == p[1] && p[1] == p[2];
        }
    CHECK(dark > 20 && grey > 20, "the title has %ld dark and %ld grey pixels", dark, grey);
    CHECK(count(&im, 0xffffffu, 0, W, NULL) > (long)W * im.height / 2, "background not mostly white");
    free(im.data);
    /* without val_loss there is no validation line */
    write_metrics(metrics, 0);
    e = usi_plot_metrics(metrics, png);
    CHECK(!e, "plot: %s", e ? usi_error_message(e) : "");
    usi_error_free(e);
    im = read_png(png);
    if (im.data) CHECK(count(&im, USI_PLOT_VAL_LOSS_RGB, 0, W, NULL) == 0, "a validation line without val_loss");
    free(im.data);
    unlink(png);
    unlink(metrics);
}

/* A small well-formedness check: tags nest and close, attribute values are
 * quoted; returns the number of elements named `name`, or -1. */
static int xml_count(const char *s, const char *name)
{
    char stack[64][32];
    int depth = 0, found = 0;
    size_t nlen = strlen(name);
    for (const char *p = strchr(s, '<'); p; p = strchr(p, '<')) {
        if (!strncmp(p, "<?", 2) || !strncmp(p, "<!", 2)) {
            p = strchr(p, '>');
            if (!p) return -1;
            continue;
        }
        int closing = p[1] == '/';
        const char *t = p + 1 + closing;
        size_t len = strcspn(t, " \t\r\n/>");
        if (len == 0 || len >= 32) return -1;
        const char *q = t + len;
        while (*q && *q != '>') {
            if (*q == '"' || *q == '\'') {
                const char *end = strchr(q + 1, *q);
                if (!end) return -1;
                q = end;
            }
            q++;
        }
        if (!*q) return -1;
        int empty = q[-1] == '/';
        if (closing) {
            if (depth == 0 || strncmp(stack[depth - 1], t, len) || stack[depth - 1][len]) return -1;
            depth--;
        } else {
            found += len == nlen && !strncmp(t, name, len);
            if (!empty) {
                if (depth == 64) return -1;
                memcpy(stack[depth], t, len);
                stack[depth++][len] = 0;
            }
        }
        p = q;
    }
    return depth == 0 ? found : -1;
}

/* Whether some "rgb(r%, g%, b%)" in the SVG is the colour rgb. */
static int svg_has_colour(const char *s, uint32_t rgb)
{
    for (const char *p = strstr(s, "rgb("); p; p = strstr(p + 4, "rgb(")) {
        double v[3];
        const char *q = p + 4;
        int k = 0;
        for (; k < 3; k++) {
            char *end;
            v[k] = strtod(q, &end);
            if (end == q || *end != '%') break;
            q = end + 1;
            while (*q == ',' || *q == ' ') q++;
        }
        if (k == 3 && fabs(v[0] * 2.55 - ((rgb >> 16) & 255)) < 0.6 && fabs(v[1] * 2.55 - ((rgb >> 8) & 255)) < 0.6 &&
            fabs(v[2] * 2.55 - (rgb & 255)) < 0.6)
            return 1;
    }
    return 0;
}

static void test_svg(void)
{
    char metrics[256], svg[256];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    snprintf(svg, sizeof svg, "%s/curves.svg", dir);
    write_metrics(metrics, 1);
    usi_error *e = usi_plot_metrics(metrics, svg);
    CHECK(!e, "plot svg: %s", e ? usi_error_message(e) : "");
    usi_error_free(e);
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    e = usi_read_file(svg, &buf, &cap, &len);
    CHECK(!e, "read %s: %s", svg, e ? usi_error_message(e) : "");
    usi_error_free(e);
    if (buf) {
        buf = realloc(buf, len + 1);
        buf[len] = 0;
        const char *s = (const char *)buf;
        int svgs = xml_count(s, "svg"), paths = xml_count(s, "path");
        CHECK(svgs == 1, "the SVG is not well formed or has %d <svg> elements", svgs);
        CHECK(paths >= 12, "%d <path> elements (curves, frames, grid, glyphs)", paths);
        static const uint32_t colours[] = {USI_PLOT_LOSS_RGB, USI_PLOT_LOSS_RAW_RGB, USI_PLOT_VAL_LOSS_RGB,
                                           USI_PLOT_LR_RGB, USI_PLOT_TOP1_RGB, USI_PLOT_EMA_RGB};
        for (size_t i = 0; i < sizeof colours / sizeof *colours; i++)
            CHECK(svg_has_colour(s, colours[i]), "no stroke of colour %06x in the SVG", colours[i]);
        char tmp[300];
        snprintf(tmp, sizeof tmp, "%s.tmp", svg);
        CHECK(access(tmp, F_OK) != 0, "the temporary file %s was left behind", tmp);
    }
    free(buf);
    unlink(svg);
    unlink(metrics);
}

static void test_smooth(void)
{
    double flat[5] = {2, 2, 2, 2, 2}, out[40], step[40];
    usi_plot_smooth(flat, 5, out);
    int bad = 0;
    for (int i = 0; i < 5; i++) bad += fabs(out[i] - 2) > 1e-12;
    CHECK(bad == 0, "a constant loss is not smoothed to itself (the start is not debiased)");
    for (int i = 0; i < 40; i++) step[i] = i < 20 ? 1.0 : 0.0;
    usi_plot_smooth(step, 40, out);
    int monotone = 1;
    for (int i = 21; i < 40; i++) monotone &= out[i] < out[i - 1] && out[i] > 0;
    CHECK(out[19] == 1.0 && monotone && out[20] > 0.3, "a step is not followed smoothly: %g %g %g", out[19], out[20],
          out[39]);
}

/* Every bad input is an error whose message holds `want`. */
static void expect_error(const char *content, const char *want)
{
    char metrics[256], png[256];
    snprintf(metrics, sizeof metrics, "%s/bad.jsonl", dir);
    snprintf(png, sizeof png, "%s/bad.png", dir);
    if (content) write_text(metrics, content);
    usi_error *e = usi_plot_metrics(metrics, png);
    const char *msg = e ? usi_error_message(e) : "";
    CHECK(e && strstr(msg, want), "wanted an error with '%s', got '%s'", want, e ? msg : "success");
    CHECK(access(png, F_OK) != 0, "no PNG is written on error");
    usi_error_free(e);
    unlink(metrics);
    unlink(png);
}

static void test_errors(void)
{
    char want[256];
    snprintf(want, sizeof want, "%s/bad.jsonl:3:", dir);
    expect_error("{\"epoch\": 1, \"step\": 10, \"loss\": 2.85}\n\n{\"epoch\": 1, \"step\": 20, \"loss\": }\n", want);
    snprintf(want, sizeof want, "%s/bad.jsonl:2:", dir);
    expect_error("{\"epoch\": 1, \"step\": 10, \"loss\": 2.85}\n{\"epoch\": 1, \"step\": 20, \"loss\": \"x\"}\n",
                 want);
    snprintf(want, sizeof want, "%s/bad.jsonl:2:", dir);
    expect_error("{\"epoch\": 1, \"step\": 10, \"loss\": 2.85}\n{\"epoch\": 1, \"step\": 20, \"val_loss\": \"x\"}\n",
                 want);
    snprintf(want, sizeof want, "%s/bad.jsonl:1:", dir);
    expect_error("[1, 2]\n", want);
    expect_error("{\"teacher_top1\": 90}\n", "no loss or top-1 lines");
    expect_error(NULL, "bad.jsonl");
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_png();
    test_svg();
    test_smooth();
    test_errors();
    rmdir(dir);
    return check_status("plot");
}
