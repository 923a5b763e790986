/*
 * stack_driver.c - host side of the NIC driver (an lwIP netif over rings).
 *
 * TX: reclaim what the NIC finished, post the packet (zero copy: the NIC
 *     reads lwIP's pbuf, which we hold a reference on until the NIC's
 *     consumer index passes its slot), ring the doorbell.
 * RX: the NIC writes packets into buffers we posted; each completion wraps
 *     its buffer in a custom pbuf (zero copy) that comes back to our pool
 *     when lwIP frees it.
 */
#include "stack_driver.h"

#include "nic_csum.h"
#include "stack_chksum.h"
#include "stack_demux.h"
#include "stack_mem.h"

#include <lwip/ip.h>
#include <lwip/ip4.h>
#include <lwip/priv/tcp_priv.h>
#include <lwip/sys.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define RX_POOL_MAX 8192 /* buffers lwIP may hold (ooseq, refused data) + ring */
#define RX_SWEEP_MS                                                                                \
    5 /* sweeps of the out-of-order queues at most this often, unless the pool runs low */

/* The head every driver pbuf starts with, an RX buffer or a compact copy:
   stack_rx_pbuf_view() reads the view at the same place in both. */
struct stack_rx_head {
    struct pbuf_custom pc;     /* first: the custom free function gets &pc.pbuf */
    struct stack_rx_view view; /* the NIC's record view, if marked decrypted */
    struct stack_driver *drv;
};

struct stack_rx_buf {
    struct stack_rx_head h;
    struct stack_rx_buf *next_free;
    uint32_t id;
    uint8_t data[]; /* drv->rx_buf_size bytes */
};

/* A received packet's bytes (and the TCP header before them, for a segment
   lwIP keeps out of order) in memory of their own length. */
struct stack_rx_compact {
    struct stack_rx_head h;
    uint8_t data[];
};

struct stack_driver {
    struct nic_dev *dev;
    const struct nic_queues *q;
    struct netif netif;
    uint32_t mtu, rx_buf_size;
    uint32_t tso_max; /* largest TCP segment handed to the NIC (TSO); 0 = off */

    /* TX ring: [tx_clean, tx_prod) is with the NIC or not yet reclaimed */
    uint32_t tx_prod, tx_clean, tx_cq_cons;
    struct pbuf **tx_shadow; /* slot -> pbuf to free once the NIC is done */

    /* RX buffer ring and pool */
    uint32_t rx_prod, rx_cq_cons;
    struct stack_rx_buf **rx_bufs; /* id -> buffer */
    uint32_t rx_nbufs;
    pthread_mutex_t pool_lock; /* custom free may run on any lwIP thread */
    struct stack_rx_buf *free_list;
    uint32_t rx_nfree;     /* on free_list (pool_lock) */
    uint64_t compact_live; /* compact copies alive (atomic: freed on any thread) */
    struct stack_rx_limits lim;
    uint32_t last_sweep_ms, last_sweep_held;
    uint32_t demux_walk; /* pcbs the last presort visited (rx_demux_presort) */
    unsigned last_rx_n;  /* packets the last poll took up */

    struct stack_offload_ops offload;
    bool in_space_hook; /* tx_ring_space is running */
    struct stack_driver_counters c;
};

static void rx_buf_free(struct pbuf *p)
{
    struct stack_rx_buf *b = (struct stack_rx_buf *)(void *)p;
    struct stack_driver *drv = b->h.drv;
    pthread_mutex_lock(&drv->pool_lock);
    b->next_free = drv->free_list;
    drv->free_list = b;
    drv->rx_nfree++;
    pthread_mutex_unlock(&drv->pool_lock);
}

static void rx_compact_free(struct pbuf *p)
{
    struct stack_rx_compact *k = (struct stack_rx_compact *)(void *)p;
    __atomic_fetch_sub(&k->h.drv->compact_live, 1, __ATOMIC_RELAXED);
    free(k);
}

uint32_t stack_driver_rx_buf_bytes(const struct stack_driver *drv)
{
    return (uint32_t)((sizeof(struct stack_rx_buf) + drv->rx_buf_size + 63) / 64 * 64);
}

static struct stack_rx_buf *rx_buf_get(struct stack_driver *drv)
{
    pthread_mutex_lock(&drv->pool_lock);
    struct stack_rx_buf *b = drv->free_list;
    if (b) {
        drv->free_list = b->next_free;
        drv->rx_nfree--;
    }
    pthread_mutex_unlock(&drv->pool_lock);
    if (b || drv->rx_nbufs >= RX_POOL_MAX)
        return b;
    b = aligned_alloc(64, stack_driver_rx_buf_bytes(drv));
    if (!b)
        return NULL;
    /* Touch the data pages now: a page's first write faults, and it would
       otherwise land in the NIC's decrypt or copy on the data path (16
       faults per 64 KiB buffer; a server's first 64 MiB of upload ran ~20 %
       slower, the ring cycling through fresh buffers). */
    memset(b, 0, stack_driver_rx_buf_bytes(drv));
    b->h.drv = drv;
    b->id = drv->rx_nbufs;
    b->h.pc.custom_free_function = rx_buf_free;
    drv->rx_bufs[drv->rx_nbufs++] = b;
    drv->c.rx_bufs_allocated++;
    return b;
}

struct stack_driver *stack_driver_create(struct nic_dev *dev, uint32_t mtu)
{
    struct stack_driver *drv = calloc(1, sizeof(*drv));
    if (!drv)
        return NULL;
    drv->dev = dev;
    drv->q = nic_dev_queues(dev);
    drv->mtu = mtu;
    drv->rx_buf_size = (mtu + 63) / 64 * 64;
    drv->c.lwip_chksum_fast = stack_chksum_interposed() ? 1 : 0;
    (void)stack_mem_interposed(); /* says so on stderr if not */
    drv->lim = (struct stack_rx_limits){.conn_bufs = STACK_RX_CONN_BUFS,
                                        .ooseq_segs = STACK_RX_OOSEQ_SEGS,
                                        .unread_pbufs = STACK_RX_UNREAD_PBUFS,
                                        .sweep_held = STACK_RX_SWEEP_HELD};
    drv->tx_shadow = calloc(drv->q->tx_size, sizeof(*drv->tx_shadow));
    drv->rx_bufs = calloc(RX_POOL_MAX, sizeof(*drv->rx_bufs));
    pthread_mutex_init(&drv->pool_lock, NULL);
    if (!drv->tx_shadow || !drv->rx_bufs) {
        stack_driver_destroy(drv);
        return NULL;
    }
    return drv;
}

/* Drop the driver's reference to the buffer of TX slot `slot`, which the
   NIC no longer reads. A static context holds a key: wipe it first. */
static void tx_slot_release(struct stack_driver *drv, uint32_t slot)
{
    struct pbuf *p = drv->tx_shadow[slot];
    if (!p)
        return;
    if (drv->q->tx_ring[slot].kind == NIC_TX_STATIC_CTX)
        OPENSSL_cleanse(p->payload, p->len);
    pbuf_free(p);
    drv->tx_shadow[slot] = NULL;
}

void stack_driver_destroy(struct stack_driver *drv)
{
    if (!drv)
        return;
    /* The engine is stopped: every slot in [tx_clean, tx_prod) can go. */
    if (drv->tx_shadow) {
        for (uint32_t i = 0; i < drv->q->tx_size; i++)
            tx_slot_release(drv, i);
        free(drv->tx_shadow);
    }
    if (drv->rx_bufs) {
        for (uint32_t i = 0; i < drv->rx_nbufs; i++)
            free(drv->rx_bufs[i]);
        free(drv->rx_bufs);
    }
    pthread_mutex_destroy(&drv->pool_lock);
    free(drv);
}

struct netif *stack_driver_netif(struct stack_driver *drv)
{
    return &drv->netif;
}

/* The NIC starts an offloaded DATA descriptor only with room for a tag report
   per 29 bytes in its TX CQ (nic_engine.c engine_tx_poll): keep a segment's
   worst case within half the queue. */
uint32_t stack_driver_set_tso(struct stack_driver *drv, uint32_t max_len)
{
    uint32_t cap = drv->q->tx_cq_size / 2 * 29u;
    if (max_len > 65535)
        max_len = 65535;
    if (max_len > cap)
        max_len = cap;
    drv->tso_max = max_len > drv->mtu ? max_len : 0;
    return drv->tso_max;
}

uint32_t stack_driver_tso_max(const struct stack_driver *drv)
{
    return drv->tso_max;
}

/* A pbuf's length is 16 bits: the largest multiple of 64 below 64 KiB. */
#define RX_BUF_MAX 65472u

uint32_t stack_driver_set_rx_buf_size(struct stack_driver *drv, uint32_t size)
{
    if (drv->rx_nbufs == 0) {
        if (size > RX_BUF_MAX)
            size = RX_BUF_MAX;
        if (size > drv->mtu)
            drv->rx_buf_size =
                (size + 63) / 64 * 64 > RX_BUF_MAX ? RX_BUF_MAX : (size + 63) / 64 * 64;
    }
    return drv->rx_buf_size;
}

void stack_driver_set_offload(struct stack_driver *drv, const struct stack_offload_ops *ops)
{
    if (ops)
        drv->offload = *ops;
    else
        memset(&drv->offload, 0, sizeof(drv->offload));
}

/* --- TX --- */

/* Free the buffers of every slot the NIC has consumed; drain TX completions. */
static unsigned tx_reclaim(struct stack_driver *drv)
{
    const struct nic_queues *q = drv->q;
    unsigned n = 0;
    uint32_t cons = __atomic_load_n(&q->tx_idx->cons, __ATOMIC_ACQUIRE);
    while (drv->tx_clean != cons) {
        tx_slot_release(drv, nic_ring_slot(drv->tx_clean, q->tx_size));
        drv->tx_clean++;
        n++;
    }
    bool freed = n > 0;
    for (;;) {
        struct nic_cqe *e = &q->tx_cq[nic_ring_slot(drv->tx_cq_cons, q->tx_cq_size)];
        if (__atomic_load_n(&e->phase, __ATOMIC_ACQUIRE) !=
            nic_cq_phase(drv->tx_cq_cons, q->tx_cq_size))
            break;
        drv->c.tx_completions++;
        if (e->status != NIC_TX_OK) {
            drv->c.tx_err_status++;
            if (e->flow_id && drv->offload.tx_error)
                drv->offload.tx_error(drv->offload.ctx, e);
        }
        if (e->flags & NIC_RXF_TAG_REPORT) {
            if (drv->offload.tx_tag_report)
                drv->offload.tx_tag_report(drv->offload.ctx, e);
        } else if (e->desc_kind != NIC_TX_DATA && drv->offload.tx_ctrl_done) {
            drv->offload.tx_ctrl_done(drv->offload.ctx, e);
        }
        drv->tx_cq_cons++;
        n++;
    }
    __atomic_store_n(&q->tx_cq_idx->cons, drv->tx_cq_cons, __ATOMIC_RELEASE);
    if (freed && drv->offload.tx_ring_space && !drv->in_space_hook) {
        drv->in_space_hook = true; /* the hook posts, and posting reclaims */
        drv->offload.tx_ring_space(drv->offload.ctx);
        drv->in_space_hook = false;
    }
    return n;
}

uint32_t stack_driver_tx_space(struct stack_driver *drv)
{
    tx_reclaim(drv);
    return drv->q->tx_size - (drv->tx_prod - drv->tx_clean);
}

static bool tx_ring_full(const struct stack_driver *drv)
{
    return drv->tx_prod - drv->tx_clean >= drv->q->tx_size;
}

/* Fill the slot at tx_prod; hold (may be NULL) is freed when the NIC is done. */
static void tx_post(struct stack_driver *drv, const struct nic_tx_desc *d, struct pbuf *hold)
{
    const struct nic_queues *q = drv->q;
    uint32_t slot = nic_ring_slot(drv->tx_prod, q->tx_size);
    q->tx_ring[slot] = *d;
    q->tx_ring[slot].cookie = drv->tx_prod;
    drv->tx_shadow[slot] = hold;
    drv->tx_prod++;
}

static void tx_publish(struct stack_driver *drv)
{
    __atomic_store_n(&drv->q->tx_idx->prod, drv->tx_prod, __ATOMIC_RELEASE);
    drv->c.doorbell_writes += nic_dev_doorbell(drv->dev);
}

int stack_driver_post_ctrl(struct stack_driver *drv, const struct nic_tx_desc *d, struct pbuf *hold)
{
    if (tx_ring_full(drv))
        tx_reclaim(drv);
    if (tx_ring_full(drv)) {
        drv->c.tx_ring_full++;
        return -1;
    }
    if (hold)
        pbuf_ref(hold);
    tx_post(drv, d, hold);
    /* Publish now: control descriptors are also posted outside driver_output
       (context install/delete, resync responses) and must not wait for the
       next packet. Order on the ring is what matters, not the doorbell count. */
    tx_publish(drv);
    return 0;
}

/* TSO: the payload bytes per wire packet of this TCP segment (its own IP
   and TCP header lengths). 0 for anything else: the NIC refuses it. */
static uint16_t tso_mss(const struct stack_driver *drv, const struct pbuf *p)
{
    const uint8_t *b = p->payload;
    if (!drv->tso_max || p->len < 40 || (b[0] >> 4) != 4 || b[9] != IP_PROTO_TCP)
        return 0;
    size_t hl = (size_t)(b[0] & 0x0f) * 4;
    if (p->len < hl + 20)
        return 0;
    hl += (size_t)(b[hl + 12] >> 4) * 4;
    return hl < drv->mtu ? (uint16_t)(drv->mtu - hl) : 0;
}

static bool tx_raise_wscale(struct stack_driver *drv, struct pbuf *p);

static err_t driver_output(struct netif *netif, struct pbuf *p, const ip4_addr_t *ipaddr)
{
    (void)ipaddr;
    struct stack_driver *drv = netif->state;
    tx_reclaim(drv);
    if (tx_ring_full(drv)) {
        drv->c.tx_ring_full++;
        return ERR_MEM; /* TCP keeps the segment and sends it later */
    }
    struct pbuf *hold = p;
    if (p->next) {
        /* Not contiguous (only non-TCP traffic, see LWIP_NETIF_TX_SINGLE_PBUF). */
        hold = pbuf_clone(PBUF_RAW, PBUF_RAM, p);
        if (!hold) {
            drv->c.tx_ring_full++;
            return ERR_MEM;
        }
        drv->c.tx_copied++;
        drv->c.tx_copied_bytes += hold->len;
    } else {
        pbuf_ref(p);
    }
    /* A SYN-ACK (lwIP's IPv4 header is 20 bytes: byte 33 holds the TCP
       flags); lwIP rewrites its options whenever it resends it. */
    if (hold == p && p->len >= 40 && p->len <= 80 && (((const uint8_t *)p->payload)[33] & TCP_SYN))
        (void)tx_raise_wscale(drv, hold);
    struct nic_tx_desc d = {
        .kind = NIC_TX_DATA, .len = hold->len, .addr = (uint64_t)(uintptr_t)hold->payload};
    if (drv->offload.tx_prepare) {
        int r = drv->offload.tx_prepare(drv->offload.ctx, &hold, &d.flow_id, &d.flags);
        if (r == STACK_TX_BUSY) {
            drv->c.tx_ring_full++;
            pbuf_free(hold);
            return ERR_MEM; /* as a full ring: TCP keeps the segment */
        }
        if (r < 0 || tx_ring_full(drv)) {
            if (r >= 0)
                drv->c.tx_ring_full++;
            pbuf_free(hold);
            tx_publish(drv); /* control descriptors may have been posted */
            return ERR_OK;   /* dropped on purpose and counted; TCP retransmits */
        }
        d.len = hold->len; /* the hook may have replaced the packet */
        d.addr = (uint64_t)(uintptr_t)hold->payload;
    }
    if (hold->len > drv->mtu)
        d.mss = tso_mss(drv, hold);
    if (stack_chksum_offload()) {
        d.flags |= NIC_TXF_CSUM;
        drv->c.tx_csum_offloaded++;
    }
    tx_post(drv, &d, hold);
    tx_publish(drv);
    drv->c.tx_packets++;
    drv->c.tx_bytes += hold->len;
    return ERR_OK;
}

err_t stack_driver_netif_init(struct netif *netif)
{
    struct stack_driver *drv = netif->state;
    netif->name[0] = 'a';
    netif->name[1] = 'n';
    netif->mtu = (u16_t)(drv->tso_max ? drv->tso_max : drv->mtu);
    netif->output = driver_output;
    netif->flags = NETIF_FLAG_LINK_UP;
    return ERR_OK;
}

/* --- RX --- */

void stack_driver_refill(struct stack_driver *drv)
{
    const struct nic_queues *q = drv->q;
    bool posted = false;
    /* Bound by completions we have read, not by the NIC's consumer index:
       buffers with unread completions still count, so the RX CQ (same size
       as the ring) can never overflow. */
    while (drv->rx_prod - drv->rx_cq_cons < q->rx_size) {
        struct stack_rx_buf *b = rx_buf_get(drv);
        if (!b) {
            drv->c.rx_pool_exhausted++;
            break;
        }
        struct nic_rx_desc *d = &q->rx_ring[nic_ring_slot(drv->rx_prod, q->rx_size)];
        d->addr = (uint64_t)(uintptr_t)b->data;
        d->len = drv->rx_buf_size;
        d->cookie = b->id;
        drv->rx_prod++;
        posted = true;
    }
    if (posted) {
        __atomic_store_n(&q->rx_idx->prod, drv->rx_prod, __ATOMIC_RELEASE);
        drv->c.doorbell_writes += nic_dev_doorbell(drv->dev);
    }
}

static bool rx_cqe_ready(const struct stack_driver *drv)
{
    const struct nic_queues *q = drv->q;
    const struct nic_cqe *e = &q->rx_cq[nic_ring_slot(drv->rx_cq_cons, q->rx_cq_size)];
    return __atomic_load_n(&e->phase, __ATOMIC_ACQUIRE) ==
           nic_cq_phase(drv->rx_cq_cons, q->rx_cq_size);
}

bool stack_driver_pending(struct stack_driver *drv)
{
    const struct nic_queues *q = drv->q;
    if (rx_cqe_ready(drv))
        return true;
    if (__atomic_load_n(&q->tx_idx->cons, __ATOMIC_ACQUIRE) != drv->tx_clean)
        return true;
    const struct nic_cqe *e = &q->tx_cq[nic_ring_slot(drv->tx_cq_cons, q->tx_cq_size)];
    return __atomic_load_n(&e->phase, __ATOMIC_ACQUIRE) ==
           nic_cq_phase(drv->tx_cq_cons, q->tx_cq_size);
}

/* --- Receive memory per connection --- */

static struct stack_driver *rx_owner(const struct pbuf *p)
{
    if (!(p->flags & PBUF_FLAG_IS_CUSTOM))
        return NULL;
    const struct stack_rx_head *h = (const struct stack_rx_head *)(const void *)p;
    if (h->pc.custom_free_function != rx_buf_free && h->pc.custom_free_function != rx_compact_free)
        return NULL;
    return h->drv;
}

bool stack_rx_pbuf_pinned(const struct pbuf *p)
{
    return (p->flags & PBUF_FLAG_IS_CUSTOM) &&
           ((const struct pbuf_custom *)(const void *)p)->custom_free_function == rx_buf_free;
}

/* Buffers neither free nor posted: held by lwIP or the application. */
static uint32_t rx_held(const struct stack_driver *drv)
{
    pthread_mutex_t *l = (pthread_mutex_t *)&drv->pool_lock;
    pthread_mutex_lock(l);
    uint32_t nfree = drv->rx_nfree;
    pthread_mutex_unlock(l);
    return drv->rx_nbufs - nfree - (drv->rx_prod - drv->rx_cq_cons);
}

/* A connection's share: conn_bufs while the pool has room, then 1/8 of what
   is left (free or not yet allocated), so that held buffers can never take
   the last ones the ring needs for everybody else. */
static uint32_t rx_share(const struct stack_driver *drv)
{
    uint32_t avail = RX_POOL_MAX - rx_held(drv) - (drv->rx_prod - drv->rx_cq_cons);
    uint32_t s = avail / 8;
    return s < drv->lim.conn_bufs ? s : drv->lim.conn_bufs;
}

uint32_t stack_rx_share(const struct pbuf *p)
{
    struct stack_driver *drv = rx_owner(p);
    return drv ? rx_share(drv) : UINT32_MAX;
}

const struct stack_rx_limits *stack_rx_limits_of(const struct pbuf *p)
{
    struct stack_driver *drv = rx_owner(p);
    return drv ? &drv->lim : NULL;
}

void stack_rx_note_refused(const struct pbuf *p)
{
    struct stack_driver *drv = rx_owner(p);
    if (drv)
        drv->c.rx_unread_refused++;
}

/* A compact copy of the pinned pbuf q with `head` bytes before its payload
   (a TCP header lwIP still reads), flags and view kept; ref 1, next NULL. */
static struct pbuf *rx_compact_one(struct stack_driver *drv, const struct pbuf *q, uint16_t head)
{
    const struct stack_rx_buf *b = (const struct stack_rx_buf *)(const void *)q;
    struct stack_rx_compact *k = malloc(sizeof(*k) + head + q->len);
    if (!k) {
        drv->c.rx_compact_failed++;
        return NULL;
    }
    memset(&k->h, 0, sizeof(k->h));
    k->h.drv = drv;
    k->h.view = b->h.view;
    k->h.pc.custom_free_function = rx_compact_free;
    memcpy(k->data, (const uint8_t *)q->payload - head, (size_t)head + q->len);
    struct pbuf *c = pbuf_alloced_custom(PBUF_RAW, q->len, PBUF_REF, &k->h.pc, k->data + head,
                                         (u16_t)(head + q->len));
    c->flags |= q->flags & STACK_PBUF_FLAG_DECRYPTED;
    __atomic_fetch_add(&drv->compact_live, 1, __ATOMIC_RELAXED);
    drv->c.rx_compacted++;
    drv->c.rx_compacted_bytes += q->len;
    return c;
}

/* Replace the pinned pbufs of the chain at *link (each pbuf referenced by
   its predecessor, the head by *link) with compact copies; the first one
   keeps `head` bytes before its payload. Returns the buffers freed. */
static uint32_t rx_compact_at(struct stack_driver *drv, struct pbuf **link, uint16_t head)
{
    uint32_t freed = 0;
    for (struct pbuf *q = *link; q; head = 0, link = &(*link)->next, q = *link) {
        if (!stack_rx_pbuf_pinned(q) || q->ref != 1)
            continue; /* not ours, or someone else holds it too */
        struct pbuf *c = rx_compact_one(drv, q, head);
        if (!c)
            break;
        c->next = q->next;
        c->tot_len = q->tot_len;
        q->next = NULL;
        *link = c;
        pbuf_free(q); /* back to the pool */
        freed++;
    }
    return freed;
}

struct pbuf *stack_rx_compact_chain(struct pbuf *p, uint32_t *unpinned)
{
    uint32_t freed = 0;
    struct stack_driver *drv = NULL;
    for (const struct pbuf *q = p; q && !drv; q = q->next)
        drv = rx_owner(q);
    if (drv)
        freed = rx_compact_at(drv, &p, 0);
    if (unpinned)
        *unpinned = freed;
    return p;
}

/* Pinned pbufs of a chain. */
static uint32_t rx_pinned(const struct pbuf *p)
{
    uint32_t n = 0;
    for (; p; p = p->next)
        n += stack_rx_pbuf_pinned(p);
    return n;
}

/* Bytes between a segment's TCP header and its payload, if both lie in the
   first pbuf's RX buffer (else 0: compact without the header is unsafe). */
static bool rx_seg_head(const struct stack_driver *drv, const struct tcp_seg *s, uint16_t *head)
{
    const struct stack_rx_buf *b = (const struct stack_rx_buf *)(const void *)s->p;
    const uint8_t *h = (const uint8_t *)s->tcphdr, *pl = s->p->payload;
    if (h < b->data || pl < h || pl > b->data + drv->rx_buf_size || pl - h > 0xffff)
        return false;
    *head = (uint16_t)(pl - h);
    return true;
}

/* One connection's out-of-order queue: at most ooseq_segs segments (the
   highest are dropped), at most `share` pinned buffers (the rest compacted). */
static void rx_limit_ooseq(struct stack_driver *drv, struct tcp_pcb *pcb, uint32_t share)
{
    uint32_t nseg = 0, pinned = 0;
    for (struct tcp_seg *s = pcb->ooseq; s; s = s->next) {
        if (++nseg == drv->lim.ooseq_segs && s->next) {
            for (struct tcp_seg *d = s->next; d; d = d->next) {
                drv->c.rx_ooseq_dropped++;
                drv->c.rx_ooseq_dropped_bytes += d->len;
            }
            tcp_segs_free(s->next);
            s->next = NULL;
        }
        pinned += rx_pinned(s->p);
    }
    if (pcb->refused_data)
        pinned += rx_pinned(pcb->refused_data);
    if (pinned <= share)
        return;
    if (pcb->refused_data)
        pinned -= rx_compact_at(drv, &pcb->refused_data, 0);
    for (struct tcp_seg *s = pcb->ooseq; s && pinned > share / 2; s = s->next) {
        uint16_t head;
        if (!stack_rx_pbuf_pinned(s->p) || !rx_seg_head(drv, s, &head))
            continue;
        uint32_t freed = rx_compact_at(drv, &s->p, head);
        if (freed)
            s->tcphdr = (struct tcp_hdr *)(void *)((uint8_t *)s->p->payload - head);
        pinned -= freed;
    }
}

/* Walk the active connections when lwIP holds many buffers: once it holds
   conn_bufs more than after the last sweep, or RX_SWEEP_MS later, or at
   once when the pool runs low (the share shrinks). */
static void rx_maybe_sweep(struct stack_driver *drv)
{
    uint32_t held = rx_held(drv), share = rx_share(drv);
    if (held > drv->c.rx_bufs_held_peak)
        drv->c.rx_bufs_held_peak = held;
    if (held < drv->lim.sweep_held)
        return;
    uint32_t now = sys_now();
    if (share >= drv->lim.conn_bufs && held < drv->last_sweep_held + drv->lim.conn_bufs &&
        now - drv->last_sweep_ms < RX_SWEEP_MS)
        return;
    drv->c.rx_sweeps++;
    for (struct tcp_pcb *pcb = tcp_active_pcbs; pcb; pcb = pcb->next)
        if (pcb->ooseq || pcb->refused_data)
            rx_limit_ooseq(drv, pcb, share);
    drv->last_sweep_ms = now;
    drv->last_sweep_held = rx_held(drv);
}

/* The connection tuple of an IPv4 TCP packet at ip (len bytes), from the
   receiver's side. whole: only an unfragmented packet (else the first
   fragment's tuple is enough). */
static bool rx_tcp_key(const uint8_t *ip, uint32_t len, struct stack_demux_key *k, bool whole)
{
    if (len < 40)
        return false;
    size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
    uint16_t frag = (uint16_t)(ip[6] << 8 | ip[7]);
    if ((ip[0] >> 4) != 4 || ip[9] != IP_PROTO_TCP || ihl < 20 || ihl + 20 > len ||
        (frag & (whole ? 0x3fff : 0x1fff)))
        return false;
    memcpy(&k->remote_ip, ip + 12, 4);
    k->remote_port = (uint16_t)(ip[ihl] << 8 | ip[ihl + 1]);
    k->local_port = (uint16_t)(ip[ihl + 2] << 8 | ip[ihl + 3]);
    return true;
}

/* lwIP's tcp_input finds a segment's pcb by walking tcp_active_pcbs from
   the head, moving the pcb it finds to the front. With thousands of
   connections sending in turn, each segment walked most of the list (O(N)
   per packet: 10,000 flows moved nothing, docs/design.md §7). Before a batch
   goes up, its segments' pcbs are moved to the front, so lwIP finds each
   within the first DEMUX_BATCH entries. The pcb index (stack_demux.h) names
   each segment's pcb, or none (then nothing is looked for), and remembers
   each pcb's predecessor on the list: a hint that still holds unlinks the
   pcb at once. Only pcbs without one are found by a walk, which stops once
   it has them all and renews the hints of every pcb it passes. Called with
   the core lock held and outside any lwIP walk; the list's order only
   decides lookup time. */
#define DEMUX_BATCH STACK_DEMUX_MANY_MAX
#define DEMUX_SLOTS 128 /* open addressing, at most half full */

static unsigned pcb_slot(const struct tcp_pcb *pcb)
{
    uintptr_t h = (uintptr_t)pcb;
    h ^= h >> 17;
    h *= 0x7feb352du;
    return (unsigned)(h >> 8) & (DEMUX_SLOTS - 1);
}

/* Adds pcb to the set; false if it was there already. */
static bool pcb_set_add(struct tcp_pcb **set, struct tcp_pcb *pcb)
{
    for (unsigned i = pcb_slot(pcb);; i = (i + 1) & (DEMUX_SLOTS - 1)) {
        if (set[i] == pcb)
            return false;
        if (!set[i]) {
            set[i] = pcb;
            return true;
        }
    }
}

static bool pcb_set_has(struct tcp_pcb *const *set, const struct tcp_pcb *pcb)
{
    for (unsigned i = pcb_slot(pcb);; i = (i + 1) & (DEMUX_SLOTS - 1)) {
        if (set[i] == pcb)
            return true;
        if (!set[i])
            return false;
    }
}

/* RX interrupt moderation for long connection lists: a walk costs about
   the same for one packet as for DEMUX_BATCH, so when the last poll took up
   few packets but walked more than DEMUX_MODERATE_PCBS pcbs, the IRQ thread
   waits a little (1 us per 16 pcbs walked, at most DEMUX_MODERATE_MAX_US) to
   let a batch gather, as a NIC's adaptive interrupt moderation does. */
#define DEMUX_MODERATE_PCBS   1024
#define DEMUX_MODERATE_MAX_US 500

unsigned stack_driver_moderation_us(struct stack_driver *drv)
{
    if (drv->last_rx_n == 0 || drv->last_rx_n >= DEMUX_BATCH / 2 ||
        drv->demux_walk < DEMUX_MODERATE_PCBS)
        return 0;
    drv->c.rx_moderated++;
    uint32_t us = drv->demux_walk / 16;
    return us < DEMUX_MODERATE_MAX_US ? us : DEMUX_MODERATE_MAX_US;
}

/* Takes pcb (preceded by pred, NULL = the head) off tcp_active_pcbs. */
static void active_unlink(struct tcp_pcb *pcb, struct tcp_pcb *pred)
{
    struct tcp_pcb *next = pcb->next;
    if (pred)
        pred->next = next;
    else
        tcp_active_pcbs = next;
    if (next)
        stack_demux_set_pred(next, pred);
    pcb->next = NULL;
}

/* The batch's pcbs are about to be moved by their hints, and lwIP's
   tcp_input then reads most of each pcb (288 bytes), its unacked segments
   and its callback argument. With thousands of connections all of it is
   cold: the loads of each level are started for the whole batch before any
   is read, so that the misses overlap instead of stalling one by one. */
static void rx_batch_prefetch(struct tcp_pcb *const *pcbs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        for (size_t off = 0; off < sizeof(struct tcp_pcb); off += 64)
            __builtin_prefetch((const uint8_t *)pcbs[i] + off);
        stack_demux_prefetch_pred(pcbs[i], 0);
    }
    for (unsigned i = 0; i < n; i++) {
        if (pcbs[i]->unacked)
            __builtin_prefetch(pcbs[i]->unacked);
        if (pcbs[i]->callback_arg)
            __builtin_prefetch(pcbs[i]->callback_arg);
        stack_demux_prefetch_pred(pcbs[i], 1);
    }
}

/* Returns the completions it looked at (those ready, at most DEMUX_BATCH). */
static unsigned rx_demux_presort(struct stack_driver *drv, unsigned budget)
{
    const struct nic_queues *q = drv->q;
    struct tcp_pcb *batch[DEMUX_SLOTS], *walk_set[DEMUX_SLOTS], *order[DEMUX_BATCH];
    unsigned nbatch = 0, nwalk = 0;
    memset(batch, 0, sizeof(batch));
    stack_demux_sync();
    if (!stack_demux_trusted())
        return budget < DEMUX_BATCH ? budget : DEMUX_BATCH; /* lwIP's own walks */
    uint32_t cons = drv->rx_cq_cons;
    unsigned seen = 0, nkeys = 0;
    struct stack_demux_key keys[DEMUX_BATCH];
    struct tcp_pcb *found[DEMUX_BATCH];
    for (; seen < budget && seen < DEMUX_BATCH; seen++, cons++) {
        const struct nic_cqe *e = &q->rx_cq[nic_ring_slot(cons, q->rx_cq_size)];
        if (__atomic_load_n(&e->phase, __ATOMIC_ACQUIRE) != nic_cq_phase(cons, q->rx_cq_size))
            break;
        const struct stack_rx_buf *b = e->cookie < drv->rx_nbufs ? drv->rx_bufs[e->cookie] : NULL;
        if (b && e->len <= drv->rx_buf_size && rx_tcp_key(b->data, e->len, &keys[nkeys], false))
            nkeys++; /* else not TCP, or a later fragment: lwIP's path as before */
    }
    stack_demux_find_active_many(keys, nkeys, found);
    for (unsigned i = 0; i < nkeys; i++)
        if (found[i] && pcb_set_add(batch, found[i]))
            order[nbatch++] = found[i];
    if (nbatch == 0)
        return seen;
    rx_batch_prefetch(order, nbatch);
    /* The front chain, in batch order. */
    struct tcp_pcb *front = NULL, *front_tail = NULL;
    memset(walk_set, 0, sizeof(walk_set));
    for (unsigned i = 0; i < nbatch; i++) {
        struct tcp_pcb *pred;
        if (!stack_demux_pred(order[i], &pred)) {
            pcb_set_add(walk_set, order[i]);
            nwalk++;
            continue;
        }
        active_unlink(order[i], pred);
        drv->c.rx_demux_hinted++;
        if (front_tail)
            front_tail->next = order[i];
        else
            front = order[i];
        front_tail = order[i];
    }
    drv->demux_walk = 0;
    if (nwalk) {
        drv->c.rx_demux_walks++;
        struct tcp_pcb *prev = NULL;
        for (struct tcp_pcb *pcb = tcp_active_pcbs; pcb && nwalk; drv->demux_walk++) {
            struct tcp_pcb *next = pcb->next;
            if (pcb_set_has(walk_set, pcb)) {
                nwalk--;
                active_unlink(pcb, prev);
                if (front_tail)
                    front_tail->next = pcb;
                else
                    front = pcb;
                front_tail = pcb;
            } else {
                stack_demux_set_pred(pcb, prev);
                prev = pcb;
            }
            pcb = next;
        }
    }
    if (front) {
        front_tail->next = tcp_active_pcbs;
        if (tcp_active_pcbs)
            stack_demux_set_pred(tcp_active_pcbs, front_tail);
        tcp_active_pcbs = front;
        struct tcp_pcb *pred = NULL;
        for (struct tcp_pcb *pcb = front; pcb != front_tail->next; pred = pcb, pcb = pcb->next) {
            stack_demux_set_pred(pcb, pred);
            drv->c.rx_demux_moved++;
        }
    }
    return seen;
}

/* Appends saved to the list at *list (lwIP registers new pcbs at a
   list's head, so what was added meanwhile comes first). */
static void pcb_list_splice(struct tcp_pcb **list, struct tcp_pcb *saved)
{
    while (*list)
        list = &(*list)->next;
    *list = saved;
}

/* Hands one packet to lwIP. A TCP segment whose tuple no pcb has goes up
   with tcp_active_pcbs and tcp_tw_pcbs hidden (stack_demux.h): lwIP's
   tcp_input would walk both to their ends and find nothing, and goes
   straight to the listeners instead: a SYN gets its new pcb, anything else
   lwIP's RST, as before. Such a segment reaches no connection's callbacks,
   so lwIP neither removes nor walks a pcb of the hidden lists meanwhile; a
   pcb it creates is put in front of them. */
static void rx_wnd_update(struct stack_driver *drv, struct tcp_pcb *pcb);

/* A new connection's SYN on the tuple of a pcb in TIME_WAIT. lwIP answers
   it with an ACK and drops it, and it ignores the peer's RST in TIME_WAIT,
   so the client (whose side closed second and may reuse the port at once)
   retries its SYN until it gives up, for up to lwIP's 2 MSL. As Linux and RFC 6191 do, a SYN whose
   sequence number lies past what the old connection received ends the TIME_WAIT
   (rx_timewait_reused) and goes to the listener; an older one still gets
   lwIP's answer. Core lock held; ip is a whole, unfragmented IPv4 TCP
   segment (rx_tcp_key). */
static void rx_timewait_syn(struct stack_driver *drv, const uint8_t *ip,
                            const struct stack_demux_key *k)
{
    const uint8_t *tcp = ip + (size_t)(ip[0] & 0x0f) * 4;
    if ((tcp[13] & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) != TCP_SYN)
        return;
    struct tcp_pcb *tw = stack_demux_find_timewait(k);
    if (!tw)
        return;
    uint32_t seq = (uint32_t)tcp[4] << 24 | (uint32_t)tcp[5] << 16 | (uint32_t)tcp[6] << 8 | tcp[7];
    if ((int32_t)(seq - tw->rcv_nxt) <= 0)
        return;
    tcp_abort(tw); /* in TIME_WAIT: unlinked and freed, nothing sent */
    drv->c.rx_timewait_reused++;
}

static err_t rx_input(struct stack_driver *drv, struct pbuf *p, const uint8_t *ip, uint32_t len)
{
    struct stack_demux_key k;
    stack_demux_sync();
    if (!stack_demux_trusted() || !rx_tcp_key(ip, len, &k, true))
        return drv->netif.input(p, &drv->netif);
    rx_timewait_syn(drv, ip, &k);
    if (!stack_demux_has(&k)) {
        drv->c.rx_demux_unknown++;
        struct tcp_pcb *active = tcp_active_pcbs, *tw = tcp_tw_pcbs;
        tcp_active_pcbs = NULL;
        tcp_tw_pcbs = NULL;
        err_t err = drv->netif.input(p, &drv->netif);
        pcb_list_splice(&tcp_active_pcbs, active);
        pcb_list_splice(&tcp_tw_pcbs, tw);
        return err;
    }
    /* A segment that fills (part of) a hole is acknowledged at once
       (RFC 5681 4.2): lwIP delays that ACK like any in-order one, by up to
       its 250 ms fast timer, and under loss the sender waits for it
       (docs/design.md §7). */
    struct tcp_pcb *pcb = stack_demux_find_active(&k);
    if (!pcb)
        return drv->netif.input(p, &drv->netif);
    bool hole = pcb->ooseq != NULL;
    uint32_t rcv_nxt = pcb->rcv_nxt;
    err_t err = drv->netif.input(p, &drv->netif);
    if (stack_demux_find_active(&k) != pcb)
        return err; /* gone */
    if (pcb->rcv_nxt != rcv_nxt || (!hole && pcb->ooseq))
        rx_wnd_update(drv, pcb); /* data arrived; a pure ACK changes nothing here */
    if (hole && pcb->rcv_nxt != rcv_nxt && (pcb->flags & TF_ACK_DELAY)) {
        drv->c.rx_hole_fill_acks++;
        tcp_ack_now(pcb);
        tcp_output(pcb);
    }
    return err;
}

unsigned stack_driver_poll(struct stack_driver *drv, unsigned budget)
{
    const struct nic_queues *q = drv->q;
    unsigned n = 0;
    drv->c.polls++;
    unsigned presorted = 0; /* completions of this poll a presort covered */
    while (n < budget && rx_cqe_ready(drv)) {
        /* Again once past what the last presort saw: packets that arrived
           since would each walk the list in lwIP. */
        if (n >= presorted)
            presorted = n + rx_demux_presort(drv, budget - n);
        const struct nic_cqe *e = &q->rx_cq[nic_ring_slot(drv->rx_cq_cons, q->rx_cq_size)];
        struct stack_rx_buf *b = e->cookie < drv->rx_nbufs ? drv->rx_bufs[e->cookie] : NULL;
        uint16_t flags = e->flags;
        uint32_t len = e->len, flow_id = e->flow_id, resync_seq = e->resync_seq;
        drv->rx_cq_cons++;
        n++;
        if (!b || len > drv->rx_buf_size) {
            drv->c.rx_input_drops++; /* a NIC bug; never trust the device blindly */
            continue;
        }
        if ((flags & NIC_RXF_RESYNC_REQ) && drv->offload.rx_resync_request) {
            drv->c.rx_resync_requests++;
            drv->offload.rx_resync_request(drv->offload.ctx, flow_id, resync_seq);
        }
        struct pbuf *p = pbuf_alloced_custom(PBUF_RAW, (u16_t)len, PBUF_REF, &b->h.pc, b->data,
                                             (u16_t)drv->rx_buf_size);
        if (flags & NIC_RXF_DECRYPTED) {
            b->h.view = (struct stack_rx_view){.seq = e->view_seq,
                                               .record_sn = e->record_sn,
                                               .rec_off = e->view_rec_off,
                                               .rec_len = e->view_rec_len,
                                               .walk = e->view_walk};
            p->flags |= STACK_PBUF_FLAG_DECRYPTED;
            drv->c.rx_decrypted_packets++;
        }
        if (flags & NIC_RXF_CSUM_OK)
            drv->c.rx_csum_ok++;
        drv->c.rx_packets++;
        drv->c.rx_bytes += len;
        bool verified = (flags & NIC_RXF_CSUM_OK) != 0;
        if (verified)
            stack_chksum_rx_trust(); /* a no-op without checksum offload */
        err_t err = rx_input(drv, p, b->data, len);
        if (verified && stack_chksum_rx_trust_end())
            drv->c.rx_csum_trusted++;
        if (err != ERR_OK) {
            drv->c.rx_input_drops++;
            pbuf_free(p);
        }
    }
    __atomic_store_n(&q->rx_cq_idx->cons, drv->rx_cq_cons, __ATOMIC_RELEASE);
    drv->last_rx_n = n;
    rx_maybe_sweep(drv);
    n += tx_reclaim(drv);
    stack_driver_refill(drv);
    return n;
}

bool stack_rx_pbuf_view(const struct pbuf *p, struct stack_rx_view *out)
{
    if (!(p->flags & STACK_PBUF_FLAG_DECRYPTED))
        return false;
    /* Only the driver sets the flag, and only on its own RX buffers and
       their compact copies, which both start with a stack_rx_head. */
    *out = ((const struct stack_rx_head *)(const void *)p)->view;
    return true;
}

void stack_driver_set_rx_limits(struct stack_driver *drv, const struct stack_rx_limits *l)
{
    if (l->conn_bufs)
        drv->lim.conn_bufs = l->conn_bufs;
    if (l->ooseq_segs)
        drv->lim.ooseq_segs = l->ooseq_segs;
    if (l->unread_pbufs)
        drv->lim.unread_pbufs = l->unread_pbufs;
    if (l->sweep_held)
        drv->lim.sweep_held = l->sweep_held;
}

void stack_driver_get_counters(const struct stack_driver *drv, struct stack_driver_counters *out)
{
    *out = drv->c;
    out->rx_bufs_held = rx_held(drv);
    out->rx_compact_live = __atomic_load_n(&drv->compact_live, __ATOMIC_RELAXED);
}

/* --- receive window beyond lwIP's TCP_WND --- */

/* TCP_WND in this lwIP build, and the most a window scale of
   TCP_RCV_SCALE can announce. */
#define RCV_WND_LWIP  0xffffu
#define RCV_SCALE_MAX 6u /* windows up to 4 MiB */
#define RCV_WND_MAX   ((uint32_t)0xffffu << RCV_SCALE_MAX)
/* The most a connection's window grows to before it has received
   RCV_WND_WIDEN_AFTER bytes without a hole, and ever after it saw one. A
   flight of the full window past a hole costs a lossless upload nothing but
   stalls a lossy one: the kernel sender's RTO backs off over a flight lwIP
   cannot acknowledge without SACK (docs/design.md §5). */
#define RCV_WND_LOSSY       ((uint32_t)0xffffu << 1)
#define RCV_WND_WIDEN_AFTER (4u << 20)

static _Atomic uint32_t rcv_wnd_target = RCV_WND_LWIP;

uint32_t stack_tcp_set_rcv_wnd(uint32_t bytes)
{
    if (bytes < RCV_WND_LWIP)
        bytes = RCV_WND_LWIP;
    if (bytes > RCV_WND_MAX)
        bytes = RCV_WND_MAX;
    atomic_store(&rcv_wnd_target, bytes);
    return bytes;
}

uint32_t stack_tcp_rcv_wnd(void)
{
    return atomic_load(&rcv_wnd_target);
}

/* The window this pcb may have: lwIP's 65535 unless the peer agreed to
   window scaling; then the target, within what the pcb's shift can
   announce, and at most RCV_WND_LOSSY until rx_wnd_update widened it. */
static uint32_t pcb_wnd_max(const struct tcp_pcb *pcb)
{
    if (!(pcb->flags & TF_WND_SCALE))
        return RCV_WND_LWIP;
    uint32_t max = atomic_load(&rcv_wnd_target);
    uint32_t scaled = (uint32_t)0xffffu << pcb->rcv_scale;
    if (max > scaled)
        max = scaled;
    if (max <= RCV_WND_LOSSY)
        return max;
    const struct stack_demux_user *u = stack_demux_user(pcb);
    bool wide =
        u && (u->marks & (STACK_DEMUX_MARK_WIDE | STACK_DEMUX_MARK_HOLE)) == STACK_DEMUX_MARK_WIDE;
    return wide ? max : RCV_WND_LOSSY;
}

/* After input to pcb (rx_input): a connection that saw a hole is marked
   (its window stays at RCV_WND_LOSSY); one that received
   RCV_WND_WIDEN_AFTER bytes without one gets the rest of its window, once.
   Core lock held. */
static void rx_wnd_update(struct stack_driver *drv, struct tcp_pcb *pcb)
{
    struct stack_demux_user *u = stack_demux_user(pcb);
    if (!u || (u->marks & (STACK_DEMUX_MARK_HOLE | STACK_DEMUX_MARK_WIDE)))
        return;
    if (pcb->ooseq) {
        u->marks |= STACK_DEMUX_MARK_HOLE;
        drv->c.rx_wnd_lossy++;
        return;
    }
    if (!(u->marks & STACK_DEMUX_MARK_SEQ0) || pcb->rcv_nxt - u->seq0 < RCV_WND_WIDEN_AFTER)
        return;
    uint32_t before = pcb_wnd_max(pcb);
    u->marks |= STACK_DEMUX_MARK_WIDE;
    uint32_t after = pcb_wnd_max(pcb);
    if (after <= before)
        return;
    /* like stack_tcp_wnd_open: buffer space nothing consumed, added once */
    pcb->rcv_wnd += after - before;
    drv->c.rx_wnd_widened++;
    if (tcp_update_rcv_ann_wnd(pcb) >= TCP_WND_UPDATE_THRESHOLD) {
        tcp_ack_now(pcb);
        tcp_output(pcb);
    }
}

/* The window scale the target needs: lwIP's TCP_RCV_SCALE or more. */
static unsigned rcv_scale_wanted(void)
{
    uint32_t target = atomic_load(&rcv_wnd_target);
    unsigned s = TCP_RCV_SCALE;
    while (s < RCV_SCALE_MAX && ((uint32_t)0xffffu << s) < target)
        s++;
    return s;
}

/* lwIP writes TCP_RCV_SCALE into the window scale option of every SYN-ACK
   (a build constant). When the target window needs a larger shift, the
   driver raises the option's shift in the outgoing SYN-ACK and the pcb's
   rcv_scale together, so every later window lwIP announces is divided by
   what the peer multiplies it by (RFC 7323 2.3); the SYN-ACK's own window
   field is unscaled. A pcb the index cannot name keeps lwIP's shift. Core
   lock held (driver_output). Returns whether the packet was changed. */
static bool tx_raise_wscale(struct stack_driver *drv, struct pbuf *p)
{
    uint8_t *pkt = p->payload;
    struct nic_tcp_view v;
    if (!nic_parse_tcp(pkt, p->len, &v) ||
        (v.tcp_flags & (NIC_TCP_SYN | NIC_TCP_ACK)) != (NIC_TCP_SYN | NIC_TCP_ACK))
        return false;
    unsigned want = rcv_scale_wanted();
    if (want <= TCP_RCV_SCALE)
        return false;
    uint8_t *tcp = pkt + v.tcp_off;
    size_t i = 20; /* the options: kind 3 (window scale) is length 3 */
    while (i + 2 < v.tcp_hlen && tcp[i] != 0 && tcp[i] != 3)
        i += tcp[i] == 1 ? 1 : (tcp[i + 1] >= 2 ? tcp[i + 1] : v.tcp_hlen);
    if (i + 2 >= v.tcp_hlen || tcp[i] != 3 || tcp[i + 1] != 3 || tcp[i + 2] != TCP_RCV_SCALE)
        return false;
    struct stack_demux_key k = {.remote_ip = v.daddr,
                                .remote_port = lwip_ntohs(v.dport),
                                .local_port = lwip_ntohs(v.sport)};
    stack_demux_sync();
    struct tcp_pcb *pcb = stack_demux_trusted() ? stack_demux_find_active(&k) : NULL;
    if (!pcb || pcb->state != SYN_RCVD)
        return false;
    pcb->rcv_scale = (u8_t)want;
    tcp[i + 2] = (uint8_t)want;
    nic_tcp_csum_fix(pkt, &v);
    drv->c.tx_wscale_raised++;
    return true;
}

/* Window withheld from connections while they have a hole (stack_tcp_recved):
   pcb -> bytes, open addressing with linear probing, at most 3/4 full (a
   connection that finds no room is not held back). Core lock held. An entry
   leaves when its connection re-opens without a hole; one left by a pcb
   that died with a hole is dropped when stack_tcp_wnd_open sees the address
   again, or stays (bounded by the table). */
#define WND_HELD_SLOTS 4096u
static struct wnd_held {
    const struct tcp_pcb *pcb;
    uint32_t bytes;
} wnd_held[WND_HELD_SLOTS];
static unsigned wnd_held_n;

static unsigned wnd_held_slot(const struct tcp_pcb *pcb)
{
    uint64_t x = (uint64_t)(uintptr_t)pcb * 0x9e3779b97f4a7c15ull;
    return (unsigned)(x >> 40) & (WND_HELD_SLOTS - 1);
}

/* The bytes withheld from pcb, removing its entry (0 if none). */
static uint32_t wnd_held_take(const struct tcp_pcb *pcb)
{
    unsigned i = wnd_held_slot(pcb);
    while (wnd_held[i].pcb && wnd_held[i].pcb != pcb)
        i = (i + 1) & (WND_HELD_SLOTS - 1);
    if (!wnd_held[i].pcb)
        return 0;
    uint32_t bytes = wnd_held[i].bytes;
    wnd_held_n--;
    /* Backward-shift deletion: pull later entries of the run into the gap
       unless their home slot lies cyclically in (gap, entry]. */
    for (unsigned j = i;;) {
        wnd_held[i].pcb = NULL;
        for (;;) {
            j = (j + 1) & (WND_HELD_SLOTS - 1);
            if (!wnd_held[j].pcb)
                return bytes;
            unsigned k = wnd_held_slot(wnd_held[j].pcb);
            if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
                continue;
            break;
        }
        wnd_held[i] = wnd_held[j];
        i = j;
    }
}

static bool wnd_held_add(const struct tcp_pcb *pcb, uint32_t bytes)
{
    unsigned i = wnd_held_slot(pcb);
    while (wnd_held[i].pcb && wnd_held[i].pcb != pcb)
        i = (i + 1) & (WND_HELD_SLOTS - 1);
    if (!wnd_held[i].pcb) {
        if (wnd_held_n >= WND_HELD_SLOTS / 4 * 3)
            return false;
        wnd_held_n++;
        wnd_held[i] = (struct wnd_held){.pcb = pcb, .bytes = 0};
    }
    wnd_held[i].bytes += bytes;
    return true;
}

uint32_t stack_tcp_wnd_held(const struct tcp_pcb *pcb)
{
    unsigned i = wnd_held_slot(pcb);
    while (wnd_held[i].pcb && wnd_held[i].pcb != pcb)
        i = (i + 1) & (WND_HELD_SLOTS - 1);
    return wnd_held[i].pcb ? wnd_held[i].bytes : 0;
}

void stack_tcp_wnd_open(struct tcp_pcb *pcb)
{
    (void)wnd_held_take(pcb); /* a dead connection's, at the same address */
    stack_demux_sync();
    struct stack_demux_user *u = stack_demux_user(pcb);
    if (u) {
        u->seq0 = pcb->rcv_nxt;
        u->marks |= STACK_DEMUX_MARK_SEQ0;
    }
    uint32_t max = pcb_wnd_max(pcb);
    if (max <= RCV_WND_LWIP || pcb->rcv_wnd >= max)
        return;
    /* The extra is buffer space the application has not been given yet:
       nothing consumed it, so it is added once, here. */
    pcb->rcv_wnd += max - RCV_WND_LWIP;
    if (pcb->rcv_wnd > max)
        pcb->rcv_wnd = max;
    (void)tcp_update_rcv_ann_wnd(pcb);
}

void stack_tcp_recved(struct tcp_pcb *pcb, uint16_t len)
{
    uint32_t max = pcb_wnd_max(pcb);
    if (max <= RCV_WND_LWIP) {
        tcp_recved(pcb, len);
        return;
    }
    /* While a hole is open (lwIP queues segments out of order) the window
       grows back no further than lwIP's own TCP_WND; the rest is withheld
       and given back at the first call without a hole. The peer gets no
       RTT sample from an ACK that covers a retransmission (Karn; lwIP has
       neither SACK nor timestamps), so a flight past the hole keeps its
       RTO backing off until an ACK covers only new data: with 131070
       bytes in flight under loss that ACK rarely comes (docs/design.md
       §5). The window never shrinks: what lwIP has already, or announced,
       stays. */
    uint32_t w = pcb->rcv_wnd + len;
    if (!pcb->ooseq)
        w += wnd_held_take(pcb);
    if (w > max) /* max may have fallen below the window (RCV_WND_LOSSY) */
        w = max > pcb->rcv_wnd ? max : pcb->rcv_wnd;
    if (pcb->ooseq && w > RCV_WND_LWIP) {
        uint32_t keep = pcb->rcv_wnd > RCV_WND_LWIP ? pcb->rcv_wnd : RCV_WND_LWIP;
        if (w > keep && wnd_held_add(pcb, w - keep))
            w = keep;
    }
    pcb->rcv_wnd = w;
    /* as lwIP's tcp_recved: announce when the window grew by the threshold */
    if (tcp_update_rcv_ann_wnd(pcb) >= TCP_WND_UPDATE_THRESHOLD) {
        tcp_ack_now(pcb);
        tcp_output(pcb);
    }
}
