/* ImageFolder scanning and the threaded loader: label order, determinism
 * across thread counts, repeated augmentation, bad files, the float path. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/decode.h"
#include "data/loader.h"
#include "data/prefetch.h"
#include "plugin/host.h"
#include "testutil.h"
#include "util/error.h"

/* classes: a (4 images), b_empty (none), c (3 good + the bad files) */
enum { N_GOOD = 7, N_BAD = 5, IMG = 16 };
static const char *bad_names[N_BAD] = {"zero.jpg", "truncated.jpg", "baddata.png", "text.JPG",
                                       "dangling.jpeg"};

static int g_r, g_g;
/* red flat (it carries the label), green a smooth ramp so views differ */
static int flat(int x, int y, int k) { return k == 0 ? g_r : k == 1 ? 60 + 2 * x + y + g_g : 0; }
static int tex(int x, int y, int k) { return (x * 5 + y * 9 + k * 40 + g_g) & 255; }

/* The red channel says the label, so a shifted label shows. */
static int red_of(int label) { return 40 + 80 * label; }

static void write_image(const char *dir, const char *name, int label, int idx, int jpeg)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    g_r = red_of(label);
    g_g = idx * 5;
    usi_image im = tu_image(40 + idx, 30 + 2 * idx, 3, flat);
    if (jpeg) {
        uint8_t *buf;
        size_t len;
        CHECK(tu_jpeg_encode(&im, 95, &buf, &len) == 0, "encode");
        tu_write_file(path, buf, len);
        free(buf);
    } else {
        MUST(usi_png_write(path, &im));
    }
    tu_image_free(&im);
}

static void write_bad_files(const char *dir)
{
    char path[8192];
    uint8_t *buf;
    size_t len;
    g_g = 3;
    usi_image im = tu_image(64, 64, 3, tex);
    snprintf(path, sizeof path, "%s/zero.jpg", dir);
    tu_write_file(path, "", 0);
    tu_jpeg_encode(&im, 90, &buf, &len);
    snprintf(path, sizeof path, "%s/truncated.jpg", dir);
    tu_write_file(path, buf, len * 6 / 10);
    free(buf);
    snprintf(path, sizeof path, "%s/baddata.png", dir); /* the zlib checksum flipped */
    MUST(usi_png_write(path, &im));
    int fd = open(path, O_RDWR);
    off_t end = lseek(fd, 0, SEEK_END);
    uint8_t byte;
    CHECK(pread(fd, &byte, 1, end - 20) == 1, "pread");
    byte ^= 0x5a;
    CHECK(pwrite(fd, &byte, 1, end - 20) == 1, "pwrite");
    close(fd);
    snprintf(path, sizeof path, "%s/text.JPG", dir);
    tu_write_file(path, "hello, I am text\n", 17);
    snprintf(path, sizeof path, "%s/dangling.jpeg", dir);
    CHECK(symlink("/nonexistent/usi-test-target.jpeg", path) == 0, "symlink");
    snprintf(path, sizeof path, "%s/notes.txt", dir); /* ignored: not an image name */
    tu_write_file(path, "x", 1);
    tu_image_free(&im);
}

static char *make_folder(void)
{
    char *root = tu_tempdir("folder");
    char dir[4096];
    const char *classes[] = {"a", "b_empty", "c"};
    for (int c = 0; c < 3; c++) {
        snprintf(dir, sizeof dir, "%s/%s", root, classes[c]);
        mkdir(dir, 0755);
    }
    char name[64];
    snprintf(dir, sizeof dir, "%s/a", root);
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "img%d.%s", i, i % 2 ? "png" : "jpg");
        write_image(dir, name, 0, i, i % 2 == 0);
    }
    snprintf(dir, sizeof dir, "%s/c", root);
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "img%d.%s", i, i == 1 ? "PNG" : "jpeg");
        write_image(dir, name, 2, i, i != 1);
    }
    write_bad_files(dir);
    return root;
}

static void test_scan(const char *root)
{
    usi_dataset *ds;
    MUST(usi_dataset_open(root, &ds));
    CHECK(usi_dataset_class_count(ds) == 3, "%zu classes", usi_dataset_class_count(ds));
    CHECK(!strcmp(usi_dataset_class_name(ds, 1), "b_empty"), "class 1 is %s", usi_dataset_class_name(ds, 1));
    CHECK(usi_dataset_size(ds) == N_GOOD + N_BAD, "%zu samples", usi_dataset_size(ds));
    CHECK(usi_dataset_empty_classes(ds) == 1, "%zu empty classes", usi_dataset_empty_classes(ds));
    for (size_t i = 0; i < usi_dataset_size(ds); i++) {
        const char *p = usi_dataset_path(ds, i);
        int want = strstr(p, "/a/") ? 0 : 2;
        CHECK(usi_dataset_label(ds, i) == want, "%s has label %d", p, usi_dataset_label(ds, i));
    }
    usi_dataset_free(ds);
    usi_dataset *none = NULL;
    char missing[8192];
    snprintf(missing, sizeof missing, "%s/does-not-exist", root);
    usi_error *e = usi_dataset_open(missing, &none);
    CHECK(e && !none, "a missing folder opened");
    usi_error_free(e);
    snprintf(missing, sizeof missing, "%s/b_empty", root);
    e = usi_dataset_open(missing, &none);
    CHECK(e && !none, "a folder without classes opened");
    usi_error_free(e);
}

typedef struct run_out {
    uint8_t *pixels;
    int32_t *labels;
    int64_t *indices;
    size_t n;
    usi_epoch_stats stats[2];
} run_out;

static usi_augchain *chain(usi_registry *r, int with_ra, usi_params **ps)
{
    usi_augchain *ch;
    MUST(usi_augchain_new(&ch));
    const usi_component *c = tu_component(r, "random_resized_crop");
    ps[0] = tu_params(c, "size=16", NULL);
    MUST(usi_augchain_add(ch, c, ps[0]));
    c = tu_component(r, "hflip");
    ps[1] = tu_params(c, NULL);
    MUST(usi_augchain_add(ch, c, ps[1]));
    c = tu_component(r, with_ra ? "rand_augment" : "hflip");
    ps[2] = tu_params(c, NULL);
    MUST(usi_augchain_add(ch, c, ps[2]));
    return ch;
}

static run_out run_loader(const usi_dataset *ds, const usi_augchain *ch, int workers, int prefetch, int replace)
{
    usi_loader_opts o = usi_loader_opts_default();
    o.replace_bad = replace;
    o.batch_size = 4;
    o.img_size = IMG;
    o.workers = workers;
    o.prefetch = prefetch;
    o.repeats = 2;
    o.drop_last = 0;
    o.seed = 1234;
    usi_loader *l;
    MUST(usi_loader_new(ds, ch, &o, &l));
    run_out out = {0};
    size_t cap = 4 * 2 * (N_GOOD + N_BAD);
    out.pixels = malloc(cap * IMG * IMG * 3);
    out.labels = malloc(cap * sizeof(int32_t));
    out.indices = malloc(cap * sizeof(int64_t));
    for (int epoch = 0; epoch < 2; epoch++) {
        MUST(usi_loader_start_epoch(l, epoch));
        CHECK(usi_loader_batch_count(l) == 6, "%lld batches", (long long)usi_loader_batch_count(l));
        usi_u8_batch b;
        for (;;) {
            MUST(usi_loader_next(l, &b));
            if (b.n == 0) break;
            memcpy(out.pixels + out.n * IMG * IMG * 3, b.pixels, (size_t)b.n * IMG * IMG * 3);
            memcpy(out.labels + out.n, b.labels, (size_t)b.n * sizeof(int32_t));
            memcpy(out.indices + out.n, b.indices, (size_t)b.n * sizeof(int64_t));
            out.n += (size_t)b.n;
        }
        usi_loader_epoch_stats(l, &out.stats[epoch]);
        usi_loader_log_summary(l);
    }
    usi_loader_free(l);
    return out;
}

static void free_run(run_out *r)
{
    free(r->pixels);
    free(r->labels);
    free(r->indices);
}

static void test_determinism(const usi_dataset *ds, usi_registry *reg)
{
    usi_params *ps[3];
    usi_augchain *ch = chain(reg, 1, ps);
    run_out one = run_loader(ds, ch, 1, 1, 0), three = run_loader(ds, ch, 3, 2, 0);
    CHECK(one.n == 2 * 2 * N_GOOD, "%zu samples delivered, want %d", one.n, 2 * 2 * N_GOOD);
    CHECK(one.n == three.n, "1 thread: %zu samples, 3 threads: %zu", one.n, three.n);
    if (one.n == three.n) {
        CHECK(!memcmp(one.labels, three.labels, one.n * sizeof(int32_t)), "labels differ");
        CHECK(!memcmp(one.indices, three.indices, one.n * sizeof(int64_t)), "order differs");
        CHECK(!memcmp(one.pixels, three.pixels, one.n * IMG * IMG * 3), "pixels differ");
    }
    /* repeated augmentation: each good image twice per epoch, different views */
    size_t half = one.n / 2;
    int counts[N_GOOD + N_BAD] = {0};
    for (size_t i = 0; i < half; i++) counts[one.indices[i]]++;
    int wrong = 0;
    for (int i = 0; i < N_GOOD + N_BAD; i++) wrong += counts[i] != 0 && counts[i] != 2;
    CHECK(wrong == 0, "%d images not seen exactly twice in epoch 0", wrong);
    int same_view = 0;
    for (size_t i = 0; i + 1 < half; i++)
        if (one.indices[i] == one.indices[i + 1])
            same_view += !memcmp(one.pixels + i * IMG * IMG * 3, one.pixels + (i + 1) * IMG * IMG * 3,
                                 IMG * IMG * 3);
    CHECK(same_view == 0, "%d repeats got identical augmentations", same_view);
    CHECK(memcmp(one.indices, one.indices + half, half * sizeof(int64_t)) != 0,
          "epochs 0 and 1 have the same order");
    for (int e = 0; e < 2; e++) {
        CHECK(one.stats[e].skipped == 2 * N_BAD, "epoch %d skipped %lld", e, (long long)one.stats[e].skipped);
        CHECK(one.stats[e].bad_files == N_BAD, "epoch %d: %lld bad files", e, (long long)one.stats[e].bad_files);
        CHECK(one.stats[e].samples == 2 * N_GOOD, "epoch %d: %lld samples", e, (long long)one.stats[e].samples);
    }
    free_run(&one);
    free_run(&three);
    usi_augchain_free(ch);
    for (int i = 0; i < 3; i++) usi_params_free(ps[i]);
}

static int is_bad_name(const char *path)
{
    const char *base = strrchr(path, '/') + 1;
    for (int i = 0; i < N_BAD; i++)
        if (!strcmp(base, bad_names[i])) return 1;
    return 0;
}

/* replace_bad: a bad sample's place goes to the first readable file after it
 * in dataset order (wrapping), with that file's label; batches stay whole,
 * and the choice is the same for any number of threads. */
static void test_replace_bad(const usi_dataset *ds, usi_registry *reg)
{
    usi_params *ps[3];
    usi_augchain *ch = chain(reg, 1, ps);
    run_out one = run_loader(ds, ch, 1, 1, 1), three = run_loader(ds, ch, 3, 2, 1);
    size_t n = usi_dataset_size(ds);
    CHECK(one.n == 2 * 2 * n, "%zu samples delivered, want every position of 2 epochs (%zu)", one.n, 2 * 2 * n);
    CHECK(one.n == three.n && !memcmp(one.indices, three.indices, one.n * sizeof(int64_t)) &&
          !memcmp(one.pixels, three.pixels, one.n * IMG * IMG * 3), "1 and 3 threads differ");
    /* Expected visits: each image twice per epoch (repeats 2), and twice more
     * for each bad file whose place it takes. */
    int want[N_GOOD + N_BAD] = {0}, got[N_GOOD + N_BAD] = {0};
    for (size_t i = 0; i < n; i++) {
        size_t k = i;
        while (is_bad_name(usi_dataset_path(ds, k))) k = (k + 1) % n;
        want[k] += 2;
    }
    int wrong_label = 0;
    for (size_t i = 0; i < one.n / 2; i++) {
        got[one.indices[i]]++;
        wrong_label += one.labels[i] != usi_dataset_label(ds, (size_t)one.indices[i]);
    }
    CHECK(wrong_label == 0, "%d samples carry another file's label", wrong_label);
    for (size_t i = 0; i < n; i++)
        CHECK(got[i] == want[i], "%s: seen %d times in epoch 0, want %d", usi_dataset_path(ds, i), got[i], want[i]);
    for (int e = 0; e < 2; e++)
        CHECK(one.stats[e].skipped == 0 && one.stats[e].replaced == 2 * N_BAD && one.stats[e].bad_files == N_BAD,
              "epoch %d: %lld skipped, %lld replaced, %lld bad files", e, (long long)one.stats[e].skipped,
              (long long)one.stats[e].replaced, (long long)one.stats[e].bad_files);
    free_run(&one);
    free_run(&three);
    usi_augchain_free(ch);
    for (int i = 0; i < 3; i++) usi_params_free(ps[i]);
}

/* Count lines of the captured log that name path. */
static int count_in(const char *log, const char *needle)
{
    int n = 0;
    for (const char *p = log; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void test_labels_and_log(const usi_dataset *ds, usi_registry *reg, const char *tmp)
{
    usi_params *ps[3];
    usi_augchain *ch = chain(reg, 0, ps); /* crop + flips keep a flat image flat */
    char logpath[8192];
    snprintf(logpath, sizeof logpath, "%s/log.txt", tmp);
    fflush(stderr);
    int saved = dup(2), fd = open(logpath, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    dup2(fd, 2);
    run_out r = run_loader(ds, ch, 3, 1, 0);
    fflush(stderr);
    dup2(saved, 2);
    close(fd);
    close(saved);
    int shifted = 0;
    for (size_t i = 0; i < r.n; i++) {
        int red = r.pixels[i * IMG * IMG * 3 + (IMG / 2 * IMG + IMG / 2) * 3];
        int want = red_of(r.labels[i]);
        shifted += red < want - 8 || red > want + 8 || r.labels[i] != usi_dataset_label(ds, (size_t)r.indices[i]);
    }
    CHECK(shifted == 0, "%d samples whose pixels do not match their label", shifted);
    FILE *f = fopen(logpath, "r");
    char log[1 << 16] = {0};
    size_t got = f ? fread(log, 1, sizeof log - 1, f) : 0;
    log[got] = 0;
    if (f) fclose(f);
    for (int i = 0; i < N_BAD; i++)
        CHECK(count_in(log, bad_names[i]) == 1, "%s logged %d times over 2 epochs:\n%s", bad_names[i],
              count_in(log, bad_names[i]), log);
    CHECK(count_in(log, "skipped") == 2, "no epoch summaries in the log");
    printf("%s", log);
    free_run(&r);
    usi_augchain_free(ch);
    for (int i = 0; i < 3; i++) usi_params_free(ps[i]);
}

static void test_float_path(const usi_dataset *ds, usi_registry *reg)
{
    usi_params *ps[3];
    usi_augchain *ch = chain(reg, 0, ps);
    usi_loader_opts o = usi_loader_opts_default();
    o.batch_size = 5;
    o.img_size = IMG;
    o.workers = 2;
    o.shuffle = 0;
    usi_loader *l;
    MUST(usi_loader_new(ds, ch, &o, &l));
    static const float mean[3] = {0.5f, 0.25f, 0.0f}, sd[3] = {0.5f, 0.25f, 1.0f};
    usi_loader_set_norm(l, mean, sd);
    MUST(usi_loader_start_epoch(l, 3));
    usi_float_batch fb;
    MUST(usi_loader_next_float(l, &fb));
    /* dataset order: a/img0..3 then c/badcrc.png, which is dropped */
    CHECK(fb.batch.n == 4 && fb.skipped == 1 && fb.batch.num_classes == 3, "n %d classes %d", fb.batch.n, fb.batch.num_classes);
    size_t plane = IMG * IMG;
    for (int i = 0; i < fb.batch.n; i++) {
        float r = fb.batch.images[i * 3 * plane + plane / 2 + IMG / 2];
        float want = ((float)red_of(fb.labels[i]) / 255.0f - 0.5f) / 0.5f;
        CHECK(r > want - 0.07f && r < want + 0.07f, "normalised red %.3f, want %.3f", r, want);
        float sum = 0;
        for (int k = 0; k < 3; k++) sum += fb.batch.targets[i * 3 + k];
        CHECK(sum == 1.0f && fb.batch.targets[i * 3 + fb.labels[i]] == 1.0f, "target row %d", i);
    }
    usi_loader_free(l);
    usi_augchain_free(ch);
    for (int i = 0; i < 3; i++) usi_params_free(ps[i]);
}

/* In dataset order with batches of 2, batches 2 and 5 hold only bad files. */
static void test_all_bad_batches(const usi_dataset *ds, usi_registry *reg)
{
    usi_params *ps[3];
    usi_augchain *ch = chain(reg, 0, ps);
    usi_loader_opts o = usi_loader_opts_default();
    o.batch_size = 2;
    o.img_size = IMG;
    o.workers = 3;
    o.shuffle = 0;
    o.drop_last = 0;
    usi_loader *l;
    MUST(usi_loader_new(ds, ch, &o, &l));
    MUST(usi_loader_start_epoch(l, 0));
    int batches = 0, samples = 0, skipped = 0;
    usi_u8_batch b;
    for (;;) {
        MUST(usi_loader_next(l, &b));
        if (b.n == 0) break;
        batches++;
        samples += b.n;
        skipped += b.skipped;
    }
    skipped += b.skipped; /* a bad last batch is reported with the end */
    CHECK(batches == 4 && samples == N_GOOD && skipped == N_BAD, "%d batches, %d samples, %d skipped",
          batches, samples, skipped);
    usi_epoch_stats st;
    usi_loader_epoch_stats(l, &st);
    CHECK(st.skipped == N_BAD && st.samples == N_GOOD, "stats: %lld skipped", (long long)st.skipped);
    usi_loader_free(l);
    usi_augchain_free(ch);
    for (int i = 0; i < 3; i++) usi_params_free(ps[i]);
}

/* Float batches of a loader, by the caller's thread or by a prefetcher:
 * [epoch][batch] images and targets copied out, 0-terminated by n. */
enum { PF_BATCHES = 8, PF_B = 3 };
typedef struct fbatch {
    int32_t n, slot;
    float images[PF_B * 3 * IMG * IMG], targets[PF_B * 3];
    int32_t labels[PF_B];
} fbatch;

typedef struct hook_log {
    int readies, allocs, frees, fail_at;
    int32_t max_slot;
} hook_log;

static void *counting_alloc(void *ctx, size_t bytes)
{
    ((hook_log *)ctx)->allocs++;
    return malloc(bytes);
}

static void counting_free(void *ctx, void *p, size_t bytes)
{
    (void)bytes;
    ((hook_log *)ctx)->frees++;
    free(p);
}

static usi_error *ready_hook(void *ctx, int32_t slot, const usi_float_batch *fb)
{
    hook_log *h = ctx;
    if (fb->batch.n <= 0) return usi_error_new(USI_ERR_INTERNAL, "ready with an empty batch");
    if (slot > h->max_slot) h->max_slot = slot;
    if (++h->readies == h->fail_at) return usi_error_new(USI_ERR_IO, "upload failed on purpose");
    return NULL;
}

static int copy_out(const usi_float_batch *fb, fbatch *dst)
{
    dst->n = fb->batch.n;
    dst->slot = fb->slot;
    if (fb->batch.n == 0) return 0;
    memcpy(dst->images, fb->batch.images, sizeof(float) * (size_t)fb->batch.n * 3 * IMG * IMG);
    memcpy(dst->targets, fb->batch.targets, sizeof(float) * (size_t)fb->batch.n * 3);
    memcpy(dst->labels, fb->labels, sizeof(int32_t) * (size_t)fb->batch.n);
    return 1;
}

static usi_loader *pf_loader(const usi_dataset *ds, const usi_augchain *ch)
{
    usi_loader_opts o = usi_loader_opts_default();
    o.batch_size = PF_B;
    o.img_size = IMG;
    o.workers = 2;
    o.repeats = 2;
    o.drop_last = 0;
    o.seed = 77;
    usi_loader *l;
    MUST(usi_loader_new(ds, ch, &o, &l));
    return l;
}

/* Epoch e from batch `skip` on, by the caller's thread. */
static int direct_epoch(usi_loader *l, int64_t e, int skip, fbatch *out)
{
    MUST(usi_loader_start_epoch(l, e));
    usi_float_batch fb;
    for (int b = 0; b < skip; b++) MUST(usi_loader_next_float(l, &fb));
    int k = 0;
    do MUST(usi_loader_next_float(l, &fb));
    while (copy_out(&fb, &out[k++]) && k < PF_BATCHES);
    return k;
}

static int prefetch_epoch(usi_prefetch *p, int64_t e, int skip, fbatch *out)
{
    MUST(usi_prefetch_start_epoch(p, e, skip));
    usi_float_batch fb;
    int k = 0;
    do {
        MUST(usi_prefetch_next(p, &fb));
        usleep(3000); /* the thread and the loader's workers move on meanwhile */
    } while (copy_out(&fb, &out[k++]) && k < PF_BATCHES);
    return k;
}

static int same_batches(const fbatch *a, const fbatch *b, int n)
{
    for (int i = 0; i < n; i++) {
        if (a[i].n != b[i].n) return 0;
        size_t ni = sizeof(float) * (size_t)a[i].n;
        if (memcmp(a[i].images, b[i].images, ni * 3 * IMG * IMG) || memcmp(a[i].targets, b[i].targets, ni * 3) ||
            memcmp(a[i].labels, b[i].labels, sizeof(int32_t) * (size_t)a[i].n))
            return 0;
    }
    return 1;
}

/* A prefetcher hands out the loader's own float batches, batch stages
 * included, bit for bit, at any depth, after restarts and skips; its hook
 * sees every batch, and a hook error is handed out in the batch's place. */
static void test_prefetch(const usi_dataset *ds, usi_registry *reg)
{
    usi_params *ps[4];
    usi_augchain *ch = chain(reg, 1, ps);
    const usi_component *mix = tu_component(reg, "mixup_cutmix");
    ps[3] = tu_params(mix, NULL);
    MUST(usi_augchain_add(ch, mix, ps[3]));
    static fbatch want[PF_BATCHES], got[PF_BATCHES];
    usi_loader *ld = pf_loader(ds, ch);
    for (int32_t ahead = 1; ahead <= 3; ahead += 2) {
        usi_loader *lp = pf_loader(ds, ch);
        hook_log h = {0};
        h.max_slot = -1;
        usi_prefetch_opts o = {.ahead = ahead, .host_alloc = counting_alloc, .host_free = counting_free,
                               .ready = ready_hook, .ctx = &h};
        usi_prefetch *p;
        MUST(usi_prefetch_new(lp, &o, &p));
        CHECK(usi_prefetch_slots(p) == ahead + 1 && h.allocs == 2 * (ahead + 1), "%d slots, %d allocations",
              usi_prefetch_slots(p), h.allocs);
        usi_float_batch fb;
        usi_error *early = usi_prefetch_next(p, &fb);
        CHECK(early != NULL, "a batch before any epoch started");
        usi_error_free(early);
        int readies = 0;
        for (int64_t e = 0; e < 2; e++) {
            int nd = direct_epoch(ld, e, 0, want), np = prefetch_epoch(p, e, 0, got);
            CHECK(nd == np && nd > 3 && same_batches(want, got, nd), "ahead %d epoch %lld: %d vs %d batches or "
                  "different floats", ahead, (long long)e, nd, np);
            for (int i = 0; i + 1 < np; i++)
                CHECK(got[i].slot >= 0 && got[i].slot == i % (ahead + 1), "batch %d in slot %d", i, got[i].slot);
            readies += np - 1;
            CHECK(usi_prefetch_next(p, &fb) == NULL && fb.batch.n == 0, "a batch after the end");
        }
        CHECK(h.readies == readies && h.max_slot == ahead, "ready %d times for %d batches, slots up to %d",
              h.readies, readies, h.max_slot);
        /* Restart in the middle, then resume epoch 3 after 2 batches. */
        MUST(usi_prefetch_start_epoch(p, 2, 0));
        MUST(usi_prefetch_next(p, &fb));
        int nd = direct_epoch(ld, 3, 2, want), np = prefetch_epoch(p, 3, 2, got);
        CHECK(nd == np && nd > 1 && same_batches(want, got, nd), "resumed epoch: %d vs %d batches or different "
              "floats", nd, np);
        /* An error of the hook takes its batch's place and ends the epoch. */
        h.fail_at = h.readies + 2;
        MUST(usi_prefetch_start_epoch(p, 0, 0));
        MUST(usi_prefetch_next(p, &fb));
        usi_error *e = usi_prefetch_next(p, &fb);
        CHECK(e && strstr(usi_error_message(e), "on purpose"), "the hook's error was not handed out");
        usi_error_free(e);
        CHECK(usi_prefetch_next(p, &fb) == NULL && fb.batch.n == 0, "batches after an error");
        usi_prefetch_free(p);
        CHECK(h.frees == h.allocs, "%d of %d slot buffers freed", h.frees, h.allocs);
        usi_loader_free(lp);
    }
    usi_loader_free(ld);
    usi_augchain_free(ch);
    for (int i = 0; i < 4; i++) usi_params_free(ps[i]);
}

/* Raw batches: the loader's uint8 images and labels as its own next hands
 * them out, one-hot targets; refused with batch stages in the chain. */
static void test_prefetch_raw(const usi_dataset *ds, usi_registry *reg)
{
    usi_params *ps[4];
    usi_augchain *ch = chain(reg, 1, ps);
    usi_loader *ld = pf_loader(ds, ch), *lp = pf_loader(ds, ch);
    usi_prefetch_opts o = {.ahead = 2, .raw = 1};
    usi_prefetch *p;
    MUST(usi_prefetch_new(lp, &o, &p));
    MUST(usi_loader_start_epoch(ld, 1));
    MUST(usi_prefetch_start_epoch(p, 1, 0));
    int batches = 0, differ = 0;
    for (;;) {
        usi_u8_batch u;
        usi_float_batch fb;
        MUST(usi_loader_next(ld, &u));
        MUST(usi_prefetch_next(p, &fb));
        if (u.n != fb.batch.n) differ++;
        if (u.n == 0 || fb.batch.n == 0) break;
        batches++;
        if (fb.batch.images || !fb.pixels || memcmp(u.pixels, fb.pixels, (size_t)u.n * IMG * IMG * 3) ||
            memcmp(u.labels, fb.labels, sizeof(int32_t) * (size_t)u.n))
            differ++;
        for (int i = 0; i < u.n; i++)
            for (int k = 0; k < 3; k++)
                if (fb.batch.targets[i * 3 + k] != (k == u.labels[i] ? 1.0f : 0.0f)) differ++;
    }
    CHECK(batches > 3 && differ == 0, "raw batches: %d differences in %d batches", differ, batches);
    usi_prefetch_free(p);
    usi_loader_free(lp);
    usi_loader_free(ld);
    const usi_component *mix = tu_component(reg, "mixup_cutmix");
    ps[3] = tu_params(mix, NULL);
    MUST(usi_augchain_add(ch, mix, ps[3]));
    lp = pf_loader(ds, ch);
    p = NULL;
    usi_error *e = usi_prefetch_new(lp, &o, &p);
    CHECK(e && !p, "raw batches with Mixup/CutMix in the chain were accepted");
    usi_error_free(e);
    usi_loader_free(lp);
    usi_augchain_free(ch);
    for (int i = 0; i < 4; i++) usi_params_free(ps[i]);
}

int main(void)
{
    usi_registry *reg = tu_registry();
    char *root = make_folder();
    test_scan(root);
    usi_dataset *ds;
    MUST(usi_dataset_open(root, &ds));
    test_determinism(ds, reg);
    test_replace_bad(ds, reg);
    test_labels_and_log(ds, reg, root);
    test_float_path(ds, reg);
    test_all_bad_batches(ds, reg);
    test_prefetch(ds, reg);
    test_prefetch_raw(ds, reg);
    usi_dataset_free(ds);
    tu_rm_rf(root);
    free(root);
    usi_registry_free(reg);
    return tu_finish("test_loader");
}
