/* TIFF through libtiff, its first page (as PIL's Image.open shows it),
 * with PIL's values: 8-bit grey (min-is-black or min-is-white), 1-bit
 * bilevel, 1/2/4/8-bit palettes (each entry's high byte), RGB with or
 * without an alpha sample (dropped; an associated, premultiplied alpha is
 * first divided out as PIL's RGBa unpacker does), 8-bit CMYK (PIL's
 * CMYK-to-RGB formula) and YCbCr (libtiff's conversion to RGB, which for
 * JPEG-compressed files is libjpeg's, as in PIL). 16-bit samples keep their
 * high byte; PIL does that for RGB and clips 16-bit grey to 255 instead (as
 * for 16-bit grey PNGs, decode.h). Float, signed and 32-bit samples and
 * separate colour planes are refused, naming what the file holds.
 * An uncompressed file must hold all its pixels; for a compressed one only
 * the pixel limit holds (CCITT fax codes a blank row in a bit). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

#include "data/decode.h"
#include "data/decode_formats.h"
#include "util/error.h"

int usi_is_tiff(const uint8_t *b, size_t n)
{
    return n >= 4 && ((b[0] == 'I' && b[1] == 'I' && (b[2] == 42 || b[2] == 43) && b[3] == 0) ||
                      (b[0] == 'M' && b[1] == 'M' && b[2] == 0 && (b[3] == 42 || b[3] == 43)));
}

/* The file in memory, for libtiff's client procedures, and its first
 * error message. */
typedef struct tiff_mem {
    const uint8_t *buf;
    size_t len, pos;
    char error[200];
} tiff_mem;

static tmsize_t mem_read(thandle_t h, void *dst, tmsize_t n)
{
    tiff_mem *m = (tiff_mem *)h;
    size_t left = m->len - m->pos, k = (size_t)n < left ? (size_t)n : left;
    memcpy(dst, m->buf + m->pos, k);
    m->pos += k;
    return (tmsize_t)k;
}

static tmsize_t mem_write(thandle_t h, void *src, tmsize_t n)
{
    (void)h, (void)src, (void)n;
    return -1;
}

static toff_t mem_seek(thandle_t h, toff_t off, int whence)
{
    tiff_mem *m = (tiff_mem *)h;
    uint64_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->len : 0;
    if (off > UINT64_MAX - base || base + off > m->len) return (toff_t)-1;
    m->pos = (size_t)(base + off);
    return m->pos;
}

static int mem_close(thandle_t h) { (void)h; return 0; }
static toff_t mem_size(thandle_t h) { return ((tiff_mem *)h)->len; }

static int mem_error(TIFF *t, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)t, (void)module;
    tiff_mem *m = user;
    if (!m->error[0]) vsnprintf(m->error, sizeof m->error, fmt, ap);
    return 1;
}

static int mem_warning(TIFF *t, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)t, (void)user, (void)module, (void)fmt, (void)ap;
    return 1; /* warnings (unknown tags...) are not worth a line per image */
}

static usi_error *tiff_error(const tiff_mem *m, const char *what)
{
    return usi_error_new(USI_ERR_INVALID, "TIFF %s: %s", what, m->error[0] ? m->error : "damaged or truncated file");
}

static usi_error *tiff_refuse(const char *what)
{
    return usi_error_new(USI_ERR_INVALID, "TIFF with %s is not supported; convert the file to PNG", what);
}

/* What the first page holds, from its tags. */
typedef struct tiff_page {
    uint32_t w, h;
    uint16_t bits, spp, photometric, planar, format, compression, alpha; /* alpha: EXTRASAMPLE_* of sample 4 */
    uint16_t *cmap[3];
} tiff_page;

static usi_error *tiff_page_read(TIFF *t, const tiff_mem *m, tiff_page *p)
{
    memset(p, 0, sizeof *p);
    if (!TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &p->w) || !TIFFGetField(t, TIFFTAG_IMAGELENGTH, &p->h))
        return tiff_error(m, "header");
    TIFFGetFieldDefaulted(t, TIFFTAG_BITSPERSAMPLE, &p->bits);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &p->spp);
    TIFFGetFieldDefaulted(t, TIFFTAG_PLANARCONFIG, &p->planar);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLEFORMAT, &p->format);
    TIFFGetFieldDefaulted(t, TIFFTAG_COMPRESSION, &p->compression);
    if (!TIFFGetField(t, TIFFTAG_PHOTOMETRIC, &p->photometric))
        return usi_error_new(USI_ERR_INVALID, "TIFF header: no photometric interpretation tag; the file is damaged");
    uint16_t n_extra = 0, *extra = NULL;
    if (TIFFGetField(t, TIFFTAG_EXTRASAMPLES, &n_extra, &extra) && n_extra) p->alpha = extra[0];
    if (p->format != SAMPLEFORMAT_UINT)
        return tiff_refuse(p->format == SAMPLEFORMAT_IEEEFP ? "floating-point samples" : "signed samples");
    if (p->bits != 1 && p->bits != 2 && p->bits != 4 && p->bits != 8 && p->bits != 16) {
        char what[64];
        snprintf(what, sizeof what, "%u-bit samples", p->bits);
        return tiff_refuse(what);
    }
    if (p->planar != PLANARCONFIG_CONTIG && p->spp > 1) return tiff_refuse("separate colour planes");
    switch (p->photometric) {
    case PHOTOMETRIC_MINISBLACK:
    case PHOTOMETRIC_MINISWHITE:
        if (p->spp > 2 || (p->bits != 1 && p->bits != 8 && p->bits != 16)) return tiff_refuse("this grey layout");
        return NULL;
    case PHOTOMETRIC_PALETTE:
        if (p->spp != 1 || p->bits > 8 || !TIFFGetField(t, TIFFTAG_COLORMAP, &p->cmap[0], &p->cmap[1], &p->cmap[2]))
            return tiff_refuse("a palette of this layout");
        return NULL;
    case PHOTOMETRIC_RGB:
        if (p->spp < 3 || p->spp > 4 || p->bits < 8) return tiff_refuse("this RGB layout");
        return NULL;
    case PHOTOMETRIC_SEPARATED: {
        uint16_t inks = INKSET_CMYK;
        TIFFGetFieldDefaulted(t, TIFFTAG_INKSET, &inks);
        if (p->spp != 4 || p->bits != 8 || inks != INKSET_CMYK) return tiff_refuse("separated inks other than 8-bit CMYK");
        return NULL;
    }
    case PHOTOMETRIC_YCBCR:
        if (p->bits != 8 || p->spp != 3) return tiff_refuse("this YCbCr layout");
        return NULL;
    default: {
        char what[64];
        snprintf(what, sizeof what, "photometric interpretation %u", p->photometric);
        return tiff_refuse(what);
    }
    }
}

static unsigned div255_round(unsigned x)
{
    x += 128;
    return (x + (x >> 8)) >> 8;
}

/* Sample i of a row at the page's depth, as 8 bits: the high byte of a
 * 16-bit one (in the host's order: libtiff swaps), the raw value of a
 * packed one (palette index, or 0/1). */
static unsigned sample(const uint8_t *row, const tiff_page *p, size_t i)
{
    switch (p->bits) {
    case 16: return ((const uint16_t *)(const void *)row)[i] >> 8;
    case 8: return row[i];
    default: {
        size_t bit = i * p->bits;
        return (row[bit >> 3] >> (8 - p->bits - (bit & 7))) & ((1u << p->bits) - 1);
    }
    }
}

/* One decoded row (contiguous samples) to RGB. */
static void tiff_row(const uint8_t *row, const tiff_page *p, uint8_t *d)
{
    for (uint32_t x = 0; x < p->w; x++, d += 3) {
        size_t i = (size_t)x * p->spp;
        unsigned v, a;
        switch (p->photometric) {
        case PHOTOMETRIC_MINISBLACK:
        case PHOTOMETRIC_MINISWHITE:
            v = sample(row, p, i);
            if (p->bits == 1) v = v ? 255 : 0;
            if (p->photometric == PHOTOMETRIC_MINISWHITE) v = 255 - v;
            d[0] = d[1] = d[2] = (uint8_t)v;
            break;
        case PHOTOMETRIC_PALETTE:
            v = sample(row, p, i);
            for (int k = 0; k < 3; k++) d[k] = (uint8_t)(p->cmap[k][v] >> 8);
            break;
        case PHOTOMETRIC_SEPARATED: /* PIL: R = (255 - K) - round(C * (255 - K) / 255) */
            a = 255 - row[i + 3];
            for (int k = 0; k < 3; k++) d[k] = (uint8_t)(a - div255_round(row[i + (size_t)k] * a));
            break;
        default: /* RGB */
            for (int k = 0; k < 3; k++) d[k] = (uint8_t)sample(row, p, i + (size_t)k);
            if (p->spp == 4 && p->alpha == EXTRASAMPLE_ASSOCALPHA) {
                /* PIL's RGBa unpacker: v * 255 / a, rounded down, clipped */
                a = sample(row, p, i + 3);
                for (int k = 0; k < 3; k++) {
                    v = a ? d[k] * 255u / a : 0;
                    d[k] = (uint8_t)(v > 255 ? 255 : v);
                }
            }
        }
    }
}

/* YCbCr, through libtiff's RGBA interface (which has libjpeg convert a
 * JPEG-compressed page, as PIL has it do). */
static usi_error *tiff_ycbcr(TIFF *t, const tiff_mem *m, usi_image *out)
{
    size_t n = (size_t)out->width * (size_t)out->height;
    uint32_t *rgba = malloc(n * 4);
    if (!rgba) return usi_error_new(USI_ERR_NOMEM, "TIFF: out of memory");
    usi_error *e = NULL;
    if (!TIFFReadRGBAImageOriented(t, (uint32_t)out->width, (uint32_t)out->height, rgba, ORIENTATION_TOPLEFT, 1))
        e = tiff_error(m, "data");
    for (int32_t y = 0; !e && y < out->height; y++)
        for (int32_t x = 0; x < out->width; x++) {
            uint32_t v = rgba[(size_t)y * (size_t)out->width + (size_t)x];
            uint8_t *d = out->data + (size_t)y * (size_t)out->stride + 3 * (size_t)x;
            d[0] = (uint8_t)TIFFGetR(v), d[1] = (uint8_t)TIFFGetG(v), d[2] = (uint8_t)TIFFGetB(v);
        }
    free(rgba);
    return e;
}

/* Strips row by row; tiles a band of rows at a time. */
static usi_error *tiff_pixels(TIFF *t, const tiff_mem *m, const tiff_page *p, usi_image *out)
{
    size_t row_bytes = ((size_t)p->w * p->spp * p->bits + 7) / 8;
    if (!TIFFIsTiled(t)) {
        uint8_t *row = malloc((size_t)TIFFScanlineSize64(t) > row_bytes ? (size_t)TIFFScanlineSize64(t) : row_bytes);
        if (!row) return usi_error_new(USI_ERR_NOMEM, "TIFF: out of memory");
        usi_error *e = NULL;
        for (uint32_t y = 0; !e && y < p->h; y++) {
            if (TIFFReadScanline(t, row, y, 0) < 0)
                e = tiff_error(m, "data");
            else
                tiff_row(row, p, out->data + (size_t)y * (size_t)out->stride);
        }
        free(row);
        return e;
    }
    uint32_t tw = 0, th = 0;
    TIFFGetField(t, TIFFTAG_TILEWIDTH, &tw);
    TIFFGetField(t, TIFFTAG_TILELENGTH, &th);
    size_t tile_size = (size_t)TIFFTileSize64(t), tile_row = ((size_t)tw * p->spp * p->bits + 7) / 8;
    if (!tw || !th || tile_size < tile_row * th || tw % 8)
        return usi_error_new(USI_ERR_INVALID, "TIFF header: tiles of %ux%u; the file is damaged", tw, th);
    size_t band_row = ((size_t)(p->w + tw - 1) / tw) * tile_row;
    uint8_t *tile = malloc(tile_size), *band = malloc(band_row * th);
    usi_error *e = !tile || !band ? usi_error_new(USI_ERR_NOMEM, "TIFF: out of memory") : NULL;
    for (uint32_t y0 = 0; !e && y0 < p->h; y0 += th) {
        for (uint32_t x0 = 0; !e && x0 < p->w; x0 += tw) {
            if (TIFFReadTile(t, tile, x0, y0, 0, 0) < 0) {
                e = tiff_error(m, "data");
                break;
            }
            for (uint32_t r = 0; r < th; r++) memcpy(band + r * band_row + (x0 / tw) * tile_row, tile + r * tile_row, tile_row);
        }
        for (uint32_t r = 0; !e && r < th && y0 + r < p->h; r++)
            tiff_row(band + r * band_row, p, out->data + (size_t)(y0 + r) * (size_t)out->stride);
    }
    free(tile);
    free(band);
    return e;
}

usi_error *usi_decode_tiff(const uint8_t *buf, size_t len, usi_image *out, int32_t *w, int32_t *h)
{
    tiff_mem m = {buf, len, 0, {0}};
    TIFFOpenOptions *opt = TIFFOpenOptionsAlloc();
    if (!opt) return usi_error_new(USI_ERR_NOMEM, "TIFF: out of memory");
    TIFFOpenOptionsSetErrorHandlerExtR(opt, mem_error, &m);
    TIFFOpenOptionsSetWarningHandlerExtR(opt, mem_warning, &m);
    /* no single allocation over what the largest image allowed needs */
    TIFFOpenOptionsSetMaxSingleMemAlloc(opt, (tmsize_t)(USI_DECODE_MAX_PIXELS * 8));
    TIFF *t = TIFFClientOpenExt("image", "rm", (thandle_t)&m, mem_read, mem_write, mem_seek, mem_close, mem_size,
                                NULL, NULL, opt);
    TIFFOpenOptionsFree(opt);
    if (!t) return tiff_error(&m, "header");
    tiff_page p;
    usi_error *e = tiff_page_read(t, &m, &p);
    if (!e) e = usi_decode_check_dims(p.w, p.h);
    /* uncompressed: the pixels must be in the file */
    if (!e && p.compression == COMPRESSION_NONE)
        e = usi_decode_check_size(p.w, p.h, len, (double)p.spp * p.bits / 8.0, "uncompressed TIFF samples");
    if (!e) {
        *w = (int32_t)p.w;
        *h = (int32_t)p.h;
    }
    if (!e && out) e = usi_decode_alloc(out, *w, *h);
    if (!e && out) e = p.photometric == PHOTOMETRIC_YCBCR ? tiff_ycbcr(t, &m, out) : tiff_pixels(t, &m, &p, out);
    TIFFClose(t);
    return e;
}
