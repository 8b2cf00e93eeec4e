/* Precision "mixed" in memory: which activations a graph keeps as bf16, and
 * fp32 NCHW copies for the kernels that take those only (of values kept as
 * bf16 here, or channels-last by layout.c).
 *
 * On a device with bf16 storage (backend bf16_storage) a graph planned
 * under "mixed" keeps the values of the ops below, and their gradients, as
 * bf16 in the arena: half the bytes every kernel reads and writes, and half
 * the memory kept from forward to backward. The numbers a node means stay
 * F32 (t->dtype): only their storage is narrower. What stays fp32:
 * leaves (parameters are the fp32 masters, inputs come from the loader),
 * outputs (logits, losses: the host reads them), and the ops whose results
 * want the range or the digits (layer norm, softmax, gather, custom ops).
 *
 * A kernel that reads or writes bf16 itself says so (backend bf16_native);
 * for any other, the executor widens the node's bf16 operands into fp32
 * copies in the node's planned widen_fwd / widen_bwd memory, runs the fp32
 * kernel on them, and narrows what it wrote back to bf16 (rounded to
 * nearest even); a gradient the kernel would add into gets a fresh fp32
 * sum, added into the bf16 one as it is narrowed. Channels-last values and
 * gradients (layout.c) go the same way, through the backend's repack: the
 * copies are NCHW, and a layout change alone is exact. Results are then
 * those of an fp32 kernel on bf16-rounded
 * operands, with bf16-rounded results: every device gives the same numbers
 * up to its kernel's own summation order.
 *
 * USI_BF16_ACTIVATIONS=off keeps every activation fp32 under "mixed" (the
 * bf16 compute of convolutions and products stays): for an A/B of speed. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "graph/graph_internal.h"
#include "util/error.h"
#include "util/log.h"

#define WIDEN_ALIGN 64
#define MAX_HELD USI_MAX_HELD

static size_t align_up(size_t n) { return (n + WIDEN_ALIGN - 1) / WIDEN_ALIGN * WIDEN_ALIGN; }

/* The ops whose values may be kept as bf16. */
static int op_keeps_bf16(int32_t op)
{
    switch (op) {
    case USI_OP_CONV2D:
    case USI_OP_LINEAR:
    case USI_OP_MATMUL:
    case USI_OP_BATCH_NORM:
    case USI_OP_ACT:
    case USI_OP_BINARY:
    case USI_OP_SCALE:
    case USI_OP_POOL2D:
    case USI_OP_REDUCE:
    case USI_OP_DROPOUT:
    case USI_OP_DROP_PATH:
    case USI_OP_RESHAPE:
    case USI_OP_PERMUTE:
    case USI_OP_CONCAT:
    case USI_OP_SLICE:
    case USI_OP_PAD:
    case USI_OP_SPACE_TO_DEPTH: return 1;
    default: return 0;
    }
}

static int activations_off(void)
{
    const char *v = getenv("USI_BF16_ACTIVATIONS");
    return v && !strcmp(v, "off");
}

int32_t usi_precision_mark(usi_graph *g)
{
    for (int32_t i = 0; i < g->n_nodes; i++) g->nodes[i]->bf16 = 0;
    if (!g->dev->mixed || !g->dev->be->bf16_storage || activations_off()) return 0;
    /* what is computed from a loss (a sum of losses) stays fp32: scalars,
     * nothing to save, the digits to keep */
    char *lossy = calloc((size_t)g->n_nodes + 1, 1);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        int from_loss = t->op == USI_OP_LOSS_SOFT_CE || t->op == USI_OP_LOSS_CE || t->op == USI_OP_LOSS_KL;
        for (int32_t k = 0; k < t->n_src && !from_loss; k++)
            from_loss = t->src[k] && lossy && lossy[t->src[k]->id];
        if (lossy) lossy[i] = (char)from_loss;
        if (t->storage == USI_STORE_OWNED || t->dtype != USI_DTYPE_F32 || t->is_output || t == g->loss ||
            !op_keeps_bf16(t->op) || from_loss || !lossy || t->n_src > MAX_HELD)
            continue;
        t->bf16 = 1;
    }
    free(lossy);
    return usi_marks_settle(g, offsetof(usi_tensor, bf16));
}

int32_t usi_marks_settle(usi_graph *g, size_t field)
{
#define MARK(t) (*(int32_t *)((char *)(t) + field))
    int32_t n = 0;
    /* the executor's copies are made for up to MAX_HELD sources */
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        for (int32_t k = 0; t->n_src > MAX_HELD && k < t->n_src; k++)
            if (t->src[k]) MARK(t->src[k]) = 0;
    }
    /* A conv with its norm folded in writes the norm's value. */
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->fold_bn) MARK(t) = MARK(t->fold_bn);
        n += MARK(t);
    }
    return n;
#undef MARK
}

int32_t usi_graph_bf16_nodes(const usi_graph *g)
{
    int32_t n = 0;
    for (int32_t i = 0; g && i < g->n_nodes; i++)
        n += g->nodes[i]->bf16 && !g->nodes[i]->fold_bn && !g->nodes[i]->fuse_act; /* stored once */
    return n;
}

/* How t sits in memory (USI_FMT_* bits); 0: fp32 NCHW, what every
 * kernel reads. */
static int32_t fmt_of(const usi_tensor *t) { return (t->bf16 ? USI_FMT_BF16 : 0) | (t->cl ? USI_FMT_CL : 0); }

/* 1 when the executor must hand t's kernel fp32 NCHW copies. */
static int needs_widen(const usi_graph *g, const usi_tensor *t, int32_t backward)
{
    if (t->folded || t->fused) return 0; /* its conv or norm wrote it */
    int32_t bf = t->bf16, cl = t->cl;
    for (int32_t k = 0; k < t->n_src; k++)
        if (t->src[k]) {
            bf |= t->src[k]->bf16;
            cl |= t->src[k]->cl;
        }
    if (!bf && !cl) return 0;
    if (t->op == USI_OP_CUSTOM) return 1;
    const usi_backend *be = g->dev->be;
    int bf_ok = !bf || (be->bf16_native && be->bf16_native(t, backward));
    int cl_ok = !cl || (be->cl_native && be->cl_native(t, backward));
    return !(bf_ok && cl_ok);
}

int32_t usi_precision_direct(const usi_graph *g, const usi_tensor *t, int32_t backward)
{
    return !needs_widen(g, t, backward);
}

/* src k is the first of t's sources that is this tensor */
static int first_use(const usi_tensor *t, int32_t k)
{
    for (int32_t j = 0; j < k; j++)
        if (t->src[j] == t->src[k]) return 0;
    return 1;
}

/* What the fp32 copies of one pass hold, in order, and where: the sizes
 * the planner reserves and the pointers run time hands out come from this
 * one walk. value[k] / grad[k] for the first use of each bf16 source k,
 * then t's own at MAX_HELD. */
typedef struct widen_plan {
    size_t value_off[MAX_HELD + 1], grad_off[MAX_HELD + 1];
    int32_t value[MAX_HELD + 1], grad[MAX_HELD + 1]; /* 1: copied */
    size_t bytes;
} widen_plan;

static int plan_pass(const usi_tensor *t, int32_t backward, widen_plan *p)
{
    memset(p, 0, sizeof *p);
    if (t->n_src > MAX_HELD) return -1;
    uint32_t mask = 0xffffffffu;
    int32_t needs_out = 1;
    if (backward) usi_op_backward_needs(t, &mask, &needs_out);
    size_t at = 0;
    for (int32_t k = 0; k < t->n_src; k++) {
        const usi_tensor *s = t->src[k];
        if (!s || !fmt_of(s) || !first_use(t, k)) continue;
        int used = !backward;
        for (int32_t j = k; j < t->n_src && backward; j++)
            if (t->src[j] == s && (j >= 32 || (mask & (1u << j)))) used = 1;
        if (used) {
            p->value[k] = 1;
            p->value_off[k] = at;
            at += align_up((size_t)s->numel * sizeof(float));
        }
        if (backward && s->has_grad) {
            p->grad[k] = 1;
            p->grad_off[k] = at;
            at += align_up((size_t)s->numel * sizeof(float));
        }
    }
    int32_t me = MAX_HELD;
    if (fmt_of(t) && (!backward || needs_out)) {
        p->value[me] = 1;
        p->value_off[me] = at;
        at += align_up((size_t)t->numel * sizeof(float));
    }
    if (fmt_of(t) && backward) {
        p->grad[me] = 1;
        p->grad_off[me] = at;
        at += align_up((size_t)t->numel * sizeof(float));
    }
    p->bytes = at;
    return 0;
}

void usi_precision_widen_sizes(usi_graph *g, usi_tensor *t)
{
    widen_plan p;
    t->widen_fwd_bytes = t->widen_bwd_bytes = 0;
    if (needs_widen(g, t, 0) && !plan_pass(t, 0, &p)) t->widen_fwd_bytes = p.bytes;
    if (g->training && t->has_grad && needs_widen(g, t, 1) && !plan_pass(t, 1, &p)) t->widen_bwd_bytes = p.bytes;
}

/* Swapped pointers and format flags, put back whatever happens. */
typedef struct held {
    usi_tensor *t;
    void *data;
    float *grad;
    int32_t bf16, cl;
} held;

static int32_t held_fmt(const held *h) { return (h->bf16 ? USI_FMT_BF16 : 0) | (h->cl ? USI_FMT_CL : 0); }

static void put_back(held *h, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        h[i].t->data = h[i].data;
        h[i].t->grad = h[i].grad;
        h[i].t->bf16 = h[i].bf16;
        h[i].t->cl = h[i].cl;
    }
}

/* Every bf16 or channels-last tensor of t off for the call: a kernel that
 * picks its types and layout from the flags then sees what it gets, fp32
 * NCHW (copies, or memory it does not read). The first of held is t
 * itself; at[k] is source k's entry. */
static int32_t clear_flags(usi_tensor *t, held *h, int32_t *at)
{
    int32_t n = 0;
    h[n++] = (held){t, t->data, t->grad, t->bf16, t->cl};
    for (int32_t k = 0; k < t->n_src; k++) {
        usi_tensor *s = t->src[k];
        at[k] = 0;
        if (s && fmt_of(s) && first_use(t, k)) {
            at[k] = n;
            h[n++] = (held){s, s->data, s->grad, s->bf16, s->cl};
        }
    }
    for (int32_t i = 0; i < n; i++) h[i].t->bf16 = h[i].t->cl = 0;
    return n;
}

/* dst (fp32 NCHW) = src, t's value or gradient stored as fmt says */
static usi_error *widen(usi_device *d, float *dst, const void *src, int32_t fmt, const usi_tensor *t)
{
    if (fmt & USI_FMT_CL) return d->be->repack(d, dst, 0, src, fmt, t->shape, 0);
    return d->be->from_bf16(d, dst, src, (size_t)t->numel, 0);
}

/* dst, stored as fmt says, (+)= src (fp32 NCHW) */
static usi_error *narrow(usi_device *d, void *dst, int32_t fmt, const float *src, const usi_tensor *t, int32_t acc)
{
    if (fmt & USI_FMT_CL) return d->be->repack(d, dst, fmt, src, 0, t->shape, acc);
    return d->be->to_bf16(d, dst, src, (size_t)t->numel, acc);
}

usi_error *usi_precision_run(usi_graph *g, const struct usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc,
                             usi_precision_kernel kernel)
{
    int32_t backward = acc != NULL;
    if (!needs_widen(g, t, backward)) return kernel(g, ctx, t, acc);
    widen_plan p;
    char *base = backward ? t->widen_bwd : t->widen_fwd;
    size_t have = backward ? t->widen_bwd_bytes : t->widen_fwd_bytes;
    if (plan_pass(t, backward, &p) || p.bytes > have || (p.bytes && !base))
        return usi_error_new(USI_ERR_INTERNAL, "fp32 copies of '%s': %zu bytes planned, %zu needed", t->name, have,
                             p.bytes);
    usi_device *d = g->dev;
    held h[MAX_HELD + 1];
    int32_t at[MAX_HELD], nh = clear_flags(t, h, at), add[MAX_HELD + 1] = {0}, fresh[MAX_HELD];
    for (int32_t k = 0; acc && k < t->n_src; k++) fresh[k] = acc[k];
    usi_error *e = NULL;
    /* the sources: values widened, gradients into fresh fp32 sums */
    for (int32_t k = 0; k < t->n_src && !e; k++) {
        usi_tensor *s = t->src[k];
        if (!p.value[k] && !p.grad[k]) continue;
        if (p.value[k]) {
            float *w = (float *)(base + p.value_off[k]);
            e = widen(d, w, s->data, held_fmt(&h[at[k]]), s);
            s->data = w;
        }
        if (!e && p.grad[k] && s->grad) {
            /* the kernel writes a fresh sum; added into the bf16 one after */
            s->grad = (float *)(base + p.grad_off[k]);
            add[at[k]] = acc[k];
            fresh[k] = 0;
        }
    }
    /* t itself: its value written (forward) or read (backward), its
     * gradient read */
    void *out = h[0].data;
    if (!e && p.value[MAX_HELD]) {
        float *w = (float *)(base + p.value_off[MAX_HELD]);
        if (backward) e = widen(d, w, t->data, held_fmt(&h[0]), t);
        t->data = w;
    }
    if (!e && p.grad[MAX_HELD]) {
        float *w = (float *)(base + p.grad_off[MAX_HELD]);
        e = widen(d, w, t->grad, held_fmt(&h[0]), t);
        t->grad = w;
    }
    if (!e) e = kernel(g, ctx, t, backward ? fresh : NULL);
    /* narrow what the kernel wrote: t's value, or the sources' gradients */
    if (!e && !backward && held_fmt(&h[0])) e = narrow(d, out, held_fmt(&h[0]), t->data, t, 0);
    for (int32_t i = 1; i < nh && !e && backward; i++)
        if (h[i].grad && h[i].t->grad != h[i].grad)
            e = narrow(d, h[i].grad, held_fmt(&h[i]), h[i].t->grad, h[i].t, add[i]);
    put_back(h, nh);
    return e;
}
