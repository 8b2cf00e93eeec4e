/* Batch norm with its activation in one kernel, in training graphs.
 *
 * A ResNet's norm is read by a ReLU and by nothing else. Apart, the pair
 * costs the norm's output written, read back and the activation's written
 * (forward), and the activation's gradient read with its output and the
 * norm's gradient written (backward). Fused, the norm's kernels write
 * relu(y) straight into the activation's memory, and its backward reads
 * the activation's gradient and output, masking the one by the other: two
 * passes over the map forward and one backward fewer, and the norm's own
 * value and gradient are never stored (they share the activation's).
 *
 * Fused only where the backend's kernels do it (backend fuses_act) and
 * both nodes run without the executor's copies (precision.c), and never
 * where every value stays readable (keep_all). USI_FUSE=off keeps the
 * pairs apart: for an A/B of speed. */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "graph/graph_internal.h"

static int fuse_off(void)
{
    const char *v = getenv("USI_FUSE");
    return v && !strcmp(v, "off");
}

/* bn, read by act only, may hand act's work to its own kernels. */
static int fusable(const usi_graph *g, const usi_tensor *bn, const usi_tensor *act, const int32_t *readers)
{
    const usi_backend *be = g->dev->be;
    if (bn->op != USI_OP_BATCH_NORM || !bn->attrs.batch_norm.batch_stats || readers[bn->id] != 1 ||
        bn->is_output || bn == g->loss || bn->storage == USI_STORE_OWNED || bn->folded || bn->fuse_act)
        return 0;
    if (act->n_src != 1 || act->has_grad != bn->has_grad || act->bf16 != bn->bf16 ||
        act->cl != bn->cl)
        return 0;
    for (int32_t backward = 0; backward < 2; backward++)
        if (!usi_precision_direct(g, bn, backward) || !usi_precision_direct(g, act, backward)) return 0;
    return be->fuses_act(bn, act);
}

int32_t usi_fuse_mark(usi_graph *g)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        g->nodes[i]->fuse_act = NULL;
        g->nodes[i]->fused = 0;
    }
    if (!g->training || g->keep_all || !g->dev->be->fuses_act || fuse_off()) return 0;
    int32_t *readers = calloc((size_t)g->n_nodes, sizeof *readers);
    if (!readers) return 0; /* nothing fused: the plain path */
    for (int32_t i = 0; i < g->n_nodes; i++)
        for (int32_t k = 0; k < g->nodes[i]->n_src; k++)
            if (g->nodes[i]->src[k]) readers[g->nodes[i]->src[k]->id]++;
    int32_t n = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *act = g->nodes[i];
        if (act->op != USI_OP_ACT || !act->src[0] || !fusable(g, act->src[0], act, readers)) continue;
        act->src[0]->fuse_act = act;
        act->fused = 1;
        n++;
    }
    free(readers);
    return n;
}

int32_t usi_graph_fused_nodes(const usi_graph *g)
{
    int32_t n = 0;
    for (int32_t i = 0; g && i < g->n_nodes; i++) n += g->nodes[i]->fused;
    return n;
}
