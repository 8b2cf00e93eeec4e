/* What ABI 1.1 added, through real plugin files: a fixture built against the
 * 1.1 header loads and its new fields are seen; one declaring 1.1 with a
 * 1.0-sized custom op is refused naming the field; a plugin's fail() message
 * reaches the caller; the SDK's handshake helper refuses a host whose tables
 * lack what the plugin uses; the host's frozen-size tables match the header. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "graph/graph.h"
#include "plugin/abi.h"
#include "plugin/custom_op.h"
#include "plugin/host.h"
#include "plugin/params.h"
#include "plugin/registry.h"
#include "util/error.h"

static const char *fixture_dir;

static const char *fixture(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s.so", fixture_dir, name);
    return path;
}

/* The fixtures' instances start with these fields. */
typedef struct fixture_inst {
    int64_t num_classes;
    const usi_custom_op *op;
} fixture_inst;

/* Build the backbone `name` of r on a [1, channels, 4, 4] input; returns the
 * build error (NULL on success). */
static usi_error *build(const usi_registry *r, const char *name, int64_t channels, void **inst_out)
{
    const usi_loaded *l = usi_registry_find(r, USI_KIND_BACKBONE, name);
    if (!l) return usi_error_new(USI_ERR_INVALID, "no backbone %s", name);
    usi_params *p = usi_params_new(l->comp);
    void *inst = NULL;
    usi_error *e = l->comp->create(p, &inst);
    if (!e) {
        usi_graph *g = usi_graph_new(usi_device_cpu(), 0, 1);
        int64_t shape[4] = {1, channels, 4, 4};
        usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, shape), *y;
        const usi_backbone_ops *ops = l->comp->ops;
        e = usi_graph_build(g, ops->build, inst, x, &y);
        usi_graph_free(g);
        if (inst_out) *inst_out = inst;
        l->comp->destroy(inst);
    }
    usi_params_free(p);
    return e;
}

static void test_v1_1_fixture(void)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_load(r, fixture("fixture_v1_1"));
    CHECK(!e, "the 1.1 fixture was refused: %s", usi_error_message(e));
    usi_error_free(e);
    const usi_loaded *l = usi_registry_find(r, USI_KIND_BACKBONE, "v11_net");
    CHECK(l && l->abi_major == 1 && l->abi_minor == 1, "v11_net missing or not ABI 1.1");

    /* The custom op's 1.1 fields are seen, and it records. */
    void *inst = NULL;
    e = build(r, "v11_net", 3, &inst);
    CHECK(!e, "a 1.1 custom op was refused: %s", usi_error_message(e));
    usi_error_free(e);
    const fixture_inst *fi = inst;
    CHECK(fi && fi->op && fi->op->struct_size == USI_CUSTOM_OP_STRUCT_SIZE_1_1, "no 1.1-sized op");
    CHECK(fi && usi_custom_op_devices(fi->op) == (USI_CUSTOM_ON_CPU | USI_CUSTOM_ON_CUDA),
          "the op's CUDA kernel is not seen (devices %u)", fi ? usi_custom_op_devices(fi->op) : 0);

    /* fail(): the plugin's own message is the build's error, word for word. */
    e = build(r, "v11_net", 1, NULL);
    CHECK(e && !strcmp(usi_error_message(e), "v11_net: wants 3 input channels, the input has 1"),
          "the plugin's message did not reach the caller: %s", e ? usi_error_message(e) : "(built)");
    usi_error_free(e);
    usi_registry_free(r);
}

/* Declares 1.1 but hands over a 40-byte custom op: the host checks it
 * against 1.1's frozen size, not the 1.0 floor, and says what is missing. */
static void test_short_op_refused(void)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_load(r, fixture("v1_1_short_op"));
    CHECK(!e, "v1_1_short_op refused at load: %s", usi_error_message(e));
    usi_error_free(e);
    e = build(r, "shortop_net", 3, NULL);
    const char *msg = e ? usi_error_message(e) : "(built)";
    CHECK(e && strstr(msg, "usi_custom_op is 40 bytes, but ABI 1.1 fills 56") &&
              strstr(msg, "field 'forward_cuda' (ABI 1.1) is missing") && strstr(msg, "v1_1_short_op.so") &&
              strstr(msg, "custom 'v11_square'"),
          "1.0-sized op of a 1.1 plugin: %s", msg);
    usi_error_free(e);
    usi_registry_free(r);
}

static void expect_refused(const char *name, const char *expect)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_load(r, fixture(name));
    const char *msg = e ? usi_error_message(e) : "(loaded)";
    CHECK(e && strstr(msg, fixture(name)) && strstr(msg, expect), "%s: expected '%s' in: %s", name, expect, msg);
    CHECK(usi_registry_count(r) == 0, "%s: refused plugin left components", name);
    usi_error_free(e);
    usi_registry_free(r);
}

/* A backbone without img_size loads (it trains); the host can say what it
 * lacks. */
static void test_missing_img_size(void)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_load(r, fixture("v1_1_no_img_size"));
    CHECK(!e, "a backbone without img_size was refused: %s", usi_error_message(e));
    usi_error_free(e);
    const usi_loaded *l = usi_registry_find(r, USI_KIND_BACKBONE, "noimg_net");
    const char *lacks = l ? usi_backbone_lacks_option(l->comp) : NULL;
    CHECK(lacks && !strcmp(lacks, "img_size"), "lacks: %s", lacks ? lacks : "(nothing)");
    usi_error_free(usi_registry_load(r, fixture("fixture_v1_1")));
    l = usi_registry_find(r, USI_KIND_BACKBONE, "v11_net");
    CHECK(l && !usi_backbone_lacks_option(l->comp), "v11_net declares both but is said to lack one");
    usi_registry_free(r);
}

static void test_newer_minor_loads(void)
{
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_load(r, fixture("v1_1_newer_minor"));
    CHECK(!e, "a plugin of a newer minor was refused: %s", usi_error_message(e));
    usi_error_free(e);
    const usi_loaded *l = usi_registry_find(r, USI_KIND_BACKBONE, "newer_net");
    CHECK(l && l->abi_minor == USI_ABI_MINOR + 1, "newer_net missing or its minor lost");
    usi_registry_free(r);
}

/* The SDK helper, called by the 1.1 fixture with a host that only has 1.0
 * tables: it refuses, saying which minor and which table. */
static void test_negotiate_helper(void)
{
    void *h = dlopen(fixture("fixture_v1_1"), RTLD_NOW | RTLD_LOCAL);
    CHECK(h != NULL, "dlopen: %s", dlerror());
    if (!h) return;
    usi_plugin_entry_fn entry;
    void *sym = dlsym(h, USI_PLUGIN_ENTRY_SYMBOL);
    memcpy(&entry, &sym, sizeof entry);
    usi_host_api host = *usi_host_api_get();
    usi_graph_api graph = *usi_graph_api_get();
    host.graph = &graph;
    usi_negotiate n = {sizeof n, 1, 0, &host, 0, 0, NULL};

    usi_error *e = entry(&n); /* host 1.0 by number */
    CHECK(e && strstr(usi_error_message(e), "needs a USI host of ABI 1.1 or newer, this one is 1.0"),
          "a 1.0 host accepted: %s", e ? usi_error_message(e) : "(accepted)");
    usi_error_free(e);

    n.host_abi_minor = 1; /* 1.1 by number, but a 1.0-sized graph table */
    graph.struct_size = USI_GRAPH_API_STRUCT_SIZE_1_0;
    e = entry(&n);
    CHECK(e && strstr(usi_error_message(e), "graph builder table of 280 bytes (ABI 1.1), the host gives 272"),
          "a 1.0-sized graph table accepted: %s", e ? usi_error_message(e) : "(accepted)");
    usi_error_free(e);

    graph.struct_size = sizeof graph;
    host.struct_size = USI_HOST_API_STRUCT_SIZE_1_0 - sizeof(void *);
    e = entry(&n);
    CHECK(e && strstr(usi_error_message(e), "host service table of 152 bytes"),
          "a short host table accepted: %s", e ? usi_error_message(e) : "(accepted)");
    usi_error_free(e);

    host.struct_size = sizeof host;
    e = entry(&n);
    CHECK(!e && n.desc && n.plugin_abi_minor == 1, "a 1.1 host refused: %s", usi_error_message(e));
    usi_error_free(e);
    dlclose(h);
}

/* fail() straight through the table: printf formatting, and the first
 * error wins over later ones (the plugin's and the host's). */
static void test_fail_first_error_wins(void)
{
    const usi_graph_api *G = usi_graph_api_get();
    CHECK(USI_HAS_FIELD(G, fail) && G->fail, "the host's graph table has no fail()");
    usi_graph *g = usi_graph_new(usi_device_cpu(), 0, 1);
    G->fail(g, "width %d is not a multiple of %s", 30, "8");
    G->fail(g, "a later error");
    usi_error *e = usi_graph_error(g);
    CHECK(e && !strcmp(usi_error_message(e), "width 30 is not a multiple of 8"), "fail(): %s",
          e ? usi_error_message(e) : "(no error)");
    usi_error_free(e);
    int64_t shape[2] = {2, 3};
    CHECK(G->param(g, "w", 2, shape, NULL) == NULL, "an op after fail() recorded a node");
    usi_graph_free(g);
}

/* The host's field tables agree with the header's frozen constants. */
static void test_frozen_tables(void)
{
    static const struct {
        usi_abi_struct s;
        size_t v1_0, v1_1;
    } want[] = {
        {USI_ABI_PLUGIN_DESC, USI_PLUGIN_DESC_STRUCT_SIZE_1_0, USI_PLUGIN_DESC_STRUCT_SIZE_1_0},
        {USI_ABI_COMPONENT, USI_COMPONENT_STRUCT_SIZE_1_0, USI_COMPONENT_STRUCT_SIZE_1_0},
        {USI_ABI_BACKBONE_OPS, USI_BACKBONE_OPS_STRUCT_SIZE_1_0, USI_BACKBONE_OPS_STRUCT_SIZE_1_0},
        {USI_ABI_TEACHER_OPS, USI_TEACHER_OPS_STRUCT_SIZE_1_0, USI_TEACHER_OPS_STRUCT_SIZE_1_0},
        {USI_ABI_AUGMENT_OPS, USI_AUGMENT_OPS_STRUCT_SIZE_1_0, USI_AUGMENT_OPS_STRUCT_SIZE_1_0},
        {USI_ABI_PARAM_DESC, USI_PARAM_DESC_STRUCT_SIZE_1_0, USI_PARAM_DESC_STRUCT_SIZE_1_0},
        {USI_ABI_CUSTOM_OP, USI_CUSTOM_OP_STRUCT_SIZE_1_0, USI_CUSTOM_OP_STRUCT_SIZE_1_1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CHECK(usi_abi_struct_size(want[i].s, 0) == want[i].v1_0, "%s at 1.0: %zu, header %zu",
              usi_abi_struct_name(want[i].s), usi_abi_struct_size(want[i].s, 0), want[i].v1_0);
        CHECK(usi_abi_struct_size(want[i].s, 1) == want[i].v1_1, "%s at 1.1: %zu, header %zu",
              usi_abi_struct_name(want[i].s), usi_abi_struct_size(want[i].s, 1), want[i].v1_1);
    }
    /* A newer minor is checked as the host's own. */
    CHECK(usi_abi_struct_size(USI_ABI_CUSTOM_OP, usi_abi_effective_minor(7)) == USI_CUSTOM_OP_STRUCT_SIZE_1_1,
          "minor 7 not checked as 1.1");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    fixture_dir = argv[1];
    test_v1_1_fixture();
    test_short_op_refused();
    test_newer_minor_loads();
    test_missing_img_size();
    expect_refused("v1_1_no_desc", "returned success but no plugin descriptor (n->desc is NULL)");
    expect_refused("v1_1_null_component", "component 2 of 2 in the plugin descriptor is a NULL pointer");
    test_negotiate_helper();
    test_fail_first_error_wins();
    test_frozen_tables();
    return check_status("ABI 1.1");
}
