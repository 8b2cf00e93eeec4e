#include "graph/graph_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "util/error.h"

usi_graph *usi_graph_new(usi_device *dev, int32_t training, uint64_t seed)
{
    if (!dev) return NULL;
    usi_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->dev = dev;
    g->training = training ? 1 : 0;
    g->seed = seed;
    g->loss_scale = 1.0;
    return g;
}

static void node_free(usi_tensor *t)
{
    if (t->backend_state && t->backend_state_free)
        t->backend_state_free(t->backend_state);
    free(t->staging);
    free(t->src);
    free(t->name);
    free(t);
}

void usi_graph_set_error(usi_graph *g, const char *fmt, ...)
{
    if (!g || g->error) return;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&g->error, fmt, ap) < 0) g->error = NULL;
    va_end(ap);
    if (!g->error) g->error = strdup("out of memory while recording an error");
}

int32_t usi_graph_on_free(usi_graph *g, void (*fn)(void *ctx), void *ctx)
{
    struct usi_graph_cleanup *c = malloc(sizeof *c);
    if (!c) return -1;
    c->fn = fn;
    c->ctx = ctx;
    c->next = g->cleanups;
    g->cleanups = c;
    return 0;
}

usi_error *usi_graph_keep_all(usi_graph *g)
{
    if (g->compiled) return usi_error_new(USI_ERR_INVALID, "keep_all: call it before compile");
    g->keep_all = 1;
    return NULL;
}

void usi_graph_free(usi_graph *g)
{
    if (!g) return;
    /* Newest first: an instance may own what an older one lent it. */
    while (g->cleanups) {
        struct usi_graph_cleanup *c = g->cleanups;
        g->cleanups = c->next;
        c->fn(c->ctx);
        free(c);
    }
    for (int32_t i = 0; i < g->n_nodes; i++) node_free(g->nodes[i]);
    free(g->nodes);
    for (int32_t i = 0; i < g->n_scope; i++) free(g->scope[i]);
    free(g->error);
    usi_replay_drop(g);
    usi_dbuf_free(g->arena);
    usi_dbuf_free(g->params);
    usi_dbuf_free(g->grads);
    usi_dbuf_free(g->buffers);
    usi_dbuf_free(g->inputs);
    free(g->seed_host);
    free(g->prof);
    free(g->bb_defaults_name);
    free(g->bb_defaults);
    free(g);
}

usi_error *usi_graph_error(const usi_graph *g)
{
    if (!g) return usi_error_new(USI_ERR_INVALID, "no graph");
    if (!g->error) return NULL;
    return usi_error_new(USI_ERR_INVALID, "%s", g->error);
}

const char *usi_dims_str(int32_t ndim, const int64_t *shape, char *buf,
                         size_t cap)
{
    size_t len = 0;
    len += (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "",
                                (long long)shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
    return buf;
}

const char *usi_shape_str(const usi_tensor *t, char *buf, size_t cap)
{
    if (!t) {
        snprintf(buf, cap, "(null)");
        return buf;
    }
    return usi_dims_str(t->ndim, t->shape, buf, cap);
}

static char *scoped_name(const usi_graph *g, const char *leaf)
{
    size_t len = strlen(leaf) + 1;
    for (int32_t i = 0; i < g->n_scope; i++) len += strlen(g->scope[i]) + 1;
    char *s = malloc(len);
    if (!s) return NULL;
    s[0] = 0;
    for (int32_t i = 0; i < g->n_scope; i++) {
        if (!g->scope[i][0]) continue;
        strcat(s, g->scope[i]);
        strcat(s, ".");
    }
    strcat(s, leaf);
    return s;
}

usi_tensor *usi_node_new(usi_graph *g, int32_t op, const char *opname,
                         int32_t n_src, usi_tensor *const *src)
{
    if (g->compiled) {
        usi_graph_fail(g, "%s: the graph is already compiled", opname);
        return NULL;
    }
    if (g->n_nodes == g->cap_nodes) {
        int32_t cap = g->cap_nodes ? g->cap_nodes * 2 : 256;
        usi_tensor **nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) goto oom;
        g->nodes = nodes;
        g->cap_nodes = cap;
    }
    usi_tensor *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    t->src = n_src ? calloc((size_t)n_src, sizeof *t->src) : NULL;
    t->name = scoped_name(g, opname);
    if ((n_src && !t->src) || !t->name) {
        free(t->src);
        free(t->name);
        free(t);
        goto oom;
    }
    for (int32_t i = 0; i < n_src; i++) t->src[i] = src[i];
    t->n_src = n_src;
    t->graph = g;
    t->op = op;
    t->dtype = USI_DTYPE_F32;
    t->id = g->n_nodes;
    t->data_off = t->grad_off = t->saved_off = SIZE_MAX;
    t->fwd_scratch_off = t->bwd_scratch_off = SIZE_MAX;
    t->widen_fwd_off = t->widen_bwd_off = SIZE_MAX;
    for (int32_t i = 0; i < n_src; i++)
        if (src[i] && src[i]->requires_grad) t->requires_grad = 1;
    g->nodes[g->n_nodes++] = t;
    return t;
oom:
    usi_graph_fail(g, "%s: out of memory while recording", opname);
    return NULL;
}

int usi_node_set_shape(usi_tensor *t, int32_t ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > USI_MAX_DIMS) {
        usi_graph_fail(t->graph, "node '%s': %d dims, the engine holds 0..%d",
                       t->name, ndim, USI_MAX_DIMS);
        return -1;
    }
    /* Shapes come from the engine's own rules and from plugins' infer_shape:
     * a dimension below 1, or a size past what memory could ever hold, is a
     * bug to name here rather than an arena of exabytes later. */
    t->ndim = ndim;
    t->numel = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 1 || shape[i] > ((int64_t)1 << 48) / t->numel) {
            usi_graph_fail(t->graph, "node '%s': dimension %d of its output is %lld%s; every dimension must be at "
                           "least 1 and the whole under 2^48 elements", t->name, (int)i, (long long)shape[i],
                           shape[i] < 1 ? "" : " (too large)");
            return -1;
        }
        t->shape[i] = shape[i];
        t->numel *= shape[i];
    }
    return 0;
}

static int valid_dims(usi_graph *g, const char *what, const char *name,
                      int32_t ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > USI_MAX_DIMS || (ndim && !shape)) {
        usi_graph_fail(g, "%s '%s': %d dims (0..%d allowed)", what, name, ndim,
                       USI_MAX_DIMS);
        return 0;
    }
    for (int32_t i = 0; i < ndim; i++)
        if (shape[i] <= 0) {
            char b[160];
            usi_graph_fail(g, "%s '%s': shape %s has a dim <= 0", what, name,
                           usi_dims_str(ndim, shape, b, sizeof b));
            return 0;
        }
    return 1;
}

/* Leaves (inputs, params, buffers) own their memory from the start so they
 * can be filled or loaded before the graph is compiled. */
static usi_tensor *leaf_new(usi_graph *g, int32_t op, const char *what,
                            const char *name, int32_t dtype, int32_t ndim,
                            const int64_t *shape)
{
    if (!name || !name[0]) {
        usi_graph_fail(g, "%s: a name is required", what);
        return NULL;
    }
    if (!valid_dims(g, what, name, ndim, shape)) return NULL;
    if (dtype < USI_DTYPE_F32 || dtype > USI_DTYPE_U8) {
        usi_graph_fail(g, "%s '%s': unknown dtype %d", what, name, dtype);
        return NULL;
    }
    usi_tensor *t = usi_node_new(g, op, name, 0, NULL);
    if (!t) return NULL;
    if ((op == USI_OP_PARAM || op == USI_OP_BUFFER) && usi_graph_find(g, t->name) != t) {
        usi_graph_fail(g, "%s '%s': the name is already taken", what, t->name);
        return NULL;
    }
    usi_node_set_shape(t, ndim, shape);
    t->dtype = dtype;
    t->storage = USI_STORE_OWNED;
    t->staging = calloc(1, usi_node_bytes(t) ? usi_node_bytes(t) : 1);
    if (!t->staging) {
        usi_graph_fail(g, "%s '%s': out of memory", what, t->name);
        return NULL;
    }
    return t;
}

usi_tensor *usi_graph_input(usi_graph *g, const char *name, int32_t dtype,
                            int32_t ndim, const int64_t *shape)
{
    if (!g) return NULL;
    return leaf_new(g, USI_OP_INPUT, "input", name, dtype, ndim, shape);
}

static int init_ok(usi_graph *g, const char *what, const char *name,
                   const usi_init *init)
{
    if (!init) return 1; /* zeros */
    if (init->struct_size < offsetof(usi_init, gain) + sizeof init->gain ||
        init->kind < USI_INIT_ZEROS || init->kind > USI_INIT_XAVIER_UNIFORM) {
        usi_graph_fail(g, "%s '%s': bad initialiser (kind %d, struct_size %zu)",
                       what, name, init->kind, init->struct_size);
        return 0;
    }
    if (init->kind == USI_INIT_TRUNC_NORMAL && !(init->lo < init->hi)) {
        usi_graph_fail(g, "%s '%s': truncated normal needs lo < hi", what, name);
        return 0;
    }
    return 1;
}

usi_tensor *usi_graph_param_new(usi_graph *g, const char *name, int32_t ndim,
                                const int64_t *shape, const usi_init *init)
{
    if (!g || !init_ok(g, "param", name ? name : "", init)) return NULL;
    usi_tensor *t = leaf_new(g, USI_OP_PARAM, "param", name, USI_DTYPE_F32,
                             ndim, shape);
    if (!t) return NULL;
    t->requires_grad = 1;
    usi_init_fill(t->staging, ndim, shape, init, g->seed, t->name);
    return t;
}

usi_tensor *usi_graph_buffer_new(usi_graph *g, const char *name, int32_t dtype,
                                 int32_t ndim, const int64_t *shape,
                                 const usi_init *init)
{
    if (!g || !init_ok(g, "buffer", name ? name : "", init)) return NULL;
    usi_tensor *t = leaf_new(g, USI_OP_BUFFER, "buffer", name, dtype, ndim,
                             shape);
    if (!t) return NULL;
    if (dtype == USI_DTYPE_F32) {
        usi_init_fill(t->staging, ndim, shape, init, g->seed, t->name);
    } else if (init && init->kind != USI_INIT_ZEROS) {
        /* Integer buffers (counters, index tables) take a constant only. */
        double v = init->kind == USI_INIT_ONES ? 1.0 : init->value;
        for (int64_t i = 0; i < t->numel; i++) {
            if (dtype == USI_DTYPE_I32) ((int32_t *)t->staging)[i] = (int32_t)v;
            else if (dtype == USI_DTYPE_I64) ((int64_t *)t->staging)[i] = (int64_t)v;
            else if (dtype == USI_DTYPE_U8) ((uint8_t *)t->staging)[i] = (uint8_t)v;
        }
    }
    return t;
}

usi_tensor *usi_graph_constant_new(usi_graph *g, const char *name, int32_t dtype,
                                   int32_t ndim, const int64_t *shape, const void *data)
{
    if (!g) return NULL;
    if (dtype != USI_DTYPE_F32 && dtype != USI_DTYPE_I32) {
        usi_graph_fail(g, "constant '%s': dtype %d, only F32 and I32 are supported",
                       name ? name : "", dtype);
        return NULL;
    }
    if (!data) {
        usi_graph_fail(g, "constant '%s': no data", name ? name : "");
        return NULL;
    }
    usi_tensor *t = leaf_new(g, USI_OP_CONSTANT, "constant", name, dtype, ndim, shape);
    if (t) memcpy(t->staging, data, usi_node_bytes(t));
    return t;
}

void usi_graph_set_requires_grad(usi_tensor *t, int32_t on)
{
    if (t && t->op == USI_OP_INPUT && t->dtype == USI_DTYPE_F32)
        t->requires_grad = on ? 1 : 0;
}

usi_error *usi_graph_build(usi_graph *g, usi_graph_build_fn build, void *inst,
                           usi_tensor *input, usi_tensor **out)
{
    if (!g || !build || !out)
        return usi_error_new(USI_ERR_INVALID, "graph build: missing argument");
    *out = build(inst, g, input);
    USI_TRY(usi_graph_error(g));
    if (!*out)
        return usi_error_new(USI_ERR_INVALID,
                             "graph build: the network returned no output");
    (*out)->is_output = 1;
    return NULL;
}

usi_error *usi_graph_set_loss(usi_graph *g, usi_tensor *loss)
{
    USI_TRY(usi_graph_error(g));
    if (!loss || loss->graph != g)
        return usi_error_new(USI_ERR_INVALID, "set_loss: not a node of this graph");
    if (loss->dtype != USI_DTYPE_F32)
        return usi_error_new(USI_ERR_INVALID, "set_loss: '%s' is not float",
                             loss->name);
    g->loss = loss;
    loss->is_output = 1;
    return NULL;
}

void usi_graph_set_loss_scale(usi_graph *g, double scale) { g->loss_scale = scale; }

void usi_graph_set_loss_seed(usi_graph *g, const float *seed) { g->loss_seed = seed; }

void usi_graph_set_collective(usi_graph *g, struct usi_collective *c) { g->coll = c; }

void usi_graph_mark_output(usi_tensor *t)
{
    if (t) t->is_output = 1;
}

int32_t usi_graph_set_frozen(usi_graph *g, const char *prefix, int32_t frozen)
{
    int32_t n = 0;
    size_t len = prefix ? strlen(prefix) : 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->op != USI_OP_PARAM || (len && strncmp(t->name, prefix, len)))
            continue;
        if (t->frozen != (frozen ? 1 : 0)) n++;
        t->frozen = frozen ? 1 : 0;
        t->requires_grad = !t->frozen;
    }
    return n;
}

/* A custom op without backward_cpu passes no gradient to its inputs (the
 * manual's promise): it stops gradients like a constant. */
int usi_node_passes_grad(const usi_tensor *t)
{
    return !(t->op == USI_OP_CUSTOM && t->custom && !t->custom->backward_cpu);
}

/* Frozen params may have been recorded before nodes that read them;
 * refresh requires_grad in topological order. */
static void refresh_requires_grad(usi_graph *g)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->n_src == 0) continue;
        t->requires_grad = 0;
        if (!usi_node_passes_grad(t)) continue;
        for (int32_t k = 0; k < t->n_src; k++)
            if (t->src[k] && t->src[k]->requires_grad) t->requires_grad = 1;
    }
}

usi_error *usi_graph_plan_only(usi_graph *g, size_t *arena_bytes, size_t *naive_bytes)
{
    USI_TRY(usi_graph_error(g));
    if (!g->compiled) {
        refresh_requires_grad(g);
        USI_TRY(usi_graph_derive_backward(g));
        USI_TRY(usi_graph_plan_layout(g));
    }
    usi_graph_memory(g, arena_bytes, naive_bytes);
    return NULL;
}

usi_error *usi_graph_compile(usi_graph *g)
{
    USI_TRY(usi_graph_error(g));
    if (g->compiled) return NULL;
    refresh_requires_grad(g);
    USI_TRY(usi_graph_derive_backward(g));
    USI_TRY(usi_graph_plan(g));
    USI_TRY(usi_graph_place(g));
    g->compiled = 1;
    return NULL;
}

void usi_graph_memory(const usi_graph *g, size_t *planned_peak, size_t *naive_sum)
{
    if (planned_peak) *planned_peak = g->arena_bytes;
    if (naive_sum) *naive_sum = g->naive_bytes;
}

const char *usi_graph_name(const usi_tensor *t) { return t ? t->name : NULL; }
int64_t usi_graph_numel(const usi_tensor *t) { return t ? t->numel : 0; }
int32_t usi_graph_dtype(const usi_tensor *t) { return t ? t->dtype : -1; }
int32_t usi_graph_num_nodes(const usi_graph *g) { return g->n_nodes; }
int32_t usi_graph_node_op(const usi_graph *g, int32_t i)
{
    return i >= 0 && i < g->n_nodes ? g->nodes[i]->op : -1;
}

static int32_t count_op(const usi_graph *g, int32_t op)
{
    int32_t n = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) n += g->nodes[i]->op == op;
    return n;
}

static int32_t leaf_at(const usi_graph *g, int32_t op, int32_t idx,
                       usi_param_info *out)
{
    for (int32_t i = 0, k = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->op != op || k++ != idx) continue;
        out->name = t->name;
        out->dtype = t->dtype;
        out->ndim = t->ndim;
        out->shape = t->shape;
        out->numel = t->numel;
        out->offset = t->data_off;
        out->trainable = t->grad != NULL;
        out->frozen = t->frozen;
        out->tensor = t;
        return 1;
    }
    return 0;
}

int32_t usi_graph_num_params(const usi_graph *g) { return count_op(g, USI_OP_PARAM); }
int32_t usi_graph_num_buffers(const usi_graph *g) { return count_op(g, USI_OP_BUFFER); }
int32_t usi_graph_param_at(const usi_graph *g, int32_t i, usi_param_info *out)
{
    return leaf_at(g, USI_OP_PARAM, i, out);
}
int32_t usi_graph_buffer_at(const usi_graph *g, int32_t i, usi_param_info *out)
{
    return leaf_at(g, USI_OP_BUFFER, i, out);
}

usi_tensor *usi_graph_find(const usi_graph *g, const char *name)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if ((t->op == USI_OP_PARAM || t->op == USI_OP_BUFFER) &&
            !strcmp(t->name, name))
            return t;
    }
    return NULL;
}

usi_error *usi_graph_copy_state(const usi_graph *from, usi_graph *to)
{
    for (int32_t i = 0; i < from->n_nodes; i++) {
        const usi_tensor *s = from->nodes[i];
        if (s->op != USI_OP_PARAM && s->op != USI_OP_BUFFER) continue;
        usi_tensor *d = usi_graph_find(to, s->name);
        if (!d || d->op != s->op || d->dtype != s->dtype || d->numel != s->numel)
            return usi_error_new(USI_ERR_INVALID, "copy_state: '%s' is %s in the target graph",
                                 s->name, d ? "another shape or kind" : "missing");
        USI_TRY(usi_graph_copy_value(d, s, usi_node_bytes(s)));
    }
    return NULL;
}

void usi_graph_zero_grad(usi_graph *g)
{
    if (g->grads) usi_error_free(usi_dbuf_fill(g->grads, 0, 0, usi_dbuf_bytes(g->grads)));
}

usi_device *usi_graph_device(const usi_graph *g) { return g->dev; }

void usi_graph_get_blocks(const usi_graph *g, usi_graph_blocks *out)
{
    *out = (usi_graph_blocks){g->params, g->grads, g->buffers, g->n_params, g->n_trainable, g->n_f32_buffers};
}

int32_t usi_graph_set_backbone_defaults(usi_graph *g, const char *name, const char *options)
{
    free(g->bb_defaults_name);
    free(g->bb_defaults);
    g->bb_defaults_name = name ? strdup(name) : NULL;
    g->bb_defaults = options ? strdup(options) : NULL;
    return (!name || g->bb_defaults_name) && (!options || g->bb_defaults) ? 0 : -1;
}

const char *usi_graph_backbone_defaults(const usi_graph *g, const char *name)
{
    return g->bb_defaults_name && name && !strcmp(g->bb_defaults_name, name) ? g->bb_defaults : NULL;
}
