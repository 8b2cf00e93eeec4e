/* `usi preview` end to end: a config naming a small generated ImageFolder,
 * the default augment list from the config (loaded from the build tree), a
 * PNG grid whose size follows from --n and data.img_size, small images
 * enlarged by whole pixels, and the class names written under each tile. */
#include <sys/stat.h>
#include <unistd.h>

#include "data/commands.h"
#include "config/config.h"
#include "data/decode.h"
#include "data/loader_config.h"
#include "plugin/params.h"
#include "plugin/registry.h"
#include "testutil.h"
#include "util/error.h"

static int g_seed;
static int pattern(int x, int y, int k) { return (x * (3 + g_seed) + y * (5 + k) + g_seed * 40) & 255; }

/* The config glue: data.img_size reaches every augmentation with a size
 * option, the eval chain is eval_resize_crop, loader options follow data.*. */
static void test_config_glue(const char *cfg)
{
    usi_config *c = usi_config_new();
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    MUST(usi_config_load(c, cfg));
    MUST(usi_config_set(c, "data.repeated_aug=2"));
    MUST(usi_registry_discover(r, NULL, 0, NULL, 0));
    MUST(usi_config_resolve(c, r));
    usi_augchain *train, *eval;
    MUST(usi_data_train_chain(c, &train));
    MUST(usi_data_eval_chain(c, r, &eval));
    CHECK(usi_augchain_sample_count(train) == 3 && usi_augchain_batch_count(train) == 1,
          "train chain: %zu sample + %zu batch stages", usi_augchain_sample_count(train),
          usi_augchain_batch_count(train));
    CHECK(usi_augchain_sample_count(eval) == 1 && usi_augchain_batch_count(eval) == 0, "eval chain");
    /* random_resized_crop got size 32: its decode hint is ceil(32 / sqrt(0.08)) */
    CHECK(usi_augchain_decode_min_side(train) == 114, "train decode hint %d",
          usi_augchain_decode_min_side(train));
    /* eval decodes in full: a reduced DCT scale would not give PIL's pixels */
    CHECK(usi_augchain_decode_min_side(eval) == 0, "eval decode hint %d", usi_augchain_decode_min_side(eval));
    usi_loader_opts tr = usi_data_loader_opts(c, 1), ev = usi_data_loader_opts(c, 0);
    CHECK(tr.repeats == 2 && tr.shuffle && tr.img_size == 32 && ev.repeats == 1 && !ev.shuffle,
          "loader options");
    /* the config itself, filled, shows the size the chain runs with */
    MUST(usi_data_fill_config(c));
    int found = 0;
    for (size_t i = 0; i < usi_config_augment_count(c); i++) {
        const usi_selected *s = usi_config_augment(c, i);
        int64_t size = 0;
        if (!usi_params_has(s->params, "size")) continue;
        MUST(usi_params_get_int(s->params, "size", &size));
        CHECK(size == 32, "augment %s shows size %lld, runs with 32", s->loaded->comp->name, (long long)size);
        found++;
    }
    CHECK(found == 1, "%d augmentations with a size", found);
    usi_augchain_free(train);
    usi_augchain_free(eval);
    usi_registry_free(r);
    usi_config_free(c);
}

int main(void)
{
    char *root = tu_tempdir("preview");
    char path[8192], cfg[8192], out[8192];
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/train", root);
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/train/class%d", root, c);
        mkdir(path, 0755);
        for (int i = 0; i < 4; i++) {
            g_seed = c * 4 + i;
            usi_image im = tu_image(48, 40, 3, pattern);
            snprintf(path, sizeof path, "%s/train/class%d/%d.png", root, c, i);
            MUST(usi_png_write(path, &im));
            tu_image_free(&im);
        }
    }
    snprintf(cfg, sizeof cfg, "%s/preview.cfg", root);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "data = { train = \"%s/train\"; img_size = 32; workers = 2; };\n", root);
    fclose(f);
    test_config_glue(cfg);
    snprintf(out, sizeof out, "%s/grid.png", root);
    char *argv[] = {"preview", cfg, "--out", out, "--n", "10", NULL};
    int rc = usi_cmd_preview(6, argv);
    CHECK(rc == 0, "usi preview exited with %d", rc);
    usi_decoder *d;
    MUST(usi_decoder_new(&d));
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    usi_image im = {sizeof im, 0, 0, 0, 0, NULL};
    usi_error *e = usi_read_file(out, &buf, &cap, &len);
    if (!e) e = usi_decode_image(d, buf, len, 0, &im);
    CHECK(!e, "grid: %s", e ? usi_error_message(e) : "");
    /* 10 tiles of 32 px -> 4 columns x 3 rows, each enlarged 3 times to 96 */
    usi_preview_layout g = usi_preview_layout_for(32, 10);
    CHECK(g.scale == 3 && g.tile == 96 && g.cols == 4 && g.rows == 3, "layout: scale %d, tile %d, %dx%d", g.scale,
          g.tile, g.cols, g.rows);
    CHECK(!e && im.width == g.width && im.height == g.height, "grid is %dx%d, not %dx%d", im.width, im.height,
          g.width, g.height);
    usi_preview_layout big = usi_preview_layout_for(224, 3);
    CHECK(big.scale == 1 && big.tile == 224, "a 224 px image was scaled by %d", big.scale);
    if (!e && im.width == g.width && im.height == g.height) {
        /* nearest-neighbour enlargement: every 3x3 block of a tile is one colour */
        int blocks = 0, uniform = 0;
        for (int t = 0; t < 10; t++) {
            int x0 = USI_PREVIEW_GAP + (t % g.cols) * (g.tile + USI_PREVIEW_GAP);
            int y0 = USI_PREVIEW_GAP + (t / g.cols) * (g.tile + g.label + USI_PREVIEW_GAP);
            for (int by = 0; by < 32; by++)
                for (int bx = 0; bx < 32; bx++) {
                    int same = 1;
                    for (int k = 0; k < 9; k++)
                        for (int c = 0; c < 3; c++)
                            same &= tu_px(&im, x0 + bx * 3 + k % 3, y0 + by * 3 + k / 3, c) ==
                                    tu_px(&im, x0 + bx * 3, y0 + by * 3, c);
                    blocks++;
                    uniform += same;
                }
            /* under the bar, on white, the class name: dark glyph pixels */
            int ink = 0;
            for (int y = y0 + g.tile + USI_PREVIEW_BAR; y < y0 + g.tile + g.label; y++)
                for (int x = x0; x < x0 + g.tile; x++) ink += tu_px(&im, x, y, 0) < 100 && tu_px(&im, x, y, 1) < 100;
            CHECK(ink > 30, "tile %d: %d dark pixels where its class names belong", t, ink);
        }
        CHECK(uniform == blocks, "%d of %d 3x3 blocks are not one colour (not a nearest enlargement)",
              blocks - uniform, blocks);
    }
    usi_error_free(e);
    char *bad[] = {"preview", cfg, NULL};
    CHECK(usi_cmd_preview(2, bad) == 2, "missing --out must be a usage error");
    snprintf(path, sizeof path, "%s/missing.cfg", root);
    char *missing[] = {"preview", path, "--out", out, NULL};
    CHECK(usi_cmd_preview(4, missing) == 1, "a missing config must fail");
    free(buf);
    free(im.data);
    usi_decoder_free(d);
    tu_rm_rf(root);
    free(root);
    return tu_finish("test_preview");
}
