/* Backbone plugins on the real engine: each model is built through the
 * registry and the core's graph builder, its parameters and buffers are
 * checked against timm's listing (ref/<model>.txt), then every tensor is
 * overwritten with the fixed pattern of gen_reference.py and the logits of a
 * 2x3x64x64 input (or the one its file names) must equal timm's
 * (ref/<model>.logits.txt), in eval mode
 * and in train mode (batch statistics). A training step must then give
 * finite, non-zero classifier gradients, also for a 1-channel 28x28 input
 * with the small stem, dropout and stochastic depth, and one plain SGD step
 * on a fixed 28x28 batch must lower the loss.
 *
 * usage: test_backbones_engine REF_DIR PLUGIN_DIR...
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/optim_args.h"
#include "device.h"
#include "graph/graph.h"
#include "plugin/host.h"
#include "plugin/params.h"
#include "plugin/registry.h"
#include "util/error.h"
#include "cases.h"

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

/* Logits may differ from timm's float64 ones by this much, relative to the
 * largest of them, or by twice what timm's own float32 run differs where
 * that is more (deep networks in train mode, see gen_reference.py). */
#define LOGITS_RTOL 1e-4

/* gen_reference.py's WEIGHT_GAIN, unless a logits file's "gain" line says
 * otherwise. */
#define PATTERN_GAIN 2.4

typedef struct ref_entry {
    char kind[8], name[160];
} ref_entry;

typedef struct logits_ref {
    int64_t input[4];
    int64_t classes;
    double eval[MAX_LOGITS], train[MAX_LOGITS];
    int n_eval, n_train;
    double fp32_eval, fp32_train; /* timm's own float32 error, relative */
    double gain;                  /* conv and linear weights' scale       */
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
    r->gain = PATTERN_GAIN;
    while (fgets(line, sizeof line, f)) {
        long long a, b, c, d;
        if (sscanf(line, "input %lld %lld %lld %lld", &a, &b, &c, &d) == 4) {
            r->input[0] = a, r->input[1] = b, r->input[2] = c, r->input[3] = d;
        } else if (sscanf(line, "classes %lld", &a) == 1) {
            r->classes = a;
        } else if (sscanf(line, "gain %lf", &r->gain) == 1) {
            continue;
        } else if (!strncmp(line, "eval ", 5)) {
            r->n_eval = read_values(line + 5, r->eval);
        } else if (!strncmp(line, "train ", 6)) {
            r->n_train = read_values(line + 6, r->train);
        } else if (sscanf(line, "fp32 %lf %lf", &r->fp32_eval, &r->fp32_train) == 2) {
            continue;
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
 * state_dict, with weights at gain s / sqrt(fan_in). */
static void pattern_fill(const usi_param_info *p, int32_t index, double gain)
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
            v = gain * s / sqrt(fan_in);
        else
            v = 1 + 0.2 * s;
        d[j] = (float)v;
    }
    test_write(p->tensor, d);
}

/* Params and buffers in recording order equal timm's, kind by kind; every
 * tensor gets its pattern. Returns 0 when all matched. */
static int check_and_fill(usi_graph *g, const char *model, const ref_entry *ref, int32_t n_ref,
                          double gain)
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
            pattern_fill(&p, i, gain);
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
static void check_classifier_grad(usi_graph *g, const bb_case *c)
{
    const char *model = c->name;
    usi_tensor *fc = usi_graph_find(g, c->classifier);
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

/* Creates c's component with num_classes, img_size, in_chans and the given
 * stem (NULL: the default), a float option (NULL: none) and builds it on a
 * fresh graph with an image input and an I32 label input. */
typedef struct built {
    usi_graph *g;
    usi_tensor *x, *labels, *logits;
    void *inst;
    usi_params *params;
    const usi_loaded *l;
} built;

typedef struct opts {
    int64_t classes, in_chans;
    const char *stem;
    double drop_rate, drop_path_rate;
} opts;

static usi_error *build_model(const bb_case *c, const opts *o, const int64_t in[4],
                              int training, uint64_t seed, built *b)
{
    memset(b, 0, sizeof *b);
    b->l = usi_registry_find(reg, USI_KIND_BACKBONE, c->name);
    if (!b->l) return usi_error_new(USI_ERR_INVALID, "not registered");
    b->params = usi_params_new(b->l->comp);
    usi_error *e = usi_params_set_int(b->params, "num_classes", o->classes);
    /* the side is the training size (it sizes position tables) */
    if (!e) e = usi_params_set_int(b->params, "img_size", in[3]);
    if (!e) e = usi_params_set_int(b->params, "in_chans", o->in_chans);
    if (!e && o->stem) e = usi_params_set_string(b->params, "stem", o->stem);
    if (!e && o->drop_rate > 0) e = usi_params_set_float(b->params, "drop_rate", o->drop_rate);
    if (!e && o->drop_path_rate > 0)
        e = usi_params_set_float(b->params, "drop_path_rate", o->drop_path_rate);
    if (!e) e = b->l->comp->create(b->params, &b->inst);
    b->g = usi_graph_new(test_device(), training, seed);
    b->x = usi_graph_input(b->g, "images", USI_DTYPE_F32, 4, in);
    b->labels = usi_graph_input(b->g, "labels", USI_DTYPE_I32, 1, &in[0]);
    const usi_backbone_ops *ops = b->l->comp->ops;
    if (!e) e = usi_graph_build(b->g, ops->build, b->inst, b->x, &b->logits);
    return e;
}

static void free_model(built *b)
{
    usi_graph_free(b->g);
    if (b->inst) b->l->comp->destroy(b->inst);
    usi_params_free(b->params);
}

/* Adds the cross-entropy loss, compiles, fills the input with the pattern
 * and the labels with label(j), and runs forward. */
static usi_error *compile_and_run(built *b, int with_loss, int32_t (*label)(int64_t, int64_t),
                                  int64_t classes, usi_tensor **loss)
{
    usi_error *e = NULL;
    *loss = NULL;
    if (with_loss) {
        const usi_graph_api *api = usi_host_api_get()->graph;
        *loss = api->loss_ce(b->g, b->logits, b->labels, 0.0);
        e = usi_graph_set_loss(b->g, *loss);
    }
    if (!e) e = usi_graph_compile(b->g);
    if (!e) {
        float *xd = test_host(sizeof(float) * (size_t)usi_graph_numel(b->x));
        for (int64_t j = 0; j < usi_graph_numel(b->x); j++) xd[j] = (float)pattern(j, INPUT_INDEX);
        int32_t *yd = test_host(sizeof(int32_t) * (size_t)usi_graph_numel(b->labels));
        for (int64_t j = 0; j < usi_graph_numel(b->labels); j++) yd[j] = label(j, classes);
        test_write(b->x, xd);
        test_write(b->labels, yd);
        e = usi_graph_forward(b->g);
    }
    return e;
}

static int32_t label_mod(int64_t j, int64_t classes) { return (int32_t)(j % classes); }
static int32_t label_mod3(int64_t j, int64_t classes) { return (int32_t)(j * 3 % classes); }

/* Build, fill, run: compares the logits with timm's; in train mode also runs
 * a backward pass and checks the classifier's gradient. */
static void run_model(const bb_case *c, const ref_entry *ref, int32_t n_ref,
                      const logits_ref *lr, int training)
{
    const char *model = c->name;
    built b;
    usi_tensor *loss;
    /* keep timm's stem whatever the input size */
    opts o = {.classes = lr->classes, .in_chans = lr->input[1], .stem = "timm"};
    usi_error *e = build_model(c, &o, lr->input, training, 1234, &b);
    if (!e && check_and_fill(b.g, model, ref, n_ref, lr->gain))
        e = usi_error_new(USI_ERR_INVALID, "layout");
    if (!e) e = compile_and_run(&b, training, label_mod, lr->classes, &loss);
    const char *mode = training ? "train" : "eval";
    CHECK(!e, "%s (%s): %s", model, mode, e ? usi_error_message(e) : "");
    if (!e) {
        const float *y = test_value(b.logits);
        const double *want = training ? lr->train : lr->eval;
        int n = training ? lr->n_train : lr->n_eval;
        double scale = max_abs(want, n), worst = 0;
        int at = 0;
        for (int i = 0; i < n; i++) {
            double diff = fabs(y[i] - want[i]);
            if (isnan(diff) || diff > worst) worst = diff, at = i;
            if (isnan(diff)) break;
        }
        double rel = worst / (scale > 0 ? scale : 1);
        double fp32 = training ? lr->fp32_train : lr->fp32_eval;
        double tol = 2 * fp32 > LOGITS_RTOL ? 2 * fp32 : LOGITS_RTOL;
        printf("  %s %s: logits max relative error %.2e (timm in float32: %.2e)\n", model, mode,
               rel, fp32);
        CHECK(usi_graph_numel(b.logits) == n && rel <= tol,
              "%s (%s): logit %d is %.6g, timm %.6g (max diff %.3g, relative %.3g > %.3g)",
              model, mode, at, y[at], want[at], worst, rel, tol);
    }
    if (!e && training) {
        e = usi_graph_backward(b.g);
        CHECK(!e, "%s: backward: %s", model, e ? usi_error_message(e) : "");
        if (!e) check_classifier_grad(b.g, c);
    }
    if (e) usi_error_free(e);
    free_model(&b);
}

/* A Fashion-MNIST-like setting with every option away from its default:
 * 1-channel 28x28 input, 10 classes, the small stem chosen by img_size,
 * dropout and stochastic depth; one training step must run and give finite
 * logits and gradients. */
static void run_small_input(const bb_case *c)
{
    static const int64_t in[4] = {4, 1, 28, 28};
    built b;
    usi_tensor *loss;
    opts o = {.classes = 10, .in_chans = 1, .drop_rate = 0.2, .drop_path_rate = 0.1};
    usi_error *e = build_model(c, &o, in, 1, 99, &b);
    if (!e) e = compile_and_run(&b, 1, label_mod3, 10, &loss);
    if (!e) e = usi_graph_backward(b.g);
    CHECK(!e, "%s at 28x28x1: %s", c->name, e ? usi_error_message(e) : "");
    if (!e) {
        const float *y = test_value(b.logits);
        int finite = usi_graph_numel(b.logits) == in[0] * 10;
        for (int64_t j = 0; finite && j < usi_graph_numel(b.logits); j++) finite = isfinite(y[j]);
        CHECK(finite, "%s at 28x28x1: logits are not [4, 10] and finite", c->name);
        check_classifier_grad(b.g, c);
    }
    if (e) usi_error_free(e);
    free_model(&b);
}

/* Learning works at 28 px from the plugin's own initialisation: one plain
 * SGD step on a fixed batch lowers the loss on that batch (no dropout, so
 * both forward passes see the same function). */
#define SGD_LR 0.01

static void run_sgd_step(const bb_case *c)
{
    static const int64_t in[4] = {8, 3, 28, 28};
    built b;
    usi_tensor *loss;
    opts o = {.classes = 10, .in_chans = 3};
    usi_error *e = build_model(c, &o, in, 1, 7, &b);
    double before = NAN, after = NAN;
    if (!e) e = compile_and_run(&b, 1, label_mod3, 10, &loss);
    if (!e) before = *(const float *)test_value(loss);
    if (!e) e = usi_graph_backward(b.g);
    /* Plain SGD (no momentum, no decay) on the device over the flat blocks. */
    usi_graph_blocks blocks;
    usi_graph_get_blocks(b.g, &blocks);
    usi_optim_hp hp = {USI_OPT_SGD, SGD_LR, 0, 0, 0, 0, 0, 0};
    usi_optim_seg all = {0, blocks.n_trainable, 0};
    usi_dbuf *buf = NULL;
    if (!e) e = usi_dbuf_new(test_device(), blocks.n_trainable * sizeof(float), &buf);
    if (!e) e = usi_dbuf_optim_step(&hp, 1, blocks.params, blocks.grads, buf, NULL, &all, 1);
    usi_dbuf_free(buf);
    if (!e) {
        usi_graph_zero_grad(b.g);
        e = usi_graph_forward(b.g);
    }
    if (!e) after = *(const float *)test_value(loss);
    CHECK(!e, "%s SGD step: %s", c->name, e ? usi_error_message(e) : "");
    printf("  %s: loss %.5f -> %.5f after one SGD step at 28 px\n", c->name, before, after);
    CHECK(!e && after < before, "%s: one SGD step took the loss from %.6f to %.6f", c->name,
          before, after);
    if (e) usi_error_free(e);
    free_model(&b);
}

int main(int argc, char **argv)
{
    /* --shard K/N: the models m with m % N == K - 1 only, so the suite can
     * run the list as N tests side by side. */
    int shard = 0, shards = 1;
    if (argc > 2 && !strcmp(argv[1], "--shard")) {
        if (sscanf(argv[2], "%d/%d", &shard, &shards) != 2 || shards < 1 || shard < 1 || shard > shards) {
            fprintf(stderr, "%s: --shard wants K/N with 1 <= K <= N, not '%s'\n", argv[0], argv[2]);
            return 2;
        }
        shard--;
        argv += 2;
        argc -= 2;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: %s [--shard K/N] REF_DIR PLUGIN_DIR... [-- MODEL...]\n", argv[0]);
        return 2;
    }
    ref_dir = argv[1];
    reg = usi_registry_new(USI_ABI_MINOR_FLOOR);
    int first_model = argc;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            first_model = i + 1;
            break;
        }
        usi_error *e = usi_registry_scan(reg, argv[i]);
        CHECK(!e, "scan %s: %s", argv[i], e ? usi_error_message(e) : "");
        if (e) usi_error_free(e);
    }
    usi_device_set_threads(2);
    for (int32_t m = 0; m < BB_N_CASES; m++) {
        const bb_case *c = &bb_cases[m];
        int wanted = first_model >= argc;
        for (int i = first_model; i < argc; i++) wanted = wanted || !strcmp(argv[i], c->name);
        if (!wanted || m % shards != shard) continue;
        int before = failures;
        int32_t n_ref = 0;
        ref_entry *ref = read_listing(c->name, &n_ref);
        logits_ref lr;
        if (ref && read_logits(c->name, &lr) == 0) {
            run_model(c, ref, n_ref, &lr, 0);
            run_model(c, ref, n_ref, &lr, 1);
            run_small_input(c);
            run_sgd_step(c);
        } else {
            CHECK(0, "%s: reference files unreadable", c->name);
        }
        free(ref);
        printf("%s %s\n", failures > before ? "FAIL" : "ok", c->name);
    }
    usi_registry_free(reg);
    printf("%s\n", failures ? "FAILED" : "all engine checks passed");
    return failures ? 1 : 0;
}
