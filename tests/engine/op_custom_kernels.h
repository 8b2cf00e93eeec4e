/* The test custom op's device kernels: op_custom_cuda.cu in builds with
 * CUDA, op_custom_nocuda.c (none) elsewhere. */
#ifndef USI_TESTS_OP_CUSTOM_KERNELS_H
#define USI_TESTS_OP_CUSTOM_KERNELS_H

#include <usi/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif
/* Sets op's forward_cuda and backward_cuda (left NULL without CUDA). */
void op_custom_cuda_kernels(usi_custom_op *op);
#ifdef __cplusplus
}
#endif

#endif
