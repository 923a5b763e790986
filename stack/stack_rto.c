/* stack_rto.c - millisecond retransmission timer and time-based give-up for
   lwIP pcbs; see stack_rto.h. */
#include "stack_rto.h"
#include "stack_chksum.h"

#include <stdatomic.h>

#include <lwip/priv/tcp_priv.h>
#include <lwip/sys.h>
#include <lwip/tcp.h>
#include <lwip/timeouts.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define RTO_MAX_BACKOFF     6    /* the fast RTO doubles up to min_ms << 6 */
#define RTO_IDLE_PERIOD_MS  1000 /* walk period without a fast RTO (give-up only) */
#define RTO_TABLE_MIN       64   /* slots; power of two */
#define RTO_ABORTS_PER_SCAN 16   /* more are aborted by the next walk */
/* A walk visits every active pcb; the next one comes no sooner than one ms
   per this many, so that with thousands of connections (some deadline is
   always near) the walks take a bounded share of the lwIP thread instead of
   running every ms. The RTO then fires up to N/RTO_WALK_PCBS_PER_MS ms late
   (100 ms at 10,000 connections, whose RTT is then hundreds of ms: each
   walk of 10,000 costs ~2.5 ms with the core lock held, during which the
   interrupt thread cannot reap completions). */
#define RTO_WALK_PCBS_PER_MS 100
/* Send-buffer budget (docs/design.md §7). Every connection may hold its
   whole send buffer (--snd-buf, 192 KiB) in lwIP plus the offload's record
   store: with 10,000 downloads that is GBs queued behind one TX ring,
   seconds of queueing delay (every RTO spurious) and a working set that
   misses every cache. As Linux's tcp_mem pressure: each walk sets each
   established connection's send buffer to SND_BUDGET_BYTES / connections,
   at least SND_MIN_BYTES (three full TLS records) and at most the largest
   buffer any connection was given. lwIP's pcb->snd_buf is the free space
   (tcp_write takes, ACKs give back), so the capacity is snd_buf plus the
   bytes written and not yet acknowledged; a cut takes free space only.
   Idle connections do not dilute the budget: a connection that sends (data
   queued, or ACK progress since the last walk) gets the budget divided
   among the senders of the last walk, within the same bounds; an idle one
   keeps the share of all connections, so that thousands of idle keep-alive
   connections that start sending at once can hold no more than before. */
#define SND_BUDGET_BYTES (256u << 20)
#define SND_MIN_BYTES    (56u << 10)
/* Bursts under the budget (docs/design.md §7). Every ACK of a cut buffer
   freed about one record, and the record written then went out alone: at
   10,000 flows each TUN write carried ~29 KB and drew its own ACK, and
   these per-event costs (each touching a cold connection) were what grew
   with the flow count. As Linux wakes a writer only once a third of its
   buffer is free (sk_stream_is_writeable), a connection whose buffer the
   budget cut is offered more only when WRITE_LOWAT_NUM / WRITE_LOWAT_DEN of
   it is free or nothing is in flight (stack_tcp_write_lowat): with the 56
   KiB floor, three records at once, which the NIC sends as one GSO run
   (46 KB per TUN write; 10,000 flows 16-33 % faster in three interleaved
   pairs). The floor is three records plus headroom for that reason; 72 KiB
   (four) lost more to the peers' receive-memory pressure than it gained. */
#define WRITE_LOWAT_NUM 7
#define WRITE_LOWAT_DEN 8
/* TSO autosizing (docs/design.md §7), as Linux's tcp_tso_autosize sizes a
   flow's bursts to its rate: a connection whose send buffer the budget cut
   gets segments of at most half of it (a whole number of wire MSS, at
   least TSO_AUTOSIZE_MIN_SEGS of them). This lwIP build gives every new
   segment a block of a whole pcb->mss (LWIP_NETIF_TX_SINGLE_PBUF), so 64 KB
   segments behind a 40 KiB budget were mostly empty blocks: 870 MB held
   by 5,500 connections in flight, every block of it faulted in anew. */
#define TSO_AUTOSIZE_MIN_SEGS 2
static _Atomic uint32_t tso_wire_mss, tso_seg_max; /* stack_rto_set_tso; 0: off */

/* lwIP's slow RTO still counts nrtx (up to TCP_MAXRTX = 12, then it drops the
   pcb). Holding it here keeps lwIP's backoff at its largest shift
   (tcp_backoff[6..12] = 7) and far from the limit; the give-up is ours. */
#define RTO_NRTX_HOLD 6
/* The adaptive RTO's ceiling (before backoff): RFC 6298 (2.5)'s 60 s. It
   was 1 s, and with thousands of connections sharing the host the RTT is
   the host's whole queue over its rate (Little's law: 10,000 x 40 KiB at
   400 MB/s is ~1 s), so every connection fired spuriously once per RTT and
   the go-back-N retransmissions took the bandwidth (docs/design.md §7). */
#define RTO_CEIL_MS          60000
#define RTO_PROBE_MIN_FLIGHT 1024 /* pcbs in flight from which a first expiry probes (probe) */

struct rto_entry {
    const struct tcp_pcb *pcb; /* valid while gen is the table's */
    uint32_t gen;              /* the table's gen when filled: else a free slot */
    uint32_t key;              /* ports and remote address: a new pcb at a freed one's address */
    uint32_t lastack;
    uint32_t since_ms; /* last ACK progress or fast RTO: the fast RTO clock */
    uint32_t stall_ms; /* last ACK progress: the give-up clock */
    unsigned backoff;
    /* RFC 6298 estimator, in 1/8 ms; srtt8 0 = no sample yet. One segment at
       a time is timed: from the walk that first saw snd_nxt past lastack
       until lastack reaches that snd_nxt (rtt_seq). */
    uint32_t srtt8, rttvar8;
    uint32_t rtt_seq, rtt_start_ms;
    uint8_t rtt_nrtx; /* pcb->nrtx when timing started (a change: lwIP retransmitted) */
    bool timing;
    bool hole_resent;      /* hole repair resent the segment at hole_lastack */
    uint32_t hole_lastack; /* valid with hole_resent */
};

/* Two tables: each walk rebuilds the next one from the current one, holding
   exactly the pcbs with data in flight, so there are no tombstones and no
   stale pointers (a pcb pointer is compared, never dereferenced, unless it
   is found on tcp_active_pcbs). */
struct rto_table {
    struct rto_entry *slot;
    size_t cap;   /* power of two or 0 */
    size_t n;     /* entries */
    uint32_t gen; /* slots of another gen are free: a reset is gen + 1, not a memset */
};

static struct rto_table tables[2];
static unsigned cur_table;
static uint32_t min_rto_ms, give_up_ms;
static uint32_t snd_cap_max; /* the largest send buffer seen (the configured one) */
static size_t last_pcbs;     /* pcbs the last walk visited */
static size_t last_senders;  /* of those, established ones that sent (snd_budget_sender) */
static bool running;
static struct stack_rto_counters counters;

static uint32_t pcb_key(const struct tcp_pcb *pcb)
{
    return ((uint32_t)pcb->local_port << 16 ^ pcb->remote_port) ^
           ip4_addr_get_u32(ip_2_ip4(&pcb->remote_ip));
}

/* An RTT estimator in 1/8 ms; srtt8 0 = no sample yet. */
struct rtt_est {
    uint32_t srtt8, rttvar8;
};

/* The host's: every connection's samples. A connection's RTO starts from it
   until its own first sample (as Linux starts from the route's cached RTT):
   every peer is behind the same link, and a connection's first segments
   (the server's handshake flight) are rarely timed, since the walk sees a
   short exchange only after it is over. */
static struct rtt_est host_rtt;

/* Fold one sample (RFC 6298 §2.2, §2.3). */
static void est_fold(struct rtt_est *est, uint32_t r8)
{
    if (!est->srtt8) {
        est->srtt8 = r8 ? r8 : 1;
        est->rttvar8 = r8 / 2;
        return;
    }
    uint32_t err = est->srtt8 > r8 ? est->srtt8 - r8 : r8 - est->srtt8;
    est->rttvar8 = est->rttvar8 - est->rttvar8 / 4 + err / 4;
    est->srtt8 = est->srtt8 - est->srtt8 / 8 + r8 / 8;
    if (!est->srtt8)
        est->srtt8 = 1;
}

static void rtt_sample(struct rto_entry *e, uint32_t r_ms)
{
    struct rtt_est own = {e->srtt8, e->rttvar8};
    est_fold(&own, r_ms * 8);
    e->srtt8 = own.srtt8;
    e->rttvar8 = own.rttvar8;
    est_fold(&host_rtt, r_ms * 8);
    counters.rto_rtt_samples++;
}

/* The RTO before backoff: SRTT + max(G, 4 RTTVAR) with G = 1 ms (sys_now's
   resolution), clamped to [min_rto_ms, RTO_CEIL_MS]; the host's estimator
   until the connection's first sample, min_rto_ms before any sample. */
static uint32_t rto_base(const struct rto_entry *e)
{
    struct rtt_est est = e->srtt8 ? (struct rtt_est){e->srtt8, e->rttvar8} : host_rtt;
    if (!est.srtt8)
        return min_rto_ms;
    uint32_t var = 4 * est.rttvar8 > 8 ? 4 * est.rttvar8 : 8;
    uint32_t rto = (est.srtt8 + var + 7) / 8;
    if (rto > RTO_CEIL_MS)
        rto = RTO_CEIL_MS;
    return rto < min_rto_ms ? min_rto_ms : rto;
}

/* The RTT measurement of one walk: Karn's rule (RFC 6298 §3): a timed
   segment that was retransmitted gives no sample. lwIP's own retransmissions
   show as nrtx changing (its RTO) or TF_INFR (fast retransmit); a fast
   recovery that starts and ends between two walks is missed, and its sample
   then over-estimates the RTT (the safe direction). */
static void rtt_measure(struct rto_entry *e, const struct tcp_pcb *pcb, uint32_t now)
{
    if (e->timing && (pcb->nrtx != e->rtt_nrtx || (pcb->flags & TF_INFR))) {
        e->timing = false;
        counters.rto_rtt_karn++;
    }
    if (e->timing && TCP_SEQ_GEQ(pcb->lastack, e->rtt_seq)) {
        e->timing = false;
        rtt_sample(e, now - e->rtt_start_ms);
    }
    if (!e->timing && pcb->unacked && !(pcb->flags & TF_INFR) &&
        TCP_SEQ_GT(pcb->snd_nxt, pcb->lastack)) {
        e->timing = true;
        e->rtt_seq = pcb->snd_nxt;
        e->rtt_start_ms = now;
        e->rtt_nrtx = pcb->nrtx;
    }
}

static size_t slot_of(const struct tcp_pcb *pcb, size_t cap)
{
    uintptr_t h = (uintptr_t)pcb >> 4;
    h ^= h >> 17;
    h *= 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 7) & (cap - 1);
}

static struct rto_entry *table_find(const struct rto_table *t, const struct tcp_pcb *pcb)
{
    if (!t->cap)
        return NULL;
    for (size_t i = slot_of(pcb, t->cap);; i = (i + 1) & (t->cap - 1)) {
        if (t->slot[i].gen != t->gen)
            return NULL; /* load stays <= 1/2: a free slot always ends the probe */
        if (t->slot[i].pcb == pcb)
            return &t->slot[i];
    }
}

/* Doubles t, keeping its entries. False: out of memory. */
static bool table_grow(struct rto_table *t)
{
    size_t cap = t->cap * 2;
    struct rto_entry *s = calloc(cap, sizeof(*s)); /* gen 0: free */
    if (!s)
        return false;
    for (size_t j = 0; j < t->cap; j++) {
        if (t->slot[j].gen != t->gen)
            continue;
        size_t i = slot_of(t->slot[j].pcb, cap);
        while (s[i].gen)
            i = (i + 1) & (cap - 1);
        s[i] = t->slot[j];
        s[i].gen = 1;
    }
    free(t->slot);
    t->slot = s;
    t->cap = cap;
    t->gen = 1;
    counters.rto_table_grown++;
    return true;
}

/* An entry for pcb in t, grown past load 1/2 first; NULL: out of memory. */
static struct rto_entry *table_insert(struct rto_table *t, const struct tcp_pcb *pcb)
{
    if (2 * (t->n + 1) > t->cap && !table_grow(t))
        return NULL;
    size_t i = slot_of(pcb, t->cap);
    while (t->slot[i].gen == t->gen)
        i = (i + 1) & (t->cap - 1);
    t->slot[i] = (struct rto_entry){.pcb = pcb, .gen = t->gen};
    t->n++;
    return &t->slot[i];
}

/* Empty t with room for n entries at load <= 1/2. False: out of memory. */
static bool table_reset(struct rto_table *t, size_t n)
{
    size_t cap = RTO_TABLE_MIN;
    while (cap < 2 * n)
        cap *= 2;
    /* Keep a larger table until it is 8 x too large: no reallocation per
       walk when the number in flight hovers around a power of two. */
    if (cap <= t->cap && t->cap < 8 * cap)
        cap = t->cap;
    if (cap != t->cap) {
        struct rto_entry *s = calloc(cap, sizeof(*s)); /* gen 0: free */
        if (!s)
            return false;
        free(t->slot);
        t->slot = s;
        t->cap = cap;
        t->gen = 1;
    } else if (++t->gen == 0) { /* wrapped: slots of gen 0 must be free again */
        memset(t->slot, 0, cap * sizeof(*t->slot));
        t->gen = 1;
    }
    t->n = 0;
    return true;
}

/* The first expiry of a connection's RTO (no backoff yet) sends a probe
   instead: an empty segment at snd_nxt - 1 (lwIP's keep-alive), which the
   peer answers with an ACK of everything it holds. With thousands of
   connections the usual cause of an expiry is a lost or late ACK (the NIC's
   RX ring overflowing while the host is behind), not lost data, and the
   retransmission of a whole window (with TSO lwIP's segment and cwnd = 1 MSS
   are ~64 KB) cost the NIC and the wire as much again and drew duplicate
   ACKs that overflowed the ring further. cwnd is kept; if the data was lost,
   the next expiry (the RTO doubled) retransmits it. */
static void probe(struct tcp_pcb *pcb)
{
    tcp_keepalive(pcb); /* no data resent: an RTT sample in progress stays valid */
    counters.rto_probes++;
}

static void fire(struct tcp_pcb *pcb, struct rto_entry *e)
{
    if (e->timing) { /* Karn: the timed segment may be among those resent */
        e->timing = false;
        counters.rto_rtt_karn++;
    }
    /* As lwIP's RTO (tcp_slowtmr): ssthresh = half the flight, cwnd = 1 MSS. */
    tcpwnd_size_t eff_wnd = LWIP_MIN(pcb->cwnd, pcb->snd_wnd);
    pcb->ssthresh = eff_wnd >> 1;
    if (pcb->ssthresh < (tcpwnd_size_t)(pcb->mss << 1))
        pcb->ssthresh = (tcpwnd_size_t)(pcb->mss << 1);
    pcb->cwnd = pcb->mss;
    pcb->bytes_acked = 0;
    /* tcp_rexmit_rto counts toward lwIP's TCP_MAXRTX; ours must not, unless
       lwIP's count is to decide (give_up_ms 0). */
    u8_t nrtx = pcb->nrtx;
    tcp_rexmit_rto(pcb);
    if (give_up_ms)
        pcb->nrtx = nrtx;
    counters.fast_rto_fired++;
}

/* A segment whose pbuf the driver still references (pbuf_ref in its
   netif output, until the NIC completed it) has not left the host: it
   cannot be lost, and an RTO now would only collapse cwnd (lwIP's
   tcp_rexmit_rto then retransmits nothing while any unacked segment is
   busy). As Linux's skb_still_in_host_queue. With thousands of connections
   behind one TX ring the queueing delay exceeds any RTO (docs/design.md §7). */
static bool in_host_queue(const struct tcp_pcb *pcb)
{
    for (const struct tcp_seg *seg = pcb->unacked; seg; seg = seg->next)
        if (seg->p && seg->p->ref != 1)
            return true;
    return false;
}

/* Bring pcb's send-buffer capacity toward target (see SND_BUDGET_BYTES). */
static void snd_budget(struct tcp_pcb *pcb, uint32_t target)
{
    if (pcb->state != ESTABLISHED)
        return;
    uint32_t queued = pcb->snd_lbb - pcb->lastack;
    uint32_t cap = (uint32_t)pcb->snd_buf + queued;
    if (cap > snd_cap_max)
        snd_cap_max = cap;
    if (target > snd_cap_max)
        target = snd_cap_max;
    if (cap > target) {
        uint32_t cut = LWIP_MIN((uint32_t)pcb->snd_buf, cap - target);
        if (cut) {
            pcb->snd_buf = (tcpwnd_size_t)(pcb->snd_buf - cut);
            counters.snd_buf_cut++;
        }
    } else if (cap < target) {
        pcb->snd_buf = (tcpwnd_size_t)(pcb->snd_buf + (target - cap));
        counters.snd_buf_raised++;
    }
}

/* The budget's share per connection among n, within its bounds. */
static uint32_t snd_share(size_t n)
{
    uint32_t share = n ? SND_BUDGET_BYTES / (uint32_t)n : SND_BUDGET_BYTES;
    return share < SND_MIN_BYTES ? SND_MIN_BYTES : share;
}

/* A sender: data written and not yet acknowledged, or ACK progress since
   the last walk (prev: its entry there, NULL if it had none). */
static bool snd_budget_sender(const struct tcp_pcb *pcb, const struct rto_entry *prev)
{
    return pcb->state == ESTABLISHED &&
           (pcb->snd_lbb != pcb->lastack || (prev && prev->lastack != pcb->lastack));
}

/* The segment size for connections whose send buffer the budget sets to
   target (see TSO_AUTOSIZE_MIN_SEGS); 0: autosizing is off. */
static uint32_t tso_seg_for(uint32_t target)
{
    uint32_t wire = atomic_load_explicit(&tso_wire_mss, memory_order_relaxed);
    uint32_t max = atomic_load_explicit(&tso_seg_max, memory_order_relaxed);
    if (!wire)
        return 0;
    uint32_t seg = target / 2 / wire * wire;
    if (seg < TSO_AUTOSIZE_MIN_SEGS * wire)
        seg = TSO_AUTOSIZE_MIN_SEGS * wire;
    return seg < max ? seg : max;
}

/* Give an established connection segments of seg bytes (0: leave it). One
   whose mss the application did not raise past the wire MSS is not TSO's.
   A cut waits while segments are unsent: tcp_write appends to the last one
   and asserts, aborting the process, that it (with its options and its
   pbuf's spare room, allocated for the mss of its time) fits pcb->mss. A
   retransmission can still bring a larger unacked segment back to the
   unsent queue: stack_tcp_write restores the mss for it. */
static void tso_autosize(struct tcp_pcb *pcb, uint32_t seg)
{
    if (!seg || pcb->state != ESTABLISHED ||
        pcb->mss < atomic_load_explicit(&tso_wire_mss, memory_order_relaxed))
        return;
    if (seg < pcb->mss && pcb->unsent) {
        counters.tso_cut_deferred++;
        return;
    }
    if (pcb->mss != seg) {
        pcb->mss = (u16_t)seg;
        counters.tso_resized++;
    }
}

void stack_tcp_write_run_begin(struct tcp_pcb *pcb)
{
    uint32_t seg_max = atomic_load_explicit(&tso_seg_max, memory_order_relaxed);
    if (pcb->unsent && pcb->mss < seg_max) { /* autosizing may have cut it */
        const struct tcp_seg *last = pcb->unsent;
        while (last->next)
            last = last->next;
        uint32_t need =
            (uint32_t)last->len + LWIP_TCP_OPT_LENGTH(last->flags) + pcb->unsent_oversize;
        if (need > pcb->mss) {
            pcb->mss = (u16_t)LWIP_MIN(need, 0xffffu);
            counters.tso_mss_restored++;
        }
    }
    stack_chksum_copy_begin(); /* checksum offload: the copy does not sum */
}

void stack_tcp_write_run_end(void)
{
    stack_chksum_copy_end();
}

err_t stack_tcp_write(struct tcp_pcb *pcb, const void *buf, u16_t len, u8_t flags)
{
    stack_tcp_write_run_begin(pcb);
    err_t err = tcp_write(pcb, buf, len, flags);
    stack_tcp_write_run_end();
    return err;
}

/* lwIP's persist timer (the peer's window too small for the first unsent
   segment, nothing in flight) splits that segment at the window and
   asserts, aborting the process, that the window is at most pcb->mss. After
   a cut, a retransmission can put a segment built under the old mss at the
   head of the unsent queue, and a peer offering a window between the two
   sizes would trip it: the mss is raised back to that segment's length
   first. The first probe comes three slow-timer ticks (1-1.5 s) after
   persist starts; while a connection is in persist, walks come at least
   every PERSIST_WALK_MS. Autosizing cuts no mss while segments are unsent.
   True: pcb is in persist. */
#define PERSIST_WALK_MS 500
static bool persist_fit(struct tcp_pcb *pcb)
{
    if (!pcb->persist_backoff)
        return false;
    if (pcb->unsent && pcb->unsent->len > pcb->mss) {
        pcb->mss = pcb->unsent->len;
        counters.tso_mss_restored++;
    }
    return true;
}

uint32_t stack_tcp_write_lowat(void)
{
    return running ? (uint32_t)counters.write_lowat : 0;
}

void stack_rto_set_tso(uint16_t wire_mss, uint16_t seg_max)
{
    atomic_store(&tso_wire_mss, seg_max >= wire_mss ? wire_mss : 0);
    atomic_store(&tso_seg_max, seg_max);
}

static bool pcb_is_active(const struct tcp_pcb *pcb)
{
    for (const struct tcp_pcb *p = tcp_active_pcbs; p; p = p->next)
        if (p == pcb)
            return true;
    return false;
}

/* Time to the next deadline, as an unsigned delay from now (0: due). */
static uint32_t left_ms(uint32_t now, uint32_t since, uint32_t span)
{
    uint32_t age = now - since;
    return age >= span ? 0 : span - age;
}

/* Hole repair. lwIP 2.1.3 has no SACK, retransmits fast only at the third
   duplicate ACK and leaves fast recovery at the first partial ACK, so a
   second hole in one flight, or a hole with fewer than three segments
   behind it (a small cwnd after an RTO), waits for the RTO, whose go-back-N
   resends the whole flight and restarts from one segment: under random 5 %
   loss a download could fall into rounds of RTOs at ~0.5 MB/s. When
   duplicate ACKs show that the peer holds data past lastack and no ACK
   progress came for the SRTT (at least HOLE_WAIT_MIN_MS), the first unacked
   segment alone is resent once per lastack: as a fast retransmit (lwIP's
   tcp_rexmit_fast: ssthresh = flight / 2) outside fast recovery, as NewReno's
   partial-ACK retransmission (RFC 6582) inside it. The RTO still covers a
   lost retransmission and a lost tail. */
#define HOLE_WAIT_MIN_MS 2

static uint32_t hole_wait_ms(const struct rto_entry *e)
{
    uint32_t srtt = (e->srtt8 ? e->srtt8 : host_rtt.srtt8) / 8;
    return srtt > HOLE_WAIT_MIN_MS ? srtt : HOLE_WAIT_MIN_MS;
}

/* Returns the ms until the hole-repair deadline, or UINT32_MAX if none. */
static uint32_t hole_repair(struct tcp_pcb *pcb, struct rto_entry *e, uint32_t now)
{
    if (!pcb->dupacks || pcb->state != ESTABLISHED ||
        (e->hole_resent && e->hole_lastack == pcb->lastack))
        return UINT32_MAX;
    uint32_t left = left_ms(now, e->since_ms, hole_wait_ms(e));
    if (left)
        return left;
    if (in_host_queue(pcb))
        return 1;    /* not sent yet: cannot be lost */
    if (e->timing) { /* Karn: lwIP resets nrtx at the next ACK, before a walk sees it */
        e->timing = false;
        counters.rto_rtt_karn++;
    }
    if (pcb->flags & TF_INFR)
        tcp_rexmit(pcb);
    else
        tcp_rexmit_fast(pcb);
    tcp_output(pcb);
    e->hole_resent = true;
    e->hole_lastack = pcb->lastack;
    counters.rto_hole_resent++;
    return UINT32_MAX;
}

static void tick(void *arg)
{
    (void)arg;
    uint32_t now = sys_now();
    uint32_t discover = min_rto_ms ? LWIP_MAX(min_rto_ms / 2, 1u) : RTO_IDLE_PERIOD_MS;
    uint32_t next = discover;
    struct tcp_pcb *doomed[RTO_ABORTS_PER_SCAN];
    unsigned n_doomed = 0;

    /* Tracked: pcbs with data in flight, and those with RTT state (kept
       while the pcb lives, so an idle keep-alive connection keeps its SRTT).
       Sized for the last walk's pcbs, grown on demand: a counting pass first
       took half of the walk's time at 10,000 connections (one cache miss
       per pcb for its link and one for its unacked list). */
    struct rto_table *old = &tables[cur_table], *t = &tables[cur_table ^ 1];
    if (!table_reset(t, LWIP_MAX(old->n, last_pcbs))) {
        sys_timeout(discover, tick, NULL); /* keep the old state; lwIP's RTO still runs */
        return;
    }
    counters.rto_scans++;
    /* The budget's share from the last walk's count (this walk's is known
       only at its end). */
    size_t n_pcbs = 0, n_senders = 0;
    bool persist_seen = false;
    uint32_t snd_target = snd_share(last_pcbs);
    uint32_t snd_target_sender = snd_share(last_senders);
    counters.snd_buf_target = snd_target;
    counters.snd_buf_sender_target =
        snd_cap_max && snd_target_sender > snd_cap_max ? snd_cap_max : snd_target_sender;
    /* Bursts only where the budget cuts (snd_cap_max: the configured size,
       known once a connection was walked). */
    uint32_t lowat = snd_cap_max && snd_target < snd_cap_max
                         ? (uint32_t)((uint64_t)snd_target * WRITE_LOWAT_NUM / WRITE_LOWAT_DEN)
                         : 0;
    counters.write_lowat = lowat;
    counters.tso_seg_target = 0;
    uint32_t tso_seg = tso_seg_for(snd_target);
    uint32_t tso_seg_sender = tso_seg_for(snd_target_sender);
    bool kick = true; /* until the TX ring refuses a kicked pcb */
    /* Probes only with many connections in flight, where a lost ACK is the
       likely cause; with few, an expiry is lost data, and a probe first
       would delay its repair by an RTO (a 256 MB download under 5 % loss:
       6.5 -> 30 s). */
    bool probe_first = counters.rto_tracked >= RTO_PROBE_MIN_FLIGHT;
    size_t in_flight = 0, with_srtt = 0;
    uint64_t srtt_sum8 = 0;
    uint32_t rto_max = 0;

    for (struct tcp_pcb *pcb = tcp_active_pcbs; pcb; pcb = pcb->next, n_pcbs++) {
        const struct rto_entry *prev = table_find(old, pcb);
        if (prev && prev->key != pcb_key(pcb))
            prev = NULL; /* another connection's pcb at the same address */
        bool sender = snd_budget_sender(pcb, prev);
        n_senders += sender;
        snd_budget(pcb, sender ? snd_target_sender : snd_target);
        tso_autosize(pcb, sender ? tso_seg_sender : tso_seg);
        persist_seen |= persist_fit(pcb);
        if (pcb->state == ESTABLISHED && pcb->mss > counters.tso_seg_target)
            counters.tso_seg_target = pcb->mss;
        /* The driver refused this pcb's output (TX ring full: ERR_MEM, lwIP
           sets TF_NAGLEMEMERR and keeps the segment unsent). lwIP tries
           again only on the pcb's next ACK or write; one with nothing in
           flight would wait for the 2 s poll. Kick it here until the ring
           refuses again (as a NIC's TX-space wakeup restarts a stopped queue). */
        if (kick && pcb->unsent && (pcb->flags & TF_NAGLEMEMERR)) {
            tcp_output(pcb);
            counters.tx_kicked++;
            kick = !(pcb->flags & TF_NAGLEMEMERR);
        }
        if (!pcb->unacked && !prev)
            continue;
        struct rto_entry *e = table_insert(t, pcb);
        if (!e)
            continue; /* out of memory: untracked this walk; lwIP's RTO still runs */
        if (prev) {
            *e = *prev;
            e->gen = t->gen; /* prev's is the old table's */
        } else {
            e->key = pcb_key(pcb);
            e->lastack = pcb->lastack;
            e->since_ms = e->stall_ms = now;
            e->backoff = 0;
        }
        if (e->lastack != pcb->lastack) {
            e->lastack = pcb->lastack;
            e->since_ms = e->stall_ms = now;
            e->backoff = 0;
        }
        rtt_measure(e, pcb, now);
        if (e->srtt8) {
            with_srtt++;
            srtt_sum8 += e->srtt8;
        }
        if (!pcb->unacked) {
            /* Nothing in flight: the clocks run only while data is (RFC
               6298 5.1: start the timer when data is sent and it is not
               running). Without this a connection that sent again after
               an idle spell (the next request of a keep-alive
               connection, or a segment the full TX ring had refused) was
               judged by its last ACK progress from before the spell, and
               its first walk fired a spurious RTO. */
            e->since_ms = e->stall_ms = now;
            continue;
        }
        in_flight++;
        if (give_up_ms && pcb->state != SYN_RCVD) {
            if (now - e->stall_ms >= give_up_ms) {
                if (n_doomed < RTO_ABORTS_PER_SCAN)
                    doomed[n_doomed++] = pcb;
                continue;
            }
            if (pcb->nrtx > RTO_NRTX_HOLD) {
                pcb->nrtx = RTO_NRTX_HOLD;
                e->rtt_nrtx = RTO_NRTX_HOLD; /* ours, not a retransmission */
            }
            next = LWIP_MIN(next, left_ms(now, e->stall_ms, give_up_ms));
        }
        if (!min_rto_ms)
            continue;
        uint32_t hole_left = hole_repair(pcb, e, now);
        if (hole_left != UINT32_MAX)
            next = LWIP_MIN(next, hole_left);
        uint32_t rto = rto_base(e) << e->backoff;
        if (now - e->since_ms >= rto) {
            if (in_host_queue(pcb)) {
                counters.rto_host_queued++; /* the clock restarts, no backoff */
            } else if (e->backoff == 0 && probe_first) {
                probe(pcb);
                e->backoff++;
                rto = rto_base(e) << e->backoff;
            } else {
                fire(pcb, e);
                if (e->backoff < RTO_MAX_BACKOFF)
                    e->backoff++;
                rto = rto_base(e) << e->backoff;
            }
            e->since_ms = now;
        }
        rto_max = LWIP_MAX(rto_max, rto);
        next = LWIP_MIN(next, left_ms(now, e->since_ms, rto));
    }
    last_pcbs = n_pcbs;
    last_senders = n_senders;
    counters.snd_senders = n_senders;
    counters.rto_tracked = in_flight;
    counters.rto_srtt_ms = with_srtt ? (srtt_sum8 / with_srtt + 4) / 8 : 0;
    counters.rto_max_ms = rto_max;
    cur_table ^= 1;

    /* Abort after the walk: tcp_abort unlinks and frees the pcb and runs its
       error callback, which may close other pcbs; so check each is still there. */
    for (unsigned i = 0; i < n_doomed; i++) {
        if (!pcb_is_active(doomed[i]))
            continue;
        counters.rto_give_up++;
        stack_tcp_abort(doomed[i]);
    }
    uint32_t floor_ms = (uint32_t)LWIP_MIN(n_pcbs / RTO_WALK_PCBS_PER_MS, RTO_IDLE_PERIOD_MS);
    uint32_t due = LWIP_MAX(next, LWIP_MAX(floor_ms, 1u));
    sys_timeout(persist_seen ? LWIP_MIN(due, PERSIST_WALK_MS) : due, tick, NULL);
}

void stack_rto_start(uint32_t min_ms, uint32_t give_up)
{
    if (running || (!min_ms && !give_up))
        return;
    min_rto_ms = min_ms;
    give_up_ms = give_up;
    running = true;
    host_rtt = (struct rtt_est){0};
    snd_cap_max = 0;
    last_pcbs = last_senders = 0;
    counters.write_lowat = 0; /* until the first walk */
    sys_timeout(1, tick, NULL);
}

void stack_rto_stop(void)
{
    if (!running)
        return;
    sys_untimeout(tick, NULL);
    running = false;
    for (int i = 0; i < 2; i++) {
        free(tables[i].slot);
        tables[i] = (struct rto_table){0};
    }
}

void stack_tcp_abort(struct tcp_pcb *pcb)
{
    switch (pcb->state) {
    case SYN_RCVD:
    case ESTABLISHED:
    case FIN_WAIT_1:
    case FIN_WAIT_2:
    case CLOSE_WAIT:
    case CLOSING:
    case LAST_ACK: {
        u32_t edge = pcb->lastack + pcb->snd_wnd;
        u32_t seq = TCP_SEQ_LEQ(pcb->snd_nxt, edge) ? pcb->snd_nxt : edge;
        tcp_rst(pcb, seq, pcb->rcv_nxt, &pcb->local_ip, &pcb->remote_ip, pcb->local_port,
                pcb->remote_port);
        tcp_abandon(pcb, 0);
        return;
    }
    default:
        tcp_abort(pcb);
        return;
    }
}

const struct stack_rto_counters *stack_rto_counters(void)
{
    return &counters;
}
