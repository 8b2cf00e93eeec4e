#include "train/trainer_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/loader_config.h"
#include "dist/dist.h"
#include "dist/reducer.h"
#include "graph/graph.h"
#include "plugin/call.h"
#include "plugin/params.h"
#include "train/ema.h"
#include "train/input.h"
#include "train/optim.h"
#include "train/options.h"
#include "train/safetensors.h"
#include "train/schedule.h"
#include "train/setup.h"
#include "train/teacher.h"
#include "train/weights.h"
#include "util/error.h"
#include "util/file.h"
#include "util/log.h"

volatile sig_atomic_t usi_stop_requested;


static usi_error *mkdirs(const char *path)
{
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char saved = *p;
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return usi_error_new(USI_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
            *p = saved;
            if (!saved) break;
        }
    }
    return NULL;
}

/* One run per output folder: a second `usi train` into it would interleave
 * metrics.jsonl and write over the other's checkpoints. The lock goes with
 * the process, however it ends (kill -9 too); the file stays, empty of
 * meaning, and holds the pid of the run that has it. */
static usi_error *lock_out_dir(usi_trainer *t)
{
    char path[2200];
    snprintf(path, sizeof path, "%s/.usi-lock", t->out_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOTDIR)
        return usi_error_new(USI_ERR_IO, "output_dir %s is a file, not a folder: set output_dir to a folder for the "
                             "run's checkpoints and metrics", t->out_dir);
    if (fd < 0) return usi_error_new(USI_ERR_IO, "output_dir: cannot create %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        close(fd);
        if (err == EWOULDBLOCK)
            return usi_error_new(USI_ERR_INVALID, "output_dir %s is in use by another usi train (process %s): wait "
                                 "for it to end, or set another output_dir", t->out_dir, *pid ? pid : "?");
        return usi_error_new(USI_ERR_IO, "output_dir: cannot lock %s: %s", path, strerror(err));
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        /* the pid is for the message of a second run only */
    }
    t->lock_fd = fd;
    return NULL;
}

/* Identity: one process holds the whole batch's gradient. */
static usi_error *reduce_identity(void *ctx, usi_dbuf *grads, size_t n)
{
    (void)ctx;
    (void)grads;
    (void)n;
    return NULL;
}

/* The optimizer's segments (one per trainable parameter, with its decay
 * flag) and the flat device state: optimizer moments, and the EMA starting
 * at the current weights. */
static usi_error *alloc_state(usi_trainer *t)
{
    usi_graph_get_blocks(t->gs, &t->blocks);
    int32_t n = usi_graph_num_params(t->gs);
    t->segs = calloc((size_t)n + 1, sizeof *t->segs);
    if (!t->segs) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; i < n; i++) {
        usi_param_info p;
        usi_graph_param_at(t->gs, i, &p);
        if (!p.trainable) continue;
        t->segs[t->n_segs++] = (usi_optim_seg){p.offset / sizeof(float), (size_t)p.numel,
                                               usi_param_decays(p.name, p.ndim)};
    }
    size_t trainable = t->blocks.n_trainable * sizeof(float);
    for (int s = 0; s < usi_optim_state_count(t->hp.kind); s++)
        USI_TRY(usi_dbuf_new(t->dev, trainable, &t->opt_state[s]));
    size_t pbytes = t->blocks.n_params * sizeof(float), bbytes = t->blocks.n_f32_buffers * sizeof(float);
    USI_TRY(usi_dbuf_new(t->dev, pbytes, &t->ema_params));
    USI_TRY(usi_dbuf_new(t->dev, bbytes, &t->ema_buffers));
    if (pbytes) USI_TRY(usi_dbuf_copy(t->ema_params, 0, t->blocks.params, 0, pbytes));
    if (bbytes) USI_TRY(usi_dbuf_copy(t->ema_buffers, 0, t->blocks.buffers, 0, bbytes));
    t->reduce = reduce_identity;
    if (t->sim > 1) {
        USI_TRY(usi_dbuf_new(t->dev, trainable, &t->sim_grads));
        USI_TRY(usi_dbuf_new(t->dev, t->blocks.buffers ? usi_dbuf_bytes(t->blocks.buffers) : 0, &t->sim_buffers));
    }
    t->logits_host = malloc(sizeof(float) * (size_t)t->batch * (size_t)t->classes);
    if (!t->logits_host) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    return NULL;
}

/* The training graph: loss = CE(s, y_soft) + alpha * T^2 * KL(t || s), or the
 * KL term alone (kd_only), or CE alone without a teacher. */
static usi_error *build_train_graph(usi_trainer *t)
{
    const usi_graph_api *G = usi_graph_api_get();
    /* The graph seed keys dropout and drop-path masks: ranks draw their own
     * (the initial weights it also keys are rank 0's on every rank, sent at
     * the start of the run). */
    uint64_t seed = t->rank ? t->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)t->rank) : t->seed;
    t->gs = usi_graph_new(t->dev, 1, seed);
    if (!t->gs) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    int64_t img[4] = {t->batch, 3, t->side, t->side}, rows[2] = {t->batch, t->classes};
    t->xs = usi_graph_input(t->gs, "images", USI_DTYPE_F32, 4, img);
    t->targets = usi_graph_input(t->gs, "targets", USI_DTYPE_F32, 2, rows);
    usi_tensor *logits;
    usi_tensor *x = usi_setup_student_node(t->gs, t->xs, &t->si);
    USI_TRY(usi_call_build_backbone(t->gs, t->bb, t->bb_inst, x, &logits));
    if (G->ndim(logits) != 2 || G->dim(logits, 1) != t->classes)
        return usi_error_new(USI_ERR_INVALID, "backbone '%s' does not give [batch, %d] logits", t->bb->name,
                             t->classes);
    /* loss.label_smoothing: the hard-label term's targets (one-hot, or
     * Mixup/CutMix's mixture) as (1 - eps) t + eps / classes */
    usi_tensor *hard = t->targets;
    double eps = usi_config_float(t->cfg, "loss.label_smoothing");
    if (eps > 0) {
        int64_t one = 1;
        float share = (float)(eps / (double)t->classes);
        usi_tensor *uniform = G->constant(t->gs, "label_smoothing", USI_DTYPE_F32, 1, &one, &share);
        hard = G->binary(t->gs, USI_BIN_ADD, G->scale(t->gs, t->targets, 1.0 - eps), uniform);
    }
    usi_tensor *loss = NULL;
    if (t->teacher) {
        t->teacher_in = usi_graph_input(t->gs, "teacher_logits", USI_DTYPE_F32, 2, rows);
        usi_tensor *kl = G->loss_kl(t->gs, logits, t->teacher_in, usi_config_float(t->cfg, "loss.kd_temperature"));
        if (usi_config_bool(t->cfg, "loss.kd_only")) loss = kl;
        else
            loss = G->binary(t->gs, USI_BIN_ADD, G->loss_soft_ce(t->gs, logits, hard),
                             G->scale(t->gs, kl, usi_config_float(t->cfg, "loss.kd_alpha")));
    } else {
        loss = G->loss_soft_ce(t->gs, logits, hard);
    }
    USI_TRY(usi_graph_error(t->gs));
    t->loss = loss;
    usi_graph_mark_output(loss);
    USI_TRY(usi_graph_set_loss(t->gs, loss));
    USI_TRY(usi_graph_compile(t->gs));
    size_t peak = 0, naive = 0;
    usi_graph_memory(t->gs, &peak, &naive);
    usi_log(USI_LOG_INFO, "training graph on %s: %d parameter tensors, arena %.1f MiB (%.1f MiB without reuse)",
            usi_device_name(t->dev), (int)usi_graph_num_params(t->gs), (double)peak / 1048576.0,
            (double)naive / 1048576.0);
    int32_t kept = usi_graph_bf16_nodes(t->gs);
    if (kept)
        usi_log(USI_LOG_INFO, "precision \"mixed\": %d activations and their gradients kept as bf16, "
                "parameters, outputs and losses fp32", (int)kept);
    int32_t cl = usi_graph_cl_nodes(t->gs);
    if (cl)
        usi_log(USI_LOG_INFO, "layout: %d activations and their gradients kept channels-last (NHWC) on %s",
                (int)cl, usi_device_name(t->dev));
    int32_t fused = usi_graph_fused_nodes(t->gs);
    if (fused)
        usi_log(USI_LOG_INFO, "fused: %d batch norms apply their ReLU in their own kernels on %s", (int)fused,
                usi_device_name(t->dev));
    return NULL;
}

/* Whether the weights this run writes are timm's network of the backbone's
 * name; said once when they are not. */
static void check_timm_network(usi_trainer *t)
{
    usi_strbuf diff = {0};
    t->timm_network = usi_backbone_is_timm_default(t->bb, t->bb_params, t->side, &diff);
    if (!t->timm_network)
        usi_log(USI_LOG_WARN, "%s with %s is not timm's %s network: timm would load these weights and compute "
                "something else; usi builds it from the options stored in the file", t->bb->name,
                diff.len ? diff.data : "these options", t->bb->name);
    usi_strbuf_free(&diff);
}

static void set_hyper(usi_trainer *t)
{
    const usi_config *c = t->cfg;
    const char *opt = usi_config_string(c, "optimizer.name");
    t->hp.kind = !strcmp(opt, "sgd") ? USI_OPT_SGD : !strcmp(opt, "lamb") ? USI_OPT_LAMB : USI_OPT_ADAMW;
    t->hp.beta1 = usi_config_float(c, "optimizer.beta1");
    t->hp.beta2 = usi_config_float(c, "optimizer.beta2");
    t->hp.eps = usi_config_float(c, "optimizer.eps");
    t->hp.momentum = usi_config_float(c, "optimizer.momentum");
    t->hp.nesterov = usi_config_bool(c, "optimizer.nesterov");
    t->clip = usi_config_float(c, "optimizer.clip_grad");
    t->ema_on = usi_config_bool(c, "ema.enabled");
    t->ema_warmup = usi_config_bool(c, "ema.warmup");
    t->ema_decay = usi_config_float(c, "ema.decay");
    t->weight_decay = usi_config_float(c, "optimizer.weight_decay");
    /* The loader knows its batch count once an epoch is laid out. */
    usi_error *e = usi_loader_start_epoch(t->train_loader, 0);
    usi_error_free(e);
    t->steps_per_epoch = usi_loader_batch_count(t->train_loader);
    if (t->steps_per_epoch < 1) t->steps_per_epoch = 1;
    int64_t epochs = usi_config_int(c, "schedule.epochs");
    t->epochs_total = epochs + usi_config_int(c, "schedule.cooldown_epochs");
    t->sched.kind = !strcmp(usi_config_string(c, "schedule.name"), "constant") ? USI_SCHED_CONSTANT : USI_SCHED_COSINE;
    /* The global batch: every rank's (or every simulated rank's) batch. */
    t->sched.lr = usi_scaled_lr(usi_config_float(c, "optimizer.lr"), usi_config_int(c, "optimizer.lr_batch"),
                                (int64_t)t->batch * t->world * t->sim);
    t->sched.warmup_lr = usi_config_float(c, "schedule.warmup_lr");
    t->sched.min_lr = usi_config_float(c, "schedule.min_lr");
    int64_t warmup = usi_config_int(c, "schedule.warmup_epochs");
    t->sched.warmup_steps = warmup * t->steps_per_epoch;
    t->sched.cosine_steps = epochs * t->steps_per_epoch;
    /* The default warm-up (5 epochs) under a short run's schedule.epochs
     * would make the whole run a warm-up, and the rate would go on rising
     * into the cool-down. */
    if (warmup > 0 && warmup >= epochs && usi_log_is_reporter())
        usi_log(USI_LOG_WARN, "schedule.warmup_epochs = %lld is not less than schedule.epochs = %lld: the learning "
                "rate rises from schedule.warmup_lr for the whole run and never follows the %s; lower "
                "schedule.warmup_epochs", (long long)warmup, (long long)epochs,
                t->sched.kind == USI_SCHED_CONSTANT ? "constant rate" : "cosine");
}

/* Where this process stands in the job, and what a distributed run can do. */
static usi_error *set_ranks(usi_trainer *t)
{
    const usi_config *c = t->cfg;
    t->rank = usi_dist_rank();
    t->world = usi_dist_world();
    t->sim = (int32_t)usi_config_int(c, "dist.simulate_ranks");
    if (usi_config_bool(c, "dist.sync_bn") && t->sim > 1)
        return usi_error_new(USI_ERR_INVALID,
                             "dist.sync_bn with dist.simulate_ranks = %d: simulated ranks run one after the other, "
                             "so their batch norms cannot share statistics; what mpirun -np %d with dist.sync_bn "
                             "computes is one process with the global batch (data.batch_size = %lld) and plain "
                             "batch norm",
                             (int)t->sim, (int)t->sim, (long long)t->batch * t->sim);
    if (t->sim > 1 && t->world > 1)
        return usi_error_new(USI_ERR_INVALID,
                             "dist.simulate_ranks = %d under mpirun with %d processes: simulate ranks in one "
                             "process (without mpirun) or run them as processes, not both",
                             (int)t->sim, (int)t->world);
    return NULL;
}

/* Settings a process or host may have of its own: where its files are, its
 * threads and loader, its device, what it prints. The class counts come
 * from each rank's data folders, which are compared (and reported) after
 * they are opened. */
static const char *const per_rank_keys[] = {"output_dir", "threads", "device", "progress_interval", "metrics_every",
                                            "plugin_path", "data.train", "data.val", "data.workers",
                                            "data.prefetch", "checkpoint.resume", "backbone.num_classes",
                                            "teacher.num_classes", NULL};

/* Ranks that run other settings either wait for each other forever (one
 * evaluates its EMA and the other not; one has a teacher) or quietly train
 * apart (another learning rate, another seed's order): before any other
 * collective, each rank compares its effective config with rank 0's and one
 * that differs stops the job naming the settings. */
static usi_error *check_same_settings(usi_trainer *t)
{
    if (t->world < 2) return NULL;
    usi_strbuf mine = {0}, diff = {0};
    usi_config_write(t->cfg, &mine);
    int64_t len = t->rank == 0 ? (int64_t)mine.len : 0;
    usi_error *e = mine.data ? usi_dist_bcast(&len, sizeof len) : usi_error_new(USI_ERR_NOMEM, "out of memory");
    char *root = e ? NULL : malloc((size_t)len + 1);
    if (!e && !root) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
    if (!e && t->rank == 0) memcpy(root, mine.data, (size_t)len);
    if (!e && len) e = usi_dist_bcast(root, (size_t)len);
    if (!e) {
        root[len] = 0;
        int32_t n = usi_config_text_diff(root, mine.data, per_rank_keys, &diff, 4);
        if (n < 0) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
        else if (n > 0) {
            usi_strbuf text = {0}; /* "k = mine (was root's)" read as "k = mine (rank 0: root's)" */
            for (const char *p = diff.data, *w; p && *p; p = w + 5) {
                w = strstr(p, "(was ");
                usi_strbuf_addf(&text, "%.*s%s", (int)(w ? w - p : (ptrdiff_t)strlen(p)), p, w ? "(rank 0: " : "");
                if (!w) break;
            }
            e = usi_error_new(USI_ERR_INVALID, "rank %d runs %d setting%s other than rank 0's: %s; every rank needs "
                              "the same config and --set options", (int)t->rank, (int)n, n == 1 ? "" : "s",
                              text.data ? text.data : diff.data);
            usi_strbuf_free(&text);
        }
    }
    free(root);
    usi_strbuf_free(&mine);
    usi_strbuf_free(&diff);
    return e;
}

/* The transport of the reductions over ranks: dist.backend, or by device. */
static const char *transport_of(const usi_trainer *t)
{
    const char *backend = usi_config_string(t->cfg, "dist.backend");
    if (strcmp(backend, "auto") != 0) return backend;
    return strncmp(usi_device_name(t->dev), "cuda", 4) == 0 ? "nccl" : "mpi";
}

/* The gradient all-reduce: with several processes, or when dist.backend
 * names a transport (to run that path on one process). */
static usi_error *set_reducer(usi_trainer *t)
{
    int forced = strcmp(usi_config_string(t->cfg, "dist.backend"), "auto") != 0;
    /* Simulated ranks average in the step itself (step.c). */
    if (!t->blocks.grads || t->sim > 1 || (t->world < 2 && !forced)) return NULL;
    usi_reducer_opts o = {(size_t)(usi_config_float(t->cfg, "dist.bucket_mb") * 1048576.0),
                          usi_config_bool(t->cfg, "dist.overlap"), transport_of(t)};
    USI_TRY(usi_reducer_new(t->gs, &o, &t->reducer));
    t->reduce = usi_reducer_finish;
    t->reduce_ctx = t->reducer;
    usi_reducer_stats st;
    usi_reducer_get_stats(t->reducer, &st);
    usi_log(USI_LOG_INFO, "gradients: %zu floats in %d bucket(s) of up to %.3g MiB, all-reduced with %s over %d "
            "process(es)%s", t->blocks.n_trainable, (int)st.buckets, usi_config_float(t->cfg, "dist.bucket_mb"),
            o.transport, (int)t->world, o.overlap ? ", overlapping backward" : "");
    return NULL;
}

/* dist.sync_bn: the training graph's batch norms normalise with the
 * statistics of every rank's batch, summed over ranks on the gradients'
 * transport (PyTorch's SyncBatchNorm). One process's batch is the whole
 * batch already: plain batch norm, unless dist.backend names a transport,
 * which then runs the summing path on one process, as for the gradients. */
static usi_error *set_sync_bn(usi_trainer *t)
{
    if (!usi_config_bool(t->cfg, "dist.sync_bn")) return NULL;
    int forced = strcmp(usi_config_string(t->cfg, "dist.backend"), "auto") != 0;
    if (t->world < 2 && !forced) {
        usi_log(USI_LOG_INFO, "dist.sync_bn on one process: its batch-norm statistics are the whole batch's");
        return NULL;
    }
    const char *transport = transport_of(t);
    USI_TRY(usi_dist_collective_new(t->dev, transport, &t->coll));
    usi_graph_set_collective(t->gs, t->coll);
    usi_log(USI_LOG_INFO, "batch norm: statistics of the global batch (%d x %d images), summed with %s "
            "(dist.sync_bn)", (int)t->world, (int)t->batch, transport);
    return NULL;
}

/* Loaders for the simulated ranks 1..sim-1 (rank 0's is train_loader). */
static usi_error *sim_loaders(usi_trainer *t)
{
    if (t->sim < 2) return NULL;
    t->sim_loaders = calloc((size_t)t->sim, sizeof *t->sim_loaders);
    if (!t->sim_loaders) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    for (int32_t r = 1; r < t->sim; r++)
        USI_TRY(usi_setup_loader(t->cfg, t->train_ds, t->train_chain, 1, r, t->sim, &t->sim_loaders[r]));
    return NULL;
}

/* The input path of every loader, once the device and loaders exist. */
static usi_error *open_inputs(usi_trainer *t)
{
    t->inputs = calloc((size_t)t->sim, sizeof *t->inputs);
    if (!t->inputs) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    for (int32_t r = 0; r < t->sim; r++)
        USI_TRY(usi_input_new(r == 0 ? t->train_loader : t->sim_loaders[r], t->dev, &t->inputs[r]));
    USI_TRY(usi_input_new(t->val_loader, t->dev, &t->val_input));
    if (usi_input_staged(t->inputs[0]))
        usi_log(USI_LOG_INFO, "input: each batch is made and uploaded to %s on a thread of its own while the "
                "previous step runs%s", usi_device_name(t->dev),
                usi_input_raw(t->inputs[0]) ? ", as uint8 images that the device normalises" : "");
    return NULL;
}

usi_error *usi_trainer_new(const usi_config *c, const usi_registry *r, usi_trainer **out)
{
    *out = NULL;
    usi_trainer *t = calloc(1, sizeof *t);
    if (!t) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    t->lock_fd = -1;
    t->cfg = c;
    t->seed = (uint64_t)usi_config_int(c, "seed");
    t->batch = (int32_t)usi_config_int(c, "data.batch_size");
    t->side = (int32_t)usi_config_int(c, "data.img_size");
    t->best_top1 = -1;
    usi_data_norm(c, t->mean, t->std);
    t->progress_interval = usi_config_float(c, "progress_interval");
    t->metrics_every = usi_config_int(c, "metrics_every");
    usi_device_set_threads((int32_t)usi_config_int(c, "threads"));
    usi_error *e = set_ranks(t);
    if (!e) e = check_same_settings(t);
    /* Rank 0 writes every file of the run. A folder that exists may be
     * another run's: refuse before the set-up's work. One that does not is
     * made at the end, so a run that fails to start leaves nothing behind. */
    snprintf(t->out_dir, sizeof t->out_dir, "%s", usi_config_string(c, "output_dir"));
    struct stat st;
    if (!e && t->rank == 0 && stat(t->out_dir, &st) == 0 && S_ISDIR(st.st_mode)) e = lock_out_dir(t);
    if (!e) e = usi_setup_device(c, &t->dev);
    if (!e && usi_config_mixed_as_fp32(c) && usi_dist_rank() == 0)
        usi_log(USI_LOG_INFO, "precision \"mixed\" runs as fp32 on device %s (it has no bf16 path yet)",
                usi_device_name(t->dev));
    if (!e) e = usi_setup_datasets(c, &t->train_ds, &t->val_ds);
    if (!e) e = usi_error_prefix(usi_dataset_check_training(t->train_ds), "data.train: ");
    if (!e) {
        t->classes = (int32_t)usi_dataset_class_count(t->train_ds);
        e = usi_setup_backbone_params(c, t->classes, &t->bb_params);
    }
    if (!e) e = usi_setup_student_input(c, t->bb_params, &t->si);
    if (!e && t->si.chans == 1 && t->rank == 0)
        usi_log(USI_LOG_INFO, "backbone.in_chans = 1: the backbone reads the images' luma (0.299 R + 0.587 G + "
                "0.114 B), normalised with mean %g and std %g", t->si.mean[0], t->si.std[0]);
    if (!e) {
        t->bb = usi_config_backbone(c)->loaded->comp;
        e = usi_call_create(t->bb, t->bb_params, &t->bb_inst);
    }
    if (!e) e = usi_data_train_chain(c, &t->train_chain);
    if (!e) e = usi_data_eval_chain(c, r, &t->eval_chain);
    int32_t train_world = t->world * t->sim;
    if (!e) e = usi_setup_loader(c, t->train_ds, t->train_chain, 1, t->rank, train_world, &t->train_loader);
    if (!e) e = sim_loaders(t);
    if (!e) e = usi_setup_loader(c, t->val_ds, t->eval_chain, 0, t->rank, t->world, &t->val_loader);
    if (!e && usi_config_teacher(c)) {
        usi_params *tp = NULL;
        e = usi_setup_teacher_params(c, t->classes, &tp);
        if (!e)
            e = usi_teacher_open(usi_config_teacher(c)->loaded->comp, tp, t->dev, t->batch, t->classes, t->side,
                                 t->seed, &t->teacher);
        if (e) e = usi_error_prefix(e, "%s: ", usi_config_teacher(c)->loaded->path);
        t->teacher_params = tp;
    }
    if (!e) {
        e = build_train_graph(t);
        if (!e)
            e = usi_setup_eval_graph(t->dev, t->bb, t->bb_inst, &t->si, t->batch, t->side, t->classes, t->seed, &t->ge,
                                     &t->xe, &t->le);
        /* Errors of the network a plugin records name the component and its file. */
        if (e) e = usi_error_prefix(e, "backbone '%s' (%s): ", t->bb->name, usi_config_backbone(c)->loaded->path);
    }
    if (!e) {
        set_hyper(t);
        check_timm_network(t);
        e = alloc_state(t);
    }
    /* After the graphs: their planning sees the device's free memory, and
     * set_hyper has used the train loader on this thread. */
    if (!e) e = open_inputs(t);
    if (!e) e = set_reducer(t);
    if (!e) e = set_sync_bn(t);
    if (!e && t->rank == 0) e = usi_error_prefix(mkdirs(t->out_dir), "output_dir: ");
    /* metrics.jsonl opens when the run starts (usi_trainer_open_metrics):
     * a run that fails to start leaves none */
    if (!e && t->rank == 0 && access(t->out_dir, W_OK) != 0)
        e = usi_error_new(USI_ERR_IO, "cannot write in %s (output_dir): %s", t->out_dir, strerror(errno));
    if (!e && t->rank == 0 && t->lock_fd < 0) e = lock_out_dir(t);
    if (e) {
        usi_trainer_free(t);
        return e;
    }
    *out = t;
    return NULL;
}

/* A resumed run redoes the steps after its checkpoint: the lines an
 * interrupted run wrote for them (killed after its last save, or a resume
 * from an older checkpoint) go, so each step and evaluation is in the file
 * once, as the run that went on gives it. Lines without a step stay. */
static usi_error *drop_lines_after(const char *path, int64_t step)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL; /* none yet: the run starts it */
    usi_strbuf keep = {0};
    char *line = NULL;
    size_t cap = 0;
    int dropped = 0;
    while (getline(&line, &cap, f) > 0) {
        const char *at = strstr(line, "\"step\": ");
        if (at && strtoll(at + 8, NULL, 10) > step) dropped++;
        else usi_strbuf_addf(&keep, "%s", line);
    }
    free(line);
    fclose(f);
    usi_error *e = dropped ? usi_file_write_atomic(path, keep.data ? keep.data : "", keep.len) : NULL;
    usi_strbuf_free(&keep);
    return e;
}

usi_error *usi_trainer_open_metrics(usi_trainer *t)
{
    if (t->rank != 0 || t->metrics) return NULL;
    char path[2200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->out_dir);
    /* A resumed run goes on with its file; a new one starts it again, and
     * says so where an earlier run's lines were there. */
    struct stat st;
    if (!t->resumed && stat(path, &st) == 0 && st.st_size > 0)
        usi_log(USI_LOG_WARN, "%s already holds a run: this new run writes its metrics.jsonl and checkpoints "
                "over it (to continue that run instead: usi train ... --resume %s/last.safetensors)",
                t->out_dir, t->out_dir);
    if (t->resumed) USI_TRY(drop_lines_after(path, t->step));
    t->metrics = fopen(path, t->resumed ? "a" : "w");
    if (!t->metrics) return usi_error_new(USI_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return NULL;
}

void usi_trainer_free(usi_trainer *t)
{
    if (!t) return;
    if (t->lock_fd >= 0) close(t->lock_fd);
    /* Input threads stop before their loaders and device memory go. */
    for (int32_t r = 0; t->inputs && r < t->sim; r++) usi_input_free(t->inputs[r]);
    free(t->inputs);
    usi_input_free(t->val_input);
    usi_reducer_free(t->reducer);
    usi_dist_collective_free(t->coll);
    for (int32_t r = 1; t->sim_loaders && r < t->sim; r++) usi_loader_free(t->sim_loaders[r]);
    free(t->sim_loaders);
    usi_dbuf_free(t->sim_grads);
    usi_dbuf_free(t->sim_buffers);
    for (int s = 0; s < 2; s++) usi_dbuf_free(t->opt_state[s]);
    usi_dbuf_free(t->ema_params);
    usi_dbuf_free(t->ema_buffers);
    free(t->segs);
    free(t->logits_host);
    if (t->metrics) fclose(t->metrics);
    usi_graph_free(t->gs);
    usi_graph_free(t->ge);
    usi_teacher_free(t->teacher);
    if (t->bb_inst) usi_call_destroy(t->bb, t->bb_inst);
    usi_params_free(t->bb_params);
    usi_params_free(t->teacher_params);
    usi_loader_free(t->train_loader);
    usi_loader_free(t->val_loader);
    usi_augchain_free(t->train_chain);
    usi_augchain_free(t->eval_chain);
    usi_dataset_free(t->train_ds);
    usi_dataset_free(t->val_ds);
    free(t);
}

/* ---- keeping ranks in step ---- */

usi_error *usi_trainer_sync_buffers(usi_trainer *t)
{
    const usi_graph_blocks *b = &t->blocks;
    if (t->world < 2) return NULL;
    if (b->buffers) USI_TRY(usi_dist_bcast_dbuf(b->buffers, 0, usi_dbuf_bytes(b->buffers)));
    return b->n_f32_buffers ? usi_dist_bcast_dbuf(t->ema_buffers, 0, b->n_f32_buffers * sizeof(float)) : NULL;
}

/* Ranks that disagree on the shape of the run would wait for each other
 * forever (one ends its epoch early) or mix unlike gradients: compare with
 * rank 0 first. */
static usi_error *check_same_run(usi_trainer *t)
{
    int64_t mine[6] = {(int64_t)t->blocks.n_trainable, t->steps_per_epoch, t->epochs_total, t->batch,
                       (int64_t)usi_dataset_size(t->train_ds), (int64_t)usi_dataset_size(t->val_ds)};
    static const char *const what[6] = {"trainable parameters", "steps per epoch", "epochs", "images per batch",
                                        "training images", "validation images"};
    int64_t root[6];
    memcpy(root, mine, sizeof root);
    USI_TRY(usi_dist_bcast(root, sizeof root));
    for (int k = 0; k < 6; k++)
        if (mine[k] != root[k])
            return usi_error_new(USI_ERR_INVALID,
                                 "rank %d has %lld %s where rank 0 has %lld: every rank needs the same config, "
                                 "backbone and data (same data.train and data.val contents on every host)",
                                 (int)t->rank, (long long)mine[k], what[k], (long long)root[k]);
    return NULL;
}

usi_error *usi_trainer_sync_state(usi_trainer *t)
{
    const usi_graph_blocks *b = &t->blocks;
    if (t->world < 2) return NULL;
    USI_TRY(check_same_run(t));
    size_t pbytes = b->n_params * sizeof(float), tbytes = b->n_trainable * sizeof(float);
    if (pbytes) USI_TRY(usi_dist_bcast_dbuf(b->params, 0, pbytes));
    if (pbytes) USI_TRY(usi_dist_bcast_dbuf(t->ema_params, 0, pbytes));
    for (int s = 0; s < usi_optim_state_count(t->hp.kind) && tbytes; s++)
        USI_TRY(usi_dist_bcast_dbuf(t->opt_state[s], 0, tbytes));
    USI_TRY(usi_trainer_sync_buffers(t));
    double counters[4] = {(double)t->epoch, (double)t->batch_in_epoch, (double)t->step, t->best_top1};
    USI_TRY(usi_dist_bcast(counters, sizeof counters));
    t->epoch = (int64_t)counters[0];
    t->batch_in_epoch = (int64_t)counters[1];
    t->step = (int64_t)counters[2];
    t->best_top1 = counters[3];
    return NULL;
}
