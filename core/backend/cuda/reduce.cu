/* Reductions: sum/mean over axes, row broadcasts of a bias, softmax over the
 * last axis and the losses built on log-softmax. The sums run in double as
 * the CPU backend's do (core/backend/cpu/reduce.c, softmax.c); per-row loss
 * terms are summed in a fixed order, so a loss does not change from run to
 * run. A warp handles one row. */
#include <math.h>

#include "backend/cuda/common.cuh"

#define ROWS_PER_BLOCK (THREADS / 32)

static unsigned row_blocks(int64_t rows)
{
    int64_t b = (rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    if (b < 1) b = 1;
    if (b > (1 << 20)) b = 1 << 20;
    return (unsigned)b;
}

/* The warp's row loop: row = this warp's first, strided by all warps. */
#define WARP_ROWS(row, rows)                                                                  \
    for (int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; row < (rows);  \
         row += ((int64_t)gridDim.x * blockDim.x) / 32)

/* ---- reduce ---- */

/* Input offset of kept position o (reduced dims at 0). */
static __device__ __forceinline__ int64_t kept_base(const usi_cuda_rdims &r, int64_t o)
{
    int64_t base = 0;
    for (int32_t d = r.n - 1; d >= 0; d--) {
        if (r.reduced[d]) continue;
        base += (o % r.shape[d]) * r.istride[d];
        o /= r.shape[d];
    }
    return base;
}

/* Offset of reduced position q over the reduced dims before `upto`. */
static __device__ __forceinline__ int64_t reduced_off(const usi_cuda_rdims &r, int64_t q, int32_t upto)
{
    int64_t off = 0;
    for (int32_t d = upto - 1; d >= 0; d--) {
        if (!r.reduced[d]) continue;
        off += (q % r.shape[d]) * r.istride[d];
        q /= r.shape[d];
    }
    return off;
}

/* The last dim is reduced: a warp per output, its lanes along that
 * contiguous dim. */
template <typename T>
__global__ void reduce_rows_kernel(T *out, const T *x, const usi_cuda_rdims r, int64_t n_out, float scale)
{
    int lane = threadIdx.x & 31;
    int64_t inner = r.shape[r.n - 1], outer_red = r.count / inner;
    WARP_ROWS(o, n_out)
    {
        int64_t base = kept_base(r, o);
        double s = 0;
        for (int64_t q = 0; q < outer_red; q++) {
            const T *xp = x + base + reduced_off(r, q, r.n - 1);
            for (int64_t i = lane; i < inner; i += 32) s += ld(xp, i);
        }
        s = warp_sum_d(s);
        if (lane == 0) st(out, o, (float)(s * scale));
    }
}

/* The last dim is kept: a thread per output, neighbours reading neighbours. */
template <typename T>
__global__ void reduce_cols_kernel(T *out, const T *x, const usi_cuda_rdims r, int64_t n_out, float scale)
{
    GRID_STRIDE(o, n_out)
    {
        int64_t base = kept_base(r, o);
        double s = 0;
        for (int64_t q = 0; q < r.count; q++) s += ld(x, base + reduced_off(r, q, r.n));
        st(out, o, (float)(s * scale));
    }
}

// dx: [n_in]; dx, dout of T
template <typename T>
__global__ void reduce_backward_kernel(T *dx, const T *dout, const usi_cuda_rdims r, int64_t n_in, float scale,
                                       int32_t acc)
{
    int64_t L = r.n ? r.shape[r.n - 1] : 1;
    int32_t last_red = r.n > 0 && r.reduced[r.n - 1];
    GRID_STRIDE(k, n_in)
    {
        int64_t row = k / L, i = k % L, o = 0, ostride = last_red ? 1 : L, rem = row;
        for (int32_t d = r.n - 2; d >= 0; d--) {
            int64_t c = rem % r.shape[d];
            rem /= r.shape[d];
            if (r.reduced[d]) continue;
            o += c * ostride;
            ostride *= r.shape[d];
        }
        float v = scale * ld(dout, last_red ? o : o + i);
        st(dx, k, acc ? ld(dx, k) + v : v);
    }
}

template <typename T>
static usi_error *reduce_forward(cudaStream_t s, void *out, const void *x, const usi_cuda_rdims *r, int64_t n_out,
                                 float scale)
{
    if (r->n > 0 && r->reduced[r->n - 1])
        reduce_rows_kernel<T><<<row_blocks(n_out), THREADS, 0, s>>>((T *)out, (const T *)x, *r, n_out, scale);
    else
        reduce_cols_kernel<T><<<grid_for(n_out), THREADS, 0, s>>>((T *)out, (const T *)x, *r, n_out, scale);
    LAUNCH_CHECK("reduce_forward");
}

template <typename T>
static usi_error *reduce_backward(cudaStream_t s, void *dx, const void *dout, const usi_cuda_rdims *r, int64_t n_in,
                                  float scale, int32_t acc)
{
    reduce_backward_kernel<T><<<grid_for(n_in), THREADS, 0, s>>>((T *)dx, (const T *)dout, *r, n_in, scale, acc);
    LAUNCH_CHECK("reduce_backward");
}

extern "C" usi_error *usi_cuda_reduce_forward(cudaStream_t s, void *out, const void *x, const usi_cuda_rdims *r,
                                              int64_t n_out, float scale, int32_t bf16)
{
    return bf16 ? reduce_forward<__nv_bfloat16>(s, out, x, r, n_out, scale)
                : reduce_forward<float>(s, out, x, r, n_out, scale);
}

extern "C" usi_error *usi_cuda_reduce_backward(cudaStream_t s, void *dx, const void *dout, const usi_cuda_rdims *r,
                                               int64_t n_in, float scale, int32_t acc, int32_t bf16)
{
    return bf16 ? reduce_backward<__nv_bfloat16>(s, dx, dout, r, n_in, scale, acc)
                : reduce_backward<float>(s, dx, dout, r, n_in, scale, acc);
}

// out: [M, O], bias: [O]
__global__ void bias_rows_forward_kernel(float *out, const float *bias, int64_t M, int64_t O)
{
    GRID_STRIDE(k, M * O) out[k] = bias[k % O];
}

extern "C" usi_error *usi_cuda_bias_rows_forward(cudaStream_t s, float *out, const float *bias, int64_t M,
                                                 int64_t O)
{
    bias_rows_forward_kernel<<<grid_for(M * O), THREADS, 0, s>>>(out, bias, M, O);
    LAUNCH_CHECK("bias_rows_forward");
}

/* ---- softmax ---- */

// out: [R, C]; x: [R, C] of TX
template <typename TX>
__global__ void softmax_forward_kernel(float *out, const TX *x, int64_t R, int64_t C)
{
    int lane = threadIdx.x & 31;
    WARP_ROWS(r, R)
    {
        const TX *xr = x + r * C;
        float *yr = out + r * C;
        float m = -INFINITY;
        for (int64_t c = lane; c < C; c += 32) m = fmaxf(m, ld(xr, c));
        m = warp_max_f(m);
        double s = 0;
        for (int64_t c = lane; c < C; c += 32) {
            float e = expf(ld(xr, c) - m);
            yr[c] = e;
            s += e;
        }
        s = warp_sum_d(s);
        float inv = (float)(1.0 / s);
        for (int64_t c = lane; c < C; c += 32) yr[c] *= inv;
    }
}

// dy, y: [R, C]; dx: [R, C] of TX
template <typename TX>
__global__ void softmax_backward_kernel(TX *dx, const float *dy, const float *y, int64_t R, int64_t C, int32_t acc)
{
    int lane = threadIdx.x & 31;
    WARP_ROWS(r, R)
    {
        const float *g = dy + r * C, *yr = y + r * C;
        TX *d = dx + r * C;
        double dot = 0;
        for (int64_t c = lane; c < C; c += 32) dot += (double)g[c] * yr[c];
        float fdot = (float)warp_sum_d(dot);
        for (int64_t c = lane; c < C; c += 32) {
            float v = yr[c] * (g[c] - fdot);
            st(d, c, acc ? ld(d, c) + v : v);
        }
    }
}

extern "C" usi_error *usi_cuda_softmax_forward(cudaStream_t s, float *out, const void *x, int64_t R, int64_t C,
                                               int32_t x_bf16)
{
    if (x_bf16) softmax_forward_kernel<<<row_blocks(R), THREADS, 0, s>>>(out, (const __nv_bfloat16 *)x, R, C);
    else softmax_forward_kernel<<<row_blocks(R), THREADS, 0, s>>>(out, (const float *)x, R, C);
    LAUNCH_CHECK("softmax_forward");
}

extern "C" usi_error *usi_cuda_softmax_backward(cudaStream_t s, void *dx, const float *dy, const float *y,
                                                int64_t R, int64_t C, int32_t acc, int32_t x_bf16)
{
    if (x_bf16) softmax_backward_kernel<<<row_blocks(R), THREADS, 0, s>>>((__nv_bfloat16 *)dx, dy, y, R, C, acc);
    else softmax_backward_kernel<<<row_blocks(R), THREADS, 0, s>>>((float *)dx, dy, y, R, C, acc);
    LAUNCH_CHECK("softmax_backward");
}

/* ---- losses ---- */

/* log-sum-exp of x[C] * inv_t in double, over the warp. */
static __device__ __forceinline__ double row_lse(const float *x, int64_t C, double inv_t, int lane)
{
    double m = -INFINITY;
    for (int64_t c = lane; c < C; c += 32) m = fmax(m, x[c] * inv_t);
    for (int o = 16; o > 0; o >>= 1) m = fmax(m, __shfl_xor_sync(0xffffffffu, m, o));
    double s = 0;
    for (int64_t c = lane; c < C; c += 32) s += exp(x[c] * inv_t - m);
    return m + log(warp_sum_d(s));
}

/* Target of class c in row n: a soft row, or a smoothed one-hot label. */
static __device__ __forceinline__ double target_at(const void *target, int32_t soft, int64_t n, int64_t c,
                                                   int64_t C, double eps)
{
    if (soft) return ((const float *)target)[n * C + c];
    int32_t y = ((const int32_t *)target)[n];
    return (c == y ? 1.0 - eps : 0.0) + eps / (double)C;
}

// rows: [N] = -sum_c q[n,c] log_softmax(z[n])[c]
__global__ void ce_rows_kernel(double *rows, const float *z, const void *target, int32_t soft, int64_t N,
                               int64_t C, double eps, int32_t *bad)
{
    int lane = threadIdx.x & 31;
    WARP_ROWS(n, N)
    {
        if (!soft) {
            int32_t y = ((const int32_t *)target)[n];
            if (y < 0 || y >= C) {
                if (lane == 0) {
                    rows[n] = NAN;
                    if (bad && atomicCAS(&bad[0], 0, 1) == 0) {
                        bad[1] = y;
                        bad[2] = (int32_t)n;
                    }
                }
                continue;
            }
        }
        const float *zr = z + n * C;
        double lse = row_lse(zr, C, 1.0, lane), t = 0;
        for (int64_t c = lane; c < C; c += 32) t -= target_at(target, soft, n, c, C, eps) * (zr[c] - lse);
        t = warp_sum_d(t);
        if (lane == 0) rows[n] = t;
    }
}

// loss[0] = factor * sum rows[N], in one block's fixed order
__global__ void rows_sum_kernel(float *loss, const double *rows, int64_t N, double factor)
{
    __shared__ double shared[32];
    double s = 0;
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x) s += rows[n];
    s = block_sum_d(s, shared);
    if (threadIdx.x == 0) loss[0] = (float)(s * factor);
}

// dz, dq: [N, C]
__global__ void ce_backward_kernel(float *dz, float *dq, const float *dloss, const float *z, const void *target,
                                   int32_t soft, int64_t N, int64_t C, double eps, int32_t acc_z, int32_t acc_q)
{
    int lane = threadIdx.x & 31;
    double g = (double)dloss[0] / (double)N;
    WARP_ROWS(n, N)
    {
        const float *zr = z + n * C;
        if (!soft) {
            int32_t y = ((const int32_t *)target)[n];
            if (y < 0 || y >= C) { /* its loss was NaN: so is its gradient */
                for (int64_t c = lane; c < C; c += 32)
                    if (dz) dz[n * C + c] = NAN;
                continue;
            }
        }
        double lse = row_lse(zr, C, 1.0, lane), qs = 0;
        for (int64_t c = lane; c < C; c += 32) qs += target_at(target, soft, n, c, C, eps);
        qs = warp_sum_d(qs);
        for (int64_t c = lane; c < C; c += 32) {
            int64_t k = n * C + c;
            double lp = zr[c] - lse;
            if (dz) {
                float v = (float)(g * (qs * exp(lp) - target_at(target, soft, n, c, C, eps)));
                dz[k] = acc_z ? dz[k] + v : v;
            }
            if (dq) {
                float v = (float)(-g * lp);
                dq[k] = acc_q ? dq[k] + v : v;
            }
        }
    }
}

extern "C" usi_error *usi_cuda_ce_forward(cudaStream_t s, float *loss, double *rows, const float *z,
                                          const void *target, int32_t soft, int64_t N, int64_t C, double eps,
                                          int32_t *bad)
{
    ce_rows_kernel<<<row_blocks(N), THREADS, 0, s>>>(rows, z, target, soft, N, C, eps, bad);
    usi_error *e = usi_cuda_check_launch("ce_rows", __FILE__, __LINE__);
    if (e) return e;
    rows_sum_kernel<<<1, 1024, 0, s>>>(loss, rows, N, 1.0 / (double)N);
    LAUNCH_CHECK("ce_sum");
}

extern "C" usi_error *usi_cuda_ce_backward(cudaStream_t s, float *dz, float *dq, const float *dloss, const float *z,
                                           const void *target, int32_t soft, int64_t N, int64_t C, double eps,
                                           int32_t acc_z, int32_t acc_q)
{
    ce_backward_kernel<<<row_blocks(N), THREADS, 0, s>>>(dz, dq, dloss, z, target, soft, N, C, eps, acc_z, acc_q);
    LAUNCH_CHECK("ce_backward");
}

// rows: [N] = KL(softmax(zt_n/T) || softmax(zs_n/T))
__global__ void kl_rows_kernel(double *rows, const float *zs, const float *zt, int64_t N, int64_t C, double T)
{
    int lane = threadIdx.x & 31;
    double inv_t = 1.0 / T;
    WARP_ROWS(n, N)
    {
        const float *sr = zs + n * C, *tr = zt + n * C;
        double lse_s = row_lse(sr, C, inv_t, lane), lse_t = row_lse(tr, C, inv_t, lane), kl = 0;
        for (int64_t c = lane; c < C; c += 32) {
            double ls = sr[c] * inv_t - lse_s, lt = tr[c] * inv_t - lse_t;
            kl += exp(lt) * (lt - ls);
        }
        kl = warp_sum_d(kl);
        if (lane == 0) rows[n] = kl;
    }
}

// ds, dt: [N, C]
__global__ void kl_backward_kernel(float *ds, float *dt, const float *dloss, const float *zs, const float *zt,
                                   int64_t N, int64_t C, double T, int32_t acc_s, int32_t acc_t)
{
    int lane = threadIdx.x & 31;
    double inv_t = 1.0 / T, g = (double)dloss[0] * T / (double)N;
    WARP_ROWS(n, N)
    {
        const float *sr = zs + n * C, *tr = zt + n * C;
        double lse_s = row_lse(sr, C, inv_t, lane), lse_t = row_lse(tr, C, inv_t, lane), kl = 0;
        for (int64_t c = lane; c < C; c += 32) {
            double ls = sr[c] * inv_t - lse_s, lt = tr[c] * inv_t - lse_t;
            kl += exp(lt) * (lt - ls);
        }
        kl = warp_sum_d(kl);
        for (int64_t c = lane; c < C; c += 32) {
            int64_t k = n * C + c;
            double ls = sr[c] * inv_t - lse_s, lt = tr[c] * inv_t - lse_t, pt = exp(lt);
            if (ds) {
                float v = (float)(g * (exp(ls) - pt));
                ds[k] = acc_s ? ds[k] + v : v;
            }
            if (dt) {
                float v = (float)(g * pt * (lt - ls - kl));
                dt[k] = acc_t ? dt[k] + v : v;
            }
        }
    }
}

extern "C" usi_error *usi_cuda_kl_forward(cudaStream_t s, float *loss, double *rows, const float *zs,
                                          const float *zt, int64_t N, int64_t C, double T)
{
    kl_rows_kernel<<<row_blocks(N), THREADS, 0, s>>>(rows, zs, zt, N, C, T);
    usi_error *e = usi_cuda_check_launch("kl_rows", __FILE__, __LINE__);
    if (e) return e;
    rows_sum_kernel<<<1, 1024, 0, s>>>(loss, rows, N, T * T / (double)N);
    LAUNCH_CHECK("kl_sum");
}

extern "C" usi_error *usi_cuda_kl_backward(cudaStream_t s, float *ds, float *dt, const float *dloss,
                                           const float *zs, const float *zt, int64_t N, int64_t C, double T,
                                           int32_t acc_s, int32_t acc_t)
{
    kl_backward_kernel<<<row_blocks(N), THREADS, 0, s>>>(ds, dt, dloss, zs, zt, N, C, T, acc_s, acc_t);
    LAUNCH_CHECK("kl_backward");
}
