/* Learning-rate schedule, evaluated every iteration (not once per epoch):
 * linear warm-up from warmup_lr to lr over warmup_steps, then a cosine from
 * lr to min_lr that ends at cosine_steps (counted from step 0, warm-up
 * included, as timm's scheduler without warmup_prefix), then min_lr for the
 * cool-down. "constant" keeps lr after the warm-up. */
#ifndef USI_TRAIN_SCHEDULE_H
#define USI_TRAIN_SCHEDULE_H

#include <stdint.h>

enum { USI_SCHED_COSINE = 0, USI_SCHED_CONSTANT = 1 };

typedef struct usi_schedule {
    int kind;
    double lr, warmup_lr, min_lr;
    int64_t warmup_steps, cosine_steps;
} usi_schedule;

double usi_schedule_lr(const usi_schedule *s, int64_t step);

#endif
