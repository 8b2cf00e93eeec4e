/* The device tests run on: $USI_TEST_DEVICE (cpu, cpu-guarded, cuda...) or
 * cpu. A device that can't be opened fails the test with the reason. */
#ifndef USI_TESTS_DEVICE_H
#define USI_TESTS_DEVICE_H

#include <stdio.h>
#include <stdlib.h>

#include "backend/device.h"
#include "graph/graph.h"
#include "util/error.h"

/* A call returning usi_error *: a failed CHECK with its message when it
 * fails (needs check.h). */
#define CHECK_OK(expr)                                                        \
    do {                                                                      \
        usi_error *check_e_ = (expr);                                         \
        CHECK(!check_e_, "%s", check_e_ ? usi_error_message(check_e_) : "");  \
        usi_error_free(check_e_);                                             \
    } while (0)

static inline usi_device *test_device(void)
{
    const char *name = getenv("USI_TEST_DEVICE");
    usi_device *d = NULL;
    usi_error *e = usi_device_open(name && *name ? name : "cpu", &d);
    if (e) {
        fprintf(stderr, "USI_TEST_DEVICE: %s\n", usi_error_message(e));
        exit(1);
    }
    return d;
}

/* Host copies of tensor values for tests: each call returns a buffer of its
 * own that stays valid until TEST_SLOTS later calls (freed at exit). */
#define TEST_SLOTS 32
static void *test_slots_[TEST_SLOTS];
static int test_slot_next_;

static void test_slots_free_(void)
{
    for (int i = 0; i < TEST_SLOTS; i++) free(test_slots_[i]);
}

/* A zeroed host buffer of `bytes` from the ring. */
static inline void *test_host(size_t bytes)
{
    static int registered;
    if (!registered++) atexit(test_slots_free_);
    int k = test_slot_next_++ % TEST_SLOTS;
    free(test_slots_[k]);
    test_slots_[k] = calloc(1, bytes ? bytes : 1);
    if (!test_slots_[k]) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return test_slots_[k];
}

/* A host copy of t's value (numel * dtype size bytes); NULL on error. */
static inline void *test_value(const usi_tensor *t)
{
    size_t bytes = (size_t)usi_graph_numel(t) * (usi_graph_dtype(t) == USI_DTYPE_I64 ? 8
                                                 : usi_graph_dtype(t) == USI_DTYPE_U8 ? 1 : 4);
    void *h = test_host(bytes);
    usi_error *e = usi_graph_read(t, h);
    if (e) {
        fprintf(stderr, "read %s: %s\n", usi_graph_name(t), usi_error_message(e));
        usi_error_free(e);
        return NULL;
    }
    return h;
}

/* A host copy of t's gradient; NULL when it has none. */
static inline float *test_grad(const usi_tensor *t)
{
    if (!usi_graph_has_grad(t)) return NULL;
    float *h = test_host((size_t)usi_graph_numel(t) * sizeof(float));
    usi_error *e = usi_graph_read_grad(t, h);
    if (e) {
        usi_error_free(e);
        return NULL;
    }
    return h;
}

/* Write host into t; exits the test on an error (a broken harness). */
static inline void test_write(usi_tensor *t, const void *host)
{
    usi_error *e = usi_graph_write(t, host);
    if (e) {
        fprintf(stderr, "write %s: %s\n", usi_graph_name(t), usi_error_message(e));
        exit(1);
    }
}

#endif
