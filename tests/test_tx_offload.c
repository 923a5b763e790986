/*
 * test_tx_offload.c - Check suite for the TLS transmit offload below TCP
 * (docs/design.md §4): the host side in tls/tls_offload.c (record store, shadow
 * sequence number, dump and tag-cache resync policies), the driver in
 * stack/stack_driver.c (netif->output, TX completions, tag reports) and the
 * NIC record engine in nic/nic_tls_tx.c, all driven from the test thread.
 *
 * The test plays lwIP: it holds the core lock, registers plaintext record
 * frames (tls_record_frame_plain) with the offload as lwIP's send buffer
 * would hold them, and hands IPv4/TCP segments of that stream to the
 * driver's netif->output. The NIC runs one engine round at a time
 * (nic_dev_poll_once) and writes to one end of a SOCK_SEQPACKET socketpair
 * standing in for TUN; the test reads the other end. Every payload on the
 * wire must equal the same records sealed in software (tls_record_seal, an
 * independent path cross-checked against mbed TLS in test_record), and every
 * TCP checksum must verify with the test's own RFC 1071 sum.
 *
 * Random choices come from a seeded generator; the seed is printed and can
 * be replayed with ANIC_TEST_SEED=<seed>.
 */
#include <arpa/inet.h>
#include <check.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/virtio_net.h>
#include <lwip/ip_addr.h>
#include <lwip/pbuf.h>
#include <lwip/priv/tcp_priv.h>
#include <lwip/tcp.h>
#include <lwip/tcpip.h>

#include "app_runtime.h" /* app_tls_offload_ops: the product's wiring */
#include "nic_abi.h"
#include "nic_dev.h"
#include "nic_engine.h" /* white box: the NIC's flow table, to see what it keeps of a key */
#include "nic_flow.h"
#include "nic_tls.h"
#include "stack_driver.h"
#include "stack_tls_offload.h"
#include "test_lwip.h"
#include "test_util.h"
#include "tls_offload.h"
#include "tls_record.h"

#define TEST_MTU     1500u
#define TS_OPT_LEN   12u /* NOP, NOP, timestamps */
#define HDRS         (TU_IP_HLEN + TU_TCP_HLEN + g_opt_len)
#define MAX_PAYLOAD  (TEST_MTU - HDRS) /* 1460 without TCP options */
#define SEG_CHUNK    1400u             /* default segment size when chunking */
#define WIRE_BUF_LEN 2048u
#define MAX_RX       256u /* packets read from the wire per pump */
#define MAX_RECS     512u
#define MAX_SEGS     4096u
#define TAG          TLS_TAG_LEN
#define OVERHEAD     TLS_RECORD_OVERHEAD /* 29 */
#define NONE         SIZE_MAX
#define JUMBO_MTU    9000u

static size_t g_opt_len;          /* TCP options in the segments we send: 0 or TS_OPT_LEN */
static uint32_t g_nic_flows = 8;  /* the NIC's flow table (the host has 8 flow ids) */
static unsigned g_mtu = TEST_MTU; /* the device's and driver's MTU */
static bool g_gso;                /* the wire speaks virtio_net_hdr (GSO TUN); TSO on */
#define GSO_TX_RING 1024u         /* its TX CQ allows 16 KB offloaded TSO segments */
#define VNET_HLEN   sizeof(struct virtio_net_hdr)

static const uint8_t KEY[16] = {0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6,
                                0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c};
static const uint8_t SALT[4] = {0xca, 0xfe, 0xba, 0xbe};
static const uint8_t TYPES[] = {TLS_CT_APPDATA, TLS_CT_ALERT, TLS_CT_HANDSHAKE};
static const size_t SWEEP_SIZES[] = {0, 1, 15, 16, 17, 100, 1400, 16384};
#define N_SWEEP_SIZES (sizeof(SWEEP_SIZES) / sizeof(SWEEP_SIZES[0]))

static const char *policy_name(int policy)
{
    return policy == TLS_TX_RESYNC_TAGCACHE ? "tagcache" : "dump";
}

/* ---- packets ---- */

/* A real IPv4/TCP segment host -> peer with correct checksums. */
static size_t build_pkt(uint8_t *p, uint32_t seq, const uint8_t *payload, size_t plen)
{
    static const uint8_t ts[TS_OPT_LEN] = {1, 1, 8, 10, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 9};
    struct tu_tcp seg = {.saddr = TU_HOST_IP,
                         .daddr = TU_PEER_IP,
                         .sport = TU_HOST_PORT,
                         .dport = TU_PEER_PORT,
                         .ip_id = (uint16_t)((seq * 2654435761u) >> 16 ^ plen), /* from seq, len */
                         .seq = seq,
                         .ack = 1,
                         .flags = TU_TCP_PSH | TU_TCP_ACK,
                         .opt = ts,
                         .opt_len = g_opt_len,
                         .payload = payload,
                         .len = plen};
    return tu_build_tcp(p, &seg);
}

/* ---- the harness: NIC + driver + offload + a fake pcb + the wire ---- */

struct rec {
    size_t off, len; /* in the stream */
    uint64_t sn;
    uint8_t type;
};

struct rxpkt {
    size_t len;
    uint8_t data[WIRE_BUF_LEN];
};

/* The offload's counters of both halves (one /stats section): the
   driver's and tls/'s, as their lists declare them. */
#define SNAP_FIELD(name) uint64_t name;
struct offload_tx_snap {
    STACK_TLS_TX_COUNTERS(SNAP_FIELD)
    TLS_OFFLOAD_TX_COUNTERS(SNAP_FIELD)
};
struct offload_rx_snap {
    STACK_TLS_RX_COUNTERS(SNAP_FIELD)
    TLS_OFFLOAD_RX_COUNTERS(SNAP_FIELD)
};

struct snap {
    struct offload_tx_snap h;
    struct nic_counters n;
    struct stack_driver_counters d;
};

struct harness {
    int wire;
    struct nic_dev *dev;
    struct stack_driver *drv;
    struct netif *nif;
    struct stack_tls_offload *dev_ofl; /* the driver's half */
    struct tls_offload *o;
    struct tcp_pcb *pcb;
    struct tls_aead *aead;
    bool locked;
    /* the offloaded flow */
    struct tls_tx_offload *t;
    int policy;
    uint32_t start_seq;
    /* its record stream: plaintext frames, software ciphertext, first
       transmission as seen on the wire */
    struct rec recs[MAX_RECS];
    size_t nrec, len, cap;
    uint8_t *plain, *sealed, *first, *seen;
    /* packets read from the wire, not yet checked */
    struct rxpkt *rx;
    size_t rx_n, rx_head;
};

static struct harness H;

static void setup(void)
{
    tu_lwip_start_once();
    memset(&H, 0, sizeof(H));
    H.wire = -1;
    struct nic_dev_cfg cfg = {.tx_ring_size = g_gso ? GSO_TX_RING : 256,
                              .tun_gso = g_gso,
                              .rx_ring_size = 64,
                              .mtu = g_mtu,
                              .max_flows = g_nic_flows,
                              .pcap_path = NULL};
    H.dev = tu_dev_create(&cfg, &H.wire);
    H.rx = calloc(MAX_RX, sizeof(*H.rx));
    ck_assert_ptr_nonnull(H.rx);
    H.aead = tls_aead_new(KEY, sizeof(KEY), SALT);
    ck_assert_ptr_nonnull(H.aead);

    LOCK_TCPIP_CORE();
    H.locked = true;
    H.drv = stack_driver_create(H.dev, g_mtu);
    ck_assert_ptr_nonnull(H.drv);
    H.nif = stack_driver_netif(H.drv);
    H.nif->state = H.drv;
    if (g_gso)
        ck_assert_uint_gt(stack_driver_set_tso(H.drv, 65535), 16384);
    ck_assert_int_eq(stack_driver_netif_init(H.nif), ERR_OK);
    H.dev_ofl = stack_tls_offload_new(H.drv, 8);
    ck_assert_ptr_nonnull(H.dev_ofl);
    H.o = tls_offload_new(&app_tls_offload_ops, H.dev_ofl);
    ck_assert_ptr_nonnull(H.o);
    H.pcb = calloc(1, sizeof(*H.pcb));
    ck_assert_ptr_nonnull(H.pcb);
    IP_ADDR4(&H.pcb->local_ip, 10, 0, 0, 1);
    IP_ADDR4(&H.pcb->remote_ip, 10, 0, 0, 2);
    H.pcb->local_port = TU_HOST_PORT;
    H.pcb->remote_port = TU_PEER_PORT;
    tu_ctx[0] = '\0';
    g_opt_len = 0;
}

static void teardown(void)
{
    if (!H.locked)
        LOCK_TCPIP_CORE();
    if (H.o)
        tls_offload_free(H.o); /* posts DEL_CTX for live flows */
    stack_tls_offload_free(H.dev_ofl);
    if (H.dev)
        nic_dev_poll_once(H.dev);
    stack_driver_destroy(H.drv);
    UNLOCK_TCPIP_CORE();
    if (H.dev)
        nic_dev_destroy(H.dev);
    if (H.wire >= 0)
        close(H.wire);
    tls_aead_free(H.aead);
    free(H.pcb);
    free(H.rx);
    free(H.plain);
    free(H.sealed);
    free(H.first);
    free(H.seen);
    memset(&H, 0, sizeof(H));
    H.wire = -1;
    g_nic_flows = 8;
    g_mtu = TEST_MTU;
    g_gso = false;
}

/* A NIC with a single flow context: the second install is refused. */
static void setup_one_nic_flow(void)
{
    g_nic_flows = 1;
    setup();
}

/* A GSO TUN (virtio_net_hdr on every wire message) and TSO in the driver. */
static void setup_gso(void)
{
    g_gso = true;
    setup();
}

/* Jumbo frames: fewer packets for the long-stream test. */
static void setup_jumbo(void)
{
    g_mtu = JUMBO_MTU;
    setup();
}

static struct snap snap(void)
{
    struct snap s;
    const struct stack_tls_tx_counters *dc =
        stack_tls_offload_tx_counters(H.dev_ofl, (enum stack_tls_tx_resync)H.policy);
    const struct tls_offload_counters *hc = tls_offload_counters(H.o, (enum tls_tx_resync)H.policy);
#define SNAP_DRV(name)  s.h.name = dc->name;
#define SNAP_HOST(name) s.h.name = hc->name;
    STACK_TLS_TX_COUNTERS(SNAP_DRV)
    TLS_OFFLOAD_TX_COUNTERS(SNAP_HOST)
    nic_dev_get_counters(H.dev, &s.n);
    stack_driver_get_counters(H.drv, &s.d);
    return s;
}

/* The RX offload counters of both halves, read now. */
static struct offload_rx_snap rxc(void)
{
    struct offload_rx_snap s;
    const struct stack_tls_rx_counters *dc = stack_tls_offload_rx_counters(H.dev_ofl);
    const struct tls_offload_rx_counters *hc = tls_offload_rx_counters(H.o);
#define RX_DRV(name)  s.name = dc->name;
#define RX_HOST(name) s.name = hc->name;
    STACK_TLS_RX_COUNTERS(RX_DRV)
    TLS_OFFLOAD_RX_COUNTERS(RX_HOST)
    return s;
}

/* Run the NIC until it consumed the whole TX ring. */
static void run_tx_ring(void)
{
    const struct nic_queues *q = nic_dev_queues(H.dev);
    for (int i = 0;; i++) {
        TU_CHECK(i < 64);
        nic_dev_poll_once(H.dev);
        if (tu_load_acq(&q->tx_idx->cons) == tu_load_acq(&q->tx_idx->prod))
            break;
    }
}

/* The driver's TX completions and tag reports, until none is left. */
static void reap_completions(void)
{
    for (int i = 0; stack_driver_poll(H.drv, 64) != 0; i++)
        TU_CHECK(i < 64);
}

/* Run the NIC over the TX ring, read everything it put on the wire, then
   let the driver reclaim TX slots and drain completions (tag reports reach
   the offload here). */
static void pump(void)
{
    run_tx_ring();
    if (H.rx_head == H.rx_n)
        H.rx_head = H.rx_n = 0;
    for (;;) {
        TU_CHECK(H.rx_n < MAX_RX);
        size_t n = tu_wire_recv(H.wire, H.rx[H.rx_n].data, WIRE_BUF_LEN);
        if (n == 0)
            break;
        if (g_gso) { /* single packets only here: no GSO, header stripped */
            struct virtio_net_hdr vh;
            TU_CHECK(n > VNET_HLEN);
            memcpy(&vh, H.rx[H.rx_n].data, sizeof(vh));
            TU_CHECK_EQ(vh.gso_type, VIRTIO_NET_HDR_GSO_NONE);
            n -= VNET_HLEN;
            memmove(H.rx[H.rx_n].data, H.rx[H.rx_n].data + VNET_HLEN, n);
        }
        H.rx[H.rx_n++].len = n;
    }
    reap_completions();
}

/* Hand one segment to the driver, as lwIP's ip4_output would (longer than
   the MTU: a TSO segment). */
/* Hand one segment (plen 0: a pure ACK) to the driver and return its
   answer; *ref_after (if not NULL): our pbuf's references right after. */
static err_t output_try(uint32_t seq, const uint8_t *payload, size_t plen, unsigned *ref_after)
{
    static const uint8_t nothing[1];
    struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)(HDRS + plen), PBUF_RAM);
    TU_CHECK(p != NULL);
    build_pkt(p->payload, seq, payload ? payload : nothing, plen);
    ip4_addr_t dst;
    IP4_ADDR(&dst, 10, 0, 0, 2);
    err_t e = H.nif->output(H.nif, p, &dst);
    if (ref_after)
        *ref_after = p->ref;
    pbuf_free(p); /* the driver holds its own reference, if it kept the packet */
    return e;
}

static void output_segment(uint32_t seq, const uint8_t *payload, size_t plen)
{
    TU_CHECK_EQ(output_try(seq, payload, plen, NULL), ERR_OK);
}

/* One segment within the MTU. */
static void send_bytes(uint32_t seq, const uint8_t *payload, size_t plen)
{
    TU_CHECK(plen <= MAX_PAYLOAD);
    output_segment(seq, payload, plen);
}

/* Stream bytes [a, b) at seq start_seq + a. */
static void send_range(size_t a, size_t b)
{
    TU_CHECK(a < b && b <= H.len);
    send_bytes(H.start_seq + (uint32_t)a, H.plain + a, b - a);
}

/* The next packet on the wire must be the segment at seq with this payload:
   same headers as sent, valid IPv4 and TCP checksums. exact_csum: the TCP
   checksum field must also be unchanged (packets the NIC must not touch). */
static const uint8_t *expect_pkt(uint32_t seq, const uint8_t *payload, size_t plen, bool exact_csum)
{
    static uint8_t want[WIRE_BUF_LEN];
    TU_CHECK(H.rx_head < H.rx_n);
    const struct rxpkt *got = &H.rx[H.rx_head++];
    size_t tot = build_pkt(want, seq, payload, plen);
    TU_CHECK_EQ(got->len, tot);
    TU_CHECK_EQ(tu_get16(got->data + 2), tot);
    TU_CHECK(memcmp(got->data, want, TU_TCP_CSUM_OFF) ==
             0); /* IPv4 header, TCP header up to csum */
    TU_CHECK(memcmp(got->data + TU_TCP_CSUM_OFF + 2, want + TU_TCP_CSUM_OFF + 2,
                    HDRS - TU_TCP_CSUM_OFF - 2) == 0);
    if (memcmp(got->data + HDRS, payload, plen) != 0) {
        size_t i = 0;
        while (got->data[HDRS + i] == payload[i])
            i++;
        ck_abort_msg("seq %" PRIu32 " len %zu: payload differs from byte %zu [%s]", seq, plen, i,
                     tu_ctx);
    }
    TU_CHECK_EQ(tu_ip_csum(got->data), 0);
    TU_CHECK_EQ(tu_tcp_csum(got->data, tot), 0);
    if (exact_csum)
        TU_CHECK(memcmp(got->data + TU_TCP_CSUM_OFF, want + TU_TCP_CSUM_OFF, 2) == 0);
    return got->data + HDRS;
}

/* The next packet is stream bytes [a, b) as the software would seal them,
   and identical to their first transmission. */
static void expect_range(size_t a, size_t b)
{
    const uint8_t *got = expect_pkt(H.start_seq + (uint32_t)a, H.sealed + a, b - a, false);
    for (size_t i = a; i < b; i++) {
        if (H.seen[i])
            TU_CHECK_EQ(got[i - a], H.first[i]);
        H.first[i] = got[i - a];
        H.seen[i] = 1;
    }
}

static void expect_none(void)
{
    TU_CHECK_EQ(H.rx_n - H.rx_head, 0);
}

/* One segment: send, run the NIC, check the one packet on the wire. */
static void xmit(size_t a, size_t b)
{
    send_range(a, b);
    pump();
    expect_range(a, b);
    expect_none();
}

/* ---- flows and record streams ---- */

static void stream_clear(void)
{
    H.nrec = 0;
    H.len = 0;
}

static void stream_reserve(size_t need)
{
    if (need <= H.cap)
        return;
    size_t cap = H.cap ? H.cap : 65536;
    while (cap < need)
        cap *= 2;
    H.plain = realloc(H.plain, cap);
    H.sealed = realloc(H.sealed, cap);
    H.first = realloc(H.first, cap);
    H.seen = realloc(H.seen, cap);
    TU_CHECK(H.plain && H.sealed && H.first && H.seen);
    H.cap = cap;
}

/* Append a record of n plaintext bytes: frame it (blank tag) into a pbuf
   and register it with the offload, as tls/ does when it writes a record to
   TCP; seal the same record in software for the expected wire bytes. */
static void stream_add(uint8_t type, size_t n, struct tu_rng *r)
{
    static uint8_t pt[TLS_MAX_PLAINTEXT];
    TU_CHECK(n <= TLS_MAX_PLAINTEXT && H.nrec < MAX_RECS);
    size_t rlen = n + OVERHEAD;
    stream_reserve(H.len + rlen);
    struct rec *rec = &H.recs[H.nrec];
    rec->off = H.len;
    rec->len = rlen;
    rec->sn = 1 + H.nrec;
    rec->type = type;
    for (size_t i = 0; i < n; i++)
        pt[i] = r ? (uint8_t)tu_rng_next(r) : (uint8_t)(rec->sn * 131u + i * 7u + (i >> 8));
    struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)rlen, PBUF_RAM);
    TU_CHECK(p != NULL);
    TU_CHECK_EQ(tls_record_frame_plain(rec->sn, type, pt, n, p->payload), rlen);
    memcpy(H.plain + H.len, p->payload, rlen);
    TU_CHECK_EQ(tls_record_seal(H.aead, rec->sn, type, pt, n, H.sealed + H.len), rlen);
    memset(H.seen + H.len, 0, rlen);
    if (H.t)
        tls_tx_offload_record(H.t, p, H.start_seq + (uint32_t)H.len, rec->sn);
    pbuf_free(p); /* the record store keeps its own reference */
    H.len += rlen;
    H.nrec++;
}

static void stream_add_sizes(const size_t *sizes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        stream_add(TYPES[i % 3], sizes[i], NULL);
}

/* stack_driver_post_ctrl() fills a TX slot but does not publish the
   producer index; only driver_output() does. A control descriptor posted
   outside a packet send (STATIC_CTX from tls_tx_offload_start, DEL_CTX from
   flow_stop) therefore stays invisible to the NIC until the next packet.
   Send what lwIP would send anyway, a pure ACK (no payload: never
   offloaded), to publish it, and check it crosses the NIC untouched. */
static void publish_with_ack(void)
{
    static const uint8_t nothing[1];
    send_bytes(H.start_seq, nothing, 0);
    pump();
    expect_pkt(H.start_seq, nothing, 0, true);
    expect_none();
}

static void flow_start(int policy, uint32_t start_seq)
{
    struct nic_counters before;
    nic_dev_get_counters(H.dev, &before);
    H.policy = policy;
    H.start_seq = start_seq;
    H.t = tls_tx_offload_start(H.o, (enum tls_tx_resync)policy, H.pcb, KEY, sizeof(KEY), SALT,
                               start_seq, 1);
    TU_CHECK(H.t != NULL);
    publish_with_ack();
    struct nic_counters after;
    nic_dev_get_counters(H.dev, &after);
    TU_CHECK_EQ(after.tx_tls_ctx - before.tx_tls_ctx, 1);
    stream_clear();
}

static void flow_stop(void)
{
    struct nic_counters before, after;
    nic_dev_get_counters(H.dev, &before);
    tls_tx_offload_release(H.t, NULL, false);
    H.t = NULL;
    publish_with_ack();
    nic_dev_get_counters(H.dev, &after);
    TU_CHECK_EQ(after.tx_tls_del - before.tx_tls_del, 1);
}

/* Index of the record holding stream byte off. */
static size_t rec_at(size_t off)
{
    for (size_t i = 0; i < H.nrec; i++)
        if (off < H.recs[i].off + H.recs[i].len)
            return i;
    ck_abort_msg("offset %zu beyond the stream [%s]", off, tu_ctx);
    return 0;
}

/* Records whose tag the NIC has computed once the stream up to `end` went
   out in sequence: it finishes GHASH when it passes the last payload byte. */
static size_t tags_done(size_t end)
{
    size_t n = 0;
    for (size_t i = 0; i < H.nrec; i++)
        if (H.recs[i].off + H.recs[i].len - TAG <= end)
            n++;
    return n;
}

/* ---- counter deltas ---- */

struct want {
    /* host (tls_offload_counters of the flow's policy) */
    uint64_t ooo, skip, drop, rdump, rtag, miss, dump_bytes, rexmit_bytes, tags;
    /* NIC */
    uint64_t n_ooo, n_oneshot, n_dump_pkts, n_dump_bytes, n_enc_pkts, n_enc_bytes, n_reports;
};

#define D(field) (a.field - b->field)

static void check_delta_at(const struct snap *b, const struct want *w, int line)
{
    struct snap a = snap();
    char saved[sizeof(tu_ctx)];
    memcpy(saved, tu_ctx, sizeof(saved));
    size_t used = strnlen(tu_ctx, sizeof(tu_ctx) - 40);
    snprintf(tu_ctx + used, sizeof(tu_ctx) - used, "; deltas checked at line %d", line);
    TU_CHECK_EQ(D(h.tx_tls_ooo), w->ooo);
    TU_CHECK_EQ(D(h.tx_tls_skip_no_sync_data), w->skip);
    TU_CHECK_EQ(D(h.tx_tls_drop_no_sync_data), w->drop);
    TU_CHECK_EQ(D(h.tx_tls_resync_dump), w->rdump);
    TU_CHECK_EQ(D(h.tx_tls_resync_tagcache), w->rtag);
    TU_CHECK_EQ(D(h.tx_tls_tagcache_miss), w->miss);
    TU_CHECK_EQ(D(h.tx_tls_dump_bytes), w->dump_bytes);
    TU_CHECK_EQ(D(h.tx_tls_retransmit_bytes), w->rexmit_bytes);
    TU_CHECK_EQ(D(h.tx_tls_tags_cached), w->tags);
    TU_CHECK_EQ(D(h.tx_tls_ring_full_deferred), 0);
    TU_CHECK_EQ(D(h.tx_tls_nic_errors), 0);
    TU_CHECK_EQ(D(h.tx_tls_ctx_fail), 0);
    TU_CHECK_EQ(D(n.tx_tls_ooo), w->n_ooo);
    TU_CHECK_EQ(D(n.tx_tls_oneshot), w->n_oneshot);
    TU_CHECK_EQ(D(n.tx_tls_dump_packets), w->n_dump_pkts);
    TU_CHECK_EQ(D(n.tx_tls_dump_bytes), w->n_dump_bytes);
    TU_CHECK_EQ(D(n.tx_tls_resync_bytes), w->n_dump_bytes);
    TU_CHECK_EQ(D(n.tx_tls_encrypted_packets), w->n_enc_pkts);
    TU_CHECK_EQ(D(n.tx_tls_encrypted_bytes), w->n_enc_bytes);
    TU_CHECK_EQ(D(n.tx_tls_tag_reports), w->n_reports);
    TU_CHECK_EQ(D(n.tx_tls_seq_mismatch), 0);
    TU_CHECK_EQ(D(n.tx_tls_bad_record), 0);
    TU_CHECK_EQ(D(n.tx_tls_no_ctx), 0);
    TU_CHECK_EQ(D(n.tx_bad_desc), 0);
    TU_CHECK_EQ(D(n.tx_cq_overflow), 0);
    TU_CHECK_EQ(D(n.tun_write_errors), 0);
    TU_CHECK_EQ(D(d.tx_err_status), 0);
    TU_CHECK_EQ(D(d.tx_ring_full), 0);
    memcpy(tu_ctx, saved, sizeof(tu_ctx));
}

#define CHECK_DELTA(b, ...) check_delta_at(&(b), &(struct want){__VA_ARGS__}, __LINE__)

/* What one retransmitted segment [a, b) costs, given the host's state: the
   record holding a is in the store; tag_cached: its tag was reported. */
static struct want rexmit_cost(size_t a, size_t b, bool tag_cached)
{
    const struct rec *r = &H.recs[rec_at(a)];
    size_t off = a - r->off, len = b - a;
    bool touches_tag = b > r->off + r->len - TAG;
    struct want w = {
        .ooo = 1, .rexmit_bytes = len, .n_ooo = 1, .n_enc_pkts = 1, .n_enc_bytes = len};
    if (H.policy == TLS_TX_RESYNC_TAGCACHE && (!touches_tag || tag_cached)) {
        w.rtag = w.n_oneshot = 1;
        return w;
    }
    if (H.policy == TLS_TX_RESYNC_TAGCACHE)
        w.miss = 1;
    w.rdump = 1;
    w.dump_bytes = w.n_dump_bytes = off;
    w.n_dump_pkts = off ? 1 : 0;
    return w;
}

/* ---- 1. segmentation sweep, in sequence ---- */

/* Send the stream in segments cut at bounds[0..n) (sorted, 0 and H.len
   included; gaps wider than SEG_CHUNK are chunked), one segment per NIC
   round, and check the wire bytes and counters. */
static void send_in_sequence(const size_t *bounds, size_t n)
{
    struct snap b = snap();
    size_t segs = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        for (size_t a = bounds[i]; a < bounds[i + 1];) {
            size_t e = a + SEG_CHUNK < bounds[i + 1] ? a + SEG_CHUNK : bounds[i + 1];
            xmit(a, e);
            segs++;
            if (H.policy == TLS_TX_RESYNC_TAGCACHE) {
                struct snap now = snap();
                TU_CHECK_EQ(now.h.tx_tls_tags_cached - b.h.tx_tls_tags_cached, tags_done(e));
            }
            a = e;
        }
    }
    bool tc = H.policy == TLS_TX_RESYNC_TAGCACHE;
    CHECK_DELTA(b, .n_enc_pkts = segs, .n_enc_bytes = H.len, .tags = tc ? H.nrec : 0,
                .n_reports = tc ? H.nrec : 0);
}

/* Around one record R of each size, between two others: cut at every byte
   offset of R's header and explicit nonce (0..13) and of its tag
   (len-16..len), alone and in every header x tag pair. */
START_TEST(sweep_split_points_in_sequence)
{
    int policy = _i;
    uint32_t run = 0;
    for (size_t si = 0; si < N_SWEEP_SIZES; si++) {
        size_t rlen = SWEEP_SIZES[si] + OVERHEAD;
        for (int s1 = -1; s1 <= TLS_PAYLOAD_OFFSET; s1++) {
            for (int s2 = -1; s2 <= TAG; s2++) {
                size_t c1 = s1 < 0 ? NONE : (size_t)s1;
                size_t c2 = s2 < 0 ? NONE : rlen - TAG + (size_t)s2;
                if (c1 != NONE && c2 != NONE && c2 <= c1)
                    continue;
                TU_CTX("%s size %zu cut %d/%d run %" PRIu32, policy_name(policy), SWEEP_SIZES[si],
                       s1, s2, run);
                /* Start near the top of the sequence space: early runs wrap. */
                flow_start(policy, 0xffffc000u + run * 7919u);
                stream_add(TYPES[(run + 1) % 3], 40, NULL);
                stream_add(TYPES[run % 3], SWEEP_SIZES[si], NULL);
                stream_add(TYPES[(run + 2) % 3], 60, NULL);
                size_t r0 = H.recs[1].off, bounds[4], n = 0;
                bounds[n++] = 0;
                if (c1 != NONE && r0 + c1 > 0)
                    bounds[n++] = r0 + c1;
                if (c2 != NONE)
                    bounds[n++] = r0 + c2;
                bounds[n++] = H.len;
                send_in_sequence(bounds, n);
                flow_stop();
                run++;
            }
        }
    }
    ck_assert_uint_gt(run, 2000);
}
END_TEST

/* Random record streams (sizes, types, start seq) cut into random segments,
   several segments per NIC round. */
START_TEST(sweep_random_segmentation_in_sequence)
{
    int policy = _i;
    struct tu_rng r = tu_rng_for("sweep_random", policy);
    for (int iter = 0; iter < 40; iter++) {
        TU_CTX("%s iter %d seed %" PRIu64, policy_name(policy), iter, tu_seed);
        g_opt_len = iter % 2 ? TS_OPT_LEN : 0; /* payload offset 52 instead of 40 */
        uint32_t start = (uint32_t)tu_rng_next(&r);
        if (iter % 4 == 0)
            start = 0u - (uint32_t)tu_rng_range(&r, 1, 20000); /* wraps mid-stream */
        flow_start(policy, start);
        size_t nrec = tu_rng_range(&r, 30, 80);
        for (size_t i = 0; i < nrec; i++) {
            size_t n;
            unsigned k = (unsigned)tu_rng_range(&r, 0, 99);
            if (k < 40)
                n = SWEEP_SIZES[tu_rng_range(&r, 0, N_SWEEP_SIZES - 1)];
            else if (k < 45)
                n = tu_rng_range(&r, 2000, TLS_MAX_PLAINTEXT);
            else
                n = tu_rng_range(&r, 0, 2000);
            stream_add(TYPES[tu_rng_range(&r, 0, 2)], n, &r);
        }
        struct snap b = snap();
        size_t a = 0, segs = 0;
        while (a < H.len) {
            /* up to 4 segments in one NIC round */
            size_t batch = tu_rng_range(&r, 1, 4), starts[4], ends[4], k = 0;
            for (; k < batch && a < H.len; k++) {
                unsigned kind = (unsigned)tu_rng_range(&r, 0, 3);
                size_t len = kind == 0   ? tu_rng_range(&r, 1, 64)
                             : kind == 1 ? tu_rng_range(&r, 1300, SEG_CHUNK)
                                         : tu_rng_range(&r, 1, SEG_CHUNK);
                if (len > H.len - a)
                    len = H.len - a;
                send_range(a, a + len);
                starts[k] = a;
                ends[k] = a + len;
                a += len;
            }
            pump();
            for (size_t j = 0; j < k; j++)
                expect_range(starts[j], ends[j]);
            expect_none();
            segs += k;
            if (policy == TLS_TX_RESYNC_TAGCACHE) {
                struct snap now = snap();
                TU_CHECK_EQ(now.h.tx_tls_tags_cached - b.h.tx_tls_tags_cached, tags_done(a));
            }
        }
        bool tc = policy == TLS_TX_RESYNC_TAGCACHE;
        CHECK_DELTA(b, .n_enc_pkts = segs, .n_enc_bytes = H.len, .tags = tc ? H.nrec : 0,
                    .n_reports = tc ? H.nrec : 0);
        flow_stop();
    }
}
END_TEST

/* ---- 2. scripted retransmissions ---- */

/* R1..R5: [0,129) [129,1158) [1158,2187) [2187,2516) [2516,2745) */
static const size_t LAYOUT5[] = {100, 1000, 1000, 300, 200};

static void flow_layout5(int policy, uint32_t start)
{
    flow_start(policy, start);
    stream_add_sizes(LAYOUT5, 5);
    TU_CHECK_EQ(H.len, 2745);
}

/* A segment starting inside a record, after later data went out. */
START_TEST(rexmit_mid_record)
{
    int policy = _i;
    bool tc = policy == TLS_TX_RESYNC_TAGCACHE;
    TU_CTX("%s", policy_name(policy));
    flow_layout5(policy, 1000000);
    xmit(0, 700);
    xmit(700, 1400);
    xmit(1400, 2300);
    struct snap b = snap();
    TU_CHECK_EQ(b.h.tx_tls_tags_cached, tc ? 3 : 0); /* R1, R2, R3 */

    /* [700,1400): R2 from offset 571 with its tag, then R3's head. */
    b = snap();
    xmit(700, 1400);
    if (tc)
        CHECK_DELTA(b, .ooo = 1, .rtag = 1, .rexmit_bytes = 700, .n_ooo = 1, .n_oneshot = 1,
                    .n_enc_pkts = 1, .n_enc_bytes = 700);
    else
        CHECK_DELTA(b, .ooo = 1, .rdump = 1, .dump_bytes = 571, .rexmit_bytes = 700, .n_ooo = 1,
                    .n_dump_pkts = 1, .n_dump_bytes = 571, .n_enc_pkts = 1, .n_enc_bytes = 700);

    /* [800,1100): inside R2's payload (offset 671), no tag byte. */
    b = snap();
    xmit(800, 1100);
    if (tc)
        CHECK_DELTA(b, .ooo = 1, .rtag = 1, .rexmit_bytes = 300, .n_ooo = 1, .n_oneshot = 1,
                    .n_enc_pkts = 1, .n_enc_bytes = 300);
    else
        CHECK_DELTA(b, .ooo = 1, .rdump = 1, .dump_bytes = 671, .rexmit_bytes = 300, .n_ooo = 1,
                    .n_dump_pkts = 1, .n_dump_bytes = 671, .n_enc_pkts = 1, .n_enc_bytes = 300);

    /* New data [2300,2516): R4 from offset 113 with its tag. Dump: the NIC
       now expects 1100, so this costs another resync; tag cache: the NIC's
       main state never moved, the segment is in sequence. */
    b = snap();
    xmit(2300, 2516);
    if (tc)
        CHECK_DELTA(b, .tags = 1, .n_reports = 1, .n_enc_pkts = 1, .n_enc_bytes = 216);
    else
        CHECK_DELTA(b, .ooo = 1, .rdump = 1, .dump_bytes = 113, .rexmit_bytes = 216, .n_ooo = 1,
                    .n_dump_pkts = 1, .n_dump_bytes = 113, .n_enc_pkts = 1, .n_enc_bytes = 216);

    /* And the next one is in sequence under both policies. */
    b = snap();
    xmit(2516, 2745);
    CHECK_DELTA(b, .tags = tc ? 1 : 0, .n_reports = tc ? 1 : 0, .n_enc_pkts = 1,
                .n_enc_bytes = 229);
}
END_TEST

static void drain_discard(void);

/* A retransmission the ring has no room for (with the resync descriptors
   it needs) is refused as a full ring: ERR_MEM, so lwIP keeps it and sends
   it again, instead of dropping it and waiting for a further RTO. Once the
   ring drained it goes out resynced, with the right ciphertext. */
START_TEST(rexmit_refused_while_ring_lacks_room)
{
    int policy = _i;
    TU_CTX("%s", policy_name(policy));
    flow_layout5(policy, 5000);
    xmit(0, 700);
    xmit(700, 1400);
    for (int n = 0; n < 4096 && stack_driver_tx_space(H.drv) > 2; n++)
        output_segment(H.start_seq, NULL, 0);     /* pure ACKs */
    TU_CHECK_EQ(stack_driver_tx_space(H.drv), 2); /* room for the segment, not for a resync */

    struct snap b = snap();
    unsigned ref;
    TU_CHECK_EQ(output_try(H.start_seq + 700, H.plain + 700, 700, &ref), ERR_MEM);
    TU_CHECK_EQ(ref, 1); /* the driver kept no reference */
    struct snap a = snap();
    TU_CHECK_EQ(a.h.tx_tls_ring_full_deferred - b.h.tx_tls_ring_full_deferred, 1);
    TU_CHECK_EQ(a.h.tx_tls_ooo - b.h.tx_tls_ooo, 0);
    TU_CHECK_EQ(a.d.tx_ring_full - b.d.tx_ring_full, 1);
    TU_CHECK_EQ(stack_driver_tx_space(H.drv), 2); /* nothing posted */

    drain_discard(); /* the ACKs leave, the ring empties */
    xmit(700, 1400); /* TCP's second try: resynced, exact on the wire */
    TU_CHECK_EQ(snap().h.tx_tls_ooo - b.h.tx_tls_ooo, 1);
}
END_TEST

/* Retransmissions that start exactly at a record boundary: no DUMP. */
START_TEST(rexmit_at_record_boundary)
{
    int policy = _i;
    bool tc = policy == TLS_TX_RESYNC_TAGCACHE;
    TU_CTX("%s", policy_name(policy));
    flow_layout5(policy, 77);
    xmit(0, 700);
    xmit(700, 1158);
    xmit(1158, 2187);
    xmit(2187, 2516);

    /* R3 whole, tag included. */
    struct snap b = snap();
    xmit(1158, 2187);
    if (tc)
        CHECK_DELTA(b, .ooo = 1, .rtag = 1, .rexmit_bytes = 1029, .n_ooo = 1, .n_oneshot = 1,
                    .n_enc_pkts = 1, .n_enc_bytes = 1029);
    else
        CHECK_DELTA(b, .ooo = 1, .rdump = 1, .rexmit_bytes = 1029, .n_ooo = 1, .n_enc_pkts = 1,
                    .n_enc_bytes = 1029);

    /* The first segment of the flow: starts at start_offload_tcp_sn. */
    b = snap();
    xmit(0, 700);
    if (tc)
        CHECK_DELTA(b, .ooo = 1, .rtag = 1, .rexmit_bytes = 700, .n_ooo = 1, .n_oneshot = 1,
                    .n_enc_pkts = 1, .n_enc_bytes = 700);
    else
        CHECK_DELTA(b, .ooo = 1, .rdump = 1, .rexmit_bytes = 700, .n_ooo = 1, .n_enc_pkts = 1,
                    .n_enc_bytes = 700);

    /* [700,1158): R2 from offset 571 to its end. Dump: the NIC continues
       from the retransmission, so this one is in sequence (no tag report:
       the dump policy does not ask for them). Tag cache: another one-shot. */
    b = snap();
    xmit(700, 1158);
    if (tc)
        CHECK_DELTA(b, .ooo = 1, .rtag = 1, .rexmit_bytes = 458, .n_ooo = 1, .n_oneshot = 1,
                    .n_enc_pkts = 1, .n_enc_bytes = 458);
    else
        CHECK_DELTA(b, .n_enc_pkts = 1, .n_enc_bytes = 458);

    /* New data at the R5 boundary. Dump: the NIC expects 1158 -> resync
       without DUMP. Tag cache: in sequence. */
    b = snap();
    xmit(2516, 2745);
    if (tc)
        CHECK_DELTA(b, .tags = 1, .n_reports = 1, .n_enc_pkts = 1, .n_enc_bytes = 229);
    else
        CHECK_DELTA(b, .ooo = 1, .rdump = 1, .rexmit_bytes = 229, .n_ooo = 1, .n_enc_pkts = 1,
                    .n_enc_bytes = 229);
}
END_TEST

/* One record over five segments; retransmit the middle ones and the ones
   holding (parts of) its tag. */
START_TEST(rexmit_record_spanning_segments)
{
    int policy = _i;
    bool tc = policy == TLS_TX_RESYNC_TAGCACHE;
    TU_CTX("%s", policy_name(policy));
    flow_start(policy, 0xfffffe00u); /* the sequence numbers wrap inside R2 */
    static const size_t sizes[] = {100, 4000, 200};
    stream_add_sizes(sizes, 3); /* [0,129) [129,4158) [4158,4387) */
    static const size_t cuts[][2] = {
        {0, 1000}, {1000, 2000}, {2000, 3000}, {3000, 4150}, {4150, 4387}};
    for (size_t i = 0; i < 5; i++)
        xmit(cuts[i][0], cuts[i][1]);
    struct snap b = snap();
    TU_CHECK_EQ(b.h.tx_tls_tags_cached, tc ? 3 : 0);

    /* middle, no tag byte; then from the 9th tag byte on, with R3 whole;
       then up to 8 bytes into the tag; then the second segment. None starts
       where the previous one ended, so each is out of sequence. */
    static const size_t order[] = {2, 4, 3, 1};
    for (size_t k = 0; k < 4; k++) {
        size_t a = cuts[order[k]][0], e = cuts[order[k]][1];
        TU_CTX("%s rexmit [%zu,%zu)", policy_name(policy), a, e);
        b = snap();
        xmit(a, e);
        struct want w = rexmit_cost(a, e, true);
        check_delta_at(&b, &w, __LINE__);
        if (tc)
            TU_CHECK_EQ(w.rtag, 1);
        else
            TU_CHECK_EQ(w.dump_bytes, a - 129); /* offset in R2 */
    }
}
END_TEST

/* A segment entirely before start_offload_tcp_sn (handshake bytes) goes out
   untouched; one that mixes both sides of the fence is dropped. */
START_TEST(rexmit_before_offload_start)
{
    int policy = _i;
    bool tc = policy == TLS_TX_RESYNC_TAGCACHE;
    TU_CTX("%s", policy_name(policy));
    flow_layout5(policy, 100); /* handshake bytes below 100: seq wraps to 2^32 - 200 */
    static uint8_t hs[400];
    for (size_t i = 0; i < sizeof(hs); i++)
        hs[i] = (uint8_t)(i * 37u + 5u);

    struct snap b = snap();
    send_bytes(100u - 300u, hs, 300); /* [start-300, start) */
    pump();
    expect_pkt(100u - 300u, hs, 300, true);
    expect_none();
    CHECK_DELTA(b, .skip = 1);

    xmit(0, 700);
    xmit(700, 1400);
    b = snap();
    send_bytes(100u - 200u, hs, 200); /* again, after offloaded data went out */
    pump();
    expect_pkt(100u - 200u, hs, 200, true);
    expect_none();
    CHECK_DELTA(b, .skip = 1);

    /* The shadow did not move: the next new segment is in sequence. */
    b = snap();
    xmit(1400, 2187);
    CHECK_DELTA(b, .tags = tc ? 1 : 0, .n_reports = tc ? 1 : 0, .n_enc_pkts = 1,
                .n_enc_bytes = 787);

    /* Handshake tail + offloaded head in one segment: the fence forbids it. */
    static uint8_t mix[110];
    memcpy(mix, hs, 10);
    memcpy(mix + 10, H.plain, 100);
    b = snap();
    send_bytes(100u - 10u, mix, sizeof(mix));
    pump();
    expect_none();
    CHECK_DELTA(b, .drop = 1);

    b = snap();
    xmit(2187, 2516);
    CHECK_DELTA(b, .tags = tc ? 1 : 0, .n_reports = tc ? 1 : 0, .n_enc_pkts = 1,
                .n_enc_bytes = 329);
}
END_TEST

/* A segment whose record was acked and freed is dropped. */
START_TEST(rexmit_after_record_acked)
{
    int policy = _i;
    TU_CTX("%s", policy_name(policy));
    const uint32_t start = 4000000000u;
    flow_layout5(policy, start);
    xmit(0, 700);
    xmit(700, 1400);
    xmit(1400, 2187);
    xmit(2187, 2516);
    TU_CHECK_EQ(snap().h.records_in_store, 5);

    /* lwIP still holds a segment starting at 700 (partly acked up to 1500):
       it resends whole segments, so R2 stays; R1 goes. */
    struct tcp_hdr th;
    memset(&th, 0, sizeof(th));
    th.seqno = lwip_htonl(start + 700);
    struct tcp_seg seg;
    memset(&seg, 0, sizeof(seg));
    seg.tcphdr = &th;
    H.pcb->unacked = &seg;
    H.pcb->lastack = start + 1500;
    tls_tx_offload_acked(H.t, H.pcb);
    TU_CHECK_EQ(snap().h.records_in_store, 4);

    /* Acked through the end of R2, nothing queued: R2 goes too. */
    H.pcb->unacked = NULL;
    H.pcb->lastack = start + 1158;
    tls_tx_offload_acked(H.t, H.pcb);
    TU_CHECK_EQ(snap().h.records_in_store, 3);

    /* [700,1400) starts in R2: no record to resync from -> not sent. */
    struct snap b = snap();
    send_range(700, 1400);
    pump();
    expect_none();
    CHECK_DELTA(b, .ooo = 1, .drop = 1, .rexmit_bytes = 700);
    TU_CHECK_EQ(snap().n.tx_desc - b.n.tx_desc, 0); /* nothing was posted */

    /* [1400,2187) starts in R3, still stored. */
    TU_CTX("%s rexmit [1400,2187)", policy_name(policy));
    b = snap();
    xmit(1400, 2187);
    struct want w = rexmit_cost(1400, 2187, true);
    check_delta_at(&b, &w, __LINE__);

    /* Everything acked: the store is empty and nothing can be resent. */
    H.pcb->lastack = start + 2745;
    tls_tx_offload_acked(H.t, H.pcb);
    TU_CHECK_EQ(snap().h.records_in_store, 0);
    b = snap();
    send_range(1400, 2187);
    pump();
    expect_none();
    CHECK_DELTA(b, .ooo = 1, .drop = 1, .rexmit_bytes = 787);
}
END_TEST

/* After a retransmission, new data continues: dump pays another resync,
   tag cache does not. */
START_TEST(rexmit_then_new_data)
{
    int policy = _i;
    bool tc = policy == TLS_TX_RESYNC_TAGCACHE;
    TU_CTX("%s", policy_name(policy));
    flow_layout5(policy, 123456789);
    xmit(0, 700);
    xmit(700, 1400);

    struct snap b = snap();
    xmit(0, 700); /* holds R1 (tag cached) and R2's head */
    if (tc)
        CHECK_DELTA(b, .ooo = 1, .rtag = 1, .rexmit_bytes = 700, .n_ooo = 1, .n_oneshot = 1,
                    .n_enc_pkts = 1, .n_enc_bytes = 700);
    else
        CHECK_DELTA(b, .ooo = 1, .rdump = 1, .rexmit_bytes = 700, .n_ooo = 1, .n_enc_pkts = 1,
                    .n_enc_bytes = 700);

    /* [1400,2300): R3 from offset 242, its tag, R4's head. */
    b = snap();
    xmit(1400, 2300);
    if (tc)
        CHECK_DELTA(b, .tags = 1, .n_reports = 1, .n_enc_pkts = 1, .n_enc_bytes = 900);
    else
        CHECK_DELTA(b, .ooo = 1, .rdump = 1, .dump_bytes = 242, .rexmit_bytes = 900, .n_ooo = 1,
                    .n_dump_pkts = 1, .n_dump_bytes = 242, .n_enc_pkts = 1, .n_enc_bytes = 900);

    b = snap();
    xmit(2300, 2745);
    CHECK_DELTA(b, .tags = tc ? 2 : 0, .n_reports = tc ? 2 : 0, .n_enc_pkts = 1,
                .n_enc_bytes = 445);
}
END_TEST

/* A retransmission of a tag-holding segment before its tag was reported
   (the NIC has not even sent the original yet): tag cache misses and falls
   back to a dump; the dump policy does what it always does. */
START_TEST(rexmit_tag_not_cached)
{
    int policy = _i;
    bool tc = policy == TLS_TX_RESYNC_TAGCACHE;
    TU_CTX("%s", policy_name(policy));
    flow_layout5(policy, 31337);
    xmit(0, 700);

    struct snap b = snap();
    send_range(700, 1400);  /* holds R2's tag */
    send_range(1400, 2300); /* holds R3's tag */
    send_range(700, 1400);  /* resent before the NIC ran */
    pump();
    expect_range(700, 1400);
    expect_range(1400, 2300);
    expect_range(700, 1400);
    expect_none();
    /* Tag cache: R2 and R3 reported in sequence, then R2 again by the
       main walker, which the fallback resynced to R2. */
    if (tc)
        CHECK_DELTA(b, .ooo = 1, .miss = 1, .rdump = 1, .dump_bytes = 571, .rexmit_bytes = 700,
                    .tags = 3, .n_ooo = 1, .n_dump_pkts = 1, .n_dump_bytes = 571, .n_enc_pkts = 3,
                    .n_enc_bytes = 2300, .n_reports = 3);
    else
        CHECK_DELTA(b, .ooo = 1, .rdump = 1, .dump_bytes = 571, .rexmit_bytes = 700, .n_ooo = 1,
                    .n_dump_pkts = 1, .n_dump_bytes = 571, .n_enc_pkts = 3, .n_enc_bytes = 2300);

    /* New data [2300,2516): the fallback moved the NIC to 1400, so both
       policies resync; R4's tag was never computed -> tag cache misses. */
    b = snap();
    xmit(2300, 2516);
    if (tc)
        CHECK_DELTA(b, .ooo = 1, .miss = 1, .rdump = 1, .dump_bytes = 113, .rexmit_bytes = 216,
                    .tags = 1, .n_ooo = 1, .n_dump_pkts = 1, .n_dump_bytes = 113, .n_enc_pkts = 1,
                    .n_enc_bytes = 216, .n_reports = 1);
    else
        CHECK_DELTA(b, .ooo = 1, .rdump = 1, .dump_bytes = 113, .rexmit_bytes = 216, .n_ooo = 1,
                    .n_dump_pkts = 1, .n_dump_bytes = 113, .n_enc_pkts = 1, .n_enc_bytes = 216);

    b = snap();
    xmit(2516, 2745);
    CHECK_DELTA(b, .tags = tc ? 1 : 0, .n_reports = tc ? 1 : 0, .n_enc_pkts = 1,
                .n_enc_bytes = 229);
}
END_TEST

/* Retransmissions starting at every byte of a record's header and tag (and
   mid-payload), each ending one byte later, 16 bytes later, at the record's
   end, inside the next record, or a full segment later. */
START_TEST(rexmit_sweep_start_offsets)
{
    int policy = _i;
    bool tc = policy == TLS_TX_RESYNC_TAGCACHE;
    uint32_t n = 0;
    for (size_t si = 0; si < N_SWEEP_SIZES; si++) {
        TU_CTX("%s size %zu", policy_name(policy), SWEEP_SIZES[si]);
        flow_start(policy, 0x7ffffc00u + (uint32_t)si * 4099u);
        stream_add(TLS_CT_HANDSHAKE, 40, NULL);
        stream_add(TYPES[si % 3], SWEEP_SIZES[si], NULL);
        stream_add(TLS_CT_ALERT, 60, NULL);
        size_t bounds[] = {0, H.len};
        send_in_sequence(bounds, 2);
        const struct rec *r = &H.recs[1];
        size_t shadow = H.len; /* the driver's idea of the NIC's next seq */
        for (size_t k = 0; k < r->len; k++) {
            bool in_tag = k >= r->len - TAG;
            if (k > TLS_PAYLOAD_OFFSET && !in_tag && k != TLS_PAYLOAD_OFFSET + SWEEP_SIZES[si] / 2)
                continue;
            size_t a = r->off + k;
            size_t ends[] = {a + 1, a + 16, r->off + r->len, r->off + r->len + 10, a + SEG_CHUNK};
            const size_t nends = sizeof(ends) / sizeof(ends[0]);
            for (size_t j = 0; j < nends; j++) {
                size_t e = ends[j] < H.len ? ends[j] : H.len;
                if (e > a + MAX_PAYLOAD)
                    e = a + MAX_PAYLOAD;
                ends[j] = e;
                bool dup = false;
                for (size_t i = 0; i < j; i++)
                    dup = dup || ends[i] == e;
                if (e <= a || dup)
                    continue;
                TU_CTX("%s size %zu rexmit [%zu,%zu) record offset %zu", policy_name(policy),
                       SWEEP_SIZES[si], a, e, k);
                struct snap b = snap();
                xmit(a, e);
                struct want w;
                if (!tc && a == shadow) /* dump: continues where the last resync left */
                    w = (struct want){.n_enc_pkts = 1, .n_enc_bytes = e - a};
                else
                    w = rexmit_cost(a, e, true);
                check_delta_at(&b, &w, __LINE__);
                if (!tc)
                    shadow = e;
                n++;
            }
        }
        flow_stop();
    }
    ck_assert_uint_gt(n, 1000);
}
END_TEST

/* ---- 3. tag cache ---- */

/* Whole records in sequence: one tag report per completed record; then
   every segment holding tag bytes is resent without a single DUMP. */
START_TEST(tagcache_counts_tags_and_resends_without_dump)
{
    int policy = _i;
    bool tc = policy == TLS_TX_RESYNC_TAGCACHE;
    TU_CTX("%s", policy_name(policy));
    flow_start(policy, 0xffffff00u);
    static const size_t sizes[] = {0, 1, 15, 16, 17, 100, 1400, 16384, 5, 300, 2000, 64, 0, 0};
    const size_t nsz = sizeof(sizes) / sizeof(sizes[0]);
    stream_add_sizes(sizes, nsz);
    /* Segments of 300 bytes: some hold several tags, some split one. */
    static size_t seg_a[128], seg_b[128];
    size_t nseg = 0;
    struct snap b = snap();
    for (size_t a = 0; a < H.len; a += 300, nseg++) {
        seg_a[nseg] = a;
        seg_b[nseg] = a + 300 < H.len ? a + 300 : H.len;
        xmit(seg_a[nseg], seg_b[nseg]);
        struct snap now = snap();
        TU_CHECK_EQ(now.h.tx_tls_tags_cached - b.h.tx_tls_tags_cached,
                    tc ? tags_done(seg_b[nseg]) : 0);
        TU_CHECK_EQ(now.n.tx_tls_tag_reports - b.n.tx_tls_tag_reports,
                    tc ? tags_done(seg_b[nseg]) : 0);
    }
    TU_CHECK_EQ(snap().h.tx_tls_tags_cached - b.h.tx_tls_tags_cached, tc ? nsz : 0);

    /* Resend, newest first, every segment that holds tag bytes. */
    size_t resent = 0;
    for (size_t k = nseg; k-- > 0;) {
        bool holds_tag = false;
        for (size_t i = 0; i < H.nrec; i++) {
            size_t tag0 = H.recs[i].off + H.recs[i].len - TAG;
            if (tag0 < seg_b[k] && tag0 + TAG > seg_a[k])
                holds_tag = true;
        }
        if (!holds_tag)
            continue;
        TU_CTX("%s rexmit [%zu,%zu)", policy_name(policy), seg_a[k], seg_b[k]);
        b = snap();
        xmit(seg_a[k], seg_b[k]);
        struct want w = rexmit_cost(seg_a[k], seg_b[k], true);
        check_delta_at(&b, &w, __LINE__);
        if (tc)
            TU_CHECK_EQ(snap().n.tx_tls_dump_packets - b.n.tx_tls_dump_packets, 0);
        resent++;
    }
    ck_assert_uint_eq(resent, 7);
}
END_TEST

/* ---- 4. random retransmissions ---- */

/* New segments and retransmissions of earlier ones (whole or a sub-range),
   with acks now and then, several per NIC round. Every byte on the wire is
   checked; the counters must agree between host and NIC. */
START_TEST(random_retransmissions)
{
    int policy = _i;
    bool tc = policy == TLS_TX_RESYNC_TAGCACHE;
    struct tu_rng r = tu_rng_for("random_rexmit", policy);
    static size_t seg_a[MAX_SEGS], seg_b[MAX_SEGS];
    for (int iter = 0; iter < 40; iter++) {
        TU_CTX("%s iter %d seed %" PRIu64, policy_name(policy), iter, tu_seed);
        g_opt_len = iter % 3 == 2 ? TS_OPT_LEN : 0;
        uint32_t start = (uint32_t)tu_rng_next(&r);
        flow_start(policy, start);
        H.pcb->lastack = start;
        H.pcb->unacked = H.pcb->unsent = NULL;
        size_t nrec = tu_rng_range(&r, 30, 60);
        for (size_t i = 0; i < nrec; i++) {
            unsigned k = (unsigned)tu_rng_range(&r, 0, 9);
            size_t n = k < 3   ? SWEEP_SIZES[tu_rng_range(&r, 0, N_SWEEP_SIZES - 1)]
                       : k < 4 ? tu_rng_range(&r, 2000, 8000)
                               : tu_rng_range(&r, 0, 1500);
            stream_add(TYPES[tu_rng_range(&r, 0, 2)], n, &r);
        }
        size_t nseg = 0;
        for (size_t a = 0; a < H.len; nseg++) {
            TU_CHECK(nseg < MAX_SEGS);
            size_t len = tu_rng_range(&r, 1, 4) == 1 ? tu_rng_range(&r, 1, 100)
                                                     : tu_rng_range(&r, 1, MAX_PAYLOAD);
            seg_a[nseg] = a;
            seg_b[nseg] = a + len < H.len ? a + len : H.len;
            a = seg_b[nseg];
        }
        struct snap b = snap();
        size_t next = 0, acked = 0, bytes = 0, pkts = 0;
        while (next < nseg) {
            size_t batch = tu_rng_range(&r, 1, 3), qa[3], qb[3], k = 0;
            for (; k < batch && next < nseg; k++) {
                unsigned what = (unsigned)tu_rng_range(&r, 0, 99);
                if (what < 5 && next > acked) {
                    /* ack up to the start of a sent segment */
                    acked = tu_rng_range(&r, acked, next - 1);
                    H.pcb->lastack = start + (uint32_t)seg_a[acked];
                    tls_tx_offload_acked(H.t, H.pcb);
                }
                if (what < 35 && next > acked) {
                    size_t s = tu_rng_range(&r, acked, next - 1);
                    qa[k] = seg_a[s];
                    qb[k] = seg_b[s];
                    if (what < 15 && qb[k] - qa[k] > 1) { /* a sub-range */
                        qa[k] = tu_rng_range(&r, qa[k], qb[k] - 1);
                        qb[k] = tu_rng_range(&r, qa[k] + 1, qb[k]);
                    }
                } else {
                    qa[k] = seg_a[next];
                    qb[k] = seg_b[next];
                    next++;
                }
                send_range(qa[k], qb[k]);
                bytes += qb[k] - qa[k];
                pkts++;
            }
            pump();
            for (size_t j = 0; j < k; j++)
                expect_range(qa[j], qb[j]);
            expect_none();
        }
        struct snap a = snap();
        uint64_t ooo = a.h.tx_tls_ooo - b.h.tx_tls_ooo;
        TU_CHECK_EQ(a.h.tx_tls_drop_no_sync_data - b.h.tx_tls_drop_no_sync_data, 0);
        TU_CHECK_EQ(a.h.tx_tls_skip_no_sync_data - b.h.tx_tls_skip_no_sync_data, 0);
        TU_CHECK_EQ(a.n.tx_tls_ooo - b.n.tx_tls_ooo, ooo);
        TU_CHECK_EQ(a.h.tx_tls_resync_dump - b.h.tx_tls_resync_dump +
                        (a.h.tx_tls_resync_tagcache - b.h.tx_tls_resync_tagcache),
                    ooo);
        TU_CHECK_EQ(a.n.tx_tls_oneshot - b.n.tx_tls_oneshot,
                    a.h.tx_tls_resync_tagcache - b.h.tx_tls_resync_tagcache);
        TU_CHECK_EQ(a.n.tx_tls_dump_bytes - b.n.tx_tls_dump_bytes,
                    a.h.tx_tls_dump_bytes - b.h.tx_tls_dump_bytes);
        TU_CHECK_EQ(a.n.tx_tls_encrypted_packets - b.n.tx_tls_encrypted_packets, pkts);
        TU_CHECK_EQ(a.n.tx_tls_encrypted_bytes - b.n.tx_tls_encrypted_bytes, bytes);
        TU_CHECK_EQ(a.n.tx_tls_seq_mismatch - b.n.tx_tls_seq_mismatch, 0);
        TU_CHECK_EQ(a.n.tx_tls_bad_record - b.n.tx_tls_bad_record, 0);
        TU_CHECK_EQ(a.n.tx_cq_overflow - b.n.tx_cq_overflow, 0);
        TU_CHECK_EQ(a.h.tx_tls_nic_errors - b.h.tx_tls_nic_errors, 0);
        TU_CHECK_EQ(a.d.tx_err_status - b.d.tx_err_status, 0);
        if (!tc)
            TU_CHECK_EQ(a.h.tx_tls_resync_tagcache - b.h.tx_tls_resync_tagcache, 0);
        TU_CHECK(ooo > 0);
        flow_stop();
    }
}
END_TEST

/* ---- 5. regressions: bugs this suite found, now fixed ---- */

/* Control descriptors posted outside netif->output are never published:
   stack_driver_post_ctrl() advances the driver's tx_prod but does not store
   it to the ring's producer index nor ring the doorbell. */
START_TEST(regression_ctrl_desc_published)
{
    struct nic_counters b, a;
    nic_dev_get_counters(H.dev, &b);
    H.t = tls_tx_offload_start(H.o, TLS_TX_RESYNC_DUMP, H.pcb, KEY, sizeof(KEY), SALT, 1000, 1);
    ck_assert_ptr_nonnull(H.t);
    pump();
    nic_dev_get_counters(H.dev, &a);
    ck_assert_uint_eq(a.tx_tls_ctx - b.tx_tls_ctx, 1); /* fails: 0 */
    tls_tx_offload_release(H.t, NULL, false);
    H.t = NULL;
    pump();
    nic_dev_get_counters(H.dev, &a);
    ck_assert_uint_eq(a.tx_tls_del - b.tx_tls_del, 1);
}
END_TEST

/* Tag reports are completions the driver did not size the TX CQ for (it
   assumes at most one completion per descriptor): one NIC round over a few
   segments full of small records overflows the CQ and loses reports. */
START_TEST(regression_tag_reports_never_overflow_tx_cq)
{
    TU_CTX("tagcache");
    flow_start(TLS_TX_RESYNC_TAGCACHE, 5000);
    for (int i = 0; i < 400; i++)
        stream_add(TLS_CT_APPDATA, 0, NULL); /* 29-byte records, 50 per segment */
    struct snap b = snap();
    size_t n = 0;
    for (size_t a = 0; a < H.len; a += 1450, n++)
        send_range(a, a + 1450 < H.len ? a + 1450 : H.len); /* 8 segments, one NIC round */
    pump();
    for (size_t a = 0; a < H.len; a += 1450)
        expect_range(a, a + 1450 < H.len ? a + 1450 : H.len); /* the bytes are right */
    expect_none();
    struct snap a = snap();
    TU_CHECK_EQ(a.n.tx_tls_tag_reports - b.n.tx_tls_tag_reports, 400);
    TU_CHECK_EQ(a.n.tx_cq_overflow - b.n.tx_cq_overflow, 0);              /* fails: 144 */
    TU_CHECK_EQ(a.h.tx_tls_tags_cached - b.h.tx_tls_tags_cached, H.nrec); /* fails: 256 */
    TU_CHECK_EQ(n, 8);
}
END_TEST

/* A tag report of a deleted flow, still in the TX CQ, is taken for the new
   flow that reuses its flow id and caches a wrong tag for the new flow's
   record with the same number; a later one-shot writes it on the wire. */
START_TEST(regression_no_stale_tag_report_after_flow_id_reuse)
{
    TU_CTX("tagcache");
    flow_start(TLS_TX_RESYNC_TAGCACHE, 1000); /* flow A */
    stream_add(TLS_CT_APPDATA, 100, NULL);
    send_range(0, 129);                       /* A's record 1, whole; the NIC has not run yet */
    tls_tx_offload_release(H.t, NULL, false); /* DEL_CTX posted, flow id free again */

    struct tu_rng r = tu_rng_for("stale", 0);
    H.policy = TLS_TX_RESYNC_TAGCACHE;
    H.start_seq = 70000;
    H.t = tls_tx_offload_start(H.o, TLS_TX_RESYNC_TAGCACHE, H.pcb, KEY, sizeof(KEY), SALT,
                               H.start_seq, 1); /* flow B: same flow id */
    ck_assert_ptr_nonnull(H.t);
    stream_clear();
    stream_add(TLS_CT_APPDATA, 100, &r); /* B's record 1 */
    struct snap b = snap();
    send_range(0, 60); /* publishes: A's segment, DEL, STATIC(B), B's segment */
    pump();
    TU_CHECK_EQ(H.rx_n - H.rx_head, 2);
    TU_CHECK_EQ(H.rx[H.rx_head++].len, HDRS + 129); /* A's segment */
    expect_range(0, 60);
    expect_none();

    /* A gap, or any segment that reaches the driver out of sequence. */
    send_range(90, 129);
    pump();
    expect_range(90, 129); /* fails: the tag bytes are A's tag */
    expect_none();
    /* B's record 1 tag was never reported: a miss, dump fallback, and then
       the NIC reports it (the main walker passes its payload end). */
    struct snap a = snap();
    TU_CHECK_EQ(a.h.tx_tls_tagcache_miss - b.h.tx_tls_tagcache_miss, 1);
    TU_CHECK_EQ(a.h.tx_tls_tags_cached - b.h.tx_tls_tags_cached, 1);
}
END_TEST

/* ---- 6. key hygiene, refused installs, deferred deletes ---- */

static bool all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* A static context for the harness's 4-tuple in a pbuf the test owns. */
static struct pbuf *static_ctx_pbuf(uint8_t cipher, uint8_t dir, uint32_t start_seq)
{
    struct pbuf *p = pbuf_alloc(PBUF_RAW, sizeof(struct nic_tls_static_ctx), PBUF_RAM);
    TU_CHECK(p != NULL);
    struct nic_tls_static_ctx *st = p->payload;
    memset(st, 0, sizeof(*st));
    st->cipher = cipher;
    st->direction = dir;
    memcpy(st->salt, SALT, sizeof(SALT));
    memcpy(st->key, KEY, sizeof(KEY));
    st->saddr = lwip_htonl(dir == NIC_CTX_RX ? TU_PEER_IP : TU_HOST_IP);
    st->daddr = lwip_htonl(dir == NIC_CTX_RX ? TU_HOST_IP : TU_PEER_IP);
    st->sport = lwip_htons(dir == NIC_CTX_RX ? TU_PEER_PORT : TU_HOST_PORT);
    st->dport = lwip_htons(dir == NIC_CTX_RX ? TU_HOST_PORT : TU_PEER_PORT);
    st->start_tcp_sn = start_seq;
    st->record_sn = 1;
    return p;
}

/* Post a signalled control descriptor through the driver (hold: its buffer). */
static void post_ctrl(uint8_t kind, uint32_t flow_id, struct pbuf *hold)
{
    struct nic_tx_desc d = {.kind = kind,
                            .flags = NIC_TXF_SIGNAL,
                            .flow_id = flow_id,
                            .addr = hold ? (uint64_t)(uintptr_t)hold->payload : 0};
    TU_CHECK_EQ(stack_driver_post_ctrl(H.drv, &d, hold), 0);
}

/* The NIC's slot for flow_id: device memory that lives as long as the NIC. */
static const struct nic_flow *nic_slot(uint32_t flow_id)
{
    return &H.dev->flows->slots[flow_id - 1];
}

/* Run the NIC and the driver until both are idle, discarding the wire. */
static void drain_discard(void)
{
    uint8_t buf[WIRE_BUF_LEN];
    for (int i = 0;; i++) {
        TU_CHECK(i < 256);
        unsigned work = nic_dev_poll_once(H.dev);
        while (tu_wire_recv(H.wire, buf, sizeof(buf)) > 0)
            work++;
        work += stack_driver_poll(H.drv, 256);
        if (work == 0)
            break;
    }
    H.rx_head = H.rx_n = 0;
}

/* Pure ACKs through netif->output until the driver refuses one: the TX ring
   is full (the NIC does not run). Returns how many went in. */
static size_t fill_tx_ring(void)
{
    for (size_t n = 0; n <= 4096; n++) {
        err_t e = output_try(H.start_seq, NULL, 0, NULL);
        if (e == ERR_MEM)
            return n;
        TU_CHECK_EQ(e, ERR_OK);
    }
    ck_abort_msg("the TX ring never filled [%s]", tu_ctx);
    return 0;
}

/* Plaintext byte i of a record tls/ sealed itself (stream_add_sealed). */
static uint8_t sealed_pt(uint64_t sn, size_t i)
{
    return (uint8_t)(sn * 29u + i * 3u);
}

/* Append a record that tls/ sealed itself after a refused install: lwIP
   holds its ciphertext and the record store never sees it. */
static void stream_add_sealed(size_t n)
{
    static uint8_t pt[TLS_MAX_PLAINTEXT];
    TU_CHECK(n <= TLS_MAX_PLAINTEXT && H.nrec < MAX_RECS);
    size_t rlen = n + OVERHEAD;
    stream_reserve(H.len + rlen);
    struct rec *rec = &H.recs[H.nrec];
    rec->off = H.len;
    rec->len = rlen;
    rec->sn = 1 + H.nrec;
    rec->type = TLS_CT_APPDATA;
    for (size_t i = 0; i < n; i++)
        pt[i] = sealed_pt(rec->sn, i);
    TU_CHECK_EQ(tls_record_seal(H.aead, rec->sn, rec->type, pt, n, H.sealed + H.len), rlen);
    memcpy(H.plain + H.len, H.sealed + H.len, rlen);
    memset(H.seen + H.len, 0, rlen);
    H.len += rlen;
    H.nrec++;
}

/* Every record as the peer received it (first transmissions) opens with the
   test's own copy of the key, to the plaintext tls/ wrote. first_sealed:
   index of the first record written by stream_add_sealed. */
static void check_peer_opens(size_t first_sealed)
{
    struct tls_aead *peer = tls_aead_new(KEY, sizeof(KEY), SALT);
    uint8_t *buf = malloc(TLS_MAX_RECORD_LEN);
    TU_CHECK(peer && buf);
    for (size_t i = 0; i < H.nrec; i++) {
        const struct rec *r = &H.recs[i];
        TU_CTX("record %zu", i);
        for (size_t k = 0; k < r->len; k++)
            TU_CHECK(H.seen[r->off + k]);
        memcpy(buf, H.first + r->off, r->len);
        uint8_t *pt;
        TU_CHECK_EQ(tls_record_open(peer, r->sn, buf, r->len, &pt), r->len - OVERHEAD);
        for (size_t k = 0; k < r->len - OVERHEAD; k++)
            TU_CHECK_EQ(pt[k], i < first_sealed ? H.plain[r->off + TLS_PAYLOAD_OFFSET + k]
                                                : sealed_pt(r->sn, k));
    }
    free(buf);
    tls_aead_free(peer);
}

/* The static context a driver posted holds a key: once the NIC read it the
   driver wipes it, and the NIC keeps only its cipher contexts (no raw key
   in the flow slot) yet encrypts with them; a delete wipes the slot. */
START_TEST(hygiene_static_ctx_wiped_once_read)
{
    H.start_seq = 3000;
    struct pbuf *ctx = static_ctx_pbuf(NIC_CIPHER_AES_128_GCM, NIC_CTX_TX, H.start_seq);
    post_ctrl(NIC_TX_STATIC_CTX, 5, ctx);
    TU_CHECK_EQ(ctx->ref, 2); /* ours and the ring's */
    TU_CHECK(memcmp(((struct nic_tls_static_ctx *)ctx->payload)->key, KEY, sizeof(KEY)) == 0);
    struct snap b = snap();
    pump();
    struct snap a = snap();
    TU_CHECK_EQ(a.n.tx_tls_ctx - b.n.tx_tls_ctx, 1);
    TU_CHECK_EQ(ctx->ref, 1);                   /* the driver let go of it ... */
    TU_CHECK(all_zero(ctx->payload, ctx->len)); /* ... and wiped it first */
    TU_CHECK(nic_slot(5)->used);
    TU_CHECK(all_zero(nic_slot(5)->st.key, sizeof(nic_slot(5)->st.key)));
    TU_CHECK(memcmp(nic_slot(5)->st.salt, SALT, sizeof(SALT)) == 0);

    /* The NIC still encrypts with the key it was given. */
    stream_add(TLS_CT_APPDATA, 700, NULL);
    struct pbuf *pkt = pbuf_alloc(PBUF_RAW, (u16_t)(HDRS + H.len), PBUF_RAM);
    TU_CHECK(pkt != NULL);
    build_pkt(pkt->payload, H.start_seq, H.plain, H.len);
    struct nic_tx_desc d = {.kind = NIC_TX_DATA,
                            .flags = NIC_TXF_OFFLOAD,
                            .len = pkt->len,
                            .flow_id = 5,
                            .addr = (uint64_t)(uintptr_t)pkt->payload};
    TU_CHECK_EQ(stack_driver_post_ctrl(H.drv, &d, pkt), 0);
    pbuf_free(pkt);
    pump();
    expect_range(0, H.len);
    expect_none();

    post_ctrl(NIC_TX_DEL_CTX, 5, NULL);
    pump();
    TU_CHECK_EQ(snap().n.tx_tls_del - b.n.tx_tls_del, 1);
    TU_CHECK(all_zero(nic_slot(5), sizeof(struct nic_flow)));
    pbuf_free(ctx);
}
END_TEST

/* A static context still on the ring when the driver goes away is wiped. */
START_TEST(hygiene_static_ctx_wiped_at_driver_teardown)
{
    struct pbuf *ctx = static_ctx_pbuf(NIC_CIPHER_AES_256_GCM, NIC_CTX_RX, 1);
    post_ctrl(NIC_TX_STATIC_CTX, 2, ctx);
    TU_CHECK_EQ(ctx->ref, 2);
    /* Teardown order of the runtime: the engine never runs again. */
    tls_offload_free(H.o);
    H.o = NULL;
    stack_tls_offload_free(H.dev_ofl);
    H.dev_ofl = NULL;
    stack_driver_destroy(H.drv);
    H.drv = NULL;
    TU_CHECK_EQ(ctx->ref, 1);
    TU_CHECK(all_zero(ctx->payload, ctx->len));
    nic_dev_destroy(H.dev); /* the ring still points at ctx */
    H.dev = NULL;
    pbuf_free(ctx);
}
END_TEST

/* The NIC copies the static context into a slot before validating it: a
   refused install leaves nothing of the key there; an RX context keeps no
   raw key either, and its delete wipes the slot. */
START_TEST(hygiene_nic_refused_install_leaves_no_key)
{
    static const struct {
        uint8_t cipher, dir;
    } bad[] = {{0x7f, NIC_CTX_TX}, {NIC_CIPHER_AES_128_GCM, 9}, {0, NIC_CTX_RX}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        TU_CTX("cipher %u direction %u", bad[i].cipher, bad[i].dir);
        struct pbuf *ctx = static_ctx_pbuf(bad[i].cipher, bad[i].dir, 1);
        struct snap b = snap();
        post_ctrl(NIC_TX_STATIC_CTX, 3, ctx);
        pbuf_free(ctx); /* the driver holds its own reference */
        pump();
        struct snap a = snap();
        TU_CHECK_EQ(a.n.tx_bad_desc - b.n.tx_bad_desc, 1);
        TU_CHECK_EQ(a.n.tx_tls_ctx + a.n.rx_tls_ctx - b.n.tx_tls_ctx - b.n.rx_tls_ctx, 0);
        TU_CHECK_EQ(a.d.tx_err_status - b.d.tx_err_status, 1);
        TU_CHECK(all_zero(nic_slot(3), sizeof(struct nic_flow)));
    }
    TU_CTX("rx install");
    struct pbuf *ctx = static_ctx_pbuf(NIC_CIPHER_AES_128_GCM, NIC_CTX_RX, 1);
    post_ctrl(NIC_TX_STATIC_CTX, 3, ctx);
    pbuf_free(ctx);
    pump();
    TU_CHECK(nic_slot(3)->used && nic_slot(3)->rx);
    TU_CHECK(all_zero(nic_slot(3)->st.key, sizeof(nic_slot(3)->st.key)));
    post_ctrl(NIC_TX_DEL_CTX, 3, NULL);
    pump();
    TU_CHECK_EQ(snap().n.rx_tls_del, 1);
    TU_CHECK(all_zero(nic_slot(3), sizeof(struct nic_flow)));
}
END_TEST

/* The NIC has one flow context, taken by the RX side: it refuses the TX
   context. Segments lwIP sent before the answer are dropped by the NIC
   (nothing leaves as plaintext); their retransmissions, and all later
   frames, leave sealed by the host from the record store; records tls/
   seals itself afterwards pass untouched, also inside a segment that
   starts with frame bytes. The peer opens everything with the key. */
START_TEST(install_refused_tx_sealed_in_software)
{
    int policy = _i;
    TU_CTX("%s", policy_name(policy));
    H.policy = policy;
    struct snap b = snap();
    struct tls_rx_offload *rx =
        tls_rx_offload_start(H.o, H.pcb, KEY, sizeof(KEY), SALT, 777, 1); /* flow id 1 */
    ck_assert_ptr_nonnull(rx);
    H.start_seq = 0xfffffa00u; /* the stream wraps the sequence space */
    H.t = tls_tx_offload_start(H.o, (enum tls_tx_resync)policy, H.pcb, KEY, sizeof(KEY), SALT,
                               H.start_seq, 1); /* flow id 2: refused */
    ck_assert_ptr_nonnull(H.t);
    stream_clear();
    stream_add_sizes(LAYOUT5, 5); /* frames [0, 2745) */
    send_range(0, 1400);          /* before the NIC answered */
    send_range(1400, 2745);
    pump();
    expect_none();
    struct snap a = snap();
    TU_CHECK(tls_tx_offload_failed(H.t));
    TU_CHECK_EQ(a.h.tx_tls_ctx_install_failed - b.h.tx_tls_ctx_install_failed, 1);
    TU_CHECK_EQ(a.n.flow_table_full - b.n.flow_table_full, 1);
    TU_CHECK_EQ(a.n.rx_tls_ctx - b.n.rx_tls_ctx, 1);
    TU_CHECK_EQ(a.n.tx_tls_ctx - b.n.tx_tls_ctx, 0);
    TU_CHECK_EQ(a.n.tx_tls_no_ctx - b.n.tx_tls_no_ctx, 2); /* both segments dropped */
    TU_CHECK_EQ(a.n.tx_packets - b.n.tx_packets, 0);
    TU_CHECK_EQ(a.h.tx_tls_nic_errors - b.h.tx_tls_nic_errors, 0); /* no resync for a dead ctx */

    /* TCP resends (cut differently), and a retransmission of those. */
    xmit(0, 700);
    xmit(700, 2000);
    xmit(2000, 2745);
    xmit(100, 1200);
    size_t first_sealed = H.nrec;
    stream_add_sealed(300);  /* [2745, 3074) */
    stream_add_sealed(5000); /* [3074, 8103) */
    xmit(2500, 3000);        /* last frame bytes + a sealed record's */
    xmit(3000, 4400);
    for (size_t o = 4400; o < H.len; o += 1400)
        xmit(o, o + 1400 < H.len ? o + 1400 : H.len);
    xmit(2600, 2745); /* a late retransmission of frame bytes only */
    a = snap();
    TU_CHECK_EQ(a.h.tx_tls_sw_fallback_packets - b.h.tx_tls_sw_fallback_packets, 6);
    TU_CHECK_EQ(a.h.tx_tls_sw_fallback_bytes - b.h.tx_tls_sw_fallback_bytes,
                700 + 1300 + 745 + 1100 + 245 + 145);
    TU_CHECK_EQ(a.h.tx_tls_drop_no_sync_data - b.h.tx_tls_drop_no_sync_data, 0);
    TU_CHECK_EQ(a.n.tx_tls_encrypted_packets - b.n.tx_tls_encrypted_packets, 0);
    TU_CHECK_EQ(a.n.tx_tls_no_ctx - b.n.tx_tls_no_ctx, 2); /* nothing offloaded since */
    check_peer_opens(first_sealed);

    /* Release: the NIC holds nothing to delete; the id is free at once. */
    tls_tx_offload_release(H.t, NULL, false);
    H.t = NULL;
    tls_rx_offload_stop(rx);
    drain_discard();
    a = snap();
    TU_CHECK_EQ(a.h.tx_tls_ctx_installed, 1);
    TU_CHECK_EQ(a.h.tx_tls_ctx_install_failed, 1);
    TU_CHECK_EQ(a.h.tx_tls_ctx_deleted, 0);
    TU_CHECK_EQ(a.n.tx_tls_del, 0);
    TU_CHECK_EQ(a.n.tx_tls_no_ctx - b.n.tx_tls_no_ctx, 2); /* no delete for a refused install */
    TU_CHECK_EQ(rxc().rx_tls_ctx_installed, 1);
    TU_CHECK_EQ(rxc().rx_tls_ctx_deleted, 1);
    TU_CHECK_EQ(a.n.rx_tls_del, 1);

    /* Both ids are free again, the NIC slot too: the next flow offloads. */
    flow_start(policy, 123456);
    stream_add(TLS_CT_APPDATA, 1000, NULL);
    struct snap c = snap();
    xmit(0, H.len);
    TU_CHECK_EQ(snap().n.tx_tls_encrypted_packets - c.n.tx_tls_encrypted_packets, 1);
    flow_stop();
}
END_TEST

/* A refused RX context: the host never posts a resync answer or a hint for
   it (the NIC would only count descriptors naming an unknown flow). The same
   sequence on an installed context does post hints. */
START_TEST(install_refused_rx_no_resync_traffic)
{
    tls_offload_set_rx_hint(H.o, true);
    flow_start(TLS_TX_RESYNC_DUMP, 1000); /* takes the NIC's only context */
    for (int installed = 0; installed < 2; installed++) {
        TU_CTX("rx context %s", installed ? "installed" : "refused");
        uint64_t failed0 = rxc().rx_tls_ctx_install_failed, hints0 = rxc().rx_hints_sent;
        struct tls_rx_offload *rx =
            tls_rx_offload_start(H.o, H.pcb, KEY, sizeof(KEY), SALT, 9000, 1);
        ck_assert_ptr_nonnull(rx);
        drain_discard();
        TU_CHECK_EQ(rxc().rx_tls_ctx_install_failed - failed0, installed ? 0 : 1);
        struct snap b = snap();
        /* Software-decrypted records: in hint mode the host tells the NIC
           where a later record starts after 2, 4, ... of them. */
        for (uint32_t i = 0; i < 8; i++) {
            tls_rx_offload_record_done(rx, 9000 + 100 * (i + 1), i + 2, false);
            tls_rx_offload_future_record(rx, 9000 + 100 * (i + 2), i + 3);
        }
        drain_discard();
        struct snap a = snap();
        if (installed) {
            TU_CHECK(rxc().rx_hints_sent - hints0 > 0);
            TU_CHECK_EQ(a.n.tx_desc - b.n.tx_desc, rxc().rx_hints_sent - hints0);
        } else {
            TU_CHECK_EQ(rxc().rx_hints_sent - hints0, 0);
            TU_CHECK_EQ(a.n.tx_desc - b.n.tx_desc, 0);
            TU_CHECK_EQ(a.n.tx_tls_no_ctx - b.n.tx_tls_no_ctx, 0);
        }
        tls_rx_offload_stop(rx);
        if (!installed) {
            flow_stop(); /* frees the NIC's context for the second round */
            H.t = NULL;
        }
        drain_discard();
    }
    TU_CHECK_EQ(rxc().rx_tls_ctx_installed, 2);
    TU_CHECK_EQ(rxc().rx_tls_ctx_install_failed + rxc().rx_tls_ctx_deleted, 2);
    TU_CHECK_EQ(snap().n.rx_tls_del, 1);
}
END_TEST

/* Releasing flows while the TX ring is full: the deletes wait in a queue
   and go out when the driver reclaims ring slots. In the end the NIC
   deleted every context it installed, the host counted the same, and every
   flow id can be used again. */
START_TEST(delete_deferred_while_tx_ring_full)
{
    int policy = _i;
    TU_CTX("%s", policy_name(policy));
    flow_start(policy, 4000);
    struct tls_rx_offload *rx = tls_rx_offload_start(H.o, H.pcb, KEY, sizeof(KEY), SALT, 777, 1);
    ck_assert_ptr_nonnull(rx);
    stream_add(TLS_CT_APPDATA, 200, NULL);
    xmit(0, H.len);
    struct snap b = snap();
    TU_CHECK(fill_tx_ring() > 0);
    tls_tx_offload_release(H.t, NULL, false);
    H.t = NULL;
    tls_rx_offload_stop(rx);
    struct snap a = snap();
    TU_CHECK_EQ(a.h.tx_tls_ctx_del_deferred - b.h.tx_tls_ctx_del_deferred, 1);
    TU_CHECK_EQ(a.h.tx_tls_ctx_del_pending, 1);
    TU_CHECK_EQ(rxc().rx_tls_ctx_del_deferred, 1);
    TU_CHECK_EQ(rxc().rx_tls_ctx_del_pending, 1);
    TU_CHECK_EQ(a.d.tx_ring_full - b.d.tx_ring_full, 1); /* the ACK that did not fit */

    drain_discard(); /* the NIC sends the ACKs; reclaiming posts the deletes */
    a = snap();
    TU_CHECK_EQ(a.h.tx_tls_ctx_del_pending, 0);
    TU_CHECK_EQ(rxc().rx_tls_ctx_del_pending, 0);
    TU_CHECK_EQ(a.n.tx_tls_del, a.n.tx_tls_ctx);
    TU_CHECK_EQ(a.n.rx_tls_del, a.n.rx_tls_ctx);
    TU_CHECK_EQ(a.h.tx_tls_ctx_deleted, a.h.tx_tls_ctx_installed);
    TU_CHECK_EQ(rxc().rx_tls_ctx_deleted, rxc().rx_tls_ctx_installed);
    TU_CHECK_EQ(a.n.tx_tls_ctx, 1);
    TU_CHECK_EQ(a.n.rx_tls_ctx, 1);

    /* No flow id leaked: all 8 are usable, each installed by the NIC. */
    struct tls_tx_offload *t[8];
    for (int i = 0; i < 8; i++) {
        t[i] = tls_tx_offload_start(H.o, (enum tls_tx_resync)policy, H.pcb, KEY, sizeof(KEY), SALT,
                                    1000, 1);
        ck_assert_ptr_nonnull(t[i]);
    }
    drain_discard();
    TU_CHECK_EQ(snap().n.tx_tls_ctx, 9);
    for (int i = 0; i < 8; i++)
        tls_tx_offload_release(t[i], NULL, false);
    drain_discard();
    a = snap();
    TU_CHECK_EQ(a.n.tx_tls_del, 9);
    TU_CHECK_EQ(a.h.tx_tls_ctx_deleted, 9);
    TU_CHECK_EQ(a.h.tx_tls_ctx_fail, 0);
}
END_TEST

/* ---- a stream longer than half the sequence space ---- */

#define LONG_REC_PT  16384u
#define LONG_REC_LEN (LONG_REC_PT + OVERHEAD)

/* Record i of the long stream, framed in plaintext and sealed: the two
   records a segment can touch are kept. */
struct long_rec {
    uint64_t i;
    uint8_t plain[LONG_REC_LEN], sealed[LONG_REC_LEN];
};

static const struct long_rec *long_rec(struct long_rec cache[2], uint64_t i)
{
    struct long_rec *c = &cache[i & 1];
    if (c->i != i + 1) { /* 0: empty */
        static uint8_t pt[LONG_REC_PT];
        for (size_t k = 0; k < LONG_REC_PT; k += 8) {
            uint64_t v = (i + 1) * 0x9e3779b97f4a7c15ull ^ k;
            memcpy(pt + k, &v, 8);
        }
        TU_CHECK_EQ(tls_record_frame_plain(i + 1, TLS_CT_APPDATA, pt, LONG_REC_PT, c->plain),
                    LONG_REC_LEN);
        TU_CHECK_EQ(tls_record_seal(H.aead, i + 1, TLS_CT_APPDATA, pt, LONG_REC_PT, c->sealed),
                    LONG_REC_LEN);
        c->i = i + 1;
    }
    return c;
}

/* Stream bytes [off, off + n), plaintext frames or as sealed. */
static void long_bytes(struct long_rec cache[2], uint64_t off, uint8_t *out, size_t n, bool sealed)
{
    while (n) {
        const struct long_rec *r = long_rec(cache, off / LONG_REC_LEN);
        size_t at = (size_t)(off % LONG_REC_LEN), k = LONG_REC_LEN - at;
        if (k > n)
            k = n;
        memcpy(out, (sealed ? r->sealed : r->plain) + at, k);
        out += k;
        off += k;
        n -= k;
    }
}

/* 2^31 bytes after the offload's start, serial arithmetic places the next
   segment *before* it: the driver once took such segments for handshake
   bytes and sent them unencrypted (a 2 GiB download failed its MAC check
   at the client with the plaintext on the wire). The stream here starts
   near the top of the sequence space, so it also wraps 2^32. Every
   segment on the wire must be the software's ciphertext. */
/* Offloaded TSO segments of a flow that follow each other on the ring leave
   as one GSO super-packet per run, and the NIC encrypts each where the
   write takes it from: no byte of payload is copied after encryption, only
   headers (each descriptor's, each run's first). Runs of three 16 KB
   segments, two runs per engine round, over more bytes than the NIC's TX
   slots hold: runs span a wrap of the slots and stay whole. */
START_TEST(gso_offloaded_segments_merge_without_copy)
{
    const uint32_t start = 0xfffe0000u; /* the sequence space wraps on the way */
    const size_t mss = TEST_MTU - HDRS, seg = 11 * mss, chunk = 40000, rounds = 12;
    flow_start(TLS_TX_RESYNC_DUMP, start);
    while (H.len < rounds * chunk)
        stream_add(TLS_CT_APPDATA, TLS_MAX_PLAINTEXT, NULL);
    struct snap b = snap();
    static uint8_t got[VNET_HLEN + 65536];
    size_t sent = 0, checked = 0, segs = 0, writes = 0;
    for (size_t r = 0; r < rounds; r += 2) {
        for (size_t k = 0; k < 2; k++) { /* [seg][seg][short]: a run the short one closes */
            size_t end = sent + chunk;
            while (sent < end) {
                size_t n = end - sent < seg ? end - sent : seg;
                output_segment(start + (uint32_t)sent, H.plain + sent, n);
                sent += n;
                segs++;
            }
        }
        run_tx_ring();
        size_t len;
        while ((len = tu_wire_recv(H.wire, got, sizeof(got))) != 0) {
            struct virtio_net_hdr vh;
            memcpy(&vh, got, sizeof(vh));
            const uint8_t *ip = got + VNET_HLEN;
            TU_CHECK(len > VNET_HLEN + HDRS);
            size_t n = len - VNET_HLEN - HDRS;
            TU_CHECK_EQ(vh.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
            TU_CHECK_EQ(vh.gso_size, mss);
            TU_CHECK_EQ(tu_get16(ip + 2), HDRS + n);
            TU_CHECK_EQ(tu_ip_csum(ip), 0);
            TU_CHECK_EQ(tu_get32(ip + TU_IP_HLEN + 4), start + (uint32_t)checked);
            if (memcmp(ip + HDRS, H.sealed + checked, n) != 0)
                ck_abort_msg("write %zu (%zu bytes at %zu): not the sealed bytes", writes, n,
                             checked);
            checked += n;
            writes++;
        }
        reap_completions();
    }
    struct snap a = snap();
    TU_CHECK_EQ(checked, sent);
    TU_CHECK_EQ(a.n.tun_gso_writes - b.n.tun_gso_writes, writes);
    TU_CHECK_EQ(a.n.tx_tso_direct - b.n.tx_tso_direct, segs);
    TU_CHECK_EQ(a.n.tun_tso_merged - b.n.tun_tso_merged, segs - writes);
    TU_CHECK_EQ(writes, rounds); /* one per run */
    TU_CHECK_EQ(a.n.tx_bytes_copied - b.n.tx_bytes_copied, (segs + writes) * HDRS);
    TU_CHECK_EQ(a.n.tx_tls_encrypted_bytes - b.n.tx_tls_encrypted_bytes, sent);
}
END_TEST

START_TEST(offload_continues_past_2gib)
{
    static struct long_rec cache[2];
    memset(cache, 0, sizeof(cache));
    const uint32_t start = 0x90000000u;
    const uint64_t total = (1ull << 31) + (4u << 20);
    const size_t seg = JUMBO_MTU - TU_IP_HLEN - TU_TCP_HLEN;
    flow_start(TLS_TX_RESYNC_DUMP, start);
    struct snap b = snap();
    static uint8_t payload[JUMBO_MTU], want[JUMBO_MTU], got[JUMBO_MTU + 64];
    uint64_t sent = 0, checked = 0, packets = 0;
    while (checked < total) {
        /* a batch of segments, well within the TX ring and the wire socket's buffer */
        for (int k = 0; k < 4 && sent < total; k++) {
            size_t n = total - sent < seg ? (size_t)(total - sent) : seg;
            long_bytes(cache, sent, payload, n, false);
            output_segment(start + (uint32_t)sent, payload, n);
            sent += n;
        }
        run_tx_ring();
        size_t len;
        while ((len = tu_wire_recv(H.wire, got, sizeof(got))) != 0) {
            TU_CHECK(len > HDRS);
            size_t n = len - HDRS;
            TU_CHECK_EQ(tu_get32(got + TU_IP_HLEN + 4), start + (uint32_t)checked);
            long_bytes(cache, checked, want, n, true);
            if (memcmp(got + HDRS, want, n) != 0)
                ck_abort_msg("%" PRIu64 " bytes past the start: not the sealed bytes", checked);
            checked += n;
            packets++;
        }
        reap_completions();
    }
    struct snap a = snap();
    TU_CHECK_EQ(checked, total);
    TU_CHECK_EQ(a.h.tx_tls_skip_no_sync_data - b.h.tx_tls_skip_no_sync_data, 0);
    TU_CHECK_EQ(a.h.tx_tls_ooo - b.h.tx_tls_ooo, 0);
    TU_CHECK_EQ(a.n.tx_tls_encrypted_packets - b.n.tx_tls_encrypted_packets, packets);
}
END_TEST

static Suite *tx_offload_suite(void)
{
    Suite *s = suite_create("tx_offload");
    TCase *sweep = tcase_create("sweep");
    tcase_add_checked_fixture(sweep, setup, teardown);
    tcase_set_timeout(sweep, 60);
    tcase_add_loop_test(sweep, sweep_split_points_in_sequence, 0, TLS_TX_RESYNC_COUNT);
    tcase_add_loop_test(sweep, sweep_random_segmentation_in_sequence, 0, TLS_TX_RESYNC_COUNT);
    suite_add_tcase(s, sweep);

    TCase *rx = tcase_create("retransmit");
    tcase_add_checked_fixture(rx, setup, teardown);
    tcase_set_timeout(rx, 60);
    tcase_add_loop_test(rx, rexmit_mid_record, 0, TLS_TX_RESYNC_COUNT);
    tcase_add_loop_test(rx, rexmit_refused_while_ring_lacks_room, 0, TLS_TX_RESYNC_COUNT);
    tcase_add_loop_test(rx, rexmit_at_record_boundary, 0, TLS_TX_RESYNC_COUNT);
    tcase_add_loop_test(rx, rexmit_record_spanning_segments, 0, TLS_TX_RESYNC_COUNT);
    tcase_add_loop_test(rx, rexmit_before_offload_start, 0, TLS_TX_RESYNC_COUNT);
    tcase_add_loop_test(rx, rexmit_after_record_acked, 0, TLS_TX_RESYNC_COUNT);
    tcase_add_loop_test(rx, rexmit_then_new_data, 0, TLS_TX_RESYNC_COUNT);
    tcase_add_loop_test(rx, rexmit_tag_not_cached, 0, TLS_TX_RESYNC_COUNT);
    tcase_add_loop_test(rx, rexmit_sweep_start_offsets, 0, TLS_TX_RESYNC_COUNT);
    tcase_add_loop_test(rx, random_retransmissions, 0, TLS_TX_RESYNC_COUNT);
    suite_add_tcase(s, rx);

    TCase *tag = tcase_create("tagcache");
    tcase_add_checked_fixture(tag, setup, teardown);
    tcase_set_timeout(tag, 60);
    tcase_add_loop_test(tag, tagcache_counts_tags_and_resends_without_dump, 0, TLS_TX_RESYNC_COUNT);
    suite_add_tcase(s, tag);

    TCase *bugs = tcase_create("regressions");
    tcase_add_checked_fixture(bugs, setup, teardown);
    tcase_add_test(bugs, regression_ctrl_desc_published);
    tcase_add_test(bugs, regression_tag_reports_never_overflow_tx_cq);
    tcase_add_test(bugs, regression_no_stale_tag_report_after_flow_id_reuse);
    suite_add_tcase(s, bugs);

    TCase *hyg = tcase_create("hygiene");
    tcase_add_checked_fixture(hyg, setup, teardown);
    tcase_add_test(hyg, hygiene_static_ctx_wiped_once_read);
    tcase_add_test(hyg, hygiene_static_ctx_wiped_at_driver_teardown);
    tcase_add_test(hyg, hygiene_nic_refused_install_leaves_no_key);
    tcase_add_loop_test(hyg, delete_deferred_while_tx_ring_full, 0, TLS_TX_RESYNC_COUNT);
    suite_add_tcase(s, hyg);

    TCase *longs = tcase_create("long_stream");
    tcase_add_checked_fixture(longs, setup_jumbo, teardown);
    tcase_set_timeout(longs, 300);
    tcase_add_test(longs, offload_continues_past_2gib);
    suite_add_tcase(s, longs);

    TCase *gso = tcase_create("gso");
    tcase_add_checked_fixture(gso, setup_gso, teardown);
    tcase_add_test(gso, gso_offloaded_segments_merge_without_copy);
    suite_add_tcase(s, gso);

    TCase *refused = tcase_create("install_refused");
    tcase_add_checked_fixture(refused, setup_one_nic_flow, teardown);
    tcase_add_loop_test(refused, install_refused_tx_sealed_in_software, 0, TLS_TX_RESYNC_COUNT);
    tcase_add_test(refused, install_refused_rx_no_resync_traffic);
    suite_add_tcase(s, refused);
    return s;
}

int main(void)
{
    tu_seed_init("test_tx_offload");
    SRunner *sr = srunner_create(tx_offload_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
