/* usi predict's parts: arguments, running the images, printing. */
#ifndef USI_CLI_PREDICT_H
#define USI_CLI_PREDICT_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "plugin/registry.h"
#include "train/safetensors.h"

typedef struct usi_predict_args {
    const char *config, *weights, *backbone, *logits;
    const char **images;
    size_t n_images;
    const char **plugin_dirs, **sets;
    size_t n_plugin_dirs, n_sets;
    int64_t topk, img_size;
    int json, ema;
} usi_predict_args;

/* 0, -1 for --help, or USI_EXIT_USAGE after printing why. */
int usi_predict_parse(int argc, char **argv, usi_predict_args *a);
void usi_predict_args_free(usi_predict_args *a);

typedef struct usi_predict_run {
    usi_params *params;      /* the backbone's options */
    int64_t side;            /* input side */
    int32_t classes;
    float *logits;           /* [n_images, classes]; rows of failed images unused */
    char **names;            /* classes entries */
    size_t n_images;
    char **errors;           /* [n_images]: why image i was not classified, NULL when it was */
    size_t n_failed;
} usi_predict_run;

/* Decode, transform and classify every image (the config holds the backbone,
 * the input size, crop and normalisation). An image that cannot be read,
 * decoded or transformed is logged, noted in run->errors and skipped: the
 * others are still classified. The error returned is one that stops them all. */
usi_error *usi_predict_images(const usi_config *c, const usi_registry *r, const usi_st_file *f,
                              const usi_predict_args *a, usi_predict_run *run);
/* Top-k of each classified image on stdout (or one JSON array, where a
 * failed image is {"image", "error"}), and --logits of the classified ones. */
usi_error *usi_predict_print(const usi_predict_args *a, const usi_predict_run *run);
void usi_predict_run_free(usi_predict_run *run);

#endif
