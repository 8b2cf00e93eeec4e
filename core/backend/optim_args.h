/* The optimizer step's arguments, shared by the training loop (core/train)
 * and the backends' kernels. */
#ifndef USI_CORE_OPTIM_ARGS_H
#define USI_CORE_OPTIM_ARGS_H

#include <stddef.h>
#include <stdint.h>

enum { USI_OPT_ADAMW = 0, USI_OPT_SGD = 1, USI_OPT_LAMB = 2 };

/* One optimizer update's hyper-parameters, with the semantics of PyTorch's
 * AdamW and SGD and of the LAMB paper:
 *   adamw: w -= lr*wd*w; m,v moments with bias correction; w -= lr*mhat/(sqrt(vhat)+eps)
 *   sgd:   d = g + wd*w; buf = momentum*buf + d (buf = d at the first step);
 *          w -= lr*(nesterov ? d + momentum*buf : buf)
 *   lamb:  u = mhat/(sqrt(vhat)+eps) + wd*w; w -= lr * (|w|/|u|) * u, per tensor */
typedef struct usi_optim_hp {
    int kind;                 /* USI_OPT_* */
    double lr;                /* this step's learning rate */
    double weight_decay;      /* per segment, see usi_optim_seg */
    double beta1, beta2, eps; /* adamw, lamb */
    double momentum;          /* sgd */
    int nesterov;             /* sgd */
} usi_optim_hp;

/* A parameter tensor inside the flat blocks: elements [off, off + n). */
typedef struct usi_optim_seg {
    size_t off, n;
    int32_t decays;           /* 1: weight decay applies */
} usi_optim_seg;

/* One optimizer step over flat float blocks: w, g, and state s0 (and s1 for
 * adamw/lamb), all indexed by the same segments. step counts from 1. */
typedef struct usi_optim_args {
    usi_optim_hp hp;
    int64_t step;
    float *w;
    const float *g;
    float *s0, *s1;
    const usi_optim_seg *segs;   /* host array */
    int32_t n_segs;
} usi_optim_args;

#endif
