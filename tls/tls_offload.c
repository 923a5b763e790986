/*
 * tls_offload.c - host side of the TLS transmit offload: flow contexts,
 * record store, and the driver hook (shadow seq + resync), DESIGN.md §3.
 *
 * A flow whose install the NIC refused falls back to software: the records
 * already written as frames are sealed in place in the store and the hook
 * sends a sealed copy of every segment that holds frame bytes; the NIC drops
 * the offloaded segments it saw before (no context), TCP resends them.
 */
#include "tls_offload.h"
#include "nic_abi.h"
#include "tls_record.h"

#include <lwip/inet_chksum.h>
#include <lwip/priv/tcp_priv.h>
#include <lwip/sys.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#define FLOW_HASH_BUCKETS 256
#define LINGER_POLL       4     /* tcp_poll interval, in TCP slow-timer ticks */
#define LINGER_MAX_MS     60000 /* give up on an unresponsive peer */
#define TLS_TAG_BYTES     16

struct tx_record {
    struct tx_record *prev, *next;
    struct pbuf *p; /* the plaintext frame, as written to TCP */
    uint32_t start_seq;
    uint16_t len;
    uint64_t record_sn;
    bool tag_valid;
    bool sealed; /* install failed: p holds the record encrypted in software */
    uint8_t tag[TLS_TAG_BYTES];
};

struct tls_tx_offload {
    struct tls_offload *o;
    enum tls_tx_resync policy;
    struct tls_offload_counters *c; /* &o->c[policy] */
    struct tls_tx_offload *hash_next;
    uint32_t flow_id;
    /* 4-tuple of outgoing packets, network byte order */
    uint32_t local_ip, remote_ip;
    uint16_t local_port, remote_port;
    uint32_t start_seq;            /* start_offload_tcp_sn */
    uint32_t frame_end;            /* seq past the last frame written; tls/ seals after it */
    uint32_t shadow_seq;           /* what the NIC expects next */
    bool shadow_valid;             /* false: the NIC lost its place; resync first */
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
    uint32_t flow_id;
    uint32_t boundary_seq; /* where tls/ stands between records */
    uint64_t boundary_sn;
    uint32_t req[RX_MAX_PENDING_REQ];
    unsigned nreq;
    unsigned sw_run;     /* consecutive records not fully offloaded */
    unsigned hint_after; /* back-off threshold for the next hint */
    bool failed;         /* the NIC refused the install: never resync or hint */
};

/* What the host knows of the NIC context behind a flow id. */
enum fid_state {
    FID_FREE,       /* on the free list */
    FID_LIVE,       /* a flow uses it */
    FID_DEL_QUEUED, /* flow stopped, delete waits for TX ring space */
    FID_DEL_POSTED  /* delete posted; the id is free once it completed */
};
enum fid_install { FID_INSTALL_PENDING, FID_INSTALL_OK, FID_INSTALL_FAILED };

struct fid_info {
    uint8_t state;   /* enum fid_state */
    uint8_t install; /* enum fid_install: the NIC's answer to the static context */
    uint8_t dir;     /* NIC_CTX_TX or NIC_CTX_RX */
    uint8_t policy;  /* TX: enum tls_tx_resync, whose counters it uses */
};

/* The direction's counter `name` of flow id info f: tx_<name> of its policy
   or rx_<name>. */
#define FID_CTR(o, f, name)                                                                        \
    (*((f)->dir == NIC_CTX_TX ? &(o)->c[(f)->policy].tx_##name : &(o)->rxc.rx_##name))

struct tls_offload {
    struct stack_driver *drv;
    bool rx_hint;
    struct tls_rx_offload **rx_by_flow;
    struct tls_offload_rx_counters rxc;
    uint32_t max_flows;
    struct tls_tx_offload **by_flow; /* flow_id -> flow (index 0 unused) */
    uint32_t *free_ids;
    uint32_t n_free;
    struct fid_info *fid; /* flow id -> state (index 0 unused) */
    uint32_t *del_q;      /* queued deletes, FIFO ring of max_flows ids */
    uint32_t del_head, del_n;
    bool flushing; /* flush_deletes is running */
    struct tls_tx_offload *hash[FLOW_HASH_BUCKETS];
    struct tls_offload_counters c[TLS_TX_RESYNC_COUNT]; /* by the flow's policy */
};

/* Serial-number arithmetic (RFC 1982 style) for 32-bit TCP sequence numbers. */
static bool seq_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static bool seq_leq(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) <= 0;
}

static unsigned hash_key(uint32_t remote_ip, uint16_t remote_port, uint16_t local_port)
{
    uint32_t h = remote_ip ^ ((uint32_t)remote_port << 16) ^ local_port;
    h ^= h >> 16;
    h *= 0x45d9f3bu;
    h ^= h >> 16;
    return h % FLOW_HASH_BUCKETS;
}

static struct tls_tx_offload *lookup(struct tls_offload *o, uint32_t remote_ip,
                                     uint16_t remote_port, uint16_t local_port)
{
    struct tls_tx_offload *t = o->hash[hash_key(remote_ip, remote_port, local_port)];
    for (; t; t = t->hash_next)
        if (t->remote_ip == remote_ip && t->remote_port == remote_port &&
            t->local_port == local_port)
            return t;
    return NULL;
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
    pbuf_free(r->p); /* a DUMP descriptor may still hold its own reference */
    t->c->records_in_store--;
    free(r);
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

/* Seal a frame in place (tls_record_seal allows pt == out + 13). */
static void record_seal(struct tls_tx_offload *t, struct tx_record *r)
{
    uint8_t *f = r->p->payload;
    if (r->len < TLS_RECORD_OVERHEAD || r->p->len < r->len)
        return; /* not a frame: never sent (the hook drops it, counted) */
    tls_record_seal(t->sw_aead, r->record_sn, f[0], f + TLS_PAYLOAD_OFFSET,
                    r->len - TLS_RECORD_OVERHEAD, f);
    r->sealed = true;
}

/* --- flow ids and their NIC contexts --- */

static void fid_release(struct tls_offload *o, uint32_t id)
{
    o->fid[id].state = FID_FREE;
    o->free_ids[o->n_free++] = id;
}

/* Post queued deletes while the TX ring has room (oldest first). */
static void flush_deletes(struct tls_offload *o)
{
    if (o->flushing)
        return; /* reached again through the driver's reclaim */
    o->flushing = true;
    /* Space first: reclaiming may drain install completions that cancel
       queued deletes (install_done). */
    while (stack_driver_tx_space(o->drv) >= 1 && o->del_n) {
        uint32_t id = o->del_q[o->del_head];
        struct nic_tx_desc del = {.kind = NIC_TX_DEL_CTX, .flags = NIC_TXF_SIGNAL, .flow_id = id};
        if (stack_driver_post_ctrl(o->drv, &del, NULL) != 0)
            break;
        o->del_head = (o->del_head + 1) % o->max_flows;
        o->del_n--;
        o->fid[id].state = FID_DEL_POSTED;
        FID_CTR(o, &o->fid[id], tls_ctx_del_pending)--;
    }
    o->flushing = false;
}

static void tx_ring_space(void *ctx)
{
    struct tls_offload *o = ctx;
    if (o->del_n)
        flush_deletes(o);
}

/* The flow using id stopped: delete its NIC context, or queue the delete
   when the ring is full. Nothing to delete if the install failed. */
static void fid_stop(struct tls_offload *o, uint32_t id)
{
    struct fid_info *f = &o->fid[id];
    if (f->install == FID_INSTALL_FAILED) {
        fid_release(o, id);
        return;
    }
    f->state = FID_DEL_QUEUED;
    o->del_q[(o->del_head + o->del_n++) % o->max_flows] = id;
    FID_CTR(o, f, tls_ctx_del_pending)++;
    flush_deletes(o);
    if (f->state == FID_DEL_QUEUED)
        FID_CTR(o, f, tls_ctx_del_deferred)++;
}

static void del_queue_remove(struct tls_offload *o, uint32_t id)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < o->del_n; i++) {
        uint32_t v = o->del_q[(o->del_head + i) % o->max_flows];
        if (v != id)
            o->del_q[(o->del_head + kept++) % o->max_flows] = v;
    }
    o->del_n = kept;
}

/* The NIC answered the static context of id. */
static void install_done(struct tls_offload *o, uint32_t id, bool ok)
{
    struct fid_info *f = &o->fid[id];
    f->install = ok ? FID_INSTALL_OK : FID_INSTALL_FAILED;
    if (!ok)
        FID_CTR(o, f, tls_ctx_install_failed)++;
    if (f->state == FID_LIVE && f->dir == NIC_CTX_TX) {
        struct tls_tx_offload *t = o->by_flow[id];
        if (ok) {
            tls_aead_free(t->sw_aead); /* wipes the key schedule */
            t->sw_aead = NULL;
        } else {
            t->failed = true;
            for (struct tx_record *r = t->head; r; r = r->next)
                record_seal(t, r);
        }
    } else if (f->state == FID_LIVE && !ok) {
        o->rx_by_flow[id]->failed = true;
    } else if (f->state == FID_DEL_QUEUED && !ok) {
        del_queue_remove(o, id); /* nothing to delete */
        FID_CTR(o, f, tls_ctx_del_pending)--;
        fid_release(o, id);
    }
}

/* --- the driver hook --- */

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int post(struct tls_offload *o, const struct nic_tx_desc *d, struct pbuf *hold)
{
    return stack_driver_post_ctrl(o->drv, d, hold);
}

/* Recompute the TCP checksum of the IPv4 packet in q (q->len bytes). */
static void tcp_csum_set(struct pbuf *q, size_t ihl)
{
    uint8_t *ip = q->payload, *tcp = ip + ihl;
    ip4_addr_t src, dst;
    memcpy(&src.addr, ip + 12, 4);
    memcpy(&dst.addr, ip + 16, 4);
    tcp[16] = tcp[17] = 0;
    pbuf_remove_header(q, ihl);
    u16_t sum = inet_chksum_pseudo(q, IP_PROTO_TCP, q->len, &src, &dst);
    pbuf_add_header(q, ihl);
    memcpy(tcp + 16, &sum, 2); /* lwIP's sums are in network byte order */
}

/* Failed flow: send a copy of the segment whose frame bytes (before
   frame_end) come from the sealed records; bytes after it were sealed by
   tls/ and go as they are. Never lets a frame byte out unencrypted. */
static int tx_sw_fallback(struct tls_tx_offload *t, struct pbuf **pp, uint32_t seq, uint32_t plen,
                          size_t ihl, size_t thl)
{
    size_t hdr_len = ihl + thl;
    if (!seq_lt(seq, t->frame_end))
        return 0;
    uint32_t n = seq_lt(t->frame_end, seq + plen) ? t->frame_end - seq : plen;
    struct pbuf *q = pbuf_alloc(PBUF_RAW, (u16_t)(hdr_len + plen), PBUF_RAM);
    if (!q) {
        t->c->tx_tls_sw_fallback_nomem++;
        return -1;
    }
    memcpy(q->payload, (*pp)->payload, hdr_len + plen);
    uint8_t *payload = (uint8_t *)q->payload + hdr_len;
    for (uint32_t done = 0; done < n;) {
        struct tx_record *r = find_record(t, seq + done);
        if (!r || !r->sealed) {
            pbuf_free(q);
            t->c->tx_tls_drop_no_sync_data++;
            return -1;
        }
        uint32_t off = seq + done - r->start_seq, k = r->len - off;
        if (k > n - done)
            k = n - done;
        memcpy(payload + done, (const uint8_t *)r->p->payload + off, k);
        done += k;
    }
    tcp_csum_set(q, ihl);
    pbuf_free(*pp);
    *pp = q;
    t->c->tx_tls_sw_fallback_packets++;
    t->c->tx_tls_sw_fallback_bytes += n;
    return 0;
}

static int tx_prepare(void *ctx, struct pbuf **pp, uint32_t *flow_id, uint8_t *flags)
{
    struct tls_offload *o = ctx;
    struct pbuf *p = *pp;
    const uint8_t *ip = p->payload;
    if (p->len < 40 || (ip[0] >> 4) != 4 || ip[9] != 6 /* TCP */)
        return 0;
    size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
    size_t tot = get16(ip + 2);
    if (ihl < 20 || tot > p->len || tot < ihl + 20)
        return 0;
    const uint8_t *tcp = ip + ihl;
    size_t thl = (size_t)(tcp[12] >> 4) * 4;
    if (thl < 20 || ihl + thl > tot)
        return 0;
    uint32_t remote_ip;
    uint16_t sport, dport;
    memcpy(&remote_ip, ip + 16, 4);
    memcpy(&sport, tcp, 2);
    memcpy(&dport, tcp + 2, 2);
    struct tls_tx_offload *t = lookup(o, remote_ip, dport, sport);
    uint32_t plen = (uint32_t)(tot - ihl - thl);
    if (!t || plen == 0)
        return 0;
    uint32_t seq = get32(tcp + 4);
    if (seq_leq(seq + plen, t->start_seq)) {
        t->c->tx_tls_skip_no_sync_data++; /* handshake bytes: already encrypted */
        return 0;
    }
    if (seq_lt(seq, t->start_seq)) {
        /* Would mix handshake and offloaded bytes: the fence forbids it. */
        t->c->tx_tls_drop_no_sync_data++;
        return -1;
    }
    if (t->failed)
        return tx_sw_fallback(t, pp, seq, plen, ihl, thl);
    *flow_id = t->flow_id;
    *flags = NIC_TXF_OFFLOAD;
    if (t->shadow_valid && seq == t->shadow_seq) {
        t->shadow_seq = seq + plen; /* the driver checked the ring has a slot */
        return 0;
    }

    /* Out of sequence: a retransmission (or a jump after one). */
    t->c->tx_tls_ooo++;
    t->c->tx_tls_retransmit_bytes += plen;
    struct tx_record *r = find_record(t, seq);
    if (!r) {
        t->c->tx_tls_drop_no_sync_data++;
        return -1;
    }
    uint32_t off = seq - r->start_seq;
    if (t->policy == TLS_TX_RESYNC_TAGCACHE) {
        bool touches_tag = seq_lt(r->start_seq + r->len - TLS_TAG_BYTES, seq + plen);
        if (!touches_tag || r->tag_valid) {
            if (stack_driver_tx_space(o->drv) < 2) {
                t->c->tx_tls_ring_full_drops++;
                return -1;
            }
            struct nic_tx_desc d = {.kind = NIC_TX_PROGRESS,
                                    .flags = NIC_TXF_ONESHOT,
                                    .len = r->len,
                                    .flow_id = t->flow_id,
                                    .tcp_seq = r->start_seq,
                                    .rec_off = off,
                                    .record_sn = r->record_sn};
            if (touches_tag) {
                d.flags |= NIC_TXF_TAG_VALID;
                memcpy(d.tag, r->tag, TLS_TAG_BYTES);
            }
            post(o, &d, NULL);
            t->c->tx_tls_resync_tagcache++;
            return 0; /* the NIC's main state, and our shadow, stay as they are */
        }
        t->c->tx_tls_tagcache_miss++;
    }
    if (stack_driver_tx_space(o->drv) < (off ? 3u : 2u)) {
        t->c->tx_tls_ring_full_drops++;
        return -1;
    }
    struct nic_tx_desc st = {.kind = NIC_TX_PROGRESS,
                             .flow_id = t->flow_id,
                             .tcp_seq = r->start_seq,
                             .record_sn = r->record_sn};
    post(o, &st, NULL);
    if (off) {
        struct nic_tx_desc dump = {.kind = NIC_TX_DUMP,
                                   .len = (uint16_t)off,
                                   .flow_id = t->flow_id,
                                   .addr = (uint64_t)(uintptr_t)r->p->payload};
        post(o, &dump, r->p); /* the descriptor holds the record until the NIC read it */
        t->c->tx_tls_dump_bytes += off;
    }
    t->c->tx_tls_resync_dump++;
    t->shadow_seq = seq + plen;
    t->shadow_valid = true;
    return 0;
}

static void tx_tag_report(void *ctx, const struct nic_cqe *cqe)
{
    struct tls_offload *o = ctx;
    if (cqe->flow_id == 0 || cqe->flow_id > o->max_flows ||
        o->fid[cqe->flow_id].install != FID_INSTALL_OK)
        return; /* an earlier flow's: it precedes this flow's install completion */
    struct tls_tx_offload *t = o->by_flow[cqe->flow_id];
    if (!t)
        return;
    /* Reports arrive for the newest records: search from the tail. */
    for (struct tx_record *r = t->tail; r; r = r->prev) {
        if (r->record_sn == cqe->record_sn) {
            memcpy(r->tag, cqe->tag, TLS_TAG_BYTES);
            r->tag_valid = true;
            t->c->tx_tls_tags_cached++;
            return;
        }
        if (r->record_sn < cqe->record_sn)
            return;
    }
}

static void tx_error(void *ctx, const struct nic_cqe *cqe)
{
    struct tls_offload *o = ctx;
    if (cqe->desc_kind == NIC_TX_STATIC_CTX || cqe->desc_kind == NIC_TX_DEL_CTX)
        return; /* tx_ctrl_done */
    if (cqe->flow_id == 0 || cqe->flow_id > o->max_flows || !o->by_flow[cqe->flow_id])
        return;
    /* Install not answered yet: the completion is an earlier flow's with
       this id. Failed: the NIC drops what it cannot encrypt; TCP resends. */
    if (o->fid[cqe->flow_id].install != FID_INSTALL_OK)
        return;
    struct tls_tx_offload *t = o->by_flow[cqe->flow_id];
    /* The NIC dropped a segment and lost its place: the next segment resyncs. */
    t->shadow_valid = false;
    t->c->tx_tls_nic_errors++;
}

static void tx_ctrl_done(void *ctx, const struct nic_cqe *cqe)
{
    struct tls_offload *o = ctx;
    uint32_t id = cqe->flow_id;
    if (id == 0 || id > o->max_flows)
        return;
    struct fid_info *f = &o->fid[id];
    if (cqe->desc_kind == NIC_TX_STATIC_CTX && f->state != FID_FREE &&
        f->install == FID_INSTALL_PENDING) {
        install_done(o, id, cqe->status == NIC_TX_OK);
    } else if (cqe->desc_kind == NIC_TX_DEL_CTX && f->state == FID_DEL_POSTED) {
        /* No older completion of the flow is pending: the id can be reused
           (a tag report of it must not land on its successor). */
        if (cqe->status == NIC_TX_OK)
            FID_CTR(o, f, tls_ctx_deleted)++;
        fid_release(o, id);
    }
}

/* --- receive side --- */

static void rx_respond(struct tls_rx_offload *r, uint32_t seq, uint64_t sn, bool ok)
{
    if (r->failed)
        return; /* the NIC has no context to resync */
    struct nic_tx_desc d = {.kind = NIC_RX_RESYNC_RESP,
                            .flags = ok ? NIC_TXF_RESYNC_OK : 0,
                            .flow_id = r->flow_id,
                            .tcp_seq = seq,
                            .record_sn = sn};
    if (post(r->o, &d, NULL) != 0)
        return; /* ring full: the NIC times out the candidate by itself */
    if (ok)
        r->o->rxc.TlsRxDeviceResync++;
    else
        r->o->rxc.rx_resync_denied++;
}

static void rx_resync_request(void *ctx, uint32_t flow_id, uint32_t seq)
{
    struct tls_offload *o = ctx;
    if (flow_id == 0 || flow_id > o->max_flows || !o->rx_by_flow[flow_id])
        return;
    struct tls_rx_offload *r = o->rx_by_flow[flow_id];
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

/* --- lifecycle --- */

struct tls_offload *tls_offload_new(struct stack_driver *drv, uint32_t max_flows)
{
    struct tls_offload *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->drv = drv;
    o->max_flows = max_flows;
    o->by_flow = calloc(max_flows + 1, sizeof(*o->by_flow));
    o->rx_by_flow = calloc(max_flows + 1, sizeof(*o->rx_by_flow));
    o->free_ids = calloc(max_flows, sizeof(*o->free_ids));
    o->fid = calloc(max_flows + 1, sizeof(*o->fid));
    o->del_q = calloc(max_flows, sizeof(*o->del_q));
    if (!o->by_flow || !o->rx_by_flow || !o->free_ids || !o->fid || !o->del_q) {
        tls_offload_free(o);
        return NULL;
    }
    for (uint32_t i = 0; i < max_flows; i++)
        o->free_ids[o->n_free++] = max_flows - i; /* hand out 1, 2, ... */
    struct stack_offload_ops ops = {.tx_prepare = tx_prepare,
                                    .tx_tag_report = tx_tag_report,
                                    .tx_error = tx_error,
                                    .rx_resync_request = rx_resync_request,
                                    .tx_ctrl_done = tx_ctrl_done,
                                    .tx_ring_space = tx_ring_space,
                                    .ctx = o};
    stack_driver_set_offload(drv, &ops);
    return o;
}

static void flow_stop(struct tls_tx_offload *t)
{
    struct tls_offload *o = t->o;
    while (t->head)
        record_free(t, t->head);
    struct tls_tx_offload **pp = &o->hash[hash_key(t->remote_ip, t->remote_port, t->local_port)];
    while (*pp && *pp != t)
        pp = &(*pp)->hash_next;
    if (*pp)
        *pp = t->hash_next;
    o->by_flow[t->flow_id] = NULL;
    fid_stop(o, t->flow_id);
    if (t->lingering)
        t->c->lingering--;
    tls_aead_free(t->sw_aead);
    free(t);
}

void tls_offload_free(struct tls_offload *o)
{
    if (!o)
        return;
    if (o->by_flow) {
        for (uint32_t i = 1; i <= o->max_flows; i++) {
            struct tls_tx_offload *t = o->by_flow[i];
            if (t && t->lingering)
                tcp_abort(t->linger_pcb); /* linger_err stops the flow */
            else if (t)
                flow_stop(t);
        }
        stack_driver_set_offload(o->drv, NULL);
    }
    if (o->rx_by_flow)
        for (uint32_t i = 1; i <= o->max_flows; i++)
            if (o->rx_by_flow[i])
                tls_rx_offload_stop(o->rx_by_flow[i]);
    /* Deletes still queued are dropped: the engine is stopped or stops
       next, and destroying the device wipes every context it holds. */
    if (o->del_q)
        flush_deletes(o);
    free(o->rx_by_flow);
    free(o->by_flow);
    free(o->free_ids);
    free(o->fid);
    free(o->del_q);
    free(o);
}

const struct tls_offload_counters *tls_offload_counters(const struct tls_offload *o,
                                                        enum tls_tx_resync policy)
{
    return &o->c[policy];
}

/* Take a flow id and post the static context st with key and salt added.
   The NIC reads it from a pbuf the ring holds; the driver wipes that once
   the NIC is done. Returns the id, or 0 when no id, ring slot or memory is
   available. */
static uint32_t install_post(struct tls_offload *o, const struct nic_tls_static_ctx *st,
                             const uint8_t *key, size_t key_len, const uint8_t salt[4],
                             uint8_t policy)
{
    if (o->n_free == 0 || stack_driver_tx_space(o->drv) < 1)
        return 0;
    struct pbuf *ctxbuf = pbuf_alloc(PBUF_RAW, sizeof(*st), PBUF_RAM);
    if (!ctxbuf)
        return 0;
    struct nic_tls_static_ctx *buf = ctxbuf->payload;
    *buf = *st;
    buf->cipher = key_len == 16 ? NIC_CIPHER_AES_128_GCM : NIC_CIPHER_AES_256_GCM;
    memcpy(buf->salt, salt, 4);
    memcpy(buf->key, key, key_len);
    uint32_t id = o->free_ids[o->n_free - 1];
    struct nic_tx_desc d = {.kind = NIC_TX_STATIC_CTX,
                            .flags = NIC_TXF_SIGNAL,
                            .flow_id = id,
                            .addr = (uint64_t)(uintptr_t)buf};
    int r = post(o, &d, ctxbuf);
    if (r != 0)
        OPENSSL_cleanse(buf, sizeof(*buf));
    pbuf_free(ctxbuf); /* posted: the ring's reference keeps it until the NIC read it */
    if (r != 0)
        return 0;
    o->n_free--;
    o->fid[id] = (struct fid_info){
        .state = FID_LIVE, .install = FID_INSTALL_PENDING, .dir = st->direction, .policy = policy};
    return id;
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
    t->policy = policy;
    t->c = &o->c[policy];
    t->local_ip = ip_2_ip4(&pcb->local_ip)->addr;
    t->remote_ip = ip_2_ip4(&pcb->remote_ip)->addr;
    t->local_port = lwip_htons(pcb->local_port);
    t->remote_port = lwip_htons(pcb->remote_port);
    t->start_seq = start_seq;
    t->frame_end = start_seq;
    t->shadow_seq = start_seq;
    t->shadow_valid = true;
    struct nic_tls_static_ctx st = {.direction = NIC_CTX_TX,
                                    .flags =
                                        policy == TLS_TX_RESYNC_TAGCACHE ? NIC_CTXF_TAG_REPORT : 0,
                                    .saddr = t->local_ip,
                                    .daddr = t->remote_ip,
                                    .sport = t->local_port,
                                    .dport = t->remote_port,
                                    .start_tcp_sn = start_seq,
                                    .record_sn = record_sn};
    t->flow_id = install_post(o, &st, key, key_len, salt, (uint8_t)policy);
    if (!t->flow_id) {
        tls_aead_free(t->sw_aead);
        free(t);
        o->c[policy].tx_tls_ctx_fail++;
        return NULL;
    }
    o->by_flow[t->flow_id] = t;
    unsigned h = hash_key(t->remote_ip, t->remote_port, t->local_port);
    t->hash_next = o->hash[h];
    o->hash[h] = t;
    t->c->tx_tls_ctx_installed++;
    return t;
}

bool tls_tx_offload_failed(const struct tls_tx_offload *t)
{
    return t->failed;
}

void tls_tx_offload_record(struct tls_tx_offload *t, struct pbuf *rec, uint32_t start_seq,
                           uint64_t record_sn)
{
    t->frame_end = start_seq + rec->len;
    struct tx_record *r = calloc(1, sizeof(*r));
    if (!r)
        return; /* a retransmission of it will be dropped and counted */
    pbuf_ref(rec);
    r->p = rec;
    r->start_seq = start_seq;
    r->len = rec->len;
    r->record_sn = record_sn;
    if (t->failed)
        record_seal(t, r);
    r->prev = t->tail;
    if (t->tail)
        t->tail->next = r;
    else
        t->head = r;
    t->tail = r;
    t->c->tx_records++;
    t->c->tx_record_bytes += rec->len;
    t->c->records_in_store++;
}

void tls_tx_offload_acked(struct tls_tx_offload *t, struct tcp_pcb *pcb)
{
    /* lwIP resends whole segments, even partly acked ones: keep every record
       that overlaps the oldest segment still queued, not just unacked bytes. */
    uint32_t keep_from = pcb->lastack;
    if (pcb->unacked)
        keep_from = lwip_ntohl(pcb->unacked->tcphdr->seqno);
    else if (pcb->unsent)
        keep_from = lwip_ntohl(pcb->unsent->tcphdr->seqno);
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
        tcp_recved(pcb, p->tot_len);
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
    /* Packets we receive run from the peer to us. The window TCP accepts
       data in, as announced so far: the NIC follows it in our ACKs from here
       on and ignores data beyond it. */
    struct nic_tls_static_ctx st = {
        .direction = NIC_CTX_RX,
        .flags = (uint8_t)((o->rx_hint ? NIC_CTXF_RX_HINT : 0) | NIC_CTXF_RX_WND),
        .rx_wnd_right_edge = pcb->rcv_ann_right_edge,
        .rx_wnd_scale = pcb->rcv_scale,
        .saddr = ip_2_ip4(&pcb->remote_ip)->addr,
        .daddr = ip_2_ip4(&pcb->local_ip)->addr,
        .sport = lwip_htons(pcb->remote_port),
        .dport = lwip_htons(pcb->local_port),
        .start_tcp_sn = start_seq,
        .record_sn = record_sn};
    if (r)
        r->flow_id = install_post(o, &st, key, key_len, salt, 0);
    if (!r || !r->flow_id) {
        free(r);
        o->rxc.rx_tls_ctx_fail++;
        return NULL;
    }
    r->o = o;
    r->boundary_seq = start_seq;
    r->boundary_sn = record_sn;
    r->hint_after = RX_HINT_BACKOFF_MIN;
    o->rx_by_flow[r->flow_id] = r;
    o->rxc.rx_tls_ctx_installed++;
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
    if (!r->o->rx_hint || r->failed || r->sw_run < r->hint_after)
        return;
    struct nic_tx_desc d = {
        .kind = NIC_RX_PROGRESS, .flow_id = r->flow_id, .tcp_seq = seq, .record_sn = sn};
    if (post(r->o, &d, NULL) != 0)
        return;
    r->o->rxc.rx_hints_sent++;
    r->sw_run = 0;
    if (r->hint_after < RX_HINT_BACKOFF_MAX)
        r->hint_after *= 2;
}

void tls_rx_offload_stop(struct tls_rx_offload *r)
{
    struct tls_offload *o = r->o;
    o->rx_by_flow[r->flow_id] = NULL;
    fid_stop(o, r->flow_id);
    free(r);
}
