/*
 * fuzz_nic_rx.c - the NIC's RX TLS walker (nic/nic_tls_rx.c) and the host's
 * record layer (tls/tls_record.c) under arbitrary packet sequences of one
 * flow: the sender's segments cut anywhere, reordered, duplicated,
 * fragmented, plus forged segments (fake headers, random or flipped bytes;
 * SYN, RST, plain data, beyond the window) that the host's TCP may or may
 * not take.
 *
 * The device runs in this thread (one engine round per packet, a socketpair
 * standing in for TUN), driven through its queues as the driver would. The
 * host's TCP is modelled afterwards: it keeps, for every stream byte, the
 * first copy it accepted (SYN, RST, fragments and out-of-window data are not
 * accepted; IP reassembly hands TCP the fragmented segment whole and
 * unmarked). Its bytes are fed, with the NIC's marks and views, into tls_rx.
 *
 * Property: every record tls_rx delivers is the sender's record with that
 * number. Unless a forged plain data segment inside the window reached the
 * NIC (whether TCP then took it or not: a NIC fed bytes the host never got
 * can make the host's authentication fail, which is a denial of service,
 * never a forgery), tls_rx also never fails and, since the sender resends
 * everything at the end, delivers every record.
 */
#include "nic_abi.h"
#include "nic_csum.h"
#include "nic_dev.h"
#include "tls_record.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MTU       1500u
#define HDRS      40u
#define MAX_PAY   (MTU - HDRS)
#define RX_RING   64u
#define TX_RING   16u
#define BUF_LEN   2048u
#define MAX_RECS  24u
#define MAX_PKTS  512u
#define SEQ0      0x89abcdefu
#define WINDOW    (128u * 1024u)
#define PEER_IP   0x0a000002u
#define HOST_IP   0x0a000001u
#define PEER_PORT 40000u
#define HOST_PORT 443u

static const uint8_t KEY[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t SALT[4] = {0xa1, 0xb2, 0xc3, 0xd4};

/* The sender's stream. */
static struct {
    size_t nrec, len;
    size_t start[MAX_RECS + 1];
    size_t pt_len[MAX_RECS];
    uint8_t type[MAX_RECS];
    uint8_t pt[MAX_RECS][TLS_MAX_PLAINTEXT > 4096 ? 4096 : TLS_MAX_PLAINTEXT];
    uint8_t ct[MAX_RECS * (4096 + TLS_RECORD_OVERHEAD)];
} S;

/* What the host's TCP saw: one entry per packet the NIC delivered. */
struct dpkt {
    size_t off, len;
    bool accepted; /* TCP takes its bytes */
    bool forged;   /* its bytes are not the sender's */
    bool marked;
    struct tls_rx_mark mark;
    uint8_t data[MAX_PAY];
};
static struct dpkt P[MAX_PKTS];
static size_t NP;

/* The device, as its driver sees it. */
static struct {
    struct nic_dev *dev;
    const struct nic_queues *q;
    int wire;
    uint32_t tx_prod, tx_cq_cons, rx_prod, rx_cq_cons;
    uint8_t bufs[RX_RING][BUF_LEN];
    struct nic_tls_static_ctx ctx;
} D;

static void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v >> 16), put16(p + 2, v);
}

static bool cq_take(bool rx, struct nic_cqe *out)
{
    struct nic_cqe *cq = rx ? D.q->rx_cq : D.q->tx_cq;
    uint32_t size = rx ? D.q->rx_cq_size : D.q->tx_cq_size;
    uint32_t *cons = rx ? &D.rx_cq_cons : &D.tx_cq_cons;
    const struct nic_cqe *e = &cq[nic_ring_slot(*cons, size)];
    if (__atomic_load_n(&e->phase, __ATOMIC_ACQUIRE) != nic_cq_phase(*cons, size))
        return false;
    *out = *e;
    (*cons)++;
    struct nic_ring_idx *idx = rx ? D.q->rx_cq_idx : D.q->tx_cq_idx;
    __atomic_store_n(&idx->cons, *cons, __ATOMIC_RELEASE);
    return true;
}

static void rx_post(uint32_t buf)
{
    struct nic_rx_desc *r = &D.q->rx_ring[nic_ring_slot(D.rx_prod++, D.q->rx_size)];
    *r = (struct nic_rx_desc){
        .addr = (uint64_t)(uintptr_t)D.bufs[buf], .len = BUF_LEN, .cookie = buf};
    __atomic_store_n(&D.q->rx_idx->prod, D.rx_prod, __ATOMIC_RELEASE);
}

static void ctrl(const struct nic_tx_desc *d)
{
    D.q->tx_ring[nic_ring_slot(D.tx_prod++, D.q->tx_size)] = *d;
    __atomic_store_n(&D.q->tx_idx->prod, D.tx_prod, __ATOMIC_RELEASE);
    nic_dev_poll_once(D.dev);
    struct nic_cqe e;
    while (cq_take(false, &e))
        ;
}

static bool dev_open(uint32_t reorder, bool hint)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv) != 0)
        return false;
    struct nic_dev_cfg cfg = {.tun_fd = sv[0],
                              .tx_ring_size = TX_RING,
                              .rx_ring_size = RX_RING,
                              .mtu = MTU,
                              .max_flows = 4,
                              .rx_reorder_bytes = reorder};
    nic_fault_cfg_init(&cfg.fault_tx);
    nic_fault_cfg_init(&cfg.fault_rx);
    char err[128];
    memset(&D, 0, sizeof(D));
    D.wire = sv[1];
    D.dev = nic_dev_create(&cfg, err, sizeof(err));
    if (!D.dev) {
        fprintf(stderr, "nic_dev_create: %s\n", err);
        abort();
    }
    D.q = nic_dev_queues(D.dev);
    for (uint32_t i = 0; i < RX_RING; i++)
        rx_post(i);
    D.ctx = (struct nic_tls_static_ctx){
        .cipher = NIC_CIPHER_AES_128_GCM,
        .direction = NIC_CTX_RX,
        .flags = (uint8_t)(NIC_CTXF_RX_WND | (hint ? NIC_CTXF_RX_HINT : 0)),
        .saddr = __builtin_bswap32(PEER_IP),
        .daddr = __builtin_bswap32(HOST_IP),
        .sport = __builtin_bswap16(PEER_PORT),
        .dport = __builtin_bswap16(HOST_PORT),
        .start_tcp_sn = SEQ0,
        .record_sn = 1,
        .rx_wnd_right_edge = SEQ0 + WINDOW};
    memcpy(D.ctx.salt, SALT, 4);
    memcpy(D.ctx.key, KEY, 16);
    ctrl(&(struct nic_tx_desc){.kind = NIC_TX_STATIC_CTX,
                               .flags = NIC_TXF_SIGNAL,
                               .flow_id = 1,
                               .addr = (uint64_t)(uintptr_t)&D.ctx});
    return true;
}

static void dev_close(void)
{
    nic_dev_destroy(D.dev);
    close(D.wire);
}

/* Set the IPv4 header checksum (the field must be 0). nic_csum works in
   native byte order, like the stored field. */
static void ip_csum_set(uint8_t *p)
{
    uint16_t c = nic_csum_fold(nic_csum_add(0, p, 20));
    memcpy(p + 10, &c, 2);
}

/* A peer -> host segment claiming stream offset off. */
static size_t build(uint8_t *pkt, size_t off, const uint8_t *pay, size_t len, uint8_t flags)
{
    size_t tot = HDRS + len;
    memset(pkt, 0, HDRS);
    pkt[0] = 0x45;
    put16(pkt + 2, (uint32_t)tot);
    put16(pkt + 6, 0x4000);
    pkt[8] = 64, pkt[9] = 6;
    put32(pkt + 12, PEER_IP);
    put32(pkt + 16, HOST_IP);
    put16(pkt + 20, PEER_PORT);
    put16(pkt + 22, HOST_PORT);
    put32(pkt + 24, SEQ0 + (uint32_t)off);
    put32(pkt + 28, 1);
    pkt[32] = 5 << 4, pkt[33] = flags;
    put16(pkt + 34, 65535);
    memcpy(pkt + HDRS, pay, len);
    ip_csum_set(pkt);
    struct nic_tcp_view v;
    if (nic_parse_tcp(pkt, tot, &v))
        nic_tcp_csum_fix(pkt, &v);
    return tot;
}

/* Answer a resync request as an honest host does: confirm a true record
   start with its number, deny anything else. */
static void answer(uint32_t seq)
{
    size_t off = seq - SEQ0;
    struct nic_tx_desc d = {.kind = NIC_RX_RESYNC_RESP, .flow_id = 1, .tcp_seq = seq};
    for (size_t r = 0; r < S.nrec; r++)
        if (S.start[r] == off) {
            d.flags = NIC_TXF_RESYNC_OK;
            d.record_sn = r + 1;
        }
    ctrl(&d);
}

/* Put one packet on the wire, run the engine, log what the host gets. */
static void send_pkt(const uint8_t *pkt, size_t tot, size_t off, size_t len, bool accepted,
                     bool forged)
{
    if (NP == MAX_PKTS)
        return;
    if (send(D.wire, pkt, tot, 0) != (ssize_t)tot)
        abort();
    nic_dev_poll_once(D.dev);
    struct nic_cqe e;
    if (!cq_take(true, &e))
        abort(); /* one buffer per packet is always posted */
    struct dpkt *d = &P[NP++];
    d->off = off;
    d->len = len;
    d->accepted = accepted && (e.flags & NIC_RXF_CSUM_OK);
    d->forged = forged;
    d->marked = (e.flags & NIC_RXF_DECRYPTED) != 0;
    d->mark = (struct tls_rx_mark){e.record_sn, e.view_rec_off, e.view_rec_len, e.view_walk};
    if (len)
        memcpy(d->data, D.bufs[e.cookie] + HDRS, len);
    rx_post((uint32_t)e.cookie);
    if (getenv("FUZZ_NIC_RX_TRACE"))
        fprintf(stderr, "pkt %zu: off %zu len %zu accepted %d forged %d flags %#x view %u/%u/%u\n",
                NP - 1, off, len, d->accepted, forged, e.flags, (unsigned)e.record_sn,
                e.view_rec_off, e.view_rec_len);
    if (e.flags & NIC_RXF_RESYNC_REQ)
        answer(e.resync_seq);
}

/* The reassembled segment IP hands TCP after fragments (the NIC saw pieces). */
static void host_reassembled(size_t off, size_t len)
{
    if (NP == MAX_PKTS)
        return;
    struct dpkt *d = &P[NP++];
    *d = (struct dpkt){.off = off, .len = len, .accepted = true};
    memcpy(d->data, S.ct + off, len);
}

static void send_fragmented(size_t off, size_t len)
{
    uint8_t whole[MTU], frag[MTU];
    size_t tot = build(whole, off, S.ct + off, len, 0x18);
    size_t first = 24; /* TCP header + 4 bytes: a multiple of 8 */
    if (tot <= 20 + first)
        return;
    memcpy(frag, whole, 20 + first);
    put16(frag + 2, (uint32_t)(20 + first));
    put16(frag + 6, 0x2000);
    frag[10] = frag[11] = 0;
    ip_csum_set(frag);
    send_pkt(frag, 20 + first, off, 0, false, false);
    size_t rest = tot - 20 - first;
    memcpy(frag, whole, 20);
    memcpy(frag + 20, whole + 20 + first, rest);
    put16(frag + 2, (uint32_t)(20 + rest));
    put16(frag + 6, (uint32_t)(first / 8));
    frag[10] = frag[11] = 0;
    ip_csum_set(frag);
    send_pkt(frag, 20 + rest, off, 0, false, false);
    host_reassembled(off, len);
}

/* ---- the host ---- */

struct host {
    size_t delivered;
    bool wrong;
};

static int on_record(void *arg, uint8_t type, const uint8_t *pt, size_t len, const uint8_t *pt2,
                     size_t len2)
{
    struct host *h = arg;
    size_t r = h->delivered++;
    if (r >= S.nrec || type != S.type[r] || len + len2 != S.pt_len[r] ||
        (len && memcmp(pt, S.pt[r], len) != 0) || (len2 && memcmp(pt2, S.pt[r] + len, len2) != 0))
        h->wrong = true;
    return 0;
}

static void host_check(bool may_fail)
{
    static int32_t owner[sizeof(S.ct)];
    for (size_t b = 0; b < S.len; b++)
        owner[b] = -1;
    for (size_t i = 0; i < NP; i++)
        if (P[i].accepted)
            for (size_t b = P[i].off; b < P[i].off + P[i].len && b < S.len; b++)
                if (owner[b] < 0)
                    owner[b] = (int32_t)i;
    struct tls_aead *a = tls_aead_new(KEY, sizeof(KEY), SALT);
    struct tls_rx *rx = tls_rx_new(a, 1);
    struct host h = {0, false};
    int rc = TLS_RX_OK;
    for (size_t pos = 0; pos < S.len && owner[pos] >= 0 && rc == TLS_RX_OK;) {
        const struct dpkt *d = &P[owner[pos]];
        size_t end = pos;
        while (end < S.len && owner[end] == owner[pos])
            end++;
        struct tls_rx_mark m = tls_rx_mark_skip(d->mark, (uint32_t)(pos - d->off));
        rc = tls_rx_feed(rx, d->data + (pos - d->off), end - pos, d->marked ? &m : NULL, on_record,
                         &h);
        pos = end;
    }
    if (h.wrong) {
        fprintf(stderr, "fuzz_nic_rx: the host delivered a record the sender never sent\n");
        abort();
    }
    if (!may_fail && (rc != TLS_RX_OK || h.delivered != S.nrec)) {
        fprintf(stderr, "fuzz_nic_rx: genuine stream: %s, %zu of %zu records\n",
                tls_rx_strerror(rc), h.delivered, S.nrec);
        abort();
    }
    tls_rx_free(rx);
    tls_aead_free(a);
}

/* ---- input ---- */

struct in {
    const uint8_t *p;
    size_t n;
};

static uint32_t take(struct in *in, unsigned bytes)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < bytes; i++) {
        v = v << 8 | (in->n ? *in->p : 0);
        if (in->n)
            in->p++, in->n--;
    }
    return v;
}

static void stream_build(struct in *in)
{
    static const size_t sizes[] = {0, 1, 17, 100, 700, 1400, 3000, 4096};
    struct tls_aead *a = tls_aead_new(KEY, sizeof(KEY), SALT);
    S.nrec = 2 + take(in, 1) % (MAX_RECS - 1);
    S.len = 0;
    for (size_t r = 0; r < S.nrec; r++) {
        uint32_t c = take(in, 1);
        S.pt_len[r] = sizes[c % 8];
        S.type[r] = (c & 0x80) ? 22 : 23;
        for (size_t i = 0; i < S.pt_len[r]; i++)
            S.pt[r][i] = (uint8_t)(r * 131 + i * 7);
        S.start[r] = S.len;
        S.len += tls_record_seal(a, r + 1, S.type[r], S.pt[r], S.pt_len[r], S.ct + S.len);
    }
    S.start[S.nrec] = S.len;
    tls_aead_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = {data, size};
    uint32_t cfg = take(&in, 1);
    stream_build(&in);
    if (!dev_open(cfg & 1 ? 65536 : 0, (cfg & 2) != 0))
        return 0;
    NP = 0;
    bool may_fail = false;
    size_t next = 0; /* the sender's next new byte */
    while (in.n && NP < MAX_PKTS - 2) {
        uint32_t op = take(&in, 1), a = take(&in, 2), b = take(&in, 2);
        uint8_t pkt[MTU], pay[MAX_PAY];
        size_t len = 1 + b % MAX_PAY;
        switch (op % 8) {
        case 0: /* the sender's next segment */
        case 1:
        case 2:
            if (next >= S.len)
                break;
            if (len > S.len - next)
                len = S.len - next;
            send_pkt(pkt, build(pkt, next, S.ct + next, len, 0x18), next, len, true, false);
            next += len;
            break;
        case 3: { /* skip ahead (a loss), or resend anything already sent */
            size_t off = next ? a % next : 0;
            if (op & 0x80) {
                next += len;
                if (next > S.len)
                    next = S.len;
                break;
            }
            if (len > S.len - off)
                len = S.len - off;
            send_pkt(pkt, build(pkt, off, S.ct + off, len, 0x18), off, len, true, false);
            break;
        }
        case 4: /* the next segment, as fragments */
            if (next >= S.len)
                break;
            if (len > S.len - next)
                len = S.len - next;
            send_fragmented(next, len);
            next += len;
            break;
        default: { /* a forgery: where the NIC is now, at a record start, or near */
            size_t off;
            if ((a & 3) == 0)
                off = next;
            else if ((a & 3) == 1)
                off = S.start[(a >> 2) % S.nrec];
            else
                off = (next + (a >> 2) + 8 * (S.len + 64) - 8192) % (S.len + 64);
            if (off + len > S.len + 64)
                len = S.len + 64 - off;
            for (size_t i = 0; i < len; i++)
                pay[i] = off + i < S.len ? S.ct[off + i] : 0;
            uint32_t how = take(&in, 1);
            if ((how & 3) == 0 && len >= 5) { /* a fake header */
                size_t at = take(&in, 1) % (len - 4);
                uint32_t lf = take(&in, 2);
                /* a plausible length: the true one nudged, or anything */
                lf = lf & 0x8000 ? (uint32_t)(S.pt_len[(lf >> 8) % S.nrec] + 24 + (lf & 0xff))
                                 : lf % 16500;
                pay[at] = 23, pay[at + 1] = 3, pay[at + 2] = 3;
                pay[at + 3] = (uint8_t)(lf >> 8), pay[at + 4] = (uint8_t)lf;
            } else if ((how & 3) == 1) {
                pay[take(&in, 1) % len] ^= (uint8_t)(1 + take(&in, 1) % 255);
            } else if ((how & 3) == 2) {
                for (size_t i = 0; i < len; i++)
                    pay[i] = (uint8_t)take(&in, 1);
            }
            static const uint8_t kinds[] = {0x02, 0x14, 0x18, 0x10};
            uint8_t fl = kinds[(how >> 2) & 3];
            bool beyond = how & 0x10;
            size_t claim = beyond ? off + WINDOW + 4096 : off;
            /* TCP keeps plain data inside the window if it comes first. */
            bool accepted = !(fl & 0x06) && !beyond && (how & 0x20);
            bool genuine = off + len <= S.len && !memcmp(pay, S.ct + off, len);
            if (!genuine && !(fl & 0x06) && !beyond)
                may_fail = true;
            if (off + len > S.len)
                accepted = false; /* beyond the sender's end: nothing to compare with */
            send_pkt(pkt, build(pkt, claim, pay, len, fl), off, len, accepted, !genuine);
            break;
        }
        }
    }
    /* The sender finishes and retransmits everything once, as it would. */
    for (size_t off = 0; off < S.len && NP < MAX_PKTS; off += MAX_PAY) {
        size_t len = S.len - off < MAX_PAY ? S.len - off : MAX_PAY;
        uint8_t pkt[MTU];
        send_pkt(pkt, build(pkt, off, S.ct + off, len, 0x18), off, len, true, false);
    }
    host_check(may_fail);
    dev_close();
    return 0;
}
