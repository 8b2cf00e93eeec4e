/* A build without CUDA: the test custom op has host kernels only. */
#include "op_custom_kernels.h"

void op_custom_cuda_kernels(usi_custom_op *op) { (void)op; }
