/* Device registry and device memory blocks. */
#include "backend/device_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

static usi_device cpu_device = {.name = "cpu"};
static usi_device guarded_device = {.name = "cpu-guarded"};

usi_device *usi_device_cpu(void)
{
    if (!cpu_device.be) cpu_device.be = usi_cpu_backend();
    return &cpu_device;
}

const char *usi_device_names(void) { return "cpu, cpu-guarded, cuda, cuda:N"; }

/* "cuda" is cuda:0; "cuda:N" needs N to be a whole number. */
static int32_t cuda_ordinal(const char *name)
{
    if (!strcmp(name, "cuda")) return 0;
    if (strncmp(name, "cuda:", 5) != 0 || !name[5]) return -1;
    char *end;
    long n = strtol(name + 5, &end, 10);
    return *end || n < 0 || n > 1023 ? -1 : (int32_t)n;
}

int32_t usi_device_name_valid(const char *name)
{
    return name && (!strcmp(name, "cpu") || !strcmp(name, "cpu-guarded") || cuda_ordinal(name) >= 0);
}

#ifndef USI_HAVE_CUDA
usi_error *usi_cuda_device_open(int32_t ordinal, usi_device **out)
{
    (void)ordinal;
    *out = NULL;
    return usi_error_new(USI_ERR_UNSUPPORTED,
                         "this build of usi has no CUDA backend; rebuild with `meson setup -Dcuda=enabled` on a "
                         "machine with the CUDA toolkit in /usr/local/cuda, or set device = \"cpu\"");
}
#endif

int32_t usi_device_available(const char *name)
{
#ifdef USI_HAVE_CUDA
    return usi_device_name_valid(name);
#else
    return usi_device_name_valid(name) && cuda_ordinal(name) < 0;
#endif
}

int32_t usi_device_name_has_bf16(const char *name)
{
    /* The CUDA backend has one (usi_device_set_mixed); cpu not yet.
     * cpu-guarded gives cpu's numbers unless USI_GUARDED_BF16=1 asks it to
     * keep activations as bf16 under "mixed" as a GPU does (for tests of
     * that path on machines without one). */
    if (name && !strcmp(name, "cpu-guarded")) {
        const char *v = getenv("USI_GUARDED_BF16");
        return v && !strcmp(v, "1");
    }
#ifdef USI_HAVE_CUDA
    return name && cuda_ordinal(name) >= 0;
#else
    return 0;
#endif
}

usi_error *usi_device_open(const char *name, usi_device **out)
{
    *out = NULL;
    if (!name || !usi_device_name_valid(name))
        return usi_error_new(USI_ERR_INVALID, "unknown device '%s'; valid devices: %s", name ? name : "(null)",
                             usi_device_names());
    if (!strcmp(name, "cpu")) {
        *out = usi_device_cpu();
        return NULL;
    }
    if (!strcmp(name, "cpu-guarded")) {
        if (!guarded_device.be) guarded_device.be = usi_cpu_guarded_backend();
        *out = &guarded_device;
        return NULL;
    }
    usi_error *e = usi_cuda_device_open(cuda_ordinal(name), out);
    return e ? usi_error_prefix(e, "device '%s': ", name) : NULL;
}

const char *usi_device_name(const usi_device *d) { return d->name; }
int32_t usi_device_has_bf16(const usi_device *d) { return d->be->has_bf16; }

usi_error *usi_device_set_mixed(usi_device *d, int32_t on)
{
    if (on && !d->be->has_bf16)
        return usi_error_new(USI_ERR_UNSUPPORTED, "device %s has no bf16 path for precision \"mixed\"", d->name);
    d->mixed = on != 0;
    return NULL;
}

int32_t usi_device_mixed(const usi_device *d) { return d->mixed; }
usi_error *usi_device_synchronize(usi_device *d) { return d->be->synchronize(d); }

void usi_device_set_threads(int32_t n) { usi_device_cpu()->be->set_threads(n); }
int32_t usi_device_threads(void) { return usi_device_cpu()->be->threads(); }

/* ---- blocks ---- */

usi_error *usi_dbuf_new(usi_device *d, size_t bytes, usi_dbuf **out)
{
    *out = NULL;
    usi_dbuf *b = calloc(1, sizeof *b);
    if (!b) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    b->dev = d;
    b->bytes = bytes;
    b->ptr = d->be->alloc(d, bytes ? bytes : 1);
    if (!b->ptr) {
        free(b);
        size_t free_bytes = 0, total_bytes = 0;
        if (d->be->mem_info) d->be->mem_info(d, &free_bytes, &total_bytes);
        if (total_bytes)
            return usi_error_new(USI_ERR_NOMEM, "device %s: out of memory for %.1f MiB (%zu bytes; %.1f MiB of %.1f MiB free)",
                                 d->name, (double)bytes / 1048576.0, bytes, (double)free_bytes / 1048576.0,
                                 (double)total_bytes / 1048576.0);
        return usi_error_new(USI_ERR_NOMEM, "device %s: out of memory for %.1f MiB", d->name,
                             (double)bytes / 1048576.0);
    }
    *out = b;
    return NULL;
}

void usi_dbuf_free(usi_dbuf *b)
{
    if (!b) return;
    b->dev->be->free(b->dev, b->ptr, b->bytes ? b->bytes : 1);
    free(b);
}

size_t usi_dbuf_bytes(const usi_dbuf *b) { return b ? b->bytes : 0; }
usi_device *usi_dbuf_device(const usi_dbuf *b) { return b->dev; }

static usi_error *range_ok(const usi_dbuf *b, size_t off, size_t bytes, const char *what)
{
    if (!b || off > b->bytes || bytes > b->bytes - off)
        return usi_error_new(USI_ERR_INTERNAL, "%s: bytes [%zu, +%zu) outside a block of %zu", what, off, bytes,
                             b ? b->bytes : 0);
    return NULL;
}

usi_error *usi_dbuf_write(usi_dbuf *b, size_t off, const void *host, size_t bytes)
{
    USI_TRY(range_ok(b, off, bytes, "device write"));
    return bytes ? b->dev->be->upload(b->dev, (char *)b->ptr + off, host, bytes) : NULL;
}

usi_error *usi_dbuf_read(const usi_dbuf *b, size_t off, void *host, size_t bytes)
{
    USI_TRY(range_ok(b, off, bytes, "device read"));
    return bytes ? b->dev->be->download(b->dev, host, (const char *)b->ptr + off, bytes) : NULL;
}

usi_error *usi_dbuf_copy(usi_dbuf *dst, size_t dst_off, const usi_dbuf *src, size_t src_off, size_t bytes)
{
    USI_TRY(range_ok(dst, dst_off, bytes, "device copy"));
    USI_TRY(range_ok(src, src_off, bytes, "device copy"));
    if (!bytes) return NULL;
    if (dst->dev == src->dev)
        return dst->dev->be->copy(dst->dev, (char *)dst->ptr + dst_off, (const char *)src->ptr + src_off, bytes);
    void *tmp = malloc(bytes);
    if (!tmp) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    usi_error *e = usi_dbuf_read(src, src_off, tmp, bytes);
    if (!e) e = usi_dbuf_write(dst, dst_off, tmp, bytes);
    free(tmp);
    return e;
}

usi_error *usi_dbuf_fill(usi_dbuf *b, size_t off, int byte, size_t bytes)
{
    USI_TRY(range_ok(b, off, bytes, "device fill"));
    return bytes ? b->dev->be->fill(b->dev, (char *)b->ptr + off, byte, bytes) : NULL;
}

usi_error *usi_dbuf_u8_normalize(usi_dbuf *dst, size_t dst_off, const usi_dbuf *src, size_t src_off, int32_t n,
                                 int32_t h, int32_t w, const float mean[3], const float std[3])
{
    size_t px = (size_t)n * (size_t)h * (size_t)w * 3;
    USI_TRY(range_ok(dst, dst_off, px * sizeof(float), "normalise"));
    USI_TRY(range_ok(src, src_off, px, "normalise"));
    if (dst->dev != src->dev) return usi_error_new(USI_ERR_INTERNAL, "normalise: blocks on different devices");
    if (!dst->dev->be->u8_normalize)
        return usi_error_new(USI_ERR_UNSUPPORTED, "device %s can't normalise images", dst->dev->name);
    return px ? dst->dev->be->u8_normalize(dst->dev, (float *)((char *)dst->ptr + dst_off),
                                           (const uint8_t *)src->ptr + src_off, n, h, w, mean, std)
              : NULL;
}

/* ---- step kernels ---- */

static float *fat(const usi_dbuf *b, size_t elem) { return b ? (float *)b->ptr + elem : NULL; }

usi_error *usi_dbuf_optim_step(const usi_optim_hp *hp, int64_t step, usi_dbuf *w, const usi_dbuf *g,
                               usi_dbuf *s0, usi_dbuf *s1, const usi_optim_seg *segs, int32_t n_segs)
{
    size_t end = 0;
    for (int32_t i = 0; i < n_segs; i++)
        if (segs[i].off + segs[i].n > end) end = segs[i].off + segs[i].n;
    USI_TRY(range_ok(w, 0, end * sizeof(float), "optimizer weights"));
    USI_TRY(range_ok(g, 0, end * sizeof(float), "optimizer gradients"));
    USI_TRY(range_ok(s0, 0, end * sizeof(float), "optimizer state"));
    if (hp->kind != USI_OPT_SGD) USI_TRY(range_ok(s1, 0, end * sizeof(float), "optimizer state"));
    if (g->dev != w->dev || s0->dev != w->dev || (s1 && s1->dev != w->dev))
        return usi_error_new(USI_ERR_INTERNAL, "optimizer blocks on different devices");
    usi_optim_args a = {*hp, step, fat(w, 0), fat(g, 0), fat(s0, 0), fat(s1, 0), segs, n_segs};
    return w->dev->be->optim_step(w->dev, &a);
}

usi_error *usi_dbuf_ema(usi_dbuf *ema, size_t ema_off, const usi_dbuf *w, size_t w_off, size_t n, double decay)
{
    USI_TRY(range_ok(ema, ema_off * sizeof(float), n * sizeof(float), "EMA"));
    USI_TRY(range_ok(w, w_off * sizeof(float), n * sizeof(float), "EMA source"));
    if (ema->dev != w->dev) return usi_error_new(USI_ERR_INTERNAL, "EMA blocks on different devices");
    return n ? ema->dev->be->ema_update(ema->dev, fat(ema, ema_off), fat(w, w_off), n, decay) : NULL;
}

usi_error *usi_dbuf_sum_squares(const usi_dbuf *x, size_t off, size_t n, double *out)
{
    *out = 0;
    USI_TRY(range_ok(x, off * sizeof(float), n * sizeof(float), "sum of squares"));
    return n ? x->dev->be->sum_squares(x->dev, fat(x, off), n, out) : NULL;
}

usi_error *usi_dbuf_scale(usi_dbuf *x, size_t off, size_t n, double s)
{
    USI_TRY(range_ok(x, off * sizeof(float), n * sizeof(float), "scale"));
    return n ? x->dev->be->scale(x->dev, fat(x, off), n, s) : NULL;
}

void usi_image_convert_host(float *dst, const float *src, int32_t n, int32_t c, int32_t h, int32_t w, int32_t oh,
                            int32_t ow, int32_t interp, const float *a, const float *b)
{
    usi_device *cpu = usi_device_cpu();
    usi_error_free(cpu->be->image_convert(cpu, dst, src, n, c, h, w, oh, ow, interp, a, b));
}
