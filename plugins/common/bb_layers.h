/*
 * Layer helpers shared by the in-tree backbone plugins.
 *
 * Header-only on purpose: every plugin stays a single .so built from the SDK
 * header alone, each with its own copy of these static functions, so no
 * symbol but usi_plugin_entry is ever exported and no plugin depends on
 * another. Names follow timm's modules: a helper pushes the module's scope
 * ("conv1", "bn1", "downsample.0") and registers "weight", "bias", ... in it.
 */
#ifndef USI_PLUGINS_BB_LAYERS_H
#define USI_PLUGINS_BB_LAYERS_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <usi/plugin.h>

/* timm's batch-norm defaults (PyTorch's). */
#define BB_BN_MOMENTUM 0.1
#define BB_BN_EPS 1e-5

typedef struct bb_ctx {
    const usi_host_api *host;
    const usi_graph_api *api;
    usi_graph *g;
} bb_ctx;

/* The graph ops the backbones call; checked once per build so that an old or
 * incomplete host table gives a message instead of a call through NULL. */
#define BB_OP(field) {offsetof(usi_graph_api, field), sizeof(((usi_graph_api *)0)->field), #field}
typedef struct bb_op_slot {
    size_t offset, size;
    const char *name;
} bb_op_slot;

/* A build error in the plugin's own words: recorded as the graph's error
 * (ABI 1.1 fail()), so the user sees it where the build is reported; logged
 * instead by a 1.0 host, which has no fail(). */
static inline void bb_fail(const bb_ctx *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static inline void bb_fail(const bb_ctx *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (USI_HAS_FIELD(c->api, fail) && c->api->fail) c->api->fail(c->g, "%s", msg);
    else c->host->log(USI_LOG_ERROR, "%s", msg);
}

static inline int bb_ctx_init(bb_ctx *c, const usi_host_api *host, usi_graph *g,
                              usi_tensor *input, const char *who)
{
    static const bb_op_slot needed[] = {
        BB_OP(push_scope), BB_OP(pop_scope), BB_OP(ndim), BB_OP(dim),
        BB_OP(param), BB_OP(buffer), BB_OP(conv2d), BB_OP(linear),
        BB_OP(batch_norm), BB_OP(activation), BB_OP(binary), BB_OP(pool2d),
        BB_OP(reduce), BB_OP(dropout), BB_OP(drop_path), BB_OP(flatten),
    };
    c->host = host;
    c->api = host ? host->graph : NULL;
    c->g = g;
    if (!host) return -1; /* never negotiated: nobody to tell */
    if (!c->api) {
        host->log(USI_LOG_ERROR, "%s: the host gives no graph builder", who);
        return -1;
    }
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
        const bb_op_slot *s = &needed[i];
        void *fn = NULL;
        if (c->api->struct_size >= s->offset + s->size)
            fn = *(void *const *)((const char *)c->api + s->offset);
        if (!fn) {
            host->log(USI_LOG_ERROR, "%s: the host's graph builder lacks the '%s' op",
                      who, s->name);
            return -1;
        }
    }
    if (!input) return -1; /* the host already recorded why */
    if (c->api->ndim(input) != 4) {
        bb_fail(c, "%s: input must be [N, C, H, W], it has %d dims", who, (int)c->api->ndim(input));
        return -1;
    }
    return 0;
}

/* Checks that the host's table has the ops in `needed` beyond those
 * bb_ctx_init checks; logs the first missing one. */
static inline int bb_require_ops(const bb_ctx *c, const bb_op_slot *needed, size_t n,
                                 const char *who)
{
    for (size_t i = 0; i < n; i++) {
        const bb_op_slot *s = &needed[i];
        void *fn = NULL;
        if (c->api->struct_size >= s->offset + s->size)
            fn = *(void *const *)((const char *)c->api + s->offset);
        if (!fn) {
            c->host->log(USI_LOG_ERROR, "%s: the host's graph builder lacks the '%s' op", who,
                         s->name);
            return -1;
        }
    }
    return 0;
}

/* Scope helpers: the string is only needed while pushed. */
static inline void bb_push_index(const bb_ctx *c, int64_t i)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)i);
    c->api->push_scope(c->g, buf);
}

/* Conv2d module "<scope>.weight" [cout, cin/groups, k, k] and, when bias_init
 * is not NULL, "<scope>.bias" [cout]. Padding is timm's symmetric default,
 * ((stride - 1) + (k - 1)) / 2, i.e. (k - 1) / 2 for the odd kernels used. */
static inline usi_tensor *bb_conv(const bb_ctx *c, usi_tensor *x, const char *scope,
                                  int64_t cout, int32_t k, int32_t stride,
                                  int32_t groups, const usi_init *w_init,
                                  const usi_init *bias_init)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t cin = G->dim(x, 1);
    int64_t wshape[4] = {cout, cin / groups, k, k};
    int64_t bshape[1] = {cout};
    G->push_scope(c->g, scope);
    usi_tensor *w = G->param(c->g, "weight", 4, wshape, w_init);
    usi_tensor *b = bias_init ? G->param(c->g, "bias", 1, bshape, bias_init) : NULL;
    G->pop_scope(c->g);
    usi_conv2d_desc d = usi_conv2d(stride, ((stride - 1) + (k - 1)) / 2, 1, groups);
    return G->conv2d(c->g, x, w, b, &d);
}

/* BatchNorm2d module: weight (gamma), bias, running_mean, running_var and the
 * I64 scalar num_batches_tracked, in PyTorch's state_dict order. gamma is 1
 * except where a residual branch starts at zero (timm's zero_init_last). */
static inline usi_tensor *bb_bn(const bb_ctx *c, usi_tensor *x, const char *scope,
                                double gamma)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t shape[1] = {G->dim(x, 1)};
    usi_init w_init = usi_init_const(gamma), zeros = usi_init_zeros(),
             ones = usi_init_ones();
    G->push_scope(c->g, scope);
    usi_tensor *w = G->param(c->g, "weight", 1, shape, &w_init);
    usi_tensor *b = G->param(c->g, "bias", 1, shape, &zeros);
    usi_tensor *mean = G->buffer(c->g, "running_mean", USI_DTYPE_F32, 1, shape, &zeros);
    usi_tensor *var = G->buffer(c->g, "running_var", USI_DTYPE_F32, 1, shape, &ones);
    usi_tensor *count = G->buffer(c->g, "num_batches_tracked", USI_DTYPE_I64, 0, NULL, &zeros);
    G->pop_scope(c->g);
    return G->batch_norm(c->g, x, w, b, mean, var, count, BB_BN_MOMENTUM, BB_BN_EPS);
}

/* Batch norm then an activation (act < 0: none), as timm's BatchNormAct2d. */
static inline usi_tensor *bb_bn_act(const bb_ctx *c, usi_tensor *x, const char *scope,
                                    int32_t act)
{
    x = bb_bn(c, x, scope, 1.0);
    return act >= 0 ? c->api->activation(c->g, x, act, 0.0) : x;
}

/* Linear module "<scope>.weight" [out, in], "<scope>.bias" [out]. */
static inline usi_tensor *bb_linear(const bb_ctx *c, usi_tensor *x, const char *scope,
                                    int64_t out, const usi_init *w_init,
                                    const usi_init *b_init)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t wshape[2] = {out, G->dim(x, -1)}, bshape[1] = {out};
    G->push_scope(c->g, scope);
    usi_tensor *w = G->param(c->g, "weight", 2, wshape, w_init);
    usi_tensor *b = G->param(c->g, "bias", 1, bshape, b_init);
    G->pop_scope(c->g);
    return G->linear(c->g, x, w, b);
}

/* Mean over H and W of NCHW; keepdim gives [N, C, 1, 1], else [N, C]. */
static inline usi_tensor *bb_global_avg(const bb_ctx *c, usi_tensor *x, int32_t keepdim)
{
    static const int32_t hw[2] = {2, 3};
    return c->api->reduce(c->g, USI_REDUCE_MEAN, x, 2, hw, keepdim);
}

/* Stochastic depth at this rate; timm uses Identity for a zero rate. */
static inline usi_tensor *bb_drop_path(const bb_ctx *c, usi_tensor *x, double rate)
{
    return rate > 0.0 ? c->api->drop_path(c->g, x, rate) : x;
}

/* timm's SEModule "se": x * sigmoid(fc2(relu(fc1(mean_hw(x))))), fc1 and fc2
 * biased 1x1 convs with rd channels between, their weights from w_init and
 * their biases nn.Conv2d's default, uniform +-1/sqrt(fan_in). */
static inline usi_tensor *bb_squeeze_excite(const bb_ctx *c, usi_tensor *x, int64_t rd,
                                            const usi_init *w_init)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t chs = G->dim(x, 1);
    usi_init b1 = usi_init_uniform(-1.0 / sqrt((double)chs), 1.0 / sqrt((double)chs));
    usi_init b2 = usi_init_uniform(-1.0 / sqrt((double)rd), 1.0 / sqrt((double)rd));
    G->push_scope(c->g, "se");
    usi_tensor *s = bb_global_avg(c, x, 1);
    s = bb_conv(c, s, "fc1", rd, 1, 1, 1, w_init, &b1);
    s = G->activation(c->g, s, USI_ACT_RELU, 0);
    s = bb_conv(c, s, "fc2", chs, 1, 1, 1, w_init, &b2);
    s = G->activation(c->g, s, USI_ACT_SIGMOID, 0);
    G->pop_scope(c->g);
    return G->binary(c->g, USI_BIN_MUL, x, s);
}

/* ------------------------------------------------------------------------ */
/* Options every in-tree backbone takes                                     */
/* ------------------------------------------------------------------------ */

/* Inputs at or below this side get the small stem when stem = "auto". */
#define BB_SMALL_STEM_MAX_SIDE 64

/* The entries of bb_params, for a plugin that appends its own options;
 * BB_BASE_PARAMS + BB_STEM_PARAM(doc) for one whose stem differs. */
#define BB_STEM_PARAM(doc) USI_PARAM_STRING("stem", "auto", "auto|timm|small", doc),
#define BB_COMMON_PARAMS \
    BB_BASE_PARAMS \
    BB_STEM_PARAM("timm: timm's ImageNet stem; small: no stem downsampling (28-64 px inputs); " \
                  "auto: small when img_size <= 64")
#define BB_BASE_PARAMS \
    USI_PARAM_INT("num_classes", 1000, 1, 1e6, "number of output classes (size of the classifier)"), \
    USI_PARAM_INT("img_size", 224, 8, 4096, \
                  "input side the network is trained at; picks the stem when stem = \"auto\""), \
    USI_PARAM_INT("in_chans", 3, 1, 64, "input image channels"), \
    USI_PARAM_FLOAT("drop_rate", 0.0, 0, 0.99, "dropout before the classifier (timm's drop_rate)"), \
    USI_PARAM_FLOAT("drop_path_rate", 0.0, 0, 0.99, \
                    "stochastic depth, rising linearly over the blocks to this rate"),

static const usi_param_desc bb_params[] = {BB_COMMON_PARAMS};
#define BB_N_PARAMS (sizeof bb_params / sizeof bb_params[0])

typedef struct bb_options {
    int64_t num_classes;
    int64_t img_size;
    int64_t in_chans;
    double drop_rate;
    double drop_path_rate;
    const char *stem;        /* as given (auto, timm or small); NULL after   */
    int32_t small_stem;      /* the resolved stem choice                     */
} bb_options;

/* Where each common option lands (usi_read_options). */
static const usi_option_field bb_option_fields[] = {
    USI_FIELD_INT(bb_options, "num_classes", num_classes),
    USI_FIELD_INT(bb_options, "img_size", img_size),
    USI_FIELD_INT(bb_options, "in_chans", in_chans),
    USI_FIELD_FLOAT(bb_options, "drop_rate", drop_rate),
    USI_FIELD_FLOAT(bb_options, "drop_path_rate", drop_path_rate),
    USI_FIELD_STRING(bb_options, "stem", stem),
};

static inline usi_error *bb_read_options(const usi_host_api *host, const usi_params *p,
                                         bb_options *o)
{
    usi_error *e = usi_read_options(host, p, bb_option_fields,
                                    sizeof bb_option_fields / sizeof bb_option_fields[0], o);
    if (e) return e;
    if (!strcmp(o->stem, "small"))
        o->small_stem = 1;
    else if (!strcmp(o->stem, "timm"))
        o->small_stem = 0;
    else
        o->small_stem = o->img_size <= BB_SMALL_STEM_MAX_SIDE;
    o->stem = NULL; /* points into the params, which the instance outlives */
    return NULL;
}

#endif
