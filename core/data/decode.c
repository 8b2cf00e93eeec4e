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

#include "data/decode_formats.h"
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

/* Signatures of the files most often found among images, to name what a
 * refused file is. */
typedef struct known_magic {
    size_t at;
    const char *bytes;
    size_t n;
    const char *what;
} known_magic;

static const known_magic known_magics[] = {
    {0, "GIF8", 4, "a GIF"},
    {4, "ftyp", 4, "an ISO media file (HEIC, AVIF or video)"},
    {0, "\0\x05\x16\x07", 4, "macOS metadata (AppleDouble, a \"._\" file)"},
    {0, "\0\0\1\0", 4, "a Windows icon (ICO)"},
    {0, "%PDF", 4, "a PDF"},
};

/* The first bytes of b in hex, and what they are when known:
 * "47 49 46 38 39 61 01 00, a GIF". */
static void describe_start(const uint8_t *b, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < 8 && o < size; i++)
        o += (size_t)snprintf(out + o, size - o, "%s%02x", i ? " " : "", b[i]);
    for (size_t k = 0; k < sizeof known_magics / sizeof *known_magics && o < size; k++) {
        const known_magic *m = &known_magics[k];
        if (n >= m->at + m->n && !memcmp(b + m->at, m->bytes, m->n)) {
            snprintf(out + o, size - o, ", %s", m->what);
            break;
        }
    }
}

static usi_error *not_an_image(const uint8_t *b, size_t n)
{
    char start[160];
    describe_start(b, n, start, sizeof start);
    return usi_error_new(USI_ERR_INVALID, "not a JPEG, PNG, BMP, PPM/PGM, TIFF or WebP file (it starts with %s); "
                         "convert it to PNG or remove it", start);
}

/* The limits every format shares: a side or a pixel count past them is
 * refused whatever the file's size. */
usi_error *usi_decode_check_dims(int64_t w, int64_t h)
{
    if (w <= 0 || h <= 0)
        return usi_error_new(USI_ERR_INVALID, "header says the image is %lldx%lld pixels; the file is damaged",
                             (long long)w, (long long)h);
    if (w > USI_DECODE_MAX_SIDE || h > USI_DECODE_MAX_SIDE)
        return usi_error_new(USI_ERR_INVALID, "%lldx%lld has a side over the %d-pixel limit; downscale the image",
                             (long long)w, (long long)h, USI_DECODE_MAX_SIDE);
    if (w * h > USI_DECODE_MAX_PIXELS)
        return usi_error_new(USI_ERR_INVALID,
                             "%lldx%lld is %.1f MP, over the %.1f MP limit (2^26 pixels); downscale the image",
                             (long long)w, (long long)h, (double)(w * h) / 1e6, USI_DECODE_MAX_PIXELS / 1e6);
    return NULL;
}

static usi_error *implausible(int64_t w, int64_t h, size_t file_len, const char *why)
{
    return usi_error_new(USI_ERR_INVALID,
                         "header claims %lldx%lld pixels, implausible for a file of %zu bytes (%s); "
                         "the file is damaged",
                         (long long)w, (long long)h, file_len, why);
}

usi_error *usi_decode_check_size(int64_t w, int64_t h, size_t len, double min_bytes, const char *why)
{
    USI_TRY(usi_decode_check_dims(w, h));
    if (min_bytes > 0 && (double)w * (double)h * min_bytes > (double)len) return implausible(w, h, len, why);
    return NULL;
}

usi_error *usi_decode_alloc(usi_image *out, int32_t w, int32_t h)
{
    USI_TRY(usi_decode_check_dims(w, h));
    return usi_host_api_get()->image_alloc(out, w, h, 3);
}

static usi_error *tj_error(usi_decoder *d, const char *what)
{
    return usi_error_new(USI_ERR_INVALID, "JPEG %s: %s", what, tjGetErrorStr2(d->tj));
}

/* What the JPEG's frame header (SOF) says, read by walking the marker
 * segments before it; found is 0 when the walk met no frame header. */
typedef struct jpeg_frame {
    int found, arithmetic, width, height, components;
} jpeg_frame;

/* SOF0-SOF15 less DHT (C4), JPG (C8) and DAC (CC); SOF9 and up are
 * arithmetic-coded. */
static int is_sof(uint8_t m) { return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC; }

static jpeg_frame jpeg_find_frame(const uint8_t *b, size_t n)
{
    jpeg_frame f = {0};
    size_t pos = 2;
    while (pos + 4 <= n && b[pos] == 0xFF) {
        uint8_t m = b[pos + 1];
        if (m == 0xFF) { /* fill byte before a marker */
            pos++;
            continue;
        }
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) { /* markers without a length */
            pos += 2;
            continue;
        }
        if (m == 0xD9 || m == 0xDA) break; /* end of image or a scan: no frame before it */
        size_t seg = (size_t)b[pos + 2] << 8 | b[pos + 3];
        if (seg < 2) break;
        if (is_sof(m)) {
            if (pos + 10 > n) break;
            f.found = 1;
            f.arithmetic = m >= 0xC9;
            f.height = b[pos + 5] << 8 | b[pos + 6];
            f.width = b[pos + 7] << 8 | b[pos + 8];
            f.components = b[pos + 9];
            break;
        }
        pos += 2 + seg;
    }
    return f;
}

/* Huffman coding spends at least one bit per 8x8 block, so its bound holds
 * for any conforming file. Arithmetic coding adapts its probabilities and
 * codes a flat block in a small fraction of a bit (cjpeg -arithmetic puts a
 * flat 8000x8000 image in 125 bytes, and PIL opens it), so for it only the
 * pixel limit holds: a corrupt file can then ask for at most 192 MiB. */
static usi_error *check_jpeg_size(int64_t w, int64_t h, size_t len, const jpeg_frame *f)
{
    USI_TRY(usi_decode_check_dims(w, h));
    if (f->arithmetic) return NULL;
    if ((double)w * (double)h * 3.0 > (double)len * USI_DECODE_MAX_RATIO + (1 << 20))
        return implausible(w, h, len, "a Huffman-coded JPEG holds at most 1536 bytes of RGB per byte");
    return NULL;
}

/* The JPEG's size and colour space. TurboJPEG reports success on a file that
 * stops after its tables, before any frame header (SOF), without setting the
 * size: that is a truncated file, not a 0x0 image. */
static usi_error *jpeg_header(usi_decoder *d, const uint8_t *buf, size_t len, int *w, int *h, int *cs)
{
    int sub = TJSAMP_444;
    *w = *h = 0;
    *cs = TJCS_RGB;
    if (len > (size_t)0xFFFFFFFFu) return usi_error_new(USI_ERR_INVALID, "JPEG too large");
    jpeg_frame f = jpeg_find_frame(buf, len);
    if (tjDecompressHeader3(d->tj, buf, (unsigned long)len, w, h, &sub, cs)) {
        /* TurboJPEG 2.1 reads the whole header, then refuses sampling
         * factors that match none of its named subsamplings (cjpeg -sample
         * 3x1,1x1,1x1, 4x2 or 1x4), leaving sub at -1. tjDecompress2 decodes
         * such files all the same, to libjpeg's pixels as PIL gets them, so
         * only the header's facts are taken from the frame header here. */
        if (sub != -1 || !f.found) return tj_error(d, "header");
        *w = f.width;
        *h = f.height;
        *cs = f.components == 4 ? TJCS_CMYK : TJCS_YCbCr;
    }
    if (*w == 0 && *h == 0)
        return usi_error_new(USI_ERR_INVALID, "truncated JPEG: the file ends before its frame header (SOF)");
    return check_jpeg_size(*w, *h, len, &f);
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

/* round(x / 255) for 0 <= x <= 255 * 255, exactly, in integers (the halves
 * never occur: 255 is odd). */
static unsigned div255_round(unsigned x)
{
    x += 128;
    return (x + (x >> 8)) >> 8;
}

/* PIL reads every 4-channel JPEG as Adobe's inverted CMYK (JpegImagePlugin
 * decodes with rawmode "CMYK;I", inverting each stored byte: C = 255 - c)
 * and converts CMYK to RGB as R = (255 - K) - round(C * (255 - K) / 255).
 * With the stored bytes c and k that is R = k - round((255 - c) * k / 255),
 * which is what this computes, to the bit. */
static void cmyk_to_rgb(const uint8_t *in, usi_image *out)
{
    size_t n = (size_t)out->width * (size_t)out->height;
    for (size_t i = 0; i < n; i++) {
        unsigned k = in[4 * i + 3];
        for (int ch = 0; ch < 3; ch++)
            out->data[3 * i + (size_t)ch] = (uint8_t)(k - div255_round((255u - in[4 * i + (size_t)ch]) * k));
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
    if (d->cmyk_cap > USI_READ_KEEP_BYTES) {
        /* One huge CMYK image must not pin its scratch for the decoder's
         * life: a loader worker keeps its decoder for the whole run. */
        free(d->cmyk);
        d->cmyk = NULL;
        d->cmyk_cap = 0;
    }
    return NULL;
}

static usi_error *spng_err(const char *what, int rc)
{
    return usi_error_new(USI_ERR_INVALID, "PNG %s: %s", what, spng_strerror(rc));
}

static int png_channels(uint8_t color_type)
{
    switch (color_type) {
    case SPNG_COLOR_TYPE_TRUECOLOR: return 3;
    case SPNG_COLOR_TYPE_GRAYSCALE_ALPHA: return 2;
    case SPNG_COLOR_TYPE_TRUECOLOR_ALPHA: return 4;
    default: return 1; /* grey, palette */
    }
}

/* A PNG's pixels are a zlib stream inside the file, and deflate codes at
 * most 258 bytes in 2 bits (a 1-bit length code and a 1-bit distance code):
 * no stream inflates to more than 1032 times its size. The image's packed
 * pixel bits (at its own bit depth, filter bytes left out so the bound holds
 * for interlaced files too) must fit in that from the whole file; a header
 * claiming more is damaged. A flat 3000x3000 palette image at 1 bit per
 * pixel (1125000 bytes packed) fits in a file of 1188 bytes. */
static usi_error *check_png_size(const struct spng_ihdr *ihdr, size_t len)
{
    int64_t w = ihdr->width, h = ihdr->height;
    USI_TRY(usi_decode_check_dims(w, h));
    double bits = (double)w * (double)h * png_channels(ihdr->color_type) * ihdr->bit_depth;
    if (bits / 8.0 > (double)len * USI_DECODE_PNG_MAX_RATIO)
        return implausible(w, h, len, "at its bit depth that needs more than deflate's 1032:1");
    return NULL;
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
    return check_png_size(ihdr, len);
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

/* The formats with their own files (decode_formats.h), found by their
 * first bytes. */
typedef struct other_format {
    int (*is)(const uint8_t *b, size_t n);
    usi_error *(*decode)(const uint8_t *buf, size_t len, usi_image *out, int32_t *w, int32_t *h);
} other_format;

static const other_format other_formats[] = {
    {usi_is_bmp, usi_decode_bmp},
    {usi_is_pnm, usi_decode_pnm},
    {usi_is_webp, usi_decode_webp},
    {usi_is_tiff, usi_decode_tiff},
};

static const other_format *other_format_of(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < sizeof other_formats / sizeof *other_formats; i++)
        if (other_formats[i].is(b, n)) return &other_formats[i];
    return NULL;
}

static int is_image(const uint8_t *b, size_t n) { return is_jpeg(b, n) || is_png(b, n) || other_format_of(b, n); }

usi_error *usi_decode_image(usi_decoder *d, const uint8_t *buf, size_t len,
                            int32_t min_side, usi_image *out)
{
    d->note = NULL;
    if (!buf || len == 0) return usi_error_new(USI_ERR_INVALID, "empty file");
    if (is_jpeg(buf, len)) return decode_jpeg(d, buf, len, min_side, out);
    if (is_png(buf, len)) return decode_png(d, buf, len, out);
    int32_t w, h;
    const other_format *f = other_format_of(buf, len);
    if (f) return f->decode(buf, len, out, &w, &h);
    return not_an_image(buf, len);
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
    const other_format *f = other_format_of(buf, len);
    if (f) return f->decode(buf, len, NULL, width, height);
    return not_an_image(buf, len);
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

/* Opens path for reading and checks it is a regular file, not empty; its
 * size in *size. On error nothing is left open. */
static usi_error *open_regular(const char *path, int *fd, size_t *size)
{
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer;
     * fstat then refuses it. A regular file reads the same either way. */
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (*fd < 0) return usi_error_new(USI_ERR_IO, "cannot open: %s", strerror(errno));
    struct stat st;
    usi_error *e = NULL;
    if (fstat(*fd, &st) != 0)
        e = usi_error_new(USI_ERR_IO, "cannot stat: %s", strerror(errno));
    else if (!S_ISREG(st.st_mode))
        e = usi_error_new(USI_ERR_IO, "not a regular file (%s); only image files can be read", file_kind(st.st_mode));
    else if (st.st_size == 0)
        e = usi_error_new(USI_ERR_INVALID, "empty file (0 bytes)");
    if (e) {
        close(*fd);
        *fd = -1;
        return e;
    }
    *size = (size_t)st.st_size;
    return NULL;
}

/* Makes *buf hold at least size bytes (its old contents are not kept). A
 * buffer grown past USI_READ_KEEP_BYTES is given back as soon as a file
 * that fits in that comes: the callers keep their buffer from file to file,
 * and one huge file must not hold that much memory for the rest of a run. */
static usi_error *fit_buffer(uint8_t **buf, size_t *cap, size_t size)
{
    int grow = size > *cap, shrink = *cap > USI_READ_KEEP_BYTES && size <= USI_READ_KEEP_BYTES;
    if (!grow && !shrink) return NULL;
    free(*buf); /* free and malloc: no copy of bytes about to be overwritten */
    *cap = 0;
    *buf = malloc(size);
    if (!*buf) return usi_error_new(USI_ERR_NOMEM, "out of memory for %zu bytes", size);
    *cap = size;
    return NULL;
}

/* Up to want bytes into dst; *got says how many came (fewer when the file
 * shrank while being read: what is there is decoded). */
static usi_error *read_fully(int fd, uint8_t *dst, size_t want, size_t *got)
{
    *got = 0;
    while (*got < want) {
        ssize_t r = read(fd, dst + *got, want - *got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return usi_error_new(USI_ERR_IO, "read failed: %s", strerror(errno));
        if (r == 0) break;
        *got += (size_t)r;
    }
    return NULL;
}

usi_error *usi_read_file(const char *path, uint8_t **buf, size_t *cap, size_t *len)
{
    *len = 0;
    int fd;
    size_t size = 0;
    USI_TRY(open_regular(path, &fd, &size));
    usi_error *e = fit_buffer(buf, cap, size);
    if (!e) e = read_fully(fd, *buf, size, len);
    close(fd);
    return e;
}

usi_error *usi_read_image_file(const char *path, uint8_t **buf, size_t *cap, size_t *len)
{
    *len = 0;
    int fd;
    size_t size = 0, got = 0;
    uint8_t head[16];
    USI_TRY(open_regular(path, &fd, &size));
    usi_error *e = read_fully(fd, head, size < sizeof head ? size : sizeof head, &got);
    if (!e && !is_image(head, got)) e = not_an_image(head, got);
    if (!e) e = fit_buffer(buf, cap, size);
    if (!e) {
        memcpy(*buf, head, got);
        e = read_fully(fd, *buf + got, size - got, len);
        *len += got;
    }
    close(fd);
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
