/* Mixup / CutMix on a float batch, timm's "batch" mode: one lambda per batch,
 * sample i is mixed with sample n-1-i (the batch flipped), and the targets
 * become lam * y_i + (1 - lam) * y_{n-1-i}. For CutMix lam is corrected to
 * the area that was not pasted, so the partner's weight is the pasted area. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/augcommon.h"

typedef struct mix {
    double mixup_alpha, cutmix_alpha, prob, switch_prob, smoothing;
    int32_t correct_lam;
} mix;

static const usi_param_desc mix_params[] = {
    AUG_P_FLOAT("mixup_alpha", 0.8, 0.0, 100.0, "Beta(alpha, alpha) of the mixup weight; 0 turns mixup off"),
    AUG_P_FLOAT("cutmix_alpha", 1.0, 0.0, 100.0, "Beta(alpha, alpha) of the cutmix area; 0 turns cutmix off"),
    AUG_P_FLOAT("prob", 1.0, 0.0, 1.0, "probability that a batch is mixed at all"),
    AUG_P_FLOAT("switch_prob", 0.5, 0.0, 1.0, "probability of cutmix instead of mixup when both are on"),
    AUG_P_FLOAT("label_smoothing", 0.0, 0.0, 1.0, "label smoothing applied to the targets before mixing"),
    AUG_P_BOOL("correct_lam", 1, "cutmix: set the weight to the exact pasted area after clipping the box"),
};

static usi_error *mix_create(const usi_params *p, void **inst)
{
    mix *s = calloc(1, sizeof *s);
    if (!s) return aug_host->error_new(USI_ERR_NOMEM, "mixup_cutmix: out of memory");
    usi_error *e = aug_host->param_float(p, "mixup_alpha", &s->mixup_alpha);
    if (!e) e = aug_host->param_float(p, "cutmix_alpha", &s->cutmix_alpha);
    if (!e) e = aug_host->param_float(p, "prob", &s->prob);
    if (!e) e = aug_host->param_float(p, "switch_prob", &s->switch_prob);
    if (!e) e = aug_host->param_float(p, "label_smoothing", &s->smoothing);
    if (!e) e = aug_host->param_bool(p, "correct_lam", &s->correct_lam);
    if (e) {
        free(s);
        return e;
    }
    *inst = s;
    return NULL;
}

static void mix_destroy(void *inst) { free(inst); }

/* Marsaglia-Tsang; shape < 1 is lifted by one and scaled back by U^(1/a). */
static double gamma_sample(usi_rng *r, double a)
{
    double boost = 1.0;
    if (a < 1.0) {
        double u = aug_host->rng_uniform(r);
        boost = pow(u > 0 ? u : 1e-300, 1.0 / a);
        a += 1.0;
    }
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = aug_host->rng_normal(r), v = 1.0 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = aug_host->rng_uniform(r);
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v * boost;
        if (u > 0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v * boost;
    }
}

static double beta_sample(usi_rng *r, double a)
{
    double x = gamma_sample(r, a), y = gamma_sample(r, a);
    return x + y > 0 ? x / (x + y) : 0.5;
}

static void mix_pixels(usi_batch *b, double lam)
{
    size_t plane = (size_t)b->c * (size_t)b->h * (size_t)b->w;
    float l = (float)lam, m = (float)(1.0 - lam);
    for (int32_t i = 0; i < b->n / 2; i++) {
        float *x = b->images + (size_t)i * plane;
        float *y = b->images + (size_t)(b->n - 1 - i) * plane;
        for (size_t k = 0; k < plane; k++) {
            float a = x[k], c = y[k];
            x[k] = l * a + m * c;
            y[k] = l * c + m * a;
        }
    }
}

/* timm's rand_bbox + cutmix_bbox_and_lam; returns the corrected lam. The
 * box reaches cut / 2 (rounded down) either side of its centre, as in timm
 * 0.5.4, which the USI reference trains with; later timm rounds the far
 * half up, a box one pixel larger when the cut is odd. */
static double cut_pixels(usi_batch *b, double lam, int32_t correct, usi_rng *r)
{
    int32_t H = b->h, W = b->w;
    double ratio = sqrt(1.0 - lam);
    int32_t ch = (int32_t)(H * ratio), cw = (int32_t)(W * ratio);
    int32_t cy = aug_randint(r, 0, H), cx = aug_randint(r, 0, W);
    int32_t yl = cy - ch / 2, yh = cy + ch / 2, xl = cx - cw / 2, xh = cx + cw / 2;
    yl = yl < 0 ? 0 : yl;
    xl = xl < 0 ? 0 : xl;
    yh = yh > H ? H : yh;
    xh = xh > W ? W : xh;
    size_t plane = (size_t)H * (size_t)W, img = plane * (size_t)b->c;
    for (int32_t i = 0; i < b->n / 2; i++) {
        float *x = b->images + (size_t)i * img;
        float *y = b->images + (size_t)(b->n - 1 - i) * img;
        for (int32_t c = 0; c < b->c; c++)
            for (int32_t yy = yl; yy < yh; yy++)
                for (int32_t xx = xl; xx < xh; xx++) {
                    size_t k = (size_t)c * plane + (size_t)yy * (size_t)W + (size_t)xx;
                    float t = x[k];
                    x[k] = y[k];
                    y[k] = t;
                }
    }
    if (correct || lam >= 1.0) lam = 1.0 - (double)(yh - yl) * (xh - xl) / ((double)H * W);
    return lam;
}

static void mix_targets(usi_batch *b, double lam, double smoothing)
{
    int32_t k = b->num_classes;
    float off = (float)(smoothing / k), on = (float)(1.0 - smoothing);
    for (size_t i = 0; i < (size_t)b->n * (size_t)k; i++) b->targets[i] = b->targets[i] * on + off;
    float l = (float)lam, m = (float)(1.0 - lam);
    for (int32_t i = 0; i < b->n / 2; i++) {
        float *x = b->targets + (size_t)i * (size_t)k;
        float *y = b->targets + (size_t)(b->n - 1 - i) * (size_t)k;
        for (int32_t j = 0; j < k; j++) {
            float a = x[j], c = y[j];
            x[j] = l * a + m * c;
            y[j] = l * c + m * a;
        }
    }
}

static usi_error *mix_apply(void *inst, usi_batch *b, usi_rng *rng)
{
    const mix *s = inst;
    if (b->n <= 0) return NULL;
    if (!b->images || !b->targets || b->num_classes <= 0)
        return aug_host->error_new(USI_ERR_INVALID, "mixup_cutmix: batch without images or targets");
    double lam = 1.0;
    int use_cutmix = 0;
    int enabled = s->mixup_alpha > 0 || s->cutmix_alpha > 0;
    if (enabled && aug_host->rng_uniform(rng) < s->prob) {
        if (s->mixup_alpha > 0 && s->cutmix_alpha > 0)
            use_cutmix = aug_host->rng_uniform(rng) < s->switch_prob;
        else
            use_cutmix = s->cutmix_alpha > 0;
        lam = beta_sample(rng, use_cutmix ? s->cutmix_alpha : s->mixup_alpha);
    }
    if (use_cutmix)
        lam = cut_pixels(b, lam, s->correct_lam, rng);
    else if (lam < 1.0)
        mix_pixels(b, lam);
    mix_targets(b, lam, s->smoothing);
    return NULL;
}

static const usi_augment_ops mix_ops = {
    sizeof(usi_augment_ops), USI_AUGMENT_BATCH, 0, NULL, mix_apply,
};

static const usi_component mix_component = {
    sizeof(usi_component), USI_KIND_AUGMENT, 0, "mixup_cutmix", "1.0.0",
    "Mixup or CutMix of each sample with its mirror in the batch, soft targets (timm batch mode)",
    mix_params, sizeof mix_params / sizeof *mix_params, mix_create, mix_destroy, &mix_ops,
};

static const usi_component *const components[] = {&mix_component};

static const usi_plugin_desc desc = {
    sizeof(usi_plugin_desc), "usi_aug_mixup_cutmix", "USI", "Apache-2.0", "1.0.0",
    components, 1,
};

USI_PLUGIN_EXPORT usi_error *usi_plugin_entry(usi_negotiate *n)
{
    usi_error *e = usi_negotiate_reply(n, &desc);
    if (!e) aug_host = n->host;
    return e;
}
