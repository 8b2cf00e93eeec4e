/* usi_plot_metrics: metrics.jsonl -> a two-panel PNG of the training curves.
 * Drawn by hand on an RGB buffer so the core needs no plotting library; the
 * labels use a 3x5 pixel font that covers digits and the few letters the
 * titles need. */
#include "train/plot.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/decode.h"
#include "util/error.h"

enum { W = USI_PLOT_WIDTH, H = USI_PLOT_HEIGHT, PANEL_W = W / 2 };
/* Plot area inside a panel: room for y tick labels on the left, the title on
 * top and x tick labels below. */
enum { MARGIN_L = 56, MARGIN_R = 16, MARGIN_T = 30, MARGIN_B = 34, FONT_SCALE = 2 };
#define AXIS_RGB 0x000000u
#define GRID_RGB 0xe6e6e6u

/* ---- the data ---- */

typedef struct series {
    double *x, *y;
    size_t n, cap;
} series;

/* Append (x, y). A resumed run logs steps again from its checkpoint: points
 * at or past x are superseded by the new ones, so the curve never runs back. */
static usi_error *series_push(series *s, double x, double y)
{
    while (s->n && s->x[s->n - 1] >= x) s->n--;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (!nx) return usi_error_new(USI_ERR_NOMEM, "out of memory");
        s->x = nx;
        double *ny = realloc(s->y, cap * sizeof *ny);
        if (!ny) return usi_error_new(USI_ERR_NOMEM, "out of memory");
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return NULL;
}

static void series_free(series *s)
{
    free(s->x);
    free(s->y);
}

typedef struct curves {
    series loss, top1, ema;
} curves;

/* *v = obj[key] when present (*has = 1); a present non-number is an error. */
static usi_error *number(const cJSON *obj, const char *key, const char *path, long line, double *v, int *has)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *has = it != NULL;
    if (!it) return NULL;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return usi_error_new(USI_ERR_INVALID, "%s:%ld: \"%s\" is not a finite number", path, line, key);
    *v = it->valuedouble;
    return NULL;
}

static usi_error *read_line(const char *text, const char *path, long line, curves *c)
{
    cJSON *o = cJSON_Parse(text);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return usi_error_new(USI_ERR_INVALID, "%s:%ld: not a JSON object: %.60s", path, line, text);
    }
    double step = 0, loss = 0, epoch = 0, top1 = 0, ema = 0;
    int has_step, has_loss, has_epoch, has_top1, has_ema;
    usi_error *e = number(o, "step", path, line, &step, &has_step);
    if (!e) e = number(o, "loss", path, line, &loss, &has_loss);
    if (!e) e = number(o, "epoch", path, line, &epoch, &has_epoch);
    if (!e) e = number(o, "top1", path, line, &top1, &has_top1);
    if (!e) e = number(o, "ema_top1", path, line, &ema, &has_ema);
    cJSON_Delete(o);
    if (e) return e;
    if (has_loss && has_step) USI_TRY(series_push(&c->loss, step, loss));
    if (has_top1 && has_epoch) USI_TRY(series_push(&c->top1, epoch, top1));
    if (has_ema && has_epoch) USI_TRY(series_push(&c->ema, epoch, ema));
    return NULL;
}

static usi_error *read_metrics(const char *path, curves *c)
{
    FILE *f = fopen(path, "r");
    if (!f) return usi_error_new(USI_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0;
    long line = 0;
    usi_error *e = NULL;
    while (!e && getline(&buf, &cap, f) >= 0) {
        line++;
        const char *p = buf;
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (*p) e = read_line(p, path, line, c);
    }
    if (!e && ferror(f)) e = usi_error_new(USI_ERR_IO, "cannot read %s", path);
    free(buf);
    fclose(f);
    return e;
}

/* ---- the canvas ---- */

typedef struct canvas {
    uint8_t *px;
} canvas;

typedef struct rect {
    int x0, y0, x1, y1; /* inclusive */
} rect;

static void put(canvas *cv, int x, int y, uint32_t rgb, const rect *clip)
{
    if (x < clip->x0 || x > clip->x1 || y < clip->y0 || y > clip->y1) return;
    uint8_t *p = cv->px + ((size_t)y * W + (size_t)x) * 3;
    p[0] = (uint8_t)(rgb >> 16);
    p[1] = (uint8_t)(rgb >> 8);
    p[2] = (uint8_t)rgb;
}

static const rect whole = {0, 0, W - 1, H - 1};

static void hline(canvas *cv, int x0, int x1, int y, uint32_t rgb)
{
    for (int x = x0; x <= x1; x++) put(cv, x, y, rgb, &whole);
}

static void vline(canvas *cv, int x, int y0, int y1, uint32_t rgb)
{
    for (int y = y0; y <= y1; y++) put(cv, x, y, rgb, &whole);
}

/* A 2-pixel-wide segment (Bresenham), clipped to the plot area. */
static void segment(canvas *cv, int x0, int y0, int x1, int y1, uint32_t rgb, const rect *clip)
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0);
    int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
    for (;;) {
        put(cv, x0, y0, rgb, clip);
        put(cv, x0 + 1, y0, rgb, clip);
        put(cv, x0, y0 + 1, rgb, clip);
        put(cv, x0 + 1, y0 + 1, rgb, clip);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

/* 3x5 glyphs, one row per entry, bit 2 = left column. */
static const struct glyph {
    char c;
    uint8_t rows[5];
} font[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}}, {'3', {7, 1, 7, 1, 7}},
    {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}}, {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}},
    {'8', {7, 5, 7, 5, 7}}, {'9', {7, 5, 7, 1, 7}}, {'.', {0, 0, 0, 0, 2}}, {'-', {0, 0, 7, 0, 0}},
    {'+', {0, 2, 7, 2, 0}}, {'e', {7, 5, 7, 4, 7}}, {'l', {6, 2, 2, 2, 7}}, {'o', {0, 7, 5, 5, 7}},
    {'s', {0, 7, 6, 3, 7}}, {'t', {2, 7, 2, 2, 3}}, {'p', {0, 7, 5, 7, 4}}, {'c', {0, 7, 4, 4, 7}},
    {'h', {4, 4, 7, 5, 5}}, {'E', {7, 4, 6, 4, 7}}, {'M', {5, 7, 7, 5, 5}}, {'A', {2, 5, 7, 5, 5}},
};

enum { GLYPH_ADV = 4 * FONT_SCALE, GLYPH_H = 5 * FONT_SCALE };

static int text_width(const char *s)
{
    int n = (int)strlen(s);
    return n ? n * GLYPH_ADV - FONT_SCALE : 0;
}

/* Characters without a glyph (and spaces) leave a gap. */
static void text(canvas *cv, int x, int y, const char *s, uint32_t rgb)
{
    for (; *s; s++, x += GLYPH_ADV) {
        const struct glyph *g = NULL;
        for (size_t i = 0; i < sizeof font / sizeof *font; i++)
            if (font[i].c == *s) g = &font[i];
        if (!g) continue;
        for (int r = 0; r < 5; r++)
            for (int col = 0; col < 3; col++)
                if (g->rows[r] & (4 >> col))
                    for (int dy = 0; dy < FONT_SCALE; dy++)
                        for (int dx = 0; dx < FONT_SCALE; dx++)
                            put(cv, x + col * FONT_SCALE + dx, y + r * FONT_SCALE + dy, rgb, &whole);
    }
}

/* ---- axes ---- */

typedef struct axis {
    double lo, hi, step;
} axis;

/* A range covering [mn, mx] with ends on a 1-2-5 step that gives about five
 * ticks. */
static axis nice_axis(double mn, double mx)
{
    if (!(mx > mn)) {
        double pad = fabs(mn) > 1 ? fabs(mn) * 0.1 : 1;
        mn -= pad;
        mx += pad;
    }
    double raw = (mx - mn) / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
    axis a = {floor(mn / step) * step, ceil(mx / step) * step, step};
    return a;
}

static void tick_label(double v, double step, char *buf, size_t cap)
{
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) < step * 1e-6) v = 0; /* no "-0" */
    snprintf(buf, cap, "%.*f", decimals, v);
}

typedef struct panel {
    rect area;      /* the plot area, inclusive */
    axis ax, ay;
} panel;

static int map_x(const panel *p, double x)
{
    return p->area.x0 + (int)lround((x - p->ax.lo) / (p->ax.hi - p->ax.lo) * (p->area.x1 - p->area.x0));
}

static int map_y(const panel *p, double y)
{
    return p->area.y1 - (int)lround((y - p->ay.lo) / (p->ay.hi - p->ay.lo) * (p->area.y1 - p->area.y0));
}

/* Frame, grid lines and labelled ticks of panel `index` for the given data
 * ranges; whole_x keeps x ticks on integers. */
static panel draw_frame(canvas *cv, int index, double x_mn, double x_mx, double y_mn, double y_mx,
                        const char *x_label, int whole_x)
{
    panel p;
    int left = index * PANEL_W;
    p.area = (rect){left + MARGIN_L, MARGIN_T, left + PANEL_W - MARGIN_R, H - MARGIN_B};
    p.ax = nice_axis(x_mn, x_mx);
    p.ay = nice_axis(y_mn, y_mx);
    if (whole_x && p.ax.step < 1) { /* epochs: no "1.5" ticks */
        p.ax.lo = floor(p.ax.lo);
        p.ax.hi = ceil(p.ax.hi);
        p.ax.step = 1;
    }
    char buf[32];
    for (int k = 0; k <= 100; k++) {
        double v = p.ax.lo + k * p.ax.step;
        if (v > p.ax.hi + p.ax.step * 1e-6) break;
        int x = map_x(&p, v);
        vline(cv, x, p.area.y0, p.area.y1, GRID_RGB);
        vline(cv, x, p.area.y1, p.area.y1 + 5, AXIS_RGB);
        tick_label(v, p.ax.step, buf, sizeof buf);
        text(cv, x - text_width(buf) / 2, p.area.y1 + 9, buf, AXIS_RGB);
    }
    for (int k = 0; k <= 100; k++) {
        double v = p.ay.lo + k * p.ay.step;
        if (v > p.ay.hi + p.ay.step * 1e-6) break;
        int y = map_y(&p, v);
        hline(cv, p.area.x0, p.area.x1, y, GRID_RGB);
        hline(cv, p.area.x0 - 5, p.area.x0, y, AXIS_RGB);
        tick_label(v, p.ay.step, buf, sizeof buf);
        text(cv, p.area.x0 - 9 - text_width(buf), y - GLYPH_H / 2, buf, AXIS_RGB);
    }
    hline(cv, p.area.x0, p.area.x1, p.area.y0, AXIS_RGB);
    hline(cv, p.area.x0, p.area.x1, p.area.y1, AXIS_RGB);
    vline(cv, p.area.x0, p.area.y0, p.area.y1, AXIS_RGB);
    vline(cv, p.area.x1, p.area.y0, p.area.y1, AXIS_RGB);
    text(cv, p.area.x1 - text_width(x_label), H - GLYPH_H - 2, x_label, AXIS_RGB);
    return p;
}

static void draw_series(canvas *cv, const panel *p, const series *s, uint32_t rgb)
{
    /* Inside the frame, so curves never paint over the axis lines. */
    rect clip = {p->area.x0 + 1, p->area.y0 + 1, p->area.x1 - 1, p->area.y1 - 1};
    for (size_t i = 0; i < s->n; i++) {
        int x = map_x(p, s->x[i]), y = map_y(p, s->y[i]);
        if (i) segment(cv, map_x(p, s->x[i - 1]), map_y(p, s->y[i - 1]), x, y, rgb, &clip);
        else if (s->n == 1) /* a lone point: a small square */
            for (int d = -2; d <= 2; d++) segment(cv, x - 2, y + d, x + 2, y + d, rgb, &clip);
    }
}

static void range(const series *s, double *mn, double *mx, int x)
{
    for (size_t i = 0; i < s->n; i++) {
        double v = x ? s->x[i] : s->y[i];
        if (v < *mn) *mn = v;
        if (v > *mx) *mx = v;
    }
}

static void draw(canvas *cv, const curves *c)
{
    memset(cv->px, 0xff, (size_t)W * H * 3);
    /* The trainer writes ema_top1 = 0 when it keeps no EMA: no curve then. */
    int show_ema = 0;
    for (size_t i = 0; i < c->ema.n; i++) show_ema |= c->ema.y[i] != 0;

    double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
    range(&c->loss, &xl, &xh, 1);
    range(&c->loss, &yl, &yh, 0);
    if (!c->loss.n) xl = xh = yl = yh = 0;
    if (yl > 0) yl = 0; /* losses read best against zero */
    panel p = draw_frame(cv, 0, xl, xh, yl, yh, "step", 0);
    draw_series(cv, &p, &c->loss, USI_PLOT_LOSS_RGB);
    text(cv, p.area.x0, MARGIN_T - GLYPH_H - 8, "loss", USI_PLOT_LOSS_RGB);

    xl = yl = INFINITY;
    xh = yh = -INFINITY;
    range(&c->top1, &xl, &xh, 1);
    range(&c->top1, &yl, &yh, 0);
    if (show_ema) {
        range(&c->ema, &xl, &xh, 1);
        range(&c->ema, &yl, &yh, 0);
    }
    if (!(xh >= xl)) xl = xh = yl = yh = 0;
    yl = yl < 0 ? yl : 0;
    yh = yh > 100 ? yh : yh > 0 ? fmin(100, yh * 1.05) : 100;
    p = draw_frame(cv, 1, xl, xh, yl, yh, "epoch", 1);
    if (show_ema) draw_series(cv, &p, &c->ema, USI_PLOT_EMA_RGB);
    draw_series(cv, &p, &c->top1, USI_PLOT_TOP1_RGB);
    text(cv, p.area.x0, MARGIN_T - GLYPH_H - 8, "top-1", USI_PLOT_TOP1_RGB);
    if (show_ema) text(cv, p.area.x0 + text_width("top-1") + 3 * GLYPH_ADV, MARGIN_T - GLYPH_H - 8, "EMA",
                       USI_PLOT_EMA_RGB);
}

usi_error *usi_plot_metrics(const char *metrics_path, const char *png_path)
{
    curves c;
    memset(&c, 0, sizeof c);
    usi_error *e = read_metrics(metrics_path, &c);
    if (!e && !c.loss.n && !c.top1.n)
        e = usi_error_new(USI_ERR_INVALID, "%s holds no loss or top-1 lines to plot", metrics_path);
    canvas cv = {NULL};
    if (!e && !(cv.px = malloc((size_t)W * H * 3))) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
    if (!e) {
        draw(&cv, &c);
        usi_image im = {sizeof(usi_image), W, H, 3, W * 3, cv.px};
        e = usi_png_write(png_path, &im);
    }
    free(cv.px);
    series_free(&c.loss);
    series_free(&c.top1);
    series_free(&c.ema);
    return e;
}
