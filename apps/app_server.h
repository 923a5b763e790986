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

/* Writes the JSON object of all counters into buf; returns its length. */
typedef size_t (*app_stats_json_fn)(void *ctx, char *buf, size_t cap);

struct app_server_cfg {
    struct app_listener listeners[APP_SERVER_MAX_LISTENERS];
    unsigned n_listeners;
    struct tls_server *tls; /* certificate + config for the TLS listeners */
    uint32_t snd_buf;       /* TCP send buffer per connection (bytes) */
    uint16_t mss;           /* TX segment size (lwIP clamps to 1460 at SYN time) */
    app_stats_json_fn stats_json;
    void *stats_ctx;
};

/* Server counters (/stats section server). */
#define APP_SERVER_COUNTERS(X)                                                                     \
    X(accepted)                                                                                    \
    X(active) /* connections open now (gauge) */                                                   \
    X(accept_errors)                                                                               \
    X(session_oom)

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
