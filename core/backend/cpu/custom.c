/* Plugin-defined ops: their own kernels on tensor views of our buffers. */
#include "backend/cpu/cpu.h"

static void view_of(usi_tensor_view *v, const usi_tensor *t, void *data)
{
    memset(v, 0, sizeof *v);
    v->struct_size = sizeof *v;
    v->dtype = t->dtype;
    v->ndim = t->ndim;
    int64_t st = 1;
    for (int32_t d = t->ndim - 1; d >= 0; d--) {
        v->shape[d] = t->shape[d];
        v->strides[d] = st;
        st *= t->shape[d];
    }
    v->data = data;
}

usi_error *usi_cpu_custom_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    usi_tensor_view in[16], out;
    for (int32_t k = 0; k < t->n_src; k++) view_of(&in[k], t->src[k], t->src[k]->data);
    view_of(&out, t, t->data);
    return t->custom->forward_cpu(t->custom_attrs, t->n_src, in, &out);
}

/* The plugin adds into gradients, so ours are cleared when we own the write. */
usi_error *usi_cpu_custom_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    usi_tensor_view in[16], gin[16], out, gout;
    for (int32_t k = 0; k < t->n_src; k++) {
        const usi_tensor *s = t->src[k];
        view_of(&in[k], s, s->data);
        view_of(&gin[k], s, s->grad);
        usi_grad_begin(s->grad, s->numel, acc[k]);
    }
    view_of(&out, t, t->data);
    view_of(&gout, t, t->grad);
    return t->custom->backward_cpu(t->custom_attrs, t->n_src, in, &out, &gout, gin);
}
