/*
 * MobileNetV3 Small (widths 0.5, 0.75, 1.0) and Large (0.75, 1.0), as timm
 * builds them (timm.models.mobilenetv3 with its EfficientNet builder): the
 * block tables below are timm's arch_def strings, every block's output
 * channels are its table width x the model's width through timm's
 * make_divisible, squeeze-excite is ReLU + hard-sigmoid with its width taken
 * from the expanded channels (not scaled again), and the head pools before a
 * biased 1x1 conv_head with no batch norm, 1024 (Small) or 1280 (Large)
 * wide at every width. The 16-channel stem is scaled too, except below
 * width 0.75, where timm fixes it (make_divisible keeps 0.75's at 16 anyway). Names, shapes, order and initialisers
 * (TensorFlow's, as timm's _init_weight_goog) match timm.
 *
 * The small stem (stem = "small", or "auto" with img_size <= 64) gives
 * conv_stem stride 1: shapes and names are unchanged, a 32 px input ends at
 * 2x2 instead of 1x1.
 */
#include <math.h>
#include <usi/plugin.h>

#include "../common/bb_layers.h"

USI_DECLARE_HOST; /* usi_host: kept by usi_plugin_entry (USI_DEFINE_PLUGIN below) */

enum { MB_DS = 1, MB_IR = 2, MB_CN = 3 }; /* timm's ds_, ir_, cn_ blocks */

/* One arch_def entry, e.g. "ir_r3_k5_s2_e6_c160_se0.25" in stage 5. */
typedef struct mb_row {
    int32_t stage;
    int32_t type;
    int32_t repeats;
    int32_t kernel;
    int32_t stride;
    double exp_ratio;
    int32_t out_chs;
    double se_ratio;         /* 0: no squeeze-excite                         */
    int32_t relu;            /* "_nre": ReLU instead of the net's hard-swish */
} mb_row;

typedef struct mb_arch {
    const char *name;
    const mb_row *rows;
    int32_t n_rows;
    int64_t num_features;    /* conv_head width                              */
    double width;            /* timm's channel_multiplier                    */
} mb_arch;

static const mb_row rows_small[] = {
    {0, MB_DS, 1, 3, 2, 1.0, 16, 0.25, 1},
    {1, MB_IR, 1, 3, 2, 4.5, 24, 0.0, 1},
    {1, MB_IR, 1, 3, 1, 3.67, 24, 0.0, 1},
    {2, MB_IR, 1, 5, 2, 4.0, 40, 0.25, 0},
    {2, MB_IR, 2, 5, 1, 6.0, 40, 0.25, 0},
    {3, MB_IR, 2, 5, 1, 3.0, 48, 0.25, 0},
    {4, MB_IR, 3, 5, 2, 6.0, 96, 0.25, 0},
    {5, MB_CN, 1, 1, 1, 1.0, 576, 0.0, 0},
};

static const mb_row rows_large[] = {
    {0, MB_DS, 1, 3, 1, 1.0, 16, 0.0, 1},
    {1, MB_IR, 1, 3, 2, 4.0, 24, 0.0, 1},
    {1, MB_IR, 1, 3, 1, 3.0, 24, 0.0, 1},
    {2, MB_IR, 3, 5, 2, 3.0, 40, 0.25, 1},
    {3, MB_IR, 1, 3, 2, 6.0, 80, 0.0, 0},
    {3, MB_IR, 1, 3, 1, 2.5, 80, 0.0, 0},
    {3, MB_IR, 2, 3, 1, 2.3, 80, 0.0, 0},
    {4, MB_IR, 2, 3, 1, 6.0, 112, 0.25, 0},
    {5, MB_IR, 3, 5, 2, 6.0, 160, 0.25, 0},
    {6, MB_CN, 1, 1, 1, 1.0, 960, 0.0, 0},
};

#define N_ROWS(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))
static const mb_arch arch_small_050 = {"mobilenetv3_small_050", rows_small, N_ROWS(rows_small), 1024, 0.5};
static const mb_arch arch_small_075 = {"mobilenetv3_small_075", rows_small, N_ROWS(rows_small), 1024, 0.75};
static const mb_arch arch_small_100 = {"mobilenetv3_small_100", rows_small, N_ROWS(rows_small), 1024, 1.0};
static const mb_arch arch_large_075 = {"mobilenetv3_large_075", rows_large, N_ROWS(rows_large), 1280, 0.75};
static const mb_arch arch_large_100 = {"mobilenetv3_large_100", rows_large, N_ROWS(rows_large), 1280, 1.0};

typedef struct mobilenetv3 {
    const mb_arch *arch;
    bb_options opt;
} mobilenetv3;

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

/* _init_weight_goog: normal(0, sqrt(2 / fan_out)) with fan_out = k*k*out /
 * groups. Computed here because the SDK's kaiming fan ignores groups, which
 * would make depthwise kernels far too small. */
static usi_init goog_conv_init(int64_t cout, int32_t k, int32_t groups)
{
    double fan_out = (double)k * k * (double)cout / groups;
    return usi_init_normal(0.0, sqrt(2.0 / fan_out));
}

static usi_tensor *mb_conv(const bb_ctx *c, usi_tensor *x, const char *scope, int64_t cout,
                           int32_t k, int32_t stride, int32_t groups, int32_t bias)
{
    usi_init w = goog_conv_init(cout, k, groups), zeros = usi_init_zeros();
    return bb_conv(c, x, scope, cout, k, stride, groups, &w, bias ? &zeros : NULL);
}

/* SqueezeExcite "se": x * hard_sigmoid(expand(relu(reduce(mean_hw(x))))). */
static usi_tensor *mb_se(const bb_ctx *c, usi_tensor *x, double ratio)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t chs = G->dim(x, 1);
    G->push_scope(c->g, "se");
    usi_tensor *s = bb_global_avg(c, x, 1);
    s = mb_conv(c, s, "conv_reduce", make_divisible((double)chs * ratio), 1, 1, 1, 1);
    s = G->activation(c->g, s, USI_ACT_RELU, 0);
    s = mb_conv(c, s, "conv_expand", chs, 1, 1, 1, 1);
    s = G->activation(c->g, s, USI_ACT_HARDSIGMOID, 0);
    G->pop_scope(c->g);
    return G->binary(c->g, USI_BIN_MUL, x, s);
}

/* One block at blocks.<stage>.<i>, scoped by the caller. */
static usi_tensor *mb_block(const bb_ctx *c, const mb_row *r, double width, usi_tensor *x,
                            int32_t stride, double dpr)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int32_t act = r->relu ? USI_ACT_RELU : USI_ACT_HARDSWISH;
    int64_t in_chs = G->dim(x, 1);
    int64_t out_chs = make_divisible((double)r->out_chs * width);
    usi_tensor *y;

    if (r->type == MB_CN) {
        /* ConvBnAct: timm gives it no skip unless asked, and nobody asks */
        y = mb_conv(c, x, "conv", out_chs, r->kernel, stride, 1, 0);
        return bb_bn_act(c, y, "bn1", act);
    }
    if (r->type == MB_DS) {
        y = mb_conv(c, x, "conv_dw", in_chs, r->kernel, stride, (int32_t)in_chs, 0);
        y = bb_bn_act(c, y, "bn1", act);
        if (r->se_ratio > 0.0) y = mb_se(c, y, r->se_ratio);
        y = mb_conv(c, y, "conv_pw", out_chs, 1, 1, 1, 0);
        y = bb_bn_act(c, y, "bn2", -1);
    } else {
        int64_t mid = make_divisible((double)in_chs * r->exp_ratio);
        y = mb_conv(c, x, "conv_pw", mid, 1, 1, 1, 0);
        y = bb_bn_act(c, y, "bn1", act);
        y = mb_conv(c, y, "conv_dw", mid, r->kernel, stride, (int32_t)mid, 0);
        y = bb_bn_act(c, y, "bn2", act);
        if (r->se_ratio > 0.0) y = mb_se(c, y, r->se_ratio);
        y = mb_conv(c, y, "conv_pwl", out_chs, 1, 1, 1, 0);
        y = bb_bn_act(c, y, "bn3", -1);
    }
    if (stride == 1 && in_chs == out_chs)
        y = G->binary(c->g, USI_BIN_ADD, bb_drop_path(c, y, dpr), x);
    return y;
}

static usi_tensor *mb_build(void *inst, usi_graph *g, usi_tensor *input)
{
    const mobilenetv3 *net = inst;
    const mb_arch *a = net->arch;
    bb_ctx ctx, *c = &ctx;
    if (bb_ctx_init(c, usi_host, g, input, a->name)) return NULL;
    const usi_graph_api *G = c->api;
    if (G->dim(input, 1) != net->opt.in_chans) {
        bb_fail(c, "%s: the input has %lld channels but in_chans is %lld; set backbone.in_chans to %lld",
                a->name, (long long)G->dim(input, 1), (long long)net->opt.in_chans,
                (long long)G->dim(input, 1));
        return NULL;
    }

    /* timm's fix_stem below width 0.75 */
    int64_t stem = a->width < 0.75 ? 16 : make_divisible(16.0 * a->width);
    usi_tensor *x = mb_conv(c, input, "conv_stem", stem, 3, net->opt.small_stem ? 1 : 2, 1, 0);
    x = bb_bn_act(c, x, "bn1", USI_ACT_HARDSWISH);

    int32_t total = 0, idx = 0;
    for (int32_t i = 0; i < a->n_rows; i++) total += a->rows[i].repeats;

    G->push_scope(g, "blocks");
    int32_t stage = -1, in_stage = 0;
    for (int32_t i = 0; i < a->n_rows; i++) {
        const mb_row *r = &a->rows[i];
        if (r->stage != stage) {
            if (stage >= 0) G->pop_scope(g);
            stage = r->stage;
            in_stage = 0;
            bb_push_index(c, stage);
        }
        for (int32_t rep = 0; rep < r->repeats; rep++, idx++, in_stage++) {
            /* the builder's rule: rate * block_idx / block_count */
            double dpr = net->opt.drop_path_rate * idx / total;
            bb_push_index(c, in_stage);
            x = mb_block(c, r, a->width, x, rep == 0 ? r->stride : 1, dpr);
            G->pop_scope(g);
        }
    }
    if (stage >= 0) G->pop_scope(g);
    G->pop_scope(g);

    /* the "efficient head": pool first, then a 1x1 conv with bias, no BN */
    x = bb_global_avg(c, x, 1);
    x = mb_conv(c, x, "conv_head", a->num_features, 1, 1, 1, 1);
    x = G->activation(g, x, USI_ACT_HARDSWISH, 0);
    x = G->flatten(g, x, 1, -1);
    if (net->opt.drop_rate > 0.0) x = G->dropout(g, x, net->opt.drop_rate);
    /* _init_weight_goog for Linear: uniform(+-1/sqrt(fan_out)), bias 0 */
    double bound = 1.0 / sqrt((double)net->opt.num_classes);
    usi_init fc_w = usi_init_uniform(-bound, bound), zeros = usi_init_zeros();
    return bb_linear(c, x, "classifier", net->opt.num_classes, &fc_w, &zeros);
}

static usi_error *mb_create(const mb_arch *arch, const usi_params *p, void **out)
{
    mobilenetv3 *net = usi_host->alloc(sizeof *net, 0);
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

static void mb_destroy(void *inst) { usi_host->free(inst); }

static const usi_backbone_ops mb_ops = {sizeof(usi_backbone_ops), mb_build};

/* One member: the create function that binds its arch, and its component. */
#define MB_MEMBER(id, nm, doc)                                                   \
    static usi_error *create_##id(const usi_params *p, void **out)               \
    {                                                                            \
        return mb_create(&arch_##id, p, out);                                    \
    }                                                                            \
    static const usi_component comp_##id = {                                     \
        sizeof(usi_component), USI_KIND_BACKBONE, 0, nm, "1.0.0", doc,           \
        bb_params, BB_N_PARAMS, create_##id, mb_destroy, &mb_ops,                \
    }

MB_MEMBER(small_050, "mobilenetv3_small_050",
          "MobileNetV3-Small 0.5 (timm mobilenetv3_small_050, 1.6M params at 1000 classes)");
MB_MEMBER(small_075, "mobilenetv3_small_075",
          "MobileNetV3-Small 0.75 (timm mobilenetv3_small_075, 2.0M params at 1000 classes)");
MB_MEMBER(small_100, "mobilenetv3_small_100",
          "MobileNetV3-Small 1.0 (timm mobilenetv3_small_100, 2.5M params at 1000 classes)");
MB_MEMBER(large_075, "mobilenetv3_large_075",
          "MobileNetV3-Large 0.75 (timm mobilenetv3_large_075, 4.0M params at 1000 classes)");
MB_MEMBER(large_100, "mobilenetv3_large_100",
          "MobileNetV3-Large 1.0 (timm mobilenetv3_large_100, 5.5M params at 1000 classes)");

USI_DEFINE_PLUGIN("usi_mobilenetv3", "USI", "Apache-2.0", "1.0.0", &comp_small_050, &comp_small_075,
                  &comp_small_100, &comp_large_075, &comp_large_100);
