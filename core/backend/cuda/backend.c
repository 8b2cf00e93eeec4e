/* The CUDA backend's table: memory now, kernels next. */
#include <string.h>

#include "backend/cuda/cuda.h"

/* Kernels come with the next step: none yet. */
static const struct {
    usi_cuda_fwd_fn fwd;
    usi_cuda_bwd_fn bwd;
} kernels[USI_OP_COUNT];

int32_t usi_cuda_supports(int32_t op)
{
    return op >= 0 && op < USI_OP_COUNT && kernels[op].fwd != NULL;
}

void usi_cuda_workspace(usi_tensor *t, int32_t training)
{
    (void)training;
    t->saved_bytes = t->fwd_scratch_bytes = t->bwd_scratch_bytes = 0;
}

static usi_error *no_step(void) { return usi_error_new(USI_ERR_UNSUPPORTED, "cuda: no training-step kernels yet"); }

static usi_error *optim_step(usi_device *d, const usi_optim_args *a)
{
    (void)d, (void)a;
    return no_step();
}

static usi_error *ema_update(usi_device *d, float *ema, const float *w, size_t n, double decay)
{
    (void)d, (void)ema, (void)w, (void)n, (void)decay;
    return no_step();
}

static usi_error *sum_squares(usi_device *d, const float *x, size_t n, double *out)
{
    (void)d, (void)x, (void)n, (void)out;
    return no_step();
}

static usi_error *scale(usi_device *d, float *x, size_t n, double s)
{
    (void)d, (void)x, (void)n, (void)s;
    return no_step();
}

static usi_error *image_convert(usi_device *d, float *dst, const float *src, int32_t n, int32_t c, int32_t h,
                                int32_t w, int32_t oh, int32_t ow, const float *a, const float *b)
{
    (void)d, (void)dst, (void)src, (void)n, (void)c, (void)h, (void)w, (void)oh, (void)ow, (void)a, (void)b;
    return no_step();
}

static usi_error *forward(const usi_exec_ctx *ctx, usi_tensor *t)
{
    if (!usi_cuda_supports(t->op))
        return usi_error_new(USI_ERR_UNSUPPORTED, "cuda: no kernel for op %d", t->op);
    if (t->folded) return NULL; /* its conv wrote the output */
    usi_cuda *c = usi_cuda_of(ctx->dev);
    USI_TRY(usi_cuda_use(c));
    return kernels[t->op].fwd(c, ctx, t);
}

static usi_error *backward(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    if (!usi_cuda_supports(t->op))
        return usi_error_new(USI_ERR_UNSUPPORTED, "cuda: no kernel for op %d", t->op);
    usi_cuda *c = usi_cuda_of(ctx->dev);
    USI_TRY(usi_cuda_use(c));
    return kernels[t->op].bwd(c, ctx, t, acc);
}

/* Host threads do no kernel work here. */
static void set_threads(int32_t n) { (void)n; }
static int32_t threads(void) { return 1; }

const usi_backend *usi_cuda_backend(void)
{
    static const usi_backend be = {
        .name = "cuda",
        .host_memory = 0,
        .has_bf16 = 0,
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
        .optim_step = optim_step,
        .ema_update = ema_update,
        .sum_squares = sum_squares,
        .scale = scale,
        .image_convert = image_convert,
        .set_threads = set_threads,
        .threads = threads,
        .mem_info = usi_cuda_mem_info,
    };
    return &be;
}
