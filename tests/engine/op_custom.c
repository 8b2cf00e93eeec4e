/* A custom op as a plugin would ship it: out = alpha * a * b (same shapes).
 * scaled_product has host kernels only: on the cpu device it runs in place,
 * on devices whose memory host code can't touch through the host-copy path
 * (core/graph/custom_host.c). scaled_product_dev also brings CUDA kernels
 * (op_custom_cuda.cu, in builds with CUDA), which the cuda device calls on
 * its own memory and stream. */
#include <string.h>

#include "op_case.h"
#include "op_custom_kernels.h"

static int64_t view_numel(const usi_tensor_view *v)
{
    int64_t n = 1;
    for (int32_t d = 0; d < v->ndim; d++) n *= v->shape[d];
    return n;
}

static usi_error *prod_shape(const void *attrs, int32_t n, const usi_tensor_view *in,
                             usi_tensor_view *out)
{
    (void)attrs;
    (void)n;
    out->ndim = in[0].ndim;
    memcpy(out->shape, in[0].shape, sizeof out->shape);
    return NULL;
}

static usi_error *prod_forward(const void *attrs, int32_t n, const usi_tensor_view *in,
                               usi_tensor_view *out)
{
    (void)n;
    double alpha = ((const struct custom_args *)attrs)->alpha;
    const float *a = in[0].data, *b = in[1].data;
    float *y = out->data;
    for (int64_t i = 0; i < view_numel(out); i++) y[i] = (float)(alpha * a[i] * b[i]);
    return NULL;
}

/* Gradients add into gin (the ABI's contract); a NULL data pointer means
 * that input wants none. */
static usi_error *prod_backward(const void *attrs, int32_t n, const usi_tensor_view *in,
                                const usi_tensor_view *out, const usi_tensor_view *gout,
                                usi_tensor_view *gin)
{
    (void)n;
    double alpha = ((const struct custom_args *)attrs)->alpha;
    const float *a = in[0].data, *b = in[1].data, *gy = gout->data;
    float *ga = gin[0].data, *gb = gin[1].data;
    for (int64_t i = 0; i < view_numel(out); i++) {
        if (ga) ga[i] += (float)(alpha * b[i] * gy[i]);
        if (gb) gb[i] += (float)(alpha * a[i] * gy[i]);
    }
    return NULL;
}

static const usi_custom_op scaled_product = {.struct_size = sizeof scaled_product, .name = "scaled_product",
                                             .infer_shape = prod_shape, .forward_cpu = prod_forward,
                                             .backward_cpu = prod_backward};

static usi_custom_op scaled_product_dev = {.struct_size = sizeof scaled_product_dev,
                                           .name = "scaled_product_dev",
                                           .infer_shape = prod_shape,
                                           .forward_cpu = prod_forward,
                                           .backward_cpu = prod_backward};

usi_tensor *b_custom(const usi_graph_api *api, usi_graph *g, usi_tensor **x, const op_case *c)
{
    const usi_custom_op *op = &scaled_product;
    if (c->a.custom.device_kernels) {
        op_custom_cuda_kernels(&scaled_product_dev);
        op = &scaled_product_dev;
    }
    /* attrs point into the case table, which outlives every graph */
    return api->custom(g, op, 2, x, &c->a.custom);
}

void r_custom(const op_case *c, double *const *in, int32_t nd, const int64_t *os, double *out)
{
    for (int64_t i = 0; i < numel_of(nd, os); i++) out[i] = c->a.custom.alpha * in[0][i] * in[1][i];
}
