/* `usi data import-idx`: Fashion-MNIST's IDX files (Debian's
 * dataset-fashion-mnist) to an ImageFolder of grey PNGs:
 * <out>/train/<k>_<name>/<n>.png (60,000) and <out>/val/... (10,000). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/commands.h"
#include "data/decode.h"
#include "util/error.h"

#define FMNIST_DEFAULT_SRC "/usr/share/datasets/fashion-mnist"

static const char *const fmnist_classes[10] = {
    "0_tshirt_top", "1_trouser", "2_pullover", "3_dress", "4_coat",
    "5_sandal", "6_shirt", "7_sneaker", "8_bag", "9_ankle_boot",
};

typedef struct idx_file {
    uint8_t *data;     /* the payload after the header */
    uint32_t count, rows, cols;
} idx_file;

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Read a gzip'ed IDX file of unsigned bytes with 1 (labels) or 3 dims. */
static usi_error *idx_read(const char *path, int dims, idx_file *out)
{
    memset(out, 0, sizeof *out);
    gzFile f = gzopen(path, "rb");
    if (!f) return usi_error_new(USI_ERR_IO, "%s: %s", path, errno ? strerror(errno) : "cannot open");
    uint8_t head[16];
    int hlen = 4 + 4 * dims;
    usi_error *e = NULL;
    if (gzread(f, head, (unsigned)hlen) != hlen || head[0] || head[1] || head[2] != 0x08 || head[3] != dims)
        e = usi_error_new(USI_ERR_INVALID, "%s: not an IDX file of %d-d unsigned bytes", path, dims);
    if (!e) {
        out->count = be32(head + 4);
        out->rows = dims == 3 ? be32(head + 8) : 1;
        out->cols = dims == 3 ? be32(head + 12) : 1;
        size_t n = (size_t)out->count * out->rows * out->cols;
        if (out->count > 10000000 || out->rows > 4096 || out->cols > 4096)
            e = usi_error_new(USI_ERR_INVALID, "%s: implausible sizes in the header", path);
        else if (!(out->data = malloc(n ? n : 1)))
            e = usi_error_new(USI_ERR_NOMEM, "%s: out of memory", path);
        else if (gzread(f, out->data, (unsigned)n) != (int)n)
            e = usi_error_new(USI_ERR_IO, "%s: file is shorter than its header says", path);
    }
    gzclose(f);
    if (e) {
        free(out->data);
        out->data = NULL;
    }
    return e;
}

static usi_error *make_dir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST) return NULL;
    return usi_error_new(USI_ERR_IO, "%s: %s", path, strerror(errno));
}

static usi_error *write_split(const char *src, const char *out, const char *split,
                              const char *prefix, int force)
{
    char ipath[4096], lpath[4096], dir[4096];
    snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", src, prefix);
    snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", src, prefix);
    idx_file img, lab;
    USI_TRY(idx_read(ipath, 3, &img));
    usi_error *e = idx_read(lpath, 1, &lab);
    if (!e && lab.count != img.count)
        e = usi_error_new(USI_ERR_INVALID, "%s has %u images but %s has %u labels", ipath, img.count,
                          lpath, lab.count);
    snprintf(dir, sizeof dir, "%s/%s", out, split);
    if (!e) e = make_dir(dir);
    for (int k = 0; !e && k < 10; k++) {
        snprintf(dir, sizeof dir, "%s/%s/%s", out, split, fmnist_classes[k]);
        e = make_dir(dir);
    }
    size_t px = (size_t)img.rows * img.cols;
    for (uint32_t i = 0; !e && i < img.count; i++) {
        if (lab.data[i] > 9) {
            e = usi_error_new(USI_ERR_INVALID, "%s: label %u of image %u is not 0..9", lpath, lab.data[i], i);
            break;
        }
        char path[8192];
        snprintf(path, sizeof path, "%s/%s/%s/%05u.png", out, split, fmnist_classes[lab.data[i]], i);
        struct stat st;
        if (!force && stat(path, &st) == 0) continue;
        usi_image im = {sizeof im, (int32_t)img.cols, (int32_t)img.rows, 1, (int32_t)img.cols,
                        img.data + i * px};
        e = usi_png_write(path, &im);
    }
    if (!e) printf("%s: %u images in 10 classes\n", split, img.count);
    free(img.data);
    free(lab.data);
    return e;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: usi data import-idx [--src DIR] [--out DIR] [--force]\n"
            "  Turn Fashion-MNIST's IDX files into an ImageFolder of PNGs:\n"
            "  OUT/train/<k>_<name>/*.png (60,000) and OUT/val/... (10,000).\n"
            "  --src   folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz\n"
            "          (default %s, from Debian's dataset-fashion-mnist)\n"
            "  --out   output folder (default data/fashion-mnist)\n"
            "  --force rewrite images that already exist\n",
            FMNIST_DEFAULT_SRC);
}

static int import_idx(int argc, char **argv)
{
    const char *src = FMNIST_DEFAULT_SRC, *out = "data/fashion-mnist";
    int force = 0;
    for (int i = 1; i < argc; i++) {
        /* --src DIR or --src=DIR, and --out alike */
        const char *a = argv[i], **dst = !strncmp(a, "--src", 5) ? &src : !strncmp(a, "--out", 5) ? &out : NULL;
        if (dst && a[5] == '=') *dst = a + 6;
        else if (dst && !a[5] && i + 1 < argc) *dst = argv[++i];
        else if (dst && !a[5]) {
            fprintf(stderr, "usi data import-idx: option '%s' needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--force")) force = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "usi data import-idx: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    struct stat st;
    if (stat(src, &st) != 0) {
        fprintf(stderr,
                "usi data import-idx: %s: %s\n  install it with: apt-get install dataset-fashion-mnist\n"
                "  (or run scripts/import-fashion-mnist, which does)\n",
                src, strerror(errno));
        return 1;
    }
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", out);
    for (char *p = parent + 1; *p; p++) /* mkdir -p */
        if (*p == '/') {
            *p = 0;
            mkdir(parent, 0755);
            *p = '/';
        }
    usi_error *e = make_dir(out);
    if (!e) e = write_split(src, out, "train", "train", force);
    if (!e) e = write_split(src, out, "val", "t10k", force);
    if (e) {
        fprintf(stderr, "usi data import-idx: %s\n", usi_error_message(e));
        usi_error_free(e);
        return 1;
    }
    printf("wrote %s/train and %s/val\n", out, out);
    return 0;
}

int usi_cmd_data(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "import-idx")) return import_idx(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "usage: usi data import-idx [--src DIR] [--out DIR] [--force]\n");
    return 2;
}
