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
   (0 while the offset is inside the 5-byte header). The host trusts the
   mark only where this agrees with its own record state. */
struct stack_rx_view {
    uint32_t seq;
    uint64_t record_sn;
    uint32_t rec_off;
    uint32_t rec_len;
};

struct stack_driver_counters {
    uint64_t tx_packets, tx_bytes, tx_copied, tx_ring_full, tx_err_status, tx_completions;
    uint64_t rx_packets, rx_bytes, rx_input_drops, rx_csum_ok, rx_decrypted_packets,
        rx_resync_requests, rx_pool_exhausted, rx_bufs_allocated, irq_waits, polls;
};

/* Hooks the TLS offload installs (issue 3/4); NULL members = no offload. */
struct stack_offload_ops {
    /* Called for every outgoing IPv4 packet before it is posted. May post
       control descriptors first (stack_driver_post_ctrl) and returns the
       flow id and flags for the data descriptor (0 = plain). It may replace
       *p by a packet it built (one reference, passed to the driver), then it
       frees the driver's reference to the old one. A negative return drops
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
void stack_driver_set_offload(struct stack_driver *drv, const struct stack_offload_ops *ops);

/* The view of a received pbuf that carries STACK_PBUF_FLAG_DECRYPTED (the
   driver's own RX buffer, possibly trimmed by lwIP). False if unmarked. */
bool stack_rx_pbuf_view(const struct pbuf *p, struct stack_rx_view *out);

void stack_driver_get_counters(const struct stack_driver *drv, struct stack_driver_counters *out);

#endif
