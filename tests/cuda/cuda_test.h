/* For the CUDA tests: the GPU, or exit 77 (meson's "skipped") on a machine
 * without one, saying why. Any other failure to open it fails the test. */
#ifndef USI_TESTS_CUDA_TEST_H
#define USI_TESTS_CUDA_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/device.h"
#include "util/error.h"

#define SKIP_CODE 77

/* 1 when the error says this machine cannot run CUDA at all. */
static inline int cuda_absent(const usi_error *e)
{
    const char *m = usi_error_message(e);
    return strstr(m, "no CUDA GPU found") || strstr(m, "NVIDIA driver");
}

static inline usi_device *cuda_or_skip(const char *test)
{
    usi_device *d = NULL;
    usi_error *e = usi_device_open("cuda", &d);
    if (!e) return d;
    int absent = cuda_absent(e);
    printf("%s: %s: %s\n", test, absent ? "skipped" : "FAILED", usi_error_message(e));
    usi_error_free(e);
    exit(absent ? SKIP_CODE : 1);
}

#endif
