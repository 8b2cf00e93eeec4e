/*
 * ResNet-18/34/50/101 as timm builds them (timm.models.resnet, the plain "a"
 * variant: 7x7 stem, max-pool, stride on the 3x3 conv of a bottleneck, 1x1
 * conv + BN shortcut when the shape changes). Parameter names, shapes,
 * order and initialisers are timm's, so timm checkpoints load as they are.
 *
 * The small stem (stem = "small", or "auto" with img_size <= 64) is the usual
 * CIFAR form: conv1 becomes 3x3 stride 1 and the max-pool goes, so a 32 px
 * input reaches layer4 at 4x4 instead of 1x1. Names stay timm's; only
 * conv1.weight's shape changes, so such a model loads no ImageNet conv1.
 */
#include <math.h>
#include <usi/plugin.h>

#include "../common/bb_layers.h"

USI_DECLARE_HOST; /* usi_host: kept by usi_plugin_entry (USI_DEFINE_PLUGIN below) */

typedef struct resnet_arch {
    const char *name;
    int32_t bottleneck;      /* 0: BasicBlock (expansion 1), 1: Bottleneck (4) */
    int32_t depths[4];
} resnet_arch;

static const resnet_arch arch_resnet18 = {"resnet18", 0, {2, 2, 2, 2}};
static const resnet_arch arch_resnet34 = {"resnet34", 0, {3, 4, 6, 3}};
static const resnet_arch arch_resnet50 = {"resnet50", 1, {3, 4, 6, 3}};
static const resnet_arch arch_resnet101 = {"resnet101", 1, {3, 4, 23, 3}};

typedef struct resnet {
    const resnet_arch *arch;
    bb_options opt;
} resnet;

/* timm: kaiming_normal_(mode='fan_out', nonlinearity='relu') on every conv. */
static usi_init conv_init(void)
{
    return usi_init_kaiming_normal(USI_FAN_OUT, sqrt(2.0));
}

/* One residual block, scoped "layerN.i". inplanes is dim 1 of x. */
static usi_tensor *resnet_block(const bb_ctx *c, const resnet *net, usi_tensor *x,
                                int64_t planes, int32_t stride, double dpr)
{
    const usi_graph_api *G = c->api;
    usi_init w = conv_init();
    int64_t expansion = net->arch->bottleneck ? 4 : 1;
    int64_t out_chs = planes * expansion;
    usi_tensor *shortcut = x, *y;

    if (net->arch->bottleneck) {
        y = bb_conv(c, x, "conv1", planes, 1, 1, 1, &w, NULL);
        y = G->activation(c->g, bb_bn(c, y, "bn1", 1.0), USI_ACT_RELU, 0);
        y = bb_conv(c, y, "conv2", planes, 3, stride, 1, &w, NULL);
        y = G->activation(c->g, bb_bn(c, y, "bn2", 1.0), USI_ACT_RELU, 0);
        y = bb_conv(c, y, "conv3", out_chs, 1, 1, 1, &w, NULL);
        y = bb_bn(c, y, "bn3", 0.0); /* zero_init_last */
    } else {
        y = bb_conv(c, x, "conv1", planes, 3, stride, 1, &w, NULL);
        y = G->activation(c->g, bb_bn(c, y, "bn1", 1.0), USI_ACT_RELU, 0);
        y = bb_conv(c, y, "conv2", out_chs, 3, 1, 1, &w, NULL);
        y = bb_bn(c, y, "bn2", 0.0); /* zero_init_last */
    }
    y = bb_drop_path(c, y, dpr);

    if (x && (stride != 1 || G->dim(x, 1) != out_chs)) {
        G->push_scope(c->g, "downsample");
        shortcut = bb_conv(c, x, "0", out_chs, 1, stride, 1, &w, NULL);
        shortcut = bb_bn(c, shortcut, "1", 1.0);
        G->pop_scope(c->g);
    }
    return G->activation(c->g, G->binary(c->g, USI_BIN_ADD, y, shortcut),
                         USI_ACT_RELU, 0);
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

    usi_init w = conv_init();
    usi_tensor *x;
    if (net->opt.small_stem) {
        x = bb_conv(c, input, "conv1", 64, 3, 1, 1, &w, NULL);
        x = G->activation(g, bb_bn(c, x, "bn1", 1.0), USI_ACT_RELU, 0);
    } else {
        x = bb_conv(c, input, "conv1", 64, 7, 2, 1, &w, NULL);
        x = G->activation(g, bb_bn(c, x, "bn1", 1.0), USI_ACT_RELU, 0);
        usi_pool2d_desc pool = usi_pool2d(USI_POOL_MAX, 3, 2, 1);
        x = G->pool2d(g, x, &pool);
    }

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
            x = resnet_block(c, net, x, 64LL << s, (s > 0 && i == 0) ? 2 : 1, dpr);
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

static usi_error *create_resnet18(const usi_params *p, void **out)
{
    return resnet_create(&arch_resnet18, p, out);
}
static usi_error *create_resnet34(const usi_params *p, void **out)
{
    return resnet_create(&arch_resnet34, p, out);
}
static usi_error *create_resnet50(const usi_params *p, void **out)
{
    return resnet_create(&arch_resnet50, p, out);
}
static usi_error *create_resnet101(const usi_params *p, void **out)
{
    return resnet_create(&arch_resnet101, p, out);
}

static void resnet_destroy(void *inst) { usi_host->free(inst); }

static const usi_backbone_ops resnet_ops = {sizeof(usi_backbone_ops), resnet_build};

#define RESNET_COMPONENT(var, nm, doc, create)                                   \
    static const usi_component var = {                                           \
        sizeof(usi_component), USI_KIND_BACKBONE, 0, nm, "1.0.0", doc,           \
        bb_params, BB_N_PARAMS, create, resnet_destroy, &resnet_ops,             \
    }

RESNET_COMPONENT(comp_resnet18, "resnet18",
                 "ResNet-18 (timm resnet18, 11.7M params at 1000 classes)", create_resnet18);
RESNET_COMPONENT(comp_resnet34, "resnet34",
                 "ResNet-34 (timm resnet34, 21.8M params at 1000 classes)", create_resnet34);
RESNET_COMPONENT(comp_resnet50, "resnet50",
                 "ResNet-50 (timm resnet50, 25.6M params at 1000 classes)", create_resnet50);
RESNET_COMPONENT(comp_resnet101, "resnet101",
                 "ResNet-101 (timm resnet101, 44.5M params at 1000 classes)", create_resnet101);

USI_DEFINE_PLUGIN("usi_resnet", "USI", "Apache-2.0", "1.0.0", &comp_resnet18, &comp_resnet34,
                  &comp_resnet50, &comp_resnet101);
