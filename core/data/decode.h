/* Image files to 8-bit RGB: JPEG through TurboJPEG, PNG through libspng.
 * The format comes from the bytes, not the file name. Grey, palette, 16-bit
 * and alpha images all come out as 3-channel RGB (alpha dropped, as PIL's
 * convert("RGB")). */
#ifndef USI_DATA_DECODE_H
#define USI_DATA_DECODE_H

#include <stddef.h>
#include <stdint.h>
#include <usi/plugin.h>

/* Per-thread decoding state (TurboJPEG handle and scratch). */
typedef struct usi_decoder usi_decoder;

usi_error *usi_decoder_new(usi_decoder **out);
void usi_decoder_free(usi_decoder *d);

/* Decode buf into out (reallocated as image_alloc does; free out->data with
 * free()). min_side > 0 lets a JPEG decode at a reduced DCT scale (1/2, 1/4,
 * 1/8, ...) as long as both scaled sides stay >= min_side. */
usi_error *usi_decode_image(usi_decoder *d, const uint8_t *buf, size_t len,
                            int32_t min_side, usi_image *out);

/* What the last usi_decode_image on d found wrong but decoded anyway (a
 * PNG whose IDAT CRC is wrong while its data is intact: accepted, as PIL
 * accepts it), or NULL. Valid until d's next decode. */
const char *usi_decoder_note(const usi_decoder *d);

/* Width and height from the header only. */
usi_error *usi_decode_size(usi_decoder *d, const uint8_t *buf, size_t len,
                           int32_t *width, int32_t *height);

/* Read a whole regular file into *buf (grown with realloc; *cap holds its
 * capacity between calls). Errors say why: missing, not a file, empty, I/O.
 * A FIFO, device or socket is refused without waiting on it. */
usi_error *usi_read_file(const char *path, uint8_t **buf, size_t *cap,
                         size_t *len);

/* Write an 8-bit grey or RGB image as PNG (atomically: temp file + rename). */
usi_error *usi_png_write(const char *path, const usi_image *img);

/* The most pixels a decoded image may have (2^26, 67.1 MP), and the most
 * decoded bytes per byte of file: a header claiming more is rejected before
 * any allocation, so a few corrupt bytes can't ask for gigabytes. */
#define USI_DECODE_MAX_PIXELS ((int64_t)1 << 26)
#define USI_DECODE_MAX_RATIO 4096

#endif
