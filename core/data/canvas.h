/* Pictures drawn with cairo (training curves, preview grids, the bench's
 * Pareto plot) leave through here, so they are replaced atomically like
 * every file usi writes; and the small drawing helpers they share. */
#ifndef USI_DATA_CANVAS_H
#define USI_DATA_CANVAS_H

#include <cairo.h>
#include <stdint.h>
#include <usi/plugin.h>

/* s: a flushed CAIRO_FORMAT_RGB24 image surface. */
usi_error *usi_cairo_png_write(cairo_surface_t *s, const char *path);

/* Draws one picture on cr; the same routine serves PNG and SVG. */
typedef usi_error *(*usi_canvas_draw_fn)(cairo_t *cr, const void *ctx);
/* Render a w x h picture with draw into path: SVG when the name ends in
 * ".svg" (any case), else PNG. Cairo writes SVG text as glyph outlines, so
 * svg_title and svg_desc (either may be NULL), when given, go into the
 * SVG's <title> and <desc>: the words then are in the file for searches,
 * screen readers and tests. */
usi_error *usi_canvas_write(const char *path, int w, int h, usi_canvas_draw_fn draw, const void *ctx,
                            const char *svg_title, const char *svg_desc);

/* Source colour 0xRRGGBB. */
void usi_canvas_rgb(cairo_t *cr, uint32_t rgb);
/* Show s with its ink box anchored at (x, y): ax, ay are 0 (left, top),
 * 0.5 (centre) or 1 (right, bottom) of the box. */
void usi_canvas_text(cairo_t *cr, double x, double y, const char *s, double ax, double ay);

/* A linear axis widened to whole ticks: about `want` ticks at 1, 2 or 5
 * times a power of ten, at least min_step apart (0: no minimum). */
typedef struct usi_canvas_axis {
    double lo, hi, step;
} usi_canvas_axis;
usi_canvas_axis usi_canvas_nice_axis(double lo, double hi, int want, double min_step);

#endif
