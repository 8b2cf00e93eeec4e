/* Shared by the files of core/dist built with MPI: the job's communicator. */
#ifndef USI_DIST_INTERNAL_H
#define USI_DIST_INTERNAL_H

#include <mpi.h>
#include <usi/plugin.h>

#include "backend/device.h"

/* A duplicate of MPI_COMM_WORLD whose errors return (MPI_ERRORS_RETURN), so
 * they reach the caller as usi_error naming the rank; MPI_COMM_NULL before
 * usi_dist_init joined a job. */
MPI_Comm usi_dist_comm(void);
/* An MPI return code as an error: "<what> failed on rank R of W: <MPI's text>". */
usi_error *usi_dist_mpi_error(int rc, const char *what);

#ifdef USI_HAVE_NCCL
/* NCCL for the kernels' device sums (collective.c, backend/collective.h): a
 * communicator of its own on dev's GPU, bootstrapped over MPI like the
 * gradient transport's; every rank calls new at the same point. */
usi_error *usi_nccl_sums_new(usi_device *dev, void **out);
/* n doubles of device memory summed over ranks in place on `stream` (a
 * cudaStream_t), without waiting. */
usi_error *usi_nccl_sums_run(void *sums, double *v, int32_t n, void *stream);
void usi_nccl_sums_free(void *sums);
#endif

#endif
