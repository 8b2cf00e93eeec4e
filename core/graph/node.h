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
    USI_OP_CONSTANT,
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
    USI_OP_GATHER,
    USI_OP_LOSS_SOFT_CE,
    USI_OP_LOSS_CE,
    USI_OP_LOSS_KL,
    USI_OP_CUSTOM,
    USI_OP_COUNT
};

/* Where a node's value lives once the graph is allocated. */
enum {
    USI_STORE_ARENA = 0,   /* planned offset in the shared arena          */
    USI_STORE_OWNED = 1    /* a leaf (inputs, params, buffers, constants) in
                              a flat block                                 */
};

/* Op attributes: one struct per op that keeps any, read through the node's
 * attrs union by its op. The record functions (core/graph/build_*.c) store
 * them already resolved (negative axes made positive, slice starts clamped),
 * so a backend applies no rules of its own. What the shapes already say is
 * not repeated: kernel extents are the weight's dims, a bias is present when
 * n_src is 3, output lengths (ceil_mode, keepdim, slice end, pad after) are
 * the node's shape. Ops not listed have no attributes. */

struct usi_attrs_conv2d {
    int64_t stride[2];        /* h, w; >= 1                                  */
    int64_t padding[2];       /* h, w; zeros on both sides, >= 0             */
    int64_t dilation[2];      /* h, w; 1 is a dense kernel                   */
    int64_t groups;           /* weight is [O, C/groups, KH, KW]             */
};

struct usi_attrs_batch_norm {
    double momentum;          /* running = (1 - momentum) running
                                 + momentum * batch (PyTorch's convention)   */
    double eps;               /* added to the variance                       */
    int32_t batch_stats;      /* 1: normalise with this batch's statistics
                                 (training, or no running statistics) and
                                 update the running ones; 0: use them        */
};

struct usi_attrs_layer_norm {
    int32_t axis;             /* the normalised dim: ndim - 1, or 1 (NCHW)   */
    double eps;               /* added to the variance                       */
};

struct usi_attrs_act {
    int32_t kind;             /* USI_ACT_*                                   */
    double alpha;             /* LEAKY_RELU's negative slope; else unused    */
};

struct usi_attrs_binary {
    int32_t kind;             /* USI_BIN_*; numpy broadcasting               */
};

struct usi_attrs_scale {
    double factor;            /* out = factor * x                            */
};

struct usi_attrs_pool2d {
    int32_t kind;             /* USI_POOL_MAX or USI_POOL_AVG                */
    int64_t kernel[2];        /* h, w                                        */
    int64_t stride[2];        /* h, w                                        */
    int64_t padding[2];       /* h, w; on both sides (in ceil mode the last
                                 window may run past it: the output's shape
                                 says how far)                               */
    int32_t count_include_pad; /* AVG: divide by the window clipped to the
                                 padded input, not to the input              */
};

struct usi_attrs_reduce {
    int32_t kind;             /* USI_REDUCE_SUM or USI_REDUCE_MEAN           */
    uint32_t axes;            /* bit d set: input dim d is reduced           */
};

struct usi_attrs_dropout {
    double p;                 /* drop probability in (0, 1); kept values are
                                 scaled by 1/(1-p). DROP_PATH drops whole
                                 samples (dim 0) instead of elements         */
};

struct usi_attrs_permute {
    int32_t perm[USI_MAX_DIMS]; /* output dim i is input dim perm[i]         */
};

struct usi_attrs_concat {
    int32_t axis;             /* the joined dim, in [0, ndim)                */
};

struct usi_attrs_slice {
    int32_t axis;             /* the sliced dim, in [0, ndim)                */
    int64_t start;            /* first index, clamped into [0, dim)          */
    int64_t step;             /* >= 1; the count is the output's dim         */
};

struct usi_attrs_pad {
    int64_t before[USI_MAX_DIMS]; /* elements added in front of each dim     */
    double value;             /* what the added elements hold                */
};

struct usi_attrs_space_to_depth {
    int64_t block;            /* H and W shrink, C grows, by block (block^2) */
};

struct usi_attrs_gather {
    int32_t axis;             /* the table's dim the indices pick along, in
                                 [0, ndim); the index tensor's dims take its
                                 place in the output                         */
};

struct usi_attrs_loss_ce {
    double smoothing;         /* label smoothing in [0, 1)                   */
};

struct usi_attrs_loss_kl {
    double temperature;       /* both sides' logits divided by it; > 0       */
};

/* One node. */
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

    union {                /* the member named after t->op              */
        struct usi_attrs_conv2d conv2d;
        struct usi_attrs_batch_norm batch_norm;
        struct usi_attrs_layer_norm layer_norm;
        struct usi_attrs_act act;
        struct usi_attrs_binary binary;
        struct usi_attrs_scale scale;
        struct usi_attrs_pool2d pool2d;
        struct usi_attrs_reduce reduce;
        struct usi_attrs_dropout dropout;
        struct usi_attrs_dropout drop_path;
        struct usi_attrs_permute permute;
        struct usi_attrs_concat concat;
        struct usi_attrs_slice slice;
        struct usi_attrs_pad pad;
        struct usi_attrs_space_to_depth space_to_depth;
        struct usi_attrs_gather gather;
        struct usi_attrs_loss_ce loss_ce;
        struct usi_attrs_loss_kl loss_kl;
    } attrs;
    const void *custom_attrs;
    const usi_custom_op *custom;

    int32_t requires_grad; /* a gradient flows into this node              */
    int32_t frozen;        /* params: never given a gradient               */
    int32_t has_grad;      /* requires_grad and reaches the loss           */
    int32_t is_output;     /* value kept until the end of the step         */
    int32_t storage;       /* USI_STORE_*                                  */
    int32_t bf16;          /* value and gradient kept in the arena as bf16
                              (precision "mixed", precision.c); dtype stays
                              F32, the numbers the graph means            */
    int32_t cl;            /* a 4-d value [N,C,H,W] and its gradient kept
                              channels-last, as [N,H,W,C] (layout.c);
                              shape stays the logical NCHW one            */
    int32_t grad_writer;   /* id of the consumer whose backward runs first
                              and so writes (not adds) this gradient       */

    /* Device addresses, set at compile; never dereferenced outside
     * core/backend. Leaves keep their values in host `staging` until then. */
    void *data;
    float *grad;           /* bf16 where t->bf16 is set                    */
    void *staging;
    /* Bytes an op keeps from forward to backward (batch statistics). */
    size_t saved_bytes;
    void *saved;
    /* Temporary bytes during this node's forward or backward only. */
    size_t fwd_scratch_bytes, bwd_scratch_bytes;
    void *fwd_scratch, *bwd_scratch;

    /* fp32 NCHW copies of values and gradients kept as bf16 or
     * channels-last, for a kernel that reads and writes those only
     * (core/graph/precision.c), during this node's forward or backward. */
    size_t widen_fwd_bytes, widen_bwd_bytes;
    void *widen_fwd, *widen_bwd;

    /* Planner results: offsets in the arena (leaves: in their flat block),
     * or SIZE_MAX when unplanned. */
    size_t data_off, grad_off, saved_off, fwd_scratch_off, bwd_scratch_off;
    size_t widen_fwd_off, widen_bwd_off;

    /* Eval graphs: a conv writes its batch norm's output with the norm folded
     * into its weights (conv->fold_bn); the norm node then does nothing. */
    struct usi_tensor *fold_bn;
    int32_t folded;
    /* Training graphs: a batch norm applies its only reader's activation
     * itself (bn->fuse_act, fuse.c) and shares that node's value and
     * gradient memory; the activation node then does nothing (fused). */
    struct usi_tensor *fuse_act;
    int32_t fused;

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

/* A dense row-major view of t's shape over `data` (custom-op kernels). */
static inline void usi_node_view(usi_tensor_view *v, const struct usi_tensor *t, void *data)
{
    *v = (usi_tensor_view){0};
    v->struct_size = sizeof *v;
    v->dtype = t->dtype;
    v->ndim = t->ndim;
    int64_t st = 1;
    for (int32_t d = t->ndim - 1; d >= 0; d--) {
        v->shape[d] = t->shape[d];
        v->strides[d] = st;
        st *= t->shape[d];
    }
    v->data = data;
}

/* A value's bytes as its dtype says (host copies, staging). */
static inline size_t usi_node_bytes(const struct usi_tensor *t)
{
    return (size_t)t->numel * usi_dtype_size(t->dtype);
}

/* The bytes a value, or its gradient, takes in device memory: half of
 * usi_node_bytes for a node kept as bf16. */
static inline size_t usi_node_stored_bytes(const struct usi_tensor *t)
{
    return t->bf16 ? (size_t)t->numel * 2 : usi_node_bytes(t);
}
static inline size_t usi_node_grad_bytes(const struct usi_tensor *t)
{
    return (size_t)t->numel * (t->bf16 ? 2 : sizeof(float));
}

#endif
