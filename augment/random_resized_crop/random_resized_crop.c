/* RandomResizedCrop with torchvision's sampling: ten tries at an area drawn
 * from `scale` and a log-uniform aspect from `ratio`, else a centre crop
 * clamped to the ratio range; then a resize to size x size. */
#include <math.h>
#include <stdlib.h>

#include "../common/augcommon.h"

typedef struct rrc {
    int32_t size;
    double scale[2], ratio[2];
    int32_t interp;
} rrc;

static const usi_param_desc rrc_params[] = {
    AUG_P_INT("size", 224, 1, 8192, "output side in pixels (square)"),
    AUG_P_LIST("scale", "0.08, 1.0", 0.0, 1.0, "range of the crop's area as a fraction of the image"),
    AUG_P_LIST("ratio", "0.75, 1.3333333333333333", 0.01, 100.0,
               "range of the crop's aspect ratio (width / height), sampled log-uniformly"),
    AUG_P_STRING("interpolation", "bicubic", "bicubic|bilinear|nearest",
                 "resampling filter, as PIL's (antialiased when shrinking, except nearest)"),
};

static usi_error *read_pair(const usi_params *p, const char *name, double out[2])
{
    size_t n = 0;
    usi_error *e = aug_host->param_float_list(p, name, out, 2, &n);
    if (e) return e;
    if (n != 2 || out[0] > out[1] || out[0] <= 0.0)
        return aug_host->error_new(USI_ERR_INVALID,
                                   "random_resized_crop: option '%s' needs two increasing positive "
                                   "numbers, e.g. [%g, %g]", name, name[0] == 's' ? 0.08 : 0.75,
                                   name[0] == 's' ? 1.0 : 4.0 / 3.0);
    return NULL;
}

static usi_error *rrc_create(const usi_params *p, void **inst)
{
    rrc *s = calloc(1, sizeof *s);
    if (!s) return aug_host->error_new(USI_ERR_NOMEM, "random_resized_crop: out of memory");
    int64_t size = 0;
    const char *interp = NULL;
    usi_error *e = aug_host->param_int(p, "size", &size);
    if (!e) e = read_pair(p, "scale", s->scale);
    if (!e) e = read_pair(p, "ratio", s->ratio);
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

static void rrc_destroy(void *inst) { free(inst); }

/* torchvision's RandomResizedCrop.get_params. */
static void pick_box(const rrc *s, int32_t W, int32_t H, usi_rng *r, int32_t box[4])
{
    double area = (double)W * H;
    double lr0 = log(s->ratio[0]), lr1 = log(s->ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * aug_uniform(r, s->scale[0], s->scale[1]);
        double aspect = exp(aug_uniform(r, lr0, lr1));
        int32_t w = (int32_t)lrint(sqrt(target * aspect));
        int32_t h = (int32_t)lrint(sqrt(target / aspect));
        if (w > 0 && h > 0 && w <= W && h <= H) {
            box[1] = aug_randint(r, 0, H - h + 1);
            box[0] = aug_randint(r, 0, W - w + 1);
            box[2] = w;
            box[3] = h;
            return;
        }
    }
    double in_ratio = (double)W / H;
    int32_t w = W, h = H;
    if (in_ratio < s->ratio[0]) {
        h = (int32_t)lrint(w / s->ratio[0]);
    } else if (in_ratio > s->ratio[1]) {
        w = (int32_t)lrint(h * s->ratio[1]);
    }
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    if (w > W) w = W;
    if (h > H) h = H;
    box[0] = (W - w) / 2;
    box[1] = (H - h) / 2;
    box[2] = w;
    box[3] = h;
}

static usi_error *rrc_apply(void *inst, const usi_image *src, usi_image *dst, usi_rng *rng)
{
    const rrc *s = inst;
    int32_t box[4];
    pick_box(s, src->width, src->height, rng, box);
    usi_error *e = aug_host->image_alloc(dst, s->size, s->size, src->channels);
    if (e) return e;
    /* torchvision's resized_crop: crop, then resize the crop alone */
    usi_image crop = aug_view(src, box[0], box[1], box[2], box[3]);
    if (aug_resize_window(&crop, s->size, s->size, 0, 0, dst->data, s->size, s->size, dst->stride,
                          s->interp))
        return aug_host->error_new(USI_ERR_NOMEM, "random_resized_crop: out of memory");
    return NULL;
}

static const usi_augment_ops rrc_ops = {
    sizeof(usi_augment_ops), USI_AUGMENT_SAMPLE, USI_AUGMENT_THREAD_SAFE, rrc_apply, NULL,
};

static const usi_component rrc_component = {
    sizeof(usi_component), USI_KIND_AUGMENT, 0, "random_resized_crop", "1.0.0",
    "crop a random area and aspect ratio, resize to a square (torchvision semantics)",
    rrc_params, sizeof rrc_params / sizeof *rrc_params, rrc_create, rrc_destroy, &rrc_ops,
};

static const usi_component *const components[] = {&rrc_component};

static const usi_plugin_desc desc = {
    sizeof(usi_plugin_desc), "usi_aug_random_resized_crop", "USI", "Apache-2.0", "1.0.0",
    components, 1,
};

USI_PLUGIN_EXPORT usi_error *usi_plugin_entry(usi_negotiate *n)
{
    usi_error *e = usi_negotiate_reply(n, &desc);
    if (!e) aug_host = n->host;
    return e;
}
