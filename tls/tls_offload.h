/*
 * tls_offload.h - host side of the autonomous TLS offload (docs/design.md §4,
 * §5): the record store for retransmissions, lingering until every record
 * is acked, the software fallback of a refused install, the RX resync
 * decisions and the hint back-off. The device is reached only through
 * struct tls_offload_ops (the counterpart of Linux's tlsdev_ops), which the
 * driver implements (stack/stack_tls_offload.h) and apps/app_runtime.c
 * wires up; no descriptor or header parsing happens here.
 *
 * Everything runs under the lwIP core lock.
 */
#ifndef ANIC_TLS_OFFLOAD_H
#define ANIC_TLS_OFFLOAD_H

#include "stack_tls_offload.h"

#include <lwip/tcp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tls_tx_resync {
    TLS_TX_RESYNC_DUMP = STACK_TLS_TX_RESYNC_DUMP,         /* state descriptor + dump bytes */
    TLS_TX_RESYNC_TAGCACHE = STACK_TLS_TX_RESYNC_TAGCACHE, /* NIC reports tags; one-shots */
    TLS_TX_RESYNC_COUNT = STACK_TLS_TX_RESYNC_COUNT
};

/* The device operations tls/ uses. dev is the ops' own object; a flow
   handle comes from tx_add/rx_add and is given back to tx_del/rx_del. The
   device calls back through host (get_record for retransmissions, tag
   reports, install answers, resync requests) with host_flow. */
struct tls_offload_ops {
    /* NULL: no context (no id, ring slot or memory); software crypto. */
    struct stack_tls_flow *(*tx_add)(struct stack_tls_offload *dev,
                                     const struct stack_tls_params *p,
                                     const struct stack_tls_host_ops *host, void *host_flow);
    void (*tx_del)(struct stack_tls_offload *dev, struct stack_tls_flow *f);
    struct stack_tls_flow *(*rx_add)(struct stack_tls_offload *dev,
                                     const struct stack_tls_params *p,
                                     const struct stack_tls_host_ops *host, void *host_flow);
    void (*rx_del)(struct stack_tls_offload *dev, struct stack_tls_flow *f);
    /* Answers to resync requests, and hints (hint mode). 0: posted. */
    int (*rx_resync_confirm)(struct stack_tls_offload *dev, struct stack_tls_flow *f, uint32_t seq,
                             uint64_t record_sn);
    int (*rx_resync_deny)(struct stack_tls_offload *dev, struct stack_tls_flow *f, uint32_t seq);
    int (*rx_hint)(struct stack_tls_offload *dev, struct stack_tls_flow *f, uint32_t seq,
                   uint64_t record_sn);
};

/* Host counters of the TX offload, per policy (/stats sections
   offload_dump, offload_tagcache, with STACK_TLS_TX_COUNTERS). */
#define TLS_OFFLOAD_TX_COUNTERS(X)                                                                 \
    X(tx_tls_ctx_fail)    /* no context: no memory, or the device had no id or ring slot */        \
    X(tx_tls_tags_cached) /* tags the NIC reported, stored with their record */                    \
    X(tx_records)         /* records written as frames, kept in the store */                       \
    X(tx_record_bytes)                                                                             \
    X(tx_static_records)      /* of those: static payload referenced in place, no copy */          \
    X(tx_static_frames_built) /* frames built for static records (retransmission, refusal) */      \
    X(records_in_store)       /* records kept for retransmission now (gauge) */                    \
    X(lingering)              /* flows waiting for acks after their connection closed (gauge) */   \
    X(offload_tx_at_open)     /* offload policy: TX offloaded from the first record */             \
    X(offload_tx_switched)    /* ... from a later record boundary (after software records) */      \
    X(offload_tx_kept_sw)     /* ... never: the connection sealed every record in software */

/* Host counters of the RX offload (/stats section offload_rx, with
   STACK_TLS_RX_COUNTERS). */
#define TLS_OFFLOAD_RX_COUNTERS(X)                                                                 \
    X(rx_tls_ctx_fail)       /* as tx_tls_ctx_fail */                                              \
    X(rx_resync_requests)    /* resync requests received from the NIC */                           \
    X(TlsRxDeviceResync)     /* requests confirmed (as /proc/net/tls_stat) */                      \
    X(rx_resync_denied)      /* requests passed inside a record */                                 \
    X(rx_resync_req_dropped) /* more pending requests than we keep */                              \
    X(rx_hints_sent)         /* hint mode: next-record hints posted */                             \
    X(offload_rx_at_open)    /* offload policy: RX offloaded from the first record */              \
    X(offload_rx_switched)   /* ... from a later record boundary */                                \
    X(offload_rx_kept_sw)    /* ... never: software decrypted the whole connection */

#define TLS_OFFLOAD_CTR_FIELD(name) uint64_t name;
struct tls_offload_counters {
    TLS_OFFLOAD_TX_COUNTERS(TLS_OFFLOAD_CTR_FIELD)
};
struct tls_offload_rx_counters {
    TLS_OFFLOAD_RX_COUNTERS(TLS_OFFLOAD_CTR_FIELD)
};

struct tls_offload;
struct tls_tx_offload;

/* ops (kept by pointer) and dev outlive the offload. */
struct tls_offload *tls_offload_new(const struct tls_offload_ops *ops,
                                    struct stack_tls_offload *dev);
/* Stops every flow (lingering ones by aborting their pcb). */
void tls_offload_free(struct tls_offload *o);
/* Counters of the flows that use `policy`. */
const struct tls_offload_counters *tls_offload_counters(const struct tls_offload *o,
                                                        enum tls_tx_resync policy);

/* Start offloading the TX side of pcb. start_seq: the TCP seq of the first
   offloaded byte (the caller guarantees lwIP's unsent queue is empty, so no
   segment mixes handshake and offloaded bytes). NULL: no flow context free
   (counted); the caller keeps software crypto. The key is handed to tx_add
   (the driver copies it into the NIC's static context and wipes that once
   read) and kept as a software AEAD until the NIC answers the install. */
struct tls_tx_offload *tls_tx_offload_start(struct tls_offload *o, enum tls_tx_resync policy,
                                            struct tcp_pcb *pcb, const uint8_t *key, size_t key_len,
                                            const uint8_t salt[4], uint32_t start_seq,
                                            uint64_t record_sn);
/* A buffer of TLS_MAX_RECORD_LEN bytes to stage one frame in (one PBUF_RAM
   pbuf; lwIP's heap reuses freed ones, stack/stack_mem.h). NULL: out of
   memory. */
struct pbuf *tls_offload_frame_alloc(void);
/* A record (plaintext frame with blank tag) was written at start_seq. The
   store takes a reference on rec and keeps it until every byte is acked. */
void tls_tx_offload_record(struct tls_tx_offload *t, struct pbuf *rec, uint32_t start_seq,
                           uint64_t record_sn);
/* A record written to TCP as three pieces: hdr (its 5-byte header and
   8-byte explicit nonce), len payload bytes that stay unchanged at payload
   for the life of the process (static data), and a blank tag. The store
   keeps hdr and the pointer, no copy: a frame is built from them only when
   the driver asks for the record (a retransmission) or the flow falls back
   to software (tx_static_frames_built). */
void tls_tx_offload_record_static(struct tls_tx_offload *t, const uint8_t hdr[13],
                                  const uint8_t *payload, uint16_t len, uint32_t start_seq,
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

/* --- receive side (docs/design.md §5) --- */

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

/* --- offload policy (docs/design.md §4.1) ---
   Which connections and from which record on the NIC gets a context. A
   context install costs (host and NIC work, a flow-table slot); it pays back
   per byte the host no longer encrypts. always: every connection from its
   first record (the default). after:BYTES: a direction is offloaded from its
   first record boundary at or past BYTES payload bytes. auto: break-even
   B = INSTALL_NS / (SW_PS - NIC_PS) bytes (the software cost per byte minus
   the host's cost per offloaded byte); a direction is offloaded at a record
   boundary once the bytes still announced (tls_offload_gate_expect) reach B,
   or once B bytes went through in software (so an unannounced transfer costs
   at most twice the better choice). */
enum tls_offload_policy_kind { TLS_OFFLOAD_ALWAYS = 0, TLS_OFFLOAD_AFTER, TLS_OFFLOAD_AUTO };

struct tls_offload_policy {
    enum tls_offload_policy_kind kind;
    uint64_t after_bytes; /* after: */
    uint64_t install_ns;  /* auto: cost of one context install + delete, ns */
    uint64_t sw_ps;       /* auto: host cost of software crypto, picoseconds per byte */
    uint64_t nic_ps;      /* auto: host cost per offloaded byte (framing, record store), ps */
};

/* auto's defaults (README.md, Offload policy): SW_PS and NIC_PS are the
   host CPU per byte of 10 long downloads in sw and nic mode (anic bench
   --load --flows 10: 0.56 and 0.35 s/GB); INSTALL_NS is an upper estimate
   of the host's work for the two installs and deletes of a connection
   (below the noise of anic bench --load --conn-rate, which bounds it at
   ~0.1 ms). Break-even: 95239 bytes. */
#define TLS_OFFLOAD_AUTO_INSTALL_NS 20000
#define TLS_OFFLOAD_AUTO_SW_PS      560
#define TLS_OFFLOAD_AUTO_NIC_PS     350

/* "always", "after:BYTES", "auto" or "auto:INSTALL_NS,SW_PS,NIC_PS". 0: ok;
   -1: malformed (p untouched). */
int tls_offload_policy_parse(const char *s, struct tls_offload_policy *p);
/* The policy as the option spells it, for logs and bench reports. */
void tls_offload_policy_format(const struct tls_offload_policy *p, char *buf, size_t cap);
/* Bytes from which an offload pays (auto), after_bytes (after), 0 (always);
   UINT64_MAX: never (auto with SW_PS <= NIC_PS). */
uint64_t tls_offload_policy_breakeven(const struct tls_offload_policy *p);
/* The policy of every connection started from now on (default always). */
void tls_offload_set_policy(struct tls_offload *o, const struct tls_offload_policy *p);
const struct tls_offload_policy *tls_offload_get_policy(const struct tls_offload *o);

/* One direction of one connection, owned by the connection (tls_conn.c). */
struct tls_offload_gate {
    bool decided;        /* offload started or tried: the gate asks no more */
    bool expected;       /* an amount was announced */
    uint64_t expect_end; /* payload byte count at which the announced transfer ends */
};

/* The application announced `bytes` more payload bytes in this direction,
   `done` bytes having gone through so far. */
void tls_offload_gate_expect(struct tls_offload_gate *g, uint64_t done, uint64_t bytes);
/* At a record boundary after `done` payload bytes: true if the direction
   should be offloaded from here. */
bool tls_offload_gate_check(const struct tls_offload *o, const struct tls_offload_gate *g,
                            uint64_t done);
/* The caller started (started: got a context) or tried to start the
   offload after `done` bytes: counted at_open (done 0) or switched. tx:
   which direction; policy: the TX flow's resync policy (its counters). */
void tls_offload_gate_started(struct tls_offload *o, struct tls_offload_gate *g, bool tx,
                              enum tls_tx_resync policy, uint64_t done, bool started);
/* The connection ends: a direction the gate never opened counts kept_sw. */
void tls_offload_gate_end(struct tls_offload *o, struct tls_offload_gate *g, bool tx,
                          enum tls_tx_resync policy);

#endif
