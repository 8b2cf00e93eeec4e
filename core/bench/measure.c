/* usi_bench_measure: one backbone's graphs, built, compiled and timed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "graph/graph.h"
#include "plugin/call.h"
#include "plugin/host.h"
#include "plugin/params.h"
#include "train/optim.h"
#include "util/error.h"
#include "util/log.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double d = *(const double *)a - *(const double *)b;
    return d < 0 ? -1 : d > 0;
}

double usi_bench_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void progress(const usi_bench_opts *o, const char *name, const char *phase)
{
    if (o->progress) o->progress(o->progress_ctx, name, phase);
}

/* One step of a mode; the caller times it. */
typedef usi_error *(*step_fn)(void *ctx);

/* The most extra warm-up steps that wait for g's passes to be recorded or
 * not (core/graph/replay.c decides after 9 passes). */
enum { SETTLE_MAX = 16 };

/* batch / median step time over o->steps timed steps after o->warmup, and
 * after g's recording decisions, so that no timed step is one of them. */
static usi_error *time_steps(const usi_bench_opts *o, usi_graph *g, step_fn step, void *ctx, double *img_s)
{
    double *t = malloc((size_t)o->steps * sizeof *t);
    if (!t) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = NULL;
    for (int s = 0; s < o->warmup + SETTLE_MAX && !e; s++) {
        if (s >= o->warmup && usi_graph_replay_settled(g)) break;
        e = step(ctx);
        if (!e) e = usi_device_synchronize(o->dev);
    }
    for (int s = 0; s < o->steps && !e; s++) {
        double t0 = now();
        e = step(ctx);
        if (!e) e = usi_device_synchronize(o->dev);
        t[s] = now() - t0;
    }
    if (!e) {
        double med = usi_bench_median(t, (size_t)o->steps);
        *img_s = med > 0 ? (double)o->batch / med : INFINITY;
    }
    free(t);
    return e;
}

/* An input image tensor and the backbone's logits, checked to be [batch,
 * classes]. */
static usi_error *build(usi_graph *g, const usi_component *bb, void *inst, const usi_params *p,
                        const usi_bench_opts *o, usi_tensor **x, usi_tensor **logits)
{
    int64_t chans = 3, classes = 0;
    if (usi_params_has(p, "in_chans")) USI_TRY(usi_params_get_int(p, "in_chans", &chans));
    if (usi_params_has(p, "num_classes")) USI_TRY(usi_params_get_int(p, "num_classes", &classes));
    int64_t shape[4] = {o->batch, chans, o->img_size, o->img_size};
    *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, shape);
    USI_TRY(usi_call_build_backbone(g, bb, inst, *x, logits));
    const usi_graph_api *G = usi_graph_api_get();
    if (G->ndim(*logits) != 2 || G->dim(*logits, 0) != o->batch || (classes && G->dim(*logits, 1) != classes))
        return usi_error_new(USI_ERR_INVALID, "the output is not [%lld, %lld] logits", (long long)o->batch,
                             (long long)classes);
    return NULL;
}

/* Deterministic images in [0, 1): the speed does not depend on them, only
 * NaNs or denormals would change it, and these give neither. */
static usi_error *fill_images(usi_tensor *x)
{
    int64_t n = usi_graph_numel(x);
    float *h = malloc((size_t)n * sizeof *h);
    if (!h) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) h[i] = (float)((i * 7919) % 255) / 255.0f;
    usi_error *e = usi_graph_write(x, h);
    free(h);
    return e;
}

static usi_error *forward_step(void *g) { return usi_graph_forward(g); }

static usi_error *measure_inference(const usi_component *bb, void *inst, const usi_params *p,
                                    const usi_bench_opts *o, usi_bench_row *row)
{
    usi_graph *g = usi_graph_new(o->dev, 0, o->seed);
    if (!g) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_tensor *x, *logits;
    usi_error *e = build(g, bb, inst, p, o, &x, &logits);
    if (!e) {
        /* counted as `usi summary` counts them, per image */
        usi_param_info info;
        row->params = 0;
        for (int32_t i = 0; i < usi_graph_num_params(g); i++)
            if (usi_graph_param_at(g, i, &info)) row->params += info.numel;
        row->macs = usi_graph_forward_macs(g) / o->batch;
        usi_graph_mark_output(logits);
        usi_graph_set_frozen(g, "", 1);
        e = usi_graph_compile(g);
    }
    if (!e) e = fill_images(x);
    if (!e) {
        progress(o, bb->name, "inference");
        e = time_steps(o, g, forward_step, g, &row->infer_img_s);
    }
    usi_graph_free(g);
    return e;
}

/* The training graph and the flat state the trainer's step updates. */
typedef struct train_ctx {
    usi_graph *g;
    usi_tensor *loss;
    const usi_bench_opts *o;
    usi_graph_blocks b;
    usi_optim_seg *segs;
    int32_t n_segs;
    usi_dbuf *state[2], *ema_params, *ema_buffers;
    int64_t step;
} train_ctx;

static usi_error *train_step(void *ctx)
{
    train_ctx *t = ctx;
    float loss;
    USI_TRY(usi_graph_forward(t->g));
    USI_TRY(usi_graph_read(t->loss, &loss)); /* the trainer checks it every step */
    USI_TRY(usi_graph_backward(t->g));
    if (t->b.grads) {
        double sq;
        USI_TRY(usi_dbuf_sum_squares(t->b.grads, 0, t->b.n_trainable, &sq));
        double s = usi_clip_factor(sqrt(sq), t->o->clip);
        if (s < 1.0) USI_TRY(usi_dbuf_scale(t->b.grads, 0, t->b.n_trainable, s));
    }
    if (t->n_segs)
        USI_TRY(usi_dbuf_optim_step(&t->o->hp, ++t->step, t->b.params, t->b.grads, t->state[0], t->state[1],
                                    t->segs, t->n_segs));
    /* the trainer copies the weights when the EMA is off */
    size_t np = t->b.n_params, nb = t->b.n_f32_buffers;
    if (np && t->o->ema) USI_TRY(usi_dbuf_ema(t->ema_params, 0, t->b.params, 0, np, 0.9999));
    else if (np) USI_TRY(usi_dbuf_copy(t->ema_params, 0, t->b.params, 0, np * sizeof(float)));
    if (nb && t->o->ema) USI_TRY(usi_dbuf_ema(t->ema_buffers, 0, t->b.buffers, 0, nb, 0.9999));
    else if (nb) USI_TRY(usi_dbuf_copy(t->ema_buffers, 0, t->b.buffers, 0, nb * sizeof(float)));
    usi_graph_zero_grad(t->g);
    return NULL;
}

/* As the trainer lays it out (core/train/trainer.c): one segment per
 * trainable parameter with its decay flag, moments over the trainable head
 * of the parameter block, the EMA over parameters and float buffers. */
static usi_error *alloc_state(train_ctx *t)
{
    usi_graph_get_blocks(t->g, &t->b);
    int32_t n = usi_graph_num_params(t->g);
    t->segs = calloc((size_t)n + 1, sizeof *t->segs);
    if (!t->segs) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        usi_param_info p;
        if (usi_graph_param_at(t->g, i, &p) && p.trainable)
            t->segs[t->n_segs++] = (usi_optim_seg){p.offset / sizeof(float), (size_t)p.numel,
                                                   usi_param_decays(p.name, p.ndim)};
    }
    size_t trainable = t->b.n_trainable * sizeof(float);
    for (int s = 0; s < usi_optim_state_count(t->o->hp.kind) && trainable; s++)
        USI_TRY(usi_dbuf_new(t->o->dev, trainable, &t->state[s]));
    if (t->b.n_params) USI_TRY(usi_dbuf_new(t->o->dev, t->b.n_params * sizeof(float), &t->ema_params));
    if (t->b.n_f32_buffers)
        USI_TRY(usi_dbuf_new(t->o->dev, t->b.n_f32_buffers * sizeof(float), &t->ema_buffers));
    return NULL;
}

/* One-hot soft targets, class i % classes for image i. */
static usi_error *fill_targets(usi_tensor *targets, int64_t batch, int64_t classes)
{
    float *h = calloc((size_t)(batch * classes), sizeof *h);
    if (!h) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < batch; i++) h[i * classes + i % classes] = 1.0f;
    usi_error *e = usi_graph_write(targets, h);
    free(h);
    return e;
}

static usi_error *measure_training(const usi_component *bb, void *inst, const usi_params *p,
                                   const usi_bench_opts *o, usi_bench_row *row)
{
    train_ctx t;
    memset(&t, 0, sizeof t);
    t.o = o;
    if (!(t.g = usi_graph_new(o->dev, 1, o->seed))) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_tensor *x, *logits, *targets = NULL;
    const usi_graph_api *G = usi_graph_api_get();
    usi_error *e = build(t.g, bb, inst, p, o, &x, &logits);
    int64_t classes = e ? 0 : G->dim(logits, 1);
    if (!e) {
        int64_t rows[2] = {o->batch, classes};
        targets = usi_graph_input(t.g, "targets", USI_DTYPE_F32, 2, rows);
        t.loss = G->loss_soft_ce(t.g, logits, targets);
        e = usi_graph_error(t.g);
    }
    if (!e) {
        usi_graph_mark_output(t.loss);
        e = usi_graph_set_loss(t.g, t.loss);
    }
    if (!e) e = usi_graph_compile(t.g);
    if (!e) e = alloc_state(&t);
    if (!e) e = fill_images(x);
    if (!e) e = fill_targets(targets, o->batch, classes);
    if (!e) {
        progress(o, bb->name, "training");
        e = time_steps(o, t.g, train_step, &t, &row->train_img_s);
    }
    for (int s = 0; s < 2; s++) usi_dbuf_free(t.state[s]);
    usi_dbuf_free(t.ema_params);
    usi_dbuf_free(t.ema_buffers);
    free(t.segs);
    usi_graph_free(t.g);
    return e;
}

usi_error *usi_bench_measure(const usi_component *bb, const usi_params *p, const usi_bench_opts *o,
                             usi_bench_row *row)
{
    if (o->batch < 1 || o->img_size < 1 || o->steps < 1 || o->warmup < 0)
        return usi_error_new(USI_ERR_INVALID, "batch, img_size and steps must be positive");
    progress(o, bb->name, "building");
    usi_log_clear_last_error();
    void *inst = NULL;
    usi_error *e = usi_call_create(bb, p, &inst);
    if (!e) e = measure_inference(bb, inst, p, o, row);
    if (!e && o->train) e = usi_error_prefix(measure_training(bb, inst, p, o, row), "training: ");
    if (inst) usi_call_destroy(bb, inst);
    /* A plugin of ABI 1.0 says why it gave up only in the log; the graph's
     * error then is a bare "no output". The logged line is the reason. */
    if (e && *usi_log_last_error() && !strstr(usi_error_message(e), usi_log_last_error())) {
        usi_error *why = usi_error_new(e->code, "%s (%s)", usi_log_last_error(), usi_error_message(e));
        usi_error_free(e);
        e = why;
    }
    return e;
}
