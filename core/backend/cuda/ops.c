/* Node adapters of the element-wise, pooling, reduction and softmax ops:
 * shapes and attributes from the node, the kernel from kernels.h. Dims are
 * collapsed here as the CPU backend collapses them. */
#include <stdint.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/plan.h"

static inline int64_t dims_prod(const usi_tensor *t, int32_t from, int32_t to)
{
    int64_t p = 1;
    for (int32_t i = from; i < to; i++) p *= t->shape[i];
    return p;
}

usi_error *usi_cuda_copy_or_add(usi_cuda *c, void *dst, const void *src, int64_t n, int32_t acc, int32_t bf16)
{
    if (acc)
        return usi_cuda_scale_typed(c->stream, dst, src, n, 1.0f, 1, bf16 ? USI_CUDA_BF_OUT | USI_CUDA_BF_IN : 0);
    CUDA_TRY(cudaMemcpyAsync(dst, src, (size_t)n * (bf16 ? 2 : sizeof(float)), cudaMemcpyDeviceToDevice, c->stream));
    return NULL;
}

/* USI_CUDA_BF_* of a one-input element-wise node: its value and
 * gradient's type, its input's. */
static int32_t bf_of(const usi_tensor *t)
{
    return (t->bf16 ? USI_CUDA_BF_OUT : 0) | (t->src[0]->bf16 ? USI_CUDA_BF_IN : 0);
}

/* ---- act, scale ---- */

usi_error *usi_cuda_act_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    return usi_cuda_act_forward(c->stream, t->data, t->src[0]->data, t->numel, t->attrs.act.kind,
                                (float)t->attrs.act.alpha, bf_of(t));
}

usi_error *usi_cuda_act_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    if (!t->src[0]->grad) return NULL;
    uint32_t mask;
    int32_t needs_out;
    usi_op_backward_needs(t, &mask, &needs_out);
    return usi_cuda_act_backward(c->stream, t->src[0]->grad, t->grad, mask ? t->src[0]->data : NULL,
                                 needs_out ? t->data : NULL, t->numel, t->attrs.act.kind,
                                 (float)t->attrs.act.alpha, acc[0], bf_of(t));
}

usi_error *usi_cuda_scale_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    return usi_cuda_scale_typed(c->stream, t->data, t->src[0]->data, t->numel, (float)t->attrs.scale.factor, 0,
                                bf_of(t));
}

usi_error *usi_cuda_scale_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    if (!t->src[0]->grad) return NULL;
    /* dinp (input side) from dout (output side): the forward's types */
    return usi_cuda_scale_typed(c->stream, t->src[0]->grad, t->grad, t->numel, (float)t->attrs.scale.factor,
                                acc[0], (t->bf16 ? USI_CUDA_BF_IN : 0) | (t->src[0]->bf16 ? USI_CUDA_BF_OUT : 0));
}

/* ---- binary ---- */

/* The plan seen from the output (which < 0: every dim kept) or from operand
 * `which`: its own dims kept, the ones it is broadcast along reduced. */
void usi_cuda_binary_plan(const usi_tensor *t, int32_t which, usi_cuda_bplan *p)
{
    usi_bcast_plan bc;
    usi_bcast_plan_of(t, &bc);
    int64_t so[USI_MAX_DIMS], st = 1;
    for (int32_t d = bc.n - 1; d >= 0; d--) {
        so[d] = st;
        st *= bc.shape[d];
    }
    memset(p, 0, sizeof *p);
    p->n_kept = p->n_red = 1;
    for (int32_t d = 0; d < bc.n; d++) {
        int64_t sx = which == 0 ? bc.sa[d] : which == 1 ? bc.sb[d] : 1;
        if (sx != 0) {
            p->kshape[p->nk] = bc.shape[d];
            p->ko[p->nk] = so[d];
            p->ka[p->nk] = bc.sa[d];
            p->kb[p->nk] = bc.sb[d];
            p->nk++;
            p->n_kept *= bc.shape[d];
        } else {
            p->rshape[p->nr] = bc.shape[d];
            p->ro[p->nr] = so[d];
            p->ra[p->nr] = bc.sa[d];
            p->rb[p->nr] = bc.sb[d];
            p->nr++;
            p->n_red *= bc.shape[d];
        }
    }
}

usi_error *usi_cuda_binary_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    usi_cuda_bplan p;
    usi_cuda_binary_plan(t, -1, &p);
    return usi_cuda_binary_forward(c->stream, t->data, t->src[0]->data, t->src[1]->data, &p,
                                   t->attrs.binary.kind, t->bf16);
}

usi_error *usi_cuda_binary_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    int32_t op = t->attrs.binary.kind;
    int reads = op == USI_BIN_MUL || op == USI_BIN_DIV;
    const void *a = reads ? t->src[0]->data : NULL, *b = reads ? t->src[1]->data : NULL;
    for (int32_t which = 0; which < 2; which++) {
        usi_tensor *x = t->src[which];
        if (!x->grad) continue;
        if (x->numel == t->numel && (op == USI_BIN_ADD || (op == USI_BIN_SUB && !which))) {
            USI_TRY(usi_cuda_copy_or_add(c, x->grad, t->grad, t->numel, acc[which], t->bf16));
            continue;
        }
        usi_cuda_bplan p;
        usi_cuda_binary_plan(t, which, &p);
        USI_TRY(usi_cuda_binary_backward(c->stream, x->grad, t->grad, a, b, &p, op, which, acc[which], t->bf16));
    }
    return NULL;
}

/* ---- dropout, drop-path ---- */

usi_error *usi_cuda_dropout_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    return usi_cuda_dropout_forward(c->stream, t->data, t->src[0]->data, t->numel, t->attrs.dropout.p, ctx->seed,
                                    ctx->step, (uint64_t)t->id, 0, t->bf16);
}

usi_error *usi_cuda_dropout_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    if (!t->src[0]->grad) return NULL;
    return usi_cuda_dropout_forward(c->stream, t->src[0]->grad, t->grad, t->numel, t->attrs.dropout.p, ctx->seed,
                                    ctx->step, (uint64_t)t->id, acc[0], t->bf16);
}

usi_error *usi_cuda_drop_path_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    int64_t N = t->shape[0];
    return usi_cuda_drop_path_forward(c->stream, t->data, t->src[0]->data, t->fwd_scratch, N, t->numel / N,
                                      t->attrs.drop_path.p, ctx->seed, ctx->step, (uint64_t)t->id, 0, t->bf16);
}

usi_error *usi_cuda_drop_path_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    if (!t->src[0]->grad) return NULL;
    int64_t N = t->shape[0];
    return usi_cuda_drop_path_forward(c->stream, t->src[0]->grad, t->grad, t->bwd_scratch, N, t->numel / N,
                                      t->attrs.drop_path.p, ctx->seed, ctx->step, (uint64_t)t->id, acc[0],
                                      t->bf16);
}

/* ---- pool2d ---- */

static void pool_dims(const usi_tensor *t, usi_cuda_pool *d)
{
    const usi_tensor *x = t->src[0];
    const struct usi_attrs_pool2d *a = &t->attrs.pool2d;
    *d = (usi_cuda_pool){
        .planes = x->shape[0] * x->shape[1],
        .H = x->shape[2],
        .W = x->shape[3],
        .OH = t->shape[2],
        .OW = t->shape[3],
        .kh = a->kernel[0],
        .kw = a->kernel[1],
        .sh = a->stride[0],
        .sw = a->stride[1],
        .ph = a->padding[0],
        .pw = a->padding[1],
        .C = x->shape[1],
        .count_pad = a->count_include_pad,
        .is_max = a->kind == USI_POOL_MAX,
        .cl = t->cl, /* x's too (usi_cuda_cl_native) */
    };
}

/* Backward scratch of a max pool: one int32 index per output element, when
 * every index in a plane fits; 0 otherwise (the kernel searches again). */
size_t usi_cuda_pool_scratch_bytes(const usi_tensor *t)
{
    const usi_tensor *x = t->src[0];
    if (t->attrs.pool2d.kind != USI_POOL_MAX || x->ndim != 4 || x->shape[2] * x->shape[3] > INT32_MAX) return 0;
    return ((size_t)t->numel * sizeof(int32_t) + 63) / 64 * 64;
}

usi_error *usi_cuda_pool2d_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    usi_cuda_pool d;
    pool_dims(t, &d);
    return usi_cuda_pool2d_forward(c->stream, t->data, t->src[0]->data, &d, t->bf16);
}

usi_error *usi_cuda_pool2d_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    if (!t->src[0]->grad) return NULL;
    usi_cuda_pool d;
    pool_dims(t, &d);
    /* max: the windows' maxima in the node's scratch (usi_cuda_workspace) */
    int32_t *idx = d.is_max && t->bwd_scratch_bytes ? t->bwd_scratch : NULL;
    return usi_cuda_pool2d_backward(c->stream, t->src[0]->grad, t->grad, d.is_max ? t->src[0]->data : NULL, idx,
                                    &d, acc[0], t->bf16);
}

/* ---- reduce ---- */

/* Neighbouring dims that are both kept or both reduced merge. */
void usi_cuda_reduce_dims(const usi_tensor *x, uint32_t mask, usi_cuda_rdims *r)
{
    usi_reduce_plan p;
    usi_reduce_plan_of(x, mask, &p);
    memset(r, 0, sizeof *r);
    r->n = p.n;
    r->count = p.count;
    for (int32_t d = 0; d < p.n; d++) {
        r->shape[d] = p.shape[d];
        r->istride[d] = p.istride[d];
        r->reduced[d] = p.reduced[d];
    }
}

static float reduce_scale(const usi_tensor *t, const usi_cuda_rdims *r)
{
    return t->attrs.reduce.kind == USI_REDUCE_MEAN ? 1.0f / (float)r->count : 1.0f;
}

usi_error *usi_cuda_reduce_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    usi_cuda_rdims r;
    usi_cuda_reduce_dims(t->src[0], t->attrs.reduce.axes, &r);
    if (r.n == 0) /* nothing left but ones: a copy, scaled */
        return usi_cuda_scale_typed(c->stream, t->data, t->src[0]->data, t->numel, reduce_scale(t, &r), 0,
                                    bf_of(t));
    return usi_cuda_reduce_forward(c->stream, t->data, t->src[0]->data, &r, t->numel, reduce_scale(t, &r),
                                   t->bf16);
}

usi_error *usi_cuda_reduce_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    const usi_tensor *x = t->src[0];
    if (!x->grad) return NULL;
    usi_cuda_rdims r;
    usi_cuda_reduce_dims(x, t->attrs.reduce.axes, &r);
    return usi_cuda_reduce_backward(c->stream, x->grad, t->grad, &r, x->numel, reduce_scale(t, &r), acc[0],
                                    t->bf16);
}

/* ---- softmax ---- */

usi_error *usi_cuda_softmax_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    int64_t C = t->shape[t->ndim - 1];
    return usi_cuda_softmax_forward(c->stream, t->data, t->src[0]->data, t->numel / C, C, t->src[0]->bf16);
}

usi_error *usi_cuda_softmax_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    if (!t->src[0]->grad) return NULL;
    int64_t C = t->shape[t->ndim - 1];
    return usi_cuda_softmax_backward(c->stream, t->src[0]->grad, t->grad, t->data, t->numel / C, C, acc[0],
                                     t->src[0]->bf16);
}

/* ---- shape ops ---- */

usi_error *usi_cuda_reshape_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    /* the same type on both sides (bf16_native) */
    CUDA_TRY(cudaMemcpyAsync(t->data, t->src[0]->data, usi_node_stored_bytes(t), cudaMemcpyDeviceToDevice,
                             c->stream));
    return NULL;
}

usi_error *usi_cuda_reshape_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    if (!t->src[0]->grad) return NULL;
    return usi_cuda_copy_or_add(c, t->src[0]->grad, t->grad, t->numel, acc[0], t->bf16);
}

/* bytes of one element of t's value or gradient */
static size_t elem_bytes(const usi_tensor *t) { return t->bf16 ? 2 : sizeof(float); }

static void perm_plan(const usi_tensor *t, usi_cuda_perm *p)
{
    const usi_tensor *in = t->src[0];
    int64_t in_stride[USI_MAX_DIMS], st = 1;
    for (int32_t d = in->ndim - 1; d >= 0; d--) {
        in_stride[d] = st;
        st *= in->shape[d];
    }
    memset(p, 0, sizeof *p);
    p->ndim = t->ndim;
    for (int32_t d = 0; d < t->ndim; d++) {
        p->oshape[d] = t->shape[d];
        p->istride[d] = in_stride[t->attrs.permute.perm[d]];
    }
}

usi_error *usi_cuda_permute_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    usi_cuda_perm p;
    perm_plan(t, &p);
    return usi_cuda_permute_forward(c->stream, t->data, t->src[0]->data, &p, t->numel, t->bf16);
}

usi_error *usi_cuda_permute_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    if (!t->src[0]->grad) return NULL;
    usi_cuda_perm p;
    perm_plan(t, &p);
    return usi_cuda_permute_backward(c->stream, t->src[0]->grad, t->grad, &p, t->numel, acc[0], t->bf16);
}

/* out[O, sum Ck, I] = [x0[O,C0,I], x1[O,C1,I], ...] */
usi_error *usi_cuda_concat_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    int32_t ax = t->attrs.concat.axis;
    int64_t O = dims_prod(t, 0, ax), I = dims_prod(t, ax + 1, t->ndim);
    int64_t row = t->shape[ax] * I, at = 0;
    for (int32_t k = 0; k < t->n_src; k++) {
        const usi_tensor *x = t->src[k];
        int64_t w = x->shape[ax] * I;
        if (w)
            USI_TRY(usi_cuda_copy_rows(c->stream, (char *)t->data + at * elem_bytes(t), row, x->data, w, O, w, 0,
                                       t->bf16));
        at += w;
    }
    return NULL;
}

usi_error *usi_cuda_concat_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    int32_t ax = t->attrs.concat.axis;
    int64_t O = dims_prod(t, 0, ax), I = dims_prod(t, ax + 1, t->ndim);
    int64_t row = t->shape[ax] * I, at = 0;
    for (int32_t k = 0; k < t->n_src; k++) {
        const usi_tensor *x = t->src[k];
        int64_t w = x->shape[ax] * I;
        if (x->grad && w)
            USI_TRY(usi_cuda_copy_rows(c->stream, x->grad, w, (char *)t->grad + at * elem_bytes(t), row, O, w, acc[k],
                                       t->bf16));
        at += w;
    }
    return NULL;
}

usi_error *usi_cuda_slice_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    int32_t ax = t->attrs.slice.axis;
    int64_t O = dims_prod(t, 0, ax), I = dims_prod(t, ax + 1, t->ndim);
    return usi_cuda_slice_forward(c->stream, t->data, t->src[0]->data, O, t->shape[ax], I, t->src[0]->shape[ax],
                                  t->attrs.slice.start, t->attrs.slice.step, t->bf16);
}

usi_error *usi_cuda_slice_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    if (!t->src[0]->grad) return NULL;
    int32_t ax = t->attrs.slice.axis;
    int64_t O = dims_prod(t, 0, ax), I = dims_prod(t, ax + 1, t->ndim);
    return usi_cuda_slice_backward(c->stream, t->src[0]->grad, t->grad, O, t->shape[ax], I, t->src[0]->shape[ax],
                                   t->attrs.slice.start, t->attrs.slice.step, acc[0], t->bf16);
}

static void pad_plan(const usi_tensor *t, usi_cuda_pad *p)
{
    memset(p, 0, sizeof *p);
    p->ndim = t->ndim;
    for (int32_t d = 0; d < t->ndim; d++) {
        p->oshape[d] = t->shape[d];
        p->ishape[d] = t->src[0]->shape[d];
        p->before[d] = t->attrs.pad.before[d];
    }
}

usi_error *usi_cuda_pad_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    usi_cuda_pad p;
    pad_plan(t, &p);
    return usi_cuda_pad_forward(c->stream, t->data, t->src[0]->data, &p, t->numel, (float)t->attrs.pad.value,
                                t->bf16);
}

usi_error *usi_cuda_pad_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    if (!t->src[0]->grad) return NULL;
    usi_cuda_pad p;
    pad_plan(t, &p);
    return usi_cuda_pad_backward(c->stream, t->src[0]->grad, t->grad, &p, t->src[0]->numel, acc[0], t->bf16);
}

usi_error *usi_cuda_space_to_depth_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    const usi_tensor *x = t->src[0];
    return usi_cuda_space_to_depth_forward(c->stream, t->data, x->data, x->shape[0], x->shape[1], x->shape[2],
                                           x->shape[3], t->attrs.space_to_depth.block, t->bf16);
}

usi_error *usi_cuda_space_to_depth_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    const usi_tensor *x = t->src[0];
    if (!x->grad) return NULL;
    return usi_cuda_space_to_depth_backward(c->stream, x->grad, t->grad, x->shape[0], x->shape[1], x->shape[2],
                                            x->shape[3], t->attrs.space_to_depth.block, acc[0], t->bf16);
}
