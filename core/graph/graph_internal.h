/* Shared by the files of core/graph: the graph struct and recording helpers. */
#ifndef USI_CORE_GRAPH_INTERNAL_H
#define USI_CORE_GRAPH_INTERNAL_H

#include "graph/graph.h"
#include "graph/node.h"

#define USI_MAX_SCOPES 64

struct usi_graph {
    usi_device *dev;
    int32_t training;
    uint64_t seed;
    uint64_t step;               /* forward passes run: keys dropout masks */
    usi_tensor **nodes;
    int32_t n_nodes, cap_nodes;
    char *scope[USI_MAX_SCOPES];
    int32_t n_scope;
    int32_t scope_overflow;      /* pushes past USI_MAX_SCOPES, to pop    */
    char *error;                 /* the first recording error             */
    usi_tensor *loss;
    double loss_scale;
    const float *loss_seed;
    int32_t compiled;
    /* Device blocks, made at compile (planner.c). */
    usi_dbuf *arena;             /* activations, their gradients, scratch  */
    usi_dbuf *params, *grads, *buffers, *inputs;
    size_t n_params, n_trainable, n_f32_buffers;
    size_t arena_bytes, naive_bytes;
    float *seed_host;            /* the loss gradient, uploaded each step  */
    char *bb_defaults_name;      /* options a weights file stores for the  */
    char *bb_defaults;           /* backbone of that name (teachers)       */
    struct usi_graph_cleanup *cleanups;
    struct usi_grad_ready *grad_ready;  /* the gradient-ready hook (grad_ready.c) */
    struct usi_graph_profile *prof;     /* time per op when profiling (profile.c) */
    int32_t keep_all;            /* no reuse: every value and gradient lives to the end */
    struct usi_collective *coll;        /* sums over ranks for the kernels, or NULL */
    struct usi_replay *replay;          /* recorded forward passes (replay.c), or NULL */
};

/* Forward of every node, and backward of every node after the loss's
 * gradient is set, eagerly, at g->step (exec.c). */
usi_error *usi_graph_forward_nodes(usi_graph *g);
usi_error *usi_graph_backward_nodes(usi_graph *g);
/* The loss's gradient (the loss scale, or the caller's seed) into place. */
usi_error *usi_graph_seed_loss(usi_graph *g);
/* Recorded passes (replay.c): 1 when g's forward (bwd 0) or backward
 * (bwd 1) goes through usi_replay_forward/backward; usi_replay_drop forgets
 * the recordings (the arena moved). */
int32_t usi_replay_wanted(usi_graph *g, int32_t bwd);
usi_error *usi_replay_forward(usi_graph *g);
usi_error *usi_replay_backward(usi_graph *g);
void usi_replay_drop(usi_graph *g);

struct usi_graph_cleanup {
    void (*fn)(void *ctx);
    void *ctx;
    struct usi_graph_cleanup *next;
};

/* Profiling around one node (profile.c); only while g->prof is set. */
usi_error *usi_profile_begin(usi_graph *g, double *t0);
usi_error *usi_profile_end(usi_graph *g, const usi_tensor *t, int backward, double t0);

/* Record the first error only; later ones are consequences of it. */
#define usi_graph_fail usi_graph_set_error

/* A new node of op with the current scope; NULL (and an error) when memory
 * runs out or the graph is compiled. Inputs are copied. */
usi_tensor *usi_node_new(usi_graph *g, int32_t op, const char *opname,
                         int32_t n_src, usi_tensor *const *src);
/* Set shape; fails the graph for ndim outside 0..USI_MAX_DIMS. */
int usi_node_set_shape(usi_tensor *t, int32_t ndim, const int64_t *shape);
/* 0 for a custom op without backward_cpu: it stops gradients. */
int usi_node_passes_grad(const usi_tensor *t);

/* "[2,3,7,5]" into buf. */
const char *usi_shape_str(const usi_tensor *t, char *buf, size_t cap);
const char *usi_dims_str(int32_t ndim, const int64_t *shape, char *buf,
                         size_t cap);

/* Leaves with storage of their own, named by the current scope. */
usi_tensor *usi_graph_param_new(usi_graph *g, const char *name, int32_t ndim,
                                const int64_t *shape, const usi_init *init);
usi_tensor *usi_graph_buffer_new(usi_graph *g, const char *name, int32_t dtype,
                                 int32_t ndim, const int64_t *shape,
                                 const usi_init *init);

/* A constant leaf holding a copy of `data` (F32 or I32): not a parameter
 * or buffer, so never trained, saved or loaded. */
usi_tensor *usi_graph_constant_new(usi_graph *g, const char *name, int32_t dtype,
                                   int32_t ndim, const int64_t *shape, const void *data);

/* Initialise a float parameter's data by its initialiser. */
void usi_init_fill(float *data, int32_t ndim, const int64_t *shape,
                   const usi_init *init, uint64_t seed, const char *name);

/* Autodiff and planner (autodiff.c, planner.c). usi_graph_place lays the
 * leaves out in their flat blocks and moves their values there. */
usi_error *usi_graph_derive_backward(usi_graph *g);
usi_error *usi_graph_plan(usi_graph *g);
/* The plan's offsets and sizes only, nothing allocated (planner.c). */
usi_error *usi_graph_plan_layout(usi_graph *g);
usi_error *usi_graph_place(usi_graph *g);
/* The block a node's value lives in (NULL when none) and its byte offset. */
usi_dbuf *usi_node_block(const usi_tensor *t, size_t *off);
usi_dbuf *usi_node_grad_block(const usi_tensor *t, size_t *off);

/* A custom op on a device whose memory host code cannot touch: its host
 * kernels on host copies of its tensors (custom_host.c). */
usi_error *usi_custom_forward_host(usi_graph *g, usi_tensor *t);
usi_error *usi_custom_backward_host(usi_graph *g, usi_tensor *t, const int32_t *acc);

/* The gradient-ready hook around backward (grad_ready.c): begin before the
 * first node, after each node with its id. NULL does nothing. */
typedef struct usi_grad_ready usi_grad_ready;
void usi_grad_ready_begin(usi_grad_ready *r);
void usi_grad_ready_after(usi_grad_ready *r, int32_t node);

/* Precision "mixed" in memory (precision.c). mark sets t->bf16 on the
 * nodes kept as bf16 (none unless the device runs "mixed" with bf16
 * storage) and returns their count; widen_sizes sets t's widen_fwd_bytes
 * and widen_bwd_bytes for the planner; run calls kernel (forward when acc
 * is NULL) on fp32 copies of t's bf16 operands where the device's kernel
 * takes fp32 only, else directly. */
struct usi_exec_ctx;
typedef usi_error *(*usi_precision_kernel)(usi_graph *g, const struct usi_exec_ctx *ctx, usi_tensor *t,
                                           const int32_t *acc);
int32_t usi_precision_mark(usi_graph *g);
/* Channels-last activations (layout.c): mark sets t->cl on the 4-d values
 * kept as [N,H,W,C] (none unless the device prefers it) and returns their
 * count. Run after usi_precision_mark; the executor's copies are
 * usi_precision_run's. */
int32_t usi_layout_mark(usi_graph *g);
/* The most sources a node may have for the executor's fp32 copies; the
 * sources of a bigger node stay fp32 NCHW. */
#define USI_MAX_HELD 64
/* The end of a marking pass over the int32_t flag at `field` (offsetof
 * usi_tensor: bf16, cl): the sources of a node of over USI_MAX_HELD inputs
 * cleared, a conv with its norm folded in taking the norm's mark. Returns
 * the nodes marked. */
int32_t usi_marks_settle(usi_graph *g, size_t field);
void usi_precision_widen_sizes(usi_graph *g, usi_tensor *t);
/* 1 when t's kernel (backward 0: forward, 1: backward) runs on its values
 * as they are kept, without the executor's copies. */
int32_t usi_precision_direct(const usi_graph *g, const usi_tensor *t, int32_t backward);
/* Batch norms that apply their activation (fuse.c): sets bn->fuse_act and
 * act->fused where the backend fuses the pair, after the precision and
 * layout marks; returns the pairs. */
int32_t usi_fuse_mark(usi_graph *g);
usi_error *usi_precision_run(usi_graph *g, const struct usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc,
                             usi_precision_kernel kernel);

/* Builder ops, the table's entries (build_*.c). */
const usi_graph_api *usi_graph_builder(void);

#endif
