/* Check suite: the pcb index (stack/stack_demux.c) and the driver's use of it
 * (stack_driver.c: segments of no connection go up with lwIP's pcb lists
 * hidden; batches move their pcbs to the list's front by predecessor hints).
 *
 * A real lwIP listener on port 443 is fed through the NIC model and the
 * driver; a SOCK_SEQPACKET socketpair stands in for TUN and the test thread
 * is the peer: it opens hundreds of connections from distinct ports, sends
 * data on all of them in shuffled batches, repeats SYNs, sends segments of
 * no connection and resets half the connections. After every step it checks
 * lwIP's lists against what the peer knows: every live connection's pcb is
 * on tcp_active_pcbs exactly once, no other pcb is, the index holds exactly
 * those pcbs, and every byte arrived on its own connection. */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lwip/ip.h>
#include <lwip/netif.h>
#include <lwip/priv/tcp_priv.h>
#include <lwip/tcp.h>
#include <lwip/tcpip.h>

#include "nic_dev.h"
#include "stack_demux.h"
#include "stack_driver.h"
#include "test_lwip.h"
#include "test_rng.h"
#include "test_util.h"

#define TEST_MTU  1500u
#define RING_SIZE 256u
#define BATCH     64u /* packets per NIC round: one driver batch */
#define NCONN     300u
#define PORT0     20000u
#define NPORTS    (NCONN + 64u)
#define SEG_LEN   100u
#define SEGS_EACH 4u
#define PEER_ISN  1000u
#define WIRE_BUF  65536u

struct conn {
    bool synack, accepted, reset_sent;
    unsigned rsts; /* RSTs lwIP sent to this port */
    uint32_t liss; /* lwIP's ISN */
    uint32_t got;  /* bytes delivered to the accept side */
    bool bad;      /* a byte arrived out of place */
    struct tcp_pcb *pcb;
};

static struct {
    struct nic_dev *dev;
    int wire;
    struct stack_driver *drv;
    struct tcp_pcb *lpcb;
    bool netif_added;
    struct conn c[NPORTS];
    unsigned inflight; /* packets sent since the last pump */
    uint16_t ip_id;
} g;

static unsigned port_index(uint16_t port)
{
    ck_assert_uint_ge(port, PORT0);
    ck_assert_uint_lt(port, PORT0 + NPORTS);
    return port - PORT0;
}

static uint8_t stream_byte(unsigned conn, uint32_t off)
{
    return (uint8_t)(conn * 7u + off * 13u + 1u);
}

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
    struct conn *c = arg;
    (void)err;
    if (!p)
        return ERR_OK;
    unsigned idx = (unsigned)(c - g.c);
    for (struct pbuf *q = p; q; q = q->next) {
        const uint8_t *b = q->payload;
        for (u16_t i = 0; i < q->len; i++)
            if (b[i] != stream_byte(idx, c->got + i))
                c->bad = true;
        c->got += q->len;
    }
    tcp_recved(pcb, p->tot_len);
    pbuf_free(p);
    return ERR_OK;
}

static void on_err(void *arg, err_t err)
{
    struct conn *c = arg;
    (void)err;
    c->pcb = NULL; /* lwIP freed it */
}

static err_t on_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
    (void)arg;
    if (err != ERR_OK || !pcb)
        return ERR_VAL;
    struct conn *c = &g.c[pcb->remote_port - PORT0];
    c->accepted = true;
    c->pcb = pcb;
    tcp_arg(pcb, c);
    tcp_recv(pcb, on_recv);
    tcp_err(pcb, on_err);
    return ERR_OK;
}

static void pump(void);

static void send_seg(uint16_t port, uint32_t seq, uint32_t ack, uint8_t flags, const uint8_t *data,
                     size_t len)
{
    static const uint8_t mss[4] = {2, 4, 0x05, 0xb4};
    uint8_t p[TEST_MTU];
    struct tu_tcp s = {.saddr = TU_PEER_IP,
                       .daddr = TU_HOST_IP,
                       .sport = port,
                       .dport = TU_HOST_PORT,
                       .ip_id = g.ip_id++,
                       .seq = seq,
                       .ack = ack,
                       .flags = flags,
                       .opt = (flags & TU_TCP_SYN) ? mss : NULL,
                       .opt_len = (flags & TU_TCP_SYN) ? sizeof(mss) : 0,
                       .payload = data,
                       .len = len};
    size_t n = tu_build_tcp(p, &s);
    tu_wire_send(g.wire, p, n);
    if (++g.inflight == BATCH)
        pump();
}

static void drain_wire(void)
{
    static uint8_t b[WIRE_BUF];
    size_t n;
    while ((n = tu_wire_recv(g.wire, b, sizeof(b))) > 0) {
        if (n < TU_IP_HLEN + TU_TCP_HLEN || b[9] != 6)
            continue;
        const uint8_t *h = b + (b[0] & 15u) * 4u;
        struct conn *c = &g.c[port_index(tu_get16(h + 2))];
        uint8_t fl = h[13];
        if ((fl & (TU_TCP_SYN | TU_TCP_ACK)) == (TU_TCP_SYN | TU_TCP_ACK)) {
            c->synack = true;
            c->liss = tu_get32(h + 4);
        }
        if (fl & TU_TCP_RST)
            c->rsts++;
    }
}

/* The NIC takes what the peer sent, lwIP processes it in batches of up to
   BATCH, lwIP's replies go out and are read. */
static void pump(void)
{
    for (int round = 0; round < 8; round++) {
        unsigned work = nic_dev_poll_once(g.dev);
        LOCK_TCPIP_CORE();
        work += stack_driver_poll(g.drv, BATCH);
        UNLOCK_TCPIP_CORE();
        drain_wire();
        if (!work)
            break;
    }
    g.inflight = 0;
}

static struct stack_driver_counters counters(void)
{
    struct stack_driver_counters c;
    LOCK_TCPIP_CORE();
    stack_driver_get_counters(g.drv, &c);
    UNLOCK_TCPIP_CORE();
    return c;
}

/* lwIP's active list holds exactly the connections the peer opened and did
   not reset (each once), and the index exactly those pcbs. */
static void assert_lists(unsigned expect_active)
{
    static unsigned seen[NPORTS];
    memset(seen, 0, sizeof(seen));
    unsigned n = 0;
    LOCK_TCPIP_CORE();
    for (struct tcp_pcb *p = tcp_active_pcbs; p && n <= NPORTS; p = p->next, n++)
        if (p->remote_port >= PORT0 && p->remote_port < PORT0 + NPORTS)
            seen[p->remote_port - PORT0]++;
    unsigned tw = 0;
    for (struct tcp_pcb *p = tcp_tw_pcbs; p && tw <= NPORTS; p = p->next)
        tw++;
    uint64_t indexed, pending;
    stack_demux_sync(); /* pcbs lwIP created since the driver last looked */
    stack_demux_sizes(&indexed, &pending);
    /* The batched lookup finds what the single one finds: each live
       connection's pcb, nothing for the others. */
    static struct tcp_pcb *found[NPORTS];
    for (unsigned i = 0; i < NPORTS; i += STACK_DEMUX_MANY_MAX) {
        struct stack_demux_key keys[STACK_DEMUX_MANY_MAX];
        unsigned k = NPORTS - i < STACK_DEMUX_MANY_MAX ? NPORTS - i : STACK_DEMUX_MANY_MAX;
        for (unsigned j = 0; j < k; j++)
            keys[j] = (struct stack_demux_key){.remote_ip = lwip_htonl(TU_PEER_IP),
                                               .remote_port = (uint16_t)(PORT0 + i + j),
                                               .local_port = TU_HOST_PORT};
        stack_demux_find_active_many(keys, k, &found[i]);
        for (unsigned j = 0; j < k; j++)
            ck_assert_ptr_eq(found[i + j], stack_demux_find_active(&keys[j]));
    }
    UNLOCK_TCPIP_CORE();
    ck_assert_uint_eq(n, expect_active);
    ck_assert_uint_eq(tw, 0);
    ck_assert_uint_eq(indexed, expect_active);
    ck_assert_uint_eq(pending, 0);
    for (unsigned i = 0; i < NPORTS; i++) {
        bool live = g.c[i].synack && !g.c[i].reset_sent;
        ck_assert_msg(seen[i] == (live ? 1u : 0u), "port %u: %u pcbs (live %d)", PORT0 + i, seen[i],
                      live);
        ck_assert_msg(live ? found[i] && found[i]->remote_port == PORT0 + i : !found[i],
                      "port %u: batched lookup (live %d)", PORT0 + i, live);
    }
}

static void setup(void)
{
    memset(&g, 0, sizeof(g));
    g.wire = -1;
    tu_lwip_start_once();
    struct nic_dev_cfg cfg = {
        .tx_ring_size = RING_SIZE, .rx_ring_size = RING_SIZE, .mtu = TEST_MTU, .max_flows = 4};
    g.dev = tu_dev_create(&cfg, &g.wire);
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
    while (tcp_active_pcbs)
        tcp_abort(tcp_active_pcbs);
    while (tcp_tw_pcbs)
        tcp_abort(tcp_tw_pcbs);
    if (g.lpcb)
        tcp_close(g.lpcb);
    if (g.netif_added)
        netif_remove(stack_driver_netif(g.drv));
    stack_driver_destroy(g.drv);
    UNLOCK_TCPIP_CORE();
    nic_dev_destroy(g.dev);
    if (g.wire >= 0)
        close(g.wire);
}

static void open_conns(unsigned from, unsigned n)
{
    for (unsigned i = from; i < from + n; i++)
        send_seg((uint16_t)(PORT0 + i), PEER_ISN, 0, TU_TCP_SYN, NULL, 0);
    pump();
    for (unsigned i = from; i < from + n; i++) {
        ck_assert_msg(g.c[i].synack, "port %u: no SYN-ACK", PORT0 + i);
        send_seg((uint16_t)(PORT0 + i), PEER_ISN + 1, g.c[i].liss + 1, TU_TCP_ACK, NULL, 0);
    }
    pump();
    for (unsigned i = from; i < from + n; i++)
        ck_assert_msg(g.c[i].accepted, "port %u: not accepted", PORT0 + i);
}

START_TEST(many_connections_stay_exact)
{
    struct stack_driver_counters c0 = counters();
    open_conns(0, NCONN);
    struct stack_driver_counters c1 = counters();
    /* every SYN was a segment of no connection; nothing else was */
    ck_assert_uint_eq(c1.rx_demux_unknown - c0.rx_demux_unknown, NCONN);
    assert_lists(NCONN);

    /* Data on every connection, in shuffled batches: each segment's pcb is
       moved to the front, by hint or by a walk, and every byte lands on its
       own connection. */
    static unsigned order[NCONN];
    struct tu_rng rng = tu_rng_for("demux", 0);
    for (unsigned s = 0; s < SEGS_EACH; s++) {
        for (unsigned i = 0; i < NCONN; i++)
            order[i] = i;
        for (unsigned i = NCONN - 1; i > 0; i--) {
            unsigned j = tu_rng_below(&rng, i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (unsigned k = 0; k < NCONN; k++) {
            unsigned i = order[k];
            uint8_t data[SEG_LEN];
            for (unsigned b = 0; b < SEG_LEN; b++)
                data[b] = stream_byte(i, s * SEG_LEN + b);
            send_seg((uint16_t)(PORT0 + i), PEER_ISN + 1 + s * SEG_LEN, g.c[i].liss + 1,
                     TU_TCP_ACK | 0x08u, data, SEG_LEN);
        }
        pump();
    }
    for (unsigned i = 0; i < NCONN; i++) {
        ck_assert_msg(g.c[i].got == SEGS_EACH * SEG_LEN && !g.c[i].bad, "port %u: %u bytes, bad %d",
                      PORT0 + i, g.c[i].got, g.c[i].bad);
    }
    struct stack_driver_counters c2 = counters();
    ck_assert_uint_ge(c2.rx_demux_moved - c1.rx_demux_moved, SEGS_EACH * NCONN);
    ck_assert_uint_gt(c2.rx_demux_hinted - c1.rx_demux_hinted, NCONN); /* hints did work */
    ck_assert_uint_eq(c2.rx_demux_unknown, c1.rx_demux_unknown);
    assert_lists(NCONN);

    /* A repeated SYN of an open connection and of one in SYN_RCVD: lwIP's
       own walk finds the pcb; no second pcb appears. */
    unsigned half = NCONN; /* the next free port */
    send_seg((uint16_t)(PORT0 + half), PEER_ISN, 0, TU_TCP_SYN, NULL, 0);
    pump();
    ck_assert(g.c[half].synack);
    send_seg((uint16_t)(PORT0 + half), PEER_ISN, 0, TU_TCP_SYN, NULL, 0);
    send_seg((uint16_t)PORT0, PEER_ISN, 0, TU_TCP_SYN, NULL, 0);
    pump();
    struct stack_driver_counters c3 = counters();
    ck_assert_uint_eq(c3.rx_demux_unknown - c2.rx_demux_unknown, 1);
    assert_lists(NCONN + 1);

    /* An ACK of no connection: lwIP's RST, the lists untouched. */
    unsigned stray = NCONN + 1;
    send_seg((uint16_t)(PORT0 + stray), 5000, 7000, TU_TCP_ACK, NULL, 0);
    pump();
    ck_assert_uint_eq(g.c[stray].rsts, 1);
    ck_assert_uint_eq(counters().rx_demux_unknown - c3.rx_demux_unknown, 1);
    assert_lists(NCONN + 1);

    /* Reset every other connection: lwIP frees their pcbs, the index forgets
       them, and a new SYN from a freed port is a segment of no connection
       again (a new connection on the same tuple). */
    unsigned live = NCONN + 1;
    for (unsigned i = 0; i < NCONN; i += 2) {
        send_seg((uint16_t)(PORT0 + i), PEER_ISN + 1 + SEGS_EACH * SEG_LEN, 0, TU_TCP_RST, NULL, 0);
        g.c[i].reset_sent = true;
        live--;
    }
    pump();
    for (unsigned i = 0; i < NCONN; i += 2)
        ck_assert_msg(g.c[i].pcb == NULL, "port %u: pcb not freed", PORT0 + i);
    assert_lists(live);
    struct stack_driver_counters c4 = counters();
    g.c[0] = (struct conn){0};
    send_seg((uint16_t)PORT0, PEER_ISN + 100000, 0, TU_TCP_SYN, NULL, 0);
    pump();
    ck_assert(g.c[0].synack);
    ck_assert_uint_eq(counters().rx_demux_unknown - c4.rx_demux_unknown, 1);
    assert_lists(live + 1);
}
END_TEST

static Suite *demux_suite(void)
{
    Suite *s = suite_create("demux");
    TCase *tc = tcase_create("index");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, many_connections_stay_exact);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    (void)argc;
    tu_seed_init(argv[0]);
    SRunner *sr = srunner_create(demux_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
