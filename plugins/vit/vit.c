/*
 * Vision Transformers as timm builds them (timm.models.vision_transformer;
 * DeiT without distillation is the same class): 16x16 patch embedding, a
 * class token and learned position embedding (one entry per patch plus the
 * class token, added after the concat), pre-norm blocks of multi-head
 * self-attention (one qkv Linear with bias, scale head_dim^-0.5) and a 4x
 * GELU MLP, LayerNorm eps 1e-6 throughout, the final norm on the class
 * token and a Linear head. Names, shapes, order and initialisation are
 * timm's: cls_token normal(1e-6), pos_embed and every Linear
 * trunc_normal(0.02) with zero biases, the patch conv PyTorch's default
 * (uniform +-1/sqrt(fan_in) for weight and bias), layer norms 1 and 0.
 * Stochastic depth: linspace(0, rate, depth) per block, on both residuals.
 *
 * The position embedding is sized from img_size, and the input must be
 * that size. Small inputs: the small stem (stem = "small", or "auto" with
 * img_size <= 64) uses 4x4 patches, so 28 px gives 7x7 tokens and 32 px
 * 8x8 (timm's 16x16 patch leaves one and four); patch_size sets any other.
 * Only patch_embed.proj.weight and pos_embed change shape with it.
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
} vit_arch;

static const vit_arch arch_deit_tiny = {"deit_tiny_patch16_224", 192, 12, 3};
static const vit_arch arch_deit_small = {"deit_small_patch16_224", 384, 12, 6};
static const vit_arch arch_vit_small = {"vit_small_patch16_224", 384, 12, 6};
static const vit_arch arch_vit_base = {"vit_base_patch16_224", 768, 12, 12};

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

    int64_t cls_shape[3] = {1, 1, a->dim}, pos_shape[3] = {1, grid * grid + 1, a->dim};
    usi_init cls_init = usi_init_normal(0.0, 1e-6), pos_init = bb_trunc02();
    usi_tensor *cls = G->param(g, "cls_token", 3, cls_shape, &cls_init);
    usi_tensor *pos = G->param(g, "pos_embed", 3, pos_shape, &pos_init);

    /* PyTorch's Conv2d default: kaiming_uniform(a = sqrt 5), i.e. bound
     * 1/sqrt(fan_in), and the bias uniform in the same bound */
    double bound = 1.0 / sqrt((double)net->opt.in_chans * net->patch * net->patch);
    usi_init pw = usi_init_kaiming_uniform(USI_FAN_IN, 1.0 / sqrt(3.0));
    usi_init pb = usi_init_uniform(-bound, bound);
    usi_tensor *x = bb_patch_embed(c, input, "patch_embed", a->dim, net->patch, &pw, &pb);

    /* the class token for every sample: cls + 0 * (a [N,1,D] slice of x) */
    usi_tensor *zero = x ? G->scale(g, G->slice(g, x, 1, 0, 1, 1), 0.0) : NULL;
    usi_tensor *parts[2] = {G->binary(g, USI_BIN_ADD, zero, cls), x};
    x = G->concat(g, 2, parts, 1);
    x = G->binary(g, USI_BIN_ADD, x, pos);

    G->push_scope(g, "blocks");
    for (int32_t i = 0; i < a->depth; i++) {
        double dpr = net->opt.drop_path_rate * i / (a->depth > 1 ? a->depth - 1 : 1);
        bb_push_index(c, i);
        x = vit_block(c, a, x, dpr);
        G->pop_scope(g);
    }
    G->pop_scope(g);

    /* the final norm acts per token, so only the class token needs it */
    x = G->flatten(g, G->slice(g, x, 1, 0, 1, 1), 1, 2);
    x = bb_layer_norm(c, x, "norm", -1, BB_LN_EPS);
    if (net->opt.drop_rate > 0.0) x = G->dropout(g, x, net->opt.drop_rate);
    usi_init head_w = bb_trunc02(), zeros = usi_init_zeros();
    return bb_linear(c, x, "head", net->opt.num_classes, &head_w, &zeros);
}

static const usi_param_desc vit_params[] = {BB_TOKEN_PARAMS};
#define VIT_N_PARAMS (sizeof vit_params / sizeof vit_params[0])

static usi_error *vit_create(const vit_arch *arch, const usi_params *p, void **out)
{
    vit *net = usi_host->alloc(sizeof *net, 0);
    if (!net) return usi_host->error_new(USI_ERR_NOMEM, "%s: out of memory", arch->name);
    net->arch = arch;
    usi_error *e = bb_read_options(usi_host, p, &net->opt);
    if (!e) e = bb_read_patch(usi_host, p, &net->opt, 16, &net->patch);
    if (e) {
        usi_host->free(net);
        return e;
    }
    *out = net;
    return NULL;
}

static usi_error *create_deit_tiny(const usi_params *p, void **out)
{
    return vit_create(&arch_deit_tiny, p, out);
}
static usi_error *create_deit_small(const usi_params *p, void **out)
{
    return vit_create(&arch_deit_small, p, out);
}
static usi_error *create_vit_small(const usi_params *p, void **out)
{
    return vit_create(&arch_vit_small, p, out);
}
static usi_error *create_vit_base(const usi_params *p, void **out)
{
    return vit_create(&arch_vit_base, p, out);
}

static void vit_destroy(void *inst) { usi_host->free(inst); }

static const usi_backbone_ops vit_ops = {sizeof(usi_backbone_ops), vit_build};

#define VIT_COMPONENT(var, nm, doc, create)                                      \
    static const usi_component var = {                                           \
        sizeof(usi_component), USI_KIND_BACKBONE, 0, nm, "1.0.0", doc,           \
        vit_params, VIT_N_PARAMS, create, vit_destroy, &vit_ops,                 \
    }

VIT_COMPONENT(comp_deit_tiny, "deit_tiny_patch16_224",
              "DeiT-Tiny/16 (timm deit_tiny_patch16_224, 5.7M params at 1000 classes)",
              create_deit_tiny);
VIT_COMPONENT(comp_deit_small, "deit_small_patch16_224",
              "DeiT-Small/16 (timm deit_small_patch16_224, 22.1M params at 1000 classes)",
              create_deit_small);
VIT_COMPONENT(comp_vit_small, "vit_small_patch16_224",
              "ViT-Small/16 (timm vit_small_patch16_224, 22.1M params at 1000 classes)",
              create_vit_small);
VIT_COMPONENT(comp_vit_base, "vit_base_patch16_224",
              "ViT-Base/16 (timm vit_base_patch16_224, 86.6M params at 1000 classes)",
              create_vit_base);

USI_DEFINE_PLUGIN("usi_vit", "USI", "Apache-2.0", "1.0.0", &comp_deit_tiny, &comp_deit_small, &comp_vit_small, &comp_vit_base);
