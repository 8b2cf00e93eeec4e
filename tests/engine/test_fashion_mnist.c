/* A small convnet recorded through the builder ops learns Fashion-MNIST
 * (Debian's dataset-fashion-mnist): 6,000 training images, two epochs of
 * Adam, then > 80% on 2,000 test images with an eval-mode graph that takes
 * the trained parameters and batch-norm statistics by name. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "device.h"
#include "backend/optim_args.h"
#include "graph/graph.h"
#include "models.h"
#include "plugin/host.h"
#include "util/error.h"

/* Debian's folder; $USI_FASHION_MNIST_DIR (with a trailing slash) points
 * elsewhere, e.g. at the cut-down copy bench/gpu/prepare.sh makes. */
#define DIR "/usr/share/datasets/fashion-mnist/"
#define N_TRAIN 6000
#define N_TEST 2000
#define BATCH 50
#define EPOCHS 2
#define WIDTH 12

/* IDX file: magic, dims, then bytes. Returns the first n items' bytes. */
static uint8_t *read_idx(const char *path, int64_t n, int64_t item, int expect_dims)
{
    gzFile f = gzopen(path, "rb");
    if (!f) return NULL;
    uint8_t head[16];
    int hl = 4 + 4 * expect_dims;
    uint8_t *data = NULL;
    if (gzread(f, head, (unsigned)hl) == hl && head[2] == 8 && head[3] == expect_dims) {
        data = malloc((size_t)(n * item));
        if (data && gzread(f, data, (unsigned)(n * item)) != (int)(n * item)) {
            free(data);
            data = NULL;
        }
    }
    gzclose(f);
    return data;
}

/* Adam (AdamW without decay) on the device over the flat parameter block:
 * one segment covering every trainable parameter. */
typedef struct adam {
    usi_dbuf *m, *v;
    usi_optim_seg seg;
    int64_t t;
} adam;

static usi_error *adam_init(adam *a, usi_graph *g)
{
    usi_graph_blocks b;
    usi_graph_get_blocks(g, &b);
    a->seg = (usi_optim_seg){0, b.n_trainable, 0};
    usi_error *e = usi_dbuf_new(usi_graph_device(g), b.n_trainable * sizeof(float), &a->m);
    if (!e) e = usi_dbuf_new(usi_graph_device(g), b.n_trainable * sizeof(float), &a->v);
    return e;
}

static usi_error *adam_step(adam *a, usi_graph *g, float lr)
{
    usi_optim_hp hp = {USI_OPT_ADAMW, lr, 0, 0.9, 0.999, 1e-8, 0, 0};
    usi_graph_blocks b;
    usi_graph_get_blocks(g, &b);
    return usi_dbuf_optim_step(&hp, ++a->t, b.params, b.grads, a->m, a->v, &a->seg, 1);
}

static usi_tensor *loss_node;

static usi_graph *make_graph(int training, int64_t batch, usi_tensor **x, usi_tensor **y,
                             usi_tensor **logits, usi_error **err)
{
    usi_graph *g = usi_graph_new(test_device(), training, 2024);
    int64_t xs[4] = {batch, 1, 28, 28};
    *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, xs);
    *y = usi_graph_input(g, "labels", USI_DTYPE_I32, 1, &batch);
    *logits = model_small_convnet(g, *x, WIDTH, 10);
    *err = usi_graph_error(g);
    if (!*err) usi_graph_mark_output(*logits);
    if (!*err && training) {
        loss_node = usi_graph_api_get()->loss_ce(g, *logits, *y, 0.0);
        *err = usi_graph_set_loss(g, loss_node);
    }
    if (!*err) *err = usi_graph_compile(g);
    return g;
}

static void load_batch(float *xd, int32_t *yd, const uint8_t *img, const uint8_t *lab,
                       const int32_t *order, int64_t first, int64_t n)
{
    for (int64_t b = 0; b < n; b++) {
        int32_t k = order ? order[first + b] : (int32_t)(first + b);
        for (int j = 0; j < 784; j++) xd[b * 784 + j] = (img[k * 784 + j] / 255.0f - 0.286f) / 0.353f;
        yd[b] = lab[k];
    }
}

static uint8_t *read_named(const char *dir, const char *name, int64_t n, int64_t item, int dims)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s", dir, name);
    return read_idx(path, n, item, dims);
}

int main(void)
{
    const char *dir = getenv("USI_FASHION_MNIST_DIR") ? getenv("USI_FASHION_MNIST_DIR") : DIR;
    uint8_t *tr_img = read_named(dir, "train-images-idx3-ubyte.gz", N_TRAIN, 784, 3);
    uint8_t *tr_lab = read_named(dir, "train-labels-idx1-ubyte.gz", N_TRAIN, 1, 1);
    uint8_t *te_img = read_named(dir, "t10k-images-idx3-ubyte.gz", N_TEST, 784, 3);
    uint8_t *te_lab = read_named(dir, "t10k-labels-idx1-ubyte.gz", N_TEST, 1, 1);
    if (!tr_img || !tr_lab || !te_img || !te_lab) {
        printf("FAIL: can't read Fashion-MNIST from %s\n", dir);
        return 1;
    }
    usi_error *e = NULL;
    usi_tensor *x, *y, *logits, *ex, *ey, *elogits;
    usi_graph *g = make_graph(1, BATCH, &x, &y, &logits, &e);
    usi_graph *ev = e ? NULL : make_graph(0, BATCH, &ex, &ey, &elogits, &e);
    adam opt = {0};
    if (!e) e = adam_init(&opt, g);
    float *xd = malloc(sizeof(float) * BATCH * 784);
    int32_t *yd = malloc(sizeof(int32_t) * BATCH);
    int32_t order[N_TRAIN];
    for (int32_t i = 0; i < N_TRAIN; i++) order[i] = i;
    uint64_t r = 88172645463325252ull;
    /* One thread: a step of this net is too small to split, and on shared
     * cores the fork/joins dominate. */
    usi_device_set_threads(1);
    double loss_sum = 0;
    for (int epoch = 0; epoch < EPOCHS && !e; epoch++) {
        for (int32_t i = N_TRAIN - 1; i > 0; i--) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            int32_t j = (int32_t)(r % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        loss_sum = 0;
        for (int64_t s = 0; s + BATCH <= N_TRAIN && !e; s += BATCH) {
            load_batch(xd, yd, tr_img, tr_lab, order, s, BATCH);
            test_write(x, xd);
            test_write(y, yd);
            e = usi_graph_forward(g);
            if (!e) e = usi_graph_backward(g);
            if (!e) e = adam_step(&opt, g, epoch ? 3e-3f : 1e-2f);
            usi_graph_zero_grad(g);
            float l = 0;
            if (!e) e = usi_graph_read(loss_node, &l);
            loss_sum += l;
        }
        printf("epoch %d: mean training loss %.4f\n", epoch, loss_sum / (N_TRAIN / BATCH));
    }
    int64_t correct = 0;
    /* The eval graph takes every parameter and buffer of the trained one. */
    if (!e) e = usi_graph_copy_state(g, ev);
    for (int64_t s = 0; s + BATCH <= N_TEST && !e; s += BATCH) {
        load_batch(xd, yd, te_img, te_lab, NULL, s, BATCH);
        test_write(ex, xd);
        test_write(ey, yd);
        e = usi_graph_forward(ev);
        const float *l = test_value(elogits);
        for (int64_t b = 0; b < BATCH && !e; b++) {
            int best = 0;
            for (int c = 1; c < 10; c++) best = l[b * 10 + c] > l[b * 10 + best] ? c : best;
            correct += best == te_lab[s + b];
        }
    }
    int fail = e != NULL;
    if (e) printf("FAIL: %s\n", usi_error_message(e));
    double acc = (double)correct / N_TEST;
    printf("%s test accuracy %.2f%% (%d train images, %d epochs)\n", acc > 0.8 ? "ok  " : "FAIL",
           100 * acc, N_TRAIN, EPOCHS);
    fail |= !(acc > 0.8);
    usi_dbuf_free(opt.m);
    usi_dbuf_free(opt.v);
    free(xd), free(yd);
    usi_error_free(e);
    usi_graph_free(g);
    usi_graph_free(ev);
    free(tr_img), free(tr_lab), free(te_img), free(te_lab);
    return fail;
}
