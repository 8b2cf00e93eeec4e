/* Softmax over the last axis and the losses built on log-softmax. Losses are
 * means over the batch (KL: batchmean times T^2, as the distillation recipe
 * uses it). */
#include <math.h>
#include <stdlib.h>

#include "backend/cpu/cpu.h"

/* out[R,C] = softmax(x[R,C]) along C */
static void softmax_forward(float *out, const float *x, int64_t R, int64_t C)
{
    #pragma omp parallel for schedule(static) if (R > 1 && R * C > USI_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C;
        float *yr = out + r * C;
        float m = xr[0];
        for (int64_t c = 1; c < C; c++) m = xr[c] > m ? xr[c] : m;
        double s = 0;
        for (int64_t c = 0; c < C; c++) {
            yr[c] = expf(xr[c] - m);
            s += yr[c];
        }
        float inv = (float)(1.0 / s);
        for (int64_t c = 0; c < C; c++) yr[c] *= inv;
    }
}

/* dx (+)= y * (dy - sum(dy * y)) */
static void softmax_backward(float *dx, const float *dy, const float *y, int64_t R,
                             int64_t C, int32_t acc)
{
    #pragma omp parallel for schedule(static) if (R > 1 && R * C > USI_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *g = dy + r * C, *yr = y + r * C;
        double dot = 0;
        for (int64_t c = 0; c < C; c++) dot += (double)g[c] * yr[c];
        float *d = dx + r * C;
        for (int64_t c = 0; c < C; c++) {
            float v = yr[c] * (g[c] - (float)dot);
            d[c] = acc ? d[c] + v : v;
        }
    }
}

usi_error *usi_cpu_softmax_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    int64_t C = t->shape[t->ndim - 1];
    softmax_forward(t->data, t->src[0]->data, t->numel / C, C);
    return NULL;
}

usi_error *usi_cpu_softmax_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    int64_t C = t->shape[t->ndim - 1];
    if (t->src[0]->grad)
        softmax_backward(t->src[0]->grad, t->grad, t->data, t->numel / C, C, acc[0]);
    return NULL;
}

/* logp[C] = log_softmax(x[C] * inv_t), in double for the losses' sums. */
static void log_softmax_row(double *logp, const float *x, int64_t C, double inv_t)
{
    double m = x[0] * inv_t, s = 0;
    for (int64_t c = 1; c < C; c++) m = x[c] * inv_t > m ? x[c] * inv_t : m;
    for (int64_t c = 0; c < C; c++) s += exp(x[c] * inv_t - m);
    double lse = m + log(s);
    for (int64_t c = 0; c < C; c++) logp[c] = x[c] * inv_t - lse;
}

/* Targets of row n: soft rows, or smoothed one-hot from labels. */
static double target_at(const usi_tensor *t, int64_t n, int64_t c, int64_t C)
{
    if (t->op == USI_OP_LOSS_SOFT_CE) return ((const float *)t->src[1]->data)[n * C + c];
    int32_t y = ((const int32_t *)t->src[1]->data)[n];
    double eps = t->attrs.loss_ce.smoothing;
    return (c == y ? 1.0 - eps : 0.0) + eps / (double)C;
}

static usi_error *check_labels(const usi_tensor *t, int64_t N, int64_t C)
{
    if (t->op != USI_OP_LOSS_CE) return NULL;
    const int32_t *y = t->src[1]->data;
    for (int64_t n = 0; n < N; n++)
        if (y[n] < 0 || y[n] >= C)
            return usi_error_new(USI_ERR_INVALID, "label %d of sample %lld is not in [0, %lld)",
                                 y[n], (long long)n, (long long)C);
    return NULL;
}

/* loss = -1/N sum_n sum_c q[n,c] log_softmax(z[n])[c] */
static usi_error *ce_fwd(usi_tensor *t)
{
    const usi_tensor *z = t->src[0];
    int64_t N = z->shape[0], C = z->shape[1];
    USI_TRY(check_labels(t, N, C));
    double *lp = malloc((size_t)C * sizeof *lp), total = 0;
    if (!lp) return usi_error_new(USI_ERR_NOMEM, "loss: out of memory");
    for (int64_t n = 0; n < N; n++) {
        log_softmax_row(lp, (const float *)z->data + n * C, C, 1.0);
        for (int64_t c = 0; c < C; c++) total -= target_at(t, n, c, C) * lp[c];
    }
    free(lp);
    *(float *)t->data = (float)(total / (double)N);
    return NULL;
}

/* dz = g/N (sum(q) p - q); dq = -g/N log p (soft targets only) */
static usi_error *ce_bwd(usi_tensor *t, const int32_t *acc)
{
    const usi_tensor *z = t->src[0];
    int64_t N = z->shape[0], C = z->shape[1];
    float *dz = z->grad, *dq = t->op == USI_OP_LOSS_SOFT_CE ? t->src[1]->grad : NULL;
    double g = t->grad[0] / (double)N;
    double *lp = malloc((size_t)C * sizeof *lp);
    if (!lp) return usi_error_new(USI_ERR_NOMEM, "loss: out of memory");
    for (int64_t n = 0; n < N; n++) {
        log_softmax_row(lp, (const float *)z->data + n * C, C, 1.0);
        double qs = 0;
        for (int64_t c = 0; c < C; c++) qs += target_at(t, n, c, C);
        for (int64_t c = 0; c < C; c++) {
            int64_t k = n * C + c;
            if (dz) {
                float v = (float)(g * (qs * exp(lp[c]) - target_at(t, n, c, C)));
                dz[k] = acc[0] ? dz[k] + v : v;
            }
            if (dq) {
                float v = (float)(-g * lp[c]);
                dq[k] = acc[1] ? dq[k] + v : v;
            }
        }
    }
    free(lp);
    return NULL;
}

usi_error *usi_cpu_loss_soft_ce_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    return ce_fwd(t);
}
usi_error *usi_cpu_loss_soft_ce_bwd(const usi_exec_ctx *ctx, usi_tensor *t,
                                    const int32_t *acc)
{
    (void)ctx;
    return ce_bwd(t, acc);
}
usi_error *usi_cpu_loss_ce_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    return ce_fwd(t);
}
usi_error *usi_cpu_loss_ce_bwd(const usi_exec_ctx *ctx, usi_tensor *t,
                               const int32_t *acc)
{
    (void)ctx;
    return ce_bwd(t, acc);
}

/* loss = T^2/N sum_n KL(softmax(t_n/T) || softmax(s_n/T)) */
usi_error *usi_cpu_loss_kl_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    const usi_tensor *s = t->src[0], *te = t->src[1];
    int64_t N = s->shape[0], C = s->shape[1];
    double T = t->attrs.loss_kl.temperature, total = 0;
    double *ls = malloc(2 * (size_t)C * sizeof *ls), *lt = ls + C;
    if (!ls) return usi_error_new(USI_ERR_NOMEM, "loss_kl: out of memory");
    for (int64_t n = 0; n < N; n++) {
        log_softmax_row(ls, (const float *)s->data + n * C, C, 1.0 / T);
        log_softmax_row(lt, (const float *)te->data + n * C, C, 1.0 / T);
        for (int64_t c = 0; c < C; c++) total += exp(lt[c]) * (lt[c] - ls[c]);
    }
    free(ls);
    *(float *)t->data = (float)(total * T * T / (double)N);
    return NULL;
}

/* ds = gT/N (p_s - p_t); dt = gT/N p_t (log p_t - log p_s - KL_n) */
usi_error *usi_cpu_loss_kl_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    const usi_tensor *s = t->src[0], *te = t->src[1];
    int64_t N = s->shape[0], C = s->shape[1];
    double T = t->attrs.loss_kl.temperature, g = t->grad[0] * T / (double)N;
    double *ls = malloc(2 * (size_t)C * sizeof *ls), *lt = ls + C;
    if (!ls) return usi_error_new(USI_ERR_NOMEM, "loss_kl: out of memory");
    for (int64_t n = 0; n < N; n++) {
        log_softmax_row(ls, (const float *)s->data + n * C, C, 1.0 / T);
        log_softmax_row(lt, (const float *)te->data + n * C, C, 1.0 / T);
        double kl = 0;
        for (int64_t c = 0; c < C; c++) kl += exp(lt[c]) * (lt[c] - ls[c]);
        for (int64_t c = 0; c < C; c++) {
            int64_t k = n * C + c;
            double pt = exp(lt[c]);
            if (s->grad) {
                float v = (float)(g * (exp(ls[c]) - pt));
                s->grad[k] = acc[0] ? s->grad[k] + v : v;
            }
            if (te->grad) {
                float v = (float)(g * pt * (lt[c] - ls[c] - kl));
                te->grad[k] = acc[1] ? te->grad[k] + v : v;
            }
        }
    }
    free(ls);
    return NULL;
}
