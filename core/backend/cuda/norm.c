/* Batch norm and layer norm. Batch norm with batch statistics runs on cuDNN
 * (spatial mode on x viewed as [O, C, I, 1]); with running statistics
 * (eval, frozen norms) and in the backward cases cuDNN does not cover (no
 * input gradient, no affine parameters) it runs on our kernels with the CPU
 * backend's formulas.
 *
 * Saved statistics keep the CPU layout, 3C floats: mean, 1/std, variance.
 * cuDNN fills the first two (its saved mean and inverse std); the variance
 * block, which only the CPU's running-statistics update reads, is written
 * by the eval and sync paths only.
 *
 * With a collective (dist.sync_bn) batch statistics are every rank's: our
 * kernels compute this rank's sums into the node's scratch (each channel's
 * values split over blocks, partial sums added in a fixed order), the sums go
 * over ranks (NCCL on this stream, or through host memory), and our kernels
 * normalise and update the running statistics; backward likewise.
 * USI_CUDA_BATCH_NORM=ours runs those kernels on one rank's batch (no sum)
 * instead of cuDNN: to tell cuDNN's results and speed from ours. A norm
 * whose input and output are kept as bf16 always runs on ours, which read
 * and write bf16 and keep the statistics in fp32 (double sums); so does a
 * norm kept channels-last, seen as [N*H*W, C, 1] (rows of channels), and
 * a norm that applies its ReLU (core/graph/fuse.c, usi_cuda_fuses_act). */
#include <stdlib.h>

#include <string.h>

#include "backend/cuda/cuda.h"

static void view3(const usi_tensor *x, int32_t axis, int64_t *outer, int64_t *C, int64_t *inner);

/* A batch norm's x as [O, C, I]: [N, C, H*W], or [N*H*W, C, 1] when it is
 * kept channels-last (its input and output alike: usi_cuda_cl_native). */
static void bn_view(const usi_tensor *t, int64_t *O, int64_t *C, int64_t *I)
{
    view3(t->src[0], 1, O, C, I);
    if (t->cl) {
        *O *= *I;
        *I = 1;
    }
}

/* A batch norm's scratch for our kernels: the 1 + 2C sums (what goes over
 * ranks), then the partial sums of the channels' segments, for either
 * view (the executor's NCHW copies run it as NCHW). */
static size_t sums_doubles(const usi_tensor *t)
{
    int64_t O, C, I;
    view3(t->src[0], 1, &O, &C, &I);
    int64_t s = usi_cuda_bn_parts(O, C, I), s_cl = usi_cuda_bn_parts(O * I, C, 1);
    return (size_t)(1 + 2 * C + 2 * C * (s > s_cl ? s : s_cl));
}

void usi_cuda_norm_workspace(usi_tensor *t, int32_t training)
{
    (void)training;
    const usi_tensor *x = t->src[0];
    int64_t n = t->op == USI_OP_BATCH_NORM ? x->shape[1] : x->numel / x->shape[t->attrs.layer_norm.axis];
    t->saved_bytes = (t->op == USI_OP_BATCH_NORM ? 3 : 2) * (size_t)n * sizeof(float);
    /* the sums of our kernels (over ranks for dist.sync_bn: a graph learns
     * of its collective after it is planned; always for a norm kept as
     * bf16, also in eval graphs without running statistics) */
    if (t->op == USI_OP_BATCH_NORM && t->attrs.batch_norm.batch_stats)
        t->fwd_scratch_bytes = t->bwd_scratch_bytes = (sums_doubles(t) * sizeof(double) + 63) / 64 * 64;
}

static void view3(const usi_tensor *x, int32_t axis, int64_t *outer, int64_t *C, int64_t *inner)
{
    *outer = *inner = 1;
    for (int32_t d = 0; d < axis; d++) *outer *= x->shape[d];
    *C = x->shape[axis];
    for (int32_t d = axis + 1; d < x->ndim; d++) *inner *= x->shape[d];
}

static const float *src_f32(const usi_tensor *t, int32_t k)
{
    return k < t->n_src && t->src[k] ? (const float *)t->src[k]->data : NULL;
}

static float *src_grad(const usi_tensor *t, int32_t k)
{
    return k < t->n_src && t->src[k] ? t->src[k]->grad : NULL;
}

/* ---- batch norm ---- */

typedef struct bn_state {
    cudnnTensorDescriptor_t x, param;
} bn_state;

static void bn_state_free(void *p)
{
    bn_state *s = p;
    if (s->x) cudnnDestroyTensorDescriptor(s->x);
    if (s->param) cudnnDestroyTensorDescriptor(s->param);
    free(s);
}

static usi_error *bn_state_of(usi_tensor *t, bn_state **out)
{
    if (!t->backend_state) {
        int64_t O, C, I;
        view3(t->src[0], 1, &O, &C, &I);
        if (O > INT32_MAX || C > INT32_MAX || I > INT32_MAX)
            return usi_error_new(USI_ERR_UNSUPPORTED, "batch norm: dims past cuDNN's int range");
        bn_state *s = calloc(1, sizeof *s);
        if (!s) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
        t->backend_state = s;
        t->backend_state_free = bn_state_free;
        CUDNN_TRY(cudnnCreateTensorDescriptor(&s->x));
        CUDNN_TRY(cudnnCreateTensorDescriptor(&s->param));
        CUDNN_TRY(cudnnSetTensor4dDescriptor(s->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)O, (int)C, (int)I, 1));
        CUDNN_TRY(cudnnDeriveBNTensorDescriptor(s->param, s->x, CUDNN_BATCHNORM_SPATIAL));
    }
    *out = t->backend_state;
    return NULL;
}

/* USI_CUDA_BATCH_NORM=ours: batch statistics on our kernels, not cuDNN */
static int ours_forced(void)
{
    const char *v = getenv("USI_CUDA_BATCH_NORM");
    return v && !strcmp(v, "ours");
}

/* n doubles of device memory summed over ranks: on the stream where the
 * collective has a device path (NCCL), else through host memory. */
static usi_error *sum_over_ranks(usi_cuda *c, usi_collective *coll, double *sums, int32_t n)
{
    if (coll->sum_device) return coll->sum_device(coll, sums, n, c->stream);
    size_t bytes = (size_t)n * sizeof(double);
    double *host = malloc(bytes);
    if (!host) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    usi_error *e = NULL;
    cudaError_t st = cudaMemcpyAsync(host, sums, bytes, cudaMemcpyDeviceToHost, c->stream);
    if (st == cudaSuccess) st = cudaStreamSynchronize(c->stream);
    if (st != cudaSuccess) e = usi_cuda_fail(st, "cudaMemcpyAsync (batch-norm sums)", __FILE__, __LINE__);
    if (!e) e = coll->sum_host(coll, host, n);
    if (!e) {
        /* synchronous: host is freed below */
        st = cudaMemcpyAsync(sums, host, bytes, cudaMemcpyHostToDevice, c->stream);
        if (st == cudaSuccess) st = cudaStreamSynchronize(c->stream);
        if (st != cudaSuccess) e = usi_cuda_fail(st, "cudaMemcpyAsync (batch-norm sums)", __FILE__, __LINE__);
    }
    free(host);
    return e;
}

/* Batch statistics over every rank (coll; NULL: this rank's alone): our
 * kernels around one sum over ranks of [count, sum x, sum x^2] per
 * channel, with the CPU backend's formulas (core/backend/cpu/norm.c). */
static usi_error *batch_norm_fwd_sync(usi_cuda *c, usi_collective *coll, usi_tensor *t, int64_t O, int64_t C,
                                      int64_t I)
{
    const struct usi_attrs_batch_norm *a = &t->attrs.batch_norm;
    double *sums = t->fwd_scratch;
    if (!sums || t->fwd_scratch_bytes < sums_doubles(t) * sizeof(double))
        return usi_error_new(USI_ERR_INTERNAL, "batch norm over ranks: no scratch for its sums");
    float *rm = t->src[3] ? t->src[3]->data : NULL, *rv = t->src[4] ? t->src[4]->data : NULL;
    int64_t *counter = rm && rv && t->n_src > 5 && t->src[5] ? t->src[5]->data : NULL;
    USI_TRY(usi_cuda_batchnorm_sync_stats(c->stream, sums, t->src[0]->data, O, C, I, coll ? coll->idle : 0,
                                          t->bf16));
    if (coll) USI_TRY(sum_over_ranks(c, coll, sums, (int32_t)(1 + 2 * C)));
    /* with its ReLU applied, into the ReLU's memory (core/graph/fuse.c) */
    return usi_cuda_batchnorm_sync_finish(c->stream, t->data, t->saved, rm && rv ? rm : NULL, rm && rv ? rv : NULL,
                                          counter, sums, t->src[0]->data, src_f32(t, 1), src_f32(t, 2), O, C, I,
                                          a->eps, a->momentum, t->fuse_act != NULL, t->bf16);
}

/* Backward over every rank (coll; NULL: this rank's alone): dw, db from
 * this rank's sums; dx from the sums of dy and dy*xh over every rank. */
static usi_error *batch_norm_bwd_sync(usi_cuda *c, usi_collective *coll, usi_tensor *t, const int32_t *a3,
                                      int64_t O, int64_t C, int64_t I)
{
    double *sums = t->bwd_scratch;
    if (!sums || t->bwd_scratch_bytes < sums_doubles(t) * sizeof(double))
        return usi_error_new(USI_ERR_INTERNAL, "batch norm over ranks: no scratch for its sums");
    const void *x = t->src[0]->data;
    const float *mean = t->saved, *invstd = mean + C;
    /* a norm that applies its ReLU: t->grad is the ReLU's gradient, masked
     * by its output t->data (core/graph/fuse.c) */
    const void *z = t->fuse_act ? t->data : NULL;
    USI_TRY(usi_cuda_batchnorm_sync_grad_sums(c->stream, sums, src_grad(t, 1), src_grad(t, 2), t->grad, z, x, mean,
                                              invstd, O, C, I, coll ? coll->idle : 0, a3[1], a3[2], t->bf16));
    if (coll) USI_TRY(sum_over_ranks(c, coll, sums, (int32_t)(1 + 2 * C)));
    return usi_cuda_batchnorm_sync_grad_input(c->stream, src_grad(t, 0), sums, t->grad, z, x, src_f32(t, 1), mean,
                                              invstd, O, C, I, a3[0], t->bf16);
}

usi_error *usi_cuda_batch_norm_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    const usi_tensor *x = t->src[0];
    int64_t O, C, I;
    bn_view(t, &O, &C, &I);
    const struct usi_attrs_batch_norm *a = &t->attrs.batch_norm;
    float *mean = t->saved, *invstd = mean + C;
    float *rm = t->src[3] ? t->src[3]->data : NULL, *rv = t->src[4] ? t->src[4]->data : NULL;
    const float *w = src_f32(t, 1), *b = src_f32(t, 2);
    if (!a->batch_stats)
        return usi_cuda_batchnorm_eval_forward(c->stream, t->data, t->saved, x->data, w, b, rm, rv, O, C, I, a->eps,
                                               t->bf16);
    if (ctx->coll || ours_forced() || t->bf16 || t->cl || t->fuse_act)
        return batch_norm_fwd_sync(c, ctx->coll, t, O, C, I);
    bn_state *s = NULL;
    USI_TRY(bn_state_of(t, &s));
    const float *ones = NULL, *zeros = NULL;
    if (!w || !b) USI_TRY(usi_cuda_consts(c, (size_t)C, &ones, &zeros));
    float one = 1.0f, zero = 0.0f;
    /* running statistics: both or neither (the CPU updates both with rm) */
    int update = rm && rv;
    CUDNN_TRY(cudnnBatchNormalizationForwardTraining(c->cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, s->x, x->data,
                                                     s->x, t->data, s->param, w ? w : ones, b ? b : zeros,
                                                     a->momentum, update ? rm : NULL, update ? rv : NULL, a->eps,
                                                     mean, invstd));
    if (update && t->n_src > 5 && t->src[5]) USI_TRY(usi_cuda_counter_forward(c->stream, t->src[5]->data));
    return NULL;
}

usi_error *usi_cuda_batch_norm_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    const usi_tensor *x = t->src[0];
    int64_t O, C, I;
    bn_view(t, &O, &C, &I);
    const float *mean = t->saved, *invstd = mean + C;
    float *dx = src_grad(t, 0), *dw = src_grad(t, 1), *db = src_grad(t, 2);
    int32_t batch_stats = t->attrs.batch_norm.batch_stats;
    int32_t a3[3] = {acc[0], t->n_src > 1 ? acc[1] : 1, t->n_src > 2 ? acc[2] : 1};
    /* Without dx (on every rank alike) there is nothing to sum over ranks. */
    if (batch_stats && (ctx->coll || ours_forced() || t->bf16 || t->cl || t->fuse_act) && dx)
        return batch_norm_bwd_sync(c, ctx->coll, t, a3, O, C, I);
    if (t->fuse_act) /* usi_cuda_fuses_act asks for dx */
        return usi_error_new(USI_ERR_INTERNAL, "batch norm with its ReLU: no input gradient");
    /* cuDNN wants every gradient, and one blend factor for both parameters */
    if (!batch_stats || !dx || !dw || !db || a3[1] != a3[2] || t->bf16 || t->cl)
        return usi_cuda_batchnorm_backward(c->stream, dx, dw, db, t->grad, x->data, src_f32(t, 1), mean, invstd, O,
                                           C, I, batch_stats, a3, t->bf16);
    bn_state *s = NULL;
    USI_TRY(bn_state_of(t, &s));
    float one = 1.0f, zero = 0.0f;
    CUDNN_TRY(cudnnBatchNormalizationBackward(c->cudnn, CUDNN_BATCHNORM_SPATIAL, &one, a3[0] ? &one : &zero, &one,
                                              a3[1] ? &one : &zero, s->x, x->data, s->x, t->grad, s->x, dx, s->param,
                                              src_f32(t, 1), dw, db, t->attrs.batch_norm.eps, mean, invstd));
    return NULL;
}

/* ---- layer norm ---- */

usi_error *usi_cuda_layer_norm_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    const usi_tensor *x = t->src[0];
    int64_t O, C, I;
    view3(x, t->attrs.layer_norm.axis, &O, &C, &I);
    float *mean = t->saved, *rstd = mean + O * I;
    return usi_cuda_layernorm_forward(c->stream, t->data, mean, rstd, x->data, src_f32(t, 1), src_f32(t, 2), O, C,
                                      I, t->attrs.layer_norm.eps, x->bf16);
}

usi_error *usi_cuda_layer_norm_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    const usi_tensor *x = t->src[0];
    int64_t O, C, I;
    view3(x, t->attrs.layer_norm.axis, &O, &C, &I);
    const float *mean = t->saved, *rstd = mean + O * I;
    int32_t a3[3] = {acc[0], t->n_src > 1 ? acc[1] : 1, t->n_src > 2 ? acc[2] : 1};
    return usi_cuda_layernorm_backward(c->stream, src_grad(t, 0), src_grad(t, 1), src_grad(t, 2), t->grad, x->data,
                                       src_f32(t, 1), mean, rstd, O, C, I, a3, x->bf16);
}
