#include "plugin/abi.h"

#include "util/error.h"

typedef struct field {
    const char *name;
    size_t end;      /* offset + size: the struct must be at least this long */
    uint32_t minor;  /* the 1.x that added it */
} field;

#define F(type, f, minor) {#f, USI_STRUCT_SIZE(type, f), minor}

static const field plugin_desc[] = {
    F(usi_plugin_desc, name, 0), F(usi_plugin_desc, vendor, 0),
    F(usi_plugin_desc, license, 0), F(usi_plugin_desc, version, 0),
    F(usi_plugin_desc, components, 0), F(usi_plugin_desc, n_components, 0),
};
static const field component[] = {
    F(usi_component, kind, 0), F(usi_component, name, 0),
    F(usi_component, version, 0), F(usi_component, doc, 0),
    F(usi_component, params, 0), F(usi_component, n_params, 0),
    F(usi_component, create, 0), F(usi_component, destroy, 0),
    F(usi_component, ops, 0),
};
static const field backbone_ops[] = {F(usi_backbone_ops, build, 0)};
static const field teacher_ops[] = {
    F(usi_teacher_ops, spec, 0), F(usi_teacher_ops, build, 0), F(usi_teacher_ops, forward, 0),
};
static const field augment_ops[] = {
    F(usi_augment_ops, stage, 0), F(usi_augment_ops, flags, 0),
    F(usi_augment_ops, apply_sample, 0), F(usi_augment_ops, apply_batch, 0),
};
static const field param_desc[] = {
    F(usi_param_desc, name, 0), F(usi_param_desc, type, 0), F(usi_param_desc, doc, 0),
    F(usi_param_desc, def_int, 0), F(usi_param_desc, def_float, 0),
    F(usi_param_desc, def_string, 0), F(usi_param_desc, min, 0),
    F(usi_param_desc, max, 0), F(usi_param_desc, choices, 0),
};
static const field custom_op[] = {
    F(usi_custom_op, name, 0), F(usi_custom_op, infer_shape, 0),
    F(usi_custom_op, forward_cpu, 0), F(usi_custom_op, backward_cpu, 0),
    F(usi_custom_op, forward_cuda, 1), F(usi_custom_op, backward_cuda, 1),
};

typedef struct layout {
    const char *name;
    const field *fields;
    size_t n;
} layout;

#define L(name, arr) {name, arr, sizeof arr / sizeof arr[0]}
static const layout layouts[USI_ABI_STRUCT_COUNT] = {
    [USI_ABI_PLUGIN_DESC] = L("usi_plugin_desc", plugin_desc),
    [USI_ABI_COMPONENT] = L("usi_component", component),
    [USI_ABI_BACKBONE_OPS] = L("usi_backbone_ops", backbone_ops),
    [USI_ABI_TEACHER_OPS] = L("usi_teacher_ops", teacher_ops),
    [USI_ABI_AUGMENT_OPS] = L("usi_augment_ops", augment_ops),
    [USI_ABI_PARAM_DESC] = L("usi_param_desc", param_desc),
    [USI_ABI_CUSTOM_OP] = L("usi_custom_op", custom_op),
};

/* The tables above must describe the header's frozen sizes. */
_Static_assert(USI_STRUCT_SIZE(usi_component, ops) == USI_COMPONENT_STRUCT_SIZE_1_0, "component 1.0");
_Static_assert(USI_STRUCT_SIZE(usi_custom_op, backward_cpu) == USI_CUSTOM_OP_STRUCT_SIZE_1_0, "custom op 1.0");
/* 1.2 grew only the host's graph builder table, which plugins read and never
 * hand over, so no table above changed. */
_Static_assert(USI_ABI_MINOR == 2, "a new minor adds its fields to the tables above");

uint32_t usi_abi_effective_minor(uint32_t declared)
{
    return declared < USI_ABI_MINOR ? declared : USI_ABI_MINOR;
}

const char *usi_abi_struct_name(usi_abi_struct s)
{
    return (unsigned)s < USI_ABI_STRUCT_COUNT ? layouts[s].name : "struct";
}

size_t usi_abi_struct_size(usi_abi_struct s, uint32_t minor)
{
    if ((unsigned)s >= USI_ABI_STRUCT_COUNT) return 0;
    size_t size = sizeof(size_t); /* struct_size itself */
    for (size_t i = 0; i < layouts[s].n; i++)
        if (layouts[s].fields[i].minor <= minor && layouts[s].fields[i].end > size)
            size = layouts[s].fields[i].end;
    return size;
}

usi_error *usi_abi_check_size(usi_abi_struct s, size_t struct_size, uint32_t minor,
                              const char *who)
{
    minor = usi_abi_effective_minor(minor);
    size_t need = usi_abi_struct_size(s, minor);
    if (struct_size >= need) return NULL;
    const layout *l = &layouts[s];
    const field *missing = NULL;
    for (size_t i = 0; i < l->n && !missing; i++)
        if (l->fields[i].minor <= minor && l->fields[i].end > struct_size) missing = &l->fields[i];
    return usi_error_new(USI_ERR_VERSION,
                         "%s: its %s is %zu bytes, but ABI 1.%u fills %zu: field '%s' (ABI 1.%u) "
                         "is missing; rebuild the plugin against the SDK of the ABI it declares "
                         "(struct_size = sizeof(%s))",
                         who, l->name, struct_size, (unsigned)minor, need,
                         missing ? missing->name : "?", missing ? (unsigned)missing->minor : 0u,
                         l->name);
}
