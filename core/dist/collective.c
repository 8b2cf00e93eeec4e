/* The kernels' sums over ranks (backend/collective.h) in an MPI job: host
 * arrays with MPI_Allreduce on a communicator of their own (the gradient
 * buckets' non-blocking reductions never share one with them), and on CUDA
 * devices with the NCCL transport, device arrays with ncclAllReduce on the
 * backend's stream (nccl.c). */
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "dist/dist_internal.h"
#include "util/error.h"

typedef struct coll {
    usi_collective pub;          /* first: the kernels' handle */
    MPI_Comm comm;
    void *nccl;                  /* device sums (nccl.c), or NULL */
} coll;

static usi_error *sum_host(usi_collective *c, double *v, int32_t n)
{
    coll *k = (coll *)c;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, k->comm);
    return rc == MPI_SUCCESS ? NULL : usi_dist_mpi_error(rc, "MPI_Allreduce (batch-norm statistics)");
}

#ifdef USI_HAVE_NCCL
static usi_error *sum_device(usi_collective *c, double *v, int32_t n, void *queue)
{
    return usi_nccl_sums_run(((coll *)c)->nccl, v, n, queue);
}
#endif

usi_error *usi_dist_collective_new(usi_device *dev, const char *transport, usi_collective **out)
{
    *out = NULL;
    if (usi_dist_comm() == MPI_COMM_NULL)
        return usi_error_new(USI_ERR_INVALID, "dist.sync_bn with dist.backend = \"%s\" needs a run started by "
                             "mpirun (`mpirun -np N usi train ...`)", transport);
    int nccl = !strcmp(transport, "nccl");
    if (!nccl && strcmp(transport, "mpi"))
        return usi_error_new(USI_ERR_INVALID, "dist.backend = \"%s\": use \"mpi\" or \"nccl\"", transport);
#ifndef USI_HAVE_NCCL
    if (nccl)
        return usi_error_new(USI_ERR_UNSUPPORTED, "dist.sync_bn over NCCL: this usi was built without NCCL; "
                             "rebuild with `meson setup -Dcuda=enabled -Dmpi=enabled` where /usr/local/cuda has "
                             "NCCL");
#endif
    coll *k = calloc(1, sizeof *k);
    if (!k) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    k->comm = MPI_COMM_NULL;
    k->pub.sum_host = sum_host;
    k->pub.world = usi_dist_world();
    k->pub.impl = k;
    usi_error *e = NULL;
    int rc = MPI_Comm_dup(usi_dist_comm(), &k->comm);
    if (rc != MPI_SUCCESS) e = usi_dist_mpi_error(rc, "MPI_Comm_dup");
    if (!e) {
        rc = MPI_Comm_set_errhandler(k->comm, MPI_ERRORS_RETURN);
        if (rc != MPI_SUCCESS) e = usi_dist_mpi_error(rc, "MPI_Comm_set_errhandler");
    }
#ifdef USI_HAVE_NCCL
    if (!e && nccl) {
        e = usi_nccl_sums_new(dev, &k->nccl);
        if (!e) k->pub.sum_device = sum_device;
    }
#else
    (void)dev;
#endif
    if (e) {
        usi_dist_collective_free(&k->pub);
        return e;
    }
    *out = &k->pub;
    return NULL;
}

void usi_dist_collective_free(usi_collective *c)
{
    if (!c) return;
    coll *k = (coll *)c;
#ifdef USI_HAVE_NCCL
    usi_nccl_sums_free(k->nccl);
#endif
    int done = 0;
    MPI_Finalized(&done);
    if (k->comm != MPI_COMM_NULL && !done) MPI_Comm_free(&k->comm);
    free(k);
}
