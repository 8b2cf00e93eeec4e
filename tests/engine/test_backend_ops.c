/* The op-test driver: every case of op_cases.c on every device this build
 * and machine can open (cpu, cpu-guarded, cuda). On each device a case's
 * forward is checked against its float64 reference and its backward against
 * finite differences; on every device but cpu, forward and input gradients
 * are also checked against the cpu device's (the reference backend) for the
 * same inputs. A case whose op a device's supports() refuses is skipped
 * there, and the driver fails when any op has no case at all.
 *
 *     test_backend_ops [substring]    only the cases whose name has it
 *                                     (the op coverage check is then off)
 * USI_TEST_DEVICE is not read: the driver always runs every device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "graph/build_common.h"
#include "op_case.h"
#include "util/error.h"

/* fp32 kernels: against float64 within 2e-4, finite differences within
 * 1.5e-2 (float objective, h = 1e-3), and within 1e-5 of the cpu device
 * (another summation order, no more). A bf16 device will get ~1e-2 for
 * ref and cmp. */
static const device_tol fp32_tol = {.ref = 2e-4, .fd = 1.5e-2, .cmp = 1e-5};
/* Activations kept as bf16 (8 significant bits, 2^-9 relative per
 * rounding, a few roundings deep): against cpu's fp32. */
static const double bf16_tol = 3e-2;

#define MAX_DEVICES 4
_Static_assert(USI_OP_COUNT <= 64, "ops_seen is a 64-bit mask");

typedef struct device_run {
    const char *name;
    usi_device *dev;       /* NULL: not available here */
    device_tol tol;
    int passed, failed, skipped;
    double seconds;
} device_run;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Opens name; NULL with the reason printed when it can't be. */
static usi_device *open_device(const char *name)
{
    usi_device *d = NULL;
    usi_error *e = usi_device_open(name, &d);
    if (e) {
        printf("%s: not available (%s)\n", name, usi_error_message(e));
        usi_error_free(e);
        return NULL;
    }
    return d;
}

/* A case on each device in turn, cpu first: its results are what the others
 * are compared with. Prints one line for a case that failed nowhere (skips
 * have their own lines). */
static void run_case_everywhere(const op_case *c, device_run *devs, int n_devs,
                                uint64_t *ops_seen)
{
    case_result cpu = {0};
    int failed = 0;
    for (int d = 0; d < n_devs; d++) {
        device_run *r = &devs[d];
        if (!r->dev) continue;
        double t0 = now();
        int st = run_case_on(c, r->dev, &r->tol, d ? (cpu.out ? &cpu : NULL) : NULL,
                             d ? NULL : &cpu, ops_seen);
        r->seconds += now() - t0;
        if (d && st != CASE_SKIP && !cpu.out) {
            printf("FAIL [%s] %s: no cpu result to compare with\n", r->name, c->name);
            st = CASE_FAIL;
        }
        r->passed += st == CASE_PASS;
        r->failed += st == CASE_FAIL;
        r->skipped += st == CASE_SKIP;
        failed |= st == CASE_FAIL;
    }
    if (!failed) printf("ok   %s\n", c->name);
    case_result_free(&cpu);
}

/* Every op but the leaf kinds must be recorded by some case. */
static int check_coverage(uint64_t ops_seen)
{
    int missing = 0, ops = 0;
    for (int32_t op = 0; op < USI_OP_COUNT; op++) {
        if (op == USI_OP_INPUT || op == USI_OP_PARAM || op == USI_OP_BUFFER || op == USI_OP_CONSTANT)
            continue;
        ops++;
        if (ops_seen & (1ull << op)) continue;
        printf("FAIL op %s (%d) has no case\n", usi_op_name(op), op);
        missing++;
    }
    printf("op coverage: %d of %d ops have a case\n", ops - missing, ops);
    return missing;
}

/* The skip path itself: a device whose backend refuses softmax must report
 * the softmax case as skipped and still run the relu case. */
static int32_t no_softmax(int32_t op) { return op != USI_OP_SOFTMAX && usi_cpu_backend()->supports(op); }

static int check_refusal_skips(void)
{
    usi_backend be = *usi_cpu_backend();
    be.supports = no_softmax;
    usi_device refusing = {.name = "cpu-without-softmax", .be = &be};
    const op_case *softmax = NULL, *relu = NULL;
    for (int32_t i = 0; i < n_op_cases; i++) {
        if (!strcmp(op_cases[i].name, "softmax [3,7]")) softmax = &op_cases[i];
        if (!strcmp(op_cases[i].name, "relu")) relu = &op_cases[i];
    }
    uint64_t seen = 0;
    int s1 = softmax ? run_case_on(softmax, &refusing, &fp32_tol, NULL, NULL, &seen) : -1;
    int s2 = relu ? run_case_on(relu, &refusing, &fp32_tol, NULL, NULL, &seen) : -1;
    int ok = s1 == CASE_SKIP && s2 == CASE_PASS;
    printf("%s a device refusing softmax skips its case and runs the others\n",
           ok ? "ok  " : "FAIL");
    return !ok;
}

/* One pass of every case with values stored otherwise on dev against cpu
 * in fp32 NCHW (run_case_stored), its line printed under label. Returns
 * the failures; *cl_cases and *ran count what ran. */
static int run_stored_pass(const char *name, usi_device *dev, const char *label, double tol, const char *filter,
                           int *cl_cases, int *ran)
{
    int passed = 0, failed = 0, skipped = 0;
    double t0 = now();
    *cl_cases = *ran = 0;
    for (int32_t i = 0; i < n_op_cases; i++) {
        if (filter && !strstr(op_cases[i].name, filter)) continue;
        int st = run_case_stored(&op_cases[i], dev, tol, cl_cases);
        ++*ran;
        passed += st == CASE_PASS;
        failed += st == CASE_FAIL;
        skipped += st == CASE_SKIP;
    }
    printf("  %-12s with activations %s: %d passed, %d failed, %d skipped, %d with channels-last values (%.1f s)\n",
           name, label, passed, failed, skipped, *cl_cases, now() - t0);
    return failed;
}

/* Activations kept as bf16: each device with bf16 storage (a copy of it
 * set to precision "mixed") against cpu in fp32, every case; where the
 * device then prefers channels-last (CUDA) its kernels read and write that
 * too. Activations kept channels-last in fp32: cpu-guarded with
 * USI_GUARDED_NHWC=1 runs binary ops and reductions on them in memory order
 * (the GPU's plans) and every other kernel on NCHW copies, so it must give
 * cpu's numbers to fp32 rounding (a sum over broadcast dims runs in another
 * order), in enough cases to mean something. Returns the failures. */
static int run_stored_passes(const device_run *devs, int n_devs, const char *filter)
{
    int fails = 0, cl = 0, ran = 0;
    for (int d = 1; d < n_devs; d++) {
        if (!devs[d].dev || !devs[d].dev->be->bf16_storage) continue;
        usi_device mixed = *devs[d].dev;
        mixed.mixed = 1;
        fails += run_stored_pass(devs[d].name, &mixed, "in bf16", bf16_tol, filter, &cl, &ran);
    }
    setenv("USI_GUARDED_NHWC", "1", 1);
    for (int d = 1; d < n_devs; d++) {
        usi_device *dev = devs[d].dev;
        if (!dev || !dev->be->prefers_cl || !dev->be->prefers_cl(dev)) continue;
        fails += run_stored_pass(devs[d].name, dev, "channels-last", 1e-5, filter, &cl, &ran);
        if (!filter && cl < ran / 4) {
            printf("FAIL only %d of %d cases kept values channels-last\n", cl, ran);
            fails++;
        }
    }
    unsetenv("USI_GUARDED_NHWC");
    return fails;
}

int main(int argc, char **argv)
{
    /* Lines in order with the engine's warnings on stderr. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *filter = argc > 1 ? argv[1] : NULL;
    static const char *const names[] = {"cpu", "cpu-guarded", "cuda"};
    device_run devs[MAX_DEVICES];
    int n_devs = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        devs[n_devs++] = (device_run){.name = names[i], .dev = open_device(names[i]), .tol = fp32_tol};
    if (!devs[0].dev) return 1;

    uint64_t ops_seen = 0;
    int n_cases = 0;
    double t0 = now();
    for (int32_t i = 0; i < n_op_cases; i++) {
        if (filter && !strstr(op_cases[i].name, filter)) continue;
        n_cases++;
        run_case_everywhere(&op_cases[i], devs, n_devs, &ops_seen);
    }

    int fails = check_refusal_skips();
    fails += run_stored_passes(devs, n_devs, filter);
    printf("\n%d cases x %d devices in %.1f s\n", n_cases, n_devs, now() - t0);
    for (int d = 0; d < n_devs; d++) {
        device_run *r = &devs[d];
        fails += r->failed;
        if (!r->dev) {
            printf("  %-12s not available: %d cases skipped\n", r->name, n_cases);
            continue;
        }
        printf("  %-12s %d passed, %d failed, %d skipped (%.1f s)\n", r->name, r->passed,
               r->failed, r->skipped, r->seconds);
    }
    if (filter) printf("op coverage: not checked (cases filtered by '%s')\n", filter);
    else fails += check_coverage(ops_seen);
    printf("%s\n", fails ? "FAILED" : "all checks passed");
    return fails ? 1 : 0;
}
