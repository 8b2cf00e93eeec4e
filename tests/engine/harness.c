#include "device.h"
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/host.h"
#include "util/error.h"
#include "util/rng.h"

#define FD_SAMPLES 24
#define FWD_TOL 2e-4
#define FD_TOL 1.5e-2

int64_t numel_of(int32_t ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

uint64_t test_seed(void) { return 12345; }

static void shape_str(char *buf, size_t cap, int32_t ndim, const int64_t *s)
{
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)s[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

typedef struct run_state {
    usi_graph *g;
    usi_tensor *x[MAX_LEAVES];
    usi_tensor *out;
    int32_t ondim;
    int64_t oshape[USI_MAX_DIMS];
    int64_t on;
    float *seed;
} run_state;

static void fill_leaf(const leaf_spec *l, usi_tensor *t, usi_rng *r)
{
    int64_t n = numel_of(l->ndim, l->shape);
    double lo = l->lo, hi = l->hi;
    if (lo == 0 && hi == 0) lo = -1, hi = 1;
    void *d = test_host((size_t)n * 8);
    for (int64_t i = 0; i < n; i++) {
        double u = lo + (hi - lo) * usi_rng_uniform(r);
        if (l->dtype == USI_DTYPE_I32) ((int32_t *)d)[i] = (int32_t)floor(u);
        else if (l->dtype == USI_DTYPE_I64) ((int64_t *)d)[i] = 0;
        else ((float *)d)[i] = (float)u;
    }
    test_write(t, d);
}

static int setup(const op_case *c, run_state *s)
{
    const usi_graph_api *api = usi_graph_api_get();
    memset(s, 0, sizeof *s);
    s->g = usi_graph_new(test_device(), c->training, test_seed());
    usi_rng r;
    usi_rng_seed(&r, test_seed(), 1, 0, 0);
    for (int32_t i = 0; i < c->n_leaves; i++) {
        const leaf_spec *l = &c->leaf[i];
        if (l->absent) continue;
        char name[16];
        snprintf(name, sizeof name, "x%d", i);
        s->x[i] = usi_graph_input(s->g, name, l->dtype, l->ndim, l->shape);
        if (!s->x[i]) break;
        if (!l->no_grad && l->dtype == USI_DTYPE_F32) usi_graph_set_requires_grad(s->x[i], 1);
        fill_leaf(l, s->x[i], &r);
    }
    s->out = c->build(api, s->g, s->x, c);
    usi_error *e = usi_graph_error(s->g);
    if (!e && !s->out) e = usi_error_new(USI_ERR_INVALID, "no output");
    if (!e) {
        s->ondim = api->ndim(s->out);
        for (int32_t i = 0; i < s->ondim; i++) s->oshape[i] = api->dim(s->out, i);
        s->on = usi_graph_numel(s->out);
        s->seed = malloc((size_t)s->on * sizeof(float));
        for (int64_t i = 0; i < s->on; i++) s->seed[i] = (float)(2 * usi_rng_uniform(&r) - 1);
        usi_graph_mark_output(s->out);
        if (c->training) {
            e = usi_graph_set_loss(s->g, s->out);
            usi_graph_set_loss_seed(s->g, s->seed);
        }
    }
    if (!e) e = usi_graph_compile(s->g);
    if (!e) e = usi_graph_forward(s->g);
    if (e) {
        printf("FAIL %s: setup: %s\n", c->name, usi_error_message(e));
        usi_error_free(e);
        return 1;
    }
    return 0;
}

static void teardown(run_state *s)
{
    usi_graph_free(s->g);
    free(s->seed);
}

static int check_forward(const op_case *c, run_state *s)
{
    double *in[MAX_LEAVES] = {0};
    for (int32_t i = 0; i < c->n_leaves; i++) {
        if (!s->x[i]) continue;
        int64_t n = usi_graph_numel(s->x[i]);
        in[i] = malloc((size_t)n * sizeof(double));
        void *d = test_value(s->x[i]);
        for (int64_t k = 0; k < n; k++)
            in[i][k] = c->leaf[i].dtype == USI_DTYPE_I32 ? ((int32_t *)d)[k]
                     : c->leaf[i].dtype == USI_DTYPE_I64 ? (double)((int64_t *)d)[k]
                     : ((float *)d)[k];
    }
    double *want = calloc((size_t)s->on, sizeof(double));
    c->ref(c, in, s->ondim, s->oshape, want);
    const float *got = test_value(s->out);
    int64_t worst = 0;
    double worst_err = 0;
    for (int64_t k = 0; k < s->on; k++) {
        double err = fabs(got[k] - want[k]) / (1 + fabs(want[k]));
        if (!(err <= worst_err)) worst_err = err, worst = k;
    }
    int fail = !(worst_err <= FWD_TOL);
    if (fail) {
        char sh[128];
        shape_str(sh, sizeof sh, s->ondim, s->oshape);
        printf("FAIL %s forward: output %s, worst element %lld: got %.7g want %.7g\n",
               c->name, sh, (long long)worst, got[worst], want[worst]);
    }
    for (int32_t i = 0; i < c->n_leaves; i++) free(in[i]);
    free(want);
    return fail;
}

static double objective(run_state *s, int *err)
{
    usi_error *e = usi_graph_forward(s->g);
    if (e) {
        printf("  forward failed: %s\n", usi_error_message(e));
        usi_error_free(e);
        *err = 1;
        return 0;
    }
    const float *o = test_value(s->out);
    double f = 0;
    for (int64_t k = 0; k < s->on; k++) f += (double)o[k] * s->seed[k];
    return f;
}

static int check_leaf_grad(const op_case *c, run_state *s, int32_t i)
{
    usi_tensor *x = s->x[i];
    int64_t n = usi_graph_numel(x);
    /* Own copies: objective() below reuses the ring of test_value. */
    float *v = malloc((size_t)n * sizeof(float)), *ga = malloc((size_t)n * sizeof(float));
    const float *vr = test_value(x), *gr = test_grad(x);
    if (!v || !ga || !vr || !gr) {
        printf("FAIL %s backward: input %d has no value or gradient\n", c->name, i);
        free(v);
        free(ga);
        return 1;
    }
    memcpy(v, vr, (size_t)n * sizeof(float));
    memcpy(ga, gr, (size_t)n * sizeof(float));
    usi_rng r;
    usi_rng_seed(&r, test_seed(), 2, (uint64_t)i, 0);
    int64_t samples = n < FD_SAMPLES ? n : FD_SAMPLES;
    double worst_err = 0, wnum = 0, wana = 0;
    int64_t worst = 0;
    int err = 0;
    for (int64_t j = 0; j < samples; j++) {
        int64_t k = n <= FD_SAMPLES ? j : (int64_t)(usi_rng_uniform(&r) * (double)n);
        float keep = v[k];
        double h = 1e-3 * (fabs(keep) > 1 ? fabs(keep) : 1);
        v[k] = (float)(keep + h);
        test_write(x, v);
        double hp = (double)v[k] - keep;
        double fp = objective(s, &err);
        v[k] = (float)(keep - h);
        test_write(x, v);
        double hm = keep - (double)v[k];
        double fm = objective(s, &err);
        v[k] = keep;
        test_write(x, v);
        double num = (fp - fm) / (hp + hm);
        double e = fabs(num - ga[k]) / fmax(1.0, fmax(fabs(num), fabs(ga[k])));
        if (!(e <= worst_err)) worst_err = e, worst = k, wnum = num, wana = ga[k];
    }
    int fail = err || !(worst_err <= FD_TOL);
    if (fail) {
        char sh[128];
        shape_str(sh, sizeof sh, c->leaf[i].ndim, c->leaf[i].shape);
        printf("FAIL %s backward: input %d %s, worst element %lld: analytic %.7g numeric %.7g\n",
               c->name, i, sh, (long long)worst, wana, wnum);
    }
    free(v);
    free(ga);
    return fail;
}

int run_case(const op_case *c)
{
    run_state s;
    if (setup(c, &s)) {
        teardown(&s);
        return 1;
    }
    int fails = check_forward(c, &s);
    if (c->training && !c->skip_fd) {
        usi_error *e = usi_graph_backward(s.g);
        if (e) {
            printf("FAIL %s backward: %s\n", c->name, usi_error_message(e));
            usi_error_free(e);
            fails++;
        } else {
            for (int32_t i = 0; i < c->n_leaves; i++)
                if (s.x[i] && !c->leaf[i].no_grad && c->leaf[i].dtype == USI_DTYPE_F32)
                    fails += check_leaf_grad(c, &s, i);
        }
    }
    if (!fails) printf("ok   %s\n", c->name);
    teardown(&s);
    return fails;
}
