/* The shared resampler (compiled in from augment/common): the AVX2 kernel
 * and the portable loop give identical pixels; known values come out. */
#include "../../augment/common/augcommon.h"
#include "testutil.h"

static int noise(int x, int y, int k) { return (x * 131 + y * 71 + k * 29 + ((x * y) % 17) * 13) & 255; }
static int checker(int x, int y, int k) { (void)k; return ((x + y) & 1) ? 255 : 0; }

static void test_simd_matches_scalar(void)
{
    usi_image src = tu_image(317, 211, 3, noise);
    static const double boxes[][4] = {
        {0, 0, 317, 211}, {13.5, 7.25, 150, 120}, {100, 50, 33, 29}, {0, 0, 5, 3}, {300, 200, 17, 11},
    };
    static const int sizes[] = {224, 64, 17, 1};
    static const int32_t interps[] = {USI_INTERP_BICUBIC, USI_INTERP_BILINEAR, USI_INTERP_NEAREST};
    uint8_t *a = malloc(224 * 224 * 3), *b = malloc(224 * 224 * 3);
    int differ = 0;
    for (size_t i = 0; i < sizeof boxes / sizeof *boxes; i++)
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
            for (size_t m = 0; m < 3; m++) {
                int n = sizes[s];
                aug_resample_simd = 1;
                CHECK(aug_resize_box(&src, boxes[i][0], boxes[i][1], boxes[i][2], boxes[i][3], a, n, n,
                                     n * 3, interps[m]) == 0, "resize failed");
                aug_resample_simd = 0;
                CHECK(aug_resize_box(&src, boxes[i][0], boxes[i][1], boxes[i][2], boxes[i][3], b, n, n,
                                     n * 3, interps[m]) == 0, "resize failed");
                differ += memcmp(a, b, (size_t)n * n * 3) != 0;
            }
    CHECK(differ == 0, "%d resizes differ between the SIMD and portable loops", differ);
    aug_resample_simd = 1;
    free(a);
    free(b);
    tu_image_free(&src);
}

static void test_known_values(void)
{
    usi_image src = tu_image(64, 64, 3, checker);
    uint8_t out[32 * 32 * 3];
    /* halving a one-pixel checkerboard averages it to mid grey (away from
     * the border, where the filter window is cut) */
    aug_resize_box(&src, 0, 0, 64, 64, out, 32, 32, 96, USI_INTERP_BILINEAR);
    int off = 0;
    for (int y = 1; y < 31; y++)
        for (int i = 3; i < 31 * 3; i++) off += out[y * 96 + i] < 126 || out[y * 96 + i] > 129;
    CHECK(off == 0, "%d values of a halved checkerboard are not mid grey", off);
    /* an exact copy at scale 1 */
    usi_image n = tu_image(40, 30, 3, noise);
    uint8_t same[40 * 30 * 3];
    aug_resize_box(&n, 0, 0, 40, 30, same, 40, 30, 120, USI_INTERP_BICUBIC);
    CHECK(!memcmp(same, n.data, sizeof same), "a 1:1 resize changed pixels");
    /* a row stride wider than the row */
    uint8_t wide[30 * 200];
    memset(wide, 7, sizeof wide);
    aug_resize_box(&n, 0, 0, 40, 30, wide, 40, 30, 200, USI_INTERP_BICUBIC);
    int bad = 0;
    for (int y = 0; y < 30; y++) {
        bad += memcmp(wide + y * 200, n.data + y * 120, 120) != 0;
        bad += wide[y * 200 + 150] != 7;
    }
    CHECK(bad == 0, "%d rows wrong with a padded destination stride", bad);
    tu_image_free(&n);
    tu_image_free(&src);
}

int main(void)
{
    test_simd_matches_scalar();
    test_known_values();
    return tu_finish("test_resample");
}
