/* Struct sizes measured in the released 1.0 header (layout_v1_0.c). */
#ifndef USI_TESTS_LAYOUT_V1_0_H
#define USI_TESTS_LAYOUT_V1_0_H

#include <stddef.h>

/* The bytes through the last field of each crossing struct, in the order
 * test_layout.c lists its USI_*_STRUCT_SIZE_1_0 constants. */
const size_t *usi_v1_0_sizes(size_t *n);

#endif
