/* Building what a run needs from the effective configuration: datasets,
 * augmentation chains, loaders, the backbone's options, and graphs. */
#include "train/setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/loader_config.h"
#include "dist/dist.h"
#include "graph/graph.h"
#include "plugin/call.h"
#include "plugin/params.h"
#include "train/safetensors.h"
#include "util/error.h"
#include "util/log.h"

/* Fill an option the user did not set (num_classes, size, img_size) from the
 * data; refuse a value the user set that contradicts the data. */
static usi_error *fill_int(usi_params *p, const char *name, int64_t want, int must_match)
{
    if (!usi_params_has(p, name)) return NULL;
    if (!usi_params_is_set(p, name)) return usi_params_set_int(p, name, want);
    int64_t have = 0;
    USI_TRY(usi_params_get_int(p, name, &have));
    if (must_match && have != want)
        return usi_error_new(USI_ERR_INVALID, "%s '%s' has %s = %lld but the data needs %lld; remove the option "
                             "or fix it", usi_params_component(p)->kind == USI_KIND_BACKBONE ? "backbone"
                             : usi_params_component(p)->kind == USI_KIND_TEACHER ? "teacher" : "augment",
                             usi_params_component(p)->name, name, (long long)have, (long long)want);
    return NULL;
}

usi_error *usi_setup_datasets(const usi_config *c, usi_dataset **train, usi_dataset **val)
{
    *train = *val = NULL;
    const char *tr = usi_config_string(c, "data.train"), *va = usi_config_string(c, "data.val");
    if (!*tr || !*va)
        return usi_error_new(USI_ERR_INVALID,
                             "data.train and data.val must name ImageFolder folders (<folder>/<class>/<image>); "
                             "`usi data import-idx` prepares Fashion-MNIST");
    usi_error *e = usi_dataset_open(tr, train);
    if (e) return usi_error_prefix(e, "data.train: ");
    e = usi_dataset_open(va, val);
    if (e) e = usi_error_prefix(e, "data.val: ");
    if (!e && usi_dataset_class_count(*train) != usi_dataset_class_count(*val))
        e = usi_error_new(USI_ERR_INVALID, "%s has %zu classes but %s has %zu; both need the same class folders",
                          tr, usi_dataset_class_count(*train), va, usi_dataset_class_count(*val));
    for (size_t k = 0; !e && k < usi_dataset_class_count(*train); k++)
        if (strcmp(usi_dataset_class_name(*train, k), usi_dataset_class_name(*val, k)) != 0)
            e = usi_error_new(USI_ERR_INVALID, "class %zu is '%s' in %s but '%s' in %s", k,
                              usi_dataset_class_name(*train, k), tr, usi_dataset_class_name(*val, k), va);
    if (!e && usi_dataset_size(*train) == 0)
        e = usi_error_new(USI_ERR_INVALID, "%s holds no images", tr);
    if (e) {
        usi_dataset_free(*train);
        usi_dataset_free(*val);
        *train = *val = NULL;
    }
    return e;
}

usi_error *usi_setup_backbone_params(const usi_config *c, int32_t classes, usi_params **out)
{
    const usi_selected *bb = usi_config_backbone(c);
    if (!bb) return usi_error_new(USI_ERR_INVALID, "no backbone: set backbone.name (`usi plugins` lists them)");
    usi_params *p = usi_params_copy(bb->params);
    if (!p) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = fill_int(p, "num_classes", classes, 1);
    /* the network is built for the size it is trained at: its weights file
     * records that size for predict and eval */
    if (!e) e = fill_int(p, "img_size", usi_config_int(c, "data.img_size"), 1);
    if (e) {
        usi_params_free(p);
        return usi_error_prefix(e, "backbone: ");
    }
    *out = p;
    return NULL;
}

/* A teacher that reads a weights file (the `model` teacher) takes what the
 * file stores of its training for the options its config leaves unset:
 * the backbone, mean, std and interpolation. It then sees its input as it
 * was trained, rather than silently mis-normalised; set options win. A file
 * that can't be read is the teacher's to report when it opens it. */
static usi_error *teacher_from_weights(usi_params *p)
{
    usi_st_file *f = NULL;
    const char *path = NULL;
    if (!usi_params_is_set(p, "weights")) return NULL;
    usi_error *e = usi_params_get_string(p, "weights", &path);
    if (!e && *path) e = usi_st_read_metadata(path, &f);
    else if (!e) return NULL;
    if (e) {
        usi_error_free(e);
        return NULL;
    }
    static const char *const keys[] = {"backbone", "mean", "std", "interpolation"};
    usi_strbuf taken = {0};
    for (size_t i = 0; !e && i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = usi_st_metadata(f, keys[i]);
        if (!v || !usi_params_has(p, keys[i]) || usi_params_is_set(p, keys[i])) continue;
        int quote = i == 0 || i == 3; /* strings */
        char set[2048], origin[2300];
        snprintf(set, sizeof set, "%s=%s%.1800s%s", keys[i], quote ? "\"" : "", v, quote ? "\"" : "");
        snprintf(origin, sizeof origin, "teacher.weights %s: its metadata %s = %.64s", path, keys[i], v);
        e = usi_params_assign(p, set, origin);
        usi_strbuf_addf(&taken, "%s%s", taken.len ? ", " : "", keys[i]);
    }
    if (!e && taken.len) usi_log(USI_LOG_INFO, "teacher: %s from %s", taken.data, path);
    usi_strbuf_free(&taken);
    usi_st_free(f);
    return e;
}

usi_error *usi_setup_fill_config(usi_config *c)
{
    USI_TRY(usi_data_fill_config(c));
    int64_t img = usi_config_int(c, "data.img_size"), classes = 0;
    const char *tr = usi_config_string(c, "data.train");
    size_t n = 0;
    usi_error *e = *tr ? usi_dataset_count_classes(tr, &n) : NULL;
    if (e) {
        usi_log(USI_LOG_INFO, "num_classes left as configured: %s", usi_error_message(e));
        usi_error_free(e);
        e = NULL;
    }
    classes = (int64_t)n;
    const usi_selected *sel[2] = {usi_config_backbone(c), usi_config_teacher(c)};
    for (int i = 0; i < 2; i++) {
        if (!sel[i] || !sel[i]->params) continue;
        if (classes) e = fill_int(sel[i]->params, "num_classes", classes, 1);
        if (!e) e = fill_int(sel[i]->params, "img_size", img, 0);
        if (!e && i == 1) e = teacher_from_weights(sel[i]->params);
        if (e) return usi_error_prefix(e, "%s: ", i ? "teacher" : "backbone");
    }
    return NULL;
}

usi_error *usi_setup_teacher_params(const usi_config *c, int32_t classes, usi_params **out)
{
    usi_params *p = usi_params_copy(usi_config_teacher(c)->params);
    if (!p) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = fill_int(p, "num_classes", classes, 1);
    if (!e) e = fill_int(p, "img_size", usi_config_int(c, "data.img_size"), 0);
    if (e) {
        usi_params_free(p);
        return usi_error_prefix(e, "teacher: ");
    }
    *out = p;
    return NULL;
}

usi_error *usi_setup_loader(const usi_config *c, const usi_dataset *ds, const usi_augchain *ch, int train,
                            int32_t rank, int32_t world, usi_loader **out)
{
    usi_loader_opts o = usi_data_loader_opts(c, train);
    o.rank = rank;
    o.world = world;
    /* Repeated augmentation keeps an epoch about the dataset's size, as
     * timm's RASampler (used by the USI reference) does: each image comes
     * `repeats` times, differently augmented, and the epoch covers about
     * 1/repeats of the images, so "300 epochs" means what it means there. */
    if (train && o.repeats > 1) o.epoch_samples = (int64_t)usi_dataset_size(ds);
    USI_TRY(usi_loader_new(ds, ch, &o, out));
    float mean[3], std[3];
    usi_data_norm(c, mean, std);
    usi_loader_set_norm(*out, mean, std);
    return NULL;
}

usi_error *usi_setup_student_input(const usi_config *c, const usi_params *bb, usi_student_input *out)
{
    *out = (usi_student_input){.chans = 3};
    usi_data_norm_f64(c, out->mean, out->std);
    int64_t chans = 3;
    if (usi_params_has(bb, "in_chans")) USI_TRY(usi_params_get_int(bb, "in_chans", &chans));
    if (chans != 1 && chans != 3)
        return usi_error_new(USI_ERR_UNSUPPORTED, "backbone.in_chans = %lld: usi reads images as RGB (3 channels) "
                             "or grey (1); set backbone.in_chans to 1 or 3", (long long)chans);
    if (chans == 1) usi_student_input_grey(out->mean, out->std, out);
    return NULL;
}

void usi_student_input_grey(const double mean[3], const double std[3], usi_student_input *out)
{
    static const double luma[3] = {0.299, 0.587, 0.114};
    double m = 0, s = 0;
    for (int k = 0; k < 3; k++) {
        m += luma[k] * mean[k];
        s += luma[k] * std[k];
    }
    /* image[c] = (p_c - mean[c]) / std[c], so (sum luma[c] p_c - m) / s is
     * sum over c of luma[c] std[c] / s * image[c]. */
    usi_student_input grey = {.chans = 1, .mean = {m, m, m}, .std = {s, s, s}};
    for (int k = 0; k < 3; k++) grey.weight[k] = (float)(luma[k] * std[k] / s);
    *out = grey;
}

usi_tensor *usi_setup_student_node(usi_graph *g, usi_tensor *images, const usi_student_input *si)
{
    if (!si || si->chans == 3 || !images) return images;
    const usi_graph_api *G = usi_graph_api_get();
    int64_t shape[4] = {1, 3, 1, 1};
    usi_tensor *w = G->constant(g, "grey_weights", USI_DTYPE_F32, 4, shape, si->weight);
    int32_t channels = 1;
    return G->reduce(g, USI_REDUCE_SUM, G->binary(g, USI_BIN_MUL, images, w), 1, &channels, 1);
}

usi_error *usi_setup_eval_graph(usi_device *dev, const usi_component *bb, void *inst, const usi_student_input *si,
                                int32_t batch, int32_t side, int32_t classes, uint64_t seed, usi_graph **g,
                                usi_tensor **x, usi_tensor **logits)
{
    *g = usi_graph_new(dev, 0, seed);
    if (!*g) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    int64_t shape[4] = {batch, 3, side, side};
    *x = usi_graph_input(*g, "images", USI_DTYPE_F32, 4, shape);
    USI_TRY(usi_call_build_backbone(*g, bb, inst, usi_setup_student_node(*g, *x, si), logits));
    const usi_graph_api *G = usi_graph_api_get();
    if (G->ndim(*logits) != 2 || G->dim(*logits, 0) != batch || G->dim(*logits, 1) != classes)
        return usi_error_new(USI_ERR_INVALID, "backbone '%s' gives an output of %d dims, not [%d, %d]",
                             bb->name, (int)G->ndim(*logits), batch, classes);
    usi_graph_mark_output(*logits);
    usi_graph_set_frozen(*g, "", 1);
    return usi_graph_compile(*g);
}

void usi_topk_count(const float *logits, const int32_t *labels, int32_t n, int32_t classes, int64_t *top1,
                    int64_t *top5)
{
    for (int32_t i = 0; i < n; i++) {
        const float *row = logits + (size_t)i * (size_t)classes;
        float mine = row[labels[i]];
        int32_t above = 0;
        for (int32_t k = 0; k < classes; k++)
            if (row[k] > mine) above++;
        *top1 += above == 0;
        *top5 += above < 5;
    }
}

usi_error *usi_setup_device(const usi_config *c, usi_device **out)
{
    const char *name = usi_config_string(c, "device");
    /* One GPU per process on each host: "cuda" is the local rank's. */
    char local[32];
    if (!strcmp(name, "cuda") && usi_dist_world() > 1) {
        snprintf(local, sizeof local, "cuda:%d", (int)usi_dist_local_rank());
        name = local;
    }
    USI_TRY(usi_device_open(name, out));
    /* Resolve has turned "mixed" into "fp32" where the device has no bf16. */
    return usi_device_set_mixed(*out, !strcmp(usi_config_string(c, "precision"), "mixed"));
}
