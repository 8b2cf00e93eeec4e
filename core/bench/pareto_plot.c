/* usi_pareto_plot: speed (log x) against top-1 (y), drawn once with cairo
 * for both the PNG and the SVG (data/canvas.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/pareto.h"
#include "data/canvas.h"
#include "util/error.h"
#include "util/strutil.h"

enum { W = USI_PARETO_WIDTH, H = USI_PARETO_HEIGHT };
/* Title and legend above the plot area, tick labels and axis names left and below. */
enum { MARGIN_L = 72, MARGIN_R = 28, MARGIN_T = 64, MARGIN_B = 58 };
#define FONT "sans-serif"
#define LABEL_SIZE 11.0

void usi_pareto_layout_of(const usi_pareto_point *pts, size_t n, usi_pareto_layout *l)
{
    double lg_lo = INFINITY, lg_hi = -INFINITY, lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double lg = log10(pts[i].speed);
        lg_lo = lg < lg_lo ? lg : lg_lo;
        lg_hi = lg > lg_hi ? lg : lg_hi;
        lo = pts[i].top1 < lo ? pts[i].top1 : lo;
        hi = pts[i].top1 > hi ? pts[i].top1 : hi;
    }
    if (!n) lg_lo = 0, lg_hi = 3, lo = 0, hi = 100;
    /* at least half a decade across, and room for labels beside the end
     * points (more at the right, where labels go first) */
    double span = lg_hi - lg_lo < 0.5 ? 0.5 : lg_hi - lg_lo, mid = (lg_lo + lg_hi) / 2;
    if (lg_hi - lg_lo < 0.5) lg_lo = mid - 0.25, lg_hi = mid + 0.25;
    l->lg_lo = lg_lo - 0.08 * span - 0.04;
    l->lg_hi = lg_hi + 0.2 * span + 0.08;
    double pad = (hi - lo) * 0.08 + 0.3;
    usi_canvas_axis y = usi_canvas_nice_axis(lo - pad, hi + pad, 8, 0);
    l->top_lo = y.lo;
    l->top_hi = y.hi;
    l->top_step = y.step;
    l->x0 = MARGIN_L;
    l->y0 = MARGIN_T;
    l->x1 = W - MARGIN_R;
    l->y1 = H - MARGIN_B;
}

void usi_pareto_place(const usi_pareto_layout *l, double speed, double top1, double *px, double *py)
{
    *px = l->x0 + (log10(speed) - l->lg_lo) / (l->lg_hi - l->lg_lo) * (l->x1 - l->x0);
    *py = l->y1 - (top1 - l->top_lo) / (l->top_hi - l->top_lo) * (l->y1 - l->y0);
}

/* ---- axes ---- */

static void font(cairo_t *cr, double size, int bold)
{
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

/* The x ticks: 1, 2 and 5 times each power of ten over up to three
 * decades, powers of ten alone beyond. Calls fn for each in the range. */
static void x_ticks(const usi_pareto_layout *l, cairo_t *cr, void (*fn)(cairo_t *, const usi_pareto_layout *, double))
{
    static const double mult[] = {1, 2, 5};
    int every = l->lg_hi - l->lg_lo <= 3.0 ? 3 : 1;
    for (int k = (int)floor(l->lg_lo); k <= (int)ceil(l->lg_hi); k++)
        for (int m = 0; m < every; m++) {
            double v = mult[m] * pow(10, k), lg = log10(v);
            if (lg >= l->lg_lo - 1e-9 && lg <= l->lg_hi + 1e-9) fn(cr, l, v);
        }
}

static void x_grid_line(cairo_t *cr, const usi_pareto_layout *l, double v)
{
    double x, y;
    usi_pareto_place(l, v, l->top_lo, &x, &y);
    x = round(x) + 0.5;
    cairo_move_to(cr, x, l->y0);
    cairo_line_to(cr, x, l->y1);
}

static void x_tick_label(cairo_t *cr, const usi_pareto_layout *l, double v)
{
    double x, y;
    usi_pareto_place(l, v, l->top_lo, &x, &y);
    cairo_move_to(cr, x, l->y1);
    cairo_line_to(cr, x, l->y1 + 4);
    cairo_stroke(cr);
    char buf[32];
    snprintf(buf, sizeof buf, "%.6g", v);
    usi_canvas_text(cr, x, l->y1 + 8, buf, 0.5, 0.0);
}

static void draw_axes(cairo_t *cr, const usi_pareto_layout *l, const char *xname)
{
    cairo_set_line_width(cr, 1.0);
    usi_canvas_rgb(cr, 0xe6e6e6u);
    for (double v = l->top_lo; v <= l->top_hi + l->top_step * 0.5; v += l->top_step) {
        double x, y;
        usi_pareto_place(l, 1, v, &x, &y);
        cairo_move_to(cr, l->x0, round(y) + 0.5);
        cairo_line_to(cr, l->x1, round(y) + 0.5);
    }
    x_ticks(l, cr, x_grid_line);
    cairo_stroke(cr);
    usi_canvas_rgb(cr, 0x000000u);
    cairo_rectangle(cr, round(l->x0) + 0.5, round(l->y0) + 0.5, round(l->x1 - l->x0), round(l->y1 - l->y0));
    cairo_stroke(cr);
    font(cr, 11, 0);
    char buf[32];
    for (double v = l->top_lo; v <= l->top_hi + l->top_step * 0.5; v += l->top_step) {
        double x, y;
        usi_pareto_place(l, 1, v, &x, &y);
        snprintf(buf, sizeof buf, "%.4g", fabs(v) < l->top_step * 1e-6 ? 0.0 : v);
        usi_canvas_text(cr, l->x0 - 6, y, buf, 1.0, 0.5);
    }
    x_ticks(l, cr, x_tick_label);
    font(cr, 12, 0);
    usi_canvas_text(cr, (l->x0 + l->x1) / 2, l->y1 + 30, xname, 0.5, 0.0);
    cairo_save(cr);
    cairo_translate(cr, 18, (l->y0 + l->y1) / 2);
    cairo_rotate(cr, -M_PI / 2);
    usi_canvas_text(cr, 0, 0, "top-1 (%)", 0.5, 0.5);
    cairo_restore(cr);
}

/* ---- points and labels ---- */

typedef struct box {
    double x0, y0, x1, y1;
} box;

static double overlap(box a, box b)
{
    double w = fmin(a.x1, b.x1) - fmax(a.x0, b.x0), h = fmin(a.y1, b.y1) - fmax(a.y0, b.y0);
    return w > 0 && h > 0 ? w * h : 0;
}

/* A label's place: the first of right, left, above, below, and the four
 * diagonals of its marker that stays inside the plot and clear of the
 * markers and the labels placed before it; else the least crowded one. */
static box place_label(const usi_pareto_layout *l, double px, double py, double tw, double th, const box *taken,
                       size_t n_taken)
{
    const double gap = USI_PARETO_MARKER_RADIUS + 4;
    const double dx[] = {gap, -gap - tw, -tw / 2, -tw / 2, gap, gap, -gap - tw, -gap - tw};
    const double dy[] = {-th / 2, -th / 2, -gap - th, gap, -gap - th, gap, -gap - th, gap};
    box best = {0, 0, 0, 0};
    double best_cost = INFINITY;
    for (int k = 0; k < 8; k++) {
        box b = {px + dx[k], py + dy[k], px + dx[k] + tw, py + dy[k] + th};
        double cost = 0;
        if (b.x0 < l->x0 || b.x1 > l->x1 || b.y0 < l->y0 || b.y1 > l->y1) cost += tw * th;
        for (size_t i = 0; i < n_taken; i++) cost += overlap(b, taken[i]);
        if (cost < best_cost) best_cost = cost, best = b;
        if (cost == 0) break;
    }
    return best;
}

static int by_speed(const void *a, const void *b)
{
    double d = (*(const usi_pareto_point *const *)a)->speed - (*(const usi_pareto_point *const *)b)->speed;
    return d < 0 ? -1 : d > 0;
}

static void marker(cairo_t *cr, double x, double y, int front)
{
    cairo_arc(cr, x, y, USI_PARETO_MARKER_RADIUS, 0, 2 * M_PI);
    usi_canvas_rgb(cr, front ? USI_PARETO_FRONT_RGB : USI_PARETO_OTHER_RGB);
    cairo_fill(cr);
}

typedef struct plot_ctx {
    const usi_pareto_point *pts;
    size_t n;
    const char *title;
} plot_ctx;

static usi_error *draw_points(cairo_t *cr, const usi_pareto_layout *l, const usi_pareto_point *pts, size_t n)
{
    const usi_pareto_point **front = malloc((n + 1) * sizeof *front);
    /* markers, labels, and the front line in steps of LINE_STEP pixels: its
     * length is at most the plot's diagonal */
    enum { LINE_STEP = 6 };
    size_t cap = 2 * n + (size_t)(hypot(l->x1 - l->x0, l->y1 - l->y0) / LINE_STEP) + n + 1, n_taken = 0;
    box *taken = malloc(cap * sizeof *taken);
    if (!front || !taken) {
        free(front);
        free(taken);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    size_t nf = 0;
    for (size_t i = 0; i < n; i++)
        if (pts[i].on_front) front[nf++] = &pts[i];
    qsort(front, nf, sizeof *front, by_speed);
    usi_canvas_rgb(cr, USI_PARETO_FRONT_RGB);
    cairo_set_line_width(cr, 2.0);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    double px = 0, py = 0;
    for (size_t i = 0; i < nf; i++) {
        double x, y;
        usi_pareto_place(l, front[i]->speed, front[i]->top1, &x, &y);
        if (i) cairo_line_to(cr, x, y);
        else cairo_move_to(cr, x, y);
        int steps = i ? (int)(hypot(x - px, y - py) / LINE_STEP) : 0;
        for (int k = 1; k < steps && n_taken < cap - 2 * n; k++) {
            double t = (double)k / steps, cx = px + t * (x - px), cy = py + t * (y - py);
            taken[n_taken++] = (box){cx - 2, cy - 2, cx + 2, cy + 2};
        }
        px = x, py = y;
    }
    cairo_stroke(cr);
    /* every marker is an obstacle for every label */
    const double r = USI_PARETO_MARKER_RADIUS + 1;
    for (size_t i = 0; i < n; i++) {
        double x, y;
        usi_pareto_place(l, pts[i].speed, pts[i].top1, &x, &y);
        marker(cr, x, y, pts[i].on_front);
        taken[n_taken++] = (box){x - r, y - r, x + r, y + r};
    }
    /* front labels first, so they get the best places */
    for (int pass = 1; pass >= 0; pass--)
        for (size_t i = 0; i < n; i++) {
            if (pts[i].on_front != pass) continue;
            double x, y;
            usi_pareto_place(l, pts[i].speed, pts[i].top1, &x, &y);
            font(cr, LABEL_SIZE, pass);
            cairo_text_extents_t te;
            cairo_text_extents(cr, pts[i].label, &te);
            box b = place_label(l, x, y, te.width, te.height, taken, n_taken);
            taken[n_taken++] = b;
            usi_canvas_rgb(cr, pass ? 0x000000u : 0x404040u);
            usi_canvas_text(cr, b.x0, b.y0, pts[i].label, 0.0, 0.0);
        }
    free(front);
    free(taken);
    return NULL;
}

static void legend(cairo_t *cr)
{
    font(cr, 11, 0);
    const char *names[] = {"Pareto front (no other backbone is both faster and more accurate)", "other backbones"};
    double x = MARGIN_L, y = MARGIN_T - 14;
    for (int k = 0; k < 2; k++) {
        if (!k) {
            usi_canvas_rgb(cr, USI_PARETO_FRONT_RGB);
            cairo_set_line_width(cr, 2.0);
            cairo_move_to(cr, x, y);
            cairo_line_to(cr, x + 22, y);
            cairo_stroke(cr);
        }
        marker(cr, x + 11, y, !k);
        usi_canvas_rgb(cr, 0x000000u);
        usi_canvas_text(cr, x + 28, y, names[k], 0.0, 0.5);
        cairo_text_extents_t te;
        cairo_text_extents(cr, names[k], &te);
        x += 28 + te.x_advance + 24;
    }
}

static usi_error *draw(cairo_t *cr, const void *ctx)
{
    const plot_ctx *c = ctx;
    usi_pareto_layout l;
    usi_pareto_layout_of(c->pts, c->n, &l);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    draw_axes(cr, &l, "images per second, inference (log scale)");
    font(cr, 14, 1);
    usi_canvas_rgb(cr, 0x000000u);
    usi_canvas_text(cr, W / 2.0, 14, c->title, 0.5, 0.0);
    legend(cr);
    if (!c->n) {
        font(cr, 13, 0);
        usi_canvas_rgb(cr, 0x7f7f7fu);
        usi_canvas_text(cr, (l.x0 + l.x1) / 2, (l.y0 + l.y1) / 2,
                        "no backbone has both a measured speed and a known top-1", 0.5, 0.5);
        return NULL;
    }
    return draw_points(cr, &l, c->pts, c->n);
}

usi_error *usi_pareto_plot(const usi_pareto_point *pts, size_t n, const char *title, const char *path)
{
    for (size_t i = 0; i < n; i++)
        if (!(pts[i].speed > 0) || !isfinite(pts[i].speed) || !isfinite(pts[i].top1))
            return usi_error_new(USI_ERR_INVALID, "%s: point '%s' has no speed or no top-1 to plot", path,
                                 pts[i].label);
    usi_strbuf desc = {0};
    usi_strbuf_addf(&desc, "x: inference images per second (log scale); y: top-1 (%%).\n");
    for (size_t i = 0; i < n; i++)
        usi_strbuf_addf(&desc, "%s: %.2f img/s, top-1 %.2f%%%s\n", pts[i].label, pts[i].speed, pts[i].top1,
                        pts[i].on_front ? " (Pareto front)" : "");
    plot_ctx c = {pts, n, title};
    usi_error *e = desc.data ? usi_canvas_write(path, W, H, draw, &c, title, desc.data)
                             : usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_strbuf_free(&desc);
    return e;
}
