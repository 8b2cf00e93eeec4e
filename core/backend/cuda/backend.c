/* The CUDA backend's table: every graph op (a custom op through its
 * plugin's CUDA kernels, custom.c; one without them runs on host copies,
 * core/graph/custom_host.c), the planner's workspace sizes, and dispatch. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/plan.h"
#include "plugin/custom_op.h"

#define OP(e, name) [e] = {usi_cuda_##name##_fwd, usi_cuda_##name##_bwd}

static const struct {
    usi_cuda_fwd_fn fwd;
    usi_cuda_bwd_fn bwd;
} kernels[USI_OP_COUNT] = {
    OP(USI_OP_CONV2D, conv2d),
    OP(USI_OP_LINEAR, linear),
    OP(USI_OP_MATMUL, matmul),
    OP(USI_OP_BATCH_NORM, batch_norm),
    OP(USI_OP_LAYER_NORM, layer_norm),
    OP(USI_OP_ACT, act),
    OP(USI_OP_BINARY, binary),
    OP(USI_OP_SCALE, scale),
    OP(USI_OP_POOL2D, pool2d),
    OP(USI_OP_REDUCE, reduce),
    OP(USI_OP_SOFTMAX, softmax),
    OP(USI_OP_DROPOUT, dropout),
    OP(USI_OP_DROP_PATH, drop_path),
    OP(USI_OP_RESHAPE, reshape),
    OP(USI_OP_PERMUTE, permute),
    OP(USI_OP_CONCAT, concat),
    OP(USI_OP_SLICE, slice),
    OP(USI_OP_PAD, pad),
    OP(USI_OP_SPACE_TO_DEPTH, space_to_depth),
    OP(USI_OP_GATHER, gather),
    OP(USI_OP_LOSS_SOFT_CE, loss_soft_ce),
    OP(USI_OP_LOSS_CE, loss_ce),
    OP(USI_OP_LOSS_KL, loss_kl),
    OP(USI_OP_CUSTOM, custom),
};

int32_t usi_cuda_supports(int32_t op)
{
    return op >= 0 && op < USI_OP_COUNT && kernels[op].fwd != NULL;
}

static size_t up64(size_t n) { return (n + 63) / 64 * 64; }

void usi_cuda_workspace(usi_tensor *t, int32_t training)
{
    t->saved_bytes = t->fwd_scratch_bytes = t->bwd_scratch_bytes = 0;
    switch (t->op) {
    case USI_OP_CONV2D: usi_cuda_conv2d_workspace(t, training); break;
    case USI_OP_LINEAR:
    case USI_OP_MATMUL: usi_cuda_gemm_workspace(t, training && t->has_grad, usi_cuda_node_mixed(t)); break;
    case USI_OP_BATCH_NORM:
        if (!t->folded) usi_cuda_norm_workspace(t, training);
        break;
    case USI_OP_LAYER_NORM: usi_cuda_norm_workspace(t, training); break;
    case USI_OP_POOL2D:
        if (training) t->bwd_scratch_bytes = usi_cuda_pool_scratch_bytes(t);
        break;
    case USI_OP_DROP_PATH:
        /* the per-sample keep factors, drawn on the device */
        t->fwd_scratch_bytes = t->bwd_scratch_bytes = up64((size_t)t->shape[0] * sizeof(float));
        break;
    case USI_OP_LOSS_SOFT_CE:
    case USI_OP_LOSS_CE:
    case USI_OP_LOSS_KL: usi_cuda_loss_workspace(t, training); break;
    default: break;
    }
}

static usi_error *forward(const usi_exec_ctx *ctx, usi_tensor *t)
{
    if (!usi_cuda_supports(t->op))
        return usi_error_new(USI_ERR_UNSUPPORTED, "cuda: no kernel for op %d", t->op);
    if (t->folded || t->fused) return NULL; /* its conv or norm wrote the output */
    usi_cuda *c = usi_cuda_of(ctx->dev);
    USI_TRY(usi_cuda_use(c));
    return kernels[t->op].fwd(c, ctx, t);
}

static usi_error *backward(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    if (!usi_cuda_supports(t->op))
        return usi_error_new(USI_ERR_UNSUPPORTED, "cuda: no kernel for op %d", t->op);
    if (t->fused) return NULL; /* its norm's backward takes its gradient */
    usi_cuda *c = usi_cuda_of(ctx->dev);
    USI_TRY(usi_cuda_use(c));
    return kernels[t->op].bwd(c, ctx, t, acc);
}

/* The kernels that read and write activations kept as bf16 themselves
 * (core/graph/precision.c hands the others fp32 copies): convolution,
 * linear and matmul with either type on either side, activations and
 * scale likewise, binary ops, batch norm, pooling, reductions, dropout,
 * drop-path and the shape ops (reshape, permute, concat, slice, pad, space to depth) where
 * inputs and output share a type, and layer norm and softmax
 * from either into fp32 (the ones they keep). Parameters stay fp32. USI_BF16_NATIVE=off sends every node
 * through the copies: to tell a kernel's fault from the rest. */
int32_t usi_cuda_bf16_native(const usi_tensor *t, int32_t backward)
{
    (void)backward;
    /* read once: the planner's sizes and the runs must agree */
    static int off = -1;
    if (off < 0) {
        const char *v = getenv("USI_BF16_NATIVE");
        off = v && !strcmp(v, "off");
    }
    if (off || t->n_src < 1 || !t->src[0]) return 0;
    const usi_tensor *x = t->src[0];
    /* weights, biases, statistics: fp32 (products: either, but the bias) */
    for (int32_t k = 1; k < t->n_src; k++)
        if (t->src[k] && t->src[k]->bf16 && t->op != USI_OP_BINARY && t->op != USI_OP_CONCAT &&
            (t->op != USI_OP_MATMUL || k > 1) && (t->op != USI_OP_LINEAR || k > 1))
            return 0;
    switch (t->op) {
    case USI_OP_MATMUL: /* a gradient summed over batches is summed in fp32 */
        return !(t->src[0]->bf16 || (t->n_src > 1 && t->src[1] && t->src[1]->bf16)) ||
               !usi_cuda_matmul_sums_batches(t);
    case USI_OP_CONV2D:
    case USI_OP_LINEAR:
    case USI_OP_ACT:
    case USI_OP_SCALE: return 1;
    case USI_OP_BINARY: return t->n_src == 2 && t->src[1] && x->bf16 == t->bf16 && t->src[1]->bf16 == t->bf16;
    case USI_OP_BATCH_NORM:
    case USI_OP_POOL2D:
    case USI_OP_REDUCE:
    case USI_OP_DROPOUT:
    case USI_OP_DROP_PATH:
    case USI_OP_RESHAPE:
    case USI_OP_PERMUTE:
    case USI_OP_SLICE:
    case USI_OP_PAD:
    case USI_OP_SPACE_TO_DEPTH: return x->bf16 == t->bf16;
    case USI_OP_CONCAT:
        for (int32_t k = 0; k < t->n_src; k++)
            if (!t->src[k] || t->src[k]->bf16 != t->bf16) return 0;
        return 1;
    case USI_OP_LAYER_NORM:
    case USI_OP_SOFTMAX: return !t->bf16; /* a bf16 input, an fp32 result */
    default: return 0;
    }
}

/* cuDNN's tensor-core convolutions, which "mixed" runs, read and write
 * channels-last: graphs keep activations so there (core/graph/layout.c). */
int32_t usi_cuda_prefers_cl(const usi_device *d) { return d->mixed; }

int32_t usi_cuda_cl_native(const usi_tensor *t, int32_t backward)
{
    (void)backward;
    if (t->n_src < 1 || !t->src[0]) return 0;
    const usi_tensor *x = t->src[0];
    switch (t->op) {
    case USI_OP_CONV2D: /* bf16 copies in either layout; weights and bias never channels-last */
        return usi_cuda_node_mixed(t) && (t->n_src < 2 || !t->src[1] || !t->src[1]->cl) &&
               (t->n_src < 3 || !t->src[2] || !t->src[2]->cl);
    case USI_OP_ACT:
    case USI_OP_SCALE:
    case USI_OP_DROP_PATH: return t->n_src == 1 && x->cl == t->cl; /* element by element, or per sample */
    case USI_OP_POOL2D: return x->cl == t->cl;                      /* planes in either layout (pool.cu) */
    case USI_OP_BATCH_NORM:
        for (int32_t k = 1; k < t->n_src; k++)
            if (t->src[k] && t->src[k]->cl) return 0;
        return x->cl == t->cl;
    case USI_OP_REDUCE: return usi_reduce_cl_ok(t); /* plans in memory order (backend/plan.c) */
    case USI_OP_BINARY: return usi_bcast_cl_ok(t);
    default: return 0;
    }
}

/* A batch norm on our kernels (kept as bf16 or channels-last: "mixed")
 * applies its ReLU itself (core/graph/fuse.c): relu(y) written by the
 * normalising kernel, the ReLU's gradient masked by its output as the
 * gradient kernels read it (norm.cu). */
int32_t usi_cuda_fuses_act(const usi_tensor *bn, const usi_tensor *act)
{
    return act->attrs.act.kind == USI_ACT_RELU && (bn->bf16 || bn->cl) && bn->src[0] && bn->src[0]->has_grad;
}

/* Host threads do no kernel work here. */
static void set_threads(int32_t n) { (void)n; }
static int32_t threads(void) { return 1; }

const usi_backend *usi_cuda_backend(void)
{
    static const usi_backend be = {
        .name = "cuda",
        .host_memory = 0,
        .custom_kernels = USI_CUSTOM_ON_CUDA,
        .has_bf16 = 1,
        .bf16_storage = 1,
        .bf16_native = usi_cuda_bf16_native,
        .to_bf16 = usi_cuda_cast_to_bf16,
        .from_bf16 = usi_cuda_cast_from_bf16,
        .prefers_cl = usi_cuda_prefers_cl,
        .cl_native = usi_cuda_cl_native,
        .repack = usi_cuda_repack_dev,
        .fuses_act = usi_cuda_fuses_act,
        .alloc = usi_cuda_alloc,
        .free = usi_cuda_free,
        .upload = usi_cuda_upload,
        .download = usi_cuda_download,
        .copy = usi_cuda_copy,
        .fill = usi_cuda_fill,
        .synchronize = usi_cuda_synchronize,
        .supports = usi_cuda_supports,
        .workspace = usi_cuda_workspace,
        .forward = forward,
        .backward = backward,
        .optim_step = usi_cuda_optim_step,
        .ema_update = usi_cuda_ema_update,
        .sum_squares = usi_cuda_sum_squares,
        .scale = usi_cuda_scale,
        .image_convert = usi_cuda_image_convert,
        .u8_normalize = usi_cuda_u8_normalize,
        .set_threads = set_threads,
        .threads = threads,
        .mem_info = usi_cuda_mem_info,
        .host_alloc = usi_cuda_host_alloc,
        .host_free = usi_cuda_host_free,
        .stage_new = usi_cuda_stage_new,
        .stage_free = usi_cuda_stage_free,
        .stage_put = usi_cuda_stage_put,
        .stage_take = usi_cuda_stage_take,
        .record = usi_cuda_record,
        .replay = usi_cuda_replay,
        .rec_free = usi_cuda_rec_free,
    };
    return &be;
}
