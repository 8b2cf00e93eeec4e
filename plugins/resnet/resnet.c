/*
 * The ResNet family as timm builds it (timm.models.resnet): stride on the
 * 3x3 conv of a bottleneck, 1x1 conv + BN shortcut when the shape changes.
 * One table row per model says how it departs from the plain ResNet:
 *
 *   deep stem   timm's "deep" stem (resnet*d, *t): three 3x3 convs,
 *               stem_width, stem_width, 2 * stem_width wide (the "tiered"
 *               one makes the first 3/4 of stem_width), in place of the 7x7;
 *   avg_down    the shortcut averages 2x2 (ceil mode, stride 2) before its
 *               1x1 conv instead of striding the conv ("d", "t");
 *   groups,     the bottleneck's 3x3 conv is groups x (planes * base_width /
 *   base_width  64) wide and grouped (ResNeXt 32x4d, Wide ResNet base 128);
 *   se          a squeeze-excitation module after the last BN (SE-ResNet).
 *
 * Parameter names, shapes, order and initialisers are timm's, so timm
 * checkpoints load as they are.
 *
 * The small stem (stem = "small", or "auto" with img_size <= 64) keeps more
 * resolution for 28-64 px inputs: the stem's first conv gets stride 1 and the
 * max-pool goes, so a 32 px input reaches layer4 at 4x4 instead of 1x1. The
 * 7x7 conv also becomes 3x3 (the usual CIFAR form, so conv1.weight changes
 * shape and no ImageNet conv1 loads); the deep stem's convs are 3x3 already
 * and keep their shapes, so timm's weights still load into it.
 */
#include <math.h>
#include <usi/plugin.h>

#include "../common/bb_layers.h"

USI_DECLARE_HOST; /* usi_host: kept by usi_plugin_entry (USI_DEFINE_PLUGIN below) */

enum { BASIC = 0, BOTTLENECK = 1 };      /* BasicBlock (expansion 1), Bottleneck (4) */
enum { STEM_7X7 = 0, STEM_DEEP = 1, STEM_TIERED = 2 };

typedef struct resnet_arch {
    const char *name;
    int32_t block;           /* BASIC or BOTTLENECK                          */
    int32_t depths[4];
    int32_t stem;            /* STEM_*                                       */
    int32_t stem_width;      /* the deep stem's middle conv                  */
    int32_t avg_down;
    int32_t groups;          /* the bottleneck's 3x3 conv (cardinality)      */
    int32_t base_width;      /* its width per group at planes 64             */
    int32_t se;
} resnet_arch;

/* timm's model functions, column by column. */
static const resnet_arch arch_resnet10t =
    {"resnet10t", BASIC, {1, 1, 1, 1}, STEM_TIERED, 32, 1, 1, 64, 0};
static const resnet_arch arch_resnet14t =
    {"resnet14t", BOTTLENECK, {1, 1, 1, 1}, STEM_TIERED, 32, 1, 1, 64, 0};
static const resnet_arch arch_resnet18 =
    {"resnet18", BASIC, {2, 2, 2, 2}, STEM_7X7, 0, 0, 1, 64, 0};
static const resnet_arch arch_resnet26 =
    {"resnet26", BOTTLENECK, {2, 2, 2, 2}, STEM_7X7, 0, 0, 1, 64, 0};
static const resnet_arch arch_resnet26d =
    {"resnet26d", BOTTLENECK, {2, 2, 2, 2}, STEM_DEEP, 32, 1, 1, 64, 0};
static const resnet_arch arch_resnet34 =
    {"resnet34", BASIC, {3, 4, 6, 3}, STEM_7X7, 0, 0, 1, 64, 0};
static const resnet_arch arch_resnet50 =
    {"resnet50", BOTTLENECK, {3, 4, 6, 3}, STEM_7X7, 0, 0, 1, 64, 0};
static const resnet_arch arch_resnet50d =
    {"resnet50d", BOTTLENECK, {3, 4, 6, 3}, STEM_DEEP, 32, 1, 1, 64, 0};
static const resnet_arch arch_resnet101 =
    {"resnet101", BOTTLENECK, {3, 4, 23, 3}, STEM_7X7, 0, 0, 1, 64, 0};
static const resnet_arch arch_resnet101d =
    {"resnet101d", BOTTLENECK, {3, 4, 23, 3}, STEM_DEEP, 32, 1, 1, 64, 0};
static const resnet_arch arch_resnet152 =
    {"resnet152", BOTTLENECK, {3, 8, 36, 3}, STEM_7X7, 0, 0, 1, 64, 0};
static const resnet_arch arch_resnext50_32x4d =
    {"resnext50_32x4d", BOTTLENECK, {3, 4, 6, 3}, STEM_7X7, 0, 0, 32, 4, 0};
static const resnet_arch arch_wide_resnet50_2 =
    {"wide_resnet50_2", BOTTLENECK, {3, 4, 6, 3}, STEM_7X7, 0, 0, 1, 128, 0};
static const resnet_arch arch_seresnet50 =
    {"seresnet50", BOTTLENECK, {3, 4, 6, 3}, STEM_7X7, 0, 0, 1, 64, 1};

typedef struct resnet {
    const resnet_arch *arch;
    bb_options opt;
} resnet;

/* timm: kaiming_normal_(mode='fan_out', nonlinearity='relu') on every conv,
 * the SE module's too. */
static usi_init conv_init(void)
{
    return usi_init_kaiming_normal(USI_FAN_OUT, sqrt(2.0));
}

/* Conv, BN (gamma 1) and ReLU. */
static usi_tensor *conv_bn_relu(const bb_ctx *c, usi_tensor *x, const char *conv,
                                const char *bn, int64_t cout, int32_t k, int32_t stride,
                                int32_t groups)
{
    usi_init w = conv_init();
    x = bb_conv(c, x, conv, cout, k, stride, groups, &w, NULL);
    return c->api->activation(c->g, bb_bn(c, x, bn, 1.0), USI_ACT_RELU, 0);
}

/* timm's SEModule (bb_squeeze_excite) with channels / 16 rounded to the
 * nearest multiple of 8 (at least 8) between. */
static usi_tensor *squeeze_excite(const bb_ctx *c, usi_tensor *x)
{
    if (!x) return NULL;
    int64_t rd = (int64_t)((double)c->api->dim(x, 1) / 16.0 + 4.0) / 8 * 8;
    if (rd < 8) rd = 8;
    usi_init w = conv_init();
    return bb_squeeze_excite(c, x, rd, &w);
}

/* The shortcut "downsample" when the shape changes: a strided 1x1 conv + BN,
 * or with avg_down [2x2 average (ceil mode, padding not counted), 1x1 conv,
 * BN], whose pool is an Identity at stride 1 but still numbers the modules. */
static usi_tensor *downsample(const bb_ctx *c, const resnet_arch *a, usi_tensor *x,
                              int64_t out_chs, int32_t stride)
{
    const usi_graph_api *G = c->api;
    usi_init w = conv_init();
    G->push_scope(c->g, "downsample");
    if (a->avg_down) {
        if (stride != 1) {
            usi_pool2d_desc pool = usi_pool2d(USI_POOL_AVG, 2, stride, 0);
            pool.ceil_mode = 1;
            pool.count_include_pad = 0;
            x = G->pool2d(c->g, x, &pool);
        }
        x = bb_conv(c, x, "1", out_chs, 1, 1, 1, &w, NULL);
        x = bb_bn(c, x, "2", 1.0);
    } else {
        x = bb_conv(c, x, "0", out_chs, 1, stride, 1, &w, NULL);
        x = bb_bn(c, x, "1", 1.0);
    }
    G->pop_scope(c->g);
    return x;
}

/* One residual block, scoped "layerN.i". The recording order is timm's
 * module order (convs and BNs, se, downsample), its state_dict order. */
static usi_tensor *resnet_block(const bb_ctx *c, const resnet_arch *a, usi_tensor *x,
                                int64_t planes, int32_t stride, double dpr)
{
    const usi_graph_api *G = c->api;
    usi_init w = conv_init();
    int64_t out_chs = a->block == BOTTLENECK ? planes * 4 : planes;
    usi_tensor *y;

    if (a->block == BOTTLENECK) {
        int64_t width = planes * a->base_width / 64 * a->groups;
        y = conv_bn_relu(c, x, "conv1", "bn1", width, 1, 1, 1);
        y = conv_bn_relu(c, y, "conv2", "bn2", width, 3, stride, a->groups);
        y = bb_conv(c, y, "conv3", out_chs, 1, 1, 1, &w, NULL);
        y = bb_bn(c, y, "bn3", 0.0); /* zero_init_last */
    } else {
        y = conv_bn_relu(c, x, "conv1", "bn1", planes, 3, stride, 1);
        y = bb_conv(c, y, "conv2", out_chs, 3, 1, 1, &w, NULL);
        y = bb_bn(c, y, "bn2", 0.0); /* zero_init_last */
    }
    if (a->se) y = squeeze_excite(c, y);
    y = bb_drop_path(c, y, dpr);

    usi_tensor *shortcut = x;
    if (x && (stride != 1 || G->dim(x, 1) != out_chs))
        shortcut = downsample(c, a, x, out_chs, stride);
    return G->activation(c->g, G->binary(c->g, USI_BIN_ADD, y, shortcut),
                         USI_ACT_RELU, 0);
}

/* "conv1" (a conv, or the deep stem's nn.Sequential of conv, BN, ReLU, conv,
 * BN, ReLU, conv), "bn1", ReLU and, with timm's stem, the max-pool. */
static usi_tensor *resnet_stem(const bb_ctx *c, const resnet *net, usi_tensor *x)
{
    const resnet_arch *a = net->arch;
    const usi_graph_api *G = c->api;
    int small = net->opt.small_stem;
    usi_init w = conv_init();
    int64_t out_chs = 64;
    if (a->stem == STEM_7X7) {
        x = bb_conv(c, x, "conv1", 64, small ? 3 : 7, small ? 1 : 2, 1, &w, NULL);
    } else {
        int64_t first = a->stem == STEM_TIERED ? 3 * (a->stem_width / 4) : a->stem_width;
        out_chs = 2 * a->stem_width;
        G->push_scope(c->g, "conv1");
        x = conv_bn_relu(c, x, "0", "1", first, 3, small ? 1 : 2, 1);
        x = conv_bn_relu(c, x, "3", "4", a->stem_width, 3, 1, 1);
        x = bb_conv(c, x, "6", out_chs, 3, 1, 1, &w, NULL);
        G->pop_scope(c->g);
    }
    x = G->activation(c->g, bb_bn(c, x, "bn1", 1.0), USI_ACT_RELU, 0);
    if (!small) {
        usi_pool2d_desc pool = usi_pool2d(USI_POOL_MAX, 3, 2, 1);
        x = G->pool2d(c->g, x, &pool);
    }
    return x;
}

static usi_tensor *resnet_build(void *inst, usi_graph *g, usi_tensor *input)
{
    const resnet *net = inst;
    const resnet_arch *a = net->arch;
    bb_ctx ctx, *c = &ctx;
    if (bb_ctx_init(c, usi_host, g, input, a->name)) return NULL;
    const usi_graph_api *G = c->api;
    if (G->dim(input, 1) != net->opt.in_chans) {
        bb_fail(c, "%s: the input has %lld channels but in_chans is %lld; set backbone.in_chans to %lld",
                a->name, (long long)G->dim(input, 1), (long long)net->opt.in_chans,
                (long long)G->dim(input, 1));
        return NULL;
    }

    usi_tensor *x = resnet_stem(c, net, input);
    int32_t total = 0, idx = 0;
    for (int s = 0; s < 4; s++) total += a->depths[s];
    for (int s = 0; s < 4; s++) {
        char layer[8] = "layer1";
        layer[5] = (char)('1' + s);
        G->push_scope(g, layer);
        for (int32_t i = 0; i < a->depths[s]; i++, idx++) {
            /* timm's linear stochastic-depth rule over all blocks */
            double dpr = net->opt.drop_path_rate * idx / (total > 1 ? total - 1 : 1);
            bb_push_index(c, i);
            x = resnet_block(c, a, x, 64LL << s, (s > 0 && i == 0) ? 2 : 1, dpr);
            G->pop_scope(g);
        }
        G->pop_scope(g);
    }

    x = bb_global_avg(c, x, 0);
    if (net->opt.drop_rate > 0.0) x = G->dropout(g, x, net->opt.drop_rate);
    /* PyTorch's nn.Linear default: weight kaiming_uniform(a = sqrt 5), i.e.
     * bound 1/sqrt(fan_in); bias uniform in the same bound. */
    double bound = x ? 1.0 / sqrt((double)G->dim(x, -1)) : 0.0;
    usi_init fc_w = usi_init_kaiming_uniform(USI_FAN_IN, 1.0 / sqrt(3.0));
    usi_init fc_b = usi_init_uniform(-bound, bound);
    return bb_linear(c, x, "fc", net->opt.num_classes, &fc_w, &fc_b);
}

static usi_error *resnet_create(const resnet_arch *arch, const usi_params *p, void **out)
{
    resnet *net = usi_host->alloc(sizeof *net, 0);
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

static void resnet_destroy(void *inst) { usi_host->free(inst); }

static const usi_backbone_ops resnet_ops = {sizeof(usi_backbone_ops), resnet_build};

/* The component for arch_<id>, with its create function. */
#define RESNET_COMPONENT(id, doc)                                                \
    static usi_error *create_##id(const usi_params *p, void **out)               \
    {                                                                            \
        return resnet_create(&arch_##id, p, out);                                \
    }                                                                            \
    static const usi_component comp_##id = {                                     \
        sizeof(usi_component), USI_KIND_BACKBONE, 0, #id, "1.0.0", doc,          \
        bb_params, BB_N_PARAMS, create_##id, resnet_destroy, &resnet_ops,        \
    }

RESNET_COMPONENT(resnet10t, "ResNet-10-T (timm resnet10t, 5.4M params at 1000 classes)");
RESNET_COMPONENT(resnet14t, "ResNet-14-T (timm resnet14t, 10.1M params at 1000 classes)");
RESNET_COMPONENT(resnet18, "ResNet-18 (timm resnet18, 11.7M params at 1000 classes)");
RESNET_COMPONENT(resnet26, "ResNet-26 (timm resnet26, 16.0M params at 1000 classes)");
RESNET_COMPONENT(resnet26d, "ResNet-26-D (timm resnet26d, 16.0M params at 1000 classes)");
RESNET_COMPONENT(resnet34, "ResNet-34 (timm resnet34, 21.8M params at 1000 classes)");
RESNET_COMPONENT(resnet50, "ResNet-50 (timm resnet50, 25.6M params at 1000 classes)");
RESNET_COMPONENT(resnet50d, "ResNet-50-D (timm resnet50d, 25.6M params at 1000 classes)");
RESNET_COMPONENT(resnet101, "ResNet-101 (timm resnet101, 44.5M params at 1000 classes)");
RESNET_COMPONENT(resnet101d, "ResNet-101-D (timm resnet101d, 44.6M params at 1000 classes)");
RESNET_COMPONENT(resnet152, "ResNet-152 (timm resnet152, 60.2M params at 1000 classes)");
RESNET_COMPONENT(resnext50_32x4d,
                 "ResNeXt-50 32x4d (timm resnext50_32x4d, 25.0M params at 1000 classes)");
RESNET_COMPONENT(wide_resnet50_2,
                 "Wide ResNet-50-2 (timm wide_resnet50_2, 68.9M params at 1000 classes)");
RESNET_COMPONENT(seresnet50, "SE-ResNet-50 (timm seresnet50, 28.1M params at 1000 classes)");

USI_DEFINE_PLUGIN("usi_resnet", "USI", "Apache-2.0", "1.0.0", &comp_resnet10t, &comp_resnet14t,
                  &comp_resnet18, &comp_resnet26, &comp_resnet26d, &comp_resnet34, &comp_resnet50,
                  &comp_resnet50d, &comp_resnet101, &comp_resnet101d, &comp_resnet152,
                  &comp_resnext50_32x4d, &comp_wide_resnet50_2, &comp_seresnet50);
