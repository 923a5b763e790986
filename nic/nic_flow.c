/* nic_flow.c - the flow context table: slots, RX lookup by 4-tuple, teardown. */
#include "nic_flow.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

struct nic_flow_table *nic_flow_table_new(uint32_t max_flows, nic_flow_release_fn *release)
{
    struct nic_flow_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->max = max_flows ? max_flows : 1;
    if (t->max > NIC_FLOW_MAX)
        t->max = NIC_FLOW_MAX;
    t->release = release;
    t->n_buckets = 64;
    while (t->n_buckets < t->max) /* about one RX flow per bucket */
        t->n_buckets *= 2;
    t->slots = calloc(t->max, sizeof(*t->slots));
    t->rx_hash = calloc(t->n_buckets, sizeof(*t->rx_hash));
    if (!t->slots || !t->rx_hash) {
        free(t->slots);
        free(t->rx_hash);
        free(t);
        return NULL;
    }
    return t;
}

/* Key material in device memory is wiped with OPENSSL_cleanse (a store the
   compiler may not drop). */
void nic_flow_wipe(struct nic_flow_table *t, struct nic_flow *flow)
{
    if (t->release)
        t->release(flow);
    OPENSSL_cleanse(flow, sizeof(*flow));
}

void nic_flow_table_free(struct nic_flow_table *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->max; i++)
        nic_flow_wipe(t, &t->slots[i]);
    free(t->slots);
    free(t->rx_hash);
    free(t);
}

struct nic_flow *nic_flow_get(struct nic_flow_table *t, uint32_t flow_id)
{
    if (flow_id == 0 || flow_id > t->max || !t->slots[flow_id - 1].used)
        return NULL;
    return &t->slots[flow_id - 1];
}

struct nic_flow *nic_flow_slot_unused(struct nic_flow_table *t, uint32_t flow_id)
{
    if (flow_id == 0 || flow_id > t->max || t->slots[flow_id - 1].used)
        return NULL;
    return &t->slots[flow_id - 1];
}

static unsigned tuple_hash(const struct nic_flow_table *t, uint32_t saddr, uint32_t daddr,
                           uint16_t sport, uint16_t dport)
{
    uint32_t h = saddr ^ daddr ^ ((uint32_t)sport << 16 | dport);
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    return h & (t->n_buckets - 1);
}

static unsigned flow_bucket(const struct nic_flow_table *t, const struct nic_flow *f)
{
    return tuple_hash(t, f->st.saddr, f->st.daddr, f->st.sport, f->st.dport);
}

void nic_flow_rx_hash_add(struct nic_flow_table *t, uint32_t flow_id)
{
    struct nic_flow *f = &t->slots[flow_id - 1];
    unsigned b = flow_bucket(t, f);
    f->hash_next = t->rx_hash[b];
    t->rx_hash[b] = flow_id;
}

void nic_flow_rx_hash_del(struct nic_flow_table *t, uint32_t flow_id)
{
    uint32_t *pp = &t->rx_hash[flow_bucket(t, &t->slots[flow_id - 1])];
    while (*pp && *pp != flow_id)
        pp = &t->slots[*pp - 1].hash_next;
    if (*pp)
        *pp = t->slots[flow_id - 1].hash_next;
}

struct nic_flow *nic_flow_lookup_rx(struct nic_flow_table *t, uint32_t saddr, uint32_t daddr,
                                    uint16_t sport, uint16_t dport)
{
    for (uint32_t id = t->rx_hash[tuple_hash(t, saddr, daddr, sport, dport)]; id;) {
        struct nic_flow *f = &t->slots[id - 1];
        if (f->used && f->st.saddr == saddr && f->st.daddr == daddr && f->st.sport == sport &&
            f->st.dport == dport)
            return f;
        id = f->hash_next;
    }
    return NULL;
}
