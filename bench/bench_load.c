/* bench_load.c - `anic bench --load`: wrk against anic and nginx; see bench_load.h. */
#define _GNU_SOURCE
#include "bench_load.h"
#include "bench_nginx.h"
#include "app_runtime.h"
#include "bench_flows.h"
#include "stack_driver.h"
#include "stack_host.h"
#include "stack_mem.h"
#include "stack_rto.h"
#include "tls_slots.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <lwip/tcpip.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LOAD_MAX_LIST    8
#define LOAD_NGINX_HTTP  BENCH_NGINX_HTTP
#define LOAD_NGINX_HTTPS BENCH_NGINX_HTTPS
#define LOAD_NGINX_ADDR  BENCH_NGINX_ADDR
#define LOAD_WRK_TIMEOUT "5s" /* a request slower than this counts as a timeout */
#define LOAD_WRK_GRACE_S 30   /* wrk's deadline past its duration (connect storms) */
#define LOAD_OUT_CAP     16384
/* A cell of N connections runs at least N / LOAD_CONNS_PER_S seconds: wrk
   counts only finished requests, and 5000 TLS handshakes (wrk's own among
   them, on the same 2 cores) took more than 5 s even against nginx, whose
   cell then measured nothing (0 requests). */
#define LOAD_CONNS_PER_S 250
/* The cells' server closes a connection after this long without a request
   (header and idle timeouts; 60 and 75 s by default): wrk's exit resets
   thousands of connections at once, and a RST the NIC drops for want of RX
   buffers (nic rx_no_buffer) leaves its connection open until a timeout.
   Shorter than the release wait after a cell, so those are closed, and
   counted (http timeouts), before the next cell. */
#define LOAD_CELL_TIMEOUT_MS 20000u
#define LOAD_SETTLE_MS       1000 /* between cells: the last cell's connections close */
#define LOAD_DEFAULT_CSV     "anic-load.csv"
#define LOAD_CIPHER          BENCH_CIPHER
#define LOAD_CIPHER_MBED     "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"

struct load_opts {
    unsigned seconds;
    unsigned conns[LOAD_MAX_LIST], n_conns;
    uint64_t sizes[LOAD_MAX_LIST];
    unsigned n_sizes;
    enum tls_mode modes[LOAD_MAX_LIST];
    unsigned n_modes;
    unsigned wrk_threads, nginx_workers;
    bool nginx;
    const char *csv_path;
    unsigned soak_s, soak_round_s, soak_conns; /* --soak: 0 = the benchmark */
    unsigned hs_s, hs_par;                     /* --load-handshakes: s_time seconds, processes */
    unsigned hs_workers;                       /* --handshake-workers (0 = the runtime's) */
    const char *soak_fault;
    uint64_t seed; /* --seed: the runtime's (fault-tx S, fault-rx S+1) */
    bool seed_set; /* else the runtime chooses one and it is printed */
    /* --conn-rate: a new TLS connection per request; --flows: long-lived
       transfers (bench_flows.h). policy: --offload-policy of the nic mode
       (conn-rate: of the extra nic mode --conn-rate-auto adds). */
    bool conn_rate, conn_rate_auto, policy_set;
    unsigned rounds;
    bool rounds_set; /* --rounds given: --flows repeats its cells too */
    struct tls_offload_policy policy;
    uint64_t flows[LOAD_MAX_LIST];
    unsigned n_flows;
    uint64_t flow_size;
    uint64_t flow_rate; /* --flow-rate: MB/s of a --flows cell's client, all flows (0: unpaced) */
    uint64_t irq_coalesce_us;      /* anic serve's --irq-coalesce-us */
    uint64_t flows_active;         /* --flows-active: transfers at once per cell (0: every flow) */
    uint64_t slots[LOAD_MAX_LIST]; /* --send-slots LIST (anic serve's; 0: off; auto:
                                      APP_SEND_SLOTS_AUTO) */
    unsigned n_slots;
    /* --flows with several --send-slots: each mode once per value, as if
       another mode (label "nic:64"); mode_slots[mi] is modes[mi]'s value. */
    uint64_t mode_slots[LOAD_MAX_LIST];
    bool slots_per_mode;
    bool flow_down, flow_up;
    uint64_t cache_sizes[LOAD_MAX_LIST]; /* --cache-sizes: a --flows run per --nic-ctx-cache */
    unsigned n_cache_sizes;
    const char *flows_counters; /* --flows-counters: every counter's delta per cell */
};

/* One wrk run, parsed. */
struct load_result {
    bool ran;
    double req_s, mb_s, p50_ms, p99_ms;
    uint64_t requests, errors, timeouts, non2xx;
    uint64_t e_connect, e_read, e_write; /* errors, as wrk splits them */
};

struct load {
    struct load_opts o;
    char dir[64], cert[96], key[96], netns[32];
    char wrk[256];
    struct bench_nginx ng;
    struct app_runtime rt;
    bool runtime;
    FILE *csv;
};

static volatile sig_atomic_t load_stop;

static void on_signal(int sig)
{
    (void)sig;
    load_stop = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !load_stop) {
    }
}

static bool find_tool(const char *name, char *out, size_t cap)
{
    return bench_find_tool(name, out, cap);
}

static int run_capture(char *const argv[], char *out, size_t cap, const char *err_path,
                       double timeout_s)
{
    return bench_run_capture(argv, out, cap, err_path, timeout_s, &load_stop);
}

static int write_pattern_file(const char *path, uint64_t n)
{
    return bench_write_pattern_file(path, n);
}

static int make_files(struct load *L)
{
    char p[160];
    snprintf(p, sizeof(p), "%s/www", L->dir);
    if (mkdir(p, 0755) < 0)
        return -1;
    snprintf(p, sizeof(p), "%s/www/bytes", L->dir);
    if (mkdir(p, 0755) < 0)
        return -1;
    for (unsigned i = 0; i < L->o.n_sizes; i++) {
        snprintf(p, sizeof(p), "%s/www/bytes/%" PRIu64, L->dir, L->o.sizes[i]);
        if (write_pattern_file(p, L->o.sizes[i]) < 0)
            return -1;
        chmod(p, 0644);
    }
    return 0;
}

/* ---- wrk ---- */

/* "1.23ms", "850.00us", "2.10s" -> milliseconds; -1 if unparsable. */
static double parse_latency_ms(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s)
        return -1;
    if (!strncmp(end, "us", 2))
        return v / 1000;
    if (!strncmp(end, "ms", 2))
        return v;
    if (!strncmp(end, "s", 1))
        return v * 1000;
    if (!strncmp(end, "m", 1))
        return v * 60000;
    return -1;
}

static bool parse_wrk(const char *out, uint64_t size, struct load_result *r)
{
    memset(r, 0, sizeof(*r));
    r->p50_ms = r->p99_ms = -1;
    const char *p;
    if (!(p = strstr(out, "Requests/sec:")) || sscanf(p, "Requests/sec: %lf", &r->req_s) != 1)
        return false;
    if ((p = strstr(out, " requests in ")))
        for (const char *q = p; q > out && q[-1] != '\n'; q--)
            if (q[-1] == ' ' && sscanf(q, "%" SCNu64, &r->requests) == 1)
                break;
    if ((p = strstr(out, "\n     50%")))
        r->p50_ms = parse_latency_ms(p + 10);
    if ((p = strstr(out, "\n     99%")))
        r->p99_ms = parse_latency_ms(p + 10);
    unsigned long long c = 0, rd = 0, w = 0, t = 0;
    if ((p = strstr(out, "Socket errors:")) &&
        sscanf(p, "Socket errors: connect %llu, read %llu, write %llu, timeout %llu", &c, &rd, &w,
               &t) == 4) {
        r->errors = c + rd + w;
        r->e_connect = c, r->e_read = rd, r->e_write = w;
        r->timeouts = t;
    }
    unsigned long long bad = 0;
    if ((p = strstr(out, "Non-2xx or 3xx responses:")) &&
        sscanf(p, "Non-2xx or 3xx responses: %llu", &bad) == 1)
        r->non2xx = bad;
    r->mb_s = r->req_s * (double)size / 1e6;
    r->ran = true;
    return true;
}

/* One wrk run against url. close_each: "Connection: close", so wrk opens a
   new connection (a full handshake: neither server resumes sessions for wrk)
   for every request (--conn-rate). */
static unsigned cell_seconds(const struct load *L, unsigned conns)
{
    unsigned s = conns / LOAD_CONNS_PER_S;
    return s > L->o.seconds ? s : L->o.seconds;
}

static void run_wrk(struct load *L, const char *url, unsigned conns, uint64_t size, bool close_each,
                    struct load_result *r)
{
    unsigned secs = cell_seconds(L, conns);
    char t[16], c[16], d[16], out[LOAD_OUT_CAP], errp[160];
    unsigned threads = L->o.wrk_threads < conns ? L->o.wrk_threads : conns;
    snprintf(t, sizeof(t), "%u", threads);
    snprintf(c, sizeof(c), "%u", conns);
    snprintf(d, sizeof(d), "%us", secs);
    snprintf(errp, sizeof(errp), "%s/wrk.stderr", L->dir);
    char *argv[16];
    unsigned n = 0;
    argv[n++] = L->wrk;
    argv[n++] = "-t", argv[n++] = t;
    argv[n++] = "-c", argv[n++] = c;
    argv[n++] = "-d", argv[n++] = d;
    argv[n++] = "--timeout", argv[n++] = LOAD_WRK_TIMEOUT;
    if (close_each)
        argv[n++] = "-H", argv[n++] = "Connection: close";
    argv[n++] = "--latency";
    argv[n++] = (char *)url;
    argv[n] = NULL;
    int rc = run_capture(argv, out, sizeof(out), errp, secs + LOAD_WRK_GRACE_S);
    if (rc != 0 || !parse_wrk(out, size, r)) {
        memset(r, 0, sizeof(*r));
        fprintf(stderr, "anic bench --load: wrk %s failed (rc %d):\n%s\n", url, rc, out);
    } else if (r->requests == 0) {
        fprintf(stderr, "anic bench --load: wrk %s completed no request:\n%s\n", url, out);
    }
}

/* ---- the run ---- */

static const char *mode_label(enum tls_mode m)
{
    return app_mode_name(m);
}

/* A --send-slots value as the option spells it: "auto" or the number. */
static const char *slots_name(uint64_t v, char *buf, size_t cap)
{
    if (v == APP_SEND_SLOTS_AUTO)
        snprintf(buf, cap, "auto");
    else
        snprintf(buf, cap, "%" PRIu64, v);
    return buf;
}

/* A --flows cell's mode column: the mode, and its send slots when
   --send-slots listed several ("nic:64", "nic:auto"). */
static const char *cell_label(const struct load *L, unsigned mi, char *buf, size_t cap)
{
    char v[16];
    if (!L->o.slots_per_mode)
        snprintf(buf, cap, "%s", mode_label(L->o.modes[mi]));
    else
        snprintf(buf, cap, "%s:%s", mode_label(L->o.modes[mi]),
                 slots_name(L->o.mode_slots[mi], v, sizeof(v)));
    return buf;
}

static uint16_t anic_port(enum tls_mode m)
{
    return m == TLS_MODE_NONE ? 80 : m == TLS_MODE_SW ? 443 : m == TLS_MODE_MBEDTLS ? 4431 : 4432;
}

/* The app_stats section of a TLS mode's listener. */
static const char *tls_section(enum tls_mode m)
{
    return m == TLS_MODE_SW ? "tls_sw" : m == TLS_MODE_MBEDTLS ? "tls_mbedtls" : "tls_nic";
}

static void fmt_size(uint64_t n, char *out, size_t cap)
{
    if (n >= (1u << 20) && n % (1u << 20) == 0)
        snprintf(out, cap, "%" PRIu64 "M", n >> 20);
    else if (n >= 1024 && n % 1024 == 0)
        snprintf(out, cap, "%" PRIu64 "K", n >> 10);
    else
        snprintf(out, cap, "%" PRIu64, n);
}

static void print_cell(const char *who, const struct load_result *r)
{
    if (!r->ran) {
        printf(" | %-5s %9s %8s %8s %8s %6s %6s", who, "-", "-", "-", "-", "-", "-");
        return;
    }
    printf(" | %-5s %9.0f %8.1f %8.2f %8.2f %6" PRIu64 " %6" PRIu64, who, r->req_s, r->mb_s,
           r->p50_ms, r->p99_ms, r->errors + r->non2xx, r->timeouts);
}

static void csv_row(struct load *L, const char *server, const char *mode, unsigned conns,
                    uint64_t size, const struct load_result *r)
{
    if (!L->csv || !r->ran)
        return;
    fprintf(L->csv,
            "%s,%s,%u,%" PRIu64 ",%u,%.1f,%.3f,%.3f,%.3f,%" PRIu64 ",%" PRIu64 ",%" PRIu64
            ",%" PRIu64 "\n",
            server, mode, conns, size, cell_seconds(L, conns), r->req_s, r->mb_s, r->p50_ms,
            r->p99_ms, r->requests, r->errors, r->timeouts, r->non2xx);
    fflush(L->csv);
}

/* After an anic cell: wait until every connection wrk opened is gone
   (server.active 0), at most LOAD_IDLE_WAIT_S: beyond the 30 s drain of a
   closing TLS connection (tls/tls_conn.c). Returns what is left (0: all
   released) and the seconds it took. */
#define LOAD_IDLE_WAIT_S 40
static uint64_t wait_released(struct load *L, double *secs)
{
    double t0 = now_s();
    uint64_t left = app_server_counters(L->rt.server)->active;
    while (left && !load_stop && now_s() - t0 < LOAD_IDLE_WAIT_S) {
        sleep_ms(50);
        left = app_server_counters(L->rt.server)->active;
    }
    *secs = now_s() - t0;
    return left;
}

/* anic's side of a cell: what it refused or closed, to set next to wrk's
   errors (wrk counts a failed TCP or TLS handshake as a connect error and
   reconnects; a connection closed under a request as a read error). */
struct cell_ctr {
    uint64_t accepted, refused_max, queue_full, queue_late, hs_timeout, hs_failed, hs_abandoned;
    uint64_t timeouts_http; /* header, idle, body, send */
    uint64_t rx_no_buffer, rto_give_up, pool_exhausted, held_peak;
};

static void cell_snap(struct load *L, enum tls_mode m, struct cell_ctr *c)
{
    static struct app_stat st[APP_STATS_MAX];
    LOCK_TCPIP_CORE();
    size_t n = app_stats_collect(&L->rt.stats, st);
    UNLOCK_TCPIP_CORE();
    const char *tls = tls_section(m);
    uint64_t v;
    memset(c, 0, sizeof(*c));
    c->accepted = app_stats_get(st, n, "server", "accepted");
    c->refused_max = app_stats_get(st, n, "server", "conns_refused_max");
    c->hs_timeout = app_stats_get(st, n, "server", "tls_timeout_handshake");
    c->timeouts_http = app_stats_get(st, n, "server", "http_timeout_header") +
                       app_stats_get(st, n, "server", "http_timeout_idle") +
                       app_stats_get(st, n, "server", "http_timeout_body") +
                       app_stats_get(st, n, "server", "http_timeout_send");
    if (m != TLS_MODE_NONE) {
        c->queue_full = app_stats_lookup(st, n, tls, "handshakes_queue_full", &v) > 0 ? v : 0;
        c->queue_late = app_stats_lookup(st, n, tls, "handshakes_queue_late", &v) > 0 ? v : 0;
        c->hs_failed = app_stats_lookup(st, n, tls, "handshakes_failed", &v) > 0 ? v : 0;
        c->hs_abandoned = app_stats_lookup(st, n, tls, "handshakes_abandoned", &v) > 0 ? v : 0;
    }
    c->rx_no_buffer = app_stats_get(st, n, "nic", "rx_no_buffer");
    c->rto_give_up = app_stats_get(st, n, "tcp", "rto_give_up");
    c->pool_exhausted = app_stats_get(st, n, "driver", "rx_pool_exhausted");
    c->held_peak = app_stats_get(st, n, "driver", "rx_bufs_held_peak");
}

/* The line under an anic cell: wrk's errors by kind, then anic's counted
   refusals and closes over the cell (and its release wait). Every wrk error
   is a connection anic refused, timed out or failed (counted), or one it
   never saw (a SYN the NIC dropped, nic rx_no_buffer, would be retried by
   the kernel, not an error): "matched" says the counts allow that. */
static bool print_cell_ctr(const struct load_result *r, const struct cell_ctr *a,
                           const struct cell_ctr *b)
{
    uint64_t refused = (b->refused_max - a->refused_max) + (b->queue_full - a->queue_full) +
                       (b->queue_late - a->queue_late);
    uint64_t closed = (b->hs_timeout - a->hs_timeout) + (b->timeouts_http - a->timeouts_http) +
                      (b->rto_give_up - a->rto_give_up) + (b->hs_failed - a->hs_failed);
    uint64_t errs = r->e_connect + r->e_read + r->e_write;
    bool matched = errs <= refused + closed;
    printf("       wrk errors: connect %" PRIu64 " read %" PRIu64 " write %" PRIu64
           " (timeouts %" PRIu64 ", non-2xx %" PRIu64 ") | anic: accepted %" PRIu64
           ", refused: max-conns %" PRIu64 " handshake queue full %" PRIu64 " late %" PRIu64
           "; timeouts: handshake %" PRIu64 " http %" PRIu64 "; rto give-ups %" PRIu64
           "; handshakes failed %" PRIu64 " abandoned %" PRIu64 " | %s\n",
           r->e_connect, r->e_read, r->e_write, r->timeouts, r->non2xx, b->accepted - a->accepted,
           b->refused_max - a->refused_max, b->queue_full - a->queue_full,
           b->queue_late - a->queue_late, b->hs_timeout - a->hs_timeout,
           b->timeouts_http - a->timeouts_http, b->rto_give_up - a->rto_give_up,
           b->hs_failed - a->hs_failed, b->hs_abandoned - a->hs_abandoned,
           matched ? "matched" : "NOT MATCHED by anic's counters");
    printf("       nic rx_no_buffer %" PRIu64 " (driver: RX pool exhausted %" PRIu64
           ", RX buffers held at most %" PRIu64 ")\n",
           b->rx_no_buffer - a->rx_no_buffer, b->pool_exhausted - a->pool_exhausted, b->held_peak);
    return matched;
}

static int run_cells(struct load *L)
{
    unsigned leaked_cells = 0, unmatched_cells = 0;
    double release_max_s = 0;
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &L->rt.cfg.host_ip, host, sizeof(host));
    printf("anic bench --load: wrk -t%u -c N -d %us --timeout %s; anic on %s (plain 80, sw 443, "
           "mbedtls 4431, nic 4432), nginx %s (%u worker%s) on %s (8080, 8443), TLS 1.2 %s, "
           "ECDSA P-256; cells of N > %u connections run N/%u s\n",
           L->o.wrk_threads, L->o.seconds, LOAD_WRK_TIMEOUT, host, L->o.nginx ? "1.22" : "off",
           L->o.nginx_workers, L->o.nginx_workers == 1 ? "" : "s", LOAD_NGINX_ADDR, LOAD_CIPHER,
           (L->o.seconds + 1) * LOAD_CONNS_PER_S - 1, LOAD_CONNS_PER_S);
    printf("%6s %6s %-7s | %-5s %9s %8s %8s %8s %6s %6s | %-5s %9s %8s %8s %8s %6s %6s | %s\n",
           "conns", "size", "mode", "anic", "req/s", "MB/s", "p50 ms", "p99 ms", "errors", "t/o",
           "nginx", "req/s", "MB/s", "p50 ms", "p99 ms", "errors", "t/o", "anic/nginx");
    for (unsigned si = 0; si < L->o.n_sizes && !load_stop; si++) {
        uint64_t size = L->o.sizes[si];
        for (unsigned ci = 0; ci < L->o.n_conns && !load_stop; ci++) {
            unsigned conns = L->o.conns[ci];
            /* nginx has one TLS configuration: measured once, compared with
               every anic TLS mode. */
            struct load_result ng_plain = {0}, ng_tls = {0};
            for (unsigned mi = 0; mi < L->o.n_modes && !load_stop; mi++) {
                enum tls_mode m = L->o.modes[mi];
                char url[128], sz[24];
                snprintf(url, sizeof(url), "%s://%s:%u/bytes/%" PRIu64,
                         m == TLS_MODE_NONE ? "http" : "https", host, anic_port(m), size);
                struct load_result a;
                struct cell_ctr ca, cb;
                cell_snap(L, m, &ca);
                run_wrk(L, url, conns, size, false, &a);
                double rel_s;
                uint64_t left = wait_released(L, &rel_s);
                cell_snap(L, m, &cb);
                release_max_s = rel_s > release_max_s ? rel_s : release_max_s;
                if (left) {
                    leaked_cells++;
                    printf("  !! %" PRIu64 " connections still open %d s after wrk exited\n", left,
                           LOAD_IDLE_WAIT_S);
                }
                sleep_ms(LOAD_SETTLE_MS);
                struct load_result *ng = m == TLS_MODE_NONE ? &ng_plain : &ng_tls;
                if (L->o.nginx && !ng->ran && !load_stop) {
                    snprintf(url, sizeof(url), "%s://%s:%d/bytes/%" PRIu64,
                             m == TLS_MODE_NONE ? "http" : "https", LOAD_NGINX_ADDR,
                             m == TLS_MODE_NONE ? LOAD_NGINX_HTTP : LOAD_NGINX_HTTPS, size);
                    run_wrk(L, url, conns, size, false, ng);
                    sleep_ms(LOAD_SETTLE_MS);
                    csv_row(L, "nginx", m == TLS_MODE_NONE ? "plain" : "tls", conns, size, ng);
                }
                csv_row(L, "anic", mode_label(m), conns, size, &a);
                fmt_size(size, sz, sizeof(sz));
                printf("%6u %6s %-7s", conns, sz, mode_label(m));
                print_cell("", &a);
                print_cell("", ng);
                if (a.ran && ng->ran && ng->req_s > 0)
                    printf(" | %.2fx\n", a.req_s / ng->req_s);
                else
                    printf(" | -\n");
                unmatched_cells += !print_cell_ctr(&a, &ca, &cb);
                fflush(stdout);
            }
        }
    }
    const struct app_server_counters *sc = app_server_counters(L->rt.server);
    printf("anic server: accepted %" PRIu64 ", refused (max-conns) %" PRIu64
           ", timeouts: handshake %" PRIu64 " header %" PRIu64 " idle %" PRIu64 " body %" PRIu64
           " send %" PRIu64 "\n",
           sc->accepted, sc->conns_refused_max, sc->tls_timeout_handshake, sc->http_timeout_header,
           sc->http_timeout_idle, sc->http_timeout_body, sc->http_timeout_send);
    printf("anic connections released after every cell: %s (slowest %.1f s)\n",
           leaked_cells ? "NO" : "yes", release_max_s);
    printf("wrk errors matched by anic's refusals, timeouts and failures in every cell: %s\n",
           unmatched_cells ? "NO" : "yes");
    const struct stack_rto_counters *rc = stack_rto_counters();
    printf("anic tcp: fast_rto_fired %" PRIu64 ", RTT samples %" PRIu64 " (%" PRIu64
           " dropped by Karn's rule)\n",
           rc->fast_rto_fired, rc->rto_rtt_samples, rc->rto_rtt_karn);
    return load_stop ? 130 : leaked_cells || unmatched_cells ? 1 : 0;
}

/* ---- soak (--soak S): long load under faults, then nothing may be left ---- */

#define SOAK_GET_SIZE ((1u << 20) + 4099) /* a verified download: crosses records oddly */
#define SOAK_PUT_SIZE ((1u << 20) + 1237)
/* A client's RST that the fault stage drops leaves its connection open until
   a timeout: the soak's server uses SOAK_TIMEOUT_MS (instead of 60-75 s), and
   the end waits SOAK_SETTLE_S for them. */
#define SOAK_TIMEOUT_MS 8000u
#define SOAK_SETTLE_S   45 /* > the 30 s drain timeout of a closing TLS connection */
/* "Flat": the allocator's in-use heap without the RX pool (bounded and
   counted by the driver), once every connection closed, is within 1 % + 1 MB
   of mid-run. The heap, not RSS: RSS keeps growing for minutes while the heap
   is flat, as the pages of the RX pool's buffers (64 KiB each with LRO,
   allocated early) are written for the first time (README, the soak). A leak
   of 1 KiB per connection grows the heap ~0.1 MB per round of 100
   connections. */
#define SOAK_HEAP_SLACK    1.01
#define SOAK_HEAP_SLACK_MB 1.0
#define SOAK_DEFAULT_FLT   "loss 1% reorder 2%"

static uint64_t rss_bytes(void)
{
    unsigned long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The allocator's in-use bytes (the heap's allocated chunks plus mmapped
   ones, plus lwIP's blocks in stack_mem's arena), whatever RSS the arenas
   keep: a leak grows this, fragmentation only RSS. */
static uint64_t heap_inuse_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    struct stack_mem_counters m; /* lwIP's arena blocks, mmapped: outside mallinfo */
    stack_mem_get_counters(&m);
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd + m.arena_live_bytes;
}

/* The heap the RX pool takes (it only grows, up to its bound). */
static uint64_t rx_pool_bytes(struct load *L, const struct app_stat *st, size_t n)
{
    return app_stats_get(st, n, "driver", "rx_bufs_allocated") *
           stack_driver_rx_buf_bytes(stack_host_driver(L->rt.host));
}

/* The in-use heap without the RX pool. */
static uint64_t heap_minus(uint64_t heap, uint64_t pool)
{
    return heap > pool ? heap - pool : 0;
}

static bool sha256_hex_file(const char *path, char out[65])
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;
    uint8_t buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        ok = EVP_DigestUpdate(c, buf, n) == 1;
    unsigned char md[32];
    unsigned len = 0;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(c, md, &len) == 1 && len == 32;
    EVP_MD_CTX_free(c);
    fclose(f);
    for (unsigned i = 0; ok && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return ok;
}

/* A file of n random bytes. */
static int write_random_file(const char *path, size_t n)
{
    FILE *f = fopen(path, "we");
    if (!f)
        return -1;
    uint8_t buf[65536];
    for (size_t left = n; left;) {
        size_t k = left < sizeof(buf) ? left : sizeof(buf);
        if (RAND_bytes(buf, (int)k) != 1 || fwrite(buf, 1, k, f) != k) {
            fclose(f);
            return -1;
        }
        left -= k;
    }
    return fclose(f) == 0 ? 0 : -1;
}

struct soak_check {
    char curl[256], get_path[160], put_path[160];
    char get_sha[65], put_sha[65];
    uint64_t tried, wrong, failed; /* wrong: completed with other bytes; failed: no answer */
};

/* One verified download and one verified upload on mode m's port. */
static void soak_verify(struct load *L, struct soak_check *k, const char *host, enum tls_mode m)
{
    char url[160], out[256], got[65];
    const char *scheme = m == TLS_MODE_NONE ? "http" : "https";
    snprintf(url, sizeof(url), "%s://%s:%u/bytes/%u", scheme, host, anic_port(m), SOAK_GET_SIZE);
    char *get[] = {k->curl, "-sS",       "--max-time", "60",           "--cacert", L->cert,
                   "-o",    k->get_path, "-w",         "%{http_code}", url,        NULL};
    k->tried++;
    unlink(k->get_path);
    int rc = run_capture(get, out, sizeof(out), NULL, 70);
    if (rc != 0 || strcmp(out, "200") != 0)
        k->failed++;
    else if (!sha256_hex_file(k->get_path, got) || strcmp(got, k->get_sha) != 0)
        k->wrong++;
    snprintf(url, sizeof(url), "%s://%s:%u/upload", scheme, host, anic_port(m));
    char *put[] = {k->curl, "-sS", "--max-time", "60", "--cacert",
                   L->cert, "-T",  k->put_path,  url,  NULL};
    k->tried++;
    rc = run_capture(put, out, sizeof(out), NULL, 70);
    if (rc != 0 || strlen(out) < 64)
        k->failed++;
    else if (strncmp(out, k->put_sha, 64) != 0)
        k->wrong++;
}

static uint64_t stat_sum(const struct app_stat *st, size_t n, const char *sec_prefix,
                         const char *name)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        if (!strncmp(st[i].section, sec_prefix, strlen(sec_prefix)) && !strcmp(st[i].name, name))
            v += st[i].value;
    return v;
}

/* Every counter, collected under the core lock (app_stats.h). */
static size_t collect_stats(struct load *L, struct app_stat *st)
{
    LOCK_TCPIP_CORE();
    size_t n = app_stats_collect(&L->rt.stats, st);
    UNLOCK_TCPIP_CORE();
    return n;
}

/* What must be back to zero once every connection closed. */
struct soak_left {
    uint64_t active, held, compact, tx_ctx, rx_ctx, del_pending;
};

static struct soak_left soak_leftovers(struct load *L)
{
    static struct app_stat st[APP_STATS_MAX];
    size_t n = collect_stats(L, st);
    struct soak_left r;
    r.active = app_stats_get(st, n, "server", "active");
    r.held = app_stats_get(st, n, "driver", "rx_bufs_held");
    r.compact = app_stats_get(st, n, "driver", "rx_compact_live");
    r.tx_ctx = app_stats_get(st, n, "nic_tls", "tx_tls_ctx") -
               app_stats_get(st, n, "nic_tls", "tx_tls_del");
    r.rx_ctx = app_stats_get(st, n, "nic_tls", "rx_tls_ctx") -
               app_stats_get(st, n, "nic_tls", "rx_tls_del");
    r.del_pending = stat_sum(st, n, "offload", "tx_tls_ctx_del_pending") +
                    stat_sum(st, n, "offload", "rx_tls_ctx_del_pending");
    return r;
}

static bool soak_clean(const struct soak_left *r)
{
    return !r->active && !r->held && !r->compact && !r->tx_ctx && !r->rx_ctx && !r->del_pending;
}

static int run_soak(struct load *L)
{
    char host[INET_ADDRSTRLEN], ft[NIC_FAULT_FMT_LEN], fr[NIC_FAULT_FMT_LEN];
    inet_ntop(AF_INET, &L->rt.cfg.host_ip, host, sizeof(host));
    nic_fault_cfg_format(&L->rt.cfg.fault_tx, ft, sizeof(ft));
    nic_fault_cfg_format(&L->rt.cfg.fault_rx, fr, sizeof(fr));
    static struct soak_check k;
    if (!find_tool("curl", k.curl, sizeof(k.curl))) {
        fprintf(stderr, "anic bench --soak: needs curl\n");
        return 1;
    }
    snprintf(k.get_path, sizeof(k.get_path), "%s/soak-get.bin", L->dir);
    snprintf(k.put_path, sizeof(k.put_path), "%s/soak-put.bin", L->dir);
    if (write_pattern_file(k.get_path, SOAK_GET_SIZE) < 0 ||
        !sha256_hex_file(k.get_path, k.get_sha) ||
        write_random_file(k.put_path, SOAK_PUT_SIZE) < 0 ||
        !sha256_hex_file(k.put_path, k.put_sha)) {
        fprintf(stderr, "anic bench --soak: cannot prepare the check files in %s\n", L->dir);
        return 1;
    }
    printf("anic bench --soak %us: wrk -c %u -d %us per round (16 KiB objects, modes in turn), "
           "then a verified %u-byte GET and %u-byte PUT per mode; fault-tx '%s', fault-rx '%s'\n",
           L->o.soak_s, L->o.soak_conns, L->o.soak_round_s, SOAK_GET_SIZE, SOAK_PUT_SIZE, ft, fr);
    printf("%6s %5s %-7s %9s %7s %6s %6s | %7s %6s %6s | %8s %8s %8s %6s %7s %6s\n", "t s", "round",
           "mode", "req/s", "errors", "t/o", "non2xx", "checks", "wrong", "failed", "RSS MB",
           "heap MB", "pool MB", "held", "compact", "active");
    double t0 = now_s();
    static uint64_t rss_hist[86400], heap_hist[86400]; /* per round (>= 1 s, <= 86400 s) */
    uint64_t rss_last = 0, reqs = 0, errs = 0, tos = 0, non2xx = 0;
    unsigned round = 0;
    static struct app_stat st[APP_STATS_MAX];
    while (!load_stop && now_s() - t0 + L->o.soak_round_s <= L->o.soak_s + 0.5) {
        enum tls_mode m = L->o.modes[round % L->o.n_modes];
        char url[128], d[16], c[16], t[16], out[LOAD_OUT_CAP], errp[160];
        snprintf(url, sizeof(url), "%s://%s:%u/bytes/16384", m == TLS_MODE_NONE ? "http" : "https",
                 host, anic_port(m));
        snprintf(d, sizeof(d), "%us", L->o.soak_round_s);
        snprintf(c, sizeof(c), "%u", L->o.soak_conns);
        snprintf(t, sizeof(t), "%u", L->o.wrk_threads);
        snprintf(errp, sizeof(errp), "%s/wrk.stderr", L->dir);
        char *argv[] = {L->wrk,           "-t", t,   "-c", c, "-d", d, "--timeout",
                        LOAD_WRK_TIMEOUT, url,  NULL};
        struct load_result r = {0};
        int rc = run_capture(argv, out, sizeof(out), errp, L->o.soak_round_s + LOAD_WRK_GRACE_S);
        if (rc != 0 || !parse_wrk(out, 16384, &r))
            fprintf(stderr, "anic bench --soak: wrk %s failed (rc %d)\n", url, rc);
        reqs += r.requests, errs += r.errors, tos += r.timeouts, non2xx += r.non2xx;
        for (unsigned mi = 0; mi < L->o.n_modes && !load_stop; mi++)
            soak_verify(L, &k, host, L->o.modes[mi]);
        round++;
        rss_last = rss_bytes();
        size_t n = collect_stats(L, st);
        uint64_t heap = heap_inuse_bytes(), pool = rx_pool_bytes(L, st, n);
        if (round <= sizeof(rss_hist) / sizeof(rss_hist[0]))
            rss_hist[round - 1] = rss_last, heap_hist[round - 1] = heap_minus(heap, pool);
        printf("%6.0f %5u %-7s %9.0f %7" PRIu64 " %6" PRIu64 " %6" PRIu64 " | %7" PRIu64
               " %6" PRIu64 " %6" PRIu64 " | %8.1f %8.1f %8.1f %6" PRIu64 " %7" PRIu64 " %6" PRIu64
               "\n",
               now_s() - t0, round, mode_label(m), r.req_s, r.errors, r.timeouts, r.non2xx, k.tried,
               k.wrong, k.failed, (double)rss_last / 1e6, (double)heap_minus(heap, pool) / 1e6,
               (double)pool / 1e6, app_stats_get(st, n, "driver", "rx_bufs_held"),
               app_stats_get(st, n, "driver", "rx_compact_live"),
               app_stats_get(st, n, "server", "active"));
        fflush(stdout);
    }
    /* wrk and curl have closed their connections: wait for the server side. */
    struct soak_left left = soak_leftovers(L);
    double s0 = now_s();
    while (!soak_clean(&left) && now_s() - s0 < SOAK_SETTLE_S && !load_stop) {
        sleep_ms(250);
        left = soak_leftovers(L);
    }
    double settle = now_s() - s0;
    size_t n = collect_stats(L, st);
    uint64_t decrypt_err = stat_sum(st, n, "tls_", "TlsDecryptError");
    /* Flat: the second half of the run did not grow the heap over its start
       (the first half warms up: every mode, the NIC's contexts, the RX pool). */
    unsigned base_round = round / 2 > L->o.n_modes ? round / 2 : L->o.n_modes;
    uint64_t rss_base = base_round >= 1 ? rss_hist[base_round - 1] : 0;
    uint64_t heap_base = base_round >= 1 ? heap_hist[base_round - 1] : 0;
    uint64_t heap_end = heap_minus(heap_inuse_bytes(), rx_pool_bytes(L, st, n));
    uint64_t rss_end = rss_bytes();
    bool heap_judged = round >= 2 * L->o.n_modes && round >= 4;
    bool heap_flat = !heap_judged || (double)heap_end <= (double)heap_base * SOAK_HEAP_SLACK +
                                                             SOAK_HEAP_SLACK_MB * 1e6;
    bool ok = round > 0 && k.wrong == 0 && decrypt_err == 0 && soak_clean(&left) && heap_flat;
    printf("soak: %u rounds in %.0f s: %" PRIu64 " requests (errors %" PRIu64 ", timeouts %" PRIu64
           ", non-2xx %" PRIu64 "); verified transfers %" PRIu64 ": wrong bytes %" PRIu64
           ", failed %" PRIu64 "; TlsDecryptError %" PRIu64 "\n",
           round, now_s() - t0, reqs, errs, tos, non2xx, k.tried, k.wrong, k.failed, decrypt_err);
    printf("soak: at the end (%.1f s after the load): connections %" PRIu64
           ", RX buffers held %" PRIu64 ", compact copies %" PRIu64 ", NIC TX contexts %" PRIu64
           ", RX contexts %" PRIu64 ", deletes pending %" PRIu64
           "; in-use heap without the RX pool after round %u %.1f MB, at the end %.1f MB (%s); "
           "RSS after round %u %.1f MB, last round %.1f MB, at the end %.1f MB (not judged)\n",
           settle, left.active, left.held, left.compact, left.tx_ctx, left.rx_ctx, left.del_pending,
           base_round, (double)heap_base / 1e6, (double)heap_end / 1e6,
           !heap_judged ? "too few rounds to judge"
           : heap_flat  ? "flat"
                        : "GREW",
           base_round, (double)rss_base / 1e6, (double)rss_last / 1e6, (double)rss_end / 1e6);
    printf("soak: %s\n", ok ? "PASS" : "FAIL");
    return load_stop ? 130 : ok ? 0 : 1;
}

/* ---- handshake rate (--load-handshakes S): openssl s_time, full handshakes ---- */

/* P parallel `openssl s_time -new` for S seconds against addr:port; returns
   full handshakes per second (summed), or -1. */
static double handshake_rate(struct load *L, const char *addr, int port)
{
    char openssl[256], sh[256], cmd[1024], out[LOAD_OUT_CAP];
    if (!find_tool("openssl", openssl, sizeof(openssl)) || !find_tool("sh", sh, sizeof(sh)))
        return -1;
    snprintf(cmd, sizeof(cmd),
             "i=0; while [ $i -lt %u ]; do %s s_time -connect %s:%d -new -tls1_2 -cipher %s "
             "-time %u | grep ' real seconds' & i=$((i+1)); done; wait",
             L->o.hs_par, openssl, addr, port, LOAD_CIPHER, L->o.hs_s);
    char *argv[] = {sh, "-c", cmd, NULL};
    double t0 = now_s();
    if (run_capture(argv, out, sizeof(out), NULL, L->o.hs_s + LOAD_WRK_GRACE_S) != 0)
        return -1;
    double wall = now_s() - t0; /* s_time's own clock has whole seconds */
    uint64_t total = 0;
    unsigned runs = 0;
    for (const char *p = out; (p = strstr(p, " connections in ")); p++) {
        const char *b = p;
        while (b > out && b[-1] != '\n')
            b--;
        unsigned long n = 0;
        double secs = 0;
        if (sscanf(b, "%lu connections in %lf real", &n, &secs) == 2) {
            total += n;
            runs++;
        }
    }
    return runs == L->o.hs_par && wall > 0 ? (double)total / wall : -1;
}

static void task_cpu(double *host_s, double *nic_s);
static uint64_t stat_now(struct load *L, const char *sec, const char *name, bool *known);

/* Calls fn(comm, cpu_s, arg) for each thread of this process: its name
   (newline cut) and CPU seconds so far (schedstat). */
static void for_each_task(void (*fn)(const char *comm, double cpu_s, void *arg), void *arg)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[300], comm[32] = "";
        unsigned long long ns = 0;
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
        FILE *f = fopen(path, "re");
        if (f) {
            if (!fgets(comm, sizeof(comm), f))
                comm[0] = 0;
            fclose(f);
        }
        comm[strcspn(comm, "\n")] = 0;
        snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", de->d_name);
        f = fopen(path, "re");
        if (f) {
            if (fscanf(f, "%llu", &ns) != 1)
                ns = 0;
            fclose(f);
        }
        fn(comm, (double)ns / 1e9, arg);
    }
    closedir(d);
}

struct named_cpu {
    const char *name;
    double s;
};

static void add_named_cpu(const char *comm, double cpu_s, void *arg)
{
    struct named_cpu *n = arg;
    if (strcmp(comm, n->name) == 0)
        n->s += cpu_s;
}

/* CPU seconds so far of this process's threads named `name`. */
static double threads_cpu(const char *name)
{
    struct named_cpu n = {name, 0};
    for_each_task(add_named_cpu, &n);
    return n.s;
}

static void run_handshakes(struct load *L)
{
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &L->rt.cfg.host_ip, host, sizeof(host));
    printf("handshakes: %u x openssl s_time -new -tls1_2 -cipher %s, %u s (full handshakes, "
           "ECDSA P-256)\n",
           L->o.hs_par, LOAD_CIPHER, L->o.hs_s);
    for (unsigned mi = 0; mi < L->o.n_modes && !load_stop; mi++) {
        enum tls_mode m = L->o.modes[mi];
        if (m == TLS_MODE_NONE)
            continue;
        /* CPU per handshake: independent of what else the machine runs,
           unlike the rate. */
        const char *sec = tls_section(m);
        uint64_t ok0 = stat_now(L, sec, "handshakes_ok", NULL);
        double w0 = threads_cpu("tls-handshake"), h0, n0, h1, n1;
        task_cpu(&h0, &n0);
        double r = handshake_rate(L, host, anic_port(m));
        uint64_t ok = stat_now(L, sec, "handshakes_ok", NULL) - ok0;
        double w = threads_cpu("tls-handshake") - w0;
        task_cpu(&h1, &n1);
        printf("  anic %-7s %8.0f handshakes/s", mode_label(m), r);
        if (ok)
            printf("; CPU per handshake: workers %.2f ms, all host threads %.2f ms, NIC %.2f ms",
                   w / (double)ok * 1e3, (h1 - h0) / (double)ok * 1e3,
                   (n1 - n0) / (double)ok * 1e3);
        printf("\n");
        fflush(stdout);
        sleep_ms(LOAD_SETTLE_MS);
    }
    if (L->o.nginx && !load_stop) {
        double r = handshake_rate(L, LOAD_NGINX_ADDR, LOAD_NGINX_HTTPS);
        printf("  nginx        %8.0f handshakes/s (%u worker%s)\n", r, L->o.nginx_workers,
               L->o.nginx_workers == 1 ? "" : "s");
    }
}

/* ---- connection rate (--conn-rate): one TLS connection per request ---- */

static void set_policy(struct load *L, const struct tls_offload_policy *p)
{
    if (!L->rt.offload)
        return;
    LOCK_TCPIP_CORE();
    tls_offload_set_policy(L->rt.offload, p);
    UNLOCK_TCPIP_CORE();
}

static uint64_t stat_now(struct load *L, const char *sec, const char *name, bool *known)
{
    static struct app_stat st[APP_STATS_MAX];
    size_t n = collect_stats(L, st);
    uint64_t v = 0;
    int k = app_stats_lookup(st, n, sec, name, &v);
    if (known)
        *known = k >= 0;
    return v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { CR_SW, CR_NIC, CR_NIC_POLICY, CR_NGINX, CR_N };

static void task_cpu(double *host_s, double *nic_s);

static int run_conn_rate(struct load *L)
{
    char host[INET_ADDRSTRLEN], pol[64];
    inet_ntop(AF_INET, &L->rt.cfg.host_ip, host, sizeof(host));
    static const struct tls_offload_policy always = {.kind = TLS_OFFLOAD_ALWAYS};
    struct tls_offload_policy autop;
    if (L->o.policy_set)
        autop = L->o.policy;
    else
        tls_offload_policy_parse("auto", &autop);
    tls_offload_policy_format(&autop, pol, sizeof(pol));
    static const char *const label[CR_N] = {"sw", "nic", "nic+policy", "nginx"};
    printf("anic bench --load --conn-rate: wrk -t%u -c N -d %us -H 'Connection: close' (a full "
           "TLS 1.2 handshake per request, %s), %u round%s per cell, modes in turn, median; "
           "nic+policy = nic with --offload-policy %s (break-even %" PRIu64 " bytes)\n",
           L->o.wrk_threads, L->o.seconds, LOAD_CIPHER, L->o.rounds, L->o.rounds == 1 ? "" : "s",
           pol, tls_offload_policy_breakeven(&autop));
    printf("%6s %6s %-10s %9s %9s %9s %7s %8s %8s %8s | %s\n", "conns", "size", "mode", "conns/s",
           "min", "max", "errors", "p99 ms", "host us", "NIC us",
           "vs sw; policy tx at_open/switched/kept_sw");
    for (unsigned si = 0; si < L->o.n_sizes && !load_stop; si++) {
        uint64_t size = L->o.sizes[si];
        for (unsigned ci = 0; ci < L->o.n_conns && !load_stop; ci++) {
            unsigned conns = L->o.conns[ci];
            double rate[CR_N][64];
            uint64_t errs[CR_N] = {0}, pol_ctr[3] = {0};
            double p99[CR_N] = {0}, host_s[CR_N] = {0}, nic_s[CR_N] = {0};
            uint64_t done[CR_N] = {0};
            bool on[CR_N] = {true, true, L->o.conn_rate_auto, L->o.nginx};
            for (unsigned r = 0; r < L->o.rounds && !load_stop; r++) {
                for (int m = 0; m < CR_N && !load_stop; m++) {
                    if (!on[m])
                        continue;
                    char url[128];
                    if (m == CR_NGINX)
                        snprintf(url, sizeof(url), "https://%s:%d/bytes/%" PRIu64, LOAD_NGINX_ADDR,
                                 LOAD_NGINX_HTTPS, size);
                    else
                        snprintf(url, sizeof(url), "https://%s:%u/bytes/%" PRIu64, host,
                                 anic_port(m == CR_SW ? TLS_MODE_SW : TLS_MODE_NIC), size);
                    set_policy(L, m == CR_NIC_POLICY ? &autop : &always);
                    static const char *const pn[3] = {"offload_tx_at_open", "offload_tx_switched",
                                                      "offload_tx_kept_sw"};
                    uint64_t before[3];
                    for (int k = 0; k < 3; k++)
                        before[k] = stat_now(L, "offload_dump", pn[k], NULL);
                    struct load_result res;
                    double h0, n0, h1, n1;
                    task_cpu(&h0, &n0);
                    run_wrk(L, url, conns, size, true, &res);
                    sleep_ms(LOAD_SETTLE_MS);
                    task_cpu(&h1, &n1);
                    host_s[m] += h1 - h0;
                    nic_s[m] += n1 - n0;
                    done[m] += res.requests;
                    if (m == CR_NIC_POLICY)
                        for (int k = 0; k < 3; k++)
                            pol_ctr[k] += stat_now(L, "offload_dump", pn[k], NULL) - before[k];
                    rate[m][r] = res.req_s;
                    errs[m] += res.errors + res.timeouts + res.non2xx;
                    if (res.p99_ms > p99[m])
                        p99[m] = res.p99_ms;
                    if (L->csv)
                        csv_row(L, m == CR_NGINX ? "nginx" : "anic", label[m], conns, size, &res);
                }
            }
            set_policy(L, &always);
            double med[CR_N] = {0};
            for (int m = 0; m < CR_N; m++) {
                if (!on[m] || load_stop)
                    continue;
                double sorted[64];
                memcpy(sorted, rate[m], L->o.rounds * sizeof(double));
                qsort(sorted, L->o.rounds, sizeof(double), cmp_double);
                med[m] = sorted[L->o.rounds / 2];
                char sz[24];
                fmt_size(size, sz, sizeof(sz));
                printf("%6u %6s %-10s %9.1f %9.1f %9.1f %7" PRIu64 " %8.1f", conns, sz, label[m],
                       med[m], sorted[0], sorted[L->o.rounds - 1], errs[m], p99[m]);
                /* anic's threads per connection (nginx: not ours to measure) */
                if (m != CR_NGINX && done[m])
                    printf(" %8.0f %8.0f |", host_s[m] / (double)done[m] * 1e6,
                           nic_s[m] / (double)done[m] * 1e6);
                else
                    printf(" %8s %8s |", "-", "-");
                if (m != CR_SW && med[CR_SW] > 0)
                    printf(" %.2fx", med[m] / med[CR_SW]);
                if (m == CR_NIC_POLICY)
                    printf("; %" PRIu64 "/%" PRIu64 "/%" PRIu64, pol_ctr[0], pol_ctr[1],
                           pol_ctr[2]);
                printf("\n");
                fflush(stdout);
            }
        }
    }
    return load_stop ? 130 : 0;
}

/* ---- many long-lived flows (--flows LIST) ---- */

/* CPU seconds of this process's threads so far: the NIC's (named nic*)
   and the host's (every other; the flow client is a separate process). */
struct host_nic_cpu {
    double host_s, nic_s;
};

static void add_host_nic_cpu(const char *comm, double cpu_s, void *arg)
{
    struct host_nic_cpu *c = arg;
    if (!strncmp(comm, "nic", 3))
        c->nic_s += cpu_s;
    else
        c->host_s += cpu_s;
}

static void task_cpu(double *host_s, double *nic_s)
{
    struct host_nic_cpu c = {0, 0};
    for_each_task(add_host_nic_cpu, &c);
    *host_s = c.host_s;
    *nic_s = c.nic_s;
}

/* The NIC context cache's counters (section nic_tls), where the NIC has one. */
struct flow_snap {
    double host_s, nic_s;
    uint64_t hit, miss, evict, fetch, fallback;
    uint64_t rx_packets, demux_walks, demux_moved, demux_hinted, moderated; /* driver */
    bool cache_known;
};

static void flow_snap(struct load *L, struct flow_snap *s)
{
    task_cpu(&s->host_s, &s->nic_s);
    bool k1 = false, k2 = false;
    s->hit = stat_now(L, "nic_tls", "tls_ctx_cache_hit", &k1);
    s->miss = stat_now(L, "nic_tls", "tls_ctx_cache_miss", &k2);
    s->evict = stat_now(L, "nic_tls", "tls_ctx_evict", NULL);
    s->fetch = stat_now(L, "nic_tls", "tls_ctx_fetch_bytes", NULL);
    s->cache_known = k1 && k2;
    s->rx_packets = stat_now(L, "driver", "rx_packets", NULL);
    s->demux_walks = stat_now(L, "driver", "rx_demux_walks", NULL);
    s->demux_moved = stat_now(L, "driver", "rx_demux_moved", NULL);
    s->demux_hinted = stat_now(L, "driver", "rx_demux_hinted", NULL);
    s->moderated = stat_now(L, "driver", "rx_moderated", NULL);
    s->fallback = stat_now(L, "tls_nic", "offload_fallback_sw", NULL) +
                  stat_now(L, "offload_rx", "rx_tls_ctx_fail", NULL);
}

/* --flows-counters: every counter that moved between two snapshots. */
static void flows_counters_write(struct load *L, const char *cell, const struct app_stat *a,
                                 size_t na, const struct app_stat *b, size_t nb)
{
    bool out = !strcmp(L->o.flows_counters, "-");
    FILE *f = out ? stdout : fopen(L->o.flows_counters, "ae");
    if (!f) {
        fprintf(stderr, "anic bench --flows-counters: %s: %s\n", L->o.flows_counters,
                strerror(errno));
        return;
    }
    fprintf(f, "cell %s\n", cell);
    for (size_t i = 0; i < nb; i++) {
        uint64_t before = 0;
        if (i < na && a[i].section == b[i].section && a[i].name == b[i].name)
            before = a[i].value;
        else
            (void)app_stats_lookup(a, na, b[i].section, b[i].name, &before);
        if (b[i].value != before)
            fprintf(f, "  %s.%s %" PRId64 "\n", b[i].section, b[i].name,
                    (int64_t)(b[i].value - before));
    }
    if (out)
        fflush(f);
    else
        fclose(f);
}

/* Between --flows cells: the server side of the last cell's connections
   closes (an offloaded one lingers until its last records are acked) and
   their NIC contexts go. The next cell starts once nothing is left, at most
   FLOWS_DRAIN_S after the settle time: with 2N + 64 flow-table entries, a
   cell of N flows that starts with an earlier cell's contexts still
   installed falls back to software for the difference. What is left then
   is printed. */
#define FLOWS_DRAIN_S 60.0
static void flows_drain(struct load *L, unsigned n)
{
    sleep_ms(LOAD_SETTLE_MS + n / 10);
    double t0 = now_s();
    struct soak_left left = soak_leftovers(L);
    while (!soak_clean(&left) && now_s() - t0 < FLOWS_DRAIN_S && !load_stop) {
        sleep_ms(100);
        left = soak_leftovers(L);
    }
    if (!soak_clean(&left))
        printf("       (the next cell starts with %" PRIu64 " connections, %" PRIu64
               " TX and %" PRIu64 " RX NIC contexts, %" PRIu64
               " context deletes of earlier cells left after %.0f s)\n",
               left.active, left.tx_ctx, left.rx_ctx, left.del_pending, now_s() - t0);
    else if (now_s() - t0 >= 1.0)
        printf(
            "       (the last cell's connections and NIC contexts were gone after %.1f s more)\n",
            now_s() - t0);
}

/* One --flows cell's measurement; mbps 0: none. */
struct flows_meas {
    double mbps;
    double host_s_gb; /* anic's host threads' CPU seconds per GB of payload */
};

/* Where run_flows keeps round r's cell (flows index fi, direction dir, mode
   mi); flows_slot(L, 1, 0, 0, 0) is one round's size. */
static size_t flows_slot(const struct load *L, unsigned r, unsigned fi, int dir, unsigned mi)
{
    return ((size_t)r * L->o.n_flows * 2 + (size_t)fi * 2 + (size_t)dir) * L->o.n_modes + mi;
}

/* v over base as a flows_medians column ("-" without a base). */
static void print_ratio(double v, double base)
{
    if (base > 0)
        printf(" %10.2f", v / base);
    else
        printf(" %10s", "-");
}

static double median(double *v, unsigned k)
{
    qsort(v, k, sizeof(double), cmp_double);
    return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

/* The median over rounds of each cell's MB/s and host CPU per GB (rounds
   without a measurement left out) and the MB/s median's ratio to the first
   N's, same mode and direction. meas as run_flows fills it. */
static void flows_medians(const struct load *L, const struct flows_meas *meas, unsigned rounds)
{
    /* With several modes, also each median (MB/s, host s/GB) over that of the
       first mode, same N and direction: e.g. nic over mbedtls with the
       server, not one client, the bottleneck. */
    char base_buf[32];
    const char *base = cell_label(L, 0, base_buf, sizeof(base_buf));
    bool by_mode = L->o.n_modes > 1;
    char by_mode_head[40];
    snprintf(by_mode_head, sizeof(by_mode_head), "x %s", base);
    printf("medians of %u rounds (x first: median over the first N's median, same mode and "
           "direction",
           rounds);
    if (by_mode)
        printf("; %s: median over %s's median, same N and direction", by_mode_head, base);
    printf(")\n");
    printf("%6s %-8s %-4s | %8s %8s %8s %8s", "flows", "mode", "dir", "MB/s", "min", "max",
           "x first");
    if (by_mode)
        printf(" %10s", by_mode_head);
    printf(" | %9s", "host s/GB");
    printf(by_mode ? " %10s\n" : "\n", by_mode_head);
    double first[2][LOAD_MAX_LIST] = {{0}};
    for (unsigned fi = 0; fi < L->o.n_flows; fi++)
        for (int dir = 0; dir < 2; dir++) {
            if ((dir == 0 && !L->o.flow_down) || (dir == 1 && !L->o.flow_up))
                continue;
            /* this N and direction's medians in the first mode */
            double mode0 = 0, mode0_host = 0;
            for (unsigned mi = 0; mi < L->o.n_modes; mi++) {
                double v[64], h[64];
                unsigned k = 0;
                for (unsigned r = 0; r < rounds && k < 64; r++) {
                    const struct flows_meas *x = &meas[flows_slot(L, r, fi, dir, mi)];
                    if (x->mbps > 0)
                        v[k] = x->mbps, h[k++] = x->host_s_gb;
                }
                char lb[32];
                printf("%6" PRIu64 " %-8s %-4s |", L->o.flows[fi],
                       cell_label(L, mi, lb, sizeof(lb)), dir ? "up" : "down");
                if (!k) { /* no round measured this cell */
                    printf(" %8s %8s %8s %8s", "-", "-", "-", "-");
                    if (by_mode)
                        print_ratio(0, 0);
                    printf(" | %9s", "-");
                    if (by_mode)
                        print_ratio(0, 0);
                    printf("\n");
                    continue;
                }
                double med = median(v, k), med_host = median(h, k);
                if (first[dir][mi] == 0)
                    first[dir][mi] = med;
                if (mi == 0)
                    mode0 = med, mode0_host = med_host;
                printf(" %8.1f %8.1f %8.1f %8.2f", med, v[0], v[k - 1], med / first[dir][mi]);
                if (by_mode)
                    print_ratio(med, mode0);
                printf(" | %9.3f", med_host);
                if (by_mode)
                    print_ratio(med_host, mode0_host);
                printf("\n");
            }
        }
}

/* One --flows cell: n flows in mode mi, direction dir (1: up). Prints its
   row; *out gets its measurement (mbps 0: none), *first is the MB/s of the
   round's first N for this mode and direction (set here if 0). Returns -1
   if the client could not start, 1 without a measurement, else 0. */
static int flows_cell(struct load *L, unsigned n, int dir, unsigned mi, double *first,
                      struct flows_meas *out)
{
    static struct app_stat st_a[APP_STATS_MAX], st_b[APP_STATS_MAX];
    size_t n_st_a = 0, n_st_b = 0;
    enum tls_mode m = L->o.modes[mi];
    char label[32];
    cell_label(L, mi, label, sizeof(label));
    if (L->o.slots_per_mode) { /* no connection is left from the last cell (flows_drain) */
        LOCK_TCPIP_CORE();
        struct tls_slots_cfg sc = app_send_slots_cfg(&L->rt.cfg, (unsigned)L->o.mode_slots[mi]);
        tls_slots_configure(&sc);
        UNLOCK_TCPIP_CORE();
    }
    unsigned active = L->o.flows_active && L->o.flows_active < n ? (unsigned)L->o.flows_active : n;
    struct flows_cfg fc = {.addr = L->rt.cfg.host_ip,
                           .port = anic_port(m),
                           .tls = m != TLS_MODE_NONE,
                           .upload = dir == 1,
                           .n = n,
                           .active = active,
                           .size = L->o.flow_size,
                           .setup_s = 30 + n / 20.0,
                           .warm_s = 1,
                           .measure_s = L->o.seconds,
                           .rate = L->o.flow_rate * 1000000u};
    struct flow_snap z;
    flow_snap(L, &z); /* installs refused during this cell's set-up count too */
    int rd = -1;
    pid_t pid = flows_spawn(&fc, &rd);
    if (pid < 0) {
        fprintf(stderr, "anic bench --flows: start the client: %s\n", strerror(errno));
        return -1;
    }
    char line[256];
    struct flow_snap a = {0}, b = {0};
    struct flows_result r = {0};
    double limit = fc.setup_s + fc.warm_s + fc.measure_s + 10;
    bool started = flows_read_line(rd, line, sizeof(line), limit) && !strcmp(line, "START");
    if (started) {
        flow_snap(L, &a);
        if (L->o.flows_counters)
            n_st_a = collect_stats(L, st_a);
    }
    if ((started ? flows_read_line(rd, line, sizeof(line), fc.measure_s + 10) : true) &&
        flows_parse_end(line, &r)) {
        flow_snap(L, &b);
        if (L->o.flows_counters && started) {
            n_st_b = collect_stats(L, st_b);
            char cell[96];
            snprintf(cell, sizeof(cell), "%u %s %s cache %u", n, label, dir ? "up" : "down",
                     L->rt.cfg.nic_ctx_cache);
            flows_counters_write(L, cell, st_a, n_st_a, st_b, n_st_b);
        }
    }
    close(rd);
    kill(pid, SIGKILL); /* it exits by itself after END; bounded either way */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    double gb = (double)r.bytes / 1e9;
    printf("%6u %-8s %-4s %6u %6u |", n, label, dir ? "up" : "down", r.established, r.failed);
    *out = (struct flows_meas){0};
    if (!(r.ok && started && r.secs > 0 && gb > 0)) {
        printf(" %8s %8s %8s %8s | (no measurement: %s)\n", "-", "-", "-", "-",
               r.ok ? "no bytes moved" : "the client did not report");
        return 1;
    }
    out->mbps = (double)r.bytes / r.secs / 1e6;
    out->host_s_gb = (b.host_s - a.host_s) / gb;
    if (*first == 0)
        *first = out->mbps;
    printf(" %8.1f %8.2f %8.2f %8.2f |", out->mbps, out->mbps / *first, out->host_s_gb,
           (b.nic_s - a.nic_s) / gb);
    uint64_t hit = b.hit - a.hit, miss = b.miss - a.miss;
    if (b.cache_known && hit + miss)
        printf(" %8.1f%% %10.4f %9" PRIu64, 100.0 * (double)hit / (double)(hit + miss),
               (double)(b.fetch - a.fetch) / (double)r.bytes, b.evict - a.evict);
    else
        printf(" %9s %10s %9s", "n/a", "n/a", "n/a");
    printf(" %8" PRIu64 "\n", b.fallback - z.fallback);
    printf("       (host RX in the window: %" PRIu64 " packets; %" PRIu64
           " pcbs moved to the list's front, %" PRIu64 " by index hint, %" PRIu64
           " by walks; %" PRIu64 " moderated polls)\n",
           b.rx_packets - a.rx_packets, b.demux_moved - a.demux_moved,
           b.demux_hinted - a.demux_hinted, b.demux_walks - a.demux_walks,
           b.moderated - a.moderated);
    printf("       (transfers: %" PRIu64 " completed, by %u of %u connections in the window, "
           "at most %u at once (%u allowed); %" PRIu64 " connections failed after set-up)\n",
           r.transfers, r.served, r.established, r.peak, active, r.errors);
    return 0;
}

/* 1 if a cell got no measurement (the client did not report, or no byte
   moved), 130 when interrupted. */
static int run_flows(struct load *L)
{
    unsigned unmeasured = 0;
    /* --rounds R: the cells R times in turn (each N, direction and mode once
       per round), then the medians (flows_slot). */
    unsigned rounds = L->o.rounds_set ? L->o.rounds : 1;
    size_t per_round = flows_slot(L, 1, 0, 0, 0);
    struct flows_meas *meas = calloc(rounds * per_round, sizeof(*meas));
    if (!meas)
        return 1;
    char fs[24];
    fmt_size(L->o.flow_size, fs, sizeof(fs));
    printf("anic bench --load --flows: N concurrent keep-alive connections (kernel sockets, "
           "OpenSSL client in its own process), each repeating a %s download (GET) or upload "
           "(PUT); all connected and handshaken first, then 1 s warm-up and %u s measured\n",
           fs, L->o.seconds);
    if (L->o.flow_rate)
        printf("--flow-rate %" PRIu64 ": the client moves at most %" PRIu64
               " MB/s, all flows together, so every mode is measured at the same load (host and "
               "NIC s/GB compare the work per byte, not how each copes with a saturated machine)\n",
               L->o.flow_rate, L->o.flow_rate);
    char sv[16];
    if (L->o.slots_per_mode)
        printf("--send-slots: each mode once per value (nic:64: nic with 64 slots; 0 = no "
               "limit; auto: a limit only past the NIC's resident contexts): anic lets at most "
               "that many connections send bulk data at once, the others wait in line "
               "(send_slots.* counters)\n");
    else
        printf("--send-slots %s: anic lets at most that many connections send bulk data at once, "
               "the others wait in line (0 = no limit; auto, the default: a limit only past the "
               "NIC's resident contexts; send_slots.* counters)\n",
               slots_name(L->rt.cfg.send_slots, sv, sizeof(sv)));
    if (L->o.flows_active)
        printf("--flows-active %" PRIu64 ": at most that many of a cell's flows transfer at once, "
               "the other connections idle in turn\n",
               L->o.flows_active);
    printf("%6s %-8s %-4s %6s %6s | %8s %8s %8s %8s | %9s %10s %9s %8s\n", "flows", "mode", "dir",
           "estab", "failed", "MB/s", "x first", "host s/GB", "NIC s/GB", "cache hit", "fetch B/B",
           "evictions", "sw-fallbk");
    printf("(x first: MB/s over that of the first N in the list, same mode and direction, this "
           "run; "
           "CPU of anic's threads over the window per GB of payload; cache columns from nic_tls "
           "tls_ctx_cache_*, n/a where the NIC has no context cache; sw-fallbk: directions that "
           "got no NIC context in the cell, tls_nic.offload_fallback_sw + "
           "offload_rx.rx_tls_ctx_fail)\n");
    int status = 0;
    for (unsigned round = 0; round < rounds && !load_stop && status >= 0; round++) {
        double first_mbps[2][LOAD_MAX_LIST] = {{0}}; /* [dir][mode]: the round's first N's MB/s */
        if (rounds > 1)
            printf("round %u of %u\n", round + 1, rounds);
        for (unsigned fi = 0; fi < L->o.n_flows && !load_stop && status >= 0; fi++)
            for (int dir = 0; dir < 2 && !load_stop && status >= 0; dir++) {
                if ((dir == 0 && !L->o.flow_down) || (dir == 1 && !L->o.flow_up))
                    continue;
                for (unsigned mi = 0; mi < L->o.n_modes && !load_stop && status >= 0; mi++) {
                    unsigned n = (unsigned)L->o.flows[fi];
                    status = flows_cell(L, n, dir, mi, &first_mbps[dir][mi],
                                        &meas[flows_slot(L, round, fi, dir, mi)]);
                    unmeasured += status == 1;
                    if (status >= 0)
                        flows_drain(L, n);
                    fflush(stdout);
                }
            }
    }
    if (rounds > 1 && !load_stop && status >= 0)
        flows_medians(L, meas, rounds);
    free(meas);
    if (status < 0)
        return 1;
    if (unmeasured)
        fprintf(stderr, "anic bench --flows: %u cell(s) without a measurement\n", unmeasured);
    return load_stop ? 130 : unmeasured ? 1 : 0;
}

/* --flows once per --cache-sizes entry, each on a fresh server (the cache
   size is fixed when the NIC starts). */
static int run_flows_caches(struct load *L, struct app_runtime_cfg *cfg)
{
    unsigned n = L->o.n_cache_sizes ? L->o.n_cache_sizes : 1;
    int status = 0;
    for (unsigned i = 0; i < n && !load_stop && status != 130; i++) {
        if (i > 0) {
            char err[256];
            app_runtime_stop(&L->rt);
            app_runtime_free(&L->rt);
            L->runtime = false;
            cfg->nic_ctx_cache = (uint32_t)L->o.cache_sizes[i];
            if (app_runtime_start(&L->rt, cfg, err, sizeof(err)) < 0) {
                fprintf(stderr, "anic bench --load: %s\n", err);
                return 1;
            }
            L->runtime = true;
        }
        if (L->o.n_cache_sizes)
            printf("--- NIC context cache %u (0 = all resident), flow table %u ---\n",
                   cfg->nic_ctx_cache, cfg->max_flows);
        int st = run_flows(L); /* the other cache sizes still run after a failed cell */
        if (st)
            status = st;
    }
    return status;
}

/* ---- options ---- */

enum {
    OPT_LOAD = 300,
    OPT_SECONDS,
    OPT_CONNS,
    OPT_SIZES,
    OPT_MODES,
    OPT_THREADS,
    OPT_WORKERS,
    OPT_NO_NGINX,
    OPT_CSV,
    OPT_SOAK,
    OPT_SOAK_ROUND,
    OPT_SOAK_CONNS,
    OPT_SOAK_FAULT,
    OPT_HANDSHAKES,
    OPT_HS_PAR,
    OPT_SEED,
    OPT_HS_WORKERS,
    OPT_CONN_RATE,
    OPT_CONN_RATE_AUTO,
    OPT_ROUNDS,
    OPT_POLICY,
    OPT_FLOWS,
    OPT_FLOW_SIZE,
    OPT_FLOW_RATE,
    OPT_IRQ_COALESCE,
    OPT_FLOW_DIRS,
    OPT_CACHE_SIZES,
    OPT_FLOWS_COUNTERS,
    OPT_FLOWS_ACTIVE,
    OPT_SEND_SLOTS,
};

static const struct option load_long[] = {
    {"load", no_argument, NULL, OPT_LOAD},
    {"load-seconds", required_argument, NULL, OPT_SECONDS},
    {"load-conns", required_argument, NULL, OPT_CONNS},
    {"load-sizes", required_argument, NULL, OPT_SIZES},
    {"load-modes", required_argument, NULL, OPT_MODES},
    {"wrk-threads", required_argument, NULL, OPT_THREADS},
    {"nginx-workers", required_argument, NULL, OPT_WORKERS},
    {"no-nginx", no_argument, NULL, OPT_NO_NGINX},
    {"csv", required_argument, NULL, OPT_CSV},
    {"soak", required_argument, NULL, OPT_SOAK},
    {"soak-round", required_argument, NULL, OPT_SOAK_ROUND},
    {"soak-conns", required_argument, NULL, OPT_SOAK_CONNS},
    {"soak-fault", required_argument, NULL, OPT_SOAK_FAULT},
    {"seed", required_argument, NULL, OPT_SEED},
    {"load-handshakes", required_argument, NULL, OPT_HANDSHAKES},
    {"handshake-clients", required_argument, NULL, OPT_HS_PAR},
    {"handshake-workers", required_argument, NULL, OPT_HS_WORKERS},
    {"conn-rate", no_argument, NULL, OPT_CONN_RATE},
    {"conn-rate-auto", no_argument, NULL, OPT_CONN_RATE_AUTO},
    {"rounds", required_argument, NULL, OPT_ROUNDS},
    {"offload-policy", required_argument, NULL, OPT_POLICY},
    {"flows", required_argument, NULL, OPT_FLOWS},
    {"flow-size", required_argument, NULL, OPT_FLOW_SIZE},
    {"flow-rate", required_argument, NULL, OPT_FLOW_RATE},
    {"irq-coalesce-us", required_argument, NULL, OPT_IRQ_COALESCE},
    {"flow-dirs", required_argument, NULL, OPT_FLOW_DIRS},
    {"cache-sizes", required_argument, NULL, OPT_CACHE_SIZES},
    {"flows-counters", required_argument, NULL, OPT_FLOWS_COUNTERS},
    {"flows-active", required_argument, NULL, OPT_FLOWS_ACTIVE},
    {"send-slots", required_argument, NULL, OPT_SEND_SLOTS},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: anic bench --load [options]\n"
            "\n"
            "wrk against anic and against nginx (started by the bench, stopped by PID) in one\n"
            "private network namespace: the same certificate, cipher and /bytes/N bodies.\n"
            "Prints req/s, MB/s, p50/p99 latency, errors and timeouts per cell and anic/nginx.\n"
            "Needs root, wrk and nginx (scripts/deps.sh installs wrk and nginx-light).\n"
            "\n"
            "  --load-seconds S     wrk duration per cell (default 5, 1..60)\n"
            "  --load-conns LIST    connection counts (default 10,100,1000; e.g. add 5000)\n"
            "  --load-sizes LIST    object sizes in bytes, K or M suffix (default 16K,1M)\n"
            "  --load-modes LIST    anic modes: plain, mbedtls, sw, nic (default plain,sw,nic)\n"
            "  --wrk-threads N      wrk threads (default 2)\n"
            "  --nginx-workers N    nginx worker processes (default 1)\n"
            "  --no-nginx           anic only\n"
            "  --csv FILE           per-cell CSV (default " LOAD_DEFAULT_CSV ", - = none)\n"
            "  --load-handshakes S  instead of wrk: full-handshake rate, openssl s_time -new for\n"
            "                       S seconds per TLS mode and nginx\n"
            "  --handshake-clients N  parallel s_time processes (default 4)\n"
            "  --handshake-workers N  anic's TLS handshake threads (1..16, default 2)\n"
            "  --offload-policy P   offload policy of the nic listener (always, after:BYTES,\n"
            "                       auto[:INSTALL_NS,SW_PS,NIC_PS]; anic serve --help)\n"
            "\n"
            "  --conn-rate          instead: new TLS connections per second, wrk with\n"
            "                       'Connection: close' (one object per connection; sizes\n"
            "                       --load-sizes, default 1K,16K; --load-conns default 16): sw,\n"
            "                       nic, nginx; median of --rounds N (default 3, modes in turn)\n"
            "  --conn-rate-auto     also nic with an offload policy (--offload-policy, default\n"
            "                       auto)\n"
            "  --flows LIST         instead: N concurrent long-lived transfers for each N\n"
            "                       (e.g. 10,100,1000): anic's own kernel-socket client, all\n"
            "                       handshakes first; aggregate MB/s, host and NIC CPU per GB,\n"
            "                       NIC context-cache hit rate and fetch bytes per payload\n"
            "                       byte (n/a without a cache), software fallbacks\n"
            "  --flow-size BYTES    bytes per transfer, repeated (default 64M)\n"
            "  --irq-coalesce-us N  anic serve's --irq-coalesce-us (default 100; 0 = off)\n"
            "  --flow-rate MBPS     the --flows client moves at most MBPS MB/s, all flows\n"
            "                       together (default: as fast as it can): every mode at one\n"
            "                       load, for host and NIC CPU per byte\n"
            "  --flow-dirs LIST     down, up or down,up (default)\n"
            "  --rounds R           with --flows: every cell R times, in turn, then each\n"
            "                       cell's median MB/s and its ratio to the first N's,\n"
            "                       its median host s/GB and, with several --load-modes,\n"
            "                       both medians over the first mode's (e.g. --load-modes\n"
            "                       mbedtls,nic: nic over mbedtls with the server the bottleneck)\n"
            "  --flows-active K     at most K of the N flows transfer at once, the others\n"
            "                       stay established and idle and take turns (each finished\n"
            "                       transfer hands its turn to the longest idle; default: all)\n"
            "  --send-slots LIST    anic's --send-slots N|auto: at most N connections send bulk\n"
            "                       data at once, the others wait in line (0 = no limit;\n"
            "                       default auto, anic serve's); with --flows a list runs every\n"
            "                       mode once per value, in turn like modes (e.g. 0,auto:\n"
            "                       nic:0 and nic:auto)\n"
            "  --cache-sizes LIST   the --flows cells once per NIC context-cache size\n"
            "                       (anic serve --nic-ctx-cache; 0 = every context resident),\n"
            "                       a fresh server each\n"
            "  --flows-counters FILE  append every counter that moved in each --flows cell's\n"
            "                       measured window to FILE ('cell N mode dir cache C', then\n"
            "                       'section.name delta' lines; '-' = stdout)\n"
            "\n"
            "  --soak S             instead: S seconds (10..86400) of rounds of wrk load on\n"
            "                       anic alone (modes in turn, --load-modes) under faults, each\n"
            "                       followed by a SHA-256-checked GET and PUT per mode; then\n"
            "                       every connection, RX buffer, compact copy and NIC context\n"
            "                       must be gone, and the in-use heap (mallinfo2, without\n"
            "                       the RX pool) flat; RSS is printed. Exit 0 only if so\n"
            "  --soak-round S       seconds of wrk per round (default 10)\n"
            "  --soak-conns N       wrk connections (default 100)\n"
            "  --soak-fault SPEC    fault spec on both directions (default '%s')\n"
            "  --seed S             the run's seed: fault-tx S, fault-rx S+1 unless SPEC names\n"
            "                       its own (default random; printed for replay)\n",
            SOAK_DEFAULT_FLT);
}

static int load_bad(const char *opt, const char *val)
{
    fprintf(stderr, "anic bench: invalid value for --%s: '%s' (see anic bench --load --help)\n",
            opt, val);
    return 2;
}

/* Comma-separated unsigned numbers with an optional K/M suffix. */
static int parse_list(const char *s, uint64_t *out, unsigned max, uint64_t lo, uint64_t hi)
{
    unsigned n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        if (*p < '0' || *p > '9')
            return -1;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno)
            return -1;
        if (*end == 'K' || *end == 'k')
            v <<= 10, end++;
        else if (*end == 'M' || *end == 'm')
            v <<= 20, end++;
        if (v < lo || v > hi || n == max || (*end && *end != ','))
            return -1;
        out[n++] = v;
        p = *end ? end + 1 : end;
    }
    return n ? (int)n : -1;
}

/* --send-slots LIST: numbers 0..1000000 or "auto" (APP_SEND_SLOTS_AUTO). */
static int parse_slots_list(const char *s, uint64_t *out, unsigned max)
{
    char buf[256];
    if (strlen(s) >= sizeof(buf))
        return -1;
    strcpy(buf, s);
    unsigned n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (n == max)
            return -1;
        if (strcmp(tok, "auto") == 0)
            out[n++] = APP_SEND_SLOTS_AUTO;
        else if (parse_list(tok, out + n, 1, 0, 1000000) == 1)
            n++;
        else
            return -1;
    }
    return n ? (int)n : -1;
}

static int parse_load_opts(int argc, char **argv, struct load_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->seconds = 5;
    o->conns[0] = 10, o->conns[1] = 100, o->conns[2] = 1000, o->n_conns = 3;
    o->sizes[0] = 16384, o->sizes[1] = 1 << 20, o->n_sizes = 2;
    o->modes[0] = TLS_MODE_NONE, o->modes[1] = TLS_MODE_SW, o->modes[2] = TLS_MODE_NIC;
    o->n_modes = 3;
    o->wrk_threads = 2;
    o->nginx_workers = 1;
    o->nginx = true;
    o->csv_path = LOAD_DEFAULT_CSV;
    o->soak_round_s = 10;
    o->soak_conns = 100;
    o->soak_fault = SOAK_DEFAULT_FLT;
    o->hs_par = 4;
    o->rounds = 3;
    o->flow_size = 64ull << 20;
    o->irq_coalesce_us = APP_IRQ_COALESCE_US_DEFAULT;
    o->flow_down = o->flow_up = true;
    bool sizes_set = false, conns_set = false, modes_set = false;
    uint64_t v[LOAD_MAX_LIST];
    int c, n;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", load_long, NULL)) != -1) {
        switch (c) {
        case OPT_LOAD:
            break;
        case OPT_SECONDS:
            if (parse_list(optarg, v, 1, 1, 60) != 1)
                return load_bad("load-seconds", optarg);
            o->seconds = (unsigned)v[0];
            break;
        case OPT_CONNS:
            if ((n = parse_list(optarg, v, LOAD_MAX_LIST, 1, 20000)) < 0)
                return load_bad("load-conns", optarg);
            for (int i = 0; i < n; i++)
                o->conns[i] = (unsigned)v[i];
            o->n_conns = (unsigned)n;
            conns_set = true;
            break;
        case OPT_SIZES:
            if ((n = parse_list(optarg, o->sizes, LOAD_MAX_LIST, 1, 1ull << 30)) < 0)
                return load_bad("load-sizes", optarg);
            o->n_sizes = (unsigned)n;
            sizes_set = true;
            break;
        case OPT_MODES: {
            char buf[128];
            snprintf(buf, sizeof(buf), "%s", optarg);
            o->n_modes = 0;
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
                 t = strtok_r(NULL, ",", &save)) {
                int m = app_mode_parse(t);
                if ((m != TLS_MODE_NONE && m != TLS_MODE_MBEDTLS && m != TLS_MODE_SW &&
                     m != TLS_MODE_NIC) ||
                    o->n_modes == LOAD_MAX_LIST)
                    return load_bad("load-modes", optarg);
                o->modes[o->n_modes++] = (enum tls_mode)m;
            }
            if (!o->n_modes)
                return load_bad("load-modes", optarg);
            modes_set = true;
            break;
        }
        case OPT_THREADS:
            if (parse_list(optarg, v, 1, 1, 64) != 1)
                return load_bad("wrk-threads", optarg);
            o->wrk_threads = (unsigned)v[0];
            break;
        case OPT_WORKERS:
            if (parse_list(optarg, v, 1, 1, 64) != 1)
                return load_bad("nginx-workers", optarg);
            o->nginx_workers = (unsigned)v[0];
            break;
        case OPT_NO_NGINX:
            o->nginx = false;
            break;
        case OPT_CSV:
            o->csv_path = optarg;
            break;
        case OPT_SOAK:
            if (parse_list(optarg, v, 1, 10, 86400) != 1)
                return load_bad("soak", optarg);
            o->soak_s = (unsigned)v[0];
            break;
        case OPT_SOAK_ROUND:
            if (parse_list(optarg, v, 1, 1, 600) != 1)
                return load_bad("soak-round", optarg);
            o->soak_round_s = (unsigned)v[0];
            break;
        case OPT_SOAK_CONNS:
            if (parse_list(optarg, v, 1, 1, 20000) != 1)
                return load_bad("soak-conns", optarg);
            o->soak_conns = (unsigned)v[0];
            break;
        case OPT_SOAK_FAULT:
            o->soak_fault = optarg;
            break;
        case OPT_SEED: {
            char err[160];
            if (nic_fault_seed_parse(optarg, &o->seed, err, sizeof(err)) < 0) {
                fprintf(stderr, "anic bench --load: --seed: %s\n", err);
                return 2;
            }
            o->seed_set = true;
            break;
        }
        case OPT_HANDSHAKES:
            if (parse_list(optarg, v, 1, 1, 600) != 1)
                return load_bad("load-handshakes", optarg);
            o->hs_s = (unsigned)v[0];
            break;
        case OPT_HS_PAR:
            if (parse_list(optarg, v, 1, 1, 64) != 1)
                return load_bad("handshake-clients", optarg);
            o->hs_par = (unsigned)v[0];
            break;
        case OPT_HS_WORKERS:
            if (parse_list(optarg, v, 1, 1, 16) != 1)
                return load_bad("handshake-workers", optarg);
            o->hs_workers = (unsigned)v[0];
            break;
        case OPT_CONN_RATE:
            o->conn_rate = true;
            break;
        case OPT_CONN_RATE_AUTO:
            o->conn_rate = o->conn_rate_auto = true;
            break;
        case OPT_ROUNDS:
            if (parse_list(optarg, v, 1, 1, 64) != 1)
                return load_bad("rounds", optarg);
            o->rounds = (unsigned)v[0];
            o->rounds_set = true;
            break;
        case OPT_POLICY:
            if (tls_offload_policy_parse(optarg, &o->policy) < 0)
                return load_bad("offload-policy", optarg);
            o->policy_set = true;
            break;
        case OPT_FLOWS:
            if ((n = parse_list(optarg, o->flows, LOAD_MAX_LIST, 1, 20000)) < 0)
                return load_bad("flows", optarg);
            o->n_flows = (unsigned)n;
            break;
        case OPT_FLOW_SIZE:
            if (parse_list(optarg, v, 1, 1, 1ull << 40) != 1)
                return load_bad("flow-size", optarg);
            o->flow_size = v[0];
            break;
        case OPT_IRQ_COALESCE:
            if (parse_list(optarg, v, 1, 0, 100000) != 1)
                return load_bad("irq-coalesce-us", optarg);
            o->irq_coalesce_us = v[0];
            break;
        case OPT_FLOW_RATE:
            if (parse_list(optarg, v, 1, 1, 100000) != 1)
                return load_bad("flow-rate", optarg);
            o->flow_rate = v[0];
            break;
        case OPT_CACHE_SIZES:
            if ((n = parse_list(optarg, o->cache_sizes, LOAD_MAX_LIST, 0, 1u << 16)) < 0)
                return load_bad("cache-sizes", optarg);
            o->n_cache_sizes = (unsigned)n;
            break;
        case OPT_FLOWS_COUNTERS:
            o->flows_counters = optarg;
            break;
        case OPT_FLOWS_ACTIVE:
            if (parse_list(optarg, v, 1, 1, 20000) != 1)
                return load_bad("flows-active", optarg);
            o->flows_active = v[0];
            break;
        case OPT_SEND_SLOTS:
            if ((n = parse_slots_list(optarg, o->slots, LOAD_MAX_LIST)) < 0)
                return load_bad("send-slots", optarg);
            o->n_slots = (unsigned)n;
            break;
        case OPT_FLOW_DIRS:
            o->flow_down = strstr(optarg, "down") != NULL;
            o->flow_up = strstr(optarg, "up") != NULL;
            if (!o->flow_down && !o->flow_up)
                return load_bad("flow-dirs", optarg);
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            fprintf(stderr, "anic bench --load: unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "anic bench --load: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o->conn_rate) {
        if (!sizes_set)
            o->sizes[0] = 1024, o->sizes[1] = 16384, o->n_sizes = 2;
        if (!conns_set)
            o->conns[0] = 16, o->n_conns = 1;
    }
    if ((o->n_flows || o->conn_rate) && !modes_set)
        o->modes[0] = TLS_MODE_SW, o->modes[1] = TLS_MODE_NIC, o->n_modes = 2;
    if (o->n_flows) {
        o->nginx = false; /* anic's NIC counters are the point */
        o->n_sizes = 0;
        o->csv_path = "-";
        bool any_tls = false;
        for (unsigned i = 0; i < o->n_modes; i++)
            any_tls |= o->modes[i] != TLS_MODE_NONE;
        if (!any_tls)
            return load_bad("load-modes", "--flows needs sw or nic");
        if (o->n_slots > 1) { /* every mode once per slots value */
            if (o->n_modes * o->n_slots > LOAD_MAX_LIST)
                return load_bad("send-slots", "modes x values exceed 8");
            enum tls_mode m[LOAD_MAX_LIST];
            memcpy(m, o->modes, sizeof(m));
            unsigned k = 0;
            for (unsigned i = 0; i < o->n_modes; i++)
                for (unsigned j = 0; j < o->n_slots; j++) {
                    o->modes[k] = m[i];
                    o->mode_slots[k++] = o->slots[j];
                }
            o->n_modes = k;
            o->slots_per_mode = true;
        }
    }
    if (o->n_slots > 1 && !o->n_flows)
        return load_bad("send-slots", "a list needs --flows");
    if (o->soak_s) {
        o->nginx = false; /* the soak measures anic alone */
        o->n_sizes = 0;
        o->csv_path = "-";
        if (o->soak_round_s > o->soak_s)
            return load_bad("soak-round", "longer than --soak");
    }
    return 0;
}

bool bench_load_wanted(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--load"))
            return true;
    return false;
}

static void rm_tree(const char *dir)
{
    char rm[256], out[64];
    if (!dir[0] || !find_tool("rm", rm, sizeof(rm)))
        return;
    char *argv[] = {rm, "-rf", "--", (char *)dir, NULL};
    run_capture(argv, out, sizeof(out), NULL, 30);
}

int bench_load_main(int argc, char **argv)
{
    static struct load load;
    struct load *L = &load;
    int rc = parse_load_opts(argc, argv, &L->o);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (geteuid() != 0) {
        fprintf(stderr, "anic bench --load: needs root (network namespace, TUN device)\n");
        return 1;
    }
    if (!find_tool("wrk", L->wrk, sizeof(L->wrk)) ||
        (L->o.nginx && !find_tool("nginx", L->ng.bin, sizeof(L->ng.bin)))) {
        fprintf(stderr, "anic bench --load: needs wrk%s (scripts/deps.sh installs them)\n",
                L->o.nginx ? " and nginx" : "");
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = 1;
    char err[256];
    snprintf(L->dir, sizeof(L->dir), "/tmp/anic-load-XXXXXX");
    if (!mkdtemp(L->dir)) {
        fprintf(stderr, "anic bench --load: mkdtemp: %s\n", strerror(errno));
        L->dir[0] = 0;
        return 1;
    }
    chmod(L->dir, 0755); /* nginx's workers read www/ as an unprivileged user */
    L->ng.dir = L->dir;  /* ng.bin was found above */
    L->ng.cert = L->cert;
    L->ng.key = L->key;
    L->ng.who = "anic bench --load";
    L->ng.stop = &load_stop;
    L->ng.workers = L->o.nginx_workers;
    if (make_files(L) < 0 ||
        bench_make_cert(L->dir, L->cert, sizeof(L->cert), L->key, sizeof(L->key)) < 0 ||
        (L->o.nginx && bench_nginx_write_conf(&L->ng) < 0)) {
        fprintf(stderr, "anic bench --load: cannot prepare files and certificate in %s\n", L->dir);
        goto out;
    }
    if (strcmp(L->o.csv_path, "-") != 0) {
        L->csv = fopen(L->o.csv_path, "we");
        if (!L->csv) {
            fprintf(stderr, "anic bench --load: cannot write %s: %s\n", L->o.csv_path,
                    strerror(errno));
            goto out;
        }
        fprintf(L->csv, "server,mode,conns,size_bytes,seconds,req_s,mb_s,p50_ms,p99_ms,requests,"
                        "errors,timeouts,non_2xx\n");
    }

    struct app_runtime_cfg cfg;
    app_runtime_cfg_defaults(&cfg);
    snprintf(L->netns, sizeof(L->netns), "anic-load-%d", (int)getpid());
    cfg.netns = L->netns;
    cfg.cert_path = L->cert;
    cfg.key_path = L->key;
    cfg.handshake_workers = L->o.hs_workers;
    cfg.n_listeners = 0;
    cfg.listeners[cfg.n_listeners++] = (struct app_listener){80, TLS_MODE_NONE};
    cfg.listeners[cfg.n_listeners++] = (struct app_listener){443, TLS_MODE_SW};
    cfg.listeners[cfg.n_listeners++] = (struct app_listener){4431, TLS_MODE_MBEDTLS};
    cfg.listeners[cfg.n_listeners++] = (struct app_listener){4432, TLS_MODE_NIC};
    if (!L->o.soak_s && !L->o.n_flows && !L->o.conn_rate && !L->o.hs_s)
        cfg.limits.header_ms = cfg.limits.idle_ms = LOAD_CELL_TIMEOUT_MS;
    if (L->o.soak_s) {
        cfg.limits.header_ms = cfg.limits.idle_ms = SOAK_TIMEOUT_MS;
        cfg.limits.body_ms = cfg.limits.send_ms = SOAK_TIMEOUT_MS;
    }
    if (L->o.soak_s &&
        (nic_fault_cfg_parse(&cfg.fault_tx, L->o.soak_fault, err, sizeof(err)) < 0 ||
         nic_fault_cfg_parse(&cfg.fault_rx, L->o.soak_fault, err, sizeof(err)) < 0)) {
        fprintf(stderr, "anic bench --soak: invalid --soak-fault '%s': %s\n", L->o.soak_fault, err);
        goto out;
    }
    cfg.seed = L->o.seed;
    cfg.seed_set = L->o.seed_set;
    if (L->o.n_slots)
        cfg.send_slots = (unsigned)L->o.slots[0];
    cfg.irq_coalesce_us = (uint32_t)L->o.irq_coalesce_us;
    if (L->o.policy_set && !L->o.conn_rate)
        cfg.offload_policy = L->o.policy; /* conn-rate sets it per mode */
    if (L->o.n_flows) {
        uint64_t most = 0;
        for (unsigned i = 0; i < L->o.n_flows; i++)
            most = L->o.flows[i] > most ? L->o.flows[i] : most;
        if (cfg.limits.max_conns && most + 64 > cfg.limits.max_conns)
            cfg.limits.max_conns = (uint32_t)most + 64;
        /* A flow-table entry per direction of every flow: what bounds the
           NIC then is its context cache (--cache-sizes), not the table. */
        uint64_t want = 2 * most + 64;
        if (want > cfg.max_flows)
            cfg.max_flows = want > (1u << 16) ? 1u << 16 : (uint32_t)want;
        if (L->o.n_cache_sizes)
            cfg.nic_ctx_cache = (uint32_t)L->o.cache_sizes[0];
    }
    if (app_runtime_start(&L->rt, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "anic bench --load: %s\n", err);
        goto out;
    }
    L->runtime = true;
    printf("anic bench --load: seed %" PRIu64 " (replay: --seed %" PRIu64 ")\n", L->rt.cfg.seed,
           L->rt.cfg.seed);
    if (L->o.nginx && bench_nginx_start(&L->ng) < 0)
        goto out;
    if (L->o.hs_s)
        run_handshakes(L), status = load_stop ? 130 : 0;
    else if (L->o.conn_rate)
        status = run_conn_rate(L);
    else if (L->o.n_flows)
        status = run_flows_caches(L, &cfg);
    else
        status = L->o.soak_s ? run_soak(L) : run_cells(L);
    if (L->csv)
        printf("CSV: %s\n", L->o.csv_path);
out:
    bench_nginx_stop(&L->ng);
    if (L->runtime) {
        app_runtime_stop(&L->rt);
        app_runtime_free(&L->rt);
        L->runtime = false;
    }
    if (L->csv && fclose(L->csv) != 0)
        status = 1;
    rm_tree(L->dir);
    return status;
}
