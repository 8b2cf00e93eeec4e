/* Training-step entry points: optimizer, EMA, gradient norm, scaling and
 * the teacher's input conversion, on the device's stream. The optimizer's
 * segments become a table of chunks (at most USI_CUDA_CHUNK elements each)
 * uploaded once and reused while the segments stay the same, so a step is
 * one launch (two for LAMB) over every parameter. */
#include <math.h>
#include <stdlib.h>

#include <string.h>

#include "backend/cuda/cuda.h"

typedef struct usi_cuda_optim_cache {
    usi_optim_seg *segs;      /* host copy of the segments the table is for */
    int32_t n_segs;
    usi_cuda_chunk *host;     /* the table */
    usi_cuda_chunk *dev;
    int32_t n_chunks, cap_chunks;
    double *norms;            /* LAMB: 2 per segment */
    int32_t cap_norms;
} usi_cuda_optim_cache;

/* The chunks of segs: host array of *n entries (caller frees). */
usi_error *usi_cuda_optim_chunks(const usi_optim_seg *segs, int32_t n_segs, usi_cuda_chunk **out, int32_t *n)
{
    int64_t total = 0;
    for (int32_t i = 0; i < n_segs; i++) total += ((int64_t)segs[i].n + USI_CUDA_CHUNK - 1) / USI_CUDA_CHUNK;
    if (total > INT32_MAX) return usi_error_new(USI_ERR_UNSUPPORTED, "optimizer: too many parameters");
    usi_cuda_chunk *ch = calloc((size_t)(total ? total : 1), sizeof *ch);
    if (!ch) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    int32_t k = 0;
    for (int32_t i = 0; i < n_segs; i++)
        for (size_t at = 0; at < segs[i].n; at += USI_CUDA_CHUNK) {
            size_t len = segs[i].n - at < USI_CUDA_CHUNK ? segs[i].n - at : USI_CUDA_CHUNK;
            ch[k++] = (usi_cuda_chunk){(int64_t)(segs[i].off + at), (int32_t)len, i, segs[i].decays, 0};
        }
    *out = ch;
    *n = k;
    return NULL;
}

static usi_error *chunk_table(usi_cuda *c, const usi_optim_args *a, usi_cuda_optim_cache **out)
{
    if (!c->optim) {
        c->optim = calloc(1, sizeof *c->optim);
        if (!c->optim) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    }
    usi_cuda_optim_cache *oc = c->optim;
    *out = oc;
    size_t seg_bytes = (size_t)a->n_segs * sizeof *a->segs;
    if (oc->segs && oc->n_segs == a->n_segs && !memcmp(oc->segs, a->segs, seg_bytes)) return NULL;
    usi_optim_seg *segs = malloc(seg_bytes ? seg_bytes : 1);
    if (!segs) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    memcpy(segs, a->segs, seg_bytes);
    usi_cuda_chunk *host = NULL;
    int32_t n;
    usi_error *e = usi_cuda_optim_chunks(a->segs, a->n_segs, &host, &n);
    if (e) {
        free(segs);
        return e;
    }
    free(oc->segs);
    free(oc->host);
    oc->segs = segs;
    oc->n_segs = a->n_segs;
    oc->host = host;
    oc->n_chunks = n;
    if (n > oc->cap_chunks) {
        /* queued launches may still read the old table: cudaFree waits */
        if (oc->dev) cudaFree(oc->dev);
        oc->dev = NULL;
        oc->cap_chunks = 0;
        CUDA_TRY(cudaMalloc((void **)&oc->dev, (size_t)n * sizeof *oc->dev));
        oc->cap_chunks = n;
    }
    if (a->n_segs > oc->cap_norms) {
        if (oc->norms) cudaFree(oc->norms);
        oc->norms = NULL;
        oc->cap_norms = 0;
        CUDA_TRY(cudaMalloc((void **)&oc->norms, 2 * (size_t)a->n_segs * sizeof(double)));
        oc->cap_norms = a->n_segs;
    }
    /* from pageable memory: staged before the call returns */
    if (n) CUDA_TRY(cudaMemcpyAsync(oc->dev, oc->host, (size_t)n * sizeof *oc->dev, cudaMemcpyHostToDevice, c->stream));
    return NULL;
}

usi_error *usi_cuda_optim_step(usi_device *d, const usi_optim_args *a)
{
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    usi_cuda_optim_cache *oc = NULL;
    USI_TRY(chunk_table(c, a, &oc));
    const usi_optim_hp *hp = &a->hp;
    switch (hp->kind) {
    case USI_OPT_ADAMW: {
        /* the CPU backend's host-side constants */
        double bc1 = 1.0 - pow(hp->beta1, (double)a->step), bc2 = 1.0 - pow(hp->beta2, (double)a->step);
        return usi_cuda_adamw_forward(c->stream, a->w, a->g, a->s0, a->s1, oc->dev, oc->n_chunks, (float)hp->beta1,
                                      (float)hp->beta2, (float)hp->eps, (float)(1.0 - hp->lr * hp->weight_decay),
                                      (float)(hp->lr / bc1), (float)(1.0 / sqrt(bc2)));
    }
    case USI_OPT_SGD:
        return usi_cuda_sgd_forward(c->stream, a->w, a->g, a->s0, oc->dev, oc->n_chunks, (float)hp->weight_decay,
                                    (float)hp->momentum, (float)hp->lr, a->step == 1, hp->nesterov);
    case USI_OPT_LAMB: {
        double bc1 = 1.0 - pow(hp->beta1, (double)a->step), bc2 = 1.0 - pow(hp->beta2, (double)a->step);
        return usi_cuda_lamb_forward(c->stream, a->w, a->g, a->s0, a->s1, oc->dev, oc->n_chunks, oc->norms,
                                     a->n_segs, (float)hp->beta1, (float)hp->beta2, (float)hp->eps,
                                     (float)hp->weight_decay, bc1, bc2, hp->lr);
    }
    default: return usi_error_new(USI_ERR_INVALID, "unknown optimizer kind %d", hp->kind);
    }
}

usi_error *usi_cuda_ema_update(usi_device *d, float *ema, const float *w, size_t n, double decay)
{
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    return usi_cuda_ema_forward(c->stream, ema, w, n, (float)decay, (float)(1.0 - decay));
}

usi_error *usi_cuda_sum_squares(usi_device *d, const float *x, size_t n, double *out)
{
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    USI_TRY(usi_cuda_sum_squares_forward(c->stream, x, n, c->partials, USI_CUDA_SUMSQ_PARTIALS, c->result));
    CUDA_TRY(cudaMemcpyAsync(c->host_result, c->result, sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    CUDA_TRY(cudaStreamSynchronize(c->stream));
    *out = *c->host_result;
    return NULL;
}

usi_error *usi_cuda_scale(usi_device *d, float *x, size_t n, double s)
{
    usi_cuda *c = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(c));
    return usi_cuda_scale_inplace(c->stream, x, n, (float)s);
}

usi_error *usi_cuda_image_convert(usi_device *d, float *dst, const float *src, int32_t n, int32_t c, int32_t h,
                                  int32_t w, int32_t oh, int32_t ow, int32_t interp, const float *a,
                                  const float *b)
{
    usi_cuda *cu = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(cu));
    return usi_cuda_image_convert_forward(cu->stream, dst, src, n, c, h, w, oh, ow, interp, a, b);
}

usi_error *usi_cuda_u8_normalize(usi_device *d, float *dst, const uint8_t *src, int32_t n, int32_t h, int32_t w,
                                 const float *mean, const float *std)
{
    usi_cuda *cu = usi_cuda_of(d);
    USI_TRY(usi_cuda_use(cu));
    return usi_cuda_u8_normalize_forward(cu->stream, dst, src, n, h, w, mean, std);
}
