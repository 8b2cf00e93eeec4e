/* The loader set up from the effective configuration (config/config.h):
 * the training chain is the config's augment list, the evaluation chain is
 * eval_resize_crop with data.img_size / data.crop_pct / data.interpolation. */
#ifndef USI_DATA_LOADER_CONFIG_H
#define USI_DATA_LOADER_CONFIG_H

#include "config/config.h"
#include "data/loader.h"

/* The config's augmentations in order, on copies of their options.
 * data.img_size is the one source of the output side: the `size` option of
 * every augmentation that has one is set to it. */
usi_error *usi_data_train_chain(const usi_config *c, usi_augchain **out);
/* The same rule applied to the config's own options (after resolve), so
 * that what it prints (`usi config show`) is what the chain will run. */
usi_error *usi_data_fill_config(usi_config *c);
/* eval_resize_crop found in r, configured from the data section. */
usi_error *usi_data_eval_chain(const usi_config *c, const usi_registry *r, usi_augchain **out);
/* batch_size, img_size, workers, prefetch, seed; train: shuffle, drop_last
 * and data.repeated_aug; eval: dataset order, every sample once. */
usi_loader_opts usi_data_loader_opts(const usi_config *c, int train);
/* data.mean and data.std (missing entries keep ImageNet's). */
void usi_data_norm(const usi_config *c, float mean[3], float std[3]);
/* The same as configured, in double (one value given: every channel's). */
void usi_data_norm_f64(const usi_config *c, double mean[3], double std[3]);

#endif
