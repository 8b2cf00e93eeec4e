#include "augcommon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const usi_host_api *aug_host;

int32_t aug_randint(usi_rng *r, int32_t lo, int32_t hi)
{
    uint64_t span = (uint64_t)((int64_t)hi - lo);
    if (span <= 1) return lo;
    /* span is tiny next to 2^64, so the modulo bias is negligible. */
    return lo + (int32_t)(aug_host->rng_u64(r) % span);
}

double aug_uniform(usi_rng *r, double lo, double hi)
{
    return lo + (hi - lo) * aug_host->rng_uniform(r);
}

int32_t aug_interp_from_name(const char *s)
{
    if (!s) return -1;
    if (!strcmp(s, "bicubic")) return USI_INTERP_BICUBIC;
    if (!strcmp(s, "bilinear")) return USI_INTERP_BILINEAR;
    if (!strcmp(s, "nearest")) return USI_INTERP_NEAREST;
    return -1;
}

usi_error *aug_copy(const usi_image *src, usi_image *dst)
{
    usi_error *e = aug_host->image_alloc(dst, src->width, src->height, src->channels);
    if (e) return e;
    size_t row = (size_t)src->width * (size_t)src->channels;
    for (int32_t y = 0; y < src->height; y++)
        memcpy(dst->data + (size_t)y * (size_t)dst->stride,
               src->data + (size_t)y * (size_t)src->stride, row);
    return NULL;
}
