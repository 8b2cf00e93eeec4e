/* Batch norm and layer norm on x viewed as [outer, C, inner]: batch norm
 * keeps statistics per channel c, layer norm per (outer, inner) position. */
#include <math.h>
#include <stdlib.h>

#include "backend/cpu/cpu.h"

void usi_cpu_norm_workspace(usi_tensor *t, int32_t training)
{
    (void)training;
    const usi_tensor *x = t->src[0];
    int64_t n = t->op == USI_OP_BATCH_NORM ? x->shape[1]
                                           : x->numel / x->shape[t->attrs.layer_norm.axis];
    /* mean, 1/std, and for batch norm the biased variance of the update */
    t->saved_bytes = (t->op == USI_OP_BATCH_NORM ? 3 : 2) * (size_t)n * sizeof(float);
}

static void view3(const usi_tensor *x, int32_t axis, int64_t *outer, int64_t *C,
                  int64_t *inner)
{
    *outer = usi_dims_prod(x, 0, axis);
    *C = x->shape[axis];
    *inner = usi_dims_prod(x, axis + 1, x->ndim);
}

/* out[O,C,I] = (x - mean[c]) * invstd[c] * w[c] + b[c]; with batch stats the
 * mean and biased variance come from x, else from running[c]. */
static void batchnorm_forward(float *out, float *mean, float *invstd,
                              float *var, const float *x, const float *w, const float *b,
                              const float *rmean, const float *rvar,
                              int64_t O, int64_t C, int64_t I, double eps,
                              int batch_stats)
{
    #pragma omp parallel for schedule(static) if (O * C * I > USI_PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
        double m, v;
        if (batch_stats) {
            double s = 0, ss = 0;
            for (int64_t o = 0; o < O; o++) {
                const float *xp = x + (o * C + c) * I;
                float ps = 0;
                #pragma omp simd reduction(+ : ps)
                for (int64_t i = 0; i < I; i++) ps += xp[i];
                s += ps;
            }
            m = s / (double)(O * I);
            float fm0 = (float)m;
            for (int64_t o = 0; o < O; o++) {
                const float *xp = x + (o * C + c) * I;
                float pss = 0;
                #pragma omp simd reduction(+ : pss)
                for (int64_t i = 0; i < I; i++) pss += (xp[i] - fm0) * (xp[i] - fm0);
                ss += pss;
            }
            v = ss / (double)(O * I);
        } else {
            m = rmean[c];
            v = rvar[c];
        }
        float is = (float)(1.0 / sqrt(v + eps));
        mean[c] = (float)m;
        invstd[c] = is;
        var[c] = (float)v;
        float scale = w ? w[c] * is : is, shift = b ? b[c] : 0.0f;
        float fm = (float)m;
        for (int64_t o = 0; o < O; o++) {
            const float *xp = x + (o * C + c) * I;
            float *yp = out + (o * C + c) * I;
            #pragma omp simd
            for (int64_t i = 0; i < I; i++) yp[i] = (xp[i] - fm) * scale + shift;
        }
    }
}

/* ---- batch norm over every rank (ctx->coll, dist.sync_bn) ----
 * Forward: each rank sums per channel its x and its squares, and one sum
 * over ranks of [count, sum x[C], sum x^2[C]] gives every rank the whole
 * batch's mean and biased variance. The squares are taken about the rank's
 * own float mean K, as the local kernel takes them, and shifted back
 * exactly in double: sum x^2 = q + K (2 s - n K), q = sum (x - K)^2; so the
 * variance sum x^2 / N - mean^2 cancels only in double (it loses
 * log10(1 + mean^2 / var) of its 16 digits, where float sums would lose
 * them of 7). An idle rank adds zeros and a count of 0. */
static usi_error *batchnorm_forward_sync(usi_collective *coll, float *out, float *mean, float *invstd,
                                         float *var, const float *x, const float *w, const float *b,
                                         int64_t O, int64_t C, int64_t I, double eps, double *count)
{
    double *buf = calloc((size_t)(1 + 2 * C), sizeof *buf);
    if (!buf) return usi_error_new(USI_ERR_NOMEM, "batch norm: out of memory for %lld channels", (long long)C);
    double *S = buf + 1, *Q = S + C, n = coll->idle ? 0.0 : (double)(O * I);
    buf[0] = n;
    if (n > 0) {
        #pragma omp parallel for schedule(static) if (O * C * I > USI_PAR_MIN)
        for (int64_t c = 0; c < C; c++) {
            double s = 0, q = 0;
            for (int64_t o = 0; o < O; o++) {
                const float *xp = x + (o * C + c) * I;
                float ps = 0;
                #pragma omp simd reduction(+ : ps)
                for (int64_t i = 0; i < I; i++) ps += xp[i];
                s += ps;
            }
            float K = (float)(s / n);
            for (int64_t o = 0; o < O; o++) {
                const float *xp = x + (o * C + c) * I;
                float pq = 0;
                #pragma omp simd reduction(+ : pq)
                for (int64_t i = 0; i < I; i++) pq += (xp[i] - K) * (xp[i] - K);
                q += pq;
            }
            S[c] = s;
            Q[c] = q + (double)K * (2.0 * s - n * (double)K);
        }
    }
    usi_error *e = coll->sum_host(coll, buf, (int32_t)(1 + 2 * C));
    double N = buf[0];
    *count = N;
    if (e) {
        free(buf);
        return e;
    }
    #pragma omp parallel for schedule(static) if (O * C * I > USI_PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
        double m = N > 0 ? S[c] / N : 0.0, v = N > 0 ? Q[c] / N - m * m : 0.0;
        if (v < 0) v = 0;
        float is = (float)(1.0 / sqrt(v + eps)), fm = (float)m;
        mean[c] = fm;
        invstd[c] = is;
        var[c] = (float)v;
        float scale = w ? w[c] * is : is, shift = b ? b[c] : 0.0f;
        for (int64_t o = 0; o < O; o++) {
            const float *xp = x + (o * C + c) * I;
            float *yp = out + (o * C + c) * I;
            #pragma omp simd
            for (int64_t i = 0; i < I; i++) yp[i] = (xp[i] - fm) * scale + shift;
        }
    }
    free(buf);
    return NULL;
}

usi_error *usi_cpu_batch_norm_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    const usi_tensor *x = t->src[0];
    int64_t O, C, I;
    view3(x, 1, &O, &C, &I);
    float *mean = t->saved, *invstd = mean + C, *var = invstd + C;
    int batch_stats = t->attrs.batch_norm.batch_stats;
    float *rm = t->src[3] ? t->src[3]->data : NULL;
    float *rv = t->src[4] ? t->src[4]->data : NULL;
    /* the count of the statistics: this batch's, or every rank's */
    double n = (double)(O * I);
    if (batch_stats && ctx->coll)
        USI_TRY(batchnorm_forward_sync(ctx->coll, t->data, mean, invstd, var, x->data, usi_src_f32(t, 1),
                                       usi_src_f32(t, 2), O, C, I, t->attrs.batch_norm.eps, &n));
    else
        batchnorm_forward(t->data, mean, invstd, var, x->data, usi_src_f32(t, 1), usi_src_f32(t, 2), rm, rv, O,
                          C, I, t->attrs.batch_norm.eps, batch_stats);
    /* Every rank idle: nothing was trained on, as when no rank runs. */
    if (batch_stats && rm && n > 0) {
        /* unbiased with the count of the statistics (every rank's: as
         * PyTorch's SyncBatchNorm, batch_norm_gather_stats_with_counts) */
        double m = t->attrs.batch_norm.momentum;
        double unbias = n > 1 ? n / (n - 1) : 1.0;
        for (int64_t c = 0; c < C; c++) {
            rm[c] = (float)((1 - m) * rm[c] + m * mean[c]);
            rv[c] = (float)((1 - m) * rv[c] + m * var[c] * unbias);
        }
        if (t->src[5]) ++*(int64_t *)t->src[5]->data;
    }
    return NULL;
}

/* With batch statistics the mean and variance depend on x:
 * dx = invstd/M * (M*dxh - sum dxh - xh * sum(dxh*xh)), dxh = dy*w. */
static void batchnorm_backward(float *dx, float *dw, float *db, const float *dy,
                               const float *x, const float *w, const float *mean,
                               const float *invstd, int64_t O, int64_t C, int64_t I,
                               int batch_stats, const int32_t *acc)
{
    double M = (double)(O * I);
    #pragma omp parallel for schedule(static) if (O * C * I > USI_PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
        double sdy = 0, sdyxh = 0;
        float m = mean[c], is = invstd[c], wc = w ? w[c] : 1.0f;
        for (int64_t o = 0; o < O; o++) {
            const float *xp = x + (o * C + c) * I, *gp = dy + (o * C + c) * I;
            float p1 = 0, p2 = 0;
            #pragma omp simd reduction(+ : p1, p2)
            for (int64_t i = 0; i < I; i++) {
                p1 += gp[i];
                p2 += gp[i] * (xp[i] - m);
            }
            sdy += p1;
            sdyxh += (double)p2 * is;
        }
        if (dw) dw[c] = (acc[1] ? dw[c] : 0.0f) + (float)sdyxh;
        if (db) db[c] = (acc[2] ? db[c] : 0.0f) + (float)sdy;
        if (!dx) continue;
        float a = (float)(sdy / M), bb = (float)(sdyxh / M);
        float k1 = batch_stats ? a : 0.0f, k2 = batch_stats ? bb * is : 0.0f, ws = wc * is;
        for (int64_t o = 0; o < O; o++) {
            const float *xp = x + (o * C + c) * I, *gp = dy + (o * C + c) * I;
            float *dp = dx + (o * C + c) * I;
            if (acc[0]) {
                #pragma omp simd
                for (int64_t i = 0; i < I; i++) dp[i] += (gp[i] - k1 - (xp[i] - m) * k2) * ws;
            } else {
                #pragma omp simd
                for (int64_t i = 0; i < I; i++) dp[i] = (gp[i] - k1 - (xp[i] - m) * k2) * ws;
            }
        }
    }
}

/* Backward over every rank: the sums of dy and dy*xh that dx needs are the
 * whole batch's, summed over ranks with the count; dw and db stay this
 * rank's sums, which the gradient all-reduce adds up. Each rank's dy is of
 * its own mean loss, W times its share of the mean over all ranks, so dx
 * and every gradient before it are W times the share too: the trainer's
 * division of the summed gradients by W gives the gradient of one process
 * over the whole batch. */
static usi_error *batchnorm_backward_sync(usi_collective *coll, float *dx, float *dw, float *db, const float *dy,
                                          const float *x, const float *w, const float *mean, const float *invstd,
                                          int64_t O, int64_t C, int64_t I, const int32_t *acc)
{
    double *buf = calloc((size_t)(1 + 2 * C), sizeof *buf);
    if (!buf) return usi_error_new(USI_ERR_NOMEM, "batch norm: out of memory for %lld channels", (long long)C);
    double *S = buf + 1, *P = S + C;
    int idle = coll->idle;
    buf[0] = idle ? 0.0 : (double)(O * I);
    #pragma omp parallel for schedule(static) if (O * C * I > USI_PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
        double sdy = 0, sdyxh = 0;
        float m = mean[c], is = invstd[c];
        for (int64_t o = 0; o < O; o++) {
            const float *xp = x + (o * C + c) * I, *gp = dy + (o * C + c) * I;
            float p1 = 0, p2 = 0;
            #pragma omp simd reduction(+ : p1, p2)
            for (int64_t i = 0; i < I; i++) {
                p1 += gp[i];
                p2 += gp[i] * (xp[i] - m);
            }
            sdy += p1;
            sdyxh += (double)p2 * is;
        }
        if (dw) dw[c] = (acc[1] ? dw[c] : 0.0f) + (float)sdyxh;
        if (db) db[c] = (acc[2] ? db[c] : 0.0f) + (float)sdy;
        S[c] = idle ? 0.0 : sdy;
        P[c] = idle ? 0.0 : sdyxh;
    }
    usi_error *e = coll->sum_host(coll, buf, (int32_t)(1 + 2 * C));
    if (e) {
        free(buf);
        return e;
    }
    double M = buf[0];
    #pragma omp parallel for schedule(static) if (O * C * I > USI_PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
        float m = mean[c], is = invstd[c], wc = w ? w[c] : 1.0f;
        float k1 = M > 0 ? (float)(S[c] / M) : 0.0f, k2 = M > 0 ? (float)(P[c] / M) * is : 0.0f, ws = wc * is;
        for (int64_t o = 0; o < O; o++) {
            const float *xp = x + (o * C + c) * I, *gp = dy + (o * C + c) * I;
            float *dp = dx + (o * C + c) * I;
            if (acc[0]) {
                #pragma omp simd
                for (int64_t i = 0; i < I; i++) dp[i] += (gp[i] - k1 - (xp[i] - m) * k2) * ws;
            } else {
                #pragma omp simd
                for (int64_t i = 0; i < I; i++) dp[i] = (gp[i] - k1 - (xp[i] - m) * k2) * ws;
            }
        }
    }
    free(buf);
    return NULL;
}

usi_error *usi_cpu_batch_norm_bwd(const usi_exec_ctx *ctx, usi_tensor *t,
                                  const int32_t *acc)
{
    const usi_tensor *x = t->src[0];
    int64_t O, C, I;
    view3(x, 1, &O, &C, &I);
    const float *mean = t->saved, *invstd = mean + C;
    float *dx = usi_src_grad(t, 0);
    /* Without dx (on every rank alike: the graphs are the same) there is
     * nothing to sum over ranks. */
    if (t->attrs.batch_norm.batch_stats && ctx->coll && dx)
        return batchnorm_backward_sync(ctx->coll, dx, usi_src_grad(t, 1), usi_src_grad(t, 2), t->grad, x->data,
                                       usi_src_f32(t, 1), mean, invstd, O, C, I, acc);
    batchnorm_backward(dx, usi_src_grad(t, 1), usi_src_grad(t, 2),
                       t->grad, x->data, usi_src_f32(t, 1), mean, invstd, O, C, I,
                       t->attrs.batch_norm.batch_stats, acc);
    return NULL;
}

/* out = (x - mean) * rstd * w[c] + b[c], statistics over C at each (o, i). */
static void layernorm_forward(float *out, float *mean, float *rstd, const float *x,
                              const float *w, const float *b, int64_t O, int64_t C,
                              int64_t I, double eps)
{
    #pragma omp parallel for schedule(static) if (O * C * I > USI_PAR_MIN)
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) {
            const float *xp = x + o * C * I + i;
            double s = 0, ss = 0;
            for (int64_t c = 0; c < C; c++) s += xp[c * I];
            double m = s / (double)C;
            for (int64_t c = 0; c < C; c++) ss += (xp[c * I] - m) * (xp[c * I] - m);
            float r = (float)(1.0 / sqrt(ss / (double)C + eps)), fm = (float)m;
            mean[o * I + i] = fm;
            rstd[o * I + i] = r;
            float *yp = out + o * C * I + i;
            for (int64_t c = 0; c < C; c++)
                yp[c * I] = (xp[c * I] - fm) * r * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
        }
}

usi_error *usi_cpu_layer_norm_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    const usi_tensor *x = t->src[0];
    int64_t O, C, I;
    view3(x, t->attrs.layer_norm.axis, &O, &C, &I);
    float *mean = t->saved, *rstd = mean + O * I;
    layernorm_forward(t->data, mean, rstd, x->data, usi_src_f32(t, 1),
                      usi_src_f32(t, 2), O, C, I, t->attrs.layer_norm.eps);
    return NULL;
}

/* dx = rstd * (dxh - mean_c(dxh) - xh * mean_c(dxh*xh)), dxh = dy * w[c]. */
static void layernorm_backward(float *dx, float *dw, float *db, const float *dy,
                               const float *x, const float *w, const float *mean,
                               const float *rstd, int64_t O, int64_t C, int64_t I,
                               const int32_t *acc)
{
    if (dx) {
        #pragma omp parallel for schedule(static) if (O * C * I > USI_PAR_MIN)
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < I; i++) {
                int64_t base = o * C * I + i;
                float m = mean[o * I + i], r = rstd[o * I + i];
                double s1 = 0, s2 = 0;
                for (int64_t c = 0; c < C; c++) {
                    float g = dy[base + c * I] * (w ? w[c] : 1.0f);
                    s1 += g;
                    s2 += (double)g * (x[base + c * I] - m) * r;
                }
                float a = (float)(s1 / (double)C), bb = (float)(s2 / (double)C);
                for (int64_t c = 0; c < C; c++) {
                    int64_t k = base + c * I;
                    float g = dy[k] * (w ? w[c] : 1.0f);
                    float v = r * (g - a - (x[k] - m) * r * bb);
                    dx[k] = acc[0] ? dx[k] + v : v;
                }
            }
    }
    if (!dw && !db) return;
    #pragma omp parallel for schedule(static) if (O * C * I > USI_PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
        double sw = 0, sb = 0;
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < I; i++) {
                int64_t k = o * C * I + c * I + i;
                sw += (double)dy[k] * (x[k] - mean[o * I + i]) * rstd[o * I + i];
                sb += dy[k];
            }
        if (dw) dw[c] = (acc[1] ? dw[c] : 0.0f) + (float)sw;
        if (db) db[c] = (acc[2] ? db[c] : 0.0f) + (float)sb;
    }
}

usi_error *usi_cpu_layer_norm_bwd(const usi_exec_ctx *ctx, usi_tensor *t,
                                  const int32_t *acc)
{
    (void)ctx;
    const usi_tensor *x = t->src[0];
    int64_t O, C, I;
    view3(x, t->attrs.layer_norm.axis, &O, &C, &I);
    const float *mean = t->saved, *rstd = mean + O * I;
    layernorm_backward(usi_src_grad(t, 0), usi_src_grad(t, 1), usi_src_grad(t, 2),
                       t->grad, x->data, usi_src_f32(t, 1), mean, rstd, O, C, I, acc);
    return NULL;
}
