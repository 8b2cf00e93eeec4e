#include "train/ema.h"

double usi_ema_decay(double target, int warmup, int64_t updates)
{
    if (!warmup) return target;
    double ramp = (1.0 + (double)updates) / (10.0 + (double)updates);
    return ramp < target ? ramp : target;
}

