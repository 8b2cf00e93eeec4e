/* Element-wise ops, reductions, softmax, attention and losses: the cases'
 * graphs and their float64 references; dropout and drop-path by their
 * defining properties. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "op_case.h"

usi_tensor *b_act(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                         const op_case *c)
{
    return api->activation(g, x[0], c->a.act.kind, c->a.act.alpha);
}

static double act_ref(int32_t act, double a, double x)
{
    switch (act) {
    case USI_ACT_RELU: return x > 0 ? x : 0;
    case USI_ACT_RELU6: return fmin(fmax(x, 0), 6);
    case USI_ACT_LEAKY_RELU: return x > 0 ? x : a * x;
    case USI_ACT_GELU: return 0.5 * x * (1 + erf(x / sqrt(2)));
    case USI_ACT_GELU_TANH:
        return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case USI_ACT_SILU: return x / (1 + exp(-x));
    case USI_ACT_HARDSWISH: return x * fmin(fmax(x + 3, 0), 6) / 6;
    case USI_ACT_HARDSIGMOID: return fmin(fmax(x + 3, 0), 6) / 6;
    case USI_ACT_SIGMOID: return 1 / (1 + exp(-x));
    case USI_ACT_LOG: return log(fmax(x, 1e-30));
    default: return tanh(x);
    }
}

void r_act(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                  double *out)
{
    for (int64_t i = 0; i < numel_of(nd, os); i++)
        out[i] = act_ref(c->a.act.kind, c->a.act.alpha, in[0][i]);
}

usi_tensor *b_bin(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                         const op_case *c)
{
    return api->binary(g, c->a.binary.kind, x[0], x[1]);
}

/* Offset in an operand of rank nd for output element i, with broadcasting. */
static int64_t bidx(int64_t i, int32_t ond, const int64_t *os, int32_t nd, const int64_t *s)
{
    int64_t off = 0, st = 1;
    for (int32_t d = ond - 1; d >= 0; d--) {
        int64_t k = i % os[d];
        i /= os[d];
        int32_t j = d - (ond - nd);
        if (j < 0) continue;
        if (s[j] != 1) off += k * st;
        st *= s[j];
    }
    return off;
}

void r_bin(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                  double *out)
{
    int32_t kind = c->a.binary.kind;
    for (int64_t i = 0; i < numel_of(nd, os); i++) {
        double a = in[0][bidx(i, nd, os, c->leaf[0].ndim, c->leaf[0].shape)];
        double b = in[1][bidx(i, nd, os, c->leaf[1].ndim, c->leaf[1].shape)];
        out[i] = kind == USI_BIN_ADD ? a + b : kind == USI_BIN_SUB ? a - b
               : kind == USI_BIN_MUL ? a * b : a / b;
    }
}

usi_tensor *b_scale(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                           const op_case *c)
{
    return api->scale(g, x[0], c->a.scale.factor);
}

void r_scale(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                    double *out)
{
    for (int64_t i = 0; i < numel_of(nd, os); i++) out[i] = c->a.scale.factor * in[0][i];
}

usi_tensor *b_reduce(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                            const op_case *c)
{
    const struct reduce_args *a = &c->a.reduce;
    return api->reduce(g, a->kind, x[0], a->n_axes, a->axes, a->keepdim);
}

void r_reduce(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                     double *out)
{
    const struct reduce_args *a = &c->a.reduce;
    const leaf_spec *x = &c->leaf[0];
    uint32_t mask = 0;
    for (int32_t i = 0; i < a->n_axes; i++)
        mask |= 1u << (a->axes[i] < 0 ? a->axes[i] + x->ndim : a->axes[i]);
    int64_t n_in = numel_of(x->ndim, x->shape), count = 1;
    for (int32_t d = 0; d < x->ndim; d++)
        if (mask & (1u << d)) count *= x->shape[d];
    for (int64_t i = 0; i < numel_of(nd, os); i++) out[i] = 0;
    for (int64_t i = 0; i < n_in; i++) {
        int64_t rem = i, o = 0, st = 1;
        for (int32_t d = x->ndim - 1; d >= 0; d--) {
            int64_t k = rem % x->shape[d];
            rem /= x->shape[d];
            if (mask & (1u << d)) continue;
            o += k * st;
            st *= x->shape[d];
        }
        out[o] += in[0][i] / (a->kind == USI_REDUCE_MEAN ? (double)count : 1.0);
    }
}

usi_tensor *b_softmax(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                             const op_case *c)
{
    (void)c;
    return api->softmax(g, x[0]);
}

void softmax_rows(const double *x, double *y, int64_t R, int64_t C)
{
    for (int64_t r = 0; r < R; r++) {
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < C; j++) m = fmax(m, x[r * C + j]);
        for (int64_t j = 0; j < C; j++) s += exp(x[r * C + j] - m);
        for (int64_t j = 0; j < C; j++) y[r * C + j] = exp(x[r * C + j] - m) / s;
    }
}

void r_softmax(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                      double *out)
{
    (void)c;
    softmax_rows(in[0], out, numel_of(nd - 1, os), os[nd - 1]);
}

/* attention leaves q[B,Nq,D] k[B,Nk,D] v[B,Nk,Dv] bias[Nq,Nk] */
usi_tensor *b_attn(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                          const op_case *c)
{
    return api->attention(g, x[0], x[1], x[2], c->a.attention.bias ? x[3] : NULL,
                          c->a.attention.scale);
}

void r_attn(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                   double *out)
{
    (void)nd;
    (void)os;
    int64_t B = c->leaf[0].shape[0], Nq = c->leaf[0].shape[1], D = c->leaf[0].shape[2];
    int64_t Nk = c->leaf[1].shape[1], Dv = c->leaf[2].shape[2];
    double *s = calloc((size_t)(Nq * Nk), sizeof *s), *p = calloc((size_t)(Nq * Nk), sizeof *p);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t i = 0; i < Nq; i++)
            for (int64_t j = 0; j < Nk; j++) {
                double d = 0;
                for (int64_t k = 0; k < D; k++)
                    d += in[0][(b * Nq + i) * D + k] * in[1][(b * Nk + j) * D + k];
                s[i * Nk + j] = d * c->a.attention.scale + (c->a.attention.bias ? in[3][i * Nk + j] : 0);
            }
        softmax_rows(s, p, Nq, Nk);
        for (int64_t i = 0; i < Nq; i++)
            for (int64_t e = 0; e < Dv; e++) {
                double acc = 0;
                for (int64_t j = 0; j < Nk; j++) acc += p[i * Nk + j] * in[2][(b * Nk + j) * Dv + e];
                out[(b * Nq + i) * Dv + e] = acc;
            }
    }
    free(s);
    free(p);
}

usi_tensor *b_loss(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                          const op_case *c)
{
    const struct loss_args *a = &c->a.loss;
    if (a->kind == LOSS_SOFT_CE) return api->loss_soft_ce(g, x[0], x[1]);
    if (a->kind == LOSS_CE) return api->loss_ce(g, x[0], x[1], a->smoothing);
    return api->loss_kl(g, x[0], x[1], a->temperature);
}

void r_loss(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                   double *out)
{
    (void)nd;
    (void)os;
    const struct loss_args *a = &c->a.loss;
    int64_t N = c->leaf[0].shape[0], C = c->leaf[0].shape[1];
    double T = a->kind == LOSS_KL ? a->temperature : 1, total = 0;
    double *zs = calloc((size_t)(2 * C), sizeof *zs), *p = calloc((size_t)(2 * C), sizeof *p);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t j = 0; j < C; j++) {
            zs[j] = in[0][n * C + j] / T;
            zs[C + j] = a->kind == LOSS_KL ? in[1][n * C + j] / T : 0;
        }
        softmax_rows(zs, p, 2, C);
        for (int64_t j = 0; j < C; j++) {
            double q;
            if (a->kind == LOSS_SOFT_CE) q = in[1][n * C + j];
            else if (a->kind == LOSS_CE)
                q = (j == (int64_t)in[1][n] ? 1 - a->smoothing : 0) + a->smoothing / C;
            else q = p[C + j];
            total += a->kind == LOSS_KL ? q * (log(q) - log(p[j])) : -q * log(p[j]);
        }
    }
    out[0] = total / (double)N * T * T;
    free(zs);
    free(p);
}

/* dropout and drop_path: p of the elements (of the samples) are zero, the
 * kept ones are x/(1-p), eval is the identity, and the gradient goes through
 * the same mask as the forward. */
usi_tensor *b_dropout(const usi_graph_api *api, usi_graph *g, usi_tensor **x, const op_case *c)
{
    const struct dropout_args *a = &c->a.dropout;
    return a->path ? api->drop_path(g, x[0], a->p) : api->dropout(g, x[0], a->p);
}

/* Leaf 0 must hold no zeros (the case's range says so): a zero in the output
 * then means dropped. */
int p_dropout(const op_case *c, const char *who, const double *x, const float *y, int64_t n,
              const float *seed, const float *gx)
{
    double p = c->a.dropout.p, keep_scale = c->training ? 1 / (1 - p) : 1;
    int64_t row = c->leaf[0].shape[0] ? n / c->leaf[0].shape[0] : n, zeros = 0, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double keep = x[i] * keep_scale;
        if (y[i] == 0) zeros++;
        else if (fabs(y[i] - keep) > 1e-5 * fabs(keep)) bad++;
        if (gx && fabs(gx[i] - (y[i] != 0 ? seed[i] * keep_scale : 0)) > 1e-5 * (1 + fabs(seed[i])))
            bad++;
        /* drop_path: a sample is dropped whole */
        if (c->a.dropout.path && (y[i] == 0) != (y[(i / row) * row] == 0)) bad++;
    }
    double frac = (double)zeros / (double)n;
    /* binomial over 20,000 elements (drop_path: 400 samples): 0.08 is many sigmas */
    if (bad || (c->training && fabs(frac - p) > 0.08) || (!c->training && zeros)) {
        printf("FAIL %s: %lld wrong elements, zero fraction %.3f (p %.2f)\n", who,
               (long long)bad, frac, p);
        return 1;
    }
    return 0;
}
