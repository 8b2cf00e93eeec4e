/* The shared resampler (compiled in from augment/common): the AVX2 kernel
 * and the portable loop give identical pixels; known values come out; a
 * window is exactly the crop of the whole resize. (Parity with PIL itself
 * is test_pil_parity.) */
#include "../../augment/common/augcommon.h"
#include "testutil.h"

static int noise(int x, int y, int k) { return (x * 131 + y * 71 + k * 29 + ((x * y) % 17) * 13) & 255; }
static int checker(int x, int y, int k) { (void)k; return ((x + y) & 1) ? 255 : 0; }

static void test_simd_matches_scalar(void)
{
    usi_image src = tu_image(317, 211, 3, noise);
    /* full size, then a window: x0, y0, w, h */
    static const int sizes[][6] = {
        {224, 224, 0, 0, 224, 224}, {640, 400, 13, 7, 150, 120}, {64, 40, 3, 5, 33, 29},
        {17, 17, 0, 0, 17, 17}, {317, 90, 100, 20, 200, 50}, {150, 211, 10, 0, 100, 211}, {1, 1, 0, 0, 1, 1},
    };
    static const int32_t interps[] = {USI_INTERP_BICUBIC, USI_INTERP_BILINEAR, USI_INTERP_NEAREST};
    uint8_t *a = malloc(224 * 224 * 3), *b = malloc(224 * 224 * 3);
    int differ = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        for (size_t m = 0; m < 3; m++) {
            const int *z = sizes[i];
            aug_resample_simd = 1;
            CHECK(aug_resize_window(&src, z[0], z[1], z[2], z[3], a, z[4], z[5], z[4] * 3, interps[m]) == 0,
                  "resize failed");
            aug_resample_simd = 0;
            CHECK(aug_resize_window(&src, z[0], z[1], z[2], z[3], b, z[4], z[5], z[4] * 3, interps[m]) == 0,
                  "resize failed");
            differ += memcmp(a, b, (size_t)z[4] * (size_t)z[5] * 3) != 0;
        }
    CHECK(differ == 0, "%d resizes differ between the SIMD and portable loops", differ);
    aug_resample_simd = 1;
    free(a);
    free(b);
    tu_image_free(&src);
}

static void test_window_is_crop(void)
{
    usi_image src = tu_image(97, 61, 3, noise);
    enum { FW = 150, FH = 80, X0 = 37, Y0 = 11, W = 64, H = 50 };
    static uint8_t full[FW * FH * 3], win[W * H * 3];
    int bad = 0;
    for (int32_t m = 0; m < 3; m++) {
        aug_resize_window(&src, FW, FH, 0, 0, full, FW, FH, FW * 3, m);
        aug_resize_window(&src, FW, FH, X0, Y0, win, W, H, W * 3, m);
        for (int y = 0; y < H; y++)
            bad += memcmp(win + y * W * 3, full + ((Y0 + y) * FW + X0) * 3, W * 3) != 0;
    }
    CHECK(bad == 0, "%d window rows differ from the crop of the full resize", bad);
    CHECK(aug_resize_window(&src, FW, FH, X0, Y0, win, FW, H, FW * 3, 2) == -2, "a window off the image was accepted");
    tu_image_free(&src);
}

static void test_known_values(void)
{
    usi_image src = tu_image(64, 64, 3, checker);
    uint8_t out[32 * 32 * 3];
    /* halving a one-pixel checkerboard averages it to mid grey (away from
     * the border, where the filter window is cut) */
    aug_resize_window(&src, 32, 32, 0, 0, out, 32, 32, 96, USI_INTERP_BILINEAR);
    int off = 0;
    for (int y = 1; y < 31; y++)
        for (int i = 3; i < 31 * 3; i++) off += out[y * 96 + i] < 126 || out[y * 96 + i] > 129;
    CHECK(off == 0, "%d values of a halved checkerboard are not mid grey", off);
    /* an exact copy at scale 1 */
    usi_image n = tu_image(40, 30, 3, noise);
    uint8_t same[40 * 30 * 3];
    aug_resize_window(&n, 40, 30, 0, 0, same, 40, 30, 120, USI_INTERP_BICUBIC);
    CHECK(!memcmp(same, n.data, sizeof same), "a 1:1 resize changed pixels");
    /* a row stride wider than the row */
    uint8_t wide[30 * 200];
    memset(wide, 7, sizeof wide);
    aug_resize_window(&n, 40, 30, 0, 0, wide, 40, 30, 200, USI_INTERP_BICUBIC);
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
    test_window_is_crop();
    test_known_values();
    return tu_finish("test_resample");
}
