/* Training-step and inference speed of the engine on ResNet-50, ResNet-18
 * and a MobileNetV3-Large-like graph: images/s, GFLOP/s, planned arena
 * against the naive sum. Prints a table and writes CSV.
 *
 *   bench_engine [--batch 32] [--size 224] [--threads 2] [--steps 3]
 *                [--models resnet50,resnet18,mobilenetv3] [--plan-only]
 *                [--mode train|infer|both] [--csv bench_engine.csv]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "device.h"
#include "graph/graph.h"
#include "models.h"
#include "plugin/host.h"
#include "util/error.h"

typedef struct opts {
    int batch, size, threads, steps, plan_only, modes; /* modes: 1 train, 2 infer */
    const char *models, *csv;
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
    double seconds, flops;
    size_t planned, naive;
} result;

static usi_error *run(const opts *o, const char *model, int training, result *r)
{
    usi_graph *g = usi_graph_new(test_device(), training, 1);
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
    }
    usi_graph_free(g);
    return e;
}

static int parse(int argc, char **argv, opts *o)
{
    *o = (opts){32, 224, 2, 3, 0, 3, "resnet50,resnet18,mobilenetv3", "bench_engine.csv"};
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
                        "[--models a,b] [--plan-only] [--csv FILE]\n", argv[0]);
        return 2;
    }
    usi_device_set_threads(o.threads);
    FILE *csv = fopen(o.csv, "w");
    if (csv) fprintf(csv, "model,mode,batch,size,threads,seconds,img_per_s,gflop_per_s,planned_bytes,naive_bytes\n");
    printf("%-12s %-6s %10s %10s %12s %12s\n", "model", "mode", "img/s", "GFLOP/s",
           "planned MiB", "naive MiB");
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
            printf("%-12s %-6s %10.2f %10.1f %12.1f %12.1f\n", m, mode, ips, gf,
                   r.planned / 1048576.0, r.naive / 1048576.0);
            if (csv)
                fprintf(csv, "%s,%s,%d,%d,%d,%.6f,%.3f,%.2f,%zu,%zu\n", m, mode, o.batch, o.size,
                        o.threads, r.seconds, ips, gf, r.planned, r.naive);
        }
    }
    if (csv) fclose(csv);
    return rc;
}
