/* Shared by the data tests: checks that count failures, plugin loading from
 * the build tree, and small image helpers. */
#ifndef USI_TEST_DATA_UTIL_H
#define USI_TEST_DATA_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <usi/plugin.h>

#include "plugin/params.h"
#include "plugin/registry.h"

extern int tu_failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            tu_failures++;                                                     \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

/* Stop the test program on an error that makes the rest meaningless. */
#define MUST(expr)                                                             \
    do {                                                                       \
        usi_error *must_e_ = (expr);                                           \
        if (must_e_) {                                                         \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr,       \
                    usi_error_message(must_e_));                               \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

/* A registry with every plugin under $USI_TEST_AUGMENT_DIR/<folder>/. */
usi_registry *tu_registry(void);
/* The augment component of that name, or exit. */
const usi_component *tu_component(usi_registry *r, const char *name);
/* Options with defaults, then "name=value" overrides (int/float/bool/string
 * guessed from the schema; lists as "a, b"). NULL-terminated. */
usi_params *tu_params(const usi_component *c, ...);
/* An instance, or exit. */
void *tu_create(const usi_component *c, const usi_params *p);

/* A w x h x c image with pixel(x, y, k) = f(x, y, k). */
usi_image tu_image(int w, int h, int c, int (*f)(int x, int y, int k));
void tu_image_free(usi_image *im);
static inline uint8_t tu_px(const usi_image *im, int x, int y, int k)
{
    return im->data[(size_t)y * (size_t)im->stride + (size_t)x * (size_t)im->channels + (size_t)k];
}

/* A fresh folder under $TMPDIR (or /tmp); the caller removes it with tu_rm_rf. */
char *tu_tempdir(const char *tag);
void tu_rm_rf(const char *path);
int tu_write_file(const char *path, const void *data, size_t len);

/* Calls fn with each line of DIR/manifest.txt that is neither empty nor a
 * '#' comment, its newline removed; the number of such lines, or exit when
 * the file cannot be opened or holds none. */
int tu_each_manifest_line(const char *dir, void (*fn)(char *line));

int tu_finish(const char *name);

#endif

#ifndef USI_TEST_DATA_UTIL_JPEG
#define USI_TEST_DATA_UTIL_JPEG
/* Encode an RGB (c=3) or grey (c=1) image as JPEG; *out is malloc'ed. */
int tu_jpeg_encode(const usi_image *im, int quality, uint8_t **out, size_t *len);
/* The first existing path of a NULL-terminated list, or NULL. */
const char *tu_first_existing(const char *const *paths);
#endif
