/* Backbone plugins on the real engine: each model is built through the
 * registry and the core's graph builder, its parameters and buffers are
 * checked against timm's listing (ref/<model>.txt), then every tensor is
 * overwritten with the fixed pattern of gen_reference.py and the logits of a
 * 2x3x64x64 input must equal timm's (ref/<model>.logits.txt), in eval mode
 * and in train mode (batch statistics). A training step must then give
 * finite, non-zero classifier gradients, also for a 1-channel 28x28 input
 * with the small stem, dropout and stochastic depth.
 *
 * usage: test_backbones_engine REF_DIR PLUGIN_DIR...
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "graph/graph.h"
#include "plugin/host.h"
#include "plugin/params.h"
#include "plugin/registry.h"
#include "util/error.h"

static int failures;
#define CHECK(cond, ...)                                                           \
    do {                                                                           \
        if (!(cond)) {                                                             \
            failures++;                                                            \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                            \
            printf(__VA_ARGS__);                                                   \
            printf("\n");                                                          \
        }                                                                          \
    } while (0)

#define MAX_LOGITS 64

static const char *ref_dir;
static usi_registry *reg;

static const char *const models[] = {"resnet18", "resnet34", "resnet50",
                                     "mobilenetv3_small_100", "mobilenetv3_large_100"};

typedef struct ref_entry {
    char kind[8], name[160];
} ref_entry;

typedef struct logits_ref {
    int64_t input[4];
    int64_t classes;
    double eval[MAX_LOGITS], train[MAX_LOGITS];
    int n_eval, n_train;
} logits_ref;

static ref_entry *read_listing(const char *model, int32_t *n)
{
    char path[512], line[512], dtype[8], shape[64];
    snprintf(path, sizeof path, "%s/%s.txt", ref_dir, model);
    FILE *f = fopen(path, "r");
    CHECK(f, "cannot open %s", path);
    if (!f) return NULL;
    ref_entry *v = NULL;
    int32_t cap = 0;
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            ref_entry *nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) break;
            v = nv;
        }
        if (sscanf(line, "%7s %159s %7s %63s", v[*n].kind, v[*n].name, dtype, shape) == 4) (*n)++;
    }
    fclose(f);
    return v;
}

static int read_values(char *s, double *out)
{
    int n = 0;
    for (char *tok = strtok(s, " \n"); tok && n < MAX_LOGITS; tok = strtok(NULL, " \n"))
        out[n++] = strtod(tok, NULL);
    return n;
}

static int read_logits(const char *model, logits_ref *r)
{
    char path[512], line[4096];
    snprintf(path, sizeof path, "%s/%s.logits.txt", ref_dir, model);
    FILE *f = fopen(path, "r");
    CHECK(f, "cannot open %s", path);
    if (!f) return -1;
    memset(r, 0, sizeof *r);
    while (fgets(line, sizeof line, f)) {
        long long a, b, c, d;
        if (sscanf(line, "input %lld %lld %lld %lld", &a, &b, &c, &d) == 4) {
            r->input[0] = a, r->input[1] = b, r->input[2] = c, r->input[3] = d;
        } else if (sscanf(line, "classes %lld", &a) == 1) {
            r->classes = a;
        } else if (!strncmp(line, "eval ", 5)) {
            r->n_eval = read_values(line + 5, r->eval);
        } else if (!strncmp(line, "train ", 6)) {
            r->n_train = read_values(line + 6, r->train);
        }
    }
    fclose(f);
    int64_t want = r->input[0] * r->classes;
    return want > 0 && r->n_eval == want && r->n_train == want ? 0 : -1;
}

#define INPUT_INDEX 100003 /* gen_reference.py's INPUT_INDEX */

/* gen_reference.py's pattern(): uniform in [-1, 1) from a 32-bit hash of
 * (element j, tensor index), the same bits as its numpy version. */
static double pattern(int64_t j, int64_t index)
{
    uint32_t x = (uint32_t)((uint64_t)j * 2654435761u + (uint64_t)(index * 40503 + 12345));
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return (double)x / 4294967296.0 * 2 - 1;
}

/* gen_reference.py's pattern_fill, for tensor number `index` of timm's
 * state_dict. */
static void pattern_fill(const usi_param_info *p, int32_t index)
{
    const char *dot = strrchr(p->name, '.');
    const char *leaf = dot ? dot + 1 : p->name;
    if (p->dtype != USI_DTYPE_F32) {
        test_write(p->tensor, test_host((size_t)p->numel * 8));
        return;
    }
    float *d = test_host(sizeof(float) * (size_t)p->numel);
    double fan_in = p->ndim >= 2 ? (double)p->numel / (double)p->shape[0] : 1.0;
    for (int64_t j = 0; j < p->numel; j++) {
        double s = pattern(j, index), v;
        if (!strcmp(leaf, "running_var"))
            v = 1 + 0.5 * s * s;
        else if (!strcmp(leaf, "bias") || !strcmp(leaf, "running_mean"))
            v = 0.1 * s;
        else if (p->ndim >= 2)
            v = 2.4 * s / sqrt(fan_in);
        else
            v = 1 + 0.2 * s;
        d[j] = (float)v;
    }
    test_write(p->tensor, d);
}

/* Params and buffers in recording order equal timm's, kind by kind; every
 * tensor gets its pattern. Returns 0 when all matched. */
static int check_and_fill(usi_graph *g, const char *model, const ref_entry *ref, int32_t n_ref)
{
    int bad = 0;
    for (int kind = 0; kind < 2; kind++) {
        const char *want = kind ? "buffer" : "param";
        int32_t n = kind ? usi_graph_num_buffers(g) : usi_graph_num_params(g), k = 0;
        for (int32_t i = 0; i < n_ref; i++) {
            if (strcmp(ref[i].kind, want)) continue;
            usi_param_info p;
            int32_t found = 0; /* the *_at getters return 1 when found */
            if (k < n) found = kind ? usi_graph_buffer_at(g, k, &p) : usi_graph_param_at(g, k, &p);
            k++;
            if (!found || strcmp(p.name, ref[i].name)) {
                if (bad++ < 3)
                    CHECK(0, "%s: %s %d is %s, timm has %s", model, want, k - 1,
                          found ? p.name : "missing", ref[i].name);
                continue;
            }
            pattern_fill(&p, i);
        }
        CHECK(k == n, "%s: %d %ss, timm has %d", model, n, want, k);
        if (k != n) bad++;
    }
    return bad;
}

static double max_abs(const double *v, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++) m = fabs(v[i]) > m ? fabs(v[i]) : m;
    return m;
}

/* After a backward pass the classifier weight has a finite, non-zero
 * gradient. */
static void check_classifier_grad(usi_graph *g, const char *model)
{
    usi_tensor *fc = usi_graph_find(g, strncmp(model, "resnet", 6) ? "classifier.weight"
                                                                  : "fc.weight");
    const float *gr = fc ? test_grad(fc) : NULL;
    double sum = 0;
    int finite = gr != NULL;
    for (int64_t j = 0; gr && j < usi_graph_numel(fc); j++) {
        finite = finite && isfinite(gr[j]);
        sum += fabs(gr[j]);
    }
    CHECK(finite && sum > 0, "%s: classifier gradient is %s", model,
          gr ? "zero or not finite" : "missing");
}

/* Build, fill, run: compares the logits with timm's; in train mode also runs
 * a backward pass and checks the classifier's gradient. */
static void run_model(const char *model, const ref_entry *ref, int32_t n_ref,
                      const logits_ref *lr, int training)
{
    const usi_loaded *l = usi_registry_find(reg, USI_KIND_BACKBONE, model);
    CHECK(l, "%s is not registered", model);
    if (!l) return;
    usi_params *params = usi_params_new(l->comp);
    usi_error *e = usi_params_set_int(params, "num_classes", lr->classes);
    /* keep timm's stem whatever the input size */
    if (!e) e = usi_params_set_string(params, "stem", "timm");
    void *inst = NULL;
    if (!e) e = l->comp->create(params, &inst);
    usi_graph *g = usi_graph_new(test_device(), training, 1234);
    usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, lr->input);
    usi_tensor *labels = usi_graph_input(g, "labels", USI_DTYPE_I32, 1, &lr->input[0]);
    usi_tensor *logits = NULL;
    const usi_backbone_ops *ops = l->comp->ops;
    if (!e) e = usi_graph_build(g, ops->build, inst, x, &logits);
    if (!e && check_and_fill(g, model, ref, n_ref)) e = usi_error_new(USI_ERR_INVALID, "layout");
    if (!e && training) {
        const usi_graph_api *api = usi_host_api_get()->graph;
        e = usi_graph_set_loss(g, api->loss_ce(g, logits, labels, 0.0));
    }
    if (!e) e = usi_graph_compile(g);
    if (!e) {
        float *xd = test_host(sizeof(float) * (size_t)usi_graph_numel(x));
        for (int64_t j = 0; j < usi_graph_numel(x); j++) xd[j] = (float)pattern(j, INPUT_INDEX);
        int32_t *yd = test_host(sizeof(int32_t) * (size_t)usi_graph_numel(labels));
        for (int64_t j = 0; j < usi_graph_numel(labels); j++) yd[j] = (int32_t)(j % lr->classes);
        test_write(x, xd);
        test_write(labels, yd);
        e = usi_graph_forward(g);
    }
    const char *mode = training ? "train" : "eval";
    CHECK(!e, "%s (%s): %s", model, mode, e ? usi_error_message(e) : "");
    if (!e) {
        const float *y = test_value(logits);
        const double *want = training ? lr->train : lr->eval;
        int n = training ? lr->n_train : lr->n_eval;
        double tol = 1e-3 * max_abs(want, n) + 1e-6, worst = 0;
        int at = 0;
        for (int i = 0; i < n; i++) {
            double diff = fabs(y[i] - want[i]);
            if (isnan(diff) || diff > worst) worst = diff, at = i;
            if (isnan(diff)) break;
        }
        CHECK(usi_graph_numel(logits) == n && worst <= tol,
              "%s (%s): logit %d is %.6g, timm %.6g (max diff %.3g, tolerance %.3g)", model,
              mode, at, y[at], want[at], worst, tol);
    }
    if (!e && training) {
        e = usi_graph_backward(g);
        CHECK(!e, "%s: backward: %s", model, e ? usi_error_message(e) : "");
        if (!e) check_classifier_grad(g, model);
    }
    if (e) usi_error_free(e);
    usi_graph_free(g);
    if (inst) l->comp->destroy(inst);
    usi_params_free(params);
}

/* A Fashion-MNIST-like setting with every option away from its default:
 * 1-channel 28x28 input, 10 classes, the small stem chosen by img_size,
 * dropout and stochastic depth; one training step must run and give finite
 * logits and gradients. */
static void run_small_input(const char *model)
{
    const usi_loaded *l = usi_registry_find(reg, USI_KIND_BACKBONE, model);
    if (!l) return;
    static const int64_t in[4] = {4, 1, 28, 28};
    usi_params *params = usi_params_new(l->comp);
    usi_error *e = usi_params_set_int(params, "num_classes", 10);
    if (!e) e = usi_params_set_int(params, "img_size", 28);
    if (!e) e = usi_params_set_int(params, "in_chans", 1);
    if (!e) e = usi_params_set_float(params, "drop_rate", 0.2);
    if (!e) e = usi_params_set_float(params, "drop_path_rate", 0.1);
    void *inst = NULL;
    if (!e) e = l->comp->create(params, &inst);
    usi_graph *g = usi_graph_new(test_device(), 1, 99);
    usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, in);
    usi_tensor *labels = usi_graph_input(g, "labels", USI_DTYPE_I32, 1, &in[0]);
    usi_tensor *logits = NULL;
    const usi_backbone_ops *ops = l->comp->ops;
    if (!e) e = usi_graph_build(g, ops->build, inst, x, &logits);
    if (!e) {
        const usi_graph_api *api = usi_host_api_get()->graph;
        e = usi_graph_set_loss(g, api->loss_ce(g, logits, labels, 0.0));
    }
    if (!e) e = usi_graph_compile(g);
    if (!e) {
        float *xd = test_host(sizeof(float) * (size_t)usi_graph_numel(x));
        for (int64_t j = 0; j < usi_graph_numel(x); j++) xd[j] = (float)pattern(j, INPUT_INDEX);
        int32_t *yd = test_host(sizeof(int32_t) * (size_t)usi_graph_numel(labels));
        for (int64_t j = 0; j < in[0]; j++) yd[j] = (int32_t)(j * 3 % 10);
        test_write(x, xd);
        test_write(labels, yd);
        e = usi_graph_forward(g);
    }
    if (!e) e = usi_graph_backward(g);
    CHECK(!e, "%s at 28x28x1: %s", model, e ? usi_error_message(e) : "");
    if (!e) {
        const float *y = test_value(logits);
        int finite = usi_graph_numel(logits) == in[0] * 10;
        for (int64_t j = 0; finite && j < usi_graph_numel(logits); j++) finite = isfinite(y[j]);
        CHECK(finite, "%s at 28x28x1: logits are not [4, 10] and finite", model);
        check_classifier_grad(g, model);
    }
    if (e) usi_error_free(e);
    usi_graph_free(g);
    if (inst) l->comp->destroy(inst);
    usi_params_free(params);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s REF_DIR PLUGIN_DIR...\n", argv[0]);
        return 2;
    }
    ref_dir = argv[1];
    reg = usi_registry_new(USI_ABI_MINOR_FLOOR);
    for (int i = 2; i < argc; i++) {
        usi_error *e = usi_registry_scan(reg, argv[i]);
        CHECK(!e, "scan %s: %s", argv[i], e ? usi_error_message(e) : "");
        if (e) usi_error_free(e);
    }
    usi_device_set_threads(2);
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        int before = failures;
        int32_t n_ref = 0;
        ref_entry *ref = read_listing(models[m], &n_ref);
        logits_ref lr;
        if (ref && read_logits(models[m], &lr) == 0) {
            run_model(models[m], ref, n_ref, &lr, 0);
            run_model(models[m], ref, n_ref, &lr, 1);
            run_small_input(models[m]);
        } else {
            CHECK(0, "%s: reference files unreadable", models[m]);
        }
        free(ref);
        printf("%s %s\n", failures > before ? "FAIL" : "ok", models[m]);
    }
    usi_registry_free(reg);
    printf("%s\n", failures ? "FAILED" : "all engine checks passed");
    return failures ? 1 : 0;
}
