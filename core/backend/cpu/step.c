/* Training-step kernels on the CPU: optimizers, EMA, gradient norm and
 * scaling over flat float buffers, and the teacher's input conversion. */
#include <math.h>

#include "backend/cpu/cpu.h"

// w, g, m, v: [n]
static void adamw_forward(const usi_optim_hp *hp, double wd, int64_t step, float *w, const float *g, float *m,
                          float *v, size_t n)
{
    double bc1 = 1.0 - pow(hp->beta1, (double)step);
    double bc2 = 1.0 - pow(hp->beta2, (double)step);
    float b1 = (float)hp->beta1, b2 = (float)hp->beta2;
    float decay = (float)(1.0 - hp->lr * wd);
    float step_size = (float)(hp->lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    float eps = (float)hp->eps;
#pragma omp parallel for simd if ((int64_t)n > USI_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        float denom = sqrtf(v[i]) * inv_sqrt_bc2 + eps;
        w[i] = w[i] * decay - step_size * m[i] / denom;
    }
}

// w, g, buf: [n]
static void sgd_forward(const usi_optim_hp *hp, double wd, int64_t step, float *w, const float *g, float *buf,
                        size_t n)
{
    float fwd = (float)wd, mom = (float)hp->momentum, lr = (float)hp->lr;
    int first = step == 1, nesterov = hp->nesterov;
#pragma omp parallel for simd if ((int64_t)n > USI_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + fwd * w[i];
        buf[i] = first ? d : mom * buf[i] + d;
        w[i] -= lr * (nesterov ? d + mom * buf[i] : buf[i]);
    }
}

// w, g, m, v: [n]; one trust ratio for the whole tensor
static void lamb_forward(const usi_optim_hp *hp, double wd, int64_t step, float *w, const float *g, float *m,
                         float *v, size_t n)
{
    double bc1 = 1.0 - pow(hp->beta1, (double)step);
    double bc2 = 1.0 - pow(hp->beta2, (double)step);
    float b1 = (float)hp->beta1, b2 = (float)hp->beta2, eps = (float)hp->eps, fwd = (float)wd;
    double w_norm = 0, u_norm = 0;
    /* Two passes: the trust ratio needs the norm of the whole update. */
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        float u = (float)(m[i] / bc1) / (sqrtf((float)(v[i] / bc2)) + eps) + fwd * w[i];
        w_norm += (double)w[i] * w[i];
        u_norm += (double)u * u;
    }
    w_norm = sqrt(w_norm);
    u_norm = sqrt(u_norm);
    double trust = (w_norm > 0 && u_norm > 0) ? w_norm / u_norm : 1.0;
    float scale = (float)(hp->lr * trust);
    for (size_t i = 0; i < n; i++) {
        float u = (float)(m[i] / bc1) / (sqrtf((float)(v[i] / bc2)) + eps) + fwd * w[i];
        w[i] -= scale * u;
    }
}

usi_error *usi_cpu_optim_step(usi_device *d, const usi_optim_args *a)
{
    (void)d;
    for (int32_t k = 0; k < a->n_segs; k++) {
        const usi_optim_seg *s = &a->segs[k];
        double wd = s->decays ? a->hp.weight_decay : 0.0;
        float *w = a->w + s->off, *s0 = a->s0 + s->off, *s1 = a->s1 ? a->s1 + s->off : NULL;
        const float *g = a->g + s->off;
        switch (a->hp.kind) {
        case USI_OPT_ADAMW: adamw_forward(&a->hp, wd, a->step, w, g, s0, s1, s->n); break;
        case USI_OPT_SGD: sgd_forward(&a->hp, wd, a->step, w, g, s0, s->n); break;
        case USI_OPT_LAMB: lamb_forward(&a->hp, wd, a->step, w, g, s0, s1, s->n); break;
        default: return usi_error_new(USI_ERR_INVALID, "unknown optimizer kind %d", a->hp.kind);
        }
    }
    return NULL;
}

// ema, w: [n]
usi_error *usi_cpu_ema_update(usi_device *d, float *ema, const float *w, size_t n, double decay)
{
    (void)d;
    float dd = (float)decay, one_minus = (float)(1.0 - decay);
#pragma omp parallel for simd if ((int64_t)n > USI_PAR_MIN)
    for (size_t i = 0; i < n; i++) ema[i] = dd * ema[i] + one_minus * w[i];
    return NULL;
}

usi_error *usi_cpu_sum_squares(usi_device *d, const float *x, size_t n, double *out)
{
    (void)d;
    double sq = 0;
#pragma omp parallel for simd reduction(+ : sq) if ((int64_t)n > USI_PAR_MIN)
    for (size_t i = 0; i < n; i++) sq += (double)x[i] * x[i];
    *out = sq;
    return NULL;
}

usi_error *usi_cpu_scale(usi_device *d, float *x, size_t n, double s)
{
    (void)d;
    float fs = (float)s;
#pragma omp parallel for simd if ((int64_t)n > USI_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= fs;
    return NULL;
}

/* One output coordinate's source taps along an axis of `size` pixels:
 * PyTorch's F.interpolate with align_corners=False and no antialias. */
typedef struct taps {
    int32_t i[4];
    float w[4];
    int n;
} taps;

static taps axis_taps(int32_t o, float ratio, int32_t size, int32_t interp)
{
    taps t = {{0}, {0}, 0};
    if (interp == USI_INTERP_NEAREST) {
        int32_t i = (int32_t)floorf((float)o * ratio);
        t.i[0] = i < size ? i : size - 1;
        t.w[0] = 1;
        t.n = 1;
        return t;
    }
    float f = ((float)o + 0.5f) * ratio - 0.5f;
    if (interp == USI_INTERP_BILINEAR) {
        if (f < 0) f = 0;
        int32_t i0 = (int32_t)f;
        t.i[0] = i0;
        t.i[1] = i0 + 1 < size ? i0 + 1 : size - 1;
        t.w[1] = f - (float)i0;
        t.w[0] = 1 - t.w[1];
        t.n = 2;
        return t;
    }
    /* Bicubic: Keys' convolution with A = -0.75 over four taps, indices
     * clamped to the image. */
    const float A = -0.75f;
    int32_t i0 = (int32_t)floorf(f);
    float x = f - (float)i0, x1 = x + 1, y = 1 - x, y1 = y + 1;
    t.w[0] = ((A * x1 - 5 * A) * x1 + 8 * A) * x1 - 4 * A;
    t.w[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    t.w[2] = ((A + 2) * y - (A + 3)) * y * y + 1;
    t.w[3] = ((A * y1 - 5 * A) * y1 + 8 * A) * y1 - 4 * A;
    for (int k = 0; k < 4; k++) {
        int32_t i = i0 - 1 + k;
        t.i[k] = i < 0 ? 0 : i >= size ? size - 1 : i;
    }
    t.n = 4;
    return t;
}

// src: [n, c, h, w] -> dst: [n, c, oh, ow]; dst = resize(a[ch]*src + b[ch])
usi_error *usi_cpu_image_convert(usi_device *d, float *dst, const float *src, int32_t n, int32_t c, int32_t h,
                                 int32_t w, int32_t oh, int32_t ow, int32_t interp, const float *a, const float *b)
{
    (void)d;
    size_t plane = (size_t)h * (size_t)w, oplane = (size_t)oh * (size_t)ow;
    float sy = (float)h / (float)oh, sx = (float)w / (float)ow;
#pragma omp parallel for if ((int64_t)n * c * (int64_t)oplane > USI_PAR_MIN)
    for (int32_t p = 0; p < n * c; p++) {
        const float *in = src + (size_t)p * plane;
        float *out = dst + (size_t)p * oplane;
        float ka = a[p % c], kb = b[p % c];
        if (oh == h && ow == w) {
            for (size_t k = 0; k < plane; k++) out[k] = in[k] * ka + kb;
            continue;
        }
        for (int32_t yo = 0; yo < oh; yo++) {
            taps ty = axis_taps(yo, sy, h, interp);
            for (int32_t xo = 0; xo < ow; xo++) {
                taps tx = axis_taps(xo, sx, w, interp);
                float acc = 0;
                for (int j = 0; j < ty.n; j++) {
                    float row = 0;
                    for (int k = 0; k < tx.n; k++) row += tx.w[k] * in[(size_t)ty.i[j] * (size_t)w + (size_t)tx.i[k]];
                    acc += ty.w[j] * row;
                }
                out[(size_t)yo * (size_t)ow + (size_t)xo] = acc * ka + kb;
            }
        }
    }
    return NULL;
}

// src: uint8 [n, h, w, 3] -> dst: [n, 3, h, w]; the loader's table of 256
// values per channel, so the floats are its own
usi_error *usi_cpu_u8_normalize(usi_device *d, float *dst, const uint8_t *src, int32_t n, int32_t h, int32_t w,
                                const float *mean, const float *std)
{
    (void)d;
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - mean[c]) / std[c];
    size_t plane = (size_t)h * (size_t)w;
#pragma omp parallel for if ((int64_t)n * 3 * (int64_t)plane > USI_PAR_MIN)
    for (int32_t i = 0; i < n; i++) {
        const uint8_t *px = src + (size_t)i * plane * 3;
        float *o = dst + (size_t)i * plane * 3;
        for (size_t p = 0; p < plane; p++) {
            o[p] = lut[0][px[3 * p]];
            o[plane + p] = lut[1][px[3 * p + 1]];
            o[2 * plane + p] = lut[2][px[3 * p + 2]];
        }
    }
    return NULL;
}
