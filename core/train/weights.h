/* Moving a graph's parameters and buffers to and from safetensors files,
 * by their timm names. */
#ifndef USI_TRAIN_WEIGHTS_H
#define USI_TRAIN_WEIGHTS_H

#include <usi/plugin.h>

#include "train/safetensors.h"

/* Copy every parameter and buffer of g from f, where each is stored as
 * prefix + name. A missing tensor or a wrong dtype or shape is refused,
 * naming the tensor. With strict, a tensor in f under prefix that g lacks is
 * refused too. Nothing is changed when any check fails. */
usi_error *usi_weights_load(usi_graph *g, const usi_st_file *f, const char *prefix,
                            int strict, const char *label);
/* Add every parameter and buffer of g to w as prefix + name (host copies
 * owned by w). */
usi_error *usi_weights_add(usi_st_writer *w, const usi_graph *g, const char *prefix);
#endif
