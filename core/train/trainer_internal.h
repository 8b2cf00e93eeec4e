/* The trainer's state, shared by its setup (trainer.c) and its loop
 * (loop.c). Not for use outside core/train. */
#ifndef USI_TRAIN_TRAINER_INTERNAL_H
#define USI_TRAIN_TRAINER_INTERNAL_H

#include <stdio.h>

#include "data/loader.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "train/teacher.h"
#include "train/trainer.h"

struct usi_trainer {
    const usi_config *cfg;
    uint64_t seed;
    int32_t batch, side, classes;
    float mean[3], std[3];
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
    float *teacher_logits;
    /* optimizer and EMA state, one entry per parameter / buffer of gs */
    int32_t n_params, n_buffers;
    float **state[2];
    int *decays;
    float **ema_p, **ema_b;
    usi_optim_hp hp;
    usi_schedule sched;
    double clip, ema_decay;
    int ema_on, ema_warmup;
    int64_t step, epoch, batch_in_epoch, steps_per_epoch, epochs_total;
    double best_top1;
    char out_dir[2048];
    FILE *metrics;
};

#endif
