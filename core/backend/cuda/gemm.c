/* Linear and batched matmul on cuBLAS. Our tensors are row-major and cuBLAS
 * is column-major, so each product is computed transposed: C = A B is
 * C^T = B^T A^T, and a row-major [R, K] matrix is cuBLAS's [K, R] with
 * leading dimension K. beta gives overwrite-or-accumulate. fp32 math (no
 * TF32: cuBLAS's default math mode). */
#include <stdlib.h>

#include <string.h>

#include "backend/cuda/cuda.h"

static usi_error *fits_int(int64_t v, const char *what)
{
    if (v < 0 || v > INT32_MAX)
        return usi_error_new(USI_ERR_UNSUPPORTED, "%s: a dim of %lld is past cuBLAS's int range", what,
                             (long long)v);
    return NULL;
}

/* Row-major out[M,N] (+)= op(A) op(B) with the transposes spelled for the
 * row-major operands: ta = 1 uses A^T (A stored [K,M]), tb = 1 uses B^T (B
 * stored [N,K]). */
static usi_error *gemm_rm(usi_cuda *c, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                          const float *B, float beta, float *out)
{
    USI_TRY(fits_int(M, "gemm"));
    USI_TRY(fits_int(N, "gemm"));
    USI_TRY(fits_int(K, "gemm"));
    float one = 1.0f;
    /* out^T[N,M] = op(B)^T[N,K] op(A)^T[K,M], col-major */
    int lda = (int)(ta ? M : K), ldb = (int)(tb ? K : N);
    CUBLAS_TRY(cublasSgemm(c->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M,
                           (int)K, &one, B, ldb, A, lda, &beta, out, (int)N));
    return NULL;
}

/* The same over a batch with fixed strides between the matrices. */
static usi_error *gemm_rm_batched(usi_cuda *c, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                                  int64_t sa, const float *B, int64_t sb, float beta, float *out, int64_t so,
                                  int64_t batch)
{
    USI_TRY(fits_int(M, "gemm"));
    USI_TRY(fits_int(N, "gemm"));
    USI_TRY(fits_int(K, "gemm"));
    USI_TRY(fits_int(batch, "gemm"));
    float one = 1.0f;
    int lda = (int)(ta ? M : K), ldb = (int)(tb ? K : N);
    CUBLAS_TRY(cublasSgemmStridedBatched(c->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                         (int)N, (int)M, (int)K, &one, B, ldb, sb, A, lda, sa, &beta, out, (int)N,
                                         so, (int)batch));
    return NULL;
}

/* ---- linear ---- */

/* out[M,O] = inp[M,I] w[O,I]^T + bias[O] */
usi_error *usi_cuda_linear_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    const usi_tensor *x = t->src[0], *w = t->src[1];
    int64_t I = w->shape[1], O = w->shape[0], M = x->numel / I;
    const float *bias = t->n_src > 2 && t->src[2] ? t->src[2]->data : NULL;
    if (bias) USI_TRY(usi_cuda_bias_rows_forward(c->stream, t->data, bias, M, O));
    return gemm_rm(c, 0, 1, M, O, I, x->data, w->data, bias ? 1.0f : 0.0f, t->data);
}

/* dinp[M,I] (+)= dout[M,O] w[O,I]; dw[O,I] (+)= dout^T inp; dbias[O] (+)= sum_m dout */
usi_error *usi_cuda_linear_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    const usi_tensor *x = t->src[0], *w = t->src[1];
    const usi_tensor *b = t->n_src > 2 ? t->src[2] : NULL;
    int64_t I = w->shape[1], O = w->shape[0], M = x->numel / I;
    if (x->grad) USI_TRY(gemm_rm(c, 0, 0, M, I, O, t->grad, w->data, (float)acc[0], x->grad));
    if (w->grad) USI_TRY(gemm_rm(c, 1, 0, O, I, M, t->grad, x->data, (float)acc[1], w->grad));
    if (b && b->grad) {
        USI_TRY(fits_int(M, "linear"));
        USI_TRY(fits_int(O, "linear"));
        const float *ones = NULL;
        USI_TRY(usi_cuda_consts(c, (size_t)M, &ones, NULL));
        float one = 1.0f, beta = (float)acc[2];
        /* dout as col-major [O, M] times ones[M] */
        CUBLAS_TRY(cublasSgemv(c->cublas, CUBLAS_OP_N, (int)O, (int)M, &one, t->grad, (int)O, ones, 1, &beta,
                               b->grad, 1));
    }
    return NULL;
}

/* ---- matmul ---- */

/* Offsets of batch bi of out into a and b, broadcasting size-1 dims (the
 * CPU backend's batch_offsets). */
static void batch_offsets(const usi_tensor *t, int64_t bi, int64_t *ao, int64_t *bo)
{
    const usi_tensor *a = t->src[0], *b = t->src[1];
    int32_t nb = t->ndim - 2, na = a->ndim - 2, nbb = b->ndim - 2;
    int64_t sa = a->shape[a->ndim - 2] * a->shape[a->ndim - 1];
    int64_t sb = b->shape[b->ndim - 2] * b->shape[b->ndim - 1];
    *ao = *bo = 0;
    for (int32_t d = nb - 1; d >= 0; d--) {
        int64_t i = bi % t->shape[d];
        bi /= t->shape[d];
        int32_t da = d - (nb - na), db = d - (nb - nbb);
        if (da >= 0) {
            if (a->shape[da] != 1) *ao += i * sa;
            sa *= a->shape[da];
        }
        if (db >= 0) {
            if (b->shape[db] != 1) *bo += i * sb;
            sb *= b->shape[db];
        }
    }
}

/* When every batch's offsets are bi * stride (stride 0: one matrix for all),
 * the strides; else 0. */
int32_t usi_cuda_matmul_strides(const usi_tensor *t, int64_t B, int64_t *sa, int64_t *sb)
{
    int64_t a1 = 0, b1 = 0;
    if (B > 1) batch_offsets(t, 1, &a1, &b1);
    for (int64_t bi = 0; bi < B; bi++) {
        int64_t ao, bo;
        batch_offsets(t, bi, &ao, &bo);
        if (ao != bi * a1 || bo != bi * b1) return 0;
    }
    *sa = a1;
    *sb = b1;
    return 1;
}

static void matmul_dims(const usi_tensor *t, int64_t *M, int64_t *N, int64_t *K, int64_t *B)
{
    const usi_tensor *a = t->src[0];
    *M = t->shape[t->ndim - 2];
    *N = t->shape[t->ndim - 1];
    *K = a->shape[a->ndim - 1];
    *B = 1;
    for (int32_t d = 0; d < t->ndim - 2; d++) *B *= t->shape[d];
}

/* out[...,M,N] = a[...,M,K] @ b[...,K,N] */
usi_error *usi_cuda_matmul_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    const float *A = t->src[0]->data, *Bm = t->src[1]->data;
    float *C = t->data;
    int64_t M, N, K, B, sa, sb;
    matmul_dims(t, &M, &N, &K, &B);
    if (usi_cuda_matmul_strides(t, B, &sa, &sb))
        return gemm_rm_batched(c, 0, 0, M, N, K, A, sa, Bm, sb, 0.0f, C, M * N, B);
    for (int64_t bi = 0; bi < B; bi++) {
        int64_t ao, bo;
        batch_offsets(t, bi, &ao, &bo);
        USI_TRY(gemm_rm(c, 0, 0, M, N, K, A + ao, Bm + bo, 0.0f, C + bi * M * N));
    }
    return NULL;
}

/* da[...,M,K] (+)= dout @ b^T; db[...,K,N] (+)= a^T @ dout, summed over the
 * batches an operand is broadcast across. */
usi_error *usi_cuda_matmul_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    const usi_tensor *a = t->src[0], *b = t->src[1];
    const float *A = a->data, *Bm = b->data;
    float *da = a->grad, *db = b->grad;
    int64_t M, N, K, B, sa, sb;
    matmul_dims(t, &M, &N, &K, &B);
    int32_t strided = usi_cuda_matmul_strides(t, B, &sa, &sb);
    /* An operand shared by several batches sums their products: one gemm
     * per batch into it, after clearing it when this op writes first. */
    int32_t da_loop = da && (!strided || (sa == 0 && B > 1));
    int32_t db_loop = db && (!strided || (sb == 0 && B > 1));
    if (da && !da_loop) USI_TRY(gemm_rm_batched(c, 0, 1, M, K, N, t->grad, M * N, Bm, sb, (float)acc[0], da, sa, B));
    if (db && !db_loop) USI_TRY(gemm_rm_batched(c, 1, 0, K, N, M, A, sa, t->grad, M * N, (float)acc[1], db, sb, B));
    if (da_loop && !acc[0]) CUDA_TRY(cudaMemsetAsync(da, 0, (size_t)a->numel * sizeof(float), c->stream));
    if (db_loop && !acc[1]) CUDA_TRY(cudaMemsetAsync(db, 0, (size_t)b->numel * sizeof(float), c->stream));
    for (int64_t bi = 0; (da_loop || db_loop) && bi < B; bi++) {
        int64_t ao, bo;
        batch_offsets(t, bi, &ao, &bo);
        const float *dy = t->grad + bi * M * N;
        if (da_loop) USI_TRY(gemm_rm(c, 0, 1, M, K, N, dy, Bm + bo, 1.0f, da + ao));
        if (db_loop) USI_TRY(gemm_rm(c, 1, 0, K, N, M, A + ao, dy, 1.0f, db + bo));
    }
    return NULL;
}
