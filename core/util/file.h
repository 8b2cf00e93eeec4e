/* Writing whole files the way every file usi writes is written: to a
 * temporary file beside the target, then renamed over it, so a reader (or a
 * crash) sees the old file or the new one, never half of one. */
#ifndef USI_CORE_FILE_H
#define USI_CORE_FILE_H

#include <stddef.h>
#include <usi/plugin.h>

/* Errors name path and say why (e.g. "Permission denied"). */
usi_error *usi_file_write_atomic(const char *path, const void *data, size_t len);

/* Create dir and its missing parents (mode 0755); an error names the
 * folder that could not be made and why. */
usi_error *usi_mkdirs(const char *dir);

/* Before the work whose result goes to path: NULL when a file can be
 * written there (its folder exists and is writable, and path is no folder),
 * else an error that starts with `what` (the option, e.g. "--out") and says
 * what to do. The write itself can still fail (a full disk). */
usi_error *usi_check_out_file(const char *what, const char *path);

#endif
