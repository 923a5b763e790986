/* test_e2e.c - end-to-end tests: a real `anic serve` in a private network
 * namespace, with curl, openssl s_client, a raw socket and tshark as peers.
 *
 * One Check test case per fault profile. Each case starts ONE server that
 * listens on five ports (80 plain, 443 sw, 4431 mbedtls, 4432 nic = NIC TX+RX
 * offload with dump resync, 4433 nic-tagcache = the same with the tag-cache TX
 * policy) and runs the checks of its kind against it:
 *
 *  classic (none, loss-tx, loss-rx, reorder-tx, reorder-rx): on every port GET
 *    /bytes/N and PUT /upload of edge sizes, a chunked POST, keep-alive,
 *    Connection: close read by hand; s_client on sw, nic and nic-tagcache
 *    (TLS 1.2, default suite and AES-256); hostile requests (plain, sw, nic);
 *    /stats counters; a clean SIGTERM shutdown. "none" also runs the TX matrix
 *    below.
 *  TX matrix (tx-loss1, tx-loss5, tx-reorder5, tx-dup1): GET of 1 B .. 256 MiB
 *    on nic and nic-tagcache (plain at 1 MiB as a control), each SHA-256
 *    checked; then the TX offload counters (resyncs by dump / by tag cache,
 *    never a sequence mismatch or a bad record).
 *  RX matrix (rx-reorder2, rx-loss1, rx-loss5, rx-dup1, rx-corrupt01, and
 *    rx-loss2-nobuf = --rx-reorder-buf 0, rx-loss2-hint = --rx-resync hint):
 *    PUT of 1 B .. 256 MiB on nic (sw at 1 MiB as a control), each SHA-256
 *    checked; then the RX offload counters (resyncs happened, records were
 *    fully offloaded, no decryption error).
 *  tamper (rx-tamper1): uploads through a wire that flips payload bits and
 *    fixes the TCP checksum: each must fail or, if none of its packets was
 *    tampered, be right; a wrong hash is never acceptable.
 *  offloads off (offloads-off: --offloads none, 1% loss both ways): the TX and
 *    RX matrices with no TSO, GSO or LRO; /stats shows nothing was cut or merged (with the
 *    default, every TX and RX matrix profile checks that TSO, GSO and LRO did their part).
 *  no context (tx-noctx1: --nic-contexts 1, 1% TX loss): the NIC refuses most
 *    installs; the TX matrix downloads must still be right (host crypto), and
 *    the refusals and software fallbacks are counted.
 *  offload policy (policy-after: --offload-policy after:65536, 1% loss both
 *    ways): the TX and RX matrices, each direction switching to the NIC mid-
 *    stream; check_policy counts the switches and the bytes offloaded.
 *    policy-auto (--offload-policy auto, 1% RX loss): a small download kept
 *    in software, a big one offloaded at open, a big upload switched after
 *    its head, by the sizes HTTP announces (test_policy_auto).
 *  context cache (conn-cache: --nic-ctx-cache 64 --nic-flows 8192, 1% loss
 *    both ways): 2000 concurrent TLS connections on the offload ports, each
 *    with a pipelined download or upload, all byte-exact; the cache missed
 *    and evicted, and once every connection closed no context is resident
 *    and no host block is held.
 *  capture (tshark: no faults; tshark-nic: 2% TX loss): transfers on every TLS
 *    port with --pcap and --keylog; tshark must decrypt every session (also the
 *    offloaded ones with retransmissions), find no expert errors, and its
 *    exported HTTP bodies must be the bytes that were served.
 *
 * Counters: after the transfers of every profile, /stats is checked: the
 * faults of the profile (and no others) happened, HTTP and TLS counters match
 * what the test did, and the offload counters satisfy the invariants of
 * docs/design.md §4, §5 and §9 (see check_tx_offload / check_rx_offload).
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
 *   ANIC_TEST_SEED=S      base seed of the upload contents and the fault stages
 *                         (test_rng.h; default 1634625891): each profile runs
 *                         anic serve --seed S' with S' = (S + its fixed offset)
 *                         mod 2^32 (fault-tx S', fault-rx S' + 1), printed in
 *                         the profile's start line
 *   ANIC_E2E_BIG=BYTES    the big transfer size (default 64 MiB)
 *   ANIC_E2E_HUGE=BYTES   the huge transfer size of the matrices (default 256 MiB;
 *                         0 = leave the huge transfers out)
 *   ANIC_E2E_MAX_TIME=S   curl --max-time per transfer (default 60; huge transfers
 *                         get twice that, at least 120)
 *   ANIC_E2E_KEEP=1       keep the run directory (logs, stats, pcap) even on success
 *   CK_RUN_CASE=NAME      only one profile: none loss-tx loss-rx reorder-tx
 *                         reorder-rx tshark tx-loss1 tx-loss5 tx-reorder5 tx-dup1
 *                         rx-reorder2 rx-loss1 rx-loss5 rx-dup1 rx-corrupt01
 *                         rx-loss2-nobuf rx-loss2-hint rx-tamper1 rx-inject tshark-nic
 *                         tx-noctx1 slow-clients conn-flood blackout-tx rx-hog
 *                         conn-rss offloads-off policy-after conn-cache
 *                         policy-auto
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "test_rng.h"

#ifndef ANIC_BIN
#define ANIC_BIN "anic"
#endif

#define HOST             "10.77.0.2"
#define READY_TIMEOUT_S  20.0
#define STOP_TIMEOUT_S   10.0
#define WATCHDOG_S       840 /* below ctest's 900 s: clean up ourselves first */
#define SMALL_TIMEOUT_S  30.0
#define SERVER_DURATION  "600"
#define MAX_SERVERS      32
#define MAX_RECORDS      4096
#define UPLOAD_CHUNKED_B (1u << 20)
#define UPLOAD_TAMPER_B  (16u << 20)
#define STATS_CAP        65536

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

static void unlink_big_uploads(void); /* also from the signal handler */

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
    unlink_big_uploads(); /* the logs stay */
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(1);
}

/* Check's runner installs its own SIGINT/SIGTERM/SIGALRM handlers, which
 * killpg() the whole process group (in no-fork mode: ours, i.e. the shell or
 * ctest that started us). So ours go in again at the start of every profile,
 * after Check's. */
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

/* True if a line of path starts with prefix and ends (before its newline)
 * with suffix. */
static bool file_line_matches(const char *path, const char *prefix, const char *suffix)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char l[1024];
    bool found = false;
    size_t np = strlen(prefix), ns = strlen(suffix);
    while (!found && fgets(l, sizeof(l), f)) {
        size_t n = strcspn(l, "\n");
        found = n >= np + ns && !strncmp(l, prefix, np) && !strncmp(l + n - ns, suffix, ns);
    }
    fclose(f);
    return found;
}

/* extra: NULL-terminated list of further anic arguments (or NULL). */
static bool server_start(struct server *s, const char *name, const char *fault_tx,
                         const char *fault_rx, bool capture, const char *const *extra, char *err,
                         size_t errlen)
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
    char *argv[64]; /* 22 fixed, extra (< 40 in all), 8 for faults and capture, NULL */
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
    argv[n++] = "--listen";
    argv[n++] = "4432:nic";
    argv[n++] = "--listen";
    argv[n++] = "4433:nic-tagcache";
    for (int i = 0; extra && extra[i] && n < 40; i++)
        argv[n++] = (char *)extra[i];
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

enum { MODE_PLAIN, MODE_SW, MODE_MBEDTLS, MODE_NIC, MODE_NIC_TC, N_MODES };

static const struct mode {
    const char *name, *scheme;
    int port;
    const char *tls_sec; /* its TLS counter section in /stats */
} modes[N_MODES] = {
    {"plain", "http", 80, NULL},
    {"sw", "https", 443, "tls_sw"},
    {"mbedtls", "https", 4431, "tls_mbedtls"},
    {"nic", "https", 4432, "tls_nic"},                   /* TX+RX offload, dump resync */
    {"nic-tagcache", "https", 4433, "tls_nic_tagcache"}, /* ... tag-cache TX resync */
};

/* What a profile runs (bit set). */
enum {
    T_CLASSIC = 1u << 0, /* every mode: GET/PUT/chunked/keep-alive/close, s_client, hostile */
    T_TXM = 1u << 1,     /* TX matrix: downloads 1 B .. huge on nic and nic-tagcache */
    T_RXM = 1u << 2,     /* RX matrix: uploads 1 B .. huge on nic */
    T_TAMPER = 1u << 3,  /* uploads under tamper: an error, never a wrong hash */
    T_CAPTURE = 1u << 4, /* --pcap and --keylog; tshark decrypts the capture */
    T_INJECT = 1u << 5,  /* a raw-socket attacker injects into live uploads */
    /* slow and idle clients closed by the timeouts during a download */
    T_SLOW = 1u << 6,
    /* a connection flood above --max-conns during a download; a ClientHello burst
       above --handshake-queue */
    T_FLOOD = 1u << 7,
    /* a download across a 6 s TX blackout */
    T_BLACKOUT = 1u << 8,
    /* never-reading clients trickling tiny segments during a download */
    T_RXHOG = 1u << 9,
    /* RSS with --max-conns TLS connections open, and more refused */
    T_RSS = 1u << 10,
    /* many concurrent offloaded connections through a small context cache */
    T_CACHE = 1u << 11,
    /* --offload-policy auto: chosen by the announced sizes (test_policy_auto) */
    T_AUTO = 1u << 12,
    /* --send-slots: concurrent downloads take turns (test_send_slots) */
    T_SLOTS = 1u << 13,
};

struct profile {
    const char *name;
    unsigned tests;      /* T_* */
    const char *tx, *rx; /* fault specs without seed */
    uint32_t seed_off;   /* anic serve --seed base seed + seed_off (fault-tx it, fault-rx +1) */
    bool rx_nobuf;       /* --rx-reorder-buf 0: the paper's NIC, no reorder buffer */
    bool rx_hint;        /* --rx-resync hint: no magic-pattern search */
    bool no_huge;        /* the matrix leaves the huge transfer out (see profiles[]) */
    bool one_context;    /* --nic-contexts 1: most installs are refused */
    bool policy_after;   /* --offload-policy after:POLICY_AFTER (args): switches mid-stream */
    /* further anic serve arguments, NULL-terminated (or NULL) */
    const char *const *args;
    bool no_offloads; /* --offloads none: no TSO (every other profile runs with all on) */
    /* filled in at run time */
    char tx_spec[128], rx_spec[128];
    uint32_t seed;
    char seed_arg[16];
    struct server srv;
    bool up;
    char start_err[256];
    double t_start, t_end;
    /* what the server must have counted */
    uint64_t bad_sent;                  /* hostile HTTP requests delivered */
    uint64_t bad_5xx_sent;              /* ... of which the right answer is 5xx (505) */
    uint64_t tls_garbage_sent[N_MODES]; /* non-TLS connections to a TLS port */
    uint64_t body_ok, body_tried;       /* upload body bytes: confirmed / attempted */
    uint64_t tls_ok[N_MODES];           /* completed TLS connections per mode */
    int n_transfers, n_failed;
};

/* Seeds: seed_off is fixed per profile (not its place in the table), so a
 * profile's fault seed depends only on ANIC_TEST_SEED; the specs and the
 * seed are printed when the profile starts, and test_server_up checks that
 * the server derived fault-tx = seed and fault-rx = seed + 1 from --seed.
 *
 * The huge (256 MiB) transfers: measured on the 2-core machine, a 256 MiB
 * download takes 2-5 s without loss or at 1% TX loss and ~31 s at 5% TX loss
 * (per offload mode); a 256 MiB upload takes 2-4 s under 2% reordering, 1%
 * loss, 1% duplication or 0.1% corruption and ~10 s with --rx-reorder-buf 0 or
 * hint resync at 2% loss. Under 5% RX loss uploads crawl at ~4 MB/s (lwIP does
 * not do SACK, so the kernel sender recovers one hole per RTT): 64 MiB takes
 * ~16 s, 256 MiB ~70 s, longer than curl's --max-time. So rx-loss5 stops at the
 * big (64 MiB) size; every other matrix profile includes 256 MiB, and the whole
 * program still runs in about 5 minutes. */
/* Short timeouts so that the slow-clients profile runs in seconds; the
 * connection cap of conn-flood. See the load tests below. */
#define SLOW_TIMEOUT_S  "2"
#define SLOW_SEND_S     "3"
#define FLOOD_MAX_CONNS 50
static const char *const slow_args[] = {"--handshake-timeout",
                                        SLOW_TIMEOUT_S,
                                        "--header-timeout",
                                        SLOW_TIMEOUT_S,
                                        "--keepalive-timeout",
                                        SLOW_TIMEOUT_S,
                                        "--body-timeout",
                                        SLOW_TIMEOUT_S,
                                        "--send-timeout",
                                        SLOW_SEND_S,
                                        NULL};
#define FLOOD_MAX_CONNS_S "50"
#define HSQ_CAP           4 /* --handshake-queue of conn-flood (one worker) */
#define HSQ_CAP_S         "4"
static const char *const flood_args[] = {"--max-conns", FLOOD_MAX_CONNS_S,   "--handshake-workers",
                                         "1",           "--handshake-queue", HSQ_CAP_S,
                                         NULL};
static const char *const hog_args[] = {"--send-timeout", "4", NULL};
#define RSS_MAX_CONNS   1000
#define RSS_MAX_CONNS_S "1000"
static const char *const rss_args[] = {"--max-conns", RSS_MAX_CONNS_S, NULL};
#define POLICY_AFTER 65536
static const char *const policy_args[] = {"--offload-policy", "after:65536", NULL};
/* The attacker forges at the kernel's snd_nxt, 5 ms after it saw it: that
   lands before the real bytes when the sender waits for lwIP's window. With
   --rcv-wnd 131070 (the default) the kernel rarely waits and no forgery
   landed in 3 uploads; the profile pins lwIP's own 65535 so the attack
   still reaches TCP. */
static const char *const inject_args[] = {"--rcv-wnd", "65535", NULL};
static const char *const auto_args[] = {"--offload-policy", "auto", NULL};
#define SLOTS_N   2
#define SLOTS_N_S "2"
static const char *const slots_args[] = {"--send-slots", SLOTS_N_S, NULL};
/* conn-cache: 2000 connections offloaded both ways need 4000 flow ids. */
#define CACHE_CONNS   2000
#define CACHE_SIZE_S  "64"
#define CACHE_FLOWS_S "8192"
static const char *const cache_args[] = {"--nic-ctx-cache", CACHE_SIZE_S, "--nic-flows",
                                         CACHE_FLOWS_S, NULL};

static struct profile profiles[] = {
    /* Classic profiles: every mode. */
    {.name = "none", .tests = T_CLASSIC | T_TXM, .seed_off = 0},
    {.name = "loss-tx", .tests = T_CLASSIC, .tx = "loss 2%", .seed_off = 1000},
    {.name = "loss-rx", .tests = T_CLASSIC, .rx = "loss 2%", .seed_off = 2000},
    {.name = "reorder-tx", .tests = T_CLASSIC, .tx = "reorder 5% gap 3", .seed_off = 3000},
    {.name = "reorder-rx", .tests = T_CLASSIC, .rx = "reorder 5% gap 3", .seed_off = 4000},
    {.name = "tshark", .tests = T_CAPTURE, .seed_off = 5000},
    /* TX offload matrix: downloads. */
    {.name = "tx-loss1", .tests = T_TXM, .tx = "loss 1%", .seed_off = 6000},
    {.name = "tx-loss5", .tests = T_TXM, .tx = "loss 5%", .seed_off = 7000},
    {.name = "tx-reorder5", .tests = T_TXM, .tx = "reorder 5% gap 3", .seed_off = 8000},
    {.name = "tx-dup1", .tests = T_TXM, .tx = "duplicate 1%", .seed_off = 9000},
    /* RX offload matrix: uploads. */
    {.name = "rx-reorder2", .tests = T_RXM, .rx = "reorder 2% gap 3", .seed_off = 10000},
    {.name = "rx-loss1", .tests = T_RXM, .rx = "loss 1%", .seed_off = 11000},
    {.name = "rx-loss5", .tests = T_RXM, .rx = "loss 5%", .seed_off = 12000, .no_huge = true},
    {.name = "rx-dup1", .tests = T_RXM, .rx = "duplicate 1%", .seed_off = 13000},
    {.name = "rx-corrupt01", .tests = T_RXM, .rx = "corrupt 0.1%", .seed_off = 14000},
    {.name = "rx-loss2-nobuf",
     .tests = T_RXM,
     .rx = "loss 2%",
     .seed_off = 15000,
     .rx_nobuf = true},
    {.name = "rx-loss2-hint",
     .tests = T_RXM,
     .rx = "loss 2%",
     .seed_off = 16000,
     .rx_nobuf = true,
     .rx_hint = true},
    /* An attacker on the wire. */
    {.name = "rx-tamper1", .tests = T_TAMPER, .rx = "tamper 1%", .seed_off = 17000},
    /* An attacker who sees the live flow and injects crafted segments. */
    {.name = "rx-inject", .tests = T_INJECT, .seed_off = 23000, .args = inject_args},
    /* tshark on offloaded sessions with retransmissions. */
    {.name = "tshark-nic", .tests = T_CAPTURE, .tx = "loss 2%", .seed_off = 18000},
    /* A NIC out of flow contexts: connections fall back to host crypto. */
    {.name = "tx-noctx1",
     .tests = T_TXM,
     .tx = "loss 1%",
     .seed_off = 19000,
     .no_huge = true,
     .one_context = true},
    /* Load: timeouts, the connection cap, a blackout (test_slow_clients,
       test_conn_flood, test_blackout). */
    {.name = "slow-clients", .tests = T_SLOW, .seed_off = 20000, .args = slow_args},
    {.name = "conn-flood", .tests = T_FLOOD, .seed_off = 21000, .args = flood_args},
    {.name = "blackout-tx", .tests = T_BLACKOUT, .tx = "blackout 6s after 3000", .seed_off = 22000},
    /* Receive memory: clients that pin RX buffers (test_rx_hog). */
    {.name = "rx-hog", .tests = T_RXHOG, .seed_off = 24000, .args = hog_args},
    /* Memory at the connection cap (test_conn_rss). */
    {.name = "conn-rss", .tests = T_RSS, .seed_off = 25000, .args = rss_args},
    /* Many offloaded connections, few resident contexts (test_conn_cache). */
    {.name = "conn-cache",
     .tests = T_CACHE,
     .tx = "loss 1%",
     .rx = "loss 1%",
     .seed_off = 28000,
     .args = cache_args},
    /* The segmentation offloads off, loss both ways: the same results. */
    {.name = "offloads-off",
     .tests = T_TXM | T_RXM,
     .tx = "loss 1%",
     .rx = "loss 1%",
     .seed_off = 26000,
     .no_huge = true,
     .no_offloads = true},
    /* Offload policy after:65536, loss both ways: every direction starts in
       software and big transfers switch to the NIC at a record boundary
       (check_policy). */
    {.name = "policy-after",
     .tests = T_TXM | T_RXM,
     .tx = "loss 1%",
     .rx = "loss 1%",
     .seed_off = 27000,
     .no_huge = true,
     .args = policy_args,
     .policy_after = true},
    /* Offload policy auto (break-even ~93 KiB): by the sizes HTTP announces. */
    {.name = "policy-auto", .tests = T_AUTO, .rx = "loss 1%", .seed_off = 28000, .args = auto_args},
    /* Two send slots for five downloads at once, loss on TX (test_send_slots). */
    {.name = "send-slots",
     .tests = T_SLOTS,
     .tx = "loss 1%",
     .seed_off = 29000,
     .args = slots_args},
};
#define N_PROFILES ((int)(sizeof(profiles) / sizeof(profiles[0])))

static struct profile *cur;
static uint64_t base_seed = 0x616e6963; /* "anic" */
static uint64_t big_size = 64ull << 20;
static uint64_t huge_size = 256ull << 20;
static double max_time = 60, max_time_huge = 120;

/* Transfer sizes (GET /bytes/N and upload files). The classic loops use
 * classic_si[]; the matrices use all of them (SI_HUGE only if huge_size > 0). */
enum { SI_1, SI_16383, SI_16384, SI_16385, SI_1M, SI_BIG, SI_HUGE, N_SIZES };
static const int classic_si[] = {SI_1, SI_16383, SI_16384, SI_16385, SI_BIG};
#define N_CLASSIC ((int)(sizeof(classic_si) / sizeof(classic_si[0])))
static uint64_t sizes[N_SIZES];
struct upload {
    uint64_t size;
    char path[PATH_MAX + 32];
    char sha[65];
};
static struct upload uploads[N_SIZES], upload_chunked, upload_tamper;
static char pattern_sha[N_SIZES][65];

/* Timing records. */
struct record {
    const char *profile;
    char what[112];
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
    note("[%s] %-52s %8.3f s  %s%s", cur->name, what, secs, ok ? "ok" : "FAILED",
         secs > 60 ? "  (> 60 s!)" : "");
}

static bool make_upload(struct upload *u, uint64_t size, uint64_t seed, const char *tag)
{
    u->size = size;
    snprintf(u->path, sizeof(u->path), "%s/upload-%s.bin", run_dir, tag);
    FILE *f = fopen(u->path, "wb");
    if (!f)
        return false;
    struct tu_rng st = {seed};
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    static uint64_t buf[8192];
    for (uint64_t pos = 0; pos < size;) {
        size_t len = size - pos < sizeof(buf) ? (size_t)(size - pos) : sizeof(buf);
        for (size_t i = 0; i < (len + 7) / 8; i++)
            buf[i] = tu_rng_next(&st);
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

/* The big upload files are never worth keeping (the logs are). */
static void unlink_big_uploads(void)
{
    if (uploads[SI_BIG].path[0])
        unlink(uploads[SI_BIG].path);
    if (uploads[SI_HUGE].path[0])
        unlink(uploads[SI_HUGE].path);
    if (upload_tamper.path[0])
        unlink(upload_tamper.path);
}

/* ---- Fixtures ----------------------------------------------------------------
 *
 * Check fixtures take no argument, so a profile's server is started by the
 * first test of its case, test_server_up, registered as a loop test over the
 * single index [i, i + 1) of its profile; the case's unchecked teardown stops
 * the current profile. Adding a profile is one row of profiles[]. */

static void profile_setup(int idx)
{
    struct profile *p = cur = &profiles[idx];
    install_handlers();
    p->t_start = now_s();
    p->seed = (uint32_t)(base_seed + p->seed_off);
    snprintf(p->seed_arg, sizeof(p->seed_arg), "%" PRIu32, p->seed);
    if (p->tx)
        snprintf(p->tx_spec, sizeof(p->tx_spec), "%s", p->tx);
    if (p->rx)
        snprintf(p->rx_spec, sizeof(p->rx_spec), "%s", p->rx);
    const char *extra[32];
    int n = 0;
    extra[n++] = "--seed";
    extra[n++] = p->seed_arg;
    if (p->rx_nobuf) {
        extra[n++] = "--rx-reorder-buf";
        extra[n++] = "0";
    }
    if (p->rx_hint) {
        extra[n++] = "--rx-resync";
        extra[n++] = "hint";
    }
    if (p->one_context) {
        extra[n++] = "--nic-contexts";
        extra[n++] = "1";
    }
    for (int i = 0; p->args && p->args[i] && n < 31; i++)
        extra[n++] = p->args[i];
    if (p->no_offloads) {
        extra[n++] = "--offloads";
        extra[n++] = "none";
    }
    extra[n] = NULL;
    note("===== profile %s: seed %" PRIu32 ", fault-tx '%s', fault-rx '%s'%s%s%s%s =====", p->name,
         p->seed, p->tx ? p->tx_spec : "none", p->rx ? p->rx_spec : "none",
         p->rx_nobuf ? ", --rx-reorder-buf 0" : "", p->rx_hint ? ", --rx-resync hint" : "",
         p->one_context ? ", --nic-contexts 1" : "", p->no_offloads ? ", --offloads none" : "");
    p->up = server_start(&p->srv, p->name, p->tx ? p->tx_spec : NULL, p->rx ? p->rx_spec : NULL,
                         (p->tests & T_CAPTURE) != 0, extra, p->start_err, sizeof(p->start_err));
    if (!p->up)
        note("[%s] server did not start: %s", p->name, p->start_err);
}

/* Unchecked teardown of every case: stops the server of the profile that
 * test_server_up started (none if the case was filtered out before it ran). */
static void profile_teardown(void)
{
    struct profile *p = cur;
    if (!p || p->t_end != 0)
        return;
    server_stop(&p->srv, STOP_TIMEOUT_S); /* no-op if the shutdown test did it */
    p->t_end = now_s();
    if (p->n_failed)
        any_failure = true;
    note("===== profile %s took %.1f s (%d transfers, %d failed) =====", p->name,
         p->t_end - p->t_start, p->n_transfers, p->n_failed);
}

#define REQUIRE_SERVER()                                                                           \
    ck_assert_msg(cur && cur->up && cur->srv.pid > 0, "server of profile %s is not running: %s",   \
                  cur ? cur->name : "?", cur && cur->start_err[0] ? cur->start_err : "stopped")

/* ---- Client helpers ---------------------------------------------------------- */

static void url_of(int mode, const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s://%s:%d%s", modes[mode].scheme, HOST, modes[mode].port, path);
}

static char max_time_arg[32], max_time_huge_arg[32];

/* argv prefix: ip netns exec NS curl --cacert CA -sS --max-time MT */
static int curl_argv_mt(char **argv, const struct server *s, const char *mt)
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
    argv[n++] = (char *)mt;
    return n;
}

static int curl_argv(char **argv, const struct server *s)
{
    return curl_argv_mt(argv, s, max_time_arg);
}

/* Transfers beyond the big size get the huge time limit. */
static int curl_argv_for(char **argv, const struct server *s, uint64_t size, double *timeout)
{
    bool huge = size > big_size;
    *timeout = (huge ? max_time_huge : max_time) + 15;
    return curl_argv_mt(argv, s, huge ? max_time_huge_arg : max_time_arg);
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
    snprintf(what, sizeof(what), "GET %-12s /bytes/%" PRIu64, modes[mode].name, n);
    char *argv[32];
    double timeout;
    int a = curl_argv_for(argv, &cur->srv, n, &timeout);
    argv[a++] = url;
    argv[a] = NULL;
    char head[256];
    struct run_io io = {.out = head, .out_cap = sizeof(head)};
    io.md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(io.md, EVP_sha256(), NULL);
    int rc = run_proc(argv, NULL, NULL, &io, timeout);
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
    snprintf(what, sizeof(what), "%s %-12s /upload %" PRIu64 " B%s", chunked ? "POST" : "PUT",
             modes[mode].name, u->size, chunked ? " chunked" : "");
    char *argv[40];
    double timeout;
    int a = curl_argv_for(argv, &cur->srv, u->size, &timeout);
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
    int rc = run_proc(argv, NULL, NULL, &io, timeout);
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

/* _i is the profile's index (see Fixtures). */
START_TEST(test_server_up)
{
    profile_setup(_i);
    ck_assert_msg(cur && cur->up, "server of profile %s did not start: %s", cur ? cur->name : "?",
                  cur ? cur->start_err : "");
    /* One seed: --seed S gave fault-tx S and fault-rx S + 1 (the banner
       prints each stage's effective spec, seed last). */
    char tx_seed[32], rx_seed[32];
    snprintf(tx_seed, sizeof(tx_seed), "seed %" PRIu32, cur->seed);
    snprintf(rx_seed, sizeof(rx_seed), "seed %" PRIu64, (uint64_t)cur->seed + 1);
    ck_assert_msg(file_line_matches(cur->srv.log, "  fault-tx: ", tx_seed) &&
                      file_line_matches(cur->srv.log, "  fault-rx: ", rx_seed),
                  "%s: the banner in %s lacks fault-tx '... %s' or fault-rx '... %s'", cur->name,
                  cur->srv.log, tx_seed, rx_seed);
}
END_TEST

START_TEST(test_get)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    for (int k = 0; k < N_CLASSIC; k++)
        do_get(&f, _i, classic_si[k]);
    FAILS_ASSERT(&f);
}
END_TEST

START_TEST(test_put)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    for (int k = 0; k < N_CLASSIC; k++)
        do_upload(&f, _i, &uploads[classic_si[k]], false);
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
    snprintf(what, sizeof(what), "keep-alive %-12s 4 GETs", modes[_i].name);
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

/* The host record layer and both offload policies, with AES-128 (default) and
 * AES-256 keys. */
static const int s_client_modes[] = {MODE_SW, MODE_NIC, MODE_NIC_TC};

START_TEST(test_s_client)
{
    REQUIRE_SERVER();
    static const char req[] = "GET /bytes/100000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    static const char *const ciphers[] = {NULL, "ECDHE-ECDSA-AES256-GCM-SHA384"};
    static char out[200000];
    struct fails f = {0};
    for (int k = 0; k < 2 * (int)(sizeof(s_client_modes) / sizeof(s_client_modes[0])); k++) {
        int m = s_client_modes[k / 2], c = k % 2;
        char what[96];
        snprintf(what, sizeof(what), "s_client %s tls1.2 %s", modes[m].name,
                 ciphers[c] ? ciphers[c] : "default");
        struct run_io io;
        int rc = s_client(&cur->srv, modes[m].port, ciphers[c], req, sizeof(req) - 1, out,
                          sizeof(out), &io);
        int status;
        long long clen;
        size_t off = 0;
        bool parsed = parse_response(out, io.out_len, &status, &clen, &off);
        size_t blen = parsed ? io.out_len - off : 0;
        bool body_ok = parsed && blen == 100000 && pattern_ok((uint8_t *)out + off, blen);
        bool cipher_ok = !ciphers[c] || strstr(io.err, ciphers[c]) != NULL;
        bool verified = strstr(io.err, "Verification: OK") != NULL;
        /* The key exchange is X25519 (tls/tls_server.c ecdhe_groups), not the
           first curve of mbed TLS's default list (secp521r1, several times
           slower). OpenSSL 3.0 says "Server", later versions "Peer". */
        bool x25519 = strstr(io.err, "Server Temp Key: X25519") != NULL ||
                      strstr(io.err, "Peer Temp Key: X25519") != NULL;
        char suite[64] = "?";
        const char *cs = strstr(io.err, "Ciphersuite: ");
        if (cs)
            sscanf(cs + 13, "%63s", suite);
        note("[%s] s_client %s negotiated %s", cur->name, modes[m].name, suite);
        bool ok = rc == 0 && parsed && status == 200 && clen == 100000 && body_ok && cipher_ok &&
                  verified && x25519 && strstr(out, "HTTP/1.1 200") == out;
        if (rc == 0)
            cur->tls_ok[m]++;
        record(what, io.secs, ok);
        if (!ok) {
            trim(io.err);
            fail_add(&f,
                     "%s: rc %d, status %d, Content-Length %lld, body %zu bytes %s, cipher %s, "
                     "verification %s, key exchange %s; stderr: %.300s",
                     what, rc, status, clen, blen, body_ok ? "ok" : "WRONG",
                     cipher_ok ? "ok" : "NOT NEGOTIATED", verified ? "ok" : "NOT OK",
                     x25519 ? "X25519" : "NOT X25519", io.err);
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
    snprintf(what, sizeof(what), "GET %-12s /bytes/100000 after %s", modes[mode].name, after);
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
        snprintf(what, sizeof(what), "Connection: close %-12s /bytes/%" PRIu64, modes[_i].name,
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

/* Malformed HTTP inside a good TLS session, then non-TLS bytes on the TLS
 * port; on the sw port (host record layer) and the nic port (offloaded). */
static const int hostile_tls_modes[] = {MODE_SW, MODE_NIC};

START_TEST(test_hostile_tls)
{
    REQUIRE_SERVER();
    struct hostile h[8];
    int nh = make_hostile(h);
    struct fails f = {0};
    static const char plain_on_tls[] = "GET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n";
    uint8_t junk[1024];
    struct tu_rng st = {base_seed ^ 0x6a756e6bu};
    tu_rng_fill(&st, junk, sizeof(junk));
    const struct {
        const char *name;
        const void *p;
        size_t n;
    } garbage[] = {{"plain HTTP", plain_on_tls, sizeof(plain_on_tls) - 1},
                   {"1 KiB random", junk, sizeof(junk)}};
    for (size_t mi = 0; mi < sizeof(hostile_tls_modes) / sizeof(hostile_tls_modes[0]); mi++) {
        int m = hostile_tls_modes[mi];
        for (int i = 0; i < nh; i++) {
            char out[4096], what[96];
            struct run_io io;
            snprintf(what, sizeof(what), "hostile %s: %s", modes[m].name, h[i].name);
            int rc =
                s_client(&cur->srv, modes[m].port, NULL, h[i].req, h[i].len, out, sizeof(out), &io);
            if (strstr(io.err, "CONNECTION ESTABLISHED")) { /* -brief: handshake done */
                cur->bad_sent++;
                cur->bad_5xx_sent += h[i].expect >= 500;
                cur->tls_ok[m]++;
            }
            check_hostile_answer(&f, what, rc, &io, out, h[i].expect);
        }
        /* Not TLS at all on the TLS port: the handshake must fail and the
         * connection close, without hurting the server. */
        for (int g = 0; g < 2; g++) {
            char out[4096], what[96];
            struct run_io io;
            snprintf(what, sizeof(what), "non-TLS to %s port: %s", modes[m].name, garbage[g].name);
            int rc = raw_exchange(&cur->srv, modes[m].port, garbage[g].p, garbage[g].n, out,
                                  sizeof(out), &io);
            /* Closed (EOF, rc 0) or reset (rc 5) are fine; no answer in 10 s (4) is not. */
            bool ok = (rc == 0 || rc == 5) && !io.timed_out && strstr(out, "HTTP/") == NULL;
            if (rc == 0 || rc == 5)
                cur->tls_garbage_sent[m]++;
            record(what, io.secs, ok);
            if (!ok) {
                trim(io.err);
                fail_add(&f, "%s: rc %d (4 = still open after 10 s), %zu bytes back: %s", what, rc,
                         io.out_len, io.err);
            }
        }
    }
    for (int m = MODE_SW; m < N_MODES; m++)
        check_still_serving(&f, m, "hostile input");
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

/* The /stats JSON now. Plain HTTP, except under RX tamper: there a tampered
 * plain request could turn into a bad request (and count as one), so it goes
 * over the mbedtls port, whose record layer rejects tampered records and whose
 * counters the tamper checks leave alone; and it is retried a few times.
 * Saved as stats-<tag>.json in the profile's directory. */
static const char *fetch_stats(struct fails *f, const char *tag, bool rec)
{
    static char js[STATS_CAP];
    bool tamper = cur->rx && strstr(cur->rx, "tamper");
    int mode = tamper ? MODE_MBEDTLS : MODE_PLAIN;
    char url[128], what[96];
    url_of(mode, "/stats", url, sizeof(url));
    snprintf(what, sizeof(what), "GET %-12s /stats", modes[mode].name);
    int attempts = tamper ? 5 : 1;
    for (int t = 0; t < attempts; t++) {
        char *argv[32];
        int a = curl_argv(argv, &cur->srv);
        argv[a++] = url;
        argv[a] = NULL;
        struct run_io io = {.out = js, .out_cap = sizeof(js)};
        int rc = run_proc(argv, NULL, NULL, &io, SMALL_TIMEOUT_S);
        const char *p = js;
        while (*p == ' ' || *p == '\n')
            p++;
        bool ok = rc == 0 && *p == '{' && json_balanced(js);
        if (rec && (ok || t + 1 == attempts)) /* a retried attempt is no failure */
            record(what, io.secs, ok);
        if (ok) {
            char path[PATH_MAX + 64];
            snprintf(path, sizeof(path), "%s/stats-%s.json", cur->srv.dir, tag);
            FILE *fp = fopen(path, "w");
            if (fp) {
                fputs(js, fp);
                fclose(fp);
            }
            return js;
        }
        trim(io.err);
        if (t + 1 == attempts)
            fail_add(f, "%s: curl rc %d, answer '%.100s' (attempt %d of %d): %s", what, rc, js,
                     t + 1, attempts, io.err);
        else
            note("[%s] %s: curl rc %d (attempt %d of %d; retrying): %s", cur->name, what, rc, t + 1,
                 attempts, io.err);
    }
    return NULL;
}

static uint64_t stat_of(struct fails *f, const char *js, const char *sec, const char *name)
{
    uint64_t v = 0;
    if (!json_get(js, sec, name, &v))
        fail_add(f, "/stats: no %s.%s", sec, name);
    return v;
}

static bool spec_has(const char *spec, const char *kw)
{
    return spec && strstr(spec, kw);
}

START_TEST(test_stats)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    const char *js = fetch_stats(&f, "final", true);
    if (!js)
        FAILS_ASSERT(&f);
    static const char *const sections[] = {
        "nic",          "nic_tls",          "wire",        "fault_tx", "fault_rx",
        "driver",       "tls_sw",           "tls_mbedtls", "tls_nic",  "tls_nic_tagcache",
        "offload_dump", "offload_tagcache", "offload_rx",  "http",     "server"};
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        char key[64];
        snprintf(key, sizeof(key), "\"%s\"", sections[i]);
        if (!strstr(js, key))
            fail_add(&f, "/stats has no section %s", key);
    }

#define GET(sec, name) stat_of(&f, js, sec, name)
    /* The faults of this profile happened, and no others. */
    static const struct {
        const char *kw, *counter;
    } kinds[] = {{"loss", "dropped"},         {"reorder", "reordered"},
                 {"duplicate", "duplicated"}, {"corrupt", "corrupted"},
                 {"tamper", "tampered"},      {"blackout", "blackout_drops"}};
    char faults[512] = "";
    for (int dir = 0; dir < 2; dir++) {
        const char *sec = dir ? "fault_rx" : "fault_tx", *spec = dir ? cur->rx : cur->tx;
        for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
            uint64_t got = GET(sec, kinds[k].counter);
            bool want = spec_has(spec, kinds[k].kw);
            size_t used = strlen(faults);
            if (got || want)
                snprintf(faults + used, sizeof(faults) - used, " %s.%s %" PRIu64, sec,
                         kinds[k].counter, got);
            if ((got > 0) != want)
                fail_add(&f, "%s.%s = %" PRIu64 " (want %s: spec '%s')", sec, kinds[k].counter, got,
                         want ? ">0" : "0", spec ? spec : "none");
        }
    }
    uint64_t bad = GET("http", "bad_requests"), r5 = GET("http", "responses_5xx");
    uint64_t r4 = GET("http", "responses_4xx"), body_in = GET("http", "bytes_body_in");
    uint64_t acc_err = GET("server", "accept_errors"), oom = GET("server", "session_oom");
    uint64_t bad_desc = GET("nic", "tx_bad_desc");
    uint64_t wr_err = GET("wire", "tun_write_errors"), rd_err = GET("wire", "tun_read_errors");
    note("[%s] stats: faults:%s; http bad_requests %" PRIu64 " (sent %" PRIu64 ") 4xx %" PRIu64
         " 5xx %" PRIu64 " body_in %" PRIu64 " (ok %" PRIu64 ", tried %" PRIu64
         "); tun errors w %" PRIu64 " r %" PRIu64,
         cur->name, faults[0] ? faults : " none", bad, cur->bad_sent, r4, r5, body_in, cur->body_ok,
         cur->body_tried, wr_err, rd_err);
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
    /* TLS, per mode: every completed client connection was a handshake; garbage
     * failed one; no record failed authentication unless the wire tampered. */
    bool tamper = spec_has(cur->rx, "tamper") || (cur->tests & T_INJECT);
    for (int m = MODE_SW; m < N_MODES; m++) {
        const char *sec = modes[m].tls_sec;
        uint64_t hs_ok = GET(sec, "handshakes_ok"), hs_fail = GET(sec, "handshakes_failed");
        uint64_t dec = GET(sec, "TlsDecryptError");
        note("[%s] %s: handshakes ok %" PRIu64 " failed %" PRIu64 ", TlsDecryptError %" PRIu64
             " (test: %" PRIu64 " completed, %" PRIu64 " non-TLS)",
             cur->name, sec, hs_ok, hs_fail, dec, cur->tls_ok[m], cur->tls_garbage_sent[m]);
        if (hs_ok < cur->tls_ok[m])
            fail_add(&f, "%s.handshakes_ok = %" PRIu64 " < %" PRIu64 " completed connections", sec,
                     hs_ok, cur->tls_ok[m]);
        if (hs_fail < cur->tls_garbage_sent[m])
            fail_add(&f, "%s.handshakes_failed = %" PRIu64 " < %" PRIu64 " non-TLS connections",
                     sec, hs_fail, cur->tls_garbage_sent[m]);
        if (dec && !tamper)
            fail_add(&f, "%s.TlsDecryptError = %" PRIu64 " (no tampering here)", sec, dec);
    }
    if (acc_err || oom || bad_desc)
        fail_add(&f,
                 "server.accept_errors %" PRIu64 ", server.session_oom %" PRIu64
                 ", nic.tx_bad_desc %" PRIu64 " (want 0)",
                 acc_err, oom, bad_desc);
#undef GET
    FAILS_ASSERT(&f);
}
END_TEST

/* What the host posted, the NIC did: every TX resync (state descriptor)
 * and every dumped byte. True when both agree; else, unless f is NULL (a
 * look only), a failure in f for each that differs. */
static bool tx_posted_is_done(struct fails *f, const char *js)
{
    struct fails look = {0};
    bool record = f != NULL;
    if (!f)
        f = &look; /* a missing counter is found again by the real check */
    uint64_t ooo = stat_of(f, js, "nic_tls", "tx_tls_ooo");
    uint64_t nic_dump = stat_of(f, js, "nic_tls", "tx_tls_dump_bytes");
    uint64_t d_resync = stat_of(f, js, "offload_dump", "tx_tls_resync_dump");
    uint64_t d_dump = stat_of(f, js, "offload_dump", "tx_tls_dump_bytes");
    uint64_t t_resync = stat_of(f, js, "offload_tagcache", "tx_tls_resync_tagcache");
    uint64_t t_resync_dump = stat_of(f, js, "offload_tagcache", "tx_tls_resync_dump");
    uint64_t t_dump = stat_of(f, js, "offload_tagcache", "tx_tls_dump_bytes");
    bool ok = true;
    if (ooo != d_resync + t_resync + t_resync_dump) {
        ok = false;
        if (record)
            fail_add(f,
                     "nic_tls.tx_tls_ooo %" PRIu64 " != offload_dump.tx_tls_resync_dump %" PRIu64
                     " + offload_tagcache.tx_tls_resync_tagcache %" PRIu64 " + .tx_tls_resync_dump "
                     "%" PRIu64 " (state descriptors posted)",
                     ooo, d_resync, t_resync, t_resync_dump);
    }
    if (nic_dump != d_dump + t_dump) {
        ok = false;
        if (record)
            fail_add(f,
                     "nic_tls.tx_tls_dump_bytes %" PRIu64
                     " != offload_dump.tx_tls_dump_bytes %" PRIu64
                     " + offload_tagcache.tx_tls_dump_bytes %" PRIu64,
                     nic_dump, d_dump, t_dump);
    }
    return ok;
}

/* TX offload (docs/design.md §4). The NIC's nic_tls counters cover both
 * offload listeners; offload_dump / offload_tagcache are the host's, per
 * policy. */
static void check_tx_offload(struct fails *f, const char *js)
{
#define GET(sec, name) stat_of(f, js, sec, name)
    uint64_t enc = GET("nic_tls", "tx_tls_encrypted_bytes"), ooo = GET("nic_tls", "tx_tls_ooo");
    uint64_t mismatch = GET("nic_tls", "tx_tls_seq_mismatch");
    uint64_t bad_rec = GET("nic_tls", "tx_tls_bad_record");
    uint64_t nic_dump = GET("nic_tls", "tx_tls_dump_bytes");
    uint64_t d_ooo = GET("offload_dump", "tx_tls_ooo"),
             t_ooo = GET("offload_tagcache", "tx_tls_ooo");
    uint64_t d_rec = GET("offload_dump", "tx_record_bytes");
    uint64_t t_rec = GET("offload_tagcache", "tx_record_bytes");
    uint64_t spurious = GET("tcp", "fast_rto_fired") + GET("nic", "rx_no_buffer");
    uint64_t d_resync = GET("offload_dump", "tx_tls_resync_dump");
    uint64_t d_dump = GET("offload_dump", "tx_tls_dump_bytes");
    uint64_t t_resync = GET("offload_tagcache", "tx_tls_resync_tagcache");
    uint64_t t_resync_dump = GET("offload_tagcache", "tx_tls_resync_dump");
    uint64_t t_dump = GET("offload_tagcache", "tx_tls_dump_bytes");
    uint64_t t_miss = GET("offload_tagcache", "tx_tls_tagcache_miss");
    uint64_t d_drop = GET("offload_dump", "tx_tls_drop_no_sync_data");
    uint64_t t_drop = GET("offload_tagcache", "tx_tls_drop_no_sync_data");
    uint64_t d_full = GET("offload_dump", "tx_tls_ring_full_deferred");
    uint64_t t_full = GET("offload_tagcache", "tx_tls_ring_full_deferred");
    uint64_t d_err = GET("offload_dump", "tx_tls_nic_errors");
    uint64_t t_err = GET("offload_tagcache", "tx_tls_nic_errors");
#undef GET
    note("[%s] TX offload: nic_tls encrypted_bytes %" PRIu64 " ooo %" PRIu64 " dump_bytes %" PRIu64
         " seq_mismatch %" PRIu64 " bad_record %" PRIu64 "; offload_dump record_bytes %" PRIu64
         " ooo %" PRIu64 " resync_dump %" PRIu64 " dump_bytes %" PRIu64 " drop_no_sync %" PRIu64
         " ring_full_deferred %" PRIu64 " nic_errors %" PRIu64
         "; offload_tagcache record_bytes %" PRIu64 " ooo %" PRIu64 " resync_tagcache %" PRIu64
         " miss %" PRIu64 " resync_dump %" PRIu64 " dump_bytes %" PRIu64 " drop_no_sync %" PRIu64
         " ring_full_deferred %" PRIu64 " nic_errors %" PRIu64,
         cur->name, enc, ooo, nic_dump, mismatch, bad_rec, d_rec, d_ooo, d_resync, d_dump, d_drop,
         d_full, d_err, t_rec, t_ooo, t_resync, t_miss, t_resync_dump, t_dump, t_drop, t_full,
         t_err);
    uint64_t rec = d_rec + t_rec;
    /* The driver only posts segments at the NIC's expected seq, or after a resync. */
    if (mismatch || bad_rec)
        fail_add(f,
                 "nic_tls.tx_tls_seq_mismatch %" PRIu64 ", nic_tls.tx_tls_bad_record %" PRIu64
                 " (want 0)",
                 mismatch, bad_rec);
    tx_posted_is_done(f, js);
    if ((cur->tests & (T_CLASSIC | T_TXM | T_CAPTURE)) && (!d_rec || !t_rec))
        fail_add(f,
                 "offload_dump.tx_record_bytes %" PRIu64 ", offload_tagcache.tx_record_bytes "
                 "%" PRIu64 ": nothing offloaded on a port that served downloads",
                 d_rec, t_rec);
    /* The load profiles' connection bursts overrun the NIC's RX buffers
     * (nic.rx_no_buffer): ACKs are lost there and segments resent. An
     * attacker who forges acceptable data makes both ends retransmit. */
    /* A starved machine can also make the host's retransmission timer fire
     * spuriously (tcp.fast_rto_fired: an ACK late, not lost) or overrun the
     * NIC's RX buffers; a retransmitted record is then resynced, rightly. */
    if (!cur->tx && !cur->rx && spurious)
        note("no faults, %" PRIu64 " timer retransmissions or RX-buffer drops (a loaded "
             "machine): resyncs allowed (nic_tls.tx_tls_ooo %" PRIu64 ")",
             spurious, ooo);
    if (!cur->tx && !cur->rx && !spurious &&
        !(cur->tests & (T_SLOW | T_FLOOD | T_INJECT | T_RXHOG | T_RSS | T_CACHE))) {
        /* Nothing lost, nothing retransmitted: no resync at all. */
        if (ooo || d_ooo || t_ooo)
            fail_add(f,
                     "no faults, yet resyncs: nic_tls.tx_tls_ooo %" PRIu64
                     ", offload_dump.tx_tls_ooo %" PRIu64 ", offload_tagcache.tx_tls_ooo %" PRIu64
                     " (want 0)",
                     ooo, d_ooo, t_ooo);
    }
    /* Each record byte is encrypted once when nothing is retransmitted, and at
     * least once when all transfers completed. */
    if (ooo == 0 && enc != rec)
        fail_add(f,
                 "nic_tls.tx_tls_encrypted_bytes %" PRIu64
                 " != offload_dump.tx_record_bytes %" PRIu64
                 " + offload_tagcache.tx_record_bytes %" PRIu64 " = %" PRIu64
                 " (no retransmission: want equal)",
                 enc, d_rec, t_rec, rec);
    if (ooo > 0 && cur->n_failed == 0 && enc < rec)
        fail_add(f,
                 "nic_tls.tx_tls_encrypted_bytes %" PRIu64 " < %" PRIu64
                 " record bytes (every transfer completed: each byte was sent encrypted)",
                 enc, rec);
    /* The matrices' and classic transfers are long enough for a lost segment
       inside a record; conn-cache checks its own counters. */
    if (spec_has(cur->tx, "loss") && (cur->tests & (T_CLASSIC | T_TXM | T_CAPTURE))) {
        /* Dump bytes are the part of a record before a retransmitted
           segment's start: none when every resent segment began a record
           (TSO segments of whole records, e.g. hole repair resending the
           first unacked one), so only the resyncs must be there; the dump
           itself is covered by tests/test_tx_offload.c. */
        if (!d_resync)
            fail_add(f, "TX loss, yet offload_dump.tx_tls_resync_dump = 0 (want > 0)");
        if (d_dump > d_resync * (16384 + 29))
            fail_add(f,
                     "offload_dump.tx_tls_dump_bytes %" PRIu64 " > %" PRIu64
                     " resyncs x 16413 (a dump is at most one record's prefix)",
                     d_dump, d_resync);
        if (!t_resync)
            fail_add(f, "TX loss, yet offload_tagcache.tx_tls_resync_tagcache = 0");
        /* Losses inside long flights leave holes that lwIP's own fast
           retransmit does not fill (docs/design.md §7, hole repair). */
        if (!stat_of(f, js, "tcp", "rto_hole_resent"))
            fail_add(f, "TX loss over long downloads, yet tcp.rto_hole_resent = 0");
        if (t_dump && !t_miss)
            fail_add(f,
                     "offload_tagcache.tx_tls_dump_bytes %" PRIu64
                     " without a tag-cache miss (the tag-cache policy dumps only on a miss)",
                     t_dump);
    }
}

/* RX offload (docs/design.md §5). */
static void check_rx_offload(struct fails *f, const char *js)
{
#define GET(sec, name) stat_of(f, js, sec, name)
    uint64_t full = GET("tls_nic", "rx_records_full_offload");
    uint64_t partial = GET("tls_nic", "rx_records_partial_offload");
    uint64_t none = GET("tls_nic", "rx_records_no_offload");
    uint64_t dec_nic = GET("tls_nic", "TlsDecryptError");
    uint64_t dec_tc = GET("tls_nic_tagcache", "TlsDecryptError");
    uint64_t dec_sw = GET("tls_sw", "TlsDecryptError");
    uint64_t buffered = GET("nic_tls", "rx_tls_reorder_buffered");
    uint64_t jump = GET("nic_tls", "rx_tls_jump");
    uint64_t req_end = GET("nic_tls", "rx_tls_resync_req_end");
    uint64_t req_pkt = GET("nic_tls", "rx_tls_resync_req_pkt");
    uint64_t res_ok = GET("nic_tls", "rx_tls_resync_res_ok");
    uint64_t lost = GET("nic_tls", "rx_tls_lost");
    uint64_t auth_err = GET("nic_tls", "rx_tls_err");
    uint64_t dev_resync = GET("offload_rx", "TlsRxDeviceResync");
    uint64_t hints = GET("offload_rx", "rx_hints_sent");
    uint64_t csum_bad = GET("nic", "rx_csum_bad");
    uint64_t tampered = GET("fault_rx", "tampered");
#undef GET
    note("[%s] RX offload: tls_nic records full %" PRIu64 " partial %" PRIu64 " none %" PRIu64
         " TlsDecryptError %" PRIu64 " (tagcache %" PRIu64 ", sw %" PRIu64
         "); nic_tls reorder_buffered %" PRIu64 " jump %" PRIu64 " lost %" PRIu64
         " resync_req_pkt %" PRIu64 " resync_req_end %" PRIu64 " resync_res_ok %" PRIu64
         " rx_tls_err %" PRIu64 "; offload_rx TlsRxDeviceResync %" PRIu64 " hints_sent %" PRIu64
         "; nic.rx_csum_bad %" PRIu64,
         cur->name, full, partial, none, dec_nic, dec_tc, dec_sw, buffered, jump, lost, req_pkt,
         req_end, res_ok, auth_err, dev_resync, hints, csum_bad);
    bool tamper = spec_has(cur->rx, "tamper");
    if (tamper) {
        /* Tampered records must have been caught, by the NIC's and the host's check. */
        if (!tampered)
            fail_add(f, "fault_rx.tampered = 0 under '%s'", cur->rx_spec);
        if (!dec_nic)
            fail_add(f, "tls_nic.TlsDecryptError = 0 after tampered nic uploads");
        if (!dec_sw)
            fail_add(f, "tls_sw.TlsDecryptError = 0 after tampered sw uploads");
        return;
    }
    if (cur->tests & T_INJECT) {
        /* Forged in-window data fails authentication on the NIC and the host;
           test_inject checks the rest. */
        if (!dec_nic)
            fail_add(f, "tls_nic.TlsDecryptError = 0 after in-window forgeries");
        return;
    }
    if (dec_nic || dec_tc)
        fail_add(f,
                 "tls_nic.TlsDecryptError %" PRIu64 ", tls_nic_tagcache.TlsDecryptError %" PRIu64
                 " (nothing tampered: want 0)",
                 dec_nic, dec_tc);
    /* A single flipped bit never passes the TCP checksum; nothing else changes
     * payload bytes. So the NIC's GHASH must agree with every tag it checks. */
    if (auth_err)
        fail_add(f, "nic_tls.rx_tls_err = %" PRIu64 " (nothing tampered: want 0)", auth_err);
    if (!full)
        fail_add(f, "tls_nic.rx_records_full_offload = 0: the NIC decrypted no record");
    /* The upload handler takes what it is offered: most plaintext reaches it
       where the record lay, without the pending copy. */
    uint64_t pt = stat_of(f, js, "tls_nic", "rx_bytes_plaintext");
    uint64_t direct = stat_of(f, js, "tls_nic", "rx_bytes_delivered_direct");
    uint64_t reassembled = stat_of(f, js, "tls_nic", "rx_bytes_reassembled");
    note("[%s] RX plaintext %" PRIu64 " B, delivered without a copy %" PRIu64
         ", record bytes put together %" PRIu64,
         cur->name, pt, direct, reassembled);
    if (direct > pt || direct < pt / 2)
        fail_add(f,
                 "tls_nic.rx_bytes_delivered_direct %" PRIu64 " of rx_bytes_plaintext %" PRIu64
                 " (want at least half, at most all)",
                 direct, pt);
    /* Loss, reordering and corruption (a packet with a bad checksum is never
     * offloaded, and lwIP drops it) put ahead-of-hole segments in front of the
     * NIC; it must have held, jumped or resynchronised. Duplicates cannot: the
     * copy follows the original and is "entirely old" (passed up untouched),
     * so under duplicates alone every record must be fully offloaded instead. */
    bool desync =
        spec_has(cur->rx, "loss") || spec_has(cur->rx, "reorder") || spec_has(cur->rx, "corrupt");
    if (desync && buffered + jump + req_end == 0)
        fail_add(f,
                 "RX faults '%s', yet no resync: nic_tls.rx_tls_reorder_buffered + rx_tls_jump + "
                 "rx_tls_resync_req_end = 0",
                 cur->rx_spec);
    if (spec_has(cur->rx, "duplicate") && !desync && (partial || none || lost))
        fail_add(f,
                 "RX duplicates only, yet tls_nic.rx_records_partial_offload %" PRIu64
                 ", rx_records_no_offload %" PRIu64 ", nic_tls.rx_tls_lost %" PRIu64
                 " (a duplicate never costs the offload anything: want 0)",
                 partial, none, lost);
    if (spec_has(cur->rx, "corrupt") && !csum_bad)
        fail_add(f, "RX corruption, yet nic.rx_csum_bad = 0");
    if (cur->rx_nobuf) {
        /* The paper's NIC: no reorder buffer, so a hole means searching for the
         * magic pattern and the host confirming. */
        if (buffered)
            fail_add(f, "--rx-reorder-buf 0, yet nic_tls.rx_tls_reorder_buffered = %" PRIu64,
                     buffered);
        if (!cur->rx_hint && (!req_pkt || !dev_resync || !res_ok))
            fail_add(f,
                     "--rx-reorder-buf 0 under loss: nic_tls.rx_tls_resync_req_pkt %" PRIu64
                     ", offload_rx.TlsRxDeviceResync %" PRIu64 ", nic_tls.rx_tls_resync_res_ok "
                     "%" PRIu64 " (want all > 0)",
                     req_pkt, dev_resync, res_ok);
    }
    if (cur->rx_hint) {
        if (!hints)
            fail_add(f, "--rx-resync hint under loss, yet offload_rx.rx_hints_sent = 0");
        if (req_pkt)
            fail_add(f,
                     "--rx-resync hint: nic_tls.rx_tls_resync_req_pkt = %" PRIu64
                     " (hint mode never searches: want 0)",
                     req_pkt);
    }
}

/* --nic-contexts 1: connections whose install the NIC refused sealed their
 * records on the host (the downloads were checked); every refusal counted. */
static void check_refused_installs(struct fails *f, const char *js)
{
#define GET(sec, name) stat_of(f, js, sec, name)
    uint64_t d_fail = GET("offload_dump", "tx_tls_ctx_install_failed");
    uint64_t t_fail = GET("offload_tagcache", "tx_tls_ctx_install_failed");
    uint64_t d_fb = GET("tls_nic", "offload_fallback_sw");
    uint64_t t_fb = GET("tls_nic_tagcache", "offload_fallback_sw");
    uint64_t d_pkts = GET("offload_dump", "tx_tls_sw_fallback_packets");
    uint64_t t_pkts = GET("offload_tagcache", "tx_tls_sw_fallback_packets");
    uint64_t nic_ctx = GET("nic_tls", "tx_tls_ctx") + GET("nic_tls", "rx_tls_ctx");
    uint64_t full = GET("nic", "flow_table_full");
    uint64_t mismatch = GET("nic_tls", "tx_tls_seq_mismatch");
#undef GET
    note("[%s] refused installs: dump %" PRIu64 " tagcache %" PRIu64 "; fallback_sw %" PRIu64
         " / %" PRIu64 "; sealed-copy packets %" PRIu64 " / %" PRIu64 "; nic contexts %" PRIu64
         ", flow_table_full %" PRIu64,
         cur->name, d_fail, t_fail, d_fb, t_fb, d_pkts, t_pkts, nic_ctx, full);
    if (!d_fail || !t_fail)
        fail_add(f,
                 "--nic-contexts 1, yet tx_tls_ctx_install_failed dump %" PRIu64
                 " tagcache %" PRIu64 " (want > 0)",
                 d_fail, t_fail);
    if (d_fb < d_fail || t_fb < t_fail)
        fail_add(f,
                 "offload_fallback_sw %" PRIu64 " / %" PRIu64 " < refused TX installs %" PRIu64
                 " / %" PRIu64,
                 d_fb, t_fb, d_fail, t_fail);
    if (full < d_fail + t_fail)
        fail_add(f, "nic.flow_table_full %" PRIu64 " < refused TX installs %" PRIu64, full,
                 d_fail + t_fail);
    if (mismatch)
        fail_add(f, "nic_tls.tx_tls_seq_mismatch %" PRIu64 " (want 0)", mismatch);
}

static int matrix_sizes(int *si);

/* --offload-policy after:65536 (docs/design.md §4.1): nothing offloaded at
 * open; each matrix transfer past 64 KiB switched (downloads on both NIC
 * ports, uploads on nic); the smaller ones and the short directions stayed
 * in software; the switched downloads offloaded all but their first 64 KiB
 * (up to one record and the response head more). */
static void check_policy(struct fails *f, const char *js)
{
#define GET(sec, name) stat_of(f, js, sec, name)
    uint64_t d_open = GET("offload_dump", "offload_tx_at_open");
    uint64_t t_open = GET("offload_tagcache", "offload_tx_at_open");
    uint64_t d_sw = GET("offload_dump", "offload_tx_switched");
    uint64_t t_sw = GET("offload_tagcache", "offload_tx_switched");
    uint64_t d_kept = GET("offload_dump", "offload_tx_kept_sw");
    uint64_t t_kept = GET("offload_tagcache", "offload_tx_kept_sw");
    uint64_t r_open = GET("offload_rx", "offload_rx_at_open");
    uint64_t r_sw = GET("offload_rx", "offload_rx_switched");
    uint64_t r_kept = GET("offload_rx", "offload_rx_kept_sw");
    uint64_t d_rec = GET("offload_dump", "tx_record_bytes");
    uint64_t t_rec = GET("offload_tagcache", "tx_record_bytes");
#undef GET
    note("[%s] policy: tx at_open %" PRIu64 "/%" PRIu64 " switched %" PRIu64 "/%" PRIu64
         " kept_sw %" PRIu64 "/%" PRIu64 "; rx at_open %" PRIu64 " switched %" PRIu64
         " kept_sw %" PRIu64 "; offloaded record bytes %" PRIu64 "/%" PRIu64,
         cur->name, d_open, t_open, d_sw, t_sw, d_kept, t_kept, r_open, r_sw, r_kept, d_rec, t_rec);
    if (d_open || t_open || r_open)
        fail_add(f,
                 "after:%d, yet offloaded at open: tx %" PRIu64 "/%" PRIu64 ", rx %" PRIu64
                 " (want 0)",
                 POLICY_AFTER, d_open, t_open, r_open);
    int si[N_SIZES], n = matrix_sizes(si), big = 0;
    uint64_t body = 0;
    for (int k = 0; k < n; k++)
        if (sizes[si[k]] > POLICY_AFTER) {
            big++;
            body += sizes[si[k]];
        }
    if (d_sw < (uint64_t)big || t_sw < (uint64_t)big || r_sw < (uint64_t)big)
        fail_add(f,
                 "switched tx %" PRIu64 "/%" PRIu64 ", rx %" PRIu64
                 " < %d transfers past %d bytes per port",
                 d_sw, t_sw, r_sw, big, POLICY_AFTER);
    if (!d_kept || !t_kept || !r_kept)
        fail_add(f,
                 "kept_sw tx %" PRIu64 "/%" PRIu64 ", rx %" PRIu64
                 ": small transfers must stay in software",
                 d_kept, t_kept, r_kept);
    /* Record bytes = plaintext + 29 per record (at most 16384 plaintext). */
    uint64_t hi = body + 1024 * (uint64_t)big - (uint64_t)POLICY_AFTER * big;
    hi += hi / 16384 * 29 + 29 * (uint64_t)big;
    uint64_t lo = body - (uint64_t)(POLICY_AFTER + 16384) * big;
    for (int m = 0; m < 2; m++) {
        uint64_t rec = m ? t_rec : d_rec;
        if (rec < lo || rec > hi)
            fail_add(f,
                     "offload_%s.tx_record_bytes %" PRIu64 " outside [%" PRIu64 ", %" PRIu64
                     "]: the switch was not at the first record boundary past %d",
                     m ? "tagcache" : "dump", rec, lo, hi, POLICY_AFTER);
    }
}

/* --offload-policy auto (docs/design.md §4.1), the default cost model
 * (break-even 95239 bytes): a 16 KiB download stays in software, a 1 MiB
 * download is offloaded from its first record (HTTP announced its size), a
 * 1 MiB upload switches at the record after its head (the Content-Length
 * arrives there); the short directions stay in software. Exact counts: the
 * profile runs nothing else on the nic port. Each transfer is checked. */
START_TEST(test_policy_auto)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    do_get(&f, MODE_NIC, SI_16384);
    do_get(&f, MODE_NIC, SI_1M);
    do_upload(&f, MODE_NIC, &uploads[SI_1M], false);
    static const char *const name[6] = {"offload_tx_at_open",  "offload_tx_switched",
                                        "offload_tx_kept_sw",  "offload_rx_at_open",
                                        "offload_rx_switched", "offload_rx_kept_sw"};
    static const uint64_t want[6] = {1, 0, 2, 0, 1, 2};
    uint64_t got[6] = {0};
    /* kept_sw is counted when the connection is freed: after the peer's close. */
    for (int tries = 0; tries < 50; tries++) {
        struct fails g = {0};
        const char *js = fetch_stats(&g, "policy", false);
        bool same = js != NULL;
        for (int i = 0; js && i < 6; i++) {
            got[i] = stat_of(&g, js, i < 3 ? "offload_dump" : "offload_rx", name[i]);
            same = same && got[i] == want[i];
        }
        if (same || tries == 49)
            break;
        usleep(100000);
    }
    note("[%s] policy auto: tx at_open %" PRIu64 " switched %" PRIu64 " kept_sw %" PRIu64
         "; rx at_open %" PRIu64 " switched %" PRIu64 " kept_sw %" PRIu64,
         cur->name, got[0], got[1], got[2], got[3], got[4], got[5]);
    for (int i = 0; i < 6; i++)
        if (got[i] != want[i])
            fail_add(&f, "%s %" PRIu64 " (want %" PRIu64 ")", name[i], got[i], want[i]);
    FAILS_ASSERT(&f);
}
END_TEST

/* Segmentation offloads: with TSO and GSO on (the default) downloads of the
   TX matrix go out as TSO segments, each cut into more than one wire packet,
   and reach the kernel as super-packets; with --offloads none the NIC cuts
   and merges nothing. */
static void check_segmentation(struct fails *f, const char *js)
{
    uint64_t segs = stat_of(f, js, "nic", "tx_tso_segments");
    uint64_t pkts = stat_of(f, js, "nic", "tx_tso_packets");
    note("[%s] TSO: segments %" PRIu64 " wire packets %" PRIu64, cur->name, segs, pkts);
    if (cur->no_offloads && (segs || pkts))
        fail_add(f, "nic.tx_tso_segments %" PRIu64 " with --offloads none (want 0)", segs);
    uint64_t gw = stat_of(f, js, "wire", "tun_gso_writes");
    uint64_t gr = stat_of(f, js, "wire", "tun_gso_reads");
    note("[%s] GSO: writes %" PRIu64 " reads %" PRIu64, cur->name, gw, gr);
    if (cur->no_offloads && (gw || gr))
        fail_add(f, "wire.tun_gso_writes %" PRIu64 " reads %" PRIu64 " with --offloads none", gw,
                 gr);
    if (!cur->no_offloads && (cur->tests & T_TXM) && gw == 0)
        fail_add(f, "wire.tun_gso_writes 0: no download went to the kernel as a super-packet");
    uint64_t lro = stat_of(f, js, "nic", "rx_lro_merged");
    note("[%s] LRO: merged %" PRIu64, cur->name, lro);
    if (cur->no_offloads && lro)
        fail_add(f, "nic.rx_lro_merged %" PRIu64 " with --offloads none (want 0)", lro);
    if (!cur->no_offloads && (cur->tests & T_RXM) && lro == 0)
        fail_add(f, "nic.rx_lro_merged 0: no upload packet was merged");
    /* Checksum offload: every packet sent leaves its TCP checksum to the
       NIC, every one the NIC verified skips lwIP's check. */
    uint64_t csum_tx = stat_of(f, js, "driver", "tx_csum_offloaded");
    uint64_t csum_rx = stat_of(f, js, "driver", "rx_csum_trusted");
    note("[%s] checksum offload: sent %" PRIu64 " trusted %" PRIu64, cur->name, csum_tx, csum_rx);
    if (cur->no_offloads && (csum_tx || csum_rx))
        fail_add(f,
                 "driver.tx_csum_offloaded %" PRIu64 " rx_csum_trusted %" PRIu64
                 " with --offloads none (want 0)",
                 csum_tx, csum_rx);
    if (!cur->no_offloads && (csum_tx == 0 || csum_rx == 0))
        fail_add(f,
                 "driver.tx_csum_offloaded %" PRIu64 " rx_csum_trusted %" PRIu64
                 ": checksum offload (on by default) did not act",
                 csum_tx, csum_rx);
    if (!cur->no_offloads && (cur->tests & T_TXM) && (segs == 0 || pkts <= segs))
        fail_add(f,
                 "nic.tx_tso_segments %" PRIu64 " / packets %" PRIu64
                 ": TSO did not cut the downloads",
                 segs, pkts);
}

START_TEST(test_offload_counters)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    const char *js = fetch_stats(&f, "offload", false);
    /* The NIC publishes its counters every 5 ms while the host's are live: a
       state descriptor posted just before /stats (a late retransmission's
       resync) may not be in the NIC's snapshot yet. */
    for (int t = 0; js && !cur->one_context && t < 10 && !tx_posted_is_done(NULL, js); t++) {
        note("[%s] NIC counters behind the host's: /stats again in 20 ms", cur->name);
        struct timespec ms20 = {.tv_nsec = 20 * 1000 * 1000};
        nanosleep(&ms20, NULL);
        js = fetch_stats(&f, "offload", false);
    }
    if (js)
        check_segmentation(&f, js);
    if (js && cur->one_context) {
        check_refused_installs(&f, js);
    } else if (js) {
        check_tx_offload(&f, js);
        check_rx_offload(&f, js);
    }
    if (js && cur->policy_after)
        check_policy(&f, js);
    FAILS_ASSERT(&f);
}
END_TEST

/* ---- Tests: offload matrices ------------------------------------------------- */

/* This profile's matrix sizes: all, less the huge one if it is off. */
static int matrix_sizes(int *si)
{
    int n = 0;
    for (int i = 0; i < N_SIZES; i++)
        if (i != SI_HUGE || (huge_size && !cur->no_huge))
            si[n++] = i;
    return n;
}

/* Downloads through the TX offload (both resync policies), SHA-256 checked. */
START_TEST(test_tx_matrix)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    int si[N_SIZES], n = matrix_sizes(si);
    for (int m = MODE_NIC; m <= MODE_NIC_TC; m++)
        for (int k = 0; k < n; k++)
            do_get(&f, m, si[k]);
    do_get(&f, MODE_PLAIN, SI_1M); /* control: the same wire without offload */
    FAILS_ASSERT(&f);
}
END_TEST

/* Uploads through the RX offload, SHA-256 checked. */
START_TEST(test_rx_matrix)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    int si[N_SIZES], n = matrix_sizes(si);
    for (int k = 0; k < n; k++)
        do_upload(&f, MODE_NIC, &uploads[si[k]], false);
    do_upload(&f, MODE_SW, &uploads[SI_1M], false); /* control: host record layer */
    FAILS_ASSERT(&f);
}
END_TEST

/* ---- Tests: tamper ----------------------------------------------------------- */

/* fault_rx.tampered now, or UINT64_MAX if /stats could not be read. */
static uint64_t tampered_now(struct fails *f)
{
    const char *js = fetch_stats(f, "tamper", false);
    uint64_t v;
    return js && json_get(js, "fault_rx", "tampered", &v) ? v : UINT64_MAX;
}

static bool is_sha_line(const char *s)
{
    for (int i = 0; i < 64; i++)
        if (!s[i] || !strchr("0123456789abcdef", s[i]))
            return false;
    return s[64] == '\n' && !s[65];
}

/* An attacker flips one payload bit of 1% of the packets and fixes the TCP
 * checksum. Every upload must fail (TLS alert, reset: curl non-zero or no hash)
 * unless none of the packets that arrived while it ran was tampered, in which
 * case it must succeed; a wrong hash means tampered plaintext reached the
 * application, whatever the counters say. The 16 MiB uploads (~11,000 packets)
 * are all but certain to be hit, the 16385-byte ones (~12 packets) usually not. */
START_TEST(test_tamper)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    static const int tmodes[] = {MODE_NIC, MODE_SW};
    const struct upload *ups[] = {&upload_tamper,     &upload_tamper,     &upload_tamper,
                                  &uploads[SI_16385], &uploads[SI_16385], &uploads[SI_16385]};
    uint64_t before = tampered_now(&f);
    for (size_t mi = 0; mi < sizeof(tmodes) / sizeof(tmodes[0]); mi++) {
        int m = tmodes[mi];
        int rejected = 0, intact = 0;
        for (size_t k = 0; k < sizeof(ups) / sizeof(ups[0]); k++) {
            const struct upload *u = ups[k];
            char url[128], what[112];
            url_of(m, "/upload", url, sizeof(url));
            char *argv[40];
            double timeout;
            int a = curl_argv_for(argv, &cur->srv, u->size, &timeout);
            argv[a++] = "-T";
            argv[a++] = (char *)u->path;
            argv[a++] = url;
            argv[a] = NULL;
            char out[512];
            struct run_io io = {.out = out, .out_cap = sizeof(out)};
            cur->body_tried += u->size;
            int rc = run_proc(argv, NULL, NULL, &io, timeout);
            uint64_t after = tampered_now(&f);
            bool known = before != UINT64_MAX && after != UINT64_MAX;
            uint64_t delta = known ? after - before : UINT64_MAX;
            before = after;
            char want[80];
            snprintf(want, sizeof(want), "%s\n", u->sha);
            bool right = rc == 0 && !strcmp(out, want);
            bool wrong_hash = rc == 0 && !right && is_sha_line(out);
            if (rc == 0)
                cur->tls_ok[m]++;
            const char *outcome;
            bool ok;
            trim(io.err);
            if (wrong_hash) {
                ok = false;
                outcome = "WRONG HASH";
                trim(out);
                fail_add(&f,
                         "PUT %s %" PRIu64 " B under tamper: the server answered sha256 %.64s, "
                         "want %s (tampered bytes reached the application; %" PRIu64
                         " packet(s) tampered meanwhile)",
                         modes[m].name, u->size, out, u->sha, delta);
            } else if (right) {
                ok = true;
                outcome = delta == 0 ? "intact, nothing tampered" : "intact";
                cur->body_ok += u->size;
                intact++;
            } else if (delta == 0) {
                ok = false;
                outcome = "FAILED, nothing tampered";
                trim(out);
                fail_add(&f,
                         "PUT %s %" PRIu64 " B under tamper: no packet was tampered, yet curl rc "
                         "%d, answer '%.80s': %s",
                         modes[m].name, u->size, rc, out, io.err);
            } else {
                ok = true;
                outcome = "rejected";
                rejected++;
            }
            snprintf(what, sizeof(what), "PUT %-12s /upload %" PRIu64 " B (tamper)", modes[m].name,
                     u->size);
            record(what, io.secs, ok);
            char tampered_s[32] = "?";
            if (known)
                snprintf(tampered_s, sizeof(tampered_s), "%" PRIu64, delta);
            note("[%s]   -> %s: curl rc %d, %s packet(s) tampered meanwhile%s%.120s", cur->name,
                 outcome, rc, tampered_s, io.err[0] ? "; " : "", io.err);
        }
        note("[%s] tamper %s: %d rejected, %d intact", cur->name, modes[m].name, rejected, intact);
        if (!rejected)
            fail_add(&f, "no %s upload was rejected under '%s': tamper never hit one?",
                     modes[m].name, cur->rx_spec);
    }
    FAILS_ASSERT(&f);
}
END_TEST

/* ---- Tests: an on-path attacker injecting into live uploads ------------------- */

/*
 * The attacker is a child in the namespace. It watches the upload on the TUN
 * device (AF_PACKET, the kernel's side of the wire) to learn the flow's
 * current sequence number, and every few milliseconds injects crafted
 * segments with a raw socket, as the kernel-side address:
 *   - SYN-flagged data with a fake TLS header at the live sequence number;
 *   - data with a fake header far beyond the receive window;
 *   - the same as two IPv4 fragments;
 *   - (phase "in-window" only) data with a fake header at the live sequence
 *     number, which TCP may well take: the TLS stream is then forged.
 * It stops on SIGTERM or after its deadline and prints what it sent.
 */
struct inject_arg {
    const char *ns;
    int port;
    bool in_window;
    int limit_s;
};

static volatile sig_atomic_t inject_stop;

static void inject_on_term(int sig)
{
    (void)sig;
    inject_stop = 1;
}

static uint16_t inet_csum(const uint8_t *p, size_t len, uint32_t acc)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        acc += (uint32_t)p[i] << 8 | p[i + 1];
    if (len & 1)
        acc += (uint32_t)p[len - 1] << 8;
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)~acc;
}

/* An IPv4/TCP packet 10.77.0.1:sport -> HOST:dport at pkt; returns its length. */
static size_t inject_build(uint8_t *pkt, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
                           uint8_t flags, const uint8_t *payload, size_t plen, uint16_t ip_id)
{
    size_t tot = 40 + plen;
    memset(pkt, 0, 40);
    pkt[0] = 0x45;
    pkt[2] = (uint8_t)(tot >> 8), pkt[3] = (uint8_t)tot;
    pkt[4] = (uint8_t)(ip_id >> 8), pkt[5] = (uint8_t)ip_id;
    pkt[8] = 64, pkt[9] = 6;
    inet_pton(AF_INET, "10.77.0.1", pkt + 12);
    inet_pton(AF_INET, HOST, pkt + 16);
    uint8_t *t = pkt + 20;
    t[0] = (uint8_t)(sport >> 8), t[1] = (uint8_t)sport;
    t[2] = (uint8_t)(dport >> 8), t[3] = (uint8_t)dport;
    for (int i = 0; i < 4; i++) {
        t[4 + i] = (uint8_t)(seq >> (24 - 8 * i));
        t[8 + i] = (uint8_t)(ack >> (24 - 8 * i));
    }
    t[12] = 5 << 4, t[13] = flags, t[14] = 0xff, t[15] = 0xff;
    memcpy(t + 20, payload, plen);
    uint8_t ph[12];
    memcpy(ph, pkt + 12, 8);
    ph[8] = 0, ph[9] = 6, ph[10] = (uint8_t)((20 + plen) >> 8), ph[11] = (uint8_t)(20 + plen);
    uint32_t acc = 0;
    for (int i = 0; i < 12; i += 2)
        acc += (uint32_t)ph[i] << 8 | ph[i + 1];
    uint16_t c = inet_csum(t, 20 + plen, acc);
    t[16] = (uint8_t)(c >> 8), t[17] = (uint8_t)c;
    uint16_t ic = inet_csum(pkt, 20, 0);
    pkt[10] = (uint8_t)(ic >> 8), pkt[11] = (uint8_t)ic;
    return tot;
}

static void inject_child(void *vp)
{
    struct inject_arg *a = vp;
    char p[128];
    ns_path(a->ns, p, sizeof(p));
    int nfd = open(p, O_RDONLY | O_CLOEXEC);
    if (nfd < 0 || setns(nfd, CLONE_NEWNET) < 0) {
        dprintf(2, "setns %s: %s\n", p, strerror(errno));
        _exit(2);
    }
    signal(SIGTERM, inject_on_term);
    alarm((unsigned)a->limit_s + 5);
    /* ETH_P_ALL: packets the kernel sends out reach only such taps. */
    int pfd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ALL));
    int rfd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    unsigned ifx = if_nametoindex("anic0");
    struct sockaddr_ll ll = {
        .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)ifx};
    if (pfd < 0 || rfd < 0 || !ifx || bind(pfd, (struct sockaddr *)&ll, sizeof(ll)) < 0) {
        dprintf(2, "attacker sockets: %s\n", strerror(errno));
        _exit(3);
    }
    struct sockaddr_in dst = {.sin_family = AF_INET};
    inet_pton(AF_INET, HOST, &dst.sin_addr);
    uint32_t host_ip = dst.sin_addr.s_addr;
    uint16_t sport = 0;
    uint32_t snd_nxt = 0, ack = 0, first_seq = 0;
    unsigned long seen = 0, syn = 0, oow = 0, frag = 0, inwin = 0;
    uint16_t ip_id = 0x4000;
    double end = now_s() + a->limit_s, next = 0;
    uint8_t fake[69];
    fake[0] = 23, fake[1] = 3, fake[2] = 3, fake[3] = 0, fake[4] = 64;
    for (size_t i = 5; i < sizeof(fake); i++)
        fake[i] = (uint8_t)(0x5a ^ i);
    while (!inject_stop && now_s() < end) {
        struct pollfd pf = {.fd = pfd, .events = POLLIN};
        if (poll(&pf, 1, 5) > 0) {
            uint8_t b[2048];
            ssize_t n = recv(pfd, b, sizeof(b), MSG_DONTWAIT);
            if (n >= 40 && (b[0] >> 4) == 4 && b[9] == 6 && !memcmp(b + 16, &host_ip, 4)) {
                size_t ihl = (size_t)(b[0] & 15) * 4, thl = (size_t)(b[ihl + 12] >> 4) * 4;
                size_t tot = (size_t)b[2] << 8 | b[3];
                uint16_t dp = (uint16_t)(b[ihl + 2] << 8 | b[ihl + 3]);
                if (dp == a->port && tot <= (size_t)n && tot > ihl + thl) {
                    uint32_t seq = (uint32_t)b[ihl + 4] << 24 | (uint32_t)b[ihl + 5] << 16 |
                                   (uint32_t)b[ihl + 6] << 8 | b[ihl + 7];
                    uint32_t end_seq = seq + (uint32_t)(tot - ihl - thl);
                    uint16_t sp = (uint16_t)(b[ihl] << 8 | b[ihl + 1]);
                    if (sp != sport) /* a new connection: its first data byte */
                        first_seq = seq;
                    if (sp != sport || (int32_t)(end_seq - snd_nxt) > 0) {
                        sport = sp;
                        snd_nxt = end_seq;
                        ack = (uint32_t)b[ihl + 8] << 24 | (uint32_t)b[ihl + 9] << 16 |
                              (uint32_t)b[ihl + 10] << 8 | b[ihl + 11];
                    }
                    seen++;
                }
            }
        }
        if (!sport || now_s() < next)
            continue;
        next = now_s() + 0.005;
        uint8_t pkt[256];
        size_t n = inject_build(pkt, sport, (uint16_t)a->port, snd_nxt, ack, 0x02 | 0x10 | 0x08,
                                fake, sizeof(fake), ip_id++);
        syn += sendto(rfd, pkt, n, 0, (struct sockaddr *)&dst, sizeof(dst)) == (ssize_t)n;
        n = inject_build(pkt, sport, (uint16_t)a->port, snd_nxt + (64u << 20), ack, 0x18, fake,
                         sizeof(fake), ip_id++);
        oow += sendto(rfd, pkt, n, 0, (struct sockaddr *)&dst, sizeof(dst)) == (ssize_t)n;
        /* The same, out of the window, as two fragments (TCP header + 20
           payload bytes, then the rest at fragment offset 5 = 40 bytes). */
        uint8_t whole[256], f2[256];
        size_t wn = inject_build(whole, sport, (uint16_t)a->port, snd_nxt + (65u << 20), ack, 0x18,
                                 fake, sizeof(fake), ip_id++);
        memcpy(pkt, whole, 60);
        pkt[2] = 0, pkt[3] = 60, pkt[6] = 0x20, pkt[7] = 0, pkt[10] = pkt[11] = 0;
        uint16_t ic = inet_csum(pkt, 20, 0);
        pkt[10] = (uint8_t)(ic >> 8), pkt[11] = (uint8_t)ic;
        memcpy(f2, whole, 20);
        memcpy(f2 + 20, whole + 60, wn - 60);
        f2[2] = (uint8_t)((wn - 40) >> 8), f2[3] = (uint8_t)(wn - 40), f2[6] = 0, f2[7] = 5;
        f2[10] = f2[11] = 0;
        ic = inet_csum(f2, 20, 0);
        f2[10] = (uint8_t)(ic >> 8), f2[11] = (uint8_t)ic;
        frag +=
            sendto(rfd, pkt, 60, 0, (struct sockaddr *)&dst, sizeof(dst)) == 60 &&
            sendto(rfd, f2, wn - 40, 0, (struct sockaddr *)&dst, sizeof(dst)) == (ssize_t)(wn - 40);
        /* Forge the TLS stream only well past the handshake. */
        if (a->in_window && snd_nxt - first_seq > (1u << 20)) {
            n = inject_build(pkt, sport, (uint16_t)a->port, snd_nxt, ack, 0x18, fake, sizeof(fake),
                             ip_id++);
            inwin += sendto(rfd, pkt, n, 0, (struct sockaddr *)&dst, sizeof(dst)) == (ssize_t)n;
        }
    }
    printf("seen %lu syn %lu oow %lu frag %lu inwin %lu\n", seen, syn, oow, frag, inwin);
    fflush(stdout);
    _exit(0);
}

/* One upload to the nic port while the attacker runs; classifies it. */
static void inject_upload(struct fails *f, bool in_window, int *right, int *failed)
{
    const struct upload *u = &upload_tamper;
    char path_out[PATH_MAX + 64];
    snprintf(path_out, sizeof(path_out), "%s/attacker-%s.txt", cur->srv.dir,
             in_window ? "inwindow" : "dropped");
    int ofd = open(path_out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    struct inject_arg ia = {cur->srv.ns, modes[MODE_NIC].port, in_window, 30};
    pid_t apid = fork();
    if (apid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (ofd >= 0)
            dup2(ofd, 1);
        inject_child(&ia);
    }
    if (ofd >= 0)
        close(ofd);
    ck_assert_msg(apid > 0, "fork: %s", strerror(errno));

    char url[128], what[112], rate[] = "6M";
    url_of(MODE_NIC, "/upload", url, sizeof(url));
    char *argv[40];
    double timeout;
    int a = curl_argv_for(argv, &cur->srv, u->size, &timeout);
    argv[a++] = "--limit-rate"; /* a few seconds of live flow to attack */
    argv[a++] = rate;
    argv[a++] = "-T";
    argv[a++] = (char *)u->path;
    argv[a++] = url;
    argv[a] = NULL;
    char out[512];
    struct run_io io = {.out = out, .out_cap = sizeof(out)};
    usleep(100 * 1000); /* the attacker's sockets are open */
    cur->body_tried += u->size;
    int rc = run_proc(argv, NULL, NULL, &io, timeout);
    kill(apid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 100 && waitpid(apid, &st, WNOHANG) == 0; i++)
        usleep(50 * 1000);
    if (waitpid(apid, &st, WNOHANG) == 0) {
        kill(apid, SIGKILL);
        waitpid(apid, &st, 0);
    }
    char summary[160] = "";
    FILE *fp = fopen(path_out, "r");
    if (fp) {
        if (!fgets(summary, sizeof(summary), fp))
            summary[0] = 0;
        fclose(fp);
    }
    trim(summary);
    char want[80];
    snprintf(want, sizeof(want), "%s\n", u->sha);
    bool ok_hash = rc == 0 && !strcmp(out, want);
    bool wrong_hash = rc == 0 && !ok_hash && is_sha_line(out);
    snprintf(what, sizeof(what), "PUT nic /upload %" PRIu64 " B under injection (%s)", u->size,
             in_window ? "in-window" : "TCP drops it");
    record(what, io.secs, !wrong_hash);
    trim(io.err);
    note("[%s] %s: curl rc %d, %s; attacker: %s (exit 0x%x)", cur->name, what, rc,
         ok_hash      ? "right hash"
         : wrong_hash ? "WRONG HASH"
                      : "failed",
         summary, st);
    if (wrong_hash)
        fail_add(f, "%s: the server answered a WRONG hash: forged bytes reached the application",
                 what);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || strncmp(summary, "seen ", 5) != 0)
        fail_add(f, "%s: the attacker did not run (exit 0x%x, '%s')", what, st, summary);
    else if (strstr(summary, "seen 0 "))
        fail_add(f, "%s: the attacker never saw the flow ('%s')", what, summary);
    *right += ok_hash;
    *failed += !ok_hash && !wrong_hash;
    if (ok_hash) {
        cur->body_ok += u->size;
        cur->tls_ok[MODE_NIC]++;
    }
    if (!in_window && !ok_hash)
        fail_add(f,
                 "%s: curl rc %d, '%.80s': TCP accepts none of these segments, so the upload "
                 "must complete: %s",
                 what, rc, out, io.err);
}

START_TEST(test_inject)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    const char *js = fetch_stats(&f, "inject-before", false);
    uint64_t b_syn = js ? stat_of(&f, js, "nic_tls", "rx_tls_skip_syn") : 0;
    uint64_t b_oow = js ? stat_of(&f, js, "nic_tls", "rx_tls_skip_oow") : 0;
    uint64_t b_frag = js ? stat_of(&f, js, "nic_tls", "rx_tls_skip_frag") : 0;
    uint64_t b_full = js ? stat_of(&f, js, "tls_nic", "rx_records_full_offload") : 0;
    int right = 0, failed = 0;
    for (int k = 0; k < 2; k++)
        inject_upload(&f, false, &right, &failed);
    js = fetch_stats(&f, "inject-dropped", false);
    if (js) {
        uint64_t syn = stat_of(&f, js, "nic_tls", "rx_tls_skip_syn") - b_syn;
        uint64_t oow = stat_of(&f, js, "nic_tls", "rx_tls_skip_oow") - b_oow;
        uint64_t frag = stat_of(&f, js, "nic_tls", "rx_tls_skip_frag") - b_frag;
        uint64_t full = stat_of(&f, js, "tls_nic", "rx_records_full_offload") - b_full;
        note("[%s] NIC skipped: %" PRIu64 " SYN, %" PRIu64 " out-of-window, %" PRIu64
             " fragments; %" PRIu64 " records fully offloaded meanwhile",
             cur->name, syn, oow, frag, full);
        if (!syn || !oow || !frag)
            fail_add(&f,
                     "the NIC did not count the injected segments it must skip "
                     "(syn %" PRIu64 ", oow %" PRIu64 ", frag %" PRIu64 ")",
                     syn, oow, frag);
        if (!full)
            fail_add(&f, "no record was fully offloaded during the attack");
        b_full += full;
    }
    uint64_t b_err = js ? stat_of(&f, js, "tls_nic", "TlsDecryptError") : 0;
    uint64_t b_alerts = js ? stat_of(&f, js, "tls_nic", "alerts_sent") : 0;
    int in_right = 0, in_failed = 0;
    for (int k = 0; k < 3; k++)
        inject_upload(&f, true, &in_right, &in_failed);
    js = fetch_stats(&f, "inject-inwindow", false);
    if (js) {
        uint64_t err = stat_of(&f, js, "tls_nic", "TlsDecryptError") - b_err;
        uint64_t alerts = stat_of(&f, js, "tls_nic", "alerts_sent") - b_alerts;
        note("[%s] in-window forgeries: %d uploads intact, %d failed; TlsDecryptError +%" PRIu64
             ", alerts sent +%" PRIu64,
             cur->name, in_right, in_failed, err, alerts);
        if (in_failed && !err)
            fail_add(&f,
                     "%d upload(s) failed under in-window forgery but no TlsDecryptError "
                     "was counted",
                     in_failed);
    }
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

/* Transfers to look at in the capture: on every TLS port a GET /bytes/1000 and
 * a PUT of 16385 bytes, and on the offloaded ports a 1 MiB GET (long enough to
 * see retransmissions under TX loss). */
#define CAPTURE_SMALL 1000
static const int capture_modes[] = {MODE_SW, MODE_MBEDTLS, MODE_NIC, MODE_NIC_TC};
#define N_CAPTURE_MODES ((int)(sizeof(capture_modes) / sizeof(capture_modes[0])))

START_TEST(test_capture)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    for (int i = 0; i < N_CAPTURE_MODES; i++) {
        int m = capture_modes[i];
        char url[128], what[96];
        url_of(m, "/bytes/1000", url, sizeof(url));
        snprintf(what, sizeof(what), "GET %-12s /bytes/1000", modes[m].name);
        char *argv[32];
        int a = curl_argv(argv, &cur->srv);
        argv[a++] = url;
        argv[a] = NULL;
        static char body[2000];
        struct run_io io = {.out = body, .out_cap = sizeof(body)};
        int rc = run_proc(argv, NULL, NULL, &io, SMALL_TIMEOUT_S);
        bool ok =
            rc == 0 && io.out_len == CAPTURE_SMALL && pattern_ok((uint8_t *)body, CAPTURE_SMALL);
        if (rc == 0)
            cur->tls_ok[m]++;
        record(what, io.secs, ok);
        if (!ok)
            fail_add(&f, "%s: rc %d, %zu bytes", what, rc, io.out_len);
        do_upload(&f, m, &uploads[SI_16385], false);
        if (m == MODE_NIC || m == MODE_NIC_TC)
            do_get(&f, m, SI_1M);
    }
    FAILS_ASSERT(&f);
}
END_TEST

static char tshark_path[PATH_MAX];

/* tshark -r PCAP -o tls.keylog_file:KEYLOG -o tcp.reassemble_out_of_order:TRUE ARGS.
 * Out-of-order reassembly matters under loss: the capture shows the wire as the
 * peer sees it, segments after a hole before its retransmission; without it
 * tshark loses the TLS record boundaries there and reports junk records. */
static int tshark_run(struct fails *f, const char *const *args, char *out, size_t cap,
                      const char *what)
{
    char keyopt[PATH_MAX + 32];
    snprintf(keyopt, sizeof(keyopt), "tls.keylog_file:%s", cur->srv.keylog);
    char *argv[40];
    int n = 0;
    argv[n++] = tshark_path;
    argv[n++] = "-r";
    argv[n++] = cur->srv.pcap;
    argv[n++] = "-o";
    argv[n++] = keyopt;
    argv[n++] = "-o";
    argv[n++] = "tcp.reassemble_out_of_order:TRUE";
    for (int i = 0; args[i] && n < 38; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    char cmd[1024] = "";
    for (int i = 1; i < n; i++) {
        size_t used = strlen(cmd);
        bool q = strpbrk(argv[i], " &|{}") != NULL;
        snprintf(cmd + used, sizeof(cmd) - used, " %s%s%s", q ? "'" : "", argv[i], q ? "'" : "");
    }
    struct run_io io = {.out = out, .out_cap = cap};
    int rc = run_proc(argv, NULL, NULL, &io, 120);
    note("[%s] tshark%s (%s; %.1f s, %zu bytes out)", cur->name, cmd, what, io.secs, io.out_len);
    if (rc != 0) {
        trim(io.err);
        fail_add(f, "tshark (%s) rc %d: %.300s", what, rc, io.err);
    }
    return rc;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static bool file_sha256(const char *path, char hex[65])
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return false;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    static uint8_t buf[1 << 16];
    size_t r;
    while ((r = fread(buf, 1, sizeof(buf), fp)) > 0)
        EVP_DigestUpdate(md, buf, r);
    fclose(fp);
    md_final_hex(md, hex);
    EVP_MD_CTX_free(md);
    return true;
}

/* Decrypted HTTP: per TLS port, the requests of test_capture and as many 200s. */
static void tshark_http(struct fails *f)
{
    static char out[1 << 20];
    static const char *const args[] = {"-Y", "http",
                                       "-T", "fields",
                                       "-e", "tcp.srcport",
                                       "-e", "tcp.dstport",
                                       "-e", "http.request.method",
                                       "-e", "http.request.uri",
                                       "-e", "http.response.code",
                                       NULL};
    if (tshark_run(f, args, out, sizeof(out), "decrypted HTTP") != 0)
        return;
    printf("%s", out);
    for (int i = 0; i < N_CAPTURE_MODES; i++) {
        int m = capture_modes[i], port = modes[m].port;
        bool nic = m == MODE_NIC || m == MODE_NIC_TC;
        const char *want[3] = {"GET /bytes/1000", "PUT /upload", "GET /bytes/1048576"};
        int n_want = nic ? 3 : 2, n_200 = 0;
        bool seen[3] = {false, false, false};
        static char copy[sizeof(out)];
        snprintf(copy, sizeof(copy), "%s", out);
        char *save = NULL;
        for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            char *fld[5] = {0};
            char *p = l;
            for (int k = 0; k < 5; k++)
                fld[k] = strsep(&p, "\t");
            if (!fld[4])
                continue;
            if (atoi(fld[1]) == port && fld[2][0]) {
                char req[200];
                snprintf(req, sizeof(req), "%s %s", fld[2], fld[3]);
                for (int k = 0; k < n_want; k++)
                    seen[k] |= !strcmp(req, want[k]);
            }
            if (atoi(fld[0]) == port && !strcmp(fld[4], "200"))
                n_200++;
        }
        for (int k = 0; k < n_want; k++)
            if (!seen[k])
                fail_add(f, "tshark did not decrypt the request '%s' to port %d (%s)", want[k],
                         port, modes[m].name);
        if (n_200 < n_want)
            fail_add(f, "tshark decrypted %d '200' responses from port %d (%s), want %d", n_200,
                     port, modes[m].name, n_want);
    }
}

/* tshark's own decryption of the wire must give back the served bytes: export
 * the HTTP bodies and hash them. With a bad GCM tag, tshark does not decrypt
 * the record at all, so this also checks the NIC's tags. */
static void tshark_bodies(struct fails *f)
{
    char dir[PATH_MAX + 32], opt[PATH_MAX + 48];
    snprintf(dir, sizeof(dir), "%s/http-objects", cur->srv.dir);
    mkdir(dir, 0700);
    snprintf(opt, sizeof(opt), "http,%s", dir);
    static char out[4096];
    const char *const args[] = {"--export-objects", opt, "-q", NULL};
    if (tshark_run(f, args, out, sizeof(out), "export HTTP bodies") != 0)
        return;
    char sha_small[65];
    pattern_sha256(CAPTURE_SMALL, sha_small);
    int n_small = 0, n_1m = 0;
    DIR *d = opendir(dir);
    if (!d) {
        fail_add(f, "tshark exported nothing into %s", dir);
        return;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        bool small = !strcmp(e->d_name, "1000") || !strncmp(e->d_name, "1000(", 5);
        bool big = !strcmp(e->d_name, "1048576") || !strncmp(e->d_name, "1048576(", 8);
        if (!small && !big)
            continue;
        char path[PATH_MAX + 320], got[65] = "";
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        file_sha256(path, got);
        const char *want = small ? sha_small : pattern_sha[SI_1M];
        if (strcmp(got, want))
            fail_add(f, "tshark's decryption of /bytes/%s: sha256 %.16s.., want %.16s..", e->d_name,
                     got, want);
        n_small += small;
        n_1m += big;
    }
    closedir(d);
    note("[%s] tshark exported %d /bytes/1000 and %d /bytes/1048576 bodies", cur->name, n_small,
         n_1m);
    if (n_small != N_CAPTURE_MODES || n_1m != 2)
        fail_add(f,
                 "tshark exported %d /bytes/1000 bodies (want %d) and %d /bytes/1048576 (want 2)",
                 n_small, N_CAPTURE_MODES, n_1m);
}

/* No expert error (malformed record, reassembly conflict: a retransmission
 * whose bytes differ from the original) on any TLS port. */
static void tshark_expert(struct fails *f)
{
    static char out[65536];
    static const char *const args[] = {
        "-Y", "_ws.expert.severity == error && tcp.port in {443, 4431, 4432, 4433}",
        "-T", "fields",
        "-e", "frame.number",
        "-e", "tcp.srcport",
        "-e", "_ws.expert.message",
        NULL};
    if (tshark_run(f, args, out, sizeof(out), "expert errors") != 0)
        return;
    if (out[0]) {
        printf("%.4000s", out);
        fail_add(f, "tshark reports %d frame(s) with expert errors on the TLS ports: %.200s",
                 count_lines(out), out);
    }
}

/* Under TX loss, the offloaded sessions must show retransmitted segments (that
 * tshark then decrypted like the rest: tshark_http, tshark_bodies). */
static void tshark_retransmissions(struct fails *f)
{
    for (int m = MODE_NIC; m <= MODE_NIC_TC; m++) {
        static char out[65536];
        char filter[96];
        snprintf(filter, sizeof(filter), "tcp.analysis.retransmission && tcp.srcport == %d",
                 modes[m].port);
        const char *const args[] = {"-Y", filter, "-T", "fields", "-e", "frame.number", NULL};
        if (tshark_run(f, args, out, sizeof(out), "retransmissions") != 0)
            continue;
        int n = count_lines(out);
        note("[%s] %d retransmitted segment(s) from port %d (%s)", cur->name, n, modes[m].port,
             modes[m].name);
        if (n == 0)
            fail_add(f, "TX loss, yet tshark sees no retransmission from port %d (%s)",
                     modes[m].port, modes[m].name);
    }
}

START_TEST(test_tshark)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    /* Stop first: SIGTERM flushes the pcap. */
    check_shutdown(&f);
    if (!find_in_path("tshark", tshark_path, sizeof(tshark_path))) {
        fail_add(&f, "tshark not found (apt-get install tshark)");
        FAILS_ASSERT(&f);
    }
    tshark_http(&f);
    tshark_bodies(&f);
    tshark_expert(&f);
    if (spec_has(cur->tx, "loss"))
        tshark_retransmissions(&f);
    FAILS_ASSERT(&f);
}
END_TEST

/* ---- Tests: load (timeouts, connection cap, blackout) ------------------------ */

/* A download that runs in the background while a client misbehaves: curl
 * with --limit-rate (so that it is still running when the timeouts act) into
 * a file, SHA-256 checked at the end. */
struct bg_get {
    pid_t pid;
    char path[PATH_MAX + 32];
    double t0;
    const char *limit; /* curl --limit-rate (NULL: BG_LIMIT) */
    int idx;           /* several at once: the output file's number */
};

#define BG_SIZE  (64ull << 20)
#define BG_LIMIT "16M" /* bytes/s: the 64 MiB take ~4 s */

static bool bg_get_start(struct bg_get *g, int mode)
{
    char url[128], path[64];
    snprintf(path, sizeof(path), "/bytes/%llu", (unsigned long long)BG_SIZE);
    url_of(mode, path, url, sizeof(url));
    snprintf(g->path, sizeof(g->path), "%s/bg-download-%d.bin", cur->srv.dir, g->idx);
    char *argv[40];
    int a = curl_argv(argv, &cur->srv);
    argv[a++] = "--limit-rate";
    argv[a++] = (char *)(g->limit ? g->limit : BG_LIMIT);
    argv[a++] = "-o";
    argv[a++] = g->path;
    argv[a++] = url;
    argv[a] = NULL;
    fflush(NULL);
    g->t0 = now_s();
    g->pid = fork();
    if (g->pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    if (g->pid > 0)
        setpgid(g->pid, g->pid);
    return g->pid > 0;
}

static bool bg_get_running(const struct bg_get *g)
{
    int st;
    return g->pid > 0 && waitpid(g->pid, &st, WNOHANG) == 0;
}

/* Waits (bounded) and checks the bytes; records the transfer. */
static void bg_get_finish(struct fails *f, struct bg_get *g, int mode, const char *what)
{
    int st = 0;
    pid_t w = 0;
    double deadline = g->t0 + max_time + 10;
    while (g->pid > 0 && (w = waitpid(g->pid, &st, WNOHANG)) == 0 && now_s() < deadline)
        sleep_ms(20);
    if (g->pid > 0 && w == 0) {
        kill(-g->pid, SIGKILL);
        kill(g->pid, SIGKILL);
        waitpid(g->pid, &st, 0);
    }
    g->pid = 0;
    char got[65] = "", want[65];
    pattern_sha256(BG_SIZE, want);
    bool sha_ok = file_sha256(g->path, got) && !strcmp(got, want);
    bool ok = w > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && sha_ok;
    if (ok && mode != MODE_PLAIN)
        cur->tls_ok[mode]++;
    record(what, now_s() - g->t0, ok);
    if (!ok)
        fail_add(f, "%s: curl status 0x%x%s, sha256 %.16s.. want %.16s..", what, st,
                 w == 0 ? " (killed)" : "", got, want);
    unlink(g->path);
}

/* Enter the server's namespace (a forked client). */
static void ns_enter_or_exit(const char *ns)
{
    char p[128];
    ns_path(ns, p, sizeof(p));
    int nfd = open(p, O_RDONLY | O_CLOEXEC);
    if (nfd < 0 || setns(nfd, CLONE_NEWNET) < 0) {
        dprintf(2, "setns %s: %s\n", p, strerror(errno));
        _exit(2);
    }
    close(nfd);
}

static int nb_connect(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, HOST, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* slow-clients: what each connection does, and what the server must do to it
 * (timeouts of slow_args: 2 s, send 3 s). */
enum slow_kind {
    SK_IDLE, /* one request, then idle: closed by the keep-alive timeout, no 408 */
    SK_SLOW, /* slowloris: a request head, one byte every 300 ms: 408 */
    SK_BODY, /* a body that stops after 10 of 1000 bytes: 408 */
    SK_SEND, /* a 1 GB GET never read (4 KiB receive buffer): aborted (RST) */
    SK_HS,   /* TLS port, nothing sent: closed by the handshake timeout */
    SK_COUNT
};
static const struct {
    const char *name;
    int count;
    double min_s; /* the earliest the server may act, from the start point */
} slow_kinds[SK_COUNT] = {
    [SK_IDLE] = {"idle", 500, 1.5},   [SK_SLOW] = {"slowloris", 100, 1.5},
    [SK_BODY] = {"body", 10, 1.5},    [SK_SEND] = {"send-stall", 5, 2.5},
    [SK_HS] = {"handshake", 10, 1.5},
};
#define SLOW_CLIENT_S 25.0 /* the client's own deadline */

struct slow_conn {
    int fd, kind;
    bool connected, done, reset;
    double t_start; /* connect done (idle: response complete) */
    double t_end, next_byte;
    size_t got;
    char buf[160];
};

static bool response_complete_1(const struct slow_conn *c)
{
    /* GET /bytes/1: head, blank line, one body byte. */
    const char *e =
        memmem(c->buf, c->got < sizeof(c->buf) ? c->got : sizeof(c->buf), "\r\n\r\n", 4);
    return e && (size_t)(e - c->buf) + 5 <= c->got;
}

static void slow_child(void *arg)
{
    (void)arg;
    ns_enter_or_exit(cur->srv.ns);
    static struct slow_conn conns[1024];
    static struct pollfd pf[1024];
    int n = 0;
    for (int k = 0; k < SK_COUNT; k++)
        for (int i = 0; i < slow_kinds[k].count; i++) {
            struct slow_conn *c = &conns[n++];
            c->kind = k;
            c->fd = nb_connect(k == SK_HS ? modes[MODE_SW].port : 80, k == SK_SEND ? 4096 : 0);
            if (c->fd < 0) {
                printf("socket/connect: %s\n", strerror(errno));
                _exit(3);
            }
        }
    static const char idle_req[] = "GET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char slow_head[] = "GET /bytes/1 HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    static const char body_req[] = "PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
                                   "0123456789";
    static const char send_req[] = "GET /bytes/1000000000 HTTP/1.1\r\nHost: x\r\n\r\n";
    double t0 = now_s();
    int left = n;
    while (left > 0 && now_s() - t0 < SLOW_CLIENT_S) {
        double now = now_s();
        for (int i = 0; i < n; i++) {
            struct slow_conn *c = &conns[i];
            short ev = 0;
            if (!c->done)
                ev = !c->connected ? POLLOUT : c->kind == SK_SEND ? 0 : POLLIN;
            pf[i] = (struct pollfd){c->done ? -1 : c->fd, ev, 0};
            if (c->connected && !c->done && c->kind == SK_SLOW && now >= c->next_byte) {
                if (send(c->fd, "a", 1, MSG_NOSIGNAL) == 1)
                    c->next_byte = now + 0.3;
                else
                    c->next_byte = now + 3600; /* the server stopped reading */
            }
        }
        if (poll(pf, (nfds_t)n, 50) < 0 && errno != EINTR)
            _exit(4);
        now = now_s();
        for (int i = 0; i < n; i++) {
            struct slow_conn *c = &conns[i];
            if (c->done || !pf[i].revents)
                continue;
            if (!c->connected) {
                int e = 0;
                socklen_t el = sizeof(e);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el);
                if (e || !(pf[i].revents & POLLOUT)) {
                    c->done = c->reset = true;
                    c->t_end = now;
                    left--;
                    continue;
                }
                c->connected = true;
                c->t_start = now;
                c->next_byte = now + 0.3;
                const char *req = c->kind == SK_IDLE   ? idle_req
                                  : c->kind == SK_SLOW ? slow_head
                                  : c->kind == SK_BODY ? body_req
                                  : c->kind == SK_SEND ? send_req
                                                       : NULL;
                if (req && send(c->fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
                    printf("%s: request not sent: %s\n", slow_kinds[c->kind].name, strerror(errno));
                    _exit(5);
                }
                continue;
            }
            bool end = false;
            if (c->kind == SK_SEND) {
                end = (pf[i].revents & (POLLHUP | POLLERR)) != 0;
                c->reset = end;
            } else {
                char tmp[4096];
                ssize_t r = recv(c->fd, tmp, sizeof(tmp), 0);
                if (r > 0) {
                    size_t room = c->got < sizeof(c->buf) ? sizeof(c->buf) - c->got : 0;
                    memcpy(c->buf + c->got, tmp, (size_t)r < room ? (size_t)r : room);
                    c->got += (size_t)r;
                    if (c->kind == SK_IDLE && response_complete_1(c) && c->t_start < 1e8)
                        c->t_start = now + 1e9; /* mark; fixed below */
                } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    end = true;
                    c->reset = r < 0;
                }
                if (c->t_start > 1e8) /* the idle clock starts at the response */
                    c->t_start = now;
            }
            if (end) {
                c->done = true;
                c->t_end = now;
                left--;
            }
        }
    }
    /* Verdicts. */
    int ok[SK_COUNT] = {0};
    bool all = true;
    for (int i = 0; i < n; i++) {
        struct slow_conn *c = &conns[i];
        const char *why = NULL;
        double dt = c->t_end - c->t_start;
        bool got408 = c->got >= 12 && !memcmp(c->buf, "HTTP/1.1 408", 12);
        if (!c->done)
            why = "still open at the deadline";
        else if (!c->connected)
            why = "connect failed";
        else if (dt < slow_kinds[c->kind].min_s)
            why = "closed too early";
        else if ((c->kind == SK_SLOW || c->kind == SK_BODY) && !got408)
            why = "no 408";
        else if (c->kind == SK_IDLE &&
                 (!response_complete_1(c) || memmem(c->buf, c->got, " 408 ", 5)))
            why = "no clean response before the close";
        else if (c->kind == SK_HS && c->got)
            why = "bytes from a TLS port before any ClientHello";
        else if (c->kind == SK_SEND && !c->reset)
            why = "not reset";
        if (why) {
            if (all)
                printf("first problem: %s #%d: %s (after %.2f s, %zu bytes: '%.40s')\n",
                       slow_kinds[c->kind].name, i, why, c->done ? dt : -1.0, c->got, c->buf);
            all = false;
        } else {
            ok[c->kind]++;
        }
        close(c->fd);
    }
    for (int k = 0; k < SK_COUNT; k++)
        printf("%s %d/%d%s", slow_kinds[k].name, ok[k], slow_kinds[k].count,
               k + 1 < SK_COUNT ? ", " : "\n");
    fflush(stdout);
    _exit(all ? 0 : 1);
}

/* 500 idle keep-alive connections, 100 slowloris, stalled bodies, readers
 * that stopped and TLS clients that never say hello, while a download runs:
 * every one is closed by its timeout, the right way, and counted once; the
 * download completes byte-exact. */
START_TEST(test_slow_clients)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    struct bg_get g = {0};
    ck_assert_msg(bg_get_start(&g, MODE_NIC), "cannot start the download");
    sleep_ms(300);
    char out[2048];
    struct run_io io = {.out = out, .out_cap = sizeof(out)};
    int rc = run_proc(NULL, slow_child, NULL, &io, SLOW_CLIENT_S + 15);
    trim(out);
    note("[%s] slow clients: %s", cur->name, out);
    record("slow clients closed by their timeouts", io.secs, rc == 0);
    if (rc != 0) {
        trim(io.err);
        fail_add(&f, "slow-client process rc %d%s: %s %s", rc, io.timed_out ? " (killed)" : "", out,
                 io.err);
    }
    bg_get_finish(&f, &g, MODE_NIC, "GET nic /bytes/64M during the slow clients");
    cur->body_tried += 10 * (uint64_t)slow_kinds[SK_BODY].count;

    const char *js = fetch_stats(&f, "slow", true);
    if (js) {
        static const struct {
            const char *name;
            int kind;
        } want[] = {{"http_timeout_idle", SK_IDLE},
                    {"http_timeout_header", SK_SLOW},
                    {"http_timeout_body", SK_BODY},
                    {"http_timeout_send", SK_SEND},
                    {"tls_timeout_handshake", SK_HS}};
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
            uint64_t v = stat_of(&f, js, "server", want[i].name);
            if (v != (uint64_t)slow_kinds[want[i].kind].count)
                fail_add(&f, "server.%s = %" PRIu64 ", want %d (%s connections)", want[i].name, v,
                         slow_kinds[want[i].kind].count, slow_kinds[want[i].kind].name);
        }
    }
    check_still_serving(&f, MODE_PLAIN, "the slow clients");
    FAILS_ASSERT(&f);
}
END_TEST

/* The end of a burst child: reads each connection's first answer and
 * classifies it — `is_answer` accepts it; a reset, or the end of a stream
 * whose send already saw the reset (reset_at_send, may be NULL), is a
 * refusal; fds[i] < 0 (reset during connect) is a refusal too; anything else
 * is odd. Closes every connection, prints "<word> A refused R odd O" (read
 * back by parse_tally) and exits the child, 1 if any answer was odd. */
static void burst_tally_exit(const int *fds, const bool *reset_at_send, int n, const char *word,
                             bool (*is_answer)(const uint8_t *buf, ssize_t len))
{
    int answered = 0, refused = 0, odd = 0;
    for (int i = 0; i < n; i++) {
        if (fds[i] < 0) {
            refused++;
            continue;
        }
        uint8_t buf[256];
        ssize_t r = recv(fds[i], buf, sizeof(buf), 0);
        if (is_answer(buf, r))
            answered++;
        else if ((r < 0 && (errno == ECONNRESET || errno == EPIPE)) ||
                 (r == 0 && reset_at_send && reset_at_send[i]))
            refused++;
        else {
            if (!odd)
                printf("conn #%d: recv %zd (%s)\n", i, r, r < 0 ? strerror(errno) : "data");
            odd++;
        }
    }
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    printf("%s %d refused %d odd %d\n", word, answered, refused, odd);
    fflush(stdout);
    _exit(odd ? 1 : 0);
}

/* Reads burst_tally_exit's line out of a child's output. */
static bool parse_tally(const char *out, const char *word, int *answered, int *refused, int *odd)
{
    *answered = *refused = *odd = -1;
    const char *line = strstr(out, word);
    return line && line[strlen(word)] == ' ' &&
           sscanf(line + strlen(word), " %d refused %d odd %d", answered, refused, odd) == 3;
}

static bool http_200_answer(const uint8_t *buf, ssize_t len)
{
    return len >= 12 && !memcmp(buf, "HTTP/1.1 200", 12);
}

static bool tls_handshake_answer(const uint8_t *buf, ssize_t len)
{
    return len > 0 && buf[0] == 0x16; /* a record of type handshake */
}

/* conn-flood: FLOOD_CONNS connections opened one after another and held,
 * each sending a request; those over the cap must be reset at once. */
#define FLOOD_CONNS 200

static void flood_child(void *arg)
{
    (void)arg;
    ns_enter_or_exit(cur->srv.ns);
    static int fds[FLOOD_CONNS];
    static bool reset_at_send[FLOOD_CONNS];
    static const char req[] = "GET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n";
    struct timeval tv = {5, 0};
    for (int i = 0; i < FLOOD_CONNS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fds[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(80)};
        inet_pton(AF_INET, HOST, &sa.sin_addr);
        if (connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            if (errno != ECONNRESET) { /* the RST may come before connect returns */
                printf("connect #%d: %s\n", i, strerror(errno));
                _exit(3);
            }
            close(fds[i]);
            fds[i] = -1;
            continue;
        }
        /* The RST may also come first here: then send reports it, and recv
           only sees the end of the stream. */
        if (send(fds[i], req, sizeof(req) - 1, MSG_NOSIGNAL) < 0 &&
            (errno == ECONNRESET || errno == EPIPE))
            reset_at_send[i] = true;
    }
    burst_tally_exit(fds, reset_at_send, FLOOD_CONNS, "accepted", http_200_answer);
}

/* A flood above --max-conns during a download: the flood's excess is reset
 * and counted, the download completes byte-exact, and the server serves
 * again afterwards. */
START_TEST(test_conn_flood)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    struct bg_get g = {0};
    ck_assert_msg(bg_get_start(&g, MODE_NIC), "cannot start the download");
    sleep_ms(500);
    char out[1024];
    struct run_io io = {.out = out, .out_cap = sizeof(out)};
    int rc = run_proc(NULL, flood_child, NULL, &io, 60);
    bool dl_running = bg_get_running(&g);
    trim(out);
    note("[%s] flood of %d: %s (download %s)", cur->name, FLOOD_CONNS, out,
         dl_running ? "still running" : "already finished");
    int acc, ref, odd;
    bool parsed = parse_tally(out, "accepted", &acc, &ref, &odd);
    bool ok = rc == 0 && parsed && acc + ref == FLOOD_CONNS &&
              acc == FLOOD_MAX_CONNS - (dl_running ? 1 : 0);
    record("flood above --max-conns", io.secs, ok);
    if (!ok) {
        trim(io.err);
        fail_add(&f, "flood: rc %d, '%s' (want accepted = %d - the download, the rest refused) %s",
                 rc, out, FLOOD_MAX_CONNS, io.err);
    }
    if (!dl_running)
        fail_add(&f, "the download finished before the flood did: it was not under test");
    bg_get_finish(&f, &g, MODE_NIC, "GET nic /bytes/64M during the flood");
    const char *js = fetch_stats(&f, "flood", true);
    if (js && parsed) {
        uint64_t v = stat_of(&f, js, "server", "conns_refused_max");
        if (v != (uint64_t)ref)
            fail_add(&f, "server.conns_refused_max = %" PRIu64 ", the client saw %d resets", v,
                     ref);
    }
    check_still_serving(&f, MODE_PLAIN, "the flood");
    check_still_serving(&f, MODE_NIC, "the flood");
    FAILS_ASSERT(&f);
}
END_TEST

/* conn-flood, handshakes: HSQ_CONNS connections first opened, then each
 * sends a ClientHello in one burst. One handshake worker, a queue of HSQ_CAP:
 * those beyond are reset at once and counted; the rest get the server's
 * flight (a record of type handshake, 0x16). */
#define HSQ_CONNS 24

/* TLS 1.2 ClientHello: ECDHE-ECDSA-AES128-GCM-SHA256; groups x25519 and
   secp256r1; uncompressed points; ecdsa_secp256r1_sha256. Record header,
   handshake header, version, random, then: */
static const uint8_t hsq_hello[] = {
    0x16, 0x03, 0x01, 0x00, 71,   0x01, 0x00, 0x00, 67,   0x03, 0x03, 1,  2,  3,    4,
    5,    6,    7,    8,    9,    10,   11,   12,   13,   14,   15,   16, 17, 18,   19,
    20,   21,   22,   23,   24,   25,   26,   27,   28,   29,   30,   31, 32, 0x00, /* session id */
    0x00, 0x02, 0xc0, 0x2b,                                     /* cipher suites */
    0x01, 0x00,                                                 /* compression */
    0x00, 24,                                                   /* extensions */
    0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, /* supported_groups */
    0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,                         /* ec_point_formats */
    0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03,             /* signature_algorithms */
};
_Static_assert(sizeof(hsq_hello) == 5 + 71, "ClientHello length");

/* arg NULL: read each answer. Non-NULL: reset every connection (SO_LINGER 0)
   right after the burst, while their handshakes wait for the worker. */
static void hsq_child(void *arg)
{
    bool abandon = arg != NULL;
    ns_enter_or_exit(cur->srv.ns);
    const uint8_t *hello = hsq_hello;
    int fds[HSQ_CONNS];
    struct timeval tv = {5, 0};
    for (int i = 0; i < HSQ_CONNS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(modes[MODE_NIC].port)};
        inet_pton(AF_INET, HOST, &sa.sin_addr);
        if (connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            printf("connect #%d: %s\n", i, strerror(errno));
            _exit(3);
        }
    }
    for (int i = 0; i < HSQ_CONNS; i++)
        if (send(fds[i], hello, sizeof(hsq_hello), MSG_NOSIGNAL) != (ssize_t)sizeof(hsq_hello)) {
            printf("send #%d: %s\n", i, strerror(errno));
            _exit(3);
        }
    if (abandon) {
        struct linger lg = {1, 0};
        for (int i = 0; i < HSQ_CONNS; i++) {
            setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            close(fds[i]);
        }
        printf("reset %d\n", HSQ_CONNS);
        fflush(stdout);
        _exit(0);
    }
    burst_tally_exit(fds, NULL, HSQ_CONNS, "answered", tls_handshake_answer);
}

/* A ClientHello burst beyond --handshake-queue: the excess is reset and
 * counted in tls_nic.handshakes_queue_full, the rest is answered, and the
 * server still serves TLS afterwards. */
START_TEST(test_hs_queue_full)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    /* The cap must not act: wait for the earlier tests' connections to go. */
    uint64_t active = 0;
    for (int t = 0; t < 50; t++) {
        const char *js = fetch_stats(&f, "hsq-before", false);
        active = js ? stat_of(&f, js, "server", "active") : 0;
        if (!js || active + HSQ_CONNS + 2 <= FLOOD_MAX_CONNS)
            break;
        sleep_ms(100);
    }
    if (active + HSQ_CONNS + 2 > FLOOD_MAX_CONNS)
        fail_add(&f, "server.active = %" PRIu64 " before the handshake burst", active);
    const char *js = fetch_stats(&f, "hsq-before", false);
    uint64_t before = js ? stat_of(&f, js, "tls_nic", "handshakes_queue_full") : 0;
    char out[512];
    struct run_io io = {.out = out, .out_cap = sizeof(out)};
    int rc = run_proc(NULL, hsq_child, NULL, &io, 30);
    trim(out);
    note("[%s] ClientHello burst of %d, queue %d: %s", cur->name, HSQ_CONNS, HSQ_CAP, out);
    int ans, ref, odd;
    bool parsed = parse_tally(out, "answered", &ans, &ref, &odd);
    /* At least the one being worked on and the queue are answered; with one
       worker at ~5 ms a handshake step, most of a burst sent within
       microseconds is refused. */
    bool ok = rc == 0 && parsed && ans + ref == HSQ_CONNS && ans >= HSQ_CAP && ref >= 1;
    record("ClientHello burst above --handshake-queue", io.secs, ok);
    if (!ok) {
        trim(io.err);
        fail_add(&f, "burst: rc %d, '%s' (want >= %d answered, >= 1 refused) %s", rc, out, HSQ_CAP,
                 io.err);
    }
    js = fetch_stats(&f, "hsq-after", true);
    if (js && parsed) {
        uint64_t v = stat_of(&f, js, "tls_nic", "handshakes_queue_full") - before;
        if (v != (uint64_t)ref)
            fail_add(&f,
                     "tls_nic.handshakes_queue_full grew by %" PRIu64 ", the client saw %d resets",
                     v, ref);
    }
    /* A second burst, reset at once: the handshakes still queued are
       skipped (no public-key work for the dead) and counted. The resets race
       the worker (a step takes a few ms): should it have emptied its queue
       before they arrived, nothing was left to skip, so a burst that
       abandoned none is tried again, up to HSQ_TRIES times. A count that
       never grows, or grows past the queue, fails. */
    enum { HSQ_TRIES = 3 };
    uint64_t ab = 0;
    struct run_io io2 = {.out = out, .out_cap = sizeof(out)};
    for (int try = 0; try < HSQ_TRIES && rc == 0 && ab == 0; try++) {
        js = fetch_stats(&f, "hsq-abandon-before", false);
        uint64_t ab0 = js ? stat_of(&f, js, "tls_nic", "handshakes_abandoned") : 0;
        io2 = (struct run_io){.out = out, .out_cap = sizeof(out)};
        rc = run_proc(NULL, hsq_child, (void *)1, &io2, 30);
        for (int t = 0; t < 50 && rc == 0; t++) { /* the worker drains its queue */
            js = fetch_stats(&f, "hsq-abandon", false);
            ab = js ? stat_of(&f, js, "tls_nic", "handshakes_abandoned") - ab0 : 0;
            if (!js || ab)
                break;
            sleep_ms(100);
        }
        note("[%s] ClientHello burst of %d reset at once (try %d): %" PRIu64
             " handshakes abandoned",
             cur->name, HSQ_CONNS, try + 1, ab);
    }
    bool ab_ok = rc == 0 && ab >= 1 && ab <= HSQ_CAP;
    record("ClientHello burst reset while queued", io2.secs, ab_ok);
    if (!ab_ok)
        fail_add(&f,
                 "reset burst: rc %d, tls_nic.handshakes_abandoned grew by %" PRIu64
                 " (want 1..%d: the queued ones)",
                 rc, ab, HSQ_CAP);
    check_still_serving(&f, MODE_NIC, "the ClientHello burst");
    FAILS_ASSERT(&f);
}
END_TEST

/* rx-hog: HOG_CONNS clients ask for a huge download they never read (4 KiB
 * receive buffer) and then trickle pipelined requests in segments of at most
 * 88 bytes (TCP_MAXSEG, TCP_NODELAY) for HOG_S seconds. The server stops
 * reading while its response is stuck, so every segment stays queued as
 * unread input: without limits each pins a whole RX buffer, and the pool
 * (8192) runs dry for everybody. */
#define HOG_CONNS 8
#define HOG_S     8.0

static void hog_child(void *arg)
{
    (void)arg;
    ns_enter_or_exit(cur->srv.ns);
    int fds[HOG_CONNS];
    static const char req[] = "GET /bytes/1000000000 HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char pipe_req[] = "GET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < HOG_CONNS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1, mss = 88, rcv = 4096;
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
        setsockopt(fds[i], IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss));
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(80)};
        inet_pton(AF_INET, HOST, &sa.sin_addr);
        if (connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            send(fds[i], req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1) {
            printf("hog %d: %s\n", i, strerror(errno));
            _exit(3);
        }
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
    }
    uint64_t sent = 0;
    size_t at[HOG_CONNS] = {0};
    double t0 = now_s();
    for (unsigned round = 0; now_s() - t0 < HOG_S && round < 2000000; round++) {
        for (int i = 0; i < HOG_CONNS; i++) {
            size_t n = 1 + round % 7; /* a few bytes at a time */
            size_t off = at[i] % (sizeof(pipe_req) - 1);
            if (n > sizeof(pipe_req) - 1 - off)
                n = sizeof(pipe_req) - 1 - off;
            ssize_t r = send(fds[i], pipe_req + off, n, MSG_NOSIGNAL);
            if (r > 0) {
                sent += (uint64_t)r;
                at[i] += (size_t)r;
            }
        }
        usleep(300);
    }
    for (int i = 0; i < HOG_CONNS; i++)
        close(fds[i]);
    printf("trickled %" PRIu64 " bytes\n", sent);
    fflush(stdout);
    _exit(0);
}

/* Never-reading trickling clients during a download: the download completes
 * byte-exact, the limits acted (compact copies, refused unread input) and were
 * counted, the pool never ran dry, and once the hogs are gone (reset by the
 * send timeout) every buffer and copy is back. */
START_TEST(test_rx_hog)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    struct bg_get g = {0};
    ck_assert_msg(bg_get_start(&g, MODE_NIC), "cannot start the download");
    sleep_ms(300);
    char out[512];
    struct run_io io = {.out = out, .out_cap = sizeof(out)};
    int rc = run_proc(NULL, hog_child, NULL, &io, HOG_S + 20);
    trim(out);
    note("[%s] hogs: %s", cur->name, out);
    record("never-reading trickling clients", io.secs, rc == 0);
    if (rc != 0)
        fail_add(&f, "hog process rc %d: %s", rc, out);
    bg_get_finish(&f, &g, MODE_NIC, "GET nic /bytes/64M during the hogs");
    sleep_ms(5000); /* the send timeout (4 s) resets the hogs */
    const char *js = fetch_stats(&f, "hog-end", true);
    if (js) {
        uint64_t held_peak = stat_of(&f, js, "driver", "rx_bufs_held_peak");
        uint64_t comp = stat_of(&f, js, "driver", "rx_compacted");
        uint64_t refused = stat_of(&f, js, "driver", "rx_unread_refused");
        uint64_t exhausted = stat_of(&f, js, "driver", "rx_pool_exhausted");
        uint64_t held = stat_of(&f, js, "driver", "rx_bufs_held");
        uint64_t clive = stat_of(&f, js, "driver", "rx_compact_live");
        uint64_t timeouts = stat_of(&f, js, "server", "http_timeout_send");
        note("[%s] rx_compacted %" PRIu64 ", rx_unread_refused %" PRIu64
             ", rx_pool_exhausted %" PRIu64 ", then rx_bufs_held %" PRIu64
             ", rx_compact_live %" PRIu64 ", http_timeout_send %" PRIu64
             ", rx_bufs_held_peak %" PRIu64,
             cur->name, comp, refused, exhausted, held, clive, timeouts, held_peak);
        if (comp == 0)
            fail_add(&f, "driver.rx_compacted = 0: the hogs never went over their share");
        if (exhausted)
            fail_add(&f, "driver.rx_pool_exhausted = %" PRIu64 " (want 0)", exhausted);
        if (held_peak > 2 * HOG_CONNS * 64 + 256)
            fail_add(&f, "driver.rx_bufs_held = %" PRIu64 " during the hogs (want <= %d)",
                     held_peak, 2 * HOG_CONNS * 64 + 256);
        if (clive || held > 8)
            fail_add(&f,
                     "after the hogs: rx_compact_live %" PRIu64 ", rx_bufs_held %" PRIu64
                     " (want 0, ~0)",
                     clive, held);
        if (timeouts != HOG_CONNS)
            fail_add(&f, "server.http_timeout_send = %" PRIu64 ", want %d", timeouts, HOG_CONNS);
    }
    check_still_serving(&f, MODE_PLAIN, "the hogs");
    check_still_serving(&f, MODE_NIC, "the hogs");
    FAILS_ASSERT(&f);
}
END_TEST

/* conn-rss: RSS_MAX_CONNS TLS connections to the nic port, each after one
 * request (idle keep-alive, NIC contexts installed), plus RSS_OVER more that
 * the cap refuses. The server's RSS may grow by at most RSS_PER_CONN bytes
 * per open connection (README.md: ~70 kB measured), and not at all for the
 * refused ones. */
#define RSS_OVER     100
#define RSS_PER_CONN 100000u

static uint64_t proc_rss(pid_t pid)
{
    char p[64], line[256];
    snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "re");
    uint64_t kb = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %" SCNu64, &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

static void rss_child(void *arg)
{
    pid_t srv = *(const pid_t *)arg;
    ns_enter_or_exit(cur->srv.ns);
    static SSL *ssl[RSS_MAX_CONNS + RSS_OVER];
    static int fds[RSS_MAX_CONNS + RSS_OVER];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        _exit(3);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    static const char req[] = "GET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n";
    uint64_t rss0 = proc_rss(srv), rss_cap = 0;
    int open = 0, refused = 0, odd = 0;
    struct timeval tv = {10, 0};
    for (int i = 0; i < RSS_MAX_CONNS + RSS_OVER; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fds[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(modes[MODE_NIC].port)};
        inet_pton(AF_INET, HOST, &sa.sin_addr);
        ssl[i] = SSL_new(ctx);
        char buf[256];
        int got = 0;
        if (connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) == 0 && ssl[i] &&
            SSL_set_fd(ssl[i], fds[i]) == 1 && SSL_connect(ssl[i]) == 1 &&
            SSL_write(ssl[i], req, (int)sizeof(req) - 1) == (int)sizeof(req) - 1) {
            /* head + one body byte */
            while (got < (int)sizeof(buf) - 1) {
                int r = SSL_read(ssl[i], buf + got, (int)sizeof(buf) - 1 - got);
                if (r <= 0)
                    break;
                got += r;
                buf[got] = 0;
                char *e = strstr(buf, "\r\n\r\n");
                if (e && e + 5 <= buf + got)
                    break;
            }
        }
        buf[got] = 0;
        if (got >= 12 && !memcmp(buf, "HTTP/1.1 200", 12))
            open++;
        else if (i >= RSS_MAX_CONNS)
            refused++;
        else if (!odd++)
            printf("conn #%d: no response (%d bytes)\n", i, got);
        if (i == RSS_MAX_CONNS - 1)
            rss_cap = proc_rss(srv);
    }
    uint64_t rss_over = proc_rss(srv);
    printf("open %d refused %d odd %d rss0 %" PRIu64 " rss_cap %" PRIu64 " rss_over %" PRIu64 "\n",
           open, refused, odd, rss0, rss_cap, rss_over);
    fflush(stdout);
    for (int i = 0; i < RSS_MAX_CONNS + RSS_OVER; i++) {
        if (ssl[i])
            SSL_free(ssl[i]); /* no close_notify: the close below is enough */
        close(fds[i]);
    }
    SSL_CTX_free(ctx);
    _exit(odd ? 1 : 0);
}

/* Memory at the cap: open connections cost at most RSS_PER_CONN each,
 * refused ones nothing, and the server still serves. */
START_TEST(test_conn_rss)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    char out[512];
    struct run_io io = {.out = out, .out_cap = sizeof(out)};
    pid_t srv = cur->srv.pid;
    int rc = run_proc(NULL, rss_child, &srv, &io, 240);
    trim(out);
    int open = -1, refused = -1, odd = -1;
    uint64_t rss0 = 0, rss_cap = 0, rss_over = 0;
    const char *line = strstr(out, "open ");
    bool parsed = line && sscanf(line,
                                 "open %d refused %d odd %d rss0 %" SCNu64 " rss_cap %" SCNu64
                                 " rss_over %" SCNu64,
                                 &open, &refused, &odd, &rss0, &rss_cap, &rss_over) == 6;
    double per = parsed && open > 0 ? ((double)rss_cap - (double)rss0) / open : -1;
    note("[%s] %s: %.1f kB per connection (RSS %.1f -> %.1f MB at %d open, %.1f MB with %d more "
         "refused)",
         cur->name, out, per / 1e3, (double)rss0 / 1e6, (double)rss_cap / 1e6, open,
         (double)rss_over / 1e6, refused);
    bool ok = rc == 0 && parsed && open == RSS_MAX_CONNS && refused == RSS_OVER && rss0 > 0;
    record("TLS connections at --max-conns: RSS", io.secs, ok);
    if (!ok)
        fail_add(&f, "conn-rss: rc %d, '%s' (want %d open, %d refused)", rc, out, RSS_MAX_CONNS,
                 RSS_OVER);
    if (parsed && rss_cap > rss0 + (uint64_t)RSS_MAX_CONNS * RSS_PER_CONN)
        fail_add(&f, "RSS grew %.1f MB for %d connections (bound %.1f MB)",
                 ((double)rss_cap - (double)rss0) / 1e6, RSS_MAX_CONNS,
                 (double)RSS_MAX_CONNS * RSS_PER_CONN / 1e6);
    if (parsed && rss_over > rss_cap + (uint64_t)RSS_OVER * 4096)
        fail_add(&f, "refused connections cost memory: RSS %.1f -> %.1f MB", (double)rss_cap / 1e6,
                 (double)rss_over / 1e6);
    const char *js = fetch_stats(&f, "rss", true);
    if (js && parsed) {
        uint64_t v = stat_of(&f, js, "server", "conns_refused_max");
        if (v != (uint64_t)refused)
            fail_add(&f, "server.conns_refused_max = %" PRIu64 ", the client saw %d refused", v,
                     refused);
    }
    check_still_serving(&f, MODE_NIC, "the connections at the cap");
    FAILS_ASSERT(&f);
}
END_TEST

/* conn-cache: CACHE_CONNS TLS connections, all open at once, every fourth
 * on nic-tagcache and the rest on nic. Each gets one pipelined request
 * while all are open: even ones download /bytes/N, odd ones upload N bytes
 * (N differs per connection); then the responses are read in order. A
 * download must be the pattern, an upload's answer the body's SHA-256. */
#define CACHE_MIN_SIZE  20000
#define CACHE_HS_WINDOW 32

static size_t cache_size(int i)
{
    return CACHE_MIN_SIZE + (size_t)(i * 37) % 9000;
}

/* Read one response: head (status line, Content-Length) and body into
   body (at most cap). Returns the status or -1. */
static int cache_response(SSL *ssl, uint8_t *body, size_t cap, size_t *blen)
{
    char head[1024];
    size_t hl = 0;
    char *end = NULL;
    while (!end && hl < sizeof(head) - 1) {
        int r = SSL_read(ssl, head + hl, 1); /* byte by byte: the body stays in SSL */
        if (r <= 0)
            return -1;
        hl += (size_t)r;
        head[hl] = 0;
        end = strstr(head, "\r\n\r\n");
    }
    const char *cl = strcasestr(head, "\r\ncontent-length:");
    int status = 0;
    if (!end || !cl || sscanf(head, "HTTP/1.1 %d", &status) != 1)
        return -1;
    size_t want = strtoul(cl + 17, NULL, 10);
    if (want > cap)
        return -1;
    *blen = 0;
    while (*blen < want) {
        int r = SSL_read(ssl, body + *blen, (int)(want - *blen));
        if (r <= 0)
            return -1;
        *blen += (size_t)r;
    }
    return status;
}

/* Connection i's request (blocking from here on, with timeouts): GET
   /bytes/N or PUT /upload of N bytes of buf. */
static bool cache_request(SSL *ssl, int fd, int i, const uint8_t *buf, uint64_t *up_tried)
{
    struct timeval tv = {20, 0};
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char req[160];
    size_t n = cache_size(i);
    int len = i % 2 ? snprintf(req, sizeof(req),
                               "PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n)
                    : snprintf(req, sizeof(req), "GET /bytes/%zu HTTP/1.1\r\nHost: x\r\n\r\n", n);
    bool sent = SSL_write(ssl, req, len) == len;
    if (i % 2) {
        *up_tried += n;
        sent = sent && SSL_write(ssl, buf, (int)n) == (int)n;
    }
    return sent;
}

static void cache_child(void *arg)
{
    (void)arg;
    ns_enter_or_exit(cur->srv.ns);
    struct rlimit rl = {CACHE_CONNS + 256, CACHE_CONNS + 256};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        _exit(4);
    static SSL *ssl[CACHE_CONNS];
    static int fds[CACHE_CONNS];
    static uint8_t buf[CACHE_MIN_SIZE + 9000];
    for (size_t k = 0; k < sizeof(buf); k++)
        buf[k] = (uint8_t)(k % 251);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        _exit(3);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    int open = 0, open_tc = 0, ok = 0, bad = 0, first_bad = -1;
    uint64_t up_tried = 0, up_ok = 0;
    double t0 = now_s();
    /* Connects and handshakes CACHE_HS_WINDOW at a time (non-blocking): a
       lost SYN costs the kernel's 1 s initial timeout and one handshake at
       a time waits for every round trip, so one by one took minutes; all at
       once queue behind the server's handshake thread (~9 ms of P-256 each,
       README.md) past --handshake-timeout. */
    static struct pollfd pfd[CACHE_CONNS];
    static bool done[CACHE_CONNS];
    static char hs_err[128];
    int started = 0, inflight = 0;
    for (int i = 0; i < CACHE_CONNS; i++)
        pfd[i].fd = fds[i] = -1;
    /* At most 90 s. */
    for (double end = now_s() + 90; (started < CACHE_CONNS || inflight) && now_s() < end;) {
        while (started < CACHE_CONNS && inflight < CACHE_HS_WINDOW) {
            int i = started++, mode = i % 4 == 2 ? MODE_NIC_TC : MODE_NIC;
            fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(modes[mode].port)};
            inet_pton(AF_INET, HOST, &sa.sin_addr);
            ssl[i] = fds[i] >= 0 ? SSL_new(ctx) : NULL;
            if (!ssl[i] || SSL_set_fd(ssl[i], fds[i]) != 1 ||
                (connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
                 errno != EINPROGRESS)) {
                if (!hs_err[0])
                    snprintf(hs_err, sizeof(hs_err), "conn %d: socket/connect errno %d", i, errno);
                done[i] = true; /* failed */
                continue;
            }
            pfd[i] = (struct pollfd){.fd = fds[i], .events = POLLOUT};
            inflight++;
        }
        if (poll(pfd, (nfds_t)started, 100) < 0 && errno != EINTR) {
            snprintf(hs_err, sizeof(hs_err), "poll errno %d", errno);
            break;
        }
        for (int i = 0; i < started; i++) {
            if (done[i] || pfd[i].fd < 0 || !pfd[i].revents)
                continue;
            int r = SSL_connect(ssl[i]);
            int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl[i], r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                pfd[i].events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
                continue;
            }
            done[i] = true;
            pfd[i].fd = -1;
            inflight--;
            if (r == 1) {
                /* Open, and stays open: its request goes now, so the
                   transfers overlap the handshakes still to come. */
                open++;
                open_tc += i % 4 == 2;
                if (!cache_request(ssl[i], fds[i], i, buf, &up_tried))
                    SSL_free(ssl[i]), ssl[i] = NULL;
                continue;
            }
            if (!hs_err[0])
                snprintf(hs_err, sizeof(hs_err), "conn %d: ssl error %d errno %d revents %d", i, e,
                         errno, pfd[i].revents);
            SSL_free(ssl[i]), ssl[i] = NULL;
        }
    }
    for (int i = 0; i < CACHE_CONNS; i++) {
        if (ssl[i] && !done[i]) /* no handshake within the bound */
            SSL_free(ssl[i]), ssl[i] = NULL;
    }
    double t1 = now_s();
    static uint8_t body[CACHE_MIN_SIZE + 9000];
    for (int i = 0; i < CACHE_CONNS; i++) {
        size_t n = cache_size(i), blen = 0;
        bool good = false;
        if (ssl[i] && cache_response(ssl[i], body, sizeof(body), &blen) == 200) {
            if (i % 2 == 0) {
                good = blen == n && pattern_ok(body, n);
            } else {
                unsigned char md[32];
                char hex[65];
                SHA256(buf, n, md);
                hex_of(md, 32, hex);
                good = blen == 65 && memcmp(body, hex, 64) == 0;
                if (good)
                    up_ok += n;
            }
        }
        if (good) {
            ok++;
        } else {
            bad++;
            if (first_bad < 0)
                first_bad = i;
        }
    }
    double t2 = now_s();
    for (int i = 0; i < CACHE_CONNS; i++) {
        if (ssl[i])
            SSL_free(ssl[i]); /* no close_notify: the close is enough */
        if (fds[i] >= 0)
            close(fds[i]);
    }
    SSL_CTX_free(ctx);
    if (hs_err[0])
        printf("first failed handshake: %s\n", hs_err);
    printf("open %d tagcache %d ok %d bad %d first_bad %d up_tried %" PRIu64 " up_ok %" PRIu64
           " connect_s %.1f transfer_s %.1f\n",
           open, open_tc, ok, bad, first_bad, up_tried, up_ok, t1 - t0, t2 - t1);
    fflush(stdout);
    _exit(bad ? 1 : 0);
}

START_TEST(test_conn_cache)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    char out[512];
    struct run_io io = {.out = out, .out_cap = sizeof(out)};
    int rc = run_proc(NULL, cache_child, NULL, &io, 180);
    trim(out);
    int open = -1, open_tc = -1, ok = -1, bad = -1, first_bad = -1;
    uint64_t up_tried = 0, up_ok = 0;
    double cs = 0, ts = 0;
    const char *line = strstr(out, "open ");
    bool parsed =
        line && sscanf(line,
                       "open %d tagcache %d ok %d bad %d first_bad %d up_tried %" SCNu64
                       " up_ok %" SCNu64 " connect_s %lf transfer_s %lf",
                       &open, &open_tc, &ok, &bad, &first_bad, &up_tried, &up_ok, &cs, &ts) == 9;
    note("[%s] %s", cur->name, out);
    bool good = rc == 0 && parsed && open == CACHE_CONNS && ok == CACHE_CONNS;
    record("concurrent TLS connections through a context cache of " CACHE_SIZE_S, io.secs, good);
    if (!good)
        fail_add(&f, "conn-cache: rc %d, '%s' (want %d open and byte-exact)", rc, out, CACHE_CONNS);
    if (parsed) {
        cur->body_tried += up_tried;
        cur->body_ok += up_ok;
        cur->tls_ok[MODE_NIC] += (uint64_t)(open - open_tc);
        cur->tls_ok[MODE_NIC_TC] += (uint64_t)open_tc;
        cur->n_transfers += CACHE_CONNS;
        cur->n_failed += CACHE_CONNS - (ok > 0 ? ok : 0);
    }
    /* Every connection closed: once the deletes completed, no context is
       resident on the NIC, no host block held by the driver. Bounded wait. */
    const char *js = NULL;
    uint64_t resident = 1, host_d = 1, host_t = 1, host_r = 1;
    for (int t = 0; t < 60; t++) {
        js = fetch_stats(&f, "cache", false);
        if (!js)
            break;
        resident = stat_of(&f, js, "nic_tls", "tls_ctx_resident");
        host_d = stat_of(&f, js, "offload_dump", "tx_tls_ctx_host_bytes");
        host_t = stat_of(&f, js, "offload_tagcache", "tx_tls_ctx_host_bytes");
        host_r = stat_of(&f, js, "offload_rx", "rx_tls_ctx_host_bytes");
        if (!resident && !host_d && !host_t && !host_r)
            break;
        usleep(500000);
    }
    if (js) {
#define GET(sec, name) stat_of(&f, js, sec, name)
        uint64_t hit = GET("nic_tls", "tls_ctx_cache_hit"),
                 miss = GET("nic_tls", "tls_ctx_cache_miss");
        uint64_t evict = GET("nic_tls", "tls_ctx_evict"),
                 fetch = GET("nic_tls", "tls_ctx_fetch_bytes");
        uint64_t fbad = GET("nic_tls", "tls_ctx_fetch_bad"),
                 nohm = GET("nic_tls", "tls_ctx_no_host_mem");
        uint64_t tx_ctx = GET("nic_tls", "tx_tls_ctx"), tx_del = GET("nic_tls", "tx_tls_del");
        uint64_t rx_ctx = GET("nic_tls", "rx_tls_ctx"), rx_del = GET("nic_tls", "rx_tls_del");
        uint64_t full = GET("nic", "flow_table_full");
        uint64_t fail_d = GET("offload_dump", "tx_tls_ctx_install_failed");
        uint64_t fail_t = GET("offload_tagcache", "tx_tls_ctx_install_failed");
        uint64_t fail_r = GET("offload_rx", "rx_tls_ctx_install_failed");
        uint64_t pool = GET("nic_tls", "rx_tls_reorder_pool_bytes");
#undef GET
        note("[%s] cache: hit %" PRIu64 " miss %" PRIu64 " evict %" PRIu64 " fetch_bytes %" PRIu64
             " fetch_bad %" PRIu64 " no_host_mem %" PRIu64 "; contexts tx %" PRIu64 "/%" PRIu64
             " rx %" PRIu64 "/%" PRIu64 " (installed/deleted), resident %" PRIu64
             ", host bytes %" PRIu64 "+%" PRIu64 "+%" PRIu64 ", reorder pool %" PRIu64,
             cur->name, hit, miss, evict, fetch, fbad, nohm, tx_ctx, tx_del, rx_ctx, rx_del,
             resident, host_d, host_t, host_r, pool);
        if (!miss || !evict || fetch != miss * 256)
            fail_add(&f,
                     "nic_tls.tls_ctx_cache_miss %" PRIu64 ", tls_ctx_evict %" PRIu64
                     ", tls_ctx_fetch_bytes %" PRIu64 " (want misses, evictions, 256 bytes each)",
                     miss, evict, fetch);
        if (fbad || nohm || full || fail_d || fail_t || fail_r)
            fail_add(&f,
                     "fetch_bad %" PRIu64 ", no_host_mem %" PRIu64 ", flow_table_full %" PRIu64
                     ", install_failed %" PRIu64 "+%" PRIu64 "+%" PRIu64
                     " (want 0: --nic-flows " CACHE_FLOWS_S " places every context)",
                     fbad, nohm, full, fail_d, fail_t, fail_r);
        if (tx_ctx < (uint64_t)CACHE_CONNS || rx_ctx < (uint64_t)CACHE_CONNS)
            fail_add(&f, "contexts installed tx %" PRIu64 " rx %" PRIu64 " (want >= %d each)",
                     tx_ctx, rx_ctx, CACHE_CONNS);
        if (resident || host_d || host_t || host_r || tx_ctx != tx_del || rx_ctx != rx_del || pool)
            fail_add(&f,
                     "after close: tls_ctx_resident %" PRIu64 ", host bytes %" PRIu64 "+%" PRIu64
                     "+%" PRIu64 ", tx %" PRIu64 "/%" PRIu64 ", rx %" PRIu64 "/%" PRIu64
                     ", reorder pool %" PRIu64 " (want nothing left)",
                     resident, host_d, host_t, host_r, tx_ctx, tx_del, rx_ctx, rx_del, pool);
    }
    check_still_serving(&f, MODE_NIC, "the connections through the cache");
    FAILS_ASSERT(&f);
}
END_TEST

/* A download across a 6 s blackout of the TX wire (the profile's fault
 * spec): the fast retransmission timer backs off but must not spend lwIP's
 * retry budget (which ran out after ~4.5 s): the transfer resumes and
 * completes byte-exact, and nothing gave up. */
START_TEST(test_blackout)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    do_get(&f, MODE_NIC, SI_BIG);
    const char *js = fetch_stats(&f, "blackout", true);
    if (js) {
        uint64_t drops = stat_of(&f, js, "fault_tx", "blackout_drops");
        uint64_t give_up = stat_of(&f, js, "tcp", "rto_give_up");
        uint64_t fired = stat_of(&f, js, "tcp", "fast_rto_fired");
        note("[%s] blackout_drops %" PRIu64 ", fast_rto_fired %" PRIu64 ", rto_give_up %" PRIu64,
             cur->name, drops, fired, give_up);
        if (drops < 10)
            fail_add(&f, "fault_tx.blackout_drops = %" PRIu64 ": the blackout missed the download",
                     drops);
        if (give_up)
            fail_add(&f, "tcp.rto_give_up = %" PRIu64 " (want 0: 6 s is far below the limit)",
                     give_up);
        if (fired < 5)
            fail_add(&f, "tcp.fast_rto_fired = %" PRIu64 ": the RTO never backed off across 6 s",
                     fired);
        /* The adaptive RTO measured RTTs, and Karn's rule kept the segments
           resent into the blackout out of them. */
        uint64_t samples = stat_of(&f, js, "tcp", "rto_rtt_samples");
        uint64_t karn = stat_of(&f, js, "tcp", "rto_rtt_karn");
        note("[%s] rto_rtt_samples %" PRIu64 ", rto_rtt_karn %" PRIu64, cur->name, samples, karn);
        if (samples == 0)
            fail_add(&f, "tcp.rto_rtt_samples = 0: no RTT was measured during a 64 MiB download");
        if (karn == 0)
            fail_add(&f, "tcp.rto_rtt_karn = 0: a timed segment resent into the blackout was "
                         "sampled");
    }
    FAILS_ASSERT(&f);
}
END_TEST

/* send-slots: five 64 MiB downloads at once through SLOTS_N slots (nic,
 * nic, nic-tagcache, sw, plain; curl --limit-rate 16M, ~4 s each alone,
 * one at 4M so that its turns run out of time), under 1 % TX loss, while a
 * client that asked first on SLOTS_HOGS connections never reads: its turns
 * must end by stall, or the line would stop behind it. A 16 KiB GET sent
 * while the downloads run is answered while they still run: a send of at
 * most 64 KiB from idle needs no slot (send_slots.free_sends). Every
 * download must be byte-exact, finished while the non-reading client is
 * still connected; no more than SLOTS_N slots held at once, and SLOTS_N
 * reached; connections queued and were handed slots, turns ended by bytes,
 * by time and by stall; nothing held or waiting once all are gone. */
#define SLOTS_GETS  5
#define SLOTS_HOGS  2
#define SLOTS_HOG_S 60 /* the hog's life at most; killed once the downloads are done */

/* A child in the server's namespace that asks for a large plain download on
   SLOTS_HOGS connections with tiny receive buffers and never reads: its
   connections take the slots first and then make no ACK progress. */
static pid_t slots_hog_start(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) {
        if (pid > 0)
            setpgid(pid, pid);
        return pid;
    }
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    ns_enter_or_exit(cur->srv.ns);
    static const char req[] = "GET /bytes/67108864 HTTP/1.1\r\nHost: anic\r\n\r\n";
    for (int i = 0; i < SLOTS_HOGS; i++) {
        int fd = nb_connect(80, 4096);
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (fd < 0 || poll(&p, 1, 5000) != 1 || write(fd, req, sizeof(req) - 1) < 0)
            _exit(1);
    }
    sleep(SLOTS_HOG_S); /* never reads */
    _exit(0);
}

START_TEST(test_send_slots)
{
    REQUIRE_SERVER();
    struct fails f = {0};
    static const int gmode[SLOTS_GETS] = {MODE_NIC, MODE_NIC, MODE_NIC_TC, MODE_SW, MODE_PLAIN};
    struct bg_get g[SLOTS_GETS] = {{0}};
    pid_t hog = slots_hog_start();
    if (hog < 0)
        fail_add(&f, "send-slots: cannot start the non-reading client");
    sleep_ms(300); /* its requests first: it takes the slots */
    g[4].limit = "4M";
    for (int i = 0; i < SLOTS_GETS; i++) {
        g[i].idx = i;
        if (!bg_get_start(&g[i], gmode[i]))
            fail_add(&f, "send-slots: cannot start download %d", i);
    }
    sleep_ms(1000);
    bool all_running = true;
    for (int i = 0; i < SLOTS_GETS; i++)
        all_running &= bg_get_running(&g[i]);
    const char *js = fetch_stats(&f, "slots-mid", false);
    uint64_t mid_waiting = js ? stat_of(&f, js, "send_slots", "waiting") : 0;
    uint64_t free0 = js ? stat_of(&f, js, "send_slots", "free_sends") : 0;
    do_get(&f, MODE_NIC, SI_16384); /* a small GET: no slot needed */
    bool still = false;
    for (int i = 0; i < SLOTS_GETS; i++)
        still |= bg_get_running(&g[i]);
    js = fetch_stats(&f, "slots-small", false);
    uint64_t free1 = js ? stat_of(&f, js, "send_slots", "free_sends") : 0;
    note("[%s] after 1 s: all %d downloads running %s, %" PRIu64
         " waiting for a slot; small GET answered while downloads ran: %s, free sends +%" PRIu64,
         cur->name, SLOTS_GETS, all_running ? "yes" : "no", mid_waiting, still ? "yes" : "no",
         free1 - free0);
    if (!still)
        fail_add(&f, "send-slots: every download had finished before the small GET was answered "
                     "(it should have been answered while they ran)");
    if (free1 <= free0)
        fail_add(&f, "send_slots.free_sends did not move for the small GET (%" PRIu64 ")", free1);
    char what[64];
    for (int i = 0; i < SLOTS_GETS; i++) {
        snprintf(what, sizeof(what), "GET %-12s /bytes/%llu beside %d others", modes[gmode[i]].name,
                 (unsigned long long)BG_SIZE, SLOTS_GETS - 1);
        bg_get_finish(&f, &g[i], gmode[i], what);
    }
    int hst = 0;
    bool hog_alive = hog > 0 && waitpid(hog, &hst, WNOHANG) == 0;
    note("[%s] the non-reading client (%d connections) was %s when the downloads were done",
         cur->name, SLOTS_HOGS, hog_alive ? "still connected" : "gone");
    if (!hog_alive)
        fail_add(&f,
                 "send-slots: the non-reading client exited early (status 0x%x): its "
                 "connections did not test the line",
                 hst);
    if (hog > 0) {
        kill(-hog, SIGKILL);
        kill(hog, SIGKILL);
        waitpid(hog, NULL, 0);
    }
    js = fetch_stats(&f, "slots", true);
    if (js) {
#define GET(name) stat_of(&f, js, "send_slots", name)
        uint64_t limit = GET("limit"), held = GET("held"), peak = GET("held_peak");
        uint64_t waiting = GET("waiting"), queued = GET("queued"), handed = GET("handed");
        uint64_t e_bytes = GET("ended_bytes"), e_time = GET("ended_time");
        uint64_t e_stall = GET("ended_stall"), e_idle = GET("ended_idle");
        uint64_t free_sends = GET("free_sends");
#undef GET
        note("[%s] send_slots: limit %" PRIu64 ", held_peak %" PRIu64 ", queued %" PRIu64
             ", handed %" PRIu64 ", turns ended by bytes %" PRIu64 ", time %" PRIu64
             ", stall %" PRIu64 ", idle %" PRIu64 ", free sends %" PRIu64,
             cur->name, limit, peak, queued, handed, e_bytes, e_time, e_stall, e_idle, free_sends);
        if (limit != SLOTS_N || peak != SLOTS_N)
            fail_add(&f, "send_slots.limit %" PRIu64 ", held_peak %" PRIu64 " (want %d and %d)",
                     limit, peak, SLOTS_N, SLOTS_N);
        if (!queued || !handed || !e_bytes || !e_time || e_stall < SLOTS_HOGS)
            fail_add(&f,
                     "send_slots: queued %" PRIu64 ", handed %" PRIu64 ", ended by bytes %" PRIu64
                     ", by time %" PRIu64 ", by stall %" PRIu64 " (want each > 0, stalls >= %d: "
                     "the non-reading connections)",
                     queued, handed, e_bytes, e_time, e_stall, SLOTS_HOGS);
        /* The non-reading client's connections were reset just now; their
           close may still be on its way: wait (bounded) for the line to empty. */
        for (int t = 0; t < 20 && (held || waiting); t++) {
            sleep_ms(250);
            const char *js2 = fetch_stats(&f, "slots-end", false);
            if (!js2)
                break;
            held = stat_of(&f, js2, "send_slots", "held");
            waiting = stat_of(&f, js2, "send_slots", "waiting");
        }
        if (held || waiting)
            fail_add(&f,
                     "send_slots: %" PRIu64 " held, %" PRIu64 " waiting after every download "
                     "finished and the non-reading client was gone (want 0)",
                     held, waiting);
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
    unlink_big_uploads();
}

static Suite *make_suite(void)
{
    Suite *s = suite_create("e2e");
    for (int i = 0; i < N_PROFILES; i++) {
        TCase *tc = tcase_create(profiles[i].name);
        tcase_set_timeout(tc, 600);
        tcase_add_unchecked_fixture(tc, NULL, profile_teardown);
        tcase_add_loop_test(tc, test_server_up, i, i + 1);
        unsigned t = profiles[i].tests;
        if (t & T_CLASSIC) {
            tcase_add_loop_test(tc, test_get, 0, N_MODES);
            tcase_add_loop_test(tc, test_put, 0, N_MODES);
            tcase_add_loop_test(tc, test_post_chunked, 0, N_MODES);
            tcase_add_loop_test(tc, test_keepalive, 0, N_MODES);
            tcase_add_test(tc, test_s_client);
            tcase_add_loop_test(tc, test_conn_close, 0, N_MODES);
            tcase_add_test(tc, test_hostile_plain);
            tcase_add_test(tc, test_hostile_tls);
        }
        if (t & T_TXM)
            tcase_add_test(tc, test_tx_matrix);
        if (t & T_RXM)
            tcase_add_test(tc, test_rx_matrix);
        if (t & T_TAMPER)
            tcase_add_test(tc, test_tamper);
        if (t & T_INJECT)
            tcase_add_test(tc, test_inject);
        if (t & T_CAPTURE)
            tcase_add_test(tc, test_capture);
        if (t & T_SLOW)
            tcase_add_test(tc, test_slow_clients);
        if (t & T_FLOOD) {
            tcase_add_test(tc, test_conn_flood);
            tcase_add_test(tc, test_hs_queue_full);
        }
        if (t & T_RXHOG)
            tcase_add_test(tc, test_rx_hog);
        if (t & T_RSS)
            tcase_add_test(tc, test_conn_rss);
        if (t & T_CACHE)
            tcase_add_test(tc, test_conn_cache);
        if (t & T_BLACKOUT)
            tcase_add_test(tc, test_blackout);
        if (t & T_AUTO)
            tcase_add_test(tc, test_policy_auto);
        if (t & T_SLOTS)
            tcase_add_test(tc, test_send_slots);
        tcase_add_test(tc, test_stats);
        tcase_add_test(tc, test_offload_counters);
        if (t & T_CAPTURE)
            tcase_add_test(tc, test_tshark); /* stops the server first */
        else
            tcase_add_test(tc, test_shutdown);
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
    tu_seed_init_default("test_e2e", base_seed);
    base_seed = tu_seed & 0xffffffffu; /* profile seeds: (base + offset) mod 2^32 */
    big_size = env_u64("ANIC_E2E_BIG", big_size);
    huge_size = env_u64("ANIC_E2E_HUGE", huge_size);
    if (huge_size && huge_size <= big_size) {
        printf("test_e2e: FAIL: ANIC_E2E_HUGE (%" PRIu64
               ") must be 0 or above ANIC_E2E_BIG (%" PRIu64 ")\n",
               huge_size, big_size);
        return 1;
    }
    max_time = (double)env_u64("ANIC_E2E_MAX_TIME", 60);
    max_time_huge = 2 * max_time > 120 ? 2 * max_time : 120;
    snprintf(max_time_arg, sizeof(max_time_arg), "%.0f", max_time);
    snprintf(max_time_huge_arg, sizeof(max_time_huge_arg), "%.0f", max_time_huge);
    const uint64_t sz[N_SIZES] = {1, 16383, 16384, 16385, 1u << 20, big_size, huge_size};
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
    note("one profile: CK_RUN_CASE=name; big size %" PRIu64 " B, huge size %" PRIu64
         " B, curl --max-time %s (huge: %s)",
         big_size, huge_size, max_time_arg, max_time_huge_arg);

    double t0 = now_s();
    for (int i = 0; i < N_SIZES; i++) {
        if (i == SI_HUGE && !huge_size)
            continue;
        char tag[32];
        snprintf(tag, sizeof(tag), "%" PRIu64, sizes[i]);
        uint64_t seed = base_seed * 1000003u + (uint64_t)i;
        if (!make_upload(&uploads[i], sizes[i], seed, tag)) {
            printf("test_e2e: FAIL: cannot write %s\n", uploads[i].path);
            return 1;
        }
        pattern_sha256(sizes[i], pattern_sha[i]);
        note("upload %-9" PRIu64 " B: PRNG seed %" PRIu64 ", sha256 %.16s..; GET pattern sha256 "
             "%.16s..",
             sizes[i], seed, uploads[i].sha, pattern_sha[i]);
    }
    uint64_t cseed = base_seed * 1000003u + 99;
    if (!make_upload(&upload_chunked, UPLOAD_CHUNKED_B, cseed, "chunked")) {
        printf("test_e2e: FAIL: cannot write %s\n", upload_chunked.path);
        return 1;
    }
    uint64_t tseed = base_seed * 1000003u + 98;
    if (!make_upload(&upload_tamper, UPLOAD_TAMPER_B, tseed, "tamper")) {
        printf("test_e2e: FAIL: cannot write %s\n", upload_tamper.path);
        return 1;
    }
    note("chunked upload %u B: PRNG seed %" PRIu64 ", sha256 %.16s..; tamper upload %u B: PRNG "
         "seed %" PRIu64 ", sha256 %.16s.. (all prepared in %.1f s)",
         UPLOAD_CHUNKED_B, cseed, upload_chunked.sha, UPLOAD_TAMPER_B, tseed, upload_tamper.sha,
         now_s() - t0);

    SRunner *sr = srunner_create(make_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, getenv("CK_VERBOSITY") ? CK_ENV : CK_VERBOSE);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cleanup_all();

    /* ---- summary ---- */
    printf("\ntest_e2e: summary (seed %" PRIu64 ")\n", base_seed);
    printf("  %-15s %9s %9s %7s   slowest transfer\n", "profile", "seconds", "transfers", "failed");
    for (int i = 0; i < N_PROFILES; i++) {
        struct profile *p = &profiles[i];
        if (p->t_start == 0)
            continue;
        const struct record *slow = NULL;
        for (int r = 0; r < n_records; r++)
            if (records[r].profile == p->name && (!slow || records[r].secs > slow->secs))
                slow = &records[r];
        printf("  %-15s %9.1f %9d %7d   %s%s%.2f s\n", p->name, p->t_end - p->t_start,
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
        unlink_big_uploads();
        printf("test_e2e: logs kept in %s\n", run_dir);
    } else {
        remove_run_dir();
    }
    fflush(stdout);
    return failed ? 1 : 0;
}
