/* Optimizers, the LR schedule and the EMA against float64 references
 * written here from the published update rules. */
#include <math.h>
#include <stdio.h>

#include "check.h"
#include <stdlib.h>
#include <string.h>

#include "train/ema.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "util/rng.h"

#define N 37
#define STEPS 25

/* Reference: one tensor, float64, straight from the formulas. */
static void reference(const usi_optim_hp *hp, double *w, double (*grads)[N], double *m, double *v)
{
    for (int t = 1; t <= STEPS; t++) {
        const double *g = grads[t - 1];
        if (hp->kind == USI_OPT_ADAMW) {
            for (int i = 0; i < N; i++) {
                w[i] -= hp->lr * hp->weight_decay * w[i];
                m[i] = hp->beta1 * m[i] + (1 - hp->beta1) * g[i];
                v[i] = hp->beta2 * v[i] + (1 - hp->beta2) * g[i] * g[i];
                double mh = m[i] / (1 - pow(hp->beta1, t)), vh = v[i] / (1 - pow(hp->beta2, t));
                w[i] -= hp->lr * mh / (sqrt(vh) + hp->eps);
            }
        } else if (hp->kind == USI_OPT_SGD) {
            for (int i = 0; i < N; i++) {
                double d = g[i] + hp->weight_decay * w[i];
                m[i] = t == 1 ? d : hp->momentum * m[i] + d;
                w[i] -= hp->lr * (hp->nesterov ? d + hp->momentum * m[i] : m[i]);
            }
        } else {
            double u[N], wn = 0, un = 0;
            for (int i = 0; i < N; i++) {
                m[i] = hp->beta1 * m[i] + (1 - hp->beta1) * g[i];
                v[i] = hp->beta2 * v[i] + (1 - hp->beta2) * g[i] * g[i];
                double mh = m[i] / (1 - pow(hp->beta1, t)), vh = v[i] / (1 - pow(hp->beta2, t));
                u[i] = mh / (sqrt(vh) + hp->eps) + hp->weight_decay * w[i];
                wn += w[i] * w[i];
                un += u[i] * u[i];
            }
            double trust = sqrt(wn) / sqrt(un);
            for (int i = 0; i < N; i++) w[i] -= hp->lr * trust * u[i];
        }
    }
}

static void check_optimizer(const char *name, usi_optim_hp hp)
{
    usi_rng rng;
    usi_rng_seed(&rng, 7, (uint64_t)hp.kind, 0, 0);
    double wd[N], md[N] = {0}, vd[N] = {0}, g[STEPS][N];
    float w[N], m[N] = {0}, v[N] = {0}, gf[N];
    for (int i = 0; i < N; i++) wd[i] = w[i] = (float)usi_rng_normal(&rng);
    for (int t = 0; t < STEPS; t++)
        for (int i = 0; i < N; i++) g[t][i] = (float)(usi_rng_normal(&rng) * 0.1);
    reference(&hp, wd, g, md, vd);
    float *state[2] = {m, v};
    for (int t = 0; t < STEPS; t++) {
        for (int i = 0; i < N; i++) gf[i] = (float)g[t][i];
        usi_optim_step(&hp, t + 1, w, gf, state, N);
    }
    double worst = 0;
    int at = 0;
    for (int i = 0; i < N; i++) {
        double err = fabs(w[i] - wd[i]) / (1e-3 + fabs(wd[i]));
        if (err > worst) {
            worst = err;
            at = i;
        }
    }
    CHECK(worst < 1e-4, "%s: worst relative error %g at %d (%g vs %g)", name, worst, at, w[at], wd[at]);
}

static void test_optimizers(void)
{
    usi_optim_hp adamw = {USI_OPT_ADAMW, 2e-3, 2e-2, 0.9, 0.999, 1e-8, 0, 0};
    check_optimizer("adamw", adamw);
    adamw.weight_decay = 0;
    check_optimizer("adamw without decay", adamw);
    usi_optim_hp sgd = {USI_OPT_SGD, 0.1, 1e-4, 0, 0, 0, 0.9, 1};
    check_optimizer("sgd nesterov", sgd);
    sgd.nesterov = 0;
    check_optimizer("sgd", sgd);
    usi_optim_hp lamb = {USI_OPT_LAMB, 5e-3, 2e-2, 0.9, 0.999, 1e-6, 0, 0};
    check_optimizer("lamb", lamb);

    CHECK(usi_param_decays("layer1.0.conv1.weight", 4) && usi_param_decays("fc.weight", 2),
          "weights decay");
    CHECK(!usi_param_decays("fc.bias", 1) && !usi_param_decays("bn1.weight", 1) &&
              !usi_param_decays("blocks.0.attn.qkv.bias", 1),
          "biases and 1-D parameters do not decay");
    CHECK(fabs(usi_scaled_lr(2e-3, 1024, 256) - 5e-4) < 1e-15, "linear lr scaling");

    float a[3] = {3, 0, 0}, b[2] = {0, 4};
    float *grads[2] = {a, b};
    size_t sizes[2] = {3, 2};
    double norm = usi_clip_grad_norm(grads, sizes, 2, 1.0);
    double after = sqrt((double)a[0] * a[0] + (double)b[1] * b[1]);
    CHECK(fabs(norm - 5.0) < 1e-9 && fabs(after - 1.0) < 1e-5 && fabs(a[0] / b[1] - 0.75) < 1e-6,
          "clip: norm %g, after %g", norm, after);
}

static void test_schedule(void)
{
    /* 5 warm-up epochs of 100 steps, cosine over 300 epochs. */
    usi_schedule s = {USI_SCHED_COSINE, 2e-3, 1e-4, 1e-6, 500, 30000};
    CHECK(usi_schedule_lr(&s, 0) == 1e-4, "starts at warmup_lr: %g", usi_schedule_lr(&s, 0));
    CHECK(fabs(usi_schedule_lr(&s, 250) - (1e-4 + 0.5 * (2e-3 - 1e-4))) < 1e-12, "linear warm-up");
    /* Stepped per iteration: consecutive steps differ. */
    CHECK(usi_schedule_lr(&s, 251) > usi_schedule_lr(&s, 250), "warm-up is per step");
    CHECK(usi_schedule_lr(&s, 10001) < usi_schedule_lr(&s, 10000), "cosine is per step");
    double mid = usi_schedule_lr(&s, 15000);
    CHECK(fabs(mid - (1e-6 + 2e-3) / 2) < 1e-12, "half-way the cosine is the mean: %g", mid);
    double at_end_of_warmup = 1e-6 + 0.5 * (2e-3 - 1e-6) * (1 + cos(M_PI * 500 / 30000.0));
    CHECK(fabs(usi_schedule_lr(&s, 500) - at_end_of_warmup) < 1e-12, "cosine counts from step 0");
    CHECK(usi_schedule_lr(&s, 30000) == 1e-6 && usi_schedule_lr(&s, 31000) == 1e-6, "floor and cool-down");
    for (int64_t t = 0; t < 31000; t += 97)
        CHECK(usi_schedule_lr(&s, t) >= 1e-6 - 1e-18 && usi_schedule_lr(&s, t) <= 2e-3 + 1e-18,
              "lr out of bounds at %lld", (long long)t);
    usi_schedule c = {USI_SCHED_CONSTANT, 1e-3, 0, 0, 10, 100};
    CHECK(usi_schedule_lr(&c, 5) == 5e-4 && usi_schedule_lr(&c, 1000) == 1e-3, "constant");
}

static void test_ema(void)
{
    CHECK(usi_ema_decay(0.99996, 0, 0) == 0.99996, "no warm-up");
    CHECK(fabs(usi_ema_decay(0.99996, 1, 0) - 0.1) < 1e-15, "warm-up starts low");
    CHECK(fabs(usi_ema_decay(0.99996, 1, 90) - 91.0 / 100.0) < 1e-15, "warm-up ramp");
    CHECK(usi_ema_decay(0.99, 1, 1000000) == 0.99, "warm-up reaches the target");
    float ema[2] = {1, -1}, w[2] = {3, 5};
    usi_ema_update(ema, w, 2, 0.75);
    CHECK(fabs(ema[0] - 1.5) < 1e-6 && fabs(ema[1] - 0.5) < 1e-6, "ema update: %g %g", ema[0], ema[1]);
    /* With warm-up a short run's EMA tracks the weights; without, it does not. */
    float a = 0, b = 0;
    for (int64_t n = 0; n < 200; n++) {
        float target = 1;
        usi_ema_update(&a, &target, 1, usi_ema_decay(0.99996, 1, n));
        usi_ema_update(&b, &target, 1, usi_ema_decay(0.99996, 0, n));
    }
    CHECK(a > 0.9 && b < 0.01, "after 200 steps: with warm-up %g, without %g", a, b);
}

int main(void)
{
    test_optimizers();
    test_schedule();
    test_ema();
    return check_status("optimizers, schedule, ema");
}
