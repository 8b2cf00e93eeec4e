/* Element-wise kernels: activations, scale, bf16 copies, broadcast binary
 * ops, dropout and drop-path. Activations, scale and binary ops read and
 * write float or bf16 tensors (common.cuh's ld, st), computing in fp32. The formulas are the CPU backend's (core/backend/cpu/act.c,
 * binary.c, dropout.c); the dropout masks are its masks bit for bit. */
#include <cuda_bf16.h>

#include "backend/cuda/common.cuh"

/* ---- activations ---- */

#define LOG_MIN 1e-30f
#define SQRT1_2 0.70710678118654752f
#define GELU_K 0.79788456080286536f /* sqrt(2/pi) */

/* USI_ACT_* values (sdk/include/usi/plugin.h) */
enum { RELU, RELU6, LEAKY_RELU, GELU, GELU_TANH, SILU, HARDSWISH, HARDSIGMOID, SIGMOID, TANH, LOG };

static __device__ __forceinline__ float act_value(int32_t kind, float alpha, float x)
{
    switch (kind) {
    case RELU: return x > 0 ? x : 0.0f;
    case RELU6: return x < 0 ? 0.0f : x > 6 ? 6.0f : x;
    case LEAKY_RELU: return x > 0 ? x : alpha * x;
    case GELU: return 0.5f * x * (1.0f + erff(x * SQRT1_2));
    case GELU_TANH: return 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
    case SILU: return x / (1.0f + expf(-x));
    case HARDSWISH: return x <= -3 ? 0.0f : x >= 3 ? x : x * (x + 3) / 6;
    case HARDSIGMOID: return x <= -3 ? 0.0f : x >= 3 ? 1.0f : (x + 3) / 6;
    case SIGMOID: return 1.0f / (1.0f + expf(-x));
    case LOG: return logf(x > LOG_MIN ? x : LOG_MIN);
    default: return tanhf(x);
    }
}

/* d act / dx at input x, or from output y for the output-based ones */
static __device__ __forceinline__ float act_grad(int32_t kind, float alpha, float x, float y)
{
    switch (kind) {
    case RELU: return y > 0 ? 1.0f : 0.0f;
    case RELU6: return y > 0 && y < 6 ? 1.0f : 0.0f;
    case LEAKY_RELU: return alpha > 0 ? (y > 0 ? 1.0f : alpha) : (x > 0 ? 1.0f : alpha);
    case GELU: return 0.5f * (1.0f + erff(x * SQRT1_2)) + x * expf(-0.5f * x * x) * 0.39894228040143268f;
    case GELU_TANH: {
        float th = tanhf(GELU_K * (x + 0.044715f * x * x * x));
        return 0.5f * (1 + th) + 0.5f * x * (1 - th * th) * GELU_K * (1 + 3 * 0.044715f * x * x);
    }
    case SILU: {
        float s = 1.0f / (1.0f + expf(-x));
        return s * (1 + x * (1 - s));
    }
    case HARDSWISH: return x < -3 ? 0.0f : x > 3 ? 1.0f : (2 * x + 3) / 6;
    case HARDSIGMOID: return y > 0 && y < 1 ? 1.0f / 6 : 0.0f;
    case SIGMOID: return y * (1 - y);
    case LOG: return x > LOG_MIN ? 1.0f / x : 0.0f;
    default: return 1 - y * y;
    }
}

typedef __nv_bfloat16 bf16;

// out: [n] of TO, inp: [n] of TI
template <typename TO, typename TI>
__global__ void act_forward_kernel(TO *out, const TI *inp, int64_t n, int32_t kind, float alpha)
{
    GRID_STRIDE(i, n) st(out, i, act_value(kind, alpha, ld(inp, i)));
}

// dinp, inp: [n] of TI; dout, out: [n] of TO; inp or out NULL when the
// derivative does not read it
template <typename TO, typename TI>
__global__ void act_backward_kernel(TI *dinp, const TO *dout, const TI *inp, const TO *out, int64_t n, int32_t kind,
                                    float alpha, int32_t acc)
{
    if (kind == RELU) { /* the common case, without the general call */
        GRID_STRIDE(i, n)
        {
            float v = ld(out, i) > 0 ? ld(dout, i) : 0.0f;
            st(dinp, i, acc ? ld(dinp, i) + v : v);
        }
        return;
    }
    GRID_STRIDE(i, n)
    {
        float v = ld(dout, i) * act_grad(kind, alpha, inp ? ld(inp, i) : 0.0f, out ? ld(out, i) : 0.0f);
        st(dinp, i, acc ? ld(dinp, i) + v : v);
    }
}

template <typename TO, typename TI>
static void act_forward_launch(cudaStream_t s, void *out, const void *inp, int64_t n, int32_t kind, float alpha)
{
    act_forward_kernel<TO, TI><<<grid_for(n), THREADS, 0, s>>>((TO *)out, (const TI *)inp, n, kind, alpha);
}

template <typename TO, typename TI>
static void act_backward_launch(cudaStream_t s, void *dinp, const void *dout, const void *inp, const void *out,
                                int64_t n, int32_t kind, float alpha, int32_t acc)
{
    act_backward_kernel<TO, TI><<<grid_for(n), THREADS, 0, s>>>((TI *)dinp, (const TO *)dout, (const TI *)inp,
                                                                 (const TO *)out, n, kind, alpha, acc);
}

extern "C" usi_error *usi_cuda_act_forward(cudaStream_t s, void *out, const void *inp, int64_t n, int32_t kind,
                                           float alpha, int32_t bf)
{
    switch (bf & (USI_CUDA_BF_OUT | USI_CUDA_BF_IN)) {
    case 0: act_forward_launch<float, float>(s, out, inp, n, kind, alpha); break;
    case USI_CUDA_BF_OUT: act_forward_launch<bf16, float>(s, out, inp, n, kind, alpha); break;
    case USI_CUDA_BF_IN: act_forward_launch<float, bf16>(s, out, inp, n, kind, alpha); break;
    default: act_forward_launch<bf16, bf16>(s, out, inp, n, kind, alpha); break;
    }
    LAUNCH_CHECK("act_forward");
}

extern "C" usi_error *usi_cuda_act_backward(cudaStream_t s, void *dinp, const void *dout, const void *inp,
                                            const void *out, int64_t n, int32_t kind, float alpha, int32_t acc,
                                            int32_t bf)
{
    switch (bf & (USI_CUDA_BF_OUT | USI_CUDA_BF_IN)) {
    case 0: act_backward_launch<float, float>(s, dinp, dout, inp, out, n, kind, alpha, acc); break;
    case USI_CUDA_BF_OUT: act_backward_launch<bf16, float>(s, dinp, dout, inp, out, n, kind, alpha, acc); break;
    case USI_CUDA_BF_IN: act_backward_launch<float, bf16>(s, dinp, dout, inp, out, n, kind, alpha, acc); break;
    default: act_backward_launch<bf16, bf16>(s, dinp, dout, inp, out, n, kind, alpha, acc); break;
    }
    LAUNCH_CHECK("act_backward");
}

/* ---- scale, fill ---- */

// out: [n] of TO (+)= factor * inp: [n] of TI
template <typename TO, typename TI>
__global__ void scale_forward_kernel(TO *out, const TI *inp, int64_t n, float factor, int32_t acc)
{
    GRID_STRIDE(i, n) st(out, i, acc ? ld(out, i) + factor * ld(inp, i) : factor * ld(inp, i));
}

template <typename TO, typename TI>
static void scale_launch(cudaStream_t s, void *out, const void *inp, int64_t n, float factor, int32_t acc)
{
    scale_forward_kernel<TO, TI><<<grid_for(n), THREADS, 0, s>>>((TO *)out, (const TI *)inp, n, factor, acc);
}

extern "C" usi_error *usi_cuda_scale_typed(cudaStream_t s, void *out, const void *inp, int64_t n, float factor,
                                           int32_t acc, int32_t bf)
{
    switch (bf & (USI_CUDA_BF_OUT | USI_CUDA_BF_IN)) {
    case 0: scale_launch<float, float>(s, out, inp, n, factor, acc); break;
    case USI_CUDA_BF_OUT: scale_launch<bf16, float>(s, out, inp, n, factor, acc); break;
    case USI_CUDA_BF_IN: scale_launch<float, bf16>(s, out, inp, n, factor, acc); break;
    default: scale_launch<bf16, bf16>(s, out, inp, n, factor, acc); break;
    }
    LAUNCH_CHECK("scale_forward");
}

__global__ void fill_forward_kernel(float *out, int64_t n, float value)
{
    GRID_STRIDE(i, n) out[i] = value;
}

extern "C" usi_error *usi_cuda_fill_forward(cudaStream_t s, float *out, int64_t n, float value)
{
    fill_forward_kernel<<<grid_for(n), THREADS, 0, s>>>(out, n, value);
    LAUNCH_CHECK("fill_forward");
}

/* ---- bf16 copies (precision "mixed") ---- */

// dst, src: [n]
__global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, int64_t n, int32_t acc)
{
    GRID_STRIDE(i, n) dst[i] = __float2bfloat16_rn(acc ? __bfloat162float(dst[i]) + src[i] : src[i]);
}

__global__ void from_bf16_kernel(float *dst, const __nv_bfloat16 *src, int64_t n, int32_t acc)
{
    GRID_STRIDE(i, n)
    {
        float v = __bfloat162float(src[i]);
        dst[i] = acc ? dst[i] + v : v;
    }
}

extern "C" usi_error *usi_cuda_to_bf16(cudaStream_t s, void *dst, const float *src, int64_t n, int32_t acc)
{
    to_bf16_kernel<<<grid_for(n), THREADS, 0, s>>>((__nv_bfloat16 *)dst, src, n, acc);
    LAUNCH_CHECK("to_bf16");
}

extern "C" usi_error *usi_cuda_from_bf16(cudaStream_t s, float *dst, const void *src, int64_t n, int32_t acc)
{
    from_bf16_kernel<<<grid_for(n), THREADS, 0, s>>>(dst, (const __nv_bfloat16 *)src, n, acc);
    LAUNCH_CHECK("from_bf16");
}

/* ---- binary ---- */

enum { ADD, SUB, MUL, DIV }; /* USI_BIN_* */

static __device__ __forceinline__ float binary_value(int32_t op, float x, float z)
{
    switch (op) {
    case ADD: return x + z;
    case SUB: return x - z;
    case MUL: return x * z;
    default: return x / z;
    }
}

/* d/da (which 0) or d/db (which 1) of one element, given dy */
static __device__ __forceinline__ float binary_partial(int32_t op, int32_t which, float dy, float a, float b)
{
    switch (op) {
    case ADD: return dy;
    case SUB: return which ? -dy : dy;
    case MUL: return which ? dy * a : dy * b;
    default: return which ? -dy * a / (b * b) : dy / b;
    }
}

/* Offsets in o, a and b of kept-dims index j. */
static __device__ __forceinline__ void kept_offsets(const usi_cuda_bplan &p, int64_t j, int64_t *o, int64_t *a,
                                                    int64_t *b)
{
    *o = *a = *b = 0;
    for (int32_t d = p.nk - 1; d >= 0; d--) {
        int64_t i = j % p.kshape[d];
        j /= p.kshape[d];
        *o += i * p.ko[d];
        *a += i * p.ka[d];
        *b += i * p.kb[d];
    }
}

static __device__ __forceinline__ void red_offsets(const usi_cuda_bplan &p, int64_t r, int64_t *o, int64_t *a,
                                                   int64_t *b)
{
    *o = *a = *b = 0;
    for (int32_t d = p.nr - 1; d >= 0; d--) {
        int64_t i = r % p.rshape[d];
        r /= p.rshape[d];
        *o += i * p.ro[d];
        *a += i * p.ra[d];
        *b += i * p.rb[d];
    }
}

// out: [n_kept] = a[bcast] op b[bcast], all of T
template <typename T>
__global__ void binary_forward_kernel(T *out, const T *a, const T *b, const usi_cuda_bplan p, int32_t op)
{
    if (p.nk == 1 && p.ka[0] == 1 && p.kb[0] == 1) { /* same shapes */
        GRID_STRIDE(i, p.n_kept) st(out, i, binary_value(op, ld(a, i), ld(b, i)));
        return;
    }
    GRID_STRIDE(i, p.n_kept)
    {
        int64_t o, ao, bo;
        kept_offsets(p, i, &o, &ao, &bo);
        st(out, i, binary_value(op, ld(a, ao), ld(b, bo)));
    }
}

/* One thread per element of x, summing its few broadcast partners. */
template <typename T>
__global__ void binary_backward_kernel(T *dx, const T *dy, const T *a, const T *b, const usi_cuda_bplan p,
                                       int32_t op, int32_t which, int32_t acc)
{
    GRID_STRIDE(j, p.n_kept)
    {
        int64_t o0, a0, b0;
        kept_offsets(p, j, &o0, &a0, &b0);
        double sum = 0; /* up to a plane of partners: summed as the block kernel does */
        for (int64_t r = 0; r < p.n_red; r++) {
            int64_t o, ao, bo;
            red_offsets(p, r, &o, &ao, &bo);
            float av = a ? ld(a, a0 + ao) : 0.0f, bv = b ? ld(b, b0 + bo) : 0.0f;
            sum += binary_partial(op, which, ld(dy, o0 + o), av, bv);
        }
        st(dx, j, acc ? ld(dx, j) + (float)sum : (float)sum);
    }
}

/* One block per element of x, for many broadcast partners (a bias-like
 * operand): the block sums them. */
template <typename T>
__global__ void binary_backward_block_kernel(T *dx, const T *dy, const T *a, const T *b, const usi_cuda_bplan p,
                                             int32_t op, int32_t which, int32_t acc)
{
    __shared__ double shared[32];
    for (int64_t j = blockIdx.x; j < p.n_kept; j += gridDim.x) {
        int64_t o0, a0, b0;
        kept_offsets(p, j, &o0, &a0, &b0);
        double sum = 0;
        for (int64_t r = threadIdx.x; r < p.n_red; r += blockDim.x) {
            int64_t o, ao, bo;
            red_offsets(p, r, &o, &ao, &bo);
            float av = a ? ld(a, a0 + ao) : 0.0f, bv = b ? ld(b, b0 + bo) : 0.0f;
            sum += binary_partial(op, which, ld(dy, o0 + o), av, bv);
        }
        sum = block_sum_d(sum, shared);
        if (threadIdx.x == 0) st(dx, j, acc ? ld(dx, j) + (float)sum : (float)sum);
    }
}

template <typename T>
static void binary_backward_launch(cudaStream_t s, void *dx, const void *dy, const void *a, const void *b,
                                   const usi_cuda_bplan *p, int32_t op, int32_t which, int32_t acc)
{
    /* a block per element where its partners are neighbours in memory (an
     * NCHW bias-like operand); a thread per element where the elements
     * are and there are enough of them to fill the device (a channels-last
     * SE gate: neighbouring threads, neighbouring channels; a per-channel
     * operand of a few hundred channels keeps a block each) */
    int kept_inner = p->nk > 0 && p->ko[p->nk - 1] == 1 && p->kshape[p->nk - 1] >= 32 && p->n_kept >= 4096;
    if (p->n_red >= 256 && !kept_inner) {
        int64_t blocks = p->n_kept < 65536 ? p->n_kept : 65536;
        binary_backward_block_kernel<T><<<(unsigned)blocks, THREADS, 0, s>>>(
            (T *)dx, (const T *)dy, (const T *)a, (const T *)b, *p, op, which, acc);
    } else {
        binary_backward_kernel<T><<<grid_for(p->n_kept), THREADS, 0, s>>>((T *)dx, (const T *)dy, (const T *)a,
                                                                           (const T *)b, *p, op, which, acc);
    }
}

extern "C" usi_error *usi_cuda_binary_forward(cudaStream_t s, void *out, const void *a, const void *b,
                                              const usi_cuda_bplan *p, int32_t op, int32_t bf16)
{
    if (bf16)
        binary_forward_kernel<__nv_bfloat16><<<grid_for(p->n_kept), THREADS, 0, s>>>(
            (__nv_bfloat16 *)out, (const __nv_bfloat16 *)a, (const __nv_bfloat16 *)b, *p, op);
    else
        binary_forward_kernel<float><<<grid_for(p->n_kept), THREADS, 0, s>>>((float *)out, (const float *)a,
                                                                            (const float *)b, *p, op);
    LAUNCH_CHECK("binary_forward");
}

extern "C" usi_error *usi_cuda_binary_backward(cudaStream_t s, void *dx, const void *dy, const void *a,
                                               const void *b, const usi_cuda_bplan *p, int32_t op, int32_t which,
                                               int32_t acc, int32_t bf16)
{
    if (bf16) binary_backward_launch<__nv_bfloat16>(s, dx, dy, a, b, p, op, which, acc);
    else binary_backward_launch<float>(s, dx, dy, a, b, p, op, which, acc);
    LAUNCH_CHECK("binary_backward");
}

/* ---- dropout and drop-path: core/util/rng.c on the device ---- */

typedef struct drng {
    uint64_t s[4];
} drng;

static __device__ __forceinline__ uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static __device__ __forceinline__ uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static __device__ __forceinline__ void drng_seed(drng *r, uint64_t k0, uint64_t k1, uint64_t k2, uint64_t k3)
{
    uint64_t x = k0;
    uint64_t h = splitmix64(&x);
    x = h ^ k1;
    h = splitmix64(&x);
    x = h ^ k2;
    h = splitmix64(&x);
    x = h ^ k3;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static __device__ __forceinline__ double drng_uniform(drng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return (double)(result >> 11) * 0x1.0p-53;
}

#define DROP_CHUNK 4096                  /* the CPU backend's CHUNK */
#define DROP_WORDS (DROP_CHUNK / 32)
#define DROP_CHUNKS_PER_BLOCK 32         /* one per lane of the first warp */

/* Each block: the first warp's lanes draw one chunk's stream each (the draws
 * are sequential within a chunk) into keep bits in shared memory; then the
 * whole block applies them to its 32 chunks with coalesced accesses. */
// out, x: [n] of T
template <typename T>
__global__ void dropout_forward_kernel(T *out, const T *x, int64_t n, double p, float scale, uint64_t seed,
                                       uint64_t step, uint64_t id, int32_t acc)
{
    __shared__ uint32_t bits[DROP_CHUNKS_PER_BLOCK][DROP_WORDS + 1]; /* +1: lanes write other banks */
    int64_t first = (int64_t)blockIdx.x * DROP_CHUNKS_PER_BLOCK;
    int64_t n_chunks = (n + DROP_CHUNK - 1) / DROP_CHUNK;
    if (threadIdx.x < DROP_CHUNKS_PER_BLOCK && first + threadIdx.x < n_chunks) {
        int64_t ch = first + threadIdx.x;
        int64_t len = n - ch * DROP_CHUNK < DROP_CHUNK ? n - ch * DROP_CHUNK : DROP_CHUNK;
        drng r;
        drng_seed(&r, seed, step, id, (uint64_t)ch);
        for (int w = 0; w < DROP_WORDS; w++) {
            uint32_t word = 0;
            for (int k = 0; k < 32; k++)
                if (w * 32 + k < len && drng_uniform(&r) >= p) word |= 1u << k;
            bits[threadIdx.x][w] = word;
        }
    }
    __syncthreads();
    int64_t base = first * DROP_CHUNK;
    int64_t end = base + (int64_t)DROP_CHUNKS_PER_BLOCK * DROP_CHUNK < n ? base + (int64_t)DROP_CHUNKS_PER_BLOCK * DROP_CHUNK : n;
    for (int64_t i = base + threadIdx.x; i < end; i += blockDim.x) {
        int64_t k = i - base;
        int32_t c = (int32_t)(k / DROP_CHUNK), j = (int32_t)(k % DROP_CHUNK);
        int keep = (bits[c][j >> 5] >> (j & 31)) & 1u;
        float v = keep ? __fmul_rn(ld(x, i), scale) : 0.0f;
        st(out, i, acc ? ld(out, i) + v : v);
    }
}

// keep: [N], the CPU's single stream of per-sample draws
__global__ void drop_path_draw_kernel(float *keep, int64_t N, double p, float scale, uint64_t seed, uint64_t step,
                                      uint64_t id)
{
    drng r;
    drng_seed(&r, seed, step, id, 0x6470);
    for (int64_t s = 0; s < N; s++) keep[s] = drng_uniform(&r) >= p ? scale : 0.0f;
}

// out, x: [N, per] of T
template <typename T>
__global__ void drop_path_forward_kernel(T *out, const T *x, const float *keep, int64_t N, int64_t per, int32_t acc)
{
    GRID_STRIDE(i, N * per)
    {
        float v = __fmul_rn(keep[i / per], ld(x, i));
        st(out, i, acc ? ld(out, i) + v : v);
    }
}

extern "C" usi_error *usi_cuda_dropout_forward(cudaStream_t s, void *out, const void *x, int64_t n, double p,
                                               uint64_t seed, uint64_t step, uint64_t id, int32_t acc, int32_t bf16)
{
    int64_t chunks = (n + DROP_CHUNK - 1) / DROP_CHUNK;
    unsigned blocks = (unsigned)((chunks + DROP_CHUNKS_PER_BLOCK - 1) / DROP_CHUNKS_PER_BLOCK);
    float scale = (float)(1.0 / (1.0 - p));
    if (bf16)
        dropout_forward_kernel<<<blocks ? blocks : 1, THREADS, 0, s>>>((__nv_bfloat16 *)out, (const __nv_bfloat16 *)x,
                                                                       n, p, scale,
                                                                       seed, step, id, acc);
    else
        dropout_forward_kernel<<<blocks ? blocks : 1, THREADS, 0, s>>>((float *)out, (const float *)x, n, p, scale,
                                                                       seed, step, id, acc);
    LAUNCH_CHECK("dropout_forward");
}

extern "C" usi_error *usi_cuda_drop_path_forward(cudaStream_t s, void *out, const void *x, float *keep, int64_t N,
                                                 int64_t per, double p, uint64_t seed, uint64_t step, uint64_t id,
                                                 int32_t acc, int32_t bf16)
{
    float scale = (float)(1.0 / (1.0 - p));
    drop_path_draw_kernel<<<1, 1, 0, s>>>(keep, N, p, scale, seed, step, id);
    usi_error *e = usi_cuda_check_launch("drop_path_draw", __FILE__, __LINE__);
    if (e) return e;
    if (bf16)
        drop_path_forward_kernel<<<grid_for(N * per), THREADS, 0, s>>>((__nv_bfloat16 *)out,
                                                                       (const __nv_bfloat16 *)x, keep, N, per, acc);
    else
        drop_path_forward_kernel<<<grid_for(N * per), THREADS, 0, s>>>((float *)out, (const float *)x, keep, N, per,
                                                                       acc);
    LAUNCH_CHECK("drop_path_forward");
}
