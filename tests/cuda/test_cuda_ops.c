/* The CUDA backend against the CPU backend, op by op: every op's forward
 * output, input and parameter gradients and updated buffers, on small odd
 * shapes, from the same inputs and parameters; then the training-step
 * kernels (optimizers, EMA, sum of squares, scale, image conversion) on the
 * same flat blocks. Prints each case's worst relative error; fails past
 * TOL. Dropout masks must match exactly. Then the cases with convolutions
 * and matrix products again under precision "mixed" (bf16 operands, fp32
 * accumulation, activations kept as bf16), against the CPU's fp32, to
 * BF16_TOL norm-wise plus twice what bf16 storage alone makes of the case
 * (cpu-guarded under "mixed"). Exits 77 (skipped) without a GPU.
 *
 *   test_cuda_ops [substring]   only the cases whose name contains it
 *
 * USI_TEST_DEVICE=cpu-guarded (or another device) compares that device
 * instead: how this test itself is checked on machines without a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/device_internal.h"
#include "check.h"
#include "cuda_test.h"
#include "device.h"
#include "graph/graph.h"
#include "plugin/host.h"
#include "util/rng.h"

#define TOL 1e-4      /* fails the test */
#define TARGET 1e-5   /* the goal; cases above it are marked */
#define BF16_TOL 3e-2 /* mixed, norm-wise (below): fails the test */
#define BF16_TARGET 1e-2
#define MAX_IN 4

static const usi_graph_api *api;
static usi_device *gpu;
static int cases_run, above_target;
static double tol = TOL, target = TARGET;
/* 0: the worst element relative to the tensor's largest; 1: |a - b| / |b|
 * over the tensor, for bf16, where a chain's gradients (batch norm's
 * backward subtracts means) lose single elements to cancellation */
static int normwise;

typedef struct leaf {
    int32_t ndim;
    int64_t shape[6];
    int32_t dtype;  /* F32 (0) or I32 labels */
    int32_t grad;   /* 1: differentiated */
    double lo, hi;  /* uniform range; both 0: [-1, 1] */
} leaf;

struct ocase;
typedef usi_tensor *(*build_fn)(usi_graph *g, usi_tensor **in, const struct ocase *c);

typedef struct ocase {
    const char *name;
    int32_t training;
    int32_t n_in;
    leaf in[MAX_IN];
    build_fn build;
    int32_t iarg[6];
    double farg[2];
    int32_t exact_zeros; /* dropout: the zero pattern must be identical */
} ocase;

/* ---- builders ---- */

static usi_tensor *param(usi_graph *g, const char *name, int32_t ndim, const int64_t *shape)
{
    usi_init u = {sizeof u, USI_INIT_UNIFORM, 0, 0, 0, -0.5, 0.5, 0};
    return api->param(g, name, ndim, shape, &u);
}

/* iarg: [0] out channels, [1] kernel, [2] stride, [3] pad, [4] dilation,
 * [5] groups; farg[0] != 0: with bias */
static usi_tensor *b_conv(usi_graph *g, usi_tensor **in, const ocase *c)
{
    int64_t cin = api->dim(in[0], 1), ws[4] = {c->iarg[0], cin / c->iarg[5], c->iarg[1], c->iarg[1]};
    int64_t bs = c->iarg[0];
    usi_conv2d_desc d = {sizeof d, {c->iarg[2], c->iarg[2]}, {c->iarg[3], c->iarg[3]}, {c->iarg[4], c->iarg[4]},
                         c->iarg[5]};
    return api->conv2d(g, in[0], param(g, "w", 4, ws), c->farg[0] ? param(g, "b", 1, &bs) : NULL, &d);
}

/* an eval conv followed by an eval batch norm: folded into the conv */
static usi_tensor *b_conv_bn_eval(usi_graph *g, usi_tensor **in, const ocase *c)
{
    usi_tensor *y = b_conv(g, in, c);
    int64_t o = c->iarg[0];
    usi_init half = {sizeof half, USI_INIT_UNIFORM, 0, 0, 0, 0.5, 1.5, 0};
    usi_init mean = {sizeof mean, USI_INIT_UNIFORM, 0, 0, 0, -0.2, 0.2, 0};
    usi_tensor *rm = api->buffer(g, "rm", USI_DTYPE_F32, 1, &o, &mean);
    usi_tensor *rv = api->buffer(g, "rv", USI_DTYPE_F32, 1, &o, &half);
    return api->batch_norm(g, y, param(g, "gamma", 1, &o), param(g, "beta", 1, &o), rm, rv, NULL, 0.1, 1e-5);
}

/* iarg[0]: out features; farg[0] != 0: with bias */
static usi_tensor *b_linear(usi_graph *g, usi_tensor **in, const ocase *c)
{
    int64_t ws[2] = {c->iarg[0], api->dim(in[0], -1)}, bs = c->iarg[0];
    return api->linear(g, in[0], param(g, "w", 2, ws), c->farg[0] ? param(g, "b", 1, &bs) : NULL);
}

static usi_tensor *b_matmul(usi_graph *g, usi_tensor **in, const ocase *c)
{
    (void)c;
    return api->matmul(g, in[0], in[1]);
}

/* iarg[0]: affine, [1]: running statistics; farg[0]: momentum */
static usi_tensor *b_batch_norm(usi_graph *g, usi_tensor **in, const ocase *c)
{
    int64_t ch = api->dim(in[0], 1), one = 1;
    usi_init zeros = {sizeof zeros, USI_INIT_UNIFORM, 0, 0, 0, -0.1, 0.1, 0};
    usi_init ones = {sizeof ones, USI_INIT_UNIFORM, 0, 0, 0, 0.8, 1.2, 0};
    usi_init zero = {sizeof zero, USI_INIT_ZEROS, 0, 0, 0, 0, 0, 0};
    usi_tensor *w = c->iarg[0] ? param(g, "w", 1, &ch) : NULL, *b = c->iarg[0] ? param(g, "b", 1, &ch) : NULL;
    usi_tensor *rm = NULL, *rv = NULL, *nb = NULL;
    if (c->iarg[1]) {
        rm = api->buffer(g, "rm", USI_DTYPE_F32, 1, &ch, &zeros);
        rv = api->buffer(g, "rv", USI_DTYPE_F32, 1, &ch, &ones);
        nb = api->buffer(g, "nb", USI_DTYPE_I64, 0, &one, &zero);
    }
    return api->batch_norm(g, in[0], w, b, rm, rv, nb, c->farg[0], 1e-5);
}

/* iarg[0]: axis */
static usi_tensor *b_layer_norm(usi_graph *g, usi_tensor **in, const ocase *c)
{
    int64_t ch = api->dim(in[0], c->iarg[0]);
    return api->layer_norm(g, in[0], param(g, "w", 1, &ch), param(g, "b", 1, &ch), c->iarg[0], 1e-5);
}

/* iarg[0]: USI_ACT_*; farg[0]: alpha */
static usi_tensor *b_act(usi_graph *g, usi_tensor **in, const ocase *c)
{
    return api->activation(g, in[0], c->iarg[0], c->farg[0]);
}

/* iarg[0]: USI_BIN_* */
static usi_tensor *b_binary(usi_graph *g, usi_tensor **in, const ocase *c)
{
    return api->binary(g, c->iarg[0], in[0], in[1]);
}

static usi_tensor *b_scale(usi_graph *g, usi_tensor **in, const ocase *c)
{
    return api->scale(g, in[0], c->farg[0]);
}

/* iarg: kind, kernel, stride, pad, ceil_mode, count_include_pad */
static usi_tensor *b_pool(usi_graph *g, usi_tensor **in, const ocase *c)
{
    usi_pool2d_desc d = {sizeof d, c->iarg[0], {c->iarg[1], c->iarg[1]}, {c->iarg[2], c->iarg[2]},
                         {c->iarg[3], c->iarg[3]}, c->iarg[4], c->iarg[5]};
    return api->pool2d(g, in[0], &d);
}

/* iarg: kind, axis mask, keepdim */
static usi_tensor *b_reduce(usi_graph *g, usi_tensor **in, const ocase *c)
{
    int32_t axes[6], n = 0;
    for (int32_t d = 0; d < 6; d++)
        if (c->iarg[1] & (1 << d)) axes[n++] = d;
    return api->reduce(g, c->iarg[0], in[0], n, axes, c->iarg[2]);
}

static usi_tensor *b_softmax(usi_graph *g, usi_tensor **in, const ocase *c)
{
    (void)c;
    return api->softmax(g, in[0]);
}

static usi_tensor *b_attention(usi_graph *g, usi_tensor **in, const ocase *c)
{
    return api->attention(g, in[0], in[1], in[2], NULL, c->farg[0]);
}

static usi_tensor *b_dropout(usi_graph *g, usi_tensor **in, const ocase *c)
{
    return c->iarg[0] ? api->drop_path(g, in[0], c->farg[0]) : api->dropout(g, in[0], c->farg[0]);
}

static usi_tensor *b_reshape(usi_graph *g, usi_tensor **in, const ocase *c)
{
    (void)c;
    int64_t s[2] = {-1, 4};
    return api->reshape(g, in[0], 2, s);
}

static usi_tensor *b_permute(usi_graph *g, usi_tensor **in, const ocase *c)
{
    (void)c;
    int32_t perm[4] = {0, 2, 3, 1};
    return api->permute(g, in[0], perm);
}

static usi_tensor *b_concat(usi_graph *g, usi_tensor **in, const ocase *c)
{
    return api->concat(g, 3, in, c->iarg[0]);
}

/* iarg: axis, start, end, step */
static usi_tensor *b_slice(usi_graph *g, usi_tensor **in, const ocase *c)
{
    return api->slice(g, in[0], c->iarg[0], c->iarg[1], c->iarg[2], c->iarg[3]);
}

static usi_tensor *b_pad(usi_graph *g, usi_tensor **in, const ocase *c)
{
    int64_t pads[6] = {0, 0, 1, 2, 2, 1};
    return api->pad(g, in[0], pads, c->farg[0]);
}

static usi_tensor *b_flatten(usi_graph *g, usi_tensor **in, const ocase *c)
{
    (void)c;
    return api->flatten(g, in[0], 1, -1);
}

static usi_tensor *b_space_to_depth(usi_graph *g, usi_tensor **in, const ocase *c)
{
    return api->space_to_depth(g, in[0], c->iarg[0]);
}

/* iarg[0]: 0 soft CE, 1 CE with labels, 2 KL; farg[0]: smoothing or T */
static usi_tensor *b_loss(usi_graph *g, usi_tensor **in, const ocase *c)
{
    switch (c->iarg[0]) {
    case 0: return api->loss_soft_ce(g, in[0], in[1]);
    case 1: return api->loss_ce(g, in[0], in[1], c->farg[0]);
    default: return api->loss_kl(g, in[0], in[1], c->farg[0]);
    }
}

/* a small net: conv-bn-relu, max pool, residual add, global mean, linear,
 * cross-entropy (the ops of a ResNet step, in a chain) */
static usi_tensor *b_net(usi_graph *g, usi_tensor **in, const ocase *c)
{
    (void)c;
    ocase cv = {.iarg = {8, 3, 1, 1, 1, 1}};
    ocase bn = {.iarg = {1, 1}, .farg = {0.1, 0}};
    api->push_scope(g, "conv1");
    usi_tensor *x = b_conv(g, in, &cv);
    api->pop_scope(g);
    api->push_scope(g, "bn1");
    x = b_batch_norm(g, &x, &bn);
    api->pop_scope(g);
    x = api->activation(g, x, USI_ACT_RELU, 0);
    usi_pool2d_desc pd = {sizeof pd, USI_POOL_MAX, {3, 3}, {2, 2}, {1, 1}, 0, 0};
    x = api->pool2d(g, x, &pd);
    api->push_scope(g, "conv2");
    usi_tensor *y = b_conv(g, &x, &cv);
    api->pop_scope(g);
    api->push_scope(g, "bn2");
    y = b_batch_norm(g, &y, &bn);
    api->pop_scope(g);
    x = api->activation(g, api->binary(g, USI_BIN_ADD, x, y), USI_ACT_RELU, 0);
    int32_t axes[2] = {2, 3};
    x = api->reduce(g, USI_REDUCE_MEAN, x, 2, axes, 0);
    int64_t ws[2] = {5, 8}, bs = 5;
    x = api->linear(g, x, param(g, "fc.w", 2, ws), param(g, "fc.b", 1, &bs));
    return api->loss_ce(g, x, in[1], 0.1);
}

/* conv (k x k, stride s, pad k / 2, no bias) then a training batch norm,
 * each under its own scope */
static usi_tensor *conv_bn(usi_graph *g, usi_tensor *x, const char *conv, const char *norm, int32_t out, int32_t k,
                           int32_t s)
{
    ocase cv = {.iarg = {out, k, s, k / 2, 1, 1}};
    ocase bn = {.iarg = {1, 1}, .farg = {0.1, 0}};
    api->push_scope(g, conv);
    x = b_conv(g, &x, &cv);
    api->pop_scope(g);
    api->push_scope(g, norm);
    x = b_batch_norm(g, &x, &bn);
    api->pop_scope(g);
    return x;
}

/* The last stage of a ResNet-18 at its real width and small maps: two basic
 * blocks (the first with a strided 1x1 shortcut), global mean, linear,
 * cross-entropy. iarg[0]: the stage's channels. The shapes where the whole
 * ResNet-18 step's gradients on a GPU part from the CPU's. */
static usi_tensor *b_stage(usi_graph *g, usi_tensor **in, const ocase *c)
{
    int32_t o = c->iarg[0];
    usi_tensor *x = in[0];
    usi_tensor *y = api->activation(g, conv_bn(g, x, "0.conv1", "0.bn1", o, 3, 2), USI_ACT_RELU, 0);
    y = conv_bn(g, y, "0.conv2", "0.bn2", o, 3, 1);
    usi_tensor *shortcut = conv_bn(g, x, "0.downsample.0", "0.downsample.1", o, 1, 2);
    x = api->activation(g, api->binary(g, USI_BIN_ADD, y, shortcut), USI_ACT_RELU, 0);
    y = api->activation(g, conv_bn(g, x, "1.conv1", "1.bn1", o, 3, 1), USI_ACT_RELU, 0);
    y = conv_bn(g, y, "1.conv2", "1.bn2", o, 3, 1);
    x = api->activation(g, api->binary(g, USI_BIN_ADD, y, x), USI_ACT_RELU, 0);
    int32_t axes[2] = {2, 3};
    x = api->reduce(g, USI_REDUCE_MEAN, x, 2, axes, 0);
    int64_t ws[2] = {5, o}, bs = 5;
    x = api->linear(g, x, param(g, "fc.w", 2, ws), param(g, "fc.b", 1, &bs));
    return api->loss_ce(g, x, in[1], 0.1);
}

/* ---- running a case on one device ---- */

typedef struct result {
    float *out;
    int64_t n_out;
    float *grad[MAX_IN];
    float *pgrad;
    size_t n_pgrad;
    void *buffers;
    size_t buffer_bytes, n_f32;
} result;

static void result_free(result *r)
{
    free(r->out);
    for (int i = 0; i < MAX_IN; i++) free(r->grad[i]);
    free(r->pgrad);
    free(r->buffers);
    memset(r, 0, sizeof *r);
}

static int64_t numel(const leaf *l)
{
    int64_t n = 1;
    for (int32_t d = 0; d < l->ndim; d++) n *= l->shape[d];
    return n;
}

static usi_error *run(usi_device *d, const ocase *c, result *r)
{
    memset(r, 0, sizeof *r);
    usi_graph *g = usi_graph_new(d, c->training, 11);
    usi_tensor *in[MAX_IN] = {0};
    usi_rng rng;
    usi_rng_seed(&rng, 5, 0, 0, 0);
    for (int32_t i = 0; i < c->n_in; i++) {
        const leaf *l = &c->in[i];
        char name[8];
        snprintf(name, sizeof name, "x%d", i);
        in[i] = usi_graph_input(g, name, l->dtype, l->ndim, l->shape);
        if (!in[i]) break;
        if (l->grad) usi_graph_set_requires_grad(in[i], 1);
        int64_t n = numel(l);
        double lo = l->lo, hi = l->hi;
        if (lo == 0 && hi == 0) lo = -1, hi = 1;
        void *h = malloc((size_t)n * 4);
        for (int64_t k = 0; k < n; k++) {
            double u = lo + (hi - lo) * usi_rng_uniform(&rng);
            if (l->dtype == USI_DTYPE_I32) ((int32_t *)h)[k] = (int32_t)floor(u);
            else ((float *)h)[k] = (float)u;
        }
        usi_error *e = usi_graph_write(in[i], h);
        free(h);
        if (e) {
            usi_graph_free(g);
            return e;
        }
    }
    usi_tensor *out = c->build(g, in, c);
    usi_error *e = usi_graph_error(g);
    float *seed = NULL;
    if (!e) {
        r->n_out = usi_graph_numel(out);
        seed = malloc((size_t)r->n_out * sizeof(float));
        for (int64_t k = 0; k < r->n_out; k++) seed[k] = (float)(2 * usi_rng_uniform(&rng) - 1);
        usi_graph_mark_output(out);
        if (c->training) {
            e = usi_graph_set_loss(g, out);
            if (r->n_out > 1) usi_graph_set_loss_seed(g, seed);
        }
    }
    if (!e) e = usi_graph_compile(g);
    if (!e) e = usi_graph_forward(g);
    if (!e && c->training) e = usi_graph_backward(g);
    if (!e) {
        r->out = malloc((size_t)r->n_out * sizeof(float));
        e = usi_graph_read(out, r->out);
    }
    for (int32_t i = 0; !e && i < c->n_in; i++) {
        if (!c->training || !c->in[i].grad || !usi_graph_has_grad(in[i])) continue;
        r->grad[i] = malloc((size_t)numel(&c->in[i]) * sizeof(float));
        e = usi_graph_read_grad(in[i], r->grad[i]);
    }
    usi_graph_blocks b;
    if (!e) usi_graph_get_blocks(g, &b);
    if (!e && c->training && b.grads && b.n_trainable) {
        r->n_pgrad = b.n_trainable;
        r->pgrad = malloc(b.n_trainable * sizeof(float));
        e = usi_dbuf_read(b.grads, 0, r->pgrad, b.n_trainable * sizeof(float));
    }
    if (!e && b.buffers) {
        r->buffer_bytes = usi_dbuf_bytes(b.buffers);
        r->n_f32 = b.n_f32_buffers;
        r->buffers = malloc(r->buffer_bytes);
        e = usi_dbuf_read(b.buffers, 0, r->buffers, r->buffer_bytes);
    }
    usi_graph_free(g);
    free(seed);
    return e;
}

/* Worst |a - b| relative to the scale of b. */
static double rel_err(const float *a, const float *b, size_t n, size_t *at)
{
    double scale = 1e-3, worst = 0;
    for (size_t k = 0; k < n; k++) scale = fmax(scale, fabs(b[k]));
    *at = 0;
    for (size_t k = 0; k < n; k++) {
        double e = fabs((double)a[k] - b[k]) / scale;
        if (!(e <= worst)) worst = e, *at = k;
    }
    return worst;
}

/* |a - b| / |b| (Euclidean norms) */
static double norm_err(const float *a, const float *b, size_t n)
{
    double d = 0, r = 0;
    for (size_t k = 0; k < n; k++) {
        d += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
        r += (double)b[k] * b[k];
    }
    return sqrt(d) / fmax(sqrt(r), 1e-12);
}

/* Under mixed, what bf16 storage alone makes of the same case: cpu-guarded
 * under "mixed" (fp32 kernels on activations kept as bf16), set per case
 * by run_case; NULL where the case keeps nothing as bf16 or in fp32. */
static const float *storage_v;

static double compare(const char *name, const char *what, const float *gpu_v, const float *cpu_v, size_t n)
{
    if (!gpu_v || !cpu_v) {
        CHECK(gpu_v == cpu_v, "%s: %s present on one device only", name, what);
        return 0;
    }
    size_t at;
    double e = rel_err(gpu_v, cpu_v, n, &at);
    if (normwise) {
        /* the device may be as far from fp32 again as bf16 storage is
         * (it also rounds the products' operands), plus the tolerance */
        double en = norm_err(gpu_v, cpu_v, n), es = storage_v ? norm_err(storage_v, cpu_v, n) : 0;
        /* on cpu-guarded the device is the emulation: the same numbers */
        CHECK(!storage_v || strcmp(usi_device_name(gpu), "cpu-guarded") || !memcmp(gpu_v, storage_v, n * sizeof(float)),
              "%s: %s: cpu-guarded differs from its own emulation", name, what);
        CHECK(en <= tol + 2 * es,
              "%s: %s: norm-wise relative error %.3g, bf16 storage alone %.3g (worst element %.3g at %zu: cuda "
              "%.8g, cpu %.8g)",
              name, what, en, es, e, at, gpu_v[at], cpu_v[at]);
        return en;
    }
    CHECK(e <= tol, "%s: %s: relative error %.3g at %zu (cuda %.8g, cpu %.8g)", name, what, e, at, gpu_v[at],
          cpu_v[at]);
    return e;
}

static void run_case(const ocase *c)
{
    result rc, rg, rs;
    memset(&rs, 0, sizeof rs);
    usi_error *ec = run(usi_device_cpu(), c, &rc), *eg = run(gpu, c, &rg), *es = NULL;
    CHECK(!ec, "%s on cpu: %s", c->name, ec ? usi_error_message(ec) : "");
    CHECK(!eg, "%s on cuda: %s", c->name, eg ? usi_error_message(eg) : "");
    int storage = 0;
    if (usi_device_mixed(gpu)) {
        /* cpu-guarded under "mixed", a device of its own */
        usi_device emu = {.name = "cpu-guarded", .be = usi_cpu_guarded_backend(), .mixed = 1};
        es = run(&emu, c, &rs);
        CHECK(!es, "%s on cpu-guarded under mixed: %s", c->name, es ? usi_error_message(es) : "");
        storage = !es;
    }
    if (!ec && !eg) {
        storage_v = storage ? rs.out : NULL;
        double worst = compare(c->name, "output", rg.out, rc.out, (size_t)rc.n_out);
        for (int32_t i = 0; i < c->n_in; i++) {
            char what[32];
            snprintf(what, sizeof what, "gradient of input %d", i);
            storage_v = storage ? rs.grad[i] : NULL;
            worst = fmax(worst, compare(c->name, what, rg.grad[i], rc.grad[i], (size_t)numel(&c->in[i])));
        }
        CHECK(rg.n_pgrad == rc.n_pgrad, "%s: parameter gradients", c->name);
        storage_v = storage && rs.n_pgrad == rc.n_pgrad ? rs.pgrad : NULL;
        if (rg.n_pgrad == rc.n_pgrad)
            worst = fmax(worst, compare(c->name, "parameter gradients", rg.pgrad, rc.pgrad, rc.n_pgrad));
        storage_v = storage && rs.buffer_bytes == rc.buffer_bytes ? rs.buffers : NULL;
        CHECK(rg.buffer_bytes == rc.buffer_bytes && rg.n_f32 == rc.n_f32, "%s: buffers", c->name);
        if (rg.buffer_bytes == rc.buffer_bytes && rg.n_f32 == rc.n_f32 && rc.buffer_bytes) {
            /* float buffers (running statistics) to rounding, the rest
             * (batch counters) exactly */
            worst = fmax(worst, compare(c->name, "float buffers", rg.buffers, rc.buffers, rc.n_f32));
            size_t head = rc.n_f32 * sizeof(float);
            CHECK(!memcmp((char *)rg.buffers + head, (char *)rc.buffers + head, rc.buffer_bytes - head),
                  "%s: counters differ", c->name);
        }
        if (c->exact_zeros) {
            int64_t diff = 0;
            for (int64_t k = 0; k < rc.n_out; k++) diff += (rg.out[k] == 0.0f) != (rc.out[k] == 0.0f);
            CHECK(!diff, "%s: %lld elements dropped on one device only", c->name, (long long)diff);
        }
        cases_run++;
        above_target += worst > target;
        printf("%s%-28s %s %.2e%s\n", usi_device_mixed(gpu) ? "bf16 " : "", c->name,
               normwise ? "norm-wise relative error" : "worst relative error", worst,
               worst > target ? "  (above the goal)" : "");
    }
    storage_v = NULL;
    usi_error_free(ec);
    usi_error_free(eg);
    usi_error_free(es);
    result_free(&rc);
    result_free(&rg);
    if (storage) result_free(&rs);
}

/* ---- the cases ---- */

#define L(...) {__VA_ARGS__}
#define IN1(n0) .n_in = 1, .in = {n0}
#define G4(a, b, c, d) {4, {a, b, c, d}, 0, 1, 0, 0}
#define G3(a, b, c) {3, {a, b, c}, 0, 1, 0, 0}
#define G2(a, b) {2, {a, b}, 0, 1, 0, 0}

static const ocase cases[] = {
    {"conv 3x3 bias", 1, IN1(G4(2, 4, 9, 7)), b_conv, {6, 3, 1, 1, 1, 1}, {1, 0}, 0},
    {"conv 3x3 stride 2", 1, IN1(G4(2, 3, 11, 10)), b_conv, {5, 3, 2, 1, 1, 1}, {0, 0}, 0},
    {"conv depthwise dilated", 1, IN1(G4(2, 6, 8, 8)), b_conv, {6, 3, 1, 2, 2, 6}, {1, 0}, 0},
    {"conv 1x1", 1, IN1(G4(3, 8, 5, 5)), b_conv, {16, 1, 1, 0, 1, 1}, {1, 0}, 0},
    {"conv grouped 7x7 s2", 1, IN1(G4(2, 8, 13, 13)), b_conv, {8, 7, 2, 3, 1, 2}, {0, 0}, 0},
    {"conv + bn folded (eval)", 0, IN1(G4(2, 4, 6, 6)), b_conv_bn_eval, {6, 3, 1, 1, 1, 1}, {1, 0}, 0},
    {"linear bias", 1, IN1(G2(5, 7)), b_linear, {4}, {1, 0}, 0},
    {"linear 3d", 1, IN1(G3(2, 3, 8)), b_linear, {6}, {0, 0}, 0},
    {"matmul batched", 1, .n_in = 2, .in = {G4(2, 3, 4, 5), G4(2, 3, 5, 6)}, b_matmul, {0}, {0, 0}, 0},
    {"matmul broadcast", 1, .n_in = 2, .in = {G4(2, 1, 4, 5), G3(3, 5, 6)}, b_matmul, {0}, {0, 0}, 0},
    {"matmul shared right", 1, .n_in = 2, .in = {G4(2, 3, 4, 5), G2(5, 6)}, b_matmul, {0}, {0, 0}, 0},
    {"batch norm train", 1, IN1(G4(4, 6, 5, 5)), b_batch_norm, {1, 1}, {0.1, 0}, 0},
    {"batch norm 2d no affine", 1, IN1(G2(8, 5)), b_batch_norm, {0, 0}, {0.1, 0}, 0},
    {"batch norm eval", 0, IN1(G4(3, 5, 4, 4)), b_batch_norm, {1, 1}, {0.1, 0}, 0},
    {"layer norm last", 1, IN1(G3(3, 4, 40)), b_layer_norm, {-1}, {0, 0}, 0},
    {"layer norm channels", 1, IN1(G4(2, 6, 4, 5)), b_layer_norm, {1}, {0, 0}, 0},
    {"relu", 1, .n_in = 1, .in = {{3, {3, 5, 7}, 0, 1, -4, 4}}, b_act, {USI_ACT_RELU}, {0, 0}, 0},
    {"relu6", 1, .n_in = 1, .in = {{3, {3, 5, 7}, 0, 1, -8, 8}}, b_act, {USI_ACT_RELU6}, {0, 0}, 0},
    {"leaky relu", 1, .n_in = 1, .in = {{3, {3, 5, 7}, 0, 1, -4, 4}}, b_act, {USI_ACT_LEAKY_RELU}, {0.1, 0}, 0},
    {"gelu", 1, .n_in = 1, .in = {{3, {3, 5, 7}, 0, 1, -4, 4}}, b_act, {USI_ACT_GELU}, {0, 0}, 0},
    {"gelu tanh", 1, .n_in = 1, .in = {{3, {3, 5, 7}, 0, 1, -4, 4}}, b_act, {USI_ACT_GELU_TANH}, {0, 0}, 0},
    {"silu", 1, .n_in = 1, .in = {{3, {3, 5, 7}, 0, 1, -4, 4}}, b_act, {USI_ACT_SILU}, {0, 0}, 0},
    {"hardswish", 1, .n_in = 1, .in = {{3, {3, 5, 7}, 0, 1, -4, 4}}, b_act, {USI_ACT_HARDSWISH}, {0, 0}, 0},
    {"hardsigmoid", 1, .n_in = 1, .in = {{3, {3, 5, 7}, 0, 1, -4, 4}}, b_act, {USI_ACT_HARDSIGMOID}, {0, 0}, 0},
    {"sigmoid", 1, .n_in = 1, .in = {{3, {3, 5, 7}, 0, 1, -4, 4}}, b_act, {USI_ACT_SIGMOID}, {0, 0}, 0},
    {"tanh", 1, .n_in = 1, .in = {{3, {3, 5, 7}, 0, 1, -4, 4}}, b_act, {USI_ACT_TANH}, {0, 0}, 0},
    {"log", 1, .n_in = 1, .in = {{3, {3, 5, 7}, 0, 1, 0.05, 3}}, b_act, {USI_ACT_LOG}, {0, 0}, 0},
    {"add same", 1, .n_in = 2, .in = {G4(2, 3, 4, 5), G4(2, 3, 4, 5)}, b_binary, {USI_BIN_ADD}, {0, 0}, 0},
    {"sub channel", 1, .n_in = 2, .in = {G4(2, 3, 4, 5), G3(3, 1, 1)}, b_binary, {USI_BIN_SUB}, {0, 0}, 0},
    {"mul cross", 1, .n_in = 2, .in = {G4(2, 1, 4, 1), G4(1, 3, 1, 5)}, b_binary, {USI_BIN_MUL}, {0, 0}, 0},
    {"mul bias-like", 1, .n_in = 2, .in = {G4(4, 8, 16, 16), G4(1, 8, 1, 1)}, b_binary, {USI_BIN_MUL}, {0, 0}, 0},
    {"div scalar", 1, .n_in = 2, .in = {G2(2, 3), {1, {1}, 0, 1, 0.5, 2}}, b_binary, {USI_BIN_DIV}, {0, 0}, 0},
    {"div channel", 1, .n_in = 2, .in = {G4(2, 3, 4, 5), {3, {3, 1, 5}, 0, 1, 0.5, 2}}, b_binary, {USI_BIN_DIV},
     {0, 0}, 0},
    {"scale", 1, IN1(G3(2, 3, 4)), b_scale, {0}, {0.37, 0}, 0},
    {"max pool 3x3 s2", 1, IN1(G4(2, 3, 9, 9)), b_pool, {USI_POOL_MAX, 3, 2, 1, 0, 0}, {0, 0}, 0},
    {"max pool 2x2 ceil", 1, IN1(G4(1, 2, 7, 7)), b_pool, {USI_POOL_MAX, 2, 2, 0, 1, 0}, {0, 0}, 0},
    {"avg pool 2x2", 1, IN1(G4(2, 3, 8, 8)), b_pool, {USI_POOL_AVG, 2, 2, 0, 0, 1}, {0, 0}, 0},
    {"avg pool 3x3 ceil nopad", 1, IN1(G4(2, 3, 10, 10)), b_pool, {USI_POOL_AVG, 3, 2, 1, 1, 0}, {0, 0}, 0},
    {"mean hw keepdim", 1, IN1(G4(2, 3, 4, 5)), b_reduce, {USI_REDUCE_MEAN, 12, 1}, {0, 0}, 0},
    {"sum batch", 1, IN1(G3(4, 3, 5)), b_reduce, {USI_REDUCE_SUM, 1, 0}, {0, 0}, 0},
    {"sum 0 and 2", 1, IN1(G4(2, 3, 4, 5)), b_reduce, {USI_REDUCE_SUM, 5, 0}, {0, 0}, 0},
    {"softmax short rows", 1, IN1(G2(6, 13)), b_softmax, {0}, {0, 0}, 0},
    {"softmax long rows", 1, IN1(G3(2, 3, 1000)), b_softmax, {0}, {0, 0}, 0},
    {"attention", 1, .n_in = 3, .in = {G4(2, 2, 5, 8), G4(2, 2, 7, 8), G4(2, 2, 7, 8)}, b_attention, {0},
     {0.35, 0}, 0},
    {"dropout", 1, IN1(G2(3, 5000)), b_dropout, {0}, {0.3, 0}, 1},
    {"drop path", 1, IN1(G3(8, 3, 4)), b_dropout, {1}, {0.4, 0}, 1},
    {"reshape", 1, IN1(G3(2, 3, 4)), b_reshape, {0}, {0, 0}, 0},
    {"permute", 1, IN1(G4(2, 3, 4, 5)), b_permute, {0}, {0, 0}, 0},
    {"concat", 1, .n_in = 3, .in = {G3(2, 3, 4), G3(2, 5, 4), G3(2, 1, 4)}, b_concat, {1}, {0, 0}, 0},
    {"slice", 1, IN1(G3(2, 3, 10)), b_slice, {2, 1, 9, 3}, {0, 0}, 0},
    {"pad", 1, IN1(G3(2, 3, 4)), b_pad, {0}, {0.5, 0}, 0},
    {"flatten", 1, IN1(G4(2, 3, 4, 5)), b_flatten, {0}, {0, 0}, 0},
    {"space to depth", 1, IN1(G4(2, 3, 4, 6)), b_space_to_depth, {2}, {0, 0}, 0},
    {"soft cross-entropy", 1, .n_in = 2, .in = {G2(6, 11), {2, {6, 11}, 0, 1, 0, 1}}, b_loss, {0}, {0, 0}, 0},
    {"cross-entropy smoothed", 1, .n_in = 2, .in = {G2(6, 11), {1, {6}, USI_DTYPE_I32, 0, 0, 11}}, b_loss, {1},
     {0.1, 0}, 0},
    {"kl divergence", 1, .n_in = 2, .in = {G2(6, 11), G2(6, 11)}, b_loss, {2}, {2.0, 0}, 0},
    {"small net", 1, .n_in = 2, .in = {G4(4, 3, 12, 12), {1, {4}, USI_DTYPE_I32, 0, 0, 5}}, b_net, {0}, {0, 0}, 0},
    /* ResNet-18's last stage (layer4) at 96 px (3x3 maps) and at 128 px
     * (4x4 maps), and its ops alone at 3x3 */
    {"conv 3x3 on 3x3 maps", 1, IN1(G4(16, 512, 3, 3)), b_conv, {512, 3, 1, 1, 1, 1}, {0, 0}, 0},
    {"conv 3x3 s2 to 3x3 maps", 1, IN1(G4(16, 256, 6, 6)), b_conv, {512, 3, 2, 1, 1, 1}, {0, 0}, 0},
    {"batch norm train 3x3 maps", 1, IN1(G4(16, 512, 3, 3)), b_batch_norm, {1, 1}, {0.1, 0}, 0},
    {"resnet stage to 3x3", 1, .n_in = 2, .in = {G4(16, 256, 6, 6), {1, {16}, USI_DTYPE_I32, 0, 0, 5}}, b_stage,
     {512}, {0, 0}, 0},
    {"resnet stage to 4x4", 1, .n_in = 2, .in = {G4(16, 256, 8, 8), {1, {16}, USI_DTYPE_I32, 0, 0, 5}}, b_stage,
     {512}, {0, 0}, 0},
};

/* ---- training-step kernels ---- */

static usi_dbuf *block(usi_device *d, const float *host, size_t n)
{
    usi_dbuf *b = NULL;
    usi_error *e = usi_dbuf_new(d, n * sizeof(float), &b);
    if (!e && host) e = usi_dbuf_write(b, 0, host, n * sizeof(float));
    CHECK(!e, "block: %s", e ? usi_error_message(e) : "");
    usi_error_free(e);
    return b;
}

static float *read_back(usi_dbuf *b, size_t n)
{
    float *h = malloc(n * sizeof(float));
    CHECK_OK(usi_dbuf_read(b, 0, h, n * sizeof(float)));
    return h;
}

static size_t bit_diffs(const float *a, const float *b, size_t n)
{
    size_t d = 0;
    for (size_t k = 0; k < n; k++) d += memcmp(&a[k], &b[k], sizeof(float)) != 0;
    return d;
}

static void check_optimizer(int kind, int nesterov, const char *name)
{
    enum { N = 140000 };
    usi_optim_seg segs[3] = {{0, 70000, 1}, {70016, 5, 0}, {70032, 69968, 1}};
    float *w = malloc(N * sizeof(float)), *g = malloc(N * sizeof(float));
    usi_rng r;
    usi_rng_seed(&r, 9, (uint64_t)kind, 0, 0);
    for (size_t k = 0; k < N; k++) {
        w[k] = (float)(usi_rng_uniform(&r) - 0.5);
        g[k] = (float)(0.01 * (usi_rng_uniform(&r) - 0.5));
    }
    usi_optim_hp hp = {kind, 0.01, 0.05, 0.9, 0.999, 1e-8, 0.9, nesterov};
    usi_device *dev[2] = {usi_device_cpu(), gpu};
    float *wr[2], *sr[2];
    for (int i = 0; i < 2; i++) {
        usi_dbuf *bw = block(dev[i], w, N), *bg = block(dev[i], g, N), *s0 = block(dev[i], NULL, N),
                 *s1 = block(dev[i], NULL, N);
        for (int64_t step = 1; step <= 3; step++)
            CHECK_OK(usi_dbuf_optim_step(&hp, step, bw, bg, s0, kind == USI_OPT_SGD ? NULL : s1, segs, 3));
        wr[i] = read_back(bw, N);
        sr[i] = read_back(s0, N);
        usi_dbuf_free(bw);
        usi_dbuf_free(bg);
        usi_dbuf_free(s0);
        usi_dbuf_free(s1);
    }
    size_t at;
    double e = rel_err(wr[1], wr[0], N, &at);
    size_t diffs = bit_diffs(wr[1], wr[0], N) + bit_diffs(sr[1], sr[0], N);
    CHECK(e <= 1e-6, "%s: weights differ by %.3g at %zu", name, e, at);
    printf("%-28s worst relative error %.2e, %zu floats not bit-identical\n", name, e, diffs);
    for (int i = 0; i < 2; i++) {
        free(wr[i]);
        free(sr[i]);
    }
    free(w);
    free(g);
}

static void check_step_kernels(void)
{
    check_optimizer(USI_OPT_ADAMW, 0, "adamw");
    check_optimizer(USI_OPT_SGD, 0, "sgd");
    check_optimizer(USI_OPT_SGD, 1, "sgd nesterov");
    check_optimizer(USI_OPT_LAMB, 0, "lamb");

    enum { N = 300001 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    for (size_t k = 0; k < N; k++) {
        x[k] = (float)sin((double)k) * 3;
        y[k] = (float)cos((double)k);
    }
    usi_dbuf *xc = block(usi_device_cpu(), x, N), *yc = block(usi_device_cpu(), y, N);
    usi_dbuf *xg = block(gpu, x, N), *yg = block(gpu, y, N);
    CHECK_OK(usi_dbuf_ema(xc, 1, yc, 0, N - 1, 0.999));
    CHECK_OK(usi_dbuf_ema(xg, 1, yg, 0, N - 1, 0.999));
    CHECK_OK(usi_dbuf_scale(xc, 0, N, 0.73));
    CHECK_OK(usi_dbuf_scale(xg, 0, N, 0.73));
    float *ac = read_back(xc, N), *ag = read_back(xg, N);
    size_t diffs = bit_diffs(ag, ac, N), at;
    double e = rel_err(ag, ac, N, &at);
    CHECK(e <= 1e-6, "ema + scale differ by %.3g", e);
    printf("%-28s worst relative error %.2e, %zu floats not bit-identical\n", "ema, scale", e, diffs);
    double sc = 0, sg = 0;
    CHECK_OK(usi_dbuf_sum_squares(xc, 3, N - 3, &sc));
    CHECK_OK(usi_dbuf_sum_squares(xg, 3, N - 3, &sg));
    CHECK(fabs(sc - sg) <= 1e-9 * sc, "sum of squares %.17g, cpu %.17g", sg, sc);
    printf("%-28s cuda %.17g cpu %.17g\n", "sum of squares", sg, sc);
    free(ac);
    free(ag);

    /* the teacher's input conversion: 3 channels, two resizes and a copy */
    const float a[3] = {2.0f, 0.5f, -1.0f}, b[3] = {0.1f, -0.2f, 0.3f};
    int sizes[2][2] = {{5, 7}, {20, 17}};
    const char *interp_names[3] = {"nearest", "bilinear", "bicubic"};
    for (int s = 0; s < 3; s++)
        for (int32_t interp = USI_INTERP_NEAREST; interp <= USI_INTERP_BICUBIC; interp++) {
            int oh = s < 2 ? sizes[s][0] : 13, ow = s < 2 ? sizes[s][1] : 11; /* s 2: same size */
            size_t n_out = (size_t)2 * 3 * oh * ow;
            usi_dbuf *oc = block(usi_device_cpu(), NULL, n_out), *og = block(gpu, NULL, n_out);
            /* x holds 2 images of 3 x 13 x 11 */
            CHECK_OK(usi_device_cpu()->be->image_convert(usi_device_cpu(), usi_dbuf_addr(oc, 0),
                                                         usi_dbuf_addr(xc, 0), 2, 3, 13, 11, oh, ow, interp, a, b));
            CHECK_OK(gpu->be->image_convert(gpu, usi_dbuf_addr(og, 0), usi_dbuf_addr(xg, 0), 2, 3, 13, 11, oh, ow,
                                            interp, a, b));
            float *rc = read_back(oc, n_out), *rg = read_back(og, n_out);
            e = rel_err(rg, rc, n_out, &at);
            CHECK(e <= 1e-6, "image convert (%s) to %dx%d differs by %.3g", interp_names[interp], oh, ow, e);
            printf("image convert %-8s %2dx%-2d%-9s worst relative error %.2e, %zu floats not bit-identical\n",
                   interp_names[interp], oh, ow, s == 2 ? " (copy)" : "", e, bit_diffs(rg, rc, n_out));
            free(rc);
            free(rg);
            usi_dbuf_free(oc);
            usi_dbuf_free(og);
        }
    usi_dbuf_free(xc);
    usi_dbuf_free(yc);
    usi_dbuf_free(xg);
    usi_dbuf_free(yg);
    free(x);
    free(y);
}

int main(int argc, char **argv)
{
    const char *other = getenv("USI_TEST_DEVICE");
    gpu = other && *other ? test_device() : cuda_or_skip("test_cuda_ops");
    api = usi_graph_api_get();
    const char *only = argc > 1 ? argv[1] : NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!only || strstr(cases[i].name, only)) run_case(&cases[i]);
    if (!only || strstr("step kernels", only)) check_step_kernels();
    printf("%d op cases compared, %d above the 1e-5 goal\n", cases_run, above_target);

    /* precision "mixed": the ops it changes, and a net */
    usi_error *e = usi_device_set_mixed(gpu, 1);
    if (e) {
        printf("no mixed precision on %s: %s\n", usi_device_name(gpu), usi_error_message(e));
        usi_error_free(e);
        return check_status("test_cuda_ops");
    }
    tol = BF16_TOL;
    target = BF16_TARGET;
    normwise = 1;
    cases_run = above_target = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        build_fn b = cases[i].build;
        int uses_products = b == b_conv || b == b_conv_bn_eval || b == b_linear || b == b_matmul || b == b_attention ||
                            b == b_net || b == b_stage;
        if (uses_products && (!only || strstr(cases[i].name, only))) run_case(&cases[i]);
    }
    CHECK_OK(usi_device_set_mixed(gpu, 0));
    printf("%d op cases compared in bf16 (norm-wise), %d above the 1e-2 goal\n", cases_run, above_target);
    return check_status("test_cuda_ops");
}
