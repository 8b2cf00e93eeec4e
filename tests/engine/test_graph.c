/* The engine around the ops: recording errors, names, initialisers, batch
 * norm state, frozen parameters, gradient accumulation, whole-network
 * gradients through the planned arena, custom ops, memory stability,
 * profiling. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "device.h"
#include "graph/graph.h"
#include "graph/graph_internal.h"
#include "graph/node.h"
#include "models.h"
#include "plugin/host.h"
#include "util/error.h"
#include "util/rng.h"

static int failures;
#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                       \
            printf(__VA_ARGS__);                                              \
            printf("\n");                                                     \
            failures++;                                                       \
        }                                                                     \
    } while (0)

static const usi_graph_api *api;

static void test_shape_error(void)
{
    usi_graph *g = usi_graph_new(test_device(), 1, 1);
    int64_t xs[4] = {1, 3, 7, 5}, ws[4] = {8, 4, 3, 3};
    usi_tensor *x = usi_graph_input(g, "x", USI_DTYPE_F32, 4, xs);
    api->push_scope(g, "layer1");
    usi_tensor *w = api->param(g, "conv.weight", 4, ws, NULL);
    usi_conv2d_desc d = usi_conv2d(1, 1, 1, 1);
    usi_tensor *y = api->conv2d(g, x, w, NULL, &d);
    CHECK(y == NULL, "conv2d with 3 vs 4 channels must fail");
    const char *msg = api->error_message(g);
    CHECK(msg && strstr(msg, "conv2d") && strstr(msg, "layer1.conv2d") &&
              strstr(msg, "[1,3,7,5]") && strstr(msg, "[8,4,3,3]"),
          "error names op, node and both shapes: %s", msg ? msg : "(none)");
    /* A NULL input propagates quietly; the first error stays. */
    CHECK(api->activation(g, y, USI_ACT_RELU, 0) == NULL, "NULL input gives NULL");
    int64_t bad[2] = {2, 3};
    CHECK(api->reshape(g, x, 2, bad) == NULL, "ops after an error return NULL");
    CHECK(!strcmp(api->error_message(g), msg), "first error kept");
    usi_error *e = usi_graph_compile(g);
    CHECK(e != NULL, "compile reports the recording error");
    usi_error_free(e);
    api->pop_scope(g);
    usi_graph_free(g);

    g = usi_graph_new(test_device(), 0, 1);
    int64_t a[2] = {3, 4}, b[2] = {5, 4};
    usi_tensor *ta = usi_graph_input(g, "a", USI_DTYPE_F32, 2, a);
    usi_tensor *tb = usi_graph_input(g, "b", USI_DTYPE_F32, 2, b);
    CHECK(api->binary(g, USI_BIN_ADD, ta, tb) == NULL, "[3,4] + [5,4] must fail");
    msg = api->error_message(g);
    CHECK(msg && strstr(msg, "binary") && strstr(msg, "[3,4]") && strstr(msg, "[5,4]"),
          "binary error: %s", msg ? msg : "(none)");
    usi_graph_free(g);
}

/* Each bad call returns NULL and names its op and the shapes involved. */
static void expect_error(const char *what, usi_tensor *(*rec)(usi_graph *, usi_tensor **),
                         int n, const int64_t (*shapes)[4], const int32_t *ndims,
                         const char *op, const char *s1, const char *s2)
{
    usi_graph *g = usi_graph_new(test_device(), 1, 1);
    usi_tensor *x[4];
    for (int i = 0; i < n; i++) {
        char name[8];
        snprintf(name, sizeof name, "x%d", i);
        x[i] = usi_graph_input(g, name, USI_DTYPE_F32, ndims[i], shapes[i]);
    }
    usi_tensor *y = rec(g, x);
    const char *msg = api->error_message(g);
    CHECK(!y && msg && strstr(msg, op) && strstr(msg, s1) && (!s2 || strstr(msg, s2)),
          "%s: got '%s'", what, msg ? msg : "(no error)");
    usi_graph_free(g);
}

static usi_tensor *bad_matmul(usi_graph *g, usi_tensor **x) { return api->matmul(g, x[0], x[1]); }
static usi_tensor *bad_linear(usi_graph *g, usi_tensor **x)
{
    return api->linear(g, x[0], x[1], NULL);
}
static usi_tensor *bad_reshape(usi_graph *g, usi_tensor **x)
{
    int64_t s[2] = {4, 4};
    return api->reshape(g, x[0], 2, s);
}
static usi_tensor *bad_concat(usi_graph *g, usi_tensor **x) { return api->concat(g, 2, x, 1); }
static usi_tensor *bad_pool(usi_graph *g, usi_tensor **x)
{
    usi_pool2d_desc d = usi_pool2d(USI_POOL_MAX, 5, 1, 0);
    return api->pool2d(g, x[0], &d);
}
static usi_tensor *bad_reduce(usi_graph *g, usi_tensor **x)
{
    int32_t axes[1] = {3};
    return api->reduce(g, USI_REDUCE_SUM, x[0], 1, axes, 0);
}
static usi_tensor *bad_bn(usi_graph *g, usi_tensor **x)
{
    return api->batch_norm(g, x[0], x[1], NULL, NULL, NULL, NULL, 0.1, 1e-5);
}
static usi_tensor *bad_s2d(usi_graph *g, usi_tensor **x) { return api->space_to_depth(g, x[0], 2); }

static void test_shape_errors_per_op(void)
{
    static const int64_t mm[2][4] = {{2, 3, 4}, {5, 6}};
    static const int32_t mm_nd[2] = {3, 2};
    expect_error("matmul inner dims", bad_matmul, 2, mm, mm_nd, "matmul", "[2,3,4]", "[5,6]");
    static const int64_t li[2][4] = {{3, 7}, {5, 6}};
    static const int32_t li_nd[2] = {2, 2};
    expect_error("linear In", bad_linear, 2, li, li_nd, "linear", "[3,7]", "[5,6]");
    static const int64_t rs[1][4] = {{3, 5}};
    static const int32_t rs_nd[1] = {2};
    expect_error("reshape count", bad_reshape, 1, rs, rs_nd, "reshape", "[3,5]", "[4,4]");
    static const int64_t cc[2][4] = {{2, 3, 4}, {2, 3, 5}};
    static const int32_t cc_nd[2] = {3, 3};
    expect_error("concat other dims", bad_concat, 2, cc, cc_nd, "concat", "[2,3,4]", "[2,3,5]");
    static const int64_t po[1][4] = {{1, 2, 3, 3}};
    static const int32_t po_nd[1] = {4};
    expect_error("pool kernel too big", bad_pool, 1, po, po_nd, "pool2d", "[1,2,3,3]", NULL);
    static const int64_t re[1][4] = {{2, 3, 4}};
    static const int32_t re_nd[1] = {3};
    expect_error("reduce axis", bad_reduce, 1, re, re_nd, "reduce", "[2,3,4]", NULL);
    static const int64_t bn[2][4] = {{2, 3, 4, 4}, {4}};
    static const int32_t bn_nd[2] = {4, 1};
    expect_error("batch_norm weight", bad_bn, 2, bn, bn_nd, "batch_norm", "[2,3,4,4]", "[4]");
    static const int64_t sd[1][4] = {{1, 3, 5, 4}};
    static const int32_t sd_nd[1] = {4};
    expect_error("space_to_depth odd H", bad_s2d, 1, sd, sd_nd, "space_to_depth", "[1,3,5,4]",
                 NULL);
}

static void test_names_and_iteration(void)
{
    usi_graph *g = usi_graph_new(test_device(), 1, 1);
    int64_t s[1] = {4};
    usi_init one = usi_init_ones();
    api->push_scope(g, "layer1");
    api->push_scope(g, "0");
    usi_tensor *p = api->param(g, "bn1.weight", 1, s, &one);
    usi_tensor *q = api->buffer(g, "bn1.running_var", USI_DTYPE_F32, 1, s, &one);
    api->pop_scope(g);
    api->pop_scope(g);
    CHECK(p && !strcmp(usi_graph_name(p), "layer1.0.bn1.weight"), "scoped name: %s",
          p ? usi_graph_name(p) : "(null)");
    CHECK(usi_graph_find(g, "layer1.0.bn1.running_var") == q, "find buffer");
    CHECK(usi_graph_num_params(g) == 1 && usi_graph_num_buffers(g) == 1, "counts");
    usi_param_info info;
    CHECK(usi_graph_param_at(g, 0, &info) && info.numel == 4 && info.shape[0] == 4 &&
              ((float *)test_value(info.tensor))[3] == 1.0f, "param info");
    api->push_scope(g, "layer1");
    api->push_scope(g, "0");
    CHECK(api->param(g, "bn1.weight", 1, s, &one) == NULL, "duplicate name must fail");
    CHECK(strstr(api->error_message(g), "already taken") != NULL, "duplicate message: %s",
          api->error_message(g));
    usi_graph_free(g);
}

static void moments(const float *v, int64_t n, double *mean, double *sd, double *lo,
                    double *hi)
{
    double s = 0, ss = 0;
    *lo = INFINITY, *hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        s += v[i];
        ss += (double)v[i] * v[i];
        *lo = fmin(*lo, v[i]);
        *hi = fmax(*hi, v[i]);
    }
    *mean = s / (double)n;
    *sd = sqrt(ss / (double)n - *mean * *mean);
}

static void check_init(const char *what, const usi_init *init, double want_mean,
                       double want_sd, double want_lo, double want_hi)
{
    usi_graph *g = usi_graph_new(test_device(), 1, 99);
    int64_t s[4] = {128, 64, 3, 3}; /* fan_in 576, fan_out 1152 */
    usi_tensor *p = api->param(g, "w", 4, s, init);
    double m, sd, lo, hi;
    moments(test_value(p), usi_graph_numel(p), &m, &sd, &lo, &hi);
    double tol = 0.03 * (want_sd > 0 ? want_sd : 1);
    CHECK(fabs(m - want_mean) <= tol && fabs(sd - want_sd) <= 0.03 * want_sd + 1e-12 &&
              lo >= want_lo - 1e-6 && hi <= want_hi + 1e-6,
          "%s: mean %.5g sd %.5g range [%.4g, %.4g]; want mean %.5g sd %.5g range [%.4g, %.4g]",
          what, m, sd, lo, hi, want_mean, want_sd, want_lo, want_hi);
    usi_graph_free(g);
}

static void test_initialisers(void)
{
    usi_init z = usi_init_zeros(), o = usi_init_ones(), c = usi_init_const(0.25);
    check_init("zeros", &z, 0, 0, 0, 0);
    check_init("ones", &o, 1, 0, 1, 1);
    check_init("constant", &c, 0.25, 0, 0.25, 0.25);
    usi_init u = usi_init_uniform(-0.5, 1.5);
    check_init("uniform", &u, 0.5, 2 / sqrt(12), -0.5, 1.5);
    usi_init n = usi_init_normal(0.1, 0.02);
    check_init("normal", &n, 0.1, 0.02, -1, 1);
    /* std of N(0, 1) cut at +-2 sd is 0.8796 sd */
    usi_init tn = usi_init_trunc_normal(0.02, -0.04, 0.04);
    check_init("trunc normal", &tn, 0, 0.02 * 0.8796, -0.04, 0.04);
    double g = sqrt(2.0);
    usi_init kn = usi_init_kaiming_normal(USI_FAN_OUT, g);
    check_init("kaiming normal fan_out", &kn, 0, g / sqrt(1152), -1, 1);
    usi_init kni = usi_init_kaiming_normal(USI_FAN_IN, 1.0);
    check_init("kaiming normal fan_in gain 1", &kni, 0, 1 / sqrt(576), -1, 1);
    usi_init ku = usi_init_kaiming_uniform(USI_FAN_IN, g);
    double b = g * sqrt(3.0 / 576);
    check_init("kaiming uniform fan_in", &ku, 0, b / sqrt(3), -b, b);
    usi_init xu = {sizeof xu, USI_INIT_XAVIER_UNIFORM, 0, 0, 0, 0, 0, 1.0};
    double xb = sqrt(6.0 / (576 + 1152));
    check_init("xavier uniform", &xu, 0, xb / sqrt(3), -xb, xb);

    /* The same seed and name give the same values, whatever came before. */
    usi_graph *g1 = usi_graph_new(test_device(), 1, 5), *g2 = usi_graph_new(test_device(), 1, 5);
    int64_t s[1] = {16};
    usi_tensor *a = api->param(g1, "a", 1, s, &n);
    api->param(g2, "other", 1, s, &n);
    usi_tensor *a2 = api->param(g2, "a", 1, s, &n);
    CHECK(!memcmp(test_value(a), test_value(a2), 16 * sizeof(float)),
          "initial values depend on seed and name only");
    usi_graph_free(g1);
    usi_graph_free(g2);
}

static void fill(float *v, int64_t n, uint64_t key)
{
    usi_rng r;
    usi_rng_seed(&r, key, 0, 0, 0);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(2 * usi_rng_uniform(&r) - 1);
}

static void test_batch_norm_state(void)
{
    usi_graph *g = usi_graph_new(test_device(), 1, 1);
    int64_t xs[4] = {3, 2, 5, 1}, c[1] = {2};
    usi_init zero = usi_init_zeros(), one = usi_init_ones();
    usi_tensor *x = usi_graph_input(g, "x", USI_DTYPE_F32, 4, xs);
    usi_tensor *rm = api->buffer(g, "rm", USI_DTYPE_F32, 1, c, &zero);
    usi_tensor *rv = api->buffer(g, "rv", USI_DTYPE_F32, 1, c, &one);
    usi_tensor *nb = api->buffer(g, "nbt", USI_DTYPE_I64, 0, NULL, &zero);
    usi_tensor *y = api->batch_norm(g, x, NULL, NULL, rm, rv, nb, 0.1, 1e-5);
    usi_graph_mark_output(y);
    usi_error *e = usi_graph_compile(g);
    float *xd = test_host(30 * sizeof(float));
    fill(xd, 30, 3);
    test_write(x, xd);
    for (int step = 0; step < 2 && !e; step++) e = usi_graph_forward(g);
    CHECK(!e, "bn forward: %s", usi_error_message(e));
    for (int ch = 0; ch < 2; ch++) {
        double s = 0, ss = 0;
        for (int n = 0; n < 3; n++)
            for (int i = 0; i < 5; i++) s += xd[(n * 2 + ch) * 5 + i];
        double m = s / 15;
        for (int n = 0; n < 3; n++)
            for (int i = 0; i < 5; i++) ss += pow(xd[(n * 2 + ch) * 5 + i] - m, 2);
        double uv = ss / 14;
        double want_m = 0.1 * m + 0.9 * 0.1 * m, want_v = 0.9 * (0.9 + 0.1 * uv) + 0.1 * uv;
        float *rmd = test_value(rm), *rvd = test_value(rv);
        CHECK(fabs(rmd[ch] - want_m) < 1e-6 && fabs(rvd[ch] - want_v) < 1e-5,
              "running stats ch %d: mean %.7g want %.7g, var %.7g want %.7g (unbiased)", ch,
              rmd[ch], want_m, rvd[ch], want_v);
    }
    CHECK(*(int64_t *)test_value(nb) == 2, "num_batches_tracked = %lld",
          (long long)*(int64_t *)test_value(nb));
    usi_error_free(e);
    usi_graph_free(g);
}

/* A residual net: gradients of parameters through the planned arena against
 * finite differences of the loss. */
static usi_graph *residual_net(int32_t training, usi_tensor **x_out, usi_tensor **loss)
{
    usi_graph *g = usi_graph_new(test_device(), training, 11);
    int64_t xs[4] = {3, 3, 7, 5}, n = 3;
    usi_tensor *x = usi_graph_input(g, "x", USI_DTYPE_F32, 4, xs);
    usi_tensor *y = usi_graph_input(g, "y", USI_DTYPE_I32, 1, &n);
    usi_init kn = usi_init_kaiming_normal(USI_FAN_IN, 1.0), one = usi_init_ones();
    int64_t w1[4] = {6, 3, 3, 3}, w2[4] = {6, 3, 3, 3}, c6[1] = {6}, fc[2] = {4, 6}, b4[1] = {4};
    usi_conv2d_desc d1 = usi_conv2d(1, 1, 1, 1), d2 = usi_conv2d(1, 1, 1, 2);
    api->push_scope(g, "stem");
    usi_tensor *h = api->conv2d(g, x, api->param(g, "w", 4, w1, &kn), NULL, &d1);
    h = api->batch_norm(g, h, api->param(g, "g", 1, c6, &one), api->param(g, "b", 1, c6, NULL),
                        NULL, NULL, NULL, 0.1, 1e-5);
    h = api->activation(g, h, USI_ACT_SILU, 0);
    api->pop_scope(g);
    api->push_scope(g, "teacher");
    usi_tensor *r = api->conv2d(g, h, api->param(g, "w", 4, w2, &kn), NULL, &d2);
    api->pop_scope(g);
    h = api->binary(g, USI_BIN_ADD, h, api->activation(g, r, USI_ACT_GELU, 0));
    int32_t axes[2] = {2, 3};
    h = api->reduce(g, USI_REDUCE_MEAN, h, 2, axes, 0);
    h = api->linear(g, h, api->param(g, "fc.w", 2, fc, &kn), api->param(g, "fc.b", 1, b4, NULL));
    *loss = api->loss_ce(g, h, y, 0.1);
    usi_error *e = usi_graph_set_loss(g, *loss);
    CHECK(!e, "set_loss: %s", usi_error_message(e));
    usi_error_free(e);
    float *xd = test_host(3 * 3 * 7 * 5 * sizeof(float));
    fill(xd, 3 * 3 * 7 * 5, 77);
    test_write(x, xd);
    int32_t yd[3] = {1, 3, 0};
    test_write(y, yd);
    *x_out = x;
    return g;
}

static double loss_now(usi_graph *g, usi_tensor *loss)
{
    usi_error *e = usi_graph_forward(g);
    CHECK(!e, "forward: %s", usi_error_message(e));
    usi_error_free(e);
    return *(float *)test_value(loss);
}

static void test_network_gradients(void)
{
    usi_tensor *x, *loss;
    usi_graph *g = residual_net(1, &x, &loss);
    CHECK(usi_graph_set_frozen(g, "teacher.", 1) == 1, "one teacher parameter frozen");
    size_t only = 0, only_naive = 0; /* the plan without allocating: compile's */
    usi_error *e = usi_graph_plan_only(g, &only, &only_naive);
    CHECK(!e, "plan_only: %s", usi_error_message(e));
    usi_error_free(e);
    e = usi_graph_compile(g);
    CHECK(!e, "compile: %s", usi_error_message(e));
    usi_error_free(e);
    size_t planned, naive;
    usi_graph_memory(g, &planned, &naive);
    CHECK(planned > 0 && planned < naive, "planned %zu < naive %zu", planned, naive);
    CHECK(only == planned && only_naive == naive, "plan_only %zu/%zu, compile %zu/%zu", only, only_naive, planned,
          naive);
    loss_now(g, loss);
    e = usi_graph_backward(g);
    CHECK(!e, "backward: %s", usi_error_message(e));
    usi_error_free(e);
    CHECK(!usi_graph_has_grad(usi_graph_find(g, "teacher.w")), "frozen has no gradient");
    const char *names[] = {"stem.w", "stem.g", "stem.b", "fc.w", "fc.b"};
    for (int k = 0; k < 5; k++) {
        usi_tensor *p = usi_graph_find(g, names[k]);
        float v[256], gr[256]; /* the largest, stem.w, has 162 */
        memcpy(v, test_value(p), sizeof(float) * (size_t)usi_graph_numel(p));
        memcpy(gr, test_grad(p), sizeof(float) * (size_t)usi_graph_numel(p));
        double worst = 0;
        for (int64_t i = 0; i < usi_graph_numel(p) && i < 12; i++) {
            float keep = v[i];
            v[i] = keep + 1e-3f;
            test_write(p, v);
            double fp = loss_now(g, loss);
            v[i] = keep - 1e-3f;
            test_write(p, v);
            double fm = loss_now(g, loss);
            v[i] = keep;
            test_write(p, v);
            double num = (fp - fm) / 2e-3;
            worst = fmax(worst, fabs(num - gr[i]) / fmax(1e-2, fabs(num)));
        }
        CHECK(worst < 3e-2, "%s: gradient vs finite differences, worst relative error %.3g",
              names[k], worst);
    }
    /* Accumulation: two half-scaled passes equal one full pass. */
    usi_tensor *fw = usi_graph_find(g, "fc.w");
    float full[24], acc[24];
    usi_graph_zero_grad(g);
    loss_now(g, loss);
    usi_error_free(usi_graph_backward(g));
    memcpy(full, test_grad(fw), sizeof full);
    usi_graph_zero_grad(g);
    usi_graph_set_loss_scale(g, 0.5);
    for (int i = 0; i < 2; i++) {
        loss_now(g, loss);
        usi_error_free(usi_graph_backward(g));
    }
    memcpy(acc, test_grad(fw), sizeof acc);
    double worst = 0;
    for (int i = 0; i < 24; i++) worst = fmax(worst, fabs(full[i] - acc[i]));
    CHECK(worst < 1e-6, "accumulated gradient differs by %.3g", worst);
    usi_graph_free(g);
}

/* out = x^2 as a plugin would ship it. */
static usi_error *sq_shape(const void *a, int32_t n, const usi_tensor_view *in,
                           usi_tensor_view *out)
{
    (void)a;
    (void)n;
    out->ndim = in[0].ndim;
    memcpy(out->shape, in[0].shape, sizeof out->shape);
    return NULL;
}
static usi_error *sq_fwd(const void *a, int32_t n, const usi_tensor_view *in,
                         usi_tensor_view *out)
{
    (void)a;
    (void)n;
    int64_t k = 1;
    for (int32_t d = 0; d < in[0].ndim; d++) k *= in[0].shape[d];
    for (int64_t i = 0; i < k; i++)
        ((float *)out->data)[i] = ((float *)in[0].data)[i] * ((float *)in[0].data)[i];
    return NULL;
}
static usi_error *sq_bwd(const void *a, int32_t n, const usi_tensor_view *in,
                         const usi_tensor_view *out, const usi_tensor_view *gout,
                         usi_tensor_view *gin)
{
    (void)a;
    (void)n;
    int64_t k = 1;
    for (int32_t d = 0; d < out->ndim; d++) k *= out->shape[d];
    for (int64_t i = 0; i < k && gin[0].data; i++)
        ((float *)gin[0].data)[i] += 2 * ((float *)in[0].data)[i] * ((float *)gout->data)[i];
    return NULL;
}

static void test_custom_op(void)
{
    static const usi_custom_op sq = {.struct_size = sizeof sq, .name = "square", .infer_shape = sq_shape,
                                     .forward_cpu = sq_fwd, .backward_cpu = sq_bwd};
    usi_graph *g = usi_graph_new(test_device(), 1, 1);
    int64_t s[2] = {2, 3};
    usi_tensor *x = usi_graph_input(g, "x", USI_DTYPE_F32, 2, s);
    usi_graph_set_requires_grad(x, 1);
    usi_tensor *y = api->custom(g, &sq, 1, &x, NULL);
    int32_t axes[2] = {0, 1};
    usi_tensor *l = api->reduce(g, USI_REDUCE_SUM, y, 2, axes, 0);
    usi_error *e = usi_graph_set_loss(g, l);
    if (!e) e = usi_graph_compile(g);
    float xd[6];
    for (int i = 0; i < 6; i++) xd[i] = (float)i - 2.5f;
    if (!e) e = usi_graph_write(x, xd);
    if (!e) e = usi_graph_forward(g);
    if (!e) e = usi_graph_backward(g);
    CHECK(!e, "custom op: %s", usi_error_message(e));
    if (!e) {
        CHECK(fabsf(*(float *)test_value(l) - 17.5f) < 1e-5f, "sum of squares");
        const float *gx = test_grad(x);
        for (int i = 0; i < 6; i++)
            CHECK(gx && fabsf(gx[i] - 2 * xd[i]) < 1e-5f, "custom gradient %d", i);
    }
    usi_error_free(e);
    usi_graph_free(g);
}

static usi_error *neg_shape(const void *a, int32_t n, const usi_tensor_view *in, usi_tensor_view *out)
{
    (void)a;
    (void)n;
    out->ndim = 2;
    out->shape[0] = -in[0].shape[0];
    out->shape[1] = in[0].shape[1];
    return NULL;
}

/* A custom op without backward_cpu passes no gradient (x's gradient is the
 * built-in square's 2x alone, not 4x), and an infer_shape that gives a
 * dimension below 1 fails the graph naming it. */
static void test_custom_op_edges(void)
{
    static const usi_custom_op fwd_only = {.struct_size = sizeof fwd_only, .name = "square_no_grad",
                                           .infer_shape = sq_shape, .forward_cpu = sq_fwd};
    static const usi_custom_op neg = {.struct_size = sizeof neg, .name = "negative", .infer_shape = neg_shape,
                                      .forward_cpu = sq_fwd, .backward_cpu = sq_bwd};
    usi_graph *g = usi_graph_new(test_device(), 1, 1);
    int64_t s[2] = {2, 3};
    usi_tensor *x = usi_graph_input(g, "x", USI_DTYPE_F32, 2, s);
    usi_graph_set_requires_grad(x, 1);
    int32_t axes[2] = {0, 1};
    usi_tensor *a = api->reduce(g, USI_REDUCE_SUM, api->binary(g, USI_BIN_MUL, x, x), 2, axes, 0);
    usi_tensor *b = api->reduce(g, USI_REDUCE_SUM, api->custom(g, &fwd_only, 1, &x, NULL), 2, axes, 0);
    usi_tensor *l = api->binary(g, USI_BIN_ADD, a, b);
    usi_error *e = usi_graph_set_loss(g, l);
    if (!e) e = usi_graph_compile(g);
    float xd[6];
    for (int i = 0; i < 6; i++) xd[i] = (float)i - 2.5f;
    if (!e) e = usi_graph_write(x, xd);
    if (!e) e = usi_graph_forward(g);
    if (!e) e = usi_graph_backward(g);
    CHECK(!e, "custom op without backward: %s", usi_error_message(e));
    if (!e) {
        CHECK(fabsf(*(float *)test_value(l) - 35.0f) < 1e-4f, "both sums of squares");
        const float *gx = test_grad(x);
        for (int i = 0; i < 6; i++)
            CHECK(gx && fabsf(gx[i] - 2 * xd[i]) < 1e-5f, "gradient %d: %g, want %g (none through the op)", i,
                  gx ? gx[i] : 0.0, 2 * xd[i]);
    }
    usi_error_free(e);
    usi_graph_free(g);

    g = usi_graph_new(test_device(), 0, 1);
    x = usi_graph_input(g, "x", USI_DTYPE_F32, 2, s);
    CHECK(api->custom(g, &neg, 1, &x, NULL) == NULL, "a negative dimension was recorded");
    e = usi_graph_error(g);
    CHECK(e && strstr(usi_error_message(e), "dimension 0 of its output is -2"), "negative dimension: %s",
          e ? usi_error_message(e) : "no error");
    usi_error_free(e);
    usi_graph_free(g);
}

static long rss_pages(void)
{
    long size = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &size, &rss) != 2) rss = 0;
    fclose(f);
    return rss;
}

/* 1,000 training steps of a small net: resident memory must not grow. */
static void test_no_growth(void)
{
    /* One thread: on shared cores a thousand tiny fork/joins crawl. */
    int32_t threads = usi_device_threads();
    usi_device_set_threads(1);
    usi_graph *g = usi_graph_new(test_device(), 1, 3);
    int64_t xs[4] = {8, 1, 28, 28}, n = 8;
    usi_tensor *x = usi_graph_input(g, "x", USI_DTYPE_F32, 4, xs);
    usi_tensor *y = usi_graph_input(g, "y", USI_DTYPE_I32, 1, &n);
    usi_tensor *logits = model_small_convnet(g, x, 4, 10);
    usi_error *e = usi_graph_set_loss(g, api->loss_ce(g, logits, y, 0.1));
    if (!e) e = usi_graph_compile(g);
    float *xd = malloc(8 * 28 * 28 * sizeof(float));
    fill(xd, 8 * 28 * 28, 9);
    if (!e) e = usi_graph_write(x, xd);
    free(xd);
    int32_t yd[8] = {0};
    long before = 0;
    for (int step = 0; step < 1000 && !e; step++) {
        if (step == 50) before = rss_pages();
        yd[step % 8] = step % 10;
        e = usi_graph_write(y, yd);
        if (e) break;
        e = usi_graph_forward(g);
        if (!e) e = usi_graph_backward(g);
        usi_graph_zero_grad(g);
    }
    long after = rss_pages();
    CHECK(!e, "steps: %s", usi_error_message(e));
#ifdef __SANITIZE_ADDRESS__
    /* AddressSanitizer keeps freed blocks in quarantine: RSS says nothing. */
    (void)before;
    (void)after;
#else
    CHECK(after - before <= 64, "resident memory grew by %ld pages over 950 steps",
          after - before);
#endif
    usi_error_free(e);
    usi_graph_free(g);
    usi_device_set_threads(threads);
}

/* Kernels split big loops across threads: one and two threads must agree
 * (tensors here are past the size where loops go parallel). */
static void run_threads(int32_t threads, float *logits_out, float **grads, int32_t *n_params)
{
    usi_device_set_threads(threads);
    usi_graph *g = usi_graph_new(test_device(), 1, 21);
    int64_t xs[4] = {16, 1, 28, 28}, n = 16;
    usi_tensor *x = usi_graph_input(g, "x", USI_DTYPE_F32, 4, xs);
    usi_tensor *y = usi_graph_input(g, "y", USI_DTYPE_I32, 1, &n);
    usi_tensor *logits = model_small_convnet(g, x, 32, 10);
    usi_graph_mark_output(logits);
    usi_error *e = usi_graph_set_loss(g, api->loss_ce(g, logits, y, 0.1));
    if (!e) e = usi_graph_compile(g);
    float *xd = malloc(16 * 28 * 28 * sizeof(float));
    fill(xd, 16 * 28 * 28, 5);
    int32_t yd[16];
    for (int i = 0; i < 16; i++) yd[i] = i % 10;
    if (!e) e = usi_graph_write(x, xd);
    if (!e) e = usi_graph_write(y, yd);
    free(xd);
    if (!e) e = usi_graph_forward(g);
    if (!e) e = usi_graph_backward(g);
    CHECK(!e, "%d threads: %s", threads, usi_error_message(e));
    usi_error_free(e);
    memcpy(logits_out, test_value(logits), 160 * sizeof(float));
    *n_params = usi_graph_num_params(g);
    for (int32_t i = 0; i < *n_params; i++) {
        usi_param_info p;
        usi_graph_param_at(g, i, &p);
        grads[i] = malloc((size_t)p.numel * sizeof(float) + sizeof(int64_t));
        memcpy(grads[i], &p.numel, sizeof(int64_t));
        memcpy((char *)grads[i] + sizeof(int64_t), test_grad(p.tensor), (size_t)p.numel * sizeof(float));
    }
    usi_graph_free(g);
}

static void test_threads_agree(void)
{
    int32_t keep = usi_device_threads(), n1 = 0, n2 = 0;
    float l1[160], l2[160], *g1[64] = {0}, *g2[64] = {0};
    run_threads(1, l1, g1, &n1);
    run_threads(2, l2, g2, &n2);
    usi_device_set_threads(keep);
    double worst = 0;
    for (int i = 0; i < 160; i++) worst = fmax(worst, fabs(l1[i] - l2[i]) / (1 + fabs(l1[i])));
    CHECK(worst < 1e-4, "logits differ between 1 and 2 threads by %.3g", worst);
    CHECK(n1 == n2, "parameter counts");
    for (int32_t i = 0; i < n1 && i < n2; i++) {
        int64_t n;
        memcpy(&n, g1[i], sizeof n);
        const float *a = (const float *)((char *)g1[i] + sizeof n);
        const float *b = (const float *)((char *)g2[i] + sizeof n);
        double w = 0, scale = 1e-3;
        for (int64_t k = 0; k < n; k++) scale = fmax(scale, fabs(a[k]));
        for (int64_t k = 0; k < n; k++) w = fmax(w, fabs(a[k] - b[k]) / scale);
        CHECK(w < 1e-3, "gradient of parameter %d differs between 1 and 2 threads by %.3g", i, w);
    }
    for (int i = 0; i < 64; i++) free(g1[i]), free(g2[i]);
}

/* The yardstick: a ResNet-50 training step at batch 32, 224x224.
 * Planning only; the arena is reserved, never touched. */
static void test_resnet50_plan(void)
{
    usi_graph *g = usi_graph_new(test_device(), 1, 1);
    int64_t xs[4] = {32, 3, 224, 224}, n = 32;
    usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, xs);
    usi_tensor *y = usi_graph_input(g, "labels", USI_DTYPE_I32, 1, &n);
    usi_tensor *logits = model_resnet(g, x, 50, 1000);
    usi_error *e = usi_graph_set_loss(g, api->loss_ce(g, logits, y, 0.1));
    if (!e) e = usi_graph_compile(g);
    CHECK(!e, "resnet50: %s", usi_error_message(e));
    size_t planned = 0, naive = 0;
    usi_graph_memory(g, &planned, &naive);
    printf("resnet50 train b32 224: planned %.1f MiB, naive %.1f MiB (%.2fx)\n",
           planned / 1048576.0, naive / 1048576.0, (double)naive / (double)(planned ? planned : 1));
    CHECK(planned > 0 && planned * 3 < naive, "planned %zu is not well under naive %zu", planned,
          naive);
    usi_error_free(e);
    usi_graph_free(g);
}

/* Profiling counts every node of each op once per pass, both ways, and
 * the per-op times add up to the total it prints. */
static void test_profile(void)
{
    usi_graph *g = usi_graph_new(test_device(), 1, 1);
    int64_t xs[4] = {2, 3, 32, 32}, n = 2;
    usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, xs);
    usi_tensor *y = usi_graph_input(g, "labels", USI_DTYPE_I32, 1, &n);
    usi_tensor *logits = model_resnet(g, x, 18, 10);
    usi_error *e = usi_graph_set_loss(g, api->loss_ce(g, logits, y, 0.1));
    if (!e) e = usi_graph_compile(g);
    int32_t labels[2] = {1, 7};
    float *img = calloc(2 * 3 * 32 * 32, sizeof(float));
    for (int i = 0; img && i < 2 * 3 * 32 * 32; i++) img[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    if (!e) e = usi_graph_write(x, img);
    if (!e) e = usi_graph_write(y, labels);
    if (!e) e = usi_graph_set_profiling(g, 1);
    for (int s = 0; !e && s < 3; s++) {
        e = usi_graph_forward(g);
        if (!e) e = usi_graph_backward(g);
    }
    CHECK(!e, "profile: %s", usi_error_message(e));
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    usi_graph_print_profile(g, f, 3);
    fclose(f);
    /* resnet18: 20 convs (17 + 3 downsample), 20 batch norms */
    CHECK(text && strstr(text, "conv2d           forward        20 "), "profile: no 20 conv2d forward calls:\n%s",
          text ? text : "");
    CHECK(text && strstr(text, "conv2d           backward       20 "), "profile: no 20 conv2d backward calls");
    CHECK(text && strstr(text, "batch_norm       backward       20 "), "profile: no 20 batch_norm backward calls");
    double sum = 0, total = -1;
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        char op[32], pass[16];
        long long calls;
        double ms, share;
        if (sscanf(line, "%31s %15s %lld %lf %lf%%", op, pass, &calls, &ms, &share) == 5) sum += ms;
        else if (!strncmp(line, "all nodes", 9)) total = atof(line + 9);
    }
    CHECK(total > 0 && fabs(sum - total) <= 0.01 * total + 0.01, "profile: rows add up to %.3f ms, total %.3f",
          sum, total);
    /* off again: nothing is counted, and nothing is printed */
    e = usi_graph_set_profiling(g, 0);
    if (!e) e = usi_graph_forward(g);
    CHECK(!e, "profile off: %s", usi_error_message(e));
    free(text);
    text = NULL;
    f = open_memstream(&text, &len);
    usi_graph_print_profile(g, f, 1);
    fclose(f);
    CHECK(len == 0, "profile off still prints %zu bytes", len);
    free(text);
    free(img);
    usi_error_free(e);
    usi_graph_free(g);
}

/* A ResNet-18 step with an objective of two losses under precision
 * "mixed" on a device with bf16 storage (a cpu-guarded copy): most
 * activations kept as bf16, the sum of the losses not, a node of 65 inputs
 * and its inputs not; the arena well under the fp32 plan, and the loss the
 * fp32 loss to bf16's precision. */
static usi_error *bf16_step(int mixed, size_t *arena, double *loss, usi_graph **out)
{
    static usi_device dev;
    dev = (usi_device){.name = "cpu-guarded", .be = usi_cpu_guarded_backend(), .mixed = mixed};
    usi_graph *g = usi_graph_new(&dev, 1, 1);
    *out = g;
    int64_t xs[4] = {4, 3, 64, 64}, n = 4, ls[2] = {4, 10}, vs[2] = {4, 1};
    usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, xs);
    usi_tensor *y = usi_graph_input(g, "labels", USI_DTYPE_I32, 1, &n);
    usi_tensor *q = usi_graph_input(g, "teacher", USI_DTYPE_F32, 2, ls);
    usi_tensor *v = usi_graph_input(g, "v", USI_DTYPE_F32, 2, vs); /* no gradient: backward takes up to 64 */
    usi_tensor *logits = model_resnet(g, x, 18, 10);
    usi_tensor *parts[65];
    for (int i = 0; i < 65; i++) parts[i] = api->scale(g, v, 1.0 + i);
    usi_tensor *wide = api->concat(g, 65, parts, 1);       /* [4, 65] */
    usi_tensor *narrow = api->concat(g, 3, parts, 1);      /* [4, 3] */
    usi_tensor *extra = api->binary(g, USI_BIN_ADD, api->reduce(g, USI_REDUCE_MEAN, wide, 1, (int32_t[]){1}, 0),
                                    api->reduce(g, USI_REDUCE_MEAN, narrow, 1, (int32_t[]){1}, 0));
    usi_tensor *both = api->binary(g, USI_BIN_ADD, api->loss_ce(g, logits, y, 0.1), api->loss_kl(g, logits, q, 2.0));
    usi_tensor *obj = api->scale(g, api->binary(g, USI_BIN_ADD, both, api->reduce(g, USI_REDUCE_MEAN, extra, 1,
                                                                                  (int32_t[]){0}, 0)), 0.5);
    usi_graph_mark_output(obj);
    usi_error *e = usi_graph_set_loss(g, obj);
    if (!e) e = usi_graph_compile(g);
    static float img[4 * 3 * 64 * 64];
    float t[40], vv[4] = {0.1f, -0.2f, 0.3f, 0.05f};
    int32_t labels[4] = {1, 7, 3, 0};
    for (int i = 0; i < 4 * 3 * 64 * 64; i++) img[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    for (int i = 0; i < 40; i++) t[i] = (float)((i * 13) % 7) - 3.0f;
    if (!e) e = usi_graph_write(x, img);
    if (!e) e = usi_graph_write(y, labels);
    if (!e) e = usi_graph_write(q, t);
    if (!e) e = usi_graph_write(v, vv);
    if (!e) e = usi_graph_forward(g);
    if (!e) e = usi_graph_backward(g);
    float l = 0;
    if (!e) e = usi_graph_read(obj, &l);
    *loss = l;
    size_t naive = 0;
    usi_graph_memory(g, arena, &naive);
    if (!e && mixed) {
        CHECK(usi_graph_bf16_nodes(g) > 40, "only %d nodes kept as bf16", usi_graph_bf16_nodes(g));
        CHECK(!both->bf16 && !obj->src[0]->bf16 && !obj->bf16, "a sum of losses is kept as bf16");
        CHECK(!wide->bf16 && !parts[0]->bf16 && !parts[64]->bf16, "a node of 65 inputs, or one of them, as bf16");
        CHECK(narrow->bf16 && logits->src[0]->bf16, "a concat of 3, or the pooled features, not as bf16");
    }
    return e;
}

static void test_bf16_activations(void)
{
    size_t a32 = 0, a16 = 0;
    double l32 = 0, l16 = 0;
    usi_graph *g32 = NULL, *g16 = NULL;
    usi_error *e = bf16_step(0, &a32, &l32, &g32);
    CHECK(!e, "fp32 step: %s", usi_error_message(e));
    usi_error_free(e);
    CHECK(usi_graph_bf16_nodes(g32) == 0, "fp32 keeps %d nodes as bf16", usi_graph_bf16_nodes(g32));
    e = bf16_step(1, &a16, &l16, &g16);
    CHECK(!e, "bf16 step: %s", usi_error_message(e));
    usi_error_free(e);
    printf("resnet18 b4 64px, two losses: arena %.2f MiB in fp32, %.2f MiB with bf16 activations; loss %.6f vs %.6f\n",
           a32 / 1048576.0, a16 / 1048576.0, l32, l16);
    /* at this size oneDNN's weight copies in scratch fill most of the
     * arena; at ResNet-50's training size the activations do */
    size_t p32 = 0, p16 = 0;
    for (int mixed = 0; mixed < 2; mixed++) {
        usi_device dev = {.name = "cpu-guarded", .be = usi_cpu_guarded_backend(), .mixed = mixed};
        usi_graph *g = usi_graph_new(&dev, 1, 1);
        int64_t xs[4] = {32, 3, 224, 224}, n = 32;
        usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, xs);
        usi_tensor *y = usi_graph_input(g, "labels", USI_DTYPE_I32, 1, &n);
        e = usi_graph_set_loss(g, api->loss_ce(g, model_resnet(g, x, 50, 1000), y, 0.1));
        size_t naive = 0;
        if (!e) e = usi_graph_plan_only(g, mixed ? &p16 : &p32, &naive);
        CHECK(!e, "resnet50 plan: %s", usi_error_message(e));
        usi_error_free(e);
        usi_graph_free(g);
    }
    printf("resnet50 train b32 224 on cpu-guarded: arena %.1f MiB in fp32, %.1f MiB with bf16 activations\n",
           p32 / 1048576.0, p16 / 1048576.0);
    CHECK(p16 < 0.7 * p32, "the bf16 arena %zu is not well under fp32's %zu", p16, p32);
    CHECK(isfinite(l16) && fabs(l16 - l32) < 0.02 * fabs(l32) && l16 != l32, "losses %.7f (bf16), %.7f", l16, l32);
    usi_graph_free(g32);
    usi_graph_free(g16);
}

/* One ResNet-18 step (batch 4 at 64 px, cross-entropy) on dev, every value
 * kept (usi_graph_keep_all) where keep is 1: the loss, every parameter's
 * gradient end to end in *grads (*n floats), and the graph for its flags. */
static usi_error *resnet18_step(usi_device *dev, int keep, float *loss, float **grads, size_t *n,
                                usi_graph **out, usi_tensor **stem, usi_tensor **pool)
{
    usi_graph *g = usi_graph_new(dev, 1, 1);
    *out = g;
    int64_t xs[4] = {4, 3, 64, 64}, nb = 4;
    usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, xs);
    usi_tensor *y = usi_graph_input(g, "labels", USI_DTYPE_I32, 1, &nb);
    usi_tensor *obj = api->loss_ce(g, model_resnet(g, x, 18, 10), y, 0.1);
    usi_graph_mark_output(obj);
    usi_error *e = keep ? usi_graph_keep_all(g) : NULL;
    if (!e) e = usi_graph_set_loss(g, obj);
    if (!e) e = usi_graph_compile(g);
    if (e) return e;
    /* the stem's conv (the first with a 64 px input) and max pool */
    *stem = *pool = NULL;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if (t->op == USI_OP_CONV2D && !*stem) *stem = t;
        if (t->op == USI_OP_POOL2D && !*pool) *pool = t;
    }
    static float img[4 * 3 * 64 * 64];
    int32_t labels[4] = {1, 7, 3, 0};
    for (int i = 0; i < 4 * 3 * 64 * 64; i++) img[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    e = usi_graph_write(x, img);
    if (!e) e = usi_graph_write(y, labels);
    if (!e) e = usi_graph_forward(g);
    if (!e) e = usi_graph_backward(g);
    if (!e) e = usi_graph_read(obj, loss);
    *n = 0;
    for (int32_t i = 0; i < usi_graph_num_params(g); i++) {
        usi_param_info p;
        usi_graph_param_at(g, i, &p);
        *n += (size_t)p.numel;
    }
    *grads = malloc(*n * sizeof(float) + 1);
    size_t at = 0;
    for (int32_t i = 0; !e && i < usi_graph_num_params(g); i++) {
        usi_param_info p;
        usi_graph_param_at(g, i, &p);
        e = usi_graph_read_grad(p.tensor, *grads + at);
        at += (size_t)p.numel;
    }
    return e;
}

/* Activations kept channels-last (layout.c) on a cpu-guarded device with
 * USI_GUARDED_NHWC=1, whose adds and global pool run on them in memory
 * order (summing in the same order) and every other kernel on NCHW copies:
 * the marking rules, and the same loss, gradients and intermediate values
 * as cpu, bit for bit; with bf16 storage too, the same as bf16 storage
 * alone. */
static void test_channels_last(void)
{
    usi_device cpu = {.name = "cpu", .be = usi_cpu_backend()};
    usi_device guarded = {.name = "cpu-guarded", .be = usi_cpu_guarded_backend()};
    float l[4] = {0};
    float *gr[4] = {0};
    size_t n[4] = {0};
    usi_graph *g[4] = {0};
    usi_tensor *stem[4], *pool[4];
    usi_device *devs[4] = {&cpu, &guarded, &guarded, &guarded};
    const char *env[4] = {NULL, "1", NULL, "1"};
    for (int k = 0; k < 4; k++) {
        guarded.mixed = k >= 2;
        if (env[k]) setenv("USI_GUARDED_NHWC", env[k], 1);
        else unsetenv("USI_GUARDED_NHWC");
        usi_error *e = resnet18_step(devs[k], 1, &l[k], &gr[k], &n[k], &g[k], &stem[k], &pool[k]);
        CHECK(!e, "channels-last step %d: %s", k, usi_error_message(e));
        usi_error_free(e);
    }
    unsetenv("USI_GUARDED_NHWC");
    CHECK(usi_graph_cl_nodes(g[0]) == 0 && usi_graph_cl_nodes(g[2]) == 0, "channels-last without being asked");
    CHECK(usi_graph_cl_nodes(g[1]) > 40, "only %d nodes kept channels-last", usi_graph_cl_nodes(g[1]));
    int inputs_cl = 0;
    for (int32_t i = 0; i < g[1]->n_nodes; i++) {
        const usi_tensor *t = g[1]->nodes[i];
        inputs_cl += t->cl && (t->storage == USI_STORE_OWNED || t->is_output || t->ndim != 4);
    }
    CHECK(!inputs_cl, "%d leaves, outputs or tensors not 4-d kept channels-last", inputs_cl);
    CHECK(stem[1] && stem[1]->cl && pool[1] && pool[1]->cl && pool[1]->src[0]->cl,
          "the stem conv, its relu or the max pool not channels-last");
    CHECK(l[1] == l[0] && n[1] == n[0] && !memcmp(gr[1], gr[0], n[0] * sizeof(float)),
          "channels-last changes fp32's numbers: loss %.9g vs %.9g", l[1], l[0]);
    CHECK(l[3] == l[2] && n[3] == n[2] && !memcmp(gr[3], gr[2], n[2] * sizeof(float)) && l[2] != l[0],
          "channels-last changes bf16 storage's numbers: loss %.9g vs %.9g (fp32 %.9g)", l[3], l[2], l[0]);
    /* host reads of a value and a gradient kept channels-last come back in
     * NCHW order */
    if (stem[0] && stem[1]) {
        size_t m = (size_t)stem[0]->numel;
        float *a = malloc(m * sizeof(float)), *b = malloc(m * sizeof(float));
        usi_error *e = usi_graph_read(stem[0], a);
        if (!e) e = usi_graph_read(stem[1], b);
        CHECK(!e && !memcmp(a, b, m * sizeof(float)), "the stem's value read back differs: %s",
              usi_error_message(e));
        usi_error_free(e);
        e = usi_graph_read_grad(stem[0], a);
        if (!e) e = usi_graph_read_grad(stem[1], b);
        CHECK(!e && !memcmp(a, b, m * sizeof(float)), "the stem's gradient read back differs: %s",
              usi_error_message(e));
        usi_error_free(e);
        free(a);
        free(b);
    }
    printf("resnet18 b4 64px on cpu-guarded: %d nodes channels-last, loss %.7f as cpu's %.7f; with bf16 %.7f\n",
           usi_graph_cl_nodes(g[1]), l[1], l[0], l[3]);
    for (int k = 0; k < 4; k++) {
        free(gr[k]);
        usi_graph_free(g[k]);
    }
}

/* A batch norm with its ReLU as one node (fuse.c) on cpu-guarded, which
 * fuses every pair in fp32 from the CPU's two kernels: in ResNet-18 the
 * stem's norm and the first norm of each of the 8 basic blocks (the second
 * one's ReLU reads the residual sum), none with USI_FUSE=off, none where
 * every value is kept, none on cpu; the same loss and gradients as cpu
 * bit for bit either way; a fused norm's own value is not there to read. */
static void test_fused_norm_act(void)
{
    usi_device cpu = {.name = "cpu", .be = usi_cpu_backend()};
    usi_device guarded = {.name = "cpu-guarded", .be = usi_cpu_guarded_backend()};
    usi_device *devs[4] = {&cpu, &guarded, &guarded, &guarded};
    const char *fuse[4] = {NULL, NULL, "off", NULL};
    int keep[4] = {0, 0, 0, 1}, want[4] = {0, 9, 0, 0};
    float l[4] = {0};
    float *gr[4] = {0};
    size_t n[4] = {0};
    usi_graph *g[4] = {0};
    usi_tensor *stem, *pool;
    for (int k = 0; k < 4; k++) {
        if (fuse[k]) setenv("USI_FUSE", fuse[k], 1);
        else unsetenv("USI_FUSE");
        usi_error *e = resnet18_step(devs[k], keep[k], &l[k], &gr[k], &n[k], &g[k], &stem, &pool);
        CHECK(!e, "fused step %d: %s", k, usi_error_message(e));
        usi_error_free(e);
        CHECK(usi_graph_fused_nodes(g[k]) == want[k], "run %d: %d norms fused, want %d", k,
              usi_graph_fused_nodes(g[k]), want[k]);
        CHECK(l[k] == l[0] && n[k] == n[0] && gr[k] && !memcmp(gr[k], gr[0], n[0] * sizeof(float)),
              "run %d: loss %.9g, cpu %.9g, or the gradients differ", k, l[k], l[0]);
    }
    unsetenv("USI_FUSE");
    usi_tensor *norm = NULL;
    for (int32_t i = 0; g[1] && i < g[1]->n_nodes && !norm; i++)
        if (g[1]->nodes[i]->fuse_act) norm = g[1]->nodes[i];
    CHECK(norm && norm->fuse_act->fused && norm->fuse_act->src[0] == norm, "the fused pair is marked on both nodes");
    if (norm) {
        float *v = malloc((size_t)norm->numel * sizeof(float));
        usi_error *e = usi_graph_read(norm, v);
        CHECK(e && strstr(usi_error_message(e), norm->name), "a fused norm's value read: %s",
              e ? usi_error_message(e) : "no error");
        usi_error_free(e);
        free(v);
    }
    printf("resnet18 b4 64px on cpu-guarded: %d norms apply their ReLU, loss %.7f as cpu's\n",
           usi_graph_fused_nodes(g[1]), l[1]);
    for (int k = 0; k < 4; k++) {
        free(gr[k]);
        usi_graph_free(g[k]);
    }
}

int main(void)
{
    api = usi_graph_api_get();
    test_shape_error();
    test_shape_errors_per_op();
    test_names_and_iteration();
    test_initialisers();
    test_batch_norm_state();
    test_network_gradients();
    test_custom_op();
    test_custom_op_edges();
    test_no_growth();
    test_threads_agree();
    test_resnet50_plan();
    test_profile();
    test_bf16_activations();
    test_channels_last();
    test_fused_norm_act();
    printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
