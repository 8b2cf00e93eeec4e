#include "train/optim.h"

#include <math.h>
#include <string.h>

#include "util/strutil.h"

int usi_optim_state_count(int kind) { return kind == USI_OPT_SGD ? 1 : 2; }

int usi_param_decays(const char *name, int ndim)
{
    return ndim >= 2 && !usi_ends_with(name, ".bias");
}

double usi_scaled_lr(double lr, int64_t lr_batch, int64_t global_batch)
{
    return lr * (double)global_batch / (double)lr_batch;
}

// w, g, m, v: [n]
static void adamw_update(const usi_optim_hp *hp, int64_t step, float *w, const float *g,
                                 float *m, float *v, size_t n)
{
    double bc1 = 1.0 - pow(hp->beta1, (double)step);
    double bc2 = 1.0 - pow(hp->beta2, (double)step);
    float b1 = (float)hp->beta1, b2 = (float)hp->beta2;
    float decay = (float)(1.0 - hp->lr * hp->weight_decay);
    float step_size = (float)(hp->lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    float eps = (float)hp->eps;
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        float denom = sqrtf(v[i]) * inv_sqrt_bc2 + eps;
        w[i] = w[i] * decay - step_size * m[i] / denom;
    }
}

static void sgd_update(const usi_optim_hp *hp, int64_t step, float *w, const float *g, float *buf,
                       size_t n)
{
    float wd = (float)hp->weight_decay, mom = (float)hp->momentum, lr = (float)hp->lr;
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        buf[i] = step == 1 ? d : mom * buf[i] + d;
        w[i] -= lr * (hp->nesterov ? d + mom * buf[i] : buf[i]);
    }
}

static void lamb_update(const usi_optim_hp *hp, int64_t step, float *w, const float *g, float *m,
                        float *v, size_t n)
{
    double bc1 = 1.0 - pow(hp->beta1, (double)step);
    double bc2 = 1.0 - pow(hp->beta2, (double)step);
    float b1 = (float)hp->beta1, b2 = (float)hp->beta2, eps = (float)hp->eps;
    float wd = (float)hp->weight_decay;
    double w_norm = 0, u_norm = 0;
    /* Two passes: the trust ratio needs the norm of the whole update. */
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        float u = (float)(m[i] / bc1) / (sqrtf((float)(v[i] / bc2)) + eps) + wd * w[i];
        w_norm += (double)w[i] * w[i];
        u_norm += (double)u * u;
    }
    w_norm = sqrt(w_norm);
    u_norm = sqrt(u_norm);
    double trust = (w_norm > 0 && u_norm > 0) ? w_norm / u_norm : 1.0;
    float scale = (float)(hp->lr * trust);
    for (size_t i = 0; i < n; i++) {
        float u = (float)(m[i] / bc1) / (sqrtf((float)(v[i] / bc2)) + eps) + wd * w[i];
        w[i] -= scale * u;
    }
}

void usi_optim_step(const usi_optim_hp *hp, int64_t step, float *w, const float *g,
                    float *const *state, size_t n)
{
    switch (hp->kind) {
    case USI_OPT_ADAMW: adamw_update(hp, step, w, g, state[0], state[1], n); break;
    case USI_OPT_SGD: sgd_update(hp, step, w, g, state[0], n); break;
    case USI_OPT_LAMB: lamb_update(hp, step, w, g, state[0], state[1], n); break;
    }
}

double usi_clip_grad_norm(float *const *grads, const size_t *sizes, size_t count, double max_norm)
{
    double sq = 0;
    for (size_t t = 0; t < count; t++)
        for (size_t i = 0; i < sizes[t]; i++) sq += (double)grads[t][i] * grads[t][i];
    double norm = sqrt(sq);
    if (max_norm > 0 && norm > max_norm) {
        float s = (float)(max_norm / (norm + 1e-6));
        for (size_t t = 0; t < count; t++)
            for (size_t i = 0; i < sizes[t]; i++) grads[t][i] *= s;
    }
    return norm;
}
