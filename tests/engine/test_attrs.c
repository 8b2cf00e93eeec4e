/* The typed attributes a backend reads (core/graph/node.h): each op with
 * attributes is recorded once, and its attrs member must hold what the call
 * asked for, resolved as node.h promises (negative axes made positive, slice
 * starts clamped). The op tests prove the CPU kernels read them right; this
 * pins the contract a second backend is written against. */
#include <string.h>

#include "device.h"
#include "check.h"
#include "graph/graph.h"
#include "graph/node.h"
#include "plugin/host.h"

static const usi_graph_api *api;

static usi_tensor *input(usi_graph *g, const char *name, int32_t ndim,
                         int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t shape[4] = {d0, d1, d2, d3};
    return usi_graph_input(g, name, USI_DTYPE_F32, ndim, shape);
}

static void check_recorded(usi_graph *g, const char *what)
{
    const char *msg = api->error_message(g);
    CHECK(msg == NULL, "%s: recording failed: %s", what, msg);
}

static void test_layers(void)
{
    usi_graph *g = usi_graph_new(test_device(), 1, 1);
    usi_tensor *x = input(g, "x", 4, 2, 4, 9, 8);

    usi_tensor *w = input(g, "w", 4, 6, 2, 3, 3);
    usi_conv2d_desc cd = {sizeof cd, {2, 1}, {1, 2}, {1, 3}, 2};
    usi_tensor *conv = api->conv2d(g, x, w, NULL, &cd);
    check_recorded(g, "conv2d");
    if (conv) {
        const struct usi_attrs_conv2d *a = &conv->attrs.conv2d;
        CHECK(a->stride[0] == 2 && a->stride[1] == 1, "stride %lld,%lld",
              (long long)a->stride[0], (long long)a->stride[1]);
        CHECK(a->padding[0] == 1 && a->padding[1] == 2, "padding %lld,%lld",
              (long long)a->padding[0], (long long)a->padding[1]);
        CHECK(a->dilation[0] == 1 && a->dilation[1] == 3, "dilation %lld,%lld",
              (long long)a->dilation[0], (long long)a->dilation[1]);
        CHECK(a->groups == 2, "groups %lld", (long long)a->groups);
    }

    usi_tensor *ln = api->layer_norm(g, x, NULL, NULL, -1, 1e-6);
    check_recorded(g, "layer_norm");
    if (ln) {
        CHECK(ln->attrs.layer_norm.axis == 3, "axis -1 of 4-D is 3, got %d",
              ln->attrs.layer_norm.axis);
        CHECK(ln->attrs.layer_norm.eps == 1e-6, "eps %g", ln->attrs.layer_norm.eps);
    }

    usi_tensor *act = api->activation(g, x, USI_ACT_LEAKY_RELU, 0.2);
    check_recorded(g, "activation");
    if (act) {
        CHECK(act->attrs.act.kind == USI_ACT_LEAKY_RELU, "kind %d", act->attrs.act.kind);
        CHECK(act->attrs.act.alpha == 0.2, "alpha %g", act->attrs.act.alpha);
    }

    usi_tensor *ch = input(g, "ch", 4, 1, 4, 1, 1);
    usi_tensor *bin = api->binary(g, USI_BIN_DIV, x, ch);
    check_recorded(g, "binary");
    if (bin) CHECK(bin->attrs.binary.kind == USI_BIN_DIV, "kind %d", bin->attrs.binary.kind);

    usi_tensor *sc = api->scale(g, x, -0.37);
    check_recorded(g, "scale");
    if (sc) CHECK(sc->attrs.scale.factor == -0.37, "factor %g", sc->attrs.scale.factor);

    usi_pool2d_desc pd = {sizeof pd, USI_POOL_AVG, {3, 2}, {2, 1}, {1, 0}, 1, 1};
    usi_tensor *pool = api->pool2d(g, x, &pd);
    check_recorded(g, "pool2d");
    if (pool) {
        const struct usi_attrs_pool2d *a = &pool->attrs.pool2d;
        CHECK(a->kind == USI_POOL_AVG, "kind %d", a->kind);
        CHECK(a->kernel[0] == 3 && a->kernel[1] == 2, "kernel %lld,%lld",
              (long long)a->kernel[0], (long long)a->kernel[1]);
        CHECK(a->stride[0] == 2 && a->stride[1] == 1, "stride %lld,%lld",
              (long long)a->stride[0], (long long)a->stride[1]);
        CHECK(a->padding[0] == 1 && a->padding[1] == 0, "padding %lld,%lld",
              (long long)a->padding[0], (long long)a->padding[1]);
        CHECK(a->count_include_pad == 1, "count_include_pad %d", a->count_include_pad);
    }

    int32_t axes[2] = {-1, 1};
    usi_tensor *red = api->reduce(g, USI_REDUCE_MEAN, x, 2, axes, 0);
    check_recorded(g, "reduce");
    if (red) {
        CHECK(red->attrs.reduce.kind == USI_REDUCE_MEAN, "kind %d", red->attrs.reduce.kind);
        CHECK(red->attrs.reduce.axes == ((1u << 3) | (1u << 1)),
              "axes -1 and 1 of 4-D are bits 3 and 1, got 0x%x", red->attrs.reduce.axes);
    }

    usi_tensor *dp = api->dropout(g, x, 0.3);
    usi_tensor *path = api->drop_path(g, x, 0.2);
    check_recorded(g, "dropout, drop_path");
    if (dp) {
        CHECK(dp->op == USI_OP_DROPOUT, "a training graph records dropout");
        CHECK(dp->attrs.dropout.p == 0.3, "p %g", dp->attrs.dropout.p);
    }
    if (path) {
        CHECK(path->op == USI_OP_DROP_PATH, "a training graph records drop_path");
        CHECK(path->attrs.drop_path.p == 0.2, "p %g", path->attrs.drop_path.p);
    }
    usi_graph_free(g);
}

/* Which statistics normalise: a training graph uses the batch's, an eval
 * graph its running ones, and without running ones it has only the batch. */
static void test_batch_norm(void)
{
    for (int training = 0; training < 2; training++)
        for (int running = 0; running < 2; running++) {
            usi_graph *g = usi_graph_new(test_device(), training, 1);
            usi_tensor *x = input(g, "x", 4, 2, 3, 5, 5);
            usi_tensor *rm = running ? input(g, "rm", 1, 3, 0, 0, 0) : NULL;
            usi_tensor *rv = running ? input(g, "rv", 1, 3, 0, 0, 0) : NULL;
            usi_tensor *bn = api->batch_norm(g, x, NULL, NULL, rm, rv, NULL, 0.01, 1e-3);
            check_recorded(g, "batch_norm");
            if (bn) {
                int32_t want = training || !running;
                CHECK(bn->attrs.batch_norm.batch_stats == want,
                      "training %d, running stats %d: batch_stats %d, want %d", training,
                      running, bn->attrs.batch_norm.batch_stats, want);
                CHECK(bn->attrs.batch_norm.momentum == 0.01, "momentum %g",
                      bn->attrs.batch_norm.momentum);
                CHECK(bn->attrs.batch_norm.eps == 1e-3, "eps %g", bn->attrs.batch_norm.eps);
            }
            usi_graph_free(g);
        }
}

static void test_shape_ops(void)
{
    usi_graph *g = usi_graph_new(test_device(), 1, 1);
    usi_tensor *x = input(g, "x", 3, 3, 5, 7, 0);

    int32_t perm[3] = {-1, 0, 1};
    usi_tensor *pm = api->permute(g, x, perm);
    check_recorded(g, "permute");
    if (pm) {
        const int32_t *p = pm->attrs.permute.perm;
        CHECK(p[0] == 2 && p[1] == 0 && p[2] == 1,
              "perm (-1,0,1) of 3-D is (2,0,1), got (%d,%d,%d)", p[0], p[1], p[2]);
    }

    usi_tensor *y = input(g, "y", 3, 3, 5, 2, 0);
    usi_tensor *xs[2] = {x, y};
    usi_tensor *cat = api->concat(g, 2, xs, -1);
    check_recorded(g, "concat");
    if (cat)
        CHECK(cat->attrs.concat.axis == 2, "axis -1 of 3-D is 2, got %d",
              cat->attrs.concat.axis);

    usi_tensor *sl = api->slice(g, x, -1, -3, 100, 2);
    check_recorded(g, "slice from -3");
    if (sl) {
        CHECK(sl->attrs.slice.axis == 2, "axis %d", sl->attrs.slice.axis);
        CHECK(sl->attrs.slice.start == 4, "start -3 of 7 is 4, got %lld",
              (long long)sl->attrs.slice.start);
        CHECK(sl->attrs.slice.step == 2, "step %lld", (long long)sl->attrs.slice.step);
    }
    sl = api->slice(g, x, 1, -100, 3, 1);
    check_recorded(g, "slice from -100");
    if (sl) CHECK(sl->attrs.slice.start == 0, "start -100 of 5 clamps to 0, got %lld",
                  (long long)sl->attrs.slice.start);

    int64_t pads[6] = {0, 2, 1, 0, 3, 4};
    usi_tensor *pad = api->pad(g, x, pads, -1.5);
    check_recorded(g, "pad");
    if (pad) {
        const int64_t *b = pad->attrs.pad.before;
        CHECK(b[0] == 0 && b[1] == 1 && b[2] == 3, "before (0,1,3), got (%lld,%lld,%lld)",
              (long long)b[0], (long long)b[1], (long long)b[2]);
        CHECK(pad->attrs.pad.value == -1.5, "value %g", pad->attrs.pad.value);
    }

    usi_tensor *img = input(g, "img", 4, 1, 2, 6, 9);
    usi_tensor *s2d = api->space_to_depth(g, img, 3);
    check_recorded(g, "space_to_depth");
    if (s2d) CHECK(s2d->attrs.space_to_depth.block == 3, "block %lld",
                   (long long)s2d->attrs.space_to_depth.block);

    int64_t ishape[2] = {2, 3};
    int32_t rows[6] = {0, 5, 5, 2, 1, 0};
    usi_tensor *idx = api->constant(g, "idx", USI_DTYPE_I32, 2, ishape, rows);
    usi_tensor *ga = api->gather(g, img, idx, -2);
    check_recorded(g, "gather");
    if (ga) {
        CHECK(ga->attrs.gather.axis == 2, "axis -2 of 4-D is 2, got %d", ga->attrs.gather.axis);
        CHECK(ga->ndim == 5 && ga->shape[2] == 2 && ga->shape[3] == 3 && ga->shape[4] == 9,
              "[1,2,6,9] by [2,3] along 2 is [1,2,2,3,9]");
    }
    usi_graph_free(g);
}

/* What gather and constant() refuse when recorded, with the message a
 * plugin author sees; and a constant is no parameter or buffer, keeps its
 * values and can't be written. */
static void expect_refused(usi_tensor *(*record)(usi_graph *g), const char *want)
{
    usi_graph *g = usi_graph_new(test_device(), 1, 1);
    usi_tensor *t = record(g);
    const char *msg = api->error_message(g);
    CHECK(!t && msg && strstr(msg, want), "want an error with \"%s\", got %s", want,
          msg ? msg : "none");
    usi_graph_free(g);
}

static usi_tensor *table_of(usi_graph *g)
{
    int64_t shape[2] = {3, 6};
    return usi_graph_input(g, "table", USI_DTYPE_F32, 2, shape);
}

static usi_tensor *gather_input_index(usi_graph *g)
{
    int64_t n = 4;
    return api->gather(g, table_of(g), usi_graph_input(g, "i", USI_DTYPE_I32, 1, &n), 1);
}

static usi_tensor *gather_out_of_range(usi_graph *g)
{
    int64_t n = 3;
    int32_t v[3] = {5, 6, 0};
    return api->gather(g, table_of(g), api->constant(g, "i", USI_DTYPE_I32, 1, &n, v), 1);
}

static usi_tensor *gather_negative(usi_graph *g)
{
    int64_t n = 2;
    int32_t v[2] = {0, -1};
    return api->gather(g, table_of(g), api->constant(g, "i", USI_DTYPE_I32, 1, &n, v), 0);
}

static usi_tensor *gather_float_index(usi_graph *g)
{
    int64_t n = 1;
    float v[1] = {1};
    return api->gather(g, table_of(g), api->constant(g, "i", USI_DTYPE_F32, 1, &n, v), 1);
}

static usi_tensor *gather_bad_axis(usi_graph *g)
{
    int64_t n = 1;
    int32_t v[1] = {0};
    return api->gather(g, table_of(g), api->constant(g, "i", USI_DTYPE_I32, 1, &n, v), 2);
}

static usi_tensor *constant_i64(usi_graph *g)
{
    int64_t n = 1, v[1] = {0};
    return api->constant(g, "c", USI_DTYPE_I64, 1, &n, v);
}

static usi_tensor *constant_no_data(usi_graph *g)
{
    int64_t n = 1;
    return api->constant(g, "c", USI_DTYPE_F32, 1, &n, NULL);
}

static void test_gather_contract(void)
{
    expect_refused(gather_input_index, "the indices must be an I32 constant");
    expect_refused(gather_out_of_range, "index 6 (entry 1) is not in [0, 6)");
    expect_refused(gather_negative, "index -1 (entry 1) is not in [0, 3)");
    expect_refused(gather_float_index, "the indices must be an I32 constant");
    expect_refused(gather_bad_axis, "axis 2 out of range");
    expect_refused(constant_i64, "only F32 and I32");
    expect_refused(constant_no_data, "no data");

    usi_graph *g = usi_graph_new(test_device(), 0, 1);
    int64_t n = 3;
    float v[3] = {1.5f, -2, 4};
    usi_tensor *c = api->constant(g, "c", USI_DTYPE_F32, 1, &n, v);
    usi_tensor *y = api->scale(g, c, 2.0);
    usi_error *e = usi_graph_error(g);
    if (!e) {
        usi_graph_mark_output(y);
        CHECK(usi_graph_num_params(g) == 0 && usi_graph_num_buffers(g) == 0 && !usi_graph_find(g, "c"),
              "a constant is listed as a parameter or buffer");
        e = usi_graph_compile(g);
    }
    if (!e) e = usi_graph_forward(g);
    if (!e) {
        const float *cv = test_value(c), *yv = test_value(y);
        CHECK(cv && yv && cv[2] == 4 && yv[0] == 3 && yv[1] == -4, "the constant's values are lost");
        usi_error *w = usi_graph_write(c, v);
        CHECK(w && strstr(usi_error_message(w), "a constant keeps the values it was recorded with"),
              "a constant was written");
        usi_error_free(w);
    }
    CHECK(!e, "constant graph: %s", e ? usi_error_message(e) : "");
    usi_error_free(e);
    usi_graph_free(g);
}

static void test_losses(void)
{
    usi_graph *g = usi_graph_new(test_device(), 1, 1);
    usi_tensor *z = input(g, "z", 2, 4, 10, 0, 0);
    usi_tensor *t = input(g, "t", 2, 4, 10, 0, 0);
    int64_t n = 4;
    usi_tensor *y = usi_graph_input(g, "y", USI_DTYPE_I32, 1, &n);
    usi_tensor *ce = api->loss_ce(g, z, y, 0.1);
    usi_tensor *kl = api->loss_kl(g, z, t, 2.5);
    check_recorded(g, "losses");
    if (ce)
        CHECK(ce->attrs.loss_ce.smoothing == 0.1, "smoothing %g", ce->attrs.loss_ce.smoothing);
    if (kl) CHECK(kl->attrs.loss_kl.temperature == 2.5, "temperature %g",
                  kl->attrs.loss_kl.temperature);
    usi_graph_free(g);
}

int main(void)
{
    api = usi_graph_api_get();
    test_layers();
    test_batch_norm();
    test_shape_ops();
    test_losses();
    test_gather_contract();
    return check_status("test_attrs");
}
