/* The `model` teacher: any backbone plugin plus a safetensors weights file
 * with timm names (e.g. the best.safetensors of an earlier `usi train`). The
 * host runs it frozen, in eval mode, on the student's batch converted to the
 * normalisation and size declared here. */
#include <stdio.h>
#include <string.h>
#include <usi/plugin.h>

static const usi_host_api *host;

#define P_INT(n, d, lo, hi, doc) {sizeof(usi_param_desc), n, USI_PARAM_INT, 0, doc, d, 0, NULL, lo, hi, NULL}
#define P_STR(n, d, ch, doc) {sizeof(usi_param_desc), n, USI_PARAM_STRING, 0, doc, 0, 0, d, 1, 0, ch}
#define P_LIST(n, d, lo, hi, doc) {sizeof(usi_param_desc), n, USI_PARAM_FLOAT_LIST, 0, doc, 0, 0, d, lo, hi, NULL}

static const usi_param_desc params[] = {
    P_STR("backbone", "resnet50", NULL, "backbone component the teacher is built from (unset: the one the weights file names)"),
    P_STR("weights", "", NULL, "safetensors file with the backbone's weights (timm names)"),
    P_INT("num_classes", 1000, 1, 1e6, "classes the weights predict (must equal the data's)"),
    P_INT("img_size", 224, 8, 4096, "input side the teacher sees; the batch is resized to it"),
    P_LIST("mean", "0.485, 0.456, 0.406", -10, 10, "per-channel mean the teacher was trained with (unset: the weights file's)"),
    P_LIST("std", "0.229, 0.224, 0.225", 1e-6, 100, "per-channel std the teacher was trained with (unset: the weights file's)"),
    P_STR("interpolation", "bilinear", "bilinear|bicubic|nearest", "how the batch is resized to img_size (unset: the weights file's)"),
    P_STR("backbone_options", "", NULL, "more options for the backbone, libconfig text: \"stem = \\\"small\\\";\""),
};

typedef struct teacher {
    const char *backbone, *weights, *interp, *extra;
    int64_t classes, side;
    double mean[3], std[3];
    char options[1024];
} teacher;

static teacher instances[16]; /* a run holds a few teachers at most */
static int used[16];

static usi_error *read_list(const usi_params *p, const char *name, double out[3])
{
    size_t n = 0;
    usi_error *e = host->param_float_list(p, name, out, 3, &n);
    if (!e && n == 1) out[1] = out[2] = out[0]; /* one value: every channel's (a grey model's file) */
    if (!e && n != 3 && n != 1)
        e = host->error_new(USI_ERR_INVALID, "teacher 'model': %s needs 3 values (or 1 for all), got %zu", name, n);
    return e;
}

static usi_error *model_create(const usi_params *p, void **out)
{
    int slot = 0;
    while (slot < 16 && used[slot]) slot++;
    if (slot == 16) return host->error_new(USI_ERR_INVALID, "teacher 'model': too many instances");
    teacher *t = &instances[slot];
    memset(t, 0, sizeof *t);
    usi_error *e = host->param_string(p, "backbone", &t->backbone);
    if (!e) e = host->param_string(p, "weights", &t->weights);
    if (!e) e = host->param_string(p, "interpolation", &t->interp);
    if (!e) e = host->param_string(p, "backbone_options", &t->extra);
    if (!e) e = host->param_int(p, "num_classes", &t->classes);
    if (!e) e = host->param_int(p, "img_size", &t->side);
    if (!e) e = read_list(p, "mean", t->mean);
    if (!e) e = read_list(p, "std", t->std);
    if (!e && !USI_HAS_FIELD(host, build_backbone))
        e = host->error_new(USI_ERR_VERSION, "teacher 'model' needs a host with build_backbone");
    if (e) return e;
    snprintf(t->options, sizeof t->options, "num_classes = %lld; img_size = %lld; %s", (long long)t->classes,
             (long long)t->side, t->extra);
    used[slot] = 1;
    *out = t;
    return NULL;
}

static void model_destroy(void *inst) { used[(teacher *)inst - instances] = 0; }

static usi_error *model_spec(void *inst, usi_teacher_spec *out)
{
    const teacher *t = inst;
    out->img_size = (int32_t)t->side;
    out->interpolation = !strcmp(t->interp, "bicubic") ? USI_INTERP_BICUBIC
                         : !strcmp(t->interp, "nearest") ? USI_INTERP_NEAREST : USI_INTERP_BILINEAR;
    for (int c = 0; c < 3; c++) {
        out->mean[c] = (float)t->mean[c];
        out->std[c] = (float)t->std[c];
    }
    out->num_classes = (int32_t)t->classes;
    out->weights = t->weights;
    return NULL;
}

static usi_tensor *model_build(void *inst, usi_graph *g, usi_tensor *input)
{
    const teacher *t = inst;
    return host->build_backbone(g, t->backbone, t->options, input);
}

static const usi_teacher_ops ops = {sizeof(usi_teacher_ops), model_spec, model_build, NULL};

static const usi_component model_component = {
    sizeof(usi_component), USI_KIND_TEACHER, 0, "model", "1.0.0",
    "a backbone plugin with trained weights (safetensors, timm names)",
    params, sizeof params / sizeof params[0], model_create, model_destroy, &ops,
};

static const usi_component *const components[] = {&model_component};
static const usi_plugin_desc desc = {sizeof(usi_plugin_desc), "usi_teacher_model", "USI", "Apache-2.0", "1.0.0",
                                     components, 1};

USI_PLUGIN_EXPORT usi_error *usi_plugin_entry(usi_negotiate *n)
{
    host = n->host;
    return usi_negotiate_reply(n, &desc);
}
