/* Training-step and inference speed of the engine on ResNet-50, ResNet-18
 * and a MobileNetV3-Large-like graph: images/s, GFLOP/s, planned arena
 * against the naive sum. Prints a table and writes CSV.
 *
 *   bench_engine [--batch 32] [--size 224] [--threads 2] [--steps 3]
 *                [--models resnet50,resnet18,mobilenetv3] [--plan-only]
 *                [--mode train|infer|both] [--csv bench_engine.csv] [--device cpu]
 *
 * Training rows also time the step's update on the flat blocks: gradient
 * norm, AdamW over every trainable parameter and the EMA of all of them
 * ("update ms"), as the trainer runs them after backward.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/optim_args.h"
#include "device.h"
#include "graph/graph.h"
#include "models.h"
#include "plugin/host.h"
#include "util/error.h"

typedef struct opts {
    int batch, size, threads, steps, plan_only, modes; /* modes: 1 train, 2 infer */
    const char *models, *csv, *device;
} opts;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static usi_tensor *build(usi_graph *g, const char *model, usi_tensor *x)
{
    if (!strcmp(model, "resnet50")) return model_resnet(g, x, 50, 1000);
    if (!strcmp(model, "resnet18")) return model_resnet(g, x, 18, 1000);
    return model_mobilenetv3_large(g, x, 1000);
}

typedef struct result {
    double seconds, flops, update_seconds;
    size_t planned, naive;
} result;

/* Gradient norm + AdamW (one segment per parameter) + EMA over the flat
 * blocks, averaged over `steps` repeats. */
static usi_error *time_update(usi_graph *g, int steps, double *seconds)
{
    usi_graph_blocks b;
    usi_graph_get_blocks(g, &b);
    int32_t n = usi_graph_num_params(g), k = 0;
    usi_optim_seg *segs = calloc((size_t)n + 1, sizeof *segs);
    usi_dbuf *m = NULL, *v = NULL, *ema = NULL;
    usi_device *dev = usi_graph_device(g);
    usi_error *e = segs ? NULL : usi_error_new(USI_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; !e && i < n; i++) {
        usi_param_info p;
        usi_graph_param_at(g, i, &p);
        if (p.trainable) segs[k++] = (usi_optim_seg){p.offset / sizeof(float), (size_t)p.numel, p.ndim >= 2};
    }
    if (!e) e = usi_dbuf_new(dev, b.n_trainable * sizeof(float), &m);
    if (!e) e = usi_dbuf_new(dev, b.n_trainable * sizeof(float), &v);
    if (!e) e = usi_dbuf_new(dev, b.n_params * sizeof(float), &ema);
    usi_optim_hp hp = {USI_OPT_ADAMW, 1e-3, 2e-2, 0.9, 0.999, 1e-8, 0, 0};
    double t0 = now(), sq;
    for (int s = 0; s < steps && !e; s++) {
        e = usi_dbuf_sum_squares(b.grads, 0, b.n_trainable, &sq);
        if (!e) e = usi_dbuf_optim_step(&hp, s + 1, b.params, b.grads, m, v, segs, k);
        if (!e) e = usi_dbuf_ema(ema, 0, b.params, 0, b.n_params, 0.9999);
    }
    if (!e) e = usi_device_synchronize(dev);
    *seconds = (now() - t0) / steps;
    usi_dbuf_free(m);
    usi_dbuf_free(v);
    usi_dbuf_free(ema);
    free(segs);
    return e;
}

static usi_error *run(const opts *o, const char *model, int training, result *r)
{
    usi_device *dev;
    USI_TRY(usi_device_open(o->device, &dev));
    usi_graph *g = usi_graph_new(dev, training, 1);
    int64_t xs[4] = {o->batch, 3, o->size, o->size}, n = o->batch;
    usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, xs);
    usi_tensor *y = usi_graph_input(g, "labels", USI_DTYPE_I32, 1, &n);
    usi_tensor *logits = build(g, model, x);
    r->flops = model_forward_flops(g) * (training ? 3 : 1);
    usi_error *e = usi_graph_error(g);
    if (!e) usi_graph_mark_output(logits);
    if (!e && training) e = usi_graph_set_loss(g, usi_graph_api_get()->loss_ce(g, logits, y, 0.1));
    if (!e) e = usi_graph_compile(g);
    if (!e) usi_graph_memory(g, &r->planned, &r->naive);
    if (!e && !o->plan_only) {
        float *xd = test_host(sizeof(float) * (size_t)usi_graph_numel(x));
        for (int64_t i = 0; i < usi_graph_numel(x); i++) xd[i] = (float)((i * 7919) % 255) / 255.0f;
        int32_t *yd = test_host(sizeof(int32_t) * (size_t)n);
        for (int64_t i = 0; i < n; i++) yd[i] = (int32_t)(i % 1000);
        test_write(x, xd);
        test_write(y, yd);
        double t0 = 0;
        for (int s = 0; s <= o->steps && !e; s++) { /* step 0 warms up */
            if (s == 1) t0 = now();
            e = usi_graph_forward(g);
            if (!e && training) e = usi_graph_backward(g);
            if (!e && training) usi_graph_zero_grad(g);
        }
        r->seconds = (now() - t0) / o->steps;
        if (!e && training) e = time_update(g, o->steps, &r->update_seconds);
    }
    usi_graph_free(g);
    return e;
}

static int parse(int argc, char **argv, opts *o)
{
    *o = (opts){32, 224, 2, 3, 0, 3, "resnet50,resnet18,mobilenetv3", "bench_engine.csv", "cpu"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--plan-only")) { o->plan_only = 1; continue; }
        if (!v) return -1;
        if (!strcmp(a, "--batch")) o->batch = atoi(v);
        else if (!strcmp(a, "--size")) o->size = atoi(v);
        else if (!strcmp(a, "--threads")) o->threads = atoi(v);
        else if (!strcmp(a, "--steps")) o->steps = atoi(v);
        else if (!strcmp(a, "--models")) o->models = v;
        else if (!strcmp(a, "--csv")) o->csv = v;
        else if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--mode")) o->modes = !strcmp(v, "train") ? 1 : !strcmp(v, "infer") ? 2 : 3;
        else return -1;
        i++;
    }
    return o->batch > 0 && o->size > 0 && o->steps > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse(argc, argv, &o)) {
        fprintf(stderr, "usage: %s [--batch N] [--size N] [--threads N] [--steps N] "
                        "[--models a,b] [--plan-only] [--csv FILE] [--device NAME]\n", argv[0]);
        return 2;
    }
    usi_device_set_threads(o.threads);
    FILE *csv = fopen(o.csv, "w");
    if (csv)
        fprintf(csv, "model,mode,batch,size,threads,seconds,img_per_s,gflop_per_s,planned_bytes,naive_bytes,"
                     "update_seconds\n");
    printf("%-12s %-6s %10s %10s %12s %12s %10s\n", "model", "mode", "img/s", "GFLOP/s", "planned MiB",
           "naive MiB", "update ms");
    char models[256];
    snprintf(models, sizeof models, "%s", o.models);
    int rc = 0;
    for (char *m = strtok(models, ","); m; m = strtok(NULL, ",")) {
        for (int training = 1; training >= 0; training--) {
            if (!(o.modes & (training ? 1 : 2))) continue;
            result r = {0};
            usi_error *e = run(&o, m, training, &r);
            if (e) {
                fprintf(stderr, "%s: %s\n", m, usi_error_message(e));
                usi_error_free(e);
                rc = 1;
                continue;
            }
            double ips = r.seconds > 0 ? o.batch / r.seconds : 0;
            double gf = r.seconds > 0 ? r.flops / r.seconds / 1e9 : 0;
            const char *mode = training ? "train" : "infer";
            printf("%-12s %-6s %10.2f %10.1f %12.1f %12.1f %10.1f\n", m, mode, ips, gf, r.planned / 1048576.0,
                   r.naive / 1048576.0, r.update_seconds * 1e3);
            if (csv)
                fprintf(csv, "%s,%s,%d,%d,%d,%.6f,%.3f,%.2f,%zu,%zu,%.6f\n", m, mode, o.batch, o.size, o.threads,
                        r.seconds, ips, gf, r.planned, r.naive, r.update_seconds);
        }
    }
    if (csv) fclose(csv);
    return rc;
}
