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

/* Output pixel centre (x+.5, y+.5) samples the input at
 * (m[0]x' + m[1]y' + m[2], m[3]x' + m[4]y' + m[5]) with x' = x+.5 (PIL's
 * affine convention); points outside the image take the fill colour. */
void ra_affine(const usi_image *src, uint8_t *dst, const double m[6], int32_t interp,
               const uint8_t fill[3]);

#endif
