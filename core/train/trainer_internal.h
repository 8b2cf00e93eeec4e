/* The trainer's state, shared by its setup (trainer.c), its step (step.c),
 * its checkpoints (checkpoint.c) and its loop (loop.c). Not for use outside
 * core/train. */
#ifndef USI_TRAIN_TRAINER_INTERNAL_H
#define USI_TRAIN_TRAINER_INTERNAL_H

#include <stdio.h>

#include "backend/device.h"
#include "data/loader.h"
#include "graph/graph.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "train/teacher.h"
#include "train/trainer.h"

/* The gradient reduction hook: called after backward with the flat gradient
 * block of the trainable parameters (n floats); identity on one process,
 * an all-reduce (mean) in distributed runs. */
typedef usi_error *(*usi_grad_reduce_fn)(void *ctx, usi_dbuf *grads, size_t n);

struct usi_trainer {
    const usi_config *cfg;
    uint64_t seed;
    int32_t batch, side, classes;
    float mean[3], std[3];
    usi_device *dev;
    usi_dataset *train_ds, *val_ds;
    usi_augchain *train_chain, *eval_chain;
    usi_loader *train_loader, *val_loader;
    const usi_component *bb;
    usi_params *bb_params;
    void *bb_inst;
    usi_graph *gs, *ge;                 /* training graph, inference graph */
    usi_tensor *xs, *targets, *teacher_in, *loss, *xe, *le;
    usi_teacher_rt *teacher;
    usi_params *teacher_params;
    float *logits_host;                 /* [batch, classes], evaluation   */
    /* Flat device state laid out like gs's blocks (usi_graph_blocks):
     * optimizer states over the trainable head of the parameter block, the
     * EMA over all parameters and over the float buffers. */
    usi_graph_blocks blocks;
    usi_dbuf *opt_state[2];
    usi_dbuf *ema_params, *ema_buffers;
    usi_optim_seg *segs;
    int32_t n_segs;
    usi_grad_reduce_fn reduce;
    void *reduce_ctx;
    usi_optim_hp hp;
    usi_schedule sched;
    double clip, ema_decay, weight_decay, grad_norm;
    int ema_on, ema_warmup;
    int timm_network;                   /* the backbone is timm's at its defaults */
    int64_t step, epoch, batch_in_epoch, steps_per_epoch, epochs_total;
    double best_top1;
    char out_dir[2048];
    FILE *metrics;
};

/* One optimisation step on a full batch (step.c). */
usi_error *usi_trainer_step(usi_trainer *t, const usi_float_batch *fb, double *loss_out, double *lr_out);

/* Checkpoints (checkpoint.c): the whole training state, atomically; and the
 * inference graph's weights under timm names. */
usi_error *usi_trainer_save_checkpoint(usi_trainer *t, const char *name, int64_t epoch, int64_t batch);
usi_error *usi_trainer_save_weights(usi_trainer *t, const char *name);

#endif
