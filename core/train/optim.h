/* Optimizer bookkeeping on the host. The updates themselves are device
 * kernels over the flat parameter block (usi_optim_hp and its semantics in
 * core/backend/optim_args.h, called through usi_dbuf_optim_step). */
#ifndef USI_TRAIN_OPTIM_H
#define USI_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "backend/optim_args.h"

/* Number of float state blocks: 2 (adamw, lamb), 1 (sgd). */
int usi_optim_state_count(int kind);

/* USI decays only weights of 2 or more dims: not biases, not norm scales,
 * and (as timm's no_weight_decay() lists) not position tables, class tokens
 * or LeViT's attention biases. */
int usi_param_decays(const char *name, int ndim);

/* lr given for lr_batch, scaled linearly to the real global batch. */
double usi_scaled_lr(double lr, int64_t lr_batch, int64_t global_batch);

/* The factor that brings a gradient of global L2 norm `norm` to at most
 * max_norm (1 when no clipping is needed or max_norm <= 0). */
double usi_clip_factor(double norm, double max_norm);

#endif
