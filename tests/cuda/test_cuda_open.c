/* Opening the CUDA device: on a machine without a GPU, a one-line error that
 * says so (and no crash, however often it is asked); with one, a working
 * device whose memory round-trips, and one-line errors for a GPU it lacks and
 * for memory it cannot give. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cuda_test.h"
#include "device.h"
#include "stage_check.h"

static void check_one_line(const usi_error *e, const char *prefix)
{
    const char *m = usi_error_message(e);
    CHECK(!strchr(m, '\n'), "one line: %s", m);
    CHECK(!strncmp(m, prefix, strlen(prefix)), "starts with \"%s\": %s", prefix, m);
}

static void without_gpu(usi_error *e)
{
    printf("no GPU here: %s\n", usi_error_message(e));
    check_one_line(e, "device 'cuda': ");
    CHECK(cuda_absent(e), "names the missing GPU or driver: %s", usi_error_message(e));
    const char *m = usi_error_message(e);
    if (strstr(m, "no CUDA GPU found"))
        CHECK(strstr(m, "(cudaGetDeviceCount: "), "names the failed call: %s", m);
    /* asked again, and by another name: the same kind of answer */
    usi_device *d = NULL;
    usi_error *e2 = usi_device_open("cuda:3", &d);
    CHECK(e2 && !d, "cuda:3 fails too");
    if (e2) {
        check_one_line(e2, "device 'cuda:3': ");
        usi_error_free(e2);
    }
}

static void with_gpu(usi_device *d)
{
    printf("GPU: %s\n", usi_device_name(d));
    CHECK(!strcmp(usi_device_name(d), "cuda:0"), "name %s", usi_device_name(d));
    usi_device *again = NULL;
    CHECK_OK(usi_device_open("cuda:0", &again));
    CHECK(again == d, "one device per GPU");

    enum { N = 1000 };
    float host[N], back[N];
    for (int i = 0; i < N; i++) host[i] = (float)i * 0.5f - 7.0f;
    usi_dbuf *a = NULL, *b = NULL;
    CHECK_OK(usi_dbuf_new(d, sizeof host, &a));
    CHECK_OK(usi_dbuf_new(d, sizeof host, &b));
    if (!a || !b) return;
    CHECK_OK(usi_dbuf_read(a, 0, back, sizeof back));
    int zero = 1;
    for (int i = 0; i < N; i++) zero &= back[i] == 0.0f;
    CHECK(zero, "new memory reads as zeros");
    CHECK_OK(usi_dbuf_write(a, 0, host, sizeof host));
    CHECK_OK(usi_dbuf_copy(b, 4, a, 0, sizeof host - 4));
    CHECK_OK(usi_dbuf_fill(b, 0, 0, 4));
    CHECK_OK(usi_dbuf_read(b, 0, back, sizeof back));
    int same = back[0] == 0.0f;
    for (int i = 1; i < N; i++) same &= back[i] == host[i - 1];
    CHECK(same, "write, copy, fill and read round-trip");
    /* across devices, through the host */
    usi_dbuf *c = NULL;
    CHECK_OK(usi_dbuf_new(usi_device_cpu(), sizeof host, &c));
    CHECK_OK(usi_dbuf_copy(c, 0, a, 0, sizeof host));
    CHECK_OK(usi_dbuf_read(c, 0, back, sizeof back));
    CHECK(!memcmp(back, host, sizeof host), "cuda -> cpu copy");
    usi_dbuf_free(a);
    usi_dbuf_free(b);
    usi_dbuf_free(c);

    usi_dbuf *huge = NULL;
    usi_error *e = usi_dbuf_new(d, (size_t)1 << 50, &huge);
    CHECK(e && !huge, "a petabyte is refused");
    if (e) {
        printf("out of memory: %s\n", usi_error_message(e));
        check_one_line(e, "device cuda:0: out of memory for ");
        CHECK(strstr(usi_error_message(e), "MiB free"), "says what is free: %s", usi_error_message(e));
        usi_error_free(e);
    }
    usi_device *none = NULL;
    e = usi_device_open("cuda:1023", &none);
    CHECK(e && !none, "cuda:1023 does not exist");
    if (e) {
        check_one_line(e, "device 'cuda:1023': no GPU 1023");
        usi_error_free(e);
    }
    CHECK(check_stage(d) == 1, "no input stage on the GPU");
    check_u8_normalize(d);
    CHECK_OK(usi_device_synchronize(d));
}

int main(void)
{
    CHECK(usi_device_available("cuda") && usi_device_available("cuda:1"), "this build has the CUDA backend");
    usi_device *d = NULL;
    usi_error *e = usi_device_open("cuda", &d);
    if (e) {
        CHECK(!d, "no device with an error");
        without_gpu(e);
        usi_error_free(e);
    } else {
        with_gpu(d);
    }
    return check_status("test_cuda_open");
}
