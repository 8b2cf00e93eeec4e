/* The CPU backend's kernels. Each op has a node adapter pair
 * usi_cpu_<op>_fwd / _bwd that reads shapes and attributes from the node and
 * calls plain kernels <op>_forward / <op>_backward on pointers and dims. */
#ifndef USI_CORE_BACKEND_CPU_H
#define USI_CORE_BACKEND_CPU_H

#include <string.h>

#include "backend/backend.h"
#include "util/error.h"

/* Below this many elements of work a loop runs on one thread: a fork/join
 * costs more than it saves, far more when the cores are shared. */
#define USI_PAR_MIN ((int64_t)1 << 17)

typedef usi_error *(*usi_cpu_fwd_fn)(const usi_exec_ctx *ctx, usi_tensor *t);
typedef usi_error *(*usi_cpu_bwd_fn)(const usi_exec_ctx *ctx, usi_tensor *t,
                                     const int32_t *acc);

/* Gradient of source k, or NULL when none is wanted. */
static inline float *usi_src_grad(const usi_tensor *t, int32_t k)
{
    return k < t->n_src && t->src[k] ? t->src[k]->grad : NULL;
}

static inline const float *usi_src_f32(const usi_tensor *t, int32_t k)
{
    return k < t->n_src && t->src[k] ? (const float *)t->src[k]->data : NULL;
}

/* Kernels that only know how to add: clear first when they own the write. */
static inline void usi_grad_begin(float *g, int64_t n, int32_t acc)
{
    if (g && !acc) memset(g, 0, (size_t)n * sizeof(float));
}

/* Number of elements of dims [from, to). */
static inline int64_t usi_dims_prod(const usi_tensor *t, int32_t from, int32_t to)
{
    int64_t p = 1;
    for (int32_t i = from; i < to; i++) p *= t->shape[i];
    return p;
}

#define USI_CPU_OP(name)                                                      \
    usi_error *usi_cpu_##name##_fwd(const usi_exec_ctx *ctx, usi_tensor *t);  \
    usi_error *usi_cpu_##name##_bwd(const usi_exec_ctx *ctx, usi_tensor *t,   \
                                    const int32_t *acc)

USI_CPU_OP(conv2d);
USI_CPU_OP(linear);
USI_CPU_OP(matmul);
USI_CPU_OP(batch_norm);
USI_CPU_OP(layer_norm);
USI_CPU_OP(act);
USI_CPU_OP(scale);
USI_CPU_OP(binary);
USI_CPU_OP(pool2d);
USI_CPU_OP(reduce);
USI_CPU_OP(softmax);
USI_CPU_OP(dropout);
USI_CPU_OP(drop_path);
USI_CPU_OP(reshape);
USI_CPU_OP(permute);
USI_CPU_OP(concat);
USI_CPU_OP(slice);
USI_CPU_OP(pad);
USI_CPU_OP(space_to_depth);
USI_CPU_OP(gather);
USI_CPU_OP(loss_soft_ce);
USI_CPU_OP(loss_ce);
USI_CPU_OP(loss_kl);
USI_CPU_OP(custom);

/* Workspace needs of the ops that have any. */
void usi_cpu_conv2d_workspace(usi_tensor *t, int32_t training);
void usi_cpu_norm_workspace(usi_tensor *t, int32_t training);

/* Memory and training-step kernels (memory.c, step.c). */
void *usi_cpu_alloc(usi_device *d, size_t bytes);
void usi_cpu_free(usi_device *d, void *p, size_t bytes);
usi_error *usi_cpu_copy(usi_device *d, void *dst, const void *src, size_t bytes);
/* dst[n] = bf16(src[n] (+ float(dst[n]))) (util/bf16.h); dst[n] (+)= float(src[n]) */
usi_error *usi_cpu_to_bf16(usi_device *d, void *dst, const float *src, size_t n, int32_t acc);
usi_error *usi_cpu_from_bf16(usi_device *d, float *dst, const void *src, size_t n, int32_t acc);
/* the backend's repack (backend.h) on host memory */
usi_error *usi_cpu_repack(usi_device *d, void *dst, int32_t dst_fmt, const void *src, int32_t src_fmt,
                          const int64_t *shape4, int32_t acc);
usi_error *usi_cpu_fill(usi_device *d, void *dst, int byte, size_t bytes);
usi_error *usi_cpu_synchronize(usi_device *d);
usi_error *usi_cpu_optim_step(usi_device *d, const usi_optim_args *a);
usi_error *usi_cpu_ema_update(usi_device *d, float *ema, const float *w, size_t n, double decay);
usi_error *usi_cpu_sum_squares(usi_device *d, const float *x, size_t n, double *out);
usi_error *usi_cpu_scale(usi_device *d, float *x, size_t n, double s);
usi_error *usi_cpu_image_convert(usi_device *d, float *dst, const float *src, int32_t n, int32_t c, int32_t h,
                                 int32_t w, int32_t oh, int32_t ow, int32_t interp, const float *a,
                                 const float *b);
usi_error *usi_cpu_u8_normalize(usi_device *d, float *dst, const uint8_t *src, int32_t n, int32_t h, int32_t w,
                                const float *mean, const float *std);
void usi_cpu_set_threads(int32_t n);
int32_t usi_cpu_threads(void);
int32_t usi_cpu_supports(int32_t op);
void usi_cpu_workspace(usi_tensor *t, int32_t training);
usi_error *usi_cpu_forward(const usi_exec_ctx *ctx, usi_tensor *t);
usi_error *usi_cpu_backward(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc);

/* oneDNN's CPU engine and stream, made once. */
usi_error *usi_dnnl_init(void);

#endif
