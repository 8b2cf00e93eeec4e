/* The tensor engine as the rest of the core sees it.
 *
 * A graph is recorded once (inputs, then a backbone's build through the same
 * usi_graph_api table plugins use, then a loss), compiled (autodiff, memory
 * plan, allocation) and then run many times: fill the inputs, forward,
 * backward, read the parameters' gradients, step an optimizer on them.
 *
 *     usi_graph *g = usi_graph_new(dev, 1, seed);
 *     usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, shape);
 *     usi_tensor *y = usi_graph_input(g, "labels", USI_DTYPE_I32, 1, &n);
 *     usi_tensor *logits;
 *     err = usi_graph_build(g, ops->build, inst, x, &logits);
 *     usi_tensor *loss = api->loss_ce(g, logits, y, 0.0);
 *     err = usi_graph_set_loss(g, loss);
 *     err = usi_graph_compile(g);
 *     for (...) { usi_graph_write(x, host_images); usi_graph_write(y, labels);
 *                 usi_graph_forward(g); usi_graph_backward(g);
 *                 optimizer over usi_graph_blocks(g); usi_graph_zero_grad(g); }
 *     usi_graph_free(g);
 *
 * Every graph lives on one device (core/backend/device.h). Its values are
 * device memory: the rest of the core reads and writes them only through
 * usi_graph_read/write and the flat blocks, never through a pointer.
 *
 * Parameters get their initial values when recorded (in host memory until
 * compile), so they can be loaded (by name) before or after compile. At
 * compile, parameters, their gradients and buffers move into one flat device
 * block each (usi_graph_blocks), trainable parameters first. Parameter gradients persist
 * across backward calls and accumulate until usi_graph_zero_grad: gradient
 * accumulation is several forward/backward pairs before one optimizer step
 * (scale each with usi_graph_set_loss_scale). Every other activation,
 * gradient and workspace lives in one arena planned by liveness.
 */
#ifndef USI_CORE_GRAPH_GRAPH_H
#define USI_CORE_GRAPH_GRAPH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <usi/plugin.h>

#include "backend/device.h"

/* training = 1: batch statistics, dropout, and a backward pass. The seed
 * drives parameter initialisers (per name) and dropout masks (per step). */
usi_graph *usi_graph_new(usi_device *dev, int32_t training, uint64_t seed);
usi_device *usi_graph_device(const usi_graph *g);
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
/* Sums over the ranks of a distributed run for the kernels of this graph's
 * later passes (backend/collective.h): batch norm with batch statistics then
 * normalises with every rank's and reduces its input gradient's sums over
 * them too. NULL (the default) keeps every statistic this process's own.
 * Only for graphs every rank runs in step (the training graph); c must
 * outlive the passes. */
struct usi_collective;
void usi_graph_set_collective(usi_graph *g, struct usi_collective *c);
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

/* Autodiff and the memory plan of compile, without allocating anything:
 * the bytes the arena would take (and with no reuse). Memory figures for a
 * batch too big to allocate; the graph may still be compiled afterwards. */
usi_error *usi_graph_plan_only(usi_graph *g, size_t *arena_bytes, size_t *naive_bytes);

/* Bytes of the planned arena, and what the same tensors take with no reuse. */
void usi_graph_memory(const usi_graph *g, size_t *planned_peak,
                      size_t *naive_sum);

usi_error *usi_graph_forward(usi_graph *g);
/* Before compile: every value and gradient keeps its memory to the end of
 * the step (no reuse in the arena), so a test or a debugging tool can read
 * any node's value and gradient after backward. Costs the naive memory. */
usi_error *usi_graph_keep_all(usi_graph *g);
/* Profiling (profile.c): with it on, forward and backward wait for the
 * device around each node and add the time to the node's op; on again
 * clears the figures. The table gives ms per step over `steps` passes. */
usi_error *usi_graph_set_profiling(usi_graph *g, int on);
void usi_graph_print_profile(const usi_graph *g, FILE *f, int64_t steps);
/* Needs a training graph with a loss; accumulates into parameter gradients. */
usi_error *usi_graph_backward(usi_graph *g);
void usi_graph_zero_grad(usi_graph *g);
/* Called by backward after each node, on the calling thread, with the byte
 * offset in the gradient block (usi_graph_blocks.grads) from which every
 * trainable parameter's gradient is final for this pass: it only goes down,
 * and is 0 when backward ends. A distributed run starts reducing gradient
 * buckets from it while backward goes on. fn NULL removes the hook. Needs a
 * compiled training graph. */
typedef void (*usi_grad_ready_fn)(void *ctx, size_t ready_from);
usi_error *usi_graph_on_grad_ready(usi_graph *g, usi_grad_ready_fn fn, void *ctx);

/* 1 when g's passes run as they will from now on: recorded and replayed,
 * or node by node (core/graph/replay.c decides within its first 9 passes
 * on devices that record work); benchmarks warm up until then. */
int32_t usi_graph_replay_settled(usi_graph *g);

/* Tensor access. Leaves (inputs, params, buffers) hold values from recording
 * on; other tensors hold values only while the plan keeps them (outputs and
 * the loss until the next forward). Sizes are numel * dtype size bytes. */
usi_error *usi_graph_write(usi_tensor *t, const void *host);
/* The first `bytes` of t only (a partial batch). */
usi_error *usi_graph_write_part(usi_tensor *t, const void *host, size_t bytes);
/* The first `bytes` of t from bytes [off, +bytes) of a stage's slot
 * (backend/device.h), queued on the device; after compile. */
usi_error *usi_graph_write_staged(usi_tensor *t, usi_stage *s, int32_t slot, size_t off, size_t bytes);
/* The first n images of t (float [N, 3, h, w], n <= N) from uint8
 * [n, h, w, 3] in src at byte off, normalised on the device as the loader
 * does (usi_dbuf_u8_normalize); after compile. */
usi_error *usi_graph_write_u8(usi_tensor *t, const usi_dbuf *src, size_t off, int32_t n, int32_t h, int32_t w,
                              const float mean[3], const float std[3]);
usi_error *usi_graph_read(const usi_tensor *t, void *host);
usi_error *usi_graph_read_part(const usi_tensor *t, void *host, size_t bytes);
/* t's gradient (numel floats); an error when t has none. */
usi_error *usi_graph_read_grad(const usi_tensor *t, float *host);
/* 1 when t gets a gradient in backward. */
int32_t usi_graph_has_grad(const usi_tensor *t);
/* The first `bytes` of src's value into dst's, on the graphs' device(s). */
usi_error *usi_graph_copy_value(usi_tensor *dst, const usi_tensor *src, size_t bytes);
/* dst[n, c, oh, ow] = resize of a[ch]*src + b[ch] for the first n images,
 * on the device (the teacher's normalisation and size); interp is
 * USI_INTERP_* with PyTorch's F.interpolate semantics (align_corners=False).
 * Both float NCHW tensors of graphs on one device; a and b hold c values. */
usi_error *usi_graph_convert_images(usi_tensor *dst, const usi_tensor *src, int32_t n, int32_t interp,
                                    const float *a, const float *b);
const char *usi_graph_name(const usi_tensor *t);
int64_t usi_graph_numel(const usi_tensor *t);
int32_t usi_graph_dtype(const usi_tensor *t);

/* The flat blocks, valid after compile. params: every float parameter,
 * trainable ones first ([0, n_trainable) floats); grads: n_trainable floats
 * laid out like the params' head (then the gradients of differentiable
 * inputs); buffers: float buffers first ([0, n_f32_buffers) floats), then
 * the others. NULL blocks when empty. */
typedef struct usi_graph_blocks {
    usi_dbuf *params, *grads, *buffers;
    size_t n_params, n_trainable, n_f32_buffers;   /* elements */
} usi_graph_blocks;
void usi_graph_get_blocks(const usi_graph *g, usi_graph_blocks *out);

/* Parameters and buffers, in recording order. */
typedef struct usi_param_info {
    const char *name;      /* scoped, as timm's state_dict              */
    int32_t dtype;
    int32_t ndim;
    const int64_t *shape;
    int64_t numel;
    size_t offset;         /* bytes into its block (params or buffers),
                              valid after compile; a trainable parameter's
                              gradient sits at the same offset in grads  */
    int32_t trainable;     /* has a gradient (compiled, not frozen, and
                              reaching the loss)                          */
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

/* Record an error as the graph's first one (later ones are dropped): for
 * host services that build into a graph, e.g. a backbone inside a teacher. */
void usi_graph_set_error(usi_graph *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Run fn(ctx) when the graph is freed (instances made while building it).
 * Returns 0, or -1 when out of memory (fn is then not registered). */
int32_t usi_graph_on_free(usi_graph *g, void (*fn)(void *ctx), void *ctx);

/* Options a weights file stores for backbone `name`: a backbone of that name
 * built into g by a host service (a teacher wrapping it) starts from them,
 * then takes the caller's own options. Returns 0, or -1 out of memory. */
int32_t usi_graph_set_backbone_defaults(usi_graph *g, const char *name, const char *options);
const char *usi_graph_backbone_defaults(const usi_graph *g, const char *name);

/* Number of recorded nodes (all kinds). */
int32_t usi_graph_num_nodes(const usi_graph *g);
/* Of a compiled graph, the nodes whose values and gradients its device
 * keeps as bf16 (precision "mixed" on a device with bf16 storage; a conv
 * with its norm folded in, and a norm with its ReLU, count once): 0
 * elsewhere. */
int32_t usi_graph_bf16_nodes(const usi_graph *g);
/* Of a compiled graph, the nodes whose 4-d values and gradients its device
 * keeps channels-last ([N,H,W,C] in memory; a device that prefers it;
 * counted as usi_graph_bf16_nodes does): 0 elsewhere. */
int32_t usi_graph_cl_nodes(const usi_graph *g);
/* Batch norms of a training graph that apply their activation themselves
 * (core/graph/fuse.c): the activations' own passes skipped. */
int32_t usi_graph_fused_nodes(const usi_graph *g);
/* The op (USI_OP_*, graph/node.h) of recorded node i, or -1 outside
 * [0, num_nodes): read-only, for tests that check which ops a graph holds. */
int32_t usi_graph_node_op(const usi_graph *g, int32_t i);

/* Recorded node i, read-only (layer tables): scoped name, op name, output
 * shape, the elements of the parameters it reads directly, and its
 * multiply-adds as usi_graph_forward_macs counts them; leaf is 1 for
 * inputs, parameters and buffers. Returns 0 outside [0, num_nodes). */
typedef struct usi_node_info {
    const char *name, *op;
    int32_t ndim, leaf;
    const int64_t *shape;
    int64_t params, macs;
    usi_tensor *tensor; /* to read its value or gradient (usi_graph_keep_all) */
} usi_node_info;
int32_t usi_graph_node_info(const usi_graph *g, int32_t i, usi_node_info *out);

/* Multiply-adds of one forward pass of the recorded graph (core/graph/macs.c):
 * conv2d, linear and matmul only, each numel(out) * (dot-product length);
 * biases, norms, activations, pooling and elementwise ops are not counted.
 * Needs no compile. */
int64_t usi_graph_forward_macs(const usi_graph *g);

/* A hash of what the recorded network computes: every node's op, inputs and
 * attributes (strides, axes, rates...) and every parameter's name and shape.
 * Two recordings of one backbone at one input size hash alike exactly when
 * they are the same network. Needs no compile. */
uint64_t usi_graph_signature(const usi_graph *g);

#endif
