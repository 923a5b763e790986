/* test_rng.h - the tests' one seed and their generator. Every random choice
 * of every suite derives from tu_seed, which comes from ANIC_TEST_SEED (a
 * decimal or 0x-hex uint64) and is printed at start as "<prog>: seed N
 * (replay with ANIC_TEST_SEED=N)". No other variable seeds a test. */
#ifndef ANIC_TEST_RNG_H
#define ANIC_TEST_RNG_H

#include <stddef.h>
#include <stdint.h>

/* splitmix64 state */
struct tu_rng {
    uint64_t s;
};

/* The run's seed; set by tu_seed_init() or tu_seed_init_default(). */
extern uint64_t tu_seed;

/* ANIC_TEST_SEED if set, else a fresh seed from time and pid. A value that is
   not a decimal or 0x-hex uint64 ends the program with exit status 2. */
void tu_seed_init(const char *prog);
/* The same, but def when ANIC_TEST_SEED is unset: for suites whose runs must
   not differ unless asked (test_http, test_e2e: fault profiles tuned to time
   bounds). */
void tu_seed_init_default(const char *prog, uint64_t def);

uint64_t tu_rng_next(struct tu_rng *r);
/* Uniform in [lo, hi]. */
size_t tu_rng_range(struct tu_rng *r, size_t lo, size_t hi);
/* Uniform in [0, n), 0 when n is 0. */
size_t tu_rng_below(struct tu_rng *r, size_t n);
void tu_rng_fill(struct tu_rng *r, uint8_t *p, size_t n);
/* A generator of its own for each test (name) and loop variant, from tu_seed,
   so a test replays the same alone (CK_RUN_CASE) or in its suite. */
struct tu_rng tu_rng_for(const char *name, int variant);

#endif
