/* test_e2e.c - end-to-end tests: a real `anic serve` in a private network
 * namespace, with curl, openssl s_client, a raw socket and tshark as peers.
 *
 * One Check test case per fault profile (none, 2% loss TX/RX, 5% reorder TX/RX)
 * plus one with packet capture. Each case starts ONE server that listens on
 * three ports (80 plain, 443 sw, 4431 mbedtls) and runs every check against it:
 * GET /bytes/N and PUT /upload of edge sizes, a chunked POST, keep-alive,
 * Connection: close read by hand, s_client (TLS 1.2, default suite and AES-256),
 * hostile requests, /stats counters and a clean SIGTERM shutdown.
 *
 * Network safety: anic itself creates (and on exit deletes) the namespace
 * anic-e2e-<pid>-<n>; clients only run inside it (ip netns exec, or a forked
 * child that setns()es into it) and only talk to 10.77.0.2. Servers are stopped
 * by PID (SIGTERM, bounded wait, SIGKILL), then their namespace is deleted by its
 * exact name if it is still there; an atexit hook, a signal handler and a
 * watchdog alarm do the same on any early exit, and every server also gets
 * PR_SET_PDEATHSIG and --duration so that even SIGKILL of this program leaves
 * nothing behind for long. Every wait is bounded.
 *
 * Runs in CK_NOFORK mode: the servers are children of this process, so that the
 * shutdown check can see their exit status. Every subprocess has a deadline, so
 * Check's (fork-only) timeouts are not needed.
 *
 * Needs root and /dev/net/tun; otherwise exits 77 (skipped).
 *
 * Environment:
 *   ANIC_E2E_SEED=S       base seed of the upload contents and the fault specs
 *   ANIC_E2E_BIG=BYTES    the big transfer size (default 64 MiB)
 *   ANIC_E2E_MAX_TIME=S   curl --max-time per transfer (default 60)
 *   ANIC_E2E_KEEP=1       keep the run directory (logs, stats, pcap) even on success
 *   CK_RUN_CASE=NAME      only one profile: none loss-tx loss-rx reorder-tx reorder-rx tshark
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#ifndef ANIC_BIN
#define ANIC_BIN "anic"
#endif

#define HOST             "10.77.0.2"
#define READY_TIMEOUT_S  20.0
#define STOP_TIMEOUT_S   10.0
#define WATCHDOG_S       840 /* below ctest's 900 s: clean up ourselves first */
#define SMALL_TIMEOUT_S  30.0
#define SERVER_DURATION  "600"
#define MAX_SERVERS      16
#define MAX_RECORDS      1024
#define UPLOAD_CHUNKED_B (1u << 20)

/* ---- Small utilities --------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("test_e2e: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
}

static bool path_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* splitmix64 */
static uint64_t rng_next(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void hex_of(const unsigned char *md, unsigned len, char *hex)
{
    for (unsigned i = 0; i < len; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
    hex[2 * len] = 0;
}

static void md_final_hex(EVP_MD_CTX *md, char hex[65])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(md, d, &n);
    hex_of(d, n, hex);
}

/* SHA-256 of what GET /bytes/N serves: byte i = i % 251. */
static void pattern_sha256(uint64_t n, char hex[65])
{
    enum { CHUNK = 1 << 16 };
    static uint8_t buf[CHUNK + 251];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i % 251);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    for (uint64_t pos = 0; pos < n;) {
        size_t len = n - pos < CHUNK ? (size_t)(n - pos) : CHUNK;
        EVP_DigestUpdate(md, buf + pos % 251, len);
        pos += len;
    }
    md_final_hex(md, hex);
    EVP_MD_CTX_free(md);
}

static bool pattern_ok(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(i % 251))
            return false;
    return true;
}

static const char *find_in_path(const char *name, char *out, size_t cap)
{
    const char *env = getenv("PATH");
    char path[4096];
    snprintf(path, sizeof(path), "%s:/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin",
             env ? env : "");
    for (char *save = NULL, *dir = strtok_r(path, ":", &save); dir;
         dir = strtok_r(NULL, ":", &save)) {
        if (!*dir)
            continue;
        snprintf(out, cap, "%s/%s", dir, name);
        if (access(out, X_OK) == 0)
            return out;
    }
    return NULL;
}

/* Soft checks: a test records every failure, then asserts once at its end (so
 * that one bad transfer does not hide the others, and no resource is leaked by
 * Check's longjmp in no-fork mode). */
struct fails {
    int n;
    char msg[4096];
};

static void fail_add(struct fails *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_add(struct fails *f, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    note("FAIL: %s", line);
    size_t used = strlen(f->msg);
    if (used + 4 < sizeof(f->msg))
        snprintf(f->msg + used, sizeof(f->msg) - used, "%s%s", f->n ? "; " : "", line);
    f->n++;
}

#define FAILS_ASSERT(f) ck_assert_msg((f)->n == 0, "%d failure(s): %s", (f)->n, (f)->msg)

/* ---- Subprocesses ------------------------------------------------------------ */

static char ip_path[PATH_MAX];

struct run_io {
    const void *in; /* stdin bytes (NULL: /dev/null) */
    size_t in_len;
    EVP_MD_CTX *md; /* if set, every stdout byte is hashed into it */
    char *out;      /* if set, the first out_cap-1 stdout bytes, NUL-terminated */
    size_t out_cap;
    /* results */
    uint64_t out_total;
    size_t out_len;
    char err[2048]; /* the first bytes of stderr */
    size_t err_len;
    bool timed_out;
    double secs;
};

typedef void (*child_fn)(void *arg); /* runs in the child instead of exec; never returns */

/* Run argv (or fn) with a deadline; stdout/stderr go through pipes into io.
 * Returns the exit status, 128+signal, or -1 if it could not be started. */
static int run_proc(char *const argv[], child_fn fn, void *arg, struct run_io *io, double timeout_s)
{
    int in_p[2] = {-1, -1}, out_p[2], err_p[2];
    double t0 = now_s(), deadline = t0 + timeout_s;
    io->out_total = 0;
    io->out_len = 0;
    io->err_len = 0;
    io->err[0] = 0;
    io->timed_out = false;
    if (io->out && io->out_cap)
        io->out[0] = 0;
    if (pipe2(out_p, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(err_p, O_CLOEXEC) < 0) {
        close(out_p[0]);
        close(out_p[1]);
        return -1;
    }
    if (io->in && pipe2(in_p, O_CLOEXEC) < 0) {
        close(out_p[0]);
        close(out_p[1]);
        close(err_p[0]);
        close(err_p[1]);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGPIPE, SIG_DFL);
        int in_fd = io->in ? in_p[0] : open("/dev/null", O_RDONLY);
        dup2(in_fd, 0);
        dup2(out_p[1], 1);
        dup2(err_p[1], 2);
        if (fn)
            fn(arg);
        else
            execvp(argv[0], argv);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(out_p[1]);
    close(err_p[1]);
    if (io->in)
        close(in_p[0]);
    if (pid < 0) {
        close(out_p[0]);
        close(err_p[0]);
        if (io->in)
            close(in_p[1]);
        return -1;
    }
    setpgid(pid, pid);
    int out_fd = out_p[0], err_fd = err_p[0], in_fd = io->in ? in_p[1] : -1;
    size_t in_off = 0;
    if (in_fd >= 0) {
        fcntl(in_fd, F_SETFL, O_NONBLOCK);
        if (io->in_len == 0) {
            close(in_fd);
            in_fd = -1;
        }
    }
    static uint8_t buf[1 << 16];
    while (out_fd >= 0 || err_fd >= 0) {
        double left = deadline - now_s();
        if (left <= 0) {
            io->timed_out = true;
            break;
        }
        struct pollfd pf[3];
        int n = 0, i_out = -1, i_err = -1, i_in = -1;
        if (out_fd >= 0)
            pf[i_out = n++] = (struct pollfd){out_fd, POLLIN, 0};
        if (err_fd >= 0)
            pf[i_err = n++] = (struct pollfd){err_fd, POLLIN, 0};
        if (in_fd >= 0)
            pf[i_in = n++] = (struct pollfd){in_fd, POLLOUT, 0};
        int ms = left > 0.2 ? 200 : (int)(left * 1000) + 1;
        if (poll(pf, (nfds_t)n, ms) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (i_out >= 0 && pf[i_out].revents) {
            ssize_t r = read(out_fd, buf, sizeof(buf));
            if (r > 0) {
                if (io->md)
                    EVP_DigestUpdate(io->md, buf, (size_t)r);
                if (io->out && io->out_len + 1 < io->out_cap) {
                    size_t take = io->out_cap - 1 - io->out_len;
                    if (take > (size_t)r)
                        take = (size_t)r;
                    memcpy(io->out + io->out_len, buf, take);
                    io->out_len += take;
                    io->out[io->out_len] = 0;
                }
                io->out_total += (uint64_t)r;
            } else if (r == 0 || errno != EINTR) {
                close(out_fd);
                out_fd = -1;
            }
        }
        if (i_err >= 0 && pf[i_err].revents) {
            char eb[1024];
            ssize_t r = read(err_fd, eb, sizeof(eb));
            if (r > 0) {
                size_t take = sizeof(io->err) - 1 - io->err_len;
                if (take > (size_t)r)
                    take = (size_t)r;
                memcpy(io->err + io->err_len, eb, take);
                io->err_len += take;
                io->err[io->err_len] = 0;
            } else if (r == 0 || errno != EINTR) {
                close(err_fd);
                err_fd = -1;
            }
        }
        if (i_in >= 0 && pf[i_in].revents) {
            ssize_t w = write(in_fd, (const uint8_t *)io->in + in_off, io->in_len - in_off);
            if (w > 0)
                in_off += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || in_off == io->in_len) {
                close(in_fd);
                in_fd = -1;
            }
        }
    }
    if (in_fd >= 0)
        close(in_fd);
    if (out_fd >= 0)
        close(out_fd);
    if (err_fd >= 0)
        close(err_fd);
    if (io->timed_out) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
    }
    /* Output closed; the process should be gone by now. Bounded anyway. */
    int status = 0;
    double wait_deadline = (io->timed_out ? now_s() : deadline) + 5.0;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_s() < wait_deadline)
        sleep_ms(5);
    if (w == 0) {
        io->timed_out = true;
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    io->secs = now_s() - t0;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* ---- Servers ----------------------------------------------------------------- */

struct server {
    char ns[64];
    char dir[320];
    char log[384], ready[384], ca[384], pcap[384], keylog[384];
    pid_t pid; /* > 0 while running */
    bool started;
    /* shutdown outcome */
    bool stopped;
    int exit_status; /* raw wait status */
    bool stop_timed_out;
    double stop_secs;
    bool ns_left_behind;
};

static struct server *live[MAX_SERVERS];
static int n_servers_made;
static char run_dir[256];
static bool any_failure;

static const char *volatile big_upload_path; /* for the signal handler */

static void ns_path(const char *ns, char *out, size_t cap)
{
    snprintf(out, cap, "/run/netns/%.60s", ns);
}

/* fork/execv/waitpid/kill/nanosleep only: also used from the signal handler. */
static void ns_delete_if_present(const char *ns)
{
    char p[128];
    ns_path(ns, p, sizeof(p));
    if (access(p, F_OK) != 0 || !ip_path[0])
        return;
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {ip_path, "netns", "del", (char *)ns, NULL};
        execv(ip_path, argv);
        _exit(127);
    }
    if (pid < 0)
        return;
    int st;
    for (int i = 0; i < 1000; i++) { /* <= 10 s */
        if (waitpid(pid, &st, WNOHANG) != 0)
            return;
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

/* Stop by PID: SIGTERM, wait up to timeout, then SIGKILL; then remove the
 * namespace if anic did not. Idempotent. */
static void server_stop(struct server *s, double timeout_s)
{
    if (s->pid <= 0)
        return;
    double t0 = now_s();
    int st = 0;
    pid_t w = 0;
    kill(s->pid, SIGTERM);
    while ((w = waitpid(s->pid, &st, WNOHANG)) == 0 && now_s() - t0 < timeout_s)
        sleep_ms(10);
    if (w == 0) {
        s->stop_timed_out = true;
        kill(s->pid, SIGKILL);
        while ((w = waitpid(s->pid, &st, 0)) < 0 && errno == EINTR) {
        }
    }
    s->stop_secs = now_s() - t0;
    s->exit_status = st;
    s->stopped = true;
    s->pid = 0;
    char p[128];
    ns_path(s->ns, p, sizeof(p));
    s->ns_left_behind = access(p, F_OK) == 0;
    ns_delete_if_present(s->ns);
    for (int i = 0; i < MAX_SERVERS; i++)
        if (live[i] == s)
            live[i] = NULL;
}

static void cleanup_all(void)
{
    for (int i = 0; i < MAX_SERVERS; i++)
        if (live[i])
            server_stop(live[i], STOP_TIMEOUT_S);
}

static void on_fatal_signal(int sig)
{
    static const char msg[] = "test_e2e: signal/watchdog: stopping servers\n";
    ssize_t r = write(2, msg, sizeof(msg) - 1);
    (void)r;
    cleanup_all();
    if (big_upload_path)
        unlink(big_upload_path); /* 64 MiB; the logs stay */
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(1);
}

/* Check's runner installs its own SIGINT/SIGTERM/SIGALRM handlers, which
 * killpg() the whole process group (in no-fork mode: ours, i.e. the shell or
 * ctest that started us). So ours go in again in every fixture, after Check's. */
static void install_handlers(void)
{
    struct sigaction sa = {.sa_handler = on_fatal_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
}

static void print_file_tail(const char *path, int max_lines)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        note("(cannot read %s)", path);
        return;
    }
    static char lines[400][256];
    int n = 0;
    char l[256];
    while (fgets(l, sizeof(l), f)) {
        snprintf(lines[n % 400], sizeof(lines[0]), "%s", l);
        n++;
    }
    fclose(f);
    if (max_lines > 400)
        max_lines = 400;
    int first = n > max_lines ? n - max_lines : 0;
    printf("----- %s (%s%d lines) -----\n", path, first ? "last " : "", n - first);
    for (int i = first; i < n; i++)
        fputs(lines[i % 400], stdout);
    printf("----- end of %s -----\n", path);
    fflush(stdout);
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char l[1024];
    bool found = false;
    while (!found && fgets(l, sizeof(l), f))
        found = strstr(l, needle) != NULL;
    fclose(f);
    return found;
}

static bool server_start(struct server *s, const char *name, const char *fault_tx,
                         const char *fault_rx, bool capture, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->ns, sizeof(s->ns), "anic-e2e-%d-%d", (int)getpid(), n_servers_made++);
    snprintf(s->dir, sizeof(s->dir), "%s/%.40s", run_dir, name);
    mkdir(s->dir, 0700);
    snprintf(s->log, sizeof(s->log), "%s/server.log", s->dir);
    snprintf(s->ready, sizeof(s->ready), "%s/ready", s->dir);
    snprintf(s->ca, sizeof(s->ca), "%s/ca.pem", s->dir);
    snprintf(s->pcap, sizeof(s->pcap), "%s/wire.pcap", s->dir);
    snprintf(s->keylog, sizeof(s->keylog), "%s/keys.log", s->dir);
    unlink(s->ready);

    char p[128];
    ns_path(s->ns, p, sizeof(p));
    if (path_exists(p)) {
        snprintf(err, errlen, "namespace %s already exists; not touching it", s->ns);
        return false;
    }
    char *argv[32];
    int n = 0;
    argv[n++] = ANIC_BIN;
    argv[n++] = "serve";
    argv[n++] = "--netns";
    argv[n++] = s->ns;
    argv[n++] = "--ready-file";
    argv[n++] = s->ready;
    argv[n++] = "--ca-out";
    argv[n++] = s->ca;
    argv[n++] = "--duration";
    argv[n++] = SERVER_DURATION;
    argv[n++] = "--http-port";
    argv[n++] = "80";
    argv[n++] = "--https-port";
    argv[n++] = "443";
    argv[n++] = "--tls";
    argv[n++] = "sw";
    argv[n++] = "--listen";
    argv[n++] = "4431:mbedtls";
    if (fault_tx) {
        argv[n++] = "--fault-tx";
        argv[n++] = (char *)fault_tx;
    }
    if (fault_rx) {
        argv[n++] = "--fault-rx";
        argv[n++] = (char *)fault_rx;
    }
    if (capture) {
        argv[n++] = "--pcap";
        argv[n++] = s->pcap;
        argv[n++] = "--keylog";
        argv[n++] = s->keylog;
    }
    argv[n] = NULL;
    char cmd[2048] = "";
    for (int i = 0; i < n; i++) {
        bool q = strchr(argv[i], ' ') != NULL;
        size_t used = strlen(cmd);
        snprintf(cmd + used, sizeof(cmd) - used, "%s%s%s%s", i ? " " : "", q ? "'" : "", argv[i],
                 q ? "'" : "");
    }
    note("[%s] start: %s", name, cmd);

    int log_fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0) {
        snprintf(err, errlen, "open %.150s: %s", s->log, strerror(errno));
        return false;
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        /* If this test dies, even by SIGKILL, the server shuts down cleanly. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        signal(SIGPIPE, SIG_DFL);
        int nul = open("/dev/null", O_RDONLY);
        dup2(nul, 0);
        dup2(log_fd, 1);
        dup2(log_fd, 2);
        execv(ANIC_BIN, argv);
        dprintf(2, "exec %s: %s\n", ANIC_BIN, strerror(errno));
        _exit(127);
    }
    close(log_fd);
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return false;
    }
    s->pid = pid;
    for (int i = 0; i < MAX_SERVERS; i++)
        if (!live[i]) {
            live[i] = s;
            break;
        }
    double t0 = now_s();
    while (!path_exists(s->ready)) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            s->stopped = true;
            s->exit_status = st;
            for (int i = 0; i < MAX_SERVERS; i++)
                if (live[i] == s)
                    live[i] = NULL;
            ns_delete_if_present(s->ns);
            snprintf(err, errlen, "anic exited early (status 0x%x)", st);
            print_file_tail(s->log, 100);
            return false;
        }
        if (now_s() - t0 > READY_TIMEOUT_S) {
            snprintf(err, errlen, "ready file not created within %.0f s", READY_TIMEOUT_S);
            print_file_tail(s->log, 100);
            server_stop(s, STOP_TIMEOUT_S);
            return false;
        }
        sleep_ms(20);
    }
    s->started = true;
    note("[%s] server pid %d up in %.2f s, namespace %s", name, (int)pid, now_s() - t0, s->ns);
    return true;
}

/* ---- Profiles ---------------------------------------------------------------- */

enum { MODE_PLAIN, MODE_SW, MODE_MBEDTLS, N_MODES };

static const struct mode {
    const char *name, *scheme;
    int port;
} modes[N_MODES] = {
    {"plain", "http", 80},
    {"sw", "https", 443},
    {"mbedtls", "https", 4431},
};

struct profile {
    const char *name;
    const char *tx, *rx; /* fault specs without seed */
    bool capture;
    /* filled in at run time */
    char tx_spec[128], rx_spec[128];
    uint32_t seed;
    struct server srv;
    bool up;
    char start_err[256];
    double t_start, t_end;
    /* what the server must have counted */
    uint64_t bad_sent;            /* hostile HTTP requests delivered */
    uint64_t bad_5xx_sent;        /* ... of which the right answer is 5xx (505) */
    uint64_t tls_garbage_sent;    /* non-TLS bytes sent to the sw port */
    uint64_t body_ok, body_tried; /* upload body bytes: confirmed / attempted */
    uint64_t tls_ok[N_MODES];     /* completed TLS connections per mode */
    int n_transfers, n_failed;
};

static struct profile profiles[] = {
    {.name = "none"},
    {.name = "loss-tx", .tx = "loss 2%"},
    {.name = "loss-rx", .rx = "loss 2%"},
    {.name = "reorder-tx", .tx = "reorder 5% gap 3"},
    {.name = "reorder-rx", .rx = "reorder 5% gap 3"},
    {.name = "tshark", .capture = true},
};
#define N_PROFILES ((int)(sizeof(profiles) / sizeof(profiles[0])))

static struct profile *cur;
static uint64_t base_seed = 0x616e6963; /* "anic" */
static uint64_t big_size = 64ull << 20;
static double max_time = 60;

/* Upload files: sizes[] plus the chunked one. */
#define N_SIZES 5
static uint64_t sizes[N_SIZES]; /* 1, 16383, 16384, 16385, big */
struct upload {
    uint64_t size;
    char path[PATH_MAX + 32];
    char sha[65];
};
static struct upload uploads[N_SIZES], upload_chunked;
static char pattern_sha[N_SIZES][65];

/* Timing records. */
struct record {
    const char *profile;
    char what[96];
    double secs;
    bool ok;
};
static struct record records[MAX_RECORDS];
static int n_records;

static void record(const char *what, double secs, bool ok)
{
    if (n_records < MAX_RECORDS) {
        struct record *r = &records[n_records++];
        r->profile = cur->name;
        snprintf(r->what, sizeof(r->what), "%s", what);
        r->secs = secs;
        r->ok = ok;
    }
    cur->n_transfers++;
    if (!ok)
        cur->n_failed++;
    note("[%s] %-44s %8.3f s  %s%s", cur->name, what, secs, ok ? "ok" : "FAILED",
         secs > 60 ? "  (> 60 s!)" : "");
}

static bool make_upload(struct upload *u, uint64_t size, uint64_t seed, const char *tag)
{
    u->size = size;
    snprintf(u->path, sizeof(u->path), "%s/upload-%s.bin", run_dir, tag);
    FILE *f = fopen(u->path, "wb");
    if (!f)
        return false;
    uint64_t st = seed;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    static uint64_t buf[8192];
    for (uint64_t pos = 0; pos < size;) {
        size_t len = size - pos < sizeof(buf) ? (size_t)(size - pos) : sizeof(buf);
        for (size_t i = 0; i < (len + 7) / 8; i++)
            buf[i] = rng_next(&st);
        EVP_DigestUpdate(md, buf, len);
        if (fwrite(buf, 1, len, f) != len) {
            fclose(f);
            EVP_MD_CTX_free(md);
            return false;
        }
        pos += len;
    }
    md_final_hex(md, u->sha);
    EVP_MD_CTX_free(md);
    return fclose(f) == 0;
}

/* ---- Fixtures ---------------------------------------------------------------- */

static void profile_setup(int idx)
{
    struct profile *p = cur = &profiles[idx];
    install_handlers();
    p->t_start = now_s();
    p->seed = (uint32_t)(base_seed + (uint64_t)idx * 1000u);
    if (p->tx)
        snprintf(p->tx_spec, sizeof(p->tx_spec), "%s seed %" PRIu32, p->tx, p->seed);
    if (p->rx)
        snprintf(p->rx_spec, sizeof(p->rx_spec), "%s seed %" PRIu32, p->rx, p->seed + 1);
    note("===== profile %s: fault-tx '%s', fault-rx '%s' =====", p->name,
         p->tx ? p->tx_spec : "none", p->rx ? p->rx_spec : "none");
    p->up = server_start(&p->srv, p->name, p->tx ? p->tx_spec : NULL, p->rx ? p->rx_spec : NULL,
                         p->capture, p->start_err, sizeof(p->start_err));
    if (!p->up)
        note("[%s] server did not start: %s", p->name, p->start_err);
}

static void profile_teardown(int idx)
{
    struct profile *p = &profiles[idx];
    server_stop(&p->srv, STOP_TIMEOUT_S); /* no-op if the shutdown test did it */
    p->t_end = now_s();
    if (p->n_failed)
        any_failure = true;
    note("===== profile %s took %.1f s (%d transfers, %d failed) =====", p->name,
         p->t_end - p->t_start, p->n_transfers, p->n_failed);
}

#define FIXTURES(i)                                                                                \
    static void setup_##i(void)                                                                    \
    {                                                                                              \
        profile_setup(i);                                                                          \
    }                                                                                              \
    static void teardown_##i(void)                                                                 \
    {                                                                                              \
        profile_teardown(i);                                                                       \
    }
FIXTURES(0)
FIXTURES(1)
FIXTURES(2)
FIXTURES(3)
FIXTURES(4)
FIXTURES(5)
static void (*const setups[])(void) = {setup_0, setup_1, setup_2, setup_3, setup_4, setup_5};
static void (*const teardowns[])(void) = {teardown_0, teardown_1, teardown_2,
                                          teardown_3, teardown_4, teardown_5};

#define REQUIRE_SERVER()                                                                           \
    ck_assert_msg(cur && cur->up && cur->srv.pid > 0, "server of profile %s is not running: %s",   \
                  cur ? cur->name : "?", cur && cur->start_err[0] ? cur->start_err : "stopped")

/* ---- Client helpers ---------------------------------------------------------- */

static void url_of(int mode, const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s://%s:%d%s", modes[mode].scheme, HOST, modes[mode].port, path);
}

static char max_time_arg[32];

/* argv prefix: ip netns exec NS curl --cacert CA -sS --max-time T */
static int curl_argv(char **argv, const struct server *s)
{
    int n = 0;
    argv[n++] = ip_path;
    argv[n++] = "netns";
    argv[n++] = "exec";
    argv[n++] = (char *)s->ns;
    argv[n++] = "curl";
    argv[n++] = "--cacert";
    argv[n++] = (char *)s->ca;
    argv[n++] = "-sS";
    argv[n++] = "--max-time";
    argv[n++] = max_time_arg;
    return n;
}

/* Make tool output fit on one line of a failure message. */
static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = '|';
}

/* GET /bytes/N: stream curl's stdout into SHA-256. */
static void do_get(struct fails *f, int mode, int si)
{
    uint64_t n = sizes[si];
    char path[64], url[128], what[96];
    snprintf(path, sizeof(path), "/bytes/%" PRIu64, n);
    url_of(mode, path, url, sizeof(url));
    snprintf(what, sizeof(what), "GET %-7s /bytes/%" PRIu64, modes[mode].name, n);
    char *argv[32];
    int a = curl_argv(argv, &cur->srv);
    argv[a++] = url;
    argv[a] = NULL;
    char head[256];
    struct run_io io = {.out = head, .out_cap = sizeof(head)};
    io.md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(io.md, EVP_sha256(), NULL);
    int rc = run_proc(argv, NULL, NULL, &io, max_time + 15);
    char got[65];
    md_final_hex(io.md, got);
    EVP_MD_CTX_free(io.md);
    bool ok = rc == 0 && io.out_total == n && !strcmp(got, pattern_sha[si]);
    if (mode != MODE_PLAIN && rc == 0)
        cur->tls_ok[mode]++;
    record(what, io.secs, ok);
    if (!ok) {
        trim(io.err);
        fail_add(
            f, "%s: curl rc %d%s, %" PRIu64 " of %" PRIu64 " bytes, sha256 %.16s.. want %.16s.. %s",
            what, rc, io.timed_out ? " (killed)" : "", io.out_total, n, got, pattern_sha[si],
            io.err);
    }
}

/* PUT (curl -T) or chunked POST of an upload file; the answer is its SHA-256. */
static void do_upload(struct fails *f, int mode, const struct upload *u, bool chunked)
{
    char url[128], what[96], data_arg[PATH_MAX + 40];
    url_of(mode, "/upload", url, sizeof(url));
    snprintf(what, sizeof(what), "%s %-7s /upload %" PRIu64 " B%s", chunked ? "POST" : "PUT",
             modes[mode].name, u->size, chunked ? " chunked" : "");
    char *argv[40];
    int a = curl_argv(argv, &cur->srv);
    if (chunked) {
        snprintf(data_arg, sizeof(data_arg), "@%s", u->path);
        argv[a++] = "-H";
        argv[a++] = "Transfer-Encoding: chunked";
        argv[a++] = "--data-binary";
        argv[a++] = data_arg;
    } else {
        argv[a++] = "-T";
        argv[a++] = (char *)u->path;
    }
    argv[a++] = url;
    argv[a] = NULL;
    char out[512];
    struct run_io io = {.out = out, .out_cap = sizeof(out)};
    cur->body_tried += u->size;
    int rc = run_proc(argv, NULL, NULL, &io, max_time + 15);
    char want[80];
    snprintf(want, sizeof(want), "%s\n", u->sha);
    bool ok = rc == 0 && !strcmp(out, want);
    if (ok)
        cur->body_ok += u->size;
    if (mode != MODE_PLAIN && rc == 0)
        cur->tls_ok[mode]++;
    record(what, io.secs, ok);
    if (!ok) {
        trim(io.err);
        trim(out);
        fail_add(f, "%s: curl rc %d%s, answer '%.80s', want %.16s.. %s", what, rc,
                 io.timed_out ? " (killed)" : "", out, u->sha, io.err);
    }
}

/* ---- Tests: transfers -------------------------------------------------------- */

START_TEST(test_server_up)
{
    ck_assert_msg(cur && cur->up, "server of profile %s did not start: %s", cur ? cur->name : "?",
                  cur ? cur->start_err : "");
}
END_TEST

START_TEST(test_get)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    for (int si = 0; si < N_SIZES; si++)
        do_get(&f, _i, si);
    FAILS_ASSERT(&f);
}
END_TEST

START_TEST(test_put)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    for (int si = 0; si < N_SIZES; si++)
        do_upload(&f, _i, &uploads[si], false);
    FAILS_ASSERT(&f);
}
END_TEST

START_TEST(test_post_chunked)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    do_upload(&f, _i, &upload_chunked, true);
    FAILS_ASSERT(&f);
}
END_TEST

/* One curl, several URLs: one connection, every body right. */
START_TEST(test_keepalive)
{
    REQUIRE_SERVER();
    static const uint64_t ns[] = {16385, 1, 1000000, 16384};
    enum { K = 4 };
    char urls[K][128], files[K][PATH_MAX + 32], what[96];
    char *argv[64];
    int a = curl_argv(argv, &cur->srv);
    argv[a++] = "-w";
    argv[a++] = "%{http_code} %{num_connects} %{size_download}\\n";
    for (int k = 0; k < K; k++) {
        char path[64];
        snprintf(path, sizeof(path), "/bytes/%" PRIu64, ns[k]);
        url_of(_i, path, urls[k], sizeof(urls[k]));
        snprintf(files[k], sizeof(files[k]), "%s/keepalive-%d-%d.bin", cur->srv.dir, _i, k);
        unlink(files[k]);
        argv[a++] = "-o";
        argv[a++] = files[k];
        argv[a++] = urls[k];
    }
    argv[a] = NULL;
    char out[1024];
    struct run_io io = {.out = out, .out_cap = sizeof(out)};
    int rc = run_proc(argv, NULL, NULL, &io, max_time + 15);
    struct fails f = {0};
    snprintf(what, sizeof(what), "keep-alive %-7s 4 GETs", modes[_i].name);
    if (rc != 0) {
        trim(io.err);
        fail_add(&f, "%s: curl rc %d: %s", what, rc, io.err);
    }
    /* -w lines: code connects size */
    int connects = 0, lines = 0;
    char *save = NULL;
    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int code, c;
        unsigned long long sz;
        if (sscanf(l, "%d %d %llu", &code, &c, &sz) != 3 || lines >= K) {
            fail_add(&f, "%s: unexpected -w line '%s'", what, l);
            continue;
        }
        if (code != 200 || sz != ns[lines])
            fail_add(&f, "%s: URL %d: code %d size %llu", what, lines, code, sz);
        connects += c;
        lines++;
    }
    if (lines != K)
        fail_add(&f, "%s: %d of %d transfers reported", what, lines, K);
    if (connects != 1)
        fail_add(&f, "%s: %d connections for %d URLs (want 1: keep-alive)", what, connects, K);
    for (int k = 0; k < K; k++) {
        FILE *fp = fopen(files[k], "rb");
        if (!fp) {
            fail_add(&f, "%s: no output for URL %d", what, k);
            continue;
        }
        static uint8_t body[1100000];
        size_t n = fread(body, 1, sizeof(body), fp);
        fclose(fp);
        if (n != ns[k] || !pattern_ok(body, n))
            fail_add(&f, "%s: URL %d body wrong (%zu bytes, want %" PRIu64 ")", what, k, n, ns[k]);
        else
            unlink(files[k]);
    }
    if (_i != MODE_PLAIN && rc == 0)
        cur->tls_ok[_i]++;
    record(what, io.secs, f.n == 0);
    FAILS_ASSERT(&f);
}
END_TEST

/* ---- Tests: openssl s_client ------------------------------------------------- */

/* Parse an HTTP/1.1 response: status, Content-Length, body offset. */
static bool parse_response(const char *buf, size_t len, int *status, long long *clen,
                           size_t *body_off)
{
    *status = -1;
    *clen = -1;
    if (len < 12 || memcmp(buf, "HTTP/1.1 ", 9) != 0)
        return false;
    *status = atoi(buf + 9);
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return false;
    *body_off = (size_t)(end - buf) + 4;
    const char *cl = memmem(buf, *body_off, "\r\nContent-Length: ", 18);
    if (cl)
        *clen = atoll(cl + 18);
    return true;
}

static int s_client(const struct server *s, int port, const char *cipher, const void *req,
                    size_t req_len, char *out, size_t out_cap, struct run_io *io)
{
    char target[64];
    snprintf(target, sizeof(target), "%s:%d", HOST, port);
    char *argv[40];
    int n = 0;
    argv[n++] = ip_path;
    argv[n++] = "netns";
    argv[n++] = "exec";
    argv[n++] = (char *)s->ns;
    argv[n++] = "openssl";
    argv[n++] = "s_client";
    argv[n++] = "-connect";
    argv[n++] = target;
    argv[n++] = "-CAfile";
    argv[n++] = (char *)s->ca;
    argv[n++] = "-verify_return_error";
    argv[n++] = "-verify_ip";
    argv[n++] = HOST;
    argv[n++] = "-quiet";
    argv[n++] = "-brief"; /* connection summary (cipher, verification) on stderr */
    argv[n++] = "-tls1_2";
    if (cipher) {
        argv[n++] = "-cipher";
        argv[n++] = (char *)cipher;
    }
    argv[n] = NULL;
    memset(io, 0, sizeof(*io));
    io->in = req;
    io->in_len = req_len;
    io->out = out;
    io->out_cap = out_cap;
    return run_proc(argv, NULL, NULL, io, SMALL_TIMEOUT_S);
}

START_TEST(test_s_client)
{
    REQUIRE_SERVER();
    static const char req[] = "GET /bytes/100000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    static const char *const ciphers[] = {NULL, "ECDHE-ECDSA-AES256-GCM-SHA384"};
    static char out[200000];
    struct fails f = {0};
    for (int c = 0; c < 2; c++) {
        char what[96];
        snprintf(what, sizeof(what), "s_client sw tls1.2 %s", ciphers[c] ? ciphers[c] : "default");
        struct run_io io;
        int rc = s_client(&cur->srv, modes[MODE_SW].port, ciphers[c], req, sizeof(req) - 1, out,
                          sizeof(out), &io);
        int status;
        long long clen;
        size_t off = 0;
        bool parsed = parse_response(out, io.out_len, &status, &clen, &off);
        size_t blen = parsed ? io.out_len - off : 0;
        bool body_ok = parsed && blen == 100000 && pattern_ok((uint8_t *)out + off, blen);
        bool cipher_ok = !ciphers[c] || strstr(io.err, ciphers[c]) != NULL;
        bool verified = strstr(io.err, "Verification: OK") != NULL;
        char suite[64] = "?";
        const char *cs = strstr(io.err, "Ciphersuite: ");
        if (cs)
            sscanf(cs + 13, "%63s", suite);
        note("[%s] s_client negotiated %s", cur->name, suite);
        bool ok = rc == 0 && parsed && status == 200 && clen == 100000 && body_ok && cipher_ok &&
                  verified && strstr(out, "HTTP/1.1 200") == out;
        if (rc == 0)
            cur->tls_ok[MODE_SW]++;
        record(what, io.secs, ok);
        if (!ok) {
            trim(io.err);
            fail_add(&f,
                     "%s: rc %d, status %d, Content-Length %lld, body %zu bytes %s, cipher %s, "
                     "verification %s; stderr: %.300s",
                     what, rc, status, clen, blen, body_ok ? "ok" : "WRONG",
                     cipher_ok ? "ok" : "NOT NEGOTIATED", verified ? "ok" : "NOT OK", io.err);
        }
    }
    FAILS_ASSERT(&f);
}
END_TEST

/* ---- Tests: hostile input ---------------------------------------------------- */

/* Child: enter the namespace, connect to HOST:port, send, read until EOF. */
struct raw_arg {
    const char *ns;
    int port;
    const void *req;
    size_t len;
    int timeout_s;
};

static void raw_child(void *vp)
{
    struct raw_arg *a = vp;
    char p[128];
    ns_path(a->ns, p, sizeof(p));
    int nfd = open(p, O_RDONLY | O_CLOEXEC);
    if (nfd < 0 || setns(nfd, CLONE_NEWNET) < 0) {
        dprintf(2, "setns %s: %s\n", p, strerror(errno));
        _exit(2);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {a->timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)a->port)};
    inet_pton(AF_INET, HOST, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        dprintf(2, "connect: %s\n", strerror(errno));
        _exit(3);
    }
    size_t off = 0;
    while (off < a->len) {
        ssize_t w = send(fd, (const char *)a->req + off, a->len - off, MSG_NOSIGNAL);
        if (w <= 0) {
            /* The server may answer and close before reading everything. */
            dprintf(2, "send stopped after %zu of %zu bytes: %s\n", off, a->len,
                    w < 0 ? strerror(errno) : "0");
            break;
        }
        off += (size_t)w;
    }
    char buf[4096];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r == 0)
            _exit(0);
        if (r < 0) {
            dprintf(2, "recv: %s\n", strerror(errno));
            _exit(errno == EAGAIN || errno == EWOULDBLOCK ? 4 : 5);
        }
        if (write(1, buf, (size_t)r) != r)
            _exit(6);
    }
}

static int raw_exchange(const struct server *s, int port, const void *req, size_t len, char *out,
                        size_t out_cap, struct run_io *io)
{
    struct raw_arg a = {s->ns, port, req, len, 10};
    memset(io, 0, sizeof(*io));
    io->out = out;
    io->out_cap = out_cap;
    return run_proc(NULL, raw_child, &a, io, 20);
}

/* The request reached the server: connected (child exit codes 2 and 3 are
 * setns and connect failures) and not killed. */
static bool raw_delivered(int rc, const struct run_io *io)
{
    return !io->timed_out && rc != 2 && rc != 3 && rc < 100;
}

struct hostile {
    const char *name;
    int expect;
    char *req;
    size_t len;
};

static int make_hostile(struct hostile *h)
{
    int n = 0;
    static char big_header[21000], long_target[3100];
    size_t o = (size_t)sprintf(big_header, "GET /bytes/1 HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big_header + o, 'a', 20 * 1024);
    o += 20 * 1024;
    o += (size_t)sprintf(big_header + o, "\r\n\r\n");
    size_t t = (size_t)sprintf(long_target, "GET /");
    memset(long_target + t, 'a', 3000);
    t += 3000;
    t += (size_t)sprintf(long_target + t, " HTTP/1.1\r\nHost: x\r\n\r\n");
    static char v99[] = "GET / HTTP/9.9\r\n\r\n";
    static char garbage[] = "\x01\x02\xff\xfe\x00garbage\x7f\x80 \x16\x03\r\n\r\n";
    static char bad_chunk[] = "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              "\r\nzz\r\n";
    h[n++] = (struct hostile){"HTTP/9.9", 505, v99, sizeof(v99) - 1};
    h[n++] = (struct hostile){"20 KiB header", 431, big_header, o};
    h[n++] = (struct hostile){"3000-byte target", 414, long_target, t};
    h[n++] = (struct hostile){"binary garbage", 400, garbage, sizeof(garbage) - 1};
    h[n++] = (struct hostile){"bad chunk size", 400, bad_chunk, sizeof(bad_chunk) - 1};
    return n;
}

/* Then the server must still answer a normal GET right. */
static void check_still_serving(struct fails *f, int mode, const char *after)
{
    char url[128], what[96];
    url_of(mode, "/bytes/100000", url, sizeof(url));
    snprintf(what, sizeof(what), "GET %-7s /bytes/100000 after %s", modes[mode].name, after);
    char *argv[32];
    int a = curl_argv(argv, &cur->srv);
    argv[a++] = url;
    argv[a] = NULL;
    struct run_io io = {0};
    io.md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(io.md, EVP_sha256(), NULL);
    int rc = run_proc(argv, NULL, NULL, &io, SMALL_TIMEOUT_S);
    char got[65], want[65];
    md_final_hex(io.md, got);
    EVP_MD_CTX_free(io.md);
    pattern_sha256(100000, want);
    bool ok = rc == 0 && io.out_total == 100000 && !strcmp(got, want);
    if (mode != MODE_PLAIN && rc == 0)
        cur->tls_ok[mode]++;
    record(what, io.secs, ok);
    if (!ok) {
        trim(io.err);
        fail_add(f, "%s: rc %d, %" PRIu64 " bytes, sha %.16s..: %s", what, rc, io.out_total, got,
                 io.err);
    }
}

static void check_hostile_answer(struct fails *f, const char *what, int rc, const struct run_io *io,
                                 const char *out, int expect)
{
    int status;
    long long clen;
    size_t off;
    parse_response(out, io->out_len, &status, &clen, &off);
    bool closed = strstr(out, "Connection: close\r\n") != NULL;
    bool ok = rc == 0 && status == expect && closed;
    record(what, io->secs, ok);
    if (!ok) {
        char e[300];
        snprintf(e, sizeof(e), "%.290s", io->err);
        trim(e);
        fail_add(f, "%s: rc %d, status %d (want %d, Connection: close %s), %zu bytes: '%.60s' %s",
                 what, rc, status, expect, closed ? "yes" : "NO", io->out_len, out, e);
    }
}

/* A request with Connection: close, read by hand: the whole response, then EOF.
 * Plain through a raw socket, TLS through s_client. */
START_TEST(test_conn_close)
{
    REQUIRE_SERVER();
    static const uint64_t ns[] = {100, 100000};
    static char out[200000];
    struct fails f = {0};
    for (int k = 0; k < 2; k++) {
        char req[128], what[96];
        int len = snprintf(
            req, sizeof(req),
            "GET /bytes/%" PRIu64 " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", ns[k]);
        snprintf(what, sizeof(what), "Connection: close %-7s /bytes/%" PRIu64, modes[_i].name,
                 ns[k]);
        struct run_io io;
        int rc = _i == MODE_PLAIN ? raw_exchange(&cur->srv, modes[_i].port, req, (size_t)len, out,
                                                 sizeof(out), &io)
                                  : s_client(&cur->srv, modes[_i].port, NULL, req, (size_t)len, out,
                                             sizeof(out), &io);
        int status;
        long long clen;
        size_t off = 0;
        bool parsed = parse_response(out, io.out_len, &status, &clen, &off);
        size_t blen = parsed ? io.out_len - off : 0;
        bool ok = rc == 0 && parsed && status == 200 && clen == (long long)ns[k] && blen == ns[k] &&
                  pattern_ok((uint8_t *)out + off, blen);
        if (_i != MODE_PLAIN && rc == 0)
            cur->tls_ok[_i]++;
        record(what, io.secs, ok);
        if (!ok) {
            trim(io.err);
            fail_add(&f,
                     "%s: rc %d, %zu bytes back, status %d, Content-Length %lld, body %zu bytes; "
                     "stderr: %.200s",
                     what, rc, io.out_len, status, clen, blen, io.err);
        }
    }
    FAILS_ASSERT(&f);
}
END_TEST

START_TEST(test_hostile_plain)
{
    REQUIRE_SERVER();
    struct hostile h[8];
    int nh = make_hostile(h);
    struct fails f = {0};
    for (int i = 0; i < nh; i++) {
        char out[4096], what[96];
        struct run_io io;
        snprintf(what, sizeof(what), "hostile plain: %s", h[i].name);
        int rc = raw_exchange(&cur->srv, modes[MODE_PLAIN].port, h[i].req, h[i].len, out,
                              sizeof(out), &io);
        if (raw_delivered(rc, &io)) {
            cur->bad_sent++;
            cur->bad_5xx_sent += h[i].expect >= 500;
        }
        check_hostile_answer(&f, what, rc, &io, out, h[i].expect);
    }
    check_still_serving(&f, MODE_PLAIN, "hostile input");
    FAILS_ASSERT(&f);
}
END_TEST

START_TEST(test_hostile_tls)
{
    REQUIRE_SERVER();
    struct hostile h[8];
    int nh = make_hostile(h);
    struct fails f = {0};
    /* Malformed HTTP inside a good TLS session. */
    for (int i = 0; i < nh; i++) {
        char out[4096], what[96];
        struct run_io io;
        snprintf(what, sizeof(what), "hostile sw: %s", h[i].name);
        int rc = s_client(&cur->srv, modes[MODE_SW].port, NULL, h[i].req, h[i].len, out,
                          sizeof(out), &io);
        if (strstr(io.err, "CONNECTION ESTABLISHED")) { /* -brief: handshake done */
            cur->bad_sent++;
            cur->bad_5xx_sent += h[i].expect >= 500;
            cur->tls_ok[MODE_SW]++;
        }
        check_hostile_answer(&f, what, rc, &io, out, h[i].expect);
    }
    /* Not TLS at all on the TLS port: the handshake must fail and the
     * connection close, without hurting the server. */
    static const char plain_on_tls[] = "GET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n";
    uint8_t junk[1024];
    uint64_t st = base_seed ^ 0x6a756e6bu;
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)rng_next(&st);
    const struct {
        const char *name;
        const void *p;
        size_t n;
    } garbage[] = {{"plain HTTP", plain_on_tls, sizeof(plain_on_tls) - 1},
                   {"1 KiB random", junk, sizeof(junk)}};
    for (int g = 0; g < 2; g++) {
        char out[4096], what[96];
        struct run_io io;
        snprintf(what, sizeof(what), "non-TLS to sw port: %s", garbage[g].name);
        int rc = raw_exchange(&cur->srv, modes[MODE_SW].port, garbage[g].p, garbage[g].n, out,
                              sizeof(out), &io);
        /* Closed (EOF, rc 0) or reset (rc 5) are fine; no answer in 10 s (4) is not. */
        bool ok = (rc == 0 || rc == 5) && !io.timed_out && strstr(out, "HTTP/") == NULL;
        if (rc == 0 || rc == 5)
            cur->tls_garbage_sent++;
        record(what, io.secs, ok);
        if (!ok) {
            trim(io.err);
            fail_add(&f, "%s: rc %d (4 = still open after 10 s), %zu bytes back: %s", what, rc,
                     io.out_len, io.err);
        }
    }
    check_still_serving(&f, MODE_SW, "hostile input");
    check_still_serving(&f, MODE_MBEDTLS, "hostile input");
    FAILS_ASSERT(&f);
}
END_TEST

/* ---- Tests: counters --------------------------------------------------------- */

/* Value of "name" inside the object "section" of the flat /stats JSON. */
static bool json_get(const char *js, const char *section, const char *name, uint64_t *v)
{
    char key[96];
    snprintf(key, sizeof(key), "\"%s\"", section);
    const char *s = js;
    while ((s = strstr(s, key)) != NULL) {
        const char *q = s + strlen(key);
        while (*q == ' ')
            q++;
        if (*q == ':') {
            q++;
            while (*q == ' ')
                q++;
            if (*q == '{') {
                s = q;
                break;
            }
        }
        s += strlen(key);
    }
    if (!s)
        return false;
    const char *end = strchr(s, '}');
    snprintf(key, sizeof(key), "\"%s\"", name);
    const char *k = strstr(s, key);
    if (!k || !end || k > end)
        return false;
    k += strlen(key);
    while (*k == ' ' || *k == ':')
        k++;
    char *e;
    errno = 0;
    unsigned long long x = strtoull(k, &e, 10);
    if (e == k || errno)
        return false;
    *v = x;
    return true;
}

static bool json_balanced(const char *js)
{
    int depth = 0;
    bool in_str = false;
    for (const char *p = js; *p; p++) {
        if (*p == '"')
            in_str = !in_str;
        else if (!in_str && *p == '{')
            depth++;
        else if (!in_str && *p == '}' && --depth < 0)
            return false;
    }
    return depth == 0 && !in_str;
}

START_TEST(test_stats)
{
    REQUIRE_SERVER();
    char url[128];
    url_of(MODE_PLAIN, "/stats", url, sizeof(url));
    char *argv[32];
    int a = curl_argv(argv, &cur->srv);
    argv[a++] = url;
    argv[a] = NULL;
    static char js[65536];
    struct run_io io = {.out = js, .out_cap = sizeof(js)};
    int rc = run_proc(argv, NULL, NULL, &io, SMALL_TIMEOUT_S);
    struct fails f = {0};
    record("GET plain   /stats", io.secs, rc == 0);
    if (rc != 0) {
        trim(io.err);
        fail_add(&f, "GET /stats: curl rc %d: %s", rc, io.err);
        FAILS_ASSERT(&f);
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/stats.json", cur->srv.dir);
    FILE *fp = fopen(path, "w");
    if (fp) {
        fputs(js, fp);
        fclose(fp);
    }
    const char *p = js;
    while (*p == ' ' || *p == '\n')
        p++;
    if (*p != '{' || !json_balanced(js))
        fail_add(&f, "/stats is not a JSON object: '%.100s'", js);
    static const char *const sections[] = {"nic",  "wire",     "tls_sw",   "tls_mbedtls",
                                           "http", "fault_tx", "fault_rx", "server"};
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        char key[64];
        snprintf(key, sizeof(key), "\"%s\"", sections[i]);
        if (!strstr(js, key))
            fail_add(&f, "/stats has no section %s", key);
    }

#define GET(sec, name)                                                                             \
    ({                                                                                             \
        uint64_t v_ = 0;                                                                           \
        if (!json_get(js, sec, name, &v_))                                                         \
            fail_add(&f, "/stats: no %s.%s", sec, name);                                           \
        v_;                                                                                        \
    })
    uint64_t tx_drop = GET("fault_tx", "dropped"), rx_drop = GET("fault_rx", "dropped");
    uint64_t tx_reord = GET("fault_tx", "reordered"), rx_reord = GET("fault_rx", "reordered");
    uint64_t bad = GET("http", "bad_requests"), r5 = GET("http", "responses_5xx");
    uint64_t r4 = GET("http", "responses_4xx"), body_in = GET("http", "bytes_body_in");
    uint64_t sw_ok = GET("tls_sw", "handshakes_ok"), sw_fail = GET("tls_sw", "handshakes_failed");
    uint64_t mb_ok = GET("tls_mbedtls", "handshakes_ok");
    uint64_t sw_dec = GET("tls_sw", "TlsDecryptError"),
             mb_dec = GET("tls_mbedtls", "TlsDecryptError");
    uint64_t acc_err = GET("server", "accept_errors"), oom = GET("server", "session_oom");
    uint64_t bad_desc = GET("nic", "tx_bad_desc");
    uint64_t wr_err = GET("wire", "tun_write_errors"), rd_err = GET("wire", "tun_read_errors");
#undef GET
    note("[%s] stats: fault_tx dropped %" PRIu64 " reordered %" PRIu64 "; fault_rx dropped %" PRIu64
         " reordered %" PRIu64 "; http bad_requests %" PRIu64 " (sent %" PRIu64 ") 4xx %" PRIu64
         " 5xx %" PRIu64 " body_in %" PRIu64 " (ok %" PRIu64 ", tried %" PRIu64
         "); tls_sw ok %" PRIu64 " failed %" PRIu64 "; tls_mbedtls ok %" PRIu64
         "; tun errors w %" PRIu64 " r %" PRIu64,
         cur->name, tx_drop, tx_reord, rx_drop, rx_reord, bad, cur->bad_sent, r4, r5, body_in,
         cur->body_ok, cur->body_tried, sw_ok, sw_fail, mb_ok, wr_err, rd_err);

    /* The faults of this profile happened, and no others. */
    bool want_tx_drop = cur->tx && strstr(cur->tx, "loss");
    bool want_rx_drop = cur->rx && strstr(cur->rx, "loss");
    bool want_tx_reord = cur->tx && strstr(cur->tx, "reorder");
    bool want_rx_reord = cur->rx && strstr(cur->rx, "reorder");
    if ((tx_drop > 0) != want_tx_drop)
        fail_add(&f, "fault_tx.dropped = %" PRIu64 " (want %s)", tx_drop,
                 want_tx_drop ? ">0" : "0");
    if ((rx_drop > 0) != want_rx_drop)
        fail_add(&f, "fault_rx.dropped = %" PRIu64 " (want %s)", rx_drop,
                 want_rx_drop ? ">0" : "0");
    if ((tx_reord > 0) != want_tx_reord)
        fail_add(&f, "fault_tx.reordered = %" PRIu64 " (want %s)", tx_reord,
                 want_tx_reord ? ">0" : "0");
    if ((rx_reord > 0) != want_rx_reord)
        fail_add(&f, "fault_rx.reordered = %" PRIu64 " (want %s)", rx_reord,
                 want_rx_reord ? ">0" : "0");
    /* HTTP counts what we did. */
    if (bad != cur->bad_sent)
        fail_add(&f, "http.bad_requests = %" PRIu64 ", but %" PRIu64 " hostile requests were sent",
                 bad, cur->bad_sent);
    if (r4 < cur->bad_sent - cur->bad_5xx_sent)
        fail_add(&f, "http.responses_4xx = %" PRIu64 " < %" PRIu64 " hostile requests", r4,
                 cur->bad_sent - cur->bad_5xx_sent);
    if (r5 != cur->bad_5xx_sent)
        fail_add(&f, "http.responses_5xx = %" PRIu64 " (want %" PRIu64 ": the 505s)", r5,
                 cur->bad_5xx_sent);
    if (body_in < cur->body_ok || body_in > cur->body_tried)
        fail_add(&f,
                 "http.bytes_body_in = %" PRIu64 ", want between %" PRIu64 " (confirmed uploads) "
                 "and %" PRIu64 " (attempted)",
                 body_in, cur->body_ok, cur->body_tried);
    /* TLS: every completed client connection was a handshake; garbage failed one. */
    if (sw_ok < cur->tls_ok[MODE_SW])
        fail_add(&f, "tls_sw.handshakes_ok = %" PRIu64 " < %" PRIu64 " completed connections",
                 sw_ok, cur->tls_ok[MODE_SW]);
    if (mb_ok < cur->tls_ok[MODE_MBEDTLS])
        fail_add(&f, "tls_mbedtls.handshakes_ok = %" PRIu64 " < %" PRIu64 " completed connections",
                 mb_ok, cur->tls_ok[MODE_MBEDTLS]);
    if (sw_fail < cur->tls_garbage_sent)
        fail_add(&f, "tls_sw.handshakes_failed = %" PRIu64 " < %" PRIu64 " non-TLS connections",
                 sw_fail, cur->tls_garbage_sent);
    if (sw_dec || mb_dec)
        fail_add(&f, "TlsDecryptError sw %" PRIu64 " mbedtls %" PRIu64 " (no corruption here)",
                 sw_dec, mb_dec);
    if (acc_err || oom || bad_desc)
        fail_add(&f,
                 "server.accept_errors %" PRIu64 ", server.session_oom %" PRIu64
                 ", nic.tx_bad_desc %" PRIu64 " (want 0)",
                 acc_err, oom, bad_desc);
    FAILS_ASSERT(&f);
}
END_TEST

/* ---- Tests: shutdown --------------------------------------------------------- */

static void check_shutdown(struct fails *f)
{
    struct server *s = &cur->srv;
    server_stop(s, STOP_TIMEOUT_S);
    note("[%s] SIGTERM -> exit in %.2f s, status 0x%x", cur->name, s->stop_secs, s->exit_status);
    bool clean =
        !s->stop_timed_out && WIFEXITED(s->exit_status) && WEXITSTATUS(s->exit_status) == 0;
    if (!clean) {
        fail_add(f, "server did not exit 0 within %.0f s after SIGTERM (status 0x%x%s)",
                 STOP_TIMEOUT_S, s->exit_status, s->stop_timed_out ? ", SIGKILLed" : "");
        print_file_tail(s->log, 60);
    }
    if (!file_contains(s->log, "[nic]")) {
        fail_add(f, "server log has no counter table ([nic])");
        print_file_tail(s->log, 30);
    }
    if (s->ns_left_behind)
        fail_add(f, "namespace %s still existed after the server exited (removed it)", s->ns);
    char p[128];
    ns_path(s->ns, p, sizeof(p));
    if (path_exists(p))
        fail_add(f, "%s still exists", p);
}

START_TEST(test_shutdown)
{
    ck_assert_msg(cur && cur->srv.started, "server of profile %s never started",
                  cur ? cur->name : "?");
    struct fails f = {0};
    check_shutdown(&f);
    FAILS_ASSERT(&f);
}
END_TEST

/* ---- Tests: tshark on the capture -------------------------------------------- */

START_TEST(test_tshark)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    int si16385 = 3;
    for (int m = MODE_SW; m <= MODE_MBEDTLS; m++) {
        char url[128], what[96];
        url_of(m, "/bytes/1000", url, sizeof(url));
        snprintf(what, sizeof(what), "GET %-7s /bytes/1000", modes[m].name);
        char *argv[32];
        int a = curl_argv(argv, &cur->srv);
        argv[a++] = url;
        argv[a] = NULL;
        static char body[2000];
        struct run_io io = {.out = body, .out_cap = sizeof(body)};
        int rc = run_proc(argv, NULL, NULL, &io, SMALL_TIMEOUT_S);
        bool ok = rc == 0 && io.out_len == 1000 && pattern_ok((uint8_t *)body, 1000);
        if (rc == 0)
            cur->tls_ok[m]++;
        record(what, io.secs, ok);
        if (!ok)
            fail_add(&f, "%s: rc %d, %zu bytes", what, rc, io.out_len);
        do_upload(&f, m, &uploads[si16385], false);
    }
    /* Stop first: SIGTERM flushes the pcap. */
    check_shutdown(&f);
    char tshark[PATH_MAX];
    if (!find_in_path("tshark", tshark, sizeof(tshark))) {
        fail_add(&f, "tshark not found (apt-get install tshark)");
        FAILS_ASSERT(&f);
    }
    char keyopt[PATH_MAX + 32];
    snprintf(keyopt, sizeof(keyopt), "tls.keylog_file:%s", cur->srv.keylog);
    char *argv[] = {tshark,
                    "-r",
                    cur->srv.pcap,
                    "-o",
                    keyopt,
                    "-Y",
                    "http.request",
                    "-T",
                    "fields",
                    "-e",
                    "http.request.method",
                    "-e",
                    "http.request.uri",
                    "-e",
                    "tcp.dstport",
                    NULL};
    static char out[65536];
    struct run_io io = {.out = out, .out_cap = sizeof(out)};
    int rc = run_proc(argv, NULL, NULL, &io, 120);
    note("[tshark] %s -r %s -o %s -Y http.request -T fields ... (%.1f s):\n%s", tshark,
         cur->srv.pcap, keyopt, io.secs, out);
    if (rc != 0)
        fail_add(&f, "tshark rc %d: %.300s", rc, io.err);
    static const char *const want[] = {"GET\t/bytes/1000\t443", "PUT\t/upload\t443",
                                       "GET\t/bytes/1000\t4431", "PUT\t/upload\t4431"};
    for (int i = 0; i < 4; i++) {
        char line[64];
        snprintf(line, sizeof(line), "%s\n", want[i]);
        if (!strstr(out, line))
            fail_add(&f, "tshark did not decrypt/list '%s' (method, uri, port)", want[i]);
    }
    FAILS_ASSERT(&f);
}
END_TEST

/* ---- Main -------------------------------------------------------------------- */

static void skip(const char *why)
{
    printf("test_e2e: SKIP: %s\n", why);
    fflush(stdout);
    exit(77);
}

static void remove_run_dir(void)
{
    if (!run_dir[0])
        return;
    char *argv[] = {"rm", "-rf", "--", run_dir, NULL};
    struct run_io io = {0};
    run_proc(argv, NULL, NULL, &io, 60);
}

static void at_exit(void)
{
    cleanup_all();
    /* The big upload file is never worth keeping. */
    if (uploads[N_SIZES - 1].path[0])
        unlink(uploads[N_SIZES - 1].path);
}

static Suite *make_suite(void)
{
    Suite *s = suite_create("e2e");
    for (int i = 0; i < N_PROFILES; i++) {
        TCase *tc = tcase_create(profiles[i].name);
        tcase_set_timeout(tc, 600);
        tcase_add_unchecked_fixture(tc, setups[i], teardowns[i]);
        tcase_add_test(tc, test_server_up);
        if (profiles[i].capture) {
            tcase_add_test(tc, test_tshark);
        } else {
            tcase_add_loop_test(tc, test_get, 0, N_MODES);
            tcase_add_loop_test(tc, test_put, 0, N_MODES);
            tcase_add_loop_test(tc, test_post_chunked, 0, N_MODES);
            tcase_add_loop_test(tc, test_keepalive, 0, N_MODES);
            tcase_add_test(tc, test_s_client);
            tcase_add_loop_test(tc, test_conn_close, 0, N_MODES);
            tcase_add_test(tc, test_hostile_plain);
            tcase_add_test(tc, test_hostile_tls);
            tcase_add_test(tc, test_stats);
            tcase_add_test(tc, test_shutdown);
        }
        suite_add_tcase(s, tc);
    }
    return s;
}

static uint64_t env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *e;
    unsigned long long x = strtoull(v, &e, 0);
    return *e ? def : (uint64_t)x;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* ---- can we run at all? ---- */
    if (geteuid() != 0)
        skip("needs root and /dev/net/tun (run as root)");
    int tfd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (tfd < 0) {
        char why[256];
        snprintf(why, sizeof(why), "needs root and /dev/net/tun (open: %s)", strerror(errno));
        skip(why);
    }
    close(tfd);
    if (!find_in_path("ip", ip_path, sizeof(ip_path))) {
        ip_path[0] = 0;
        skip("needs the 'ip' command (iproute2)");
    }
    if (access(ANIC_BIN, X_OK) != 0) {
        printf("test_e2e: FAIL: %s is not executable (build it first)\n", ANIC_BIN);
        return 1;
    }
    char tmp[PATH_MAX];
    static const char *const tools[] = {"curl", "openssl", "tshark"};
    for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
        if (!find_in_path(tools[i], tmp, sizeof(tmp))) {
            printf("test_e2e: FAIL: '%s' not found (scripts/deps.sh installs it)\n", tools[i]);
            return 1;
        }

    /* ---- configuration ---- */
    base_seed = env_u64("ANIC_E2E_SEED", base_seed) & 0xffffffffu;
    big_size = env_u64("ANIC_E2E_BIG", big_size);
    max_time = (double)env_u64("ANIC_E2E_MAX_TIME", 60);
    snprintf(max_time_arg, sizeof(max_time_arg), "%.0f", max_time);
    const uint64_t sz[N_SIZES] = {1, 16383, 16384, 16385, big_size};
    memcpy(sizes, sz, sizeof(sizes));

    snprintf(run_dir, sizeof(run_dir), "/tmp/anic-e2e-XXXXXX");
    if (!mkdtemp(run_dir)) {
        printf("test_e2e: FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    atexit(at_exit);
    install_handlers();
    alarm(WATCHDOG_S);

    note("anic binary %s, run directory %s", ANIC_BIN, run_dir);
    note("seed %" PRIu64 " (replay: ANIC_E2E_SEED=%" PRIu64 "; one profile: CK_RUN_CASE=name), "
         "big size %" PRIu64 " B, curl --max-time %s",
         base_seed, base_seed, big_size, max_time_arg);

    double t0 = now_s();
    for (int i = 0; i < N_SIZES; i++) {
        char tag[32];
        snprintf(tag, sizeof(tag), "%" PRIu64, sizes[i]);
        uint64_t seed = base_seed * 1000003u + (uint64_t)i;
        if (!make_upload(&uploads[i], sizes[i], seed, tag)) {
            printf("test_e2e: FAIL: cannot write %s\n", uploads[i].path);
            return 1;
        }
        pattern_sha256(sizes[i], pattern_sha[i]);
        if (i == N_SIZES - 1)
            big_upload_path = uploads[i].path;
        note("upload %-9" PRIu64 " B: PRNG seed %" PRIu64 ", sha256 %.16s..; GET pattern sha256 "
             "%.16s..",
             sizes[i], seed, uploads[i].sha, pattern_sha[i]);
    }
    uint64_t cseed = base_seed * 1000003u + 99;
    if (!make_upload(&upload_chunked, UPLOAD_CHUNKED_B, cseed, "chunked")) {
        printf("test_e2e: FAIL: cannot write %s\n", upload_chunked.path);
        return 1;
    }
    note("chunked upload %u B: PRNG seed %" PRIu64 ", sha256 %.16s.. (prepared in %.1f s)",
         UPLOAD_CHUNKED_B, cseed, upload_chunked.sha, now_s() - t0);

    SRunner *sr = srunner_create(make_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, getenv("CK_VERBOSITY") ? CK_ENV : CK_VERBOSE);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cleanup_all();

    /* ---- summary ---- */
    printf("\ntest_e2e: summary (seed %" PRIu64 ")\n", base_seed);
    printf("  %-11s %9s %9s %7s   slowest transfer\n", "profile", "seconds", "transfers", "failed");
    for (int i = 0; i < N_PROFILES; i++) {
        struct profile *p = &profiles[i];
        if (p->t_start == 0)
            continue;
        const struct record *slow = NULL;
        for (int r = 0; r < n_records; r++)
            if (records[r].profile == p->name && (!slow || records[r].secs > slow->secs))
                slow = &records[r];
        printf("  %-11s %9.1f %9d %7d   %s%s%.2f s\n", p->name, p->t_end - p->t_start,
               p->n_transfers, p->n_failed, slow ? slow->what : "", slow ? ": " : "",
               slow ? slow->secs : 0.0);
    }
    int over = 0;
    for (int r = 0; r < n_records; r++)
        if (records[r].secs > 10) {
            if (!over++)
                printf("  transfers over 10 s:\n");
            printf("    [%s] %s: %.1f s%s\n", records[r].profile, records[r].what, records[r].secs,
                   records[r].ok ? "" : " (FAILED)");
        }
    printf("  total %.1f s, %d test(s) failed\n", now_s() - t0, failed);
    alarm(0);

    if (failed || any_failure || getenv("ANIC_E2E_KEEP")) {
        /* Keep logs, stats and captures for the post-mortem; drop the big file. */
        if (uploads[N_SIZES - 1].path[0])
            unlink(uploads[N_SIZES - 1].path);
        printf("test_e2e: logs kept in %s\n", run_dir);
    } else {
        remove_run_dir();
    }
    fflush(stdout);
    return failed ? 1 : 0;
}
