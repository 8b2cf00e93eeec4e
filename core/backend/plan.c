#include "backend/plan.h"

#include <string.h>

static void strides_of(const usi_tensor *x, const usi_tensor *out, int64_t *s)
{
    int64_t st = 1;
    for (int32_t d = out->ndim - 1; d >= 0; d--) {
        int32_t dx = d - (out->ndim - x->ndim);
        int64_t size = dx >= 0 ? x->shape[dx] : 1;
        s[d] = size == 1 ? 0 : st;
        st *= size;
    }
}

void usi_bcast_plan_of(const usi_tensor *t, usi_bcast_plan *bc)
{
    int64_t sa[USI_MAX_DIMS], sb[USI_MAX_DIMS];
    strides_of(t->src[0], t, sa);
    strides_of(t->src[1], t, sb);
    bc->n = 0;
    for (int32_t d = 0; d < t->ndim; d++) {
        if (t->shape[d] == 1) continue;
        int32_t k = bc->n - 1;
        if (k >= 0 && bc->sa[k] == sa[d] * t->shape[d] && bc->sb[k] == sb[d] * t->shape[d]) {
            bc->shape[k] *= t->shape[d];
            bc->sa[k] = sa[d];
            bc->sb[k] = sb[d];
            continue;
        }
        bc->shape[bc->n] = t->shape[d];
        bc->sa[bc->n] = sa[d];
        bc->sb[bc->n] = sb[d];
        bc->n++;
    }
    if (bc->n == 0) {
        bc->n = 1;
        bc->shape[0] = 1;
        bc->sa[0] = bc->sb[0] = 0;
    }
}

void usi_reduce_plan_of(const usi_tensor *x, uint32_t mask, usi_reduce_plan *r)
{
    memset(r, 0, sizeof *r);
    r->count = 1;
    int64_t st = x->numel;
    for (int32_t d = 0; d < x->ndim; d++) {
        st /= x->shape[d];
        int32_t red = (mask >> d) & 1;
        if (red) r->count *= x->shape[d];
        if (x->shape[d] == 1) continue;
        int32_t k = r->n - 1;
        if (k >= 0 && r->reduced[k] == red) {
            r->shape[k] *= x->shape[d];
            r->istride[k] = st;
            continue;
        }
        r->shape[r->n] = x->shape[d];
        r->istride[r->n] = st;
        r->reduced[r->n] = red;
        r->n++;
    }
}
