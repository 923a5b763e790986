/* Check suite for the descriptor rings of nic/nic_abi.h, exercised through the
 * device. The test thread is the host driver: it fills rings, rings doorbells
 * and reads completions through nic_dev_queues(), and runs one engine round at
 * a time with nic_dev_poll_once(). One end of a SOCK_SEQPACKET socketpair
 * stands in for the TUN device (message boundaries like TUN), the other end is
 * the wire peer. Nothing sleeps and nothing is random: every packet is a real
 * IPv4/TCP segment derived from its sequence number. */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_net.h>

#include "nic_abi.h"
#include "nic_dev.h"
#include "test_util.h"

#define TEST_MTU     1500u
#define RX_BUF_LEN   2048u /* >= TEST_MTU: the NIC writes straight into it */
#define WIRE_BUF_LEN 65536u
#define RING_MAX     8u   /* largest ring the tests create, */
#define TX_RING_MAX  128u /* but for TX rings (tx_round) */
#define COOKIE_TAG   UINT64_C(0xc0de000000000000)
#define BAD_KIND     0xee /* no enum nic_tx_kind has this value */

/* ---- The host side: a minimal driver over the queues ---- */

static struct tu_drv h;
static bool g_gso;      /* the next host_open gives the NIC a GSO "TUN" (virtio_net_hdr framing) */
static bool g_lro;      /* the next host_open turns LRO on */
static bool g_rx_pause; /* the device waits instead of dropping without a buffer */
static bool g_csum_trusted;          /* nic_dev_cfg.rx_csum_trusted */
static const char *g_pcap;           /* the next host_open's pcap_path */
static uint32_t g_coalesce_ns;       /* the next host_open's irq_coalesce_ns */
static uint64_t rx_cookie[RING_MAX]; /* driver shadow: cookie posted in each RX slot */

static void host_open(uint32_t tx_size, uint32_t rx_size)
{
    ck_assert_uint_le(tx_size, TX_RING_MAX);
    ck_assert_uint_le(rx_size, RING_MAX);
    struct nic_dev_cfg cfg = {
        .tx_ring_size = tx_size,
        .rx_ring_size = rx_size,
        .mtu = TEST_MTU,
        .max_flows = 4,
        .pcap_path = g_pcap,
        .tun_gso = g_gso,
        .lro = g_lro,
        .rx_pause = g_rx_pause,
        .rx_csum_trusted = g_csum_trusted,
        .irq_coalesce_ns = g_coalesce_ns,
    };
    memset(rx_cookie, 0, sizeof(rx_cookie));
    tu_drv_open(&h, &cfg);
    ck_assert_uint_eq(h.q->tx_size, tx_size);
    ck_assert_uint_eq(h.q->rx_size, rx_size);
}

static void setup(void)
{
    g_gso = false;
    g_lro = false;
    g_rx_pause = false;
    g_csum_trusted = false;
    g_pcap = NULL;
    g_coalesce_ns = 0;
    memset(&h, 0, sizeof(h));
    h.wire = -1;
}

static void teardown(void)
{
    tu_drv_close(&h);
}

static struct nic_tx_desc data_desc(const uint8_t *pkt, size_t len, uint8_t flags, uint64_t cookie)
{
    struct nic_tx_desc d;
    memset(&d, 0, sizeof(d));
    d.kind = NIC_TX_DATA;
    d.flags = flags;
    d.len = (uint16_t)len;
    d.addr = (uint64_t)(uintptr_t)pkt;
    d.cookie = cookie;
    return d;
}

/* tu_rx_post, and remember the cookie of the slot. */
static void rx_post(uint8_t *buf, uint32_t len, uint64_t cookie)
{
    rx_cookie[nic_ring_slot(h.rx_prod, h.q->rx_size)] = cookie;
    tu_rx_post(&h, buf, len, cookie);
}

/* Phase the k-th entry ever written to a CQ of this size must carry:
   1 on the first lap, 0 on the second, ... (written out, not nic_cq_phase). */
static uint8_t lap_phase(uint32_t k, uint32_t size)
{
    return (k / size) % 2 == 0 ? 1 : 0;
}

/* ---- The wire peer ---- */

static void assert_wire_empty(void)
{
    static uint8_t buf[WIRE_BUF_LEN];
    ck_assert_uint_eq(tu_wire_recv(h.wire, buf, WIRE_BUF_LEN), 0);
}

/* ---- Packets: real IPv4/TCP segments with checksums (RFC 791, RFC 793) ---- */

/* Packet number id: 40..TEST_MTU bytes (odd and even), payload from id. */
static size_t build_tcp(uint8_t *p, uint32_t id)
{
    uint8_t payload[TEST_MTU];
    size_t len = (id * 97u + 13u) % (TEST_MTU - TU_IP_HLEN - TU_TCP_HLEN + 1);
    for (size_t i = 0; i < len; i++)
        payload[i] = (uint8_t)((id * 31u + i * 7u) ^ (i >> 8));
    struct tu_tcp seg = {.saddr = TU_PEER_IP,
                         .daddr = TU_HOST_IP,
                         .sport = (uint16_t)(TU_PEER_PORT + id % 1000),
                         .dport = TU_HOST_PORT,
                         .ip_id = (uint16_t)id,
                         .seq = id * 1461u + 7u,
                         .ack = 1,
                         .flags = TU_TCP_PSH | TU_TCP_ACK,
                         .payload = payload,
                         .len = len};
    return tu_build_tcp(p, &seg);
}

/* ---- Index math (nic_abi.h helpers) ---- */

START_TEST(ring_slot_wraps_at_power_of_two)
{
    static const uint32_t sizes[] = {1, 2, 8, 64, 1024, UINT32_C(1) << 31};
    static const uint32_t idxs[] = {0, 1, 7, 8, 9, 1023, 1024, 1025, UINT32_MAX - 8, UINT32_MAX};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint32_t size = sizes[s];
        for (size_t i = 0; i < sizeof(idxs) / sizeof(idxs[0]); i++)
            ck_assert_uint_eq(nic_ring_slot(idxs[i], size), idxs[i] % size);
        ck_assert_uint_eq(nic_ring_slot(size, size), 0);
        ck_assert_uint_eq(nic_ring_slot(size - 1, size), size - 1);
        /* The 32-bit counter wrapping is just the next slot. */
        ck_assert_uint_eq(nic_ring_slot(UINT32_MAX, size), size - 1);
        uint32_t next = UINT32_MAX;
        next++;
        ck_assert_uint_eq(nic_ring_slot(next, size), 0);
    }
}
END_TEST

START_TEST(free_running_indices_near_uint32_max)
{
    const uint32_t size = 8;
    uint32_t prod = UINT32_MAX - 2, cons = UINT32_MAX - 5;
    ck_assert_uint_eq(prod - cons, 3); /* in use */
    ck_assert(prod != cons);           /* not empty */
    ck_assert_uint_lt(prod - cons, size);
    ck_assert_uint_eq(size - (prod - cons), 5); /* free */
    /* The producer crosses zero: counts stay exact with unsigned subtraction. */
    for (uint32_t i = 0; i < 5; i++) {
        ck_assert_uint_eq(nic_ring_slot(prod + 1, size), (nic_ring_slot(prod, size) + 1) % size);
        prod++;
    }
    ck_assert_uint_eq(prod, 2);
    ck_assert_uint_eq(prod - cons, size);                                    /* full */
    ck_assert_uint_eq(nic_ring_slot(prod, size), nic_ring_slot(cons, size)); /* same slot... */
    ck_assert(prod != cons); /* ...but full, not empty: that is why indices free-run */
    /* The consumer crosses zero too. */
    for (uint32_t i = 0; i < 6; i++) {
        cons++;
        ck_assert_uint_eq(prod - cons, size - 1 - i);
    }
    ck_assert_uint_eq(cons, 0);
    cons += 2;
    ck_assert_uint_eq(prod - cons, 0); /* empty */
    ck_assert_uint_eq(prod, cons);
}
END_TEST

START_TEST(cq_phase_alternates_per_lap)
{
    static const uint32_t sizes[] = {1, 2, 8, 4096, UINT32_C(1) << 31};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint32_t size = sizes[s];
        ck_assert_uint_eq(nic_cq_phase(0, size), 1); /* fresh CQ memory is 0: not owned */
        ck_assert_uint_eq(nic_cq_phase(size - 1, size), 1);
        ck_assert_uint_eq(nic_cq_phase(size, size), 0);
        ck_assert_uint_eq(nic_cq_phase(2 * size - 1, size), 0);
        ck_assert_uint_eq(nic_cq_phase(2 * size, size), 1);
        /* 2^32 / size laps is even, so parity keeps alternating across the wrap. */
        ck_assert_uint_eq(nic_cq_phase(UINT32_MAX, size), 0);
        uint32_t next = UINT32_MAX;
        next++;
        ck_assert_uint_eq(nic_cq_phase(next, size), 1);
    }
    for (uint32_t k = 0; k < 64; k++)
        ck_assert_uint_eq(nic_cq_phase(k, 8), lap_phase(k, 8));
}
END_TEST

/* ---- TX ---- */

START_TEST(tx_ring_wraps_in_order_byte_identical)
{
    enum { N = 100 };
    host_open(8, 8);
    static uint8_t slot_buf[RING_MAX][TEST_MTU]; /* driver shadow: one buffer per slot */
    static uint8_t got[WIRE_BUF_LEN], want[TEST_MTU];
    uint32_t sent = 0, received = 0;
    uint64_t bytes = 0;
    for (uint32_t round = 0; received < N; round++) {
        uint32_t batch = 1 + (round * 3) % 8; /* 1, 4, 7, 2, 5, 8, 3, 6, ... */
        for (uint32_t i = 0; i < batch && sent < N && tu_tx_space(&h) > 0; i++) {
            uint8_t *buf = slot_buf[nic_ring_slot(h.tx_prod, h.q->tx_size)];
            size_t len = build_tcp(buf, sent);
            struct nic_tx_desc d = data_desc(buf, len, 0, COOKIE_TAG | sent);
            tu_tx_post(&h, &d);
            bytes += len;
            sent++;
        }
        tu_tx_publish(&h);
        nic_dev_poll_once(h.dev);
        ck_assert_uint_eq(tu_load_acq(&h.q->tx_idx->cons), h.tx_prod);
        size_t n;
        while ((n = tu_wire_recv(h.wire, got, WIRE_BUF_LEN)) != 0) {
            TU_CHECK(received < sent);
            size_t len = build_tcp(want, received);
            ck_assert_uint_eq(n, len);
            ck_assert_mem_eq(got, want, len);
            received++;
        }
        ck_assert_uint_eq(received, sent);
        struct nic_cqe e;
        ck_assert(!tu_cq_take(&h, false, &e)); /* unsignalled: no completion */
    }
    ck_assert_uint_gt(h.tx_prod / h.q->tx_size, 10); /* the ring wrapped many times */
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_desc, N);
    ck_assert_uint_eq(c.tx_packets, N);
    ck_assert_uint_eq(c.tx_bytes, bytes);
    ck_assert_uint_eq(c.tx_bad_desc, 0);
    ck_assert_uint_eq(c.tun_write_errors, 0);
    ck_assert_uint_eq(tu_load_acq(&h.q->tx_cq_idx->prod), 0);
}
END_TEST

START_TEST(tx_signal_completes_with_cookie_and_phase)
{
    enum { N = 500 }; /* ~167 completions: over 4 laps of the 32-entry TX CQ */
    host_open(8, 8);
    static uint8_t slot_buf[RING_MAX][TEST_MTU];
    static uint8_t got[WIRE_BUF_LEN];
    uint32_t sent = 0, next_signalled = 0, completions = 0;
    for (uint32_t round = 0; sent < N; round++) {
        uint32_t batch = 1 + (round * 5) % 8;
        for (uint32_t i = 0; i < batch && sent < N && tu_tx_space(&h) > 0; i++) {
            uint8_t *buf = slot_buf[nic_ring_slot(h.tx_prod, h.q->tx_size)];
            size_t len = build_tcp(buf, sent);
            uint8_t flags = sent % 3 == 0 ? NIC_TXF_SIGNAL : 0;
            struct nic_tx_desc d = data_desc(buf, len, flags, COOKIE_TAG | sent);
            tu_tx_post(&h, &d);
            sent++;
        }
        tu_tx_publish(&h);
        nic_dev_poll_once(h.dev);
        while (tu_wire_recv(h.wire, got, WIRE_BUF_LEN) != 0) {
        }
        struct nic_cqe e;
        while (tu_cq_take(&h, false, &e)) {
            ck_assert_uint_eq(e.kind, NIC_CQE_TX_DONE);
            ck_assert_uint_eq(e.status, NIC_TX_OK);
            ck_assert_uint_eq(e.cookie, COOKIE_TAG | next_signalled);
            ck_assert_uint_eq(e.flow_id, 0);
            ck_assert_uint_eq(e.phase, lap_phase(completions, h.q->tx_cq_size));
            next_signalled += 3;
            completions++;
        }
        tu_cq_publish(&h, false);
        /* Everything signalled so far has completed, nothing else. */
        ck_assert_uint_eq(next_signalled, (sent + 2) / 3 * 3);
        ck_assert_uint_eq(tu_load_acq(&h.q->tx_cq_idx->prod), completions);
    }
    ck_assert_uint_eq(completions, (N + 2) / 3);
    ck_assert_uint_gt(completions / h.q->tx_cq_size, 3); /* several CQ laps */
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_packets, N);
    ck_assert_uint_eq(c.tx_cq_overflow, 0);
}
END_TEST

/* ---- TX ownership ---- */

START_TEST(tx_unpublished_poisoned_ring_is_ignored)
{
    host_open(8, 8);
    /* Fresh rings are poisoned: a slot the driver never wrote is invalid. */
    for (uint32_t i = 0; i < h.q->tx_size; i++)
        ck_assert_uint_eq(h.q->tx_ring[i].kind, 0xa5);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(nic_dev_poll_once(h.dev), 0);
    assert_wire_empty();
    struct nic_cqe e;
    ck_assert(!tu_cq_take(&h, false, &e));
    ck_assert_uint_eq(tu_load_acq(&h.q->tx_idx->cons), 0);
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_desc, 0);
    ck_assert_uint_eq(c.tx_bad_desc, 0);
    ck_assert_uint_eq(c.tx_packets, 0);
}
END_TEST

START_TEST(tx_never_consumes_beyond_prod)
{
    host_open(8, 8);
    static uint8_t pkt[RING_MAX][TEST_MTU];
    static uint8_t got[WIRE_BUF_LEN];
    size_t len[RING_MAX];
    for (uint32_t i = 0; i < 3; i++) {
        len[i] = build_tcp(pkt[i], i);
        struct nic_tx_desc d = data_desc(pkt[i], len[i], 0, COOKIE_TAG | i);
        tu_tx_post(&h, &d);
    }
    /* Garbage in the driver-owned slots after prod, never published. */
    for (uint32_t i = 3; i < h.q->tx_size; i++) {
        struct nic_tx_desc *d = &h.q->tx_ring[nic_ring_slot(h.tx_prod + i - 3, h.q->tx_size)];
        memset(d, 0x5c, sizeof(*d));
        d->kind = BAD_KIND;
        d->flags = NIC_TXF_SIGNAL;
    }
    tu_tx_publish(&h);
    for (int i = 0; i < 4; i++)
        nic_dev_poll_once(h.dev);
    ck_assert_uint_eq(tu_load_acq(&h.q->tx_idx->cons), 3);
    for (uint32_t i = 0; i < 3; i++) {
        ck_assert_uint_eq(tu_wire_recv(h.wire, got, WIRE_BUF_LEN), len[i]);
        ck_assert_mem_eq(got, pkt[i], len[i]);
    }
    assert_wire_empty();
    struct nic_cqe e;
    ck_assert(!tu_cq_take(&h, false, &e));
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_desc, 3);
    ck_assert_uint_eq(c.tx_bad_desc, 0);

    /* Those slots were still the driver's: fill them properly and publish. */
    for (uint32_t i = 3; i < h.q->tx_size; i++) {
        len[i] = build_tcp(pkt[i], i);
        struct nic_tx_desc d = data_desc(pkt[i], len[i], 0, COOKIE_TAG | i);
        tu_tx_post(&h, &d);
    }
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    for (uint32_t i = 3; i < h.q->tx_size; i++) {
        ck_assert_uint_eq(tu_wire_recv(h.wire, got, WIRE_BUF_LEN), len[i]);
        ck_assert_mem_eq(got, pkt[i], len[i]);
    }
    assert_wire_empty();
    c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_desc, h.q->tx_size);
    ck_assert_uint_eq(c.tx_bad_desc, 0);
}
END_TEST

START_TEST(tx_unknown_kind_counted_as_bad_desc)
{
    host_open(8, 8);
    static uint8_t pkt[TEST_MTU], got[WIRE_BUF_LEN];
    struct nic_tx_desc d;
    memset(&d, 0, sizeof(d));
    d.kind = BAD_KIND; /* unsignalled: errors complete anyway */
    d.cookie = COOKIE_TAG | 1;
    tu_tx_post(&h, &d);
    memset(&d, 0, sizeof(d));
    d.kind = 0;
    d.flags = NIC_TXF_SIGNAL;
    d.cookie = COOKIE_TAG | 2;
    tu_tx_post(&h, &d);
    /* The ring keeps moving after bad descriptors. */
    size_t len = build_tcp(pkt, 3);
    d = data_desc(pkt, len, NIC_TXF_SIGNAL, COOKIE_TAG | 3);
    tu_tx_post(&h, &d);
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    ck_assert_uint_eq(tu_load_acq(&h.q->tx_idx->cons), 3);

    struct nic_cqe e;
    ck_assert(tu_cq_take(&h, false, &e));
    ck_assert_uint_eq(e.kind, NIC_CQE_TX_DONE);
    ck_assert_uint_eq(e.status, NIC_TX_ERR_BAD_DESC);
    ck_assert_uint_eq(e.cookie, COOKIE_TAG | 1);
    ck_assert(tu_cq_take(&h, false, &e));
    ck_assert_uint_eq(e.status, NIC_TX_ERR_BAD_DESC);
    ck_assert_uint_eq(e.cookie, COOKIE_TAG | 2);
    ck_assert(tu_cq_take(&h, false, &e));
    ck_assert_uint_eq(e.status, NIC_TX_OK);
    ck_assert_uint_eq(e.cookie, COOKIE_TAG | 3);
    ck_assert(!tu_cq_take(&h, false, &e));
    tu_cq_publish(&h, false);

    ck_assert_uint_eq(tu_wire_recv(h.wire, got, WIRE_BUF_LEN), len);
    ck_assert_mem_eq(got, pkt, len);
    assert_wire_empty();
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_desc, 3);
    ck_assert_uint_eq(c.tx_bad_desc, 2);
    ck_assert_uint_eq(c.tx_packets, 1);
}
END_TEST

START_TEST(tx_zero_length_data_counted_as_bad_desc)
{
    host_open(8, 8);
    static uint8_t pkt[TEST_MTU];
    struct nic_tx_desc d = data_desc(NULL, 0, 0, COOKIE_TAG | 1); /* never dereferenced */
    tu_tx_post(&h, &d);
    d = data_desc(pkt, 0, NIC_TXF_SIGNAL, COOKIE_TAG | 2); /* exactly one completion */
    tu_tx_post(&h, &d);
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    ck_assert_uint_eq(tu_load_acq(&h.q->tx_idx->cons), 2);
    struct nic_cqe e;
    ck_assert(tu_cq_take(&h, false, &e));
    ck_assert_uint_eq(e.kind, NIC_CQE_TX_DONE);
    ck_assert_uint_eq(e.status, NIC_TX_ERR_BAD_DESC);
    ck_assert_uint_eq(e.cookie, COOKIE_TAG | 1);
    ck_assert(tu_cq_take(&h, false, &e));
    ck_assert_uint_eq(e.status, NIC_TX_ERR_BAD_DESC);
    ck_assert_uint_eq(e.cookie, COOKIE_TAG | 2);
    ck_assert(!tu_cq_take(&h, false, &e));
    assert_wire_empty();
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_desc, 2);
    ck_assert_uint_eq(c.tx_bad_desc, 2);
    ck_assert_uint_eq(c.tx_packets, 0);
}
END_TEST

/* ---- RX ---- */

#define RX_POISON 0xcc

static uint64_t rx_cookie_for(uint32_t prod, uint32_t buf)
{
    return COOKIE_TAG | (uint64_t)prod << 8 | buf;
}

/* Check the completion for the k-th packet the NIC accepted (k == its RX
   descriptor index) and return the buffer it landed in. */
static uint32_t rx_check_cqe(const struct nic_cqe *e, uint32_t k, uint32_t id,
                             uint8_t (*bufs)[RX_BUF_LEN], uint16_t want_flags)
{
    static uint8_t want[TEST_MTU];
    size_t len = build_tcp(want, id);
    uint64_t cookie = rx_cookie[nic_ring_slot(k, h.q->rx_size)];
    ck_assert_uint_eq(e->kind, NIC_CQE_RX_PACKET);
    ck_assert_uint_eq(e->phase, lap_phase(k, h.q->rx_cq_size));
    ck_assert_uint_eq(e->cookie, cookie);
    ck_assert_uint_eq(e->len, len);
    ck_assert_uint_eq(e->flags, want_flags);
    uint32_t b = (uint32_t)(cookie & 0xff);
    ck_assert_mem_eq(bufs[b], want, len);
    for (size_t i = len; i < RX_BUF_LEN; i++) /* nothing written past the packet */
        TU_CHECK(bufs[b][i] == RX_POISON);
    return b;
}

START_TEST(rx_ring_wraps_reposting_buffers)
{
    enum { N = 100 };
    host_open(8, 8);
    static uint8_t bufs[RING_MAX][RX_BUF_LEN];
    static uint8_t pkt[TEST_MTU];
    memset(bufs, RX_POISON, sizeof(bufs));
    for (uint32_t b = 0; b < h.q->rx_size; b++)
        rx_post(bufs[b], RX_BUF_LEN, rx_cookie_for(h.rx_prod, b));
    tu_rx_publish(&h);
    uint32_t sent = 0, done = 0;
    uint64_t bytes = 0;
    for (uint32_t round = 0; done < N; round++) {
        uint32_t batch = 1 + (round * 5) % 8; /* never more than the posted buffers */
        for (uint32_t i = 0; i < batch && sent < N; i++) {
            size_t len = build_tcp(pkt, sent);
            tu_wire_send(h.wire, pkt, len);
            bytes += len;
            sent++;
        }
        nic_dev_poll_once(h.dev);
        ck_assert_uint_eq(tu_load_acq(&h.q->rx_idx->cons), sent);
        struct nic_cqe e;
        while (tu_cq_take(&h, true, &e)) {
            uint32_t b = rx_check_cqe(&e, done, done, bufs, NIC_RXF_CSUM_OK);
            /* The buffer is the driver's again: poison it and post it anew. */
            memset(bufs[b], RX_POISON, RX_BUF_LEN);
            rx_post(bufs[b], RX_BUF_LEN, rx_cookie_for(h.rx_prod, b));
            done++;
        }
        tu_cq_publish(&h, true);
        tu_rx_publish(&h);
        ck_assert_uint_eq(done, sent);
    }
    ck_assert_uint_gt(done / h.q->rx_cq_size, 10); /* many ring and CQ laps */
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.rx_packets, N);
    ck_assert_uint_eq(c.rx_bytes, bytes);
    ck_assert_uint_eq(c.rx_wire_packets, N);
    ck_assert_uint_eq(c.rx_wire_bytes, bytes);
    ck_assert_uint_eq(c.rx_no_buffer, 0);
    ck_assert_uint_eq(c.rx_csum_bad, 0);
    ck_assert_uint_eq(c.rx_cq_overflow, 0);
}
END_TEST

START_TEST(rx_bad_checksum_clears_csum_ok_and_counts)
{
    host_open(8, 8);
    static uint8_t bufs[RING_MAX][RX_BUF_LEN];
    static uint8_t pkt[3][TEST_MTU];
    memset(bufs, RX_POISON, sizeof(bufs));
    for (uint32_t b = 0; b < 3; b++)
        rx_post(bufs[b], RX_BUF_LEN, rx_cookie_for(h.rx_prod, b));
    tu_rx_publish(&h);
    size_t len[3];
    for (uint32_t i = 0; i < 3; i++)
        len[i] = build_tcp(pkt[i], 10 + i);
    pkt[1][TU_TCP_CSUM_OFF] ^= 0x01; /* TCP checksum wrong, IP header fine */
    pkt[2][8] ^= 0x01;               /* TTL changed: IP header checksum wrong, TCP fine */
    for (uint32_t i = 0; i < 3; i++)
        tu_wire_send(h.wire, pkt[i], len[i]);
    nic_dev_poll_once(h.dev);
    static const uint16_t want_flags[3] = {NIC_RXF_CSUM_OK, 0, 0};
    for (uint32_t i = 0; i < 3; i++) {
        struct nic_cqe e;
        ck_assert(tu_cq_take(&h, true, &e));
        ck_assert_uint_eq(e.kind, NIC_CQE_RX_PACKET);
        ck_assert_uint_eq(e.cookie, rx_cookie_for(i, i));
        ck_assert_uint_eq(e.len, len[i]);
        ck_assert_uint_eq(e.flags, want_flags[i]);
        ck_assert_mem_eq(bufs[i], pkt[i], len[i]); /* delivered as received */
    }
    struct nic_cqe e;
    ck_assert(!tu_cq_take(&h, true, &e));
    tu_cq_publish(&h, true);
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.rx_csum_bad, 2);
    ck_assert_uint_eq(c.rx_packets, 3);
}
END_TEST

/* Frames whose headers do not hold together are counted in rx_malformed and
   still delivered as received, without NIC_RXF_CSUM_OK; well-formed IPv4 that
   is not a whole TCP segment (UDP, a fragment) and a bad checksum are not
   malformed. */
enum rx_frame_kind {
    RXF_GOOD,      /* control: a TCP segment, checksums right */
    RXF_CSUM_BAD,  /* control: TCP checksum wrong (rx_csum_bad) */
    RXF_UDP,       /* control: well-formed IPv4, protocol 17 */
    RXF_FRAGMENT,  /* control: MF set, not a whole segment */
    RXF_IPV6,      /* version 6 */
    RXF_SHORT,     /* 12 bytes: shorter than an IPv4 header */
    RXF_IHL4,      /* IHL 4: a 16-byte IPv4 header */
    RXF_TOT_LONG,  /* total length beyond the frame (truncated packet) */
    RXF_TCP_SHORT, /* total length leaves 10 bytes for the TCP header */
    RXF_THL_LONG,  /* TCP data offset 15 (60 bytes) beyond the total length */
    RXF_COUNT
};

static size_t build_rx_frame(uint8_t *p, enum rx_frame_kind k)
{
    size_t len = build_tcp(p, 3); /* 304 payload bytes */
    switch (k) {
    case RXF_GOOD:
        break;
    case RXF_CSUM_BAD:
        p[TU_TCP_CSUM_OFF] ^= 0x01;
        break;
    case RXF_UDP:
        p[9] = 17;
        tu_ip_csum_set(p);
        break;
    case RXF_FRAGMENT:
        tu_put16(p + 6, 0x2000); /* MF */
        tu_ip_csum_set(p);
        break;
    case RXF_IPV6:
        p[0] = 0x60;
        break;
    case RXF_SHORT:
        len = 12;
        break;
    case RXF_IHL4:
        p[0] = 0x44;
        break;
    case RXF_TOT_LONG:
        tu_put16(p + 2, (uint16_t)(len + 1));
        tu_ip_csum_set(p);
        break;
    case RXF_TCP_SHORT:
        len = TU_IP_HLEN + 10;
        tu_put16(p + 2, (uint16_t)len);
        tu_ip_csum_set(p);
        break;
    case RXF_THL_LONG:
        len = TU_IP_HLEN + TU_TCP_HLEN + 8;
        tu_put16(p + 2, (uint16_t)len);
        tu_ip_csum_set(p);
        p[TU_IP_HLEN + 12] = 0xf0;
        break;
    default:
        ck_abort_msg("frame kind %d", (int)k);
    }
    return len;
}

START_TEST(rx_malformed_counted_and_delivered)
{
    host_open(8, 8);
    static uint8_t bufs[RING_MAX][RX_BUF_LEN];
    static uint8_t pkt[TEST_MTU];
    uint64_t bytes = 0;
    for (uint32_t k = 0; k < RXF_COUNT; k++) {
        TU_CTX("frame kind %u", k);
        uint32_t b = k % RING_MAX;
        memset(bufs[b], RX_POISON, RX_BUF_LEN);
        rx_post(bufs[b], RX_BUF_LEN, rx_cookie_for(h.rx_prod, b));
        tu_rx_publish(&h);
        size_t len = build_rx_frame(pkt, (enum rx_frame_kind)k);
        tu_wire_send(h.wire, pkt, len);
        bytes += len;
        nic_dev_poll_once(h.dev);
        struct nic_cqe e;
        TU_CHECK(tu_cq_take(&h, true, &e));
        TU_CHECK_EQ(e.kind, NIC_CQE_RX_PACKET);
        TU_CHECK_EQ(e.cookie, rx_cookie_for(k, b));
        TU_CHECK_EQ(e.len, len);
        TU_CHECK_EQ(e.flags, k == RXF_GOOD ? NIC_RXF_CSUM_OK : 0);
        TU_CHECK(memcmp(bufs[b], pkt, len) == 0); /* delivered as received */
        tu_cq_publish(&h, true);
        struct nic_counters c = tu_counters(h.dev);
        TU_CHECK_EQ(c.rx_malformed, k < RXF_IPV6 ? 0 : k - RXF_IPV6 + 1);
    }
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.rx_malformed, RXF_COUNT - RXF_IPV6);
    ck_assert_uint_eq(c.rx_csum_bad, 1);
    ck_assert_uint_eq(c.rx_packets, RXF_COUNT);
    ck_assert_uint_eq(c.rx_bytes, bytes);
}
END_TEST

START_TEST(rx_without_buffer_drops_and_counts)
{
    host_open(8, 8);
    static uint8_t bufs[RING_MAX][RX_BUF_LEN];
    static uint8_t pkt[TEST_MTU];
    memset(bufs, RX_POISON, sizeof(bufs));
    /* A filled but unpublished slot is still the driver's. */
    rx_post(bufs[0], RX_BUF_LEN, rx_cookie_for(h.rx_prod, 0));
    uint64_t dropped_bytes = 0;
    for (uint32_t i = 0; i < 5; i++) {
        size_t len = build_tcp(pkt, i);
        tu_wire_send(h.wire, pkt, len);
        dropped_bytes += len;
    }
    nic_dev_poll_once(h.dev);
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.rx_no_buffer, 5);
    ck_assert_uint_eq(c.rx_wire_packets, 5);
    ck_assert_uint_eq(c.rx_wire_bytes, dropped_bytes);
    ck_assert_uint_eq(c.rx_packets, 0);
    ck_assert_uint_eq(c.rx_bytes, 0);
    ck_assert_uint_eq(tu_load_acq(&h.q->rx_idx->cons), 0);
    struct nic_cqe e;
    ck_assert(!tu_cq_take(&h, true, &e));
    for (size_t i = 0; i < sizeof(bufs); i++) /* never written anywhere */
        TU_CHECK(bufs[i / RX_BUF_LEN][i % RX_BUF_LEN] == RX_POISON);

    /* Publish the buffer: only the next packet lands in it. */
    tu_rx_publish(&h);
    size_t len = build_tcp(pkt, 42);
    tu_wire_send(h.wire, pkt, len);
    nic_dev_poll_once(h.dev);
    ck_assert(tu_cq_take(&h, true, &e));
    rx_check_cqe(&e, 0, 42, bufs, NIC_RXF_CSUM_OK);
    ck_assert(!tu_cq_take(&h, true, &e));
    tu_cq_publish(&h, true);
    c = tu_counters(h.dev);
    ck_assert_uint_eq(c.rx_no_buffer, 5);
    ck_assert_uint_eq(c.rx_packets, 1);
    ck_assert_uint_eq(c.rx_bytes, len);
}
END_TEST

/* Post buffers [from, to), poll once, and take exactly the packets with
   ids from..to-1 in them. */
static void rx_post_and_take(uint8_t (*bufs)[RX_BUF_LEN], uint32_t from, uint32_t to)
{
    for (uint32_t b = from; b < to; b++)
        rx_post(bufs[b], RX_BUF_LEN, rx_cookie_for(h.rx_prod, b));
    tu_rx_publish(&h);
    nic_dev_poll_once(h.dev);
    struct nic_cqe e;
    for (uint32_t i = from; i < to; i++) {
        ck_assert(tu_cq_take(&h, true, &e));
        rx_check_cqe(&e, i, i, bufs, NIC_RXF_CSUM_OK);
    }
    ck_assert(!tu_cq_take(&h, true, &e));
    tu_cq_publish(&h, true);
}

/* With rx_pause the device leaves what arrives on the wire while no buffer
   is posted (one pause counted, nothing dropped), and delivers all of it,
   in order and unchanged, once buffers are published. */
START_TEST(rx_pause_waits_for_buffers_and_loses_nothing)
{
    g_rx_pause = true;
    host_open(8, 8);
    static uint8_t bufs[RING_MAX][RX_BUF_LEN];
    static uint8_t pkt[TEST_MTU];
    memset(bufs, RX_POISON, sizeof(bufs));
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < 5; i++) {
        size_t len = build_tcp(pkt, i);
        tu_wire_send(h.wire, pkt, len);
        bytes += len;
    }
    for (int round = 0; round < 3; round++)
        nic_dev_poll_once(h.dev);
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.rx_no_buffer, 0);
    ck_assert_uint_eq(c.rx_pauses, 1);       /* one pause, however many rounds */
    ck_assert_uint_eq(c.rx_wire_packets, 0); /* still in the TUN queue */
    ck_assert_uint_eq(c.rx_packets, 0);
    struct nic_cqe e;
    ck_assert(!tu_cq_take(&h, true, &e));

    /* Two buffers: two packets, then a second pause. */
    rx_post_and_take(bufs, 0, 2);
    c = tu_counters(h.dev);
    ck_assert_uint_eq(c.rx_pauses, 2);
    ck_assert_uint_eq(c.rx_packets, 2);

    /* The rest. */
    rx_post_and_take(bufs, 2, 5);
    c = tu_counters(h.dev);
    ck_assert_uint_eq(c.rx_no_buffer, 0);
    ck_assert_uint_eq(c.rx_packets, 5);
    ck_assert_uint_eq(c.rx_bytes, bytes);
    ck_assert_uint_eq(c.rx_wire_packets, 5);
}
END_TEST

/* ---- Full / empty ---- */

START_TEST(tx_full_check_prevents_overwrite)
{
    host_open(8, 8);
    static uint8_t slot_buf[RING_MAX][TEST_MTU];
    static uint8_t got[WIRE_BUF_LEN], want[TEST_MTU];
    ck_assert_uint_eq(tu_tx_space(&h), h.q->tx_size); /* empty: prod == cons */
    uint32_t posted = 0;
    while (tu_tx_space(&h) > 0) {
        uint8_t *buf = slot_buf[nic_ring_slot(h.tx_prod, h.q->tx_size)];
        struct nic_tx_desc d = data_desc(buf, build_tcp(buf, posted), 0, COOKIE_TAG | posted);
        tu_tx_post(&h, &d);
        posted++;
    }
    ck_assert_uint_eq(posted, h.q->tx_size);
    ck_assert_uint_eq(h.tx_prod - tu_load_acq(&h.q->tx_idx->cons), h.q->tx_size); /* full */
    /* prod's slot is cons's slot: writing it now would overwrite packet 0. */
    ck_assert_uint_eq(nic_ring_slot(h.tx_prod, h.q->tx_size), 0);
    ck_assert_uint_eq(h.q->tx_ring[0].cookie, COOKIE_TAG | 0);
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    for (uint32_t i = 0; i < posted; i++) {
        size_t len = build_tcp(want, i);
        ck_assert_uint_eq(tu_wire_recv(h.wire, got, WIRE_BUF_LEN), len);
        ck_assert_mem_eq(got, want, len);
    }
    assert_wire_empty();
    ck_assert_uint_eq(tu_load_acq(&h.q->tx_idx->cons), h.tx_prod); /* empty again */
    ck_assert_uint_eq(tu_tx_space(&h), h.q->tx_size);
}
END_TEST

START_TEST(rx_full_check_prevents_overwrite)
{
    host_open(8, 8);
    static uint8_t bufs[RING_MAX][RX_BUF_LEN];
    static uint8_t pkt[TEST_MTU];
    memset(bufs, RX_POISON, sizeof(bufs));
    uint32_t posted = 0;
    while (tu_rx_space(&h) > 0) {
        rx_post(bufs[posted], RX_BUF_LEN, rx_cookie_for(h.rx_prod, posted));
        posted++;
    }
    tu_rx_publish(&h);
    ck_assert_uint_eq(posted, h.q->rx_size);
    ck_assert_uint_eq(h.rx_prod - tu_load_acq(&h.q->rx_idx->cons), h.q->rx_size);
    /* One packet more than there are buffers. */
    for (uint32_t i = 0; i <= posted; i++)
        tu_wire_send(h.wire, pkt, build_tcp(pkt, i));
    nic_dev_poll_once(h.dev);
    ck_assert_uint_eq(tu_load_acq(&h.q->rx_idx->cons), h.rx_prod);
    for (uint32_t i = 0; i < posted; i++) {
        struct nic_cqe e;
        ck_assert(tu_cq_take(&h, true, &e));
        rx_check_cqe(&e, i, i, bufs, NIC_RXF_CSUM_OK);
    }
    struct nic_cqe e;
    ck_assert(!tu_cq_take(&h, true, &e));
    tu_cq_publish(&h, true);
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.rx_packets, posted);
    ck_assert_uint_eq(c.rx_no_buffer, 1);
    ck_assert_uint_eq(tu_rx_space(&h), h.q->rx_size);
}
END_TEST

START_TEST(tx_cq_never_overflows_when_driver_consumes)
{
    enum { N = 200 };
    host_open(8, 8);
    static uint8_t slot_buf[RING_MAX][TEST_MTU];
    static uint8_t got[WIRE_BUF_LEN];
    uint32_t sent = 0, completions = 0;
    while (sent < N) {
        while (tu_tx_space(&h) > 0 && sent < N) { /* a full ring of signalled descriptors */
            uint8_t *buf = slot_buf[nic_ring_slot(h.tx_prod, h.q->tx_size)];
            struct nic_tx_desc d =
                data_desc(buf, build_tcp(buf, sent), NIC_TXF_SIGNAL, COOKIE_TAG | sent);
            tu_tx_post(&h, &d);
            sent++;
        }
        tu_tx_publish(&h);
        nic_dev_poll_once(h.dev);
        while (tu_wire_recv(h.wire, got, WIRE_BUF_LEN) != 0) {
        }
        struct nic_cqe e;
        while (tu_cq_take(&h, false, &e)) {
            ck_assert_uint_eq(e.cookie, COOKIE_TAG | completions);
            completions++;
        }
        tu_cq_publish(&h, false);
        ck_assert_uint_eq(completions, sent);
    }
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_cq_overflow, 0);
    ck_assert_uint_eq(c.rx_cq_overflow, 0);
    ck_assert_uint_eq(c.tx_packets, N);
}
END_TEST

START_TEST(rx_cq_never_overflows_when_driver_consumes)
{
    enum { N = 100 };
    host_open(8, 8);
    static uint8_t bufs[RING_MAX][RX_BUF_LEN];
    static uint8_t pkt[TEST_MTU];
    memset(bufs, RX_POISON, sizeof(bufs));
    for (uint32_t b = 0; b < h.q->rx_size; b++)
        rx_post(bufs[b], RX_BUF_LEN, rx_cookie_for(h.rx_prod, b));
    tu_rx_publish(&h);
    uint32_t sent = 0, done = 0;
    while (done < N) {
        for (uint32_t i = 0; i < h.q->rx_size && sent < N; i++) /* a full ring's worth */
            tu_wire_send(h.wire, pkt, build_tcp(pkt, sent++));
        nic_dev_poll_once(h.dev);
        struct nic_cqe e;
        while (tu_cq_take(&h, true, &e)) {
            uint32_t b = rx_check_cqe(&e, done, done, bufs, NIC_RXF_CSUM_OK);
            memset(bufs[b], RX_POISON, RX_BUF_LEN);
            rx_post(bufs[b], RX_BUF_LEN, rx_cookie_for(h.rx_prod, b));
            done++;
        }
        tu_cq_publish(&h, true);
        tu_rx_publish(&h);
        ck_assert_uint_eq(done, sent);
    }
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.rx_cq_overflow, 0);
    ck_assert_uint_eq(c.tx_cq_overflow, 0);
    ck_assert_uint_eq(c.rx_no_buffer, 0);
    ck_assert_uint_eq(c.rx_packets, N);
}
END_TEST

/* A driver that reuses TX slots (NIC cons passed them) without draining the CQ
   breaks the sizing guarantee: the NIC counts the overflow and never
   overwrites an entry the driver still owns. */
/* A driver that stops reading TX completions stalls the NIC instead of
   losing completions: the engine consumes no descriptor without CQ room
   (tx_cq_backpressure counts the stalls), and resumes once the CQ drains. */
/* A driver that reposts buffers without publishing its RX CQ consumer index
   breaks the rule of nic_abi.h: the NIC then writes no entry over unread ones
   and counts every completion it could not post in rx_cq_overflow. */
START_TEST(rx_cq_full_counts_overflow_never_overwrites)
{
    host_open(8, 8);
    static uint8_t bufs[RING_MAX][RX_BUF_LEN];
    static uint8_t pkt[TEST_MTU];
    uint32_t size = h.q->rx_size;
    for (uint32_t b = 0; b < size; b++)
        rx_post(bufs[b], RX_BUF_LEN, rx_cookie_for(h.rx_prod, b));
    tu_rx_publish(&h);
    for (uint32_t i = 0; i < size; i++)
        tu_wire_send(h.wire, pkt, build_tcp(pkt, i));
    nic_dev_poll_once(h.dev);
    struct nic_cqe first[RING_MAX];
    for (uint32_t i = 0; i < size; i++)
        ck_assert(tu_cq_take(&h, true, &first[i]));
    /* Repost every buffer, but keep the CQ consumer index unpublished. */
    for (uint32_t b = 0; b < size; b++)
        rx_post(bufs[b], RX_BUF_LEN, rx_cookie_for(h.rx_prod, b));
    tu_rx_publish(&h);
    for (uint32_t i = 0; i < size; i++)
        tu_wire_send(h.wire, pkt, build_tcp(pkt, size + i));
    nic_dev_poll_once(h.dev);
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.rx_cq_overflow, size);
    ck_assert_uint_eq(c.rx_packets, 2 * size);
    struct nic_cqe e;
    ck_assert(!tu_cq_take(&h, true, &e)); /* no entry of the second lap */
    for (uint32_t i = 0; i < size; i++) { /* the first lap is intact */
        const struct nic_cqe *q = &h.q->rx_cq[i];
        ck_assert_uint_eq(q->phase, 1);
        ck_assert_uint_eq(q->cookie, first[i].cookie);
    }
}
END_TEST

START_TEST(tx_cq_full_stalls_engine_without_loss)
{
    host_open(8, 8);
    static uint8_t slot_buf[RING_MAX][TEST_MTU];
    static uint8_t got[WIRE_BUF_LEN];
    const uint32_t total = h.q->tx_cq_size + 2 * h.q->tx_size; /* more than the CQ holds */
    uint32_t on_wire = 0;
    for (int round = 0; round < 64 && h.tx_prod < total; round++) {
        while (tu_tx_space(&h) > 0 && h.tx_prod < total) {
            uint8_t *buf = slot_buf[nic_ring_slot(h.tx_prod, h.q->tx_size)];
            struct nic_tx_desc d =
                data_desc(buf, build_tcp(buf, h.tx_prod), NIC_TXF_SIGNAL, COOKIE_TAG | h.tx_prod);
            tu_tx_post(&h, &d);
        }
        tu_tx_publish(&h);
        nic_dev_poll_once(h.dev);
        while (tu_wire_recv(h.wire, got, WIRE_BUF_LEN) != 0)
            on_wire++;
    }
    /* Stalled with one entry of headroom left (a descriptor may need two). */
    uint32_t done = h.q->tx_cq_size - 1;
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_cq_overflow, 0);
    ck_assert_uint_gt(c.tx_cq_backpressure, 0);
    ck_assert_uint_eq(tu_load_acq(&h.q->tx_cq_idx->prod), done);
    ck_assert_uint_eq(on_wire, done);
    /* Drain: every entry is there, in order; then the rest goes out. */
    struct nic_cqe e;
    for (uint32_t i = 0; i < done; i++) {
        ck_assert(tu_cq_take(&h, false, &e));
        ck_assert_uint_eq(e.cookie, COOKIE_TAG | i);
    }
    tu_cq_publish(&h, false);
    for (int round = 0; round < 64 && on_wire < h.tx_prod; round++) {
        nic_dev_poll_once(h.dev);
        while (tu_wire_recv(h.wire, got, WIRE_BUF_LEN) != 0)
            on_wire++;
        while (tu_cq_take(&h, false, &e))
            done++;
        tu_cq_publish(&h, false);
    }
    ck_assert_uint_eq(on_wire, h.tx_prod);
    ck_assert_uint_eq(done, h.tx_prod);
    ck_assert_uint_eq(tu_counters(h.dev).tx_cq_overflow, 0);
}
END_TEST

/* ---- Counters ---- */

START_TEST(counters_match_traffic_exactly)
{
    host_open(8, 8);
    static uint8_t slot_buf[RING_MAX][TEST_MTU];
    static uint8_t bufs[RING_MAX][RX_BUF_LEN];
    static uint8_t pkt[TEST_MTU], got[WIRE_BUF_LEN];
    uint64_t tx_bytes = 0, rx_bytes = 0, wire_rx_bytes = 0;
    uint32_t tx_good = 0, tx_bad = 0, rx_good = 0, rx_dropped = 0, rx_bad_csum = 0;

    /* RX with no buffers yet: 3 drops. */
    for (uint32_t i = 0; i < 3; i++) {
        size_t len = build_tcp(pkt, 1000 + i);
        tu_wire_send(h.wire, pkt, len);
        wire_rx_bytes += len;
        rx_dropped++;
    }
    nic_dev_poll_once(h.dev);

    memset(bufs, RX_POISON, sizeof(bufs));
    for (uint32_t b = 0; b < h.q->rx_size; b++)
        rx_post(bufs[b], RX_BUF_LEN, rx_cookie_for(h.rx_prod, b));
    tu_rx_publish(&h);
    for (uint32_t round = 0; round < 10; round++) {
        /* TX: up to 4 packets and, every third round, one bad descriptor. */
        for (uint32_t i = 0; i < 4 && tu_tx_space(&h) > 1; i++) {
            uint8_t *buf = slot_buf[nic_ring_slot(h.tx_prod, h.q->tx_size)];
            size_t len = build_tcp(buf, 2000 + tx_good);
            struct nic_tx_desc d = data_desc(buf, len, 0, COOKIE_TAG | h.tx_prod);
            tu_tx_post(&h, &d);
            tx_bytes += len;
            tx_good++;
        }
        if (round % 3 == 0) {
            struct nic_tx_desc d = data_desc(NULL, 0, 0, COOKIE_TAG | h.tx_prod);
            tu_tx_post(&h, &d);
            tx_bad++;
        }
        tu_tx_publish(&h);
        /* RX: round + 1 packets (<= 8 buffers), the last of round 5 corrupt. */
        for (uint32_t i = 0; i <= round && i < h.q->rx_size; i++) {
            size_t len = build_tcp(pkt, 3000 + rx_good);
            if (round == 5 && i == round) {
                pkt[TU_TCP_CSUM_OFF + 1] ^= 0x80;
                rx_bad_csum++;
            }
            tu_wire_send(h.wire, pkt, len);
            rx_bytes += len;
            wire_rx_bytes += len;
            rx_good++;
        }
        nic_dev_poll_once(h.dev);
        while (tu_wire_recv(h.wire, got, WIRE_BUF_LEN) != 0) {
        }
        struct nic_cqe e;
        while (tu_cq_take(&h, false, &e))
            ck_assert_uint_eq(e.status, NIC_TX_ERR_BAD_DESC);
        tu_cq_publish(&h, false);
        while (tu_cq_take(&h, true, &e)) {
            uint32_t b = (uint32_t)(e.cookie & 0xff);
            memset(bufs[b], RX_POISON, RX_BUF_LEN);
            rx_post(bufs[b], RX_BUF_LEN, rx_cookie_for(h.rx_prod, b));
        }
        tu_cq_publish(&h, true);
        tu_rx_publish(&h);
    }
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_desc, tx_good + tx_bad);
    ck_assert_uint_eq(c.tx_bad_desc, tx_bad);
    ck_assert_uint_eq(c.tx_packets, tx_good);
    ck_assert_uint_eq(c.tx_bytes, tx_bytes);
    ck_assert_uint_eq(c.rx_packets, rx_good);
    ck_assert_uint_eq(c.rx_bytes, rx_bytes);
    ck_assert_uint_eq(c.rx_no_buffer, rx_dropped);
    ck_assert_uint_eq(c.rx_csum_bad, rx_bad_csum);
    ck_assert_uint_eq(c.rx_wire_packets, rx_good + rx_dropped);
    ck_assert_uint_eq(c.rx_wire_bytes, wire_rx_bytes);
    ck_assert_uint_eq(c.tx_cq_overflow, 0);
    ck_assert_uint_eq(c.rx_cq_overflow, 0);
    ck_assert_uint_eq(c.tun_write_errors, 0);
    ck_assert_uint_eq(c.tun_read_errors, 0);
    ck_assert_uint_eq(c.rx_malformed, 0);
    ck_assert_uint_eq(c.irqs, 0); /* never armed */
    /* A round with nothing on the wire: its read is counted as empty. */
    nic_dev_poll_once(h.dev);
    struct nic_counters idle = tu_counters(h.dev);
    ck_assert_uint_ge(idle.tun_reads_empty, c.tun_reads_empty + 1);
    ck_assert_uint_eq(idle.rx_wire_packets, c.rx_wire_packets);
}
END_TEST

/* The engine thread, idle: after a round with no work it polls a few more
   rounds (ENGINE_IDLE_SPINS = 8, each an empty wire read) and sleeps; it
   wakes at least every 5 ms to publish counters. 64 rounds per sleep, as
   before, kept a core busy that the client and the host needed. */
START_TEST(idle_engine_sleeps_after_a_short_spin)
{
    host_open(8, 8);
    ck_assert_int_eq(nic_dev_start(h.dev), 0);
    struct timespec idle = {.tv_nsec = 100 * 1000 * 1000};
    while (nanosleep(&idle, &idle) != 0 && errno == EINTR)
        ;
    nic_dev_stop(h.dev);
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_ge(c.engine_sleeps, 2);
    ck_assert_uint_ge(c.tun_reads_empty, c.engine_sleeps);
    ck_assert_msg(c.tun_reads_empty <= 8 * (c.engine_sleeps + 1),
                  "%" PRIu64 " empty reads for %" PRIu64 " sleeps", c.tun_reads_empty,
                  c.engine_sleeps);
    ck_assert_uint_eq(c.rx_wire_packets, 0);
}
END_TEST

/* Doorbells rung in a burst while the engine sleeps wake it with one eventfd
   write: a write needs the engine's sleep flag and takes it, so there are
   never more writes than sleeps. (Each used to write until the engine had
   woken and cleared the flag: a system call per doorbell.) */
START_TEST(doorbells_write_at_most_once_per_engine_sleep)
{
    host_open(8, 8);
    ck_assert_int_eq(nic_dev_start(h.dev), 0);
    unsigned writes = 0;
    for (int burst = 0; burst < 20; burst++) {
        struct timespec idle = {.tv_nsec = 2 * 1000 * 1000}; /* the engine falls asleep */
        while (nanosleep(&idle, &idle) != 0 && errno == EINTR)
            ;
        for (int i = 0; i < 1000; i++)
            writes += nic_dev_doorbell(h.dev);
    }
    nic_dev_stop(h.dev);
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_ge(writes, 1);
    ck_assert_msg(writes <= c.engine_sleeps, "%u doorbell writes for %" PRIu64 " engine sleeps",
                  writes, c.engine_sleeps);
    ck_assert_uint_le(c.doorbells, writes); /* the engine read at most what was written */
}
END_TEST

/* Checksum offload: with NIC_TXF_CSUM the NIC writes the TCP checksum the
   host left wrong (in the packet on the wire and in the host's buffer);
   without it the packet goes out exactly as posted, wrong checksum and all.
   A non-TCP packet (a UDP header in the protocol byte) is left alone. */
START_TEST(tx_csum_flag_fills_the_tcp_checksum)
{
    host_open(8, 8);
    static uint8_t buf[3][TEST_MTU], got[WIRE_BUF_LEN];
    size_t len = build_tcp(buf[0], 5); /* 498 payload bytes */
    ck_assert_uint_gt(len, TU_IP_HLEN + TU_TCP_HLEN);
    buf[0][TU_IP_HLEN + 16] ^= 0x5a; /* the host summed nothing */
    ck_assert_uint_ne(tu_tcp_csum(buf[0], len), 0);
    memcpy(buf[1], buf[0], len);
    memcpy(buf[2], buf[0], len);
    buf[2][9] = 17; /* UDP: not the NIC's to fix */
    tu_ip_csum_set(buf[2]);
    struct nic_tx_desc d = data_desc(buf[0], len, NIC_TXF_CSUM, COOKIE_TAG);
    tu_tx_post(&h, &d);
    d = data_desc(buf[1], len, 0, COOKIE_TAG | 1);
    tu_tx_post(&h, &d);
    d = data_desc(buf[2], len, NIC_TXF_CSUM, COOKIE_TAG | 2);
    tu_tx_post(&h, &d);
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    ck_assert_uint_eq(tu_wire_recv(h.wire, got, WIRE_BUF_LEN), len);
    ck_assert_uint_eq(tu_tcp_csum(got, len), 0);
    ck_assert_mem_eq(got + TU_IP_HLEN + TU_TCP_HLEN, buf[1] + TU_IP_HLEN + TU_TCP_HLEN,
                     len - TU_IP_HLEN - TU_TCP_HLEN);
    ck_assert_uint_eq(tu_wire_recv(h.wire, got, WIRE_BUF_LEN), len);
    ck_assert_mem_eq(got, buf[1], len); /* as posted */
    ck_assert_uint_ne(tu_tcp_csum(got, len), 0);
    ck_assert_uint_eq(tu_wire_recv(h.wire, got, WIRE_BUF_LEN), len);
    ck_assert_mem_eq(got, buf[2], len);
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_csum_filled, 1);
    ck_assert_uint_eq(c.tx_packets, 3);
}
END_TEST

/* Post n TX packets (slot buffers, NIC_TXF_SIGNAL if signal), run one engine
   round (it takes at most 64), drain the wire; returns the bytes posted. */
static uint64_t tx_round(uint32_t n, bool signal, uint32_t *id)
{
    static uint8_t slot_buf[TX_RING_MAX][TEST_MTU];
    static uint8_t got[WIRE_BUF_LEN];
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *buf = slot_buf[nic_ring_slot(h.tx_prod, h.q->tx_size)];
        size_t len = build_tcp(buf, 1000 + (*id)++ % 200); /* 1000..1199: long packets */
        struct nic_tx_desc d = data_desc(buf, len, signal ? NIC_TXF_SIGNAL : 0, COOKIE_TAG);
        tu_tx_post(&h, &d);
        bytes += len;
    }
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    while (tu_wire_recv(h.wire, got, WIRE_BUF_LEN) != 0) {
    }
    return bytes;
}

/* Adaptive interrupt moderation (nic_dev_cfg.irq_coalesce_ns): a quiet
   device interrupts for its first completion; once interrupts come often
   and 64 KiB moved since the last, completions wait (counted
   irqs_coalesced) while the host keeps the TX ring fed, until the hold
   time passed or a queue fills (here the TX ring half full); with the TX
   ring empty they interrupt at once (the host waits for them); without
   moderation every round interrupts. An engine round takes at most 64
   descriptors: posting 64 + k leaves k queued. */
START_TEST(irq_moderation_holds_bulk_completions_until_due_or_full)
{
    enum { HOLD_MS = 100, RING = 128, ROUND = 64 };
    g_coalesce_ns = HOLD_MS * 1000u * 1000u;
    host_open(RING, 8);
    static uint8_t rx_bufs[RING_MAX][RX_BUF_LEN];
    for (uint32_t i = 0; i < 8; i++) /* all RX buffers posted: none is short */
        rx_post(rx_bufs[i], RX_BUF_LEN, i);
    tu_rx_publish(&h);
    uint32_t id = 0;
    nic_dev_irq_arm(h.dev);
    tx_round(1, false, &id); /* quiet device: at once */
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.irqs, 1);
    ck_assert_uint_eq(c.irqs_fresh, 1);
    ck_assert_uint_eq(c.irqs_coalesced, 0);
    /* The host is busy (not armed) while 64 KiB and more go out. */
    uint64_t moved = 0;
    while (moved < 70 * 1024)
        moved += tx_round(8, false, &id);
    /* Bulk and recent, but the round emptied the TX ring: at once. */
    nic_dev_irq_arm(h.dev);
    tx_round(2, false, &id);
    c = tu_counters(h.dev);
    ck_assert_uint_eq(c.irqs, 2);
    ck_assert_uint_eq(c.irqs_tx_dry, 1);
    ck_assert_uint_eq(c.irqs_coalesced, 0);
    moved = 0;
    while (moved < 70 * 1024)
        moved += tx_round(8, false, &id);
    /* The host keeps 2 descriptors queued behind each round: held. */
    nic_dev_irq_arm(h.dev);
    tx_round(ROUND + 2, false, &id);
    for (int r = 0; r < 2; r++)
        tx_round(ROUND, false, &id);
    c = tu_counters(h.dev);
    ck_assert_uint_eq(c.irqs, 2);
    ck_assert_uint_eq(c.irqs_coalesced, 3);
    /* The TX ring half full (64 of 128 left after the round): at once. */
    tx_round(RING - 2, false, &id);
    c = tu_counters(h.dev);
    ck_assert_uint_eq(c.irqs, 3);
    ck_assert_uint_eq(c.irqs_queue, 1);
    nic_dev_poll_once(h.dev); /* not armed: the ring drains */
    /* Held again, until HOLD_MS passed. */
    moved = 0;
    while (moved < 70 * 1024)
        moved += tx_round(8, false, &id);
    nic_dev_irq_arm(h.dev);
    tx_round(ROUND + 2, false, &id);
    c = tu_counters(h.dev);
    ck_assert_uint_eq(c.irqs, 3);
    ck_assert_uint_eq(c.irqs_coalesced, 4);
    struct timespec t = {.tv_nsec = (HOLD_MS + 20) * 1000 * 1000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
    tx_round(ROUND, false, &id); /* still 2 queued, but the held completions are due */
    c = tu_counters(h.dev);
    ck_assert_uint_eq(c.irqs, 4);
    /* every interrupt counted under one reason */
    ck_assert_uint_eq(c.irqs_due, 1);
    ck_assert_uint_eq(c.irqs_fresh + c.irqs_tx_dry + c.irqs_queue + c.irqs_due, 4);
    ck_assert_uint_eq(c.irqs_unmoderated, 0);
    tu_drv_close(&h);

    /* Without moderation every round with completions interrupts. */
    g_coalesce_ns = 0;
    host_open(8, 8);
    for (uint32_t i = 0; i < 8; i++)
        rx_post(rx_bufs[i], RX_BUF_LEN, i);
    tu_rx_publish(&h);
    moved = 0;
    for (int r = 0; r < 12; r++) {
        nic_dev_irq_arm(h.dev);
        moved += tx_round(8, false, &id);
    }
    ck_assert_uint_gt(moved, 70 * 1024);
    c = tu_counters(h.dev);
    ck_assert_uint_eq(c.irqs, 12);
    ck_assert_uint_eq(c.irqs_unmoderated, 12);
    ck_assert_uint_eq(c.irqs_coalesced, 0);
}
END_TEST

/* One RX packet from the wire, one engine round; the host takes its
   completion and posts the buffer again. Returns the packet's bytes. */
static uint64_t rx_round(uint8_t (*bufs)[RX_BUF_LEN], uint32_t *id)
{
    static uint8_t pkt[TEST_MTU];
    size_t len = build_tcp(pkt, 1000 + (*id)++ % 200);
    tu_wire_send(h.wire, pkt, len);
    nic_dev_poll_once(h.dev);
    struct nic_cqe e;
    while (tu_cq_take(&h, true, &e))
        rx_post(bufs[e.cookie % RING_MAX], RX_BUF_LEN, e.cookie);
    tu_cq_publish(&h, true);
    tu_rx_publish(&h);
    return len;
}

/* A receiving host (an upload: the TX ring empty, nothing sent since the
   last interrupt) is not waiting for ACKs: its bulk RX completions are held
   as a sender's are while it keeps the TX ring fed. */
START_TEST(irq_moderation_holds_receive_bulk_with_tx_ring_empty)
{
    g_coalesce_ns = 100u * 1000u * 1000u;
    host_open(8, 8);
    static uint8_t bufs[RING_MAX][RX_BUF_LEN];
    for (uint32_t i = 0; i < 8; i++)
        rx_post(bufs[i], RX_BUF_LEN, i);
    tu_rx_publish(&h);
    uint32_t id = 0;
    nic_dev_irq_arm(h.dev);
    rx_round(bufs, &id); /* quiet device: at once */
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.irqs, 1);
    uint64_t moved = 0;
    while (moved < 70 * 1024) /* the host busy, not armed */
        moved += rx_round(bufs, &id);
    nic_dev_irq_arm(h.dev);
    for (int r = 0; r < 3; r++)
        rx_round(bufs, &id);
    c = tu_counters(h.dev);
    ck_assert_uint_eq(c.irqs, 1);
    ck_assert_uint_eq(c.irqs_coalesced, 3);
    ck_assert_uint_eq(c.rx_no_buffer, 0);
}
END_TEST

/* ---- TSO: a segment longer than the MTU, cut by the NIC ---- */

#define TSO_MSS 1460u

/* One TCP segment of plen payload bytes (byte i = i * 13 + 5), FIN|PSH|ACK. */
static size_t build_tso_segment(uint8_t *p, uint8_t *payload, size_t plen)
{
    for (size_t i = 0; i < plen; i++)
        payload[i] = (uint8_t)(i * 13u + 5u);
    struct tu_tcp seg = {.saddr = TU_HOST_IP,
                         .daddr = TU_PEER_IP,
                         .sport = TU_HOST_PORT,
                         .dport = TU_PEER_PORT,
                         .ip_id = 0xfffe, /* the ids of the cut packets wrap */
                         .seq = 0xfffff000u,
                         .ack = 77,
                         .flags = TU_TCP_FIN | TU_TCP_PSH | TU_TCP_ACK,
                         .payload = payload,
                         .len = plen};
    return tu_build_tcp(p, &seg);
}

START_TEST(tso_cuts_segment_into_wire_packets)
{
    host_open(8, 8);
    static uint8_t pkt[65536], payload[65536], wire[WIRE_BUF_LEN], joined[65536];
    const size_t plen = 10 * TSO_MSS + 333; /* 11 packets, the last one short */
    size_t len = build_tso_segment(pkt, payload, plen);
    struct nic_tx_desc d = data_desc(pkt, len, NIC_TXF_SIGNAL, COOKIE_TAG | 1);
    d.mss = TSO_MSS;
    tu_tx_post(&h, &d);
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    struct nic_cqe e;
    ck_assert(tu_cq_take(&h, false, &e));
    ck_assert_uint_eq(e.status, NIC_TX_OK);
    size_t got = 0;
    unsigned n = 0;
    size_t wl;
    while ((wl = tu_wire_recv(h.wire, wire, sizeof(wire))) > 0) {
        size_t want = n < 10 ? TSO_MSS : 333;
        ck_assert_uint_le(wl, TEST_MTU);
        ck_assert_uint_eq(wl, TU_IP_HLEN + TU_TCP_HLEN + want);
        ck_assert_uint_eq(tu_get16(wire + 2), wl);                     /* total length */
        ck_assert_uint_eq(tu_get16(wire + 4), (uint16_t)(0xfffe + n)); /* IP id */
        ck_assert_uint_eq(tu_ip_csum(wire), 0);
        ck_assert_uint_eq(tu_tcp_csum(wire, wl), 0);
        const uint8_t *tcp = wire + TU_IP_HLEN;
        ck_assert_uint_eq(tu_get32(tcp + 4), 0xfffff000u + (uint32_t)(n * TSO_MSS)); /* wraps */
        ck_assert_uint_eq(tu_get32(tcp + 8), 77);
        uint8_t want_flags = TU_TCP_ACK | (n == 10 ? TU_TCP_FIN | TU_TCP_PSH : 0);
        ck_assert_uint_eq(tcp[13], want_flags);
        memcpy(joined + got, wire + TU_IP_HLEN + TU_TCP_HLEN, want);
        got += want;
        n++;
    }
    ck_assert_uint_eq(n, 11);
    ck_assert_uint_eq(got, plen);
    ck_assert(memcmp(joined, payload, plen) == 0);
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_tso_segments, 1);
    ck_assert_uint_eq(c.tx_tso_packets, 11);
    ck_assert_uint_eq(c.tx_packets, 11);
    ck_assert_uint_eq(c.tx_bad_desc, 0);
}
END_TEST

/* Longer than the MTU without an MSS, with an MSS the headers do not fit,
   or not TCP: refused and counted, nothing on the wire. A segment that fits
   the MTU is sent as it is even with an MSS. */
START_TEST(tso_refuses_what_it_cannot_cut)
{
    host_open(8, 8);
    static uint8_t pkt[65536], payload[65536], other[65536];
    size_t len = build_tso_segment(pkt, payload, 3000);
    memcpy(other, pkt, len);
    other[9] = 17; /* UDP */
    tu_ip_csum_set(other);
    struct nic_tx_desc d[3] = {data_desc(pkt, len, NIC_TXF_SIGNAL, 1),
                               data_desc(pkt, len, NIC_TXF_SIGNAL, 2),
                               data_desc(other, len, NIC_TXF_SIGNAL, 3)};
    d[1].mss = TEST_MTU - TU_IP_HLEN - TU_TCP_HLEN + 1;
    d[2].mss = TSO_MSS;
    for (int i = 0; i < 3; i++)
        tu_tx_post(&h, &d[i]);
    static uint8_t small[TEST_MTU];
    size_t slen = build_tcp(small, 3);
    struct nic_tx_desc ok = data_desc(small, slen, 0, 4);
    ok.mss = TSO_MSS;
    tu_tx_post(&h, &ok);
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    for (uint64_t k = 1; k <= 3; k++) {
        struct nic_cqe e;
        ck_assert(tu_cq_take(&h, false, &e));
        ck_assert_uint_eq(e.cookie, k);
        ck_assert_uint_eq(e.status, NIC_TX_ERR_BAD_DESC);
    }
    static uint8_t wire[WIRE_BUF_LEN];
    ck_assert_uint_eq(tu_wire_recv(h.wire, wire, sizeof(wire)), slen);
    ck_assert(memcmp(wire, small, slen) == 0);
    assert_wire_empty();
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_bad_desc, 3);
    ck_assert_uint_eq(c.tx_tso_segments, 0);
    ck_assert_uint_eq(c.tx_packets, 1);
}
END_TEST

/* ---- GSO: the wire peer speaks virtio_net_hdr + super-packets ---- */

#define VNET_HLEN sizeof(struct virtio_net_hdr)

/* Posts one TSO segment of plen payload bytes (MSS TSO_MSS), runs the NIC
   once and reads what reached the wire into `wire`: its length. */
static size_t send_tso_read_wire(uint8_t *payload, size_t plen, uint8_t *wire, size_t wire_cap)
{
    static uint8_t pkt[65536];
    size_t len = build_tso_segment(pkt, payload, plen);
    struct nic_tx_desc d = data_desc(pkt, len, 0, 1);
    d.mss = TSO_MSS;
    tu_tx_post(&h, &d);
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    return tu_wire_recv(h.wire, wire, wire_cap);
}

/* A TSO segment cut into 11 wire packets leaves as ONE super-packet write:
   GSO TCPv4 with the wire MSS, the whole payload, the headers of the first
   packet with PSH/FIN of the last, the TCP checksum left to the kernel. */
START_TEST(gso_merges_in_order_run_into_one_write)
{
    g_gso = true;
    host_open(8, 8);
    static uint8_t payload[65536], wire[WIRE_BUF_LEN];
    const size_t plen = 10 * TSO_MSS + 333;
    size_t wl = send_tso_read_wire(payload, plen, wire, sizeof(wire));
    ck_assert_uint_eq(wl, VNET_HLEN + TU_IP_HLEN + TU_TCP_HLEN + plen);
    struct virtio_net_hdr vh;
    memcpy(&vh, wire, sizeof(vh));
    ck_assert_uint_eq(vh.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
    ck_assert_uint_eq(vh.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
    ck_assert_uint_eq(vh.gso_size, TSO_MSS);
    ck_assert_uint_eq(vh.hdr_len, TU_IP_HLEN + TU_TCP_HLEN);
    ck_assert_uint_eq(vh.csum_start, TU_IP_HLEN);
    ck_assert_uint_eq(vh.csum_offset, 16);
    uint8_t *ip = wire + VNET_HLEN;
    ck_assert_uint_eq(tu_get16(ip + 2), TU_IP_HLEN + TU_TCP_HLEN + plen);
    ck_assert_uint_eq(tu_ip_csum(ip), 0);
    ck_assert_uint_eq(tu_get32(ip + TU_IP_HLEN + 4), 0xfffff000u);
    ck_assert_uint_eq(ip[TU_IP_HLEN + 13], TU_TCP_ACK | TU_TCP_PSH | TU_TCP_FIN);
    ck_assert(memcmp(ip + TU_IP_HLEN + TU_TCP_HLEN, payload, plen) == 0);
    /* NEEDS_CSUM: the field holds the pseudo-header sum, the kernel adds the
       rest; finishing it as the kernel does gives the right checksum. */
    size_t tcp_len = TU_TCP_HLEN + plen;
    uint8_t ph[12];
    memcpy(ph, ip + 12, 8);
    ph[8] = 0;
    ph[9] = 6;
    ph[10] = (uint8_t)(tcp_len >> 8);
    ph[11] = (uint8_t)tcp_len;
    ck_assert_uint_eq(tu_get16(ip + TU_TCP_CSUM_OFF),
                      (uint16_t)~tu_csum_fold(tu_csum_add(0, ph, sizeof(ph))));
    uint16_t finished = tu_csum_fold(tu_csum_add(0, ip + TU_IP_HLEN, tcp_len));
    ip[TU_TCP_CSUM_OFF] = (uint8_t)(finished >> 8);
    ip[TU_TCP_CSUM_OFF + 1] = (uint8_t)finished;
    ck_assert_uint_eq(tu_tcp_csum(ip, TU_IP_HLEN + tcp_len), 0);
    assert_wire_empty();
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tun_gso_writes, 1);
    ck_assert_uint_eq(c.tun_gso_write_packets, 11);
    ck_assert_uint_eq(c.tx_packets, 11);
    ck_assert_uint_eq(c.tx_bytes, 11 * (TU_IP_HLEN + TU_TCP_HLEN) + plen);
    ck_assert_uint_eq(c.tx_tso_segments, 1);
    ck_assert_uint_eq(c.tx_tso_packets, 11);
    /* Nothing looks at the wire packets (no fault stage, no pcap): the
       segment went out whole, never cut; being small enough for a next
       segment of its flow to join it, it was staged (copied once). */
    ck_assert_uint_eq(c.tx_tso_direct, 1);
    ck_assert_uint_eq(c.tun_tso_merged, 0);
    ck_assert_uint_eq(c.tx_bytes_copied, TU_IP_HLEN + TU_TCP_HLEN + plen);
}
END_TEST

/* A flow's TSO segments that follow each other on the ring leave as ONE
   super-packet (the PSH of the first dropped, the last's kept); another
   flow starts a new write; a large segment goes out directly with only its
   headers copied. */
START_TEST(gso_merges_consecutive_tso_segments_of_a_flow)
{
    g_gso = true;
    host_open(8, 8);
    static uint8_t pkt[4][65536], payload[4][65536], wire[WIRE_BUF_LEN];
    const size_t plen = 8 * TSO_MSS; /* whole packets: a next segment may join */
    uint32_t seq = 1000;
    size_t len[4];
    for (int i = 0; i < 4; i++) {
        for (size_t k = 0; k < plen; k++)
            payload[i][k] = (uint8_t)(k * 7u + (unsigned)i);
        struct tu_tcp seg = {.saddr = TU_HOST_IP,
                             .daddr = TU_PEER_IP,
                             .sport = TU_HOST_PORT,
                             .dport = TU_PEER_PORT,
                             .ip_id = (uint16_t)(100 + i),
                             .seq = seq,
                             .ack = 77,
                             .flags = TU_TCP_PSH | TU_TCP_ACK,
                             .payload = payload[i],
                             .len = plen};
        if (i == 2)
            seg.sport = TU_HOST_PORT + 1; /* another flow: a new write */
        seq = seg.seq + (uint32_t)plen;
        len[i] = tu_build_tcp(pkt[i], &seg);
    }
    for (int i = 0; i < 3; i++) {
        struct nic_tx_desc d = data_desc(pkt[i], len[i], 0, (uint64_t)i + 1);
        d.mss = TSO_MSS;
        tu_tx_post(&h, &d);
    }
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    /* Write 1: segments 0 and 1, one super-packet. */
    size_t wl = tu_wire_recv(h.wire, wire, sizeof(wire));
    ck_assert_uint_eq(wl, VNET_HLEN + TU_IP_HLEN + TU_TCP_HLEN + 2 * plen);
    struct virtio_net_hdr vh;
    memcpy(&vh, wire, sizeof(vh));
    ck_assert_uint_eq(vh.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
    ck_assert_uint_eq(vh.gso_size, TSO_MSS);
    uint8_t *ip = wire + VNET_HLEN;
    ck_assert_uint_eq(tu_get16(ip + 2), TU_IP_HLEN + TU_TCP_HLEN + 2 * plen);
    ck_assert_uint_eq(tu_ip_csum(ip), 0);
    ck_assert_uint_eq(tu_get32(ip + TU_IP_HLEN + 4), 1000);
    ck_assert_uint_eq(ip[TU_IP_HLEN + 13], TU_TCP_ACK | TU_TCP_PSH);
    ck_assert(memcmp(ip + TU_IP_HLEN + TU_TCP_HLEN, payload[0], plen) == 0);
    ck_assert(memcmp(ip + TU_IP_HLEN + TU_TCP_HLEN + plen, payload[1], plen) == 0);
    /* Write 2: segment 2 alone (another flow). */
    wl = tu_wire_recv(h.wire, wire, sizeof(wire));
    ck_assert_uint_eq(wl, VNET_HLEN + TU_IP_HLEN + TU_TCP_HLEN + plen);
    ck_assert_uint_eq(tu_get16(wire + VNET_HLEN + TU_IP_HLEN), TU_HOST_PORT + 1);
    assert_wire_empty();
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_tso_direct, 3);
    ck_assert_uint_eq(c.tun_tso_merged, 1);
    ck_assert_uint_eq(c.tun_gso_writes, 2);
    ck_assert_uint_eq(c.tun_gso_write_packets, 24);
    ck_assert_uint_eq(c.tx_packets, 24);
    ck_assert_uint_eq(c.tx_bytes, 24 * (TU_IP_HLEN + TU_TCP_HLEN) + 3 * plen);
    uint64_t copied = c.tx_bytes_copied;

    /* A segment too large for another to join goes out directly: only its
       headers are copied. */
    const size_t big = 30 * TSO_MSS;
    static uint8_t bigpay[65536], bigpkt[65536];
    struct tu_tcp seg = {.saddr = TU_HOST_IP,
                         .daddr = TU_PEER_IP,
                         .sport = TU_HOST_PORT,
                         .dport = TU_PEER_PORT,
                         .seq = 500000,
                         .ack = 77,
                         .flags = TU_TCP_ACK,
                         .payload = bigpay,
                         .len = big};
    size_t bl = tu_build_tcp(bigpkt, &seg);
    struct nic_tx_desc d = data_desc(bigpkt, bl, 0, 9);
    d.mss = TSO_MSS;
    tu_tx_post(&h, &d);
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    wl = tu_wire_recv(h.wire, wire, sizeof(wire));
    ck_assert_uint_eq(wl, VNET_HLEN + TU_IP_HLEN + TU_TCP_HLEN + big);
    assert_wire_empty();
    c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tx_bytes_copied - copied, TU_IP_HLEN + TU_TCP_HLEN);
    ck_assert_uint_eq(c.tun_tso_merged, 1);
}
END_TEST

/* With a pcap tap the wire packets are seen one by one: the segment is cut
   (the capture gets 11 packets) and merged again into the same one write. */
START_TEST(gso_tso_segment_cut_when_the_wire_is_captured)
{
    char pcap[] = "/tmp/anic-test-ring-XXXXXX";
    int fd = mkstemp(pcap);
    ck_assert_int_ge(fd, 0);
    close(fd);
    g_gso = true;
    g_pcap = pcap;
    host_open(8, 8);
    static uint8_t payload[65536], wire[WIRE_BUF_LEN];
    const size_t plen = 10 * TSO_MSS + 333;
    size_t wl = send_tso_read_wire(payload, plen, wire, sizeof(wire));
    ck_assert_uint_eq(wl, VNET_HLEN + TU_IP_HLEN + TU_TCP_HLEN + plen);
    ck_assert(memcmp(wire + VNET_HLEN + TU_IP_HLEN + TU_TCP_HLEN, payload, plen) == 0);
    assert_wire_empty();
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tun_gso_writes, 1);
    ck_assert_uint_eq(c.tx_tso_packets, 11);
    ck_assert_uint_eq(c.tx_tso_direct, 0);
    /* cut (headers + payload of every packet), then merged (the first whole,
       the payload of the rest) */
    ck_assert_uint_eq(c.tx_bytes_copied,
                      (11 * (TU_IP_HLEN + TU_TCP_HLEN) + plen) + (TU_IP_HLEN + TU_TCP_HLEN + plen));
    tu_drv_close(&h);
    struct stat st;
    ck_assert_int_eq(stat(pcap, &st), 0);
    /* pcap file header 24 B, then 16 B + the packet per wire packet */
    ck_assert_uint_eq((uint64_t)st.st_size, 24 + 11 * 16 + 11 * (TU_IP_HLEN + TU_TCP_HLEN) + plen);
    unlink(pcap);
}
END_TEST

/* A packet with a bad TCP checksum (a corrupted wire packet) is never merged:
   the run before it is written, then it alone without GSO, as it was. */
START_TEST(gso_never_merges_a_bad_checksum)
{
    g_gso = true;
    host_open(8, 8);
    static uint8_t a[TEST_MTU], b[TEST_MTU], c3[TEST_MTU], pay[3][TSO_MSS];
    uint8_t *pk[3] = {a, b, c3};
    size_t len[3];
    for (int i = 0; i < 3; i++) {
        memset(pay[i], 'a' + i, TSO_MSS);
        struct tu_tcp seg = {.saddr = TU_HOST_IP,
                             .daddr = TU_PEER_IP,
                             .sport = TU_HOST_PORT,
                             .dport = TU_PEER_PORT,
                             .ip_id = (uint16_t)(9 + i),
                             .seq = 1000u + (uint32_t)i * TSO_MSS,
                             .ack = 5,
                             .flags = TU_TCP_ACK,
                             .payload = pay[i],
                             .len = TSO_MSS};
        len[i] = tu_build_tcp(pk[i], &seg);
    }
    b[TU_IP_HLEN + TU_TCP_HLEN + 7] ^= 0x10; /* checksum no longer matches */
    for (int i = 0; i < 3; i++) {
        struct nic_tx_desc d = data_desc(pk[i], len[i], 0, (uint64_t)i);
        tu_tx_post(&h, &d);
    }
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    static uint8_t wire[WIRE_BUF_LEN];
    for (int i = 0; i < 3; i++) {
        size_t wl = tu_wire_recv(h.wire, wire, sizeof(wire));
        ck_assert_uint_eq(wl, VNET_HLEN + len[i]);
        struct virtio_net_hdr vh;
        memcpy(&vh, wire, sizeof(vh));
        ck_assert_uint_eq(vh.gso_type, VIRTIO_NET_HDR_GSO_NONE);
        ck_assert_uint_eq(vh.flags, 0);
        ck_assert(memcmp(wire + VNET_HLEN, pk[i], len[i]) == 0);
    }
    assert_wire_empty();
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tun_gso_writes, 0);
    ck_assert_uint_eq(c.tx_packets, 3);
}
END_TEST

/* A super-packet the kernel sends (GSO TCPv4, checksum left to us) reaches
   the host as wire packets of gso_size bytes with verified checksums. */
START_TEST(gso_splits_super_packet_from_kernel)
{
    g_gso = true;
    host_open(8, 8);
    static uint8_t frame[VNET_HLEN + 65536], payload[8000];
    static uint8_t bufs[8][RX_BUF_LEN];
    const size_t plen = 5 * 1000 + 500, gso_size = 1000;
    for (size_t i = 0; i < plen; i++)
        payload[i] = (uint8_t)(i * 7u + 1u);
    struct tu_tcp seg = {.saddr = TU_PEER_IP,
                         .daddr = TU_HOST_IP,
                         .sport = TU_PEER_PORT,
                         .dport = TU_HOST_PORT,
                         .ip_id = 100,
                         .seq = 5000,
                         .ack = 9,
                         .flags = TU_TCP_ACK | TU_TCP_PSH,
                         .payload = payload,
                         .len = plen};
    uint8_t *ip = frame + VNET_HLEN;
    size_t len = tu_build_tcp(ip, &seg);
    /* As the kernel leaves it: the TCP checksum field holds the pseudo-header sum. */
    uint8_t ph[12];
    memcpy(ph, ip + 12, 8);
    ph[8] = 0;
    ph[9] = 6;
    ph[10] = (uint8_t)((len - TU_IP_HLEN) >> 8);
    ph[11] = (uint8_t)(len - TU_IP_HLEN);
    uint16_t ps = (uint16_t)~tu_csum_fold(tu_csum_add(0, ph, sizeof(ph)));
    ip[TU_TCP_CSUM_OFF] = (uint8_t)(ps >> 8);
    ip[TU_TCP_CSUM_OFF + 1] = (uint8_t)ps;
    struct virtio_net_hdr vh = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
                                .hdr_len = TU_IP_HLEN + TU_TCP_HLEN,
                                .gso_size = (uint16_t)gso_size,
                                .csum_start = TU_IP_HLEN,
                                .csum_offset = 16};
    memcpy(frame, &vh, sizeof(vh));
    for (int i = 0; i < 8; i++)
        rx_post(bufs[i], RX_BUF_LEN, (uint64_t)i);
    tu_rx_publish(&h);
    tu_wire_send(h.wire, frame, VNET_HLEN + len);
    nic_dev_poll_once(h.dev);
    size_t got = 0;
    for (int i = 0; i < 6; i++) {
        struct nic_cqe e;
        ck_assert(tu_cq_take(&h, true, &e));
        size_t want = i < 5 ? gso_size : 500;
        ck_assert_uint_eq(e.len, TU_IP_HLEN + TU_TCP_HLEN + want);
        ck_assert(e.flags & NIC_RXF_CSUM_OK);
        const uint8_t *p = bufs[e.cookie];
        ck_assert_uint_eq(tu_get32(p + TU_IP_HLEN + 4), 5000u + (uint32_t)(i * gso_size));
        ck_assert_uint_eq(p[TU_IP_HLEN + 13], TU_TCP_ACK | (i == 5 ? TU_TCP_PSH : 0));
        ck_assert(memcmp(p + TU_IP_HLEN + TU_TCP_HLEN, payload + got, want) == 0);
        got += want;
    }
    struct nic_cqe e;
    ck_assert(!tu_cq_take(&h, true, &e));
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.tun_gso_reads, 1);
    ck_assert_uint_eq(c.tun_gso_read_packets, 6);
    ck_assert_uint_eq(c.rx_wire_packets, 6);
    ck_assert_uint_eq(c.rx_csum_bad, 0);
    ck_assert_uint_eq(c.tun_gso_bad, 0);
}
END_TEST

/* ---- LRO: in-order packets of a flow merged into one host buffer ---- */

#define LRO_BUF 65472u

static size_t lro_pkt(uint8_t *p, uint32_t seq, uint8_t flags, uint16_t window, size_t plen)
{
    uint8_t payload[TSO_MSS];
    for (size_t i = 0; i < plen; i++)
        payload[i] = (uint8_t)((seq + i) * 3u);
    struct tu_tcp seg = {.saddr = TU_PEER_IP,
                         .daddr = TU_HOST_IP,
                         .sport = TU_PEER_PORT,
                         .dport = TU_HOST_PORT,
                         .ip_id = (uint16_t)seq,
                         .seq = seq,
                         .ack = 3,
                         .flags = flags,
                         .payload = payload,
                         .len = plen};
    size_t len = tu_build_tcp(p, &seg);
    p[TU_IP_HLEN + 14] = (uint8_t)(window >> 8);
    p[TU_IP_HLEN + 15] = (uint8_t)window;
    tu_tcp_csum_set(p, len);
    return len;
}

/* Post the 8 RX buffers of an 8-slot ring, LRO_BUF bytes each (cookie =
   index). */
static void lro_post_bufs(uint8_t (*bufs)[LRO_BUF])
{
    for (int i = 0; i < 8; i++)
        rx_post(bufs[i], LRO_BUF, (uint64_t)i);
    tu_rx_publish(&h);
}

/* One engine round; its first completion must be four TSO_MSS packets
   merged into one, verified, with a right IPv4 header. Returns its buffer. */
static const uint8_t *take_merged4(uint8_t (*bufs)[LRO_BUF], struct nic_cqe *e)
{
    nic_dev_poll_once(h.dev);
    ck_assert(tu_cq_take(&h, true, e));
    ck_assert_uint_eq(e->len, TU_IP_HLEN + TU_TCP_HLEN + 4 * TSO_MSS);
    ck_assert(e->flags & NIC_RXF_CSUM_OK);
    const uint8_t *m = bufs[e->cookie];
    ck_assert_uint_eq(tu_get16(m + 2), e->len);
    ck_assert_uint_eq(tu_ip_csum(m), 0);
    return m;
}

/* Four in-order packets merge (the last with PSH ends the merge); then a gap,
   a packet with another window, and a corrupted one each stay alone. */
START_TEST(lro_merges_in_order_and_stops_at_gap_flags_and_bad_csum)
{
    g_lro = true;
    host_open(8, 8);
    static uint8_t bufs[8][LRO_BUF], pkt[TEST_MTU];
    lro_post_bufs(bufs);
    uint32_t seq = 1000;
    for (int i = 0; i < 4; i++, seq += TSO_MSS) /* 0..3: merge, PSH on 3 */
        tu_wire_send(h.wire, pkt,
                     lro_pkt(pkt, seq, TU_TCP_ACK | (i == 3 ? TU_TCP_PSH : 0), 500, TSO_MSS));
    tu_wire_send(h.wire, pkt, lro_pkt(pkt, seq + 10, TU_TCP_ACK, 500, 100));  /* gap */
    tu_wire_send(h.wire, pkt, lro_pkt(pkt, seq + 110, TU_TCP_ACK, 501, 100)); /* window */
    size_t bl = lro_pkt(pkt, seq + 210, TU_TCP_ACK, 501, 100);
    pkt[bl - 1] ^= 1; /* bad checksum: never merged */
    tu_wire_send(h.wire, pkt, bl);
    struct nic_cqe e;
    const uint8_t *m = take_merged4(bufs, &e);
    ck_assert_uint_eq(tu_tcp_csum(m, e.len), 0);
    ck_assert_uint_eq(tu_get32(m + TU_IP_HLEN + 4), 1000);
    ck_assert_uint_eq(m[TU_IP_HLEN + 13], TU_TCP_ACK | TU_TCP_PSH);
    for (size_t i = 0; i < 4 * TSO_MSS; i++)
        ck_assert_uint_eq(m[TU_IP_HLEN + TU_TCP_HLEN + i], (uint8_t)((1000 + i) * 3u));
    uint32_t want_seq[3] = {seq + 10, seq + 110, seq + 210};
    for (int k = 0; k < 3; k++) {
        ck_assert(tu_cq_take(&h, true, &e));
        ck_assert_uint_eq(e.len, TU_IP_HLEN + TU_TCP_HLEN + 100);
        ck_assert_uint_eq(tu_get32(bufs[e.cookie] + TU_IP_HLEN + 4), want_seq[k]);
        ck_assert_uint_eq((e.flags & NIC_RXF_CSUM_OK) != 0, k < 2);
    }
    ck_assert(!tu_cq_take(&h, true, &e));
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.rx_packets, 7);
    ck_assert_uint_eq(c.rx_lro_merged, 3);
    ck_assert_uint_eq(c.rx_lro_packets, 1);
    ck_assert_uint_eq(c.rx_csum_bad, 1);
}
END_TEST

/* A host that trusts NIC_RXF_CSUM_OK (checksum offload) gets a merged
   packet whose IPv4 checksum is right (lwIP checks it) and whose TCP
   checksum field was left as the first packet's: not recomputed. */
START_TEST(lro_leaves_tcp_csum_for_a_trusting_host)
{
    g_lro = true;
    g_csum_trusted = true;
    host_open(8, 8);
    static uint8_t bufs[8][LRO_BUF], pkt[TEST_MTU];
    lro_post_bufs(bufs);
    uint16_t first_csum = 0;
    for (uint32_t i = 0; i < 4; i++) {
        size_t n = lro_pkt(pkt, 1000 + i * TSO_MSS, TU_TCP_ACK, 500, TSO_MSS);
        if (i == 0)
            first_csum = tu_get16(pkt + TU_IP_HLEN + 16);
        tu_wire_send(h.wire, pkt, n);
    }
    struct nic_cqe e;
    const uint8_t *m = take_merged4(bufs, &e);
    ck_assert_uint_eq(tu_get16(m + TU_IP_HLEN + 16), first_csum);
    ck_assert_uint_ne(tu_tcp_csum(m, e.len), 0);
    for (size_t i = 0; i < 4 * TSO_MSS; i++)
        ck_assert_uint_eq(m[TU_IP_HLEN + TU_TCP_HLEN + i], (uint8_t)((1000 + i) * 3u));
    struct nic_counters c = tu_counters(h.dev);
    ck_assert_uint_eq(c.rx_lro_merged, 3);
    ck_assert_uint_eq(c.rx_csum_left, 1);
}
END_TEST

/* With LRO off, the same packets complete one by one. */
START_TEST(lro_off_completes_each_packet)
{
    host_open(8, 8);
    static uint8_t bufs[8][LRO_BUF], pkt[TEST_MTU];
    lro_post_bufs(bufs);
    for (uint32_t i = 0; i < 4; i++)
        tu_wire_send(h.wire, pkt, lro_pkt(pkt, 1000 + i * TSO_MSS, TU_TCP_ACK, 500, TSO_MSS));
    nic_dev_poll_once(h.dev);
    struct nic_cqe e;
    for (int i = 0; i < 4; i++) {
        ck_assert(tu_cq_take(&h, true, &e));
        ck_assert_uint_eq(e.len, TU_IP_HLEN + TU_TCP_HLEN + TSO_MSS);
    }
    ck_assert(!tu_cq_take(&h, true, &e));
    ck_assert_uint_eq(tu_counters(h.dev).rx_lro_merged, 0);
}
END_TEST

static Suite *ring_suite(void)
{
    Suite *s = suite_create("nic_ring");
    TCase *idx = tcase_create("index");
    tcase_add_test(idx, ring_slot_wraps_at_power_of_two);
    tcase_add_test(idx, free_running_indices_near_uint32_max);
    tcase_add_test(idx, cq_phase_alternates_per_lap);
    suite_add_tcase(s, idx);

    TCase *tx = tcase_create("tx");
    tcase_add_checked_fixture(tx, setup, teardown);
    tcase_add_test(tx, tx_ring_wraps_in_order_byte_identical);
    tcase_add_test(tx, tx_signal_completes_with_cookie_and_phase);
    tcase_add_test(tx, tx_unpublished_poisoned_ring_is_ignored);
    tcase_add_test(tx, tx_never_consumes_beyond_prod);
    tcase_add_test(tx, tx_unknown_kind_counted_as_bad_desc);
    tcase_add_test(tx, tx_zero_length_data_counted_as_bad_desc);
    suite_add_tcase(s, tx);

    TCase *rx = tcase_create("rx");
    tcase_add_checked_fixture(rx, setup, teardown);
    tcase_add_test(rx, rx_ring_wraps_reposting_buffers);
    tcase_add_test(rx, rx_bad_checksum_clears_csum_ok_and_counts);
    tcase_add_test(rx, rx_malformed_counted_and_delivered);
    tcase_add_test(rx, rx_without_buffer_drops_and_counts);
    tcase_add_test(rx, rx_pause_waits_for_buffers_and_loses_nothing);
    suite_add_tcase(s, rx);

    TCase *full = tcase_create("full_empty");
    tcase_add_checked_fixture(full, setup, teardown);
    tcase_add_test(full, tx_full_check_prevents_overwrite);
    tcase_add_test(full, rx_full_check_prevents_overwrite);
    tcase_add_test(full, tx_cq_never_overflows_when_driver_consumes);
    tcase_add_test(full, rx_cq_never_overflows_when_driver_consumes);
    tcase_add_test(full, tx_cq_full_stalls_engine_without_loss);
    tcase_add_test(full, rx_cq_full_counts_overflow_never_overwrites);
    suite_add_tcase(s, full);

    TCase *tso = tcase_create("tso");
    tcase_add_checked_fixture(tso, setup, teardown);
    tcase_add_test(tso, tso_cuts_segment_into_wire_packets);
    tcase_add_test(tso, tso_refuses_what_it_cannot_cut);
    tcase_add_test(tso, gso_merges_in_order_run_into_one_write);
    tcase_add_test(tso, gso_merges_consecutive_tso_segments_of_a_flow);
    tcase_add_test(tso, gso_tso_segment_cut_when_the_wire_is_captured);
    tcase_add_test(tso, gso_never_merges_a_bad_checksum);
    tcase_add_test(tso, gso_splits_super_packet_from_kernel);
    tcase_add_test(tso, lro_merges_in_order_and_stops_at_gap_flags_and_bad_csum);
    tcase_add_test(tso, lro_off_completes_each_packet);
    tcase_add_test(tso, lro_leaves_tcp_csum_for_a_trusting_host);
    suite_add_tcase(s, tso);

    TCase *cnt = tcase_create("counters");
    tcase_add_checked_fixture(cnt, setup, teardown);
    tcase_add_test(cnt, counters_match_traffic_exactly);
    tcase_add_test(cnt, idle_engine_sleeps_after_a_short_spin);
    tcase_add_test(cnt, doorbells_write_at_most_once_per_engine_sleep);
    tcase_add_test(cnt, irq_moderation_holds_bulk_completions_until_due_or_full);
    tcase_add_test(cnt, irq_moderation_holds_receive_bulk_with_tx_ring_empty);
    tcase_add_test(cnt, tx_csum_flag_fills_the_tcp_checksum);
    suite_add_tcase(s, cnt);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ring_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
