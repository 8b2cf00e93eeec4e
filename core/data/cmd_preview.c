/* `usi preview CONFIG --out grid.png [--n 32]`: the first training batch of
 * epoch 0, augmented and mixed exactly as training would see it, as a PNG
 * grid. Under each image a bar shows its soft target: one coloured segment
 * per class, as wide as the class's weight, with the class index drawn in
 * it. The same labels are printed as text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "data/commands.h"
#include "data/decode.h"
#include "data/loader_config.h"
#include "plugin/host.h"
#include "plugin/registry.h"
#include "util/error.h"

/* 3x5 digits, one row per 3-bit number, most significant bit on the left. */
static const uint8_t digit_font[10][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1},
    {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7},
};

static void class_colour(int k, uint8_t rgb[3])
{
    static const uint8_t pal[10][3] = {
        {230, 25, 75}, {60, 180, 75}, {255, 225, 25}, {0, 130, 200}, {245, 130, 48},
        {145, 30, 180}, {70, 240, 240}, {240, 50, 230}, {210, 245, 60}, {250, 190, 212},
    };
    const uint8_t *p = pal[k % 10];
    int shade = (k / 10) % 3; /* more than ten classes: darker repeats */
    for (int i = 0; i < 3; i++) rgb[i] = (uint8_t)(p[i] * (3 - shade) / 3);
}

static void fill_rect(usi_image *im, int x0, int y0, int w, int h, const uint8_t rgb[3])
{
    for (int y = y0; y < y0 + h && y < im->height; y++)
        for (int x = x0; x < x0 + w && x < im->width; x++)
            memcpy(im->data + (size_t)y * (size_t)im->stride + (size_t)x * 3, rgb, 3);
}

static void draw_number(usi_image *im, int x, int y, int scale, int value)
{
    char s[16];
    int n = snprintf(s, sizeof s, "%d", value);
    static const uint8_t ink[3] = {0, 0, 0};
    for (int i = 0; i < n; i++)
        for (int r = 0; r < 5; r++)
            for (int c = 0; c < 3; c++)
                if (digit_font[s[i] - '0'][r] & (4 >> c))
                    fill_rect(im, x + (i * 4 + c) * scale, y + r * scale, scale, scale, ink);
}

typedef struct weight {
    int k;
    float w;
} weight;

static int by_weight(const void *a, const void *b)
{
    float d = ((const weight *)b)->w - ((const weight *)a)->w;
    return d > 0 ? 1 : d < 0 ? -1 : 0;
}

/* The target bar of one tile at (x, y), w x h; prints the label line. */
static void draw_bar(usi_image *im, int x, int y, int w, int h, const float *t, int K, int tile,
                     const usi_dataset *ds)
{
    weight ws[8];
    int n = 0;
    for (int k = 0; k < K; k++) {
        if (t[k] < 0.005f) continue;
        if (n < 8) ws[n++] = (weight){k, t[k]};
    }
    qsort(ws, (size_t)n, sizeof *ws, by_weight);
    printf("tile %2d:", tile);
    int scale = h >= 14 ? h / 7 : 1, pos = x;
    for (int i = 0; i < n; i++) {
        int seg = i == n - 1 ? x + w - pos : (int)lrintf(ws[i].w * (float)w);
        uint8_t rgb[3];
        class_colour(ws[i].k, rgb);
        fill_rect(im, pos, y, seg, h, rgb);
        char num[16];
        int digits = snprintf(num, sizeof num, "%d", ws[i].k);
        if (seg >= (digits * 4 + 1) * scale && h >= 5 * scale + 2)
            draw_number(im, pos + scale, y + (h - 5 * scale) / 2, scale, ws[i].k);
        pos += seg;
        printf("%s %.3f x %s", i ? " +" : "", ws[i].w, usi_dataset_class_name(ds, (size_t)ws[i].k));
    }
    printf("\n");
}

static usi_error *render(const usi_float_batch *fb, const float mean[3], const float std[3],
                         const usi_dataset *ds, const char *out)
{
    const usi_batch *b = &fb->batch;
    int S = b->h, n = b->n, cols = (int)ceil(sqrt((double)n)), rows = (n + cols - 1) / cols;
    int bar = S / 6 < 7 ? 7 : S / 6, gap = 2;
    usi_image im = {sizeof im, 0, 0, 0, 0, NULL};
    USI_TRY(usi_host_api_get()->image_alloc(&im, cols * (S + gap) + gap, rows * (S + bar + gap) + gap, 3));
    memset(im.data, 40, (size_t)im.stride * (size_t)im.height);
    size_t plane = (size_t)S * (size_t)S;
    for (int i = 0; i < n; i++) {
        int x0 = gap + (i % cols) * (S + gap), y0 = gap + (i / cols) * (S + bar + gap);
        const float *px = b->images + (size_t)i * 3 * plane;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                for (int c = 0; c < 3; c++) {
                    float v = (px[(size_t)c * plane + (size_t)y * S + x] * std[c] + mean[c]) * 255.0f;
                    im.data[(size_t)(y0 + y) * (size_t)im.stride + (size_t)(x0 + x) * 3 + (size_t)c] =
                        (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrintf(v));
                }
        draw_bar(&im, x0, y0 + S, S, bar, b->targets + (size_t)i * (size_t)b->num_classes,
                 b->num_classes, i, ds);
    }
    usi_error *e = usi_png_write(out, &im);
    free(im.data);
    return e;
}

typedef struct preview_args {
    const char *config, *out;
    int n;
    const char *sets[64], *dirs[16];
    size_t n_sets, n_dirs;
} preview_args;

static int parse(int argc, char **argv, preview_args *a)
{
    memset(a, 0, sizeof *a);
    a->n = 32;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(s, "--out") && more) a->out = argv[++i];
        else if (!strcmp(s, "--n") && more) a->n = atoi(argv[++i]);
        else if (!strcmp(s, "--set") && more && a->n_sets < 64) a->sets[a->n_sets++] = argv[++i];
        else if (!strcmp(s, "--plugin-dir") && more && a->n_dirs < 16) a->dirs[a->n_dirs++] = argv[++i];
        else if (s[0] != '-' && !a->config) a->config = s;
        else {
            fprintf(stderr, "usi preview: unexpected argument '%s'\n", s);
            return 2;
        }
    }
    if (!a->config || !a->out || a->n < 1 || a->n > 1024) {
        fprintf(stderr, "usage: usi preview CONFIG --out grid.png [--n 32] [--set key=value]... "
                        "[--plugin-dir DIR]...\n");
        return 2;
    }
    return 0;
}

static usi_error *setup(const preview_args *a, usi_config *c, usi_registry *r)
{
    USI_TRY(usi_config_load(c, a->config));
    for (size_t i = 0; i < a->n_sets; i++) USI_TRY(usi_config_set(c, a->sets[i]));
    const char *cfg_dirs[64];
    size_t n_cfg = usi_config_plugin_path_count(c);
    if (n_cfg > 64) n_cfg = 64;
    for (size_t i = 0; i < n_cfg; i++) cfg_dirs[i] = usi_config_plugin_path(c, i);
    USI_TRY(usi_registry_discover(r, a->dirs, a->n_dirs, cfg_dirs, n_cfg));
    return usi_config_resolve(c, r);
}

static usi_error *preview(const preview_args *a, usi_config *c)
{
    const char *train = usi_config_string(c, "data.train");
    if (!train || !*train)
        return usi_error_new(USI_ERR_INVALID, "data.train is not set (the training ImageFolder)");
    usi_dataset *ds = NULL;
    usi_augchain *ch = NULL;
    usi_loader *l = NULL;
    usi_error *e = usi_dataset_open(train, &ds);
    if (!e) e = usi_data_train_chain(c, &ch);
    usi_loader_opts o = usi_data_loader_opts(c, 1);
    o.batch_size = a->n;
    o.drop_last = 0;
    float mean[3], std[3];
    usi_data_norm(c, mean, std);
    if (!e) e = usi_loader_new(ds, ch, &o, &l);
    if (!e) {
        usi_loader_set_norm(l, mean, std);
        e = usi_loader_start_epoch(l, 0);
    }
    usi_float_batch fb;
    if (!e) e = usi_loader_next_float(l, &fb);
    if (!e && fb.batch.n == 0) e = usi_error_new(USI_ERR_INVALID, "%s: no image could be loaded", train);
    if (!e) e = render(&fb, mean, std, ds, a->out);
    if (!e) printf("wrote %s (%d images)\n", a->out, fb.batch.n);
    usi_loader_free(l);
    usi_augchain_free(ch);
    usi_dataset_free(ds);
    return e;
}

int usi_cmd_preview(int argc, char **argv)
{
    preview_args a;
    int rc = parse(argc, argv, &a);
    if (rc) return rc;
    usi_config *c = usi_config_new();
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = c && r ? setup(&a, c, r) : usi_error_new(USI_ERR_NOMEM, "out of memory");
    if (!e) e = preview(&a, c);
    rc = e ? 1 : 0;
    if (e) fprintf(stderr, "usi preview: %s\n", usi_error_message(e));
    usi_error_free(e);
    usi_config_free(c);
    usi_registry_free(r);
    return rc;
}
