/* A teacher at training time: frozen, eval mode, fed the student's batch
 * converted to its own normalisation and input size. */
#ifndef USI_TRAIN_TEACHER_H
#define USI_TRAIN_TEACHER_H

#include <stdint.h>
#include <usi/plugin.h>

#include "backend/device.h"
#include "config/config.h"

typedef struct usi_teacher_rt usi_teacher_rt;

/* Make the instance, read its spec, build and compile its graph for `batch`
 * images and load its weights. The spec's class count must equal
 * num_classes. */
usi_error *usi_teacher_open(const usi_component *comp, const usi_params *params, usi_device *dev, int32_t batch,
                            int32_t num_classes, int32_t student_size, uint64_t seed, usi_teacher_rt **out);
void usi_teacher_free(usi_teacher_rt *t);
const usi_teacher_spec *usi_teacher_get_spec(const usi_teacher_rt *t);

/* Run the teacher on the first n images of `images` (a float [batch, 3, h, w]
 * tensor of a graph on the teacher's device, in the student's normalisation
 * mean_s, std_s). The input is converted on the device, exactly
 *   x_t = (x_s * std_s + mean_s - mean_t) / std_t,
 * then resized with the teacher's declared interpolation (PyTorch's
 * F.interpolate) when the sides differ. n <= batch. */
usi_error *usi_teacher_forward(usi_teacher_rt *t, const usi_tensor *images, int32_t n, const float mean_s[3],
                               const float std_s[3]);
/* The last forward's logits [n, num_classes] into the first rows of dst (a
 * tensor on the same device), or into host memory. */
usi_error *usi_teacher_logits_to(usi_teacher_rt *t, usi_tensor *dst);
usi_error *usi_teacher_read_logits(usi_teacher_rt *t, float *logits);
#endif
