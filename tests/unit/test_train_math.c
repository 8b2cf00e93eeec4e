/* Optimizers, the LR schedule and the EMA against float64 references
 * written here from the published update rules. */
#include <math.h>
#include <stdio.h>

#include "check.h"
#include "device.h"
#include <stdlib.h>
#include <string.h>

#include "train/ema.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "util/rng.h"

#define N 37
#define STEPS 25

/* Elements [LO, N) form a second parameter tensor, one that does not decay. */
#define SPLIT 20

/* Reference: one tensor [lo, hi), float64, straight from the formulas. */
static void reference(usi_optim_hp hp_in, int lo, int hi, double *w, double (*grads)[N], double *m, double *v)
{
    const usi_optim_hp *hp = &hp_in;
    for (int t = 1; t <= STEPS; t++) {
        const double *g = grads[t - 1];
        if (hp->kind == USI_OPT_ADAMW) {
            for (int i = lo; i < hi; i++) {
                w[i] -= hp->lr * hp->weight_decay * w[i];
                m[i] = hp->beta1 * m[i] + (1 - hp->beta1) * g[i];
                v[i] = hp->beta2 * v[i] + (1 - hp->beta2) * g[i] * g[i];
                double mh = m[i] / (1 - pow(hp->beta1, t)), vh = v[i] / (1 - pow(hp->beta2, t));
                w[i] -= hp->lr * mh / (sqrt(vh) + hp->eps);
            }
        } else if (hp->kind == USI_OPT_SGD) {
            for (int i = lo; i < hi; i++) {
                double d = g[i] + hp->weight_decay * w[i];
                m[i] = t == 1 ? d : hp->momentum * m[i] + d;
                w[i] -= hp->lr * (hp->nesterov ? d + hp->momentum * m[i] : m[i]);
            }
        } else {
            double u[N], wn = 0, un = 0;
            for (int i = lo; i < hi; i++) {
                m[i] = hp->beta1 * m[i] + (1 - hp->beta1) * g[i];
                v[i] = hp->beta2 * v[i] + (1 - hp->beta2) * g[i] * g[i];
                double mh = m[i] / (1 - pow(hp->beta1, t)), vh = v[i] / (1 - pow(hp->beta2, t));
                u[i] = mh / (sqrt(vh) + hp->eps) + hp->weight_decay * w[i];
                wn += w[i] * w[i];
                un += u[i] * u[i];
            }
            double trust = sqrt(wn) / sqrt(un);
            for (int i = lo; i < hi; i++) w[i] -= hp->lr * trust * u[i];
        }
    }
}

static void check_optimizer(const char *name, usi_optim_hp hp)
{
    usi_rng rng;
    usi_rng_seed(&rng, 7, (uint64_t)hp.kind, 0, 0);
    double wd[N], md[N] = {0}, vd[N] = {0}, g[STEPS][N];
    float w[N], m[N] = {0}, gf[N];
    for (int i = 0; i < N; i++) wd[i] = w[i] = (float)usi_rng_normal(&rng);
    for (int t = 0; t < STEPS; t++)
        for (int i = 0; i < N; i++) g[t][i] = (float)(usi_rng_normal(&rng) * 0.1);
    usi_optim_hp no_decay = hp;
    no_decay.weight_decay = 0;
    reference(hp, 0, SPLIT, wd, g, md, vd);
    reference(no_decay, SPLIT, N, wd, g, md, vd);
    /* On the device: one call per step over both tensors of a flat block. */
    usi_device *dev = test_device();
    usi_dbuf *bw, *bg, *bm, *bv;
    CHECK_OK(usi_dbuf_new(dev, sizeof w, &bw));
    CHECK_OK(usi_dbuf_new(dev, sizeof w, &bg));
    CHECK_OK(usi_dbuf_new(dev, sizeof w, &bm));
    CHECK_OK(usi_dbuf_new(dev, sizeof w, &bv));
    CHECK_OK(usi_dbuf_write(bw, 0, w, sizeof w));
    usi_optim_seg segs[2] = {{0, SPLIT, 1}, {SPLIT, N - SPLIT, 0}};
    for (int t = 0; t < STEPS; t++) {
        for (int i = 0; i < N; i++) gf[i] = (float)g[t][i];
        CHECK_OK(usi_dbuf_write(bg, 0, gf, sizeof gf));
        CHECK_OK(usi_dbuf_optim_step(&hp, t + 1, bw, bg, bm, bv, segs, 2));
    }
    CHECK_OK(usi_dbuf_read(bw, 0, w, sizeof w));
    CHECK_OK(usi_dbuf_read(bm, 0, m, sizeof m));
    CHECK(m[0] != 0, "%s: the first moment lives in its device block", name);
    usi_dbuf_free(bw);
    usi_dbuf_free(bg);
    usi_dbuf_free(bm);
    usi_dbuf_free(bv);
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

    /* Global-norm clipping over a flat gradient block: 3-4-5. */
    float grads[5] = {3, 0, 0, 0, 4};
    usi_dbuf *bg;
    CHECK_OK(usi_dbuf_new(test_device(), sizeof grads, &bg));
    CHECK_OK(usi_dbuf_write(bg, 0, grads, sizeof grads));
    double sq;
    CHECK_OK(usi_dbuf_sum_squares(bg, 0, 5, &sq));
    double norm = sqrt(sq), s = usi_clip_factor(norm, 1.0);
    CHECK_OK(usi_dbuf_scale(bg, 0, 5, s));
    CHECK_OK(usi_dbuf_read(bg, 0, grads, sizeof grads));
    double after = sqrt((double)grads[0] * grads[0] + (double)grads[4] * grads[4]);
    CHECK(fabs(norm - 5.0) < 1e-9 && fabs(after - 1.0) < 1e-5 && fabs(grads[0] / grads[4] - 0.75) < 1e-6,
          "clip: norm %g, after %g", norm, after);
    CHECK(usi_clip_factor(0.5, 1.0) == 1.0 && usi_clip_factor(5.0, 0) == 1.0, "no clipping below max or when off");
    grads[2] = NAN;
    CHECK_OK(usi_dbuf_write(bg, 0, grads, sizeof grads));
    CHECK_OK(usi_dbuf_sum_squares(bg, 0, 5, &sq));
    CHECK(isnan(sq), "a NaN gradient makes the norm NaN (the step's finite check): %g", sq);
    usi_dbuf_free(bg);
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
    /* ema = [1, -1, a, b], w = [3, 5, 1, 1]: the first two by one update,
     * the last two tracked over 200 steps with and without warm-up. */
    float ema[4] = {1, -1, 0, 0}, w[4] = {3, 5, 1, 1};
    usi_dbuf *be, *bw;
    CHECK_OK(usi_dbuf_new(test_device(), sizeof ema, &be));
    CHECK_OK(usi_dbuf_new(test_device(), sizeof w, &bw));
    CHECK_OK(usi_dbuf_write(be, 0, ema, sizeof ema));
    CHECK_OK(usi_dbuf_write(bw, 0, w, sizeof w));
    CHECK_OK(usi_dbuf_ema(be, 0, bw, 0, 2, 0.75));
    for (int64_t n = 0; n < 200; n++) {
        CHECK_OK(usi_dbuf_ema(be, 2, bw, 2, 1, usi_ema_decay(0.99996, 1, n)));
        CHECK_OK(usi_dbuf_ema(be, 3, bw, 3, 1, usi_ema_decay(0.99996, 0, n)));
    }
    CHECK_OK(usi_dbuf_read(be, 0, ema, sizeof ema));
    CHECK(fabs(ema[0] - 1.5) < 1e-6 && fabs(ema[1] - 0.5) < 1e-6, "ema update: %g %g", ema[0], ema[1]);
    /* With warm-up a short run's EMA tracks the weights; without, it does not. */
    CHECK(ema[2] > 0.9 && ema[3] < 0.01, "after 200 steps: with warm-up %g, without %g", ema[2], ema[3]);
    usi_dbuf_free(be);
    usi_dbuf_free(bw);
}

int main(void)
{
    test_optimizers();
    test_schedule();
    test_ema();
    return check_status("optimizers, schedule, ema");
}
