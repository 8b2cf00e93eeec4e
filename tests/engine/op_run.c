/* One case on one device: forward against the float64 reference (or the
 * op's defining properties), backward against central finite differences of
 * f = sum(out * R) for a fixed random R, and forward output and input
 * gradients against what the cpu device computed for the same inputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "device.h"
#include "graph/build_common.h"
#include "op_case.h"
#include "plugin/host.h"
#include "util/error.h"
#include "util/rng.h"

#define FD_SAMPLES 24
/* Every device draws the same leaves and seed gradient from this. */
#define CASE_SEED 12345

int64_t numel_of(int32_t ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

static void shape_str(char *buf, size_t cap, int32_t ndim, const int64_t *s)
{
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)s[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

typedef struct run_state {
    const op_case *c;
    const char *dev;       /* the device's name, for messages */
    usi_graph *g;
    usi_tensor *x[MAX_LEAVES];
    usi_tensor *out;
    int32_t ondim;
    int64_t oshape[USI_MAX_DIMS];
    int64_t on;
    float *seed;           /* R */
    float *y;              /* the first forward's output */
    float *grad[MAX_LEAVES];
    int wrap;              /* run_case_stored: leaves and output behind a scale by 1 */
} run_state;

static int has_grad(const op_case *c, const run_state *s, int32_t i)
{
    return c->training && s->x[i] && !c->leaf[i].no_grad && !c->leaf[i].constant &&
           c->leaf[i].dtype == USI_DTYPE_F32;
}

/* A leaf's values: uniform in [lo, hi), integers rounded down. */
static void *leaf_values(const leaf_spec *l, usi_rng *r)
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
    return d;
}

static int fail_error(const run_state *s, const char *what, usi_error *e)
{
    printf("FAIL [%s] %s: %s: %s\n", s->dev, s->c->name, what, usi_error_message(e));
    usi_error_free(e);
    return CASE_FAIL;
}

/* The recorded ops into *ops_seen; CASE_SKIP (said once) when the device
 * refuses one. Custom ops are never refused: the executor runs them on host
 * copies where the device has no kernel of theirs. */
static int check_supported(const run_state *s, usi_device *dev, uint64_t *ops_seen)
{
    int refused = -1;
    for (int32_t i = 0; i < usi_graph_num_nodes(s->g); i++) {
        int32_t op = usi_graph_node_op(s->g, i);
        if (op < 0 || op >= USI_OP_COUNT) continue;
        *ops_seen |= 1ull << op;
        if (op == USI_OP_INPUT || op == USI_OP_PARAM || op == USI_OP_BUFFER ||
            op == USI_OP_CONSTANT || op == USI_OP_CUSTOM)
            continue;
        if (refused < 0 && !dev->be->supports(op)) refused = op;
    }
    if (refused < 0) return CASE_PASS;
    printf("skip [%s] %s: the device has no kernel for %s\n", s->dev, s->c->name,
           usi_op_name(refused));
    return CASE_SKIP;
}

static int setup(run_state *s, usi_device *dev, uint64_t *ops_seen)
{
    const op_case *c = s->c;
    const usi_graph_api *api = usi_graph_api_get();
    s->g = usi_graph_new(dev, c->training, CASE_SEED);
    usi_rng r;
    usi_rng_seed(&r, CASE_SEED, 1, 0, 0);
    for (int32_t i = 0; i < c->n_leaves; i++) {
        const leaf_spec *l = &c->leaf[i];
        if (l->absent) continue;
        char name[16];
        snprintf(name, sizeof name, "x%d", i);
        void *values = leaf_values(l, &r);
        if (l->constant) {
            s->x[i] = api->constant(s->g, name, l->dtype, l->ndim, l->shape, values);
            if (!s->x[i]) break;
            continue;
        }
        s->x[i] = usi_graph_input(s->g, name, l->dtype, l->ndim, l->shape);
        if (!s->x[i]) break;
        if (has_grad(c, s, i)) usi_graph_set_requires_grad(s->x[i], 1);
        test_write(s->x[i], values);
    }
    usi_tensor *in[MAX_LEAVES] = {0};
    for (int32_t i = 0; i < c->n_leaves; i++) {
        in[i] = s->x[i];
        /* not batch norm's running statistics, written in place */
        if (s->wrap && in[i] && !c->leaf[i].constant && !c->leaf[i].param && c->leaf[i].dtype == USI_DTYPE_F32 &&
            (i == 0 || has_grad(c, s, i))) {
            /* a = x rounded; a/2 + a/2 = a, and a's gradient is the sum of
             * two nodes' (the second adds into the first's) */
            usi_tensor *a = api->scale(s->g, in[i], 1.0);
            in[i] = api->binary(s->g, USI_BIN_ADD, api->scale(s->g, a, 0.5), api->scale(s->g, a, 0.5));
        }
    }
    s->out = c->build(api, s->g, in, c);
    if (s->wrap && s->out) s->out = api->scale(s->g, s->out, 1.0);
    usi_error *e = usi_graph_error(s->g);
    if (!e && !s->out) e = usi_error_new(USI_ERR_INVALID, "no output");
    if (e) return fail_error(s, "record", e);
    int st = check_supported(s, dev, ops_seen);
    if (st != CASE_PASS) return st;
    s->ondim = api->ndim(s->out);
    for (int32_t i = 0; i < s->ondim; i++) s->oshape[i] = api->dim(s->out, i);
    s->on = usi_graph_numel(s->out);
    s->seed = malloc((size_t)s->on * sizeof(float));
    s->y = malloc((size_t)s->on * sizeof(float));
    for (int64_t i = 0; i < s->on; i++) s->seed[i] = (float)(2 * usi_rng_uniform(&r) - 1);
    usi_graph_mark_output(s->out);
    if (c->training) {
        e = usi_graph_set_loss(s->g, s->out);
        usi_graph_set_loss_seed(s->g, s->seed);
    }
    if (!e) e = usi_graph_compile(s->g);
    if (!e) e = usi_graph_forward(s->g);
    if (!e) e = usi_graph_read(s->out, s->y);
    return e ? fail_error(s, "setup", e) : CASE_PASS;
}

static void teardown(run_state *s)
{
    usi_graph_free(s->g);
    free(s->seed);
    free(s->y);
    for (int32_t i = 0; i < MAX_LEAVES; i++) free(s->grad[i]);
}

/* The leaves' values in double (NULL for absent ones); free with free_inputs. */
static void read_inputs(const run_state *s, double **in)
{
    for (int32_t i = 0; i < s->c->n_leaves; i++) {
        in[i] = NULL;
        if (!s->x[i]) continue;
        int64_t n = usi_graph_numel(s->x[i]);
        int32_t dt = s->c->leaf[i].dtype;
        in[i] = malloc((size_t)(n ? n : 1) * sizeof(double));
        void *d = test_value(s->x[i]);
        for (int64_t k = 0; k < n; k++)
            in[i][k] = dt == USI_DTYPE_I32 ? ((int32_t *)d)[k]
                     : dt == USI_DTYPE_I64 ? (double)((int64_t *)d)[k] : ((float *)d)[k];
    }
}

static void free_inputs(const op_case *c, double **in)
{
    for (int32_t i = 0; i < c->n_leaves; i++) free(in[i]);
}

static int check_reference(const run_state *s, double *const *in, double tol)
{
    double *want = calloc((size_t)s->on, sizeof(double));
    s->c->ref(s->c, in, s->ondim, s->oshape, want);
    int64_t worst = 0;
    double worst_err = 0;
    for (int64_t k = 0; k < s->on; k++) {
        double err = fabs(s->y[k] - want[k]) / (1 + fabs(want[k]));
        if (!(err <= worst_err)) worst_err = err, worst = k;
    }
    int fail = !(worst_err <= tol);
    if (fail) {
        char sh[128];
        shape_str(sh, sizeof sh, s->ondim, s->oshape);
        printf("FAIL [%s] %s: forward vs reference: output %s, worst element %lld: got %.7g "
               "want %.7g\n", s->dev, s->c->name, sh, (long long)worst, s->y[worst], want[worst]);
    }
    free(want);
    return fail;
}

/* got vs the cpu device's want, relative to max(1, |want|). */
static int compare(const run_state *s, const char *what, const float *got, const float *want,
                   int64_t n, double tol)
{
    int64_t worst = 0;
    double worst_err = 0;
    for (int64_t k = 0; k < n; k++) {
        double err = fabs((double)got[k] - want[k]) / fmax(1.0, fabs(want[k]));
        if (!(err <= worst_err)) worst_err = err, worst = k;
    }
    if (worst_err <= tol) return 0;
    printf("FAIL [%s] %s: %s vs cpu: worst element %lld of %lld: got %.9g, cpu %.9g (error %.3g, "
           "tolerance %.3g)\n", s->dev, s->c->name, what, (long long)worst, (long long)n,
           got[worst], want[worst], worst_err, tol);
    return 1;
}

static int check_against_cpu(const run_state *s, const case_result *cpu, double tol)
{
    int fails = 0;
    if (cpu->n_out != s->on) {
        printf("FAIL [%s] %s: %lld outputs, cpu has %lld\n", s->dev, s->c->name,
               (long long)s->on, (long long)cpu->n_out);
        return 1;
    }
    fails += compare(s, "forward", s->y, cpu->out, s->on, tol);
    for (int32_t i = 0; i < s->c->n_leaves; i++) {
        if (!s->grad[i] != !cpu->grad[i]) {
            printf("FAIL [%s] %s: input %d has a gradient on one device only\n", s->dev,
                   s->c->name, i);
            fails++;
        } else if (s->grad[i]) {
            char what[32];
            snprintf(what, sizeof what, "gradient of input %d", i);
            fails += compare(s, what, s->grad[i], cpu->grad[i], usi_graph_numel(s->x[i]), tol);
        }
    }
    return fails;
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

/* Central differences at up to FD_SAMPLES elements of input i. */
static int check_finite_differences(run_state *s, int32_t i, double tol)
{
    usi_tensor *x = s->x[i];
    int64_t n = usi_graph_numel(x);
    const float *ga = s->grad[i];
    /* An own copy: objective() reuses the ring of test_value. */
    float *v = malloc((size_t)n * sizeof(float));
    memcpy(v, test_value(x), (size_t)n * sizeof(float));
    usi_rng r;
    usi_rng_seed(&r, CASE_SEED, 2, (uint64_t)i, 0);
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
    int fail = err || !(worst_err <= tol);
    if (fail) {
        char sh[128];
        shape_str(sh, sizeof sh, s->c->leaf[i].ndim, s->c->leaf[i].shape);
        printf("FAIL [%s] %s: backward vs finite differences: input %d %s, worst element %lld: "
               "analytic %.7g numeric %.7g\n", s->dev, s->c->name, i, sh, (long long)worst, wana,
               wnum);
    }
    free(v);
    return fail;
}

/* Backward once, keeping a copy of every input gradient. */
static int run_backward(run_state *s)
{
    usi_error *e = usi_graph_backward(s->g);
    if (e) {
        fail_error(s, "backward", e);
        return 1;
    }
    for (int32_t i = 0; i < s->c->n_leaves; i++) {
        if (!has_grad(s->c, s, i)) continue;
        int64_t n = usi_graph_numel(s->x[i]);
        s->grad[i] = malloc((size_t)n * sizeof(float));
        e = usi_graph_read_grad(s->x[i], s->grad[i]);
        if (e) {
            fail_error(s, "read gradient", e);
            return 1;
        }
    }
    return 0;
}

int run_case_on(const op_case *c, usi_device *dev, const device_tol *tol,
                const case_result *cpu, case_result *mine, uint64_t *ops_seen)
{
    run_state s;
    memset(&s, 0, sizeof s);
    s.c = c;
    s.dev = usi_device_name(dev);
    int st = setup(&s, dev, ops_seen);
    if (st != CASE_PASS) {
        teardown(&s);
        return st;
    }
    double *in[MAX_LEAVES];
    read_inputs(&s, in);
    int fails = c->ref ? check_reference(&s, in, tol->ref) : 0;
    /* cpu never fuses, cpu-guarded fuses every pair in fp32, a GPU where
     * its kernels do (the stored passes: "mixed") */
    int32_t fused = usi_graph_fused_nodes(s.g), most = c->training ? c->fused : 0;
    int32_t want = dev->be == usi_cpu_guarded_backend() ? most : dev->be->fuses_act ? fused : 0;
    if (fused != want || fused > most) {
        printf("FAIL [%s] %s: %d batch norms apply their activation, want %d\n", s.dev, c->name, fused, want);
        fails++;
    }
    int backward_failed = c->training ? run_backward(&s) : 0;
    fails += backward_failed;
    if (c->prop && !backward_failed) {
        char who[160];
        snprintf(who, sizeof who, "[%s] %s", s.dev, c->name);
        fails += c->prop(c, who, in[0], s.y, s.on, s.seed, s.grad[0]);
    }
    free_inputs(c, in);
    if (cpu && !backward_failed) fails += check_against_cpu(&s, cpu, tol->cmp);
    if (!c->skip_fd && !backward_failed)
        for (int32_t i = 0; i < c->n_leaves; i++)
            if (s.grad[i]) fails += check_finite_differences(&s, i, tol->fd);
    if (mine) {
        mine->n_out = s.on;
        mine->out = s.y;
        s.y = NULL;
        for (int32_t i = 0; i < MAX_LEAVES; i++) {
            mine->n_grad[i] = s.grad[i] ? usi_graph_numel(s.x[i]) : 0;
            mine->grad[i] = s.grad[i];
            s.grad[i] = NULL;
        }
    }
    teardown(&s);
    return fails ? CASE_FAIL : CASE_PASS;
}

void case_result_free(case_result *r)
{
    free(r->out);
    for (int32_t i = 0; i < MAX_LEAVES; i++) free(r->grad[i]);
    memset(r, 0, sizeof *r);
}

int run_case_stored(const op_case *c, usi_device *dev, double tol, int *cl_cases)
{
    run_state want, got;
    memset(&want, 0, sizeof want);
    memset(&got, 0, sizeof got);
    want.c = got.c = c;
    want.wrap = got.wrap = 1;
    char name[64];
    snprintf(name, sizeof name, "%s %s", usi_device_name(dev), dev->mixed ? "bf16" : "nhwc");
    want.dev = "cpu";
    got.dev = name;
    uint64_t seen = 0;
    int st = setup(&want, usi_device_cpu(), &seen);
    if (st == CASE_PASS) st = setup(&got, dev, &seen);
    int fails = 0;
    if (st == CASE_PASS) {
        int32_t bf = usi_graph_bf16_nodes(got.g), cl = usi_graph_cl_nodes(got.g);
        if ((dev->mixed && bf < 1) || (!dev->mixed && bf) || usi_graph_bf16_nodes(want.g) ||
            usi_graph_cl_nodes(want.g)) {
            printf("FAIL [%s] %s: %d nodes kept as bf16 and %d channels-last, cpu %d and %d\n", got.dev, c->name,
                   bf, cl, usi_graph_bf16_nodes(want.g), usi_graph_cl_nodes(want.g));
            fails++;
        }
        if (cl_cases) *cl_cases += cl > 0;
        /* a GPU fuses the pair under "mixed"; cpu-guarded's CPU kernels
         * need copies of bf16 or channels-last values, so never here */
        int32_t fused = usi_graph_fused_nodes(got.g);
        int32_t pairs = c->training && dev->be->fuses_act && dev->be != usi_cpu_guarded_backend() ? c->fused : 0;
        if (fused != pairs) {
            printf("FAIL [%s] %s: %d batch norms apply their activation, want %d\n", got.dev, c->name, fused, pairs);
            fails++;
        }
        if (c->training && (run_backward(&want) || run_backward(&got))) fails++;
        else {
            case_result cpu = {.n_out = want.on, .out = want.y};
            for (int32_t i = 0; i < MAX_LEAVES; i++) cpu.grad[i] = want.grad[i];
            fails += check_against_cpu(&got, &cpu, tol);
        }
    }
    teardown(&want);
    teardown(&got);
    if (st != CASE_PASS) return st;
    return fails ? CASE_FAIL : CASE_PASS;
}
