/* Parameter initialisers, as torch.nn.init / timm define them. Each tensor
 * draws from its own stream keyed by (graph seed, hash of its name), so a
 * parameter's initial value does not depend on what was recorded before. */
#include <math.h>
#include <string.h>

#include "graph/graph_internal.h"
#include "util/rng.h"

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static void fans(int32_t ndim, const int64_t *shape, double *fan_in,
                 double *fan_out)
{
    double field = 1;
    for (int32_t i = 2; i < ndim; i++) field *= (double)shape[i];
    if (ndim >= 2) {
        *fan_in = (double)shape[1] * field;
        *fan_out = (double)shape[0] * field;
    } else {
        *fan_in = *fan_out = ndim == 1 ? (double)shape[0] : 1.0;
    }
}

static double trunc_normal(usi_rng *r, double mean, double std, double lo,
                           double hi)
{
    /* Rejection keeps the exact truncated distribution; fall back to the
     * clamp when the window is so far out that rejection would spin. */
    for (int tries = 0; tries < 1000; tries++) {
        double v = mean + std * usi_rng_normal(r);
        if (v >= lo && v <= hi) return v;
    }
    double v = mean;
    return v < lo ? lo : v > hi ? hi : v;
}

void usi_init_fill(float *data, int32_t ndim, const int64_t *shape,
                   const usi_init *init, uint64_t seed, const char *name)
{
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++) n *= shape[i];
    if (!init || init->kind == USI_INIT_ZEROS) {
        memset(data, 0, (size_t)n * sizeof(float));
        return;
    }
    usi_rng r;
    usi_rng_seed(&r, seed, name_hash(name), 0x696e6974, 0);
    double fan_in, fan_out;
    fans(ndim, shape, &fan_in, &fan_out);
    double fan = init->fan == USI_FAN_OUT ? fan_out : fan_in;
    /* gain 0 means "the usual one": sqrt(2) (relu) for kaiming, 1 for xavier. */
    double gain = init->gain;
    if (gain == 0)
        gain = init->kind == USI_INIT_XAVIER_UNIFORM ? 1.0 : sqrt(2.0);
    double bound = 0;
    switch (init->kind) {
    case USI_INIT_KAIMING_UNIFORM: bound = gain * sqrt(3.0 / fan); break;
    case USI_INIT_XAVIER_UNIFORM: bound = gain * sqrt(6.0 / (fan_in + fan_out)); break;
    default: break;
    }
    for (int64_t i = 0; i < n; i++) {
        double v;
        switch (init->kind) {
        case USI_INIT_ONES: v = 1.0; break;
        case USI_INIT_CONSTANT: v = init->value; break;
        case USI_INIT_UNIFORM:
            v = init->lo + (init->hi - init->lo) * usi_rng_uniform(&r);
            break;
        case USI_INIT_NORMAL: v = init->value + init->std * usi_rng_normal(&r); break;
        case USI_INIT_TRUNC_NORMAL:
            v = trunc_normal(&r, init->value, init->std, init->lo, init->hi);
            break;
        case USI_INIT_KAIMING_NORMAL: v = gain / sqrt(fan) * usi_rng_normal(&r); break;
        case USI_INIT_KAIMING_UNIFORM:
        case USI_INIT_XAVIER_UNIFORM:
            v = bound * (2.0 * usi_rng_uniform(&r) - 1.0);
            break;
        default: v = 0; break;
        }
        data[i] = (float)v;
    }
}
