/* Batch norm with statistics over ranks (dist.sync_bn) against a float64
 * reference over the concatenated batch.
 *
 * Each rank holds B samples of a global batch of world x B; its graph is
 * x -> batch_norm -> y with a seed gradient dy for y (the rank's slice of
 * one global dy), so by linearity every rank's dx is the global reference's
 * dx on its samples, and the ranks' dw and db add up to the reference's.
 * Checked after two training passes: y, dx, the sums of dw and db, the
 * running statistics (unbiased with the global count, as PyTorch's
 * SyncBatchNorm) and num_batches_tracked; and an idle rank (no batch of its
 * own), which leaves the statistics and gradients of the others' batch
 * alone. Channel means up to 300 standard deviations off zero check that
 * the variance does not come from float sums of squares.
 *
 * Run alone, ranks are threads of this process summing through a
 * collective of their own (1, 2 and 3 ranks; the device is
 * $USI_TEST_DEVICE or cpu); under `mpirun -np N` each process is a rank
 * and sums through core/dist's MPI collective.
 *
 * Tolerances: y, dx, and the summed dw and db within the larger of twice
 * the error of plain batch norm over the same batch in one graph (float
 * rounding of the saved mean and 1/std, which both keep: 6e-4 absolute in
 * dx here) and 2e-5 of the values' scale; observed, the two errors agree to
 * 2 digits. Running statistics within 1e-5 relative (observed 7e-8);
 * unbiasing with a rank's own count instead of the global one is off by
 * 3e-3, and dx from this rank's sums alone fails dx and dw.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/collective.h"
#include "check.h"
#include "device.h"
#include "dist/dist.h"
#include "plugin/host.h"

enum { B = 3, C = 5, H = 3, W = 7, I = H * W, MAXR = 3 };
#define EPS 1e-5
#define MOMENTUM 0.1

/* channel means and spreads: the means dwarf the spreads */
static const double mu[C] = {0.0, 5.0, -20.0, 300.0, 1.5};
static const double sd[C] = {1.0, 0.5, 3.0, 1.0, 0.01};

#define MUST(x)                                                                 \
    do {                                                                        \
        usi_error *e_ = (x);                                                    \
        if (e_) {                                                               \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, usi_error_message(e_)); \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

static float x_at(int pass, int64_t n, int c, int i)
{
    return (float)(mu[c] + sd[c] * sin(0.7 * (double)n + 1.3 * c + 0.11 * i * (double)(n + 1) + pass));
}

static float dy_at(int pass, int64_t n, int c, int i)
{
    return (float)cos(0.3 * (double)n - 0.9 * c + 0.17 * i + 2.0 * pass);
}

/* ---- the float64 reference over ranks [0, world) except idle ---- */

typedef struct ref {
    int64_t N;                          /* samples in the statistics */
    double *y, *dx;                     /* [world * B, C, I]         */
    double dw[C], db[C], rm[C], rv[C];
} ref;

static void reference(ref *r, int world, int idle)
{
    int64_t G = (int64_t)world * B;
    r->y = calloc((size_t)(G * C * I), sizeof(double));
    r->dx = calloc((size_t)(G * C * I), sizeof(double));
    double wv[C], bv[C];
    for (int c = 0; c < C; c++) {
        r->rm[c] = 0.25;
        r->rv[c] = 2.0;
        wv[c] = 0.75 + 0.1 * c;
        bv[c] = -0.2 + 0.05 * c;
    }
    for (int pass = 0; pass < 2; pass++)
        for (int c = 0; c < C; c++) {
            double s = 0, q = 0, M = 0;
            for (int64_t n = 0; n < G; n++) {
                if (n / B == idle) continue;
                for (int i = 0; i < I; i++) s += x_at(pass, n, c, i);
                M += I;
            }
            double m = s / M;
            for (int64_t n = 0; n < G; n++) {
                if (n / B == idle) continue;
                for (int i = 0; i < I; i++) q += (x_at(pass, n, c, i) - m) * (x_at(pass, n, c, i) - m);
            }
            double v = q / M, is = 1.0 / sqrt(v + EPS), sdy = 0, sdyxh = 0;
            r->rm[c] = (1 - MOMENTUM) * r->rm[c] + MOMENTUM * m;
            r->rv[c] = (1 - MOMENTUM) * r->rv[c] + MOMENTUM * v * M / (M - 1);
            for (int64_t n = 0; n < G; n++) {
                if (n / B == idle) continue;
                for (int i = 0; i < I; i++) {
                    double xh = (x_at(pass, n, c, i) - m) * is, g = dy_at(pass, n, c, i);
                    r->y[(n * C + c) * I + i] = wv[c] * xh + bv[c];
                    sdy += g;
                    sdyxh += g * xh;
                }
            }
            r->dw[c] = sdyxh;
            r->db[c] = sdy;
            for (int64_t n = 0; n < G; n++) {
                if (n / B == idle) continue;
                for (int i = 0; i < I; i++) {
                    double xh = (x_at(pass, n, c, i) - m) * is, g = dy_at(pass, n, c, i);
                    r->dx[(n * C + c) * I + i] = wv[c] * is * (g - sdy / M - xh * sdyxh / M);
                }
            }
        }
    r->N = ((int64_t)world - (idle >= 0 && idle < world)) * B * I;
}

/* ---- one rank ---- */

typedef struct rank_run {
    int rank, nb;                       /* samples rank * B .. + nb */
    usi_graph *g;
    usi_tensor *x, *y, *w, *b, *rm, *rv, *nbt;
    usi_collective *coll;
    int idle;
    float seed[MAXR * B * C * I];
    /* results of the last pass */
    float y_out[MAXR * B * C * I], dx[MAXR * B * C * I], dw[C], db[C], rmv[C], rvv[C];
    int64_t batches;
    usi_error *err;
} rank_run;

static void build(rank_run *k, usi_device *dev)
{
    const usi_graph_api *A = usi_graph_api_get();
    k->g = usi_graph_new(dev, 1, 7);
    int64_t xs[4] = {k->nb, C, H, W}, cs[1] = {C};
    k->x = usi_graph_input(k->g, "x", USI_DTYPE_F32, 4, xs);
    usi_graph_set_requires_grad(k->x, 1);
    usi_init z = usi_init_zeros(), rm0 = usi_init_const(0.25), rv0 = usi_init_const(2.0);
    A->push_scope(k->g, "bn");
    k->w = A->param(k->g, "weight", 1, cs, &z);
    k->b = A->param(k->g, "bias", 1, cs, &z);
    k->rm = A->buffer(k->g, "running_mean", USI_DTYPE_F32, 1, cs, &rm0);
    k->rv = A->buffer(k->g, "running_var", USI_DTYPE_F32, 1, cs, &rv0);
    k->nbt = A->buffer(k->g, "num_batches_tracked", USI_DTYPE_I64, 0, NULL, &z);
    A->pop_scope(k->g);
    k->y = A->batch_norm(k->g, k->x, k->w, k->b, k->rm, k->rv, k->nbt, MOMENTUM, EPS);
    MUST(usi_graph_error(k->g));
    MUST(usi_graph_set_loss(k->g, k->y));
    usi_graph_set_loss_seed(k->g, k->seed);
    MUST(usi_graph_compile(k->g));
    float wv[C], bv[C];
    for (int c = 0; c < C; c++) {
        wv[c] = (float)(0.75 + 0.1 * c);
        bv[c] = (float)(-0.2 + 0.05 * c);
    }
    MUST(usi_graph_write(k->w, wv));
    MUST(usi_graph_write(k->b, bv));
    usi_graph_set_collective(k->g, k->coll);
}

static usi_error *passes(rank_run *k)
{
    float *x = malloc(sizeof(float) * (size_t)(k->nb * C * I));
    if (!x) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = NULL;
    for (int pass = 0; pass < 2 && !e; pass++) {
        for (int n = 0; n < k->nb; n++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < I; i++) {
                    int64_t gn = (int64_t)k->rank * B + n;
                    x[(n * C + c) * I + i] = x_at(pass, gn, c, i);
                    k->seed[(n * C + c) * I + i] = dy_at(pass, gn, c, i);
                }
        if (k->coll) k->coll->idle = k->idle;
        usi_graph_zero_grad(k->g);
        e = usi_graph_write(k->x, x);
        if (!e) e = usi_graph_forward(k->g);
        if (!e) e = usi_graph_backward(k->g);
    }
    if (!e) e = usi_graph_read(k->y, k->y_out);
    if (!e) e = usi_graph_read_grad(k->x, k->dx);
    if (!e) e = usi_graph_read_grad(k->w, k->dw);
    if (!e) e = usi_graph_read_grad(k->b, k->db);
    if (!e) e = usi_graph_read(k->rm, k->rmv);
    if (!e) e = usi_graph_read(k->rv, k->rvv);
    if (!e) e = usi_graph_read(k->nbt, &k->batches);
    free(x);
    return e;
}

static void *rank_thread(void *p)
{
    rank_run *k = p;
    k->err = passes(k);
    return NULL;
}

/* ---- ranks as threads summing through a collective of their own ---- */

typedef struct team {
    pthread_barrier_t bar;
    double *slot[MAXR];
    int world;
} team;

typedef struct tcoll {
    usi_collective pub;
    team *tm;
    int rank;
} tcoll;

/* Every rank adds the slots in rank order: the same sums on each. */
static usi_error *team_sum(usi_collective *c, double *v, int32_t n)
{
    tcoll *k = (tcoll *)c;
    team *tm = k->tm;
    double *acc = calloc((size_t)n, sizeof *acc);
    tm->slot[k->rank] = v;
    pthread_barrier_wait(&tm->bar);
    for (int r = 0; r < tm->world; r++)
        for (int32_t i = 0; i < n; i++) acc[i] += tm->slot[r][i];
    pthread_barrier_wait(&tm->bar);
    memcpy(v, acc, sizeof *acc * (size_t)n);
    free(acc);
    return NULL;
}

/* ---- checks ---- */

/* The largest differences from the reference: y and dx over the samples a
 * run holds, dw and db (summed over ranks by the caller), and the running
 * statistics relative. */
typedef struct errs {
    double y, dx, dw, db, rm, rv;
} errs;

static void value_errs(errs *e, const rank_run *k, const ref *r)
{
    size_t per = (size_t)k->nb * C * I, off = (size_t)k->rank * B * C * I;
    for (size_t i = 0; i < per && !k->idle; i++) {
        e->y = fmax(e->y, fabs(k->y_out[i] - r->y[off + i]));
        e->dx = fmax(e->dx, fabs(k->dx[i] - r->dx[off + i]));
    }
    for (int c = 0; c < C; c++) {
        e->rm = fmax(e->rm, fabs(k->rmv[c] - r->rm[c]) / fmax(fabs(r->rm[c]), 1.0));
        e->rv = fmax(e->rv, fabs(k->rvv[c] - r->rv[c]) / r->rv[c]);
    }
}

static void param_errs(errs *e, const double *dw, const double *db, const ref *r)
{
    for (int c = 0; c < C; c++) {
        e->dw = fmax(e->dw, fabs(dw[c] - r->dw[c]));
        e->db = fmax(e->db, fabs(db[c] - r->db[c]));
    }
}

static double max_abs(const double *v, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
    return m;
}

/* The reference's batch as one process sees it: ranks before the idle one
 * (the last), plain batch norm, no collective. */
static errs plain_errs(usi_device *dev, int world, int idle, const ref *r)
{
    rank_run *k = calloc(1, sizeof *k);
    k->nb = (idle >= 0 ? idle : world) * B;
    build(k, dev);
    MUST(passes(k));
    errs e = {0};
    value_errs(&e, k, r);
    double dw[C], db[C];
    for (int c = 0; c < C; c++) {
        dw[c] = k->dw[c];
        db[c] = k->db[c];
    }
    param_errs(&e, dw, db, r);
    CHECK(k->batches == 2, "plain: num_batches_tracked %lld", (long long)k->batches);
    usi_graph_free(k->g);
    free(k);
    return e;
}

/* Errors of the ranks over every rank against the larger of twice plain
 * batch norm's over the same batch (float rounding of the saved mean and
 * 1/std, which both keep) and 2e-5 of the values' scale; the running
 * statistics within 1e-5 relative. */
static void judge(const char *what, const errs *got, const errs *plain, const ref *r, int world, int print)
{
    size_t all = (size_t)world * B * C * I;
    struct {
        const char *name;
        double got, plain, scale;
    } q[4] = {{"y", got->y, plain->y, max_abs(r->y, all)},
              {"dx", got->dx, plain->dx, max_abs(r->dx, all)},
              {"dw", got->dw, plain->dw, fmax(max_abs(r->dw, C), 1.0)},
              {"db", got->db, plain->db, fmax(max_abs(r->db, C), 1.0)}};
    for (int i = 0; i < 4; i++) {
        double tol = fmax(2 * q[i].plain, 2e-5 * q[i].scale);
        CHECK(q[i].got <= tol, "%s: %s off by %g, plain batch norm by %g (tolerance %g)", what, q[i].name,
              q[i].got, q[i].plain, tol);
    }
    CHECK(got->rm <= 1e-5, "%s: running_mean off by %g relative", what, got->rm);
    CHECK(got->rv <= 1e-5, "%s: running_var off by %g relative", what, got->rv);
    if (print)
        printf("%s: %lld values per channel; off the float64 reference by y %.2g dx %.2g dw %.2g db %.2g "
           "running stats %.2g %.2g (plain batch norm: y %.2g dx %.2g dw %.2g db %.2g)\n",
           what, (long long)r->N, got->y, got->dx, got->dw, got->db, got->rm, got->rv, plain->y, plain->dx,
           plain->dw, plain->db);
}

static void threads_case(usi_device *dev, int world, int idle)
{
    char what[96];
    snprintf(what, sizeof what, "%s, %d thread rank(s)%s", usi_device_name(dev), world, idle >= 0 ? ", one idle" : "");
    team tm = {.world = world};
    pthread_barrier_init(&tm.bar, NULL, (unsigned)world);
    tcoll tc[MAXR];
    rank_run *k = calloc((size_t)world, sizeof *k);
    for (int r = 0; r < world; r++) {
        tc[r] = (tcoll){{team_sum, NULL, 0, world, NULL}, &tm, r};
        k[r].rank = r;
        k[r].nb = B;
        k[r].coll = &tc[r].pub;
        k[r].idle = r == idle;
        build(&k[r], dev);
    }
    pthread_t th[MAXR];
    for (int r = 0; r < world; r++) pthread_create(&th[r], NULL, rank_thread, &k[r]);
    for (int r = 0; r < world; r++) pthread_join(th[r], NULL);
    ref rf;
    reference(&rf, world, idle);
    errs e = {0};
    double dw[C] = {0}, db[C] = {0};
    for (int r = 0; r < world; r++) {
        CHECK(!k[r].err, "%s rank %d: %s", what, r, k[r].err ? usi_error_message(k[r].err) : "");
        usi_error_free(k[r].err);
        value_errs(&e, &k[r], &rf);
        CHECK(k[r].batches == 2, "%s rank %d: num_batches_tracked %lld after 2 passes", what, r,
              (long long)k[r].batches);
        for (int c = 0; c < C && r != idle; c++) {
            dw[c] += k[r].dw[c];
            db[c] += k[r].db[c];
        }
        usi_graph_free(k[r].g);
    }
    param_errs(&e, dw, db, &rf);
    errs p = plain_errs(dev, world, idle, &rf);
    judge(what, &e, &p, &rf, world, 1);
    free(rf.y);
    free(rf.dx);
    free(k);
    pthread_barrier_destroy(&tm.bar);
}

/* Each process a rank, through core/dist's MPI collective: each judges its
 * own samples (and the summed dw, db); rank 0 prints. */
static void mpi_case(usi_device *dev, int idle)
{
    int world = usi_dist_world(), rank = usi_dist_rank();
    char what[96];
    snprintf(what, sizeof what, "%s, %d MPI ranks%s", usi_device_name(dev), world, idle >= 0 ? ", one idle" : "");
    rank_run *k = calloc(1, sizeof *k);
    k->rank = rank;
    k->nb = B;
    k->idle = rank == idle;
    MUST(usi_dist_collective_new(dev, "mpi", &k->coll));
    build(k, dev);
    k->err = passes(k);
    CHECK(!k->err, "%s rank %d: %s", what, rank, k->err ? usi_error_message(k->err) : "");
    CHECK(k->batches == 2, "%s rank %d: num_batches_tracked %lld after 2 passes", what, rank, (long long)k->batches);
    ref rf;
    reference(&rf, world, idle);
    errs e = {0};
    value_errs(&e, k, &rf);
    double sums[2 * C];
    for (int c = 0; c < C; c++) {
        sums[c] = k->idle ? 0 : k->dw[c];
        sums[C + c] = k->idle ? 0 : k->db[c];
    }
    MUST(usi_dist_sum_f64(sums, 2 * C));
    param_errs(&e, sums, sums + C, &rf);
    errs p = plain_errs(dev, world, idle, &rf);
    judge(what, &e, &p, &rf, world, rank == 0);
    usi_error_free(k->err);
    usi_graph_free(k->g);
    usi_dist_collective_free(k->coll);
    free(rf.y);
    free(rf.dx);
    free(k);
}

int main(void)
{
    usi_graph_api_get();
    MUST(usi_dist_init());
    usi_device *dev = test_device();
    if (usi_dist_world() > 1) {
        mpi_case(dev, -1);
        mpi_case(dev, usi_dist_world() - 1);
    } else {
        for (int world = 1; world <= MAXR; world++) threads_case(dev, world, -1);
        threads_case(dev, 2, 1);
        threads_case(dev, 3, 2);
    }
    int rc = check_status("test_sync_bn");
    int64_t bad = rc;
    MUST(usi_dist_sum_i64(&bad, 1));
    usi_dist_finalize();
    return bad ? 1 : 0;
}
