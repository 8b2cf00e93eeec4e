/* Convolution on cuDNN (NCHW float, cross-correlation, groups, dilation).
 * Algorithms are chosen when the graph is planned, by timing them
 * (cudnnFind*, which brings its own buffers), and cached per shape for the
 * process, so the many convs of one shape in a network and the eval graph
 * beside the training one time them once. Their workspaces become the
 * node's planned scratch. Math is plain FMA fp32: the CPU's results to
 * rounding, no TF32. Under precision "mixed" (the device's, when the graph
 * is planned) the conv runs on bf16 copies of its operands in the node's
 * scratch, with fp32 accumulation, and its results are widened back to
 * fp32 (added into the gradients where the executor asks for a sum). Those
 * copies are channels-last (NHWC) where cuDNN's kernels for the shape are
 * faster so: both layouts are timed when the algorithms are, and the
 * faster is kept with them (USI_CUDA_CONV_LAYOUT=nchw or nhwc forces one,
 * for tests); where x or y is kept channels-last, NHWC wherever cuDNN has
 * algorithms for the shape. The cast and the transpose are one kernel
 * (layout.cu, usi_cuda_repack).
 *
 * x, y and their gradients as the graph keeps them (bf16:
 * core/graph/precision.c; channels-last: core/graph/layout.c) are read and
 * written as they are where that is the copies' format, and repacked
 * (cast, transposed or both) elsewhere, so any mix takes the conv.
 *
 * An eval-mode batch norm folded into the conv (conv->fold_bn) is applied to
 * a copy of the weights and bias in the forward scratch. */
#include <pthread.h>
#include <stdlib.h>

#include <string.h>

#include "backend/cuda/cuda.h"
#include "graph/graph_internal.h"
#include "util/log.h"

/* The most workspace one conv may plan, and at most this share of the
 * GPU's free memory at planning time. */
#define WORKSPACE_CAP ((size_t)1 << 30)
#define WORKSPACE_FREE_SHARE 8

static size_t up(size_t n) { return (n + 255) / 256 * 256; }

/* ---- per-shape algorithm cache ---- */

typedef struct conv_key {
    int32_t ordinal;
    int32_t n, c, h, w, o, kh, kw, oh, ow;
    int32_t sh, sw, ph, pw, dh, dw, groups;
    int32_t bf16;
    int32_t cl; /* x or y kept channels-last: the copies are NHWC */
} conv_key;

typedef struct conv_algos {
    int32_t has_fwd, has_bwd;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    cudnnMathType_t fwd_math, bwd_data_math, bwd_filter_math;
    size_t fwd_ws, bwd_data_ws, bwd_filter_ws;
    int32_t nhwc; /* bf16 copies channels-last */
} conv_algos;

typedef struct cache_entry {
    conv_key key;
    conv_algos algos;
} cache_entry;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cache_entry *cache;
static size_t cache_n, cache_cap;

static int cache_get(const conv_key *k, conv_algos *out)
{
    int found = 0;
    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < cache_n && !found; i++)
        if (!memcmp(&cache[i].key, k, sizeof *k)) {
            *out = cache[i].algos;
            found = 1;
        }
    pthread_mutex_unlock(&cache_lock);
    return found;
}

static void cache_put(const conv_key *k, const conv_algos *a)
{
    pthread_mutex_lock(&cache_lock);
    size_t i = 0;
    while (i < cache_n && memcmp(&cache[i].key, k, sizeof *k)) i++;
    if (i == cache_n) {
        if (cache_n == cache_cap) {
            size_t cap = cache_cap ? 2 * cache_cap : 64;
            cache_entry *grown = realloc(cache, cap * sizeof *grown);
            if (!grown) {
                pthread_mutex_unlock(&cache_lock);
                return; /* not cached: timed again next time */
            }
            cache = grown;
            cache_cap = cap;
        }
        cache_n++;
    }
    cache[i].key = *k;
    cache[i].algos = *a;
    pthread_mutex_unlock(&cache_lock);
}

/* ---- node state ---- */

typedef struct conv_state {
    cudnnTensorDescriptor_t x, y, bias, y32; /* x, y in the compute type; y32 fp32 */
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    conv_algos a;
    int32_t bf16;
    cudnnMathType_t math;           /* the math Find should prefer */
    /* fwd scratch after the workspace: bf16 x, w, y; the folded weights */
    size_t xb_off, wb_off, yb_off, fold_w_off, fold_b_off;
    /* bwd scratch after the workspace: bf16 dy, w, x, dx, dw; the bias
     * gradient's partial sums over segments of rows (bias_segments) */
    size_t dyb_off, bwb_off, bxb_off, dxb_off, dwb_off, dbp_off;
    int64_t bias_segments;
    size_t fwd_bytes, bwd_bytes;
} conv_state;

static void conv_state_free(void *p)
{
    conv_state *s = p;
    if (s->x) cudnnDestroyTensorDescriptor(s->x);
    if (s->y) cudnnDestroyTensorDescriptor(s->y);
    if (s->bias) cudnnDestroyTensorDescriptor(s->bias);
    if (s->y32) cudnnDestroyTensorDescriptor(s->y32);
    if (s->w) cudnnDestroyFilterDescriptor(s->w);
    if (s->conv) cudnnDestroyConvolutionDescriptor(s->conv);
    free(s);
}

int32_t usi_cuda_node_mixed(const usi_tensor *t)
{
    return t->graph && t->graph->dev && t->graph->dev->mixed;
}

static usi_error *make_key(const usi_tensor *t, int32_t ordinal, conv_key *k)
{
    const usi_tensor *x = t->src[0], *w = t->src[1];
    const struct usi_attrs_conv2d *a = &t->attrs.conv2d;
    int64_t v[] = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2], w->shape[3],
                   t->shape[2], t->shape[3], a->stride[0], a->stride[1], a->padding[0], a->padding[1],
                   a->dilation[0], a->dilation[1], a->groups};
    int32_t *dst[] = {&k->n, &k->c, &k->h, &k->w, &k->o, &k->kh, &k->kw, &k->oh, &k->ow,
                      &k->sh, &k->sw, &k->ph, &k->pw, &k->dh, &k->dw, &k->groups};
    memset(k, 0, sizeof *k);
    k->ordinal = ordinal;
    k->bf16 = usi_cuda_node_mixed(t);
    k->cl = k->bf16 && (t->cl || x->cl);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        if (v[i] < 0 || v[i] > INT32_MAX)
            return usi_error_new(USI_ERR_UNSUPPORTED, "conv2d: a dim of %lld is past cuDNN's int range",
                                 (long long)v[i]);
        *dst[i] = (int32_t)v[i];
    }
    return NULL;
}

static usi_error *describe(conv_state *s, const conv_key *k)
{
    CUDNN_TRY(cudnnCreateTensorDescriptor(&s->x));
    CUDNN_TRY(cudnnCreateTensorDescriptor(&s->y));
    CUDNN_TRY(cudnnCreateTensorDescriptor(&s->bias));
    CUDNN_TRY(cudnnCreateTensorDescriptor(&s->y32));
    CUDNN_TRY(cudnnCreateFilterDescriptor(&s->w));
    CUDNN_TRY(cudnnCreateConvolutionDescriptor(&s->conv));
    s->bf16 = k->bf16;
    s->math = k->bf16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    CUDNN_TRY(cudnnSetTensor4dDescriptor(s->y32, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, k->n, k->o, k->oh, k->ow));
    CUDNN_TRY(cudnnSetTensor4dDescriptor(s->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, k->o, 1, 1));
    /* accumulation in fp32 either way */
    CUDNN_TRY(cudnnSetConvolution2dDescriptor(s->conv, k->ph, k->pw, k->sh, k->sw, k->dh, k->dw,
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_TRY(cudnnSetConvolutionGroupCount(s->conv, k->groups));
    CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, s->math));
    return NULL;
}

/* x, y and w in the compute type and layout (NHWC only for bf16 copies). */
static usi_error *set_layout(conv_state *s, const conv_key *k, int32_t nhwc)
{
    cudnnDataType_t dt = k->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    cudnnTensorFormat_t f = nhwc && k->bf16 ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    CUDNN_TRY(cudnnSetTensor4dDescriptor(s->x, f, dt, k->n, k->c, k->h, k->w));
    CUDNN_TRY(cudnnSetTensor4dDescriptor(s->y, f, dt, k->n, k->o, k->oh, k->ow));
    CUDNN_TRY(cudnnSetFilter4dDescriptor(s->w, dt, f, k->o, k->c / k->groups, k->kh, k->kw));
    int n, c, h, w;
    CUDNN_TRY(cudnnGetConvolution2dForwardOutputDim(s->conv, s->x, s->w, &n, &c, &h, &w));
    if (n != k->n || c != k->o || h != k->oh || w != k->ow)
        return usi_error_new(USI_ERR_INTERNAL, "conv2d: cuDNN makes [%d,%d,%d,%d], the graph [%d,%d,%d,%d]", n, c, h,
                             w, k->n, k->o, k->oh, k->ow);
    return NULL;
}

/* out = the first (fastest) result that ran, fits the cap and keeps the
 * math asked for (FMA for fp32: no TF32); failing that, the first that ran
 * and fits; -1 when none. */
#define PICK(perf, n, cap, math, out)                                                         \
    do {                                                                                      \
        (out) = -1;                                                                           \
        for (int i_ = 0; i_ < (n) && (out) < 0; i_++)                                         \
            if ((perf)[i_].status == CUDNN_STATUS_SUCCESS && (perf)[i_].memory <= (cap) &&   \
                (perf)[i_].mathType == (math))                                                \
                (out) = i_;                                                                   \
        for (int i_ = 0; i_ < (n) && (out) < 0; i_++)                                         \
            if ((perf)[i_].status == CUDNN_STATUS_SUCCESS && (perf)[i_].memory <= (cap))      \
                (out) = i_;                                                                   \
    } while (0)

/* Times the algorithms cuDNN has for the descriptors' layout (Find) and
 * keeps the picks in a: forward when need_fwd, both backward ones when
 * need_bwd; *ms adds up the picks' times. */
static usi_error *find_layout(usi_cuda *c, conv_state *s, size_t cap, int32_t need_fwd, int32_t need_bwd,
                              conv_algos *a, float *ms)
{
    if (need_fwd) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        int n = 0;
        CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, s->math));
        CUDNN_TRY(cudnnFindConvolutionForwardAlgorithm(c->cudnn, s->x, s->w, s->conv, s->y,
                                                       CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
        int i;
        PICK(perf, n, cap, s->math, i);
        if (i < 0) return usi_error_new(USI_ERR_UNSUPPORTED, "conv2d: cuDNN has no forward algorithm for it");
        a->fwd = perf[i].algo;
        a->fwd_math = perf[i].mathType;
        a->fwd_ws = perf[i].memory;
        a->has_fwd = 1;
        *ms += perf[i].time;
    }
    if (need_bwd) {
        cudnnConvolutionBwdDataAlgoPerf_t dperf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        cudnnConvolutionBwdFilterAlgoPerf_t fperf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        int n = 0;
        CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, s->math));
        CUDNN_TRY(cudnnFindConvolutionBackwardDataAlgorithm(c->cudnn, s->w, s->y, s->conv, s->x,
                                                            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, dperf));
        int i;
        PICK(dperf, n, cap, s->math, i);
        if (i < 0) return usi_error_new(USI_ERR_UNSUPPORTED, "conv2d: cuDNN has no backward-data algorithm for it");
        a->bwd_data = dperf[i].algo;
        a->bwd_data_math = dperf[i].mathType;
        a->bwd_data_ws = dperf[i].memory;
        *ms += dperf[i].time;
        CUDNN_TRY(cudnnFindConvolutionBackwardFilterAlgorithm(c->cudnn, s->x, s->y, s->conv, s->w,
                                                              CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, fperf));
        PICK(fperf, n, cap, s->math, i);
        if (i < 0)
            return usi_error_new(USI_ERR_UNSUPPORTED, "conv2d: cuDNN has no backward-filter algorithm for it");
        a->bwd_filter = fperf[i].algo;
        a->bwd_filter_math = fperf[i].mathType;
        a->bwd_filter_ws = fperf[i].memory;
        a->has_bwd = 1;
        *ms += fperf[i].time;
    }
    return NULL;
}

/* USI_CUDA_CONV_LAYOUT: -1 (unset: the faster), 0 nchw, 1 nhwc */
static int32_t forced_layout(void)
{
    const char *v = getenv("USI_CUDA_CONV_LAYOUT");
    if (v && !strcmp(v, "nchw")) return 0;
    if (v && !strcmp(v, "nhwc")) return 1;
    return -1;
}

static usi_error *find_algos(usi_cuda *c, conv_state *s, const conv_key *k, int32_t need_bwd)
{
    size_t free_bytes = 0, total = 0, cap = WORKSPACE_CAP;
    if (cudaMemGetInfo(&free_bytes, &total) == cudaSuccess && free_bytes / WORKSPACE_FREE_SHARE < cap)
        cap = free_bytes / WORKSPACE_FREE_SHARE;
    (void)cudaGetLastError();
    conv_algos *a = &s->a;
    float ms = 0;
    if (k->bf16 && (!a->has_fwd || (need_bwd && !a->has_bwd))) {
        /* a new shape in bf16 (or one timed without its backward): both
         * layouts, the faster kept; with a value kept channels-last, NHWC
         * wherever cuDNN has algorithms for it */
        int32_t forced = k->cl ? -1 : forced_layout();
        conv_algos best;
        float best_ms = 0;
        int found = 0;
        usi_error *first = NULL;
        for (int32_t i = 0; i < 2 && !(found && k->cl); i++) {
            int32_t nhwc = k->cl ? 1 - i : i;
            if (forced >= 0 && nhwc != forced) continue;
            conv_algos cand;
            memset(&cand, 0, sizeof cand);
            cand.nhwc = nhwc;
            float t = 0;
            usi_error *e = set_layout(s, k, nhwc);
            if (!e) e = find_layout(c, s, cap, 1, need_bwd, &cand, &t);
            if (e) {
                if (!first) first = e;
                else usi_error_free(e);
                continue;
            }
            usi_log(USI_LOG_DEBUG, "conv %dx%dx%dx%d o%d k%dx%d s%d g%d bf16 %s: %.3f ms", k->n, k->c, k->h, k->w,
                    k->o, k->kh, k->kw, k->sh, k->groups, nhwc ? "nhwc" : "nchw", t);
            if (!found || t < best_ms) {
                best = cand;
                best_ms = t;
                found = 1;
            }
        }
        if (!found) return first;
        usi_error_free(first);
        *a = best;
        USI_TRY(set_layout(s, k, a->nhwc));
    } else {
        USI_TRY(find_layout(c, s, cap, !a->has_fwd, need_bwd && !a->has_bwd, a, &ms));
    }
    /* What the call itself asks for the chosen algorithms, in case Find's
     * figure was smaller. */
    size_t ws = 0;
    CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, a->fwd_math));
    CUDNN_TRY(cudnnGetConvolutionForwardWorkspaceSize(c->cudnn, s->x, s->w, s->conv, s->y, a->fwd, &ws));
    if (ws > a->fwd_ws) a->fwd_ws = ws;
    if (a->has_bwd) {
        CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, a->bwd_data_math));
        CUDNN_TRY(cudnnGetConvolutionBackwardDataWorkspaceSize(c->cudnn, s->w, s->y, s->conv, s->x, a->bwd_data,
                                                               &ws));
        if (ws > a->bwd_data_ws) a->bwd_data_ws = ws;
        CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, a->bwd_filter_math));
        CUDNN_TRY(cudnnGetConvolutionBackwardFilterWorkspaceSize(c->cudnn, s->x, s->y, s->conv, s->w,
                                                                 a->bwd_filter, &ws));
        if (ws > a->bwd_filter_ws) a->bwd_filter_ws = ws;
    }
    cache_put(k, a);
    usi_log(USI_LOG_DEBUG, "conv %dx%dx%dx%d o%d k%dx%d s%d g%d %s%s: fwd algo %d (%zu B)%s", k->n, k->c, k->h,
            k->w, k->o, k->kh, k->kw, k->sh, k->groups, k->bf16 ? "bf16" : "fp32",
            k->bf16 ? (a->nhwc ? " nhwc" : " nchw") : "", (int)a->fwd, a->fwd_ws,
            a->has_bwd ? ", with backward" : "");
    return NULL;
}

static usi_error *setup(usi_cuda *c, usi_tensor *t, int32_t training, conv_state *s)
{
    conv_key k;
    USI_TRY(make_key(t, c->ordinal, &k));
    USI_TRY(describe(s, &k));
    int32_t need_bwd = training && t->has_grad;
    int hit = cache_get(&k, &s->a);
    USI_TRY(set_layout(s, &k, hit && s->a.nhwc));
    if (!hit || (need_bwd && !s->a.has_bwd)) USI_TRY(find_algos(c, s, &k, need_bwd));
    size_t xn = (size_t)t->src[0]->numel, wn = (size_t)t->src[1]->numel, yn = (size_t)t->numel, half = 2;
    size_t at = up(s->a.fwd_ws);
    if (s->bf16) {
        s->xb_off = at;
        at += up(xn * half);
        s->wb_off = at;
        at += up(wn * half);
        s->yb_off = at;
        at += up(yn * half);
    }
    if (t->fold_bn) {
        s->fold_w_off = at;
        at += up(wn * sizeof(float));
        s->fold_b_off = at;
        at += up((size_t)t->shape[1] * sizeof(float));
    }
    s->fwd_bytes = at;
    if (need_bwd) {
        at = up(s->a.bwd_data_ws > s->a.bwd_filter_ws ? s->a.bwd_data_ws : s->a.bwd_filter_ws);
        if (s->bf16) {
            s->dyb_off = at;
            at += up(yn * half);
            s->bwb_off = at;
            at += up(wn * half);
            s->bxb_off = at;
            at += up(xn * half);
            s->dxb_off = at;
            at += up(xn * half);
            s->dwb_off = at;
            at += up(wn * half);
            if (t->cl && t->n_src > 2 && t->src[2]) { /* rows of channels: y kept channels-last */
                int64_t C = t->shape[1];
                s->bias_segments = usi_cuda_bn_row_segments((int64_t)yn / C, C);
                s->dbp_off = at;
                at += up((size_t)(C * s->bias_segments) * sizeof(double));
            }
        }
        s->bwd_bytes = at;
    }
    return NULL;
}

static usi_error *state_of(usi_cuda *c, usi_tensor *t, int32_t training, conv_state **out)
{
    if (!t->backend_state) {
        conv_state *s = calloc(1, sizeof *s);
        if (!s) return usi_error_new(USI_ERR_NOMEM, "conv2d: out of host memory");
        usi_error *e = setup(c, t, training, s);
        if (e) {
            conv_state_free(s);
            return e;
        }
        t->backend_state = s;
        t->backend_state_free = conv_state_free;
    }
    *out = t->backend_state;
    return NULL;
}

void usi_cuda_conv2d_workspace(usi_tensor *t, int32_t training)
{
    usi_device *d = t->graph ? t->graph->dev : NULL;
    if (!d || d->be != usi_cuda_backend()) return; /* sizes come from cuDNN on the GPU */
    usi_cuda *c = usi_cuda_of(d);
    conv_state *s = NULL;
    usi_error *e = usi_cuda_use(c);
    if (!e) e = state_of(c, t, training, &s);
    if (e) {
        usi_error_free(e); /* forward tries again and reports it */
        return;
    }
    t->fwd_scratch_bytes = s->fwd_bytes;
    t->bwd_scratch_bytes = s->bwd_bytes;
}

/* ---- formats: the copies' (bf16, NCHW or NHWC) against a value's ---- */

static int32_t compute_fmt(const conv_state *s)
{
    return s->bf16 ? USI_CUDA_FMT_BF16 | (s->a.nhwc ? USI_CUDA_FMT_CL : 0) : USI_CUDA_FMT_NCHW32;
}

static int32_t stored_fmt(const usi_tensor *t)
{
    return (t->bf16 ? USI_CUDA_FMT_BF16 : 0) | (t->cl ? USI_CUDA_FMT_CL : 0);
}

/* *out = t's value or gradient src in the copies' format cf: src itself
 * where t is kept so, else repacked into copy. */
static usi_error *to_compute(usi_cuda *c, const void **out, void *copy, const usi_tensor *t, const void *src,
                             int32_t cf)
{
    int32_t f = stored_fmt(t);
    *out = f == cf ? src : copy;
    if (f == cf) return NULL;
    return usi_cuda_repack(c->stream, copy, cf, src, f, t->shape[0], t->shape[1], t->shape[2] * t->shape[3], 0);
}

/* t's value or gradient dst, as t is kept, (+)= src in the copies' format */
static usi_error *from_compute(usi_cuda *c, const usi_tensor *t, void *dst, const void *src, int32_t cf, int32_t acc)
{
    return usi_cuda_repack(c->stream, dst, stored_fmt(t), src, cf, t->shape[0], t->shape[1], t->shape[2] * t->shape[3],
                           acc);
}

/* y[N,O,OH,OW] = conv(x[N,C,H,W], w[O,C/G,KH,KW]) + b[O] */
usi_error *usi_cuda_conv2d_fwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t)
{
    conv_state *s = NULL;
    USI_TRY(state_of(c, t, ctx->training, &s));
    if (s->fwd_bytes > t->fwd_scratch_bytes)
        return usi_error_new(USI_ERR_INTERNAL, "conv2d: %zu scratch bytes planned, %zu needed", t->fwd_scratch_bytes,
                             s->fwd_bytes);
    char *sc = t->fwd_scratch;
    const float *w = t->src[1]->data, *b = t->n_src > 2 && t->src[2] ? t->src[2]->data : NULL;
    if (t->fold_bn) {
        const usi_tensor *bn = t->fold_bn;
        float *w2 = (float *)(sc + s->fold_w_off), *b2 = (float *)(sc + s->fold_b_off);
        int64_t O = t->shape[1];
        USI_TRY(usi_cuda_fold_batchnorm_forward(
            c->stream, w2, b2, w, b, bn->src[1] ? bn->src[1]->data : NULL, bn->src[2] ? bn->src[2]->data : NULL,
            bn->src[3]->data, bn->src[4]->data, O, t->src[1]->numel / O, bn->attrs.batch_norm.eps));
        w = w2;
        b = b2;
    }
    float one = 1.0f, zero = 0.0f;
    const usi_tensor *xt = t->src[0];
    const void *x = xt->data, *wc = w;
    void *y = t->data;
    const int64_t *ys = t->shape;
    /* x and y as they are kept (precision.c, layout.c): read and written
     * directly where their format is the copies', repacked elsewhere */
    const int32_t cf = compute_fmt(s), yb16 = t->bf16, ycl = t->cl;
    if ((stored_fmt(xt) != USI_CUDA_FMT_NCHW32 || stored_fmt(t) != USI_CUDA_FMT_NCHW32) && !s->bf16)
        return usi_error_new(USI_ERR_INTERNAL, "conv2d: bf16 or channels-last values in an fp32 conv");
    if (s->bf16) {
        USI_TRY(to_compute(c, &x, sc + s->xb_off, xt, xt->data, cf));
        USI_TRY(usi_cuda_repack(c->stream, sc + s->wb_off, cf, w, USI_CUDA_FMT_NCHW32, t->src[1]->shape[0],
                                t->src[1]->shape[1], t->src[1]->shape[2] * t->src[1]->shape[3], 0));
        wc = sc + s->wb_off;
        y = stored_fmt(t) == cf ? t->data : sc + s->yb_off;
    }
    CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, s->a.fwd_math));
    CUDNN_TRY(cudnnConvolutionForward(c->cudnn, &one, s->x, x, s->w, wc, s->conv, s->a.fwd,
                                      s->a.fwd_ws ? sc : NULL, s->a.fwd_ws, &zero, s->y, y));
    if (y != t->data) USI_TRY(from_compute(c, t, t->data, y, cf, 0));
    if (b && (yb16 || ycl))
        USI_TRY(usi_cuda_bias_nchw_forward(c->stream, t->data, b, ys[0], ys[1], ys[2] * ys[3], yb16, ycl));
    else if (b) CUDNN_TRY(cudnnAddTensor(c->cudnn, &one, s->bias, b, &one, s->y32, t->data));
    return NULL;
}

/* dx (+)= conv_transpose(dy, w); dw (+)= corr(x, dy); db (+)= sum dy */
usi_error *usi_cuda_conv2d_bwd(usi_cuda *c, const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    conv_state *s = NULL;
    USI_TRY(state_of(c, t, ctx->training, &s));
    if (!s->a.has_bwd || s->bwd_bytes > t->bwd_scratch_bytes)
        return usi_error_new(USI_ERR_INTERNAL, "conv2d: backward was not planned");
    const usi_tensor *x = t->src[0], *w = t->src[1], *b = t->n_src > 2 ? t->src[2] : NULL;
    char *ws = t->bwd_scratch;
    float one = 1.0f, zero = 0.0f;
    const void *dy = t->grad;
    const int64_t *wsh = w->shape, *ys = t->shape;
    /* x's value and gradient and dy as they are kept: read and written
     * directly where their format is the copies', repacked elsewhere */
    const int32_t cf = compute_fmt(s), yb16 = t->bf16, ycl = t->cl;
    if ((stored_fmt(x) != USI_CUDA_FMT_NCHW32 || stored_fmt(t) != USI_CUDA_FMT_NCHW32) && !s->bf16)
        return usi_error_new(USI_ERR_INTERNAL, "conv2d: bf16 or channels-last values in an fp32 conv");
    if (s->bf16) USI_TRY(to_compute(c, &dy, ws + s->dyb_off, t, t->grad, cf));
    if (x->grad) {
        const void *wv = w->data;
        void *dx = x->grad;
        if (s->bf16) {
            USI_TRY(usi_cuda_repack(c->stream, ws + s->bwb_off, cf, w->data, USI_CUDA_FMT_NCHW32, wsh[0], wsh[1],
                                    wsh[2] * wsh[3], 0));
            wv = ws + s->bwb_off;
            /* straight into a gradient of the copies' format it overwrites */
            dx = stored_fmt(x) == cf && !acc[0] ? (void *)x->grad : ws + s->dxb_off;
        }
        CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, s->a.bwd_data_math));
        CUDNN_TRY(cudnnConvolutionBackwardData(c->cudnn, &one, s->w, wv, s->y, dy, s->conv, s->a.bwd_data,
                                               s->a.bwd_data_ws ? ws : NULL, s->a.bwd_data_ws,
                                               acc[0] && !s->bf16 ? &one : &zero, s->x, dx));
        if (dx != (void *)x->grad) USI_TRY(from_compute(c, x, x->grad, dx, cf, acc[0]));
    }
    if (w->grad) {
        const void *xv = x->data;
        void *dw = w->grad;
        if (s->bf16) {
            USI_TRY(to_compute(c, &xv, ws + s->bxb_off, x, x->data, cf));
            dw = ws + s->dwb_off;
        }
        CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, s->a.bwd_filter_math));
        CUDNN_TRY(cudnnConvolutionBackwardFilter(c->cudnn, &one, s->x, xv, s->y, dy, s->conv, s->a.bwd_filter,
                                                 s->a.bwd_filter_ws ? ws : NULL, s->a.bwd_filter_ws,
                                                 acc[1] && !s->bf16 ? &one : &zero, s->w, dw));
        if (s->bf16)
            USI_TRY(usi_cuda_repack(c->stream, w->grad, USI_CUDA_FMT_NCHW32, dw, cf, wsh[0], wsh[1], wsh[2] * wsh[3],
                                    acc[1]));
    }
    if (b && b->grad && ycl && s->bias_segments)
        USI_TRY(usi_cuda_bias_rows_backward_seg(c->stream, b->grad, t->grad, ys[0] * ys[2] * ys[3], ys[1],
                                                (double *)(ws + s->dbp_off), s->bias_segments, acc[2], yb16));
    else if (b && b->grad && (yb16 || ycl))
        USI_TRY(usi_cuda_bias_nchw_backward(c->stream, b->grad, t->grad, ys[0], ys[1], ys[2] * ys[3], acc[2], yb16, ycl));
    else if (b && b->grad)
        CUDNN_TRY(cudnnConvolutionBackwardBias(c->cudnn, &one, s->y32, t->grad, acc[2] ? &one : &zero, s->bias,
                                               b->grad));
    return NULL;
}
