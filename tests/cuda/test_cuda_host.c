/* The CUDA backend's host-side decisions, which need no GPU: which ops it
 * claims, the planner's saved and scratch bytes it asks for, and the plans
 * its adapters hand to the kernels (broadcasts, reductions, batched
 * products, the optimizer's chunk table). Nodes are recorded on the CPU. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "check.h"
#include "graph/build_common.h"
#include "graph/graph.h"
#include "graph/graph_internal.h"
#include "graph/node.h"
#include "models.h"
#include "plugin/custom_op.h"
#include "plugin/host.h"

static const usi_graph_api *api;

static usi_tensor *input(usi_graph *g, const char *name, int32_t ndim, const int64_t *shape)
{
    return usi_graph_input(g, name, USI_DTYPE_F32, ndim, shape);
}

static void check_supports(void)
{
    const usi_backend *be = usi_cuda_backend();
    for (int32_t op = 0; op < USI_OP_COUNT; op++) {
        int leaf = op == USI_OP_INPUT || op == USI_OP_PARAM || op == USI_OP_BUFFER || op == USI_OP_CONSTANT;
        /* custom ops too: through their CUDA kernels, or on host copies
         * (core/graph/exec.c decides per op) */
        int want = !leaf;
        CHECK(be->supports(op) == want, "supports(%d) = %d", op, be->supports(op));
    }
    CHECK(!be->supports(-1) && !be->supports(USI_OP_COUNT), "out-of-range ops");
    CHECK(!be->host_memory, "device memory is not host memory");
    CHECK(be->custom_kernels == USI_CUSTOM_ON_CUDA, "custom ops run their CUDA kernels here, not %u",
          (unsigned)be->custom_kernels);
}

static void expect_ws(usi_tensor *t, int32_t training, size_t saved, size_t fwd, size_t bwd, const char *what)
{
    usi_cuda_backend()->workspace(t, training);
    CHECK(t->saved_bytes == saved && t->fwd_scratch_bytes == fwd && t->bwd_scratch_bytes == bwd,
          "%s: saved %zu fwd %zu bwd %zu, want %zu %zu %zu", what, t->saved_bytes, t->fwd_scratch_bytes,
          t->bwd_scratch_bytes, saved, fwd, bwd);
}

static void check_workspace(void)
{
    usi_graph *g = usi_graph_new(usi_device_cpu(), 1, 1);
    int64_t xs[4] = {2, 6, 5, 7}, ls[2] = {10, 13}, n = 10;
    usi_tensor *x = input(g, "x", 4, xs), *z = input(g, "z", 2, ls), *q = input(g, "q", 2, ls);
    usi_tensor *y = usi_graph_input(g, "y", USI_DTYPE_I32, 1, &n);
    int64_t c6 = 6;
    usi_init one = {sizeof one, USI_INIT_ONES, 0, 0, 0, 0, 0, 0};
    usi_tensor *w = api->param(g, "w", 1, &c6, &one);
    usi_tensor *bn = api->batch_norm(g, x, w, NULL, NULL, NULL, NULL, 0.1, 1e-5);
    usi_tensor *ln_last = api->layer_norm(g, x, NULL, NULL, -1, 1e-6);
    usi_tensor *ln_chan = api->layer_norm(g, x, NULL, NULL, 1, 1e-6);
    usi_tensor *dp = api->drop_path(g, x, 0.2);
    usi_tensor *ce = api->loss_ce(g, z, y, 0.1), *sce = api->loss_soft_ce(g, z, q), *kl = api->loss_kl(g, z, q, 2.0);
    usi_tensor *act = api->activation(g, x, USI_ACT_GELU, 0);
    usi_error *e = usi_graph_error(g);
    CHECK(!e, "graph: %s", e ? usi_error_message(e) : "");
    usi_error_free(e);
    if (!bn || !ln_last || !ln_chan || !dp || !ce || !sce || !kl || !act) return;
    CHECK(usi_cuda_bn_segments(2, 35) == 1 && usi_cuda_bn_segments(1, 8193) == 2 &&
              usi_cuda_bn_segments(256, 56 * 56) == 64,
          "batch-norm segments: one per 8192 values of a channel, 1 to 64");
    CHECK(usi_cuda_bn_row_segments(256 * 56 * 56, 64) == 1024 && usi_cuda_bn_row_segments(16, 10) == 1 &&
              usi_cuda_bn_row_segments(4096, 2048) == 32 && usi_cuda_bn_row_segments(70, 6) == 2,
          "batch-norm row segments: about 2048 blocks of 32 channels, at least 64 rows, at most 1024");
    CHECK(usi_cuda_bn_parts(256, 64, 3136) == 64 && usi_cuda_bn_parts(256 * 3136, 64, 1) == 1024,
          "rows of channels (I = 1) take the row segments");
    /* x [2, 6, 5, 7]: 70 values a channel; one segment as NCHW, two as rows
     * of channels (channels-last): 1 + 2C + 2C * 2 doubles, 296 B -> 320 */
    expect_ws(bn, 1, 3 * 6 * sizeof(float), 320, 320,
              "batch norm: mean, 1/std, var per channel; the sums over ranks of dist.sync_bn, 1 + 2C doubles, "
              "and their segments' partial sums");
    expect_ws(bn, 0, 3 * 6 * sizeof(float), 320, 320,
              "batch norm without running statistics, eval: batch statistics still, and our kernels' sums");
    expect_ws(ln_last, 1, 2 * 2 * 6 * 5 * sizeof(float), 0, 0, "layer norm (last): 2 per row");
    expect_ws(ln_chan, 1, 2 * 2 * 5 * 7 * sizeof(float), 0, 0, "layer norm (channels): 2 per position");
    expect_ws(dp, 1, 0, 64, 64, "drop path: keep factors per sample, 64-byte rounded");
    expect_ws(ce, 1, 0, 128, 0, "cross-entropy: a double per row");
    expect_ws(sce, 1, 0, 128, 0, "soft cross-entropy: a double per row");
    expect_ws(kl, 1, 0, 128, 0, "KL: a double per row");
    expect_ws(act, 1, 0, 0, 0, "activation: none");
    /* A folded norm (its conv writes it) plans nothing. */
    bn->folded = 1;
    expect_ws(bn, 0, 0, 0, 0, "folded batch norm");
    bn->folded = 0;
    usi_graph_free(g);
}

static void check_binary_plan(void)
{
    usi_graph *g = usi_graph_new(usi_device_cpu(), 0, 1);
    int64_t as[4] = {2, 3, 4, 5}, bs[3] = {3, 1, 1};
    usi_tensor *t = api->binary(g, USI_BIN_MUL, input(g, "a", 4, as), input(g, "b", 3, bs));
    CHECK(t != NULL, "binary recorded");
    if (!t) return;
    /* collapsed: [2, 3, 20]; a strides [60, 20, 1], b [0, 1, 0] */
    usi_cuda_bplan p;
    usi_cuda_binary_plan(t, -1, &p);
    CHECK(p.nk == 3 && p.nr == 0 && p.n_kept == 120 && p.n_red == 1, "forward: every dim kept (%d, %d)", p.nk,
          p.nr);
    CHECK(p.kshape[0] == 2 && p.kshape[1] == 3 && p.kshape[2] == 20, "collapsed shape");
    CHECK(p.ka[0] == 60 && p.ka[1] == 20 && p.ka[2] == 1 && p.kb[0] == 0 && p.kb[1] == 1 && p.kb[2] == 0,
          "operand strides");
    usi_cuda_binary_plan(t, 1, &p);
    CHECK(p.nk == 1 && p.kshape[0] == 3 && p.ko[0] == 20 && p.n_kept == 3, "b keeps its channel dim");
    CHECK(p.nr == 2 && p.rshape[0] == 2 && p.ro[0] == 60 && p.rshape[1] == 20 && p.ro[1] == 1 && p.n_red == 40,
          "b sums over batch and space");
    usi_cuda_binary_plan(t, 0, &p);
    CHECK(p.nk == 3 && p.nr == 0 && p.n_kept == 120, "a is not broadcast");
    usi_graph_free(g);
}

/* A channels-last product: [2,3,4,5] kept as [2,4,5,3] times [2,3,1,1]
 * (one pixel: the same memory either way), broadcast in memory order. */
static void check_binary_plan_cl(void)
{
    usi_graph *g = usi_graph_new(usi_device_cpu(), 0, 1);
    int64_t as[4] = {2, 3, 4, 5}, bs[4] = {2, 3, 1, 1};
    usi_tensor *a = input(g, "a", 4, as), *t = api->binary(g, USI_BIN_MUL, a, input(g, "b", 4, bs));
    CHECK(t != NULL, "binary recorded");
    if (!t) return;
    a->cl = t->cl = 1;
    /* memory [2, 4, 5, 3] collapsed to [2, 20, 3]: a [60, 3, 1], b [3, 0, 1] */
    usi_cuda_bplan p;
    usi_cuda_binary_plan(t, -1, &p);
    CHECK(p.nk == 3 && p.kshape[0] == 2 && p.kshape[1] == 20 && p.kshape[2] == 3, "channels-last collapsed shape");
    CHECK(p.ka[0] == 60 && p.ka[1] == 3 && p.ka[2] == 1 && p.kb[0] == 3 && p.kb[1] == 0 && p.kb[2] == 1,
          "channels-last operand strides");
    usi_cuda_binary_plan(t, 1, &p);
    CHECK(p.nk == 2 && p.kshape[0] == 2 && p.ko[0] == 60 && p.kshape[1] == 3 && p.ko[1] == 1 && p.nr == 1 &&
              p.rshape[0] == 20 && p.ro[0] == 3 && p.n_red == 20,
          "b keeps batch and channel, sums over the pixels in between");
    t->cl = 0;
    usi_cuda_binary_plan(t, -1, &p);
    /* NCHW: [6, 20], a [20, 1], b [1, 0] */
    CHECK(p.nk == 2 && p.kshape[0] == 6 && p.kshape[1] == 20 && p.ka[1] == 1 && p.kb[0] == 1 && p.kb[1] == 0,
          "the NCHW plan again with the flag off");
    usi_graph_free(g);
}

static void check_reduce_dims(void)
{
    usi_graph *g = usi_graph_new(usi_device_cpu(), 0, 1);
    int64_t xs[4] = {2, 3, 4, 5};
    usi_tensor *x = input(g, "x", 4, xs);
    usi_cuda_rdims r;
    usi_cuda_reduce_dims(x, (1u << 2) | (1u << 3), &r);
    CHECK(r.n == 2 && r.shape[0] == 6 && !r.reduced[0] && r.shape[1] == 20 && r.reduced[1] && r.count == 20,
          "global pooling: rows of 20 (n %d)", r.n);
    usi_cuda_reduce_dims(x, 1u << 0, &r);
    CHECK(r.n == 2 && r.reduced[0] && r.shape[0] == 2 && r.istride[0] == 60 && !r.reduced[1] && r.shape[1] == 60,
          "batch sum: the last dim kept");
    usi_graph_free(g);
}

static void check_matmul_strides(void)
{
    usi_graph *g = usi_graph_new(usi_device_cpu(), 0, 1);
    int64_t as[4] = {2, 3, 4, 5}, bs[4] = {2, 3, 5, 6}, cs[4] = {2, 1, 4, 5}, ds[3] = {3, 5, 6}, es[2] = {5, 6};
    usi_tensor *t1 = api->matmul(g, input(g, "a", 4, as), input(g, "b", 4, bs));
    usi_tensor *t2 = api->matmul(g, input(g, "c", 4, cs), input(g, "d", 3, ds));
    usi_tensor *t3 = api->matmul(g, input(g, "a2", 4, as), input(g, "e", 2, es));
    CHECK(t1 && t2 && t3, "matmuls recorded");
    if (!t1 || !t2 || !t3) return;
    int64_t sa = -1, sb = -1;
    CHECK(usi_cuda_matmul_strides(t1, 6, &sa, &sb) && sa == 20 && sb == 30, "plain batches: one strided call");
    CHECK(!usi_cuda_matmul_strides(t2, 6, &sa, &sb), "mixed broadcasting: one call per batch");
    CHECK(usi_cuda_matmul_strides(t3, 6, &sa, &sb) && sa == 20 && sb == 0, "a shared right operand: stride 0");
    usi_graph_free(g);
}

static void check_mixed_workspace(void)
{
    CHECK(usi_cuda_backend()->has_bf16, "the CUDA backend has a bf16 path");
    usi_graph *g = usi_graph_new(usi_device_cpu(), 1, 1);
    int64_t xs[2] = {5, 7}, ws[2] = {300, 7}, as[3] = {2, 4, 5}, bs[2] = {5, 6};
    usi_tensor *x = input(g, "x", 2, xs), *w = input(g, "w", 2, ws);
    usi_tensor *lin = api->linear(g, x, w, NULL);
    usi_tensor *mm = api->matmul(g, input(g, "a", 3, as), input(g, "b", 2, bs));
    CHECK(lin && mm, "recorded");
    if (!lin || !mm) return;
    usi_cuda_gemm_workspace(lin, 1, 0);
    CHECK(!lin->fwd_scratch_bytes && !lin->bwd_scratch_bytes, "fp32: no scratch");
    /* bf16 copies, each 256-byte rounded: x 70 B -> 256, w 4200 B -> 4352, y 3000 B -> 3072 */
    usi_cuda_gemm_workspace(lin, 1, 1);
    CHECK(lin->fwd_scratch_bytes == 256 + 4352 && lin->bwd_scratch_bytes == 3072 + 256 + 4352,
          "mixed linear: fwd %zu bwd %zu", lin->fwd_scratch_bytes, lin->bwd_scratch_bytes);
    usi_cuda_gemm_workspace(lin, 0, 1);
    CHECK(lin->fwd_scratch_bytes == 256 + 4352 && !lin->bwd_scratch_bytes, "mixed linear, eval");
    usi_cuda_gemm_workspace(mm, 1, 1);
    CHECK(mm->fwd_scratch_bytes == 256 + 256 && mm->bwd_scratch_bytes == 256 + 256 + 256, "mixed matmul");
    usi_error *e = usi_device_set_mixed(usi_device_cpu(), 1);
    CHECK(e && !usi_device_mixed(usi_device_cpu()), "the CPU has no bf16 path");
    usi_error_free(e);
    usi_graph_free(g);
}

/* The nodes both native checks ask about: x [2,6,5,7], a 3x3 conv of it,
 * its batch norm and relu. Returns 0 when one was not recorded. */
typedef struct some_nodes {
    usi_tensor *x, *w, *conv, *bn, *act;
} some_nodes;

static int record_some(usi_graph *g, some_nodes *n)
{
    int64_t xs[4] = {2, 6, 5, 7}, ws[4] = {4, 6, 3, 3}, c6 = 6;
    usi_init one = {sizeof one, USI_INIT_ONES, 0, 0, 0, 0, 0, 0};
    usi_conv2d_desc d = {sizeof d, {1, 1}, {1, 1}, {1, 1}, 1};
    n->x = input(g, "x", 4, xs);
    n->w = api->param(g, "w", 4, ws, &one);
    n->conv = api->conv2d(g, n->x, n->w, NULL, &d);
    n->bn = api->batch_norm(g, n->x, api->param(g, "g", 1, &c6, &one), NULL, NULL, NULL, NULL, 0.1, 1e-5);
    n->act = api->activation(g, n->x, USI_ACT_RELU, 0);
    return n->conv && n->bn && n->act;
}

/* Which nodes the CUDA kernels take with bf16 values themselves, and which
 * go through fp32 copies. */
static void check_bf16_native(void)
{
    const usi_backend *be = usi_cuda_backend();
    CHECK(be->bf16_storage && be->bf16_native && be->to_bf16 && be->from_bf16,
          "the CUDA backend keeps activations as bf16 under mixed");
    usi_graph *g = usi_graph_new(usi_device_cpu(), 1, 1);
    some_nodes n;
    int ok = record_some(g, &n);
    usi_tensor *x = n.x, *w = n.w, *conv = n.conv, *bn = n.bn, *act = n.act;
    usi_tensor *add = ok ? api->binary(g, USI_BIN_ADD, x, act) : NULL, *sm = ok ? api->softmax(g, x) : NULL;
    CHECK(ok && add && sm, "recorded");
    if (!ok || !add || !sm) return;
    x->bf16 = 1; /* as if it were an activation kept as bf16 */
    CHECK(be->bf16_native(conv, 0) && be->bf16_native(conv, 1), "conv reads a bf16 input itself");
    CHECK(be->bf16_native(act, 0), "an activation from bf16 into fp32 itself");
    CHECK(!be->bf16_native(bn, 0), "batch norm from bf16 into fp32 goes through copies");
    bn->bf16 = 1;
    CHECK(be->bf16_native(bn, 0) && be->bf16_native(bn, 1), "batch norm bf16 to bf16 itself");
    CHECK(!be->bf16_native(add, 0), "an add of bf16 and fp32 goes through copies");
    act->bf16 = add->bf16 = 1;
    CHECK(be->bf16_native(add, 0), "an add of bf16 tensors itself");
    CHECK(be->bf16_native(sm, 0) && be->bf16_native(sm, 1), "softmax from bf16 into fp32 itself");
    sm->bf16 = 1;
    CHECK(!be->bf16_native(sm, 0), "softmax into bf16 goes through copies");
    w->bf16 = 1;
    CHECK(!be->bf16_native(conv, 0), "a conv whose weight is kept as bf16 goes through copies");
    int64_t as[3] = {2, 4, 5}, bs[3] = {2, 5, 3};
    usi_tensor *a = input(g, "a", 3, as), *b = input(g, "b", 3, bs), *mm = api->matmul(g, a, b);
    CHECK(mm != NULL, "matmul recorded");
    if (mm) {
        b->bf16 = 1;
        CHECK(be->bf16_native(mm, 0) && be->bf16_native(mm, 1), "a product of fp32 and bf16 into fp32 itself");
    }
    int64_t ws2[2] = {5, 3};
    usi_tensor *shared = input(g, "shared", 2, ws2), *mm2 = api->matmul(g, a, shared);
    CHECK(mm2 != NULL, "matmul with a shared operand recorded");
    if (mm2) {
        CHECK(be->bf16_native(mm2, 1), "a shared fp32 operand: summed over batches in fp32 itself");
        shared->bf16 = 1;
        CHECK(!be->bf16_native(mm2, 1), "a shared bf16 operand: its gradient summed in fp32 copies");
    }
    usi_graph_free(g);
}

/* Which nodes the CUDA kernels take channels-last themselves (graphs under
 * "mixed", where the device prefers that layout), and which through NCHW
 * copies. */
static void check_cl_native(void)
{
    const usi_backend *be = usi_cuda_backend();
    CHECK(be->prefers_cl && be->cl_native && be->repack, "the CUDA backend keeps activations channels-last");
    usi_device mixed = {.name = "cpu", .be = usi_cpu_backend(), .mixed = 1}, plain = mixed;
    plain.mixed = 0;
    CHECK(be->prefers_cl(&mixed) && !be->prefers_cl(&plain), "channels-last under mixed only");
    usi_graph *g = usi_graph_new(&mixed, 1, 1);
    int64_t vs[2] = {5, 7}, ps[4] = {2, 6, 1, 1};
    some_nodes n;
    int ok = record_some(g, &n);
    usi_tensor *x = n.x, *conv = n.conv, *bn = n.bn, *act = n.act;
    if (!ok) {
        CHECK(ok, "recorded");
        usi_graph_free(g);
        return;
    }
    usi_tensor *gate = api->binary(g, USI_BIN_MUL, x, input(g, "p", 4, ps));
    usi_tensor *row = api->binary(g, USI_BIN_ADD, x, input(g, "v", 2, vs));
    int64_t c11[3] = {6, 1, 1};
    usi_tensor *scale3 = api->binary(g, USI_BIN_MUL, x, input(g, "s", 3, c11));
    usi_tensor *pool = api->reduce(g, USI_REDUCE_MEAN, x, 2, (int32_t[]){2, 3}, 1);
    usi_tensor *rows = api->reduce(g, USI_REDUCE_SUM, x, 1, (int32_t[]){2}, 1);
    usi_pool2d_desc pd = usi_pool2d(USI_POOL_MAX, 3, 2, 1);
    usi_tensor *window = api->pool2d(g, x, &pd);
    CHECK(conv && bn && act && gate && row && pool && rows && scale3 && window, "recorded");
    if (!conv || !bn || !act || !gate || !row || !pool || !rows || !scale3 || !window) return;
    x->cl = 1; /* as if it were an activation kept channels-last */
    CHECK(be->cl_native(conv, 0) && be->cl_native(conv, 1), "a conv reads a channels-last input itself");
    conv->cl = 1;
    CHECK(be->cl_native(conv, 0), "and writes a channels-last output");
    CHECK(!be->cl_native(bn, 0) && !be->cl_native(act, 0), "norm or activation from channels-last into NCHW: copies");
    bn->cl = act->cl = 1;
    CHECK(be->cl_native(bn, 0) && be->cl_native(bn, 1) && be->cl_native(act, 1), "channels-last to channels-last");
    gate->cl = row->cl = 1;
    CHECK(be->cl_native(gate, 0) && be->cl_native(gate, 1), "a gate of one pixel per channel broadcast itself");
    CHECK(!be->cl_native(row, 0), "a 2-d operand broadcast along W: copies");
    scale3->cl = 1;
    CHECK(be->cl_native(scale3, 0), "a [C,1,1] scale (one pixel once right-aligned) itself");
    usi_cuda_bplan p;
    usi_cuda_binary_plan(scale3, -1, &p);
    /* memory [2, 5, 7, 6] collapsed to [70, 6]: x [6, 1], s [0, 1] */
    CHECK(p.nk == 2 && p.kshape[0] == 70 && p.kshape[1] == 6 && p.ka[0] == 6 && p.ka[1] == 1 && p.kb[0] == 0 &&
              p.kb[1] == 1,
          "a [C,1,1] operand broadcast in channels-last order");
    CHECK(be->cl_native(pool, 0) && be->cl_native(pool, 1), "a global pool ([N,C] out either way) itself");
    CHECK(!be->cl_native(rows, 0), "a sum over H alone ([N,C,1,W]: another order in memory): copies");
    CHECK(!be->cl_native(window, 0), "a max pool from channels-last into NCHW: copies");
    window->cl = 1;
    CHECK(be->cl_native(window, 0) && be->cl_native(window, 1), "a max pool channels-last to channels-last");
    usi_cuda_rdims r;
    usi_cuda_reduce_dims(x, (1u << 2) | (1u << 3), &r);
    /* memory [2, 5, 7, 6]: rows of 35 reduced, C kept innermost */
    CHECK(r.n == 3 && r.shape[0] == 2 && !r.reduced[0] && r.shape[1] == 35 && r.reduced[1] && r.istride[1] == 6 &&
              r.shape[2] == 6 && !r.reduced[2] && r.istride[2] == 1 && r.count == 35,
          "a global pool over channels-last memory (n %d)", r.n);
    usi_graph_free(g);
    usi_graph *g2 = usi_graph_new(&plain, 1, 1);
    if (record_some(g2, &n)) {
        n.x->cl = 1;
        CHECK(!be->cl_native(n.conv, 0), "an fp32 conv (its copies NCHW) does not read channels-last");
    }
    usi_graph_free(g2);
}

static usi_tensor *resnet50(usi_graph *g, usi_tensor *x) { return model_resnet(g, x, 50, 1000); }
static usi_tensor *mobilenetv3(usi_graph *g, usi_tensor *x) { return model_mobilenetv3_large(g, x, 1000); }

/* A training step at 224 under "mixed", planned with the CUDA backend's
 * decisions (on the CPU's workspaces: no cuDNN here): every conv, norm,
 * activation, element-wise op, pooling window and global pool takes its
 * channels-last values itself; no node gets NCHW copies; every batch norm
 * read by a ReLU alone applies it (want_fused pairs). */
static int32_t check_layout_of(const char *name, usi_tensor *(*model)(usi_graph *, usi_tensor *),
                               int32_t want_fused)
{
    const usi_backend *cu = usi_cuda_backend();
    usi_backend be = *usi_cpu_backend();
    be.has_bf16 = be.bf16_storage = 1;
    be.bf16_native = cu->bf16_native;
    be.prefers_cl = cu->prefers_cl;
    be.cl_native = cu->cl_native;
    be.repack = cu->repack;
    be.fuses_act = cu->fuses_act;
    usi_device dev = {.name = "cuda-decisions", .be = &be, .mixed = 1};
    usi_graph *g = usi_graph_new(&dev, 1, 1);
    int64_t xs[4] = {32, 3, 224, 224}, n = 32;
    usi_tensor *x = usi_graph_input(g, "images", USI_DTYPE_F32, 4, xs);
    usi_tensor *y = usi_graph_input(g, "labels", USI_DTYPE_I32, 1, &n);
    usi_error *e = usi_graph_set_loss(g, api->loss_ce(g, model(g, x), y, 0.1));
    size_t arena = 0, naive = 0;
    if (!e) e = usi_graph_plan_only(g, &arena, &naive);
    CHECK(!e, "%s plan: %s", name, e ? usi_error_message(e) : "");
    usi_error_free(e);
    int32_t with_cl = 0, native = 0, pools = 0;
    char copied[256] = "";
    for (int32_t i = 0; i < g->n_nodes; i++) {
        usi_tensor *t = g->nodes[i];
        int any = t->cl;
        for (int32_t k = 0; k < t->n_src; k++) any |= t->src[k] && t->src[k]->cl;
        if (!any) continue;
        int takes = be.cl_native(t, 0) && (!t->has_grad || be.cl_native(t, 1));
        with_cl++;
        native += takes;
        pools += t->op == USI_OP_POOL2D && t->cl;
        if (!takes && strlen(copied) + strlen(usi_op_name(t->op)) + 2 < sizeof copied) {
            strcat(copied, " ");
            strcat(copied, usi_op_name(t->op));
        }
    }
    printf("%s b32 224 under mixed with the CUDA decisions: %d channels-last nodes, %d nodes with channels-last "
           "operands, %d of them take them as they are; through NCHW copies:%s\n",
           name, usi_graph_cl_nodes(g), with_cl, native, copied);
    CHECK(usi_graph_cl_nodes(g) > 100, "%s: only %d nodes kept channels-last", name, usi_graph_cl_nodes(g));
    CHECK(native == with_cl, "%s: %d nodes through NCHW copies:%s", name, with_cl - native, copied);
    CHECK(usi_graph_fused_nodes(g) == want_fused, "%s: %d batch norms apply their ReLU, want %d", name,
          usi_graph_fused_nodes(g), want_fused);
    usi_graph_free(g);
    return pools;
}

/* The pooling kernels' walk over memory (pool.cu): every memory index of a
 * [N, C, H, W] map, NCHW or channels-last, names the plane and position
 * the layout puts there, and the way back lands on the same index. */
static void check_pool_index(void)
{
    const int64_t N = 3, C = 5, H = 4, W = 7;
    for (int32_t cl = 0; cl < 2; cl++) {
        usi_cuda_pool d = {.planes = N * C, .H = H, .W = W, .C = C, .cl = cl};
        int32_t bad = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t h = 0; h < H; h++)
                    for (int64_t w = 0; w < W; w++) {
                        int64_t k = cl ? ((n * H + h) * W + w) * C + c : ((n * C + c) * H + h) * W + w, q = -1;
                        int64_t p = usi_cuda_pool_plane(&d, k, H * W, &q);
                        int64_t back = usi_cuda_pool_at(&d, p, H * W) + q * usi_cuda_pool_step(&d);
                        bad += p != n * C + c || q != h * W + w || back != k;
                    }
        CHECK(bad == 0, "%s pooling index: %d of %lld elements misplaced", cl ? "channels-last" : "NCHW", bad,
              (long long)(N * C * H * W));
    }
}

static void check_chunks(void)
{
    usi_optim_seg segs[3] = {{0, 70000, 1}, {70016, 5, 0}, {70080, 0, 1}};
    usi_cuda_chunk *ch = NULL;
    int32_t n = 0;
    usi_error *e = usi_cuda_optim_chunks(segs, 3, &ch, &n);
    CHECK(!e, "chunks");
    usi_error_free(e);
    CHECK(n == 3, "3 chunks, got %d", n);
    if (n == 3) {
        CHECK(ch[0].off == 0 && ch[0].n == USI_CUDA_CHUNK && ch[0].seg == 0 && ch[0].decays == 1, "first chunk");
        CHECK(ch[1].off == USI_CUDA_CHUNK && ch[1].n == 70000 - USI_CUDA_CHUNK && ch[1].seg == 0, "rest of seg 0");
        CHECK(ch[2].off == 70016 && ch[2].n == 5 && ch[2].seg == 1 && ch[2].decays == 0, "seg 1, no decay");
    }
    free(ch);
}

int main(void)
{
    api = usi_graph_api_get();
    check_supports();
    check_workspace();
    check_binary_plan();
    check_reduce_dims();
    check_matmul_strides();
    check_chunks();
    check_mixed_workspace();
    check_bf16_native();
    check_binary_plan_cl();
    check_cl_native();
    /* ResNet-50: the stem's norm and the first two of each of the 16
     * bottlenecks (the third's ReLU reads the residual sum). MobileNetV3-
     * Large: the 6 ReLU blocks (the first's depthwise norm; then expansion
     * and depthwise of 2 blocks at 24 channels and 3 at 40); its stem and
     * later blocks use hard-swish. */
    CHECK(check_layout_of("resnet50", resnet50, 1 + 16 * 2) == 1, "resnet50: the stem's max pool kept channels-last");
    check_layout_of("mobilenetv3_large", mobilenetv3, 1 + 2 * 5);
    check_pool_index();
    return check_status("test_cuda_host");
}
