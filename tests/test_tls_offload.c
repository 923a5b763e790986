/*
 * Check suite for the host logic of the TLS offload, tls/tls_offload.c,
 * against a fake device: struct tls_offload_ops implemented here, recording
 * every call. No NIC, no driver, no root (docs/design.md §4, §5).
 *
 * Covered: the record store and get_record for retransmissions, frees on
 * ACKs, tag reports, the software fallback when the device refuses the add
 * or the NIC refuses the install (records sealed in place), resync
 * confirm/deny decisions, the pending-request limit, the hint back-off,
 * teardown deleting every flow, and the offload policy's gates.
 */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lwip/ip_addr.h>
#include <lwip/pbuf.h>
#include <lwip/priv/tcp_priv.h>
#include <lwip/tcp.h>
#include <lwip/tcpip.h>

#include "test_lwip.h"
#include "tls_offload.h"
#include "tls_record.h"

static const uint8_t KEY[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t SALT[4] = {0xa, 0xb, 0xc, 0xd};

/* ---- the fake device ---- */

#define MAX_CALLS 64

enum call_kind { CALL_CONFIRM, CALL_DENY, CALL_HINT };

struct call {
    enum call_kind kind;
    uint32_t seq;
    uint64_t sn;
};

struct stack_tls_flow {
    bool rx;
    struct stack_tls_params p;
    uint8_t key[32];
    const struct stack_tls_host_ops *host;
    void *host_flow;
    bool deleted;
};

struct stack_tls_offload {
    bool refuse_add; /* tx_add/rx_add return NULL (no id, ring full) */
    bool ring_full;  /* resync answers and hints fail to post */
    struct stack_tls_flow flows[8];
    unsigned nflows, ndel;
    struct call calls[MAX_CALLS];
    unsigned ncalls;
};

static struct stack_tls_offload D;

static struct stack_tls_flow *fake_add(struct stack_tls_offload *dev, bool rx,
                                       const struct stack_tls_params *p,
                                       const struct stack_tls_host_ops *host, void *host_flow)
{
    if (dev->refuse_add || dev->nflows == 8)
        return NULL;
    struct stack_tls_flow *f = &dev->flows[dev->nflows++];
    *f = (struct stack_tls_flow){.rx = rx, .p = *p, .host = host, .host_flow = host_flow};
    memcpy(f->key, p->key, p->key_len);
    f->p.key = NULL; /* the caller's buffer: not valid after the call */
    return f;
}

static struct stack_tls_flow *fake_tx_add(struct stack_tls_offload *dev,
                                          const struct stack_tls_params *p,
                                          const struct stack_tls_host_ops *host, void *host_flow)
{
    return fake_add(dev, false, p, host, host_flow);
}

static struct stack_tls_flow *fake_rx_add(struct stack_tls_offload *dev,
                                          const struct stack_tls_params *p,
                                          const struct stack_tls_host_ops *host, void *host_flow)
{
    return fake_add(dev, true, p, host, host_flow);
}

static void fake_del(struct stack_tls_offload *dev, struct stack_tls_flow *f)
{
    ck_assert(!f->deleted);
    f->deleted = true;
    dev->ndel++;
}

static int fake_post(struct stack_tls_offload *dev, enum call_kind kind, uint32_t seq, uint64_t sn)
{
    if (dev->ring_full)
        return -1;
    ck_assert_uint_lt(dev->ncalls, MAX_CALLS);
    dev->calls[dev->ncalls++] = (struct call){kind, seq, sn};
    return 0;
}

static int fake_confirm(struct stack_tls_offload *dev, struct stack_tls_flow *f, uint32_t seq,
                        uint64_t sn)
{
    ck_assert(f->rx && !f->deleted);
    return fake_post(dev, CALL_CONFIRM, seq, sn);
}

static int fake_deny(struct stack_tls_offload *dev, struct stack_tls_flow *f, uint32_t seq)
{
    ck_assert(f->rx && !f->deleted);
    return fake_post(dev, CALL_DENY, seq, 0);
}

static int fake_hint(struct stack_tls_offload *dev, struct stack_tls_flow *f, uint32_t seq,
                     uint64_t sn)
{
    ck_assert(f->rx && !f->deleted);
    return fake_post(dev, CALL_HINT, seq, sn);
}

static const struct tls_offload_ops fake_ops = {.tx_add = fake_tx_add,
                                                .tx_del = fake_del,
                                                .rx_add = fake_rx_add,
                                                .rx_del = fake_del,
                                                .rx_resync_confirm = fake_confirm,
                                                .rx_resync_deny = fake_deny,
                                                .rx_hint = fake_hint};

/* ---- harness ---- */

static struct tls_offload *O;
static struct tcp_pcb *PCB;

static void setup(void)
{
    /* pbufs need lwIP's pools; Check forks a process per test. */
    tu_lwip_start_once();
    LOCK_TCPIP_CORE();
    memset(&D, 0, sizeof(D));
    O = tls_offload_new(&fake_ops, &D);
    ck_assert_ptr_nonnull(O);
    PCB = calloc(1, sizeof(*PCB));
    ck_assert_ptr_nonnull(PCB);
    IP_ADDR4(&PCB->local_ip, 10, 0, 0, 1);
    IP_ADDR4(&PCB->remote_ip, 10, 0, 0, 2);
    PCB->local_port = 443;
    PCB->remote_port = 40000;
    PCB->rcv_ann_right_edge = 777777;
    PCB->rcv_scale = 7;
}

static void teardown(void)
{
    tls_offload_free(O);
    O = NULL;
    free(PCB);
    UNLOCK_TCPIP_CORE();
}

/* A plaintext frame of a record with len payload bytes (byte i = seed + i),
   blank tag, as tls/tls_conn.c writes it. */
static struct pbuf *frame(uint64_t sn, size_t len, uint8_t seed)
{
    struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)(len + TLS_RECORD_OVERHEAD), PBUF_RAM);
    ck_assert_ptr_nonnull(p);
    uint8_t *f = p->payload;
    memset(f, 0, p->len);
    f[0] = 23;
    f[1] = 3;
    f[2] = 3;
    f[3] = (uint8_t)((len + 24) >> 8);
    f[4] = (uint8_t)(len + 24);
    for (int i = 0; i < 8; i++)
        f[5 + i] = (uint8_t)(sn >> (56 - 8 * i));
    for (size_t i = 0; i < len; i++)
        f[TLS_PAYLOAD_OFFSET + i] = (uint8_t)(seed + i);
    return p;
}

/* The record sealed in software under KEY/SALT: what a refused flow must send. */
static void sealed_copy(uint64_t sn, size_t len, uint8_t seed, uint8_t *out)
{
    struct pbuf *p = frame(sn, len, seed);
    struct tls_aead *a = tls_aead_new(KEY, sizeof(KEY), SALT);
    ck_assert_ptr_nonnull(a);
    size_t n = tls_record_seal(a, sn, 23, (uint8_t *)p->payload + TLS_PAYLOAD_OFFSET, len, out);
    ck_assert_uint_eq(n, len + TLS_RECORD_OVERHEAD);
    tls_aead_free(a);
    pbuf_free(p);
}

static const struct tls_offload_counters *txc(enum tls_tx_resync policy)
{
    return tls_offload_counters(O, policy);
}

static const struct tls_offload_rx_counters *rxc(void)
{
    return tls_offload_rx_counters(O);
}

static struct stack_tls_flow *last_flow(void)
{
    ck_assert_uint_gt(D.nflows, 0);
    return &D.flows[D.nflows - 1];
}

static bool get(struct stack_tls_flow *f, uint32_t seq, struct stack_tls_record *r)
{
    return f->host->get_record(f->host_flow, seq, true, r);
}

/* ---- TX ---- */

START_TEST(tx_add_params)
{
    struct tls_tx_offload *t =
        tls_tx_offload_start(O, TLS_TX_RESYNC_TAGCACHE, PCB, KEY, sizeof(KEY), SALT, 1000, 1);
    ck_assert_ptr_nonnull(t);
    struct stack_tls_flow *f = last_flow();
    ck_assert(!f->rx);
    ck_assert_uint_eq(f->p.saddr, PP_HTONL(0x0a000001));
    ck_assert_uint_eq(f->p.daddr, PP_HTONL(0x0a000002));
    ck_assert_uint_eq(f->p.sport, PP_HTONS(443));
    ck_assert_uint_eq(f->p.dport, PP_HTONS(40000));
    ck_assert_uint_eq(f->p.start_seq, 1000);
    ck_assert_uint_eq(f->p.record_sn, 1);
    ck_assert_uint_eq(f->p.key_len, 16);
    ck_assert_mem_eq(f->key, KEY, 16);
    ck_assert_mem_eq(f->p.salt, SALT, 4);
    ck_assert_int_eq(f->p.policy, STACK_TLS_TX_RESYNC_TAGCACHE);
    ck_assert_uint_eq(f->host->frame_end(f->host_flow), 1000);
    ck_assert_uint_eq(txc(TLS_TX_RESYNC_TAGCACHE)->tx_tls_ctx_fail, 0);
    tls_tx_offload_release(t, NULL, false);
    ck_assert(f->deleted);
}
END_TEST

/* get_record finds the record holding any byte the driver may have to
   resend, with its start, length and number; nothing outside them. */
START_TEST(tx_store_get_record)
{
    struct tls_tx_offload *t =
        tls_tx_offload_start(O, TLS_TX_RESYNC_DUMP, PCB, KEY, sizeof(KEY), SALT, 1000, 1);
    ck_assert_ptr_nonnull(t);
    struct stack_tls_flow *f = last_flow();
    const size_t lens[3] = {100, 1000, 1};
    struct pbuf *p[3];
    uint32_t seq = 1000;
    uint32_t starts[3];
    for (int i = 0; i < 3; i++) {
        p[i] = frame((uint64_t)i + 1, lens[i], (uint8_t)i);
        starts[i] = seq;
        tls_tx_offload_record(t, p[i], seq, (uint64_t)i + 1);
        ck_assert_uint_eq(p[i]->ref, 2); /* the store's reference */
        seq += p[i]->len;
    }
    ck_assert_uint_eq(f->host->frame_end(f->host_flow), seq);
    const struct tls_offload_counters *c = txc(TLS_TX_RESYNC_DUMP);
    ck_assert_uint_eq(c->tx_records, 3);
    ck_assert_uint_eq(c->tx_record_bytes, seq - 1000);
    ck_assert_uint_eq(c->records_in_store, 3);

    struct stack_tls_record r;
    for (int i = 0; i < 3; i++) {
        uint32_t probes[2] = {starts[i], starts[i] + p[i]->len - 1};
        for (int k = 0; k < 2; k++) {
            ck_assert(get(f, probes[k], &r));
            ck_assert_ptr_eq(r.p, p[i]);
            ck_assert_uint_eq(r.start_seq, starts[i]);
            ck_assert_uint_eq(r.len, p[i]->len);
            ck_assert_uint_eq(r.record_sn, (uint64_t)i + 1);
            ck_assert(!r.tag_valid && !r.sealed);
        }
    }
    ck_assert(!get(f, 999, &r));
    ck_assert(!get(f, seq, &r));

    /* ACKs: everything before lastack goes when nothing is queued... */
    PCB->lastack = starts[1];
    tls_tx_offload_acked(t, PCB);
    ck_assert_uint_eq(c->records_in_store, 2);
    ck_assert_uint_eq(p[0]->ref, 1);
    ck_assert(!get(f, starts[0], &r));
    /* ...but a record overlapping the oldest queued segment stays, even if
       acked: lwIP resends whole segments. */
    struct tcp_hdr hdr = {.seqno = lwip_htonl(starts[1] + 10)};
    struct tcp_seg seg = {.tcphdr = &hdr};
    PCB->unacked = &seg;
    PCB->lastack = starts[2] + 1;
    tls_tx_offload_acked(t, PCB);
    ck_assert_uint_eq(c->records_in_store, 2);
    ck_assert(get(f, starts[1] + 10, &r));
    PCB->unacked = NULL;
    tls_tx_offload_acked(t, PCB);
    ck_assert_uint_eq(c->records_in_store, 1); /* the last byte is not acked yet */
    PCB->lastack = seq;
    tls_tx_offload_acked(t, PCB);
    ck_assert_uint_eq(c->records_in_store, 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(p[i]->ref, 1);
        pbuf_free(p[i]);
    }
    tls_tx_offload_release(t, NULL, false);
}
END_TEST

START_TEST(tx_tag_reports)
{
    struct tls_tx_offload *t =
        tls_tx_offload_start(O, TLS_TX_RESYNC_TAGCACHE, PCB, KEY, sizeof(KEY), SALT, 5000, 7);
    struct stack_tls_flow *f = last_flow();
    struct pbuf *a = frame(7, 50, 1), *b = frame(8, 60, 2);
    tls_tx_offload_record(t, a, 5000, 7);
    tls_tx_offload_record(t, b, 5000 + a->len, 8);
    uint8_t tag[16];
    memset(tag, 0x5a, sizeof(tag));
    f->host->tag_report(f->host_flow, 8, tag);
    f->host->tag_report(f->host_flow, 9, tag); /* no such record: ignored */
    struct stack_tls_record r;
    ck_assert(get(f, 5000 + a->len, &r));
    ck_assert(r.tag_valid);
    ck_assert_mem_eq(r.tag, tag, 16);
    ck_assert(get(f, 5000, &r));
    ck_assert(!r.tag_valid);
    ck_assert_uint_eq(txc(TLS_TX_RESYNC_TAGCACHE)->tx_tls_tags_cached, 1);
    tls_tx_offload_release(t, NULL, false);
    pbuf_free(a);
    pbuf_free(b);
}
END_TEST

/* The device has no context to give (no id, ring full): no flow, counted,
   the connection keeps software crypto. A bad key never reaches it. */
START_TEST(tx_add_refused)
{
    D.refuse_add = true;
    ck_assert_ptr_null(
        tls_tx_offload_start(O, TLS_TX_RESYNC_DUMP, PCB, KEY, sizeof(KEY), SALT, 1000, 1));
    ck_assert_uint_eq(txc(TLS_TX_RESYNC_DUMP)->tx_tls_ctx_fail, 1);
    D.refuse_add = false;
    ck_assert_ptr_null(tls_tx_offload_start(O, TLS_TX_RESYNC_DUMP, PCB, KEY, 20, SALT, 1000, 1));
    ck_assert_uint_eq(txc(TLS_TX_RESYNC_DUMP)->tx_tls_ctx_fail, 2);
    ck_assert_uint_eq(D.nflows, 0);
    ck_assert_ptr_null(tls_rx_offload_start(O, PCB, KEY, 24, SALT, 1000, 1));
    D.refuse_add = true;
    ck_assert_ptr_null(tls_rx_offload_start(O, PCB, KEY, sizeof(KEY), SALT, 1000, 1));
    ck_assert_uint_eq(rxc()->rx_tls_ctx_fail, 2);
}
END_TEST

/* The NIC refused the install: records already in the store are sealed in
   place, later ones as they are stored, so get_record hands the driver
   ciphertext identical to a software record layer's. An accepted install
   leaves the frames plaintext. */
START_TEST(tx_install_refused_seals_store)
{
    for (int refused = 0; refused < 2; refused++) {
        struct tls_tx_offload *t =
            tls_tx_offload_start(O, TLS_TX_RESYNC_DUMP, PCB, KEY, sizeof(KEY), SALT, 100, 1);
        struct stack_tls_flow *f = last_flow();
        struct pbuf *a = frame(1, 300, 3), *b = frame(2, 40, 4);
        uint8_t plain_a[400], want_a[400], want_b[100];
        memcpy(plain_a, a->payload, a->len);
        sealed_copy(1, 300, 3, want_a);
        sealed_copy(2, 40, 4, want_b);
        tls_tx_offload_record(t, a, 100, 1);
        f->host->install_done(f->host_flow, !refused);
        ck_assert(tls_tx_offload_failed(t) == (bool)refused);
        tls_tx_offload_record(t, b, 100 + a->len, 2);
        struct stack_tls_record r;
        ck_assert(get(f, 100, &r));
        ck_assert(r.sealed == (bool)refused);
        ck_assert_mem_eq(a->payload, refused ? want_a : plain_a, a->len);
        ck_assert(get(f, 100 + a->len, &r));
        ck_assert(r.sealed == (bool)refused);
        if (refused)
            ck_assert_mem_eq(b->payload, want_b, b->len);
        else
            ck_assert_uint_eq(((uint8_t *)b->payload)[TLS_PAYLOAD_OFFSET], 4);
        tls_tx_offload_release(t, NULL, false);
        pbuf_free(a);
        pbuf_free(b);
    }
}
END_TEST

/* Static records (docs/design.md §4): the store keeps header and pointer;
   the frame the driver gets is built on first request, equals the frame a
   copy would have made, and is built once. Refused: sealed like the rest. */
START_TEST(tx_static_records)
{
    static uint8_t payload[2][300];
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof(payload[k]); i++)
            payload[k][i] = (uint8_t)(k + 3 + i); /* as frame(sn, 300, k + 3) */
    for (int refused = 0; refused < 2; refused++) {
        struct tls_tx_offload *t =
            tls_tx_offload_start(O, TLS_TX_RESYNC_DUMP, PCB, KEY, sizeof(KEY), SALT, 100, 1);
        struct stack_tls_flow *f = last_flow();
        const struct tls_offload_counters *c = txc(TLS_TX_RESYNC_DUMP);
        uint64_t built0 = c->tx_static_frames_built, static0 = c->tx_static_records;
        struct pbuf *ref[2] = {frame(1, 300, 3), frame(2, 300, 4)};
        uint8_t want[2][400];
        for (int k = 0; k < 2; k++) {
            if (refused)
                sealed_copy((uint64_t)k + 1, 300, (uint8_t)(k + 3), want[k]);
            else
                memcpy(want[k], ref[k]->payload, ref[k]->len);
        }
        uint16_t rec_len = ref[0]->len;
        tls_tx_offload_record_static(t, ref[0]->payload, payload[0], 300, 100, 1);
        ck_assert_uint_eq(c->tx_static_records, static0 + 1);
        ck_assert_uint_eq(c->tx_static_frames_built, built0); /* nothing copied yet */
        ck_assert_uint_eq(f->host->frame_end(f->host_flow), 100u + rec_len);
        f->host->install_done(f->host_flow, !refused);
        /* refused: the store sealed it, which needed its frame */
        ck_assert_uint_eq(c->tx_static_frames_built, built0 + (unsigned)refused);
        tls_tx_offload_record_static(t, ref[1]->payload, payload[1], 300, 100u + rec_len, 2);
        struct stack_tls_record r;
        if (!refused) { /* a tag-cache one-shot asks without bytes: nothing built */
            ck_assert(f->host->get_record(f->host_flow, 100u + rec_len, false, &r));
            ck_assert_ptr_null(r.p);
            ck_assert_uint_eq(r.record_sn, 2);
            ck_assert_uint_eq(c->tx_static_frames_built, built0);
        }
        for (int k = 0; k < 2; k++) {
            ck_assert(get(f, 100u + (uint32_t)k * rec_len + 7, &r));
            ck_assert_uint_eq(r.start_seq, 100u + (uint32_t)k * rec_len);
            ck_assert_uint_eq(r.len, rec_len);
            ck_assert_uint_eq(r.record_sn, (uint64_t)k + 1);
            ck_assert(r.sealed == (bool)refused);
            ck_assert_uint_ge(r.p->len, rec_len);
            ck_assert_mem_eq(r.p->payload, want[k], rec_len);
        }
        ck_assert_uint_eq(c->tx_static_frames_built, built0 + 2);
        ck_assert(get(f, 100, &r)); /* built once */
        ck_assert_uint_eq(c->tx_static_frames_built, built0 + 2);
        PCB->lastack = 100u + 2u * rec_len;
        tls_tx_offload_acked(t, PCB);
        ck_assert(!get(f, 100, &r));
        tls_tx_offload_release(t, NULL, false);
        pbuf_free(ref[0]);
        pbuf_free(ref[1]);
    }
}
END_TEST

/* ---- RX ---- */

static struct tls_rx_offload *rx_start(uint32_t seq, uint64_t sn)
{
    struct tls_rx_offload *r = tls_rx_offload_start(O, PCB, KEY, sizeof(KEY), SALT, seq, sn);
    ck_assert_ptr_nonnull(r);
    return r;
}

static void expect_call(unsigned i, enum call_kind kind, uint32_t seq, uint64_t sn)
{
    ck_assert_uint_lt(i, D.ncalls);
    ck_assert_int_eq(D.calls[i].kind, kind);
    ck_assert_uint_eq(D.calls[i].seq, seq);
    ck_assert_uint_eq(D.calls[i].sn, sn);
}

START_TEST(rx_add_params)
{
    tls_offload_set_rx_hint(O, true);
    struct tls_rx_offload *r = rx_start(9000, 3);
    struct stack_tls_flow *f = last_flow();
    ck_assert(f->rx);
    /* packets we receive: the peer is the source */
    ck_assert_uint_eq(f->p.saddr, PP_HTONL(0x0a000002));
    ck_assert_uint_eq(f->p.daddr, PP_HTONL(0x0a000001));
    ck_assert_uint_eq(f->p.sport, PP_HTONS(40000));
    ck_assert_uint_eq(f->p.dport, PP_HTONS(443));
    ck_assert_uint_eq(f->p.start_seq, 9000);
    ck_assert_uint_eq(f->p.record_sn, 3);
    ck_assert(f->p.rx_hint);
    ck_assert_uint_eq(f->p.rx_wnd_right_edge, 777777);
    ck_assert_uint_eq(f->p.rx_wnd_scale, 7);
    tls_rx_offload_stop(r);
    ck_assert(f->deleted);
}
END_TEST

/* A request at the record boundary tls/ stands on is confirmed with its
   number; one behind it is denied; later ones wait until tls/ reaches or
   passes them. */
START_TEST(rx_resync_confirm_deny)
{
    struct tls_rx_offload *r = rx_start(5000, 1);
    struct stack_tls_flow *f = last_flow();
    f->host->install_done(f->host_flow, true);
    f->host->resync_request(f->host_flow, 5000);
    expect_call(0, CALL_CONFIRM, 5000, 1);
    f->host->resync_request(f->host_flow, 4000);
    expect_call(1, CALL_DENY, 4000, 0);
    f->host->resync_request(f->host_flow, 5300);
    f->host->resync_request(f->host_flow, 5350);
    f->host->resync_request(f->host_flow, 5600);
    ck_assert_uint_eq(D.ncalls, 2);
    tls_rx_offload_record_done(r, 5300, 2, false);
    expect_call(2, CALL_CONFIRM, 5300, 2);
    ck_assert_uint_eq(D.ncalls, 3);
    tls_rx_offload_record_done(r, 5600, 3, false); /* 5350 was inside record 2 */
    expect_call(3, CALL_DENY, 5350, 0);
    expect_call(4, CALL_CONFIRM, 5600, 3);
    ck_assert_uint_eq(D.ncalls, 5);
    ck_assert_uint_eq(rxc()->rx_resync_requests, 5);
    ck_assert_uint_eq(rxc()->TlsRxDeviceResync, 3);
    ck_assert_uint_eq(rxc()->rx_resync_denied, 2);

    /* Ring full: nothing posted, nothing counted as answered. */
    D.ring_full = true;
    f->host->resync_request(f->host_flow, 5600);
    ck_assert_uint_eq(rxc()->rx_resync_requests, 6);
    ck_assert_uint_eq(rxc()->TlsRxDeviceResync, 3);
    D.ring_full = false;

    /* More than 8 pending: the oldest are dropped (counted). */
    for (uint32_t i = 0; i < 10; i++)
        f->host->resync_request(f->host_flow, 7000 + 100 * i);
    ck_assert_uint_eq(rxc()->rx_resync_req_dropped, 2);
    unsigned n0 = D.ncalls;
    tls_rx_offload_record_done(r, 8000, 20, false);
    /* 7000, 7100 were dropped: 7200..7900 denied, 8000 confirmed */
    ck_assert_uint_eq(D.ncalls - n0, 8); /* 7000, 7100 dropped; the rest passed */
    for (unsigned i = 0; i < 8; i++)
        expect_call(n0 + i, CALL_DENY, 7200 + 100 * i, 0);
    tls_rx_offload_stop(r);
}
END_TEST

/* A refused RX install: requests are neither counted nor answered, no hint. */
START_TEST(rx_install_refused_silent)
{
    tls_offload_set_rx_hint(O, true);
    struct tls_rx_offload *r = rx_start(100, 1);
    struct stack_tls_flow *f = last_flow();
    f->host->install_done(f->host_flow, false);
    f->host->resync_request(f->host_flow, 100);
    for (uint32_t i = 0; i < 10; i++) {
        tls_rx_offload_record_done(r, 200 + 100 * i, i + 2, false);
        tls_rx_offload_future_record(r, 300 + 100 * i, i + 3);
    }
    ck_assert_uint_eq(D.ncalls, 0);
    ck_assert_uint_eq(rxc()->rx_resync_requests, 0);
    ck_assert_uint_eq(rxc()->rx_hints_sent, 0);
    tls_rx_offload_stop(r);
}
END_TEST

/* tls/ finished record *rec (offloaded or not) and sees where the one after
   the next starts. */
static void next_record(struct tls_rx_offload *r, uint32_t *rec, bool offloaded)
{
    uint32_t n = ++*rec;
    tls_rx_offload_record_done(r, 100 * (n + 1), n + 2, offloaded);
    tls_rx_offload_future_record(r, 100 * (n + 2), n + 3);
}

/* Hint mode: after 2 software-decrypted records a hint, then after 4, 8,
   ... 128 (capped); a fully offloaded record resets the wait to 2. A hint
   the ring cannot take is retried at the next record. */
START_TEST(rx_hint_backoff)
{
    tls_offload_set_rx_hint(O, true);
    struct tls_rx_offload *r = rx_start(0, 1);
    last_flow()->host->install_done(last_flow()->host_flow, true);
    unsigned hinted_at[16], nh = 0;
    uint32_t rec = 0;
    for (; rec < 2 + 4 + 8 + 16 + 32 + 64 + 128 + 128 + 128; rec++) {
        unsigned before = D.ncalls;
        tls_rx_offload_record_done(r, 100 * (rec + 1), rec + 2, false);
        tls_rx_offload_future_record(r, 100 * (rec + 2), rec + 3);
        if (D.ncalls != before) {
            expect_call(before, CALL_HINT, 100 * (rec + 2), rec + 3);
            ck_assert_uint_lt(nh, 16);
            hinted_at[nh++] = rec + 1; /* records done so far */
        }
    }
    const unsigned want[] = {2, 6, 14, 30, 62, 126, 254, 382, 510};
    ck_assert_uint_eq(nh, sizeof(want) / sizeof(want[0]));
    for (unsigned i = 0; i < nh; i++)
        ck_assert_uint_eq(hinted_at[i], want[i]);
    ck_assert_uint_eq(rxc()->rx_hints_sent, nh);

    /* An offloaded record: back to 2. */
    rec--; /* next_record counts from the last record done */
    next_record(r, &rec, true);
    unsigned before = D.ncalls;
    next_record(r, &rec, false);
    next_record(r, &rec, false);
    ck_assert_uint_eq(D.ncalls - before, 1);

    /* Ring full at the due record (the 4th): not counted, tried again at
       the next record. */
    for (int i = 0; i < 3; i++)
        next_record(r, &rec, false);
    D.ring_full = true;
    uint64_t sent = rxc()->rx_hints_sent;
    next_record(r, &rec, false);
    ck_assert_uint_eq(rxc()->rx_hints_sent, sent);
    D.ring_full = false;
    before = D.ncalls;
    next_record(r, &rec, false);
    ck_assert_uint_eq(D.ncalls - before, 1);
    ck_assert_uint_eq(rxc()->rx_hints_sent, sent + 1);

    /* Hint mode off: never a hint. */
    tls_offload_set_rx_hint(O, false);
    before = D.ncalls;
    for (int i = 0; i < 300; i++)
        next_record(r, &rec, false);
    ck_assert_uint_eq(D.ncalls, before);
    tls_rx_offload_stop(r);
}
END_TEST

/* Freeing the offload deletes every flow still started, once each, and
   drops the store's references. */
START_TEST(free_deletes_every_flow)
{
    struct tls_tx_offload *t =
        tls_tx_offload_start(O, TLS_TX_RESYNC_DUMP, PCB, KEY, sizeof(KEY), SALT, 1, 1);
    ck_assert_ptr_nonnull(t);
    rx_start(1, 1);
    rx_start(2, 1);
    struct pbuf *a = frame(1, 10, 0);
    tls_tx_offload_record(t, a, 1, 1);
    ck_assert_uint_eq(a->ref, 2);
    tls_offload_free(O);
    O = NULL;
    ck_assert_uint_eq(D.ndel, 3);
    for (unsigned i = 0; i < D.nflows; i++)
        ck_assert(D.flows[i].deleted);
    ck_assert_uint_eq(a->ref, 1);
    pbuf_free(a);
}
END_TEST

/* ---- offload policy (docs/design.md §4.1) ---- */

static struct tls_offload_policy policy(const char *spec)
{
    struct tls_offload_policy p;
    ck_assert_int_eq(tls_offload_policy_parse(spec, &p), 0);
    tls_offload_set_policy(O, &p);
    return p;
}

/* Walk a stream of records of the given sizes through a fresh gate; returns
   the payload offset of the first record boundary the gate opens at
   (UINT64_MAX: never), counting it as started. */
static uint64_t first_open(const size_t *sizes, size_t n, bool tx)
{
    struct tls_offload_gate g = {0};
    uint64_t done = 0;
    for (size_t i = 0; i <= n; i++) {
        if (tls_offload_gate_check(O, &g, done)) {
            tls_offload_gate_started(O, &g, tx, TLS_TX_RESYNC_DUMP, done, true);
            ck_assert(!tls_offload_gate_check(O, &g, done + 1)); /* decided: asks no more */
            return done;
        }
        if (i < n)
            done += sizes[i];
    }
    tls_offload_gate_end(O, &g, tx, TLS_TX_RESYNC_DUMP);
    return UINT64_MAX;
}

START_TEST(policy_parse)
{
    struct tls_offload_policy p = {.kind = TLS_OFFLOAD_AFTER, .after_bytes = 7};
    static const char *const bad[] = {
        "",         "never",      "after:",      "after:-1",
        "after:1x", "after:+5",   "auto:1,2",    "auto:1,2,3,",
        "auto:",    "auto:a,b,c", "always,auto", "after:99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(tls_offload_policy_parse(bad[i], &p), -1);
        ck_assert_uint_eq(p.after_bytes, 7); /* untouched */
    }
    ck_assert_int_eq(tls_offload_policy_parse("always", &p), 0);
    ck_assert_int_eq(p.kind, TLS_OFFLOAD_ALWAYS);
    ck_assert_uint_eq(tls_offload_policy_breakeven(&p), 0);
    ck_assert_int_eq(tls_offload_policy_parse("after:65536", &p), 0);
    ck_assert_int_eq(p.kind, TLS_OFFLOAD_AFTER);
    ck_assert_uint_eq(tls_offload_policy_breakeven(&p), 65536);
    ck_assert_int_eq(tls_offload_policy_parse("auto", &p), 0);
    ck_assert_uint_eq(p.install_ns, TLS_OFFLOAD_AUTO_INSTALL_NS);
    ck_assert_int_eq(tls_offload_policy_parse("auto:30000,1000,250", &p), 0);
    /* 30 us saved at 750 ps per byte: 40000 bytes */
    ck_assert_uint_eq(tls_offload_policy_breakeven(&p), 40000);
    char buf[64];
    tls_offload_policy_format(&p, buf, sizeof(buf));
    ck_assert_str_eq(buf, "auto:30000,1000,250");
    ck_assert_int_eq(tls_offload_policy_parse("auto:30000,250,250", &p), 0);
    ck_assert_uint_eq(tls_offload_policy_breakeven(&p), UINT64_MAX); /* never pays */
}
END_TEST

/* after:BYTES opens exactly at the first record boundary at or past BYTES,
   whatever the record sizes; always at the first record. */
START_TEST(policy_after_switches_at_boundary)
{
    static const size_t full[8] = {16384, 16384, 16384, 16384, 16384, 16384, 16384, 16384};
    static const size_t mixed[8] = {100, 16384, 5000, 30000, 16384, 10, 16384, 16384};
    policy("always");
    ck_assert_uint_eq(first_open(full, 8, true), 0);
    ck_assert_uint_eq(txc(TLS_TX_RESYNC_DUMP)->offload_tx_at_open, 1);
    policy("after:65536");
    ck_assert_uint_eq(first_open(full, 8, true), 65536);
    policy("after:70000");
    ck_assert_uint_eq(first_open(full, 8, true), 81920);
    ck_assert_uint_eq(txc(TLS_TX_RESYNC_DUMP)->offload_tx_switched, 2);
    policy("after:65536");
    ck_assert_uint_eq(first_open(mixed, 8, false), 100 + 16384 + 5000 + 30000 + 16384);
    ck_assert_uint_eq(rxc()->offload_rx_switched, 1);
    /* a stream that ends before BYTES is kept in software, counted once */
    ck_assert_uint_eq(first_open(mixed, 3, false), UINT64_MAX);
    ck_assert_uint_eq(rxc()->offload_rx_kept_sw, 1);
    ck_assert_uint_eq(rxc()->offload_rx_at_open, 0);
    ck_assert_uint_eq(txc(TLS_TX_RESYNC_DUMP)->offload_tx_kept_sw, 0);
}
END_TEST

/* auto: by the announced size at open, else once the break-even went
   through in software. */
START_TEST(policy_auto_by_expected_size)
{
    struct tls_offload_policy p = policy("auto:40000,1000,200"); /* 50000 bytes */
    uint64_t be = tls_offload_policy_breakeven(&p);
    ck_assert_uint_eq(be, 50000);
    struct tls_offload_gate small = {0}, big = {0}, exact = {0}, unknown = {0};
    tls_offload_gate_expect(&small, 0, 16384);
    ck_assert(!tls_offload_gate_check(O, &small, 0));
    tls_offload_gate_expect(&big, 0, 1 << 20);
    ck_assert(tls_offload_gate_check(O, &big, 0));
    tls_offload_gate_expect(&exact, 0, be);
    ck_assert(tls_offload_gate_check(O, &exact, 0));
    ck_assert(!tls_offload_gate_check(O, &unknown, 0));
    ck_assert(!tls_offload_gate_check(O, &unknown, be - 1));
    ck_assert(tls_offload_gate_check(O, &unknown, be));
    /* a later announcement counts from where the stream stands */
    tls_offload_gate_expect(&small, 16384, be - 1);
    ck_assert(!tls_offload_gate_check(O, &small, 16384));
    tls_offload_gate_expect(&small, 16384, be);
    ck_assert(tls_offload_gate_check(O, &small, 16384));
    /* the announced bytes are used up: no longer a reason */
    struct tls_offload_gate used = {0};
    tls_offload_gate_expect(&used, 0, be);
    ck_assert(!tls_offload_gate_check(O, &used, 1000));
    tls_offload_gate_started(O, &big, true, TLS_TX_RESYNC_TAGCACHE, 0, true);
    tls_offload_gate_started(O, &small, true, TLS_TX_RESYNC_TAGCACHE, 16384, true);
    tls_offload_gate_end(O, &big, true, TLS_TX_RESYNC_TAGCACHE); /* decided: not kept_sw */
    tls_offload_gate_end(O, &unknown, true, TLS_TX_RESYNC_TAGCACHE);
    tls_offload_gate_end(O, &unknown, true, TLS_TX_RESYNC_TAGCACHE); /* once */
    const struct tls_offload_counters *c = txc(TLS_TX_RESYNC_TAGCACHE);
    ck_assert_uint_eq(c->offload_tx_at_open, 1);
    ck_assert_uint_eq(c->offload_tx_switched, 1);
    ck_assert_uint_eq(c->offload_tx_kept_sw, 1);
    ck_assert_uint_eq(txc(TLS_TX_RESYNC_DUMP)->offload_tx_at_open, 0);
    /* a failed start is decided but counted by the context failure only */
    struct tls_offload_gate f = {0};
    tls_offload_gate_started(O, &f, false, TLS_TX_RESYNC_DUMP, 0, false);
    tls_offload_gate_end(O, &f, false, TLS_TX_RESYNC_DUMP);
    ck_assert_uint_eq(rxc()->offload_rx_at_open + rxc()->offload_rx_kept_sw, 0);
    /* SW_PS <= NIC_PS: never, whatever is announced */
    policy("auto:1,100,100");
    struct tls_offload_gate n = {0};
    tls_offload_gate_expect(&n, 0, UINT64_MAX);
    ck_assert(!tls_offload_gate_check(O, &n, UINT64_MAX - 1));
}
END_TEST

static Suite *tls_offload_suite(void)
{
    Suite *s = suite_create("tls_offload");
    TCase *tx = tcase_create("tx");
    tcase_add_checked_fixture(tx, setup, teardown);
    tcase_add_test(tx, tx_add_params);
    tcase_add_test(tx, tx_store_get_record);
    tcase_add_test(tx, tx_tag_reports);
    tcase_add_test(tx, tx_add_refused);
    tcase_add_test(tx, tx_install_refused_seals_store);
    tcase_add_test(tx, tx_static_records);
    suite_add_tcase(s, tx);
    TCase *rx = tcase_create("rx");
    tcase_add_checked_fixture(rx, setup, teardown);
    tcase_add_test(rx, rx_add_params);
    tcase_add_test(rx, rx_resync_confirm_deny);
    tcase_add_test(rx, rx_install_refused_silent);
    tcase_add_test(rx, rx_hint_backoff);
    tcase_add_test(rx, free_deletes_every_flow);
    suite_add_tcase(s, rx);
    TCase *pol = tcase_create("policy");
    tcase_add_checked_fixture(pol, setup, teardown);
    tcase_add_test(pol, policy_parse);
    tcase_add_test(pol, policy_after_switches_at_boundary);
    tcase_add_test(pol, policy_auto_by_expected_size);
    suite_add_tcase(s, pol);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tls_offload_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
