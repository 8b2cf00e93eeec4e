/* Backbone options stored with weights, and whether a file is timm's network
 * of its name (core/train/options.c). */
#ifndef USI_TRAIN_OPTIONS_H
#define USI_TRAIN_OPTIONS_H

#include <stdint.h>
#include <usi/plugin.h>

#include "util/strutil.h"

/* 1 when the backbone built with p on side x side inputs is the network its
 * schema defaults give (timm's model of that name), the class count and
 * drop rates aside; otherwise 0, with the options that differ ("img_size =
 * 28, stem = \"small\"") added to diff when it is not NULL. */
int usi_backbone_is_timm_default(const usi_component *bb, const usi_params *p, int64_t side, usi_strbuf *diff);

/* Take into p every option that `text` (a file's "backbone_options") sets
 * and p's owner did not; the names taken are appended to taken. */
usi_error *usi_backbone_options_from_file(usi_params *p, const char *text, const char *path, usi_strbuf *taken);

#endif
