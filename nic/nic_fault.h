/*
 * nic_fault: a netem-like fault stage on the simulated wire between the NIC
 * engine and the TUN device, one instance per direction. Packets are raw IPv4
 * (no link header).
 *
 *   push ─► loss ─► bound ─► tamper ─► corrupt ─► duplicate ─► schedule ─► sched FIFO
 *                                                 (delay, jitter, rate)       │ due
 *                                                                             ▼
 *   pop ◄──────────────────────────────────────────────────────────── not marked "hold"
 *    ▲                                                                        │ marked
 *    └──── released after `gap` later packets leave, or after the timeout ◄─ hold FIFO
 *
 * A blackout (a timed outage) drops packets at push, before loss.
 *
 * Departure times are monotonic, so the sched FIFO is also departure order.
 * A packet marked for reordering enters the hold FIFO at its own departure
 * time; from then on every packet popped from the sched FIFO is "later", so
 * holds release in the order they were taken and the stage stays O(1).
 *
 * Determinism: every pushed packet of valid length draws exactly
 * NIC_FAULT_DRAWS_PER_PKT values from one xoshiro256** stream (seeded by
 * splitmix64), in the order loss, duplicate, corrupt, corrupt bit, tamper,
 * tamper bit, reorder, jitter, whether or not the fault is enabled. The same
 * seed, packets, push times and pop times give the same output.
 *
 * Not thread-safe: the owning thread (the NIC engine) makes every call.
 */
#ifndef NIC_FAULT_H
#define NIC_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NIC_FAULT_MAX_PKT                 65535u /* largest IPv4 packet; pop cap that always suffices */
#define NIC_FAULT_QUEUE_CAP               4096u /* packets in flight (a duplicate pair is one) */
#define NIC_FAULT_DEFAULT_GAP             3u
#define NIC_FAULT_DEFAULT_REORDER_TIMEOUT UINT64_C(2000000) /* 2 ms */
#define NIC_FAULT_MAX_GAP                 65535u
#define NIC_FAULT_MAX_TIME_NS             UINT64_C(3600000000000) /* 1 h: delay, jitter, timeout */
#define NIC_FAULT_MAX_RATE_BPS            UINT64_C(1000000000000000) /* 1 Pbit/s */
#define NIC_FAULT_DRAWS_PER_PKT           8u
#define NIC_FAULT_FMT_LEN                 384u /* nic_fault_cfg_format() never needs more */

struct nic_fault_cfg {
    double loss_pct, duplicate_pct, corrupt_pct, tamper_pct, reorder_pct; /* 0..100 */
    unsigned reorder_gap;        /* packets; 1..NIC_FAULT_MAX_GAP, default 3 */
    uint64_t reorder_timeout_ns; /* default 2 ms */
    uint64_t delay_ns, jitter_ns;
    uint64_t rate_bps; /* bits per second, 0 = unlimited */
    /* One outage: every packet pushed within blackout_ns from the push of
       packet number blackout_after + 1 is dropped (0 = none). */
    uint64_t blackout_ns;
    uint64_t blackout_after; /* packets that pass before the blackout starts */
    uint64_t seed;
    bool
        seed_set; /* false: nic_fault_create() chooses one; read it back with nic_fault_get_cfg() */
};

/* Counters of one fault stage (/stats sections fault_tx, fault_rx). */
#define NIC_FAULT_COUNTERS(X)                                                                      \
    X(packets_in)  /* every push */                                                                \
    X(packets_out) /* every pop that returned a packet (each duplicate copy counts) */             \
    X(bytes_out)                                                                                   \
    X(dropped)          /* by `loss` */                                                            \
    X(blackout_drops)   /* by `blackout` */                                                        \
    X(duplicated)       /* packets emitted twice */                                                \
    X(reordered)        /* packets marked for the hold FIFO */                                     \
    X(corrupted)        /* one bit flipped anywhere */                                             \
    X(tampered)         /* one TCP payload bit flipped, TCP checksum made valid again */           \
    X(delayed)          /* departure later than arrival (delay, jitter or rate) */                 \
    X(queue_full_drops) /* pushed while NIC_FAULT_QUEUE_CAP packets were in flight */              \
    X(invalid_drops)    /* push of len 0 or > NIC_FAULT_MAX_PKT, or pop cap too small */           \
    X(nomem_drops)      /* packet buffer allocation failed */

#define NIC_FAULT_CTR_FIELD(name) uint64_t name;
struct nic_fault_stats {
    NIC_FAULT_COUNTERS(NIC_FAULT_CTR_FIELD)
};
/* After the stage drains: packets_in + duplicated == packets_out + dropped +
 * blackout_drops + queue_full_drops + invalid_drops + nomem_drops. */

/* All faults off, gap 3, reorder timeout 2 ms, no seed. */
void nic_fault_cfg_init(struct nic_fault_cfg *cfg);

/*
 * Parse a netem-style spec, e.g.
 *   "loss 1% duplicate 0.5% reorder 5% gap 3 corrupt 0.1% tamper 0.2% delay 2ms 1ms rate 1gbit seed
 * 7" Keywords: loss|duplicate|corrupt|tamper P, reorder P [gap N] [timeout T], delay T [J], rate R,
 * blackout T [after N], seed S. P is 0..100 with an optional '%'. T is a number with unit
 * ns|us|ms|s (bare = ms). R is a number with unit bit|kbit|mbit|gbit| tbit (bits/s, bare = bit) or
 * bps|kbps|mbps|gbps (bytes/s, as in tc); k = 1000. S is a decimal or 0x-hex uint64. "" or "none"
 * is passthrough. Each keyword may appear once. Returns 0 and overwrites *cfg (reset to defaults
 * first), or -1 with *cfg untouched and a message naming the offending token in err (if errlen >
 * 0).
 */
int nic_fault_cfg_parse(struct nic_fault_cfg *cfg, const char *spec, char *err, size_t errlen);

/* A seed as the spec's "seed S" and the --seed options take it: a decimal or
 * 0x-hex uint64 (never octal, no sign). Returns 0, or -1 with *out untouched
 * and a message naming s in err (if errlen > 0). */
int nic_fault_seed_parse(const char *s, uint64_t *out, char *err, size_t errlen);

/* Returns 0 if every field is in the range the parser accepts, else -1 with a message. */
int nic_fault_cfg_check(const struct nic_fault_cfg *cfg, char *err, size_t errlen);

/* Writes a spec that parses back to an identical cfg (seed included if set;
 * "none" for passthrough without seed). Always NUL-terminates when len > 0;
 * NIC_FAULT_FMT_LEN bytes are always enough: the longest spec is 336
 * characters (five percentages of 23, e.g. "4.9406564584124654e-324", gap
 * 65535, four 15-character times, a 15-digit rate in bits, a blackout after
 * a 20-digit packet count, a 20-digit seed). */
void nic_fault_cfg_format(const struct nic_fault_cfg *cfg, char *buf, size_t len);

/* True if no fault, no delay and no rate limit is configured (seed ignored). */
bool nic_fault_cfg_is_passthrough(const struct nic_fault_cfg *cfg);

struct nic_fault;

/* cfg is copied. If !cfg->seed_set a seed is chosen from getrandom().
 * Returns NULL with errno ENOMEM, or EINVAL if nic_fault_cfg_check() fails. */
struct nic_fault *nic_fault_create(const struct nic_fault_cfg *cfg);

/* Frees all queued packets. NULL is a no-op. */
void nic_fault_destroy(struct nic_fault *f);

/* The effective config: seed_set is always true. Format it to log a replayable spec. */
void nic_fault_get_cfg(const struct nic_fault *f, struct nic_fault_cfg *out);

/* Offer a packet that arrives at now_ns (CLOCK_MONOTONIC). The bytes are
 * copied; the caller keeps pkt. Every packet not queued is counted in stats. */
void nic_fault_push(struct nic_fault *f, const uint8_t *pkt, size_t len, uint64_t now_ns);

/* Copies the next packet due at now_ns into buf and returns its length, or 0
 * if none is due. cap >= NIC_FAULT_MAX_PKT always suffices; a smaller cap that
 * cannot hold the packet is a caller bug (asserts; counted in invalid_drops
 * under NDEBUG). */
size_t nic_fault_pop(struct nic_fault *f, uint64_t now_ns, uint8_t *buf, size_t cap);

/* Earliest time a queued packet becomes due (departure or hold release);
 * UINT64_MAX if empty. It may be a time at which pop() returns 0 because the
 * packet only moved into the hold FIFO; ask again after that pop(). */
uint64_t nic_fault_next_deadline(const struct nic_fault *f);

/* Packets queued (sched + hold FIFOs; a duplicate pair counts once). */
size_t nic_fault_queued(const struct nic_fault *f);

void nic_fault_get_stats(const struct nic_fault *f, struct nic_fault_stats *out);

#endif /* NIC_FAULT_H */
