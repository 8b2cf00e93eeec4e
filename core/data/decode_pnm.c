/* Netpbm images: PBM, PGM and PPM (P1-P6), binary and plain (ASCII), with
 * the values PIL gives them. A maxval other than 255 is scaled as PIL's
 * PpmDecoder scales 16-bit PPMs: round(v / maxval * 255) (Python's round,
 * halves to even), clipped to 255. PIL reads a grey PGM with maxval > 255
 * as mode I and clips that to 255 in convert("RGB") (nearly every pixel
 * white); it is scaled here as its colour PPMs are, as 16-bit grey PNGs
 * keep their high byte (decode.h). */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "data/decode_formats.h"
#include "util/error.h"

/* PIL's whitespace in these headers: space, \t \n \v \f \r. */
static int pnm_space(uint8_t c) { return c == ' ' || (c >= 9 && c <= 13); }

int usi_is_pnm(const uint8_t *b, size_t n)
{
    return n >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6' && pnm_space(b[2]);
}

static usi_error *pnm_error(const char *what) { return usi_error_new(USI_ERR_INVALID, "Netpbm (PPM/PGM/PBM) %s", what); }

/* The next header token from *pos, as PIL's PpmImageFile._read_token reads
 * it: whitespace skipped, '#' comments up to a line end skipped (even
 * inside a token), at most 10 characters, ended by one whitespace byte,
 * which is consumed. */
static usi_error *pnm_token(const uint8_t *b, size_t n, size_t *pos, long *value)
{
    char tok[12];
    size_t k = 0;
    while (*pos < n) {
        uint8_t c = b[(*pos)++];
        if (pnm_space(c)) {
            if (!k) continue;
            break;
        }
        if (c == '#') {
            while (*pos < n && b[*pos] != '\r' && b[*pos] != '\n') (*pos)++;
            if (*pos < n) (*pos)++;
            continue;
        }
        if (c < '0' || c > '9') return pnm_error("header: a size or maxval is not a number; the file is damaged");
        if (k == 10) return pnm_error("header: a number is over 10 digits; the file is damaged");
        tok[k++] = (char)c;
    }
    if (!k) return pnm_error("header: the file ends inside its header; it is truncated");
    tok[k] = 0;
    *value = strtol(tok, NULL, 10);
    return NULL;
}

/* round(v / maxval * 255) with Python's float arithmetic and rounding,
 * clipped to 255 (a binary sample may exceed maxval). */
static uint8_t pnm_scale(unsigned v, unsigned maxval)
{
    if (maxval == 255) return (uint8_t)v;
    double s = nearbyint((double)v / (double)maxval * 255.0);
    return (uint8_t)(s > 255.0 ? 255 : s);
}

/* Plain (ASCII) samples, as PIL's PpmPlainDecoder reads them: comments are
 * dropped, tokens split at whitespace; a token over 10 characters, a
 * value over maxval or too few values is an error. P1's tokens are single
 * '0'/'1' characters, whitespace between them optional. */
static usi_error *pnm_plain(const uint8_t *b, size_t n, size_t pos, int kind, unsigned maxval, usi_image *out)
{
    int bands = kind == '3' ? 3 : 1;
    size_t need = (size_t)out->width * (size_t)out->height * (size_t)bands, got = 0;
    uint8_t *row = out->data;
    size_t in_row = 0;
    while (got < need) {
        while (pos < n && (pnm_space(b[pos]) || b[pos] == '#')) {
            if (b[pos] == '#')
                while (pos < n && b[pos] != '\n' && b[pos] != '\r') pos++;
            else
                pos++;
        }
        if (pos >= n) break;
        unsigned v;
        if (kind == '1') {
            if (b[pos] != '0' && b[pos] != '1') return pnm_error("plain bitmap (P1): a value other than 0 or 1");
            v = b[pos++] == '0' ? 255 : 0;
        } else {
            unsigned long t = 0;
            int digits = 0;
            while (pos < n && !pnm_space(b[pos]) && b[pos] != '#') {
                if (b[pos] < '0' || b[pos] > '9') return pnm_error("plain data: a value is not a number");
                if (++digits > 10) return pnm_error("plain data: a value is over 10 characters long");
                t = t * 10 + (unsigned long)(b[pos++] - '0');
            }
            if (t > maxval) return pnm_error("plain data: a value is over the header's maxval");
            v = pnm_scale((unsigned)t, maxval);
        }
        if (bands == 3) {
            row[in_row++] = (uint8_t)v;
        } else {
            memset(row + 3 * in_row, (int)v, 3);
            in_row++;
        }
        got++;
        if (in_row == (size_t)out->width * (size_t)bands) {
            row += out->stride;
            in_row = 0;
        }
    }
    if (got < need) return pnm_error("plain data: fewer values than the header's size; the file is truncated");
    return NULL;
}

/* Binary samples: P4's packed bits (1 is black), P5/P6's bytes, or 16-bit
 * big-endian words when maxval > 255. */
static void pnm_binary(const uint8_t *p, int kind, unsigned maxval, usi_image *out)
{
    int bands = kind == '6' ? 3 : 1, wide = maxval > 255;
    uint8_t lut[256];
    for (unsigned v = 0; v < 256 && !wide; v++) lut[v] = pnm_scale(v, maxval);
    for (int32_t y = 0; y < out->height; y++) {
        uint8_t *dst = out->data + (size_t)y * (size_t)out->stride;
        if (kind == '4') {
            for (int32_t x = 0; x < out->width; x++) memset(dst + 3 * x, (p[x >> 3] >> (7 - (x & 7))) & 1 ? 0 : 255, 3);
            p += ((size_t)out->width + 7) / 8;
            continue;
        }
        size_t step = (size_t)bands * (wide ? 2u : 1u);
        for (int32_t x = 0; x < out->width; x++)
            for (int k = 0; k < 3; k++) {
                const uint8_t *s = p + (size_t)x * step + (size_t)(bands == 3 ? k : 0) * (wide ? 2u : 1u);
                dst[3 * x + k] = wide ? pnm_scale((unsigned)(s[0] << 8 | s[1]), maxval) : lut[s[0]];
            }
        p += (size_t)out->width * step;
    }
}

usi_error *usi_decode_pnm(const uint8_t *buf, size_t len, usi_image *out, int32_t *w, int32_t *h)
{
    int kind = buf[1];
    size_t pos = 2;
    long width = 0, height = 0, maxval = 1;
    USI_TRY(pnm_token(buf, len, &pos, &width));
    USI_TRY(pnm_token(buf, len, &pos, &height));
    if (kind != '1' && kind != '4') {
        USI_TRY(pnm_token(buf, len, &pos, &maxval));
        if (maxval < 1 || maxval > 65535)
            return pnm_error("header: maxval must be 1 to 65535; the file is damaged");
    }
    USI_TRY(usi_decode_check_dims(width, height));
    int bands = kind == '3' || kind == '6' ? 3 : 1;
    int binary = kind >= '4';
    size_t data = len - pos, need;
    if (kind == '4')
        need = ((size_t)width + 7) / 8 * (size_t)height;
    else
        need = (size_t)width * (size_t)height * (size_t)bands * (maxval > 255 ? 2u : 1u);
    if (binary && data < need)
        return usi_error_new(USI_ERR_INVALID, "truncated Netpbm (P%c) file: its %ldx%ld pixels need %zu bytes after "
                             "the header, it has %zu", kind, width, height, need, data);
    /* a plain file spends at least a character on each value */
    if (!binary) USI_TRY(usi_decode_check_size(width, height, data, bands, "a plain Netpbm file takes a character per value"));
    *w = (int32_t)width;
    *h = (int32_t)height;
    if (!out) return NULL;
    USI_TRY(usi_decode_alloc(out, *w, *h));
    if (binary) {
        pnm_binary(buf + pos, kind, (unsigned)maxval, out);
        return NULL;
    }
    return pnm_plain(buf, len, pos, kind, (unsigned)maxval, out);
}
