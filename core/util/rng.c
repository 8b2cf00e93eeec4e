#include "util/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void usi_rng_seed(usi_rng *r, uint64_t k0, uint64_t k1, uint64_t k2,
                  uint64_t k3)
{
    /* Chain the keys so (a, b) and (b, a) give different streams. */
    uint64_t x = k0;
    uint64_t h = splitmix64(&x);
    x = h ^ k1;
    h = splitmix64(&x);
    x = h ^ k2;
    h = splitmix64(&x);
    x = h ^ k3;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->has_spare = 0;
    r->spare = 0;
}

uint64_t usi_rng_u64(usi_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double usi_rng_uniform(usi_rng *r)
{
    return (double)(usi_rng_u64(r) >> 11) * 0x1.0p-53;
}

double usi_rng_normal(usi_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    /* Box-Muller; 1 - u keeps the log argument in (0, 1]. */
    double u = 1.0 - usi_rng_uniform(r), v = usi_rng_uniform(r);
    double rad = sqrt(-2.0 * log(u));
    r->spare = rad * sin(2.0 * M_PI * v);
    r->has_spare = 1;
    return rad * cos(2.0 * M_PI * v);
}
