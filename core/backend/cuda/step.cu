/* Training-step kernels over flat float blocks: the optimizers (one launch
 * over a table of chunks covering every segment), the EMA, the sum of
 * squares (a device reduction), scaling, and the teacher's input conversion.
 *
 * This file is built with --fmad=false: each multiply and add rounds on its
 * own, as in the CPU backend's loops (core/backend/cpu/step.c), so the
 * optimizer and EMA give the CPU's floats bit for bit. */
#include <math.h>

#include "backend/cuda/common.cuh"

/* ---- optimizers: a block per chunk ---- */

// w, g, m, v: flat blocks; chunk = blockIdx.x
__global__ void adamw_forward_kernel(float *w, const float *g, float *m, float *v, const usi_cuda_chunk *chunks,
                                     float b1, float b2, float eps, float decay_on, float step_size,
                                     float inv_sqrt_bc2)
{
    usi_cuda_chunk ch = chunks[blockIdx.x];
    float decay = ch.decays ? decay_on : 1.0f;
    for (int32_t k = threadIdx.x; k < ch.n; k += blockDim.x) {
        int64_t i = ch.off + k;
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        float denom = sqrtf(v[i]) * inv_sqrt_bc2 + eps;
        w[i] = w[i] * decay - step_size * m[i] / denom;
    }
}

// w, g, buf: flat blocks
__global__ void sgd_forward_kernel(float *w, const float *g, float *buf, const usi_cuda_chunk *chunks, float wd_on,
                                   float mom, float lr, int32_t first, int32_t nesterov)
{
    usi_cuda_chunk ch = chunks[blockIdx.x];
    float fwd = ch.decays ? wd_on : 0.0f;
    for (int32_t k = threadIdx.x; k < ch.n; k += blockDim.x) {
        int64_t i = ch.off + k;
        float d = g[i] + fwd * w[i];
        buf[i] = first ? d : mom * buf[i] + d;
        w[i] -= lr * (nesterov ? d + mom * buf[i] : buf[i]);
    }
}

/* LAMB's update direction, as the CPU computes it. */
static __device__ __forceinline__ float lamb_u(float m, float v, float w, double bc1, double bc2, float eps,
                                               float fwd)
{
    return (float)(m / bc1) / (sqrtf((float)(v / bc2)) + eps) + fwd * w;
}

/* Moments, and |w|^2 and |u|^2 of each segment (norms[2 seg], [2 seg + 1]). */
__global__ void lamb_moments_kernel(float *w, const float *g, float *m, float *v, const usi_cuda_chunk *chunks,
                                    double *norms, float b1, float b2, float eps, float wd_on, double bc1,
                                    double bc2)
{
    __shared__ double shared[32];
    usi_cuda_chunk ch = chunks[blockIdx.x];
    float fwd = ch.decays ? wd_on : 0.0f;
    double wn = 0, un = 0;
    for (int32_t k = threadIdx.x; k < ch.n; k += blockDim.x) {
        int64_t i = ch.off + k;
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        float u = lamb_u(m[i], v[i], w[i], bc1, bc2, eps, fwd);
        wn += (double)w[i] * w[i];
        un += (double)u * u;
    }
    wn = block_sum_d(wn, shared);
    un = block_sum_d(un, shared);
    if (threadIdx.x == 0) {
        atomicAdd(&norms[2 * ch.seg], wn);
        atomicAdd(&norms[2 * ch.seg + 1], un);
    }
}

__global__ void lamb_update_kernel(float *w, const float *m, const float *v, const usi_cuda_chunk *chunks,
                                   const double *norms, float eps, float wd_on, double bc1, double bc2, double lr)
{
    usi_cuda_chunk ch = chunks[blockIdx.x];
    float fwd = ch.decays ? wd_on : 0.0f;
    double w_norm = sqrt(norms[2 * ch.seg]), u_norm = sqrt(norms[2 * ch.seg + 1]);
    double trust = (w_norm > 0 && u_norm > 0) ? w_norm / u_norm : 1.0;
    float scale = (float)(lr * trust);
    for (int32_t k = threadIdx.x; k < ch.n; k += blockDim.x) {
        int64_t i = ch.off + k;
        float u = lamb_u(m[i], v[i], w[i], bc1, bc2, eps, fwd);
        w[i] -= scale * u;
    }
}

extern "C" usi_error *usi_cuda_adamw_forward(cudaStream_t s, float *w, const float *g, float *m, float *v,
                                             const usi_cuda_chunk *chunks, int32_t n_chunks, float b1, float b2,
                                             float eps, float decay_on, float step_size, float inv_sqrt_bc2)
{
    if (n_chunks <= 0) return NULL;
    adamw_forward_kernel<<<(unsigned)n_chunks, THREADS, 0, s>>>(w, g, m, v, chunks, b1, b2, eps, decay_on,
                                                                 step_size, inv_sqrt_bc2);
    LAUNCH_CHECK("adamw_forward");
}

extern "C" usi_error *usi_cuda_sgd_forward(cudaStream_t s, float *w, const float *g, float *buf,
                                           const usi_cuda_chunk *chunks, int32_t n_chunks, float wd_on,
                                           float momentum, float lr, int32_t first, int32_t nesterov)
{
    if (n_chunks <= 0) return NULL;
    sgd_forward_kernel<<<(unsigned)n_chunks, THREADS, 0, s>>>(w, g, buf, chunks, wd_on, momentum, lr, first,
                                                               nesterov);
    LAUNCH_CHECK("sgd_forward");
}

extern "C" usi_error *usi_cuda_lamb_forward(cudaStream_t s, float *w, const float *g, float *m, float *v,
                                            const usi_cuda_chunk *chunks, int32_t n_chunks, double *norms,
                                            int32_t n_segs, float b1, float b2, float eps, float wd_on, double bc1,
                                            double bc2, double lr)
{
    if (n_chunks <= 0) return NULL;
    cudaError_t st = cudaMemsetAsync(norms, 0, 2 * (size_t)n_segs * sizeof(double), s);
    if (st != cudaSuccess)
        return usi_error_new(USI_ERR_INTERNAL, "CUDA: cudaMemsetAsync(norms) failed: %s (%s:%d)",
                             cudaGetErrorString(st), __FILE__, __LINE__);
    lamb_moments_kernel<<<(unsigned)n_chunks, THREADS, 0, s>>>(w, g, m, v, chunks, norms, b1, b2, eps, wd_on, bc1,
                                                                bc2);
    usi_error *e = usi_cuda_check_launch("lamb_moments", __FILE__, __LINE__);
    if (e) return e;
    lamb_update_kernel<<<(unsigned)n_chunks, THREADS, 0, s>>>(w, m, v, chunks, norms, eps, wd_on, bc1, bc2, lr);
    LAUNCH_CHECK("lamb_update");
}

/* ---- EMA, sum of squares, scale ---- */

// ema, w: [n]
__global__ void ema_forward_kernel(float *ema, const float *w, int64_t n, float decay, float one_minus)
{
    GRID_STRIDE(i, n) ema[i] = decay * ema[i] + one_minus * w[i];
}

// partials: [gridDim.x]
__global__ void sum_squares_partial_kernel(const float *x, int64_t n, double *partials)
{
    __shared__ double shared[32];
    double s = 0;
    GRID_STRIDE(i, n) s += (double)x[i] * x[i];
    s = block_sum_d(s, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ void sum_squares_final_kernel(const double *partials, int32_t n, double *out)
{
    __shared__ double shared[32];
    double s = 0;
    for (int32_t i = threadIdx.x; i < n; i += blockDim.x) s += partials[i];
    s = block_sum_d(s, shared);
    if (threadIdx.x == 0) *out = s;
}

// x: [n]
__global__ void scale_inplace_kernel(float *x, int64_t n, float factor)
{
    GRID_STRIDE(i, n) x[i] *= factor;
}

extern "C" usi_error *usi_cuda_ema_forward(cudaStream_t s, float *ema, const float *w, size_t n, float decay,
                                           float one_minus)
{
    ema_forward_kernel<<<grid_for((int64_t)n), THREADS, 0, s>>>(ema, w, (int64_t)n, decay, one_minus);
    LAUNCH_CHECK("ema_forward");
}

extern "C" usi_error *usi_cuda_sum_squares_forward(cudaStream_t s, const float *x, size_t n, double *partials,
                                                   int32_t n_partials, double *out)
{
    int64_t blocks = ((int64_t)n + THREADS * 4 - 1) / (THREADS * 4);
    if (blocks > n_partials) blocks = n_partials;
    if (blocks < 1) blocks = 1;
    sum_squares_partial_kernel<<<(unsigned)blocks, THREADS, 0, s>>>(x, (int64_t)n, partials);
    usi_error *e = usi_cuda_check_launch("sum_squares_partial", __FILE__, __LINE__);
    if (e) return e;
    sum_squares_final_kernel<<<1, 1024, 0, s>>>(partials, (int32_t)blocks, out);
    LAUNCH_CHECK("sum_squares_final");
}

extern "C" usi_error *usi_cuda_scale_inplace(cudaStream_t s, float *x, size_t n, float factor)
{
    scale_inplace_kernel<<<grid_for((int64_t)n), THREADS, 0, s>>>(x, (int64_t)n, factor);
    LAUNCH_CHECK("scale_inplace");
}

/* ---- the teacher's input conversion ---- */

typedef struct affine {
    float a[USI_CUDA_CONVERT_MAX_C], b[USI_CUDA_CONVERT_MAX_C];
} affine;

/* One output coordinate's source taps along an axis of `size` pixels, as
 * the CPU's axis_taps: PyTorch's F.interpolate with align_corners=False, no
 * antialias; interp 0 nearest, 1 bilinear, 2 bicubic (A = -0.75). */
struct taps {
    int32_t i[4];
    float w[4];
    int n;
};

static __device__ __forceinline__ taps axis_taps(int32_t o, float ratio, int32_t size, int32_t interp)
{
    taps t = {};
    if (interp == 0) {
        int32_t i = (int32_t)floorf((float)o * ratio);
        t.i[0] = i < size ? i : size - 1;
        t.w[0] = 1;
        t.n = 1;
        return t;
    }
    float f = ((float)o + 0.5f) * ratio - 0.5f;
    if (interp == 1) {
        if (f < 0) f = 0;
        int32_t i0 = (int32_t)f;
        t.i[0] = i0;
        t.i[1] = i0 + 1 < size ? i0 + 1 : size - 1;
        t.w[1] = f - (float)i0;
        t.w[0] = 1 - t.w[1];
        t.n = 2;
        return t;
    }
    const float A = -0.75f;
    int32_t i0 = (int32_t)floorf(f);
    float x = f - (float)i0, x1 = x + 1, y = 1 - x, y1 = y + 1;
    t.w[0] = ((A * x1 - 5 * A) * x1 + 8 * A) * x1 - 4 * A;
    t.w[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    t.w[2] = ((A + 2) * y - (A + 3)) * y * y + 1;
    t.w[3] = ((A * y1 - 5 * A) * y1 + 8 * A) * y1 - 4 * A;
    for (int k = 0; k < 4; k++) {
        int32_t i = i0 - 1 + k;
        t.i[k] = i < 0 ? 0 : i >= size ? size - 1 : i;
    }
    t.n = 4;
    return t;
}

// dst: [n, c, oh, ow], src: [n, c, h, w]
__global__ void image_convert_kernel(float *dst, const float *src, int32_t n, int32_t c, int32_t h, int32_t w,
                                     int32_t oh, int32_t ow, int32_t interp, const affine k)
{
    float sy = (float)h / (float)oh, sx = (float)w / (float)ow;
    GRID_STRIDE(idx, (int64_t)n * c * oh * ow)
    {
        int32_t x = (int32_t)(idx % ow), y = (int32_t)(idx / ow % oh);
        int64_t p = idx / ((int64_t)oh * ow);
        const float *in = src + p * h * w;
        float ka = k.a[p % c], kb = k.b[p % c];
        if (oh == h && ow == w) {
            dst[idx] = in[y * w + x] * ka + kb;
            continue;
        }
        taps ty = axis_taps(y, sy, h, interp), tx = axis_taps(x, sx, w, interp);
        float acc = 0;
        for (int j = 0; j < ty.n; j++) {
            float row = 0;
            for (int q = 0; q < tx.n; q++) row += tx.w[q] * in[(int64_t)ty.i[j] * w + tx.i[q]];
            acc += ty.w[j] * row;
        }
        dst[idx] = acc * ka + kb;
    }
}

extern "C" usi_error *usi_cuda_image_convert_forward(cudaStream_t s, float *dst, const float *src, int32_t n,
                                                     int32_t c, int32_t h, int32_t w, int32_t oh, int32_t ow,
                                                     int32_t interp, const float *a, const float *b)
{
    if (c < 1 || c > USI_CUDA_CONVERT_MAX_C)
        return usi_error_new(USI_ERR_UNSUPPORTED, "image conversion: %d channels (at most %d on CUDA)", c,
                             USI_CUDA_CONVERT_MAX_C);
    affine k = {};
    for (int32_t i = 0; i < c; i++) {
        k.a[i] = a[i];
        k.b[i] = b[i];
    }
    image_convert_kernel<<<grid_for((int64_t)n * c * oh * ow), THREADS, 0, s>>>(dst, src, n, c, h, w, oh, ow,
                                                                                  interp, k);
    LAUNCH_CHECK("image_convert");
}

// dst: [n, 3, h, w], src: uint8 [n, h, w, 3]; the divisions round as the
// CPU's do (no fast math here), so the floats are the loader's
__global__ void u8_normalize_kernel(float *dst, const uint8_t *src, int32_t n, int64_t plane, const affine k)
{
    GRID_STRIDE(idx, (int64_t)n * 3 * plane)
    {
        int64_t p = idx % plane, i = idx / plane;
        int32_t c = (int32_t)(i % 3);
        uint8_t v = src[(i / 3 * plane + p) * 3 + c];
        dst[idx] = ((float)v / 255.0f - k.a[c]) / k.b[c];
    }
}

extern "C" usi_error *usi_cuda_u8_normalize_forward(cudaStream_t s, float *dst, const uint8_t *src, int32_t n,
                                                    int32_t h, int32_t w, const float *mean, const float *std)
{
    affine k = {};
    for (int32_t c = 0; c < 3; c++) {
        k.a[c] = mean[c];
        k.b[c] = std[c];
    }
    int64_t plane = (int64_t)h * w;
    u8_normalize_kernel<<<grid_for((int64_t)n * 3 * plane), THREADS, 0, s>>>(dst, src, n, plane, k);
    LAUNCH_CHECK("u8_normalize");
}
