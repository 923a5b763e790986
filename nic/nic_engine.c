/*
 * nic_engine.c - the NIC device model: queue memory, the engine thread that
 * moves packets between the rings and the wire, doorbells and interrupts.
 *
 * The engine is the only writer of device state (flow contexts, counters,
 * CQ producer indices); the host reaches it only through the queues.
 */
#define _GNU_SOURCE
#include "nic_engine.h"
#include "nic_csum.h"
#include "nic_dev.h"
#include "nic_flow.h"
#include "nic_link.h"
#include "nic_seg.h"
#include "nic_tls.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ENGINE_BUDGET     64           /* descriptors / packets per poll round */
#define STATS_SNAPSHOT_NS (5000000ull) /* publish counters every 5 ms */
/* After a round with no work the engine polls on for at most
   ENGINE_IDLE_SPINS rounds and ENGINE_SPIN_NS, then sleeps in ppoll, which
   wakes it on TUN data or a doorbell. Each idle round reads TUN (a syscall,
   2-3 us here), and the engine runs at nice -10 next to the client and the
   host on few cores: 64 rounds took a core that an upload's client and
   host need (docs/design.md §2). */
#define ENGINE_IDLE_SPINS 8
#define ENGINE_SPIN_NS    10000ull
/* Interrupt moderation applies while the last interrupt is younger than
   this many irq_coalesce_ns and at least NIC_IRQ_BULK_BYTES moved since
   (irq_now): a bulk transfer, not a request waiting for its answer. */
#define NIC_IRQ_ADAPT      4
#define NIC_IRQ_BULK_BYTES (64u * 1024u)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void nic_thread_nice(const char *who, int delta)
{
    if (delta == 0)
        return;
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);
    if (errno == 0 && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice + delta) == 0)
        return;
    fprintf(stderr, "anic: warning: %s stays at the process's priority (nice %+d: %s)\n", who,
            delta, strerror(errno));
}

static void *alloc_zero(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n) != 0)
        return NULL;
    memset(p, 0, n);
    return p;
}

static bool is_pow2(uint32_t x)
{
    return x && !(x & (x - 1));
}

static void tls_post_tx_cqe(void *sink, const struct nic_cqe *e)
{
    nic_engine_post_cqe(sink, false, e);
}

struct nic_dev *nic_dev_create(const struct nic_dev_cfg *cfg, char *err, size_t errlen)
{
    if (!is_pow2(cfg->tx_ring_size) || !is_pow2(cfg->rx_ring_size)) {
        snprintf(err, errlen, "ring sizes must be powers of two");
        return NULL;
    }
    struct nic_dev *dev = alloc_zero(sizeof(*dev));
    if (!dev) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    dev->cfg = *cfg;
    dev->doorbell_fd = dev->irq_fd = -1;
    struct nic_queues *q = &dev->queues;
    /* The TX CQ also carries tag reports (several per segment): 4x the ring. */
    q->tx_size = cfg->tx_ring_size;
    q->tx_cq_size = cfg->tx_ring_size * 4;
    q->rx_size = q->rx_cq_size = cfg->rx_ring_size;
    q->tx_ring = alloc_zero(sizeof(*q->tx_ring) * q->tx_size);
    q->rx_ring = alloc_zero(sizeof(*q->rx_ring) * q->rx_size);
    q->tx_cq = alloc_zero(sizeof(*q->tx_cq) * q->tx_cq_size);
    q->rx_cq = alloc_zero(sizeof(*q->rx_cq) * q->rx_cq_size);
    q->tx_idx = alloc_zero(sizeof(*q->tx_idx));
    q->rx_idx = alloc_zero(sizeof(*q->rx_idx));
    q->tx_cq_idx = alloc_zero(sizeof(*q->tx_cq_idx));
    q->rx_cq_idx = alloc_zero(sizeof(*q->rx_cq_idx));
    dev->flows = nic_flow_table_new(cfg->max_flows, nic_tls_flow_release);
    dev->tls = (struct nic_tls_ctx){.c = &dev->c,
                                    .flows = dev->flows,
                                    .rx_reorder_bytes = cfg->rx_reorder_bytes,
                                    .csum_trusted = cfg->rx_csum_trusted,
                                    .post_tx_cqe = tls_post_tx_cqe,
                                    .sink = dev};
    dev->pkt = malloc(NIC_MAX_PACKET);
    dev->tso_pkt = malloc(NIC_MAX_PACKET);
    uint64_t scratch = cfg->scratch_bytes ? cfg->scratch_bytes : NIC_SCRATCH_DEFAULT;
    if (scratch < NIC_TLS_SCRATCH_FIXED ||
        nic_tls_ctx_init(&dev->tls, scratch, cfg->ctx_cache, cfg->fetch_ns) != 0) {
        snprintf(err, errlen, "NIC scratch pool: %" PRIu64 " bytes (at least %u)", scratch,
                 NIC_TLS_SCRATCH_FIXED);
        dev->cfg.tun_fd = -1;
        nic_dev_destroy(dev);
        return NULL;
    }
    if (!q->tx_ring || !q->rx_ring || !q->tx_cq || !q->rx_cq || !q->tx_idx || !q->rx_idx ||
        !q->tx_cq_idx || !q->rx_cq_idx || !dev->flows || !dev->pkt || !dev->tso_pkt) {
        snprintf(err, errlen, "out of memory");
        dev->cfg.tun_fd = -1; /* caller keeps its fd on failure */
        nic_dev_destroy(dev);
        return NULL;
    }
    /* Poison descriptor rings: a slot the driver never wrote has an invalid
       kind and is caught at once (docs/design.md §3). */
    memset(q->tx_ring, 0xa5, sizeof(*q->tx_ring) * q->tx_size);
    memset(q->rx_ring, 0xa5, sizeof(*q->rx_ring) * q->rx_size);
    dev->doorbell_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    dev->irq_fd = eventfd(0, EFD_CLOEXEC);
    if (dev->doorbell_fd < 0 || dev->irq_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        dev->cfg.tun_fd = -1;
        nic_dev_destroy(dev);
        return NULL;
    }
    dev->link = nic_link_create(cfg->tun_fd, &cfg->fault_tx, &cfg->fault_rx, cfg->pcap_path,
                                cfg->mtu, cfg->tun_gso, err, errlen);
    if (!dev->link) {
        dev->cfg.tun_fd = -1;
        nic_dev_destroy(dev);
        return NULL;
    }
    pthread_mutex_init(&dev->stats_lock, NULL);
    return dev;
}

void nic_dev_destroy(struct nic_dev *dev)
{
    if (!dev)
        return;
    nic_dev_stop(dev);
    if (dev->link)
        nic_link_destroy(dev->link); /* closes the TUN fd */
    else if (dev->cfg.tun_fd >= 0)
        close(dev->cfg.tun_fd);
    if (dev->doorbell_fd >= 0)
        close(dev->doorbell_fd);
    if (dev->irq_fd >= 0)
        close(dev->irq_fd);
    struct nic_queues *q = &dev->queues;
    free(q->tx_ring);
    free(q->rx_ring);
    free(q->tx_cq);
    free(q->rx_cq);
    free(q->tx_idx);
    free(q->rx_idx);
    free(q->tx_cq_idx);
    free(q->rx_cq_idx);
    nic_flow_table_free(dev->flows);
    nic_tls_ctx_fini(&dev->tls);
    free(dev->pkt);
    free(dev->tso_pkt);
    if (dev->link)
        pthread_mutex_destroy(&dev->stats_lock);
    free(dev);
}

const struct nic_queues *nic_dev_queues(struct nic_dev *dev)
{
    return &dev->queues;
}

/* --- doorbell and interrupt (Dekker-style: flag store, full fence, re-check) --- */

bool nic_dev_doorbell(struct nic_dev *dev)
{
    atomic_thread_fence(memory_order_seq_cst);
    /* The load first: an awake engine costs no atomic write of a shared line. */
    if (!atomic_load_explicit(&dev->engine_sleeping, memory_order_relaxed) ||
        !atomic_exchange_explicit(&dev->engine_sleeping, 0, memory_order_relaxed))
        return false;
    uint64_t one = 1;
    if (write(dev->doorbell_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: counter saturated, the engine will wake anyway. */
    }
    return true;
}

void nic_dev_irq_arm(struct nic_dev *dev)
{
    atomic_store_explicit(&dev->irq_armed, 1, memory_order_seq_cst);
}

void nic_dev_irq_disarm(struct nic_dev *dev)
{
    atomic_store_explicit(&dev->irq_armed, 0, memory_order_relaxed);
}

void nic_dev_irq_kick(struct nic_dev *dev)
{
    uint64_t one = 1;
    if (write(dev->irq_fd, &one, sizeof(one)) < 0) {
        /* only fails when the counter would overflow: already pending */
    }
}

int nic_dev_irq_wait(struct nic_dev *dev, int timeout_ms)
{
    struct pollfd pfd = {.fd = dev->irq_fd, .events = POLLIN};
    int r = poll(&pfd, 1, timeout_ms);
    if (r <= 0)
        return 0;
    uint64_t v;
    if (read(dev->irq_fd, &v, sizeof(v)) < 0)
        return 0;
    return 1;
}

/* Why completions interrupt now (irq_now); IRQ_WAIT: they may wait. */
enum irq_why {
    IRQ_WAIT,
    IRQ_UNMODERATED, /* irq_coalesce_ns = 0 */
    IRQ_FRESH,       /* not a bulk transfer: quiet before, little moved, or the wire paused */
    IRQ_TX_DRY,      /* a sender's TX ring ran empty: it waits for these */
    IRQ_QUEUE,       /* a ring or completion queue filling */
    IRQ_DUE,         /* held for irq_coalesce_ns */
    IRQ_WHY_COUNT
};

/* Engine side: fire the interrupt if the host armed it, counted under why
   (nic.irqs_*; never IRQ_WAIT). */
static void engine_irq(struct nic_dev *dev, uint64_t now, enum irq_why why)
{
    uint64_t *const by_why[IRQ_WHY_COUNT] = {[IRQ_UNMODERATED] = &dev->c.irqs_unmoderated,
                                             [IRQ_FRESH] = &dev->c.irqs_fresh,
                                             [IRQ_TX_DRY] = &dev->c.irqs_tx_dry,
                                             [IRQ_QUEUE] = &dev->c.irqs_queue,
                                             [IRQ_DUE] = &dev->c.irqs_due};
    dev->unsignalled = false;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&dev->irq_armed, memory_order_relaxed) &&
        atomic_exchange_explicit(&dev->irq_armed, 0, memory_order_relaxed)) {
        dev->c.irqs++;
        (*by_why[why])++;
        dev->last_irq_ns = now;
        dev->bytes_since_irq = 0;
        dev->tx_bytes_since_irq = 0;
        nic_dev_irq_kick(dev);
    }
}

/* Whether completions not yet signalled must interrupt now, or may wait for
   more (cfg.irq_coalesce_ns). Waiting pays when the engine, encrypting,
   spaces its output so that the peer's ACKs come back one by one: without
   it the host woke for each (2x the wake-ups per byte of plain TCP at the
   same load) and every wake-up is a poll, a read and often a doorbell
   write. A sender waits only while it keeps the TX ring fed: with the ring
   empty after 64 KiB or more went out since the last interrupt, the host
   has nothing queued and waits for these completions (the ACKs that open
   its window), so holding them idles the wire (one curl download ran at
   0.4x plain, 0.6x nic, through a 192 KiB send buffer). A receiver's
   ring is empty too, but it waits for nothing: its completions are held.
   It never waits when a queue fills: the TX ring half full (the host may
   want room), a completion queue a quarter full, fewer than half the RX
   buffers left, or the wire paused for them. */
static enum irq_why irq_now(struct nic_dev *dev, uint64_t now)
{
    uint64_t hold = dev->cfg.irq_coalesce_ns;
    if (!hold)
        return IRQ_UNMODERATED;
    if (now - dev->last_irq_ns >= NIC_IRQ_ADAPT * hold ||
        dev->bytes_since_irq < NIC_IRQ_BULK_BYTES || dev->rx_paused)
        return IRQ_FRESH;
    struct nic_queues *q = &dev->queues;
    uint32_t tx_used = __atomic_load_n(&q->tx_idx->prod, __ATOMIC_ACQUIRE) - dev->tx_cons;
    uint32_t tx_cq = dev->tx_cq_prod - __atomic_load_n(&q->tx_cq_idx->cons, __ATOMIC_ACQUIRE);
    uint32_t rx_cq = dev->rx_cq_prod - __atomic_load_n(&q->rx_cq_idx->cons, __ATOMIC_ACQUIRE);
    uint32_t rx_bufs = __atomic_load_n(&q->rx_idx->prod, __ATOMIC_ACQUIRE) - dev->rx_cons;
    if (tx_used == 0 && dev->tx_bytes_since_irq >= NIC_IRQ_BULK_BYTES)
        return IRQ_TX_DRY;
    if (tx_used >= q->tx_size / 2 || tx_cq >= q->tx_cq_size / 4 || rx_cq >= q->rx_cq_size / 4 ||
        rx_bufs < q->rx_size / 2)
        return IRQ_QUEUE;
    return now - dev->unsignalled_ns >= hold ? IRQ_DUE : IRQ_WAIT;
}

/* --- completion queues --- */

/* The entry must be fully written before its phase. */
void nic_engine_post_cqe(struct nic_dev *dev, bool rx, const struct nic_cqe *src)
{
    struct nic_queues *q = &dev->queues;
    struct nic_cqe *cq = rx ? q->rx_cq : q->tx_cq;
    uint32_t size = rx ? q->rx_cq_size : q->tx_cq_size;
    struct nic_ring_idx *idx = rx ? q->rx_cq_idx : q->tx_cq_idx;
    uint32_t *prod = rx ? &dev->rx_cq_prod : &dev->tx_cq_prod;
    uint32_t cons = __atomic_load_n(&idx->cons, __ATOMIC_ACQUIRE);
    if (*prod - cons >= size) {
        /* Cannot happen while the driver keeps the rules of nic_abi.h (TX:
           the room check in engine_tx_poll; RX: one buffer per free entry). */
        if (rx)
            dev->c.rx_cq_overflow++;
        else
            dev->c.tx_cq_overflow++;
        return;
    }
    struct nic_cqe *e = &cq[nic_ring_slot(*prod, size)];
    uint8_t phase = nic_cq_phase(*prod, size);
    memcpy(e, src, offsetof(struct nic_cqe, phase));
    __atomic_store_n(&e->phase, phase, __ATOMIC_RELEASE);
    (*prod)++;
    __atomic_store_n(&idx->prod, *prod, __ATOMIC_RELEASE);
    dev->work_for_host = true;
}

static void tx_complete(struct nic_dev *dev, const struct nic_tx_desc *d, uint8_t status)
{
    if (!(d->flags & NIC_TXF_SIGNAL) && status == NIC_TX_OK)
        return;
    struct nic_cqe e = {.kind = NIC_CQE_TX_DONE,
                        .status = status,
                        .cookie = d->cookie,
                        .flow_id = d->flow_id,
                        .desc_kind = d->kind};
    nic_engine_post_cqe(dev, false, &e);
}

/* --- flows seen from the engine --- */

static bool have_rx_flows(const struct nic_dev *dev)
{
    return dev->c.rx_tls_ctx != dev->c.rx_tls_del;
}

/* Every transmitted packet: an ACK of ours on an RX flow's connection moves
   the right edge of the host's receive window (nic_tls_rx_observe_ack). */
static void engine_tx_observe(struct nic_dev *dev, const uint8_t *pkt, size_t len)
{
    struct nic_tcp_view v;
    if (!have_rx_flows(dev) || !nic_parse_tcp(pkt, len, &v) || !(v.tcp_flags & NIC_TCP_ACK))
        return;
    /* Our segment runs host -> peer; the RX flow is keyed peer -> host. */
    struct nic_flow *f = nic_flow_lookup_rx(dev->flows, v.daddr, v.saddr, v.dport, v.sport);
    if (f && f->rx) /* flow-table state: no context access (docs/design.md §10) */
        nic_tls_rx_observe_ack(f, v.ack, v.window);
}

/* A received packet, already in the host buffer: verify checksums, then hand
   data segments of known RX flows to the TLS block. */
static void engine_rx_inspect(struct nic_dev *dev, uint8_t *pkt, size_t len, struct nic_cqe *cqe)
{
    struct nic_tcp_view v;
    if (!nic_parse_tcp(pkt, len, &v)) {
        /* The host reassembles fragments; the NIC never sees the segment
           whole, so for an RX flow its bytes are a hole. */
        if (have_rx_flows(dev) && nic_is_tcp_fragment(pkt, len))
            dev->c.rx_tls_skip_frag++;
        return;
    }
    if (!nic_tcp_csum_ok(pkt, &v)) {
        dev->c.rx_csum_bad++;
        return;
    }
    cqe->flags |= NIC_RXF_CSUM_OK;
    if (v.payload_len == 0)
        return;
    /* Received packets run from the peer (source) to our host (destination). */
    struct nic_flow *f = nic_flow_lookup_rx(dev->flows, v.saddr, v.daddr, v.sport, v.dport);
    if (f && f->rx && nic_tls_ctx_access(&dev->tls, f))
        nic_tls_rx_flow_packet(&dev->tls, f, pkt, &v, cqe);
}

/* --- TX: descriptors -> wire --- */

/* An offloaded segment: built in device memory pkt, records encrypted on the
   way. Returns an enum nic_tx_status. */
static int engine_tx_offload(struct nic_dev *dev, const struct nic_tx_desc *d, const uint8_t *host,
                             uint8_t *pkt)
{
    struct nic_flow *flow = nic_flow_get(dev->flows, d->flow_id);
    if (!flow || !flow->tx || !nic_tls_ctx_access(&dev->tls, flow)) {
        dev->c.tx_tls_no_ctx++;
        return NIC_TX_ERR_NO_CTX;
    }
    struct nic_tcp_view v;
    if (!nic_parse_tcp(host, d->len, &v)) {
        dev->c.tx_bad_desc++;
        return NIC_TX_ERR_BAD_DESC;
    }
    /* Longer than the MTU: a TSO segment (tso_ok), whose own checksum no
       one reads (engine_tx_wire). */
    int st = nic_tls_tx_packet(&dev->tls, flow, d->flow_id, &v, host, pkt, d->len,
                               d->len <= dev->cfg.mtu);
    if (st == NIC_TX_OK) /* headers (and bytes past the IP length) DMA'd as they are */
        dev->tx_copied += d->len - v.payload_len;
    return st;
}

struct tso_emit {
    struct nic_dev *dev;
    uint64_t now;
};

static void tso_emit(void *arg, const uint8_t *pkt, size_t len)
{
    struct tso_emit *e = arg;
    e->dev->tx_copied += len; /* nic_tso_cut built it in tso_pkt */
    nic_link_send(e->dev->link, pkt, len, e->now);
}

/* A DATA packet longer than the MTU must be a TCP segment whose headers plus
   mss fit the MTU: TSO cuts it. */
static bool tso_ok(const struct nic_dev *dev, const struct nic_tx_desc *d, const uint8_t *host)
{
    struct nic_tcp_view v;
    return d->mss && nic_parse_tcp(host, d->len, &v) && v.payload_off + d->mss <= dev->cfg.mtu;
}

/* Put a packet built for DATA d on the wire: as it is, or cut by TSO. */
static void engine_tx_wire(struct nic_dev *dev, const uint8_t *pkt, size_t len, uint32_t mss,
                           uint64_t now)
{
    struct nic_tcp_view v;
    if (len <= dev->cfg.mtu || !nic_parse_tcp(pkt, len, &v) || v.payload_len <= mss) {
        nic_link_send(dev->link, pkt, len, now);
        return;
    }
    dev->c.tx_tso_segments++;
    if (nic_link_send_tso(dev->link, pkt, &v, mss)) {
        dev->c.tx_tso_direct++;
        dev->c.tx_tso_packets += (v.payload_len + mss - 1) / mss;
        return;
    }
    struct tso_emit e = {.dev = dev, .now = now};
    dev->c.tx_tso_packets += nic_tso_cut(pkt, &v, mss, dev->tso_pkt, tso_emit, &e);
}

/* Checksum offload (NIC_TXF_CSUM) of a packet that goes out as it is: a
   NIC inserts the sum on the fly; this one writes it into the host's
   buffer, which the host does not touch before the completion (lwIP does
   not resend a segment whose pbuf the driver still holds). A TSO segment's
   packets (cut or GSO) and an offloaded segment's get checksums of their
   own anyway (engine_tx_wire, nic_tls_tx_packet). */
static void tx_csum_fill(struct nic_dev *dev, uint8_t *pkt, size_t len)
{
    struct nic_tcp_view v;
    if (!nic_parse_tcp(pkt, len, &v))
        return; /* not TCP: the host's own checksums */
    nic_tcp_csum_fix(pkt, &v);
    dev->c.tx_csum_filled++;
}

static void engine_tx_data(struct nic_dev *dev, const struct nic_tx_desc *d, uint64_t now)
{
    const uint8_t *host = (const uint8_t *)(uintptr_t)d->addr;
    if (d->len == 0 || (d->len > dev->cfg.mtu && !tso_ok(dev, d, host))) {
        dev->c.tx_bad_desc++;
        tx_complete(dev, d, NIC_TX_ERR_BAD_DESC);
        return;
    }
    if (d->flags & NIC_TXF_OFFLOAD) {
        /* Built where a GSO run can take it without a copy. */
        uint8_t *pkt = nic_link_tx_slot(dev->link, d->len);
        if (!pkt)
            pkt = dev->pkt;
        int st = engine_tx_offload(dev, d, host, pkt);
        if (st != NIC_TX_OK) {
            tx_complete(dev, d, (uint8_t)st);
            return;
        }
        engine_tx_observe(dev, pkt, d->len);
        engine_tx_wire(dev, pkt, d->len, d->mss, now);
    } else {
        if ((d->flags & NIC_TXF_CSUM) && d->len <= dev->cfg.mtu)
            tx_csum_fill(dev, (uint8_t *)(uintptr_t)d->addr, d->len);
        engine_tx_observe(dev, host, d->len);
        engine_tx_wire(dev, host, d->len, d->mss, now);
    }
    tx_complete(dev, d, NIC_TX_OK);
}

static void engine_tx_desc(struct nic_dev *dev, const struct nic_tx_desc *d, uint64_t now)
{
    dev->c.tx_desc++;
    int st;
    switch (d->kind) {
    case NIC_TX_DATA:
        engine_tx_data(dev, d, now);
        return;
    case NIC_TX_STATIC_CTX:
    case NIC_TX_PROGRESS:
    case NIC_TX_DUMP:
    case NIC_TX_DEL_CTX:
    case NIC_RX_PROGRESS:
    case NIC_RX_RESYNC_RESP:
        st = nic_tls_ctrl(&dev->tls, d);
        tx_complete(dev, d, (uint8_t)st);
        return;
    default:
        dev->c.tx_bad_desc++;
        tx_complete(dev, d, NIC_TX_ERR_BAD_DESC);
        return;
    }
}

/* With thousands of flows the next descriptors' packet headers, flow slots
   and TX state are cold, and each miss would stall the engine: while
   descriptor cons is handled (an offloaded segment: up to 64 KB to
   encrypt), the headers and slot of cons + 2 and the TX state of cons + 1
   (whose slot the previous call asked for) are loaded, as a NIC's DMA
   engine fetches ahead of its pipeline. Hints only: nothing is read that
   the descriptor's own handling would not. */
static void tx_prefetch(struct nic_dev *dev, uint32_t cons, uint32_t prod)
{
    const struct nic_queues *q = &dev->queues;
    if (prod - cons > 2) {
        const struct nic_tx_desc *d = &q->tx_ring[nic_ring_slot(cons + 2, q->tx_size)];
        if (d->kind == NIC_TX_DATA) {
            const uint8_t *host = (const uint8_t *)(uintptr_t)d->addr;
            __builtin_prefetch(host);
            __builtin_prefetch(host + 64);
            if (d->flags & NIC_TXF_OFFLOAD)
                nic_flow_prefetch(dev->flows, d->flow_id);
        }
    }
    if (prod - cons > 1) {
        const struct nic_tx_desc *d = &q->tx_ring[nic_ring_slot(cons + 1, q->tx_size)];
        if (d->kind == NIC_TX_DATA && (d->flags & NIC_TXF_OFFLOAD)) {
            const struct nic_flow *f = nic_flow_get(dev->flows, d->flow_id);
            if (f && f->resident)
                nic_tls_tx_prefetch(f);
        }
    }
}

static unsigned engine_tx_poll(struct nic_dev *dev, uint64_t now)
{
    struct nic_queues *q = &dev->queues;
    uint32_t prod = __atomic_load_n(&q->tx_idx->prod, __ATOMIC_ACQUIRE);
    uint32_t cons = dev->tx_cons;
    unsigned n = 0;
    while (cons != prod && n < ENGINE_BUDGET) {
        /* An offloaded segment may complete, fail, and report a tag for
           every record ending in it (the smallest record is 29 bytes): never
           start one without room for all of that in the TX CQ. */
        const struct nic_tx_desc *d = &q->tx_ring[nic_ring_slot(cons, q->tx_size)];
        uint32_t worst = 2;
        if (d->kind == NIC_TX_DATA && (d->flags & NIC_TXF_OFFLOAD))
            worst += 1 + d->len / 29u;
        uint32_t cq_used = dev->tx_cq_prod - __atomic_load_n(&q->tx_cq_idx->cons, __ATOMIC_ACQUIRE);
        if (q->tx_cq_size - cq_used < worst) {
            dev->c.tx_cq_backpressure++;
            dev->work_for_host = true; /* the host must drain; wake it */
            break;
        }
        tx_prefetch(dev, cons, prod);
        dev->bytes_since_irq += d->len;
        dev->tx_bytes_since_irq += d->len;
        engine_tx_desc(dev, d, now);
        cons++;
        n++;
    }
    if (n) {
        dev->tx_cons = cons;
        /* The slots are the driver's again: their buffers are no longer read. */
        __atomic_store_n(&q->tx_idx->cons, cons, __ATOMIC_RELEASE);
        dev->work_for_host = true;
    } else {
        dev->c.tx_ring_empty_polls++;
    }
    return n;
}

/* --- RX: wire -> buffers --- */

/* Hand a received packet to the host: its buffer slot is consumed, its
   completion posted. */
static void rx_complete(struct nic_dev *dev, const uint8_t *buf, size_t len, struct nic_cqe *e)
{
    dev->bytes_since_irq += len;
    /* A frame whose headers do not hold together is counted and still
       delivered, without NIC_RXF_CSUM_OK; lwIP makes its own checks. Only
       frames the checksum stage did not pass are classified again. */
    if (!(e->flags & NIC_RXF_CSUM_OK) && nic_ip_classify(buf, len, NULL) == NIC_IP_MALFORMED)
        dev->c.rx_malformed++;
    nic_engine_post_cqe(dev, true, e);
}

static void rx_consume_slot(struct nic_dev *dev)
{
    dev->rx_cons++;
    __atomic_store_n(&dev->queues.rx_idx->cons, dev->rx_cons, __ATOMIC_RELEASE);
}

/* --- LRO (docs/design.md §5): consecutive in-order data packets of one flow
   with the same marks are merged into one host buffer. Every wire packet
   went through the checksum stage and the TLS block on its own first, so
   the NIC's counters and marks are those of the wire packets; the
   completion keeps the first packet's record view, which describes the
   merged packet's first payload byte. Marked packets merge only within one
   NIC walk (struct nic_cqe view_walk). --- */

/* A packet that may start or extend a merge: checksums verified, a data
   segment with ACK and at most PSH, no IP options, no resync request. */
static bool lro_candidate(const uint8_t *pkt, size_t len, const struct nic_cqe *e,
                          struct nic_tcp_view *v)
{
    return (e->flags & NIC_RXF_CSUM_OK) && !(e->flags & NIC_RXF_RESYNC_REQ) &&
           nic_parse_tcp(pkt, len, v) && v->ip_hlen == 20 && v->payload_len > 0 &&
           (v->tcp_flags & ~NIC_TCP_PSH) == NIC_TCP_ACK;
}

/* The TCP checksum of a packet the NIC merged, for lwIP to check again;
   a host that trusts NIC_RXF_CSUM_OK does not (cfg.rx_csum_trusted). */
static void rx_tcp_csum_fix(struct nic_dev *dev, uint8_t *pkt, size_t len)
{
    struct nic_tcp_view v;
    if (dev->cfg.rx_csum_trusted)
        dev->c.rx_csum_left++;
    else if (nic_parse_tcp(pkt, len, &v))
        nic_tcp_csum_fix(pkt, &v);
}

static void lro_flush(struct nic_dev *dev)
{
    if (!dev->lro.open)
        return;
    uint8_t *p = dev->lro.buf;
    if (dev->lro.pkts > 1) {
        size_t tot = dev->lro.len;
        p[2] = (uint8_t)(tot >> 8);
        p[3] = (uint8_t)tot;
        p[10] = p[11] = 0;
        uint16_t ipc = nic_csum_fold(nic_csum_add(0, p, 20));
        memcpy(p + 10, &ipc, 2);
        rx_tcp_csum_fix(dev, p, tot);
        dev->c.rx_lro_packets++;
    }
    dev->lro.cqe.len = (uint32_t)dev->lro.len;
    rx_complete(dev, p, dev->lro.len, &dev->lro.cqe);
    dev->lro.open = false;
}

static void lro_open(struct nic_dev *dev, uint8_t *buf, uint32_t cap, size_t len,
                     const struct nic_tcp_view *v, const struct nic_cqe *e)
{
    dev->lro.open = true;
    dev->lro.buf = buf;
    dev->lro.cap = cap;
    dev->lro.len = v->payload_off + v->payload_len;
    dev->lro.hl = v->payload_off;
    dev->lro.next_seq = v->seq + (uint32_t)v->payload_len;
    dev->lro.pkts = 1;
    dev->lro.closed = (v->tcp_flags & NIC_TCP_PSH) != 0;
    dev->lro.cqe = *e;
    dev->lro.cqe.len = (uint32_t)len;
}

/* Everything but lengths, id, checksums, seq and PSH equal (ack and window
   included): the merged packet says what each of its parts said. */
static bool lro_same_headers(const uint8_t *a, const uint8_t *b, size_t hl)
{
    const uint8_t *ta = a + 20, *tb = b + 20;
    return memcmp(a, b, 2) == 0 && memcmp(a + 6, b + 6, 4) == 0 && memcmp(a + 12, b + 12, 8) == 0 &&
           memcmp(ta, tb, 4) == 0 && memcmp(ta + 8, tb + 8, 5) == 0 &&
           memcmp(ta + 14, tb + 14, 2) == 0 && memcmp(ta + 18, tb + 18, hl - 38) == 0;
}

/* After a hole or a retransmission in a flow, the next packets are not
   merged: lwIP sends a duplicate ACK per out-of-order segment it receives,
   and the kernel sender (lwIP has no SACK) needs three of them for a fast
   retransmit instead of a timeout. */
#define LRO_SINGLES_AFTER_GAP 3

/* Follow the flow's stream (once per received packet, LRO on); true if this
   packet must not be merged. */
static bool lro_alone(struct nic_dev *dev, const uint8_t *pkt, size_t len, const struct nic_cqe *e)
{
    struct nic_tcp_view vv, *v = &vv;
    if (!lro_candidate(pkt, len, e, v))
        return false;
    uint8_t tuple[12];
    memcpy(tuple, pkt + 12, 8);
    memcpy(tuple + 8, pkt + v->tcp_off, 4);
    bool same = dev->lro.last_valid && memcmp(tuple, dev->lro.last_tuple, sizeof(tuple)) == 0;
    if (same && v->seq != dev->lro.last_end)
        dev->lro.singles = LRO_SINGLES_AFTER_GAP;
    memcpy(dev->lro.last_tuple, tuple, sizeof(tuple));
    dev->lro.last_end = v->seq + (uint32_t)v->payload_len;
    dev->lro.last_valid = true;
    if (!dev->lro.singles)
        return false;
    dev->lro.singles--;
    return true;
}

/* Try to append the packet at p (already inspected, completion e) to the
   open merge; p lies right after the merged bytes in the same buffer. */
static bool lro_append(struct nic_dev *dev, uint8_t *p, size_t len, const struct nic_cqe *e,
                       bool alone)
{
    struct nic_tcp_view v;
    if (alone || dev->lro.closed || !lro_candidate(p, len, e, &v) || v.payload_off != dev->lro.hl ||
        v.seq != dev->lro.next_seq || e->flow_id != dev->lro.cqe.flow_id ||
        (e->flags & NIC_RXF_DECRYPTED) != (dev->lro.cqe.flags & NIC_RXF_DECRYPTED) ||
        ((e->flags & NIC_RXF_DECRYPTED) && e->view_walk != dev->lro.cqe.view_walk) ||
        dev->lro.len + v.payload_len > NIC_MAX_PACKET ||
        !lro_same_headers(dev->lro.buf, p, dev->lro.hl))
        return false;
    memmove(p, p + v.payload_off, v.payload_len);
    dev->lro.len += v.payload_len;
    dev->lro.next_seq += (uint32_t)v.payload_len;
    dev->lro.pkts++;
    if (v.tcp_flags & NIC_TCP_PSH) {
        dev->lro.buf[20 + 13] |= NIC_TCP_PSH;
        dev->lro.closed = true;
    }
    dev->c.rx_lro_merged++;
    return true;
}

/* A packet read into the open merge's buffer that does not extend it: close
   the merge and move the packet into a buffer of its own. Returns false if
   none is posted (dropped and counted, as on arrival). */
static bool lro_move_out(struct nic_dev *dev, const uint8_t *p, size_t len, struct nic_cqe *e,
                         uint8_t **out, uint32_t *cap)
{
    lro_flush(dev);
    struct nic_queues *q = &dev->queues;
    uint32_t prod = __atomic_load_n(&q->rx_idx->prod, __ATOMIC_ACQUIRE);
    if (dev->rx_cons == prod) {
        dev->c.rx_no_buffer++;
        return false;
    }
    const struct nic_rx_desc *d = &q->rx_ring[nic_ring_slot(dev->rx_cons, q->rx_size)];
    if (len > d->len) {
        dev->c.rx_lro_no_room++;
        rx_consume_slot(dev);
        return false;
    }
    *out = (uint8_t *)(uintptr_t)d->addr;
    *cap = d->len;
    memcpy(*out, p, len);
    e->cookie = d->cookie;
    rx_consume_slot(dev);
    return true;
}

/* A packet now in buffer buf (cap bytes, slot consumed): merge, open a
   merge, or complete it. */
static void rx_place(struct nic_dev *dev, uint8_t *buf, uint32_t cap, size_t len, struct nic_cqe *e,
                     bool alone)
{
    struct nic_tcp_view v;
    if (dev->cfg.lro && !alone && lro_candidate(buf, len, e, &v) && cap >= len + dev->cfg.mtu) {
        lro_open(dev, buf, cap, len, &v, e);
        if (dev->lro.closed)
            lro_flush(dev);
        return;
    }
    rx_complete(dev, buf, len, e);
}

/* Receive into the open merge's buffer, right behind the merged bytes:
   appending is then one move of the payload over its own headers. Returns
   false when the link has nothing. */
static bool rx_into_merge(struct nic_dev *dev, uint64_t now)
{
    uint8_t *p = dev->lro.buf + dev->lro.len;
    size_t len = nic_link_recv(dev->link, p, dev->cfg.mtu, now);
    if (!len)
        return false;
    dev->c.rx_packets++;
    dev->c.rx_bytes += len;
    struct nic_cqe e = {.kind = NIC_CQE_RX_PACKET, .len = (uint32_t)len};
    engine_rx_inspect(dev, p, len, &e);
    bool alone = lro_alone(dev, p, len, &e);
    if (lro_append(dev, p, len, &e, alone))
        return true;
    uint8_t *buf;
    uint32_t cap;
    if (lro_move_out(dev, p, len, &e, &buf, &cap))
        rx_place(dev, buf, cap, len, &e, alone);
    return true;
}

/* A GSO super-packet from TUN taken whole (docs/design.md §5 "One pass"):
   when no one observes the wire packets (nic_link_super_ok), one that LRO
   would merge entire (an in-order ACK/PSH data segment after no gap, a
   posted buffer that holds it) goes into one host buffer, decrypted in one
   walk, with the bytes, mark and view the split packets' merge would have.
   Returns false, having consumed nothing, if it must be split instead. */
static bool rx_super(struct nic_dev *dev, const struct nic_link_super *sp)
{
    const struct nic_tcp_view *v = &sp->v;
    const uint8_t *p = sp->pkt;
    if (v->ip_hlen != 20 || (v->tcp_flags & ~NIC_TCP_PSH) != NIC_TCP_ACK)
        return false;
    uint8_t tuple[12];
    memcpy(tuple, p + 12, 8);
    memcpy(tuple + 8, p + v->tcp_off, 4);
    bool same = dev->lro.last_valid && memcmp(tuple, dev->lro.last_tuple, sizeof(tuple)) == 0;
    if (dev->lro.singles || (same && v->seq != dev->lro.last_end))
        return false; /* lro_alone's packets after a gap: split */
    struct nic_queues *q = &dev->queues;
    uint32_t prod = __atomic_load_n(&q->rx_idx->prod, __ATOMIC_ACQUIRE);
    if (dev->rx_cons == prod)
        return false; /* split, each packet is dropped and counted as without LRO */
    const struct nic_rx_desc *d = &q->rx_ring[nic_ring_slot(dev->rx_cons, q->rx_size)];
    if (d->len < sp->len)
        return false;
    struct nic_flow *f =
        have_rx_flows(dev) ? nic_flow_lookup_rx(dev->flows, v->saddr, v->daddr, v->sport, v->dport)
                           : NULL;
    bool tls = f && f->rx;
    if (tls && !nic_tls_ctx_access(&dev->tls, f))
        return false;
    uint8_t *buf = (uint8_t *)(uintptr_t)d->addr;
    /* Of an RX flow the walk writes the payload (decrypting from the read
       buffer, which stays as it was for a split); of any other, one copy. */
    memcpy(buf, p, tls ? v->payload_off : sp->len);
    /* Checksums: the kernel asked for them to be completed (NEEDS_CSUM);
       the split computes and verifies each packet's, so all would pass. */
    struct nic_cqe e = {.kind = NIC_CQE_RX_PACKET,
                        .len = (uint32_t)sp->len,
                        .cookie = d->cookie,
                        .flags = NIC_RXF_CSUM_OK};
    if (tls && !nic_tls_rx_flow_span(&dev->tls, f, buf, p + v->payload_off, v, sp->pkts, &e))
        return false;
    lro_flush(dev); /* what came before completes first */
    rx_consume_slot(dev);
    buf[10] = buf[11] = 0;
    uint16_t ipc = nic_csum_fold(nic_csum_add(0, buf, 20));
    memcpy(buf + 10, &ipc, 2);
    rx_tcp_csum_fix(dev, buf, sp->len);
    nic_link_super_take(dev->link, sp);
    dev->c.rx_packets += sp->pkts;
    dev->c.rx_bytes += sp->wire_bytes;
    dev->c.rx_lro_merged += sp->pkts - 1;
    dev->c.rx_lro_packets++;
    dev->c.rx_gro_direct++;
    memcpy(dev->lro.last_tuple, tuple, sizeof(tuple));
    dev->lro.last_end = v->seq + (uint32_t)v->payload_len;
    dev->lro.last_valid = true;
    rx_complete(dev, buf, sp->len, &e);
    return true;
}

static unsigned engine_rx_poll(struct nic_dev *dev, uint64_t now)
{
    struct nic_queues *q = &dev->queues;
    unsigned n = 0;
    while (n < ENGINE_BUDGET) {
        /* Flow control (as an 802.3x PAUSE): with no host buffer, what
           arrives stays in the kernel's TUN queue (its own bound, counted
           by the kernel) until the driver posts buffers and rings. */
        if (dev->cfg.rx_pause && !dev->lro.open &&
            dev->rx_cons == __atomic_load_n(&q->rx_idx->prod, __ATOMIC_ACQUIRE)) {
            if (!dev->rx_paused)
                dev->c.rx_pauses++;
            dev->rx_paused = true;
            break;
        }
        dev->rx_paused = false;
        if (dev->cfg.lro && nic_link_super_ok(dev->link)) {
            struct nic_link_super sp;
            enum nic_link_super_read r = nic_link_recv_super(dev->link, &sp, now);
            if (r == NIC_LINK_SUPER_NONE)
                break;
            if (r == NIC_LINK_SUPER_WHOLE) {
                if (rx_super(dev, &sp)) {
                    n++;
                    continue;
                }
                nic_link_super_split(dev->link, &sp);
            }
            /* the link has wire packets queued now: as without this */
        }
        if (dev->lro.open) {
            /* A packet that does not extend the merge moves to the next
               buffer: without one, close the merge first, so that packets
               with no buffer are dropped before the NIC walks them, as
               without LRO. */
            uint32_t prod = __atomic_load_n(&q->rx_idx->prod, __ATOMIC_ACQUIRE);
            if (dev->lro.closed || dev->lro.cap - dev->lro.len < dev->cfg.mtu ||
                dev->rx_cons == prod) {
                lro_flush(dev);
                continue;
            }
            if (!rx_into_merge(dev, now))
                break;
            n++;
            continue;
        }
        uint32_t prod = __atomic_load_n(&q->rx_idx->prod, __ATOMIC_ACQUIRE);
        if (dev->rx_cons == prod) {
            /* No host buffer: a real NIC drops what arrives (rx_out_of_buffer). */
            size_t len = nic_link_recv(dev->link, dev->pkt, NIC_MAX_PACKET, now);
            if (!len)
                break;
            dev->c.rx_no_buffer++;
            n++;
            continue;
        }
        const struct nic_rx_desc *d = &q->rx_ring[nic_ring_slot(dev->rx_cons, q->rx_size)];
        uint8_t *buf = (uint8_t *)(uintptr_t)d->addr;
        uint32_t cap = d->len;
        size_t len = nic_link_recv(dev->link, buf, cap, now);
        if (!len)
            break;
        struct nic_cqe e = {.kind = NIC_CQE_RX_PACKET, .len = (uint32_t)len, .cookie = d->cookie};
        engine_rx_inspect(dev, buf, len, &e);
        rx_consume_slot(dev);
        dev->c.rx_packets++;
        dev->c.rx_bytes += len;
        n++;
        rx_place(dev, buf, cap, len, &e, dev->cfg.lro && lro_alone(dev, buf, len, &e));
    }
    /* The merge never outlives the round: what the link had is in it. */
    lro_flush(dev);
    return n;
}

/* --- counters --- */

static void engine_publish_stats(struct nic_dev *dev)
{
    struct nic_link_counters lc;
    nic_link_get_counters(dev->link, &lc);
    dev->c.tx_packets = lc.tx_packets;
    dev->c.tx_bytes = lc.tx_bytes;
    dev->c.tun_write_errors = lc.tx_write_errors;
    dev->c.tun_read_errors = lc.rx_read_errors;
    dev->c.tun_reads_empty = lc.rx_reads_empty;
    dev->c.rx_wire_packets = lc.rx_packets;
    dev->c.rx_wire_bytes = lc.rx_bytes;
    dev->c.rx_buf_too_small = lc.rx_truncated;
    dev->c.tun_gso_writes = lc.tx_gso_writes;
    dev->c.tun_gso_write_packets = lc.tx_gso_packets;
    dev->c.tun_tso_merged = lc.tx_tso_merged;
    dev->c.tun_gso_reads = lc.rx_gso_reads;
    dev->c.tun_gso_read_packets = lc.rx_gso_packets;
    dev->c.tun_gso_bad = lc.rx_gso_bad;
    dev->c.tx_bytes_copied = dev->tx_copied + lc.tx_copied;
    pthread_mutex_lock(&dev->stats_lock);
    dev->c_snapshot = dev->c;
    nic_link_get_fault_stats(dev->link, &dev->fault_tx_snapshot, &dev->fault_rx_snapshot);
    pthread_mutex_unlock(&dev->stats_lock);
}

void nic_dev_get_counters(const struct nic_dev *dev, struct nic_counters *out)
{
    struct nic_dev *d = (struct nic_dev *)dev;
    pthread_mutex_lock(&d->stats_lock);
    *out = d->c_snapshot;
    pthread_mutex_unlock(&d->stats_lock);
}

void nic_dev_get_fault_stats(const struct nic_dev *dev, struct nic_fault_stats *tx,
                             struct nic_fault_stats *rx)
{
    struct nic_dev *d = (struct nic_dev *)dev;
    pthread_mutex_lock(&d->stats_lock);
    *tx = d->fault_tx_snapshot;
    *rx = d->fault_rx_snapshot;
    pthread_mutex_unlock(&d->stats_lock);
}

/* --- the engine thread --- */

static void engine_sleep(struct nic_dev *dev, uint64_t now)
{
    uint64_t irq_due = UINT64_MAX; /* completions held back interrupt then */
    if (dev->unsignalled) {
        enum irq_why why = irq_now(dev, now);
        if (why != IRQ_WAIT)
            engine_irq(dev, now, why);
        else
            irq_due = dev->unsignalled_ns + dev->cfg.irq_coalesce_ns;
    }
    atomic_store_explicit(&dev->engine_sleeping, 1, memory_order_seq_cst);
    /* Re-check after announcing sleep: a doorbell rung before the flag was
       visible found us awake and wrote no eventfd. */
    uint32_t prod = __atomic_load_n(&dev->queues.tx_idx->prod, __ATOMIC_ACQUIRE);
    if (prod != dev->tx_cons || atomic_load(&dev->stop) ||
        (dev->rx_paused &&
         __atomic_load_n(&dev->queues.rx_idx->prod, __ATOMIC_ACQUIRE) != dev->rx_cons)) {
        atomic_store_explicit(&dev->engine_sleeping, 0, memory_order_relaxed);
        return;
    }
    uint64_t deadline = nic_link_next_deadline(dev->link);
    uint64_t stats_due = dev->last_snapshot_ns + STATS_SNAPSHOT_NS;
    if (stats_due < deadline)
        deadline = stats_due;
    if (irq_due < deadline)
        deadline = irq_due;
    struct timespec ts, *tsp = NULL;
    if (deadline != UINT64_MAX) {
        uint64_t wait = deadline > now ? deadline - now : 0;
        ts.tv_sec = (time_t)(wait / 1000000000ull);
        ts.tv_nsec = (long)(wait % 1000000000ull);
        tsp = &ts;
    }
    /* Paused: the wire is readable but must wait for the driver's doorbell. */
    struct pollfd pfd[2] = {{.fd = dev->rx_paused ? -1 : nic_link_fd(dev->link), .events = POLLIN},
                            {.fd = dev->doorbell_fd, .events = POLLIN}};
    dev->c.engine_sleeps++;
    ppoll(pfd, 2, tsp, NULL);
    atomic_store_explicit(&dev->engine_sleeping, 0, memory_order_relaxed);
    if (pfd[1].revents & POLLIN) {
        uint64_t v;
        if (read(dev->doorbell_fd, &v, sizeof(v)) > 0)
            dev->c.doorbells++;
    }
}

static unsigned engine_round(struct nic_dev *dev, uint64_t now)
{
    dev->work_for_host = false;
    unsigned work = engine_tx_poll(dev, now);
    work += nic_link_tx_flush(dev->link, now);
    work += engine_rx_poll(dev, now);
    if (dev->work_for_host && !dev->unsignalled) {
        dev->unsignalled = true;
        dev->unsignalled_ns = now;
    }
    if (dev->unsignalled) {
        enum irq_why why = irq_now(dev, now);
        if (why != IRQ_WAIT)
            engine_irq(dev, now, why);
        else if (dev->work_for_host && atomic_load_explicit(&dev->irq_armed, memory_order_relaxed))
            dev->c.irqs_coalesced++;
    }
    if (now - dev->last_snapshot_ns >= STATS_SNAPSHOT_NS) {
        engine_publish_stats(dev);
        dev->last_snapshot_ns = now;
    }
    return work;
}

unsigned nic_dev_poll_once(struct nic_dev *dev)
{
    unsigned work = engine_round(dev, now_ns());
    engine_publish_stats(dev); /* tests read counters right after */
    return work;
}

static void *engine_main(void *arg)
{
    struct nic_dev *dev = arg;
    unsigned idle = 0;
    uint64_t idle_since = 0;
    nic_thread_nice("nic-engine", dev->cfg.thread_nice);
    while (!atomic_load_explicit(&dev->stop, memory_order_relaxed)) {
        uint64_t now = now_ns();
        unsigned work = engine_round(dev, now);
        if (work) {
            idle = 0;
            continue;
        }
        if (idle++ == 0)
            idle_since = now;
        if (idle < ENGINE_IDLE_SPINS && now - idle_since < ENGINE_SPIN_NS)
            continue;
        idle = 0;
        engine_sleep(dev, now);
    }
    engine_publish_stats(dev);
    return NULL;
}

int nic_dev_start(struct nic_dev *dev)
{
    atomic_store(&dev->stop, 0);
    if (pthread_create(&dev->thread, NULL, engine_main, dev) != 0)
        return -1;
    pthread_setname_np(dev->thread, "nic-engine");
    dev->running = true;
    return 0;
}

void nic_dev_stop(struct nic_dev *dev)
{
    if (!dev->running)
        return;
    atomic_store(&dev->stop, 1);
    uint64_t one = 1;
    if (write(dev->doorbell_fd, &one, sizeof(one)) < 0) {
        /* saturated: the engine is awake anyway */
    }
    pthread_join(dev->thread, NULL);
    dev->running = false;
}
