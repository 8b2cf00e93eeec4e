/* A component's options: its schema's defaults, then values from the config,
 * each checked for name, type, range and choices. The host API's param_*
 * services read from here. */
#ifndef USI_CORE_PARAMS_H
#define USI_CORE_PARAMS_H

#include <stdio.h>
#include <usi/plugin.h>

#include "util/strutil.h"

/* The i-th entry of a component's schema (the array's stride is the first
 * entry's struct_size). */
const usi_param_desc *usi_component_param(const usi_component *c, size_t i);
/* Check a schema: names, types, defaults in range and in choices, no twins. */
usi_error *usi_schema_check(const usi_component *c);
const char *usi_param_type_name(int32_t type);
/* 1 when a value of this option must lie in [min, max]: INT, FLOAT and
 * FLOAT_LIST options whose min <= max and not both 0 (usi/plugin.h). */
int usi_param_has_range(const usi_param_desc *d);
/* For a backbone without the int option num_classes or img_size (which the
 * host sets; usi/plugin.h), the first one it lacks; else NULL. */
const char *usi_backbone_lacks_option(const usi_component *c);
/* The default of a schema entry as a libconfig literal. */
void usi_param_default_format(const usi_param_desc *d, usi_strbuf *out);

/* Options filled with the schema's defaults. */
usi_params *usi_params_new(const usi_component *c);
/* An independent copy (values and whether each was set). */
usi_params *usi_params_copy(const usi_params *p);
void usi_params_free(usi_params *p);
const usi_component *usi_params_component(const usi_params *p);

/* Set one option. Errors name the option and the component and, for an
 * unknown name, list the valid ones. An INT value is accepted for a FLOAT. */
usi_error *usi_params_set_int(usi_params *p, const char *name, int64_t v);
usi_error *usi_params_set_float(usi_params *p, const char *name, double v);
usi_error *usi_params_set_bool(usi_params *p, const char *name, int v);
usi_error *usi_params_set_string(usi_params *p, const char *name,
                                 const char *v);
usi_error *usi_params_set_float_list(usi_params *p, const char *name,
                                     const double *v, size_t n);
/* 1 when the component has an option of that name. */
int usi_params_has(const usi_params *p, const char *name);
/* 1 when the option was set (config, --set), not left at its default. */
int usi_params_is_set(const usi_params *p, const char *name);
/* Comma-separated valid option names (for messages). */
void usi_params_names(const usi_params *p, usi_strbuf *out);
/* Every option as `name = value;` lines, libconfig syntax, indented. */
void usi_params_write(const usi_params *p, usi_strbuf *out, int indent);

/* The getters behind usi_host_api. */
usi_error *usi_params_get_int(const usi_params *p, const char *name,
                              int64_t *out);
usi_error *usi_params_get_float(const usi_params *p, const char *name,
                                double *out);
usi_error *usi_params_get_bool(const usi_params *p, const char *name,
                               int32_t *out);
usi_error *usi_params_get_string(const usi_params *p, const char *name,
                                 const char **out);
usi_error *usi_params_get_float_list(const usi_params *p, const char *name,
                                     double *out, size_t cap, size_t *n);

#endif
