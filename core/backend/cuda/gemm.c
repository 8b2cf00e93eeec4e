/* Linear and batched matmul on cuBLAS. Our tensors are row-major and cuBLAS
 * is column-major, so each product is computed transposed: C = A B is
 * C^T = B^T A^T, and a row-major [R, K] matrix is cuBLAS's [K, R] with
 * leading dimension K. beta gives overwrite-or-accumulate. fp32 math (no
 * TF32: cuBLAS's default math mode). Under precision "mixed" (planned: the
 * node then has scratch) the operands are bf16 (activations kept as bf16
 * as they are, the rest copied into the scratch) and cuBLAS accumulates in
 * fp32 straight into the results, fp32 or bf16 as each is kept. */
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
 * stored [N,K]). A and B are float, or bf16 when bf16 is set; out is
 * float, or bf16 (an activation kept so) when out_bf16 is set. */
static usi_error *gemm_rm(usi_cuda *c, int bf16, int ta, int tb, int64_t M, int64_t N, int64_t K, const void *A,
                          const void *B, float beta, void *out, int out_bf16)
{
    USI_TRY(fits_int(M, "gemm"));
    USI_TRY(fits_int(N, "gemm"));
    USI_TRY(fits_int(K, "gemm"));
    float one = 1.0f;
    /* out^T[N,M] = op(B)^T[N,K] op(A)^T[K,M], col-major */
    int lda = (int)(ta ? M : K), ldb = (int)(tb ? K : N);
    cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (bf16)
        CUBLAS_TRY(cublasGemmEx(c->cublas, opb, opa, (int)N, (int)M, (int)K, &one, B, CUDA_R_16BF, ldb, A,
                                CUDA_R_16BF, lda, &beta, out, out_bf16 ? CUDA_R_16BF : CUDA_R_32F, (int)N,
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_TRY(cublasSgemm(c->cublas, opb, opa, (int)N, (int)M, (int)K, &one, B, ldb, A, lda, &beta, out, (int)N));
    return NULL;
}

/* The same over a batch with fixed strides (in elements) between the
 * matrices. */
static usi_error *gemm_rm_batched(usi_cuda *c, int bf16, int ta, int tb, int64_t M, int64_t N, int64_t K,
                                  const void *A, int64_t sa, const void *B, int64_t sb, float beta, void *out,
                                  int out_bf16, int64_t so, int64_t batch)
{
    USI_TRY(fits_int(M, "gemm"));
    USI_TRY(fits_int(N, "gemm"));
    USI_TRY(fits_int(K, "gemm"));
    USI_TRY(fits_int(batch, "gemm"));
    float one = 1.0f;
    int lda = (int)(ta ? M : K), ldb = (int)(tb ? K : N);
    cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (bf16)
        CUBLAS_TRY(cublasGemmStridedBatchedEx(c->cublas, opb, opa, (int)N, (int)M, (int)K, &one, B, CUDA_R_16BF, ldb,
                                              sb, A, CUDA_R_16BF, lda, sa, &beta, out,
                                              out_bf16 ? CUDA_R_16BF : CUDA_R_32F, (int)N, so, (int)batch,
                                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_TRY(cublasSgemmStridedBatched(c->cublas, opb, opa, (int)N, (int)M, (int)K, &one, B, ldb, sb, A, lda,
                                             sa, &beta, out, (int)N, so, (int)batch));
    return NULL;
}

/* An operand as the product reads it: itself (fp32 math, or an activation
 * kept as bf16), or its bf16 copy made now at byte `off` of scratch.
 * Element offsets into it are the same either way; at() applies one. */
typedef struct operand {
    const void *p;
    int bf16;
} operand;

static usi_error *operand_of(usi_cuda *c, const usi_tensor *t, const void *x, char *scratch, size_t off, int bf16,
                             operand *out)
{
    out->bf16 = bf16;
    out->p = x;
    if (!bf16 || t->bf16) return NULL;
    out->p = scratch + off;
    return usi_cuda_to_bf16(c->stream, scratch + off, x, t->numel, 0);
}

/* element e of a float or bf16 tensor's memory */
static void *elem(void *p, int64_t e, int bf16) { return (char *)p + e * (bf16 ? 2 : 4); }

static const void *at(const operand *o, int64_t elem)
{
    return (const char *)o->p + elem * (o->bf16 ? 2 : 4);
}

static size_t up(size_t n) { return (n + 255) / 256 * 256; }

/* Under "mixed": bf16 copies of the operands (forward: the two inputs;
 * backward: dy and both inputs). */
void usi_cuda_gemm_workspace(usi_tensor *t, int32_t training, int32_t mixed)
{
    t->fwd_scratch_bytes = t->bwd_scratch_bytes = 0;
    if (!mixed) return;
    size_t a = up((size_t)t->src[0]->numel * 2), b = up((size_t)t->src[1]->numel * 2), y = up((size_t)t->numel * 2);
    t->fwd_scratch_bytes = a + b;
    if (training) t->bwd_scratch_bytes = y + a + b;
}

/* ---- linear ---- */

/* out[M,O] = inp[M,I] w[O,I]^T + bias[O] */
usi_error *usi_cuda_linear_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    const usi_tensor *x = t->src[0], *w = t->src[1];
    int64_t I = w->shape[1], O = w->shape[0], M = x->numel / I;
    const float *bias = t->n_src > 2 && t->src[2] ? t->src[2]->data : NULL;
    int bf16 = t->fwd_scratch_bytes > 0;
    char *sc = t->fwd_scratch;
    if (!bf16 && (t->bf16 || x->bf16 || w->bf16)) return usi_error_new(USI_ERR_INTERNAL, "linear: bf16 values in fp32");
    operand xa, wa;
    USI_TRY(operand_of(c, x, x->data, sc, 0, bf16, &xa));
    USI_TRY(operand_of(c, w, w->data, sc, up((size_t)x->numel * 2), bf16, &wa));
    if (t->bf16) { /* the product rounded once, then the bias */
        USI_TRY(gemm_rm(c, bf16, 0, 1, M, O, I, xa.p, wa.p, 0.0f, t->data, 1));
        return bias ? usi_cuda_bias_nchw_forward(c->stream, t->data, bias, M, O, 1, 1, 0) : NULL;
    }
    if (bias) USI_TRY(usi_cuda_bias_rows_forward(c->stream, t->data, bias, M, O));
    return gemm_rm(c, bf16, 0, 1, M, O, I, xa.p, wa.p, bias ? 1.0f : 0.0f, t->data, 0);
}

/* dinp[M,I] (+)= dout[M,O] w[O,I]; dw[O,I] (+)= dout^T inp; dbias[O] (+)= sum_m dout */
usi_error *usi_cuda_linear_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    const usi_tensor *x = t->src[0], *w = t->src[1];
    const usi_tensor *b = t->n_src > 2 ? t->src[2] : NULL;
    int64_t I = w->shape[1], O = w->shape[0], M = x->numel / I;
    int bf16 = t->bwd_scratch_bytes > 0;
    char *sc = t->bwd_scratch;
    size_t dy_b = up((size_t)t->numel * 2), x_b = up((size_t)x->numel * 2);
    operand dy, xa, wa;
    USI_TRY(operand_of(c, t, t->grad, sc, 0, bf16, &dy));
    if (x->grad) {
        USI_TRY(operand_of(c, w, w->data, sc, dy_b + x_b, bf16, &wa));
        USI_TRY(gemm_rm(c, bf16, 0, 0, M, I, O, dy.p, wa.p, (float)acc[0], x->grad, x->bf16));
    }
    if (w->grad) {
        USI_TRY(operand_of(c, x, x->data, sc, dy_b, bf16, &xa));
        USI_TRY(gemm_rm(c, bf16, 1, 0, O, I, M, dy.p, xa.p, (float)acc[1], w->grad, w->bf16));
    }
    if (b && b->grad && t->bf16)
        return usi_cuda_bias_nchw_backward(c->stream, b->grad, t->grad, M, O, 1, acc[2], 1, 0);
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

static void matmul_dims(const usi_tensor *t, int64_t *M, int64_t *N, int64_t *K, int64_t *B);

int32_t usi_cuda_matmul_sums_batches(const usi_tensor *t)
{
    int64_t M, N, K, B, sa = 0, sb = 0;
    matmul_dims(t, &M, &N, &K, &B);
    if (!usi_cuda_matmul_strides(t, B, &sa, &sb)) return 1;
    return B > 1 && (sa == 0 || sb == 0);
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
    const usi_tensor *a = t->src[0], *b = t->src[1];
    void *C = t->data;
    int64_t M, N, K, B, sa, sb;
    matmul_dims(t, &M, &N, &K, &B);
    int bf16 = t->fwd_scratch_bytes > 0;
    char *sc = t->fwd_scratch;
    if (!bf16 && (t->bf16 || a->bf16 || b->bf16)) return usi_error_new(USI_ERR_INTERNAL, "matmul: bf16 values in fp32");
    operand A, Bm;
    USI_TRY(operand_of(c, a, a->data, sc, 0, bf16, &A));
    USI_TRY(operand_of(c, b, b->data, sc, up((size_t)a->numel * 2), bf16, &Bm));
    if (usi_cuda_matmul_strides(t, B, &sa, &sb))
        return gemm_rm_batched(c, bf16, 0, 0, M, N, K, A.p, sa, Bm.p, sb, 0.0f, C, t->bf16, M * N, B);
    for (int64_t bi = 0; bi < B; bi++) {
        int64_t ao, bo;
        batch_offsets(t, bi, &ao, &bo);
        USI_TRY(gemm_rm(c, bf16, 0, 0, M, N, K, at(&A, ao), at(&Bm, bo), 0.0f, elem(C, bi * M * N, t->bf16),
                        t->bf16));
    }
    return NULL;
}

/* da[...,M,K] (+)= dout @ b^T; db[...,K,N] (+)= a^T @ dout, summed over the
 * batches an operand is broadcast across. */
usi_error *usi_cuda_matmul_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    const usi_tensor *a = t->src[0], *b = t->src[1];
    void *da = a->grad, *db = b->grad;
    int64_t M, N, K, B, sa, sb;
    matmul_dims(t, &M, &N, &K, &B);
    int32_t strided = usi_cuda_matmul_strides(t, B, &sa, &sb);
    int bf16 = t->bwd_scratch_bytes > 0;
    char *sc = t->bwd_scratch;
    size_t dy_b = up((size_t)t->numel * 2), a_b = up((size_t)a->numel * 2);
    operand dy, A = {a->data, 0}, Bm = {b->data, 0};
    USI_TRY(operand_of(c, t, t->grad, sc, 0, bf16, &dy));
    if (db) USI_TRY(operand_of(c, a, a->data, sc, dy_b, bf16, &A));
    if (da) USI_TRY(operand_of(c, b, b->data, sc, dy_b + a_b, bf16, &Bm));
    /* An operand shared by several batches sums their products: one gemm
     * per batch into it, after clearing it when this op writes first. */
    int32_t da_loop = da && (!strided || (sa == 0 && B > 1));
    int32_t db_loop = db && (!strided || (sb == 0 && B > 1));
    if (da && !da_loop)
        USI_TRY(gemm_rm_batched(c, bf16, 0, 1, M, K, N, dy.p, M * N, Bm.p, sb, (float)acc[0], da, a->bf16, sa, B));
    if (db && !db_loop)
        USI_TRY(gemm_rm_batched(c, bf16, 1, 0, K, N, M, A.p, sa, dy.p, M * N, (float)acc[1], db, b->bf16, sb, B));
    if (da_loop && !acc[0]) CUDA_TRY(cudaMemsetAsync(da, 0, usi_node_grad_bytes(a), c->stream));
    if (db_loop && !acc[1]) CUDA_TRY(cudaMemsetAsync(db, 0, usi_node_grad_bytes(b), c->stream));
    for (int64_t bi = 0; (da_loop || db_loop) && bi < B; bi++) {
        int64_t ao, bo;
        batch_offsets(t, bi, &ao, &bo);
        const void *dyi = at(&dy, bi * M * N);
        if (da_loop) USI_TRY(gemm_rm(c, bf16, 0, 1, M, K, N, dyi, at(&Bm, bo), 1.0f, elem(da, ao, a->bf16), a->bf16));
        if (db_loop) USI_TRY(gemm_rm(c, bf16, 1, 0, K, N, M, at(&A, ao), dyi, 1.0f, elem(db, bo, b->bf16), b->bf16));
    }
    return NULL;
}
