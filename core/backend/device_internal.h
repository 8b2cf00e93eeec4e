/* For core/graph and core/backend only: a device block's address, which the
 * graph stores in nodes for the kernels but never dereferences. */
#ifndef USI_CORE_DEVICE_INTERNAL_H
#define USI_CORE_DEVICE_INTERNAL_H

#include "backend/backend.h"
#include "backend/device.h"

struct usi_dbuf {
    usi_device *dev;
    void *ptr;
    size_t bytes;
};

/* Device address of byte off of b (NULL for a NULL block). */
static inline void *usi_dbuf_addr(const usi_dbuf *b, size_t off)
{
    return b ? (char *)b->ptr + off : NULL;
}

/* Open a CUDA device by index (core/backend/cuda, when built). */
usi_error *usi_cuda_device_open(int32_t ordinal, usi_device **out);

#endif
