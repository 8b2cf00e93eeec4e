#include "train/optim.h"

#include "util/strutil.h"

int usi_optim_state_count(int kind) { return kind == USI_OPT_SGD ? 1 : 2; }

int usi_param_decays(const char *name, int ndim)
{
    return ndim >= 2 && !usi_ends_with(name, ".bias");
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
