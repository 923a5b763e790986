/*
 * nic_tls.c - flow context control descriptors (install, delete, progress,
 * dump, resync response, hint) and the record crypto both directions share.
 */
#include "nic_tls.h"

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

void nic_tls_flow_release(struct nic_flow *flow)
{
    if (flow->tx)
        nic_tls_tx_free(flow->tx);
    if (flow->rx)
        nic_tls_rx_free(flow->rx);
    flow->tx = NULL;
    flow->rx = NULL;
}

/* Key material in device memory is wiped with OPENSSL_cleanse (a store the
   compiler may not drop): a slot whose install failed, a deleted slot (both
   by nic_flow_wipe), and the raw key once the cipher contexts hold the key
   schedule. */
static int install_ctx(struct nic_tls_ctx *ctx, const struct nic_tx_desc *d)
{
    struct nic_flow_table *t = ctx->flows;
    struct nic_flow *f = d->addr ? nic_flow_slot_unused(t, d->flow_id) : NULL;
    if (!f) {
        ctx->c->flow_table_full++;
        return NIC_TX_ERR_NO_CTX;
    }
    memset(f, 0, sizeof(*f));
    memcpy(&f->st, (const void *)(uintptr_t)d->addr, sizeof(f->st)); /* DMA read */
    int r = NIC_TX_ERR_BAD_DESC;
    if (f->st.cipher != NIC_CIPHER_AES_128_GCM && f->st.cipher != NIC_CIPHER_AES_256_GCM) {
        ctx->c->tx_bad_desc++;
    } else if (f->st.direction == NIC_CTX_TX) {
        r = nic_tls_tx_install(f);
        if (r == NIC_TX_OK)
            ctx->c->tx_tls_ctx++;
    } else if (f->st.direction == NIC_CTX_RX) {
        r = nic_tls_rx_install(ctx, f, d->flow_id);
        if (r == NIC_TX_OK) {
            nic_flow_rx_hash_add(t, d->flow_id);
            ctx->c->rx_tls_ctx++;
        }
    } else {
        ctx->c->tx_bad_desc++;
    }
    if (r != NIC_TX_OK) {
        nic_flow_wipe(t, f);
        return r;
    }
    OPENSSL_cleanse(f->st.key, sizeof(f->st.key)); /* the cipher contexts are keyed */
    f->used = true;
    return NIC_TX_OK;
}

static int delete_ctx(struct nic_tls_ctx *ctx, const struct nic_tx_desc *d)
{
    struct nic_flow *f = nic_flow_get(ctx->flows, d->flow_id);
    if (!f) {
        ctx->c->tx_tls_no_ctx++;
        return NIC_TX_ERR_NO_CTX;
    }
    if (f->tx)
        ctx->c->tx_tls_del++;
    if (f->rx) {
        nic_flow_rx_hash_del(ctx->flows, d->flow_id);
        ctx->c->rx_tls_del++;
    }
    nic_flow_wipe(ctx->flows, f);
    return NIC_TX_OK;
}

int nic_tls_ctrl(struct nic_tls_ctx *ctx, const struct nic_tx_desc *d)
{
    if (d->kind == NIC_TX_STATIC_CTX)
        return install_ctx(ctx, d);
    if (d->kind == NIC_TX_DEL_CTX)
        return delete_ctx(ctx, d);
    struct nic_flow *f = nic_flow_get(ctx->flows, d->flow_id);
    if (!f) {
        ctx->c->tx_tls_no_ctx++;
        return NIC_TX_ERR_NO_CTX;
    }
    switch (d->kind) {
    case NIC_TX_PROGRESS:
        return f->tx ? nic_tls_tx_progress(ctx, f, d) : NIC_TX_ERR_NO_CTX;
    case NIC_TX_DUMP:
        return f->tx ? nic_tls_tx_dump(ctx, f, d) : NIC_TX_ERR_NO_CTX;
    case NIC_RX_RESYNC_RESP:
        return f->rx ? nic_tls_rx_resync_response(ctx, f, d) : NIC_TX_ERR_NO_CTX;
    case NIC_RX_PROGRESS:
        return f->rx ? nic_tls_rx_hint(ctx, f, d) : NIC_TX_ERR_NO_CTX;
    default:
        return NIC_TX_ERR_BAD_DESC;
    }
}
