#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FOR_ROWS(im, row) \
    for (int32_t y_ = 0; y_ < (im)->height; y_++) \
        for (uint8_t *row = (im)->data + (size_t)y_ * (size_t)(im)->stride; row; row = NULL)

static void apply_lut(usi_image *im, const uint8_t lut[][256])
{
    int32_t c = im->channels;
    FOR_ROWS(im, row)
    for (int32_t x = 0; x < im->width; x++)
        for (int32_t k = 0; k < c; k++) row[x * c + k] = lut[k][row[x * c + k]];
}

static void histograms(const usi_image *im, uint32_t h[][256])
{
    int32_t c = im->channels;
    memset(h, 0, sizeof(uint32_t) * 256 * (size_t)c);
    for (int32_t y = 0; y < im->height; y++) {
        const uint8_t *row = im->data + (size_t)y * (size_t)im->stride;
        for (int32_t x = 0; x < im->width; x++)
            for (int32_t k = 0; k < c; k++) h[k][row[x * c + k]]++;
    }
}

void ra_auto_contrast(usi_image *im)
{
    uint32_t h[3][256];
    uint8_t lut[3][256];
    histograms(im, h);
    for (int32_t c = 0; c < im->channels; c++) {
        int lo = 0, hi = 255;
        while (lo < 256 && !h[c][lo]) lo++;
        while (hi >= 0 && !h[c][hi]) hi--;
        for (int i = 0; i < 256; i++) {
            if (hi <= lo) {
                lut[c][i] = (uint8_t)i;
                continue;
            }
            double scale = 255.0 / (hi - lo);
            int v = (int)(i * scale - lo * scale);
            lut[c][i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    apply_lut(im, (const uint8_t(*)[256])lut);
}

void ra_equalize(usi_image *im)
{
    uint32_t h[3][256];
    uint8_t lut[3][256];
    histograms(im, h);
    for (int32_t c = 0; c < im->channels; c++) {
        uint64_t total = 0, last = 0;
        int nonzero = 0;
        for (int i = 0; i < 256; i++)
            if (h[c][i]) {
                total += h[c][i];
                last = h[c][i];
                nonzero++;
            }
        uint64_t step = nonzero > 1 ? (total - last) / 255 : 0;
        uint64_t n = step / 2;
        for (int i = 0; i < 256; i++) {
            if (!step) {
                lut[c][i] = (uint8_t)i;
                continue;
            }
            uint64_t v = n / step;
            lut[c][i] = (uint8_t)(v > 255 ? 255 : v);
            n += h[c][i];
        }
    }
    apply_lut(im, (const uint8_t(*)[256])lut);
}

void ra_invert(usi_image *im)
{
    size_t n = (size_t)im->width * (size_t)im->channels;
    FOR_ROWS(im, row)
    for (size_t i = 0; i < n; i++) row[i] = (uint8_t)(255 - row[i]);
}

void ra_posterize(usi_image *im, int bits)
{
    if (bits >= 8) return;
    if (bits < 0) bits = 0;
    uint8_t mask = (uint8_t)~((1u << (8 - bits)) - 1u);
    size_t n = (size_t)im->width * (size_t)im->channels;
    FOR_ROWS(im, row)
    for (size_t i = 0; i < n; i++) row[i] &= mask;
}

void ra_solarize(usi_image *im, int thresh)
{
    size_t n = (size_t)im->width * (size_t)im->channels;
    FOR_ROWS(im, row)
    for (size_t i = 0; i < n; i++)
        if (row[i] >= thresh) row[i] = (uint8_t)(255 - row[i]);
}

void ra_solarize_add(usi_image *im, int add, int thresh)
{
    size_t n = (size_t)im->width * (size_t)im->channels;
    FOR_ROWS(im, row)
    for (size_t i = 0; i < n; i++)
        if (row[i] < thresh) {
            int v = row[i] + add;
            row[i] = (uint8_t)(v > 255 ? 255 : v < 0 ? 0 : v);
        }
}

/* PIL's Image.blend(degenerate, image, f): truncated, clipped. */
static inline uint8_t blend(int deg, int px, float f)
{
    float v = (float)deg + f * (float)(px - deg);
    return (uint8_t)(v <= 0.0f ? 0 : v >= 255.0f ? 255 : (int)v);
}

static inline int luma(const uint8_t *p)
{
    return (p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16;
}

void ra_color(usi_image *im, double factor)
{
    if (im->channels != 3) return; /* grey has no colour to change */
    float f = (float)factor;
    FOR_ROWS(im, row)
    for (int32_t x = 0; x < im->width; x++) {
        uint8_t *p = row + 3 * x;
        int l = luma(p);
        p[0] = blend(l, p[0], f);
        p[1] = blend(l, p[1], f);
        p[2] = blend(l, p[2], f);
    }
}

void ra_contrast(usi_image *im, double factor)
{
    uint64_t sum = 0;
    int32_t c = im->channels;
    FOR_ROWS(im, row)
    for (int32_t x = 0; x < im->width; x++) sum += c == 3 ? (uint64_t)luma(row + 3 * x) : row[x * c];
    int mean = (int)((double)sum / ((double)im->width * im->height) + 0.5);
    float f = (float)factor;
    size_t n = (size_t)im->width * (size_t)c;
    FOR_ROWS(im, row)
    for (size_t i = 0; i < n; i++) row[i] = blend(mean, row[i], f);
}

void ra_brightness(usi_image *im, double factor)
{
    float f = (float)factor;
    size_t n = (size_t)im->width * (size_t)im->channels;
    FOR_ROWS(im, row)
    for (size_t i = 0; i < n; i++) row[i] = blend(0, row[i], f);
}

/* PIL's SMOOTH kernel (1 1 1 / 1 5 1 / 1 1 1) / 13; border pixels keep
 * their values, as PIL's filter does. */
void ra_sharpness(usi_image *im, double factor, uint8_t *scratch)
{
    int32_t W = im->width, H = im->height, c = im->channels;
    size_t rs = (size_t)W * (size_t)c;
    for (int32_t y = 0; y < H; y++)
        memcpy(scratch + (size_t)y * rs, im->data + (size_t)y * (size_t)im->stride, rs);
    float f = (float)factor;
    for (int32_t y = 1; y < H - 1; y++) {
        const uint8_t *a = scratch + (size_t)(y - 1) * rs, *b = a + rs, *d = b + rs;
        uint8_t *o = im->data + (size_t)y * (size_t)im->stride;
        for (size_t i = (size_t)c; i + (size_t)c < rs; i++) {
            int s = a[i - c] + a[i] + a[i + c] + b[i - c] + 5 * b[i] + b[i + c] + d[i - c] + d[i] +
                    d[i + c];
            int deg = (s + 6) / 13;
            o[i] = blend(deg, b[i], f);
        }
    }
}

static inline void cubic_weights(float t, float w[4])
{
    const float a = -0.5f;
    float x = 1.0f + t;
    w[0] = ((a * x - 5.0f * a) * x + 8.0f * a) * x - 4.0f * a;
    x = t;
    w[1] = ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
    x = 1.0f - t;
    w[2] = ((a + 2.0f) * x - (a + 3.0f)) * x * x + 1.0f;
    w[3] = 1.0f - w[0] - w[1] - w[2];
}

static inline int32_t clampi(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static inline uint8_t round8(float v)
{
    v += 0.5f;
    return (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : (int)v);
}

/* Separable 4x4: filter each of the four rows horizontally, then the
 * column; edge pixels repeat (PIL clamps the neighbours too). A whole-pixel
 * coordinate has weights (0, 1, 0, 0): shears and translations hit that on
 * one axis, so only one row or one column is read. */
static inline void sample_cubic(const usi_image *src, double xs, double ys, uint8_t *out)
{
    int32_t c = src->channels, W = src->width, H = src->height;
    float fx = (float)(xs - 0.5), fy = (float)(ys - 0.5);
    int32_t x0 = (int32_t)floorf(fx), y0 = (int32_t)floorf(fy);
    int whole_x = fx == (float)x0, whole_y = fy == (float)y0;
    float wx[4], wy[4];
    cubic_weights(fx - (float)x0, wx);
    cubic_weights(fy - (float)y0, wy);
    int32_t xi[4];
    for (int i = 0; i < 4; i++) xi[i] = clampi(x0 - 1 + i, 0, W - 1) * c;
    float acc[3] = {0, 0, 0};
    for (int j = whole_y ? 1 : 0; j < (whole_y ? 2 : 4); j++) {
        const uint8_t *row = src->data + (size_t)clampi(y0 - 1 + j, 0, H - 1) * (size_t)src->stride;
        float wj = whole_y ? 1.0f : wy[j];
        for (int32_t k = 0; k < c; k++) {
            float h = whole_x ? row[xi[1] + k]
                              : wx[0] * row[xi[0] + k] + wx[1] * row[xi[1] + k] +
                                    wx[2] * row[xi[2] + k] + wx[3] * row[xi[3] + k];
            acc[k] += wj * h;
        }
    }
    for (int32_t k = 0; k < c; k++) out[k] = round8(acc[k]);
}

static void sample_linear(const usi_image *src, double xs, double ys, uint8_t *out)
{
    int32_t c = src->channels;
    double fx = xs - 0.5, fy = ys - 0.5;
    int32_t x0 = (int32_t)floor(fx), y0 = (int32_t)floor(fy);
    float tx = (float)(fx - x0), ty = (float)(fy - y0);
    int32_t xa = clampi(x0, 0, src->width - 1), xb = clampi(x0 + 1, 0, src->width - 1);
    int32_t ya = clampi(y0, 0, src->height - 1), yb = clampi(y0 + 1, 0, src->height - 1);
    const uint8_t *r0 = src->data + (size_t)ya * (size_t)src->stride;
    const uint8_t *r1 = src->data + (size_t)yb * (size_t)src->stride;
    for (int32_t k = 0; k < c; k++) {
        float top = r0[xa * c + k] + tx * (r0[xb * c + k] - r0[xa * c + k]);
        float bot = r1[xa * c + k] + tx * (r1[xb * c + k] - r1[xa * c + k]);
        float v = top + ty * (bot - top) + 0.5f;
        out[k] = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : (int)v);
    }
}

static inline void put_fill(uint8_t *o, int32_t c, const uint8_t fill[3])
{
    for (int32_t k = 0; k < c; k++) o[k] = fill[c == 3 ? k : 0];
}

/* x' = x + off(y), y' = y (shear X, translate X): within a row the source
 * fraction is constant, so the bicubic weights are computed once per row. */
static void affine_rows(const usi_image *src, uint8_t *dst, double shear, double shift,
                        const uint8_t fill[3])
{
    int32_t W = src->width, H = src->height, c = src->channels;
    for (int32_t y = 0; y < H; y++) {
        const uint8_t *row = src->data + (size_t)y * (size_t)src->stride;
        uint8_t *o = dst + (size_t)y * (size_t)W * (size_t)c;
        double off = shear * (y + 0.5) + shift, fl = floor(off);
        int32_t base = (int32_t)fl;
        float w[4];
        cubic_weights((float)(off - fl), w);
        for (int32_t x = 0; x < W; x++, o += c) {
            double xs = x + 0.5 + off;
            if (xs < 0 || xs >= W) {
                put_fill(o, c, fill);
                continue;
            }
            int32_t x0 = x + base;
            const uint8_t *p[4];
            for (int i = 0; i < 4; i++) p[i] = row + (size_t)clampi(x0 - 1 + i, 0, W - 1) * (size_t)c;
            for (int32_t k = 0; k < c; k++)
                o[k] = round8(w[0] * p[0][k] + w[1] * p[1][k] + w[2] * p[2][k] + w[3] * p[3][k]);
        }
    }
}

/* x' = x, y' = y + off(x) (shear Y, translate Y): weights per column. */
static void affine_cols(const usi_image *src, uint8_t *dst, double shear, double shift,
                        const uint8_t fill[3], float (*w)[4], int32_t *base, double *offs)
{
    int32_t W = src->width, H = src->height, c = src->channels;
    for (int32_t x = 0; x < W; x++) {
        offs[x] = shear * (x + 0.5) + shift;
        double fl = floor(offs[x]);
        base[x] = (int32_t)fl;
        cubic_weights((float)(offs[x] - fl), w[x]);
    }
    for (int32_t y = 0; y < H; y++) {
        uint8_t *o = dst + (size_t)y * (size_t)W * (size_t)c;
        for (int32_t x = 0; x < W; x++, o += c) {
            double ys = y + 0.5 + offs[x];
            if (ys < 0 || ys >= H) {
                put_fill(o, c, fill);
                continue;
            }
            int32_t y0 = y + base[x];
            const uint8_t *p[4];
            for (int j = 0; j < 4; j++)
                p[j] = src->data + (size_t)clampi(y0 - 1 + j, 0, H - 1) * (size_t)src->stride + (size_t)x * (size_t)c;
            const float *wx = w[x];
            for (int32_t k = 0; k < c; k++)
                o[k] = round8(wx[0] * p[0][k] + wx[1] * p[1][k] + wx[2] * p[2][k] + wx[3] * p[3][k]);
        }
    }
}

/* Bicubic weights for fractions k / CUBIC_STEPS: a rotation needs fresh
 * weights at every pixel, and 1/256 of a pixel is far below what 8-bit
 * output can show. */
#define CUBIC_STEPS 256

static void cubic_table(float (*t)[4])
{
    for (int i = 0; i <= CUBIC_STEPS; i++) cubic_weights((float)i / CUBIC_STEPS, t[i]);
}

/* sample_cubic with tabled weights and no clamping away from the border. */
static inline void sample_cubic_fast(const usi_image *src, double xs, double ys, uint8_t *out,
                                     const float (*t)[4])
{
    int32_t c = src->channels;
    double fx = xs - 0.5, fy = ys - 0.5;
    int32_t x0 = (int32_t)floor(fx), y0 = (int32_t)floor(fy);
    if (x0 < 1 || y0 < 1 || x0 + 2 >= src->width || y0 + 2 >= src->height) {
        sample_cubic(src, xs, ys, out);
        return;
    }
    const float *wx = t[(int)((fx - x0) * CUBIC_STEPS + 0.5)], *wy = t[(int)((fy - y0) * CUBIC_STEPS + 0.5)];
    const uint8_t *p = src->data + (size_t)(y0 - 1) * (size_t)src->stride + (size_t)(x0 - 1) * (size_t)c;
    float acc[3] = {0, 0, 0};
    for (int j = 0; j < 4; j++, p += src->stride)
        for (int32_t k = 0; k < c; k++)
            acc[k] += wy[j] * (wx[0] * p[k] + wx[1] * p[c + k] + wx[2] * p[2 * c + k] + wx[3] * p[3 * c + k]);
    for (int32_t k = 0; k < c; k++) out[k] = round8(acc[k]);
}

static void affine_general(const usi_image *src, uint8_t *dst, const double m[6], int32_t interp,
                           const uint8_t fill[3])
{
    int32_t W = src->width, H = src->height, c = src->channels;
    float table[CUBIC_STEPS + 1][4];
    cubic_table(table);
    for (int32_t y = 0; y < H; y++) {
        uint8_t *o = dst + (size_t)y * (size_t)W * (size_t)c;
        double yc = y + 0.5;
        for (int32_t x = 0; x < W; x++, o += c) {
            double xc = x + 0.5;
            double xs = m[0] * xc + m[1] * yc + m[2];
            double ys = m[3] * xc + m[4] * yc + m[5];
            if (xs < 0 || ys < 0 || xs >= W || ys >= H) {
                put_fill(o, c, fill);
            } else if (interp == USI_INTERP_BICUBIC) {
                sample_cubic_fast(src, xs, ys, o, (const float (*)[4])table);
            } else if (interp == USI_INTERP_BILINEAR) {
                sample_linear(src, xs, ys, o);
            } else {
                const uint8_t *p = src->data + (size_t)(int32_t)ys * (size_t)src->stride +
                                   (size_t)(int32_t)xs * (size_t)c;
                memcpy(o, p, (size_t)c);
            }
        }
    }
}

void ra_affine(const usi_image *src, uint8_t *dst, const double m[6], int32_t interp,
               const uint8_t fill[3])
{
    int unit = m[0] == 1.0 && m[4] == 1.0;
    if (interp == USI_INTERP_BICUBIC && unit && m[3] == 0.0 && m[5] == 0.0) {
        affine_rows(src, dst, m[1], m[2], fill);
        return;
    }
    if (interp == USI_INTERP_BICUBIC && unit && m[1] == 0.0 && m[2] == 0.0) {
        int32_t W = src->width;
        float (*w)[4] = malloc(sizeof *w * (size_t)W);
        int32_t *base = malloc(sizeof *base * (size_t)W);
        double *offs = malloc(sizeof *offs * (size_t)W);
        if (w && base && offs) affine_cols(src, dst, m[3], m[5], fill, w, base, offs);
        else affine_general(src, dst, m, interp, fill); /* no memory: the slow path needs none */
        free(w);
        free(base);
        free(offs);
        return;
    }
    affine_general(src, dst, m, interp, fill);
}
