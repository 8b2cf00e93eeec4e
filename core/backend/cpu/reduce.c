/* Sum or mean over a set of axes. Dims are collapsed first (neighbours that
 * are both kept or both reduced merge), so global average pooling is a plain
 * row reduction. */
#include "backend/cpu/cpu.h"
#include "backend/plan.h"

typedef usi_reduce_plan rdims;

static void reduce_forward(float *out, const float *x, const rdims *r, int64_t n_out,
                           float scale)
{
    int32_t last_red = r->n > 0 && r->reduced[r->n - 1];
    int64_t inner = last_red ? r->shape[r->n - 1] : 1;
    int64_t outer_red = r->count / inner;
    #pragma omp parallel for schedule(static) if (n_out > 1 && n_out * r->count > USI_PAR_MIN)
    for (int64_t o = 0; o < n_out; o++) {
        int64_t base = 0, rem = o;
        for (int32_t d = r->n - 1; d >= 0; d--) {
            if (r->reduced[d]) continue;
            base += (rem % r->shape[d]) * r->istride[d];
            rem /= r->shape[d];
        }
        double s = 0;
        for (int64_t q = 0; q < outer_red; q++) {
            int64_t off = base, qr = q;
            for (int32_t d = r->n - 1 - last_red; d >= 0; d--) {
                if (!r->reduced[d]) continue;
                off += (qr % r->shape[d]) * r->istride[d];
                qr /= r->shape[d];
            }
            for (int64_t i = 0; i < inner; i++) s += x[off + i];
        }
        out[o] = (float)(s * scale);
    }
}

/* dx[i] (+)= scale * dout[kept position of i] */
static void reduce_backward(float *dx, const float *dout, const rdims *r,
                            int64_t n_in, float scale, int32_t acc)
{
    int64_t L = r->n ? r->shape[r->n - 1] : 1;
    int32_t last_red = r->n > 0 && r->reduced[r->n - 1];
    int64_t rows = n_in / L;
    #pragma omp parallel for schedule(static) if (rows > 1 && n_in > USI_PAR_MIN)
    for (int64_t row = 0; row < rows; row++) {
        int64_t o = 0, ostride = last_red ? 1 : L, rem = row;
        for (int32_t d = r->n - 2; d >= 0; d--) {
            int64_t i = rem % r->shape[d];
            rem /= r->shape[d];
            if (r->reduced[d]) continue;
            o += i * ostride;
            ostride *= r->shape[d];
        }
        float *g = dx + row * L;
        for (int64_t i = 0; i < L; i++) {
            float v = scale * dout[last_red ? o : o + i];
            g[i] = acc ? g[i] + v : v;
        }
    }
}

static float scale_of(const usi_tensor *t, const rdims *r)
{
    return t->attrs.reduce.kind == USI_REDUCE_MEAN ? 1.0f / (float)r->count : 1.0f;
}

usi_error *usi_cpu_reduce_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    rdims r;
    usi_reduce_plan_of(t->src[0], t->attrs.reduce.axes, &r);
    reduce_forward(t->data, t->src[0]->data, &r, t->numel, scale_of(t, &r));
    return NULL;
}

usi_error *usi_cpu_reduce_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    const usi_tensor *x = t->src[0];
    if (!x->grad) return NULL;
    rdims r;
    usi_reduce_plan_of(x, t->attrs.reduce.axes, &r);
    reduce_backward(x->grad, t->grad, &r, x->numel, scale_of(t, &r), acc[0]);
    return NULL;
}
