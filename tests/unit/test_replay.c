/* Graph replay (core/graph/replay.c) on devices whose recordings we
 * control: the cpu-guarded backend's table with record/replay replaced.
 * A faithful recording is kept (and replayed); one whose replay does
 * nothing, or fails, is caught by the check and the graph runs node by node;
 * every pass's results are right either way; a training graph's forward
 * and backward are recorded alike. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/device_internal.h"
#include "check.h"
#include "device.h"
#include "plugin/host.h"

typedef struct fake_rec {
    usi_error *(*run)(void *ctx);
    void *ctx;
} fake_rec;

enum { FAITHFUL, NOTHING, FAILS, FIRST_ROW_NAN };
static usi_tensor *g_y; /* the graph's output */
static int behaviour, records, replays;

static usi_error *f_record(usi_device *d, usi_error *(*run)(void *ctx), void *ctx, void **rec)
{
    (void)d;
    fake_rec *r = malloc(sizeof *r);
    r->run = run;
    r->ctx = ctx;
    *rec = r;
    records++;
    return NULL;
}

static usi_error *f_replay(usi_device *d, void *rec)
{
    (void)d;
    replays++;
    fake_rec *r = rec;
    if (behaviour == FAILS) return usi_error_new(USI_ERR_INTERNAL, "replay failed on purpose");
    if (behaviour == NOTHING) return NULL;
    usi_error *e = r->run(r->ctx);
    if (!e && behaviour == FIRST_ROW_NAN) { /* the rest of the output right */
        static const float nan3[3] = {NAN, NAN, NAN};
        e = usi_graph_write_part(g_y, nan3, sizeof nan3);
    }
    return e;
}

static void f_rec_free(usi_device *d, void *rec)
{
    (void)d;
    free(rec);
}

/* y = x W^T + b on dev; 12 passes, with different inputs or (vary 0) one
 * input throughout, each checked against the same arithmetic on the host. */
static void run_passes(usi_device *dev, int training, int vary, int *wrong)
{
    const usi_graph_api *G = usi_graph_api_get();
    usi_graph *g = usi_graph_new(dev, training, 1);
    int64_t in_shape[2] = {2, 4}, w[2] = {3, 4}, b[1] = {3};
    usi_init init = usi_init_normal(0, 1);
    usi_tensor *x = usi_graph_input(g, "x", USI_DTYPE_F32, 2, in_shape);
    usi_tensor *wt = G->param(g, "fc.weight", 2, w, &init), *bt = G->param(g, "fc.bias", 1, b, &init);
    usi_tensor *y = G->linear(g, x, wt, bt);
    usi_graph_mark_output(y);
    g_y = y;
    static const int32_t axes[2] = {0, 1};
    if (training) CHECK_OK(usi_graph_set_loss(g, G->reduce(g, USI_REDUCE_MEAN, y, 2, axes, 0)));
    CHECK_OK(usi_graph_compile(g));
    float wv[12], bv[3];
    CHECK_OK(usi_graph_read(wt, wv));
    CHECK_OK(usi_graph_read(bt, bv));
    *wrong = 0;
    for (int pass = 0; pass < 12; pass++) {
        float xv[8], yv[6];
        for (int i = 0; i < 8; i++) xv[i] = (float)(i - 3) * 0.25f + (float)(vary ? pass : 1);
        CHECK_OK(usi_graph_write(x, xv));
        CHECK_OK(usi_graph_forward(g));
        CHECK_OK(usi_graph_read(y, yv));
        for (int r = 0; r < 2; r++)
            for (int o = 0; o < 3; o++) {
                double want = bv[o];
                for (int k = 0; k < 4; k++) want += (double)xv[r * 4 + k] * wv[o * 4 + k];
                if (fabs(want - yv[r * 3 + o]) > 1e-4 * (1 + fabs(want))) ++*wrong;
            }
        if (!training) continue;
        /* loss = mean of y over 6 values: dW[o][k] = sum_r x[r][k] / 6,
         * db[o] = 2 / 6; gradients from zero each pass */
        float gw[12], gb[3];
        CHECK_OK(usi_graph_backward(g));
        CHECK_OK(usi_graph_read_grad(wt, gw));
        CHECK_OK(usi_graph_read_grad(bt, gb));
        for (int o = 0; o < 3; o++) {
            if (fabs(gb[o] - 2.0 / 6.0) > 1e-6) ++*wrong;
            for (int k = 0; k < 4; k++)
                if (fabs(gw[o * 4 + k] - ((double)xv[k] + xv[4 + k]) / 6.0) > 1e-5 * (1 + fabs(gw[o * 4 + k]))) ++*wrong;
        }
        usi_graph_zero_grad(g);
    }
    usi_graph_free(g);
}

/* The passes with recordings that behave as `kind`: no value or gradient
 * wrong, and the recordings and replays counted. */
static void expect(usi_device *d, int kind, int training, int vary, int want_records, int want_replays,
                   const char *what)
{
    int wrong;
    behaviour = kind;
    records = replays = 0;
    run_passes(d, training, vary, &wrong);
    CHECK(wrong == 0 && records == want_records && replays == want_replays, "%s: %d wrong, %d records, %d replays",
          what, wrong, records, replays);
}

int main(void)
{
    usi_device *guarded;
    CHECK_OK(usi_device_open("cpu-guarded", &guarded));
    static usi_backend be;
    be = *guarded->be;
    be.record = f_record;
    be.replay = f_replay;
    be.rec_free = f_rec_free;
    usi_device fake = {.name = "fake", .be = &be};
    setenv("USI_GRAPH_REPLAY", "on", 1);

    /* recorded at pass 6, replayed for the check and every pass after */
    expect(&fake, FAITHFUL, 0, 1, 1, 1 + 6, "faithful");
    /* one input throughout: the outputs before the checked replay already
     * hold its right values, so the check must not read those */
    expect(&fake, NOTHING, 0, 0, 1, 1, "a replay that writes nothing (the check must end replaying)");
    expect(&fake, NOTHING, 0, 1, 1, 1, "a replay that writes nothing, inputs varying");
    /* a replay whose first row is NaN and the rest right */
    expect(&fake, FIRST_ROW_NAN, 0, 1, 1, 1, "a replay with one row NaN (the check must end replaying)");
    expect(&fake, FAILS, 0, 1, 1, 1, "a failing replay");
    /* a training graph: forward and backward recorded, the check's replay
     * of backward put back (gradients accumulate) */
    expect(&fake, FAITHFUL, 1, 1, 2, 2 * (1 + 6), "training");
    expect(&fake, NOTHING, 1, 0, 2, 2, "training, replays that write nothing");

    setenv("USI_GRAPH_REPLAY", "off", 1);
    expect(&fake, FAITHFUL, 0, 1, 0, 0, "USI_GRAPH_REPLAY=off");
    return check_status("replay");
}
