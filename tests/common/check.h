/* The check macro of the C tests: a failed check prints file, line, the
 * condition and a message, and is counted; main returns check_status(). */
#ifndef USI_TESTS_CHECK_H
#define USI_TESTS_CHECK_H

#include <stdio.h>

static int check_failures;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: FAILED %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                     \
            fprintf(stderr, "\n");                                            \
            check_failures++;                                                 \
        }                                                                     \
    } while (0)

/* 0 when every check passed; prints the count of failures otherwise. */
static inline int check_status(const char *what)
{
    if (check_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", what, check_failures);
        return 1;
    }
    printf("%s: all checks passed\n", what);
    return 0;
}

#endif
