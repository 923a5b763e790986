/* Check suite: does the NIC's per-packet "decrypted" mark reach the TLS layer
 * intact through lwIP's TCP receive path?
 *
 * A real lwIP TCP listener (port 443) is fed through the NIC model and our
 * driver, with no TUN and no engine or interrupt thread: the test thread is
 * the wire peer (one end of a SOCK_SEQPACKET socketpair stands in for TUN, as
 * in test_ring.c), runs the NIC one round at a time with nic_dev_poll_once()
 * and calls stack_driver_poll() under the core lock. lwIP's own tcpip thread
 * runs only its timers.
 *
 * Marking: the NIC sets NIC_RXF_DECRYPTED only for TLS offload flows, which is
 * tested elsewhere. Here the test stands in for that decision: after the NIC
 * posted a packet's RX completion and before the driver reads it, the test
 * sets NIC_RXF_DECRYPTED in that completion (host memory) for the packets it
 * chose to mark. Like the real NIC (which decrypts in place and fixes the TCP
 * checksum), a marked packet carries the plaintext of its stream range and an
 * unmarked one the ciphertext (wire_byte / plain_byte below differ in every
 * byte), so a byte delivered with the wrong flag also has the wrong value.
 *
 * For every pbuf the tcp_recv callback gets, the test finds the packet its
 * bytes were taken from (by the RX buffer its payload pointer lies in) and
 * checks: the running stream counter (started at rcv_nxt in the accept
 * callback, + len per pbuf) equals that packet's sequence position, the pbuf's
 * STACK_PBUF_FLAG_DECRYPTED equals the packet's mark, and the bytes are the
 * packet's. The exact source of each byte range is also asserted: that is
 * lwIP 2.1.3's (deterministic) choice between overlapping copies; another lwIP
 * may choose differently, only the flag invariant is a requirement.
 *
 * Buffer accounting: every RX buffer's pbuf must drop to ref 0 (back in the
 * driver's pool) once the connection is gone, and while lwIP holds segments
 * out of order exactly those buffers are referenced. The pbuf of a buffer is
 * at a fixed distance before its data; the test learns the distance from the
 * deliveries (and checks it never changes). */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lwip/inet_chksum.h>
#include <lwip/ip.h>
#include <lwip/ip_addr.h>
#include <lwip/netif.h>
#include <lwip/pbuf.h>
#include <lwip/priv/tcp_priv.h> /* tcp_tw_pcbs */
#include <lwip/tcp.h>
#include <lwip/tcpip.h>

#include "nic_abi.h"
#include "nic_dev.h"
#include "stack_chksum.h"
#include "stack_driver.h"
#include "test_lwip.h"
#include "test_rng.h"
#include "test_util.h"

#define TEST_MTU     1500u
#define RING_SIZE    16u /* TX and RX rings: small, so RX buffers are reused */
#define WIRE_BUF_LEN 65536u
#define DATA_HLEN    (TU_IP_HLEN + TU_TCP_HLEN)
#define MAX_SEG      1460u
#define STREAM_MAX   8192u
#define MAX_PKTS     256
#define MAX_DELIV    256
#define MAX_BUFS     64
#define MAX_PENDING  8 /* packets injected per NIC round (<= RING_SIZE) */
#define POLL_BUDGET  64u

/* One packet the peer sent. */
struct pkt {
    uint32_t off, len; /* stream range of its payload (offset 0 = ISN + 1) */
    bool marked;       /* the test set NIC_RXF_DECRYPTED in its completion */
    bool fragment;     /* an IP fragment (the NIC cannot parse it as TCP) */
    uint32_t wire_len, hdr_len;
    uintptr_t buf; /* RX buffer the NIC wrote it into (0 until then) */
    uint64_t cookie;
};

/* One pbuf the tcp_recv callback got. */
struct deliv {
    uint32_t off, len; /* running-counter stream offset, pbuf length */
    bool flag;         /* STACK_PBUF_FLAG_DECRYPTED set */
    int pkt;           /* packet its bytes were taken from */
    uint32_t pkt_off;  /* where in that packet's payload they start */
    unsigned call;     /* tcp_recv callback number (1-based) */
};

static struct {
    struct nic_dev *dev;
    const struct nic_queues *q;
    struct stack_driver *drv;
    int wire;
    bool netif_added;
    struct tcp_pcb *lpcb, *conn;

    uint16_t peer_port;
    uint16_t ip_id;
    uint32_t cisn, liss; /* the peer's ISN, lwIP's ISS */
    bool synack;
    bool accepted;
    bool syn_wscale;     /* the peer's SYN offers window scaling (shift 7, as Linux) */
    bool hold;           /* on_recv counts bytes only and never calls tcp_recved */
    uint32_t held_bytes; /* ... the bytes it got */
    uint32_t last_wnd;   /* window field of lwIP's last ACK (unscaled) */
    uint32_t base;       /* conn->rcv_nxt in the accept callback */
    int synack_wscale;   /* shift in lwIP's SYN-ACK (-1: no option) */
    bool synack_csum_ok; /* its TCP checksum verifies */

    struct pkt pkts[MAX_PKTS];
    int npkts, nmarked;
    int pending[MAX_PENDING]; /* sent, not yet through the NIC */
    int npending;
    uint32_t rx_cqes; /* RX completions so far */

    uintptr_t bufs[MAX_BUFS]; /* distinct RX buffers the NIC wrote into */
    int nbufs;
    intptr_t pbuf_dist; /* buffer data - its struct pbuf */
    bool pbuf_dist_known;
    unsigned peak_held;
    bool limited;       /* the test set small receive limits (buffers get compacted) */
    unsigned compacted; /* delivered pbufs that were compact copies */

    /* what lwIP sent */
    unsigned acks, rsts, other;
    uint32_t last_ack;

    /* what lwIP delivered */
    struct deliv d[MAX_DELIV];
    int nd;
    unsigned calls;
    unsigned empty_pbufs; /* zero-length pbufs seen in delivered chains */
    uint32_t delivered;   /* running counter */
    uint8_t plain_seen[STREAM_MAX];
    bool fin;
    uint32_t fin_at;

    char err[512]; /* first failure seen inside an lwIP callback */
} g;

/* ---- The byte stream ---- */

/* Ciphertext: what an unmarked packet carries. */
static uint8_t wire_byte(uint32_t off)
{
    return (uint8_t)(off * 131u + (off >> 7) + 17u);
}

/* Never 0: a marked (plaintext) copy differs from the ciphertext everywhere. */
static uint8_t key_byte(uint32_t off)
{
    return (uint8_t)(0x80u | (off * 37u + 11u));
}

static uint8_t plain_byte(uint32_t off)
{
    return (uint8_t)(wire_byte(off) ^ key_byte(off));
}

/* ---- Failures inside lwIP callbacks ----
 * Callbacks run under the core lock; they record the first failure and the
 * test thread asserts after releasing the lock. */

__attribute__((format(printf, 1, 2))) static void cb_fail(const char *fmt, ...)
{
    if (g.err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.err, sizeof(g.err), fmt, ap);
    va_end(ap);
}

/* ---- Packets ---- */

/* IPv4/TCP segment from the peer to lwIP's port 443; SYN carries MSS 1460. */
static size_t build_tcp(uint8_t *p, uint32_t seq, uint32_t ack, uint8_t flags, const uint8_t *data,
                        uint32_t len)
{
    static const uint8_t mss[4] = {2, 4, MAX_SEG >> 8, MAX_SEG & 0xff}; /* kind, length, value */
    static const uint8_t mss_ws[8] = {2, 4, MAX_SEG >> 8, MAX_SEG & 0xff, 1, 3,
                                      3, 7}; /* + NOP, WS */
    struct tu_tcp seg = {.saddr = TU_PEER_IP,
                         .daddr = TU_HOST_IP,
                         .sport = g.peer_port,
                         .dport = TU_HOST_PORT,
                         .ip_id = g.ip_id++,
                         .seq = seq,
                         .ack = ack,
                         .flags = flags,
                         .opt = g.syn_wscale ? mss_ws : mss,
                         .opt_len = !(flags & TU_TCP_SYN) ? 0
                                    : g.syn_wscale        ? sizeof(mss_ws)
                                                          : sizeof(mss),
                         .payload = data,
                         .len = len};
    return tu_build_tcp(p, &seg);
}

static int send_pkt(const uint8_t *p, size_t n, uint32_t off, uint32_t len, bool marked)
{
    ck_assert_int_lt(g.npkts, MAX_PKTS);
    ck_assert_int_lt(g.npending, MAX_PENDING);
    tu_wire_send(g.wire, p, n);
    int id = g.npkts++;
    g.pkts[id] = (struct pkt){.off = off,
                              .len = len,
                              .marked = marked,
                              .wire_len = (uint32_t)n,
                              .hdr_len = (uint32_t)n - len};
    g.pending[g.npending++] = id;
    if (marked)
        g.nmarked++;
    return id;
}

/* Stream bytes [off, off + len) as one segment; marked = plaintext + mark. */
static int inject(uint32_t off, uint32_t len, bool marked, uint8_t extra_flags)
{
    static uint8_t data[MAX_SEG], p[TEST_MTU];
    ck_assert_uint_le(len, MAX_SEG);
    ck_assert_uint_le(off + len, STREAM_MAX);
    for (uint32_t i = 0; i < len; i++)
        data[i] = marked ? plain_byte(off + i) : wire_byte(off + i);
    size_t n = build_tcp(p, g.cisn + 1 + off, g.liss + 1,
                         (uint8_t)(TU_TCP_ACK | TU_TCP_PSH | extra_flags), data, len);
    return send_pkt(p, n, off, len, marked);
}

/* Stream bytes [off, off + len) as one TCP segment sent in two IP fragments,
   the first with the TCP header and first_len payload bytes (first_len + 20
   a multiple of 8). Returns the first fragment's packet id; the second's is
   that + 1. */
static int inject_fragmented(uint32_t off, uint32_t len, uint32_t first_len, bool mark1, bool mark2)
{
    static uint8_t data[MAX_SEG], seg[TEST_MTU], f[TEST_MTU];
    ck_assert_uint_lt(first_len, len);
    ck_assert_uint_eq((first_len + TU_TCP_HLEN) % 8, 0);
    ck_assert_uint_le(len, MAX_SEG);
    for (uint32_t i = 0; i < len; i++)
        data[i] = (i < first_len ? mark1 : mark2) ? plain_byte(off + i) : wire_byte(off + i);
    size_t n = build_tcp(seg, g.cisn + 1 + off, g.liss + 1, TU_TCP_ACK | TU_TCP_PSH, data, len);
    uint32_t part[2] = {TU_TCP_HLEN + first_len,
                        (uint32_t)n - TU_IP_HLEN - TU_TCP_HLEN - first_len};
    int first = -1;
    for (int i = 0; i < 2; i++) {
        uint32_t at = i ? part[0] : 0; /* offset in the IP payload */
        memcpy(f, seg, TU_IP_HLEN);
        memcpy(f + TU_IP_HLEN, seg + TU_IP_HLEN + at, part[i]);
        tu_put16(f + 2, TU_IP_HLEN + part[i]);
        tu_put16(f + 6, (i ? 0u : 0x2000u) | at / 8); /* MF on the first */
        tu_ip_csum_set(f);
        int id = send_pkt(f, TU_IP_HLEN + part[i], i ? off + first_len : off,
                          i ? len - first_len : first_len, i ? mark2 : mark1);
        g.pkts[id].fragment = true;
        if (!i)
            first = id;
    }
    return first;
}

/* ---- The wire: what lwIP sent ---- */

static void drain_wire(void)
{
    static uint8_t b[WIRE_BUF_LEN];
    for (;;) {
        ssize_t n = recv(g.wire, b, sizeof(b), 0);
        if (n < 0) {
            ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK, "recv: %s", strerror(errno));
            return;
        }
        if (n < (ssize_t)DATA_HLEN || b[0] >> 4 != 4 || b[9] != 6) {
            g.other++;
            continue;
        }
        uint32_t ihl = (b[0] & 15u) * 4u;
        const uint8_t *h = b + ihl;
        if (tu_get32(b + 12) != TU_HOST_IP || tu_get32(b + 16) != TU_PEER_IP ||
            tu_get16(h) != TU_HOST_PORT || tu_get16(h + 2) != g.peer_port) {
            g.other++;
            continue;
        }
        uint32_t thl = (uint32_t)(h[12] >> 4) * 4u;
        ck_assert_uint_eq(tu_get16(b + 2), (uint32_t)n);
        ck_assert_uint_eq((uint32_t)n - ihl - thl, 0); /* lwIP sends no data here */
        uint8_t fl = h[13];
        if ((fl & (TU_TCP_SYN | TU_TCP_ACK)) == (TU_TCP_SYN | TU_TCP_ACK)) {
            g.liss = tu_get32(h + 4);
            g.synack = true;
            g.synack_wscale = -1;
            for (uint32_t i = 20; i + 1 < thl && h[i] != 0;)
                if (h[i] == 1) {
                    i++;
                } else {
                    if (h[i] == 3 && h[i + 1] == 3)
                        g.synack_wscale = h[i + 2];
                    i += h[i + 1] >= 2 ? h[i + 1] : thl;
                }
            g.synack_csum_ok = tu_tcp_csum(b, (size_t)n) == 0;
        }
        if (fl & TU_TCP_RST)
            g.rsts++;
        if (fl & TU_TCP_ACK) {
            g.acks++;
            g.last_ack = tu_get32(h + 8);
            g.last_wnd = tu_get16(h + 14);
        }
    }
}

/* ---- The driver side ---- */

static void driver_poll(void)
{
    LOCK_TCPIP_CORE();
    stack_driver_poll(g.drv, POLL_BUDGET);
    UNLOCK_TCPIP_CORE();
}

static void remember_buf(uintptr_t buf)
{
    for (int i = 0; i < g.nbufs; i++)
        if (g.bufs[i] == buf)
            return;
    ck_assert_int_lt(g.nbufs, MAX_BUFS);
    g.bufs[g.nbufs++] = buf;
}

/* RX buffers whose pbuf lwIP (or anyone) still references. Core lock held. */
static unsigned held_bufs(void)
{
    unsigned n = 0;
    for (int i = 0; i < g.nbufs; i++) {
        const struct pbuf *p = (const struct pbuf *)(g.bufs[i] - (uintptr_t)g.pbuf_dist);
        if (p->ref != 0)
            n++;
    }
    return n;
}

static unsigned held_now(void)
{
    ck_assert(g.pbuf_dist_known);
    LOCK_TCPIP_CORE();
    unsigned n = held_bufs();
    UNLOCK_TCPIP_CORE();
    return n;
}

/* One round trip: the NIC takes the injected packets, the test marks the
   chosen completions, lwIP processes them, the NIC sends lwIP's replies. */
static void step(void)
{
    const struct nic_queues *q = g.q;
    uint32_t cons0 = tu_load_acq(&q->rx_idx->cons);
    ck_assert_uint_ge(tu_load_acq(&q->rx_idx->prod) - cons0, (uint32_t)g.npending);
    /* The NIC fills posted buffers in ring order. */
    for (int i = 0; i < g.npending; i++) {
        const struct nic_rx_desc *d = &q->rx_ring[nic_ring_slot(cons0 + (uint32_t)i, q->rx_size)];
        struct pkt *k = &g.pkts[g.pending[i]];
        k->buf = (uintptr_t)d->addr;
        k->cookie = d->cookie;
        remember_buf(k->buf);
    }
    uint32_t cq0 = g.rx_cqes;
    ck_assert_uint_eq(tu_load_acq(&q->rx_cq_idx->cons), cq0); /* driver read all before */
    nic_dev_poll_once(g.dev);
    ck_assert_uint_eq(tu_load_acq(&q->rx_idx->cons), cons0 + (uint32_t)g.npending);
    ck_assert_uint_eq(tu_load_acq(&q->rx_cq_idx->prod), cq0 + (uint32_t)g.npending);
    for (int i = 0; i < g.npending; i++) {
        uint32_t idx = cq0 + (uint32_t)i;
        struct nic_cqe *e = &q->rx_cq[nic_ring_slot(idx, q->rx_cq_size)];
        const struct pkt *k = &g.pkts[g.pending[i]];
        ck_assert_uint_eq(__atomic_load_n(&e->phase, __ATOMIC_ACQUIRE),
                          nic_cq_phase(idx, q->rx_cq_size));
        ck_assert_uint_eq(e->kind, NIC_CQE_RX_PACKET);
        ck_assert_uint_eq(e->cookie, k->cookie);
        ck_assert_uint_eq(e->len, k->wire_len);
        ck_assert_uint_eq(e->flags & NIC_RXF_CSUM_OK, k->fragment ? 0 : NIC_RXF_CSUM_OK);
        ck_assert_uint_eq(e->flags & NIC_RXF_DECRYPTED, 0); /* no offload flow */
        /* Stand-in for the NIC's decision (tested elsewhere). */
        if (k->marked) {
            e->flags |= NIC_RXF_DECRYPTED;
            e->view_seq = g.cisn + 1 + k->off; /* a view the test can recognise */
            e->record_sn = (uint64_t)g.pending[i];
        }
    }
    g.rx_cqes += (uint32_t)g.npending;
    g.npending = 0;
    driver_poll();
    ck_assert_msg(g.err[0] == 0, "%s", g.err);
    nic_dev_poll_once(g.dev); /* lwIP's replies go out; nothing new comes in */
    ck_assert_uint_eq(tu_load_acq(&q->rx_cq_idx->prod), g.rx_cqes);
    driver_poll(); /* reclaim TX */
    drain_wire();
    if (g.pbuf_dist_known) {
        unsigned held = held_now();
        if (held > g.peak_held)
            g.peak_held = held;
    }
}

/* ---- lwIP callbacks ---- */

/* Newest packet the NIC wrote into the RX buffer holding ptr: a buffer is
   reused only after lwIP freed it, so that is the one a live pbuf is from. */
static int source_pkt(uintptr_t ptr)
{
    for (int i = g.npkts - 1; i >= 0; i--) {
        const struct pkt *k = &g.pkts[i];
        if (k->buf && ptr >= k->buf && ptr < k->buf + TEST_MTU)
            return i;
    }
    return -1;
}

/* Newest packet whose payload holds stream offset off (for compact copies,
   which are in no RX buffer). */
static int source_pkt_at(uint32_t off)
{
    for (int i = g.npkts - 1; i >= 0; i--)
        if (!g.pkts[i].fragment && off >= g.pkts[i].off && off < g.pkts[i].off + g.pkts[i].len)
            return i;
    return -1;
}

static void record_pbuf(const struct pbuf *q)
{
    uintptr_t ptr = (uintptr_t)q->payload;
    bool compact = !stack_rx_pbuf_pinned(q);
    int src = compact ? source_pkt_at(g.delivered) : source_pkt(ptr);
    if (src < 0) {
        cb_fail("pbuf payload %p is in no RX buffer the NIC wrote", q->payload);
        return;
    }
    if (compact && !g.limited) {
        cb_fail("a compact copy without receive limits");
        return;
    }
    const struct pkt *k = &g.pkts[src];
    uintptr_t start = k->buf + k->hdr_len;
    if (!compact && (ptr < start || ptr + q->len > start + k->len)) {
        cb_fail("pbuf [%p, +%u) outside the payload of packet %d", q->payload, (unsigned)q->len,
                src);
        return;
    }
    uint32_t pkt_off = compact ? g.delivered - k->off : (uint32_t)(ptr - start);
    uint32_t off = g.delivered;
    bool flag = (q->flags & STACK_PBUF_FLAG_DECRYPTED) != 0;
    struct stack_rx_view view;
    if (stack_rx_pbuf_view(q, &view) != flag)
        cb_fail("pbuf at stream offset %u: view without flag or flag without view", off);
    else if (flag && (view.seq != g.cisn + 1 + k->off || view.record_sn != (uint64_t)src))
        cb_fail("pbuf at stream offset %u: view seq %u sn %" PRIu64 ", its packet %d at %u", off,
                view.seq, view.record_sn, src, g.cisn + 1 + k->off);
    if (compact) {
        if (k->off + k->len < off + q->len)
            cb_fail("compact pbuf at %u (+%u) beyond its packet %d", off, (unsigned)q->len, src);
        g.compacted++;
    }
    if (k->off + pkt_off != off)
        cb_fail("pbuf at stream offset %u holds bytes of packet %d from offset %u", off, src,
                k->off + pkt_off);
    else if (flag != k->marked)
        cb_fail("pbuf at stream offset %u (+%u) flagged %d, its packet %d marked %d", off,
                (unsigned)q->len, flag, src, k->marked);
    if (off + q->len > STREAM_MAX) {
        cb_fail("delivered past the stream end");
        return;
    }
    const uint8_t *b = q->payload;
    for (uint32_t i = 0; i < q->len; i++) {
        uint8_t want = flag ? plain_byte(off + i) : wire_byte(off + i);
        if (b[i] != want) {
            cb_fail("byte at stream offset %u: %#x, want %#x (flag %d)", off + i, b[i], want, flag);
            break;
        }
        g.plain_seen[off + i] = flag ? b[i] : (uint8_t)(b[i] ^ key_byte(off + i));
    }
    intptr_t dist = (intptr_t)k->buf - (intptr_t)(uintptr_t)q;
    if (compact) {
        /* no RX buffer */
    } else if (!g.pbuf_dist_known) {
        g.pbuf_dist = dist;
        g.pbuf_dist_known = true;
    } else if (dist != g.pbuf_dist) {
        cb_fail("RX buffer %d: pbuf at distance %ld, others %ld", src, (long)dist,
                (long)g.pbuf_dist);
    }
    if (g.nd >= MAX_DELIV) {
        cb_fail("too many deliveries");
        return;
    }
    g.d[g.nd++] = (struct deliv){
        .off = off, .len = q->len, .flag = flag, .pkt = src, .pkt_off = pkt_off, .call = g.calls};
    g.delivered += q->len;
}

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
    (void)arg;
    if (!p) { /* the peer's FIN */
        if (g.fin)
            cb_fail("FIN delivered twice");
        g.fin = true;
        g.fin_at = g.delivered;
        return ERR_OK;
    }
    if (err != ERR_OK)
        cb_fail("tcp_recv err %d", err);
    if (g.hold) {
        g.held_bytes += p->tot_len;
        pbuf_free(p);
        return ERR_OK;
    }
    if (g.fin)
        cb_fail("data after FIN");
    g.calls++;
    uint32_t sum = 0;
    for (const struct pbuf *q = p; q; q = q->next) {
        sum += q->len;
        if (q->len)
            record_pbuf(q);
        else
            g.empty_pbufs++;
    }
    if (sum != p->tot_len)
        cb_fail("chain lengths sum to %u, tot_len %u", sum, (unsigned)p->tot_len);
    tcp_recved(pcb, p->tot_len);
    pbuf_free(p);
    return ERR_OK;
}

static void on_err(void *arg, err_t err)
{
    (void)arg;
    g.conn = NULL; /* lwIP freed it */
    cb_fail("connection error %d", err);
}

static err_t on_accept(void *arg, struct tcp_pcb *newpcb, err_t err)
{
    (void)arg;
    if (err != ERR_OK || !newpcb) {
        cb_fail("accept err %d", err);
        return ERR_VAL;
    }
    if (g.conn) {
        cb_fail("second connection");
        return ERR_VAL;
    }
    g.conn = newpcb;
    g.accepted = true;
    g.base = newpcb->rcv_nxt;
    tcp_recv(newpcb, on_recv);
    tcp_err(newpcb, on_err);
    return ERR_OK;
}

/* ---- Fixture ---- */

static void setup(void)
{
    memset(&g, 0, sizeof(g));
    g.wire = -1;
    tu_lwip_start_once();

    struct nic_dev_cfg cfg = {
        .tx_ring_size = RING_SIZE,
        .rx_ring_size = RING_SIZE,
        .mtu = TEST_MTU,
        .max_flows = 4,
        .pcap_path = NULL,
    };
    g.dev = tu_dev_create(&cfg, &g.wire);
    g.q = nic_dev_queues(g.dev);
    g.drv = stack_driver_create(g.dev, TEST_MTU);
    ck_assert(g.drv != NULL);

    LOCK_TCPIP_CORE();
    g.lpcb = tu_lwip_netif_listen(g.drv, TU_HOST_PORT, on_accept, &g.netif_added);
    UNLOCK_TCPIP_CORE();
    ck_assert(g.netif_added);
    ck_assert(g.lpcb != NULL);
}

static void teardown(void)
{
    LOCK_TCPIP_CORE();
    if (g.conn) {
        tcp_err(g.conn, NULL);
        tcp_recv(g.conn, NULL);
        tcp_abort(g.conn);
        g.conn = NULL;
    }
    if (g.lpcb)
        tcp_close(g.lpcb);
    if (g.netif_added)
        netif_remove(stack_driver_netif(g.drv));
    stack_driver_destroy(g.drv);
    UNLOCK_TCPIP_CORE();
    nic_dev_destroy(g.dev);
    if (g.wire >= 0)
        close(g.wire);
    memset(&g, 0, sizeof(g));
    g.wire = -1;
}

/* ---- Test helpers ---- */

/* The peer's 3-way handshake. Its ISN puts the 32-bit sequence wrap a few
   hundred bytes into the stream, inside the reassembly of every test. */
static void handshake_isn(uint16_t port, uint32_t isn)
{
    static uint8_t p[TEST_MTU];
    g.peer_port = port;
    g.cisn = isn;
    g.synack = false;
    g.accepted = false;
    send_pkt(p, build_tcp(p, g.cisn, 0, TU_TCP_SYN, NULL, 0), 0, 0, false);
    step();
    ck_assert_msg(g.synack, "no SYN-ACK from lwIP");
    ck_assert_uint_eq(g.last_ack, g.cisn + 1);
    send_pkt(p, build_tcp(p, g.cisn + 1, g.liss + 1, TU_TCP_ACK, NULL, 0), 0, 0, false);
    step();
    ck_assert(g.accepted);
    ck_assert_uint_eq(g.base, g.cisn + 1);
    ck_assert_uint_eq(g.rsts, 0);
}

static void handshake(uint16_t port)
{
    handshake_isn(port, UINT32_MAX - 300u - (port % 64u));
}

static uint32_t rcv_nxt(void)
{
    LOCK_TCPIP_CORE();
    uint32_t r = g.conn ? g.conn->rcv_nxt : 0;
    UNLOCK_TCPIP_CORE();
    ck_assert(g.conn != NULL);
    return r;
}

/* lwIP's receive state agrees with what the callback got (data only; its
   ACK for in-order data may be delayed, so the wire is not checked here). */
static void assert_in_sync(uint32_t total)
{
    ck_assert_uint_eq(g.delivered, total);
    ck_assert_uint_eq(rcv_nxt(), g.base + total);
}

/* Nothing delivered by the last step, an immediate ACK for rcv_nxt sent. */
static void assert_held_back(int nd_before, unsigned acks_before, uint32_t total)
{
    ck_assert_int_eq(g.nd, nd_before);
    ck_assert_uint_gt(g.acks, acks_before);
    ck_assert_uint_eq(g.last_ack, g.base + total);
}

struct want {
    uint32_t off, len;
    int pkt;
};

/* Exact sources, in delivery order (lwIP 2.1.3's choices; see the top). */
static void assert_sources(const struct want *w, int n)
{
    for (int i = 0; i < n && i < g.nd; i++) {
        const struct deliv *d = &g.d[i];
        ck_assert_msg(d->off == w[i].off && d->len == w[i].len && d->pkt == w[i].pkt,
                      "delivery %d: [%u, +%u) from packet %d (at %u), want [%u, +%u) from %d", i,
                      d->off, d->len, d->pkt, d->pkt_off, w[i].off, w[i].len, w[i].pkt);
    }
    ck_assert_int_eq(g.nd, n);
}

/* The stream as the TLS layer would see it after decrypting unmarked bytes. */
static void assert_stream(uint32_t total)
{
    ck_assert_uint_eq(g.delivered, total);
    for (uint32_t i = 0; i < total; i++)
        if (g.plain_seen[i] != plain_byte(i))
            ck_abort_msg("stream byte %u: %#x, want %#x", i, g.plain_seen[i], plain_byte(i));
    uint32_t next = 0;
    for (int i = 0; i < g.nd; i++) {
        ck_assert_uint_eq(g.d[i].off, next);
        ck_assert(g.d[i].flag == g.pkts[g.d[i].pkt].marked);
        next += g.d[i].len;
    }
    ck_assert_uint_eq(next, total);
}

/* Close the connection; every RX buffer must be back with the driver. */
static void finish(void)
{
    ck_assert_uint_eq(g.rsts, 0);
    LOCK_TCPIP_CORE();
    if (g.conn) {
        tcp_err(g.conn, NULL);
        tcp_recv(g.conn, NULL);
        tcp_abort(g.conn); /* frees what lwIP still queues */
        g.conn = NULL;
    }
    UNLOCK_TCPIP_CORE();
    step(); /* the RST goes out, its TX buffer comes back */
    ck_assert(g.pbuf_dist_known);
    ck_assert_uint_eq(held_now(), 0);

    struct stack_driver_counters c;
    LOCK_TCPIP_CORE();
    stack_driver_get_counters(g.drv, &c);
    UNLOCK_TCPIP_CORE();
    ck_assert_uint_eq(c.rx_packets, (uint64_t)g.npkts);
    ck_assert_uint_eq(c.rx_decrypted_packets, (uint64_t)g.nmarked);
    ck_assert_uint_eq(c.rx_input_drops, 0);
    ck_assert_uint_eq(c.rx_pool_exhausted, 0);
    ck_assert_uint_eq(c.rx_bufs_held, 0);
    ck_assert_uint_eq(c.rx_compact_live, 0);
    /* Refill keeps the ring full: new buffers only for those lwIP holds
       (with limits: also for those held within one poll, before its sweep). */
    if (g.limited)
        ck_assert_uint_le(c.rx_bufs_allocated, RING_SIZE + g.peak_held + MAX_PENDING);
    else
        ck_assert_uint_eq(c.rx_bufs_allocated, RING_SIZE + g.peak_held);
    struct nic_counters n;
    nic_dev_get_counters(g.dev, &n);
    ck_assert_uint_eq(n.rx_packets, (uint64_t)g.npkts);
    ck_assert_uint_eq(n.rx_no_buffer, 0);
    ck_assert_uint_eq(n.rx_csum_bad, 0);
    ck_assert_uint_eq(n.rx_tls_decrypted_packets, 0);
}

/* ---- 1. In order ---- */

START_TEST(inorder_alternating_marks)
{
    static const uint32_t sizes[] = {1, 100, MAX_SEG, 537, MAX_SEG, 2, 999, 64, 700, 3};
    enum { N = sizeof(sizes) / sizeof(sizes[0]), SINGLE = 6 };
    struct want w[N];
    handshake(40001);
    uint32_t off = 0;
    for (int i = 0; i < N; i++) {
        w[i] = (struct want){off, sizes[i], inject(off, sizes[i], i % 2 == 0, 0)};
        off += sizes[i];
        /* The first ones one per NIC round, the rest in one round (several
           completions marked at once). */
        if (i < SINGLE - 1 || i == N - 1) {
            step();
            ck_assert_uint_eq(held_now(), 0);
        }
    }
    assert_sources(w, N);
    for (int i = 0; i < N; i++)
        ck_assert_uint_eq(g.d[i].call, (unsigned)i + 1); /* one pbuf per callback */
    assert_stream(off);
    assert_in_sync(off);
    finish();
}
END_TEST

/* ---- 2. Out of order: lwIP's ooseq queue ---- */

START_TEST(ooseq_chain_mixes_packets)
{
    handshake(40002);
    int w0 = inject(0, 100, false, 0);
    step();
    ck_assert_uint_eq(held_now(), 0);

    int nd = g.nd;
    unsigned acks = g.acks;
    int s3 = inject(700, 300, true, 0);
    step();
    assert_held_back(nd, acks, 100);
    acks = g.acks;
    int s2 = inject(300, 400, false, 0); /* before s3: new head of the queue */
    step();
    assert_held_back(nd, acks, 100);
    acks = g.acks;
    int s5 = inject(1200, 100, true, 0); /* after a hole */
    step();
    assert_held_back(nd, acks, 100);
    ck_assert_uint_eq(held_now(), 3); /* exactly the queued packets */

    int s1 = inject(100, 200, true, 0); /* fills the first hole */
    step();
    ck_assert_uint_eq(held_now(), 1);
    assert_in_sync(1000);
    int s4 = inject(1000, 200, false, 0);
    step();
    ck_assert_uint_eq(held_now(), 0);

    const struct want w[] = {{0, 100, w0},   {100, 200, s1},  {300, 400, s2},
                             {700, 300, s3}, {1000, 200, s4}, {1200, 100, s5}};
    assert_sources(w, 6);
    /* One chain each: s1 s2 s3 (flags 1 0 1), then s4 s5 (0 1). */
    ck_assert_uint_eq(g.d[1].call, g.d[2].call);
    ck_assert_uint_eq(g.d[2].call, g.d[3].call);
    ck_assert_uint_eq(g.d[4].call, g.d[5].call);
    ck_assert_uint_ne(g.d[3].call, g.d[4].call);
    assert_stream(1300);
    assert_in_sync(1300);
    finish();
}
END_TEST

/* The segment that fills a hole is acknowledged at once (RFC 5681 4.2),
   not after lwIP's delayed-ACK timer (stack_driver.c rx_input): the ACK
   covering both segments is on the wire when the poll returns. */
START_TEST(hole_fill_acked_at_once)
{
    handshake(40020);
    int s0 = inject(0, 50, false, 0); /* teaches the test where buffers lie */
    step();
    struct stack_driver_counters c0;
    LOCK_TCPIP_CORE();
    stack_driver_get_counters(g.drv, &c0);
    UNLOCK_TCPIP_CORE();
    unsigned acks = g.acks;
    int s2 = inject(150, 100, false, 0);
    step();
    ck_assert_uint_eq(g.acks, acks + 1); /* lwIP's duplicate ACK, at once */
    ck_assert_uint_eq(g.last_ack, g.cisn + 1 + 50);
    acks = g.acks;
    int s1 = inject(50, 100, true, 0);
    step();
    ck_assert_uint_eq(g.acks, acks + 1);
    ck_assert_uint_eq(g.last_ack, g.cisn + 1 + 250);
    struct stack_driver_counters c1;
    LOCK_TCPIP_CORE();
    stack_driver_get_counters(g.drv, &c1);
    UNLOCK_TCPIP_CORE();
    ck_assert_uint_eq(c1.rx_hole_fill_acks - c0.rx_hole_fill_acks, 1);
    const struct want w[] = {{0, 50, s0}, {50, 100, s1}, {150, 100, s2}};
    assert_sources(w, 3);
    assert_in_sync(250);
    finish();
}
END_TEST

/* ---- 3. Duplicates ---- */

START_TEST(duplicate_marked_differently_is_dropped)
{
    handshake(40003);
    int a = inject(0, 500, true, 0);
    step();
    int nd = g.nd;
    unsigned acks = g.acks;
    inject(0, 500, false, 0); /* exact duplicate, other mark */
    step();
    assert_held_back(nd, acks, 500);
    ck_assert_uint_eq(held_now(), 0);

    int b = inject(500, 300, false, 0);
    step();
    nd = g.nd;
    acks = g.acks;
    inject(500, 300, true, 0);
    step();
    assert_held_back(nd, acks, 800);

    /* Duplicates of a queued segment: same length, then shorter. */
    int dq = inject(1000, 200, true, 0);
    step();
    ck_assert_uint_eq(held_now(), 1);
    nd = g.nd;
    inject(1000, 200, false, 0);
    step();
    ck_assert_uint_eq(held_now(), 1); /* the duplicate's buffer came back */
    inject(1000, 100, false, 0);
    step();
    ck_assert_uint_eq(held_now(), 1);
    ck_assert_int_eq(g.nd, nd);

    int c = inject(800, 200, false, 0);
    step();
    ck_assert_uint_eq(held_now(), 0);

    const struct want w[] = {{0, 500, a}, {500, 300, b}, {800, 200, c}, {1000, 200, dq}};
    assert_sources(w, 4);
    assert_stream(1200);
    assert_in_sync(1200);
    finish();
}
END_TEST

/* ---- 4. Overlapping retransmissions ---- */

/* Part of the segment was delivered already: lwIP removes the front
   (pbuf_remove_header) and delivers the rest from the new packet. */
START_TEST(front_overlap_trimmed)
{
    handshake(40004);
    int a = inject(0, 400, true, 0);
    step();
    int b = inject(200, 500, false, 0);
    step();
    int c = inject(650, 250, true, 0);
    step();
    ck_assert_uint_eq(held_now(), 0);
    const struct want w[] = {{0, 400, a}, {400, 300, b}, {700, 200, c}};
    assert_sources(w, 3);
    ck_assert_uint_eq(g.d[1].pkt_off, 200);
    ck_assert_uint_eq(g.d[2].pkt_off, 50);
    assert_stream(900);
    assert_in_sync(900);
    finish();
}
END_TEST

/* [a, c) after [a, b) was delivered and [b', c') is queued: the front is
   trimmed, the queued copy is dropped, every byte comes from [a, c). */
START_TEST(retransmit_covering_queued_segment)
{
    handshake(40005);
    int a = inject(0, 300, true, 0);
    step();
    inject(500, 300, true, 0); /* [b', c') queued */
    step();
    ck_assert_uint_eq(held_now(), 1);
    int r = inject(0, 800, false, 0);
    step();
    ck_assert_uint_eq(held_now(), 0); /* the queued copy was freed */
    assert_in_sync(800);

    /* Both ends trimmed: front already delivered, tail queued (the queued
       copy wins the overlap; pbuf_realloc shortens the new packet). */
    int a2 = inject(800, 500, false, 0);
    step();
    int o2 = inject(1500, 200, false, 0);
    step();
    int r2 = inject(1200, 400, true, 0);
    step();
    ck_assert_uint_eq(held_now(), 0);

    const struct want w[] = {
        {0, 300, a}, {300, 500, r}, {800, 500, a2}, {1300, 200, r2}, {1500, 200, o2}};
    assert_sources(w, 5);
    ck_assert_uint_eq(g.d[1].pkt_off, 300);
    ck_assert_uint_eq(g.d[3].pkt_off, 100);
    ck_assert_uint_eq(g.d[3].call, g.d[4].call);
    assert_stream(1700);
    assert_in_sync(1700);
    finish();
}
END_TEST

/* An in-order segment running into queued data: lwIP cuts the new segment
   at the queued one and keeps the queued copy. */
START_TEST(inorder_overlapping_queued_keeps_queued_copy)
{
    handshake(40006);
    int w0 = inject(0, 100, false, 0);
    step();
    int o = inject(300, 300, true, 0);
    step();
    int r = inject(100, 300, false, 0); /* [100, 400) overlaps o's [300, 400) */
    step();
    ck_assert_uint_eq(held_now(), 0);
    const struct want w[] = {{0, 100, w0}, {100, 200, r}, {300, 300, o}};
    assert_sources(w, 3);
    ck_assert_uint_eq(g.d[1].call, g.d[2].call);
    assert_stream(600);
    assert_in_sync(600);
    finish();
}
END_TEST

/* Overlaps among queued segments: appended after (previous one trimmed),
   same start and longer (replaces, swallows covered ones, trimmed at the
   next), before the head (trimmed), between two (previous trimmed, itself
   trimmed at the next); then the in-order segment trimmed at the head. */
START_TEST(queued_segments_overlapping_each_other)
{
    handshake(40007);
    int w0 = inject(0, 100, false, 0);
    step();
    const uint32_t r = 100;
    int a = inject(r + 100, 200, true, 0);
    step();
    inject(r + 200, 300, false, 0); /* b: a cut to [r+100, r+200) */
    step();
    int c = inject(r + 400, 200, true, 0); /* b cut to [r+200, r+400) */
    step();
    ck_assert_uint_eq(held_now(), 3);
    int d = inject(r + 100, 350, false, 0); /* replaces a, frees b, cut at c */
    step();
    ck_assert_uint_eq(held_now(), 2);
    int e = inject(r + 50, 70, true, 0); /* new head, cut at d */
    step();
    int f = inject(r + 300, 200, true, 0); /* d cut to r+300, f cut at c */
    step();
    ck_assert_uint_eq(held_now(), 4);
    ck_assert_int_eq(g.nd, 1);
    assert_in_sync(r);
    int gg = inject(r, 80, false, 0); /* in order, cut at e */
    step();
    ck_assert_uint_eq(held_now(), 0);
    (void)a;

    const struct want w[] = {{0, 100, w0},      {r, 50, gg},       {r + 50, 50, e},
                             {r + 100, 200, d}, {r + 300, 100, f}, {r + 400, 200, c}};
    assert_sources(w, 6);
    for (int i = 2; i < 6; i++)
        ck_assert_uint_eq(g.d[i].call, g.d[1].call); /* one chain */
    assert_stream(r + 600);
    assert_in_sync(r + 600);
    finish();
}
END_TEST

/* A retransmission that arrives as IP fragments, the first of them wholly
   old data: lwIP reassembles a two-pbuf chain and trims its front by setting
   the first pbuf's len to 0, so the callback gets a chain whose head is an
   EMPTY pbuf (from the first fragment) followed by the second fragment's
   pbuf. Flags still follow the bytes. (The real NIC never marks fragments: it
   does not parse them as TCP. Marked here only to check the pbufs.) */
START_TEST(fragmented_retransmission_empty_head_pbuf)
{
    handshake(40010);
    int a = inject(0, 400, false, 0);
    step();
    int f1 = inject_fragmented(200, 700, 180, false, true); /* [200, 380) + [380, 900) */
    step();
    ck_assert_uint_eq(held_now(), 0);
    const struct want w[] = {{0, 400, a}, {400, 500, f1 + 1}};
    assert_sources(w, 2);
    ck_assert_uint_eq(g.d[1].pkt_off, 20);
    ck_assert_uint_eq(g.empty_pbufs, 1); /* lwIP 2.1.3 behaviour, see above */
    assert_stream(900);
    assert_in_sync(900);
    finish();
}
END_TEST

/* ---- 5. FIN riding on data ---- */

START_TEST(fin_on_last_inorder_segment)
{
    handshake(40008);
    int w0 = inject(0, 200, false, 0);
    step();
    int l = inject(200, 500, true, TU_TCP_FIN);
    step();
    ck_assert(g.fin);
    ck_assert_uint_eq(g.fin_at, 700);
    const struct want w[] = {{0, 200, w0}, {200, 500, l}};
    assert_sources(w, 2);
    assert_stream(700);
    /* The FIN takes one sequence number: running counter + 1 == rcv_nxt. */
    ck_assert_uint_eq(rcv_nxt(), g.base + 700 + 1);
    ck_assert_uint_eq(g.last_ack, g.base + 700 + 1);
    ck_assert_uint_eq(held_now(), 0);
    finish();
}
END_TEST

START_TEST(fin_on_queued_segment)
{
    handshake(40009);
    int w0 = inject(0, 100, true, 0);
    step();
    int qf = inject(400, 200, false, TU_TCP_FIN);
    step();
    ck_assert(!g.fin);
    inject(400, 200, true, TU_TCP_FIN); /* duplicate of the queued one, other mark */
    step();
    ck_assert_uint_eq(held_now(), 1);
    int p = inject(100, 300, true, 0);
    step();
    ck_assert(g.fin);
    ck_assert_uint_eq(g.fin_at, 600);
    const struct want w[] = {{0, 100, w0}, {100, 300, p}, {400, 200, qf}};
    assert_sources(w, 3);
    ck_assert_uint_eq(g.d[1].call, g.d[2].call);
    assert_stream(600);
    ck_assert_uint_eq(rcv_nxt(), g.base + 600 + 1);
    ck_assert_uint_eq(g.last_ack, g.base + 600 + 1);
    ck_assert_uint_eq(held_now(), 0);
    finish();
}
END_TEST

/* ---- 3. Receive memory limits (struct stack_rx_limits) ---- */

/* A peer trickles small segments ahead of a hole: beyond its share of RX
   buffers the connection's queued segments are compacted (each keeps its
   mark, its view and its TCP header, which lwIP reads when it reassembles),
   beyond its segment limit the highest are dropped; the stream still
   arrives whole and right once the hole is filled and the peer resends. */
START_TEST(ooseq_beyond_share_compacted_and_capped)
{
    enum { SEG = 10, NSEG = 40, SHARE = 8, CAP = 32 };
    const struct stack_rx_limits lim = {.conn_bufs = SHARE, .ooseq_segs = CAP, .sweep_held = 1};
    LOCK_TCPIP_CORE();
    stack_driver_set_rx_limits(g.drv, &lim);
    UNLOCK_TCPIP_CORE();
    g.limited = true;
    handshake(40011);
    int w0 = inject(0, 5, true, 0); /* learn the pbuf distance */
    step();
    uint32_t total = 5;
    /* The hole is [5, 5 + SEG); segments 1..NSEG follow it. */
    for (int i = 1; i <= NSEG; i++) {
        inject(5 + (uint32_t)i * SEG, SEG, i % 3 != 0, 0);
        if (g.npending == MAX_PENDING || i == NSEG)
            step();
        ck_assert_uint_le(held_now(), SHARE);
    }
    ck_assert_uint_eq(g.nd, 1);
    struct stack_driver_counters c;
    LOCK_TCPIP_CORE();
    stack_driver_get_counters(g.drv, &c);
    UNLOCK_TCPIP_CORE();
    ck_assert_uint_ge(c.rx_compacted, CAP - SHARE);
    ck_assert_uint_eq(c.rx_compacted_bytes, c.rx_compacted * SEG);
    ck_assert_uint_eq(c.rx_compact_live, CAP - held_now());
    ck_assert_uint_eq(c.rx_ooseq_dropped, NSEG - CAP);
    ck_assert_uint_eq(c.rx_ooseq_dropped_bytes, (NSEG - CAP) * SEG);
    ck_assert_uint_gt(c.rx_sweeps, 0);
    ck_assert_uint_eq(c.rx_compact_failed, 0);

    inject(5, SEG, true, 0); /* the hole: delivers it and the CAP queued ones */
    step();
    total = 5 + (1 + CAP) * SEG;
    ck_assert_uint_eq(g.d[0].pkt, w0);
    assert_in_sync(total);
    ck_assert_uint_ge(g.compacted, CAP - SHARE);
    for (int i = CAP + 1; i <= NSEG; i++) { /* the peer resends the dropped ones */
        inject(5 + (uint32_t)i * SEG, SEG, i % 2 == 0, i == NSEG ? TU_TCP_FIN : 0);
        if (g.npending == MAX_PENDING || i == NSEG)
            step();
    }
    total = 5 + (1 + NSEG) * SEG;
    ck_assert(g.fin);
    ck_assert_uint_eq(g.fin_at, total);
    assert_stream(total);
    ck_assert_uint_eq(held_now(), 0);
    finish();
}
END_TEST

/* ---- 8. The receive window past lwIP's TCP_WND (docs/design.md §7) ---- */

/* Segments of MAX_SEG bytes from stream offset off on, n of them, a NIC
   round per MAX_PENDING. */
static void inject_bulk(uint32_t off, unsigned n)
{
    static uint8_t data[MAX_SEG], p[TEST_MTU];
    memset(data, 0x5a, sizeof(data));
    for (unsigned i = 0; i < n; i++) {
        size_t len = build_tcp(p, g.cisn + 1 + off + i * MAX_SEG, g.liss + 1,
                               TU_TCP_ACK | TU_TCP_PSH, data, MAX_SEG);
        send_pkt(p, len, off + i * MAX_SEG, MAX_SEG, false);
        if (g.npending == MAX_PENDING || i + 1 == n)
            step();
    }
}

static void close_held(void)
{
    stack_tcp_set_rcv_wnd(0xffff);
    LOCK_TCPIP_CORE();
    tcp_err(g.conn, NULL);
    tcp_recv(g.conn, NULL);
    tcp_abort(g.conn);
    g.conn = NULL;
    UNLOCK_TCPIP_CORE();
    step();
}

START_TEST(rcv_wnd_beyond_tcp_wnd)
{
    enum { SEGS = 62 }; /* 90520 bytes: past TCP_WND 65535, within 131070 */
    g.syn_wscale = true;
    g.hold = true;
    ck_assert_uint_eq(stack_tcp_set_rcv_wnd(131070), 131070);
    handshake(40060);
    LOCK_TCPIP_CORE();
    ck_assert(g.conn->flags & TF_WND_SCALE);
    ck_assert_uint_eq(g.conn->rcv_wnd, 0xffff); /* lwIP's own */
    stack_tcp_wnd_open(g.conn);
    ck_assert_uint_eq(g.conn->rcv_wnd, 131070);
    UNLOCK_TCPIP_CORE();
    /* Nothing is read: every byte fits the widened window only. */
    inject_bulk(0, SEGS);
    ck_assert_uint_eq(g.held_bytes, SEGS * MAX_SEG);
    ck_assert_uint_eq(g.last_ack, g.cisn + 1 + SEGS * MAX_SEG);
    /* Reading it all re-opens the window to 131070, not to lwIP's cap, and
       lwIP announces it (shift 1: 65535 in the header). */
    LOCK_TCPIP_CORE();
    stack_tcp_recved(g.conn, 0xffff);
    stack_tcp_recved(g.conn, (uint16_t)(SEGS * MAX_SEG - 0xffff));
    ck_assert_uint_eq(g.conn->rcv_wnd, 131070);
    UNLOCK_TCPIP_CORE();
    step();
    ck_assert_uint_eq(g.last_wnd, 0xffff);
    close_held();
}
END_TEST

/* The window lwIP would take right now never ends before the edge it
   announced: nothing the peer was allowed to send is trimmed. */
static void assert_edge_kept(void)
{
    ck_assert((int32_t)(g.conn->rcv_nxt + g.conn->rcv_wnd - g.conn->rcv_ann_right_edge) >= 0);
}

/* A hole holds the window at lwIP's TCP_WND: the application reads 90520
   bytes while segments wait behind a hole, and the window grows back to
   65535, not 131070 (a flight of 131070 under loss keeps the peer's RTO
   backing off, docs/design.md §5). Filling the hole and reading gives the
   withheld bytes back: 131070 again, announced. */
START_TEST(rcv_wnd_held_at_tcp_wnd_while_hole)
{
    enum { SEGS = 62, AHEAD = 20 }; /* 90520 bytes in order, 29200 behind the hole */
    g.syn_wscale = true;
    g.hold = true;
    stack_tcp_set_rcv_wnd(131070);
    handshake(40062);
    LOCK_TCPIP_CORE();
    stack_tcp_wnd_open(g.conn);
    ck_assert_uint_eq(g.conn->rcv_wnd, 131070);
    ck_assert_uint_eq(stack_tcp_wnd_held(g.conn), 0);
    UNLOCK_TCPIP_CORE();
    inject_bulk(0, SEGS);
    ck_assert_uint_eq(g.held_bytes, SEGS * MAX_SEG);
    /* The hole is segment SEGS; AHEAD segments follow it (within the
       131070 - 90520 = 40550 bytes left). */
    inject_bulk((SEGS + 1) * MAX_SEG, AHEAD);
    ck_assert_uint_eq(g.held_bytes, SEGS * MAX_SEG);
    LOCK_TCPIP_CORE();
    ck_assert(g.conn->ooseq != NULL);
    ck_assert_uint_eq(g.conn->rcv_wnd, 131070 - SEGS * MAX_SEG);
    stack_tcp_recved(g.conn, 0xffff);
    stack_tcp_recved(g.conn, (uint16_t)(SEGS * MAX_SEG - 0xffff));
    ck_assert_uint_eq(g.conn->rcv_wnd, 0xffff);
    ck_assert_uint_eq(stack_tcp_wnd_held(g.conn), 131070 - 0xffff);
    assert_edge_kept();
    UNLOCK_TCPIP_CORE();
    step();
    ck_assert_uint_le(g.last_wnd << 1, 0xffff); /* what lwIP announced */
    /* The hole: it and the AHEAD queued segments are delivered. */
    inject_bulk(SEGS * MAX_SEG, 1);
    ck_assert_uint_eq(g.held_bytes, (SEGS + 1 + AHEAD) * MAX_SEG);
    LOCK_TCPIP_CORE();
    ck_assert(g.conn->ooseq == NULL);
    ck_assert_uint_eq(g.conn->rcv_nxt, g.cisn + 1 + (SEGS + 1 + AHEAD) * MAX_SEG);
    assert_edge_kept();
    stack_tcp_recved(g.conn, (uint16_t)((1 + AHEAD) * MAX_SEG));
    ck_assert_uint_eq(g.conn->rcv_wnd, 131070);
    ck_assert_uint_eq(stack_tcp_wnd_held(g.conn), 0);
    UNLOCK_TCPIP_CORE();
    step();
    ck_assert_uint_eq(g.last_ack, g.cisn + 1 + (SEGS + 1 + AHEAD) * MAX_SEG);
    ck_assert_uint_eq(g.last_wnd, 0xffff); /* 131070 >> 1 */
    close_held();
}
END_TEST

/* n in-order segments from stream offset off, each batch read at once
   (stack_tcp_recved), so the window keeps re-opening. Returns the largest
   rcv_wnd seen after a read. */
static uint32_t stream_read_bulk(uint32_t off, unsigned n)
{
    static uint8_t data[MAX_SEG], p[TEST_MTU];
    memset(data, 0x5a, sizeof(data));
    uint32_t most = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t len = build_tcp(p, g.cisn + 1 + off + i * MAX_SEG, g.liss + 1,
                               TU_TCP_ACK | TU_TCP_PSH, data, MAX_SEG);
        send_pkt(p, len, off + i * MAX_SEG, MAX_SEG, false);
        if (g.npending < MAX_PENDING && i + 1 < n)
            continue;
        uint32_t before = g.held_bytes;
        step();
        g.npkts = 0; /* only step() looks at them */
        LOCK_TCPIP_CORE();
        for (uint32_t got = g.held_bytes - before; got;) {
            uint16_t k = got > 0xffff ? 0xffff : (uint16_t)got;
            stack_tcp_recved(g.conn, k);
            got -= k;
        }
        if (g.conn->rcv_wnd > most)
            most = g.conn->rcv_wnd;
        UNLOCK_TCPIP_CORE();
    }
    return most;
}

#define WIDEN_SEGS (((4u << 20) + MAX_SEG - 1) / MAX_SEG) /* 4 MiB: stack_driver.c */

/* --rcv-wnd 524280 needs a window scale shift of 3; lwIP's build writes 1
   into every SYN-ACK, and the driver raises it (and the pcb's rcv_scale),
   checksum kept valid. The window stays at 131070 until 4 MiB arrived
   without a hole, then opens to 524280, once, announced >> 3. */
START_TEST(rcv_wnd_widens_after_lossless_start)
{
    g.syn_wscale = true;
    g.hold = true;
    ck_assert_uint_eq(stack_tcp_set_rcv_wnd(524280), 524280);
    struct stack_driver_counters c0, c1;
    stack_driver_get_counters(g.drv, &c0);
    handshake(40063);
    ck_assert_int_eq(g.synack_wscale, 3);
    ck_assert(g.synack_csum_ok);
    LOCK_TCPIP_CORE();
    ck_assert_uint_eq(g.conn->rcv_scale, 3);
    stack_tcp_wnd_open(g.conn);
    ck_assert_uint_eq(g.conn->rcv_wnd, 131070);
    UNLOCK_TCPIP_CORE();
    ck_assert_uint_eq(stream_read_bulk(0, WIDEN_SEGS - 1), 131070);
    stack_driver_get_counters(g.drv, &c1);
    ck_assert_uint_eq(c1.tx_wscale_raised - c0.tx_wscale_raised, 1);
    ck_assert_uint_eq(c1.rx_wnd_widened - c0.rx_wnd_widened, 0);
    ck_assert_uint_le(g.last_wnd << 3, 131070);
    ck_assert_uint_eq(stream_read_bulk((WIDEN_SEGS - 1) * MAX_SEG, 64), 524280);
    stack_driver_get_counters(g.drv, &c1);
    ck_assert_uint_eq(c1.rx_wnd_widened - c0.rx_wnd_widened, 1);
    ck_assert_uint_eq(c1.rx_wnd_lossy - c0.rx_wnd_lossy, 0);
    ck_assert_uint_gt(g.last_wnd << 3, 2 * 131070); /* announced, scaled by 8 */
    ck_assert_uint_eq(rcv_nxt(), g.cisn + 1 + (WIDEN_SEGS + 63) * MAX_SEG);
    close_held();
}
END_TEST

/* A connection that queued a segment out of order never gets more than
   131070, even after 4 MiB in order (a large flight under loss stalls the
   kernel sender, docs/design.md §5). */
START_TEST(rcv_wnd_stays_after_hole)
{
    g.syn_wscale = true;
    g.hold = true;
    stack_tcp_set_rcv_wnd(524280);
    struct stack_driver_counters c0, c1;
    stack_driver_get_counters(g.drv, &c0);
    handshake(40064);
    LOCK_TCPIP_CORE();
    stack_tcp_wnd_open(g.conn);
    UNLOCK_TCPIP_CORE();
    inject_bulk(0, 1);
    inject_bulk(2 * MAX_SEG, 4); /* segment 1 is the hole */
    inject_bulk(MAX_SEG, 1);
    g.npkts = 0;
    ck_assert_uint_eq(g.held_bytes, 6 * MAX_SEG);
    ck_assert_uint_le(stream_read_bulk(6 * MAX_SEG, WIDEN_SEGS + 64), 131070);
    stack_driver_get_counters(g.drv, &c1);
    ck_assert_uint_eq(c1.rx_wnd_lossy - c0.rx_wnd_lossy, 1);
    ck_assert_uint_eq(c1.rx_wnd_widened - c0.rx_wnd_widened, 0);
    ck_assert_uint_eq(rcv_nxt(), g.cisn + 1 + (WIDEN_SEGS + 70) * MAX_SEG);
    ck_assert_uint_le(g.last_wnd << 3, 131070);
    close_held();
}
END_TEST

START_TEST(rcv_wnd_unscaled_peer_keeps_lwip_window)
{
    enum { SEGS = 50 }; /* 73000 bytes: more than the window */
    g.hold = true;
    stack_tcp_set_rcv_wnd(131070);
    handshake(40061);
    LOCK_TCPIP_CORE();
    ck_assert(!(g.conn->flags & TF_WND_SCALE));
    stack_tcp_wnd_open(g.conn);
    ck_assert_uint_eq(g.conn->rcv_wnd, 0xffff);
    UNLOCK_TCPIP_CORE();
    inject_bulk(0, SEGS);
    ck_assert_uint_eq(g.held_bytes, 0xffff); /* the rest is beyond the window */
    LOCK_TCPIP_CORE();
    stack_tcp_recved(g.conn, 0xffff);
    ck_assert_uint_eq(g.conn->rcv_wnd, 0xffff);
    UNLOCK_TCPIP_CORE();
    close_held();
}
END_TEST

/* lwIP's 16-bit-word loop as liblwip has it (LWIP_CHKSUM_ALGORITHM 2): the
   reference stack/stack_chksum.c must match for every length and alignment. */
static uint16_t ref_chksum(const uint8_t *pb, int len)
{
    uint32_t sum = 0;
    uint16_t t = 0;
    int odd = (int)((uintptr_t)pb & 1);
    if (odd && len > 0) {
        ((uint8_t *)&t)[1] = *pb++;
        len--;
    }
    while (len > 1) {
        uint16_t w;
        memcpy(&w, pb, 2);
        sum += w;
        pb += 2;
        len -= 2;
    }
    if (len > 0)
        ((uint8_t *)&t)[0] = *pb;
    sum += t;
    sum = (sum >> 16) + (sum & 0xffffu);
    sum = (sum >> 16) + (sum & 0xffffu);
    if (odd)
        sum = ((sum & 0xffu) << 8) | ((sum & 0xff00u) >> 8);
    return (uint16_t)sum;
}

START_TEST(chksum_interposed_and_exact)
{
    /* lwIP's own calls (inet_chksum, lwip_chksum_copy behind tcp_write) reach
       the program's lwip_standard_chksum. */
    ck_assert(stack_chksum_interposed());
    struct tu_rng r = tu_rng_for("chksum", 0);
    static uint8_t buf[70000], dst[70000];
    int lens[] = {0, 1, 2, 3, 7, 8, 15, 16, 17, 63, 64, 127, 128, 129, 1460, 1500, 4096, 65535};
    for (int fill = 0; fill < 3; fill++) {
        if (fill == 0)
            tu_rng_fill(&r, buf, sizeof(buf));
        else /* all-ones and all-zero: the 0xffff / 0 ends of the folded sum */
            memset(buf, fill == 1 ? 0xff : 0, sizeof(buf));
        for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++)
            for (int off = 0; off < 8; off++) {
                const uint8_t *p = buf + off;
                uint16_t want = ref_chksum(p, lens[li]);
                ck_assert_uint_eq(lwip_standard_chksum(p, lens[li]), want);
                ck_assert_uint_eq(inet_chksum(p, (u16_t)lens[li]), (uint16_t)~want);
                memset(dst, 0, (size_t)lens[li] + 8);
                ck_assert_uint_eq(lwip_chksum_copy(dst + off, p, (u16_t)lens[li]), want);
                ck_assert(memcmp(dst + off, p, (size_t)lens[li]) == 0);
            }
    }
    for (int i = 0; i < 2000; i++) {
        size_t off = tu_rng_below(&r, 64);
        int len = (int)tu_rng_below(&r, 3000);
        if (i % 100 == 0)
            len = (int)tu_rng_range(&r, 3000, 65535);
        tu_rng_fill(&r, buf + off, (size_t)len);
        ck_assert_uint_eq(lwip_standard_chksum(buf + off, len), ref_chksum(buf + off, len));
    }
    ck_assert_uint_eq(lwip_standard_chksum(buf, -1), 0);
}
END_TEST

/* Checksum offload (stack_chksum.h): with it on, tcp_write's copy through
   stack_chksum_copy_begin/_end copies without summing, and lwIP's first
   pseudo-header check after stack_chksum_rx_trust passes without summing,
   once; with it off, and outside those windows, lwIP's sums are exact. */
START_TEST(chksum_offload_skips_copy_sum_and_trusts_rx_once)
{
    static uint8_t src[1500], dst[1500];
    struct tu_rng r = tu_rng_for("chksum-offload", 0);
    tu_rng_fill(&r, src, sizeof(src));
    uint16_t want = ref_chksum(src, sizeof(src));
    ck_assert_uint_ne(want, 0);
    /* A TCP segment (header and payload) whose checksum field is wrong. */
    struct pbuf *p = pbuf_alloc(PBUF_RAW, 1000, PBUF_RAM);
    ck_assert_ptr_nonnull(p);
    memcpy(p->payload, src, 1000);
    ip_addr_t a, b;
    IP_ADDR4(&a, 10, 0, 0, 1);
    IP_ADDR4(&b, 10, 0, 0, 2);
    u16_t bad = ip_chksum_pseudo(p, IP_PROTO_TCP, 1000, &a, &b);
    ck_assert_uint_ne(bad, 0);
    for (int on = 0; on < 2; on++) {
        stack_chksum_set_offload(on != 0);
        stack_chksum_copy_begin();
        memset(dst, 0, sizeof(dst));
        ck_assert_uint_eq(lwip_chksum_copy(dst, src, sizeof(src)), on ? 0 : want);
        ck_assert_mem_eq(dst, src, sizeof(src));
        stack_chksum_copy_end();
        ck_assert_uint_eq(lwip_chksum_copy(dst, src, sizeof(src)), want);
        stack_chksum_rx_trust();
        ck_assert_uint_eq(ip_chksum_pseudo(p, IP_PROTO_TCP, 1000, &a, &b), on ? 0 : bad);
        ck_assert_uint_eq(ip_chksum_pseudo(p, IP_PROTO_TCP, 1000, &a, &b), bad); /* once */
        ck_assert(stack_chksum_rx_trust_end() == (on != 0));
        stack_chksum_rx_trust(); /* not used: withdrawn */
        ck_assert(!stack_chksum_rx_trust_end());
        ck_assert_uint_eq(ip_chksum_pseudo(p, IP_PROTO_TCP, 1000, &a, &b), bad);
    }
    stack_chksum_set_offload(false);
    pbuf_free(p);
}
END_TEST

/* ---- 7. A SYN on a TIME_WAIT tuple ---- */

/* lwIP answers a SYN on the tuple of a pcb in TIME_WAIT with an ACK, drops
   it, and ignores the client's RST: a client reusing its port after the
   server closed first hung until it gave up. The
   driver ends the TIME_WAIT for a SYN past what the old connection
   received (RFC 6191), so it reaches the listener; an older SYN does not. */
START_TEST(syn_reuses_timewait_tuple)
{
    static uint8_t p[TEST_MTU];
    handshake(40070);
    uint32_t liss0 = g.liss, cisn0 = g.cisn;
    LOCK_TCPIP_CORE();
    tcp_recv(g.conn, NULL);
    tcp_err(g.conn, NULL);
    ck_assert_int_eq(tcp_close(g.conn), ERR_OK); /* the server closes first */
    g.conn = NULL;
    UNLOCK_TCPIP_CORE();
    step();
    send_pkt(p, build_tcp(p, cisn0 + 1, liss0 + 2, TU_TCP_ACK | TU_TCP_FIN, NULL, 0), 0, 0, false);
    step();
    LOCK_TCPIP_CORE();
    bool tw = false;
    for (struct tcp_pcb *q = tcp_tw_pcbs; q; q = q->next)
        tw = tw || q->remote_port == 40070;
    UNLOCK_TCPIP_CORE();
    ck_assert_msg(tw, "no TIME_WAIT pcb after the server's close");

    struct stack_driver_counters c0, c1;
    stack_driver_get_counters(g.drv, &c0);
    /* an old duplicate SYN (not past rcv_nxt): lwIP's answer, no new pcb */
    g.synack = false;
    send_pkt(p, build_tcp(p, cisn0, 0, TU_TCP_SYN, NULL, 0), 0, 0, false);
    step();
    ck_assert(!g.synack);
    stack_driver_get_counters(g.drv, &c1);
    ck_assert_uint_eq(c1.rx_timewait_reused - c0.rx_timewait_reused, 0);

    /* a new connection's SYN from the same port: a whole handshake */
    handshake_isn(40070, cisn0 + 100000u);
    stack_driver_get_counters(g.drv, &c1);
    ck_assert_uint_eq(c1.rx_timewait_reused - c0.rx_timewait_reused, 1);
    inject(0, 100, false, 0);
    step();
    ck_assert_uint_eq(rcv_nxt(), g.cisn + 1 + 100);
}
END_TEST

static Suite *lwip_flags_suite(void)
{
    Suite *s = suite_create("lwip_flags");
    TCase *tc = tcase_create("rx_flags");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, inorder_alternating_marks);
    tcase_add_test(tc, ooseq_chain_mixes_packets);
    tcase_add_test(tc, hole_fill_acked_at_once);
    tcase_add_test(tc, duplicate_marked_differently_is_dropped);
    tcase_add_test(tc, front_overlap_trimmed);
    tcase_add_test(tc, retransmit_covering_queued_segment);
    tcase_add_test(tc, inorder_overlapping_queued_keeps_queued_copy);
    tcase_add_test(tc, queued_segments_overlapping_each_other);
    tcase_add_test(tc, fragmented_retransmission_empty_head_pbuf);
    tcase_add_test(tc, fin_on_last_inorder_segment);
    tcase_add_test(tc, fin_on_queued_segment);
    tcase_add_test(tc, ooseq_beyond_share_compacted_and_capped);
    tcase_add_test(tc, rcv_wnd_beyond_tcp_wnd);
    tcase_add_test(tc, rcv_wnd_unscaled_peer_keeps_lwip_window);
    tcase_add_test(tc, rcv_wnd_held_at_tcp_wnd_while_hole);
    tcase_add_test(tc, rcv_wnd_widens_after_lossless_start);
    tcase_add_test(tc, rcv_wnd_stays_after_hole);
    tcase_add_test(tc, syn_reuses_timewait_tuple);
    suite_add_tcase(s, tc);
    TCase *tk = tcase_create("chksum");
    tcase_add_test(tk, chksum_interposed_and_exact);
    tcase_add_test(tk, chksum_offload_skips_copy_sum_and_trusts_rx_once);
    suite_add_tcase(s, tk);
    return s;
}

int main(void)
{
    tu_seed_init("test_lwip_flags");
    SRunner *sr = srunner_create(lwip_flags_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
