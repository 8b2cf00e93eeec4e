/* Leaves into flat device blocks: every float parameter in one block
 * (trainable ones first, so the optimizer, clipping and the all-reduce cover
 * [0, n_trainable) in one call), their gradients in another laid out the same
 * way, buffers in a third (float ones first, for the EMA), inputs in a
 * fourth, followed there by the constants (written once, here, and never
 * saved, averaged or broadcast with the state). Each tensor starts on a
 * 64-byte boundary. */
#include <stdlib.h>
#include <string.h>

#include "backend/device_internal.h"
#include "graph/graph_internal.h"
#include "util/error.h"

#define LEAF_ALIGN 64

static size_t align_up(size_t v) { return (v + LEAF_ALIGN - 1) / LEAF_ALIGN * LEAF_ALIGN; }

static int is_trainable(const usi_tensor *t) { return t->op == USI_OP_PARAM && t->has_grad && !t->frozen; }

/* Byte offsets for the leaves that `pick` selects, in recording order;
 * returns the block size. */
static size_t lay_out(usi_graph *g, int (*pick)(const usi_tensor *, int), int pass, size_t at)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->storage != USI_STORE_OWNED || !pick(t, pass)) continue;
        t->data_off = at;
        at += align_up(usi_node_bytes(t));
    }
    return at;
}

static int pick_param(const usi_tensor *t, int pass)
{
    return t->op == USI_OP_PARAM && is_trainable(t) == (pass == 0);
}

static int pick_buffer(const usi_tensor *t, int pass)
{
    return t->op == USI_OP_BUFFER && (t->dtype == USI_DTYPE_F32) == (pass == 0);
}

static int pick_input(const usi_tensor *t, int pass)
{
    return t->op == (pass == 0 ? USI_OP_INPUT : USI_OP_CONSTANT);
}

static usi_error *new_block(usi_graph *g, size_t bytes, const char *what, usi_dbuf **out)
{
    *out = NULL;
    if (!bytes) return NULL;
    usi_error *e = usi_dbuf_new(g->dev, bytes, out);
    return e ? usi_error_prefix(e, "%s: ", what) : NULL;
}

usi_dbuf *usi_node_block(const usi_tensor *t, size_t *off)
{
    const usi_graph *g = t->graph;
    if (t->fold_bn) return usi_node_block(t->fold_bn, off);
    *off = t->data_off;
    if (!g->compiled && t->storage == USI_STORE_OWNED) return NULL;
    if (t->data_off == SIZE_MAX) return NULL;
    if (t->storage != USI_STORE_OWNED) return g->arena;
    return t->op == USI_OP_PARAM ? g->params : t->op == USI_OP_BUFFER ? g->buffers : g->inputs;
}

usi_dbuf *usi_node_grad_block(const usi_tensor *t, size_t *off)
{
    const usi_graph *g = t->graph;
    *off = t->grad_off;
    if (!t->grad || t->grad_off == SIZE_MAX) return NULL;
    return t->storage == USI_STORE_OWNED ? g->grads : g->arena;
}

usi_error *usi_graph_place(usi_graph *g)
{
    size_t trainable_bytes = lay_out(g, pick_param, 0, 0);
    size_t param_bytes = lay_out(g, pick_param, 1, trainable_bytes);
    size_t f32_buffer_bytes = lay_out(g, pick_buffer, 0, 0);
    size_t buffer_bytes = lay_out(g, pick_buffer, 1, f32_buffer_bytes);
    size_t input_bytes = lay_out(g, pick_input, 1, lay_out(g, pick_input, 0, 0));
    /* Gradients: trainable parameters at their own offsets, then inputs
     * that want one (tests, attributions). */
    size_t grad_bytes = trainable_bytes;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->storage != USI_STORE_OWNED) continue;
        t->grad = NULL;
        t->grad_off = SIZE_MAX;
        if (is_trainable(t)) {
            t->grad_off = t->data_off;
        } else if (t->op == USI_OP_INPUT && t->has_grad) {
            t->grad_off = grad_bytes;
            grad_bytes += align_up(usi_node_bytes(t));
        }
    }
    g->n_params = param_bytes / sizeof(float);
    g->n_trainable = trainable_bytes / sizeof(float);
    g->n_f32_buffers = f32_buffer_bytes / sizeof(float);
    USI_TRY(new_block(g, param_bytes, "parameters", &g->params));
    USI_TRY(new_block(g, grad_bytes, "gradients", &g->grads));
    USI_TRY(new_block(g, buffer_bytes, "buffers", &g->buffers));
    USI_TRY(new_block(g, input_bytes, "inputs", &g->inputs));
    g->compiled = 1; /* usi_node_block now answers with device blocks */
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->storage != USI_STORE_OWNED) continue;
        size_t off;
        usi_dbuf *b = usi_node_block(t, &off);
        t->data = usi_dbuf_addr(b, off);
        if (t->grad_off != SIZE_MAX) t->grad = usi_dbuf_addr(g->grads, t->grad_off);
        usi_error *e = usi_dbuf_write(b, off, t->staging, usi_node_bytes(t));
        if (e) {
            g->compiled = 0;
            return e;
        }
        free(t->staging);
        t->staging = NULL;
    }
    g->compiled = 0;
    return NULL;
}
