/* An ordered list of augmentation instances: per-sample stages run in loader
 * threads on uint8 images, batch stages run on the float batch. */
#ifndef USI_DATA_AUGCHAIN_H
#define USI_DATA_AUGCHAIN_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

typedef struct usi_augchain usi_augchain;

usi_error *usi_augchain_new(usi_augchain **out);
void usi_augchain_free(usi_augchain *ch);

/* Make an instance of an augment component with validated options and
 * append it (in the stage its ops declare). */
usi_error *usi_augchain_add(usi_augchain *ch, const usi_component *comp,
                            const usi_params *params);

/* The same, and the chain frees params with itself (for options the caller
 * built, e.g. the evaluation transform's). */
usi_error *usi_augchain_add_owned(usi_augchain *ch, const usi_component *comp,
                                  usi_params *params);

size_t usi_augchain_sample_count(const usi_augchain *ch);
/* The name of the last per-sample stage, or NULL when there is none. */
const char *usi_augchain_last_sample_name(const usi_augchain *ch);
size_t usi_augchain_batch_count(const usi_augchain *ch);

/* The largest JPEG DCT reduction the first stage allows: decoding may shrink
 * the image as long as its shorter side stays >= this (0 = decode in full).
 * Known from random_resized_crop (size / sqrt(min scale)); evaluation
 * decodes in full, so its pixels are PIL's. */
int32_t usi_augchain_decode_min_side(const usi_augchain *ch);

/* Per-thread scratch images for the per-sample stages. */
typedef struct usi_aug_scratch {
    usi_image img[2];
} usi_aug_scratch;
void usi_aug_scratch_free(usi_aug_scratch *s);

/* Run every per-sample stage on *img in order; on return *result points to
 * the final image (img itself or one of the scratch images). */
usi_error *usi_augchain_run_sample(const usi_augchain *ch, const usi_image *img,
                                   usi_aug_scratch *s, const usi_image **result,
                                   usi_rng *rng);

/* Run every batch stage in order. */
usi_error *usi_augchain_run_batch(const usi_augchain *ch, usi_batch *b, usi_rng *rng);

#endif
