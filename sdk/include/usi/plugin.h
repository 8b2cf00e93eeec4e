/*
 * usi/plugin.h -- the USI plugin ABI, version 1.2.
 *
 * This is the only header a plugin needs. It is header-only: a plugin links
 * nothing of the USI core, it receives every service it uses (errors, logging,
 * memory, random numbers, parameters, the graph builder) in a table from the
 * host during the handshake.
 *
 * A plugin is a shared object that exports exactly one symbol:
 *
 *     USI_PLUGIN_EXPORT usi_error *usi_plugin_entry(usi_negotiate *n);
 *
 * The host fills n->host_abi_major/minor and n->host; the plugin checks them,
 * then writes n->plugin_abi_major/minor and n->desc, and returns NULL. To refuse
 * the host it returns an error made with n->host->error_new(...).
 * usi_negotiate_reply() below does all of that.
 *
 * The host table n->host (and the graph builder in it) stays valid until the
 * plugin is unloaded, which is after every instance is destroyed: keep the
 * pointer in a static variable. It is handed over only in the handshake;
 * create(), build() and the other entry points do not receive it again.
 *
 * Rules that keep old binaries working:
 *   - Every struct that crosses the boundary starts with `size_t struct_size`,
 *     set by whoever fills the struct to sizeof(that struct) as it compiled it.
 *   - Within major version 1, structs only grow at the tail. Each field added
 *     after 1.0 is marked with the minor that added it ("1.1:"). A reader
 *     checks struct_size before it reads a tail field (USI_HAS_FIELD below).
 *   - Each struct's size at each minor is frozen in a constant,
 *     USI_<STRUCT>_STRUCT_SIZE_1_<minor> (PJRT's idea): the bytes up to and
 *     including its last field of that minor. The host checks every struct a
 *     plugin hands over against the frozen size of the minor the plugin
 *     declares, never against its own sizeof: a 1.0 plugin keeps loading in a
 *     1.1 host, and a plugin that claims 1.1 but fills a 1.0-sized struct is
 *     refused, naming the struct and the missing field. A struct without a
 *     _1_1 constant did not change in 1.1.
 *   - Arrays of structs (parameter schemas) are walked with a stride equal to
 *     the struct_size of their first element.
 *   - Enumerated values cross as int32_t, never as a C enum type.
 *   - Errors are made and freed by the host; NULL means success.
 *   - Whoever allocates frees. Strings a plugin hands out are static or live
 *     until the plugin is unloaded (or, for instance strings, destroyed).
 *   - Nothing in a plugin calls exit() or abort(); it returns an error.
 *     (usi loads each file in a child process first: a plugin that crashes,
 *     hangs or exits in its entry is refused by name. A crash later is
 *     reported with the file and what it was doing, then usi dies of it.)
 *   - stdout belongs to the host: `usi plugins --json` and the other --json
 *     commands print one document there. A plugin writes nothing to stdout
 *     (no printf, puts or std::cout); it logs with the host's log service,
 *     n->host->log(USI_LOG_INFO, ...), which goes to stderr. Under --json
 *     usi sends what plugin code prints anyway to stderr.
 *
 * C++: the header compiles as C++11 and later. It declares usi_plugin_entry
 * inside its extern "C" block, so a .cpp file that includes it and defines
 * the entry exports the plain C name (without it, a C++ compiler exports a
 * mangled name that usi cannot find, and says so). The USI_PARAM_*,
 * USI_DECLARE_HOST and USI_DEFINE_PLUGIN shorthands work there too.
 */
#ifndef USI_PLUGIN_H
#define USI_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Versions and symbols                                                     */
/* ------------------------------------------------------------------------ */

/* History of major 1 (each minor only adds tail fields):
 *   1.0  the first release.
 *   1.1  usi_custom_op: forward_cuda, backward_cuda (per-device kernels);
 *        usi_graph_api: fail (a plugin's own build error).
 *   1.2  usi_graph_api: constant (fixed values from the plugin, not saved),
 *        gather (rows of a table picked by a constant index table).
 * A plugin declares the minor it was built against. The host accepts any
 * minor from its floor up; one newer than the host's loads, but the services
 * of the newer minor are missing from the host's tables (the host says so
 * once), so such a plugin checks with USI_HAS_FIELD before it uses them. */
#define USI_ABI_MAJOR 1
#define USI_ABI_MINOR 2

/* The one symbol a plugin exports, and its type for dlsym(). */
#define USI_PLUGIN_ENTRY_SYMBOL "usi_plugin_entry"

#if defined(_WIN32)
#define USI_PLUGIN_EXPORT __declspec(dllexport)
#else
#define USI_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* True when struct pointer `s` (whose struct_size says how much the writer
 * filled) holds field `f`. Use it before reading any field added after v1.0. */
#define USI_HAS_FIELD(s, f) \
    ((s)->struct_size >= offsetof(__typeof__(*(s)), f) + sizeof((s)->f))

/* Bytes of `type` up to and including `last_field`: the frozen size of a
 * struct at the minor whose last field that is. Unlike sizeof it ignores
 * tail padding, and it never changes when a later minor adds fields. */
#define USI_STRUCT_SIZE(type, last_field) \
    (offsetof(type, last_field) + sizeof(((type *)0)->last_field))

/* ------------------------------------------------------------------------ */
/* Opaque handles, all owned by the host                                    */
/* ------------------------------------------------------------------------ */

typedef struct usi_error usi_error;     /* an error; NULL means success      */
typedef struct usi_rng usi_rng;         /* a random stream, one per caller   */
typedef struct usi_params usi_params;   /* a component's validated options   */
typedef struct usi_graph usi_graph;     /* a network being recorded          */
typedef struct usi_tensor usi_tensor;   /* a node of a graph                 */

/* ------------------------------------------------------------------------ */
/* Small shared enumerations (cross as int32_t)                             */
/* ------------------------------------------------------------------------ */

enum {                       /* error codes for error_new()                  */
    USI_ERR_INVALID = 1,     /* bad argument, option or input                */
    USI_ERR_UNSUPPORTED = 2, /* valid, but this build or plugin can't do it  */
    USI_ERR_IO = 3,          /* a file could not be read or written          */
    USI_ERR_NOMEM = 4,       /* out of memory                                */
    USI_ERR_VERSION = 5,     /* ABI or struct version mismatch               */
    USI_ERR_INTERNAL = 6     /* a bug: please report it                      */
};

enum {                       /* log levels for log()                         */
    USI_LOG_DEBUG = 0,
    USI_LOG_INFO = 1,
    USI_LOG_WARN = 2,
    USI_LOG_ERROR = 3
};

enum {                       /* element types                                */
    USI_DTYPE_F32 = 0,
    USI_DTYPE_BF16 = 1,
    USI_DTYPE_F16 = 2,
    USI_DTYPE_I32 = 3,
    USI_DTYPE_I64 = 4,
    USI_DTYPE_U8 = 5
};

enum {                       /* component kinds                              */
    USI_KIND_BACKBONE = 1,   /* builds a student network                     */
    USI_KIND_TEACHER = 2,    /* gives frozen logits for distillation         */
    USI_KIND_AUGMENT = 3     /* changes a sample or a batch                  */
};

enum {                       /* parameter types of a schema                  */
    USI_PARAM_INT = 1,       /* int64; default in def_int                    */
    USI_PARAM_FLOAT = 2,     /* double; default in def_float                 */
    USI_PARAM_BOOL = 3,      /* 0 or 1; default in def_int                   */
    USI_PARAM_STRING = 4,    /* default in def_string; see choices           */
    USI_PARAM_FLOAT_LIST = 5 /* doubles; default in def_string, "a, b, c"    */
};

enum {                       /* interpolation modes                          */
    USI_INTERP_NEAREST = 0,
    USI_INTERP_BILINEAR = 1,
    USI_INTERP_BICUBIC = 2
};

/* ------------------------------------------------------------------------ */
/* Data views                                                               */
/* ------------------------------------------------------------------------ */

/* An 8-bit image, rows top to bottom, channels interleaved (HWC). */
typedef struct usi_image {
    size_t struct_size;
    int32_t width;
    int32_t height;
    int32_t channels;        /* 1 (grey) or 3 (RGB)                          */
    int32_t stride;          /* bytes from one row to the next               */
    uint8_t *data;           /* host-owned; (re)size with image_alloc()      */
} usi_image;
#define USI_IMAGE_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_image, data)

/* A float batch being trained on: images NCHW, normalised; targets are
 * probability rows (one-hot before any mixing). Batch augments edit both in
 * place. */
typedef struct usi_batch {
    size_t struct_size;
    int32_t n, c, h, w;
    float *images;           /* [n, c, h, w]                                 */
    int32_t num_classes;
    float *targets;          /* [n, num_classes], each row sums to 1         */
} usi_batch;
#define USI_BATCH_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_batch, targets)

/* A dense tensor in memory, for engine teachers and custom-op kernels. */
#define USI_MAX_DIMS 8
typedef struct usi_tensor_view {
    size_t struct_size;
    int32_t dtype;           /* USI_DTYPE_*                                  */
    int32_t device;          /* 0 = host memory; >0 = accelerator ordinal+1  */
    int32_t ndim;
    int32_t reserved;
    int64_t shape[USI_MAX_DIMS];
    int64_t strides[USI_MAX_DIMS]; /* in elements                            */
    void *data;
} usi_tensor_view;
#define USI_TENSOR_VIEW_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_tensor_view, data)

/* ------------------------------------------------------------------------ */
/* Graph builder: how backbones and graph teachers describe a network       */
/* ------------------------------------------------------------------------ */
/*
 * Ops record nodes; nothing runs while a plugin builds. Shapes are inferred as
 * each node is added (logical layout NCHW). On a bad shape or argument the op
 * records the graph's first error and returns NULL; an op given a NULL input
 * returns NULL too, so a build function needs no error check after every call:
 * the host reports the first error (with the op, node and shapes) when build
 * returns. Parameter names are the scope path plus the given name, e.g.
 * push_scope("layer1"), push_scope("0"), param("conv1.weight") gives
 * "layer1.0.conv1.weight" -- the same names as timm's state_dict.
 */

enum {                       /* parameter initialisers                       */
    USI_INIT_ZEROS = 0,
    USI_INIT_ONES = 1,
    USI_INIT_CONSTANT = 2,        /* value                                   */
    USI_INIT_UNIFORM = 3,         /* lo, hi                                  */
    USI_INIT_NORMAL = 4,          /* mean = value, std                       */
    USI_INIT_TRUNC_NORMAL = 5,    /* mean = value, std, cut at [lo, hi]      */
    USI_INIT_KAIMING_NORMAL = 6,  /* std = gain / sqrt(fan)                  */
    USI_INIT_KAIMING_UNIFORM = 7, /* bound = gain * sqrt(3 / fan)            */
    USI_INIT_XAVIER_UNIFORM = 8   /* bound = gain * sqrt(6 / (in + out))     */
};

enum {                       /* fan for kaiming initialisers                 */
    USI_FAN_IN = 0,
    USI_FAN_OUT = 1
};

/* fan_in = shape[1] * prod(shape[2:]), fan_out = shape[0] * prod(shape[2:]). */
typedef struct usi_init {
    size_t struct_size;
    int32_t kind;            /* USI_INIT_*                                   */
    int32_t fan;             /* USI_FAN_* (kaiming)                          */
    double value;            /* constant, or mean                            */
    double std;
    double lo, hi;
    double gain;             /* kaiming/xavier; sqrt(2) for relu             */
} usi_init;
#define USI_INIT_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_init, gain)

typedef struct usi_conv2d_desc {
    size_t struct_size;
    int32_t stride[2];       /* h, w                                         */
    int32_t padding[2];      /* h, w, the same on both sides                 */
    int32_t dilation[2];     /* h, w                                         */
    int32_t groups;          /* in_channels for depthwise                    */
} usi_conv2d_desc;
#define USI_CONV2D_DESC_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_conv2d_desc, groups)

enum { USI_POOL_MAX = 0, USI_POOL_AVG = 1 };

typedef struct usi_pool2d_desc {
    size_t struct_size;
    int32_t kind;            /* USI_POOL_*                                   */
    int32_t kernel[2];
    int32_t stride[2];
    int32_t padding[2];
    int32_t ceil_mode;
    int32_t count_include_pad; /* avg pool: padded zeros count in the mean   */
} usi_pool2d_desc;
#define USI_POOL2D_DESC_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_pool2d_desc, count_include_pad)

enum {                       /* element-wise activations                     */
    USI_ACT_RELU = 0,
    USI_ACT_RELU6 = 1,
    USI_ACT_LEAKY_RELU = 2,  /* alpha = negative slope                       */
    USI_ACT_GELU = 3,        /* erf form                                     */
    USI_ACT_GELU_TANH = 4,   /* tanh approximation                           */
    USI_ACT_SILU = 5,
    USI_ACT_HARDSWISH = 6,
    USI_ACT_HARDSIGMOID = 7, /* relu6(x + 3) / 6, as PyTorch                 */
    USI_ACT_SIGMOID = 8,
    USI_ACT_TANH = 9,
    USI_ACT_LOG = 10         /* natural log; x is clamped below at 1e-30 so
                                a zero probability gives -69, not -inf  */
};

enum { USI_BIN_ADD = 0, USI_BIN_SUB = 1, USI_BIN_MUL = 2, USI_BIN_DIV = 3 };
enum { USI_REDUCE_MEAN = 0, USI_REDUCE_SUM = 1 };

/* A layer with its own kernels, recorded with usi_graph_api.custom().
 *
 * infer_shape and forward_cpu are required: the CPU kernels are the reference
 * and the fallback. Kernels for other devices are optional (1.1). A graph runs
 * on one device; when the op has no kernel for it, the engine runs the CPU
 * kernels on the host with explicit copies (inputs down, outputs up, logged
 * once as slow), so an op with CPU kernels alone runs everywhere.
 *
 * Every kernel sees views whose data pointers are memory of the device it is
 * for (view.device says which: 0 host, N+1 accelerator N) and returns NULL or
 * an error made with host->error_new. backward_cpu may be NULL: the op then
 * passes no gradient to its inputs.
 *
 * Set struct_size = sizeof(usi_custom_op) and fill it with designated
 * initialisers (.name = ..., .forward_cpu = ...): fields of later minors then
 * start NULL. When the op is recorded, the host checks it against the frozen
 * size of the minor its plugin declared: a plugin declaring 1.1 whose op is
 * 1.0-sized is refused, naming the missing field. */
typedef struct usi_custom_op {
    size_t struct_size;
    const char *name;
    /* Output shape from input shapes (data pointers are NULL here). */
    usi_error *(*infer_shape)(const void *attrs, int32_t n_inputs,
                              const usi_tensor_view *inputs,
                              usi_tensor_view *output);
    /* output = f(inputs) on host memory. */
    usi_error *(*forward_cpu)(const void *attrs, int32_t n_inputs,
                              const usi_tensor_view *inputs,
                              usi_tensor_view *output);
    /* grad_inputs[i] += d loss / d inputs[i]; a NULL data pointer means no
     * gradient is wanted for that input. */
    usi_error *(*backward_cpu)(const void *attrs, int32_t n_inputs,
                               const usi_tensor_view *inputs,
                               const usi_tensor_view *output,
                               const usi_tensor_view *grad_output,
                               usi_tensor_view *grad_inputs);
    /* 1.1: the same two kernels for CUDA devices, or NULL. Views hold device
     * memory; `stream` is the cudaStream_t to enqueue on. Return without
     * synchronising: the engine orders later work on the same stream. A
     * plugin built for 1.1 leaves both NULL when it has no CUDA kernels. */
    usi_error *(*forward_cuda)(const void *attrs, int32_t n_inputs,
                               const usi_tensor_view *inputs,
                               usi_tensor_view *output, void *stream);
    usi_error *(*backward_cuda)(const void *attrs, int32_t n_inputs,
                                const usi_tensor_view *inputs,
                                const usi_tensor_view *output,
                                const usi_tensor_view *grad_output,
                                usi_tensor_view *grad_inputs, void *stream);
} usi_custom_op;
#define USI_CUSTOM_OP_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_custom_op, backward_cpu)
#define USI_CUSTOM_OP_STRUCT_SIZE_1_1 USI_STRUCT_SIZE(usi_custom_op, backward_cuda)

typedef struct usi_graph_api {
    size_t struct_size;

    /* -- state -- */
    /* First error recorded while building, or NULL. Valid until the next op.
     * To record your own (bad option, wrong input), use fail() (1.1). */
    const char *(*error_message)(const usi_graph *g);
    /* 1 when the graph is built for training (batch statistics, dropout). */
    int32_t (*is_training)(const usi_graph *g);
    /* Name scopes: push "layer1" then "0" to name "layer1.0.<name>". */
    void (*push_scope)(usi_graph *g, const char *name);
    void (*pop_scope)(usi_graph *g);

    /* -- tensors -- */
    /* Number of dims of t, or 0 when t is NULL. */
    int32_t (*ndim)(const usi_tensor *t);
    /* Size of dim `axis` (negative counts from the end), or 0 when invalid. */
    int64_t (*dim)(const usi_tensor *t, int32_t axis);
    /* A trainable float parameter, saved and loaded by its scoped name.
     * ndim 0 with shape NULL declares a scalar (a 0-d tensor, shape []). */
    usi_tensor *(*param)(usi_graph *g, const char *name, int32_t ndim,
                         const int64_t *shape, const usi_init *init);
    /* A non-trainable state tensor (running mean, counters, index tables),
     * saved and loaded by name like a parameter but never given a gradient.
     * A 0-d buffer, as batch norm's num_batches_tracked:
     *   buffer(g, "num_batches_tracked", USI_DTYPE_I64, 0, NULL, &zeros). */
    usi_tensor *(*buffer)(usi_graph *g, const char *name, int32_t dtype,
                          int32_t ndim, const int64_t *shape,
                          const usi_init *init);

    /* -- layers -- */
    /* x[N,Cin,H,W] * w[Cout,Cin/groups,KH,KW] + b[Cout] (b may be NULL). */
    usi_tensor *(*conv2d)(usi_graph *g, usi_tensor *x, usi_tensor *w,
                          usi_tensor *b, const usi_conv2d_desc *d);
    /* x[...,In] w[Out,In]^T + b[Out] (b may be NULL). */
    usi_tensor *(*linear)(usi_graph *g, usi_tensor *x, usi_tensor *w,
                          usi_tensor *b);
    /* a[...,M,K] @ b[...,K,N], batch dims broadcast. */
    usi_tensor *(*matmul)(usi_graph *g, usi_tensor *a, usi_tensor *b);
    /* Batch norm over channel dim 1 of x[N,C,...]. Training: batch statistics
     * (biased variance to normalise, unbiased for the running update with
     * `momentum`), num_batches_tracked (I64 scalar, may be NULL) += 1.
     * Eval: running statistics. weight/bias may be NULL. */
    usi_tensor *(*batch_norm)(usi_graph *g, usi_tensor *x, usi_tensor *weight,
                              usi_tensor *bias, usi_tensor *running_mean,
                              usi_tensor *running_var,
                              usi_tensor *num_batches_tracked,
                              double momentum, double eps);
    /* Layer norm over one axis: -1 (last dim) or 1 (channels of NCHW). */
    usi_tensor *(*layer_norm)(usi_graph *g, usi_tensor *x, usi_tensor *weight,
                              usi_tensor *bias, int32_t axis, double eps);
    /* USI_ACT_*; alpha is used by LEAKY_RELU only. */
    usi_tensor *(*activation)(usi_graph *g, usi_tensor *x, int32_t act,
                              double alpha);
    /* USI_BIN_* with numpy broadcasting. */
    usi_tensor *(*binary)(usi_graph *g, int32_t op, usi_tensor *a,
                          usi_tensor *b);
    /* x * s. */
    usi_tensor *(*scale)(usi_graph *g, usi_tensor *x, double s);
    /* Max or average pooling over H, W of NCHW. */
    usi_tensor *(*pool2d)(usi_graph *g, usi_tensor *x,
                          const usi_pool2d_desc *d);
    /* USI_REDUCE_* over the listed axes. */
    usi_tensor *(*reduce)(usi_graph *g, int32_t op, usi_tensor *x,
                          int32_t n_axes, const int32_t *axes,
                          int32_t keepdim);
    /* Softmax over the last axis. */
    usi_tensor *(*softmax)(usi_graph *g, usi_tensor *x);
    /* softmax(q k^T * scale + bias) v; q[...,Nq,D] k[...,Nk,D] v[...,Nk,Dv];
     * bias (may be NULL) broadcasts to [...,Nq,Nk]. */
    usi_tensor *(*attention)(usi_graph *g, usi_tensor *q, usi_tensor *k,
                             usi_tensor *v, usi_tensor *bias, double scale);
    /* Training only (identity in eval): zero with probability p, scale 1/(1-p). */
    usi_tensor *(*dropout)(usi_graph *g, usi_tensor *x, double p);
    /* Training only: drop whole samples (dim 0) with probability p. */
    usi_tensor *(*drop_path)(usi_graph *g, usi_tensor *x, double p);

    /* -- shape -- */
    /* New shape with the same element count; one entry may be -1. */
    usi_tensor *(*reshape)(usi_graph *g, usi_tensor *x, int32_t ndim,
                           const int64_t *shape);
    /* out.shape[i] = x.shape[perm[i]]; perm has ndim(x) entries. */
    usi_tensor *(*permute)(usi_graph *g, usi_tensor *x, const int32_t *perm);
    /* Join n tensors along axis; other dims must match. */
    usi_tensor *(*concat)(usi_graph *g, int32_t n, usi_tensor *const *xs,
                          int32_t axis);
    /* x[..., start:end:step, ...] along axis (python semantics, step > 0). */
    usi_tensor *(*slice)(usi_graph *g, usi_tensor *x, int32_t axis,
                         int64_t start, int64_t end, int64_t step);
    /* Constant padding; pads holds (before, after) for each dim of x. */
    usi_tensor *(*pad)(usi_graph *g, usi_tensor *x, const int64_t *pads,
                       double value);
    /* Merge dims start..end (inclusive; negative counts from the end). */
    usi_tensor *(*flatten)(usi_graph *g, usi_tensor *x, int32_t start,
                           int32_t end);
    /* [N,C,H,W] -> [N,C*b*b,H/b,W/b], as TResNet's stem (channel order
     * b_row, b_col, c). */
    usi_tensor *(*space_to_depth)(usi_graph *g, usi_tensor *x, int32_t block);

    /* -- losses (scalar outputs, mean over the batch) -- */
    /* -sum(targets * log_softmax(logits)); targets are probability rows. */
    usi_tensor *(*loss_soft_ce)(usi_graph *g, usi_tensor *logits,
                                usi_tensor *targets);
    /* Cross-entropy with I32 labels[N] and label smoothing. */
    usi_tensor *(*loss_ce)(usi_graph *g, usi_tensor *logits,
                           usi_tensor *labels, double smoothing);
    /* T^2 * KL(softmax(teacher/T) || softmax(student/T)), batchmean. */
    usi_tensor *(*loss_kl)(usi_graph *g, usi_tensor *student_logits,
                           usi_tensor *teacher_logits, double temperature);

    /* -- extension -- */
    /* A node run by the plugin's own kernels; attrs is passed back as is and
     * must live as long as the graph. */
    usi_tensor *(*custom)(usi_graph *g, const usi_custom_op *op,
                          int32_t n_inputs, usi_tensor *const *inputs,
                          const void *attrs);

    /* -- 1.1 -- */
    /* Record the plugin's own message (printf-style) as the graph's first
     * error, as an op does on a bad shape: the host reports it, naming the
     * component, when build returns. Every later op returns NULL, so build
     * may return NULL at once. Use it instead of logging and returning NULL,
     * which leaves the user with "the network returned no output". */
    void (*fail)(usi_graph *g, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 2, 3)))
#endif
        ;

    /* -- 1.2 -- */
    /* A tensor of fixed values the plugin gives now (copied; dtype F32 or
     * I32, the data dense row-major): never trained, and not saved or loaded
     * with the parameters and buffers (a PyTorch buffer registered with
     * persistent=False), since every build makes it again. The name is
     * scoped like a parameter's and only names the node. Index tables for
     * gather() are I32 constants. */
    usi_tensor *(*constant)(usi_graph *g, const char *name, int32_t dtype,
                            int32_t ndim, const int64_t *shape,
                            const void *data);
    /* Entries of `table` picked along its dim `axis` (negative counts from
     * the end) by the I32 constant `idx`, as ONNX Gather and numpy.take do:
     *   out[a.., i.., b..] = table[a.., idx[i..], b..]
     * so out's shape is table's with dim `axis` replaced by idx's shape
     * (idx [] picks one entry and drops the dim). Every index must lie in
     * [0, table.dim(axis)); it is checked here, once, since idx is constant.
     * The gradient of each output entry adds into the table entry it came
     * from (entries picked twice get both). A relative-position bias:
     * gather(attention_biases [heads, N], idxs [N, N], 1) -> [heads, N, N]. */
    usi_tensor *(*gather)(usi_graph *g, usi_tensor *table, usi_tensor *idx,
                          int32_t axis);
} usi_graph_api;
#define USI_GRAPH_API_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_graph_api, custom)
#define USI_GRAPH_API_STRUCT_SIZE_1_1 USI_STRUCT_SIZE(usi_graph_api, fail)
#define USI_GRAPH_API_STRUCT_SIZE_1_2 USI_STRUCT_SIZE(usi_graph_api, gather)

/* ------------------------------------------------------------------------ */
/* Host services                                                            */
/* ------------------------------------------------------------------------ */

typedef struct usi_host_api {
    size_t struct_size;
    uint32_t abi_major, abi_minor;

    /* -- errors -- */
    /* A new error with a printf-style message; the host frees it. */
    usi_error *(*error_new)(int32_t code, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 2, 3)))
#endif
        ;
    /* Free an error the plugin chose not to return. */
    void (*error_free)(usi_error *e);
    /* The message of an error (valid until it is freed). */
    const char *(*error_message)(const usi_error *e);

    /* -- logging -- */
    /* A line in the host's log at USI_LOG_* level. */
    void (*log)(int32_t level, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 2, 3)))
#endif
        ;

    /* -- memory -- */
    /* Aligned allocation (align: power of two, or 0 for the default). */
    void *(*alloc)(size_t size, size_t align);
    void (*free)(void *p);

    /* -- random numbers (reproducible: the host seeds each stream) -- */
    uint64_t (*rng_u64)(usi_rng *r);
    /* Uniform in [0, 1). */
    double (*rng_uniform)(usi_rng *r);
    /* Standard normal. */
    double (*rng_normal)(usi_rng *r);

    /* -- a component's options, already validated against its schema -- */
    usi_error *(*param_int)(const usi_params *p, const char *name,
                            int64_t *out);
    usi_error *(*param_float)(const usi_params *p, const char *name,
                              double *out);
    usi_error *(*param_bool)(const usi_params *p, const char *name,
                             int32_t *out);
    /* The string lives as long as the params. */
    usi_error *(*param_string)(const usi_params *p, const char *name,
                               const char **out);
    /* Writes up to cap values to out and the list's length to *n. */
    usi_error *(*param_float_list)(const usi_params *p, const char *name,
                                   double *out, size_t cap, size_t *n);

    /* -- images -- */
    /* (Re)allocate img->data for w x h x c bytes and set its fields. */
    usi_error *(*image_alloc)(usi_image *img, int32_t width, int32_t height,
                              int32_t channels);

    /* -- graph builder -- */
    const usi_graph_api *graph;

    /* -- composition -- */
    /* Build the loaded backbone component `name` into g with its options as
     * libconfig text ("num_classes = 10; width = 16;"), or NULL for its
     * defaults; returns its output, or NULL with the graph's error set. The
     * instance lives until the host releases the graph. For teachers that
     * wrap a backbone. */
    usi_tensor *(*build_backbone)(usi_graph *g, const char *name,
                                  const char *options, usi_tensor *input);
} usi_host_api;
#define USI_HOST_API_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_host_api, build_backbone)

/* ------------------------------------------------------------------------ */
/* Components                                                               */
/* ------------------------------------------------------------------------ */

/* One option of a component, shown by `usi plugins` and checked by the
 * config loader (unknown keys, types, ranges, choices).
 *
 * Range: an INT, FLOAT or FLOAT_LIST value (each item of a list) must lie in
 * [min, max]. Leaving both 0, the zero value, means no range; so does
 * min > max (how some 1.0 plugins wrote it). BOOL and STRING options ignore
 * min and max: write 0. */
typedef struct usi_param_desc {
    size_t struct_size;
    const char *name;        /* a config key: [a-z_][a-z0-9_]*               */
    int32_t type;            /* USI_PARAM_*                                  */
    int32_t reserved;
    const char *doc;         /* one line                                     */
    int64_t def_int;         /* INT, BOOL                                    */
    double def_float;        /* FLOAT                                        */
    const char *def_string;  /* STRING, FLOAT_LIST                           */
    double min, max;         /* INT, FLOAT, FLOAT_LIST: see above            */
    const char *choices;     /* STRING: "a|b|c", or NULL for any string      */
} usi_param_desc;
#define USI_PARAM_DESC_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_param_desc, choices)

/* Backbone: a student network.
 *
 * Every backbone declares two INT options, because the host sets them: the
 * trainer sets num_classes from the data, and the `model` teacher and
 * `usi summary --img-size` set img_size. A network built for one input size
 * declares img_size with min == max == that size. A backbone lacking one
 * still loads and trains, but whatever sets it fails; `usi plugins` points
 * it out. */
typedef struct usi_backbone_ops {
    size_t struct_size;
    /* input [N,3,H,W] float, normalised -> logits [N, num_classes]. */
    usi_tensor *(*build)(void *inst, usi_graph *g, usi_tensor *input);
} usi_backbone_ops;
#define USI_BACKBONE_OPS_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_backbone_ops, build)

/* What a teacher expects of its input. */
typedef struct usi_teacher_spec {
    size_t struct_size;
    int32_t img_size;        /* square input side                            */
    int32_t interpolation;   /* USI_INTERP_* used to resize to img_size      */
    float mean[3], std[3];   /* its normalisation, on 0..1 pixels            */
    int32_t num_classes;
    int32_t reserved;
    const char *weights;     /* graph teachers: safetensors file, or NULL    */
} usi_teacher_spec;
#define USI_TEACHER_SPEC_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_teacher_spec, weights)

/* Teacher: frozen, no gradients. Either a graph (build, run by the host in
 * eval mode with batch norm folded, weights loaded from spec.weights) or an
 * opaque engine (forward). Set the one it is and leave the other NULL. */
typedef struct usi_teacher_ops {
    size_t struct_size;
    usi_error *(*spec)(void *inst, usi_teacher_spec *out);
    usi_tensor *(*build)(void *inst, usi_graph *g, usi_tensor *input);
    /* images [N,3,H,W] F32 on the host in the teacher's normalisation ->
     * logits [N, num_classes] F32, written to the view the host gives. */
    usi_error *(*forward)(void *inst, const usi_tensor_view *images,
                          usi_tensor_view *logits);
} usi_teacher_ops;
#define USI_TEACHER_OPS_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_teacher_ops, forward)

enum {
    USI_AUGMENT_SAMPLE = 1,  /* uint8 image, in loader threads               */
    USI_AUGMENT_BATCH = 2    /* float batch + soft targets, one call at a
                                time per instance (on a GPU from a thread
                                that makes batches ahead of the step)        */
};
enum { USI_AUGMENT_THREAD_SAFE = 1u << 0 }; /* apply_sample is reentrant     */

/* Augment: deterministic given the usi_rng the host passes. */
typedef struct usi_augment_ops {
    size_t struct_size;
    int32_t stage;           /* USI_AUGMENT_*                                */
    uint32_t flags;          /* USI_AUGMENT_THREAD_SAFE ...                  */
    /* src -> dst; dst is host-owned: size it with host->image_alloc. */
    usi_error *(*apply_sample)(void *inst, const usi_image *src,
                               usi_image *dst, usi_rng *rng);
    /* In place on a float batch and its targets. */
    usi_error *(*apply_batch)(void *inst, usi_batch *batch, usi_rng *rng);
} usi_augment_ops;
#define USI_AUGMENT_OPS_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_augment_ops, apply_batch)

typedef struct usi_component {
    size_t struct_size;
    int32_t kind;            /* USI_KIND_*                                   */
    int32_t reserved;
    const char *name;        /* unique among all loaded plugins, e.g. "resnet50" */
    const char *version;     /* e.g. "1.0.0"                                 */
    const char *doc;         /* one line                                     */
    const usi_param_desc *params; /* n_params entries, stride params->struct_size */
    size_t n_params;
    /* Make an instance from validated options; *inst is passed back to ops.
     * No host table comes with it: use the one saved in the handshake. */
    usi_error *(*create)(const usi_params *params, void **inst);
    void (*destroy)(void *inst);
    /* usi_backbone_ops, usi_teacher_ops or usi_augment_ops, per kind. */
    const void *ops;
} usi_component;
#define USI_COMPONENT_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_component, ops)

typedef struct usi_plugin_desc {
    size_t struct_size;
    const char *name;        /* the plugin (a file may hold many components) */
    const char *vendor;
    const char *license;     /* SPDX identifier, or "Proprietary"           */
    const char *version;
    const usi_component *const *components;
    size_t n_components;
} usi_plugin_desc;
#define USI_PLUGIN_DESC_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_plugin_desc, n_components)

/* ------------------------------------------------------------------------ */
/* The handshake                                                            */
/* ------------------------------------------------------------------------ */

typedef struct usi_negotiate {
    size_t struct_size;
    /* in: filled by the host */
    uint32_t host_abi_major;
    uint32_t host_abi_minor;
    const usi_host_api *host;
    /* out: filled by the plugin */
    uint32_t plugin_abi_major; /* must equal the host's major                */
    uint32_t plugin_abi_minor; /* the minor the plugin was built against     */
    const usi_plugin_desc *desc;
} usi_negotiate;
#define USI_NEGOTIATE_STRUCT_SIZE_1_0 USI_STRUCT_SIZE(usi_negotiate, desc)

typedef usi_error *(*usi_plugin_entry_fn)(usi_negotiate *n);

/* The entry point every plugin defines: a function (a variable holding a
 * function pointer under this name is refused). Declared here, inside the
 * extern "C" block, so that a C++ definition gets the C name. */
USI_PLUGIN_EXPORT usi_error *usi_plugin_entry(usi_negotiate *n);

/* ------------------------------------------------------------------------ */
/* Helpers for plugin authors (inline, nothing to link)                     */
/* ------------------------------------------------------------------------ */

/* Frozen sizes of the host's two service tables at a minor (a minor newer
 * than this header gives the newest size this header knows). */
static inline size_t usi_host_api_size(uint32_t minor)
{
    (void)minor; /* unchanged since 1.0 */
    return USI_HOST_API_STRUCT_SIZE_1_0;
}
static inline size_t usi_graph_api_size(uint32_t minor)
{
    return minor == 0 ? USI_GRAPH_API_STRUCT_SIZE_1_0
         : minor == 1 ? USI_GRAPH_API_STRUCT_SIZE_1_1
                      : USI_GRAPH_API_STRUCT_SIZE_1_2;
}

/* Fill the out side of the handshake after checking the host.
 *
 * needs_minor: the oldest minor whose services the plugin calls without
 * checking USI_HAS_FIELD first (0 when it uses only 1.0 services, or checks
 * for every newer one). The host's tables must be at least that minor's
 * frozen sizes; otherwise the reply is an error that says which table and
 * which minor, and the host refuses the plugin with it, naming the file. */
static inline usi_error *usi_negotiate_reply_min(usi_negotiate *n,
                                                 const usi_plugin_desc *desc,
                                                 uint32_t needs_minor)
{
    if (n->struct_size < USI_NEGOTIATE_STRUCT_SIZE_1_0)
        return NULL; /* a host this old can't even read our answer */
    n->plugin_abi_major = USI_ABI_MAJOR;
    n->plugin_abi_minor = USI_ABI_MINOR;
    n->desc = desc;
    const usi_host_api *h = n->host;
    if (n->host_abi_major != USI_ABI_MAJOR)
        return h->error_new(USI_ERR_VERSION,
                            "plugin '%s' is built for USI ABI %d.%d, the host has %u.%u",
                            desc->name, USI_ABI_MAJOR, USI_ABI_MINOR,
                            (unsigned)n->host_abi_major, (unsigned)n->host_abi_minor);
    if (n->host_abi_minor < needs_minor)
        return h->error_new(USI_ERR_VERSION,
                            "plugin '%s' needs a USI host of ABI 1.%u or newer, this one is 1.%u; "
                            "update usi",
                            desc->name, (unsigned)needs_minor, (unsigned)n->host_abi_minor);
    if (h->struct_size < usi_host_api_size(needs_minor))
        return h->error_new(USI_ERR_VERSION,
                            "plugin '%s' needs a host service table of %zu bytes (ABI 1.%u), "
                            "the host gives %zu",
                            desc->name, usi_host_api_size(needs_minor),
                            (unsigned)needs_minor, h->struct_size);
    if (!h->graph || h->graph->struct_size < usi_graph_api_size(needs_minor))
        return h->error_new(USI_ERR_VERSION,
                            "plugin '%s' needs a graph builder table of %zu bytes (ABI 1.%u), "
                            "the host gives %zu",
                            desc->name, usi_graph_api_size(needs_minor), (unsigned)needs_minor,
                            h->graph ? h->graph->struct_size : (size_t)0);
    return NULL;
}

/* The same for a plugin that needs only 1.0 services. */
static inline usi_error *usi_negotiate_reply(usi_negotiate *n,
                                             const usi_plugin_desc *desc)
{
    return usi_negotiate_reply_min(n, desc, 0);
}

/* ------------------------------------------------------------------------ */
/* Shorthands for plugin authors: options, the option reader, the entry     */
/* ------------------------------------------------------------------------ */

/* One entry of a parameter schema, as a brace initialiser with struct_size
 * set, for an array or a variable:
 *
 *     static const usi_param_desc params[] = {
 *         USI_PARAM_INT("num_classes", 1000, 1, 1000000, "number of output classes"),
 *         USI_PARAM_FLOAT("drop_path_rate", 0.0, 0, 1, "stochastic depth"),
 *         USI_PARAM_BOOL("pretrained_stem", 0, "keep the ImageNet stem"),
 *         USI_PARAM_STRING("stem", "auto", "auto|small|large", "stem form"),
 *         USI_PARAM_FLOAT_LIST("mean", "0.485, 0.456, 0.406", 0, 1, "per channel"),
 *     };
 *
 * lo == hi == 0 means no range (see usi_param_desc). choices is "a|b|c", or
 * NULL for any string. These function-like macros share their names with the
 * USI_PARAM_* type constants; the constants stay usable, since a macro of this
 * kind expands only where its name is followed by '('. The initialisers list
 * every field in order (C++ before C++20 has no designated initialisers):
 * struct_size, name, type, reserved, doc, def_int, def_float, def_string,
 * min, max, choices. */
#define USI_PARAM_INT(nm, def, lo, hi, dc) \
    {sizeof(usi_param_desc), (nm), USI_PARAM_INT, 0, (dc), (def), 0, NULL, (lo), (hi), NULL}
#define USI_PARAM_FLOAT(nm, def, lo, hi, dc) \
    {sizeof(usi_param_desc), (nm), USI_PARAM_FLOAT, 0, (dc), 0, (def), NULL, (lo), (hi), NULL}
#define USI_PARAM_BOOL(nm, def, dc) \
    {sizeof(usi_param_desc), (nm), USI_PARAM_BOOL, 0, (dc), (def), 0, NULL, 0, 0, NULL}
#define USI_PARAM_STRING(nm, def, ch, dc) \
    {sizeof(usi_param_desc), (nm), USI_PARAM_STRING, 0, (dc), 0, 0, (def), 0, 0, (ch)}
/* def is the list as text, "a, b, c"; lo and hi bound each item. */
#define USI_PARAM_FLOAT_LIST(nm, def, lo, hi, dc) \
    {sizeof(usi_param_desc), (nm), USI_PARAM_FLOAT_LIST, 0, (dc), 0, 0, (def), (lo), (hi), NULL}

/* The number of entries of an array (a schema, a field table). */
#define USI_COUNTOF(a) (sizeof(a) / sizeof((a)[0]))

/* Where one option lands in a plugin's instance struct, for usi_read_options.
 * Plugin-internal (it never crosses the boundary, so it has no struct_size).
 * The field's C type follows the option's type:
 *     INT int64_t, FLOAT double, BOOL int32_t, STRING const char * (it lives
 *     as long as the params, so copy it if the instance keeps it longer),
 *     FLOAT_LIST double[cap] with the item count in a size_t field.
 * Make entries with the USI_FIELD_* macros below, which fill size from the
 * field itself, so a field of the wrong width is refused at create time
 * (USI_ERR_INTERNAL, naming the option) instead of overwriting memory. */
typedef struct usi_option_field {
    const char *name;        /* the option's name in the schema              */
    int32_t type;            /* USI_PARAM_*                                  */
    size_t offset;           /* offsetof(struct, field)                      */
    size_t size;             /* sizeof the field                             */
    size_t count_offset;     /* FLOAT_LIST: offsetof the size_t count field  */
} usi_option_field;

#define USI_FIELD_(T, nm, ty, f) \
    {(nm), (ty), offsetof(T, f), sizeof(((T *)0)->f), 0}
#define USI_FIELD_INT(T, nm, f) USI_FIELD_(T, nm, USI_PARAM_INT, f)
#define USI_FIELD_FLOAT(T, nm, f) USI_FIELD_(T, nm, USI_PARAM_FLOAT, f)
#define USI_FIELD_BOOL(T, nm, f) USI_FIELD_(T, nm, USI_PARAM_BOOL, f)
#define USI_FIELD_STRING(T, nm, f) USI_FIELD_(T, nm, USI_PARAM_STRING, f)
/* f is a double array (its length is the capacity), count a size_t. */
#define USI_FIELD_FLOAT_LIST(T, nm, f, count) \
    {(nm), USI_PARAM_FLOAT_LIST, offsetof(T, f), sizeof(((T *)0)->f), offsetof(T, count)}

/* Fill the struct at `out` from validated params, one table entry at a time;
 * returns NULL, or the first error (the host's, e.g. an option missing from
 * the schema, or USI_ERR_INTERNAL for a field of the wrong width). Fields
 * read before the error keep their new values. A FLOAT_LIST longer than its
 * array is refused (USI_ERR_INVALID, naming the option and the capacity). */
static inline usi_error *usi_read_options(const usi_host_api *host, const usi_params *params,
                                          const usi_option_field *table, size_t n, void *out)
{
    unsigned char *base = (unsigned char *)out;
    for (size_t i = 0; i < n; i++) {
        const usi_option_field *f = &table[i];
        void *dst = base + f->offset;
        size_t want = 0;
        switch (f->type) {
        case USI_PARAM_INT: want = sizeof(int64_t); break;
        case USI_PARAM_FLOAT: want = sizeof(double); break;
        case USI_PARAM_BOOL: want = sizeof(int32_t); break;
        case USI_PARAM_STRING: want = sizeof(const char *); break;
        case USI_PARAM_FLOAT_LIST: want = f->size - f->size % sizeof(double); break;
        default: break;
        }
        if (!want || f->size != want)
            return host->error_new(USI_ERR_INTERNAL,
                                   "option '%s': its field (%zu bytes) does not fit option type %d",
                                   f->name, f->size, (int)f->type);
        usi_error *e = NULL;
        switch (f->type) {
        case USI_PARAM_INT: e = host->param_int(params, f->name, (int64_t *)dst); break;
        case USI_PARAM_FLOAT: e = host->param_float(params, f->name, (double *)dst); break;
        case USI_PARAM_BOOL: e = host->param_bool(params, f->name, (int32_t *)dst); break;
        case USI_PARAM_STRING:
            e = host->param_string(params, f->name, (const char **)dst);
            break;
        default: {
            size_t cap = f->size / sizeof(double), count = 0;
            e = host->param_float_list(params, f->name, (double *)dst, cap, &count);
            if (!e && count > cap)
                e = host->error_new(USI_ERR_INVALID, "option '%s': %zu values, at most %zu",
                                    f->name, count, cap);
            if (!e) *(size_t *)(void *)(base + f->count_offset) = count;
            break;
        }
        }
        if (e) return e;
    }
    return NULL;
}

/* The plugin descriptor and the entry point, in one line at the end of the
 * plugin's file (after its components):
 *
 *     USI_DEFINE_PLUGIN("acme", "Acme Ltd.", "Apache-2.0", "1.0.0", &comp_a, &comp_b);
 *
 * It defines usi_plugin_entry, which replies with usi_negotiate_reply() and,
 * when the reply accepts the host, keeps the host table in the static
 *
 *     static const usi_host_api *usi_host;
 *
 * for the plugin's create/build/apply functions. A file whose functions use
 * usi_host above the USI_DEFINE_PLUGIN line declares it first with
 * `USI_DECLARE_HOST;` (in C a tentative definition, which C allows twice; in
 * C++ a declaration in an unnamed namespace, which USI_DEFINE_PLUGIN then
 * defines). USI_DEFINE_PLUGIN_MIN(minor, ...) does the same with
 * usi_negotiate_reply_min(n, desc, minor), for a plugin that calls that
 * minor's services without checking USI_HAS_FIELD. Only usi_plugin_entry is
 * exported; everything else the macro defines is static (or, in C++, in an
 * unnamed namespace). */
#ifdef __cplusplus
#define USI_DECLARE_HOST namespace { extern const usi_host_api *usi_host; }
#define USI_DEFINE_HOST_ namespace { const usi_host_api *usi_host = NULL; }
#define USI_STATIC_ASSERT_(cond, msg) static_assert(cond, msg)
#else
#define USI_DECLARE_HOST static const usi_host_api *usi_host
#define USI_DEFINE_HOST_ USI_DECLARE_HOST;
#define USI_STATIC_ASSERT_(cond, msg) _Static_assert(cond, msg)
#endif

#define USI_DEFINE_PLUGIN_MIN(minor, nm, vnd, lic, ver, ...)                          \
    USI_DEFINE_HOST_                                                                 \
    static const usi_component *const usi_plugin_components_[] = {__VA_ARGS__};      \
    static const usi_plugin_desc usi_plugin_desc_ = {                                \
        sizeof(usi_plugin_desc), (nm), (vnd), (lic), (ver), usi_plugin_components_, \
        USI_COUNTOF(usi_plugin_components_)};                                        \
    USI_PLUGIN_EXPORT usi_error *usi_plugin_entry(usi_negotiate *n)                  \
    {                                                                                \
        usi_error *e = usi_negotiate_reply_min(n, &usi_plugin_desc_, (minor));       \
        if (!e) usi_host = n->host;                                                  \
        return e;                                                                    \
    }                                                                                \
    USI_STATIC_ASSERT_(USI_COUNTOF(usi_plugin_components_) > 0, "a plugin needs a component")

#define USI_DEFINE_PLUGIN(nm, vnd, lic, ver, ...) \
    USI_DEFINE_PLUGIN_MIN(0, nm, vnd, lic, ver, __VA_ARGS__)

static inline usi_init usi_init_const(double v)
{
    usi_init i = {sizeof(usi_init), USI_INIT_CONSTANT, 0, v, 0, 0, 0, 0};
    return i;
}
static inline usi_init usi_init_zeros(void)
{
    usi_init i = {sizeof(usi_init), USI_INIT_ZEROS, 0, 0, 0, 0, 0, 0};
    return i;
}
static inline usi_init usi_init_ones(void)
{
    usi_init i = {sizeof(usi_init), USI_INIT_ONES, 0, 1, 0, 0, 0, 0};
    return i;
}
static inline usi_init usi_init_uniform(double lo, double hi)
{
    usi_init i = {sizeof(usi_init), USI_INIT_UNIFORM, 0, 0, 0, lo, hi, 0};
    return i;
}
static inline usi_init usi_init_normal(double mean, double std)
{
    usi_init i = {sizeof(usi_init), USI_INIT_NORMAL, 0, mean, std, 0, 0, 0};
    return i;
}
/* timm's trunc_normal_(std=s): mean 0, cut at [-2, 2] (absolute). */
static inline usi_init usi_init_trunc_normal(double std, double lo, double hi)
{
    usi_init i = {sizeof(usi_init), USI_INIT_TRUNC_NORMAL, 0, 0, std, lo, hi, 0};
    return i;
}
static inline usi_init usi_init_kaiming_normal(int32_t fan, double gain)
{
    usi_init i = {sizeof(usi_init), USI_INIT_KAIMING_NORMAL, fan, 0, 0, 0, 0, gain};
    return i;
}
static inline usi_init usi_init_kaiming_uniform(int32_t fan, double gain)
{
    usi_init i = {sizeof(usi_init), USI_INIT_KAIMING_UNIFORM, fan, 0, 0, 0, 0, gain};
    return i;
}

static inline usi_conv2d_desc usi_conv2d(int32_t stride, int32_t padding,
                                         int32_t dilation, int32_t groups)
{
    usi_conv2d_desc d = {sizeof(usi_conv2d_desc), {stride, stride},
                         {padding, padding}, {dilation, dilation}, groups};
    return d;
}

static inline usi_pool2d_desc usi_pool2d(int32_t kind, int32_t kernel,
                                         int32_t stride, int32_t padding)
{
    usi_pool2d_desc d = {sizeof(usi_pool2d_desc), kind, {kernel, kernel},
                         {stride, stride}, {padding, padding}, 0, 1};
    return d;
}

#ifdef __cplusplus
}
#endif

#endif /* USI_PLUGIN_H */
