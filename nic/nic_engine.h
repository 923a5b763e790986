/*
 * nic_engine.h - device-internal state of the simulated NIC. Only nic/ files
 * include this; the host sees nic_dev.h and nic_abi.h.
 */
#ifndef ANIC_NIC_ENGINE_H
#define ANIC_NIC_ENGINE_H

#include "nic_dev.h"
#include "nic_flow.h"
#include "nic_tls.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

struct nic_link;

struct nic_dev {
    struct nic_dev_cfg cfg;
    struct nic_queues queues;
    struct nic_link *link;
    struct nic_flow_table *flows; /* the engine looks flows up; tls installs/deletes */
    struct nic_tls_ctx tls;       /* the TLS block's narrow view of this device */
    uint8_t *pkt;                 /* device memory for one packet being transmitted */
    uint8_t *tso_pkt;             /* one wire packet cut from it by TSO */
    uint64_t tx_copied;           /* TX bytes memcpy'd here; + the link's = tx_bytes_copied */

    /* LRO: the host buffer being filled with in-order packets of one flow */
    struct {
        bool open;
        uint8_t *buf;
        uint32_t cap;
        size_t len;        /* bytes of the merged packet so far */
        size_t hl;         /* its IP + TCP header length */
        uint32_t next_seq; /* seq the next packet must start at */
        unsigned pkts;
        bool closed;        /* PSH seen: flush before anything else */
        struct nic_cqe cqe; /* the first packet's completion: flags, flow, record view */
        /* The flow last seen and where its stream ended: after a packet at
           another seq (a hole, a retransmission) the next few go up alone. */
        uint8_t last_tuple[12];
        uint32_t last_end;
        bool last_valid;
        unsigned singles;
    } lro;

    /* engine-private ring state */
    uint32_t tx_cons, rx_cons, tx_cq_prod, rx_cq_prod;
    bool work_for_host; /* this round produced something the host should see */
    /* Interrupt moderation (cfg.irq_coalesce_ns): completions the host was
       not interrupted for yet, since when, and the last interrupt. */
    bool unsignalled;
    uint64_t unsignalled_ns, last_irq_ns;
    uint64_t bytes_since_irq;    /* TX descriptor and RX packet bytes since the last interrupt */
    uint64_t tx_bytes_since_irq; /* of which TX descriptor bytes */
    bool rx_paused;              /* cfg.rx_pause and the host RX ring was empty: the wire waits */

    /* doorbell / interrupt */
    int doorbell_fd, irq_fd;
    atomic_int engine_sleeping;
    atomic_int irq_armed;

    /* thread */
    pthread_t thread;
    bool running;
    atomic_int stop;

    /* counters: c is engine-private; the snapshot is what readers see */
    struct nic_counters c;
    pthread_mutex_t stats_lock;
    struct nic_counters c_snapshot;
    struct nic_fault_stats fault_tx_snapshot, fault_rx_snapshot;
    uint64_t last_snapshot_ns;
};

/* Post a completion on the TX (rx = false) or RX completion queue. */
void nic_engine_post_cqe(struct nic_dev *dev, bool rx, const struct nic_cqe *e);

#endif
