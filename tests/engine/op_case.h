/* The op-test driver's cases (test_backend_ops.c): what one case records,
 * how its float64 reference is computed, and how it is run on one device.
 * The one table of cases is op_cases.c; each family's build and reference
 * functions live in op_nn.c, op_elem.c, op_shape.c and op_custom.c. */
#ifndef USI_TESTS_ENGINE_OP_CASE_H
#define USI_TESTS_ENGINE_OP_CASE_H

#include <stdint.h>
#include <usi/plugin.h>

#include "backend/device.h"
#include "graph/graph.h"

#define MAX_LEAVES 8

typedef struct leaf_spec {
    int32_t ndim;
    int64_t shape[USI_MAX_DIMS];
    int32_t dtype;     /* F32 (default 0), I32 labels, I64 counter (zeros) */
    int32_t no_grad;   /* 1: not differentiated                           */
    double lo, hi;     /* uniform range; both 0 means [-1, 1]             */
    int32_t absent;    /* passed to the op as NULL                        */
    int32_t constant;  /* recorded with constant() (no gradient), not as
                          an input: gather's index tables                 */
    int32_t param;     /* a parameter in real graphs (fp32 NCHW always):
                          the stored passes read it as it is              */
} leaf_spec;

/* Each family's arguments, by name: a case sets the member its build and
 * reference functions read. */
struct conv_args {
    int32_t stride[2], pad[2], dil[2]; /* h, w                                  */
    int32_t groups;
    int32_t bias;      /* 1: leaf 2 is the bias                                    */
};
struct linear_args { int32_t bias; };
struct norm_args {
    int32_t axis;      /* layer norm: -1 or 1                                      */
    double momentum;   /* batch norm                                               */
    double eps;
};
struct pool_args {
    int32_t kind, kernel[2], stride[2], pad[2];
    int32_t ceil, count_include_pad;
};
struct act_args { int32_t kind; double alpha; };
struct binary_args { int32_t kind; };
struct scale_args { double factor; };
struct reduce_args { int32_t kind, keepdim, n_axes, axes[USI_MAX_DIMS]; };
struct attention_args { int32_t bias; double scale; };  /* bias: leaf 3 */
enum { LOSS_SOFT_CE, LOSS_CE, LOSS_KL };
struct loss_args { int32_t kind; double smoothing, temperature; };
struct dropout_args { double p; int32_t path; };        /* path: drop_path */
struct flatten_args { int32_t start, end; };
struct permute_args { int32_t perm[USI_MAX_DIMS]; };
struct concat_args { int32_t axis; };                    /* of every leaf */
struct slice_args { int32_t axis; int64_t start, end, step; };
struct pad_args { int64_t pads[2 * USI_MAX_DIMS]; double value; }; /* before, after per dim */
struct s2d_args { int32_t block; };
struct gather_args { int32_t axis; };                    /* leaf 1: the indices */
struct custom_args { double alpha; int32_t device_kernels; }; /* alpha first: the CUDA kernels read it */

struct op_case;
typedef usi_tensor *(*case_build_fn)(const usi_graph_api *api, usi_graph *g,
                                     usi_tensor **x, const struct op_case *c);
/* out (numel of the op's output) from the leaves' values in double; an
 * absent leaf's entry is NULL. */
typedef void (*case_ref_fn)(const struct op_case *c, double *const *in,
                            int32_t ondim, const int64_t *oshape, double *out);
/* For ops with no deterministic reference (dropout): checks the defining
 * properties on what the device computed (gx: leaf 0's gradient for the
 * loss seed, NULL in eval). Prints what failed under `who`; returns 1 then. */
typedef int (*case_prop_fn)(const struct op_case *c, const char *who, const double *x,
                            const float *y, int64_t n, const float *seed, const float *gx);

typedef struct op_case {
    const char *name;
    int32_t training;
    int32_t n_leaves;
    leaf_spec leaf[MAX_LEAVES];
    case_build_fn build;
    case_ref_fn ref;       /* or prop */
    case_prop_fn prop;
    int32_t skip_fd;       /* outputs that are not smooth in the inputs     */
    int32_t fused;         /* in training, pairs a device fuses (backend
                              fuses_act: core/graph/fuse.c), 0 elsewhere   */
    union {
        struct conv_args conv;
        struct linear_args linear;
        struct norm_args norm;
        struct pool_args pool;
        struct act_args act;
        struct binary_args binary;
        struct scale_args scale;
        struct reduce_args reduce;
        struct attention_args attention;
        struct loss_args loss;
        struct dropout_args dropout;
        struct flatten_args flatten;
        struct permute_args permute;
        struct concat_args concat;
        struct slice_args slice;
        struct pad_args pad;
        struct s2d_args s2d;
        struct gather_args gather;
        struct custom_args custom;
    } a;
} op_case;

extern const op_case op_cases[];
extern const int32_t n_op_cases;

/* How closely a device must agree; fp32 devices use the defaults below. */
typedef struct device_tol {
    double ref;        /* forward vs the float64 reference, relative       */
    double fd;         /* gradients vs central finite differences          */
    double cmp;        /* forward and gradients vs the cpu device          */
} device_tol;

/* What the cpu device computed for a case: the other devices must match. */
typedef struct case_result {
    int64_t n_out;
    float *out;
    int64_t n_grad[MAX_LEAVES];
    float *grad[MAX_LEAVES];   /* NULL for leaves without a gradient */
} case_result;

enum { CASE_PASS, CASE_FAIL, CASE_SKIP };

/* Runs c on dev: forward against the reference (or properties), backward
 * against finite differences, and, when cpu is given, forward and every
 * input gradient against it. Fills mine (when non-NULL) with what dev
 * computed, sets bit op of *ops_seen for each op the graph recorded, and
 * prints a line for each failure or skip. Returns CASE_*. */
int run_case_on(const op_case *c, usi_device *dev, const device_tol *tol,
                const case_result *cpu, case_result *mine, uint64_t *ops_seen);
void case_result_free(case_result *r);

/* Activations kept as bf16 (precision "mixed" on dev, a device with bf16
 * storage) or channels-last (a device that prefers it): c is recorded with
 * every differentiable input x (and input 0) as a/2 + a/2 of a = x * 1 (so
 * a's gradient is the sum of two nodes'), and its output behind a scale by
 * 1, so that the op reads and writes values and gradients kept so; forward
 * and every input gradient must agree with the cpu device running the same
 * graph in fp32 NCHW within tol (relative to max(1, |cpu|)), and the graph
 * must hold bf16 nodes where dev is mixed, none elsewhere. *cl_cases (when
 * not NULL) counts the cases whose graph kept values channels-last. Prints
 * a line for each failure or skip. Returns CASE_*. */
int run_case_stored(const op_case *c, usi_device *dev, double tol, int *cl_cases);

/* Helpers for references. */
int64_t numel_of(int32_t ndim, const int64_t *shape);
void softmax_rows(const double *x, double *y, int64_t rows, int64_t cols);

/* Build, reference and property functions of the families. */
#define OP_FNS(n)                                                                              \
    usi_tensor *b_##n(const usi_graph_api *api, usi_graph *g, usi_tensor **x, const op_case *c); \
    void r_##n(const op_case *c, double *const *in, int32_t nd, const int64_t *os, double *out)
OP_FNS(conv);
OP_FNS(conv_bn);
OP_FNS(linear);
OP_FNS(matmul);
OP_FNS(bn);
OP_FNS(bn_relu);
OP_FNS(ln);
OP_FNS(pool);
OP_FNS(act);
OP_FNS(bin);
OP_FNS(scale);
OP_FNS(reduce);
OP_FNS(softmax);
OP_FNS(attn);
OP_FNS(loss);
OP_FNS(permute);
OP_FNS(concat);
OP_FNS(slice);
OP_FNS(pad);
OP_FNS(s2d);
OP_FNS(gather);
OP_FNS(custom);
#undef OP_FNS
usi_tensor *b_gather_inner(const usi_graph_api *api, usi_graph *g, usi_tensor **x,
                           const op_case *c);
usi_tensor *b_reshape(const usi_graph_api *api, usi_graph *g, usi_tensor **x, const op_case *c);
usi_tensor *b_flatten(const usi_graph_api *api, usi_graph *g, usi_tensor **x, const op_case *c);
/* out = leaf 0, element by element (reshape, flatten). */
void r_copy(const op_case *c, double *const *in, int32_t nd, const int64_t *os, double *out);
usi_tensor *b_dropout(const usi_graph_api *api, usi_graph *g, usi_tensor **x, const op_case *c);
int p_dropout(const op_case *c, const char *who, const double *x, const float *y, int64_t n,
              const float *seed, const float *gx);

#endif
