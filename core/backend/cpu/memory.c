/* The CPU device's memory: plain aligned host allocations. */
#include <stdlib.h>

#include "backend/cpu/cpu.h"
#include "util/bf16.h"

void *usi_cpu_alloc(usi_device *d, size_t bytes)
{
    (void)d;
    void *p = NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (posix_memalign(&p, 64, rounded)) return NULL;
    memset(p, 0, rounded);
    return p;
}

void usi_cpu_free(usi_device *d, void *p, size_t bytes)
{
    (void)d;
    (void)bytes;
    free(p);
}

usi_error *usi_cpu_copy(usi_device *d, void *dst, const void *src, size_t bytes)
{
    (void)d;
    memmove(dst, src, bytes);
    return NULL;
}

usi_error *usi_cpu_fill(usi_device *d, void *dst, int byte, size_t bytes)
{
    (void)d;
    memset(dst, byte, bytes);
    return NULL;
}

usi_error *usi_cpu_synchronize(usi_device *d)
{
    (void)d;
    return NULL;
}

usi_error *usi_cpu_to_bf16(usi_device *d, void *dst, const float *src, size_t n, int32_t acc)
{
    (void)d;
    uint16_t *h = dst;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) h[i] = usi_bf16_from_float((acc ? usi_bf16_to_float(h[i]) : 0.0f) + src[i]);
    return NULL;
}

usi_error *usi_cpu_from_bf16(usi_device *d, float *dst, const void *src, size_t n, int32_t acc)
{
    (void)d;
    const uint16_t *h = src;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) dst[i] = (acc ? dst[i] : 0.0f) + usi_bf16_to_float(h[i]);
    return NULL;
}

/* dst (+)= src over a 4-d [N,C,H,W], each stored as its USI_FMT_* bits say:
 * element (n, c, p) at (n*C + c)*P + p in NCHW, (n*P + p)*C + c
 * channels-last (P = H*W). */
usi_error *usi_cpu_repack(usi_device *d, void *dst, int32_t dst_fmt, const void *src, int32_t src_fmt,
                          const int64_t *shape4, int32_t acc)
{
    (void)d;
    const int64_t N = shape4[0], C = shape4[1], P = shape4[2] * shape4[3];
#pragma omp parallel for schedule(static) if (N * C * P > 65536)
    for (int64_t i = 0; i < N * C * P; i++) {
        int64_t n = i / (C * P), c = i / P % C, p = i % P, cl = (n * P + p) * C + c;
        int64_t si = src_fmt & USI_FMT_CL ? cl : i, di = dst_fmt & USI_FMT_CL ? cl : i;
        float v = src_fmt & USI_FMT_BF16 ? usi_bf16_to_float(((const uint16_t *)src)[si]) : ((const float *)src)[si];
        if (dst_fmt & USI_FMT_BF16) {
            uint16_t *h = dst;
            h[di] = usi_bf16_from_float((acc ? usi_bf16_to_float(h[di]) : 0.0f) + v);
        } else {
            float *f = dst;
            f[di] = (acc ? f[di] : 0.0f) + v;
        }
    }
    return NULL;
}
