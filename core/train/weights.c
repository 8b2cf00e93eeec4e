#include "train/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"
#include "util/error.h"

typedef int32_t (*entry_at)(const usi_graph *, int32_t, usi_param_info *);

static int32_t count_of(const usi_graph *g, int which)
{
    return which ? usi_graph_num_buffers(g) : usi_graph_num_params(g);
}

static entry_at getter(int which) { return which ? usi_graph_buffer_at : usi_graph_param_at; }

static void shape_text(char *buf, size_t cap, int32_t ndim, const int64_t *shape)
{
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int32_t d = 0; d < ndim && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

static usi_error *check_one(const usi_param_info *p, const usi_st_file *f, const char *prefix,
                            const char *label, const usi_st_tensor **out)
{
    char key[1024];
    snprintf(key, sizeof key, "%s%s", prefix, p->name);
    const usi_st_tensor *t = usi_st_find(f, key);
    /* A batch norm's step counter is what PyTorch fills in when a state dict
     * lacks it (timm loads such files strictly): it keeps its value here. */
    size_t n = strlen(key), c = strlen(".num_batches_tracked");
    if (!t && n >= c && !strcmp(key + n - c, ".num_batches_tracked")) {
        *out = NULL;
        return NULL;
    }
    if (!t)
        return usi_error_new(USI_ERR_INVALID, "%s: tensor '%s' is missing; is this file for this model?",
                             label, key);
    int same = t->dtype == p->dtype && t->ndim == p->ndim;
    for (int32_t d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
    if (!same) {
        char want[256], got[256];
        shape_text(want, sizeof want, p->ndim, p->shape);
        shape_text(got, sizeof got, t->ndim, t->shape);
        return usi_error_new(USI_ERR_INVALID, "%s: tensor '%s' is %s %s, the model needs %s %s", label, key,
                             usi_dtype_name(t->dtype), got, usi_dtype_name(p->dtype), want);
    }
    *out = t;
    return NULL;
}

usi_error *usi_weights_load(usi_graph *g, const usi_st_file *f, const char *prefix, int strict,
                            const char *label)
{
    size_t plen = strlen(prefix), matched = 0;
    /* Check everything first, so a bad file changes nothing. */
    for (int which = 0; which < 2; which++)
        for (int32_t i = 0; i < count_of(g, which); i++) {
            usi_param_info p;
            const usi_st_tensor *t;
            getter(which)(g, i, &p);
            USI_TRY(check_one(&p, f, prefix, label, &t));
            matched++;
        }
    if (strict) {
        for (size_t i = 0; i < usi_st_count(f); i++) {
            const usi_st_tensor *t = usi_st_at(f, i);
            if (strncmp(t->name, prefix, plen) != 0) continue;
            if (!usi_graph_find(g, t->name + plen))
                return usi_error_new(USI_ERR_INVALID,
                                     "%s: tensor '%s' is not a parameter of this model; is this file for "
                                     "another model or variant?", label, t->name);
        }
    }
    for (int which = 0; which < 2; which++)
        for (int32_t i = 0; i < count_of(g, which); i++) {
            usi_param_info p;
            const usi_st_tensor *t;
            getter(which)(g, i, &p);
            if (!check_one(&p, f, prefix, label, &t) && t) USI_TRY(usi_graph_write(p.tensor, t->data));
        }
    (void)matched;
    return NULL;
}

usi_error *usi_weights_add(usi_st_writer *w, const usi_graph *g, const char *prefix)
{
    for (int which = 0; which < 2; which++)
        for (int32_t i = 0; i < count_of(g, which); i++) {
            usi_param_info p;
            getter(which)(g, i, &p);
            char key[1024];
            snprintf(key, sizeof key, "%s%s", prefix, p.name);
            void *host = usi_st_writer_alloc(w, (size_t)p.numel * usi_dtype_size(p.dtype));
            if (!host) return usi_error_new(USI_ERR_NOMEM, "out of memory");
            USI_TRY(usi_graph_read(p.tensor, host));
            USI_TRY(usi_st_writer_add(w, key, p.dtype, p.ndim, p.shape, host));
        }
    return NULL;
}
