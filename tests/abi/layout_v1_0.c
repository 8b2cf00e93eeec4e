/* Compiled against tests/abi/v1.0/usi/plugin.h, the header as released. */
#include <usi/plugin.h>

#include "layout_v1_0.h"

#if USI_ABI_MAJOR != 1 || USI_ABI_MINOR != 0
#error "layout_v1_0.c must see the frozen 1.0 header"
#endif

#define THROUGH(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
/* The field named must be the struct's last: only tail padding may follow. */
#define LAST(type, field) \
    _Static_assert(sizeof(type) - THROUGH(type, field) < 8, #type "." #field " is not its last field")
LAST(usi_negotiate, desc);
LAST(usi_plugin_desc, n_components);
LAST(usi_component, ops);
LAST(usi_param_desc, choices);
LAST(usi_backbone_ops, build);
LAST(usi_teacher_ops, forward);
LAST(usi_teacher_spec, weights);
LAST(usi_augment_ops, apply_batch);
LAST(usi_image, data);
LAST(usi_batch, targets);
LAST(usi_tensor_view, data);
LAST(usi_init, gain);
LAST(usi_conv2d_desc, groups);
LAST(usi_pool2d_desc, count_include_pad);
LAST(usi_custom_op, backward_cpu);
LAST(usi_host_api, build_backbone);
LAST(usi_graph_api, custom);

const size_t *usi_v1_0_sizes(size_t *n)
{
    static const size_t sizes[] = {
        THROUGH(usi_negotiate, desc),         THROUGH(usi_plugin_desc, n_components),
        THROUGH(usi_component, ops),          THROUGH(usi_param_desc, choices),
        THROUGH(usi_backbone_ops, build),     THROUGH(usi_teacher_ops, forward),
        THROUGH(usi_teacher_spec, weights),   THROUGH(usi_augment_ops, apply_batch),
        THROUGH(usi_image, data),             THROUGH(usi_batch, targets),
        THROUGH(usi_tensor_view, data),       THROUGH(usi_init, gain),
        THROUGH(usi_conv2d_desc, groups),     THROUGH(usi_pool2d_desc, count_include_pad),
        THROUGH(usi_custom_op, backward_cpu), THROUGH(usi_host_api, build_backbone),
        THROUGH(usi_graph_api, custom),
    };
    *n = sizeof sizes / sizeof sizes[0];
    return sizes;
}
