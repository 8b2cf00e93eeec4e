/* Devices: names and refusals, device blocks (round trips, copies between
 * blocks and devices, ranges), and the guard of cpu-guarded: its memory
 * faults when host code touches it outside a backend call. */
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/device_internal.h"
#include "check.h"
#include "device.h"
#include "stage_check.h"

static void test_names(void)
{
    usi_device *d;
    usi_error *e = usi_device_open("tpu", &d);
    CHECK(e && strstr(usi_error_message(e), "unknown device 'tpu'; valid devices: cpu, cpu-guarded, cuda, cuda:N"),
          "unknown: %s", e ? usi_error_message(e) : "accepted");
    usi_error_free(e);
    CHECK(!usi_device_name_valid("cuda:") && !usi_device_name_valid("cuda:1x") && !usi_device_name_valid("CPU") &&
              usi_device_name_valid("cuda:3") && usi_device_name_valid("cuda"),
          "name syntax");
    CHECK(usi_device_available("cpu-guarded") && usi_device_available("cpu"), "availability");
    if (!usi_device_available("cuda")) { /* a build without the CUDA backend */
        e = usi_device_open("cuda:0", &d);
        CHECK(e && strstr(usi_error_message(e), "device 'cuda:0': this build of usi has no CUDA backend"),
              "cuda without the backend: %s", e ? usi_error_message(e) : "accepted");
        usi_error_free(e);
    }
    CHECK_OK(usi_device_open("cpu", &d));
    CHECK(d == usi_device_cpu() && !strcmp(usi_device_name(d), "cpu"), "cpu is one device");
}

static void test_blocks(const char *name)
{
    usi_device *d, *cpu = usi_device_cpu();
    CHECK_OK(usi_device_open(name, &d));
    usi_dbuf *a, *b, *h;
    CHECK_OK(usi_dbuf_new(d, 40, &a));
    CHECK_OK(usi_dbuf_new(d, 40, &b));
    CHECK_OK(usi_dbuf_new(cpu, 40, &h));
    float x[10], y[10] = {0};
    for (int i = 0; i < 10; i++) x[i] = (float)i + 0.5f;
    CHECK_OK(usi_dbuf_read(a, 0, y, sizeof y));
    CHECK(y[0] == 0 && y[9] == 0, "%s: new blocks are zero", name);
    CHECK_OK(usi_dbuf_write(a, 8, x, 16));
    CHECK_OK(usi_dbuf_copy(b, 0, a, 0, 40));
    CHECK_OK(usi_dbuf_copy(h, 0, b, 0, 40)); /* across devices, through the host */
    CHECK_OK(usi_dbuf_read(h, 0, y, sizeof y));
    CHECK(y[1] == 0 && y[2] == 0.5f && y[5] == 3.5f && y[6] == 0, "%s: write, copy, read: %g %g %g", name, y[2],
          y[5], y[6]);
    CHECK_OK(usi_dbuf_fill(b, 4, 0, 36));
    CHECK_OK(usi_dbuf_read(b, 0, y, sizeof y));
    CHECK(y[0] == 0 && y[2] == 0, "%s: fill", name);
    usi_error *e = usi_dbuf_write(a, 32, x, 16);
    CHECK(e && strstr(usi_error_message(e), "outside a block of 40"), "%s: a write past the end is refused: %s",
          name, e ? usi_error_message(e) : "accepted");
    usi_error_free(e);
    e = usi_dbuf_read(a, 41, y, 0);
    CHECK(e != NULL, "%s: an offset past the end is refused", name);
    usi_error_free(e);
    usi_dbuf_free(a);
    usi_dbuf_free(b);
    usi_dbuf_free(h);
}

/* A child process reads a cpu-guarded block's memory directly: it must die
 * of SIGSEGV, while the same memory works through device calls. */
static void test_guard(void)
{
    usi_device *d;
    CHECK_OK(usi_device_open("cpu-guarded", &d));
    usi_dbuf *a;
    CHECK_OK(usi_dbuf_new(d, 4096, &a));
    float v = 3;
    CHECK_OK(usi_dbuf_write(a, 0, &v, sizeof v));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would turn it into an abort */
        volatile float *p = usi_dbuf_addr(a, 0);
        _exit(*p == 3 ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "host access to guarded memory: status %d", status);
    float w = 0;
    CHECK_OK(usi_dbuf_read(a, 0, &w, sizeof w));
    CHECK(w == 3, "device calls still read it: %g", w);
    usi_dbuf_free(a);
}

/* PyTorch's F.interpolate (align_corners=False, no antialias) in float64,
 * one axis: the weight of source pixel i for output o. */
static double ref_weight(int interp, int o, int in, int out, int i)
{
    double scale = (double)in / out;
    if (interp == USI_INTERP_NEAREST) {
        int s = (int)floor(o * scale);
        return (s < in ? s : in - 1) == i;
    }
    double f = (o + 0.5) * scale - 0.5, w = 0;
    if (interp == USI_INTERP_BILINEAR) {
        if (f < 0) f = 0;
        int i0 = (int)f, i1 = i0 + 1 < in ? i0 + 1 : in - 1;
        double t = f - i0;
        return (i0 == i) * (1 - t) + (i1 == i) * t;
    }
    int i0 = (int)floor(f);
    for (int k = -1; k <= 2; k++) {
        double x = fabs(f - (i0 + k)), A = -0.75;
        double c = x <= 1 ? ((A + 2) * x - (A + 3)) * x * x + 1 : ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
        int idx = i0 + k < 0 ? 0 : i0 + k >= in ? in - 1 : i0 + k;
        if (idx == i) w += c;
    }
    return w;
}

/* The teacher's input conversion: x -> resize(a*x + b), per channel. */
static void test_convert(void)
{
    enum { N = 2, C = 3, H = 5, W = 7, OH = 8, OW = 3 };
    float src[N * C * H * W], dst[N * C * OH * OW], a[C] = {2, 0.5f, -1}, b[C] = {0.25f, 0, 1};
    for (int i = 0; i < N * C * H * W; i++) src[i] = (float)sin(i * 0.7) * 3;
    const char *names[3] = {"nearest", "bilinear", "bicubic"};
    for (int interp = USI_INTERP_NEAREST; interp <= USI_INTERP_BICUBIC; interp++) {
        usi_image_convert_host(dst, src, N, C, H, W, OH, OW, interp, a, b);
        double worst = 0;
        for (int p = 0; p < N * C; p++)
            for (int y = 0; y < OH; y++)
                for (int x = 0; x < OW; x++) {
                    double want = 0;
                    for (int i = 0; i < H; i++)
                        for (int j = 0; j < W; j++)
                            want += ref_weight(interp, y, H, OH, i) * ref_weight(interp, x, W, OW, j) *
                                    (a[p % C] * src[(p * H + i) * W + j] + b[p % C]);
                    worst = fmax(worst, fabs(dst[(p * OH + y) * OW + x] - want));
                }
        CHECK(worst < 1e-4, "convert %s: worst error %g", names[interp], worst);
    }
}

/* cpu writes its memory directly: no stages; cpu-guarded has them, as a
 * GPU does. */
static void test_stages(void)
{
    usi_device *d;
    CHECK(check_stage(usi_device_cpu()) == 0, "the cpu device made a stage");
    CHECK_OK(usi_device_open("cpu-guarded", &d));
    CHECK(check_stage(d) == 1, "cpu-guarded made no stage");
}

int main(void)
{
    test_names();
    test_stages();
    usi_device *guarded;
    CHECK_OK(usi_device_open("cpu-guarded", &guarded));
    check_u8_normalize(usi_device_cpu());
    check_u8_normalize(guarded);
    test_blocks("cpu");
    test_blocks("cpu-guarded");
    test_guard();
    test_convert();
    return check_status("devices");
}
