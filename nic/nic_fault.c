/* nic_fault: netem-like fault stage (the runtime; its spec parser and printer are
   nic_fault_spec.c). Contracts and pipeline: see nic_fault.h. */
#include "nic_fault.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
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
