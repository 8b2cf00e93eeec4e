/* Pictures drawn with cairo (training curves, preview grids) leave through
 * usi_png_write, so they are replaced atomically like every file usi writes. */
#ifndef USI_DATA_CANVAS_H
#define USI_DATA_CANVAS_H

#include <cairo.h>
#include <usi/plugin.h>

/* s: a flushed CAIRO_FORMAT_RGB24 image surface. */
usi_error *usi_cairo_png_write(cairo_surface_t *s, const char *path);

#endif
