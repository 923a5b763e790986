/* tls_server.h - server-wide TLS configuration shared by all connections. */
#ifndef ANIC_TLS_SERVER_H
#define ANIC_TLS_SERVER_H

#include <stddef.h>
#include <stdint.h>

/* Record layer after the handshake. */
enum tls_mode {
    TLS_MODE_NONE = 0,     /* plain TCP (the HTTP port): a passthrough, same code path */
    TLS_MODE_MBEDTLS,      /* stock mbed TLS record layer */
    TLS_MODE_SW,           /* anic's record layer, host crypto (libcrypto AES-GCM) */
    TLS_MODE_NIC,          /* anic's record layer, records encrypted by the NIC (TX offload);
                              retransmissions recovered with state + dump descriptors */
    TLS_MODE_NIC_TAGCACHE, /* as TLS_MODE_NIC, recovered with the tag-cache policy */
    TLS_MODE_COUNT
};

struct tls_server_cfg {
    const char *cert_path, *key_path; /* both NULL: generate a CA + leaf */
    const char *ca_out_path;          /* where the generated CA is written */
    uint32_t server_ip;               /* network byte order, for the leaf's SAN */
    const char *keylog_path;          /* NULL: no NSS key log */
    uint32_t record_size; /* plaintext bytes per TX record, 1..TLS_MAX_PLAINTEXT (0 = 16384) */
    /* Handshake threads, 1..16 (0 = 2), and new handshakes that may wait for
       one (0 = 4096); a ClientHello beyond that gets a RST. */
    unsigned handshake_workers, handshake_queue;
    /* A ClientHello also gets a RST while the oldest new handshake in the
       queue has waited this long (0: no bound): under a handshake storm the
       queue then holds what the workers finish within the handshake timeout,
       instead of handshakes that time out after work was spent on them. */
    uint32_t handshake_queue_ms;
};

/* Counters (docs/design.md §9: software side + connection outcomes). */
/* Counters per mode (/stats sections tls_mbedtls, tls_sw, tls_nic,
   tls_nic_tagcache). */
#define TLS_COUNTERS(X)                                                                            \
    X(handshakes_ok)                                                                               \
    X(handshakes_failed)                                                                           \
    X(handshakes_queue_full) /* refused (RST): --handshake-queue new handshakes were waiting */    \
    X(handshakes_queue_late) /* refused (RST): the oldest waiting new handshake waited             \
                                handshake_queue_ms (half the handshake timeout) */                 \
    X(handshakes_abandoned)  /* the connection died while its handshake step was queued */         \
    X(conns_closed)                                                                                \
    X(tx_records)                                                                                  \
    X(tx_bytes_plaintext)                                                                          \
    X(tx_bytes_copied) /* bytes memcpy'd on the TX data path (staging, mbed TLS, tcp_write) */     \
    X(tx_write_torn)   /* a static record's later write failed (lwIP out of memory): reset */      \
    X(tx_lowat_waits)  /* send space reported as none: below stack_tcp_write_lowat, in flight */   \
    X(rx_records)                                                                                  \
    X(rx_bytes_plaintext)                                                                          \
    X(rx_bytes_delivered_direct) /* of those, taken by the upper layer without a copy */           \
    X(rx_records_full_offload)                                                                     \
    X(rx_records_partial_offload)                                                                  \
    X(rx_records_no_offload)                                                                       \
    X(rx_tls_view_mismatch) /* NIC marks whose record view the host did not share */               \
    X(rx_bytes_reassembled) /* record bytes copied to put together records split across chunks */  \
    X(TlsDecryptError)                                                                             \
    X(alerts_sent)                                                                                 \
    X(alerts_received)                                                                             \
    X(close_notify_rx)                                                                             \
    X(rx_malformed)                                                                                \
    X(offload_fallback_sw) /* NIC-mode connections sealing in software (no context, refused) */

#define TLS_CTR_FIELD(name) uint64_t name;
struct tls_counters {
    TLS_COUNTERS(TLS_CTR_FIELD)
};

struct tls_server;
struct tls_offload;
struct tls_server *tls_server_new(const struct tls_server_cfg *cfg, char *err, size_t errlen);
/* Modes whose records use anic's record layer (keys exported after the handshake). */
static inline int tls_mode_own_records(enum tls_mode m)
{
    return m == TLS_MODE_SW || m == TLS_MODE_NIC || m == TLS_MODE_NIC_TAGCACHE;
}
static inline int tls_mode_offloads(enum tls_mode m)
{
    return m == TLS_MODE_NIC || m == TLS_MODE_NIC_TAGCACHE;
}
void tls_server_free(struct tls_server *s);
/* Connections in TLS_MODE_NIC use o (NULL: they fall back to TLS_MODE_SW). */
void tls_server_set_offload(struct tls_server *s, struct tls_offload *o);
/* Counters of the connections that ran in `mode`. */
const struct tls_counters *tls_server_counters(const struct tls_server *s, enum tls_mode mode);

#endif
