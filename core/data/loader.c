#include "data/loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/decode.h"
#include "util/error.h"
#include "util/log.h"
#include "util/rng.h"

/* Stream tags so the order, samples and batch stages never share a stream. */
enum { TAG_SAMPLE = 0, TAG_BATCH = 1, TAG_ORDER = 2 };

typedef struct slot {
    uint8_t *pixels;
    int32_t *labels;
    int64_t *indices;
    uint8_t *ok;             /* per sample: SAMPLE_* */
    int32_t done;
} slot;

enum { SAMPLE_BAD = 0, SAMPLE_OK = 1, SAMPLE_REPLACED = 2 };

typedef struct worker {
    pthread_t thread;
    struct usi_loader *l;
    usi_decoder *dec;
    uint8_t *file;
    size_t file_cap;
    usi_image img;
    usi_aug_scratch scratch;
    int started;
} worker;

struct usi_loader {
    const usi_dataset *ds;
    const usi_augchain *ch;
    usi_loader_opts o;
    size_t sample_bytes;
    int32_t min_side;

    pthread_mutex_t mu;
    pthread_cond_t work_cv, ready_cv, idle_cv;
    int quit, active, holding, busy;
    int64_t epoch, len, n_batches, next_pos, consumed;
    int64_t *order;
    slot *slots;
    int32_t n_slots;

    uint8_t *bad;            /* per dataset index: REPORTED_* bits          */
    usi_error *fatal;        /* under mu: the first augmentation failure    */
    int64_t bad_files;       /* atomic                                      */
    usi_epoch_stats stats;

    float mean[3], std[3];
    float *fimages, *ftargets;

    worker *workers;
    int32_t n_workers;
};

usi_loader_opts usi_loader_opts_default(void)
{
    usi_loader_opts o = {.batch_size = 128, .img_size = 224, .workers = 2, .prefetch = 2, .repeats = 1,
                         .shuffle = 1, .drop_last = 1, .world = 1};
    return o;
}

static int64_t batch_len(const usi_loader *l, int64_t b)
{
    int64_t left = l->len - b * l->o.batch_size;
    return left < l->o.batch_size ? left : l->o.batch_size;
}

/* Each file is reported once per loader, not once per epoch. */
enum { REPORTED_BAD = 1, REPORTED_NOTE = 2 };

static void report_bad(usi_loader *l, int64_t idx, const char *path, const usi_error *e)
{
    if (!(__atomic_fetch_or(&l->bad[idx], REPORTED_BAD, __ATOMIC_RELAXED) & REPORTED_BAD)) {
        __atomic_add_fetch(&l->bad_files, 1, __ATOMIC_RELAXED);
        usi_log(USI_LOG_WARN, "data: skipping %s: %s", path, usi_error_message(e));
    }
}

static void report_note(usi_loader *l, int64_t idx, const char *path, const char *note)
{
    if (!(__atomic_fetch_or(&l->bad[idx], REPORTED_NOTE, __ATOMIC_RELAXED) & REPORTED_NOTE))
        usi_log(USI_LOG_WARN, "data: using %s: %s", path, note);
}

static usi_error *store(usi_loader *l, const usi_image *im, uint8_t *dst)
{
    int32_t s = l->o.img_size;
    const char *last = usi_augchain_last_sample_name(l->ch);
    if ((im->width != s || im->height != s) && !last)
        return usi_error_new(USI_ERR_INVALID, "the image is %dx%d and no augmentation resizes it to data.img_size = "
                             "%d: add random_resized_crop (training) or eval_resize_crop (evaluation) to the chain",
                             im->width, im->height, s);
    if (im->width != s || im->height != s)
        return usi_error_new(USI_ERR_INVALID, "augment '%s', the last of the chain, gives %dx%d; the loader needs "
                             "data.img_size = %d: end the chain with a stage that gives that size (random_resized_crop, "
                             "eval_resize_crop)", last, im->width, im->height, s);
    size_t row = (size_t)s * 3;
    for (int32_t y = 0; y < s; y++) {
        const uint8_t *in = im->data + (size_t)y * (size_t)im->stride;
        uint8_t *out = dst + (size_t)y * row;
        if (im->channels == 3) {
            memcpy(out, in, row);
        } else {
            for (int32_t x = 0; x < s; x++) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = in[x];
        }
    }
    return NULL;
}

/* An augmentation that fails (a plugin's error, or a chain that does not
 * give data.img_size) is the chain's fault, not the file's: the first such
 * error ends the epoch for the consumer, naming the image. */
static void set_fatal(usi_loader *l, usi_error *e, const char *path)
{
    pthread_mutex_lock(&l->mu);
    if (!l->fatal) l->fatal = usi_error_new(e->code, "%s (image %s)", usi_error_message(e), path);
    pthread_mutex_unlock(&l->mu);
    usi_error_free(e);
}

/* Read, decode, augment and store dataset file idx for global position g:
 * 1 done, 0 the file is bad (reported once per file), -1 the augmentation
 * failed (set_fatal). */
static int make_sample(worker *w, int64_t idx, int64_t g, int64_t epoch, uint8_t *dst)
{
    usi_loader *l = w->l;
    const char *path = usi_dataset_path(l->ds, (size_t)idx);
    usi_rng rng;
    usi_rng_seed(&rng, l->o.seed, (uint64_t)epoch, (uint64_t)g, TAG_SAMPLE);
    size_t len = 0;
    const usi_image *res = NULL;
    usi_error *e = usi_read_image_file(path, &w->file, &w->file_cap, &len);
    if (!e) e = usi_decode_image(w->dec, w->file, len, l->min_side, &w->img);
    if (e) {
        report_bad(l, idx, path, e);
        usi_error_free(e);
        return 0;
    }
    if (usi_decoder_note(w->dec)) report_note(l, idx, path, usi_decoder_note(w->dec));
    e = usi_augchain_run_sample(l->ch, &w->img, &w->scratch, &res, &rng);
    if (!e) e = store(l, res, dst);
    if (!e) return 1;
    set_fatal(l, e, path);
    return -1;
}

static int known_bad(usi_loader *l, int64_t idx)
{
    return __atomic_load_n(&l->bad[idx], __ATOMIC_RELAXED) & REPORTED_BAD;
}

static void process(worker *w, int64_t pos, int64_t epoch)
{
    usi_loader *l = w->l;
    int64_t g = pos * l->o.world + l->o.rank;
    int64_t idx = l->order[g];
    int32_t j = (int32_t)(pos % l->o.batch_size);
    slot *s = &l->slots[(pos / l->o.batch_size) % l->n_slots];
    uint8_t *dst = s->pixels + (size_t)j * l->sample_bytes;
    int made = make_sample(w, idx, g, epoch, dst);
    int ok = made > 0 ? SAMPLE_OK : SAMPLE_BAD;
    /* The files after a bad one, in dataset order, with the same stream: the
     * choice depends only on which files fail, so it is the same for any
     * number of threads. Files known to be bad are passed over unread. */
    int64_t n = (int64_t)usi_dataset_size(l->ds), use = idx;
    for (int64_t t = 1; made == 0 && l->o.replace_bad && t <= USI_LOADER_REPLACE_TRIES && t < n; t++) {
        int64_t cand = (idx + t) % n;
        if (known_bad(l, cand)) continue;
        made = make_sample(w, cand, g, epoch, dst);
        if (made > 0) {
            ok = SAMPLE_REPLACED;
            use = cand;
        }
    }
    s->labels[j] = usi_dataset_label(l->ds, (size_t)use);
    s->indices[j] = use;
    s->ok[j] = (uint8_t)ok;
}

static int can_claim(const usi_loader *l)
{
    return l->active && l->next_pos < l->len &&
           l->next_pos / l->o.batch_size < l->consumed + l->n_slots;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    usi_loader *l = w->l;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && !can_claim(l)) pthread_cond_wait(&l->work_cv, &l->mu);
        if (l->quit) break;
        int64_t pos = l->next_pos++, epoch = l->epoch;
        l->busy++;
        pthread_mutex_unlock(&l->mu);
        process(w, pos, epoch);
        pthread_mutex_lock(&l->mu);
        l->busy--;
        int64_t b = pos / l->o.batch_size;
        slot *s = &l->slots[b % l->n_slots];
        if (++s->done == batch_len(l, b)) pthread_cond_broadcast(&l->ready_cv);
        if (!l->busy) pthread_cond_broadcast(&l->idle_cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static usi_error *check_opts(const usi_loader_opts *o)
{
    if (o->batch_size < 1 || o->img_size < 1 || o->workers < 1 || o->prefetch < 1 ||
        o->repeats < 1 || o->world < 1 || o->rank < 0 || o->rank >= o->world ||
        o->epoch_samples < 0)
        return usi_error_new(USI_ERR_INVALID,
                             "loader: bad options (batch_size %d, img_size %d, workers %d, "
                             "prefetch %d, repeats %d, rank %d of %d)",
                             o->batch_size, o->img_size, o->workers, o->prefetch, o->repeats,
                             o->rank, o->world);
    return NULL;
}

static usi_error *alloc_slots(usi_loader *l)
{
    size_t B = (size_t)l->o.batch_size;
    l->slots = calloc((size_t)l->n_slots, sizeof *l->slots);
    if (!l->slots) return usi_error_new(USI_ERR_NOMEM, "loader: out of memory");
    for (int32_t i = 0; i < l->n_slots; i++) {
        slot *s = &l->slots[i];
        s->pixels = malloc(B * l->sample_bytes);
        s->labels = malloc(B * sizeof *s->labels);
        s->indices = malloc(B * sizeof *s->indices);
        s->ok = malloc(B);
        if (!s->pixels || !s->labels || !s->indices || !s->ok)
            return usi_error_new(USI_ERR_NOMEM, "loader: out of memory for %zu-sample batches", B);
    }
    size_t n = usi_dataset_size(l->ds);
    l->bad = calloc(n ? n : 1, 1);
    size_t fl = B * 3 * (size_t)l->o.img_size * (size_t)l->o.img_size;
    l->fimages = malloc(fl * sizeof(float));
    l->ftargets = malloc(B * (usi_dataset_class_count(l->ds) + 1) * sizeof(float));
    if (!l->bad || !l->fimages || !l->ftargets)
        return usi_error_new(USI_ERR_NOMEM, "loader: out of memory");
    return NULL;
}

static usi_error *start_workers(usi_loader *l)
{
    l->workers = calloc((size_t)l->n_workers, sizeof *l->workers);
    if (!l->workers) return usi_error_new(USI_ERR_NOMEM, "loader: out of memory");
    for (int32_t i = 0; i < l->n_workers; i++) {
        worker *w = &l->workers[i];
        w->l = l;
        w->img.struct_size = sizeof w->img;
        USI_TRY(usi_decoder_new(&w->dec));
        if (pthread_create(&w->thread, NULL, worker_main, w))
            return usi_error_new(USI_ERR_INTERNAL, "loader: can't start thread %d", i);
        w->started = 1;
    }
    return NULL;
}

usi_error *usi_loader_new(const usi_dataset *ds, const usi_augchain *ch,
                          const usi_loader_opts *opts, usi_loader **out)
{
    *out = NULL;
    USI_TRY(check_opts(opts));
    usi_loader *l = calloc(1, sizeof *l);
    if (!l) return usi_error_new(USI_ERR_NOMEM, "loader: out of memory");
    l->ds = ds;
    l->ch = ch;
    l->o = *opts;
    l->n_slots = opts->prefetch + 1;
    l->n_workers = opts->workers;
    l->sample_bytes = (size_t)opts->img_size * (size_t)opts->img_size * 3;
    l->min_side = usi_augchain_decode_min_side(ch);
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    usi_loader_set_norm(l, mean, std);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_cond_init(&l->ready_cv, NULL);
    pthread_cond_init(&l->idle_cv, NULL);
    usi_error *e = alloc_slots(l);
    if (!e) e = start_workers(l);
    if (e) {
        usi_loader_free(l);
        return e;
    }
    *out = l;
    return NULL;
}

void usi_loader_free(usi_loader *l)
{
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->quit = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    for (int32_t i = 0; l->workers && i < l->n_workers; i++) {
        worker *w = &l->workers[i];
        if (w->started) pthread_join(w->thread, NULL);
        usi_decoder_free(w->dec);
        free(w->file);
        free(w->img.data);
        usi_aug_scratch_free(&w->scratch);
    }
    free(l->workers);
    for (int32_t i = 0; l->slots && i < l->n_slots; i++) {
        free(l->slots[i].pixels);
        free(l->slots[i].labels);
        free(l->slots[i].indices);
        free(l->slots[i].ok);
    }
    free(l->slots);
    free(l->order);
    free(l->bad);
    usi_error_free(l->fatal);
    free(l->fimages);
    free(l->ftargets);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->ready_cv);
    pthread_cond_destroy(&l->idle_cv);
    free(l);
}

void usi_loader_set_norm(usi_loader *l, const float mean[3], const float std[3])
{
    for (int c = 0; c < 3; c++) {
        l->mean[c] = mean[c];
        l->std[c] = std[c] != 0.0f ? std[c] : 1.0f;
    }
}

static int64_t gcd(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* timm's RASampler order: a permutation, each entry repeated `repeats`
 * times in a row, cut to epoch_samples; rank r takes every world-th, so the
 * copies of an image go to different ranks, each augmented from its global
 * position. Training keeps whole steps (batch_size x world positions) and,
 * unlike RASampler, whole groups of copies: the step count is rounded down
 * so that every image in the epoch is seen exactly `repeats` times over all
 * ranks. Evaluation splits every sample over the ranks. */
static usi_error *make_order(usi_loader *l, int64_t epoch)
{
    int64_t n = (int64_t)usi_dataset_size(l->ds), R = l->o.repeats;
    int64_t total = n * R;
    if (l->o.epoch_samples > 0 && l->o.epoch_samples < total) total = l->o.epoch_samples;
    int64_t *perm = malloc(sizeof *perm * (size_t)(n ? n : 1));
    int64_t *order = malloc(sizeof *order * (size_t)(total ? total : 1));
    if (!perm || !order) {
        free(perm);
        free(order);
        return usi_error_new(USI_ERR_NOMEM, "loader: out of memory for the epoch order");
    }
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    if (l->o.shuffle) {
        usi_rng r;
        usi_rng_seed(&r, l->o.seed, (uint64_t)epoch, 0, TAG_ORDER);
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t k = (int64_t)(usi_rng_u64(&r) % (uint64_t)(i + 1));
            int64_t t = perm[i];
            perm[i] = perm[k];
            perm[k] = t;
        }
    }
    for (int64_t g = 0; g < total; g++) order[g] = perm[g / R];
    free(perm);
    free(l->order);
    l->order = order;
    int64_t B = l->o.batch_size, W = l->o.world;
    if (l->o.drop_last) {
        l->n_batches = total / (B * W);
        int64_t q = R / gcd(B * W, R); /* steps that hold whole groups */
        if (l->n_batches >= q) l->n_batches -= l->n_batches % q;
        l->len = l->n_batches * B;
    } else {
        l->len = (total - l->o.rank + W - 1) / W;
        l->n_batches = (l->len + B - 1) / B;
    }
    return NULL;
}

usi_error *usi_loader_start_epoch(usi_loader *l, int64_t epoch)
{
    pthread_mutex_lock(&l->mu);
    l->active = 0;
    while (l->busy) pthread_cond_wait(&l->idle_cv, &l->mu);
    usi_error *e = make_order(l, epoch);
    l->epoch = epoch;
    l->next_pos = l->consumed = 0;
    l->holding = 0;
    for (int32_t i = 0; i < l->n_slots; i++) l->slots[i].done = 0;
    memset(&l->stats, 0, sizeof l->stats);
    l->stats.epoch = epoch;
    l->active = e == NULL;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    return e;
}

int64_t usi_loader_batch_count(const usi_loader *l) { return l->n_batches; }

/* Move the good samples of a finished slot to its front. */
static int32_t compact(usi_loader *l, slot *s, int32_t n)
{
    int32_t k = 0;
    for (int32_t j = 0; j < n; j++) {
        if (s->ok[j] == SAMPLE_BAD) continue;
        l->stats.replaced += s->ok[j] == SAMPLE_REPLACED;
        if (k != j) {
            memcpy(s->pixels + (size_t)k * l->sample_bytes, s->pixels + (size_t)j * l->sample_bytes,
                   l->sample_bytes);
            s->labels[k] = s->labels[j];
            s->indices[k] = s->indices[j];
        }
        k++;
    }
    return k;
}

/* Wait for batch `consumed` and hold it; 0 when the epoch is over. */
static int take_batch(usi_loader *l, int64_t *b, int32_t *n)
{
    if (l->holding) {
        l->slots[l->consumed % l->n_slots].done = 0;
        l->consumed++;
        l->holding = 0;
        pthread_cond_broadcast(&l->work_cv);
    }
    *b = l->consumed;
    if (*b >= l->n_batches) return 0;
    slot *s = &l->slots[*b % l->n_slots];
    *n = (int32_t)batch_len(l, *b);
    while (s->done < *n) pthread_cond_wait(&l->ready_cv, &l->mu);
    l->holding = 1;
    return 1;
}

usi_error *usi_loader_next(usi_loader *l, usi_u8_batch *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&l->mu);
    if (!l->active) {
        pthread_mutex_unlock(&l->mu);
        return usi_error_new(USI_ERR_INVALID, "loader: no epoch started (call usi_loader_start_epoch)");
    }
    int64_t b;
    int32_t n = 0, k = 0, skipped = 0;
    slot *s = NULL;
    /* A batch whose every sample failed is passed over, so n == 0 only ever
     * means the end of the epoch. */
    while (k == 0 && !l->fatal && take_batch(l, &b, &n)) {
        s = &l->slots[b % l->n_slots];
        k = compact(l, s, n);
        skipped += n - k;
        l->stats.skipped += n - k;
    }
    if (l->fatal) {
        usi_error *e = usi_error_new(l->fatal->code, "%s", usi_error_message(l->fatal));
        pthread_mutex_unlock(&l->mu);
        return e;
    }
    pthread_mutex_unlock(&l->mu);
    out->skipped = skipped;
    if (k == 0) return NULL;
    out->n = k;
    out->h = out->w = l->o.img_size;
    out->c = 3;
    out->pixels = s->pixels;
    out->labels = s->labels;
    out->indices = s->indices;
    out->batch_index = b;
    l->stats.batches++;
    l->stats.samples += k;
    return NULL;
}

usi_error *usi_loader_skip(usi_loader *l, int64_t n)
{
    for (int64_t b = 0; b < n; b++) {
        usi_u8_batch u;
        USI_TRY(usi_loader_next(l, &u));
        if (u.n == 0) break;
    }
    return NULL;
}

void usi_u8_to_float_nchw(const usi_u8_batch *b, const float mean[3], const float std[3],
                          float *out)
{
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - mean[c]) / std[c];
    size_t plane = (size_t)b->h * (size_t)b->w;
    for (int32_t i = 0; i < b->n; i++) {
        const uint8_t *px = b->pixels + (size_t)i * plane * 3;
        float *o = out + (size_t)i * plane * 3;
        for (size_t p = 0; p < plane; p++) {
            o[p] = lut[0][px[3 * p]];
            o[plane + p] = lut[1][px[3 * p + 1]];
            o[2 * plane + p] = lut[2][px[3 * p + 2]];
        }
    }
}

usi_error *usi_loader_next_float(usi_loader *l, usi_float_batch *out)
{
    return usi_loader_next_float_into(l, out, l->fimages, l->ftargets);
}

const usi_loader_opts *usi_loader_opts_of(const usi_loader *l) { return &l->o; }

size_t usi_loader_float_bytes(const usi_loader *l, size_t *target_bytes)
{
    size_t B = (size_t)l->o.batch_size;
    *target_bytes = B * usi_dataset_class_count(l->ds) * sizeof(float);
    return B * 3 * (size_t)l->o.img_size * (size_t)l->o.img_size * sizeof(float);
}

/* The fields every handed-out batch has, and its one-hot targets. */
static usi_error *next_common(usi_loader *l, usi_float_batch *out, float *targets, usi_u8_batch *u)
{
    memset(out, 0, sizeof *out);
    out->slot = -1;
    USI_TRY(usi_loader_next(l, u));
    usi_batch *b = &out->batch;
    b->struct_size = sizeof *b;
    b->n = u->n;
    b->c = 3;
    b->h = b->w = u->h;
    b->num_classes = (int32_t)usi_dataset_class_count(l->ds);
    b->targets = targets;
    out->labels = u->labels;
    out->batch_index = u->batch_index;
    out->skipped = u->skipped;
    if (u->n == 0) return NULL;
    memset(b->targets, 0, sizeof(float) * (size_t)u->n * (size_t)b->num_classes);
    for (int32_t i = 0; i < u->n; i++)
        b->targets[(size_t)i * (size_t)b->num_classes + (size_t)u->labels[i]] = 1.0f;
    return NULL;
}

usi_error *usi_loader_next_float_into(usi_loader *l, usi_float_batch *out, float *images, float *targets)
{
    usi_u8_batch u;
    USI_TRY(next_common(l, out, targets, &u));
    usi_batch *b = &out->batch;
    b->images = images;
    if (u.n == 0) return NULL;
    usi_u8_to_float_nchw(&u, l->mean, l->std, b->images);
    usi_rng r;
    /* Each rank's share of a step mixes with a stream of its own. */
    usi_rng_seed(&r, l->o.seed, (uint64_t)l->epoch, (uint64_t)(u.batch_index * l->o.world + l->o.rank), TAG_BATCH);
    return usi_augchain_run_batch(l->ch, b, &r);
}

usi_error *usi_loader_next_raw_into(usi_loader *l, usi_float_batch *out, uint8_t *pixels, float *targets)
{
    if (usi_augchain_batch_count(l->ch))
        return usi_error_new(USI_ERR_INTERNAL, "loader: uint8 batches with batch stages in the chain");
    usi_u8_batch u;
    USI_TRY(next_common(l, out, targets, &u));
    out->pixels = pixels;
    if (u.n) memcpy(pixels, u.pixels, (size_t)u.n * l->sample_bytes);
    return NULL;
}

size_t usi_loader_u8_bytes(const usi_loader *l) { return (size_t)l->o.batch_size * l->sample_bytes; }

int32_t usi_loader_has_batch_stages(const usi_loader *l) { return usi_augchain_batch_count(l->ch) > 0; }

void usi_loader_norm(const usi_loader *l, float mean[3], float std[3])
{
    for (int c = 0; c < 3; c++) {
        mean[c] = l->mean[c];
        std[c] = l->std[c];
    }
}

void usi_loader_epoch_stats(const usi_loader *l, usi_epoch_stats *out)
{
    *out = l->stats;
    out->bad_files = __atomic_load_n(&l->bad_files, __ATOMIC_RELAXED);
}

void usi_loader_log_summary(const usi_loader *l)
{
    usi_epoch_stats s;
    usi_loader_epoch_stats(l, &s);
    char replaced[96] = "";
    if (s.replaced)
        snprintf(replaced, sizeof replaced, ", %lld replaced by the next readable file", (long long)s.replaced);
    usi_log(s.skipped || s.replaced ? USI_LOG_WARN : USI_LOG_INFO,
            "data: epoch %lld: %lld samples in %lld batches, %lld skipped%s (%lld bad files)",
            (long long)s.epoch + 1, (long long)s.samples, (long long)s.batches, (long long)s.skipped, replaced,
            (long long)s.bad_files);
}
