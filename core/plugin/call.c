#include "plugin/call.h"

#include "plugin/crash.h"

/* The bracket's words must outlive the call: literals, one per kind. */
static const char *doing(int32_t kind, const char *backbone, const char *teacher, const char *augment)
{
    switch (kind) {
    case USI_KIND_BACKBONE: return backbone;
    case USI_KIND_TEACHER: return teacher;
    case USI_KIND_AUGMENT: return augment;
    default: return "running component";
    }
}

usi_error *usi_call_create(const usi_component *comp, const usi_params *params, void **inst)
{
    usi_crash_enter_code(USI_CRASH_CODE(comp->create),
                         doing(comp->kind, "creating backbone", "creating teacher", "creating augment"), comp->name);
    usi_error *e = comp->create(params, inst);
    usi_crash_leave();
    return e;
}

void usi_call_destroy(const usi_component *comp, void *inst)
{
    if (!inst) return;
    usi_crash_enter_code(USI_CRASH_CODE(comp->destroy),
                         doing(comp->kind, "destroying backbone", "destroying teacher", "destroying augment"),
                         comp->name);
    comp->destroy(inst);
    usi_crash_leave();
}

usi_error *usi_call_build_backbone(usi_graph *g, const usi_component *bb, void *inst, usi_tensor *input,
                                   usi_tensor **out)
{
    const usi_backbone_ops *ops = bb->ops;
    usi_crash_enter_code(USI_CRASH_CODE(ops->build), "building backbone", bb->name);
    usi_error *e = usi_graph_build(g, ops->build, inst, input, out);
    usi_crash_leave();
    return e;
}
