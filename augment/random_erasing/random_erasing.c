/* Random erasing as timm's RandomErasing, on the uint8 image: with
 * probability prob, 1..max_count rectangles of area fraction in
 * [min_area, max_area] (shared among them) and log-uniform aspect are
 * filled. timm fills in normalised space; here "pixel" and "rand" draw
 * N(0, 1) there and map it back through mean/std, "const" is the mean
 * colour (normalised zero). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/augcommon.h"

enum { MODE_CONST, MODE_RAND, MODE_PIXEL };

typedef struct re {
    double prob, min_area, max_area, min_aspect, max_aspect, mean[3], std[3];
    int32_t mode, min_count, max_count;
} re;

static const usi_param_desc re_params[] = {
    AUG_P_FLOAT("prob", 0.25, 0.0, 1.0, "probability of erasing in an image"),
    AUG_P_FLOAT("min_area", 0.02, 0.0, 1.0, "smallest erased area, as a fraction of the image"),
    AUG_P_FLOAT("max_area", 1.0 / 3.0, 0.0, 1.0, "largest erased area, as a fraction of the image"),
    AUG_P_FLOAT("min_aspect", 0.3, 0.001, 1.0, "smallest aspect ratio; the largest is its inverse"),
    AUG_P_STRING("mode", "pixel", "pixel|rand|const", "fill: per-pixel noise, one random colour, or the mean"),
    AUG_P_INT("min_count", 1, 1, 100, "fewest rectangles"),
    AUG_P_INT("max_count", 1, 1, 100, "most rectangles"),
    AUG_P_LIST("mean", "0.485, 0.456, 0.406", 0.0, 1.0, "normalisation mean the noise is drawn around"),
    AUG_P_LIST("std", "0.229, 0.224, 0.225", 0.0, 10.0, "normalisation std the noise is scaled by"),
};

static usi_error *read_rgb(const usi_params *p, const char *name, double out[3])
{
    size_t n = 0;
    usi_error *e = aug_host->param_float_list(p, name, out, 3, &n);
    if (e) return e;
    if (n == 1) out[1] = out[2] = out[0];
    else if (n != 3)
        return aug_host->error_new(USI_ERR_INVALID, "random_erasing: option '%s' needs 1 or 3 values", name);
    return NULL;
}

static usi_error *re_create(const usi_params *p, void **inst)
{
    re *s = calloc(1, sizeof *s);
    if (!s) return aug_host->error_new(USI_ERR_NOMEM, "random_erasing: out of memory");
    const char *mode = NULL;
    int64_t lo = 1, hi = 1;
    usi_error *e = aug_host->param_float(p, "prob", &s->prob);
    if (!e) e = aug_host->param_float(p, "min_area", &s->min_area);
    if (!e) e = aug_host->param_float(p, "max_area", &s->max_area);
    if (!e) e = aug_host->param_float(p, "min_aspect", &s->min_aspect);
    if (!e) e = aug_host->param_string(p, "mode", &mode);
    if (!e) e = aug_host->param_int(p, "min_count", &lo);
    if (!e) e = aug_host->param_int(p, "max_count", &hi);
    if (!e) e = read_rgb(p, "mean", s->mean);
    if (!e) e = read_rgb(p, "std", s->std);
    if (!e && (hi < lo || s->max_area < s->min_area))
        e = aug_host->error_new(USI_ERR_INVALID,
                                "random_erasing: min_count/min_area must not exceed max_count/max_area");
    if (e) {
        free(s);
        return e;
    }
    s->max_aspect = 1.0 / s->min_aspect;
    s->mode = !strcmp(mode, "const") ? MODE_CONST : !strcmp(mode, "rand") ? MODE_RAND : MODE_PIXEL;
    s->min_count = (int32_t)lo;
    s->max_count = (int32_t)hi;
    *inst = s;
    return NULL;
}

static void re_destroy(void *inst) { free(inst); }

static uint8_t noise_value(const re *s, int k, usi_rng *r)
{
    double v = (s->mean[k] + s->std[k] * aug_host->rng_normal(r)) * 255.0;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrint(v));
}

static void erase(const re *s, usi_image *im, int32_t top, int32_t left, int32_t h, int32_t w, usi_rng *r)
{
    int32_t c = im->channels;
    uint8_t colour[3];
    for (int k = 0; k < 3; k++)
        colour[k] = s->mode == MODE_RAND ? noise_value(s, k, r) : (uint8_t)lrint(s->mean[k] * 255.0);
    for (int32_t y = top; y < top + h; y++) {
        uint8_t *row = im->data + (size_t)y * (size_t)im->stride + (size_t)left * (size_t)c;
        for (int32_t x = 0; x < w; x++)
            for (int32_t k = 0; k < c; k++)
                row[x * c + k] = s->mode == MODE_PIXEL ? noise_value(s, k, r) : colour[k];
    }
}

static usi_error *re_apply(void *inst, const usi_image *src, usi_image *dst, usi_rng *rng)
{
    const re *s = inst;
    usi_error *e = aug_copy(src, dst);
    if (e || aug_host->rng_uniform(rng) >= s->prob) return e;
    int32_t W = src->width, H = src->height;
    double area = (double)W * H, la = log(s->min_aspect), lb = log(s->max_aspect);
    int32_t count = aug_randint(rng, s->min_count, s->max_count + 1);
    for (int32_t i = 0; i < count; i++)
        for (int attempt = 0; attempt < 10; attempt++) {
            double target = aug_uniform(rng, s->min_area, s->max_area) * area / count;
            double aspect = exp(aug_uniform(rng, la, lb));
            int32_t h = (int32_t)lrint(sqrt(target * aspect)), w = (int32_t)lrint(sqrt(target / aspect));
            if (w < W && h < H && w > 0 && h > 0) {
                int32_t top = aug_randint(rng, 0, H - h + 1), left = aug_randint(rng, 0, W - w + 1);
                erase(s, dst, top, left, h, w, rng);
                break;
            }
        }
    return NULL;
}

static const usi_augment_ops re_ops = {
    sizeof(usi_augment_ops), USI_AUGMENT_SAMPLE, USI_AUGMENT_THREAD_SAFE, re_apply, NULL,
};

static const usi_component re_component = {
    sizeof(usi_component), USI_KIND_AUGMENT, 0, "random_erasing", "1.0.0",
    "erase random rectangles with noise or the mean colour (timm RandomErasing)",
    re_params, sizeof re_params / sizeof *re_params, re_create, re_destroy, &re_ops,
};

static const usi_component *const components[] = {&re_component};

static const usi_plugin_desc desc = {
    sizeof(usi_plugin_desc), "usi_aug_random_erasing", "USI", "Apache-2.0", "1.0.0", components, 1,
};

USI_PLUGIN_EXPORT usi_error *usi_plugin_entry(usi_negotiate *n)
{
    usi_error *e = usi_negotiate_reply(n, &desc);
    if (!e) aug_host = n->host;
    return e;
}
