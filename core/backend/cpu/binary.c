/* a (op) b with numpy broadcasting. Shapes are first collapsed (adjacent dims
 * that broadcast alike merge), so [N,C,H,W] * [N,C,1,1] runs as rows of
 * H*W against one value per row. */
#include "backend/cpu/cpu.h"
#include "backend/plan.h"

typedef usi_bcast_plan bcast;

static void row_offsets(const bcast *bc, int64_t row, int64_t *ao, int64_t *bo)
{
    *ao = *bo = 0;
    for (int32_t d = bc->n - 2; d >= 0; d--) {
        int64_t i = row % bc->shape[d];
        row /= bc->shape[d];
        *ao += i * bc->sa[d];
        *bo += i * bc->sb[d];
    }
}

/* One row of L outputs; the stride cases each get a loop of their own so
 * the common ones (same shape, a row against one value) vectorise. */
#define ROW_LOOP(EXPR)                                                        \
    do {                                                                      \
        if (la == 1 && lb == 1) {                                             \
            _Pragma("omp simd") for (int64_t i = 0; i < L; i++) {             \
                float x = ap[i], z = bp[i];                                   \
                y[i] = (EXPR);                                                \
            }                                                                 \
        } else if (la == 1) {                                                 \
            float z = bp[0];                                                  \
            _Pragma("omp simd") for (int64_t i = 0; i < L; i++) {             \
                float x = ap[i];                                              \
                y[i] = (EXPR);                                                \
            }                                                                 \
        } else {                                                              \
            for (int64_t i = 0; i < L; i++) {                                 \
                float x = ap[i * la], z = bp[i * lb];                         \
                y[i] = (EXPR);                                                \
            }                                                                 \
        }                                                                     \
    } while (0)

static void binary_row(float *y, const float *ap, const float *bp, int64_t L, int64_t la,
                       int64_t lb, int32_t op)
{
    switch (op) {
    case USI_BIN_ADD: ROW_LOOP(x + z); break;
    case USI_BIN_SUB: ROW_LOOP(x - z); break;
    case USI_BIN_MUL: ROW_LOOP(x * z); break;
    default: ROW_LOOP(x / z); break;
    }
}

/* out[...] = a[bcast] op b[bcast] */
static void binary_forward(float *out, const float *a, const float *b,
                           const bcast *bc, int32_t op)
{
    int64_t L = bc->shape[bc->n - 1], rows = 1;
    int64_t la = bc->sa[bc->n - 1], lb = bc->sb[bc->n - 1];
    for (int32_t d = 0; d < bc->n - 1; d++) rows *= bc->shape[d];
    #pragma omp parallel for schedule(static) if (rows * L > USI_PAR_MIN && rows > 1)
    for (int64_t r = 0; r < rows; r++) {
        int64_t ao, bo;
        row_offsets(bc, r, &ao, &bo);
        binary_row(out + r * L, a + ao, b + bo, L, la, lb, op);
    }
}

/* d/da or d/db of one element, given dy. */
static inline float partial(int32_t op, int which, float dy, float a, float b)
{
    switch (op) {
    case USI_BIN_ADD: return dy;
    case USI_BIN_SUB: return which ? -dy : dy;
    case USI_BIN_MUL: return which ? dy * a : dy * b;
    default: return which ? -dy * a / (b * b) : dy / b;
    }
}

/* dx (+)= sum over broadcast of partial(dy, a, b), for x = a (which 0) or b. */
static void binary_backward(float *dx, int64_t nx, const float *dy, const float *a,
                            const float *b, const bcast *bc, int32_t op, int which,
                            int32_t acc)
{
    usi_grad_begin(dx, nx, acc);
    int64_t L = bc->shape[bc->n - 1], rows = 1;
    int64_t la = bc->sa[bc->n - 1], lb = bc->sb[bc->n - 1];
    const int64_t *sx = which ? bc->sb : bc->sa;
    int distinct_rows = 1; /* each row of dy owns its rows of dx: no races */
    for (int32_t d = 0; d < bc->n - 1; d++) {
        rows *= bc->shape[d];
        if (sx[d] == 0) distinct_rows = 0;
    }
    int64_t lx = which ? lb : la;
    #pragma omp parallel for schedule(static) if (distinct_rows && rows > 1 && rows * L > USI_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t ao, bo;
        row_offsets(bc, r, &ao, &bo);
        float *gx = dx + (which ? bo : ao);
        const float *g = dy + r * L;
        if (lx == 0) { /* x broadcast along the row: a sum */
            float s = 0;
            #pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < L; i++) {
                float av = a ? a[ao + i * la] : 0, bv = b ? b[bo + i * lb] : 0;
                s += partial(op, which, g[i], av, bv);
            }
            gx[0] += s;
            continue;
        }
        #pragma omp simd
        for (int64_t i = 0; i < L; i++) {
            float av = a ? a[ao + i * la] : 0, bv = b ? b[bo + i * lb] : 0;
            gx[i * lx] += partial(op, which, g[i], av, bv);
        }
    }
}

/* The residual add's gradient: dy itself, copied or added in one pass. */
static void pass_through(float *dx, const float *dy, int64_t n, int32_t acc)
{
    if (!acc) {
        memcpy(dx, dy, (size_t)n * sizeof(float));
        return;
    }
    #pragma omp parallel for simd schedule(static) if (n > USI_PAR_MIN)
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i];
}

usi_error *usi_cpu_binary_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    bcast bc;
    usi_bcast_plan_of(t, &bc);
    binary_forward(t->data, t->src[0]->data, t->src[1]->data, &bc, t->attrs.binary.kind);
    return NULL;
}

usi_error *usi_cpu_binary_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    bcast bc;
    usi_bcast_plan_of(t, &bc);
    int32_t op = t->attrs.binary.kind;
    int reads = op == USI_BIN_MUL || op == USI_BIN_DIV;
    const float *a = reads ? t->src[0]->data : NULL, *b = reads ? t->src[1]->data : NULL;
    for (int which = 0; which < 2; which++) {
        usi_tensor *x = t->src[which];
        if (!x->grad) continue;
        if (x->numel == t->numel && (op == USI_BIN_ADD || (op == USI_BIN_SUB && !which))) {
            pass_through(x->grad, t->grad, t->numel, acc[which]);
            continue;
        }
        binary_backward(x->grad, x->numel, t->grad, a, b, &bc, op, which, acc[which]);
    }
    return NULL;
}
