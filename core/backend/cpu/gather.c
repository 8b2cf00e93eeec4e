/* Gather: entries of a table picked along one dim by a constant I32 index
 * table (the graph checked every index when it recorded the op). Seen as
 *
 *   table [O, K, I]   (O: the dims before the axis, K: the axis, I: after)
 *   idx   [M]         (any shape, M entries in all)
 *   out   [O, M, I]   out[o, m, i] = table[o, idx[m], i]
 *
 * Backward adds dy into the rows it came from; each (o, i) column is one
 * thread's, summed over m in order, so the result never depends on the
 * thread count. */
#include "backend/cpu/cpu.h"

typedef struct gather_dims {
    int64_t O, K, I, M;
} gather_dims;

static gather_dims dims_of(const usi_tensor *t)
{
    const usi_tensor *table = t->src[0];
    int32_t ax = t->attrs.gather.axis;
    gather_dims d = {usi_dims_prod(table, 0, ax), table->shape[ax],
                     usi_dims_prod(table, ax + 1, table->ndim), t->src[1]->numel};
    return d;
}

/* out[O, M, I] = table[O, idx[m], I] */
static void gather_forward(float *out, const float *table, const int32_t *idx, gather_dims d)
{
    #pragma omp parallel for collapse(2) schedule(static) if (d.O * d.M * d.I > USI_PAR_MIN)
    for (int64_t o = 0; o < d.O; o++)
        for (int64_t m = 0; m < d.M; m++)
            memcpy(out + (o * d.M + m) * d.I, table + (o * d.K + idx[m]) * d.I,
                   (size_t)d.I * sizeof(float));
}

/* dtable[O, K, I] (+)= sum over m with idx[m] = k of dy[O, m, I] */
static void gather_backward(float *dtable, const float *dy, const int32_t *idx, gather_dims d,
                            int32_t acc)
{
    usi_grad_begin(dtable, d.O * d.K * d.I, acc);
    #pragma omp parallel for collapse(2) schedule(static) if (d.O * d.M * d.I > USI_PAR_MIN)
    for (int64_t o = 0; o < d.O; o++)
        for (int64_t i = 0; i < d.I; i++) {
            float *col = dtable + o * d.K * d.I + i;
            const float *src = dy + o * d.M * d.I + i;
            for (int64_t m = 0; m < d.M; m++) col[idx[m] * d.I] += src[m * d.I];
        }
}

usi_error *usi_cpu_gather_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    gather_forward(t->data, t->src[0]->data, t->src[1]->data, dims_of(t));
    return NULL;
}

usi_error *usi_cpu_gather_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    float *dtable = usi_src_grad(t, 0);
    if (dtable) gather_backward(dtable, t->grad, t->src[1]->data, dims_of(t), acc[0]);
    return NULL;
}
