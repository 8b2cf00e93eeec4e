#include "train/optim.h"

#include <string.h>

#include "util/strutil.h"

int usi_optim_state_count(int kind) { return kind == USI_OPT_SGD ? 1 : 2; }

/* timm's optimizer factory also spares what a model lists in its
 * no_weight_decay(): the token models' class/distillation/register tokens
 * and position table (top-level names), and LeViT's attention-bias tables
 * (every name holding "attention_biases"). usi's backbones use timm's
 * names, so the names say it here as they do there. */
static int timm_no_decay(const char *name)
{
    static const char *const top[] = {"cls_token", "dist_token", "reg_token", "pos_embed"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (!strcmp(name, top[i])) return 1;
    return strstr(name, "attention_biases") != NULL;
}

int usi_param_decays(const char *name, int ndim)
{
    return ndim >= 2 && !usi_ends_with(name, ".bias") && !timm_no_decay(name);
}

double usi_scaled_lr(double lr, int64_t lr_batch, int64_t global_batch)
{
    return lr * (double)global_batch / (double)lr_batch;
}

/* As PyTorch's clip_grad_norm_: scale by max_norm / (norm + 1e-6). */
double usi_clip_factor(double norm, double max_norm)
{
    return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}
