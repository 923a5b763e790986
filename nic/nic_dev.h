/*
 * nic_dev.h - the simulated NIC as a device: create it, learn where its
 * queues are (the "BAR"), ring doorbells, wait for interrupts, read counters.
 * Everything the host does to the device after create goes through the queues
 * of nic_abi.h; these functions are only the bus.
 */
#ifndef ANIC_NIC_DEV_H
#define ANIC_NIC_DEV_H

#include "nic_abi.h"
#include "nic_fault.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nic_dev;

/* Defaults of the memory model (docs/design.md §10). */
#define NIC_SCRATCH_DEFAULT  (16384u * 1024u) /* shared scratch + RX reorder pool */
#define NIC_FETCH_NS_DEFAULT 1000u            /* one context fetch (PCIe round trip) */

/* Device configuration (set at create, fixed afterwards). */
struct nic_dev_cfg {
    int tun_fd;   /* open, non-blocking TUN fd (IFF_TUN|IFF_NO_PI); NIC owns it */
    bool tun_gso; /* tun_fd has IFF_VNET_HDR + TSO4 offloads (nic_tun_open gso) */
    bool lro;     /* merge in-order TCP packets of a flow into one RX buffer */
    /* The host trusts NIC_RXF_CSUM_OK (checksum offload): a packet the NIC
       merged (LRO) or decrypted keeps its TCP checksum field as it was, not
       recomputed over the new bytes (rx_csum_left); the IPv4 header's is. */
    bool rx_csum_trusted;
    bool rx_pause;             /* no host RX buffer: stop reading the wire, not drop (rx_pauses) */
    uint32_t tx_ring_size;     /* power of two */
    uint32_t rx_ring_size;     /* power of two */
    uint32_t mtu;              /* largest packet on the wire */
    uint32_t max_flows;        /* flow context table size */
    uint32_t ctx_cache;        /* contexts resident on the NIC, LRU (0 = all) */
    uint32_t fetch_ns;         /* latency of one context fetch from host memory */
    uint64_t scratch_bytes;    /* shared scratch + RX reorder pool (0 = default) */
    uint32_t rx_reorder_bytes; /* per RX flow: ciphertext held across holes (0 = none) */
    struct nic_fault_cfg fault_tx; /* NIC -> kernel */
    struct nic_fault_cfg fault_rx; /* kernel -> NIC */
    const char *pcap_path;         /* NULL = no capture */
    int thread_nice;               /* engine thread's nice relative to the process (0 = same) */
    /* Adaptive interrupt moderation (0 = an interrupt for every round with
       completions). During a bulk transfer (the last interrupt less than 4x
       this ago and 64 KiB moved since), completions wait up to this long
       for more, also across the engine's sleep; otherwise, when a sending
       host's TX ring ran empty (it waits for them), and whenever a queue
       fills, they interrupt at once (nic_engine.c, irq_now). */
    uint32_t irq_coalesce_ns;
};

/* The queue memory shared with the driver. Host memory, as if mapped. */
struct nic_queues {
    struct nic_tx_desc *tx_ring;
    struct nic_rx_desc *rx_ring;
    struct nic_cqe *tx_cq;
    struct nic_cqe *rx_cq;
    uint32_t tx_size, rx_size, tx_cq_size, rx_cq_size;
    struct nic_ring_idx *tx_idx; /* prod: driver, cons: NIC */
    struct nic_ring_idx *rx_idx;
    struct nic_ring_idx *tx_cq_idx; /* prod: NIC (informational), cons: driver */
    struct nic_ring_idx *rx_cq_idx;
};

/* Device counters, written by the NIC thread only, read as a snapshot
   (nic_dev_get_counters). One list per /stats section (docs/design.md §9), in
   /stats order: `nic` (rings, queues, interrupts), `nic_tls` (the TLS
   offload, mlx5's names; rx_tls_skip_*: segments of an RX flow TCP will not
   accept as stream data, never marked), `wire` (after the fault stage on TX,
   before it on RX). */
#define NIC_COUNTERS_NIC(X)                                                                        \
    X(tx_desc)                                                                                     \
    X(tx_bad_desc)                                                                                 \
    X(tx_ring_empty_polls)                                                                         \
    X(tx_tso_segments) /* host segments longer than the MTU cut by TSO */                          \
    X(tx_tso_packets)  /* wire packets those segments became */                                    \
    X(tx_tso_direct)   /* of those segments: written as one GSO super-packet, not cut */           \
    X(tx_csum_filled)  /* NIC_TXF_CSUM packets whose TCP checksum the NIC computed */              \
    X(rx_csum_left)    /* merged or decrypted packets whose TCP checksum was not recomputed */     \
    X(tx_bytes_copied) /* TX bytes memcpy'd: headers, TSO cut, fault stage, GSO merge */           \
    X(rx_lro_merged)   /* wire packets appended to the packet before them (LRO) */                 \
    X(rx_lro_packets)  /* completions that hold more than one wire packet */                       \
    X(rx_lro_no_room)  /* packets dropped: the buffer they had to move to was too small */         \
    X(rx_gro_direct) /* GSO super-packets from TUN taken whole: one buffer, one walk, no split */  \
    X(rx_packets)                                                                                  \
    X(rx_bytes)                                                                                    \
    X(rx_no_buffer)                                                                                \
    X(rx_pauses)                                                                                   \
    X(rx_buf_too_small)                                                                            \
    X(rx_csum_bad)                                                                                 \
    X(rx_malformed)                                                                                \
    X(tx_cq_overflow)                                                                              \
    X(rx_cq_overflow)                                                                              \
    X(tx_cq_backpressure)                                                                          \
    X(doorbells)                                                                                   \
    X(irqs)                                                                                        \
    X(irqs_coalesced)   /* rounds whose completions waited (irq_coalesce_ns; host armed) */        \
    X(irqs_unmoderated) /* of irqs: moderation off */                                              \
    X(irqs_fresh)       /* of irqs: not bulk (quiet before, < 64 KiB since, wire paused) */        \
    X(irqs_tx_dry)      /* of irqs: a sender's TX ring ran empty */                                \
    X(irqs_queue)       /* of irqs: a ring or completion queue filling */                          \
    X(irqs_due)         /* of irqs: held for irq_coalesce_ns */                                    \
    X(engine_sleeps)                                                                               \
    X(flow_table_full)
#define NIC_COUNTERS_TLS(X)                                                                        \
    X(tx_tls_encrypted_packets)                                                                    \
    X(tx_tls_encrypted_bytes)                                                                      \
    X(tx_tls_ooo)                                                                                  \
    X(tx_tls_dump_packets)                                                                         \
    X(tx_tls_dump_bytes)                                                                           \
    X(tx_tls_resync_bytes)                                                                         \
    X(tx_tls_ctx)                                                                                  \
    X(tx_tls_del)                                                                                  \
    X(tx_tls_oneshot)      /* tagcache resyncs (keystream seek, no dump) */                        \
    X(tx_tls_tag_reports)  /* record tags reported to the host */                                  \
    X(tx_tls_seq_mismatch) /* not at the expected seq, or state lost to a bad record: dropped */   \
    X(tx_tls_bad_record)   /* malformed record header in an offloaded stream */                    \
    X(tx_tls_no_ctx)       /* descriptor named an unknown flow */                                  \
    X(rx_tls_decrypted_packets)                                                                    \
    X(rx_tls_decrypted_bytes)                                                                      \
    X(rx_tls_resync_req_pkt)                                                                       \
    X(rx_tls_resync_req_start)                                                                     \
    X(rx_tls_resync_req_end)                                                                       \
    X(rx_tls_resync_req_skip)                                                                      \
    X(rx_tls_resync_res_ok)                                                                        \
    X(rx_tls_resync_res_skip)                                                                      \
    X(rx_tls_err)                                                                                  \
    X(rx_tls_ctx)                                                                                  \
    X(rx_tls_del)                                                                                  \
    X(rx_tls_lost)               /* lost track of the record stream */                             \
    X(rx_tls_jump)               /* skipped to the known next record start */                      \
    X(rx_tls_bad_record)         /* implausible header while in sync */                            \
    X(rx_tls_reorder_buffered)   /* ahead-of-hole segments held */                                 \
    X(rx_tls_reorder_drained)    /* held segments fed through GCM once the hole filled */          \
    X(rx_tls_reorder_dup)        /* ahead segment already held: delivered untouched */             \
    X(rx_tls_ahead_decrypted)    /* ahead segments decrypted by keystream and marked */            \
    X(rx_tls_skip_syn)           /* SYN set (no data segment of an open connection has it) */      \
    X(rx_tls_skip_rst)           /* RST set */                                                     \
    X(rx_tls_skip_frag)          /* IPv4 fragments of TCP: reassembled by the host, a hole here */ \
    X(rx_tls_skip_oow)           /* data beyond the receive window the host last announced */      \
    X(rx_tls_reorder_pool_full)  /* ahead segments not held: the device's pool was full */         \
    X(rx_tls_reorder_pool_bytes) /* ciphertext held in the pool now (gauge) */                     \
    X(tls_ctx_cache_hit)         /* context accesses that found it resident */                     \
    X(tls_ctx_cache_miss)        /* accesses that fetched it from its host block */                \
    X(tls_ctx_evict)             /* resident contexts written back to make room */                 \
    X(tls_ctx_fetch_bytes)       /* host-block bytes read by fetches */                            \
    X(tls_ctx_writeback_bytes)   /* host-block bytes written by evictions */                       \
    X(tls_ctx_fetch_wait_ns)     /* fetch latency charged (misses x --nic-fetch-ns) */             \
    X(tls_ctx_fetch_bad)         /* fetched block not as written back: context disabled */         \
    X(tls_ctx_resident)          /* contexts resident now (gauge) */                               \
    X(tls_ctx_no_host_mem)       /* installs refused: no host block with a context cache */
#define NIC_COUNTERS_WIRE(X)                                                                       \
    X(tx_packets)                                                                                  \
    X(tx_bytes)                                                                                    \
    X(tun_write_errors)                                                                            \
    X(rx_wire_packets)                                                                             \
    X(rx_wire_bytes)                                                                               \
    X(tun_read_errors)                                                                             \
    X(tun_reads_empty)       /* TUN reads that found nothing queued (EAGAIN): polling's cost */    \
    X(tun_gso_writes)        /* TUN writes of merged in-order runs (GSO super-packets) */          \
    X(tun_gso_write_packets) /* wire packets in them */                                            \
    X(tun_tso_merged)        /* TSO segments appended to the previous one's super-packet */        \
    X(tun_gso_reads)         /* GSO super-packets read from TUN and split */                       \
    X(tun_gso_read_packets)  /* wire packets they became */                                        \
    X(tun_gso_bad)           /* TUN reads dropped: not splittable, or a bad checksum request */

#define NIC_CTR_FIELD(name) uint64_t name;
struct nic_counters {
    NIC_COUNTERS_NIC(NIC_CTR_FIELD)
    NIC_COUNTERS_TLS(NIC_CTR_FIELD)
    NIC_COUNTERS_WIRE(NIC_CTR_FIELD)
};

struct nic_dev *nic_dev_create(const struct nic_dev_cfg *cfg, char *err, size_t errlen);
/* Changes the calling thread's nice by delta relative to the process's
   (delta < 0: more CPU; needs CAP_SYS_NICE). A refusal is reported on
   stderr and leaves the thread as it was. */
void nic_thread_nice(const char *who, int delta);

/* Start the engine thread ("nic-engine"). */
int nic_dev_start(struct nic_dev *dev);
/* Run one engine round in the calling thread instead of the engine thread
   (tests drive the device step by step; never while the thread runs).
   Returns the number of descriptors/packets handled. */
unsigned nic_dev_poll_once(struct nic_dev *dev);
/* Stop the engine thread; queues stay readable. */
void nic_dev_stop(struct nic_dev *dev);
/* Free everything, close the TUN fd and the pcap file. */
void nic_dev_destroy(struct nic_dev *dev);

const struct nic_queues *nic_dev_queues(struct nic_dev *dev);

/* Doorbell: the driver stored new producer indices; wake the engine if it
   sleeps. Cheap when the engine is awake (no syscall). One write per sleep:
   the first doorbell after the engine announced its sleep takes the flag and
   writes the eventfd; later ones find it clear, as the engine runs a round
   after every wake-up, which sees their indices too. Returns true if this
   call wrote (a system call). */
bool nic_dev_doorbell(struct nic_dev *dev);

/* Interrupts: the host arms, re-checks its CQs, then waits. The NIC fires
   (one eventfd write) only when armed, so a busy host costs no syscalls. */
void nic_dev_irq_arm(struct nic_dev *dev);
void nic_dev_irq_disarm(struct nic_dev *dev);
/* Block until an interrupt or timeout_ms (-1 = forever). Returns 1 if fired. */
int nic_dev_irq_wait(struct nic_dev *dev, int timeout_ms);
/* Fire the interrupt from outside (used to wake the host for shutdown). */
void nic_dev_irq_kick(struct nic_dev *dev);

void nic_dev_get_counters(const struct nic_dev *dev, struct nic_counters *out);
void nic_dev_get_fault_stats(const struct nic_dev *dev, struct nic_fault_stats *tx,
                             struct nic_fault_stats *rx);

#endif
