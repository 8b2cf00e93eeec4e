/* Geometry and statistics of the augmentation plugins, loaded as .so files
 * through the real registry. */
#include <math.h>
#include <stdarg.h>

#include "data/augchain.h"
#include "plugin/host.h"
#include "plugin/params.h"
#include "testutil.h"
#include "util/error.h"
#include "util/rng.h"

static int ramp_xy(int x, int y, int k) { return k == 0 ? x : k == 1 ? y : 0; }
static int const77(int x, int y, int k) { (void)x; (void)y; (void)k; return 77; }
static int noise(int x, int y, int k) { return (x * 131 + y * 71 + k * 29 + ((x * y) % 17) * 13) & 255; }
static int flat_rgb(int x, int y, int k) { (void)x; (void)y; return k == 0 ? 10 : k == 1 ? 200 : 30; }
static int mid_rgb(int x, int y, int k) { (void)x; (void)y; return 60 + 30 * k; }

typedef struct sample_fn {
    const usi_component *c;
    void *inst;
} sample_fn;

static usi_image run(sample_fn f, const usi_image *src, uint64_t seed)
{
    usi_image dst = {sizeof dst, 0, 0, 0, 0, NULL};
    usi_rng r;
    usi_rng_seed(&r, seed, 1, 2, 3);
    MUST(((const usi_augment_ops *)f.c->ops)->apply_sample(f.inst, src, &dst, &r));
    return dst;
}

static sample_fn make(usi_registry *r, const char *name, usi_params **keep, ...)
{
    sample_fn f;
    f.c = tu_component(r, name);
    /* Up to four overrides are enough for these tests. */
    va_list ap;
    va_start(ap, keep);
    const char *kv[5] = {0};
    for (int i = 0; i < 4 && (kv[i] = va_arg(ap, const char *)); i++) {}
    va_end(ap);
    *keep = tu_params(f.c, kv[0], kv[1], kv[2], kv[3], NULL);
    f.inst = tu_create(f.c, *keep);
    return f;
}

static void done(sample_fn f, usi_params *p)
{
    f.c->destroy(f.inst);
    usi_params_free(p);
}

static void test_registry(usi_registry *r)
{
    static const char *names[] = {"random_resized_crop", "hflip", "rand_augment", "mixup_cutmix",
                                  "eval_resize_crop", "color_jitter", "random_erasing"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const usi_loaded *l = usi_registry_find(r, USI_KIND_AUGMENT, names[i]);
        CHECK(l != NULL, "%s not loaded", names[i]);
        if (l) CHECK(l->comp->n_params > 0, "%s publishes no options", names[i]);
    }
    CHECK(usi_registry_problem_count(r) == 0, "%zu plugin problems", usi_registry_problem_count(r));
}

/* A bilinear resample of a linear ramp is exact away from the clamped edges,
 * so the first and last output columns tell where the crop box was. */
static void test_rrc_geometry(usi_registry *r)
{
    usi_params *p;
    sample_fn f = make(r, "random_resized_crop", &p, "size=64", "interpolation=bilinear", NULL);
    usi_image src = tu_image(240, 180, 3, ramp_xy);
    double min_area = 1, max_area = 0;
    int bad = 0;
    for (uint64_t s = 0; s < 300; s++) {
        usi_image d = run(f, &src, s);
        CHECK(d.width == 64 && d.height == 64 && d.channels == 3, "size %dx%dx%d", d.width, d.height,
              d.channels);
        double w = (tu_px(&d, 63, 32, 0) - tu_px(&d, 0, 32, 0)) * 64.0 / 63.0;
        double h = (tu_px(&d, 32, 63, 1) - tu_px(&d, 32, 0, 1)) * 64.0 / 63.0;
        double area = w * h / (240.0 * 180.0), ratio = w / h;
        /* a few pixels of slack: the ramp is read back through rounding */
        if (area > 1.02 || area < 0.08 * 0.8 || ratio < 0.75 * 0.9 || ratio > 4.0 / 3.0 / 0.9) bad++;
        if (area < min_area) min_area = area;
        if (area > max_area) max_area = area;
        tu_image_free(&d);
    }
    CHECK(bad == 0, "%d crops outside scale 0.08-1 / ratio 3/4-4/3", bad);
    CHECK(min_area < 0.2 && max_area > 0.8, "areas only span %.3f..%.3f", min_area, max_area);
    tu_image_free(&src);
    src = tu_image(500, 375, 3, const77);
    usi_image d = run(f, &src, 7);
    int off = 0;
    for (int i = 0; i < 64 * 64 * 3; i++) off += d.data[i] != 77;
    CHECK(off == 0, "a constant image changed in %d values", off);
    tu_image_free(&d);
    tu_image_free(&src);
    done(f, p);
}

static void test_rrc_determinism(usi_registry *r)
{
    usi_params *p;
    sample_fn f = make(r, "random_resized_crop", &p, NULL);
    usi_image src = tu_image(500, 375, 3, noise);
    usi_image a = run(f, &src, 5), b = run(f, &src, 5), c = run(f, &src, 6);
    CHECK(a.width == 224 && !memcmp(a.data, b.data, 224 * 224 * 3), "same seed, different crops");
    CHECK(memcmp(a.data, c.data, 224 * 224 * 3) != 0, "different seeds, same crop");
    tu_image_free(&a);
    tu_image_free(&b);
    tu_image_free(&c);
    tu_image_free(&src);
    done(f, p);
}

static void test_hflip(usi_registry *r)
{
    usi_params *p1, *p0, *ph;
    sample_fn always = make(r, "hflip", &p1, "p=1", NULL);
    sample_fn never = make(r, "hflip", &p0, "p=0", NULL);
    sample_fn half = make(r, "hflip", &ph, NULL);
    usi_image src = tu_image(37, 11, 3, noise);
    usi_image a = run(always, &src, 1), n = run(never, &src, 1);
    int wrong = 0;
    for (int y = 0; y < 11; y++)
        for (int x = 0; x < 37; x++)
            for (int k = 0; k < 3; k++) {
                wrong += tu_px(&a, x, y, k) != tu_px(&src, 36 - x, y, k);
                wrong += tu_px(&n, x, y, k) != tu_px(&src, x, y, k);
            }
    CHECK(wrong == 0, "%d pixels differ from an exact mirror / copy", wrong);
    int flips = 0;
    for (uint64_t s = 0; s < 2000; s++) {
        usi_image d = run(half, &src, s);
        flips += memcmp(d.data, src.data, 37 * 11 * 3) != 0;
        tu_image_free(&d);
    }
    CHECK(flips > 900 && flips < 1100, "p=0.5 flipped %d of 2000", flips);
    tu_image_free(&a);
    tu_image_free(&n);
    tu_image_free(&src);
    done(always, p1);
    done(never, p0);
    done(half, ph);
}

static void test_eval_crop(usi_registry *r)
{
    usi_params *p;
    sample_fn f = make(r, "eval_resize_crop", &p, "interpolation=bilinear", NULL);
    /* 240x180 -> shorter side floor(224/0.95) = 235, 313x235, centre 224. */
    usi_image src = tu_image(240, 180, 3, ramp_xy);
    usi_image d = run(f, &src, 0);
    CHECK(d.width == 224 && d.height == 224, "size %dx%d", d.width, d.height);
    double cx = (tu_px(&d, 111, 112, 0) + tu_px(&d, 112, 112, 0)) / 2.0;
    double cy = (tu_px(&d, 112, 111, 1) + tu_px(&d, 112, 112, 1)) / 2.0;
    CHECK(fabs(cx - 119.5) < 1.01 && fabs(cy - 89.5) < 1.01, "centre maps to (%.1f, %.1f)", cx, cy);
    /* 224 of 235 rows kept: the ramp spans 224 * 180 / 235 source rows */
    double span = tu_px(&d, 112, 223, 1) - tu_px(&d, 112, 0, 1);
    CHECK(fabs(span - 223.0 * 180.0 / 235.0) < 2.0, "vertical span %.1f", span);
    tu_image_free(&d);
    tu_image_free(&src);
    done(f, p);
}

static int has_colour(const usi_image *im, int r, int g, int b)
{
    for (int y = 0; y < im->height; y++)
        for (int x = 0; x < im->width; x++)
            if (tu_px(im, x, y, 0) == r && tu_px(im, x, y, 1) == g && tu_px(im, x, y, 2) == b) return 1;
    return 0;
}

static void test_rand_augment(usi_registry *r)
{
    usi_params *p, *p0, *pf;
    sample_fn f = make(r, "rand_augment", &p, NULL);
    sample_fn none = make(r, "rand_augment", &p0, "prob=0", NULL);
    sample_fn fill = make(r, "rand_augment", &pf, "magnitude=10", "magnitude_std=0", "fill=1, 2, 3", NULL);
    usi_image src = tu_image(64, 48, 3, noise);
    int changed = 0, same = 1;
    for (uint64_t s = 0; s < 100; s++) {
        usi_image a = run(f, &src, s), b = run(f, &src, s), z = run(none, &src, s);
        CHECK(a.width == 64 && a.height == 48 && a.channels == 3, "size changed");
        same &= !memcmp(a.data, b.data, 64 * 48 * 3);
        changed += memcmp(a.data, src.data, 64 * 48 * 3) != 0;
        CHECK(!memcmp(z.data, src.data, 64 * 48 * 3), "prob=0 changed the image (seed %d)", (int)s);
        tu_image_free(&a);
        tu_image_free(&b);
        tu_image_free(&z);
    }
    CHECK(same, "same seed gave different images");
    /* Each image gets a draw of 2 ops at p 0.5: about 3 in 4 change. */
    CHECK(changed > 55 && changed < 95, "%d of 100 images changed", changed);
    tu_image_free(&src);
    src = tu_image(64, 48, 3, flat_rgb);
    int filled = 0;
    for (uint64_t s = 0; s < 300; s++) {
        usi_image a = run(fill, &src, s);
        filled += has_colour(&a, 1, 2, 3);
        tu_image_free(&a);
    }
    /* 5 of 15 ops move pixels: P(at least one of 2 draws, each kept at 0.5) = 0.31 */
    CHECK(filled > 60 && filled < 130, "fill colour seen in %d of 300", filled);
    tu_image_free(&src);
    done(f, p);
    done(none, p0);
    done(fill, pf);
}

static int grey200(int x, int y, int k) { (void)x; (void)y; (void)k; return 200; }

/* magnitude_std as timm's mstd: a normal noise up to 100, uniform in
 * [0, magnitude] only above 100. On flat grey 200 only PosterizeIncreasing
 * at the clipped level 10 (0 bits) gives black: N(7, 100) clips there about
 * half the time (1 op in 15, so ~3% of images), uniform draws never do. */
static void test_rand_augment_mstd(usi_registry *r)
{
    usi_params *pn, *pu;
    sample_fn gauss = make(r, "rand_augment", &pn, "num_ops=1", "prob=1", "magnitude_std=100", NULL);
    sample_fn unif = make(r, "rand_augment", &pu, "num_ops=1", "prob=1", "magnitude_std=100.5", NULL);
    usi_image src = tu_image(16, 16, 3, grey200);
    int black_gauss = 0, black_unif = 0;
    for (uint64_t s = 0; s < 3000; s++) {
        usi_image a = run(gauss, &src, s), b = run(unif, &src, s);
        black_gauss += has_colour(&a, 0, 0, 0) && tu_px(&a, 8, 8, 0) == 0;
        black_unif += has_colour(&b, 0, 0, 0) && tu_px(&b, 8, 8, 0) == 0;
        tu_image_free(&a);
        tu_image_free(&b);
    }
    CHECK(black_gauss > 50 && black_gauss < 150, "magnitude_std 100: %d of 3000 posterized to black (~100)",
          black_gauss);
    CHECK(black_unif == 0, "magnitude_std 100.5: %d of 3000 posterized to black (uniform in [0, 7]: none)",
          black_unif);
    tu_image_free(&src);
    done(gauss, pn);
    done(unif, pu);
}

static double mean_of(const usi_image *im)
{
    double m = 0;
    for (int y = 0; y < im->height; y++)
        for (int x = 0; x < im->width * im->channels; x++) m += im->data[(size_t)y * (size_t)im->stride + (size_t)x];
    return m / ((double)im->width * im->height * im->channels);
}

static void test_color_jitter(usi_registry *r)
{
    usi_params *p0, *pb;
    sample_fn off = make(r, "color_jitter", &p0, "brightness=0", "contrast=0", "saturation=0", NULL);
    sample_fn bright = make(r, "color_jitter", &pb, "contrast=0", "saturation=0", NULL);
    usi_image src = tu_image(32, 24, 3, mid_rgb);
    usi_image a = run(off, &src, 3);
    CHECK(!memcmp(a.data, src.data, 32 * 24 * 3), "all ranges 0 changed the image");
    tu_image_free(&a);
    double lo = 9, hi = 0, m0 = mean_of(&src);
    for (uint64_t s = 0; s < 200; s++) {
        a = run(bright, &src, s);
        /* brightness scales every value by one factor in [0.6, 1.4] */
        double f = a.data[2] / 120.0;
        CHECK(fabs(a.data[0] - 60 * f) <= 1.0 && fabs(a.data[1] - 90 * f) <= 1.0, "not one factor");
        double ratio = mean_of(&a) / m0;
        if (ratio < lo) lo = ratio;
        if (ratio > hi) hi = ratio;
        tu_image_free(&a);
    }
    CHECK(lo > 0.59 && lo < 0.7 && hi < 1.41 && hi > 1.2, "brightness factors span %.3f..%.3f", lo, hi);
    tu_image_free(&src);
    done(off, p0);
    done(bright, pb);
}

static void test_random_erasing(usi_registry *r)
{
    usi_params *p1, *p0;
    sample_fn always = make(r, "random_erasing", &p1, "prob=1", "mode=const", "mean=0.0, 0.0, 1.0", NULL);
    sample_fn never = make(r, "random_erasing", &p0, "prob=0", NULL);
    usi_image src = tu_image(60, 50, 3, flat_rgb);
    int bad = 0;
    for (uint64_t s = 0; s < 200; s++) {
        usi_image a = run(always, &src, s), z = run(never, &src, s);
        CHECK(!memcmp(z.data, src.data, 60 * 50 * 3), "prob=0 erased");
        int erased = 0, x0 = 60, x1 = -1, y0 = 50, y1 = -1;
        for (int y = 0; y < 50; y++)
            for (int x = 0; x < 60; x++)
                if (tu_px(&a, x, y, 0) == 0 && tu_px(&a, x, y, 1) == 0 && tu_px(&a, x, y, 2) == 255) {
                    erased++;
                    x0 = x < x0 ? x : x0;
                    x1 = x > x1 ? x : x1;
                    y0 = y < y0 ? y : y0;
                    y1 = y > y1 ? y : y1;
                }
        double frac = erased / 3000.0;
        /* one filled rectangle, area within [0.02, 1/3] up to rounding */
        bad += erased != (x1 - x0 + 1) * (y1 - y0 + 1) || frac < 0.015 || frac > 0.36;
        tu_image_free(&a);
        tu_image_free(&z);
    }
    CHECK(bad == 0, "%d erasures were not one rectangle of 2..33%% of the image", bad);
    tu_image_free(&src);
    done(always, p1);
    done(never, p0);
}

/* ---- mixup / cutmix ----------------------------------------------------- */

enum { MB_N = 6, MB_C = 3, MB_H = 20, MB_W = 16, MB_K = 6 };

static void fill_batch(usi_batch *b, float *img, float *tgt, uint64_t seed)
{
    usi_rng r;
    usi_rng_seed(&r, seed, 99, 0, 0);
    for (size_t i = 0; i < (size_t)MB_N * MB_C * MB_H * MB_W; i++) img[i] = (float)usi_rng_uniform(&r);
    memset(tgt, 0, sizeof(float) * MB_N * MB_K);
    for (int i = 0; i < MB_N; i++) tgt[i * MB_K + i] = 1.0f; /* sample i has class i */
    *b = (usi_batch){sizeof *b, MB_N, MB_C, MB_H, MB_W, img, MB_K, tgt};
}

/* Returns the fraction of sample i's pixels taken from its partner. */
static double pasted_fraction(const float *orig, const float *now, int i)
{
    size_t plane = (size_t)MB_C * MB_H * MB_W;
    const float *mine = orig + (size_t)i * plane, *other = orig + (size_t)(MB_N - 1 - i) * plane;
    const float *x = now + (size_t)i * plane;
    size_t from_other = 0, from_mine = 0;
    for (size_t k = 0; k < plane; k++) {
        from_other += x[k] == other[k];
        from_mine += x[k] == mine[k];
    }
    return from_other + from_mine == plane ? (double)from_other / plane : -1.0;
}

static void test_mixup_cutmix(usi_registry *r)
{
    const usi_component *c = tu_component(r, "mixup_cutmix");
    const usi_augment_ops *ops = c->ops;
    usi_params *pd = tu_params(c, NULL), *pc = tu_params(c, "mixup_alpha=0", NULL);
    usi_params *pm = tu_params(c, "cutmix_alpha=0", NULL);
    void *dflt = tu_create(c, pd), *cut = tu_create(c, pc), *mix = tu_create(c, pm);
    static float img[MB_N * MB_C * MB_H * MB_W], orig[MB_N * MB_C * MB_H * MB_W], tgt[MB_N * MB_K];
    usi_batch b;
    int sum_bad = 0, area_bad = 0, mix_bad = 0, cutmixed = 0;
    for (uint64_t s = 0; s < 200; s++) {
        usi_rng rr;
        /* cutmix only: the partner's target weight is the pasted area */
        fill_batch(&b, img, tgt, s);
        memcpy(orig, img, sizeof img);
        usi_rng_seed(&rr, s, 0, 0, 1);
        MUST(ops->apply_batch(cut, &b, &rr));
        for (int i = 0; i < MB_N; i++) {
            double sum = 0;
            for (int k = 0; k < MB_K; k++) sum += tgt[i * MB_K + k];
            sum_bad += fabs(sum - 1.0) > 1e-5;
            double frac = pasted_fraction(orig, img, i);
            area_bad += fabs(frac - tgt[i * MB_K + (MB_N - 1 - i)]) > 1e-6;
        }
        /* mixup only: every pixel is lam * own + (1 - lam) * partner */
        fill_batch(&b, img, tgt, s);
        memcpy(orig, img, sizeof img);
        MUST(ops->apply_batch(mix, &b, &rr));
        size_t plane = (size_t)MB_C * MB_H * MB_W;
        for (int i = 0; i < MB_N; i++) {
            float lam = tgt[i * MB_K + i], other = tgt[i * MB_K + MB_N - 1 - i];
            mix_bad += fabs(lam + other - 1.0) > 1e-5;
            for (size_t k = 0; k < plane; k += 37) {
                float want = lam * orig[i * plane + k] + other * orig[(MB_N - 1 - i) * plane + k];
                mix_bad += fabsf(img[i * plane + k] - want) > 1e-4f;
            }
        }
        /* defaults: cutmix about half the time */
        fill_batch(&b, img, tgt, s);
        memcpy(orig, img, sizeof img);
        MUST(ops->apply_batch(dflt, &b, &rr));
        cutmixed += pasted_fraction(orig, img, 0) >= 0.0 && memcmp(orig, img, sizeof img) != 0;
    }
    CHECK(sum_bad == 0, "%d target rows do not sum to 1", sum_bad);
    CHECK(area_bad == 0, "%d cutmix target weights differ from the pasted area", area_bad);
    CHECK(mix_bad == 0, "%d mixup pixels or targets are off", mix_bad);
    CHECK(cutmixed > 70 && cutmixed < 130, "cutmix chosen %d of 200 times (switch 0.5)", cutmixed);
    c->destroy(dflt);
    c->destroy(cut);
    c->destroy(mix);
    usi_params_free(pd);
    usi_params_free(pc);
    usi_params_free(pm);
}

/* A batch stage whose target rows do not sum to 1 is named by the chain;
 * mixup_cutmix's rows pass the same check. */
static usi_error *scale_targets(void *inst, usi_batch *b, usi_rng *rng)
{
    (void)inst;
    (void)rng;
    for (int32_t i = 0; i < b->n * b->num_classes; i++) b->targets[i] *= 6.0f;
    return NULL;
}
static usi_error *no_create(const usi_params *p, void **inst)
{
    (void)p;
    *inst = NULL;
    return NULL;
}
static void no_destroy(void *inst) { (void)inst; }

static void test_batch_targets_checked(usi_registry *r)
{
    static const usi_augment_ops ops = {sizeof ops, USI_AUGMENT_BATCH, USI_AUGMENT_THREAD_SAFE, NULL, scale_targets};
    static const usi_component bad = {sizeof bad, USI_KIND_AUGMENT, 0, "scale_targets", "1.0.0", "test",
                                      NULL, 0, no_create, no_destroy, &ops};
    static float img[MB_N * MB_C * MB_H * MB_W], tgt[MB_N * MB_K];
    usi_batch b;
    usi_rng rng;
    usi_rng_seed(&rng, 1, 0, 0, 1);
    const usi_component *mc = tu_component(r, "mixup_cutmix");
    usi_params *pm = tu_params(mc, NULL), *pb = usi_params_new(&bad);
    usi_augchain *good, *broken;
    MUST(usi_augchain_new(&good));
    MUST(usi_augchain_add(good, mc, pm));
    fill_batch(&b, img, tgt, 3);
    usi_error *e = usi_augchain_run_batch(good, &b, &rng);
    CHECK(!e, "mixup_cutmix's targets refused: %s", usi_error_message(e));
    usi_error_free(e);
    MUST(usi_augchain_new(&broken));
    MUST(usi_augchain_add(broken, mc, pm));
    MUST(usi_augchain_add(broken, &bad, pb));
    fill_batch(&b, img, tgt, 3);
    e = usi_augchain_run_batch(broken, &b, &rng);
    CHECK(e && strstr(usi_error_message(e), "augment 'scale_targets': target row 0 of the batch does not sum to 1"),
          "rows summing to 6: %s", e ? usi_error_message(e) : "accepted");
    usi_error_free(e);
    usi_augchain_free(good);
    usi_augchain_free(broken);
    usi_params_free(pm);
    usi_params_free(pb);
}

int main(void)
{
    usi_registry *r = tu_registry();
    test_registry(r);
    test_rrc_geometry(r);
    test_rrc_determinism(r);
    test_hflip(r);
    test_eval_crop(r);
    test_rand_augment(r);
    test_rand_augment_mstd(r);
    test_mixup_cutmix(r);
    test_batch_targets_checked(r);
    test_color_jitter(r);
    test_random_erasing(r);
    usi_registry_free(r);
    return tu_finish("test_augment");
}
