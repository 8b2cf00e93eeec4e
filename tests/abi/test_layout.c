/* Pins the layout of every struct that crosses the plugin boundary, as of
 * 1.0 and with the fields 1.1 and 1.2 added (x86-64 and other LP64 targets), and the
 * frozen size constants. A failing assert means a change broke binary
 * compatibility with plugins already built: add fields at the tail of a
 * struct instead, bump USI_ABI_MINOR and add its _STRUCT_SIZE_1_<minor>
 * constants. main() also compares the constants with the structs of the
 * released 1.0 header (layout_v1_0.c). */
#include <stddef.h>
#include <stdio.h>
#include <usi/plugin.h>

#include "layout_v1_0.h"

_Static_assert(sizeof(void *) == 8 && sizeof(size_t) == 8, "these offsets are for LP64 targets");
_Static_assert(USI_ABI_MAJOR == 1, "a new major version gets a new layout test");

_Static_assert(sizeof(usi_negotiate) == 40, "sizeof usi_negotiate");
_Static_assert(offsetof(usi_negotiate, host_abi_major) == 8, "usi_negotiate.host_abi_major");
_Static_assert(offsetof(usi_negotiate, host_abi_minor) == 12, "usi_negotiate.host_abi_minor");
_Static_assert(offsetof(usi_negotiate, host) == 16, "usi_negotiate.host");
_Static_assert(offsetof(usi_negotiate, plugin_abi_major) == 24, "usi_negotiate.plugin_abi_major");
_Static_assert(offsetof(usi_negotiate, plugin_abi_minor) == 28, "usi_negotiate.plugin_abi_minor");
_Static_assert(offsetof(usi_negotiate, desc) == 32, "usi_negotiate.desc");
_Static_assert(sizeof(usi_plugin_desc) == 56, "sizeof usi_plugin_desc");
_Static_assert(offsetof(usi_plugin_desc, name) == 8, "usi_plugin_desc.name");
_Static_assert(offsetof(usi_plugin_desc, vendor) == 16, "usi_plugin_desc.vendor");
_Static_assert(offsetof(usi_plugin_desc, license) == 24, "usi_plugin_desc.license");
_Static_assert(offsetof(usi_plugin_desc, version) == 32, "usi_plugin_desc.version");
_Static_assert(offsetof(usi_plugin_desc, components) == 40, "usi_plugin_desc.components");
_Static_assert(offsetof(usi_plugin_desc, n_components) == 48, "usi_plugin_desc.n_components");
_Static_assert(sizeof(usi_component) == 80, "sizeof usi_component");
_Static_assert(offsetof(usi_component, kind) == 8, "usi_component.kind");
_Static_assert(offsetof(usi_component, name) == 16, "usi_component.name");
_Static_assert(offsetof(usi_component, version) == 24, "usi_component.version");
_Static_assert(offsetof(usi_component, doc) == 32, "usi_component.doc");
_Static_assert(offsetof(usi_component, params) == 40, "usi_component.params");
_Static_assert(offsetof(usi_component, n_params) == 48, "usi_component.n_params");
_Static_assert(offsetof(usi_component, create) == 56, "usi_component.create");
_Static_assert(offsetof(usi_component, destroy) == 64, "usi_component.destroy");
_Static_assert(offsetof(usi_component, ops) == 72, "usi_component.ops");
_Static_assert(sizeof(usi_param_desc) == 80, "sizeof usi_param_desc");
_Static_assert(offsetof(usi_param_desc, name) == 8, "usi_param_desc.name");
_Static_assert(offsetof(usi_param_desc, type) == 16, "usi_param_desc.type");
_Static_assert(offsetof(usi_param_desc, doc) == 24, "usi_param_desc.doc");
_Static_assert(offsetof(usi_param_desc, def_int) == 32, "usi_param_desc.def_int");
_Static_assert(offsetof(usi_param_desc, def_float) == 40, "usi_param_desc.def_float");
_Static_assert(offsetof(usi_param_desc, def_string) == 48, "usi_param_desc.def_string");
_Static_assert(offsetof(usi_param_desc, min) == 56, "usi_param_desc.min");
_Static_assert(offsetof(usi_param_desc, max) == 64, "usi_param_desc.max");
_Static_assert(offsetof(usi_param_desc, choices) == 72, "usi_param_desc.choices");
_Static_assert(sizeof(usi_backbone_ops) == 16, "sizeof usi_backbone_ops");
_Static_assert(offsetof(usi_backbone_ops, build) == 8, "usi_backbone_ops.build");
_Static_assert(sizeof(usi_teacher_ops) == 32, "sizeof usi_teacher_ops");
_Static_assert(offsetof(usi_teacher_ops, spec) == 8, "usi_teacher_ops.spec");
_Static_assert(offsetof(usi_teacher_ops, build) == 16, "usi_teacher_ops.build");
_Static_assert(offsetof(usi_teacher_ops, forward) == 24, "usi_teacher_ops.forward");
_Static_assert(sizeof(usi_teacher_spec) == 56, "sizeof usi_teacher_spec");
_Static_assert(offsetof(usi_teacher_spec, img_size) == 8, "usi_teacher_spec.img_size");
_Static_assert(offsetof(usi_teacher_spec, interpolation) == 12, "usi_teacher_spec.interpolation");
_Static_assert(offsetof(usi_teacher_spec, mean) == 16, "usi_teacher_spec.mean");
_Static_assert(offsetof(usi_teacher_spec, std) == 28, "usi_teacher_spec.std");
_Static_assert(offsetof(usi_teacher_spec, num_classes) == 40, "usi_teacher_spec.num_classes");
_Static_assert(offsetof(usi_teacher_spec, weights) == 48, "usi_teacher_spec.weights");
_Static_assert(sizeof(usi_augment_ops) == 32, "sizeof usi_augment_ops");
_Static_assert(offsetof(usi_augment_ops, stage) == 8, "usi_augment_ops.stage");
_Static_assert(offsetof(usi_augment_ops, flags) == 12, "usi_augment_ops.flags");
_Static_assert(offsetof(usi_augment_ops, apply_sample) == 16, "usi_augment_ops.apply_sample");
_Static_assert(offsetof(usi_augment_ops, apply_batch) == 24, "usi_augment_ops.apply_batch");
_Static_assert(sizeof(usi_image) == 32, "sizeof usi_image");
_Static_assert(offsetof(usi_image, width) == 8, "usi_image.width");
_Static_assert(offsetof(usi_image, height) == 12, "usi_image.height");
_Static_assert(offsetof(usi_image, channels) == 16, "usi_image.channels");
_Static_assert(offsetof(usi_image, stride) == 20, "usi_image.stride");
_Static_assert(offsetof(usi_image, data) == 24, "usi_image.data");
_Static_assert(sizeof(usi_batch) == 48, "sizeof usi_batch");
_Static_assert(offsetof(usi_batch, n) == 8, "usi_batch.n");
_Static_assert(offsetof(usi_batch, c) == 12, "usi_batch.c");
_Static_assert(offsetof(usi_batch, h) == 16, "usi_batch.h");
_Static_assert(offsetof(usi_batch, w) == 20, "usi_batch.w");
_Static_assert(offsetof(usi_batch, images) == 24, "usi_batch.images");
_Static_assert(offsetof(usi_batch, num_classes) == 32, "usi_batch.num_classes");
_Static_assert(offsetof(usi_batch, targets) == 40, "usi_batch.targets");
_Static_assert(sizeof(usi_tensor_view) == 160, "sizeof usi_tensor_view");
_Static_assert(offsetof(usi_tensor_view, dtype) == 8, "usi_tensor_view.dtype");
_Static_assert(offsetof(usi_tensor_view, device) == 12, "usi_tensor_view.device");
_Static_assert(offsetof(usi_tensor_view, ndim) == 16, "usi_tensor_view.ndim");
_Static_assert(offsetof(usi_tensor_view, shape) == 24, "usi_tensor_view.shape");
_Static_assert(offsetof(usi_tensor_view, strides) == 88, "usi_tensor_view.strides");
_Static_assert(offsetof(usi_tensor_view, data) == 152, "usi_tensor_view.data");
_Static_assert(sizeof(usi_init) == 56, "sizeof usi_init");
_Static_assert(offsetof(usi_init, kind) == 8, "usi_init.kind");
_Static_assert(offsetof(usi_init, fan) == 12, "usi_init.fan");
_Static_assert(offsetof(usi_init, value) == 16, "usi_init.value");
_Static_assert(offsetof(usi_init, std) == 24, "usi_init.std");
_Static_assert(offsetof(usi_init, lo) == 32, "usi_init.lo");
_Static_assert(offsetof(usi_init, hi) == 40, "usi_init.hi");
_Static_assert(offsetof(usi_init, gain) == 48, "usi_init.gain");
_Static_assert(sizeof(usi_conv2d_desc) == 40, "sizeof usi_conv2d_desc");
_Static_assert(offsetof(usi_conv2d_desc, stride) == 8, "usi_conv2d_desc.stride");
_Static_assert(offsetof(usi_conv2d_desc, padding) == 16, "usi_conv2d_desc.padding");
_Static_assert(offsetof(usi_conv2d_desc, dilation) == 24, "usi_conv2d_desc.dilation");
_Static_assert(offsetof(usi_conv2d_desc, groups) == 32, "usi_conv2d_desc.groups");
_Static_assert(sizeof(usi_pool2d_desc) == 48, "sizeof usi_pool2d_desc");
_Static_assert(offsetof(usi_pool2d_desc, kind) == 8, "usi_pool2d_desc.kind");
_Static_assert(offsetof(usi_pool2d_desc, kernel) == 12, "usi_pool2d_desc.kernel");
_Static_assert(offsetof(usi_pool2d_desc, stride) == 20, "usi_pool2d_desc.stride");
_Static_assert(offsetof(usi_pool2d_desc, padding) == 28, "usi_pool2d_desc.padding");
_Static_assert(offsetof(usi_pool2d_desc, ceil_mode) == 36, "usi_pool2d_desc.ceil_mode");
_Static_assert(offsetof(usi_pool2d_desc, count_include_pad) == 40, "usi_pool2d_desc.count_include_pad");
_Static_assert(USI_ABI_MINOR == 2, "a new minor pins its fields and sizes below");
_Static_assert(offsetof(usi_custom_op, name) == 8, "usi_custom_op.name");
_Static_assert(offsetof(usi_custom_op, infer_shape) == 16, "usi_custom_op.infer_shape");
_Static_assert(offsetof(usi_custom_op, forward_cpu) == 24, "usi_custom_op.forward_cpu");
_Static_assert(offsetof(usi_custom_op, backward_cpu) == 32, "usi_custom_op.backward_cpu");
/* 1.1 */
_Static_assert(offsetof(usi_custom_op, forward_cuda) == 40, "usi_custom_op.forward_cuda");
_Static_assert(offsetof(usi_custom_op, backward_cuda) == 48, "usi_custom_op.backward_cuda");
_Static_assert(sizeof(usi_custom_op) == 56, "sizeof usi_custom_op");
_Static_assert(sizeof(usi_host_api) == 152, "sizeof usi_host_api");
_Static_assert(offsetof(usi_host_api, abi_major) == 8, "usi_host_api.abi_major");
_Static_assert(offsetof(usi_host_api, abi_minor) == 12, "usi_host_api.abi_minor");
_Static_assert(offsetof(usi_host_api, error_new) == 16, "usi_host_api.error_new");
_Static_assert(offsetof(usi_host_api, error_free) == 24, "usi_host_api.error_free");
_Static_assert(offsetof(usi_host_api, error_message) == 32, "usi_host_api.error_message");
_Static_assert(offsetof(usi_host_api, log) == 40, "usi_host_api.log");
_Static_assert(offsetof(usi_host_api, alloc) == 48, "usi_host_api.alloc");
_Static_assert(offsetof(usi_host_api, free) == 56, "usi_host_api.free");
_Static_assert(offsetof(usi_host_api, rng_u64) == 64, "usi_host_api.rng_u64");
_Static_assert(offsetof(usi_host_api, rng_uniform) == 72, "usi_host_api.rng_uniform");
_Static_assert(offsetof(usi_host_api, rng_normal) == 80, "usi_host_api.rng_normal");
_Static_assert(offsetof(usi_host_api, param_int) == 88, "usi_host_api.param_int");
_Static_assert(offsetof(usi_host_api, param_float) == 96, "usi_host_api.param_float");
_Static_assert(offsetof(usi_host_api, param_bool) == 104, "usi_host_api.param_bool");
_Static_assert(offsetof(usi_host_api, param_string) == 112, "usi_host_api.param_string");
_Static_assert(offsetof(usi_host_api, param_float_list) == 120, "usi_host_api.param_float_list");
_Static_assert(offsetof(usi_host_api, image_alloc) == 128, "usi_host_api.image_alloc");
_Static_assert(offsetof(usi_host_api, graph) == 136, "usi_host_api.graph");
_Static_assert(offsetof(usi_host_api, build_backbone) == 144, "usi_host_api.build_backbone");

_Static_assert(offsetof(usi_graph_api, error_message) == 8, "usi_graph_api.error_message");
_Static_assert(offsetof(usi_graph_api, is_training) == 16, "usi_graph_api.is_training");
_Static_assert(offsetof(usi_graph_api, push_scope) == 24, "usi_graph_api.push_scope");
_Static_assert(offsetof(usi_graph_api, pop_scope) == 32, "usi_graph_api.pop_scope");
_Static_assert(offsetof(usi_graph_api, ndim) == 40, "usi_graph_api.ndim");
_Static_assert(offsetof(usi_graph_api, dim) == 48, "usi_graph_api.dim");
_Static_assert(offsetof(usi_graph_api, param) == 56, "usi_graph_api.param");
_Static_assert(offsetof(usi_graph_api, buffer) == 64, "usi_graph_api.buffer");
_Static_assert(offsetof(usi_graph_api, conv2d) == 72, "usi_graph_api.conv2d");
_Static_assert(offsetof(usi_graph_api, linear) == 80, "usi_graph_api.linear");
_Static_assert(offsetof(usi_graph_api, matmul) == 88, "usi_graph_api.matmul");
_Static_assert(offsetof(usi_graph_api, batch_norm) == 96, "usi_graph_api.batch_norm");
_Static_assert(offsetof(usi_graph_api, layer_norm) == 104, "usi_graph_api.layer_norm");
_Static_assert(offsetof(usi_graph_api, activation) == 112, "usi_graph_api.activation");
_Static_assert(offsetof(usi_graph_api, binary) == 120, "usi_graph_api.binary");
_Static_assert(offsetof(usi_graph_api, scale) == 128, "usi_graph_api.scale");
_Static_assert(offsetof(usi_graph_api, pool2d) == 136, "usi_graph_api.pool2d");
_Static_assert(offsetof(usi_graph_api, reduce) == 144, "usi_graph_api.reduce");
_Static_assert(offsetof(usi_graph_api, softmax) == 152, "usi_graph_api.softmax");
_Static_assert(offsetof(usi_graph_api, attention) == 160, "usi_graph_api.attention");
_Static_assert(offsetof(usi_graph_api, dropout) == 168, "usi_graph_api.dropout");
_Static_assert(offsetof(usi_graph_api, drop_path) == 176, "usi_graph_api.drop_path");
_Static_assert(offsetof(usi_graph_api, reshape) == 184, "usi_graph_api.reshape");
_Static_assert(offsetof(usi_graph_api, permute) == 192, "usi_graph_api.permute");
_Static_assert(offsetof(usi_graph_api, concat) == 200, "usi_graph_api.concat");
_Static_assert(offsetof(usi_graph_api, slice) == 208, "usi_graph_api.slice");
_Static_assert(offsetof(usi_graph_api, pad) == 216, "usi_graph_api.pad");
_Static_assert(offsetof(usi_graph_api, flatten) == 224, "usi_graph_api.flatten");
_Static_assert(offsetof(usi_graph_api, space_to_depth) == 232, "usi_graph_api.space_to_depth");
_Static_assert(offsetof(usi_graph_api, loss_soft_ce) == 240, "usi_graph_api.loss_soft_ce");
_Static_assert(offsetof(usi_graph_api, loss_ce) == 248, "usi_graph_api.loss_ce");
_Static_assert(offsetof(usi_graph_api, loss_kl) == 256, "usi_graph_api.loss_kl");
_Static_assert(offsetof(usi_graph_api, custom) == 264, "usi_graph_api.custom");
/* 1.1 */
_Static_assert(offsetof(usi_graph_api, fail) == 272, "usi_graph_api.fail");
/* 1.2 */
_Static_assert(offsetof(usi_graph_api, constant) == 280, "usi_graph_api.constant");
_Static_assert(offsetof(usi_graph_api, gather) == 288, "usi_graph_api.gather");
_Static_assert(sizeof(usi_graph_api) == 296, "sizeof usi_graph_api");

/* Frozen sizes: the bytes through each struct's last field of that minor. */
_Static_assert(USI_NEGOTIATE_STRUCT_SIZE_1_0 == 40, "usi_negotiate 1.0");
_Static_assert(USI_PLUGIN_DESC_STRUCT_SIZE_1_0 == 56, "usi_plugin_desc 1.0");
_Static_assert(USI_COMPONENT_STRUCT_SIZE_1_0 == 80, "usi_component 1.0");
_Static_assert(USI_PARAM_DESC_STRUCT_SIZE_1_0 == 80, "usi_param_desc 1.0");
_Static_assert(USI_BACKBONE_OPS_STRUCT_SIZE_1_0 == 16, "usi_backbone_ops 1.0");
_Static_assert(USI_TEACHER_OPS_STRUCT_SIZE_1_0 == 32, "usi_teacher_ops 1.0");
_Static_assert(USI_TEACHER_SPEC_STRUCT_SIZE_1_0 == 56, "usi_teacher_spec 1.0");
_Static_assert(USI_AUGMENT_OPS_STRUCT_SIZE_1_0 == 32, "usi_augment_ops 1.0");
_Static_assert(USI_IMAGE_STRUCT_SIZE_1_0 == 32, "usi_image 1.0");
_Static_assert(USI_BATCH_STRUCT_SIZE_1_0 == 48, "usi_batch 1.0");
_Static_assert(USI_TENSOR_VIEW_STRUCT_SIZE_1_0 == 160, "usi_tensor_view 1.0");
_Static_assert(USI_INIT_STRUCT_SIZE_1_0 == 56, "usi_init 1.0");
_Static_assert(USI_CONV2D_DESC_STRUCT_SIZE_1_0 == 36, "usi_conv2d_desc 1.0 (no tail padding)");
_Static_assert(USI_POOL2D_DESC_STRUCT_SIZE_1_0 == 44, "usi_pool2d_desc 1.0 (no tail padding)");
_Static_assert(USI_CUSTOM_OP_STRUCT_SIZE_1_0 == 40, "usi_custom_op 1.0");
_Static_assert(USI_CUSTOM_OP_STRUCT_SIZE_1_1 == 56, "usi_custom_op 1.1");
_Static_assert(USI_HOST_API_STRUCT_SIZE_1_0 == 152, "usi_host_api 1.0");
_Static_assert(USI_GRAPH_API_STRUCT_SIZE_1_0 == 272, "usi_graph_api 1.0");
_Static_assert(USI_GRAPH_API_STRUCT_SIZE_1_1 == 280, "usi_graph_api 1.1");
_Static_assert(USI_GRAPH_API_STRUCT_SIZE_1_2 == 296, "usi_graph_api 1.2");

/* USI_HAS_FIELD must see a tail field only when struct_size covers it. */
static int has_field_works(void)
{
    usi_host_api h = {0};
    h.struct_size = offsetof(usi_host_api, image_alloc);
    int before = USI_HAS_FIELD(&h, image_alloc);
    h.struct_size = sizeof h;
    int after = USI_HAS_FIELD(&h, image_alloc) && USI_HAS_FIELD(&h, graph);
    return !before && after;
}

/* Each frozen 1.0 constant must equal the same struct measured in the
 * released 1.0 header, which this file cannot include beside the current one. */
static int frozen_sizes_match_v1_0(void)
{
    const size_t now[] = {
        USI_NEGOTIATE_STRUCT_SIZE_1_0, USI_PLUGIN_DESC_STRUCT_SIZE_1_0, USI_COMPONENT_STRUCT_SIZE_1_0,
        USI_PARAM_DESC_STRUCT_SIZE_1_0, USI_BACKBONE_OPS_STRUCT_SIZE_1_0, USI_TEACHER_OPS_STRUCT_SIZE_1_0,
        USI_TEACHER_SPEC_STRUCT_SIZE_1_0, USI_AUGMENT_OPS_STRUCT_SIZE_1_0, USI_IMAGE_STRUCT_SIZE_1_0,
        USI_BATCH_STRUCT_SIZE_1_0, USI_TENSOR_VIEW_STRUCT_SIZE_1_0, USI_INIT_STRUCT_SIZE_1_0,
        USI_CONV2D_DESC_STRUCT_SIZE_1_0, USI_POOL2D_DESC_STRUCT_SIZE_1_0, USI_CUSTOM_OP_STRUCT_SIZE_1_0,
        USI_HOST_API_STRUCT_SIZE_1_0, USI_GRAPH_API_STRUCT_SIZE_1_0,
    };
    size_t n = 0;
    const size_t *then = usi_v1_0_sizes(&n);
    if (n != sizeof now / sizeof now[0]) {
        fprintf(stderr, "layout_v1_0.c measures %zu structs, this file %zu\n", n, sizeof now / sizeof now[0]);
        return 0;
    }
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        if (now[i] != then[i]) {
            fprintf(stderr, "frozen size %zu is %zu, the 1.0 header gives %zu\n", i, now[i], then[i]);
            ok = 0;
        }
    return ok;
}

int main(void)
{
    if (!has_field_works()) {
        fprintf(stderr, "USI_HAS_FIELD gives the wrong answer\n");
        return 1;
    }
    if (!frozen_sizes_match_v1_0()) return 1;
    printf("ABI %d.%d layout as pinned\n", USI_ABI_MAJOR, USI_ABI_MINOR);
    return 0;
}
