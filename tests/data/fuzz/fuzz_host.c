/* The one host service the decoders use, so the fuzz target links only
 * core/data/decode*.c and core/util/error.c. */
#include <stdlib.h>

#include "plugin/host.h"
#include "util/error.h"

static usi_error *image_alloc(usi_image *img, int32_t width, int32_t height, int32_t channels)
{
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3))
        return usi_error_new(USI_ERR_INVALID, "image_alloc: bad size");
    size_t need = (size_t)width * (size_t)height * (size_t)channels;
    uint8_t *p = realloc(img->data, need);
    if (!p) return usi_error_new(USI_ERR_NOMEM, "image_alloc: out of memory");
    img->data = p;
    img->width = width;
    img->height = height;
    img->channels = channels;
    img->stride = width * channels;
    return NULL;
}

const usi_host_api *usi_host_api_get(void)
{
    static usi_host_api api = {.struct_size = sizeof(usi_host_api), .image_alloc = image_alloc};
    return &api;
}
