/* Channels-last activations: which 4-d values a graph keeps in memory as
 * [N,H,W,C] instead of [N,C,H,W].
 *
 * cuDNN's tensor-core convolutions read and write channels-last; a graph
 * that keeps NCHW pays a transpose of every conv's input, output and their
 * gradients. On a device that prefers it (backend prefers_cl: CUDA under
 * precision "mixed"), the planner marks the values of the ops below, and
 * their gradients, channels-last (t->cl); the shape a node has stays the
 * logical [N,C,H,W], only the memory order changes. Kernels that read and
 * write that order say so (backend cl_native); every other kernel gets
 * NCHW copies from the executor (precision.c), so a graph is correct
 * whichever ops its backend runs channels-last.
 *
 * What stays NCHW: leaves (parameters, inputs), outputs (the host reads
 * them), the loss, tensors of one pixel (H*W = 1:
 * both orders are the same memory, so no copy is ever needed for them),
 * and the ops not listed (reductions, shape ops, ...: their kernels would
 * get copies either way, so their results stay NCHW).
 *
 * USI_CHANNELS_LAST=off keeps every value NCHW: for an A/B of speed. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "graph/graph_internal.h"

/* The ops whose 4-d values may be kept channels-last. */
static int op_keeps_cl(int32_t op)
{
    switch (op) {
    case USI_OP_CONV2D:
    case USI_OP_BATCH_NORM:
    case USI_OP_ACT:
    case USI_OP_POOL2D:
    case USI_OP_BINARY:
    case USI_OP_SCALE:
    case USI_OP_DROP_PATH: return 1;
    default: return 0;
    }
}

static int layout_off(void)
{
    const char *v = getenv("USI_CHANNELS_LAST");
    return v && !strcmp(v, "off");
}

int32_t usi_layout_mark(usi_graph *g)
{
    for (int32_t i = 0; i < g->n_nodes; i++) g->nodes[i]->cl = 0;
    const usi_backend *be = g->dev->be;
    if (!be->prefers_cl || !be->repack || !be->prefers_cl(g->dev) || layout_off()) return 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->storage == USI_STORE_OWNED || t->dtype != USI_DTYPE_F32 || t->is_output || t == g->loss ||
            t->ndim != 4 || t->shape[2] * t->shape[3] == 1 || !op_keeps_cl(t->op) || t->n_src > USI_MAX_HELD)
            continue;
        t->cl = 1;
    }
    return usi_marks_settle(g, offsetof(usi_tensor, cl));
}

int32_t usi_graph_cl_nodes(const usi_graph *g)
{
    int32_t n = 0;
    for (int32_t i = 0; g && i < g->n_nodes; i++)
        n += g->nodes[i]->cl && !g->nodes[i]->fold_bn && !g->nodes[i]->fuse_act; /* stored once */
    return n;
}
