/* Evaluation: the student (raw or EMA weights) and the teacher on val, and
 * `usi eval` of a file. In a distributed run each rank evaluates its shard
 * and the counts are summed, so top-1 is the whole set's, as on one process.
 * A sample whose logits are not all finite is never counted correct, and
 * makes the mean loss NaN, which training and `usi eval` refuse. */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/imagefolder.h"
#include "data/loader_config.h"
#include "dist/dist.h"
#include "graph/graph.h"
#include "plugin/call.h"
#include "plugin/params.h"
#include "train/input.h"
#include "train/options.h"
#include "train/safetensors.h"
#include "train/setup.h"
#include "train/trainer_internal.h"
#include "train/weights.h"
#include "util/error.h"
#include "util/log.h"

/* Cross-entropy of one row of logits against its label (log-sum-exp). */
static double row_ce(const float *row, int32_t classes, int32_t label)
{
    double mx = row[0], sum = 0;
    for (int32_t k = 1; k < classes; k++)
        if (row[k] > mx) mx = row[k];
    for (int32_t k = 0; k < classes; k++) sum += exp((double)row[k] - mx);
    return mx + log(sum) - (double)row[label];
}

/* Sums over samples, as doubles so that one call adds them over ranks
 * (counts are whole numbers far below 2^53: exact). NONFINITE counts the
 * samples whose logits are not all finite: never counted correct, and their
 * loss is left out (the mean loss is then NaN, see finish). */
enum { TOP1, TOP5, COUNT, LOSS, NONFINITE, N_SUMS };
typedef struct tally {
    double v[N_SUMS];
} tally;

static void finish(const tally *s, usi_eval_result *out)
{
    double n = s->v[COUNT];
    out->samples = (int64_t)n;
    out->top1 = n ? 100.0 * s->v[TOP1] / n : 0;
    out->top5 = n ? 100.0 * s->v[TOP5] / n : 0;
    /* Outputs that are NaN or infinite make the mean loss meaningless: NaN
     * says so to every caller (training stops on it). */
    out->loss = s->v[NONFINITE] ? NAN : n ? s->v[LOSS] / n : 0;
}

static int row_finite(const float *row, int32_t classes)
{
    for (int32_t k = 0; k < classes; k++)
        if (!isfinite(row[k])) return 0;
    return 1;
}

/* Top-1/top-5 hits and the loss of rows of logits. A row with a NaN or an
 * infinity is no prediction: NaN compares false with everything, so
 * counting the logits above the label's would call it correct. */
static void tally_rows(tally *s, const float *logits, const int32_t *labels, int32_t rows, int32_t classes,
                       int with_loss)
{
    for (int32_t i = 0; i < rows; i++) {
        const float *row = logits + (size_t)i * (size_t)classes;
        s->v[COUNT] += 1;
        if (!row_finite(row, classes)) {
            s->v[NONFINITE] += 1;
            continue;
        }
        int64_t top1 = 0, top5 = 0;
        usi_topk_count(row, labels + i, 1, classes, &top1, &top5);
        s->v[TOP1] += (double)top1;
        s->v[TOP5] += (double)top5;
        if (with_loss) s->v[LOSS] += row_ce(row, classes, labels[i]);
    }
}

static usi_error *reduce(tally *s, int distributed)
{
    return distributed ? usi_dist_sum_f64(s->v, N_SUMS) : NULL;
}

/* nonfinite (may be NULL): the samples whose logits were not all finite. */
static usi_error *evaluate_graph(usi_graph *g, usi_tensor *x, usi_tensor *logits, int32_t batch,
                                 int32_t classes, usi_input *in, float *host_logits, int distributed,
                                 usi_eval_result *out, int64_t *nonfinite)
{
    tally s = {0};
    usi_error *e = usi_input_start_epoch(in, 0, 0);
    usi_float_batch fb;
    while (!e) {
        e = usi_input_next(in, &fb);
        int32_t rows = fb.batch.n;
        if (e || rows == 0) break;
        if (rows > batch) {
            e = usi_error_new(USI_ERR_INTERNAL, "eval batch of %d > %d", rows, batch);
            break;
        }
        e = usi_input_write(in, &fb, x, NULL);
        if (!e) e = usi_graph_forward(g);
        if (!e) e = usi_graph_read_part(logits, host_logits, sizeof(float) * (size_t)rows * (size_t)classes);
        if (e) break;
        tally_rows(&s, host_logits, fb.labels, rows, classes, 1);
    }
    /* A rank that failed exits and ends the job; the others must not wait
     * for its counts first. */
    if (e) return e;
    USI_TRY(reduce(&s, distributed));
    finish(&s, out);
    if (nonfinite) *nonfinite = (int64_t)s.v[NONFINITE];
    return NULL;
}

usi_error *usi_trainer_load_eval_weights(usi_trainer *t, int ema)
{
    USI_TRY(usi_graph_copy_state(t->gs, t->ge));
    if (!ema) return NULL;
    usi_graph_blocks eb;
    usi_graph_get_blocks(t->ge, &eb);
    for (int32_t i = 0; i < usi_graph_num_params(t->gs); i++) {
        usi_param_info src, dst;
        usi_graph_param_at(t->gs, i, &src);
        usi_graph_param_at(t->ge, i, &dst);
        USI_TRY(usi_dbuf_copy(eb.params, dst.offset, t->ema_params, src.offset, sizeof(float) * (size_t)src.numel));
    }
    for (int32_t i = 0; i < usi_graph_num_buffers(t->gs); i++) {
        usi_param_info src, dst;
        usi_graph_buffer_at(t->gs, i, &src);
        usi_graph_buffer_at(t->ge, i, &dst);
        if (src.dtype == USI_DTYPE_F32)
            USI_TRY(usi_dbuf_copy(eb.buffers, dst.offset, t->ema_buffers, src.offset,
                                  sizeof(float) * (size_t)src.numel));
    }
    return NULL;
}

usi_error *usi_trainer_evaluate(usi_trainer *t, int ema, usi_eval_result *out)
{
    USI_TRY(usi_trainer_load_eval_weights(t, ema));
    return evaluate_graph(t->ge, t->xe, t->le, t->batch, t->classes, t->val_input, t->logits_host, t->world > 1,
                          out, NULL);
}

usi_error *usi_trainer_teacher_accuracy(usi_trainer *t, usi_eval_result *out)
{
    tally s = {0};
    USI_TRY(usi_input_start_epoch(t->val_input, 0, 0));
    usi_float_batch fb;
    for (;;) {
        USI_TRY(usi_input_next(t->val_input, &fb));
        int32_t rows = fb.batch.n;
        if (rows == 0) break;
        /* The eval graph's input is a device tensor of the student's size. */
        USI_TRY(usi_input_write(t->val_input, &fb, t->xe, NULL));
        USI_TRY(usi_teacher_forward(t->teacher, t->xe, rows, t->mean, t->std));
        USI_TRY(usi_teacher_read_logits(t->teacher, t->logits_host));
        tally_rows(&s, t->logits_host, fb.labels, rows, t->classes, 0);
    }
    USI_TRY(reduce(&s, t->world > 1));
    /* A teacher whose outputs are not numbers would make the first step's
     * loss NaN, blamed on the learning rate: name the teacher instead. */
    if (s.v[NONFINITE] > 0)
        return usi_error_new(USI_ERR_INVALID, "teacher '%s': its outputs are NaN or infinite for %.0f of the %.0f val "
                             "images; check teacher.weights (a diverged or corrupt file) and the teacher's options",
                             usi_config_teacher(t->cfg)->loaded->comp->name, s.v[NONFINITE], s.v[COUNT]);
    finish(&s, out);
    return NULL;
}

/* ---- usi eval ---- */

/* A file written for this backbone brings the options it was trained with;
 * the config's own settings win. */
static usi_error *take_file_options(usi_params *bp, const usi_st_file *f, const usi_component *bb, const char *path)
{
    const char *name = usi_st_metadata(f, "backbone"), *text = usi_st_metadata(f, "backbone_options");
    if (!name || strcmp(name, bb->name) != 0 || !text) return NULL;
    usi_strbuf taken = {0};
    usi_error *e = usi_backbone_options_from_file(bp, text, path, &taken);
    if (!e && taken.len) usi_log(USI_LOG_INFO, "%s: backbone options from the file: %s", path, taken.data);
    usi_strbuf_free(&taken);
    return e;
}

/* Without data.train, the val folder's classes must be the ones the weights
 * file stores ("classes": usi writes the training set's class names),
 * in the same order; *classes is their count. */
static usi_error *val_against_file(const usi_config *c, const usi_st_file *f, const char *path, usi_dataset **val,
                                   int32_t *classes)
{
    const char *dir = usi_config_string(c, "data.val"), *stored = usi_st_metadata(f, "classes");
    if (!*dir) return usi_error_new(USI_ERR_INVALID, "data.val must name the ImageFolder to evaluate on");
    if (!stored)
        return usi_error_new(USI_ERR_INVALID, "%s stores no class names: set data.train, whose class folders give "
                             "them", path);
    cJSON *names = cJSON_Parse(stored);
    int n = cJSON_IsArray(names) ? cJSON_GetArraySize(names) : -1;
    usi_error *e = n < 1 ? usi_error_new(USI_ERR_INVALID, "%s: its metadata classes is not a list of names; set "
                                         "data.train", path)
                         : usi_error_prefix(usi_dataset_open(dir, val), "data.val: ");
    if (!e && usi_dataset_class_count(*val) != (size_t)n)
        e = usi_error_new(USI_ERR_INVALID, "data.val: %s has %zu class folders but %s was trained on %d classes", dir,
                          usi_dataset_class_count(*val), path, n);
    for (int k = 0; !e && k < n; k++) {
        const cJSON *name = cJSON_GetArrayItem(names, k);
        const char *want = cJSON_IsString(name) ? name->valuestring : "?";
        if (strcmp(usi_dataset_class_name(*val, (size_t)k), want) != 0)
            e = usi_error_new(USI_ERR_INVALID, "data.val: class %d is '%s' in %s but '%s' in %s", k,
                              usi_dataset_class_name(*val, (size_t)k), dir, want, path);
    }
    cJSON_Delete(names);
    if (e) {
        usi_dataset_free(*val);
        *val = NULL;
    }
    *classes = n;
    return e;
}

usi_error *usi_evaluate_file(const usi_config *c, const usi_registry *r, const char *path, const char *prefix,
                             usi_eval_result *out)
{
    usi_dataset *train = NULL, *val = NULL;
    usi_params *bp = NULL;
    usi_augchain *chain = NULL;
    usi_loader *l = NULL;
    usi_input *in = NULL;
    usi_graph *g = NULL;
    usi_st_file *f = NULL;
    void *inst = NULL;
    const usi_component *bb = NULL;
    usi_tensor *x, *logits;
    int32_t batch = (int32_t)usi_config_int(c, "data.batch_size"), side = (int32_t)usi_config_int(c, "data.img_size");
    usi_device *dev = NULL;
    float *host_logits = NULL;
    usi_device_set_threads((int32_t)usi_config_int(c, "threads"));
    usi_error *e = usi_setup_device(c, &dev);
    int32_t classes = 0;
    if (!e) e = usi_st_read(path, &f);
    /* the classes: data.train's folders, else the ones the file stores. A
     * training config names data.train, but evaluating needs only data.val
     * when the file stores its classes: a data.train that is not there (only
     * the val folder was copied) gives way to them, said in one line. */
    const char *train_dir = usi_config_string(c, "data.train");
    if (!e && *train_dir && usi_st_metadata(f, "classes")) {
        size_t n = 0;
        usi_error *missing = usi_dataset_count_classes(train_dir, &n);
        if (missing) {
            usi_log(USI_LOG_INFO, "data.train: %s; the class names %s stores are used", usi_error_message(missing),
                    path);
            usi_error_free(missing);
            train_dir = "";
        }
    }
    if (!e && *train_dir) {
        e = usi_setup_datasets(c, &train, &val);
        if (!e) classes = (int32_t)usi_dataset_class_count(train);
    } else if (!e) {
        e = val_against_file(c, f, path, &val, &classes);
    }
    if (!e) e = usi_setup_backbone_params(c, classes, &bp);
    if (!e) {
        bb = usi_config_backbone(c)->loaded->comp;
        e = take_file_options(bp, f, bb, path);
    }
    usi_student_input si;
    if (!e) e = usi_setup_student_input(c, bp, &si);
    if (!e) e = usi_call_create(bb, bp, &inst);
    if (!e) e = usi_data_eval_chain(c, r, &chain);
    if (!e) e = usi_setup_loader(c, val, chain, 0, 0, 1, &l);
    if (!e) e = usi_input_new(l, dev, &in);
    if (!e) e = usi_setup_eval_graph(dev, bb, inst, &si, batch, side, classes, (uint64_t)usi_config_int(c, "seed"), &g, &x, &logits);
    if (!e) e = usi_weights_load(g, f, prefix, 0, path);
    if (!e && !(host_logits = malloc(sizeof(float) * (size_t)batch * (size_t)classes)))
        e = usi_error_new(USI_ERR_NOMEM, "out of memory");
    int64_t nonfinite = 0;
    if (!e) e = evaluate_graph(g, x, logits, batch, classes, in, host_logits, 0, out, &nonfinite);
    /* A figure of 0 images, or of outputs that are not numbers, says
     * nothing about the weights: refuse it rather than print it. */
    if (!e && out->samples == 0)
        e = usi_dataset_size(val)
                ? usi_error_new(USI_ERR_INVALID, "data.val: none of the %zu images in %s could be read (see the "
                                "warnings above): nothing to evaluate %s on; replace them or set data.val",
                                usi_dataset_size(val), usi_config_string(c, "data.val"), path)
                : usi_error_new(USI_ERR_INVALID, "data.val: %s holds no image: nothing to evaluate %s on",
                                usi_config_string(c, "data.val"), path);
    if (!e && nonfinite)
        e = usi_error_new(USI_ERR_INVALID, "%s: the outputs are NaN or infinite for %lld of the %lld val images: the "
                          "weights diverged (or the file holds NaN); evaluate an earlier checkpoint",
                          path, (long long)nonfinite, (long long)out->samples);
    usi_input_free(in); /* its thread stops before the loader goes */
    free(host_logits);
    usi_st_free(f);
    usi_graph_free(g);
    if (inst) usi_call_destroy(bb, inst);
    usi_params_free(bp);
    usi_loader_free(l);
    usi_augchain_free(chain);
    usi_dataset_free(train);
    usi_dataset_free(val);
    return e;
}
