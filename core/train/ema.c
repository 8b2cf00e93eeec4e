#include "train/ema.h"

double usi_ema_decay(double target, int warmup, int64_t updates)
{
    if (!warmup) return target;
    double ramp = (1.0 + (double)updates) / (10.0 + (double)updates);
    return ramp < target ? ramp : target;
}

void usi_ema_update(float *ema, const float *w, size_t n, double decay)
{
    float d = (float)decay, one_minus = (float)(1.0 - decay);
    for (size_t i = 0; i < n; i++) ema[i] = d * ema[i] + one_minus * w[i];
}
