/*
 * stack_tls_offload.c - the driver's half of the TLS offload: flow ids and
 * NIC contexts, deferred deletes, and the TX hook (header parsing, shadow
 * seq + resync), docs/design.md §4; RX resync answers and hints, §5.
 *
 * Every NIC context has a host block (NIC_CTX_HOST_BYTES, docs/design.md
 * §10): the driver writes the static context into it and hands it over with
 * the install; the NIC writes evicted contexts back into it. The block is
 * the driver's again once the NIC refused the install or completed the
 * delete, and is wiped then (it holds the key).
 *
 * A flow whose install the NIC refused falls back to software: the host
 * seals the records already written as frames in place in its store and the
 * hook sends a sealed copy of every segment that holds frame bytes; the NIC
 * drops the offloaded segments it saw before (no context), TCP resends them.
 */
#include "stack_tls_offload.h"
#include "nic_abi.h"
#include "stack_driver.h"

#include <lwip/inet_chksum.h>
#include <lwip/prot/ip.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

/* TX flows by 4-tuple: looked up for every transmitted segment
   (tx_prepare), so the buckets grow with the flow ids (at least one per two
   ids) and a chain stays short at any --nic-flows. */
#define FLOW_HASH_MIN_BUCKETS 256

/* What the driver knows of the NIC context behind a flow id. */
enum fid_state {
    FID_FREE,       /* on the free list */
    FID_LIVE,       /* a flow uses it */
    FID_DEL_QUEUED, /* flow stopped, delete waits for TX ring space */
    FID_DEL_POSTED  /* delete posted; the id is free once it completed */
};
enum fid_install { FID_INSTALL_PENDING, FID_INSTALL_OK, FID_INSTALL_FAILED };

struct fid_info {
    uint8_t *host;   /* the context's host block while the NIC may use it */
    uint8_t state;   /* enum fid_state */
    uint8_t install; /* enum fid_install: the NIC's answer to the static context */
    uint8_t dir;     /* NIC_CTX_TX or NIC_CTX_RX */
    uint8_t policy;  /* TX: enum stack_tls_tx_resync, whose counters it uses */
};

/* Once a TX flow has sent this far past start_offload_tcp_sn, no segment
   can hold bytes from before it (lwIP's send buffer and the peer's window
   are far smaller), so the start is no longer compared against: at 2^31
   bytes, serial arithmetic would place new data *before* the start and
   send it unencrypted. */
#define START_FAR_BYTES (1u << 30)

struct stack_tls_flow {
    uint8_t dir; /* NIC_CTX_TX or NIC_CTX_RX */
    enum stack_tls_tx_resync policy;
    struct stack_tls_tx_counters *c; /* TX: &o->c[policy] */
    struct stack_tls_flow *hash_next;
    uint32_t flow_id;
    /* TX: 4-tuple of outgoing packets, network byte order */
    uint32_t local_ip, remote_ip;
    uint16_t local_port, remote_port;
    uint32_t start_seq;  /* start_offload_tcp_sn */
    bool start_far;      /* a segment ended START_FAR_BYTES past start_seq */
    uint32_t shadow_seq; /* what the NIC expects next */
    bool shadow_valid;   /* false: the NIC lost its place; resync first */
    bool failed;         /* the NIC refused the install: send sealed copies */
    const struct stack_tls_host_ops *host;
    void *host_flow;
};

struct stack_tls_offload {
    struct stack_driver *drv;
    uint32_t max_flows;
    struct stack_tls_flow **by_flow; /* flow_id -> flow (index 0 unused) */
    uint32_t *free_ids;
    uint32_t n_free;
    struct fid_info *fid; /* flow id -> state (index 0 unused) */
    uint32_t *del_q;      /* queued deletes, FIFO ring of max_flows ids */
    uint32_t del_head, del_n;
    bool flushing; /* flush_deletes is running */
    struct stack_tls_flow **hash;
    uint32_t hash_mask;                                        /* buckets - 1, a power of two */
    struct stack_tls_tx_counters c[STACK_TLS_TX_RESYNC_COUNT]; /* by the flow's policy */
    struct stack_tls_rx_counters rxc;
};

/* The direction's counter `name` of flow id info f: tx_<name> of its policy
   or rx_<name>. */
#define FID_CTR(o, f, name)                                                                        \
    (*((f)->dir == NIC_CTX_TX ? &(o)->c[(f)->policy].tx_##name : &(o)->rxc.rx_##name))

/* Serial-number arithmetic (RFC 1982 style) for 32-bit TCP sequence numbers:
   a comparison is only meaningful within 2^31 of its reference. */
static bool seq_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static bool seq_leq(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) <= 0;
}

static unsigned hash_key(const struct stack_tls_offload *o, uint32_t remote_ip,
                         uint16_t remote_port, uint16_t local_port)
{
    uint32_t h = remote_ip ^ ((uint32_t)remote_port << 16) ^ local_port;
    h ^= h >> 16;
    h *= 0x45d9f3bu;
    h ^= h >> 16;
    return h & o->hash_mask;
}

static struct stack_tls_flow *lookup(struct stack_tls_offload *o, uint32_t remote_ip,
                                     uint16_t remote_port, uint16_t local_port)
{
    struct stack_tls_flow *t = o->hash[hash_key(o, remote_ip, remote_port, local_port)];
    for (; t; t = t->hash_next)
        if (t->remote_ip == remote_ip && t->remote_port == remote_port &&
            t->local_port == local_port)
            return t;
    return NULL;
}

/* The TX flow behind a completion's flow id, once its install was answered
   OK (earlier completions with that id are a previous flow's). */
static struct stack_tls_flow *tx_flow_ok(struct stack_tls_offload *o, uint32_t id)
{
    if (id == 0 || id > o->max_flows || o->fid[id].install != FID_INSTALL_OK)
        return NULL;
    struct stack_tls_flow *t = o->by_flow[id];
    return t && t->dir == NIC_CTX_TX ? t : NULL;
}

/* --- flow ids and their NIC contexts --- */

/* The NIC is done with id's host block: wipe it with a store the compiler
   may not drop (static context with the key, the NIC's write-back). */
static void host_block_free(struct stack_tls_offload *o, uint32_t id)
{
    struct fid_info *f = &o->fid[id];
    if (!f->host)
        return;
    OPENSSL_cleanse(f->host, NIC_CTX_HOST_BYTES);
    free(f->host);
    f->host = NULL;
    FID_CTR(o, f, tls_ctx_host_bytes) -= NIC_CTX_HOST_BYTES;
}

static void fid_release(struct stack_tls_offload *o, uint32_t id)
{
    host_block_free(o, id);
    o->fid[id].state = FID_FREE;
    o->free_ids[o->n_free++] = id;
}

/* Post queued deletes while the TX ring has room (oldest first). */
static void flush_deletes(struct stack_tls_offload *o)
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
    struct stack_tls_offload *o = ctx;
    if (o->del_n)
        flush_deletes(o);
}

/* The flow using id stopped: delete its NIC context, or queue the delete
   when the ring is full. Nothing to delete if the install failed. */
static void fid_stop(struct stack_tls_offload *o, uint32_t id)
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

static void del_queue_remove(struct stack_tls_offload *o, uint32_t id)
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
static void install_done(struct stack_tls_offload *o, uint32_t id, bool ok)
{
    struct fid_info *f = &o->fid[id];
    f->install = ok ? FID_INSTALL_OK : FID_INSTALL_FAILED;
    if (!ok) {
        FID_CTR(o, f, tls_ctx_install_failed)++;
        host_block_free(o, id); /* refused: the NIC keeps no reference */
    }
    if (f->state == FID_LIVE) {
        struct stack_tls_flow *t = o->by_flow[id];
        t->failed = !ok;
        t->host->install_done(t->host_flow, ok);
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

static int post(struct stack_tls_offload *o, const struct nic_tx_desc *d, struct pbuf *hold)
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

/* Failed flow: send a copy of the segment whose frame bytes (before the
   host's frame_end) come from the sealed records; bytes after it were
   sealed by tls/ and go as they are. Never lets a frame byte out
   unencrypted. */
static int tx_sw_fallback(struct stack_tls_flow *t, struct pbuf **pp, uint32_t seq, uint32_t plen,
                          size_t ihl, size_t thl)
{
    size_t hdr_len = ihl + thl;
    uint32_t frame_end = t->host->frame_end(t->host_flow);
    if (!seq_lt(seq, frame_end))
        return 0;
    uint32_t n = seq_lt(frame_end, seq + plen) ? frame_end - seq : plen;
    struct pbuf *q = pbuf_alloc(PBUF_RAW, (u16_t)(hdr_len + plen), PBUF_RAM);
    if (!q) {
        t->c->tx_tls_sw_fallback_nomem++;
        return -1;
    }
    memcpy(q->payload, (*pp)->payload, hdr_len + plen);
    uint8_t *payload = (uint8_t *)q->payload + hdr_len;
    for (uint32_t done = 0; done < n;) {
        struct stack_tls_record r;
        if (!t->host->get_record(t->host_flow, seq + done, true, &r) || !r.sealed) {
            pbuf_free(q);
            t->c->tx_tls_drop_no_sync_data++;
            return -1;
        }
        uint32_t off = seq + done - r.start_seq, k = r.len - off;
        if (k > n - done)
            k = n - done;
        memcpy(payload + done, (const uint8_t *)r.p->payload + off, k);
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
    struct stack_tls_offload *o = ctx;
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
    struct stack_tls_flow *t = lookup(o, remote_ip, dport, sport);
    uint32_t plen = (uint32_t)(tot - ihl - thl);
    if (!t || plen == 0)
        return 0;
    uint32_t seq = get32(tcp + 4);
    if (!t->start_far) {
        if (seq_leq(seq + plen, t->start_seq)) {
            t->c->tx_tls_skip_no_sync_data++; /* handshake bytes: already encrypted */
            return 0;
        }
        if (seq_lt(seq, t->start_seq)) {
            /* Would mix handshake and offloaded bytes: the fence forbids it. */
            t->c->tx_tls_drop_no_sync_data++;
            return -1;
        }
        /* not before the start: seq + plen - start_seq is this segment's
           end in the stream, below 2^31 until the flag is set */
        t->start_far = seq + plen - t->start_seq >= START_FAR_BYTES;
    }
    if (t->failed)
        return tx_sw_fallback(t, pp, seq, plen, ihl, thl);
    *flow_id = t->flow_id;
    *flags = NIC_TXF_OFFLOAD;
    if (t->shadow_valid && seq == t->shadow_seq) {
        t->shadow_seq = seq + plen; /* the driver checked the ring has a slot */
        return 0;
    }

    /* Out of sequence: a retransmission (or a jump after one). Counted
       once, when it is sent or dropped; one the ring has no room for yet is
       refused (STACK_TX_BUSY) and lwIP offers it again. A retransmission
       dropped here instead would wait for the next RTO, doubled. */
    struct stack_tls_record r;
    bool tagcache = t->policy == STACK_TLS_TX_RESYNC_TAGCACHE;
    /* Room for PROGRESS, DUMP and the segment: the most a path below posts. */
    if (stack_driver_tx_space(o->drv) < 3u) {
        t->c->tx_tls_ring_full_deferred++;
        return STACK_TX_BUSY;
    }
    t->c->tx_tls_ooo++;
    t->c->tx_tls_retransmit_bytes += plen;
    if (!t->host->get_record(t->host_flow, seq, !tagcache, &r)) {
        t->c->tx_tls_drop_no_sync_data++;
        return -1;
    }
    uint32_t off = seq - r.start_seq;
    if (tagcache) {
        bool touches_tag = seq_lt(r.start_seq + r.len - STACK_TLS_TAG_LEN, seq + plen);
        if (!touches_tag || r.tag_valid) {
            struct nic_tx_desc d = {.kind = NIC_TX_PROGRESS,
                                    .flags = NIC_TXF_ONESHOT,
                                    .len = r.len,
                                    .flow_id = t->flow_id,
                                    .tcp_seq = r.start_seq,
                                    .rec_off = off,
                                    .record_sn = r.record_sn};
            if (touches_tag) {
                d.flags |= NIC_TXF_TAG_VALID;
                memcpy(d.tag, r.tag, STACK_TLS_TAG_LEN);
            }
            post(o, &d, NULL);
            t->c->tx_tls_resync_tagcache++;
            return 0; /* the NIC's main state, and our shadow, stay as they are */
        }
        t->c->tx_tls_tagcache_miss++;
        if (off && !r.p && !t->host->get_record(t->host_flow, seq, true, &r)) {
            t->c->tx_tls_drop_no_sync_data++;
            return -1;
        }
    }
    struct nic_tx_desc st = {.kind = NIC_TX_PROGRESS,
                             .flow_id = t->flow_id,
                             .tcp_seq = r.start_seq,
                             .record_sn = r.record_sn};
    post(o, &st, NULL);
    if (off) {
        struct nic_tx_desc dump = {.kind = NIC_TX_DUMP,
                                   .len = (uint16_t)off,
                                   .flow_id = t->flow_id,
                                   .addr = (uint64_t)(uintptr_t)r.p->payload};
        post(o, &dump, r.p); /* the descriptor holds the record until the NIC read it */
        t->c->tx_tls_dump_bytes += off;
    }
    t->c->tx_tls_resync_dump++;
    t->shadow_seq = seq + plen;
    t->shadow_valid = true;
    return 0;
}

static void tx_tag_report(void *ctx, const struct nic_cqe *cqe)
{
    /* No flow: an earlier flow's report, preceding this flow's install
       completion. */
    struct stack_tls_flow *t = tx_flow_ok(ctx, cqe->flow_id);
    if (t)
        t->host->tag_report(t->host_flow, cqe->record_sn, cqe->tag);
}

static void tx_error(void *ctx, const struct nic_cqe *cqe)
{
    if (cqe->desc_kind == NIC_TX_STATIC_CTX || cqe->desc_kind == NIC_TX_DEL_CTX)
        return; /* tx_ctrl_done */
    /* Install not answered yet: the completion is an earlier flow's with
       this id. Failed: the NIC drops what it cannot encrypt; TCP resends. */
    struct stack_tls_flow *t = tx_flow_ok(ctx, cqe->flow_id);
    if (!t)
        return;
    /* The NIC dropped a segment and lost its place: the next segment resyncs. */
    t->shadow_valid = false;
    t->c->tx_tls_nic_errors++;
}

static void tx_ctrl_done(void *ctx, const struct nic_cqe *cqe)
{
    struct stack_tls_offload *o = ctx;
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

static void rx_resync_request(void *ctx, uint32_t flow_id, uint32_t seq)
{
    struct stack_tls_offload *o = ctx;
    if (flow_id == 0 || flow_id > o->max_flows || o->fid[flow_id].state != FID_LIVE)
        return;
    struct stack_tls_flow *r = o->by_flow[flow_id];
    if (r && r->dir == NIC_CTX_RX)
        r->host->resync_request(r->host_flow, seq);
}

static int rx_post(struct stack_tls_offload *o, struct stack_tls_flow *r, uint8_t kind,
                   uint8_t flags, uint32_t seq, uint64_t sn)
{
    struct nic_tx_desc d = {
        .kind = kind, .flags = flags, .flow_id = r->flow_id, .tcp_seq = seq, .record_sn = sn};
    return post(o, &d, NULL);
}

int stack_tls_rx_resync_confirm(struct stack_tls_offload *o, struct stack_tls_flow *r, uint32_t seq,
                                uint64_t record_sn)
{
    return rx_post(o, r, NIC_RX_RESYNC_RESP, NIC_TXF_RESYNC_OK, seq, record_sn);
}

int stack_tls_rx_resync_deny(struct stack_tls_offload *o, struct stack_tls_flow *r, uint32_t seq)
{
    return rx_post(o, r, NIC_RX_RESYNC_RESP, 0, seq, 0);
}

int stack_tls_rx_hint(struct stack_tls_offload *o, struct stack_tls_flow *r, uint32_t seq,
                      uint64_t record_sn)
{
    return rx_post(o, r, NIC_RX_PROGRESS, 0, seq, record_sn);
}

/* --- lifecycle --- */

struct stack_tls_offload *stack_tls_offload_new(struct stack_driver *drv, uint32_t max_flows)
{
    struct stack_tls_offload *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->drv = drv;
    o->max_flows = max_flows;
    o->by_flow = calloc(max_flows + 1, sizeof(*o->by_flow));
    o->free_ids = calloc(max_flows, sizeof(*o->free_ids));
    o->fid = calloc(max_flows + 1, sizeof(*o->fid));
    o->del_q = calloc(max_flows, sizeof(*o->del_q));
    uint32_t buckets = FLOW_HASH_MIN_BUCKETS;
    while (buckets < max_flows / 2)
        buckets *= 2;
    o->hash_mask = buckets - 1;
    o->hash = calloc(buckets, sizeof(*o->hash));
    if (!o->by_flow || !o->free_ids || !o->fid || !o->del_q || !o->hash) {
        free(o->hash);
        free(o->by_flow);
        free(o->free_ids);
        free(o->fid);
        free(o->del_q);
        free(o);
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

static void flow_del(struct stack_tls_offload *o, struct stack_tls_flow *t)
{
    if (t->dir == NIC_CTX_TX) {
        struct stack_tls_flow **pp =
            &o->hash[hash_key(o, t->remote_ip, t->remote_port, t->local_port)];
        while (*pp && *pp != t)
            pp = &(*pp)->hash_next;
        if (*pp)
            *pp = t->hash_next;
    }
    o->by_flow[t->flow_id] = NULL;
    fid_stop(o, t->flow_id);
    free(t);
}

void stack_tls_tx_del(struct stack_tls_offload *o, struct stack_tls_flow *f)
{
    flow_del(o, f);
}

void stack_tls_rx_del(struct stack_tls_offload *o, struct stack_tls_flow *f)
{
    flow_del(o, f);
}

void stack_tls_offload_free(struct stack_tls_offload *o)
{
    if (!o)
        return;
    for (uint32_t i = 1; i <= o->max_flows; i++)
        if (o->by_flow[i])
            flow_del(o, o->by_flow[i]);
    stack_driver_set_offload(o->drv, NULL);
    /* Deletes still queued are dropped: the engine is stopped or stops
       next, and destroying the device wipes every context it holds. */
    flush_deletes(o);
    /* The engine is stopped (apps/app_runtime.c stops it before this), so
       no block is in use any more. */
    for (uint32_t i = 1; i <= o->max_flows; i++)
        host_block_free(o, i);
    free(o->by_flow);
    free(o->free_ids);
    free(o->fid);
    free(o->del_q);
    free(o->hash);
    free(o);
}

const struct stack_tls_tx_counters *stack_tls_offload_tx_counters(const struct stack_tls_offload *o,
                                                                  enum stack_tls_tx_resync policy)
{
    return &o->c[policy];
}

const struct stack_tls_rx_counters *stack_tls_offload_rx_counters(const struct stack_tls_offload *o)
{
    return &o->rxc;
}

/* Take a flow id and post the static context of p in a new host block.
   Returns the id, or 0 when no id, ring slot or memory is available. */
static uint32_t install_post(struct stack_tls_offload *o, const struct stack_tls_params *p,
                             uint8_t dir, uint8_t flags)
{
    if (o->n_free == 0 || stack_driver_tx_space(o->drv) < 1)
        return 0;
    if (p->key_len != 16 && p->key_len != 32)
        return 0;
    uint8_t *block = calloc(1, NIC_CTX_HOST_BYTES);
    if (!block)
        return 0;
    struct nic_tls_static_ctx *buf = (struct nic_tls_static_ctx *)block;
    *buf = (struct nic_tls_static_ctx){
        .cipher = p->key_len == 16 ? NIC_CIPHER_AES_128_GCM : NIC_CIPHER_AES_256_GCM,
        .direction = dir,
        .flags = flags,
        .saddr = p->saddr,
        .daddr = p->daddr,
        .sport = p->sport,
        .dport = p->dport,
        .start_tcp_sn = p->start_seq,
        .record_sn = p->record_sn,
        .rx_wnd_right_edge = dir == NIC_CTX_RX ? p->rx_wnd_right_edge : 0,
        .rx_wnd_scale = dir == NIC_CTX_RX ? p->rx_wnd_scale : 0};
    memcpy(buf->salt, p->salt, 4);
    memcpy(buf->key, p->key, p->key_len);
    uint32_t id = o->free_ids[o->n_free - 1];
    struct nic_tx_desc d = {.kind = NIC_TX_STATIC_CTX,
                            .flags = NIC_TXF_SIGNAL,
                            .len = NIC_CTX_HOST_BYTES,
                            .flow_id = id,
                            .addr = (uint64_t)(uintptr_t)block};
    if (post(o, &d, NULL) != 0) {
        OPENSSL_cleanse(block, NIC_CTX_HOST_BYTES);
        free(block);
        return 0;
    }
    o->n_free--;
    o->fid[id] = (struct fid_info){.host = block,
                                   .state = FID_LIVE,
                                   .install = FID_INSTALL_PENDING,
                                   .dir = dir,
                                   .policy = dir == NIC_CTX_TX ? (uint8_t)p->policy : 0};
    FID_CTR(o, &o->fid[id], tls_ctx_host_bytes) += NIC_CTX_HOST_BYTES;
    return id;
}

struct stack_tls_flow *stack_tls_tx_add(struct stack_tls_offload *o,
                                        const struct stack_tls_params *p,
                                        const struct stack_tls_host_ops *host, void *host_flow)
{
    if (p->policy >= STACK_TLS_TX_RESYNC_COUNT)
        return NULL;
    struct stack_tls_flow *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->dir = NIC_CTX_TX;
    t->policy = p->policy;
    t->c = &o->c[p->policy];
    t->local_ip = p->saddr;
    t->remote_ip = p->daddr;
    t->local_port = p->sport;
    t->remote_port = p->dport;
    t->start_seq = p->start_seq;
    t->shadow_seq = p->start_seq;
    t->shadow_valid = true;
    t->host = host;
    t->host_flow = host_flow;
    uint8_t flags = p->policy == STACK_TLS_TX_RESYNC_TAGCACHE ? NIC_CTXF_TAG_REPORT : 0;
    t->flow_id = install_post(o, p, NIC_CTX_TX, flags);
    if (!t->flow_id) {
        free(t);
        return NULL;
    }
    o->by_flow[t->flow_id] = t;
    unsigned h = hash_key(o, t->remote_ip, t->remote_port, t->local_port);
    t->hash_next = o->hash[h];
    o->hash[h] = t;
    t->c->tx_tls_ctx_installed++;
    return t;
}

struct stack_tls_flow *stack_tls_rx_add(struct stack_tls_offload *o,
                                        const struct stack_tls_params *p,
                                        const struct stack_tls_host_ops *host, void *host_flow)
{
    struct stack_tls_flow *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->dir = NIC_CTX_RX;
    r->host = host;
    r->host_flow = host_flow;
    /* The NIC follows the receive window in our ACKs from here on and
       ignores data beyond it. */
    uint8_t flags = (uint8_t)((p->rx_hint ? NIC_CTXF_RX_HINT : 0) | NIC_CTXF_RX_WND);
    r->flow_id = install_post(o, p, NIC_CTX_RX, flags);
    if (!r->flow_id) {
        free(r);
        return NULL;
    }
    o->by_flow[r->flow_id] = r;
    o->rxc.rx_tls_ctx_installed++;
    return r;
}
