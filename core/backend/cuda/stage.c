/* The input path on a GPU: pinned host memory, and stages that a loader
 * thread fills on a copy stream of their own while the compute stream runs
 * the previous step (backend.h: stage_*).
 *
 *   put (loader thread):  copy stream waits for the slot's `taken` event,
 *                         host -> slot, then the thread waits for the copy;
 *   take (step):          compute stream copies slot -> dst, records `taken`.
 *
 * An event never recorded is complete, so the first put into a slot does
 * not wait. */
#include <stdlib.h>

#include "backend/cuda/cuda.h"

typedef struct cuda_stage {
    int32_t slots;
    size_t bytes;
    char *mem;               /* slots x bytes, device                       */
    cudaStream_t copy;
    cudaEvent_t *taken;      /* per slot: the compute stream read it        */
} cuda_stage;

void *usi_cuda_host_alloc(usi_device *d, size_t bytes)
{
    usi_cuda *c = usi_cuda_of(d);
    usi_error *e = usi_cuda_use(c);
    if (e) {
        usi_error_free(e);
        return NULL;
    }
    void *p = NULL;
    if (cudaHostAlloc(&p, bytes, cudaHostAllocPortable) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return p;
}

void usi_cuda_host_free(usi_device *d, void *p, size_t bytes)
{
    (void)d;
    (void)bytes;
    if (p && cudaFreeHost(p) != cudaSuccess) (void)cudaGetLastError();
}

void usi_cuda_stage_free(usi_device *d, void *st)
{
    cuda_stage *s = st;
    if (!s) return;
    usi_error_free(usi_cuda_use(usi_cuda_of(d)));
    if (s->copy) cudaStreamSynchronize(s->copy);
    for (int32_t i = 0; s->taken && i < s->slots; i++)
        if (s->taken[i]) cudaEventDestroy(s->taken[i]);
    if (s->copy) cudaStreamDestroy(s->copy);
    if (s->mem) cudaFree(s->mem);
    (void)cudaGetLastError();
    free(s->taken);
    free(s);
}

static usi_error *stage_init(cuda_stage *s)
{
    CUDA_TRY(cudaMalloc((void **)&s->mem, (size_t)s->slots * s->bytes));
    CUDA_TRY(cudaStreamCreateWithFlags(&s->copy, cudaStreamNonBlocking));
    for (int32_t i = 0; i < s->slots; i++)
        CUDA_TRY(cudaEventCreateWithFlags(&s->taken[i], cudaEventDisableTiming));
    return NULL;
}

usi_error *usi_cuda_stage_new(usi_device *d, int32_t slots, size_t bytes, void **out)
{
    *out = NULL;
    USI_TRY(usi_cuda_use(usi_cuda_of(d)));
    cuda_stage *s = calloc(1, sizeof *s);
    if (s) s->taken = calloc((size_t)slots, sizeof *s->taken);
    if (!s || !s->taken) {
        free(s);
        return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    }
    s->slots = slots;
    s->bytes = bytes;
    usi_error *e = stage_init(s);
    if (e) {
        usi_cuda_stage_free(d, s);
        return e;
    }
    *out = s;
    return NULL;
}

usi_error *usi_cuda_stage_put(usi_device *d, void *st, int32_t slot, size_t off, const void *host_src,
                              size_t bytes)
{
    cuda_stage *s = st;
    USI_TRY(usi_cuda_use(usi_cuda_of(d)));
    CUDA_TRY(cudaStreamWaitEvent(s->copy, s->taken[slot], 0));
    CUDA_TRY(cudaMemcpyAsync(s->mem + (size_t)slot * s->bytes + off, host_src, bytes, cudaMemcpyHostToDevice,
                             s->copy));
    CUDA_TRY(cudaStreamSynchronize(s->copy));
    return NULL;
}

usi_error *usi_cuda_stage_take(usi_device *d, void *st, int32_t slot, size_t off, void *dst, size_t bytes)
{
    cuda_stage *s = st;
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    CUDA_TRY(cudaMemcpyAsync(dst, s->mem + (size_t)slot * s->bytes + off, bytes, cudaMemcpyDeviceToDevice,
                             c->stream));
    CUDA_TRY(cudaEventRecord(s->taken[slot], c->stream));
    return NULL;
}
