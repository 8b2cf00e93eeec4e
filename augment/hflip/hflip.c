/* Horizontal flip with probability p. */
#include <stdlib.h>
#include <string.h>

#include "../common/augcommon.h"

typedef struct hflip {
    double p;
} hflip;

static const usi_param_desc hflip_params[] = {
    AUG_P_FLOAT("p", 0.5, 0.0, 1.0, "probability of mirroring the image left to right"),
};

static usi_error *hflip_create(const usi_params *p, void **inst)
{
    hflip *s = calloc(1, sizeof *s);
    if (!s) return aug_host->error_new(USI_ERR_NOMEM, "hflip: out of memory");
    usi_error *e = aug_host->param_float(p, "p", &s->p);
    if (e) {
        free(s);
        return e;
    }
    *inst = s;
    return NULL;
}

static void hflip_destroy(void *inst) { free(inst); }

static usi_error *hflip_apply(void *inst, const usi_image *src, usi_image *dst, usi_rng *rng)
{
    const hflip *s = inst;
    /* Draw even when p is 0 or 1 so later augments see the same stream. */
    int flip = aug_host->rng_uniform(rng) < s->p;
    if (!flip) return aug_copy(src, dst);
    usi_error *e = aug_host->image_alloc(dst, src->width, src->height, src->channels);
    if (e) return e;
    int32_t w = src->width, c = src->channels;
    for (int32_t y = 0; y < src->height; y++) {
        const uint8_t *in = src->data + (size_t)y * (size_t)src->stride;
        uint8_t *out = dst->data + (size_t)y * (size_t)dst->stride;
        if (c == 3) {
            for (int32_t x = 0; x < w; x++) {
                const uint8_t *p = in + 3 * (size_t)(w - 1 - x);
                out[3 * x] = p[0];
                out[3 * x + 1] = p[1];
                out[3 * x + 2] = p[2];
            }
        } else {
            for (int32_t x = 0; x < w; x++)
                memcpy(out + (size_t)x * (size_t)c, in + (size_t)(w - 1 - x) * (size_t)c, (size_t)c);
        }
    }
    return NULL;
}

static const usi_augment_ops hflip_ops = {
    sizeof(usi_augment_ops), USI_AUGMENT_SAMPLE, USI_AUGMENT_THREAD_SAFE, hflip_apply, NULL,
};

static const usi_component hflip_component = {
    sizeof(usi_component), USI_KIND_AUGMENT, 0, "hflip", "1.0.0",
    "mirror the image left to right with probability p",
    hflip_params, sizeof hflip_params / sizeof *hflip_params, hflip_create, hflip_destroy,
    &hflip_ops,
};

static const usi_component *const components[] = {&hflip_component};

static const usi_plugin_desc desc = {
    sizeof(usi_plugin_desc), "usi_aug_hflip", "USI", "Apache-2.0", "1.0.0", components, 1,
};

USI_PLUGIN_EXPORT usi_error *usi_plugin_entry(usi_negotiate *n)
{
    usi_error *e = usi_negotiate_reply(n, &desc);
    if (!e) aug_host = n->host;
    return e;
}
