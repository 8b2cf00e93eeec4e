/* The tensor engine as the rest of the core sees it.
 *
 * A graph is recorded once (inputs, then a backbone's build through the same
 * usi_graph_api table plugins use, then a loss), compiled (autodiff, memory
 * plan, allocation) and then run many times: fill the inputs, forward,
 * backward, read the parameters' gradients, step an optimizer on them.
 *
 *     usi_graph *g = usi_graph_new(1, seed);
 *     usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, shape);
 *     usi_tensor *y = usi_graph_input(g, "labels", USI_DTYPE_I32, 1, &n);
 *     usi_tensor *logits;
 *     err = usi_graph_build(g, ops->build, inst, x, &logits);
 *     usi_tensor *loss = api->loss_ce(g, logits, y, 0.0);
 *     err = usi_graph_set_loss(g, loss);
 *     err = usi_graph_compile(g);
 *     for (...) { fill usi_graph_data(x), (y); usi_graph_forward(g);
 *                 usi_graph_backward(g); optimizer over usi_graph_param_at;
 *                 usi_graph_zero_grad(g); }
 *     usi_graph_free(g);
 *
 * Parameters get their storage and initial values when recorded, so they can
 * be loaded (by name) before or after compile. Parameter gradients persist
 * across backward calls and accumulate until usi_graph_zero_grad: gradient
 * accumulation is several forward/backward pairs before one optimizer step
 * (scale each with usi_graph_set_loss_scale). Every other activation,
 * gradient and workspace lives in one arena planned by liveness.
 */
#ifndef USI_CORE_GRAPH_GRAPH_H
#define USI_CORE_GRAPH_GRAPH_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

/* training = 1: batch statistics, dropout, and a backward pass. The seed
 * drives parameter initialisers (per name) and dropout masks (per step). */
usi_graph *usi_graph_new(int32_t training, uint64_t seed);
void usi_graph_free(usi_graph *g);

/* The graph's first recording error as a new usi_error, or NULL. */
usi_error *usi_graph_error(const usi_graph *g);

/* A named input the caller fills before each forward: images float NCHW,
 * soft targets float [N, classes], labels I32 [N]. */
usi_tensor *usi_graph_input(usi_graph *g, const char *name, int32_t dtype,
                            int32_t ndim, const int64_t *shape);
/* Make an input differentiable (tests, input attributions). Before compile. */
void usi_graph_set_requires_grad(usi_tensor *t, int32_t on);

/* Runs build(inst, g, input) and returns the graph's first error, naming the
 * op, node and shapes, if any op failed while recording. */
typedef usi_tensor *(*usi_graph_build_fn)(void *inst, usi_graph *g,
                                          usi_tensor *input);
usi_error *usi_graph_build(usi_graph *g, usi_graph_build_fn build, void *inst,
                           usi_tensor *input, usi_tensor **out);

/* The loss whose gradient backward computes; a float scalar unless a seed
 * gradient is given with usi_graph_set_loss_seed. */
usi_error *usi_graph_set_loss(usi_graph *g, usi_tensor *loss);
/* d(objective)/d(loss): 1 by default; 1/k for k accumulated micro-batches. */
void usi_graph_set_loss_scale(usi_graph *g, double scale);
/* A full seed gradient for a non-scalar "loss" (tests); NULL to drop it.
 * The buffer must hold numel(loss) floats and live while backward runs. */
void usi_graph_set_loss_seed(usi_graph *g, const float *seed);
/* Keep t's value readable after forward (logits, features). Before compile. */
void usi_graph_mark_output(usi_tensor *t);

/* Freeze (1) or unfreeze every parameter whose name starts with prefix ("" =
 * all): a frozen parameter gets no gradient. Before compile. Returns the
 * number of parameters changed. */
int32_t usi_graph_set_frozen(usi_graph *g, const char *prefix, int32_t frozen);

/* Autodiff + memory plan + allocation. Recording ends here. */
usi_error *usi_graph_compile(usi_graph *g);

/* Bytes of the planned arena, and what the same tensors take with no reuse. */
void usi_graph_memory(const usi_graph *g, size_t *planned_peak,
                      size_t *naive_sum);

usi_error *usi_graph_forward(usi_graph *g);
/* Needs a training graph with a loss; accumulates into parameter gradients. */
usi_error *usi_graph_backward(usi_graph *g);
void usi_graph_zero_grad(usi_graph *g);

/* Tensor access: data is valid after compile (inputs, params, buffers,
 * outputs); arena tensors hold values only while the plan keeps them. */
void *usi_graph_data(const usi_tensor *t);
float *usi_graph_grad(const usi_tensor *t);
const char *usi_graph_name(const usi_tensor *t);
int64_t usi_graph_numel(const usi_tensor *t);
int32_t usi_graph_dtype(const usi_tensor *t);

/* Parameters and buffers, in recording order. */
typedef struct usi_param_info {
    const char *name;      /* scoped, as timm's state_dict              */
    int32_t dtype;
    int32_t ndim;
    const int64_t *shape;
    int64_t numel;
    void *data;
    float *grad;           /* NULL for buffers and frozen parameters     */
    int32_t frozen;
    usi_tensor *tensor;
} usi_param_info;

int32_t usi_graph_num_params(const usi_graph *g);
int32_t usi_graph_param_at(const usi_graph *g, int32_t i, usi_param_info *out);
int32_t usi_graph_num_buffers(const usi_graph *g);
int32_t usi_graph_buffer_at(const usi_graph *g, int32_t i, usi_param_info *out);
/* A parameter or buffer by scoped name, or NULL. */
usi_tensor *usi_graph_find(const usi_graph *g, const char *name);
/* Copy every parameter and buffer of `from` into the tensor of the same name
 * in `to` (e.g. a training graph into an eval graph of another batch size).
 * Fails, naming it, on a tensor `to` lacks or holds in another shape. */
usi_error *usi_graph_copy_state(const usi_graph *from, usi_graph *to);

/* Threads for the kernels of graphs run from the calling thread (OpenMP's
 * per-thread setting, which oneDNN follows too); n <= 0 means one per core.
 * On cores shared with other busy processes, OMP_WAIT_POLICY=passive in the
 * environment avoids threads spinning against each other (2-3x there). */
void usi_graph_set_threads(int32_t n);
int32_t usi_graph_threads(void);

/* Record an error as the graph's first one (later ones are dropped): for
 * host services that build into a graph, e.g. a backbone inside a teacher. */
void usi_graph_set_error(usi_graph *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Run fn(ctx) when the graph is freed (instances made while building it).
 * Returns 0, or -1 when out of memory (fn is then not registered). */
int32_t usi_graph_on_free(usi_graph *g, void (*fn)(void *ctx), void *ctx);

/* Number of recorded nodes (all kinds). */
int32_t usi_graph_num_nodes(const usi_graph *g);

/* Multiply-adds of one forward pass of the recorded graph (core/graph/macs.c):
 * conv2d, linear and matmul only, each numel(out) * (dot-product length);
 * biases, norms, activations, pooling and elementwise ops are not counted.
 * Needs no compile. */
int64_t usi_graph_forward_macs(const usi_graph *g);

#endif
