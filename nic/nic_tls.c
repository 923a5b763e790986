/*
 * nic_tls.c - flow context control descriptors (install, delete, progress,
 * dump, resync response) and the RX entry point.
 */
#include "nic_tls.h"
#include "nic_csum.h"

#include <openssl/crypto.h>
#include <string.h>

int nic_tls_gcm_start(EVP_CIPHER_CTX *ctx, bool encrypt, const uint8_t salt[4],
                      const uint8_t hdr[NIC_TLS_PAYLOAD_OFF], uint64_t record_sn, uint32_t rec_len)
{
    uint8_t iv[12], aad[13];
    int outl;
    memcpy(iv, salt, 4);
    memcpy(iv + 4, hdr + NIC_TLS_HEADER_LEN, NIC_TLS_NONCE_LEN);
    uint32_t pt_len = rec_len - NIC_TLS_PAYLOAD_OFF - NIC_TLS_TAG_LEN;
    nic_put_be64(aad, record_sn);
    memcpy(aad + 8, hdr, 3); /* type, version */
    aad[11] = (uint8_t)(pt_len >> 8);
    aad[12] = (uint8_t)pt_len;
    int ok = encrypt ? EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) &&
                           EVP_EncryptUpdate(ctx, NULL, &outl, aad, sizeof(aad))
                     : EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, iv) &&
                           EVP_DecryptUpdate(ctx, NULL, &outl, aad, sizeof(aad));
    return ok ? 0 : -1;
}

int nic_tls_ctr_seek(EVP_CIPHER_CTX *ctx, const uint8_t salt[4],
                     const uint8_t explicit_nonce[NIC_TLS_NONCE_LEN], uint32_t off)
{
    uint8_t iv[16], skip[16] = {0};
    uint32_t ctr = 2 + off / 16; /* counter 1 encrypts the tag */
    int outl;
    memcpy(iv, salt, 4);
    memcpy(iv + 4, explicit_nonce, NIC_TLS_NONCE_LEN);
    iv[12] = (uint8_t)(ctr >> 24);
    iv[13] = (uint8_t)(ctr >> 16);
    iv[14] = (uint8_t)(ctr >> 8);
    iv[15] = (uint8_t)ctr;
    if (!EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv))
        return -1;
    if (off % 16 && !EVP_EncryptUpdate(ctx, skip, &outl, skip, (int)(off % 16)))
        return -1;
    return 0;
}

/* Key material in device memory is wiped with OPENSSL_cleanse (a store the
   compiler may not drop): a slot whose install failed, a deleted slot, and
   the raw key once the cipher contexts hold the key schedule. */
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
    int r = NIC_TX_ERR_BAD_DESC;
    if (f->st.cipher != NIC_CIPHER_AES_128_GCM && f->st.cipher != NIC_CIPHER_AES_256_GCM) {
        dev->c.tx_bad_desc++;
    } else if (f->st.direction == NIC_CTX_TX) {
        r = nic_tls_tx_install(dev, f);
        if (r == NIC_TX_OK)
            dev->c.tx_tls_ctx++;
    } else if (f->st.direction == NIC_CTX_RX) {
        r = nic_tls_rx_install(dev, f, d->flow_id);
        if (r == NIC_TX_OK) {
            nic_flow_rx_hash_add(t, d->flow_id);
            dev->c.rx_tls_ctx++;
        }
    } else {
        dev->c.tx_bad_desc++;
    }
    if (r != NIC_TX_OK) {
        OPENSSL_cleanse(f, sizeof(*f));
        return r;
    }
    OPENSSL_cleanse(f->st.key, sizeof(f->st.key)); /* the cipher contexts are keyed */
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
    OPENSSL_cleanse(f, sizeof(*f));
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
        OPENSSL_cleanse(&t->slots[i], sizeof(t->slots[i]));
    }
}

static bool have_rx_flows(const struct nic_dev *dev)
{
    return dev->c.rx_tls_ctx != dev->c.rx_tls_del;
}

void nic_tls_tx_observe(struct nic_dev *dev, const uint8_t *pkt, size_t len)
{
    struct nic_tcp_view v;
    if (!have_rx_flows(dev) || !nic_parse_tcp(pkt, len, &v) || !(v.tcp_flags & NIC_TCP_ACK))
        return;
    /* Our segment runs host -> peer; the RX flow is keyed peer -> host. */
    struct nic_flow *f = nic_flow_lookup_rx(dev->flows, v.daddr, v.saddr, v.dport, v.sport);
    if (f && f->rx)
        nic_tls_rx_observe_ack(f, v.ack, v.window);
}

void nic_tls_rx_packet(struct nic_dev *dev, uint8_t *pkt, size_t len, struct nic_cqe *cqe)
{
    struct nic_tcp_view v;
    if (!nic_parse_tcp(pkt, len, &v)) {
        /* The host reassembles fragments; the NIC never sees the segment
           whole, so for an RX flow its bytes are a hole. */
        if (have_rx_flows(dev) && nic_is_tcp_fragment(pkt, len))
            dev->c.rx_tls_skip_frag++;
        return;
    }
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
