/* Backbone plugins against timm: each is loaded through the real registry and
 * built on the shape-only graph; its parameters and buffers must equal the
 * reference timm state_dict listing (ref/<model>.txt, written from timm by
 * gen_reference.py) name by name, in order, with the same shapes and dtypes,
 * and its trainable parameter count must equal timm's.
 *
 * usage: test_backbones REF_DIR PLUGIN_DIR...
 */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/host.h"
#include "plugin/params.h"
#include "plugin/registry.h"
#include "util/error.h"
#include "shape_graph.h"

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

static const char *ref_dir;
static usi_registry *reg;
/* The real host table with the shape-only graph in place of the engine. */
static usi_host_api test_host;

typedef struct model_case {
    const char *name;
    int64_t timm_params;     /* trainable, 1000 classes: timm's count        */
    int32_t n_blocks;        /* residual-capable blocks, for drop_path       */
} model_case;

static const model_case cases[] = {
    {"resnet18", 11689512, 8},
    {"resnet34", 21797672, 16},
    {"resnet50", 25557032, 16},
    {"mobilenetv3_small_100", 2542856, 12},
    {"mobilenetv3_large_100", 5483032, 16},
};

/* Options a case overrides; zero / NULL keep the schema default. */
typedef struct build_opts {
    int64_t num_classes, img_size, in_chans;
    const char *stem;
    double drop_path_rate;
} build_opts;

/* Hand every loaded plugin the test host. The registry already ran the
 * handshake with the real host; running it again only swaps the table the
 * plugin keeps, the same file and component objects stay in use. */
static int swap_host_tables(void)
{
    for (size_t i = 0; i < usi_registry_count(reg); i++) {
        const usi_loaded *l = usi_registry_at(reg, i);
        void *h = dlopen(l->path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
        if (!h) {
            printf("FAIL %s is not loaded: %s\n", l->path, dlerror());
            return -1;
        }
        usi_plugin_entry_fn entry = (usi_plugin_entry_fn)dlsym(h, USI_PLUGIN_ENTRY_SYMBOL);
        usi_negotiate n = {sizeof n, USI_ABI_MAJOR, USI_ABI_MINOR, &test_host, 0, 0, NULL};
        usi_error *e = entry ? entry(&n) : NULL;
        dlclose(h);
        if (!entry || e) {
            printf("FAIL %s: second handshake refused\n", l->path);
            return -1;
        }
    }
    return 0;
}

static usi_error *set_opts(usi_params *p, const build_opts *o)
{
    usi_error *e = NULL;
    if (o->num_classes) e = usi_params_set_int(p, "num_classes", o->num_classes);
    if (!e && o->img_size) e = usi_params_set_int(p, "img_size", o->img_size);
    if (!e && o->in_chans) e = usi_params_set_int(p, "in_chans", o->in_chans);
    if (!e && o->stem) e = usi_params_set_string(p, "stem", o->stem);
    if (!e && o->drop_path_rate > 0) e = usi_params_set_float(p, "drop_path_rate", o->drop_path_rate);
    return e;
}

/* Build `name` on a fresh shape-only graph; *out gets the logits or NULL. */
static usi_graph *build(const char *name, const build_opts *o, const int64_t in_shape[4],
                        usi_tensor **out)
{
    *out = NULL;
    const usi_loaded *l = usi_registry_find(reg, USI_KIND_BACKBONE, name);
    CHECK(l, "%s: not registered", name);
    if (!l) return NULL;
    usi_params *p = usi_params_new(l->comp);
    usi_error *e = p ? set_opts(p, o) : NULL;
    void *inst = NULL;
    if (p && !e) e = l->comp->create(p, &inst);
    CHECK(p && !e, "%s: create: %s", name, e ? usi_error_message(e) : "no params");
    if (e) usi_error_free(e);
    usi_graph *g = inst ? sg_new(1) : NULL;
    if (g) {
        const usi_backbone_ops *ops = l->comp->ops;
        *out = ops->build(inst, g, sg_input(g, 4, in_shape));
        l->comp->destroy(inst);
    }
    usi_params_free(p);
    return g;
}

/* ---- the reference listing ---- */

typedef struct ref_line {
    char kind[8], name[160], dtype[8], shape[64];
} ref_line;

static ref_line *read_ref(const char *model, int32_t *n, int64_t *params)
{
    char path[512], line[512];
    snprintf(path, sizeof path, "%s/%s.txt", ref_dir, model);
    FILE *f = fopen(path, "r");
    CHECK(f, "cannot open %s", path);
    if (!f) return NULL;
    ref_line *lines = NULL;
    int32_t cap = 0;
    *n = 0;
    *params = -1;
    while (fgets(line, sizeof line, f)) {
        long long v;
        if (line[0] == '#') {
            if (sscanf(line, "# params %lld", &v) == 1) *params = v;
            continue;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            ref_line *nl = realloc(lines, (size_t)cap * sizeof *nl);
            if (!nl) break;
            lines = nl;
        }
        ref_line *r = &lines[*n];
        if (sscanf(line, "%7s %159s %7s %63s", r->kind, r->name, r->dtype, r->shape) == 4) (*n)++;
    }
    fclose(f);
    return lines;
}

static void entry_shape(const sg_entry *e, char *buf, size_t cap)
{
    size_t k = 0;
    if (!e->ndim) snprintf(buf, cap, "-");
    for (int32_t i = 0; i < e->ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, i ? ",%lld" : "%lld", (long long)e->shape[i]);
}

/* ---- checks ---- */

static int out_is(const usi_tensor *t, int64_t n, int64_t classes)
{
    int64_t s[USI_MAX_DIMS];
    return sg_shape(t, s) == 2 && s[0] == n && s[1] == classes;
}

static const sg_entry *find_entry(const usi_graph *g, const char *name)
{
    for (int32_t i = 0; i < sg_count(g); i++)
        if (!strcmp(sg_at(g, i)->name, name)) return sg_at(g, i);
    return NULL;
}

static int near(double a, double b) { return fabs(a - b) <= 1e-9 * (fabs(b) + 1); }

static void check_init(const usi_graph *g, const char *model, const char *name, int32_t kind,
                       double a, double b)
{
    const sg_entry *e = find_entry(g, name);
    CHECK(e, "%s: no %s", model, name);
    if (!e) return;
    const usi_init *i = &e->init;
    int ok = i->kind == kind;
    if (kind == USI_INIT_CONSTANT) ok = ok && near(i->value, a);
    if (kind == USI_INIT_NORMAL) ok = ok && near(i->value, a) && near(i->std, b);
    if (kind == USI_INIT_UNIFORM) ok = ok && near(i->lo, a) && near(i->hi, b);
    if (kind == USI_INIT_KAIMING_NORMAL || kind == USI_INIT_KAIMING_UNIFORM)
        ok = ok && i->fan == (int32_t)a && near(i->gain, b);
    CHECK(ok, "%s: %s init kind %d (%g %g %g %g), want %d (%g %g)", model, name, i->kind,
          i->value, i->std, i->lo, i->gain, kind, a, b);
}

/* Batch-norm state starts where PyTorch starts it, in every model. */
static void check_bn_inits(const usi_graph *g, const char *model)
{
    for (int32_t i = 0; i < sg_count(g); i++) {
        const sg_entry *e = sg_at(g, i);
        const char *dot = strrchr(e->name, '.');
        const char *leaf = dot ? dot + 1 : e->name;
        double v = e->init.kind == USI_INIT_ONES ? 1.0 : e->init.kind == USI_INIT_ZEROS ? 0.0
                 : e->init.kind == USI_INIT_CONSTANT ? e->init.value : NAN;
        if (!strcmp(leaf, "running_var"))
            CHECK(v == 1.0, "%s: %s starts at %g", model, e->name, v);
        if (!strcmp(leaf, "running_mean") || !strcmp(leaf, "num_batches_tracked"))
            CHECK(v == 0.0, "%s: %s starts at %g", model, e->name, v);
    }
}

static void check_model_inits(const usi_graph *g, const model_case *c)
{
    check_bn_inits(g, c->name);
    if (!strncmp(c->name, "resnet", 6)) {
        int bottleneck = !strcmp(c->name, "resnet50");
        int64_t feat = bottleneck ? 2048 : 512;
        check_init(g, c->name, "conv1.weight", USI_INIT_KAIMING_NORMAL, USI_FAN_OUT, sqrt(2.0));
        check_init(g, c->name, "layer3.1.conv2.weight", USI_INIT_KAIMING_NORMAL, USI_FAN_OUT,
                   sqrt(2.0));
        check_init(g, c->name, "bn1.weight", USI_INIT_CONSTANT, 1.0, 0);
        check_init(g, c->name, "layer1.0.bn1.weight", USI_INIT_CONSTANT, 1.0, 0);
        check_init(g, c->name, bottleneck ? "layer2.1.bn3.weight" : "layer2.1.bn2.weight",
                   USI_INIT_CONSTANT, 0.0, 0);
        check_init(g, c->name, "layer2.0.downsample.1.weight", USI_INIT_CONSTANT, 1.0, 0);
        check_init(g, c->name, "fc.weight", USI_INIT_KAIMING_UNIFORM, USI_FAN_IN, 1 / sqrt(3.0));
        check_init(g, c->name, "fc.bias", USI_INIT_UNIFORM, -1 / sqrt((double)feat),
                   1 / sqrt((double)feat));
    } else {
        /* _init_weight_goog: std sqrt(2 / (k*k*out/groups)) */
        check_init(g, c->name, "conv_stem.weight", USI_INIT_NORMAL, 0, sqrt(2.0 / (9 * 16)));
        check_init(g, c->name, "blocks.1.0.conv_dw.weight", USI_INIT_NORMAL, 0, sqrt(2.0 / 9));
        check_init(g, c->name, "blocks.2.0.conv_dw.weight", USI_INIT_NORMAL, 0, sqrt(2.0 / 25));
        check_init(g, c->name, "blocks.2.0.se.conv_reduce.bias", USI_INIT_ZEROS, 0, 0);
        check_init(g, c->name, "conv_head.bias", USI_INIT_ZEROS, 0, 0);
        check_init(g, c->name, "classifier.weight", USI_INIT_UNIFORM, -1 / sqrt(1000.0),
                   1 / sqrt(1000.0));
        check_init(g, c->name, "classifier.bias", USI_INIT_ZEROS, 0, 0);
    }
}

/* Names, order, kinds, dtypes and shapes against timm; counts; logits. */
static void test_reference(const model_case *c)
{
    int32_t n_ref = 0;
    int64_t ref_params = -1;
    ref_line *ref = read_ref(c->name, &n_ref, &ref_params);
    if (!ref) return;
    CHECK(ref_params == c->timm_params, "%s: reference says %lld params, timm's count is %lld",
          c->name, (long long)ref_params, (long long)c->timm_params);

    static const int64_t in[4] = {2, 3, 224, 224};
    build_opts o = {0};
    usi_tensor *out;
    usi_graph *g = build(c->name, &o, in, &out);
    if (!g) {
        free(ref);
        return;
    }
    CHECK(!sg_error(g), "%s: build error: %s", c->name, sg_error(g));
    CHECK(out_is(out, 2, 1000), "%s: logits are not [2, 1000]", c->name);
    CHECK(sg_scope_depth(g) == 0, "%s: %d scopes left pushed", c->name, sg_scope_depth(g));
    CHECK(sg_count(g) == n_ref, "%s: %d tensors registered, timm has %d", c->name, sg_count(g),
          n_ref);

    int64_t trainable = 0;
    int shown = 0;
    for (int32_t i = 0; i < sg_count(g); i++) {
        const sg_entry *e = sg_at(g, i);
        char shape[64], dtype[8];
        entry_shape(e, shape, sizeof shape);
        snprintf(dtype, sizeof dtype, "%s", e->dtype == USI_DTYPE_I64 ? "i64"
                                            : e->dtype == USI_DTYPE_F32 ? "f32" : "?");
        if (e->is_param) trainable += e->numel;
        if (i >= n_ref) continue;
        const ref_line *r = &ref[i];
        int same = !strcmp(r->name, e->name) && !strcmp(r->shape, shape) &&
                   !strcmp(r->dtype, dtype) && !strcmp(r->kind, e->is_param ? "param" : "buffer");
        if (!same && shown++ < 5)
            CHECK(0, "%s #%d: got %s %s %s %s, timm has %s %s %s %s", c->name, i,
                  e->is_param ? "param" : "buffer", e->name, dtype, shape, r->kind, r->name,
                  r->dtype, r->shape);
    }
    CHECK(shown == 0, "%s: %d tensors differ from timm", c->name, shown);
    CHECK(trainable == c->timm_params, "%s: %lld trainable params, timm has %lld", c->name,
          (long long)trainable, (long long)c->timm_params);
    check_model_inits(g, c);
    sg_free(g);
    free(ref);
}

/* 28 and 32 px inputs give logits with either stem; the small stem keeps a
 * bigger last feature map but the same names. */
static void test_small_inputs(const model_case *c)
{
    static const int64_t sides[2] = {28, 32};
    static const char *stems[3] = {NULL, "timm", "small"};
    for (int si = 0; si < 2; si++)
        for (int st = 0; st < 3; st++)
            for (int with_img_size = 0; with_img_size < 2; with_img_size++) {
                int64_t in[4] = {3, 3, sides[si], sides[si]};
                build_opts o = {.num_classes = 10, .stem = stems[st]};
                if (with_img_size) o.img_size = sides[si];
                usi_tensor *out;
                usi_graph *g = build(c->name, &o, in, &out);
                if (!g) continue;
                CHECK(!sg_error(g) && out_is(out, 3, 10),
                      "%s at %lld px, stem %s, img_size %lld: %s", c->name, (long long)sides[si],
                      stems[st] ? stems[st] : "default", (long long)o.img_size,
                      sg_error(g) ? sg_error(g) : "logits are not [3, 10]");
                const sg_entry *first = sg_count(g) ? sg_at(g, 0) : NULL;
                /* auto picks the small stem only when img_size says small */
                int small = st == 2 || (st == 0 && with_img_size);
                int64_t k = first && first->ndim == 4 ? first->shape[3] : 0;
                if (!strncmp(c->name, "resnet", 6))
                    CHECK(k == (small ? 3 : 7), "%s: conv1 is %lldx%lld with stem %s",
                          c->name, (long long)k, (long long)k, small ? "small" : "timm");
                sg_free(g);
            }
}

static void test_options(const model_case *c)
{
    static const int64_t in[4] = {2, 3, 64, 64};
    usi_tensor *out;
    build_opts o = {0};
    usi_graph *g = build(c->name, &o, in, &out);
    if (g) CHECK(sg_op_count(g, SG_OP_DROP_PATH) == 0, "%s: drop_path with rate 0", c->name);
    sg_free(g);

    /* stochastic depth rises linearly from 0 at the first block, so every
     * residual block but the first gets a drop_path */
    o.drop_path_rate = 0.2;
    g = build(c->name, &o, in, &out);
    if (g) {
        int64_t n = sg_op_count(g, SG_OP_DROP_PATH);
        int64_t want = !strncmp(c->name, "resnet", 6) ? c->n_blocks - 1
                     : !strcmp(c->name, "mobilenetv3_small_100") ? 6 : 9;
        CHECK(n == want, "%s: %lld drop_path nodes, want %lld", c->name, (long long)n,
              (long long)want);
    }
    sg_free(g);

    /* one-channel input */
    static const int64_t grey[4] = {2, 1, 32, 32};
    build_opts mono = {.in_chans = 1};
    g = build(c->name, &mono, grey, &out);
    if (g) {
        CHECK(out && !sg_error(g), "%s: in_chans 1: %s", c->name, sg_error(g));
        CHECK(sg_count(g) && sg_at(g, 0)->shape[1] == 1, "%s: stem conv is not 1-channel",
              c->name);
    }
    sg_free(g);
    g = build(c->name, &mono, in, &out); /* 3 channels in, 1 declared */
    if (g) CHECK(!out, "%s: channel mismatch was accepted", c->name);
    sg_free(g);
}

/* A host whose graph builder lacks an op gets NULL from build, not a crash. */
static void test_incomplete_host(const model_case *c)
{
    usi_graph_api partial = *sg_api();
    partial.drop_path = NULL;
    const usi_graph_api *saved = test_host.graph;
    test_host.graph = &partial;
    static const int64_t in[4] = {1, 3, 32, 32};
    build_opts o = {0};
    usi_tensor *out;
    usi_graph *g = build(c->name, &o, in, &out);
    if (g) CHECK(!out && sg_count(g) == 0, "%s: built on an incomplete graph API", c->name);
    sg_free(g);
    test_host.graph = saved;
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
    for (size_t i = 0; i < usi_registry_problem_count(reg); i++)
        CHECK(0, "%s: %s", usi_registry_problem(reg, i)->path,
              usi_registry_problem(reg, i)->message);
    test_host = *usi_host_api_get();
    test_host.graph = sg_api();
    if (swap_host_tables()) failures++;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int before = failures;
        const usi_loaded *l = usi_registry_find(reg, USI_KIND_BACKBONE, cases[i].name);
        CHECK(l, "%s is not registered", cases[i].name);
        if (!l) continue;
        test_reference(&cases[i]);
        test_small_inputs(&cases[i]);
        test_options(&cases[i]);
        test_incomplete_host(&cases[i]);
        printf("%s %s\n", failures > before ? "FAIL" : "ok", cases[i].name);
    }
    usi_registry_free(reg);
    printf("%s\n", failures ? "FAILED" : "all backbone checks passed");
    return failures ? 1 : 0;
}
