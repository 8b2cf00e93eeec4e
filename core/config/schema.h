/* The core's own configuration sections and their defaults: the USI recipe.
 * Each section is described with the same schema structs plugins use, so
 * validation and printing are shared with plugin options. */
#ifndef USI_CORE_SCHEMA_H
#define USI_CORE_SCHEMA_H

#include <usi/plugin.h>

/* name: "" for top-level keys, else the section ("data", "optimizer", ...). */
typedef struct usi_section {
    const char *name;
    const char *doc;
    const usi_component *schema; /* kind 0; only name/params/n_params used */
} usi_section;

size_t usi_section_count(void);
const usi_section *usi_section_at(size_t i);
const usi_section *usi_section_find(const char *name);

#endif
