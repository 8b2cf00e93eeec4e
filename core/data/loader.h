/* The data loader the training loop uses.
 *
 *   usi_dataset *ds;   usi_dataset_open("data/train", &ds);
 *   usi_augchain *ch;  usi_augchain_new(&ch); usi_augchain_add(ch, comp, params) ...
 *                      (or usi_augchain_from_config, data/loader_config.h)
 *   usi_loader *l;     usi_loader_new(ds, ch, &opts, &l);
 *   for each epoch:    usi_loader_start_epoch(l, epoch);
 *                      while (usi_loader_next_float(l, &fb) == NULL && fb.batch.n > 0) train(fb);
 *                      usi_loader_epoch_stats(l, &st);
 *
 * Determinism: the epoch's order is a function of (seed, epoch), and each
 * sample's augmentations draw from a stream seeded with (seed, epoch,
 * position in the epoch), so batches are the same for any number of
 * threads. Batch stages (Mixup/CutMix) draw from (seed, epoch, batch index).
 *
 * Bad samples (unreadable, empty, corrupt, not an image, an augment error)
 * are dropped from their batch, which then holds fewer than batch_size
 * samples; labels always travel with their images. With replace_bad (what
 * training uses) a bad sample's place goes instead to the next readable file
 * of the dataset, in dataset order, with that file's label, as timm's
 * datasets do: batches stay whole. Each bad file is logged once with its
 * path and reason and counted in the epoch's stats. */
#ifndef USI_DATA_LOADER_H
#define USI_DATA_LOADER_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

#include "data/augchain.h"
#include "data/imagefolder.h"

typedef struct usi_loader_opts {
    int32_t batch_size;      /* samples per batch (per rank)                 */
    int32_t img_size;        /* the per-sample stages must produce this side */
    int32_t workers;         /* loader threads, >= 1                         */
    int32_t prefetch;        /* batches prepared ahead of the consumer, >= 1 */
    int32_t repeats;         /* repeated augmentation: copies per image, >= 1 */
    int32_t shuffle;         /* 0: dataset order (evaluation)                */
    int32_t drop_last;       /* drop a last, partial batch                   */
    uint64_t seed;
    int64_t epoch_samples;   /* > 0: keep this many positions per epoch (timm
                                RASampler keeps about the dataset size)      */
    int32_t rank, world;     /* data parallel shard: global positions rank,
                                rank+world, ... of one order for all ranks */
    int32_t replace_bad;     /* a bad sample's place goes to the next of up to
                                USI_LOADER_REPLACE_TRIES files after it      */
} usi_loader_opts;

enum { USI_LOADER_REPLACE_TRIES = 50 };

/* Defaults: batch 128, img 224, 2 workers, prefetch 2, repeats 1, shuffle,
 * drop_last, seed 0, one rank, bad samples dropped. */
usi_loader_opts usi_loader_opts_default(void);

/* A batch of uint8 images, [n, h, w, c] HWC, valid until the next call on
 * the loader. */
typedef struct usi_u8_batch {
    int32_t n, h, w, c;
    const uint8_t *pixels;
    const int32_t *labels;   /* [n] class index                              */
    const int64_t *indices;  /* [n] dataset index of each sample             */
    int64_t batch_index;     /* within the epoch                             */
    int32_t skipped;         /* samples dropped from this batch (and from any
                                wholly bad batches passed over before it)    */
} usi_u8_batch;

/* A float batch: usi_batch (NCHW normalised, soft targets after the batch
 * stages) plus the hard labels; valid until the next call on the loader. */
typedef struct usi_float_batch {
    usi_batch batch;
    const int32_t *labels;
    int64_t batch_index;
    int32_t skipped;
    int32_t slot;            /* usi_prefetch's ring slot holding it, else -1 */
    /* Raw batches (usi_loader_next_raw_into): the uint8 [n, h, w, 3] images,
     * not yet normalised; batch.images is NULL. */
    const uint8_t *pixels;
} usi_float_batch;

typedef struct usi_epoch_stats {
    int64_t epoch;
    int64_t batches;         /* handed out so far this epoch                 */
    int64_t samples;         /* delivered                                    */
    int64_t skipped;         /* dropped: bad file or augment error           */
    int64_t replaced;        /* bad samples whose place went to another file */
    int64_t bad_files;       /* distinct files that failed (ever)            */
} usi_epoch_stats;

typedef struct usi_loader usi_loader;

/* ds and ch must outlive the loader; threads start here and idle until an
 * epoch starts. mean/std for the float path: set with usi_loader_set_norm. */
usi_error *usi_loader_new(const usi_dataset *ds, const usi_augchain *ch,
                          const usi_loader_opts *opts, usi_loader **out);
void usi_loader_free(usi_loader *l);

/* Normalisation of the float path, on 0..1 pixels (default ImageNet's). */
void usi_loader_set_norm(usi_loader *l, const float mean[3], const float std[3]);

/* Start (or restart) an epoch; abandons what is left of the current one. */
usi_error *usi_loader_start_epoch(usi_loader *l, int64_t epoch);
/* Batches this epoch will hand out (before skips). */
int64_t usi_loader_batch_count(const usi_loader *l);

/* The next batch; out->n == 0 after the last one (a batch in which every
 * sample failed is passed over, never handed out empty). */
usi_error *usi_loader_next(usi_loader *l, usi_u8_batch *out);
/* Pass over the next n batches (a resumed run's trained ones) without
 * making their floats; stops early at the end of the epoch. */
usi_error *usi_loader_skip(usi_loader *l, int64_t n);
/* The next batch as floats with one-hot targets, after the batch stages. */
usi_error *usi_loader_next_float(usi_loader *l, usi_float_batch *out);
/* The same into caller buffers of usi_loader_float_bytes (images; targets
 * in *target_bytes), valid as long as they are. */
usi_error *usi_loader_next_float_into(usi_loader *l, usi_float_batch *out, float *images, float *targets);
size_t usi_loader_float_bytes(const usi_loader *l, size_t *target_bytes);
/* A raw batch: the uint8 images copied into pixels (usi_loader_u8_bytes)
 * and the one-hot targets, for a device that normalises them itself. Only
 * for chains without batch stages (they work on floats). */
usi_error *usi_loader_next_raw_into(usi_loader *l, usi_float_batch *out, uint8_t *pixels, float *targets);
size_t usi_loader_u8_bytes(const usi_loader *l);
int32_t usi_loader_has_batch_stages(const usi_loader *l);
/* The float path's normalisation (usi_loader_set_norm; a std of 0 is 1). */
void usi_loader_norm(const usi_loader *l, float mean[3], float std[3]);
const usi_loader_opts *usi_loader_opts_of(const usi_loader *l);

void usi_loader_epoch_stats(const usi_loader *l, usi_epoch_stats *out);
/* One log line: "epoch E: N samples in B batches, S skipped (F bad files)",
 * epochs counted from 1 as everywhere people read them. */
void usi_loader_log_summary(const usi_loader *l);

/* uint8 HWC -> float NCHW, (x/255 - mean) / std. */
void usi_u8_to_float_nchw(const usi_u8_batch *b, const float mean[3], const float std[3],
                          float *out);

#endif
