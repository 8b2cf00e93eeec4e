/* usi: train any backbone with the USI recipe. This file only dispatches. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <usi/plugin.h>

#include "cli/cli.h"
#include "cli/cmd_weights.h"
#include "data/commands.h"
#include "dist/dist.h"
#include "plugin/crash.h"
#include "util/error.h"
#include "util/log.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"plugins", usi_cmd_plugins, "list backbone, teacher and augmentation plugins and their options"},
    {"config", usi_cmd_config, "config show: print the effective configuration"},
    {"train", usi_cmd_train, "train a backbone with the USI recipe (KD, augmentation, AdamW, EMA)"},
    {"eval", usi_cmd_eval, "top-1 / top-5 of a checkpoint on the val folder"},
    {"data", usi_cmd_data, "data import-idx: turn Fashion-MNIST into an ImageFolder"},
    {"preview", usi_cmd_preview, "write a PNG grid of augmented training samples"},
    {"predict", usi_cmd_predict, "classify image files with trained weights: top-k classes, raw logits"},
    {"summary", usi_cmd_summary, "parameters, MACs and output shape of a backbone"},
    {"plot", usi_cmd_plot, "draw a run's loss, lr and top-1 curves from metrics.jsonl (PNG or SVG)"},
    {"bench", usi_cmd_bench, "images/s of backbones on the device, bench.csv and the speed-accuracy Pareto plot"},
    {"weights", usi_cmd_weights, "weights merge: one safetensors file from several (ensemble teacher)"},
};

static void print_usage(FILE *f)
{
    fprintf(f, "usage: usi [-v|-q] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "  %-10s %s\n", "version", "print the version and plugin ABI");
    fprintf(f, "\n`usi COMMAND --help` describes each command.\n");
}

/* With --json, stdout carries one JSON document for a script to read. But
 * plugins run in this process and share its stdio: whatever one prints would
 * land inside the document. So fd 1 is pointed at stderr for everyone (raw
 * write(1), C++ std::cout, chatter of libraries), usi's own output moves to a
 * new FILE on the real stdout, and plugin code, while it runs (between
 * usi_crash_enter and usi_crash_leave), gets the old stdout FILE back, which
 * now writes to stderr. That needs an assignable `stdout`, which glibc gives
 * (its manual shows it); with another C library nothing changes. */
static void keep_stdout_for_json(int argc, char **argv)
{
    int asked = 0;
    for (int i = 1; i < argc && !asked; i++) asked = !strcmp(argv[i], "--json");
    if (!asked) return;
#ifdef __GLIBC__
    fflush(stdout);
    int out = dup(1);
    FILE *host = out >= 0 ? fdopen(out, "w") : NULL;
    if (!host) {
        if (out >= 0) close(out);
        return;
    }
    if (dup2(2, 1) < 0) {
        fclose(host);
        return;
    }
    usi_crash_split_stdout(host, stdout);
    stdout = host;
#endif
}

int main(int argc, char **argv)
{
    keep_stdout_for_json(argc, argv);
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) usi_log_set_level(USI_LOG_DEBUG);
        else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) usi_log_set_level(USI_LOG_ERROR);
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            print_usage(stdout);
            return USI_EXIT_OK;
        } else if (!strcmp(argv[i], "--version")) {
            break; /* = the version command, below */
        } else {
            fprintf(stderr, "usi: unknown option '%s'\n", argv[i]);
            print_usage(stderr);
            return USI_EXIT_USAGE;
        }
    }
    if (i >= argc) {
        print_usage(stderr);
        return USI_EXIT_USAGE;
    }
    if (!strcmp(argv[i], "version") || !strcmp(argv[i], "--version")) {
        if (usi_cli_wants_help(argc - i, argv + i, "usage: usi version\nPrint the version of usi and of the plugin ABI it hosts.\n"))
            return USI_EXIT_OK;
        if (argc - i > 1) {
            fprintf(stderr, "usi version: unexpected argument '%s'; it takes none\n", argv[i + 1]);
            return USI_EXIT_USAGE;
        }
        printf("usi %s (plugin ABI %d.%d)\n", USI_VERSION, USI_ABI_MAJOR, USI_ABI_MINOR);
        return USI_EXIT_OK;
    }
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++) {
        if (strcmp(argv[i], commands[k].name) != 0) continue;
        /* Under mpirun every command joins the job (train works in it; the
         * others run alike on each rank); a build without MPI refuses. */
        usi_error *e = usi_dist_init();
        if (e) return usi_cli_fail(e);
        /* After MPI, whose own handlers would otherwise replace ours: a
         * crash in a plugin then names the file and what it was doing. */
        usi_crash_install();
        usi_log_set_rank(usi_dist_rank(), usi_dist_world());
        int rc = commands[k].run(argc - i, argv + i);
        usi_dist_finalize();
        return rc;
    }
    fprintf(stderr, "usi: unknown command '%s'\n", argv[i]);
    print_usage(stderr);
    return USI_EXIT_USAGE;
}
