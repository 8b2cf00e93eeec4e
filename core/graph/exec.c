/* The executor: nodes in recording order forward, in reverse backward, each
 * on the backend that supports it. */
#include <string.h>

#include "backend/backend.h"
#include "graph/graph_internal.h"
#include "util/error.h"

static usi_error *node_error(usi_error *e, const usi_tensor *t, const char *dir)
{
    return usi_error_prefix(e, "%s of '%s': ", dir, t->name);
}

usi_error *usi_graph_forward(usi_graph *g)
{
    if (!g->compiled)
        return usi_error_new(USI_ERR_INVALID, "forward: compile the graph first");
    const usi_backend *be = usi_cpu_backend();
    usi_exec_ctx ctx = {g->training, g->seed, ++g->step};
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->storage == USI_STORE_OWNED) continue;
        if (!be->supports(t->op))
            return usi_error_new(USI_ERR_UNSUPPORTED, "forward: no kernel for '%s'",
                                 t->name);
        usi_error *e = be->forward(&ctx, t);
        if (e) return node_error(e, t, "forward");
    }
    return NULL;
}

static void seed_loss_grad(usi_graph *g)
{
    usi_tensor *l = g->loss;
    if (g->loss_seed) {
        memcpy(l->grad, g->loss_seed, (size_t)l->numel * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < l->numel; i++) l->grad[i] = (float)g->loss_scale;
}

/* acc[k] = 0 lets the first writer of an arena gradient overwrite it, which
 * saves a memset per gradient; owned gradients always accumulate. */
static void acc_flags(const usi_tensor *t, int32_t *acc)
{
    for (int32_t k = 0; k < t->n_src; k++) {
        const usi_tensor *s = t->src[k];
        acc[k] = 1;
        if (!s || !s->has_grad || s->storage == USI_STORE_OWNED) continue;
        if (s->grad_writer != t->id) continue;
        acc[k] = 0;
        for (int32_t j = 0; j < k; j++)
            if (t->src[j] == s) acc[k] = 1;
    }
}

usi_error *usi_graph_backward(usi_graph *g)
{
    if (!g->compiled || !g->training || !g->loss)
        return usi_error_new(USI_ERR_INVALID,
                             "backward: needs a compiled training graph with a loss");
    if (!g->step)
        return usi_error_new(USI_ERR_INVALID, "backward: run forward first");
    if (!g->loss->has_grad) return NULL; /* nothing trainable reaches the loss */
    const usi_backend *be = usi_cpu_backend();
    usi_exec_ctx ctx = {g->training, g->seed, g->step};
    seed_loss_grad(g);
    int32_t acc[64];
    for (int32_t i = g->n_nodes - 1; i >= 0; i--) {
        usi_tensor *t = g->nodes[i];
        if (!t->has_grad || t->storage == USI_STORE_OWNED) continue;
        if (t->n_src > 64)
            return usi_error_new(USI_ERR_UNSUPPORTED, "backward: '%s' has over 64 inputs",
                                 t->name);
        acc_flags(t, acc);
        usi_error *e = be->backward(&ctx, t, acc);
        if (e) return node_error(e, t, "backward");
    }
    return NULL;
}
