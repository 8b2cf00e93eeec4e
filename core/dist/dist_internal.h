/* Shared by the files of core/dist built with MPI: the job's communicator. */
#ifndef USI_DIST_INTERNAL_H
#define USI_DIST_INTERNAL_H

#include <mpi.h>
#include <usi/plugin.h>

/* A duplicate of MPI_COMM_WORLD whose errors return (MPI_ERRORS_RETURN), so
 * they reach the caller as usi_error naming the rank; MPI_COMM_NULL before
 * usi_dist_init joined a job. */
MPI_Comm usi_dist_comm(void);
/* An MPI return code as an error: "<what> failed on rank R of W: <MPI's text>". */
usi_error *usi_dist_mpi_error(int rc, const char *what);

#endif
