/* Float batches made ahead, on a thread of their own.
 *
 * The loader's workers hand out uint8 batches; turning one into the float
 * batch a step trains on (normalisation, one-hot targets, the batch stages
 * such as Mixup/CutMix) takes a thread some milliseconds per batch. A
 * prefetcher does that for the next `ahead` batches while the caller trains
 * on the current one, into a ring of ahead+1 float slots it allocates with
 * the caller's allocator (pinned host memory for a GPU, so uploads run at
 * full speed). A `ready` hook runs on the prefetcher's thread once a batch
 * is made: a GPU trainer uploads it there, on a copy stream, while the
 * previous step computes.
 *
 *   usi_prefetch *p;   usi_prefetch_new(loader, &opts, &p);
 *   for each epoch:    usi_prefetch_start_epoch(p, epoch, 0);
 *                      while (usi_prefetch_next(p, &fb) == NULL && fb.batch.n > 0) train(fb);
 *
 * Batches are the loader's own, bit for bit and in the same order: their
 * random streams depend on (seed, epoch, batch), never on the thread. While
 * a prefetcher runs, only it may call the loader's next functions. */
#ifndef USI_DATA_PREFETCH_H
#define USI_DATA_PREFETCH_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

#include "data/loader.h"

typedef struct usi_prefetch_opts {
    int32_t ahead;           /* float batches made ahead, >= 1               */
    /* 1: raw batches (usi_loader_next_raw_into: uint8 images, one-hot
     * targets) for a device that normalises them; chains without batch
     * stages only. */
    int32_t raw;
    /* Memory of the float slots (64-byte aligned); NULL: malloc/free. */
    void *(*host_alloc)(void *ctx, size_t bytes);
    void (*host_free)(void *ctx, void *p, size_t bytes);
    /* Called on the prefetcher's thread with each batch of n > 0 before it
     * is handed out (NULL: none); an error is handed out in its place. */
    usi_error *(*ready)(void *ctx, int32_t slot, const usi_float_batch *fb);
    void *ctx;
} usi_prefetch_opts;

typedef struct usi_prefetch usi_prefetch;

/* l must outlive the prefetcher; the thread idles until an epoch starts. */
usi_error *usi_prefetch_new(usi_loader *l, const usi_prefetch_opts *opts, usi_prefetch **out);
void usi_prefetch_free(usi_prefetch *p);

/* Start (or restart) an epoch, passing over its first `skip` batches
 * (a resumed run) without making their floats. */
usi_error *usi_prefetch_start_epoch(usi_prefetch *p, int64_t epoch, int64_t skip);

/* The next float batch (out->slot says its ring slot); out->batch.n == 0
 * after the last. Valid until the next call. */
usi_error *usi_prefetch_next(usi_prefetch *p, usi_float_batch *out);

/* Ring slots: ahead + 1. */
int32_t usi_prefetch_slots(const usi_prefetch *p);

#endif
