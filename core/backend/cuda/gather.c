/* Gather's adapter. The forward reads the index table as it is; the backward
 * needs it inverted (which positions picked each row), made once per node on
 * the host from the constant's values and kept on the device in the node's
 * backend state: constants never change after they are recorded. */
#include <stdlib.h>

#include "backend/cuda/cuda.h"

typedef struct gather_dims {
    int64_t O, K, I, M;
} gather_dims;

static gather_dims dims_of(const usi_tensor *t)
{
    const usi_tensor *table = t->src[0];
    int32_t ax = t->attrs.gather.axis;
    gather_dims d = {1, table->shape[ax], 1, t->src[1]->numel};
    for (int32_t i = 0; i < ax; i++) d.O *= table->shape[i];
    for (int32_t i = ax + 1; i < table->ndim; i++) d.I *= table->shape[i];
    return d;
}

/* The inverted index: start [K + 1], pos [M] (int32, device). */
typedef struct gather_inverse {
    int32_t *start, *pos;
} gather_inverse;

static void inverse_free(void *p)
{
    gather_inverse *inv = p;
    if (inv->start) cudaFree(inv->start);
    if (inv->pos) cudaFree(inv->pos);
    free(inv);
}

/* Counting sort of the indices on the host: positions stay ascending within
 * a row, the order the CPU backend adds them in. */
static usi_error *inverse_build(const int32_t *idx, gather_dims d, int32_t *start, int32_t *pos)
{
    for (int64_t k = 0; k <= d.K; k++) start[k] = 0;
    for (int64_t m = 0; m < d.M; m++) {
        if (idx[m] < 0 || idx[m] >= d.K)
            return usi_error_new(USI_ERR_INTERNAL, "gather: index %d (entry %lld) is not in [0, %lld)",
                                 idx[m], (long long)m, (long long)d.K);
        start[idx[m] + 1]++;
    }
    for (int64_t k = 0; k < d.K; k++) start[k + 1] += start[k];
    int32_t *next = malloc((size_t)d.K * sizeof *next);
    if (!next) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    for (int64_t k = 0; k < d.K; k++) next[k] = start[k];
    for (int64_t m = 0; m < d.M; m++) pos[next[idx[m]]++] = (int32_t)m;
    free(next);
    return NULL;
}

static usi_error *inverse_upload(usi_cuda *c, const usi_tensor *t, gather_dims d, gather_inverse *inv)
{
    size_t n_idx = (size_t)d.M * sizeof(int32_t), n_start = (size_t)(d.K + 1) * sizeof(int32_t);
    int32_t *idx = malloc(n_idx ? n_idx : 1), *start = malloc(n_start), *pos = malloc(n_idx ? n_idx : 1);
    usi_error *e = idx && start && pos ? NULL : usi_error_new(USI_ERR_NOMEM, "out of host memory");
    cudaError_t st = cudaSuccess;
    if (!e) st = cudaMemcpyAsync(idx, t->src[1]->data, n_idx, cudaMemcpyDeviceToHost, c->stream);
    if (!e && st == cudaSuccess) st = cudaStreamSynchronize(c->stream);
    if (!e && st != cudaSuccess) e = usi_cuda_fail(st, "cudaMemcpyAsync(indices)", __FILE__, __LINE__);
    if (!e) e = inverse_build(idx, d, start, pos);
    if (!e) st = cudaMalloc((void **)&inv->start, n_start);
    if (!e && st == cudaSuccess) st = cudaMalloc((void **)&inv->pos, n_idx ? n_idx : sizeof(int32_t));
    /* synchronous copies: the host arrays are freed right after */
    if (!e && st == cudaSuccess) st = cudaMemcpy(inv->start, start, n_start, cudaMemcpyHostToDevice);
    if (!e && st == cudaSuccess && n_idx) st = cudaMemcpy(inv->pos, pos, n_idx, cudaMemcpyHostToDevice);
    if (!e && st != cudaSuccess) e = usi_cuda_fail(st, "inverted gather index", __FILE__, __LINE__);
    free(idx);
    free(start);
    free(pos);
    return e;
}

static usi_error *inverse_of(usi_cuda *c, usi_tensor *t, gather_dims d, gather_inverse **out)
{
    if (!t->backend_state) {
        if (d.M > INT32_MAX || d.K >= INT32_MAX)
            return usi_error_new(USI_ERR_UNSUPPORTED, "gather '%s': over 2^31 indices or rows", t->name);
        gather_inverse *inv = calloc(1, sizeof *inv);
        if (!inv) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
        usi_error *e = inverse_upload(c, t, d, inv);
        if (e) {
            inverse_free(inv);
            return e;
        }
        t->backend_state = inv;
        t->backend_state_free = inverse_free;
    }
    *out = t->backend_state;
    return NULL;
}

usi_error *usi_cuda_gather_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    gather_dims d = dims_of(t);
    return usi_cuda_gather_forward(c->stream, t->data, t->src[0]->data, t->src[1]->data, d.O, d.K, d.I, d.M);
}

usi_error *usi_cuda_gather_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    float *dtable = t->src[0]->grad;
    if (!dtable) return NULL;
    gather_dims d = dims_of(t);
    gather_inverse *inv = NULL;
    USI_TRY(inverse_of(c, t, d, &inv));
    return usi_cuda_gather_backward(c->stream, dtable, t->grad, inv->start, inv->pos, d.O, d.K, d.I, d.M, acc[0]);
}
