/* WebP through libwebp: lossy, lossless, with or without alpha (dropped, as
 * PIL's convert("RGB") drops it), and of an animation its first frame on a
 * transparent black canvas, as PIL shows it (through the same libwebp
 * animation decoder). Neither kind of coding bounds the pixels a byte can
 * hold (a flat lossless image codes each pixel in zero bits), so only the
 * pixel limit holds for WebP. */
#include <string.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include "data/decode_formats.h"
#include "util/error.h"

int usi_is_webp(const uint8_t *b, size_t n) { return n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4); }

static usi_error *webp_error(const char *what, VP8StatusCode rc)
{
    static const char *const why[] = {"ok", "out of memory", "invalid parameter", "damaged data",
                                      "a feature libwebp does not support", "suspended", "user abort",
                                      "the file is truncated"};
    const char *w = rc >= 0 && rc < (int)(sizeof why / sizeof *why) ? why[rc] : "unknown error";
    return usi_error_new(rc == VP8_STATUS_OUT_OF_MEMORY ? USI_ERR_NOMEM : USI_ERR_INVALID, "WebP %s: %s", what, w);
}

/* The first frame of an animation, from libwebp's animation decoder. */
static usi_error *webp_first_frame(const uint8_t *buf, size_t len, usi_image *out)
{
    WebPAnimDecoderOptions opt;
    if (!WebPAnimDecoderOptionsInit(&opt)) return usi_error_new(USI_ERR_INTERNAL, "WebP: libwebp version mismatch");
    opt.color_mode = MODE_RGBA;
    opt.use_threads = 0;
    WebPData data = {buf, len};
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&data, &opt);
    if (!dec) return usi_error_new(USI_ERR_INVALID, "WebP animation: damaged or truncated file");
    WebPAnimInfo info;
    uint8_t *rgba = NULL;
    int ts = 0;
    usi_error *e = NULL;
    if (!WebPAnimDecoderGetInfo(dec, &info) || (int64_t)info.canvas_width != out->width ||
        (int64_t)info.canvas_height != out->height)
        e = usi_error_new(USI_ERR_INVALID, "WebP animation: its canvas size disagrees with its header");
    else if (!WebPAnimDecoderGetNext(dec, &rgba, &ts))
        e = usi_error_new(USI_ERR_INVALID, "WebP animation: its first frame cannot be decoded (damaged or truncated)");
    for (int32_t y = 0; !e && y < out->height; y++) {
        const uint8_t *s = rgba + (size_t)y * (size_t)out->width * 4;
        uint8_t *d = out->data + (size_t)y * (size_t)out->stride;
        for (int32_t x = 0; x < out->width; x++) memcpy(d + 3 * x, s + 4 * x, 3);
    }
    WebPAnimDecoderDelete(dec);
    return e;
}

usi_error *usi_decode_webp(const uint8_t *buf, size_t len, usi_image *out, int32_t *w, int32_t *h)
{
    WebPBitstreamFeatures f;
    VP8StatusCode rc = WebPGetFeatures(buf, len, &f);
    if (rc != VP8_STATUS_OK) return webp_error("header", rc);
    USI_TRY(usi_decode_check_size(f.width, f.height, len, 0, NULL));
    *w = f.width;
    *h = f.height;
    if (!out) return NULL;
    USI_TRY(usi_decode_alloc(out, *w, *h));
    if (f.has_animation) return webp_first_frame(buf, len, out);
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg)) return usi_error_new(USI_ERR_INTERNAL, "WebP: libwebp version mismatch");
    cfg.output.colorspace = MODE_RGB;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = out->data;
    cfg.output.u.RGBA.stride = out->stride;
    cfg.output.u.RGBA.size = (size_t)out->stride * (size_t)out->height;
    rc = WebPDecode(buf, len, &cfg);
    WebPFreeDecBuffer(&cfg.output);
    return rc == VP8_STATUS_OK ? NULL : webp_error("data", rc);
}
