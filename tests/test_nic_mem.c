/*
 * test_nic_mem.c - the NIC's memory model (docs/design.md §10), driven
 * through the device's queues as a driver would, with the engine run in the
 * test's thread (nic_dev_poll_once) and a socketpair standing in for TUN:
 *
 *  - lru_scripted: a context cache of 3 under a scripted pattern of installs
 *    and accesses (TX PROGRESS descriptors); after every step the exact hit,
 *    miss, eviction, fetch and write-back counters, the resident gauge and
 *    the LRU order; the write-back stamp lands in the host block's NIC part
 *    and leaves the driver's part alone; deleting resident and evicted
 *    contexts leaves nothing resident and every slot free.
 *  - fetch_bad_block: a host that changes a lent block loses that context
 *    (counted once, its descriptors refused), never another one.
 *  - no_host_block: with a cache an install without a host block is refused
 *    and counted; without a cache it is taken (every context resident).
 *  - many_flows: 3000 RX contexts (a table past 1024) with a cache of 64:
 *    a data segment for flows above 1024 is found by its 4-tuple, misses and
 *    evictions are exact, and deleting all leaves the table and the cache
 *    empty.
 *  - reorder_pool_full: the device-wide RX reorder pool bounds what flows
 *    hold ahead of a hole; the segment that does not fit is counted and the
 *    pool is empty again once the flow moved on.
 */
#include <arpa/inet.h>
#include <check.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nic_abi.h"
#include "nic_dev.h"
#include "nic_engine.h" /* white box: the flow table and the LRU list */
#include "nic_flow.h"
#include "nic_tls.h"
#include "test_util.h"

#define TX_RING    64u
#define RX_RING    64u
#define RX_BUF_LEN 2048u
#define FETCH_NS   1000u
#define MAX_BLOCKS 3000u

static struct tu_drv h = {.wire = -1};
static uint8_t (*blocks)[NIC_CTX_HOST_BYTES]; /* the driver's host blocks, by flow id - 1 */
static uint8_t g_rxbuf[RX_RING][RX_BUF_LEN];

static const uint8_t KEY[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void dev_open(uint32_t max_flows, uint32_t cache, uint64_t scratch)
{
    struct nic_dev_cfg cfg = {.tx_ring_size = TX_RING,
                              .rx_ring_size = RX_RING,
                              .mtu = 1500,
                              .max_flows = max_flows,
                              .ctx_cache = cache,
                              .fetch_ns = FETCH_NS,
                              .scratch_bytes = scratch,
                              .rx_reorder_bytes = 262144};
    tu_drv_open(&h, &cfg);
    blocks = calloc(MAX_BLOCKS, NIC_CTX_HOST_BYTES);
    TU_CHECK(blocks != NULL);
    for (uint32_t i = 0; i < RX_RING; i++)
        tu_rx_post(&h, g_rxbuf[i], RX_BUF_LEN, i);
    tu_rx_publish(&h);
}

static void dev_close(void)
{
    tu_drv_close(&h);
    free(blocks);
    blocks = NULL;
}

static bool cq_take(bool rx, struct nic_cqe *out)
{
    if (!tu_cq_take(&h, rx, out))
        return false;
    tu_cq_publish(&h, rx);
    return true;
}

/* One signalled control descriptor for flow id; returns its status. */
static int ctrl(uint8_t kind, uint32_t id, uint64_t addr, uint16_t len, uint32_t seq)
{
    struct nic_tx_desc d;
    memset(&d, 0, sizeof(d));
    d.kind = kind;
    d.flags = NIC_TXF_SIGNAL;
    d.flow_id = id;
    d.addr = addr;
    d.len = len;
    d.tcp_seq = seq;
    d.record_sn = 1;
    tu_tx_post(&h, &d);
    tu_tx_publish(&h);
    nic_dev_poll_once(h.dev);
    struct nic_cqe e;
    TU_CHECK(cq_take(false, &e));
    TU_CHECK_EQ(e.kind, NIC_CQE_TX_DONE);
    TU_CHECK_EQ(e.desc_kind, kind);
    return e.status;
}

/* Flow id's block: the static context of a flow with its own 4-tuple
   (peer port 10000 + id), as stack/stack_tls_offload.c writes it. */
static uint8_t *fill_block(uint32_t id, uint8_t dir, uint32_t start_seq)
{
    uint8_t *b = blocks[id - 1];
    memset(b, 0, NIC_CTX_HOST_BYTES);
    struct nic_tls_static_ctx st = {.cipher = NIC_CIPHER_AES_128_GCM,
                                    .direction = dir,
                                    .start_tcp_sn = start_seq,
                                    .record_sn = 1};
    memcpy(st.key, KEY, sizeof(KEY));
    uint32_t host = htonl(TU_HOST_IP), peer = htonl(TU_PEER_IP);
    uint16_t hp = htons(TU_HOST_PORT), pp = htons((uint16_t)(10000 + id));
    if (dir == NIC_CTX_TX) {
        st.saddr = host, st.daddr = peer, st.sport = hp, st.dport = pp;
    } else {
        st.saddr = peer, st.daddr = host, st.sport = pp, st.dport = hp;
    }
    memcpy(b, &st, sizeof(st));
    return b;
}

static int install(uint32_t id, uint8_t dir, uint32_t start_seq)
{
    uint8_t *b = fill_block(id, dir, start_seq);
    return ctrl(NIC_TX_STATIC_CTX, id, (uint64_t)(uintptr_t)b, NIC_CTX_HOST_BYTES, 0);
}

/* Access a TX context: a PROGRESS descriptor (the NIC reads its state). */
static int touch(uint32_t id)
{
    return ctrl(NIC_TX_PROGRESS, id, 0, 0, 1000);
}

/* The LRU list, most recent first, as flow ids; returns its length. */
static unsigned lru(uint32_t *out, unsigned cap)
{
    unsigned n = 0;
    uint32_t prev = 0;
    for (uint32_t id = h.dev->tls.lru_head; id && n < cap;
         id = h.dev->flows->slots[id - 1].lru_next) {
        TU_CHECK_EQ(h.dev->flows->slots[id - 1].lru_prev, prev);
        TU_CHECK(h.dev->flows->slots[id - 1].resident);
        out[n++] = id;
        prev = id;
    }
    TU_CHECK_EQ(h.dev->tls.lru_tail, prev);
    return n;
}

struct step {
    char op; /* 'i' install, 'a' access, 'd' delete */
    uint32_t id;
    uint64_t hit, miss, evict; /* totals after the step */
    uint32_t order[3];         /* LRU order after it, 0-padded */
};

START_TEST(lru_scripted)
{
    dev_open(8, 3, 0);
    static const struct step script[] = {
        {'i', 1, 0, 0, 0, {1}},       {'i', 2, 0, 0, 0, {2, 1}},    {'i', 3, 0, 0, 0, {3, 2, 1}},
        {'i', 4, 0, 0, 1, {4, 3, 2}},                               /* full: 1 written back */
        {'a', 2, 1, 0, 1, {2, 4, 3}}, {'a', 1, 1, 1, 2, {1, 2, 4}}, /* fetched; 3 out */
        {'a', 4, 2, 1, 2, {4, 1, 2}}, {'a', 3, 2, 2, 3, {3, 4, 1}}, /* 2 out */
        {'a', 2, 2, 3, 4, {2, 3, 4}},                               /* 1 out again */
        {'a', 2, 3, 3, 4, {2, 3, 4}},                               /* the head: a hit, no move */
        {'d', 3, 3, 3, 4, {2, 4}},                                  /* resident: leaves the list */
        {'d', 1, 3, 3, 4, {2, 4}},                                  /* evicted: nothing to unlink */
        {'a', 4, 4, 3, 4, {4, 2}},    {'d', 4, 4, 3, 4, {2}},       {'d', 2, 4, 3, 4, {0}},
    };
    for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
        const struct step *s = &script[i];
        TU_CTX("step %zu: %c %u", i, s->op, s->id);
        int st = s->op == 'i'   ? install(s->id, NIC_CTX_TX, 1000)
                 : s->op == 'a' ? touch(s->id)
                                : ctrl(NIC_TX_DEL_CTX, s->id, 0, 0, 0);
        TU_CHECK_EQ(st, NIC_TX_OK);
        struct nic_counters c = tu_counters(h.dev);
        TU_CHECK_EQ(c.tls_ctx_cache_hit, s->hit);
        TU_CHECK_EQ(c.tls_ctx_cache_miss, s->miss);
        TU_CHECK_EQ(c.tls_ctx_evict, s->evict);
        TU_CHECK_EQ(c.tls_ctx_fetch_bytes, s->miss * NIC_CTX_HOST_BYTES);
        TU_CHECK_EQ(c.tls_ctx_fetch_wait_ns, s->miss * FETCH_NS);
        TU_CHECK_EQ(c.tls_ctx_writeback_bytes,
                    s->evict * (NIC_CTX_HOST_BYTES - NIC_CTX_HOST_NIC_OFF));
        uint32_t order[3];
        unsigned n = lru(order, 3);
        unsigned want = 0;
        while (want < 3 && s->order[want])
            want++;
        TU_CHECK_EQ(n, want);
        TU_CHECK_EQ(c.tls_ctx_resident, want);
        for (unsigned k = 0; k < n; k++)
            TU_CHECK_EQ(order[k], s->order[k]);
        if (i == 3) {
            /* 1's write-back is in the NIC's part; the driver's part (the
               static context, key included) is as the driver wrote it. */
            uint8_t want_block[NIC_CTX_HOST_BYTES];
            memcpy(want_block, blocks[0], sizeof(want_block));
            fill_block(1, NIC_CTX_TX, 1000);
            TU_CHECK(memcmp(want_block, blocks[0], NIC_CTX_HOST_NIC_OFF) == 0);
            memcpy(blocks[0], want_block, sizeof(want_block));
            uint32_t magic;
            memcpy(&magic, blocks[0] + NIC_CTX_HOST_NIC_OFF, 4);
            TU_CHECK(magic != 0);
        }
    }
    /* Nothing left: no slot used, nothing resident, no fetch was bad. */
    struct nic_counters c = tu_counters(h.dev);
    TU_CHECK_EQ(c.tls_ctx_resident, 0);
    TU_CHECK_EQ(c.tls_ctx_fetch_bad, 0);
    TU_CHECK_EQ(c.tx_tls_ctx, 4);
    TU_CHECK_EQ(c.tx_tls_del, 4);
    TU_CHECK_EQ(h.dev->tls.lru_head, 0);
    TU_CHECK_EQ(h.dev->tls.lru_tail, 0);
    for (uint32_t id = 1; id <= 8; id++)
        TU_CHECK(!h.dev->flows->slots[id - 1].used);
    dev_close();
}
END_TEST

START_TEST(fetch_bad_block)
{
    dev_open(8, 1, 0);
    TU_CHECK_EQ(install(1, NIC_CTX_TX, 1000), NIC_TX_OK);
    TU_CHECK_EQ(install(2, NIC_CTX_TX, 1000), NIC_TX_OK); /* 1 written back */
    blocks[0][NIC_CTX_HOST_NIC_OFF + 8] ^= 1;             /* the host scribbles on 1's block */
    TU_CHECK_EQ(touch(1), NIC_TX_ERR_NO_CTX);
    TU_CHECK_EQ(touch(1), NIC_TX_ERR_NO_CTX); /* unusable, counted once */
    struct nic_counters c = tu_counters(h.dev);
    TU_CHECK_EQ(c.tls_ctx_fetch_bad, 1);
    TU_CHECK_EQ(c.tls_ctx_cache_miss, 1);
    TU_CHECK_EQ(c.tx_tls_no_ctx, 2);
    /* 2 was evicted for it and comes back intact. */
    TU_CHECK_EQ(touch(2), NIC_TX_OK);
    c = tu_counters(h.dev);
    TU_CHECK_EQ(c.tls_ctx_fetch_bad, 1);
    TU_CHECK_EQ(c.tls_ctx_cache_miss, 2);
    TU_CHECK_EQ(ctrl(NIC_TX_DEL_CTX, 1, 0, 0, 0), NIC_TX_OK);
    TU_CHECK_EQ(ctrl(NIC_TX_DEL_CTX, 2, 0, 0, 0), NIC_TX_OK);
    TU_CHECK_EQ(tu_counters(h.dev).tls_ctx_resident, 0);
    dev_close();
}
END_TEST

START_TEST(no_host_block)
{
    dev_open(8, 2, 0);
    uint8_t *b = fill_block(1, NIC_CTX_TX, 1000);
    TU_CHECK_EQ(ctrl(NIC_TX_STATIC_CTX, 1, (uint64_t)(uintptr_t)b, 0, 0), NIC_TX_ERR_NO_CTX);
    TU_CHECK_EQ(ctrl(NIC_TX_STATIC_CTX, 1, (uint64_t)(uintptr_t)b, NIC_CTX_HOST_BYTES - 1, 0),
                NIC_TX_ERR_NO_CTX);
    struct nic_counters c = tu_counters(h.dev);
    TU_CHECK_EQ(c.tls_ctx_no_host_mem, 2);
    TU_CHECK_EQ(c.tx_tls_ctx, 0);
    TU_CHECK_EQ(c.tls_ctx_resident, 0);
    TU_CHECK(!h.dev->flows->slots[0].used);
    dev_close();
    /* No cache: every context stays resident, a bare static context will do. */
    dev_open(8, 0, 0);
    b = fill_block(1, NIC_CTX_TX, 1000);
    TU_CHECK_EQ(ctrl(NIC_TX_STATIC_CTX, 1, (uint64_t)(uintptr_t)b, 0, 0), NIC_TX_OK);
    TU_CHECK_EQ(touch(1), NIC_TX_OK);
    c = tu_counters(h.dev);
    TU_CHECK_EQ(c.tls_ctx_no_host_mem, 0);
    TU_CHECK_EQ(c.tls_ctx_resident, 1);
    TU_CHECK_EQ(c.tls_ctx_cache_hit, 1);
    TU_CHECK_EQ(c.tls_ctx_cache_miss, 0);
    TU_CHECK_EQ(ctrl(NIC_TX_DEL_CTX, 1, 0, 0, 0), NIC_TX_OK);
    TU_CHECK_EQ(tu_counters(h.dev).tls_ctx_resident, 0);
    dev_close();
}
END_TEST

/* A data segment from the peer of RX flow id (peer port 10000 + id). */
static void send_rx(uint32_t id, uint32_t seq, const uint8_t *payload, size_t len)
{
    uint8_t pkt[1600];
    struct tu_tcp s = {.saddr = TU_PEER_IP,
                       .daddr = TU_HOST_IP,
                       .sport = (uint16_t)(10000 + id),
                       .dport = TU_HOST_PORT,
                       .seq = seq,
                       .ack = 1,
                       .flags = TU_TCP_ACK,
                       .payload = payload,
                       .len = len};
    size_t n = tu_build_tcp(pkt, &s);
    tu_wire_send(h.wire, pkt, n);
}

/* Run the engine for the packet just sent; returns its completion. */
static struct nic_cqe rx_one(void)
{
    nic_dev_poll_once(h.dev);
    struct nic_cqe e;
    TU_CHECK(cq_take(true, &e));
    TU_CHECK_EQ(e.kind, NIC_CQE_RX_PACKET);
    tu_rx_post(&h, g_rxbuf[e.cookie], RX_BUF_LEN, e.cookie);
    tu_rx_publish(&h);
    return e;
}

#define MANY  3000u
#define CACHE 64u

START_TEST(many_flows)
{
    dev_open(MANY, CACHE, 0);
    for (uint32_t id = 1; id <= MANY; id++) {
        TU_CTX("install %u", id);
        TU_CHECK_EQ(install(id, NIC_CTX_RX, 5000), NIC_TX_OK);
    }
    struct nic_counters c = tu_counters(h.dev);
    TU_CHECK_EQ(c.rx_tls_ctx, MANY);
    TU_CHECK_EQ(c.flow_table_full, 0);
    TU_CHECK_EQ(c.tls_ctx_resident, CACHE);
    TU_CHECK_EQ(c.tls_ctx_evict, MANY - CACHE);
    /* Flows past 1024, none resident: each segment is found by its 4-tuple
       and fetched (a miss), evicting one. Then the same again: hits. */
    uint8_t junk[100];
    memset(junk, 0x17, sizeof(junk));
    unsigned sent = 0;
    for (uint32_t id = 1025; id <= 1025 + 40; id++, sent++) {
        TU_CTX("rx %u", id);
        send_rx(id, 5000, junk, sizeof(junk));
        TU_CHECK_EQ(rx_one().flow_id, id);
    }
    c = tu_counters(h.dev);
    TU_CHECK_EQ(c.tls_ctx_cache_miss, sent);
    TU_CHECK_EQ(c.tls_ctx_cache_hit, 0);
    TU_CHECK_EQ(c.tls_ctx_evict, MANY - CACHE + sent);
    for (uint32_t id = 1025; id <= 1025 + 40; id++) {
        send_rx(id, 5100, junk, sizeof(junk));
        TU_CHECK_EQ(rx_one().flow_id, id);
    }
    c = tu_counters(h.dev);
    TU_CHECK_EQ(c.tls_ctx_cache_miss, sent);
    TU_CHECK_EQ(c.tls_ctx_cache_hit, sent);
    /* A segment of no flow is no access. */
    send_rx(MANY + 1, 5000, junk, sizeof(junk));
    TU_CHECK_EQ(rx_one().flow_id, 0);
    TU_CHECK_EQ(tu_counters(h.dev).tls_ctx_cache_hit + tu_counters(h.dev).tls_ctx_cache_miss,
                2 * sent);
    for (uint32_t id = 1; id <= MANY; id++)
        TU_CHECK_EQ(ctrl(NIC_TX_DEL_CTX, id, 0, 0, 0), NIC_TX_OK);
    c = tu_counters(h.dev);
    TU_CHECK_EQ(c.rx_tls_del, MANY);
    TU_CHECK_EQ(c.tls_ctx_resident, 0);
    TU_CHECK_EQ(h.dev->tls.lru_head, 0);
    for (uint32_t id = 1; id <= MANY; id++)
        TU_CHECK(!h.dev->flows->slots[id - 1].used);
    for (uint32_t b = 0; b < h.dev->flows->n_buckets; b++)
        TU_CHECK_EQ(h.dev->flows->rx_hash[b], 0);
    dev_close();
}
END_TEST

/* The reorder-pool cases: a device whose pool holds 3000 bytes past the
   shared buffers, RX flow 1 installed at POOL_SEQ0, and its record's header
   and 987 payload bytes delivered in order. Segments after a hole then use
   pool_more. */
#define POOL_SEQ0 7000u
static uint8_t pool_more[1000];

static void open_pool_flow_started(void)
{
    dev_open(8, 0, NIC_TLS_SCRATCH_FIXED + 3000);
    TU_CHECK_EQ(install(1, NIC_CTX_RX, POOL_SEQ0), NIC_TX_OK);
    uint8_t first[1000];
    memset(first, 0x42, sizeof(first));
    first[0] = 23, first[1] = 3, first[2] = 3;
    first[3] = (uint8_t)((16384 + 24) >> 8), first[4] = (uint8_t)(16384 + 24);
    memset(pool_more, 0x24, sizeof(pool_more));
    send_rx(1, POOL_SEQ0, first, sizeof(first));
    rx_one();
}

START_TEST(reorder_pool_full)
{
    open_pool_flow_started();
    /* A hole of 1000 bytes, then three segments the pool can hold. */
    for (uint32_t k = 0; k < 3; k++) {
        send_rx(1, POOL_SEQ0 + 2000 + 1000 * k, pool_more, sizeof(pool_more));
        rx_one();
    }
    struct nic_counters c = tu_counters(h.dev);
    TU_CHECK_EQ(c.rx_tls_reorder_buffered, 3);
    TU_CHECK_EQ(c.rx_tls_reorder_pool_bytes, 3000);
    TU_CHECK_EQ(c.rx_tls_reorder_pool_full, 0);
    /* The fourth does not fit the pool (the flow's own limit is 256 KiB):
       counted; the flow jumps to the next record, the pool is empty. */
    send_rx(1, POOL_SEQ0 + 5000, pool_more, sizeof(pool_more));
    rx_one();
    c = tu_counters(h.dev);
    TU_CHECK_EQ(c.rx_tls_reorder_pool_full, 1);
    TU_CHECK_EQ(c.rx_tls_reorder_buffered, 3);
    TU_CHECK_EQ(c.rx_tls_jump, 1);
    TU_CHECK_EQ(c.rx_tls_reorder_pool_bytes, 0);
    TU_CHECK_EQ(ctrl(NIC_TX_DEL_CTX, 1, 0, 0, 0), NIC_TX_OK);
    dev_close();
}
END_TEST

/* Held bytes of a deleted flow go back to the pool. */
START_TEST(reorder_pool_freed_on_delete)
{
    open_pool_flow_started();
    send_rx(1, POOL_SEQ0 + 2000, pool_more, sizeof(pool_more));
    rx_one();
    TU_CHECK_EQ(tu_counters(h.dev).rx_tls_reorder_pool_bytes, 1000);
    TU_CHECK_EQ(ctrl(NIC_TX_DEL_CTX, 1, 0, 0, 0), NIC_TX_OK);
    TU_CHECK_EQ(tu_counters(h.dev).rx_tls_reorder_pool_bytes, 0);
    dev_close();
}
END_TEST

static Suite *mem_suite(void)
{
    Suite *s = suite_create("nic_mem");
    TCase *tc = tcase_create("cache");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, lru_scripted);
    tcase_add_test(tc, fetch_bad_block);
    tcase_add_test(tc, no_host_block);
    tcase_add_test(tc, many_flows);
    tcase_add_test(tc, reorder_pool_full);
    tcase_add_test(tc, reorder_pool_freed_on_delete);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mem_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
