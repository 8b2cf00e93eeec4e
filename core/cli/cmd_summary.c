/* usi summary BACKBONE: parameters, buffers, multiply-adds and output shape
 * of a backbone, from its recorded graph (nothing is run), and the memory a
 * training step and an inference pass would take at a batch, from the
 * engine's memory plan (nothing is allocated). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "graph/graph.h"
#include "plugin/call.h"
#include "plugin/host.h"
#include "plugin/params.h"
#include "train/safetensors.h"
#include "util/error.h"

static const char *usage =
    "usage: usi summary BACKBONE [--img-size N] [--num-classes K] [--batch B] [--set backbone.OPTION=VALUE ...]\n"
    "                   [--device NAME] [--precision fp32|mixed] [--plugin-dir DIR ...] [--json] [--verbose]\n"
    "Build the backbone on one [1, C, N, N] image and print its parameter count (trainable,\n"
    "buffers excluded), buffer count, multiply-adds of one forward pass (conv, linear and\n"
    "matmul only) and output shape. --set gives any option of the backbone, as in a config\n"
    "(--set backbone.stem=small); options left out keep the backbone's defaults.\n"
    "Memory at --batch B (32): training is parameters + gradients + AdamW state (2 floats\n"
    "per parameter) + EMA (parameters and buffers) + buffers + the planned arena of a\n"
    "training step with a cross-entropy loss; inference is parameters + buffers + the\n"
    "planned arena of a forward pass. Planned only, never allocated, on --device (cpu, cpu-guarded,\n"
    "cuda, cuda:N; default cpu) at --precision (default mixed, the recipe's: bf16 conv, linear and\n"
    "matmul and activations kept as bf16 on devices with a bf16 path, fp32 elsewhere, as `usi train`\n"
    "runs it).\n"
    "--verbose adds a table of the recorded nodes (leaves left out): name, op, output\n"
    "shape, parameters read directly and multiply-adds.\n";

typedef struct summary_args {
    const char *name;
    int64_t img_size, num_classes; /* 0: the component's default */
    int64_t batch;                 /* of the memory figures        */
    const char **dirs;
    size_t n_dirs;
    const char **sets;             /* "OPTION=VALUE", "backbone." removed */
    size_t n_sets;
    int json, verbose;
    const char *device;            /* NULL: cpu                    */
    int mixed;                     /* precision "mixed" asked for  */
} summary_args;

static int push_arg(const char ***arr, size_t *n, const char *v)
{
    const char **p = realloc(*arr, (*n + 1) * sizeof *p);
    if (!p) return 0;
    p[(*n)++] = v;
    *arr = p;
    return 1;
}

/* --set takes only the backbone's own options here: the rest of a config
 * does not change what is summarised. */
static int set_arg(summary_args *a, const char *v)
{
    static const char prefix[] = "backbone.";
    if (strncmp(v, prefix, sizeof prefix - 1) != 0 || !strchr(v, '=')) {
        fprintf(stderr, "usi summary: --set takes backbone.OPTION=VALUE (e.g. --set backbone.stem=small), not '%s'\n",
                v);
        return USI_EXIT_USAGE;
    }
    if (!strncmp(v + sizeof prefix - 1, "name=", 5)) {
        fprintf(stderr, "usi summary: give the backbone as the first argument, not with --set backbone.name\n");
        return USI_EXIT_USAGE;
    }
    return push_arg(&a->sets, &a->n_sets, v) ? 0 : USI_EXIT_ERROR;
}

/* A positive integer option value, or 0 after printing why not. */
static int64_t int_value(const char *opt, const char *v)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 1 || n > (1 << 24)) {
        fprintf(stderr, "usi summary: %s needs a whole number from 1 to %d, not '%s'\n", opt, 1 << 24, v);
        return 0;
    }
    return n;
}

/* "--opt value" or "--opt=value"; NULL when arg is not opt. *bad is set when
 * opt is given without its value. */
static const char *opt_arg(const char *opt, int argc, char **argv, int *i, int *bad)
{
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n]) return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "usi summary: option '%s' needs a value\n", opt);
        *bad = 1;
        return NULL;
    }
    return argv[++*i];
}

static int parse(int argc, char **argv, summary_args *a)
{
    memset(a, 0, sizeof *a);
    a->batch = 32;
    a->mixed = 1;
    for (int i = 1; i < argc; i++) {
        int bad = 0;
        const char *v;
        if ((v = opt_arg("--img-size", argc, argv, &i, &bad))) {
            if (!(a->img_size = int_value("--img-size", v))) return USI_EXIT_USAGE;
        } else if (!bad && (v = opt_arg("--num-classes", argc, argv, &i, &bad))) {
            if (!(a->num_classes = int_value("--num-classes", v))) return USI_EXIT_USAGE;
        } else if (!bad && (v = opt_arg("--batch", argc, argv, &i, &bad))) {
            if (!(a->batch = int_value("--batch", v))) return USI_EXIT_USAGE;
        } else if (!bad && (v = opt_arg("--plugin-dir", argc, argv, &i, &bad))) {
            if (!push_arg(&a->dirs, &a->n_dirs, v)) return USI_EXIT_ERROR;
        } else if (!bad && (v = opt_arg("--device", argc, argv, &i, &bad))) {
            if (!usi_device_name_valid(v)) {
                fprintf(stderr, "usi summary: --device '%s' is not a device; use one of %s\n", v,
                        usi_device_names());
                return USI_EXIT_USAGE;
            }
            a->device = v;
        } else if (!bad && (v = opt_arg("--precision", argc, argv, &i, &bad))) {
            if (strcmp(v, "fp32") && strcmp(v, "mixed")) {
                fprintf(stderr, "usi summary: --precision is fp32 or mixed, not '%s'\n", v);
                return USI_EXIT_USAGE;
            }
            a->mixed = !strcmp(v, "mixed");
        } else if (!bad && (v = opt_arg("--set", argc, argv, &i, &bad))) {
            int rc = set_arg(a, v);
            if (rc) return rc;
        } else if (bad) {
            return USI_EXIT_USAGE;
        } else if (!strcmp(argv[i], "--json")) {
            a->json = 1;
        } else if (!strcmp(argv[i], "--verbose")) {
            a->verbose = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            usi_cli_unknown_option("summary", argv[i]);
            return USI_EXIT_USAGE;
        } else if (!a->name) {
            a->name = argv[i];
        } else {
            fprintf(stderr, "usi summary: unexpected argument '%s'; see `usi summary --help`\n", argv[i]);
            return USI_EXIT_USAGE;
        }
    }
    if (!a->name) {
        fputs(usage, stderr);
        return USI_EXIT_USAGE;
    }
    return 0;
}

/* Bytes of what a training step and an inference pass keep in memory. */
typedef struct memory {
    int64_t batch;
    size_t params, grads, adamw, ema, buffers; /* ema: parameters only      */
    size_t arena_train, arena_infer;
    size_t train, infer;
} memory;

typedef struct summary {
    int64_t side, channels, params, buffers, buffer_bytes, macs;
    int32_t out_ndim;
    int64_t out_shape[USI_MAX_DIMS];
    usi_graph *g;  /* the batch-1 recording, for the layer table */
    memory mem;
    usi_device *dev; /* where the memory is planned */
    int32_t mixed;   /* bf16 copies there                    */
} summary;

/* Set an option the component has; one it lacks is an error only when the
 * user asked for it, since a backbone may have a fixed input or head. */
static usi_error *set_opt(usi_params *p, const char *comp, const char *name, int64_t v)
{
    if (!v) return NULL;
    if (!usi_params_has(p, name))
        return usi_error_new(USI_ERR_INVALID, "backbone '%s' has no option '%s'", comp, name);
    return usi_params_set_int(p, name, v);
}

/* The backbone recorded on a [batch, C, side, side] input, never run. */
static usi_error *record_graph(const usi_component *bb, void *inst, const summary *s, usi_device *dev,
                               int32_t training, int64_t batch, usi_graph **gp, usi_tensor **out)
{
    usi_graph *g = usi_graph_new(dev, training, 0);
    if (!g) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    int64_t shape[4] = {batch, s->channels, s->side, s->side};
    usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, shape);
    usi_error *e = usi_call_build_backbone(g, bb, inst, x, out);
    if (e) {
        usi_graph_free(g);
        return e;
    }
    *gp = g;
    return NULL;
}

static usi_error *record(const usi_component *bb, void *inst, summary *s)
{
    usi_tensor *out = NULL;
    USI_TRY(record_graph(bb, inst, s, usi_device_cpu(), 0, 1, &s->g, &out));
    usi_graph *g = s->g;
    usi_param_info info;
    for (int32_t i = 0; i < usi_graph_num_params(g); i++)
        if (usi_graph_param_at(g, i, &info)) s->params += info.numel;
    for (int32_t i = 0; i < usi_graph_num_buffers(g); i++)
        if (usi_graph_buffer_at(g, i, &info)) {
            s->buffers += info.numel;
            s->buffer_bytes += (size_t)info.numel * usi_dtype_size(info.dtype);
        }
    s->macs = usi_graph_forward_macs(g);
    const usi_graph_api *G = usi_graph_api_get();
    s->out_ndim = G->ndim(out);
    for (int32_t d = 0; d < s->out_ndim && d < USI_MAX_DIMS; d++) s->out_shape[d] = G->dim(out, d);
    return NULL;
}

/* The planned arena of a training step (cross-entropy on labels) or of an
 * inference pass at the batch; nothing is allocated. */
static usi_error *plan_arena(const usi_component *bb, void *inst, const summary *s, int32_t training,
                             size_t *bytes)
{
    usi_graph *g = NULL;
    usi_tensor *out = NULL;
    int64_t batch = s->mem.batch;
    USI_TRY(record_graph(bb, inst, s, s->dev, training, batch, &g, &out));
    usi_error *e = NULL;
    if (training) {
        usi_tensor *y = usi_graph_input(g, "labels", USI_DTYPE_I32, 1, &batch);
        e = usi_graph_set_loss(g, usi_graph_api_get()->loss_ce(g, out, y, 0.0));
    } else {
        usi_graph_mark_output(out);
    }
    if (!e) e = usi_graph_plan_only(g, bytes, NULL);
    usi_graph_free(g);
    return e ? usi_error_prefix(e, "planning the %s memory: ", training ? "training" : "inference") : NULL;
}

static usi_error *plan_memory(const usi_component *bb, void *inst, summary *s)
{
    memory *m = &s->mem;
    USI_TRY(plan_arena(bb, inst, s, 1, &m->arena_train));
    USI_TRY(plan_arena(bb, inst, s, 0, &m->arena_infer));
    m->params = (size_t)s->params * sizeof(float);
    m->grads = m->params;
    m->adamw = 2 * m->params;
    m->ema = m->params;
    m->buffers = s->buffer_bytes;
    /* The EMA keeps its own copy of the buffers too. */
    m->train = m->params + m->grads + m->adamw + m->ema + 2 * m->buffers + m->arena_train;
    m->infer = m->params + m->buffers + m->arena_infer;
    return NULL;
}

/* A backbone returns [batch, num_classes] logits; training refuses any
 * other output, and so does the summary rather than print figures of it. */
static usi_error *check_output(const usi_params *p, const summary *s)
{
    int64_t classes = 0;
    if (usi_params_has(p, "num_classes")) USI_TRY(usi_params_get_int(p, "num_classes", &classes));
    if (s->out_ndim == 2 && s->out_shape[0] == 1 && (!classes || s->out_shape[1] == classes)) return NULL;
    char shape[160] = "[";
    for (int32_t d = 0; d < s->out_ndim && d < USI_MAX_DIMS; d++)
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? ", " : "",
                 (long long)s->out_shape[d]);
    strcat(shape, "]");
    char want[48] = "[1, classes]";
    if (classes) snprintf(want, sizeof want, "[1, %lld]", (long long)classes);
    return usi_error_new(USI_ERR_INVALID, "its output is %s for a batch of 1, not %s: a backbone's build must "
                         "return [batch, num_classes] logits", shape, want);
}

static usi_error *summarize(const usi_registry *r, const summary_args *a, summary *s)
{
    const usi_loaded *l = NULL;
    USI_TRY(usi_registry_select(r, USI_KIND_BACKBONE, a->name, &l));
    const usi_component *bb = l->comp;
    usi_params *p = usi_params_new(bb);
    if (!p) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = NULL;
    for (size_t i = 0; !e && i < a->n_sets; i++) {
        char origin[1024];
        snprintf(origin, sizeof origin, "--set '%s'", a->sets[i]);
        e = usi_params_assign(p, a->sets[i] + strlen("backbone."), origin);
    }
    if (!e) e = set_opt(p, bb->name, "img_size", a->img_size);
    if (!e) e = set_opt(p, bb->name, "num_classes", a->num_classes);
    s->side = a->img_size ? a->img_size : 224;
    s->channels = 3;
    if (!e && !a->img_size && usi_params_has(p, "img_size")) e = usi_params_get_int(p, "img_size", &s->side);
    if (!e && usi_params_has(p, "in_chans")) e = usi_params_get_int(p, "in_chans", &s->channels);
    void *inst = NULL;
    if (!e) e = usi_call_create(bb, p, &inst);
    s->mem.batch = a->batch;
    if (!e) e = usi_device_open(a->device ? a->device : "cpu", &s->dev);
    /* as `usi train` decides it (config resolve) */
    s->mixed = !e && a->mixed && usi_device_name_has_bf16(usi_device_name(s->dev));
    if (!e) e = usi_device_set_mixed(s->dev, s->mixed);
    if (!e) e = record(bb, inst, s);
    if (!e) e = check_output(p, s);
    if (!e) e = plan_memory(bb, inst, s);
    if (inst) usi_call_destroy(bb, inst);
    usi_params_free(p);
    return e ? usi_error_prefix(e, "backbone '%s': ", a->name) : NULL;
}

static void add_shape(cJSON *o, const char *key, int32_t ndim, const int64_t *shape)
{
    cJSON *arr = cJSON_AddArrayToObject(o, key);
    for (int32_t d = 0; d < ndim; d++) cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)shape[d]));
}

static void add_memory(cJSON *o, const memory *m)
{
    cJSON_AddNumberToObject(o, "batch", (double)m->batch);
    cJSON_AddNumberToObject(o, "train_memory_bytes", (double)m->train);
    cJSON_AddNumberToObject(o, "infer_memory_bytes", (double)m->infer);
    cJSON_AddNumberToObject(o, "arena_train_bytes", (double)m->arena_train);
    cJSON_AddNumberToObject(o, "arena_infer_bytes", (double)m->arena_infer);
    cJSON_AddNumberToObject(o, "param_bytes", (double)m->params);
    cJSON_AddNumberToObject(o, "grad_bytes", (double)m->grads);
    cJSON_AddNumberToObject(o, "optimizer_bytes", (double)m->adamw);
    cJSON_AddNumberToObject(o, "ema_bytes", (double)m->ema);
    cJSON_AddNumberToObject(o, "buffer_bytes", (double)m->buffers);
}

static void add_layers(cJSON *o, const usi_graph *g)
{
    cJSON *arr = cJSON_AddArrayToObject(o, "layers");
    usi_node_info n;
    for (int32_t i = 0; usi_graph_node_info(g, i, &n); i++) {
        if (n.leaf) continue;
        cJSON *row = cJSON_CreateObject();
        cJSON_AddStringToObject(row, "name", n.name);
        cJSON_AddStringToObject(row, "op", n.op);
        add_shape(row, "shape", n.ndim, n.shape);
        cJSON_AddNumberToObject(row, "params", (double)n.params);
        cJSON_AddNumberToObject(row, "macs", (double)n.macs);
        cJSON_AddItemToArray(arr, row);
    }
}

/* Recorded nodes that are not leaves: the layer table's rows. */
static int32_t count_layers(const usi_graph *g)
{
    usi_node_info n;
    int32_t rows = 0;
    for (int32_t i = 0; usi_graph_node_info(g, i, &n); i++) rows += !n.leaf;
    return rows;
}

static void print_json(const char *name, const summary *s, int verbose)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "backbone", name);
    cJSON_AddNumberToObject(o, "img_size", (double)s->side);
    cJSON_AddNumberToObject(o, "params", (double)s->params);
    cJSON_AddNumberToObject(o, "buffers", (double)s->buffers);
    cJSON_AddNumberToObject(o, "macs", (double)s->macs); /* exact below 2^53 */
    add_shape(o, "output_shape", s->out_ndim, s->out_shape);
    cJSON_AddNumberToObject(o, "nodes", (double)count_layers(s->g));
    cJSON_AddStringToObject(o, "device", usi_device_name(s->dev));
    cJSON_AddStringToObject(o, "precision", s->mixed ? "mixed" : "fp32");
    add_memory(o, &s->mem);
    if (verbose) add_layers(o, s->g);
    char *text = cJSON_Print(o);
    if (text) puts(text);
    free(text);
    cJSON_Delete(o);
}

/* 25557032 -> "25,557,032". */
static const char *grouped(int64_t v, char *buf, size_t cap)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%lld", (long long)v);
    size_t k = 0;
    for (int i = 0; i < n && k + 2 < cap; i++) {
        buf[k++] = digits[i];
        int left = n - 1 - i;
        if (left > 0 && left % 3 == 0 && digits[i] != '-') buf[k++] = ',';
    }
    buf[k] = 0;
    return buf;
}

static double mib(size_t bytes) { return (double)bytes / 1048576.0; }

static void print_memory(const memory *m)
{
    printf("  memory at batch %lld (planned, not allocated)\n", (long long)m->batch);
    printf("    training   %10.1f MiB = params %.1f + grads %.1f + AdamW %.1f + EMA %.1f + buffers x2 %.1f"
           " + arena %.1f\n",
           mib(m->train), mib(m->params), mib(m->grads), mib(m->adamw), mib(m->ema), mib(2 * m->buffers),
           mib(m->arena_train));
    printf("    inference  %10.1f MiB = params %.1f + buffers %.1f + arena %.1f\n", mib(m->infer),
           mib(m->params), mib(m->buffers), mib(m->arena_infer));
}

static void print_layers(const usi_graph *g)
{
    printf("\n%-44s %-14s %-20s %12s %16s\n", "layer", "op", "output", "params", "MACs");
    usi_node_info n;
    for (int32_t i = 0; usi_graph_node_info(g, i, &n); i++) {
        if (n.leaf) continue;
        char shape[96], p[48], m[48];
        int k = snprintf(shape, sizeof shape, "[");
        for (int32_t d = 0; d < n.ndim && k > 0 && (size_t)k < sizeof shape; d++)
            k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%lld", d ? "," : "", (long long)n.shape[d]);
        if (k > 0 && (size_t)k < sizeof shape) snprintf(shape + k, sizeof shape - (size_t)k, "]");
        printf("%-44s %-14s %-20s %12s %16s\n", n.name, n.op, shape, grouped(n.params, p, sizeof p),
               grouped(n.macs, m, sizeof m));
    }
}

static void print_text(const char *name, const summary *s, int verbose)
{
    char b[48];
    printf("%s at %lldx%lld\n", name, (long long)s->side, (long long)s->side);
    printf("  parameters   %s (%.2f M)\n", grouped(s->params, b, sizeof b), (double)s->params / 1e6);
    printf("  buffers      %s\n", grouped(s->buffers, b, sizeof b));
    printf("  MACs         %s (%.2f G, conv + linear + matmul, batch 1)\n", grouped(s->macs, b, sizeof b),
           (double)s->macs / 1e9);
    printf("  output       [");
    for (int32_t d = 0; d < s->out_ndim; d++) printf("%s%lld", d ? ", " : "", (long long)s->out_shape[d]);
    printf("]\n");
    printf("  nodes        %d (leaves left out)\n", count_layers(s->g));
    printf("  device       %s, precision %s\n", usi_device_name(s->dev),
           s->mixed ? "mixed (bf16 conv, linear and matmul; activations kept as bf16)" : "fp32");
    print_memory(&s->mem);
    if (verbose) print_layers(s->g);
}

int usi_cmd_summary(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return USI_EXIT_OK;
        }
    summary_args a;
    int rc = parse(argc, argv, &a);
    if (rc) {
        free(a.dirs);
        free(a.sets);
        return rc;
    }
    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = r ? usi_registry_discover(r, a.dirs, a.n_dirs, NULL, 0)
                     : usi_error_new(USI_ERR_NOMEM, "out of memory");
    summary s;
    memset(&s, 0, sizeof s);
    if (!e) {
        usi_host_set_registry(r); /* a backbone may build another by name */
        e = summarize(r, &a, &s);
        usi_host_set_registry(NULL);
    }
    if (e) rc = usi_cli_fail(e);
    else if (a.json) print_json(a.name, &s, a.verbose);
    else print_text(a.name, &s, a.verbose);
    if (s.g) usi_graph_free(s.g);
    usi_registry_free(r);
    free(a.dirs);
    free(a.sets);
    return rc;
}
