/* The image operations RandAugment chooses from, on uint8 HWC images in
 * place (geometric ones use a scratch image of the same size). Their
 * arithmetic follows PIL's, which timm's RandAugment runs on. */
#ifndef USI_RA_OPS_H
#define USI_RA_OPS_H

#include <stdint.h>
#include <usi/plugin.h>

void ra_auto_contrast(usi_image *im);
void ra_equalize(usi_image *im);
void ra_invert(usi_image *im);
void ra_posterize(usi_image *im, int bits);
void ra_solarize(usi_image *im, int thresh);
void ra_solarize_add(usi_image *im, int add, int thresh);
/* PIL ImageEnhance: blend with a degenerate image by factor. */
void ra_color(usi_image *im, double factor);
void ra_contrast(usi_image *im, double factor);
void ra_brightness(usi_image *im, double factor);
/* Needs a scratch buffer of the image's size. */
void ra_sharpness(usi_image *im, double factor, uint8_t *scratch);

/* PIL's Image.transform(AFFINE, m, resample, fillcolor): output pixel
 * centre (x+.5, y+.5) samples the input at (m[0]x' + m[1]y' + m[2],
 * m[3]x' + m[4]y' + m[5]) with x' = x+.5; points off the image take the fill
 * colour. interp: USI_INTERP_BICUBIC, else bilinear (timm uses only these). */
void ra_affine(const usi_image *src, uint8_t *dst, const double m[6], int32_t interp,
               const uint8_t fill[3]);

/* The matrix PIL's Image.rotate(deg) passes to transform() for a w x h
 * image (centre, no expand): the angle modulo 360 as Python's % does,
 * math.radians, sine and cosine rounded to 15 places, so a quarter turn is
 * exact. Returns 0 when the angle is a multiple of 360 (PIL copies). */
int ra_rotate_matrix(int32_t w, int32_t h, double deg, double m[6]);

/* The operations of timm's RandAugment list, in its order. */
enum {
    RA_AUTO_CONTRAST, RA_EQUALIZE, RA_INVERT, RA_ROTATE, RA_POSTERIZE, RA_SOLARIZE,
    RA_SOLARIZE_ADD, RA_COLOR, RA_CONTRAST, RA_BRIGHTNESS, RA_SHARPNESS, RA_SHEAR_X,
    RA_SHEAR_Y, RA_TRANSLATE_X, RA_TRANSLATE_Y, RA_OP_COUNT
};

typedef struct ra_settings {
    int32_t interp;       /* of rotate, shear, translate */
    int32_t increasing;   /* timm's *Increasing variants */
    double translate_pct; /* largest translation, fraction of the side */
    uint8_t fill[3];      /* uncovered pixels */
} ra_settings;

/* timm's name of op ("Rotate", "PosterizeIncreasing", ...), and back
 * (-1 when unknown; *increasing says which variant the name is). */
const char *ra_op_name(int op, int increasing);
int ra_op_find(const char *name, int *increasing);
/* Whether timm draws a random sign for op's argument. */
int ra_op_negates(int op, int increasing);
/* Apply op at level (timm's 0..10 scale), the argument negated when
 * negate, with timm's level-to-argument functions; scratch holds an image. */
void ra_apply_op(int op, double level, int negate, const ra_settings *s, usi_image *im, uint8_t *scratch);

#endif
