/* Recorded work: a stream capture of what one call queues, instantiated as
 * a CUDA graph and launched again later with one call (backend.h: record,
 * replay). The capture is thread-local, so the loader's thread may upload on
 * its own stream meanwhile. */
#include "backend/cuda/cuda.h"

usi_error *usi_cuda_record(usi_device *d, usi_error *(*run)(void *ctx), void *ctx, void **rec)
{
    *rec = NULL;
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    CUDA_TRY(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    usi_error *e = run(ctx);
    cudaGraph_t graph = NULL;
    cudaError_t st = cudaStreamEndCapture(c->stream, &graph);
    if (e || st != cudaSuccess) {
        if (graph) cudaGraphDestroy(graph);
        (void)cudaGetLastError();
        if (e) return e;
        return usi_cuda_fail(st, "cudaStreamEndCapture(c->stream, &graph)", __FILE__, __LINE__);
    }
    cudaGraphExec_t exec = NULL;
    st = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (st != cudaSuccess) {
        (void)cudaGetLastError();
        return usi_cuda_fail(st, "cudaGraphInstantiate(&exec, graph, 0)", __FILE__, __LINE__);
    }
    *rec = exec;
    return NULL;
}

usi_error *usi_cuda_replay(usi_device *d, void *rec)
{
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    CUDA_TRY(cudaGraphLaunch((cudaGraphExec_t)rec, c->stream));
    return NULL;
}

void usi_cuda_rec_free(usi_device *d, void *rec)
{
    if (!rec) return;
    usi_error_free(usi_cuda_use(usi_cuda_of(d)));
    if (cudaGraphExecDestroy((cudaGraphExec_t)rec) != cudaSuccess) (void)cudaGetLastError();
}
