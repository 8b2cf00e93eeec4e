/* The gradient-ready hook and the bucketed all-reduce.
 *
 * Hook: every time backward reports "final from offset F", the gradient
 * block above F already holds its final value (checked against the block
 * after backward), the offset only goes down and ends at 0, and it is
 * reported early (before backward ends) for a multi-layer net with a weight
 * used twice. Run alone or under `mpirun -np N`.
 *
 * Reducer (under mpirun): each rank trains on its own input; after the
 * reduction every rank holds the sum of all ranks' gradients, computed here
 * for comparison by running every rank's input locally. With 2 ranks the
 * float sum a+b has one rounding either way, so the tolerance is 0; with
 * more, MPI's summation order differs from ours: 1e-6 of the largest value.
 * Cases: overlap on and off, many small buckets and one large, device cpu
 * (MPI in place) and cpu-guarded (through host copies), and a rank that
 * skips its batch (contributes zeros). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dist/dist.h"
#include "dist/reducer.h"
#include "graph/graph.h"
#include "plugin/host.h"
#include "util/error.h"

enum { B = 6, IN = 12, HID = 20, OUT = 5 };

#define MUST(x)                                                                 \
    do {                                                                        \
        usi_error *e_ = (x);                                                    \
        if (e_) {                                                               \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, usi_error_message(e_)); \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

typedef struct net {
    usi_graph *g;
    usi_tensor *x, *y;
    usi_graph_blocks b;
} net;

static usi_tensor *dense(usi_graph *g, const char *name, usi_tensor *x, int64_t out, usi_tensor **w_out)
{
    const usi_graph_api *A = usi_graph_api_get();
    int64_t ws[2] = {out, A->dim(x, -1)}, bs[1] = {out};
    usi_init u = usi_init_uniform(-0.3, 0.3);
    A->push_scope(g, name);
    usi_tensor *w = w_out && *w_out ? *w_out : A->param(g, "weight", 2, ws, &u);
    usi_tensor *b = A->param(g, "bias", 1, bs, &u);
    A->pop_scope(g);
    if (w_out) *w_out = w;
    return A->linear(g, x, w, b);
}

/* fc0 -> relu -> fc1 (shared weight) -> tanh -> fc2 (same weight) -> relu -> head */
static net build(usi_device *dev)
{
    const usi_graph_api *A = usi_graph_api_get();
    net n = {0};
    n.g = usi_graph_new(dev, 1, 99);
    int64_t xs[2] = {B, IN}, ys[2] = {B, OUT};
    n.x = usi_graph_input(n.g, "x", USI_DTYPE_F32, 2, xs);
    n.y = usi_graph_input(n.g, "y", USI_DTYPE_F32, 2, ys);
    usi_tensor *shared = NULL;
    usi_tensor *h = A->activation(n.g, dense(n.g, "fc0", n.x, HID, NULL), USI_ACT_RELU, 0);
    h = A->activation(n.g, dense(n.g, "fc1", h, HID, &shared), USI_ACT_TANH, 0);
    h = A->activation(n.g, dense(n.g, "fc2", h, HID, &shared), USI_ACT_RELU, 0);
    usi_tensor *loss = A->loss_soft_ce(n.g, dense(n.g, "head", h, OUT, NULL), n.y);
    MUST(usi_graph_error(n.g));
    MUST(usi_graph_set_loss(n.g, loss));
    MUST(usi_graph_compile(n.g));
    usi_graph_get_blocks(n.g, &n.b);
    return n;
}

static void fill_input(net *n, int rank)
{
    float x[B * IN], y[B * OUT] = {0};
    for (int i = 0; i < B * IN; i++) x[i] = (float)sin(0.37 * i + 1.3 * rank);
    for (int i = 0; i < B; i++) y[i * OUT + (i + rank) % OUT] = 1.0f;
    MUST(usi_graph_write(n->x, x));
    MUST(usi_graph_write(n->y, y));
}

/* ---- the hook ---- */

typedef struct snap {
    size_t from[256];
    float *grads[256];
    int n;
    usi_dbuf *block;
    size_t bytes;
} snap;

static void on_ready(void *ctx, size_t from)
{
    snap *s = ctx;
    if (s->n > 0 && s->from[s->n - 1] == from) return;
    if (s->n == 256) return;
    s->from[s->n] = from;
    s->grads[s->n] = malloc(s->bytes);
    MUST(usi_dbuf_read(s->block, 0, s->grads[s->n], s->bytes));
    s->n++;
}

static void test_hook(const char *device)
{
    usi_device *dev;
    MUST(usi_device_open(device, &dev));
    net n = build(dev);
    snap s = {.block = n.b.grads, .bytes = n.b.n_trainable * sizeof(float)};
    MUST(usi_graph_on_grad_ready(n.g, on_ready, &s));
    fill_input(&n, 0);
    MUST(usi_graph_forward(n.g));
    MUST(usi_graph_backward(n.g));
    float *final = malloc(s.bytes);
    MUST(usi_dbuf_read(n.b.grads, 0, final, s.bytes));
    int early = 0, bad = 0, up = 0;
    for (int i = 0; i < s.n; i++) {
        if (i && s.from[i] > s.from[i - 1]) up++;
        if (s.from[i] > 0 && s.from[i] < s.bytes) early++;
        size_t at = s.from[i] / sizeof(float);
        if (memcmp(s.grads[i] + at, final + at, s.bytes - s.from[i]) != 0) bad++;
        free(s.grads[i]);
    }
    CHECK(s.n > 0 && s.from[s.n - 1] == 0, "%s: the last report is %zu, not 0", device, s.n ? s.from[s.n - 1] : 1);
    CHECK(up == 0, "%s: the final offset went up %d times", device, up);
    CHECK(bad == 0, "%s: %d reports called gradients final that changed later", device, bad);
    CHECK(early >= 3, "%s: only %d reports before backward ended", device, early);
    /* Removing the hook stops the reports. */
    int before = s.n;
    s.n = 0;
    MUST(usi_graph_on_grad_ready(n.g, NULL, NULL));
    MUST(usi_graph_backward(n.g));
    CHECK(s.n == 0, "%s: %d reports after the hook was removed (had %d)", device, s.n, before);
    free(final);
    usi_graph_free(n.g);
}

/* ---- the reducer ---- */

static void local_grads(net *n, int rank, float *out)
{
    usi_graph_zero_grad(n->g);
    fill_input(n, rank);
    MUST(usi_graph_forward(n->g));
    MUST(usi_graph_backward(n->g));
    MUST(usi_dbuf_read(n->b.grads, 0, out, n->b.n_trainable * sizeof(float)));
}

static void test_reducer(const char *device, int overlap, size_t bucket_bytes, int skip_rank)
{
    int rank = usi_dist_rank(), world = usi_dist_world();
    usi_device *dev;
    MUST(usi_device_open(device, &dev));
    net n = build(dev);
    size_t count = n.b.n_trainable, bytes = count * sizeof(float);
    float *want = calloc(count, sizeof(float)), *one = malloc(bytes), *got = malloc(bytes);
    for (int q = 0; q < world; q++) {
        if (q == skip_rank) continue;
        local_grads(&n, q, one);
        for (size_t i = 0; i < count; i++) want[i] += one[i];
    }
    usi_reducer_opts o = {bucket_bytes, overlap, "mpi"};
    usi_reducer *r;
    MUST(usi_reducer_new(n.g, &o, &r));
    for (int step = 0; step < 2; step++) {
        usi_graph_zero_grad(n.g);
        if (rank != skip_rank) {
            fill_input(&n, rank);
            MUST(usi_graph_forward(n.g));
            MUST(usi_graph_backward(n.g));
        }
        MUST(usi_reducer_finish(r, n.b.grads, count));
        MUST(usi_dbuf_read(n.b.grads, 0, got, bytes));
        double worst = 0, top = 0;
        for (size_t i = 0; i < count; i++) {
            worst = fmax(worst, fabs((double)got[i] - want[i]));
            top = fmax(top, fabs((double)want[i]));
        }
        double tol = world == 2 ? 0 : 1e-6 * top;
        CHECK(worst <= tol, "%s overlap %d buckets of %zu B skip %d: rank %d differs by %g (tolerance %g)", device,
              overlap, bucket_bytes, skip_rank, rank, worst, tol);
    }
    usi_reducer_stats st;
    usi_reducer_get_stats(r, &st);
    int want_early = overlap && rank != skip_rank && st.buckets > 1;
    CHECK(!want_early || st.early > 0, "%s: %d buckets, none started during backward", device, st.buckets);
    CHECK(overlap || st.early == 0, "%s: buckets started during backward without overlap", device);
    CHECK(bucket_bytes > bytes || st.buckets > 1, "%s: %zu-byte buckets over %zu bytes make %d bucket(s)", device,
          bucket_bytes, bytes, st.buckets);
    usi_reducer_free(r);
    free(want);
    free(one);
    free(got);
    usi_graph_free(n.g);
}

int main(void)
{
    usi_graph_api_get();
    MUST(usi_dist_init());
    test_hook("cpu");
    test_hook("cpu-guarded");
    if (usi_dist_world() > 1) {
        static const char *const devices[] = {"cpu", "cpu-guarded"};
        for (int d = 0; d < 2; d++)
            for (int overlap = 0; overlap < 2; overlap++) {
                test_reducer(devices[d], overlap, 256, -1);
                test_reducer(devices[d], overlap, (size_t)1 << 20, -1);
            }
        test_reducer("cpu", 1, 512, 1);
        test_reducer("cpu-guarded", 1, 512, 0);
    } else {
        printf("one process: the reducer cases need `mpirun -np 2` (the test suite runs them so)\n");
    }
    int rc = check_status("test_dist_reduce");
    /* Every rank's verdict decides: a failure anywhere fails the test. */
    int64_t bad = rc;
    MUST(usi_dist_sum_i64(&bad, 1));
    usi_dist_finalize();
    return bad ? 1 : 0;
}
