#include "plugin/custom_op.h"

#include <stdio.h>

#include "plugin/abi.h"
#include "plugin/origin.h"
#include "util/error.h"

uint32_t usi_custom_op_devices(const usi_custom_op *op)
{
    uint32_t on = 0;
    if (!op || op->struct_size < USI_CUSTOM_OP_STRUCT_SIZE_1_0) return 0;
    if (op->forward_cpu) on |= USI_CUSTOM_ON_CPU;
    if (USI_HAS_FIELD(op, forward_cuda) && op->forward_cuda) on |= USI_CUSTOM_ON_CUDA;
    return on;
}

int32_t usi_custom_op_has_cuda_backward(const usi_custom_op *op)
{
    return op && USI_HAS_FIELD(op, backward_cuda) && op->backward_cuda != NULL;
}

usi_error *usi_custom_op_check(const usi_custom_op *op)
{
    if (!op) return usi_error_new(USI_ERR_INVALID, "no usi_custom_op (NULL)");
    uint32_t minor = 0;
    const char *path = NULL;
    char who[4200];
    if (usi_plugin_origin(op, &minor, &path))
        snprintf(who, sizeof who, "%s (ABI 1.%u)", path, (unsigned)minor);
    else
        snprintf(who, sizeof who, "an op of unknown origin (checked as ABI 1.0)");
    USI_TRY(usi_abi_check_size(USI_ABI_CUSTOM_OP, op->struct_size, minor, who));
    /* A backward without its forward would leave the engine half on the
     * device: refuse it rather than guess. */
    if (USI_HAS_FIELD(op, backward_cuda) && op->backward_cuda && !op->forward_cuda)
        return usi_error_new(USI_ERR_INVALID, "%s: backward_cuda without forward_cuda; give both or neither",
                             who);
    return NULL;
}
