/* Image resizing with the arithmetic of PIL's Image.resize (libImaging
 * Resample.c), because torchvision and timm resize through PIL and a model
 * should see the same pixels here as there:
 *   - horizontal pass first, rounded to 8 bits, then the vertical pass;
 *   - the filter is widened by the scale when shrinking (antialiasing);
 *   - window bounds are truncated, not floored, and weights are normalised
 *     to sum 1 in double precision, then rounded away from zero to 22-bit
 *     fixed point, accumulated in int32 from a bias of one half;
 *   - NEAREST is not a filter there but an affine lookup whose source
 *     coordinate is accumulated step by step, so it is done the same way.
 * Each pass runs as a "vertical" filter over contiguous bytes (the
 * horizontal one on a transposed copy) so one vectorised loop serves both. */
#include "augcommon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS 22 /* 32 - 8 bits of pixel - 2 bits of headroom */

static double filter_cubic(double x)
{
    const double a = -0.5; /* Keys' cubic; PIL's transform() uses -1 instead */
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double filter_linear(double x)
{
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

typedef struct coeffs {
    int32_t taps;   /* weights per output sample */
    int32_t *start; /* first input index of each output sample */
    int32_t *count; /* used taps of each output sample */
    int32_t *w;     /* [out][taps], PRECISION_BITS fixed point */
} coeffs;

static void coeffs_free(coeffs *c)
{
    free(c->start);
    free(c->count);
    free(c->w);
}

/* Weights of output samples first .. first+n-1 of an in_size -> out_size
 * resize. PIL computes them for the whole output; a window of them is the
 * same numbers, so resize-then-crop costs only the window. */
static int coeffs_make(coeffs *c, int32_t in_size, int32_t out_size, int32_t first, int32_t n,
                       int32_t interp)
{
    double (*f)(double) = interp == USI_INTERP_BICUBIC ? filter_cubic : filter_linear;
    double support = interp == USI_INTERP_BICUBIC ? 2.0 : 1.0;
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    support *= filterscale;
    c->taps = (int32_t)ceil(support) * 2 + 1;
    c->start = malloc(sizeof(int32_t) * (size_t)n);
    c->count = malloc(sizeof(int32_t) * (size_t)n);
    c->w = calloc((size_t)n * (size_t)c->taps, sizeof(int32_t));
    double *k = malloc(sizeof(double) * (size_t)c->taps);
    if (!c->start || !c->count || !c->w || !k) {
        free(k);
        coeffs_free(c);
        return -1;
    }
    double inv_filterscale = 1.0 / filterscale; /* PIL multiplies by the reciprocal */
    for (int32_t i = 0; i < n; i++) {
        double center = (first + i + 0.5) * scale;
        int32_t lo = (int32_t)(center - support + 0.5);
        if (lo < 0) lo = 0;
        int32_t hi = (int32_t)(center + support + 0.5);
        if (hi > in_size) hi = in_size;
        int32_t cnt = hi - lo > 0 ? hi - lo : 0;
        double total = 0.0;
        for (int32_t x = 0; x < cnt; x++) {
            k[x] = f((x + lo - center + 0.5) * inv_filterscale);
            total += k[x];
        }
        if (total != 0.0)
            for (int32_t x = 0; x < cnt; x++) k[x] /= total;
        int32_t *w = c->w + (size_t)i * (size_t)c->taps;
        for (int32_t x = 0; x < cnt; x++)
            w[x] = k[x] < 0 ? (int32_t)(-0.5 + k[x] * (1 << PRECISION_BITS))
                            : (int32_t)(0.5 + k[x] * (1 << PRECISION_BITS));
        c->start[i] = lo;
        c->count[i] = cnt;
    }
    free(k);
    return 0;
}

static inline uint8_t clip8(int32_t v)
{
    v >>= PRECISION_BITS; /* arithmetic: GCC and Clang shift signed values so */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int aug_resample_simd = 1;

static void vpass_scalar(const uint8_t *base, size_t stride, const int32_t *w, int32_t n,
                         size_t from, size_t len, uint8_t *out)
{
    for (size_t i = from; i < len; i++) {
        int32_t a = 1 << (PRECISION_BITS - 1);
        const uint8_t *r = base + i;
        for (int32_t k = 0; k < n; k++, r += stride) a += r[0] * w[k];
        out[i] = clip8(a);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_KERNEL 1

/* 16 outputs at a time in two int32 accumulators of 8: the 22-bit weights
 * need 32-bit products (PIL's precision), so pmaddwd's int16 pairs won't do. */
__attribute__((target("avx2"))) static size_t vpass_avx2(const uint8_t *base, size_t stride,
                                                        const int32_t *w, int32_t n, size_t len,
                                                        uint8_t *out)
{
    const __m256i half = _mm256_set1_epi32(1 << (PRECISION_BITS - 1));
    size_t i = 0;
    for (; i + 16 <= len; i += 16) {
        __m256i lo = half, hi = half;
        const uint8_t *r = base + i;
        for (int32_t k = 0; k < n; k++, r += stride) {
            __m128i px = _mm_loadu_si128((const __m128i *)r);
            __m256i wk = _mm256_set1_epi32(w[k]);
            lo = _mm256_add_epi32(lo, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(px), wk));
            hi = _mm256_add_epi32(hi, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(px, 8)), wk));
        }
        /* packs works within 128-bit lanes: reorder the quarters before
         * the final pack so the bytes come out in order. */
        __m256i p16 = _mm256_packs_epi32(_mm256_srai_epi32(lo, PRECISION_BITS),
                                         _mm256_srai_epi32(hi, PRECISION_BITS));
        p16 = _mm256_permute4x64_epi64(p16, 0xD8);
        __m128i p8 = _mm_packus_epi16(_mm256_castsi256_si128(p16), _mm256_extracti128_si256(p16, 1));
        _mm_storeu_si128((__m128i *)(out + i), p8);
    }
    return i;
}
#endif

/* Output sample i of the filter c applied down the rows of src (row stride
 * `stride`, src's first row being input row row0), over `len` bytes. */
static void vpass_row(const uint8_t *src, size_t stride, const coeffs *c, int32_t i, int32_t row0,
                      size_t len, uint8_t *out, int simd)
{
    const int32_t *w = c->w + (size_t)i * (size_t)c->taps;
    const uint8_t *base = src + (size_t)(c->start[i] - row0) * stride;
    size_t done = 0;
#ifdef HAVE_AVX2_KERNEL
    if (simd) done = vpass_avx2(base, stride, w, c->count[i], len, out);
#else
    (void)simd;
#endif
    vpass_scalar(base, stride, w, c->count[i], done, len, out);
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

/* rows x cols pixels of ch bytes (row stride in_stride) -> cols x rows,
 * packed, in cache-sized blocks; RGB gets its own loop so the 3-byte copies
 * are not library calls. */
static void transpose(const uint8_t *in, size_t in_stride, uint8_t *out, int32_t rows, int32_t cols,
                      int32_t ch)
{
    enum { BLK = 32 };
    size_t step = (size_t)rows * (size_t)ch;
    for (int32_t r0 = 0; r0 < rows; r0 += BLK)
        for (int32_t c0 = 0; c0 < cols; c0 += BLK) {
            int32_t r1 = r0 + BLK < rows ? r0 + BLK : rows, c1 = c0 + BLK < cols ? c0 + BLK : cols;
            for (int32_t r = r0; r < r1; r++) {
                const uint8_t *s = in + (size_t)r * in_stride + (size_t)c0 * (size_t)ch;
                uint8_t *d = out + ((size_t)c0 * (size_t)rows + (size_t)r) * (size_t)ch;
                if (ch == 3) {
                    for (int32_t c = c0; c < c1; c++, s += 3, d += step) {
                        d[0] = s[0];
                        d[1] = s[1];
                        d[2] = s[2];
                    }
                } else {
                    for (int32_t c = c0; c < c1; c++, s += ch, d += step)
                        for (int32_t k = 0; k < ch; k++) d[k] = s[k];
                }
            }
        }
}

static void copy_rows(const uint8_t *src, size_t src_stride, uint8_t *dst, size_t dst_stride,
                      int32_t rows, size_t len)
{
    for (int32_t y = 0; y < rows; y++)
        memcpy(dst + (size_t)y * dst_stride, src + (size_t)y * src_stride, len);
}

/* PIL's NEAREST resize: source position = (x + 0.5) * in/out, truncated,
 * summed step by step as PIL does (so rounding drifts the same way). */
static int nearest_table(int32_t in_size, int32_t out_size, int32_t first, int32_t n, int32_t *idx)
{
    double step = (double)in_size / out_size, pos = step * 0.5;
    for (int32_t i = 0; i < first + n; i++, pos += step) {
        int32_t v = pos < 0.0 ? -1 : (int32_t)pos;
        if (v < 0 || v >= in_size) return -1;
        if (i >= first) idx[i - first] = v;
    }
    return 0;
}

static int resize_nearest(const usi_image *src, int32_t full_w, int32_t full_h, int32_t x0, int32_t y0,
                          uint8_t *dst, int32_t dw, int32_t dh, int32_t dst_stride)
{
    int32_t *xs = malloc(sizeof(int32_t) * (size_t)dw), *ys = malloc(sizeof(int32_t) * (size_t)dh);
    int rc = -1, ch = src->channels;
    if (!xs || !ys) goto done;
    /* a position off the image cannot happen for a whole-image resize */
    if (nearest_table(src->width, full_w, x0, dw, xs) || nearest_table(src->height, full_h, y0, dh, ys)) {
        rc = -2;
        goto done;
    }
    for (int32_t y = 0; y < dh; y++) {
        const uint8_t *row = src->data + (size_t)ys[y] * (size_t)src->stride;
        uint8_t *o = dst + (size_t)y * (size_t)dst_stride;
        for (int32_t x = 0; x < dw; x++)
            memcpy(o + (size_t)x * (size_t)ch, row + (size_t)xs[x] * (size_t)ch, (size_t)ch);
    }
    rc = 0;
done:
    free(xs);
    free(ys);
    return rc;
}

/* The horizontal pass over source rows [r0, r1): transpose the columns it
 * reads, filter them as rows, transpose back into mid ([r1-r0][dw*ch]). */
static int hpass(const usi_image *src, const coeffs *cx, int32_t dw, int32_t r0, int32_t r1,
                 uint8_t *mid, size_t mid_stride, int simd)
{
    int32_t ch = src->channels, xlo = src->width, xhi = 0, rows = r1 - r0;
    for (int32_t x = 0; x < dw; x++) {
        if (cx->start[x] < xlo) xlo = cx->start[x];
        if (cx->start[x] + cx->count[x] > xhi) xhi = cx->start[x] + cx->count[x];
    }
    if (xhi <= xlo) xlo = 0, xhi = 1; /* nothing is read; keep the buffers non-empty */
    size_t col = (size_t)rows * (size_t)ch, out_row = (size_t)dw * (size_t)ch;
    /* calloc: GCC cannot see that the filter loop writes all of outT */
    uint8_t *inT = malloc(col * (size_t)(xhi - xlo)), *outT = calloc(col, (size_t)dw);
    uint8_t *packed = mid_stride == out_row ? mid : malloc(out_row * (size_t)rows);
    int rc = -1;
    if (!inT || !outT || !packed) goto done;
    transpose(src->data + (size_t)r0 * (size_t)src->stride + (size_t)xlo * (size_t)ch, (size_t)src->stride,
              inT, rows, xhi - xlo, ch);
    for (int32_t x = 0; x < dw; x++) vpass_row(inT, col, cx, x, xlo, col, outT + (size_t)x * col, simd);
    transpose(outT, col, packed, dw, rows, ch);
    if (packed != mid) copy_rows(packed, out_row, mid, mid_stride, rows, out_row);
    rc = 0;
done:
    if (packed != mid) free(packed);
    free(inT);
    free(outT);
    return rc;
}

int aug_resize_window(const usi_image *src, int32_t full_w, int32_t full_h, int32_t x0, int32_t y0,
                      uint8_t *dst, int32_t dw, int32_t dh, int32_t dst_stride, int32_t interp)
{
    if (full_w < 1 || full_h < 1 || dw < 1 || dh < 1 || x0 < 0 || y0 < 0 || x0 + dw > full_w ||
        y0 + dh > full_h || src->width < 1 || src->height < 1)
        return -2;
    if (interp == USI_INTERP_NEAREST) return resize_nearest(src, full_w, full_h, x0, y0, dst, dw, dh, dst_stride);
    /* as PIL: a pass runs only where the size changes */
    int need_h = full_w != src->width, need_v = full_h != src->height;
    int32_t ch = src->channels, simd = use_simd();
    size_t out_row = (size_t)dw * (size_t)ch;
    coeffs cx = {0}, cy = {0};
    uint8_t *mid = NULL;
    int rc = -1;
    if (need_h && coeffs_make(&cx, src->width, full_w, x0, dw, interp)) goto done;
    if (need_v && coeffs_make(&cy, src->height, full_h, y0, dh, interp)) goto done;
    /* the source rows the vertical pass reads (or the window's own rows) */
    int32_t r0 = y0, r1 = y0 + dh;
    if (need_v) {
        r0 = cy.start[0];
        r1 = 0;
        for (int32_t y = 0; y < dh; y++)
            if (cy.start[y] + cy.count[y] > r1) r1 = cy.start[y] + cy.count[y];
        if (r1 <= r0) r1 = r0 + 1;
    }
    if (!need_h && !need_v) {
        copy_rows(src->data + (size_t)y0 * (size_t)src->stride + (size_t)x0 * (size_t)ch, (size_t)src->stride,
                  dst, (size_t)dst_stride, dh, out_row);
        rc = 0;
        goto done;
    }
    if (!need_v) {
        rc = hpass(src, &cx, dw, r0, r1, dst, (size_t)dst_stride, simd);
        goto done;
    }
    const uint8_t *rows;
    size_t rows_stride;
    if (need_h) {
        mid = malloc(out_row * (size_t)(r1 - r0));
        if (!mid || hpass(src, &cx, dw, r0, r1, mid, out_row, simd)) goto done;
        rows = mid;
        rows_stride = out_row;
    } else {
        rows = src->data + (size_t)r0 * (size_t)src->stride + (size_t)x0 * (size_t)ch;
        rows_stride = (size_t)src->stride;
    }
    for (int32_t y = 0; y < dh; y++)
        vpass_row(rows, rows_stride, &cy, y, r0, out_row, dst + (size_t)y * (size_t)dst_stride, simd);
    rc = 0;
done:
    free(mid);
    coeffs_free(&cx);
    coeffs_free(&cy);
    return rc;
}

usi_image aug_view(const usi_image *src, int32_t x, int32_t y, int32_t w, int32_t h)
{
    usi_image v = *src;
    v.data = src->data + (size_t)y * (size_t)src->stride + (size_t)x * (size_t)src->channels;
    v.width = w;
    v.height = h;
    return v;
}
