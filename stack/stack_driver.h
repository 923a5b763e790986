/*
 * stack_driver.h - the host side of the NIC driver: an lwIP netif whose
 * packets travel only through the descriptor rings of nic/nic_abi.h.
 *
 * Locking: every function here runs with the lwIP core lock held (the tcpip
 * thread, or the interrupt thread that takes the lock), except create/destroy.
 */
#ifndef ANIC_STACK_DRIVER_H
#define ANIC_STACK_DRIVER_H

#include "nic_dev.h"

#include <lwip/netif.h>
#include <lwip/pbuf.h>
#include <stdbool.h>
#include <stdint.h>

/* pbuf->flags bit (unused by lwIP 2.1.3, docs/design.md §7): the NIC decrypted
   this packet's TLS record bytes. Set on RX pbufs; survives lwIP's TCP
   reassembly because lwIP never merges bytes of two packets into one pbuf. */
#define STACK_PBUF_FLAG_DECRYPTED 0x40U

/* Where the NIC placed the first payload byte of a packet it marked
   decrypted, in its own walk of the TLS stream: TCP seq of that byte, the
   record it belongs to, its offset in that record and the record's length
   (0 while the offset is inside the 5-byte header), and the NIC walk that
   decrypted it (struct nic_cqe view_walk). The host trusts the mark only
   where this agrees with its own record state. */
struct stack_rx_view {
    uint32_t seq;
    uint64_t record_sn;
    uint32_t rec_off;
    uint32_t rec_len;
    uint32_t walk;
};

/* Driver counters (/stats section driver). */
#define STACK_DRIVER_COUNTERS(X)                                                                   \
    X(tx_packets)                                                                                  \
    X(tx_bytes)                                                                                    \
    X(tx_copied)                                                                                   \
    X(tx_copied_bytes) /* bytes of those copies (pbuf_clone) */                                    \
    X(tx_ring_full)                                                                                \
    X(tx_wscale_raised) /* SYN-ACKs whose window scale shift was raised (stack_tcp_set_rcv_wnd) */ \
    X(tx_err_status)                                                                               \
    X(tx_completions)                                                                              \
    X(rx_packets)                                                                                  \
    X(rx_bytes)                                                                                    \
    X(rx_input_drops)                                                                              \
    X(rx_csum_ok)                                                                                  \
    X(rx_decrypted_packets)                                                                        \
    X(rx_resync_requests)                                                                          \
    X(rx_pool_exhausted)                                                                           \
    X(rx_bufs_allocated)                                                                           \
    X(rx_bufs_held)      /* gauge: RX buffers lwIP or the app hold (not free, not posted) */       \
    X(rx_bufs_held_peak) /* the most rx_bufs_held seen after a poll */                             \
    /* Per-connection receive limits (struct stack_rx_limits), each counted                        \
       when it acts. */                                                                            \
    X(rx_compacted)                                                                                \
    X(rx_compacted_bytes)                                                                          \
    X(rx_compact_failed)                                                                           \
    X(rx_compact_live) /* gauge: compact copies alive */                                           \
    X(rx_ooseq_dropped)                                                                            \
    X(rx_ooseq_dropped_bytes)                                                                      \
    X(rx_unread_refused)                                                                           \
    X(rx_sweeps)                                                                                   \
    X(rx_demux_walks)    /* walks of tcp_active_pcbs before a batch (stack_driver_poll) */         \
    X(rx_demux_moved)    /* pcbs moved to the list's front before their batch */                   \
    X(rx_demux_hinted)   /* of which, found by the index's predecessor hint, without a walk */     \
    X(rx_demux_unknown)  /* segments of no connection: lwIP skipped to the listeners (rx_input) */ \
    X(rx_hole_fill_acks) /* segments that filled a hole, ACKed at once, not delayed (rx_input) */  \
    X(rx_timewait_reused) /* SYNs that ended a TIME_WAIT on their tuple (rx_input, RFC 6191) */    \
    X(rx_wnd_lossy)       /* connections whose first hole capped their window (--rcv-wnd) */       \
    X(rx_wnd_widened)     /* connections given their whole --rcv-wnd, lossless so far */           \
    X(rx_moderated)       /* polls followed by a wait for a batch (stack_driver_moderation_us) */  \
    X(polls)                                                                                       \
    X(doorbell_writes)   /* doorbells that woke a sleeping engine: an eventfd write each */        \
    X(lwip_chksum_fast)  /* 1: lwIP's checksums run stack/stack_chksum.c's (stack_chksum.h) */     \
    X(tx_csum_offloaded) /* DATA descriptors posted with NIC_TXF_CSUM (checksum offload) */        \
    X(rx_csum_trusted)   /* NIC-verified segments lwIP did not checksum again */

#define STACK_DRIVER_CTR_FIELD(name) uint64_t name;
struct stack_driver_counters {
    STACK_DRIVER_COUNTERS(STACK_DRIVER_CTR_FIELD)
};

/* Receive memory per connection (docs/design.md §7). RX buffers are
   shared by every connection, and lwIP keeps a whole buffer for each pbuf it
   holds, even of one byte: out of order (this lwIP build has no limit), and
   as unread input. So:
   - a connection may pin `conn_bufs` buffers; beyond that (and beyond a
     share that shrinks as the pool runs low) its held pbufs are copied into
     compact memory of their own length, mark and view included, freeing the
     buffers (rx_compacted);
   - it may hold `ooseq_segs` out-of-order segments; beyond, the highest are
     dropped (rx_ooseq_dropped; the peer sends them again);
   - it may queue `unread_pbufs` pbufs of unread input; beyond, the
     tcp_recv callback refuses new data (rx_unread_refused: lwIP keeps it and
     drops further segments until it is taken). Unread bytes are bounded by
     the TCP window anyway. */
struct stack_rx_limits {
    uint32_t conn_bufs;
    uint32_t ooseq_segs;
    uint32_t unread_pbufs;
    uint32_t sweep_held; /* held buffers above which poll sweeps lwIP's out-of-order queues */
};
#define STACK_RX_CONN_BUFS    64u
#define STACK_RX_OOSEQ_SEGS   256u
#define STACK_RX_UNREAD_PBUFS 1024u
#define STACK_RX_SWEEP_HELD   256u

#define STACK_TX_BUSY (-2) /* tx_prepare: no ring room now, try later */

/* Hooks the TLS offload installs (issue 3/4); NULL members = no offload. */
struct stack_offload_ops {
    /* Called for every outgoing IPv4 packet before it is posted. May post
       control descriptors first (stack_driver_post_ctrl) and returns the
       flow id and flags for the data descriptor (0 = plain). It may replace
       *p by a packet it built (one reference, passed to the driver), then it
       frees the driver's reference to the old one. STACK_TX_BUSY: the ring
       lacks room for the descriptors the packet needs, and nothing was
       posted or replaced: the driver refuses it as a full ring (ERR_MEM),
       so TCP keeps it and sends it again. Another negative return drops
       the packet (counted by the hook). */
    int (*tx_prepare)(void *ctx, struct pbuf **p, uint32_t *flow_id, uint8_t *flags);
    /* A TX completion carried a tag report. */
    void (*tx_tag_report)(void *ctx, const struct nic_cqe *cqe);
    /* The NIC failed an offloaded descriptor of cqe->flow_id (its state for
       the flow is lost until the next resync). */
    void (*tx_error)(void *ctx, const struct nic_cqe *cqe);
    /* A signalled control descriptor completed (e.g. a context delete: its
       flow id may be reused now, no older completion of it is pending). */
    void (*tx_ctrl_done)(void *ctx, const struct nic_cqe *cqe);
    /* TX ring slots were reclaimed: control descriptors held back for lack
       of space (context deletes) can be posted now. Not re-entered. */
    void (*tx_ring_space)(void *ctx);
    /* An RX completion carried a resync request for flow_id at tcp seq. */
    void (*rx_resync_request)(void *ctx, uint32_t flow_id, uint32_t seq);
    void *ctx;
};

struct stack_driver;

struct stack_driver *stack_driver_create(struct nic_dev *dev, uint32_t mtu);
void stack_driver_destroy(struct stack_driver *drv);

struct netif *stack_driver_netif(struct stack_driver *drv);
/* netif init function for netif_add(); state must be the driver. */
err_t stack_driver_netif_init(struct netif *netif);

/* Post RX buffers until the ring is full. */
void stack_driver_refill(struct stack_driver *drv);
/* Process completions (RX packets go up into lwIP). Returns work done. */
unsigned stack_driver_poll(struct stack_driver *drv, unsigned budget);
/* True if the NIC produced something poll() would consume. Lock not needed. */
bool stack_driver_pending(struct stack_driver *drv);
/* Microseconds the poller should wait before the next poll so that packets
   gather into a batch (0: poll at once); counted in rx_moderated. Core lock
   held. */
unsigned stack_driver_moderation_us(struct stack_driver *drv);

/* Post one control descriptor (context, progress, dump, resync response).
   Returns 0, or -1 if the TX ring is full (counted). hold (may be NULL)
   stays referenced until the NIC has read the descriptor; the hold of a
   NIC_TX_STATIC_CTX carries a key and is wiped then (also at destroy). */
int stack_driver_post_ctrl(struct stack_driver *drv, const struct nic_tx_desc *d,
                           struct pbuf *hold);
/* Free TX ring slots (after reclaiming what the NIC finished). A hook that
   posts control descriptors checks first that they and the data fit. */
uint32_t stack_driver_tx_space(struct stack_driver *drv);
/* TSO (call before netif_add): TCP segments up to max_len bytes (an IPv4
   packet, at most 65535) go to the NIC whole with the wire MSS in the
   descriptor, and the NIC cuts them (nic_abi.h, docs/design.md §4). The
   netif's MTU becomes max_len so lwIP neither fragments them nor announces
   a larger MSS (it announces min(TCP_MSS, MTU - 40)). Returns the largest
   usable length, capped so that the NIC's completion room for one
   descriptor fits its TX completion queue; 0 = TSO off. */
uint32_t stack_driver_set_tso(struct stack_driver *drv, uint32_t max_len);
uint32_t stack_driver_tso_max(const struct stack_driver *drv);
/* LRO (call before the first refill): RX buffers of size bytes (at least the
   MTU, at most 65472) instead of the MTU, so the NIC can merge packets of a
   flow into one (nic_dev_cfg.lro). Returns the size in use. */
uint32_t stack_driver_set_rx_buf_size(struct stack_driver *drv, uint32_t size);
/* The heap bytes one RX pool buffer takes (header and data): the pool holds
   counters.rx_bufs_allocated of them until the driver is freed. */
uint32_t stack_driver_rx_buf_bytes(const struct stack_driver *drv);
void stack_driver_set_offload(struct stack_driver *drv, const struct stack_offload_ops *ops);

/* The view of a received pbuf that carries STACK_PBUF_FLAG_DECRYPTED (the
   driver's own RX buffer, possibly trimmed by lwIP, or its compact copy).
   False if unmarked. */
bool stack_rx_pbuf_view(const struct pbuf *p, struct stack_rx_view *out);

/* Replace the defaults (a zero member keeps its default). */
void stack_driver_set_rx_limits(struct stack_driver *drv, const struct stack_rx_limits *l);

/* --- Receive memory, for the holders of received pbufs (tls/) ---
   These work on any pbuf: those not from a driver are left alone. */

/* True if p is a pbuf of an RX buffer (zero copy). */
bool stack_rx_pbuf_pinned(const struct pbuf *p);
/* RX buffers one connection may pin now, by the driver that received p:
   conn_bufs, less when the pool runs low (0 when it is almost empty);
   UINT32_MAX if p is not from an RX buffer. */
uint32_t stack_rx_share(const struct pbuf *p);
/* Copy every pinned pbuf of the chain p (the caller's one reference on its
   head) into compact memory: returns the new head (p itself if nothing was
   pinned or memory ran out, counted in rx_compact_failed). Lengths, marks
   and views are kept; *unpinned (may be NULL) gets the buffers freed. */
struct pbuf *stack_rx_compact_chain(struct pbuf *p, uint32_t *unpinned);
/* Same limits for the caller's queue: limits of the driver that received p
   (NULL if p is not from an RX buffer). */
const struct stack_rx_limits *stack_rx_limits_of(const struct pbuf *p);
/* Count a refusal of new input by an unread-input limit. */
void stack_rx_note_refused(const struct pbuf *p);

void stack_driver_get_counters(const struct stack_driver *drv, struct stack_driver_counters *out);

/* --- receive window beyond lwIP's TCP_WND (docs/design.md §7) ---
   lwIP's tcp_recved() caps a connection's receive window at TCP_WND (65535
   in this build) although the build negotiates window scaling (shift
   TCP_RCV_SCALE = 1, so up to 131070 bytes can be announced). The window is
   what bounds an upload: one window in flight per round trip. */
struct tcp_pcb;

/* The receive window new connections get (bytes, 65535..131070; 65535 =
   lwIP's own behaviour). Process-wide; set before connections are accepted.
   Returns the value in effect. */
uint32_t stack_tcp_set_rcv_wnd(uint32_t bytes);
uint32_t stack_tcp_rcv_wnd(void);
/* At accept: widen pcb's window to stack_tcp_rcv_wnd() when the peer agreed
   to window scaling (TF_WND_SCALE); otherwise leave lwIP's. */
void stack_tcp_wnd_open(struct tcp_pcb *pcb);
/* tcp_recved() without lwIP's TCP_WND cap: the window grows back to what
   stack_tcp_wnd_open gave it, and a window update goes out as lwIP's would
   (at TCP_WND_UPDATE_THRESHOLD of inflation). While pcb queues segments
   out of order (a hole), it grows back only to lwIP's TCP_WND and the rest
   is withheld until a call finds no hole (docs/design.md §5). Core lock
   held. */
void stack_tcp_recved(struct tcp_pcb *pcb, uint16_t len);
/* Bytes of pcb's window stack_tcp_recved withholds now. Core lock held. */
uint32_t stack_tcp_wnd_held(const struct tcp_pcb *pcb);

#endif
