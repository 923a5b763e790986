/* nic_fault: netem-like fault stage. Contracts and pipeline: see nic_fault.h. */
#include "nic_fault.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h> /* isfinite only: no libm needed */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_US UINT64_C(1000)
#define NS_PER_MS UINT64_C(1000000)
#define NS_PER_S  UINT64_C(1000000000)

/* ---- PRNG: xoshiro256** seeded by splitmix64 (Blackman & Vigna) ---- */

struct fault_rng {
    uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(struct fault_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct fault_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

__extension__ typedef unsigned __int128 fault_u128; /* gcc/clang; keeps -Wpedantic quiet */

/* Maps r uniformly (to within 2^-64) onto [0, n). */
static inline uint64_t bounded(uint64_t r, uint64_t n)
{
    return (uint64_t)(((fault_u128)r * n) >> 64);
}

/* A percentage becomes a threshold on the top 53 bits of a draw: 0% never
 * hits, 100% (threshold 2^53) always does. */
#define PROB_BITS 53
static uint64_t pct_threshold(double pct)
{
    if (!(pct > 0))
        return 0;
    if (pct >= 100)
        return 1ull << PROB_BITS;
    return (uint64_t)(pct / 100.0 * (double)(1ull << PROB_BITS));
}

static inline bool hit(uint64_t r, uint64_t threshold)
{
    return (r >> (64 - PROB_BITS)) < threshold;
}

/* ---- Packet FIFOs ---- */

struct fault_pkt {
    uint8_t *data;
    uint32_t len;
    uint8_t copies_left; /* 2 for a duplicated packet until its first copy leaves */
    bool hold;           /* sched FIFO only: move to the hold FIFO when due */
    uint64_t due_ns;     /* sched: departure time; hold: time it was held */
    uint64_t out_mark;   /* hold: f->sched_out when held, for the gap count */
};

struct pkt_ring {
    struct fault_pkt slot[NIC_FAULT_QUEUE_CAP];
    uint32_t head;
    uint32_t count;
};

/* Power-of-two capacity so wrapping is one mask; all index math is here. */
_Static_assert((NIC_FAULT_QUEUE_CAP & (NIC_FAULT_QUEUE_CAP - 1)) == 0,
               "NIC_FAULT_QUEUE_CAP must be a power of two");
static inline uint32_t ring_wrap(uint32_t i)
{
    return i & (NIC_FAULT_QUEUE_CAP - 1);
}

static inline const struct fault_pkt *ring_head(const struct pkt_ring *r)
{
    return r->count ? &r->slot[r->head] : NULL;
}

static inline struct fault_pkt *ring_head_mut(struct pkt_ring *r)
{
    return r->count ? &r->slot[r->head] : NULL;
}

static inline struct fault_pkt *ring_append(struct pkt_ring *r)
{
    assert(r->count < NIC_FAULT_QUEUE_CAP);
    return &r->slot[ring_wrap(r->head + r->count++)];
}

static inline void ring_drop_head(struct pkt_ring *r)
{
    assert(r->count > 0);
    r->head = ring_wrap(r->head + 1);
    r->count--;
}

/* ---- Packet buffers: two size classes with bounded free lists ---- */

#define BUF_SMALL      2048u /* holds any MTU-sized packet */
#define BUF_LARGE      NIC_FAULT_MAX_PKT
#define FREE_SMALL_MAX 1024u /* retained after a burst: 2 MiB */
#define FREE_LARGE_MAX 16u   /* retained after a burst: 1 MiB */

struct buf_cache {
    void *small[FREE_SMALL_MAX];
    void *large[FREE_LARGE_MAX];
    unsigned n_small, n_large;
};

static uint8_t *buf_get(struct buf_cache *c, size_t len)
{
    if (len <= BUF_SMALL)
        return c->n_small ? c->small[--c->n_small] : malloc(BUF_SMALL);
    return c->n_large ? c->large[--c->n_large] : malloc(BUF_LARGE);
}

static void buf_put(struct buf_cache *c, uint8_t *buf, size_t len)
{
    if (len <= BUF_SMALL && c->n_small < FREE_SMALL_MAX)
        c->small[c->n_small++] = buf;
    else if (len > BUF_SMALL && c->n_large < FREE_LARGE_MAX)
        c->large[c->n_large++] = buf;
    else
        free(buf);
}

static void buf_cache_free(struct buf_cache *c)
{
    while (c->n_small)
        free(c->small[--c->n_small]);
    while (c->n_large)
        free(c->large[--c->n_large]);
}

/* ---- Stage ---- */

struct nic_fault {
    struct nic_fault_cfg cfg; /* effective: seed_set is true */
    struct fault_rng rng;
    uint64_t thr_loss, thr_dup, thr_corrupt, thr_tamper, thr_reorder;
    uint64_t last_dep_ns; /* departures are monotonic: jitter never reorders */
    uint64_t rate_rem;    /* serialisation remainder (ns * rate_bps) so long runs keep the rate */
    uint64_t sched_out;   /* packets emitted from the sched FIFO: the "later packets" of a hold */
    uint64_t pushed_ok;   /* packets of valid length pushed: counts toward blackout_after */
    uint64_t blackout_end_ns;  /* 0: the blackout has not started */
    struct pkt_ring *emitting; /* FIFO whose head still owes its duplicate copy */
    struct nic_fault_stats st;
    struct buf_cache bufs;
    struct pkt_ring sched, hold;
};

struct fault_draws {
    uint64_t loss, dup, corrupt, corrupt_bit, tamper, tamper_bit, reorder, jitter;
};

static void draw(struct nic_fault *f, struct fault_draws *d)
{
    /* Fixed order and count; see the determinism contract in nic_fault.h. */
    d->loss = rng_next(&f->rng);
    d->dup = rng_next(&f->rng);
    d->corrupt = rng_next(&f->rng);
    d->corrupt_bit = rng_next(&f->rng);
    d->tamper = rng_next(&f->rng);
    d->tamper_bit = rng_next(&f->rng);
    d->reorder = rng_next(&f->rng);
    d->jitter = rng_next(&f->rng);
}
_Static_assert(sizeof(struct fault_draws) == NIC_FAULT_DRAWS_PER_PKT * sizeof(uint64_t),
               "draw() must match NIC_FAULT_DRAWS_PER_PKT");

static inline uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* IPv4 (RFC 791) and TCP (RFC 9293) fields used by tamper. */
#define IP4_VERSION     4
#define IP4_MIN_HLEN    20
#define IP4_OFF_TOTLEN  2
#define IP4_OFF_FRAG    6
#define IP4_FRAG_MF     0x2000u
#define IP4_FRAG_OFFSET 0x1fffu
#define IP4_OFF_PROTO   9
#define IP4_OFF_SRC     12
#define IP4_PROTO_TCP   6
#define TCP_MIN_HLEN    20
#define TCP_OFF_DATAOFF 12
#define TCP_OFF_CSUM    16

static inline unsigned rd16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* RFC 1071 one's-complement sum of len bytes, added to sum (not folded). */
static uint64_t csum_add(uint64_t sum, const uint8_t *p, size_t len)
{
    for (; len >= 2; p += 2, len -= 2)
        sum += rd16(p);
    if (len)
        sum += (uint64_t)p[0] << 8;
    return sum;
}

static uint16_t csum_fold(uint64_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* Flips one TCP payload bit and rewrites the TCP checksum over the pseudo
 * header (RFC 9293 §3.1), so the change is invisible to the receiver's check.
 * Returns false (packet untouched) unless pkt is an unfragmented IPv4/TCP
 * packet with a non-empty payload. Bytes beyond the IP total length are
 * link padding and are left alone. */
static bool tamper_tcp_payload(uint8_t *pkt, size_t len, uint64_t r)
{
    if (len < IP4_MIN_HLEN || pkt[0] >> 4 != IP4_VERSION)
        return false;
    size_t ihl = (pkt[0] & 0x0fu) * 4u;
    size_t tot = rd16(pkt + IP4_OFF_TOTLEN);
    if (ihl < IP4_MIN_HLEN || tot < ihl || tot > len || pkt[IP4_OFF_PROTO] != IP4_PROTO_TCP)
        return false;
    if (rd16(pkt + IP4_OFF_FRAG) & (IP4_FRAG_MF | IP4_FRAG_OFFSET))
        return false; /* a fragment holds no whole segment to checksum */
    uint8_t *tcp = pkt + ihl;
    size_t seg = tot - ihl;
    if (seg < TCP_MIN_HLEN)
        return false;
    size_t doff = (tcp[TCP_OFF_DATAOFF] >> 4) * 4u;
    if (doff < TCP_MIN_HLEN || doff >= seg)
        return false; /* bad header or no payload */

    uint64_t bit = bounded(r, (uint64_t)(seg - doff) * 8);
    tcp[doff + bit / 8] ^= (uint8_t)(1u << (bit % 8));

    uint8_t pseudo[4] = {0, IP4_PROTO_TCP, (uint8_t)(seg >> 8), (uint8_t)seg};
    tcp[TCP_OFF_CSUM] = 0;
    tcp[TCP_OFF_CSUM + 1] = 0;
    uint64_t sum = csum_add(0, pkt + IP4_OFF_SRC, 8); /* source and destination */
    sum = csum_add(sum, pseudo, sizeof(pseudo));
    sum = csum_add(sum, tcp, seg);
    uint16_t c = csum_fold(sum);
    tcp[TCP_OFF_CSUM] = (uint8_t)(c >> 8);
    tcp[TCP_OFF_CSUM + 1] = (uint8_t)c;
    return true;
}

/* Departure time: arrival + delay + uniform(-J, +J), never before arrival,
 * never before the previous departure; then tc-style serialisation behind the
 * previous packet at rate_bps. */
static uint64_t schedule(struct nic_fault *f, uint64_t bytes, uint64_t now_ns, uint64_t r_jitter)
{
    /* cfg_check bounds delay and jitter to NIC_FAULT_MAX_TIME_NS: no overflow. */
    int64_t lat = (int64_t)f->cfg.delay_ns;
    if (f->cfg.jitter_ns) {
        uint64_t j = f->cfg.jitter_ns;
        lat += (int64_t)bounded(r_jitter, 2 * j + 1) - (int64_t)j;
    }
    uint64_t dep = sat_add(now_ns, lat > 0 ? (uint64_t)lat : 0);
    if (dep < f->last_dep_ns)
        dep = f->last_dep_ns;
    if (f->cfg.rate_bps) {
        /* bytes <= 2 * 65535 and rate_rem < rate_bps <= 1e15: fits in 64 bits. */
        uint64_t num = bytes * 8 * NS_PER_S + f->rate_rem;
        dep = sat_add(dep, num / f->cfg.rate_bps);
        f->rate_rem = num % f->cfg.rate_bps;
    }
    f->last_dep_ns = dep;
    return dep;
}

void nic_fault_push(struct nic_fault *f, const uint8_t *pkt, size_t len, uint64_t now_ns)
{
    f->st.packets_in++;
    if (len == 0 || len > NIC_FAULT_MAX_PKT) {
        f->st.invalid_drops++;
        return;
    }
    struct fault_draws d;
    draw(f, &d);
    if (f->cfg.blackout_ns && ++f->pushed_ok > f->cfg.blackout_after) {
        if (!f->blackout_end_ns)
            f->blackout_end_ns = sat_add(now_ns, f->cfg.blackout_ns);
        if (now_ns < f->blackout_end_ns) {
            f->st.blackout_drops++;
            return;
        }
    }
    if (hit(d.loss, f->thr_loss)) {
        f->st.dropped++;
        return;
    }
    if (f->sched.count + f->hold.count >= NIC_FAULT_QUEUE_CAP) {
        f->st.queue_full_drops++;
        return;
    }
    uint8_t *buf = buf_get(&f->bufs, len);
    if (!buf) {
        f->st.nomem_drops++;
        return;
    }
    memcpy(buf, pkt, len);

    /* Tamper before corrupt: the attacker sits upstream of the noisy wire,
     * and its checksum fix must not hide a wire error. */
    if (hit(d.tamper, f->thr_tamper) && tamper_tcp_payload(buf, len, d.tamper_bit))
        f->st.tampered++;
    if (hit(d.corrupt, f->thr_corrupt)) {
        uint64_t bit = bounded(d.corrupt_bit, (uint64_t)len * 8);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        f->st.corrupted++;
    }
    uint8_t copies = 1;
    if (hit(d.dup, f->thr_dup)) {
        copies = 2; /* the copy is byte-identical and leaves right after */
        f->st.duplicated++;
    }
    bool hold = hit(d.reorder, f->thr_reorder);
    if (hold)
        f->st.reordered++;

    uint64_t dep = schedule(f, (uint64_t)len * copies, now_ns, d.jitter);
    if (dep > now_ns)
        f->st.delayed++;

    struct fault_pkt *p = ring_append(&f->sched);
    *p = (struct fault_pkt){
        .data = buf, .len = (uint32_t)len, .copies_left = copies, .hold = hold, .due_ns = dep};
}

static bool hold_gap_met(const struct nic_fault *f, const struct fault_pkt *h)
{
    return f->sched_out - h->out_mark >= f->cfg.reorder_gap;
}

/* Which FIFO's head leaves next at now_ns, or NULL. Moves due "hold" packets
 * from the sched FIFO to the hold FIFO on the way. Ties go by time, not by
 * how often the caller polls: a timed-out hold leaves before a sched packet
 * due at the same time or later. */
static struct pkt_ring *pick(struct nic_fault *f, uint64_t now_ns)
{
    if (f->emitting)
        return f->emitting;
    for (;;) {
        const struct fault_pkt *h = ring_head(&f->hold);
        struct fault_pkt *s = ring_head_mut(&f->sched);
        if (h) {
            if (hold_gap_met(f, h))
                return &f->hold;
            uint64_t deadline = sat_add(h->due_ns, f->cfg.reorder_timeout_ns);
            if (deadline <= now_ns && (!s || deadline <= s->due_ns))
                return &f->hold;
        }
        if (!s || s->due_ns > now_ns)
            return NULL;
        if (!s->hold)
            return &f->sched;
        /* Total in flight is unchanged, so the hold FIFO cannot overflow. */
        struct fault_pkt *n = ring_append(&f->hold);
        *n = *s;
        n->out_mark = f->sched_out;
        ring_drop_head(&f->sched);
    }
}

/* Copies src's head out; frees it once its last copy has left. */
static size_t emit(struct nic_fault *f, struct pkt_ring *src, uint8_t *buf, size_t cap)
{
    struct fault_pkt *p = ring_head_mut(src);
    size_t len = p->len;
    bool fits = len <= cap;
    assert(fits && "nic_fault_pop: cap smaller than the packet");
    if (fits) {
        memcpy(buf, p->data, len);
        f->st.packets_out++;
        f->st.bytes_out += len;
    } else {
        f->st.invalid_drops++;
    }
    if (src == &f->sched)
        f->sched_out++;
    if (--p->copies_left) {
        f->emitting = src;
    } else {
        buf_put(&f->bufs, p->data, len);
        ring_drop_head(src);
        f->emitting = NULL;
    }
    return fits ? len : 0;
}

size_t nic_fault_pop(struct nic_fault *f, uint64_t now_ns, uint8_t *buf, size_t cap)
{
    struct pkt_ring *src;
    while ((src = pick(f, now_ns))) {
        size_t n = emit(f, src, buf, cap);
        if (n)
            return n;
    }
    return 0;
}

uint64_t nic_fault_next_deadline(const struct nic_fault *f)
{
    if (f->emitting)
        return ring_head(f->emitting)->due_ns; /* a duplicate copy is owed: already due */
    uint64_t t = UINT64_MAX;
    const struct fault_pkt *h = ring_head(&f->hold);
    if (h)
        t = hold_gap_met(f, h) ? h->due_ns : sat_add(h->due_ns, f->cfg.reorder_timeout_ns);
    const struct fault_pkt *s = ring_head(&f->sched);
    if (s && s->due_ns < t)
        t = s->due_ns;
    return t;
}

size_t nic_fault_queued(const struct nic_fault *f)
{
    return (size_t)f->sched.count + f->hold.count;
}

void nic_fault_get_stats(const struct nic_fault *f, struct nic_fault_stats *out)
{
    *out = f->st;
}

void nic_fault_get_cfg(const struct nic_fault *f, struct nic_fault_cfg *out)
{
    *out = f->cfg;
}

static uint64_t choose_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
        return seed;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 32);
}

struct nic_fault *nic_fault_create(const struct nic_fault_cfg *cfg)
{
    if (nic_fault_cfg_check(cfg, NULL, 0) < 0) {
        errno = EINVAL;
        return NULL;
    }
    struct nic_fault *f = calloc(1, sizeof(*f));
    if (!f) {
        errno = ENOMEM;
        return NULL;
    }
    f->cfg = *cfg;
    if (!f->cfg.seed_set) {
        f->cfg.seed = choose_seed();
        f->cfg.seed_set = true;
    }
    rng_seed(&f->rng, f->cfg.seed);
    f->thr_loss = pct_threshold(cfg->loss_pct);
    f->thr_dup = pct_threshold(cfg->duplicate_pct);
    f->thr_corrupt = pct_threshold(cfg->corrupt_pct);
    f->thr_tamper = pct_threshold(cfg->tamper_pct);
    f->thr_reorder = pct_threshold(cfg->reorder_pct);
    return f;
}

static void ring_free(struct pkt_ring *r)
{
    for (; r->count; ring_drop_head(r))
        free(r->slot[r->head].data);
}

void nic_fault_destroy(struct nic_fault *f)
{
    if (!f)
        return;
    ring_free(&f->sched);
    ring_free(&f->hold);
    buf_cache_free(&f->bufs);
    free(f);
}

/* ---- Configuration ---- */

void nic_fault_cfg_init(struct nic_fault_cfg *cfg)
{
    *cfg = (struct nic_fault_cfg){
        .reorder_gap = NIC_FAULT_DEFAULT_GAP,
        .reorder_timeout_ns = NIC_FAULT_DEFAULT_REORDER_TIMEOUT,
    };
}

bool nic_fault_cfg_is_passthrough(const struct nic_fault_cfg *cfg)
{
    return cfg->loss_pct == 0 && cfg->duplicate_pct == 0 && cfg->corrupt_pct == 0 &&
           cfg->tamper_pct == 0 && cfg->reorder_pct == 0 && cfg->delay_ns == 0 &&
           cfg->jitter_ns == 0 && cfg->rate_bps == 0 && cfg->blackout_ns == 0;
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static bool pct_ok(double p)
{
    return p >= 0 && p <= 100; /* false for NaN */
}

int nic_fault_cfg_check(const struct nic_fault_cfg *cfg, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        size_t off;
    } pcts[] = {
        {"loss", offsetof(struct nic_fault_cfg, loss_pct)},
        {"duplicate", offsetof(struct nic_fault_cfg, duplicate_pct)},
        {"corrupt", offsetof(struct nic_fault_cfg, corrupt_pct)},
        {"tamper", offsetof(struct nic_fault_cfg, tamper_pct)},
        {"reorder", offsetof(struct nic_fault_cfg, reorder_pct)},
    };
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        double p = *(const double *)((const char *)cfg + pcts[i].off);
        if (!pct_ok(p))
            return fail(err, errlen, "%s %g%% out of range 0..100", pcts[i].name, p);
    }
    if (cfg->reorder_gap < 1 || cfg->reorder_gap > NIC_FAULT_MAX_GAP)
        return fail(err, errlen, "gap %u out of range 1..%u", cfg->reorder_gap, NIC_FAULT_MAX_GAP);
    if (cfg->reorder_timeout_ns > NIC_FAULT_MAX_TIME_NS || cfg->delay_ns > NIC_FAULT_MAX_TIME_NS ||
        cfg->jitter_ns > NIC_FAULT_MAX_TIME_NS || cfg->blackout_ns > NIC_FAULT_MAX_TIME_NS)
        return fail(err, errlen, "delay, jitter, timeout and blackout must be at most 3600s");
    if (cfg->rate_bps > NIC_FAULT_MAX_RATE_BPS)
        return fail(err, errlen, "rate %" PRIu64 "bit out of range (max 1000tbit)", cfg->rate_bps);
    return 0;
}

#define TOKEN_MAX 64

struct lexer {
    const char *p;
};

/* Next whitespace-separated token into tok. Returns 1, 0 at end, -1 if too long. */
static int lex(struct lexer *lx, char *tok, char *err, size_t errlen)
{
    while (isspace((unsigned char)*lx->p))
        lx->p++;
    if (!*lx->p)
        return 0;
    size_t n = 0;
    while (lx->p[n] && !isspace((unsigned char)lx->p[n]))
        n++;
    if (n >= TOKEN_MAX)
        return fail(err, errlen, "token '%.*s...' too long", 16, lx->p);
    memcpy(tok, lx->p, n);
    tok[n] = '\0';
    lx->p += n;
    return 1;
}

/* Like lex() but leaves the lexer where it was. */
static int peek(const struct lexer *lx, char *tok)
{
    struct lexer tmp = *lx;
    return lex(&tmp, tok, NULL, 0);
}

/* Length of a strict decimal number at s (digits, optional fraction and
 * exponent; no sign, hex, inf or nan), 0 if none. */
static size_t scan_number(const char *s)
{
    size_t i = 0, digits = 0;
    for (; isdigit((unsigned char)s[i]); i++)
        digits++;
    if (s[i] == '.')
        for (i++; isdigit((unsigned char)s[i]); i++)
            digits++;
    if (!digits)
        return 0;
    if (s[i] == 'e' || s[i] == 'E') {
        size_t j = i + 1;
        if (s[j] == '+' || s[j] == '-')
            j++;
        if (isdigit((unsigned char)s[j])) {
            while (isdigit((unsigned char)s[j]))
                j++;
            i = j;
        }
    }
    return i;
}

/* Parses the number at the start of tok; *unit points past it. */
static bool parse_number(const char *tok, double *v, const char **unit)
{
    char num[TOKEN_MAX];
    size_t n = scan_number(tok);
    if (!n)
        return false;
    memcpy(num, tok, n);
    num[n] = '\0';
    *v = strtod(num, NULL);
    *unit = tok + n;
    return isfinite(*v);
}

static int parse_pct(const char *kw, const char *tok, double *out, char *err, size_t errlen)
{
    double v;
    const char *unit;
    if (!parse_number(tok, &v, &unit) || (*unit && strcmp(unit, "%") != 0))
        return fail(err, errlen, "bad percentage '%s' for '%s'", tok, kw);
    if (!pct_ok(v))
        return fail(err, errlen, "percentage '%s' for '%s' out of range 0..100", tok, kw);
    *out = v;
    return 0;
}

static int parse_time(const char *kw, const char *tok, uint64_t *out, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        double ns;
    } units[] = {
        {"", NS_PER_MS}, {"ns", 1}, {"us", NS_PER_US}, {"ms", NS_PER_MS}, {"s", NS_PER_S},
    };
    double v;
    const char *unit;
    if (!parse_number(tok, &v, &unit))
        return fail(err, errlen, "bad time '%s' for '%s'", tok, kw);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(unit, units[i].name) != 0)
            continue;
        double ns = v * units[i].ns;
        if (ns > (double)NIC_FAULT_MAX_TIME_NS)
            return fail(err, errlen, "time '%s' for '%s' out of range (max 3600s)", tok, kw);
        *out = (uint64_t)(ns + 0.5); /* ns >= 0: round to nearest */
        return 0;
    }
    return fail(err, errlen, "bad time unit in '%s' for '%s' (use ns, us, ms or s)", tok, kw);
}

static int parse_rate(const char *tok, uint64_t *out, char *err, size_t errlen)
{
    /* tc(8) units: "bit" forms are bits/s, "bps" forms are bytes/s; k = 1000. */
    static const struct {
        const char *name;
        double bits;
    } units[] = {
        {"", 1},    {"bit", 1},    {"kbit", 1e3}, {"mbit", 1e6}, {"gbit", 1e9},  {"tbit", 1e12},
        {"bps", 8}, {"kbps", 8e3}, {"mbps", 8e6}, {"gbps", 8e9}, {"tbps", 8e12},
    };
    double v;
    const char *unit;
    if (!parse_number(tok, &v, &unit))
        return fail(err, errlen, "bad rate '%s'", tok);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(unit, units[i].name) != 0)
            continue;
        double bps = v * units[i].bits;
        if (bps < 1 || bps > (double)NIC_FAULT_MAX_RATE_BPS)
            return fail(err, errlen, "rate '%s' out of range 1bit..1000tbit", tok);
        *out = (uint64_t)(bps + 0.5);
        return 0;
    }
    return fail(err, errlen, "bad rate unit in '%s' (use bit, kbit, mbit, gbit, bps, kbps, ...)",
                tok);
}

static int parse_u64(const char *kw, const char *tok, uint64_t max, uint64_t *out, char *err,
                     size_t errlen)
{
    char *end;
    if (!isdigit((unsigned char)tok[0])) /* strtoull would accept '-' and spaces */
        return fail(err, errlen, "bad number '%s' for '%s'", tok, kw);
    /* Decimal, or hex with 0x; never octal, so "010" is ten. */
    int base = tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'X') ? 16 : 10;
    errno = 0;
    unsigned long long v = strtoull(tok, &end, base);
    if (*end)
        return fail(err, errlen, "bad number '%s' for '%s'", tok, kw);
    if (errno == ERANGE || v > max)
        return fail(err, errlen, "number '%s' for '%s' out of range", tok, kw);
    *out = v;
    return 0;
}

enum kw_id {
    KW_LOSS,
    KW_DUPLICATE,
    KW_CORRUPT,
    KW_TAMPER,
    KW_REORDER,
    KW_DELAY,
    KW_RATE,
    KW_BLACKOUT,
    KW_SEED
};

static const char *const kw_names[] = {
    [KW_LOSS] = "loss",     [KW_DUPLICATE] = "duplicate", [KW_CORRUPT] = "corrupt",
    [KW_TAMPER] = "tamper", [KW_REORDER] = "reorder",     [KW_DELAY] = "delay",
    [KW_RATE] = "rate",     [KW_BLACKOUT] = "blackout",   [KW_SEED] = "seed",
};
#define KW_COUNT (sizeof(kw_names) / sizeof(kw_names[0]))

/* Reads the value that keyword kw requires. */
static int need_value(struct lexer *lx, const char *kw, char *tok, char *err, size_t errlen)
{
    int rc = lex(lx, tok, err, errlen);
    if (rc == 0)
        return fail(err, errlen, "'%s' needs a value", kw);
    return rc < 0 ? -1 : 0;
}

/* The optional "gap N" and "timeout T" after "reorder P". */
static int parse_reorder_opts(struct lexer *lx, struct nic_fault_cfg *cfg, char *err, size_t errlen)
{
    char tok[TOKEN_MAX];
    bool gap_seen = false, timeout_seen = false;
    while (peek(lx, tok) > 0) {
        bool is_gap = strcmp(tok, "gap") == 0;
        if (!is_gap && strcmp(tok, "timeout") != 0)
            return 0;
        bool *seen = is_gap ? &gap_seen : &timeout_seen;
        if (*seen)
            return fail(err, errlen, "'%s' given twice", tok);
        *seen = true;
        lex(lx, tok, NULL, 0);
        char val[TOKEN_MAX];
        const char *kw = is_gap ? "gap" : "timeout";
        if (need_value(lx, kw, val, err, errlen) < 0)
            return -1;
        if (is_gap) {
            uint64_t gap;
            if (parse_u64(kw, val, UINT64_MAX, &gap, err, errlen) < 0)
                return -1;
            if (gap < 1 || gap > NIC_FAULT_MAX_GAP)
                return fail(err, errlen, "gap '%s' out of range 1..%u", val, NIC_FAULT_MAX_GAP);
            cfg->reorder_gap = (unsigned)gap;
        } else if (parse_time(kw, val, &cfg->reorder_timeout_ns, err, errlen) < 0) {
            return -1;
        }
    }
    return 0;
}

static double *pct_field(struct nic_fault_cfg *cfg, enum kw_id id)
{
    switch (id) {
    case KW_LOSS:
        return &cfg->loss_pct;
    case KW_DUPLICATE:
        return &cfg->duplicate_pct;
    case KW_CORRUPT:
        return &cfg->corrupt_pct;
    case KW_TAMPER:
        return &cfg->tamper_pct;
    case KW_REORDER:
        return &cfg->reorder_pct;
    default:
        return NULL;
    }
}

int nic_fault_cfg_parse(struct nic_fault_cfg *out, const char *spec, char *err, size_t errlen)
{
    struct nic_fault_cfg cfg;
    nic_fault_cfg_init(&cfg);
    if (err && errlen)
        err[0] = '\0';
    struct lexer lx = {spec ? spec : ""};
    char tok[TOKEN_MAX], val[TOKEN_MAX];
    bool seen[KW_COUNT] = {false};
    unsigned ntok = 0;
    bool none = false;
    int rc;
    while ((rc = lex(&lx, tok, err, errlen)) > 0) {
        ntok++;
        if (strcmp(tok, "none") == 0) {
            none = true;
            continue;
        }
        if (strcmp(tok, "gap") == 0 || strcmp(tok, "timeout") == 0)
            return fail(err, errlen, "'%s' is only valid right after 'reorder P%%'", tok);
        if (strcmp(tok, "after") == 0)
            return fail(err, errlen, "'after' is only valid right after 'blackout T'");
        size_t id = 0;
        while (id < KW_COUNT && strcmp(tok, kw_names[id]) != 0)
            id++;
        if (id == KW_COUNT)
            return fail(err, errlen, "unknown keyword '%s'", tok);
        if (seen[id])
            return fail(err, errlen, "keyword '%s' given twice", tok);
        seen[id] = true;
        if (need_value(&lx, tok, val, err, errlen) < 0)
            return -1;

        double *pct = pct_field(&cfg, (enum kw_id)id);
        if (pct) {
            if (parse_pct(tok, val, pct, err, errlen) < 0)
                return -1;
            if (id == KW_REORDER && parse_reorder_opts(&lx, &cfg, err, errlen) < 0)
                return -1;
        } else if (id == KW_DELAY) {
            if (parse_time(tok, val, &cfg.delay_ns, err, errlen) < 0)
                return -1;
            /* Optional jitter: keywords never start with a digit or '.'. */
            char next[TOKEN_MAX];
            if (peek(&lx, next) > 0 && (isdigit((unsigned char)next[0]) || next[0] == '.')) {
                lex(&lx, next, NULL, 0);
                if (parse_time("delay jitter", next, &cfg.jitter_ns, err, errlen) < 0)
                    return -1;
            }
        } else if (id == KW_RATE) {
            if (parse_rate(val, &cfg.rate_bps, err, errlen) < 0)
                return -1;
        } else if (id == KW_BLACKOUT) {
            if (parse_time(tok, val, &cfg.blackout_ns, err, errlen) < 0)
                return -1;
            if (!cfg.blackout_ns)
                return fail(err, errlen, "blackout '%s' must be a positive time", val);
            char next[TOKEN_MAX];
            if (peek(&lx, next) > 0 && strcmp(next, "after") == 0) {
                lex(&lx, next, NULL, 0);
                if (need_value(&lx, "after", val, err, errlen) < 0 ||
                    parse_u64("after", val, UINT64_MAX, &cfg.blackout_after, err, errlen) < 0)
                    return -1;
            }
        } else {
            assert(id == KW_SEED);
            if (parse_u64(tok, val, UINT64_MAX, &cfg.seed, err, errlen) < 0)
                return -1;
            cfg.seed_set = true;
        }
    }
    if (rc < 0)
        return -1;
    if (none && ntok > 1)
        return fail(err, errlen, "'none' must be the whole spec");
    *out = cfg;
    return 0;
}

/* Appends to a NUL-terminated buffer, truncating safely. */
struct strbuf {
    char *buf;
    size_t cap, len;
};

__attribute__((format(printf, 2, 3))) static void sb_printf(struct strbuf *sb, const char *fmt, ...)
{
    if (sb->len >= sb->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        sb->len = sb->len + (size_t)n < sb->cap ? sb->len + (size_t)n : sb->cap - 1;
}

/* Shortest plain decimal that reads back as exactly v; %.17g as a last resort. */
static void fmt_double(char *out, size_t cap, double v)
{
    for (int prec = 0; prec <= 17; prec++) {
        snprintf(out, cap, "%.*f", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
    snprintf(out, cap, "%.17g", v);
}

static void fmt_time(struct strbuf *sb, uint64_t ns)
{
    if (ns % NS_PER_S == 0 && ns)
        sb_printf(sb, "%" PRIu64 "s", ns / NS_PER_S);
    else if (ns % NS_PER_MS == 0)
        sb_printf(sb, "%" PRIu64 "ms", ns / NS_PER_MS);
    else if (ns % NS_PER_US == 0)
        sb_printf(sb, "%" PRIu64 "us", ns / NS_PER_US);
    else
        sb_printf(sb, "%" PRIu64 "ns", ns);
}

static void fmt_rate(struct strbuf *sb, uint64_t bps)
{
    static const struct {
        const char *name;
        uint64_t bits;
    } units[] = {{"tbit", 1000000000000ull},
                 {"gbit", 1000000000ull},
                 {"mbit", 1000000ull},
                 {"kbit", 1000ull}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (bps % units[i].bits == 0) {
            sb_printf(sb, "%" PRIu64 "%s", bps / units[i].bits, units[i].name);
            return;
        }
    }
    sb_printf(sb, "%" PRIu64 "bit", bps);
}

static void fmt_pct(struct strbuf *sb, const char *kw, double pct, bool force)
{
    char num[64];
    if (pct == 0 && !force)
        return;
    fmt_double(num, sizeof(num), pct);
    sb_printf(sb, "%s%s %s%%", sb->len ? " " : "", kw, num);
}

void nic_fault_cfg_format(const struct nic_fault_cfg *cfg, char *buf, size_t len)
{
    if (!len)
        return;
    struct strbuf sb = {buf, len, 0};
    buf[0] = '\0';
    fmt_pct(&sb, "loss", cfg->loss_pct, false);
    fmt_pct(&sb, "duplicate", cfg->duplicate_pct, false);
    /* Reorder options only exist after "reorder", so print it whenever they differ. */
    bool reorder_opts = cfg->reorder_gap != NIC_FAULT_DEFAULT_GAP ||
                        cfg->reorder_timeout_ns != NIC_FAULT_DEFAULT_REORDER_TIMEOUT;
    if (cfg->reorder_pct != 0 || reorder_opts) {
        fmt_pct(&sb, "reorder", cfg->reorder_pct, true);
        sb_printf(&sb, " gap %u", cfg->reorder_gap);
        if (cfg->reorder_timeout_ns != NIC_FAULT_DEFAULT_REORDER_TIMEOUT) {
            sb_printf(&sb, " timeout ");
            fmt_time(&sb, cfg->reorder_timeout_ns);
        }
    }
    fmt_pct(&sb, "corrupt", cfg->corrupt_pct, false);
    fmt_pct(&sb, "tamper", cfg->tamper_pct, false);
    if (cfg->delay_ns || cfg->jitter_ns) {
        sb_printf(&sb, "%sdelay ", sb.len ? " " : "");
        fmt_time(&sb, cfg->delay_ns);
        if (cfg->jitter_ns) {
            sb_printf(&sb, " ");
            fmt_time(&sb, cfg->jitter_ns);
        }
    }
    if (cfg->rate_bps) {
        sb_printf(&sb, "%srate ", sb.len ? " " : "");
        fmt_rate(&sb, cfg->rate_bps);
    }
    if (cfg->blackout_ns) {
        sb_printf(&sb, "%sblackout ", sb.len ? " " : "");
        fmt_time(&sb, cfg->blackout_ns);
        if (cfg->blackout_after)
            sb_printf(&sb, " after %" PRIu64, cfg->blackout_after);
    }
    if (cfg->seed_set)
        sb_printf(&sb, "%sseed %" PRIu64, sb.len ? " " : "", cfg->seed);
    if (!sb.len)
        sb_printf(&sb, "none");
}
