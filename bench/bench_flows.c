/* bench_flows.c - the many-flow client of `anic bench --load --flows`; see bench_flows.h. */
#define _GNU_SOURCE
#include "bench_flows.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLOWS_HS_INFLIGHT 64    /* connections connecting or handshaking at once */
#define FLOWS_HEAD_CAP    2048  /* a response head larger than this is an error */
#define FLOWS_IO_CHUNK    65536 /* bytes per read or write call */
#define FLOWS_GRACE_S     5.0   /* the child's deadline past setup + warm + measure */
#define FLOWS_CIPHER      "ECDHE-ECDSA-AES128-GCM-SHA256"
/* Transfers started per ms once every connection is set up: 10,000 requests
   at once overflowed the server NIC's RX ring (1024), and the requests and
   ACKs it dropped waited for the kernel's RTO backoff, so a fifth of the
   connections had not started within the window. 12 per ms starts 10,000
   within the 1 s warm-up. */
#define FLOWS_GO_PER_MS 12
/* During set-up (10,000 handshakes take minutes on a loaded machine) a
   connection idle this long sends GET /bytes/0: the server closes one that
   sent no request within --header-timeout (60 s) with a 408, which cost a
   quarter of 10,000 flows before the transfers began. Not counted. */
#define FLOWS_PING_S 20.0

enum fst { F_NEW, F_CONNECTING, F_HANDSHAKE, F_IDLE, F_SEND, F_HEAD, F_BODY, F_FAILED };

struct fconn {
    int fd;
    SSL *ssl;
    enum fst st;
    char out[256]; /* request head */
    size_t out_len, out_off;
    uint64_t body_out; /* upload body bytes still to send */
    char head[FLOWS_HEAD_CAP];
    size_t head_len;
    uint64_t body_in;  /* response body bytes still to read */
    double idle_since; /* set-up: when the connection last finished an exchange */
    bool ping;         /* the request in progress is a set-up GET /bytes/0 */
    bool waiting;      /* idle in the turn queue (flows_cfg.active < n) */
    bool served;       /* completed a transfer in the measured window */
    bool busy;         /* a transfer (not a set-up ping) in progress */
    bool paced;        /* stopped by flows_cfg.rate, in the paced list */
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const struct flows_cfg *C;
static struct fconn *conns;
static SSL_CTX *ctx;
static int ep;
static bool go, measuring;
static unsigned go_next; /* connections [0, go_next) may start transfers */
static unsigned inflight, established, failed;
static uint64_t bytes, transfers, errors;
static unsigned served;          /* connections that completed a transfer in the window */
static unsigned busy, busy_peak; /* transfers in progress; the most at once */
static uint8_t iobuf[FLOWS_IO_CHUNK];
/* The turn queue (flows_cfg.active < n): a ring of the waiting connections'
   indexes, and the connections handed a turn, to be driven by the main loop
   (not from inside another connection's drive). */
static unsigned *turn_q, turn_head, turn_len, *handed, n_handed;
/* flows_cfg.rate: body bytes moved since the transfers began, and the
   connections stopped because that was ahead of rate x time. */
static uint64_t paced_bytes;
static double t_go;
static unsigned *paced, n_paced, *resume;

static bool pace_ahead(void)
{
    return C->rate && paced_bytes > (uint64_t)((mono_s() - t_go) * (double)C->rate);
}

/* Whether c must wait for the rate's budget (then it joins the paced list). */
static bool pace(struct fconn *c)
{
    if (!pace_ahead())
        return false;
    if (!c->paced) {
        c->paced = true;
        paced[n_paced++] = (unsigned)(c - conns);
    }
    return true;
}

static void turn_wait(struct fconn *c)
{
    c->waiting = true;
    turn_q[(turn_head + turn_len++) % C->n] = (unsigned)(c - conns);
}

/* Hand the turn of a connection that finished (or failed) to the longest
   waiting one that has not failed meanwhile. */
static void turn_pass(void)
{
    while (turn_len) {
        unsigned i = turn_q[turn_head];
        turn_head = (turn_head + 1) % C->n;
        turn_len--;
        conns[i].waiting = false;
        if (conns[i].st != F_FAILED) {
            handed[n_handed++] = i;
            return;
        }
    }
}

/* n > 0 bytes moved; 0 would block; -1 error or EOF. */
static long io_read(struct fconn *c, void *buf, size_t cap)
{
    if (!c->ssl) {
        ssize_t n = read(c->fd, buf, cap);
        return n > 0 ? n : n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    }
    int n = SSL_read(c->ssl, buf, (int)cap);
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

static long io_write(struct fconn *c, const void *buf, size_t len)
{
    if (!c->ssl) {
        ssize_t n = write(c->fd, buf, len);
        return n > 0 ? n : n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    }
    int n = SSL_write(c->ssl, buf, (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

static void transfer_done(struct fconn *c)
{
    if (c->busy) {
        c->busy = false;
        busy--;
    }
}

static void fail(struct fconn *c)
{
    transfer_done(c);
    bool setup = c->st == F_CONNECTING || c->st == F_HANDSHAKE;
    if (setup) {
        inflight--;
        failed++;
    } else if (c->st != F_NEW) {
        errors++;
        if (go && !c->waiting)
            turn_pass(); /* its turn is not lost */
    }
    c->st = F_FAILED;
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static void start_connect(struct fconn *c, size_t idx)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        failed++;
        c->st = F_FAILED;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(C->port)};
    sa.sin_addr.s_addr = C->addr;
    c->st = F_CONNECTING;
    inflight++;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        fail(c);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u64 = idx};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        fail(c);
}

static void next_request(struct fconn *c, bool ping)
{
    c->ping = ping;
    int n = ping ? snprintf(c->out, sizeof(c->out), "GET /bytes/0 HTTP/1.1\r\nHost: anic\r\n\r\n")
            : C->upload
                ? snprintf(
                      c->out, sizeof(c->out),
                      "PUT /upload?digest=crc32c HTTP/1.1\r\nHost: anic\r\nContent-Length: %" PRIu64
                      "\r\n\r\n",
                      C->size)
                : snprintf(c->out, sizeof(c->out),
                           "GET /bytes/%" PRIu64 " HTTP/1.1\r\nHost: anic\r\n\r\n", C->size);
    c->out_len = (size_t)n;
    c->out_off = 0;
    if (!ping) {
        c->busy = true;
        if (++busy > busy_peak)
            busy_peak = busy;
    }
    c->body_out = C->upload && !ping ? C->size : 0;
    c->head_len = 0;
    c->st = F_SEND;
}

/* The head is complete at head[0, end): status 2xx and Content-Length. */
static bool parse_head(struct fconn *c, size_t end)
{
    c->head[end - 1] = 0;
    if (strncmp(c->head, "HTTP/1.1 2", 10) != 0)
        return false;
    for (const char *p = c->head; (p = strchr(p, '\n')); p++)
        if (!strncasecmp(p + 1, "content-length:", 15))
            return sscanf(p + 16, " %" SCNu64, &c->body_in) == 1;
    return false;
}

/* Body bytes that arrived: counted for downloads. */
static void got_body(struct fconn *c, uint64_t n)
{
    c->body_in -= n;
    if (measuring && !C->upload)
        bytes += n;
    if (c->body_in == 0 && c->ping) {
        c->ping = false;
        c->st = F_IDLE; /* a transfer starts from there once allowed */
        c->idle_since = mono_s();
    } else if (c->body_in == 0) {
        transfers++;
        transfer_done(c);
        if (measuring && !c->served) {
            c->served = true;
            served++;
        }
        if (C->active < C->n) {
            c->st = F_IDLE;
            turn_wait(c);
            turn_pass();
            return;
        }
        next_request(c, false);
    }
}

/* Run c's state machine until it would block. */
static void drive(struct fconn *c)
{
    long n = 0;
    for (int guard = 0; guard < 1024; guard++) {
        switch (c->st) {
        case F_NEW:
        case F_FAILED:
            return;
        case F_CONNECTING: {
            struct sockaddr_in peer;
            socklen_t len = sizeof(peer);
            if (getpeername(c->fd, (struct sockaddr *)&peer, &len) < 0) {
                int err = 0;
                socklen_t el = sizeof(err);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err)
                    fail(c);
                return; /* still connecting */
            }
            if (!C->tls) {
                c->st = F_IDLE;
                c->idle_since = mono_s();
                inflight--;
                established++;
                break;
            }
            c->ssl = SSL_new(ctx);
            if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
                fail(c);
                return;
            }
            SSL_set_connect_state(c->ssl);
            c->st = F_HANDSHAKE;
            break;
        }
        case F_HANDSHAKE: {
            int r = SSL_do_handshake(c->ssl);
            if (r == 1) {
                c->st = F_IDLE;
                c->idle_since = mono_s();
                inflight--;
                established++;
                break;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                fail(c);
            return;
        }
        case F_IDLE:
            if (!go && mono_s() - c->idle_since >= FLOWS_PING_S) {
                next_request(c, true);
                break;
            }
            if (!go || (size_t)(c - conns) >= go_next || c->waiting)
                return;
            next_request(c, false);
            break;
        case F_SEND:
            if (c->out_off < c->out_len) {
                n = io_write(c, c->out + c->out_off, c->out_len - c->out_off);
                if (n <= 0)
                    goto blocked;
                c->out_off += (size_t)n;
                break;
            }
            if (c->body_out) {
                if (pace(c))
                    return;
                size_t k = c->body_out < sizeof(iobuf) ? (size_t)c->body_out : sizeof(iobuf);
                n = io_write(c, iobuf, k);
                if (n <= 0)
                    goto blocked;
                c->body_out -= (uint64_t)n;
                paced_bytes += (uint64_t)n;
                if (measuring)
                    bytes += (uint64_t)n;
                break;
            }
            c->st = F_HEAD;
            break;
        case F_HEAD: {
            size_t room = sizeof(c->head) - c->head_len;
            if (room == 0) {
                fail(c);
                return;
            }
            /* Read at most the head's room; what follows the head is body. */
            n = io_read(c, c->head + c->head_len, room);
            if (n <= 0)
                goto blocked;
            size_t old = c->head_len;
            c->head_len += (size_t)n;
            const char *e = memmem(c->head + (old > 3 ? old - 3 : 0),
                                   c->head_len - (old > 3 ? old - 3 : 0), "\r\n\r\n", 4);
            if (!e)
                break;
            size_t end = (size_t)(e - c->head) + 4, extra = c->head_len - end;
            if (!parse_head(c, end) || extra > c->body_in) {
                fail(c);
                return;
            }
            c->st = F_BODY;
            if (c->body_in == 0 || extra)
                got_body(c, extra);
            break;
        }
        case F_BODY: {
            if (!c->ping && pace(c))
                return;
            size_t k = c->body_in < sizeof(iobuf) ? (size_t)c->body_in : sizeof(iobuf);
            n = io_read(c, iobuf, k);
            if (n <= 0)
                goto blocked;
            paced_bytes += (uint64_t)n;
            got_body(c, (uint64_t)n);
            break;
        }
        }
    }
    return; /* fairness: the next event (or the sweep) continues */
blocked:
    if (n < 0)
        fail(c);
}

static void report(int wr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int wr, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0 && write(wr, line, (size_t)n) < 0)
        _exit(3);
}

__attribute__((noreturn)) static void child(const struct flows_cfg *cfg, int wr)
{
    C = cfg;
    struct rlimit rl = {cfg->n + 256, cfg->n + 256};
    setrlimit(RLIMIT_NOFILE, &rl);
    signal(SIGPIPE, SIG_IGN);
    conns = calloc(cfg->n, sizeof(*conns));
    turn_q = calloc(cfg->n, sizeof(*turn_q));
    handed = calloc(cfg->n, sizeof(*handed));
    paced = calloc(cfg->n, sizeof(*paced));
    resume = calloc(cfg->n, sizeof(*resume));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (cfg->tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx) {
            SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
            SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
            SSL_CTX_set_cipher_list(ctx, FLOWS_CIPHER);
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* a benchmark, not a check */
            SSL_CTX_set_mode(ctx,
                             SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
            SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
            /* One read() per record, not two (its header, then its body):
               the client shares the machine with the server it measures. */
            SSL_CTX_set_read_ahead(ctx, 1);
        }
    }
    if (!conns || !turn_q || !handed || !paced || !resume || ep < 0 || (cfg->tls && !ctx))
        _exit(2);
    for (unsigned i = 0; i < cfg->n; i++)
        conns[i].fd = -1;
    for (size_t i = 0; i < sizeof(iobuf); i++)
        iobuf[i] = (uint8_t)(i % 251);

    double t0 = mono_s(), deadline = t0 + cfg->setup_s;
    double t_start = 0, t_end = 0, last_ping_sweep = t0;
    unsigned next = 0;
    static struct epoll_event evs[256];
    for (;;) {
        double now = mono_s();
        /* Setup: keep FLOWS_HS_INFLIGHT connections connecting/handshaking. */
        while (!go && next < cfg->n && inflight < FLOWS_HS_INFLIGHT) {
            start_connect(&conns[next], next);
            drive(&conns[next]);
            next++;
        }
        if (!go && now - last_ping_sweep >= 1.0) {
            last_ping_sweep = now;
            for (unsigned i = 0; i < next; i++)
                if (conns[i].st == F_IDLE)
                    drive(&conns[i]);
        }
        if (!go && ((next == cfg->n && inflight == 0) || now >= deadline)) {
            for (unsigned i = 0; i < next; i++)
                if (conns[i].st == F_CONNECTING || conns[i].st == F_HANDSHAKE)
                    fail(&conns[i]); /* too slow: left out */
            failed += cfg->n - next;
            next = cfg->n;
            go = true;
            t_go = now;
            paced_bytes = 0;
        }
        if (go && go_next < cfg->n) {
            double due = (now - t_go) * 1000.0 * FLOWS_GO_PER_MS + FLOWS_GO_PER_MS;
            unsigned want = due >= cfg->n ? cfg->n : (unsigned)due;
            while (go_next < want) {
                struct fconn *c = &conns[go_next++];
                if (go_next > cfg->active && c->st != F_FAILED)
                    turn_wait(c); /* after the first `active`, in index order */
                drive(c);
            }
        }
        if (go && !measuring && t_start == 0 && now >= t_go + cfg->warm_s) {
            measuring = true;
            bytes = 0;
            t_start = now;
            report(wr, "START\n");
        }
        if (measuring && now >= t_start + cfg->measure_s) {
            t_end = now;
            break;
        }
        if (now > t0 + cfg->setup_s + cfg->warm_s + cfg->measure_s + FLOWS_GRACE_S)
            break;
        int k = epoll_wait(ep, evs, 256, go && (go_next < cfg->n || n_paced) ? 1 : 50);
        for (int i = 0; i < k; i++)
            drive(&conns[evs[i].data.u64]);
        while (n_handed)
            drive(&conns[handed[--n_handed]]);
        /* The budget grew by 1 ms or more: the paced connections go on, in
           the order they stopped (each may stop again and rejoin). */
        if (n_paced && !pace_ahead()) {
            unsigned n = n_paced;
            memcpy(resume, paced, n * sizeof(*paced));
            n_paced = 0;
            for (unsigned i = 0; i < n; i++) {
                conns[resume[i]].paced = false;
                drive(&conns[resume[i]]);
            }
        }
        /* Edge-triggered events may leave work a guard cut short: a sweep. */
        if (go && k == 0)
            for (unsigned i = 0; i < cfg->n; i++)
                if (conns[i].st != F_FAILED)
                    drive(&conns[i]);
    }
    if (t_end == 0)
        report(wr, "END 0 0 %u %u %" PRIu64 " %" PRIu64 " %u %u\n", established, failed, transfers,
               errors, served, busy_peak);
    else
        report(wr, "END %" PRIu64 " %.6f %u %u %" PRIu64 " %" PRIu64 " %u %u\n", bytes,
               t_end - t_start, established, failed, transfers, errors, served, busy_peak);
    _exit(0);
}

/* The report pipe's write end in the client. */
#define FLOWS_REPORT_FD 3

/* posix_spawn of this program, not fork: a fork would write-protect every
   page of the process the NIC and the host run in, and a child that stays for
   the whole cell would make each first write after it a page copy. The
   configuration travels as arguments (flows_client_main). */
pid_t flows_spawn(const struct flows_cfg *c, int *rd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    char a[12][32];
    snprintf(a[0], sizeof(a[0]), "%" PRIu32, c->addr);
    snprintf(a[1], sizeof(a[1]), "%u", (unsigned)c->port);
    snprintf(a[2], sizeof(a[2]), "%d", c->tls);
    snprintf(a[3], sizeof(a[3]), "%d", c->upload);
    snprintf(a[4], sizeof(a[4]), "%u", c->n);
    snprintf(a[5], sizeof(a[5]), "%" PRIu64, c->size);
    snprintf(a[6], sizeof(a[6]), "%.17g", c->setup_s);
    snprintf(a[7], sizeof(a[7]), "%.17g", c->warm_s);
    snprintf(a[8], sizeof(a[8]), "%.17g", c->measure_s);
    snprintf(a[9], sizeof(a[9]), "%u", c->active);
    snprintf(a[10], sizeof(a[10]), "%ld", (long)getpid());
    snprintf(a[11], sizeof(a[11]), "%" PRIu64, c->rate);
    char *argv[] = {"anic", FLOWS_CLIENT_CMD,
                    a[0],   a[1],
                    a[2],   a[3],
                    a[4],   a[5],
                    a[6],   a[7],
                    a[8],   a[9],
                    a[10],  a[11],
                    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], FLOWS_REPORT_FD);
    pid_t pid;
    int err = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (err) {
        close(p[0]);
        errno = err;
        return -1;
    }
    *rd = p[0];
    return pid;
}

int flows_client_main(int argc, char **argv)
{
    struct flows_cfg c;
    unsigned port, tls, upload;
    long parent = 0;
    /* Die with the bench that started us; it may be gone already. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_NAME, "flows-client"); /* not "exe", in top and perf */
    if (argc == 13 && sscanf(argv[11], "%ld", &parent) == 1 && (long)getppid() != parent)
        _exit(4);
    if (argc != 13 || sscanf(argv[12], "%" SCNu64, &c.rate) != 1 ||
        sscanf(argv[1], "%" SCNu32, &c.addr) != 1 || sscanf(argv[2], "%u", &port) != 1 ||
        sscanf(argv[3], "%u", &tls) != 1 || sscanf(argv[4], "%u", &upload) != 1 ||
        sscanf(argv[5], "%u", &c.n) != 1 || sscanf(argv[6], "%" SCNu64, &c.size) != 1 ||
        sscanf(argv[7], "%lf", &c.setup_s) != 1 || sscanf(argv[8], "%lf", &c.warm_s) != 1 ||
        sscanf(argv[9], "%lf", &c.measure_s) != 1 || sscanf(argv[10], "%u", &c.active) != 1 ||
        c.active == 0 || c.active > c.n || fcntl(FLOWS_REPORT_FD, F_GETFD) < 0) {
        fprintf(stderr, "anic %s: internal to anic bench --load --flows\n", FLOWS_CLIENT_CMD);
        return 2;
    }
    c.port = (uint16_t)port;
    c.tls = tls != 0;
    c.upload = upload != 0;
    child(&c, FLOWS_REPORT_FD);
}

bool flows_read_line(int rd, char *buf, size_t cap, double timeout_s)
{
    size_t len = 0;
    double deadline = mono_s() + timeout_s;
    while (len + 1 < cap) {
        double left = deadline - mono_s();
        if (left <= 0)
            break;
        struct pollfd pf = {rd, POLLIN, 0};
        int r = poll(&pf, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        ssize_t n = read(rd, buf + len, 1);
        if (n <= 0)
            break;
        if (buf[len] == '\n') {
            buf[len] = 0;
            return true;
        }
        len++;
    }
    buf[len] = 0;
    return false;
}

bool flows_parse_end(const char *line, struct flows_result *r)
{
    memset(r, 0, sizeof(*r));
    if (sscanf(line, "END %" SCNu64 " %lf %u %u %" SCNu64 " %" SCNu64 " %u %u", &r->bytes, &r->secs,
               &r->established, &r->failed, &r->transfers, &r->errors, &r->served, &r->peak) != 8)
        return false;
    r->ok = true;
    return true;
}
