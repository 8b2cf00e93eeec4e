/* Convolution, linear, matmul, normalisations and pooling: the cases'
 * graphs and their float64 references. */
#include <math.h>
#include <stdio.h>

#include "op_case.h"

usi_tensor *b_conv(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                          const op_case *c)
{
    const struct conv_args *a = &c->a.conv;
    usi_conv2d_desc d = {sizeof d, {a->stride[0], a->stride[1]}, {a->pad[0], a->pad[1]},
                         {a->dil[0], a->dil[1]}, a->groups};
    return api->conv2d(g, x[0], x[1], a->bias ? x[2] : NULL, &d);
}

void r_conv(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                   double *out)
{
    (void)nd;
    const struct conv_args *a = &c->a.conv;
    const int64_t *xs = c->leaf[0].shape, *ws = c->leaf[1].shape;
    int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3], O = ws[0], KH = ws[2], KW = ws[3];
    int64_t G = a->groups, Cg = C / G, Og = O / G, OH = os[2], OW = os[3];
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double s = a->bias ? in[2][o] : 0;
                    int64_t g = o / Og;
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int64_t kh = 0; kh < KH; kh++)
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t h = oh * a->stride[0] - a->pad[0] + kh * a->dil[0];
                                int64_t w = ow * a->stride[1] - a->pad[1] + kw * a->dil[1];
                                if (h < 0 || h >= H || w < 0 || w >= W) continue;
                                s += in[0][((n * C + g * Cg + ci) * H + h) * W + w] *
                                     in[1][((o * Cg + ci) * KH + kh) * KW + kw];
                            }
                    out[((n * O + o) * OH + oh) * OW + ow] = s;
                }
}

/* conv then an eval-mode batch norm: the engine folds the norm into the
 * conv. Leaves: x w b gamma beta mean var; conv arguments as above. */
usi_tensor *b_conv_bn(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                             const op_case *c)
{
    usi_tensor *y = b_conv(api, g, x, c);
    return api->batch_norm(g, y, x[3], x[4], x[5], x[6], NULL, 0.1, 1e-3);
}

void r_conv_bn(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
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

usi_tensor *b_linear(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                            const op_case *c)
{
    return api->linear(g, x[0], x[1], c->a.linear.bias ? x[2] : NULL);
}

void r_linear(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                     double *out)
{
    int64_t O = c->leaf[1].shape[0], I = c->leaf[1].shape[1];
    int64_t M = numel_of(nd, os) / O;
    for (int64_t m = 0; m < M; m++)
        for (int64_t o = 0; o < O; o++) {
            double s = c->a.linear.bias ? in[2][o] : 0;
            for (int64_t i = 0; i < I; i++) s += in[0][m * I + i] * in[1][o * I + i];
            out[m * O + o] = s;
        }
}

usi_tensor *b_matmul(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
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

void r_matmul(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
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

/* bn leaves: x w b running_mean running_var num_batches_tracked */
usi_tensor *b_bn(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                        const op_case *c)
{
    return api->batch_norm(g, x[0], x[1], x[2], x[3], x[4], x[5], c->a.norm.momentum,
                           c->a.norm.eps);
}

void r_bn(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
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
                out[k] = (in[0][k] - m) / sqrt(v + c->a.norm.eps) * (in[1] ? in[1][ch] : 1) +
                         (in[2] ? in[2][ch] : 0);
            }
    }
}

/* batch norm then ReLU: in training graphs, where a device fuses the pair
 * (core/graph/fuse.c), the norm's kernels apply the ReLU. Leaves as b_bn. */
usi_tensor *b_bn_relu(const usi_graph_api *api, usi_graph *g, usi_tensor **x, const op_case *c)
{
    return api->activation(g, b_bn(api, g, x, c), USI_ACT_RELU, 0);
}

void r_bn_relu(const op_case *c, double *const *in, int32_t nd, const int64_t *os, double *out)
{
    r_bn(c, in, nd, os, out);
    for (int64_t k = 0; k < numel_of(nd, os); k++)
        if (!(out[k] > 0)) out[k] = 0;
}

usi_tensor *b_ln(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                        const op_case *c)
{
    return api->layer_norm(g, x[0], x[1], x[2], c->a.norm.axis, c->a.norm.eps);
}

void r_ln(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                 double *out)
{
    int32_t ax = c->a.norm.axis < 0 ? c->a.norm.axis + nd : c->a.norm.axis;
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
                out[k] = (in[0][k] - m) / sqrt(v + c->a.norm.eps) * (in[1] ? in[1][ch] : 1) +
                         (in[2] ? in[2][ch] : 0);
            }
        }
}

usi_tensor *b_pool(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                          const op_case *c)
{
    const struct pool_args *a = &c->a.pool;
    usi_pool2d_desc d = {sizeof d, a->kind, {a->kernel[0], a->kernel[1]},
                         {a->stride[0], a->stride[1]}, {a->pad[0], a->pad[1]},
                         a->ceil, a->count_include_pad};
    return api->pool2d(g, x[0], &d);
}

void r_pool(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                   double *out)
{
    (void)nd;
    const struct pool_args *a = &c->a.pool;
    const int64_t *xs = c->leaf[0].shape;
    int64_t P = xs[0] * xs[1], H = xs[2], W = xs[3], OH = os[2], OW = os[3];
    for (int64_t p = 0; p < P; p++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                double m = -INFINITY, s = 0;
                int64_t valid = 0, inpad = 0;
                for (int64_t kh = 0; kh < a->kernel[0]; kh++)
                    for (int64_t kw = 0; kw < a->kernel[1]; kw++) {
                        int64_t h = oh * a->stride[0] - a->pad[0] + kh;
                        int64_t w = ow * a->stride[1] - a->pad[1] + kw;
                        /* count_include_pad counts padding, not the ceil overhang */
                        if (h < H + a->pad[0] && w < W + a->pad[1]) inpad++;
                        if (h < 0 || h >= H || w < 0 || w >= W) continue;
                        double e = in[0][(p * H + h) * W + w];
                        m = e > m ? e : m;
                        s += e;
                        valid++;
                    }
                out[(p * OH + oh) * OW + ow] =
                    a->kind == USI_POOL_MAX ? m : s / (double)(a->count_include_pad ? inpad : valid);
            }
}
