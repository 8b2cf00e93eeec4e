/* The executor: nodes in recording order forward, in reverse backward, each
 * on the graph's device. A custom op whose plugin has no kernel for the
 * device runs its host kernels on host copies of its tensors (custom_host.c). */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "graph/graph_internal.h"
#include "plugin/custom_op.h"
#include "util/error.h"

static usi_error *node_error(usi_error *e, const usi_tensor *t, const char *dir)
{
    return usi_error_prefix(e, "%s of '%s': ", dir, t->name);
}

/* A custom op runs its plugin's kernels directly where the device runs
 * that kind (forward_cpu on host memory, forward_cuda / backward_cuda on a
 * CUDA device); anywhere else on host copies of its tensors. */
static int on_host_copies(const usi_graph *g, const usi_tensor *t, int backward)
{
    if (t->op != USI_OP_CUSTOM) return 0;
    uint32_t here = g->dev->be->custom_kernels;
    if (!(here & usi_custom_op_devices(t->custom))) return 1;
    if (backward && (here & USI_CUSTOM_ON_CUDA)) return !usi_custom_op_has_cuda_backward(t->custom);
    return 0;
}

/* One node's kernel, forward (acc NULL) or backward, on the device or on
 * host copies. */
static usi_error *node_kernel(usi_graph *g, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    const usi_backend *be = g->dev->be;
    if (!acc) return on_host_copies(g, t, 0) ? usi_custom_forward_host(g, t) : be->forward(ctx, t);
    return on_host_copies(g, t, 1) ? usi_custom_backward_host(g, t, acc) : be->backward(ctx, t, acc);
}

usi_error *usi_graph_forward(usi_graph *g)
{
    if (!g->compiled)
        return usi_error_new(USI_ERR_INVALID, "forward: compile the graph first");
    ++g->step;
    return usi_replay_wanted(g, 0) ? usi_replay_forward(g) : usi_graph_forward_nodes(g);
}

usi_error *usi_graph_forward_nodes(usi_graph *g)
{
    const usi_backend *be = g->dev->be;
    usi_exec_ctx ctx = {g->dev, g->training, g->seed, g->step, g->coll};
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->storage == USI_STORE_OWNED) continue;
        usi_error *e;
        double t0 = 0;
        if (g->prof) USI_TRY(usi_profile_begin(g, &t0));
        if (!on_host_copies(g, t, 0) && !be->supports(t->op))
            return usi_error_new(USI_ERR_UNSUPPORTED, "forward: device %s has no kernel for '%s'", g->dev->name,
                                 t->name);
        e = usi_precision_run(g, &ctx, t, NULL, node_kernel);
        if (!e && g->prof) e = usi_profile_end(g, t, 0, t0);
        if (e) return node_error(e, t, "forward");
    }
    return NULL;
}

usi_error *usi_graph_seed_loss(usi_graph *g)
{
    usi_tensor *l = g->loss;
    const float *seed = g->loss_seed;
    if (!seed) {
        if (!g->seed_host) {
            g->seed_host = malloc(sizeof(float) * (size_t)l->numel);
            if (!g->seed_host) return usi_error_new(USI_ERR_NOMEM, "out of memory");
        }
        for (int64_t i = 0; i < l->numel; i++) g->seed_host[i] = (float)g->loss_scale;
        seed = g->seed_host;
    }
    return g->dev->be->upload(g->dev, l->grad, seed, (size_t)l->numel * sizeof(float));
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
    USI_TRY(usi_graph_seed_loss(g));
    return usi_replay_wanted(g, 1) ? usi_replay_backward(g) : usi_graph_backward_nodes(g);
}

usi_error *usi_graph_backward_nodes(usi_graph *g)
{
    usi_exec_ctx ctx = {g->dev, g->training, g->seed, g->step, g->coll};
    int32_t acc[64];
    usi_grad_ready_begin(g->grad_ready);
    for (int32_t i = g->n_nodes - 1; i >= 0; i--) {
        usi_tensor *t = g->nodes[i];
        if (!t->has_grad || t->storage == USI_STORE_OWNED) {
            usi_grad_ready_after(g->grad_ready, i);
            continue;
        }
        if (t->n_src > 64)
            return usi_error_new(USI_ERR_UNSUPPORTED, "backward: '%s' has over 64 inputs",
                                 t->name);
        acc_flags(t, acc);
        double t0 = 0;
        if (g->prof) USI_TRY(usi_profile_begin(g, &t0));
        usi_error *e = usi_precision_run(g, &ctx, t, acc, node_kernel);
        if (!e && g->prof) e = usi_profile_end(g, t, 1, t0);
        if (e) return node_error(e, t, "backward");
        usi_grad_ready_after(g->grad_ready, i);
    }
    return NULL;
}
