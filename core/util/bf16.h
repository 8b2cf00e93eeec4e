/* bf16 on the host: the top 16 bits of an IEEE float. Narrowing rounds to
 * nearest, ties to even, as the GPU's __float2bfloat16 does; NaN stays NaN
 * (quiet), infinities stay infinite. */
#ifndef USI_CORE_UTIL_BF16_H
#define USI_CORE_UTIL_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t usi_bf16_from_float(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float usi_bf16_to_float(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
