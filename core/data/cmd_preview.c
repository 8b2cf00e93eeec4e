/* `usi preview CONFIG --out grid.png [--n 32]`: the first training batch of
 * epoch 0, augmented and mixed exactly as training would see it, as a PNG
 * grid. Small images are enlarged by a whole factor (nearest neighbour, so
 * every pixel stays a visible square) until a tile is at least
 * USI_PREVIEW_MIN_TILE pixels. Under each image a bar shows its soft target,
 * one coloured segment per class as wide as the class's weight, and below
 * it the heaviest classes by name with their weights. The same labels are
 * printed as text. */
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "data/canvas.h"
#include "data/commands.h"
#include "data/decode.h"
#include "data/loader_config.h"
#include "plugin/host.h"
#include "plugin/registry.h"
#include "util/error.h"
#include "util/file.h"

#define FONT "sans-serif"

static void class_colour(int k, double rgb[3])
{
    static const uint8_t pal[10][3] = {
        {230, 25, 75}, {60, 180, 75}, {255, 225, 25}, {0, 130, 200}, {245, 130, 48},
        {145, 30, 180}, {70, 240, 240}, {240, 50, 230}, {210, 245, 60}, {250, 190, 212},
    };
    const uint8_t *p = pal[k % 10];
    int shade = (k / 10) % 3; /* more than ten classes: darker repeats */
    for (int i = 0; i < 3; i++) rgb[i] = p[i] * (3 - shade) / 3.0 / 255.0;
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

/* s cut (at a UTF-8 character boundary) and ended with "..." to fit width. */
static void fit_text(cairo_t *cr, const char *s, double width, char *out, size_t cap)
{
    snprintf(out, cap, "%s", s);
    cairo_text_extents_t te;
    cairo_text_extents(cr, out, &te);
    size_t n = strlen(out);
    while (te.x_advance > width && n > 0) {
        do n--;
        while (n > 0 && ((uint8_t)out[n] & 0xC0) == 0x80);
        snprintf(out + n, cap - n, "...");
        cairo_text_extents(cr, out, &te);
    }
}

/* The target bar and the class names under one tile at (x, y), w wide;
 * prints the label line. */
static void draw_label(cairo_t *cr, double x, double y, double w, const float *t, int K, int tile,
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
    double pos = x;
    for (int i = 0; i < n; i++) {
        double seg = i == n - 1 ? x + w - pos : round(ws[i].w * w);
        double rgb[3];
        class_colour(ws[i].k, rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_rectangle(cr, pos, y, seg, USI_PREVIEW_BAR);
        cairo_fill(cr);
        pos += seg;
        printf("%s %.3f x %s", i ? " +" : "", ws[i].w, usi_dataset_class_name(ds, (size_t)ws[i].k));
    }
    printf("\n");
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_rectangle(cr, x, y + USI_PREVIEW_BAR, w, USI_PREVIEW_LINES * USI_PREVIEW_LINE + 4);
    cairo_fill(cr);
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 11);
    for (int i = 0; i < n && i < USI_PREVIEW_LINES; i++) {
        char text[256], fitted[256];
        snprintf(text, sizeof text, "%.0f%% %s", 100.0 * ws[i].w, usi_dataset_class_name(ds, (size_t)ws[i].k));
        fit_text(cr, text, w - 4, fitted, sizeof fitted);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, x + 2, y + USI_PREVIEW_BAR + USI_PREVIEW_LINE * (i + 1) - 2);
        cairo_show_text(cr, fitted);
    }
}

/* Sample i of the batch, denormalised to 8 bits, as a cairo surface. */
static cairo_surface_t *tile_surface(const usi_batch *b, int i, const float mean[3], const float std[3])
{
    int S = b->h;
    size_t plane = (size_t)S * (size_t)S;
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, S, S);
    uint8_t *data = cairo_image_surface_get_data(s);
    if (!data) return s;
    int stride = cairo_image_surface_get_stride(s);
    const float *px = b->images + (size_t)i * 3 * plane;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            uint32_t p = 0;
            for (int c = 0; c < 3; c++) {
                float v = (px[(size_t)c * plane + (size_t)y * S + x] * std[c] + mean[c]) * 255.0f;
                p = p << 8 | (uint32_t)(v < 0 ? 0 : v > 255 ? 255 : lrintf(v));
            }
            memcpy(data + (size_t)y * (size_t)stride + (size_t)x * 4, &p, 4);
        }
    cairo_surface_mark_dirty(s);
    return s;
}

usi_preview_layout usi_preview_layout_for(int side, int n)
{
    usi_preview_layout g;
    g.scale = side >= USI_PREVIEW_MIN_TILE ? 1 : (USI_PREVIEW_MIN_TILE + side - 1) / side;
    g.tile = side * g.scale;
    g.cols = (int)ceil(sqrt((double)n));
    g.rows = (n + g.cols - 1) / g.cols;
    g.label = USI_PREVIEW_BAR + USI_PREVIEW_LINES * USI_PREVIEW_LINE + 4;
    g.width = g.cols * (g.tile + USI_PREVIEW_GAP) + USI_PREVIEW_GAP;
    g.height = g.rows * (g.tile + g.label + USI_PREVIEW_GAP) + USI_PREVIEW_GAP;
    return g;
}

static usi_error *render(const usi_float_batch *fb, const float mean[3], const float std[3],
                         const usi_dataset *ds, const char *out)
{
    const usi_batch *b = &fb->batch;
    usi_preview_layout g = usi_preview_layout_for(b->h, b->n);
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, g.width, g.height);
    cairo_t *cr = cairo_create(s);
    cairo_set_source_rgb(cr, 40 / 255.0, 40 / 255.0, 40 / 255.0);
    cairo_paint(cr);
    for (int i = 0; i < b->n; i++) {
        int x0 = USI_PREVIEW_GAP + (i % g.cols) * (g.tile + USI_PREVIEW_GAP);
        int y0 = USI_PREVIEW_GAP + (i / g.cols) * (g.tile + g.label + USI_PREVIEW_GAP);
        cairo_surface_t *t = tile_surface(b, i, mean, std);
        cairo_save(cr);
        cairo_translate(cr, x0, y0);
        cairo_scale(cr, g.scale, g.scale);
        cairo_set_source_surface(cr, t, 0, 0);
        cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
        cairo_paint(cr);
        cairo_restore(cr);
        cairo_surface_destroy(t);
        draw_label(cr, x0, y0 + g.tile, g.tile, b->targets + (size_t)i * (size_t)b->num_classes, b->num_classes, i,
                   ds);
    }
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    cairo_surface_flush(s);
    usi_error *e = st ? usi_error_new(USI_ERR_INTERNAL, "drawing %s: %s", out, cairo_status_to_string(st))
                      : usi_cairo_png_write(s, out);
    cairo_surface_destroy(s);
    return e;
}

typedef struct preview_args {
    const char *config, *out;
    int n;
    const char *sets[64], *dirs[16];
    size_t n_sets, n_dirs;
} preview_args;

static const char *usage =
    "usage: usi preview CONFIG --out grid.png [--n 32] [--set key=value]... [--plugin-dir DIR]...\n"
    "Write the first training batch of epoch 0 (N images, augmented and mixed as training sees\n"
    "them) as a PNG grid: small images enlarged to tiles of at least 96 px, each over a bar of\n"
    "its soft target and the names of its heaviest classes. The labels are printed too.\n";

/* "--opt value" or "--opt=value" for opt; NULL when s is another argument.
 * *bad is set (after saying so) when opt has no value. */
static const char *opt_value(const char *opt, int argc, char **argv, int *i, int *bad)
{
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n]) return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "usi preview: option '%s' needs a value\n", opt);
        *bad = 1;
        return NULL;
    }
    return argv[++*i];
}

/* 0 to run, -1 after --help (exit 0), else the usage exit status. */
static int parse(int argc, char **argv, preview_args *a)
{
    memset(a, 0, sizeof *a);
    a->n = 32;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return -1;
        }
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        int bad = 0;
        if ((v = opt_value("--out", argc, argv, &i, &bad))) {
            a->out = v;
        } else if (!bad && (v = opt_value("--n", argc, argv, &i, &bad))) {
            char *end;
            long n = strtol(v, &end, 10);
            if (end == v || *end || n < 1 || n > 1024) {
                fprintf(stderr, "usi preview: --n needs a whole number from 1 to 1024, not '%s'\n", v);
                return 2;
            }
            a->n = (int)n;
        } else if (!bad && (v = opt_value("--set", argc, argv, &i, &bad))) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v) {
                fprintf(stderr, "usi preview: --set '%s' needs key=value, e.g. --set data.batch_size=64\n", v);
                return 2;
            }
            if (a->n_sets == sizeof a->sets / sizeof *a->sets) {
                fprintf(stderr, "usi preview: at most %zu --set options\n", sizeof a->sets / sizeof *a->sets);
                return 2;
            }
            a->sets[a->n_sets++] = v;
        } else if (!bad && (v = opt_value("--plugin-dir", argc, argv, &i, &bad))) {
            if (a->n_dirs == sizeof a->dirs / sizeof *a->dirs) {
                fprintf(stderr, "usi preview: at most %zu --plugin-dir options\n", sizeof a->dirs / sizeof *a->dirs);
                return 2;
            }
            a->dirs[a->n_dirs++] = v;
        } else if (bad) {
            return 2;
        } else if (s[0] == '-' && s[1]) {
            fprintf(stderr, "usi preview: unknown option '%s'%s\n", s,
                    !strcmp(s, "-q") || !strcmp(s, "-v") ? ": it goes before the command, as in `usi -q preview ...`"
                                                         : "; see `usi preview --help`");
            return 2;
        } else if (!a->config) {
            a->config = s;
        } else {
            fprintf(stderr, "usi preview: unexpected argument '%s'; see `usi preview --help`\n", s);
            return 2;
        }
    }
    if (!a->config || !a->out) {
        fprintf(stderr, "usi preview: %s; see `usi preview --help`\n",
                !a->config ? "give the CONFIG whose training batch to draw" : "--out FILE.png is required");
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
    if (rc) return rc < 0 ? 0 : rc;
    usi_config *c = usi_config_new();
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    /* The grid is written after the batch is made: a wrong path fails first. */
    usi_error *e = usi_check_out_file("--out", a.out);
    if (!e) e = c && r ? setup(&a, c, r) : usi_error_new(USI_ERR_NOMEM, "out of memory");
    if (!e) e = preview(&a, c);
    rc = e ? 1 : 0;
    if (e) fprintf(stderr, "usi preview: %s\n", usi_error_message(e));
    usi_error_free(e);
    usi_config_free(c);
    usi_registry_free(r);
    return rc;
}
