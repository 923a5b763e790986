/* nic_flow.c - flow context table and context control descriptors. */
#include "nic_flow.h"
#include "nic_engine.h"

#include <stdlib.h>
#include <string.h>

struct nic_flow_table *nic_flow_table_new(uint32_t max_flows)
{
    struct nic_flow_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->max = max_flows ? max_flows : 1;
    t->slots = calloc(t->max, sizeof(*t->slots));
    if (!t->slots) {
        free(t);
        return NULL;
    }
    return t;
}

void nic_flow_table_free(struct nic_flow_table *t)
{
    if (!t)
        return;
    nic_flow_table_free_all(t);
    free(t->slots);
    free(t);
}

struct nic_flow *nic_flow_get(struct nic_flow_table *t, uint32_t flow_id)
{
    if (flow_id == 0 || flow_id > t->max || !t->slots[flow_id - 1].used)
        return NULL;
    return &t->slots[flow_id - 1];
}

struct nic_flow *nic_flow_lookup_rx(struct nic_flow_table *t, uint32_t saddr, uint32_t daddr,
                                    uint16_t sport, uint16_t dport)
{
    for (uint32_t i = 0; i < t->max; i++) {
        struct nic_flow *f = &t->slots[i];
        if (f->used && f->st.direction == NIC_CTX_RX && f->st.saddr == saddr &&
            f->st.daddr == daddr && f->st.sport == sport && f->st.dport == dport)
            return f;
    }
    return NULL;
}
