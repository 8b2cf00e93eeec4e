/* Shared by the backend's .cu files: launch shapes, the launch check,
 * warp/block reductions and element loads and stores. Kernels are CUDA C++
 * kept C-like: no STL, extern "C" launchers; the one use of templates is
 * the element type of a kernel's tensors (float, or __nv_bfloat16 for
 * activations kept as bf16), read and written through ld() and st(), so
 * one kernel text serves both and always computes in fp32. */
#ifndef USI_CORE_BACKEND_CUDA_COMMON_CUH
#define USI_CORE_BACKEND_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "backend/cuda/kernels.h"

#define THREADS 256

/* Enough blocks of THREADS for n elements, capped: kernels loop grid-stride. */
static inline unsigned grid_for(int64_t n)
{
    int64_t b = (n + THREADS - 1) / THREADS;
    if (b < 1) b = 1;
    if (b > (1 << 20)) b = 1 << 20;
    return (unsigned)b;
}

#define GRID_STRIDE(i, n)                                                                     \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                \
         i += (int64_t)gridDim.x * blockDim.x)

/* After a launch: its configuration error, if any, with this file and line. */
#define LAUNCH_CHECK(name) return usi_cuda_check_launch(name, __FILE__, __LINE__)

/* Element i of a float or bf16 tensor, as float; and back, rounded to
 * nearest even for bf16. */
static __device__ __forceinline__ float ld(const float *p, int64_t i) { return p[i]; }
static __device__ __forceinline__ float ld(const __nv_bfloat16 *p, int64_t i) { return __bfloat162float(p[i]); }
static __device__ __forceinline__ void st(float *p, int64_t i, float v) { p[i] = v; }
static __device__ __forceinline__ void st(__nv_bfloat16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

static __device__ __forceinline__ float warp_sum_f(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ double warp_sum_d(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max_f(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread
 * gets the result. shared: 32 doubles. */
static __device__ __forceinline__ double block_sum_d(double v, double *shared)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads(); /* shared may still be read from a previous call */
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < warps ? shared[lane] : 0.0;
    return warp_sum_d(v);
}

/* For blocks of 32 x 8 threads walking rows of channels (a lane per
 * channel, threadIdx.y a row lane): acc summed over the 8 row lanes of its
 * channel, in order; row lane 0 gets the sum, the others 0. Every thread of
 * the block calls it. lanes: 8 x 33 doubles of shared memory. */
static __device__ __forceinline__ double rows_lanes_sum(double (*lanes)[33], double acc)
{
    lanes[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    double a = 0;
    if (threadIdx.y == 0)
        for (int r = 0; r < 8; r++) a += lanes[r][threadIdx.x];
    __syncthreads(); /* lanes is written again by the next call */
    return a;
}

#endif
