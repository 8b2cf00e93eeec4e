/* Linear and batched matmul on oneDNN's row-major sgemm; its beta argument
 * gives overwrite-or-accumulate for free. */
#include <dnnl.h>

#include "backend/cpu/cpu.h"

static usi_error *sgemm(char ta, char tb, int64_t m, int64_t n, int64_t k,
                        const float *a, int64_t lda, const float *b, int64_t ldb,
                        float beta, float *c, int64_t ldc)
{
    dnnl_status_t st = dnnl_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    if (st != dnnl_success)
        return usi_error_new(USI_ERR_INTERNAL, "dnnl_sgemm(%c%c, %lld x %lld x %lld) failed: %d",
                             ta, tb, (long long)m, (long long)n, (long long)k, (int)st);
    return NULL;
}

/* out[M,O] = inp[M,I] w[O,I]^T + bias[O] */
static usi_error *linear_forward(float *out, const float *inp, const float *w,
                                 const float *bias, int64_t M, int64_t I, int64_t O)
{
    if (bias)
        for (int64_t m = 0; m < M; m++) memcpy(out + m * O, bias, (size_t)O * sizeof(float));
    return sgemm('N', 'T', M, O, I, inp, I, w, I, bias ? 1.0f : 0.0f, out, O);
}

/* dinp[M,I] (+)= dout[M,O] w[O,I]; dw[O,I] (+)= dout^T inp; dbias[O] (+)= sum_m dout */
static usi_error *linear_backward(float *dinp, float *dw, float *dbias,
                                  const float *dout, const float *inp,
                                  const float *w, int64_t M, int64_t I, int64_t O,
                                  const int32_t *acc)
{
    if (dinp) USI_TRY(sgemm('N', 'N', M, I, O, dout, O, w, I, (float)acc[0], dinp, I));
    if (dw) USI_TRY(sgemm('T', 'N', O, I, M, dout, O, inp, I, (float)acc[1], dw, I));
    if (dbias) {
        usi_grad_begin(dbias, O, acc[2]);
        for (int64_t m = 0; m < M; m++)
            for (int64_t o = 0; o < O; o++) dbias[o] += dout[m * O + o];
    }
    return NULL;
}

usi_error *usi_cpu_linear_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    const usi_tensor *x = t->src[0], *w = t->src[1];
    int64_t I = w->shape[1], O = w->shape[0], M = x->numel / I;
    return linear_forward(t->data, x->data, w->data, usi_src_f32(t, 2), M, I, O);
}

usi_error *usi_cpu_linear_bwd(const usi_exec_ctx *ctx, usi_tensor *t,
                              const int32_t *acc)
{
    (void)ctx;
    const usi_tensor *x = t->src[0], *w = t->src[1];
    int64_t I = w->shape[1], O = w->shape[0], M = x->numel / I;
    int32_t a3[3] = {acc[0], acc[1], t->n_src > 2 ? acc[2] : 1};
    return linear_backward(usi_src_grad(t, 0), usi_src_grad(t, 1), usi_src_grad(t, 2),
                           t->grad, x->data, w->data, M, I, O, a3);
}

/* Offsets of batch `bi` of out into a and b, broadcasting size-1 dims. */
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

/* out[...,M,N] = a[...,M,K] @ b[...,K,N] */
usi_error *usi_cpu_matmul_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    const usi_tensor *a = t->src[0];
    int64_t M = t->shape[t->ndim - 2], N = t->shape[t->ndim - 1];
    int64_t K = a->shape[a->ndim - 1], B = usi_dims_prod(t, 0, t->ndim - 2);
    const float *A = a->data, *Bm = t->src[1]->data;
    float *C = t->data;
    for (int64_t bi = 0; bi < B; bi++) {
        int64_t ao, bo;
        batch_offsets(t, bi, &ao, &bo);
        USI_TRY(sgemm('N', 'N', M, N, K, A + ao, K, Bm + bo, N, 0.0f, C + bi * M * N, N));
    }
    return NULL;
}

/* da[...,M,K] += dout @ b^T; db[...,K,N] += a^T @ dout (summed over broadcast). */
usi_error *usi_cpu_matmul_bwd(const usi_exec_ctx *ctx, usi_tensor *t,
                              const int32_t *acc)
{
    (void)ctx;
    const usi_tensor *a = t->src[0], *b = t->src[1];
    int64_t M = t->shape[t->ndim - 2], N = t->shape[t->ndim - 1];
    int64_t K = a->shape[a->ndim - 1], B = usi_dims_prod(t, 0, t->ndim - 2);
    float *da = a->grad, *db = b->grad;
    usi_grad_begin(da, a->numel, acc[0]);
    usi_grad_begin(db, b->numel, acc[1]);
    for (int64_t bi = 0; bi < B; bi++) {
        int64_t ao, bo;
        batch_offsets(t, bi, &ao, &bo);
        const float *dy = t->grad + bi * M * N;
        if (da)
            USI_TRY(sgemm('N', 'T', M, K, N, dy, N, (const float *)b->data + bo, N,
                          1.0f, da + ao, K));
        if (db)
            USI_TRY(sgemm('T', 'N', K, N, M, (const float *)a->data + ao, K, dy, N,
                          1.0f, db + bo, N));
    }
    return NULL;
}
