/* Data movement ops against index maps written out in float64, and a small
 * custom op (the host-copy path on devices whose memory the host can't touch). */
#include <stdio.h>
#include <string.h>

#include "op_case.h"

void r_copy(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                   double *out)
{
    (void)c;
    for (int64_t i = 0; i < numel_of(nd, os); i++) out[i] = in[0][i];
}

usi_tensor *b_reshape(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                             const op_case *c)
{
    (void)c;
    int64_t shape[2] = {5, -1};
    return api->reshape(g, x[0], 2, shape);
}

usi_tensor *b_flatten(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                             const op_case *c)
{
    return api->flatten(g, x[0], c->a.flatten.start, c->a.flatten.end);
}

usi_tensor *b_permute(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                             const op_case *c)
{
    return api->permute(g, x[0], c->a.permute.perm);
}

void r_permute(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                      double *out)
{
    const int64_t *xs = c->leaf[0].shape;
    int64_t st[8], s = 1;
    for (int32_t d = nd - 1; d >= 0; d--) st[d] = s, s *= xs[d];
    for (int64_t i = 0; i < numel_of(nd, os); i++) {
        int64_t rem = i, off = 0;
        for (int32_t d = nd - 1; d >= 0; d--) {
            off += (rem % os[d]) * st[c->a.permute.perm[d]];
            rem /= os[d];
        }
        out[i] = in[0][off];
    }
}

usi_tensor *b_concat(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                            const op_case *c)
{
    return api->concat(g, c->n_leaves, x, c->a.concat.axis);
}

void r_concat(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                     double *out)
{
    int32_t ax = c->a.concat.axis < 0 ? c->a.concat.axis + nd : c->a.concat.axis;
    int64_t O = numel_of(ax, os), I = numel_of(nd - ax - 1, os + ax + 1), k = 0;
    for (int64_t o = 0; o < O; o++)
        for (int32_t l = 0; l < c->n_leaves; l++) {
            int64_t w = c->leaf[l].shape[ax] * I;
            for (int64_t j = 0; j < w; j++) out[k++] = in[l][o * w + j];
        }
}

usi_tensor *b_slice(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                           const op_case *c)
{
    const struct slice_args *a = &c->a.slice;
    return api->slice(g, x[0], a->axis, a->start, a->end, a->step);
}

void r_slice(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                    double *out)
{
    const struct slice_args *a = &c->a.slice;
    int32_t ax = a->axis;
    int64_t D = c->leaf[0].shape[ax], start = a->start < 0 ? a->start + D : a->start;
    int64_t O = numel_of(ax, os), I = numel_of(nd - ax - 1, os + ax + 1), len = os[ax];
    for (int64_t o = 0; o < O; o++)
        for (int64_t j = 0; j < len; j++)
            for (int64_t i = 0; i < I; i++)
                out[(o * len + j) * I + i] = in[0][(o * D + start + j * a->step) * I + i];
}

usi_tensor *b_pad(const usi_graph_api *api, usi_graph *g, usi_tensor **x, const op_case *c)
{
    return api->pad(g, x[0], c->a.pad.pads, c->a.pad.value);
}

void r_pad(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                  double *out)
{
    const int64_t *xs = c->leaf[0].shape;
    for (int64_t i = 0; i < numel_of(nd, os); i++) {
        int64_t rem = i, off = 0, st = 1;
        int inside = 1;
        for (int32_t d = nd - 1; d >= 0; d--) {
            int64_t k = rem % os[d] - c->a.pad.pads[2 * d];
            rem /= os[d];
            if (k < 0 || k >= xs[d]) inside = 0;
            off += k * st;
            st *= xs[d];
        }
        out[i] = inside ? in[0][off] : c->a.pad.value;
    }
}

usi_tensor *b_s2d(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                         const op_case *c)
{
    return api->space_to_depth(g, x[0], c->a.s2d.block);
}

/* TResNet: view(N,C,H/b,b,W/b,b).permute(0,3,5,1,2,4) */
void r_s2d(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                  double *out)
{
    (void)nd;
    const int64_t *xs = c->leaf[0].shape;
    int64_t b = c->a.s2d.block, C = xs[1], H = xs[2], W = xs[3];
    for (int64_t n = 0; n < os[0]; n++)
        for (int64_t br = 0; br < b; br++)
            for (int64_t bc = 0; bc < b; bc++)
                for (int64_t ch = 0; ch < C; ch++)
                    for (int64_t h = 0; h < os[2]; h++)
                        for (int64_t w = 0; w < os[3]; w++)
                            out[(((n * b + br) * b + bc) * C + ch) * os[2] * os[3] + h * os[3] + w] =
                                in[0][((n * C + ch) * H + h * b + br) * W + w * b + bc];
}

usi_tensor *b_gather(const usi_graph_api *api, usi_graph *g, usi_tensor **x, const op_case *c)
{
    return api->gather(g, x[0], x[1], c->a.gather.axis);
}

/* The same on an intermediate table (x * 1): gather's backward writes that
 * gradient first instead of adding to a leaf's. */
usi_tensor *b_gather_inner(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                           const op_case *c)
{
    return api->gather(g, api->scale(g, x[0], 1.0), x[1], c->a.gather.axis);
}

/* out[o, m, i] = table[o, idx[m], i] over the table seen as [O, K, I]. */
void r_gather(const op_case *c, double *const *in, int32_t nd, const int64_t *os, double *out)
{
    const leaf_spec *tl = &c->leaf[0];
    int32_t ax = c->a.gather.axis < 0 ? c->a.gather.axis + tl->ndim : c->a.gather.axis;
    int64_t O = 1, I = 1, K = tl->shape[ax], M = numel_of(c->leaf[1].ndim, c->leaf[1].shape);
    for (int32_t d = 0; d < ax; d++) O *= tl->shape[d];
    for (int32_t d = ax + 1; d < tl->ndim; d++) I *= tl->shape[d];
    (void)nd, (void)os;
    for (int64_t o = 0; o < O; o++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t i = 0; i < I; i++)
                out[(o * M + m) * I + i] = in[0][(o * K + (int64_t)in[1][m]) * I + i];
}
