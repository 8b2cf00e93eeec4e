/* Optimizer updates on one parameter tensor (plain float arrays), with the
 * semantics of PyTorch's AdamW and SGD and of the LAMB paper:
 *   adamw: w -= lr*wd*w; m,v moments with bias correction; w -= lr*mhat/(sqrt(vhat)+eps)
 *   sgd:   d = g + wd*w; buf = momentum*buf + d (buf = d at the first step);
 *          w -= lr*(nesterov ? d + momentum*buf : buf)
 *   lamb:  u = mhat/(sqrt(vhat)+eps) + wd*w; w -= lr * (|w|/|u|) * u
 * State arrays are zero-initialised by the caller and saved in checkpoints. */
#ifndef USI_TRAIN_OPTIM_H
#define USI_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

enum { USI_OPT_ADAMW = 0, USI_OPT_SGD = 1, USI_OPT_LAMB = 2 };

typedef struct usi_optim_hp {
    int kind;                 /* USI_OPT_* */
    double lr;                /* this step's learning rate */
    double weight_decay;      /* 0 for parameters that do not decay */
    double beta1, beta2, eps; /* adamw, lamb */
    double momentum;          /* sgd */
    int nesterov;             /* sgd */
} usi_optim_hp;

/* Number of float state arrays per parameter: 2 (adamw, lamb), 1 (sgd). */
int usi_optim_state_count(int kind);

/* One update. step counts from 1; state holds usi_optim_state_count arrays of n. */
void usi_optim_step(const usi_optim_hp *hp, int64_t step, float *w, const float *g,
                    float *const *state, size_t n);

/* USI decays only weights of 2 or more dims: not biases, not norm scales. */
int usi_param_decays(const char *name, int ndim);

/* lr given for lr_batch, scaled linearly to the real global batch. */
double usi_scaled_lr(double lr, int64_t lr_batch, int64_t global_batch);

/* Scale all gradients so their global L2 norm is at most max_norm (> 0);
 * returns the norm before clipping. */
double usi_clip_grad_norm(float *const *grads, const size_t *sizes, size_t count, double max_norm);

#endif
