/* Decoders on generated images with known pixels, on photographs shipped by
 * Debian packages, and on broken files. */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

#include "data/augchain.h"
#include "data/decode.h"
#include "data/loader.h"
#include "testutil.h"

static int is_jpeg_name(const char *p) { return strstr(p, ".jpg") != NULL; }
#include "util/error.h"

static int grad(int x, int y, int k) { return (x * 3 + y * 2 + k * 50) & 255; }
static int smooth(int x, int y, int k) { return 40 + (x + y + 20 * k) % 160; }
static int grey(int x, int y, int k) { (void)k; return (x * 7 + y * 3) & 255; }

static usi_image decode(usi_decoder *d, const uint8_t *buf, size_t len, int32_t min_side, usi_error **e)
{
    usi_image im = {sizeof im, 0, 0, 0, 0, NULL};
    *e = usi_decode_image(d, buf, len, min_side, &im);
    return im;
}

static void test_png_exact(usi_decoder *d, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/rgb.png", dir);
    usi_image src = tu_image(37, 23, 3, grad);
    MUST(usi_png_write(path, &src));
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    MUST(usi_read_file(path, &buf, &cap, &len));
    usi_error *e;
    usi_image out = decode(d, buf, len, 0, &e);
    CHECK(!e, "%s", e ? usi_error_message(e) : "");
    CHECK(out.width == 37 && out.height == 23 && out.channels == 3, "%dx%dx%d", out.width,
          out.height, out.channels);
    CHECK(!e && !memcmp(out.data, src.data, 37 * 23 * 3), "PNG round trip is not exact");
    usi_error_free(e);
    tu_image_free(&out);
    /* grey PNG -> three equal channels */
    usi_image g = tu_image(19, 7, 1, grey);
    snprintf(path, sizeof path, "%s/grey.png", dir);
    MUST(usi_png_write(path, &g));
    MUST(usi_read_file(path, &buf, &cap, &len));
    out = decode(d, buf, len, 0, &e);
    int wrong = 0;
    for (int y = 0; !e && y < 7; y++)
        for (int x = 0; x < 19; x++)
            for (int k = 0; k < 3; k++) wrong += tu_px(&out, x, y, k) != tu_px(&g, x, y, 0);
    CHECK(!e && out.channels == 3 && wrong == 0, "grey PNG: %d wrong values", wrong);
    usi_error_free(e);
    tu_image_free(&out);
    tu_image_free(&g);
    tu_image_free(&src);
    free(buf);
}

static double psnr(const usi_image *a, const usi_image *b)
{
    double se = 0;
    size_t n = 0;
    for (int y = 0; y < a->height; y++)
        for (int x = 0; x < a->width; x++)
            for (int k = 0; k < 3; k++, n++) {
                double dv = (double)tu_px(a, x, y, a->channels == 3 ? k : 0) - tu_px(b, x, y, k);
                se += dv * dv;
            }
    return se == 0 ? 99.0 : 10.0 * log10(255.0 * 255.0 / (se / n));
}

static void test_jpeg_generated(usi_decoder *d)
{
    usi_image src = tu_image(96, 64, 3, smooth), g = tu_image(40, 30, 1, grey);
    uint8_t *jpg = NULL;
    size_t len = 0;
    usi_error *e;
    CHECK(tu_jpeg_encode(&src, 98, &jpg, &len) == 0, "encode");
    usi_image out = decode(d, jpg, len, 0, &e);
    CHECK(!e && out.width == 96 && out.height == 64, "decode failed");
    if (!e) CHECK(psnr(&src, &out) > 38.0, "PSNR %.1f dB", psnr(&src, &out));
    usi_error_free(e);
    tu_image_free(&out);
    free(jpg);
    CHECK(tu_jpeg_encode(&g, 98, &jpg, &len) == 0, "encode grey");
    out = decode(d, jpg, len, 0, &e);
    int unequal = 0;
    for (int i = 0; !e && i < 40 * 30; i++) unequal += out.data[3 * i] != out.data[3 * i + 1] || out.data[3 * i] != out.data[3 * i + 2];
    CHECK(!e && out.channels == 3 && unequal == 0, "grey JPEG not fed as 3 equal channels");
    if (!e) CHECK(psnr(&g, &out) > 35.0, "grey PSNR %.1f", psnr(&g, &out));
    usi_error_free(e);
    tu_image_free(&out);
    free(jpg);
    tu_image_free(&src);
    tu_image_free(&g);
}

static void test_dct_scaling(usi_decoder *d)
{
    usi_image src = tu_image(512, 384, 3, smooth);
    uint8_t *jpg = NULL;
    size_t len = 0;
    usi_error *e;
    CHECK(tu_jpeg_encode(&src, 90, &jpg, &len) == 0, "encode");
    usi_image full = decode(d, jpg, len, 0, &e);
    CHECK(!e && full.width == 512 && full.height == 384, "full decode %dx%d", full.width, full.height);
    usi_error_free(e);
    usi_image small = decode(d, jpg, len, 100, &e);
    CHECK(!e && small.width < 512 && small.height >= 100 && small.width >= 100,
          "min side 100 gave %dx%d", small.width, small.height);
    CHECK(!e && small.width == 192 && small.height == 144, "expected 3/8 scale, got %dx%d",
          small.width, small.height);
    usi_error_free(e);
    usi_image same = decode(d, jpg, len, 384, &e);
    CHECK(!e && same.width == 512, "min side 384 must not shrink (%d)", same.width);
    usi_error_free(e);
    tu_image_free(&full);
    tu_image_free(&small);
    tu_image_free(&same);
    tu_image_free(&src);
    free(jpg);
}

static const char *const photos[] = {
    "/usr/lib/python3/dist-packages/sklearn/datasets/images/china.jpg",
    "/usr/lib/python3/dist-packages/sklearn/datasets/images/flower.jpg",
    "/usr/share/doc/opencv-doc/examples/data/baboon.jpg",
    "/usr/share/doc/opencv-doc/examples/data/fruits.jpg",
    "/usr/share/doc/opencv-doc/examples/data/lena.jpg",
    "/usr/share/doc/opencv-doc/examples/data/home.jpg",
    "/usr/share/doc/opencv-doc/examples/data/smarties.png",
    "/usr/share/doc/opencv-doc/examples/data/left01.jpg", /* a grey JPEG */
    NULL,
};

static void test_photographs(usi_decoder *d)
{
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    int found = 0;
    for (const char *const *p = photos; *p; p++) {
        if (access(*p, R_OK) != 0) continue;
        found++;
        MUST(usi_read_file(*p, &buf, &cap, &len));
        int32_t w = 0, h = 0;
        usi_error *e = usi_decode_size(d, buf, len, &w, &h);
        CHECK(!e, "%s: %s", *p, e ? usi_error_message(e) : "");
        usi_error_free(e);
        usi_image im = decode(d, buf, len, 0, &e);
        CHECK(!e, "%s: %s", *p, e ? usi_error_message(e) : "");
        if (!e) {
            CHECK(im.width == w && im.height == h && im.channels == 3, "%s: %dx%d vs header %dx%d", *p,
                  im.width, im.height, w, h);
            double sum = 0, sq = 0;
            size_t n = (size_t)im.width * im.height * 3;
            for (size_t i = 0; i < n; i++) {
                sum += im.data[i];
                sq += (double)im.data[i] * im.data[i];
            }
            double mean = sum / n, sd = sqrt(sq / n - mean * mean);
            CHECK(mean > 20 && mean < 235 && sd > 10, "%s: mean %.1f sd %.1f", *p, mean, sd);
        }
        usi_error_free(e);
        tu_image_free(&im);
        if (is_jpeg_name(*p)) {
            /* cut inside the entropy-coded data */
            im = decode(d, buf, len * 7 / 10, 0, &e);
            CHECK(e != NULL, "%s cut to 70%% decoded without an error", *p);
            usi_error_free(e);
            tu_image_free(&im);
        }
    }
    CHECK(found >= 3, "only %d of the photographs are installed; install opencv-doc (scripts/install-deps does)",
          found);
    free(buf);
}

/* Every image opencv-doc ships: 1-bit, 8-bit grey, palette, RGB and RGBA
 * PNGs and JPEGs must all decode to RGB of the header's size. */
static void test_all_package_images(usi_decoder *d)
{
    const char *dir = "/usr/share/doc/opencv-doc/examples/data";
    DIR *dd = opendir(dir);
    if (!dd) {
        printf("note: opencv-doc is not installed; package images skipped\n");
        return;
    }
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dd))) {
        const char *dot = strrchr(de->d_name, '.');
        if (!dot || (strcmp(dot, ".png") && strcmp(dot, ".jpg"))) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        MUST(usi_read_file(path, &buf, &cap, &len));
        int32_t w = 0, h = 0;
        usi_error *e = usi_decode_size(d, buf, len, &w, &h);
        usi_image im = {sizeof im, 0, 0, 0, 0, NULL};
        if (!e) e = usi_decode_image(d, buf, len, 0, &im);
        CHECK(!e && im.width == w && im.height == h && im.channels == 3, "%s: %s", path,
              e ? usi_error_message(e) : "size or channels differ from the header");
        usi_error_free(e);
        free(im.data);
        n++;
    }
    closedir(dd);
    free(buf);
    CHECK(n > 20, "only %d package images found", n);
}

static void expect_error(usi_decoder *d, const uint8_t *buf, size_t len, const char *what)
{
    usi_error *e;
    usi_image im = decode(d, buf, len, 0, &e);
    CHECK(e != NULL, "%s decoded without an error", what);
    if (e) printf("  %s -> %s\n", what, usi_error_message(e));
    usi_error_free(e);
    tu_image_free(&im);
}

static void test_bad_inputs(usi_decoder *d, const char *dir)
{
    usi_image src = tu_image(64, 48, 3, smooth);
    uint8_t *jpg = NULL;
    size_t len = 0;
    tu_jpeg_encode(&src, 90, &jpg, &len);
    expect_error(d, jpg, 0, "zero bytes");
    expect_error(d, jpg, len / 2, "truncated JPEG");
    expect_error(d, jpg, 3, "JPEG of 3 bytes");
    const char *text = "this is not an image, only text in a .jpg file\n";
    expect_error(d, (const uint8_t *)text, strlen(text), "text");
    char path[4096];
    snprintf(path, sizeof path, "%s/crc.png", dir);
    MUST(usi_png_write(path, &src));
    uint8_t *png = NULL;
    size_t cap = 0, plen = 0;
    MUST(usi_read_file(path, &png, &cap, &plen));
    png[plen - 20] ^= 0x55; /* the zlib stream's Adler-32, the IDAT data's last bytes */
    expect_error(d, png, plen, "PNG whose IDAT data is damaged");
    MUST(usi_read_file(path, &png, &cap, &plen));
    png[29] ^= 0x01; /* IHDR's CRC */
    expect_error(d, png, plen, "PNG with a bad IHDR CRC");
    /* the file reader's own reasons */
    snprintf(path, sizeof path, "%s/empty.jpg", dir);
    tu_write_file(path, "", 0);
    usi_error *e = usi_read_file(path, &png, &cap, &plen);
    CHECK(e && strstr(usi_error_message(e), "empty"), "empty file not reported as empty");
    usi_error_free(e);
    snprintf(path, sizeof path, "%s/missing.jpg", dir);
    e = usi_read_file(path, &png, &cap, &plen);
    CHECK(e != NULL, "missing file read");
    usi_error_free(e);
    e = usi_read_file(dir, &png, &cap, &plen);
    CHECK(e != NULL, "a folder read as a file");
    usi_error_free(e);
    free(png);
    free(jpg);
    tu_image_free(&src);
}

/* A FIFO named like an image is refused at once instead of waiting in
 * open() for a writer (the loader's threads and `usi predict` read through
 * usi_read_file). SIGALRM ends the test if it blocks. */
static void test_fifo_refused(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/fifo.png", dir);
    CHECK(mkfifo(path, 0644) == 0, "mkfifo %s", path);
    uint8_t *buf = NULL;
    size_t cap = 0, len = 7;
    alarm(20);
    usi_error *e = usi_read_file(path, &buf, &cap, &len);
    alarm(0);
    CHECK(e && strstr(usi_error_message(e), "not a regular file (a FIFO)"), "FIFO: %s",
          e ? usi_error_message(e) : "read without an error");
    CHECK(len == 0, "FIFO: %zu bytes", len);
    usi_error_free(e);
    free(buf);
    unlink(path);
}

/* A JPEG that stops after its tables: TurboJPEG's header call succeeds
 * without a size, which must read as a truncated file, not as a size made
 * of whatever was in memory. */
static void test_jpeg_without_frame(usi_decoder *d)
{
    static const uint8_t hdr[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, 0x01,
                                  0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00};
    usi_error *e;
    usi_image im = decode(d, hdr, sizeof hdr, 0, &e);
    CHECK(e && strstr(usi_error_message(e), "truncated JPEG"), "header-only JPEG: %s",
          e ? usi_error_message(e) : "decoded");
    usi_error_free(e);
    tu_image_free(&im);
    int32_t w = -1, h = -1;
    e = usi_decode_size(d, hdr, sizeof hdr, &w, &h);
    CHECK(e && strstr(usi_error_message(e), "truncated JPEG") && w == 0 && h == 0,
          "header-only JPEG size: %dx%d, %s", w, h, e ? usi_error_message(e) : "no error");
    usi_error_free(e);
}

/* A real JPEG whose frame header is patched to 9000x8000: refused before
 * any allocation, with the limit and what to do. */
static void test_jpeg_over_pixel_limit(usi_decoder *d)
{
    usi_image src = tu_image(16, 16, 3, smooth);
    uint8_t *jpg = NULL;
    size_t len = 0;
    CHECK(tu_jpeg_encode(&src, 90, &jpg, &len) == 0, "encode");
    size_t sof = 0;
    for (size_t i = 2; i + 9 < len && !sof; i++)
        if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) sof = i;
    CHECK(sof != 0, "no SOF0 marker in the encoded JPEG");
    if (sof) {
        jpg[sof + 5] = 8000 >> 8; /* height */
        jpg[sof + 6] = 8000 & 255;
        jpg[sof + 7] = 9000 >> 8; /* width */
        jpg[sof + 8] = 9000 & 255;
        usi_error *e;
        usi_image im = decode(d, jpg, len, 0, &e);
        const char *msg = e ? usi_error_message(e) : "decoded";
        CHECK(e && strstr(msg, "9000x8000 is 72.0 MP, over the 67.1 MP limit") && strstr(msg, "downscale"),
              "9000x8000 JPEG: %s", msg);
        usi_error_free(e);
        tu_image_free(&im);
    }
    free(jpg);
    tu_image_free(&src);
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Offset of the first IDAT chunk's length field; exits when there is none. */
static size_t find_idat(const uint8_t *png, size_t len)
{
    for (size_t pos = 8; pos + 12 <= len; pos += 12 + get_be32(png + pos))
        if (!memcmp(png + pos + 4, "IDAT", 4)) return pos;
    fprintf(stderr, "no IDAT chunk in the PNG written\n");
    exit(1);
}

/* Fix a chunk's CRC after its data was edited, as a careful vandal would. */
static void put_crc(uint8_t *png, size_t pos)
{
    uint32_t n = get_be32(png + pos);
    uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), png + pos + 4, n + 4);
    for (int i = 0; i < 4; i++) png[pos + 8 + n + (size_t)i] = (uint8_t)(c >> (24 - 8 * i));
}

/* A PNG whose IDAT CRC is wrong while its data is intact: PIL (so
 * torchvision) decodes it without a word, so usi decodes it too (the same
 * training data) and says so in the log, once per file; data damage under
 * a correct CRC is still refused by zlib's own checksum. */
static void test_png_idat_crc_only(usi_decoder *d, const char *dir)
{
    char root[2048], cls[2100], path[2200];
    snprintf(root, sizeof root, "%s/crc_only", dir);
    snprintf(cls, sizeof cls, "%s/x", root);
    mkdir(root, 0755);
    mkdir(cls, 0755);
    snprintf(path, sizeof path, "%s/crc_only.png", cls);
    usi_image src = tu_image(16, 16, 3, grad);
    MUST(usi_png_write(path, &src));
    uint8_t *png = NULL;
    size_t cap = 0, len = 0;
    MUST(usi_read_file(path, &png, &cap, &len));
    size_t at = find_idat(png, len);
    usi_error *e;
    usi_image out = decode(d, png, len, 0, &e);
    CHECK(!e && usi_decoder_note(d) == NULL, "an intact PNG got a note: %s", usi_decoder_note(d));
    usi_error_free(e);
    png[at + 8 + get_be32(png + at) + 1] ^= 0x20; /* one bit of the CRC, nothing else */
    tu_image_free(&out);
    out = decode(d, png, len, 0, &e);
    CHECK(!e, "CRC-only corruption refused: %s", e ? usi_error_message(e) : "");
    CHECK(!e && !memcmp(out.data, src.data, 16 * 16 * 3), "CRC-only corruption changed the pixels");
    CHECK(usi_decoder_note(d) && strstr(usi_decoder_note(d), "CRC"), "no note says the CRC is wrong");
    usi_error_free(e);
    tu_image_free(&out);
    tu_write_file(path, png, len);
    /* the same bit in the data, CRC recomputed: zlib's Adler-32 catches it */
    uint8_t *bad = malloc(len);
    memcpy(bad, png, len);
    bad[at + 8 + get_be32(bad + at) + 1] ^= 0x20;
    bad[at + 8 + get_be32(bad + at) / 2] ^= 0x20;
    put_crc(bad, at);
    out = decode(d, bad, len, 0, &e);
    CHECK(e != NULL, "damaged IDAT data with a correct CRC decoded");
    usi_error_free(e);
    tu_image_free(&out);
    free(bad);
    /* through the loader: one log line naming the file and the decision,
     * not one per epoch */
    usi_dataset *ds;
    MUST(usi_dataset_open(root, &ds));
    usi_augchain *ch;
    MUST(usi_augchain_new(&ch));
    usi_loader_opts o = usi_loader_opts_default();
    o.batch_size = 1;
    o.img_size = 16;
    o.workers = 1;
    o.drop_last = 0;
    usi_loader *l;
    MUST(usi_loader_new(ds, ch, &o, &l));
    char log_path[4200];
    snprintf(log_path, sizeof log_path, "%s/log.txt", dir);
    fflush(stderr);
    int saved = dup(2), fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    int delivered = 0;
    for (int epoch = 0; epoch < 2; epoch++) {
        MUST(usi_loader_start_epoch(l, epoch));
        usi_u8_batch b;
        for (;;) {
            MUST(usi_loader_next(l, &b));
            if (b.n == 0) break;
            delivered += b.n;
        }
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    size_t log_len = 0;
    uint8_t *log = NULL;
    size_t log_cap = 0;
    MUST(usi_read_file(log_path, &log, &log_cap, &log_len));
    log = realloc(log, log_len + 1);
    log[log_len] = 0;
    const char *hit = strstr((const char *)log, "crc_only.png");
    CHECK(delivered == 2, "the CRC-only file was delivered %d times in 2 epochs", delivered);
    printf("loader log: %s", (const char *)log);
    CHECK(hit && strstr((const char *)log, "CRC is wrong") && strstr((const char *)log, "is used"),
          "the log does not say the file is used despite its CRC:\n%s", (const char *)log);
    CHECK(!hit || !strstr(hit + 1, "crc_only.png"), "the note was logged more than once:\n%s", (const char *)log);
    free(log);
    usi_loader_free(l);
    usi_augchain_free(ch);
    usi_dataset_free(ds);
    free(png);
    tu_image_free(&src);
}

/* CMYK as cjpeg or Photoshop write it: TurboJPEG stores CMYK as YCCK with
 * an Adobe marker. PIL inverts the stored bytes and converts with
 * R = (255 - K) - round(C * (255 - K) / 255); the reference here computes
 * that in float64 from the CMYK bytes TurboJPEG decodes, and every value
 * must match (truncating instead of rounding is off by one on ~half). */
static int cmyk_ref(int c, int k) { return k - (int)floor((255.0 - c) * k / 255.0 + 0.5); }

static void test_cmyk_matches_pil(usi_decoder *d)
{
    enum { W = 256, H = 256 };
    uint8_t *cmyk = malloc((size_t)W * H * 4), *raw = malloc((size_t)W * H * 4);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = cmyk + ((size_t)y * W + (size_t)x) * 4;
            p[0] = (uint8_t)x;
            p[1] = (uint8_t)(255 - x);
            p[2] = (uint8_t)((x * 7 + y * 3) & 255);
            p[3] = (uint8_t)y;
        }
    tjhandle tc = tjInitCompress(), td = tjInitDecompress();
    unsigned char *jpg = NULL;
    unsigned long len = 0;
    CHECK(tjCompress2(tc, cmyk, W, 0, H, TJPF_CMYK, &jpg, &len, TJSAMP_444, 95, 0) == 0, "CMYK encode: %s",
          tjGetErrorStr2(tc));
    CHECK(tjDecompress2(td, jpg, len, raw, W, 0, H, TJPF_CMYK, 0) == 0, "CMYK decode: %s", tjGetErrorStr2(td));
    usi_error *e;
    usi_image out = decode(d, jpg, len, 0, &e);
    CHECK(!e && out.width == W && out.height == H, "CMYK JPEG: %s", e ? usi_error_message(e) : "wrong size");
    size_t wrong = 0, truncating_differs = 0, n = (size_t)W * H;
    for (size_t i = 0; !e && i < n; i++)
        for (int ch = 0; ch < 3; ch++) {
            int c = raw[4 * i + (size_t)ch], k = raw[4 * i + 3];
            wrong += out.data[3 * i + (size_t)ch] != cmyk_ref(c, k);
            truncating_differs += c * k / 255 != cmyk_ref(c, k);
        }
    CHECK(!e && wrong == 0, "CMYK to RGB: %zu of %zu values differ from PIL's formula", wrong, n * 3);
    CHECK(truncating_differs > n * 3 / 4, "the image tests too few roundings (%zu)", truncating_differs);
    usi_error_free(e);
    tu_image_free(&out);
    tjFree(jpg);
    tjDestroy(tc);
    tjDestroy(td);
    free(cmyk);
    free(raw);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* Appends a chunk (length, type, data, CRC) at png + *len. */
static void add_chunk(uint8_t *png, size_t *len, const char *type, const uint8_t *data, uint32_t n)
{
    put_be32(png + *len, n);
    memcpy(png + *len + 4, type, 4);
    if (n) memcpy(png + *len + 8, data, n);
    put_crc(png, *len);
    *len += 12 + n;
}

/* A w x h palette PNG of bit depth 1, every pixel index 0, compressed as
 * hard as zlib can; malloc'ed. */
static uint8_t *flat_palette_png(uint32_t w, uint32_t h, size_t *len)
{
    size_t row = 1 + (w + 7) / 8, raw_len = row * h;
    uint8_t *raw = calloc(raw_len, 1);
    uLongf z_len = compressBound((uLong)raw_len);
    uint8_t *z = malloc(z_len);
    CHECK(compress2(z, &z_len, raw, (uLong)raw_len, 9) == Z_OK, "compress2");
    uint8_t *png = malloc(z_len + 128);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    uint8_t ihdr[13] = {0}, plte[6] = {10, 200, 30, 255, 255, 255};
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = 1; /* bit depth */
    ihdr[9] = 3; /* palette */
    memcpy(png, sig, 8);
    *len = 8;
    add_chunk(png, len, "IHDR", ihdr, 13);
    add_chunk(png, len, "PLTE", plte, 6);
    add_chunk(png, len, "IDAT", z, (uint32_t)z_len);
    add_chunk(png, len, "IEND", NULL, 0);
    free(raw);
    free(z);
    return png;
}

/* The plausibility bound counts a PNG's pixels at their bit depth against
 * deflate's 1032:1: PIL's Image.new('P', (3000, 3000)).save() (1 bit per
 * pixel, about 1.2 KB) decodes, while a header claiming far more than the
 * file can hold is still refused before any allocation. */
static void test_png_plausible_sizes(usi_decoder *d)
{
    size_t len;
    uint8_t *png = flat_palette_png(3000, 3000, &len);
    printf("  flat 3000x3000 1-bit palette PNG: %zu bytes\n", len);
    CHECK(len < 1300, "the flat PNG takes %zu bytes", len);
    usi_error *e;
    usi_image out = decode(d, png, len, 0, &e);
    CHECK(!e && out.width == 3000 && out.height == 3000, "flat palette PNG: %s",
          e ? usi_error_message(e) : "wrong size");
    size_t wrong = 0;
    for (size_t i = 0; !e && i < (size_t)3000 * 3000; i++)
        wrong += out.data[3 * i] != 10 || out.data[3 * i + 1] != 200 || out.data[3 * i + 2] != 30;
    CHECK(wrong == 0, "%zu pixels are not palette entry 0", wrong);
    usi_error_free(e);
    tu_image_free(&out);
    /* the same file claiming 8192x8192: 8.4 MB packed from 1.2 KB */
    put_be32(png + 16, 8192);
    put_be32(png + 20, 8192);
    put_crc(png, 8);
    out = decode(d, png, len, 0, &e);
    CHECK(e && strstr(usi_error_message(e), "implausible") && strstr(usi_error_message(e), "8192x8192"),
          "8192x8192 from %zu bytes: %s", len, e ? usi_error_message(e) : "decoded");
    usi_error_free(e);
    tu_image_free(&out);
    int32_t w = 0, h = 0;
    e = usi_decode_size(d, png, len, &w, &h);
    CHECK(e && strstr(usi_error_message(e), "implausible"), "size of 8192x8192: %s",
          e ? usi_error_message(e) : "accepted");
    usi_error_free(e);
    free(png);
    /* an 8-bit RGB header of 4000x4000 on a 16x16 file */
    usi_image src = tu_image(16, 16, 3, grad);
    char path[] = "/tmp/usi-test-plausible-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    MUST(usi_png_write(path, &src));
    uint8_t *buf = NULL;
    size_t cap = 0;
    MUST(usi_read_file(path, &buf, &cap, &len));
    put_be32(buf + 16, 4000);
    put_be32(buf + 20, 4000);
    put_crc(buf, 8);
    out = decode(d, buf, len, 0, &e);
    CHECK(e && strstr(usi_error_message(e), "implausible"), "4000x4000 RGB from %zu bytes: %s", len,
          e ? usi_error_message(e) : "decoded");
    usi_error_free(e);
    tu_image_free(&out);
    unlink(path);
    free(buf);
    tu_image_free(&src);
}

static void make_sparse(const char *path, const void *head, size_t n, off_t size)
{
    CHECK(tu_write_file(path, head, n) == 0, "write %s", path);
    CHECK(truncate(path, size) == 0, "truncate %s", path);
}

/* usi_read_image_file refuses a file of no format it reads from its
 * first bytes: a 1 GiB file named .jpg costs no memory, and the message
 * shows those bytes. */
static void test_read_image_sniffs(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/huge.jpg", dir);
    make_sparse(path, "GIF89a\x01\x00", 8, (off_t)1 << 30);
    uint8_t *buf = NULL;
    size_t cap = 0, len = 7;
    usi_error *e = usi_read_image_file(path, &buf, &cap, &len);
    const char *msg = e ? usi_error_message(e) : "read";
    CHECK(e && strstr(msg, "not a JPEG, PNG, BMP, PPM/PGM, TIFF or WebP file (it starts with 47 49 46 38 39 61 01 00, a GIF)"), "GIF: %s",
          msg);
    CHECK(buf == NULL && cap == 0 && len == 0, "the refused file took a buffer of %zu bytes", cap);
    usi_error_free(e);
    unlink(path);
    snprintf(path, sizeof path, "%s/text.png", dir);
    tu_write_file(path, "<html>", 6);
    e = usi_read_image_file(path, &buf, &cap, &len);
    msg = e ? usi_error_message(e) : "read";
    CHECK(e && strstr(msg, "(it starts with 3c 68 74 6d 6c 3e)"), "text: %s", msg);
    usi_error_free(e);
    usi_image im = {sizeof im, 0, 0, 0, 0, NULL};
    usi_decoder *d;
    MUST(usi_decoder_new(&d));
    e = usi_decode_image(d, (const uint8_t *)"<html>", 6, 0, &im);
    msg = e ? usi_error_message(e) : "decoded";
    CHECK(e && strstr(msg, "(it starts with 3c 68 74 6d 6c 3e)"), "decoding text: %s", msg);
    usi_error_free(e);
    usi_decoder_free(d);
    /* a real PNG reads the same through both */
    snprintf(path, sizeof path, "%s/real.png", dir);
    usi_image src = tu_image(21, 13, 3, grad);
    MUST(usi_png_write(path, &src));
    uint8_t *plain = NULL;
    size_t plain_cap = 0, plain_len = 0;
    MUST(usi_read_file(path, &plain, &plain_cap, &plain_len));
    MUST(usi_read_image_file(path, &buf, &cap, &len));
    CHECK(len == plain_len && !memcmp(buf, plain, len), "usi_read_image_file read %zu bytes, not the %zu", len,
          plain_len);
    free(plain);
    free(buf);
    tu_image_free(&src);
}

/* A buffer kept from file to file (a loader worker's) grows for a file
 * over USI_READ_KEEP_BYTES and is given back at the next smaller file. */
static void test_read_buffer_shrinks(const char *dir)
{
    char big[4096], small[4096];
    snprintf(big, sizeof big, "%s/big.jpg", dir);
    snprintf(small, sizeof small, "%s/small.png", dir);
    size_t big_size = USI_READ_KEEP_BYTES + ((size_t)6 << 20);
    make_sparse(big, "\xff\xd8\xff\xe0", 4, (off_t)big_size);
    usi_image src = tu_image(9, 9, 3, grad);
    MUST(usi_png_write(small, &src));
    struct stat st;
    CHECK(stat(small, &st) == 0, "stat %s", small);
    usi_error *(*readers[2])(const char *, uint8_t **, size_t *, size_t *) = {usi_read_file, usi_read_image_file};
    for (int r = 0; r < 2; r++) {
        uint8_t *buf = NULL;
        size_t cap = 0, len = 0;
        MUST(readers[r](small, &buf, &cap, &len));
        MUST(readers[r](big, &buf, &cap, &len));
        CHECK(len == big_size && cap >= big_size, "reader %d: big file: %zu bytes, buffer %zu", r, len, cap);
        MUST(readers[r](small, &buf, &cap, &len));
        CHECK(len == (size_t)st.st_size && cap < ((size_t)1 << 20), "reader %d: buffer still %zu bytes after a "
              "%zu-byte file", r, cap, len);
        free(buf);
    }
    unlink(big);
    tu_image_free(&src);
}

int main(void)
{
    usi_decoder *d;
    MUST(usi_decoder_new(&d));
    char *dir = tu_tempdir("decode");
    test_png_exact(d, dir);
    test_jpeg_generated(d);
    test_dct_scaling(d);
    test_photographs(d);
    test_all_package_images(d);
    test_bad_inputs(d, dir);
    test_png_idat_crc_only(d, dir);
    test_fifo_refused(dir);
    test_jpeg_without_frame(d);
    test_jpeg_over_pixel_limit(d);
    test_cmyk_matches_pil(d);
    test_png_plausible_sizes(d);
    test_read_image_sniffs(dir);
    test_read_buffer_shrinks(dir);
    usi_decoder_free(d);
    tu_rm_rf(dir);
    free(dir);
    return tu_finish("test_decode");
}
