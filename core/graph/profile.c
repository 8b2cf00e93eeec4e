/* Time per op kind, forward and backward, on any device: with profiling
 * on, the executor waits for the device before and after each node and
 * adds the wall time to the node's op (exec.c). Waiting serialises the
 * device, so a profiled step is slower than a plain one; the shares are
 * what the table is for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/device.h"
#include "graph/build_common.h"
#include "graph/graph_internal.h"
#include "util/error.h"

struct usi_graph_profile {
    double seconds[2][USI_OP_COUNT]; /* [0] forward, [1] backward */
    int64_t calls[2][USI_OP_COUNT];
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

usi_error *usi_graph_set_profiling(usi_graph *g, int on)
{
    if (!on) {
        free(g->prof);
        g->prof = NULL;
        return NULL;
    }
    if (!g->prof && !(g->prof = calloc(1, sizeof *g->prof)))
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    memset(g->prof, 0, sizeof *g->prof);
    return NULL;
}

usi_error *usi_profile_begin(usi_graph *g, double *t0)
{
    USI_TRY(usi_device_synchronize(g->dev));
    *t0 = now();
    return NULL;
}

usi_error *usi_profile_end(usi_graph *g, const usi_tensor *t, int backward, double t0)
{
    USI_TRY(usi_device_synchronize(g->dev));
    if (t->op >= 0 && t->op < USI_OP_COUNT) {
        g->prof->seconds[backward][t->op] += now() - t0;
        g->prof->calls[backward][t->op]++;
    }
    return NULL;
}

void usi_graph_print_profile(const usi_graph *g, FILE *f, int64_t steps)
{
    if (!g->prof) return;
    if (steps < 1) steps = 1;
    double total = 0;
    for (int d = 0; d < 2; d++)
        for (int op = 0; op < USI_OP_COUNT; op++) total += g->prof->seconds[d][op];
    fprintf(f, "%-16s %-8s %8s %11s %7s\n", "op", "pass", "calls", "ms/step", "share");
    for (int d = 0; d < 2; d++)
        for (int op = 0; op < USI_OP_COUNT; op++) {
            if (!g->prof->calls[d][op]) continue;
            double s = g->prof->seconds[d][op];
            fprintf(f, "%-16s %-8s %8lld %11.3f %6.1f%%\n", usi_op_name(op), d ? "backward" : "forward",
                    (long long)(g->prof->calls[d][op] / steps), 1e3 * s / (double)steps,
                    total > 0 ? 100 * s / total : 0);
        }
    fprintf(f, "%-16s %-8s %8s %11.3f\n", "all nodes", "", "", 1e3 * total / (double)steps);
}
