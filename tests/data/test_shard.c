/* The loader's data-parallel shards: one global order per epoch split over
 * ranks. Coverage: with repeated augmentation every image of an epoch is
 * seen exactly `repeats` times over all ranks; evaluation sees every sample
 * once. Invariance: the samples of a global step (and each one's pixels,
 * augmentations included) do not depend on how many ranks share it. */
#include <sys/stat.h>

#include "data/decode.h"
#include "data/loader.h"
#include "testutil.h"
#include "util/error.h"

enum { N_IMAGES = 53, IMG = 12 };

static int g_seed;
static int pattern(int x, int y, int k) { return (x * 7 + y * 13 + k * 50 + g_seed * 31) & 255; }

static char *make_folder(void)
{
    char *root = tu_tempdir("shard");
    char dir[4096], path[8192];
    for (int c = 0; c < 3; c++) {
        snprintf(dir, sizeof dir, "%s/class%d", root, c);
        mkdir(dir, 0755);
    }
    for (int i = 0; i < N_IMAGES; i++) {
        g_seed = i;
        usi_image im = tu_image(20 + i % 5, 18 + i % 7, 3, pattern);
        snprintf(path, sizeof path, "%s/class%d/img%02d.png", root, i % 3, i);
        MUST(usi_png_write(path, &im));
        tu_image_free(&im);
    }
    return root;
}

static usi_augchain *chain(usi_registry *r, usi_params **ps)
{
    usi_augchain *ch;
    MUST(usi_augchain_new(&ch));
    const usi_component *c = tu_component(r, "random_resized_crop");
    ps[0] = tu_params(c, "size=12", NULL);
    MUST(usi_augchain_add(ch, c, ps[0]));
    c = tu_component(r, "hflip");
    ps[1] = tu_params(c, NULL);
    MUST(usi_augchain_add(ch, c, ps[1]));
    return ch;
}

static usi_loader *open_loader(const usi_dataset *ds, const usi_augchain *ch, int train, int batch, int repeats,
                               int64_t epoch_samples, int rank, int world)
{
    usi_loader_opts o = usi_loader_opts_default();
    o.batch_size = batch;
    o.img_size = IMG;
    o.workers = 2;
    o.repeats = repeats;
    o.shuffle = train;
    o.drop_last = train;
    o.seed = 77;
    o.epoch_samples = epoch_samples;
    o.rank = rank;
    o.world = world;
    usi_loader *l;
    MUST(usi_loader_new(ds, ch, &o, &l));
    return l;
}

/* FNV-1a of a sample's pixels: equal views of one global position. */
static uint64_t hash_pixels(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Every rank's epoch: per image, how often it came; returns the samples. */
static int64_t count_epoch(const usi_dataset *ds, const usi_augchain *ch, int train, int batch, int repeats,
                           int64_t epoch_samples, int world, int epoch, int *seen, int64_t *steps)
{
    int64_t total = 0;
    memset(seen, 0, sizeof(int) * N_IMAGES);
    for (int r = 0; r < world; r++) {
        usi_loader *l = open_loader(ds, ch, train, batch, repeats, epoch_samples, r, world);
        MUST(usi_loader_start_epoch(l, epoch));
        if (r == 0) *steps = usi_loader_batch_count(l);
        CHECK(usi_loader_batch_count(l) == *steps || !train, "rank %d has %lld steps, rank 0 %lld", r,
              (long long)usi_loader_batch_count(l), (long long)*steps);
        usi_u8_batch b;
        for (;;) {
            MUST(usi_loader_next(l, &b));
            if (b.n == 0) break;
            CHECK(!train || b.n == batch, "a training batch of %d", b.n);
            for (int i = 0; i < b.n; i++) seen[b.indices[i]]++;
            total += b.n;
        }
        usi_loader_free(l);
    }
    return total;
}

static void test_coverage(const usi_dataset *ds, const usi_augchain *ch)
{
    static const int cases[][3] = {{1, 4, 3}, {2, 4, 3}, {3, 4, 3}, {4, 2, 3}, {2, 3, 2}, {2, 5, 1}, {3, 2, 4}};
    int seen[N_IMAGES];
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int world = cases[c][0], batch = cases[c][1], R = cases[c][2];
        for (int full = 0; full < 2; full++) {
            /* full: all N*R positions; else RASampler's ~N positions. */
            int64_t keep = full ? 0 : N_IMAGES, steps = 0;
            for (int epoch = 0; epoch < 2; epoch++) {
                int64_t total = count_epoch(ds, ch, 1, batch, R, keep, world, epoch, seen, &steps);
                int64_t positions = full ? (int64_t)N_IMAGES * R : N_IMAGES;
                int64_t global = (int64_t)batch * world;
                int wrong = 0, distinct = 0;
                for (int i = 0; i < N_IMAGES; i++) {
                    wrong += seen[i] != 0 && seen[i] != R;
                    distinct += seen[i] != 0;
                }
                CHECK(wrong == 0, "world %d batch %d R %d keep %lld epoch %d: %d images not seen 0 or %d times",
                      world, batch, R, (long long)keep, epoch, wrong, R);
                CHECK(total == steps * global && (int64_t)distinct * R == total,
                      "world %d batch %d R %d: %lld samples in %lld steps, %d images", world, batch, R,
                      (long long)total, (long long)steps, distinct);
                /* At most the steps that cannot hold whole groups are lost. */
                CHECK(total > positions - global * R, "world %d batch %d R %d: only %lld of %lld positions", world,
                      batch, R, (long long)total, (long long)positions);
            }
        }
    }
    /* Evaluation: every sample once over the ranks, for any world. */
    for (int world = 1; world <= 5; world++) {
        int64_t steps = 0;
        int64_t total = count_epoch(ds, ch, 0, 4, 1, 0, world, 0, seen, &steps);
        int wrong = 0;
        for (int i = 0; i < N_IMAGES; i++) wrong += seen[i] != 1;
        CHECK(total == N_IMAGES && wrong == 0, "eval over %d ranks: %lld samples, %d not seen once", world,
              (long long)total, wrong);
    }
}

typedef struct sample {
    int64_t index;
    uint64_t hash;
} sample;

static int by_key(const void *a, const void *b)
{
    const sample *x = a, *y = b;
    if (x->index != y->index) return x->index < y->index ? -1 : 1;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

/* The global step s of `world` ranks with `batch` each, sorted. */
static int64_t global_step(const usi_dataset *ds, const usi_augchain *ch, int world, int batch, int step,
                           sample *out)
{
    int64_t n = 0;
    for (int r = 0; r < world; r++) {
        usi_loader *l = open_loader(ds, ch, 1, batch, 3, N_IMAGES, r, world);
        MUST(usi_loader_start_epoch(l, 1));
        usi_u8_batch b = {0};
        for (int s = 0; s <= step; s++) MUST(usi_loader_next(l, &b));
        for (int i = 0; i < b.n; i++)
            out[n++] = (sample){b.indices[i], hash_pixels(b.pixels + (size_t)i * IMG * IMG * 3, IMG * IMG * 3)};
        usi_loader_free(l);
    }
    qsort(out, (size_t)n, sizeof *out, by_key);
    return n;
}

static void test_invariance(const usi_dataset *ds, const usi_augchain *ch)
{
    sample one[16], two[16], four[16];
    for (int step = 0; step < 3; step++) {
        int64_t a = global_step(ds, ch, 1, 12, step, one);
        int64_t b = global_step(ds, ch, 2, 6, step, two);
        int64_t c = global_step(ds, ch, 4, 3, step, four);
        CHECK(a == 12 && b == 12 && c == 12, "step %d: %lld, %lld, %lld samples", step, (long long)a, (long long)b,
              (long long)c);
        int same = a == b && a == c;
        for (int64_t i = 0; same && i < a; i++)
            same = !by_key(&one[i], &two[i]) && !by_key(&one[i], &four[i]);
        CHECK(same, "global step %d differs between 1, 2 and 4 ranks", step);
    }
}

int main(void)
{
    usi_registry *reg = tu_registry();
    char *root = make_folder();
    usi_dataset *ds;
    MUST(usi_dataset_open(root, &ds));
    usi_params *ps[2];
    usi_augchain *ch = chain(reg, ps);
    test_coverage(ds, ch);
    test_invariance(ds, ch);
    usi_augchain_free(ch);
    for (int i = 0; i < 2; i++) usi_params_free(ps[i]);
    usi_dataset_free(ds);
    tu_rm_rf(root);
    free(root);
    usi_registry_free(reg);
    return tu_finish("test_shard");
}
