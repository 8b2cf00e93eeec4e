/* Image files to 8-bit RGB: JPEG through TurboJPEG, PNG through libspng,
 * WebP through libwebp, TIFF through libtiff, BMP and PPM/PGM/PBM by our
 * own readers (decode_formats.h; a file per family). The format comes from
 * the bytes, not the file name. Grey, palette, 16-bit and alpha images all
 * come out as 3-channel RGB (alpha dropped), with the values PIL's
 * Image.open(f).convert("RGB") gives (so torchvision's), with one
 * exception: 16-bit grey (a PNG, PGM or TIFF PIL opens as mode I;16 or I)
 * is scaled to 8 bits here (a PNG or TIFF keeps each sample's high byte, a
 * PGM is scaled as PIL scales 16-bit PPMs), where PIL clips the 16-bit
 * value to 255 and makes nearly every pixel white. 16-bit RGB keeps the
 * high byte in both. 4-channel JPEGs (CMYK, YCCK) are read as Adobe's
 * inverted CMYK and converted with PIL's formula, to the bit. A multi-page
 * TIFF or an animated WebP gives its first page or frame, as PIL's
 * Image.open does. What PIL cannot read, or usi does not (float TIFF,
 * BMP with unusual bit masks or JPEG inside...), is refused naming it.
 *
 * Limits: an image over 2^26 pixels (67.1 megapixels) or with a side over
 * 65535 pixels is refused, and so is a header claiming more pixels than the
 * file's bytes could encode (USI_DECODE_MAX_RATIO below, and for the other
 * formats in their files: an uncompressed BMP, PPM or TIFF must hold all
 * its pixels); both are checked before any pixel memory is allocated.
 * WebP, RLE-compressed BMP and compressed TIFF can code a flat image in
 * next to nothing, so only the pixel limit holds for them. */
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

/* Read a whole regular file into *buf (*cap holds its capacity between
 * calls). Errors say why: missing, not a file, empty, I/O. A FIFO, device or
 * socket is refused without waiting on it. A buffer grown past
 * USI_READ_KEEP_BYTES for one large file is given back when a smaller file
 * is read next, so a caller that keeps *buf for many files (a loader
 * worker) holds that much only while such a file is in use. */
usi_error *usi_read_file(const char *path, uint8_t **buf, size_t *cap,
                         size_t *len);

/* usi_read_file for a file meant to be decoded: its first bytes are read
 * first, and a file that does not start as one of the formats above (JPEG
 * FF D8 FF, PNG 89 50 4E 47 0D 0A 1A 0A, BMP "BM", "P1" to "P6", "RIFF"
 * then "WEBP", TIFF "II*" or "MM*") is refused, naming those bytes, before
 * the rest is read or any memory for it allocated. */
usi_error *usi_read_image_file(const char *path, uint8_t **buf, size_t *cap,
                               size_t *len);

#define USI_READ_KEEP_BYTES ((size_t)64 << 20)

/* Write an 8-bit grey or RGB image as PNG (atomically: temp file + rename). */
usi_error *usi_png_write(const char *path, const usi_image *img);

/* The most pixels a decoded image may have (2^26, 67.1 megapixels) and the
 * longest side. */
#define USI_DECODE_MAX_PIXELS ((int64_t)1 << 26)
#define USI_DECODE_MAX_SIDE 65535
/* The most decoded bytes per byte of file a header may claim, so that a few
 * corrupt bytes can't ask for hundreds of megabytes. A PNG: its packed
 * pixel bits at most 1032 times the file (deflate's own limit: 258 bytes
 * from 2 bits). A Huffman-coded JPEG: 3 bytes of RGB per pixel at most 4096
 * times the file (plus 1 MiB); a conforming one spends at least a bit on
 * each 8x8 block, 1536 at most. An arithmetic-coded JPEG has no such bound
 * (a flat 8000x8000 image takes 125 bytes), so only the pixel limit holds
 * for it. */
#define USI_DECODE_PNG_MAX_RATIO 1032
#define USI_DECODE_MAX_RATIO 4096

#endif
