/* Op checks: forward against a float64 reference, backward against central
 * finite differences of f = sum(out * R) for a fixed random R. */
#ifndef USI_TESTS_ENGINE_HARNESS_H
#define USI_TESTS_ENGINE_HARNESS_H

#include <stdint.h>
#include <usi/plugin.h>

#include "graph/graph.h"

#define MAX_LEAVES 8

typedef struct leaf_spec {
    int32_t ndim;
    int64_t shape[USI_MAX_DIMS];
    int32_t dtype;     /* F32 (default 0), I32 labels, I64 counter    */
    int32_t no_grad;   /* 1: not differentiated                      */
    double lo, hi;     /* uniform range; both 0 means [-1, 1]        */
    int32_t absent;    /* passed to the op as NULL                   */
} leaf_spec;

struct op_case;
typedef usi_tensor *(*case_build_fn)(const usi_graph_api *api, usi_graph *g,
                                     usi_tensor **x, const struct op_case *c);
/* out (numel of the op's output) from the leaves' values in double. */
typedef void (*case_ref_fn)(const struct op_case *c, double *const *in,
                            int32_t ondim, const int64_t *oshape, double *out);

typedef struct op_case {
    const char *name;
    int32_t training;
    int32_t n_leaves;
    leaf_spec leaf[MAX_LEAVES];
    case_build_fn build;
    case_ref_fn ref;
    /* The op's integer and float arguments; each case family lays them out
     * in the comment above its build function. */
    int32_t iarg[16];
    double farg[4];
    int32_t skip_fd;   /* ops whose output is not smooth in a useful way */
} op_case;

/* Runs one case; prints what failed and returns the number of failures. */
int run_case(const op_case *c);

/* Helpers for references. */
int64_t numel_of(int32_t ndim, const int64_t *shape);
uint64_t test_seed(void);

#endif
