/* Layout changes with a cast: channels-last (NHWC) copies for
 * convolutions under precision "mixed" (cuDNN's tensor-core kernels want
 * channels last), and the executor's NCHW fp32 copies of activations kept
 * channels-last (core/graph/layout.c, through the backend's repack). Each
 * is a tiled transpose of [N][C][P] <-> [N][P][C] (P = H*W, or KH*KW for
 * filters) through shared memory, so both the reads and the writes are
 * coalesced; either side float or bf16, the destination written or added
 * into. */
#include <cuda_bf16.h>

#include "backend/cuda/common.cuh"

#define TILE 32
#define ROWS 8 /* threads per tile column: each thread moves TILE / ROWS */

// dst: TO [N][P][C] (+)= src: TI [N][C][P]; grid (P/TILE, C/TILE, N)
template <typename TI, typename TO>
__global__ void nchw_to_nhwc_kernel(TO *dst, const TI *src, int32_t C, int32_t P, int32_t acc)
{
    __shared__ float tile[TILE][TILE + 1];
    size_t base = (size_t)blockIdx.z * C * P;
    int32_t p0 = blockIdx.x * TILE, c0 = blockIdx.y * TILE;
    for (int32_t j = threadIdx.y; j < TILE; j += ROWS) {
        int32_t c = c0 + j, p = p0 + threadIdx.x;
        if (c < C && p < P) tile[j][threadIdx.x] = ld(src, base + (size_t)c * P + p);
    }
    __syncthreads();
    for (int32_t j = threadIdx.y; j < TILE; j += ROWS) {
        int32_t p = p0 + j, c = c0 + threadIdx.x;
        if (c < C && p < P) {
            size_t at = base + (size_t)p * C + c;
            float v = tile[threadIdx.x][j];
            st(dst, at, acc ? ld(dst, at) + v : v);
        }
    }
}

// dst: TO [N][C][P] (+)= src: TI [N][P][C]; grid (P/TILE, C/TILE, N)
template <typename TI, typename TO>
__global__ void nhwc_to_nchw_kernel(TO *dst, const TI *src, int32_t C, int32_t P, int32_t acc)
{
    __shared__ float tile[TILE][TILE + 1];
    size_t base = (size_t)blockIdx.z * C * P;
    int32_t p0 = blockIdx.x * TILE, c0 = blockIdx.y * TILE;
    for (int32_t j = threadIdx.y; j < TILE; j += ROWS) {
        int32_t p = p0 + j, c = c0 + threadIdx.x;
        if (c < C && p < P) tile[j][threadIdx.x] = ld(src, base + (size_t)p * C + c);
    }
    __syncthreads();
    for (int32_t j = threadIdx.y; j < TILE; j += ROWS) {
        int32_t c = c0 + j, p = p0 + threadIdx.x;
        if (c < C && p < P) {
            float v = tile[threadIdx.x][j];
            size_t at = base + (size_t)c * P + p;
            st(dst, at, acc ? ld(dst, at) + v : v);
        }
    }
}

/* Grids of (P/TILE, C/TILE, up to 65535 items); launchers loop over items. */
#define MAX_Z 65535

static usi_error *check_dims(int64_t c, int64_t p)
{
    if (c > INT32_MAX || p > INT32_MAX || (c + TILE - 1) / TILE > 65535)
        return usi_error_new(USI_ERR_UNSUPPORTED, "layout change of [%lld,%lld] items: past the launch limits",
                             (long long)c, (long long)p);
    return NULL;
}

/* to_cl 1: NCHW -> NHWC, 0: NHWC -> NCHW */
template <typename TI, typename TO>
static usi_error *transpose(cudaStream_t s, void *dst, const void *src, int64_t n, int64_t c, int64_t p,
                            int32_t to_cl, int32_t acc)
{
    usi_error *e = check_dims(c, p);
    if (e || n < 1 || c < 1 || p < 1) return e;
    for (int64_t i = 0; i < n; i += MAX_Z) {
        int64_t k = n - i < MAX_Z ? n - i : MAX_Z;
        dim3 g((unsigned)((p + TILE - 1) / TILE), (unsigned)((c + TILE - 1) / TILE), (unsigned)k);
        TO *d = (TO *)dst + i * c * p;
        const TI *x = (const TI *)src + i * c * p;
        if (to_cl) nchw_to_nhwc_kernel<TI, TO><<<g, dim3(TILE, ROWS), 0, s>>>(d, x, (int32_t)c, (int32_t)p, acc);
        else nhwc_to_nchw_kernel<TI, TO><<<g, dim3(TILE, ROWS), 0, s>>>(d, x, (int32_t)c, (int32_t)p, acc);
    }
    LAUNCH_CHECK(to_cl ? "nchw_to_nhwc" : "nhwc_to_nchw");
}

typedef __nv_bfloat16 bf16;

static usi_error *transpose_typed(cudaStream_t s, void *dst, int32_t dst_bf16, const void *src, int32_t src_bf16,
                                  int64_t n, int64_t c, int64_t p, int32_t to_cl, int32_t acc)
{
    if (src_bf16 && dst_bf16) return transpose<bf16, bf16>(s, dst, src, n, c, p, to_cl, acc);
    if (src_bf16) return transpose<bf16, float>(s, dst, src, n, c, p, to_cl, acc);
    if (dst_bf16) return transpose<float, bf16>(s, dst, src, n, c, p, to_cl, acc);
    return transpose<float, float>(s, dst, src, n, c, p, to_cl, acc);
}

extern "C" usi_error *usi_cuda_nchw_to_nhwc_typed(cudaStream_t s, void *dst, const void *src, int64_t n, int64_t c,
                                                  int64_t p, int32_t src_bf16)
{
    return transpose_typed(s, dst, 1, src, src_bf16, n, c, p, 1, 0);
}

extern "C" usi_error *usi_cuda_nhwc_to_nchw_typed(cudaStream_t s, void *dst, const void *src, int64_t n, int64_t c,
                                                  int64_t p, int32_t acc, int32_t dst_bf16)
{
    return transpose_typed(s, dst, dst_bf16, src, 1, n, c, p, 0, acc);
}

extern "C" usi_error *usi_cuda_repack(cudaStream_t s, void *dst, int32_t dst_fmt, const void *src, int32_t src_fmt,
                                      int64_t n, int64_t c, int64_t p, int32_t acc)
{
    int32_t db = dst_fmt & USI_CUDA_FMT_BF16, sb = src_fmt & USI_CUDA_FMT_BF16;
    if ((dst_fmt & USI_CUDA_FMT_CL) == (src_fmt & USI_CUDA_FMT_CL)) /* one layout: a cast */
        return usi_cuda_scale_typed(s, dst, src, n * c * p, 1.0f, acc, (db ? USI_CUDA_BF_OUT : 0) | (sb ? USI_CUDA_BF_IN : 0));
    return transpose_typed(s, dst, db, src, sb, n, c, p, (dst_fmt & USI_CUDA_FMT_CL) != 0, acc);
}

/* ---- a convolution's bias on results of either type and layout ---- */

// y: T [N][C][P] (or [N][P][C] with P 1: channels-last) += bias[C]
template <typename T>
__global__ void bias_nchw_forward_kernel(T *y, const float *bias, int64_t n, int64_t C, int64_t P)
{
    GRID_STRIDE(i, n) st(y, i, ld(y, i) + bias[(i / P) % C]);
}

// db[C] (+)= sum over N, P of dy: T [N][C][P]; a block per channel
template <typename T>
__global__ void bias_nchw_backward_kernel(float *db, const T *dy, int64_t N, int64_t C, int64_t P, int32_t acc)
{
    __shared__ double shared[32];
    for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
        double sum = 0;
        for (int64_t k = threadIdx.x; k < N * P; k += blockDim.x) sum += ld(dy, (k / P * C + c) * P + k % P);
        sum = block_sum_d(sum, shared);
        if (threadIdx.x == 0) db[c] = acc ? db[c] + (float)sum : (float)sum;
    }
}

// db[O] (+)= sum over rows of dy: T [M][O]; blocks of 32 columns x 8 row
// lanes, so a warp reads 32 neighbouring columns of a row
template <typename T>
__global__ void bias_rows_backward_kernel(float *db, const T *dy, int64_t M, int64_t O, int32_t acc)
{
    __shared__ double part[8][33];
    int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
    double sum = 0;
    if (c < O)
        for (int64_t m = threadIdx.y; m < M; m += 8) sum += ld(dy, m * O + c);
    part[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && c < O) {
        for (int r = 1; r < 8; r++) sum += part[r][threadIdx.x];
        db[c] = acc ? db[c] + (float)sum : (float)sum;
    }
}

/* db[C] over many rows [M][C] (a channels-last conv's output): partial
 * sums of 32 neighbouring channels per warp over S segments of rows, then
 * each channel's partials added in segment order (no atomics). */
// part: [C, S]; grid (S, ceil(C / 32)), block (32, 8)
template <typename T>
__global__ void bias_rows_partial_kernel(double *part, const T *dy, int64_t M, int64_t C, int64_t S)
{
    __shared__ double lanes[8][33];
    int64_t L = (M + S - 1) / S, r0 = (int64_t)blockIdx.x * L, r1 = r0 + L < M ? r0 + L : M;
    for (int64_t c0 = (int64_t)blockIdx.y * 32; c0 < C; c0 += (int64_t)gridDim.y * 32) {
        int64_t c = c0 + threadIdx.x;
        double acc = 0;
        if (c < C)
            for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) acc += ld(dy, r * C + c);
        double a = rows_lanes_sum(lanes, acc);
        if (threadIdx.y == 0 && c < C) part[c * S + blockIdx.x] = a;
    }
}

__global__ void bias_rows_finish_kernel(float *db, const double *part, int64_t C, int64_t S, int32_t acc)
{
    GRID_STRIDE(c, C)
    {
        double a = 0;
        for (int64_t k = 0; k < S; k++) a += part[c * S + k];
        db[c] = acc ? db[c] + (float)a : (float)a;
    }
}

extern "C" usi_error *usi_cuda_bias_rows_backward_seg(cudaStream_t s, float *db, const void *dy, int64_t m, int64_t c,
                                                      double *part, int64_t segments, int32_t acc, int32_t bf16)
{
    if (c < 1) return NULL;
    int64_t g = (c + 31) / 32;
    dim3 grid((unsigned)segments, (unsigned)(g < 65535 ? g : 65535));
    if (bf16) bias_rows_partial_kernel<<<grid, dim3(32, 8), 0, s>>>(part, (const __nv_bfloat16 *)dy, m, c, segments);
    else bias_rows_partial_kernel<<<grid, dim3(32, 8), 0, s>>>(part, (const float *)dy, m, c, segments);
    usi_error *e = usi_cuda_check_launch("bias_rows_partial", __FILE__, __LINE__);
    if (e) return e;
    bias_rows_finish_kernel<<<grid_for(c), THREADS, 0, s>>>(db, part, c, segments, acc);
    LAUNCH_CHECK("bias_rows_finish");
}

extern "C" usi_error *usi_cuda_bias_nchw_forward(cudaStream_t s, void *y, const float *bias, int64_t n, int64_t c,
                                                 int64_t p, int32_t bf16, int32_t cl)
{
    int64_t total = n * c * p;
    if (cl) { /* rows of C: as NCHW with one pixel */
        n *= p;
        p = 1;
    }
    if (bf16) bias_nchw_forward_kernel<<<grid_for(total), THREADS, 0, s>>>((__nv_bfloat16 *)y, bias, total, c, p);
    else bias_nchw_forward_kernel<<<grid_for(total), THREADS, 0, s>>>((float *)y, bias, total, c, p);
    LAUNCH_CHECK("bias_nchw_forward");
}

extern "C" usi_error *usi_cuda_bias_nchw_backward(cudaStream_t s, float *db, const void *dy, int64_t n, int64_t c,
                                                  int64_t p, int32_t acc, int32_t bf16, int32_t cl)
{
    if (cl) { /* rows of C */
        n *= p;
        p = 1;
    }
    if (p == 1) { /* rows of [n][c]: a linear's bias */
        unsigned cb = (unsigned)((c + 31) / 32);
        if (bf16) bias_rows_backward_kernel<<<cb, dim3(32, 8), 0, s>>>(db, (const __nv_bfloat16 *)dy, n, c, acc);
        else bias_rows_backward_kernel<<<cb, dim3(32, 8), 0, s>>>(db, (const float *)dy, n, c, acc);
        LAUNCH_CHECK("bias_rows_backward");
    }
    unsigned blocks = (unsigned)(c < 65535 ? c : 65535);
    if (blocks < 1) return NULL;
    if (bf16) bias_nchw_backward_kernel<<<blocks, THREADS, 0, s>>>(db, (const __nv_bfloat16 *)dy, n, c, p, acc);
    else bias_nchw_backward_kernel<<<blocks, THREADS, 0, s>>>(db, (const float *)dy, n, c, p, acc);
    LAUNCH_CHECK("bias_nchw_backward");
}
