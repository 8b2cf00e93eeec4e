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
#include "train/setup.h"
#include "train/teacher.h"
#include "train/trainer.h"

/* The gradient reduction hook: called after backward with the flat gradient
 * block of the trainable parameters (n floats); identity on one process,
 * the sum over ranks in distributed runs (core/dist/reducer.h: buckets
 * already started during backward). The step then divides by the number of
 * ranks that trained, which it learns with the loss. */
typedef usi_error *(*usi_grad_reduce_fn)(void *ctx, usi_dbuf *grads, size_t n);

/* What one step did, over all ranks. */
typedef struct usi_step_out {
    double loss;        /* mean over the batches trained                   */
    double lr;
    int32_t trained;    /* batches trained over all ranks; 0: step left out */
    int32_t stop;       /* some rank was asked to stop (all stop here)     */
} usi_step_out;

struct usi_trainer {
    const usi_config *cfg;
    uint64_t seed;
    int32_t batch, side, classes;
    float mean[3], std[3];
    usi_student_input si; /* what the backbone reads of the images */
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
    struct usi_reducer *reducer;        /* distributed runs, else NULL     */
    /* dist.sync_bn on several ranks: the training graph's batch norms sum
     * their statistics over ranks through it (backend/collective.h). */
    struct usi_collective *coll;
    /* This process's place in the job; with dist.simulate_ranks = N > 1 it
     * plays ranks 0..N-1 in turn, through sim_loaders (rank r's shard, r >= 1;
     * rank 0's is train_loader), averaging their gradients in sim_grads and
     * keeping rank 0's batch-norm statistics (sim_buffers), as ranks do. */
    int32_t rank, world, sim;
    usi_loader **sim_loaders;
    /* Each loader's input path (train/input.h): rank 0's, then the
     * simulated ranks'. */
    struct usi_input **inputs, *val_input;
    usi_dbuf *sim_grads, *sim_buffers;
    double progress_interval;
    int64_t metrics_every;
    usi_optim_hp hp;
    usi_schedule sched;
    double clip, ema_decay, weight_decay, grad_norm;
    int ema_on, ema_warmup;
    int timm_network;                   /* the backbone is timm's at its defaults */
    int64_t step, epoch, batch_in_epoch, steps_per_epoch, epochs_total;
    double best_top1;
    char out_dir[2048];
    FILE *metrics;        /* rank 0, from usi_trainer_open_metrics         */
    int lock_fd;          /* rank 0: OUTPUT_DIR/.usi-lock, held; else -1   */
    int32_t resumed;      /* usi_trainer_resume loaded a checkpoint         */
    int32_t own_last;     /* OUTPUT_DIR/last.safetensors is this run's      */
};

/* One optimisation step (step.c) on this process's batches: one, or one
 * per simulated rank; NULL for a batch left out (short after bad files).
 * want_stop: this process was asked to stop. Every rank calls it every
 * step, whatever its batches, since the step reduces over ranks. */
usi_error *usi_trainer_step(usi_trainer *t, const usi_float_batch *const *mb, int32_t n, int32_t want_stop,
                            usi_step_out *out);

/* Rank 0's whole state (weights, buffers, EMA, optimizer, counters) to
 * every rank: at the start of a run, fresh or resumed (trainer.c). */
usi_error *usi_trainer_sync_state(usi_trainer *t);
/* Rank 0's buffers (batch-norm statistics) and their EMA to every rank:
 * before evaluating, so every rank evaluates what rank 0 saves. */
usi_error *usi_trainer_sync_buffers(usi_trainer *t);

/* Evaluation over this rank's shard of val, counts summed over ranks, so
 * the figures are the whole set's (eval.c). ema: the EMA weights. */
usi_error *usi_trainer_evaluate(usi_trainer *t, int ema, usi_eval_result *out);
usi_error *usi_trainer_teacher_accuracy(usi_trainer *t, usi_eval_result *out);
/* Put the EMA weights (ema = 1) or the raw ones into the inference graph. */
usi_error *usi_trainer_load_eval_weights(usi_trainer *t, int ema);

/* Checkpoints (checkpoint.c): the whole training state, atomically; and the
 * inference graph's weights under timm names. */
usi_error *usi_trainer_save_checkpoint(usi_trainer *t, const char *name, int64_t epoch, int64_t batch);
usi_error *usi_trainer_save_weights(usi_trainer *t, const char *name);

/* Rank 0's metrics.jsonl: appended to by a resumed run, started again
 * by a new one. Called as the run starts. */
usi_error *usi_trainer_open_metrics(usi_trainer *t);

#endif
