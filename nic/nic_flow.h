/*
 * nic_flow.h - the NIC's flow context table (device memory). A flow id is
 * slot + 1; 0 means "no flow". Contexts are installed and removed only by
 * control descriptors; the RX path also looks flows up by 4-tuple. The table
 * holds 1..65536 slots; the RX hash has one bucket per four slots.
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
    uint32_t hash_next;           /* next RX flow id in the same bucket, 0 = end */
    struct nic_tls_static_ctx st; /* key wiped once the cipher contexts hold it */
    struct nic_tls_tx_flow *tx;   /* direction TX: record walker + cipher state */
    struct nic_tls_rx_flow *rx;   /* direction RX */
    /* Context cache (nic_tls.c, docs/design.md §10) */
    uint8_t *host;     /* the context's host block (NULL: none, cache off) */
    bool resident;     /* on the NIC now; else only in its host block */
    bool ctx_bad;      /* a fetch found the block changed: the context is unusable */
    uint32_t lru_prev; /* flow ids, 0 = end; most recently used first */
    uint32_t lru_next;
    uint32_t writebacks; /* evictions of this context, stamped in the block */
    /* TCP tracking of an RX flow, kept in the flow table (resident, as a
       NIC's steering entry) so that the host's ACKs, one per segment it
       sends, need no context access: the right edge of the receive window
       the host last announced (install, then every outgoing ACK). */
    bool rx_wnd_known;
    uint8_t rx_wnd_scale;
    uint32_t rx_wnd_edge;
};

#define NIC_FLOW_MAX 65536u

/* Frees a flow's per-direction state (tx, rx); the slot itself is wiped by
   the table. Supplied by the owner of that state (the TLS block). */
typedef void nic_flow_release_fn(struct nic_flow *flow);

struct nic_flow_table {
    uint32_t max;
    struct nic_flow *slots;
    nic_flow_release_fn *release;
    uint32_t n_buckets; /* a power of two */
    uint32_t *rx_hash;  /* RX flows by 4-tuple: first flow id */
};

/* A hint: start loading flow_id's slot (none if out of range). */
static inline void nic_flow_prefetch(const struct nic_flow_table *t, uint32_t flow_id)
{
    if (flow_id && flow_id <= t->max) {
        __builtin_prefetch(&t->slots[flow_id - 1]);
        __builtin_prefetch((const uint8_t *)&t->slots[flow_id - 1] + 64);
    }
}

/* A table of max_flows slots (1..NIC_FLOW_MAX, clamped). NULL when out of
   memory. */
struct nic_flow_table *nic_flow_table_new(uint32_t max_flows, nic_flow_release_fn *release);
/* Release every flow, wipe every slot, free the table (device teardown). */
void nic_flow_table_free(struct nic_flow_table *t);
/* The slot of flow_id if the id is in range and the slot is unused. */
struct nic_flow *nic_flow_slot_unused(struct nic_flow_table *t, uint32_t flow_id);
/* Release the flow and wipe its slot (it holds key material). */
void nic_flow_wipe(struct nic_flow_table *t, struct nic_flow *flow);

void nic_flow_rx_hash_add(struct nic_flow_table *t, uint32_t flow_id);
void nic_flow_rx_hash_del(struct nic_flow_table *t, uint32_t flow_id);

struct nic_flow *nic_flow_get(struct nic_flow_table *t, uint32_t flow_id);
/* Find an RX flow by the packet's 4-tuple (network byte order). */
struct nic_flow *nic_flow_lookup_rx(struct nic_flow_table *t, uint32_t saddr, uint32_t daddr,
                                    uint16_t sport, uint16_t dport);

#endif
