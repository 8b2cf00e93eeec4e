/* Windows and OS/2 bitmaps, read as PIL's BmpImagePlugin reads them: the
 * 12-byte OS/2 header and the 40- to 124-byte Windows ones; 1-, 4- and
 * 8-bit palettes (an index past the palette is black, as in PIL), 16-bit
 * 5-5-5 and 5-6-5, 24-bit, 32-bit with its fourth byte ignored; BI_BITFIELDS
 * with the channel masks PIL knows; RLE8 and RLE4; bottom-up and top-down.
 * Anything else (JPEG or PNG inside a BMP, other masks, other depths) is
 * refused naming what it is, as PIL refuses it.
 * Two palettes PIL takes for grey misread its own pixels, and are decoded
 * through the palette here instead: a 4- or 8-bit image whose palette is
 * black and white only (PIL unpacks it as 1 bit per pixel) and a 4-bit
 * image whose 16 entries are grey levels 0 to 15 (PIL fails on it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/decode_formats.h"
#include "util/error.h"

enum { BMP_RGB = 0, BMP_RLE8 = 1, BMP_RLE4 = 2, BMP_BITFIELDS = 3 };

int usi_is_bmp(const uint8_t *b, size_t n) { return n >= 2 && b[0] == 'B' && b[1] == 'M'; }

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static unsigned le16(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }

typedef struct bmp_info {
    int64_t width, height;
    int top_down, bits;
    uint32_t compression, colors;
    size_t pixels_at, palette_at, palette_entry; /* palette_entry: 3 (OS/2) or 4 bytes */
    int byte_of[3];                              /* 32-bit: the byte holding R, G, B */
    int green_bits;                              /* 16-bit: 5 (5-5-5) or 6 (5-6-5) */
} bmp_info;

static usi_error *bmp_refuse(const char *what, unsigned long v)
{
    return usi_error_new(USI_ERR_INVALID, "BMP %s (%lu) is not supported; convert the file to PNG", what, v);
}

static usi_error *bmp_truncated(void)
{
    return usi_error_new(USI_ERR_INVALID, "truncated BMP: the file ends inside its header");
}

/* The 32-bit masks PIL accepts (BmpImagePlugin's SUPPORTED), each a whole
 * byte: the byte of each colour is where its mask sits; all four masks 0
 * reads as BGRA. */
static usi_error *bmp_masks(bmp_info *bi, uint32_t r, uint32_t g, uint32_t b, uint32_t a)
{
    static const uint32_t ok32[][4] = {
        {0xFF0000, 0xFF00, 0xFF, 0x0},           {0xFF000000, 0xFF0000, 0xFF00, 0x0},
        {0xFF000000, 0xFF00, 0xFF, 0x0},         {0xFF000000, 0xFF0000, 0xFF00, 0xFF},
        {0xFF, 0xFF00, 0xFF0000, 0xFF000000},    {0xFF0000, 0xFF00, 0xFF, 0xFF000000},
        {0xFF000000, 0xFF00, 0xFF, 0xFF0000},    {0x0, 0x0, 0x0, 0x0},
    };
    if (bi->bits == 32) {
        for (size_t i = 0; i < sizeof ok32 / sizeof *ok32; i++) {
            if (ok32[i][0] != r || ok32[i][1] != g || ok32[i][2] != b || ok32[i][3] != a) continue;
            if (!r) return NULL; /* BGRA, the default */
            const uint32_t m[3] = {r, g, b};
            for (int k = 0; k < 3; k++) bi->byte_of[k] = m[k] >> 24 ? 3 : m[k] >> 16 ? 2 : m[k] >> 8 ? 1 : 0;
            return NULL;
        }
    } else if (bi->bits == 24 && r == 0xFF0000 && g == 0xFF00 && b == 0xFF) {
        return NULL;
    } else if (bi->bits == 16 && r == 0xF800 && g == 0x7E0 && b == 0x1F) {
        bi->green_bits = 6;
        return NULL;
    } else if (bi->bits == 16 && r == 0x7C00 && g == 0x3E0 && b == 0x1F) {
        return NULL;
    }
    return usi_error_new(USI_ERR_INVALID, "BMP bit fields R %08x G %08x B %08x A %08x at %d bits per pixel are not "
                         "supported (PIL refuses them too); convert the file to PNG", r, g, b, a, bi->bits);
}

static usi_error *bmp_header(const uint8_t *buf, size_t len, bmp_info *bi)
{
    memset(bi, 0, sizeof *bi);
    if (len < 18) return bmp_truncated();
    bi->byte_of[0] = 2;
    bi->byte_of[1] = 1;
    bi->byte_of[2] = 0;
    bi->green_bits = 5;
    size_t offset = le32(buf + 10);
    uint32_t hsize = le32(buf + 14);
    const uint8_t *h = buf + 18; /* the header after its size field */
    if (hsize == 12) {
        if (len < 26) return bmp_truncated();
        bi->width = le16(h);
        bi->height = le16(h + 2);
        bi->bits = (int)le16(h + 6);
        bi->palette_entry = 3;
    } else if (hsize == 40 || hsize == 52 || hsize == 56 || hsize == 64 || hsize == 108 || hsize == 124) {
        if (len < 14 + (size_t)hsize) return bmp_truncated();
        bi->width = le32(h);
        bi->top_down = h[7] == 0xFF; /* a negative height, as PIL tells it */
        bi->height = bi->top_down ? ((int64_t)1 << 32) - le32(h + 4) : le32(h + 4);
        bi->bits = (int)le16(h + 10);
        bi->compression = le32(h + 12);
        bi->colors = le32(h + 28);
        bi->palette_entry = 4;
    } else {
        return bmp_refuse("header size", hsize);
    }
    size_t after = 14 + (size_t)hsize;
    if (bi->bits != 1 && bi->bits != 4 && bi->bits != 8 && bi->bits != 16 && bi->bits != 24 && bi->bits != 32)
        return bmp_refuse("pixel depth", (unsigned long)bi->bits);
    if (bi->compression == BMP_BITFIELDS) {
        uint32_t m[4] = {0};
        if (hsize >= 52) { /* masks inside the header, alpha from 56 bytes */
            for (int k = 0; k < (hsize >= 56 ? 4 : 3); k++) m[k] = le32(h + 36 + 4 * k);
        } else { /* a 40-byte header: three masks follow it */
            if (len < after + 12) return bmp_truncated();
            for (int k = 0; k < 3; k++) m[k] = le32(buf + after + 4 * (size_t)k);
            after += 12;
        }
        USI_TRY(bmp_masks(bi, m[0], m[1], m[2], m[3]));
    } else if (bi->compression == BMP_RLE8 || bi->compression == BMP_RLE4) {
        if (bi->bits != (bi->compression == BMP_RLE8 ? 8 : 4))
            return usi_error_new(USI_ERR_INVALID, "BMP: RLE%d compression at %d bits per pixel; the file is damaged",
                                 bi->compression == BMP_RLE8 ? 8 : 4, bi->bits);
    } else if (bi->compression != BMP_RGB) {
        static const char *const names[] = {"", "", "", "", "JPEG", "PNG", "alpha bit fields"};
        if (bi->compression < 7 && bi->compression > 3)
            return usi_error_new(USI_ERR_INVALID, "BMP compression %u (%s) is not supported (PIL refuses it too); "
                                 "convert the file to PNG", bi->compression, names[bi->compression]);
        return bmp_refuse("compression", bi->compression);
    }
    if (bi->bits <= 8) {
        if (!bi->colors) bi->colors = 1u << bi->bits;
        if (bi->colors > 65536) return bmp_refuse("palette size", bi->colors);
        bi->palette_at = after;
        /* PIL: a pixel offset pointing right after the header means the
         * palette's size was left out of it */
        if (offset == 14 + (size_t)hsize) offset += bi->palette_entry * bi->colors;
    }
    bi->pixels_at = offset;
    return NULL;
}

static size_t bmp_row_bytes(const bmp_info *bi) { return (((size_t)bi->width * (size_t)bi->bits + 31) >> 3) & ~(size_t)3; }

/* Palette entry i as RGB; past the palette (or the file) black, as PIL. */
static void bmp_palette(const uint8_t *buf, size_t len, const bmp_info *bi, uint8_t pal[256][3])
{
    memset(pal, 0, 256 * 3);
    for (size_t i = 0; i < 256 && i < bi->colors; i++) {
        size_t at = bi->palette_at + i * bi->palette_entry;
        if (at + 3 > len) break;
        pal[i][0] = buf[at + 2];
        pal[i][1] = buf[at + 1];
        pal[i][2] = buf[at];
    }
}

/* Row y of the image as stored (y 0 first in the file) goes to this row. */
static uint8_t *bmp_dst(const bmp_info *bi, usi_image *out, int64_t y)
{
    int64_t row = bi->top_down ? y : out->height - 1 - y;
    return out->data + (size_t)row * (size_t)out->stride;
}

static void bmp_raw(const uint8_t *src, const bmp_info *bi, const uint8_t pal[256][3], usi_image *out)
{
    size_t row_bytes = bmp_row_bytes(bi);
    for (int64_t y = 0; y < out->height; y++, src += row_bytes) {
        uint8_t *d = bmp_dst(bi, out, y);
        for (int64_t x = 0; x < out->width; x++, d += 3) {
            const uint8_t *p;
            unsigned v;
            switch (bi->bits) {
            case 1: memcpy(d, pal[(src[x >> 3] >> (7 - (x & 7))) & 1], 3); break;
            case 4: memcpy(d, pal[(src[x >> 1] >> (x & 1 ? 0 : 4)) & 15], 3); break;
            case 8: memcpy(d, pal[src[x]], 3); break;
            case 16: /* PIL's BGR;15 and BGR;16: v * 255 / max, rounded down */
                v = le16(src + 2 * x);
                if (bi->green_bits == 6) {
                    d[0] = (uint8_t)((v >> 11) * 255 / 31);
                    d[1] = (uint8_t)(((v >> 5) & 63) * 255 / 63);
                } else {
                    d[0] = (uint8_t)(((v >> 10) & 31) * 255 / 31);
                    d[1] = (uint8_t)(((v >> 5) & 31) * 255 / 31);
                }
                d[2] = (uint8_t)((v & 31) * 255 / 31);
                break;
            case 24:
                p = src + 3 * x;
                d[0] = p[2], d[1] = p[1], d[2] = p[0];
                break;
            default:
                p = src + 4 * x;
                d[0] = p[bi->byte_of[0]], d[1] = p[bi->byte_of[1]], d[2] = p[bi->byte_of[2]];
            }
        }
    }
}

/* RLE8/RLE4 as PIL's BmpRleDecoder reads it, into indices (0 where the
 * runs leave pixels out): runs are cut at the row's end, end of line pads
 * the row, a delta skips right + up * width pixels; ending before the last
 * pixel is an error, as PIL's "not enough image data". */
static usi_error *bmp_rle(const uint8_t *buf, size_t len, const bmp_info *bi, uint8_t *idx)
{
    size_t w = (size_t)bi->width, total = w * (size_t)bi->height, n = 0, x = 0;
    int rle4 = bi->compression == BMP_RLE4;
    const uint8_t *p = buf + bi->pixels_at, *end = buf + len;
    memset(idx, 0, total);
    while (n < total && end - p >= 2) {
        unsigned count = p[0], byte = p[1];
        p += 2;
        if (count) {
            size_t run = x + count > w ? (x < w ? w - x : 0) : count;
            if (run > total - n) run = total - n;
            for (size_t i = 0; i < run; i++) idx[n + i] = (uint8_t)(rle4 ? (i & 1 ? byte & 15 : byte >> 4) : byte);
            n += run;
            x += run;
        } else if (byte == 0) { /* end of line */
            n = (n + w - 1) / w * w;
            x = 0;
        } else if (byte == 1) { /* end of bitmap */
            break;
        } else if (byte == 2) { /* delta */
            if (end - p < 2) break;
            size_t skip = (size_t)p[0] + (size_t)p[1] * w;
            p += 2;
            n += skip < total - n ? skip : total - n;
            x = n % w;
        } else { /* absolute: byte pixels follow, padded to 16 bits */
            size_t want = byte < total - n ? byte : total - n;
            size_t bytes = rle4 ? (want + 1) / 2 : want, have = (size_t)(end - p) < bytes ? (size_t)(end - p) : bytes;
            for (size_t i = 0; i < (rle4 ? 2 * have : have) && i < want; i++)
                idx[n + i] = rle4 ? (uint8_t)(i & 1 ? p[i / 2] & 15 : p[i / 2] >> 4) : p[i];
            n += rle4 ? (2 * have < want ? 2 * have : want) : have;
            if (have < bytes || n == total) break;
            p += bytes;
            x += byte;
            if (((size_t)(p - buf) & 1) && p < end) p++; /* PIL aligns to the file's 16-bit words */
        }
    }
    if (n < total) return usi_error_new(USI_ERR_INVALID, "truncated BMP: its RLE data ends before the last pixel");
    return NULL;
}

usi_error *usi_decode_bmp(const uint8_t *buf, size_t len, usi_image *out, int32_t *w, int32_t *h)
{
    bmp_info bi;
    USI_TRY(bmp_header(buf, len, &bi));
    int rle = bi.compression == BMP_RLE8 || bi.compression == BMP_RLE4;
    USI_TRY(usi_decode_check_dims(bi.width, bi.height));
    if (bi.pixels_at > len)
        return usi_error_new(USI_ERR_INVALID, "truncated BMP: its pixels would start at byte %zu of %zu", bi.pixels_at, len);
    size_t have = len - bi.pixels_at;
    if (!rle && have / bmp_row_bytes(&bi) < (size_t)bi.height)
        return usi_error_new(USI_ERR_INVALID, "truncated BMP: its %lldx%lld pixels need %zu bytes, the file has %zu",
                             (long long)bi.width, (long long)bi.height, bmp_row_bytes(&bi) * (size_t)bi.height, have);
    /* RLE: a delta skips up to 255 rows in 4 bytes, so only the pixel limit holds */
    *w = (int32_t)bi.width;
    *h = (int32_t)bi.height;
    if (!out) return NULL;
    uint8_t pal[256][3];
    bmp_palette(buf, len, &bi, pal);
    if (!rle) {
        USI_TRY(usi_decode_alloc(out, *w, *h));
        bmp_raw(buf + bi.pixels_at, &bi, pal, out);
        return NULL;
    }
    size_t n = (size_t)bi.width * (size_t)bi.height;
    uint8_t *idx = malloc(n);
    if (!idx) return usi_error_new(USI_ERR_NOMEM, "BMP: out of memory");
    usi_error *e = bmp_rle(buf, len, &bi, idx);
    if (!e) e = usi_decode_alloc(out, *w, *h);
    for (int64_t y = 0; !e && y < bi.height; y++) {
        uint8_t *d = bmp_dst(&bi, out, y);
        for (int64_t x = 0; x < bi.width; x++) memcpy(d + 3 * x, pal[idx[(size_t)y * (size_t)bi.width + (size_t)x]], 3);
    }
    free(idx);
    return e;
}
