/*
 * MLP-Mixer S, B and L as timm builds them (timm.models.mlp_mixer): a
 * 16x16 or 32x32 patch embedding ("stem.proj"), blocks of a token-mixing
 * MLP (across the patches, hidden width embed_dim / 2) and a channel MLP
 * (4x), each after a LayerNorm (eps 1e-6) and added back through
 * stochastic depth, then a LayerNorm, the mean over tokens, dropout and a
 * Linear head. Every block gets the same drop_path_rate, twice, as in
 * timm. Names, shapes, order and initialisation are timm's: the patch conv
 * lecun_normal (truncated at 2 sigma, std sqrt(1/fan_in)/0.8796), block
 * Linears xavier_uniform with biases normal(1e-6), the head all zeros,
 * layer norms 1 and 0.
 *
 * The token-mixing MLP is sized from the patch count, so the input must be
 * img_size. Small inputs: the small stem (stem = "small", or "auto" with
 * img_size <= 64) uses 4x4 patches whatever the model's own patch, so 28 px
 * gives 49 tokens and 32 px 64 (timm's 16x16 patch leaves 1 and 4, its
 * 32x32 patch none and 1); patch_size sets any other side.
 */
#include <math.h>
#include <usi/plugin.h>

#include "../common/bb_tokens.h"

USI_DECLARE_HOST; /* usi_host: kept by usi_plugin_entry (USI_DEFINE_PLUGIN below) */

typedef struct mixer_arch {
    const char *name;
    int64_t dim;
    int32_t blocks;
    int32_t patch; /* timm's patch side */
} mixer_arch;

typedef struct mixer {
    const mixer_arch *arch;
    bb_options opt;
    int32_t patch;
} mixer;

static usi_init xavier_uniform(void)
{
    usi_init i = {sizeof(usi_init), USI_INIT_XAVIER_UNIFORM, 0, 0, 0, 0, 0, 1.0};
    return i;
}

/* One block at blocks.<i>, scoped by the caller; tokens are [N, T, D]. */
static usi_tensor *mixer_block(const bb_ctx *c, usi_tensor *x, double dpr)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    static const int32_t swap[3] = {0, 2, 1};
    int64_t dim = G->dim(x, 2);
    usi_init w = xavier_uniform(), b = usi_init_normal(0.0, 1e-6);

    /* token mixing: the MLP runs along the patches of each channel */
    usi_tensor *y = bb_layer_norm(c, x, "norm1", -1, BB_LN_EPS);
    y = G->permute(c->g, y, swap);
    y = bb_mlp(c, y, "mlp_tokens", dim / 2, USI_ACT_GELU, &w, &b);
    y = G->permute(c->g, y, swap);
    x = G->binary(c->g, USI_BIN_ADD, x, bb_drop_path(c, y, dpr));

    y = bb_layer_norm(c, x, "norm2", -1, BB_LN_EPS);
    y = bb_mlp(c, y, "mlp_channels", 4 * dim, USI_ACT_GELU, &w, &b);
    return G->binary(c->g, USI_BIN_ADD, x, bb_drop_path(c, y, dpr));
}

static const bb_op_slot mixer_ops_needed[] = {
    BB_OP(layer_norm), BB_OP(permute),
};

static usi_tensor *mixer_build(void *inst, usi_graph *g, usi_tensor *input)
{
    const mixer *net = inst;
    const mixer_arch *a = net->arch;
    bb_ctx ctx, *c = &ctx;
    if (bb_ctx_init(c, usi_host, g, input, a->name)) return NULL;
    if (bb_require_ops(c, mixer_ops_needed, sizeof mixer_ops_needed / sizeof mixer_ops_needed[0],
                       a->name))
        return NULL;
    if (!bb_token_grid(c, input, &net->opt, net->patch, a->name)) return NULL;
    const usi_graph_api *G = c->api;

    /* lecun_normal: trunc_normal_tf_ cuts at 2 sigma; 0.8796 is the std of a
     * standard normal cut there */
    double fan_in = (double)net->opt.in_chans * net->patch * net->patch;
    double std = sqrt(1.0 / fan_in) / .87962566103423978;
    usi_init pw = usi_init_trunc_normal(std, -2 * std, 2 * std), zeros = usi_init_zeros();
    usi_tensor *x = bb_patch_embed(c, input, "stem", a->dim, net->patch, &pw, &zeros);

    G->push_scope(g, "blocks");
    for (int32_t i = 0; i < a->blocks; i++) {
        bb_push_index(c, i);
        x = mixer_block(c, x, net->opt.drop_path_rate);
        G->pop_scope(g);
    }
    G->pop_scope(g);

    static const int32_t tokens_axis[1] = {1};
    x = bb_layer_norm(c, x, "norm", -1, BB_LN_EPS);
    x = G->reduce(g, USI_REDUCE_MEAN, x, 1, tokens_axis, 0);
    if (net->opt.drop_rate > 0.0) x = G->dropout(g, x, net->opt.drop_rate);
    return bb_linear(c, x, "head", net->opt.num_classes, &zeros, &zeros);
}

static const usi_param_desc mixer_params[] = {BB_TOKEN_PARAMS};
#define MIXER_N_PARAMS (sizeof mixer_params / sizeof mixer_params[0])

static usi_error *mixer_create(const mixer_arch *arch, const usi_params *p, void **out)
{
    mixer *net = usi_host->alloc(sizeof *net, 0);
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

static void mixer_destroy(void *inst) { usi_host->free(inst); }

static const usi_backbone_ops mixer_ops = {sizeof(usi_backbone_ops), mixer_build};

/* One model: its arch, a create function bound to it and its component,
 * documented as "<title> (timm <name>, <params> params at 1000 classes)". */
#define MIXER_MODEL(id, nm, title, params, dim, blocks, patch)                        \
    static const mixer_arch arch_##id = {nm, dim, blocks, patch};                    \
    static usi_error *create_##id(const usi_params *p, void **out)                   \
    {                                                                                \
        return mixer_create(&arch_##id, p, out);                                     \
    }                                                                                \
    static const usi_component comp_##id = {                                         \
        sizeof(usi_component), USI_KIND_BACKBONE, 0, nm, "1.0.0",                    \
        title " (timm " nm ", " params " params at 1000 classes)",                   \
        mixer_params, MIXER_N_PARAMS, create_##id, mixer_destroy, &mixer_ops,        \
    }

/* id, timm name, title, params; dim, blocks, patch side */
MIXER_MODEL(s16, "mixer_s16_224", "MLP-Mixer S/16", "18.5M",  512,  8,  16);
MIXER_MODEL(s32, "mixer_s32_224", "MLP-Mixer S/32", "19.1M",  512,  8,  32);
MIXER_MODEL(b16, "mixer_b16_224", "MLP-Mixer B/16", "59.9M",  768,  12, 16);
MIXER_MODEL(b32, "mixer_b32_224", "MLP-Mixer B/32", "60.3M",  768,  12, 32);
MIXER_MODEL(l16, "mixer_l16_224", "MLP-Mixer L/16", "208.2M", 1024, 24, 16);

USI_DEFINE_PLUGIN("usi_mixer", "USI", "Apache-2.0", "1.0.0", &comp_s16, &comp_s32, &comp_b16,
                  &comp_b32, &comp_l16);
