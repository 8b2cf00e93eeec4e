/* The evaluation transform of timm: Resize(floor(size / crop_pct)) of the
 * shorter side, then CenterCrop(size), with torchvision's rounding. Only the
 * crop is computed, with the coefficients of the whole resize, so the
 * pixels are those of PIL resizing everything and cropping. */
#include <math.h>
#include <stdlib.h>

#include "../common/augcommon.h"

typedef struct erc {
    int32_t size;
    double crop_pct;
    int32_t interp;
} erc;

static const usi_param_desc erc_params[] = {
    AUG_P_INT("size", 224, 1, 8192, "output side in pixels (square)"),
    AUG_P_FLOAT("crop_pct", 0.95, 0.05, 1.0, "fraction of the resized shorter side kept by the centre crop"),
    AUG_P_STRING("interpolation", "bicubic", "bicubic|bilinear|nearest",
                 "resampling filter, as PIL's (antialiased when shrinking, except nearest)"),
};

static usi_error *erc_create(const usi_params *p, void **inst)
{
    erc *s = calloc(1, sizeof *s);
    if (!s) return aug_host->error_new(USI_ERR_NOMEM, "eval_resize_crop: out of memory");
    int64_t size = 0;
    const char *interp = NULL;
    usi_error *e = aug_host->param_int(p, "size", &size);
    if (!e) e = aug_host->param_float(p, "crop_pct", &s->crop_pct);
    if (!e) e = aug_host->param_string(p, "interpolation", &interp);
    if (e) {
        free(s);
        return e;
    }
    s->size = (int32_t)size;
    s->interp = aug_interp_from_name(interp);
    *inst = s;
    return NULL;
}

static void erc_destroy(void *inst) { free(inst); }

static usi_error *erc_apply(void *inst, const usi_image *src, usi_image *dst, usi_rng *rng)
{
    (void)rng;
    const erc *s = inst;
    int32_t W = src->width, H = src->height;
    /* timm: math.floor(img_size / crop_pct), no tolerance, so a quotient
     * just below an integer rounds down there too */
    int32_t short_target = (int32_t)floor(s->size / s->crop_pct);
    if (short_target < s->size) short_target = s->size;
    /* torchvision Resize(int): the long side is truncated, not rounded. */
    int32_t rw, rh;
    if (W <= H) {
        rw = short_target;
        rh = (int32_t)((int64_t)short_target * H / W);
    } else {
        rh = short_target;
        rw = (int32_t)((int64_t)short_target * W / H);
    }
    /* torchvision CenterCrop: int(round(d / 2.0)), Python's round (ties to
     * even), which lrint is under the default rounding mode */
    int32_t left = (int32_t)lrint((rw - s->size) / 2.0);
    int32_t top = (int32_t)lrint((rh - s->size) / 2.0);
    usi_error *e = aug_host->image_alloc(dst, s->size, s->size, src->channels);
    if (e) return e;
    if (aug_resize_window(src, rw, rh, left, top, dst->data, s->size, s->size, dst->stride, s->interp))
        return aug_host->error_new(USI_ERR_NOMEM, "eval_resize_crop: out of memory");
    return NULL;
}

static const usi_augment_ops erc_ops = {
    sizeof(usi_augment_ops), USI_AUGMENT_SAMPLE, USI_AUGMENT_THREAD_SAFE, erc_apply, NULL,
};

static const usi_component erc_component = {
    sizeof(usi_component), USI_KIND_AUGMENT, 0, "eval_resize_crop", "1.0.0",
    "resize the shorter side to size / crop_pct, then centre-crop size x size (timm eval)",
    erc_params, sizeof erc_params / sizeof *erc_params, erc_create, erc_destroy, &erc_ops,
};

static const usi_component *const components[] = {&erc_component};

static const usi_plugin_desc desc = {
    sizeof(usi_plugin_desc), "usi_aug_eval_resize_crop", "USI", "Apache-2.0", "1.0.0",
    components, 1,
};

USI_PLUGIN_EXPORT usi_error *usi_plugin_entry(usi_negotiate *n)
{
    usi_error *e = usi_negotiate_reply(n, &desc);
    if (!e) aug_host = n->host;
    return e;
}
