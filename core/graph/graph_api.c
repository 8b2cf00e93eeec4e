/* The usi_graph_api table plugins receive: scopes, tensor queries, params,
 * buffers, constants and fail() here; the ops in build_layers.c and
 * build_shape.c.
 *
 * Descriptors a plugin hands over are checked here against the frozen size
 * of their ABI minor and, when shorter than today's struct, copied into a
 * zero-filled one of today's size: the recorders and the engine then read
 * every field without size checks, and fields an older plugin never had are
 * NULL or 0. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/build_common.h"
#include "plugin/custom_op.h"
#include "plugin/host.h"
#include "util/error.h"

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

static usi_tensor *api_constant(usi_graph *g, const char *name, int32_t dtype, int32_t ndim,
                                const int64_t *shape, const void *data)
{
    if (!g || g->error) return NULL;
    return usi_graph_constant_new(g, name, dtype, ndim, shape, data);
}

static void api_fail(usi_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void api_fail(usi_graph *g, const char *fmt, ...)
{
    if (!g) return;
    if (!fmt) {
        usi_graph_set_error(g, "a plugin failed the build without a message");
        return;
    }
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    usi_graph_set_error(g, "%s", msg);
}

/* The recorders of build_layers.c, behind the size checks below. */
static usi_tensor *(*record_conv2d)(usi_graph *, usi_tensor *, usi_tensor *, usi_tensor *,
                                    const usi_conv2d_desc *);
static usi_tensor *(*record_pool2d)(usi_graph *, usi_tensor *, const usi_pool2d_desc *);
static usi_tensor *(*record_custom)(usi_graph *, const usi_custom_op *, int32_t,
                                    usi_tensor *const *, const void *);

/* s as a struct of `full` bytes in buf when it holds at least `frozen`. */
static const void *widen(const void *s, size_t frozen, size_t full, void *buf)
{
    size_t have = s ? *(const size_t *)s : 0;
    if (!s || have < frozen || have >= full) return s; /* the recorder refuses or reads it */
    memset(buf, 0, full);
    memcpy(buf, s, have);
    *(size_t *)buf = full;
    return buf;
}

static usi_tensor *api_conv2d(usi_graph *g, usi_tensor *x, usi_tensor *w, usi_tensor *b,
                              const usi_conv2d_desc *d)
{
    usi_conv2d_desc full;
    return record_conv2d(g, x, w, b, widen(d, USI_CONV2D_DESC_STRUCT_SIZE_1_0, sizeof full, &full));
}

static usi_tensor *api_pool2d(usi_graph *g, usi_tensor *x, const usi_pool2d_desc *d)
{
    usi_pool2d_desc full;
    return record_pool2d(g, x, widen(d, USI_POOL2D_DESC_STRUCT_SIZE_1_0, sizeof full, &full));
}

static usi_tensor *api_custom(usi_graph *g, const usi_custom_op *op, int32_t n_inputs,
                              usi_tensor *const *inputs, const void *attrs)
{
    if (!g || g->error) return NULL;
    usi_error *e = usi_custom_op_check(op);
    if (e) {
        usi_graph_set_error(g, "custom '%s': %s", op && op->name ? op->name : "?",
                            usi_error_message(e));
        usi_error_free(e);
        return NULL;
    }
    if (op->struct_size < sizeof *op) {
        /* The node keeps the op for the graph's life: so does the copy. */
        usi_custom_op *copy = calloc(1, sizeof *copy);
        if (!copy || usi_graph_on_free(g, free, copy) != 0) {
            free(copy);
            usi_graph_set_error(g, "custom '%s': out of memory", op->name ? op->name : "?");
            return NULL;
        }
        memcpy(copy, op, op->struct_size);
        copy->struct_size = sizeof *copy;
        op = copy;
    }
    return record_custom(g, op, n_inputs, inputs, attrs);
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
        record_conv2d = api.conv2d;
        record_pool2d = api.pool2d;
        record_custom = api.custom;
        api.conv2d = api_conv2d;
        api.pool2d = api_pool2d;
        api.custom = api_custom;
        api.fail = api_fail;
        api.constant = api_constant;
        api.struct_size = sizeof api;
    }
    return &api;
}

const usi_graph_api *usi_graph_api_get(void) { return usi_graph_builder(); }
