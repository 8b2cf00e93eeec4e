/*
 * Vision Transformers as timm builds them (timm.models.vision_transformer;
 * DeiT without distillation is the same class): a patch embedding (16x16 or
 * 32x32, the model's patch_size in timm), a class token and learned
 * position embedding (one entry per patch plus the class token, added after
 * the concat), pre-norm blocks of multi-head self-attention (one qkv Linear
 * with bias, scale head_dim^-0.5) and a 4x GELU MLP, LayerNorm eps 1e-6
 * throughout, the final norm on the class token and a Linear head. Names,
 * shapes, order and initialisation are timm's: cls_token normal(1e-6),
 * pos_embed and every Linear trunc_normal(0.02) with zero biases, the patch
 * conv PyTorch's default (uniform +-1/sqrt(fan_in) for weight and bias),
 * layer norms 1 and 0. Stochastic depth: linspace(0, rate, depth) per
 * block, on both residuals.
 *
 * The distilled DeiTs (timm.models.deit.VisionTransformerDistilled) add a
 * distillation token after the class token (dist_token, trunc_normal(0.02),
 * recorded after pos_embed as in timm's state_dict), so pos_embed has two
 * leading entries; "head" reads the class token and "head_dist" the
 * distillation token, and the logits are their average, in training too
 * (timm's distilled_training is off by default), as LeViT does.
 *
 * The position embedding is sized from img_size, and the input must be
 * that size. Small inputs: the small stem (stem = "small", or "auto" with
 * img_size <= 64) uses 4x4 patches whatever the model's own patch, so 28 px
 * gives 7x7 tokens and 32 px 8x8 (timm's 16x16 patch leaves one and four,
 * its 32x32 patch none and one); patch_size sets any other. Only
 * patch_embed.proj.weight and pos_embed change shape with it.
 */
#include <math.h>
#include <usi/plugin.h>

#include "../common/bb_tokens.h"

USI_DECLARE_HOST; /* usi_host: kept by usi_plugin_entry (USI_DEFINE_PLUGIN below) */

typedef struct vit_arch {
    const char *name;
    int64_t dim;
    int32_t depth;
    int32_t heads;
    int32_t patch;     /* timm's patch side                                */
    int32_t distilled; /* DeiT's distillation token and second head        */
} vit_arch;

typedef struct vit {
    const vit_arch *arch;
    bb_options opt;
    int32_t patch;
} vit;

/* Attention "attn" on tokens [N, T, D]: q, k, v are the three D-wide
 * thirds of qkv, each split into heads as [N, heads, T, D/heads]. */
static usi_tensor *vit_attention(const bb_ctx *c, usi_tensor *x, int32_t heads)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    static const int32_t split[4] = {0, 2, 1, 3}; /* [N,T,h,hd] <-> [N,h,T,hd] */
    int64_t n = G->dim(x, 0), t = G->dim(x, 1), dim = G->dim(x, 2), hd = dim / heads;
    int64_t heads_shape[4] = {n, t, heads, hd}, tokens_shape[3] = {n, t, dim};
    usi_init w_init = bb_trunc02(), zeros = usi_init_zeros();

    G->push_scope(c->g, "attn");
    usi_tensor *qkv = bb_linear(c, x, "qkv", 3 * dim, &w_init, &zeros), *part[3];
    for (int i = 0; i < 3; i++) {
        part[i] = G->slice(c->g, qkv, -1, i * dim, (i + 1) * dim, 1);
        part[i] = G->permute(c->g, G->reshape(c->g, part[i], 4, heads_shape), split);
    }
    usi_tensor *y = G->attention(c->g, part[0], part[1], part[2], NULL, 1.0 / sqrt((double)hd));
    y = G->reshape(c->g, G->permute(c->g, y, split), 3, tokens_shape);
    y = bb_linear(c, y, "proj", dim, &w_init, &zeros);
    G->pop_scope(c->g);
    return y;
}

/* One pre-norm block at blocks.<i>, scoped by the caller. */
static usi_tensor *vit_block(const bb_ctx *c, const vit_arch *a, usi_tensor *x, double dpr)
{
    const usi_graph_api *G = c->api;
    usi_init w_init = bb_trunc02(), zeros = usi_init_zeros();
    usi_tensor *y = bb_layer_norm(c, x, "norm1", -1, BB_LN_EPS);
    y = vit_attention(c, y, a->heads);
    x = G->binary(c->g, USI_BIN_ADD, x, bb_drop_path(c, y, dpr));
    y = bb_layer_norm(c, x, "norm2", -1, BB_LN_EPS);
    y = bb_mlp(c, y, "mlp", 4 * a->dim, USI_ACT_GELU, &w_init, &zeros);
    return G->binary(c->g, USI_BIN_ADD, x, bb_drop_path(c, y, dpr));
}

static const bb_op_slot vit_ops_needed[] = {
    BB_OP(layer_norm), BB_OP(permute), BB_OP(reshape), BB_OP(slice),
    BB_OP(concat), BB_OP(attention), BB_OP(scale),
};

static usi_tensor *vit_build(void *inst, usi_graph *g, usi_tensor *input)
{
    const vit *net = inst;
    const vit_arch *a = net->arch;
    bb_ctx ctx, *c = &ctx;
    if (bb_ctx_init(c, usi_host, g, input, a->name)) return NULL;
    if (bb_require_ops(c, vit_ops_needed, sizeof vit_ops_needed / sizeof vit_ops_needed[0],
                       a->name))
        return NULL;
    int64_t grid = bb_token_grid(c, input, &net->opt, net->patch, a->name);
    if (!grid) return NULL;
    const usi_graph_api *G = c->api;

    /* the class token, then for DeiT distilled the distillation token */
    int32_t prefix = 1 + a->distilled;
    int64_t tok_shape[3] = {1, 1, a->dim}, pos_shape[3] = {1, grid * grid + prefix, a->dim};
    usi_init cls_init = usi_init_normal(0.0, 1e-6), trunc = bb_trunc02();
    usi_tensor *tok[2];
    tok[0] = G->param(g, "cls_token", 3, tok_shape, &cls_init);
    usi_tensor *pos = G->param(g, "pos_embed", 3, pos_shape, &trunc);
    if (a->distilled) tok[1] = G->param(g, "dist_token", 3, tok_shape, &trunc);

    /* PyTorch's Conv2d default: kaiming_uniform(a = sqrt 5), i.e. bound
     * 1/sqrt(fan_in), and the bias uniform in the same bound */
    double bound = 1.0 / sqrt((double)net->opt.in_chans * net->patch * net->patch);
    usi_init pw = usi_init_kaiming_uniform(USI_FAN_IN, 1.0 / sqrt(3.0));
    usi_init pb = usi_init_uniform(-bound, bound);
    usi_tensor *x = bb_patch_embed(c, input, "patch_embed", a->dim, net->patch, &pw, &pb);

    /* the tokens for every sample: token + 0 * (a [N,1,D] slice of x) */
    usi_tensor *zero = x ? G->scale(g, G->slice(g, x, 1, 0, 1, 1), 0.0) : NULL;
    usi_tensor *parts[3];
    for (int32_t i = 0; i < prefix; i++) parts[i] = G->binary(g, USI_BIN_ADD, zero, tok[i]);
    parts[prefix] = x;
    x = G->concat(g, prefix + 1, parts, 1);
    x = G->binary(g, USI_BIN_ADD, x, pos);

    G->push_scope(g, "blocks");
    for (int32_t i = 0; i < a->depth; i++) {
        double dpr = net->opt.drop_path_rate * i / (a->depth > 1 ? a->depth - 1 : 1);
        bb_push_index(c, i);
        x = vit_block(c, a, x, dpr);
        G->pop_scope(g);
    }
    G->pop_scope(g);

    /* the final norm acts per token, so only the prefix tokens need it */
    x = bb_layer_norm(c, G->slice(g, x, 1, 0, prefix, 1), "norm", -1, BB_LN_EPS);
    static const char *const head_names[2] = {"head", "head_dist"};
    usi_init zeros = usi_init_zeros();
    usi_tensor *y = NULL;
    for (int32_t i = 0; i < prefix; i++) {
        usi_tensor *t = G->flatten(g, G->slice(g, x, 1, i, i + 1, 1), 1, 2);
        if (net->opt.drop_rate > 0.0) t = G->dropout(g, t, net->opt.drop_rate);
        t = bb_linear(c, t, head_names[i], net->opt.num_classes, &trunc, &zeros);
        y = i ? G->binary(g, USI_BIN_ADD, y, t) : t;
    }
    /* DeiT distilled: the average of both heads, in training too */
    return a->distilled ? G->scale(g, y, 0.5) : y;
}

static const usi_param_desc vit_params[] = {BB_TOKEN_PARAMS};
#define VIT_N_PARAMS (sizeof vit_params / sizeof vit_params[0])

static usi_error *vit_create(const vit_arch *arch, const usi_params *p, void **out)
{
    vit *net = usi_host->alloc(sizeof *net, 0);
    if (!net) return usi_host->error_new(USI_ERR_NOMEM, "%s: out of memory", arch->name);
    net->arch = arch;
    usi_error *e = bb_read_options(usi_host, p, &net->opt);
    if (!e) e = bb_read_patch(usi_host, p, &net->opt, arch->patch, &net->patch);
    if (e) {
        usi_host->free(net);
        return e;
    }
    *out = net;
    return NULL;
}

static void vit_destroy(void *inst) { usi_host->free(inst); }

static const usi_backbone_ops vit_ops = {sizeof(usi_backbone_ops), vit_build};

/* One model: its arch, a create function bound to it and its component,
 * documented as "<title> (timm <name>, <params> params at 1000 classes)". */
#define VIT_MODEL(id, nm, title, params, dim, depth, heads, patch, distilled)         \
    static const vit_arch arch_##id = {nm, dim, depth, heads, patch, distilled};     \
    static usi_error *create_##id(const usi_params *p, void **out)                   \
    {                                                                                \
        return vit_create(&arch_##id, p, out);                                       \
    }                                                                                \
    static const usi_component comp_##id = {                                         \
        sizeof(usi_component), USI_KIND_BACKBONE, 0, nm, "1.0.0",                    \
        title " (timm " nm ", " params " params at 1000 classes)",                   \
        vit_params, VIT_N_PARAMS, create_##id, vit_destroy, &vit_ops,                \
    }

/* id, timm name, title, params; dim, depth, heads, patch side, distilled */
VIT_MODEL(vit_tiny,     "vit_tiny_patch16_224",             "ViT-Tiny/16",             "5.7M",   192,  12, 3,  16, 0);
VIT_MODEL(vit_small,    "vit_small_patch16_224",            "ViT-Small/16",            "22.1M",  384,  12, 6,  16, 0);
VIT_MODEL(vit_base,     "vit_base_patch16_224",             "ViT-Base/16",             "86.6M",  768,  12, 12, 16, 0);
VIT_MODEL(vit_large,    "vit_large_patch16_224",            "ViT-Large/16",            "304.3M", 1024, 24, 16, 16, 0);
VIT_MODEL(vit_small32,  "vit_small_patch32_224",            "ViT-Small/32",            "22.9M",  384,  12, 6,  32, 0);
VIT_MODEL(vit_base32,   "vit_base_patch32_224",             "ViT-Base/32",             "88.2M",  768,  12, 12, 32, 0);
VIT_MODEL(deit_tiny,    "deit_tiny_patch16_224",            "DeiT-Tiny/16",            "5.7M",   192,  12, 3,  16, 0);
VIT_MODEL(deit_small,   "deit_small_patch16_224",           "DeiT-Small/16",           "22.1M",  384,  12, 6,  16, 0);
VIT_MODEL(deit_base,    "deit_base_patch16_224",            "DeiT-Base/16",            "86.6M",  768,  12, 12, 16, 0);
VIT_MODEL(deit_tiny_d,  "deit_tiny_distilled_patch16_224",  "DeiT-Tiny/16 distilled",  "5.9M",   192,  12, 3,  16, 1);
VIT_MODEL(deit_small_d, "deit_small_distilled_patch16_224", "DeiT-Small/16 distilled", "22.4M",  384,  12, 6,  16, 1);
VIT_MODEL(deit_base_d,  "deit_base_distilled_patch16_224",  "DeiT-Base/16 distilled",  "87.3M",  768,  12, 12, 16, 1);

USI_DEFINE_PLUGIN("usi_vit", "USI", "Apache-2.0", "1.0.0", &comp_vit_tiny, &comp_vit_small,
                  &comp_vit_base, &comp_vit_large, &comp_vit_small32, &comp_vit_base32, &comp_deit_tiny,
                  &comp_deit_small, &comp_deit_base, &comp_deit_tiny_d, &comp_deit_small_d,
                  &comp_deit_base_d);
