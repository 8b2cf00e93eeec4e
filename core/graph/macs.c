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
#include <string.h>

#include "graph/build_common.h"
#include "graph/graph_internal.h"

static int64_t node_macs(const usi_tensor *t)
{
    if (!t || t->n_src < 2) return 0;
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
    return t->numel * per_out;
}

int64_t usi_graph_forward_macs(const usi_graph *g)
{
    if (!g) return 0;
    int64_t macs = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) macs += node_macs(g->nodes[i]);
    return macs;
}

int32_t usi_graph_node_info(const usi_graph *g, int32_t i, usi_node_info *out)
{
    if (!g || i < 0 || i >= g->n_nodes) return 0;
    const usi_tensor *t = g->nodes[i];
    *out = (usi_node_info){.name = t->name, .op = usi_op_name(t->op), .ndim = t->ndim, .shape = t->shape,
                           .macs = node_macs(t), .tensor = g->nodes[i]};
    out->leaf = t->op == USI_OP_INPUT || t->op == USI_OP_PARAM || t->op == USI_OP_BUFFER ||
                t->op == USI_OP_CONSTANT;
    for (int32_t k = 0; k < t->n_src; k++)
        if (t->src[k] && t->src[k]->op == USI_OP_PARAM) out->params += t->src[k]->numel;
    return 1;
}

/* FNV-1a over bytes. */
static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

uint64_t usi_graph_signature(const usi_graph *g)
{
    uint64_t h = 1469598103934665603ull;
    if (!g) return 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const usi_tensor *t = g->nodes[i];
        h = mix(h, &t->op, sizeof t->op);
        h = mix(h, &t->n_src, sizeof t->n_src);
        for (int32_t k = 0; k < t->n_src; k++) {
            int32_t src = t->src[k] ? t->src[k]->id : -1;
            h = mix(h, &src, sizeof src);
        }
        /* Nodes are zeroed when made, so the union's unused bytes are 0. */
        h = mix(h, &t->attrs, sizeof t->attrs);
        if (t->op == USI_OP_PARAM || t->op == USI_OP_BUFFER || t->op == USI_OP_CONSTANT) {
            h = mix(h, t->name, strlen(t->name));
            h = mix(h, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        }
        /* a constant's values are part of the network (index tables) */
        if (t->op == USI_OP_CONSTANT && t->staging) h = mix(h, t->staging, usi_node_bytes(t));
    }
    return h;
}
