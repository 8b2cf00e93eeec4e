#include "data/augchain.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/call.h"
#include "plugin/crash.h"
#include "plugin/params.h"
#include "util/error.h"

typedef struct stage {
    const usi_component *comp;
    const usi_augment_ops *ops;
    void *inst;
    int serial;             /* not thread-safe: calls go through lock */
    pthread_mutex_t lock;
} stage;

struct usi_augchain {
    stage *st;
    size_t n;
    usi_params **owned;
    size_t n_owned;
    int32_t decode_min_side;
};

usi_error *usi_augchain_new(usi_augchain **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? NULL : usi_error_new(USI_ERR_NOMEM, "out of memory");
}

void usi_augchain_free(usi_augchain *ch)
{
    if (!ch) return;
    for (size_t i = 0; i < ch->n; i++) {
        usi_call_destroy(ch->st[i].comp, ch->st[i].inst);
        pthread_mutex_destroy(&ch->st[i].lock);
    }
    free(ch->st);
    for (size_t i = 0; i < ch->n_owned; i++) usi_params_free(ch->owned[i]);
    free(ch->owned);
    free(ch);
}

/* Reads the options of random_resized_crop, the one component the core
 * knows lets decoding shrink; anything else first means full-size
 * decoding. Evaluation (eval_resize_crop) decodes in full too: a reduced
 * DCT scale gives other pixels than PIL's decode, and the eval transform
 * must give timm's pixels so accuracies compare (test_pil_parity). */
static int32_t decode_hint(const usi_component *c, const usi_params *p)
{
    int64_t size = 0;
    usi_error *e = NULL;
    if (!strcmp(c->name, "random_resized_crop")) {
        double scale[2] = {0, 0};
        size_t n = 0;
        e = usi_params_get_int(p, "size", &size);
        if (!e) e = usi_params_get_float_list(p, "scale", scale, 2, &n);
        if (!e && n >= 1 && scale[0] > 0) {
            usi_error_free(e);
            return (int32_t)ceil((double)size / sqrt(scale[0]));
        }
    }
    usi_error_free(e);
    return 0;
}

usi_error *usi_augchain_add(usi_augchain *ch, const usi_component *comp,
                            const usi_params *params)
{
    if (comp->kind != USI_KIND_AUGMENT)
        return usi_error_new(USI_ERR_INVALID, "'%s' is not an augment component", comp->name);
    const usi_augment_ops *ops = comp->ops;
    stage *p = realloc(ch->st, (ch->n + 1) * sizeof *p);
    if (!p) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    ch->st = p;
    stage *s = &ch->st[ch->n];
    memset(s, 0, sizeof *s);
    s->comp = comp;
    s->ops = ops;
    /* Batch stages run on each loader's batch thread, and simulated ranks'
     * loaders share the chain: one call at a time per instance, always. */
    s->serial = ops->stage == USI_AUGMENT_BATCH || !(ops->flags & USI_AUGMENT_THREAD_SAFE);
    usi_error *e = usi_call_create(comp, params, &s->inst);
    if (e) return usi_error_prefix(e, "augment '%s': ", comp->name);
    pthread_mutex_init(&s->lock, NULL);
    if (ch->n == 0) ch->decode_min_side = decode_hint(comp, params);
    ch->n++;
    return NULL;
}

usi_error *usi_augchain_add_owned(usi_augchain *ch, const usi_component *comp,
                                  usi_params *params)
{
    usi_params **p = realloc(ch->owned, (ch->n_owned + 1) * sizeof *p);
    if (!p) {
        usi_params_free(params);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    ch->owned = p;
    ch->owned[ch->n_owned++] = params;
    return usi_augchain_add(ch, comp, params);
}

static size_t count_stage(const usi_augchain *ch, int32_t which)
{
    size_t k = 0;
    for (size_t i = 0; i < ch->n; i++) k += ch->st[i].ops->stage == which;
    return k;
}

size_t usi_augchain_sample_count(const usi_augchain *ch) { return count_stage(ch, USI_AUGMENT_SAMPLE); }
const char *usi_augchain_last_sample_name(const usi_augchain *ch)
{
    for (size_t i = ch->n; i-- > 0;)
        if (ch->st[i].ops->stage == USI_AUGMENT_SAMPLE) return ch->st[i].comp->name;
    return NULL;
}
size_t usi_augchain_batch_count(const usi_augchain *ch) { return count_stage(ch, USI_AUGMENT_BATCH); }
int32_t usi_augchain_decode_min_side(const usi_augchain *ch) { return ch->decode_min_side; }

void usi_aug_scratch_free(usi_aug_scratch *s)
{
    for (int i = 0; i < 2; i++) {
        free(s->img[i].data);
        memset(&s->img[i], 0, sizeof s->img[i]);
    }
}

usi_error *usi_augchain_run_sample(const usi_augchain *ch, const usi_image *img,
                                   usi_aug_scratch *s, const usi_image **result,
                                   usi_rng *rng)
{
    const usi_image *cur = img;
    int next = 0;
    for (size_t i = 0; i < ch->n; i++) {
        stage *st = &ch->st[i];
        if (st->ops->stage != USI_AUGMENT_SAMPLE) continue;
        usi_image *dst = &s->img[next];
        dst->struct_size = sizeof *dst;
        if (st->serial) pthread_mutex_lock(&st->lock);
        usi_crash_enter_code(USI_CRASH_CODE(st->ops->apply_sample), "running augment", st->comp->name);
        usi_error *e = st->ops->apply_sample(st->inst, cur, dst, rng);
        usi_crash_leave();
        if (st->serial) pthread_mutex_unlock(&st->lock);
        if (e) return usi_error_prefix(e, "augment '%s': ", st->comp->name);
        cur = dst;
        next ^= 1;
    }
    *result = cur;
    return NULL;
}

/* Each target row is a distribution (the manual's contract): finite,
 * non-negative and summing to 1. A stage that breaks it would train on
 * targets the losses do not mean; name it rather than go on. */
static usi_error *check_targets(const usi_batch *b, const char *stage_name)
{
    for (int32_t i = 0; i < b->n; i++) {
        const float *row = b->targets + (size_t)i * (size_t)b->num_classes;
        double sum = 0;
        int bad = 0;
        for (int32_t k = 0; k < b->num_classes; k++) {
            bad |= !isfinite(row[k]) || row[k] < -1e-6f;
            sum += row[k];
        }
        if (bad || fabs(sum - 1.0) > 1e-3)
            return usi_error_new(USI_ERR_INVALID, "augment '%s': target row %d of the batch %s (each row must be "
                                 "finite, non-negative and sum to 1)", stage_name, (int)i,
                                 bad ? "holds a negative or non-finite value" : "does not sum to 1");
    }
    return NULL;
}

usi_error *usi_augchain_run_batch(const usi_augchain *ch, usi_batch *b, usi_rng *rng)
{
    for (size_t i = 0; i < ch->n; i++) {
        stage *st = &ch->st[i];
        if (st->ops->stage != USI_AUGMENT_BATCH) continue;
        if (st->serial) pthread_mutex_lock(&st->lock);
        usi_crash_enter_code(USI_CRASH_CODE(st->ops->apply_batch), "running augment", st->comp->name);
        usi_error *e = st->ops->apply_batch(st->inst, b, rng);
        usi_crash_leave();
        if (st->serial) pthread_mutex_unlock(&st->lock);
        if (e) return usi_error_prefix(e, "augment '%s': ", st->comp->name);
        USI_TRY(check_targets(b, st->comp->name));
    }
    return NULL;
}
