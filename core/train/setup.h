/* What a training or evaluation run is built from. */
#ifndef USI_TRAIN_SETUP_H
#define USI_TRAIN_SETUP_H

#include <usi/plugin.h>

#include "backend/device.h"
#include "config/config.h"
#include "data/loader.h"
#include "plugin/host.h"

usi_error *usi_setup_datasets(const usi_config *c, usi_dataset **train, usi_dataset **val);
/* The backbone's options with num_classes and img_size from the data when
 * the config leaves them unset. */
usi_error *usi_setup_backbone_params(const usi_config *c, int32_t classes, usi_params **out);
/* The teacher's options with num_classes (must match) and img_size (the
 * student's side) from the data when the config leaves them unset. */
usi_error *usi_setup_teacher_params(const usi_config *c, int32_t classes, usi_params **out);
/* Write into the config's own options what a run fills in when it starts:
 * each augmentation's size (data.img_size), the backbone's and teacher's
 * img_size when unset and num_classes from data.train's class folders when
 * that folder is readable (a contradicting value is the run's error). Then
 * `usi config show` prints what runs. */
usi_error *usi_setup_fill_config(usi_config *c);
/* train: shuffled, repeated augmentation, last partial batch dropped;
 * else dataset order, every sample. Rank `rank` of `world` takes its shard
 * of the one global order (world 1: everything). */
usi_error *usi_setup_loader(const usi_config *c, const usi_dataset *ds, const usi_augchain *ch, int train,
                            int32_t rank, int32_t world, usi_loader **out);
/* What the backbone reads of the loader's images. The loader gives RGB
 * ([N, 3, H, W], each channel normalised with data.mean/std; grey files as
 * three equal channels). A backbone of in_chans 1 reads their luma, as
 * Pillow's convert("L") weighs it (ITU-R 601-2: 0.299 R + 0.587 G +
 * 0.114 B), normalised with the same weighing of data.mean and data.std (one
 * value each where the config gives one): one weighted sum over the
 * channels, at the head of the graph. */
typedef struct usi_student_input {
    int32_t chans;   /* 3: the images as they are; 1: their luma            */
    float weight[3]; /* chans 1: grey = sum over c of weight[c] * image[c]   */
    double mean[3], std[3]; /* data.mean and data.std per channel, or (chans 1)
                               the grey channel's in each */
} usi_student_input;
/* From the backbone's in_chans (3 when it has none); another count than 1
 * or 3 is refused. */
usi_error *usi_setup_student_input(const usi_config *c, const usi_params *bb, usi_student_input *out);
/* The grey input of images normalised with per-channel mean and std. */
void usi_student_input_grey(const double mean[3], const double std[3], usi_student_input *out);
/* The backbone's input node from the images' (the images themselves for 3
 * channels). */
usi_tensor *usi_setup_student_node(usi_graph *g, usi_tensor *images, const usi_student_input *si);
/* An inference graph of the backbone, compiled, logits marked as output;
 * *x is the images' input node. */
usi_error *usi_setup_eval_graph(usi_device *dev, const usi_component *bb, void *inst, const usi_student_input *si,
                                int32_t batch, int32_t side, int32_t classes, uint64_t seed, usi_graph **g,
                                usi_tensor **x, usi_tensor **logits);
/* The run's device from the config key `device`; in a distributed run
 * "cuda" means the GPU of this process's local rank (cuda:N names one). */
usi_error *usi_setup_device(const usi_config *c, usi_device **out);

/* Add the number of rows whose label is the top-1 / within the top-5. */
void usi_topk_count(const float *logits, const int32_t *labels, int32_t n, int32_t classes, int64_t *top1,
                    int64_t *top5);

#endif
