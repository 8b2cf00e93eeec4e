#include "plugin/host.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/params.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"

static usi_error *host_error_new(int32_t code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static usi_error *host_error_new(int32_t code, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return usi_error_new(code, "%s", msg);
}

static void host_log(int32_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void host_log(int32_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    usi_vlog(level, fmt, ap);
    va_end(ap);
}

static void *host_alloc(size_t size, size_t align)
{
    if (align < sizeof(void *)) align = sizeof(void *);
    if (align & (align - 1)) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align, size ? size : 1)) return NULL;
    return p;
}

static void host_free(void *p) { free(p); }

static usi_error *host_image_alloc(usi_image *img, int32_t width, int32_t height,
                                   int32_t channels)
{
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3))
        return usi_error_new(USI_ERR_INVALID, "image_alloc: bad size %dx%dx%d",
                             width, height, channels);
    size_t need = (size_t)width * (size_t)height * (size_t)channels;
    size_t have = (size_t)img->stride * (size_t)(img->height > 0 ? img->height : 0);
    if (!img->data || need > have) {
        uint8_t *p = realloc(img->data, need);
        if (!p) return usi_error_new(USI_ERR_NOMEM, "image_alloc: out of memory for %zu bytes", need);
        img->data = p;
    }
    img->width = width;
    img->height = height;
    img->channels = channels;
    img->stride = width * channels;
    return NULL;
}

const usi_host_api *usi_host_api_get(void)
{
    static usi_host_api api;
    if (!api.struct_size) {
        api.abi_major = USI_ABI_MAJOR;
        api.abi_minor = USI_ABI_MINOR;
        api.error_new = host_error_new;
        api.error_free = usi_error_free;
        api.error_message = usi_error_message;
        api.log = host_log;
        api.alloc = host_alloc;
        api.free = host_free;
        api.rng_u64 = usi_rng_u64;
        api.rng_uniform = usi_rng_uniform;
        api.rng_normal = usi_rng_normal;
        api.param_int = usi_params_get_int;
        api.param_float = usi_params_get_float;
        api.param_bool = usi_params_get_bool;
        api.param_string = usi_params_get_string;
        api.param_float_list = usi_params_get_float_list;
        api.image_alloc = host_image_alloc;
        api.graph = usi_graph_api_get();
        api.struct_size = sizeof api;
    }
    return &api;
}
