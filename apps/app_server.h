/*
 * app_server.h - the HTTPS/HTTP server: listeners on lwIP, one HTTP session
 * per connection over a tls_conn. Runs under the lwIP core lock.
 */
#ifndef ANIC_APP_SERVER_H
#define ANIC_APP_SERVER_H

#include "tls_server.h"

#include <stddef.h>
#include <stdint.h>

#define APP_SERVER_MAX_LISTENERS 8

struct app_listener {
    uint16_t port;
    enum tls_mode mode; /* TLS_MODE_NONE: plain HTTP */
};

/* Connection limits. Times in ms, 0 = no limit. Enforced by one periodic
   timer in the tcpip thread (period: a fraction of the shortest timeout). */
struct app_server_limits {
    uint32_t handshake_ms; /* TLS handshake must finish within this after accept */
    uint32_t header_ms;    /* total time for a request head (from its first byte; for a
                              connection's first request, from accept): 408 */
    uint32_t idle_ms;      /* keep-alive: no byte of a next request for this long: close */
    uint32_t body_ms;      /* request body: no byte for this long: 408 */
    uint32_t send_ms;      /* output waiting, no byte acknowledged for this long: abort */
    uint32_t max_conns;    /* open connections; more are refused at accept (RST) */
};

/* Writes the JSON object of all counters into buf; returns its length. */
typedef size_t (*app_stats_json_fn)(void *ctx, char *buf, size_t cap);

struct app_server_cfg {
    struct app_listener listeners[APP_SERVER_MAX_LISTENERS];
    unsigned n_listeners;
    struct tls_server *tls; /* certificate + config for the TLS listeners */
    uint32_t snd_buf;       /* TCP send buffer per connection (bytes) */
    uint16_t mss;           /* TX segment size (lwIP clamps to 1460 at SYN time) */
    struct app_server_limits limits;
    app_stats_json_fn stats_json;
    void *stats_ctx;
};

/* Server counters (/stats section server). */
#define APP_SERVER_COUNTERS(X)                                                                     \
    X(accepted)                                                                                    \
    X(active) /* connections open now (gauge) */                                                   \
    X(accept_errors)                                                                               \
    X(session_oom)                                                                                 \
    X(conns_refused_max)     /* accepts over limits.max_conns, answered with RST */                \
    X(tls_timeout_handshake) /* closed: handshake not done in handshake_ms */                      \
    X(http_timeout_header)   /* 408: request head not complete in header_ms */                     \
    X(http_timeout_idle)     /* closed: keep-alive idle for idle_ms */                             \
    X(http_timeout_body)     /* 408: request body stalled for body_ms */                           \
    X(http_timeout_send)     /* aborted: peer acknowledged nothing for send_ms */

#define APP_SERVER_CTR_FIELD(name) uint64_t name;
struct app_server_counters {
    APP_SERVER_COUNTERS(APP_SERVER_CTR_FIELD)
};

struct app_server;
/* Call with the core lock held. */
struct app_server *app_server_start(const struct app_server_cfg *cfg, char *err, size_t errlen);
/* Abort every connection and close listeners; core lock held. */
void app_server_stop(struct app_server *s);
const struct app_server_counters *app_server_counters(const struct app_server *s);

#endif
