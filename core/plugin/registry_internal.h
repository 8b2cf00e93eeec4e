/* What registry.c (loading, lookups) and discover.c (folders) share. */
#ifndef USI_CORE_REGISTRY_INTERNAL_H
#define USI_CORE_REGISTRY_INTERNAL_H

#include <sys/stat.h>

#include "plugin/registry.h"

/* Record e as a problem of `path` (a copy) and return e. */
usi_error *usi_registry_add_problem(usi_registry *r, const char *path, usi_error *e);
/* NULL when the file or folder can't be replaced by another user (owned by
 * root or us, not writable by group or others), else why, with the fix. */
usi_error *usi_plugin_path_safe(const char *path, const struct stat *st, int is_dir);
/* Check the descriptor a plugin of ABI 1.minor returned (structs, tables,
 * component schemas and custom ops); errors name `path`. */
usi_error *usi_plugin_check_desc(const char *path, const usi_plugin_desc *d, uint32_t minor);
/* Call the entry of the plugin opened as `handle` and check its reply: the
 * ABI major, a minor of at least min_minor, the descriptor. Errors name
 * `path`. */
usi_error *usi_plugin_negotiate(uint32_t min_minor, const char *path, void *handle, usi_negotiate *n);
/* Load `real` and negotiate with it in a child process (core/plugin/probe.c):
 * NULL when the child got through, or got a refusal this process will find
 * again; an error naming `shown` when it crashed, hung for timeout_ms, or
 * exited, in the loader or in the entry. */
usi_error *usi_plugin_probe(const char *real, const char *shown, uint32_t min_minor, int timeout_ms);
/* How long the child may take (10 s unless a test wants less). */
void usi_registry_set_probe_timeout(usi_registry *r, int ms);

#endif
