/* Data movement ops: reshape, permute, concat, slice, pad, space_to_depth.
 * Each backward is the transpose of its forward's index map. */
#include "backend/cpu/cpu.h"

static void copy_or_add(float *dst, const float *src, int64_t n, int32_t acc)
{
    if (!acc) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    #pragma omp parallel for simd schedule(static) if (n > USI_PAR_MIN)
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

usi_error *usi_cpu_reshape_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    memcpy(t->data, t->src[0]->data, usi_node_bytes(t));
    return NULL;
}

usi_error *usi_cpu_reshape_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    if (t->src[0]->grad) copy_or_add(t->src[0]->grad, t->grad, t->numel, acc[0]);
    return NULL;
}

/* Input offset of the first element of output row `row` (all dims but the
 * last), for out.shape[i] = in.shape[perm[i]]. */
static int64_t permute_row_offset(const usi_tensor *t, const int64_t *in_stride,
                                  int64_t row)
{
    int64_t off = 0;
    for (int32_t d = t->ndim - 2; d >= 0; d--) {
        int64_t i = row % t->shape[d];
        row /= t->shape[d];
        off += i * in_stride[t->attrs.permute.perm[d]];
    }
    return off;
}

/* out[i0..] = x[i_perm..]; backward scatters dy back through the same map. */
static void permute_run(const usi_tensor *t, float *out, const float *x, float *dx,
                        const float *dy, int32_t acc)
{
    const usi_tensor *in = t->src[0];
    int64_t in_stride[USI_MAX_DIMS], st = 1;
    for (int32_t d = in->ndim - 1; d >= 0; d--) {
        in_stride[d] = st;
        st *= in->shape[d];
    }
    if (t->ndim == 0) {
        if (out) out[0] = x[0];
        else dx[0] = acc ? dx[0] + dy[0] : dy[0];
        return;
    }
    int64_t L = t->shape[t->ndim - 1], ls = in_stride[t->attrs.permute.perm[t->ndim - 1]];
    int64_t rows = t->numel / L;
    #pragma omp parallel for schedule(static) if (rows > 1 && t->numel > USI_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = permute_row_offset(t, in_stride, r);
        if (out) {
            for (int64_t i = 0; i < L; i++) out[r * L + i] = x[off + i * ls];
        } else {
            for (int64_t i = 0; i < L; i++) {
                float v = dy[r * L + i];
                dx[off + i * ls] = acc ? dx[off + i * ls] + v : v;
            }
        }
    }
}

usi_error *usi_cpu_permute_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    permute_run(t, t->data, t->src[0]->data, NULL, NULL, 0);
    return NULL;
}

usi_error *usi_cpu_permute_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    if (t->src[0]->grad) permute_run(t, NULL, NULL, t->src[0]->grad, t->grad, acc[0]);
    return NULL;
}

/* out[O, sum Ci, I] = [x0[O,C0,I], x1[O,C1,I], ...] */
usi_error *usi_cpu_concat_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    int32_t ax = t->attrs.concat.axis;
    int64_t O = usi_dims_prod(t, 0, ax), I = usi_dims_prod(t, ax + 1, t->ndim);
    int64_t row = t->shape[ax] * I, at = 0;
    for (int32_t k = 0; k < t->n_src; k++) {
        const usi_tensor *x = t->src[k];
        int64_t w = x->shape[ax] * I;
        for (int64_t o = 0; o < O; o++)
            memcpy((float *)t->data + o * row + at, (const float *)x->data + o * w,
                   (size_t)w * sizeof(float));
        at += w;
    }
    return NULL;
}

usi_error *usi_cpu_concat_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    int32_t ax = t->attrs.concat.axis;
    int64_t O = usi_dims_prod(t, 0, ax), I = usi_dims_prod(t, ax + 1, t->ndim);
    int64_t row = t->shape[ax] * I, at = 0;
    for (int32_t k = 0; k < t->n_src; k++) {
        const usi_tensor *x = t->src[k];
        int64_t w = x->shape[ax] * I;
        if (x->grad)
            for (int64_t o = 0; o < O; o++)
                copy_or_add(x->grad + o * w, t->grad + o * row + at, w, acc[k]);
        at += w;
    }
    return NULL;
}

/* out[O,len,I] = x[O, start + j*step, I] */
static void slice_run(const usi_tensor *t, float *out, const float *x, float *dx,
                      const float *dy)
{
    const usi_tensor *in = t->src[0];
    int32_t ax = t->attrs.slice.axis;
    int64_t start = t->attrs.slice.start, step = t->attrs.slice.step;
    int64_t O = usi_dims_prod(t, 0, ax), I = usi_dims_prod(t, ax + 1, t->ndim);
    int64_t len = t->shape[ax], D = in->shape[ax];
    for (int64_t o = 0; o < O; o++)
        for (int64_t j = 0; j < len; j++) {
            int64_t src = (o * D + start + j * step) * I, dst = (o * len + j) * I;
            if (out) memcpy(out + dst, x + src, (size_t)I * sizeof(float));
            else for (int64_t i = 0; i < I; i++) dx[src + i] += dy[dst + i];
        }
}

usi_error *usi_cpu_slice_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    slice_run(t, t->data, t->src[0]->data, NULL, NULL);
    return NULL;
}

usi_error *usi_cpu_slice_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    float *dx = t->src[0]->grad;
    if (!dx) return NULL;
    usi_grad_begin(dx, t->src[0]->numel, acc[0]);
    slice_run(t, NULL, NULL, dx, t->grad);
    return NULL;
}

/* out = x placed at (before_0, before_1, ...) in a block of `value`. A row is
 * the last dim; rows that fall in padding are all `value`. */
static void pad_run(const usi_tensor *t, float *out, const float *x, float *dx,
                    const float *dy)
{
    const usi_tensor *in = t->src[0];
    int32_t nd = t->ndim;
    if (nd == 0) {
        if (out) out[0] = x[0];
        else dx[0] += dy[0];
        return;
    }
    int64_t L = t->shape[nd - 1], rows = t->numel / L, Lin = in->shape[nd - 1];
    int64_t lo = t->attrs.pad.before[nd - 1];
    float value = (float)t->attrs.pad.value;
    #pragma omp parallel for schedule(static) if (rows > 1 && t->numel > USI_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t rem = r, off = 0, st = Lin;
        int inside = 1;
        for (int32_t d = nd - 2; d >= 0; d--) {
            int64_t i = rem % t->shape[d] - t->attrs.pad.before[d];
            rem /= t->shape[d];
            if (i < 0 || i >= in->shape[d]) inside = 0;
            off += i * st;
            st *= in->shape[d];
        }
        for (int64_t j = 0; j < L; j++) {
            int64_t k = j - lo;
            int ok = inside && k >= 0 && k < Lin;
            if (out) out[r * L + j] = ok ? x[off + k] : value;
            else if (ok) dx[off + k] += dy[r * L + j];
        }
    }
}

usi_error *usi_cpu_pad_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    pad_run(t, t->data, t->src[0]->data, NULL, NULL);
    return NULL;
}

usi_error *usi_cpu_pad_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    float *dx = t->src[0]->grad;
    if (!dx) return NULL;
    usi_grad_begin(dx, t->src[0]->numel, acc[0]);
    pad_run(t, NULL, NULL, dx, t->grad);
    return NULL;
}

/* out[n, (br*b + bc)*C + c, h, w] = x[n, c, h*b + br, w*b + bc] */
static void space_to_depth_run(const usi_tensor *t, float *out, const float *x,
                               float *dx, const float *dy, int32_t acc)
{
    const usi_tensor *in = t->src[0];
    int64_t N = in->shape[0], C = in->shape[1], H = in->shape[2], W = in->shape[3];
    int64_t b = t->attrs.space_to_depth.block, OH = H / b, OW = W / b;
    #pragma omp parallel for collapse(2) schedule(static) if (N * C * H * W > USI_PAR_MIN)
    for (int64_t n = 0; n < N; n++)
        for (int64_t oc = 0; oc < C * b * b; oc++) {
            int64_t c = oc % C, bc = (oc / C) % b, br = oc / C / b;
            for (int64_t h = 0; h < OH; h++)
                for (int64_t w = 0; w < OW; w++) {
                    int64_t o = ((n * C * b * b + oc) * OH + h) * OW + w;
                    int64_t i = ((n * C + c) * H + h * b + br) * W + w * b + bc;
                    if (out) out[o] = x[i];
                    else dx[i] = acc ? dx[i] + dy[o] : dy[o];
                }
        }
}

usi_error *usi_cpu_space_to_depth_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    space_to_depth_run(t, t->data, t->src[0]->data, NULL, NULL, 0);
    return NULL;
}

usi_error *usi_cpu_space_to_depth_bwd(const usi_exec_ctx *ctx, usi_tensor *t,
                                      const int32_t *acc)
{
    (void)ctx;
    if (t->src[0]->grad)
        space_to_depth_run(t, NULL, NULL, t->src[0]->grad, t->grad, acc[0]);
    return NULL;
}
