/* Layer norm, and the batch-norm pieces cuDNN does not cover: normalising
 * with running statistics (eval), backward with them held constant, the
 * batch counter, folding an eval norm into the conv before it, and batch
 * norm with statistics over ranks (dist.sync_bn). Formulas
 * and saved layouts are the CPU backend's (core/backend/cpu/norm.c). */
#include <math.h>

#include "backend/cuda/common.cuh"

#define ROWS_PER_BLOCK (THREADS / 32)

/* ---- layer norm: x as [O, C, I], statistics per (o, i) over C ---- */

/* I == 1 (normalised dim last): a warp per row of C contiguous values. */
// out, x (of TX): [O, C]; mean, rstd: [O]
template <typename TX>
__global__ void layernorm_rows_forward_kernel(float *out, float *mean, float *rstd, const TX *x, const float *w,
                                              const float *b, int64_t O, int64_t C, double eps)
{
    int lane = threadIdx.x & 31;
    for (int64_t o = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; o < O;
         o += ((int64_t)gridDim.x * blockDim.x) / 32) {
        const TX *xp = x + o * C;
        double s = 0, ss = 0;
        for (int64_t c = lane; c < C; c += 32) s += ld(xp, c);
        double m = warp_sum_d(s) / (double)C;
        for (int64_t c = lane; c < C; c += 32) ss += (ld(xp, c) - m) * (ld(xp, c) - m);
        ss = warp_sum_d(ss);
        float r = (float)(1.0 / sqrt(ss / (double)C + eps)), fm = (float)m;
        if (lane == 0) {
            mean[o] = fm;
            rstd[o] = r;
        }
        float *yp = out + o * C;
        for (int64_t c = lane; c < C; c += 32)
            yp[c] = (ld(xp, c) - fm) * r * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
    }
}

/* I > 1 (channels of NCHW): a thread per (o, i), neighbours along i. */
// out, x (of TX): [O, C, I]; mean, rstd: [O, I]
template <typename TX>
__global__ void layernorm_cols_forward_kernel(float *out, float *mean, float *rstd, const TX *x, const float *w,
                                              const float *b, int64_t O, int64_t C, int64_t I, double eps)
{
    GRID_STRIDE(k, O * I)
    {
        int64_t o = k / I, i = k % I;
        const TX *xp = x + o * C * I + i;
        double s = 0, ss = 0;
        for (int64_t c = 0; c < C; c++) s += ld(xp, c * I);
        double m = s / (double)C;
        for (int64_t c = 0; c < C; c++) ss += (ld(xp, c * I) - m) * (ld(xp, c * I) - m);
        float r = (float)(1.0 / sqrt(ss / (double)C + eps)), fm = (float)m;
        mean[k] = fm;
        rstd[k] = r;
        float *yp = out + o * C * I + i;
        for (int64_t c = 0; c < C; c++)
            yp[c * I] = (ld(xp, c * I) - fm) * r * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
    }
}

/* dx = rstd * (g - mean_c(g) - xh * mean_c(g*xh)), g = dy * w[c] */
// dx, x (of TX), dy: [O, C]
template <typename TX>
__global__ void layernorm_rows_backward_kernel(TX *dx, const float *dy, const TX *x, const float *w,
                                               const float *mean, const float *rstd, int64_t O, int64_t C,
                                               int32_t acc)
{
    int lane = threadIdx.x & 31;
    for (int64_t o = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; o < O;
         o += ((int64_t)gridDim.x * blockDim.x) / 32) {
        int64_t base = o * C;
        float m = mean[o], r = rstd[o];
        double s1 = 0, s2 = 0;
        for (int64_t c = lane; c < C; c += 32) {
            float g = dy[base + c] * (w ? w[c] : 1.0f);
            s1 += g;
            s2 += (double)g * (ld(x, base + c) - m) * r;
        }
        float a = (float)(warp_sum_d(s1) / (double)C), bb = (float)(warp_sum_d(s2) / (double)C);
        for (int64_t c = lane; c < C; c += 32) {
            int64_t k = base + c;
            float g = dy[k] * (w ? w[c] : 1.0f);
            float v = r * (g - a - (ld(x, k) - m) * r * bb);
            st(dx, k, acc ? ld(dx, k) + v : v);
        }
    }
}

// dx, x (of TX), dy: [O, C, I]
template <typename TX>
__global__ void layernorm_cols_backward_kernel(TX *dx, const float *dy, const TX *x, const float *w,
                                               const float *mean, const float *rstd, int64_t O, int64_t C, int64_t I,
                                               int32_t acc)
{
    GRID_STRIDE(k0, O * I)
    {
        int64_t base = k0 / I * C * I + k0 % I;
        float m = mean[k0], r = rstd[k0];
        double s1 = 0, s2 = 0;
        for (int64_t c = 0; c < C; c++) {
            float g = dy[base + c * I] * (w ? w[c] : 1.0f);
            s1 += g;
            s2 += (double)g * (ld(x, base + c * I) - m) * r;
        }
        float a = (float)(s1 / (double)C), bb = (float)(s2 / (double)C);
        for (int64_t c = 0; c < C; c++) {
            int64_t k = base + c * I;
            float g = dy[k] * (w ? w[c] : 1.0f);
            float v = r * (g - a - (ld(x, k) - m) * r * bb);
            st(dx, k, acc ? ld(dx, k) + v : v);
        }
    }
}

/* dw[c] (+)= sum dy * xh, db[c] (+)= sum dy over (o, i): a block per channel. */
// dw, db: [C]; dy, x (of TX): [O, C, I]; mean, rstd: [O, I]
template <typename TX>
__global__ void layernorm_params_backward_kernel(float *dw, float *db, const float *dy, const TX *x,
                                                 const float *mean, const float *rstd, int64_t O, int64_t C,
                                                 int64_t I, int32_t acc_w, int32_t acc_b)
{
    __shared__ double shared[32];
    for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
        double sw = 0, sb = 0;
        for (int64_t j = threadIdx.x; j < O * I; j += blockDim.x) {
            int64_t o = j / I, i = j % I, k = o * C * I + c * I + i;
            sw += (double)dy[k] * (ld(x, k) - mean[j]) * rstd[j];
            sb += dy[k];
        }
        sw = block_sum_d(sw, shared);
        sb = block_sum_d(sb, shared);
        if (threadIdx.x == 0) {
            if (dw) dw[c] = (acc_w ? dw[c] : 0.0f) + (float)sw;
            if (db) db[c] = (acc_b ? db[c] : 0.0f) + (float)sb;
        }
    }
}

static unsigned row_blocks(int64_t rows)
{
    int64_t b = (rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    return (unsigned)(b < 1 ? 1 : b > (1 << 20) ? (1 << 20) : b);
}

static unsigned channel_blocks(int64_t C) { return (unsigned)(C < 1 ? 1 : C > 65535 ? 65535 : C); }

template <typename TX>
static usi_error *layernorm_forward(cudaStream_t s, float *out, float *mean, float *rstd, const void *x,
                                    const float *w, const float *b, int64_t O, int64_t C, int64_t I, double eps)
{
    if (I == 1)
        layernorm_rows_forward_kernel<<<row_blocks(O), THREADS, 0, s>>>(out, mean, rstd, (const TX *)x, w, b, O, C,
                                                                        eps);
    else
        layernorm_cols_forward_kernel<<<grid_for(O * I), THREADS, 0, s>>>(out, mean, rstd, (const TX *)x, w, b, O, C,
                                                                          I, eps);
    LAUNCH_CHECK("layernorm_forward");
}

template <typename TX>
static usi_error *layernorm_backward(cudaStream_t s, void *dx, float *dw, float *db, const float *dy, const void *x,
                                     const float *w, const float *mean, const float *rstd, int64_t O, int64_t C,
                                     int64_t I, const int32_t *acc)
{
    if (dx) {
        if (I == 1)
            layernorm_rows_backward_kernel<<<row_blocks(O), THREADS, 0, s>>>((TX *)dx, dy, (const TX *)x, w, mean,
                                                                             rstd, O, C, acc[0]);
        else
            layernorm_cols_backward_kernel<<<grid_for(O * I), THREADS, 0, s>>>((TX *)dx, dy, (const TX *)x, w, mean,
                                                                               rstd, O, C, I, acc[0]);
        usi_error *e = usi_cuda_check_launch("layernorm_backward", __FILE__, __LINE__);
        if (e) return e;
    }
    if (!dw && !db) return NULL;
    layernorm_params_backward_kernel<<<channel_blocks(C), THREADS, 0, s>>>(dw, db, dy, (const TX *)x, mean, rstd, O,
                                                                          C, I, acc[1], acc[2]);
    LAUNCH_CHECK("layernorm_params_backward");
}

extern "C" usi_error *usi_cuda_layernorm_forward(cudaStream_t s, float *out, float *mean, float *rstd, const void *x,
                                                 const float *w, const float *b, int64_t O, int64_t C, int64_t I,
                                                 double eps, int32_t x_bf16)
{
    return x_bf16 ? layernorm_forward<__nv_bfloat16>(s, out, mean, rstd, x, w, b, O, C, I, eps)
                  : layernorm_forward<float>(s, out, mean, rstd, x, w, b, O, C, I, eps);
}

extern "C" usi_error *usi_cuda_layernorm_backward(cudaStream_t s, void *dx, float *dw, float *db, const float *dy,
                                                  const void *x, const float *w, const float *mean,
                                                  const float *rstd, int64_t O, int64_t C, int64_t I,
                                                  const int32_t *acc, int32_t x_bf16)
{
    return x_bf16 ? layernorm_backward<__nv_bfloat16>(s, dx, dw, db, dy, x, w, mean, rstd, O, C, I, acc)
                  : layernorm_backward<float>(s, dx, dw, db, dy, x, w, mean, rstd, O, C, I, acc);
}

/* ---- batch norm: x as [O, C, I], statistics per channel c ---- */

// saved: [3, C] = mean, invstd, var from the running statistics
__global__ void batchnorm_eval_stats_kernel(float *saved, const float *rm, const float *rv, int64_t C, double eps)
{
    GRID_STRIDE(c, C)
    {
        double v = rv[c];
        saved[c] = rm[c];
        saved[C + c] = (float)(1.0 / sqrt(v + eps));
        saved[2 * C + c] = (float)v;
    }
}

// out, x: [O, C, I] of T
template <typename T>
__global__ void batchnorm_eval_forward_kernel(T *out, const float *saved, const T *x, const float *w,
                                              const float *b, int64_t O, int64_t C, int64_t I, int32_t relu)
{
    GRID_STRIDE(k, O * C * I)
    {
        int64_t c = k / I % C;
        float is = saved[C + c];
        float scale = w ? w[c] * is : is, shift = b ? b[c] : 0.0f;
        float v = (ld(x, k) - saved[c]) * scale + shift;
        st(out, k, relu && !(v > 0) ? 0.0f : v); /* the ReLU it applies (fuse.c), as the CPU's */
    }
}

/* A block per channel: its two sums, then its dx. */
// dx, dy, x: [O, C, I] of T; dw, db, w, mean, invstd: [C]
template <typename T>
__global__ void batchnorm_backward_kernel(T *dx, float *dw, float *db, const T *dy, const T *x,
                                          const float *w, const float *mean, const float *invstd, int64_t O,
                                          int64_t C, int64_t I, int32_t batch_stats, int32_t acc_x, int32_t acc_w,
                                          int32_t acc_b)
{
    __shared__ double shared[32];
    double M = (double)(O * I);
    for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
        float m = mean[c], is = invstd[c], wc = w ? w[c] : 1.0f;
        double sdy = 0, sdyxh = 0;
        for (int64_t j = threadIdx.x; j < O * I; j += blockDim.x) {
            int64_t k = (j / I * C + c) * I + j % I;
            float g = ld(dy, k);
            sdy += g;
            sdyxh += (double)(g * (ld(x, k) - m));
        }
        sdy = block_sum_d(sdy, shared);
        sdyxh = block_sum_d(sdyxh, shared) * is;
        if (threadIdx.x == 0) {
            if (dw) dw[c] = (acc_w ? dw[c] : 0.0f) + (float)sdyxh;
            if (db) db[c] = (acc_b ? db[c] : 0.0f) + (float)sdy;
        }
        if (!dx) continue;
        float a = (float)(sdy / M), bb = (float)(sdyxh / M);
        float k1 = batch_stats ? a : 0.0f, k2 = batch_stats ? bb * is : 0.0f, ws = wc * is;
        for (int64_t j = threadIdx.x; j < O * I; j += blockDim.x) {
            int64_t k = (j / I * C + c) * I + j % I;
            float v = (ld(dy, k) - k1 - (ld(x, k) - m) * k2) * ws;
            st(dx, k, acc_x ? ld(dx, k) + v : v);
        }
    }
}

__global__ void counter_forward_kernel(int64_t *counter) { ++*counter; }

// w2, w: [O, per]; b2: [O]
__global__ void fold_batchnorm_kernel(float *w2, float *b2, const float *w, const float *b, const float *gamma,
                                      const float *beta, const float *rm, const float *rv, int64_t O, int64_t per,
                                      double eps)
{
    GRID_STRIDE(k, O * per)
    {
        int64_t o = k / per;
        double sc = (gamma ? gamma[o] : 1.0) / sqrt((double)rv[o] + eps);
        w2[k] = (float)(w[k] * sc);
        if (k % per == 0) b2[o] = (float)(((b ? b[o] : 0.0) - rm[o]) * sc + (beta ? beta[o] : 0.0));
    }
}

typedef __nv_bfloat16 bf16;

/* out = x normalised with saved's mean and invstd (and w, b), then
 * relu'd where relu is 1 */
static usi_error *normalise(cudaStream_t s, void *out, const float *saved, const void *x, const float *w,
                            const float *b, int64_t O, int64_t C, int64_t I, int32_t relu, int32_t bf)
{
    if (bf)
        batchnorm_eval_forward_kernel<<<grid_for(O * C * I), THREADS, 0, s>>>((bf16 *)out, saved, (const bf16 *)x, w,
                                                                             b, O, C, I, relu);
    else
        batchnorm_eval_forward_kernel<<<grid_for(O * C * I), THREADS, 0, s>>>((float *)out, saved, (const float *)x,
                                                                             w, b, O, C, I, relu);
    LAUNCH_CHECK("batchnorm_normalise");
}

extern "C" usi_error *usi_cuda_batchnorm_eval_forward(cudaStream_t s, void *out, float *saved, const void *x,
                                                      const float *w, const float *b, const float *rm,
                                                      const float *rv, int64_t O, int64_t C, int64_t I, double eps,
                                                      int32_t bf)
{
    batchnorm_eval_stats_kernel<<<grid_for(C), THREADS, 0, s>>>(saved, rm, rv, C, eps);
    usi_error *e = usi_cuda_check_launch("batchnorm_eval_stats", __FILE__, __LINE__);
    return e ? e : normalise(s, out, saved, x, w, b, O, C, I, 0, bf);
}

extern "C" usi_error *usi_cuda_batchnorm_backward(cudaStream_t s, void *dx, float *dw, float *db, const void *dy,
                                                  const void *x, const float *w, const float *mean,
                                                  const float *invstd, int64_t O, int64_t C, int64_t I,
                                                  int32_t batch_stats, const int32_t *acc, int32_t bf)
{
    if (bf)
        batchnorm_backward_kernel<<<channel_blocks(C), THREADS, 0, s>>>(
            (bf16 *)dx, dw, db, (const bf16 *)dy, (const bf16 *)x, w, mean, invstd, O, C, I, batch_stats, acc[0],
            acc[1], acc[2]);
    else
        batchnorm_backward_kernel<<<channel_blocks(C), THREADS, 0, s>>>(
            (float *)dx, dw, db, (const float *)dy, (const float *)x, w, mean, invstd, O, C, I, batch_stats, acc[0],
            acc[1], acc[2]);
    LAUNCH_CHECK("batchnorm_backward");
}

extern "C" usi_error *usi_cuda_counter_forward(cudaStream_t s, int64_t *counter)
{
    counter_forward_kernel<<<1, 1, 0, s>>>(counter);
    LAUNCH_CHECK("counter_forward");
}

/* ---- batch norm over ranks (dist.sync_bn): the CPU backend's sums ---- */

/* Per-channel sums split over segments of the channel's O*I values, a
 * block per (segment, channel), so that a layer of few channels still
 * fills the GPU; each block writes its partial sum and a second kernel adds
 * a channel's partials in segment order (no atomics: the same sums every
 * run). The partials live after the 1 + 2C sums in the node's scratch:
 * 2C * usi_cuda_bn_segments(O, I) doubles. */

/* Start of segment s's (o, i) range and its length. */
static __device__ __forceinline__ void segment(int64_t OI, int64_t S, int64_t s, int64_t *j0, int64_t *len)
{
    int64_t L = (OI + S - 1) / S;
    *j0 = s * L;
    *len = *j0 >= OI ? 0 : (OI - *j0 < L ? OI - *j0 : L);
}

/* Sum over this block's segment of channel c of f(k), k the element index
 * in [O, C, I]: (o, i) advanced by the block's stride (dO whole rows and
 * dI more) without a division per element. */
#define SEGMENT_LOOP(k, O, C, I, S, c, body)                                                  \
    do {                                                                                      \
        int64_t j0_, len_;                                                                    \
        segment((O) * (I), (S), blockIdx.x, &j0_, &len_);                                     \
        int64_t j_ = threadIdx.x, o_ = (j0_ + j_) / (I), i_ = (j0_ + j_) % (I);               \
        const int64_t dO_ = blockDim.x / (I), dI_ = blockDim.x % (I);                         \
        for (; j_ < len_; j_ += blockDim.x) {                                                 \
            int64_t k = (o_ * (C) + (c)) * (I) + i_;                                          \
            body;                                                                             \
            o_ += dO_;                                                                        \
            i_ += dI_;                                                                        \
            if (i_ >= (I)) {                                                                  \
                i_ -= (I);                                                                    \
                o_++;                                                                         \
            }                                                                                 \
        }                                                                                     \
    } while (0)

// part: [C, S] partial sums of x (shift 0) or of (x - K[c])^2 with K the
// float in sums[1 + C + c] (shift 1); x: [O, C, I] of T; grid (S, C)
template <typename T>
__global__ void batchnorm_partial_kernel(double *part, const double *sums, const T *x, int64_t O, int64_t C,
                                         int64_t I, int64_t S, int32_t shift)
{
    __shared__ double shared[32];
    for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {
        float K = shift ? (float)sums[1 + C + c] : 0.0f;
        double acc = 0;
        if (shift)
            SEGMENT_LOOP(k, O, C, I, S, c, {
                float d = ld(x, k) - K;
                acc += (double)d * d;
            });
        else
            SEGMENT_LOOP(k, O, C, I, S, c, acc += ld(x, k));
        acc = block_sum_d(acc, shared);
        if (threadIdx.x == 0) part[c * S + blockIdx.x] = acc;
    }
}

/* The same partial sums for I = 1, x as rows [O, C]: a block of 32 x 8
 * threads per (segment, 32 channels), a thread per channel and row lane,
 * so a warp reads 32 neighbouring channels of a row; the 8 lanes added in
 * order. grid (S, ceil(C / 32)) */
template <typename T>
__global__ void batchnorm_rows_partial_kernel(double *part, const double *sums, const T *x, int64_t O, int64_t C,
                                              int64_t S, int32_t shift)
{
    __shared__ double lanes[8][33];
    int64_t j0, len;
    segment(O, S, blockIdx.x, &j0, &len);
    for (int64_t c0 = (int64_t)blockIdx.y * 32; c0 < C; c0 += (int64_t)gridDim.y * 32) {
        int64_t c = c0 + threadIdx.x;
        double acc = 0;
        if (c < C) {
            float K = shift ? (float)sums[1 + C + c] : 0.0f;
            for (int64_t r = threadIdx.y; r < len; r += 8) {
                float v = ld(x, (j0 + r) * C + c);
                if (shift) {
                    float d = v - K;
                    acc += (double)d * d;
                } else {
                    acc += v;
                }
            }
        }
        double a = rows_lanes_sum(lanes, acc);
        if (threadIdx.y == 0 && c < C) part[c * S + blockIdx.x] = a;
    }
}

/* sums = [count, sum x, q + K (2 s - n K)] with K the rank's float mean
 * and q = sum (x - K)^2 (core/backend/cpu/norm.c's formula): step 0 adds
 * the partial sums of x and leaves K in sums[1 + C + c]; step 1 adds the
 * partial q. All zeros when idle. */
__global__ void batchnorm_stats_finish_kernel(double *sums, const double *part, int64_t C, int64_t S, double n,
                                              int32_t step, int32_t idle)
{
    if (blockIdx.x == 0 && threadIdx.x == 0) sums[0] = idle ? 0.0 : n;
    GRID_STRIDE(c, C)
    {
        double a = 0;
        for (int64_t s = 0; s < S; s++) a += part[c * S + s];
        if (idle) {
            sums[1 + c] = sums[1 + C + c] = 0.0;
        } else if (step == 0) {
            sums[1 + c] = a;
            sums[1 + C + c] = (double)(float)(a / n);
        } else {
            double K = sums[1 + C + c], sx = sums[1 + c];
            sums[1 + C + c] = a + K * (2.0 * sx - n * K);
        }
    }
}

// saved: [3, C]; rm, rv: [C] or NULL; sums: [1 + 2C] over every rank
__global__ void batchnorm_sync_finish_kernel(float *saved, float *rm, float *rv, int64_t *counter,
                                             const double *sums, int64_t C, double eps, double momentum)
{
    double N = sums[0];
    GRID_STRIDE(c, C)
    {
        double m = N > 0 ? sums[1 + c] / N : 0.0, v = N > 0 ? sums[1 + C + c] / N - m * m : 0.0;
        if (v < 0) v = 0;
        float fm = (float)m, fv = (float)v;
        saved[c] = fm;
        saved[C + c] = (float)(1.0 / sqrt(v + eps));
        saved[2 * C + c] = fv;
        if (rm && N > 0) {
            double unbias = N > 1 ? N / (N - 1) : 1.0;
            rm[c] = (float)((1 - momentum) * rm[c] + momentum * fm);
            rv[c] = (float)((1 - momentum) * rv[c] + momentum * fv * unbias);
            if (counter && c == 0) ++*counter;
        }
    }
}

/* dy[k], or 0 where the norm applies a ReLU (z: its output, fuse.c) and
 * z[k] is not above 0: the CPU's ReLU backward, read on the fly. */
template <typename T>
static __device__ __forceinline__ float relu_masked(const T *dy, const T *z, int64_t k)
{
    float g = ld(dy, k);
    return z && !(ld(z, k) > 0.0f) ? 0.0f : g;
}

/* This rank's sum dy and sum dy*(x - mean) per channel, over segments as
 * above: part [2, C, S]. */
// dy, x: [O, C, I] of T; mean: [C]; grid (S, C)
template <typename T>
__global__ void batchnorm_grad_partial_kernel(double *part, const T *dy, const T *z, const T *x, const float *mean,
                                              int64_t O, int64_t C, int64_t I, int64_t S)
{
    __shared__ double shared[32];
    for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {
        float m = mean[c];
        double sdy = 0, sdyx = 0;
        SEGMENT_LOOP(k, O, C, I, S, c, {
            float g = relu_masked(dy, z, k);
            sdy += g;
            sdyx += (double)(g * (ld(x, k) - m));
        });
        sdy = block_sum_d(sdy, shared);
        sdyx = block_sum_d(sdyx, shared);
        if (threadIdx.x == 0) {
            part[c * S + blockIdx.x] = sdy;
            part[(C + c) * S + blockIdx.x] = sdyx;
        }
    }
}

/* The same for I = 1, rows [O, C], as batchnorm_rows_partial_kernel. */
template <typename T>
__global__ void batchnorm_rows_grad_partial_kernel(double *part, const T *dy, const T *z, const T *x,
                                                   const float *mean, int64_t O, int64_t C, int64_t S)
{
    __shared__ double lanes[8][33];
    int64_t j0, len;
    segment(O, S, blockIdx.x, &j0, &len);
    for (int64_t c0 = (int64_t)blockIdx.y * 32; c0 < C; c0 += (int64_t)gridDim.y * 32) {
        int64_t c = c0 + threadIdx.x;
        double sdy = 0, sdyx = 0;
        if (c < C) {
            float m = mean[c];
            for (int64_t r = threadIdx.y; r < len; r += 8) {
                int64_t k = (j0 + r) * C + c;
                float g = relu_masked(dy, z, k);
                sdy += g;
                sdyx += (double)(g * (ld(x, k) - m));
            }
        }
        double a = rows_lanes_sum(lanes, sdy), b = rows_lanes_sum(lanes, sdyx);
        if (threadIdx.y == 0 && c < C) {
            part[c * S + blockIdx.x] = a;
            part[(C + c) * S + blockIdx.x] = b;
        }
    }
}

/* dw, db (+)= this rank's sums; sums = [count, sum dy, sum dy*xh], zero
 * when idle. */
__global__ void batchnorm_grad_finish_kernel(double *sums, float *dw, float *db, const double *part,
                                             const float *invstd, int64_t C, int64_t S, double n, int32_t idle,
                                             int32_t acc_w, int32_t acc_b)
{
    if (blockIdx.x == 0 && threadIdx.x == 0) sums[0] = idle ? 0.0 : n;
    GRID_STRIDE(c, C)
    {
        double sdy = 0, sdyx = 0;
        for (int64_t s = 0; s < S; s++) {
            sdy += part[c * S + s];
            sdyx += part[(C + c) * S + s];
        }
        double sdyxh = sdyx * invstd[c];
        if (dw) dw[c] = (acc_w ? dw[c] : 0.0f) + (float)sdyxh;
        if (db) db[c] = (acc_b ? db[c] : 0.0f) + (float)sdy;
        sums[1 + c] = idle ? 0.0 : sdy;
        sums[1 + C + c] = idle ? 0.0 : sdyxh;
    }
}

// dx, dy, x: [O, C, I] of T; sums: [1 + 2C] over every rank
template <typename T>
__global__ void batchnorm_sync_grad_input_kernel(T *dx, const double *sums, const T *dy, const T *z, const T *x,
                                                 const float *w, const float *mean, const float *invstd, int64_t O,
                                                 int64_t C, int64_t I, int32_t acc_x)
{
    double M = sums[0];
    GRID_STRIDE(k, O * C * I)
    {
        int64_t c = k / I % C;
        float m = mean[c], is = invstd[c], wc = w ? w[c] : 1.0f;
        float k1 = M > 0 ? (float)(sums[1 + c] / M) : 0.0f, k2 = M > 0 ? (float)(sums[1 + C + c] / M) * is : 0.0f;
        float v = (relu_masked(dy, z, k) - k1 - (ld(x, k) - m) * k2) * (wc * is);
        st(dx, k, acc_x ? ld(dx, k) + v : v);
    }
}

static dim3 segment_grid(int64_t S, int64_t C) { return dim3((unsigned)S, (unsigned)(C < 65535 ? C : 65535)); }

/* rows kernels (I = 1): (S, channel groups of 32) blocks of 32 x 8 */
static dim3 rows_grid(int64_t S, int64_t C)
{
    int64_t g = (C + 31) / 32;
    return dim3((unsigned)S, (unsigned)(g < 65535 ? g : 65535));
}
static const dim3 ROWS_BLOCK(32, 8);

extern "C" usi_error *usi_cuda_batchnorm_sync_stats(cudaStream_t s, double *sums, const void *x, int64_t O,
                                                    int64_t C, int64_t I, int32_t idle, int32_t bf)
{
    int64_t S = usi_cuda_bn_parts(O, C, I);
    double *part = sums + 1 + 2 * C, n = (double)(O * I);
    for (int32_t step = 0; step < 2; step++) {
        if (!idle && I == 1) {
            if (bf)
                batchnorm_rows_partial_kernel<<<rows_grid(S, C), ROWS_BLOCK, 0, s>>>(part, sums, (const bf16 *)x, O,
                                                                                     C, S, step);
            else
                batchnorm_rows_partial_kernel<<<rows_grid(S, C), ROWS_BLOCK, 0, s>>>(part, sums, (const float *)x, O,
                                                                                     C, S, step);
            usi_error *e = usi_cuda_check_launch("batchnorm_rows_partial", __FILE__, __LINE__);
            if (e) return e;
        } else if (!idle) {
            if (bf)
                batchnorm_partial_kernel<<<segment_grid(S, C), THREADS, 0, s>>>(part, sums, (const bf16 *)x, O, C, I,
                                                                                 S, step);
            else
                batchnorm_partial_kernel<<<segment_grid(S, C), THREADS, 0, s>>>(part, sums, (const float *)x, O, C, I,
                                                                                 S, step);
            usi_error *e = usi_cuda_check_launch("batchnorm_partial", __FILE__, __LINE__);
            if (e) return e;
        }
        batchnorm_stats_finish_kernel<<<grid_for(C), THREADS, 0, s>>>(sums, part, C, idle ? 0 : S, n, step, idle);
        usi_error *e = usi_cuda_check_launch("batchnorm_stats_finish", __FILE__, __LINE__);
        if (e || idle) return e;
    }
    return NULL;
}

extern "C" usi_error *usi_cuda_batchnorm_sync_finish(cudaStream_t s, void *out, float *saved, float *rm, float *rv,
                                                     int64_t *counter, const double *sums, const void *x,
                                                     const float *w, const float *b, int64_t O, int64_t C,
                                                     int64_t I, double eps, double momentum, int32_t relu,
                                                     int32_t bf)
{
    batchnorm_sync_finish_kernel<<<grid_for(C), THREADS, 0, s>>>(saved, rm, rv, counter, sums, C, eps, momentum);
    usi_error *e = usi_cuda_check_launch("batchnorm_sync_finish", __FILE__, __LINE__);
    return e ? e : normalise(s, out, saved, x, w, b, O, C, I, relu, bf);
}

extern "C" usi_error *usi_cuda_batchnorm_sync_grad_sums(cudaStream_t s, double *sums, float *dw, float *db,
                                                        const void *dy, const void *z, const void *x,
                                                        const float *mean, const float *invstd, int64_t O, int64_t C,
                                                        int64_t I, int32_t idle, int32_t acc_w, int32_t acc_b,
                                                        int32_t bf)
{
    int64_t S = usi_cuda_bn_parts(O, C, I);
    double *part = sums + 1 + 2 * C;
    if (I == 1 && bf)
        batchnorm_rows_grad_partial_kernel<<<rows_grid(S, C), ROWS_BLOCK, 0, s>>>(
            part, (const bf16 *)dy, (const bf16 *)z, (const bf16 *)x, mean, O, C, S);
    else if (I == 1)
        batchnorm_rows_grad_partial_kernel<<<rows_grid(S, C), ROWS_BLOCK, 0, s>>>(
            part, (const float *)dy, (const float *)z, (const float *)x, mean, O, C, S);
    else if (bf)
        batchnorm_grad_partial_kernel<<<segment_grid(S, C), THREADS, 0, s>>>(
            part, (const bf16 *)dy, (const bf16 *)z, (const bf16 *)x, mean, O, C, I, S);
    else
        batchnorm_grad_partial_kernel<<<segment_grid(S, C), THREADS, 0, s>>>(
            part, (const float *)dy, (const float *)z, (const float *)x, mean, O, C, I, S);
    usi_error *e = usi_cuda_check_launch("batchnorm_grad_partial", __FILE__, __LINE__);
    if (e) return e;
    batchnorm_grad_finish_kernel<<<grid_for(C), THREADS, 0, s>>>(sums, dw, db, part, invstd, C, S, (double)(O * I),
                                                                 idle, acc_w, acc_b);
    LAUNCH_CHECK("batchnorm_grad_finish");
}

extern "C" usi_error *usi_cuda_batchnorm_sync_grad_input(cudaStream_t s, void *dx, const double *sums,
                                                         const void *dy, const void *z, const void *x,
                                                         const float *w, const float *mean, const float *invstd,
                                                         int64_t O, int64_t C, int64_t I, int32_t acc_x, int32_t bf)
{
    if (bf)
        batchnorm_sync_grad_input_kernel<<<grid_for(O * C * I), THREADS, 0, s>>>(
            (bf16 *)dx, sums, (const bf16 *)dy, (const bf16 *)z, (const bf16 *)x, w, mean, invstd, O, C, I, acc_x);
    else
        batchnorm_sync_grad_input_kernel<<<grid_for(O * C * I), THREADS, 0, s>>>(
            (float *)dx, sums, (const float *)dy, (const float *)z, (const float *)x, w, mean, invstd, O, C, I,
            acc_x);
    LAUNCH_CHECK("batchnorm_sync_grad_input");
}

extern "C" usi_error *usi_cuda_fold_batchnorm_forward(cudaStream_t s, float *w2, float *b2, const float *w,
                                                      const float *b, const float *gamma, const float *beta,
                                                      const float *rm, const float *rv, int64_t O, int64_t per,
                                                      double eps)
{
    fold_batchnorm_kernel<<<grid_for(O * per), THREADS, 0, s>>>(w2, b2, w, b, gamma, beta, rm, rv, O, per, eps);
    LAUNCH_CHECK("fold_batchnorm");
}
