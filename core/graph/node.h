/* The engine's node: what the graph records and what a backend runs. Shared
 * by core/graph and core/backend only; the rest of the core uses graph.h. */
#ifndef USI_CORE_GRAPH_NODE_H
#define USI_CORE_GRAPH_NODE_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

enum usi_op {
    USI_OP_INPUT = 0,
    USI_OP_PARAM,
    USI_OP_BUFFER,
    USI_OP_CONV2D,
    USI_OP_LINEAR,
    USI_OP_MATMUL,
    USI_OP_BATCH_NORM,
    USI_OP_LAYER_NORM,
    USI_OP_ACT,
    USI_OP_BINARY,
    USI_OP_SCALE,
    USI_OP_POOL2D,
    USI_OP_REDUCE,
    USI_OP_SOFTMAX,
    USI_OP_DROPOUT,
    USI_OP_DROP_PATH,
    USI_OP_RESHAPE,
    USI_OP_PERMUTE,
    USI_OP_CONCAT,
    USI_OP_SLICE,
    USI_OP_PAD,
    USI_OP_SPACE_TO_DEPTH,
    USI_OP_LOSS_SOFT_CE,
    USI_OP_LOSS_CE,
    USI_OP_LOSS_KL,
    USI_OP_CUSTOM,
    USI_OP_COUNT
};

/* Where a node's value lives once the graph is allocated. */
enum {
    USI_STORE_ARENA = 0,   /* planned offset in the shared arena          */
    USI_STORE_OWNED = 1    /* a leaf (inputs, params, buffers) in a flat block */
};

/* One node. Op attributes live in the small arrays ia/fa; each op's record
 * function documents its layout next to it. */
struct usi_tensor {
    struct usi_graph *graph;
    int32_t id;            /* index in graph->nodes: a topological order   */
    int32_t op;            /* USI_OP_*                                     */
    int32_t dtype;         /* USI_DTYPE_*                                  */
    int32_t ndim;
    int64_t shape[USI_MAX_DIMS];
    int64_t numel;
    int32_t n_src;
    struct usi_tensor **src;
    char *name;            /* scoped name                                  */

    int32_t ia[16];
    double fa[4];
    const void *custom_attrs;
    const usi_custom_op *custom;

    int32_t requires_grad; /* a gradient flows into this node              */
    int32_t frozen;        /* params: never given a gradient               */
    int32_t has_grad;      /* requires_grad and reaches the loss           */
    int32_t is_output;     /* value kept until the end of the step         */
    int32_t storage;       /* USI_STORE_*                                  */
    int32_t grad_writer;   /* id of the consumer whose backward runs first
                              and so writes (not adds) this gradient       */

    /* Device addresses, set at compile; never dereferenced outside
     * core/backend. Leaves keep their values in host `staging` until then. */
    void *data;
    float *grad;
    void *staging;
    /* Bytes an op keeps from forward to backward (batch statistics). */
    size_t saved_bytes;
    void *saved;
    /* Temporary bytes during this node's forward or backward only. */
    size_t fwd_scratch_bytes, bwd_scratch_bytes;
    void *fwd_scratch, *bwd_scratch;

    /* Planner results: offsets in the arena (leaves: in their flat block),
     * or SIZE_MAX when unplanned. */
    size_t data_off, grad_off, saved_off, fwd_scratch_off, bwd_scratch_off;

    /* Eval graphs: a conv writes its batch norm's output with the norm folded
     * into its weights (conv->fold_bn); the norm node then does nothing. */
    struct usi_tensor *fold_bn;
    int32_t folded;

    /* A backend's cached state for this node (oneDNN primitives). */
    void *backend_state;
    void (*backend_state_free)(void *state);
};

/* What an op's backward reads: a bit per source whose value it needs, and
 * whether it needs its own output (core/graph/autodiff.c). */
void usi_op_backward_needs(const struct usi_tensor *t, uint32_t *src_mask,
                           int32_t *needs_out);

static inline size_t usi_dtype_size(int32_t dtype)
{
    switch (dtype) {
    case USI_DTYPE_BF16:
    case USI_DTYPE_F16: return 2;
    case USI_DTYPE_I64: return 8;
    case USI_DTYPE_U8: return 1;
    default: return 4;
    }
}

static inline size_t usi_node_bytes(const struct usi_tensor *t)
{
    return (size_t)t->numel * usi_dtype_size(t->dtype);
}

#endif
