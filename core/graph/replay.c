/* Recorded forward passes. An inference graph's forward is the same work on
 * every call (the same shapes at the same addresses), so where the device
 * can record work (CUDA graphs, backend.h: record/replay) it is recorded
 * once and replayed with one launch instead of a launch per node. It is
 * kept only where it is right and faster:
 *   calls 1-2  node by node (the first calls make each node's library state)
 *   calls 3-5  node by node, timed (the device synchronised around each)
 *   call 6     recorded, replayed and its outputs read; then the same pass
 *              node by node and its outputs compared: any difference beyond
 *              float noise ends replaying for this graph
 *   calls 7-9  replayed, timed; replaying stays if it took less time
 * USI_GRAPH_REPLAY=off never records; =on keeps a recording that passed the
 * check whatever its time. Training graphs and graphs with custom ops (a
 * plugin's kernel may depend on host state) always run node by node. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "graph/graph_internal.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

enum { WARM = 2, TIMED = 3 };
enum { TRYING, KEPT, EAGER };
enum { MODE_OFF, MODE_AUTO, MODE_ON };

/* A replayed pass must match the same pass node by node within this,
 * relative to the output's largest value (the same kernels: it is exact on
 * devices we know, this leaves room for reductions in another order). */
#define REPLAY_TOL 1e-5

typedef struct usi_replay {
    int32_t state, calls;
    double eager_s, replay_s;
    void *rec;
} usi_replay;

static int32_t mode(void)
{
    static int warned;
    const char *v = getenv("USI_GRAPH_REPLAY");
    if (!v || !*v || !strcmp(v, "auto")) return MODE_AUTO;
    if (!strcmp(v, "off")) return MODE_OFF;
    if (!strcmp(v, "on")) return MODE_ON;
    if (!warned++) usi_log(USI_LOG_WARN, "USI_GRAPH_REPLAY=%s: not off, on or auto; using auto", v);
    return MODE_AUTO;
}

int32_t usi_replay_wanted(usi_graph *g)
{
    if (!g->dev->be->record || g->training || g->prof || mode() == MODE_OFF) return 0;
    if (g->replay && g->replay->state == EAGER) return 0;
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->op == USI_OP_CUSTOM) return 0;
    return 1;
}

void usi_replay_drop(usi_graph *g)
{
    if (!g->replay) return;
    if (g->replay->rec) g->dev->be->rec_free(g->dev, g->replay->rec);
    free(g->replay);
    g->replay = NULL;
}

static void give_up(usi_graph *g, const char *why)
{
    usi_replay *r = g->replay;
    if (r->rec) g->dev->be->rec_free(g->dev, r->rec);
    r->rec = NULL;
    r->state = EAGER;
    usi_log(USI_LOG_INFO, "graph replay (%d nodes): %s; its forward passes run node by node", (int)g->n_nodes, why);
}

static usi_error *run_nodes(void *ctx) { return usi_graph_forward_nodes(ctx); }

static usi_error *timed(usi_graph *g, int replay, double *acc)
{
    USI_TRY(usi_device_synchronize(g->dev));
    double t0 = usi_now();
    USI_TRY(replay ? g->dev->be->replay(g->dev, g->replay->rec) : usi_graph_forward_nodes(g));
    USI_TRY(usi_device_synchronize(g->dev));
    *acc += usi_now() - t0;
    return NULL;
}

/* The graph's outputs into one host buffer (*out, *n floats or bytes). */
static usi_error *read_outputs(usi_graph *g, unsigned char **out, size_t *n)
{
    size_t total = 0;
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->is_output) total += usi_node_bytes(g->nodes[i]);
    *n = total;
    *out = malloc(total ? total : 1);
    if (!*out) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    size_t at = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if (!t->is_output) continue;
        USI_TRY(usi_graph_read(t, *out + at));
        at += usi_node_bytes(t);
    }
    return NULL;
}

/* Largest difference of b from a relative to a's largest value, the
 * outputs taken as floats (every output of an inference graph is). */
static double worst_difference(const unsigned char *a, const unsigned char *b, size_t bytes)
{
    const float *x = (const float *)a, *y = (const float *)b;
    size_t n = bytes / sizeof(float);
    double big = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - (double)y[i]);
        if (!(d <= diff)) diff = d; /* NaN counts as a difference */
        if (fabs((double)x[i]) > big) big = fabs((double)x[i]);
    }
    return big > 0 ? diff / big : diff;
}

/* The outputs NaN (all bits set), so a replay that leaves one unwritten
 * shows in the check. */
static usi_error *poison_outputs(usi_graph *g)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        size_t off;
        usi_dbuf *b = t->is_output ? usi_node_block(t, &off) : NULL;
        if (b) USI_TRY(usi_dbuf_fill(b, off, 0xff, usi_node_bytes(t)));
    }
    return NULL;
}

/* A recording that fails in any way only ends replaying: the pass runs
 * node by node, and only its errors are the caller's. */
static usi_error *give_up_on(usi_graph *g, usi_error *e)
{
    give_up(g, usi_error_message(e));
    usi_error_free(e);
    return usi_graph_forward_nodes(g);
}

/* Record, replay, then the same pass node by node: its results stay. */
static usi_error *record_and_check(usi_graph *g)
{
    usi_replay *r = g->replay;
    const usi_backend *be = g->dev->be;
    usi_error *e = be->record(g->dev, run_nodes, g, &r->rec);
    if (e) return give_up_on(g, e);
    unsigned char *replayed = NULL, *eager = NULL;
    size_t n = 0, m = 0;
    e = poison_outputs(g);
    if (!e) e = be->replay(g->dev, r->rec);
    if (!e) e = read_outputs(g, &replayed, &n);
    if (e) {
        free(replayed);
        return give_up_on(g, e);
    }
    e = usi_graph_forward_nodes(g);
    if (!e) e = read_outputs(g, &eager, &m);
    if (!e) {
        double worst = n && n == m ? worst_difference(eager, replayed, n) : INFINITY;
        if (!n) give_up(g, "the graph has no output to check a replay against");
        else if (!(worst <= REPLAY_TOL)) {
            char why[160];
            snprintf(why, sizeof why, "a replayed pass differs from the same pass node by node (%.3g of the largest "
                     "output)", worst);
            give_up(g, why);
        }
    }
    free(replayed);
    free(eager);
    return e;
}

usi_error *usi_replay_forward(usi_graph *g)
{
    if (!g->replay && !(g->replay = calloc(1, sizeof *g->replay)))
        return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    usi_replay *r = g->replay;
    if (r->state == KEPT) return g->dev->be->replay(g->dev, r->rec);
    int32_t n = ++r->calls;
    if (n <= WARM) return usi_graph_forward_nodes(g);
    if (n <= WARM + TIMED) return timed(g, 0, &r->eager_s);
    if (n == WARM + TIMED + 1) return record_and_check(g);
    usi_error *e = timed(g, 1, &r->replay_s);
    if (e) return give_up_on(g, e);
    if (n < WARM + 2 * TIMED + 1) return NULL;
    double eager_ms = 1e3 * r->eager_s / TIMED, replay_ms = 1e3 * r->replay_s / TIMED;
    char why[160];
    if (mode() == MODE_ON || replay_ms < eager_ms) {
        r->state = KEPT;
        usi_log(USI_LOG_INFO, "graph replay (%d nodes): a recorded forward pass takes %.3f ms, node by node %.3f ms: "
                "replaying it", (int)g->n_nodes, replay_ms, eager_ms);
    } else {
        snprintf(why, sizeof why, "a recorded forward pass takes %.3f ms, node by node %.3f ms", replay_ms, eager_ms);
        give_up(g, why);
    }
    return NULL;
}
