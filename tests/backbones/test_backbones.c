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
#include "train/optim.h"
#include "util/error.h"
#include "cases.h"
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

/* Options a case overrides; zero / NULL keep the schema default. */
typedef struct build_opts {
    int64_t num_classes, img_size, in_chans;
    const char *stem;
    double drop_path_rate;
    const char *float_opt[2]; /* further float options, by name */
    double float_val[2];
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
    for (int i = 0; i < 2; i++)
        if (!e && o->float_opt[i]) e = usi_params_set_float(p, o->float_opt[i], o->float_val[i]);
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
    if (kind == USI_INIT_TRUNC_NORMAL) ok = ok && near(i->std, a) && i->lo <= -2 * a && i->hi >= 2 * a;
    if (kind == USI_INIT_XAVIER_UNIFORM) ok = ok && near(i->gain, 1.0);
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

/* _init_weight_goog, as timm's MobileNetV3 and EfficientNet use it: convs
 * normal with std sqrt(2 / (k*k*out/groups)), biases 0, the classifier
 * uniform +-1/sqrt(classes). */
static void check_goog_inits(const usi_graph *g, const char *m, int64_t stem)
{
    check_init(g, m, "conv_stem.weight", USI_INIT_NORMAL, 0, sqrt(2.0 / (9.0 * (double)stem)));
    check_init(g, m, "blocks.1.0.conv_dw.weight", USI_INIT_NORMAL, 0, sqrt(2.0 / 9));
    check_init(g, m, "blocks.2.0.conv_dw.weight", USI_INIT_NORMAL, 0, sqrt(2.0 / 25));
    check_init(g, m, "classifier.weight", USI_INIT_UNIFORM, -1 / sqrt(1000.0), 1 / sqrt(1000.0));
    check_init(g, m, "classifier.bias", USI_INIT_ZEROS, 0, 0);
}

static void check_model_inits(const usi_graph *g, const char *m)
{
    check_bn_inits(g, m);
    size_t len = strlen(m);
    if (!strncmp(m, "resnet", 6) || !strncmp(m, "resnext", 7) || !strncmp(m, "wide_resnet", 11) ||
        !strncmp(m, "seresnet", 8)) {
        /* timm.models.resnet: the "d" and "t" ResNets have the deep stem and
         * the average-pool shortcut, which moves the shortcut's BN to
         * downsample.2 */
        int basic = !strcmp(m, "resnet18") || !strcmp(m, "resnet34") || !strcmp(m, "resnet10t");
        int deep = !strncmp(m, "resnet", 6) && (m[len - 1] == 'd' || m[len - 1] == 't');
        int64_t feat = basic ? 512 : 2048;
        check_init(g, m, deep ? "conv1.0.weight" : "conv1.weight", USI_INIT_KAIMING_NORMAL,
                   USI_FAN_OUT, sqrt(2.0));
        if (deep) {
            check_init(g, m, "conv1.6.weight", USI_INIT_KAIMING_NORMAL, USI_FAN_OUT, sqrt(2.0));
            check_init(g, m, "conv1.1.weight", USI_INIT_CONSTANT, 1.0, 0);
        }
        check_init(g, m, "layer3.0.conv2.weight", USI_INIT_KAIMING_NORMAL, USI_FAN_OUT,
                   sqrt(2.0));
        check_init(g, m, "bn1.weight", USI_INIT_CONSTANT, 1.0, 0);
        check_init(g, m, "layer1.0.bn1.weight", USI_INIT_CONSTANT, 1.0, 0);
        check_init(g, m, basic ? "layer2.0.bn2.weight" : "layer2.0.bn3.weight",
                   USI_INIT_CONSTANT, 0.0, 0);
        check_init(g, m, deep ? "layer2.0.downsample.2.weight" : "layer2.0.downsample.1.weight",
                   USI_INIT_CONSTANT, 1.0, 0);
        if (!strncmp(m, "seresnet", 8)) {
            /* 256 channels squeezed to 16; biases nn.Conv2d's default */
            check_init(g, m, "layer1.0.se.fc1.weight", USI_INIT_KAIMING_NORMAL, USI_FAN_OUT,
                       sqrt(2.0));
            check_init(g, m, "layer1.0.se.fc1.bias", USI_INIT_UNIFORM, -1 / 16.0, 1 / 16.0);
            check_init(g, m, "layer1.0.se.fc2.bias", USI_INIT_UNIFORM, -1 / 4.0, 1 / 4.0);
        }
        check_init(g, m, "fc.weight", USI_INIT_KAIMING_UNIFORM, USI_FAN_IN, 1 / sqrt(3.0));
        check_init(g, m, "fc.bias", USI_INIT_UNIFORM, -1 / sqrt((double)feat),
                   1 / sqrt((double)feat));
    } else if (!strncmp(m, "mobilenetv3", 11)) {
        check_goog_inits(g, m, 16);
        check_init(g, m, "blocks.2.0.se.conv_reduce.bias", USI_INIT_ZEROS, 0, 0);
        check_init(g, m, "conv_head.bias", USI_INIT_ZEROS, 0, 0);
    } else if (!strncmp(m, "efficientnet", 12)) {
        /* B3 scales the 32-channel stem by 1.2 (B1, B2 and Lite round to 32) */
        check_goog_inits(g, m, strcmp(m, "efficientnet_b3") ? 32 : 40);
        if (!strncmp(m, "efficientnet_b", 14))
            check_init(g, m, "blocks.2.0.se.conv_reduce.bias", USI_INIT_ZEROS, 0, 0);
        check_init(g, m, "bn2.weight", USI_INIT_CONSTANT, 1.0, 0);
    } else if (!strncmp(m, "convnext", 8)) {
        /* trunc_normal(0.02) convs and linears, zero biases, gamma 1e-6 */
        check_init(g, m, "stem.0.weight", USI_INIT_TRUNC_NORMAL, 0.02, 0);
        check_init(g, m, "stem.0.bias", USI_INIT_ZEROS, 0, 0);
        check_init(g, m, "stem.1.weight", USI_INIT_ONES, 0, 0);
        check_init(g, m, "stages.1.downsample.1.weight", USI_INIT_TRUNC_NORMAL, 0.02, 0);
        check_init(g, m, "stages.2.blocks.1.gamma", USI_INIT_CONSTANT, 1e-6, 0);
        check_init(g, m, "stages.2.blocks.1.mlp.fc1.weight", USI_INIT_TRUNC_NORMAL, 0.02, 0);
        check_init(g, m, "stages.2.blocks.1.mlp.fc2.bias", USI_INIT_ZEROS, 0, 0);
        check_init(g, m, "head.fc.weight", USI_INIT_TRUNC_NORMAL, 0.02, 0);
        check_init(g, m, "head.fc.bias", USI_INIT_ZEROS, 0, 0);
    } else if (strstr(m, "_patch16_") || strstr(m, "_patch32_")) {
        /* init_weights_vit_timm; the patch conv keeps PyTorch's default */
        double patch = strstr(m, "_patch32_") ? 32 : 16, b = 1 / sqrt(3.0 * patch * patch);
        check_init(g, m, "cls_token", USI_INIT_NORMAL, 0, 1e-6);
        check_init(g, m, "pos_embed", USI_INIT_TRUNC_NORMAL, 0.02, 0);
        check_init(g, m, "patch_embed.proj.weight", USI_INIT_KAIMING_UNIFORM, USI_FAN_IN,
                   1 / sqrt(3.0));
        check_init(g, m, "patch_embed.proj.bias", USI_INIT_UNIFORM, -b, b);
        check_init(g, m, "blocks.3.attn.qkv.weight", USI_INIT_TRUNC_NORMAL, 0.02, 0);
        check_init(g, m, "blocks.3.attn.qkv.bias", USI_INIT_ZEROS, 0, 0);
        check_init(g, m, "blocks.3.mlp.fc2.weight", USI_INIT_TRUNC_NORMAL, 0.02, 0);
        check_init(g, m, "blocks.3.norm2.weight", USI_INIT_ONES, 0, 0);
        check_init(g, m, "head.weight", USI_INIT_TRUNC_NORMAL, 0.02, 0);
        check_init(g, m, "head.bias", USI_INIT_ZEROS, 0, 0);
        if (strstr(m, "_distilled_")) {
            check_init(g, m, "dist_token", USI_INIT_TRUNC_NORMAL, 0.02, 0);
            check_init(g, m, "head_dist.weight", USI_INIT_TRUNC_NORMAL, 0.02, 0);
            check_init(g, m, "head_dist.bias", USI_INIT_ZEROS, 0, 0);
        }
    } else if (!strncmp(m, "mixer", 5)) {
        double patch = strstr(m, "32_") ? 32 : 16;
        double lecun = sqrt(1 / (3.0 * patch * patch)) / .87962566103423978;
        check_init(g, m, "stem.proj.weight", USI_INIT_TRUNC_NORMAL, lecun, 0);
        check_init(g, m, "stem.proj.bias", USI_INIT_ZEROS, 0, 0);
        check_init(g, m, "blocks.2.mlp_tokens.fc1.weight", USI_INIT_XAVIER_UNIFORM, 0, 0);
        check_init(g, m, "blocks.2.mlp_tokens.fc1.bias", USI_INIT_NORMAL, 0, 1e-6);
        check_init(g, m, "blocks.2.mlp_channels.fc2.weight", USI_INIT_XAVIER_UNIFORM, 0, 0);
        check_init(g, m, "blocks.2.mlp_channels.fc2.bias", USI_INIT_NORMAL, 0, 1e-6);
        check_init(g, m, "norm.weight", USI_INIT_ONES, 0, 0);
        check_init(g, m, "head.weight", USI_INIT_ZEROS, 0, 0);
        check_init(g, m, "head.bias", USI_INIT_ZEROS, 0, 0);
    } else if (!strncmp(m, "tresnet", 7)) {
        /* convs kaiming-normal fan-out, SE biases nn.Conv2d's default, the
         * last BN of each branch at zero, fc normal(0, 0.01) */
        double planes = !strcmp(m, "tresnet_l") ? 76 : !strcmp(m, "tresnet_xl") ? 83 : 64;
        double feat = planes * 32;
        double b1 = 1 / sqrt(planes), b2 = 1 / sqrt(2 * planes);
        check_init(g, m, "body.conv1.conv.weight", USI_INIT_KAIMING_NORMAL, USI_FAN_OUT,
                   sqrt(2.0));
        check_init(g, m, "body.conv1.bn.weight", USI_INIT_CONSTANT, 1.0, 0);
        check_init(g, m, "body.layer1.0.conv1.bn.weight", USI_INIT_CONSTANT, 1.0, 0);
        check_init(g, m, "body.layer1.0.conv2.bn.weight", USI_INIT_CONSTANT, 0.0, 0);
        check_init(g, m, "body.layer3.1.conv2.bn.weight", USI_INIT_CONSTANT, 1.0, 0);
        check_init(g, m, "body.layer3.1.conv3.bn.weight", USI_INIT_CONSTANT, 0.0, 0);
        check_init(g, m, "body.layer2.0.downsample.1.bn.weight", USI_INIT_CONSTANT, 1.0, 0);
        check_init(g, m, "body.layer1.0.se.fc1.weight", USI_INIT_KAIMING_NORMAL, USI_FAN_OUT,
                   sqrt(2.0));
        check_init(g, m, "body.layer1.0.se.fc1.bias", USI_INIT_UNIFORM, -b1, b1);
        check_init(g, m, "body.layer1.0.se.fc2.bias", USI_INIT_UNIFORM, -1 / 8.0, 1 / 8.0);
        check_init(g, m, "body.layer3.0.se.fc1.bias", USI_INIT_UNIFORM, -b1 / 2, b1 / 2);
        check_init(g, m, "body.layer3.0.se.fc2.bias", USI_INIT_UNIFORM, -b2, b2);
        check_init(g, m, "head.fc.weight", USI_INIT_NORMAL, 0, 0.01);
        check_init(g, m, "head.fc.bias", USI_INIT_UNIFORM, -1 / sqrt(feat), 1 / sqrt(feat));
    } else if (!strncmp(m, "levit", 5)) {
        /* convs and Linears PyTorch's default, attention biases 0, the batch
         * norms of the blocks' projections and MLP outputs at 0, the
         * downsample's projection at 1, both heads trunc_normal(0.02) */
        const char *b = "stages.1.blocks.0.", *d = "stages.2.downsample.";
        char name[160];
        check_init(g, m, "stem.conv1.linear.weight", USI_INIT_KAIMING_UNIFORM, USI_FAN_IN,
                   1 / sqrt(3.0));
        check_init(g, m, "stem.conv4.bn.weight", USI_INIT_CONSTANT, 1.0, 0);
#define LV_CHECK(prefix, leaf, ...) \
    (snprintf(name, sizeof name, "%s%s", prefix, leaf), check_init(g, m, name, __VA_ARGS__))
        LV_CHECK(b, "attn.attention_biases", USI_INIT_ZEROS, 0, 0);
        LV_CHECK(b, "attn.qkv.linear.weight", USI_INIT_KAIMING_UNIFORM, USI_FAN_IN, 1 / sqrt(3.0));
        LV_CHECK(b, "attn.qkv.bn.weight", USI_INIT_CONSTANT, 1.0, 0);
        LV_CHECK(b, "attn.proj.ln.bn.weight", USI_INIT_CONSTANT, 0.0, 0);
        LV_CHECK(b, "mlp.ln1.bn.weight", USI_INIT_CONSTANT, 1.0, 0);
        LV_CHECK(b, "mlp.ln2.bn.weight", USI_INIT_CONSTANT, 0.0, 0);
        LV_CHECK(d, "attn_downsample.attention_biases", USI_INIT_ZEROS, 0, 0);
        LV_CHECK(d, "attn_downsample.q.ln.linear.weight", USI_INIT_KAIMING_UNIFORM, USI_FAN_IN,
                 1 / sqrt(3.0));
        LV_CHECK(d, "attn_downsample.proj.ln.bn.weight", USI_INIT_CONSTANT, 1.0, 0);
        LV_CHECK(d, "mlp.ln2.bn.weight", USI_INIT_CONSTANT, 0.0, 0);
#undef LV_CHECK
        check_init(g, m, "head.bn.weight", USI_INIT_CONSTANT, 1.0, 0);
        check_init(g, m, "head.linear.weight", USI_INIT_TRUNC_NORMAL, 0.02, 0);
        check_init(g, m, "head.linear.bias", USI_INIT_ZEROS, 0, 0);
        check_init(g, m, "head_dist.linear.weight", USI_INIT_TRUNC_NORMAL, 0.02, 0);
        check_init(g, m, "head_dist.linear.bias", USI_INIT_ZEROS, 0, 0);
    }
}

/* Names, order, kinds, dtypes and shapes against timm's listing ref/<ref>.txt
 * and the trainable count; the component is built with o at 224 px. */
static void test_reference(const char *ref_name, const char *component, const build_opts *o,
                           int64_t timm_params)
{
    int32_t n_ref = 0;
    int64_t ref_params = -1;
    ref_line *ref = read_ref(ref_name, &n_ref, &ref_params);
    if (!ref) return;
    CHECK(ref_params == timm_params, "%s: reference says %lld params, timm's count is %lld",
          ref_name, (long long)ref_params, (long long)timm_params);

    static const int64_t in[4] = {2, 3, 224, 224};
    usi_tensor *out;
    usi_graph *g = build(component, o, in, &out);
    if (!g) {
        free(ref);
        return;
    }
    CHECK(!sg_error(g), "%s: build error: %s", ref_name, sg_error(g));
    CHECK(out_is(out, 2, 1000), "%s: logits are not [2, 1000]", ref_name);
    CHECK(sg_scope_depth(g) == 0, "%s: %d scopes left pushed", ref_name, sg_scope_depth(g));
    CHECK(sg_count(g) == n_ref, "%s: %d tensors registered, timm has %d", ref_name, sg_count(g),
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
            CHECK(0, "%s #%d: got %s %s %s %s, timm has %s %s %s %s", ref_name, i,
                  e->is_param ? "param" : "buffer", e->name, dtype, shape, r->kind, r->name,
                  r->dtype, r->shape);
    }
    CHECK(shown == 0, "%s: %d tensors differ from timm", ref_name, shown);
    CHECK(trainable == timm_params, "%s: %lld trainable params, timm has %lld", ref_name,
          (long long)trainable, (long long)timm_params);
    if (!strcmp(ref_name, component)) check_model_inits(g, component);
    sg_free(g);
    free(ref);
}

/* The parameters timm's optimizer factory spares from weight decay, for
 * `model` (ref/no_weight_decay.txt: one line per model, its name and then
 * those parameters' names), as one string " a b c "; NULL when absent. */
static char *read_no_decay(const char *model)
{
    char path[512];
    snprintf(path, sizeof path, "%s/no_weight_decay.txt", ref_dir);
    FILE *f = fopen(path, "r");
    CHECK(f, "cannot open %s", path);
    if (!f) return NULL;
    char *line = NULL, *found = NULL;
    size_t cap = 0, len = strlen(model);
    ssize_t n;
    while (!found && (n = getline(&line, &cap, f)) > 0) {
        if (strncmp(line, model, len) != 0 || line[len] != ' ') continue;
        line[strcspn(line, "\n")] = 0;
        found = malloc(strlen(line + len) + 2);
        if (found) sprintf(found, "%s ", line + len);
    }
    free(line);
    fclose(f);
    CHECK(found, "%s: no line for %s", path, model);
    return found;
}

/* Which parameters AdamW decays: those timm's create_optimizer_v2 decays,
 * name by name (biases, 1-D parameters and each model's no_weight_decay()
 * list are spared). */
static void test_weight_decay(const char *model)
{
    char *spared = read_no_decay(model);
    if (!spared) return;
    static const int64_t in[4] = {2, 3, 224, 224};
    usi_tensor *out;
    build_opts o = {0};
    usi_graph *g = build(model, &o, in, &out);
    int wrong = 0;
    for (int32_t i = 0; g && i < sg_count(g); i++) {
        const sg_entry *e = sg_at(g, i);
        if (!e->is_param) continue;
        char key[200];
        snprintf(key, sizeof key, " %s ", e->name);
        int timm_decays = strstr(spared, key) == NULL;
        if (usi_param_decays(e->name, e->ndim) != timm_decays && wrong++ < 5)
            CHECK(0, "%s: %s (%d dims) %s weight decay, timm %s", model, e->name, (int)e->ndim,
                  timm_decays ? "gets no" : "gets", timm_decays ? "decays it" : "spares it");
    }
    CHECK(wrong == 0, "%s: %d parameters decay otherwise than in timm", model, wrong);
    if (g) sg_free(g);
    free(spared);
}

/* The first 4-D weight: the stem's (tokens and tables may come before it). */
static const sg_entry *first_4d(const usi_graph *g)
{
    for (int32_t i = 0; i < sg_count(g); i++)
        if (sg_at(g, i)->ndim == 4) return sg_at(g, i);
    return NULL;
}

/* 28 and 32 px inputs give logits with every stem that makes sense there;
 * the small stem keeps a bigger last feature map (or more tokens) under the
 * same names. Models with position tables need img_size to say the side,
 * and a stem that leaves nothing to classify must fail with a message. */
static void test_small_inputs(const bb_case *c)
{
    static const int64_t sides[2] = {28, 32};
    static const char *stems[3] = {NULL, "timm", "small"};
    for (int si = 0; si < 2; si++)
        for (int st = 0; st < 3; st++)
            for (int with_img_size = 0; with_img_size < 2; with_img_size++) {
                int64_t in[4] = {3, 3, sides[si], sides[si]};
                build_opts o = {.num_classes = 10, .stem = stems[st]};
                if (with_img_size) o.img_size = sides[si];
                /* auto picks the small stem only when img_size says small */
                int small = st == 2 || (st == 0 && with_img_size);
                int must_fail = (c->fixed_size && !with_img_size) ||
                                (!small && sides[si] < c->timm_min_side);
                usi_tensor *out;
                usi_graph *g = build(c->name, &o, in, &out);
                if (!g) continue;
                const char *how = stems[st] ? stems[st] : "default";
                if (must_fail) {
                    CHECK(!out, "%s at %lld px, stem %s, img_size %lld: built", c->name,
                          (long long)sides[si], how, (long long)o.img_size);
                    sg_free(g);
                    continue;
                }
                CHECK(!sg_error(g) && out_is(out, 3, 10),
                      "%s at %lld px, stem %s, img_size %lld: %s", c->name, (long long)sides[si],
                      how, (long long)o.img_size,
                      sg_error(g) ? sg_error(g) : "logits are not [3, 10]");
                const sg_entry *first = first_4d(g);
                int64_t k = first ? first->shape[3] : 0;
                int64_t want = small ? c->stem_k_small : c->stem_k_timm;
                CHECK(!want || k == want, "%s: stem kernel is %lldx%lld with stem %s, want %lld",
                      c->name, (long long)k, (long long)k, small ? "small" : "timm",
                      (long long)want);
                sg_free(g);
            }
}

static void test_options(const bb_case *c)
{
    static const int64_t in[4] = {2, 3, 64, 64};
    usi_tensor *out;
    build_opts o = {.img_size = 64};
    usi_graph *g = build(c->name, &o, in, &out);
    if (g) CHECK(sg_op_count(g, SG_OP_DROP_PATH) == 0, "%s: drop_path with rate 0", c->name);
    sg_free(g);

    /* stochastic depth rises linearly from 0 at the first block */
    o.drop_path_rate = 0.2;
    g = build(c->name, &o, in, &out);
    if (g) {
        int64_t n = sg_op_count(g, SG_OP_DROP_PATH);
        CHECK(n == c->drop_paths, "%s: %lld drop_path nodes, want %d", c->name, (long long)n,
              c->drop_paths);
    }
    sg_free(g);

    /* one-channel input */
    static const int64_t grey[4] = {2, 1, 32, 32};
    build_opts mono = {.in_chans = 1, .img_size = 32};
    g = build(c->name, &mono, grey, &out);
    if (g) {
        CHECK(out && !sg_error(g), "%s: in_chans 1: %s", c->name, sg_error(g));
        CHECK(first_4d(g) && first_4d(g)->shape[1] == 1, "%s: stem conv is not 1-channel",
              c->name);
    }
    sg_free(g);
    static const int64_t rgb[4] = {2, 3, 32, 32};
    g = build(c->name, &mono, rgb, &out); /* 3 channels in, 1 declared */
    if (g) CHECK(!out, "%s: channel mismatch was accepted", c->name);
    sg_free(g);
}

/* A host whose graph builder lacks an op gets NULL from build, not a crash. */
static void test_incomplete_host(const bb_case *c)
{
    usi_graph_api partial = *sg_api();
    partial.drop_path = NULL;
    const usi_graph_api *saved = test_host.graph;
    test_host.graph = &partial;
    static const int64_t in[4] = {1, 3, 32, 32};
    build_opts o = {.img_size = 32};
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

    for (int32_t i = 0; i < BB_N_CASES; i++) {
        const bb_case *c = &bb_cases[i];
        int before = failures;
        const usi_loaded *l = usi_registry_find(reg, USI_KIND_BACKBONE, c->name);
        CHECK(l, "%s is not registered", c->name);
        if (!l) continue;
        build_opts o = {0};
        test_reference(c->name, c->name, &o, c->timm_params);
        test_weight_decay(c->name);
        test_small_inputs(c);
        test_options(c);
        test_incomplete_host(c);
        printf("%s %s\n", failures > before ? "FAIL" : "ok", c->name);
    }
    for (int32_t i = 0; i < BB_N_VARIANTS; i++) {
        const bb_variant *v = &bb_variants[i];
        int before = failures;
        build_opts o = {.float_opt = {v->opt[0], v->opt[1]}, .float_val = {v->val[0], v->val[1]}};
        test_reference(v->ref, v->component, &o, v->timm_params);
        if (v->opt[0])
            printf("%s %s (%s with %s %g, %s %g)\n", failures > before ? "FAIL" : "ok", v->ref,
                   v->component, v->opt[0], v->val[0], v->opt[1], v->val[1]);
        else
            printf("%s %s (listing only)\n", failures > before ? "FAIL" : "ok", v->ref);
    }
    usi_registry_free(reg);
    printf("%s\n", failures ? "FAILED" : "all backbone checks passed");
    return failures ? 1 : 0;
}
