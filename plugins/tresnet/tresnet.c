/*
 * TResNet-M, TResNet-L and TResNet-XL as timm 1.0 builds them
 * (timm.models.tresnet):
 *
 *   body.s2d     space-to-depth by 4 (channel order block row, block column,
 *                channel, as timm's SpaceToDepth)
 *   body.conv1   3x3 conv, batch norm, leaky ReLU 1e-2
 *   body.layer1  BasicBlocks, SE                 stride 1
 *   body.layer2  BasicBlocks, SE                 stride 2
 *   body.layer3  Bottlenecks, SE                 stride 2
 *   body.layer4  Bottlenecks, no SE              stride 2
 *   head.fc      global average pool, dropout, linear
 *
 * Every conv is stride 1 with a batch norm after it (timm's ConvNormAct,
 * ported from Inplace-ABN: "conv" and "bn" modules). Inside the blocks the
 * activation is leaky ReLU 1e-3, and the last batch norm of a branch has
 * none; the block ends with a ReLU after the residual sum. A block that
 * downsamples blurs after its strided conv's activation instead of striding
 * the conv (anti-aliasing: timm's BlurPool2d, a fixed [1,2,1] x [1,2,1] / 16
 * depthwise filter at stride 2 over a reflect-padded map), and its shortcut
 * is a 2x2 stride-2 average pool (ceil mode, padding not counted) then a
 * 1x1 conv + batch norm. SE: mean, 1x1 conv with bias, ReLU, 1x1 conv with
 * bias, sigmoid gate; its width is max(planes / 4, 64) in a BasicBlock
 * (over the block's output) and max(planes / 2, 64) in a Bottleneck (over
 * its 3x3 conv's output, before conv3). TResNet-L widens every stage by
 * 1.2 (64 -> 76 planes), TResNet-XL by 1.3 (83 planes, timm's int()).
 *
 * The blur filter is a non-persistent buffer in timm, so it is no part of
 * the state_dict; here it is no tensor at all. [1,2,1] / 4 is the mean of
 * two neighbouring 2-tap means, so the blur is two average pools on the
 * reflect-padded map (2x2 stride 1, then 2x2 stride 2), which gives the
 * same values as the depthwise conv and leaves nothing for a checkpoint to
 * save or miss.
 *
 * Names, shapes, order and initialisers match timm: convs kaiming-normal
 * fan-out (gain sqrt 2, as timm's nonlinearity='leaky_relu' with slope 0),
 * SE biases PyTorch's default uniform, the last batch norm of each residual
 * branch at zero, fc weight normal(0, 0.01) and bias PyTorch's default.
 *
 * Small inputs: timm's stem needs sides that are multiples of 4 and every
 * blur needs at least a 2x2 map, so timm's stem takes 20 px and up (28 px
 * ends at 1x1). The small stem (stem = "small", or "auto" with img_size <=
 * 64) leaves out the space-to-depth: conv1 sees the image itself, its
 * weight is [planes, in_chans, 3, 3] instead of [planes, 16 * in_chans, 3,
 * 3] (so ImageNet weights no longer load into it), and 28 px ends at 4x4.
 */
#include <math.h>
#include <usi/plugin.h>

#include "../common/bb_layers.h"

USI_DECLARE_HOST; /* usi_host: kept by usi_plugin_entry (USI_DEFINE_PLUGIN below) */

/* Leaky ReLU slopes: timm's stem uses nn.LeakyReLU's default, the blocks
 * partial(nn.LeakyReLU, negative_slope=1e-3). */
#define TR_STEM_SLOPE 1e-2
#define TR_BLOCK_SLOPE 1e-3
#define TR_S2D_BLOCK 4
#define TR_SE_MIN_CHS 64
#define TR_FC_STD 0.01

typedef struct tresnet_arch {
    const char *name;
    int32_t layers[4];
    double width_factor;
} tresnet_arch;

static const tresnet_arch arch_tresnet_m = {"tresnet_m", {3, 4, 11, 3}, 1.0};
static const tresnet_arch arch_tresnet_l = {"tresnet_l", {4, 5, 18, 3}, 1.2};
static const tresnet_arch arch_tresnet_xl = {"tresnet_xl", {4, 5, 24, 3}, 1.3};

typedef struct tresnet {
    const tresnet_arch *arch;
    bb_options opt;
} tresnet;

/* Stage s: BasicBlocks (expansion 1) in the first two, Bottlenecks (4) in
 * the last two; every stage but the first halves the map; SE in all but
 * the last. */
static int32_t stage_bottleneck(int s) { return s >= 2; }
static int32_t stage_stride(int s) { return s == 0 ? 1 : 2; }
static int32_t stage_se(int s) { return s < 3; }

static usi_init conv_init(void)
{
    return usi_init_kaiming_normal(USI_FAN_OUT, sqrt(2.0));
}

/* timm's ConvNormAct "<scope>": conv (no bias, stride 1) + BatchNorm2d, then
 * leaky ReLU with `slope` when act is set. gamma is the BN weight's start. */
static usi_tensor *conv_bn(const bb_ctx *c, usi_tensor *x, const char *scope, int64_t cout,
                           int32_t k, int32_t act, double slope, double gamma)
{
    const usi_graph_api *G = c->api;
    usi_init w = conv_init();
    G->push_scope(c->g, scope);
    usi_tensor *y = bb_conv(c, x, "conv", cout, k, 1, 1, &w, NULL);
    y = bb_bn(c, y, "bn", gamma);
    G->pop_scope(c->g);
    return act ? G->activation(c->g, y, USI_ACT_LEAKY_RELU, slope) : y;
}

/* F.pad(x, (1, 1, 1, 1), mode='reflect'): row 1 above, row H-2 below, then
 * the same with columns (which also fills the corners as reflect does). */
static usi_tensor *reflect_pad1(const bb_ctx *c, usi_tensor *x)
{
    const usi_graph_api *G = c->api;
    for (int32_t axis = 2; axis <= 3 && x; axis++) {
        int64_t n = G->dim(x, axis);
        usi_tensor *parts[3] = {G->slice(c->g, x, axis, 1, 2, 1), x,
                                G->slice(c->g, x, axis, n - 2, n - 1, 1)};
        x = G->concat(c->g, 3, parts, axis);
    }
    return x;
}

/* timm's BlurPool2d(filt_size 3, stride 2): see the comment at the top. */
static usi_tensor *blur_pool(const bb_ctx *c, usi_tensor *x)
{
    const usi_graph_api *G = c->api;
    usi_pool2d_desc pair = usi_pool2d(USI_POOL_AVG, 2, 1, 0);
    usi_pool2d_desc pair_s2 = usi_pool2d(USI_POOL_AVG, 2, 2, 0);
    x = G->pool2d(c->g, reflect_pad1(c, x), &pair);
    return G->pool2d(c->g, x, &pair_s2);
}

/* SEModule "se" (bb_squeeze_excite) with rd channels between. */
static usi_tensor *squeeze_excite(const bb_ctx *c, usi_tensor *x, int64_t rd)
{
    usi_init w = conv_init();
    return bb_squeeze_excite(c, x, rd, &w);
}

/* The block's shortcut: x itself, or "downsample" = [avg pool 2x2 stride 2
 * ceil mode without padding counted when striding], 1x1 conv + BN. */
static usi_tensor *shortcut(const bb_ctx *c, usi_tensor *x, int64_t out_chs, int32_t stride)
{
    const usi_graph_api *G = c->api;
    if (!x || (stride == 1 && G->dim(x, 1) == out_chs)) return x;
    G->push_scope(c->g, "downsample");
    if (stride != 1) {
        usi_pool2d_desc pool = usi_pool2d(USI_POOL_AVG, 2, 2, 0);
        pool.ceil_mode = 1;
        pool.count_include_pad = 0;
        x = G->pool2d(c->g, x, &pool);
    }
    /* nn.Sequential numbers the conv after the pool when there is one */
    x = conv_bn(c, x, stride != 1 ? "1" : "0", out_chs, 1, 0, 0, 1.0);
    G->pop_scope(c->g);
    return x;
}

/* One block, scoped "layerN.i" by the caller. Recording follows timm's
 * module order (downsample, conv1, conv2, se, conv3), which is also its
 * state_dict order. */
static usi_tensor *block(const bb_ctx *c, usi_tensor *x, int64_t planes, int32_t stride,
                         int32_t bottleneck, int32_t use_se, double dpr)
{
    const usi_graph_api *G = c->api;
    int64_t out_chs = bottleneck ? planes * 4 : planes;
    usi_tensor *sc = shortcut(c, x, out_chs, stride), *y;
    if (bottleneck) {
        y = conv_bn(c, x, "conv1", planes, 1, 1, TR_BLOCK_SLOPE, 1.0);
        y = conv_bn(c, y, "conv2", planes, 3, 1, TR_BLOCK_SLOPE, 1.0);
        if (stride != 1) y = blur_pool(c, y);
        if (use_se) {
            int64_t rd = out_chs / 8 > TR_SE_MIN_CHS ? out_chs / 8 : TR_SE_MIN_CHS;
            y = squeeze_excite(c, y, rd);
        }
        y = conv_bn(c, y, "conv3", out_chs, 1, 0, 0, 0.0); /* zero-init last BN */
    } else {
        y = conv_bn(c, x, "conv1", planes, 3, 1, TR_BLOCK_SLOPE, 1.0);
        if (stride != 1) y = blur_pool(c, y);
        y = conv_bn(c, y, "conv2", planes, 3, 0, 0, 0.0); /* zero-init last BN */
        if (use_se) {
            int64_t rd = out_chs / 4 > TR_SE_MIN_CHS ? out_chs / 4 : TR_SE_MIN_CHS;
            y = squeeze_excite(c, y, rd);
        }
    }
    y = bb_drop_path(c, y, dpr);
    return G->activation(c->g, G->binary(c->g, USI_BIN_ADD, y, sc), USI_ACT_RELU, 0);
}

/* Checks what timm's layers need of the input's sides: multiples of 4 for
 * the space-to-depth, and at least 2x2 before each of the three blurs
 * (reflect padding takes a neighbour). 0 when the input fits. */
static int check_side(const bb_ctx *c, const tresnet *net, int64_t side, const char *what)
{
    const char *name = net->arch->name;
    if (!net->opt.small_stem && side % TR_S2D_BLOCK) {
        bb_fail(c, "%s: timm's stem (space-to-depth by 4) needs an input %s that is a multiple "
                   "of 4, not %lld; use stem = \"small\" or resize the input",
                name, what, (long long)side);
        return -1;
    }
    int64_t s = net->opt.small_stem ? side : side / TR_S2D_BLOCK;
    for (int i = 0; i < 3; i++) {
        if (s < 2) {
            bb_fail(c, "%s: an input %s of %lld px leaves a 1 px map before stage %d's blur "
                       "with %s stem; use larger inputs%s",
                    name, what, (long long)side, i + 2, net->opt.small_stem ? "the small" : "timm's",
                    net->opt.small_stem ? "" : " or stem = \"small\"");
            return -1;
        }
        s = (s + 1) / 2;
    }
    return 0;
}

static const bb_op_slot tresnet_ops_needed[] = {
    BB_OP(space_to_depth), BB_OP(slice), BB_OP(concat),
};

static usi_tensor *tresnet_build(void *inst, usi_graph *g, usi_tensor *input)
{
    const tresnet *net = inst;
    const tresnet_arch *a = net->arch;
    bb_ctx ctx, *c = &ctx;
    if (bb_ctx_init(c, usi_host, g, input, a->name)) return NULL;
    if (bb_require_ops(c, tresnet_ops_needed, USI_COUNTOF(tresnet_ops_needed), a->name))
        return NULL;
    const usi_graph_api *G = c->api;
    if (G->dim(input, 1) != net->opt.in_chans) {
        bb_fail(c, "%s: the input has %lld channels but in_chans is %lld; set backbone.in_chans to %lld",
                a->name, (long long)G->dim(input, 1), (long long)net->opt.in_chans,
                (long long)G->dim(input, 1));
        return NULL;
    }
    if (check_side(c, net, G->dim(input, 2), "height") ||
        check_side(c, net, G->dim(input, 3), "width"))
        return NULL;

    /* int(64 * width_factor), as timm */
    int64_t planes = (int64_t)(64 * a->width_factor);
    G->push_scope(g, "body");
    usi_tensor *x = input;
    if (!net->opt.small_stem) x = G->space_to_depth(g, x, TR_S2D_BLOCK);
    x = conv_bn(c, x, "conv1", planes, 3, 1, TR_STEM_SLOPE, 1.0);

    int32_t total = 0, idx = 0;
    for (int s = 0; s < 4; s++) total += a->layers[s];
    for (int s = 0; s < 4; s++) {
        char layer[8] = "layer1";
        layer[5] = (char)('1' + s);
        G->push_scope(g, layer);
        for (int32_t i = 0; i < a->layers[s]; i++, idx++) {
            /* timm's linspace(0, rate, blocks) over the whole network */
            double dpr = net->opt.drop_path_rate * idx / (total > 1 ? total - 1 : 1);
            bb_push_index(c, i);
            x = block(c, x, planes << s, i == 0 ? stage_stride(s) : 1, stage_bottleneck(s),
                      stage_se(s), dpr);
            G->pop_scope(g);
        }
        G->pop_scope(g);
    }
    G->pop_scope(g);

    /* ClassifierHead with pool_type "fast": mean over H, W, dropout, fc */
    x = bb_global_avg(c, x, 0);
    if (net->opt.drop_rate > 0.0) x = G->dropout(g, x, net->opt.drop_rate);
    double bound = x ? 1.0 / sqrt((double)G->dim(x, -1)) : 0.0;
    usi_init fc_w = usi_init_normal(0.0, TR_FC_STD), fc_b = usi_init_uniform(-bound, bound);
    G->push_scope(g, "head");
    x = bb_linear(c, x, "fc", net->opt.num_classes, &fc_w, &fc_b);
    G->pop_scope(g);
    return x;
}

static const usi_param_desc tresnet_params[] = {
    BB_BASE_PARAMS
    BB_STEM_PARAM("timm: space-to-depth by 4, then a 3x3 conv; small: no space-to-depth "
                  "(28-64 px inputs); auto: small when img_size <= 64")
};

static usi_error *tresnet_create(const tresnet_arch *arch, const usi_params *p, void **out)
{
    tresnet *net = usi_host->alloc(sizeof *net, 0);
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

static usi_error *create_tresnet_m(const usi_params *p, void **out)
{
    return tresnet_create(&arch_tresnet_m, p, out);
}
static usi_error *create_tresnet_l(const usi_params *p, void **out)
{
    return tresnet_create(&arch_tresnet_l, p, out);
}
static usi_error *create_tresnet_xl(const usi_params *p, void **out)
{
    return tresnet_create(&arch_tresnet_xl, p, out);
}

static void tresnet_destroy(void *inst) { usi_host->free(inst); }

static const usi_backbone_ops tresnet_ops = {sizeof(usi_backbone_ops), tresnet_build};

#define TRESNET_COMPONENT(var, nm, doc, create)                                  \
    static const usi_component var = {                                           \
        sizeof(usi_component), USI_KIND_BACKBONE, 0, nm, "1.0.0", doc,           \
        tresnet_params, USI_COUNTOF(tresnet_params), create, tresnet_destroy,    \
        &tresnet_ops,                                                            \
    }

TRESNET_COMPONENT(comp_tresnet_m, "tresnet_m",
                  "TResNet-M (timm tresnet_m, 31.4M params at 1000 classes)", create_tresnet_m);
TRESNET_COMPONENT(comp_tresnet_l, "tresnet_l",
                  "TResNet-L (timm tresnet_l, 56.0M params at 1000 classes)", create_tresnet_l);
TRESNET_COMPONENT(comp_tresnet_xl, "tresnet_xl",
                  "TResNet-XL (timm tresnet_xl, 78.4M params at 1000 classes)", create_tresnet_xl);

USI_DEFINE_PLUGIN("usi_tresnet", "USI", "Apache-2.0", "1.0.0", &comp_tresnet_m, &comp_tresnet_l,
                  &comp_tresnet_xl);
