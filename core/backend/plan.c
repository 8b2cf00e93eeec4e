#include "backend/plan.h"

#include <string.h>

/* A tensor's dims in memory order: its shape, or beside a channels-last
 * 4-d output [N,C,H,W] its shape right-aligned to 4 dims in the memory's
 * order [N,H,W,C] (an operand of a channels-last op is kept so too, or has
 * one pixel and so the same memory either way: core/backend/cuda/backend.c). */
static int32_t memory_dims(const usi_tensor *x, int32_t cl, int64_t *dims)
{
    if (!cl || x->ndim > 4) {
        for (int32_t d = 0; d < x->ndim; d++) dims[d] = x->shape[d];
        return x->ndim;
    }
    int64_t s4[4] = {1, 1, 1, 1};
    for (int32_t d = 0; d < x->ndim; d++) s4[4 - x->ndim + d] = x->shape[d];
    dims[0] = s4[0];
    dims[1] = s4[2];
    dims[2] = s4[3];
    dims[3] = s4[1];
    return 4;
}

static void strides_of(const int64_t *x, int32_t nx, int32_t nout, int64_t *s)
{
    int64_t st = 1;
    for (int32_t d = nout - 1; d >= 0; d--) {
        int32_t dx = d - (nout - nx);
        int64_t size = dx >= 0 ? x[dx] : 1;
        s[d] = size == 1 ? 0 : st;
        st *= size;
    }
}

void usi_bcast_plan_of(const usi_tensor *t, usi_bcast_plan *bc)
{
    int64_t sa[USI_MAX_DIMS], sb[USI_MAX_DIMS], to[USI_MAX_DIMS], ta[USI_MAX_DIMS], tb[USI_MAX_DIMS];
    int32_t cl = t->cl && t->ndim == 4;
    int32_t nt = memory_dims(t, cl, to), na = memory_dims(t->src[0], cl, ta), nb = memory_dims(t->src[1], cl, tb);
    strides_of(ta, na, nt, sa);
    strides_of(tb, nb, nt, sb);
    bc->n = 0;
    for (int32_t d = 0; d < nt; d++) {
        if (to[d] == 1) continue;
        int32_t k = bc->n - 1;
        if (k >= 0 && bc->sa[k] == sa[d] * to[d] && bc->sb[k] == sb[d] * to[d]) {
            bc->shape[k] *= to[d];
            bc->sa[k] = sa[d];
            bc->sb[k] = sb[d];
            continue;
        }
        bc->shape[bc->n] = to[d];
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
    /* dims in memory order: a channels-last [N,C,H,W] as [N,H,W,C] */
    int64_t shape[USI_MAX_DIMS];
    uint32_t m = mask;
    for (int32_t d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    if (x->cl && x->ndim == 4) {
        memory_dims(x, 1, shape);
        m = (mask & 1u) | ((mask >> 1) & 6u) | ((mask & 2u) << 2);
    }
    int64_t st = x->numel;
    for (int32_t d = 0; d < x->ndim; d++) {
        st /= shape[d];
        int32_t red = (m >> d) & 1;
        if (red) r->count *= shape[d];
        if (shape[d] == 1) continue;
        int32_t k = r->n - 1;
        if (k >= 0 && r->reduced[k] == red) {
            r->shape[k] *= shape[d];
            r->istride[k] = st;
            continue;
        }
        r->shape[r->n] = shape[d];
        r->istride[r->n] = st;
        r->reduced[r->n] = red;
        r->n++;
    }
}

/* An operand of a channels-last binary op: kept so, or of one pixel once
 * right-aligned to 4 dims ([N,C,1,1], [C,1,1], a scalar: the same memory in
 * either order). */
static int cl_operand(const usi_tensor *x)
{
    if (!x || x->ndim > 4) return 0;
    if (x->cl) return x->ndim == 4;
    int64_t h = x->ndim >= 2 ? x->shape[x->ndim - 2] : 1, w = x->ndim >= 1 ? x->shape[x->ndim - 1] : 1;
    return h * w == 1;
}

int32_t usi_bcast_cl_ok(const usi_tensor *t)
{
    return t->op == USI_OP_BINARY && t->cl && t->n_src == 2 && cl_operand(t) && cl_operand(t->src[0]) &&
           cl_operand(t->src[1]);
}

int32_t usi_reduce_cl_ok(const usi_tensor *t)
{
    const usi_tensor *x = t->n_src > 0 ? t->src[0] : NULL;
    if (t->op != USI_OP_REDUCE || !x || !x->cl || x->ndim != 4 || t->cl) return 0;
    uint32_t m = t->attrs.reduce.axes;
    int c_kept = !(m & 2u), hw_kept = (!(m & 4u) && x->shape[2] > 1) || (!(m & 8u) && x->shape[3] > 1);
    return !(c_kept && hw_kept);
}
