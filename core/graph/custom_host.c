/* Custom ops on devices whose memory host code cannot touch: the plugin's
 * host kernels run on host copies (download the inputs, run, upload the
 * result). Correct everywhere, slow on a GPU, so it is said once per op. */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "graph/graph_internal.h"
#include "plugin/crash.h"
#include "util/error.h"
#include "util/log.h"

#define MAX_IN 16

static void say_once(usi_graph *g, usi_tensor *t)
{
    if (t->backend_state) return;
    usi_log(USI_LOG_WARN, "custom op '%s' (%s) has no kernel for device %s; it runs on the host with copies (slow)",
            t->name, t->custom->name, g->dev->name);
    t->backend_state = t; /* a mark only; nothing to free */
    t->backend_state_free = NULL;
}

/* Host copies of n tensors' values (or gradients); NULL entries stay NULL. */
typedef struct host_set {
    void *p[2 * MAX_IN + 2];
    int n;
} host_set;

static void *host_copy(usi_graph *g, host_set *hs, const void *dev_ptr, size_t bytes, int download, usi_error **e)
{
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        *e = usi_error_new(USI_ERR_NOMEM, "out of host memory");
        return NULL;
    }
    hs->p[hs->n++] = p;
    if (download && dev_ptr) *e = g->dev->be->download(g->dev, p, dev_ptr, bytes);
    return p;
}

static void host_free(host_set *hs)
{
    for (int i = 0; i < hs->n; i++) free(hs->p[i]);
}

usi_error *usi_custom_forward_host(usi_graph *g, usi_tensor *t)
{
    if (t->n_src > MAX_IN) return usi_error_new(USI_ERR_UNSUPPORTED, "over %d inputs", MAX_IN);
    say_once(g, t);
    host_set hs = {.n = 0};
    usi_error *e = NULL;
    usi_tensor_view in[MAX_IN], out;
    for (int32_t k = 0; !e && k < t->n_src; k++)
        usi_node_view(&in[k], t->src[k], host_copy(g, &hs, t->src[k]->data, usi_node_bytes(t->src[k]), 1, &e));
    void *y = e ? NULL : host_copy(g, &hs, NULL, usi_node_bytes(t), 0, &e);
    usi_node_view(&out, t, y);
    if (!e) {
        usi_crash_enter_code(USI_CRASH_CODE(t->custom->forward_cpu), "running custom op", t->custom->name);
        e = t->custom->forward_cpu(t->custom_attrs, t->n_src, in, &out);
        usi_crash_leave();
    }
    if (!e) e = g->dev->be->upload(g->dev, t->data, y, usi_node_bytes(t));
    host_free(&hs);
    return e;
}

usi_error *usi_custom_backward_host(usi_graph *g, usi_tensor *t, const int32_t *acc)
{
    if (t->n_src > MAX_IN) return usi_error_new(USI_ERR_UNSUPPORTED, "over %d inputs", MAX_IN);
    host_set hs = {.n = 0};
    usi_error *e = NULL;
    usi_tensor_view in[MAX_IN], gin[MAX_IN], out, gout;
    void *gh[MAX_IN] = {0};
    for (int32_t k = 0; !e && k < t->n_src; k++) {
        const usi_tensor *s = t->src[k];
        usi_node_view(&in[k], s, host_copy(g, &hs, s->data, usi_node_bytes(s), 1, &e));
        /* The plugin adds into gradients: start from the current ones
         * unless this op writes first. */
        for (int32_t j = 0; j < k; j++)
            if (t->src[j] == s) gh[k] = gh[j]; /* one tensor read twice: one buffer */
        if (!e && s->grad && !gh[k]) gh[k] = host_copy(g, &hs, s->grad, (size_t)s->numel * sizeof(float), acc[k], &e);
        usi_node_view(&gin[k], s, gh[k]);
    }
    void *y = e ? NULL : host_copy(g, &hs, t->data, usi_node_bytes(t), 1, &e);
    void *gy = e ? NULL : host_copy(g, &hs, t->grad, (size_t)t->numel * sizeof(float), 1, &e);
    usi_node_view(&out, t, y);
    usi_node_view(&gout, t, gy);
    if (!e) {
        usi_crash_enter_code(USI_CRASH_CODE(t->custom->backward_cpu), "running the backward of custom op",
                             t->custom->name);
        e = t->custom->backward_cpu(t->custom_attrs, t->n_src, in, &out, &gout, gin);
        usi_crash_leave();
    }
    for (int32_t k = 0; !e && k < t->n_src; k++)
        if (gh[k] && (k == 0 || gh[k] != gh[k - 1])) e = g->dev->be->upload(g->dev, t->src[k]->grad, gh[k], (size_t)t->src[k]->numel * sizeof(float));
    host_free(&hs);
    return e;
}
