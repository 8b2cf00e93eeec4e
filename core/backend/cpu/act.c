/* Element-wise activations and scale. Where the derivative is a function of
 * the output (relu, sigmoid, ...) backward reads the output, so the planner
 * can drop the input early. */
#include <math.h>

#include "backend/cpu/cpu.h"

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* log clamps its input at LOG_MIN: a probability that underflowed to 0 gives
 * log(1e-30) = -69 instead of -inf, which would poison a KD loss with NaN. */
static const float LOG_MIN = 1e-30f;

static const float SQRT1_2 = 0.70710678118654752f;
static const float GELU_K = 0.79788456080286536f; /* sqrt(2/pi) */

/* One loop per activation, so each vectorises on its own. */
#define ACT_LOOP(expr)                                                        \
    do {                                                                      \
        _Pragma("omp parallel for simd schedule(static) if (n > USI_PAR_MIN)")     \
        for (int64_t i = 0; i < n; i++) {                                     \
            float x = inp[i];                                                 \
            out[i] = (expr);                                                  \
        }                                                                     \
    } while (0)

/* out[n] = act(inp[n]) */
static void activation_forward(float *out, const float *inp, int64_t n, int32_t act,
                               float alpha)
{
    switch (act) {
    case USI_ACT_RELU: ACT_LOOP(x > 0 ? x : 0.0f); break;
    case USI_ACT_RELU6: ACT_LOOP(x < 0 ? 0.0f : x > 6 ? 6.0f : x); break;
    case USI_ACT_LEAKY_RELU: ACT_LOOP(x > 0 ? x : alpha * x); break;
    case USI_ACT_GELU: ACT_LOOP(0.5f * x * (1.0f + erff(x * SQRT1_2))); break;
    case USI_ACT_GELU_TANH:
        ACT_LOOP(0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x))));
        break;
    case USI_ACT_SILU: ACT_LOOP(x / (1.0f + expf(-x))); break;
    case USI_ACT_HARDSWISH: ACT_LOOP(x <= -3 ? 0.0f : x >= 3 ? x : x * (x + 3) / 6); break;
    case USI_ACT_HARDSIGMOID: ACT_LOOP(x <= -3 ? 0.0f : x >= 3 ? 1.0f : (x + 3) / 6); break;
    case USI_ACT_SIGMOID: ACT_LOOP(1.0f / (1.0f + expf(-x))); break;
    case USI_ACT_LOG: ACT_LOOP(logf(x > LOG_MIN ? x : LOG_MIN)); break;
    default: ACT_LOOP(tanhf(x)); break;
    }
}

/* d act / dx at input x (or output y for the output-based ones). */
static inline float act_grad(int32_t act, float alpha, float x, float y)
{
    switch (act) {
    case USI_ACT_RELU: return y > 0;
    case USI_ACT_RELU6: return y > 0 && y < 6;
    case USI_ACT_LEAKY_RELU: return alpha > 0 ? (y > 0 ? 1 : alpha) : (x > 0 ? 1 : alpha);
    case USI_ACT_GELU:
        return 0.5f * (1.0f + erff(x * SQRT1_2)) +
               x * expf(-0.5f * x * x) * 0.39894228040143268f;
    case USI_ACT_GELU_TANH: {
        float th = tanhf(GELU_K * (x + 0.044715f * x * x * x));
        return 0.5f * (1 + th) +
               0.5f * x * (1 - th * th) * GELU_K * (1 + 3 * 0.044715f * x * x);
    }
    case USI_ACT_SILU: {
        float s = sigmoidf(x);
        return s * (1 + x * (1 - s));
    }
    case USI_ACT_HARDSWISH: return x < -3 ? 0 : x > 3 ? 1 : (2 * x + 3) / 6;
    case USI_ACT_HARDSIGMOID: return y > 0 && y < 1 ? 1.0f / 6 : 0;
    case USI_ACT_SIGMOID: return y * (1 - y);
    /* The clamped part is constant, so its slope is 0 (not 1e30). */
    case USI_ACT_LOG: return x > LOG_MIN ? 1.0f / x : 0.0f;
    default: return 1 - y * y;
    }
}

/* dinp[n] (+)= dout[n] * act'(inp[n] | out[n]); inp or out may be NULL when
 * the derivative does not read it. */
static void activation_backward(float *dinp, const float *dout, const float *inp,
                                const float *out, int64_t n, int32_t act,
                                float alpha, int32_t acc)
{
    if (act == USI_ACT_RELU) { /* the common case, kept branch-free */
        if (acc) {
            #pragma omp parallel for simd schedule(static) if (n > USI_PAR_MIN)
            for (int64_t i = 0; i < n; i++) {
                float d = dout[i]; /* loaded either way, so the select vectorises */
                dinp[i] += out[i] > 0 ? d : 0.0f;
            }
        } else {
            #pragma omp parallel for simd schedule(static) if (n > USI_PAR_MIN)
            for (int64_t i = 0; i < n; i++) {
                float d = dout[i];
                dinp[i] = out[i] > 0 ? d : 0.0f;
            }
        }
        return;
    }
    usi_grad_begin(dinp, n, acc);
    #pragma omp parallel for simd schedule(static) if (n > USI_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        dinp[i] += dout[i] * act_grad(act, alpha, inp ? inp[i] : 0, out ? out[i] : 0);
}

usi_error *usi_cpu_act_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    activation_forward(t->data, t->src[0]->data, t->numel, t->attrs.act.kind,
                       (float)t->attrs.act.alpha);
    return NULL;
}

usi_error *usi_cpu_act_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    uint32_t mask;
    int32_t needs_out;
    usi_op_backward_needs(t, &mask, &needs_out);
    if (!t->src[0]->grad) return NULL;
    activation_backward(t->src[0]->grad, t->grad, mask ? t->src[0]->data : NULL,
                        needs_out ? t->data : NULL, t->numel, t->attrs.act.kind,
                        (float)t->attrs.act.alpha, acc[0]);
    return NULL;
}

/* out[n] = s * inp[n] */
static void scale_forward(float *out, const float *inp, int64_t n, float s, int32_t acc)
{
    #pragma omp parallel for simd schedule(static) if (n > USI_PAR_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = acc ? out[i] + s * inp[i] : s * inp[i];
}

usi_error *usi_cpu_scale_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    (void)ctx;
    scale_forward(t->data, t->src[0]->data, t->numel, (float)t->attrs.scale.factor, 0);
    return NULL;
}

usi_error *usi_cpu_scale_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    (void)ctx;
    if (t->src[0]->grad)
        scale_forward(t->src[0]->grad, t->grad, t->numel, (float)t->attrs.scale.factor,
                      acc[0]);
    return NULL;
}
