/* ColorJitter with torchvision's semantics: brightness, contrast and
 * saturation factors uniform in [max(0, 1 - v), 1 + v], a hue shift uniform
 * in [-hue, hue] (fraction of the colour circle), applied in a random order;
 * the whole transform with probability p. */
#include <math.h>
#include <stdlib.h>

#include "../common/augcommon.h"

typedef struct cj {
    double brightness, contrast, saturation, hue, p;
} cj;

static const usi_param_desc cj_params[] = {
    AUG_P_FLOAT("brightness", 0.4, 0.0, 10.0, "brightness factor range 1 +- this"),
    AUG_P_FLOAT("contrast", 0.4, 0.0, 10.0, "contrast factor range 1 +- this"),
    AUG_P_FLOAT("saturation", 0.4, 0.0, 10.0, "saturation factor range 1 +- this"),
    AUG_P_FLOAT("hue", 0.0, 0.0, 0.5, "hue shift range +- this, as a fraction of a full turn"),
    AUG_P_FLOAT("p", 1.0, 0.0, 1.0, "probability of jittering an image at all"),
};

static usi_error *cj_create(const usi_params *p, void **inst)
{
    cj *s = calloc(1, sizeof *s);
    if (!s) return aug_host->error_new(USI_ERR_NOMEM, "color_jitter: out of memory");
    usi_error *e = aug_host->param_float(p, "brightness", &s->brightness);
    if (!e) e = aug_host->param_float(p, "contrast", &s->contrast);
    if (!e) e = aug_host->param_float(p, "saturation", &s->saturation);
    if (!e) e = aug_host->param_float(p, "hue", &s->hue);
    if (!e) e = aug_host->param_float(p, "p", &s->p);
    if (e) {
        free(s);
        return e;
    }
    *inst = s;
    return NULL;
}

static void cj_destroy(void *inst) { free(inst); }

static inline float clampf(float v) { return v < 0 ? 0 : v > 255 ? 255 : v; }
static inline float grey(const float *p) { return 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2]; }

static void hue_shift(float *p, float shift)
{
    float r = p[0] / 255, g = p[1] / 255, b = p[2] / 255;
    float mx = fmaxf(r, fmaxf(g, b)), mn = fminf(r, fminf(g, b)), d = mx - mn;
    if (d <= 0) return; /* grey has no hue */
    float h = mx == r ? fmodf((g - b) / d + 6.0f, 6.0f) : mx == g ? (b - r) / d + 2.0f : (r - g) / d + 4.0f;
    h = fmodf(h / 6.0f + shift + 1.0f, 1.0f) * 6.0f;
    float s = d / mx, v = mx;
    int i = (int)h % 6;
    float f = h - floorf(h), q = v * (1 - s * f), t = v * (1 - s * (1 - f)), w = v * (1 - s);
    float out[6][3] = {{v, t, w}, {q, v, w}, {w, v, t}, {w, q, v}, {t, w, v}, {v, w, q}};
    for (int k = 0; k < 3; k++) p[k] = out[i][k] * 255;
}

/* One of the four adjustments on a float RGB buffer of n pixels. */
static void adjust(float *px, size_t n, int op, float f)
{
    if (op == 1) { /* contrast: blend with the mean grey level */
        double m = 0;
        for (size_t i = 0; i < n; i++) m += grey(px + 3 * i);
        float mean = (float)(m / (double)n);
        for (size_t i = 0; i < 3 * n; i++) px[i] = clampf(mean + f * (px[i] - mean));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float *p = px + 3 * i;
        if (op == 0) {
            for (int k = 0; k < 3; k++) p[k] = clampf(p[k] * f);
        } else if (op == 2) {
            float gy = grey(p);
            for (int k = 0; k < 3; k++) p[k] = clampf(gy + f * (p[k] - gy));
        } else {
            hue_shift(p, f);
        }
    }
}

static usi_error *cj_apply(void *inst, const usi_image *src, usi_image *dst, usi_rng *rng)
{
    const cj *s = inst;
    usi_error *e = aug_copy(src, dst);
    if (e) return e;
    double u = aug_host->rng_uniform(rng);
    int order[4] = {0, 1, 2, 3};
    for (int i = 3; i > 0; i--) {
        int j = aug_randint(rng, 0, i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    const double range[4] = {s->brightness, s->contrast, s->saturation, s->hue};
    float f[4];
    for (int k = 0; k < 3; k++)
        f[k] = (float)aug_uniform(rng, fmax(0.0, 1.0 - range[k]), 1.0 + range[k]);
    f[3] = (float)aug_uniform(rng, -s->hue, s->hue);
    if (u >= s->p || src->channels != 3) return NULL;
    size_t n = (size_t)src->width * (size_t)src->height;
    float *px = malloc(n * 3 * sizeof *px);
    if (!px) return aug_host->error_new(USI_ERR_NOMEM, "color_jitter: out of memory");
    for (int32_t y = 0; y < src->height; y++)
        for (int32_t x = 0; x < 3 * src->width; x++)
            px[(size_t)y * 3 * (size_t)src->width + (size_t)x] = dst->data[(size_t)y * (size_t)dst->stride + (size_t)x];
    for (int i = 0; i < 4; i++)
        if (range[order[i]] > 0) adjust(px, n, order[i], f[order[i]]);
    for (int32_t y = 0; y < src->height; y++)
        for (int32_t x = 0; x < 3 * src->width; x++)
            dst->data[(size_t)y * (size_t)dst->stride + (size_t)x] =
                (uint8_t)lrintf(px[(size_t)y * 3 * (size_t)src->width + (size_t)x]);
    free(px);
    return NULL;
}

static const usi_augment_ops cj_ops = {
    sizeof(usi_augment_ops), USI_AUGMENT_SAMPLE, USI_AUGMENT_THREAD_SAFE, cj_apply, NULL,
};

static const usi_component cj_component = {
    sizeof(usi_component), USI_KIND_AUGMENT, 0, "color_jitter", "1.0.0",
    "random brightness, contrast, saturation and hue in a random order (torchvision ColorJitter)",
    cj_params, sizeof cj_params / sizeof *cj_params, cj_create, cj_destroy, &cj_ops,
};

static const usi_component *const components[] = {&cj_component};

static const usi_plugin_desc desc = {
    sizeof(usi_plugin_desc), "usi_aug_color_jitter", "USI", "Apache-2.0", "1.0.0", components, 1,
};

USI_PLUGIN_EXPORT usi_error *usi_plugin_entry(usi_negotiate *n)
{
    usi_error *e = usi_negotiate_reply(n, &desc);
    if (!e) aug_host = n->host;
    return e;
}
