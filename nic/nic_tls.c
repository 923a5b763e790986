/*
 * nic_tls.c - TLS offload engine hooks. The foundation NIC verifies RX
 * checksums and accepts flow contexts, but performs no record crypto yet:
 * offloaded TX data is refused (NIC_TX_ERR_NO_CTX), so the host never
 * believes bytes were encrypted that were not.
 */
#include "nic_csum.h"
#include "nic_engine.h"
#include "nic_flow.h"

#include <string.h>

int nic_tls_ctrl(struct nic_dev *dev, const struct nic_tx_desc *d)
{
    (void)dev;
    (void)d;
    return NIC_TX_ERR_NO_CTX;
}

int nic_tls_tx_packet(struct nic_dev *dev, uint32_t flow_id, uint8_t *pkt, size_t len)
{
    (void)pkt;
    (void)len;
    (void)flow_id;
    dev->c.tx_tls_drop_no_sync_data += 0;
    return NIC_TX_ERR_NO_CTX;
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
}
