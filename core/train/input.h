/* One loader's input to a graph. On a device the host cannot write
 * directly (one with stages, backend/device.h), its batches are made ahead
 * on a thread (data/prefetch.h) in host memory uploads read fastest and
 * uploaded on that thread into a stage while the previous step computes; a
 * step then moves them into place on the device. On the cpu device the
 * caller's thread makes each batch when it asks. Without batch stages (Mixup/CutMix)
 * the uint8 images travel and the device normalises them.
 *
 *   usi_input_start_epoch(in, epoch, skip);
 *   while (usi_input_next(in, &fb) == NULL && fb.batch.n > 0) {
 *       usi_input_write(in, &fb, images, targets);  ... step ...
 *   } */
#ifndef USI_TRAIN_INPUT_H
#define USI_TRAIN_INPUT_H

#include "backend/device.h"
#include "data/loader.h"
#include "graph/graph.h"

typedef struct usi_input usi_input;

/* l must outlive the input. */
usi_error *usi_input_new(usi_loader *l, usi_device *dev, usi_input **out);
void usi_input_free(usi_input *in);
usi_error *usi_input_start_epoch(usi_input *in, int64_t epoch, int64_t skip);
/* The next batch (n == 0 after the last), valid until the next call. */
usi_error *usi_input_next(usi_input *in, usi_float_batch *out);
/* The first fb->batch.n images and targets of the tensors = fb's, from the
 * stage where there is one; targets NULL: images only (evaluation). */
usi_error *usi_input_write(usi_input *in, const usi_float_batch *fb, usi_tensor *images, usi_tensor *targets);
/* 1 when batches reach the device through a stage; 1 when as uint8, which
 * the device normalises (a stage, and no batch stages in the chain). */
int32_t usi_input_staged(const usi_input *in);
int32_t usi_input_raw(const usi_input *in);

#endif
