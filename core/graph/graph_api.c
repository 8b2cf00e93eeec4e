/* The usi_graph_api table plugins receive: scopes, tensor queries, params and
 * buffers here; the ops in build_layers.c and build_shape.c. */
#include <stdlib.h>
#include <string.h>

#include "graph/build_common.h"
#include "plugin/host.h"

static const char *api_error_message(const usi_graph *g)
{
    return g ? g->error : "no graph";
}

static int32_t api_is_training(const usi_graph *g) { return g ? g->training : 0; }

static void api_push_scope(usi_graph *g, const char *name)
{
    if (!g) return;
    if (g->n_scope == USI_MAX_SCOPES) {
        g->scope_overflow++;
        usi_graph_fail(g, "push_scope('%s'): more than %d nested scopes",
                       name ? name : "", USI_MAX_SCOPES);
        return;
    }
    char *s = strdup(name ? name : "");
    if (!s) {
        g->scope_overflow++;
        usi_graph_fail(g, "push_scope: out of memory");
        return;
    }
    g->scope[g->n_scope++] = s;
}

static void api_pop_scope(usi_graph *g)
{
    if (!g) return;
    if (g->scope_overflow) {
        g->scope_overflow--;
        return;
    }
    if (g->n_scope == 0) {
        usi_graph_fail(g, "pop_scope: no scope to pop");
        return;
    }
    free(g->scope[--g->n_scope]);
}

static int32_t api_ndim(const usi_tensor *t) { return t ? t->ndim : 0; }

static int64_t api_dim(const usi_tensor *t, int32_t axis)
{
    if (!t) return 0;
    if (axis < 0) axis += t->ndim;
    if (axis < 0 || axis >= t->ndim) return 0;
    return t->shape[axis];
}

static usi_tensor *api_param(usi_graph *g, const char *name, int32_t ndim,
                             const int64_t *shape, const usi_init *init)
{
    if (!g || g->error) return NULL;
    return usi_graph_param_new(g, name, ndim, shape, init);
}

static usi_tensor *api_buffer(usi_graph *g, const char *name, int32_t dtype,
                              int32_t ndim, const int64_t *shape,
                              const usi_init *init)
{
    if (!g || g->error) return NULL;
    return usi_graph_buffer_new(g, name, dtype, ndim, shape, init);
}

const usi_graph_api *usi_graph_builder(void)
{
    static usi_graph_api api;
    if (!api.struct_size) {
        api.error_message = api_error_message;
        api.is_training = api_is_training;
        api.push_scope = api_push_scope;
        api.pop_scope = api_pop_scope;
        api.ndim = api_ndim;
        api.dim = api_dim;
        api.param = api_param;
        api.buffer = api_buffer;
        usi_builder_fill_layers(&api);
        usi_builder_fill_shape(&api);
        api.struct_size = sizeof api;
    }
    return &api;
}

const usi_graph_api *usi_graph_api_get(void) { return usi_graph_builder(); }
