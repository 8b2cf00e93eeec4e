/* Convolution, linear, matmul, normalisations and pooling against float64. */
#include <math.h>
#include <stdio.h>

#include "harness.h"

#define L4(a, b, c, d) {.ndim = 4, .shape = {a, b, c, d}}
#define L3(a, b, c) {.ndim = 3, .shape = {a, b, c}}
#define L2(a, b) {.ndim = 2, .shape = {a, b}}
#define L1(a) {.ndim = 1, .shape = {a}}

/* conv iarg: stride h,w | pad h,w | dilation h,w | groups | has bias */
static usi_tensor *b_conv(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                          const op_case *c)
{
    usi_conv2d_desc d = {sizeof d, {c->iarg[0], c->iarg[1]}, {c->iarg[2], c->iarg[3]},
                         {c->iarg[4], c->iarg[5]}, c->iarg[6]};
    return api->conv2d(g, x[0], x[1], c->iarg[7] ? x[2] : NULL, &d);
}

static void r_conv(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                   double *out)
{
    (void)nd;
    const int64_t *xs = c->leaf[0].shape, *ws = c->leaf[1].shape;
    int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3], O = ws[0], KH = ws[2], KW = ws[3];
    int64_t G = c->iarg[6], Cg = C / G, Og = O / G, OH = os[2], OW = os[3];
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double s = c->iarg[7] ? in[2][o] : 0;
                    int64_t g = o / Og;
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int64_t kh = 0; kh < KH; kh++)
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t h = oh * c->iarg[0] - c->iarg[2] + kh * c->iarg[4];
                                int64_t w = ow * c->iarg[1] - c->iarg[3] + kw * c->iarg[5];
                                if (h < 0 || h >= H || w < 0 || w >= W) continue;
                                s += in[0][((n * C + g * Cg + ci) * H + h) * W + w] *
                                     in[1][((o * Cg + ci) * KH + kh) * KW + kw];
                            }
                    out[((n * O + o) * OH + oh) * OW + ow] = s;
                }
}

/* conv then an eval-mode batch norm: the engine folds the norm into the
 * conv. Leaves: x w b gamma beta mean var; conv iarg as above. */
static usi_tensor *b_conv_bn(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                             const op_case *c)
{
    usi_tensor *y = b_conv(api, g, x, c);
    return api->batch_norm(g, y, x[3], x[4], x[5], x[6], NULL, 0.1, 1e-3);
}

static void r_conv_bn(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                      double *out)
{
    r_conv(c, in, nd, os, out);
    int64_t N = os[0], O = os[1], I = os[2] * os[3];
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < I; i++) {
                double *v = &out[(n * O + o) * I + i];
                *v = (*v - in[5][o]) / sqrt(in[6][o] + 1e-3) * (in[3] ? in[3][o] : 1) +
                     (in[4] ? in[4][o] : 0);
            }
}

static usi_tensor *b_linear(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                            const op_case *c)
{
    return api->linear(g, x[0], x[1], c->iarg[0] ? x[2] : NULL);
}

static void r_linear(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                     double *out)
{
    int64_t O = c->leaf[1].shape[0], I = c->leaf[1].shape[1];
    int64_t M = numel_of(nd, os) / O;
    for (int64_t m = 0; m < M; m++)
        for (int64_t o = 0; o < O; o++) {
            double s = c->iarg[0] ? in[2][o] : 0;
            for (int64_t i = 0; i < I; i++) s += in[0][m * I + i] * in[1][o * I + i];
            out[m * O + o] = s;
        }
}

static usi_tensor *b_matmul(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                            const op_case *c)
{
    (void)c;
    return api->matmul(g, x[0], x[1]);
}

/* Offset of batch index `bi` of the output in an operand of rank nd, with
 * broadcasting of its leading (batch) dims. */
static int64_t bcast_off(int64_t bi, int32_t ond, const int64_t *os, int32_t nd,
                         const int64_t *s)
{
    int64_t off = 0, st = s[nd - 2] * s[nd - 1];
    for (int32_t d = ond - 3; d >= 0; d--) {
        int64_t i = bi % os[d];
        bi /= os[d];
        int32_t k = d - (ond - nd);
        if (k < 0) continue;
        if (s[k] != 1) off += i * st;
        st *= s[k];
    }
    return off;
}

static void r_matmul(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                     double *out)
{
    const leaf_spec *a = &c->leaf[0], *b = &c->leaf[1];
    int64_t M = os[nd - 2], N = os[nd - 1], K = a->shape[a->ndim - 1];
    int64_t B = numel_of(nd - 2, os);
    for (int64_t bi = 0; bi < B; bi++) {
        const double *A = in[0] + bcast_off(bi, nd, os, a->ndim, a->shape);
        const double *Bm = in[1] + bcast_off(bi, nd, os, b->ndim, b->shape);
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++) s += A[m * K + k] * Bm[k * N + n];
                out[(bi * M + m) * N + n] = s;
            }
    }
}

/* bn leaves: x w b rm rv nbt; farg: momentum, eps */
static usi_tensor *b_bn(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                        const op_case *c)
{
    return api->batch_norm(g, x[0], x[1], x[2], x[3], x[4], x[5], c->farg[0], c->farg[1]);
}

static void r_bn(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                 double *out)
{
    int64_t N = os[0], C = os[1], I = numel_of(nd, os) / (N * C);
    for (int64_t ch = 0; ch < C; ch++) {
        double m = 0, v = 0;
        if (c->training) {
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < I; i++) m += in[0][(n * C + ch) * I + i];
            m /= (double)(N * I);
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < I; i++) {
                    double d = in[0][(n * C + ch) * I + i] - m;
                    v += d * d;
                }
            v /= (double)(N * I);
        } else {
            m = in[3][ch];
            v = in[4][ch];
        }
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < I; i++) {
                int64_t k = (n * C + ch) * I + i;
                out[k] = (in[0][k] - m) / sqrt(v + c->farg[1]) * (in[1] ? in[1][ch] : 1) +
                         (in[2] ? in[2][ch] : 0);
            }
    }
}

/* ln iarg[0]: axis; farg[0]: eps */
static usi_tensor *b_ln(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                        const op_case *c)
{
    return api->layer_norm(g, x[0], x[1], x[2], c->iarg[0], c->farg[0]);
}

static void r_ln(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                 double *out)
{
    int32_t ax = c->iarg[0] < 0 ? c->iarg[0] + nd : c->iarg[0];
    int64_t O = numel_of(ax, os), C = os[ax], I = numel_of(nd - ax - 1, os + ax + 1);
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) {
            double m = 0, v = 0;
            for (int64_t ch = 0; ch < C; ch++) m += in[0][(o * C + ch) * I + i];
            m /= (double)C;
            for (int64_t ch = 0; ch < C; ch++) {
                double d = in[0][(o * C + ch) * I + i] - m;
                v += d * d;
            }
            v /= (double)C;
            for (int64_t ch = 0; ch < C; ch++) {
                int64_t k = (o * C + ch) * I + i;
                out[k] = (in[0][k] - m) / sqrt(v + c->farg[0]) * (in[1] ? in[1][ch] : 1) +
                         (in[2] ? in[2][ch] : 0);
            }
        }
}

/* pool iarg: kind | k h,w | s h,w | p h,w | ceil | count_include_pad */
static usi_tensor *b_pool(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                          const op_case *c)
{
    usi_pool2d_desc d = {sizeof d, c->iarg[0], {c->iarg[1], c->iarg[2]}, {c->iarg[3], c->iarg[4]},
                         {c->iarg[5], c->iarg[6]}, c->iarg[7], c->iarg[8]};
    return api->pool2d(g, x[0], &d);
}

static void r_pool(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                   double *out)
{
    (void)nd;
    const int64_t *xs = c->leaf[0].shape;
    int64_t P = xs[0] * xs[1], H = xs[2], W = xs[3], OH = os[2], OW = os[3];
    for (int64_t p = 0; p < P; p++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                double m = -INFINITY, s = 0;
                int64_t valid = 0, inpad = 0;
                for (int64_t kh = 0; kh < c->iarg[1]; kh++)
                    for (int64_t kw = 0; kw < c->iarg[2]; kw++) {
                        int64_t h = oh * c->iarg[3] - c->iarg[5] + kh;
                        int64_t w = ow * c->iarg[4] - c->iarg[6] + kw;
                        /* count_include_pad counts padding, not the ceil overhang */
                        if (h < H + c->iarg[5] && w < W + c->iarg[6]) inpad++;
                        if (h < 0 || h >= H || w < 0 || w >= W) continue;
                        double e = in[0][(p * H + h) * W + w];
                        m = e > m ? e : m;
                        s += e;
                        valid++;
                    }
                out[(p * OH + oh) * OW + ow] =
                    c->iarg[0] == USI_POOL_MAX ? m : s / (double)(c->iarg[8] ? inpad : valid);
            }
}

static const op_case cases[] = {
    {"conv2d groups=2 stride=(2,1) pad=(1,2) dil=(1,2) bias", 1, 3,
     {L4(3, 6, 7, 5), L4(4, 3, 3, 3), L1(4)}, b_conv, r_conv, {2, 1, 1, 2, 1, 2, 2, 1}, {0}, 0},
    {"conv2d 3x3 stride 2 pad 1 batch 1", 1, 3,
     {L4(1, 3, 7, 5), L4(5, 3, 3, 3), L1(5)}, b_conv, r_conv, {2, 2, 1, 1, 1, 1, 1, 1}, {0}, 0},
    {"conv2d depthwise 3x3", 1, 2,
     {L4(3, 5, 7, 5), L4(5, 1, 3, 3)}, b_conv, r_conv, {1, 1, 1, 1, 1, 1, 5, 0}, {0}, 0},
    {"conv2d 1x1 stride 2 no bias", 1, 2,
     {L4(3, 3, 7, 5), L4(7, 3, 1, 1)}, b_conv, r_conv, {2, 2, 0, 0, 1, 1, 1, 0}, {0}, 0},
    {"conv2d eval 5x5", 0, 3,
     {L4(3, 4, 7, 5), L4(6, 4, 5, 5), L1(6)}, b_conv, r_conv, {1, 1, 2, 2, 1, 1, 1, 1}, {0}, 0},
    {"conv2d + batch_norm eval (folded) with bias", 0, 7,
     {L4(3, 4, 7, 5), L4(6, 2, 3, 3), L1(6), L1(6), L1(6), L1(6),
      {.ndim = 1, .shape = {6}, .lo = 0.5, .hi = 2}},
     b_conv_bn, r_conv_bn, {2, 1, 1, 1, 1, 1, 2, 1}, {0}, 0},
    {"conv2d + batch_norm eval (folded) no affine", 0, 7,
     {L4(1, 3, 7, 5), L4(5, 3, 1, 1), {.absent = 1}, {.absent = 1}, {.absent = 1}, L1(5),
      {.ndim = 1, .shape = {5}, .lo = 0.5, .hi = 2}},
     b_conv_bn, r_conv_bn, {1, 1, 0, 0, 1, 1, 1, 0}, {0}, 0},
    {"linear 3-D input bias", 1, 3, {L3(3, 2, 7), L2(5, 7), L1(5)}, b_linear, r_linear, {1}, {0}, 0},
    {"linear no bias", 1, 2, {L2(1, 9), L2(3, 9)}, b_linear, r_linear, {0}, {0}, 0},
    {"matmul broadcast batch", 1, 2,
     {L4(2, 1, 3, 5), L3(3, 5, 4)}, b_matmul, r_matmul, {0}, {0}, 0},
    {"matmul 3-D @ 2-D", 1, 2, {L3(1, 4, 6), L2(6, 3)}, b_matmul, r_matmul, {0}, {0}, 0},
    {"batch_norm train", 1, 6,
     {L4(3, 5, 7, 5), L1(5), L1(5), {.ndim = 1, .shape = {5}, .no_grad = 1},
      {.ndim = 1, .shape = {5}, .no_grad = 1, .lo = 0.5, .hi = 2},
      {.ndim = 0, .dtype = USI_DTYPE_I64, .no_grad = 1}},
     b_bn, r_bn, {0}, {0.1, 1e-5}, 0},
    {"batch_norm train batch 1 (2-D)", 1, 6,
     {L2(3, 7), L1(7), L1(7), {.ndim = 1, .shape = {7}, .no_grad = 1},
      {.ndim = 1, .shape = {7}, .no_grad = 1, .lo = 0.5, .hi = 2}, {.absent = 1}},
     b_bn, r_bn, {0}, {0.1, 1e-3}, 0},
    {"batch_norm eval", 0, 6,
     {L4(3, 5, 7, 5), L1(5), L1(5), {.ndim = 1, .shape = {5}, .no_grad = 1},
      {.ndim = 1, .shape = {5}, .no_grad = 1, .lo = 0.5, .hi = 2}, {.absent = 1}},
     b_bn, r_bn, {0}, {0.1, 1e-5}, 0},
    {"batch_norm train no affine, no running stats", 1, 6,
     {L4(1, 3, 7, 5), {.absent = 1}, {.absent = 1}, {.absent = 1}, {.absent = 1}, {.absent = 1}},
     b_bn, r_bn, {0}, {0.1, 1e-5}, 0},
    {"layer_norm no affine", 1, 3, {L3(3, 2, 9), {.absent = 1}, {.absent = 1}}, b_ln, r_ln,
     {-1}, {1e-5}, 0},
    {"layer_norm last axis", 1, 3, {L3(3, 4, 7), L1(7), L1(7)}, b_ln, r_ln, {-1}, {1e-5}, 0},
    {"layer_norm axis 1 of NCHW", 1, 3, {L4(2, 5, 3, 4), L1(5), L1(5)}, b_ln, r_ln, {1}, {1e-6}, 0},
    {"max_pool 3x3 s2 p1", 1, 1, {L4(2, 3, 7, 5)}, b_pool, r_pool,
     {USI_POOL_MAX, 3, 3, 2, 2, 1, 1, 0, 0}, {0}, 0},
    {"max_pool 3x3 s2 ceil", 1, 1, {L4(1, 2, 7, 6)}, b_pool, r_pool,
     {USI_POOL_MAX, 3, 3, 2, 2, 0, 0, 1, 0}, {0}, 0},
    {"avg_pool 3x3 s2 p1 count_include_pad", 1, 1, {L4(2, 3, 7, 5)}, b_pool, r_pool,
     {USI_POOL_AVG, 3, 3, 2, 2, 1, 1, 0, 1}, {0}, 0},
    {"avg_pool 3x3 s2 p1 exclude pad", 1, 1, {L4(2, 3, 7, 5)}, b_pool, r_pool,
     {USI_POOL_AVG, 3, 3, 2, 2, 1, 1, 0, 0}, {0}, 0},
    {"avg_pool 2x3 s2 p1 ceil count_include_pad", 1, 1, {L4(3, 2, 7, 6)}, b_pool, r_pool,
     {USI_POOL_AVG, 2, 3, 2, 2, 1, 1, 1, 1}, {0}, 0},
    {"avg_pool 2x2 s2 ceil exclude pad", 1, 1, {L4(1, 3, 7, 5)}, b_pool, r_pool,
     {USI_POOL_AVG, 2, 2, 2, 2, 0, 0, 1, 0}, {0}, 0},
};

int main(void)
{
    int fails = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) fails += run_case(&cases[i]);
    printf("%d failure(s)\n", fails);
    return fails ? 1 : 0;
}
