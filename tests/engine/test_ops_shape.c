/* Data movement ops against index maps written out in float64. */
#include <stdio.h>

#include "harness.h"

#define L4(a, b, c, d) {.ndim = 4, .shape = {a, b, c, d}}
#define L3(a, b, c) {.ndim = 3, .shape = {a, b, c}}
#define L2(a, b) {.ndim = 2, .shape = {a, b}}

static void r_copy(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                   double *out)
{
    (void)c;
    for (int64_t i = 0; i < numel_of(nd, os); i++) out[i] = in[0][i];
}

static usi_tensor *b_reshape(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                             const op_case *c)
{
    (void)c;
    int64_t shape[2] = {5, -1};
    return api->reshape(g, x[0], 2, shape);
}

static usi_tensor *b_flatten(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                             const op_case *c)
{
    return api->flatten(g, x[0], c->iarg[0], c->iarg[1]);
}

static usi_tensor *b_permute(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                             const op_case *c)
{
    return api->permute(g, x[0], c->iarg);
}

static void r_permute(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                      double *out)
{
    const int64_t *xs = c->leaf[0].shape;
    int64_t st[8], s = 1;
    for (int32_t d = nd - 1; d >= 0; d--) st[d] = s, s *= xs[d];
    for (int64_t i = 0; i < numel_of(nd, os); i++) {
        int64_t rem = i, off = 0;
        for (int32_t d = nd - 1; d >= 0; d--) {
            off += (rem % os[d]) * st[c->iarg[d]];
            rem /= os[d];
        }
        out[i] = in[0][off];
    }
}

/* concat along iarg[0] of all leaves */
static usi_tensor *b_concat(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                            const op_case *c)
{
    return api->concat(g, c->n_leaves, x, c->iarg[0]);
}

static void r_concat(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                     double *out)
{
    int32_t ax = c->iarg[0] < 0 ? c->iarg[0] + nd : c->iarg[0];
    int64_t O = numel_of(ax, os), I = numel_of(nd - ax - 1, os + ax + 1), k = 0;
    for (int64_t o = 0; o < O; o++)
        for (int32_t l = 0; l < c->n_leaves; l++) {
            int64_t w = c->leaf[l].shape[ax] * I;
            for (int64_t j = 0; j < w; j++) out[k++] = in[l][o * w + j];
        }
}

/* slice iarg: axis, start, end, step */
static usi_tensor *b_slice(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                           const op_case *c)
{
    return api->slice(g, x[0], c->iarg[0], c->iarg[1], c->iarg[2], c->iarg[3]);
}

static void r_slice(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                    double *out)
{
    int32_t ax = c->iarg[0];
    int64_t D = c->leaf[0].shape[ax], start = c->iarg[1] < 0 ? c->iarg[1] + D : c->iarg[1];
    int64_t O = numel_of(ax, os), I = numel_of(nd - ax - 1, os + ax + 1), len = os[ax];
    for (int64_t o = 0; o < O; o++)
        for (int64_t j = 0; j < len; j++)
            for (int64_t i = 0; i < I; i++)
                out[(o * len + j) * I + i] = in[0][(o * D + start + j * c->iarg[3]) * I + i];
}

/* pad iarg: (before, after) per dim; farg[0]: value */
static usi_tensor *b_pad(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                         const op_case *c)
{
    int64_t pads[16];
    for (int i = 0; i < 16; i++) pads[i] = c->iarg[i];
    return api->pad(g, x[0], pads, c->farg[0]);
}

static void r_pad(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                  double *out)
{
    const int64_t *xs = c->leaf[0].shape;
    for (int64_t i = 0; i < numel_of(nd, os); i++) {
        int64_t rem = i, off = 0, st = 1;
        int inside = 1;
        for (int32_t d = nd - 1; d >= 0; d--) {
            int64_t k = rem % os[d] - c->iarg[2 * d];
            rem /= os[d];
            if (k < 0 || k >= xs[d]) inside = 0;
            off += k * st;
            st *= xs[d];
        }
        out[i] = inside ? in[0][off] : c->farg[0];
    }
}

static usi_tensor *b_s2d(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                         const op_case *c)
{
    return api->space_to_depth(g, x[0], c->iarg[0]);
}

/* TResNet: view(N,C,H/b,b,W/b,b).permute(0,3,5,1,2,4) */
static void r_s2d(const op_case *c, double *const *in, int32_t nd, const int64_t *os,
                  double *out)
{
    (void)nd;
    const int64_t *xs = c->leaf[0].shape;
    int64_t b = c->iarg[0], C = xs[1], H = xs[2], W = xs[3];
    for (int64_t n = 0; n < os[0]; n++)
        for (int64_t br = 0; br < b; br++)
            for (int64_t bc = 0; bc < b; bc++)
                for (int64_t ch = 0; ch < C; ch++)
                    for (int64_t h = 0; h < os[2]; h++)
                        for (int64_t w = 0; w < os[3]; w++)
                            out[(((n * b + br) * b + bc) * C + ch) * os[2] * os[3] + h * os[3] + w] =
                                in[0][((n * C + ch) * H + h * b + br) * W + w * b + bc];
}

static const op_case cases[] = {
    {"reshape [3,4,5] -> [5,-1]", 1, 1, {L3(3, 4, 5)}, b_reshape, r_copy, {0}, {0}, 0},
    {"flatten 1..-1", 1, 1, {L4(3, 5, 7, 5)}, b_flatten, r_copy, {1, -1}, {0}, 0},
    {"permute (0,2,3,1)", 1, 1, {L4(2, 3, 4, 5)}, b_permute, r_permute, {0, 2, 3, 1}, {0}, 0},
    {"permute (2,0,1)", 1, 1, {L3(3, 5, 7)}, b_permute, r_permute, {2, 0, 1}, {0}, 0},
    {"concat axis 1 of three", 1, 3, {L3(2, 3, 5), L3(2, 1, 5), L3(2, 4, 5)}, b_concat, r_concat,
     {1}, {0}, 0},
    {"concat axis -1", 1, 2, {L2(3, 2), L2(3, 5)}, b_concat, r_concat, {-1}, {0}, 0},
    {"slice axis 2 [1:7:2]", 1, 1, {L3(3, 5, 7)}, b_slice, r_slice, {2, 1, 7, 2}, {0}, 0},
    {"slice axis 1 [-3:]", 1, 1, {L3(3, 5, 7)}, b_slice, r_slice, {1, -3, 100, 1}, {0}, 0},
    {"pad NCHW spatial", 1, 1, {L4(2, 3, 7, 5)}, b_pad, r_pad, {0, 0, 0, 0, 1, 2, 3, 0}, {0.5}, 0},
    {"pad all dims", 1, 1, {L3(3, 5, 7)}, b_pad, r_pad, {1, 0, 0, 2, 1, 1}, {-1}, 0},
    {"space_to_depth 2", 1, 1, {L4(2, 3, 4, 6)}, b_s2d, r_s2d, {2}, {0}, 0},
    {"space_to_depth 3 batch 1", 1, 1, {L4(1, 2, 6, 3)}, b_s2d, r_s2d, {3}, {0}, 0},
};

int main(void)
{
    int fails = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) fails += run_case(&cases[i]);
    printf("%d failure(s)\n", fails);
    return fails ? 1 : 0;
}
