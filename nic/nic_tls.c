/*
 * nic_tls.c - flow context control descriptors (install, delete, progress,
 * dump, resync response) and the RX entry point.
 */
#include "nic_tls.h"
#include "nic_csum.h"

#include <string.h>

static int install_ctx(struct nic_dev *dev, const struct nic_tx_desc *d)
{
    struct nic_flow_table *t = dev->flows;
    if (d->flow_id == 0 || d->flow_id > t->max || !d->addr) {
        dev->c.flow_table_full++;
        return NIC_TX_ERR_NO_CTX;
    }
    struct nic_flow *f = &t->slots[d->flow_id - 1];
    if (f->used) {
        dev->c.flow_table_full++;
        return NIC_TX_ERR_NO_CTX;
    }
    memset(f, 0, sizeof(*f));
    memcpy(&f->st, (const void *)(uintptr_t)d->addr, sizeof(f->st)); /* DMA read */
    if (f->st.cipher != NIC_CIPHER_AES_128_GCM && f->st.cipher != NIC_CIPHER_AES_256_GCM)
        return NIC_TX_ERR_BAD_DESC;
    if (f->st.direction == NIC_CTX_TX) {
        int r = nic_tls_tx_install(dev, f);
        if (r != NIC_TX_OK)
            return r;
        dev->c.tx_tls_ctx++;
    } else if (f->st.direction == NIC_CTX_RX) {
        int r = nic_tls_rx_install(dev, f, d->flow_id);
        if (r != NIC_TX_OK)
            return r;
        nic_flow_rx_hash_add(t, d->flow_id);
        dev->c.rx_tls_ctx++;
    } else {
        return NIC_TX_ERR_BAD_DESC;
    }
    f->used = true;
    return NIC_TX_OK;
}

static int delete_ctx(struct nic_dev *dev, const struct nic_tx_desc *d)
{
    struct nic_flow *f = nic_flow_get(dev->flows, d->flow_id);
    if (!f) {
        dev->c.tx_tls_no_ctx++;
        return NIC_TX_ERR_NO_CTX;
    }
    if (f->tx) {
        nic_tls_tx_free(f->tx);
        dev->c.tx_tls_del++;
    }
    if (f->rx) {
        nic_flow_rx_hash_del(dev->flows, d->flow_id);
        nic_tls_rx_free(f->rx);
        dev->c.rx_tls_del++;
    }
    memset(f, 0, sizeof(*f));
    return NIC_TX_OK;
}

int nic_tls_ctrl(struct nic_dev *dev, const struct nic_tx_desc *d)
{
    if (d->kind == NIC_TX_STATIC_CTX)
        return install_ctx(dev, d);
    if (d->kind == NIC_TX_DEL_CTX)
        return delete_ctx(dev, d);
    struct nic_flow *f = nic_flow_get(dev->flows, d->flow_id);
    if (!f) {
        dev->c.tx_tls_no_ctx++;
        return NIC_TX_ERR_NO_CTX;
    }
    switch (d->kind) {
    case NIC_TX_PROGRESS:
        return f->tx ? nic_tls_tx_progress(dev, f, d) : NIC_TX_ERR_NO_CTX;
    case NIC_TX_DUMP:
        return f->tx ? nic_tls_tx_dump(dev, f, d) : NIC_TX_ERR_NO_CTX;
    case NIC_RX_RESYNC_RESP:
        return f->rx ? nic_tls_rx_resync_response(dev, f, d) : NIC_TX_ERR_NO_CTX;
    case NIC_RX_PROGRESS:
        return f->rx ? nic_tls_rx_hint(dev, f, d) : NIC_TX_ERR_NO_CTX;
    default:
        return NIC_TX_ERR_BAD_DESC;
    }
}

void nic_flow_table_free_all(struct nic_flow_table *t)
{
    for (uint32_t i = 0; i < t->max; i++) {
        if (t->slots[i].tx)
            nic_tls_tx_free(t->slots[i].tx);
        if (t->slots[i].rx)
            nic_tls_rx_free(t->slots[i].rx);
    }
}

void nic_tls_rx_packet(struct nic_dev *dev, uint8_t *pkt, size_t len, struct nic_cqe *cqe)
{
    struct nic_tcp_view v;
    if (!nic_parse_tcp(pkt, len, &v))
        return;
    if (!nic_tcp_csum_ok(pkt, &v)) {
        dev->c.rx_csum_bad++;
        return;
    }
    cqe->flags |= NIC_RXF_CSUM_OK;
    if (v.payload_len == 0)
        return;
    /* Received packets run from the peer (source) to our host (destination). */
    struct nic_flow *f = nic_flow_lookup_rx(dev->flows, v.saddr, v.daddr, v.sport, v.dport);
    if (f && f->rx)
        nic_tls_rx_flow_packet(dev, f, pkt, &v, cqe);
}
