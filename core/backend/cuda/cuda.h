/* The CUDA backend's host side (C): the device state, checked calls into
 * the CUDA runtime, cuDNN and cuBLAS, and the node adapters. Kernels of our
 * own are in the .cu files behind kernels.h. */
#ifndef USI_CORE_BACKEND_CUDA_H
#define USI_CORE_BACKEND_CUDA_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "backend/backend.h"
#include "backend/cuda/kernels.h"
#include "util/error.h"

/* Blocks of the first pass of the sum of squares. */
#define USI_CUDA_SUMSQ_PARTIALS 1024

/* One opened GPU. */
typedef struct usi_cuda {
    int32_t ordinal;
    cudaStream_t stream;
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    cublasLtHandle_t lt;
    int32_t sm_count;
    size_t mem_total;
    char gpu_name[256];
    /* Device constants grown on demand: 1.0f and 0.0f (gemv sums, absent
     * batch-norm scale and shift). */
    float *ones, *zeros;
    size_t n_consts;
    void **retired;          /* smaller ones/zeros arrays, freed at close   */
    size_t n_retired;
    /* Sum of squares: block partials and the result (device), read back
     * through a pinned host double. */
    double *partials, *result;
    double *host_result;
    /* The optimizer's chunk table, rebuilt when the segments change. */
    struct usi_cuda_optim_cache *optim;
} usi_cuda;

static inline usi_cuda *usi_cuda_of(const usi_device *d) { return (usi_cuda *)d->state; }

/* Errors of the three libraries, naming the failed call, file and line. */
usi_error *usi_cuda_fail(cudaError_t st, const char *call, const char *file, int line);
usi_error *usi_cudnn_fail(cudnnStatus_t st, const char *call, const char *file, int line);
usi_error *usi_cublas_fail(cublasStatus_t st, const char *call, const char *file, int line);

#define CUDA_TRY(call)                                                                        \
    do {                                                                                      \
        cudaError_t st_ = (call);                                                             \
        if (st_ != cudaSuccess) return usi_cuda_fail(st_, #call, __FILE__, __LINE__);         \
    } while (0)

#define CUDNN_TRY(call)                                                                       \
    do {                                                                                      \
        cudnnStatus_t st_ = (call);                                                           \
        if (st_ != CUDNN_STATUS_SUCCESS) return usi_cudnn_fail(st_, #call, __FILE__, __LINE__); \
    } while (0)

#define CUBLAS_TRY(call)                                                                      \
    do {                                                                                      \
        cublasStatus_t st_ = (call);                                                          \
        if (st_ != CUBLAS_STATUS_SUCCESS) return usi_cublas_fail(st_, #call, __FILE__, __LINE__); \
    } while (0)

/* dst[n] (+)= src[n]: a copy, or an add; float, or bf16 elements where
 * bf16 is 1. */
usi_error *usi_cuda_copy_or_add(usi_cuda *c, void *dst, const void *src, int64_t n, int32_t acc, int32_t bf16);

/* Host-side plans, exposed for the unit tests: the broadcast plan of a
 * binary node seen from its output (which -1) or operand `which`, the
 * collapsed dims of a reduce, the strides of a matmul's batches (0 when they
 * are not a fixed stride apart), and an optimizer's chunk table. */
void usi_cuda_binary_plan(const usi_tensor *t, int32_t which, usi_cuda_bplan *p);
void usi_cuda_reduce_dims(const usi_tensor *x, uint32_t mask, usi_cuda_rdims *r);
int32_t usi_cuda_matmul_strides(const usi_tensor *t, int64_t B, int64_t *sa, int64_t *sb);
usi_error *usi_cuda_optim_chunks(const usi_optim_seg *segs, int32_t n_segs, usi_cuda_chunk **out, int32_t *n);

/* Make d the calling thread's current GPU (cheap when it already is). */
usi_error *usi_cuda_use(usi_cuda *c);
/* Device arrays of at least n 1.0f and 0.0f values. */
usi_error *usi_cuda_consts(usi_cuda *c, size_t n, const float **ones, const float **zeros);

int32_t usi_cuda_supports(int32_t op);
void usi_cuda_workspace(usi_tensor *t, int32_t training);

/* Memory and training-step entry points (device.c, step.c). */
void *usi_cuda_alloc(usi_device *d, size_t bytes);
void usi_cuda_free(usi_device *d, void *p, size_t bytes);
usi_error *usi_cuda_upload(usi_device *d, void *dst, const void *host_src, size_t bytes);
usi_error *usi_cuda_download(usi_device *d, void *host_dst, const void *src, size_t bytes);
usi_error *usi_cuda_copy(usi_device *d, void *dst, const void *src, size_t bytes);
usi_error *usi_cuda_fill(usi_device *d, void *dst, int byte, size_t bytes);
usi_error *usi_cuda_synchronize(usi_device *d);
/* The backend's bf16_native (backend.c), to_bf16 / from_bf16 (device.c):
 * activations kept as bf16. */
int32_t usi_cuda_bf16_native(const usi_tensor *t, int32_t backward);
/* 1 when a matmul's backward sums an operand's gradient over batches, one
 * product per batch (gemm.c): in fp32 copies where it is kept as bf16. */
int32_t usi_cuda_matmul_sums_batches(const usi_tensor *t);
/* The backend's to_bf16 / from_bf16 (activations kept as bf16). */
usi_error *usi_cuda_cast_to_bf16(usi_device *d, void *dst, const float *src, size_t n, int32_t acc);
usi_error *usi_cuda_cast_from_bf16(usi_device *d, float *dst, const void *src, size_t n, int32_t acc);
usi_error *usi_cuda_repack_dev(usi_device *d, void *dst, int32_t dst_fmt, const void *src, int32_t src_fmt,
                               const int64_t *shape4, int32_t acc);
/* the backend's prefers_cl and cl_native (backend.h): channels-last
 * activations under precision "mixed", and the kernels that take them */
int32_t usi_cuda_prefers_cl(const usi_device *d);
int32_t usi_cuda_cl_native(const usi_tensor *t, int32_t backward);
/* the backend's fuses_act (backend.h): a batch norm with its ReLU */
int32_t usi_cuda_fuses_act(const usi_tensor *bn, const usi_tensor *act);
void usi_cuda_mem_info(usi_device *d, size_t *free_bytes, size_t *total_bytes);
/* Recorded work (record.c): CUDA graphs of what a call queues. */
usi_error *usi_cuda_record(usi_device *d, usi_error *(*run)(void *ctx), void *ctx, void **rec);
usi_error *usi_cuda_replay(usi_device *d, void *rec);
void usi_cuda_rec_free(usi_device *d, void *rec);
/* The input path (stage.c): pinned host memory, copy-stream stages. */
void *usi_cuda_host_alloc(usi_device *d, size_t bytes);
void usi_cuda_host_free(usi_device *d, void *p, size_t bytes);
usi_error *usi_cuda_stage_new(usi_device *d, int32_t slots, size_t bytes, void **out);
void usi_cuda_stage_free(usi_device *d, void *st);
usi_error *usi_cuda_stage_put(usi_device *d, void *st, int32_t slot, size_t off, const void *host_src,
                              size_t bytes);
usi_error *usi_cuda_stage_take(usi_device *d, void *st, int32_t slot, size_t off, void *dst, size_t bytes);
usi_error *usi_cuda_optim_step(usi_device *d, const usi_optim_args *a);
usi_error *usi_cuda_ema_update(usi_device *d, float *ema, const float *w, size_t n, double decay);
usi_error *usi_cuda_sum_squares(usi_device *d, const float *x, size_t n, double *out);
usi_error *usi_cuda_scale(usi_device *d, float *x, size_t n, double s);
usi_error *usi_cuda_image_convert(usi_device *d, float *dst, const float *src, int32_t n, int32_t c, int32_t h,
                                  int32_t w, int32_t oh, int32_t ow, int32_t interp, const float *a,
                                  const float *b);
usi_error *usi_cuda_u8_normalize(usi_device *d, float *dst, const uint8_t *src, int32_t n, int32_t h, int32_t w,
                                 const float *mean, const float *std);

/* Node adapters: usi_cuda_<op>_fwd / _bwd read shapes and attributes from
 * the node and call cuDNN, cuBLAS or a launcher of kernels.h. */
typedef usi_error *(*usi_cuda_fwd_fn)(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t);
typedef usi_error *(*usi_cuda_bwd_fn)(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc);

#define USI_CUDA_OP(name)                                                                     \
    usi_error *usi_cuda_##name##_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t);   \
    usi_error *usi_cuda_##name##_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t,    \
                                     const int32_t *acc)

USI_CUDA_OP(conv2d);
USI_CUDA_OP(linear);
USI_CUDA_OP(matmul);
USI_CUDA_OP(batch_norm);
USI_CUDA_OP(layer_norm);
USI_CUDA_OP(act);
USI_CUDA_OP(binary);
USI_CUDA_OP(scale);
USI_CUDA_OP(pool2d);
USI_CUDA_OP(reduce);
USI_CUDA_OP(softmax);
USI_CUDA_OP(dropout);
USI_CUDA_OP(drop_path);
USI_CUDA_OP(reshape);
USI_CUDA_OP(permute);
USI_CUDA_OP(concat);
USI_CUDA_OP(slice);
USI_CUDA_OP(pad);
USI_CUDA_OP(space_to_depth);
USI_CUDA_OP(gather);
USI_CUDA_OP(loss_soft_ce);
USI_CUDA_OP(loss_ce);
USI_CUDA_OP(loss_kl);
USI_CUDA_OP(custom);

/* Workspace of the ops that have any (the planner's saved and scratch
 * bytes). conv2d asks cuDNN, so it needs the node's graph on a CUDA device;
 * the others are pure functions of the node. */
void usi_cuda_conv2d_workspace(usi_tensor *t, int32_t training);
void usi_cuda_norm_workspace(usi_tensor *t, int32_t training);
void usi_cuda_loss_workspace(usi_tensor *t, int32_t training);
/* max pool's backward scratch: the windows' argmax indices (0: none) */
size_t usi_cuda_pool_scratch_bytes(const usi_tensor *t);
/* linear and matmul: bf16 operand copies under "mixed" (none otherwise) */
void usi_cuda_gemm_workspace(usi_tensor *t, int32_t training, int32_t mixed);
/* 1 when t's graph is planned under precision "mixed" (its device's). */
int32_t usi_cuda_node_mixed(const usi_tensor *t);

#endif
