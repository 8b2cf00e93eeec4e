/* BMP, Netpbm, WebP and TIFF files against PIL: each case of
 * tests/data/formats/manifest.txt (written by gen_formats.py beside it) is
 * a file and the RGB PIL's Image.open(f).convert("RGB") gives it, saved as
 * PNG, to be matched bit for bit; or a file to be refused with a message
 * saying what it is. usi_decode_size must agree with the decoded size, and
 * usi_read_image_file must let each file through its first-bytes check. */
#include "data/decode.h"
#include "testutil.h"
#include "util/error.h"

static const char *dir;
static usi_decoder *dec;

static usi_error *decode_file(const char *name, usi_image *im, int32_t *w, int32_t *h)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    usi_error *e = usi_read_image_file(path, &buf, &cap, &len);
    *w = *h = -1;
    if (!e) e = usi_decode_size(dec, buf, len, w, h);
    if (!e) e = usi_decode_image(dec, buf, len, 0, im);
    free(buf);
    return e;
}

static void run_decode(const char *name, const char *ref_name)
{
    usi_image im = {sizeof im, 0, 0, 0, 0, NULL}, ref = {sizeof ref, 0, 0, 0, 0, NULL};
    int32_t w, h, rw, rh;
    usi_error *e = decode_file(name, &im, &w, &h);
    MUST(decode_file(ref_name, &ref, &rw, &rh));
    if (e) {
        CHECK(0, "%s: %s", name, usi_error_message(e));
        usi_error_free(e);
    } else {
        long differ = 0;
        int worst = 0;
        for (int32_t y = 0; y < ref.height && im.width == ref.width && im.height == ref.height; y++)
            for (int32_t i = 0; i < ref.width * 3; i++) {
                int d = abs(im.data[(size_t)y * (size_t)im.stride + (size_t)i] -
                            ref.data[(size_t)y * (size_t)ref.stride + (size_t)i]);
                differ += d > 0;
                worst = d > worst ? d : worst;
            }
        CHECK(im.width == ref.width && im.height == ref.height && w == im.width && h == im.height,
              "%s: %dx%d (header %dx%d), PIL %dx%d", name, im.width, im.height, w, h, ref.width, ref.height);
        CHECK(differ == 0, "%s: %ld values differ from PIL's, by up to %d", name, differ, worst);
        if (!differ) printf("%-24s %dx%d, as its reference\n", name, im.width, im.height);
    }
    free(im.data);
    free(ref.data);
}

static void run_error(const char *name, const char *text)
{
    usi_image im = {sizeof im, 0, 0, 0, 0, NULL};
    int32_t w, h;
    usi_error *e = decode_file(name, &im, &w, &h);
    CHECK(e && strstr(usi_error_message(e), text), "%s: expected an error saying '%s', got %s", name, text,
          e ? usi_error_message(e) : "an image");
    if (e) printf("%-24s refused: %s\n", name, usi_error_message(e));
    usi_error_free(e);
    free(im.data);
}

/* "decode FILE REFERENCE" or "error FILE TEXT" */
static void run_line(char *line)
{
    char kind[16], name[256];
    int at = 0;
    if (sscanf(line, "%15s %255s %n", kind, name, &at) < 2)
        CHECK(0, "manifest: cannot read '%s'", line);
    else if (!strcmp(kind, "decode"))
        run_decode(name, line + at);
    else if (!strcmp(kind, "error"))
        run_error(name, line + at);
    else
        CHECK(0, "manifest: cannot read '%s'", line);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_formats DIR (the folder of manifest.txt)\n");
        return 2;
    }
    dir = argv[1];
    MUST(usi_decoder_new(&dec));
    tu_each_manifest_line(dir, run_line);
    usi_decoder_free(dec);
    return tu_finish("test_formats");
}
