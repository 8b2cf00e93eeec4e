/* Record functions of the layer ops: check arguments, infer the output shape,
 * keep attributes. Nothing is computed here. */
#include <math.h>
#include <string.h>

#include "graph/build_common.h"
#include "plugin/crash.h"
#include "util/error.h"

static usi_tensor *rec_conv2d(usi_graph *g, usi_tensor *x, usi_tensor *w,
                              usi_tensor *b, const usi_conv2d_desc *d)
{
    usi_tensor *src[3] = {x, w, b};
    usi_tensor *t = usi_begin(g, USI_OP_CONV2D, "conv2d", b ? 3 : 2, src, 4, 0);
    if (!t) return NULL;
    if (!d || d->struct_size < sizeof(usi_conv2d_desc))
        return usi_fail_shapes(t, "x", x, "w", w, "missing or short descriptor");
    if (x->ndim != 4 || w->ndim != 4)
        return usi_fail_shapes(t, "x", x, "w", w, "both must be 4-D (NCHW, OIHW)");
    int32_t groups = d->groups;
    if (groups < 1 || x->shape[1] != w->shape[1] * groups || w->shape[0] % groups)
        return usi_fail_shapes(t, "x", x, "w", w,
                               "channels don't fit groups %d", groups);
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return usi_fail_shapes(t, "w", w, "bias", b, "bias must be [out channels]");
    int64_t out[4] = {x->shape[0], w->shape[0], 0, 0};
    for (int i = 0; i < 2; i++) {
        if (d->stride[i] < 1 || d->dilation[i] < 1 || d->padding[i] < 0)
            return usi_fail_shapes(t, "x", x, "w", w,
                                   "stride/dilation must be >= 1, padding >= 0");
        int64_t span = (int64_t)d->dilation[i] * (w->shape[2 + i] - 1) + 1;
        int64_t in = x->shape[2 + i] + 2 * (int64_t)d->padding[i];
        if (in < span)
            return usi_fail_shapes(t, "x", x, "w", w,
                                   "kernel larger than the padded input");
        out[2 + i] = (in - span) / d->stride[i] + 1;
        t->attrs.conv2d.stride[i] = d->stride[i];
        t->attrs.conv2d.padding[i] = d->padding[i];
        t->attrs.conv2d.dilation[i] = d->dilation[i];
    }
    t->attrs.conv2d.groups = groups;
    usi_node_set_shape(t, 4, out);
    return t;
}

static usi_tensor *rec_linear(usi_graph *g, usi_tensor *x, usi_tensor *w,
                              usi_tensor *b)
{
    usi_tensor *src[3] = {x, w, b};
    usi_tensor *t = usi_begin(g, USI_OP_LINEAR, "linear", b ? 3 : 2, src, 4, 0);
    if (!t) return NULL;
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1])
        return usi_fail_shapes(t, "x", x, "w", w, "need x[...,In] and w[Out,In]");
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return usi_fail_shapes(t, "w", w, "bias", b, "bias must be [Out]");
    int64_t out[USI_MAX_DIMS];
    memcpy(out, x->shape, sizeof out);
    out[x->ndim - 1] = w->shape[0];
    usi_node_set_shape(t, x->ndim, out);
    return t;
}

static usi_tensor *rec_matmul(usi_graph *g, usi_tensor *a, usi_tensor *b)
{
    usi_tensor *src[2] = {a, b};
    usi_tensor *t = usi_begin(g, USI_OP_MATMUL, "matmul", 2, src, 0, 0);
    if (!t) return NULL;
    if (a->ndim < 2 || b->ndim < 2)
        return usi_fail_shapes(t, "a", a, "b", b, "both need at least 2 dims");
    if (a->shape[a->ndim - 1] != b->shape[b->ndim - 2])
        return usi_fail_shapes(t, "a", a, "b", b, "inner dims differ");
    int64_t out[USI_MAX_DIMS];
    int32_t n;
    if (!usi_broadcast_shape(a->ndim - 2, a->shape, b->ndim - 2, b->shape, &n, out))
        return usi_fail_shapes(t, "a", a, "b", b, "batch dims don't broadcast");
    out[n] = a->shape[a->ndim - 2];
    out[n + 1] = b->shape[b->ndim - 1];
    usi_node_set_shape(t, n + 2, out);
    return t;
}

static int is_vec(const usi_tensor *v, int64_t c)
{
    return !v || (v->ndim == 1 && v->shape[0] == c);
}

/* batch_norm src: x w b running_mean running_var num_batches_tracked. */
static usi_tensor *rec_batch_norm(usi_graph *g, usi_tensor *x, usi_tensor *w,
                                  usi_tensor *b, usi_tensor *rm, usi_tensor *rv,
                                  usi_tensor *nbt, double momentum, double eps)
{
    usi_tensor *src[6] = {x, w, b, rm, rv, nbt};
    usi_tensor *t = usi_begin(g, USI_OP_BATCH_NORM, "batch_norm", 6, src,
                              0x3e, 0x20);
    if (!t) return NULL;
    if (x->ndim < 2) return usi_fail_shapes(t, "x", x, NULL, NULL, "need [N,C,...]");
    int64_t c = x->shape[1];
    const usi_tensor *bad = !is_vec(w, c) ? w : !is_vec(b, c) ? b
                          : !is_vec(rm, c) ? rm : !is_vec(rv, c) ? rv : NULL;
    if (bad) return usi_fail_shapes(t, "x", x, bad->name, bad, "must be [C]");
    if ((rm == NULL) != (rv == NULL))
        return usi_fail_shapes(t, "x", x, NULL, NULL,
                               "running mean and var come together");
    if (nbt && (nbt->dtype != USI_DTYPE_I64 || nbt->numel != 1))
        return usi_fail_shapes(t, "x", x, "num_batches_tracked", nbt,
                               "must be an I64 scalar");
    if (!(eps > 0)) return usi_fail_shapes(t, "x", x, NULL, NULL, "eps must be > 0");
    t->attrs.batch_norm.momentum = momentum;
    t->attrs.batch_norm.eps = eps;
    t->attrs.batch_norm.batch_stats = g->training || !rm;
    usi_node_set_shape(t, x->ndim, x->shape);
    return t;
}

static usi_tensor *rec_layer_norm(usi_graph *g, usi_tensor *x, usi_tensor *w,
                                  usi_tensor *b, int32_t axis, double eps)
{
    usi_tensor *src[3] = {x, w, b};
    usi_tensor *t = usi_begin(g, USI_OP_LAYER_NORM, "layer_norm", 3, src, 6, 0);
    if (!t) return NULL;
    int32_t ax = axis < 0 ? axis + x->ndim : axis;
    if (x->ndim < 1 || (ax != x->ndim - 1 && ax != 1) || ax < 0)
        return usi_fail_shapes(t, "x", x, NULL, NULL,
                               "axis %d: only the last dim or 1 (NCHW)", axis);
    int64_t c = x->shape[ax];
    const usi_tensor *bad = !is_vec(w, c) ? w : !is_vec(b, c) ? b : NULL;
    if (bad) return usi_fail_shapes(t, "x", x, bad->name, bad, "must be [C]");
    if (!(eps > 0)) return usi_fail_shapes(t, "x", x, NULL, NULL, "eps must be > 0");
    t->attrs.layer_norm.axis = ax;
    t->attrs.layer_norm.eps = eps;
    usi_node_set_shape(t, x->ndim, x->shape);
    return t;
}

static usi_tensor *rec_activation(usi_graph *g, usi_tensor *x, int32_t act,
                                  double alpha)
{
    usi_tensor *t = usi_begin(g, USI_OP_ACT, "activation", 1, &x, 0, 0);
    if (!t) return NULL;
    if (act < USI_ACT_RELU || act > USI_ACT_LOG)
        return usi_fail_shapes(t, "x", x, NULL, NULL, "unknown activation %d", act);
    t->attrs.act.kind = act;
    t->attrs.act.alpha = alpha;
    usi_node_set_shape(t, x->ndim, x->shape);
    return t;
}

static usi_tensor *rec_binary(usi_graph *g, int32_t op, usi_tensor *a,
                              usi_tensor *b)
{
    usi_tensor *src[2] = {a, b};
    usi_tensor *t = usi_begin(g, USI_OP_BINARY, "binary", 2, src, 0, 0);
    if (!t) return NULL;
    if (op < USI_BIN_ADD || op > USI_BIN_DIV)
        return usi_fail_shapes(t, "a", a, "b", b, "unknown binary op %d", op);
    int64_t out[USI_MAX_DIMS];
    int32_t n;
    if (!usi_broadcast_shape(a->ndim, a->shape, b->ndim, b->shape, &n, out))
        return usi_fail_shapes(t, "a", a, "b", b, "shapes don't broadcast");
    t->attrs.binary.kind = op;
    usi_node_set_shape(t, n, out);
    return t;
}

static usi_tensor *rec_scale(usi_graph *g, usi_tensor *x, double s)
{
    usi_tensor *t = usi_begin(g, USI_OP_SCALE, "scale", 1, &x, 0, 0);
    if (!t) return NULL;
    t->attrs.scale.factor = s;
    usi_node_set_shape(t, x->ndim, x->shape);
    return t;
}

static int64_t pool_out(int64_t in, int32_t k, int32_t s, int32_t p, int ceil_mode)
{
    int64_t span = in + 2 * (int64_t)p - k;
    int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
    /* PyTorch: the last window must start inside the input or left padding. */
    if (ceil_mode && (out - 1) * s >= in + p) out--;
    return out;
}

static usi_tensor *rec_pool2d(usi_graph *g, usi_tensor *x,
                              const usi_pool2d_desc *d)
{
    usi_tensor *t = usi_begin(g, USI_OP_POOL2D, "pool2d", 1, &x, 0, 0);
    if (!t) return NULL;
    if (!d || d->struct_size < sizeof(usi_pool2d_desc))
        return usi_fail_shapes(t, "x", x, NULL, NULL, "missing or short descriptor");
    if (x->ndim != 4) return usi_fail_shapes(t, "x", x, NULL, NULL, "need NCHW");
    if (d->kind != USI_POOL_MAX && d->kind != USI_POOL_AVG)
        return usi_fail_shapes(t, "x", x, NULL, NULL, "unknown pool kind %d", d->kind);
    int64_t out[4] = {x->shape[0], x->shape[1], 0, 0};
    for (int i = 0; i < 2; i++) {
        int32_t k = d->kernel[i], s = d->stride[i], p = d->padding[i];
        if (k < 1 || s < 1 || p < 0 || p > k / 2)
            return usi_fail_shapes(t, "x", x, NULL, NULL,
                                   "kernel %d stride %d padding %d: need k,s >= 1,"
                                   " 0 <= padding <= kernel/2", k, s, p);
        if (x->shape[2 + i] + 2 * p < k)
            return usi_fail_shapes(t, "x", x, NULL, NULL,
                                   "kernel %d larger than the padded input", k);
        out[2 + i] = pool_out(x->shape[2 + i], k, s, p, d->ceil_mode);
        t->attrs.pool2d.kernel[i] = k;
        t->attrs.pool2d.stride[i] = s;
        t->attrs.pool2d.padding[i] = p;
    }
    t->attrs.pool2d.kind = d->kind;
    t->attrs.pool2d.count_include_pad = d->count_include_pad ? 1 : 0;
    usi_node_set_shape(t, 4, out);
    return t;
}

static usi_tensor *rec_reduce(usi_graph *g, int32_t op, usi_tensor *x,
                              int32_t n_axes, const int32_t *axes, int32_t keepdim)
{
    usi_tensor *t = usi_begin(g, USI_OP_REDUCE, "reduce", 1, &x, 0, 0);
    if (!t) return NULL;
    if (op != USI_REDUCE_MEAN && op != USI_REDUCE_SUM)
        return usi_fail_shapes(t, "x", x, NULL, NULL, "unknown reduction %d", op);
    uint32_t mask = 0;
    for (int32_t i = 0; i < n_axes; i++) {
        int32_t a = axes[i] < 0 ? axes[i] + x->ndim : axes[i];
        if (a < 0 || a >= x->ndim || (mask & (1u << a)))
            return usi_fail_shapes(t, "x", x, NULL, NULL,
                                   "axis %d is out of range or repeated", axes[i]);
        mask |= 1u << a;
    }
    int64_t out[USI_MAX_DIMS];
    int32_t n = 0;
    for (int32_t i = 0; i < x->ndim; i++) {
        if (!(mask & (1u << i))) out[n++] = x->shape[i];
        else if (keepdim) out[n++] = 1;
    }
    t->attrs.reduce.kind = op;
    t->attrs.reduce.axes = mask;
    usi_node_set_shape(t, n, out);
    return t;
}

static usi_tensor *rec_softmax(usi_graph *g, usi_tensor *x)
{
    usi_tensor *t = usi_begin(g, USI_OP_SOFTMAX, "softmax", 1, &x, 0, 0);
    if (!t) return NULL;
    if (x->ndim < 1) return usi_fail_shapes(t, "x", x, NULL, NULL, "need >= 1 dim");
    usi_node_set_shape(t, x->ndim, x->shape);
    return t;
}

static usi_tensor *rec_dropout_like(usi_graph *g, int32_t op, const char *name,
                                    usi_tensor *x, double p)
{
    if (!g || g->error || !x) return NULL;
    if (!(p >= 0 && p < 1)) {
        usi_tensor *t = usi_begin(g, op, name, 1, &x, 0, 0);
        return t ? usi_fail_shapes(t, "x", x, NULL, NULL, "p = %g not in [0, 1)", p)
                 : NULL;
    }
    if (!g->training || p == 0) return x;
    usi_tensor *t = usi_begin(g, op, name, 1, &x, 0, 0);
    if (!t) return NULL;
    if (op == USI_OP_DROP_PATH && x->ndim < 1)
        return usi_fail_shapes(t, "x", x, NULL, NULL, "need a batch dim");
    if (op == USI_OP_DROPOUT) t->attrs.dropout.p = p;
    else t->attrs.drop_path.p = p;
    usi_node_set_shape(t, x->ndim, x->shape);
    return t;
}

static usi_tensor *rec_dropout(usi_graph *g, usi_tensor *x, double p)
{
    return rec_dropout_like(g, USI_OP_DROPOUT, "dropout", x, p);
}

static usi_tensor *rec_drop_path(usi_graph *g, usi_tensor *x, double p)
{
    return rec_dropout_like(g, USI_OP_DROP_PATH, "drop_path", x, p);
}

static usi_tensor *rec_loss(usi_graph *g, int32_t op, const char *name,
                            usi_tensor *a, usi_tensor *b, double f)
{
    usi_tensor *src[2] = {a, b};
    usi_tensor *t = usi_begin(g, op, name, 2, src, 0, op == USI_OP_LOSS_CE ? 2 : 0);
    if (!t) return NULL;
    if (a->ndim != 2)
        return usi_fail_shapes(t, "logits", a, NULL, NULL, "need [N, classes]");
    if (op == USI_OP_LOSS_CE) {
        if (b->dtype != USI_DTYPE_I32 || b->ndim != 1 || b->shape[0] != a->shape[0])
            return usi_fail_shapes(t, "logits", a, "labels", b,
                                   "labels must be I32 [N]");
        if (!(f >= 0 && f < 1))
            return usi_fail_shapes(t, "logits", a, NULL, NULL,
                                   "smoothing %g not in [0, 1)", f);
    } else if (b->ndim != 2 || b->shape[0] != a->shape[0] ||
               b->shape[1] != a->shape[1]) {
        return usi_fail_shapes(t, "logits", a, "targets", b, "shapes differ");
    }
    if (op == USI_OP_LOSS_KL && !(f > 0))
        return usi_fail_shapes(t, "logits", a, NULL, NULL,
                               "temperature %g must be > 0", f);
    if (op == USI_OP_LOSS_CE) t->attrs.loss_ce.smoothing = f;
    else if (op == USI_OP_LOSS_KL) t->attrs.loss_kl.temperature = f;
    usi_node_set_shape(t, 0, NULL);
    return t;
}

static usi_tensor *rec_loss_soft_ce(usi_graph *g, usi_tensor *logits,
                                    usi_tensor *targets)
{
    return rec_loss(g, USI_OP_LOSS_SOFT_CE, "loss_soft_ce", logits, targets, 0);
}

static usi_tensor *rec_loss_ce(usi_graph *g, usi_tensor *logits,
                               usi_tensor *labels, double smoothing)
{
    return rec_loss(g, USI_OP_LOSS_CE, "loss_ce", logits, labels, smoothing);
}

static usi_tensor *rec_loss_kl(usi_graph *g, usi_tensor *s, usi_tensor *t,
                               double temperature)
{
    return rec_loss(g, USI_OP_LOSS_KL, "loss_kl", s, t, temperature);
}

/* Composed from recorded ops, so autodiff and the planner see its parts. */
static usi_tensor *rec_attention(usi_graph *g, usi_tensor *q, usi_tensor *k,
                                 usi_tensor *v, usi_tensor *bias, double scale)
{
    if (!g || g->error || !q || !k || !v) return NULL;
    const usi_graph_api *api = usi_graph_builder();
    int32_t perm[USI_MAX_DIMS];
    for (int32_t i = 0; i < k->ndim; i++) perm[i] = i;
    if (k->ndim >= 2) {
        perm[k->ndim - 2] = k->ndim - 1;
        perm[k->ndim - 1] = k->ndim - 2;
    }
    api->push_scope(g, "attention");
    usi_tensor *s = api->matmul(g, q, api->permute(g, k, perm));
    s = api->scale(g, s, scale);
    if (bias) s = api->binary(g, USI_BIN_ADD, s, bias);
    usi_tensor *out = api->matmul(g, api->softmax(g, s), v);
    api->pop_scope(g);
    return out;
}

static usi_tensor *rec_custom(usi_graph *g, const usi_custom_op *op,
                              int32_t n_inputs, usi_tensor *const *inputs,
                              const void *attrs)
{
    if (!g || g->error) return NULL;
    if (n_inputs < 0 || n_inputs > 16 || !op || !op->infer_shape || !op->forward_cpu ||
        op->struct_size < sizeof(usi_custom_op)) {
        usi_graph_fail(g, "custom '%s': needs infer_shape, forward_cpu and 0..16 inputs",
                       op && op->name ? op->name : "?");
        return NULL;
    }
    usi_tensor *t = usi_begin(g, USI_OP_CUSTOM, op->name ? op->name : "custom",
                              n_inputs, inputs, 0, 0xffff);
    if (!t) return NULL;
    usi_tensor_view views[16], out;
    memset(views, 0, sizeof views);
    memset(&out, 0, sizeof out);
    for (int32_t i = 0; i < n_inputs; i++) {
        views[i].struct_size = sizeof views[i];
        views[i].dtype = inputs[i]->dtype;
        views[i].ndim = inputs[i]->ndim;
        memcpy(views[i].shape, inputs[i]->shape, sizeof views[i].shape);
    }
    out.struct_size = sizeof out;
    out.dtype = USI_DTYPE_F32;
    usi_crash_enter_code(USI_CRASH_CODE(op->infer_shape), "inferring the shape of custom op", op->name);
    usi_error *e = op->infer_shape(attrs, n_inputs, views, &out);
    usi_crash_leave();
    if (e) {
        usi_graph_fail(g, "custom '%s': %s", t->name, e->message);
        usi_error_free(e);
        return NULL;
    }
    if (out.dtype != USI_DTYPE_F32) {
        usi_graph_fail(g, "custom '%s': only float outputs", t->name);
        return NULL;
    }
    if (usi_node_set_shape(t, out.ndim, out.shape)) return NULL;
    t->custom = op;
    t->custom_attrs = attrs;
    if (!usi_node_passes_grad(t)) t->requires_grad = 0;
    return t;
}

void usi_builder_fill_layers(usi_graph_api *api)
{
    api->conv2d = rec_conv2d;
    api->linear = rec_linear;
    api->matmul = rec_matmul;
    api->batch_norm = rec_batch_norm;
    api->layer_norm = rec_layer_norm;
    api->activation = rec_activation;
    api->binary = rec_binary;
    api->scale = rec_scale;
    api->pool2d = rec_pool2d;
    api->reduce = rec_reduce;
    api->softmax = rec_softmax;
    api->attention = rec_attention;
    api->dropout = rec_dropout;
    api->drop_path = rec_drop_path;
    api->loss_soft_ce = rec_loss_soft_ce;
    api->loss_ce = rec_loss_ce;
    api->loss_kl = rec_loss_kl;
    api->custom = rec_custom;
}
