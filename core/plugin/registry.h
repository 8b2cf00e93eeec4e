/* Plugin discovery and the registry of loaded components.
 *
 * A file is first checked as the dynamic loader will map it (core/plugin/
 * elf_check.c: a cut file would otherwise fault inside dlopen), then loaded
 * and shaken hands with in a child process (core/plugin/probe.c: a crash,
 * a hang or an exit() in the loader or the entry is the file's problem, not
 * the end of usi), then opened here with dlopen(RTLD_NOW | RTLD_LOCAL); one
 * entry symbol is called with the host's table, and every struct the plugin
 * hands over is checked against the frozen size of the ABI minor it declares
 * (core/plugin/abi.c), with its kind tables and parameter schema, before it
 * is registered. A file that fails is recorded as a problem with the reason;
 * it never stops the other files from loading. */
#ifndef USI_CORE_REGISTRY_H
#define USI_CORE_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

typedef struct usi_loaded {
    const usi_component *comp;
    const usi_plugin_desc *plugin;
    const char *path;        /* the file it came from                        */
    uint32_t abi_major, abi_minor; /* what the plugin was built against     */
    const char *twin_path;   /* non-NULL: another file has this name too; the
                                component is refused when selected           */
} usi_loaded;

typedef struct usi_problem {
    const char *path;
    const char *message;
} usi_problem;

typedef struct usi_registry usi_registry;

/* min_minor: the oldest ABI 1.x minor accepted (USI_ABI_MINOR_FLOOR). */
#define USI_ABI_MINOR_FLOOR 0
usi_registry *usi_registry_new(uint32_t min_minor);
void usi_registry_free(usi_registry *r);

/* Load one plugin file. On refusal returns an error naming the file and
 * records it as a problem too. Loading the same file twice is a no-op. A
 * component name another file already has is logged, recorded as a problem
 * of both files (once per pair of files, naming every shared component),
 * and the component is refused when selected. */
usi_error *usi_registry_load(usi_registry *r, const char *path);
/* Load every *.so in dir, in name order. Per-file refusals become problems;
 * the error is only for the folder itself (missing, unsafe permissions). */
usi_error *usi_registry_scan(usi_registry *r, const char *dir);
/* The standard search, in this order: extra_dirs (--plugin-dir), config_dirs
 * (plugin_path), $USI_PLUGIN_PATH (ignored when setuid/setgid), then the
 * folder of this build or installation. A folder named by any of the first
 * three that another user could write to is an error (with the chmod that
 * fixes it); a missing one is an error for extra_dirs and a problem for the
 * others; the built-in folder is only ever a problem. */
usi_error *usi_registry_discover(usi_registry *r, const char *const *extra_dirs,
                                 size_t n_extra, const char *const *config_dirs,
                                 size_t n_config);

size_t usi_registry_count(const usi_registry *r);
const usi_loaded *usi_registry_at(const usi_registry *r, size_t i);
size_t usi_registry_problem_count(const usi_registry *r);
const usi_problem *usi_registry_problem(const usi_registry *r, size_t i);

/* The component of that kind (0 = any) and name, or NULL. */
const usi_loaded *usi_registry_find(const usi_registry *r, int32_t kind,
                                    const char *name);
/* Like find, but the error says what is wrong: not found (with the closest
 * names of that kind), wrong kind, or defined by two files. */
usi_error *usi_registry_select(const usi_registry *r, int32_t kind,
                               const char *name, const usi_loaded **out);

const char *usi_kind_name(int32_t kind);
/* The plugin folder of this build tree or installation ("" when unknown). */
const char *usi_default_plugin_dir(void);

#endif
