/* Checks of what a plugin hands over in the handshake, each struct against
 * the frozen size of the ABI minor the plugin declares. */
#include <stdio.h>
#include <string.h>

#include "plugin/abi.h"
#include "plugin/params.h"
#include "plugin/registry_internal.h"
#include "util/error.h"

static usi_error *check_ops(const char *who, const usi_component *c, uint32_t minor)
{
    const size_t ops_size = *(const size_t *)c->ops;
    int ok = 1;
    switch (c->kind) {
    case USI_KIND_BACKBONE: {
        USI_TRY(usi_abi_check_size(USI_ABI_BACKBONE_OPS, ops_size, minor, who));
        const usi_backbone_ops *o = c->ops;
        ok = o->build != NULL;
        break;
    }
    case USI_KIND_TEACHER: {
        USI_TRY(usi_abi_check_size(USI_ABI_TEACHER_OPS, ops_size, minor, who));
        const usi_teacher_ops *o = c->ops;
        ok = o->spec && (!o->build != !o->forward);
        break;
    }
    case USI_KIND_AUGMENT: {
        USI_TRY(usi_abi_check_size(USI_ABI_AUGMENT_OPS, ops_size, minor, who));
        const usi_augment_ops *o = c->ops;
        ok = (o->stage == USI_AUGMENT_SAMPLE && o->apply_sample) ||
             (o->stage == USI_AUGMENT_BATCH && o->apply_batch);
        break;
    }
    }
    if (!ok)
        return usi_error_new(USI_ERR_INVALID,
                             "%s lacks the functions its kind needs "
                             "(backbone: build; teacher: spec and build or forward; "
                             "augment: apply_sample or apply_batch for its stage)",
                             who);
    return NULL;
}

static usi_error *check_component(const char *path, const usi_component *c, size_t index,
                                  size_t count, uint32_t minor)
{
    char who[512];
    if (!c)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: component %zu of %zu in the plugin descriptor is a NULL pointer; "
                             "check the components array and n_components",
                             path, index + 1, count);
    snprintf(who, sizeof who, "%s: component %zu", path, index + 1);
    USI_TRY(usi_abi_check_size(USI_ABI_COMPONENT, c->struct_size, minor, who));
    if (!c->name || !*c->name)
        return usi_error_new(USI_ERR_INVALID, "%s: a component has no name", path);
    for (const char *p = c->name; *p; p++)
        if (!(*p == '_' || *p == '-' || *p == '.' || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9')))
            return usi_error_new(USI_ERR_INVALID,
                                 "%s: component name '%s' may use only a-z, 0-9, '_', '-', '.'",
                                 path, c->name);
    if (c->kind != USI_KIND_BACKBONE && c->kind != USI_KIND_TEACHER && c->kind != USI_KIND_AUGMENT)
        return usi_error_new(USI_ERR_INVALID, "%s: component '%s' has unknown kind %d",
                             path, c->name, (int)c->kind);
    snprintf(who, sizeof who, "%s: %s '%s'", path, usi_kind_name(c->kind), c->name);
    if (!c->create || !c->destroy || !c->ops)
        return usi_error_new(USI_ERR_INVALID, "%s lacks create, destroy or ops", who);
    USI_TRY(check_ops(who, c, minor));
    if (c->n_params && c->params)
        USI_TRY(usi_abi_check_size(USI_ABI_PARAM_DESC, c->params->struct_size, minor, who));
    usi_error *e = usi_schema_check(c);
    if (e) return usi_error_prefix(e, "%s: ", path);
    return NULL;
}

usi_error *usi_plugin_check_desc(const char *path, const usi_plugin_desc *d, uint32_t minor)
{
    if (!d)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: the entry point returned success but no plugin descriptor "
                             "(n->desc is NULL); set it, e.g. with usi_negotiate_reply(n, &desc)",
                             path);
    USI_TRY(usi_abi_check_size(USI_ABI_PLUGIN_DESC, d->struct_size, minor, path));
    if (!d->name || !d->vendor || !d->license || !d->version)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: the plugin descriptor lacks a name, vendor, license or version", path);
    if (d->n_components && !d->components)
        return usi_error_new(USI_ERR_INVALID, "%s: %zu components declared but no table",
                             path, d->n_components);
    for (size_t i = 0; i < d->n_components; i++)
        USI_TRY(check_component(path, d->components[i], i, d->n_components, minor));
    return NULL;
}
