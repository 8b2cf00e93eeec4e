/*
 * LeViT-128S, 128, 192, 256 and 384 as timm 1.0 builds them
 * (timm.models.levit, the Linear form, distilled: LevitDistilled):
 *
 *   stem         four 3x3 stride-2 convs, each without bias and with a batch
 *                norm after it ("convK.linear", "convK.bn"), hardswish between
 *                them; the map becomes tokens [N, H*W, C]
 *   stages.0     blocks of attention + MLP, each a residual
 *   stages.1, 2  downsample (attention whose queries are every second token
 *                in both directions, then a residual MLP), then blocks
 *   head         mean over tokens, then two heads (batch norm, dropout,
 *   head_dist    linear); the logits are their average, in training too
 *                (timm's distilled_training is off by default)
 *
 * Every linear layer is a LinearNorm: a Linear without bias and a batch norm
 * over all tokens of the batch (BatchNorm1d on [N*T, C]). Attention splits
 * one qkv projection per head into key_dim, key_dim and attn_ratio*key_dim
 * channels, scales by key_dim^-0.5 and adds a learned bias per head and
 * relative offset: attention_biases [heads, T] gathered by the index table
 * |dy| * side + |dx| into [heads, T, T]. The index table is timm's
 * attention_bias_idxs, a non-persistent buffer there (not in the
 * state_dict): here an I32 constant, rebuilt by every build. Attention
 * projects through hardswish and a LinearNorm whose batch norm starts at 0
 * (so does the MLP's second LinearNorm); the downsample's projection starts
 * at 1. Blocks use attn_ratio 2 and mlp_ratio 2; a downsample has in_dim /
 * key_dim heads, attn_ratio 4 and mlp_ratio 2. Stochastic depth is one rate
 * for every residual (timm passes drop_path_rate to each block as it is).
 *
 * Initialisation is timm's: convs and Linears PyTorch's default (uniform
 * +-1/sqrt(fan_in)), batch norms 1 (or 0, above) and 0, attention biases 0,
 * each head's Linear trunc_normal(0.02) with a zero bias.
 *
 * The attention tables are sized from img_size, and the input must be that
 * size. The token grid follows the stem's arithmetic ((side - 1) / 2 + 1 per
 * stride-2 conv), which equals timm's img_size // 16 wherever timm runs
 * (sides that are multiples of 16) and keeps other sides working. Small
 * inputs: the small stem (stem = "small", or "auto" with img_size <= 64)
 * gives conv1 and conv2 stride 1, so the stem divides by 4: 28 px gives 7x7,
 * 4x4 and 2x2 token grids, 32 px 8x8, 4x4 and 2x2 (timm's stem leaves 2x2,
 * 1x1, 1x1). Weight shapes stay timm's; only attention_biases follow the
 * grid, as they do with img_size.
 */
#include <math.h>
#include <stdlib.h>
#include <usi/plugin.h>

#include "../common/bb_layers.h"

USI_DECLARE_HOST; /* usi_host: kept by usi_plugin_entry (USI_DEFINE_PLUGIN_MIN below) */

#define LV_STAGES 3
#define LV_ATTN_RATIO 2     /* blocks                                      */
#define LV_MLP_RATIO 2      /* blocks and downsamples                      */
#define LV_DOWN_ATTN_RATIO 4
#define LV_HEAD_STD 0.02

typedef struct levit_arch {
    const char *name;
    int64_t dim[LV_STAGES];
    int64_t heads[LV_STAGES];
    int32_t depth[LV_STAGES];
    int64_t key_dim;
} levit_arch;

static const levit_arch arch_128s = {"levit_128s", {128, 256, 384}, {4, 6, 8}, {2, 3, 4}, 16};
static const levit_arch arch_128 = {"levit_128", {128, 256, 384}, {4, 8, 12}, {4, 4, 4}, 16};
static const levit_arch arch_192 = {"levit_192", {192, 288, 384}, {3, 5, 6}, {4, 4, 4}, 32};
static const levit_arch arch_256 = {"levit_256", {256, 384, 512}, {4, 6, 8}, {4, 4, 4}, 32};
static const levit_arch arch_384 = {"levit_384", {384, 512, 768}, {6, 9, 12}, {4, 4, 4}, 32};

typedef struct levit {
    const levit_arch *arch;
    bb_options opt;
} levit;

static const usi_param_desc levit_params[] = {
    USI_PARAM_INT("num_classes", 1000, 1, 1e6, "number of output classes (size of both heads)"),
    USI_PARAM_INT("img_size", 224, 8, 4096,
                  "input side; sizes the attention-bias tables (the input must be this size) and "
                  "picks the stem when stem = \"auto\""),
    USI_PARAM_INT("in_chans", 3, 1, 64, "input image channels"),
    USI_PARAM_FLOAT("drop_rate", 0.0, 0, 0.99, "dropout before each head's Linear (timm's drop_rate)"),
    USI_PARAM_FLOAT("drop_path_rate", 0.0, 0, 0.99,
                    "stochastic depth, the same rate on every residual (timm's rule for LeViT)"),
    USI_PARAM_STRING("stem", "auto", "auto|timm|small",
                     "timm: stride 16; small: conv1 and conv2 at stride 1 (stride 4, for 28-64 px "
                     "inputs); auto: small when img_size <= 64"),
};

/* PyTorch's default for Conv2d and Linear weights: kaiming_uniform(a =
 * sqrt 5), i.e. uniform +-1/sqrt(fan_in). */
static usi_init torch_default_init(void)
{
    return usi_init_kaiming_uniform(USI_FAN_IN, 1.0 / sqrt(3.0));
}

/* ---- layers ---- */

/* LinearNorm "<scope>": linear.weight [out, in] without bias, then
 * BatchNorm1d over every token: x [N, T, in] -> [N, T, out]. */
static usi_tensor *linear_norm(const bb_ctx *c, usi_tensor *x, const char *scope, int64_t out,
                               double bn_gamma)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t n = G->dim(x, 0), t = G->dim(x, 1);
    int64_t wshape[2] = {out, G->dim(x, 2)}, rows[2] = {n * t, out}, tokens[3] = {n, t, out};
    usi_init w_init = torch_default_init();
    G->push_scope(c->g, scope);
    G->push_scope(c->g, "linear");
    usi_tensor *w = G->param(c->g, "weight", 2, wshape, &w_init);
    G->pop_scope(c->g);
    x = G->linear(c->g, x, w, NULL);
    x = bb_bn(c, G->reshape(c->g, x, 2, rows), "bn", bn_gamma);
    G->pop_scope(c->g);
    return G->reshape(c->g, x, 3, tokens);
}

/* [N, T, heads*w] -> [N, heads, T, w] and back. */
static usi_tensor *split_heads(const bb_ctx *c, usi_tensor *x, int64_t heads)
{
    static const int32_t swap12[4] = {0, 2, 1, 3};
    const usi_graph_api *G = c->api;
    if (!x) return NULL;
    int64_t shape[4] = {G->dim(x, 0), G->dim(x, 1), heads, G->dim(x, 2) / heads};
    return G->permute(c->g, G->reshape(c->g, x, 4, shape), swap12);
}

static usi_tensor *merge_heads(const bb_ctx *c, usi_tensor *x)
{
    static const int32_t swap12[4] = {0, 2, 1, 3};
    const usi_graph_api *G = c->api;
    if (!x) return NULL;
    int64_t shape[3] = {G->dim(x, 0), G->dim(x, 2), G->dim(x, 1) * G->dim(x, 3)};
    return G->reshape(c->g, G->permute(c->g, x, swap12), 3, shape);
}

/* Channels [from, from + width) of each head of x [N, T, heads * per_head],
 * as [N, heads, T, width]. */
static usi_tensor *head_part(const bb_ctx *c, usi_tensor *x, int64_t heads, int64_t per_head,
                             int64_t from, int64_t width)
{
    const usi_graph_api *G = c->api;
    if (!x) return NULL;
    int64_t shape[4] = {G->dim(x, 0), G->dim(x, 1), heads, per_head};
    usi_tensor *part = G->slice(c->g, G->reshape(c->g, x, 4, shape), 3, from, from + width, 1);
    static const int32_t swap12[4] = {0, 2, 1, 3};
    return G->permute(c->g, part, swap12);
}

/* attention_biases [heads, side^2] (recorded first, as in timm's
 * state_dict) and its relative-offset table for queries on every `step`-th
 * row and column of the side x side grid of keys: [heads, Tq, side^2]. */
typedef struct bias_table {
    usi_tensor *param;
    int64_t side, step;
} bias_table;

static bias_table attention_biases(const bb_ctx *c, int64_t heads, int64_t side, int64_t step)
{
    int64_t shape[2] = {heads, side * side};
    usi_init zeros = usi_init_zeros();
    bias_table b = {c->api->param(c->g, "attention_biases", 2, shape, &zeros), side, step};
    return b;
}

static usi_tensor *attention_bias(const bb_ctx *c, const bias_table *b)
{
    if (!b->param) return NULL;
    int64_t side = b->side, qside = (side - 1) / b->step + 1;
    int64_t shape[2] = {qside * qside, side * side};
    size_t bytes = (size_t)(shape[0] * shape[1]) * sizeof(int32_t);
    int32_t *idx = c->host->alloc(bytes, 0);
    if (!idx) {
        bb_fail(c, "attention_bias_idxs: out of memory (%zu bytes)", bytes);
        return NULL;
    }
    for (int64_t q = 0; q < shape[0]; q++) {
        int64_t qy = q / qside * b->step, qx = q % qside * b->step;
        for (int64_t k = 0; k < shape[1]; k++) {
            int64_t dy = llabs(qy - k / side), dx = llabs(qx - k % side);
            idx[q * shape[1] + k] = (int32_t)(dy * side + dx);
        }
    }
    usi_tensor *t = c->api->constant(c->g, "attention_bias_idxs", USI_DTYPE_I32, 2, shape, idx);
    c->host->free(idx);
    return c->api->gather(c->g, b->param, t, 1);
}

/* Both attentions' ends: softmax(q k^T / sqrt(key_dim) + bias) v, heads
 * merged, hardswish, then "proj" (linear + batch norm with its weight at
 * bn_gamma) to out_dim. */
static usi_tensor *attend_project(const bb_ctx *c, usi_tensor *q, usi_tensor *k, usi_tensor *v,
                                  const bias_table *bt, int64_t key_dim, int64_t out_dim, double bn_gamma)
{
    const usi_graph_api *G = c->api;
    usi_tensor *y = G->attention(c->g, q, k, v, attention_bias(c, bt), 1.0 / sqrt((double)key_dim));
    y = G->activation(c->g, merge_heads(c, y), USI_ACT_HARDSWISH, 0);
    G->push_scope(c->g, "proj");
    y = linear_norm(c, y, "ln", out_dim, bn_gamma);
    G->pop_scope(c->g);
    return y;
}

/* Attention "attn" on tokens [N, side^2, dim]. */
static usi_tensor *attention(const bb_ctx *c, usi_tensor *x, int64_t heads, int64_t key_dim,
                             int64_t side)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t dim = G->dim(x, 2), val_dim = LV_ATTN_RATIO * key_dim;
    int64_t per_head = 2 * key_dim + val_dim;
    G->push_scope(c->g, "attn");
    bias_table bt = attention_biases(c, heads, side, 1);
    usi_tensor *qkv = linear_norm(c, x, "qkv", heads * per_head, 1.0);
    usi_tensor *q = head_part(c, qkv, heads, per_head, 0, key_dim);
    usi_tensor *k = head_part(c, qkv, heads, per_head, key_dim, key_dim);
    usi_tensor *v = head_part(c, qkv, heads, per_head, 2 * key_dim, val_dim);
    usi_tensor *y = attend_project(c, q, k, v, &bt, key_dim, dim, 0.0);
    G->pop_scope(c->g);
    return y;
}

/* Every second token in both directions of the side x side grid. */
static usi_tensor *subsample(const bb_ctx *c, usi_tensor *x, int64_t side)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t n = G->dim(x, 0), ch = G->dim(x, 2), half = (side - 1) / 2 + 1;
    int64_t grid[4] = {n, side, side, ch}, tokens[3] = {n, half * half, ch};
    x = G->reshape(c->g, x, 4, grid);
    x = G->slice(c->g, G->slice(c->g, x, 1, 0, side, 2), 2, 0, side, 2);
    return G->reshape(c->g, x, 3, tokens);
}

/* AttentionDownsample "attn_downsample": queries from the subsampled grid. */
static usi_tensor *attention_downsample(const bb_ctx *c, usi_tensor *x, int64_t out_dim,
                                        int64_t key_dim, int64_t side)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t in_dim = G->dim(x, 2), heads = in_dim / key_dim;
    int64_t val_dim = LV_DOWN_ATTN_RATIO * key_dim, per_head = key_dim + val_dim;
    G->push_scope(c->g, "attn_downsample");
    bias_table bt = attention_biases(c, heads, side, 2);
    usi_tensor *kv = linear_norm(c, x, "kv", heads * per_head, 1.0);
    usi_tensor *k = head_part(c, kv, heads, per_head, 0, key_dim);
    usi_tensor *v = head_part(c, kv, heads, per_head, key_dim, val_dim);
    G->push_scope(c->g, "q");
    usi_tensor *q = split_heads(c, linear_norm(c, subsample(c, x, side), "ln", heads * key_dim, 1.0),
                                heads);
    G->pop_scope(c->g);
    usi_tensor *y = attend_project(c, q, k, v, &bt, key_dim, out_dim, 1.0);
    G->pop_scope(c->g);
    return y;
}

/* LevitMlp "mlp": ln1, hardswish, ln2 (its batch norm at 0). */
static usi_tensor *mlp(const bb_ctx *c, usi_tensor *x, int64_t hidden)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t dim = G->dim(x, 2);
    G->push_scope(c->g, "mlp");
    x = G->activation(c->g, linear_norm(c, x, "ln1", hidden, 1.0), USI_ACT_HARDSWISH, 0);
    x = linear_norm(c, x, "ln2", dim, 0.0);
    G->pop_scope(c->g);
    return x;
}

static usi_tensor *residual(const bb_ctx *c, usi_tensor *x, usi_tensor *y, double dpr)
{
    return c->api->binary(c->g, USI_BIN_ADD, x, bb_drop_path(c, y, dpr));
}

/* One stage "stages.<s>" on a side x side grid; returns the grid side after
 * it through *side. */
static usi_tensor *stage(const bb_ctx *c, const levit *net, usi_tensor *x, int32_t s,
                         int64_t *side)
{
    const levit_arch *a = net->arch;
    const usi_graph_api *G = c->api;
    double dpr = net->opt.drop_path_rate;
    int64_t dim = a->dim[s];
    bb_push_index(c, s);
    if (s > 0) {
        G->push_scope(c->g, "downsample");
        x = attention_downsample(c, x, dim, a->key_dim, *side);
        *side = (*side - 1) / 2 + 1;
        x = residual(c, x, mlp(c, x, LV_MLP_RATIO * dim), dpr);
        G->pop_scope(c->g);
    }
    G->push_scope(c->g, "blocks");
    for (int32_t i = 0; i < a->depth[s]; i++) {
        bb_push_index(c, i);
        x = residual(c, x, attention(c, x, a->heads[s], a->key_dim, *side), dpr);
        x = residual(c, x, mlp(c, x, LV_MLP_RATIO * dim), dpr);
        G->pop_scope(c->g);
    }
    G->pop_scope(c->g);
    G->pop_scope(c->g);
    return x;
}

/* NormLinear "<scope>": batch norm, dropout, Linear with bias. */
static usi_tensor *norm_linear(const bb_ctx *c, const levit *net, usi_tensor *x, const char *scope)
{
    const usi_graph_api *G = c->api;
    usi_init w_init = usi_init_trunc_normal(LV_HEAD_STD, -2.0, 2.0), zeros = usi_init_zeros();
    G->push_scope(c->g, scope);
    x = bb_bn(c, x, "bn", 1.0);
    if (net->opt.drop_rate > 0.0) x = G->dropout(c->g, x, net->opt.drop_rate);
    x = bb_linear(c, x, "linear", net->opt.num_classes, &w_init, &zeros);
    G->pop_scope(c->g);
    return x;
}

/* Stem16 "stem": 3x3 ConvNorms with hardswish between; stride 2 each, or 1
 * for the first two with the small stem. Returns tokens [N, side^2, C]. */
static usi_tensor *stem(const bb_ctx *c, const levit *net, usi_tensor *x)
{
    static const int32_t to_tokens[3] = {0, 2, 1};
    const usi_graph_api *G = c->api;
    int64_t dim = net->arch->dim[0];
    usi_init w_init = torch_default_init();
    G->push_scope(c->g, "stem");
    for (int32_t i = 0; i < 4; i++) {
        char scope[8] = "conv1";
        scope[4] = (char)('1' + i);
        int32_t stride = net->opt.small_stem && i < 2 ? 1 : 2;
        G->push_scope(c->g, scope);
        x = bb_conv(c, x, "linear", dim >> (3 - i), 3, stride, 1, &w_init, NULL);
        x = bb_bn(c, x, "bn", 1.0);
        G->pop_scope(c->g);
        if (i < 3) x = G->activation(c->g, x, USI_ACT_HARDSWISH, 0);
    }
    G->pop_scope(c->g);
    return x ? G->permute(c->g, G->flatten(c->g, x, 2, 3), to_tokens) : NULL;
}

/* The grid side after the stem for an img_size input. */
static int64_t stem_side(const levit *net)
{
    int64_t side = net->opt.img_size;
    for (int32_t i = net->opt.small_stem ? 2 : 0; i < 4; i++) side = (side - 1) / 2 + 1;
    return side;
}

static const bb_op_slot levit_ops_needed[] = {
    BB_OP(reshape), BB_OP(permute), BB_OP(slice), BB_OP(attention), BB_OP(scale),
    BB_OP(constant), BB_OP(gather),
};

static usi_tensor *levit_build(void *inst, usi_graph *g, usi_tensor *input)
{
    const levit *net = inst;
    const levit_arch *a = net->arch;
    bb_ctx ctx, *c = &ctx;
    if (bb_ctx_init(c, usi_host, g, input, a->name)) return NULL;
    if (bb_require_ops(c, levit_ops_needed, USI_COUNTOF(levit_ops_needed), a->name)) return NULL;
    const usi_graph_api *G = c->api;
    if (G->dim(input, 1) != net->opt.in_chans) {
        bb_fail(c, "%s: the input has %lld channels but in_chans is %lld; set backbone.in_chans to %lld",
                a->name, (long long)G->dim(input, 1), (long long)net->opt.in_chans,
                (long long)G->dim(input, 1));
        return NULL;
    }
    if (G->dim(input, 2) != net->opt.img_size || G->dim(input, 3) != net->opt.img_size) {
        bb_fail(c, "%s: the input is %lldx%lld but img_size is %lld; the attention-bias tables are "
                "sized from img_size, so set it to the input side", a->name,
                (long long)G->dim(input, 2), (long long)G->dim(input, 3),
                (long long)net->opt.img_size);
        return NULL;
    }

    int64_t side = stem_side(net);
    usi_tensor *x = stem(c, net, input);
    G->push_scope(g, "stages");
    for (int32_t s = 0; s < LV_STAGES; s++) x = stage(c, net, x, s, &side);
    G->pop_scope(g);

    static const int32_t tokens_axis[1] = {1};
    x = G->reduce(g, USI_REDUCE_MEAN, x, 1, tokens_axis, 0);
    usi_tensor *y = norm_linear(c, net, x, "head");
    usi_tensor *y_dist = norm_linear(c, net, x, "head_dist");
    return G->scale(g, G->binary(g, USI_BIN_ADD, y, y_dist), 0.5);
}

static usi_error *levit_create(const levit_arch *arch, const usi_params *p, void **out)
{
    levit *net = usi_host->alloc(sizeof *net, 0);
    if (!net) return usi_host->error_new(USI_ERR_NOMEM, "%s: out of memory", arch->name);
    net->arch = arch;
    usi_error *e = bb_read_options(usi_host, p, &net->opt);
    if (e) {
        usi_host->free(net);
        return e;
    }
    *out = net;
    return NULL;
}

static usi_error *create_128s(const usi_params *p, void **out) { return levit_create(&arch_128s, p, out); }
static usi_error *create_128(const usi_params *p, void **out) { return levit_create(&arch_128, p, out); }
static usi_error *create_192(const usi_params *p, void **out) { return levit_create(&arch_192, p, out); }
static usi_error *create_256(const usi_params *p, void **out) { return levit_create(&arch_256, p, out); }
static usi_error *create_384(const usi_params *p, void **out) { return levit_create(&arch_384, p, out); }

static void levit_destroy(void *inst) { usi_host->free(inst); }

static const usi_backbone_ops levit_ops = {sizeof(usi_backbone_ops), levit_build};

#define LEVIT_COMPONENT(var, nm, doc, create)                                    \
    static const usi_component var = {                                           \
        sizeof(usi_component), USI_KIND_BACKBONE, 0, nm, "1.0.0", doc,           \
        levit_params, USI_COUNTOF(levit_params), create, levit_destroy, &levit_ops, \
    }

LEVIT_COMPONENT(comp_128s, "levit_128s",
                "LeViT-128S (timm levit_128s, distilled heads, 7.8M params at 1000 classes)",
                create_128s);
LEVIT_COMPONENT(comp_128, "levit_128",
                "LeViT-128 (timm levit_128, distilled heads, 9.2M params at 1000 classes)",
                create_128);
LEVIT_COMPONENT(comp_192, "levit_192",
                "LeViT-192 (timm levit_192, distilled heads, 10.9M params at 1000 classes)",
                create_192);
LEVIT_COMPONENT(comp_256, "levit_256",
                "LeViT-256 (timm levit_256, distilled heads, 18.9M params at 1000 classes)",
                create_256);
LEVIT_COMPONENT(comp_384, "levit_384",
                "LeViT-384 (timm levit_384, distilled heads, 39.1M params at 1000 classes)",
                create_384);

/* constant() and gather() are ABI 1.2: an older host refuses the plugin at
 * load, saying so, instead of failing each build. */
USI_DEFINE_PLUGIN_MIN(2, "usi_levit", "USI", "Apache-2.0", "1.0.0", &comp_128s, &comp_128,
                      &comp_192, &comp_256, &comp_384);
