/* The frozen layout of every struct a plugin hands the host: each field with
 * the minor that added it. A struct is checked against the size of the minor
 * its plugin declares (never against today's sizeof), and a short one is
 * refused naming the first field it lacks. */
#ifndef USI_CORE_ABI_H
#define USI_CORE_ABI_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

typedef enum usi_abi_struct {
    USI_ABI_PLUGIN_DESC,
    USI_ABI_COMPONENT,
    USI_ABI_BACKBONE_OPS,
    USI_ABI_TEACHER_OPS,
    USI_ABI_AUGMENT_OPS,
    USI_ABI_PARAM_DESC,
    USI_ABI_CUSTOM_OP,
    USI_ABI_STRUCT_COUNT
} usi_abi_struct;

/* "usi_component", ... */
const char *usi_abi_struct_name(usi_abi_struct s);
/* Bytes a plugin of ABI 1.minor fills; a minor newer than the host's counts
 * as the host's (the host knows no later field). */
size_t usi_abi_struct_size(usi_abi_struct s, uint32_t minor);
/* NULL when struct_size covers every field of 1.minor, else an error that
 * names the struct, the first missing field and the minor it belongs to,
 * prefixed with `who` (e.g. "lib.so: backbone 'net'"). */
usi_error *usi_abi_check_size(usi_abi_struct s, size_t struct_size, uint32_t minor,
                              const char *who);
/* The minor the host checks a plugin of minor `declared` against. */
uint32_t usi_abi_effective_minor(uint32_t declared);

#endif
