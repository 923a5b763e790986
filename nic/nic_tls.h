/*
 * nic_tls.h - the NIC's TLS record engine (device side), shared by the TX
 * and RX paths. The NIC parses TLS 1.2 AES-GCM records (RFC 5246 §6.2.3.3,
 * RFC 5288) from the TCP byte stream on its own: it includes no tls/ header.
 */
#ifndef ANIC_NIC_TLS_H
#define ANIC_NIC_TLS_H

#include "nic_csum.h"
#include "nic_dev.h"
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

/* Record header fields (RFC 5246 §6.2.1): content types, TLS 1.2 = 3.3. */
enum nic_tls_content_type {
    NIC_TLS_CT_CCS = 20,
    NIC_TLS_CT_ALERT = 21,
    NIC_TLS_CT_HANDSHAKE = 22,
    NIC_TLS_CT_APPDATA = 23,
};
#define NIC_TLS_VERSION_MAJOR 3
#define NIC_TLS_VERSION_MINOR 3

/* The header every offload path accepts: a known content type, TLS 1.2, and
   a length field an AES-GCM record can have. h: NIC_TLS_HEADER_LEN bytes. */
static inline bool nic_tls_header_plausible(const uint8_t *h)
{
    uint32_t lf = ((uint32_t)h[3] << 8) | h[4];
    return h[0] >= NIC_TLS_CT_CCS && h[0] <= NIC_TLS_CT_APPDATA && h[1] == NIC_TLS_VERSION_MAJOR &&
           h[2] == NIC_TLS_VERSION_MINOR && lf >= NIC_TLS_MIN_LENFIELD &&
           lf <= NIC_TLS_MAX_LENFIELD;
}

/* Total record length (header included) from a header. */
static inline uint32_t nic_tls_record_len(const uint8_t *h)
{
    return NIC_TLS_HEADER_LEN + (((uint32_t)h[3] << 8) | h[4]);
}

/* What the TLS block sees of the device: its counters (it writes only the
   TLS ones and the control-descriptor errors), the flow table (install and
   delete), the reorder-buffer size, and a sink for the TX completions it
   posts itself (tag reports). The engine owns everything else: rings,
   checksums, parsing and flow lookup. */
struct nic_tls_ctx {
    struct nic_counters *c;
    struct nic_flow_table *flows;
    uint32_t rx_reorder_bytes; /* per RX flow: ciphertext held across holes */
    bool csum_trusted;         /* nic_dev_cfg.rx_csum_trusted */
    void (*post_tx_cqe)(void *sink, const struct nic_cqe *e);
    void *sink;
    /* Device memory shared by all flows (one engine thread uses it at a
       time), carved from the scratch pool (docs/design.md §10): DUMP output,
       an RX packet's original bytes, the RX walker's state-only output, a
       fetched host block. The rest of the pool holds RX reorder copies. */
    uint8_t *dump_buf, *rx_orig, *rx_scratch, *fetch_buf;
    /* A walker's GCM state saved before a one-pass span
       (nic_tls_rx_flow_span), so that a span that fails leaves it as it was. */
    EVP_CIPHER_CTX *rx_span_gcm;
    uint64_t reorder_pool_cap; /* bytes; in use: c->rx_tls_reorder_pool_bytes */
    /* Context cache: LRU list of resident flows by id (0 = none). */
    uint32_t cache_cap; /* 0: every installed context is resident */
    uint32_t fetch_ns;
    uint32_t lru_head, lru_tail;
};

/* Smallest scratch pool: the shared buffers above. */
#define NIC_TLS_SCRATCH_FIXED (3u * NIC_MAX_PACKET + NIC_CTX_HOST_BYTES)

/* Allocate the shared buffers from a pool of scratch_bytes (at least
   NIC_TLS_SCRATCH_FIXED) and set up the cache. Returns 0 or -1. */
int nic_tls_ctx_init(struct nic_tls_ctx *ctx, uint64_t scratch_bytes, uint32_t cache_cap,
                     uint32_t fetch_ns);
void nic_tls_ctx_fini(struct nic_tls_ctx *ctx);

/* The one entry to a flow's context for any use (packet, ACK, control
   descriptor): a hit moves it to the front of the LRU list; a miss evicts
   the least recently used context when the cache is full (written back to
   its host block), fetches this one from its block (bytes + fetch_ns, the
   engine waits) and checks the block still holds what was written back.
   Returns false if the context is unusable (tls_ctx_fetch_bad). */
bool nic_tls_ctx_access(struct nic_tls_ctx *ctx, struct nic_flow *flow);

/* Control descriptors (context install/delete, progress, dump, resync
   response, hint). Returns an enum nic_tx_status. */
int nic_tls_ctrl(struct nic_tls_ctx *ctx, const struct nic_tx_desc *d);
/* Free a flow's TLS state (both directions); the flow table's release hook. */
void nic_tls_flow_release(struct nic_flow *flow);

/* TX side (nic_tls_tx.c). */
int nic_tls_tx_install(struct nic_flow *flow);
void nic_tls_tx_free(struct nic_tls_tx_flow *tx);
int nic_tls_tx_progress(struct nic_tls_ctx *ctx, struct nic_flow *flow,
                        const struct nic_tx_desc *d);
int nic_tls_tx_dump(struct nic_tls_ctx *ctx, struct nic_flow *flow, const struct nic_tx_desc *d);
/* Build an offloaded TCP segment in device memory pkt from the host's packet
   (v: its parsed headers; flow has a TX context), encrypting its TLS records
   on the way, and fix its checksum unless !csum (a TSO segment: every wire
   packet cut from it gets its own, and a super-packet written whole leaves
   it to the kernel). Returns an enum nic_tx_status. */
int nic_tls_tx_packet(struct nic_tls_ctx *ctx, struct nic_flow *flow, uint32_t flow_id,
                      const struct nic_tcp_view *v, const uint8_t *host, uint8_t *pkt, size_t len,
                      bool csum);
/* A hint: start loading the TX state nic_tls_tx_packet will read for flow
   (the walker and its cipher context). Call once flow's slot is cached
   (nic_flow_prefetch an iteration earlier), or the call itself waits. */
void nic_tls_tx_prefetch(const struct nic_flow *flow);

/* RX side (nic_tls_rx.c). */
int nic_tls_rx_install(struct nic_tls_ctx *ctx, struct nic_flow *flow, uint32_t flow_id);
void nic_tls_rx_free(struct nic_tls_rx_flow *rx);
/* A received data segment of an RX flow whose checksums the engine verified:
   decrypt in-sequence records in place, set cqe flags. */
void nic_tls_rx_flow_packet(struct nic_tls_ctx *ctx, struct nic_flow *flow, uint8_t *pkt,
                            const struct nic_tcp_view *v, struct nic_cqe *cqe);
/* A super-packet of an RX flow taken whole (docs/design.md §5 "One pass"),
   pkt a copy of it in the host buffer: decrypted in one walk over the whole
   span, only where each of its pkts wire packets, split, would have been
   decrypted in order by the same walk and marked: the flow in sync at
   v->seq with nothing held, TCP taking the whole span, every header in it
   plausible and every record ending in it authentic. The payload is read
   from src (the original, v->payload_len bytes, may be pkt's own) and
   written into pkt, whose headers the caller has copied. Then cqe has
   DECRYPTED, the flow id and the view of the first payload byte, and the
   counters read as for the wire packets. Otherwise returns false with the
   walker and counters as they were (pkt's payload is then undefined): the
   caller splits the original. The TCP checksum is the caller's. */
bool nic_tls_rx_flow_span(struct nic_tls_ctx *ctx, struct nic_flow *flow, uint8_t *pkt,
                          const uint8_t *src, const struct nic_tcp_view *v, uint32_t pkts,
                          struct nic_cqe *cqe);
int nic_tls_rx_resync_response(struct nic_tls_ctx *ctx, struct nic_flow *flow,
                               const struct nic_tx_desc *d);
int nic_tls_rx_hint(struct nic_tls_ctx *ctx, struct nic_flow *flow, const struct nic_tx_desc *d);
/* The host sent a segment on this RX flow's connection acknowledging ack
   with this (unscaled) window: the right edge of what TCP will accept.
   Flow-table state only (flow->rx_wnd_*): needs no nic_tls_ctx_access. */
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
