/* The gradient all-reduce of a distributed step on ResNet-50 (1000 classes:
 * 25.6M gradients), run under `mpirun -np N`: per step, the time of forward +
 * backward alone, and the time the step then waits for the all-reduce
 * without overlap (every bucket starts after backward) and with overlap
 * (buckets start as backward finishes them). Prints a table on rank 0 and
 * writes CSV.
 *
 *   mpirun -np 2 bench_allreduce [--batch 8] [--size 64] [--threads 1]
 *                                [--steps 5] [--bucket-mb 25] [--csv F]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "dist/dist.h"
#include "dist/reducer.h"
#include "graph/graph.h"
#include "models.h"
#include "plugin/host.h"
#include "util/clock.h"
#include "util/error.h"

typedef struct opts {
    int batch, size, threads, steps;
    double bucket_mb;
    const char *csv;
} opts;

typedef struct net {
    usi_graph *g;
    usi_tensor *x, *y;
    usi_graph_blocks b;
} net;

#define TRY(expr)                                                                       \
    do {                                                                                \
        usi_error *e_ = (expr);                                                         \
        if (e_) {                                                                       \
            fprintf(stderr, "rank %d: %s: %s\n", (int)usi_dist_rank(), #expr, usi_error_message(e_)); \
            usi_dist_abort(1);                                                          \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static net build(const opts *o)
{
    net n;
    n.g = usi_graph_new(test_device(), 1, 1);
    int64_t xs[4] = {o->batch, 3, o->size, o->size}, nb = o->batch;
    n.x = usi_graph_input(n.g, "images", USI_DTYPE_F32, 4, xs);
    n.y = usi_graph_input(n.g, "labels", USI_DTYPE_I32, 1, &nb);
    usi_tensor *logits = model_resnet(n.g, n.x, 50, 1000);
    TRY(usi_graph_error(n.g));
    TRY(usi_graph_set_loss(n.g, usi_graph_api_get()->loss_ce(n.g, logits, n.y, 0.1)));
    TRY(usi_graph_compile(n.g));
    usi_graph_get_blocks(n.g, &n.b);
    float *xd = test_host(sizeof(float) * (size_t)usi_graph_numel(n.x));
    for (int64_t i = 0; i < usi_graph_numel(n.x); i++) xd[i] = (float)((i * 7919 + usi_dist_rank()) % 255) / 255.0f;
    int32_t *yd = test_host(sizeof(int32_t) * (size_t)nb);
    for (int64_t i = 0; i < nb; i++) yd[i] = (int32_t)((i * 31 + usi_dist_rank()) % 1000);
    TRY(usi_graph_write(n.x, xd));
    TRY(usi_graph_write(n.y, yd));
    return n;
}

typedef struct figures {
    double step_s, wait_s;
} figures;

/* mode 0: no reduction; 1: without overlap; 2: with overlap. Step 0 warms up. */
static figures run(net *n, const opts *o, int mode)
{
    usi_reducer *r = NULL;
    if (mode) {
        usi_reducer_opts ro = {(size_t)(o->bucket_mb * 1048576.0), mode == 2, "mpi"};
        TRY(usi_reducer_new(n->g, &ro, &r));
    }
    figures f = {0, 0};
    for (int s = 0; s <= o->steps; s++) {
        TRY(usi_dist_barrier()); /* every rank starts the step together */
        double t0 = usi_now();
        TRY(usi_graph_forward(n->g));
        TRY(usi_graph_backward(n->g));
        double wait = 0;
        if (r) {
            double t1 = usi_now();
            TRY(usi_reducer_finish(r, n->b.grads, n->b.n_trainable));
            wait = usi_now() - t1;
        }
        double step = usi_now() - t0;
        usi_graph_zero_grad(n->g);
        if (s == 0) continue;
        f.step_s += step / o->steps;
        f.wait_s += wait / o->steps;
    }
    /* The slowest rank's figures: the step is as slow as it is. */
    double v[2] = {f.step_s, f.wait_s};
    TRY(usi_dist_sum_f64(v, 2));
    f.step_s = v[0] / usi_dist_world();
    f.wait_s = v[1] / usi_dist_world();
    usi_reducer_free(r);
    return f;
}

static int parse(int argc, char **argv, opts *o)
{
    *o = (opts){8, 64, 1, 5, 25.0, "bench_allreduce.csv"};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--batch")) o->batch = atoi(v);
        else if (!strcmp(a, "--size")) o->size = atoi(v);
        else if (!strcmp(a, "--threads")) o->threads = atoi(v);
        else if (!strcmp(a, "--steps")) o->steps = atoi(v);
        else if (!strcmp(a, "--bucket-mb")) o->bucket_mb = atof(v);
        else if (!strcmp(a, "--csv")) o->csv = v;
        else return -1;
    }
    return argc % 2 == 1 && o->batch > 0 && o->size >= 32 && o->steps > 0 && o->bucket_mb > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse(argc, argv, &o)) {
        fprintf(stderr, "usage: mpirun -np N %s [--batch N] [--size N] [--threads N] [--steps N] [--bucket-mb MB] "
                        "[--csv FILE]\n", argv[0]);
        return 2;
    }
    TRY(usi_dist_init());
    usi_device_set_threads(o.threads);
    net n = build(&o);
    figures alone = run(&n, &o, 0), plain = run(&n, &o, 1), overlap = run(&n, &o, 2);
    if (usi_dist_rank() == 0) {
        usi_reducer_opts ro = {(size_t)(o.bucket_mb * 1048576.0), 1, "mpi"};
        usi_reducer *r;
        TRY(usi_reducer_new(n.g, &ro, &r));
        usi_reducer_stats st;
        usi_reducer_get_stats(r, &st);
        usi_reducer_free(r);
        printf("ResNet-50, %zu gradients (%.1f MiB) in %d bucket(s) of <= %.0f MiB; %d process(es) x %d thread(s), "
               "batch %d x %d px per process, %d steps\n",
               n.b.n_trainable, n.b.n_trainable * 4.0 / 1048576.0, (int)st.buckets, o.bucket_mb,
               (int)usi_dist_world(), o.threads, o.batch, o.size, o.steps);
        printf("%-26s %12s %22s\n", "step", "step s", "all-reduce wait ms");
        printf("%-26s %12.3f %22s\n", "forward+backward only", alone.step_s, "-");
        printf("%-26s %12.3f %22.1f\n", "all-reduce after backward", plain.step_s, 1e3 * plain.wait_s);
        printf("%-26s %12.3f %22.1f\n", "all-reduce overlapped", overlap.step_s, 1e3 * overlap.wait_s);
        FILE *csv = fopen(o.csv, "w");
        if (csv) {
            fprintf(csv, "mode,processes,threads,batch,size,gradients,buckets,step_s,wait_s\n");
            const char *names[3] = {"none", "after_backward", "overlapped"};
            figures all[3] = {alone, plain, overlap};
            for (int k = 0; k < 3; k++)
                fprintf(csv, "%s,%d,%d,%d,%d,%zu,%d,%.6f,%.6f\n", names[k], (int)usi_dist_world(), o.threads,
                        o.batch, o.size, n.b.n_trainable, (int)st.buckets, all[k].step_s, all[k].wait_s);
            fclose(csv);
        }
    }
    usi_graph_free(n.g);
    usi_dist_finalize();
    return 0;
}
