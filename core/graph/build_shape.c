/* Record functions of the shape ops. */
#include <string.h>

#include "graph/build_common.h"

static usi_tensor *rec_reshape(usi_graph *g, usi_tensor *x, int32_t ndim,
                               const int64_t *shape)
{
    usi_tensor *t = usi_begin(g, USI_OP_RESHAPE, "reshape", 1, &x, 0, 0xf);
    if (!t) return NULL;
    if (ndim < 0 || ndim > USI_MAX_DIMS || (ndim && !shape))
        return usi_fail_shapes(t, "x", x, NULL, NULL, "bad target rank %d", ndim);
    int64_t out[USI_MAX_DIMS], known = 1;
    int32_t infer = -1;
    for (int32_t i = 0; i < ndim; i++) {
        out[i] = shape[i];
        if (shape[i] == -1 && infer < 0) infer = i;
        else if (shape[i] <= 0) goto bad;
        else known *= shape[i];
    }
    if (infer >= 0) {
        if (known == 0 || x->numel % known) goto bad;
        out[infer] = x->numel / known;
    } else if (known != x->numel) {
        goto bad;
    }
    t->dtype = x->dtype;
    usi_node_set_shape(t, ndim, out);
    return t;
bad:;
    char b[160];
    return usi_fail_shapes(t, "x", x, NULL, NULL, "can't reshape to %s",
                           usi_dims_str(ndim, shape, b, sizeof b));
}

static usi_tensor *rec_flatten(usi_graph *g, usi_tensor *x, int32_t start,
                               int32_t end)
{
    if (!g || g->error || !x) return NULL;
    int32_t s = start < 0 ? start + x->ndim : start;
    int32_t e = end < 0 ? end + x->ndim : end;
    if (x->ndim == 0 || s < 0 || e >= x->ndim || s > e) {
        usi_tensor *t = usi_begin(g, USI_OP_RESHAPE, "flatten", 1, &x, 0, 0xf);
        return t ? usi_fail_shapes(t, "x", x, NULL, NULL,
                                   "can't flatten dims %d..%d", start, end)
                 : NULL;
    }
    int64_t out[USI_MAX_DIMS];
    int32_t n = 0;
    for (int32_t i = 0; i < x->ndim; i++) {
        if (i <= s || i > e) out[n++] = x->shape[i];
        else out[n - 1] *= x->shape[i];
    }
    return usi_graph_builder()->reshape(g, x, n, out);
}

static usi_tensor *rec_permute(usi_graph *g, usi_tensor *x, const int32_t *perm)
{
    usi_tensor *t = usi_begin(g, USI_OP_PERMUTE, "permute", 1, &x, 0, 0);
    if (!t) return NULL;
    uint32_t seen = 0;
    int64_t out[USI_MAX_DIMS];
    for (int32_t i = 0; i < x->ndim; i++) {
        int32_t p = perm ? perm[i] : -1;
        if (p < 0) p += x->ndim;
        if (p < 0 || p >= x->ndim || (seen & (1u << p)))
            return usi_fail_shapes(t, "x", x, NULL, NULL, "not a permutation");
        seen |= 1u << p;
        t->attrs.permute.perm[i] = p;
        out[i] = x->shape[p];
    }
    usi_node_set_shape(t, x->ndim, out);
    return t;
}

static usi_tensor *rec_concat(usi_graph *g, int32_t n, usi_tensor *const *xs,
                              int32_t axis)
{
    if (!g || g->error) return NULL;
    if (n < 1 || !xs) {
        usi_graph_fail(g, "concat: needs at least one input");
        return NULL;
    }
    usi_tensor *t = usi_begin(g, USI_OP_CONCAT, "concat", n, xs, 0, 0);
    if (!t) return NULL;
    const usi_tensor *x0 = xs[0];
    int32_t ax = axis < 0 ? axis + x0->ndim : axis;
    if (ax < 0 || ax >= x0->ndim)
        return usi_fail_shapes(t, "x0", x0, NULL, NULL, "axis %d out of range", axis);
    int64_t out[USI_MAX_DIMS];
    memcpy(out, x0->shape, sizeof out);
    for (int32_t i = 1; i < n; i++) {
        const usi_tensor *xi = xs[i];
        int ok = xi->ndim == x0->ndim;
        for (int32_t d = 0; ok && d < x0->ndim; d++)
            if (d != ax && xi->shape[d] != x0->shape[d]) ok = 0;
        if (!ok)
            return usi_fail_shapes(t, "x0", x0, "another input", xi,
                                   "dims other than %d differ", ax);
        out[ax] += xi->shape[ax];
    }
    t->attrs.concat.axis = ax;
    usi_node_set_shape(t, x0->ndim, out);
    return t;
}

static usi_tensor *rec_slice(usi_graph *g, usi_tensor *x, int32_t axis,
                             int64_t start, int64_t end, int64_t step)
{
    usi_tensor *t = usi_begin(g, USI_OP_SLICE, "slice", 1, &x, 0, 0);
    if (!t) return NULL;
    int32_t ax = axis < 0 ? axis + x->ndim : axis;
    if (ax < 0 || ax >= x->ndim || step <= 0)
        return usi_fail_shapes(t, "x", x, NULL, NULL,
                               "axis %d / step %lld invalid", axis, (long long)step);
    int64_t d = x->shape[ax];
    if (start < 0) start += d;
    if (end < 0) end += d;
    start = start < 0 ? 0 : start > d ? d : start;
    end = end < 0 ? 0 : end > d ? d : end;
    int64_t len = end > start ? (end - start + step - 1) / step : 0;
    if (len == 0)
        return usi_fail_shapes(t, "x", x, NULL, NULL, "the slice is empty");
    int64_t out[USI_MAX_DIMS];
    memcpy(out, x->shape, sizeof out);
    out[ax] = len;
    t->attrs.slice.axis = ax;
    t->attrs.slice.start = start;
    t->attrs.slice.step = step;
    usi_node_set_shape(t, x->ndim, out);
    return t;
}

static usi_tensor *rec_pad(usi_graph *g, usi_tensor *x, const int64_t *pads,
                           double value)
{
    usi_tensor *t = usi_begin(g, USI_OP_PAD, "pad", 1, &x, 0, 0);
    if (!t) return NULL;
    int64_t out[USI_MAX_DIMS];
    for (int32_t i = 0; i < x->ndim; i++) {
        if (!pads || pads[2 * i] < 0 || pads[2 * i + 1] < 0 ||
            pads[2 * i] > (1 << 24) || pads[2 * i + 1] > (1 << 24))
            return usi_fail_shapes(t, "x", x, NULL, NULL,
                                   "pads must be given and >= 0 (dim %d)", i);
        t->attrs.pad.before[i] = pads[2 * i];
        out[i] = x->shape[i] + pads[2 * i] + pads[2 * i + 1];
    }
    t->attrs.pad.value = value;
    usi_node_set_shape(t, x->ndim, out);
    return t;
}

static usi_tensor *rec_space_to_depth(usi_graph *g, usi_tensor *x, int32_t block)
{
    usi_tensor *t = usi_begin(g, USI_OP_SPACE_TO_DEPTH, "space_to_depth", 1, &x, 0, 0);
    if (!t) return NULL;
    if (x->ndim != 4 || block < 1 || x->shape[2] % block || x->shape[3] % block)
        return usi_fail_shapes(t, "x", x, NULL, NULL,
                               "need NCHW with H, W multiples of block %d", block);
    int64_t out[4] = {x->shape[0], x->shape[1] * block * block,
                      x->shape[2] / block, x->shape[3] / block};
    t->attrs.space_to_depth.block = block;
    usi_node_set_shape(t, 4, out);
    return t;
}

/* Gather along `axis` by a constant index table: its values are known now,
 * so they are checked once here and the kernels need no bounds checks. */
static usi_tensor *rec_gather(usi_graph *g, usi_tensor *table, usi_tensor *idx, int32_t axis)
{
    usi_tensor *src[2] = {table, idx};
    usi_tensor *t = usi_begin(g, USI_OP_GATHER, "gather", 2, src, 0, 2);
    if (!t) return NULL;
    if (idx->op != USI_OP_CONSTANT || idx->dtype != USI_DTYPE_I32 || !idx->staging)
        return usi_fail_shapes(t, "table", table, "idx", idx,
                               "the indices must be an I32 constant (constant())");
    int32_t ax = axis < 0 ? axis + table->ndim : axis;
    if (ax < 0 || ax >= table->ndim)
        return usi_fail_shapes(t, "table", table, "idx", idx, "axis %d out of range", axis);
    int32_t ndim = table->ndim - 1 + idx->ndim;
    if (ndim > USI_MAX_DIMS)
        return usi_fail_shapes(t, "table", table, "idx", idx,
                               "the output would have %d dims (at most %d)", ndim, USI_MAX_DIMS);
    const int32_t *v = idx->staging;
    int64_t rows = table->shape[ax];
    for (int64_t i = 0; i < idx->numel; i++)
        if (v[i] < 0 || v[i] >= rows)
            return usi_fail_shapes(t, "table", table, "idx", idx,
                                   "index %d (entry %lld) is not in [0, %lld)", v[i],
                                   (long long)i, (long long)rows);
    int64_t out[USI_MAX_DIMS];
    int32_t n = 0;
    for (int32_t d = 0; d < ax; d++) out[n++] = table->shape[d];
    for (int32_t d = 0; d < idx->ndim; d++) out[n++] = idx->shape[d];
    for (int32_t d = ax + 1; d < table->ndim; d++) out[n++] = table->shape[d];
    t->attrs.gather.axis = ax;
    usi_node_set_shape(t, n, out);
    return t;
}

void usi_builder_fill_shape(usi_graph_api *api)
{
    api->reshape = rec_reshape;
    api->permute = rec_permute;
    api->concat = rec_concat;
    api->slice = rec_slice;
    api->pad = rec_pad;
    api->flatten = rec_flatten;
    api->space_to_depth = rec_space_to_depth;
    api->gather = rec_gather;
}
