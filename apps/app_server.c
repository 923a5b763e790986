/* app_server.c - listeners and per-connection glue: tls_conn <-> HTTP session. */
#include "app_server.h"
#include "app_http.h"
#include "stack_driver.h"
#include "tls_conn.h"

#include <lwip/sys.h>
#include <lwip/tcp.h>
#include <lwip/timeouts.h>
#include <stdio.h>
#include <stdlib.h>

#define LIMITS_TICK_MIN_MS 20  /* the timeout timer's period: shortest timeout / 8, */
#define LIMITS_TICK_MAX_MS 500 /* within these bounds */

struct app_conn {
    struct app_server *srv;
    struct tls_conn *tc;
    struct app_http_session *http;
    struct app_conn *prev, *next;
    /* timeouts (see app_server_limits) */
    uint32_t accept_ms;        /* when accepted */
    enum app_http_phase phase; /* as of the last call into the session */
    uint64_t requests;         /* request heads the session parsed, as of then */
    uint32_t phase_ms;         /* when phase (or the request) last changed */
    uint32_t rx_ms;            /* last time request bytes were consumed */
    uint64_t tx_acked;         /* the transport's acknowledged bytes, at tx_ms */
    uint32_t tx_ms;            /* last time the peer acknowledged output */
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
    uint32_t tick_ms; /* 0: no timeout configured, no timer */
};

/* Call after every call into the session: a new phase or a new request
   restarts the phase clock. A connection's first request is timed from
   accept, so waiting before its first byte does not extend its deadline. */
static void note_phase(struct app_conn *ac)
{
    enum app_http_phase ph = app_http_session_phase(ac->http);
    uint64_t req = app_http_session_counters(ac->http)->requests;
    if (ph == ac->phase && req == ac->requests)
        return;
    ac->phase = ph;
    ac->requests = req;
    ac->phase_ms = ph == APP_HTTP_PHASE_HEAD && req == 0 ? ac->accept_ms : sys_now();
}

/* --- HTTP io over tls_conn --- */

static size_t io_send(void *ctx, const void *buf, size_t len)
{
    struct app_conn *ac = ctx;
    return tls_conn_send(ac->tc, buf, len);
}

static size_t io_send_static(void *ctx, const void *buf, size_t len)
{
    struct app_conn *ac = ctx;
    return tls_conn_send_static(ac->tc, buf, len);
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

static void io_expect(void *ctx, bool tx, uint64_t bytes)
{
    struct app_conn *ac = ctx;
    tls_conn_expect(ac->tc, tx, bytes);
}

static const struct app_http_io http_io = {
    .send = io_send,
    .send_static = io_send_static,
    .send_space = io_send_space,
    .flush = io_flush,
    .close = io_close,
    .stats_json = io_stats_json,
    .expect = io_expect,
};

/* --- tls_conn upper callbacks --- */

static long up_data(void *ctx, const uint8_t *data, size_t len)
{
    struct app_conn *ac = ctx;
    long n = app_http_session_input(ac->http, data, len);
    if (n != 0)
        ac->rx_ms = sys_now();
    note_phase(ac);
    /* -1: the session is finishing its last response; discard further input. */
    return n < 0 ? (long)len : n;
}

static void up_writable(void *ctx)
{
    struct app_conn *ac = ctx;
    app_http_session_on_writable(ac->http);
    note_phase(ac);
    tls_conn_resume(ac->tc); /* a pipelined request may now be consumed */
}

static void up_eof(void *ctx)
{
    struct app_conn *ac = ctx;
    app_http_session_on_eof(ac->http);
    note_phase(ac);
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
    if (s->cfg.limits.max_conns && s->c.active >= s->cfg.limits.max_conns) {
        /* Refused before any allocation: the connections already open keep
           every resource they have. */
        s->c.conns_refused_max++;
        tcp_abort(pcb);
        return ERR_ABRT;
    }
    if (!tls_conn_admit(s->cfg.tls, l->mode)) {
        /* The handshake queue would refuse the ClientHello (counted there):
           refused now, before any allocation. */
        tcp_abort(pcb);
        return ERR_ABRT;
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
    ac->accept_ms = ac->phase_ms = ac->rx_ms = ac->tx_ms = sys_now();
    ac->phase = APP_HTTP_PHASE_IDLE;
    /* lwIP clamps the MSS to its compile-time 1460; our peer is the kernel
       on a TUN device of our MTU, whose SYN announced MTU - 40. */
    if (s->cfg.mss > pcb->mss)
        pcb->mss = s->cfg.mss;
    stack_tcp_wnd_open(pcb); /* --rcv-wnd beyond lwIP's TCP_WND (docs/design.md §7) */
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

/* One connection against the limits. May free ac (abort, or a close that
   completes at once): the caller must not touch ac afterwards. */
static void check_limits(struct app_server *s, struct app_conn *ac, uint32_t now)
{
    const struct app_server_limits *lim = &s->cfg.limits;
    struct tls_conn_progress p;
    tls_conn_get_progress(ac->tc, &p);
    if (p.tx_acked != ac->tx_acked) {
        ac->tx_acked = p.tx_acked;
        ac->tx_ms = now;
    }
    if (p.handshaking) {
        if (lim->handshake_ms && now - ac->accept_ms >= lim->handshake_ms) {
            s->c.tls_timeout_handshake++;
            tls_conn_close(ac->tc); /* FIN; nothing was agreed to send an alert under */
        }
        return;
    }
    enum app_http_phase ph = ac->phase;
    if (lim->send_ms && (ph == APP_HTTP_PHASE_RESPONDING || p.tx_in_flight)) {
        /* No progress since the last acknowledgement or request activity. */
        uint32_t quiet =
            now - ac->tx_ms < now - ac->phase_ms ? now - ac->tx_ms : now - ac->phase_ms;
        if (quiet >= lim->send_ms) {
            /* The peer reads nothing: a graceful close could not be delivered. */
            s->c.http_timeout_send++;
            tls_conn_abort(ac->tc);
            return;
        }
    }
    uint32_t in_phase = now - ac->phase_ms;
    switch (ph) {
    case APP_HTTP_PHASE_IDLE:
        if (ac->requests == 0) {
            if (lim->header_ms && now - ac->accept_ms >= lim->header_ms) {
                s->c.http_timeout_header++;
                app_http_session_timeout(ac->http);
            }
        } else if (lim->idle_ms && in_phase >= lim->idle_ms) {
            s->c.http_timeout_idle++;
            tls_conn_close(ac->tc); /* close_notify (TLS), then FIN */
        }
        break;
    case APP_HTTP_PHASE_HEAD:
        if (lim->header_ms && in_phase >= lim->header_ms) {
            s->c.http_timeout_header++;
            app_http_session_timeout(ac->http);
        }
        break;
    case APP_HTTP_PHASE_BODY: {
        uint32_t quiet = now - ac->rx_ms < in_phase ? now - ac->rx_ms : in_phase;
        if (lim->body_ms && quiet >= lim->body_ms) {
            s->c.http_timeout_body++;
            app_http_session_timeout(ac->http);
        }
        break;
    }
    case APP_HTTP_PHASE_RESPONDING:
    case APP_HTTP_PHASE_DONE:
        break; /* send_ms above; a closing tls_conn has its own drain timeout */
    }
}

static void limits_tick(void *arg)
{
    struct app_server *s = arg;
    uint32_t now = sys_now();
    for (struct app_conn *ac = s->conns, *next; ac; ac = next) {
        next = ac->next; /* check_limits may free ac, never another connection */
        check_limits(s, ac, now);
    }
    sys_timeout(s->tick_ms, limits_tick, s);
}

static uint32_t limits_tick_ms(const struct app_server_limits *lim)
{
    const uint32_t t[] = {lim->handshake_ms, lim->header_ms, lim->idle_ms, lim->body_ms,
                          lim->send_ms};
    uint32_t shortest = 0;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (t[i] && (!shortest || t[i] < shortest))
            shortest = t[i];
    if (!shortest)
        return 0;
    uint32_t tick = shortest / 8;
    return tick < LIMITS_TICK_MIN_MS   ? LIMITS_TICK_MIN_MS
           : tick > LIMITS_TICK_MAX_MS ? LIMITS_TICK_MAX_MS
                                       : tick;
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
    s->tick_ms = limits_tick_ms(&cfg->limits);
    if (s->tick_ms)
        sys_timeout(s->tick_ms, limits_tick, s);
    return s;
}

void app_server_stop(struct app_server *s)
{
    if (!s)
        return;
    if (s->tick_ms)
        sys_untimeout(limits_tick, s);
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
