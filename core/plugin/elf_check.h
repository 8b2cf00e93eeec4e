/* A look at a plugin file as the dynamic loader will map it, before dlopen:
 * a truncated or foreign shared object makes the loader fault (SIGBUS when it
 * touches a mapped page past the end of the file), which would take usi down
 * with no message. */
#ifndef USI_CORE_ELF_CHECK_H
#define USI_CORE_ELF_CHECK_H

#include <usi/plugin.h>

/* NULL when `path` is an ELF shared object for this machine whose program
 * headers, loadable segments and section header table all lie inside the
 * file, and whose dynamic symbol usi_plugin_entry, when the section headers
 * show it, is a function; else an error naming `shown` and what is wrong
 * (a variable of that name, or only a C++ mangled one: compiled as C++
 * without extern "C"). */
usi_error *usi_elf_check(const char *path, const char *shown);

#endif
