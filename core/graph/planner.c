/* The memory planner: every activation, gradient and workspace of one step
 * gets an offset in a single arena. Time runs over the forward steps
 * (0..n-1) then the backward steps (n..2n-1, nodes in reverse); a tensor
 * occupies [born, dies] inclusive, so an op's inputs never share memory with
 * its output. Placement is greedy by size with best fit, as TFLite's arena
 * planner does. */
#include <stdlib.h>
#include <string.h>

#include "backend/device_internal.h"
#include "graph/graph_internal.h"
#include "util/error.h"

#define ARENA_ALIGN 64

typedef struct item {
    size_t size;
    int32_t born, dies;
    size_t *off;
} item;

typedef struct plan {
    item *items;
    int32_t n, cap;
} plan;

static int add_item(plan *p, size_t bytes, int32_t born, int32_t dies, size_t *off)
{
    *off = SIZE_MAX;
    if (!bytes) return 0;
    if (p->n == p->cap) {
        int32_t cap = p->cap ? p->cap * 2 : 1024;
        item *items = realloc(p->items, (size_t)cap * sizeof *items);
        if (!items) return -1;
        p->items = items;
        p->cap = cap;
    }
    size_t size = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    p->items[p->n++] = (item){size, born, dies, off};
    return 0;
}

static int by_size_desc(const void *a, const void *b)
{
    const item *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->born - y->born;
}

static int by_offset(const void *a, const void *b)
{
    const item *x = *(const item *const *)a, *y = *(const item *const *)b;
    return *x->off < *y->off ? -1 : *x->off > *y->off;
}

/* Best fit among the gaps left by already placed items alive at the same
 * time. Returns the arena size needed. */
static usi_error *place(plan *p, size_t *peak)
{
    *peak = 0;
    if (p->n == 0) return NULL;
    qsort(p->items, (size_t)p->n, sizeof *p->items, by_size_desc);
    const item **live = malloc((size_t)(p->n ? p->n : 1) * sizeof *live);
    if (!live) return usi_error_new(USI_ERR_NOMEM, "planner: out of memory");
    *peak = 0;
    for (int32_t i = 0; i < p->n; i++) {
        item *it = &p->items[i];
        int32_t nl = 0;
        for (int32_t j = 0; j < i; j++) {
            const item *o = &p->items[j];
            if (o->born <= it->dies && it->born <= o->dies) live[nl++] = o;
        }
        qsort(live, (size_t)nl, sizeof *live, by_offset);
        size_t cursor = 0, best = SIZE_MAX, best_gap = SIZE_MAX;
        for (int32_t j = 0; j < nl; j++) {
            size_t o = *live[j]->off;
            if (o >= cursor && o - cursor >= it->size && o - cursor < best_gap) {
                best = cursor;
                best_gap = o - cursor;
            }
            size_t end = o + live[j]->size;
            if (end > cursor) cursor = end;
        }
        *it->off = best != SIZE_MAX ? best : cursor;
        if (*it->off + it->size > *peak) *peak = *it->off + it->size;
    }
    free(live);
    return NULL;
}

static int32_t value_dies(const usi_graph *g, const usi_tensor *t, int32_t T)
{
    int32_t n = g->n_nodes, dies = t->id;
    uint32_t mask;
    int32_t needs_out;
    usi_op_backward_needs(t, &mask, &needs_out);
    if (t->has_grad && needs_out) dies = 2 * n - 1 - t->id;
    if (t->is_output) dies = T - 1;
    for (int32_t j = t->id + 1; j < n; j++) {
        const usi_tensor *c = g->nodes[j];
        usi_op_backward_needs(c, &mask, &needs_out);
        for (int32_t k = 0; k < c->n_src; k++) {
            if (c->src[k] != t) continue;
            int32_t d = j;
            if (c->has_grad && k < 32 && (mask & (1u << k))) d = 2 * n - 1 - j;
            if (d > dies) dies = d;
        }
    }
    return dies;
}

/* In a graph without backward, a conv whose only reader is an eval-mode
 * batch norm takes the norm into its weights and writes the norm's output:
 * one pass over the activation fewer, and one tensor fewer. */
static void find_folds(usi_graph *g)
{
    if (g->training || g->keep_all) return;
    int32_t n = g->n_nodes;
    for (int32_t i = 0; i < n; i++) {
        usi_tensor *bn = g->nodes[i];
        usi_tensor *conv = bn->op == USI_OP_BATCH_NORM ? bn->src[0] : NULL;
        if (!conv || conv->op != USI_OP_CONV2D || conv->is_output || bn->attrs.batch_norm.batch_stats ||
            !bn->src[3] || conv->fold_bn)
            continue;
        int32_t readers = 0;
        for (int32_t j = conv->id + 1; j < n; j++)
            for (int32_t k = 0; k < g->nodes[j]->n_src; k++)
                readers += g->nodes[j]->src[k] == conv;
        if (readers != 1) continue;
        conv->fold_bn = bn;
        bn->folded = 1;
    }
}

static int collect(usi_graph *g, plan *p, int32_t T)
{
    int32_t n = g->n_nodes;
    const usi_backend *be = g->dev->be;
    for (int32_t i = 0; i < n; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->storage == USI_STORE_OWNED) continue;
        be->workspace(t, g->training);
        usi_precision_widen_sizes(g, t);
        t->widen_fwd_off = t->widen_bwd_off = SIZE_MAX;
        int32_t bwd = 2 * n - 1 - i;
        int32_t grad_born = t == g->loss ? n : 2 * n - 1 - t->grad_writer;
        /* A folded norm's output is born when its conv writes it, a fused
         * activation's when its norm does; the norm's backward reads the
         * activation's value and gradient (fuse.c), and the norm stores
         * neither of its own. */
        int32_t born = t->folded || t->fused ? t->src[0]->id : i;
        size_t value_bytes = t->fold_bn || t->fuse_act ? 0 : usi_node_stored_bytes(t);
        size_t grad_bytes = t->fuse_act ? 0 : usi_node_grad_bytes(t);
        int32_t value_end = g->keep_all ? T - 1 : value_dies(g, t, T), grad_end = g->keep_all ? T - 1 : bwd;
        if (t->fused && t->has_grad) {
            int32_t norm_bwd = 2 * n - 1 - t->src[0]->id;
            if (value_end < norm_bwd) value_end = norm_bwd;
            if (grad_end < norm_bwd) grad_end = norm_bwd;
        }
        if (add_item(p, value_bytes, born, value_end, &t->data_off) ||
            (t->has_grad && add_item(p, grad_bytes, grad_born, grad_end, &t->grad_off)) ||
            add_item(p, t->saved_bytes, i, t->has_grad ? bwd : i, &t->saved_off) ||
            add_item(p, t->fwd_scratch_bytes, i, i, &t->fwd_scratch_off) ||
            (t->has_grad &&
             add_item(p, t->bwd_scratch_bytes, bwd, bwd, &t->bwd_scratch_off)) ||
            add_item(p, t->widen_fwd_bytes, i, i, &t->widen_fwd_off) ||
            (t->has_grad && add_item(p, t->widen_bwd_bytes, bwd, bwd, &t->widen_bwd_off)))
            return -1;
    }
    return 0;
}

static void *at(const usi_dbuf *arena, size_t off)
{
    return off == SIZE_MAX ? NULL : usi_dbuf_addr(arena, off);
}

/* Offsets and the arena's size (g->arena_bytes, g->naive_bytes); nothing
 * is allocated. */
usi_error *usi_graph_plan_layout(usi_graph *g)
{
    int32_t n = g->n_nodes;
    int32_t T = g->training && g->loss ? 2 * n : n;
    plan p = {0};
    find_folds(g);
    usi_precision_mark(g);
    usi_layout_mark(g);
    usi_fuse_mark(g);
    if (collect(g, &p, T)) {
        free(p.items);
        return usi_error_new(USI_ERR_NOMEM, "planner: out of memory");
    }
    g->naive_bytes = 0;
    for (int32_t i = 0; i < p.n; i++) g->naive_bytes += p.items[i].size;
    usi_error *e = place(&p, &g->arena_bytes);
    free(p.items);
    return e;
}

usi_error *usi_graph_plan(usi_graph *g)
{
    int32_t n = g->n_nodes;
    USI_TRY(usi_graph_plan_layout(g));
    usi_error *e = NULL;
    usi_replay_drop(g); /* recorded with the old addresses */
    usi_dbuf_free(g->arena);
    g->arena = NULL;
    if (g->arena_bytes) {
        e = usi_dbuf_new(g->dev, g->arena_bytes, &g->arena);
        if (e)
            return usi_error_prefix(e, "the planned arena of %.1f MiB for activations, gradients and scratch: ",
                                    (double)g->arena_bytes / 1048576.0);
    }
    for (int32_t i = 0; i < n; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->storage == USI_STORE_OWNED) continue;
        t->data = at(g->arena, t->data_off);
        t->grad = at(g->arena, t->grad_off);
        t->saved = at(g->arena, t->saved_off);
        t->fwd_scratch = at(g->arena, t->fwd_scratch_off);
        t->bwd_scratch = at(g->arena, t->bwd_scratch_off);
        t->widen_fwd = at(g->arena, t->widen_fwd_off);
        t->widen_bwd = at(g->arena, t->widen_bwd_off);
    }
    for (int32_t i = 0; i < n; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->fold_bn) t->data = t->fold_bn->data;
        if (t->fuse_act) { /* the activation's memory (fuse.c) */
            t->data = t->fuse_act->data;
            t->grad = t->fuse_act->grad;
        }
    }
    return NULL;
}
