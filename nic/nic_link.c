/* nic_link.c - wire between the NIC engine and TUN: fault stages + pcap tap,
   and GSO super-packets to and from TUN (docs/design.md §6). */
#include "nic_link.h"
#include "nic_csum.h"
#include "nic_seg.h"

#include <errno.h>
#include <linux/virtio_net.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#define LINK_MAX_PACKET 65535u
#define LINK_VNET_HLEN  sizeof(struct virtio_net_hdr)
#define LINK_RX_PEND    256u /* wire packets split from one super-packet (<= 64 KiB / 256 B) */
/* TX packets the engine builds in place (nic_link_tx_slot): a run's payload
   is written from there, not copied again. Four of the largest. */
#define LINK_TX_SLOTS_BYTES (4u * LINK_MAX_PACKET)
#define LINK_RUN_HDR_MAX    80u /* IP without options (every run's) + the largest TCP header */
#define LINK_RUN_PIECES     64u /* payload pieces of one run (each a whole MSS but the last) */

/* The in-order run of TCP packets being merged into one GSO write: the
   first packet's headers here, the payload as pieces in the TX slots (by
   reference) or in the run's copy buffer; all stay put until run_flush. */
struct gso_run {
    uint8_t *buf; /* virtio_net_hdr + the first packet's headers (fixed up at the flush) */
    struct iovec piece[1 + LINK_RUN_PIECES]; /* [0]: buf; then the payload */
    unsigned n_pieces;                       /* payload pieces */
    uint8_t *copy;                           /* payload of packets from outside the slots */
    size_t copy_used;                        /* reset by run_flush */
    size_t len;                              /* bytes of the merged IP packet; 0 = no run */
    size_t hl;                               /* IP + TCP header length */
    uint32_t mss; /* payload of its first packet: every packet but the last */
    uint32_t next_seq;
    uint32_t pkts;
    uint64_t wire_bytes;
    bool closed; /* its last packet was short or had PSH/FIN: nothing may follow */
    /* The flow last written and where its stream ended: after a packet at
       another seq (a hole left by loss, a retransmission) the next few are
       written alone, so the kernel sends a duplicate ACK for each, as for
       wire packets; lwIP gets no SACK and needs three for a fast retransmit. */
    uint8_t last_tuple[12];
    uint32_t last_end;
    bool last_valid;
    unsigned singles;
};

#define GSO_SINGLES_AFTER_GAP 3

/* Wire packets split from one GSO read, not yet taken by the engine. */
struct rx_pending {
    uint8_t *arena;
    uint32_t off[LINK_RX_PEND], len[LINK_RX_PEND];
    unsigned head, n;
    size_t used;
};

struct nic_link {
    int tun_fd;
    uint32_t mtu;
    bool gso;
    struct gso_run run;
    uint8_t *tx_slots; /* nic_link_tx_slot's arena (GSO only) */
    size_t tx_slots_used;
    struct rx_pending pend;
    uint8_t *rx_gso;            /* one read: virtio_net_hdr + up to 64 KiB */
    uint64_t rx_now;            /* time of the receive in progress (fault stage input) */
    struct nic_fault *fault_tx; /* NULL = passthrough */
    struct nic_fault *fault_rx;
    pcap_t *pcap;
    pcap_dumper_t *dumper;
    struct nic_link_counters counters;
    uint8_t scratch[LINK_MAX_PACKET]; /* fault-stage staging, one packet */
};

static void link_tap(struct nic_link *link, const uint8_t *pkt, size_t len)
{
    if (!link->dumper)
        return;
    struct pcap_pkthdr hdr;
    gettimeofday(&hdr.ts, NULL);
    hdr.caplen = (bpf_u_int32)len;
    hdr.len = (bpf_u_int32)len;
    pcap_dump((u_char *)link->dumper, &hdr, pkt);
}

struct nic_link *nic_link_create(int tun_fd, const struct nic_fault_cfg *fault_tx,
                                 const struct nic_fault_cfg *fault_rx, const char *pcap_path,
                                 uint32_t mtu, bool tun_gso, char *err, size_t errlen)
{
    struct nic_link *link = calloc(1, sizeof(*link));
    if (!link) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    link->tun_fd = tun_fd;
    link->mtu = mtu;
    link->gso = tun_gso;
    if (tun_gso) {
        link->run.buf = malloc(LINK_VNET_HLEN + LINK_RUN_HDR_MAX);
        link->run.copy = malloc(LINK_MAX_PACKET);
        link->tx_slots = malloc(LINK_TX_SLOTS_BYTES);
        link->rx_gso = malloc(LINK_VNET_HLEN + LINK_MAX_PACKET);
        link->pend.arena = malloc(2 * (size_t)LINK_MAX_PACKET);
        if (!link->run.buf || !link->run.copy || !link->tx_slots || !link->rx_gso ||
            !link->pend.arena)
            goto oom;
    }
    if (!nic_fault_cfg_is_passthrough(fault_tx) && !(link->fault_tx = nic_fault_create(fault_tx)))
        goto oom;
    if (!nic_fault_cfg_is_passthrough(fault_rx) && !(link->fault_rx = nic_fault_create(fault_rx)))
        goto oom;
    if (pcap_path) {
        link->pcap = pcap_open_dead(DLT_RAW, (int)LINK_MAX_PACKET);
        if (!link->pcap)
            goto oom;
        link->dumper = pcap_dump_open(link->pcap, pcap_path);
        if (!link->dumper) {
            snprintf(err, errlen, "pcap %s: %s", pcap_path, pcap_geterr(link->pcap));
            link->tun_fd = -1; /* the caller keeps its fd on failure */
            nic_link_destroy(link);
            return NULL;
        }
    }
    return link;
oom:
    snprintf(err, errlen, "out of memory");
    link->tun_fd = -1;
    nic_link_destroy(link);
    return NULL;
}

void nic_link_destroy(struct nic_link *link)
{
    if (!link)
        return;
    if (link->dumper)
        pcap_dump_close(link->dumper);
    if (link->pcap)
        pcap_close(link->pcap);
    nic_fault_destroy(link->fault_tx);
    nic_fault_destroy(link->fault_rx);
    if (link->tun_fd >= 0)
        close(link->tun_fd);
    free(link->run.buf);
    free(link->run.copy);
    free(link->tx_slots);
    free(link->rx_gso);
    free(link->pend.arena);
    free(link);
}

/* --- GSO: TX runs --- */

static void wr16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* A packet that may be part of a run: IPv4 without options, TCP with data,
   ACK and at most PSH/FIN besides, and both checksums right (a corrupted
   packet is written alone, so the kernel still sees and drops it: a merged
   one is checksummed here, not there). */
static bool run_candidate(const uint8_t *pkt, size_t len, struct nic_tcp_view *v)
{
    return nic_parse_tcp(pkt, len, v) && v->ip_hlen == 20 && v->payload_len > 0 &&
           (v->tcp_flags & ~(NIC_TCP_PSH | NIC_TCP_FIN)) == NIC_TCP_ACK && nic_tcp_csum_ok(pkt, v);
}

/* Everything but lengths, ids, checksums, seq and PSH/FIN must be equal for
   the kernel to see the run as the packets it stands for. */
static bool run_same_headers(const uint8_t *a, const uint8_t *b, size_t hl)
{
    const uint8_t *ta = a + 20, *tb = b + 20;
    return memcmp(a, b, 2) == 0 && memcmp(a + 6, b + 6, 4) == 0 && memcmp(a + 12, b + 12, 8) == 0 &&
           memcmp(ta, tb, 4) == 0 && memcmp(ta + 8, tb + 8, 5) == 0 &&
           memcmp(ta + 14, tb + 14, 2) == 0 && memcmp(ta + 18, tb + 18, hl - 38) == 0;
}

static void link_writev(struct nic_link *link, const struct iovec *iov, unsigned iovcnt, size_t len,
                        uint32_t pkts, uint64_t wire_bytes)
{
    ssize_t n = writev(link->tun_fd, iov, (int)iovcnt);
    if (n != (ssize_t)len) {
        link->counters.tx_write_errors++;
        return;
    }
    link->counters.tx_packets += pkts;
    link->counters.tx_bytes += wire_bytes;
}

/* Write the run: one packet as it is; more as a TCPv4 super-packet whose
   TCP checksum the kernel is told is done (NEEDS_CSUM: the field holds the
   pseudo-header sum; every packet in it was verified above). */
static void run_flush(struct nic_link *link)
{
    struct gso_run *r = &link->run;
    if (!r->len)
        return;
    uint8_t *pkt = r->buf + LINK_VNET_HLEN;
    struct virtio_net_hdr h = {0};
    if (r->pkts > 1) {
        wr16(pkt + 2, (uint32_t)r->len);
        pkt[10] = pkt[11] = 0;
        uint16_t ipc = nic_csum_fold(nic_csum_add(0, pkt, 20));
        memcpy(pkt + 10, &ipc, 2);
        uint8_t ph[12];
        memcpy(ph, pkt + 12, 8);
        ph[8] = 0;
        ph[9] = NIC_IPPROTO_TCP;
        wr16(ph + 10, (uint32_t)(r->len - 20));
        uint16_t ps = (uint16_t)~nic_csum_fold(nic_csum_add(0, ph, sizeof(ph)));
        memcpy(pkt + 20 + 16, &ps, 2);
        h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
        h.hdr_len = (uint16_t)r->hl;
        h.gso_size = (uint16_t)r->mss;
        h.csum_start = 20;
        h.csum_offset = 16;
        link->counters.tx_gso_writes++;
        link->counters.tx_gso_packets += r->pkts;
    }
    memcpy(r->buf, &h, sizeof(h));
    r->piece[0] = (struct iovec){r->buf, LINK_VNET_HLEN + r->hl};
    link_writev(link, r->piece, 1 + r->n_pieces, LINK_VNET_HLEN + r->len, r->pkts, r->wire_bytes);
    r->len = 0;
    r->n_pieces = 0;
    r->copy_used = 0;
}

static bool in_tx_slots(const struct nic_link *link, const uint8_t *p, size_t len)
{
    return link->tx_slots && p >= link->tx_slots &&
           (size_t)(p - link->tx_slots) + len <= LINK_TX_SLOTS_BYTES;
}

/* Add len payload bytes at p to the run: by reference if the engine built
   them in a TX slot, else copied. False (the run unchanged) if the run has
   no piece or copy room left. */
static bool run_add_payload(struct nic_link *link, const uint8_t *p, size_t len)
{
    struct gso_run *r = &link->run;
    bool by_ref = in_tx_slots(link, p, len);
    if (!by_ref && r->copy_used + len > LINK_MAX_PACKET)
        return false;
    uint8_t *at = by_ref ? (uint8_t *)(uintptr_t)p : r->copy + r->copy_used;
    struct iovec *last = r->n_pieces ? &r->piece[r->n_pieces] : NULL;
    bool joins = last && (uint8_t *)last->iov_base + last->iov_len == at;
    if (!joins && r->n_pieces == LINK_RUN_PIECES)
        return false;
    if (!by_ref) {
        memcpy(at, p, len);
        link->counters.tx_copied += len;
        r->copy_used += len;
    }
    if (joins)
        last->iov_len += len;
    else
        r->piece[++r->n_pieces] = (struct iovec){at, len};
    return true;
}

/* A run of pkt's headers (hl bytes, IPv4 without options) and no payload yet. */
static void run_open(struct nic_link *link, const uint8_t *pkt, size_t hl)
{
    struct gso_run *r = &link->run;
    memcpy(r->buf + LINK_VNET_HLEN, pkt, hl);
    link->counters.tx_copied += hl;
    r->hl = hl;
    r->n_pieces = 0;
    r->copy_used = 0;
}

/* Append pkt to the run if it continues it. */
static bool run_append(struct nic_link *link, const uint8_t *pkt, size_t len,
                       const struct nic_tcp_view *v)
{
    struct gso_run *r = &link->run;
    uint8_t *head = r->buf + LINK_VNET_HLEN;
    if (!r->len || r->closed || v->payload_off != r->hl || v->seq != r->next_seq ||
        v->payload_len > r->mss || r->len + v->payload_len > LINK_MAX_PACKET ||
        !run_same_headers(head, pkt, r->hl) || !run_add_payload(link, pkt + r->hl, v->payload_len))
        return false;
    r->len += v->payload_len;
    r->next_seq += (uint32_t)v->payload_len;
    r->pkts++;
    r->wire_bytes += len;
    head[20 + 13] |= v->tcp_flags & (NIC_TCP_PSH | NIC_TCP_FIN);
    r->closed = v->payload_len < r->mss || (v->tcp_flags & (NIC_TCP_PSH | NIC_TCP_FIN));
    return true;
}

/* Start a run with pkt; the run before it must have been flushed. */
static void run_start(struct nic_link *link, const uint8_t *pkt, size_t len,
                      const struct nic_tcp_view *v)
{
    struct gso_run *r = &link->run;
    run_open(link, pkt, v->payload_off);
    (void)run_add_payload(link, pkt + v->payload_off, v->payload_len); /* empty run: room */
    r->len = v->payload_off + v->payload_len; /* bytes past the IP length are not sent */
    r->mss = (uint32_t)v->payload_len;
    r->next_seq = v->seq + (uint32_t)v->payload_len;
    r->pkts = 1;
    r->wire_bytes = len;
    r->closed = (v->tcp_flags & (NIC_TCP_PSH | NIC_TCP_FIN)) != 0;
}

/* Follow the flow's stream; true if pkt must be written alone. */
static bool run_alone(struct gso_run *r, const uint8_t *pkt, const struct nic_tcp_view *v)
{
    uint8_t tuple[12];
    memcpy(tuple, pkt + 12, 8);
    memcpy(tuple + 8, pkt + v->tcp_off, 4);
    bool same = r->last_valid && memcmp(tuple, r->last_tuple, sizeof(tuple)) == 0;
    if (same && v->seq != r->last_end)
        r->singles = GSO_SINGLES_AFTER_GAP;
    memcpy(r->last_tuple, tuple, sizeof(tuple));
    r->last_end = v->seq + (uint32_t)v->payload_len;
    r->last_valid = true;
    if (!r->singles)
        return false;
    r->singles--;
    return true;
}

static void link_write(struct nic_link *link, const uint8_t *pkt, size_t len)
{
    link_tap(link, pkt, len);
    if (link->gso) {
        struct nic_tcp_view v;
        if (run_candidate(pkt, len, &v)) {
            bool alone = run_alone(&link->run, pkt, &v);
            if (!alone && run_append(link, pkt, len, &v))
                return;
            run_flush(link);
            run_start(link, pkt, len, &v);
            if (alone)
                run_flush(link);
            return;
        }
        run_flush(link);
        struct virtio_net_hdr h = {0};
        struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)(uintptr_t)pkt, len}};
        link_writev(link, iov, 2, LINK_VNET_HLEN + len, 1, len);
        return;
    }
    ssize_t n = write(link->tun_fd, pkt, len);
    if (n != (ssize_t)len) {
        link->counters.tx_write_errors++;
        return;
    }
    link->counters.tx_packets++;
    link->counters.tx_bytes += len;
}

/* TSO segments of one flow that follow each other on the TX ring (lwIP
   sends a connection's segments back to back) are merged into one
   super-packet, as the cut packets of each would have been: one TUN write
   and one ACK from the peer instead of one per segment. With many flows the
   segments are small (TSO autosizing) and the writes, with the peer's
   receive work behind each, were most of the engine's time. A segment the
   engine built in a TX slot joins the run by reference; one from host
   memory is copied only if a next one could still fit, larger ones go out
   directly. The PSH of a segment in the middle is dropped, as a TSO NIC
   that coalesces does; FIN or a short last packet ends the run. */
#define LINK_TSO_STAGE_MAX (LINK_MAX_PACKET / 2)

static uint32_t tso_pkts(const struct nic_tcp_view *v, uint32_t mss)
{
    return (uint32_t)((v->payload_len + mss - 1) / mss);
}

static void tso_run_start(struct nic_link *link, const uint8_t *pkt, const struct nic_tcp_view *v,
                          uint32_t mss)
{
    struct gso_run *r = &link->run;
    size_t hl = v->payload_off;
    run_open(link, pkt, hl);
    (void)run_add_payload(link, pkt + hl, v->payload_len); /* empty run: room */
    r->len = hl + v->payload_len;
    r->mss = mss;
    r->next_seq = v->seq + (uint32_t)v->payload_len;
    r->pkts = tso_pkts(v, mss);
    r->wire_bytes = r->len + (uint64_t)(r->pkts - 1) * hl;
    r->closed = (v->tcp_flags & NIC_TCP_FIN) || v->payload_len % mss;
}

static bool tso_run_extend(struct nic_link *link, const uint8_t *pkt, const struct nic_tcp_view *v,
                           uint32_t mss)
{
    struct gso_run *r = &link->run;
    uint8_t *head = r->buf + LINK_VNET_HLEN;
    if (!r->len || r->closed || r->mss != mss || (r->len - r->hl) % mss ||
        v->payload_off != r->hl || v->seq != r->next_seq ||
        r->len + v->payload_len > LINK_MAX_PACKET || !run_same_headers(head, pkt, r->hl) ||
        !run_add_payload(link, pkt + r->hl, v->payload_len))
        return false;
    uint32_t pkts = tso_pkts(v, mss);
    r->len += v->payload_len;
    r->next_seq += (uint32_t)v->payload_len;
    r->pkts += pkts;
    r->wire_bytes += v->payload_len + (uint64_t)pkts * r->hl;
    head[20 + 13] =
        (uint8_t)((head[20 + 13] & ~NIC_TCP_PSH) | (v->tcp_flags & (NIC_TCP_PSH | NIC_TCP_FIN)));
    r->closed = (v->tcp_flags & NIC_TCP_FIN) || v->payload_len % mss;
    link->counters.tx_tso_merged++;
    return true;
}

bool nic_link_send_tso(struct nic_link *link, const uint8_t *pkt, const struct nic_tcp_view *v,
                       uint32_t mss)
{
    /* Only when no one looks at the wire packets one by one (docs/design.md
       §6): no fault stage, no pcap. */
    if (!link->gso || link->fault_tx || link->dumper || v->ip_hlen != 20 || mss == 0 ||
        v->payload_len <= mss || (v->tcp_flags & ~(NIC_TCP_PSH | NIC_TCP_FIN)) != NIC_TCP_ACK)
        return false;
    /* After a gap the next packets go alone (run_alone): leave them to the
       cut. Otherwise note where the stream ends, as run_alone does. */
    struct gso_run *r = &link->run;
    uint8_t tuple[12];
    memcpy(tuple, pkt + 12, 8);
    memcpy(tuple + 8, pkt + v->tcp_off, 4);
    bool same = r->last_valid && memcmp(tuple, r->last_tuple, sizeof(tuple)) == 0;
    if (r->singles || (same && v->seq != r->last_end))
        return false;
    memcpy(r->last_tuple, tuple, sizeof(tuple));
    r->last_end = v->seq + (uint32_t)v->payload_len;
    r->last_valid = true;
    if (tso_run_extend(link, pkt, v, mss))
        return true;
    run_flush(link);
    if (in_tx_slots(link, pkt, v->payload_off + v->payload_len) ||
        v->payload_off + v->payload_len <= LINK_TSO_STAGE_MAX) {
        tso_run_start(link, pkt, v, mss);
        return true;
    }
    size_t hl = v->payload_off, len = hl + v->payload_len;
    struct {
        struct virtio_net_hdr h;
        uint8_t hdr[LINK_RUN_HDR_MAX];
    } head;
    memset(&head.h, 0, sizeof(head.h));
    memcpy(head.hdr, pkt, hl);
    link->counters.tx_copied += hl;
    uint8_t ph[12];
    memcpy(ph, pkt + 12, 8);
    ph[8] = 0;
    ph[9] = NIC_IPPROTO_TCP;
    wr16(ph + 10, (uint32_t)(len - 20));
    uint16_t ps = (uint16_t)~nic_csum_fold(nic_csum_add(0, ph, sizeof(ph)));
    memcpy(head.hdr + 20 + 16, &ps, 2);
    head.h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    head.h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
    head.h.hdr_len = (uint16_t)hl;
    head.h.gso_size = (uint16_t)mss;
    head.h.csum_start = 20;
    head.h.csum_offset = 16;
    struct iovec iov[2] = {{&head, LINK_VNET_HLEN + hl},
                           {(void *)(uintptr_t)(pkt + hl), v->payload_len}};
    uint32_t pkts = (uint32_t)((v->payload_len + mss - 1) / mss);
    ssize_t n = writev(link->tun_fd, iov, 2);
    if (n != (ssize_t)(LINK_VNET_HLEN + len)) {
        link->counters.tx_write_errors++;
        return true;
    }
    link->counters.tx_packets += pkts;
    link->counters.tx_bytes += len + (uint64_t)(pkts - 1) * hl;
    link->counters.tx_gso_writes++;
    link->counters.tx_gso_packets += pkts;
    return true;
}

/* Write out what the TX fault stage releases now; a GSO run stays open (the
   engine round ends it with nic_link_tx_flush). */
static unsigned link_tx_drain(struct nic_link *link, uint64_t now_ns)
{
    unsigned sent = 0;
    size_t len;
    while (link->fault_tx &&
           (len = nic_fault_pop(link->fault_tx, now_ns, link->scratch, sizeof(link->scratch)))) {
        link->counters.tx_copied += len;
        link_write(link, link->scratch, len);
        sent++;
    }
    return sent;
}

void nic_link_send(struct nic_link *link, const uint8_t *pkt, size_t len, uint64_t now_ns)
{
    if (!link->fault_tx) {
        link_write(link, pkt, len);
        return;
    }
    nic_fault_push(link->fault_tx, pkt, len, now_ns);
    link->counters.tx_copied += len;
    link_tx_drain(link, now_ns);
}

uint8_t *nic_link_tx_slot(struct nic_link *link, size_t len)
{
    if (!link->tx_slots || len > LINK_MAX_PACKET)
        return NULL;
    if (link->tx_slots_used + len > LINK_TX_SLOTS_BYTES)
        link->tx_slots_used = 0;
    uint8_t *slot = link->tx_slots + link->tx_slots_used;
    link->tx_slots_used += len;
    /* The open run is the only reader of older slots: written out first if
       the slot reuses any of its payload (a wrap under a run). */
    const struct gso_run *r = &link->run;
    for (unsigned i = 1; r->len && i <= r->n_pieces; i++) {
        const uint8_t *b = r->piece[i].iov_base;
        if (b < slot + len && b + r->piece[i].iov_len > slot) {
            run_flush(link);
            break;
        }
    }
    return slot;
}

unsigned nic_link_tx_flush(struct nic_link *link, uint64_t now_ns)
{
    unsigned sent = link_tx_drain(link, now_ns);
    if (link->gso)
        run_flush(link);
    return sent;
}

/* --- GSO: RX super-packets --- */

/* One wire packet from the kernel: tap, then the fault stage or the queue. */
static void rx_deliver(void *arg, const uint8_t *pkt, size_t len)
{
    struct nic_link *link = arg;
    link->counters.rx_packets++;
    link->counters.rx_bytes += len;
    link_tap(link, pkt, len);
    if (link->fault_rx) {
        nic_fault_push(link->fault_rx, pkt, len, link->rx_now);
        return;
    }
    struct rx_pending *q = &link->pend;
    if (q->n == LINK_RX_PEND || q->used + len > 2 * (size_t)LINK_MAX_PACKET) {
        link->counters.rx_gso_bad++; /* a gso_size below 256 bytes: more pieces than slots */
        return;
    }
    unsigned i = (q->head + q->n) % LINK_RX_PEND;
    memcpy(q->arena + q->used, pkt, len);
    q->off[i] = (uint32_t)q->used;
    q->len[i] = (uint32_t)len;
    q->used += len;
    q->n++;
}

/* Complete a checksum the kernel left to us (NEEDS_CSUM): the field holds
   the pseudo-header sum; add the bytes from csum_start. */
static bool rx_complete_csum(uint8_t *pkt, size_t len, const struct virtio_net_hdr *h)
{
    size_t start = h->csum_start, at = start + h->csum_offset;
    if (start >= len || at + 2 > len)
        return false;
    uint16_t c = nic_csum_fold(nic_csum_add(0, pkt + start, len - start));
    memcpy(pkt + at, &c, 2);
    return true;
}

enum gso_read { GSO_READ_NONE, GSO_READ_DONE, GSO_READ_SUPER };

/* One read from a GSO TUN: a frame that is one wire packet is delivered, a
   super-packet of more than one is described in *sp for the caller. */
static enum gso_read link_read_gso_frame(struct nic_link *link, struct nic_link_super *sp)
{
    ssize_t n;
    do
        n = read(link->tun_fd, link->rx_gso, LINK_VNET_HLEN + LINK_MAX_PACKET);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            link->counters.rx_read_errors++;
        else if (n < 0)
            link->counters.rx_reads_empty++;
        return GSO_READ_NONE;
    }
    if ((size_t)n <= LINK_VNET_HLEN) {
        link->counters.rx_read_errors++;
        return GSO_READ_DONE;
    }
    struct virtio_net_hdr h;
    memcpy(&h, link->rx_gso, sizeof(h));
    uint8_t *pkt = link->rx_gso + LINK_VNET_HLEN;
    size_t len = (size_t)n - LINK_VNET_HLEN;
    uint8_t gso = h.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
    if (gso == VIRTIO_NET_HDR_GSO_NONE) {
        if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !rx_complete_csum(pkt, len, &h)) {
            link->counters.rx_gso_bad++;
            return GSO_READ_DONE;
        }
        rx_deliver(link, pkt, len);
        return GSO_READ_DONE;
    }
    struct nic_tcp_view v;
    if (gso != VIRTIO_NET_HDR_GSO_TCPV4 || !h.gso_size || !nic_parse_tcp(pkt, len, &v) ||
        v.payload_off + h.gso_size > link->mtu) {
        link->counters.rx_gso_bad++;
        return GSO_READ_DONE;
    }
    link->counters.rx_gso_reads++;
    if (v.payload_len <= h.gso_size) { /* one packet: only the checksum to finish */
        nic_tcp_csum_fix(pkt, &v);
        link->counters.rx_gso_packets++;
        rx_deliver(link, pkt, v.payload_off + v.payload_len);
        return GSO_READ_DONE;
    }
    sp->pkt = pkt;
    sp->len = v.payload_off + v.payload_len;
    sp->v = v;
    sp->mss = h.gso_size;
    sp->pkts = (uint32_t)((v.payload_len + h.gso_size - 1) / h.gso_size);
    sp->wire_bytes = v.payload_len + (uint64_t)sp->pkts * v.payload_off;
    return GSO_READ_SUPER;
}

void nic_link_super_split(struct nic_link *link, const struct nic_link_super *sp)
{
    link->counters.rx_gso_packets +=
        nic_tso_cut(sp->pkt, &sp->v, sp->mss, link->scratch, rx_deliver, link);
}

/* One read from a GSO TUN. Returns false when nothing was queued. */
static bool link_read_gso(struct nic_link *link)
{
    struct nic_link_super sp;
    enum gso_read r = link_read_gso_frame(link, &sp);
    if (r == GSO_READ_SUPER)
        nic_link_super_split(link, &sp);
    return r != GSO_READ_NONE;
}

bool nic_link_super_ok(const struct nic_link *link)
{
    return link->gso && !link->fault_rx && !link->dumper && !link->pend.n;
}

enum nic_link_super_read nic_link_recv_super(struct nic_link *link, struct nic_link_super *sp,
                                             uint64_t now_ns)
{
    link->rx_now = now_ns;
    switch (link_read_gso_frame(link, sp)) {
    case GSO_READ_NONE:
        return NIC_LINK_SUPER_NONE;
    case GSO_READ_SUPER:
        return NIC_LINK_SUPER_WHOLE;
    default:
        return NIC_LINK_SUPER_QUEUED;
    }
}

void nic_link_super_take(struct nic_link *link, const struct nic_link_super *sp)
{
    link->counters.rx_packets += sp->pkts;
    link->counters.rx_bytes += sp->wire_bytes;
    link->counters.rx_gso_packets += sp->pkts;
}

/* The next packet the RX fault stage lets through by now_ns, into buf; a
   packet larger than cap is dropped and counted. 0: none due. */
static size_t fault_rx_pop(struct nic_link *link, uint8_t *buf, size_t cap, uint64_t now_ns)
{
    for (;;) {
        size_t n = nic_fault_pop(link->fault_rx, now_ns, link->scratch, sizeof(link->scratch));
        if (!n)
            return 0;
        if (n > cap) {
            link->counters.rx_truncated++;
            continue;
        }
        memcpy(buf, link->scratch, n);
        return n;
    }
}

static size_t link_recv_gso(struct nic_link *link, uint8_t *buf, size_t cap, uint64_t now_ns)
{
    link->rx_now = now_ns;
    if (link->fault_rx) {
        for (int i = 0; i < 64 && link_read_gso(link); i++)
            ;
        return fault_rx_pop(link, buf, cap, now_ns);
    }
    struct rx_pending *q = &link->pend;
    for (int reads = 0; reads < 64;) {
        if (q->n) {
            size_t n = q->len[q->head];
            const uint8_t *p = q->arena + q->off[q->head];
            q->head = (q->head + 1) % LINK_RX_PEND;
            if (--q->n == 0)
                q->used = 0;
            if (n > cap) {
                link->counters.rx_truncated++;
                continue;
            }
            memcpy(buf, p, n);
            return n;
        }
        if (!link_read_gso(link))
            return 0;
        reads++;
    }
    return 0;
}

/* One read from TUN into buf; returns length or 0 when nothing is queued. */
static size_t link_read(struct nic_link *link, uint8_t *buf, size_t cap)
{
    for (;;) {
        ssize_t n = read(link->tun_fd, buf, cap);
        if (n > 0) {
            link->counters.rx_packets++;
            link->counters.rx_bytes += (uint64_t)n;
            link_tap(link, buf, (size_t)n);
            return (size_t)n;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            link->counters.rx_read_errors++;
        else if (n < 0)
            link->counters.rx_reads_empty++;
        return 0;
    }
}

size_t nic_link_recv(struct nic_link *link, uint8_t *buf, size_t cap, uint64_t now_ns)
{
    if (link->gso)
        return link_recv_gso(link, buf, cap, now_ns);
    if (!link->fault_rx) {
        /* The TUN MTU equals ours, so a buffer of at least MTU bytes holds any
           packet the kernel hands us: read straight into it (the "DMA"). */
        if (cap >= link->mtu)
            return link_read(link, buf, cap);
        for (;;) {
            size_t n = link_read(link, link->scratch, sizeof(link->scratch));
            if (n <= cap) {
                memcpy(buf, link->scratch, n);
                return n;
            }
            link->counters.rx_truncated++; /* dropped; try the next one */
        }
    }
    /* Feed everything the kernel has queued into the fault stage, then take
       the next packet that is due. Bounded: the stage counts its own overflow. */
    for (int i = 0; i < 64; i++) {
        size_t n = link_read(link, link->scratch, sizeof(link->scratch));
        if (!n)
            break;
        nic_fault_push(link->fault_rx, link->scratch, n, now_ns);
    }
    return fault_rx_pop(link, buf, cap, now_ns);
}

uint64_t nic_link_next_deadline(const struct nic_link *link)
{
    uint64_t t = UINT64_MAX;
    if (link->pend.n)
        return 0; /* split packets wait for the engine now */
    if (link->fault_tx) {
        uint64_t d = nic_fault_next_deadline(link->fault_tx);
        if (d < t)
            t = d;
    }
    if (link->fault_rx) {
        uint64_t d = nic_fault_next_deadline(link->fault_rx);
        if (d < t)
            t = d;
    }
    return t;
}

int nic_link_fd(const struct nic_link *link)
{
    return link->tun_fd;
}

void nic_link_get_counters(const struct nic_link *link, struct nic_link_counters *out)
{
    *out = link->counters;
}

void nic_link_get_fault_stats(const struct nic_link *link, struct nic_fault_stats *tx,
                              struct nic_fault_stats *rx)
{
    memset(tx, 0, sizeof(*tx));
    memset(rx, 0, sizeof(*rx));
    if (link->fault_tx)
        nic_fault_get_stats(link->fault_tx, tx);
    if (link->fault_rx)
        nic_fault_get_stats(link->fault_rx, rx);
}
