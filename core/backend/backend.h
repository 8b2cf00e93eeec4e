/* A backend: kernels for the engine's ops behind a table, chosen per node by
 * supports(op). The graph plans memory and order; a backend only computes. */
#ifndef USI_CORE_BACKEND_H
#define USI_CORE_BACKEND_H

#include <stdint.h>
#include <usi/plugin.h>

#include "graph/node.h"

typedef struct usi_exec_ctx {
    int32_t training;
    uint64_t seed;     /* graph seed and forward count: dropout masks are */
    uint64_t step;     /* a pure function of (seed, step, node id)        */
} usi_exec_ctx;

typedef struct usi_backend {
    const char *name;
    int32_t (*supports)(int32_t op);
    /* Set t's saved_bytes and fwd/bwd scratch sizes for the planner. */
    void (*workspace)(usi_tensor *t, int32_t training);
    /* t->data = op(t->src[*]->data). */
    usi_error *(*forward)(const usi_exec_ctx *ctx, usi_tensor *t);
    /* src[k]->grad (when non-NULL) = or += d/dsrc[k] given t->grad:
     * acc[k] = 0 overwrites, 1 adds. */
    usi_error *(*backward)(const usi_exec_ctx *ctx, usi_tensor *t,
                           const int32_t *acc);
    void (*set_threads)(int32_t n);
    int32_t (*threads)(void);
} usi_backend;

const usi_backend *usi_cpu_backend(void);

#endif
