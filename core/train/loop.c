/* The training loop: every step, each rank's batch (or each simulated
 * rank's) through usi_trainer_step; each epoch, evaluate raw and EMA
 * weights, keep the better, and write the checkpoint atomically. In a
 * distributed run every rank runs this loop in step with the others and
 * rank 0 alone writes files and speaks for the job (util/log.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/imagefolder.h"
#include "dist/dist.h"
#include "dist/reducer.h"
#include "train/input.h"
#include "train/plot.h"
#include "train/progress.h"
#include "train/trainer_internal.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

static void progress(usi_trainer *t, usi_meter *m, int64_t b, double loss, double lr, double t0)
{
    int tty = usi_log_is_tty();
    if (!usi_log_is_reporter() || !usi_meter_due(m, tty, b == t->steps_per_epoch)) return;
    double rate = usi_meter_rate(m);
    int64_t left = (t->epochs_total - t->epoch) * t->steps_per_epoch - b;
    double per_step = (double)t->batch * t->world * t->sim, eta = rate > 0 ? (double)left * per_step / rate : 0;
    usi_progress("epoch %lld/%lld  step %lld/%lld  %.1f img/s on %s  loss %.4f  lr %.3g  ETA %dm%02ds  (%.0fs)",
                 (long long)t->epoch + 1, (long long)t->epochs_total, (long long)b, (long long)t->steps_per_epoch,
                 rate, usi_device_name(t->dev), loss, lr, (int)(eta / 60), (int)fmod(eta, 60), usi_now() - t0);
}

static void metric_line(usi_trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void metric_line(usi_trainer *t, const char *fmt, ...)
{
    if (!t->metrics) return; /* ranks other than 0 */
    va_list ap;
    va_start(ap, fmt);
    vfprintf(t->metrics, fmt, ap);
    va_end(ap);
    fflush(t->metrics);
}

/* A number for a metrics.jsonl line: JSON has no NaN or infinity, so a value
 * that is not finite is written null. buf: at least 32 bytes. */
static const char *json_num(char *buf, size_t size, const char *fmt, double v)
{
    if (!isfinite(v)) return "null";
    snprintf(buf, size, fmt, v);
    return buf;
}
#define JNUM(fmt, v) json_num((char[32]){0}, 32, fmt, v)

/* This process's loaders: rank 0's shard, then the simulated ranks'. */
static usi_loader *loader_of(usi_trainer *t, int32_t r) { return r == 0 ? t->train_loader : t->sim_loaders[r]; }

/* The epoch's data line, for the job: summed over (simulated) ranks. */
/* This epoch's samples, batches, skipped and replaced samples, summed over
 * every loader of every rank. */
static usi_error *epoch_counts(usi_trainer *t, double v[4])
{
    v[0] = v[1] = v[2] = v[3] = 0;
    for (int32_t r = 0; r < t->sim; r++) {
        usi_epoch_stats st;
        usi_loader_epoch_stats(loader_of(t, r), &st);
        v[0] += (double)st.samples;
        v[1] += (double)st.batches;
        v[2] += (double)st.skipped;
        v[3] += (double)st.replaced;
    }
    return usi_dist_sum_f64(v, 4); /* one rank: as it is */
}

static usi_error *data_summary(usi_trainer *t)
{
    if (t->world * t->sim == 1) {
        usi_loader_log_summary(t->train_loader);
        return NULL;
    }
    double v[4];
    USI_TRY(epoch_counts(t, v));
    char replaced[80] = "";
    if (v[3]) snprintf(replaced, sizeof replaced, ", %.0f replaced by the next readable file", v[3]);
    usi_log(v[2] || v[3] ? USI_LOG_WARN : USI_LOG_INFO, "data: epoch %lld: %.0f samples in %.0f batches of %d "
            "ranks, %.0f skipped%s%s", (long long)t->epoch + 1, v[0], v[1], (int)(t->world * t->sim), v[2], replaced,
            v[2] || v[3] ? " (files named above)" : "");
    return NULL;
}

static usi_error *evaluate(usi_trainer *t)
{
    usi_eval_result raw = {0}, ema = {0};
    USI_TRY(usi_trainer_evaluate(t, 0, &raw));
    int use_ema = 0, ema_done = t->ema_on && usi_config_bool(t->cfg, "eval.ema");
    if (ema_done) {
        USI_TRY(usi_trainer_evaluate(t, 1, &ema));
        use_ema = ema.top1 > raw.top1;
    }
    double top1 = use_ema ? ema.top1 : raw.top1;
    char line[256];
    int n = snprintf(line, sizeof line, "epoch %lld: top-1 %.2f%% top-5 %.2f%%", (long long)t->epoch + 1, raw.top1,
                     raw.top5);
    if (ema_done && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, " | EMA top-1 %.2f%% top-5 %.2f%%", ema.top1, ema.top5);
    usi_say(USI_LOG_INFO, "%s", line);
    /* the EMA's figures only where the EMA was evaluated */
    if (ema_done)
        metric_line(t,
                    "{\"epoch\": %lld, \"step\": %lld, \"top1\": %s, \"top5\": %s, \"ema_top1\": %s, "
                    "\"ema_top5\": %s, \"val_loss\": %s, \"ema_val_loss\": %s}\n",
                    (long long)t->epoch + 1, (long long)t->step, JNUM("%.4f", raw.top1), JNUM("%.4f", raw.top5),
                    JNUM("%.4f", ema.top1), JNUM("%.4f", ema.top5), JNUM("%.6g", raw.loss), JNUM("%.6g", ema.loss));
    else
        metric_line(t, "{\"epoch\": %lld, \"step\": %lld, \"top1\": %s, \"top5\": %s, \"val_loss\": %s}\n",
                    (long long)t->epoch + 1, (long long)t->step, JNUM("%.4f", raw.top1), JNUM("%.4f", raw.top5),
                    JNUM("%.6g", raw.loss));
    /* Outputs that are not numbers (the loss is NaN when any sample's logits
     * are not all finite: eval.c) would otherwise score as anything: the
     * weights have diverged, and neither best nor last of this epoch is
     * worth keeping. */
    if (!isfinite(raw.loss) || (ema_done && !isfinite(ema.loss)))
        return usi_error_new(USI_ERR_INVALID,
                             "the outputs are NaN or infinite after epoch %lld (%s weights): the weights diverged; "
                             "lower optimizer.lr or set optimizer.clip_grad = 1.0. Stopped without saving this "
                             "epoch's weights", (long long)t->epoch + 1, isfinite(raw.loss) ? "EMA" : "raw");
    if (top1 > t->best_top1) {
        t->best_top1 = top1;
        USI_TRY(usi_trainer_load_eval_weights(t, use_ema));
        USI_TRY(usi_trainer_save_weights(t, "best.safetensors"));
    }
    return NULL;
}

/* eval.every_epochs and checkpoint.every_epochs count from the first epoch;
 * the last epoch always does both, so a run ends evaluated and resumable. */
static int epoch_due(const usi_trainer *t, const char *key)
{
    int64_t done = t->epoch + 1;
    return done >= t->epochs_total || done % usi_config_int(t->cfg, key) == 0;
}

/* An epoch that trained no step: say why, with the counts, rather than
 * write untrained weights as if the run had done its work. Every rank
 * calls it (the counts are summed over ranks). */
static usi_error *no_step_error(usi_trainer *t)
{
    double v[4]; /* samples, batches, skipped, replaced */
    USI_TRY(epoch_counts(t, v));
    const char *dir = usi_config_string(t->cfg, "data.train");
    size_t found = usi_dataset_size(t->train_ds);
    int32_t ranks = t->world * t->sim;
    char each[64] = "";
    if (ranks > 1) snprintf(each, sizeof each, " on each of %d ranks", (int)ranks);
    /* The loader reads no further than the last full batch: "read" may be
     * fewer than the folder holds. */
    if (v[2] > 0 && v[0] == 0)
        return usi_error_new(USI_ERR_INVALID, "data.train: every one of the %.0f images read from %s was skipped (it "
                             "holds %zu; see the warnings above): epoch %lld trained no step", v[2], dir, found,
                             (long long)t->epoch + 1);
    if (v[2] > 0)
        return usi_error_new(USI_ERR_INVALID, "data.train: %zu images in %s, %.0f skipped (see the warnings above), "
                             "leave no full batch of data.batch_size = %d%s: epoch %lld trained no step; replace the "
                             "skipped files or lower data.batch_size", found, dir, v[2], (int)t->batch, each,
                             (long long)t->epoch + 1);
    return usi_error_new(USI_ERR_INVALID, "data.train: %zu images in %s make no full batch of data.batch_size = "
                         "%d%s (batches are full only): epoch %lld trained no step; lower data.batch_size or add "
                         "images", found, dir, (int)t->batch, each, (long long)t->epoch + 1);
}

/* trained: steps this epoch trained; from_start: it began at its first
 * batch (not a resumed run's rest of an epoch, which may be empty). */
static usi_error *end_of_epoch(usi_trainer *t, int64_t trained, int from_start)
{
    USI_TRY(data_summary(t));
    /* Before any evaluation or checkpoint: untrained weights are no result. */
    if (trained == 0 && from_start) return no_step_error(t);
    /* Every rank evaluates rank 0's weights and statistics: what it saves. */
    USI_TRY(usi_trainer_sync_buffers(t));
    if (epoch_due(t, "eval.every_epochs")) USI_TRY(evaluate(t));
    if (epoch_due(t, "checkpoint.every_epochs"))
        return usi_trainer_save_checkpoint(t, "last.safetensors", t->epoch + 1, 0);
    return NULL;
}

/* OUTPUT_DIR/curves.png from metrics.jsonl. The weights are what the run is
 * for, so a picture that can't be drawn is only a warning. */
static void plot_curves(usi_trainer *t)
{
    if (!t->metrics) return;
    char metrics[sizeof t->out_dir + 32], png[sizeof t->out_dir + 32];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", t->out_dir);
    snprintf(png, sizeof png, "%s/curves.png", t->out_dir);
    fflush(t->metrics);
    usi_error *e = usi_plot_metrics(metrics, png);
    if (e) usi_log(USI_LOG_WARN, "no training curves: %s", usi_error_message(e));
    else usi_say(USI_LOG_INFO, "training curves in %s", png);
    usi_error_free(e);
}

/* The next batch of each loader into fbs/mb (mb[r] NULL when left out);
 * 0 at the end of the epoch. */
static usi_error *next_batches(usi_trainer *t, int64_t b, usi_float_batch *fbs, const usi_float_batch **mb,
                               int *more)
{
    *more = 1;
    for (int32_t r = 0; r < t->sim; r++) {
        USI_TRY(usi_input_next(t->inputs[r], &fbs[r]));
        if (fbs[r].batch.n == 0) *more = 0;
        mb[r] = &fbs[r];
        if (fbs[r].batch.n != 0 && fbs[r].batch.n != t->batch) {
            usi_log(USI_LOG_WARN, "epoch %lld batch %lld: %d of %d images after skipped files; batch left out",
                    (long long)t->epoch + 1, (long long)b, fbs[r].batch.n, t->batch);
            mb[r] = NULL;
        }
    }
    return NULL;
}

static usi_error *start_epoch(usi_trainer *t)
{
    /* A resumed run passes over the batches it already trained on. */
    for (int32_t r = 0; r < t->sim; r++) USI_TRY(usi_input_start_epoch(t->inputs[r], t->epoch, t->batch_in_epoch));
    return NULL;
}

static void reduction_summary(usi_trainer *t)
{
    if (!t->reducer) return;
    usi_reducer_stats st;
    usi_reducer_get_stats(t->reducer, &st);
    if (st.steps)
        usi_log(USI_LOG_INFO, "all-reduce: %d bucket(s), %.1f ms per step waited after backward over %lld steps",
                (int)st.buckets, 1e3 * st.wait_s / (double)st.steps, (long long)st.steps);
}

/* A resumed checkpoint at or past the end of this schedule would train
 * nothing, and the run would announce files it never wrote. */
static usi_error *check_epochs_left(const usi_trainer *t)
{
    if (t->epoch < t->epochs_total) return NULL;
    int64_t cool = usi_config_int(t->cfg, "schedule.cooldown_epochs");
    char with[96] = "";
    if (cool) snprintf(with, sizeof with, " (+ schedule.cooldown_epochs = %lld)", (long long)cool);
    return usi_error_new(USI_ERR_INVALID, "the checkpoint has trained %lld epoch%s; schedule.epochs = %lld%s leaves "
                         "nothing to train: raise schedule.epochs", (long long)t->epoch, t->epoch == 1 ? "" : "s",
                         (long long)usi_config_int(t->cfg, "schedule.epochs"), with);
}

static usi_error *run(usi_trainer *t, int *interrupted)
{
    *interrupted = 0;
    USI_TRY(check_epochs_left(t)); /* rank 0 knows the resumed position already */
    USI_TRY(usi_trainer_open_metrics(t));
    /* Ranks start from rank 0's state: its initial weights, or what it resumed. */
    USI_TRY(usi_trainer_sync_state(t));
    USI_TRY(check_epochs_left(t)); /* the other ranks learn the position here */
    if (t->teacher && t->step == 0) {
        usi_eval_result acc;
        USI_TRY(usi_trainer_teacher_accuracy(t, &acc));
        usi_say(USI_LOG_INFO, "teacher '%s': top-1 %.2f%%, top-5 %.2f%% on %lld val images",
                usi_config_teacher(t->cfg)->loaded->comp->name, acc.top1, acc.top5, (long long)acc.samples);
        metric_line(t, "{\"teacher_top1\": %s, \"teacher_top5\": %s}\n", JNUM("%.4f", acc.top1),
                    JNUM("%.4f", acc.top5));
    }
    usi_float_batch *fbs = calloc((size_t)t->sim, sizeof *fbs);
    const usi_float_batch **mb = calloc((size_t)t->sim, sizeof *mb);
    if (!fbs || !mb) {
        free(fbs);
        free(mb);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    usi_error *e = NULL;
    double t0 = usi_now();
    usi_meter meter;
    usi_meter_start(&meter, t->progress_interval);
    for (; !e && t->epoch < t->epochs_total; t->epoch++) {
        e = start_epoch(t);
        int64_t b = t->batch_in_epoch, trained = 0;
        int from_start = b == 0;
        t->batch_in_epoch = 0;
        usi_meter_reset_window(&meter);
        while (!e) {
            int more;
            e = next_batches(t, b + 1, fbs, mb, &more);
            if (e || !more) break;
            b++;
            usi_step_out so;
            e = usi_trainer_step(t, mb, t->sim, usi_stop_requested != 0, &so);
            if (e) break;
            if (so.trained) {
                trained++;
                usi_meter_step(&meter, (int64_t)so.trained * t->batch);
                progress(t, &meter, b, so.loss, so.lr, t0);
                if (t->step % t->metrics_every == 0 || b == t->steps_per_epoch)
                    metric_line(t, "{\"epoch\": %lld, \"step\": %lld, \"loss\": %s, \"lr\": %s, "
                                "\"img_s\": %s, \"grad_norm\": %s}\n",
                                (long long)t->epoch + 1, (long long)t->step, JNUM("%.7g", so.loss),
                                JNUM("%.7g", so.lr), JNUM("%.1f", usi_meter_rate(&meter)),
                                JNUM("%.6g", t->grad_norm));
            }
            if (so.stop) {
                usi_log_end_progress();
                e = usi_trainer_save_checkpoint(t, "last.safetensors", t->epoch, b);
                *interrupted = !e;
                free(fbs);
                free(mb);
                return e;
            }
        }
        if (!e) e = end_of_epoch(t, trained, from_start);
    }
    free(fbs);
    free(mb);
    if (e) return e;
    usi_say(USI_LOG_INFO, "best top-1 %.2f%%; weights in %s/best.safetensors, checkpoint %s/last.safetensors",
            t->best_top1, t->out_dir, t->out_dir);
    reduction_summary(t);
    plot_curves(t);
    return NULL;
}

usi_error *usi_trainer_run(usi_trainer *t, int *interrupted)
{
    usi_error *e = run(t, interrupted);
    /* A new run that stops before its first step leaves no metrics.jsonl:
     * nothing in it would say anything. */
    if (e && t->metrics && !t->resumed && t->step == 0) {
        char path[sizeof t->out_dir + 32];
        snprintf(path, sizeof path, "%s/metrics.jsonl", t->out_dir);
        fclose(t->metrics);
        t->metrics = NULL;
        unlink(path);
    }
    return e;
}
