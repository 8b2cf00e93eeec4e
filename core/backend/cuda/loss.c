/* Loss adapters: cross-entropy (soft targets or smoothed labels) and KD's
 * KL divergence. Each forward writes per-row terms to its scratch and sums
 * them in a fixed order on the device, so only the scalar leaves the GPU
 * (when the trainer reads it).
 *
 * Labels are checked on the device: a label outside [0, C) makes the loss
 * NaN and is recorded; the host reads the record at this node's backward (or
 * next forward, in graphs without backward) and fails with the CPU backend's
 * message there. */
#include <stdlib.h>

#include <string.h>

#include "backend/cuda/cuda.h"

void usi_cuda_loss_workspace(usi_tensor *t, int32_t training)
{
    (void)training;
    /* per-row terms in double */
    t->fwd_scratch_bytes = ((size_t)t->src[0]->shape[0] * sizeof(double) + 63) / 64 * 64;
}

typedef struct label_check {
    int32_t *dev;  /* {found, label, sample} */
    int32_t *host; /* pinned copy */
    cudaEvent_t copied;
    int32_t pending;
} label_check;

static void label_check_free(void *p)
{
    label_check *lc = p;
    if (lc->copied) cudaEventDestroy(lc->copied);
    if (lc->dev) cudaFree(lc->dev);
    if (lc->host) cudaFreeHost(lc->host);
    free(lc);
}

static usi_error *label_check_of(usi_tensor *t, label_check **out)
{
    if (!t->backend_state) {
        label_check *lc = calloc(1, sizeof *lc);
        if (!lc) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
        t->backend_state = lc;
        t->backend_state_free = label_check_free;
        CUDA_TRY(cudaMalloc((void **)&lc->dev, 3 * sizeof(int32_t)));
        CUDA_TRY(cudaMallocHost((void **)&lc->host, 3 * sizeof(int32_t)));
        CUDA_TRY(cudaEventCreateWithFlags(&lc->copied, cudaEventDisableTiming));
    }
    *out = t->backend_state;
    return NULL;
}

/* The record of the last forward: waits for it, fails on a bad label. */
static usi_error *label_check_read(label_check *lc, int64_t C)
{
    if (!lc->pending) return NULL;
    CUDA_TRY(cudaEventSynchronize(lc->copied));
    lc->pending = 0;
    if (lc->host[0])
        return usi_error_new(USI_ERR_INVALID, "label %d of sample %d is not in [0, %lld)", lc->host[1], lc->host[2],
                             (long long)C);
    return NULL;
}

static usi_error *ce_fwd(usi_cuda *c, usi_tensor *t, int32_t soft)
{
    const usi_tensor *z = t->src[0];
    int64_t N = z->shape[0], C = z->shape[1];
    int32_t *bad = NULL;
    label_check *lc = NULL;
    if (!soft) {
        USI_TRY(label_check_of(t, &lc));
        USI_TRY(label_check_read(lc, C));
        CUDA_TRY(cudaMemsetAsync(lc->dev, 0, sizeof(int32_t), c->stream));
        bad = lc->dev;
    }
    double eps = soft ? 0.0 : t->attrs.loss_ce.smoothing;
    USI_TRY(usi_cuda_ce_forward(c->stream, t->data, t->fwd_scratch, z->data, t->src[1]->data, soft, N, C, eps, bad));
    if (lc) {
        CUDA_TRY(cudaMemcpyAsync(lc->host, lc->dev, 3 * sizeof(int32_t), cudaMemcpyDeviceToHost, c->stream));
        CUDA_TRY(cudaEventRecord(lc->copied, c->stream));
        lc->pending = 1;
    }
    return NULL;
}

static usi_error *ce_bwd(usi_cuda *c, usi_tensor *t, const int32_t *acc, int32_t soft)
{
    const usi_tensor *z = t->src[0];
    int64_t N = z->shape[0], C = z->shape[1];
    if (!soft && t->backend_state) USI_TRY(label_check_read(t->backend_state, C));
    float *dz = z->grad, *dq = soft ? t->src[1]->grad : NULL;
    if (!dz && !dq) return NULL;
    double eps = soft ? 0.0 : t->attrs.loss_ce.smoothing;
    return usi_cuda_ce_backward(c->stream, dz, dq, t->grad, z->data, t->src[1]->data, soft, N, C, eps, acc[0],
                                acc[1]);
}

usi_error *usi_cuda_loss_soft_ce_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    return ce_fwd(c, t, 1);
}

usi_error *usi_cuda_loss_soft_ce_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    return ce_bwd(c, t, acc, 1);
}

usi_error *usi_cuda_loss_ce_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    return ce_fwd(c, t, 0);
}

usi_error *usi_cuda_loss_ce_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    return ce_bwd(c, t, acc, 0);
}

usi_error *usi_cuda_loss_kl_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    const usi_tensor *s = t->src[0], *te = t->src[1];
    return usi_cuda_kl_forward(c->stream, t->data, t->fwd_scratch, s->data, te->data, s->shape[0], s->shape[1],
                               t->attrs.loss_kl.temperature);
}

usi_error *usi_cuda_loss_kl_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    const usi_tensor *s = t->src[0], *te = t->src[1];
    if (!s->grad && !te->grad) return NULL;
    return usi_cuda_kl_backward(c->stream, s->grad, te->grad, t->grad, s->data, te->data, s->shape[0], s->shape[1],
                                t->attrs.loss_kl.temperature, acc[0], acc[1]);
}
