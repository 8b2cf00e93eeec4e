/* The effective configuration: the USI recipe as defaults, merged with a
 * libconfig file, merged with --set overrides; then the backbone, teacher and
 * augmentation components it names are selected from the plugin registry and
 * their options validated against the schemas they publish.
 *
 * Keys are dotted paths: "data.batch_size", "optimizer.lr", "backbone.name",
 * "backbone.num_classes" (a plugin option), "augment.hflip.p" (the option of
 * the augmentation named hflip). Errors name the file and line (or the --set
 * argument), the key, and what would be valid. */
#ifndef USI_CORE_CONFIG_H
#define USI_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

#include "plugin/registry.h"
#include "util/strutil.h"

typedef struct usi_config usi_config;

/* The defaults: the USI recipe (DESIGN.md section 6). */
usi_config *usi_config_new(void);
void usi_config_free(usi_config *c);

/* Merge a libconfig file over what is there. */
usi_error *usi_config_load(usi_config *c, const char *path);
/* Merge one "key=value" (value in libconfig syntax; a bare word is a string). */
usi_error *usi_config_set(usi_config *c, const char *assignment);
/* The same, with errors starting with origin (where the setting came from)
 * instead of "--set '...'". */
usi_error *usi_config_set_from(usi_config *c, const char *assignment, const char *origin);
/* Select the named components in r and validate their options. Call after
 * every load/set and before reading components. */
usi_error *usi_config_resolve(usi_config *c, const usi_registry *r);

/* The folders named by plugin_path (valid after load). */
/* 1 when resolve turned precision "mixed" into "fp32" because the device
 * has no bf16 path (a run says so once). */
int usi_config_mixed_as_fp32(const usi_config *c);
size_t usi_config_plugin_path_count(const usi_config *c);
const char *usi_config_plugin_path(const usi_config *c, size_t i);

/* Core settings by dotted key. The key must exist in the core schema (a
 * programming error otherwise: the getters then return 0 / "" and log). */
int64_t usi_config_int(const usi_config *c, const char *key);
double usi_config_float(const usi_config *c, const char *key);
int usi_config_bool(const usi_config *c, const char *key);
const char *usi_config_string(const usi_config *c, const char *key);
/* Writes up to cap values; returns the list's length. */
size_t usi_config_float_list(const usi_config *c, const char *key, double *out,
                             size_t cap);

/* 1 when a file or --set gave key a value (not the recipe's default);
 * "backbone.name" / "teacher.name": the component is named. */
int usi_config_is_set(const usi_config *c, const char *key);
/* The backbone's name as set ("" when none), before resolve too. */
const char *usi_config_backbone_name(const usi_config *c);

/* Selected components (valid after resolve). The teacher is NULL when the
 * config names none. */
typedef struct usi_selected {
    const usi_loaded *loaded;
    usi_params *params;
} usi_selected;
const usi_selected *usi_config_backbone(const usi_config *c);
const usi_selected *usi_config_teacher(const usi_config *c);
size_t usi_config_augment_count(const usi_config *c);
const usi_selected *usi_config_augment(const usi_config *c, size_t i);

/* Apply options written as libconfig text ("num_classes = 10; act = \"gelu\";"). */
usi_error *usi_params_from_text(usi_params *p, const char *text, const char *origin);
/* Apply one "option=value" as --set does (libconfig syntax; a bare word is a
 * string); errors start with origin. */
usi_error *usi_params_assign(usi_params *p, const char *assignment, const char *origin);

/* The whole effective configuration in libconfig syntax; loading the text
 * back gives the same values. */
void usi_config_write(const usi_config *c, usi_strbuf *out);
/* The settings two such texts give differently (keys in `ignore`, a NULL-
 * ended list, left out), as "key = now (was before)" joined by "; " into
 * out, at most `most` of them; returns how many differ (-1: out of
 * memory). */
int32_t usi_config_text_diff(const char *was, const char *now, const char *const *ignore, usi_strbuf *out,
                             int32_t most);
/* One setting of such a text ("img_size" in a weights file's
 * backbone_options), as written; NULL when absent. Free it. */
char *usi_config_text_value(const char *text, const char *key);

#endif
