/* Recorded passes. A graph's forward pass, and a training graph's backward
 * pass, are the same work on every call (the same shapes at the same
 * addresses), so where the device can record work (CUDA graphs, backend.h:
 * record/replay) each is recorded once and replayed with one launch instead
 * of a launch per node. A recording is kept only where it is right and
 * faster; per pass:
 *   calls 1-2  node by node (the first calls make each node's library state)
 *   calls 3-5  node by node, timed (the device synchronised around each)
 *   call 6     recorded and replayed, its results read; what the replay
 *              changed that the pass must change once (running statistics,
 *              accumulated gradients) put back (and, for backward, forward
 *              run again); the same pass node by node and its results
 *              compared: any difference beyond float noise ends replaying
 *              for this pass
 *   calls 7-9  replayed, timed; replaying stays if it took less time
 * The results compared: the graph's outputs (forward; filled with NaN before
 * the replay, so one it leaves unwritten shows) or the parameter gradients
 * (backward). USI_GRAPH_REPLAY=off never records; =on keeps a recording that
 * passed the check whatever its time.
 *
 * Never recorded: graphs with custom ops (a plugin's kernel may depend on
 * host state), and training graphs whose work depends on the host per step:
 * dropout and drop-path (their masks take the step number), and the
 * gradient-ready hook; and any graph with a hard-label loss (the host reads
 * its label check) or sums over ranks (through the host or another
 * library). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/device_internal.h"
#include "graph/graph_internal.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

enum { WARM = 2, TIMED = 3 };
enum { TRYING, KEPT, EAGER };
enum { MODE_OFF, MODE_AUTO, MODE_ON };

/* A replayed pass must match the same pass node by node within this,
 * relative to the largest value compared (the same kernels: it is exact on
 * devices we know, this leaves room for reductions in another order). */
#define REPLAY_TOL 1e-5

typedef struct pass {
    int32_t state, calls;
    double eager_s, replay_s;
    void *rec;
} pass;

struct usi_replay {
    int32_t nodes_ok;        /* no node keeps the graph from recording       */
    pass fwd, bwd;
};

static const char *const pass_name[2] = {"forward", "backward"};

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

static int nodes_recordable(const usi_graph *g)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        int32_t op = g->nodes[i]->op;
        if (op == USI_OP_CUSTOM || op == USI_OP_LOSS_CE) return 0;
        if (g->training && (op == USI_OP_DROPOUT || op == USI_OP_DROP_PATH)) return 0;
    }
    return 1;
}

/* The nodes are looked at once (the state is made here, dropped with the
 * recordings when the graph is planned again); the rest can change. */
static int recordable(usi_graph *g)
{
    if (!g->dev->be->record || g->prof || mode() == MODE_OFF || g->coll) return 0;
    if (g->training && g->grad_ready) return 0;
    if (!g->replay) {
        if (!(g->replay = calloc(1, sizeof *g->replay))) return 0;
        g->replay->nodes_ok = nodes_recordable(g);
    }
    return g->replay->nodes_ok;
}

static pass *pass_of(usi_graph *g, int bwd) { return bwd ? &g->replay->bwd : &g->replay->fwd; }

int32_t usi_replay_wanted(usi_graph *g, int32_t bwd)
{
    if (g->replay && pass_of(g, bwd)->state == EAGER) return 0;
    return recordable(g);
}

void usi_replay_drop(usi_graph *g)
{
    if (!g->replay) return;
    for (int bwd = 0; bwd < 2; bwd++) {
        pass *p = pass_of(g, bwd);
        if (p->rec) g->dev->be->rec_free(g->dev, p->rec);
    }
    free(g->replay);
    g->replay = NULL;
}

static void give_up(usi_graph *g, int bwd, const char *why)
{
    pass *p = pass_of(g, bwd);
    if (p->rec) g->dev->be->rec_free(g->dev, p->rec);
    p->rec = NULL;
    p->state = EAGER;
    usi_log(USI_LOG_INFO, "graph replay (%d nodes, %s): %s; the pass runs node by node", (int)g->n_nodes,
            pass_name[bwd], why);
}

static usi_error *run_fwd(void *ctx) { return usi_graph_forward_nodes(ctx); }
static usi_error *run_bwd(void *ctx) { return usi_graph_backward_nodes(ctx); }

static usi_error *eager(usi_graph *g, int bwd) { return bwd ? usi_graph_backward_nodes(g) : usi_graph_forward_nodes(g); }

/* A recording that fails in any way only ends replaying: the pass runs
 * node by node, and only its errors are the caller's. */
static usi_error *give_up_on(usi_graph *g, int bwd, usi_error *e)
{
    give_up(g, bwd, usi_error_message(e));
    usi_error_free(e);
    return eager(g, bwd);
}

static usi_error *timed(usi_graph *g, int bwd, int replay, double *acc)
{
    USI_TRY(usi_device_synchronize(g->dev));
    double t0 = usi_now();
    USI_TRY(replay ? g->dev->be->replay(g->dev, pass_of(g, bwd)->rec) : eager(g, bwd));
    USI_TRY(usi_device_synchronize(g->dev));
    *acc += usi_now() - t0;
    return NULL;
}

/* The outputs NaN (all bits set), so a replay that leaves one unwritten
 * shows in the check. */
static usi_error *poison_outputs(usi_graph *g)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        size_t off;
        usi_dbuf *b = t->is_output && t->storage != USI_STORE_OWNED ? usi_node_block(t, &off) : NULL;
        if (b) USI_TRY(usi_dbuf_fill(b, off, 0xff, usi_node_bytes(t)));
    }
    return NULL;
}

/* What a pass is checked by, into one host buffer (*out, *n bytes of
 * floats): the outputs (forward) or the parameter gradients (backward). */
static usi_error *read_results(usi_graph *g, int bwd, unsigned char **out, size_t *n)
{
    size_t total = 0;
    if (bwd) total = g->grads ? usi_dbuf_bytes(g->grads) : 0;
    else
        for (int32_t i = 0; i < g->n_nodes; i++)
            if (g->nodes[i]->is_output && g->nodes[i]->dtype == USI_DTYPE_F32) total += usi_node_bytes(g->nodes[i]);
    *n = total;
    *out = malloc(total ? total : 1);
    if (!*out) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    if (bwd) return total ? usi_dbuf_read(g->grads, 0, *out, total) : NULL;
    size_t at = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        if (!t->is_output || t->dtype != USI_DTYPE_F32) continue;
        USI_TRY(usi_graph_read(t, *out + at));
        at += usi_node_bytes(t);
    }
    return NULL;
}

/* Largest difference of b from a relative to a's largest value. */
static double worst_difference(const unsigned char *a, const unsigned char *b, size_t bytes)
{
    const float *x = (const float *)a, *y = (const float *)b;
    size_t n = bytes / sizeof(float);
    double big = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - (double)y[i]);
        if (isnan(d)) return INFINITY; /* a NaN in either: never the same */
        if (d > diff) diff = d;
        if (fabs((double)x[i]) > big) big = fabs((double)x[i]);
    }
    return big > 0 ? diff / big : diff;
}

/* A copy of a device block (NULL block: nothing to keep). */
typedef struct snapshot {
    usi_dbuf *of, *copy;
} snapshot;

static usi_error *snap_take(usi_graph *g, usi_dbuf *b, snapshot *s)
{
    s->of = b;
    s->copy = NULL;
    size_t n = b ? usi_dbuf_bytes(b) : 0;
    if (!n) return NULL;
    USI_TRY(usi_dbuf_new(g->dev, n, &s->copy));
    return usi_dbuf_copy(s->copy, 0, b, 0, n);
}

static usi_error *snap_put_back(const snapshot *s)
{
    return s->copy ? usi_dbuf_copy(s->of, 0, s->copy, 0, usi_dbuf_bytes(s->of)) : NULL;
}

/* What the replay changed that the pass must change once, put back:
 * running statistics (a training forward), accumulated parameter gradients
 * (backward). A backward pass also used up what forward left (the planner
 * gives memory of values backward has read to later gradients), so before
 * the same pass runs node by node, forward runs again, its statistics are
 * put back once more, and the loss's gradient is set again. */
static usi_error *undo_replay(usi_graph *g, int bwd, const snapshot *grads, const snapshot *stats)
{
    USI_TRY(snap_put_back(grads));
    USI_TRY(snap_put_back(stats));
    if (!bwd) return NULL;
    USI_TRY(usi_graph_forward_nodes(g));
    USI_TRY(snap_put_back(stats));
    return usi_graph_seed_loss(g);
}

/* Record, replay, undo what the replay changed, then the same pass node by
 * node: its results stay. */
static usi_error *record_and_check(usi_graph *g, int bwd)
{
    pass *p = pass_of(g, bwd);
    const usi_backend *be = g->dev->be;
    usi_error *e = be->record(g->dev, bwd ? run_bwd : run_fwd, g, &p->rec);
    if (e) return give_up_on(g, bwd, e);
    snapshot grads = {0}, stats = {0};
    unsigned char *replayed = NULL, *direct = NULL;
    size_t n = 0, m = 0;
    e = snap_take(g, bwd ? g->grads : NULL, &grads);
    if (!e) e = snap_take(g, g->training ? g->buffers : NULL, &stats);
    if (e) { /* nothing ran yet */
        usi_dbuf_free(grads.copy);
        usi_dbuf_free(stats.copy);
        return give_up_on(g, bwd, e);
    }
    if (!bwd) e = poison_outputs(g);
    if (!e) e = be->replay(g->dev, p->rec);
    if (!e) e = read_results(g, bwd, &replayed, &n);
    usi_error *undo = undo_replay(g, bwd, &grads, &stats);
    usi_dbuf_free(grads.copy);
    usi_dbuf_free(stats.copy);
    if (undo) { /* the state can't be put back: the run can't go on */
        usi_error_free(e);
        free(replayed);
        return undo;
    }
    if (e) {
        free(replayed);
        return give_up_on(g, bwd, e);
    }
    e = eager(g, bwd);
    if (!e) e = read_results(g, bwd, &direct, &m);
    if (!e) {
        double worst = n && n == m ? worst_difference(direct, replayed, n) : INFINITY;
        if (!n) give_up(g, bwd, "nothing to check a replay against");
        else if (!(worst <= REPLAY_TOL)) {
            char why[160];
            snprintf(why, sizeof why, "a replay differs from the same pass node by node (%.3g of the largest value)",
                     worst);
            give_up(g, bwd, why);
        }
    }
    free(replayed);
    free(direct);
    return e;
}

static usi_error *replay_pass(usi_graph *g, int bwd)
{
    pass *p = pass_of(g, bwd); /* made by recordable() */
    if (p->state == KEPT) return g->dev->be->replay(g->dev, p->rec);
    int32_t n = ++p->calls;
    if (n <= WARM) return eager(g, bwd);
    if (n <= WARM + TIMED) return timed(g, bwd, 0, &p->eager_s);
    if (n == WARM + TIMED + 1) return record_and_check(g, bwd);
    usi_error *e = timed(g, bwd, 1, &p->replay_s);
    if (e && !g->training) return give_up_on(g, bwd, e);
    if (e) { /* a training pass part run (statistics, gradients) can't be run again: this step fails */
        give_up(g, bwd, usi_error_message(e));
        return e;
    }
    if (n < WARM + 2 * TIMED + 1) return NULL;
    double eager_ms = 1e3 * p->eager_s / TIMED, replay_ms = 1e3 * p->replay_s / TIMED;
    char why[160];
    if (mode() == MODE_ON || replay_ms < eager_ms) {
        p->state = KEPT;
        usi_log(USI_LOG_INFO, "graph replay (%d nodes, %s): a recorded pass takes %.3f ms, node by node %.3f ms: "
                "replaying it", (int)g->n_nodes, pass_name[bwd], replay_ms, eager_ms);
    } else {
        snprintf(why, sizeof why, "a recorded pass takes %.3f ms, node by node %.3f ms", replay_ms, eager_ms);
        give_up(g, bwd, why);
    }
    return NULL;
}

usi_error *usi_replay_forward(usi_graph *g) { return replay_pass(g, 0); }
usi_error *usi_replay_backward(usi_graph *g) { return replay_pass(g, 1); }

int32_t usi_graph_replay_settled(usi_graph *g)
{
    if (!recordable(g)) return 1;
    int bwd_done = !g->training || !g->loss || g->replay->bwd.state != TRYING;
    return g->replay->fwd.state != TRYING && bwd_done;
}
