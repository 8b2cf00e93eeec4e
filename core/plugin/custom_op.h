/* The host's side of usi_custom_op: checking one a plugin records, and which
 * devices it has kernels for (fields of 1.1 are read only when present). */
#ifndef USI_CORE_CUSTOM_OP_H
#define USI_CORE_CUSTOM_OP_H

#include <stdint.h>
#include <usi/plugin.h>

enum { USI_CUSTOM_ON_CPU = 1u << 0, USI_CUSTOM_ON_CUDA = 1u << 1 };

/* USI_CUSTOM_ON_* bits: the devices op has a forward kernel for. The engine
 * runs an op on the host, with copies, on a device whose bit is clear. */
uint32_t usi_custom_op_devices(const usi_custom_op *op);
/* 1 when op brings a CUDA backward kernel (backward_cuda, 1.1). */
int32_t usi_custom_op_has_cuda_backward(const usi_custom_op *op);

/* NULL when op may be recorded: its struct_size covers the frozen size of
 * the minor its plugin declared (the plugin is found by the op's address;
 * 1.0 when that is unknown, as for host code or heap memory) and its CUDA
 * kernels come as a pair. Else an error naming the struct, the missing field
 * and the plugin file. */
usi_error *usi_custom_op_check(const usi_custom_op *op);

#endif
