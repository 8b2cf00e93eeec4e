/* The training loop, evaluation and checkpoints. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/loader_config.h"
#include "graph/graph.h"
#include "plugin/params.h"
#include "train/ema.h"
#include "train/options.h"
#include "train/plot.h"
#include "train/safetensors.h"
#include "train/setup.h"
#include "train/trainer_internal.h"
#include "train/weights.h"
#include "util/error.h"
#include "util/log.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- evaluation ---- */

/* Cross-entropy of one row of logits against its label (log-sum-exp). */
static double row_ce(const float *row, int32_t classes, int32_t label)
{
    double mx = row[0], sum = 0;
    for (int32_t k = 1; k < classes; k++)
        if (row[k] > mx) mx = row[k];
    for (int32_t k = 0; k < classes; k++) sum += exp((double)row[k] - mx);
    return mx + log(sum) - (double)row[label];
}

static usi_error *evaluate_graph(usi_graph *g, usi_tensor *x, usi_tensor *logits, int32_t batch,
                                 int32_t classes, usi_loader *l, float *host_logits, usi_eval_result *out)
{
    int64_t top1 = 0, top5 = 0, n = 0;
    double loss = 0;
    USI_TRY(usi_loader_start_epoch(l, 0));
    usi_float_batch fb;
    for (;;) {
        USI_TRY(usi_loader_next_float(l, &fb));
        int32_t rows = fb.batch.n;
        if (rows == 0) break;
        if (rows > batch) return usi_error_new(USI_ERR_INTERNAL, "eval batch of %d > %d", rows, batch);
        size_t per = (size_t)fb.batch.c * (size_t)fb.batch.h * (size_t)fb.batch.w;
        USI_TRY(usi_graph_write_part(x, fb.batch.images, sizeof(float) * per * (size_t)rows));
        USI_TRY(usi_graph_forward(g));
        USI_TRY(usi_graph_read_part(logits, host_logits, sizeof(float) * (size_t)rows * (size_t)classes));
        usi_topk_count(host_logits, fb.labels, rows, classes, &top1, &top5);
        for (int32_t i = 0; i < rows; i++) loss += row_ce(host_logits + (size_t)i * (size_t)classes, classes,
                                                          fb.labels[i]);
        n += rows;
    }
    out->samples = n;
    out->top1 = n ? 100.0 * (double)top1 / (double)n : 0;
    out->top5 = n ? 100.0 * (double)top5 / (double)n : 0;
    out->loss = n ? loss / (double)n : 0;
    return NULL;
}

/* Put the EMA weights (ema = 1) or the raw ones into the inference graph. */
static usi_error *load_eval_weights(usi_trainer *t, int ema)
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

static usi_error *teacher_accuracy(usi_trainer *t, usi_eval_result *out)
{
    int64_t top1 = 0, top5 = 0, n = 0;
    USI_TRY(usi_loader_start_epoch(t->val_loader, 0));
    usi_float_batch fb;
    for (;;) {
        USI_TRY(usi_loader_next_float(t->val_loader, &fb));
        int32_t rows = fb.batch.n;
        if (rows == 0) break;
        size_t per = (size_t)fb.batch.c * (size_t)fb.batch.h * (size_t)fb.batch.w;
        /* The eval graph's input is a device tensor of the student's size. */
        USI_TRY(usi_graph_write_part(t->xe, fb.batch.images, sizeof(float) * per * (size_t)rows));
        USI_TRY(usi_teacher_forward(t->teacher, t->xe, rows, t->mean, t->std));
        USI_TRY(usi_teacher_read_logits(t->teacher, t->logits_host));
        usi_topk_count(t->logits_host, fb.labels, rows, t->classes, &top1, &top5);
        n += rows;
    }
    out->samples = n;
    out->top1 = n ? 100.0 * (double)top1 / (double)n : 0;
    out->top5 = n ? 100.0 * (double)top5 / (double)n : 0;
    return NULL;
}

static void progress(usi_trainer *t, int64_t b, double loss, double lr, double img_s, double t0)
{
    int64_t left = (t->epochs_total - t->epoch) * t->steps_per_epoch - b;
    double eta = img_s > 0 ? (double)left * t->batch / img_s : 0;
    int tty = isatty(2);
    if (!tty && b % 50 != 0 && b != t->steps_per_epoch) return;
    fprintf(stderr, "%sepoch %lld/%lld  step %lld/%lld  %.0f img/s  loss %.4f  lr %.3g  ETA %dm%02ds  (%.0fs)%s",
            tty ? "\r" : "", (long long)t->epoch + 1, (long long)t->epochs_total, (long long)b,
            (long long)t->steps_per_epoch, img_s, loss, lr, (int)(eta / 60), (int)eta % 60, now() - t0,
            tty ? "   " : "\n");
    fflush(stderr);
}

static usi_error *end_of_epoch(usi_trainer *t)
{
    usi_loader_log_summary(t->train_loader);
    usi_eval_result raw = {0}, ema = {0};
    USI_TRY(load_eval_weights(t, 0));
    USI_TRY(evaluate_graph(t->ge, t->xe, t->le, t->batch, t->classes, t->val_loader, t->logits_host, &raw));
    int use_ema = 0;
    if (t->ema_on && usi_config_bool(t->cfg, "eval.ema")) {
        USI_TRY(load_eval_weights(t, 1));
        USI_TRY(evaluate_graph(t->ge, t->xe, t->le, t->batch, t->classes, t->val_loader, t->logits_host, &ema));
        use_ema = ema.top1 > raw.top1;
    }
    double top1 = use_ema ? ema.top1 : raw.top1;
    fprintf(stderr, "%sepoch %lld: top-1 %.2f%% top-5 %.2f%%", isatty(2) ? "\n" : "", (long long)t->epoch + 1,
            raw.top1, raw.top5);
    if (t->ema_on) fprintf(stderr, " | EMA top-1 %.2f%% top-5 %.2f%%", ema.top1, ema.top5);
    fprintf(stderr, "\n");
    fprintf(t->metrics,
            "{\"epoch\": %lld, \"step\": %lld, \"top1\": %.4f, \"top5\": %.4f, \"ema_top1\": %.4f, "
            "\"ema_top5\": %.4f, \"val_loss\": %.6g, \"ema_val_loss\": %.6g}\n",
            (long long)t->epoch + 1, (long long)t->step, raw.top1, raw.top5, ema.top1, ema.top5, raw.loss,
            ema.loss);
    fflush(t->metrics);
    if (top1 > t->best_top1) {
        t->best_top1 = top1;
        USI_TRY(load_eval_weights(t, use_ema));
        USI_TRY(usi_trainer_save_weights(t, "best.safetensors"));
    }
    return usi_trainer_save_checkpoint(t, "last.safetensors", t->epoch + 1, 0);
}

/* OUTPUT_DIR/curves.png from metrics.jsonl. The weights are what the run is
 * for, so a picture that can't be drawn is only a warning. */
static void plot_curves(usi_trainer *t)
{
    char metrics[sizeof t->out_dir + 32], png[sizeof t->out_dir + 32];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", t->out_dir);
    snprintf(png, sizeof png, "%s/curves.png", t->out_dir);
    fflush(t->metrics);
    usi_error *e = usi_plot_metrics(metrics, png);
    if (e) usi_log(USI_LOG_WARN, "no training curves: %s", usi_error_message(e));
    else fprintf(stderr, "training curves in %s\n", png);
    usi_error_free(e);
}

usi_error *usi_trainer_run(usi_trainer *t, int *interrupted)
{
    *interrupted = 0;
    if (t->teacher && t->step == 0) {
        usi_eval_result acc;
        USI_TRY(teacher_accuracy(t, &acc));
        fprintf(stderr, "teacher '%s': top-1 %.2f%%, top-5 %.2f%% on %lld val images\n",
                usi_config_teacher(t->cfg)->loaded->comp->name, acc.top1, acc.top5, (long long)acc.samples);
        fprintf(t->metrics, "{\"teacher_top1\": %.4f, \"teacher_top5\": %.4f}\n", acc.top1, acc.top5);
    }
    double t0 = now();
    for (; t->epoch < t->epochs_total; t->epoch++) {
        USI_TRY(usi_loader_start_epoch(t->train_loader, t->epoch));
        int64_t b = 0;
        usi_float_batch fb;
        /* A resumed run skips the batches it already trained on. */
        for (; b < t->batch_in_epoch; b++) {
            USI_TRY(usi_loader_next_float(t->train_loader, &fb));
            if (fb.batch.n == 0) break;
        }
        t->batch_in_epoch = 0;
        double window_start = now();
        int64_t window_images = 0;
        for (;;) {
            USI_TRY(usi_loader_next_float(t->train_loader, &fb));
            if (fb.batch.n == 0) break;
            b++;
            if (fb.batch.n != t->batch) {
                usi_log(USI_LOG_WARN, "epoch %lld batch %lld: %d of %d images after skipped files; batch left out",
                        (long long)t->epoch + 1, (long long)b, fb.batch.n, t->batch);
                continue;
            }
            double loss = 0, lr = 0;
            USI_TRY(usi_trainer_step(t, &fb, &loss, &lr));
            window_images += t->batch;
            double img_s = (double)window_images / (now() - window_start + 1e-9);
            progress(t, b, loss, lr, img_s, t0);
            if (t->step % 10 == 0 || b == t->steps_per_epoch)
                fprintf(t->metrics, "{\"epoch\": %lld, \"step\": %lld, \"loss\": %.7g, \"lr\": %.7g, \"img_s\": %.1f, "
                        "\"grad_norm\": %.6g}\n",
                        (long long)t->epoch + 1, (long long)t->step, loss, lr, img_s, t->grad_norm);
            if (usi_stop_requested) {
                fprintf(stderr, "\n");
                USI_TRY(usi_trainer_save_checkpoint(t, "last.safetensors", t->epoch, b));
                fflush(t->metrics);
                *interrupted = 1;
                return NULL;
            }
        }
        USI_TRY(end_of_epoch(t));
    }
    fprintf(stderr, "best top-1 %.2f%%; weights in %s/best.safetensors, checkpoint %s/last.safetensors\n",
            t->best_top1, t->out_dir, t->out_dir);
    plot_curves(t);
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

usi_error *usi_evaluate_file(const usi_config *c, const usi_registry *r, const char *path, const char *prefix,
                             usi_eval_result *out)
{
    usi_dataset *train = NULL, *val = NULL;
    usi_params *bp = NULL;
    usi_augchain *chain = NULL;
    usi_loader *l = NULL;
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
    if (!e) e = usi_setup_datasets(c, &train, &val);
    int32_t classes = e ? 0 : (int32_t)usi_dataset_class_count(train);
    if (!e) e = usi_setup_backbone_params(c, classes, &bp);
    if (!e) e = usi_st_read(path, &f);
    if (!e) {
        bb = usi_config_backbone(c)->loaded->comp;
        e = take_file_options(bp, f, bb, path);
    }
    if (!e) e = bb->create(bp, &inst);
    if (!e) e = usi_data_eval_chain(c, r, &chain);
    if (!e) e = usi_setup_loader(c, val, chain, 0, &l);
    if (!e) e = usi_setup_eval_graph(dev, bb, inst, batch, side, classes, (uint64_t)usi_config_int(c, "seed"), &g, &x, &logits);
    if (!e) e = usi_weights_load(g, f, prefix, 0, path);
    if (!e && !(host_logits = malloc(sizeof(float) * (size_t)batch * (size_t)classes)))
        e = usi_error_new(USI_ERR_NOMEM, "out of memory");
    if (!e) e = evaluate_graph(g, x, logits, batch, classes, l, host_logits, out);
    free(host_logits);
    usi_st_free(f);
    usi_graph_free(g);
    if (inst) bb->destroy(inst);
    usi_params_free(bp);
    usi_loader_free(l);
    usi_augchain_free(chain);
    usi_dataset_free(train);
    usi_dataset_free(val);
    return e;
}
