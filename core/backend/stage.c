/* The input path's device side: host memory that uploads read fastest, and
 * stages that a loader thread fills while the device computes
 * (backend/device.h). Both are optional in a backend: without them host
 * memory is plain and a stage is NULL (the caller writes directly). */
#include <stdlib.h>

#include "backend/device_internal.h"
#include "util/error.h"
#include "util/log.h"

struct usi_stage {
    usi_device *dev;
    void *st;
    int32_t slots;
    size_t bytes;
};

/* Each block starts with a 64-byte header saying who made it, so a device
 * out of pinned memory can fall back to plain memory without its caller
 * knowing. */
enum { HEAD = 64, PLAIN = 1, DEVICE_HOST = 2 };

void *usi_device_host_alloc(usi_device *d, size_t bytes)
{
    char *p = d && d->be->host_alloc ? d->be->host_alloc(d, bytes + HEAD) : NULL;
    int kind = DEVICE_HOST;
    if (!p) {
        static int said;
        if (d && d->be->host_alloc && !said++)
            usi_log(USI_LOG_WARN, "device %s: no pinned host memory for %.1f MiB; uploads from plain memory are "
                    "slower", d->name, (double)bytes / 1048576.0);
        void *q = NULL;
        if (posix_memalign(&q, HEAD, bytes + HEAD)) return NULL;
        p = q;
        kind = PLAIN;
    }
    *(int *)p = kind;
    return p + HEAD;
}

void usi_device_host_free(usi_device *d, void *p, size_t bytes)
{
    if (!p) return;
    char *q = (char *)p - HEAD;
    if (*(int *)q == DEVICE_HOST) d->be->host_free(d, q, bytes + HEAD);
    else free(q);
}

int32_t usi_device_has_stages(const usi_device *d) { return d->be->stage_new != NULL; }

usi_error *usi_stage_new(usi_device *d, int32_t slots, size_t bytes, usi_stage **out)
{
    *out = NULL;
    if (!d->be->stage_new) return NULL;
    if (slots < 1) return usi_error_new(USI_ERR_INTERNAL, "stage: %d slots", slots);
    usi_stage *s = calloc(1, sizeof *s);
    if (!s) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    s->dev = d;
    s->slots = slots;
    s->bytes = bytes;
    usi_error *e = d->be->stage_new(d, slots, bytes ? bytes : 1, &s->st);
    if (e) {
        free(s);
        return usi_error_prefix(e, "device %s: input staging (%d x %.1f MiB): ", d->name, slots,
                                (double)bytes / 1048576.0);
    }
    *out = s;
    return NULL;
}

void usi_stage_free(usi_stage *s)
{
    if (!s) return;
    s->dev->be->stage_free(s->dev, s->st);
    free(s);
}

static usi_error *slot_ok(const usi_stage *s, int32_t slot, size_t off, size_t bytes, const char *what)
{
    if (slot < 0 || slot >= s->slots || off > s->bytes || bytes > s->bytes - off)
        return usi_error_new(USI_ERR_INTERNAL, "%s: slot %d bytes [%zu, +%zu) outside %d slots of %zu", what, slot,
                             off, bytes, s->slots, s->bytes);
    return NULL;
}

usi_error *usi_stage_put(usi_stage *s, int32_t slot, size_t off, const void *host, size_t bytes)
{
    USI_TRY(slot_ok(s, slot, off, bytes, "stage put"));
    return bytes ? s->dev->be->stage_put(s->dev, s->st, slot, off, host, bytes) : NULL;
}

usi_error *usi_stage_take(usi_stage *s, int32_t slot, size_t off, usi_dbuf *dst, size_t dst_off, size_t bytes)
{
    USI_TRY(slot_ok(s, slot, off, bytes, "stage take"));
    if (!dst || dst->dev != s->dev || dst_off > dst->bytes || bytes > dst->bytes - dst_off)
        return usi_error_new(USI_ERR_INTERNAL, "stage take: the destination is not %zu bytes of device %s", bytes,
                             s->dev->name);
    return bytes ? s->dev->be->stage_take(s->dev, s->st, slot, off, (char *)dst->ptr + dst_off, bytes) : NULL;
}
