/* The tests' one seed and generator; see test_rng.h. */
#include "test_rng.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

uint64_t tu_seed;

static void seed_init(const char *prog, uint64_t def)
{
    const char *env = getenv("ANIC_TEST_SEED");
    if (env && *env) {
        char *end;
        /* As nic_fault_seed_parse: decimal or 0x-hex, never octal, no sign. */
        int base = env[0] == '0' && (env[1] == 'x' || env[1] == 'X') ? 16 : 10;
        errno = 0;
        unsigned long long v = env[0] >= '0' && env[0] <= '9' ? strtoull(env, &end, base) : 0;
        if (!(env[0] >= '0' && env[0] <= '9') || *end || errno == ERANGE) {
            fprintf(stderr, "%s: bad ANIC_TEST_SEED '%s': expected a decimal or 0x-hex uint64\n",
                    prog, env);
            exit(2);
        }
        def = v;
    }
    tu_seed = def;
    printf("%s: seed %" PRIu64 " (replay with ANIC_TEST_SEED=%" PRIu64 ")\n", prog, tu_seed,
           tu_seed);
    fflush(stdout);
}

void tu_seed_init(const char *prog)
{
    seed_init(prog, (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
}

void tu_seed_init_default(const char *prog, uint64_t def)
{
    seed_init(prog, def);
}

uint64_t tu_rng_next(struct tu_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

size_t tu_rng_range(struct tu_rng *r, size_t lo, size_t hi)
{
    return lo + (size_t)(tu_rng_next(r) % (hi - lo + 1));
}

size_t tu_rng_below(struct tu_rng *r, size_t n)
{
    return n ? (size_t)(tu_rng_next(r) % n) : 0;
}

void tu_rng_fill(struct tu_rng *r, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)tu_rng_next(r);
}

struct tu_rng tu_rng_for(const char *name, int variant)
{
    struct tu_rng r = {tu_seed ^ (uint64_t)variant * 0x2545f4914f6cdd1dull};
    for (const char *c = name; *c; c++)
        r.s = (r.s ^ (uint8_t)*c) * 0x100000001b3ull;
    return r;
}
