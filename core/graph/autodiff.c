/* Autodiff over the recorded graph. Each op's rule is its backward kernel
 * (the backend's) plus what that kernel reads, declared here so the planner
 * keeps exactly those values alive. This file decides which nodes get a
 * gradient and which consumer writes each gradient first. */
#include <stdlib.h>

#include "graph/graph_internal.h"
#include "util/error.h"

static int act_backward_uses_output(int32_t act, double alpha)
{
    switch (act) {
    case USI_ACT_RELU:
    case USI_ACT_RELU6:
    case USI_ACT_HARDSIGMOID:
    case USI_ACT_SIGMOID:
    case USI_ACT_TANH: return 1;
    case USI_ACT_LEAKY_RELU: return alpha > 0; /* sign(out) = sign(in) */
    default: return 0;
    }
}

void usi_op_backward_needs(const usi_tensor *t, uint32_t *src_mask,
                           int32_t *needs_out)
{
    *src_mask = 0;
    *needs_out = 0;
    switch (t->op) {
    case USI_OP_CONV2D:
    case USI_OP_LINEAR:
    case USI_OP_MATMUL:
    case USI_OP_LOSS_SOFT_CE:
    case USI_OP_LOSS_CE:
    case USI_OP_LOSS_KL: *src_mask = 3; break;
    case USI_OP_BATCH_NORM:
    case USI_OP_LAYER_NORM: *src_mask = 3; break;
    case USI_OP_ACT:
        if (act_backward_uses_output(t->attrs.act.kind, t->attrs.act.alpha)) *needs_out = 1;
        else *src_mask = 1;
        break;
    case USI_OP_BINARY:
        if (t->attrs.binary.kind == USI_BIN_MUL || t->attrs.binary.kind == USI_BIN_DIV)
            *src_mask = 3;
        break;
    case USI_OP_POOL2D:
        if (t->attrs.pool2d.kind == USI_POOL_MAX) *src_mask = 1;
        break;
    case USI_OP_SOFTMAX: *needs_out = 1; break;
    case USI_OP_GATHER: *src_mask = 2; break; /* the indices say where to add */
    case USI_OP_CUSTOM:
        *src_mask = 0xffffu;
        *needs_out = 1;
        break;
    default: break;
    }
}

usi_error *usi_graph_derive_backward(usi_graph *g)
{
    int32_t n = g->n_nodes;
    for (int32_t i = 0; i < n; i++) {
        g->nodes[i]->has_grad = 0;
        g->nodes[i]->grad_writer = -1;
    }
    if (!g->training || !g->loss) return NULL;
    char *reach = calloc((size_t)n + 1, 1);
    if (!reach) return usi_error_new(USI_ERR_NOMEM, "autodiff: out of memory");
    reach[g->loss->id] = 1;
    for (int32_t i = g->loss->id; i >= 0; i--) {
        usi_tensor *t = g->nodes[i];
        if (!reach[i]) continue;
        for (int32_t k = 0; k < t->n_src; k++)
            if (t->src[k]) reach[t->src[k]->id] = 1;
    }
    for (int32_t i = 0; i < n; i++) {
        usi_tensor *t = g->nodes[i];
        t->has_grad = reach[i] && t->requires_grad && t->dtype == USI_DTYPE_F32;
    }
    free(reach);
    for (int32_t j = 0; j < n; j++) {
        usi_tensor *t = g->nodes[j];
        if (!t->has_grad) continue;
        for (int32_t k = 0; k < t->n_src; k++) {
            usi_tensor *s = t->src[k];
            if (s && s->has_grad && s->grad_writer < j) s->grad_writer = j;
        }
    }
    return NULL;
}
