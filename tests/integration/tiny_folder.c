/* Write a small ImageFolder of real Fashion-MNIST images (the first N per
 * class of the training and test IDX files) for end-to-end tests:
 *   tiny_folder IDX_DIR OUT TRAIN_PER_CLASS VAL_PER_CLASS */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/decode.h"
#include "util/error.h"

static unsigned char *read_idx(const char *path, size_t header, size_t *n)
{
    gzFile f = gzopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20, len = 0;
    unsigned char *buf = malloc(cap);
    int got;
    while (buf && (got = gzread(f, buf + len, (unsigned)(cap - len))) > 0) {
        len += (size_t)got;
        if (len == cap) buf = realloc(buf, cap *= 2);
    }
    gzclose(f);
    if (!buf || len < header) {
        free(buf);
        return NULL;
    }
    *n = len - header;
    return buf;
}

static int split(const char *dir, const char *images, const char *labels, const char *out, const char *name,
                 int per_class)
{
    char ip[1024], lp[1024];
    snprintf(ip, sizeof ip, "%s/%s", dir, images);
    snprintf(lp, sizeof lp, "%s/%s", dir, labels);
    size_t ni, nl;
    unsigned char *im = read_idx(ip, 16, &ni), *lb = read_idx(lp, 8, &nl);
    if (!im || !lb) {
        fprintf(stderr, "cannot read %s or %s\n", ip, lp);
        return 1;
    }
    int count[10] = {0};
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", out, name);
    mkdir(out, 0755);
    mkdir(path, 0755);
    for (size_t i = 0; i < nl && i * 784 < ni; i++) {
        int c = lb[8 + i];
        if (c > 9 || count[c] >= per_class) continue;
        snprintf(path, sizeof path, "%s/%s/class_%d", out, name, c);
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/%s/class_%d/%05zu.png", out, name, c, i);
        usi_image img = {sizeof img, 28, 28, 1, 28, im + 16 + i * 784};
        usi_error *e = usi_png_write(path, &img);
        if (e) {
            fprintf(stderr, "%s\n", usi_error_message(e));
            return 1;
        }
        count[c]++;
    }
    free(im);
    free(lb);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: tiny_folder IDX_DIR OUT TRAIN_PER_CLASS VAL_PER_CLASS\n");
        return 2;
    }
    return split(argv[1], "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", argv[2], "train", atoi(argv[3])) ||
           split(argv[1], "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", argv[2], "val", atoi(argv[4]));
}
