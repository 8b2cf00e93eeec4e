#include "shape_graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SG_MAX_SCOPES 16

struct usi_tensor {
    int32_t ndim;
    int32_t dtype;
    int64_t shape[USI_MAX_DIMS];
    int32_t *indices;        /* an I32 constant's values (gather checks them) */
    int32_t is_constant;
    usi_tensor *next_alloc;  /* every tensor, for sg_free                    */
};

struct usi_graph {
    int32_t training;
    char error[512];
    int32_t has_error;
    char scopes[SG_MAX_SCOPES][64];
    int32_t depth;
    sg_entry *entries;
    int32_t n_entries, cap_entries;
    int64_t ops[SG_N_OPS];
    usi_tensor *tensors;
};

static void sg_fail(usi_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sg_fail(usi_graph *g, const char *fmt, ...)
{
    if (g->has_error) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->error, sizeof g->error, fmt, ap);
    va_end(ap);
    g->has_error = 1;
}

static usi_tensor *sg_tensor(usi_graph *g, int32_t dtype, int32_t ndim, const int64_t *shape)
{
    usi_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        sg_fail(g, "out of memory");
        return NULL;
    }
    t->ndim = ndim;
    t->dtype = dtype;
    for (int32_t i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->next_alloc = g->tensors;
    g->tensors = t;
    return t;
}

static const char *fmt_shape(const usi_tensor *t, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; t && i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* ---- state ---- */

static const char *api_error_message(const usi_graph *g)
{
    return g->has_error ? g->error : NULL;
}
static int32_t api_is_training(const usi_graph *g) { return g->training; }

static void api_push_scope(usi_graph *g, const char *name)
{
    if (g->depth >= SG_MAX_SCOPES || !name || !*name || strchr(name, '.')) {
        sg_fail(g, "push_scope: bad scope '%s' at depth %d", name ? name : "(null)", g->depth);
        g->depth++; /* keep push/pop balanced for the depth check */
        return;
    }
    snprintf(g->scopes[g->depth++], sizeof g->scopes[0], "%s", name);
}
static void api_pop_scope(usi_graph *g)
{
    if (g->depth <= 0) {
        sg_fail(g, "pop_scope without push_scope");
        return;
    }
    g->depth--;
}

/* ---- tensors ---- */

static int32_t api_ndim(const usi_tensor *t) { return t ? t->ndim : 0; }
static int64_t api_dim(const usi_tensor *t, int32_t axis)
{
    if (!t) return 0;
    if (axis < 0) axis += t->ndim;
    return axis >= 0 && axis < t->ndim ? t->shape[axis] : 0;
}

static usi_tensor *record(usi_graph *g, int32_t is_param, const char *name, int32_t dtype,
                          int32_t ndim, const int64_t *shape, const usi_init *init)
{
    if (g->has_error) return NULL;
    if (!name || !*name || ndim < 0 || ndim > USI_MAX_DIMS || (ndim && !shape) || !init ||
        init->struct_size < sizeof(usi_init)) {
        sg_fail(g, "%s '%s': bad arguments", is_param ? "param" : "buffer", name ? name : "");
        return NULL;
    }
    char full[160];
    size_t n = 0;
    full[0] = 0;
    for (int32_t i = 0; i < g->depth; i++)
        n += (size_t)snprintf(full + n, sizeof full - n, "%s.", g->scopes[i]);
    snprintf(full + n, sizeof full - n, "%s", name);
    int64_t numel = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] <= 0) {
            sg_fail(g, "'%s': dim %d is %lld", full, i, (long long)shape[i]);
            return NULL;
        }
        numel *= shape[i];
    }
    for (int32_t i = 0; i < g->n_entries; i++)
        if (!strcmp(g->entries[i].name, full)) {
            sg_fail(g, "'%s' registered twice", full);
            return NULL;
        }
    if (g->n_entries == g->cap_entries) {
        int32_t cap = g->cap_entries ? 2 * g->cap_entries : 64;
        sg_entry *e = realloc(g->entries, (size_t)cap * sizeof *e);
        if (!e) {
            sg_fail(g, "out of memory");
            return NULL;
        }
        g->entries = e;
        g->cap_entries = cap;
    }
    sg_entry *e = &g->entries[g->n_entries++];
    memset(e, 0, sizeof *e);
    e->is_param = is_param;
    e->dtype = dtype;
    e->ndim = ndim;
    for (int32_t i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->numel = numel;
    e->init = *init;
    snprintf(e->name, sizeof e->name, "%s", full);
    return sg_tensor(g, dtype, ndim, shape);
}

static usi_tensor *api_param(usi_graph *g, const char *name, int32_t ndim, const int64_t *shape,
                             const usi_init *init)
{
    return record(g, 1, name, USI_DTYPE_F32, ndim, shape, init);
}
static usi_tensor *api_buffer(usi_graph *g, const char *name, int32_t dtype, int32_t ndim,
                              const int64_t *shape, const usi_init *init)
{
    return record(g, 0, name, dtype, ndim, shape, init);
}

/* ---- layers ---- */

/* Output side of a sliding window, or 0 when the window does not fit. */
static int64_t window_out(int64_t in, int32_t k, int32_t s, int32_t p, int32_t d)
{
    int64_t span = (int64_t)d * (k - 1) + 1;
    if (s <= 0 || in + 2 * p < span) return 0;
    return (in + 2 * p - span) / s + 1;
}

static usi_tensor *api_conv2d(usi_graph *g, usi_tensor *x, usi_tensor *w, usi_tensor *b,
                              const usi_conv2d_desc *d)
{
    char xs[96], ws[96];
    g->ops[SG_OP_CONV2D]++;
    if (!x || !w || g->has_error) return NULL;
    if (x->ndim != 4 || w->ndim != 4 || d->groups <= 0 || x->shape[1] != w->shape[1] * d->groups ||
        w->shape[0] % d->groups || (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))) {
        sg_fail(g, "conv2d: x %s w %s groups %d", fmt_shape(x, xs, sizeof xs),
                fmt_shape(w, ws, sizeof ws), d->groups);
        return NULL;
    }
    int64_t shape[4] = {x->shape[0], w->shape[0], 0, 0};
    for (int i = 0; i < 2; i++)
        shape[2 + i] = window_out(x->shape[2 + i], (int32_t)w->shape[2 + i], d->stride[i],
                                  d->padding[i], d->dilation[i]);
    if (!shape[2] || !shape[3]) {
        sg_fail(g, "conv2d: x %s w %s leaves no output", fmt_shape(x, xs, sizeof xs),
                fmt_shape(w, ws, sizeof ws));
        return NULL;
    }
    return sg_tensor(g, x->dtype, 4, shape);
}

static usi_tensor *api_linear(usi_graph *g, usi_tensor *x, usi_tensor *w, usi_tensor *b)
{
    char xs[96], ws[96];
    g->ops[SG_OP_LINEAR]++;
    if (!x || !w || g->has_error) return NULL;
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1] ||
        (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))) {
        sg_fail(g, "linear: x %s w %s", fmt_shape(x, xs, sizeof xs), fmt_shape(w, ws, sizeof ws));
        return NULL;
    }
    int64_t shape[USI_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = w->shape[0];
    return sg_tensor(g, x->dtype, x->ndim, shape);
}

static int is_channel_vec(const usi_tensor *t, int64_t c)
{
    return !t || (t->ndim == 1 && t->shape[0] == c);
}

static usi_tensor *api_batch_norm(usi_graph *g, usi_tensor *x, usi_tensor *weight,
                                  usi_tensor *bias, usi_tensor *mean, usi_tensor *var,
                                  usi_tensor *count, double momentum, double eps)
{
    char xs[96];
    g->ops[SG_OP_BATCH_NORM]++;
    if (!x || !mean || !var || g->has_error) return NULL;
    int64_t c = x->ndim >= 2 ? x->shape[1] : -1;
    if (!is_channel_vec(weight, c) || !is_channel_vec(bias, c) || !is_channel_vec(mean, c) ||
        !is_channel_vec(var, c) || (count && (count->ndim != 0 || count->dtype != USI_DTYPE_I64)) ||
        !(momentum > 0 && momentum < 1) || !(eps > 0)) {
        sg_fail(g, "batch_norm: x %s", fmt_shape(x, xs, sizeof xs));
        return NULL;
    }
    return sg_tensor(g, x->dtype, x->ndim, x->shape);
}

static usi_tensor *same_shape(usi_graph *g, int32_t op, usi_tensor *x)
{
    g->ops[op]++;
    if (!x || g->has_error) return NULL;
    return sg_tensor(g, x->dtype, x->ndim, x->shape);
}

static usi_tensor *api_activation(usi_graph *g, usi_tensor *x, int32_t act, double alpha)
{
    (void)alpha;
    if (act < USI_ACT_RELU || act > USI_ACT_TANH) sg_fail(g, "activation: unknown kind %d", act);
    return same_shape(g, SG_OP_ACTIVATION, x);
}

static usi_tensor *api_dropout(usi_graph *g, usi_tensor *x, double p)
{
    if (!(p >= 0 && p < 1)) sg_fail(g, "dropout: p = %g", p);
    return same_shape(g, SG_OP_DROPOUT, x);
}

static usi_tensor *api_drop_path(usi_graph *g, usi_tensor *x, double p)
{
    if (!(p >= 0 && p < 1)) sg_fail(g, "drop_path: p = %g", p);
    return same_shape(g, SG_OP_DROP_PATH, x);
}

static usi_tensor *api_binary(usi_graph *g, int32_t op, usi_tensor *a, usi_tensor *b)
{
    char as[96], bs[96];
    g->ops[SG_OP_BINARY]++;
    if (!a || !b || g->has_error) return NULL;
    int32_t nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t shape[USI_MAX_DIMS];
    for (int32_t i = 0; i < nd; i++) {
        int32_t ia = a->ndim - nd + i, ib = b->ndim - nd + i;
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            sg_fail(g, "binary %d: %s and %s do not broadcast", op, fmt_shape(a, as, sizeof as),
                    fmt_shape(b, bs, sizeof bs));
            return NULL;
        }
        shape[i] = da == 1 ? db : da;
    }
    return sg_tensor(g, a->dtype, nd, shape);
}

static usi_tensor *api_pool2d(usi_graph *g, usi_tensor *x, const usi_pool2d_desc *d)
{
    char xs[96];
    g->ops[SG_OP_POOL2D]++;
    if (!x || g->has_error) return NULL;
    int64_t shape[4] = {0};
    if (x->ndim == 4) {
        shape[0] = x->shape[0];
        shape[1] = x->shape[1];
        for (int i = 0; i < 2; i++) {
            int64_t in = x->shape[2 + i];
            int32_t k = d->kernel[i], s = d->stride[i], p = d->padding[i];
            shape[2 + i] = p * 2 > k ? 0 /* PyTorch refuses pads over half the kernel */
                                     : window_out(in, k, s, p, 1);
            /* ceil mode: one more window where the last one would start
             * inside the input or its left padding (PyTorch's rule) */
            if (d->ceil_mode && shape[2 + i] && (in + 2 * p - k) % s &&
                shape[2 + i] * s < in + p)
                shape[2 + i]++;
        }
    }
    if (!shape[2] || !shape[3]) {
        sg_fail(g, "pool2d: x %s kernel %d leaves no output", fmt_shape(x, xs, sizeof xs),
                d->kernel[0]);
        return NULL;
    }
    return sg_tensor(g, x->dtype, 4, shape);
}

static usi_tensor *api_reduce(usi_graph *g, int32_t op, usi_tensor *x, int32_t n_axes,
                              const int32_t *axes, int32_t keepdim)
{
    g->ops[SG_OP_REDUCE]++;
    if (!x || g->has_error) return NULL;
    int32_t drop[USI_MAX_DIMS] = {0};
    for (int32_t i = 0; i < n_axes; i++) {
        int32_t a = axes[i] < 0 ? axes[i] + x->ndim : axes[i];
        if (a < 0 || a >= x->ndim || drop[a] || (op != USI_REDUCE_MEAN && op != USI_REDUCE_SUM)) {
            sg_fail(g, "reduce: bad axis %d of %d dims", axes[i], x->ndim);
            return NULL;
        }
        drop[a] = 1;
    }
    int64_t shape[USI_MAX_DIMS];
    int32_t nd = 0;
    for (int32_t i = 0; i < x->ndim; i++) {
        if (!drop[i])
            shape[nd++] = x->shape[i];
        else if (keepdim)
            shape[nd++] = 1;
    }
    return sg_tensor(g, x->dtype, nd, shape);
}

static usi_tensor *api_flatten(usi_graph *g, usi_tensor *x, int32_t start, int32_t end)
{
    g->ops[SG_OP_FLATTEN]++;
    if (!x || g->has_error) return NULL;
    if (start < 0) start += x->ndim;
    if (end < 0) end += x->ndim;
    if (start < 0 || end >= x->ndim || start > end) {
        sg_fail(g, "flatten: dims %d..%d of %d", start, end, x->ndim);
        return NULL;
    }
    int64_t shape[USI_MAX_DIMS];
    int32_t nd = 0;
    for (int32_t i = 0; i < x->ndim; i++) {
        if (i <= start || i > end)
            shape[nd++] = x->shape[i];
        else
            shape[nd - 1] *= x->shape[i];
    }
    return sg_tensor(g, x->dtype, nd, shape);
}

static usi_tensor *api_scale(usi_graph *g, usi_tensor *x, double s)
{
    (void)s;
    return same_shape(g, SG_OP_OTHER, x);
}


/* ---- ops of the token models (ViT, Mixer) and ConvNeXt ---- */

static usi_tensor *api_layer_norm(usi_graph *g, usi_tensor *x, usi_tensor *w, usi_tensor *b,
                                  int32_t axis, double eps)
{
    char xs[96];
    g->ops[SG_OP_LAYER_NORM]++;
    if (!x || g->has_error) return NULL;
    int32_t ax = axis < 0 ? axis + x->ndim : axis;
    int64_t c = ax >= 0 && ax < x->ndim ? x->shape[ax] : -1;
    if ((ax != x->ndim - 1 && ax != 1) || !is_channel_vec(w, c) || !is_channel_vec(b, c) ||
        !(eps > 0)) {
        sg_fail(g, "layer_norm: x %s axis %d", fmt_shape(x, xs, sizeof xs), axis);
        return NULL;
    }
    return sg_tensor(g, x->dtype, x->ndim, x->shape);
}

/* numpy broadcasting of the first na / nb dims of two shapes. */
static int broadcast(int32_t na, const int64_t *a, int32_t nb, const int64_t *b, int32_t *n,
                     int64_t *out)
{
    *n = na > nb ? na : nb;
    for (int32_t i = 0; i < *n; i++) {
        int32_t ia = na - *n + i, ib = nb - *n + i;
        int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
        if (da != db && da != 1 && db != 1) return 0;
        out[i] = da == 1 ? db : da;
    }
    return 1;
}

static usi_tensor *api_matmul(usi_graph *g, usi_tensor *a, usi_tensor *b)
{
    char as[96], bs[96];
    g->ops[SG_OP_MATMUL]++;
    if (!a || !b || g->has_error) return NULL;
    int64_t shape[USI_MAX_DIMS];
    int32_t n = 0;
    if (a->ndim < 2 || b->ndim < 2 || a->shape[a->ndim - 1] != b->shape[b->ndim - 2] ||
        !broadcast(a->ndim - 2, a->shape, b->ndim - 2, b->shape, &n, shape)) {
        sg_fail(g, "matmul: a %s b %s", fmt_shape(a, as, sizeof as), fmt_shape(b, bs, sizeof bs));
        return NULL;
    }
    shape[n] = a->shape[a->ndim - 2];
    shape[n + 1] = b->shape[b->ndim - 1];
    return sg_tensor(g, a->dtype, n + 2, shape);
}

static usi_tensor *api_softmax(usi_graph *g, usi_tensor *x)
{
    return same_shape(g, SG_OP_OTHER, x);
}

static usi_tensor *api_permute(usi_graph *g, usi_tensor *x, const int32_t *perm);

/* The core records attention as its parts; so does this graph. */
static usi_tensor *api_attention(usi_graph *g, usi_tensor *q, usi_tensor *k, usi_tensor *v,
                                 usi_tensor *bias, double scale)
{
    (void)scale;
    if (!q || !k || !v || g->has_error) return NULL;
    int32_t perm[USI_MAX_DIMS];
    for (int32_t i = 0; i < k->ndim; i++) perm[i] = i;
    if (k->ndim >= 2) perm[k->ndim - 1] = k->ndim - 2, perm[k->ndim - 2] = k->ndim - 1;
    usi_tensor *s = api_matmul(g, q, api_permute(g, k, perm));
    if (bias) s = api_binary(g, USI_BIN_ADD, s, bias);
    return api_matmul(g, api_softmax(g, s), v);
}

static usi_tensor *api_reshape(usi_graph *g, usi_tensor *x, int32_t ndim, const int64_t *shape)
{
    char xs[96];
    g->ops[SG_OP_OTHER]++;
    if (!x || g->has_error) return NULL;
    int64_t numel = 1, known = 1, out[USI_MAX_DIMS];
    int32_t free_dim = -1, bad = ndim < 1 || ndim > USI_MAX_DIMS;
    for (int32_t i = 0; i < x->ndim; i++) numel *= x->shape[i];
    for (int32_t i = 0; !bad && i < ndim; i++) {
        out[i] = shape[i];
        if (shape[i] == -1 && free_dim < 0)
            free_dim = i;
        else if (shape[i] > 0)
            known *= shape[i];
        else
            bad = 1;
    }
    if (!bad && free_dim >= 0) {
        bad = known == 0 || numel % known;
        if (!bad) out[free_dim] = numel / known;
    } else if (!bad) {
        bad = known != numel;
    }
    if (bad) {
        sg_fail(g, "reshape: x %s to %d dims", fmt_shape(x, xs, sizeof xs), ndim);
        return NULL;
    }
    return sg_tensor(g, x->dtype, ndim, out);
}

static usi_tensor *api_permute(usi_graph *g, usi_tensor *x, const int32_t *perm)
{
    char xs[96];
    g->ops[SG_OP_OTHER]++;
    if (!x || g->has_error) return NULL;
    int64_t out[USI_MAX_DIMS];
    int32_t seen[USI_MAX_DIMS] = {0};
    for (int32_t i = 0; i < x->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= x->ndim || seen[perm[i]]++) {
            sg_fail(g, "permute: x %s, not a permutation", fmt_shape(x, xs, sizeof xs));
            return NULL;
        }
        out[i] = x->shape[perm[i]];
    }
    return sg_tensor(g, x->dtype, x->ndim, out);
}

static usi_tensor *api_concat(usi_graph *g, int32_t n, usi_tensor *const *xs, int32_t axis)
{
    char as[96], bs[96];
    g->ops[SG_OP_OTHER]++;
    if (n < 1 || g->has_error) return NULL;
    for (int32_t i = 0; i < n; i++)
        if (!xs[i]) return NULL;
    const usi_tensor *x0 = xs[0];
    int32_t ax = axis < 0 ? axis + x0->ndim : axis;
    if (ax < 0 || ax >= x0->ndim) {
        sg_fail(g, "concat: axis %d of %s", axis, fmt_shape(x0, as, sizeof as));
        return NULL;
    }
    int64_t out[USI_MAX_DIMS];
    memcpy(out, x0->shape, sizeof out);
    for (int32_t i = 1; i < n; i++) {
        int same = xs[i]->ndim == x0->ndim;
        for (int32_t d = 0; same && d < x0->ndim; d++)
            same = d == ax || xs[i]->shape[d] == x0->shape[d];
        if (!same) {
            sg_fail(g, "concat: %s and %s on axis %d", fmt_shape(x0, as, sizeof as),
                    fmt_shape(xs[i], bs, sizeof bs), axis);
            return NULL;
        }
        out[ax] += xs[i]->shape[ax];
    }
    return sg_tensor(g, x0->dtype, x0->ndim, out);
}

static usi_tensor *api_slice(usi_graph *g, usi_tensor *x, int32_t axis, int64_t start,
                             int64_t end, int64_t step)
{
    char xs[96];
    g->ops[SG_OP_OTHER]++;
    if (!x || g->has_error) return NULL;
    int32_t ax = axis < 0 ? axis + x->ndim : axis;
    int64_t len = ax >= 0 && ax < x->ndim ? x->shape[ax] : 0;
    if (start < 0) start += len;
    if (end < 0) end += len;
    if (start < 0) start = 0;
    if (end > len) end = len;
    if (!len || step <= 0 || end <= start) {
        sg_fail(g, "slice: x %s axis %d [%lld:%lld:%lld]", fmt_shape(x, xs, sizeof xs), axis,
                (long long)start, (long long)end, (long long)step);
        return NULL;
    }
    int64_t out[USI_MAX_DIMS];
    memcpy(out, x->shape, sizeof out);
    out[ax] = (end - start + step - 1) / step;
    return sg_tensor(g, x->dtype, x->ndim, out);
}

static usi_tensor *api_pad(usi_graph *g, usi_tensor *x, const int64_t *pads, double value)
{
    (void)value;
    g->ops[SG_OP_OTHER]++;
    if (!x || g->has_error) return NULL;
    int64_t out[USI_MAX_DIMS];
    for (int32_t i = 0; i < x->ndim; i++) {
        out[i] = x->shape[i] + pads[2 * i] + pads[2 * i + 1];
        if (pads[2 * i] < 0 || pads[2 * i + 1] < 0) {
            sg_fail(g, "pad: negative padding");
            return NULL;
        }
    }
    return sg_tensor(g, x->dtype, x->ndim, out);
}

static usi_tensor *api_space_to_depth(usi_graph *g, usi_tensor *x, int32_t block)
{
    char xs[96];
    g->ops[SG_OP_OTHER]++;
    if (!x || g->has_error) return NULL;
    if (x->ndim != 4 || block < 1 || x->shape[2] % block || x->shape[3] % block) {
        sg_fail(g, "space_to_depth: x %s block %d", fmt_shape(x, xs, sizeof xs), block);
        return NULL;
    }
    int64_t out[4] = {x->shape[0], x->shape[1] * block * block, x->shape[2] / block,
                      x->shape[3] / block};
    return sg_tensor(g, x->dtype, 4, out);
}

/* Constants are no state_dict entries (timm's non-persistent buffers). */
static usi_tensor *api_constant(usi_graph *g, const char *name, int32_t dtype, int32_t ndim,
                                const int64_t *shape, const void *data)
{
    g->ops[SG_OP_OTHER]++;
    if (g->has_error) return NULL;
    int64_t numel = 1;
    int bad = !name || !*name || !data || ndim < 0 || ndim > USI_MAX_DIMS || (ndim && !shape) ||
              (dtype != USI_DTYPE_F32 && dtype != USI_DTYPE_I32);
    for (int32_t i = 0; !bad && i < ndim; i++) {
        bad = shape[i] <= 0;
        numel *= shape[i];
    }
    if (bad) {
        sg_fail(g, "constant '%s': bad arguments", name ? name : "");
        return NULL;
    }
    usi_tensor *t = sg_tensor(g, dtype, ndim, shape);
    if (!t) return NULL;
    t->is_constant = 1;
    if (dtype == USI_DTYPE_I32) {
        t->indices = malloc((size_t)numel * sizeof(int32_t));
        if (!t->indices) {
            sg_fail(g, "out of memory");
            return NULL;
        }
        memcpy(t->indices, data, (size_t)numel * sizeof(int32_t));
    }
    return t;
}

static usi_tensor *api_gather(usi_graph *g, usi_tensor *table, usi_tensor *idx, int32_t axis)
{
    char ts[96], is[96];
    g->ops[SG_OP_OTHER]++;
    if (!table || !idx || g->has_error) return NULL;
    int32_t ax = axis < 0 ? axis + table->ndim : axis;
    int32_t ndim = table->ndim - 1 + idx->ndim;
    if (!idx->is_constant || !idx->indices || ax < 0 || ax >= table->ndim || ndim > USI_MAX_DIMS) {
        sg_fail(g, "gather: table %s idx %s axis %d", fmt_shape(table, ts, sizeof ts),
                fmt_shape(idx, is, sizeof is), axis);
        return NULL;
    }
    int64_t n = 1, out[USI_MAX_DIMS];
    for (int32_t i = 0; i < idx->ndim; i++) n *= idx->shape[i];
    for (int64_t i = 0; i < n; i++)
        if (idx->indices[i] < 0 || idx->indices[i] >= table->shape[ax]) {
            sg_fail(g, "gather: index %d (entry %lld) is not in [0, %lld)", idx->indices[i],
                    (long long)i, (long long)table->shape[ax]);
            return NULL;
        }
    int32_t k = 0;
    for (int32_t d = 0; d < ax; d++) out[k++] = table->shape[d];
    for (int32_t d = 0; d < idx->ndim; d++) out[k++] = idx->shape[d];
    for (int32_t d = ax + 1; d < table->ndim; d++) out[k++] = table->shape[d];
    return sg_tensor(g, table->dtype, ndim, out);
}

const usi_graph_api *sg_api(void)
{
    static const usi_graph_api api = {
        .struct_size = sizeof(usi_graph_api),
        .error_message = api_error_message,
        .is_training = api_is_training,
        .push_scope = api_push_scope,
        .pop_scope = api_pop_scope,
        .ndim = api_ndim,
        .dim = api_dim,
        .param = api_param,
        .buffer = api_buffer,
        .conv2d = api_conv2d,
        .linear = api_linear,
        .batch_norm = api_batch_norm,
        .activation = api_activation,
        .binary = api_binary,
        .scale = api_scale,
        .pool2d = api_pool2d,
        .reduce = api_reduce,
        .dropout = api_dropout,
        .drop_path = api_drop_path,
        .flatten = api_flatten,
        .layer_norm = api_layer_norm,
        .matmul = api_matmul,
        .softmax = api_softmax,
        .attention = api_attention,
        .reshape = api_reshape,
        .permute = api_permute,
        .concat = api_concat,
        .slice = api_slice,
        .pad = api_pad,
        .space_to_depth = api_space_to_depth,
        .constant = api_constant,
        .gather = api_gather,
    };
    return &api;
}

usi_graph *sg_new(int32_t training)
{
    usi_graph *g = calloc(1, sizeof *g);
    if (g) g->training = training;
    return g;
}

void sg_free(usi_graph *g)
{
    if (!g) return;
    for (usi_tensor *t = g->tensors, *next; t; t = next) {
        next = t->next_alloc;
        free(t->indices);
        free(t);
    }
    free(g->entries);
    free(g);
}

usi_tensor *sg_input(usi_graph *g, int32_t ndim, const int64_t *shape)
{
    return sg_tensor(g, USI_DTYPE_F32, ndim, shape);
}

int32_t sg_shape(const usi_tensor *t, int64_t *shape)
{
    if (!t) return 0;
    for (int32_t i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    return t->ndim;
}

const char *sg_error(const usi_graph *g) { return g->has_error ? g->error : NULL; }
int32_t sg_count(const usi_graph *g) { return g->n_entries; }
const sg_entry *sg_at(const usi_graph *g, int32_t i) { return &g->entries[i]; }
int64_t sg_op_count(const usi_graph *g, int32_t op) { return g->ops[op]; }
int32_t sg_scope_depth(const usi_graph *g) { return g->depth; }
