/* Element-wise ops, reductions, softmax, attention and losses against
 * float64; dropout and drop-path by their defining properties. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "device.h"
#include "harness.h"
#include "plugin/host.h"
#include "util/error.h"

#define L4(a, b, c, d) {.ndim = 4, .shape = {a, b, c, d}}
#define L3(a, b, c) {.ndim = 3, .shape = {a, b, c}}
#define L2(a, b) {.ndim = 2, .shape = {a, b}}
#define L1(a) {.ndim = 1, .shape = {a}}
#define W3(a, b, c) {.ndim = 3, .shape = {a, b, c}, .lo = -4, .hi = 4}
#define W2(a, b) {.ndim = 2, .shape = {a, b}, .lo = -4, .hi = 4}

static usi_tensor *b_act(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                         const op_case *c)
{
    return api->activation(g, x[0], c->iarg[0], c->farg[0]);
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

static void r_act(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                  double *out)
{
    for (int64_t i = 0; i < numel_of(nd, os); i++)
        out[i] = act_ref(c->iarg[0], c->farg[0], in[0][i]);
}

static usi_tensor *b_bin(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                         const op_case *c)
{
    return api->binary(g, c->iarg[0], x[0], x[1]);
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

static void r_bin(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                  double *out)
{
    for (int64_t i = 0; i < numel_of(nd, os); i++) {
        double a = in[0][bidx(i, nd, os, c->leaf[0].ndim, c->leaf[0].shape)];
        double b = in[1][bidx(i, nd, os, c->leaf[1].ndim, c->leaf[1].shape)];
        out[i] = c->iarg[0] == USI_BIN_ADD ? a + b : c->iarg[0] == USI_BIN_SUB ? a - b
               : c->iarg[0] == USI_BIN_MUL ? a * b : a / b;
    }
}

static usi_tensor *b_scale(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                           const op_case *c)
{
    return api->scale(g, x[0], c->farg[0]);
}

static void r_scale(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                    double *out)
{
    for (int64_t i = 0; i < numel_of(nd, os); i++) out[i] = c->farg[0] * in[0][i];
}

/* reduce iarg: op | keepdim | n axes | axes... */
static usi_tensor *b_reduce(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                            const op_case *c)
{
    return api->reduce(g, c->iarg[0], x[0], c->iarg[2], &c->iarg[3], c->iarg[1]);
}

static void r_reduce(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                     double *out)
{
    const leaf_spec *x = &c->leaf[0];
    uint32_t mask = 0;
    for (int32_t i = 0; i < c->iarg[2]; i++)
        mask |= 1u << (c->iarg[3 + i] < 0 ? c->iarg[3 + i] + x->ndim : c->iarg[3 + i]);
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
        out[o] += in[0][i] / (c->iarg[0] == USI_REDUCE_MEAN ? (double)count : 1.0);
    }
}

static usi_tensor *b_softmax(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                             const op_case *c)
{
    (void)c;
    return api->softmax(g, x[0]);
}

static void softmax_rows(const double *x, double *y, int64_t R, int64_t C)
{
    for (int64_t r = 0; r < R; r++) {
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < C; j++) m = fmax(m, x[r * C + j]);
        for (int64_t j = 0; j < C; j++) s += exp(x[r * C + j] - m);
        for (int64_t j = 0; j < C; j++) y[r * C + j] = exp(x[r * C + j] - m) / s;
    }
}

static void r_softmax(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                      double *out)
{
    (void)c;
    softmax_rows(in[0], out, numel_of(nd - 1, os), os[nd - 1]);
}

/* attention leaves q[B,Nq,D] k[B,Nk,D] v[B,Nk,Dv] bias[Nq,Nk]; farg[0] scale */
static usi_tensor *b_attn(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                          const op_case *c)
{
    return api->attention(g, x[0], x[1], x[2], c->iarg[0] ? x[3] : NULL, c->farg[0]);
}

static void r_attn(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
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
                s[i * Nk + j] = d * c->farg[0] + (c->iarg[0] ? in[3][i * Nk + j] : 0);
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

/* losses iarg[0]: 0 soft CE, 1 CE with labels, 2 KL; farg[0]: smoothing or T */
static usi_tensor *b_loss(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                          const op_case *c)
{
    if (c->iarg[0] == 0) return api->loss_soft_ce(g, x[0], x[1]);
    if (c->iarg[0] == 1) return api->loss_ce(g, x[0], x[1], c->farg[0]);
    return api->loss_kl(g, x[0], x[1], c->farg[0]);
}

static void r_loss(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                   double *out)
{
    (void)nd;
    (void)os;
    int64_t N = c->leaf[0].shape[0], C = c->leaf[0].shape[1];
    double T = c->iarg[0] == 2 ? c->farg[0] : 1, total = 0;
    double *zs = calloc((size_t)(2 * C), sizeof *zs), *p = calloc((size_t)(2 * C), sizeof *p);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t j = 0; j < C; j++) {
            zs[j] = in[0][n * C + j] / T;
            zs[C + j] = c->iarg[0] == 2 ? in[1][n * C + j] / T : 0;
        }
        softmax_rows(zs, p, 2, C);
        for (int64_t j = 0; j < C; j++) {
            double q;
            if (c->iarg[0] == 0) q = in[1][n * C + j];
            else if (c->iarg[0] == 1)
                q = (j == (int64_t)in[1][n] ? 1 - c->farg[0] : 0) + c->farg[0] / C;
            else q = p[C + j];
            total += c->iarg[0] == 2 ? q * (log(q) - log(p[j])) : -q * log(p[j]);
        }
    }
    out[0] = total / (double)N * T * T;
    free(zs);
    free(p);
}

static const op_case cases[] = {
    {"relu", 1, 1, {W3(3, 5, 7)}, b_act, r_act, {USI_ACT_RELU}, {0}, 0},
    {"relu6", 1, 1, {{.ndim = 3, .shape = {3, 5, 7}, .lo = -3, .hi = 9}}, b_act, r_act, {USI_ACT_RELU6}, {0}, 0},
    {"leaky_relu 0.1", 1, 1, {W3(3, 5, 7)}, b_act, r_act, {USI_ACT_LEAKY_RELU}, {0.1}, 0},
    {"gelu (erf)", 1, 1, {W3(3, 5, 7)}, b_act, r_act, {USI_ACT_GELU}, {0}, 0},
    {"gelu (tanh)", 1, 1, {W3(3, 5, 7)}, b_act, r_act, {USI_ACT_GELU_TANH}, {0}, 0},
    {"silu", 1, 1, {W3(3, 5, 7)}, b_act, r_act, {USI_ACT_SILU}, {0}, 0},
    {"hardswish", 1, 1, {W3(3, 5, 7)}, b_act, r_act, {USI_ACT_HARDSWISH}, {0}, 0},
    {"hardsigmoid", 1, 1, {W3(3, 5, 7)}, b_act, r_act, {USI_ACT_HARDSIGMOID}, {0}, 0},
    {"sigmoid", 1, 1, {W3(3, 5, 7)}, b_act, r_act, {USI_ACT_SIGMOID}, {0}, 0},
    {"tanh", 1, 1, {W3(3, 5, 7)}, b_act, r_act, {USI_ACT_TANH}, {0}, 0},
    /* Positive inputs only: finite differences need room on both sides of x
     * (h = 1e-3) and log's slope 1/x is steep near 0. */
    {"log", 1, 1, {{.ndim = 3, .shape = {3, 5, 7}, .lo = 0.05, .hi = 4}}, b_act, r_act, {USI_ACT_LOG}, {0}, 0},
    {"add broadcast [3,1,5]+[4,1]", 1, 2, {L3(3, 1, 5), L2(4, 1)}, b_bin, r_bin, {USI_BIN_ADD}, {0}, 0},
    {"sub same shape", 1, 2, {L3(3, 5, 7), L3(3, 5, 7)}, b_bin, r_bin, {USI_BIN_SUB}, {0}, 0},
    {"mul NCHW * [N,C,1,1]", 1, 2, {L4(3, 5, 7, 5), L4(3, 5, 1, 1)}, b_bin, r_bin, {USI_BIN_MUL}, {0}, 0},
    {"mul [1,5,1,1] * NCHW", 1, 2, {L4(1, 5, 1, 1), L4(3, 5, 7, 5)}, b_bin, r_bin, {USI_BIN_MUL}, {0}, 0},
    {"div by scalar-like [1]", 1, 2,
     {L3(3, 5, 7), {.ndim = 1, .shape = {1}, .lo = 0.5, .hi = 2}}, b_bin, r_bin, {USI_BIN_DIV}, {0}, 0},
    {"div [5,1] / [3,1,7]", 1, 2,
     {L2(5, 1), {.ndim = 3, .shape = {3, 1, 7}, .lo = 0.5, .hi = 2}}, b_bin, r_bin, {USI_BIN_DIV}, {0}, 0},
    {"scale", 1, 1, {L3(3, 5, 7)}, b_scale, r_scale, {0}, {-0.37}, 0},
    {"reduce mean (2,3) keepdim", 1, 1, {L4(3, 5, 7, 5)}, b_reduce, r_reduce,
     {USI_REDUCE_MEAN, 1, 2, 2, 3}, {0}, 0},
    {"reduce sum (0,2)", 1, 1, {L4(3, 5, 7, 5)}, b_reduce, r_reduce,
     {USI_REDUCE_SUM, 0, 2, 0, 2}, {0}, 0},
    {"reduce mean axis 1", 1, 1, {L3(3, 5, 7)}, b_reduce, r_reduce,
     {USI_REDUCE_MEAN, 0, 1, 1}, {0}, 0},
    {"reduce sum all", 1, 1, {L3(3, 5, 7)}, b_reduce, r_reduce,
     {USI_REDUCE_SUM, 0, 3, 0, 1, -1}, {0}, 0},
    {"softmax [3,7]", 1, 1, {W2(3, 7)}, b_softmax, r_softmax, {0}, {0}, 0},
    {"softmax [2,3,5]", 1, 1, {W3(2, 3, 5)}, b_softmax, r_softmax, {0}, {0}, 0},
    {"attention with bias", 1, 4,
     {L3(2, 3, 4), L3(2, 5, 4), L3(2, 5, 6), L2(3, 5)}, b_attn, r_attn, {1}, {0.5}, 0},
    {"attention no bias", 1, 3, {L3(1, 4, 3), L3(1, 2, 3), L3(1, 2, 5)}, b_attn, r_attn, {0}, {0.7}, 0},
    {"loss_soft_ce", 1, 2, {W2(3, 7), {.ndim = 2, .shape = {3, 7}, .lo = 0, .hi = 0.3}},
     b_loss, r_loss, {0}, {0}, 0},
    {"loss_ce smoothing 0.1", 1, 2,
     {W2(3, 7), {.ndim = 1, .shape = {3}, .dtype = USI_DTYPE_I32, .lo = 0, .hi = 7}},
     b_loss, r_loss, {1}, {0.1}, 0},
    {"loss_ce batch 1", 1, 2,
     {W2(1, 5), {.ndim = 1, .shape = {1}, .dtype = USI_DTYPE_I32, .lo = 0, .hi = 5}},
     b_loss, r_loss, {1}, {0.0}, 0},
    {"loss_kl T=2", 1, 2, {W2(3, 7), W2(3, 7)}, b_loss, r_loss, {2}, {2.0}, 0},
};

/* Dropout: kept values are x/(1-p), about p are zero, eval is identity, and
 * the gradient uses the same mask. */
static int test_dropout(int path)
{
    const usi_graph_api *api = usi_graph_api_get();
    const char *name = path ? "drop_path" : "dropout";
    int64_t shape[2] = {400, 50};
    double p = 0.3;
    int fails = 0;
    for (int training = 0; training < 2; training++) {
        usi_graph *g = usi_graph_new(test_device(), training, 7);
        usi_tensor *x = usi_graph_input(g, "x", USI_DTYPE_F32, 2, shape);
        usi_graph_set_requires_grad(x, 1);
        usi_tensor *y = path ? api->drop_path(g, x, p) : api->dropout(g, x, p);
        float *seed = malloc(400 * 50 * sizeof(float));
        for (int i = 0; i < 400 * 50; i++) seed[i] = 1.0f + (float)(i % 7);
        usi_graph_mark_output(y);
        usi_error *e = NULL;
        if (training) {
            e = usi_graph_set_loss(g, y);
            usi_graph_set_loss_seed(g, seed);
        }
        float *xd = test_host(400 * 50 * sizeof(float));
        for (int i = 0; i < 400 * 50; i++) xd[i] = 0.5f + (float)(i % 13);
        test_write(x, xd);
        if (!e) e = usi_graph_compile(g);
        if (!e) e = usi_graph_forward(g);
        if (!e && training) e = usi_graph_backward(g);
        if (e) {
            printf("FAIL %s: %s\n", name, usi_error_message(e));
            usi_error_free(e);
            fails++;
        } else {
            const float *yd = test_value(y), *gx = training ? test_grad(x) : NULL;
            int64_t zeros = 0, bad = 0;
            for (int i = 0; i < 400 * 50; i++) {
                float keep = training ? xd[i] / (float)(1 - p) : xd[i];
                if (yd[i] == 0) zeros++;
                else if (fabsf(yd[i] - keep) > 1e-5f * keep) bad++;
                if (training && fabsf(gx[i] - (yd[i] != 0 ? seed[i] / (float)(1 - p) : 0)) > 1e-5f)
                    bad++;
                if (path && yd[i] == 0 && yd[(i / 50) * 50] != 0) bad++;
            }
            double frac = (double)zeros / (400 * 50);
            if (bad || (training && fabs(frac - p) > 0.08) || (!training && zeros)) {
                printf("FAIL %s %s: %lld wrong elements, zero fraction %.3f (p %.2f)\n", name,
                       training ? "train" : "eval", (long long)bad, frac, p);
                fails++;
            } else {
                printf("ok   %s %s (zero fraction %.3f)\n", name, training ? "train" : "eval", frac);
            }
        }
        free(seed);
        usi_graph_free(g);
    }
    return fails;
}

int main(void)
{
    int fails = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) fails += run_case(&cases[i]);
    fails += test_dropout(0);
    fails += test_dropout(1);
    printf("%d failure(s)\n", fails);
    return fails ? 1 : 0;
}
