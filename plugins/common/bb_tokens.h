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

/* Checks that the host's table has the ops in `needed` beyond those
 * bb_ctx_init checks; logs the first missing one. */
static inline int bb_require_ops(const bb_ctx *c, const bb_op_slot *needed, size_t n,
                                 const char *who)
{
    for (size_t i = 0; i < n; i++) {
        const bb_op_slot *s = &needed[i];
        void *fn = NULL;
        if (c->api->struct_size >= s->offset + s->size)
            fn = *(void *const *)((const char *)c->api + s->offset);
        if (!fn) {
            c->host->log(USI_LOG_ERROR, "%s: the host's graph builder lacks the '%s' op", who,
                         s->name);
            return -1;
        }
    }
    return 0;
}

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

#endif
