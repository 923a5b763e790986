/*
 * tls_conn.c - a server connection: lwIP raw TCP <-> (mbed TLS handshake,
 * record layer) <-> upper layer (HTTP).
 *
 * Receive: pbufs from tcp_recv are queued unchanged (their per-packet flags
 * matter for the offload) and consumed in order; tcp_recved() is called only
 * for bytes consumed, so a slow upper layer closes the peer's window.
 * Transmit: plaintext is staged into one record's worth, then sealed (or
 * handed to mbed TLS) and copied into lwIP's send buffer.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "tls_conn.h"
#include "stack_driver.h"
#include "stack_rto.h"
#include "tls_internal.h"
#include "tls_offload.h"
#include "tls_record.h"
#include "tls_slots.h"

#include <errno.h>
#include <stddef.h>
#include <lwip/sys.h>
#include <lwip/tcpip.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* tcp_poll runs every CONN_POLL_INTERVAL TCP slow-timer ticks; the tick may
   be shortened (stack_host_cfg.tcp_tick_ms), so timeouts use sys_now(). */
#define CONN_POLL_INTERVAL 4
#define CLOSING_TIMEOUT_MS 30000 /* draining output when closing, without progress */
#define RX_PENDING_CAP     (TLS_MAX_PLAINTEXT + 65536)
#define HS_IN_CAP          (TLS_MAX_PLAINTEXT + 2048) /* client flight bytes handed to the worker */
#define HS_OUT_CAP         65536                      /* server flight the worker may write */
#define HS_NICE            5 /* handshake workers run this much nicer than the process */

enum conn_state {
    CONN_HANDSHAKE, /* mbed TLS handshake in progress */
    CONN_OPEN,      /* application data flows */
    CONN_CLOSING,   /* upper layer closed: drain output, then close_notify + FIN */
    CONN_DEAD       /* pcb gone or closed; free when no callback is running */
};

enum alert_desc { ALERT_CLOSE_NOTIFY = 0, ALERT_BAD_RECORD_MAC = 20, ALERT_DECODE_ERROR = 50 };

struct tls_conn {
    struct tls_server *srv; /* NULL: plain */
    enum tls_mode mode;
    struct tcp_pcb *pcb;
    enum conn_state state;
    const struct tls_conn_upper *up;
    void *up_ctx;
    unsigned busy; /* callback nesting depth */
    /* conn_kill freed the pcb (tcp_abort): a pcb callback running then must
       return ERR_ABRT, or lwIP goes on using the freed pcb (tcp_input's
       tcp_output after the recv callback, tcp_slowtmr's after poll). */
    bool pcb_aborted;
    uint32_t since_ms; /* last output progress (closing) */
    uint64_t tx_acked; /* TCP bytes acknowledged by the peer */
    bool eof_seen, eof_told, upper_closed, rx_stalled;

    struct pbuf *rxq;               /* received, not yet consumed */
    uint32_t rxq_pbufs, rxq_pinned; /* pbufs in rxq, and those holding an RX buffer */

    /* Handshake off the core lock: while hs_busy the worker owns ssl, hs_in
       and hs_out; they are handed over through the worker's mutex. hs_in
       holds a copy of the first unconsumed rxq bytes (mbed TLS read
       hs_in_off of them), hs_out the flight still to be written to TCP. */
    bool hs_busy, hs_started, hs_eof, hs_finished;
    bool hs_cancel;  /* set (atomically) when the connection dies while queued */
    bool hs_skipped; /* the worker skipped the step: the connection had died */
    unsigned hs_steps;
    uint32_t hs_queued_ms; /* when the first step was queued (sys_now) */
    int hs_result;
    uint8_t *hs_in, *hs_out;
    size_t hs_in_len, hs_in_off, hs_out_len, hs_out_off;
    struct tls_conn *hs_next;

    /* mbed TLS (handshake; and the record layer in TLS_MODE_MBEDTLS) */
    mbedtls_ssl_context ssl;
    bool ssl_init;
    bool keys_ok;
    size_t mbed_inflight; /* length of a write mbed TLS has buffered */
    bool close_notify_sent;
    /* Exported session keys (own record layer only), wiped as soon as the
       AEADs and NIC contexts of their direction are keyed. */
    uint8_t client_key[32], server_key[32], client_salt[4], server_salt[4];
    size_t key_len;

    /* anic record layer (TLS_MODE_SW) */
    struct tls_aead *tx_aead, *rx_aead;
    struct tls_rx *rx;
    struct tls_rx_stats rx_stats_seen; /* already added to the server counters */
    uint64_t tx_seq;

    /* TX offload (TLS_MODE_NIC) */
    struct tls_tx_offload *txo; /* NULL: records are sealed in software */
    bool tx_nic_failed;         /* the NIC refused txo's context: sealed in software too */
    struct tls_rx_offload *rxo; /* NULL: the NIC does not decrypt for us */
    uint32_t rx_seq0;           /* TCP seq of the first byte the peer sent */
    uint64_t rx_consumed;       /* bytes consumed from the receive queue */
    uint32_t rx_stream_base;    /* TCP seq of tls_rx stream offset 0 */
    bool offload_fence;         /* waiting for handshake bytes to leave lwIP */
    /* Offload policy (docs/design.md §4.1): per direction, whether and from
       which record boundary the NIC gets a context. Until then the
       direction's exported key is kept (wiped at the start or in conn_free). */
    bool gates_on; /* NIC mode with an offload: the gates decide */
    struct tls_offload_gate tx_gate, rx_gate;
    uint64_t tx_app_bytes, rx_app_bytes; /* application payload in records so far */

    /* plaintext staging (TX) and pending plaintext (RX) */
    uint8_t *tx_pt; /* staging for sw/mbedtls */
    size_t tx_pt_len;
    struct pbuf *tx_frame; /* staging for the NIC: plaintext in place in its record frame */
    bool flush_wanted;
    uint8_t *tx_rec; /* one sealed record */
    uint8_t *rx_pt;
    size_t rx_pt_off, rx_pt_len;

    /* Send slots (tls_slots.h) */
    struct tls_slot slot;
    bool bulk;          /* asked for a slot since it last had nothing left to send */
    bool free_open;     /* a free send (from idle, without a slot) is under way */
    uint32_t free_base; /* snd_lbb when it began */
};

static __thread struct tls_conn *handshaking; /* see tls_conn_export_keys */

static struct tls_counters *ctr(struct tls_conn *c)
{
    return &c->srv->counters[c->mode];
}

/* --- send slots (tls_slots.h) --- */

#define SLOTS_SWEEP_MS 20 /* how often holders are checked while someone waits */

static bool slots_sweep_armed;

static struct tls_conn *slot_conn(const struct tls_slot *s)
{
    return (struct tls_conn *)((char *)s - offsetof(struct tls_conn, slot));
}

static uint64_t slot_acked(const struct tls_slot *s)
{
    return slot_conn(s)->tx_acked;
}

static void conn_enter(struct tls_conn *c);
static void conn_leave(struct tls_conn *c);
static void slots_sweep_arm(void);

/* Hand free slots to the head of the line, each with an on_writable (as its
   next ACK would). Runs in another connection's callback or in lwIP's
   timer: the receiver's own callbacks are not running (its pcb is not
   tcp_input's), and one that dies in its on_writable is freed by
   conn_leave, after which it is not touched. Not re-entered. */
static void slots_hand(void)
{
    static bool handing;
    if (handing)
        return;
    handing = true;
    struct tls_slot *s;
    while ((s = tls_slots_pop())) {
        struct tls_conn *c = slot_conn(s);
        if (c->state != CONN_OPEN || !c->pcb || c->offload_fence)
            continue; /* it asks again when it can send */
        tls_slot_grant(s, c->tx_acked, sys_now());
        conn_enter(c);
        if (c->flush_wanted)
            tls_conn_flush(c);
        if (c->state == CONN_OPEN)
            c->up->on_writable(c->up_ctx);
        conn_leave(c);
    }
    handing = false;
}

/* lwIP timer while the line is not empty: holders that stalled (a peer
   that stopped reading, a lost segment) or used their time give their slots
   up even when none of their own events would come. */
static void slots_sweep(void *arg)
{
    (void)arg;
    slots_sweep_armed = false;
    tls_slots_sweep(sys_now(), slot_acked);
    slots_hand();
    slots_sweep_arm();
}

static void slots_sweep_arm(void)
{
    if (slots_sweep_armed || !tls_slots_line_waiting())
        return;
    slots_sweep_armed = true;
    sys_timeout(SLOTS_SWEEP_MS, slots_sweep, NULL);
}

static bool conn_tx_idle(const struct tls_conn *c)
{
    return !c->pcb || (!c->pcb->unsent && !c->pcb->unacked && !c->tx_pt_len);
}

/* Whether c may offer bulk send space now (a slot, or a small send from
   idle: *free_room is then what it may still send without one). A free
   send lasts until the connection has had nothing left to send (on_sent
   ends it), so a download that drains between bursts does not open one
   per burst; past its free bytes, or once it asked for a slot, the
   connection sends only with a slot until then. */
static bool slot_may_send(struct tls_conn *c, size_t *free_room)
{
    *free_room = SIZE_MAX;
    const struct tls_slots_cfg *cfg = tls_slots_cfg();
    if (!cfg->limit || c->slot.state == TLS_SLOT_HOLD)
        return true;
    if (c->slot.state == TLS_SLOT_NONE && !c->bulk) {
        uint32_t lbb = c->pcb->snd_lbb;
        if (!c->free_open && conn_tx_idle(c)) {
            c->free_open = true; /* idle: a free send begins */
            c->free_base = lbb;
            tls_slot_note_free_send();
        }
        uint32_t used = lbb - c->free_base;
        if (c->free_open && used < cfg->free_bytes) {
            *free_room = cfg->free_bytes - used;
            return true;
        }
    }
    c->bulk = true; /* past the free bytes: the rest needs a slot */
    bool ok = tls_slot_request(&c->slot, c->tx_acked, sys_now());
    slots_sweep_arm();
    return ok;
}

/* --- lifetime --- */

/* Wipe a direction's exported key (mbed TLS's zeroize: never optimised out). */
static void conn_wipe_tx_key(struct tls_conn *c)
{
    mbedtls_platform_zeroize(c->server_key, sizeof(c->server_key));
    mbedtls_platform_zeroize(c->server_salt, sizeof(c->server_salt));
}

static void conn_wipe_rx_key(struct tls_conn *c)
{
    mbedtls_platform_zeroize(c->client_key, sizeof(c->client_key));
    mbedtls_platform_zeroize(c->client_salt, sizeof(c->client_salt));
}

static enum tls_tx_resync tx_policy(const struct tls_conn *c)
{
    return c->mode == TLS_MODE_NIC_TAGCACHE ? TLS_TX_RESYNC_TAGCACHE : TLS_TX_RESYNC_DUMP;
}

static void conn_free(struct tls_conn *c)
{
    tls_slot_end(&c->slot, TLS_SLOT_END_CLOSED);
    if (c->gates_on) {
        tls_offload_gate_end(c->srv->offload, &c->tx_gate, true, tx_policy(c));
        tls_offload_gate_end(c->srv->offload, &c->rx_gate, false, tx_policy(c));
    }
    if (c->rxo)
        tls_rx_offload_stop(c->rxo);
    if (c->txo)
        tls_tx_offload_release(c->txo, NULL, true);
    if (c->rxq)
        pbuf_free(c->rxq);
    if (c->ssl_init)
        mbedtls_ssl_free(&c->ssl);
    tls_rx_free(c->rx);
    tls_aead_free(c->tx_aead);
    tls_aead_free(c->rx_aead);
    free(c->tx_pt);
    if (c->tx_frame)
        pbuf_free(c->tx_frame);
    free(c->tx_rec);
    free(c->rx_pt);
    free(c->hs_in);
    free(c->hs_out);
    conn_wipe_tx_key(c);
    conn_wipe_rx_key(c);
    free(c);
}

static void conn_detach_pcb(struct tls_conn *c)
{
    if (!c->pcb)
        return;
    tcp_arg(c->pcb, NULL);
    tcp_recv(c->pcb, NULL);
    tcp_sent(c->pcb, NULL);
    tcp_err(c->pcb, NULL);
    tcp_poll(c->pcb, NULL, 0);
    c->pcb = NULL;
}

/* Enter/leave a callback; the last leave frees a dead connection and tells
   the upper layer exactly once. */
static void conn_enter(struct tls_conn *c)
{
    c->busy++;
}

static void conn_leave(struct tls_conn *c)
{
    if (--c->busy || c->state != CONN_DEAD)
        return;
    if (!c->upper_closed) {
        c->upper_closed = true;
        c->busy++;
        c->up->on_closed(c->up_ctx);
        c->busy--;
    }
    if (c->hs_busy)
        return; /* the handshake worker still owns ssl: hs_drain frees */
    if (c->srv)
        ctr(c)->conns_closed++;
    conn_free(c);
}

static void rxq_consume(struct tls_conn *c, size_t n);
static bool tx_gate(struct tls_conn *c);
static void rx_gate(struct tls_conn *c, uint32_t seq, uint64_t sn);

/* --- draining a half-closed pcb after the connection let go of it --- */

#define DRAIN_TIMEOUT_MS 10000 /* peers that never close get a RST after this */

struct drain {
    uint32_t since_ms;
};

static err_t drain_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
    (void)err;
    if (p) {
        stack_tcp_recved(pcb, p->tot_len);
        pbuf_free(p);
        return ERR_OK;
    }
    /* Peer's FIN: both directions are done. */
    free(arg);
    tcp_arg(pcb, NULL);
    tcp_recv(pcb, NULL);
    tcp_err(pcb, NULL);
    tcp_poll(pcb, NULL, 0);
    if (tcp_close(pcb) != ERR_OK) {
        tcp_abort(pcb);
        return ERR_ABRT;
    }
    return ERR_OK;
}

static err_t drain_poll(void *arg, struct tcp_pcb *pcb)
{
    struct drain *d = arg;
    if (sys_now() - d->since_ms < DRAIN_TIMEOUT_MS)
        return ERR_OK;
    tcp_abort(pcb); /* drain_err frees d */
    return ERR_ABRT;
}

static void drain_err(void *arg, err_t err)
{
    (void)err;
    free(arg);
}

static bool drain_attach(struct tcp_pcb *pcb)
{
    struct drain *d = malloc(sizeof(*d));
    if (!d)
        return false;
    d->since_ms = sys_now();
    tcp_arg(pcb, d);
    tcp_recv(pcb, drain_recv);
    tcp_err(pcb, drain_err);
    tcp_poll(pcb, drain_poll, CONN_POLL_INTERVAL);
    return true;
}

static void conn_kill(struct tls_conn *c, bool rst)
{
    if (c->state == CONN_DEAD)
        return;
    c->state = CONN_DEAD;
    if (c->hs_busy) /* its queued handshake step is skipped */
        __atomic_store_n(&c->hs_cancel, true, __ATOMIC_RELEASE);
    /* lwIP answers a close with unread data by RST and frees the pcb at
       once: account everything as read first (the offload may linger). */
    if (!rst && c->rxq && c->pcb)
        rxq_consume(c, c->rxq->tot_len);
    struct tcp_pcb *pcb = c->pcb;
    conn_detach_pcb(c);
    if (c->rxo) {
        tls_rx_offload_stop(c->rxo);
        c->rxo = NULL;
    }
    bool lingering = false;
    if (c->txo) {
        /* Offloaded segments may still be resent after we let go: the
           offload lingers on the pcb until they are acked. */
        lingering = tls_tx_offload_release(c->txo, pcb, rst || !pcb);
        c->txo = NULL;
    }
    if (!pcb)
        return;
    if (rst) {
        c->pcb_aborted = true;
        stack_tcp_abort(pcb); /* a RST even a peer with a closed window accepts */
        return;
    }
    /* Half-close: send FIN but keep reading (and discarding) until the peer
       closes too. A full close would answer data still in flight (say the
       rest of a rejected request) with RST, and the peer could lose our
       last response. */
    if (!lingering && !drain_attach(pcb)) {
        c->pcb_aborted = true;
        tcp_abort(pcb);
        return;
    }
    if (tcp_shutdown(pcb, 0, 1) != ERR_OK) {
        c->pcb_aborted = true;
        tcp_abort(pcb);
    }
}

/* Leave a pcb callback: ERR_ABRT if the pcb was aborted meanwhile. */
static err_t conn_leave_cb(struct tls_conn *c)
{
    err_t ret = c->pcb_aborted ? ERR_ABRT : ERR_OK;
    conn_leave(c); /* may free c */
    return ret;
}

/* --- receive queue --- */

/* lwIP can hand us a pbuf trimmed to length 0 (an old first IP fragment of
   a retransmission): unlink such heads, or the consumers would spin on them. */
static void rxq_unlinked(struct tls_conn *c, const struct pbuf *h)
{
    c->rxq_pbufs--;
    c->rxq_pinned -= stack_rx_pbuf_pinned(h);
}

static void rxq_drop_empty(struct tls_conn *c)
{
    while (c->rxq && c->rxq->len == 0) {
        struct pbuf *h = c->rxq;
        rxq_unlinked(c, h);
        c->rxq = h->next;
        if (c->rxq)
            pbuf_ref(c->rxq); /* the chain's reference now belongs to the new head */
        pbuf_free(h);
    }
}

static void rxq_consume(struct tls_conn *c, size_t n)
{
    c->rx_consumed += n;
    /* the pbufs pbuf_free_header() frees: those the n bytes cover whole */
    size_t left = n;
    for (const struct pbuf *q = c->rxq; q && left > 0 && left >= q->len; q = q->next) {
        left -= q->len;
        rxq_unlinked(c, q);
    }
    c->rxq = pbuf_free_header(c->rxq, (u16_t)n);
    rxq_drop_empty(c);
    while (n) {
        u16_t step = n > 0xffff ? 0xffff : (u16_t)n;
        if (c->pcb)
            stack_tcp_recved(c->pcb, step);
        n -= step;
    }
}

/* --- transmit primitives --- */

static bool tcp_room(struct tls_conn *c, size_t len)
{
    return c->pcb && tcp_sndbuf(c->pcb) >= len;
}

/* Copy bytes into lwIP's send buffer, all or nothing. */
static bool tcp_put(struct tls_conn *c, const void *buf, size_t len)
{
    if (!tcp_room(c, len))
        return false;
    if (stack_tcp_write(c->pcb, buf, (u16_t)len, TCP_WRITE_FLAG_COPY) != ERR_OK)
        return false;
    if (c->srv)                         /* plain connections have no server, no counters */
        ctr(c)->tx_bytes_copied += len; /* LWIP_NETIF_TX_SINGLE_PBUF: lwIP always copies */
    return true;
}

static int bio_send(void *arg, const unsigned char *buf, size_t len)
{
    struct tls_conn *c = arg;
    if (c->hs_busy) { /* the worker: collect the flight */
        if (len > HS_OUT_CAP - c->hs_out_len)
            len = HS_OUT_CAP - c->hs_out_len;
        if (len == 0)
            return MBEDTLS_ERR_SSL_WANT_WRITE;
        memcpy(c->hs_out + c->hs_out_len, buf, len);
        c->hs_out_len += len;
        return (int)len;
    }
    if (!c->pcb)
        return MBEDTLS_ERR_NET_CONN_RESET;
    size_t room = tcp_sndbuf(c->pcb);
    if (len > room)
        len = room;
    if (len > 0xffff)
        len = 0xffff;
    if (len == 0 || stack_tcp_write(c->pcb, buf, (u16_t)len, TCP_WRITE_FLAG_COPY) != ERR_OK)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    ctr(c)->tx_bytes_copied += len;
    return (int)len;
}

static int bio_recv(void *arg, unsigned char *buf, size_t len)
{
    struct tls_conn *c = arg;
    if (c->hs_busy) { /* the worker: the copy of the input */
        size_t n = c->hs_in_len - c->hs_in_off;
        if (n == 0)
            return c->hs_eof ? 0 : MBEDTLS_ERR_SSL_WANT_READ;
        n = n < len ? n : len;
        memcpy(buf, c->hs_in + c->hs_in_off, n);
        c->hs_in_off += n;
        return (int)n;
    }
    if (!c->rxq)
        return c->eof_seen ? 0 : MBEDTLS_ERR_SSL_WANT_READ;
    size_t n = c->rxq->tot_len < len ? c->rxq->tot_len : len;
    pbuf_copy_partial(c->rxq, buf, (u16_t)n, 0);
    rxq_consume(c, n);
    return (int)n;
}

/* True while records go to the NIC as frames. Once the NIC refused the
   context, records are sealed here for good (the offload seals the frames it
   already holds): the staged plaintext moves from the frame to tx_pt. */
static bool tx_frames(struct tls_conn *c)
{
    if (!c->txo || c->tx_nic_failed)
        return false;
    if (!tls_tx_offload_failed(c->txo))
        return true;
    c->tx_nic_failed = true;
    ctr(c)->offload_fallback_sw++;
    if (c->tx_frame) {
        memcpy(c->tx_pt, (uint8_t *)c->tx_frame->payload + TLS_PAYLOAD_OFFSET, c->tx_pt_len);
        ctr(c)->tx_bytes_copied += c->tx_pt_len;
        pbuf_free(c->tx_frame);
        c->tx_frame = NULL;
    }
    return false;
}

/* Write one record of our own record layer (TLS_MODE_SW / TLS_MODE_NIC):
   sealed on the host, or framed as plaintext with a blank tag for the NIC
   and kept until acked. All or nothing; the sequence number is used only
   when the record went into lwIP's send buffer. */
static bool write_record(struct tls_conn *c, uint8_t type, const uint8_t *pt, size_t len)
{
    size_t rec_len = len + TLS_RECORD_OVERHEAD;
    if (!tcp_room(c, rec_len))
        return false;
    if (!tx_frames(c)) {
        tls_record_seal(c->tx_aead, c->tx_seq, type, pt, len, c->tx_rec);
        if (!tcp_put(c, c->tx_rec, rec_len))
            return false;
    } else {
        struct pbuf *rp = pbuf_alloc(PBUF_RAW, (u16_t)rec_len, PBUF_RAM);
        if (!rp)
            return false;
        tls_record_frame_plain(c->tx_seq, type, pt, len, rp->payload);
        ctr(c)->tx_bytes_copied += len;
        uint32_t start = c->pcb->snd_lbb; /* seq of the first byte tcp_write queues */
        if (!tcp_put(c, rp->payload, rec_len)) {
            pbuf_free(rp);
            return false;
        }
        tls_tx_offload_record(c->txo, rp, start, c->tx_seq);
        pbuf_free(rp);
    }
    c->tx_seq++;
    return true;
}

/* Host sealing (sw, or an offload refused): one application data record of
   the staged plaintext followed by n of the caller's bytes, sealed from where
   they are into tx_rec, so lwIP's copy is the only one for the caller's
   bytes. All or nothing: false (nothing consumed) without TCP room. */
static bool seal_direct(struct tls_conn *c, const uint8_t *p, size_t n)
{
    size_t rec_len = c->tx_pt_len + n + TLS_RECORD_OVERHEAD;
    if (!tcp_room(c, rec_len))
        return false;
    tls_record_seal2(c->tx_aead, c->tx_seq, TLS_CT_APPDATA, c->tx_pt, c->tx_pt_len, p, n,
                     c->tx_rec);
    if (!tcp_put(c, c->tx_rec, rec_len))
        return false;
    c->tx_seq++;
    ctr(c)->tx_records++;
    ctr(c)->tx_bytes_plaintext += c->tx_pt_len + n;
    c->tx_app_bytes += c->tx_pt_len + n; /* the offload policy's count (tx_gate) */
    c->tx_pt_len = 0;
    return true;
}

/* Where staged plaintext goes. With the NIC offloading, the plaintext is
   staged in place inside the record frame that the record store keeps for
   retransmissions, saving a copy per record. NULL: out of memory. */
static uint8_t *stage_buf(struct tls_conn *c)
{
    if (!tx_frames(c))
        return c->tx_pt;
    if (!c->tx_frame)
        c->tx_frame = tls_offload_frame_alloc();
    return c->tx_frame ? (uint8_t *)c->tx_frame->payload + TLS_PAYLOAD_OFFSET : NULL;
}

/* Complete the staged frame (header, explicit nonce = seq, blank tag), copy
   it into TCP's send buffer, hand it to the record store. All or nothing. */
static bool emit_frame(struct tls_conn *c)
{
    size_t rec_len = c->tx_pt_len + TLS_RECORD_OVERHEAD;
    if (!tcp_room(c, rec_len))
        return false;
    uint8_t *f = c->tx_frame->payload;
    tls_record_write_header(f, c->tx_seq, TLS_CT_APPDATA, c->tx_pt_len);
    memset(f + TLS_PAYLOAD_OFFSET + c->tx_pt_len, 0, TLS_TAG_LEN);
    uint32_t start = c->pcb->snd_lbb; /* seq of the first byte tcp_write queues */
    if (!tcp_put(c, f, rec_len))
        return false; /* nothing changed: retried with the same frame */
    pbuf_realloc(c->tx_frame, (u16_t)rec_len);
    tls_tx_offload_record(c->txo, c->tx_frame, start, c->tx_seq);
    pbuf_free(c->tx_frame); /* the store holds its own reference */
    c->tx_frame = NULL;
    c->tx_seq++;
    return true;
}

/* NIC frames of whole records whose payloads are the caller's static bytes
   at p (unchanged for the life of the process): as many records of
   record_size bytes as len holds and TCP has room for. lwIP's copy is the
   only one, and the record store keeps a pointer instead of the plaintext
   (tls_tx_offload_record_static). A record's blank tag and the next one's
   header and nonce go to TCP as one write: two writes per record and one
   per run, not three per record. Returns the bytes consumed (whole records;
   0 without room). If lwIP runs out of memory inside a record, the stream
   has a torn record: the connection is killed (tx_write_torn). */
/* One piece of a run (stack_tcp_write_run_begin), room already checked. */
static bool tcp_copy_in_run(struct tls_conn *c, const void *buf, size_t len)
{
    if (tcp_write(c->pcb, buf, (u16_t)len, TCP_WRITE_FLAG_COPY) != ERR_OK)
        return false;
    ctr(c)->tx_bytes_copied += len; /* LWIP_NETIF_TX_SINGLE_PBUF: lwIP always copies */
    return true;
}

static size_t emit_static_run(struct tls_conn *c, const uint8_t *p, size_t len)
{
    size_t n = c->srv->record_size, rec_len = n + TLS_RECORD_OVERHEAD, done = 0;
    /* [the previous record's blank tag][this record's header and nonce] */
    uint8_t seam[TLS_TAG_LEN + TLS_PAYLOAD_OFFSET] = {0};
    uint8_t *hdr = seam + TLS_TAG_LEN;
    size_t owed = 0; /* bytes of blank tag still to write: 0 or TLS_TAG_LEN */
    /* Room for the record and the tag still owed, and queue room for a new
       segment per write: then only an allocation inside lwIP fails a write. */
    stack_tcp_write_run_begin(c->pcb);
    while (len - done >= n && tcp_room(c, owed + rec_len) &&
           tcp_sndqueuelen(c->pcb) + 6 <= TCP_SND_QUEUELEN) {
        tls_record_write_header(hdr, c->tx_seq, TLS_CT_APPDATA, n);
        uint32_t start = c->pcb->snd_lbb + (uint32_t)owed; /* seq of the header */
        if (!tcp_copy_in_run(c, hdr - owed, owed + TLS_PAYLOAD_OFFSET)) {
            if (!owed) {
                stack_tcp_write_run_end();
                return done; /* nothing queued */
            }
            goto torn;
        }
        if (!tcp_copy_in_run(c, p + done, n))
            goto torn;
        tls_tx_offload_record_static(c->txo, hdr, p + done, (uint16_t)n, start, c->tx_seq);
        owed = TLS_TAG_LEN;
        c->tx_seq++;
        ctr(c)->tx_records++;
        ctr(c)->tx_bytes_plaintext += n;
        c->tx_app_bytes += n; /* the offload policy's count (tx_gate) */
        done += n;
    }
    if (owed && !tcp_copy_in_run(c, seam, owed))
        goto torn;
    stack_tcp_write_run_end();
    return done;
torn:
    /* lwIP ran out of memory inside a record: the stream cannot continue. */
    stack_tcp_write_run_end();
    ctr(c)->tx_write_torn++;
    conn_kill(c, true);
    return done;
}

/* Seal (sw), frame for the NIC, or hand to mbed TLS one record from the
   staged plaintext. */
static bool emit_record(struct tls_conn *c)
{
    if (c->tx_pt_len == 0)
        return true;
    if (c->mode == TLS_MODE_MBEDTLS) {
        /* After WANT_WRITE, mbed TLS must be called again with the same
           length: it returns that length once the buffered record is out. */
        size_t len = c->mbed_inflight ? c->mbed_inflight : c->tx_pt_len;
        int r = mbedtls_ssl_write(&c->ssl, c->tx_pt, len);
        if (r <= 0) {
            if (r == MBEDTLS_ERR_SSL_WANT_WRITE)
                c->mbed_inflight = len;
            return false;
        }
        c->mbed_inflight = 0;
        ctr(c)->tx_bytes_copied += (uint64_t)r; /* into its output buffer, encrypted there */
        memmove(c->tx_pt, c->tx_pt + r, c->tx_pt_len - (size_t)r);
        c->tx_pt_len -= (size_t)r;
        ctr(c)->tx_records++;
        ctr(c)->tx_bytes_plaintext += (uint64_t)r;
        return true;
    }
    if (tx_frames(c)) {
        if (!emit_frame(c))
            return false;
    } else if (!write_record(c, TLS_CT_APPDATA, c->tx_pt, c->tx_pt_len)) {
        return false;
    }
    ctr(c)->tx_records++;
    ctr(c)->tx_bytes_plaintext += c->tx_pt_len;
    c->tx_app_bytes += c->tx_pt_len;
    c->tx_pt_len = 0;
    return true;
}

static void send_alert(struct tls_conn *c, uint8_t level, uint8_t desc)
{
    if (!c->pcb || c->state == CONN_HANDSHAKE)
        return;
    if (c->mode == TLS_MODE_MBEDTLS) {
        mbedtls_ssl_send_alert_message(&c->ssl, level, desc);
    } else if (tls_mode_own_records(c->mode)) {
        uint8_t body[2] = {level, desc};
        if (!write_record(c, TLS_CT_ALERT, body, sizeof(body)))
            return;
    } else {
        return;
    }
    ctr(c)->alerts_sent++;
    tcp_output(c->pcb);
}

/* Closing: once all staged plaintext is out, close_notify + FIN. */
static void try_finish_close(struct tls_conn *c)
{
    if (c->state != CONN_CLOSING)
        return;
    if (c->mode != TLS_MODE_NONE && !emit_record(c))
        return;
    if (c->mode == TLS_MODE_MBEDTLS && c->pcb) {
        /* mbed TLS keeps a partly sent record in its own buffer (out_left):
           close_notify first only flushes that, so drain, alert, drain. */
        if (c->ssl.out_left && (mbedtls_ssl_close_notify(&c->ssl) != 0 || c->ssl.out_left))
            return;
        if (!c->close_notify_sent) {
            c->close_notify_sent = true;
            mbedtls_ssl_close_notify(&c->ssl);
            ctr(c)->alerts_sent++;
            tcp_output(c->pcb);
        }
        if (c->ssl.out_left)
            return;
    } else {
        send_alert(c, MBEDTLS_SSL_ALERT_LEVEL_WARNING, ALERT_CLOSE_NOTIFY);
    }
    conn_kill(c, false);
}

/* Fatal protocol error: alert, then close. */
static void conn_fail(struct tls_conn *c, uint8_t alert)
{
    send_alert(c, MBEDTLS_SSL_ALERT_LEVEL_FATAL, alert);
    conn_kill(c, false);
}

/* --- upper-layer API --- */

/* stable: the caller's bytes stay unchanged in place for the life of the
   process (tls_conn_send_static). */
static size_t conn_send(struct tls_conn *c, const void *buf, size_t len, bool stable)
{
    if (c->state != CONN_OPEN || !c->pcb || c->offload_fence)
        return 0;
    if (c->mode == TLS_MODE_NONE) {
        size_t room = tcp_sndbuf(c->pcb);
        size_t n = len < room ? len : room;
        size_t done = 0;
        while (done < n) {
            size_t step = n - done > 0xffff ? 0xffff : n - done;
            if (!tcp_put(c, (const uint8_t *)buf + done, step))
                break;
            done += step;
        }
        return done;
    }
    const uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        if (c->tx_pt_len >= c->srv->record_size && !emit_record(c))
            break;
        if (c->tx_pt_len == 0 && tx_gate(c))
            break; /* switching to offload at this record boundary: fenced */
        /* The caller's bytes complete a record that the host seals: no
           staging copy for them (seal_direct). mbed TLS keeps staging (after
           WANT_WRITE it must be called again with the same bytes), and so do
           NIC frames: the record store must keep their plaintext for
           retransmissions, and lwIP always copies (docs/design.md §4). When
           TCP has no room, the bytes are staged as before. */
        size_t want = c->srv->record_size - c->tx_pt_len;
        if (len - done >= want && tls_mode_own_records(c->mode) && !tx_frames(c) &&
            seal_direct(c, p + done, want)) {
            done += want;
            continue;
        }
        /* Static bytes completing a whole NIC record: referenced, not staged.
           Without TCP room they are not staged either: the caller offers
           them again after the next ACK (a full send buffer has data in
           flight, so one comes). */
        if (stable && c->tx_pt_len == 0 && len - done >= want && tx_frames(c)) {
            size_t sent = emit_static_run(c, p + done, len - done);
            done += sent;
            if (!sent || c->state != CONN_OPEN)
                break; /* no room, or the stream tore and the connection died */
            continue;
        }
        /* A static tail shorter than a record, after whole ones went out:
           not staged. The caller offers it again after the next ACK, from
           where it lies, as the start of a whole record. */
        if (stable && done > 0 && c->tx_pt_len == 0 && len - done < want && tx_frames(c))
            break;
        uint8_t *stage = stage_buf(c);
        if (!stage)
            break;
        size_t n = c->srv->record_size - c->tx_pt_len;
        if (n > len - done)
            n = len - done;
        memcpy(stage + c->tx_pt_len, p + done, n);
        ctr(c)->tx_bytes_copied += n;
        c->tx_pt_len += n;
        done += n;
    }
    return done;
}

size_t tls_conn_send(struct tls_conn *c, const void *buf, size_t len)
{
    return conn_send(c, buf, len, false);
}

size_t tls_conn_send_static(struct tls_conn *c, const void *buf, size_t len)
{
    return conn_send(c, buf, len, true);
}

size_t tls_conn_send_space(struct tls_conn *c)
{
    if (c->state != CONN_OPEN || !c->pcb || c->offload_fence)
        return 0;
    size_t free_room;
    if (!slot_may_send(c, &free_room))
        return 0;
    size_t room = LWIP_MIN((size_t)tcp_sndbuf(c->pcb), free_room);
    if (c->pcb->unacked && room < stack_tcp_write_lowat()) {
        ctr(c)->tx_lowat_waits++; /* the next ACK offers it again */
        return 0;
    }
    if (c->mode == TLS_MODE_NONE)
        return room;
    size_t staged_free = c->srv->record_size - c->tx_pt_len;
    size_t wire = room > TLS_RECORD_OVERHEAD ? room - TLS_RECORD_OVERHEAD : 0;
    return staged_free + (wire > c->tx_pt_len ? wire - c->tx_pt_len : 0);
}

void tls_conn_flush(struct tls_conn *c)
{
    if (!c->pcb || c->state == CONN_DEAD)
        return;
    c->flush_wanted = c->mode != TLS_MODE_NONE && !emit_record(c);
    tcp_output(c->pcb);
}

void tls_conn_close(struct tls_conn *c)
{
    if (c->state == CONN_DEAD || c->state == CONN_CLOSING)
        return;
    conn_enter(c);
    if (c->state == CONN_HANDSHAKE) {
        conn_kill(c, false);
    } else {
        c->state = CONN_CLOSING;
        c->since_ms = sys_now();
        try_finish_close(c);
    }
    conn_leave(c);
}

void tls_conn_abort(struct tls_conn *c)
{
    conn_enter(c);
    conn_kill(c, true);
    conn_leave(c);
}

/* --- receive processing --- */

/* Offer pending plaintext to the upper layer. Returns true if all taken. */
static bool deliver_pending(struct tls_conn *c)
{
    while (c->rx_pt_len > c->rx_pt_off && c->state == CONN_OPEN) {
        long n = c->up->on_data(c->up_ctx, c->rx_pt + c->rx_pt_off, c->rx_pt_len - c->rx_pt_off);
        if (n < 0)
            return false;
        if (n == 0) {
            c->rx_stalled = true;
            return false;
        }
        c->rx_pt_off += (size_t)n;
    }
    c->rx_pt_off = c->rx_pt_len = 0;
    return c->state == CONN_OPEN;
}

/* Fold the record layer's counters since the last fold into the server's,
   live for /stats. Returns true if a fully offloaded record was among them. */
static bool rx_stats_fold(struct tls_conn *c)
{
    struct tls_rx_stats st;
    tls_rx_get_stats(c->rx, &st);
    struct tls_counters *t = ctr(c);
    const struct tls_rx_stats *seen = &c->rx_stats_seen;
    bool offloaded = st.records_full_offload != seen->records_full_offload;
    t->rx_records_full_offload += st.records_full_offload - seen->records_full_offload;
    t->rx_records_partial_offload += st.records_partial_offload - seen->records_partial_offload;
    t->rx_records_no_offload += st.records_no_offload - seen->records_no_offload;
    t->rx_tls_view_mismatch += st.view_mismatch - seen->view_mismatch;
    t->rx_bytes_reassembled += st.bytes_reassembled - seen->bytes_reassembled;
    c->rx_stats_seen = st;
    return offloaded;
}

/* The upper layer takes what it can of pt[0..len) where it lies, while
   nothing is pending; the rest is copied to the pending buffer, to be
   offered again by deliver_pending. Its callback may close the connection;
   freeing waits for conn_leave. */
static void deliver_piece(struct tls_conn *c, const uint8_t *pt, size_t len)
{
    if (!len)
        return; /* pt may be NULL */
    size_t taken = 0;
    while (c->rx_pt_len == 0 && taken < len && c->state == CONN_OPEN) {
        long n = c->up->on_data(c->up_ctx, pt + taken, len - taken);
        if (n <= 0) {
            c->rx_stalled = n == 0;
            break;
        }
        taken += (size_t)n;
    }
    ctr(c)->rx_bytes_delivered_direct += taken;
    memcpy(c->rx_pt + c->rx_pt_len, pt + taken, len - taken);
    c->rx_pt_len += len - taken;
}

static int sw_record(void *arg, uint8_t type, const uint8_t *pt, size_t len, const uint8_t *pt2,
                     size_t len2)
{
    struct tls_conn *c = arg;
    ctr(c)->rx_records++;
    /* Fold the record layer's classification of this record into the server
       counters, live for /stats. */
    bool offloaded = rx_stats_fold(c);
    if (c->rxo) {
        /* Record boundary: answer the NIC's resync requests (docs/design.md §5). */
        tls_rx_offload_record_done(c->rxo,
                                   c->rx_stream_base + (uint32_t)tls_rx_stream_offset(c->rx),
                                   tls_rx_next_seq(c->rx), offloaded);
    }
    if (type == TLS_CT_APPDATA) {
        /* Bounded: one pbuf's worth of records at most (see RX_PENDING_CAP). */
        if (c->rx_pt_len + len + len2 > RX_PENDING_CAP)
            return -1;
        /* With nothing pending, the upper layer takes the plaintext where it
           lies (the pbuf, or the record layer's buffer). */
        deliver_piece(c, pt, len);
        deliver_piece(c, pt2, len2);
        ctr(c)->rx_bytes_plaintext += len + len2;
        c->rx_app_bytes += len + len2;
        rx_gate(c, c->rx_stream_base + (uint32_t)tls_rx_stream_offset(c->rx),
                tls_rx_next_seq(c->rx));
        return 0;
    }
    uint8_t body[2]; /* an alert, put together if the NIC's delivery split it */
    if (type == TLS_CT_ALERT && len + len2 == 2) {
        if (len)
            memcpy(body, pt, len);
        if (len2)
            memcpy(body + len, pt2, len2);
        ctr(c)->alerts_received++;
        if (body[1] == ALERT_CLOSE_NOTIFY) {
            ctr(c)->close_notify_rx++;
            c->eof_seen = true;
            return 1;
        }
        conn_kill(c, false); /* fatal alert from the peer */
        return 1;
    }
    /* Handshake after the handshake (renegotiation, KeyUpdate-like) is refused. */
    ctr(c)->rx_malformed++;
    conn_fail(c, 10 /* unexpected_message */);
    return 1;
}

static void rx_sw(struct tls_conn *c)
{
    while (c->state == CONN_OPEN && deliver_pending(c) && c->rxq && !c->eof_seen) {
        struct pbuf *q = c->rxq;
        size_t len = q->len;
        struct tls_rx_mark mark, *marked = NULL;
        struct stack_rx_view view;
        if (stack_rx_pbuf_view(q, &view)) {
            /* The NIC's claim is about its packet's first byte; lwIP may
               have trimmed the front of the packet since. */
            uint32_t q_seq = c->rx_stream_base + (uint32_t)tls_rx_stream_offset(c->rx);
            mark = tls_rx_mark_skip(
                (struct tls_rx_mark){view.record_sn, view.rec_off, view.rec_len, view.walk},
                q_seq - view.seq);
            marked = &mark;
        }
        int r = tls_rx_feed(c->rx, q->payload, len, marked, sw_record, c);
        if (marked)
            rx_stats_fold(c); /* a distrusted mark counts even with no record done */
        rxq_consume(c, len);
        uint64_t rec_start;
        size_t rec_len;
        if (c->rxo && r == TLS_RX_OK && tls_rx_current_record(c->rx, &rec_start, &rec_len))
            tls_rx_offload_future_record(c->rxo,
                                         c->rx_stream_base + (uint32_t)(rec_start + rec_len),
                                         tls_rx_next_seq(c->rx) + 1);
        if (r == TLS_RX_ERR_BAD_MAC) {
            ctr(c)->TlsDecryptError++;
            conn_fail(c, ALERT_BAD_RECORD_MAC);
            return;
        }
        if (r < 0) {
            ctr(c)->rx_malformed++;
            conn_fail(c, ALERT_DECODE_ERROR);
            return;
        }
    }
}

static void rx_mbedtls(struct tls_conn *c)
{
    while (c->state == CONN_OPEN && deliver_pending(c)) {
        int r = mbedtls_ssl_read(&c->ssl, c->rx_pt, TLS_MAX_PLAINTEXT);
        if (r > 0) {
            c->rx_pt_off = 0;
            c->rx_pt_len = (size_t)r;
            ctr(c)->rx_records++;
            ctr(c)->rx_bytes_plaintext += (uint64_t)r;
            continue;
        }
        if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE)
            return;
        if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || r == 0) {
            ctr(c)->close_notify_rx++;
            c->eof_seen = true;
            return;
        }
        if (r == MBEDTLS_ERR_SSL_INVALID_MAC)
            ctr(c)->TlsDecryptError++;
        else
            ctr(c)->rx_malformed++;
        conn_kill(c, false); /* mbed TLS already sent its alert */
        return;
    }
}

static void rx_plain(struct tls_conn *c)
{
    while (c->state == CONN_OPEN && c->rxq) {
        struct pbuf *q = c->rxq;
        long n = c->up->on_data(c->up_ctx, q->payload, q->len);
        if (n < 0)
            return;
        if (n > 0)
            rxq_consume(c, (size_t)n);
        if ((size_t)n < q->len) {
            c->rx_stalled = true;
            return;
        }
    }
}

static bool switch_to_sw(struct tls_conn *c)
{
    /* Server writes with the server key; the client's key opens what we read. */
    c->tx_aead = tls_aead_new(c->server_key, c->key_len, c->server_salt);
    c->rx_aead = tls_aead_new(c->client_key, c->key_len, c->client_salt);
    /* The Finished messages were record 0 of each direction (RFC 5246 §6.1). */
    c->rx = c->rx_aead ? tls_rx_new(c->rx_aead, 1) : NULL;
    c->tx_seq = 1;
    return c->tx_aead && c->rx_aead && c->rx;
}

/* The fence (docs/design.md §4): offloaded records may be written only once no
   handshake byte waits in lwIP's unsent queue, so that no segment mixes
   bytes mbed TLS encrypted with bytes the NIC will encrypt. */
static void try_start_offload(struct tls_conn *c)
{
    if (!c->offload_fence || !c->pcb)
        return;
    if (c->pcb->unsent) {
        tcp_output(c->pcb);
        if (c->pcb->unsent)
            return; /* retried from on_sent */
    }
    c->offload_fence = false;
    enum tls_tx_resync policy = tx_policy(c);
    c->txo = tls_tx_offload_start(c->srv->offload, policy, c->pcb, c->server_key, c->key_len,
                                  c->server_salt, c->pcb->snd_lbb, c->tx_seq);
    conn_wipe_tx_key(c); /* tx_aead and the offload hold it now */
    if (c->gates_on)
        tls_offload_gate_started(c->srv->offload, &c->tx_gate, true, policy, c->tx_app_bytes,
                                 c->txo != NULL);
    if (!c->txo)
        ctr(c)->offload_fallback_sw++; /* sealed in software instead, still correct */
}

/* The TX gate, before a record is staged (nothing staged: the switch happens
   at a record boundary, behind the fence). True: fenced now, stop staging. */
static bool tx_gate(struct tls_conn *c)
{
    if (!c->gates_on || c->txo || c->tx_gate.decided || c->tx_pt_len || c->offload_fence ||
        c->state != CONN_OPEN)
        return false;
    if (!tls_offload_gate_check(c->srv->offload, &c->tx_gate, c->tx_app_bytes))
        return false;
    c->offload_fence = true;
    try_start_offload(c);
    return c->offload_fence;
}

/* The RX gate at a record end: the next record starts at TCP seq `seq` with
   number sn. The NIC follows from there (a packet it already passed over
   makes it search and ask for a resync, docs/design.md §5). */
static void rx_gate(struct tls_conn *c, uint32_t seq, uint64_t sn)
{
    if (!c->gates_on || c->rxo || c->rx_gate.decided || !c->pcb || c->state != CONN_OPEN)
        return;
    struct tls_offload *o = c->srv->offload;
    if (!tls_offload_gate_check(o, &c->rx_gate, c->rx_app_bytes))
        return;
    c->rxo = tls_rx_offload_start(o, c->pcb, c->client_key, c->key_len, c->client_salt, seq, sn);
    tls_offload_gate_started(o, &c->rx_gate, false, tx_policy(c), c->rx_app_bytes, c->rxo != NULL);
    conn_wipe_rx_key(c);
}

void tls_conn_expect(struct tls_conn *c, bool tx, uint64_t bytes)
{
    if (!c->gates_on)
        return;
    if (tx) {
        tls_offload_gate_expect(&c->tx_gate, c->tx_app_bytes + c->tx_pt_len, bytes);
    } else {
        /* The upper layer stands at the start of the plaintext not yet taken. */
        uint64_t pending = c->rx_pt_len - c->rx_pt_off;
        tls_offload_gate_expect(&c->rx_gate, c->rx_app_bytes - pending, bytes);
    }
}

/* --- the handshake, off the core lock ---
   Under the lock, hs_kick() copies new input for mbed TLS and queues the
   connection; a worker of the pool runs mbed TLS (its bio writes into hs_out);
   hs_drain(), back on the tcpip thread, consumes what mbed TLS read from
   rxq, writes the flight to TCP and finishes or re-queues. A connection that
   dies meanwhile tells its upper layer at once but is freed by hs_drain. An ECDHE-ECDSA
   handshake's ~10 ms of public-key work thus no longer stops every
   established flow (docs/design.md §2). */

static void hs_drain(void *arg);
static void process_input(struct tls_conn *c);

static void *hs_main(void *arg)
{
    struct tls_server *srv = arg;
    struct tls_hs_worker *w = &srv->hs;
    /* Below the packet threads: when handshakes and established flows want
       the same CPU, the flows win (their ACKs, RX buffer reposts) and
       handshakes use what is left. Best effort: an error leaves the nice. */
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);
    if (errno == 0)
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice + HS_NICE);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->todo[0] && !w->todo[1] && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        int qi = w->todo[0] ? 0 : 1;
        struct tls_conn *c = w->todo[qi];
        if (!c)
            break; /* stopping, nothing queued */
        w->todo[qi] = c->hs_next;
        if (!w->todo[qi])
            w->todo_tail[qi] = NULL;
        if (qi == 1)
            w->n_new--;
        bool stopping = w->stop;
        pthread_mutex_unlock(&w->mu);
        if (stopping || __atomic_load_n(&c->hs_cancel, __ATOMIC_ACQUIRE)) {
            /* the server is going away, or the connection is: no public-key work */
            c->hs_result = MBEDTLS_ERR_SSL_INTERNAL_ERROR;
            c->hs_skipped = !stopping;
        } else {
            handshaking = c;
            c->hs_result = mbedtls_ssl_handshake(&c->ssl);
            handshaking = NULL;
        }
        pthread_mutex_lock(&w->mu);
        c->hs_next = w->done;
        w->done = c;
        if (!w->posted) {
            w->posted = true;
            pthread_mutex_unlock(&w->mu);
            /* Blocks while lwIP's mailbox is full; fails only without memory. */
            while (tcpip_callback(hs_drain, srv) != ERR_OK)
                usleep(1000);
            pthread_mutex_lock(&w->mu);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static bool hs_start(struct tls_server *srv)
{
    struct tls_hs_worker *w = &srv->hs;
    if (w->started)
        return true;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->n_th = 0;
    for (unsigned i = 0; i < srv->hs_workers; i++) {
        if (pthread_create(&w->th[w->n_th], NULL, hs_main, srv) != 0)
            break; /* fewer workers: still correct, slower */
        pthread_setname_np(w->th[w->n_th], "tls-handshake");
        w->n_th++;
    }
    if (!w->n_th) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        return false;
    }
    w->started = true;
    return true;
}

bool tls_conn_hs_stop(struct tls_server *srv)
{
    struct tls_hs_worker *w = &srv->hs;
    if (!w->started)
        return true;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (unsigned i = 0; i < w->n_th; i++)
        pthread_join(w->th[i], NULL);
    w->n_th = 0;
    w->started = false;
    /* The last drain callback runs on the tcpip thread: wait for it (2 s). */
    bool posted = true;
    for (int i = 0; i < 2000 && posted; i++) {
        pthread_mutex_lock(&w->mu);
        posted = w->posted;
        pthread_mutex_unlock(&w->mu);
        if (posted)
            usleep(1000);
    }
    if (posted)
        return false;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    return true;
}

/* Write the flight mbed TLS produced into TCP; true when all of it is.
   Sent at once only if `send`: the last flight (the server's Finished) must
   leave after the NIC's RX context was posted, or the client's first record
   could reach the NIC before it (inside tcp_input lwIP defers output the
   same way, which the synchronous handshake relied on). */
static bool hs_flush(struct tls_conn *c, bool send)
{
    while (c->pcb && c->hs_out_off < c->hs_out_len) {
        size_t n = c->hs_out_len - c->hs_out_off, room = tcp_sndbuf(c->pcb);
        n = n < room ? n : room;
        n = n < 0xffff ? n : 0xffff;
        if (n == 0 || stack_tcp_write(c->pcb, c->hs_out + c->hs_out_off, (u16_t)n,
                                      TCP_WRITE_FLAG_COPY) != ERR_OK)
            break;
        c->hs_out_off += n;
    }
    bool all = c->hs_out_off == c->hs_out_len;
    if (all)
        c->hs_out_off = c->hs_out_len = 0;
    if (c->pcb && (send || !all))
        tcp_output(c->pcb);
    return all;
}

/* Why a new handshake may not be queued now: 0 it may, 1 the queue is full,
   2 late (the oldest waiting one waited hs_queue_ms). Under w->mu. */
static int hs_refusal(const struct tls_server *srv, uint32_t now)
{
    const struct tls_hs_worker *w = &srv->hs;
    if (w->n_new >= srv->hs_queue_cap)
        return 1;
    /* The queue is first in, first out: a handshake queued now would wait
       at least as long as the oldest one has. Beyond half the handshake
       timeout it would likely time out after its public-key work was done;
       refused now it costs nothing and the peer may come back when the
       queue is shorter (docs/design.md §2). */
    if (srv->hs_queue_ms && w->todo[1] && now - w->todo[1]->hs_queued_ms >= srv->hs_queue_ms)
        return 2;
    return 0;
}

bool tls_conn_admit(struct tls_server *srv, enum tls_mode mode)
{
    if (mode == TLS_MODE_NONE || !srv || !srv->hs.started)
        return true;
    struct tls_hs_worker *w = &srv->hs;
    pthread_mutex_lock(&w->mu);
    int why = hs_refusal(srv, sys_now());
    pthread_mutex_unlock(&w->mu);
    if (why == 1)
        srv->counters[mode].handshakes_queue_full++;
    else if (why == 2)
        srv->counters[mode].handshakes_queue_late++;
    return why == 0;
}

/* Queue the handshake with the input that arrived since the last step. */
static void hs_kick(struct tls_conn *c)
{
    if (c->hs_busy || c->state != CONN_HANDSHAKE || c->hs_finished)
        return;
    if (!c->hs_in) {
        c->hs_in = malloc(HS_IN_CAP);
        c->hs_out = malloc(HS_OUT_CAP);
        if (!c->hs_in || !c->hs_out || !hs_start(c->srv)) {
            ctr(c)->handshakes_failed++;
            conn_kill(c, false);
            return;
        }
    }
    /* rxq holds exactly the bytes mbed TLS has not read: hs_in's, then new ones. */
    size_t q = c->rxq ? c->rxq->tot_len : 0, add = q > c->hs_in_len ? q - c->hs_in_len : 0;
    if (add > HS_IN_CAP - c->hs_in_len)
        add = HS_IN_CAP - c->hs_in_len;
    if (add)
        pbuf_copy_partial(c->rxq, c->hs_in + c->hs_in_len, (u16_t)add, (u16_t)c->hs_in_len);
    c->hs_in_len += add;
    bool news = add || !c->hs_started || (c->eof_seen && !c->hs_eof);
    if (!news)
        return;
    c->hs_started = true;
    c->hs_eof = c->eof_seen && q == c->hs_in_len;
    struct tls_hs_worker *w = &c->srv->hs;
    int qi = c->hs_steps ? 0 : 1;
    pthread_mutex_lock(&w->mu);
    uint32_t now = sys_now();
    int why = qi == 1 ? hs_refusal(c->srv, now) : 0;
    if (why) {
        /* A ClientHello storm: refuse rather than queue without bound (each
           waiting handshake holds its connection's memory) or for longer
           than it could wait. */
        pthread_mutex_unlock(&w->mu);
        if (why == 1)
            ctr(c)->handshakes_queue_full++;
        else
            ctr(c)->handshakes_queue_late++;
        conn_kill(c, true);
        return;
    }
    if (qi == 1) {
        w->n_new++;
        c->hs_queued_ms = now;
    }
    c->hs_steps++;
    c->hs_busy = true;
    c->hs_next = NULL;
    if (w->todo_tail[qi])
        w->todo_tail[qi]->hs_next = c;
    else
        w->todo[qi] = c;
    w->todo_tail[qi] = c;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* The handshake is over and its flight is in TCP: switch to application data. */
static void hs_complete(struct tls_conn *c)
{
    free(c->hs_in);
    free(c->hs_out);
    c->hs_in = c->hs_out = NULL;
    if (tls_mode_own_records(c->mode)) {
        if (!switch_to_sw(c)) {
            ctr(c)->handshakes_failed++;
            conn_kill(c, true);
            return;
        }
        if (!tls_mode_offloads(c->mode)) {
            conn_wipe_tx_key(c);
            conn_wipe_rx_key(c);
        }
    }
    ctr(c)->handshakes_ok++;
    c->state = CONN_OPEN;
    if (tls_mode_offloads(c->mode)) {
        /* RX: the next byte mbed TLS did not consume starts record 1. */
        c->rx_stream_base = c->rx_seq0 + (uint32_t)c->rx_consumed;
        c->gates_on = c->srv->offload != NULL;
        if (c->gates_on) {
            rx_gate(c, c->rx_stream_base, 1); /* posted before our Finished leaves */
            tx_gate(c);
        } else {
            conn_wipe_rx_key(c); /* no device: software for good */
            c->offload_fence = true;
            try_start_offload(c);
        }
    }
}

/* The last flight is in TCP (not sent yet): contexts first, then send. */
static void hs_finish(struct tls_conn *c)
{
    hs_complete(c);
    if (c->pcb)
        tcp_output(c->pcb);
    if (c->state == CONN_OPEN)
        process_input(c); /* application data that came with the last flight */
}

/* One worker step is over (tcpip thread, core lock held). */
static void hs_step_done(struct tls_conn *c)
{
    c->hs_busy = false;
    if (c->state == CONN_DEAD) {
        if (c->hs_skipped)
            ctr(c)->handshakes_abandoned++;
        return;
    }
    if (c->hs_in_off) { /* what mbed TLS read is consumed now */
        rxq_consume(c, c->hs_in_off);
        memmove(c->hs_in, c->hs_in + c->hs_in_off, c->hs_in_len - c->hs_in_off);
        c->hs_in_len -= c->hs_in_off;
        c->hs_in_off = 0;
    }
    int r = c->hs_result;
    if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
        hs_flush(c, true);
        hs_kick(c); /* input that came meanwhile */
        process_input(c);
        return;
    }
    if (r != 0 || !c->keys_ok) {
        hs_flush(c, true); /* mbed TLS's alert, if it wrote one */
        ctr(c)->handshakes_failed++;
        conn_kill(c, false);
        return;
    }
    c->hs_finished = true;
    if (hs_flush(c, false))
        hs_finish(c);
}

static void hs_drain(void *arg)
{
    struct tls_server *srv = arg;
    struct tls_hs_worker *w = &srv->hs;
    pthread_mutex_lock(&w->mu);
    struct tls_conn *c = w->done;
    w->done = NULL;
    w->posted = false;
    pthread_mutex_unlock(&w->mu);
    while (c) {
        struct tls_conn *next = c->hs_next;
        conn_enter(c);
        hs_step_done(c); /* clears hs_busy */
        conn_leave(c);   /* frees c if it died meanwhile */
        c = next;
    }
}

static void process_input(struct tls_conn *c)
{
    if (c->state == CONN_HANDSHAKE)
        hs_kick(c);
    if (c->state == CONN_OPEN || c->state == CONN_CLOSING) {
        c->rx_stalled = false;
        if (c->state == CONN_OPEN) {
            if (c->mode == TLS_MODE_NONE)
                rx_plain(c);
            else if (tls_mode_own_records(c->mode))
                rx_sw(c);
            else
                rx_mbedtls(c);
        }
        if (c->state == CONN_CLOSING) {
            /* Upper layer is done: discard what the peer still sends. */
            if (c->rxq)
                rxq_consume(c, c->rxq->tot_len);
        }
    }
    if (c->eof_seen && !c->eof_told && c->state == CONN_OPEN && !c->rx_stalled &&
        c->rx_pt_len == 0 && (!c->rxq || tls_mode_own_records(c->mode))) {
        c->eof_told = true;
        c->up->on_eof(c->up_ctx);
    }
    if (c->eof_seen && c->state == CONN_HANDSHAKE && !c->hs_busy && !c->hs_finished) {
        ctr(c)->handshakes_failed++;
        conn_kill(c, false); /* truncated handshake */
    }
}

void tls_conn_resume(struct tls_conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    conn_enter(c);
    process_input(c);
    conn_leave(c);
}

/* --- lwIP callbacks --- */

/* Receive memory limits (stack/stack_driver.h, struct stack_rx_limits) for
   unread input: at most unread_pbufs pbufs queued (else refuse p: false),
   and at most the connection's share of RX buffers pinned (else p is copied
   into compact memory, marks and views kept). Counts p into the queue. */
static bool rxq_admit(struct tls_conn *c, struct pbuf **p)
{
    const struct stack_rx_limits *lim = stack_rx_limits_of(*p);
    uint32_t n = pbuf_clen(*p), pinned = 0;
    for (const struct pbuf *q = *p; q; q = q->next)
        pinned += stack_rx_pbuf_pinned(q);
    if (lim && c->rxq && c->rxq_pbufs + n > lim->unread_pbufs) {
        stack_rx_note_refused(*p);
        return false;
    }
    if (pinned && c->rxq_pinned + pinned > stack_rx_share(*p)) {
        uint32_t freed = 0;
        *p = stack_rx_compact_chain(*p, &freed);
        pinned -= freed;
    }
    c->rxq_pbufs += n;
    c->rxq_pinned += pinned;
    return true;
}

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
    struct tls_conn *c = arg;
    (void)pcb;
    if (!c) {
        if (p)
            pbuf_free(p);
        return ERR_OK;
    }
    conn_enter(c);
    if (err != ERR_OK || c->state == CONN_DEAD) {
        if (p)
            pbuf_free(p);
    } else if (!p) {
        c->eof_seen = true;
        process_input(c);
        if ((c->state == CONN_HANDSHAKE && !c->hs_busy) || (c->state == CONN_CLOSING && !c->rxq))
            conn_kill(c, false);
    } else if (!rxq_admit(c, &p)) {
        conn_leave(c);
        return ERR_MEM; /* lwIP keeps p and offers it again */
    } else {
        if (c->rxq)
            pbuf_cat(c->rxq, p);
        else
            c->rxq = p;
        rxq_drop_empty(c);
        process_input(c);
    }
    return conn_leave_cb(c);
}

static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
    struct tls_conn *c = arg;
    (void)pcb;
    if (!c)
        return ERR_OK;
    conn_enter(c);
    c->tx_acked += len;
    if (c->state == CONN_CLOSING)
        c->since_ms = sys_now(); /* output progress */
    if (c->state == CONN_HANDSHAKE && !c->hs_busy && c->hs_out_len &&
        hs_flush(c, !c->hs_finished) && c->hs_finished)
        hs_finish(c);
    if (c->txo)
        tls_tx_offload_acked(c->txo, c->pcb);
    if (c->offload_fence && c->state == CONN_OPEN)
        try_start_offload(c);
    if (tls_slot_used(&c->slot, c->tx_acked, sys_now()))
        tls_slot_end(&c->slot, c->tx_acked - c->slot.acked0 >= tls_slots_cfg()->turn_bytes
                                   ? TLS_SLOT_END_BYTES
                                   : TLS_SLOT_END_TIME);
    if (c->state == CONN_OPEN && !c->offload_fence) {
        if (c->flush_wanted)
            tls_conn_flush(c);
        c->up->on_writable(c->up_ctx);
    } else if (c->state == CONN_CLOSING) {
        try_finish_close(c);
    }
    if (c->slot.state != TLS_SLOT_WAIT && conn_tx_idle(c)) { /* nothing more to send */
        tls_slot_end(&c->slot, TLS_SLOT_END_IDLE);
        c->bulk = c->free_open = false;
    }
    if (tls_slots_free_for_line())
        slots_hand();
    return conn_leave_cb(c);
}

static void on_err(void *arg, err_t err)
{
    struct tls_conn *c = arg;
    (void)err;
    if (!c)
        return;
    c->pcb = NULL;  /* already freed by lwIP */
    if (c->hs_busy) /* its queued handshake step is skipped */
        __atomic_store_n(&c->hs_cancel, true, __ATOMIC_RELEASE);
    if (c->rxo) {
        tls_rx_offload_stop(c->rxo);
        c->rxo = NULL;
    }
    if (c->txo) {
        tls_tx_offload_release(c->txo, NULL, true);
        c->txo = NULL;
    }
    conn_enter(c);
    c->state = CONN_DEAD;
    conn_leave(c);
}

static err_t on_poll(void *arg, struct tcp_pcb *pcb)
{
    struct tls_conn *c = arg;
    (void)pcb;
    if (!c)
        return ERR_OK;
    conn_enter(c);
    uint32_t idle_ms = sys_now() - c->since_ms;
    if (c->state == CONN_CLOSING) {
        try_finish_close(c);
        if (c->state == CONN_CLOSING && idle_ms >= CLOSING_TIMEOUT_MS)
            conn_kill(c, true);
    } else if (c->state == CONN_OPEN) {
        try_start_offload(c);
        if (c->rx_stalled)
            process_input(c);
        if (c->flush_wanted)
            tls_conn_flush(c);
        if (c->state == CONN_OPEN)
            c->up->on_writable(c->up_ctx);
    }
    if (tls_slots_free_for_line())
        slots_hand();
    return conn_leave_cb(c);
}

void tls_conn_get_progress(const struct tls_conn *c, struct tls_conn_progress *p)
{
    p->handshaking = c->state == CONN_HANDSHAKE;
    p->tx_in_flight = c->pcb && (c->pcb->unsent || c->pcb->unacked);
    p->tx_acked = c->tx_acked;
    p->rx_bytes = c->rx_consumed;
}

int tls_conn_export_keys(void *p_expkey, const unsigned char *ms, const unsigned char *kb,
                         size_t maclen, size_t keylen, size_t ivlen,
                         const unsigned char client_random[32],
                         const unsigned char server_random[32], mbedtls_tls_prf_types tls_prf_type)
{
    struct tls_server *srv = p_expkey;
    struct tls_conn *c = handshaking;
    (void)server_random;
    (void)tls_prf_type;
    if (!c || keylen > sizeof(c->client_key) || ivlen != 4)
        return -1;
    /* RFC 5246 §6.3 key block: client MAC, server MAC, client key, server
       key, client IV, server IV (GCM: no MAC keys, 4-byte implicit IVs).
       Copied only for our own record layer; mbed TLS wipes the block. */
    if (tls_mode_own_records(c->mode)) {
        const unsigned char *p = kb + 2 * maclen;
        memcpy(c->client_key, p, keylen);
        memcpy(c->server_key, p + keylen, keylen);
        memcpy(c->client_salt, p + 2 * keylen, 4);
        memcpy(c->server_salt, p + 2 * keylen + 4, 4);
    }
    c->key_len = keylen;
    c->keys_ok = true;
    if (srv->keylog) {
        flockfile(srv->keylog); /* one line per handshake, whichever worker runs it */
        fputs("CLIENT_RANDOM ", srv->keylog);
        for (int i = 0; i < 32; i++)
            fprintf(srv->keylog, "%02x", client_random[i]);
        fputc(' ', srv->keylog);
        for (int i = 0; i < 48; i++)
            fprintf(srv->keylog, "%02x", ms[i]);
        fputc('\n', srv->keylog);
        fflush(srv->keylog);
        funlockfile(srv->keylog);
    }
    return 0;
}

struct tls_conn *tls_conn_accept(struct tls_server *srv, enum tls_mode mode, struct tcp_pcb *pcb,
                                 uint32_t snd_buf, const struct tls_conn_upper *up, void *up_ctx)
{
    struct tls_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        tcp_abort(pcb);
        return NULL;
    }
    if (mode == TLS_MODE_NONE)
        srv = NULL;
    c->srv = srv;
    c->mode = srv ? mode : TLS_MODE_NONE;
    c->pcb = pcb;
    c->up = up;
    c->up_ctx = up_ctx;
    c->state = srv ? CONN_HANDSHAKE : CONN_OPEN;
    c->since_ms = sys_now();
    if (srv) {
        c->tx_pt = malloc(TLS_MAX_PLAINTEXT);
        c->tx_rec = malloc(TLS_MAX_PLAINTEXT + TLS_RECORD_OVERHEAD);
        c->rx_pt = malloc(RX_PENDING_CAP);
        mbedtls_ssl_init(&c->ssl);
        c->ssl_init = true;
        if (!c->tx_pt || !c->tx_rec || !c->rx_pt || mbedtls_ssl_setup(&c->ssl, &srv->conf) != 0) {
            conn_free(c);
            tcp_abort(pcb);
            return NULL;
        }
        mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
    }
    c->rx_seq0 = pcb->rcv_nxt;
    if (snd_buf > pcb->snd_buf)
        pcb->snd_buf = snd_buf;
    tcp_arg(pcb, c);
    tcp_recv(pcb, on_recv);
    tcp_sent(pcb, on_sent);
    tcp_err(pcb, on_err);
    tcp_poll(pcb, on_poll, CONN_POLL_INTERVAL);
    tcp_nagle_disable(pcb);
    return c;
}
