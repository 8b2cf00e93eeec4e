/* JPEGs that cjpeg writes and TurboJPEG's header call refuses or a size
 * bound got wrong, decoded against djpeg's pixels (libjpeg's defaults, the
 * ones PIL decodes with):
 *   - sampling factors without a TurboJPEG name (-sample 3x1, 4x2, 1x4),
 *     which tjDecompressHeader3 calls "Could not determine subsampling
 *     type" though PIL decodes them;
 *   - an arithmetic-coded flat image, a few hundred bytes for 16 MP.
 * Needs cjpeg and djpeg (package libjpeg-turbo-progs); without them the
 * test exits 77, which meson reports as skipped. */
#include <sys/stat.h>
#include <unistd.h>

#include "data/decode.h"
#include "testutil.h"
#include "util/error.h"

static int have_tools(void)
{
    return system("command -v cjpeg >/dev/null 2>&1 && command -v djpeg >/dev/null 2>&1") == 0;
}

static int run(const char *cmd)
{
    int rc = system(cmd);
    CHECK(rc == 0, "%s: exit status %d", cmd, rc);
    return rc;
}

/* Writes a binary PNM (P5 grey, P6 RGB) of w x h from f. */
static void write_pnm(const char *path, int w, int h, int channels, int (*f)(int x, int y, int k))
{
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fprintf(fp, "P%d\n%d %d\n255\n", channels == 1 ? 5 : 6, w, h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < channels; k++) fputc(f(x, y, k), fp);
    fclose(fp);
}

/* Reads a binary PNM as 3-channel pixels (grey repeated); exits on a
 * format it does not expect. */
static uint8_t *read_pnm(const char *path, int *w, int *h)
{
    FILE *fp = fopen(path, "rb");
    int kind = 0, maxval = 0;
    if (!fp || fscanf(fp, "P%d %d %d %d", &kind, w, h, &maxval) != 4 || (kind != 5 && kind != 6) ||
        maxval != 255 || fgetc(fp) == EOF) {
        fprintf(stderr, "%s: not a PNM djpeg writes\n", path);
        exit(1);
    }
    size_t n = (size_t)*w * (size_t)*h, c = kind == 5 ? 1 : 3;
    uint8_t *in = malloc(n * c), *rgb = malloc(n * 3);
    if (fread(in, c, n, fp) != n) {
        fprintf(stderr, "%s: short\n", path);
        exit(1);
    }
    fclose(fp);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < 3; k++) rgb[3 * i + k] = in[c * i + (c == 3 ? k : 0)];
    free(in);
    return rgb;
}

/* Decodes jpg with usi and compares with djpeg's output of the same file,
 * at full size or (scale > 1) at 1/scale through min_side. */
static void compare_with_djpeg(usi_decoder *d, const char *dir, const char *jpg, int scale, const char *what)
{
    char ppm[4200], cmd[9000];
    snprintf(ppm, sizeof ppm, "%s/djpeg.pnm", dir);
    snprintf(cmd, sizeof cmd, "djpeg -scale 1/%d -outfile '%s' '%s'", scale, ppm, jpg);
    if (run(cmd)) return;
    int w = 0, h = 0;
    uint8_t *want = read_pnm(ppm, &w, &h);
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    MUST(usi_read_image_file(jpg, &buf, &cap, &len));
    int32_t hw = 0, hh = 0;
    usi_error *e = usi_decode_size(d, buf, len, &hw, &hh);
    CHECK(!e, "%s: size: %s", what, e ? usi_error_message(e) : "");
    usi_error_free(e);
    usi_image im = {sizeof im, 0, 0, 0, 0, NULL};
    e = usi_decode_image(d, buf, len, scale > 1 ? (w < h ? w : h) : 0, &im);
    CHECK(!e, "%s: %s", what, e ? usi_error_message(e) : "");
    if (!e) {
        CHECK(im.width == w && im.height == h, "%s: %dx%d, djpeg %dx%d", what, im.width, im.height, w, h);
        size_t wrong = 0;
        for (int y = 0; im.width == w && im.height == h && y < h; y++)
            wrong += memcmp(im.data + (size_t)y * (size_t)im.stride, want + (size_t)y * (size_t)w * 3,
                            (size_t)w * 3) != 0;
        CHECK(wrong == 0, "%s: %zu of %d rows differ from djpeg's", what, wrong, h);
    }
    printf("  %s: %s (%zu bytes)\n", what, e ? "refused" : "decoded as djpeg does", len);
    usi_error_free(e);
    free(im.data);
    free(buf);
    free(want);
}

static int texture(int x, int y, int k) { return (x * 5 + y * 3 + k * 70 + ((x * y) & 31)) & 255; }
static int flat(int x, int y, int k)
{
    (void)x, (void)y, (void)k;
    return 131;
}

static void test_unusual_sampling(usi_decoder *d, const char *dir)
{
    static const char *const samplings[] = {"3x1,1x1,1x1", "4x2,1x1,1x1", "1x4,1x1,1x1", "2x1,1x2,1x1"};
    char ppm[4200], jpg[4200], cmd[9000], what[64];
    snprintf(ppm, sizeof ppm, "%s/src.ppm", dir);
    write_pnm(ppm, 203, 157, 3, texture); /* odd sides: partial MCUs at the edges */
    for (size_t i = 0; i < sizeof samplings / sizeof *samplings; i++) {
        snprintf(jpg, sizeof jpg, "%s/s%zu.jpg", dir, i);
        snprintf(cmd, sizeof cmd, "cjpeg -quality 90 -sample %s -outfile '%s' '%s'", samplings[i], jpg, ppm);
        if (run(cmd)) continue;
        snprintf(what, sizeof what, "-sample %s", samplings[i]);
        compare_with_djpeg(d, dir, jpg, 1, what);
        snprintf(what, sizeof what, "-sample %s at 1/2", samplings[i]);
        compare_with_djpeg(d, dir, jpg, 2, what);
    }
}

/* 4000x4000 flat grey, arithmetic-coded: 48 MB of RGB from a few hundred
 * bytes, which PIL opens; the size bound used for Huffman coding must not
 * refuse it. */
static void test_arithmetic_flat(usi_decoder *d, const char *dir)
{
    char pgm[4200], jpg[4200], cmd[9000];
    snprintf(pgm, sizeof pgm, "%s/flat.pgm", dir);
    snprintf(jpg, sizeof jpg, "%s/flat_arith.jpg", dir);
    write_pnm(pgm, 4000, 4000, 1, flat);
    snprintf(cmd, sizeof cmd, "cjpeg -arithmetic -grayscale -outfile '%s' '%s'", jpg, pgm);
    if (run(cmd)) return;
    unlink(pgm);
    compare_with_djpeg(d, dir, jpg, 1, "arithmetic-coded flat 4000x4000");
}

int main(void)
{
    if (!have_tools()) {
        printf("cjpeg or djpeg is missing (package libjpeg-turbo-progs): skipped\n");
        return 77;
    }
    usi_decoder *d;
    MUST(usi_decoder_new(&d));
    char *dir = tu_tempdir("cjpeg");
    test_unusual_sampling(d, dir);
    test_arithmetic_flat(d, dir);
    usi_decoder_free(d);
    tu_rm_rf(dir);
    free(dir);
    return tu_finish("test_jpeg_cjpeg");
}
