/* Max and average pooling over H, W of NCHW, with PyTorch's window rules
 * (ceil_mode windows may hang over the edge; count_include_pad counts the
 * padded zeros but not the overhang). Max backward finds the argmax again
 * instead of keeping indices. */
#include <float.h>

#include "backend/cpu/cpu.h"

typedef struct pool_dims {
    int64_t planes, H, W, OH, OW;
    int64_t kh, kw, sh, sw, ph, pw;
    int32_t count_pad;
} pool_dims;

static void dims_of(const usi_tensor *t, pool_dims *d)
{
    const usi_tensor *x = t->src[0];
    d->planes = x->shape[0] * x->shape[1];
    d->H = x->shape[2];
    d->W = x->shape[3];
    d->OH = t->shape[2];
    d->OW = t->shape[3];
    const struct usi_attrs_pool2d *a = &t->attrs.pool2d;
    d->kh = a->kernel[0];
    d->kw = a->kernel[1];
    d->sh = a->stride[0];
    d->sw = a->stride[1];
    d->ph = a->padding[0];
    d->pw = a->padding[1];
    d->count_pad = a->count_include_pad;
}

typedef struct window {
    int64_t h0, h1, w0, w1; /* clipped to the input */
    int64_t divisor;        /* for the average      */
} window;

static window window_at(const pool_dims *d, int64_t oh, int64_t ow)
{
    window w;
    int64_t h0 = oh * d->sh - d->ph, w0 = ow * d->sw - d->pw;
    int64_t h1 = h0 + d->kh, w1 = w0 + d->kw;
    if (h1 > d->H + d->ph) h1 = d->H + d->ph;
    if (w1 > d->W + d->pw) w1 = d->W + d->pw;
    int64_t padded = (h1 - h0) * (w1 - w0);
    w.h0 = h0 < 0 ? 0 : h0;
    w.w0 = w0 < 0 ? 0 : w0;
    w.h1 = h1 > d->H ? d->H : h1;
    w.w1 = w1 > d->W ? d->W : w1;
    w.divisor = d->count_pad ? padded : (w.h1 - w.h0) * (w.w1 - w.w0);
    return w;
}

/* out[P,OH,OW] = max or mean of x[P,H,W] over each window */
static void pool2d_forward(float *out, const float *x, const pool_dims *d, int is_max)
{
    #pragma omp parallel for schedule(static) if (d->planes * d->OH * d->OW * d->kh * d->kw > USI_PAR_MIN)
    for (int64_t p = 0; p < d->planes; p++) {
        const float *xp = x + p * d->H * d->W;
        for (int64_t oh = 0; oh < d->OH; oh++)
            for (int64_t ow = 0; ow < d->OW; ow++) {
                window w = window_at(d, oh, ow);
                float m = -FLT_MAX, s = 0;
                for (int64_t h = w.h0; h < w.h1; h++)
                    for (int64_t v = w.w0; v < w.w1; v++) {
                        float e = xp[h * d->W + v];
                        if (e > m) m = e;
                        s += e;
                    }
                out[(p * d->OH + oh) * d->OW + ow] =
                    is_max ? m : (w.divisor > 0 ? s / (float)w.divisor : 0);
            }
    }
}

/* dx[P,H,W] (+)= dout routed to each window's argmax, or spread evenly */
static void pool2d_backward(float *dx, const float *dout, const float *x,
                            const pool_dims *d, int is_max, int32_t acc)
{
    usi_grad_begin(dx, d->planes * d->H * d->W, acc);
    #pragma omp parallel for schedule(static) if (d->planes * d->OH * d->OW * d->kh * d->kw > USI_PAR_MIN)
    for (int64_t p = 0; p < d->planes; p++) {
        float *gp = dx + p * d->H * d->W;
        const float *xp = is_max ? x + p * d->H * d->W : NULL;
        for (int64_t oh = 0; oh < d->OH; oh++)
            for (int64_t ow = 0; ow < d->OW; ow++) {
                window w = window_at(d, oh, ow);
                float g = dout[(p * d->OH + oh) * d->OW + ow];
                if (is_max) {
                    int64_t best = -1;
                    float m = -FLT_MAX;
                    for (int64_t h = w.h0; h < w.h1; h++)
                        for (int64_t v = w.w0; v < w.w1; v++)
                            if (best < 0 || xp[h * d->W + v] > m) {
                                m = xp[h * d->W + v];
                                best = h * d->W + v;
                            }
                    if (best >= 0) gp[best] += g;
                    continue;
                }
                if (w.divisor <= 0) continue;
                g /= (float)w.divisor;
                for (int64_t h = w.h0; h < w.h1; h++)
                    for (int64_t v = w.w0; v < w.w1; v++) gp[h * d->W + v] += g;
            }
    }
}

usi_error *usi_cpu_pool2d_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    pool_dims d;
    dims_of(t, &d);
    pool2d_forward(t->data, t->src[0]->data, &d, t->attrs.pool2d.kind == USI_POOL_MAX);
    return NULL;
}

usi_error *usi_cpu_pool2d_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    if (!t->src[0]->grad) return NULL;
    pool_dims d;
    dims_of(t, &d);
    int is_max = t->attrs.pool2d.kind == USI_POOL_MAX;
    pool2d_backward(t->src[0]->grad, t->grad, is_max ? t->src[0]->data : NULL, &d,
                    is_max, acc[0]);
    return NULL;
}
