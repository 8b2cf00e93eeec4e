/* Dropout and drop-path. Masks are never stored: they are a pure function of
 * (graph seed, step, node id, chunk), so backward draws the same mask again
 * and the result does not depend on the thread count. */
#include "backend/cpu/cpu.h"
#include "util/rng.h"

#define CHUNK 4096

/* out[n] = keep ? x[n] / (1-p) : 0; with dy given, the same for the gradient */
static void dropout_run(float *out, const float *x, int64_t n, double p,
                        const usi_exec_ctx *ctx, int32_t id, int32_t acc)
{
    float scale = (float)(1.0 / (1.0 - p));
    int64_t chunks = (n + CHUNK - 1) / CHUNK;
    #pragma omp parallel for schedule(static) if (n > USI_PAR_MIN)
    for (int64_t ch = 0; ch < chunks; ch++) {
        usi_rng r;
        usi_rng_seed(&r, ctx->seed, ctx->step, (uint64_t)id, (uint64_t)ch);
        int64_t end = (ch + 1) * CHUNK < n ? (ch + 1) * CHUNK : n;
        for (int64_t i = ch * CHUNK; i < end; i++) {
            float v = usi_rng_uniform(&r) >= p ? x[i] * scale : 0.0f;
            out[i] = acc ? out[i] + v : v;
        }
    }
}

usi_error *usi_cpu_dropout_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    dropout_run(t->data, t->src[0]->data, t->numel, t->attrs.dropout.p, ctx, t->id, 0);
    return NULL;
}

usi_error *usi_cpu_dropout_bwd(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    if (t->src[0]->grad)
        dropout_run(t->src[0]->grad, t->grad, t->numel, t->attrs.dropout.p, ctx, t->id,
                    acc[0]);
    return NULL;
}

/* out[n, ...] = keep[n] ? x[n, ...] / (1-p) : 0, one draw per sample */
static void drop_path_run(float *out, const float *x, int64_t N, int64_t per,
                          double p, const usi_exec_ctx *ctx, int32_t id, int32_t acc)
{
    usi_rng r;
    usi_rng_seed(&r, ctx->seed, ctx->step, (uint64_t)id, 0x6470);
    float scale = (float)(1.0 / (1.0 - p));
    for (int64_t s = 0; s < N; s++) {
        float k = usi_rng_uniform(&r) >= p ? scale : 0.0f;
        for (int64_t i = s * per; i < (s + 1) * per; i++)
            out[i] = acc ? out[i] + k * x[i] : k * x[i];
    }
}

usi_error *usi_cpu_drop_path_fwd(const usi_exec_ctx *ctx, usi_tensor *t)
{
    int64_t N = t->shape[0];
    drop_path_run(t->data, t->src[0]->data, N, t->numel / N, t->attrs.drop_path.p, ctx,
                  t->id, 0);
    return NULL;
}

usi_error *usi_cpu_drop_path_bwd(const usi_exec_ctx *ctx, usi_tensor *t,
                                 const int32_t *acc)
{
    int64_t N = t->shape[0];
    if (t->src[0]->grad)
        drop_path_run(t->src[0]->grad, t->grad, N, t->numel / N, t->attrs.drop_path.p,
                      ctx, t->id, acc[0]);
    return NULL;
}
