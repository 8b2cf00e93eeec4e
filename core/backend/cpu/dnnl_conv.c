/* Convolution on oneDNN (v2 C API). The graph keeps NCHW / OIHW; each conv
 * lets oneDNN pick its layouts (blocked or NHWC, where its direct kernels
 * live) and reorders in and out through the node's planned scratch. A plain
 * NCHW conv falls back to im2col + gemm, which is slower except for 1x1
 * stride-1 convs: those are plain GEMMs already and stay plain, which also
 * saves their (large) reorders. Primitives are made when the graph is planned
 * and kept with the node. */
#include <dnnl.h>
#include <math.h>
#include <stdlib.h>

#include "backend/cpu/cpu.h"

static dnnl_engine_t engine;
static dnnl_stream_t stream;

#define DNNL_TRY(call)                                                        \
    do {                                                                      \
        dnnl_status_t st_ = (call);                                           \
        if (st_ != dnnl_success)                                              \
            return usi_error_new(USI_ERR_INTERNAL, "oneDNN: %s failed (%d)",  \
                                 #call, (int)st_);                            \
    } while (0)

#define ALIGN 64

usi_error *usi_dnnl_init(void)
{
    if (stream) return NULL;
    DNNL_TRY(dnnl_engine_create(&engine, dnnl_cpu, 0));
    DNNL_TRY(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    return NULL;
}

/* One tensor argument of a primitive: its plain layout, the layout the
 * primitive wants, the reorder between them (NULL when they agree) and where
 * the reordered copy lives in the node's scratch. */
typedef struct port {
    dnnl_memory_desc_t plain, md;
    dnnl_primitive_t reorder;
    size_t off;
} port;

enum { P_SRC, P_WEI, P_DST, D_DDST, D_WEI, D_DSRC, W_SRC, W_DDST, W_DWEI, N_PORTS };

typedef struct conv_state {
    dnnl_primitive_t fwd, bwd_data, bwd_weights;
    dnnl_memory_desc_t bias;
    port p[N_PORTS];
    size_t fwd_bytes, bwd_bytes;   /* scratch: reordered copies          */
    size_t dx_off, dw_off, db_off; /* bwd scratch: results to accumulate */
    size_t fold_w_off, fold_b_off; /* fwd scratch: weights with the norm in */
} conv_state;

static void conv_state_free(void *ptr)
{
    conv_state *s = ptr;
    if (s->fwd) dnnl_primitive_destroy(s->fwd);
    if (s->bwd_data) dnnl_primitive_destroy(s->bwd_data);
    if (s->bwd_weights) dnnl_primitive_destroy(s->bwd_weights);
    for (int i = 0; i < N_PORTS; i++)
        if (s->p[i].reorder) dnnl_primitive_destroy(s->p[i].reorder);
    free(s);
}

static size_t up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* Take the primitive's layout for port q; an input reorders plain -> md,
 * an output md -> plain. Reserves scratch at *bytes when they differ. */
static usi_error *bind(port *q, const_dnnl_primitive_desc_t pd, dnnl_query_t what,
                       int is_output, size_t *bytes)
{
    q->md = *dnnl_primitive_desc_query_md(pd, what, 0);
    if (dnnl_memory_desc_equal(&q->md, &q->plain)) return NULL;
    dnnl_primitive_desc_t rpd;
    const dnnl_memory_desc_t *from = is_output ? &q->md : &q->plain;
    const dnnl_memory_desc_t *to = is_output ? &q->plain : &q->md;
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, from, engine, to, engine, NULL));
    dnnl_status_t st = dnnl_primitive_create(&q->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    if (st != dnnl_success)
        return usi_error_new(USI_ERR_INTERNAL, "oneDNN: reorder primitive (%d)", (int)st);
    q->off = *bytes;
    *bytes += up(dnnl_memory_desc_get_size(&q->md));
    return NULL;
}

typedef struct conv_geom {
    dnnl_dims_t strides, dilates, pad_l, pad_r;
    int plain; /* 1x1 stride 1: keep NCHW */
} conv_geom;

static void geom(const usi_tensor *t, conv_geom *g)
{
    const usi_tensor *w = t->src[1];
    const struct usi_attrs_conv2d *a = &t->attrs.conv2d;
    for (int i = 0; i < 2; i++) {
        g->strides[i] = a->stride[i];
        g->pad_l[i] = g->pad_r[i] = a->padding[i];
        g->dilates[i] = a->dilation[i] - 1; /* oneDNN counts the gaps */
    }
    g->plain = w->shape[2] == 1 && w->shape[3] == 1 && a->stride[0] == 1 &&
               a->stride[1] == 1 && a->groups == 1;
}

static usi_error *make_prim(dnnl_primitive_t *prim, dnnl_primitive_desc_t *pd,
                            const dnnl_convolution_desc_t *d,
                            const_dnnl_primitive_desc_t hint)
{
    DNNL_TRY(dnnl_primitive_desc_create(pd, d, NULL, engine, hint));
    dnnl_status_t st = dnnl_primitive_create(prim, *pd);
    if (st != dnnl_success) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
        return usi_error_new(USI_ERR_INTERNAL, "oneDNN: convolution primitive (%d)", (int)st);
    }
    return NULL;
}

/* Descriptors with layouts left to oneDNN (or fixed plain). */
typedef struct conv_mds {
    dnnl_memory_desc_t src, wei, dst, bias;
} conv_mds;

static usi_error *init_mds(const usi_tensor *t, const conv_geom *g, conv_state *s,
                           conv_mds *m)
{
    const usi_tensor *x = t->src[0], *w = t->src[1];
    int64_t G = t->attrs.conv2d.groups;
    dnnl_dims_t xd = {x->shape[0], x->shape[1], x->shape[2], x->shape[3]};
    dnnl_dims_t yd = {t->shape[0], t->shape[1], t->shape[2], t->shape[3]};
    dnnl_dims_t wd = {G, w->shape[0] / G, w->shape[1], w->shape[2], w->shape[3]};
    dnnl_dims_t bd = {w->shape[0]};
    dnnl_format_tag_t act = g->plain ? dnnl_nchw : dnnl_format_tag_any;
    dnnl_format_tag_t wt = g->plain ? dnnl_goihw : dnnl_format_tag_any;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->src, 4, xd, dnnl_f32, act));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->dst, 4, yd, dnnl_f32, act));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->wei, 5, wd, dnnl_f32, wt));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&m->bias, 1, bd, dnnl_f32, dnnl_x));
    s->bias = m->bias;
    dnnl_memory_desc_t xs, ys, ws;
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&xs, 4, xd, dnnl_f32, dnnl_nchw));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&ys, 4, yd, dnnl_f32, dnnl_nchw));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&ws, 5, wd, dnnl_f32, dnnl_goihw));
    const dnnl_memory_desc_t *plain[N_PORTS] = {&xs, &ws, &ys, &ys, &ws, &xs, &xs, &ys, &ws};
    for (int i = 0; i < N_PORTS; i++) s->p[i].plain = *plain[i];
    return NULL;
}

static usi_error *setup_backward(const usi_tensor *t, const conv_geom *g, conv_state *s,
                                 conv_mds *m, const_dnnl_primitive_desc_t fpd)
{
    const dnnl_memory_desc_t *bias = t->n_src > 2 ? &m->bias : NULL;
    dnnl_convolution_desc_t bdd, bwd;
    DNNL_TRY(dnnl_dilated_convolution_backward_data_desc_init(
        &bdd, dnnl_convolution_direct, &m->src, &m->wei, &m->dst, g->strides, g->dilates,
        g->pad_l, g->pad_r));
    DNNL_TRY(dnnl_dilated_convolution_backward_weights_desc_init(
        &bwd, dnnl_convolution_direct, &m->src, &m->wei, bias, &m->dst, g->strides,
        g->dilates, g->pad_l, g->pad_r));
    dnnl_primitive_desc_t dpd = NULL, wpd = NULL;
    usi_error *e = make_prim(&s->bwd_data, &dpd, &bdd, fpd);
    if (!e) e = make_prim(&s->bwd_weights, &wpd, &bwd, fpd);
    size_t *b = &s->bwd_bytes;
    if (!e) e = bind(&s->p[D_DDST], dpd, dnnl_query_diff_dst_md, 0, b);
    if (!e) e = bind(&s->p[D_WEI], dpd, dnnl_query_weights_md, 0, b);
    if (!e) e = bind(&s->p[D_DSRC], dpd, dnnl_query_diff_src_md, 1, b);
    if (!e) e = bind(&s->p[W_SRC], wpd, dnnl_query_src_md, 0, b);
    if (!e) e = bind(&s->p[W_DDST], wpd, dnnl_query_diff_dst_md, 0, b);
    if (!e) e = bind(&s->p[W_DWEI], wpd, dnnl_query_diff_weights_md, 1, b);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    if (e) return e;
    /* Results land here first when they must be added to a gradient. */
    s->dx_off = *b;
    *b += up(usi_node_bytes(t->src[0]));
    s->dw_off = *b;
    *b += up(usi_node_bytes(t->src[1]));
    s->db_off = *b;
    *b += t->n_src > 2 ? up(usi_node_bytes(t->src[2])) : 0;
    return NULL;
}

static usi_error *conv_setup(usi_tensor *t, int32_t training, conv_state *s)
{
    USI_TRY(usi_dnnl_init());
    conv_geom g;
    geom(t, &g);
    conv_mds m;
    USI_TRY(init_mds(t, &g, s, &m));
    int train = training && t->has_grad;
    dnnl_convolution_desc_t fd;
    int biased = t->n_src > 2 || t->fold_bn;
    DNNL_TRY(dnnl_dilated_convolution_forward_desc_init(
        &fd, train ? dnnl_forward_training : dnnl_forward_inference, dnnl_convolution_direct,
        &m.src, &m.wei, biased ? &m.bias : NULL, &m.dst, g.strides, g.dilates, g.pad_l,
        g.pad_r));
    dnnl_primitive_desc_t fpd = NULL;
    USI_TRY(make_prim(&s->fwd, &fpd, &fd, NULL));
    usi_error *e = bind(&s->p[P_SRC], fpd, dnnl_query_src_md, 0, &s->fwd_bytes);
    if (!e) e = bind(&s->p[P_WEI], fpd, dnnl_query_weights_md, 0, &s->fwd_bytes);
    if (!e) e = bind(&s->p[P_DST], fpd, dnnl_query_dst_md, 1, &s->fwd_bytes);
    if (!e && train) e = setup_backward(t, &g, s, &m, fpd);
    dnnl_primitive_desc_destroy(fpd);
    if (!e && t->fold_bn) {
        s->fold_w_off = s->fwd_bytes;
        s->fwd_bytes += up(usi_node_bytes(t->src[1]));
        s->fold_b_off = s->fwd_bytes;
        s->fwd_bytes += up((size_t)t->shape[1] * sizeof(float));
    }
    return e;
}

static usi_error *get_state(usi_tensor *t, int32_t training, conv_state **out)
{
    if (!t->backend_state) {
        conv_state *s = calloc(1, sizeof *s);
        if (!s) return usi_error_new(USI_ERR_NOMEM, "conv2d: out of memory");
        usi_error *e = conv_setup(t, training, s);
        if (e) {
            conv_state_free(s);
            return e;
        }
        t->backend_state = s;
        t->backend_state_free = conv_state_free;
    }
    *out = t->backend_state;
    return NULL;
}

void usi_cpu_conv2d_workspace(usi_tensor *t, int32_t training)
{
    conv_state *s = NULL;
    usi_error *e = get_state(t, training, &s);
    if (e) {
        usi_error_free(e); /* forward tries again and reports it */
        return;
    }
    t->fwd_scratch_bytes = s->fwd_bytes;
    t->bwd_scratch_bytes = s->bwd_bytes;
}

typedef struct arg_list {
    dnnl_exec_arg_t a[8];
    int n;
} arg_list;

static usi_error *arg(arg_list *l, int what, const dnnl_memory_desc_t *md, const void *ptr)
{
    dnnl_memory_t m;
    DNNL_TRY(dnnl_memory_create(&m, md, engine, (void *)ptr));
    l->a[l->n].arg = what;
    l->a[l->n].memory = m;
    l->n++;
    return NULL;
}

static usi_error *run(dnnl_primitive_t p, arg_list *l, usi_error *prep)
{
    usi_error *e = prep;
    if (!e && (dnnl_primitive_execute(p, stream, l->n, l->a) != dnnl_success ||
               dnnl_stream_wait(stream) != dnnl_success))
        e = usi_error_new(USI_ERR_INTERNAL, "oneDNN: a convolution step failed to run");
    for (int i = 0; i < l->n; i++) dnnl_memory_destroy(l->a[i].memory);
    l->n = 0;
    return e;
}

/* The pointer the primitive uses for port q: the plain data itself, or its
 * reordered copy in scratch (made now for an input). */
static usi_error *port_in(const port *q, const void *plain, char *scratch, const void **out)
{
    if (!q->reorder) {
        *out = plain;
        return NULL;
    }
    *out = scratch + q->off;
    arg_list l = {.n = 0};
    usi_error *e = arg(&l, DNNL_ARG_FROM, &q->plain, plain);
    if (!e) e = arg(&l, DNNL_ARG_TO, &q->md, *out);
    return run(q->reorder, &l, e);
}

static usi_error *port_out(const port *q, void *plain, char *scratch)
{
    if (!q->reorder) return NULL;
    arg_list l = {.n = 0};
    usi_error *e = arg(&l, DNNL_ARG_FROM, &q->md, scratch + q->off);
    if (!e) e = arg(&l, DNNL_ARG_TO, &q->plain, plain);
    return run(q->reorder, &l, e);
}

/* w'[o] = w[o] * s[o], b'[o] = (b[o] - mean[o]) * s[o] + beta[o] with
 * s = gamma / sqrt(var + eps): the eval-mode norm that follows the conv. */
static void fold_norm(const usi_tensor *t, float *w2, float *b2)
{
    const usi_tensor *bn = t->fold_bn;
    const float *w = t->src[1]->data, *b = t->n_src > 2 ? t->src[2]->data : NULL;
    const float *gamma = bn->src[1] ? bn->src[1]->data : NULL;
    const float *beta = bn->src[2] ? bn->src[2]->data : NULL;
    const float *rm = bn->src[3]->data, *rv = bn->src[4]->data;
    int64_t O = t->shape[1], per = t->src[1]->numel / O;
    for (int64_t o = 0; o < O; o++) {
        double sc = (gamma ? gamma[o] : 1.0) /
                    sqrt((double)rv[o] + bn->attrs.batch_norm.eps);
        for (int64_t k = 0; k < per; k++) w2[o * per + k] = (float)(w[o * per + k] * sc);
        b2[o] = (float)(((b ? b[o] : 0.0) - rm[o]) * sc + (beta ? beta[o] : 0.0));
    }
}

/* y[N,O,OH,OW] = conv(x[N,C,H,W], w[O,C/G,KH,KW]) + b[O] */
usi_error *usi_cpu_conv2d_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    conv_state *s = NULL;
    USI_TRY(get_state(t, ctx->training, &s));
    if (s->fwd_bytes > t->fwd_scratch_bytes)
        return usi_error_new(USI_ERR_INTERNAL, "conv2d: %zu scratch bytes planned, %zu needed",
                             t->fwd_scratch_bytes, s->fwd_bytes);
    char *sc = t->fwd_scratch;
    const void *x, *w, *wsrc = t->src[1]->data;
    const void *bias = t->n_src > 2 ? t->src[2]->data : NULL;
    if (t->fold_bn) {
        fold_norm(t, (float *)(sc + s->fold_w_off), (float *)(sc + s->fold_b_off));
        wsrc = sc + s->fold_w_off;
        bias = sc + s->fold_b_off;
    }
    USI_TRY(port_in(&s->p[P_SRC], t->src[0]->data, sc, &x));
    USI_TRY(port_in(&s->p[P_WEI], wsrc, sc, &w));
    void *y = s->p[P_DST].reorder ? sc + s->p[P_DST].off : t->data;
    arg_list l = {.n = 0};
    usi_error *e = arg(&l, DNNL_ARG_SRC, &s->p[P_SRC].md, x);
    if (!e) e = arg(&l, DNNL_ARG_WEIGHTS, &s->p[P_WEI].md, w);
    if (!e && bias) e = arg(&l, DNNL_ARG_BIAS, &s->bias, bias);
    if (!e) e = arg(&l, DNNL_ARG_DST, &s->p[P_DST].md, y);
    USI_TRY(run(s->fwd, &l, e));
    return port_out(&s->p[P_DST], t->data, sc);
}

static void put(float *dst, const float *src, int64_t n, int32_t acc)
{
    if (!acc) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    #pragma omp parallel for simd schedule(static) if (n > USI_PAR_MIN)
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

/* dx (+)= conv_transpose(dy, w) */
static usi_error *backward_data(usi_tensor *t, conv_state *s, int32_t acc)
{
    const usi_tensor *x = t->src[0];
    char *sc = t->bwd_scratch;
    float *dx_plain = acc ? (float *)(sc + s->dx_off) : x->grad;
    const void *dy, *w;
    USI_TRY(port_in(&s->p[D_DDST], t->grad, sc, &dy));
    USI_TRY(port_in(&s->p[D_WEI], t->src[1]->data, sc, &w));
    void *dx = s->p[D_DSRC].reorder ? sc + s->p[D_DSRC].off : (void *)dx_plain;
    arg_list l = {.n = 0};
    usi_error *e = arg(&l, DNNL_ARG_DIFF_DST, &s->p[D_DDST].md, dy);
    if (!e) e = arg(&l, DNNL_ARG_WEIGHTS, &s->p[D_WEI].md, w);
    if (!e) e = arg(&l, DNNL_ARG_DIFF_SRC, &s->p[D_DSRC].md, dx);
    USI_TRY(run(s->bwd_data, &l, e));
    USI_TRY(port_out(&s->p[D_DSRC], dx_plain, sc));
    if (acc) put(x->grad, dx_plain, x->numel, 1);
    return NULL;
}

/* dw (+)= corr(x, dy); db (+)= sum dy */
static usi_error *backward_weights(usi_tensor *t, conv_state *s, const int32_t *acc)
{
    const usi_tensor *w = t->src[1], *b = t->n_src > 2 ? t->src[2] : NULL;
    char *sc = t->bwd_scratch;
    float *dw_plain = (float *)(sc + s->dw_off), *db = (float *)(sc + s->db_off);
    const void *x, *dy;
    USI_TRY(port_in(&s->p[W_SRC], t->src[0]->data, sc, &x));
    USI_TRY(port_in(&s->p[W_DDST], t->grad, sc, &dy));
    void *dw = s->p[W_DWEI].reorder ? sc + s->p[W_DWEI].off : (void *)dw_plain;
    arg_list l = {.n = 0};
    usi_error *e = arg(&l, DNNL_ARG_SRC, &s->p[W_SRC].md, x);
    if (!e) e = arg(&l, DNNL_ARG_DIFF_DST, &s->p[W_DDST].md, dy);
    if (!e) e = arg(&l, DNNL_ARG_DIFF_WEIGHTS, &s->p[W_DWEI].md, dw);
    if (!e && b) e = arg(&l, DNNL_ARG_DIFF_BIAS, &s->bias, db);
    USI_TRY(run(s->bwd_weights, &l, e));
    USI_TRY(port_out(&s->p[W_DWEI], dw_plain, sc));
    if (w->grad) put(w->grad, dw_plain, w->numel, acc[1]);
    if (b && b->grad) put(b->grad, db, b->numel, acc[2]);
    return NULL;
}

usi_error *usi_cpu_conv2d_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    conv_state *s = NULL;
    USI_TRY(get_state(t, ctx->training, &s));
    if (!s->bwd_data || s->bwd_bytes > t->bwd_scratch_bytes)
        return usi_error_new(USI_ERR_INTERNAL, "conv2d: backward was not planned");
    const usi_tensor *b = t->n_src > 2 ? t->src[2] : NULL;
    if (t->src[0]->grad) USI_TRY(backward_data(t, s, acc[0]));
    if (t->src[1]->grad || (b && b->grad)) USI_TRY(backward_weights(t, s, acc));
    return NULL;
}
