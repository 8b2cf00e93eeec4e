#include "data/loader_config.h"

#include <string.h>

#include "plugin/params.h"
#include "util/error.h"
#include "util/log.h"

/* The loader needs every image at data.img_size, so an augmentation's
 * `size` follows it; a different size the user wrote is overridden, said
 * once where it happens (config show, or the start of a run). */
static usi_error *fill_size(usi_params *p, int64_t img)
{
    if (!usi_params_has(p, "size")) return NULL;
    int64_t have = img;
    if (usi_params_is_set(p, "size")) usi_error_free(usi_params_get_int(p, "size", &have));
    if (have != img)
        usi_log(USI_LOG_WARN, "augment %s: size = %lld is replaced by data.img_size = %lld (every image must "
                "reach the loader at data.img_size); set data.img_size instead",
                usi_params_component(p)->name, (long long)have, (long long)img);
    return usi_params_set_int(p, "size", img);
}

usi_error *usi_data_fill_config(usi_config *c)
{
    int64_t img = usi_config_int(c, "data.img_size");
    for (size_t i = 0; i < usi_config_augment_count(c); i++) {
        const usi_selected *s = usi_config_augment(c, i);
        if (s) USI_TRY(fill_size(s->params, img));
    }
    return NULL;
}

usi_error *usi_data_train_chain(const usi_config *c, usi_augchain **out)
{
    *out = NULL;
    usi_augchain *ch;
    USI_TRY(usi_augchain_new(&ch));
    int64_t img = usi_config_int(c, "data.img_size");
    usi_error *e = NULL;
    for (size_t i = 0; !e && i < usi_config_augment_count(c); i++) {
        const usi_selected *s = usi_config_augment(c, i);
        if (!s) {
            e = usi_error_new(USI_ERR_INVALID, "augmentation %zu is not resolved (call usi_config_resolve)", i);
            break;
        }
        /* A copy, so the config keeps the options it was given. */
        usi_params *p = usi_params_copy(s->params);
        if (!p) {
            e = usi_error_new(USI_ERR_NOMEM, "out of memory");
            break;
        }
        e = fill_size(p, img);
        if (e) usi_params_free(p);
        else e = usi_augchain_add_owned(ch, s->loaded->comp, p);
    }
    if (e) {
        usi_augchain_free(ch);
        return e;
    }
    *out = ch;
    return NULL;
}

usi_error *usi_data_eval_chain(const usi_config *c, const usi_registry *r, usi_augchain **out)
{
    *out = NULL;
    const usi_loaded *l = NULL;
    USI_TRY(usi_registry_select(r, USI_KIND_AUGMENT, "eval_resize_crop", &l));
    usi_params *p = usi_params_new(l->comp);
    if (!p) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = usi_params_set_int(p, "size", usi_config_int(c, "data.img_size"));
    if (!e) e = usi_params_set_float(p, "crop_pct", usi_config_float(c, "data.crop_pct"));
    if (!e) e = usi_params_set_string(p, "interpolation", usi_config_string(c, "data.interpolation"));
    usi_augchain *ch = NULL;
    if (!e) e = usi_augchain_new(&ch);
    if (e) {
        usi_params_free(p);
        return e;
    }
    e = usi_augchain_add_owned(ch, l->comp, p);
    if (e) {
        usi_augchain_free(ch);
        return e;
    }
    *out = ch;
    return NULL;
}

usi_loader_opts usi_data_loader_opts(const usi_config *c, int train)
{
    usi_loader_opts o = usi_loader_opts_default();
    o.batch_size = (int32_t)usi_config_int(c, "data.batch_size");
    o.img_size = (int32_t)usi_config_int(c, "data.img_size");
    int64_t w = usi_config_int(c, "data.workers");
    o.workers = w < 1 ? 1 : (int32_t)w; /* 0 means "no extra threads"; one is the least we run */
    o.prefetch = (int32_t)usi_config_int(c, "data.prefetch");
    o.seed = (uint64_t)usi_config_int(c, "seed");
    o.repeats = train ? (int32_t)usi_config_int(c, "data.repeated_aug") : 1;
    o.shuffle = train;
    o.drop_last = train;
    o.replace_bad = train; /* batches stay whole for the step's fixed shape */
    return o;
}

void usi_data_norm_f64(const usi_config *c, double mean[3], double std[3])
{
    static const double m0[3] = {0.485, 0.456, 0.406}, s0[3] = {0.229, 0.224, 0.225};
    memcpy(mean, m0, sizeof m0);
    memcpy(std, s0, sizeof s0);
    /* one value: every channel's */
    if (usi_config_float_list(c, "data.mean", mean, 3) == 1) mean[1] = mean[2] = mean[0];
    if (usi_config_float_list(c, "data.std", std, 3) == 1) std[1] = std[2] = std[0];
}

void usi_data_norm(const usi_config *c, float mean[3], float std[3])
{
    double m[3], s[3];
    usi_data_norm_f64(c, m, s);
    for (int k = 0; k < 3; k++) {
        mean[k] = (float)m[k];
        std[k] = (float)s[k];
    }
}
