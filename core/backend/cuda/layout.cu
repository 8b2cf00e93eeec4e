/* Layout changes with a cast, for convolutions under precision "mixed":
 * cuDNN's tensor-core kernels want channels last, the graph keeps NCHW
 * fp32. Each is a tiled transpose of [N][C][P] <-> [N][P][C] (P = H*W, or
 * KH*KW for filters) through shared memory, so both the reads and the
 * writes are coalesced. */
#include <cuda_bf16.h>

#include "backend/cuda/common.cuh"

#define TILE 32
#define ROWS 8 /* threads per tile column: each thread moves TILE / ROWS */

// dst: bf16 [N][P][C], src: fp32 [N][C][P]; grid (P/TILE, C/TILE, N)
__global__ void nchw_to_nhwc_bf16_kernel(__nv_bfloat16 *dst, const float *src, int32_t C, int32_t P)
{
    __shared__ float tile[TILE][TILE + 1];
    size_t base = (size_t)blockIdx.z * C * P;
    int32_t p0 = blockIdx.x * TILE, c0 = blockIdx.y * TILE;
    for (int32_t j = threadIdx.y; j < TILE; j += ROWS) {
        int32_t c = c0 + j, p = p0 + threadIdx.x;
        if (c < C && p < P) tile[j][threadIdx.x] = src[base + (size_t)c * P + p];
    }
    __syncthreads();
    for (int32_t j = threadIdx.y; j < TILE; j += ROWS) {
        int32_t p = p0 + j, c = c0 + threadIdx.x;
        if (c < C && p < P) dst[base + (size_t)p * C + c] = __float2bfloat16_rn(tile[threadIdx.x][j]);
    }
}

// dst: fp32 [N][C][P] (+)=, src: bf16 [N][P][C]; grid (P/TILE, C/TILE, N)
__global__ void nhwc_bf16_to_nchw_kernel(float *dst, const __nv_bfloat16 *src, int32_t C, int32_t P, int32_t acc)
{
    __shared__ float tile[TILE][TILE + 1];
    size_t base = (size_t)blockIdx.z * C * P;
    int32_t p0 = blockIdx.x * TILE, c0 = blockIdx.y * TILE;
    for (int32_t j = threadIdx.y; j < TILE; j += ROWS) {
        int32_t p = p0 + j, c = c0 + threadIdx.x;
        if (c < C && p < P) tile[j][threadIdx.x] = __bfloat162float(src[base + (size_t)p * C + c]);
    }
    __syncthreads();
    for (int32_t j = threadIdx.y; j < TILE; j += ROWS) {
        int32_t c = c0 + j, p = p0 + threadIdx.x;
        if (c < C && p < P) {
            float v = tile[threadIdx.x][j];
            size_t at = base + (size_t)c * P + p;
            dst[at] = acc ? dst[at] + v : v;
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

extern "C" usi_error *usi_cuda_nchw_to_nhwc_bf16(cudaStream_t s, void *dst, const float *src, int64_t n, int64_t c,
                                                 int64_t p)
{
    usi_error *e = check_dims(c, p);
    if (e || n < 1 || c < 1 || p < 1) return e;
    for (int64_t i = 0; i < n; i += MAX_Z) {
        int64_t k = n - i < MAX_Z ? n - i : MAX_Z;
        dim3 g((unsigned)((p + TILE - 1) / TILE), (unsigned)((c + TILE - 1) / TILE), (unsigned)k);
        nchw_to_nhwc_bf16_kernel<<<g, dim3(TILE, ROWS), 0, s>>>((__nv_bfloat16 *)dst + i * c * p, src + i * c * p,
                                                                (int32_t)c, (int32_t)p);
    }
    LAUNCH_CHECK("nchw_to_nhwc_bf16");
}

extern "C" usi_error *usi_cuda_nhwc_bf16_to_nchw(cudaStream_t s, float *dst, const void *src, int64_t n, int64_t c,
                                                 int64_t p, int32_t acc)
{
    usi_error *e = check_dims(c, p);
    if (e || n < 1 || c < 1 || p < 1) return e;
    for (int64_t i = 0; i < n; i += MAX_Z) {
        int64_t k = n - i < MAX_Z ? n - i : MAX_Z;
        dim3 g((unsigned)((p + TILE - 1) / TILE), (unsigned)((c + TILE - 1) / TILE), (unsigned)k);
        nhwc_bf16_to_nchw_kernel<<<g, dim3(TILE, ROWS), 0, s>>>(dst + i * c * p,
                                                                (const __nv_bfloat16 *)src + i * c * p, (int32_t)c,
                                                                (int32_t)p, acc);
    }
    LAUNCH_CHECK("nhwc_bf16_to_nchw");
}
