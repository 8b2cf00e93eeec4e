/* Loading a weights file into a graph by name: a missing, an extra or a
 * wrongly shaped tensor is refused naming it, and a refused file changes
 * nothing; a good file is copied exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "device.h"
#include "graph/graph.h"
#include "plugin/host.h"
#include "train/safetensors.h"
#include "train/weights.h"
#include "util/error.h"

static char dir[] = "/tmp/usi-weights-XXXXXX";

/* A graph with fc.weight [3, 4], fc.bias [3] and a counter buffer. */
static usi_graph *small_graph(void)
{
    const usi_graph_api *G = usi_graph_api_get();
    usi_graph *g = usi_graph_new(test_device(), 0, 1);
    int64_t in_shape[2] = {2, 4}, w[2] = {3, 4}, b[1] = {3};
    usi_init init = usi_init_normal(0, 1), zeros = usi_init_zeros();
    usi_tensor *x = usi_graph_input(g, "x", USI_DTYPE_F32, 2, in_shape);
    usi_tensor *y = G->linear(g, x, G->param(g, "fc.weight", 2, w, &init), G->param(g, "fc.bias", 1, b, &init));
    G->buffer(g, "steps", USI_DTYPE_I64, 0, NULL, &zeros);
    usi_graph_mark_output(y);
    usi_error *e = usi_graph_compile(g);
    CHECK(!e, "compile: %s", usi_error_message(e));
    usi_error_free(e);
    return g;
}

static const char *save(const char *name, const float *wdata, const int64_t *wshape, int with_bias, int extra)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    static const float bias[3] = {7, 8, 9}, more[2] = {1, 2};
    static const int64_t steps = 5, bshape[1] = {3}, mshape[1] = {2};
    usi_st_writer *w = usi_st_writer_new();
    usi_error_free(usi_st_writer_add(w, "fc.weight", USI_DTYPE_F32, 2, wshape, wdata));
    if (with_bias) usi_error_free(usi_st_writer_add(w, "fc.bias", USI_DTYPE_F32, 1, bshape, bias));
    usi_error_free(usi_st_writer_add(w, "steps", USI_DTYPE_I64, 0, NULL, &steps));
    if (extra) usi_error_free(usi_st_writer_add(w, "head.weight", USI_DTYPE_F32, 1, mshape, more));
    usi_error *e = usi_st_writer_save(w, path);
    CHECK(!e, "save: %s", usi_error_message(e));
    usi_error_free(e);
    usi_st_writer_free(w);
    return path;
}

static usi_error *load(usi_graph *g, const char *path, int strict)
{
    usi_st_file *f = NULL;
    usi_error *e = usi_st_read(path, &f);
    if (!e) e = usi_weights_load(g, f, "", strict, path);
    usi_st_free(f);
    return e;
}

int main(void)
{
    if (!mkdtemp(dir)) return 2;
    usi_graph *g = small_graph();
    float w[12], before[12];
    for (int i = 0; i < 12; i++) w[i] = (float)i * 0.5f - 2.0f;
    int64_t good_shape[2] = {3, 4}, bad_shape[2] = {4, 3};
    usi_tensor *wt = usi_graph_find(g, "fc.weight");
    memcpy(before, test_value(wt), sizeof before);

    usi_error *e = load(g, save("missing.safetensors", w, good_shape, 0, 0), 1);
    CHECK(e && strstr(usi_error_message(e), "tensor 'fc.bias' is missing"), "missing: %s", usi_error_message(e));
    usi_error_free(e);
    e = load(g, save("shape.safetensors", w, bad_shape, 1, 0), 1);
    CHECK(e && strstr(usi_error_message(e), "'fc.weight' is F32 [4, 3], the model needs F32 [3, 4]"),
          "shape: %s", usi_error_message(e));
    usi_error_free(e);
    e = load(g, save("extra.safetensors", w, good_shape, 1, 1), 1);
    CHECK(e && strstr(usi_error_message(e), "tensor 'head.weight' is not a parameter of this model"),
          "extra: %s", usi_error_message(e));
    usi_error_free(e);
    CHECK(!memcmp(before, test_value(wt), sizeof before), "a refused file changed the weights");

    const char *good = save("good.safetensors", w, good_shape, 1, 1);
    e = load(g, good, 0); /* not strict: extra tensors (e.g. EMA, optimizer) are allowed */
    CHECK(!e, "good: %s", usi_error_message(e));
    usi_error_free(e);
    const float *b = test_value(usi_graph_find(g, "fc.bias"));
    const int64_t *steps = test_value(usi_graph_find(g, "steps"));
    CHECK(!memcmp(w, test_value(wt), sizeof w) && b[0] == 7 && b[2] == 9 && *steps == 5,
          "weights were not copied exactly");
    usi_graph_free(g);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return check_status("weights");
}
