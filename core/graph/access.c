/* Reading and writing tensor values: host staging before compile, device
 * blocks after, always by explicit copies. */
#include <stdlib.h>
#include <string.h>

#include "backend/device_internal.h"
#include "graph/graph_internal.h"
#include "util/bf16.h"
#include "util/error.h"

static usi_error *part_ok(const usi_tensor *t, size_t bytes, const char *what)
{
    if (!t) return usi_error_new(USI_ERR_INVALID, "%s: no tensor", what);
    if (bytes > usi_node_bytes(t))
        return usi_error_new(USI_ERR_INTERNAL, "%s '%s': %zu bytes, it holds %zu", what, t->name, bytes,
                             usi_node_bytes(t));
    return NULL;
}

/* A constant keeps the values it was recorded with: gather() checked its
 * indices then, and kernels rely on that. */
static usi_error *writable(const usi_tensor *t, const char *what)
{
    if (t && t->op == USI_OP_CONSTANT)
        return usi_error_new(USI_ERR_INVALID, "%s '%s': a constant keeps the values it was recorded with",
                             what, t->name);
    return NULL;
}

/* The first n floats of t's value or gradient, in NCHW order, into host
 * from device memory at b + off, stored as t says: bf16 widened,
 * channels-last ([N,H,W,C]) put back in order. */
static usi_error *read_stored(const usi_tensor *t, const usi_dbuf *b, size_t off, float *host, size_t n)
{
    if (!t->bf16 && !t->cl) return usi_dbuf_read(b, off, host, n * sizeof(float));
    size_t all = t->cl ? (size_t)t->numel : n, es = t->bf16 ? 2 : sizeof(float);
    unsigned char *raw = malloc(all ? all * es : 1);
    if (!raw) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = usi_dbuf_read(b, off, raw, all * es);
    size_t C = t->cl ? (size_t)t->shape[1] : 1, P = t->cl ? (size_t)(t->shape[2] * t->shape[3]) : 1;
    for (size_t i = 0; i < n && !e; i++) {
        size_t at = t->cl ? (i / (C * P) * P + i % P) * C + i / P % C : i;
        if (t->bf16) host[i] = usi_bf16_to_float(((const uint16_t *)raw)[at]);
        else memcpy(&host[i], raw + at * es, sizeof(float));
    }
    free(raw);
    return e;
}

usi_error *usi_graph_write_part(usi_tensor *t, const void *host, size_t bytes)
{
    USI_TRY(part_ok(t, bytes, "write"));
    USI_TRY(writable(t, "write"));
    if (t->bf16 || t->cl)
        return usi_error_new(USI_ERR_INTERNAL, "write '%s': it is kept as %s", t->name,
                             t->bf16 ? "bf16" : "channels-last");
    if (t->staging) {
        memcpy(t->staging, host, bytes);
        return NULL;
    }
    size_t off;
    usi_dbuf *b = usi_node_block(t, &off);
    if (!b) return usi_error_new(USI_ERR_INVALID, "write '%s': the tensor has no storage", t->name);
    return usi_dbuf_write(b, off, host, bytes);
}

/* t's device block after compile, or an error naming what is missing. */
static usi_error *device_block(usi_tensor *t, const char *what, usi_dbuf **b, size_t *at)
{
    USI_TRY(writable(t, what));
    *b = t && !t->staging ? usi_node_block(t, at) : NULL;
    if (!*b)
        return usi_error_new(USI_ERR_INVALID, "%s '%s': the tensor has no device storage (compile first)", what,
                             t ? t->name : "?");
    return NULL;
}

usi_error *usi_graph_write_staged(usi_tensor *t, usi_stage *s, int32_t slot, size_t off, size_t bytes)
{
    USI_TRY(part_ok(t, bytes, "staged write"));
    usi_dbuf *b;
    size_t at;
    USI_TRY(device_block(t, "staged write", &b, &at));
    return usi_stage_take(s, slot, off, b, at, bytes);
}

usi_error *usi_graph_write_u8(usi_tensor *t, const usi_dbuf *src, size_t off, int32_t n, int32_t h, int32_t w,
                              const float mean[3], const float std[3])
{
    if (!t || t->ndim != 4 || t->shape[1] != 3 || t->dtype != USI_DTYPE_F32 || n < 0 || n > t->shape[0] ||
        t->shape[2] != h || t->shape[3] != w) {
        char buf[64];
        return usi_error_new(USI_ERR_INTERNAL, "uint8 write '%s': %d images of %dx%d into a tensor %s", t ? t->name : "?",
                             n, h, w, t ? usi_shape_str(t, buf, sizeof buf) : "(none)");
    }
    usi_dbuf *b;
    size_t at;
    USI_TRY(device_block(t, "uint8 write", &b, &at));
    return usi_dbuf_u8_normalize(b, at, src, off, n, h, w, mean, std);
}

usi_error *usi_graph_write(usi_tensor *t, const void *host)
{
    return usi_graph_write_part(t, host, t ? usi_node_bytes(t) : 0);
}

usi_error *usi_graph_read_part(const usi_tensor *t, void *host, size_t bytes)
{
    USI_TRY(part_ok(t, bytes, "read"));
    if (t->staging) {
        memcpy(host, t->staging, bytes);
        return NULL;
    }
    size_t off;
    usi_dbuf *b = usi_node_block(t, &off);
    if (!b)
        return usi_error_new(USI_ERR_INVALID, "read '%s': the tensor holds no value (compile first, or mark it "
                             "as an output)", t->name);
    if (t->bf16 || t->cl) return read_stored(t, b, off, host, bytes / sizeof(float));
    return usi_dbuf_read(b, off, host, bytes);
}

usi_error *usi_graph_read(const usi_tensor *t, void *host)
{
    return usi_graph_read_part(t, host, t ? usi_node_bytes(t) : 0);
}

usi_error *usi_graph_read_grad(const usi_tensor *t, float *host)
{
    size_t off;
    usi_dbuf *b = t ? usi_node_grad_block(t, &off) : NULL;
    if (!b) return usi_error_new(USI_ERR_INVALID, "'%s' has no gradient", t ? t->name : "(null)");
    return read_stored(t, b, off, host, (size_t)t->numel);
}

/* A fused norm's grad is its ReLU's (fuse.c): not its own. */
int32_t usi_graph_has_grad(const usi_tensor *t) { return t && t->grad != NULL && !t->fuse_act; }

usi_error *usi_graph_copy_value(usi_tensor *dst, const usi_tensor *src, size_t bytes)
{
    USI_TRY(part_ok(dst, bytes, "copy"));
    USI_TRY(part_ok(src, bytes, "copy"));
    USI_TRY(writable(dst, "copy into"));
    if (dst->bf16 || src->bf16 || dst->cl || src->cl)
        return usi_error_new(USI_ERR_INTERNAL, "copy '%s' into '%s': one is kept as bf16 or channels-last",
                             src->name, dst->name);
    if (src->staging) return usi_graph_write_part(dst, src->staging, bytes);
    size_t so, doff;
    usi_dbuf *sb = usi_node_block(src, &so);
    if (!sb) return usi_error_new(USI_ERR_INVALID, "copy from '%s': it holds no value", src->name);
    if (dst->staging) return usi_dbuf_read(sb, so, dst->staging, bytes);
    usi_dbuf *db = usi_node_block(dst, &doff);
    if (!db) return usi_error_new(USI_ERR_INVALID, "copy into '%s': it has no storage", dst->name);
    return usi_dbuf_copy(db, doff, sb, so, bytes);
}

usi_error *usi_graph_convert_images(usi_tensor *dst, const usi_tensor *src, int32_t n, int32_t interp,
                                    const float *a, const float *b)
{
    if (!dst || !src || dst->ndim != 4 || src->ndim != 4 || dst->shape[1] != src->shape[1] ||
        dst->dtype != USI_DTYPE_F32 || src->dtype != USI_DTYPE_F32 || n > dst->shape[0] || n > src->shape[0])
        return usi_error_new(USI_ERR_INTERNAL, "convert_images: needs two float NCHW tensors with the same "
                             "channels and at least %d images", n);
    if (interp < USI_INTERP_NEAREST || interp > USI_INTERP_BICUBIC)
        return usi_error_new(USI_ERR_INVALID, "convert_images: unknown interpolation %d", interp);
    usi_device *dev = dst->graph->dev;
    if (src->graph->dev != dev || !dst->data || !src->data)
        return usi_error_new(USI_ERR_INTERNAL, "convert_images: both tensors must be compiled on one device");
    return dev->be->image_convert(dev, dst->data, src->data, n, (int32_t)src->shape[1], (int32_t)src->shape[2],
                                  (int32_t)src->shape[3], (int32_t)dst->shape[2], (int32_t)dst->shape[3], interp,
                                  a, b);
}
