#include "train/input.h"

#include <stdlib.h>

#include "data/prefetch.h"
#include "util/error.h"

/* One batch made ahead is enough to hide the float work behind a step; the
 * ring then has two slots, one trained on, one being made. */
enum { AHEAD = 1 };

/* A device with stages computes elsewhere while the host waits, so a thread
 * makes and uploads batches meanwhile. On the cpu device the step's own
 * threads use every core and a thread of its own only competes with them
 * (on 2 cores it measured no faster), so the caller makes each batch
 * between steps, as the loader hands it out. */
struct usi_input {
    usi_device *dev;
    usi_loader *l;
    usi_prefetch *fetch;     /* NULL without a stage                         */
    usi_stage *stage;        /* NULL: the device is written directly         */
    /* Raw: a stage and no batch stages in the chain, so the uint8 images
     * travel (a quarter of the bytes) into `pixels` on the device, which
     * normalises them as the loader would. */
    int32_t raw;
    usi_dbuf *pixels;
    float mean[3], std[3];
    size_t image_bytes, target_bytes; /* a whole batch's, as staged      */
};

static void *host_alloc(void *ctx, size_t bytes)
{
    usi_input *in = ctx;
    return usi_device_host_alloc(in->dev, bytes);
}

static void host_free(void *ctx, void *p, size_t bytes)
{
    usi_input *in = ctx;
    usi_device_host_free(in->dev, p, bytes);
}

/* Bytes of fb's images (floats, or uint8 when raw) and targets. */
static size_t image_bytes(const usi_batch *b, int32_t raw)
{
    return (size_t)b->n * (size_t)b->c * (size_t)b->h * (size_t)b->w * (raw ? 1 : sizeof(float));
}

static size_t target_bytes(const usi_batch *b) { return (size_t)b->n * (size_t)b->num_classes * sizeof(float); }

/* On the prefetcher's thread: upload the batch into its slot's stage. */
static usi_error *stage_batch(void *ctx, int32_t slot, const usi_float_batch *fb)
{
    usi_input *in = ctx;
    if (!in->stage) return NULL;
    const usi_batch *b = &fb->batch;
    const void *images = in->raw ? (const void *)fb->pixels : (const void *)b->images;
    USI_TRY(usi_stage_put(in->stage, slot, 0, images, image_bytes(b, in->raw)));
    return usi_stage_put(in->stage, slot, in->image_bytes, b->targets, target_bytes(b));
}

usi_error *usi_input_new(usi_loader *l, usi_device *dev, usi_input **out)
{
    *out = NULL;
    usi_input *in = calloc(1, sizeof *in);
    if (!in) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    in->dev = dev;
    in->l = l;
    in->image_bytes = usi_loader_float_bytes(l, &in->target_bytes);
    usi_loader_norm(l, in->mean, in->std);
    in->raw = usi_device_has_stages(dev) && !usi_loader_has_batch_stages(l);
    if (in->raw) in->image_bytes = usi_loader_u8_bytes(l);
    usi_error *e = usi_stage_new(dev, AHEAD + 1, in->image_bytes + in->target_bytes, &in->stage);
    if (!e && in->raw) e = usi_dbuf_new(dev, in->image_bytes, &in->pixels);
    usi_prefetch_opts o = {AHEAD, in->raw, host_alloc, host_free, stage_batch, in};
    if (!e && in->stage) e = usi_prefetch_new(l, &o, &in->fetch);
    if (e) {
        usi_input_free(in);
        return e;
    }
    *out = in;
    return NULL;
}

void usi_input_free(usi_input *in)
{
    if (!in) return;
    usi_prefetch_free(in->fetch); /* stops its thread before the stage goes */
    usi_stage_free(in->stage);
    usi_dbuf_free(in->pixels);
    free(in);
}

usi_error *usi_input_start_epoch(usi_input *in, int64_t epoch, int64_t skip)
{
    if (in->fetch) return usi_prefetch_start_epoch(in->fetch, epoch, skip);
    USI_TRY(usi_loader_start_epoch(in->l, epoch));
    return usi_loader_skip(in->l, skip);
}

usi_error *usi_input_next(usi_input *in, usi_float_batch *out)
{
    return in->fetch ? usi_prefetch_next(in->fetch, out) : usi_loader_next_float(in->l, out);
}

usi_error *usi_input_write(usi_input *in, const usi_float_batch *fb, usi_tensor *images, usi_tensor *targets)
{
    const usi_batch *b = &fb->batch;
    size_t ib = image_bytes(b, in->raw), tb = target_bytes(b);
    if (!in->stage || fb->slot < 0) {
        USI_TRY(usi_graph_write_part(images, b->images, ib));
        return targets ? usi_graph_write_part(targets, b->targets, tb) : NULL;
    }
    if (in->raw) {
        USI_TRY(usi_stage_take(in->stage, fb->slot, 0, in->pixels, 0, ib));
        USI_TRY(usi_graph_write_u8(images, in->pixels, 0, b->n, b->h, b->w, in->mean, in->std));
    } else {
        USI_TRY(usi_graph_write_staged(images, in->stage, fb->slot, 0, ib));
    }
    return targets ? usi_graph_write_staged(targets, in->stage, fb->slot, in->image_bytes, tb) : NULL;
}

int32_t usi_input_staged(const usi_input *in) { return in->stage != NULL; }
int32_t usi_input_raw(const usi_input *in) { return in->raw; }
