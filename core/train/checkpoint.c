/* Checkpoints: the student, its EMA, the optimizer state, the step and the
 * effective config in one safetensors file, written atomically by rank 0;
 * resume reads them back into rank 0's device blocks. */
#include <cJSON.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/decode.h"
#include "data/imagefolder.h"
#include "config/config.h"
#include "plugin/params.h"
#include "train/safetensors.h"
#include "train/trainer_internal.h"
#include "train/weights.h"
#include "util/error.h"
#include "util/file.h"
#include "util/log.h"

/* A host copy of numel floats at byte `off` of a device block, owned by w. */
static usi_error *add_block_part(usi_st_writer *w, const char *key, const usi_param_info *p, const usi_dbuf *b,
                                 size_t off)
{
    size_t bytes = (size_t)p->numel * usi_dtype_size(p->dtype);
    void *host = usi_st_writer_alloc(w, bytes);
    if (!host) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    USI_TRY(usi_dbuf_read(b, off, host, bytes));
    return usi_st_writer_add(w, key, p->dtype, p->ndim, p->shape, host);
}

static int is_f32_buffer(const usi_trainer *t, const usi_param_info *p)
{
    return p->dtype == USI_DTYPE_F32 && p->offset < t->blocks.n_f32_buffers * sizeof(float);
}

static usi_error *add_state(usi_trainer *t, usi_st_writer *w)
{
    int ns = usi_optim_state_count(t->hp.kind);
    char key[1100];
    for (int32_t i = 0; i < usi_graph_num_params(t->gs); i++) {
        usi_param_info p;
        usi_graph_param_at(t->gs, i, &p);
        snprintf(key, sizeof key, "ema/%s", p.name);
        USI_TRY(add_block_part(w, key, &p, t->ema_params, p.offset));
        for (int s = 0; p.trainable && s < ns; s++) {
            snprintf(key, sizeof key, "optim.%d/%s", s, p.name);
            USI_TRY(add_block_part(w, key, &p, t->opt_state[s], p.offset));
        }
    }
    for (int32_t i = 0; i < usi_graph_num_buffers(t->gs); i++) {
        usi_param_info p;
        usi_graph_buffer_at(t->gs, i, &p);
        snprintf(key, sizeof key, "ema/%s", p.name);
        /* Counters are copied, not averaged. */
        USI_TRY(add_block_part(w, key, &p, is_f32_buffer(t, &p) ? t->ema_buffers : t->blocks.buffers, p.offset));
    }
    return NULL;
}

/* What it takes to use the weights without the run's config: the backbone's
 * options (so a file loaded by the backbone's name is built as trained),
 * whether that is timm's network of the name, the class names, and the
 * evaluation transform (config literals, as `--set` takes them). */
static usi_error *add_backbone_meta(usi_trainer *t, usi_st_writer *w)
{
    usi_strbuf opts = {0};
    usi_params_write(t->bb_params, &opts, 0);
    usi_error *e = usi_st_writer_meta(w, "backbone_options", opts.data ? opts.data : "");
    usi_strbuf_free(&opts);
    if (!e) e = usi_st_writer_meta(w, "timm_network", t->timm_network ? "true" : "false");
    cJSON *names = cJSON_CreateArray();
    for (size_t k = 0; names && k < usi_dataset_class_count(t->train_ds); k++)
        cJSON_AddItemToArray(names, cJSON_CreateString(usi_dataset_class_name(t->train_ds, k)));
    char *list = names ? cJSON_PrintUnformatted(names) : NULL;
    if (!e) e = list ? usi_st_writer_meta(w, "classes", list) : usi_error_new(USI_ERR_NOMEM, "out of memory");
    free(list);
    cJSON_Delete(names);
    for (int which = 0; !e && which < 3; which++) {
        usi_strbuf text = {0};
        /* as configured, per channel the backbone reads */
        const double *v = which == 1 ? t->si.std : t->si.mean;
        if (which == 2) {
            usi_strbuf_add_double(&text, usi_config_float(t->cfg, "data.crop_pct"));
        } else {
            for (int c = 0; c < t->si.chans; c++) {
                usi_strbuf_addf(&text, "%s", c ? ", " : "[");
                usi_strbuf_add_double(&text, v[c]);
            }
            usi_strbuf_addf(&text, "]");
        }
        e = text.data ? usi_st_writer_meta(w, which == 2 ? "crop_pct" : which ? "std" : "mean", text.data)
                      : usi_error_new(USI_ERR_NOMEM, "out of memory");
        usi_strbuf_free(&text);
    }
    if (!e) e = usi_st_writer_meta(w, "interpolation", usi_config_string(t->cfg, "data.interpolation"));
    return e;
}

static usi_error *add_meta(usi_trainer *t, usi_st_writer *w, int64_t epoch, int64_t batch)
{
    char text[64];
    usi_strbuf cfg = {0};
    usi_config_write(t->cfg, &cfg);
    usi_error *e = usi_st_writer_meta(w, "format", "usi-checkpoint-1");
    if (!e) e = usi_st_writer_meta(w, "backbone", t->bb->name);
    if (!e) e = add_backbone_meta(t, w);
    if (!e) e = usi_st_writer_meta(w, "config", cfg.data ? cfg.data : "");
    usi_strbuf_free(&cfg);
    snprintf(text, sizeof text, "%lld", (long long)epoch);
    if (!e) e = usi_st_writer_meta(w, "epoch", text);
    snprintf(text, sizeof text, "%lld", (long long)batch);
    if (!e) e = usi_st_writer_meta(w, "batch_in_epoch", text);
    snprintf(text, sizeof text, "%lld", (long long)t->step);
    if (!e) e = usi_st_writer_meta(w, "step", text);
    snprintf(text, sizeof text, "%.17g", t->best_top1);
    if (!e) e = usi_st_writer_meta(w, "best_top1", text);
    /* The ranks (processes x simulated) and the global batch: a resume on
     * another count must keep the global batch, which fixes the steps. */
    snprintf(text, sizeof text, "%d", (int)(t->world * t->sim));
    if (!e) e = usi_st_writer_meta(w, "ranks", text);
    snprintf(text, sizeof text, "%lld", (long long)t->batch * t->world * t->sim);
    if (!e) e = usi_st_writer_meta(w, "global_batch", text);
    return e;
}

usi_error *usi_trainer_save_checkpoint(usi_trainer *t, const char *name, int64_t epoch, int64_t batch)
{
    if (t->rank != 0) return NULL; /* rank 0 writes for the job */
    char path[2300];
    snprintf(path, sizeof path, "%s/%s", t->out_dir, name);
    usi_st_writer *w = usi_st_writer_new();
    if (!w) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = usi_weights_add(w, t->gs, "");
    if (!e) e = add_state(t, w);
    if (!e) e = add_meta(t, w, epoch, batch);
    if (!e) e = usi_st_writer_save(w, path);
    usi_st_writer_free(w);
    if (!e && !strcmp(name, "last.safetensors")) t->own_last = 1;
    return e;
}

int usi_trainer_has_checkpoint(const usi_trainer *t) { return t->own_last; }

usi_error *usi_trainer_save_weights(usi_trainer *t, const char *name)
{
    if (t->rank != 0) return NULL;
    char path[2300];
    snprintf(path, sizeof path, "%s/%s", t->out_dir, name);
    usi_st_writer *w = usi_st_writer_new();
    if (!w) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = usi_weights_add(w, t->ge, "");
    if (!e) e = usi_st_writer_meta(w, "backbone", t->bb->name);
    if (!e) e = add_backbone_meta(t, w);
    if (!e) e = usi_st_writer_save(w, path);
    usi_st_writer_free(w);
    return e;
}

static int64_t meta_int(const usi_st_file *f, const char *key)
{
    const char *v = usi_st_metadata(f, key);
    return v ? strtoll(v, NULL, 10) : -1;
}

/* prefix + name from f into byte off of a device block; with b NULL, only
 * check that the file holds it. */
static usi_error *load_part(const usi_st_file *f, const char *prefix, const usi_param_info *p, usi_dbuf *b,
                            size_t off, const char *path)
{
    char key[1100];
    snprintf(key, sizeof key, "%s%s", prefix, p->name);
    const usi_st_tensor *s = usi_st_find(f, key);
    size_t bytes = (size_t)p->numel * usi_dtype_size(p->dtype);
    if (!s || s->nbytes != bytes || s->dtype != p->dtype)
        return usi_error_new(USI_ERR_INVALID, "%s: tensor '%s' is missing or has the wrong size", path, key);
    return b ? usi_dbuf_write(b, off, s->data, bytes) : NULL;
}

/* Everything is checked against the file before the first write. */
static usi_error *load_state(usi_trainer *t, const usi_st_file *f, const char *path, int dry)
{
    int ns = usi_optim_state_count(t->hp.kind);
    for (int32_t i = 0; i < usi_graph_num_params(t->gs); i++) {
        usi_param_info p;
        usi_graph_param_at(t->gs, i, &p);
        USI_TRY(load_part(f, "ema/", &p, dry ? NULL : t->ema_params, p.offset, path));
        for (int s = 0; p.trainable && s < ns; s++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "optim.%d/", s);
            USI_TRY(load_part(f, prefix, &p, dry ? NULL : t->opt_state[s], p.offset, path));
        }
    }
    for (int32_t i = 0; i < usi_graph_num_buffers(t->gs); i++) {
        usi_param_info p;
        usi_graph_buffer_at(t->gs, i, &p);
        if (is_f32_buffer(t, &p)) USI_TRY(load_part(f, "ema/", &p, dry ? NULL : t->ema_buffers, p.offset, path));
    }
    return NULL;
}

static usi_error *check_format(usi_trainer *t, const usi_st_file *f, const char *path)
{
    const char *fmt = usi_st_metadata(f, "format"), *bb = usi_st_metadata(f, "backbone");
    if (!fmt && bb)
        return usi_error_new(USI_ERR_INVALID, "%s holds weights only (as best.safetensors does), not a training "
                             "checkpoint: resume from a last.safetensors", path);
    if (!fmt || strcmp(fmt, "usi-checkpoint-1") != 0)
        return usi_error_new(USI_ERR_INVALID, "%s is not a usi training checkpoint (no format metadata)", path);
    if (!bb || strcmp(bb, t->bb->name) != 0)
        return usi_error_new(USI_ERR_INVALID, "%s was written for backbone '%s', this run trains '%s'", path,
                             bb ? bb : "?", t->bb->name);
    if (meta_int(f, "epoch") < 0 || meta_int(f, "batch_in_epoch") < 0 || meta_int(f, "step") < 0)
        return usi_error_new(USI_ERR_INVALID, "%s: epoch, batch or step metadata is missing", path);
    return NULL;
}

/* A checkpoint goes on under another number of ranks (processes of mpirun,
 * or dist.simulate_ranks) only with the same global batch: it fixes the
 * learning rate, the steps of an epoch and the place in it. *same_steps:
 * the ranks or per-rank batch changed but not the global batch. */
static usi_error *check_ranks(const usi_trainer *t, const usi_st_file *f, const char *path, int *same_steps)
{
    *same_steps = 0;
    int64_t ranks = meta_int(f, "ranks"), global = meta_int(f, "global_batch");
    int64_t now_ranks = (int64_t)t->world * t->sim, now_global = (int64_t)t->batch * now_ranks;
    if (ranks < 1 || global < 1) return NULL; /* written before these were stored */
    if (global != now_global)
        return usi_error_new(USI_ERR_INVALID, "%s was trained with a global batch of %lld (%lld rank%s x %lld "
                             "images); this run has %lld x %d = %lld: that changes the learning rate and the steps "
                             "of an epoch. Resume with %lld processes (mpirun -np, or dist.simulate_ranks) of "
                             "data.batch_size = %lld, or any count whose data.batch_size makes %lld", path,
                             (long long)global, (long long)ranks, ranks == 1 ? "" : "s", (long long)(global / ranks),
                             (long long)now_ranks, (int)t->batch, (long long)now_global, (long long)ranks,
                             (long long)(global / ranks), (long long)global);
    if (ranks != now_ranks) {
        *same_steps = 1;
        usi_log(USI_LOG_INFO, "resuming a run of %lld rank%s x %lld images on %lld x %d: the same global batch, so "
                "the same steps", (long long)ranks, ranks == 1 ? "" : "s", (long long)(global / ranks),
                (long long)now_ranks, (int)t->batch);
    }
    return NULL;
}

/* The optimizer state goes on only into an optimizer that keeps the same:
 * adamw and lamb both keep Adam's two moments, sgd one momentum buffer
 * (another quantity: loaded as such it would be wrong without a word, and
 * the other way round the second moment is missing). */
static usi_error *check_optimizer(const usi_trainer *t, const usi_st_file *f, const char *path)
{
    char *was = usi_config_text_value(usi_st_metadata(f, "config"), "optimizer.name");
    const char *now = usi_config_string(t->cfg, "optimizer.name");
    usi_error *e = NULL;
    if (was) {
        size_t n = strlen(was);
        char name[32] = "";
        if (n >= 2 && was[0] == '"' && n - 2 < sizeof name) memcpy(name, was + 1, n - 2);
        int was_sgd = !strcmp(name, "sgd"), now_sgd = !strcmp(now, "sgd");
        if (*name && was_sgd != now_sgd)
            e = usi_error_new(USI_ERR_INVALID, "%s was trained with optimizer.name = \"%s\", this run has \"%s\": "
                              "the file holds %s, not the %s that %s keeps; resume with optimizer.name = \"%s\"", path,
                              name, now, was_sgd ? "SGD's momentum buffer" : "Adam's two moments",
                              now_sgd ? "momentum buffer" : "two moments", now, name);
    }
    free(was);
    return e;
}

/* A resumed run with other settings than its checkpoint's (another data
 * folder, more epochs, another output folder) says which; with the same
 * global batch on other ranks, the per-rank batch is not news. */
static void say_changed(usi_trainer *t, const usi_st_file *f, const char *path, int same_steps)
{
    const char *same[] = {"checkpoint.resume", NULL, NULL, NULL};
    if (same_steps) {
        same[1] = "data.batch_size";
        same[2] = "dist.simulate_ranks";
    }
    usi_strbuf now = {0}, diff = {0};
    usi_config_write(t->cfg, &now);
    int32_t n = usi_config_text_diff(usi_st_metadata(f, "config"), now.data, same, &diff, 6);
    if (n > 0)
        usi_log(USI_LOG_WARN, "resuming %s with %d setting%s other than it was trained with: %s%s", path, (int)n,
                n == 1 ? "" : "s", diff.data ? diff.data : "", n > 6 ? "; ..." : "");
    usi_strbuf_free(&now);
    usi_strbuf_free(&diff);
}

/* A tensor that does not fit is most often another shape of the same
 * backbone (another stem, other classes): e gains the options that differ. */
static usi_error *with_option_diff(usi_trainer *t, const usi_st_file *f, usi_error *e)
{
    usi_strbuf now = {0}, diff = {0};
    usi_params_write(t->bb_params, &now, 0);
    int32_t n = usi_config_text_diff(usi_st_metadata(f, "backbone_options"), now.data, NULL, &diff, 4);
    if (n > 0) {
        usi_error *more = usi_error_new(USI_ERR_INVALID, "%s; the file's backbone options differ from this run's: "
                                        "%s%s", usi_error_message(e), diff.data ? diff.data : "", n > 4 ? "; ..." : "");
        usi_error_free(e);
        e = more;
    }
    usi_strbuf_free(&now);
    usi_strbuf_free(&diff);
    return e;
}

/* The checkpoint's best top-1 belongs to a best.safetensors beside it. A
 * run resumed into another output_dir would otherwise end naming
 * OUTPUT_DIR/best.safetensors, never written when no later epoch does
 * better: that file is copied over, so the folder holds the run's best
 * weights. Without one to copy, the best so far is forgotten and this run
 * keeps the best of its own epochs. */
static usi_error *carry_best(usi_trainer *t, const char *path)
{
    if (t->best_top1 < 0 || t->epoch >= t->epochs_total) return NULL; /* refused later: nothing to train */
    char here[2300], there[4200];
    snprintf(here, sizeof here, "%s/best.safetensors", t->out_dir);
    struct stat st;
    if (stat(here, &st) == 0) return NULL;
    char *copy = strdup(path);
    if (!copy) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    snprintf(there, sizeof there, "%s/best.safetensors", dirname(copy));
    free(copy);
    uint8_t *data = NULL;
    size_t cap = 0, len = 0;
    usi_error *unread = usi_read_file(there, &data, &cap, &len);
    int have = !unread && len > 0;
    usi_error_free(unread);
    if (!have) {
        free(data);
        usi_log(USI_LOG_WARN, "%s has no best.safetensors beside it (of top-1 %.2f%%): %s will hold the best of "
                "the epochs from here on", path, t->best_top1, here);
        t->best_top1 = -1;
        return NULL;
    }
    usi_error *e = usi_file_write_atomic(here, data, len);
    free(data);
    if (!e)
        usi_log(USI_LOG_INFO, "best.safetensors (top-1 %.2f%%) copied from %s to %s", t->best_top1, there, here);
    return e;
}

usi_error *usi_trainer_resume(usi_trainer *t, const char *path)
{
    /* Only rank 0 reads the file (other hosts need no copy of it): the run
     * starts by sending rank 0's state to every rank (usi_trainer_sync_state). */
    if (t->rank != 0) return NULL;
    usi_st_file *f;
    USI_TRY(usi_st_read(path, &f));
    int same_steps = 0;
    usi_error *e = check_format(t, f, path);
    if (!e) e = check_ranks(t, f, path, &same_steps);
    if (!e) e = check_optimizer(t, f, path);
    /* Check every tensor first, so a bad file leaves the run as it was. */
    if (!e) e = load_state(t, f, path, 1);
    if (e && usi_st_metadata(f, "backbone_options")) e = with_option_diff(t, f, e);
    if (!e) e = usi_weights_load(t->gs, f, "", 0, path);
    if (!e) e = load_state(t, f, path, 0);
    if (!e) say_changed(t, f, path, same_steps);
    if (!e) {
        t->resumed = 1;
        t->epoch = meta_int(f, "epoch");
        t->batch_in_epoch = meta_int(f, "batch_in_epoch");
        t->step = meta_int(f, "step");
        const char *best = usi_st_metadata(f, "best_top1");
        t->best_top1 = best ? strtod(best, NULL) : -1;
    }
    usi_st_free(f);
    if (!e) e = carry_best(t, path);
    if (!e) {
        /* resumed from OUTPUT_DIR/last.safetensors itself */
        char here[2300];
        struct stat a, b;
        snprintf(here, sizeof here, "%s/last.safetensors", t->out_dir);
        t->own_last = stat(here, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    }
    if (!e)
        usi_log(USI_LOG_INFO, "resuming %s at epoch %lld, batch %lld (step %lld)", path, (long long)t->epoch + 1,
                (long long)t->batch_in_epoch, (long long)t->step);
    return e;
}
