/*
 * tls_conn.h - one server connection on lwIP's raw TCP API: mbed TLS
 * handshake, then the record layer of the server's mode, or a plain
 * passthrough (TLS_MODE_NONE). It owns the pcb's callbacks.
 *
 * All functions run under the lwIP core lock. Upper-layer callbacks may call
 * back into tls_conn_* (send, flush, close); a connection is freed only when
 * the outermost callback returns.
 */
#ifndef ANIC_TLS_CONN_H
#define ANIC_TLS_CONN_H

#include "tls_server.h"

#include <lwip/tcp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_conn_upper {
    /* Plaintext arrived. Returns bytes consumed; fewer than len means "no more
       now": the rest is offered again after tls_conn_resume(). Negative: the
       upper layer has closed the connection and wants no more input. */
    long (*on_data)(void *ctx, const uint8_t *data, size_t len);
    void (*on_writable)(void *ctx); /* send space became available */
    void (*on_eof)(void *ctx);      /* peer finished sending (FIN / close_notify) */
    void (*on_closed)(void *ctx);   /* connection gone: release upper state */
};

struct tls_conn;

/* Whether a new TLS connection in `mode` may be accepted now: false while
   the handshake queue would refuse its ClientHello (full, or late: see
   tls_server_cfg.handshake_queue_ms), counted as such a refusal in mode's
   counters. The caller then resets the connection before allocating
   anything for it, which costs less than a reset at its ClientHello. */
bool tls_conn_admit(struct tls_server *srv, enum tls_mode mode);

/* Take over an accepted pcb. mode TLS_MODE_NONE = plain TCP (srv unused).
   Returns NULL (and aborts the pcb) on out-of-memory. snd_buf: TCP send
   buffer to allow (bytes). */
struct tls_conn *tls_conn_accept(struct tls_server *srv, enum tls_mode mode, struct tcp_pcb *pcb,
                                 uint32_t snd_buf, const struct tls_conn_upper *up, void *up_ctx);

/* Queue plaintext; returns bytes accepted (may be 0 when the send buffer is
   full: on_writable follows). Full-size records are formed as data arrives. */
size_t tls_conn_send(struct tls_conn *c, const void *buf, size_t len);
/* As tls_conn_send, for bytes that stay unchanged at buf for the life of the
   process (static data): a NIC-mode connection writes whole records of them
   to TCP without staging and keeps only a reference for retransmissions
   (docs/design.md §4). */
size_t tls_conn_send_static(struct tls_conn *c, const void *buf, size_t len);
size_t tls_conn_send_space(struct tls_conn *c);
/* Emit a partial record now and push TCP. */
void tls_conn_flush(struct tls_conn *c);
/* Graceful close: everything queued is sent, then close_notify, then FIN. */
void tls_conn_close(struct tls_conn *c);
/* Upper layer can take input again. */
void tls_conn_resume(struct tls_conn *c);
/* Abort now (RST), e.g. on server shutdown. */
void tls_conn_abort(struct tls_conn *c);

/* The upper layer knows that `bytes` more application bytes will go out
   (tx: e.g. a response with its Content-Length) or come in (!tx: a request
   body). The offload policy auto decides by it (docs/design.md §4.1); other
   policies and modes ignore it. */
void tls_conn_expect(struct tls_conn *c, bool tx, uint64_t bytes);

/* For the upper layer's timeouts (the handshake has none of its own here). */
struct tls_conn_progress {
    bool handshaking;  /* the TLS handshake has not finished */
    bool tx_in_flight; /* bytes wait in TCP's send queue or are unacknowledged */
    uint64_t tx_acked; /* TCP bytes the peer acknowledged so far */
    uint64_t rx_bytes; /* TCP bytes consumed from the peer so far */
};
void tls_conn_get_progress(const struct tls_conn *c, struct tls_conn_progress *p);

#endif
