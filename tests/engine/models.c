#include "models.h"

#include <stdio.h>

#include "plugin/host.h"

static const usi_graph_api *A(void) { return usi_graph_api_get(); }

static double flops_acc;

static usi_tensor *conv(usi_graph *g, const char *name, usi_tensor *x, int64_t cout,
                        int k, int stride, int groups, int bias)
{
    int64_t cin = A()->dim(x, 1);
    int64_t ws[4] = {cout, cin / groups, k, k};
    usi_init ki = usi_init_kaiming_normal(USI_FAN_OUT, 0);
    char n[96];
    A()->push_scope(g, name);
    usi_tensor *w = A()->param(g, "weight", 4, ws, &ki);
    usi_tensor *b = NULL;
    if (bias) {
        int64_t bs[1] = {cout};
        usi_init z = usi_init_zeros();
        b = A()->param(g, "bias", 1, bs, &z);
    }
    A()->pop_scope(g);
    (void)n;
    usi_conv2d_desc d = usi_conv2d(stride, k / 2, 1, groups);
    usi_tensor *y = A()->conv2d(g, x, w, b, &d);
    if (y)
        flops_acc += 2.0 * (double)A()->dim(y, 0) * (double)cout * (double)A()->dim(y, 2) *
                     (double)A()->dim(y, 3) * (double)(cin / groups) * k * k;
    return y;
}

static usi_tensor *bn(usi_graph *g, const char *name, usi_tensor *x)
{
    int64_t c[1] = {A()->dim(x, 1)};
    usi_init one = usi_init_ones(), zero = usi_init_zeros();
    A()->push_scope(g, name);
    usi_tensor *w = A()->param(g, "weight", 1, c, &one);
    usi_tensor *b = A()->param(g, "bias", 1, c, &zero);
    usi_tensor *rm = A()->buffer(g, "running_mean", USI_DTYPE_F32, 1, c, &zero);
    usi_tensor *rv = A()->buffer(g, "running_var", USI_DTYPE_F32, 1, c, &one);
    usi_tensor *nb = A()->buffer(g, "num_batches_tracked", USI_DTYPE_I64, 0, NULL, &zero);
    A()->pop_scope(g);
    return A()->batch_norm(g, x, w, b, rm, rv, nb, 0.1, 1e-5);
}

static usi_tensor *linear(usi_graph *g, const char *name, usi_tensor *x, int64_t out)
{
    int64_t in = A()->dim(x, -1);
    int64_t ws[2] = {out, in}, bs[1] = {out};
    usi_init u = usi_init_uniform(-1.0 / 32, 1.0 / 32), z = usi_init_zeros();
    A()->push_scope(g, name);
    usi_tensor *w = A()->param(g, "weight", 2, ws, &u);
    usi_tensor *b = A()->param(g, "bias", 1, bs, &z);
    A()->pop_scope(g);
    flops_acc += 2.0 * (double)A()->dim(x, 0) * (double)in * (double)out;
    return A()->linear(g, x, w, b);
}

static usi_tensor *relu(usi_graph *g, usi_tensor *x) { return A()->activation(g, x, USI_ACT_RELU, 0); }

static usi_tensor *gap(usi_graph *g, usi_tensor *x)
{
    int32_t axes[2] = {2, 3};
    return A()->reduce(g, USI_REDUCE_MEAN, x, 2, axes, 0);
}

static usi_tensor *resnet_block(usi_graph *g, usi_tensor *x, int64_t planes, int stride,
                                int bottleneck)
{
    int64_t expansion = bottleneck ? 4 : 1, cin = A()->dim(x, 1);
    usi_tensor *y;
    if (bottleneck) {
        y = relu(g, bn(g, "bn1", conv(g, "conv1", x, planes, 1, 1, 1, 0)));
        y = relu(g, bn(g, "bn2", conv(g, "conv2", y, planes, 3, stride, 1, 0)));
        y = bn(g, "bn3", conv(g, "conv3", y, planes * 4, 1, 1, 1, 0));
    } else {
        y = relu(g, bn(g, "bn1", conv(g, "conv1", x, planes, 3, stride, 1, 0)));
        y = bn(g, "bn2", conv(g, "conv2", y, planes, 3, 1, 1, 0));
    }
    usi_tensor *sc = x;
    if (stride != 1 || cin != planes * expansion) {
        A()->push_scope(g, "downsample");
        sc = bn(g, "1", conv(g, "0", x, planes * expansion, 1, stride, 1, 0));
        A()->pop_scope(g);
    }
    return relu(g, A()->binary(g, USI_BIN_ADD, y, sc));
}

usi_tensor *model_resnet(usi_graph *g, usi_tensor *x, int depth, int num_classes)
{
    static const int blocks18[4] = {2, 2, 2, 2}, blocks50[4] = {3, 4, 6, 3};
    const int *blocks = depth == 50 ? blocks50 : blocks18;
    int bottleneck = depth == 50;
    flops_acc = 0;
    usi_tensor *y = relu(g, bn(g, "bn1", conv(g, "conv1", x, 64, 7, 2, 1, 0)));
    usi_pool2d_desc mp = usi_pool2d(USI_POOL_MAX, 3, 2, 1);
    y = A()->pool2d(g, y, &mp);
    for (int s = 0; s < 4; s++) {
        char name[16];
        snprintf(name, sizeof name, "layer%d", s + 1);
        A()->push_scope(g, name);
        for (int b = 0; b < blocks[s]; b++) {
            char idx[16];
            snprintf(idx, sizeof idx, "%d", b);
            A()->push_scope(g, idx);
            y = resnet_block(g, y, 64 << s, b == 0 && s > 0 ? 2 : 1, bottleneck);
            A()->pop_scope(g);
        }
        A()->pop_scope(g);
    }
    return linear(g, "fc", gap(g, y), num_classes);
}

static int64_t make_div(double v) { int64_t r = ((int64_t)(v + 4) / 8) * 8; return r < 0.9 * v ? r + 8 : r; }

static usi_tensor *squeeze_excite(usi_graph *g, usi_tensor *x)
{
    int64_t c = A()->dim(x, 1);
    int32_t axes[2] = {2, 3};
    A()->push_scope(g, "se");
    usi_tensor *s = A()->reduce(g, USI_REDUCE_MEAN, x, 2, axes, 1);
    s = relu(g, conv(g, "conv_reduce", s, make_div(c / 4.0), 1, 1, 1, 1));
    s = conv(g, "conv_expand", s, c, 1, 1, 1, 1);
    s = A()->activation(g, s, USI_ACT_HARDSIGMOID, 0);
    A()->pop_scope(g);
    return A()->binary(g, USI_BIN_MUL, x, s);
}

typedef struct mbv3_block { int k, exp, out, se, hs, stride; } mbv3_block;

usi_tensor *model_mobilenetv3_large(usi_graph *g, usi_tensor *x, int num_classes)
{
    static const mbv3_block cfg[] = {
        {3, 16, 16, 0, 0, 1},   {3, 64, 24, 0, 0, 2},   {3, 72, 24, 0, 0, 1},
        {5, 72, 40, 1, 0, 2},   {5, 120, 40, 1, 0, 1},  {5, 120, 40, 1, 0, 1},
        {3, 240, 80, 0, 1, 2},  {3, 200, 80, 0, 1, 1},  {3, 184, 80, 0, 1, 1},
        {3, 184, 80, 0, 1, 1},  {3, 480, 112, 1, 1, 1}, {3, 672, 112, 1, 1, 1},
        {5, 672, 160, 1, 1, 2}, {5, 960, 160, 1, 1, 1}, {5, 960, 160, 1, 1, 1},
    };
    flops_acc = 0;
    usi_tensor *y = conv(g, "conv_stem", x, 16, 3, 2, 1, 0);
    y = A()->activation(g, bn(g, "bn1", y), USI_ACT_HARDSWISH, 0);
    A()->push_scope(g, "blocks");
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        const mbv3_block *b = &cfg[i];
        int act = b->hs ? USI_ACT_HARDSWISH : USI_ACT_RELU;
        char idx[16];
        snprintf(idx, sizeof idx, "%zu", i);
        A()->push_scope(g, idx);
        usi_tensor *h = y;
        int64_t cin = A()->dim(y, 1);
        if (b->exp != cin)
            h = A()->activation(g, bn(g, "bn1", conv(g, "conv_pw", h, b->exp, 1, 1, 1, 0)), act, 0);
        h = A()->activation(g, bn(g, "bn2", conv(g, "conv_dw", h, b->exp, b->k, b->stride,
                                                 b->exp, 0)), act, 0);
        if (b->se) h = squeeze_excite(g, h);
        h = bn(g, "bn3", conv(g, "conv_pwl", h, b->out, 1, 1, 1, 0));
        if (b->stride == 1 && cin == b->out) h = A()->binary(g, USI_BIN_ADD, h, y);
        y = h;
        A()->pop_scope(g);
    }
    A()->pop_scope(g);
    y = A()->activation(g, bn(g, "bn2", conv(g, "conv_head0", y, 960, 1, 1, 1, 0)),
                        USI_ACT_HARDSWISH, 0);
    y = A()->activation(g, linear(g, "conv_head", gap(g, y), 1280), USI_ACT_HARDSWISH, 0);
    return linear(g, "classifier", y, num_classes);
}

usi_tensor *model_small_convnet(usi_graph *g, usi_tensor *x, int width, int num_classes)
{
    flops_acc = 0;
    usi_pool2d_desc mp = usi_pool2d(USI_POOL_MAX, 2, 2, 0);
    usi_tensor *y = relu(g, bn(g, "bn1", conv(g, "conv1", x, width, 3, 1, 1, 0)));
    y = A()->pool2d(g, y, &mp);
    y = relu(g, bn(g, "bn2", conv(g, "conv2", y, 2 * width, 3, 1, 1, 0)));
    y = A()->pool2d(g, y, &mp);
    y = relu(g, bn(g, "bn3", conv(g, "conv3", y, 2 * width, 3, 1, 1, 0)));
    /* Keep the 7x7 layout: averaging it away costs Fashion-MNIST accuracy. */
    return linear(g, "fc", A()->flatten(g, y, 1, -1), num_classes);
}

double model_forward_flops(const usi_graph *g)
{
    (void)g;
    return flops_acc;
}
