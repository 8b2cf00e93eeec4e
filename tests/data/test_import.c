/* `usi data import-idx` on Debian's Fashion-MNIST: 60,000 + 10,000 PNGs in
 * 10 sorted classes, labels as in the IDX files. */
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/commands.h"
#include "data/decode.h"
#include "data/imagefolder.h"
#include "testutil.h"
#include "util/error.h"

#define SRC "/usr/share/datasets/fashion-mnist"

/* The first n labels of the IDX label file. */
static int first_labels(const char *path, uint8_t *out, int n)
{
    gzFile f = gzopen(path, "rb");
    if (!f) return -1;
    uint8_t head[8];
    int ok = gzread(f, head, 8) == 8 && gzread(f, out, (unsigned)n) == n;
    gzclose(f);
    return ok ? 0 : -1;
}

int main(void)
{
    if (access(SRC "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        printf("dataset-fashion-mnist is not installed; skipped\n");
        return 77;
    }
    char *tmp = tu_tempdir("fmnist");
    char out[8192];
    snprintf(out, sizeof out, "%s/fm", tmp);
    char *argv[] = {"data", "import-idx", "--out", out, NULL};
    CHECK(usi_cmd_data(4, argv) == 0, "import-idx failed");
    char *bad[] = {"data", "import-idx", "--src", "/nonexistent", "--out", out, NULL};
    CHECK(usi_cmd_data(6, bad) == 1, "a missing source must fail with status 1");
    const char *split[2] = {"train", "val"};
    const size_t want[2] = {60000, 10000};
    for (int s = 0; s < 2; s++) {
        char root[8400];
        snprintf(root, sizeof root, "%s/%s", out, split[s]);
        usi_dataset *ds;
        MUST(usi_dataset_open(root, &ds));
        CHECK(usi_dataset_size(ds) == want[s], "%s: %zu images", split[s], usi_dataset_size(ds));
        CHECK(usi_dataset_class_count(ds) == 10, "%s: %zu classes", split[s], usi_dataset_class_count(ds));
        CHECK(!strcmp(usi_dataset_class_name(ds, 0), "0_tshirt_top") &&
                  !strcmp(usi_dataset_class_name(ds, 9), "9_ankle_boot"),
              "class names");
        usi_dataset_free(ds);
    }
    /* image i of the IDX file carries its IDX label */
    uint8_t labels[50];
    CHECK(first_labels(SRC "/t10k-labels-idx1-ubyte.gz", labels, 50) == 0, "labels");
    static const char *names[10] = {"0_tshirt_top", "1_trouser", "2_pullover", "3_dress", "4_coat",
                                    "5_sandal", "6_shirt", "7_sneaker", "8_bag", "9_ankle_boot"};
    usi_decoder *d;
    MUST(usi_decoder_new(&d));
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    for (int i = 0; i < 50; i++) {
        char path[8600];
        snprintf(path, sizeof path, "%s/val/%s/%05d.png", out, names[labels[i]], i);
        usi_error *e = usi_read_file(path, &buf, &cap, &len);
        usi_image im = {sizeof im, 0, 0, 0, 0, NULL};
        if (!e) e = usi_decode_image(d, buf, len, 0, &im);
        CHECK(!e && im.width == 28 && im.height == 28 && im.channels == 3, "%s: %s", path,
              e ? usi_error_message(e) : "wrong size");
        usi_error_free(e);
        free(im.data);
    }
    free(buf);
    usi_decoder_free(d);
    tu_rm_rf(tmp);
    free(tmp);
    return tu_finish("test_import");
}
