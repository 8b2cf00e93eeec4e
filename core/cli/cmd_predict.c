/* usi predict: classify image files with a trained backbone, through the
 * evaluation transform (resize + centre crop by crop_pct, normalisation),
 * printing the top-k classes and optionally writing the raw logits. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/predict.h"
#include "cli/weights_meta.h"
#include "data/augchain.h"
#include "data/decode.h"
#include "data/imagefolder.h"
#include "data/loader_config.h"
#include "graph/graph.h"
#include "plugin/params.h"
#include "train/options.h"
#include "train/safetensors.h"
#include "train/setup.h"
#include "train/weights.h"
#include "util/error.h"
#include "util/file.h"
#include "util/log.h"

static const char *usage =
    "usage: usi predict [CONFIG] --weights FILE [--backbone NAME] [--topk 5] [--img-size N] [--ema]\n"
    "                   [--json] [--logits OUT.safetensors] [--set key=value ...] [--plugin-dir DIR] IMAGE...\n"
    "Classify images with trained weights (a best.safetensors, a checkpoint, or a timm file in safetensors).\n"
    "The backbone, its options, the input size, normalisation and class names come from CONFIG, else\n"
    "from what the weights file stores (usi writes them), else from the USI recipe's defaults. CONFIG is\n"
    "the first argument when its name ends in .cfg or .conf; every other argument is an image.\n"
    "  --backbone NAME   the backbone when no CONFIG is given and the file does not name it\n"
    "  --ema             a training checkpoint's EMA weights instead of the raw ones\n"
    "  --logits FILE     also write the logits [images, classes] as a safetensors tensor 'logits'\n"
    "An image that cannot be read or decoded is named on stderr (in --json, as {\"image\", \"error\"} in its\n"
    "place) and the others are still classified; the exit status is then 1.\n";

/* The input side: --img-size, else data.img_size where set (CONFIG, --set, or
 * the side the file was trained at), else the backbone's img_size option. */
static int64_t input_side(const usi_config *c, const usi_params *p, const usi_predict_args *a)
{
    if (a->img_size > 0) return a->img_size;
    int64_t side = usi_config_int(c, "data.img_size");
    if (!usi_config_is_set(c, "data.img_size") && usi_params_has(p, "img_size"))
        usi_error_free(usi_params_get_int(p, "img_size", &side));
    return side;
}

static usi_error *backbone_params(const usi_config *c, const usi_st_file *f, const usi_predict_args *a,
                                  usi_params **out)
{
    const usi_selected *bb = usi_config_backbone(c);
    usi_params *p = usi_params_copy(bb->params);
    if (!p) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    const char *stored = usi_st_metadata(f, "backbone"), *opts = usi_st_metadata(f, "backbone_options");
    usi_error *e = NULL;
    if (opts && stored && !strcmp(stored, bb->loaded->comp->name))
        e = usi_backbone_options_from_file(p, opts, a->weights, NULL);
    if (!e && a->img_size > 0 && usi_params_has(p, "img_size")) e = usi_params_set_int(p, "img_size", a->img_size);
    if (e) {
        usi_params_free(p);
        return e;
    }
    *out = p;
    return NULL;
}

/* Class names: the file's, else CONFIG's training folder, else numbers. */
static char **class_names(const usi_st_file *f, const usi_config *c, int32_t classes)
{
    char **names = calloc((size_t)classes, sizeof *names);
    if (!names) return NULL;
    cJSON *list = usi_st_metadata(f, "classes") ? cJSON_Parse(usi_st_metadata(f, "classes")) : NULL;
    usi_dataset *ds = NULL;
    if (!list && *usi_config_string(c, "data.train")) usi_error_free(usi_dataset_open(usi_config_string(c, "data.train"), &ds));
    for (int32_t k = 0; k < classes; k++) {
        const cJSON *item = list ? cJSON_GetArrayItem(list, k) : NULL;
        char num[32];
        snprintf(num, sizeof num, "class %d", k);
        const char *name = cJSON_IsString(item) ? item->valuestring
                           : ds && (size_t)k < usi_dataset_class_count(ds) ? usi_dataset_class_name(ds, (size_t)k)
                                                                          : num;
        names[k] = strdup(name);
    }
    cJSON_Delete(list);
    usi_dataset_free(ds);
    return names;
}

int usi_cmd_predict(int argc, char **argv)
{
    usi_predict_args a;
    int rc = usi_predict_parse(argc, argv, &a);
    if (rc) {
        usi_predict_args_free(&a);
        fputs(usage, rc == -1 ? stdout : stderr);
        return rc == -1 ? USI_EXIT_OK : USI_EXIT_USAGE;
    }
    usi_cli_opts o = {0};
    o.config_path = a.config;
    o.plugin_dirs = a.plugin_dirs;
    o.n_plugin_dirs = a.n_plugin_dirs;
    o.sets = a.sets;
    o.n_sets = a.n_sets;
    usi_registry *r = NULL;
    usi_config *c = usi_cli_load_config(&o, &r);
    if (!c) {
        usi_predict_args_free(&a);
        return USI_EXIT_ERROR;
    }
    usi_st_file *f = NULL;
    usi_predict_run run = {0};
    /* --logits is written after every image is classified: a wrong path
     * fails before the work, not after. */
    usi_error *e = a.logits ? usi_check_out_file("--logits", a.logits) : NULL;
    if (!e) e = usi_st_read(a.weights, &f);
    if (!e) e = usi_cli_config_from_weights(c, f, a.weights, a.backbone);
    if (!e && !usi_config_is_set(c, "backbone.name"))
        e = usi_error_new(USI_ERR_INVALID, "%s names no backbone; give --backbone NAME or a CONFIG that sets "
                          "backbone.name (`usi plugins` lists them)", a.weights);
    if (!e) e = usi_config_resolve(c, r);
    if (!e) e = backbone_params(c, f, &a, &run.params);
    if (!e) {
        run.side = input_side(c, run.params, &a);
        char set[64];
        snprintf(set, sizeof set, "data.img_size=%lld", (long long)run.side);
        e = usi_config_set(c, set);
    }
    if (!e) e = usi_predict_images(c, r, f, &a, &run);
    if (!e) {
        run.names = class_names(f, c, run.classes);
        e = run.names ? usi_predict_print(&a, &run) : usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    /* Each failed image was named as it came; the status says some did. */
    if (!e && run.n_failed == a.n_images)
        e = usi_error_new(USI_ERR_IO, "none of the %zu images could be classified (each is named above)%s",
                          a.n_images, a.logits ? "; no --logits file written" : "");
    else if (!e && run.n_failed)
        e = usi_error_new(USI_ERR_IO, "%zu of the %zu images could not be classified (each is named above); the "
                          "rest are classified", run.n_failed, a.n_images);
    rc = e ? usi_cli_fail(e) : USI_EXIT_OK;
    usi_predict_run_free(&run);
    usi_st_free(f);
    usi_config_free(c);
    usi_registry_free(r);
    usi_predict_args_free(&a);
    return rc;
}
