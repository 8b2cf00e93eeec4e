/*
 * EfficientNet-B0 to B3 and EfficientNet-Lite0 to Lite4 as timm builds them
 * (timm.models.efficientnet with its EfficientNet builder). The stage tables
 * below are timm's arch_def strings; channels go through round_channels
 * (make_divisible of channels x channel_multiplier), repeats through the
 * builder's ceil(repeats x depth_multiplier). The B members use SiLU and
 * squeeze-excite (SiLU + sigmoid, width a quarter of the block's input
 * channels) and scale the 32-channel stem and 1280-channel head too; the
 * Lite members use ReLU6, no squeeze-excite, a fixed 32-channel stem and
 * 1280-channel head, and keep the first and last stage's depth when
 * depth_multiplier scales the rest. The head is conv_head + BN + act, then
 * average pooling, dropout and the classifier. Names, shapes, order and
 * initialisers (TensorFlow's, as timm's _init_weight_goog) match timm.
 *
 * Each member is B0's or Lite0's stage table at timm's channel and depth
 * multipliers (the arch table below). The channel_multiplier and
 * depth_multiplier options multiply on top of the member's own, so at 1.0
 * (the default) every name is timm's model of that name, and
 * efficientnet_b0 with 1.1 and 1.2 is efficientnet_b2. timm's model
 * functions leave drop_rate and drop_path_rate at 0 for every member (the
 * rates of the paper are training settings), and so do these.
 *
 * Small inputs: the small stem (stem = "small", or "auto" with img_size <=
 * 64) gives conv_stem stride 1 with unchanged shapes, so a 28 px input ends
 * at 2x2 and a 32 px one at 2x2 instead of 1x1; with timm's stem both still
 * work and end at 1x1.
 */
#include <math.h>
#include <usi/plugin.h>

#include "../common/bb_layers.h"

USI_DECLARE_HOST; /* usi_host: kept by usi_plugin_entry (USI_DEFINE_PLUGIN below) */

enum { EN_DS = 1, EN_IR = 2 }; /* timm's ds_ and ir_ blocks */

/* One arch_def stage, e.g. "ir_r2_k5_s2_e6_c40_se0.25". */
typedef struct en_stage {
    int32_t type;
    int32_t repeats;
    int32_t kernel;
    int32_t stride;
    int32_t exp_ratio;
    int32_t out_chs;
} en_stage;

/* Every member shares the stage table; they differ in the rest. */
static const en_stage stages[7] = {
    {EN_DS, 1, 3, 1, 1, 16},  {EN_IR, 2, 3, 2, 6, 24},  {EN_IR, 2, 5, 2, 6, 40},
    {EN_IR, 3, 3, 2, 6, 80},  {EN_IR, 3, 5, 1, 6, 112}, {EN_IR, 4, 5, 2, 6, 192},
    {EN_IR, 1, 3, 1, 6, 320},
};

typedef struct en_arch {
    const char *name;
    double width, depth;     /* timm's channel and depth multipliers         */
    int32_t lite;            /* ReLU6, no SE, fixed stem/head widths and
                                end-stage depths; else SiLU and SE 0.25      */
} en_arch;

#define EN_SE_RATIO 0.25

typedef struct efficientnet {
    const en_arch *arch;
    bb_options opt;
    double width, depth;     /* the options' multipliers, then times the
                                member's own (en_create)                     */
} efficientnet;

/* timm's make_divisible(v, 8): nearest multiple of 8, at least 8, and never
 * more than 10% below v. */
static int64_t make_divisible(double v)
{
    const int64_t d = 8;
    int64_t n = (int64_t)(v + d / 2.0) / d * d;
    if (n < d) n = d;
    if ((double)n < 0.9 * v) n += d;
    return n;
}

/* _init_weight_goog: normal(0, sqrt(2 / fan_out)), fan_out = k*k*out /
 * groups (the SDK's kaiming fan would ignore the groups). */
static usi_tensor *en_conv(const bb_ctx *c, usi_tensor *x, const char *scope, int64_t cout,
                           int32_t k, int32_t stride, int32_t groups, int32_t bias)
{
    double fan_out = (double)k * k * (double)cout / groups;
    usi_init w = usi_init_normal(0.0, sqrt(2.0 / fan_out)), zeros = usi_init_zeros();
    return bb_conv(c, x, scope, cout, k, stride, groups, &w, bias ? &zeros : NULL);
}

/* SqueezeExcite "se": x * sigmoid(expand(act(reduce(mean_hw(x))))), with
 * rd channels from the block's input (timm divides se_ratio by exp_ratio
 * and applies it to the expanded width; rounding is Python's round). */
static usi_tensor *en_se(const bb_ctx *c, usi_tensor *x, int64_t rd, int32_t act)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t chs = G->dim(x, 1);
    G->push_scope(c->g, "se");
    usi_tensor *s = bb_global_avg(c, x, 1);
    s = en_conv(c, s, "conv_reduce", rd, 1, 1, 1, 1);
    s = G->activation(c->g, s, act, 0);
    s = en_conv(c, s, "conv_expand", chs, 1, 1, 1, 1);
    s = G->activation(c->g, s, USI_ACT_SIGMOID, 0);
    G->pop_scope(c->g);
    return G->binary(c->g, USI_BIN_MUL, x, s);
}

/* Python's round() for the SE width: half to even. */
static int64_t round_half_even(double v)
{
    double r = nearbyint(v); /* the default rounding mode is to nearest even */
    return (int64_t)r;
}

static int32_t en_act(const en_arch *a) { return a->lite ? USI_ACT_RELU6 : USI_ACT_SILU; }

/* One block at blocks.<stage>.<i>, scoped by the caller. */
static usi_tensor *en_block(const bb_ctx *c, const en_arch *a, const en_stage *st,
                            usi_tensor *x, int64_t out_chs, int32_t stride, double dpr)
{
    if (!x) return NULL;
    int32_t act = en_act(a);
    const usi_graph_api *G = c->api;
    int64_t in_chs = G->dim(x, 1);
    usi_tensor *y = x;
    int64_t mid = in_chs;

    if (st->type == EN_IR) {
        mid = make_divisible((double)in_chs * st->exp_ratio);
        y = en_conv(c, y, "conv_pw", mid, 1, 1, 1, 0);
        y = bb_bn_act(c, y, "bn1", act);
    }
    y = en_conv(c, y, "conv_dw", mid, st->kernel, stride, (int32_t)mid, 0);
    y = bb_bn_act(c, y, st->type == EN_IR ? "bn2" : "bn1", act);
    if (!a->lite)
        y = en_se(c, y, round_half_even((double)mid * (EN_SE_RATIO / st->exp_ratio)), act);
    if (st->type == EN_IR) {
        y = en_conv(c, y, "conv_pwl", out_chs, 1, 1, 1, 0);
        y = bb_bn_act(c, y, "bn3", -1);
    } else {
        y = en_conv(c, y, "conv_pw", out_chs, 1, 1, 1, 0);
        y = bb_bn_act(c, y, "bn2", -1);
    }
    if (stride == 1 && in_chs == out_chs)
        y = G->binary(c->g, USI_BIN_ADD, bb_drop_path(c, y, dpr), x);
    return y;
}

/* The builder's per-stage depth: ceil(repeats x multiplier); Lite keeps the
 * first and last stage as they are. */
static int32_t stage_repeats(const efficientnet *net, int32_t s)
{
    if (net->arch->lite && (s == 0 || s == 6)) return stages[s].repeats;
    return (int32_t)ceil(stages[s].repeats * net->depth);
}

static usi_tensor *en_build(void *inst, usi_graph *g, usi_tensor *input)
{
    const efficientnet *net = inst;
    const en_arch *a = net->arch;
    int32_t act = en_act(a);
    bb_ctx ctx, *c = &ctx;
    if (bb_ctx_init(c, usi_host, g, input, a->name)) return NULL;
    const usi_graph_api *G = c->api;
    if (G->dim(input, 1) != net->opt.in_chans) {
        bb_fail(c, "%s: the input has %lld channels but in_chans is %lld; set backbone.in_chans to %lld", a->name,
                (long long)G->dim(input, 1), (long long)net->opt.in_chans, (long long)G->dim(input, 1));
        return NULL;
    }

    int64_t stem = a->lite ? 32 : make_divisible(32.0 * net->width);
    usi_tensor *x = en_conv(c, input, "conv_stem", stem, 3, net->opt.small_stem ? 1 : 2, 1, 0);
    x = bb_bn_act(c, x, "bn1", act);

    int32_t total = 0, idx = 0;
    for (int32_t s = 0; s < 7; s++) total += stage_repeats(net, s);

    G->push_scope(g, "blocks");
    for (int32_t s = 0; s < 7; s++) {
        const en_stage *st = &stages[s];
        int64_t out_chs = make_divisible((double)st->out_chs * net->width);
        bb_push_index(c, s);
        for (int32_t i = 0; i < stage_repeats(net, s); i++, idx++) {
            /* the builder's rule: rate * block_idx / block_count */
            double dpr = net->opt.drop_path_rate * idx / total;
            bb_push_index(c, i);
            x = en_block(c, a, st, x, out_chs, i == 0 ? st->stride : 1, dpr);
            G->pop_scope(g);
        }
        G->pop_scope(g);
    }
    G->pop_scope(g);

    int64_t head = a->lite ? 1280 : make_divisible(1280.0 * net->width);
    x = en_conv(c, x, "conv_head", head, 1, 1, 1, 0);
    x = bb_bn_act(c, x, "bn2", act);
    x = bb_global_avg(c, x, 0);
    if (net->opt.drop_rate > 0.0) x = G->dropout(g, x, net->opt.drop_rate);
    /* _init_weight_goog for Linear: uniform(+-1/sqrt(fan_out)), bias 0 */
    double bound = 1.0 / sqrt((double)net->opt.num_classes);
    usi_init fc_w = usi_init_uniform(-bound, bound), zeros = usi_init_zeros();
    return bb_linear(c, x, "classifier", net->opt.num_classes, &fc_w, &zeros);
}

/* The shared options plus the scaling knobs. */
static const usi_param_desc en_params[] = {
    BB_COMMON_PARAMS
    USI_PARAM_FLOAT("channel_multiplier", 1.0, 0.1, 8.0,
                    "width scale of every stage on top of the model's own (B3 is B0 at 1.2; "
                    "efficientnet_b3 with 1.1 is B0 at 1.32), rounded to multiples of 8"),
    USI_PARAM_FLOAT("depth_multiplier", 1.0, 0.1, 8.0,
                    "repeats scale of every stage on top of the model's own (B3 is B0 at 1.4), "
                    "rounded up"),
};
static const usi_option_field en_fields[] = {
    USI_FIELD_FLOAT(efficientnet, "channel_multiplier", width),
    USI_FIELD_FLOAT(efficientnet, "depth_multiplier", depth),
};

static usi_error *en_create(const en_arch *arch, const usi_params *p, void **out)
{
    efficientnet *net = usi_host->alloc(sizeof *net, 0);
    if (!net) return usi_host->error_new(USI_ERR_NOMEM, "%s: out of memory", arch->name);
    net->arch = arch;
    usi_error *e = bb_read_options(usi_host, p, &net->opt);
    if (!e) e = usi_read_options(usi_host, p, en_fields, sizeof en_fields / sizeof en_fields[0], net);
    if (e) {
        usi_host->free(net);
        return e;
    }
    net->width *= arch->width;
    net->depth *= arch->depth;
    *out = net;
    return NULL;
}

static void en_destroy(void *inst) { usi_host->free(inst); }

static const usi_backbone_ops en_ops = {sizeof(usi_backbone_ops), en_build};

#define EN_N_PARAMS (sizeof en_params / sizeof en_params[0])

/* One member: its arch (name, channel and depth multipliers, lite), the
 * create function that binds it and its component. */
#define EN_MEMBER(id, nm, width, depth, lite, doc)                               \
    static const en_arch arch_##id = {nm, width, depth, lite};                   \
    static usi_error *create_##id(const usi_params *p, void **out)               \
    {                                                                            \
        return en_create(&arch_##id, p, out);                                    \
    }                                                                            \
    static const usi_component comp_##id = {                                     \
        sizeof(usi_component), USI_KIND_BACKBONE, 0, nm, "1.0.0", doc,           \
        en_params, EN_N_PARAMS, create_##id, en_destroy, &en_ops,                \
    }

/* timm's efficientnet_* and efficientnet_lite* model functions */
EN_MEMBER(b0, "efficientnet_b0", 1.0, 1.0, 0,
          "EfficientNet-B0 (timm efficientnet_b0, 5.3M params at 1000 classes)");
EN_MEMBER(b1, "efficientnet_b1", 1.0, 1.1, 0,
          "EfficientNet-B1 (timm efficientnet_b1, 7.8M params at 1000 classes)");
EN_MEMBER(b2, "efficientnet_b2", 1.1, 1.2, 0,
          "EfficientNet-B2 (timm efficientnet_b2, 9.1M params at 1000 classes)");
EN_MEMBER(b3, "efficientnet_b3", 1.2, 1.4, 0,
          "EfficientNet-B3 (timm efficientnet_b3, 12.2M params at 1000 classes)");
EN_MEMBER(lite0, "efficientnet_lite0", 1.0, 1.0, 1,
          "EfficientNet-Lite0 (timm efficientnet_lite0, 4.7M params at 1000 classes)");
EN_MEMBER(lite1, "efficientnet_lite1", 1.0, 1.1, 1,
          "EfficientNet-Lite1 (timm efficientnet_lite1, 5.4M params at 1000 classes)");
EN_MEMBER(lite2, "efficientnet_lite2", 1.1, 1.2, 1,
          "EfficientNet-Lite2 (timm efficientnet_lite2, 6.1M params at 1000 classes)");
EN_MEMBER(lite3, "efficientnet_lite3", 1.2, 1.4, 1,
          "EfficientNet-Lite3 (timm efficientnet_lite3, 8.2M params at 1000 classes)");
EN_MEMBER(lite4, "efficientnet_lite4", 1.4, 1.8, 1,
          "EfficientNet-Lite4 (timm efficientnet_lite4, 13.0M params at 1000 classes)");

USI_DEFINE_PLUGIN("usi_efficientnet", "USI", "Apache-2.0", "1.0.0", &comp_b0, &comp_b1, &comp_b2,
                  &comp_b3, &comp_lite0, &comp_lite1, &comp_lite2, &comp_lite3, &comp_lite4);
