/* app_server.c - listeners and per-connection glue: tls_conn <-> HTTP session. */
#include "app_server.h"
#include "app_http.h"
#include "tls_conn.h"

#include <lwip/tcp.h>
#include <stdio.h>
#include <stdlib.h>

struct app_conn {
    struct app_server *srv;
    struct tls_conn *tc;
    struct app_http_session *http;
    struct app_conn *prev, *next;
};

struct app_listen {
    struct app_server *srv;
    struct tcp_pcb *pcb;
    enum tls_mode mode;
};

struct app_server {
    struct app_server_cfg cfg;
    struct app_listen listens[APP_SERVER_MAX_LISTENERS];
    struct app_conn *conns;
    struct app_server_counters c;
};

/* --- HTTP io over tls_conn --- */

static size_t io_send(void *ctx, const void *buf, size_t len)
{
    struct app_conn *ac = ctx;
    return tls_conn_send(ac->tc, buf, len);
}

static size_t io_send_space(void *ctx)
{
    struct app_conn *ac = ctx;
    return tls_conn_send_space(ac->tc);
}

static void io_flush(void *ctx)
{
    struct app_conn *ac = ctx;
    tls_conn_flush(ac->tc);
}

static void io_close(void *ctx)
{
    struct app_conn *ac = ctx;
    tls_conn_close(ac->tc);
}

static size_t io_stats_json(void *ctx, char *buf, size_t cap)
{
    struct app_conn *ac = ctx;
    if (!ac->srv->cfg.stats_json)
        return app_http_counters_json(app_http_global_counters(), buf, cap);
    return ac->srv->cfg.stats_json(ac->srv->cfg.stats_ctx, buf, cap);
}

static const struct app_http_io http_io = {
    .send = io_send,
    .send_space = io_send_space,
    .flush = io_flush,
    .close = io_close,
    .stats_json = io_stats_json,
};

/* --- tls_conn upper callbacks --- */

static long up_data(void *ctx, const uint8_t *data, size_t len)
{
    struct app_conn *ac = ctx;
    long n = app_http_session_input(ac->http, data, len);
    /* -1: the session is finishing its last response; discard further input. */
    return n < 0 ? (long)len : n;
}

static void up_writable(void *ctx)
{
    struct app_conn *ac = ctx;
    app_http_session_on_writable(ac->http);
    tls_conn_resume(ac->tc); /* a pipelined request may now be consumed */
}

static void up_eof(void *ctx)
{
    struct app_conn *ac = ctx;
    app_http_session_on_eof(ac->http);
}

static void up_closed(void *ctx)
{
    struct app_conn *ac = ctx;
    struct app_server *s = ac->srv;
    if (ac->prev)
        ac->prev->next = ac->next;
    else
        s->conns = ac->next;
    if (ac->next)
        ac->next->prev = ac->prev;
    s->c.active--;
    app_http_session_free(ac->http);
    free(ac);
}

static const struct tls_conn_upper conn_upper = {
    .on_data = up_data,
    .on_writable = up_writable,
    .on_eof = up_eof,
    .on_closed = up_closed,
};

static err_t on_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
    struct app_listen *l = arg;
    struct app_server *s = l->srv;
    if (err != ERR_OK || !pcb) {
        s->c.accept_errors++;
        return ERR_VAL;
    }
    struct app_conn *ac = calloc(1, sizeof(*ac));
    if (ac)
        ac->http = app_http_session_new(&http_io, ac);
    if (!ac || !ac->http) {
        free(ac);
        s->c.session_oom++;
        tcp_abort(pcb);
        return ERR_ABRT;
    }
    ac->srv = s;
    /* lwIP clamps the MSS to its compile-time 1460; our peer is the kernel
       on a TUN device of our MTU, whose SYN announced MTU - 40. */
    if (s->cfg.mss > pcb->mss)
        pcb->mss = s->cfg.mss;
    ac->tc = tls_conn_accept(s->cfg.tls, l->mode, pcb, s->cfg.snd_buf, &conn_upper, ac);
    if (!ac->tc) {
        app_http_session_free(ac->http);
        free(ac);
        s->c.session_oom++;
        return ERR_ABRT;
    }
    ac->next = s->conns;
    if (s->conns)
        s->conns->prev = ac;
    s->conns = ac;
    s->c.accepted++;
    s->c.active++;
    return ERR_OK;
}

struct app_server *app_server_start(const struct app_server_cfg *cfg, char *err, size_t errlen)
{
    struct app_server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    for (unsigned i = 0; i < cfg->n_listeners; i++) {
        struct app_listen *l = &s->listens[i];
        l->srv = s;
        l->mode = cfg->listeners[i].mode;
        struct tcp_pcb *pcb = tcp_new();
        if (!pcb || tcp_bind(pcb, IP4_ADDR_ANY, cfg->listeners[i].port) != ERR_OK) {
            snprintf(err, errlen, "cannot bind port %u", cfg->listeners[i].port);
            if (pcb)
                tcp_close(pcb);
            app_server_stop(s);
            return NULL;
        }
        l->pcb = tcp_listen_with_backlog(pcb, 64);
        if (!l->pcb) {
            snprintf(err, errlen, "cannot listen on port %u", cfg->listeners[i].port);
            tcp_close(pcb);
            app_server_stop(s);
            return NULL;
        }
        tcp_arg(l->pcb, l);
        tcp_accept(l->pcb, on_accept);
    }
    return s;
}

void app_server_stop(struct app_server *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < APP_SERVER_MAX_LISTENERS; i++)
        if (s->listens[i].pcb)
            tcp_close(s->listens[i].pcb);
    while (s->conns)
        tls_conn_abort(s->conns->tc); /* up_closed unlinks it */
    free(s);
}

const struct app_server_counters *app_server_counters(const struct app_server *s)
{
    return &s->c;
}
