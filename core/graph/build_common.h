/* Helpers for the record functions of build_*.c. */
#ifndef USI_CORE_GRAPH_BUILD_COMMON_H
#define USI_CORE_GRAPH_BUILD_COMMON_H

#include "graph/graph_internal.h"

/* Checks the graph and the sources (non-NULL unless optional_mask says so,
 * of this graph, float unless int_mask allows any dtype) and records a node;
 * NULL after any failure, including an earlier one in the graph. */
usi_tensor *usi_begin(usi_graph *g, int32_t op, const char *opname,
                      int32_t n_src, usi_tensor *const *src,
                      uint32_t optional_mask, uint32_t int_mask);

/* Fails the graph with "<op> '<node>': <a-name> [..] and <b-name> [..]: why"
 * and returns NULL. */
usi_tensor *usi_fail_shapes(usi_tensor *t, const char *an, const usi_tensor *a,
                            const char *bn, const usi_tensor *b,
                            const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Numpy broadcasting of a and b into out; 0 when they don't broadcast. */
int usi_broadcast_shape(int32_t an, const int64_t *as, int32_t bn,
                        const int64_t *bs, int32_t *on, int64_t *os);

const char *usi_op_name(int32_t op);

/* Each build_*.c fills its part of the builder table. */
void usi_builder_fill_layers(usi_graph_api *api);
void usi_builder_fill_shape(usi_graph_api *api);

#endif
