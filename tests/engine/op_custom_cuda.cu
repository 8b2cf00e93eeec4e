/* The test custom op's CUDA kernels (op_custom.c), as a plugin vendor would
 * write them against the SDK header: out = alpha * a * b, gradients added
 * into grad_inputs, everything enqueued on the engine's stream. */
#include <cuda_runtime.h>
#include <stdint.h>
#include <usi/plugin.h>

#include "op_custom_kernels.h"
extern "C" {
#include "util/error.h"
}

static int64_t numel(const usi_tensor_view *v)
{
    int64_t n = 1;
    for (int32_t d = 0; d < v->ndim; d++) n *= v->shape[d];
    return n;
}

// y, a, b: [n]
__global__ void prod_forward_kernel(float *y, const float *a, const float *b, float alpha, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = alpha * a[i] * b[i];
}

// ga, gb (+)=, NULL when unwanted: [n]
__global__ void prod_backward_kernel(float *ga, float *gb, const float *a, const float *b, const float *gy,
                                     float alpha, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        if (ga) ga[i] += alpha * b[i] * gy[i];
        if (gb) gb[i] += alpha * a[i] * gy[i];
    }
}

static unsigned blocks(int64_t n)
{
    int64_t b = (n + 255) / 256;
    return (unsigned)(b < 1 ? 1 : b > 4096 ? 4096 : b);
}

static usi_error *launched(const char *what)
{
    cudaError_t err = cudaGetLastError();
    return err == cudaSuccess ? NULL
                              : usi_error_new(USI_ERR_INTERNAL, "%s: %s (%s:%d)", what, cudaGetErrorString(err),
                                              __FILE__, __LINE__);
}

static usi_error *prod_forward_cuda(const void *attrs, int32_t n, const usi_tensor_view *in, usi_tensor_view *out,
                                    void *stream)
{
    (void)n;
    float alpha = (float)*(const double *)attrs; /* struct custom_args starts with alpha */
    if (in[0].device < 1 || out->device != in[0].device)
        return usi_error_new(USI_ERR_INVALID, "scaled_product on CUDA: views on device %d and %d", in[0].device,
                             out->device);
    int64_t k = numel(out);
    prod_forward_kernel<<<blocks(k), 256, 0, (cudaStream_t)stream>>>((float *)out->data, (const float *)in[0].data,
                                                                      (const float *)in[1].data, alpha, k);
    return launched("scaled_product forward");
}

static usi_error *prod_backward_cuda(const void *attrs, int32_t n, const usi_tensor_view *in,
                                     const usi_tensor_view *out, const usi_tensor_view *gout,
                                     usi_tensor_view *gin, void *stream)
{
    (void)n;
    float alpha = (float)*(const double *)attrs;
    int64_t k = numel(out);
    prod_backward_kernel<<<blocks(k), 256, 0, (cudaStream_t)stream>>>(
        (float *)gin[0].data, (float *)gin[1].data, (const float *)in[0].data, (const float *)in[1].data,
        (const float *)gout->data, alpha, k);
    return launched("scaled_product backward");
}

extern "C" void op_custom_cuda_kernels(usi_custom_op *op)
{
    op->forward_cuda = prod_forward_cuda;
    op->backward_cuda = prod_backward_cuda;
}
