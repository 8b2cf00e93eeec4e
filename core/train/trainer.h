/* The USI training loop: loader -> (teacher) -> student forward -> CE on the
 * mixed targets + alpha * T^2 * KL(teacher || student) -> backward -> clip ->
 * optimizer -> EMA -> LR step, every iteration; each epoch, evaluate raw and
 * EMA weights, keep the better, and write the checkpoint atomically. */
#ifndef USI_TRAIN_TRAINER_H
#define USI_TRAIN_TRAINER_H

#include <signal.h>
#include <usi/plugin.h>

#include "config/config.h"

typedef struct usi_trainer usi_trainer;

/* Set by SIGINT/SIGTERM (and SIGHUP, unless ignored at start) handlers: the loop writes a checkpoint at the next
 * step boundary and returns. */
extern volatile sig_atomic_t usi_stop_requested;

/* Install those handlers, with their signals blocked in the calling
 * thread and every thread it starts later, and taken by a thread of their
 * own: a signal handled on a thread inside a oneDNN JIT gemm corrupts the
 * heap (see stop.c). Call before starting any computing thread; _end
 * removes that thread and restores the calling thread's mask. */
void usi_stop_signals_begin(void);
void usi_stop_signals_end(void);

/* c must be resolved and outlive the trainer. Opens the data, builds the
 * graphs and the teacher, and prints the teacher's accuracy. */
usi_error *usi_trainer_new(const usi_config *c, const usi_registry *r, usi_trainer **out);
void usi_trainer_free(usi_trainer *t);
/* Continue the run saved in a checkpoint written by this trainer. */
usi_error *usi_trainer_resume(usi_trainer *t, const char *checkpoint);
/* Train to the end of the schedule (or until a stop is requested: then
 * *interrupted is set and a checkpoint has been written). */
usi_error *usi_trainer_run(usi_trainer *t, int *interrupted);
/* 1 when OUTPUT_DIR/last.safetensors is this run's: written by it, or the
 * checkpoint it resumed from in that folder (a failed run continues from
 * it), 0 when it may be an earlier run's or there is none. */
int usi_trainer_has_checkpoint(const usi_trainer *t);

typedef struct usi_eval_result {
    double top1, top5;       /* percent */
    double loss;             /* mean cross-entropy on the true labels */
    int64_t samples;
} usi_eval_result;

/* Evaluate a checkpoint or weights file (prefix "" = the raw weights,
 * "ema/" = the EMA) on the config's val folder. */
usi_error *usi_evaluate_file(const usi_config *c, const usi_registry *r, const char *path,
                             const char *prefix,
                             usi_eval_result *out);

#endif
