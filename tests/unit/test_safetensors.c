/* safetensors: round trip, refusal of hostile headers, random corruption
 * never reads outside the buffer, atomic writes that leave the previous
 * file whole when the disk is full, and killed writers' leftovers removed. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>

#include "check.h"
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "train/safetensors.h"
#include "util/error.h"
#include "util/rng.h"

static char dir[] = "/tmp/usi-st-XXXXXX";
static float weights[6] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-8f, -7.0f};
static int64_t counter = 123456789012345;
static uint8_t bytes[5] = {0, 1, 127, 200, 255};

static usi_st_writer *sample_writer(void)
{
    usi_st_writer *w = usi_st_writer_new();
    int64_t s23[2] = {2, 3}, s5[1] = {5};
    usi_error_free(usi_st_writer_add(w, "layer1.0.conv1.weight", USI_DTYPE_F32, 2, s23, weights));
    usi_error_free(usi_st_writer_add(w, "bn1.num_batches_tracked", USI_DTYPE_I64, 0, NULL, &counter));
    usi_error_free(usi_st_writer_add(w, "table", USI_DTYPE_U8, 1, s5, bytes));
    usi_error_free(usi_st_writer_meta(w, "step", "42"));
    return w;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len + 1);
    if (b && fread(b, 1, *len, f) != *len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static void check_sample(const char *path)
{
    usi_st_file *f = NULL;
    usi_error *e = usi_st_read(path, &f);
    CHECK(!e, "read: %s", usi_error_message(e));
    usi_error_free(e);
    if (!f) return;
    CHECK(usi_st_count(f) == 3, "count %zu", usi_st_count(f));
    const usi_st_tensor *w = usi_st_find(f, "layer1.0.conv1.weight");
    CHECK(w && w->dtype == USI_DTYPE_F32 && w->ndim == 2 && w->shape[0] == 2 && w->shape[1] == 3 &&
              w->nbytes == sizeof weights && !memcmp(w->data, weights, sizeof weights),
          "weight tensor differs");
    const usi_st_tensor *c = usi_st_find(f, "bn1.num_batches_tracked");
    CHECK(c && c->ndim == 0 && c->nbytes == 8 && !memcmp(c->data, &counter, 8), "scalar differs");
    const usi_st_tensor *t = usi_st_find(f, "table");
    CHECK(t && t->nbytes == 5 && !memcmp(t->data, bytes, 5), "u8 tensor differs");
    CHECK(usi_st_metadata(f, "step") && !strcmp(usi_st_metadata(f, "step"), "42"), "metadata");
    usi_st_free(f);
}

/* A file with the given header text and `data_len` zero bytes of data. */
static usi_error *parse_header(const char *json, size_t data_len, uint64_t claimed_len)
{
    size_t hl = strlen(json), len = 8 + hl + data_len;
    uint8_t *buf = calloc(1, len);
    uint64_t h = claimed_len ? claimed_len : hl;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(h >> (8 * i));
    memcpy(buf + 8, json, hl);
    usi_st_file *f = NULL;
    usi_error *e = usi_st_parse(buf, len, "hostile.safetensors", &f);
    usi_st_free(f);
    free(buf);
    return e;
}

static void expect_refused(const char *what, usi_error *e, const char *fragment)
{
    const char *msg = e ? usi_error_message(e) : "(accepted)";
    CHECK(e && strstr(msg, fragment) && strstr(msg, "hostile.safetensors"), "%s: expected '%s' in: %s",
          what, fragment, msg);
    usi_error_free(e);
}

static void test_hostile_headers(void)
{
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    usi_error *e = parse_header(ok, 8, 0);
    CHECK(!e, "a valid header was refused: %s", usi_error_message(e));
    usi_error_free(e);
    expect_refused("header past the end", parse_header(ok, 8, 1u << 30), "runs past the end of the file");
    expect_refused("bad json", parse_header("{\"a\":", 0, 0), "not a JSON object");
    expect_refused("not an object", parse_header("[1,2,3]", 0, 0), "not a JSON object");
    expect_refused("offsets past data",
                   parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, 0),
                   "runs past the end of the data");
    expect_refused("size mismatch",
                   parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0),
                   "holds 8 bytes but its dtype and shape need 12");
    expect_refused("reversed offsets",
                   parse_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, 0),
                   "bad data_offsets");
    expect_refused("negative dim",
                   parse_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 8, 0),
                   "dim 0 is not a size");
    expect_refused("fractional dim",
                   parse_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 8, 0),
                   "dim 0 is not a size");
    expect_refused("huge dims",
                   parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                                "\"data_offsets\":[0,8]}}", 8, 0),
                   "too large");
    expect_refused("unknown dtype",
                   parse_header("{\"a\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 8, 0),
                   "unsupported dtype 'F8'");
    expect_refused("duplicate",
                   parse_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                                "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 8, 0),
                   "appears twice");
    expect_refused("overlap",
                   parse_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                                "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 8, 0),
                   "overlap");
    expect_refused("metadata not strings",
                   parse_header("{\"__metadata__\":{\"k\":1}}", 0, 0), "must be strings");
    expect_refused("missing fields", parse_header("{\"a\":{\"dtype\":\"U8\"}}", 0, 0), "needs");
    uint8_t tiny[3] = {1, 2, 3};
    usi_st_file *f = NULL;
    expect_refused("too short", usi_st_parse(tiny, 3, "hostile.safetensors", &f), "too short");
}

/* Random corruption of a valid file: every accepted result stays inside the
 * buffer (AddressSanitizer builds also catch any stray read). */
static void test_random_corruption(const uint8_t *good, size_t len)
{
    usi_rng rng;
    usi_rng_seed(&rng, 2024, 0, 0, 0);
    uint8_t *buf = malloc(len);
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(buf, good, len);
        size_t n = len;
        int flips = 1 + (int)(usi_rng_u64(&rng) % 4);
        for (int k = 0; k < flips; k++) buf[usi_rng_u64(&rng) % len] = (uint8_t)usi_rng_u64(&rng);
        if (usi_rng_u64(&rng) % 4 == 0) n = (size_t)(usi_rng_u64(&rng) % len);
        usi_st_file *f = NULL;
        usi_error *e = usi_st_parse(buf, n, "fuzz", &f);
        if (!e) {
            accepted++;
            for (size_t i = 0; i < usi_st_count(f); i++) {
                const usi_st_tensor *t = usi_st_at(f, i);
                const uint8_t *p = t->data;
                CHECK(p >= buf && p + t->nbytes <= buf + n, "tensor '%s' outside the buffer", t->name);
            }
        }
        usi_error_free(e);
        usi_st_free(f);
    }
    free(buf);
    CHECK(accepted > 0 && accepted < 20000, "corruption was %s", accepted ? "never detected" : "never survivable");
}

static int count_files(void)
{
    int n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *de; d && (de = readdir(d));)
        if (de->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

static void test_full_disk_keeps_previous(const char *path)
{
    /* A file-size limit makes writes fail with EFBIG, as a full disk would. */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, small = {4096, 4096};
    getrlimit(RLIMIT_FSIZE, &old);
    small.rlim_max = old.rlim_max;
    static float big[8192];
    for (int i = 0; i < 8192; i++) big[i] = (float)i;
    usi_st_writer *w = usi_st_writer_new();
    int64_t shape[1] = {8192};
    usi_error_free(usi_st_writer_add(w, "big", USI_DTYPE_F32, 1, shape, big));
    setrlimit(RLIMIT_FSIZE, &small);
    usi_error *e = usi_st_writer_save(w, path);
    setrlimit(RLIMIT_FSIZE, &old);
    usi_st_writer_free(w);
    CHECK(e && strstr(usi_error_message(e), "previous file is untouched"),
          "a failed write was not reported as such: %s", usi_error_message(e));
    usi_error_free(e);
    check_sample(path); /* still the previous checkpoint, whole */
    CHECK(count_files() == 1, "a temporary file was left behind (%d files)", count_files());

    w = sample_writer();
    e = usi_st_writer_save(w, "/proc/usi-no-such-dir/x.safetensors");
    CHECK(e && strstr(usi_error_message(e), "cannot write /proc/usi-no-such-dir/x.safetensors"),
          "unwritable folder: %s", usi_error_message(e));
    usi_error_free(e);
    usi_st_writer_free(w);
}

/* A writer killed mid-save leaves NAME.safetensors.tmp-PID; the next save
 * beside it removes those of processes that no longer run and keeps a live
 * writer's. */
static void test_stale_temps_removed(void)
{
    char live[300], dead[300], other[300], keep[300], path[300];
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0); /* now a pid no process has */
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    snprintf(dead, sizeof dead, "%s/last.safetensors.tmp-%ld", dir, (long)child);
    snprintf(other, sizeof other, "%s/best.safetensors.tmp-%ld", dir, (long)child);
    snprintf(live, sizeof live, "%s/last.safetensors.tmp-%ld", dir, (long)getppid());
    snprintf(keep, sizeof keep, "%s/notes.tmp-%ld", dir, (long)child);
    const char *files[] = {dead, other, live, keep};
    for (int i = 0; i < 4; i++) {
        FILE *f = fopen(files[i], "w");
        if (f) fclose(f);
    }
    usi_st_writer *w = sample_writer();
    usi_error *e = usi_st_writer_save(w, path);
    CHECK(!e, "save: %s", e ? usi_error_message(e) : "");
    usi_error_free(e);
    usi_st_writer_free(w);
    CHECK(access(dead, F_OK) != 0 && access(other, F_OK) != 0, "a dead writer's temporary file is still there");
    CHECK(access(live, F_OK) == 0, "a running process's temporary file was removed");
    CHECK(access(keep, F_OK) == 0, "a file that is not a checkpoint's temporary was removed");
    unlink(live);
    unlink(keep);
    unlink(path);
}

int main(void)
{
    if (!mkdtemp(dir)) return 2;
    char path[256];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    usi_st_writer *w = sample_writer();
    usi_error *e = usi_st_writer_save(w, path);
    CHECK(!e, "save: %s", usi_error_message(e));
    usi_error_free(e);
    usi_st_writer_free(w);
    check_sample(path);
    size_t len = 0;
    uint8_t *good = slurp(path, &len);
    CHECK(good && len > 8, "file of %zu bytes", len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | good[i];
    CHECK((8 + hl) % 8 == 0, "data does not start 8-byte aligned (header %llu)", (unsigned long long)hl);
    test_hostile_headers();
    if (good) test_random_corruption(good, len);
    free(good);
    test_full_disk_keeps_previous(path);
    test_stale_temps_removed();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return check_status("safetensors");
}
