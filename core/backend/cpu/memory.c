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
