#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "util/error.h"
#include "util/log.h"

int usi_cli_fail(usi_error *e)
{
    /* Through the log, so it ends an open progress line and names the rank. */
    usi_log(USI_LOG_ERROR, "%s", usi_error_message(e));
    usi_error_free(e);
    return USI_EXIT_ERROR;
}

int usi_cli_wants_help(int argc, char **argv, const char *usage)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 1;
        }
    return 0;
}

void usi_cli_unknown_option(const char *cmd, const char *arg)
{
    /* `usi train run.cfg -q` is a natural thing to type: say where it goes. */
    if (!strcmp(arg, "-q") || !strcmp(arg, "--quiet") || !strcmp(arg, "-v") || !strcmp(arg, "--verbose"))
        fprintf(stderr, "usi %s: unknown option '%s': it goes before the command, as in `usi %s %s ...`\n", cmd, arg,
                arg, cmd);
    else
        fprintf(stderr, "usi %s: unknown option '%s'; see `usi %s --help`\n", cmd, arg, cmd);
}

int usi_cli_check_set(const char *cmd, const char *v)
{
    const char *eq = strchr(v, '=');
    if (eq && eq != v) return 0;
    fprintf(stderr, "usi %s: --set '%s' needs key=value, e.g. --set data.batch_size=64\n", cmd, v);
    return USI_EXIT_USAGE;
}

static int push(const char ***arr, size_t *n, const char *s)
{
    const char **p = realloc(*arr, (*n + 1) * sizeof *p);
    if (!p) return 0;
    p[(*n)++] = s;
    *arr = p;
    return 1;
}

/* "--opt value" or "--opt=value". */
static const char *opt_value(const char *name, int argc, char **argv, int *i)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=') return argv[*i] + n + 1;
    if (strcmp(argv[*i], name) == 0) {
        if (*i + 1 >= argc) return NULL;
        return argv[++*i];
    }
    return NULL;
}

static int is_opt(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == 0 || arg[n] == '=');
}

int usi_cli_parse(int argc, char **argv, const char *allow, usi_cli_opts *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strchr(allow, 'p') && is_opt(a, "--plugin-dir")) {
            const char *v = opt_value("--plugin-dir", argc, argv, &i);
            if (!v) goto missing;
            push(&o->plugin_dirs, &o->n_plugin_dirs, v);
        } else if (strchr(allow, 's') && is_opt(a, "--set")) {
            const char *v = opt_value("--set", argc, argv, &i);
            if (!v) goto missing;
            if (usi_cli_check_set(argv[0], v)) return USI_EXIT_USAGE;
            push(&o->sets, &o->n_sets, v);
        } else if (strchr(allow, 'j') && strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (strchr(allow, 'e') && strcmp(a, "--ema") == 0) {
            o->ema = 1;
        } else if (strchr(allow, 'r') && is_opt(a, "--resume")) {
            if (!(o->resume = opt_value("--resume", argc, argv, &i))) goto missing;
        } else if (strchr(allow, 'k') && is_opt(a, "--checkpoint")) {
            if (!(o->checkpoint = opt_value("--checkpoint", argc, argv, &i))) goto missing;
        } else if (a[0] == '-' && a[1]) {
            usi_cli_unknown_option(argv[0], a);
            return USI_EXIT_USAGE;
        } else if (strchr(allow, 'c') && !o->config_path) {
            o->config_path = a;
        } else {
            fprintf(stderr, "usi %s: unexpected argument '%s'; see `usi %s --help`\n", argv[0], a, argv[0]);
            return USI_EXIT_USAGE;
        }
        continue;
    missing:
        fprintf(stderr, "usi %s: option '%s' needs a value\n", argv[0], a);
        return USI_EXIT_USAGE;
    }
    return 0;
}

void usi_cli_opts_free(usi_cli_opts *o)
{
    free(o->plugin_dirs);
    free(o->sets);
    memset(o, 0, sizeof *o);
}

usi_config *usi_cli_load_config(const usi_cli_opts *o, usi_registry **reg)
{
    *reg = NULL;
    usi_config *c = usi_config_new();
    if (!c) {
        usi_cli_fail(usi_error_new(USI_ERR_NOMEM, "out of memory"));
        return NULL;
    }
    usi_error *e = NULL;
    if (o->config_path) e = usi_config_load(c, o->config_path);
    for (size_t i = 0; !e && i < o->n_sets; i++) e = usi_config_set(c, o->sets[i]);
    if (e) goto fail;
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    if (!r) {
        e = usi_error_new(USI_ERR_NOMEM, "out of memory");
        goto fail;
    }
    size_t n_cfg = usi_config_plugin_path_count(c);
    const char **cfg_dirs = calloc(n_cfg ? n_cfg : 1, sizeof *cfg_dirs);
    for (size_t i = 0; cfg_dirs && i < n_cfg; i++) cfg_dirs[i] = usi_config_plugin_path(c, i);
    e = usi_registry_discover(r, o->plugin_dirs, o->n_plugin_dirs, cfg_dirs, cfg_dirs ? n_cfg : 0);
    free(cfg_dirs);
    if (e) {
        usi_registry_free(r);
        goto fail;
    }
    *reg = r;
    return c;
fail:
    usi_cli_fail(e);
    usi_config_free(c);
    return NULL;
}
