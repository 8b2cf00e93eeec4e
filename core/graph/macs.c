/* Multiply-adds of one forward pass, counted from the recorded shapes.
 *
 * Only the ops that do a dot product per output element are counted, the
 * same set fvcore and timm's profilers report as "MACs"/"FLOPs":
 *   conv2d: numel(out) * (Cin/groups * KH * KW), from the weight [O, I/g, KH, KW]
 *   linear: numel(out) * in_features
 *   matmul: numel(out) * K (the shared inner dimension)
 * Biases, batch norms, activations, pooling, softmax and elementwise ops are
 * left out: they are O(numel) each and would make the number depend on how a
 * plugin happens to split a layer into ops. Nothing is run, so this works on
 * a recorded graph before (or without) compile. */
#include "graph/graph_internal.h"

int64_t usi_graph_forward_macs(const usi_graph *g)
{
    if (!g) return 0;
    int64_t macs = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const usi_tensor *t = g->nodes[i];
        if (!t || t->n_src < 2) continue;
        const usi_tensor *a = t->src[0], *w = t->src[1];
        int64_t per_out = 0;
        switch (t->op) {
        case USI_OP_CONV2D:
            /* The weight's dim 1 already is Cin/groups. */
            if (w->ndim == 4) per_out = w->shape[1] * w->shape[2] * w->shape[3];
            break;
        case USI_OP_LINEAR:
            if (w->ndim == 2) per_out = w->shape[1];
            break;
        case USI_OP_MATMUL:
            if (a->ndim >= 2) per_out = a->shape[a->ndim - 1];
            break;
        default: break;
        }
        macs += t->numel * per_out;
    }
    return macs;
}
