/* Training and inference speed of the engine on a GPU (or any device), on
 * synthetic data: a full training step (forward, the loss read back, backward,
 * SGD with momentum over the flat parameter block, zeroed gradients) and an
 * eval forward, in images/s, in fp32 and (where the device has it) precision
 * "mixed". --check instead runs a small ResNet step on the CPU and on the
 * device from the same weights and batch and prints how far the logits,
 * loss, gradients, running statistics and updated weights are apart, beside
 * the CPU's own noise floor (the same step on inputs perturbed by 1e-6).
 *
 *   bench_gpu [--device cuda] [--model resnet50|resnet18] [--batch 256]
 *             [--size 224] [--steps 200] [--warmup 10] [--mode train|infer|both]
 *             [--precision fp32|mixed|both] [--csv FILE] [--profile STEPS]
 *             [--check|--check-nodes [--check-batch 8] [--check-size 64]]
 *
 * --check-nodes keeps every value and gradient of that step (no memory
 * reuse) and names the nodes where device and CPU part, values in forward
 * order and gradients in backward order: the first one is the suspect.
 *
 * --profile N runs N more steps after the timed ones with each node waited
 * for and prints the time per op kind, forward and backward.
 *
 * Prints one line per measurement (precision: fp32, or bf16 for "mixed"):
 *   RESULT usi <model> <mode> <precision> <batch> <size> <img/s> <ms/step>
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/device.h"
#include "backend/optim_args.h"
#include "graph/graph.h"
#include "models.h"
#include "plugin/host.h"
#include "util/error.h"

typedef struct opts {
    const char *device, *model, *csv;
    int batch, size, steps, warmup, modes, check; /* modes: 1 train, 2 infer */
    int check_batch, check_size;
    int profile; /* steps profiled after the timed ones (0: none) */
    int precisions;                               /* 1 fp32, 2 mixed */
} opts;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The graph: images -> model -> logits (-> cross-entropy in training). */
typedef struct net {
    usi_graph *g;
    usi_tensor *x, *y, *logits, *loss;
    usi_optim_seg *segs;
    int32_t n_segs;
    usi_dbuf *momentum;
} net;

static void net_free(net *n)
{
    usi_dbuf_free(n->momentum);
    free(n->segs);
    usi_graph_free(n->g);
    memset(n, 0, sizeof *n);
}

static usi_error *net_build(net *n, usi_device *d, const char *model, int batch, int size, int training, int keep)
{
    memset(n, 0, sizeof *n);
    n->g = usi_graph_new(d, training, 1);
    if (keep) USI_TRY(usi_graph_keep_all(n->g));
    int64_t xs[4] = {batch, 3, size, size}, nb = batch;
    n->x = usi_graph_input(n->g, "images", USI_DTYPE_F32, 4, xs);
    n->y = usi_graph_input(n->g, "labels", USI_DTYPE_I32, 1, &nb);
    n->logits = model_resnet(n->g, n->x, !strcmp(model, "resnet18") ? 18 : 50, 1000);
    USI_TRY(usi_graph_error(n->g));
    usi_graph_mark_output(n->logits);
    if (training) {
        n->loss = usi_graph_api_get()->loss_ce(n->g, n->logits, n->y, 0.1);
        USI_TRY(usi_graph_set_loss(n->g, n->loss));
    }
    USI_TRY(usi_graph_compile(n->g));
    if (!training) return NULL;
    /* SGD segments: every trainable parameter, decay on weights only */
    int32_t np = usi_graph_num_params(n->g);
    n->segs = calloc((size_t)np + 1, sizeof *n->segs);
    if (!n->segs) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < np; i++) {
        usi_param_info p;
        if (!usi_graph_param_at(n->g, i, &p) || !p.trainable) continue;
        n->segs[n->n_segs++] = (usi_optim_seg){p.offset / sizeof(float), (size_t)p.numel, p.ndim > 1};
    }
    usi_graph_blocks b;
    usi_graph_get_blocks(n->g, &b);
    return usi_dbuf_new(d, b.n_trainable * sizeof(float), &n->momentum);
}

/* Uniform in [-1, 1) from a 64-bit counter hash: reproducible everywhere. */
static float unit(uint64_t i)
{
    uint64_t z = i * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 4503599627370496.0 - 1.0);
}

/* Random images and labels; perturb scales each pixel by (1 + perturb * u)
 * with another uniform u, which gives --check its noise floor. */
static usi_error *net_inputs(net *n, int batch, int size, double perturb)
{
    size_t count = (size_t)batch * 3 * size * size;
    float *x = malloc(count * sizeof(float));
    int32_t *y = malloc((size_t)batch * sizeof(int32_t));
    if (!x || !y) {
        free(x);
        free(y);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < count; i++) x[i] = unit(i) * (float)(1.0 + perturb * unit(i + count));
    for (int i = 0; i < batch; i++) y[i] = (int32_t)((unit(i + 2 * count) + 1.0f) * 499.9f);
    usi_error *e = usi_graph_write(n->x, x);
    if (!e && n->loss) e = usi_graph_write(n->y, y);
    free(x);
    free(y);
    return e;
}

static usi_error *train_step(net *n, int64_t step, float *loss)
{
    USI_TRY(usi_graph_forward(n->g));
    USI_TRY(usi_graph_read(n->loss, loss)); /* the trainer reads it each step */
    USI_TRY(usi_graph_backward(n->g));
    usi_graph_blocks b;
    usi_graph_get_blocks(n->g, &b);
    usi_optim_hp hp = {USI_OPT_SGD, 0.01, 1e-4, 0.9, 0.999, 1e-8, 0.9, 0};
    USI_TRY(usi_dbuf_optim_step(&hp, step, b.params, b.grads, n->momentum, NULL, n->segs, n->n_segs));
    usi_graph_zero_grad(n->g);
    return NULL;
}

static usi_error *measure(const opts *o, usi_device *d, int training, int mixed, double *ips, double *ms)
{
    net n;
    USI_TRY(usi_device_set_mixed(d, mixed));
    double t_build = now();
    usi_error *e = net_build(&n, d, o->model, o->batch, o->size, training, 0);
    if (!e) e = net_inputs(&n, o->batch, o->size, 0);
    double t_ready = now();
    float loss = 0;
    double t0 = 0;
    for (int s = 0; !e && s < o->warmup + o->steps; s++) {
        if (s == o->warmup) {
            e = usi_device_synchronize(d);
            t0 = now();
        }
        if (!e) e = training ? train_step(&n, s + 1, &loss) : usi_graph_forward(n.g);
    }
    if (!e) e = usi_device_synchronize(d);
    double t = now() - t0;
    if (!e && o->profile) {
        e = usi_graph_set_profiling(n.g, 1);
        for (int s = 0; !e && s < o->profile; s++)
            e = training ? train_step(&n, o->warmup + o->steps + s + 1, &loss) : usi_graph_forward(n.g);
        if (!e) {
            printf("profile: %s %s %s, batch %d at %d, each node waited for (slower than a plain step):\n", o->model,
                   training ? "train" : "infer", mixed ? "bf16" : "fp32", o->batch, o->size);
            usi_graph_print_profile(n.g, stdout, o->profile);
        }
    }
    if (!e) {
        *ms = 1e3 * t / o->steps;
        *ips = o->batch * o->steps / t;
        size_t planned, naive;
        usi_graph_memory(n.g, &planned, &naive);
        fprintf(stderr, "%s %s %s: compile %.1f s, arena %.0f MiB", o->model, training ? "train" : "infer",
                mixed ? "bf16" : "fp32", t_ready - t_build, planned / 1048576.0);
        if (training) fprintf(stderr, ", last loss %.4f", loss);
        fprintf(stderr, "\n");
        if (training && !isfinite(loss)) e = usi_error_new(USI_ERR_INTERNAL, "the loss is not finite: %g", loss);
    }
    net_free(&n);
    return e;
}

/* ---- --check: one step on the CPU and on the device ---- */

/* What one step leaves: logits, loss, gradients, float buffers (running
 * statistics) and the weights after SGD, with the parameters' names and
 * places to report per tensor. */
typedef struct snapshot {
    float *logits, loss, *grads, *params, *buffers;
    size_t n_logits, n_grads, n_params, n_buffers;
    int32_t n_tensors;
    char **names;
    size_t *at, *len; /* floats into grads/params, per trainable tensor */
} snapshot;

static void snapshot_free(snapshot *s)
{
    free(s->logits);
    free(s->grads);
    free(s->params);
    free(s->buffers);
    for (int32_t i = 0; i < s->n_tensors; i++) free(s->names[i]);
    free(s->names);
    free(s->at);
    free(s->len);
}

static float *read_block(usi_dbuf *b, size_t n, usi_error **e)
{
    float *h = malloc((n ? n : 1) * sizeof(float));
    if (!*e && n) *e = usi_dbuf_read(b, 0, h, n * sizeof(float));
    return h;
}

static usi_error *one_step(usi_device *d, const opts *o, double perturb, snapshot *s)
{
    net n;
    memset(s, 0, sizeof *s);
    usi_error *e = net_build(&n, d, o->model, o->check_batch, o->check_size, 1, 0);
    if (!e) e = net_inputs(&n, o->check_batch, o->check_size, perturb);
    if (!e) e = usi_graph_forward(n.g);
    if (!e) e = usi_graph_read(n.loss, &s->loss);
    if (!e) {
        s->n_logits = (size_t)usi_graph_numel(n.logits);
        s->logits = malloc(s->n_logits * sizeof(float));
        e = usi_graph_read(n.logits, s->logits);
    }
    if (!e) e = usi_graph_backward(n.g);
    usi_graph_blocks b;
    usi_graph_get_blocks(n.g, &b);
    s->n_grads = b.n_trainable;
    s->grads = read_block(b.grads, b.n_trainable, &e);
    s->n_buffers = b.n_f32_buffers;
    s->buffers = read_block(b.buffers, b.n_f32_buffers, &e);
    usi_optim_hp hp = {USI_OPT_SGD, 0.1, 1e-4, 0.9, 0.999, 1e-8, 0.9, 0};
    if (!e) e = usi_dbuf_optim_step(&hp, 1, b.params, b.grads, n.momentum, NULL, n.segs, n.n_segs);
    s->n_params = b.n_trainable;
    s->params = read_block(b.params, b.n_trainable, &e);
    int32_t np = n.g ? usi_graph_num_params(n.g) : 0;
    s->names = calloc((size_t)np + 1, sizeof *s->names);
    s->at = calloc((size_t)np + 1, sizeof *s->at);
    s->len = calloc((size_t)np + 1, sizeof *s->len);
    for (int32_t i = 0; !e && i < np; i++) {
        usi_param_info p;
        if (!usi_graph_param_at(n.g, i, &p) || !p.trainable) continue;
        s->names[s->n_tensors] = strdup(p.name);
        s->at[s->n_tensors] = p.offset / sizeof(float);
        s->len[s->n_tensors] = (size_t)p.numel;
        s->n_tensors++;
    }
    net_free(&n);
    return e;
}

/* The worst |a - b| over the block, relative to the block's largest |b|. */
/* In bf16 a value near zero may change sign, and a ReLU's gradient there
 * with it: one element's difference says nothing of the rest, so mixed
 * precision is compared norm-wise (||a - b|| / ||b||). */
static int normwise;

static double rel(const float *a, const float *b, size_t n)
{
    if (normwise) {
        double d = 0, w = 0;
        for (size_t i = 0; i < n; i++) {
            d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
            w += (double)b[i] * b[i];
        }
        return sqrt(d) / fmax(1e-12, sqrt(w));
    }
    double scale = 1e-6, worst = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / scale;
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

typedef struct errs {
    double logits, loss, grads, buffers, params;
} errs;

static errs compare(const snapshot *a, const snapshot *c)
{
    errs r;
    r.logits = rel(a->logits, c->logits, c->n_logits);
    r.grads = rel(a->grads, c->grads, c->n_grads);
    r.buffers = rel(a->buffers, c->buffers, c->n_buffers);
    r.params = rel(a->params, c->params, c->n_params);
    r.loss = fabs((double)a->loss - c->loss) / fmax(1e-6, fabs(c->loss));
    return r;
}

/* The gradients of the three tensors that differ most, each relative to
 * its own largest value, beside the same figure for the noise floor. */
static void worst_tensors(const snapshot *g, const snapshot *c, const snapshot *p)
{
    int32_t top[3] = {-1, -1, -1};
    double val[3] = {-1, -1, -1};
    for (int32_t t = 0; t < c->n_tensors; t++) {
        double e = rel(g->grads + c->at[t], c->grads + c->at[t], c->len[t]);
        for (int k = 0; k < 3; k++)
            if (e > val[k]) {
                for (int m = 2; m > k; m--) {
                    val[m] = val[m - 1];
                    top[m] = top[m - 1];
                }
                val[k] = e;
                top[k] = t;
                break;
            }
    }
    for (int k = 0; k < 3 && top[k] >= 0; k++) {
        int32_t t = top[k];
        printf("    grad %-28s %.2e (noise floor %.2e)\n", c->names[t], val[k],
               rel(p->grads + c->at[t], c->grads + c->at[t], c->len[t]));
    }
}

/* What bf16 storage alone makes of a step: cpu-guarded under "mixed" (fp32
 * kernels on activations kept as bf16), a device of its own. */
static usi_device *storage_emulation(void)
{
    static usi_device emu;
    emu = (usi_device){.name = "cpu-guarded", .be = usi_cpu_guarded_backend(), .mixed = 1};
    return &emu;
}

/* The device against the CPU, beside the CPU against itself on inputs
 * perturbed by 1e-6 relative: a network's own sensitivity (batch norm over
 * few values, a random-init loss) sets how close two correct fp32
 * implementations can be. fp32 must stay within max(goal, 20 x that floor)
 * per figure. Mixed is compared norm-wise, beside what bf16 storage alone
 * does to the same step (cpu-guarded under "mixed": fp32 kernels on
 * activations kept as bf16): the device must stay within twice that (its
 * convolutions and products also round their operands) plus the fp32
 * allowance. */
static int check(const opts *o, usi_device *d, int mixed)
{
    snapshot c, g, p, b;
    memset(&c, 0, sizeof c);
    memset(&p, 0, sizeof p);
    memset(&g, 0, sizeof g);
    memset(&b, 0, sizeof b);
    usi_error *e = usi_device_set_mixed(d, mixed);
    if (!e) e = one_step(usi_device_cpu(), o, 0, &c);
    if (!e) e = one_step(usi_device_cpu(), o, 1e-6, &p);
    if (!e) e = one_step(d, o, 0, &g);
    usi_error_free(usi_device_set_mixed(d, 0));
    if (!e && mixed) e = one_step(storage_emulation(), o, 0, &b);
    if (e) {
        fprintf(stderr, "check: %s\n", usi_error_message(e));
        usi_error_free(e);
        return 1;
    }
    normwise = mixed;
    errs r = compare(&g, &c), f = compare(&p, &c), s = mixed ? compare(&b, &c) : (errs){0};
    printf("check %s batch %d at %d: %s %s vs cpu fp32, %s:\n", o->model, o->check_batch, o->check_size,
           o->device, mixed ? "bf16" : "fp32",
           mixed ? "norm-wise per block" : "relative to each block's largest value");
    printf("  %-12s logits %.2e  loss %.2e (%.6f vs %.6f)  gradients %.2e  running stats %.2e  weights after SGD "
           "%.2e\n",
           o->device, r.logits, r.loss, g.loss, c.loss, r.grads, r.buffers, r.params);
    if (mixed)
        printf("  %-12s logits %.2e  loss %.2e (%.6f)            gradients %.2e  running stats %.2e  weights "
               "after SGD %.2e\n",
               "bf16 storage", s.logits, s.loss, b.loss, s.grads, s.buffers, s.params);
    printf("  %-12s logits %.2e  loss %.2e                          gradients %.2e  running stats %.2e  weights "
           "after SGD %.2e\n",
           "noise floor", f.logits, f.loss, f.grads, f.buffers, f.params);
    worst_tensors(&g, &c, &p);
    double m = 20;
#define OK(field, goal) (r.field <= 2 * s.field + fmax((goal), m * f.field))
    int bad = !(OK(logits, 1e-4) && OK(loss, 1e-5) && OK(grads, 1e-4) && OK(buffers, 1e-5) && OK(params, 1e-5));
#undef OK
    if (mixed && !strcmp(usi_device_name(d), "cpu-guarded")) {
        /* the device is the emulation there: the same numbers exactly */
        errs same = compare(&g, &b);
        int differ = same.logits || same.loss || same.grads || same.buffers || same.params;
        if (differ) printf("  cpu-guarded differs from its own emulation (gradients %.2e)\n", same.grads);
        bad |= differ;
    }
    normwise = 0;
    printf("CHECK %s %s\n", mixed ? "bf16" : "fp32", bad ? "FAILED" : "ok");
    snapshot_free(&c);
    snapshot_free(&g);
    snapshot_free(&b);
    snapshot_free(&p);
    return bad;
}

/* ---- --check-nodes: every node's value and gradient, device against CPU ---- */

static usi_error *node_step(usi_device *d, const opts *o, double perturb, net *n)
{
    USI_TRY(net_build(n, d, o->model, o->check_batch, o->check_size, 1, 1));
    USI_TRY(net_inputs(n, o->check_batch, o->check_size, perturb));
    USI_TRY(usi_graph_forward(n->g));
    return usi_graph_backward(n->g);
}

/* A node's value (grad 0) or gradient (grad 1) on the host; NULL when it
 * has none. */
static float *node_read(usi_tensor *t, int grad, int64_t numel, usi_error **e)
{
    if (*e || (grad && !usi_graph_has_grad(t)) || (!grad && usi_graph_dtype(t) != USI_DTYPE_F32)) return NULL;
    float *h = malloc((size_t)(numel ? numel : 1) * sizeof(float));
    if (!h) return NULL;
    *e = grad ? usi_graph_read_grad(t, h) : usi_graph_read(t, h);
    return h;
}

/* Every node in forward order, and the gradients in backward order: the
 * first one past max(1e-4, 20 x the CPU's noise floor) is where the device
 * and the CPU part. Mixed: norm-wise, past twice what bf16 storage alone
 * makes of that node (cpu-guarded under "mixed") plus that allowance. */
static int check_nodes(const opts *o, usi_device *d)
{
    net c, p, g, b;
    memset(&c, 0, sizeof c);
    memset(&p, 0, sizeof p);
    memset(&g, 0, sizeof g);
    memset(&b, 0, sizeof b);
    int mixed = o->precisions == 2;
    usi_error *e = node_step(usi_device_cpu(), o, 0, &c);
    if (!e) e = node_step(usi_device_cpu(), o, 1e-6, &p);
    if (!e) e = usi_device_set_mixed(d, mixed);
    if (!e) e = node_step(d, o, 0, &g);
    usi_error_free(usi_device_set_mixed(d, 0));
    if (!e && mixed) e = node_step(storage_emulation(), o, 0, &b);
    int bad = 0;
    normwise = mixed;
    printf("check-nodes %s batch %d at %d: %s %s vs cpu fp32, each tensor %s\n", o->model, o->check_batch,
           o->check_size, o->device, mixed ? "bf16" : "fp32", mixed ? "norm-wise" : "relative to its largest value");
    printf("  %-5s %-36s %-12s %-8s %10s %10s%s\n", "pass", "node", "op", "", "error", "noise",
           mixed ? "       bf16" : "");
    for (int pass = 0; !e && pass < 2; pass++) {
        int32_t n = 0, first = -1;
        usi_node_info info;
        while (usi_graph_node_info(c.g, n, &info)) n++;
        for (int32_t k = 0; !e && k < n; k++) {
            int32_t i = pass ? n - 1 - k : k; /* gradients in backward order */
            usi_node_info ic, ip, ig, ib;
            usi_graph_node_info(c.g, i, &ic);
            usi_graph_node_info(p.g, i, &ip);
            usi_graph_node_info(g.g, i, &ig);
            if (mixed) usi_graph_node_info(b.g, i, &ib);
            if (pass == 0 && ic.leaf) continue;
            int64_t numel = usi_graph_numel(ic.tensor);
            float *cv = node_read(ic.tensor, pass, numel, &e), *pv = node_read(ip.tensor, pass, numel, &e),
                  *gv = node_read(ig.tensor, pass, numel, &e), *bv = mixed ? node_read(ib.tensor, pass, numel, &e) : NULL;
            if (cv && pv && gv && (bv || !mixed) && !e) {
                double err = rel(gv, cv, (size_t)numel), floor = rel(pv, cv, (size_t)numel);
                double storage = bv ? rel(bv, cv, (size_t)numel) : 0;
                int off = !(err <= 2 * storage + fmax(1e-4, 20 * floor));
                if (off) {
                    bad++;
                    if (first < 0) first = i;
                    printf("  %-5s %-36s %-12s %-8s %10.2e %10.2e", pass ? "grad" : "value", ic.name, ic.op,
                           first == i ? "<- first" : "", err, floor);
                    if (mixed) printf(" %10.2e", storage);
                    printf("\n");
                }
            }
            free(cv);
            free(pv);
            free(gv);
            free(bv);
        }
        if (!e && first < 0)
            printf("  %-5s every node within %smax(1e-4, 20 x noise)\n", pass ? "grad" : "value",
                   mixed ? "2 x bf16 storage's + " : "");
    }
    normwise = 0;
    if (e) {
        fprintf(stderr, "check-nodes: %s\n", usi_error_message(e));
        usi_error_free(e);
        bad = 1;
    }
    net_free(&c);
    net_free(&p);
    net_free(&g);
    net_free(&b);
    printf("CHECK-NODES %s\n", bad ? "FAILED" : "ok");
    return bad != 0;
}

static int parse(int argc, char **argv, opts *o)
{
    *o = (opts){.device = "cuda", .model = "resnet50", .batch = 256, .size = 224, .steps = 200, .warmup = 10,
                .modes = 3, .precisions = 3, .check_batch = 8, .check_size = 64};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--check")) {
            o->check = 1;
            continue;
        }
        if (!strcmp(a, "--check-nodes")) {
            o->check = 2;
            continue;
        }
        if (!v) return -1;
        if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--csv")) o->csv = v;
        else if (!strcmp(a, "--batch")) o->batch = atoi(v);
        else if (!strcmp(a, "--size")) o->size = atoi(v);
        else if (!strcmp(a, "--steps")) o->steps = atoi(v);
        else if (!strcmp(a, "--warmup")) o->warmup = atoi(v);
        else if (!strcmp(a, "--check-batch")) o->check_batch = atoi(v);
        else if (!strcmp(a, "--check-size")) o->check_size = atoi(v);
        else if (!strcmp(a, "--profile")) o->profile = atoi(v);
        else if (!strcmp(a, "--mode")) o->modes = !strcmp(v, "train") ? 1 : !strcmp(v, "infer") ? 2 : 3;
        else if (!strcmp(a, "--precision")) o->precisions = !strcmp(v, "fp32") ? 1 : !strcmp(v, "mixed") ? 2 : 3;
        else return -1;
        i++;
    }
    return o->batch > 0 && o->size > 0 && o->steps > 0 && o->warmup >= 0 && o->check_batch > 0 && o->check_size > 0 &&
                       o->profile >= 0
               ? 0
               : -1;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse(argc, argv, &o)) {
        fprintf(stderr, "usage: %s [--device cuda] [--model resnet50|resnet18] [--batch N] [--size N] "
                        "[--steps N] [--warmup N] [--mode train|infer|both] [--precision fp32|mixed|both] "
                        "[--csv FILE] [--profile STEPS] [--check|--check-nodes [--check-batch 8] [--check-size 64]]\n",
                argv[0]);
        return 2;
    }
    usi_device *d = NULL;
    usi_error *e = usi_device_open(o.device, &d);
    if (e) {
        fprintf(stderr, "%s\n", usi_error_message(e));
        usi_error_free(e);
        return 1;
    }
    if (!usi_device_has_bf16(d)) o.precisions &= 1;
    if (o.check == 2) return check_nodes(&o, d);
    if (o.check) {
        int bad = check(&o, d, 0);
        if (usi_device_has_bf16(d)) bad |= check(&o, d, 1);
        return bad;
    }
    FILE *csv = o.csv ? fopen(o.csv, "w") : NULL;
    if (csv) fprintf(csv, "impl,model,mode,precision,batch,size,img_per_s,ms_per_step\n");
    int rc = 0;
    for (int mixed = 0; mixed < 2; mixed++) {
        const char *prec = mixed ? "bf16" : "fp32";
        for (int training = 1; training >= 0; training--) {
            if (!(o.modes & (training ? 1 : 2)) || !(o.precisions & (mixed ? 2 : 1))) continue;
            double ips = 0, ms = 0;
            e = measure(&o, d, training, mixed, &ips, &ms);
            const char *mode = training ? "train" : "infer";
            if (e) {
                fprintf(stderr, "%s %s %s: %s\n", o.model, mode, prec, usi_error_message(e));
                usi_error_free(e);
                rc = 1;
                continue;
            }
            printf("RESULT usi %s %s %s %d %d %.1f %.2f\n", o.model, mode, prec, o.batch, o.size, ips, ms);
            fflush(stdout);
            if (csv) fprintf(csv, "usi,%s,%s,%s,%d,%d,%.2f,%.3f\n", o.model, mode, prec, o.batch, o.size, ips, ms);
        }
    }
    usi_error_free(usi_device_set_mixed(d, 0));
    if (csv) fclose(csv);
    return rc;
}
