/* The decoders of decode.c's less common formats, one file per family
 * (decode_bmp.c, decode_pnm.c, decode_webp.c, decode_tiff.c), and the
 * limits they all share. Each reads its header, checks it with
 * usi_decode_check_size before allocating any pixel memory, and fills out
 * with 8-bit RGB; out NULL reads the header only (usi_decode_size). */
#ifndef USI_DATA_DECODE_FORMATS_H
#define USI_DATA_DECODE_FORMATS_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

/* The side and pixel limits of decode.h, whatever the file's size. */
usi_error *usi_decode_check_dims(int64_t w, int64_t h);

/* usi_decode_check_dims, and for a format whose pixels take at least
 * min_bytes (a fraction for packed or compressed data) of the file each: a
 * header claiming more pixels than len bytes could hold is refused as
 * damaged; why says what bound it broke. min_bytes 0: the format has no
 * such bound (only the pixel limit holds). */
usi_error *usi_decode_check_size(int64_t w, int64_t h, size_t len, double min_bytes, const char *why);

/* out (w x h x 3) allocated as image_alloc does, after the checks above. */
usi_error *usi_decode_alloc(usi_image *out, int32_t w, int32_t h);

int usi_is_bmp(const uint8_t *b, size_t n);
int usi_is_pnm(const uint8_t *b, size_t n);
int usi_is_webp(const uint8_t *b, size_t n);
int usi_is_tiff(const uint8_t *b, size_t n);

usi_error *usi_decode_bmp(const uint8_t *buf, size_t len, usi_image *out, int32_t *w, int32_t *h);
usi_error *usi_decode_pnm(const uint8_t *buf, size_t len, usi_image *out, int32_t *w, int32_t *h);
usi_error *usi_decode_webp(const uint8_t *buf, size_t len, usi_image *out, int32_t *w, int32_t *h);
usi_error *usi_decode_tiff(const uint8_t *buf, size_t len, usi_image *out, int32_t *w, int32_t *h);

#endif
