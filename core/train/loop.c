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

static usi_error *evaluate_graph(usi_graph *g, usi_tensor *x, usi_tensor *logits, int32_t batch,
                                 int32_t classes, usi_loader *l, usi_eval_result *out)
{
    int64_t top1 = 0, top5 = 0, n = 0;
    USI_TRY(usi_loader_start_epoch(l, 0));
    usi_float_batch fb;
    for (;;) {
        USI_TRY(usi_loader_next_float(l, &fb));
        int32_t rows = fb.batch.n;
        if (rows == 0) break;
        if (rows > batch) return usi_error_new(USI_ERR_INTERNAL, "eval batch of %d > %d", rows, batch);
        size_t per = (size_t)fb.batch.c * (size_t)fb.batch.h * (size_t)fb.batch.w;
        memcpy(usi_graph_data(x), fb.batch.images, sizeof(float) * per * (size_t)rows);
        USI_TRY(usi_graph_forward(g));
        usi_topk_count(usi_graph_data(logits), fb.labels, rows, classes, &top1, &top5);
        n += rows;
    }
    out->samples = n;
    out->top1 = n ? 100.0 * (double)top1 / (double)n : 0;
    out->top5 = n ? 100.0 * (double)top5 / (double)n : 0;
    return NULL;
}

/* Put the EMA weights (ema = 1) or the raw ones into the inference graph. */
static usi_error *load_eval_weights(usi_trainer *t, int ema)
{
    USI_TRY(usi_graph_copy_state(t->gs, t->ge));
    if (!ema) return NULL;
    for (int32_t i = 0; i < t->n_params; i++) {
        usi_param_info p;
        usi_graph_param_at(t->ge, i, &p);
        memcpy(p.data, t->ema_p[i], sizeof(float) * (size_t)p.numel);
    }
    for (int32_t i = 0; i < t->n_buffers; i++) {
        usi_param_info p;
        usi_graph_buffer_at(t->ge, i, &p);
        if (t->ema_b[i]) memcpy(p.data, t->ema_b[i], sizeof(float) * (size_t)p.numel);
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
        if (fb.batch.n == 0) break;
        USI_TRY(usi_teacher_logits(t->teacher, fb.batch.images, fb.batch.n, fb.batch.h, fb.batch.w, t->mean,
                                   t->std, t->teacher_logits));
        usi_topk_count(t->teacher_logits, fb.labels, fb.batch.n, t->classes, &top1, &top5);
        n += fb.batch.n;
    }
    out->samples = n;
    out->top1 = n ? 100.0 * (double)top1 / (double)n : 0;
    out->top5 = n ? 100.0 * (double)top5 / (double)n : 0;
    return NULL;
}

/* ---- checkpoints ---- */

static usi_error *save_checkpoint(usi_trainer *t, const char *name, int64_t epoch, int64_t batch)
{
    char path[2300], text[64];
    snprintf(path, sizeof path, "%s/%s", t->out_dir, name);
    usi_st_writer *w = usi_st_writer_new();
    if (!w) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = usi_weights_add(w, t->gs, "");
    int ns = usi_optim_state_count(t->hp.kind);
    for (int32_t i = 0; !e && i < t->n_params; i++) {
        usi_param_info p;
        usi_graph_param_at(t->gs, i, &p);
        char key[1100];
        snprintf(key, sizeof key, "ema/%s", p.name);
        e = usi_st_writer_add(w, key, p.dtype, p.ndim, p.shape, t->ema_p[i]);
        for (int s = 0; !e && s < ns; s++) {
            snprintf(key, sizeof key, "optim.%d/%s", s, p.name);
            e = usi_st_writer_add(w, key, p.dtype, p.ndim, p.shape, t->state[s][i]);
        }
    }
    for (int32_t i = 0; !e && i < t->n_buffers; i++) {
        usi_param_info p;
        usi_graph_buffer_at(t->gs, i, &p);
        char key[1100];
        snprintf(key, sizeof key, "ema/%s", p.name);
        e = usi_st_writer_add(w, key, p.dtype, p.ndim, p.shape, t->ema_b[i] ? t->ema_b[i] : p.data);
    }
    usi_strbuf cfg = {0};
    usi_config_write(t->cfg, &cfg);
    if (!e) e = usi_st_writer_meta(w, "format", "usi-checkpoint-1");
    if (!e) e = usi_st_writer_meta(w, "backbone", t->bb->name);
    if (!e) e = usi_st_writer_meta(w, "config", cfg.data ? cfg.data : "");
    snprintf(text, sizeof text, "%lld", (long long)epoch);
    if (!e) e = usi_st_writer_meta(w, "epoch", text);
    snprintf(text, sizeof text, "%lld", (long long)batch);
    if (!e) e = usi_st_writer_meta(w, "batch_in_epoch", text);
    snprintf(text, sizeof text, "%lld", (long long)t->step);
    if (!e) e = usi_st_writer_meta(w, "step", text);
    snprintf(text, sizeof text, "%.17g", t->best_top1);
    if (!e) e = usi_st_writer_meta(w, "best_top1", text);
    if (!e) e = usi_st_writer_save(w, path);
    usi_strbuf_free(&cfg);
    usi_st_writer_free(w);
    return e;
}

/* The inference graph's current weights, timm names only: a teacher file. */
static usi_error *save_weights(usi_trainer *t, const char *name)
{
    char path[2300];
    snprintf(path, sizeof path, "%s/%s", t->out_dir, name);
    usi_st_writer *w = usi_st_writer_new();
    if (!w) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = usi_weights_add(w, t->ge, "");
    if (!e) e = usi_st_writer_meta(w, "backbone", t->bb->name);
    if (!e) e = usi_st_writer_save(w, path);
    usi_st_writer_free(w);
    return e;
}

static int64_t meta_int(const usi_st_file *f, const char *key)
{
    const char *v = usi_st_metadata(f, key);
    return v ? strtoll(v, NULL, 10) : -1;
}

static usi_error *copy_state(const usi_st_file *f, const char *prefix, const char *name, float *dst,
                             int64_t numel, const char *path)
{
    char key[1100];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    const usi_st_tensor *s = usi_st_find(f, key);
    if (!s || s->nbytes != sizeof(float) * (size_t)numel)
        return usi_error_new(USI_ERR_INVALID, "%s: tensor '%s' is missing or has the wrong size", path, key);
    memcpy(dst, s->data, s->nbytes);
    return NULL;
}

usi_error *usi_trainer_resume(usi_trainer *t, const char *path)
{
    usi_st_file *f;
    USI_TRY(usi_st_read(path, &f));
    usi_error *e = NULL;
    const char *fmt = usi_st_metadata(f, "format"), *bb = usi_st_metadata(f, "backbone");
    if (!fmt || strcmp(fmt, "usi-checkpoint-1") != 0)
        e = usi_error_new(USI_ERR_INVALID, "%s is not a usi training checkpoint (no format metadata)", path);
    else if (!bb || strcmp(bb, t->bb->name) != 0)
        e = usi_error_new(USI_ERR_INVALID, "%s was written for backbone '%s', this run trains '%s'", path,
                          bb ? bb : "?", t->bb->name);
    if (!e) e = usi_weights_load(t->gs, f, "", 0, path);
    int ns = usi_optim_state_count(t->hp.kind);
    for (int32_t i = 0; !e && i < t->n_params; i++) {
        usi_param_info p;
        usi_graph_param_at(t->gs, i, &p);
        e = copy_state(f, "ema/", p.name, t->ema_p[i], p.numel, path);
        for (int s = 0; !e && s < ns; s++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "optim.%d/", s);
            e = copy_state(f, prefix, p.name, t->state[s][i], p.numel, path);
        }
    }
    for (int32_t i = 0; !e && i < t->n_buffers; i++) {
        usi_param_info p;
        usi_graph_buffer_at(t->gs, i, &p);
        if (t->ema_b[i]) e = copy_state(f, "ema/", p.name, t->ema_b[i], p.numel, path);
    }
    if (!e) {
        t->epoch = meta_int(f, "epoch");
        t->batch_in_epoch = meta_int(f, "batch_in_epoch");
        t->step = meta_int(f, "step");
        const char *best = usi_st_metadata(f, "best_top1");
        t->best_top1 = best ? strtod(best, NULL) : -1;
        if (t->epoch < 0 || t->batch_in_epoch < 0 || t->step < 0)
            e = usi_error_new(USI_ERR_INVALID, "%s: epoch, batch or step metadata is missing", path);
    }
    usi_st_free(f);
    if (!e)
        usi_log(USI_LOG_INFO, "resuming %s at epoch %lld, batch %lld (step %lld)", path, (long long)t->epoch + 1,
                (long long)t->batch_in_epoch, (long long)t->step);
    return e;
}

/* ---- one step ---- */

static usi_error *train_step(usi_trainer *t, const usi_float_batch *fb, double *loss_out, double *lr_out)
{
    size_t per = (size_t)fb->batch.c * (size_t)fb->batch.h * (size_t)fb->batch.w;
    memcpy(usi_graph_data(t->xs), fb->batch.images, sizeof(float) * per * (size_t)t->batch);
    memcpy(usi_graph_data(t->targets), fb->batch.targets, sizeof(float) * (size_t)t->batch * (size_t)t->classes);
    if (t->teacher) {
        USI_TRY(usi_teacher_logits(t->teacher, fb->batch.images, t->batch, fb->batch.h, fb->batch.w, t->mean, t->std,
                                   t->teacher_logits));
        memcpy(usi_graph_data(t->teacher_in), t->teacher_logits, sizeof(float) * (size_t)t->batch * (size_t)t->classes);
    }
    USI_TRY(usi_graph_forward(t->gs));
    double loss = *(const float *)usi_graph_data(t->loss);
    if (!isfinite(loss)) {
        char last[2300];
        snprintf(last, sizeof last, "%s/last.safetensors", t->out_dir);
        int have = access(last, F_OK) == 0;
        return usi_error_new(USI_ERR_INVALID,
                             "the loss is %s at step %lld (epoch %lld); stopped without saving this state. %s%s%s"
                             "Try a lower optimizer.lr or optimizer.clip_grad = 1.0",
                             isnan(loss) ? "NaN" : "infinite", (long long)t->step, (long long)t->epoch + 1,
                             have ? "The last good checkpoint is " : "No checkpoint was written yet. ",
                             have ? last : "", have ? ". " : "");
    }
    USI_TRY(usi_graph_backward(t->gs));
    if (t->clip > 0) {
        float **grads = malloc(sizeof(float *) * (size_t)(t->n_params + 1));
        size_t *sizes = malloc(sizeof(size_t) * (size_t)(t->n_params + 1));
        size_t k = 0;
        for (int32_t i = 0; grads && sizes && i < t->n_params; i++) {
            usi_param_info p;
            usi_graph_param_at(t->gs, i, &p);
            if (p.grad) {
                grads[k] = p.grad;
                sizes[k++] = (size_t)p.numel;
            }
        }
        if (grads && sizes) usi_clip_grad_norm(grads, sizes, k, t->clip);
        free(grads);
        free(sizes);
    }
    double lr = usi_schedule_lr(&t->sched, t->step);
    double wd = usi_config_float(t->cfg, "optimizer.weight_decay");
    double decay = usi_ema_decay(t->ema_decay, t->ema_warmup, t->step);
    for (int32_t i = 0; i < t->n_params; i++) {
        usi_param_info p;
        usi_graph_param_at(t->gs, i, &p);
        if (!p.grad) continue;
        usi_optim_hp hp = t->hp;
        hp.lr = lr;
        hp.weight_decay = t->decays[i] ? wd : 0;
        float *state[2] = {t->state[0][i], t->state[1][i]};
        usi_optim_step(&hp, t->step + 1, p.data, p.grad, state, (size_t)p.numel);
        if (t->ema_on) usi_ema_update(t->ema_p[i], p.data, (size_t)p.numel, decay);
    }
    for (int32_t i = 0; t->ema_on && i < t->n_buffers; i++) {
        usi_param_info p;
        usi_graph_buffer_at(t->gs, i, &p);
        if (t->ema_b[i]) usi_ema_update(t->ema_b[i], p.data, (size_t)p.numel, decay);
    }
    if (!t->ema_on) {
        for (int32_t i = 0; i < t->n_params; i++) {
            usi_param_info p;
            usi_graph_param_at(t->gs, i, &p);
            memcpy(t->ema_p[i], p.data, sizeof(float) * (size_t)p.numel);
        }
    }
    usi_graph_zero_grad(t->gs);
    t->step++;
    *loss_out = loss;
    *lr_out = lr;
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
    USI_TRY(evaluate_graph(t->ge, t->xe, t->le, t->batch, t->classes, t->val_loader, &raw));
    int use_ema = 0;
    if (t->ema_on && usi_config_bool(t->cfg, "eval.ema")) {
        USI_TRY(load_eval_weights(t, 1));
        USI_TRY(evaluate_graph(t->ge, t->xe, t->le, t->batch, t->classes, t->val_loader, &ema));
        use_ema = ema.top1 > raw.top1;
    }
    double top1 = use_ema ? ema.top1 : raw.top1;
    fprintf(stderr, "%sepoch %lld: top-1 %.2f%% top-5 %.2f%%", isatty(2) ? "\n" : "", (long long)t->epoch + 1,
            raw.top1, raw.top5);
    if (t->ema_on) fprintf(stderr, " | EMA top-1 %.2f%% top-5 %.2f%%", ema.top1, ema.top5);
    fprintf(stderr, "\n");
    fprintf(t->metrics,
            "{\"epoch\": %lld, \"step\": %lld, \"top1\": %.4f, \"top5\": %.4f, \"ema_top1\": %.4f, "
            "\"ema_top5\": %.4f}\n",
            (long long)t->epoch + 1, (long long)t->step, raw.top1, raw.top5, ema.top1, ema.top5);
    fflush(t->metrics);
    if (top1 > t->best_top1) {
        t->best_top1 = top1;
        USI_TRY(load_eval_weights(t, use_ema));
        USI_TRY(save_weights(t, "best.safetensors"));
    }
    return save_checkpoint(t, "last.safetensors", t->epoch + 1, 0);
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
            USI_TRY(train_step(t, &fb, &loss, &lr));
            window_images += t->batch;
            double img_s = (double)window_images / (now() - window_start + 1e-9);
            progress(t, b, loss, lr, img_s, t0);
            if (t->step % 10 == 0 || b == t->steps_per_epoch)
                fprintf(t->metrics, "{\"epoch\": %lld, \"step\": %lld, \"loss\": %.7g, \"lr\": %.7g, \"img_s\": %.1f}\n",
                        (long long)t->epoch + 1, (long long)t->step, loss, lr, img_s);
            if (usi_stop_requested) {
                fprintf(stderr, "\n");
                USI_TRY(save_checkpoint(t, "last.safetensors", t->epoch, b));
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
    usi_graph_set_threads((int32_t)usi_config_int(c, "threads"));
    usi_error *e = usi_setup_datasets(c, &train, &val);
    int32_t classes = e ? 0 : (int32_t)usi_dataset_class_count(train);
    if (!e) e = usi_setup_backbone_params(c, classes, &bp);
    if (!e) {
        bb = usi_config_backbone(c)->loaded->comp;
        e = bb->create(bp, &inst);
    }
    if (!e) e = usi_data_eval_chain(c, r, &chain);
    if (!e) e = usi_setup_loader(c, val, chain, 0, &l);
    if (!e) e = usi_setup_eval_graph(bb, inst, batch, side, classes, (uint64_t)usi_config_int(c, "seed"), &g, &x, &logits);
    if (!e) e = usi_st_read(path, &f);
    if (!e) e = usi_weights_load(g, f, prefix, 0, path);
    if (!e) e = evaluate_graph(g, x, logits, batch, classes, l, out);
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
