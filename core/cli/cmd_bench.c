/* usi bench: inference (and training-step) speed of backbones on the run's
 * device, bench.csv, a table, and the speed-accuracy Pareto plot. The
 * measuring, the CSV and the plot live in core/bench; this file turns the
 * command line and the config into their inputs. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/csv.h"
#include "bench/pareto.h"
#include "cli/cli.h"
#include "plugin/host.h"
#include "plugin/params.h"
#include "train/optim.h"
#include "util/error.h"
#include "util/file.h"
#include "util/log.h"

#ifndef USI_BUILD_ROOT
#define USI_BUILD_ROOT ""
#endif
#ifndef USI_SOURCE_ROOT
#define USI_SOURCE_ROOT ""
#endif
#ifndef USI_DATA_DIR
#define USI_DATA_DIR ""
#endif
#define ACCURACY_FILE "usi_imagenet_top1.csv"

static const char *usage =
    "usage: usi bench [CONFIG] [--backbones a,b,...|all] [--img-size N] [--batch N] [--train] [--steps N]\n"
    "                 [--warmup N] [--num-classes K] [--accuracy FILE.csv] [--out DIR] [--device NAME]\n"
    "                 [--set key=value ...] [--plugin-dir DIR ...]\n"
    "Measure how many images per second backbones take on a device, and draw speed against ImageNet top-1.\n"
    "Inference is a forward pass in eval mode; --train also times the training step (forward, soft-target\n"
    "loss, backward, gradient norm, optimizer and EMA as `usi train` runs them; the teacher is left out).\n"
    "Each mode runs --warmup untimed steps (default 1), then --steps timed ones (default 5): the speed is\n"
    "batch / the median step time.\n"
    "  --backbones   comma-separated names, or all (every backbone plugin found); default: CONFIG's\n"
    "                backbone.name, else all\n"
    "  --img-size    input side (default: CONFIG's data.img_size, 224)\n"
    "  --batch       images per step (default 32)\n"
    "  --num-classes classifier size (default: CONFIG's backbone.num_classes when set, else 1000)\n"
    "  --accuracy    CSV with the columns backbone and top1 (default: the USI paper's ImageNet top-1,\n"
    "                " ACCURACY_FILE ")\n"
    "  --out         folder for bench.csv, pareto.png and pareto.svg (default: CONFIG's output_dir/bench)\n"
    "  --device      cpu, cuda, cuda:N (default: CONFIG's device, cpu)\n"
    "CONFIG and --set give the device, threads, the optimizer and EMA of the training step, and the options\n"
    "of the backbone CONFIG names. A backbone that cannot be built or run is listed with the reason and the\n"
    "others go on; the exit status is 1 only when none could be measured.\n";

typedef struct bench_args {
    usi_cli_opts cli;             /* CONFIG, --set, --plugin-dir */
    const char *backbones, *accuracy, *out, *device;
    int64_t img_size, batch, num_classes, steps, warmup;
    int train;
} bench_args;

static int push(const char ***arr, size_t *n, const char *s)
{
    const char **p = realloc(*arr, (*n + 1) * sizeof *p);
    if (!p) return 0;
    p[(*n)++] = s;
    *arr = p;
    return 1;
}

/* "--opt value" or "--opt=value"; NULL when arg is not opt. *bad is set
 * when opt comes without its value. */
static const char *opt_arg(const char *opt, int argc, char **argv, int *i, int *bad)
{
    size_t n = strlen(opt);
    if (*bad || strncmp(argv[*i], opt, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n]) return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "usi bench: option '%s' needs a value\n", opt);
        *bad = 1;
        return NULL;
    }
    return argv[++*i];
}

/* A whole number in [lo, 1e9] for opt, or -1 after saying why not. */
static int64_t int_value(const char *opt, const char *v, int64_t lo)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > 1000000000) {
        fprintf(stderr, "usi bench: %s needs a whole number of at least %lld, not '%s'\n", opt, (long long)lo, v);
        return -1;
    }
    return n;
}

static int parse(int argc, char **argv, bench_args *a)
{
    memset(a, 0, sizeof *a);
    a->steps = 5;
    a->warmup = 1;
    struct {
        const char *name;
        int64_t *dst, lo;
    } ints[] = {{"--img-size", &a->img_size, 8},     {"--batch", &a->batch, 1}, {"--steps", &a->steps, 1},
                {"--warmup", &a->warmup, 0},         {"--num-classes", &a->num_classes, 1}};
    struct {
        const char *name, **dst;
    } strs[] = {{"--backbones", &a->backbones}, {"--accuracy", &a->accuracy}, {"--out", &a->out},
                {"--device", &a->device}};
    for (int i = 1; i < argc; i++) {
        int bad = 0, done = 0;
        const char *v;
        for (size_t k = 0; k < sizeof ints / sizeof *ints && !done && !bad; k++)
            if ((v = opt_arg(ints[k].name, argc, argv, &i, &bad))) {
                if ((*ints[k].dst = int_value(ints[k].name, v, ints[k].lo)) < 0) return USI_EXIT_USAGE;
                done = 1;
            }
        for (size_t k = 0; k < sizeof strs / sizeof *strs && !done && !bad; k++)
            if ((v = opt_arg(strs[k].name, argc, argv, &i, &bad))) *strs[k].dst = v, done = 1;
        if (!done && !bad && (v = opt_arg("--set", argc, argv, &i, &bad)))
            done = !usi_cli_check_set("bench", v) && push(&a->cli.sets, &a->cli.n_sets, v) ? 1 : (bad = 1);
        if (!done && !bad && (v = opt_arg("--plugin-dir", argc, argv, &i, &bad)))
            done = push(&a->cli.plugin_dirs, &a->cli.n_plugin_dirs, v) ? 1 : (bad = 1);
        if (bad) return USI_EXIT_USAGE;
        if (done) continue;
        if (!strcmp(argv[i], "--train")) {
            a->train = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            usi_cli_unknown_option("bench", argv[i]);
            return USI_EXIT_USAGE;
        } else if (!a->cli.config_path) {
            a->cli.config_path = argv[i];
        } else {
            fprintf(stderr, "usi bench: unexpected argument '%s'; see `usi bench --help`\n", argv[i]);
            return USI_EXIT_USAGE;
        }
    }
    return 0;
}

/* ---- which backbones ---- */

static int has_name(char **names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], s)) return 1;
    return 0;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* Every backbone component the registry holds, in its order. */
static usi_error *all_backbones(const usi_registry *r, char ***out, size_t *n)
{
    for (size_t i = 0; i < usi_registry_count(r); i++) {
        const usi_component *c = usi_registry_at(r, i)->comp;
        if (c->kind != USI_KIND_BACKBONE || has_name(*out, *n, c->name)) continue;
        char **p = realloc(*out, (*n + 1) * sizeof *p);
        if (!p) return usi_error_new(USI_ERR_NOMEM, "out of memory");
        *out = p;
        if (!(p[*n] = strdup(c->name))) return usi_error_new(USI_ERR_NOMEM, "out of memory");
        ++*n;
    }
    if (!*n)
        return usi_error_new(USI_ERR_INVALID, "no backbone plugins were found; build them, or name their folder "
                             "with --plugin-dir");
    return NULL;
}

static usi_error *unknown_backbone(const usi_registry *r, const char *name)
{
    usi_strbuf msg = {0};
    usi_strbuf_addf(&msg, "no backbone named '%s' (--backbones); valid backbones:", name);
    size_t k = 0;
    for (size_t i = 0; i < usi_registry_count(r); i++) {
        const usi_component *c = usi_registry_at(r, i)->comp;
        if (c->kind == USI_KIND_BACKBONE) usi_strbuf_addf(&msg, "%s %s", k++ ? "," : "", c->name);
    }
    if (!k) usi_strbuf_addf(&msg, " none were found (--plugin-dir names their folder)");
    usi_error *e = usi_error_new(USI_ERR_INVALID, "%s", msg.data ? msg.data : "out of memory");
    usi_strbuf_free(&msg);
    return e;
}

/* The names asked for, each once, in the order given; every one known. */
static usi_error *pick_backbones(const usi_registry *r, const char *list, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!strcmp(list, "all")) return all_backbones(r, out, n);
    char *copy = strdup(list), *save = NULL;
    if (!copy) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = NULL;
    for (char *tok = strtok_r(copy, ", ", &save); tok && !e; tok = strtok_r(NULL, ", ", &save)) {
        if (!usi_registry_find(r, USI_KIND_BACKBONE, tok)) e = unknown_backbone(r, tok);
        if (e || has_name(*out, *n, tok)) continue;
        char **p = realloc(*out, (*n + 1) * sizeof *p);
        if (!p || !(p[*n] = strdup(tok))) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
        if (p) *out = p;
        if (!e) ++*n;
    }
    free(copy);
    if (!e && !*n) e = usi_error_new(USI_ERR_INVALID, "--backbones names no backbone");
    return e;
}

/* ---- one row ---- */

/* The config's options when it names this backbone, else its defaults;
 * then the bench's size and classes. */
static usi_error *backbone_params(const usi_config *c, const usi_component *bb, int64_t side, int64_t classes,
                                  usi_params **out)
{
    const usi_selected *sel = usi_config_backbone(c);
    usi_params *p = sel && sel->loaded->comp == bb ? usi_params_copy(sel->params) : usi_params_new(bb);
    if (!p) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = NULL;
    if (usi_params_has(p, "img_size")) e = usi_params_set_int(p, "img_size", side);
    if (!e && usi_params_has(p, "num_classes")) e = usi_params_set_int(p, "num_classes", classes);
    if (e) usi_params_free(p);
    else *out = p;
    return e;
}

typedef struct progress_ctx {
    size_t i, n;
} progress_ctx;

static void progress(void *ctx, const char *backbone, const char *phase)
{
    const progress_ctx *p = ctx;
    if (usi_log_level() <= USI_LOG_INFO)
        fprintf(stderr, "usi bench: [%zu/%zu] %s: %s\n", p->i + 1, p->n, backbone, phase);
}

static void measure_one(const usi_registry *r, const usi_config *c, const char *name, int64_t classes,
                        usi_bench_opts *o, usi_bench_row *row)
{
    const usi_loaded *l = NULL;
    usi_params *p = NULL;
    usi_error *e = usi_registry_select(r, USI_KIND_BACKBONE, name, &l);
    if (!e) e = backbone_params(c, l->comp, o->img_size, classes, &p);
    if (!e) e = usi_bench_measure(l->comp, p, o, row);
    usi_params_free(p);
    if (e) {
        row->error = strdup(usi_error_message(e));
        fprintf(stderr, "usi bench: %s: %s\n", name, usi_error_message(e));
        usi_error_free(e);
    }
}

/* ---- accuracy, outputs ---- */

/* The shipped table: the source tree's when usi runs from its build tree,
 * else the installed copy. */
static void default_accuracy_path(char *buf, size_t cap)
{
    char exe[PATH_MAX], root[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0 && *USI_BUILD_ROOT && realpath(USI_BUILD_ROOT, root)) {
        exe[n] = 0;
        size_t k = strlen(root);
        if (!strncmp(exe, root, k) && exe[k] == '/') {
            snprintf(buf, cap, "%s/samples/%s", USI_SOURCE_ROOT, ACCURACY_FILE);
            return;
        }
    }
    snprintf(buf, cap, "%s/%s", USI_DATA_DIR, ACCURACY_FILE);
}

/* --accuracy must load; the default table may be missing (a partial
 * install), which only leaves the plot empty. */
static usi_error *load_accuracy(const char *given, char *path, size_t cap, usi_accuracy *acc)
{
    memset(acc, 0, sizeof *acc);
    if (given) {
        snprintf(path, cap, "%s", given);
        usi_error *e = usi_accuracy_load(given, acc);
        return e ? usi_error_prefix(e, "--accuracy: ") : NULL;
    }
    default_accuracy_path(path, cap);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "usi bench: no accuracy table at %s; pass --accuracy FILE.csv to plot top-1\n", path);
        *path = 0;
        return NULL;
    }
    return usi_accuracy_load(path, acc);
}

/* Make dir and make sure a file can be put there, before anything is
 * measured. */
static usi_error *check_out_dir(const char *dir)
{
    usi_error *e = usi_mkdirs(dir);
    if (!e && access(dir, W_OK) != 0)
        e = usi_error_new(USI_ERR_IO, "cannot write into %s: %s", dir, strerror(errno));
    if (!e) return NULL;
    usi_error *out = usi_error_new(e->code, "--out: %s; choose a folder you can write to", usi_error_message(e));
    usi_error_free(e);
    return out;
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The plot's points: rows with a speed and a top-1, front marked. */
static usi_error *plot(const usi_bench_row *rows, size_t n, const char *title, const char *png, const char *svg)
{
    double *speed = calloc(n + 1, sizeof *speed), *top1 = calloc(n + 1, sizeof *top1);
    uint8_t *front = calloc(n + 1, 1);
    usi_pareto_point *pts = calloc(n + 1, sizeof *pts);
    usi_error *e = speed && top1 && front && pts ? NULL : usi_error_new(USI_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; !e && i < n; i++) {
        speed[i] = rows[i].infer_img_s;
        top1[i] = rows[i].top1;
    }
    if (!e) usi_pareto_front(speed, top1, n, front);
    for (size_t i = 0; !e && i < n; i++)
        if (speed[i] > 0 && isfinite(top1[i]))
            pts[k++] = (usi_pareto_point){rows[i].backbone, speed[i], top1[i], front[i]};
    if (!e) e = usi_pareto_plot(pts, k, title, png);
    if (!e) e = usi_pareto_plot(pts, k, title, svg);
    free(speed);
    free(top1);
    free(front);
    free(pts);
    return e;
}

/* After the table: what the plot leaves out and why, and where the files are. */
static void notes(const usi_bench_row *rows, size_t n, const char *acc_path, const char *dir)
{
    usi_strbuf no_top1 = {0}, failed = {0};
    for (size_t i = 0; i < n; i++) {
        if (!(rows[i].infer_img_s > 0)) usi_strbuf_addf(&failed, "%s%s", failed.len ? ", " : "", rows[i].backbone);
        else if (!isfinite(rows[i].top1))
            usi_strbuf_addf(&no_top1, "%s%s", no_top1.len ? ", " : "", rows[i].backbone);
    }
    if (no_top1.len)
        printf("not plotted, no top-1 in %s: %s\n", *acc_path ? acc_path : "(no accuracy table)", no_top1.data);
    if (failed.len) printf("not plotted, not measured: %s\n", failed.data);
    printf("wrote %s/bench.csv, %s/pareto.png and %s/pareto.svg\n", dir, dir, dir);
    usi_strbuf_free(&no_top1);
    usi_strbuf_free(&failed);
}

static usi_error *write_outputs(const char *dir, const usi_bench_row *rows, size_t n, const char *title)
{
    char *csv_path = join(dir, "bench.csv"), *png = join(dir, "pareto.png"), *svg = join(dir, "pareto.svg");
    usi_strbuf csv = {0};
    usi_bench_csv(rows, n, &csv);
    usi_error *e = csv_path && png && svg && csv.data ? NULL : usi_error_new(USI_ERR_NOMEM, "out of memory");
    if (!e) e = usi_file_write_atomic(csv_path, csv.data, csv.len);
    if (!e) e = plot(rows, n, title, png, svg);
    usi_strbuf_free(&csv);
    free(csv_path);
    free(png);
    free(svg);
    return e;
}

/* ---- the command ---- */

typedef struct bench_run {
    usi_config *cfg;
    usi_registry *reg;
    usi_bench_opts o;
    int64_t classes;
    const char *out_dir;
    char *default_out;
    char acc_path[PATH_MAX];
    usi_accuracy acc;
    char **names;
    size_t n;
} bench_run;

static void run_free(bench_run *r)
{
    free_names(r->names, r->n);
    usi_accuracy_free(&r->acc);
    free(r->default_out);
    usi_config_free(r->cfg);
    usi_registry_free(r->reg);
}

static usi_error *set_device(usi_config *c, const char *name)
{
    if (!usi_device_name_valid(name))
        return usi_error_new(USI_ERR_INVALID, "--device '%s': unknown device; valid devices: %s", name,
                             usi_device_names());
    usi_strbuf b = {0};
    usi_strbuf_addf(&b, "device=");
    usi_strbuf_add_quoted(&b, name);
    usi_error *e = b.data ? usi_config_set(c, b.data) : usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_strbuf_free(&b);
    return e ? usi_error_prefix(e, "--device: ") : NULL;
}

/* Everything the measuring needs, checked before the first backbone. */
static usi_error *prepare(const bench_args *a, bench_run *r)
{
    usi_config *c = r->cfg;
    if (a->device) USI_TRY(set_device(c, a->device));
    /* no data flows, so the augmentations need not be installed */
    USI_TRY(usi_config_set(c, "augment=()"));
    USI_TRY(usi_config_resolve(c, r->reg));
    usi_device_set_threads((int32_t)usi_config_int(c, "threads"));
    USI_TRY(usi_device_open(usi_config_string(c, "device"), &r->o.dev));
    const usi_selected *sel = usi_config_backbone(c);
    const char *list = a->backbones ? a->backbones : sel ? sel->loaded->comp->name : "all";
    USI_TRY(pick_backbones(r->reg, list, &r->names, &r->n));
    r->classes = a->num_classes ? a->num_classes : 1000;
    if (!a->num_classes && sel && usi_params_is_set(sel->params, "num_classes"))
        USI_TRY(usi_params_get_int(sel->params, "num_classes", &r->classes));
    r->o.img_size = a->img_size ? a->img_size : usi_config_int(c, "data.img_size");
    r->o.batch = a->batch ? a->batch : 32;
    r->o.train = a->train;
    r->o.steps = (int)a->steps;
    r->o.warmup = (int)a->warmup;
    r->o.seed = (uint64_t)usi_config_int(c, "seed");
    const char *opt = usi_config_string(c, "optimizer.name");
    r->o.hp = (usi_optim_hp){!strcmp(opt, "sgd") ? USI_OPT_SGD : !strcmp(opt, "lamb") ? USI_OPT_LAMB : USI_OPT_ADAMW,
                             usi_scaled_lr(usi_config_float(c, "optimizer.lr"), usi_config_int(c, "optimizer.lr_batch"),
                                           r->o.batch),
                             usi_config_float(c, "optimizer.weight_decay"), usi_config_float(c, "optimizer.beta1"),
                             usi_config_float(c, "optimizer.beta2"), usi_config_float(c, "optimizer.eps"),
                             usi_config_float(c, "optimizer.momentum"), usi_config_bool(c, "optimizer.nesterov")};
    r->o.clip = usi_config_float(c, "optimizer.clip_grad");
    r->o.ema = usi_config_bool(c, "ema.enabled");
    r->out_dir = a->out;
    if (!r->out_dir) {
        if (!(r->default_out = join(usi_config_string(c, "output_dir"), "bench")))
            return usi_error_new(USI_ERR_NOMEM, "out of memory");
        r->out_dir = r->default_out;
    }
    USI_TRY(check_out_dir(r->out_dir));
    return load_accuracy(a->accuracy, r->acc_path, sizeof r->acc_path, &r->acc);
}

static int measure_all(bench_run *r)
{
    usi_bench_row *rows = calloc(r->n, sizeof *rows);
    if (!rows) return usi_cli_fail(usi_error_new(USI_ERR_NOMEM, "out of memory"));
    progress_ctx pc = {0, r->n};
    r->o.progress = progress;
    r->o.progress_ctx = &pc;
    size_t measured = 0;
    for (size_t i = 0; i < r->n; i++) {
        usi_bench_row *row = &rows[i];
        pc.i = i;
        row->backbone = strdup(r->names[i]);
        row->device = strdup(usi_device_name(r->o.dev));
        row->img_size = r->o.img_size;
        row->batch = r->o.batch;
        row->top1 = usi_accuracy_find(&r->acc, r->names[i]);
        measure_one(r->reg, r->cfg, r->names[i], r->classes, &r->o, row);
        measured += row->infer_img_s > 0;
    }
    char title[512];
    snprintf(title, sizeof title, "speed and top-1 on %s: %lldx%lld px, batch %lld%s%s", usi_device_name(r->o.dev),
             (long long)r->o.img_size, (long long)r->o.img_size, (long long)r->o.batch,
             *r->acc_path ? "; top-1 from " : "", *r->acc_path ? base_name(r->acc_path) : "");
    usi_error *e = write_outputs(r->out_dir, rows, r->n, title);
    usi_bench_print_table(stdout, rows, r->n);
    int rc = e ? usi_cli_fail(e) : USI_EXIT_OK;
    if (!e) notes(rows, r->n, r->acc_path, r->out_dir);
    if (!rc && !measured) {
        fprintf(stderr, "usi bench: no backbone could be measured (the table says why)\n");
        rc = USI_EXIT_ERROR;
    }
    for (size_t i = 0; i < r->n; i++) usi_bench_row_free(&rows[i]);
    free(rows);
    return rc;
}

int usi_cmd_bench(int argc, char **argv)
{
    if (usi_cli_wants_help(argc, argv, usage)) return USI_EXIT_OK;
    bench_args a;
    int rc = parse(argc, argv, &a);
    if (rc) {
        usi_cli_opts_free(&a.cli);
        return rc;
    }
    bench_run r;
    memset(&r, 0, sizeof r);
    r.cfg = usi_cli_load_config(&a.cli, &r.reg);
    if (!r.cfg) rc = USI_EXIT_ERROR;
    if (!rc) {
        usi_host_set_registry(r.reg); /* a backbone may build another by name */
        usi_error *e = prepare(&a, &r);
        rc = e ? usi_cli_fail(e) : measure_all(&r);
        usi_host_set_registry(NULL);
    }
    run_free(&r);
    usi_cli_opts_free(&a.cli);
    return rc;
}
