/*
 * nic_flow.h - the NIC's flow context table (device memory). A flow id is
 * slot + 1; 0 means "no flow". Contexts are installed and removed only by
 * control descriptors; the RX path also looks flows up by 4-tuple.
 */
#ifndef ANIC_NIC_FLOW_H
#define ANIC_NIC_FLOW_H

#include "nic_abi.h"

#include <stdbool.h>
#include <stdint.h>

struct nic_tls_tx_flow;
struct nic_tls_rx_flow;

struct nic_flow {
    bool used;
    struct nic_tls_static_ctx st;
    struct nic_tls_tx_flow *tx; /* direction TX: record walker + cipher state */
    struct nic_tls_rx_flow *rx; /* direction RX */
};

struct nic_flow_table {
    uint32_t max;
    struct nic_flow *slots;
};

/* Free every flow's cipher state (device teardown). */
void nic_flow_table_free_all(struct nic_flow_table *t);
struct nic_flow *nic_flow_get(struct nic_flow_table *t, uint32_t flow_id);
/* Find an RX flow by the packet's 4-tuple (network byte order). */
struct nic_flow *nic_flow_lookup_rx(struct nic_flow_table *t, uint32_t saddr, uint32_t daddr,
                                    uint16_t sport, uint16_t dport);

#endif
