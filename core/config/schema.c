#include "config/schema.h"

#include <math.h>
#include <string.h>

/* Entries with no range use min 1, max 0 (the range is checked when min <= max). */
#define INT(n, def, lo, hi, doc) \
    {sizeof(usi_param_desc), n, USI_PARAM_INT, 0, doc, def, 0, NULL, lo, hi, NULL}
#define FLT(n, def, lo, hi, doc) \
    {sizeof(usi_param_desc), n, USI_PARAM_FLOAT, 0, doc, 0, def, NULL, lo, hi, NULL}
#define BOOL(n, def, doc) \
    {sizeof(usi_param_desc), n, USI_PARAM_BOOL, 0, doc, def, 0, NULL, 1, 0, NULL}
#define STR(n, def, choices, doc) \
    {sizeof(usi_param_desc), n, USI_PARAM_STRING, 0, doc, 0, 0, def, 1, 0, choices}
#define LIST(n, def, lo, hi, doc) \
    {sizeof(usi_param_desc), n, USI_PARAM_FLOAT_LIST, 0, doc, 0, 0, def, lo, hi, NULL}
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define SECTION(var, label, table)                                         \
    static const usi_component var = {sizeof(usi_component), 0, 0, label, "", "", \
                                      table, COUNT(table), NULL, NULL, NULL}

static const usi_param_desc top[] = {
    INT("seed", 0, 0, 4294967295.0, "seed of every random stream (data order, augmentation, init)"),
    STR("output_dir", "runs/usi", NULL, "folder for checkpoints, metrics and plots"),
    STR("device", "cpu", NULL, "where every graph of the run lives: cpu, cuda (= cuda:0), cuda:N; cpu-guarded for tests"),
    STR("precision", "mixed", "fp32|mixed",
        "mixed: bf16 compute with fp32 master weights where the device has it; fp32 elsewhere (config show says)"),
    INT("threads", 0, 0, 1024, "compute threads; 0 = one per core"),
    FLT("progress_interval", 10.0, 0, 86400,
        "seconds between progress lines when stderr is not a terminal (logs); a terminal redraws one line"),
    INT("metrics_every", 10, 1, 1000000, "write the training loss to metrics.jsonl every this many steps"),
};
SECTION(top_schema, "", top);

static const usi_param_desc data[] = {
    STR("train", "", NULL, "training ImageFolder: <train>/<class>/<image> (.jpg .png .bmp .ppm .pgm .tif .webp)"),
    STR("val", "", NULL, "validation ImageFolder, same classes as train"),
    INT("img_size", 224, 8, 4096, "training and evaluation input side"),
    LIST("mean", "0.485, 0.456, 0.406", -10, 10, "per-channel mean of 0..1 pixels (ImageNet)"),
    LIST("std", "0.229, 0.224, 0.225", 1e-6, 100, "per-channel std of 0..1 pixels (ImageNet)"),
    FLT("crop_pct", 0.95, 0.05, 1.0, "eval: resize to img_size / crop_pct, then centre crop"),
    STR("interpolation", "bicubic", "nearest|bilinear|bicubic", "resampling for resize and crop"),
    INT("batch_size", 128, 1, 65536, "images per device per step (USI: 128 x 8 GPUs)"),
    INT("workers", 4, 0, 256, "loader threads; 0 = load in the main thread"),
    INT("prefetch", 4, 1, 256, "batches prepared ahead of the training loop"),
    INT("repeated_aug", 3, 1, 16, "each image is seen this many times per epoch, each differently augmented"),
};
SECTION(data_schema, "data", data);

static const usi_param_desc optimizer[] = {
    STR("name", "adamw", "adamw|sgd|lamb", "optimizer"),
    FLT("lr", 2e-3, 0, 100, "learning rate for a global batch of lr_batch; scaled linearly with the real batch"),
    INT("lr_batch", 1024, 1, 1 << 24, "the global batch size lr is given for"),
    FLT("weight_decay", 2e-2, 0, 10, "decoupled weight decay; never applied to biases, 1-D parameters, or what "
        "timm's no_weight_decay() lists (position tables, class tokens, LeViT's attention biases)"),
    /* A decay of 1 never lets a gradient in (the bias correction divides
     * by 1 - beta^t = 0), and eps = 0 makes 0/0 of a parameter whose
     * gradient is zero: both give NaN at the first step. */
    FLT("beta1", 0.9, 0, 0.999999, "adamw/lamb first-moment decay"),
    FLT("beta2", 0.999, 0, 0.999999, "adamw/lamb second-moment decay"),
    FLT("eps", 1e-8, 1e-12, 1, "adamw/lamb denominator epsilon"),
    FLT("momentum", 0.9, 0, 1, "sgd momentum"),
    BOOL("nesterov", 1, "sgd: Nesterov momentum"),
    FLT("clip_grad", 0.0, 0, 1e9, "clip the global gradient norm to this; 0 = off"),
};
SECTION(optimizer_schema, "optimizer", optimizer);

static const usi_param_desc schedule[] = {
    STR("name", "cosine", "cosine|constant", "learning-rate schedule, stepped every iteration"),
    INT("epochs", 300, 1, 100000, "training epochs"),
    INT("warmup_epochs", 5, 0, 100000, "linear warm-up from warmup_lr"),
    FLT("warmup_lr", 1e-4, 0, 100, "learning rate at the first step"),
    FLT("min_lr", 1e-6, 0, 100, "floor of the cosine"),
    INT("cooldown_epochs", 10, 0, 100000, "epochs at min_lr after the cosine"),
};
SECTION(schedule_schema, "schedule", schedule);

static const usi_param_desc ema[] = {
    BOOL("enabled", 1, "keep an exponential moving average of the weights"),
    FLT("decay", 0.99996, 0, 1, "per-step decay"),
    BOOL("warmup", 1, "decay rises towards its target, so short runs get a useful average"),
};
SECTION(ema_schema, "ema", ema);

static const usi_param_desc loss[] = {
    FLT("kd_alpha", 5.0, 0, 1e6, "weight of the distillation term"),
    FLT("kd_temperature", 1.0, 1e-3, 1e3, "softmax temperature of the distillation term"),
    BOOL("kd_only", 0, "train on the teacher's outputs alone, without the labels"),
    FLT("label_smoothing", 0.0, 0, 1, "label smoothing of the hard-label term: its targets (one-hot, or Mixup/"
        "CutMix's mixture, which has a smoothing of its own) become (1 - eps) t + eps / classes"),
};
SECTION(loss_schema, "loss", loss);

static const usi_param_desc eval[] = {
    INT("every_epochs", 1, 1, 100000, "evaluate raw and EMA weights every this many epochs"),
    BOOL("ema", 1, "evaluate the EMA weights too and keep the better"),
};
SECTION(eval_schema, "eval", eval);

static const usi_param_desc checkpoint[] = {
    INT("every_epochs", 1, 1, 100000, "write a checkpoint every this many epochs"),
    STR("resume", "", NULL, "checkpoint file to continue from, as usi train --resume FILE (which wins)"),
};
SECTION(checkpoint_schema, "checkpoint", checkpoint);

static const usi_param_desc dist[] = {
    STR("backend", "auto", "auto|mpi|nccl",
        "gradient all-reduce: auto = NCCL on cuda devices, MPI on CPUs (only when run by mpirun with N > 1); "
        "mpi or nccl use it even on one process"),
    FLT("bucket_mb", 25.0, 0.001, 65536, "gradient bucket size in MiB (as PyTorch DDP's bucket_cap_mb)"),
    BOOL("overlap", 1, "reduce each bucket as soon as backward has finished it, while backward goes on"),
    BOOL("sync_bn", 0, "batch-norm statistics over all ranks (PyTorch's SyncBatchNorm): normalise with the "
         "global batch's mean and variance and sum the input gradient's terms over ranks; off: statistics per "
         "rank, as PyTorch DDP's default"),
    INT("simulate_ranks", 1, 1, 64,
        "one process plays this many ranks in turn (each its own shard, batch and batch-norm statistics) and "
        "averages their gradients: what mpirun -np N computes, for checking a distributed run"),
};
SECTION(dist_schema, "dist", dist);

static const usi_section sections[] = {
    {"", "general", &top_schema},
    {"data", "dataset and loader", &data_schema},
    {"optimizer", "optimizer", &optimizer_schema},
    {"schedule", "learning-rate schedule", &schedule_schema},
    {"ema", "weight averaging", &ema_schema},
    {"loss", "loss and distillation", &loss_schema},
    {"eval", "evaluation", &eval_schema},
    {"checkpoint", "checkpoints", &checkpoint_schema},
    {"dist", "distributed training (mpirun -np N usi train ...)", &dist_schema},
};

size_t usi_section_count(void) { return COUNT(sections); }
const usi_section *usi_section_at(size_t i) { return i < COUNT(sections) ? &sections[i] : NULL; }
const usi_section *usi_section_find(const char *name)
{
    for (size_t i = 0; i < COUNT(sections); i++)
        if (strcmp(sections[i].name, name) == 0) return &sections[i];
    return NULL;
}
