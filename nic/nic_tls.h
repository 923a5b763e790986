/*
 * nic_tls.h - the NIC's TLS record engine (device side), shared by the TX
 * and RX paths. The NIC parses TLS 1.2 AES-GCM records (RFC 5246 §6.2.3.3,
 * RFC 5288) from the TCP byte stream on its own: it includes no tls/ header.
 */
#ifndef ANIC_NIC_TLS_H
#define ANIC_NIC_TLS_H

#include "nic_engine.h"
#include "nic_flow.h"

#include <openssl/evp.h>

#define NIC_TLS_HEADER_LEN  5
#define NIC_TLS_NONCE_LEN   8
#define NIC_TLS_TAG_LEN     16
#define NIC_TLS_PAYLOAD_OFF (NIC_TLS_HEADER_LEN + NIC_TLS_NONCE_LEN)
#define NIC_TLS_MAX_PT      16384
/* Smallest and largest value of the header's length field for AES-GCM. */
#define NIC_TLS_MIN_LENFIELD (NIC_TLS_NONCE_LEN + NIC_TLS_TAG_LEN)
#define NIC_TLS_MAX_LENFIELD (NIC_TLS_MAX_PT + NIC_TLS_NONCE_LEN + NIC_TLS_TAG_LEN)

/* TX side (nic_tls_tx.c). */
int nic_tls_tx_install(struct nic_dev *dev, struct nic_flow *flow);
void nic_tls_tx_free(struct nic_tls_tx_flow *tx);
int nic_tls_tx_progress(struct nic_dev *dev, struct nic_flow *flow, const struct nic_tx_desc *d);
int nic_tls_tx_dump(struct nic_dev *dev, struct nic_flow *flow, const struct nic_tx_desc *d);

/* RX side (nic_tls_rx.c). */
struct nic_tcp_view;
int nic_tls_rx_install(struct nic_dev *dev, struct nic_flow *flow, uint32_t flow_id);
void nic_tls_rx_free(struct nic_tls_rx_flow *rx);
void nic_tls_rx_flow_packet(struct nic_dev *dev, struct nic_flow *flow, uint8_t *pkt,
                            const struct nic_tcp_view *v, struct nic_cqe *cqe);
int nic_tls_rx_resync_response(struct nic_dev *dev, struct nic_flow *flow,
                               const struct nic_tx_desc *d);
int nic_tls_rx_hint(struct nic_dev *dev, struct nic_flow *flow, const struct nic_tx_desc *d);
/* The host sent a segment on this RX flow's connection acknowledging ack
   with this (unscaled) window: the right edge of what TCP will accept. */
void nic_tls_rx_observe_ack(struct nic_flow *flow, uint32_t ack, uint16_t window);

/* Shared record crypto (nic_tls.c). hdr: the record's 5-byte header and
   8-byte explicit nonce. Starts the record's AES-GCM on ctx (keyed, in the
   direction it was initialised for): nonce = salt || explicit nonce, AAD =
   seq_num || type || version || plaintext length (RFC 5246 §6.2.3.3).
   Returns 0 or -1. */
int nic_tls_gcm_start(EVP_CIPHER_CTX *ctx, bool encrypt, const uint8_t salt[4],
                      const uint8_t hdr[NIC_TLS_PAYLOAD_OFF], uint64_t record_sn, uint32_t rec_len);
/* Position an AES-CTR ctx at payload offset off of the record with this
   explicit nonce: the GCM keystream (payload counter blocks start at 2). */
int nic_tls_ctr_seek(EVP_CIPHER_CTX *ctx, const uint8_t salt[4],
                     const uint8_t explicit_nonce[NIC_TLS_NONCE_LEN], uint32_t off);

/* Big-endian helpers. */
static inline void nic_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

#endif
