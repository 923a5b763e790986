/*
 * nic_engine.h - device-internal state of the simulated NIC. Only nic/ files
 * include this; the host sees nic_dev.h and nic_abi.h.
 */
#ifndef ANIC_NIC_ENGINE_H
#define ANIC_NIC_ENGINE_H

#include "nic_dev.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define NIC_MAX_PACKET 65535u

struct nic_link;
struct nic_flow_table;

struct nic_dev {
    struct nic_dev_cfg cfg;
    struct nic_queues queues;
    struct nic_link *link;
    struct nic_flow_table *flows;
    uint8_t *pkt; /* device memory for one packet being transmitted */

    /* engine-private ring state */
    uint32_t tx_cons, rx_cons, tx_cq_prod, rx_cq_prod;
    bool work_for_host; /* this round produced something the host should see */

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

void nic_engine_post_cqe(struct nic_dev *dev, bool rx, const struct nic_cqe *e);

/* --- TLS offload hooks (nic_tls_*.c) --- */
struct nic_flow_table *nic_flow_table_new(uint32_t max_flows);
void nic_flow_table_free(struct nic_flow_table *t);
/* Control descriptors (context install/delete, progress, dump, resync
   response). Returns an enum nic_tx_status. */
int nic_tls_ctrl(struct nic_dev *dev, const struct nic_tx_desc *d);
/* Build an offloaded TCP segment in device memory pkt from the host's
   packet, encrypting its TLS records on the way, and fix its checksum.
   Returns an enum nic_tx_status. */
int nic_tls_tx_packet(struct nic_dev *dev, uint32_t flow_id, const uint8_t *host, uint8_t *pkt,
                      size_t len);
/* Inspect a received packet (already in the host buffer): verify checksums,
   decrypt in-sequence records of known flows in place, set cqe flags. */
void nic_tls_rx_packet(struct nic_dev *dev, uint8_t *pkt, size_t len, struct nic_cqe *cqe);
/* Every transmitted packet: follow the host's announced receive window of
   RX flows (see nic_tls_rx_observe_ack). */
void nic_tls_tx_observe(struct nic_dev *dev, const uint8_t *pkt, size_t len);

#endif
