/* Pixel parity with PIL, torchvision and timm: every case of
 * tests/data/pil/manifest.txt (written by gen_pil_refs.py beside it, from
 * PIL's own output) is recomputed here and compared value by value. The
 * eval transform runs as the plugin the trainer loads; RandomResizedCrop's
 * resize and the RandAugment operations run from their sources, compiled
 * in. A case may differ from PIL by at most one grey level. */
#include <math.h>
#include <zlib.h>

#include "../../augment/common/augcommon.h"
#include "../../augment/rand_augment/ops.h"
#include "data/decode.h"
#include "plugin/host.h"
#include "testutil.h"
#include "util/error.h"
#include "util/rng.h"

#define OPENCV "/usr/share/doc/opencv-doc/examples/data/"
#define FMNIST "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"

static const char *ref_dir;
static usi_decoder *dec;
static usi_registry *reg;

/* The worst difference of each kind of case, for the summary. */
typedef struct worst {
    char what[64];
    int max;
    int cases;
} worst;
static worst worsts[64];
static int n_worsts;

static void note_worst(const char *what, int d)
{
    for (int i = 0; i < n_worsts; i++)
        if (!strcmp(worsts[i].what, what)) {
            worsts[i].max = d > worsts[i].max ? d : worsts[i].max;
            worsts[i].cases++;
            return;
        }
    if (n_worsts < 64) {
        snprintf(worsts[n_worsts].what, sizeof worsts[n_worsts].what, "%s", what);
        worsts[n_worsts].max = d;
        worsts[n_worsts++].cases = 1;
    }
}

static usi_image blank(void) { return (usi_image){sizeof(usi_image), 0, 0, 0, 0, NULL}; }

static usi_image decode_file(const char *path)
{
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    usi_image im = blank();
    usi_error *e = usi_read_file(path, &buf, &cap, &len);
    if (!e) e = usi_decode_image(dec, buf, len, 0, &im);
    free(buf);
    if (e) {
        fprintf(stderr, "%s: %s (opencv-doc and dataset-fashion-mnist come from scripts/install-deps)\n", path,
                usi_error_message(e));
        exit(1);
    }
    return im;
}

/* Fashion-MNIST test image i as RGB, as torchvision's ImageFolder loads it. */
static usi_image fmnist(int index)
{
    gzFile f = gzopen(FMNIST, "rb");
    uint8_t px[784];
    int ok = f && gzseek(f, 16 + (z_off_t)index * 784, SEEK_SET) >= 0 && gzread(f, px, 784) == 784;
    if (f) gzclose(f);
    if (!ok) {
        fprintf(stderr, "%s: cannot read image %d; install dataset-fashion-mnist (scripts/install-deps)\n", FMNIST,
                index);
        exit(1);
    }
    usi_image im = blank();
    MUST(usi_host_api_get()->image_alloc(&im, 28, 28, 3));
    for (int i = 0; i < 784; i++) memset(im.data + (size_t)(i / 28) * (size_t)im.stride + (size_t)(i % 28) * 3, px[i], 3);
    return im;
}

static usi_image load_input(const char *spec)
{
    char path[4096];
    if (!strncmp(spec, "photo:", 6)) {
        snprintf(path, sizeof path, OPENCV "%s", spec + 6);
        return decode_file(path);
    }
    if (!strncmp(spec, "fmnist:", 7)) return fmnist(atoi(spec + 7));
    snprintf(path, sizeof path, "%s/%s", ref_dir, spec + 4);
    return decode_file(path);
}

/* Compare out (packed w x h x 3) with the reference PNG; returns the worst
 * difference and prints the case. */
static int compare(const char *line, const uint8_t *out, size_t out_stride, const char *ref_name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", ref_dir, ref_name);
    usi_image ref = decode_file(path);
    int worst_d = 0;
    long differ = 0;
    for (int32_t y = 0; y < ref.height; y++)
        for (int32_t i = 0; i < ref.width * 3; i++) {
            int d = abs(out[(size_t)y * out_stride + (size_t)i] - ref.data[(size_t)y * (size_t)ref.stride + (size_t)i]);
            differ += d > 0;
            worst_d = d > worst_d ? d : worst_d;
        }
    printf("max diff %d, %ld of %d values differ: %s\n", worst_d, differ, ref.width * ref.height * 3, line);
    free(ref.data);
    return worst_d;
}

static void check_source(const char *name, int w, int h, unsigned long crc)
{
    char path[4096];
    snprintf(path, sizeof path, OPENCV "%s", name);
    usi_image im = decode_file(path);
    unsigned long c = crc32(0L, Z_NULL, 0);
    for (int32_t y = 0; y < im.height; y++)
        c = crc32(c, im.data + (size_t)y * (size_t)im.stride, (uInt)(im.width * 3));
    CHECK(im.width == w && im.height == h && c == crc,
          "%s decodes to %dx%d crc %08lx here but %dx%d crc %08lx in PIL: the decoders differ, so the "
          "cases built on it cannot match", name, im.width, im.height, c, w, h, crc);
    free(im.data);
}

static int32_t interp_of(const char *s)
{
    int32_t v = aug_interp_from_name(s);
    if (v < 0) {
        fprintf(stderr, "manifest: unknown interpolation '%s'\n", s);
        exit(1);
    }
    return v;
}

static void run_eval(const char *line, const char *in, int size, double pct, const char *interp, const char *ref)
{
    const usi_component *c = tu_component(reg, "eval_resize_crop");
    char a[64], b[64], d[64];
    snprintf(a, sizeof a, "size=%d", size);
    snprintf(b, sizeof b, "crop_pct=%.17g", pct);
    snprintf(d, sizeof d, "interpolation=%s", interp);
    usi_params *p = tu_params(c, a, b, d, NULL);
    void *inst = tu_create(c, p);
    usi_image src = load_input(in), dst = blank();
    usi_rng r;
    usi_rng_seed(&r, 1, 2, 3, 4);
    MUST(((const usi_augment_ops *)c->ops)->apply_sample(inst, &src, &dst, &r));
    int d1 = compare(line, dst.data, (size_t)dst.stride, ref);
    CHECK(d1 <= 1, "eval transform differs from torchvision by %d levels: %s", d1, line);
    note_worst("eval Resize+CenterCrop", d1);
    c->destroy(inst);
    usi_params_free(p);
    free(src.data);
    free(dst.data);
}

/* Both the vectorised and the portable loop must give PIL's pixels. */
static void run_resize(const char *line, const char *kind, const usi_image *src, int ow, int oh,
                       const char *interp, const char *ref)
{
    uint8_t *out = malloc((size_t)ow * (size_t)oh * 3);
    int worst_d = 0;
    for (int simd = 1; simd >= 0; simd--) {
        aug_resample_simd = simd;
        CHECK(aug_resize_window(src, ow, oh, 0, 0, out, ow, oh, ow * 3, interp_of(interp)) == 0, "resize failed");
        int d = compare(line, out, (size_t)ow * 3, ref);
        worst_d = d > worst_d ? d : worst_d;
    }
    aug_resample_simd = 1;
    CHECK(worst_d <= 1, "%s differs from PIL by %d levels: %s", kind, worst_d, line);
    char what[64];
    snprintf(what, sizeof what, "%s %s", kind, interp);
    note_worst(what, worst_d);
    free(out);
}

static void run_op(const char *line, const char *in, const char *name, double magnitude, int negate,
                   const char *interp, const char *ref)
{
    int increasing = 0, op = ra_op_find(name, &increasing);
    if (op < 0) {
        fprintf(stderr, "manifest: unknown operation '%s'\n", name);
        exit(1);
    }
    ra_settings s = {interp_of(interp), increasing, 0.45, {124, 116, 104}};
    usi_image im = load_input(in);
    uint8_t *scratch = malloc((size_t)im.width * (size_t)im.height * 3);
    ra_apply_op(op, magnitude, negate, &s, &im, scratch);
    int d = compare(line, im.data, (size_t)im.stride, ref);
    CHECK(d <= 1, "%s differs from timm by %d levels: %s", name, d, line);
    char what[64];
    int geometric = op == RA_ROTATE || op == RA_SHEAR_X || op == RA_SHEAR_Y || op == RA_TRANSLATE_X ||
                    op == RA_TRANSLATE_Y;
    snprintf(what, sizeof what, "op %s%s%s", name, geometric ? " " : "", geometric ? interp : "");
    note_worst(what, d);
    free(scratch);
    free(im.data);
}

static void run_line(char *line)
{
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", line);
    char *tok[12];
    int n = 0;
    for (char *t = strtok(line, " \n"); t && n < 12; t = strtok(NULL, " \n")) tok[n++] = t;
    if (n == 0 || tok[0][0] == '#') return;
    copy[strcspn(copy, "\n")] = 0;
    if (!strcmp(tok[0], "source") && n == 5) {
        check_source(tok[1], atoi(tok[2]), atoi(tok[3]), strtoul(tok[4], NULL, 16));
    } else if (!strcmp(tok[0], "eval") && n == 6) {
        run_eval(copy, tok[1], atoi(tok[2]), strtod(tok[3], NULL), tok[4], tok[5]);
    } else if (!strcmp(tok[0], "resize") && n == 6) {
        usi_image src = load_input(tok[1]);
        run_resize(copy, "resize", &src, atoi(tok[2]), atoi(tok[3]), tok[4], tok[5]);
        free(src.data);
    } else if (!strcmp(tok[0], "rrc") && n == 10) {
        usi_image src = load_input(tok[1]);
        /* torchvision's resized_crop: the crop alone is resized */
        usi_image crop = aug_view(&src, atoi(tok[3]), atoi(tok[2]), atoi(tok[5]), atoi(tok[4]));
        run_resize(copy, "RandomResizedCrop resize", &crop, atoi(tok[6]), atoi(tok[7]), tok[8], tok[9]);
        free(src.data);
    } else if (!strcmp(tok[0], "op") && n == 7) {
        run_op(copy, tok[1], tok[2], strtod(tok[3], NULL), atoi(tok[4]), tok[5], tok[6]);
    } else {
        fprintf(stderr, "manifest: cannot read '%s'\n", copy);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_pil_parity DIR (the folder of manifest.txt)\n");
        return 2;
    }
    ref_dir = argv[1];
    MUST(usi_decoder_new(&dec));
    reg = tu_registry();
    int cases = tu_each_manifest_line(ref_dir, run_line);
    printf("\nworst difference from PIL/timm, by kind (%d manifest lines):\n", cases);
    for (int i = 0; i < n_worsts; i++) printf("  %-40s %d  (%d cases)\n", worsts[i].what, worsts[i].max, worsts[i].cases);
    usi_registry_free(reg);
    usi_decoder_free(dec);
    return tu_finish("test_pil_parity");
}
