/* Loading real plugin files: the v1.0 fixture must load and work; each
 * fixture that breaks a rule must be refused with a reason naming the file;
 * a broken file never stops the others; unsafe permissions are refused. */
#include <errno.h>
#include <stdio.h>

#include "check.h"
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graph/graph.h"
#include "plugin/custom_op.h"
#include "plugin/host.h"
#include "plugin/params.h"
#include "plugin/registry.h"
#include "util/error.h"

static const char *fixture_dir;

static char *fixture(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s.so", fixture_dir, name);
    return path;
}

/* The error from loading `name` must mention both the file and `expect`. */
static void expect_refused(const char *name, const char *expect)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_load(r, fixture(name));
    const char *msg = e ? usi_error_message(e) : "(loaded)";
    CHECK(e != NULL, "%s loaded but should be refused", name);
    CHECK(e && strstr(msg, fixture(name)), "%s: message does not name the file: %s", name, msg);
    CHECK(e && strstr(msg, expect), "%s: expected '%s' in: %s", name, expect, msg);
    CHECK(usi_registry_count(r) == 0, "%s: refused plugin left %zu components", name, usi_registry_count(r));
    CHECK(usi_registry_problem_count(r) == 1, "%s: %zu problems recorded", name, usi_registry_problem_count(r));
    usi_error_free(e);
    usi_registry_free(r);
}

/* Its backbone records a 1.0-sized custom op (40 bytes): a 1.1 host must
 * take it (a check against today's sizeof would refuse it) and see no CUDA
 * kernel in it. */
static void build_v1_0_custom_op(const usi_component *c, void *inst)
{
    struct fixture_inst {
        int64_t num_classes;
        const usi_custom_op *op;
    } *fi = inst;
    CHECK(fi->op && fi->op->struct_size == USI_CUSTOM_OP_STRUCT_SIZE_1_0, "the 1.0 op is not 1.0-sized");
    CHECK(usi_custom_op_devices(fi->op) == USI_CUSTOM_ON_CPU, "a 1.0 op read as having kernels %u",
          usi_custom_op_devices(fi->op));
    usi_graph *g = usi_graph_new(usi_device_cpu(), 0, 1);
    int64_t shape[4] = {1, 3, 2, 2};
    usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, shape), *y = NULL;
    const usi_backbone_ops *ops = c->ops;
    usi_error *e = usi_graph_build(g, ops->build, inst, x, &y);
    CHECK(!e, "a 1.0 custom op was refused: %s", usi_error_message(e));
    const usi_graph_api *G = usi_graph_api_get();
    CHECK(!e && G->ndim(y) == 4 && G->dim(y, 1) == 3 && G->dim(y, 3) == 2,
          "the 1.0 op's shape function was not used");
    usi_error_free(e);
    usi_graph_free(g);
}

static void test_v1_0_fixture_loads_and_works(void)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_load(r, fixture("fixture_v1_0"));
    CHECK(!e, "v1.0 fixture refused: %s", usi_error_message(e));
    usi_error_free(e);
    CHECK(usi_registry_count(r) == 3, "expected 3 components, got %zu", usi_registry_count(r));
    const usi_loaded *net = usi_registry_find(r, USI_KIND_BACKBONE, "fixture_net");
    CHECK(net && net->abi_major == 1 && net->abi_minor == 0, "fixture_net missing or wrong ABI");
    CHECK(usi_registry_find(r, USI_KIND_AUGMENT, "fixture_copy"), "fixture_copy missing");
    CHECK(usi_registry_find(r, USI_KIND_TEACHER, "fixture_teacher"), "fixture_teacher missing");
    CHECK(!usi_registry_find(r, USI_KIND_AUGMENT, "fixture_net"), "found a backbone as an augment");
    if (!net) goto out;

    /* Options go through the host's param service into the plugin. */
    usi_params *p = usi_params_new(net->comp);
    e = usi_params_set_int(p, "num_classes", 10);
    CHECK(!e, "set num_classes: %s", usi_error_message(e));
    usi_error_free(e);
    void *inst = NULL;
    e = net->comp->create(p, &inst);
    CHECK(!e && inst && *(int64_t *)inst == 10, "create did not see num_classes = 10");
    usi_error_free(e);
    if (inst) build_v1_0_custom_op(net->comp, inst);
    net->comp->destroy(inst);
    usi_params_free(p);

    /* A sample augment writes through the host's image_alloc. */
    const usi_loaded *copy = usi_registry_find(r, USI_KIND_AUGMENT, "fixture_copy");
    const usi_augment_ops *ops = copy ? copy->comp->ops : NULL;
    uint8_t pixels[3 * 2 * 3];
    for (size_t i = 0; i < sizeof pixels; i++) pixels[i] = (uint8_t)(i * 7 + 1);
    usi_image src = {sizeof src, 3, 2, 3, 9, pixels}, dst = {sizeof dst, 0, 0, 0, 0, NULL};
    e = ops ? ops->apply_sample(NULL, &src, &dst, NULL) : usi_error_new(USI_ERR_INVALID, "no ops");
    CHECK(!e && dst.width == 3 && dst.height == 2 && memcmp(dst.data, pixels, sizeof pixels) == 0,
          "augment output differs from its input");
    usi_error_free(e);
    free(dst.data);
out:
    usi_registry_free(r);
}

static void test_minor_floor(void)
{
    usi_registry *r = usi_registry_new(1);
    usi_error *e = usi_registry_load(r, fixture("fixture_v1_0"));
    CHECK(e && strstr(usi_error_message(e), "older than the oldest"),
          "minor 0 accepted by a host whose floor is 1: %s", usi_error_message(e));
    usi_error_free(e);
    usi_registry_free(r);
}

static void test_twins_name_both_files(void)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s", fixture("twin_a"));
    snprintf(b, sizeof b, "%s", fixture("twin_b"));
    usi_error_free(usi_registry_load(r, a));
    usi_error_free(usi_registry_load(r, b));
    const usi_loaded *l = (const usi_loaded *)1;
    usi_error *e = usi_registry_select(r, USI_KIND_BACKBONE, "twin_net", &l);
    const char *msg = usi_error_message(e);
    CHECK(e && !l, "a component defined twice was selected");
    CHECK(e && strstr(msg, "twin_a.so") && strstr(msg, "twin_b.so"), "message lacks a file: %s", msg);
    CHECK(e && strstr(msg, "so neither is used; rename it in the plugin you build, or remove one of the two files"),
          "selecting a twin gives no fitting advice: %s", msg);
    /* One problem per file, not per shared name; each names both files and
     * every shared component. */
    CHECK(usi_registry_problem_count(r) == 2, "%zu problems for two files with three shared names",
          usi_registry_problem_count(r));
    for (size_t i = 0; i < usi_registry_problem_count(r); i++) {
        const char *pm = usi_registry_problem(r, i)->message;
        CHECK(strstr(pm, "'twin_net', 'twin_copy', 'twin_teacher' are defined by both") &&
                  strstr(pm, a) && strstr(pm, b),
              "twin problem lacks a name or a file: %s", pm);
        /* The advice fits a shipped file with many components: only the
         * shared names go, and renaming one is the way out. */
        CHECK(strstr(pm, "they are refused in both files, whose other components stay available: rename them "
                         "in the plugin you build, or remove one of the two files"),
              "twin problem gives no fitting advice: %s", pm);
    }
    CHECK(strstr(usi_registry_problem(r, 0)->path, "twin_a.so") &&
              strstr(usi_registry_problem(r, 1)->path, "twin_b.so"),
          "the twin problems are not recorded against both files");
    usi_error_free(e);
    usi_registry_free(r);
}

static void test_select_messages(void)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error_free(usi_registry_load(r, fixture("fixture_v1_0")));
    const usi_loaded *l;
    usi_error *e = usi_registry_select(r, USI_KIND_BACKBONE, "fixture_nt", &l);
    CHECK(e && strstr(usi_error_message(e), "did you mean 'fixture_net'"), "no suggestion: %s",
          usi_error_message(e));
    usi_error_free(e);
    /* Nothing like it: no suggestion rather than the nearest of unrelated
     * names. */
    e = usi_registry_select(r, USI_KIND_BACKBONE, "vendor_vgg", &l);
    CHECK(e && !strstr(usi_error_message(e), "did you mean") &&
              strstr(usi_error_message(e), "none of the 1 backbone plugins found has a similar name"),
          "a suggestion for an unrelated name: %s", usi_error_message(e));
    usi_error_free(e);
    /* The same start is a family: suggested. */
    e = usi_registry_select(r, USI_KIND_BACKBONE, "fixture_resnet_large", &l);
    CHECK(e && strstr(usi_error_message(e), "did you mean 'fixture_net'"), "no suggestion for a shared prefix: %s",
          usi_error_message(e));
    usi_error_free(e);
    e = usi_registry_select(r, USI_KIND_AUGMENT, "fixture_net", &l);
    CHECK(e && strstr(usi_error_message(e), "is a backbone"), "wrong kind not explained: %s",
          usi_error_message(e));
    usi_error_free(e);
    e = usi_registry_select(r, USI_KIND_TEACHER, "fixture_teacher", &l);
    CHECK(!e && l && l->comp->kind == USI_KIND_TEACHER, "teacher not selected");
    usi_error_free(e);
    usi_registry_free(r);
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[65536];
    size_t n;
    while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    if (in) fclose(in);
    if (out) fclose(out);
    chmod(to, mode);
}

static void test_scan_folder(void)
{
    char dir[] = "/tmp/usi-abi-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    char path[4200];
    const char *bad[] = {"bad_major2", "short_ops", "no_entry", "refuse_host"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s.so", dir, bad[i]);
        copy_file(fixture(bad[i]), path, 0755);
    }
    snprintf(path, sizeof path, "%s/b_good.so", dir);
    copy_file(fixture("fixture_v1_0"), path, 0755);
    snprintf(path, sizeof path, "%s/a_text.so", dir);
    FILE *f = fopen(path, "w");
    if (f) fputs("this is not a plugin\n", f);
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/notes.txt", dir); /* not *.so: never opened */
    f = fopen(path, "w");
    if (f) fputs("x", f);
    if (f) fclose(f);

    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_scan(r, dir);
    CHECK(!e, "scan failed: %s", usi_error_message(e));
    usi_error_free(e);
    CHECK(usi_registry_count(r) == 3, "the good plugin's 3 components should load, got %zu",
          usi_registry_count(r));
    CHECK(usi_registry_problem_count(r) == 5, "expected 5 refused files, got %zu",
          usi_registry_problem_count(r));
    int text_named = 0;
    for (size_t i = 0; i < usi_registry_problem_count(r); i++)
        if (strstr(usi_registry_problem(r, i)->message, "a_text.so: not a shared object")) text_named = 1;
    CHECK(text_named, "the text file named .so was not refused as such");
    usi_registry_free(r);

    /* A plugin file others can write is refused, with the fix. */
    snprintf(path, sizeof path, "%s/b_good.so", dir);
    chmod(path, 0757);
    r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    e = usi_registry_load(r, path);
    CHECK(e && strstr(usi_error_message(e), "writable by other users") &&
              strstr(usi_error_message(e), "chmod go-w"),
          "world-writable plugin not refused: %s", usi_error_message(e));
    usi_error_free(e);
    usi_registry_free(r);
    chmod(path, 0775);
    r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    e = usi_registry_load(r, path);
    CHECK(e && strstr(usi_error_message(e), "writable by other users"), "group-writable plugin loaded");
    usi_error_free(e);
    usi_registry_free(r);
    chmod(path, 0755);

    /* So is a folder others can write. */
    chmod(dir, 0777);
    r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    e = usi_registry_scan(r, dir);
    CHECK(e && strstr(usi_error_message(e), "plugin folder") && strstr(usi_error_message(e), "chmod go-w"),
          "world-writable folder scanned: %s", usi_error_message(e));
    CHECK(usi_registry_count(r) == 0, "components loaded from an unsafe folder");
    usi_error_free(e);
    usi_registry_free(r);

    /* A missing folder named on the command line is an error. */
    r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    const char *missing[] = {"/nonexistent/usi/plugins"};
    e = usi_registry_discover(r, missing, 1, NULL, 0);
    CHECK(e && strstr(usi_error_message(e), "/nonexistent/usi/plugins"), "missing --plugin-dir accepted");
    usi_error_free(e);
    usi_registry_free(r);

    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup failed");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    fixture_dir = argv[1];
    test_v1_0_fixture_loads_and_works();
    test_minor_floor();
    expect_refused("bad_major2", "built for USI ABI 2.");
    expect_refused("bad_major0", "built for USI ABI 0.");
    /* these declare the header's minor */
    expect_refused("short_component", "usi_component is 40 bytes, but ABI 1.2 fills 80: field 'params'");
    expect_refused("short_ops", "usi_backbone_ops is 8 bytes, but ABI 1.2 fills 16: field 'build'");
    expect_refused("refuse_host", "refused this host: needs a host service");
    expect_refused("no_entry", "no 'usi_plugin_entry' symbol");
    expect_refused("bad_default", "outside its range");
    /* Said as what it is, not as "default '(null)' is not one of ..." or
     * "nan, outside its range [0, 0]" (a range that means none). */
    expect_refused("null_string_default",
                   "string option 'act' has no default (its def_string is NULL); give it one of relu|gelu|silu");
    expect_refused("nan_default", "option 'drop_rate' of backbone 'nandefault_net' is not a number (NaN)");
    test_twins_name_both_files();
    test_select_messages();
    test_scan_folder();
    return check_status("plugin loading");
}
