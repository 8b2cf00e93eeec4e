/*
 * Helpers for the backbones built of layer norms and MLPs (ConvNeXt, ViT,
 * MLP-Mixer), on top of bb_layers.h. Header-only for the same reason: each
 * plugin keeps its own static copy and exports nothing else.
 */
#ifndef USI_PLUGINS_BB_TOKENS_H
#define USI_PLUGINS_BB_TOKENS_H

#include "bb_layers.h"

/* timm's LayerNorm / LayerNorm2d default eps in these families. */
#define BB_LN_EPS 1e-6

/* timm's trunc_normal_(std=.02): cut at +-2 absolute, i.e. never. */
static inline usi_init bb_trunc02(void)
{
    return usi_init_trunc_normal(0.02, -2.0, 2.0);
}

/* LayerNorm module "<scope>.weight" (ones), "<scope>.bias" (zeros) over
 * `axis`: -1 for [..., C] tokens, 1 for NCHW (timm's LayerNorm2d). */
static inline usi_tensor *bb_layer_norm(const bb_ctx *c, usi_tensor *x, const char *scope,
                                        int32_t axis, double eps)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t shape[1] = {G->dim(x, axis)};
    usi_init ones = usi_init_ones(), zeros = usi_init_zeros();
    G->push_scope(c->g, scope);
    usi_tensor *w = G->param(c->g, "weight", 1, shape, &ones);
    usi_tensor *b = G->param(c->g, "bias", 1, shape, &zeros);
    G->pop_scope(c->g);
    return G->layer_norm(c->g, x, w, b, axis, eps);
}

/* timm's Mlp "<scope>": fc1 -> act -> fc2 over the last dim (Linear), with
 * the given initialisers for both layers' weights and biases. */
static inline usi_tensor *bb_mlp(const bb_ctx *c, usi_tensor *x, const char *scope,
                                 int64_t hidden, int32_t act, const usi_init *w_init,
                                 const usi_init *b_init)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    int64_t out = G->dim(x, -1);
    G->push_scope(c->g, scope);
    x = bb_linear(c, x, "fc1", hidden, w_init, b_init);
    x = G->activation(c->g, x, act, 0.0);
    x = bb_linear(c, x, "fc2", out, w_init, b_init);
    G->pop_scope(c->g);
    return x;
}

/* [N, C, H, W] <-> [N, H, W, C]. */
static inline usi_tensor *bb_to_nhwc(const bb_ctx *c, usi_tensor *x)
{
    static const int32_t perm[4] = {0, 2, 3, 1};
    return c->api->permute(c->g, x, perm);
}
static inline usi_tensor *bb_to_nchw(const bb_ctx *c, usi_tensor *x)
{
    static const int32_t perm[4] = {0, 3, 1, 2};
    return c->api->permute(c->g, x, perm);
}

/* ------------------------------------------------------------------------ */
/* Patch-token models (ViT, MLP-Mixer)                                      */
/* ------------------------------------------------------------------------ */

/* The small stem's patch side: 28 px gives 7x7 tokens, 32 px 8x8. */
#define BB_SMALL_PATCH 4

/* The common options with the docs of a model whose tables are sized from
 * img_size, plus patch_size. */
#define BB_TOKEN_PARAMS \
    USI_PARAM_INT("num_classes", 1000, 1, 1e6, "number of output classes (size of the classifier)"), \
    USI_PARAM_INT("img_size", 224, 8, 4096, \
                  "input side; sizes the token tables (the input must be this size) and picks the patch " \
                  "when stem = \"auto\""), \
    USI_PARAM_INT("in_chans", 3, 1, 64, "input image channels"), \
    USI_PARAM_FLOAT("drop_rate", 0.0, 0, 0.99, "dropout before the classifier (timm's drop_rate)"), \
    USI_PARAM_FLOAT("drop_path_rate", 0.0, 0, 0.99, "stochastic depth (timm's rule for the family)"), \
    USI_PARAM_STRING("stem", "auto", "auto|timm|small", \
                     "timm: the model's own patch (16 or 32); small: 4x4 patches for 28-64 px inputs; " \
                     "auto: small when img_size <= 64"), \
    USI_PARAM_INT("patch_size", 0, 0, 64, "patch side; 0: the stem's choice"),

/* The resolved patch side: patch_size, else 4 for the small stem, else the
 * model's own. */
static inline usi_error *bb_read_patch(const usi_host_api *host, const usi_params *p,
                                       const bb_options *o, int32_t own, int32_t *patch)
{
    int64_t v = 0;
    usi_error *e = host->param_int(p, "patch_size", &v);
    if (e) return e;
    *patch = v > 0 ? (int32_t)v : o->small_stem ? BB_SMALL_PATCH : own;
    return NULL;
}

/* The input must be img_size square (timm's strict_img_size), since the
 * token tables were sized from it; the grid side, or 0 after logging why. */
static inline int64_t bb_token_grid(const bb_ctx *c, usi_tensor *input, const bb_options *o,
                                    int32_t patch, const char *who)
{
    const usi_graph_api *G = c->api;
    if (G->dim(input, 1) != o->in_chans) {
        bb_fail(c, "%s: input has %lld channels, in_chans is %lld", who,
                (long long)G->dim(input, 1), (long long)o->in_chans);
        return 0;
    }
    if (G->dim(input, 2) != o->img_size || G->dim(input, 3) != o->img_size) {
        bb_fail(c, "%s: input is %lldx%lld but img_size is %lld; the token tables are sized from img_size, "
                "so set it to the input side",
                who, (long long)G->dim(input, 2), (long long)G->dim(input, 3), (long long)o->img_size);
        return 0;
    }
    if (o->img_size < patch) {
        bb_fail(c, "%s: img_size %lld is smaller than a %d px patch; raise img_size or use stem = \"small\"", who,
                (long long)o->img_size, patch);
        return 0;
    }
    return o->img_size / patch;
}

/* PatchEmbed "<scope>.proj": a patch x patch conv with stride patch, then
 * [N, C, gh, gw] -> [N, gh*gw, C] tokens. */
static inline usi_tensor *bb_patch_embed(const bb_ctx *c, usi_tensor *x, const char *scope,
                                         int64_t dim, int32_t patch, const usi_init *w_init,
                                         const usi_init *b_init)
{
    if (!x) return NULL;
    const usi_graph_api *G = c->api;
    static const int32_t to_tokens[3] = {0, 2, 1};
    int64_t wshape[4] = {dim, G->dim(x, 1), patch, patch}, bshape[1] = {dim};
    G->push_scope(c->g, scope);
    G->push_scope(c->g, "proj");
    usi_tensor *w = G->param(c->g, "weight", 4, wshape, w_init);
    usi_tensor *b = G->param(c->g, "bias", 1, bshape, b_init);
    G->pop_scope(c->g);
    G->pop_scope(c->g);
    usi_conv2d_desc d = usi_conv2d(patch, 0, 1, 1);
    x = G->conv2d(c->g, x, w, b, &d);
    x = G->flatten(c->g, x, 2, 3);
    return G->permute(c->g, x, to_tokens);
}

#endif
