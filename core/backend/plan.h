/* Shape plans every backend computes the same way on the host: a binary
 * op's collapsed broadcast and a reduce's collapsed dims. Neighbouring dims
 * that behave alike merge, so [N,C,H,W] * [N,C,1,1] runs as rows of H*W
 * against one value per row, and global average pooling is a plain row
 * reduction. */
#ifndef USI_CORE_BACKEND_PLAN_H
#define USI_CORE_BACKEND_PLAN_H

#include <stdint.h>

#include "graph/node.h"

typedef struct usi_bcast_plan {
    int32_t n;                                 /* collapsed dims, >= 1   */
    int64_t shape[USI_MAX_DIMS];
    int64_t sa[USI_MAX_DIMS], sb[USI_MAX_DIMS]; /* strides, 0 = broadcast */
} usi_bcast_plan;

/* The plan of binary node t: out = src[0] (op) src[1]. */
void usi_bcast_plan_of(const usi_tensor *t, usi_bcast_plan *bc);

typedef struct usi_reduce_plan {
    int32_t n;                                 /* collapsed dims         */
    int64_t shape[USI_MAX_DIMS];
    int64_t istride[USI_MAX_DIMS];
    int32_t reduced[USI_MAX_DIMS];
    int64_t count;                             /* elements per output    */
} usi_reduce_plan;

/* The plan of reducing x over the axes set in mask (bit d = axis d); in
 * memory order where x is kept channels-last (the kept dims then come in
 * the order [N,H,W,C]: the CUDA backend takes such a reduction itself only
 * where that is the output's order). */
void usi_reduce_plan_of(const usi_tensor *x, uint32_t mask, usi_reduce_plan *r);

/* Whether a backend's kernels on these plans may take channels-last values
 * as they are: binary node t kept channels-last with every operand kept so
 * or of one pixel once right-aligned to 4 dims; reduce node t of a
 * channels-last input whose kept dims come in the output's order (a global
 * pool). */
int32_t usi_bcast_cl_ok(const usi_tensor *t);
int32_t usi_reduce_cl_ok(const usi_tensor *t);

#endif
