/* rng.h — the one seeded random number generator of mu (xoshiro256** seeded through
 * splitmix64). Same seed -> same numbers on every machine and backend. */
#ifndef MU_RNG_H
#define MU_RNG_H
#include <stdint.h>
typedef struct { uint64_t s[4]; int has_spare; double spare; } mu_rng;
void mu_rng_seed(mu_rng *r, uint64_t seed);
/* Independent sub-stream: seed mixed with a stream id (e.g. a tensor index). */
void mu_rng_seed2(mu_rng *r, uint64_t seed, uint64_t stream);
uint64_t mu_rng_u64(mu_rng *r);
double mu_rng_uniform(mu_rng *r);            /* [0, 1) with 53 random bits */
uint64_t mu_rng_below(mu_rng *r, uint64_t n); /* uniform in [0, n), unbiased */
double mu_rng_normal(mu_rng *r);             /* standard normal (Box-Muller) */
void mu_rng_shuffle_i64(mu_rng *r, int64_t *a, int64_t n); /* Fisher-Yates */
#endif
