/* The gradient-ready hook: while backward runs nodes in reverse, tell the
 * caller how much of the trainable gradient block is final, so a
 * distributed run can start reducing that part while backward goes on.
 * A parameter's gradient is final once the earliest node (in recording
 * order) that reads it has run its backward; the block is laid out in
 * recording order, so the final part grows down from the top. */
#include <stdlib.h>

#include "graph/graph_internal.h"
#include "util/error.h"

struct usi_grad_ready {
    usi_grad_ready_fn fn;
    void *ctx;
    int32_t n;       /* trainable parameters, by gradient offset           */
    size_t *off;     /* their gradient offsets, ascending                  */
    int32_t *need;   /* need[k]: the lowest first-reader node id of
                        parameters k..n-1; they are all final once backward
                        has run node need[k]                               */
    int32_t k;       /* parameters k..n-1 are final in the running pass    */
    size_t top;      /* bytes of the trainable block                       */
};

typedef struct pinfo {
    size_t off;
    int32_t first;
} pinfo;

static int by_offset(const void *a, const void *b)
{
    size_t x = ((const pinfo *)a)->off, y = ((const pinfo *)b)->off;
    return x < y ? -1 : x > y;
}

static void free_ready(void *p)
{
    usi_grad_ready *r = p;
    free(r->off);
    free(r->need);
    free(r);
}

static int is_trainable_leaf(const usi_tensor *s)
{
    return s && s->op == USI_OP_PARAM && s->storage == USI_STORE_OWNED && s->grad_off != SIZE_MAX;
}

static usi_error *build(usi_graph *g, usi_grad_ready *r)
{
    int32_t *first = malloc(sizeof *first * (size_t)(g->n_nodes + 1));
    if (!first) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < g->n_nodes; i++) first[i] = INT32_MAX;
    for (int32_t j = 0; j < g->n_nodes; j++) {
        const usi_tensor *t = g->nodes[j];
        if (!t->has_grad || t->storage == USI_STORE_OWNED) continue;
        for (int32_t k = 0; k < t->n_src; k++)
            if (is_trainable_leaf(t->src[k]) && first[t->src[k]->id] > j) first[t->src[k]->id] = j;
    }
    int32_t n = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) n += is_trainable_leaf(g->nodes[i]);
    pinfo *p = malloc(sizeof *p * (size_t)(n + 1));
    r->off = malloc(sizeof *r->off * (size_t)(n + 1));
    r->need = malloc(sizeof *r->need * (size_t)(n + 1));
    if (!p || !r->off || !r->need) {
        free(first);
        free(p);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    n = 0;
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (is_trainable_leaf(g->nodes[i])) p[n++] = (pinfo){g->nodes[i]->grad_off, first[i]};
    qsort(p, (size_t)n, sizeof *p, by_offset);
    int32_t low = INT32_MAX;
    for (int32_t k = n - 1; k >= 0; k--) {
        if (p[k].first < low) low = p[k].first;
        r->off[k] = p[k].off;
        r->need[k] = low;
    }
    r->n = n;
    r->top = g->n_trainable * sizeof(float);
    free(p);
    free(first);
    return NULL;
}

usi_error *usi_graph_on_grad_ready(usi_graph *g, usi_grad_ready_fn fn, void *ctx)
{
    if (!g->compiled || !g->training)
        return usi_error_new(USI_ERR_INVALID, "gradient-ready hook: needs a compiled training graph");
    if (!g->grad_ready) {
        usi_grad_ready *r = calloc(1, sizeof *r);
        if (!r) return usi_error_new(USI_ERR_NOMEM, "out of memory");
        usi_error *e = build(g, r);
        if (!e && usi_graph_on_free(g, free_ready, r) != 0) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
        if (e) {
            free_ready(r);
            return e;
        }
        g->grad_ready = r;
    }
    g->grad_ready->fn = fn;
    g->grad_ready->ctx = ctx;
    return NULL;
}

void usi_grad_ready_begin(usi_grad_ready *r)
{
    if (r) r->k = r->n;
}

void usi_grad_ready_after(usi_grad_ready *r, int32_t node)
{
    if (!r || !r->fn) return;
    while (r->k > 0 && r->need[r->k - 1] >= node) r->k--;
    r->fn(r->ctx, r->k == r->n ? r->top : r->off[r->k]);
}
