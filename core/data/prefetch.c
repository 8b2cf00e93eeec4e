#include "data/prefetch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

typedef struct fslot {
    float *images, *targets;
    uint8_t *pixels;         /* raw batches                                  */
    int32_t *labels;         /* the loader's are valid only until its next batch */
    usi_float_batch fb;
    usi_error *err;          /* handed out in place of the batch            */
} fslot;

struct usi_prefetch {
    usi_loader *l;
    usi_prefetch_opts o;
    int32_t n_slots;
    fslot *slots;
    size_t image_bytes, target_bytes;

    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int quit, active, busy, ended, holding;
    /* Batches made and handed out this epoch; slot k % n_slots holds batch
     * k. The caller holds batch taken-1 until its next call. */
    int64_t made, taken, skip;
};

static void *mem_alloc(const usi_prefetch *p, size_t bytes)
{
    if (p->o.host_alloc) return p->o.host_alloc(p->o.ctx, bytes);
    void *q = NULL;
    return posix_memalign(&q, 64, bytes) ? NULL : q;
}

static void mem_free(const usi_prefetch *p, void *q, size_t bytes)
{
    if (!q) return;
    if (p->o.host_free) p->o.host_free(p->o.ctx, q, bytes);
    else free(q);
}

/* A free slot: every slot but those made and not yet released. */
static int can_make(const usi_prefetch *p)
{
    return p->active && !p->ended && p->made - (p->taken - p->holding) < p->n_slots;
}

static void *prefetch_main(void *arg)
{
    usi_prefetch *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && !can_make(p)) pthread_cond_wait(&p->cv, &p->mu);
        if (p->quit) break;
        int32_t k = (int32_t)(p->made % p->n_slots);
        int64_t skip = p->skip;
        p->skip = 0;
        p->busy = 1;
        pthread_mutex_unlock(&p->mu);

        fslot *s = &p->slots[k];
        usi_error *e = usi_loader_skip(p->l, skip);
        if (!e && p->o.raw) e = usi_loader_next_raw_into(p->l, &s->fb, s->pixels, s->targets);
        else if (!e) e = usi_loader_next_float_into(p->l, &s->fb, s->images, s->targets);
        s->fb.slot = k;
        if (!e && s->fb.batch.n > 0) {
            memcpy(s->labels, s->fb.labels, sizeof *s->labels * (size_t)s->fb.batch.n);
            s->fb.labels = s->labels;
        }
        if (!e && s->fb.batch.n > 0 && p->o.ready) e = p->o.ready(p->o.ctx, k, &s->fb);

        pthread_mutex_lock(&p->mu);
        p->busy = 0;
        s->err = e;
        p->made++;
        if (e || s->fb.batch.n == 0) p->ended = 1;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

usi_error *usi_prefetch_new(usi_loader *l, const usi_prefetch_opts *opts, usi_prefetch **out)
{
    *out = NULL;
    if (opts->ahead < 1) return usi_error_new(USI_ERR_INVALID, "prefetch: ahead must be >= 1, not %d", opts->ahead);
    usi_prefetch *p = calloc(1, sizeof *p);
    if (!p) return usi_error_new(USI_ERR_NOMEM, "prefetch: out of memory");
    p->l = l;
    p->o = *opts;
    p->n_slots = opts->ahead + 1;
    p->image_bytes = usi_loader_float_bytes(l, &p->target_bytes);
    if (opts->raw && usi_loader_has_batch_stages(l)) {
        free(p);
        return usi_error_new(USI_ERR_INTERNAL, "prefetch: uint8 batches with batch stages in the chain");
    }
    if (opts->raw) p->image_bytes = usi_loader_u8_bytes(l);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    usi_error *e = NULL;
    p->slots = calloc((size_t)p->n_slots, sizeof *p->slots);
    if (!p->slots) e = usi_error_new(USI_ERR_NOMEM, "prefetch: out of memory");
    for (int32_t i = 0; !e && i < p->n_slots; i++) {
        if (opts->raw) p->slots[i].pixels = mem_alloc(p, p->image_bytes);
        else p->slots[i].images = mem_alloc(p, p->image_bytes);
        p->slots[i].targets = mem_alloc(p, p->target_bytes + 64);
        p->slots[i].labels = malloc(sizeof(int32_t) * (size_t)usi_loader_opts_of(l)->batch_size);
        if ((!p->slots[i].images && !p->slots[i].pixels) || !p->slots[i].targets || !p->slots[i].labels)
            e = usi_error_new(USI_ERR_NOMEM, "prefetch: out of host memory for %d batches of %zu bytes",
                              p->n_slots, p->image_bytes);
    }
    if (!e && pthread_create(&p->thread, NULL, prefetch_main, p))
        e = usi_error_new(USI_ERR_INTERNAL, "prefetch: can't start its thread");
    p->started = e == NULL;
    if (e) {
        usi_prefetch_free(p);
        return e;
    }
    *out = p;
    return NULL;
}

static void drop_errors(usi_prefetch *p)
{
    for (int32_t i = 0; i < p->n_slots; i++) {
        usi_error_free(p->slots[i].err);
        p->slots[i].err = NULL;
    }
}

void usi_prefetch_free(usi_prefetch *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->started) pthread_join(p->thread, NULL);
    for (int32_t i = 0; p->slots && i < p->n_slots; i++) {
        mem_free(p, p->slots[i].images, p->image_bytes);
        mem_free(p, p->slots[i].pixels, p->image_bytes);
        mem_free(p, p->slots[i].targets, p->target_bytes + 64);
        free(p->slots[i].labels);
        usi_error_free(p->slots[i].err);
    }
    free(p->slots);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

usi_error *usi_prefetch_start_epoch(usi_prefetch *p, int64_t epoch, int64_t skip)
{
    pthread_mutex_lock(&p->mu);
    p->active = 0;
    while (p->busy) pthread_cond_wait(&p->cv, &p->mu);
    drop_errors(p);
    /* The thread is idle: the loader is the caller's for this call. */
    usi_error *e = usi_loader_start_epoch(p->l, epoch);
    p->made = p->taken = 0;
    p->holding = p->ended = 0;
    p->skip = skip > 0 ? skip : 0;
    p->active = e == NULL;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return e;
}

usi_error *usi_prefetch_next(usi_prefetch *p, usi_float_batch *out)
{
    memset(out, 0, sizeof *out);
    out->slot = -1;
    pthread_mutex_lock(&p->mu);
    if (!p->active) {
        pthread_mutex_unlock(&p->mu);
        return usi_error_new(USI_ERR_INVALID, "prefetch: no epoch started (call usi_prefetch_start_epoch)");
    }
    if (p->holding) {
        p->holding = 0;
        pthread_cond_broadcast(&p->cv);
    }
    while (p->made == p->taken && !p->ended) pthread_cond_wait(&p->cv, &p->mu);
    if (p->made == p->taken) { /* after the end: stays ended */
        pthread_mutex_unlock(&p->mu);
        return NULL;
    }
    fslot *s = &p->slots[p->taken % p->n_slots];
    p->taken++;
    p->holding = 1;
    *out = s->fb;
    usi_error *e = s->err;
    s->err = NULL;
    pthread_mutex_unlock(&p->mu);
    return e;
}

int32_t usi_prefetch_slots(const usi_prefetch *p) { return p->n_slots; }
