/* RandAugment as timm's rand-m7-mstd0.5-inc1: num_ops operations drawn with
 * replacement from timm's list (the "increasing" variants when increasing is
 * on, so a larger magnitude is always a stronger change), each applied with
 * probability prob at a magnitude drawn from N(magnitude, magnitude_std)
 * clipped to [0, magnitude_max], on the 0..10 scale. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/augcommon.h"
#include "ops.h"

#define LEVEL_DENOM 10.0

typedef struct ra {
    int32_t num_ops;
    double magnitude, magnitude_std, magnitude_max, prob;
    ra_settings op; /* what the operations themselves take */
} ra;

static const usi_param_desc ra_params[] = {
    AUG_P_INT("num_ops", 2, 0, 16, "operations applied to each image"),
    AUG_P_FLOAT("magnitude", 7.0, 0.0, 10.0, "strength on timm's 0..10 scale"),
    AUG_P_FLOAT("magnitude_std", 0.5, 0.0, 1000.0,
                "std of the per-operation magnitude noise; more than 100 draws uniformly in [0, magnitude] (timm)"),
    AUG_P_FLOAT("magnitude_max", 10.0, 0.0, 10.0, "upper clip of the noisy magnitude"),
    AUG_P_BOOL("increasing", 1, "use timm's increasing variants (posterize, solarize, enhance ops)"),
    AUG_P_FLOAT("prob", 0.5, 0.0, 1.0, "probability that each chosen operation is applied"),
    AUG_P_FLOAT("translate_pct", 0.45, 0.0, 1.0, "largest translation as a fraction of the image side"),
    AUG_P_STRING("interpolation", "bicubic", "bicubic|bilinear", "resampling of rotate, shear, translate"),
    AUG_P_LIST("fill", "124, 116, 104", 0.0, 255.0,
               "RGB fill of uncovered pixels (ImageNet mean x 255, as timm)"),
};

static usi_error *ra_read(ra *s, const usi_params *p)
{
    int64_t n = 0;
    const char *interp = NULL;
    double fill[3] = {124, 116, 104};
    size_t nfill = 0;
    usi_error *e = aug_host->param_int(p, "num_ops", &n);
    if (!e) e = aug_host->param_float(p, "magnitude", &s->magnitude);
    if (!e) e = aug_host->param_float(p, "magnitude_std", &s->magnitude_std);
    if (!e) e = aug_host->param_float(p, "magnitude_max", &s->magnitude_max);
    if (!e) e = aug_host->param_bool(p, "increasing", &s->op.increasing);
    if (!e) e = aug_host->param_float(p, "prob", &s->prob);
    if (!e) e = aug_host->param_float(p, "translate_pct", &s->op.translate_pct);
    if (!e) e = aug_host->param_string(p, "interpolation", &interp);
    if (!e) e = aug_host->param_float_list(p, "fill", fill, 3, &nfill);
    if (e) return e;
    if (nfill != 3 && nfill != 1)
        return aug_host->error_new(USI_ERR_INVALID,
                                   "rand_augment: option 'fill' needs 1 or 3 values (R, G, B), got %zu",
                                   nfill);
    for (int k = 0; k < 3; k++) s->op.fill[k] = (uint8_t)lrint(fill[nfill == 1 ? 0 : k]);
    s->num_ops = (int32_t)n;
    s->op.interp = aug_interp_from_name(interp);
    return NULL;
}

static usi_error *ra_create(const usi_params *p, void **inst)
{
    ra *s = calloc(1, sizeof *s);
    if (!s) return aug_host->error_new(USI_ERR_NOMEM, "rand_augment: out of memory");
    usi_error *e = ra_read(s, p);
    if (e) {
        free(s);
        return e;
    }
    *inst = s;
    return NULL;
}

static void ra_destroy(void *inst) { free(inst); }

static double draw_level(const ra *s, usi_rng *r)
{
    double m = s->magnitude;
    /* timm's mstd: above 100 (not at it) means uniform */
    if (s->magnitude_std > 100.0)
        m = aug_uniform(r, 0.0, m);
    else if (s->magnitude_std > 0)
        m = m + s->magnitude_std * aug_host->rng_normal(r);
    double hi = s->magnitude_max > 0 ? s->magnitude_max : LEVEL_DENOM;
    return m < 0 ? 0 : m > hi ? hi : m;
}

static usi_error *ra_apply(void *inst, const usi_image *src, usi_image *dst, usi_rng *rng)
{
    const ra *s = inst;
    usi_error *e = aug_copy(src, dst);
    if (e) return e;
    uint8_t *scratch = malloc((size_t)src->width * (size_t)src->height * (size_t)src->channels);
    if (!scratch) return aug_host->error_new(USI_ERR_NOMEM, "rand_augment: out of memory");
    for (int32_t i = 0; i < s->num_ops; i++) {
        int op = aug_randint(rng, 0, RA_OP_COUNT);
        if (s->prob < 1.0 && aug_host->rng_uniform(rng) > s->prob) continue;
        double level = draw_level(s, rng);
        /* timm's _randomly_negate, drawn after the magnitude as there */
        int negate = ra_op_negates(op, s->op.increasing) && aug_host->rng_uniform(rng) > 0.5;
        ra_apply_op(op, level, negate, &s->op, dst, scratch);
    }
    free(scratch);
    return NULL;
}

static const usi_augment_ops ra_ops = {
    sizeof(usi_augment_ops), USI_AUGMENT_SAMPLE, USI_AUGMENT_THREAD_SAFE, ra_apply, NULL,
};

static const usi_component ra_component = {
    sizeof(usi_component), USI_KIND_AUGMENT, 0, "rand_augment", "1.0.0",
    "timm RandAugment (default rand-m7-mstd0.5-inc1: 2 ops, magnitude 7, std 0.5, increasing)",
    ra_params, sizeof ra_params / sizeof *ra_params, ra_create, ra_destroy, &ra_ops,
};

static const usi_component *const components[] = {&ra_component};

static const usi_plugin_desc desc = {
    sizeof(usi_plugin_desc), "usi_aug_rand_augment", "USI", "Apache-2.0", "1.0.0",
    components, 1,
};

USI_PLUGIN_EXPORT usi_error *usi_plugin_entry(usi_negotiate *n)
{
    usi_error *e = usi_negotiate_reply(n, &desc);
    if (!e) aug_host = n->host;
    return e;
}
