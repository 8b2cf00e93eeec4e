/*
 * acme_tinynet: a complete backbone plugin written outside the USI tree.
 *
 * It needs only the SDK header and builds with one line:
 *
 *   cc -shared -fPIC -O2 $(pkg-config --cflags usi-sdk) -o acme_tinynet.so acme_tinynet.c
 *
 * Three conv-bn-relu stages, global average pooling and a linear head. The
 * network is described through the host's graph builder; the host owns the
 * tensors, the training and the parameter files.
 */
#include <usi/plugin.h>

USI_DECLARE_HOST; /* usi_host: set by usi_plugin_entry (USI_DEFINE_PLUGIN below) */

typedef struct tinynet {
    int64_t num_classes;
    int64_t width;
    double drop_path_rate;
} tinynet;

static const usi_param_desc params[] = {
    USI_PARAM_INT("num_classes", 1000, 1, 1e6, "number of output classes"),
    USI_PARAM_INT("img_size", 224, 8, 4096, "input side the network is built for"),
    USI_PARAM_FLOAT("drop_path_rate", 0.0, 0, 1, "stochastic depth of the last stage"),
    USI_PARAM_INT("width", 32, 4, 1024, "channels of the first stage (doubled per stage)"),
};

/* Which option fills which field of the instance. */
static const usi_option_field fields[] = {
    USI_FIELD_INT(tinynet, "num_classes", num_classes),
    USI_FIELD_INT(tinynet, "width", width),
    USI_FIELD_FLOAT(tinynet, "drop_path_rate", drop_path_rate),
};

static usi_error *tinynet_create(const usi_params *p, void **out)
{
    tinynet *t = usi_host->alloc(sizeof *t, 0);
    if (!t) return usi_host->error_new(USI_ERR_NOMEM, "acme_tinynet: out of memory");
    usi_error *e = usi_read_options(usi_host, p, fields, USI_COUNTOF(fields), t);
    if (e) {
        usi_host->free(t);
        return e;
    }
    *out = t;
    return NULL;
}

static void tinynet_destroy(void *inst) { usi_host->free(inst); }

/* conv3x3 -> batch norm -> relu, named "<scope>.conv.weight", "<scope>.bn.*". */
static usi_tensor *conv_bn_relu(usi_graph *g, usi_tensor *x, const char *scope,
                                int64_t cin, int64_t cout, int32_t stride)
{
    const usi_graph_api *G = usi_host->graph;
    int64_t wshape[4] = {cout, cin, 3, 3}, cshape[1] = {cout};
    usi_init kaiming = usi_init_kaiming_normal(USI_FAN_OUT, 1.4142135623730951);
    usi_init zeros = usi_init_zeros(), ones = usi_init_ones();
    usi_conv2d_desc conv = usi_conv2d(stride, 1, 1, 1);

    G->push_scope(g, scope);
    usi_tensor *w = G->param(g, "conv.weight", 4, wshape, &kaiming);
    usi_tensor *gamma = G->param(g, "bn.weight", 1, cshape, &ones);
    usi_tensor *beta = G->param(g, "bn.bias", 1, cshape, &zeros);
    usi_tensor *mean = G->buffer(g, "bn.running_mean", USI_DTYPE_F32, 1, cshape, &zeros);
    usi_tensor *var = G->buffer(g, "bn.running_var", USI_DTYPE_F32, 1, cshape, &ones);
    usi_tensor *count = G->buffer(g, "bn.num_batches_tracked", USI_DTYPE_I64, 0, NULL, &zeros);
    G->pop_scope(g);

    x = G->conv2d(g, x, w, NULL, &conv);
    x = G->batch_norm(g, x, gamma, beta, mean, var, count, 0.1, 1e-5);
    return G->activation(g, x, USI_ACT_RELU, 0);
}

static usi_tensor *tinynet_build(void *inst, usi_graph *g, usi_tensor *input)
{
    const tinynet *t = inst;
    const usi_graph_api *G = usi_host->graph;
    int64_t w = t->width;
    usi_tensor *x = conv_bn_relu(g, input, "stem", G->dim(input, 1), w, 1);
    x = conv_bn_relu(g, x, "stage1", w, 2 * w, 2);
    usi_tensor *y = conv_bn_relu(g, x, "stage2", 2 * w, 2 * w, 1);
    x = G->binary(g, USI_BIN_ADD, x, G->drop_path(g, y, t->drop_path_rate));
    x = conv_bn_relu(g, x, "stage3", 2 * w, 4 * w, 2);

    int32_t hw[2] = {2, 3};
    x = G->reduce(g, USI_REDUCE_MEAN, x, 2, hw, 0); /* [N, 4w] */

    int64_t fc_w[2] = {t->num_classes, 4 * w}, fc_b[1] = {t->num_classes};
    /* PyTorch's nn.Linear default: bound = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in). */
    usi_init fc_init = usi_init_kaiming_uniform(USI_FAN_IN, 0.5773502691896258);
    usi_init zeros = usi_init_zeros();
    usi_tensor *weight = G->param(g, "fc.weight", 2, fc_w, &fc_init);
    usi_tensor *bias = G->param(g, "fc.bias", 1, fc_b, &zeros);
    return G->linear(g, x, weight, bias);
}

static const usi_backbone_ops ops = {sizeof(usi_backbone_ops), tinynet_build};

static const usi_component tinynet_component = {
    .struct_size = sizeof(usi_component),
    .kind = USI_KIND_BACKBONE,
    .name = "acme_tinynet",
    .version = "1.2.0",
    .doc = "a small residual convnet from a third party",
    .params = params,
    .n_params = USI_COUNTOF(params),
    .create = tinynet_create,
    .destroy = tinynet_destroy,
    .ops = &ops,
};

/* The descriptor and usi_plugin_entry, the one exported symbol. */
USI_DEFINE_PLUGIN("acme_tinynet", "Acme Vision Ltd.", "Proprietary", "1.2.0", &tinynet_component);
