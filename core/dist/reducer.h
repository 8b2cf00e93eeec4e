/* The gradient all-reduce of a distributed step: the trainable gradient
 * block is cut into buckets at parameter boundaries, from the top, since
 * backward finishes the last-recorded parameters first. With overlap, a
 * bucket's reduction starts as soon as backward has finished every gradient
 * in it (the graph's gradient-ready hook), and the step waits only for what
 * is still in flight when backward ends.
 *
 * Transports: MPI non-blocking all-reduce (MPI_Iallreduce) on CPU devices,
 * in place where device memory is host memory and through a host copy
 * elsewhere (cpu-guarded); NCCL on CUDA devices (core/dist/nccl.c). */
#ifndef USI_DIST_REDUCER_H
#define USI_DIST_REDUCER_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

#include "backend/device.h"
#include "graph/graph.h"

typedef struct usi_reducer_opts {
    size_t bucket_bytes;     /* cap of a bucket (one parameter may exceed it) */
    int32_t overlap;         /* start buckets during backward                 */
    const char *transport;   /* "mpi" or "nccl"                               */
} usi_reducer_opts;

typedef struct usi_reducer_stats {
    int32_t buckets;
    int64_t steps;
    int64_t early;           /* buckets started during backward (overlap)     */
    double wait_s;           /* total time finish() spent (exposed reduction) */
    double last_wait_s;
} usi_reducer_stats;

typedef struct usi_reducer usi_reducer;

/* A reducer over g's trainable gradients (g compiled, training); with
 * overlap it installs itself as g's gradient-ready hook. */
usi_error *usi_reducer_new(usi_graph *g, const usi_reducer_opts *o, usi_reducer **out);
void usi_reducer_free(usi_reducer *r);
/* The trainer's reduction hook (usi_grad_reduce_fn): every rank's gradients
 * summed into grads (n floats: g's trainable block). Not averaged: the
 * trainer divides by the number of ranks that trained in this step. */
usi_error *usi_reducer_finish(void *reducer, usi_dbuf *grads, size_t n);
void usi_reducer_get_stats(const usi_reducer *r, usi_reducer_stats *out);
/* hold 1: backward starts no bucket (the gradient-ready hook is off) until
 * hold 0, for a pass whose gradients are dropped before finish (a rank
 * without a batch that still runs for dist.sync_bn); finish then reduces
 * every bucket as it is. */
usi_error *usi_reducer_hold(usi_reducer *r, int32_t hold);

/* A transport: start a bucket's sum over ranks, let pending ones progress,
 * complete every started one. Offsets and sizes in bytes. */
typedef struct usi_transport {
    const char *name;
    usi_error *(*start)(void *ctx, usi_dbuf *grads, size_t off, size_t bytes);
    usi_error *(*progress)(void *ctx);
    usi_error *(*wait_all)(void *ctx, usi_dbuf *grads);
    void (*free)(void *ctx);
} usi_transport;

/* MPI_Iallreduce over the job's communicator (mpi_reduce.c); an error in a
 * build without MPI. */
usi_error *usi_transport_mpi(usi_dbuf *grads, size_t bytes, int32_t max_buckets, const usi_transport **ops,
                             void **ctx);
/* NCCL on the CUDA device of grads (nccl.c); an error in a build without it. */
usi_error *usi_transport_nccl(usi_dbuf *grads, size_t bytes, int32_t max_buckets, const usi_transport **ops,
                              void **ctx);

#endif
