/* A backend: the kernel table and memory functions behind a device. The
 * graph plans memory and order; a backend allocates, copies and computes.
 *
 * Every pointer a backend function takes is device memory made by the same
 * backend's alloc (plus an offset), except where a comment says "host". Only
 * core/backend dereferences device memory; core/graph computes addresses in it
 * (arena base + planned offset) and hands them back here. */
#ifndef USI_CORE_BACKEND_H
#define USI_CORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

#include "backend/collective.h"
#include "backend/optim_args.h"
#include "graph/node.h"

typedef struct usi_device usi_device;

typedef struct usi_exec_ctx {
    usi_device *dev;
    int32_t training;
    uint64_t seed;     /* graph seed and forward count: dropout masks are */
    uint64_t step;     /* a pure function of (seed, step, node id)        */
    usi_collective *coll; /* sums over ranks (backend/collective.h), or NULL */
} usi_exec_ctx;

/* How a value sits in device memory (repack): bf16 storage, channels-last. */
enum { USI_FMT_BF16 = 1, USI_FMT_CL = 2 };

typedef struct usi_backend {
    const char *name;
    /* 1 when device memory is ordinary host memory that host code may use
     * while a backend call runs (custom ops' cpu kernels run in place). */
    int32_t host_memory;
    /* The USI_CUSTOM_ON_* bit (plugin/custom_op.h) of the plugin kernels a
     * custom op runs here directly: CPU on host memory, CUDA on the GPU;
     * 0 where custom ops always run on host copies. */
    uint32_t custom_kernels;
    /* 1 when conv/linear/matmul can run in bf16 under precision "mixed"
     * (usi_device_set_mixed). */
    int32_t has_bf16;
    /* 1 when graphs planned under precision "mixed" keep activations and
     * their gradients as bf16 in the arena (core/graph/precision.c). */
    int32_t bf16_storage;
    /* Optional (NULL: none): 1 when the kernels of t read and write its
     * bf16 values and gradients (every t->bf16 among t and its sources)
     * themselves; elsewhere the executor hands them fp32 copies. backward
     * 0 asks of the forward kernel, 1 of the backward one. */
    int32_t (*bf16_native)(const usi_tensor *t, int32_t backward);
    /* dst[n] = bf16(src[n] (+ float(dst[n]) with acc 1)), rounded to
     * nearest even; and back, dst (+)= float(src). Where bf16_storage is
     * set. */
    usi_error *(*to_bf16)(usi_device *d, void *dst, const float *src, size_t n, int32_t acc);
    usi_error *(*from_bf16)(usi_device *d, float *dst, const void *src, size_t n, int32_t acc);
    /* Optional (NULL: never): 1 when graphs planned on d keep 4-d
     * activations channels-last (core/graph/layout.c). */
    int32_t (*prefers_cl)(const usi_device *d);
    /* Optional: 1 when the kernels of t read and write its channels-last
     * values and gradients (every t->cl among t and its sources) as they
     * are; elsewhere the executor hands them NCHW copies. */
    int32_t (*cl_native)(const usi_tensor *t, int32_t backward);
    /* dst (+)= src for a 4-d tensor of logical shape [N,C,H,W], each in its
     * own format (USI_FMT_* bits: bf16 storage, channels-last); bf16
     * results rounded to nearest even as to_bf16 does. Where prefers_cl
     * is set. */
    usi_error *(*repack)(usi_device *d, void *dst, int32_t dst_fmt, const void *src, int32_t src_fmt,
                         const int64_t *shape4, int32_t acc);
    /* Optional (NULL: never): 1 when the kernels of batch norm bn can apply
     * its only reader act (an activation) themselves (core/graph/fuse.c):
     * forward writes act's output into bn->data (act's memory); backward
     * reads act's gradient as bn->grad and its output as bn->data, and
     * takes the activation's derivative from them. act's calls then do
     * nothing. */
    int32_t (*fuses_act)(const usi_tensor *bn, const usi_tensor *act);

    /* -- memory -- */
    /* Zero-filled device memory, 64-byte aligned; NULL when out of memory. */
    void *(*alloc)(usi_device *d, size_t bytes);
    void (*free)(usi_device *d, void *p, size_t bytes);
    usi_error *(*upload)(usi_device *d, void *dst, const void *host_src, size_t bytes);
    usi_error *(*download)(usi_device *d, void *host_dst, const void *src, size_t bytes);
    usi_error *(*copy)(usi_device *d, void *dst, const void *src, size_t bytes);
    usi_error *(*fill)(usi_device *d, void *dst, int byte, size_t bytes);
    usi_error *(*synchronize)(usi_device *d);

    /* -- graph kernels -- */
    int32_t (*supports)(int32_t op);
    /* Set t's saved_bytes and fwd/bwd scratch sizes for the planner. */
    void (*workspace)(usi_tensor *t, int32_t training);
    /* t->data = op(t->src[*]->data). */
    usi_error *(*forward)(const usi_exec_ctx *ctx, usi_tensor *t);
    /* src[k]->grad (when non-NULL) = or += d/dsrc[k] given t->grad:
     * acc[k] = 0 overwrites, 1 adds. */
    usi_error *(*backward)(const usi_exec_ctx *ctx, usi_tensor *t,
                           const int32_t *acc);

    /* -- training-step kernels over flat float buffers -- */
    usi_error *(*optim_step)(usi_device *d, const usi_optim_args *a);
    /* ema = decay*ema + (1-decay)*w over n floats. */
    usi_error *(*ema_update)(usi_device *d, float *ema, const float *w, size_t n,
                             double decay);
    /* *out (host) = sum of x[i]^2 in double; NaN or inf when any x is. */
    usi_error *(*sum_squares)(usi_device *d, const float *x, size_t n, double *out);
    /* x *= s over n floats. */
    usi_error *(*scale)(usi_device *d, float *x, size_t n, double s);
    /* dst[n,c,oh,ow] = resize of a[ch]*src[n,c,h,w] + b[ch] with interp
     * USI_INTERP_* as PyTorch's F.interpolate (align_corners=False, no
     * antialias; bicubic A = -0.75); a, b: host, c entries. */
    usi_error *(*image_convert)(usi_device *d, float *dst, const float *src, int32_t n,
                                int32_t c, int32_t h, int32_t w, int32_t oh, int32_t ow,
                                int32_t interp, const float *a, const float *b);
    /* dst[n,c,y,x] = (src[n,y,x,c] / 255 - mean[c]) / std[c] for c < 3, src
     * uint8: the loader's normalisation (usi_u8_to_float_nchw), to the bit;
     * mean, std: host. */
    usi_error *(*u8_normalize)(usi_device *d, float *dst, const uint8_t *src, int32_t n, int32_t h, int32_t w,
                               const float *mean, const float *std);

    void (*set_threads)(int32_t n);
    int32_t (*threads)(void);

    /* Optional (NULL where unknown): free and total device memory, for
     * out-of-memory messages. */
    void (*mem_info)(usi_device *d, size_t *free_bytes, size_t *total_bytes);

    /* -- optional (NULL: none): the input path -- */
    /* Host memory uploads read fastest (pinned, on a GPU); NULL on failure. */
    void *(*host_alloc)(usi_device *d, size_t bytes);
    void (*host_free)(usi_device *d, void *p, size_t bytes);
    /* A stage: `slots` device buffers of `bytes` each. stage_put, from any
     * thread, copies host bytes into a slot on a queue of its own, once the
     * compute queue has finished the slot's last stage_take, and returns
     * when the host memory may be reused. stage_take queues, on the compute
     * queue, the copy of a slot's bytes to dst (device memory). */
    usi_error *(*stage_new)(usi_device *d, int32_t slots, size_t bytes, void **out);
    void (*stage_free)(usi_device *d, void *st);
    usi_error *(*stage_put)(usi_device *d, void *st, int32_t slot, size_t off, const void *host_src,
                            size_t bytes);
    usi_error *(*stage_take)(usi_device *d, void *st, int32_t slot, size_t off, void *dst, size_t bytes);

    /* -- optional (NULL: none): recorded work (CUDA graphs) --
     * record: the work run(ctx) queues goes into a recording instead of
     * running; an error (the reason) when the device could not record it,
     * and nothing ran. replay: queue the recorded work again, with the
     * addresses it was recorded with. rec_free frees a recording. */
    usi_error *(*record)(usi_device *d, usi_error *(*run)(void *ctx), void *ctx, void **rec);
    usi_error *(*replay)(usi_device *d, void *rec);
    void (*rec_free)(usi_device *d, void *rec);
} usi_backend;

/* A device: a backend and the state of one instance of it (a GPU's index,
 * streams and library handles). */
struct usi_device {
    char name[32];             /* "cpu", "cpu-guarded", "cuda:0" */
    const usi_backend *be;
    void *state;
    int32_t mixed;             /* precision "mixed" (usi_device_set_mixed): read
                                  when a graph is planned and kept with it */
};

const usi_backend *usi_cpu_backend(void);
const usi_backend *usi_cpu_guarded_backend(void);
/* The CUDA backend's table (builds with USI_HAVE_CUDA): its host-side
 * decisions (supports, workspace sizes) need no GPU. */
const usi_backend *usi_cuda_backend(void);

#endif
