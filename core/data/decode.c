#include "data/decode.h"

#include <errno.h>
#include <fcntl.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

#include "plugin/host.h"
#include "util/error.h"

struct usi_decoder {
    tjhandle tj;
    uint8_t *cmyk;
    size_t cmyk_cap;
    const char *note; /* about the last image decoded, or NULL */
};

usi_error *usi_decoder_new(usi_decoder **out)
{
    usi_decoder *d = calloc(1, sizeof *d);
    if (!d) return usi_error_new(USI_ERR_NOMEM, "decoder: out of memory");
    d->tj = tjInitDecompress();
    if (!d->tj) {
        free(d);
        return usi_error_new(USI_ERR_INTERNAL, "TurboJPEG: %s", tjGetErrorStr2(NULL));
    }
    *out = d;
    return NULL;
}

void usi_decoder_free(usi_decoder *d)
{
    if (!d) return;
    tjDestroy(d->tj);
    free(d->cmyk);
    free(d);
}

static int is_jpeg(const uint8_t *b, size_t n) { return n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }

static int is_png(const uint8_t *b, size_t n)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    return n >= 8 && memcmp(b, sig, 8) == 0;
}

static usi_error *check_dims(int64_t w, int64_t h, size_t file_len)
{
    if (w <= 0 || h <= 0)
        return usi_error_new(USI_ERR_INVALID, "header says the image is %lldx%lld pixels; the file is damaged",
                             (long long)w, (long long)h);
    if (w > 65535 || h > 65535)
        return usi_error_new(USI_ERR_INVALID, "%lldx%lld has a side over the 65535-pixel limit; downscale the image",
                             (long long)w, (long long)h);
    if (w * h > USI_DECODE_MAX_PIXELS)
        return usi_error_new(USI_ERR_INVALID,
                             "%lldx%lld is %.1f MP, over the %.1f MP limit (2^26 pixels); downscale the image",
                             (long long)w, (long long)h, (double)(w * h) / 1e6, USI_DECODE_MAX_PIXELS / 1e6);
    if ((double)w * (double)h * 3.0 > (double)file_len * USI_DECODE_MAX_RATIO + (1 << 20))
        return usi_error_new(USI_ERR_INVALID,
                             "header claims %lldx%lld pixels, implausible for a file of %zu bytes",
                             (long long)w, (long long)h, file_len);
    return NULL;
}

static usi_error *tj_error(usi_decoder *d, const char *what)
{
    return usi_error_new(USI_ERR_INVALID, "JPEG %s: %s", what, tjGetErrorStr2(d->tj));
}

/* The JPEG's size and colour space. TurboJPEG reports success on a file that
 * stops after its tables, before any frame header (SOF), without setting the
 * size: that is a truncated file, not a 0x0 image. */
static usi_error *jpeg_header(usi_decoder *d, const uint8_t *buf, size_t len, int *w, int *h, int *cs)
{
    int sub = 0;
    *w = *h = 0;
    *cs = TJCS_RGB;
    if (len > (size_t)0xFFFFFFFFu) return usi_error_new(USI_ERR_INVALID, "JPEG too large");
    if (tjDecompressHeader3(d->tj, buf, (unsigned long)len, w, h, &sub, cs)) return tj_error(d, "header");
    if (*w == 0 && *h == 0)
        return usi_error_new(USI_ERR_INVALID, "truncated JPEG: the file ends before its frame header (SOF)");
    return check_dims(*w, *h, len);
}

static int pick_scale(int w, int h, int32_t min_side, tjscalingfactor *best)
{
    int n = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    best->num = best->denom = 1;
    if (min_side <= 0 || !sf) return 0;
    for (int i = 0; i < n; i++) {
        if (sf[i].num * best->denom >= best->num * sf[i].denom) continue; /* not smaller */
        int sw = TJSCALED(w, sf[i]), sh = TJSCALED(h, sf[i]);
        if (sw >= min_side && sh >= min_side) *best = sf[i];
    }
    return 1;
}

/* Adobe CMYK JPEGs are stored inverted; this matches PIL's conversion. */
static void cmyk_to_rgb(const uint8_t *in, usi_image *out)
{
    size_t n = (size_t)out->width * (size_t)out->height;
    for (size_t i = 0; i < n; i++) {
        unsigned k = in[4 * i + 3];
        out->data[3 * i] = (uint8_t)(in[4 * i] * k / 255);
        out->data[3 * i + 1] = (uint8_t)(in[4 * i + 1] * k / 255);
        out->data[3 * i + 2] = (uint8_t)(in[4 * i + 2] * k / 255);
    }
}

static usi_error *decode_jpeg(usi_decoder *d, const uint8_t *buf, size_t len,
                              int32_t min_side, usi_image *out)
{
    int w, h, cs;
    USI_TRY(jpeg_header(d, buf, len, &w, &h, &cs));
    tjscalingfactor sf;
    pick_scale(w, h, min_side, &sf);
    int sw = TJSCALED(w, sf), sh = TJSCALED(h, sf);
    USI_TRY(usi_host_api_get()->image_alloc(out, sw, sh, 3));
    int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    uint8_t *dst = out->data;
    if (cmyk) {
        size_t need = (size_t)sw * (size_t)sh * 4;
        if (need > d->cmyk_cap) {
            uint8_t *p = realloc(d->cmyk, need);
            if (!p) return usi_error_new(USI_ERR_NOMEM, "JPEG: out of memory");
            d->cmyk = p;
            d->cmyk_cap = need;
        }
        dst = d->cmyk;
    }
    int rc = tjDecompress2(d->tj, buf, (unsigned long)len, dst, sw, 0, sh,
                           cmyk ? TJPF_CMYK : TJPF_RGB, TJFLAG_LIMITSCANS);
    if (rc) {
        /* Warnings are recoverable (e.g. stray bytes between markers), except
         * a premature end: the missing rows would be filled with grey. */
        const char *msg = tjGetErrorStr2(d->tj);
        if (tjGetErrorCode(d->tj) != TJERR_WARNING || strstr(msg, "Premature end"))
            return tj_error(d, "data");
    }
    if (cmyk) cmyk_to_rgb(d->cmyk, out);
    return NULL;
}

static usi_error *spng_err(const char *what, int rc)
{
    return usi_error_new(USI_ERR_INVALID, "PNG %s: %s", what, spng_strerror(rc));
}

static usi_error *png_open(spng_ctx **ctx, const uint8_t *buf, size_t len,
                           struct spng_ihdr *ihdr)
{
    *ctx = spng_ctx_new(0);
    if (!*ctx) return usi_error_new(USI_ERR_NOMEM, "PNG: out of memory");
    int rc = spng_set_image_limits(*ctx, 65535, 65535);
    if (!rc) rc = spng_set_chunk_limits(*ctx, 1u << 26, 1u << 26);
    if (!rc) rc = spng_set_png_buffer(*ctx, buf, len);
    if (rc) return spng_err("setup", rc);
    rc = spng_get_ihdr(*ctx, ihdr);
    if (rc) return spng_err("header", rc);
    return check_dims(ihdr->width, ihdr->height, len);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* 1 when an IDAT chunk's CRC is wrong. libspng 0.7 does not check them; PIL
 * reads past them unchecked (PngImageFile.load_read), so torchvision trains
 * on such files. The zlib stream inside carries its own Adler-32, which
 * inflation checks, so an intact image still decodes and a damaged one
 * still fails. */
static int png_idat_crc_bad(const uint8_t *buf, size_t len)
{
    for (size_t pos = 8; pos + 12 <= len;) {
        uint32_t n = be32(buf + pos);
        const uint8_t *type = buf + pos + 4;
        if (n > len - pos - 12) break; /* truncated: inflation has already judged it */
        if (!memcmp(type, "IDAT", 4) && crc32_z(crc32_z(0, NULL, 0), type, (size_t)n + 4) != be32(type + 4 + n))
            return 1;
        if (!memcmp(type, "IEND", 4)) break;
        pos += 12 + (size_t)n;
    }
    return 0;
}

static usi_error *decode_png(usi_decoder *d, const uint8_t *buf, size_t len, usi_image *out)
{
    spng_ctx *ctx = NULL;
    struct spng_ihdr ihdr;
    usi_error *e = png_open(&ctx, buf, len, &ihdr);
    size_t size = 0;
    if (!e) {
        int rc = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &size);
        if (rc) e = spng_err("size", rc);
    }
    if (!e) e = usi_host_api_get()->image_alloc(out, (int32_t)ihdr.width, (int32_t)ihdr.height, 3);
    if (!e && size != (size_t)out->width * (size_t)out->height * 3)
        e = usi_error_new(USI_ERR_INTERNAL, "PNG: unexpected decoded size %zu", size);
    if (!e) {
        int rc = spng_decode_image(ctx, out->data, size, SPNG_FMT_RGB8, 0);
        if (rc) e = spng_err("data", rc);
    }
    spng_ctx_free(ctx);
    if (!e && png_idat_crc_bad(buf, len))
        d->note = "an IDAT chunk's CRC is wrong but its data inflated cleanly (zlib's own checksum matched); "
                  "the image is used, as PIL and so torchvision use it";
    return e;
}

usi_error *usi_decode_image(usi_decoder *d, const uint8_t *buf, size_t len,
                            int32_t min_side, usi_image *out)
{
    d->note = NULL;
    if (!buf || len == 0) return usi_error_new(USI_ERR_INVALID, "empty file");
    if (is_jpeg(buf, len)) return decode_jpeg(d, buf, len, min_side, out);
    if (is_png(buf, len)) return decode_png(d, buf, len, out);
    return usi_error_new(USI_ERR_INVALID, "not a JPEG or PNG file");
}

const char *usi_decoder_note(const usi_decoder *d) { return d->note; }

usi_error *usi_decode_size(usi_decoder *d, const uint8_t *buf, size_t len,
                           int32_t *width, int32_t *height)
{
    if (!buf || len == 0) return usi_error_new(USI_ERR_INVALID, "empty file");
    if (is_jpeg(buf, len)) {
        int w, h, cs;
        usi_error *e = jpeg_header(d, buf, len, &w, &h, &cs);
        *width = w;
        *height = h;
        return e;
    }
    if (is_png(buf, len)) {
        spng_ctx *ctx = NULL;
        struct spng_ihdr ihdr;
        usi_error *e = png_open(&ctx, buf, len, &ihdr);
        spng_ctx_free(ctx);
        if (e) return e;
        *width = (int32_t)ihdr.width;
        *height = (int32_t)ihdr.height;
        return NULL;
    }
    return usi_error_new(USI_ERR_INVALID, "not a JPEG or PNG file");
}

/* What a non-regular file is, for the message refusing it. */
static const char *file_kind(mode_t mode)
{
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
    return "a special file";
}

usi_error *usi_read_file(const char *path, uint8_t **buf, size_t *cap, size_t *len)
{
    *len = 0;
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer;
     * fstat then refuses it. A regular file reads the same either way. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return usi_error_new(USI_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat st;
    usi_error *e = NULL;
    if (fstat(fd, &st) != 0) {
        e = usi_error_new(USI_ERR_IO, "cannot stat: %s", strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        e = usi_error_new(USI_ERR_IO, "not a regular file (%s); only image files can be read", file_kind(st.st_mode));
    } else if (st.st_size == 0) {
        e = usi_error_new(USI_ERR_INVALID, "empty file (0 bytes)");
    } else if ((size_t)st.st_size > *cap) {
        uint8_t *p = realloc(*buf, (size_t)st.st_size);
        if (!p) e = usi_error_new(USI_ERR_NOMEM, "out of memory for %lld bytes", (long long)st.st_size);
        else {
            *buf = p;
            *cap = (size_t)st.st_size;
        }
    }
    size_t got = 0;
    while (!e && got < (size_t)st.st_size) {
        ssize_t r = read(fd, *buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) e = usi_error_new(USI_ERR_IO, "read failed: %s", strerror(errno));
        else if (r == 0) break; /* shrank while reading: decode what is there */
        else got += (size_t)r;
    }
    close(fd);
    *len = got;
    return e;
}

usi_error *usi_png_write(const char *path, const usi_image *img)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return usi_error_new(USI_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    int rc = ctx ? spng_set_png_file(ctx, f) : SPNG_EMEM;
    struct spng_ihdr ihdr = {(uint32_t)img->width, (uint32_t)img->height, 8,
                             img->channels == 1 ? SPNG_COLOR_TYPE_GRAYSCALE : SPNG_COLOR_TYPE_TRUECOLOR,
                             0, 0, 0};
    if (!rc) rc = spng_set_ihdr(ctx, &ihdr);
    size_t row = (size_t)img->width * (size_t)img->channels;
    uint8_t *packed = NULL;
    const uint8_t *data = img->data;
    if (!rc && (size_t)img->stride != row) {
        packed = malloc(row * (size_t)img->height);
        if (!packed) rc = SPNG_EMEM;
        else
            for (int32_t y = 0; y < img->height; y++)
                memcpy(packed + (size_t)y * row, img->data + (size_t)y * (size_t)img->stride, row);
        data = packed;
    }
    if (!rc) rc = spng_encode_image(ctx, data, row * (size_t)img->height, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    spng_ctx_free(ctx);
    free(packed);
    int closed = fclose(f);
    if (rc || closed) {
        unlink(tmp);
        return usi_error_new(USI_ERR_IO, "%s: %s", path, rc ? spng_strerror(rc) : strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return usi_error_new(USI_ERR_IO, "%s: %s", path, strerror(err));
    }
    return NULL;
}
