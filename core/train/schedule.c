#include "train/schedule.h"

#include <math.h>

double usi_schedule_lr(const usi_schedule *s, int64_t step)
{
    if (step < s->warmup_steps)
        return s->warmup_lr + (s->lr - s->warmup_lr) * (double)step / (double)s->warmup_steps;
    if (s->kind == USI_SCHED_CONSTANT) return s->lr;
    if (step >= s->cosine_steps) return s->min_lr;
    double t = (double)step / (double)s->cosine_steps;
    return s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(M_PI * t));
}
