/* usi_plot_metrics: a small metrics file becomes a PNG of the documented size
 * with each curve's colour in its own panel; malformed lines are errors that
 * name the file and line. */
#include <stdio.h>

#include "check.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/decode.h"
#include "train/plot.h"
#include "util/error.h"

static char dir[] = "/tmp/usi-plot-XXXXXX";

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

/* Pixels of colour rgb in columns [x0, x1). */
static long count(const usi_image *im, uint32_t rgb, int x0, int x1)
{
    long n = 0;
    for (int y = 0; y < im->height; y++)
        for (int x = x0; x < x1; x++) {
            const uint8_t *p = im->data + (size_t)y * (size_t)im->stride + (size_t)x * 3;
            n += p[0] == (uint8_t)(rgb >> 16) && p[1] == (uint8_t)(rgb >> 8) && p[2] == (uint8_t)rgb;
        }
    return n;
}

static void test_curves(void)
{
    char metrics[256], png[256];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    snprintf(png, sizeof png, "%s/curves.png", dir);
    write_text(metrics,
               "{\"teacher_top1\": 91.5, \"teacher_top5\": 99.0}\n"
               "{\"epoch\": 1, \"step\": 10, \"loss\": 2.85, \"lr\": 0.00036, \"img_s\": 86.2}\n"
               "{\"epoch\": 1, \"step\": 20, \"loss\": 2.41, \"lr\": 0.00065, \"img_s\": 90.0}\n"
               "{\"epoch\": 1, \"step\": 31, \"top1\": 28.0, \"top5\": 67.6, \"ema_top1\": 14.4, \"ema_top5\": 63.0}\n"
               "\n"
               "{\"epoch\": 2, \"step\": 40, \"loss\": 1.90, \"lr\": 0.00090, \"img_s\": 91.0}\n"
               "{\"epoch\": 2, \"step\": 62, \"loss\": 1.52, \"lr\": 0.00080, \"img_s\": 92.0}\n"
               "{\"epoch\": 2, \"step\": 62, \"top1\": 41.0, \"top5\": 80.1, \"ema_top1\": 39.2, \"ema_top5\": 79.0}\n"
               "{\"epoch\": 3, \"step\": 93, \"top1\": 44.6, \"top5\": 83.3, \"ema_top1\": 44.1, \"ema_top5\": 83.0}\n");
    usi_error *e = usi_plot_metrics(metrics, png);
    CHECK(!e, "plot: %s", e ? usi_error_message(e) : "");
    usi_error_free(e);

    usi_decoder *d = NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    usi_image im = {sizeof(usi_image), 0, 0, 0, 0, NULL};
    e = usi_decoder_new(&d);
    if (!e) e = usi_read_file(png, &buf, &cap, &len);
    if (!e) e = usi_decode_image(d, buf, len, 0, &im);
    CHECK(!e, "decode %s: %s", png, e ? usi_error_message(e) : "");
    usi_error_free(e);
    if (im.data) {
        CHECK(im.width == USI_PLOT_WIDTH && im.height == USI_PLOT_HEIGHT && im.channels == 3, "image %dx%dx%d",
              im.width, im.height, im.channels);
        int half = USI_PLOT_WIDTH / 2;
        long loss_l = count(&im, USI_PLOT_LOSS_RGB, 0, half), loss_r = count(&im, USI_PLOT_LOSS_RGB, half, im.width);
        long top_l = count(&im, USI_PLOT_TOP1_RGB, 0, half), top_r = count(&im, USI_PLOT_TOP1_RGB, half, im.width);
        long ema_l = count(&im, USI_PLOT_EMA_RGB, 0, half), ema_r = count(&im, USI_PLOT_EMA_RGB, half, im.width);
        /* A polyline across most of a panel, 2 px wide: hundreds of pixels. */
        CHECK(loss_l > 300 && loss_r == 0, "loss colour: %ld px left, %ld right", loss_l, loss_r);
        CHECK(top_r > 300 && top_l == 0, "top-1 colour: %ld px left, %ld right", top_l, top_r);
        CHECK(ema_r > 300 && ema_l == 0, "EMA colour: %ld px left, %ld right", ema_l, ema_r);
        long white = count(&im, 0xffffffu, 0, im.width);
        CHECK(white > (long)im.width * im.height / 2, "background mostly white: %ld px", white);
    }
    free(im.data);
    free(buf);
    usi_decoder_free(d);
    unlink(png);
    unlink(metrics);
}

/* Every bad input is an error whose message holds `want`. */
static void expect_error(const char *content, const char *want)
{
    char metrics[256], png[256];
    snprintf(metrics, sizeof metrics, "%s/bad.jsonl", dir);
    snprintf(png, sizeof png, "%s/bad.png", dir);
    if (content) write_text(metrics, content);
    usi_error *e = usi_plot_metrics(metrics, png);
    const char *msg = e ? usi_error_message(e) : "";
    CHECK(e && strstr(msg, want), "wanted an error with '%s', got '%s'", want, e ? msg : "success");
    CHECK(access(png, F_OK) != 0, "no PNG is written on error");
    usi_error_free(e);
    unlink(metrics);
    unlink(png);
}

static void test_errors(void)
{
    char want[256];
    snprintf(want, sizeof want, "%s/bad.jsonl:3:", dir);
    expect_error("{\"epoch\": 1, \"step\": 10, \"loss\": 2.85}\n\n{\"epoch\": 1, \"step\": 20, \"loss\": }\n", want);
    snprintf(want, sizeof want, "%s/bad.jsonl:2:", dir);
    expect_error("{\"epoch\": 1, \"step\": 10, \"loss\": 2.85}\n{\"epoch\": 1, \"step\": 20, \"loss\": \"x\"}\n",
                 want);
    snprintf(want, sizeof want, "%s/bad.jsonl:1:", dir);
    expect_error("[1, 2]\n", want);
    expect_error("{\"teacher_top1\": 90}\n", "no loss or top-1 lines");
    expect_error(NULL, "bad.jsonl");
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_curves();
    test_errors();
    rmdir(dir);
    return check_status("plot");
}
