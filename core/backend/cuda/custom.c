/* Plugin-defined ops with their own CUDA kernels (usi_custom_op's
 * forward_cuda / backward_cuda, ABI 1.1): views of our device buffers and
 * the backend's stream. An op without them runs its host kernels on host
 * copies instead (core/graph/custom_host.c; core/graph/exec.c decides). */
#include <string.h>

#include "backend/cuda/cuda.h"
#include "graph/graph_internal.h"
#include "plugin/crash.h"
#include "plugin/custom_op.h"

#define MAX_IN 16

static void view(usi_cuda *c, usi_tensor_view *v, const usi_tensor *t, void *data)
{
    usi_node_view(v, t, data);
    v->device = c->ordinal + 1;
}

usi_error *usi_cuda_custom_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    if (!(usi_custom_op_devices(t->custom) & USI_CUSTOM_ON_CUDA))
        return usi_error_new(USI_ERR_UNSUPPORTED, "custom op '%s' has no CUDA kernel", t->custom->name);
    if (t->n_src > MAX_IN) return usi_error_new(USI_ERR_UNSUPPORTED, "over %d inputs", MAX_IN);
    usi_tensor_view in[MAX_IN], out;
    for (int32_t k = 0; k < t->n_src; k++) view(c, &in[k], t->src[k], t->src[k]->data);
    view(c, &out, t, t->data);
    usi_crash_enter_code(USI_CRASH_CODE(t->custom->forward_cuda), "running custom op", t->custom->name);
    usi_error *e = t->custom->forward_cuda(t->custom_attrs, t->n_src, in, &out, c->stream);
    usi_crash_leave();
    return e;
}

/* The plugin adds into gradients: ours are cleared first where this op
 * writes them first (acc 0), once per tensor even when it is read twice. */
usi_error *usi_cuda_custom_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    if (!usi_custom_op_has_cuda_backward(t->custom))
        return usi_error_new(USI_ERR_UNSUPPORTED, "custom op '%s' has no CUDA backward kernel", t->custom->name);
    if (t->n_src > MAX_IN) return usi_error_new(USI_ERR_UNSUPPORTED, "over %d inputs", MAX_IN);
    usi_tensor_view in[MAX_IN], gin[MAX_IN], out, gout;
    for (int32_t k = 0; k < t->n_src; k++) {
        const usi_tensor *s = t->src[k];
        view(c, &in[k], s, s->data);
        view(c, &gin[k], s, s->grad);
        if (s->grad && !acc[k])
            CUDA_TRY(cudaMemsetAsync(s->grad, 0, (size_t)s->numel * sizeof(float), c->stream));
    }
    view(c, &out, t, t->data);
    view(c, &gout, t, t->grad);
    usi_crash_enter_code(USI_CRASH_CODE(t->custom->backward_cuda), "running the backward of custom op",
                         t->custom->name);
    usi_error *e = t->custom->backward_cuda(t->custom_attrs, t->n_src, in, &out, &gout, gin, c->stream);
    usi_crash_leave();
    return e;
}
