/* Sums over the processes of a distributed run that kernels make while a
 * graph runs: batch norm with statistics over every rank (dist.sync_bn).
 *
 * core/dist makes one (usi_dist_collective_new) on the run's transport; the
 * trainer hands it to its training graph (usi_graph_set_collective), whose
 * kernels find it in usi_exec_ctx.coll (NULL: no sums, every statistic is
 * this process's own). Each rank runs the same graph, so its kernels make
 * the same sums in the same order as every other rank's; a kernel decides
 * whether to make one from the node alone, never from its data.
 *
 * Only the thread that runs the graph calls these (MPI is funnelled through
 * the main thread), outside any parallel region. */
#ifndef USI_CORE_BACKEND_COLLECTIVE_H
#define USI_CORE_BACKEND_COLLECTIVE_H

#include <stdint.h>
#include <usi/plugin.h>

typedef struct usi_collective usi_collective;

struct usi_collective {
    /* n doubles of host memory summed over every rank, in place; done when
     * it returns. Every device can use it (the CPU kernels' own arrays). */
    usi_error *(*sum_host)(usi_collective *c, double *v, int32_t n);
    /* n doubles of device memory summed over every rank, in place, ordered
     * on `queue` (the CUDA backend's stream) after the work queued before
     * it, without waiting. NULL where the transport has no device path:
     * device kernels then go through host memory and sum_host. */
    usi_error *(*sum_device)(usi_collective *c, double *v, int32_t n, void *queue);
    /* 1 while this rank has no batch of its own (one left out after bad
     * files): its passes still make every sum, adding zeros and a count of
     * 0, so the ranks that have one are not kept waiting. Set by the
     * trainer around such a pass. */
    int32_t idle;
    int32_t world;
    void *impl;
};

#endif
