/* The input path's device side, on any device (needs check.h and
 * device.h): host memory from usi_device_host_alloc, and a stage filled by
 * another thread, taken into blocks, refilled while a take may still be
 * queued (check_stage returns 0 when the device has no stages: writes go
 * direct); the device's normalisation of uint8 images. */
#ifndef USI_TESTS_STAGE_CHECK_H
#define USI_TESTS_STAGE_CHECK_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "data/loader.h"

enum { STAGE_N = 4096 };

typedef struct stage_put_job {
    usi_stage *s;
    int32_t slot;
    size_t off;
    const float *host;
    size_t bytes;
    usi_error *e;
} stage_put_job;

static void *stage_put_thread(void *arg)
{
    stage_put_job *j = arg;
    j->e = usi_stage_put(j->s, j->slot, j->off, j->host, j->bytes);
    return NULL;
}

/* A put from a thread of its own, as the loader's prefetcher does. */
static void stage_put_from_thread(usi_stage *s, int32_t slot, size_t off, const float *host, size_t bytes)
{
    stage_put_job j = {s, slot, off, host, bytes, NULL};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, stage_put_thread, &j) == 0, "thread");
    pthread_join(th, NULL);
    CHECK_OK(j.e);
}

static int check_stage(usi_device *d)
{
    const char *name = usi_device_name(d);
    size_t bytes = STAGE_N * sizeof(float);
    float *h0 = usi_device_host_alloc(d, bytes), *h1 = usi_device_host_alloc(d, bytes);
    CHECK(h0 && h1 && (uintptr_t)h0 % 64 == 0 && (uintptr_t)h1 % 64 == 0, "%s: host memory, 64-byte aligned", name);
    if (!h0 || !h1) return 0;
    for (int i = 0; i < STAGE_N; i++) {
        h0[i] = (float)i;
        h1[i] = -(float)i - 0.25f;
    }
    usi_stage *s = NULL;
    CHECK_OK(usi_stage_new(d, 2, bytes + 64, &s));
    if (!s) {
        usi_device_host_free(d, h0, bytes);
        usi_device_host_free(d, h1, bytes);
        return 0;
    }
    usi_dbuf *a = NULL, *b = NULL;
    CHECK_OK(usi_dbuf_new(d, bytes + 128, &a));
    CHECK_OK(usi_dbuf_new(d, bytes, &b));
    stage_put_from_thread(s, 0, 0, h0, bytes);
    stage_put_from_thread(s, 1, 64, h1, bytes);
    /* slot 1 into a at byte 128 (its first 128 bytes stay zero), slot 0 into b */
    CHECK_OK(usi_stage_take(s, 1, 64, a, 128, bytes));
    CHECK_OK(usi_stage_take(s, 0, 0, b, 0, bytes));
    /* refill slot 0 at once: the put waits for the queued take */
    float *old0 = malloc(bytes), *back = malloc(bytes + 128);
    memcpy(old0, h0, bytes);
    for (int i = 0; i < STAGE_N; i++) h0[i] = 1000.0f + (float)i;
    stage_put_from_thread(s, 0, 0, h0, bytes);
    CHECK_OK(usi_dbuf_read(a, 0, back, bytes + 128));
    int zero = 1;
    for (int i = 0; i < 32; i++) zero &= back[i] == 0.0f;
    CHECK(zero && !memcmp(back + 32, h1, bytes), "%s: slot 1 taken at an offset", name);
    CHECK_OK(usi_dbuf_read(b, 0, back, bytes));
    CHECK(!memcmp(back, old0, bytes), "%s: slot 0's take saw the refill (%g at 5, want %g)", name, back[5], old0[5]);
    CHECK_OK(usi_stage_take(s, 0, 0, b, 0, bytes));
    CHECK_OK(usi_dbuf_read(b, 0, back, bytes));
    CHECK(!memcmp(back, h0, bytes), "%s: the refilled slot 0", name);
    usi_error *e = usi_stage_put(s, 2, 0, h0, 4);
    CHECK(e != NULL, "%s: slot 2 of 2 is refused", name);
    usi_error_free(e);
    e = usi_stage_take(s, 0, 128, b, 0, bytes);
    CHECK(e != NULL, "%s: a take past the slot's end is refused", name);
    usi_error_free(e);
    e = usi_stage_take(s, 0, 0, b, 4, bytes);
    CHECK(e != NULL, "%s: a take past the block's end is refused", name);
    usi_error_free(e);
    free(old0);
    free(back);
    usi_dbuf_free(a);
    usi_dbuf_free(b);
    usi_stage_free(s);
    usi_device_host_free(d, h0, bytes);
    usi_device_host_free(d, h1, bytes);
    return 1;
}

/* The device's normalisation of uint8 images gives the loader's floats to
 * the bit. */
static void check_u8_normalize(usi_device *d)
{
    enum { N = 3, H = 5, W = 7, PX = N * H * W * 3 };
    const char *name = usi_device_name(d);
    uint8_t px[PX];
    for (int i = 0; i < PX; i++) px[i] = (uint8_t)(i * 37 + 11);
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    usi_u8_batch b = {.n = N, .h = H, .w = W, .c = 3, .pixels = px};
    float want[PX], got[PX + 4];
    usi_u8_to_float_nchw(&b, mean, sd, want);
    usi_dbuf *src, *dst;
    CHECK_OK(usi_dbuf_new(d, PX + 5, &src));
    CHECK_OK(usi_dbuf_new(d, sizeof got, &dst));
    CHECK_OK(usi_dbuf_write(src, 5, px, PX));
    CHECK_OK(usi_dbuf_u8_normalize(dst, 16, src, 5, N, H, W, mean, sd));
    CHECK_OK(usi_dbuf_read(dst, 0, got, sizeof got));
    CHECK(got[3] == 0.0f && !memcmp(got + 4, want, sizeof want), "%s: normalised %g at 0, want %g", name, got[4],
          want[0]);
    usi_error *e = usi_dbuf_u8_normalize(dst, 20, src, 5, N, H, W, mean, sd);
    CHECK(e != NULL, "%s: a normalisation past the block's end is refused", name);
    usi_error_free(e);
    usi_dbuf_free(src);
    usi_dbuf_free(dst);
}

#endif
