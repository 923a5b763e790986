/*
 * tls_offload.c - host side of the TLS offload (docs/design.md §4, §5): the
 * record store the driver reads retransmitted bytes from (get_record), tag
 * reports, lingering until every record is acked, the software fallback of
 * a refused install (records sealed in place), the RX resync confirm/deny
 * decisions and the hint back-off. The device is reached only through
 * struct tls_offload_ops.
 */
#include "tls_offload.h"
#include "stack_driver.h"
#include "tls_record.h"

#include <lwip/priv/tcp_priv.h>
#include <errno.h>
#include <inttypes.h>
#include <lwip/sys.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINGER_POLL   4     /* tcp_poll interval, in TCP slow-timer ticks */
#define LINGER_MAX_MS 60000 /* give up on an unresponsive peer */

struct tx_record {
    struct tx_record *prev, *next;
    struct pbuf *p;                      /* the plaintext frame, as written to TCP; NULL for a
                                            record of static bytes until someone asks for it */
    const uint8_t *ext;                  /* static record: its payload, in place */
    uint8_t ext_hdr[TLS_PAYLOAD_OFFSET]; /* ... and its header and nonce */
    uint32_t start_seq;
    uint16_t len;
    uint64_t record_sn;
    bool tag_valid;
    bool sealed; /* install failed: p holds the record encrypted in software */
    uint8_t tag[STACK_TLS_TAG_LEN];
};

struct tls_tx_offload {
    struct tls_offload *o;
    struct tls_offload_counters *c;     /* &o->c[policy] */
    struct tls_tx_offload *prev, *next; /* o->tx_flows */
    struct stack_tls_flow *dev_flow;
    uint32_t frame_end;            /* seq past the last frame written; tls/ seals after it */
    struct tx_record *head, *tail; /* oldest .. newest */
    bool lingering;
    struct tcp_pcb *linger_pcb; /* while lingering: the pcb whose callbacks we own */
    uint32_t linger_since_ms;
    bool failed;              /* the NIC refused the install: records are sealed here */
    struct tls_aead *sw_aead; /* until the NIC answered the install (then NULL if ok) */
};

#define RX_MAX_PENDING_REQ  8
#define RX_HINT_BACKOFF_MIN 2
#define RX_HINT_BACKOFF_MAX 128

struct tls_rx_offload {
    struct tls_offload *o;
    struct tls_rx_offload *prev, *next; /* o->rx_flows */
    struct stack_tls_flow *dev_flow;
    uint32_t boundary_seq; /* where tls/ stands between records */
    uint64_t boundary_sn;
    uint32_t req[RX_MAX_PENDING_REQ];
    unsigned nreq;
    unsigned sw_run;     /* consecutive records not fully offloaded */
    unsigned hint_after; /* back-off threshold for the next hint */
    bool failed;         /* the NIC refused the install: never resync or hint */
};

struct tls_offload {
    const struct tls_offload_ops *ops;
    struct stack_tls_offload *dev;
    bool rx_hint;
    struct tls_tx_offload *tx_flows;
    struct tls_rx_offload *rx_flows;
    struct tls_offload_policy policy;
    struct tls_offload_counters c[TLS_TX_RESYNC_COUNT]; /* by the flow's policy */
    struct tls_offload_rx_counters rxc;
    struct tx_record *spare; /* freed records kept for reuse (RECORD_SPARE_MAX) */
    unsigned nspare;
};

/* Freed store entries kept for the next records: one per record had been a
   calloc and a free, a visible part of the host's work per record of an
   offloaded download. Bounded, so a burst of acked records returns memory. */
#define RECORD_SPARE_MAX 256

/* Serial-number arithmetic (RFC 1982 style) for 32-bit TCP sequence numbers. */
static bool seq_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static bool seq_leq(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) <= 0;
}

/* A frame for one record. Freed frames are reused by lwIP's heap, whose
   16 KiB class keeps them on a free list (stack/stack_mem.h): a malloc and
   free of 16 KiB per record had been a visible part of the host's CPU per
   byte of an offloaded download. */
struct pbuf *tls_offload_frame_alloc(void)
{
    return pbuf_alloc(PBUF_RAW, TLS_MAX_RECORD_LEN, PBUF_RAM);
}

static void record_free(struct tls_tx_offload *t, struct tx_record *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        t->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        t->tail = r->prev;
    if (r->p)
        pbuf_free(r->p); /* a DUMP descriptor may still hold its own reference */
    t->c->records_in_store--;
    struct tls_offload *o = t->o;
    if (o->nspare < RECORD_SPARE_MAX) {
        r->next = o->spare;
        o->spare = r;
        o->nspare++;
    } else {
        free(r);
    }
}

/* A store entry set to init, from the spares when there is one; NULL: no
   memory. */
static struct tx_record *record_new(struct tls_offload *o, const struct tx_record *init)
{
    struct tx_record *r = o->spare;
    if (r) {
        o->spare = r->next;
        o->nspare--;
    } else if (!(r = malloc(sizeof(*r)))) {
        return NULL;
    }
    *r = *init;
    return r;
}

/* The record holding byte seq, or NULL. Retransmissions hit the oldest. */
static struct tx_record *find_record(struct tls_tx_offload *t, uint32_t seq)
{
    for (struct tx_record *r = t->head; r; r = r->next) {
        if (seq_lt(seq, r->start_seq))
            return NULL;
        if (seq_lt(seq, r->start_seq + r->len))
            return r;
    }
    return NULL;
}

/* A static record's frame, built the first time the driver needs the record
   (a retransmission) or the flow falls back to software: header and nonce,
   the payload copied from where it stays, a blank tag. False: no memory. */
static bool record_frame(struct tls_tx_offload *t, struct tx_record *r)
{
    if (r->p)
        return true;
    struct pbuf *f = tls_offload_frame_alloc();
    if (!f)
        return false;
    uint8_t *b = f->payload;
    size_t n = r->len - TLS_RECORD_OVERHEAD;
    memcpy(b, r->ext_hdr, TLS_PAYLOAD_OFFSET);
    memcpy(b + TLS_PAYLOAD_OFFSET, r->ext, n);
    memset(b + TLS_PAYLOAD_OFFSET + n, 0, TLS_TAG_LEN);
    pbuf_realloc(f, r->len);
    r->p = f;
    t->c->tx_static_frames_built++;
    return true;
}

/* Seal a frame in place (tls_record_seal allows pt == out + 13). */
static void record_seal(struct tls_tx_offload *t, struct tx_record *r)
{
    if (!record_frame(t, r))
        return; /* its segments are dropped by the driver hook (counted), TCP resends */
    uint8_t *f = r->p->payload;
    if (r->len < TLS_RECORD_OVERHEAD || r->p->len < r->len)
        return; /* not a frame: never sent (the driver drops it, counted) */
    tls_record_seal(t->sw_aead, r->record_sn, f[0], f + TLS_PAYLOAD_OFFSET,
                    r->len - TLS_RECORD_OVERHEAD, f);
    r->sealed = true;
}

/* --- what the driver calls (struct stack_tls_host_ops) --- */

static bool tx_get_record(void *host_flow, uint32_t seq, bool bytes, struct stack_tls_record *out)
{
    struct tx_record *r = find_record(host_flow, seq);
    if (!r || (bytes && !record_frame(host_flow, r)))
        return false;
    *out = (struct stack_tls_record){.p = r->p,
                                     .start_seq = r->start_seq,
                                     .len = r->len,
                                     .record_sn = r->record_sn,
                                     .tag_valid = r->tag_valid,
                                     .sealed = r->sealed};
    if (r->tag_valid)
        memcpy(out->tag, r->tag, STACK_TLS_TAG_LEN);
    return true;
}

static uint32_t tx_frame_end(void *host_flow)
{
    const struct tls_tx_offload *t = host_flow;
    return t->frame_end;
}

static void tx_tag_report(void *host_flow, uint64_t record_sn, const uint8_t *tag)
{
    struct tls_tx_offload *t = host_flow;
    /* Reports arrive for the newest records: search from the tail. */
    for (struct tx_record *r = t->tail; r; r = r->prev) {
        if (r->record_sn == record_sn) {
            memcpy(r->tag, tag, STACK_TLS_TAG_LEN);
            r->tag_valid = true;
            t->c->tx_tls_tags_cached++;
            return;
        }
        if (r->record_sn < record_sn)
            return;
    }
}

static void tx_install_done(void *host_flow, bool ok)
{
    struct tls_tx_offload *t = host_flow;
    if (ok) {
        tls_aead_free(t->sw_aead); /* wipes the key schedule */
        t->sw_aead = NULL;
        return;
    }
    t->failed = true;
    for (struct tx_record *r = t->head; r; r = r->next)
        record_seal(t, r);
}

static const struct stack_tls_host_ops tx_host_ops = {.get_record = tx_get_record,
                                                      .frame_end = tx_frame_end,
                                                      .tag_report = tx_tag_report,
                                                      .install_done = tx_install_done};

static void rx_respond(struct tls_rx_offload *r, uint32_t seq, uint64_t sn, bool ok)
{
    struct tls_offload *o = r->o;
    if (r->failed)
        return; /* the NIC has no context to resync */
    int rc = ok ? o->ops->rx_resync_confirm(o->dev, r->dev_flow, seq, sn)
                : o->ops->rx_resync_deny(o->dev, r->dev_flow, seq);
    if (rc != 0)
        return; /* ring full: the NIC times out the candidate by itself */
    if (ok)
        o->rxc.TlsRxDeviceResync++;
    else
        o->rxc.rx_resync_denied++;
}

static void rx_resync_request(void *host_flow, uint32_t seq)
{
    struct tls_rx_offload *r = host_flow;
    struct tls_offload *o = r->o;
    if (r->failed)
        return;
    o->rxc.rx_resync_requests++;
    if (seq == r->boundary_seq) {
        rx_respond(r, seq, r->boundary_sn, true); /* tls/ stands right there */
        return;
    }
    if (seq_lt(seq, r->boundary_seq)) {
        rx_respond(r, seq, 0, false); /* already passed: not a record start we know */
        return;
    }
    if (r->nreq == RX_MAX_PENDING_REQ) {
        memmove(r->req, r->req + 1, (RX_MAX_PENDING_REQ - 1) * sizeof(r->req[0]));
        r->nreq--;
        o->rxc.rx_resync_req_dropped++;
    }
    r->req[r->nreq++] = seq;
}

static void rx_install_done(void *host_flow, bool ok)
{
    struct tls_rx_offload *r = host_flow;
    if (!ok)
        r->failed = true; /* software decrypts; no resync answers, no hints */
}

static const struct stack_tls_host_ops rx_host_ops = {.install_done = rx_install_done,
                                                      .resync_request = rx_resync_request};

/* --- lifecycle --- */

struct tls_offload *tls_offload_new(const struct tls_offload_ops *ops,
                                    struct stack_tls_offload *dev)
{
    struct tls_offload *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->ops = ops;
    o->dev = dev;
    return o;
}

static void flow_stop(struct tls_tx_offload *t)
{
    struct tls_offload *o = t->o;
    while (t->head)
        record_free(t, t->head);
    if (t->prev)
        t->prev->next = t->next;
    else
        o->tx_flows = t->next;
    if (t->next)
        t->next->prev = t->prev;
    o->ops->tx_del(o->dev, t->dev_flow);
    if (t->lingering)
        t->c->lingering--;
    tls_aead_free(t->sw_aead);
    free(t);
}

void tls_offload_free(struct tls_offload *o)
{
    if (!o)
        return;
    for (struct tls_tx_offload *t = o->tx_flows, *next; t; t = next) {
        next = t->next; /* stopping t unlinks only t */
        if (t->lingering)
            tcp_abort(t->linger_pcb); /* linger_err stops the flow */
        else
            flow_stop(t);
    }
    while (o->rx_flows)
        tls_rx_offload_stop(o->rx_flows);
    while (o->spare) {
        struct tx_record *r = o->spare;
        o->spare = r->next;
        free(r);
    }
    free(o);
}

const struct tls_offload_counters *tls_offload_counters(const struct tls_offload *o,
                                                        enum tls_tx_resync policy)
{
    return &o->c[policy];
}

struct tls_tx_offload *tls_tx_offload_start(struct tls_offload *o, enum tls_tx_resync policy,
                                            struct tcp_pcb *pcb, const uint8_t *key, size_t key_len,
                                            const uint8_t salt[4], uint32_t start_seq,
                                            uint64_t record_sn)
{
    if (!o)
        return NULL;
    struct tls_tx_offload *t = NULL;
    if (key_len == 16 || key_len == 32)
        t = calloc(1, sizeof(*t));
    if (t)
        t->sw_aead = tls_aead_new(key, key_len, salt); /* for a refused install */
    if (!t || !t->sw_aead) {
        free(t);
        o->c[policy].tx_tls_ctx_fail++;
        return NULL;
    }
    t->o = o;
    t->c = &o->c[policy];
    t->frame_end = start_seq;
    struct stack_tls_params p = {.saddr = ip_2_ip4(&pcb->local_ip)->addr,
                                 .daddr = ip_2_ip4(&pcb->remote_ip)->addr,
                                 .sport = lwip_htons(pcb->local_port),
                                 .dport = lwip_htons(pcb->remote_port),
                                 .start_seq = start_seq,
                                 .record_sn = record_sn,
                                 .key = key,
                                 .key_len = key_len,
                                 .policy = (enum stack_tls_tx_resync)policy};
    memcpy(p.salt, salt, 4);
    t->dev_flow = o->ops->tx_add(o->dev, &p, &tx_host_ops, t);
    if (!t->dev_flow) {
        tls_aead_free(t->sw_aead);
        free(t);
        o->c[policy].tx_tls_ctx_fail++;
        return NULL;
    }
    t->next = o->tx_flows;
    if (t->next)
        t->next->prev = t;
    o->tx_flows = t;
    return t;
}

bool tls_tx_offload_failed(const struct tls_tx_offload *t)
{
    return t->failed;
}

/* Appends r (its bytes, length, sequence and record number set) to the
   store, sealed at once when the context failed; counts the record. */
static void store_append(struct tls_tx_offload *t, struct tx_record *r)
{
    if (t->failed)
        record_seal(t, r);
    r->prev = t->tail;
    if (t->tail)
        t->tail->next = r;
    else
        t->head = r;
    t->tail = r;
    t->c->tx_records++;
    t->c->tx_record_bytes += r->len;
    t->c->records_in_store++;
}

void tls_tx_offload_record_static(struct tls_tx_offload *t, const uint8_t hdr[TLS_PAYLOAD_OFFSET],
                                  const uint8_t *payload, uint16_t len, uint32_t start_seq,
                                  uint64_t record_sn)
{
    uint16_t rec_len = (uint16_t)(len + TLS_RECORD_OVERHEAD);
    t->frame_end = start_seq + rec_len;
    struct tx_record init = {
        .ext = payload, .start_seq = start_seq, .len = rec_len, .record_sn = record_sn};
    memcpy(init.ext_hdr, hdr, TLS_PAYLOAD_OFFSET);
    struct tx_record *r = record_new(t->o, &init);
    if (!r)
        return; /* a retransmission of it will be dropped and counted */
    store_append(t, r);
    t->c->tx_static_records++;
}

void tls_tx_offload_record(struct tls_tx_offload *t, struct pbuf *rec, uint32_t start_seq,
                           uint64_t record_sn)
{
    t->frame_end = start_seq + rec->len;
    struct tx_record init = {
        .p = rec, .start_seq = start_seq, .len = rec->len, .record_sn = record_sn};
    struct tx_record *r = record_new(t->o, &init);
    if (!r)
        return; /* a retransmission of it will be dropped and counted */
    pbuf_ref(rec);
    store_append(t, r);
}

void tls_tx_offload_acked(struct tls_tx_offload *t, struct tcp_pcb *pcb)
{
    /* lwIP resends whole segments, even partly acked ones: keep every record
       that overlaps the oldest segment still queued, not just unacked bytes. */
    uint32_t keep_from = pcb->lastack;
    if (pcb->unacked)
        keep_from = PP_NTOHL(pcb->unacked->tcphdr->seqno); /* a macro: no call per ACK */
    else if (pcb->unsent)
        keep_from = PP_NTOHL(pcb->unsent->tcphdr->seqno);
    while (t->head && seq_leq(t->head->start_seq + t->head->len, keep_from))
        record_free(t, t->head);
}

/* --- lingering after the connection let go of the pcb --- */

static err_t linger_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
    struct tls_tx_offload *t = arg;
    (void)len;
    tls_tx_offload_acked(t, pcb);
    if (!t->head) {
        tcp_arg(pcb, NULL);
        tcp_sent(pcb, NULL);
        tcp_err(pcb, NULL);
        tcp_poll(pcb, NULL, 0);
        tcp_recv(pcb, NULL);
        flow_stop(t);
    }
    return ERR_OK;
}

static void linger_err(void *arg, err_t err)
{
    (void)err;
    flow_stop(arg); /* pcb already freed */
}

static err_t linger_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
    (void)arg;
    (void)err;
    if (p) {
        stack_tcp_recved(pcb, p->tot_len);
        pbuf_free(p);
        return ERR_OK;
    }
    /* Peer's FIN: close our receive side too; keep lingering for acks. */
    tcp_recv(pcb, NULL);
    if (tcp_close(pcb) != ERR_OK) {
        tcp_abort(pcb); /* linger_err stops the flow */
        return ERR_ABRT;
    }
    return ERR_OK;
}

static err_t linger_poll(void *arg, struct tcp_pcb *pcb)
{
    struct tls_tx_offload *t = arg;
    if (sys_now() - t->linger_since_ms >= LINGER_MAX_MS) {
        tcp_abort(pcb); /* calls linger_err */
        return ERR_ABRT;
    }
    return ERR_OK;
}

bool tls_tx_offload_release(struct tls_tx_offload *t, struct tcp_pcb *pcb, bool abort)
{
    if (pcb && !abort)
        tls_tx_offload_acked(t, pcb);
    if (!pcb || abort || !t->head) {
        flow_stop(t);
        return false;
    }
    /* Segments of ours may still be resent: they must stay encrypted. */
    t->lingering = true;
    t->linger_pcb = pcb;
    t->linger_since_ms = sys_now();
    t->c->lingering++;
    tcp_arg(pcb, t);
    tcp_sent(pcb, linger_sent);
    tcp_err(pcb, linger_err);
    tcp_recv(pcb, linger_recv);
    tcp_poll(pcb, linger_poll, LINGER_POLL);
    return true;
}

/* --- receive side --- */

void tls_offload_set_rx_hint(struct tls_offload *o, bool hint)
{
    o->rx_hint = hint;
}

const struct tls_offload_rx_counters *tls_offload_rx_counters(const struct tls_offload *o)
{
    return &o->rxc;
}

struct tls_rx_offload *tls_rx_offload_start(struct tls_offload *o, struct tcp_pcb *pcb,
                                            const uint8_t *key, size_t key_len,
                                            const uint8_t salt[4], uint32_t start_seq,
                                            uint64_t record_sn)
{
    if (!o)
        return NULL;
    struct tls_rx_offload *r = NULL;
    if (key_len == 16 || key_len == 32)
        r = calloc(1, sizeof(*r));
    if (r) {
        r->o = o;
        r->boundary_seq = start_seq;
        r->boundary_sn = record_sn;
        r->hint_after = RX_HINT_BACKOFF_MIN;
        /* Packets we receive run from the peer to us. The window TCP
           accepts data in, as announced so far: the NIC follows it in our
           ACKs from here on and ignores data beyond it. */
        struct stack_tls_params p = {.saddr = ip_2_ip4(&pcb->remote_ip)->addr,
                                     .daddr = ip_2_ip4(&pcb->local_ip)->addr,
                                     .sport = lwip_htons(pcb->remote_port),
                                     .dport = lwip_htons(pcb->local_port),
                                     .start_seq = start_seq,
                                     .record_sn = record_sn,
                                     .key = key,
                                     .key_len = key_len,
                                     .rx_hint = o->rx_hint,
                                     .rx_wnd_right_edge = pcb->rcv_ann_right_edge,
                                     .rx_wnd_scale = pcb->rcv_scale};
        memcpy(p.salt, salt, 4);
        r->dev_flow = o->ops->rx_add(o->dev, &p, &rx_host_ops, r);
    }
    if (!r || !r->dev_flow) {
        free(r);
        o->rxc.rx_tls_ctx_fail++;
        return NULL;
    }
    r->next = o->rx_flows;
    if (r->next)
        r->next->prev = r;
    o->rx_flows = r;
    return r;
}

void tls_rx_offload_record_done(struct tls_rx_offload *r, uint32_t next_seq, uint64_t next_sn,
                                bool offloaded)
{
    r->boundary_seq = next_seq;
    r->boundary_sn = next_sn;
    unsigned kept = 0;
    for (unsigned i = 0; i < r->nreq; i++) {
        if (r->req[i] == next_seq)
            rx_respond(r, next_seq, next_sn, true);
        else if (seq_lt(r->req[i], next_seq))
            rx_respond(r, r->req[i], 0, false); /* passed inside a record */
        else
            r->req[kept++] = r->req[i];
    }
    r->nreq = kept;
    if (offloaded) {
        r->sw_run = 0;
        r->hint_after = RX_HINT_BACKOFF_MIN;
    } else {
        r->sw_run++;
    }
}

void tls_rx_offload_future_record(struct tls_rx_offload *r, uint32_t seq, uint64_t sn)
{
    struct tls_offload *o = r->o;
    if (!o->rx_hint || r->failed || r->sw_run < r->hint_after)
        return;
    if (o->ops->rx_hint(o->dev, r->dev_flow, seq, sn) != 0)
        return;
    o->rxc.rx_hints_sent++;
    r->sw_run = 0;
    if (r->hint_after < RX_HINT_BACKOFF_MAX)
        r->hint_after *= 2;
}

void tls_rx_offload_stop(struct tls_rx_offload *r)
{
    struct tls_offload *o = r->o;
    if (r->prev)
        r->prev->next = r->next;
    else
        o->rx_flows = r->next;
    if (r->next)
        r->next->prev = r->prev;
    o->ops->rx_del(o->dev, r->dev_flow);
    free(r);
}

/* --- offload policy --- */

/* A decimal number without sign or junk, at most max; *end past it. */
static bool parse_u64(const char *s, const char **end, uint64_t max, uint64_t *v)
{
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    char *e;
    unsigned long long x = strtoull(s, &e, 10);
    if (errno || x > max)
        return false;
    *v = x;
    *end = e;
    return true;
}

int tls_offload_policy_parse(const char *s, struct tls_offload_policy *p)
{
    struct tls_offload_policy q = {.kind = TLS_OFFLOAD_ALWAYS,
                                   .install_ns = TLS_OFFLOAD_AUTO_INSTALL_NS,
                                   .sw_ps = TLS_OFFLOAD_AUTO_SW_PS,
                                   .nic_ps = TLS_OFFLOAD_AUTO_NIC_PS};
    const char *e;
    if (!s)
        return -1;
    if (strcmp(s, "always") == 0) {
        q.kind = TLS_OFFLOAD_ALWAYS;
    } else if (strncmp(s, "after:", 6) == 0) {
        q.kind = TLS_OFFLOAD_AFTER;
        if (!parse_u64(s + 6, &e, UINT64_MAX / 2, &q.after_bytes) || *e)
            return -1;
    } else if (strcmp(s, "auto") == 0) {
        q.kind = TLS_OFFLOAD_AUTO;
    } else if (strncmp(s, "auto:", 5) == 0) {
        /* Bounds keep INSTALL_NS * 1000 and the sums below from overflowing. */
        q.kind = TLS_OFFLOAD_AUTO;
        if (!parse_u64(s + 5, &e, 1000000000000ull, &q.install_ns) || *e != ',' ||
            !parse_u64(e + 1, &e, 1000000000ull, &q.sw_ps) || *e != ',' ||
            !parse_u64(e + 1, &e, 1000000000ull, &q.nic_ps) || *e)
            return -1;
    } else {
        return -1;
    }
    *p = q;
    return 0;
}

void tls_offload_policy_format(const struct tls_offload_policy *p, char *buf, size_t cap)
{
    if (p->kind == TLS_OFFLOAD_AFTER)
        snprintf(buf, cap, "after:%" PRIu64, p->after_bytes);
    else if (p->kind == TLS_OFFLOAD_AUTO)
        snprintf(buf, cap, "auto:%" PRIu64 ",%" PRIu64 ",%" PRIu64, p->install_ns, p->sw_ps,
                 p->nic_ps);
    else
        snprintf(buf, cap, "always");
}

uint64_t tls_offload_policy_breakeven(const struct tls_offload_policy *p)
{
    switch (p->kind) {
    case TLS_OFFLOAD_AFTER:
        return p->after_bytes;
    case TLS_OFFLOAD_AUTO: {
        if (p->sw_ps <= p->nic_ps)
            return UINT64_MAX; /* offloading never saves host time */
        uint64_t saved = p->sw_ps - p->nic_ps;
        return (p->install_ns * 1000 + saved - 1) / saved; /* rounded up */
    }
    case TLS_OFFLOAD_ALWAYS:
    default:
        return 0;
    }
}

void tls_offload_set_policy(struct tls_offload *o, const struct tls_offload_policy *p)
{
    o->policy = *p;
}

const struct tls_offload_policy *tls_offload_get_policy(const struct tls_offload *o)
{
    return &o->policy;
}

void tls_offload_gate_expect(struct tls_offload_gate *g, uint64_t done, uint64_t bytes)
{
    g->expected = true;
    g->expect_end = bytes > UINT64_MAX - done ? UINT64_MAX : done + bytes;
}

bool tls_offload_gate_check(const struct tls_offload *o, const struct tls_offload_gate *g,
                            uint64_t done)
{
    if (g->decided)
        return false;
    uint64_t be = tls_offload_policy_breakeven(&o->policy);
    if (o->policy.kind != TLS_OFFLOAD_AUTO)
        return done >= be;
    if (be == UINT64_MAX)
        return false;
    if (done >= be)
        return true; /* went through in software what an install costs */
    return g->expected && g->expect_end > done && g->expect_end - done >= be;
}

void tls_offload_gate_started(struct tls_offload *o, struct tls_offload_gate *g, bool tx,
                              enum tls_tx_resync policy, uint64_t done, bool started)
{
    g->decided = true;
    if (!started)
        return; /* counted as a context failure by the caller's start */
    if (tx) {
        if (done == 0)
            o->c[policy].offload_tx_at_open++;
        else
            o->c[policy].offload_tx_switched++;
    } else {
        if (done == 0)
            o->rxc.offload_rx_at_open++;
        else
            o->rxc.offload_rx_switched++;
    }
}

void tls_offload_gate_end(struct tls_offload *o, struct tls_offload_gate *g, bool tx,
                          enum tls_tx_resync policy)
{
    if (g->decided)
        return;
    g->decided = true;
    if (tx)
        o->c[policy].offload_tx_kept_sw++;
    else
        o->rxc.offload_rx_kept_sw++;
}
