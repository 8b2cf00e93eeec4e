/* usi predict: arguments, the images through the evaluation transform and
 * the network, and the top-k output. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/predict.h"
#include "data/augchain.h"
#include "data/decode.h"
#include "data/loader_config.h"
#include "graph/graph.h"
#include "plugin/call.h"
#include "plugin/params.h"
#include "train/setup.h"
#include "train/weights.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"

#define PREDICT_BATCH 16

static int push(const char ***list, size_t *n, const char *v)
{
    const char **grown = realloc(*list, (*n + 1) * sizeof *grown);
    if (!grown) return -1;
    grown[(*n)++] = v;
    *list = grown;
    return 0;
}

static int int_value(const char *opt, const char *v, int64_t lo, int64_t *out)
{
    char *end;
    long long n = v ? strtoll(v, &end, 10) : 0;
    if (!v || *end || n < lo) {
        fprintf(stderr, "usi predict: %s needs a whole number >= %lld\n", opt, (long long)lo);
        return USI_EXIT_USAGE;
    }
    *out = n;
    return 0;
}

int usi_predict_parse(int argc, char **argv, usi_predict_args *a)
{
    memset(a, 0, sizeof *a);
    a->topk = 5;
    const char *first = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1, rc = 0;
        /* "--opt=value" as "--opt value", as the other commands take it */
        char name[32];
        const char *eq = strchr(s, '=');
        if (!strncmp(s, "--", 2) && eq && (size_t)(eq - s) < sizeof name) {
            memcpy(name, s, (size_t)(eq - s));
            name[eq - s] = 0;
            s = name, v = eq + 1, takes = 0;
            if (!strcmp(s, "--json") || !strcmp(s, "--ema")) {
                fprintf(stderr, "usi predict: %s takes no value\n", s);
                return USI_EXIT_USAGE;
            }
        }
        if (!strcmp(s, "--json")) a->json = 1, takes = 0;
        else if (!strcmp(s, "--ema")) a->ema = 1, takes = 0;
        else if (!strcmp(s, "--weights") || !strcmp(s, "--checkpoint")) a->weights = v;
        else if (!strcmp(s, "--backbone")) a->backbone = v;
        else if (!strcmp(s, "--logits")) a->logits = v;
        else if (!strcmp(s, "--topk")) rc = int_value(s, v, 1, &a->topk);
        else if (!strcmp(s, "--img-size")) rc = int_value(s, v, 8, &a->img_size);
        else if (!strcmp(s, "--set"))
            rc = v && (usi_cli_check_set("predict", v) || push(&a->sets, &a->n_sets, v)) ? USI_EXIT_USAGE : 0;
        else if (!strcmp(s, "--plugin-dir")) rc = v && push(&a->plugin_dirs, &a->n_plugin_dirs, v) ? USI_EXIT_USAGE : 0;
        else if (s[0] == '-' && s[1]) {
            usi_cli_unknown_option("predict", argv[i]);
            return USI_EXIT_USAGE;
        } else {
            takes = 0;
            /* The first argument is the config when it is one (images are
             * files such as .jpg or .png). */
            size_t len = strlen(s);
            int is_cfg = (len > 4 && !strcmp(s + len - 4, ".cfg")) || (len > 5 && !strcmp(s + len - 5, ".conf"));
            if (!first && !a->n_images && is_cfg) first = s;
            else if (push(&a->images, &a->n_images, s)) return USI_EXIT_USAGE;
        }
        if (rc) return rc;
        if (takes && !v) {
            fprintf(stderr, "usi predict: %s needs a value\n", s);
            return USI_EXIT_USAGE;
        }
        i += takes;
    }
    a->config = first;
    if (!a->weights || !a->n_images) {
        fprintf(stderr, "usi predict: %s\n", !a->weights ? "--weights FILE is required" : "no image given");
        return USI_EXIT_USAGE;
    }
    return 0;
}

void usi_predict_args_free(usi_predict_args *a)
{
    free(a->images);
    free(a->sets);
    free(a->plugin_dirs);
}

void usi_predict_run_free(usi_predict_run *run)
{
    for (int32_t k = 0; run->names && k < run->classes; k++) free(run->names[k]);
    free(run->names);
    for (size_t i = 0; run->errors && i < run->n_images; i++) free(run->errors[i]);
    free(run->errors);
    free(run->logits);
    usi_params_free(run->params);
}

/* One image file to float CHW in the model's normalisation. */
static usi_error *load_one(const char *path, const usi_augchain *ch, usi_decoder *dec, const float mean[3],
                           const float std[3], int64_t side, float *out)
{
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    usi_image img = {sizeof img, 0, 0, 0, 0, NULL};
    usi_aug_scratch scratch = {0};
    usi_error *e = usi_read_image_file(path, &buf, &cap, &len);
    if (!e) e = usi_decode_image(dec, buf, len, 0, &img);
    const usi_image *res = NULL;
    usi_rng rng; /* the evaluation transform draws nothing; a stream anyway */
    usi_rng_seed(&rng, 0, 0, 0, 0);
    if (!e) e = usi_augchain_run_sample(ch, &img, &scratch, &res, &rng);
    if (!e && (res->width != side || res->height != side || res->channels != 3))
        e = usi_error_new(USI_ERR_INTERNAL, "the evaluation transform gave %dx%dx%d, not %lldx%lldx3", res->width,
                          res->height, res->channels, (long long)side, (long long)side);
    for (int64_t y = 0; !e && y < side; y++)
        for (int64_t x = 0; x < side; x++)
            for (int c = 0; c < 3; c++) {
                float v = res->data[y * res->stride + x * 3 + c] / 255.0f;
                out[(c * side + y) * side + x] = (v - mean[c]) / std[c];
            }
    free(buf);
    free(img.data);
    usi_aug_scratch_free(&scratch);
    return e ? usi_error_prefix(e, "%s: ", path) : NULL;
}

typedef struct predict_ctx {
    usi_device *dev;
    const usi_component *bb;
    void *inst;
    usi_graph *g;
    usi_tensor *x, *logits;
    usi_augchain *chain;
    usi_decoder *dec;
    float *batch, *out;
    size_t slot[PREDICT_BATCH]; /* the image in each row of the batch */
} predict_ctx;

static usi_error *setup(const usi_config *c, const usi_registry *r, const usi_st_file *f,
                        const usi_predict_args *a, usi_predict_run *run, predict_ctx *p)
{
    int64_t classes = 0;
    if (usi_params_has(run->params, "num_classes")) USI_TRY(usi_params_get_int(run->params, "num_classes", &classes));
    run->classes = (int32_t)classes;
    p->bb = usi_config_backbone(c)->loaded->comp;
    USI_TRY(usi_setup_device(c, &p->dev));
    usi_student_input si;
    USI_TRY(usi_setup_student_input(c, run->params, &si));
    USI_TRY(usi_call_create(p->bb, run->params, &p->inst));
    USI_TRY(usi_setup_eval_graph(p->dev, p->bb, p->inst, &si, PREDICT_BATCH, (int32_t)run->side, run->classes,
                                 (uint64_t)usi_config_int(c, "seed"), &p->g, &p->x, &p->logits));
    usi_error *e = usi_weights_load(p->g, f, a->ema ? "ema/" : "", 0, a->weights);
    if (e && !a->config && !usi_st_metadata(f, "backbone_options"))
        e = usi_error_prefix(e, "(the file stores no backbone options: give them with --set backbone.OPTION=VALUE, "
                                "e.g. num_classes) ");
    USI_TRY(e);
    USI_TRY(usi_data_eval_chain(c, r, &p->chain));
    USI_TRY(usi_decoder_new(&p->dec));
    p->batch = malloc(sizeof(float) * PREDICT_BATCH * 3 * (size_t)(run->side * run->side));
    p->out = malloc(sizeof(float) * PREDICT_BATCH * (size_t)run->classes);
    run->logits = calloc(a->n_images * (size_t)run->classes, sizeof(float));
    run->errors = calloc(a->n_images, sizeof *run->errors);
    run->n_images = a->n_images;
    return p->batch && p->out && run->logits && run->errors ? NULL : usi_error_new(USI_ERR_NOMEM, "out of memory");
}

usi_error *usi_predict_images(const usi_config *c, const usi_registry *r, const usi_st_file *f,
                              const usi_predict_args *a, usi_predict_run *run)
{
    predict_ctx p = {0};
    float mean[3], std[3];
    usi_data_norm(c, mean, std);
    usi_error *e = setup(c, r, f, a, run, &p);
    size_t per = 3 * (size_t)(run->side * run->side), classes = (size_t)run->classes;
    /* A batch gathers the next images that load; one that does not is named
     * and left out, so a wrong path among many costs only itself. */
    for (size_t next = 0; !e && next < a->n_images;) {
        size_t n = 0;
        for (; !e && n < PREDICT_BATCH && next < a->n_images; next++) {
            usi_error *bad = load_one(a->images[next], p.chain, p.dec, mean, std, run->side, p.batch + n * per);
            if (!bad) p.slot[n++] = next;
            else if (bad->code == USI_ERR_NOMEM) e = bad;
            else {
                /* Logged with its path; kept without (JSON names the image beside it). */
                const char *msg = usi_error_message(bad);
                size_t plen = strlen(a->images[next]);
                usi_log(USI_LOG_ERROR, "%s", msg);
                if (!strncmp(msg, a->images[next], plen) && !strncmp(msg + plen, ": ", 2)) msg += plen + 2;
                run->errors[next] = strdup(msg);
                run->n_failed++;
                usi_error_free(bad);
                if (!run->errors[next]) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
            }
        }
        if (e || !n) break;
        e = usi_graph_write_part(p.x, p.batch, sizeof(float) * per * n);
        if (!e) e = usi_graph_forward(p.g);
        if (!e) e = usi_graph_read_part(p.logits, p.out, sizeof(float) * n * classes);
        for (size_t i = 0; !e && i < n; i++)
            memcpy(run->logits + p.slot[i] * classes, p.out + i * classes, sizeof(float) * classes);
    }
    /* NaN or infinite logits rank the classes by nothing: every probability
     * would print as nan%. The weights (or their file) are broken. */
    size_t bad = 0;
    for (size_t i = 0; !e && i < a->n_images; i++) {
        if (run->errors[i]) continue;
        const float *row = run->logits + i * (size_t)run->classes;
        for (int32_t k = 0; k < run->classes; k++)
            if (!isfinite(row[k])) {
                bad++;
                break;
            }
    }
    if (!e && bad)
        e = usi_error_new(USI_ERR_INVALID, "%s: its outputs are NaN or infinite for %zu of the %zu images: the "
                          "weights diverged or the file holds NaN; use an earlier checkpoint",
                          a->weights, bad, a->n_images - run->n_failed);
    free(p.batch);
    free(p.out);
    usi_decoder_free(p.dec);
    usi_augchain_free(p.chain);
    usi_graph_free(p.g);
    if (p.inst) usi_call_destroy(p.bb, p.inst);
    return e;
}

/* s as valid UTF-8 (JSON text must be: file and folder names need not
 * be). Each byte that does not start a well-formed sequence (overlong,
 * surrogate, above U+10FFFF, cut short) becomes U+FFFD, the replacement
 * character, as decoders do; valid text is copied unchanged. NULL: out of
 * memory. */
static char *utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out; /* each byte at most 3 */
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t len = c < 0x80                 ? 1
                     : c >= 0xc2 && c <= 0xdf ? 2
                     : c >= 0xe0 && c <= 0xef ? 3
                     : c >= 0xf0 && c <= 0xf4 ? 4
                                              : 0;
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = (p[i + k] & 0xc0) == 0x80;
        /* The second byte's range rules out overlongs, surrogates and > U+10FFFF. */
        if (ok && len >= 3) {
            unsigned c1 = p[i + 1];
            ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 > 0x9f) && !(c == 0xf0 && c1 < 0x90) &&
                 !(c == 0xf4 && c1 > 0x8f);
        }
        if (ok) {
            memcpy(o, p + i, len);
            o += len;
            i += len;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    *o = 0;
    return out;
}

/* Softmax probabilities of one row, and its classes by falling probability. */
static void rank_row(const float *row, int32_t classes, double *prob, int32_t *order)
{
    double mx = row[0], sum = 0;
    for (int32_t k = 0; k < classes; k++) mx = row[k] > mx ? row[k] : mx;
    for (int32_t k = 0; k < classes; k++) sum += prob[k] = exp((double)row[k] - mx);
    for (int32_t k = 0; k < classes; k++) {
        prob[k] /= sum;
        order[k] = k;
    }
    for (int32_t i = 1; i < classes; i++) /* insertion sort: stable, classes are few */
        for (int32_t j = i; j > 0 && prob[order[j]] > prob[order[j - 1]]; j--) {
            int32_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
}

static usi_error *write_logits(const usi_predict_args *a, const usi_predict_run *run)
{
    /* The classified images only: row r is the r-th name of "images". */
    size_t rows = a->n_images - run->n_failed, classes = (size_t)run->classes;
    usi_st_writer *w = usi_st_writer_new();
    float *kept = malloc(sizeof(float) * (rows ? rows : 1) * classes);
    if (!w || !kept) {
        usi_st_writer_free(w);
        free(kept);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    int64_t shape[2] = {(int64_t)rows, run->classes};
    /* The header is JSON: names as valid UTF-8 (utf8_valid). */
    cJSON *names = cJSON_CreateArray();
    for (size_t i = 0, r = 0; names && i < a->n_images; i++) {
        if (run->errors[i]) continue;
        memcpy(kept + r++ * classes, run->logits + i * classes, sizeof(float) * classes);
        char *name = utf8_valid(a->images[i]);
        cJSON *item = name ? cJSON_CreateString(name) : NULL;
        free(name);
        if (!item) {
            cJSON_Delete(names);
            names = NULL;
        } else cJSON_AddItemToArray(names, item);
    }
    if (!names) {
        usi_st_writer_free(w);
        free(kept);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    char *text = cJSON_PrintUnformatted(names);
    usi_error *e = usi_st_writer_add(w, "logits", USI_DTYPE_F32, 2, shape, kept);
    if (!e) e = usi_st_writer_meta(w, "images", text ? text : "[]");
    if (!e) e = usi_st_writer_save(w, a->logits);
    free(text);
    cJSON_Delete(names);
    usi_st_writer_free(w);
    free(kept);
    return e;
}

/* obj[key] = s, made valid UTF-8 (utf8_valid); a name that cannot be
 * copied (no memory) is left out rather than written invalid. */
static void add_utf8(cJSON *obj, const char *key, const char *s)
{
    char *v = utf8_valid(s);
    if (v) cJSON_AddStringToObject(obj, key, v);
    free(v);
}

usi_error *usi_predict_print(const usi_predict_args *a, const usi_predict_run *run)
{
    double *prob = malloc(sizeof(double) * (size_t)run->classes);
    int32_t *order = malloc(sizeof(int32_t) * (size_t)run->classes);
    cJSON *all = a->json ? cJSON_CreateArray() : NULL;
    if (!prob || !order || (a->json && !all)) {
        free(prob);
        free(order);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    int32_t k_max = a->topk < run->classes ? (int32_t)a->topk : run->classes;
    for (size_t i = 0; i < a->n_images; i++) {
        cJSON *one = all ? cJSON_CreateObject() : NULL;
        if (one) add_utf8(one, "image", a->images[i]);
        if (run->errors[i]) { /* named on stderr already; in JSON it keeps its place */
            if (one) {
                add_utf8(one, "error", run->errors[i]);
                cJSON_AddItemToArray(all, one);
            }
            continue;
        }
        rank_row(run->logits + i * (size_t)run->classes, run->classes, prob, order);
        cJSON *top = one ? cJSON_AddArrayToObject(one, "top") : NULL;
        if (!all) printf("%s\n", a->images[i]);
        for (int32_t k = 0; k < k_max; k++) {
            int32_t c = order[k];
            if (!all) {
                printf("  %6.2f%%  %s (%d)\n", 100 * prob[c], run->names[c], c);
                continue;
            }
            cJSON *item = cJSON_CreateObject();
            cJSON_AddNumberToObject(item, "class", c);
            add_utf8(item, "name", run->names[c]);
            cJSON_AddNumberToObject(item, "prob", prob[c]);
            cJSON_AddItemToArray(top, item);
        }
        if (one) cJSON_AddItemToArray(all, one);
    }
    if (all) {
        char *text = cJSON_Print(all);
        if (text) puts(text);
        free(text);
        cJSON_Delete(all);
    }
    free(prob);
    free(order);
    /* No row to write when every image failed: the run's error says so. */
    return a->logits && run->n_failed < a->n_images ? write_logits(a, run) : NULL;
}
