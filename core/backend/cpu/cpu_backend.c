/* The CPU backend: every op, OpenMP as the thread pool (oneDNN in Debian is
 * built on OpenMP, so both share one pool instead of fighting for cores). */
#include <omp.h>

#include "backend/cpu/cpu.h"
#include "plugin/custom_op.h"

#define OP(e, name) [e] = {usi_cpu_##name##_fwd, usi_cpu_##name##_bwd}

static const struct {
    usi_cpu_fwd_fn fwd;
    usi_cpu_bwd_fn bwd;
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

int32_t usi_cpu_supports(int32_t op)
{
    return op >= 0 && op < USI_OP_COUNT && kernels[op].fwd != NULL;
}

void usi_cpu_workspace(usi_tensor *t, int32_t training)
{
    t->saved_bytes = t->fwd_scratch_bytes = t->bwd_scratch_bytes = 0;
    switch (t->op) {
    case USI_OP_CONV2D: usi_cpu_conv2d_workspace(t, training); break;
    case USI_OP_BATCH_NORM:
        if (!t->folded) usi_cpu_norm_workspace(t, training);
        break;
    case USI_OP_LAYER_NORM: usi_cpu_norm_workspace(t, training); break;
    default: break;
    }
}

usi_error *usi_cpu_forward(const usi_exec_ctx *ctx, usi_tensor *t)
{
    if (!usi_cpu_supports(t->op))
        return usi_error_new(USI_ERR_UNSUPPORTED, "cpu: no kernel for op %d", t->op);
    if (t->folded) return NULL; /* its conv wrote the output */
    return kernels[t->op].fwd(ctx, t);
}

usi_error *usi_cpu_backward(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    if (!usi_cpu_supports(t->op))
        return usi_error_new(USI_ERR_UNSUPPORTED, "cpu: no kernel for op %d", t->op);
    return kernels[t->op].bwd(ctx, t, acc);
}

void usi_cpu_set_threads(int32_t n) { omp_set_num_threads(n > 0 ? n : omp_get_num_procs()); }

int32_t usi_cpu_threads(void) { return omp_get_max_threads(); }

/* Host memory on both sides: an upload is a copy. */
static usi_error *cpu_upload(usi_device *d, void *dst, const void *src, size_t bytes)
{
    return usi_cpu_copy(d, dst, src, bytes);
}

const usi_backend *usi_cpu_backend(void)
{
    static const usi_backend be = {
        .name = "cpu",
        .host_memory = 1,
        .custom_kernels = USI_CUSTOM_ON_CPU,
        .has_bf16 = 0,
        .alloc = usi_cpu_alloc,
        .free = usi_cpu_free,
        .upload = cpu_upload,
        .download = cpu_upload,
        .copy = usi_cpu_copy,
        .fill = usi_cpu_fill,
        .synchronize = usi_cpu_synchronize,
        .supports = usi_cpu_supports,
        .workspace = usi_cpu_workspace,
        .forward = usi_cpu_forward,
        .backward = usi_cpu_backward,
        .optim_step = usi_cpu_optim_step,
        .ema_update = usi_cpu_ema_update,
        .sum_squares = usi_cpu_sum_squares,
        .scale = usi_cpu_scale,
        .image_convert = usi_cpu_image_convert,
        .u8_normalize = usi_cpu_u8_normalize,
        .set_threads = usi_cpu_set_threads,
        .threads = usi_cpu_threads,
    };
    return &be;
}
