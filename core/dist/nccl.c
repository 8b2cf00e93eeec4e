/* Gradient buckets summed over ranks with NCCL on each rank's GPU. The
 * communicator is bootstrapped over MPI: rank 0 makes the unique id and
 * broadcasts it. Backward's kernels run on the device's own stream, which
 * this file does not see: a bucket starts after usi_device_synchronize (its
 * gradients are then written) on a stream of its own, so later backward
 * kernels and the reduction run side by side. Also the device sums batch
 * norm makes over ranks under dist.sync_bn (usi_nccl_sums_*), on the
 * backend's stream. */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "backend/device_internal.h"
#include "dist/dist.h"
#include "dist/dist_internal.h"
#include "dist/reducer.h"
#include "util/error.h"

typedef struct nccl_tr {
    ncclComm_t comm;
    cudaStream_t stream;
    usi_device *dev;
    int has_comm, has_stream, pending;
} nccl_tr;

static usi_error *cuda_fail(cudaError_t rc, const char *what)
{
    return usi_error_new(USI_ERR_IO, "%s failed on rank %d: %s", what, (int)usi_dist_rank(),
                         cudaGetErrorString(rc));
}

static usi_error *nccl_fail(ncclResult_t rc, const char *what)
{
    return usi_error_new(USI_ERR_IO, "%s failed on rank %d: %s", what, (int)usi_dist_rank(),
                         ncclGetErrorString(rc));
}

static usi_error *start(void *ctx, usi_dbuf *grads, size_t off, size_t bytes)
{
    nccl_tr *n = ctx;
    USI_TRY(usi_device_synchronize(n->dev));
    float *p = usi_dbuf_addr(grads, off);
    ncclResult_t rc = ncclAllReduce(p, p, bytes / sizeof(float), ncclFloat, ncclSum, n->comm, n->stream);
    if (rc != ncclSuccess) return nccl_fail(rc, "ncclAllReduce");
    n->pending = 1;
    return NULL;
}

/* NCCL progresses on the GPU by itself; report a failed peer early. */
static usi_error *progress(void *ctx)
{
    nccl_tr *n = ctx;
    ncclResult_t async = ncclSuccess;
    ncclResult_t rc = ncclCommGetAsyncError(n->comm, &async);
    if (rc != ncclSuccess) return nccl_fail(rc, "ncclCommGetAsyncError");
    return async == ncclSuccess ? NULL : nccl_fail(async, "the NCCL all-reduce");
}

static usi_error *wait_all(void *ctx, usi_dbuf *grads)
{
    (void)grads;
    nccl_tr *n = ctx;
    if (!n->pending) return NULL;
    n->pending = 0;
    cudaError_t rc = cudaStreamSynchronize(n->stream);
    if (rc != cudaSuccess) return cuda_fail(rc, "cudaStreamSynchronize");
    return progress(ctx);
}

static void tr_free(void *ctx)
{
    nccl_tr *n = ctx;
    if (!n) return;
    if (n->has_stream) {
        cudaStreamSynchronize(n->stream);
        cudaStreamDestroy(n->stream);
    }
    if (n->has_comm) ncclCommDestroy(n->comm);
    free(n);
}

static const usi_transport nccl_ops = {"nccl", start, progress, wait_all, tr_free};

/* "cuda:N" -> N. */
static int device_ordinal(const usi_device *d)
{
    const char *name = usi_device_name(d);
    if (strncmp(name, "cuda", 4) != 0) return -1;
    return name[4] == ':' ? atoi(name + 5) : 0;
}

/* A communicator over every rank on dev's GPU: rank 0 makes the unique id
 * and broadcasts it over MPI. */
static usi_error *comm_init(usi_device *dev, const char *what, ncclComm_t *comm)
{
    int ordinal = device_ordinal(dev);
    if (ordinal < 0)
        return usi_error_new(USI_ERR_INVALID, "%s = \"nccl\" needs device = \"cuda\" (this run is on %s); "
                             "use dist.backend = \"mpi\" on CPUs", what, usi_device_name(dev));
    usi_error *e = NULL;
    cudaError_t crc = cudaSetDevice(ordinal);
    if (crc != cudaSuccess) e = cuda_fail(crc, "cudaSetDevice");
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (!e && usi_dist_rank() == 0) {
        ncclResult_t rc = ncclGetUniqueId(&id);
        if (rc != ncclSuccess) e = nccl_fail(rc, "ncclGetUniqueId");
    }
    /* Every rank takes part in the broadcast, even after an error here, so
     * none waits for a peer that has given up. */
    usi_error *b = usi_dist_bcast(&id, sizeof id);
    if (!e) e = b;
    else usi_error_free(b);
    if (!e) {
        ncclResult_t rc = ncclCommInitRank(comm, usi_dist_world(), id, usi_dist_rank());
        if (rc != ncclSuccess) e = nccl_fail(rc, "ncclCommInitRank");
    }
    return e;
}

usi_error *usi_transport_nccl(usi_dbuf *grads, size_t bytes, int32_t max_buckets, const usi_transport **ops,
                              void **ctx)
{
    (void)bytes;
    (void)max_buckets;
    usi_device *dev = usi_dbuf_device(grads);
    if (device_ordinal(dev) < 0)
        return usi_error_new(USI_ERR_INVALID, "dist.backend = \"nccl\" needs device = \"cuda\" (this run is on %s); "
                             "use dist.backend = \"mpi\" on CPUs", usi_device_name(dev));
    nccl_tr *n = calloc(1, sizeof *n);
    if (!n) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    n->dev = dev;
    usi_error *e = comm_init(dev, "dist.backend", &n->comm);
    if (!e) n->has_comm = 1;
    if (!e) {
        cudaError_t crc = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking);
        if (crc != cudaSuccess) e = cuda_fail(crc, "cudaStreamCreateWithFlags");
        else n->has_stream = 1;
    }
    if (e) {
        tr_free(n);
        return e;
    }
    *ops = &nccl_ops;
    *ctx = n;
    return NULL;
}

/* ---- the kernels' device sums (collective.c) ----
 * A communicator apart from the gradient transport's: the batch-norm sums
 * run on the backend's stream between kernels while gradient buckets may
 * be in flight on the transport's stream, and each communicator then sees
 * its operations in one order on one stream, the same on every rank. */

typedef struct nccl_sums {
    ncclComm_t comm;
} nccl_sums;

usi_error *usi_nccl_sums_new(usi_device *dev, void **out)
{
    *out = NULL;
    nccl_sums *s = calloc(1, sizeof *s);
    if (!s) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = comm_init(dev, "dist.sync_bn with dist.backend", &s->comm);
    if (e) {
        free(s);
        return e;
    }
    *out = s;
    return NULL;
}

usi_error *usi_nccl_sums_run(void *sums, double *v, int32_t n, void *stream)
{
    nccl_sums *s = sums;
    ncclResult_t rc = ncclAllReduce(v, v, (size_t)n, ncclFloat64, ncclSum, s->comm, (cudaStream_t)stream);
    return rc == ncclSuccess ? NULL : nccl_fail(rc, "ncclAllReduce (batch-norm statistics)");
}

void usi_nccl_sums_free(void *sums)
{
    nccl_sums *s = sums;
    if (!s) return;
    ncclCommDestroy(s->comm);
    free(s);
}
