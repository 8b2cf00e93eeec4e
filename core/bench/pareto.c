/* The Pareto front; O(n^2), for the few dozen backbones a bench compares. */
#include "bench/pareto.h"

#include <math.h>

static int plottable(double speed, double top1) { return speed > 0 && isfinite(speed) && isfinite(top1); }

size_t usi_pareto_front(const double *speed, const double *top1, size_t n, uint8_t *on_front)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        on_front[i] = 0;
        if (!plottable(speed[i], top1[i])) continue;
        int beaten = 0;
        for (size_t j = 0; j < n && !beaten; j++) {
            if (j == i || !plottable(speed[j], top1[j])) continue;
            beaten = speed[j] >= speed[i] && top1[j] >= top1[i] && (speed[j] > speed[i] || top1[j] > top1[i]);
        }
        on_front[i] = !beaten;
        count += !beaten;
    }
    return count;
}
