/*
 * ConvNeXt Atto, Femto, Pico, Nano, Tiny, Small, Base and Large as timm
 * builds them (timm.models.convnext):
 * a 4x4 stride-4 patchify stem with LayerNorm2d, four stages of blocks
 * (7x7 depthwise conv, LayerNorm, MLP 4x with GELU, layer scale gamma,
 * residual), a LayerNorm2d + 2x2 stride-2 conv between stages, and timm's
 * NormMlpClassifierHead (average pool, LayerNorm2d, dropout, fc) for every
 * member. Tiny and up run the block's norm and MLP channels-last (Linear
 * weights), Atto to Nano channels-first with 1x1 convs (conv_mlp), as in
 * timm; the state_dict names are the same, the MLP weights of the conv_mlp
 * members are [out, in, 1, 1] instead of [out, in]. Every LayerNorm
 * has eps 1e-6. Names, shapes and order (gamma first in each block, as
 * PyTorch lists a module's own parameters before its children's) match
 * timm; so does the initialisation: convs and linears trunc_normal(0.02)
 * with zero biases, gamma = ls_init_value.
 *
 * Small inputs: timm's stem divides by 32 in all, so a 32 px input ends at
 * 1x1 and a 28 px one cannot pass the last downsample. The small stem
 * (stem = "small", or "auto" with img_size <= 64) keeps the 4x4 stem kernel
 * (timm weights still load) but strides it by 2 with padding 1, so inputs
 * are divided by 16: 28 px ends at 1x1, 32 px at 2x2.
 */
#include <math.h>
#include <usi/plugin.h>

#include "../common/bb_tokens.h"

USI_DECLARE_HOST; /* usi_host: kept by usi_plugin_entry (USI_DEFINE_PLUGIN below) */

typedef struct cnx_arch {
    const char *name;
    int32_t depths[4];
    int64_t dims[4];
    int32_t conv_mlp;        /* channels-first norm and 1x1-conv MLP        */
} cnx_arch;

static const cnx_arch arch_atto = {"convnext_atto", {2, 2, 6, 2}, {40, 80, 160, 320}, 1};
static const cnx_arch arch_femto = {"convnext_femto", {2, 2, 6, 2}, {48, 96, 192, 384}, 1};
static const cnx_arch arch_pico = {"convnext_pico", {2, 2, 6, 2}, {64, 128, 256, 512}, 1};
static const cnx_arch arch_nano = {"convnext_nano", {2, 2, 8, 2}, {80, 160, 320, 640}, 1};
static const cnx_arch arch_tiny = {"convnext_tiny", {3, 3, 9, 3}, {96, 192, 384, 768}, 0};
static const cnx_arch arch_small = {"convnext_small", {3, 3, 27, 3}, {96, 192, 384, 768}, 0};
static const cnx_arch arch_base = {"convnext_base", {3, 3, 27, 3}, {128, 256, 512, 1024}, 0};
static const cnx_arch arch_large = {"convnext_large", {3, 3, 27, 3}, {192, 384, 768, 1536}, 0};

typedef struct convnext {
    const cnx_arch *arch;
    bb_options opt;
    double ls_init;          /* layer-scale start; 0: no gamma              */
} convnext;

/* A conv with bias, trunc_normal(0.02) weight and zero bias, padding p. */
static usi_tensor *cnx_conv(const bb_ctx *c, usi_tensor *x, const char *scope, int64_t cout,
                            int32_t k, int32_t stride, int32_t pad, int32_t groups)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t wshape[4] = {cout, G->dim(x, 1) / groups, k, k}, bshape[1] = {cout};
    usi_init w_init = bb_trunc02(), zeros = usi_init_zeros();
    G->push_scope(c->g, scope);
    usi_tensor *w = G->param(c->g, "weight", 4, wshape, &w_init);
    usi_tensor *b = G->param(c->g, "bias", 1, bshape, &zeros);
    G->pop_scope(c->g);
    usi_conv2d_desc d = usi_conv2d(stride, pad, 1, groups);
    return G->conv2d(c->g, x, w, b, &d);
}

/* One block at stages.<s>.blocks.<i>, scoped by the caller. */
static usi_tensor *cnx_block(const bb_ctx *c, const convnext *net, usi_tensor *x, double dpr)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t dim = G->dim(x, 1);
    int64_t shape[1] = {dim};
    usi_init ls = usi_init_const(net->ls_init), w_init = bb_trunc02(), zeros = usi_init_zeros();
    usi_tensor *gamma = net->ls_init > 0 ? G->param(c->g, "gamma", 1, shape, &ls) : NULL;

    usi_tensor *y = cnx_conv(c, x, "conv_dw", dim, 7, 1, 3, (int32_t)dim);
    if (net->arch->conv_mlp) {
        y = bb_layer_norm(c, y, "norm", 1, BB_LN_EPS);
        G->push_scope(c->g, "mlp");
        y = cnx_conv(c, y, "fc1", 4 * dim, 1, 1, 0, 1);
        y = G->activation(c->g, y, USI_ACT_GELU, 0);
        y = cnx_conv(c, y, "fc2", dim, 1, 1, 0, 1);
        G->pop_scope(c->g);
        if (gamma) {
            int64_t col[3] = {dim, 1, 1};
            y = G->binary(c->g, USI_BIN_MUL, y, G->reshape(c->g, gamma, 3, col));
        }
    } else {
        y = bb_to_nhwc(c, y);
        y = bb_layer_norm(c, y, "norm", -1, BB_LN_EPS);
        y = bb_mlp(c, y, "mlp", 4 * dim, USI_ACT_GELU, &w_init, &zeros);
        /* the per-channel scale is the same before or after the permute */
        if (gamma) y = G->binary(c->g, USI_BIN_MUL, y, gamma);
        y = bb_to_nchw(c, y);
    }
    return G->binary(c->g, USI_BIN_ADD, bb_drop_path(c, y, dpr), x);
}

static const bb_op_slot cnx_ops_needed[] = {
    BB_OP(layer_norm), BB_OP(permute), BB_OP(reshape),
};

/* The side after the stem and three 2x2 stride-2 downsamples, or 0 when a
 * downsample gets less than 2x2. */
static int64_t final_side(int64_t side, int32_t small_stem)
{
    side = small_stem ? (side + 2 - 4) / 2 + 1 : side / 4;
    for (int i = 0; i < 3; i++) {
        if (side < 2) return 0;
        side /= 2;
    }
    return side;
}

static usi_tensor *cnx_build(void *inst, usi_graph *g, usi_tensor *input)
{
    const convnext *net = inst;
    const cnx_arch *a = net->arch;
    bb_ctx ctx, *c = &ctx;
    if (bb_ctx_init(c, usi_host, g, input, a->name)) return NULL;
    if (bb_require_ops(c, cnx_ops_needed, sizeof cnx_ops_needed / sizeof cnx_ops_needed[0],
                       a->name))
        return NULL;
    const usi_graph_api *G = c->api;
    if (G->dim(input, 1) != net->opt.in_chans) {
        bb_fail(c, "%s: the input has %lld channels but in_chans is %lld; set backbone.in_chans to %lld", a->name,
                (long long)G->dim(input, 1), (long long)net->opt.in_chans, (long long)G->dim(input, 1));
        return NULL;
    }
    int64_t side = G->dim(input, 2) < G->dim(input, 3) ? G->dim(input, 2) : G->dim(input, 3);
    if (!final_side(side, net->opt.small_stem)) {
        /* the smallest side whose last stage still has 2x2 before it */
        if (net->opt.small_stem)
            bb_fail(c, "%s: a %lld px input is too small: with the small stem it needs at least 16 px; raise "
                    "data.img_size", a->name, (long long)side);
        else
            bb_fail(c, "%s: a %lld px input is too small: with timm's stem it needs at least 32 px; for 16 to 31 px "
                    "set backbone.stem = \"small\", or raise data.img_size", a->name, (long long)side);
        return NULL;
    }

    G->push_scope(g, "stem");
    usi_tensor *x = net->opt.small_stem ? cnx_conv(c, input, "0", a->dims[0], 4, 2, 1, 1)
                                        : cnx_conv(c, input, "0", a->dims[0], 4, 4, 0, 1);
    x = bb_layer_norm(c, x, "1", 1, BB_LN_EPS);
    G->pop_scope(g);

    int32_t total = 0, idx = 0;
    for (int s = 0; s < 4; s++) total += a->depths[s];
    G->push_scope(g, "stages");
    for (int s = 0; s < 4; s++) {
        bb_push_index(c, s);
        if (s > 0) {
            G->push_scope(g, "downsample");
            x = bb_layer_norm(c, x, "0", 1, BB_LN_EPS);
            x = cnx_conv(c, x, "1", a->dims[s], 2, 2, 0, 1);
            G->pop_scope(g);
        }
        G->push_scope(g, "blocks");
        for (int32_t i = 0; i < a->depths[s]; i++, idx++) {
            /* timm's linspace(0, rate, blocks) over the whole network */
            double dpr = net->opt.drop_path_rate * idx / (total > 1 ? total - 1 : 1);
            bb_push_index(c, i);
            x = cnx_block(c, net, x, dpr);
            G->pop_scope(g);
        }
        G->pop_scope(g);
        G->pop_scope(g);
    }
    G->pop_scope(g);

    G->push_scope(g, "head");
    x = bb_global_avg(c, x, 1);
    x = bb_layer_norm(c, x, "norm", 1, BB_LN_EPS);
    x = G->flatten(g, x, 1, -1);
    if (net->opt.drop_rate > 0.0) x = G->dropout(g, x, net->opt.drop_rate);
    usi_init fc_w = bb_trunc02(), zeros = usi_init_zeros();
    x = bb_linear(c, x, "fc", net->opt.num_classes, &fc_w, &zeros);
    G->pop_scope(g);
    return x;
}

static const usi_param_desc cnx_params[] = {
    BB_BASE_PARAMS
    BB_STEM_PARAM("timm: 4x4 stride-4 patchify stem; small: the same kernel at stride 2 "
                  "(28-64 px inputs); auto: small when img_size <= 64")
    USI_PARAM_FLOAT("ls_init_value", 1e-6, 0, 10,
                    "start of the per-channel layer scale (gamma); 0: no layer scale"),
};
static const usi_option_field cnx_fields[] = {USI_FIELD_FLOAT(convnext, "ls_init_value", ls_init)};
#define CNX_N_PARAMS (sizeof cnx_params / sizeof cnx_params[0])

static usi_error *cnx_create(const cnx_arch *arch, const usi_params *p, void **out)
{
    convnext *net = usi_host->alloc(sizeof *net, 0);
    if (!net) return usi_host->error_new(USI_ERR_NOMEM, "%s: out of memory", arch->name);
    net->arch = arch;
    usi_error *e = bb_read_options(usi_host, p, &net->opt);
    if (!e) e = usi_read_options(usi_host, p, cnx_fields, sizeof cnx_fields / sizeof cnx_fields[0], net);
    if (e) {
        usi_host->free(net);
        return e;
    }
    *out = net;
    return NULL;
}

static void cnx_destroy(void *inst) { usi_host->free(inst); }

static const usi_backbone_ops cnx_ops = {sizeof(usi_backbone_ops), cnx_build};

/* One member: the create function that binds its arch, and its component. */
#define CNX_MEMBER(id, nm, doc)                                                  \
    static usi_error *create_##id(const usi_params *p, void **out)               \
    {                                                                            \
        return cnx_create(&arch_##id, p, out);                                   \
    }                                                                            \
    static const usi_component comp_##id = {                                     \
        sizeof(usi_component), USI_KIND_BACKBONE, 0, nm, "1.0.0", doc,           \
        cnx_params, CNX_N_PARAMS, create_##id, cnx_destroy, &cnx_ops,            \
    }

CNX_MEMBER(atto, "convnext_atto", "ConvNeXt-Atto (timm convnext_atto, 3.7M params at 1000 classes)");
CNX_MEMBER(femto, "convnext_femto", "ConvNeXt-Femto (timm convnext_femto, 5.2M params at 1000 classes)");
CNX_MEMBER(pico, "convnext_pico", "ConvNeXt-Pico (timm convnext_pico, 9.0M params at 1000 classes)");
CNX_MEMBER(nano, "convnext_nano", "ConvNeXt-Nano (timm convnext_nano, 15.6M params at 1000 classes)");
CNX_MEMBER(tiny, "convnext_tiny", "ConvNeXt-Tiny (timm convnext_tiny, 28.6M params at 1000 classes)");
CNX_MEMBER(small, "convnext_small", "ConvNeXt-Small (timm convnext_small, 50.2M params at 1000 classes)");
CNX_MEMBER(base, "convnext_base", "ConvNeXt-Base (timm convnext_base, 88.6M params at 1000 classes)");
CNX_MEMBER(large, "convnext_large", "ConvNeXt-Large (timm convnext_large, 197.8M params at 1000 classes)");

USI_DEFINE_PLUGIN("usi_convnext", "USI", "Apache-2.0", "1.0.0", &comp_atto, &comp_femto, &comp_pico,
                  &comp_nano, &comp_tiny, &comp_small, &comp_base, &comp_large);
