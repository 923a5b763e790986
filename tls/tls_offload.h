/*
 * tls_offload.h - host side of the autonomous TLS offload (DESIGN.md §3):
 * flow contexts in the NIC, the record store for retransmissions, and the
 * driver hook that keeps a shadow of the NIC's expected sequence number and
 * resynchronises it with state/dump descriptors (or tag-cache one-shots).
 *
 * Everything runs under the lwIP core lock.
 */
#ifndef ANIC_TLS_OFFLOAD_H
#define ANIC_TLS_OFFLOAD_H

#include "stack_driver.h"

#include <lwip/tcp.h>
#include <stdbool.h>
#include <stdint.h>

enum tls_tx_resync {
    TLS_TX_RESYNC_DUMP,     /* mlx5: state descriptor + record bytes replayed up to the seq */
    TLS_TX_RESYNC_TAGCACHE, /* NIC reports tags; retransmissions seek the keystream */
    TLS_TX_RESYNC_COUNT
};

struct tls_offload_counters {
    uint64_t tx_tls_ctx_installed;      /* install descriptors posted */
    uint64_t tx_tls_ctx_fail;           /* no install tried: no flow id, ring full, no memory */
    uint64_t tx_tls_ctx_install_failed; /* the NIC refused the install: software fallback */
    uint64_t tx_tls_ctx_deleted;        /* deletes the NIC completed */
    uint64_t tx_tls_ctx_del_deferred;   /* deletes queued because the TX ring was full */
    uint64_t tx_tls_ctx_del_pending;    /* deletes queued now (gauge) */
    uint64_t tx_tls_sw_fallback_packets, tx_tls_sw_fallback_bytes; /* frames sealed by the host */
    uint64_t tx_tls_sw_fallback_nomem; /* no memory for the sealed copy: dropped */
    uint64_t tx_tls_ooo;               /* out-of-sequence segments (resyncs) */
    uint64_t tx_tls_skip_no_sync_data; /* segment before start_offload_tcp_sn: sent as is */
    uint64_t tx_tls_drop_no_sync_data; /* record already acked and freed: dropped */
    uint64_t tx_tls_resync_dump, tx_tls_resync_tagcache, tx_tls_tagcache_miss;
    uint64_t tx_tls_dump_bytes;       /* record bytes posted in DUMP descriptors */
    uint64_t tx_tls_retransmit_bytes; /* payload bytes of out-of-sequence segments */
    uint64_t tx_tls_tags_cached, tx_tls_ring_full_drops;
    uint64_t tx_tls_nic_errors; /* NIC reported a failed offloaded descriptor */
    uint64_t tx_records, tx_record_bytes, records_in_store, lingering;
};

struct tls_offload;
struct tls_tx_offload;

/* Installs itself as the driver's offload hook. Flow ids (1..max_flows) are
   reused only once the NIC holds nothing of the previous flow: after its
   delete completed, or at once if its install failed. A delete that finds
   the TX ring full is queued and posted when the driver reclaims slots. */
struct tls_offload *tls_offload_new(struct stack_driver *drv, uint32_t max_flows);
void tls_offload_free(struct tls_offload *o);
/* Counters of the flows that use `policy`. */
const struct tls_offload_counters *tls_offload_counters(const struct tls_offload *o,
                                                        enum tls_tx_resync policy);

/* Start offloading the TX side of pcb. start_seq: the TCP seq of the first
   offloaded byte (the caller guarantees lwIP's unsent queue is empty, so no
   segment mixes handshake and offloaded bytes). NULL: no flow context free
   (counted); the caller keeps software crypto. The key is copied into the
   NIC's static context (wiped by the driver once read) and into a software
   AEAD kept until the NIC answers the install. */
struct tls_tx_offload *tls_tx_offload_start(struct tls_offload *o, enum tls_tx_resync policy,
                                            struct tcp_pcb *pcb, const uint8_t *key, size_t key_len,
                                            const uint8_t salt[4], uint32_t start_seq,
                                            uint64_t record_sn);
/* A record (plaintext frame with blank tag) was written at start_seq. The
   store takes a reference on rec and keeps it until every byte is acked. */
void tls_tx_offload_record(struct tls_tx_offload *t, struct pbuf *rec, uint32_t start_seq,
                           uint64_t record_sn);
/* The NIC refused the flow's context. From then on the driver hook sends
   the frames already written encrypted in software (the store seals them in
   place); the caller must write every further record sealed itself, not as
   a frame, and keep calling acked/release as before. */
bool tls_tx_offload_failed(const struct tls_tx_offload *t);
/* Called from tcp_sent: free records no segment in lwIP can still resend. */
void tls_tx_offload_acked(struct tls_tx_offload *t, struct tcp_pcb *pcb);
/* The connection is done with the pcb. If segments may still be resent, the
   offload lingers on the pcb (taking over its callbacks, discarding what
   arrives, closing on the peer's FIN) until they are acked, and returns
   true; abort: the pcb is being aborted/freed, stop at once. */
bool tls_tx_offload_release(struct tls_tx_offload *t, struct tcp_pcb *pcb, bool abort);

#endif

/* --- receive side (DESIGN.md §4) --- */

struct tls_offload_rx_counters {
    uint64_t rx_tls_ctx_installed, rx_tls_ctx_fail; /* as the tx_ names above */
    uint64_t rx_tls_ctx_install_failed; /* the NIC refused: software decrypts, no resync */
    uint64_t rx_tls_ctx_deleted, rx_tls_ctx_del_deferred, rx_tls_ctx_del_pending;
    uint64_t rx_resync_requests;    /* resync requests received from the NIC */
    uint64_t TlsRxDeviceResync;     /* requests confirmed (as /proc/net/tls_stat) */
    uint64_t rx_resync_denied;      /* requests passed inside a record */
    uint64_t rx_resync_req_dropped; /* more pending requests than we keep */
    uint64_t rx_hints_sent;         /* hint mode: next-record hints posted */
};

struct tls_rx_offload;

/* Hint mode: the NIC never searches; tls/ tells it where records start
   after a run of software-decrypted records (backing off 2, 4, ... 128). */
void tls_offload_set_rx_hint(struct tls_offload *o, bool hint);
const struct tls_offload_rx_counters *tls_offload_rx_counters(const struct tls_offload *o);

/* Offload decryption of what pcb receives. start_seq: TCP seq of the first
   byte of record record_sn. NULL: no context (counted); software decrypts. */
struct tls_rx_offload *tls_rx_offload_start(struct tls_offload *o, struct tcp_pcb *pcb,
                                            const uint8_t *key, size_t key_len,
                                            const uint8_t salt[4], uint32_t start_seq,
                                            uint64_t record_sn);
/* tls/ completed a record: the next one starts at next_seq with number
   next_sn. Confirms or denies pending resync requests. offloaded: the record
   was fully decrypted by the NIC (drives the hint back-off). */
void tls_rx_offload_record_done(struct tls_rx_offload *r, uint32_t next_seq, uint64_t next_sn,
                                bool offloaded);
/* Hint mode: tls/ knows where a record beyond the current one starts. */
void tls_rx_offload_future_record(struct tls_rx_offload *r, uint32_t seq, uint64_t sn);
void tls_rx_offload_stop(struct tls_rx_offload *r);
