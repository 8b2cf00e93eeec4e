/* The core's random streams: xoshiro256** seeded through splitmix64, so a
 * stream is a pure function of the key it is seeded from (seed, epoch,
 * index, ...), whatever thread or process draws from it. */
#ifndef USI_CORE_RNG_H
#define USI_CORE_RNG_H

#include <stdint.h>
#include <usi/plugin.h>

struct usi_rng {
    uint64_t s[4];
    int has_spare;
    double spare;
};

/* Seed from up to four keys, e.g. usi_rng_seed(&r, seed, epoch, index, 0). */
void usi_rng_seed(usi_rng *r, uint64_t k0, uint64_t k1, uint64_t k2,
                  uint64_t k3);
uint64_t usi_rng_u64(usi_rng *r);
double usi_rng_uniform(usi_rng *r); /* [0, 1) */
double usi_rng_normal(usi_rng *r);  /* N(0, 1) */

#endif
