/* The `usi` command: each subcommand is a function returning the exit status.
 * Exit statuses: 0 success, 1 error (the message says what to do), 2 usage,
 * 3 finished but some plugin files were refused. */
#ifndef USI_CLI_H
#define USI_CLI_H

#include <stddef.h>

#include "config/config.h"
#include "plugin/registry.h"

enum { USI_EXIT_OK = 0, USI_EXIT_ERROR = 1, USI_EXIT_USAGE = 2, USI_EXIT_PLUGIN_PROBLEMS = 3 };

/* Options shared by subcommands. */
typedef struct usi_cli_opts {
    const char *config_path;      /* first positional argument, or NULL   */
    const char **plugin_dirs;     /* --plugin-dir, in order               */
    size_t n_plugin_dirs;
    const char **sets;            /* --set key=value, in order            */
    size_t n_sets;
    int json;                     /* --json                               */
    const char *resume;           /* --resume FILE                        */
    const char *checkpoint;       /* --checkpoint FILE                    */
    int ema;                      /* --ema                                */
} usi_cli_opts;

/* When argv[1..] holds --help or -h: print usage on stdout and return 1
 * (the command then exits 0). Every command and subcommand asks this first. */
int usi_cli_wants_help(int argc, char **argv, const char *usage);

/* Parse argv[1..]; unknown options are a usage error. `allow` lists the
 * options this subcommand takes: "c" config, "p" --plugin-dir, "s" --set,
 * "j" --json, "r" --resume, "k" --checkpoint, "e" --ema. Returns 0 or USI_EXIT_USAGE (after printing why). */
int usi_cli_parse(int argc, char **argv, const char *allow, usi_cli_opts *o);
void usi_cli_opts_free(usi_cli_opts *o);
/* 0 when v (a --set value) has the form key=value, else USI_EXIT_USAGE after
 * saying so: a command-line mistake, found before any work. */
int usi_cli_check_set(const char *cmd, const char *v);
/* "usi CMD: unknown option 'ARG'" on stderr, with where -q and -v go. */
void usi_cli_unknown_option(const char *cmd, const char *arg);

/* Load the config (defaults < file < --set) and discover plugins; on error
 * print it and return NULL. Resolution of components is left to the caller. */
usi_config *usi_cli_load_config(const usi_cli_opts *o, usi_registry **reg);
/* Print an error to stderr as "usi: error: ..." and free it. */
int usi_cli_fail(usi_error *e);

int usi_cmd_plugins(int argc, char **argv);
int usi_cmd_config(int argc, char **argv);
int usi_cmd_train(int argc, char **argv);
int usi_cmd_eval(int argc, char **argv);
int usi_cmd_summary(int argc, char **argv);
int usi_cmd_plot(int argc, char **argv);
int usi_cmd_predict(int argc, char **argv);
int usi_cmd_bench(int argc, char **argv);

#endif
