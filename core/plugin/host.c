#include "plugin/host.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "graph/graph.h"
#include "plugin/crash.h"
#include "plugin/params.h"
#include "plugin/registry.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"

static usi_error *host_error_new(int32_t code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static usi_error *host_error_new(int32_t code, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return usi_error_new(code, "%s", msg);
}

static void host_log(int32_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void host_log(int32_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    usi_vlog(level, fmt, ap);
    va_end(ap);
}

static void *host_alloc(size_t size, size_t align)
{
    if (align < sizeof(void *)) align = sizeof(void *);
    if (align & (align - 1)) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align, size ? size : 1)) return NULL;
    return p;
}

static void host_free(void *p) { free(p); }

static usi_error *host_image_alloc(usi_image *img, int32_t width, int32_t height,
                                   int32_t channels)
{
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3))
        return usi_error_new(USI_ERR_INVALID, "image_alloc: bad size %dx%dx%d",
                             width, height, channels);
    size_t need = (size_t)width * (size_t)height * (size_t)channels;
    size_t have = (size_t)img->stride * (size_t)(img->height > 0 ? img->height : 0);
    if (!img->data || need > have) {
        uint8_t *p = realloc(img->data, need);
        if (!p) return usi_error_new(USI_ERR_NOMEM, "image_alloc: out of memory for %zu bytes", need);
        img->data = p;
    }
    img->width = width;
    img->height = height;
    img->channels = channels;
    img->stride = width * channels;
    return NULL;
}

static const usi_registry *host_registry;

typedef struct made {
    const usi_component *comp;
    const char *path; /* its plugin file (lives while the plugin is loaded) */
    void *inst;
    usi_params *params;
} made;

static void destroy_in(const char *path, const usi_component *comp, void *inst)
{
    usi_crash_enter(path, "destroying backbone", comp->name);
    comp->destroy(inst);
    usi_crash_leave();
}

static void release_made(void *ctx)
{
    made *m = ctx;
    destroy_in(m->path, m->comp, m->inst);
    usi_params_free(m->params);
    free(m);
}

void usi_host_set_registry(const usi_registry *r) { host_registry = r; }

/* The failure becomes the graph's first error, reported when build returns. */
static usi_tensor *fail_build(usi_graph *g, usi_error *e)
{
    usi_graph_set_error(g, "build_backbone: %s", usi_error_message(e));
    usi_error_free(e);
    return NULL;
}

static usi_tensor *host_build_backbone(usi_graph *g, const char *name, const char *options,
                                       usi_tensor *input)
{
    if (!host_registry)
        return fail_build(g, usi_error_new(USI_ERR_INTERNAL, "no plugin registry to find '%s' in", name));
    const usi_loaded *l;
    usi_error *e = usi_registry_select(host_registry, USI_KIND_BACKBONE, name, &l);
    if (e) return fail_build(g, e);
    usi_params *p = usi_params_new(l->comp);
    if (!p) return fail_build(g, usi_error_new(USI_ERR_NOMEM, "out of memory"));
    char origin[256];
    /* Options stored with the weights first, then the caller's. */
    snprintf(origin, sizeof origin, "options stored for backbone '%s'", name);
    e = usi_params_from_text(p, usi_graph_backbone_defaults(g, name), origin);
    snprintf(origin, sizeof origin, "options of backbone '%s'", name);
    if (!e) e = usi_params_from_text(p, options, origin);
    void *inst = NULL;
    if (!e) {
        usi_crash_enter(l->path, "creating backbone", name);
        e = l->comp->create(p, &inst);
        usi_crash_leave();
    }
    made *m = e ? NULL : malloc(sizeof *m);
    if (m) *m = (made){l->comp, l->path, inst, p};
    if (!e && (!m || usi_graph_on_free(g, release_made, m) != 0))
        e = usi_error_new(USI_ERR_NOMEM, "out of memory");
    if (e) {
        free(m);
        if (inst) destroy_in(l->path, l->comp, inst);
        usi_params_free(p);
        return fail_build(g, e);
    }
    const usi_backbone_ops *ops = l->comp->ops;
    usi_crash_enter(l->path, "building backbone", name);
    usi_tensor *out = ops->build(inst, g, input);
    usi_crash_leave();
    return out;
}

const usi_host_api *usi_host_api_get(void)
{
    static usi_host_api api;
    if (!api.struct_size) {
        api.abi_major = USI_ABI_MAJOR;
        api.abi_minor = USI_ABI_MINOR;
        api.error_new = host_error_new;
        api.error_free = usi_error_free;
        api.error_message = usi_error_message;
        api.log = host_log;
        api.alloc = host_alloc;
        api.free = host_free;
        api.rng_u64 = usi_rng_u64;
        api.rng_uniform = usi_rng_uniform;
        api.rng_normal = usi_rng_normal;
        api.param_int = usi_params_get_int;
        api.param_float = usi_params_get_float;
        api.param_bool = usi_params_get_bool;
        api.param_string = usi_params_get_string;
        api.param_float_list = usi_params_get_float_list;
        api.image_alloc = host_image_alloc;
        api.graph = usi_graph_api_get();
        api.build_backbone = host_build_backbone;
        api.struct_size = sizeof api;
    }
    return &api;
}
