/* usi weights merge OUT PREFIX=FILE ...: one safetensors file from several,
 * each input's tensors renamed PREFIX.NAME; it makes the weights file of the
 * `ensemble` teacher from its members' best.safetensors. */
#include "cli/cmd_weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "train/safetensors.h"
#include "util/error.h"

static const char *usage =
    "usage: usi weights merge OUT PREFIX=FILE [PREFIX=FILE ...]\n"
    "Write OUT (safetensors) holding every tensor of each FILE renamed PREFIX.NAME.\n"
    "For the `ensemble` teacher, member i of teacher.backbones is read from prefix m<i>:\n"
    "  usi weights merge ens.safetensors m0=runs/a/best.safetensors m1=runs/b/best.safetensors\n"
    "then set teacher.weights = \"ens.safetensors\".\n";

/* A prefix becomes part of tensor names: keep it to what a name scope can
 * hold, so the merged file loads by the same names the graph gives. */
static int valid_prefix(const char *s, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

static int merge(int argc, char **argv)
{
    if (usi_cli_wants_help(argc, argv, usage)) return USI_EXIT_OK;
    if (argc < 3) {
        fputs(usage, stderr);
        return USI_EXIT_USAGE;
    }
    const char *out = argv[1];
    size_t n = (size_t)argc - 2;
    const char **files = calloc(n, sizeof *files);
    char **prefixes = calloc(n, sizeof *prefixes);
    int rc = USI_EXIT_OK;
    if (!files || !prefixes) rc = usi_cli_fail(usi_error_new(USI_ERR_NOMEM, "out of memory"));
    for (size_t i = 0; !rc && i < n; i++) {
        const char *arg = argv[2 + i], *eq = strchr(arg, '=');
        if (!eq || !eq[1] || !valid_prefix(arg, (size_t)(eq - arg))) {
            fprintf(stderr, "usi weights merge: '%s' is not PREFIX=FILE (PREFIX of letters, digits, _)\n%s",
                    arg, usage);
            rc = USI_EXIT_USAGE;
            break;
        }
        size_t len = (size_t)(eq - arg);
        prefixes[i] = malloc(len + 2);
        if (!prefixes[i]) {
            rc = usi_cli_fail(usi_error_new(USI_ERR_NOMEM, "out of memory"));
            break;
        }
        memcpy(prefixes[i], arg, len);
        memcpy(prefixes[i] + len, ".", 2);
        files[i] = eq + 1;
    }
    if (!rc) {
        usi_error *e = usi_st_merge(out, n, files, (const char *const *)prefixes);
        if (e) rc = usi_cli_fail(e);
        else printf("wrote %s from %zu files\n", out, n);
    }
    for (size_t i = 0; prefixes && i < n; i++) free(prefixes[i]);
    free(prefixes);
    free(files);
    return rc;
}

int usi_cmd_weights(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? USI_EXIT_USAGE : USI_EXIT_OK;
    }
    if (strcmp(argv[1], "merge") != 0) {
        fprintf(stderr, "usi weights: unknown action '%s'\n%s", argv[1], usage);
        return USI_EXIT_USAGE;
    }
    return merge(argc - 1, argv + 1);
}
