/* Data movement: permute, block copies (concat), slice, pad and
 * space_to_depth, each with its backward as the transpose of the forward's
 * index map (core/backend/cpu/shape.c). Backward kernels gather or write a
 * bijection, so none needs atomics or a cleared gradient first. */
#include "backend/cuda/common.cuh"

/* ---- permute ---- */

static __device__ __forceinline__ int64_t permute_src(const usi_cuda_perm &p, int64_t k)
{
    int64_t off = 0;
    for (int32_t d = p.ndim - 1; d >= 0; d--) {
        off += (k % p.oshape[d]) * p.istride[d];
        k /= p.oshape[d];
    }
    return off;
}

// out: [n] in the output's order, x: the input; both of T
template <typename T>
__global__ void permute_forward_kernel(T *out, const T *x, const usi_cuda_perm p, int64_t n)
{
    GRID_STRIDE(k, n) out[k] = x[permute_src(p, k)];
}

template <typename T>
__global__ void permute_backward_kernel(T *dx, const T *dy, const usi_cuda_perm p, int64_t n, int32_t acc)
{
    GRID_STRIDE(k, n)
    {
        int64_t i = permute_src(p, k);
        st(dx, i, acc ? ld(dx, i) + ld(dy, k) : ld(dy, k));
    }
}

extern "C" usi_error *usi_cuda_permute_forward(cudaStream_t s, void *out, const void *x, const usi_cuda_perm *p,
                                               int64_t n, int32_t bf16)
{
    if (bf16)
        permute_forward_kernel<<<grid_for(n), THREADS, 0, s>>>((__nv_bfloat16 *)out, (const __nv_bfloat16 *)x, *p,
                                                               n);
    else
        permute_forward_kernel<<<grid_for(n), THREADS, 0, s>>>((float *)out, (const float *)x, *p, n);
    LAUNCH_CHECK("permute_forward");
}

extern "C" usi_error *usi_cuda_permute_backward(cudaStream_t s, void *dx, const void *dy, const usi_cuda_perm *p,
                                                int64_t n, int32_t acc, int32_t bf16)
{
    if (bf16)
        permute_backward_kernel<<<grid_for(n), THREADS, 0, s>>>((__nv_bfloat16 *)dx, (const __nv_bfloat16 *)dy, *p,
                                                                n, acc);
    else
        permute_backward_kernel<<<grid_for(n), THREADS, 0, s>>>((float *)dx, (const float *)dy, *p, n, acc);
    LAUNCH_CHECK("permute_backward");
}

/* ---- block copies ---- */

// dst: [rows, dst_row] (first width used), src: [rows, src_row]; both of T
template <typename T>
__global__ void copy_rows_kernel(T *dst, int64_t dst_row, const T *src, int64_t src_row, int64_t rows,
                                 int64_t width, int32_t acc)
{
    GRID_STRIDE(k, rows * width)
    {
        int64_t r = k / width, j = k % width;
        float v = ld(src, r * src_row + j);
        int64_t d = r * dst_row + j;
        st(dst, d, acc ? ld(dst, d) + v : v);
    }
}

/* ---- slice ---- */

// out: [O, len, I], x: [O, D, I]; both of T
template <typename T>
__global__ void slice_forward_kernel(T *out, const T *x, int64_t O, int64_t len, int64_t I, int64_t D, int64_t start,
                                     int64_t step)
{
    GRID_STRIDE(k, O * len * I)
    {
        int64_t i = k % I, j = k / I % len, o = k / (I * len);
        out[k] = x[(o * D + start + j * step) * I + i];
    }
}

// dx: [O, D, I], dy: [O, len, I]; both of T
template <typename T>
__global__ void slice_backward_kernel(T *dx, const T *dy, int64_t O, int64_t len, int64_t I, int64_t D,
                                      int64_t start, int64_t step, int32_t acc)
{
    GRID_STRIDE(k, O * D * I)
    {
        int64_t i = k % I, d = k / I % D, o = k / (I * D);
        int64_t rel = d - start, j = rel / step;
        float v = rel >= 0 && rel % step == 0 && j < len ? ld(dy, (o * len + j) * I + i) : 0.0f;
        st(dx, k, acc ? ld(dx, k) + v : v);
    }
}

/* ---- pad ---- */

// out: [oshape], x: [ishape] placed at `before`; both of T
template <typename T>
__global__ void pad_forward_kernel(T *out, const T *x, const usi_cuda_pad p, int64_t n_out, float value)
{
    GRID_STRIDE(k, n_out)
    {
        int64_t rem = k, off = 0, st_ = 1;
        int inside = 1;
        for (int32_t d = p.ndim - 1; d >= 0; d--) {
            int64_t i = rem % p.oshape[d] - p.before[d];
            rem /= p.oshape[d];
            if (i < 0 || i >= p.ishape[d]) inside = 0;
            off += i * st_;
            st_ *= p.ishape[d];
        }
        st(out, k, inside ? ld(x, off) : value);
    }
}

// dx: [ishape], dy: [oshape]; both of T
template <typename T>
__global__ void pad_backward_kernel(T *dx, const T *dy, const usi_cuda_pad p, int64_t n_in, int32_t acc)
{
    GRID_STRIDE(k, n_in)
    {
        int64_t rem = k, off = 0, st_ = 1;
        for (int32_t d = p.ndim - 1; d >= 0; d--) {
            int64_t i = rem % p.ishape[d] + p.before[d];
            rem /= p.ishape[d];
            off += i * st_;
            st_ *= p.oshape[d];
        }
        st(dx, k, acc ? ld(dx, k) + ld(dy, off) : ld(dy, off));
    }
}

/* ---- space_to_depth ---- */

/* Input index of output element k: out[n, (br*b + bc)*C + c, h, w] =
 * x[n, c, h*b + br, w*b + bc]. */
static __device__ __forceinline__ int64_t s2d_src(int64_t k, int64_t C, int64_t H, int64_t W, int64_t b)
{
    int64_t OH = H / b, OW = W / b;
    int64_t w = k % OW, h = k / OW % OH, oc = k / (OW * OH) % (C * b * b), n = k / (OW * OH * C * b * b);
    int64_t c = oc % C, bc = oc / C % b, br = oc / C / b;
    return ((n * C + c) * H + h * b + br) * W + w * b + bc;
}

template <typename T>
__global__ void space_to_depth_forward_kernel(T *out, const T *x, int64_t N, int64_t C, int64_t H, int64_t W,
                                              int64_t b)
{
    GRID_STRIDE(k, N * C * (H / b) * (W / b) * b * b) out[k] = x[s2d_src(k, C, H, W, b)];
}

template <typename T>
__global__ void space_to_depth_backward_kernel(T *dx, const T *dy, int64_t N, int64_t C, int64_t H, int64_t W,
                                               int64_t b, int32_t acc)
{
    GRID_STRIDE(k, N * C * (H / b) * (W / b) * b * b)
    {
        int64_t i = s2d_src(k, C, H, W, b);
        st(dx, i, acc ? ld(dx, i) + ld(dy, k) : ld(dy, k));
    }
}

/* ---- launchers: float, or bf16 (activations kept so) where bf16 is 1 ---- */

typedef __nv_bfloat16 bf16_t;
#define BOTH(bf, launch) (bf) ? launch(bf16_t) : launch(float)

extern "C" usi_error *usi_cuda_copy_rows(cudaStream_t s, void *dst, int64_t dst_row, const void *src,
                                         int64_t src_row, int64_t rows, int64_t width, int32_t acc, int32_t bf16)
{
#define L(T) copy_rows_kernel<T><<<grid_for(rows * width), THREADS, 0, s>>>((T *)dst, dst_row, (const T *)src, \
                                                                             src_row, rows, width, acc)
    BOTH(bf16, L);
#undef L
    LAUNCH_CHECK("copy_rows");
}

extern "C" usi_error *usi_cuda_slice_forward(cudaStream_t s, void *out, const void *x, int64_t O, int64_t len,
                                             int64_t I, int64_t D, int64_t start, int64_t step, int32_t bf16)
{
#define L(T) slice_forward_kernel<T><<<grid_for(O * len * I), THREADS, 0, s>>>((T *)out, (const T *)x, O, len, I, D, \
                                                                               start, step)
    BOTH(bf16, L);
#undef L
    LAUNCH_CHECK("slice_forward");
}

extern "C" usi_error *usi_cuda_slice_backward(cudaStream_t s, void *dx, const void *dy, int64_t O, int64_t len,
                                              int64_t I, int64_t D, int64_t start, int64_t step, int32_t acc,
                                              int32_t bf16)
{
#define L(T) slice_backward_kernel<T><<<grid_for(O * D * I), THREADS, 0, s>>>((T *)dx, (const T *)dy, O, len, I, D, \
                                                                              start, step, acc)
    BOTH(bf16, L);
#undef L
    LAUNCH_CHECK("slice_backward");
}

extern "C" usi_error *usi_cuda_pad_forward(cudaStream_t s, void *out, const void *x, const usi_cuda_pad *p,
                                           int64_t n_out, float value, int32_t bf16)
{
#define L(T) pad_forward_kernel<T><<<grid_for(n_out), THREADS, 0, s>>>((T *)out, (const T *)x, *p, n_out, value)
    BOTH(bf16, L);
#undef L
    LAUNCH_CHECK("pad_forward");
}

extern "C" usi_error *usi_cuda_pad_backward(cudaStream_t s, void *dx, const void *dy, const usi_cuda_pad *p,
                                            int64_t n_in, int32_t acc, int32_t bf16)
{
#define L(T) pad_backward_kernel<T><<<grid_for(n_in), THREADS, 0, s>>>((T *)dx, (const T *)dy, *p, n_in, acc)
    BOTH(bf16, L);
#undef L
    LAUNCH_CHECK("pad_backward");
}

extern "C" usi_error *usi_cuda_space_to_depth_forward(cudaStream_t s, void *out, const void *x, int64_t N,
                                                      int64_t C, int64_t H, int64_t W, int64_t block, int32_t bf16)
{
    int64_t n = N * C * (H / block) * (W / block) * block * block;
#define L(T) space_to_depth_forward_kernel<T><<<grid_for(n), THREADS, 0, s>>>((T *)out, (const T *)x, N, C, H, W, block)
    BOTH(bf16, L);
#undef L
    LAUNCH_CHECK("space_to_depth_forward");
}

extern "C" usi_error *usi_cuda_space_to_depth_backward(cudaStream_t s, void *dx, const void *dy, int64_t N,
                                                       int64_t C, int64_t H, int64_t W, int64_t block, int32_t acc,
                                                       int32_t bf16)
{
    int64_t n = N * C * (H / block) * (W / block) * block * block;
#define L(T) space_to_depth_backward_kernel<T><<<grid_for(n), THREADS, 0, s>>>((T *)dx, (const T *)dy, N, C, H, W, \
                                                                                block, acc)
    BOTH(bf16, L);
#undef L
    LAUNCH_CHECK("space_to_depth_backward");
}
