/* The speed-accuracy Pareto front of a set of backbones, and its plot: x is
 * images per second on a log scale, y is top-1, every point labelled with
 * its backbone, the front drawn in its own colour and joined by a line. */
#ifndef USI_BENCH_PARETO_H
#define USI_BENCH_PARETO_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

/* Point i is plottable when speed[i] > 0 and top1[i] is a number (not NAN).
 * A plottable point is on the front when no other plottable point is at
 * least as fast and at least as accurate and strictly better in one of the
 * two: so of two points with equal speed only the more accurate one is on
 * it, and identical points are both on it. on_front[i] gets 1 or 0 (0 for
 * points that are not plottable). Returns the number on the front. */
size_t usi_pareto_front(const double *speed, const double *top1, size_t n, uint8_t *on_front);

typedef struct usi_pareto_point {
    const char *label;
    double speed, top1;   /* speed > 0, top1 a number */
    int on_front;
} usi_pareto_point;

#define USI_PARETO_WIDTH 880
#define USI_PARETO_HEIGHT 600
#define USI_PARETO_FRONT_RGB 0xd62728u /* red: front points and the line joining them */
#define USI_PARETO_OTHER_RGB 0x1f77b4u /* blue: every other backbone                  */
#define USI_PARETO_MARKER_RADIUS 5.0

/* Where the plot puts things, in pixels: the plot area and the axis ranges
 * (x in log10 of img/s), fixed by the points alone. */
typedef struct usi_pareto_layout {
    double x0, y0, x1, y1;       /* plot area, top-left to bottom-right      */
    double lg_lo, lg_hi;         /* log10(img/s) at x0 and x1                */
    double top_lo, top_hi, top_step; /* top-1 at y1 and y0, grid step        */
} usi_pareto_layout;
void usi_pareto_layout_of(const usi_pareto_point *pts, size_t n, usi_pareto_layout *l);
/* The pixel centre of a point's marker. */
void usi_pareto_place(const usi_pareto_layout *l, double speed, double top1, double *px, double *py);

/* Draw pts (n may be 0: the plot then says nothing could be placed) to
 * path: SVG when its name ends in ".svg", else PNG; replaced atomically.
 * `title` heads the picture. Cairo writes SVG text as glyph outlines, so the
 * SVG also carries the title and one line per point in its <title> and
 * <desc> elements, where searches and screen readers find them. */
usi_error *usi_pareto_plot(const usi_pareto_point *pts, size_t n, const char *title, const char *path);

#endif
