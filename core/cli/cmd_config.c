/* usi config show [CONFIG] [--set key=value ...]: the effective configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "train/setup.h"
#include "util/error.h"

static const char *usage =
    "usage: usi config show [CONFIG] [--set key=value ...] [--plugin-dir DIR ...]\n"
    "Print the effective configuration: the USI recipe defaults, merged with CONFIG,\n"
    "merged with each --set, with every plugin option validated, and with the values a\n"
    "run fills in at its start: each augmentation's size = data.img_size, the backbone's\n"
    "(and teacher's) img_size, and num_classes from data.train's class folders. The output\n"
    "is libconfig and loads back to the same values.\n"
    "  --set data.batch_size=64   --set backbone.name=resnet18   --set augment.hflip.p=0.3\n";

int usi_cmd_config(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? USI_EXIT_USAGE : USI_EXIT_OK;
    }
    if (strcmp(argv[1], "show") != 0) {
        fprintf(stderr, "usi config: unknown action '%s'\n%s", argv[1], usage);
        return USI_EXIT_USAGE;
    }
    if (usi_cli_wants_help(argc - 1, argv + 1, usage)) return USI_EXIT_OK;
    /* messages name the command as typed: "usi config show: ..." */
    char **args = malloc(sizeof *args * (size_t)argc);
    if (!args) return usi_cli_fail(usi_error_new(USI_ERR_NOMEM, "out of memory"));
    args[0] = "config show";
    for (int i = 2; i < argc; i++) args[i - 1] = argv[i];
    usi_cli_opts o;
    int rc = usi_cli_parse(argc - 1, args, "cps", &o);
    free(args);
    if (rc) return rc;
    usi_registry *r;
    usi_config *c = usi_cli_load_config(&o, &r);
    if (!c) {
        usi_cli_opts_free(&o);
        return USI_EXIT_ERROR;
    }
    usi_error *e = usi_config_resolve(c, r);
    if (!e) e = usi_setup_fill_config(c);
    if (e) {
        rc = usi_cli_fail(e);
    } else {
        usi_strbuf out = {0};
        usi_config_write(c, &out);
        fputs(out.data ? out.data : "", stdout);
        usi_strbuf_free(&out);
    }
    usi_config_free(c);
    usi_registry_free(r);
    usi_cli_opts_free(&o);
    return rc;
}
