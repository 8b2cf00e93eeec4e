/* The CUDA backend's own kernels, as the host side calls them: one launcher
 * per op direction, on plain device pointers and dims, enqueued on a stream
 * and returning a launch error (naming file and line) or NULL. Included by
 * the C host code and by the .cu files, so it holds C only.
 *
 * acc: 0 overwrites the destination, 1 adds into it. Index math is int64
 * throughout: activations of a large batch pass 2^31 elements. */
#ifndef USI_CORE_BACKEND_CUDA_KERNELS_H
#define USI_CORE_BACKEND_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "util/error.h"

#define USI_CUDA_DIMS 8 /* = USI_MAX_DIMS */

/* Index helpers below that kernels and host code (tests) both call. */
#ifdef __CUDACC__
#define USI_CUDA_HD __host__ __device__
#else
#define USI_CUDA_HD
#endif

/* A launch's error (cudaGetLastError), or NULL. */
usi_error *usi_cuda_check_launch(const char *kernel, const char *file, int line);

/* ---- elementwise.cu ---- */

/* Which tensors of an element-wise kernel are bf16 (activations kept as
 * bf16), the rest float: the output's side (out, dout) and the input's
 * (inp, dinp). */
enum { USI_CUDA_BF_OUT = 1, USI_CUDA_BF_IN = 2 };

/* out[n] = act(inp[n]) */
usi_error *usi_cuda_act_forward(cudaStream_t s, void *out, const void *inp, int64_t n, int32_t kind,
                                float alpha, int32_t bf);
/* dinp[n] (+)= dout[n] * act'(inp[n] | out[n]); inp or out NULL when unread */
usi_error *usi_cuda_act_backward(cudaStream_t s, void *dinp, const void *dout, const void *inp,
                                 const void *out, int64_t n, int32_t kind, float alpha, int32_t acc, int32_t bf);
/* out[n] (+)= factor * inp[n] (factor 1: a copy or an add), USI_CUDA_BF_* types */
usi_error *usi_cuda_scale_typed(cudaStream_t s, void *out, const void *inp, int64_t n, float factor, int32_t acc,
                                int32_t bf);
/* out[n] = value */
usi_error *usi_cuda_fill_forward(cudaStream_t s, float *out, int64_t n, float value);
/* dst[n] = bf16(src[n] (+ float(dst[n]) with acc 1)), rounded to nearest
 * even (dst: __nv_bfloat16) */
usi_error *usi_cuda_to_bf16(cudaStream_t s, void *dst, const float *src, int64_t n, int32_t acc);
/* dst[n] (+)= float(src[n]) (src: __nv_bfloat16) */
usi_error *usi_cuda_from_bf16(cudaStream_t s, float *dst, const void *src, int64_t n, int32_t acc);
/* dst (+)= src over [n][c][p] (p = H*W), each in its format (bits: bf16,
 * channels-last [n][p][c]; backend.h's USI_FMT_*): the backend's repack */
enum { USI_CUDA_FMT_NCHW32 = 0, USI_CUDA_FMT_BF16 = 1, USI_CUDA_FMT_CL = 2 };
usi_error *usi_cuda_repack(cudaStream_t s, void *dst, int32_t dst_fmt, const void *src, int32_t src_fmt, int64_t n,
                           int64_t c, int64_t p, int32_t acc);
/* layout.cu: dst bf16 [n][p][c] = src [n][c][p] (NCHW -> NHWC, p = H*W),
 * and dst [n][c][p] (+)= src bf16 [n][p][c] (NHWC -> NCHW); the NCHW side
 * bf16 where src_bf16 / dst_bf16 is 1 (an activation kept as bf16), float
 * otherwise. */
usi_error *usi_cuda_nchw_to_nhwc_typed(cudaStream_t s, void *dst, const void *src, int64_t n, int64_t c, int64_t p,
                                       int32_t src_bf16);
usi_error *usi_cuda_nhwc_to_nchw_typed(cudaStream_t s, void *dst, const void *src, int64_t n, int64_t c, int64_t p,
                                       int32_t acc, int32_t dst_bf16);
/* y[n][c][p] (+)= bias[c] on float or bf16 y; db[c] (+)= sum over n, p of
 * dy[n][c][p] (float or bf16 dy), in double; y, dy [n][p][c] with cl 1 */
usi_error *usi_cuda_bias_nchw_forward(cudaStream_t s, void *y, const float *bias, int64_t n, int64_t c, int64_t p,
                                      int32_t bf16, int32_t cl);
usi_error *usi_cuda_bias_nchw_backward(cudaStream_t s, float *db, const void *dy, int64_t n, int64_t c, int64_t p,
                                       int32_t acc, int32_t bf16, int32_t cl);
/* db[c] (+)= sum over m rows of dy[m][c] (float or bf16 dy), through part:
 * c * segments doubles of scratch (segments: usi_cuda_bn_row_segments(m, c)) */
usi_error *usi_cuda_bias_rows_backward_seg(cudaStream_t s, float *db, const void *dy, int64_t m, int64_t c,
                                           double *part, int64_t segments, int32_t acc, int32_t bf16);

/* A broadcast binary op over collapsed dims, seen from one tensor x: the
 * dims x keeps (its own row-major layout, thread per x element) and the dims
 * it is broadcast along (summed over in backward). Strides are in elements of
 * the output (o), a and b; 0 where that tensor is broadcast. Forward uses it
 * with x = the output: every dim kept. */
typedef struct usi_cuda_bplan {
    int32_t nk, nr;
    int64_t kshape[USI_CUDA_DIMS], ko[USI_CUDA_DIMS], ka[USI_CUDA_DIMS], kb[USI_CUDA_DIMS];
    int64_t rshape[USI_CUDA_DIMS], ro[USI_CUDA_DIMS], ra[USI_CUDA_DIMS], rb[USI_CUDA_DIMS];
    int64_t n_kept, n_red;
} usi_cuda_bplan;

/* out[...] = a[bcast] op b[bcast]; all float, or all bf16 (bf16 1) */
usi_error *usi_cuda_binary_forward(cudaStream_t s, void *out, const void *a, const void *b,
                                   const usi_cuda_bplan *p, int32_t op, int32_t bf16);
/* dx (+)= sum over broadcast of d(a op b)/dx * dy, x = a (which 0) or b (1);
 * a, b may be NULL for add and sub; all float, or all bf16 */
usi_error *usi_cuda_binary_backward(cudaStream_t s, void *dx, const void *dy, const void *a, const void *b,
                                    const usi_cuda_bplan *p, int32_t op, int32_t which, int32_t acc, int32_t bf16);

/* out[n] (+)= keep ? x[n] / (1-p) : 0, the keep draws of the CPU backend bit
 * for bit: a xoshiro256** stream per chunk of 4096 elements keyed by (seed,
 * step, node id, chunk). Backward is the same call on the gradients. */
usi_error *usi_cuda_dropout_forward(cudaStream_t s, void *out, const void *x, int64_t n, double p, uint64_t seed,
                                    uint64_t step, uint64_t id, int32_t acc, int32_t bf16);
/* out[N, per] (+)= keep[N] * x: one draw per sample, as on the CPU; keep is
 * N floats of device scratch. out and x both float, or both bf16 (bf16 1),
 * for dropout too. */
usi_error *usi_cuda_drop_path_forward(cudaStream_t s, void *out, const void *x, float *keep, int64_t N, int64_t per,
                                      double p, uint64_t seed, uint64_t step, uint64_t id, int32_t acc,
                                      int32_t bf16);

/* ---- pool.cu ---- */

typedef struct usi_cuda_pool {
    int64_t planes, H, W, OH, OW; /* planes = N * C */
    int64_t kh, kw, sh, sw, ph, pw;
    int64_t C;
    int32_t count_pad, is_max;
    int32_t cl; /* x, out and their gradients kept channels-last */
} usi_cuda_pool;

/* Where a map of hw positions per plane (H * W, or OH * OW) keeps plane p's
 * position q: at usi_cuda_pool_at(d, p, hw) + q * usi_cuda_pool_step(d).
 * NCHW: one plane after another. Channels-last ([N, H, W, C] memory, p =
 * n * C + c): a plane's positions C apart. The kernels and the host tests
 * share these. */
static inline USI_CUDA_HD int64_t usi_cuda_pool_at(const usi_cuda_pool *d, int64_t p, int64_t hw)
{
    return d->cl ? p / d->C * hw * d->C + p % d->C : p * hw;
}
static inline USI_CUDA_HD int64_t usi_cuda_pool_step(const usi_cuda_pool *d) { return d->cl ? d->C : 1; }
/* The plane of memory index k in such a map, and its position there (*q). */
static inline USI_CUDA_HD int64_t usi_cuda_pool_plane(const usi_cuda_pool *d, int64_t k, int64_t hw, int64_t *q)
{
    if (!d->cl) {
        *q = k % hw;
        return k / hw;
    }
    int64_t r = k / d->C;
    *q = r % hw;
    return r / hw * d->C + k % d->C;
}

/* out[P,OH,OW] = max or mean of x[P,H,W] over each window, in either
 * layout; float tensors, or bf16 ones where bf16 is 1 (backward too) */
usi_error *usi_cuda_pool2d_forward(cudaStream_t s, void *out, const void *x, const usi_cuda_pool *d, int32_t bf16);
/* dx[P,H,W] (+)= dout of the windows holding each element (max: where it is
 * the window's first maximum, as the CPU picks it). Max with idx (P*OH*OW
 * int32 of device scratch, in out's memory order): the maxima are found once
 * per window there; idx NULL: searched again per element. */
usi_error *usi_cuda_pool2d_backward(cudaStream_t s, void *dx, const void *dout, const void *x, int32_t *idx,
                                    const usi_cuda_pool *d, int32_t acc, int32_t bf16);

/* ---- reduce.cu ---- */

/* The CPU backend's collapsed reduce dims. */
typedef struct usi_cuda_rdims {
    int32_t n;
    int64_t shape[USI_CUDA_DIMS];
    int64_t istride[USI_CUDA_DIMS];
    int32_t reduced[USI_CUDA_DIMS];
    int64_t count; /* elements summed into each output */
} usi_cuda_rdims;

/* out[o] = scale * sum of x over the reduced dims at kept position o;
 * float tensors, or bf16 ones where bf16 is 1 (backward too) */
usi_error *usi_cuda_reduce_forward(cudaStream_t s, void *out, const void *x, const usi_cuda_rdims *r, int64_t n_out,
                                   float scale, int32_t bf16);
/* dx[i] (+)= scale * dout[kept position of i] */
usi_error *usi_cuda_reduce_backward(cudaStream_t s, void *dx, const void *dout, const usi_cuda_rdims *r,
                                    int64_t n_in, float scale, int32_t acc, int32_t bf16);
/* out[M,O] = bias[O] for each row */
usi_error *usi_cuda_bias_rows_forward(cudaStream_t s, float *out, const float *bias, int64_t M, int64_t O);

/* out[R,C] = softmax(x[R,C]) along C; x (and dx) bf16 where x_bf16 is 1 */
usi_error *usi_cuda_softmax_forward(cudaStream_t s, float *out, const void *x, int64_t R, int64_t C, int32_t x_bf16);
/* dx (+)= y * (dy - sum(dy * y)) */
usi_error *usi_cuda_softmax_backward(cudaStream_t s, void *dx, const float *dy, const float *y, int64_t R, int64_t C,
                                     int32_t acc, int32_t x_bf16);

/* Cross-entropy of z[N,C] against soft targets q[N,C] (soft = 1) or labels
 * int32 y[N] smoothed by eps: loss = -1/N sum q log_softmax(z). rows is N
 * doubles of scratch (per-row terms, summed in a fixed order). A label
 * outside [0, C) makes its row NaN and, when bad (3 int32 {found, label,
 * sample}, found cleared by the caller) is not NULL, is recorded there. */
usi_error *usi_cuda_ce_forward(cudaStream_t s, float *loss, double *rows, const float *z, const void *target,
                               int32_t soft, int64_t N, int64_t C, double eps, int32_t *bad);
/* dz (+)= g/N (sum(q) p - q); dq (+)= -g/N log p; g = dloss[0] (device);
 * dz or dq may be NULL */
usi_error *usi_cuda_ce_backward(cudaStream_t s, float *dz, float *dq, const float *dloss, const float *z,
                                const void *target, int32_t soft, int64_t N, int64_t C, double eps,
                                int32_t acc_z, int32_t acc_q);
/* loss = T^2/N sum_n KL(softmax(zt_n/T) || softmax(zs_n/T)); rows: N doubles */
usi_error *usi_cuda_kl_forward(cudaStream_t s, float *loss, double *rows, const float *zs, const float *zt,
                               int64_t N, int64_t C, double T);
/* ds (+)= gT/N (p_s - p_t); dt (+)= gT/N p_t (log p_t - log p_s - KL_n) */
usi_error *usi_cuda_kl_backward(cudaStream_t s, float *ds, float *dt, const float *dloss, const float *zs,
                                const float *zt, int64_t N, int64_t C, double T, int32_t acc_s,
                                int32_t acc_t);

/* ---- norm.cu ---- */

/* x viewed as [O, C, I]; layer norm keeps mean and rstd per (o, i). x and
 * dx are bf16 where x_bf16 is 1; out, dy float. */
usi_error *usi_cuda_layernorm_forward(cudaStream_t s, float *out, float *mean, float *rstd, const void *x,
                                      const float *w, const float *b, int64_t O, int64_t C, int64_t I, double eps,
                                      int32_t x_bf16);
usi_error *usi_cuda_layernorm_backward(cudaStream_t s, void *dx, float *dw, float *db, const float *dy,
                                       const void *x, const float *w, const float *mean, const float *rstd,
                                       int64_t O, int64_t C, int64_t I, const int32_t *acc, int32_t x_bf16);
/* Batch norm's tensors of [O, C, I] (x, out, dx, dy) are float, or bf16
 * where bf is 1 (activations kept as bf16); statistics and parameters
 * float. */
/* Batch norm with given statistics (running ones, eval): out = (x - rm[c]) *
 * invstd[c] * w[c] + b[c]; saved gets 3C floats (mean, invstd, var, the CPU
 * backend's layout). w, b may be NULL. */
usi_error *usi_cuda_batchnorm_eval_forward(cudaStream_t s, void *out, float *saved, const void *x, const float *w,
                                           const float *b, const float *rm, const float *rv, int64_t O, int64_t C,
                                           int64_t I, double eps, int32_t bf);
/* The CPU backend's batch-norm backward from saved mean and invstd; with
 * batch_stats 0 the statistics are constants (dx = dy w invstd). */
usi_error *usi_cuda_batchnorm_backward(cudaStream_t s, void *dx, float *dw, float *db, const void *dy,
                                       const void *x, const float *w, const float *mean, const float *invstd,
                                       int64_t O, int64_t C, int64_t I, int32_t batch_stats, const int32_t *acc,
                                       int32_t bf);
/* *counter += 1 (batch norm's num_batches_tracked) */
usi_error *usi_cuda_counter_forward(cudaStream_t s, int64_t *counter);
/* The sums are split over this many segments of a channel's O*I values
 * (a block each); their partial sums take 2C * segments doubles after the
 * 1 + 2C sums in the same scratch. */
static inline int64_t usi_cuda_bn_segments(int64_t O, int64_t I)
{
    int64_t s = (O * I + 8191) / 8192;
    return s < 1 ? 1 : s > 64 ? 64 : s;
}
/* With I = 1 (rows of C channels: channels-last, or [N, C]) a block sums 32
 * neighbouring channels over a segment of rows; segments enough for about
 * 2048 blocks, of at least 64 rows, at most 1024. */
static inline int64_t usi_cuda_bn_row_segments(int64_t O, int64_t C)
{
    int64_t blocks = (C + 31) / 32, s = (2048 + blocks - 1) / blocks, most = (O + 63) / 64;
    if (s > most) s = most;
    return s < 1 ? 1 : s > 1024 ? 1024 : s;
}
/* The segments the kernels use for x as [O, C, I]. */
static inline int64_t usi_cuda_bn_parts(int64_t O, int64_t C, int64_t I)
{
    return I == 1 ? usi_cuda_bn_row_segments(O, C) : usi_cuda_bn_segments(O, I);
}
/* Batch norm over ranks (dist.sync_bn), in steps around a sum over ranks of
 * sums[1 + 2C] (device doubles) that the caller makes in between:
 * stats: sums = [count, sum x[C], sum x^2[C]] of this rank's batch (the
 *   squares about its own float mean, shifted back in double), all zeros
 *   when idle;
 * finish (after the sum): saved = mean, invstd, var of the global batch;
 *   running statistics (unbiased with the global count) and the counter
 *   updated where given, unless the global count is 0; then out = the
 *   normalised x (as eval_forward, from saved);
 * grad_sums: dw, db (+)= this rank's sums, sums = [count, sum dy[C],
 *   sum dy*xh[C]] (zeros when idle);
 * grad_input (after the sum): dx (+)= the input gradient from the global
 *   sums.
 * A norm that applies its ReLU (core/graph/fuse.c): finish with relu 1
 * writes relu(y); the grad steps with z (the ReLU's output, where dy is
 * its gradient) take dy as 0 wherever z is not above 0. z NULL: plain. */
usi_error *usi_cuda_batchnorm_sync_stats(cudaStream_t s, double *sums, const void *x, int64_t O, int64_t C,
                                         int64_t I, int32_t idle, int32_t bf);
usi_error *usi_cuda_batchnorm_sync_finish(cudaStream_t s, void *out, float *saved, float *rm, float *rv,
                                          int64_t *counter, const double *sums, const void *x, const float *w,
                                          const float *b, int64_t O, int64_t C, int64_t I, double eps,
                                          double momentum, int32_t relu, int32_t bf);
usi_error *usi_cuda_batchnorm_sync_grad_sums(cudaStream_t s, double *sums, float *dw, float *db, const void *dy,
                                             const void *z, const void *x, const float *mean,
                                             const float *invstd, int64_t O, int64_t C, int64_t I, int32_t idle,
                                             int32_t acc_w, int32_t acc_b, int32_t bf);
usi_error *usi_cuda_batchnorm_sync_grad_input(cudaStream_t s, void *dx, const double *sums, const void *dy,
                                              const void *z, const void *x, const float *w, const float *mean,
                                              const float *invstd, int64_t O, int64_t C, int64_t I,
                                              int32_t acc_x, int32_t bf);
/* w2[O, per] = w * sc[o], b2[o] = (b - rm) sc + beta, sc = gamma / sqrt(rv + eps):
 * an eval-mode batch norm folded into the conv before it */
usi_error *usi_cuda_fold_batchnorm_forward(cudaStream_t s, float *w2, float *b2, const float *w, const float *b,
                                           const float *gamma, const float *beta, const float *rm,
                                           const float *rv, int64_t O, int64_t per, double eps);

/* ---- shape.cu ---- */

/* Output dim d of a permute reads input stride istride[d]. */
typedef struct usi_cuda_perm {
    int32_t ndim;
    int64_t oshape[USI_CUDA_DIMS];
    int64_t istride[USI_CUDA_DIMS];
} usi_cuda_perm;

/* out[i0..] = x[i_perm..]; both float, or both bf16 (bf16 1) */
usi_error *usi_cuda_permute_forward(cudaStream_t s, void *out, const void *x, const usi_cuda_perm *p, int64_t n,
                                    int32_t bf16);
/* dx[i_perm..] (+)= dy[i0..] (a bijection: no two writes meet) */
usi_error *usi_cuda_permute_backward(cudaStream_t s, void *dx, const void *dy, const usi_cuda_perm *p, int64_t n,
                                     int32_t acc, int32_t bf16);
/* The shape ops' tensors are all float, or all bf16 where bf16 is 1. */
/* dst[r * dst_row + j] (+)= src[r * src_row + j] for r < rows, j < width:
 * one input's block of a concat, or its gradient */
usi_error *usi_cuda_copy_rows(cudaStream_t s, void *dst, int64_t dst_row, const void *src, int64_t src_row,
                              int64_t rows, int64_t width, int32_t acc, int32_t bf16);
/* out[O,len,I] = x[O, start + j*step, I]; x has D along the axis */
usi_error *usi_cuda_slice_forward(cudaStream_t s, void *out, const void *x, int64_t O, int64_t len, int64_t I,
                                  int64_t D, int64_t start, int64_t step, int32_t bf16);
/* dx[O,D,I] (+)= dy where sliced, else 0 (or unchanged) */
usi_error *usi_cuda_slice_backward(cudaStream_t s, void *dx, const void *dy, int64_t O, int64_t len, int64_t I,
                                   int64_t D, int64_t start, int64_t step, int32_t acc, int32_t bf16);

typedef struct usi_cuda_pad {
    int32_t ndim;
    int64_t oshape[USI_CUDA_DIMS], ishape[USI_CUDA_DIMS], before[USI_CUDA_DIMS];
} usi_cuda_pad;

/* out = x placed at `before` in a block of value */
usi_error *usi_cuda_pad_forward(cudaStream_t s, void *out, const void *x, const usi_cuda_pad *p, int64_t n_out,
                                float value, int32_t bf16);
/* dx (+)= dy at the positions x was placed */
usi_error *usi_cuda_pad_backward(cudaStream_t s, void *dx, const void *dy, const usi_cuda_pad *p, int64_t n_in,
                                 int32_t acc, int32_t bf16);
/* out[n, (br*b + bc)*C + c, h, w] = x[n, c, h*b + br, w*b + bc] */
usi_error *usi_cuda_space_to_depth_forward(cudaStream_t s, void *out, const void *x, int64_t N, int64_t C, int64_t H,
                                           int64_t W, int64_t block, int32_t bf16);
usi_error *usi_cuda_space_to_depth_backward(cudaStream_t s, void *dx, const void *dy, int64_t N, int64_t C, int64_t H,
                                            int64_t W, int64_t block, int32_t acc, int32_t bf16);

/* ---- gather.cu ---- */

/* out[O, M, I] = table[O, idx[m], I] (table [O, K, I], idx [M], every index
 * in [0, K)) */
usi_error *usi_cuda_gather_forward(cudaStream_t s, float *out, const float *table, const int32_t *idx,
                                   int64_t O, int64_t K, int64_t I, int64_t M);
/* dtable[O, K, I] (+)= sum of dy[O, m, I] over the m that picked row k,
 * listed ascending at pos[start[k] .. start[k + 1]) (the inverted index) */
usi_error *usi_cuda_gather_backward(cudaStream_t s, float *dtable, const float *dy, const int32_t *start,
                                    const int32_t *pos, int64_t O, int64_t K, int64_t I, int64_t M, int32_t acc);

/* ---- step.cu (built without fused multiply-adds: the same float results
 * as the CPU backend's loops) ---- */

/* A piece of one optimizer segment: elements [off, off + n) of the flat
 * blocks, of segment seg, decaying or not. */
typedef struct usi_cuda_chunk {
    int64_t off;
    int32_t n;
    int32_t seg;
    int32_t decays;
    int32_t pad_;
} usi_cuda_chunk;

#define USI_CUDA_CHUNK 65536

/* adamw over the chunks: m, v moments; decay[decays] = 1 - lr*wd (or 1);
 * step_size = lr / bc1; inv_sqrt_bc2 = 1 / sqrt(bc2) (host-computed, as on
 * the CPU) */
usi_error *usi_cuda_adamw_forward(cudaStream_t s, float *w, const float *g, float *m, float *v,
                                  const usi_cuda_chunk *chunks, int32_t n_chunks, float b1, float b2, float eps,
                                  float decay_on, float step_size, float inv_sqrt_bc2);
/* sgd with momentum buffer buf; wd_on applies where a chunk decays */
usi_error *usi_cuda_sgd_forward(cudaStream_t s, float *w, const float *g, float *buf,
                                const usi_cuda_chunk *chunks, int32_t n_chunks, float wd_on, float momentum,
                                float lr, int32_t first, int32_t nesterov);
/* lamb: moments and the per-segment norms (norms: 2 doubles per segment,
 * |w|^2 and |u|^2, zeroed here), then w -= lr * trust * u */
usi_error *usi_cuda_lamb_forward(cudaStream_t s, float *w, const float *g, float *m, float *v,
                                 const usi_cuda_chunk *chunks, int32_t n_chunks, double *norms, int32_t n_segs,
                                 float b1, float b2, float eps, float wd_on, double bc1, double bc2, double lr);
/* ema[n] = decay*ema + (1-decay)*w */
usi_error *usi_cuda_ema_forward(cudaStream_t s, float *ema, const float *w, size_t n, float decay,
                                float one_minus);
/* *out (device) = sum x[i]^2 in double; partials: n_partials doubles */
usi_error *usi_cuda_sum_squares_forward(cudaStream_t s, const float *x, size_t n, double *partials,
                                        int32_t n_partials, double *out);
/* x[n] *= s */
usi_error *usi_cuda_scale_inplace(cudaStream_t s, float *x, size_t n, float factor);

#define USI_CUDA_CONVERT_MAX_C 64
/* dst[n,c,oh,ow] = resize (interp USI_INTERP_*) of a[ch]*src[n,c,h,w] + b[ch]
 * (the CPU backend's rules); a, b: host, c <= USI_CUDA_CONVERT_MAX_C */
usi_error *usi_cuda_image_convert_forward(cudaStream_t s, float *dst, const float *src, int32_t n, int32_t c,
                                          int32_t h, int32_t w, int32_t oh, int32_t ow, int32_t interp,
                                          const float *a, const float *b);
/* dst[n,c,y,x] = (src[n,y,x,c] / 255 - mean[c]) / std[c], c < 3, src uint8;
 * mean, std: host */
usi_error *usi_cuda_u8_normalize_forward(cudaStream_t s, float *dst, const uint8_t *src, int32_t n, int32_t h,
                                         int32_t w, const float *mean, const float *std);

#ifdef __cplusplus
}
#endif

#endif
