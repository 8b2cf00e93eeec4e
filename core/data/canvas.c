#include "data/canvas.h"

#include <stdlib.h>
#include <string.h>

#include "data/decode.h"
#include "util/error.h"

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
