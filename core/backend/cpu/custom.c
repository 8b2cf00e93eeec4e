/* Plugin-defined ops: their own kernels on tensor views of our buffers. */
#include "backend/cpu/cpu.h"
#include "plugin/crash.h"

usi_error *usi_cpu_custom_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    usi_tensor_view in[16], out;
    for (int32_t k = 0; k < t->n_src; k++) usi_node_view(&in[k], t->src[k], t->src[k]->data);
    usi_node_view(&out, t, t->data);
    usi_crash_enter_code(USI_CRASH_CODE(t->custom->forward_cpu), "running custom op", t->custom->name);
    usi_error *e = t->custom->forward_cpu(t->custom_attrs, t->n_src, in, &out);
    usi_crash_leave();
    return e;
}

/* The plugin adds into gradients, so ours are cleared when we own the write. */
usi_error *usi_cpu_custom_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    usi_tensor_view in[16], gin[16], out, gout;
    for (int32_t k = 0; k < t->n_src; k++) {
        const usi_tensor *s = t->src[k];
        usi_node_view(&in[k], s, s->data);
        usi_node_view(&gin[k], s, s->grad);
        usi_grad_begin(s->grad, s->numel, acc[k]);
    }
    usi_node_view(&out, t, t->data);
    usi_node_view(&gout, t, t->grad);
    usi_crash_enter_code(USI_CRASH_CODE(t->custom->backward_cpu), "running the backward of custom op",
                         t->custom->name);
    usi_error *e = t->custom->backward_cpu(t->custom_attrs, t->n_src, in, &out, &gout, gin);
    usi_crash_leave();
    return e;
}
