/* The one table of op cases. Every case runs on every device the driver
 * opens (test_backend_ops.c); every USI_OP_* must be recorded by at least
 * one of them. Shapes are small and odd (7x5 images, batch 1 and 3) so that
 * edge handling shows and the guarded device stays quick. */
#include "op_case.h"

#define L4(a, b, c, d) {.ndim = 4, .shape = {a, b, c, d}}
#define L3(a, b, c) {.ndim = 3, .shape = {a, b, c}}
#define L2(a, b) {.ndim = 2, .shape = {a, b}}
#define L1(a) {.ndim = 1, .shape = {a}}
/* Wider range: activations' kinks and saturation sit in [-4, 4]. */
#define W3(a, b, c) {.ndim = 3, .shape = {a, b, c}, .lo = -4, .hi = 4}
#define W2(a, b) {.ndim = 2, .shape = {a, b}, .lo = -4, .hi = 4}
/* Positive, away from 0 (variances, divisors). */
#define POS1(a) {.ndim = 1, .shape = {a}, .lo = 0.5, .hi = 2}
#define STAT1(a) {.ndim = 1, .shape = {a}, .no_grad = 1}
/* Weights, which stay fp32 NCHW in real graphs: no stored pass wraps them. */
#define PARAM1(a) {.ndim = 1, .shape = {a}, .param = 1}
#define VAR1(a) {.ndim = 1, .shape = {a}, .no_grad = 1, .lo = 0.5, .hi = 2}
#define LABELS(n, classes) {.ndim = 1, .shape = {n}, .dtype = USI_DTYPE_I32, .lo = 0, .hi = classes}
#define ABSENT {.absent = 1}

#define TRAIN 1
#define EVAL 0

#define CONV(...) .build = b_conv, .ref = r_conv, .a.conv = {__VA_ARGS__}
#define CONV_BN(...) .build = b_conv_bn, .ref = r_conv_bn, .a.conv = {__VA_ARGS__}
#define LINEAR(...) .build = b_linear, .ref = r_linear, .a.linear = {__VA_ARGS__}
#define MATMUL .build = b_matmul, .ref = r_matmul
#define BN(...) .build = b_bn, .ref = r_bn, .a.norm = {__VA_ARGS__}
#define LN(...) .build = b_ln, .ref = r_ln, .a.norm = {__VA_ARGS__}
#define POOL(...) .build = b_pool, .ref = r_pool, .a.pool = {__VA_ARGS__}
#define ACT(...) .build = b_act, .ref = r_act, .a.act = {__VA_ARGS__}
#define BIN(k) .build = b_bin, .ref = r_bin, .a.binary = {.kind = k}
#define SCALE(f) .build = b_scale, .ref = r_scale, .a.scale = {.factor = f}
#define REDUCE(...) .build = b_reduce, .ref = r_reduce, .a.reduce = {__VA_ARGS__}
#define SOFTMAX .build = b_softmax, .ref = r_softmax
#define ATTN(...) .build = b_attn, .ref = r_attn, .a.attention = {__VA_ARGS__}
#define LOSS(...) .build = b_loss, .ref = r_loss, .a.loss = {__VA_ARGS__}
/* Masks change with every forward, so finite differences mean nothing. */
#define DROPOUT(...) .build = b_dropout, .prop = p_dropout, .skip_fd = 1, .a.dropout = {__VA_ARGS__}
#define RESHAPE .build = b_reshape, .ref = r_copy
#define FLATTEN(...) .build = b_flatten, .ref = r_copy, .a.flatten = {__VA_ARGS__}
#define PERMUTE(...) .build = b_permute, .ref = r_permute, .a.permute = {.perm = {__VA_ARGS__}}
#define CONCAT(ax) .build = b_concat, .ref = r_concat, .a.concat = {.axis = ax}
#define SLICE(...) .build = b_slice, .ref = r_slice, .a.slice = {__VA_ARGS__}
#define PAD(...) .build = b_pad, .ref = r_pad, .a.pad = {__VA_ARGS__}
#define S2D(b) .build = b_s2d, .ref = r_s2d, .a.s2d = {.block = b}
#define CUSTOM(al) .build = b_custom, .ref = r_custom, .a.custom = {.alpha = al}
#define CUSTOM_DEV(al) .build = b_custom, .ref = r_custom, .a.custom = {.alpha = al, .device_kernels = 1}
#define GATHER(ax) .build = b_gather, .ref = r_gather, .a.gather = {.axis = ax}
/* An I32 index table in [0, rows), recorded as a constant. */
#define IDX(rows, ...) \
    {.ndim = sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t), .shape = {__VA_ARGS__}, \
     .dtype = USI_DTYPE_I32, .lo = 0, .hi = rows, .constant = 1}
#define IDX0(rows) {.ndim = 0, .dtype = USI_DTYPE_I32, .lo = 0, .hi = rows, .constant = 1}

const op_case op_cases[] = {
    /* -- convolution, linear, matmul -- */
    {"conv2d groups=2 stride=(2,1) pad=(1,2) dil=(1,2) bias", TRAIN, 3,
     {L4(3, 6, 7, 5), L4(4, 3, 3, 3), L1(4)},
     CONV(.stride = {2, 1}, .pad = {1, 2}, .dil = {1, 2}, .groups = 2, .bias = 1)},
    {"conv2d 3x3 stride 2 pad 1 batch 1", TRAIN, 3, {L4(1, 3, 7, 5), L4(5, 3, 3, 3), L1(5)},
     CONV(.stride = {2, 2}, .pad = {1, 1}, .dil = {1, 1}, .groups = 1, .bias = 1)},
    {"conv2d depthwise 3x3", TRAIN, 2, {L4(3, 5, 7, 5), L4(5, 1, 3, 3)},
     CONV(.stride = {1, 1}, .pad = {1, 1}, .dil = {1, 1}, .groups = 5)},
    {"conv2d 1x1 stride 2 no bias", TRAIN, 2, {L4(3, 3, 7, 5), L4(7, 3, 1, 1)},
     CONV(.stride = {2, 2}, .dil = {1, 1}, .groups = 1)},
    {"conv2d eval 5x5", EVAL, 3, {L4(3, 4, 7, 5), L4(6, 4, 5, 5), L1(6)},
     CONV(.stride = {1, 1}, .pad = {2, 2}, .dil = {1, 1}, .groups = 1, .bias = 1)},
    /* An eval batch norm after a conv: the engine folds it into the conv.
     * Leaves: x w b gamma beta mean var. */
    {"conv2d + batch_norm eval (folded) with bias", EVAL, 7,
     {L4(3, 4, 7, 5), L4(6, 2, 3, 3), L1(6), L1(6), L1(6), L1(6), POS1(6)},
     CONV_BN(.stride = {2, 1}, .pad = {1, 1}, .dil = {1, 1}, .groups = 2, .bias = 1)},
    {"conv2d + batch_norm eval (folded) no affine", EVAL, 7,
     {L4(1, 3, 7, 5), L4(5, 3, 1, 1), ABSENT, ABSENT, ABSENT, L1(5), POS1(5)},
     CONV_BN(.stride = {1, 1}, .dil = {1, 1}, .groups = 1)},
    {"linear 3-D input bias", TRAIN, 3, {L3(3, 2, 7), L2(5, 7), L1(5)}, LINEAR(.bias = 1)},
    {"linear no bias", TRAIN, 2, {L2(1, 9), L2(3, 9)}, LINEAR(.bias = 0)},
    {"matmul broadcast batch", TRAIN, 2, {L4(2, 1, 3, 5), L3(3, 5, 4)}, MATMUL},
    {"matmul 3-D @ 2-D", TRAIN, 2, {L3(1, 4, 6), L2(6, 3)}, MATMUL},

    /* -- normalisation; bn leaves: x w b running_mean running_var num_batches_tracked -- */
    {"batch_norm train", TRAIN, 6,
     {L4(3, 5, 7, 5), L1(5), L1(5), STAT1(5), VAR1(5),
      {.ndim = 0, .dtype = USI_DTYPE_I64, .no_grad = 1}},
     BN(.momentum = 0.1, .eps = 1e-5)},
    /* The pair a device may run as one (core/graph/fuse.c): forward against
     * float64, backward against cpu's two kernels. A gamma's or beta's step
     * of a finite difference moves every value of its channel, and some
     * cross the ReLU's kink at any seed, so no finite differences here;
     * each op's backward meets them in its own case. */
    {"batch_norm train + relu", TRAIN, 6,
     {L4(3, 5, 7, 5), PARAM1(5), PARAM1(5), STAT1(5), VAR1(5), ABSENT},
     .build = b_bn_relu, .ref = r_bn_relu, .skip_fd = 1, .fused = 1, .a.norm = {.momentum = 0.1, .eps = 1e-5}},
    {"batch_norm train batch 1 (2-D)", TRAIN, 6,
     {L2(3, 7), L1(7), L1(7), STAT1(7), VAR1(7), ABSENT}, BN(.momentum = 0.1, .eps = 1e-3)},
    {"batch_norm eval", EVAL, 6, {L4(3, 5, 7, 5), L1(5), L1(5), STAT1(5), VAR1(5), ABSENT},
     BN(.momentum = 0.1, .eps = 1e-5)},
    {"batch_norm train no affine, no running stats", TRAIN, 6,
     {L4(1, 3, 7, 5), ABSENT, ABSENT, ABSENT, ABSENT, ABSENT}, BN(.momentum = 0.1, .eps = 1e-5)},
    {"layer_norm no affine", TRAIN, 3, {L3(3, 2, 9), ABSENT, ABSENT}, LN(.axis = -1, .eps = 1e-5)},
    {"layer_norm last axis", TRAIN, 3, {L3(3, 4, 7), L1(7), L1(7)}, LN(.axis = -1, .eps = 1e-5)},
    {"layer_norm axis 1 of NCHW", TRAIN, 3, {L4(2, 5, 3, 4), L1(5), L1(5)},
     LN(.axis = 1, .eps = 1e-6)},

    /* -- pooling -- */
    {"max_pool 3x3 s2 p1", TRAIN, 1, {L4(2, 3, 7, 5)},
     POOL(.kind = USI_POOL_MAX, .kernel = {3, 3}, .stride = {2, 2}, .pad = {1, 1})},
    {"max_pool 3x3 s2 ceil", TRAIN, 1, {L4(1, 2, 7, 6)},
     POOL(.kind = USI_POOL_MAX, .kernel = {3, 3}, .stride = {2, 2}, .ceil = 1)},
    {"avg_pool 3x3 s2 p1 count_include_pad", TRAIN, 1, {L4(2, 3, 7, 5)},
     POOL(.kind = USI_POOL_AVG, .kernel = {3, 3}, .stride = {2, 2}, .pad = {1, 1},
          .count_include_pad = 1)},
    {"avg_pool 3x3 s2 p1 exclude pad", TRAIN, 1, {L4(2, 3, 7, 5)},
     POOL(.kind = USI_POOL_AVG, .kernel = {3, 3}, .stride = {2, 2}, .pad = {1, 1})},
    {"avg_pool 2x3 s2 p1 ceil count_include_pad", TRAIN, 1, {L4(3, 2, 7, 6)},
     POOL(.kind = USI_POOL_AVG, .kernel = {2, 3}, .stride = {2, 2}, .pad = {1, 1}, .ceil = 1,
          .count_include_pad = 1)},
    {"avg_pool 2x2 s2 ceil exclude pad", TRAIN, 1, {L4(1, 3, 7, 5)},
     POOL(.kind = USI_POOL_AVG, .kernel = {2, 2}, .stride = {2, 2}, .ceil = 1)},

    /* -- element-wise -- */
    {"relu", TRAIN, 1, {W3(3, 5, 7)}, ACT(.kind = USI_ACT_RELU)},
    {"relu6", TRAIN, 1, {{.ndim = 3, .shape = {3, 5, 7}, .lo = -3, .hi = 9}},
     ACT(.kind = USI_ACT_RELU6)},
    {"leaky_relu 0.1", TRAIN, 1, {W3(3, 5, 7)}, ACT(.kind = USI_ACT_LEAKY_RELU, .alpha = 0.1)},
    {"gelu (erf)", TRAIN, 1, {W3(3, 5, 7)}, ACT(.kind = USI_ACT_GELU)},
    {"gelu (tanh)", TRAIN, 1, {W3(3, 5, 7)}, ACT(.kind = USI_ACT_GELU_TANH)},
    {"silu", TRAIN, 1, {W3(3, 5, 7)}, ACT(.kind = USI_ACT_SILU)},
    {"hardswish", TRAIN, 1, {W3(3, 5, 7)}, ACT(.kind = USI_ACT_HARDSWISH)},
    {"hardsigmoid", TRAIN, 1, {W3(3, 5, 7)}, ACT(.kind = USI_ACT_HARDSIGMOID)},
    {"sigmoid", TRAIN, 1, {W3(3, 5, 7)}, ACT(.kind = USI_ACT_SIGMOID)},
    {"tanh", TRAIN, 1, {W3(3, 5, 7)}, ACT(.kind = USI_ACT_TANH)},
    /* Positive inputs only: finite differences need room on both sides of x
     * (h = 1e-3) and log's slope 1/x is steep near 0. */
    {"log", TRAIN, 1, {{.ndim = 3, .shape = {3, 5, 7}, .lo = 0.05, .hi = 4}},
     ACT(.kind = USI_ACT_LOG)},
    {"add broadcast [3,1,5]+[4,1]", TRAIN, 2, {L3(3, 1, 5), L2(4, 1)}, BIN(USI_BIN_ADD)},
    {"sub same shape", TRAIN, 2, {L3(3, 5, 7), L3(3, 5, 7)}, BIN(USI_BIN_SUB)},
    {"mul NCHW * [N,C,1,1]", TRAIN, 2, {L4(3, 5, 7, 5), L4(3, 5, 1, 1)}, BIN(USI_BIN_MUL)},
    {"mul [1,5,1,1] * NCHW", TRAIN, 2, {L4(1, 5, 1, 1), L4(3, 5, 7, 5)}, BIN(USI_BIN_MUL)},
    {"div by scalar-like [1]", TRAIN, 2, {L3(3, 5, 7), POS1(1)}, BIN(USI_BIN_DIV)},
    {"div [5,1] / [3,1,7]", TRAIN, 2,
     {L2(5, 1), {.ndim = 3, .shape = {3, 1, 7}, .lo = 0.5, .hi = 2}}, BIN(USI_BIN_DIV)},
    {"scale", TRAIN, 1, {L3(3, 5, 7)}, SCALE(-0.37)},

    /* -- reductions, softmax, attention -- */
    {"reduce mean (2,3) keepdim", TRAIN, 1, {L4(3, 5, 7, 5)},
     REDUCE(.kind = USI_REDUCE_MEAN, .keepdim = 1, .n_axes = 2, .axes = {2, 3})},
    {"reduce sum (0,2)", TRAIN, 1, {L4(3, 5, 7, 5)},
     REDUCE(.kind = USI_REDUCE_SUM, .n_axes = 2, .axes = {0, 2})},
    {"reduce mean axis 1", TRAIN, 1, {L3(3, 5, 7)},
     REDUCE(.kind = USI_REDUCE_MEAN, .n_axes = 1, .axes = {1})},
    {"reduce sum all", TRAIN, 1, {L3(3, 5, 7)},
     REDUCE(.kind = USI_REDUCE_SUM, .n_axes = 3, .axes = {0, 1, -1})},
    {"softmax [3,7]", TRAIN, 1, {W2(3, 7)}, SOFTMAX},
    {"softmax [2,3,5]", TRAIN, 1, {W3(2, 3, 5)}, SOFTMAX},
    /* leaves q[B,Nq,D] k[B,Nk,D] v[B,Nk,Dv] bias[Nq,Nk] */
    {"attention with bias", TRAIN, 4, {L3(2, 3, 4), L3(2, 5, 4), L3(2, 5, 6), L2(3, 5)},
     ATTN(.bias = 1, .scale = 0.5)},
    {"attention no bias", TRAIN, 3, {L3(1, 4, 3), L3(1, 2, 3), L3(1, 2, 5)},
     ATTN(.bias = 0, .scale = 0.7)},

    /* -- losses -- */
    {"loss_soft_ce", TRAIN, 2, {W2(3, 7), {.ndim = 2, .shape = {3, 7}, .lo = 0, .hi = 0.3}},
     LOSS(.kind = LOSS_SOFT_CE)},
    {"loss_ce smoothing 0.1", TRAIN, 2, {W2(3, 7), LABELS(3, 7)},
     LOSS(.kind = LOSS_CE, .smoothing = 0.1)},
    {"loss_ce batch 1", TRAIN, 2, {W2(1, 5), LABELS(1, 5)}, LOSS(.kind = LOSS_CE)},
    {"loss_kl T=2", TRAIN, 2, {W2(3, 7), W2(3, 7)}, LOSS(.kind = LOSS_KL, .temperature = 2)},

    /* -- dropout, by its properties; inputs hold no zeros -- */
    {"dropout train p=0.3", TRAIN, 1, {{.ndim = 2, .shape = {400, 50}, .lo = 0.5, .hi = 13}},
     DROPOUT(.p = 0.3)},
    {"dropout eval", EVAL, 1, {{.ndim = 2, .shape = {40, 50}, .lo = 0.5, .hi = 13}},
     DROPOUT(.p = 0.3)},
    {"drop_path train p=0.3", TRAIN, 1, {{.ndim = 2, .shape = {400, 50}, .lo = 0.5, .hi = 13}},
     DROPOUT(.p = 0.3, .path = 1)},
    {"drop_path eval", EVAL, 1, {{.ndim = 2, .shape = {40, 50}, .lo = 0.5, .hi = 13}},
     DROPOUT(.p = 0.3, .path = 1)},

    /* -- data movement -- */
    {"reshape [3,4,5] -> [5,-1]", TRAIN, 1, {L3(3, 4, 5)}, RESHAPE},
    {"flatten 1..-1", TRAIN, 1, {L4(3, 5, 7, 5)}, FLATTEN(.start = 1, .end = -1)},
    {"permute (0,2,3,1)", TRAIN, 1, {L4(2, 3, 4, 5)}, PERMUTE(0, 2, 3, 1)},
    {"permute (2,0,1)", TRAIN, 1, {L3(3, 5, 7)}, PERMUTE(2, 0, 1)},
    {"concat axis 1 of three", TRAIN, 3, {L3(2, 3, 5), L3(2, 1, 5), L3(2, 4, 5)}, CONCAT(1)},
    {"concat axis -1", TRAIN, 2, {L2(3, 2), L2(3, 5)}, CONCAT(-1)},
    {"slice axis 2 [1:7:2]", TRAIN, 1, {L3(3, 5, 7)},
     SLICE(.axis = 2, .start = 1, .end = 7, .step = 2)},
    {"slice axis 1 [-3:]", TRAIN, 1, {L3(3, 5, 7)},
     SLICE(.axis = 1, .start = -3, .end = 100, .step = 1)},
    {"pad NCHW spatial", TRAIN, 1, {L4(2, 3, 7, 5)},
     PAD(.pads = {0, 0, 0, 0, 1, 2, 3, 0}, .value = 0.5)},
    {"pad all dims", TRAIN, 1, {L3(3, 5, 7)}, PAD(.pads = {1, 0, 0, 2, 1, 1}, .value = -1)},
    {"space_to_depth 2", TRAIN, 1, {L4(2, 3, 4, 6)}, S2D(2)},
    {"space_to_depth 3 batch 1", TRAIN, 1, {L4(1, 2, 6, 3)}, S2D(3)},
    /* More indices than rows: some rows are picked several times (their
     * gradients add up), some never (theirs stay 0). */
    {"gather axis 1 of [3,5] by [4,6] (a relative-position bias)", TRAIN, 2,
     {L2(3, 5), IDX(5, 4, 6)}, GATHER(1)},
    {"gather axis 0 of [7,4] by [9]", TRAIN, 2, {L2(7, 4), IDX(7, 9)}, GATHER(0)},
    {"gather axis -2 of [2,6,3] by [2,5]", TRAIN, 2, {L3(2, 6, 3), IDX(6, 2, 5)}, GATHER(-2)},
    {"gather axis 1 of [3,5] by a 0-d index", TRAIN, 2, {L2(3, 5), IDX0(5)}, GATHER(1)},
    {"gather of an intermediate table (its gradient written, not added)", TRAIN, 2,
     {L3(2, 4, 3), IDX(4, 5)}, .build = b_gather_inner, .ref = r_gather, .a.gather = {.axis = 1}},
    {"gather eval", EVAL, 2, {L3(2, 4, 3), IDX(4, 3, 3)}, GATHER(1)},

    /* -- a plugin's custom op (op_custom.c) -- */
    {"custom scaled_product", TRAIN, 2, {L3(3, 5, 7), L3(3, 5, 7)}, CUSTOM(-1.5)},
    {"custom scaled_product, one input without gradient", TRAIN, 2,
     {L2(4, 9), {.ndim = 2, .shape = {4, 9}, .no_grad = 1}}, CUSTOM(0.75)},
    {"custom scaled_product eval", EVAL, 2, {L2(2, 3), L2(2, 3)}, CUSTOM(2)},
    /* the same op bringing CUDA kernels too (host kernels where there is no CUDA) */
    {"custom scaled_product_dev", TRAIN, 2, {L3(3, 5, 7), L3(3, 5, 7)}, CUSTOM_DEV(-1.5)},
    {"custom scaled_product_dev, one input without gradient", TRAIN, 2,
     {L2(4, 9), {.ndim = 2, .shape = {4, 9}, .no_grad = 1}}, CUSTOM_DEV(0.75)},
};

const int32_t n_op_cases = (int32_t)(sizeof op_cases / sizeof op_cases[0]);
