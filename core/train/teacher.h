/* A teacher at training time: frozen, eval mode, fed the student's batch
 * converted to its own normalisation and input size. */
#ifndef USI_TRAIN_TEACHER_H
#define USI_TRAIN_TEACHER_H

#include <stdint.h>
#include <usi/plugin.h>

#include "config/config.h"

typedef struct usi_teacher_rt usi_teacher_rt;

/* Make the instance, read its spec, build and compile its graph for `batch`
 * images and load its weights. The spec's class count must equal
 * num_classes. */
usi_error *usi_teacher_open(const usi_component *comp, const usi_params *params, int32_t batch,
                            int32_t num_classes, int32_t student_size, uint64_t seed, usi_teacher_rt **out);
void usi_teacher_free(usi_teacher_rt *t);
const usi_teacher_spec *usi_teacher_get_spec(const usi_teacher_rt *t);

/* images [n, 3, h, w] in the student's normalisation (mean_s, std_s) ->
 * logits [n, num_classes]. n <= batch. Exactly
 *   x_t = (x_s * std_s + mean_s - mean_t) / std_t,
 * then a bilinear resize when the sides differ. */
usi_error *usi_teacher_logits(usi_teacher_rt *t, const float *images, int32_t n, int32_t h, int32_t w,
                              const float mean_s[3], const float std_s[3], float *logits);

/* Bilinear resize of [c, h, w] planes to [c, oh, ow] (half-pixel centres,
 * as PyTorch's align_corners=False). */
void usi_resize_bilinear(const float *in, int32_t c, int32_t h, int32_t w, float *out, int32_t oh,
                         int32_t ow);

#endif
