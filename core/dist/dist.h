/* Distributed runs: which process this is among how many, and the few
 * collectives the trainer needs besides the gradient all-reduce
 * (core/dist/reducer.h). MPI launches and bootstraps the job (`mpirun -np N
 * usi train ...`); without a launcher, or in a build without MPI, the world
 * is this one process and every collective is a no-op.
 *
 * The process state is global, as MPI's is: usi_dist_init once, from the
 * main thread, before anything else here. Only the main thread calls MPI. */
#ifndef USI_DIST_DIST_H
#define USI_DIST_DIST_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

#include "backend/collective.h"
#include "backend/device.h"

/* The number of processes an MPI launcher (mpirun, mpiexec, srun with PMI)
 * started this one among, from its environment; 1 when none did. */
int32_t usi_dist_launcher_world(void);

/* Join the job: MPI when a launcher started several processes (or one, so
 * `mpirun -np 1` behaves as N), else a world of one without touching MPI.
 * A build without MPI refuses a launch of several, which would otherwise
 * train that many separate copies. */
usi_error *usi_dist_init(void);
/* Leave the job (MPI_Finalize after a barrier); a no-op when not joined. */
void usi_dist_finalize(void);
/* End every process of the job at once with this exit code, after this
 * process's message is out: for core/cli when a rank fails. Returns only
 * when there is no job to end. */
void usi_dist_abort(int code);

int32_t usi_dist_rank(void);
int32_t usi_dist_world(void);
/* The rank among processes on this host (one GPU each with device cuda). */
int32_t usi_dist_local_rank(void);
/* 1 when this build has MPI / NCCL compiled in. */
int32_t usi_dist_have_mpi(void);
int32_t usi_dist_have_nccl(void);

/* Collectives over every rank; on a world of one they leave data as it is. */
usi_error *usi_dist_sum_f64(double *v, int32_t n);
usi_error *usi_dist_sum_i64(int64_t *v, int32_t n);
/* bytes of host memory from rank 0 to every rank. */
usi_error *usi_dist_bcast(void *host, size_t bytes);
/* bytes of a device block from rank 0's to every rank's, through host
 * memory (device memory is reached only through device.h calls). */
usi_error *usi_dist_bcast_dbuf(usi_dbuf *b, size_t off, size_t bytes);
usi_error *usi_dist_barrier(void);

/* Sums over every rank for the kernels of a training graph (dist.sync_bn;
 * backend/collective.h, usi_graph_set_collective) on transport "mpi" (host
 * arrays over MPI) or "nccl" (device arrays of dev, a CUDA device, with
 * NCCL on the backend's stream; host arrays over MPI). Every rank makes it
 * at the same point, as it makes the gradient reducer. An error outside an
 * MPI job or in a build without the transport. */
usi_error *usi_dist_collective_new(usi_device *dev, const char *transport, usi_collective **out);
void usi_dist_collective_free(usi_collective *c);

#endif
