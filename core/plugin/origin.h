/* Which loaded plugin a pointer into plugin memory belongs to, so that a
 * struct a plugin hands over mid-build (a custom op) is checked against the
 * ABI minor that plugin declared, and errors can name its file. */
#ifndef USI_CORE_ORIGIN_H
#define USI_CORE_ORIGIN_H

#include <stdint.h>

/* Record the plugin opened as `handle`, found at the address of any of its
 * symbols (`inside`). Returns 0, or -1 when out of memory. */
int usi_plugin_origin_add(void *handle, const void *inside, const char *path, uint32_t minor);
/* Forget one record of `handle` (call before dlclose). */
void usi_plugin_origin_remove(void *handle);
/* 1 with the plugin's minor and file when p lies in a recorded plugin's
 * image (its code or static data); 0 otherwise (host code, heap memory). The
 * path stays valid until the plugin is removed. */
int usi_plugin_origin(const void *p, uint32_t *minor, const char **path);

#endif
