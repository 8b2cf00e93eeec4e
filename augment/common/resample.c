#include "augcommon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Fixed point with 14 fractional bits: every weight fits int16, which the
 * AVX2 kernel multiplies in pairs (pmaddwd); the scalar path uses the same
 * weights, so both give identical pixels. */
#define W_BITS 14

static double filter_cubic(double x)
{
    const double a = -0.5; /* PIL's bicubic, which torchvision uses on images */
    x = fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

static double filter_linear(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double filter_box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

typedef struct coeffs {
    int32_t taps;      /* weights per output sample */
    int32_t *start;    /* first input index of each output sample */
    int32_t *count;    /* used taps of each output sample */
    int16_t *w;        /* [out][taps], W_BITS fixed point */
} coeffs;

static void coeffs_free(coeffs *c)
{
    free(c->start);
    free(c->count);
    free(c->w);
}

static int coeffs_make(coeffs *c, int32_t in_size, double in0, double in_len,
                       int32_t out_size, int32_t interp)
{
    double (*f)(double) = interp == USI_INTERP_BICUBIC ? filter_cubic
                        : interp == USI_INTERP_BILINEAR ? filter_linear : filter_box;
    double support = interp == USI_INTERP_BICUBIC ? 2.0 : interp == USI_INTERP_BILINEAR ? 1.0 : 0.5;
    double scale = in_len / out_size;
    double fscale = scale < 1.0 ? 1.0 : scale;
    support *= fscale;
    c->taps = (int32_t)ceil(support) * 2 + 1;
    c->start = malloc(sizeof(int32_t) * (size_t)out_size);
    c->count = malloc(sizeof(int32_t) * (size_t)out_size);
    c->w = malloc(sizeof(int16_t) * (size_t)out_size * (size_t)c->taps);
    double *tmp = malloc(sizeof(double) * (size_t)c->taps);
    if (!c->start || !c->count || !c->w || !tmp) {
        free(tmp);
        coeffs_free(c);
        return -1;
    }
    for (int32_t i = 0; i < out_size; i++) {
        double center = in0 + (i + 0.5) * scale;
        int32_t lo = (int32_t)floor(center - support + 0.5);
        int32_t hi = (int32_t)floor(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        if (hi - lo > c->taps) hi = lo + c->taps;
        if (hi <= lo) { /* a box outside the image: take the nearest edge */
            lo = center < 0 ? 0 : in_size - 1;
            hi = lo + 1;
        }
        double total = 0.0;
        for (int32_t k = 0; k < hi - lo; k++) {
            tmp[k] = f((lo + k - center + 0.5) / fscale);
            total += tmp[k];
        }
        if (total == 0.0) { tmp[0] = 1.0; total = 1.0; for (int32_t k = 1; k < hi - lo; k++) tmp[k] = 0; }
        int16_t *w = c->w + (size_t)i * (size_t)c->taps;
        for (int32_t k = 0; k < c->taps; k++)
            w[k] = k < hi - lo ? (int16_t)lrint(tmp[k] / total * (1 << W_BITS)) : 0;
        c->start[i] = lo;
        c->count[i] = hi - lo;
    }
    free(tmp);
    return 0;
}

static inline uint8_t clip8(int32_t v)
{
    v >>= W_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int aug_resample_simd = 1;

static void vpass_scalar(const uint8_t *base, size_t stride, const int16_t *w, int32_t n,
                         size_t from, size_t len, uint8_t *out)
{
    for (size_t i = from; i < len; i++) {
        int32_t a = 1 << (W_BITS - 1);
        const uint8_t *r = base + i;
        for (int32_t k = 0; k < n; k++, r += stride) a += r[0] * w[k];
        out[i] = clip8(a);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_KERNEL 1

/* 16 outputs at a time; taps in pairs, pixels widened to int16 and
 * interleaved so one pmaddwd applies two weights. unpack and pack both work
 * within 128-bit lanes, so the output comes back in order. */
__attribute__((target("avx2"))) static size_t vpass_avx2(const uint8_t *base, size_t stride,
                                                        const int16_t *w, int32_t n, size_t len,
                                                        uint8_t *out)
{
    const __m256i half = _mm256_set1_epi32(1 << (W_BITS - 1)), zero = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= len; i += 16) {
        __m256i lo = half, hi = half;
        const uint8_t *r = base + i;
        int32_t k = 0;
        for (; k + 1 < n; k += 2, r += 2 * stride) {
            __m256i a = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)r));
            __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(r + stride)));
            __m256i wp = _mm256_set1_epi32((int32_t)((uint32_t)(uint16_t)w[k] |
                                                     ((uint32_t)(uint16_t)w[k + 1] << 16)));
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), wp));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), wp));
        }
        if (k < n) {
            __m256i a = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)r));
            __m256i wp = _mm256_set1_epi32((int32_t)(uint16_t)w[k]);
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, zero), wp));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, zero), wp));
        }
        __m256i p16 = _mm256_packs_epi32(_mm256_srai_epi32(lo, W_BITS), _mm256_srai_epi32(hi, W_BITS));
        __m128i p8 = _mm_packus_epi16(_mm256_castsi256_si128(p16), _mm256_extracti128_si256(p16, 1));
        _mm_storeu_si128((__m128i *)(out + i), p8);
    }
    return i;
}
#endif

/* Output row y of the vertical filter over `len` bytes of each source row,
 * starting at byte x0: the resampler's hot loop. */
static void vpass_row(const uint8_t *src, size_t stride, const coeffs *c, int32_t y, size_t x0,
                      size_t len, uint8_t *out, int simd)
{
    const int16_t *w = c->w + (size_t)y * (size_t)c->taps;
    const uint8_t *base = src + (size_t)c->start[y] * stride + x0;
    size_t done = 0;
#ifdef HAVE_AVX2_KERNEL
    if (simd) done = vpass_avx2(base, stride, w, c->count[y], len, out);
#else
    (void)simd;
#endif
    vpass_scalar(base, stride, w, c->count[y], done, len, out);
}

static int use_simd(void)
{
#ifdef HAVE_AVX2_KERNEL
    __builtin_cpu_init();
    return aug_resample_simd && __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

/* rows x cols pixels of ch bytes -> cols x rows, in cache-sized blocks;
 * RGB gets its own loop so the 3-byte copies are not library calls. */
static void transpose(const uint8_t *in, uint8_t *out, int32_t rows, int32_t cols, int32_t ch)
{
    enum { BLK = 32 };
    for (int32_t r0 = 0; r0 < rows; r0 += BLK)
        for (int32_t c0 = 0; c0 < cols; c0 += BLK) {
            int32_t r1 = r0 + BLK < rows ? r0 + BLK : rows, c1 = c0 + BLK < cols ? c0 + BLK : cols;
            for (int32_t r = r0; r < r1; r++) {
                const uint8_t *src = in + ((size_t)r * (size_t)cols + (size_t)c0) * (size_t)ch;
                uint8_t *dst = out + ((size_t)c0 * (size_t)rows + (size_t)r) * (size_t)ch;
                size_t step = (size_t)rows * (size_t)ch;
                if (ch == 3) {
                    for (int32_t c = c0; c < c1; c++, src += 3, dst += step) {
                        dst[0] = src[0];
                        dst[1] = src[1];
                        dst[2] = src[2];
                    }
                } else {
                    for (int32_t c = c0; c < c1; c++, src += ch, dst += step)
                        for (int32_t k = 0; k < ch; k++) dst[k] = src[k];
                }
            }
        }
}

/* Vertical filter to dh rows, transpose, the horizontal filter as another
 * vertical one, transpose back: both passes run the vectorised loop. */
int aug_resize_box(const usi_image *src, double x0, double y0, double bw,
                   double bh, uint8_t *dst, int32_t dw, int32_t dh,
                   int32_t dst_stride, int32_t interp)
{
    coeffs cx = {0}, cy = {0};
    if (coeffs_make(&cx, src->width, x0, bw, dw, interp)) return -1;
    if (coeffs_make(&cy, src->height, y0, bh, dh, interp)) {
        coeffs_free(&cx);
        return -1;
    }
    int32_t ch = src->channels, xlo = cx.start[0], xhi = 0;
    for (int32_t x = 0; x < dw; x++) {
        if (cx.start[x] < xlo) xlo = cx.start[x];
        if (cx.start[x] + cx.count[x] > xhi) xhi = cx.start[x] + cx.count[x];
    }
    int32_t iw = xhi - xlo;
    size_t in_row = (size_t)iw * (size_t)ch, col = (size_t)dh * (size_t)ch;
    uint8_t *mid = malloc(in_row * (size_t)dh), *midT = malloc(in_row * (size_t)dh);
    uint8_t *outT = malloc(col * (size_t)dw);
    int rc = -1, simd = use_simd();
    if (!mid || !midT || !outT) goto done;
    for (int32_t y = 0; y < dh; y++)
        vpass_row(src->data, (size_t)src->stride, &cy, y, (size_t)xlo * (size_t)ch, in_row,
                  mid + (size_t)y * in_row, simd);
    transpose(mid, midT, dh, iw, ch);
    for (int32_t x = 0; x < dw; x++) cx.start[x] -= xlo;
    for (int32_t x = 0; x < dw; x++)
        vpass_row(midT, col, &cx, x, 0, col, outT + (size_t)x * col, simd);
    if (dst_stride == dw * ch) {
        transpose(outT, dst, dw, dh, ch);
    } else {
        uint8_t *packed = malloc(col * (size_t)dw);
        if (!packed) goto done;
        transpose(outT, packed, dw, dh, ch);
        for (int32_t y = 0; y < dh; y++)
            memcpy(dst + (size_t)y * (size_t)dst_stride, packed + (size_t)y * (size_t)dw * (size_t)ch,
                   (size_t)dw * (size_t)ch);
        free(packed);
    }
    rc = 0;
done:
    free(mid);
    free(midT);
    free(outT);
    coeffs_free(&cx);
    coeffs_free(&cy);
    return rc;
}
