/* A weights file written by usi stores how it was trained: the backbone, the
 * evaluation transform (mean, std, crop_pct, interpolation) and the side it
 * was trained at (img_size in backbone_options). `usi eval` and `usi
 * predict` take those for every setting their config and --set leave
 * unset, so a file is used as it was trained; what the user sets wins. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/weights_meta.h"
#include "data/loader_config.h"
#include "util/error.h"
#include "util/log.h"

static usi_error *take(usi_config *c, const char *key, const char *value, const char *path, const char *meta,
                       usi_strbuf *taken)
{
    char set[2048], origin[2300];
    snprintf(set, sizeof set, "%s=%s", key, value);
    snprintf(origin, sizeof origin, "%s: its metadata %s = %.64s", path, meta, value);
    usi_strbuf_addf(taken, "%s%s", taken->len ? ", " : "", key);
    return usi_config_set_from(c, set, origin);
}

static usi_error *fill(usi_config *c, const usi_st_file *f, const char *path, const char *backbone,
                       usi_strbuf *taken);

usi_error *usi_cli_config_from_weights(usi_config *c, const usi_st_file *f, const char *path, const char *backbone)
{
    usi_strbuf taken = {0};
    usi_error *e = fill(c, f, path, backbone, &taken);
    if (!e && taken.len) usi_log(USI_LOG_INFO, "%s: settings from the file: %s", path, taken.data);
    usi_strbuf_free(&taken);
    return e;
}

static usi_error *fill(usi_config *c, const usi_st_file *f, const char *path, const char *backbone,
                       usi_strbuf *taken)
{
    static const char *const keys[][2] = {{"mean", "data.mean"}, {"std", "data.std"},
                                          {"crop_pct", "data.crop_pct"}, {"interpolation", "data.interpolation"}};
    size_t have = 0, unset = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = usi_st_metadata(f, keys[i][0]);
        have += v != NULL;
        unset += !usi_config_is_set(c, keys[i][1]);
        if (v && !usi_config_is_set(c, keys[i][1])) USI_TRY(take(c, keys[i][1], v, path, keys[i][0], taken));
    }
    /* A timm file says nothing of its transform, and timm's differ by model
     * (crop_pct 0.875, mean 0.5, bilinear...): the recipe's is a guess. */
    if (!have && unset) {
        float m[3], sd[3];
        usi_data_norm(c, m, sd);
        usi_log(USI_LOG_WARN, "%s stores no evaluation transform (a timm file?): using data.crop_pct = %g, "
                "data.interpolation = \"%s\", data.mean = [%g, %g, %g], data.std = [%g, %g, %g]; set data.* to the "
                "model's own (timm: its pretrained_cfg) where they differ", path, usi_config_float(c, "data.crop_pct"),
                usi_config_string(c, "data.interpolation"), m[0], m[1], m[2], sd[0], sd[1], sd[2]);
    }
    const char *stored = usi_st_metadata(f, "backbone");
    if (!usi_config_is_set(c, "backbone.name")) {
        char quoted[300];
        if (backbone) {
            snprintf(quoted, sizeof quoted, "backbone.name=\"%.256s\"", backbone);
            USI_TRY(usi_config_set_from(c, quoted, "--backbone"));
        } else if (stored) {
            snprintf(quoted, sizeof quoted, "\"%.256s\"", stored);
            USI_TRY(take(c, "backbone.name", quoted, path, "backbone", taken));
        }
    }
    /* The side it was trained at, when it is this backbone's file. */
    if (!usi_config_is_set(c, "data.img_size") && stored && !strcmp(stored, usi_config_backbone_name(c))) {
        char *side = usi_config_text_value(usi_st_metadata(f, "backbone_options"), "img_size");
        usi_error *e = side ? take(c, "data.img_size", side, path, "backbone_options img_size", taken) : NULL;
        free(side);
        USI_TRY(e);
    }
    return NULL;
}
