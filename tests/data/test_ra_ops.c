/* The RandAugment operations one by one (compiled in from the plugin's
 * source): properties of the colour ops, exact geometry for the affine
 * ones, and the whole-pixel shortcuts of shear/translate against the full
 * 4x4 sums. Pixel parity with timm/PIL is test_pil_parity. */
#include <math.h>

#include "../../augment/rand_augment/ops.h"
#include "testutil.h"

static int noise(int x, int y, int k) { return (x * 131 + y * 71 + k * 29 + ((x * y) % 17) * 13) & 255; }
static int narrow(int x, int y, int k) { return 50 + (x + 3 * y + k) % 101; }

static usi_image copy_of(const usi_image *a)
{
    usi_image b = *a;
    size_t n = (size_t)a->stride * (size_t)a->height;
    b.data = malloc(n);
    memcpy(b.data, a->data, n);
    return b;
}

static void test_point_ops(void)
{
    usi_image src = tu_image(40, 30, 3, noise);
    usi_image a = copy_of(&src);
    int bad = 0;
    ra_invert(&a);
    for (int i = 0; i < 40 * 30 * 3; i++) bad += a.data[i] != 255 - src.data[i];
    memcpy(a.data, src.data, 40 * 30 * 3);
    ra_posterize(&a, 2);
    for (int i = 0; i < 40 * 30 * 3; i++) bad += a.data[i] != (src.data[i] & 0xC0);
    memcpy(a.data, src.data, 40 * 30 * 3);
    ra_solarize(&a, 128);
    for (int i = 0; i < 40 * 30 * 3; i++) bad += a.data[i] != (src.data[i] >= 128 ? 255 - src.data[i] : src.data[i]);
    memcpy(a.data, src.data, 40 * 30 * 3);
    ra_solarize_add(&a, 30, 128);
    for (int i = 0; i < 40 * 30 * 3; i++)
        bad += a.data[i] != (src.data[i] < 128 ? (src.data[i] + 30 > 255 ? 255 : src.data[i] + 30) : src.data[i]);
    CHECK(bad == 0, "%d wrong values from invert/posterize/solarize", bad);
    memcpy(a.data, src.data, 40 * 30 * 3);
    ra_brightness(&a, 0.0);
    for (int i = 0; i < 40 * 30 * 3; i++) bad += a.data[i] != 0;
    memcpy(a.data, src.data, 40 * 30 * 3);
    ra_color(&a, 0.0);
    for (int i = 0; i < 40 * 30; i++) bad += a.data[3 * i] != a.data[3 * i + 1] || a.data[3 * i] != a.data[3 * i + 2];
    memcpy(a.data, src.data, 40 * 30 * 3);
    ra_contrast(&a, 0.0);
    for (int i = 0; i < 40 * 30 * 3; i++) bad += a.data[i] != a.data[0];
    memcpy(a.data, src.data, 40 * 30 * 3);
    ra_contrast(&a, 1.0);
    for (int i = 0; i < 40 * 30 * 3; i++) bad += a.data[i] != src.data[i];
    CHECK(bad == 0, "%d wrong values from the enhance ops at factors 0 and 1", bad);
    tu_image_free(&a);
    tu_image_free(&src);
}

static void test_histogram_ops(void)
{
    usi_image src = tu_image(64, 64, 3, narrow);
    usi_image a = copy_of(&src);
    ra_auto_contrast(&a);
    int lo = 255, hi = 0;
    for (int i = 0; i < 64 * 64 * 3; i++) {
        lo = a.data[i] < lo ? a.data[i] : lo;
        hi = a.data[i] > hi ? a.data[i] : hi;
    }
    CHECK(lo == 0 && hi == 255, "auto_contrast range %d..%d", lo, hi);
    memcpy(a.data, src.data, 64 * 64 * 3);
    ra_equalize(&a);
    /* 101 equally common levels spread over the whole range */
    int seen[256] = {0}, distinct = 0;
    for (int i = 0; i < 64 * 64 * 3; i += 3) distinct += !seen[a.data[i]]++;
    CHECK(distinct >= 95 && seen[0] > 0, "equalize gave %d levels", distinct);
    hi = 0;
    for (int i = 0; i < 64 * 64 * 3; i++) hi = a.data[i] > hi ? a.data[i] : hi;
    CHECK(hi >= 245, "equalize tops out at %d", hi);
    tu_image_free(&a);
    tu_image_free(&src);
}

static const uint8_t fill[3] = {1, 2, 3};

static void test_rotate_90(void)
{
    enum { N = 24 };
    usi_image src = tu_image(N, N, 3, noise);
    uint8_t out[N * N * 3];
    /* PIL rotate(90), counter-clockwise, matrix rounded as PIL does */
    double m[6] = {0, -1, N, 1, 0, 0};
    ra_affine(&src, out, m, USI_INTERP_BICUBIC, fill);
    int bad = 0;
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++)
            for (int k = 0; k < 3; k++) bad += out[(y * N + x) * 3 + k] != tu_px(&src, N - 1 - y, x, k);
    CHECK(bad == 0, "rotate 90: %d values differ from the exact rotation", bad);
    tu_image_free(&src);
}

static void test_fast_paths(void)
{
    usi_image src = tu_image(50, 40, 3, noise);
    uint8_t fast[50 * 40 * 3], slow[50 * 40 * 3];
    const double cases[4][6] = {
        {1, 0.21, 0, 0, 1, 0},      /* shear x */
        {1, 0, -7.3, 0, 1, 0},      /* translate x */
        {1, 0, 0, -0.27, 1, 0},     /* shear y */
        {1, 0, 0, 0, 1, 5.6},       /* translate y */
    };
    for (int c = 0; c < 4; c++) {
        double general[6];
        memcpy(general, cases[c], sizeof general);
        general[0] = nextafter(1.0, 2.0); /* not exactly 1: takes the general path */
        ra_affine(&src, fast, cases[c], USI_INTERP_BICUBIC, fill);
        ra_affine(&src, slow, general, USI_INTERP_BICUBIC, fill);
        int worst = 0, filled = 0;
        for (int i = 0; i < 50 * 40 * 3; i++) {
            int d = abs(fast[i] - slow[i]);
            worst = d > worst ? d : worst;
        }
        for (int i = 0; i < 50 * 40; i++) filled += fast[3 * i] == 1 && fast[3 * i + 1] == 2 && fast[3 * i + 2] == 3;
        CHECK(worst <= 1, "case %d: fast path differs by %d", c, worst);
        CHECK(filled > 0, "case %d: nothing uncovered got the fill colour", c);
    }
    tu_image_free(&src);
}

int main(void)
{
    test_point_ops();
    test_histogram_ops();
    test_rotate_90();
    test_fast_paths();
    return tu_finish("test_ra_ops");
}
