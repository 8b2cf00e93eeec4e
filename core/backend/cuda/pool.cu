/* Max and average pooling over H, W of NCHW or channels-last values with the
 * CPU backend's window rules (core/backend/cpu/pool.c: ceil-mode overhang,
 * count_include_pad). One thread per element in memory order, so in
 * channels-last neighbouring threads read neighbouring channels.
 * Backward gathers: each input element sums over the windows that hold it,
 * so there are no atomics and the result is deterministic. Max backward
 * first writes each window's first maximum (its position in the plane) to
 * scratch, one thread per window, so the gather compares positions instead
 * of searching every window again for each of its elements. */
#include <float.h>

#include "backend/cuda/common.cuh"

typedef struct window {
    int64_t h0, h1, w0, w1; /* clipped to the input */
    int64_t divisor;        /* for the average      */
} window;

static __device__ __forceinline__ window window_at(const usi_cuda_pool &d, int64_t oh, int64_t ow)
{
    window w;
    int64_t h0 = oh * d.sh - d.ph, w0 = ow * d.sw - d.pw;
    int64_t h1 = h0 + d.kh, w1 = w0 + d.kw;
    if (h1 > d.H + d.ph) h1 = d.H + d.ph;
    if (w1 > d.W + d.pw) w1 = d.W + d.pw;
    int64_t padded = (h1 - h0) * (w1 - w0);
    w.h0 = h0 < 0 ? 0 : h0;
    w.w0 = w0 < 0 ? 0 : w0;
    w.h1 = h1 > d.H ? d.H : h1;
    w.w1 = w1 > d.W ? d.W : w1;
    w.divisor = d.count_pad ? padded : (w.h1 - w.h0) * (w.w1 - w.w0);
    return w;
}

/* Position in the plane (h * W + w) of the window's first maximum (-1 when
 * empty), in the CPU's scan order; xp: the plane's first element, its
 * positions step apart. */
template <typename T>
static __device__ __forceinline__ int64_t window_argmax(const T *xp, int64_t step, const usi_cuda_pool &d,
                                                        const window &w)
{
    int64_t best = -1;
    float m = -FLT_MAX;
    for (int64_t h = w.h0; h < w.h1; h++)
        for (int64_t v = w.w0; v < w.w1; v++) {
            float e = ld(xp, (h * d.W + v) * step);
            if (best < 0 || e > m) {
                m = e;
                best = h * d.W + v;
            }
        }
    return best;
}

// out: [P, OH, OW], x: [P, H, W], both of T, both NCHW or both channels-last
template <typename T>
__global__ void pool2d_forward_kernel(T *out, const T *x, const usi_cuda_pool d)
{
    const int64_t step = usi_cuda_pool_step(&d);
    GRID_STRIDE(k, d.planes * d.OH * d.OW)
    {
        int64_t q, p = usi_cuda_pool_plane(&d, k, d.OH * d.OW, &q);
        const T *xp = x + usi_cuda_pool_at(&d, p, d.H * d.W);
        window w = window_at(d, q / d.OW, q % d.OW);
        float m = -FLT_MAX, s = 0;
        for (int64_t h = w.h0; h < w.h1; h++)
            for (int64_t v = w.w0; v < w.w1; v++) {
                float e = ld(xp, (h * d.W + v) * step);
                if (e > m) m = e;
                s += e;
            }
        st(out, k, d.is_max ? m : (w.divisor > 0 ? s / (float)w.divisor : 0.0f));
    }
}

// idx: [P, OH, OW] in out's memory order (position in the plane, -1 for an
// empty window), x: [P, H, W] of T
template <typename T>
__global__ void pool2d_argmax_kernel(int32_t *idx, const T *x, const usi_cuda_pool d)
{
    const int64_t step = usi_cuda_pool_step(&d);
    GRID_STRIDE(k, d.planes * d.OH * d.OW)
    {
        int64_t q, p = usi_cuda_pool_plane(&d, k, d.OH * d.OW, &q);
        window w = window_at(d, q / d.OW, q % d.OW);
        idx[k] = (int32_t)window_argmax(x + usi_cuda_pool_at(&d, p, d.H * d.W), step, d, w);
    }
}

// dx: [P, H, W], dout: [P, OH, OW]; max: idx [P, OH, OW] from
// pool2d_argmax_kernel, or (idx NULL) x: [P, H, W] to search again; all of T
template <typename T>
__global__ void pool2d_backward_kernel(T *dx, const T *dout, const T *x, const int32_t *idx,
                                       const usi_cuda_pool d, int32_t acc)
{
    const int64_t step = usi_cuda_pool_step(&d);
    GRID_STRIDE(k, d.planes * d.H * d.W)
    {
        int64_t self, p = usi_cuda_pool_plane(&d, k, d.H * d.W, &self);
        int64_t wi = self % d.W, hi = self / d.W;
        /* windows oh with oh*sh - ph <= hi < oh*sh - ph + kh */
        int64_t lo_h = hi + d.ph - d.kh + 1, lo_w = wi + d.pw - d.kw + 1;
        int64_t oh0 = lo_h <= 0 ? 0 : (lo_h + d.sh - 1) / d.sh, oh1 = (hi + d.ph) / d.sh;
        int64_t ow0 = lo_w <= 0 ? 0 : (lo_w + d.sw - 1) / d.sw, ow1 = (wi + d.pw) / d.sw;
        if (oh1 > d.OH - 1) oh1 = d.OH - 1;
        if (ow1 > d.OW - 1) ow1 = d.OW - 1;
        const int64_t at = usi_cuda_pool_at(&d, p, d.OH * d.OW);
        const T *gp = dout + at;
        const T *xp = d.is_max && x ? x + usi_cuda_pool_at(&d, p, d.H * d.W) : NULL;
        const int32_t *ip = d.is_max && idx ? idx + at : NULL;
        float sum = 0;
        for (int64_t oh = oh0; oh <= oh1; oh++)
            for (int64_t ow = ow0; ow <= ow1; ow++) {
                const int64_t o = (oh * d.OW + ow) * step;
                if (ip) {
                    if (ip[o] == self) sum += ld(gp, o);
                    continue;
                }
                window w = window_at(d, oh, ow);
                if (hi < w.h0 || hi >= w.h1 || wi < w.w0 || wi >= w.w1) continue;
                float g = ld(gp, o);
                if (d.is_max) {
                    if (window_argmax(xp, step, d, w) == self) sum += g;
                } else if (w.divisor > 0) {
                    sum += g / (float)w.divisor;
                }
            }
        st(dx, k, acc ? ld(dx, k) + sum : sum);
    }
}

template <typename T>
static usi_error *pool_forward(cudaStream_t s, void *out, const void *x, const usi_cuda_pool *d)
{
    pool2d_forward_kernel<T><<<grid_for(d->planes * d->OH * d->OW), THREADS, 0, s>>>((T *)out, (const T *)x, *d);
    LAUNCH_CHECK("pool2d_forward");
}

template <typename T>
static usi_error *pool_backward(cudaStream_t s, void *dx, const void *dout, const void *x, int32_t *idx,
                                const usi_cuda_pool *d, int32_t acc)
{
    if (d->is_max && idx) {
        pool2d_argmax_kernel<T><<<grid_for(d->planes * d->OH * d->OW), THREADS, 0, s>>>(idx, (const T *)x, *d);
        usi_error *e = usi_cuda_check_launch("pool2d_argmax", __FILE__, __LINE__);
        if (e) return e;
    }
    pool2d_backward_kernel<T><<<grid_for(d->planes * d->H * d->W), THREADS, 0, s>>>(
        (T *)dx, (const T *)dout, (const T *)x, idx, *d, acc);
    LAUNCH_CHECK("pool2d_backward");
}

extern "C" usi_error *usi_cuda_pool2d_forward(cudaStream_t s, void *out, const void *x, const usi_cuda_pool *d,
                                              int32_t bf16)
{
    return bf16 ? pool_forward<__nv_bfloat16>(s, out, x, d) : pool_forward<float>(s, out, x, d);
}

extern "C" usi_error *usi_cuda_pool2d_backward(cudaStream_t s, void *dx, const void *dout, const void *x,
                                               int32_t *idx, const usi_cuda_pool *d, int32_t acc, int32_t bf16)
{
    return bf16 ? pool_backward<__nv_bfloat16>(s, dx, dout, x, idx, d, acc)
                : pool_backward<float>(s, dx, dout, x, idx, d, acc);
}
