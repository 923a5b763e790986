/*
 * test_rx_offload.c - Check suite for the autonomous TLS receive offload of
 * the NIC (docs/design.md §5, nic/nic_tls_rx.c), driven through the device's
 * queues exactly as a driver would.
 *
 * The test thread is the driver and the wire peer at once. One end of a
 * SOCK_SEQPACKET socketpair stands in for TUN; the test writes IPv4/TCP
 * segments (peer 10.0.0.2:40000 -> host 10.0.0.1:443, correct checksums)
 * into the other end, runs one engine round (nic_dev_poll_once) per segment
 * and reads the RX completion (phase bit) and the buffer. Control
 * descriptors (context install, resync response, hint) go through the TX
 * ring. The engine thread is never started.
 *
 * The stream: TLS 1.2 AES-128-GCM records sealed with tls_record_seal
 * (record numbers 1, 2, 3, ...; the explicit nonce is the record number),
 * concatenated, cut into segments at seq = seq0 + stream offset.
 *
 * Every delivered packet is checked on its own ("raw" checks):
 *   - CSUM_OK is set iff the checksums we sent verify; a packet without it
 *     is never DECRYPTED, never a resync request and is byte-identical;
 *   - a DECRYPTED packet equals what we sent with the GCM keystream XORed
 *     over its record payload bytes (header, nonce and tag bytes unchanged,
 *     IP/TCP headers unchanged but for the TCP checksum, which verifies);
 *   - any other packet is byte-identical to what we sent;
 *   - a resync request names a seq inside the packet.
 * Then the host side is replayed: the delivered payloads are reassembled
 * by seq and fed in stream order into a tls_rx (decrypted bit per chunk =
 * the packet's DECRYPTED flag), which must deliver exactly the original
 * records or fail with bad_record_mac, never a wrong plaintext. Two
 * reassembly models, both legitimate TCP behaviour:
 *   FIRST_COPY_WINS: a byte comes from the first packet (in arrival order)
 *     that carried it. This is lwIP for duplicates of delivered data and for
 *     held out-of-order data that a later in-order segment overlaps only in
 *     part (tcp_receive trims the incoming segment).
 *   LAST_COPY_WINS: a byte comes from the last packet that carried it (lwIP
 *     when an in-order segment covers a held one entirely).
 * Per-record offload classes (F = full, P = partial, N = none, as counted by
 * tls_rx) are asserted under FIRST_COPY_WINS; both models must be correct.
 *
 * Layouts used below (1448-byte segments unless stated):
 *   STD: plaintext sizes 16384 1000 1 0 3000 16384 16384 700 16384 2000 16384
 *        16384 (records r0..r11 = numbers 1..12; r5 spans segments 14..25,
 *        segment 25 holds r5's end and r6's header, segment 36 r7's header,
 *        segment 37 r8's header, segment 12 the ends of r1, r2, r3).
 *   BIG: n records of 16384 (one header per segment at most).
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

#include "nic_abi.h"
#include "nic_dev.h"
#include "test_util.h"
#include "tls_record.h"

#define TEST_MTU        1500u
#define HDRS            (TU_IP_HLEN + TU_TCP_HLEN)
#define MAX_PAYLOAD     (TEST_MTU - HDRS)
#define TX_RING         64u
#define RX_RING         256u
#define RX_BUF_LEN      2048u
#define DEFAULT_REORDER 262144u
#define MSS             1448u
#define FLOW_ID         1u
#define MAX_RECS        512u
#define MAX_SEGS        4096u
#define MAX_LOG         8192u
#define SEQ0            0x6a09e667u
/* nic_tls_rx.c RX_HEADERLESS_HOLD_BYTES: how much the NIC holds ahead of a
   hole while it does not know the current record's header (reordering). */
#define HEADERLESS_HOLD (6u * 1460u)

static const uint8_t KEY[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
static const uint8_t SALT[4] = {0x5a, 0x17, 0xc0, 0xde};

static const size_t STD_SIZES[] = {16384, 1000, 1,     0,    3000,  16384,
                                   16384, 700,  16384, 2000, 16384, 16384};
#define STD_N (sizeof(STD_SIZES) / sizeof(STD_SIZES[0]))

/* ---- the host driver ---- */

static struct tu_drv h = {.wire = -1};
static struct nic_tls_static_ctx g_tls_ctx; /* the NIC reads it when the descriptor runs */
static uint16_t g_ip_id;

static uint8_t g_rxbuf[RX_RING][RX_BUF_LEN];

/* Post RX buffer buf (cookie buf) and publish it. */
static void rx_post(uint32_t buf)
{
    tu_rx_post(&h, g_rxbuf[buf], RX_BUF_LEN, buf);
    tu_rx_publish(&h);
}

/* tu_cq_take(), telling the NIC at once how far the driver has read. */
static bool cq_take(bool rx, struct nic_cqe *out)
{
    if (!tu_cq_take(&h, rx, out))
        return false;
    tu_cq_publish(&h, rx);
    return true;
}

static void dev_open(uint32_t reorder_bytes)
{
    struct nic_dev_cfg cfg = {.tx_ring_size = TX_RING,
                              .rx_ring_size = RX_RING,
                              .mtu = TEST_MTU,
                              .max_flows = 8,
                              .rx_reorder_bytes = reorder_bytes};
    tu_drv_open(&h, &cfg);
    for (uint32_t i = 0; i < RX_RING; i++)
        rx_post(i);
}

/* One control descriptor, signalled; it must complete with status OK. */
static void ctrl(uint8_t kind, uint8_t flags, uint64_t addr, uint32_t tcp_seq, uint64_t record_sn)
{
    struct nic_tx_desc d;
    memset(&d, 0, sizeof(d));
    d.kind = kind;
    d.flags = flags | NIC_TXF_SIGNAL;
    d.flow_id = FLOW_ID;
    d.addr = addr;
    d.cookie = 0xc7000000u + h.tx_prod;
    d.tcp_seq = tcp_seq;
    d.record_sn = record_sn;
    tu_tx_post(&h, &d);
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    struct nic_cqe e;
    TU_CHECK(cq_take(false, &e));
    TU_CHECK_EQ(e.kind, NIC_CQE_TX_DONE);
    TU_CHECK_EQ(e.status, NIC_TX_OK);
    TU_CHECK_EQ(e.desc_kind, kind);
    TU_CHECK_EQ(e.cookie, 0xc7000000u + h.tx_prod - 1);
    TU_CHECK(!cq_take(false, &e));
    TU_CHECK(!cq_take(true, &e)); /* no packet was pending */
}

/* With NIC_CTXF_RX_WND in ctx_flags, the host announced a window up to
   wnd_edge (scale wnd_scale). */
static void install_rx_ctx_wnd(uint8_t ctx_flags, uint32_t start_seq, uint32_t wnd_edge,
                               uint8_t wnd_scale)
{
    memset(&g_tls_ctx, 0, sizeof(g_tls_ctx));
    g_tls_ctx.cipher = NIC_CIPHER_AES_128_GCM;
    g_tls_ctx.direction = NIC_CTX_RX;
    g_tls_ctx.flags = ctx_flags;
    memcpy(g_tls_ctx.salt, SALT, 4);
    memcpy(g_tls_ctx.key, KEY, 16);
    /* peer -> host, as in the packets we inject (network byte order) */
    g_tls_ctx.saddr = htonl(TU_PEER_IP);
    g_tls_ctx.daddr = htonl(TU_HOST_IP);
    g_tls_ctx.sport = htons(TU_PEER_PORT);
    g_tls_ctx.dport = htons(TU_HOST_PORT);
    g_tls_ctx.start_tcp_sn = start_seq;
    g_tls_ctx.record_sn = 1;
    g_tls_ctx.rx_wnd_right_edge = wnd_edge;
    g_tls_ctx.rx_wnd_scale = wnd_scale;
    ctrl(NIC_TX_STATIC_CTX, 0, (uint64_t)(uintptr_t)&g_tls_ctx, 0, 0);
    TU_CHECK_EQ(tu_counters(h.dev).rx_tls_ctx, 1);
}

static void install_rx_ctx(uint8_t ctx_flags, uint32_t start_seq)
{
    install_rx_ctx_wnd(ctx_flags, start_seq, 0, 0);
}

static void resync_resp(uint32_t seq, bool ok, uint64_t record_sn)
{
    ctrl(NIC_RX_RESYNC_RESP, ok ? NIC_TXF_RESYNC_OK : 0, 0, seq, record_sn);
}

static void rx_hint(uint32_t seq, uint64_t record_sn)
{
    ctrl(NIC_RX_PROGRESS, 0, 0, seq, record_sn);
}

/* ---- the TLS stream ---- */

static struct {
    uint32_t seq0;
    size_t nrec, len;
    size_t start[MAX_RECS + 1]; /* record r spans [start[r], start[r + 1]) */
    size_t pt_len[MAX_RECS];
    size_t pt_off[MAX_RECS]; /* into pt */
    uint8_t type[MAX_RECS];
    uint8_t *pt;        /* all plaintexts */
    uint8_t *ct;        /* the wire bytes */
    uint8_t *pv;        /* the decrypted view: ct with every payload in plaintext */
    struct tls_aead *a; /* the peer's write key = the host's read key */
} S;

static uint8_t pt_byte(size_t r, size_t i)
{
    uint64_t z = (uint64_t)r * 0x9e3779b97f4a7c15ull + i * 0xbf58476d1ce4e5b9ull;
    z ^= z >> 29;
    z *= 0x94d049bb133111ebull;
    return (uint8_t)(z >> 32);
}

static void seal_record(size_t r)
{
    size_t off = S.start[r];
    size_t n = tls_record_seal(S.a, r + 1, S.type[r], S.pt + S.pt_off[r], S.pt_len[r], S.ct + off);
    TU_CHECK_EQ(n, S.start[r + 1] - off);
    memcpy(S.pv + off, S.ct + off, n);
    memcpy(S.pv + off + TLS_PAYLOAD_OFFSET, S.pt + S.pt_off[r], S.pt_len[r]);
}

static void stream_build(const size_t *sizes, size_t n, uint32_t seq0)
{
    static const uint8_t types[] = {TLS_CT_APPDATA, TLS_CT_APPDATA, TLS_CT_HANDSHAKE,
                                    TLS_CT_APPDATA, TLS_CT_ALERT};
    TU_CHECK(n <= MAX_RECS);
    memset(&S, 0, sizeof(S));
    S.seq0 = seq0;
    S.nrec = n;
    size_t total_pt = 0;
    for (size_t r = 0; r < n; r++) {
        TU_CHECK(sizes[r] <= TLS_MAX_PLAINTEXT);
        S.start[r + 1] = S.start[r] + sizes[r] + TLS_RECORD_OVERHEAD;
        S.pt_len[r] = sizes[r];
        S.pt_off[r] = total_pt;
        S.type[r] = types[r % sizeof(types)];
        total_pt += sizes[r];
    }
    S.len = S.start[n];
    S.pt = malloc(total_pt + 1);
    S.ct = malloc(S.len);
    S.pv = malloc(S.len);
    S.a = tls_aead_new(KEY, sizeof(KEY), SALT);
    TU_CHECK(S.pt && S.ct && S.pv && S.a);
    for (size_t r = 0; r < n; r++) {
        for (size_t i = 0; i < sizes[r]; i++)
            S.pt[S.pt_off[r] + i] = pt_byte(r, i);
        seal_record(r);
    }
}

static size_t rec_of(size_t off)
{
    size_t r = 0;
    while (S.start[r + 1] <= off)
        r++;
    return r;
}

/* Make the ciphertext at stream offset off read bytes[0..n) by choosing the
   plaintext there (pt = wanted ct ^ keystream), then reseal the record. */
static void stream_force_ct(size_t off, const uint8_t *bytes, size_t n)
{
    size_t r = rec_of(off);
    size_t po = off - S.start[r] - TLS_PAYLOAD_OFFSET;
    TU_CHECK(off >= S.start[r] + TLS_PAYLOAD_OFFSET && po + n <= S.pt_len[r]);
    uint8_t ks[64] = {0};
    TU_CHECK(n <= sizeof(ks));
    tls_record_xor_keystream(S.a, S.ct + S.start[r] + TLS_HEADER_LEN, po, ks, n);
    for (size_t i = 0; i < n; i++)
        S.pt[S.pt_off[r] + po + i] = bytes[i] ^ ks[i];
    seal_record(r);
    TU_CHECK(memcmp(S.ct + off, bytes, n) == 0);
}

static void stream_free(void)
{
    free(S.pt);
    free(S.ct);
    free(S.pv);
    tls_aead_free(S.a);
    memset(&S, 0, sizeof(S));
}

static uint32_t seq_at(size_t off)
{
    return S.seq0 + (uint32_t)off;
}

/* ---- segments ---- */

struct seg {
    size_t off, len;
};
static struct seg G[MAX_SEGS];
static size_t NG;
static uint16_t g_seg_flags[MAX_SEGS]; /* flags of the first delivery of each segment */
static bool g_seg_sent[MAX_SEGS];

/* Cut the stream into segments of at most mss bytes; a segment also ends at
   every forced cut point. */
static void cut(size_t mss, const size_t *forced, size_t nforced)
{
    NG = 0;
    for (size_t pos = 0; pos < S.len;) {
        size_t end = pos + mss < S.len ? pos + mss : S.len;
        for (size_t i = 0; i < nforced; i++)
            if (forced[i] > pos && forced[i] < end)
                end = forced[i];
        TU_CHECK(NG < MAX_SEGS);
        G[NG++] = (struct seg){pos, end - pos};
        pos = end;
    }
}

static size_t seg_at(size_t off)
{
    for (size_t i = 0; i < NG; i++)
        if (off >= G[i].off && off < G[i].off + G[i].len)
            return i;
    ck_abort_msg("no segment holds offset %zu [%s]", off, tu_ctx);
    return 0;
}

static size_t seg_end(size_t i)
{
    return G[i].off + G[i].len;
}

/* ---- packets (RFC 791 / RFC 793), independent RFC 1071 checksum ---- */

static bool csum_valid(const uint8_t *p, size_t tot)
{
    return tu_ip_csum(p) == 0 && tu_tcp_csum(p, tot) == 0;
}

static size_t build_pkt(uint8_t *p, uint32_t seq, const uint8_t *payload, size_t plen)
{
    struct tu_tcp seg = {.saddr = TU_PEER_IP,
                         .daddr = TU_HOST_IP,
                         .sport = TU_PEER_PORT,
                         .dport = TU_HOST_PORT,
                         .ip_id = g_ip_id++,
                         .seq = seq,
                         .ack = 1,
                         .flags = TU_TCP_PSH | TU_TCP_ACK,
                         .payload = payload,
                         .len = plen};
    return tu_build_tcp(p, &seg);
}

/* ---- injecting, and what came back ---- */

struct dpkt {
    size_t off, len;
    uint16_t flags;
    uint32_t resync_seq;
    struct tls_rx_mark mark; /* with NIC_RXF_DECRYPTED: the NIC's view of byte off */
    bool tcp_drops;          /* an injected packet the host's TCP does not accept */
    uint8_t *data;           /* the payload as delivered */
};
static struct dpkt L[MAX_LOG];
static size_t NL;
static struct nic_cqe g_last; /* completion of the last injected packet */
static bool g_forged;         /* the stream on the wire was tampered with by the test */
/* The keystream a DECRYPTED packet must show over each stream byte; NULL =
   ct ^ pv. A test that tampers an explicit nonce sets the NIC's view. */
static uint8_t *g_mask;
static bool g_nic_walked_forgery; /* see inject() */

struct mod {
    size_t flip_at; /* payload offset of a byte to flip (with flip != 0) */
    uint8_t flip;   /* XOR mask */
    bool keep_csum; /* don't fix the TCP checksum after the flip */
    bool bad_csum;  /* break the TCP checksum */
};

/* Send stream bytes [off, off + len) as one segment, run one engine round,
   take its completion and check it on its own. Returns its flags. */
static uint16_t inject(size_t off, size_t len, const struct mod *m)
{
    static uint8_t pkt[RX_BUF_LEN];
    TU_CHECK(len > 0 && len <= MAX_PAYLOAD && off + len <= S.len);
    TU_CHECK(NL < MAX_LOG);
    size_t tot = build_pkt(pkt, seq_at(off), S.ct + off, len);
    if (m && m->flip) {
        TU_CHECK(m->flip_at < len);
        pkt[HDRS + m->flip_at] ^= m->flip;
        if (!m->keep_csum)
            tu_tcp_csum_set(pkt, tot);
    }
    if (m && m->bad_csum)
        pkt[TU_TCP_CSUM_OFF] ^= 0x5a;
    bool valid = csum_valid(pkt, tot);
    tu_wire_send(h.wire, pkt, tot);
    nic_dev_poll_once(h.dev);
    struct nic_cqe e;
    TU_CHECK(cq_take(true, &e));
    struct nic_cqe extra;
    TU_CHECK(!cq_take(true, &extra));
    TU_CHECK(!cq_take(false, &extra));
    TU_CHECK_EQ(e.kind, NIC_CQE_RX_PACKET);
    TU_CHECK_EQ(e.len, tot);
    TU_CHECK(e.cookie < RX_RING);
    const uint8_t *got = g_rxbuf[e.cookie];

    /* raw checks */
    TU_CHECK_EQ(!!(e.flags & NIC_RXF_CSUM_OK), valid);
    TU_CHECK((e.flags & ~(NIC_RXF_CSUM_OK | NIC_RXF_DECRYPTED | NIC_RXF_RESYNC_REQ)) == 0);
    if (valid) {
        TU_CHECK_EQ(e.flow_id, FLOW_ID);
        TU_CHECK(csum_valid(got, tot));
    } else {
        TU_CHECK((e.flags & (NIC_RXF_DECRYPTED | NIC_RXF_RESYNC_REQ)) == 0);
    }
    if (e.flags & NIC_RXF_DECRYPTED) {
        TU_CHECK(memcmp(got, pkt, TU_TCP_CSUM_OFF) == 0);
        TU_CHECK(memcmp(got + TU_TCP_CSUM_OFF + 2, pkt + TU_TCP_CSUM_OFF + 2,
                        HDRS - TU_TCP_CSUM_OFF - 2) == 0);
        /* g_nic_walked_forgery: the NIC walked forged bytes in sequence (a
           fake header or explicit nonce in window), so a later real packet
           can be decrypted with a keystream the forgery chose, mid-record
           and unauthenticated; only the host's checks stand then, and
           host_replay asserts them (docs/design.md §8.1). */
        for (size_t i = 0; !g_nic_walked_forgery && i < len; i++) {
            /* 0 on header, nonce and tag bytes */
            uint8_t ks = g_mask ? g_mask[off + i] : S.ct[off + i] ^ S.pv[off + i];
            if (got[HDRS + i] != (pkt[HDRS + i] ^ ks))
                ck_abort_msg("DECRYPTED packet at offset %zu: byte %zu is %#x, want %#x [%s]", off,
                             i, got[HDRS + i], pkt[HDRS + i] ^ ks, tu_ctx);
        }
    } else {
        TU_CHECK(memcmp(got, pkt, tot) == 0);
    }
    if (e.flags & NIC_RXF_RESYNC_REQ)
        TU_CHECK(e.resync_seq - seq_at(off) < len);
    if ((e.flags & NIC_RXF_DECRYPTED) && !g_forged) {
        /* An honest stream: the NIC's view of the first byte is the truth. */
        size_t r = rec_of(off), ro = off - S.start[r];
        TU_CHECK_EQ(e.view_seq, seq_at(off));
        TU_CHECK_EQ(e.record_sn, r + 1);
        TU_CHECK_EQ(e.view_rec_off, ro);
        TU_CHECK_EQ(e.view_rec_len, ro >= TLS_HEADER_LEN ? S.start[r + 1] - S.start[r] : 0);
    }

    struct dpkt *d = &L[NL++];
    d->off = off;
    d->len = len;
    d->flags = e.flags;
    d->resync_seq = e.resync_seq;
    d->mark = (struct tls_rx_mark){e.record_sn, e.view_rec_off, e.view_rec_len, e.view_walk};
    d->tcp_drops = false;
    d->data = malloc(len);
    TU_CHECK(d->data);
    memcpy(d->data, got + HDRS, len);
    g_last = e;
    rx_post((uint32_t)e.cookie); /* the buffer is the driver's again */
    return e.flags;
}

static uint16_t send_seg_mod(size_t i, const struct mod *m)
{
    TU_CHECK(i < NG);
    uint16_t fl = inject(G[i].off, G[i].len, m);
    if (!g_seg_sent[i] && (fl & NIC_RXF_CSUM_OK)) {
        g_seg_sent[i] = true;
        g_seg_flags[i] = fl;
    }
    return fl;
}

static uint16_t send_seg(size_t i)
{
    return send_seg_mod(i, NULL);
}

static void send_range(size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        send_seg(i);
}

/* Segments [from, to) were delivered (first time) with DECRYPTED == want. */
static void expect_dec_line(size_t from, size_t to, bool want, int line)
{
    for (size_t i = from; i < to; i++) {
        if (!g_seg_sent[i])
            ck_abort_msg("line %d: segment %zu never delivered [%s]", line, i, tu_ctx);
        if (!!(g_seg_flags[i] & NIC_RXF_DECRYPTED) != want)
            ck_abort_msg("line %d: segment %zu [%zu, %zu) flags %#x, want DECRYPTED=%d [%s]", line,
                         i, G[i].off, seg_end(i), g_seg_flags[i], want, tu_ctx);
    }
}
#define expect_dec(from, to, want) expect_dec_line(from, to, want, __LINE__)

/* Send segments from `from` on until a completion carries a resync request;
   the packets before it must be plain (neither decrypted nor a request). */
static size_t send_until_request(size_t from)
{
    for (size_t i = from; i < NG; i++) {
        uint16_t fl = send_seg(i);
        if (fl & NIC_RXF_RESYNC_REQ) {
            TU_CHECK(!(fl & NIC_RXF_DECRYPTED));
            return i;
        }
        if (fl != NIC_RXF_CSUM_OK)
            ck_abort_msg("segment %zu: flags %#x while lost [%s]", i, fl, tu_ctx);
    }
    ck_abort_msg("no resync request [%s]", tu_ctx);
    return 0;
}

/* ---- counters ---- */

/* Expected rx_tls_* counters; a field left out must be 0, ANY: not checked. */
#define ANY UINT64_MAX
struct want {
    uint64_t req_pkt, req_start, req_end, req_skip, res_ok, res_skip, err, lost, jump, bad_record,
        buffered, drained, dup, ahead, csum_bad;
};

static void check_counters(const struct want *w, int line)
{
    struct nic_counters c = tu_counters(h.dev);
    uint64_t dec = 0;
    for (size_t i = 0; i < NL; i++)
        dec += !!(L[i].flags & NIC_RXF_DECRYPTED);
#define CNT(field, want_v)                                                                         \
    do {                                                                                           \
        if ((uint64_t)(want_v) != ANY && c.field != (want_v))                                      \
            ck_abort_msg("line %d: " #field " = %" PRIu64 ", want %" PRIu64 " [%s]", line,         \
                         (uint64_t)c.field, (uint64_t)(want_v), tu_ctx);                           \
    } while (0)
    CNT(rx_tls_decrypted_packets, dec);
    CNT(rx_tls_resync_req_pkt, w->req_pkt);
    CNT(rx_tls_resync_req_start, w->req_start);
    CNT(rx_tls_resync_req_end, w->req_end);
    CNT(rx_tls_resync_req_skip, w->req_skip);
    CNT(rx_tls_resync_res_ok, w->res_ok);
    CNT(rx_tls_resync_res_skip, w->res_skip);
    CNT(rx_tls_err, w->err);
    CNT(rx_tls_lost, w->lost);
    CNT(rx_tls_jump, w->jump);
    CNT(rx_tls_bad_record, w->bad_record);
    CNT(rx_tls_reorder_buffered, w->buffered);
    CNT(rx_tls_reorder_drained, w->drained);
    CNT(rx_tls_reorder_dup, w->dup);
    CNT(rx_tls_ahead_decrypted, w->ahead);
    CNT(rx_csum_bad, w->csum_bad);
    CNT(rx_tls_ctx, 1);
    CNT(rx_packets, NL);
    CNT(rx_no_buffer, 0);
    CNT(rx_cq_overflow, 0);
#undef CNT
}
#define EXPECT(...) check_counters(&(struct want){__VA_ARGS__}, __LINE__)

/* ---- the host: reassemble by seq, feed tls_rx in stream order ---- */

enum model { FIRST_COPY_WINS, LAST_COPY_WINS };

struct host_res {
    int err;
    size_t fed;             /* stream bytes fed (contiguous prefix) */
    size_t records;         /* delivered */
    bool wrong;             /* a delivered record differed from the original */
    uint64_t view_mismatch; /* marked chunks whose NIC view tls_rx did not share */
    char cls[MAX_RECS + 1];
};

struct host_cb {
    struct tls_rx *rx;
    struct tls_rx_stats prev;
    struct host_res *res;
};

static int host_record(void *arg, uint8_t type, const uint8_t *pt, size_t len, const uint8_t *pt2,
                       size_t len2)
{
    struct host_cb *cb = arg;
    size_t r = cb->res->records;
    if (r >= S.nrec || type != S.type[r] || len + len2 != S.pt_len[r] ||
        (len && memcmp(pt, S.pt + S.pt_off[r], len) != 0) ||
        (len2 && memcmp(pt2, S.pt + S.pt_off[r] + len, len2) != 0))
        cb->res->wrong = true;
    struct tls_rx_stats st;
    tls_rx_get_stats(cb->rx, &st);
    char c = '?';
    if (st.records_full_offload != cb->prev.records_full_offload)
        c = 'F';
    else if (st.records_partial_offload != cb->prev.records_partial_offload)
        c = 'P';
    else if (st.records_no_offload != cb->prev.records_no_offload)
        c = 'N';
    cb->prev = st;
    if (r < MAX_RECS)
        cb->res->cls[r] = c;
    cb->res->records++;
    return 0;
}

static struct host_res host_replay(enum model m)
{
    struct host_res res;
    memset(&res, 0, sizeof(res));
    int32_t *owner = malloc(S.len * sizeof(*owner));
    TU_CHECK(owner);
    for (size_t b = 0; b < S.len; b++)
        owner[b] = -1;
    for (size_t i = 0; i < NL; i++) {
        if (!(L[i].flags & NIC_RXF_CSUM_OK) || L[i].tcp_drops)
            continue; /* the host stack drops it too */
        for (size_t b = L[i].off; b < L[i].off + L[i].len; b++)
            if (m == LAST_COPY_WINS || owner[b] < 0)
                owner[b] = (int32_t)i;
    }
    struct host_cb cb;
    memset(&cb, 0, sizeof(cb));
    cb.rx = tls_rx_new(S.a, 1);
    cb.res = &res;
    TU_CHECK(cb.rx);
    size_t pos = 0;
    while (pos < S.len && owner[pos] >= 0) {
        int32_t i = owner[pos];
        size_t end = pos;
        while (end < S.len && owner[end] == i)
            end++;
        const struct dpkt *d = &L[i];
        struct tls_rx_mark mark = tls_rx_mark_skip(d->mark, (uint32_t)(pos - d->off));
        int rc = tls_rx_feed(cb.rx, d->data + (pos - d->off), end - pos,
                             (d->flags & NIC_RXF_DECRYPTED) ? &mark : NULL, host_record, &cb);
        pos = end;
        if (rc != TLS_RX_OK) {
            res.err = rc;
            break;
        }
    }
    res.fed = pos;
    struct tls_rx_stats st;
    tls_rx_get_stats(cb.rx, &st);
    res.view_mismatch = st.view_mismatch;
    tls_rx_free(cb.rx);
    free(owner);
    return res;
}

/* Replay under both models. want_cls: the classes of the records delivered
   under FIRST_COPY_WINS. complete: the whole stream is there (else only a
   prefix up to a hole). */
static void assert_host_line(const char *want_cls, int want_err, bool complete, int line)
{
    for (int m = FIRST_COPY_WINS; m <= LAST_COPY_WINS; m++) {
        const char *mn = m == FIRST_COPY_WINS ? "first-copy-wins" : "last-copy-wins";
        struct host_res r = host_replay((enum model)m);
        if (r.wrong)
            ck_abort_msg("line %d (%s): the host delivered a WRONG plaintext (classes %s) [%s]",
                         line, mn, r.cls, tu_ctx);
        if (r.err != want_err)
            ck_abort_msg("line %d (%s): tls_rx returned %d (%s), want %d (classes %s) [%s]", line,
                         mn, r.err, tls_rx_strerror(r.err), want_err, r.cls, tu_ctx);
        if (want_err == TLS_RX_OK && complete) {
            TU_CHECK_EQ(r.fed, S.len);
            TU_CHECK_EQ(r.records, S.nrec);
        }
        if (!complete)
            TU_CHECK(r.fed < S.len);
        if (m == FIRST_COPY_WINS && strcmp(r.cls, want_cls) != 0)
            ck_abort_msg("line %d: record classes %s, want %s [%s]", line, r.cls, want_cls, tu_ctx);
    }
}
#define assert_host(cls, err)   assert_host_line(cls, err, true, __LINE__)
#define assert_host_prefix(cls) assert_host_line(cls, TLS_RX_OK, false, __LINE__)

/* Whatever copies the host keeps: it delivers the original records or stops
   at a bad MAC, never a wrong plaintext. */
static void assert_host_safe_line(int line)
{
    for (int m = FIRST_COPY_WINS; m <= LAST_COPY_WINS; m++) {
        struct host_res r = host_replay((enum model)m);
        if (r.wrong || (r.err != TLS_RX_OK && r.err != TLS_RX_ERR_BAD_MAC))
            ck_abort_msg("line %d (%s): wrong=%d err=%d (classes %s) [%s]", line,
                         m == FIRST_COPY_WINS ? "first-copy-wins" : "last-copy-wins", r.wrong,
                         r.err, r.cls, tu_ctx);
        if (r.err == TLS_RX_OK) {
            TU_CHECK_EQ(r.fed, S.len);
            TU_CHECK_EQ(r.records, S.nrec);
        }
    }
}
#define assert_host_safe() assert_host_safe_line(__LINE__)

static const char *all_full(size_t n)
{
    static char s[MAX_RECS + 1];
    TU_CHECK(n <= MAX_RECS);
    memset(s, 'F', n);
    s[n] = 0;
    return s;
}

/* ---- one scenario: device + stream + context ---- */

static void open_variant(uint32_t reorder, const size_t *sizes, size_t n, uint32_t seq0, size_t mss,
                         uint8_t ctx_flags)
{
    dev_open(reorder);
    stream_build(sizes, n, seq0);
    cut(mss, NULL, 0);
    install_rx_ctx(ctx_flags, seq0);
}

static void close_variant(void)
{
    tu_drv_close(&h);
    g_ip_id = 0;
    for (size_t i = 0; i < NL; i++)
        free(L[i].data);
    NL = 0;
    NG = 0;
    free(g_mask);
    g_mask = NULL;
    g_nic_walked_forgery = false;
    g_forged = false;
    memset(g_seg_sent, 0, sizeof(g_seg_sent));
    memset(g_seg_flags, 0, sizeof(g_seg_flags));
    if (S.a)
        stream_free();
}

static void setup(void)
{
    tu_ctx[0] = 0;
}

static void teardown(void)
{
    close_variant();
}

static size_t g_big[32];

static const size_t *big_sizes(size_t n)
{
    TU_CHECK(n <= 32);
    for (size_t i = 0; i < n; i++)
        g_big[i] = TLS_MAX_PLAINTEXT;
    return g_big;
}

/* ======================================================================
 * 1. In sequence
 * ====================================================================== */

START_TEST(t01_in_sequence_every_packet_decrypted)
{
    /* The second seq0 makes the TCP sequence space wrap inside record 1. */
    static const uint32_t seq0s[] = {SEQ0, 0xfffff000u};
    for (size_t v = 0; v < 2; v++) {
        TU_CTX("STD in sequence, seq0 %#x", seq0s[v]);
        open_variant(DEFAULT_REORDER, STD_SIZES, STD_N, seq0s[v], MSS, 0);
        send_range(0, NG);
        expect_dec(0, NG, true);
        EXPECT(.err = 0);
        TU_CHECK_EQ(tu_counters(h.dev).rx_tls_decrypted_packets, NG);
        assert_host(all_full(STD_N), TLS_RX_OK);
        close_variant();
    }
    /* Small records: many records per segment, and tiny segments. */
    size_t small[64];
    for (size_t i = 0; i < 64; i++)
        small[i] = (i * 7) % 41;
    static const size_t mss_list[] = {MSS, 1, 5, 7, 13, 29, 100};
    for (size_t v = 0; v < sizeof(mss_list) / sizeof(mss_list[0]); v++) {
        TU_CTX("small records, mss %zu", mss_list[v]);
        open_variant(DEFAULT_REORDER, small, 64, SEQ0 + (uint32_t)v * 977u, mss_list[v], 0);
        send_range(0, NG);
        expect_dec(0, NG, true);
        EXPECT(.err = 0);
        assert_host(all_full(64), TLS_RX_OK);
        close_variant();
    }
}
END_TEST

START_TEST(t01_record_split_at_every_byte)
{
    /* One record per cut position c: segments [start, start + c) and
       [start + c, end), for records of 0, 1, 17 and 100 plaintext bytes:
       every header, nonce, payload and tag byte position is a boundary once. */
    static const size_t pts[] = {0, 1, 17, 100};
    static size_t sizes[MAX_RECS], forced[2 * MAX_RECS];
    size_t n = 0;
    for (size_t p = 0; p < sizeof(pts) / sizeof(pts[0]); p++)
        for (size_t c = 1; c < pts[p] + TLS_RECORD_OVERHEAD; c++)
            sizes[n++] = pts[p];
    TU_CTX("split at every byte, %zu records", n);
    open_variant(DEFAULT_REORDER, sizes, n, SEQ0, MSS, 0);
    size_t nf = 0, r = 0;
    for (size_t p = 0; p < sizeof(pts) / sizeof(pts[0]); p++)
        for (size_t c = 1; c < pts[p] + TLS_RECORD_OVERHEAD; c++, r++) {
            forced[nf++] = S.start[r];
            forced[nf++] = S.start[r] + c;
        }
    cut(MSS, forced, nf);
    TU_CHECK_EQ(NG, 2 * n);
    send_range(0, NG);
    expect_dec(0, NG, true);
    EXPECT(.err = 0);
    assert_host(all_full(n), TLS_RX_OK);
}
END_TEST

/* ======================================================================
 * 2. Loss of a segment that holds no record header
 * ====================================================================== */

/* STD, segment k inside r5 lost. early: retransmitted after k+3 (before
   r5's last packet); else only after the whole stream. */
static void loss_nonheader(uint32_t reorder, bool early)
{
    TU_CTX("non-header loss, reorder %u, %s", reorder, early ? "retransmitted after k+3" : "late");
    open_variant(reorder, STD_SIZES, STD_N, SEQ0, MSS, 0);
    size_t k = seg_at(S.start[5] + 5000), last = seg_at(S.start[6] - 1);
    TU_CHECK(G[k].off >= S.start[5] + TLS_PAYLOAD_OFFSET);
    TU_CHECK(seg_end(last - 1) < S.start[6] - TLS_TAG_LEN);        /* k+1..last-1: payload only */
    TU_CHECK(seg_end(last) > S.start[6] + TLS_PAYLOAD_OFFSET + 1); /* last: r5 end + r6 payload */
    TU_CHECK(last - k >= 5);
    size_t ahead = last - 1 - k;
    send_range(0, k);
    if (early) {
        send_range(k + 1, k + 4);
        uint16_t fl = send_seg(k);
        send_range(k + 4, NG);
        if (reorder) {
            /* The hole filled before r5's end: the held ciphertext went
               through GCM, r5 authenticated, nothing lost. */
            TU_CHECK(fl & NIC_RXF_DECRYPTED);
            expect_dec(0, NG, true);
            EXPECT(.buffered = 3, .ahead = 3, .drained = 3);
            assert_host(all_full(STD_N), TLS_RX_OK);
        } else {
            /* Paper NIC: k+1 is out of sequence; the next header's place is
               known, so it jumps there; the rest of r5 and the retransmitted
               k go up untouched; the packet with r5's end and r6's start is
               only partly new and goes up untouched too. */
            TU_CHECK(!(fl & NIC_RXF_DECRYPTED));
            expect_dec(0, k, true);
            expect_dec(k + 1, last + 1, false);
            expect_dec(last + 1, NG, true);
            EXPECT(.jump = 1);
            assert_host("FFFFFPPFFFFF", TLS_RX_OK);
        }
        return;
    }
    send_range(k + 1, NG);
    expect_dec(0, k, true);
    if (reorder) {
        /* Held and keystream-decrypted while inside r5; r5's last packet
           reaches past r5's end: jump to r6 (r5 can't authenticate). */
        expect_dec(k + 1, last, true);
        expect_dec(last, last + 1, false);
        EXPECT(.buffered = ahead, .ahead = ahead, .jump = 1);
    } else {
        expect_dec(k + 1, last + 1, false);
        EXPECT(.jump = 1);
    }
    expect_dec(last + 1, NG, true);
    /* Never retransmitted: the host has r0..r4 and waits at the hole. */
    assert_host_prefix("FFFFF");
    /* Retransmitted at last: old for the NIC, passed up untouched. */
    TU_CHECK_EQ(send_seg(k), NIC_RXF_CSUM_OK);
    if (reorder)
        EXPECT(.buffered = ahead, .ahead = ahead, .jump = 1);
    else
        EXPECT(.jump = 1);
    assert_host("FFFFFPPFFFFF", TLS_RX_OK);
}

START_TEST(t02_loss_nonheader_reorder0)
{
    loss_nonheader(0, false);
    close_variant();
    loss_nonheader(0, true);
}
END_TEST

START_TEST(t02_loss_nonheader_reorder_default)
{
    loss_nonheader(DEFAULT_REORDER, false);
    close_variant();
    loss_nonheader(DEFAULT_REORDER, true);
}
END_TEST

/* ======================================================================
 * 3. Loss of the segment holding a record header
 * ====================================================================== */

START_TEST(t03_header_loss_search_request_confirm)
{
    TU_CTX("STD, reorder 0, r6 header lost, confirm");
    open_variant(0, STD_SIZES, STD_N, SEQ0, MSS, 0);
    size_t H = seg_at(S.start[6]);
    TU_CHECK(G[H].off < S.start[6] && seg_end(H) > S.start[6] + TLS_PAYLOAD_OFFSET);
    send_range(0, H);
    /* H+1 is past r6's header: jump to r6's start, then lost -> searching. */
    TU_CHECK_EQ(send_seg(H + 1), NIC_RXF_CSUM_OK);
    EXPECT(.jump = 1, .lost = 1, .req_start = 1);
    size_t R = send_until_request(H + 2);
    TU_CHECK_EQ(R, seg_at(S.start[7]));
    TU_CHECK_EQ(g_last.resync_seq, seq_at(S.start[7]));
    TU_CHECK_EQ(g_last.flow_id, FLOW_ID);
    TU_CHECK(seg_end(R) < S.start[8]); /* r8's header is in the next segment */
    EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1);
    /* The host confirms: r7 is record number 8. */
    resync_resp(seq_at(S.start[7]), true, 8);
    EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1, .res_ok = 1, .req_end = 1);
    /* Resumed at the next boundary (r8): R+1 holds r8's start but begins
       before it -> untouched; everything after is decrypted. */
    TU_CHECK(G[R + 1].off < S.start[8] && seg_end(R + 1) > S.start[8]);
    send_range(R + 1, NG);
    expect_dec(R + 1, R + 2, false);
    expect_dec(R + 2, NG, true);
    TU_CHECK_EQ(send_seg(H), NIC_RXF_CSUM_OK); /* the retransmission */
    EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1, .res_ok = 1, .req_end = 1);
    assert_host("FFFFFPNNPFFF", TLS_RX_OK);
}
END_TEST

START_TEST(t03_header_loss_deny_then_confirm)
{
    TU_CTX("STD, reorder 0, r6 header lost, deny then confirm");
    open_variant(0, STD_SIZES, STD_N, SEQ0, MSS, 0);
    size_t H = seg_at(S.start[6]);
    send_range(0, H);
    size_t R = send_until_request(H + 1);
    TU_CHECK_EQ(g_last.resync_seq, seq_at(S.start[7]));
    /* Deny: back to searching. */
    resync_resp(seq_at(S.start[7]), false, 0);
    EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1, .res_skip = 1);
    /* A confirmation for the same seq now is stale. */
    resync_resp(seq_at(S.start[7]), true, 8);
    EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1, .res_skip = 2);
    /* It finds r8's header in the next segment and asks again. */
    size_t R2 = send_until_request(R + 1);
    TU_CHECK_EQ(R2, R + 1);
    TU_CHECK_EQ(g_last.resync_seq, seq_at(S.start[8]));
    resync_resp(seq_at(S.start[8]), true, 9);
    EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 2, .res_skip = 2, .res_ok = 1,
           .req_end = 1);
    /* Resumes at r9 (segment holding r9's start begins before it). */
    size_t N = seg_at(S.start[9]);
    TU_CHECK(G[N].off < S.start[9]);
    send_range(R2 + 1, NG);
    expect_dec(R2 + 1, N + 1, false);
    expect_dec(N + 1, NG, true);
    send_seg(H);
    assert_host("FFFFFPNNNPFF", TLS_RX_OK);
}
END_TEST

START_TEST(t03_header_loss_reorder_buffer_waits_for_retransmission)
{
    TU_CTX("STD, reorder default, r6 header lost, retransmitted after 3");
    open_variant(DEFAULT_REORDER, STD_SIZES, STD_N, SEQ0, MSS, 0);
    size_t H = seg_at(S.start[6]);
    send_range(0, H);
    /* r6's header unknown: held, not decrypted, no search. */
    send_range(H + 1, H + 4);
    EXPECT(.jump = 1, .buffered = 3);
    uint16_t fl = send_seg(H); /* partly old: r6's part walked, held data drained */
    TU_CHECK_EQ(fl, NIC_RXF_CSUM_OK);
    EXPECT(.jump = 1, .buffered = 3, .drained = 3);
    send_range(H + 4, NG);
    expect_dec(0, H, true);
    expect_dec(H, H + 4, false);
    expect_dec(H + 4, NG, true);
    EXPECT(.jump = 1, .buffered = 3, .drained = 3);
    assert_host("FFFFFPPFFFFF", TLS_RX_OK);
}
END_TEST

START_TEST(t03_header_loss_reorder_buffer_short_hold_then_search)
{
    /* With the buffer but r1's header never retransmitted: a hole that hides
       a header is held only as long as reordering takes (HEADERLESS_HOLD),
       then the NIC searches, asks, and resumes after the confirmation. */
    TU_CTX("BIG8, reorder default, r1 header never retransmitted");
    open_variant(DEFAULT_REORDER, big_sizes(8), 8, SEQ0, MSS, 0);
    size_t H = seg_at(S.start[1]);
    size_t held = HEADERLESS_HOLD / MSS;
    size_t first_lost = H + 1 + held;
    TU_CHECK(held >= 3 && seg_end(first_lost) < S.start[2]);
    send_range(0, H);
    send_range(H + 1, first_lost);
    expect_dec(H + 1, first_lost, false);
    EXPECT(.jump = 1, .buffered = held);
    TU_CHECK_EQ(send_seg(first_lost), NIC_RXF_CSUM_OK);
    EXPECT(.jump = 1, .buffered = held, .lost = 1, .req_start = 1);
    size_t R = send_until_request(first_lost + 1);
    TU_CHECK_EQ(R, seg_at(S.start[2]));
    TU_CHECK_EQ(g_last.resync_seq, seq_at(S.start[2]));
    EXPECT(.jump = 1, .buffered = held, .lost = 1, .req_start = 1, .req_pkt = 1);
    resync_resp(seq_at(S.start[2]), true, 3);
    size_t N = seg_at(S.start[3]);
    TU_CHECK(G[N].off < S.start[3]);
    send_range(R + 1, NG);
    expect_dec(R + 1, N + 1, false);
    expect_dec(N + 1, NG, true);
    send_seg(H);
    EXPECT(.jump = 1, .buffered = held, .lost = 1, .req_start = 1, .req_pkt = 1, .res_ok = 1,
           .req_end = 1);
    assert_host("PNNPFFFF", TLS_RX_OK);
}
END_TEST

/* ======================================================================
 * 4. Reordering
 * ====================================================================== */

/* Deliver segment k after k + d (everything else in order). */
static void send_reordered(size_t k, size_t d)
{
    send_range(0, k);
    send_range(k + 1, k + 1 + d);
    send_seg(k);
    send_range(k + 1 + d, NG);
}

START_TEST(t04_reorder_with_buffer)
{
    for (size_t d = 1; d <= 3; d += 2) {
        TU_CTX("STD, reorder buffer, by %zu inside r5", d);
        open_variant(DEFAULT_REORDER, STD_SIZES, STD_N, SEQ0, MSS, 0);
        size_t k = seg_at(S.start[5] + 5000);
        TU_CHECK(seg_end(k + d) < S.start[6] - TLS_TAG_LEN);
        send_reordered(k, d);
        expect_dec(0, NG, true);
        EXPECT(.buffered = d, .ahead = d, .drained = d);
        assert_host(all_full(STD_N), TLS_RX_OK);
        close_variant();
    }
    {
        /* The late packet arrives after r5's last packet: that one can't be
           authenticated in time -> jump; r5 and r6 partial. */
        TU_CTX("STD, reorder buffer, late after the record's last packet");
        open_variant(DEFAULT_REORDER, STD_SIZES, STD_N, SEQ0, MSS, 0);
        size_t last = seg_at(S.start[6] - 1), k = last - 1;
        send_reordered(k, 1);
        expect_dec(0, k, true);
        expect_dec(k, last + 1, false);
        expect_dec(last + 1, NG, true);
        EXPECT(.jump = 1);
        assert_host("FFFFFPPFFFFF", TLS_RX_OK);
        close_variant();
    }
    {
        /* Segment 12 (ends of r1, r2, r3; r4's start) after 13: 13 is past
           r1's end -> jump to r2, held (header unknown); 12 then is partly
           old: walked, drains 13; both untouched. */
        TU_CTX("STD, reorder buffer, across small records");
        open_variant(DEFAULT_REORDER, STD_SIZES, STD_N, SEQ0, MSS, 0);
        size_t k = seg_at(S.start[2]);
        TU_CHECK_EQ(k, seg_at(S.start[4]));
        TU_CHECK(G[k].off < S.start[2] && seg_end(k + 1) < S.start[5]);
        send_reordered(k, 1);
        expect_dec(0, k, true);
        expect_dec(k, k + 2, false);
        expect_dec(k + 2, NG, true);
        EXPECT(.jump = 1, .buffered = 1, .drained = 1);
        assert_host("FPNNPFFFFFFF", TLS_RX_OK);
    }
}
END_TEST

START_TEST(t04_reorder_paper_nic)
{
    for (size_t d = 1; d <= 3; d += 2) {
        /* No buffer: k+1 is out of sequence before r6's header -> jump to
           r6's start; k and the rest of r5 go up untouched. */
        TU_CTX("STD, reorder 0, by %zu inside r5", d);
        open_variant(0, STD_SIZES, STD_N, SEQ0, MSS, 0);
        size_t k = seg_at(S.start[5] + 5000), last = seg_at(S.start[6] - 1);
        send_reordered(k, d);
        expect_dec(0, k, true);
        expect_dec(k, last + 1, false);
        expect_dec(last + 1, NG, true);
        EXPECT(.jump = 1);
        assert_host("FFFFFPPFFFFF", TLS_RX_OK);
        close_variant();
    }
}
END_TEST

/* ======================================================================
 * 5. Duplicates and overlapping retransmissions (700-byte segments, so a
 *    retransmission may cover two of them)
 * ====================================================================== */

START_TEST(t05_duplicates_never_corrupt)
{
    for (int v = 0; v < 7; v++) {
        TU_CTX("STD/700, duplicate variant %d", v);
        open_variant(DEFAULT_REORDER, STD_SIZES, STD_N, SEQ0, 700, 0);
        size_t k = seg_at(S.start[5] + 5000);
        TU_CHECK(G[k].off > S.start[5] + TLS_PAYLOAD_OFFSET && seg_end(k + 3) < S.start[6] - 16);
        const char *cls = all_full(STD_N);
        send_range(0, k);
        switch (v) {
        case 0: /* exact duplicate of an in-order segment: old, untouched */
            send_seg(k);
            TU_CHECK_EQ(inject(G[k].off, G[k].len, NULL), NIC_RXF_CSUM_OK);
            send_range(k + 1, NG);
            expect_dec(0, NG, true);
            EXPECT(.err = 0);
            break;
        case 1: /* duplicate of a held ahead segment */
            send_seg(k + 1);
            TU_CHECK_EQ(inject(G[k + 1].off, G[k + 1].len, NULL), NIC_RXF_CSUM_OK);
            send_seg(k);
            send_range(k + 2, NG);
            expect_dec(0, NG, true);
            EXPECT(.buffered = 1, .ahead = 1, .drained = 1, .dup = 1);
            break;
        case 2: /* both delivered, then one retransmission covering both */
            send_range(k, k + 2);
            TU_CHECK_EQ(inject(G[k].off, 2 * 700, NULL), NIC_RXF_CSUM_OK);
            send_range(k + 2, NG);
            expect_dec(0, NG, true);
            EXPECT(.err = 0);
            break;
        case 3: /* k lost, k+1 held, retransmission covering k and k+1 */
        case 4: /* k lost, k+1 held, retransmission covering k and half of k+1 */
            send_seg(k + 1);
            /* Decrypted (consistently: raw checks) or passed up as is. */
            if (!(inject(G[k].off, v == 3 ? 2 * 700 : 700 + 350, NULL) & NIC_RXF_DECRYPTED))
                cls = "FFFFFPFFFFFF";
            send_range(k + 2, NG);
            expect_dec(0, k, true);
            expect_dec(k + 1, NG, true);
            EXPECT(.buffered = 1, .ahead = 1, .drained = 1);
            break;
        case 5: /* k lost, k+1 held, an ahead retransmission overlapping k+1
                   and covering k+2: a dup for the NIC, untouched; k+2's bytes
                   then reach the host first untouched -> r5 partial */
            send_seg(k + 1);
            TU_CHECK_EQ(inject(G[k + 1].off + 350, 350 + 700, NULL), NIC_RXF_CSUM_OK);
            send_seg(k);
            send_range(k + 2, NG);
            expect_dec(0, NG, true);
            EXPECT(.buffered = 1, .ahead = 1, .drained = 1, .dup = 1);
            cls = "FFFFFPFFFFFF";
            break;
        case 6: { /* k lost, k+1 held; the retransmission of k and half of
                     k+1 is tampered inside the overlap (valid checksum).
                     Which copy the host keeps decides whether r5 is intact
                     or fails its MAC; never a wrong plaintext. */
            send_seg(k + 1);
            struct mod m = {.flip_at = 700 + 100, .flip = 0x10};
            inject(G[k].off, 700 + 350, &m);
            send_range(k + 2, NG);
            EXPECT(.buffered = 1, .ahead = 1, .drained = 1, .err = ANY);
            assert_host_safe();
            close_variant();
            continue;
        }
        }
        assert_host(cls, TLS_RX_OK);
        close_variant();
    }
}
END_TEST

/* ======================================================================
 * 6. A false magic pattern in the ciphertext
 * ====================================================================== */

START_TEST(t06_false_magic_corrupts_nothing)
{
    static const uint8_t magic[5] = {0x17, 0x03, 0x03, 0x00, 0x40}; /* 64-byte "record" */
    static const uint8_t nomagic = 0x42;
    for (int v = 0; v < 2; v++) {
        TU_CTX("STD, reorder 0, false magic, %s",
               v ? "tracking fails, stale deny" : "deny at once");
        open_variant(0, STD_SIZES, STD_N, SEQ0, MSS, 0);
        size_t H = seg_at(S.start[6]), F1 = H + 5, F2 = H + 3;
        /* F1: the pattern 20 bytes before the segment's end (its successor
           header would be in the next segment, where it does not match).
           F2: a pattern whose successor is inside the same segment and does
           not match: not even a candidate. */
        size_t fake1 = seg_end(F1) - 20, fake2 = G[F2].off + 300;
        TU_CHECK(rec_of(fake1) == 6 && rec_of(fake2) == 6 && seg_end(F1) < S.start[7]);
        stream_force_ct(fake1, magic, 5);
        stream_force_ct(fake1 + 5 + 64, &nomagic, 1);
        stream_force_ct(fake2, magic, 5);
        stream_force_ct(fake2 + 5 + 64, &nomagic, 1);
        send_range(0, H);
        TU_CHECK_EQ(send_until_request(H + 1), F1);
        TU_CHECK_EQ(g_last.resync_seq, seq_at(fake1));
        EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1);
        size_t R;
        if (v == 0) {
            resync_resp(seq_at(fake1), false, 0); /* tls/ passed that seq inside r6 */
            EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1, .res_skip = 1);
            R = send_until_request(F1 + 1);
        } else {
            /* The chain breaks at the predicted header: back to searching. */
            TU_CHECK_EQ(send_seg(F1 + 1), NIC_RXF_CSUM_OK);
            EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1, .req_skip = 1);
            R = send_until_request(F1 + 2);
        }
        TU_CHECK_EQ(R, seg_at(S.start[7]));
        TU_CHECK_EQ(g_last.resync_seq, seq_at(S.start[7]));
        if (v == 1) /* the deny for the fake arrives now: stale, harmless */
            resync_resp(seq_at(fake1), false, 0);
        resync_resp(seq_at(S.start[7]), true, 8);
        EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 2, .req_skip = (uint64_t)v,
               .res_skip = 1, .res_ok = 1, .req_end = 1);
        send_range(R + 1, NG);
        expect_dec(R + 1, R + 2, false);
        expect_dec(R + 2, NG, true);
        send_seg(H);
        assert_host("FFFFFPNNPFFF", TLS_RX_OK);
        close_variant();
    }
}
END_TEST

/* ======================================================================
 * 7. A header split across a lost segment
 * ====================================================================== */

START_TEST(t07_header_split_across_lost_segment)
{
    {
        /* BIG8: the segment holding r1's end and r2's first 3 header bytes
           is lost; the next one starts with r2's length bytes. */
        TU_CTX("BIG8, reorder 0, r2 header split, lost");
        open_variant(0, big_sizes(8), 8, SEQ0, MSS, 0);
        size_t fc = S.start[2] + 3;
        cut(MSS, &fc, 1);
        size_t X = seg_at(S.start[2]);
        TU_CHECK_EQ(seg_end(X), fc);
        send_range(0, X);
        TU_CHECK_EQ(send_seg(X + 1), NIC_RXF_CSUM_OK);
        EXPECT(.jump = 1, .lost = 1, .req_start = 1);
        size_t R = send_until_request(X + 2);
        TU_CHECK_EQ(R, seg_at(S.start[3]));
        TU_CHECK_EQ(g_last.resync_seq, seq_at(S.start[3]));
        resync_resp(seq_at(S.start[3]), true, 4);
        size_t N = seg_at(S.start[4]);
        TU_CHECK(G[N].off < S.start[4]);
        send_range(R + 1, NG);
        expect_dec(R + 1, N + 1, false);
        expect_dec(N + 1, NG, true);
        send_seg(X);
        EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1, .res_ok = 1, .req_end = 1);
        assert_host("FPNNPFFF", TLS_RX_OK);
        close_variant();
    }
    {
        /* Same with the reorder buffer: the 2 header bytes and what follows
           are held; the retransmission completes the header and drains. */
        TU_CTX("BIG8, reorder buffer, r2 header split, retransmitted after 2");
        open_variant(DEFAULT_REORDER, big_sizes(8), 8, SEQ0, MSS, 0);
        size_t fc = S.start[2] + 3;
        cut(MSS, &fc, 1);
        size_t X = seg_at(S.start[2]);
        send_reordered(X, 2);
        expect_dec(0, X, true);
        expect_dec(X, X + 3, false);
        expect_dec(X + 3, NG, true);
        EXPECT(.jump = 1, .buffered = 2, .drained = 2);
        assert_host("FPPFFFFF", TLS_RX_OK);
        close_variant();
    }
    {
        /* While tracking: the predicted header r3 has its first 3 bytes in a
           lost (10-byte) segment -> the chain can't be followed: skip, back
           to searching; the host's late confirmation is stale; the NIC asks
           again at r4 and resumes at r5. */
        TU_CTX("BIG8, reorder 0, predicted header split across a lost segment");
        open_variant(0, big_sizes(8), 8, SEQ0, MSS, 0);
        size_t fc = S.start[3] + 3;
        cut(MSS, &fc, 1);
        size_t H = seg_at(S.start[1]), X = seg_at(S.start[3]);
        TU_CHECK_EQ(seg_end(X), fc);
        send_range(0, H);
        size_t R = send_until_request(H + 1);
        TU_CHECK_EQ(g_last.resync_seq, seq_at(S.start[2]));
        send_range(R + 1, X); /* tracking, nothing predicted in them */
        TU_CHECK_EQ(send_seg(X + 1), NIC_RXF_CSUM_OK);
        EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1, .req_skip = 1);
        resync_resp(seq_at(S.start[2]), true, 3);
        EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1, .req_skip = 1, .res_skip = 1);
        size_t R2 = send_until_request(X + 2);
        TU_CHECK_EQ(g_last.resync_seq, seq_at(S.start[4]));
        resync_resp(seq_at(S.start[4]), true, 5);
        size_t N = seg_at(S.start[5]);
        send_range(R2 + 1, NG);
        expect_dec(R2 + 1, N + 1, false);
        expect_dec(N + 1, NG, true);
        send_seg(H);
        send_seg(X);
        EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 2, .req_skip = 1, .res_skip = 1,
               .res_ok = 1, .req_end = 1);
        assert_host("PNNNNPFF", TLS_RX_OK);
    }
}
END_TEST

/* ======================================================================
 * 8. Tampered ciphertext with a valid TCP checksum
 * ====================================================================== */

START_TEST(t08_tampered_record_never_authenticated)
{
    for (int v = 0; v < 6; v++) {
        open_variant(DEFAULT_REORDER, STD_SIZES, STD_N, SEQ0, MSS, 0);
        size_t last = seg_at(S.start[6] - 1);
        size_t at = 0; /* stream offset of the flipped byte */
        size_t rec = 5;
        const char *what = "";
        switch (v) {
        case 0:
            at = S.start[5] + 5000;
            what = "payload, not the last packet";
            break;
        case 1:
            at = S.start[6] - TLS_TAG_LEN - 10;
            what = "payload, in the last packet";
            break;
        case 2:
            at = S.start[6] - 8;
            what = "tag";
            break;
        case 3:
            at = S.start[5] + TLS_HEADER_LEN + 3;
            what = "explicit nonce";
            break;
        case 4:
            at = S.start[2] + TLS_PAYLOAD_OFFSET; /* r2: one byte, inside one packet */
            rec = 2;
            what = "one-packet record";
            break;
        case 5:
            at = S.start[5] + 5000;
            what = "payload of a held ahead segment";
            break;
        }
        TU_CTX("STD, tamper %s (offset %zu)", what, at);
        size_t t = seg_at(at), end_seg = seg_at(S.start[rec + 1] - 1);
        struct mod m = {.flip_at = at - G[t].off, .flip = 0x20};
        if (v == 3) {
            /* The NIC decrypts r5 with the keystream of the nonce it sees. */
            g_mask = malloc(S.len);
            TU_CHECK(g_mask);
            for (size_t i = 0; i < S.len; i++)
                g_mask[i] = S.ct[i] ^ S.pv[i];
            uint8_t nonce[TLS_EXPLICIT_NONCE_LEN];
            memcpy(nonce, S.ct + S.start[5] + TLS_HEADER_LEN, sizeof(nonce));
            nonce[at - S.start[5] - TLS_HEADER_LEN] ^= m.flip;
            uint8_t *p = g_mask + S.start[5] + TLS_PAYLOAD_OFFSET;
            memset(p, 0, S.pt_len[5]);
            tls_record_xor_keystream(S.a, nonce, 0, p, S.pt_len[5]);
        }
        if (v == 5) {
            send_range(0, t - 1);
            TU_CHECK(send_seg_mod(t, &m) & NIC_RXF_DECRYPTED); /* held, keystream */
            send_range(t - 1, t);
        } else {
            send_range(0, t);
            send_seg_mod(t, &m);
        }
        send_range(t + 1, NG);
        /* The packet with the record's end: original bytes. */
        expect_dec(end_seg, end_seg + 1, false);
        if (v == 0 || v == 3 || v == 5)
            expect_dec(t, t + 1, true); /* its record ends later: marked */
        if (v == 5)
            EXPECT(.err = 1, .buffered = 1, .ahead = 1, .drained = 1);
        else
            EXPECT(.err = 1);
        TU_CHECK(last == end_seg || rec == 2);
        /* Every other packet is decrypted. */
        for (size_t i = 0; i < NG; i++)
            if (i != end_seg)
                expect_dec(i, i + 1, true);
        char cls[16];
        memcpy(cls, "FFFFFFFFFFFF", rec);
        cls[rec] = 0;
        if (rec == 2)
            cls[1] = 'P'; /* r1 ends in the restored packet */
        assert_host(cls, TLS_RX_ERR_BAD_MAC);
        close_variant();
    }
}
END_TEST

/* ======================================================================
 * 9. The record number of a resync confirmation
 * ====================================================================== */

START_TEST(t09_confirm_record_number_is_trusted)
{
    static const uint64_t told[] = {8, 10, 5}; /* r7 is record 8 */
    for (size_t v = 0; v < 3; v++) {
        TU_CTX("STD, reorder 0, confirm r7 as record %" PRIu64, told[v]);
        open_variant(0, STD_SIZES, STD_N, SEQ0, MSS, 0);
        size_t H = seg_at(S.start[6]);
        send_range(0, H);
        size_t R = send_until_request(H + 1);
        TU_CHECK_EQ(g_last.resync_seq, seq_at(S.start[7]));
        resync_resp(seq_at(S.start[7]), true, told[v]);
        g_forged = told[v] != 8; /* the NIC was told a wrong number: its views are off */
        send_range(R + 1, NG);
        send_seg(H);
        /* Resumed at r8 with record number told + 1. The nonce comes from
           the record, so payload decrypts right either way; with a wrong
           number the AAD differs: every record's tag fails, the packets
           holding record ends go up untouched, the host does the crypto. */
        size_t ends[] = {seg_at(S.start[9] - 1), seg_at(S.start[10] - 1), seg_at(S.start[11] - 1),
                         seg_at(S.start[12] - 1)};
        bool honest = told[v] == 8;
        expect_dec(R + 1, R + 2, false);
        for (size_t i = R + 2; i < NG; i++) {
            bool is_end = i == ends[0] || i == ends[1] || i == ends[2] || i == ends[3];
            expect_dec(i, i + 1, honest || !is_end);
        }
        EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1, .res_ok = 1, .req_end = 1,
               .err = honest ? 0 : 4);
        assert_host(honest ? "FFFFFPNNPFFF" : "FFFFFPNNPPPP", TLS_RX_OK);
        close_variant();
    }
}
END_TEST

/* ======================================================================
 * 10. Hint mode
 * ====================================================================== */

START_TEST(t10_hint_mode)
{
    TU_CTX("BIG8, reorder 0, hint mode");
    open_variant(0, big_sizes(8), 8, SEQ0, MSS, NIC_CTXF_RX_HINT);
    size_t H = seg_at(S.start[1]);
    send_range(0, H);
    /* A hint while in sync is ignored. */
    rx_hint(seq_at(S.start[2]), 3);
    EXPECT(.res_skip = 1);
    /* Lose r1's header: no searching, no resync requests. */
    size_t until = seg_at(S.start[3]) - 4;
    send_range(H + 1, until);
    for (size_t i = H + 1; i < until; i++)
        TU_CHECK_EQ(g_seg_flags[i], NIC_RXF_CSUM_OK);
    EXPECT(.res_skip = 1, .jump = 1, .lost = 1);
    /* A hint for a start already passed and not on the chain the NIC
       followed quietly while waiting (r1's header was lost): ignored. */
    rx_hint(seq_at(S.start[1]), 2);
    EXPECT(.res_skip = 2, .jump = 1, .lost = 1);
    /* A passed start it did follow (r2's header, seen while waiting): it
       knows the number of every header after it and resumes at the next,
       r3, whose start is still ahead. */
    rx_hint(seq_at(S.start[2]), 3);
    EXPECT(.res_skip = 2, .jump = 1, .lost = 1, .res_ok = 1, .req_end = 1);
    send_seg(until);
    /* In sync again: a hint for r3's start is ignored. */
    TU_CHECK(seg_end(until) < S.start[3]);
    rx_hint(seq_at(S.start[3]), 4);
    EXPECT(.res_skip = 3, .jump = 1, .lost = 1, .res_ok = 1, .req_end = 1);
    size_t N = seg_at(S.start[3]);
    TU_CHECK(G[N].off < S.start[3]);
    send_range(until + 1, NG);
    expect_dec(until + 1, N + 1, false);
    expect_dec(N + 1, NG, true);
    /* In sync again: a hint is ignored. */
    rx_hint(seq_at(S.start[7]), 8);
    send_seg(H);
    for (size_t i = 0; i < NL; i++)
        TU_CHECK(!(L[i].flags & NIC_RXF_RESYNC_REQ));
    EXPECT(.res_skip = 4, .jump = 1, .lost = 1, .res_ok = 1, .req_end = 1);
    assert_host("PNNPFFFF", TLS_RX_OK);
}
END_TEST

/* ======================================================================
 * 11. Bad TCP checksum
 * ====================================================================== */

START_TEST(t11_bad_checksum_never_decrypted_no_state)
{
    {
        TU_CTX("STD, reorder buffer, bad checksums");
        open_variant(DEFAULT_REORDER, STD_SIZES, STD_N, SEQ0, MSS, 0);
        struct mod bad = {.bad_csum = true};
        size_t hdr = seg_at(S.start[2]); /* several headers */
        struct mod corrupt = {
            .flip_at = S.start[3] + 1 - G[hdr].off, .flip = 0x01, .keep_csum = true};
        send_range(0, 5);
        TU_CHECK_EQ(send_seg_mod(5, &bad), 0); /* in sequence, bad checksum */
        EXPECT(.csum_bad = 1);
        send_range(5, hdr);
        TU_CHECK_EQ(send_seg_mod(hdr, &corrupt), 0); /* a header byte corrupted on the wire */
        EXPECT(.csum_bad = 2);
        send_range(hdr, 28);
        TU_CHECK_EQ(send_seg_mod(29, &bad), 0); /* ahead: would be held if looked at */
        EXPECT(.csum_bad = 3);
        send_range(28, NG);
        expect_dec(0, NG, true);
        EXPECT(.csum_bad = 3);
        assert_host(all_full(STD_N), TLS_RX_OK);
        close_variant();
    }
    {
        /* While searching: a bad-checksum packet holding a real header is
           not looked at (no request); the good copy is. */
        TU_CTX("STD, reorder 0, bad checksum while searching");
        open_variant(0, STD_SIZES, STD_N, SEQ0, MSS, 0);
        struct mod bad = {.bad_csum = true};
        size_t H = seg_at(S.start[6]), R = seg_at(S.start[7]);
        send_range(0, H);
        send_range(H + 1, R);
        TU_CHECK_EQ(send_seg_mod(R, &bad), 0);
        EXPECT(.jump = 1, .lost = 1, .req_start = 1, .csum_bad = 1);
        TU_CHECK_EQ(send_seg(R), NIC_RXF_CSUM_OK | NIC_RXF_RESYNC_REQ);
        TU_CHECK_EQ(g_last.resync_seq, seq_at(S.start[7]));
        resync_resp(seq_at(S.start[7]), true, 8);
        send_range(R + 1, NG);
        send_seg(H);
        EXPECT(.jump = 1, .lost = 1, .req_start = 1, .csum_bad = 1, .req_pkt = 1, .res_ok = 1,
               .req_end = 1);
        assert_host("FFFFFPNNPFFF", TLS_RX_OK);
    }
}
END_TEST

/* ======================================================================
 * Regressions: bugs this suite found, now fixed
 * ====================================================================== */

/* nic_tls_rx.c in_sync_packet()/drain_buffer(): when an in-order packet
   overlaps ciphertext held from an ahead segment, GCM is fed the in-order
   packet's copy of the overlap, but the ahead copy was already handed up
   DECRYPTED (keystream). A host that keeps the held copy (lwIP does when the
   in-order segment overlaps it only in part) then gets a "fully offloaded"
   record whose bytes the NIC never authenticated. Here the ahead copy is
   tampered (valid checksum): the host must not deliver its plaintext. */
START_TEST(kb_overlap_with_held_copy_is_authenticated)
{
    TU_CTX("STD/700, tampered ahead copy, genuine overlapping retransmission");
    open_variant(DEFAULT_REORDER, STD_SIZES, STD_N, SEQ0, 700, 0);
    size_t k = seg_at(S.start[5] + 5000);
    send_range(0, k);
    struct mod m = {.flip_at = 100, .flip = 0x08};
    TU_CHECK(send_seg_mod(k + 1, &m) & NIC_RXF_DECRYPTED);
    inject(G[k].off, 700 + 350, NULL); /* covers k and k+1's first half, incl. the flip */
    send_range(k + 2, NG);
    /* Correct: GCM sees the bytes the host may keep (the held, marked copy:
       tag fails, r5's last packet goes up untouched, the host re-encrypts
       and finds the bad MAC); today r5 comes out "fully offloaded" with the
       tampered plaintext under first-copy-wins (lwIP's choice here). */
    assert_host_safe();
}
END_TEST

/* nic_tls_rx.c search_packet(): `f->tracked = 0` after track_bytes() drops
   the headers verified after the candidate inside the same packet; a
   confirmation then resumes with record number host_sn + 1 instead of
   host_sn + 1 + (headers after the candidate): every later tag fails. */
START_TEST(kb_candidate_packet_with_several_headers)
{
    TU_CTX("STD, reorder 0, segment 12 (r2, r3, r4 headers) after 13, confirm r2");
    open_variant(0, STD_SIZES, STD_N, SEQ0, MSS, 0);
    size_t k = seg_at(S.start[2]);
    send_range(0, k);
    TU_CHECK_EQ(send_seg(k + 1), NIC_RXF_CSUM_OK); /* jump to r2, lost, searching */
    TU_CHECK(send_seg(k) & NIC_RXF_RESYNC_REQ);
    TU_CHECK_EQ(g_last.resync_seq, seq_at(S.start[2]));
    resync_resp(seq_at(S.start[2]), true, 3); /* r2 is record 3 */
    send_range(k + 2, NG);
    EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1, .res_ok = 1, .req_end = 1);
    assert_host("FPNNNPFFFFFF", TLS_RX_OK);
}
END_TEST

/* nic_tls_rx.c nic_tls_rx_resync_response(): a confirmation that arrives
   while the NIC, still tracking, has seen only part of the next predicted
   header (track_have != 0) is treated as a deny (back to searching), though
   docs/design.md §5 says a confirmation that finds the NIC tracking resumes
   offload at the next record boundary. */
START_TEST(kb_confirm_while_predicted_header_split)
{
    TU_CTX("BIG8, reorder 0, confirm between the halves of a predicted header");
    open_variant(0, big_sizes(8), 8, SEQ0, MSS, 0);
    size_t fc = S.start[3] + 3;
    cut(MSS, &fc, 1);
    size_t H = seg_at(S.start[1]), X = seg_at(S.start[3]);
    send_range(0, H);
    send_until_request(H + 1);
    TU_CHECK_EQ(g_last.resync_seq, seq_at(S.start[2]));
    send_range(seg_at(S.start[2]) + 1, X + 1); /* X ends 3 bytes into r3's header */
    resync_resp(seq_at(S.start[2]), true, 3);
    EXPECT(.jump = 1, .lost = 1, .req_start = 1, .req_pkt = 1, .res_ok = 1, .req_end = 1);
}
END_TEST

/* ======================================================================
 * 12. An on-path attacker
 *
 * Crafted segments go through the real NIC; the host replay then keeps
 * what the host's TCP would keep. Whatever the NIC was fed, the host
 * delivers the sender's records or fails with bad_record_mac: never bytes
 * the sender did not authenticate.
 * ====================================================================== */

/* Log a crafted packet's completion. off/len: the stream bytes it claims;
   tcp_drops: the host's TCP would not take them (the replay skips it). */
static uint16_t inject_crafted(const uint8_t *pkt, size_t tot, size_t off, size_t len,
                               bool tcp_drops)
{
    TU_CHECK(NL < MAX_LOG);
    g_forged = true;
    tu_wire_send(h.wire, pkt, tot);
    nic_dev_poll_once(h.dev);
    struct nic_cqe e;
    TU_CHECK(cq_take(true, &e));
    TU_CHECK(e.cookie < RX_RING);
    struct dpkt *d = &L[NL++];
    *d = (struct dpkt){.off = off,
                       .len = len,
                       .flags = e.flags,
                       .mark = {e.record_sn, e.view_rec_off, e.view_rec_len, e.view_walk},
                       .tcp_drops = tcp_drops,
                       .data = malloc(len + 1)};
    TU_CHECK(d->data);
    if (!tcp_drops)
        memcpy(d->data, g_rxbuf[e.cookie] + HDRS, len);
    rx_post((uint32_t)e.cookie);
    return e.flags;
}

/* A forged segment claiming stream bytes [off, off + len) = bytes. */
static uint16_t inject_forged(size_t off, const uint8_t *bytes, size_t len, uint8_t tcp_flags,
                              bool tcp_drops)
{
    static uint8_t pkt[RX_BUF_LEN];
    struct tu_tcp seg = {.saddr = TU_PEER_IP,
                         .daddr = TU_HOST_IP,
                         .sport = TU_PEER_PORT,
                         .dport = TU_HOST_PORT,
                         .ip_id = g_ip_id++,
                         .seq = seq_at(off),
                         .ack = 1,
                         .flags = tcp_flags,
                         .payload = bytes,
                         .len = len};
    size_t tot = tu_build_tcp(pkt, &seg);
    return inject_crafted(pkt, tot, off, len, tcp_drops);
}

/* What the host's IP layer hands TCP after reassembling fragments the NIC
   saw only in pieces: the segment's original bytes, unmarked. */
static void host_reassembled(size_t off, size_t len)
{
    TU_CHECK(NL < MAX_LOG);
    struct dpkt *d = &L[NL++];
    *d = (struct dpkt){.off = off, .len = len, .flags = NIC_RXF_CSUM_OK, .data = malloc(len)};
    TU_CHECK(d->data);
    memcpy(d->data, S.ct + off, len);
}

/* Segment i sent as two IPv4 fragments (the first holds the TCP header and
   44 payload bytes; fragment offsets count 8-byte units). */
static void send_seg_fragmented(size_t i)
{
    static uint8_t whole[RX_BUF_LEN], frag[RX_BUF_LEN];
    size_t tot = build_pkt(whole, seq_at(G[i].off), S.ct + G[i].off, G[i].len);
    size_t first = TU_TCP_HLEN + 44; /* a multiple of 8 */
    TU_CHECK(tot > TU_IP_HLEN + first);
    memcpy(frag, whole, TU_IP_HLEN + first);
    tu_put16(frag + 2, (uint16_t)(TU_IP_HLEN + first));
    tu_put16(frag + 6, 0x2000); /* MF, offset 0 */
    tu_ip_csum_set(frag);
    inject_crafted(frag, TU_IP_HLEN + first, G[i].off, 0, true);
    size_t rest = tot - TU_IP_HLEN - first;
    memcpy(frag, whole, TU_IP_HLEN);
    memcpy(frag + TU_IP_HLEN, whole + TU_IP_HLEN + first, rest);
    tu_put16(frag + 2, (uint16_t)(TU_IP_HLEN + rest));
    tu_put16(frag + 6, (uint16_t)(first / 8));
    tu_ip_csum_set(frag);
    inject_crafted(frag, TU_IP_HLEN + rest, G[i].off, 0, true);
    host_reassembled(G[i].off, G[i].len);
}

/* The host sends an ACK for ack with this (unscaled) window: the NIC moves
   the RX flow's window edge. The packet goes out on the wire. */
static void host_ack(uint32_t ack, uint16_t window)
{
    static uint8_t pkt[128];
    struct tu_tcp seg = {.saddr = TU_HOST_IP,
                         .daddr = TU_PEER_IP,
                         .sport = TU_HOST_PORT,
                         .dport = TU_PEER_PORT,
                         .seq = 1,
                         .ack = ack,
                         .flags = TU_TCP_ACK};
    size_t tot = tu_build_tcp(pkt, &seg);
    tu_put16(pkt + TU_IP_HLEN + 14, window);
    tu_tcp_csum_set(pkt, tot);
    struct nic_tx_desc d = {.kind = NIC_TX_DATA,
                            .flags = NIC_TXF_SIGNAL,
                            .len = (uint16_t)tot,
                            .addr = (uint64_t)(uintptr_t)pkt,
                            .cookie = 0xac000000u + h.tx_prod};
    tu_tx_post(&h, &d);
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    struct nic_cqe e;
    TU_CHECK(cq_take(false, &e));
    TU_CHECK_EQ(e.status, NIC_TX_OK);
    uint8_t out[256];
    TU_CHECK_EQ(tu_wire_recv(h.wire, out, sizeof(out)), tot);
}

/* Forged ciphertext that the NIC's keystream turns into text: what an
   attacker who knows record r's plaintext (hence its keystream) can make
   the NIC "decrypt" at stream offset off. */
static void forge_ct(size_t off, const char *text, uint8_t *out, size_t n)
{
    size_t r = rec_of(off);
    size_t po = off - S.start[r] - TLS_PAYLOAD_OFFSET;
    TU_CHECK(off >= S.start[r] + TLS_PAYLOAD_OFFSET && po + n <= S.pt_len[r]);
    size_t tl = strlen(text);
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)text[i % tl];
    tls_record_xor_keystream(S.a, S.ct + S.start[r] + TLS_HEADER_LEN, po, out, n);
}

/* Both replays complete, with the sender's records and nothing else. */
static void assert_host_intact_line(int line)
{
    for (int m = FIRST_COPY_WINS; m <= LAST_COPY_WINS; m++) {
        struct host_res r = host_replay((enum model)m);
        if (r.wrong || r.err != TLS_RX_OK || r.fed != S.len || r.records != S.nrec)
            ck_abort_msg("line %d (%s): wrong=%d err=%d fed=%zu/%zu (classes %s) [%s]", line,
                         m == FIRST_COPY_WINS ? "first-copy-wins" : "last-copy-wins", r.wrong,
                         r.err, r.fed, S.len, r.cls, tu_ctx);
    }
}
#define assert_host_intact() assert_host_intact_line(__LINE__)

/* SYN- and RST-flagged data carrying a fake header where a record starts:
   TCP takes neither, so the NIC must not move either; it stays in step. */
START_TEST(ta_syn_and_rst_data_do_not_move_the_nic)
{
    for (int v = 0; v < 2; v++) {
        TU_CTX("STD, reorder %u, %s data with a fake header", v ? DEFAULT_REORDER : 0,
               v ? "RST" : "SYN");
        open_variant(v ? DEFAULT_REORDER : 0, STD_SIZES, STD_N, SEQ0, MSS, 0);
        size_t X = S.start[6], H = seg_at(X);
        send_range(0, H);
        uint8_t fake[64];
        memcpy(fake, S.ct + X, sizeof(fake));
        fake[3] = 0x02; /* a different length */
        uint16_t fl = inject_forged(X, fake, sizeof(fake),
                                    (uint8_t)((v ? TU_TCP_RST : TU_TCP_SYN) | TU_TCP_ACK), true);
        TU_CHECK_EQ(fl, NIC_RXF_CSUM_OK);
        send_range(H, NG);
        expect_dec(0, NG, true);
        struct nic_counters c = tu_counters(h.dev);
        TU_CHECK_EQ(c.rx_tls_skip_syn, v ? 0 : 1);
        TU_CHECK_EQ(c.rx_tls_skip_rst, v ? 1 : 0);
        TU_CHECK_EQ(c.rx_tls_err, 0);
        assert_host(all_full(STD_N), TLS_RX_OK);
        close_variant();
    }
}
END_TEST

/* A segment sent as IPv4 fragments reaches TCP whole but the NIC only in
   pieces: a hole for the NIC, never a mark. */
START_TEST(ta_fragments_are_a_hole)
{
    for (int v = 0; v < 2; v++) {
        TU_CTX("STD, reorder %u, r5's segment 20 fragmented", v ? DEFAULT_REORDER : 0);
        open_variant(v ? DEFAULT_REORDER : 0, STD_SIZES, STD_N, SEQ0, MSS, 0);
        size_t k = seg_at(S.start[5] + 8000);
        send_range(0, k);
        send_seg_fragmented(k);
        send_range(k + 1, NG);
        TU_CHECK_EQ(tu_counters(h.dev).rx_tls_skip_frag, 2);
        expect_dec(0, k, true);
        assert_host_intact();
        close_variant();
    }
}
END_TEST

/* Data beyond the window the host announced is dropped by TCP; the NIC
   follows the window in the host's ACKs and ignores such data. */
START_TEST(ta_out_of_window_data_does_not_move_the_nic)
{
    TU_CTX("STD, reorder 0, window 32 KiB, fake header beyond it");
    dev_open(0);
    stream_build(STD_SIZES, STD_N, SEQ0);
    cut(MSS, NULL, 0);
    install_rx_ctx_wnd(NIC_CTXF_RX_WND, SEQ0, SEQ0 + 32768, 1);

    size_t X = S.start[6], H = seg_at(X);
    TU_CHECK(X > 32768 + 1448);
    size_t k = seg_at(30000);
    send_range(0, k);
    /* A fake header where r6 will start, beyond the window: not held, not
       searched, counted. */
    uint8_t fake[32];
    memcpy(fake, S.ct + X, sizeof(fake));
    fake[3] ^= 0x01;
    TU_CHECK_EQ(inject_forged(X, fake, sizeof(fake), TU_TCP_ACK | TU_TCP_PSH, true),
                NIC_RXF_CSUM_OK);
    TU_CHECK_EQ(tu_counters(h.dev).rx_tls_skip_oow, 1);
    /* The host reads and opens its window (scale 1: 65535 << 1). The edge
       is flow-table state: the ACK makes no context access (with the cache
       off every access counts as a hit). */
    uint64_t accesses = tu_counters(h.dev).tls_ctx_cache_hit;
    host_ack(seq_at(G[k].off), 65535);
    TU_CHECK_EQ(tu_counters(h.dev).tls_ctx_cache_hit, accesses);
    send_range(k, H + 1);
    TU_CHECK_EQ(tu_counters(h.dev).rx_tls_skip_oow, 1); /* in the window now */
    send_range(H + 1, NG);
    expect_dec(0, NG, true);
    assert_host(all_full(STD_N), TLS_RX_OK);
}
END_TEST

/* A forged header at a record's start that TCP takes (it came first): the
   record cannot authenticate; nothing forged is delivered. */
START_TEST(ta_forged_header_first_at_same_seq)
{
    for (int v = 0; v < 2; v++) {
        TU_CTX("STD, reorder %u, forged header first at r6's start", v ? DEFAULT_REORDER : 0);
        open_variant(v ? DEFAULT_REORDER : 0, STD_SIZES, STD_N, SEQ0, MSS, 0);
        size_t X = S.start[6], H = seg_at(X);
        send_range(0, H);
        uint8_t fake[1448];
        size_t n = seg_end(H) - X;
        memcpy(fake, S.ct + X, n);
        fake[0] = TLS_CT_HANDSHAKE; /* same length, other type: other AAD */
        inject_forged(X, fake, n, TU_TCP_ACK | TU_TCP_PSH, false);
        send_range(H, NG);
        assert_host_safe();
        struct host_res r = host_replay(FIRST_COPY_WINS);
        TU_CHECK_EQ(r.err, TLS_RX_ERR_BAD_MAC);
        TU_CHECK_EQ(r.records, 6);
        close_variant();
    }
}
END_TEST

/* The NIC sees a segment the host never takes (TCP rejects it for a reason
   the NIC cannot know: a bad ACK number, a full host queue): a fake header
   with a longer length at r4's start. The real header then reaches the
   host unmarked, the NIC's record boundaries are no longer the host's, and
   the attacker sends ciphertext forged from r4's known plaintext, which the
   NIC "decrypts" into chosen text and marks mid-record. The host must
   neither trust those marks (their view disagrees, and r4's header came
   unmarked) nor deliver the text. */
START_TEST(ta_host_drops_what_the_nic_saw)
{
    static const char chosen[] = "GET /stats HTTP/1.1\r\nHost: x\r\nX-Injected: 1\r\n\r\n";
    for (int v = 0; v < 4; v++) {
        bool longer = v & 1, reorder = v & 2;
        TU_CTX("STD, reorder %u, fake header (%s length) the host drops, forged r4 payload",
               reorder ? DEFAULT_REORDER : 0, longer ? "longer" : "same");
        open_variant(reorder ? DEFAULT_REORDER : 0, STD_SIZES, STD_N, SEQ0, MSS, 0);
        size_t X = S.start[4], Y = S.start[5]; /* r4: 3000 B, starting at rcv_nxt */
        cut(MSS, &X, 1);
        size_t H = seg_at(X);
        TU_CHECK_EQ(G[H].off, X);
        send_range(0, H);
        uint8_t hdr[TLS_HEADER_LEN];
        memcpy(hdr, S.ct + X, sizeof(hdr));
        if (longer) {
            uint32_t lf = ((uint32_t)hdr[3] << 8 | hdr[4]) + 900u; /* ends inside r5 */
            hdr[3] = (uint8_t)(lf >> 8);
            hdr[4] = (uint8_t)lf;
        }
        TU_CHECK_EQ(inject_forged(X, hdr, sizeof(hdr), TU_TCP_ACK | TU_TCP_PSH, true),
                    NIC_RXF_CSUM_OK | NIC_RXF_DECRYPTED);
        /* The real header and nonce, replayed by the attacker as a segment of
           their own: old for the NIC, so unmarked. */
        TU_CHECK_EQ(inject_forged(X, S.ct + X, TLS_PAYLOAD_OFFSET, TU_TCP_ACK, false),
                    NIC_RXF_CSUM_OK);
        /* Forged payload and tag for the rest of r4; TCP takes it (first). */
        uint16_t last = 0;
        for (size_t at = X + TLS_PAYLOAD_OFFSET; at < Y;) {
            uint8_t forged[1448];
            size_t n = Y - at < sizeof(forged) ? Y - at : sizeof(forged);
            size_t pay =
                at < Y - TLS_TAG_LEN ? (Y - TLS_TAG_LEN - at < n ? Y - TLS_TAG_LEN - at : n) : 0;
            forge_ct(at, chosen, forged, pay);
            memset(forged + pay, 0xee, n - pay); /* any tag */
            last = inject_forged(at, forged, n, TU_TCP_ACK | TU_TCP_PSH, false);
            at += n;
        }
        /* With the longer fake length the NIC is mid-record at r4's end and
           marks the packet holding r4's forged tag. */
        TU_CHECK_EQ(!!(last & NIC_RXF_DECRYPTED), longer);
        send_range(H, NG); /* the real segments, late */
        assert_host_safe();
        struct host_res r = host_replay(FIRST_COPY_WINS);
        TU_CHECK_EQ(r.err, TLS_RX_ERR_BAD_MAC);
        TU_CHECK_EQ(r.records, 4); /* r0..r3; r4 is never delivered */
        if (longer)
            TU_CHECK(r.view_mismatch > 0);
        close_variant();
    }
}
END_TEST

/* A header straddling an injected segment the host drops: its first bytes
   forged (another type), the rest real. */
START_TEST(ta_header_straddles_injected_segment)
{
    for (int v = 0; v < 2; v++) {
        TU_CTX("STD/700, reorder %u, r6's header split by a forged segment",
               v ? DEFAULT_REORDER : 0);
        size_t X;
        open_variant(v ? DEFAULT_REORDER : 0, STD_SIZES, STD_N, SEQ0, 700, 0);
        X = S.start[6];
        size_t forced[] = {X + 3};
        cut(700, forced, 1);
        size_t H = seg_at(X);
        TU_CHECK_EQ(seg_end(H), X + 3);
        send_range(0, H);
        uint8_t fake[700];
        memcpy(fake, S.ct + G[H].off, G[H].len);
        fake[X - G[H].off] = TLS_CT_ALERT; /* r6's type byte */
        inject_forged(G[H].off, fake, G[H].len, TU_TCP_ACK | TU_TCP_PSH, true);
        send_range(H, NG);
        assert_host_intact();
        close_variant();
    }
}
END_TEST

/* Marks of two NIC walks never make one record. The attacker's copy of a
   segment inside r5 comes first, in step with the NIC, and is marked; the
   real segment is lost. The NIC then loses its way, is resynchronised on
   the sender's retransmissions and walks r5 again, marking every real
   segment and authenticating r5. Every byte of r5 the host keeps is marked
   with a view equal to its own, yet no single tag check covered them all. */
START_TEST(ta_marks_of_two_walks_never_combine)
{
    static const char chosen[] = "HTTP/1.1 200 OK\r\nX-Injected: 1\r\n\r\n";
    TU_CTX("STD, reorder 0, forged r5 segment first, real one lost, resync on retransmission");
    open_variant(0, STD_SIZES, STD_N, SEQ0, MSS, 0);
    size_t k = seg_at(S.start[5] + 3000);
    TU_CHECK(G[k].off > S.start[5] + TLS_PAYLOAD_OFFSET && seg_end(k) < S.start[6] - TLS_TAG_LEN);
    send_range(0, k);
    uint8_t forged[MSS];
    forge_ct(G[k].off, chosen, forged, G[k].len);
    TU_CHECK_EQ(inject_forged(G[k].off, forged, G[k].len, TU_TCP_ACK | TU_TCP_PSH, false),
                NIC_RXF_CSUM_OK | NIC_RXF_DECRYPTED);
    uint32_t first_walk = g_last.view_walk;
    /* Past r6's header, ahead of the hole: jump to r6, then lost. */
    TU_CHECK_EQ(send_seg(seg_at(S.start[6]) + 1), NIC_RXF_CSUM_OK);
    TU_CHECK_EQ(tu_counters(h.dev).rx_tls_lost, 1);
    /* The sender retransmits everything; the host confirms r0. */
    size_t R = send_until_request(0);
    TU_CHECK_EQ(g_last.resync_seq, seq_at(S.start[0]));
    resync_resp(seq_at(S.start[0]), true, 1);
    send_range(R + 1, NG);
    const struct dpkt *again = NULL;
    for (size_t i = 0; i < NL; i++)
        if (L[i].off == G[k].off && L[i].len == G[k].len)
            again = &L[i];
    TU_CHECK(again && (again->flags & NIC_RXF_DECRYPTED) && again->mark.walk != first_walk);
    TU_CHECK_EQ(tu_counters(h.dev).rx_tls_err, 0); /* the second walk authenticated r5 */
    assert_host_safe();
    struct host_res r = host_replay(FIRST_COPY_WINS);
    TU_CHECK_EQ(r.err, TLS_RX_ERR_BAD_MAC);
    TU_CHECK_EQ(r.records, 5); /* r0..r4; r5 is never delivered */
    TU_CHECK(r.view_mismatch > 0);
}
END_TEST

/* Random attacks: forged segments of every kind at random places,
   interleaved with the real stream (in order, or lightly reordered). Never
   a wrong byte. When neither TCP nor the NIC took any of them the host must
   deliver the whole stream intact; when the NIC walked one, intact or
   bad_record_mac; when TCP kept forged bytes in the stream (a forged header
   with an impossible length or type among them), also a malformed record:
   either way the record is refused whole and the connection ends. */
START_TEST(ta_random_injections)
{
    struct tu_rng rng = tu_rng_for(__func__, 0);
    for (int iter = 0; iter < 60; iter++) {
        bool tcp_takes_some = iter % 3 == 2;
        uint32_t reorder = iter % 2 ? DEFAULT_REORDER : 0;
        TU_CTX("iteration %d, reorder %u, TCP takes forged data: %d", iter, reorder,
               tcp_takes_some);
        open_variant(reorder, STD_SIZES, STD_N, SEQ0, 300 + tu_rng_range(&rng, 0, 1148), 0);
        g_nic_walked_forgery = false;
        bool tcp_took_forgery = false;
        for (size_t i = 0; i < NG; i++) {
            /* Forge something first, now and then. */
            while (tu_rng_range(&rng, 0, 5) == 0) {
                size_t at = tu_rng_range(&rng, 0, S.len - 1);
                size_t n = tu_rng_range(&rng, 1, 1448);
                if (at + n > S.len)
                    n = S.len - at;
                uint8_t buf[1448];
                memcpy(buf, S.ct + at, n);
                switch (tu_rng_range(&rng, 0, 3)) {
                case 0: /* a fake header at a random place inside */
                    if (n >= TLS_HEADER_LEN) {
                        size_t p = tu_rng_range(&rng, 0, n - TLS_HEADER_LEN);
                        uint16_t lf = (uint16_t)tu_rng_range(&rng, 24, 16408);
                        buf[p] = 23, buf[p + 1] = 3, buf[p + 2] = 3;
                        buf[p + 3] = (uint8_t)(lf >> 8), buf[p + 4] = (uint8_t)lf;
                    }
                    break;
                case 1: /* random bytes */
                    for (size_t b = 0; b < n; b++)
                        buf[b] = (uint8_t)tu_rng_next(&rng);
                    break;
                case 2: /* one byte flipped */
                    buf[tu_rng_range(&rng, 0, n - 1)] ^= (uint8_t)(1 + tu_rng_range(&rng, 0, 254));
                    break;
                default: /* a true copy (a replay) */
                    break;
                }
                static const uint8_t kinds[] = {TU_TCP_SYN, TU_TCP_RST | TU_TCP_ACK, TU_TCP_ACK,
                                                TU_TCP_ACK | TU_TCP_PSH};
                uint8_t fl = kinds[tu_rng_range(&rng, 0, 3)];
                bool takes =
                    tcp_takes_some && !(fl & (TU_TCP_SYN | TU_TCP_RST)) && tu_rng_range(&rng, 0, 1);
                /* An in-window plain-ACK copy: the NIC cannot tell it from
                   the real one (nor know whether the host's TCP keeps it,
                   e.g. after a timestamp check), so it walks it. From here
                   the NIC's keystream can be misplaced: the host must then
                   deliver nothing wrong, and may end in bad_record_mac. */
                if (!(fl & (TU_TCP_SYN | TU_TCP_RST)))
                    g_nic_walked_forgery = true;
                tcp_took_forgery |= takes;
                inject_forged(at, buf, n, fl, !takes);
            }
            /* The real segment, sometimes swapped with the next. */
            if (reorder && i + 1 < NG && tu_rng_range(&rng, 0, 9) == 0) {
                send_seg(i + 1);
                send_seg(i);
                i++;
            } else {
                send_seg(i);
            }
        }
        /* Retransmit every segment once more, as a sender whose data was
           never acked would: fills what TCP took from nobody. */
        send_range(0, NG);
        for (int m = FIRST_COPY_WINS; m <= LAST_COPY_WINS; m++) {
            struct host_res r = host_replay((enum model)m);
            if (r.wrong)
                ck_abort_msg("model %d: WRONG plaintext delivered (classes %s) [%s]", m, r.cls,
                             tu_ctx);
            bool intact = r.err == TLS_RX_OK && r.fed == S.len && r.records == S.nrec;
            bool refused =
                r.err == TLS_RX_ERR_BAD_MAC || (tcp_took_forgery && r.err == TLS_RX_ERR_MALFORMED);
            if (!intact && (g_nic_walked_forgery ? !refused : true))
                ck_abort_msg("model %d: err=%d fed=%zu/%zu records=%zu (classes %s) [%s]", m, r.err,
                             r.fed, S.len, r.records, r.cls, tu_ctx);
        }
        close_variant();
    }
}
END_TEST

/* ======================================================================
 * GSO super-packets taken whole (docs/design.md §5 One pass)
 * ====================================================================== */

#define GRO_BUF   65472u /* the driver's largest RX buffer */
#define GRO_NBUF  8u
#define GRO_MAXC  512u
#define VNET_HLEN sizeof(struct virtio_net_hdr)

struct gro_cqe {
    struct nic_cqe e;
    uint8_t *pkt; /* the buffer as completed */
};

struct gro_run {
    struct gro_cqe c[GRO_MAXC];
    size_t n;
    struct nic_counters cnt;
};

static uint8_t (*g_grobuf)[GRO_BUF];

/* Send the stream as super-packets of per_super wire packets of MSS bytes
   (the last shorter), as the kernel hands them to a GSO TUN (TCP checksum
   left to us), one engine round each; log every completion. split: a pcap
   is attached, so the NIC must split them into wire packets. */
static void gro_run(struct gro_run *out, size_t per_super, bool split)
{
    char pcap[] = "/tmp/anic-test-rx-gro-XXXXXX";
    if (split) {
        int fd = mkstemp(pcap);
        TU_CHECK(fd >= 0);
        close(fd);
    }
    struct nic_dev_cfg cfg = {.tx_ring_size = TX_RING,
                              .rx_ring_size = 16,
                              .mtu = TEST_MTU,
                              .max_flows = 8,
                              .rx_reorder_bytes = DEFAULT_REORDER,
                              .tun_gso = true,
                              .lro = true,
                              .pcap_path = split ? pcap : NULL};
    tu_drv_open(&h, &cfg);
    for (uint32_t i = 0; i < GRO_NBUF; i++)
        tu_rx_post(&h, g_grobuf[i], GRO_BUF, i);
    tu_rx_publish(&h);
    install_rx_ctx(0, S.seq0);
    static uint8_t frame[VNET_HLEN + 65536];
    memset(out, 0, sizeof(*out));
    for (size_t off = 0; off < S.len;) {
        size_t plen = per_super * MSS;
        if (plen > S.len - off)
            plen = S.len - off;
        uint8_t *ip = frame + VNET_HLEN;
        size_t len = build_pkt(ip, seq_at(off), S.ct + off, plen);
        uint8_t ph[12];
        memcpy(ph, ip + 12, 8);
        ph[8] = 0;
        ph[9] = 6;
        tu_put16(ph + 10, (uint16_t)(len - TU_IP_HLEN));
        tu_put16(ip + TU_TCP_CSUM_OFF, (uint16_t)~tu_csum_fold(tu_csum_add(0, ph, sizeof(ph))));
        struct virtio_net_hdr vh = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                    .gso_type = plen > MSS ? VIRTIO_NET_HDR_GSO_TCPV4
                                                           : VIRTIO_NET_HDR_GSO_NONE,
                                    .hdr_len = HDRS,
                                    .gso_size = plen > MSS ? (uint16_t)MSS : 0,
                                    .csum_start = TU_IP_HLEN,
                                    .csum_offset = 16};
        memcpy(frame, &vh, sizeof(vh));
        tu_wire_send(h.wire, frame, VNET_HLEN + len);
        nic_dev_poll_once(h.dev);
        struct nic_cqe e;
        while (cq_take(true, &e)) {
            TU_CHECK(out->n < GRO_MAXC && e.cookie < GRO_NBUF && e.len <= GRO_BUF);
            out->c[out->n].e = e;
            out->c[out->n].pkt = malloc(e.len);
            TU_CHECK(out->c[out->n].pkt);
            memcpy(out->c[out->n].pkt, g_grobuf[e.cookie], e.len);
            TU_CHECK(csum_valid(out->c[out->n].pkt, e.len)); /* lwIP checks both */
            out->n++;
            tu_rx_post(&h, g_grobuf[e.cookie], GRO_BUF, e.cookie);
            tu_rx_publish(&h);
        }
        off += plen;
    }
    out->cnt = tu_counters(h.dev);
    tu_drv_close(&h);
    g_ip_id = 0;
    if (split)
        unlink(pcap);
}

static void gro_free(struct gro_run *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->c[i].pkt);
    r->n = 0;
}

/* Both paths give the host the same buffers: bytes, marks, views. */
static void gro_compare(const struct gro_run *a, const struct gro_run *b, size_t per, int tamper)
{
    TU_CHECK_EQ(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const struct nic_cqe *x = &a->c[i].e, *y = &b->c[i].e;
        TU_CTX("%zu packets per super-packet, tampered %d, completion %zu", per, tamper, i);
        TU_CHECK_EQ(x->len, y->len);
        TU_CHECK_EQ(x->flags, y->flags);
        TU_CHECK_EQ(x->flow_id, y->flow_id);
        if (x->flags & NIC_RXF_DECRYPTED) {
            TU_CHECK_EQ(x->record_sn, y->record_sn);
            TU_CHECK_EQ(x->view_seq, y->view_seq);
            TU_CHECK_EQ(x->view_rec_off, y->view_rec_off);
            TU_CHECK_EQ(x->view_rec_len, y->view_rec_len);
            TU_CHECK_EQ(x->view_walk, y->view_walk);
        }
        TU_CHECK(memcmp(a->c[i].pkt, b->c[i].pkt, x->len) == 0);
    }
    TU_CHECK_EQ(a->cnt.rx_packets, b->cnt.rx_packets);
    TU_CHECK_EQ(a->cnt.rx_bytes, b->cnt.rx_bytes);
    TU_CHECK_EQ(a->cnt.rx_wire_packets, b->cnt.rx_wire_packets);
    TU_CHECK_EQ(a->cnt.rx_lro_merged, b->cnt.rx_lro_merged);
    TU_CHECK_EQ(a->cnt.rx_lro_packets, b->cnt.rx_lro_packets);
    TU_CHECK_EQ(a->cnt.rx_tls_decrypted_packets, b->cnt.rx_tls_decrypted_packets);
    TU_CHECK_EQ(a->cnt.rx_tls_decrypted_bytes, b->cnt.rx_tls_decrypted_bytes);
    TU_CHECK_EQ(a->cnt.rx_tls_err, b->cnt.rx_tls_err);
    TU_CHECK_EQ(a->cnt.rx_tls_lost, b->cnt.rx_tls_lost);
}

START_TEST(tg_super_packet_whole_equals_split)
{
    g_grobuf = malloc((size_t)GRO_NBUF * GRO_BUF);
    TU_CHECK(g_grobuf);
    static struct gro_run split, whole;
    /* 7 packets: super-packets start inside records (the walker's GCM state
       is live); 40: up to the buffer, several records each. Tampered: one
       record fails its tag, so the super-packet holding its end is split
       (the walk put back), the rest still goes whole. */
    static const size_t per[] = {7, 40};
    for (size_t p = 0; p < 2; p++) {
        for (int tamper = 0; tamper < 2; tamper++) {
            TU_CTX("%zu packets per super-packet, tampered %d", per[p], tamper);
            stream_build(big_sizes(12), 12, SEQ0);
            size_t bad = 5;
            if (tamper) { /* CTR: the plaintext there flips with it */
                S.ct[S.start[bad] + TLS_PAYLOAD_OFFSET + 3000] ^= 0x40;
                S.pv[S.start[bad] + TLS_PAYLOAD_OFFSET + 3000] ^= 0x40;
            }
            gro_run(&split, per[p], true);
            gro_run(&whole, per[p], false);
            TU_CTX("%zu packets per super-packet, tampered %d", per[p], tamper);
            TU_CHECK_EQ(split.cnt.rx_gro_direct, 0);
            size_t supers = (S.len + per[p] * MSS - 1) / (per[p] * MSS);
            /* every super-packet whole but the one holding the bad record's end */
            TU_CHECK_EQ(whole.cnt.rx_gro_direct, supers - (size_t)tamper);
            TU_CHECK_EQ(whole.cnt.rx_tls_err, (uint64_t)tamper);
            gro_compare(&split, &whole, per[p], tamper);
            /* and the host bytes are the stream, decrypted where marked */
            size_t off = 0;
            for (size_t i = 0; i < whole.n; i++) {
                const struct gro_cqe *c = &whole.c[i];
                size_t pl = c->e.len - HDRS;
                const uint8_t *want = (c->e.flags & NIC_RXF_DECRYPTED) ? S.pv : S.ct;
                TU_CHECK(memcmp(c->pkt + HDRS, want + off, pl) == 0);
                off += pl;
            }
            TU_CHECK_EQ(off, S.len);
            gro_free(&split);
            gro_free(&whole);
            stream_free();
        }
    }
    free(g_grobuf);
}
END_TEST

static Suite *rx_suite(void)
{
    Suite *s = suite_create("rx_offload");
    TCase *tc = tcase_create("rx");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, t01_in_sequence_every_packet_decrypted);
    tcase_add_test(tc, t01_record_split_at_every_byte);
    tcase_add_test(tc, t02_loss_nonheader_reorder0);
    tcase_add_test(tc, t02_loss_nonheader_reorder_default);
    tcase_add_test(tc, t03_header_loss_search_request_confirm);
    tcase_add_test(tc, t03_header_loss_deny_then_confirm);
    tcase_add_test(tc, t03_header_loss_reorder_buffer_waits_for_retransmission);
    tcase_add_test(tc, t03_header_loss_reorder_buffer_short_hold_then_search);
    tcase_add_test(tc, t04_reorder_with_buffer);
    tcase_add_test(tc, t04_reorder_paper_nic);
    tcase_add_test(tc, t05_duplicates_never_corrupt);
    tcase_add_test(tc, t06_false_magic_corrupts_nothing);
    tcase_add_test(tc, t07_header_split_across_lost_segment);
    tcase_add_test(tc, t08_tampered_record_never_authenticated);
    tcase_add_test(tc, t09_confirm_record_number_is_trusted);
    tcase_add_test(tc, t10_hint_mode);
    tcase_add_test(tc, t11_bad_checksum_never_decrypted_no_state);
    suite_add_tcase(s, tc);
    TCase *bugs = tcase_create("regressions");
    tcase_add_checked_fixture(bugs, setup, teardown);
    tcase_add_test(bugs, kb_overlap_with_held_copy_is_authenticated);
    tcase_add_test(bugs, tg_super_packet_whole_equals_split);
    tcase_add_test(bugs, kb_candidate_packet_with_several_headers);
    tcase_add_test(bugs, kb_confirm_while_predicted_header_split);
    suite_add_tcase(s, bugs);
    TCase *att = tcase_create("attacks");
    tcase_add_checked_fixture(att, setup, teardown);
    tcase_set_timeout(att, 120);
    tcase_add_test(att, ta_syn_and_rst_data_do_not_move_the_nic);
    tcase_add_test(att, ta_fragments_are_a_hole);
    tcase_add_test(att, ta_out_of_window_data_does_not_move_the_nic);
    tcase_add_test(att, ta_forged_header_first_at_same_seq);
    tcase_add_test(att, ta_host_drops_what_the_nic_saw);
    tcase_add_test(att, ta_header_straddles_injected_segment);
    tcase_add_test(att, ta_marks_of_two_walks_never_combine);
    tcase_add_test(att, ta_random_injections);
    suite_add_tcase(s, att);
    return s;
}

int main(void)
{
    tu_seed_init("test_rx_offload");
    SRunner *sr = srunner_create(rx_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
