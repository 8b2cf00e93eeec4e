/* usi plot RUN_DIR [--out FILE]: the training curves of a run as a PNG or SVG. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "train/plot.h"
#include "util/error.h"

static const char *usage =
    "usage: usi plot RUN_DIR [--out FILE]\n"
    "Draw RUN_DIR/metrics.jsonl: on the left the training loss against the step (raw and\n"
    "smoothed), the validation loss when the run logged it, and the learning rate on a\n"
    "second axis; on the right top-1 and EMA top-1 against the epoch. Writes\n"
    "RUN_DIR/curves.png unless --out names another file; a name ending in .svg gives SVG.\n"
    "`usi train` draws curves.png too when a run finishes.\n";

int usi_cmd_plot(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return USI_EXIT_OK;
        }
        if (!strncmp(a, "--out=", 6)) {
            out = a + 6;
        } else if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "usi plot: option '--out' needs a value\n");
                return USI_EXIT_USAGE;
            }
            out = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            usi_cli_unknown_option("plot", a);
            return USI_EXIT_USAGE;
        } else if (!dir) {
            dir = a;
        } else {
            fprintf(stderr, "usi plot: unexpected argument '%s'; see `usi plot --help`\n", a);
            return USI_EXIT_USAGE;
        }
    }
    if (!dir) {
        fputs(usage, stderr);
        return USI_EXIT_USAGE;
    }
    size_t n = strlen(dir) + sizeof "/metrics.jsonl";
    char *metrics = malloc(n), *png = out ? NULL : malloc(n);
    if (!metrics || (!out && !png)) {
        free(metrics);
        free(png);
        return usi_cli_fail(usi_error_new(USI_ERR_NOMEM, "out of memory"));
    }
    snprintf(metrics, n, "%s/metrics.jsonl", dir);
    if (!out) {
        snprintf(png, n, "%s/curves.png", dir);
        out = png;
    }
    usi_error *e = usi_plot_metrics(metrics, out);
    int rc = e ? usi_cli_fail(e) : USI_EXIT_OK;
    if (!e) printf("wrote %s\n", out);
    free(metrics);
    free(png);
    return rc;
}
