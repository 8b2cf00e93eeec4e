/* Exponential moving average of the weights: ema = d*ema + (1-d)*w. With
 * warm-up the decay is min(target, (1+n)/(10+n)) after n updates, so the
 * average follows the weights early on and short runs still get a useful
 * EMA (with 0.99996 and no warm-up it would need ~25k steps to forget the
 * initialisation). The update itself is a device kernel (usi_dbuf_ema). */
#ifndef USI_TRAIN_EMA_H
#define USI_TRAIN_EMA_H

#include <stddef.h>
#include <stdint.h>

double usi_ema_decay(double target, int warmup, int64_t updates);

#endif
