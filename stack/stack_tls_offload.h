/*
 * stack_tls_offload.h - the driver's half of the autonomous TLS offload
 * (docs/design.md §4, §5): NIC flow contexts and their ids, deferred
 * deletes, and the TX hook that parses outgoing headers, keeps a shadow of
 * the NIC's expected sequence number and resynchronises it with
 * state/dump descriptors (or tag-cache one-shots); the RX resync answers and
 * hints as descriptors; the software-fallback copy of segments of a flow
 * whose install the NIC refused.
 *
 * The host half (tls/tls_offload.c: record store, resync decisions, hint
 * back-off) reaches this only through the function table of tls_offload.h,
 * which apps/app_runtime.c fills with the functions below; the driver calls
 * back into it through struct stack_tls_host_ops. Everything runs under the
 * lwIP core lock.
 */
#ifndef ANIC_STACK_TLS_OFFLOAD_H
#define ANIC_STACK_TLS_OFFLOAD_H

#include <lwip/pbuf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STACK_TLS_TAG_LEN 16

/* TX recovery policy of a flow; the driver keeps counters per policy. */
enum stack_tls_tx_resync {
    STACK_TLS_TX_RESYNC_DUMP,     /* mlx5: state descriptor + record bytes replayed up to the seq */
    STACK_TLS_TX_RESYNC_TAGCACHE, /* NIC reports tags; retransmissions seek the keystream */
    STACK_TLS_TX_RESYNC_COUNT
};

/* Counters of the driver's TX offload, per policy (/stats sections
   offload_dump, offload_tagcache, together with TLS_OFFLOAD_TX_COUNTERS). */
#define STACK_TLS_TX_COUNTERS(X)                                                                   \
    X(tx_tls_ctx_installed)       /* install descriptors posted */                                 \
    X(tx_tls_ctx_install_failed)  /* the NIC refused the install: software fallback */             \
    X(tx_tls_ctx_deleted)         /* deletes the NIC completed */                                  \
    X(tx_tls_ctx_del_deferred)    /* deletes queued because the TX ring was full */                \
    X(tx_tls_ctx_del_pending)     /* deletes queued now (gauge) */                                 \
    X(tx_tls_ctx_host_bytes)      /* context host blocks held now (gauge) */                       \
    X(tx_tls_sw_fallback_packets) /* frames sealed by the host */                                  \
    X(tx_tls_sw_fallback_bytes)                                                                    \
    X(tx_tls_sw_fallback_nomem)  /* no memory for the sealed copy: dropped */                      \
    X(tx_tls_ooo)                /* out-of-sequence segments (resyncs) */                          \
    X(tx_tls_skip_no_sync_data)  /* segment before start_offload_tcp_sn: sent as is */             \
    X(tx_tls_drop_no_sync_data)  /* record already acked and freed: dropped */                     \
    X(tx_tls_resync_dump)        /* state (+ dump) resyncs */                                      \
    X(tx_tls_resync_tagcache)    /* one-shot keystream seeks */                                    \
    X(tx_tls_tagcache_miss)      /* tag needed but not reported yet: dump resync */                \
    X(tx_tls_dump_bytes)         /* record bytes posted in DUMP descriptors */                     \
    X(tx_tls_retransmit_bytes)   /* payload bytes of out-of-sequence segments */                   \
    X(tx_tls_ring_full_deferred) /* no ring room for resync descriptors: refused, sent later */    \
    X(tx_tls_nic_errors)         /* NIC reported a failed offloaded descriptor */

/* Counters of the driver's RX offload (/stats section offload_rx, together
   with TLS_OFFLOAD_RX_COUNTERS). */
#define STACK_TLS_RX_COUNTERS(X)                                                                   \
    X(rx_tls_ctx_installed)      /* install descriptors posted */                                  \
    X(rx_tls_ctx_install_failed) /* the NIC refused: software decrypts, no resync */               \
    X(rx_tls_ctx_deleted)        /* deletes the NIC completed */                                   \
    X(rx_tls_ctx_del_deferred)   /* deletes queued because the TX ring was full */                 \
    X(rx_tls_ctx_del_pending)    /* deletes queued now (gauge) */                                  \
    X(rx_tls_ctx_host_bytes)     /* context host blocks held now (gauge) */

#define STACK_TLS_CTR_FIELD(name) uint64_t name;
struct stack_tls_tx_counters {
    STACK_TLS_TX_COUNTERS(STACK_TLS_CTR_FIELD)
};
struct stack_tls_rx_counters {
    STACK_TLS_RX_COUNTERS(STACK_TLS_CTR_FIELD)
};

/* What the host tells the driver about a flow it offloads. */
struct stack_tls_params {
    /* 4-tuple as the packets of the direction carry it, network byte order
       (TX: the host is the source; RX: the host is the destination) */
    uint32_t saddr, daddr;
    uint16_t sport, dport;
    uint32_t start_seq; /* TX: first offloaded byte; RX: first byte of record record_sn */
    uint64_t record_sn; /* record number at start_seq */
    const uint8_t *key; /* 16 or 32 bytes; copied into the NIC's context only */
    size_t key_len;
    uint8_t salt[4];
    enum stack_tls_tx_resync policy; /* TX */
    bool rx_hint;                    /* RX: the NIC never searches; the host hints */
    uint32_t rx_wnd_right_edge;      /* RX: receive window announced so far */
    uint8_t rx_wnd_scale;
};

/* One record of the host's store, as get_record describes it. */
struct stack_tls_record {
    struct pbuf *p; /* the frame as written to TCP (sealed in place if `sealed`);
                       may be NULL when get_record was called without bytes */
    uint32_t start_seq;
    uint16_t len;
    uint64_t record_sn;
    bool tag_valid; /* tag holds the tag the NIC reported for it */
    bool sealed;    /* the host encrypted it (refused install) */
    uint8_t tag[STACK_TLS_TAG_LEN];
};

/* The host's callbacks, called by the driver under the core lock with the
   host_flow given at add time. */
struct stack_tls_host_ops {
    /* TX: the record holding byte seq. False: none (already acked and freed),
       or bytes were asked for and the host could not produce them. bytes:
       the caller reads the frame (a dump, a sealed copy); without, it needs
       the record's place, number and tag only (a tag-cache one-shot), and a
       record kept as a reference to static bytes is not built into a frame. */
    bool (*get_record)(void *host_flow, uint32_t seq, bool bytes, struct stack_tls_record *out);
    /* TX: seq past the last record written as a frame; the host seals every
       later byte itself once the install was refused. */
    uint32_t (*frame_end)(void *host_flow);
    /* TX (tag-cache flows): the NIC reported the tag of record record_sn. */
    void (*tag_report)(void *host_flow, uint64_t record_sn, const uint8_t *tag);
    /* The NIC answered the install. TX refused: the host seals the records
       in its store in place and every later one itself. */
    void (*install_done)(void *host_flow, bool ok);
    /* RX: the NIC asks whether a record starts at seq; the host answers
       with stack_tls_rx_resync_confirm/deny, at once or later. */
    void (*resync_request)(void *host_flow, uint32_t seq);
};

struct stack_driver;
struct stack_tls_offload;
struct stack_tls_flow;

/* Installs itself as the driver's offload hook. Flow ids (1..max_flows) are
   reused only once the NIC holds nothing of the previous flow: after its
   delete completed, or at once if its install failed. A delete that finds
   the TX ring full is queued and posted when the driver reclaims slots. */
struct stack_tls_offload *stack_tls_offload_new(struct stack_driver *drv, uint32_t max_flows);
/* Flows still added are deleted first; deletes still queued then are
   dropped (the device is being destroyed and wipes its contexts). */
void stack_tls_offload_free(struct stack_tls_offload *o);
const struct stack_tls_tx_counters *stack_tls_offload_tx_counters(const struct stack_tls_offload *o,
                                                                  enum stack_tls_tx_resync policy);
const struct stack_tls_rx_counters *
stack_tls_offload_rx_counters(const struct stack_tls_offload *o);

/* Take a flow id and post the static context (the key is wiped from the
   descriptor's buffer once the NIC read it). NULL: no id, ring slot or
   memory; nothing was posted. */
struct stack_tls_flow *stack_tls_tx_add(struct stack_tls_offload *o,
                                        const struct stack_tls_params *p,
                                        const struct stack_tls_host_ops *host, void *host_flow);
struct stack_tls_flow *stack_tls_rx_add(struct stack_tls_offload *o,
                                        const struct stack_tls_params *p,
                                        const struct stack_tls_host_ops *host, void *host_flow);
/* The host is done with the flow: its context is deleted (or the delete
   queued); no callback for it follows. */
void stack_tls_tx_del(struct stack_tls_offload *o, struct stack_tls_flow *f);
void stack_tls_rx_del(struct stack_tls_offload *o, struct stack_tls_flow *f);
/* Answer a resync request / hint where a record starts (RX). 0 posted, -1
   TX ring full (the NIC times the candidate out by itself). */
int stack_tls_rx_resync_confirm(struct stack_tls_offload *o, struct stack_tls_flow *f, uint32_t seq,
                                uint64_t record_sn);
int stack_tls_rx_resync_deny(struct stack_tls_offload *o, struct stack_tls_flow *f, uint32_t seq);
int stack_tls_rx_hint(struct stack_tls_offload *o, struct stack_tls_flow *f, uint32_t seq,
                      uint64_t record_sn);

#endif
