/* usi train / usi eval. */
#include <cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/weights_meta.h"
#include "dist/dist.h"
#include "plugin/host.h"
#include "train/setup.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/log.h"

static const char *train_usage =
    "usage: usi train CONFIG [--set key=value ...] [--plugin-dir DIR ...] [--resume FILE]\n"
    "Train the configured backbone with the USI recipe (see `usi config show CONFIG`).\n"
    "Writes OUTPUT_DIR/last.safetensors (checkpoint) every checkpoint.every_epochs epochs,\n"
    "best.safetensors (the better of the raw and EMA weights, timm names, evaluated every\n"
    "eval.every_epochs epochs; the last epoch always does both) and metrics.jsonl. Ctrl-C,\n"
    "SIGTERM or SIGHUP (unless started under nohup) saves a checkpoint at the next step;\n"
    "--resume continues from it.\n"
    "Distributed: `mpirun -np N usi train CONFIG` trains one model on N processes (data.batch_size\n"
    "per process; see samples/distributed.md); rank 0 writes the files.\n";

static const char *eval_usage =
    "usage: usi eval CONFIG --checkpoint FILE [--ema] [--json] [--set key=value ...]\n"
    "Top-1 / top-5 of a checkpoint or weights file on data.val with the eval transform.\n"
    "--ema evaluates the EMA weights of a training checkpoint.\n";

/* What a weights file stores of its training fills what c leaves unset. */
static usi_error *from_weights(usi_config *c, const char *path)
{
    usi_st_file *f;
    USI_TRY(usi_st_read_metadata(path, &f));
    usi_error *e = usi_cli_config_from_weights(c, f, path, NULL);
    usi_st_free(f);
    return e;
}

/* Load, discover, (eval: take the weights file's settings,) resolve; on
 * failure print and return NULL. */
static usi_config *prepare(const usi_cli_opts *o, usi_registry **r, const char *usage, const char *weights)
{
    if (!o->config_path) {
        fputs(usage, stderr);
        return NULL;
    }
    usi_config *c = usi_cli_load_config(o, r);
    if (!c) return NULL;
    usi_error *e = weights ? from_weights(c, weights) : NULL;
    if (!e) e = usi_config_resolve(c, *r);
    /* The checkpoint's config then records the sizes and classes that ran. */
    if (!e) e = usi_setup_fill_config(c);
    if (e) {
        usi_cli_fail(e);
        usi_config_free(c);
        usi_registry_free(*r);
        *r = NULL;
        return NULL;
    }
    usi_host_set_registry(*r);
    return c;
}

/* s in single quotes for a POSIX shell */
static void add_quoted(usi_strbuf *b, const char *s)
{
    usi_strbuf_addf(b, " '");
    for (; *s; s++) {
        if (*s == '\'') usi_strbuf_addf(b, "'\\''");
        else usi_strbuf_addf(b, "%c", *s);
    }
    usi_strbuf_addf(b, "'");
}

/* The command that continues a stopped run: this one's config, plugin
 * folders and --set options, resuming from its last checkpoint; lead says
 * why it stopped. */
static void say_continue(const usi_cli_opts *o, const usi_config *c, const char *lead)
{
    usi_strbuf cmd = {0};
    /* This very program (a build tree's usi is not on PATH), under mpirun
     * with as many processes when it ran so: other counts change the run. */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    /* A usi rebuilt or upgraded while it trained reads as "PATH (deleted)":
     * the command is PATH, where the new usi now is. */
    static const char deleted[] = " (deleted)";
    size_t len = strlen(self), dl = sizeof deleted - 1;
    if (len > dl && !strcmp(self + len - dl, deleted)) self[len - dl] = 0;
    int32_t world = usi_dist_world();
    if (world > 1) usi_strbuf_addf(&cmd, "mpirun -np %d", (int)world);
    if (n > 0) add_quoted(&cmd, self);
    else usi_strbuf_addf(&cmd, " usi");
    usi_strbuf_addf(&cmd, " train");
    add_quoted(&cmd, o->config_path);
    for (size_t i = 0; i < o->n_plugin_dirs; i++) {
        usi_strbuf_addf(&cmd, " --plugin-dir");
        add_quoted(&cmd, o->plugin_dirs[i]);
    }
    for (size_t i = 0; i < o->n_sets; i++) {
        usi_strbuf_addf(&cmd, " --set");
        add_quoted(&cmd, o->sets[i]);
    }
    char last[4200];
    snprintf(last, sizeof last, "%s/last.safetensors", usi_config_string(c, "output_dir"));
    usi_strbuf_addf(&cmd, " --resume");
    add_quoted(&cmd, last);
    usi_say(USI_LOG_ERROR, "usi: %s: %s%s", lead, cmd.data ? cmd.data + (cmd.data[0] == ' ') : "usi train ... --resume ...",
            world > 1 ? " (and this run's other mpirun options)" : "");
    usi_strbuf_free(&cmd);
}

int usi_cmd_train(int argc, char **argv)
{
    if (usi_cli_wants_help(argc, argv, train_usage)) return USI_EXIT_OK;
    usi_cli_opts o;
    int rc = usi_cli_parse(argc, argv, "cpsr", &o);
    if (rc) return rc;
    usi_registry *r = NULL;
    usi_config *c = prepare(&o, &r, train_usage, NULL);
    if (!c) {
        rc = o.config_path ? USI_EXIT_ERROR : USI_EXIT_USAGE;
        usi_cli_opts_free(&o);
        return rc;
    }
    usi_stop_signals_begin();
    signal(SIGXFSZ, SIG_IGN); /* a file-size limit is an error on write, not a crash */

    usi_trainer *t = NULL;
    int interrupted = 0;
    usi_error *e = usi_trainer_new(c, r, &t);
    /* --resume FILE, else checkpoint.resume from the config */
    const char *resume = o.resume ? o.resume : usi_config_string(c, "checkpoint.resume");
    if (!e && resume && *resume) e = usi_trainer_resume(t, resume);
    int ran = !e;
    if (!e) e = usi_trainer_run(t, &interrupted);
    if (e) {
        /* A file that could not be written (a full disk) stops a run that
         * its last checkpoint continues once that is mended. */
        int resumable = ran && e->code == USI_ERR_IO && usi_trainer_has_checkpoint(t);
        rc = usi_cli_fail(e);
        if (resumable && usi_log_is_reporter())
            say_continue(&o, c, "once its files can be written (room on the disk), continue with");
        /* The others would wait for this rank forever: end the job now. The
         * checkpoint on disk is the last whole one (writes are atomic). */
        if (usi_dist_world() > 1) {
            usi_log(USI_LOG_ERROR, "rank %d failed: stopping all %d processes", (int)usi_dist_rank(),
                    (int)usi_dist_world());
            usi_dist_abort(rc);
        }
    } else if (interrupted && usi_log_is_reporter()) {
        say_continue(&o, c, "stopped; continue with");
    }
    if (!e && interrupted) rc = 130;
    usi_trainer_free(t);
    usi_stop_signals_end();
    usi_config_free(c);
    usi_registry_free(r);
    usi_cli_opts_free(&o);
    return rc;
}

/* One JSON object; the path escaped as JSON needs (quotes, backslashes,
 * control characters). */
static void print_json(const char *checkpoint, int ema, const usi_eval_result *res)
{
    cJSON *path = cJSON_CreateString(checkpoint);
    char *quoted = path ? cJSON_PrintUnformatted(path) : NULL;
    printf("{\"checkpoint\": %s, \"weights\": \"%s\", \"top1\": %.4f, \"top5\": %.4f, \"samples\": %lld}\n",
           quoted ? quoted : "null", ema ? "ema" : "raw", res->top1, res->top5, (long long)res->samples);
    free(quoted);
    cJSON_Delete(path);
}

int usi_cmd_eval(int argc, char **argv)
{
    if (usi_cli_wants_help(argc, argv, eval_usage)) return USI_EXIT_OK;
    usi_cli_opts o;
    int rc = usi_cli_parse(argc, argv, "cpsjke", &o);
    if (rc) return rc;
    /* A missing CONFIG or --checkpoint is a usage error (exit 2). */
    if (!o.checkpoint || !o.config_path) {
        fputs(eval_usage, stderr);
        usi_cli_opts_free(&o);
        return USI_EXIT_USAGE;
    }
    usi_registry *r = NULL;
    usi_config *c = prepare(&o, &r, eval_usage, o.checkpoint);
    if (!c) {
        usi_cli_opts_free(&o);
        return USI_EXIT_ERROR;
    }
    usi_eval_result res;
    usi_error *e = usi_evaluate_file(c, r, o.checkpoint, o.ema ? "ema/" : "", &res);
    if (e) rc = usi_cli_fail(e);
    else if (o.json)
        print_json(o.checkpoint, o.ema, &res);
    else
        printf("%s (%s weights): top-1 %.2f%%  top-5 %.2f%%  on %lld images\n", o.checkpoint, o.ema ? "EMA" : "raw",
               res.top1, res.top5, (long long)res.samples);
    usi_config_free(c);
    usi_registry_free(r);
    usi_cli_opts_free(&o);
    return rc;
}
