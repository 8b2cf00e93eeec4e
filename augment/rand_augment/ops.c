#include "ops.h"

#include <math.h>
#include <stdio.h>
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

/* PIL's SMOOTH filter (1 1 1 / 1 5 1 / 1 1 1) / 13 as its 3x3 filter runs
 * it: float weights 1/13 and 5/13, summed in float from the row below to
 * the row above, plus 0.5, truncated; border pixels keep their values. */
static inline uint8_t smooth_at(const uint8_t *above, const uint8_t *at, const uint8_t *below, size_t i,
                                size_t c)
{
    const float k1 = 1.0f / 13.0f, k5 = 5.0f / 13.0f;
    float ss = 0.5f;
    ss += (float)below[i - c] * k1 + (float)below[i] * k1 + (float)below[i + c] * k1;
    ss += (float)at[i - c] * k1 + (float)at[i] * k5 + (float)at[i + c] * k1;
    ss += (float)above[i - c] * k1 + (float)above[i] * k1 + (float)above[i + c] * k1;
    ss = ss < 0.0f ? 0.0f : ss > 255.0f ? 255.0f : ss;
    return (uint8_t)ss;
}

void ra_sharpness(usi_image *im, double factor, uint8_t *scratch)
{
    int32_t W = im->width, H = im->height;
    size_t c = (size_t)im->channels, rs = (size_t)W * c;
    for (int32_t y = 0; y < H; y++)
        memcpy(scratch + (size_t)y * rs, im->data + (size_t)y * (size_t)im->stride, rs);
    float f = (float)factor;
    for (int32_t y = 1; y < H - 1; y++) {
        const uint8_t *a = scratch + (size_t)(y - 1) * rs, *b = a + rs, *d = b + rs;
        uint8_t *o = im->data + (size_t)y * (size_t)im->stride;
        for (size_t i = c; i + c < rs; i++) o[i] = blend(smooth_at(a, b, d, i, c), b[i], f);
    }
}

static inline int32_t clampi(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* PIL's FLOOR: truncation is floor for the non-negative values it sees most. */
static inline int32_t pil_floor(double v) { return v < 0.0 ? (int32_t)floor(v) : (int32_t)v; }

/* PIL's transform() bicubic: cubic convolution with a = -1 (not resize()'s
 * -0.5), in this exact form, in double. */
static inline double cubic(double v1, double v2, double v3, double v4, double d)
{
    double p1 = v2;
    double p2 = -v1 + v3;
    double p3 = 2 * (v1 - v2) + v3 - v4;
    double p4 = -v1 + v2 - v3 + v4;
    return p1 + d * (p2 + d * (p3 + d * p4));
}

static inline uint8_t clip_trunc(double v) { return v <= 0.0 ? 0 : v >= 255.0 ? 255 : (uint8_t)v; }

/* One output pixel of PIL's bicubic_filter32RGB at source point (xin, yin);
 * 0 when the point is off the image (the pixel keeps the fill colour).
 * Four rows are filtered across, then the four results down; a row below
 * the image repeats the one above it. A zero fraction makes a cubic return
 * its second input exactly, so those rows or taps are skipped with no
 * change to the result (shears and translations hit this on one axis). */
static int sample_bicubic(const usi_image *im, double xin, double yin, uint8_t *out)
{
    int32_t W = im->width, H = im->height, c = im->channels;
    if (xin < 0.0 || xin >= W || yin < 0.0 || yin >= H) return 0;
    xin -= 0.5;
    yin -= 0.5;
    int32_t x = pil_floor(xin), y = pil_floor(yin);
    double dx = xin - x, dy = yin - y;
    x--;
    y--;
    size_t xi[4];
    for (int i = 0; i < 4; i++) xi[i] = (size_t)clampi(x + i, 0, W - 1) * (size_t)c;
    const uint8_t *row[4];
    row[0] = im->data + (size_t)clampi(y, 0, H - 1) * (size_t)im->stride;
    for (int j = 1; j < 4; j++)
        row[j] = y + j >= 0 && y + j < H ? im->data + (size_t)(y + j) * (size_t)im->stride : NULL;
    for (int32_t k = 0; k < c; k++) {
        double v[4] = {0, 0, 0, 0};
        for (int j = dy == 0.0 ? 1 : 0; j < (dy == 0.0 ? 2 : 4); j++) {
            const uint8_t *r = row[j] ? row[j] + k : NULL;
            if (r)
                v[j] = dx == 0.0 ? r[xi[1]] : cubic(r[xi[0]], r[xi[1]], r[xi[2]], r[xi[3]], dx);
            else if (j > 0)
                v[j] = v[j - 1];
        }
        out[k] = clip_trunc(dy == 0.0 ? v[1] : cubic(v[0], v[1], v[2], v[3], dy));
    }
    return 1;
}

/* PIL's bilinear_filter32RGB: two taps across, then down; truncated. */
static int sample_bilinear(const usi_image *im, double xin, double yin, uint8_t *out)
{
    int32_t W = im->width, H = im->height, c = im->channels;
    if (xin < 0.0 || xin >= W || yin < 0.0 || yin >= H) return 0;
    xin -= 0.5;
    yin -= 0.5;
    int32_t x = pil_floor(xin), y = pil_floor(yin);
    double dx = xin - x, dy = yin - y;
    size_t x0 = (size_t)clampi(x, 0, W - 1) * (size_t)c, x1 = (size_t)clampi(x + 1, 0, W - 1) * (size_t)c;
    const uint8_t *r0 = im->data + (size_t)clampi(y, 0, H - 1) * (size_t)im->stride;
    const uint8_t *r1 = y + 1 >= 0 && y + 1 < H ? im->data + (size_t)(y + 1) * (size_t)im->stride : NULL;
    for (int32_t k = 0; k < c; k++) {
        double v1 = r0[x0 + k] + (r0[x1 + k] - r0[x0 + k]) * dx;
        double v2 = r1 ? r1[x0 + k] + (r1[x1 + k] - r1[x0 + k]) * dx : v1;
        v1 = v1 + (v2 - v1) * dy;
        out[k] = (uint8_t)v1;
    }
    return 1;
}

void ra_affine(const usi_image *src, uint8_t *dst, const double m[6], int32_t interp,
               const uint8_t fill[3])
{
    int32_t W = src->width, H = src->height, c = src->channels;
    int (*sample)(const usi_image *, double, double, uint8_t *) =
        interp == USI_INTERP_BICUBIC ? sample_bicubic : sample_bilinear;
    for (int32_t y = 0; y < H; y++) {
        uint8_t *o = dst + (size_t)y * (size_t)W * (size_t)c;
        double yc = y + 0.5;
        for (int32_t x = 0; x < W; x++, o += c) {
            double xc = x + 0.5;
            /* PIL's affine_transform, term by term */
            double xs = m[0] * xc + m[1] * yc + m[2];
            double ys = m[3] * xc + m[4] * yc + m[5];
            if (!sample(src, xs, ys, o))
                for (int32_t k = 0; k < c; k++) o[k] = fill[c == 3 ? k : 0];
        }
    }
}

/* Python's round(v, 15): the double nearest the decimal rounded to 15
 * places; glibc's printf rounds the exact binary value as Python does. */
static double round15(double v)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.15f", v);
    return strtod(buf, NULL);
}

int ra_rotate_matrix(int32_t w, int32_t h, double deg, double m[6])
{
    double mod = fmod(deg, 360.0); /* Python's %: the sign of the divisor */
    if (mod < 0) mod += 360.0;
    if (mod == 0.0) return 0;
    double a = -(mod * (M_PI / 180.0)), cx = w / 2.0, cy = h / 2.0;
    m[0] = round15(cos(a));
    m[1] = round15(sin(a));
    m[3] = round15(-sin(a));
    m[4] = round15(cos(a));
    /* rotate()'s transform(-cx, -cy) with a zero offset, then + centre */
    m[2] = m[0] * -cx + m[1] * -cy + 0.0 + cx;
    m[5] = m[3] * -cx + m[4] * -cy + 0.0 + cy;
    return 1;
}

static const char *const op_names[RA_OP_COUNT][2] = {
    {"AutoContrast", "AutoContrast"}, {"Equalize", "Equalize"}, {"Invert", "Invert"},
    {"Rotate", "Rotate"}, {"Posterize", "PosterizeIncreasing"}, {"Solarize", "SolarizeIncreasing"},
    {"SolarizeAdd", "SolarizeAdd"}, {"Color", "ColorIncreasing"}, {"Contrast", "ContrastIncreasing"},
    {"Brightness", "BrightnessIncreasing"}, {"Sharpness", "SharpnessIncreasing"}, {"ShearX", "ShearX"},
    {"ShearY", "ShearY"}, {"TranslateXRel", "TranslateXRel"}, {"TranslateYRel", "TranslateYRel"},
};

const char *ra_op_name(int op, int increasing)
{
    return op >= 0 && op < RA_OP_COUNT ? op_names[op][increasing ? 1 : 0] : "?";
}

int ra_op_find(const char *name, int *increasing)
{
    for (int op = 0; op < RA_OP_COUNT; op++)
        for (int inc = 1; inc >= 0; inc--)
            if (!strcmp(op_names[op][inc], name)) {
                *increasing = inc;
                return op;
            }
    return -1;
}

static int is_enhance(int op)
{
    return op == RA_COLOR || op == RA_CONTRAST || op == RA_BRIGHTNESS || op == RA_SHARPNESS;
}

int ra_op_negates(int op, int increasing)
{
    return op == RA_ROTATE || op == RA_SHEAR_X || op == RA_SHEAR_Y || op == RA_TRANSLATE_X ||
           op == RA_TRANSLATE_Y || (increasing && is_enhance(op));
}

static void affine_in_place(const ra_settings *s, usi_image *im, uint8_t *scratch, const double m[6])
{
    ra_affine(im, scratch, m, s->interp, s->fill);
    size_t rs = (size_t)im->width * (size_t)im->channels;
    for (int32_t y = 0; y < im->height; y++)
        memcpy(im->data + (size_t)y * (size_t)im->stride, scratch + (size_t)y * rs, rs);
}

#define LEVEL_DENOM 10.0

void ra_apply_op(int op, double level, int negate, const ra_settings *s, usi_image *im, uint8_t *scratch)
{
    double sign = negate ? -1.0 : 1.0, v, m[6] = {1, 0, 0, 0, 1, 0};
    /* each argument is timm's *_level_to_arg, operation for operation */
    switch (op) {
    case RA_AUTO_CONTRAST: ra_auto_contrast(im); break;
    case RA_EQUALIZE: ra_equalize(im); break;
    case RA_INVERT: ra_invert(im); break;
    case RA_ROTATE:
        if (ra_rotate_matrix(im->width, im->height, sign * (level / LEVEL_DENOM * 30.0), m))
            affine_in_place(s, im, scratch, m);
        break;
    case RA_POSTERIZE: {
        int bits = (int)(level / LEVEL_DENOM * 4);
        ra_posterize(im, s->increasing ? 4 - bits : bits);
        break;
    }
    case RA_SOLARIZE: {
        int t = (int)(level / LEVEL_DENOM * 256);
        if (t > 256) t = 256;
        ra_solarize(im, s->increasing ? 256 - t : t);
        break;
    }
    case RA_SOLARIZE_ADD: {
        int add = (int)(level / LEVEL_DENOM * 110);
        ra_solarize_add(im, add > 128 ? 128 : add, 128);
        break;
    }
    case RA_COLOR:
    case RA_CONTRAST:
    case RA_BRIGHTNESS:
    case RA_SHARPNESS:
        if (s->increasing) {
            v = 1.0 + sign * (level / LEVEL_DENOM * 0.9);
            v = v < 0.1 ? 0.1 : v;
        } else {
            v = level / LEVEL_DENOM * 1.8 + 0.1;
        }
        if (op == RA_COLOR) ra_color(im, v);
        else if (op == RA_CONTRAST) ra_contrast(im, v);
        else if (op == RA_BRIGHTNESS) ra_brightness(im, v);
        else ra_sharpness(im, v, scratch);
        break;
    case RA_SHEAR_X:
    case RA_SHEAR_Y:
        v = sign * (level / LEVEL_DENOM * 0.3);
        m[op == RA_SHEAR_X ? 1 : 3] = v;
        affine_in_place(s, im, scratch, m);
        break;
    case RA_TRANSLATE_X:
    case RA_TRANSLATE_Y:
        v = sign * (level / LEVEL_DENOM * s->translate_pct);
        if (op == RA_TRANSLATE_X) m[2] = v * im->width;
        else m[5] = v * im->height;
        affine_in_place(s, im, scratch, m);
        break;
    default: break;
    }
}
