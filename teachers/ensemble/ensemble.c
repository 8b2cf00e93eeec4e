/* The `ensemble` teacher: several backbones whose class probabilities are
 * averaged. Its output is log(mean_i softmax(logits_i)), so the softmax the
 * distillation loss takes of it is exactly the mean probability (at
 * temperature 1; at T > 1 it is the mean probability sharpened or flattened
 * like any other logits).
 *
 * Member i is built under the name scope "m<i>", so its parameters are named
 * "m<i>." + its timm names, and one safetensors file holds the whole
 * ensemble. `usi weights merge OUT m0=A.safetensors m1=B.safetensors` makes
 * that file from the members' own weights files. */
#include <stdio.h>
#include <string.h>
#include <usi/plugin.h>

static const usi_host_api *host;

#define MAX_MEMBERS 16

#define P_INT(n, d, lo, hi, doc) {sizeof(usi_param_desc), n, USI_PARAM_INT, 0, doc, d, 0, NULL, lo, hi, NULL}
#define P_STR(n, d, ch, doc) {sizeof(usi_param_desc), n, USI_PARAM_STRING, 0, doc, 0, 0, d, 1, 0, ch}
#define P_LIST(n, d, lo, hi, doc) {sizeof(usi_param_desc), n, USI_PARAM_FLOAT_LIST, 0, doc, 0, 0, d, lo, hi, NULL}

static const usi_param_desc params[] = {
    P_STR("backbones", "", NULL,
          "member backbone components, comma-separated: \"resnet18, mobilenetv3_small_100\""),
    P_STR("weights", "", NULL,
          "ONE safetensors file with member i's tensors under \"m<i>.\" (m0.conv1.weight, ...); "
          "make it with `usi weights merge OUT m0=FILE0 m1=FILE1 ...`"),
    P_INT("num_classes", 1000, 1, 1e6, "classes every member predicts (must equal the data's)"),
    P_INT("img_size", 224, 8, 4096, "input side the members see; the batch is resized to it"),
    P_LIST("mean", "0.485, 0.456, 0.406", -10, 10, "per-channel mean the members were trained with"),
    P_LIST("std", "0.229, 0.224, 0.225", 1e-6, 100, "per-channel std the members were trained with"),
    P_STR("interpolation", "bilinear", "bilinear|bicubic|nearest", "how the batch is resized to img_size"),
    P_STR("backbone_options", "", NULL,
          "more options for every member, libconfig text: \"drop_rate = 0.0;\""),
};

typedef struct ensemble {
    const char *weights, *interp;
    int64_t classes, side;
    double mean[3], std[3];
    int32_t n;                            /* members                       */
    char names[MAX_MEMBERS][128];         /* backbone component names      */
    char options[1024];                   /* libconfig text for each member */
} ensemble;

static usi_error *read_list(const usi_params *p, const char *name, double out[3])
{
    size_t n = 0;
    usi_error *e = host->param_float_list(p, name, out, 3, &n);
    if (!e && n != 3) e = host->error_new(USI_ERR_INVALID, "teacher 'ensemble': %s needs 3 values, got %zu", name, n);
    return e;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* "a, b ,c" -> names a, b, c; an empty item is refused so that a stray comma
 * can't silently shift which weights prefix belongs to which member. */
static usi_error *split_backbones(ensemble *t, const char *list)
{
    const char *p = list;
    t->n = 0;
    for (;;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && is_space(*a)) a++;
        while (b > a && is_space(b[-1])) b--;
        if (a == b)
            return host->error_new(USI_ERR_INVALID,
                                   "teacher 'ensemble': backbones = \"%s\" has an empty name; give the member "
                                   "backbones comma-separated, e.g. \"resnet18, mobilenetv3_small_100\"", list);
        if (t->n == MAX_MEMBERS)
            return host->error_new(USI_ERR_INVALID, "teacher 'ensemble': more than %d backbones", MAX_MEMBERS);
        if ((size_t)(b - a) >= sizeof t->names[0])
            return host->error_new(USI_ERR_INVALID, "teacher 'ensemble': backbone name '%.*s' is too long",
                                   (int)(b - a), a);
        memcpy(t->names[t->n], a, (size_t)(b - a));
        t->names[t->n][b - a] = 0;
        t->n++;
        if (!*end) return NULL;
        p = end + 1;
    }
}

static usi_error *ensemble_create(const usi_params *p, void **out)
{
    if (!USI_HAS_FIELD(host, build_backbone))
        return host->error_new(USI_ERR_VERSION, "teacher 'ensemble' needs a host with build_backbone");
    ensemble *t = host->alloc(sizeof *t, 0);
    if (!t) return host->error_new(USI_ERR_NOMEM, "out of memory");
    memset(t, 0, sizeof *t);
    const char *list = NULL, *extra = NULL;
    usi_error *e = host->param_string(p, "backbones", &list);
    if (!e) e = host->param_string(p, "weights", &t->weights);
    if (!e) e = host->param_string(p, "interpolation", &t->interp);
    if (!e) e = host->param_string(p, "backbone_options", &extra);
    if (!e) e = host->param_int(p, "num_classes", &t->classes);
    if (!e) e = host->param_int(p, "img_size", &t->side);
    if (!e) e = read_list(p, "mean", t->mean);
    if (!e) e = read_list(p, "std", t->std);
    if (!e) e = split_backbones(t, list);
    if (!e && snprintf(t->options, sizeof t->options, "num_classes = %lld; img_size = %lld; %s",
                       (long long)t->classes, (long long)t->side, extra) >= (int)sizeof t->options)
        e = host->error_new(USI_ERR_INVALID, "teacher 'ensemble': backbone_options is too long");
    if (e) {
        host->free(t);
        return e;
    }
    *out = t;
    return NULL;
}

static void ensemble_destroy(void *inst) { host->free(inst); }

static usi_error *ensemble_spec(void *inst, usi_teacher_spec *out)
{
    const ensemble *t = inst;
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

static usi_tensor *ensemble_build(void *inst, usi_graph *g, usi_tensor *input)
{
    const ensemble *t = inst;
    const usi_graph_api *G = host->graph;
    usi_tensor *sum = NULL;
    for (int32_t i = 0; i < t->n; i++) {
        char scope[16];
        snprintf(scope, sizeof scope, "m%d", (int)i);
        G->push_scope(g, scope);
        usi_tensor *logits = host->build_backbone(g, t->names[i], t->options, input);
        G->pop_scope(g); /* before any return: scopes must balance */
        if (!logits) return NULL; /* the graph holds the error */
        usi_tensor *prob = G->softmax(g, logits);
        sum = sum ? G->binary(g, USI_BIN_ADD, sum, prob) : prob;
    }
    /* The log clamps at 1e-30, so a class every member rules out gets a
     * large negative logit rather than -inf. */
    usi_tensor *mean = G->scale(g, sum, 1.0 / (double)t->n);
    return G->activation(g, mean, USI_ACT_LOG, 0.0);
}

static const usi_teacher_ops ops = {sizeof(usi_teacher_ops), ensemble_spec, ensemble_build, NULL};

static const usi_component ensemble_component = {
    sizeof(usi_component), USI_KIND_TEACHER, 0, "ensemble", "1.0.0",
    "the mean class probability of several backbones (one merged safetensors file, \"m<i>.\" prefixes)",
    params, sizeof params / sizeof params[0], ensemble_create, ensemble_destroy, &ops,
};

static const usi_component *const components[] = {&ensemble_component};
static const usi_plugin_desc desc = {sizeof(usi_plugin_desc), "usi_teacher_ensemble", "USI", "Apache-2.0", "1.0.0",
                                     components, 1};

USI_PLUGIN_EXPORT usi_error *usi_plugin_entry(usi_negotiate *n)
{
    host = n->host;
    return usi_negotiate_reply(n, &desc);
}
