#include "dist/reducer.h"

#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/error.h"

typedef struct bucket {
    size_t lo, hi;           /* bytes [lo, hi) of the gradient block */
} bucket;

struct usi_reducer {
    usi_graph *g;
    usi_dbuf *grads;
    size_t bytes;
    bucket *b;               /* from the top of the block down       */
    int32_t n_buckets, next; /* next: the first bucket not started   */
    int32_t hooked;          /* overlap: installed as the graph's hook */
    const usi_transport *tr;
    void *tr_ctx;
    usi_error *err;          /* the first error from the hook        */
    usi_reducer_stats st;
};

typedef struct seg {
    size_t off, end;
} seg;

static int by_off(const void *a, const void *b)
{
    size_t x = ((const seg *)a)->off, y = ((const seg *)b)->off;
    return x < y ? -1 : x > y;
}

/* Buckets cut at parameter starts, filled from the top: each holds whole
 * parameters (and the alignment gaps between them) up to the cap. */
static usi_error *cut_buckets(usi_reducer *r, size_t cap)
{
    int32_t n = usi_graph_num_params(r->g), m = 0;
    seg *s = malloc(sizeof *s * (size_t)(n + 1));
    r->b = malloc(sizeof *r->b * (size_t)(n + 1));
    if (!s || !r->b) {
        free(s);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    for (int32_t i = 0; i < n; i++) {
        usi_param_info p;
        usi_graph_param_at(r->g, i, &p);
        if (p.trainable) s[m++] = (seg){p.offset, p.offset + (size_t)p.numel * sizeof(float)};
    }
    qsort(s, (size_t)m, sizeof *s, by_off);
    size_t hi = r->bytes;
    for (int32_t k = m - 1; k >= 0; k--) {
        int last = k == 0;
        if (last || hi - s[k].off >= cap || hi - s[k - 1].off > cap) {
            size_t lo = last ? 0 : s[k].off;
            if (lo < hi) r->b[r->n_buckets++] = (bucket){lo, hi};
            hi = lo;
        }
    }
    free(s);
    return NULL;
}

static void on_ready(void *ctx, size_t ready_from)
{
    usi_reducer *r = ctx;
    if (r->err) return;
    while (r->next < r->n_buckets && r->b[r->next].lo >= ready_from) {
        bucket *b = &r->b[r->next++];
        r->err = r->tr->start(r->tr_ctx, r->grads, b->lo, b->hi - b->lo);
        if (r->err) return;
        r->st.early++;
    }
    /* MPI moves non-blocking collectives only inside MPI calls. */
    if (r->next > 0) r->err = r->tr->progress(r->tr_ctx);
}

usi_error *usi_reducer_new(usi_graph *g, const usi_reducer_opts *o, usi_reducer **out)
{
    *out = NULL;
    usi_reducer *r = calloc(1, sizeof *r);
    if (!r) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_graph_blocks blocks;
    usi_graph_get_blocks(g, &blocks);
    r->g = g;
    r->grads = blocks.grads;
    r->bytes = blocks.n_trainable * sizeof(float);
    usi_error *e = cut_buckets(r, o->bucket_bytes ? o->bucket_bytes : ((size_t)25 << 20));
    if (!e && !strcmp(o->transport, "nccl"))
        e = usi_transport_nccl(r->grads, r->bytes, r->n_buckets, &r->tr, &r->tr_ctx);
    else if (!e && !strcmp(o->transport, "mpi"))
        e = usi_transport_mpi(r->grads, r->bytes, r->n_buckets, &r->tr, &r->tr_ctx);
    else if (!e)
        e = usi_error_new(USI_ERR_INVALID, "dist.backend = \"%s\": use \"mpi\" or \"nccl\"", o->transport);
    if (!e && o->overlap && r->n_buckets) {
        e = usi_graph_on_grad_ready(g, on_ready, r);
        r->hooked = e == NULL;
    }
    if (e) {
        usi_reducer_free(r);
        return e;
    }
    r->st.buckets = r->n_buckets;
    *out = r;
    return NULL;
}

void usi_reducer_free(usi_reducer *r)
{
    if (!r) return;
    usi_graph_on_grad_ready(r->g, NULL, NULL);
    if (r->tr) r->tr->free(r->tr_ctx);
    usi_error_free(r->err);
    free(r->b);
    free(r);
}

usi_error *usi_reducer_finish(void *reducer, usi_dbuf *grads, size_t n)
{
    usi_reducer *r = reducer;
    if (grads != r->grads || n * sizeof(float) != r->bytes)
        return usi_error_new(USI_ERR_INTERNAL, "reducer: called on another gradient block");
    double t0 = usi_now();
    usi_error *e = r->err;
    r->err = NULL;
    /* Buckets backward did not start (no overlap, or no backward at all on
     * a rank whose batch was left out) go now, top first as everywhere. */
    while (!e && r->next < r->n_buckets) {
        bucket *b = &r->b[r->next++];
        e = r->tr->start(r->tr_ctx, r->grads, b->lo, b->hi - b->lo);
    }
    usi_error *w = r->tr->wait_all(r->tr_ctx, r->grads);
    if (!e) e = w;
    else usi_error_free(w);
    r->next = 0;
    r->st.last_wait_s = usi_now() - t0;
    r->st.wait_s += r->st.last_wait_s;
    r->st.steps++;
    return e;
}

void usi_reducer_get_stats(const usi_reducer *r, usi_reducer_stats *out) { *out = r->st; }

usi_error *usi_reducer_hold(usi_reducer *r, int32_t hold)
{
    if (!r->hooked) return NULL;
    return hold ? usi_graph_on_grad_ready(r->g, NULL, NULL) : usi_graph_on_grad_ready(r->g, on_ready, r);
}

#ifndef USI_HAVE_NCCL
usi_error *usi_transport_nccl(usi_dbuf *grads, size_t bytes, int32_t max_buckets, const usi_transport **ops,
                              void **ctx)
{
    (void)grads;
    (void)bytes;
    (void)max_buckets;
    *ops = NULL;
    *ctx = NULL;
    return usi_error_new(USI_ERR_UNSUPPORTED, "dist.backend = \"nccl\": this usi was built without NCCL; rebuild "
                         "with `meson setup -Dcuda=enabled -Dmpi=enabled` where /usr/local/cuda has NCCL");
}
#endif
