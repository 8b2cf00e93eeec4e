/* Helpers shared by the augmentation plugins. Compiled into each plugin that
 * needs them (plugins link nothing of the core), hidden by -fvisibility. */
#ifndef USI_AUGCOMMON_H
#define USI_AUGCOMMON_H

#include <stdint.h>
#include <usi/plugin.h>

/* Set in each plugin's entry point; every service goes through it. */
extern const usi_host_api *aug_host;

/* A schema row; min > max means "no range". */
#define AUG_P_INT(n, d, lo, hi, doc) \
    {sizeof(usi_param_desc), n, USI_PARAM_INT, 0, doc, d, 0, NULL, lo, hi, NULL}
#define AUG_P_FLOAT(n, d, lo, hi, doc) \
    {sizeof(usi_param_desc), n, USI_PARAM_FLOAT, 0, doc, 0, d, NULL, lo, hi, NULL}
#define AUG_P_BOOL(n, d, doc) \
    {sizeof(usi_param_desc), n, USI_PARAM_BOOL, 0, doc, d, 0, NULL, 1, 0, NULL}
#define AUG_P_STRING(n, d, choices, doc) \
    {sizeof(usi_param_desc), n, USI_PARAM_STRING, 0, doc, 0, 0, d, 1, 0, choices}
#define AUG_P_LIST(n, d, lo, hi, doc) \
    {sizeof(usi_param_desc), n, USI_PARAM_FLOAT_LIST, 0, doc, 0, 0, d, lo, hi, NULL}

/* Uniform integer in [lo, hi) (hi > lo). */
int32_t aug_randint(usi_rng *r, int32_t lo, int32_t hi);
/* Uniform double in [lo, hi). */
double aug_uniform(usi_rng *r, double lo, double hi);

/* "bicubic" | "bilinear" | "nearest" -> USI_INTERP_*, -1 when unknown. */
int32_t aug_interp_from_name(const char *s);

/* Resize src to full_w x full_h exactly as PIL's Image.resize does (so as
 * torchvision and timm do) and write the window [x0, x0+dw) x [y0, y0+dh)
 * of the result at dst (row stride dst_stride): a resize followed by a crop,
 * computing only the crop. Returns 0, -1 when out of memory, -2 when the
 * window is not inside the result. */
int aug_resize_window(const usi_image *src, int32_t full_w, int32_t full_h, int32_t x0, int32_t y0,
                      uint8_t *dst, int32_t dw, int32_t dh, int32_t dst_stride, int32_t interp);

/* The w x h region of src at (x, y) as an image sharing src's pixels (a
 * PIL crop before a resize: the filter then sees no pixel outside it). */
usi_image aug_view(const usi_image *src, int32_t x, int32_t y, int32_t w, int32_t h);

/* 0 forces the portable resampling loop (tests compare it with AVX2). */
extern int aug_resample_simd;

/* Copy src into dst (dst resized with image_alloc). */
usi_error *aug_copy(const usi_image *src, usi_image *dst);

#endif
