/* CUDA devices: opening a GPU (stream, cuDNN and cuBLAS handles), its
 * memory, and the errors of the three libraries as one-line messages.
 *
 * Everything runs on the device's one stream, in order: host calls return as
 * soon as work is queued, except a download (the host needs the bytes) and
 * synchronize. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/device_internal.h"
#include "util/log.h"

#ifndef USI_CUDA_ARCH
#define USI_CUDA_ARCH 90
#endif

#define MAX_GPUS 64

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static usi_device devices[MAX_GPUS];
static usi_cuda states[MAX_GPUS];

/* ---- errors ---- */

usi_error *usi_cuda_fail(cudaError_t st, const char *call, const char *file, int line)
{
    (void)cudaGetLastError(); /* clear it unless sticky; a sticky one shows again */
    int32_t code = st == cudaErrorMemoryAllocation ? USI_ERR_NOMEM : USI_ERR_INTERNAL;
    return usi_error_new(code, "CUDA: %s failed: %s (%s:%d)", call, cudaGetErrorString(st), file, line);
}

usi_error *usi_cudnn_fail(cudnnStatus_t st, const char *call, const char *file, int line)
{
    int32_t code = st == CUDNN_STATUS_ALLOC_FAILED ? USI_ERR_NOMEM
                   : st == CUDNN_STATUS_NOT_SUPPORTED ? USI_ERR_UNSUPPORTED
                                                      : USI_ERR_INTERNAL;
    return usi_error_new(code, "cuDNN: %s failed: %s (%s:%d)", call, cudnnGetErrorString(st), file, line);
}

usi_error *usi_cublas_fail(cublasStatus_t st, const char *call, const char *file, int line)
{
    int32_t code = st == CUBLAS_STATUS_ALLOC_FAILED ? USI_ERR_NOMEM : USI_ERR_INTERNAL;
    return usi_error_new(code, "cuBLAS: %s failed: %s (%s:%d)", call, cublasGetStatusString(st), file, line);
}

usi_error *usi_cuda_check_launch(const char *kernel, const char *file, int line)
{
    cudaError_t st = cudaGetLastError();
    if (st == cudaSuccess) return NULL;
    return usi_error_new(USI_ERR_INTERNAL, "CUDA: launching %s failed: %s (%s:%d)", kernel, cudaGetErrorString(st),
                         file, line);
}

/* Why no GPU could be counted: no driver or GPU, or a driver older than the
 * toolkit this build was made with. */
static usi_error *count_error(cudaError_t st)
{
    (void)cudaGetLastError();
    int driver = 0;
    if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
    if (st == cudaErrorInsufficientDriver && driver > 0)
        return usi_error_new(USI_ERR_UNSUPPORTED,
                             "the NVIDIA driver supports CUDA %d.%d, older than the CUDA %d.%d this build "
                             "was made with; update the driver (cudaGetDeviceCount: %s)",
                             driver / 1000, driver % 1000 / 10, CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10,
                             cudaGetErrorString(st));
    return usi_error_new(USI_ERR_UNSUPPORTED, "no CUDA GPU found (cudaGetDeviceCount: %s%s)", cudaGetErrorString(st),
                         driver ? "" : "; no NVIDIA driver is loaded");
}

/* ---- opening ---- */

usi_error *usi_cuda_use(usi_cuda *c)
{
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur == c->ordinal) return NULL;
    CUDA_TRY(cudaSetDevice(c->ordinal));
    return NULL;
}

static void close_state(usi_cuda *c)
{
    for (size_t i = 0; i < c->n_retired; i++) cudaFree(c->retired[i]);
    free(c->retired);
    if (c->host_result) cudaFreeHost(c->host_result);
    if (c->partials) cudaFree(c->partials);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->cublas) cublasDestroy(c->cublas);
    if (c->cudnn) cudnnDestroy(c->cudnn);
    if (c->stream) cudaStreamDestroy(c->stream);
    memset(c, 0, sizeof *c);
}

static usi_error *init_state(usi_cuda *c, int32_t ordinal)
{
    c->ordinal = ordinal;
    CUDA_TRY(cudaSetDevice(ordinal));
    struct cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, ordinal));
    snprintf(c->gpu_name, sizeof c->gpu_name, "%s", prop.name);
    c->sm_count = prop.multiProcessorCount;
    c->mem_total = prop.totalGlobalMem;
    /* Machine code for USI_CUDA_ARCH and PTX of it: older GPUs can run
     * none of the kernels. */
    if (prop.major * 10 + prop.minor < USI_CUDA_ARCH)
        return usi_error_new(USI_ERR_UNSUPPORTED,
                             "GPU %d is %s with compute capability %d.%d; this build has kernels for %d.%d and "
                             "newer (meson option nvidia_sm)",
                             ordinal, prop.name, prop.major, prop.minor, USI_CUDA_ARCH / 10, USI_CUDA_ARCH % 10);
    CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUDNN_TRY(cudnnCreate(&c->cudnn));
    CUDNN_TRY(cudnnSetStream(c->cudnn, c->stream));
    CUBLAS_TRY(cublasCreate(&c->cublas));
    CUBLAS_TRY(cublasSetStream(c->cublas, c->stream));
    CUBLAS_TRY(cublasLtCreate(&c->lt));
    CUDA_TRY(cudaMalloc((void **)&c->partials, (USI_CUDA_SUMSQ_PARTIALS + 1) * sizeof(double)));
    c->result = c->partials + USI_CUDA_SUMSQ_PARTIALS;
    CUDA_TRY(cudaMallocHost((void **)&c->host_result, sizeof(double)));
    size_t cudnn_v = cudnnGetVersion();
    int cublas_v = 0;
    cublasGetVersion(c->cublas, &cublas_v);
    usi_log(USI_LOG_DEBUG, "cuda:%d: %s, %d SMs, %.1f GiB; cuDNN %zu, cuBLAS %d", ordinal, prop.name,
            prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30), cudnn_v, cublas_v);
    if (cudnn_v / 10000 != CUDNN_MAJOR)
        return usi_error_new(USI_ERR_UNSUPPORTED, "cuDNN %zu.%zu was loaded; this build needs cuDNN %d",
                             cudnn_v / 10000, cudnn_v % 10000 / 100, CUDNN_MAJOR);
    return NULL;
}

usi_error *usi_cuda_device_open(int32_t ordinal, usi_device **out)
{
    *out = NULL;
    pthread_mutex_lock(&open_lock);
    usi_error *e = NULL;
    int count = 0;
    cudaError_t st;
    if (ordinal >= 0 && ordinal < MAX_GPUS && devices[ordinal].be) {
        *out = &devices[ordinal];
    } else if ((st = cudaGetDeviceCount(&count)) != cudaSuccess) {
        e = count_error(st);
    } else if (count == 0) {
        e = usi_error_new(USI_ERR_UNSUPPORTED, "no CUDA GPU found (cudaGetDeviceCount: 0 devices)");
    } else if (ordinal < 0 || ordinal >= count || ordinal >= MAX_GPUS) {
        e = count > 1 ? usi_error_new(USI_ERR_INVALID, "no GPU %d: this machine has %d (cuda:0 to cuda:%d)",
                                      ordinal, count, count - 1)
                      : usi_error_new(USI_ERR_INVALID, "no GPU %d: this machine has one (cuda:0)", ordinal);
    } else {
        usi_cuda *c = &states[ordinal];
        e = init_state(c, ordinal);
        if (e) {
            close_state(c);
        } else {
            usi_device *d = &devices[ordinal];
            snprintf(d->name, sizeof d->name, "cuda:%d", ordinal);
            d->state = c;
            d->be = usi_cuda_backend();
            *out = d;
        }
    }
    pthread_mutex_unlock(&open_lock);
    return e;
}

/* ---- memory ---- */

void *usi_cuda_alloc(usi_device *d, size_t bytes)
{
    usi_cuda *c = usi_cuda_of(d);
    usi_error *e = usi_cuda_use(c);
    if (e) {
        usi_error_free(e);
        return NULL;
    }
    void *p = NULL;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    if (cudaMemsetAsync(p, 0, bytes, c->stream) != cudaSuccess) {
        (void)cudaGetLastError();
        cudaFree(p);
        return NULL;
    }
    return p;
}

void usi_cuda_free(usi_device *d, void *p, size_t bytes)
{
    (void)bytes;
    usi_cuda *c = usi_cuda_of(d);
    usi_error_free(usi_cuda_use(c));
    /* Work queued on the stream may still read p: cudaFree waits for the
     * device to be idle before it returns the memory. */
    if (p && cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
}

void usi_cuda_mem_info(usi_device *d, size_t *free_bytes, size_t *total_bytes)
{
    usi_cuda *c = usi_cuda_of(d);
    *free_bytes = *total_bytes = 0;
    usi_error_free(usi_cuda_use(c));
    if (cudaMemGetInfo(free_bytes, total_bytes) != cudaSuccess) (void)cudaGetLastError();
}

usi_error *usi_cuda_upload(usi_device *d, void *dst, const void *host_src, size_t bytes)
{
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    CUDA_TRY(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, c->stream));
    /* From pageable memory the call returns once the bytes are staged; from
     * pinned memory it returns at once, and the caller may reuse its buffer
     * when we return: wait for the copy then. */
    struct cudaPointerAttributes at;
    if (cudaPointerGetAttributes(&at, host_src) == cudaSuccess && at.type == cudaMemoryTypeHost)
        CUDA_TRY(cudaStreamSynchronize(c->stream));
    (void)cudaGetLastError();
    return NULL;
}

usi_error *usi_cuda_download(usi_device *d, void *host_dst, const void *src, size_t bytes)
{
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    CUDA_TRY(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CUDA_TRY(cudaStreamSynchronize(c->stream));
    return NULL;
}

usi_error *usi_cuda_copy(usi_device *d, void *dst, const void *src, size_t bytes)
{
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
    return NULL;
}

usi_error *usi_cuda_fill(usi_device *d, void *dst, int byte, size_t bytes)
{
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    CUDA_TRY(cudaMemsetAsync(dst, byte, bytes, c->stream));
    return NULL;
}

usi_error *usi_cuda_cast_to_bf16(usi_device *d, void *dst, const float *src, size_t n, int32_t acc)
{
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    return usi_cuda_to_bf16(c->stream, dst, src, (int64_t)n, acc);
}

usi_error *usi_cuda_cast_from_bf16(usi_device *d, float *dst, const void *src, size_t n, int32_t acc)
{
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    return usi_cuda_from_bf16(c->stream, dst, src, (int64_t)n, acc);
}

_Static_assert((int)USI_FMT_BF16 == (int)USI_CUDA_FMT_BF16 && (int)USI_FMT_CL == (int)USI_CUDA_FMT_CL,
               "format bits differ");

usi_error *usi_cuda_repack_dev(usi_device *d, void *dst, int32_t dst_fmt, const void *src, int32_t src_fmt,
                               const int64_t *shape4, int32_t acc)
{
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    return usi_cuda_repack(c->stream, dst, dst_fmt, src, src_fmt, shape4[0], shape4[1], shape4[2] * shape4[3], acc);
}

usi_error *usi_cuda_synchronize(usi_device *d)
{
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    CUDA_TRY(cudaStreamSynchronize(c->stream));
    return NULL;
}

usi_error *usi_cuda_consts(usi_cuda *c, size_t n, const float **ones, const float **zeros)
{
    if (n > c->n_consts) {
        size_t want = n < 4096 ? 4096 : n;
        float *o = NULL, *z = NULL;
        CUDA_TRY(cudaMalloc((void **)&o, want * sizeof(float)));
        cudaError_t st = cudaMalloc((void **)&z, want * sizeof(float));
        if (st != cudaSuccess) {
            cudaFree(o);
            return usi_cuda_fail(st, "cudaMalloc(zeros)", __FILE__, __LINE__);
        }
        usi_error *e = usi_cuda_fill_forward(c->stream, o, (int64_t)want, 1.0f);
        if (!e) e = usi_cuda_fill_forward(c->stream, z, (int64_t)want, 0.0f);
        if (e) {
            cudaFree(o);
            cudaFree(z);
            return e;
        }
        /* The old arrays stay until the device closes: queued work and
         * recorded passes (record.c) may hold their addresses. */
        void **kept = c->ones ? realloc(c->retired, (c->n_retired + 2) * sizeof *kept) : NULL;
        if (kept) {
            kept[c->n_retired++] = c->ones;
            kept[c->n_retired++] = c->zeros;
            c->retired = kept;
        } /* else: out of host memory; the old arrays stay allocated, unlisted */
        c->ones = o;
        c->zeros = z;
        c->n_consts = want;
    }
    if (ones) *ones = c->ones;
    if (zeros) *zeros = c->zeros;
    return NULL;
}
