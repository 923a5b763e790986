/*
 * app_bench.c - `anic bench`: one process, one app_runtime with one listener
 * per selected mode, curl as the client inside the bench's own network
 * namespace. For every (mode, direction) it measures wall time around the
 * curl run and the CPU time of this process's threads by class:
 *
 *   NIC  = threads whose name starts with "nic" (DESIGN.md §2)
 *   host = every other thread, except the bench's own (main) thread, which
 *          only forks curl and waits for it
 *
 * from /proc/self/task/TID/schedstat (ns on CPU) and .../stat (user/system
 * split, clock ticks). curl's own CPU time comes from wait4().
 *
 * Signals: SIGINT/SIGTERM/SIGHUP/SIGCHLD are blocked in every thread (they
 * inherit the mask from the main thread, which blocks them before the runtime
 * starts) and taken synchronously by the main thread with sigtimedwait(), so
 * an interrupt stops curl (by PID), tears the runtime down and deletes the
 * namespace. SIGPIPE is ignored.
 */
#define _GNU_SOURCE
#include "app_bench.h"
#include "app_http.h"
#include "app_runtime.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <lwip/tcpip.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_DEFAULT_SIZE  (UINT64_C(256) << 20)
#define BENCH_DEFAULT_MODES "plain,mbedtls,sw"
#define BENCH_DEFAULT_CSV   "anic-bench.csv"
#define BENCH_MAX_REPEAT    100u
#define BENCH_MAX_TASKS     64u
#define BENCH_OUT_CAP       4096u
#define BENCH_WATCHDOG_S    30u /* beyond curl's own --max-time */
#define BENCH_SETTLE_MS     100u
#define BENCH_IDLE_WAIT_MS  3000u
#define BENCH_MARK          "\n@@anic-bench@@ "

enum { DIR_DOWN, DIR_UP, DIR_COUNT };
static const char *const dir_name[DIR_COUNT] = {"download", "upload"};

struct bench_opts {
    uint64_t size;
    enum tls_mode modes[APP_SERVER_MAX_LISTENERS];
    unsigned n_modes;
    const char *csv_path;
    uint32_t mtu;
    unsigned repeat;
    struct nic_fault_cfg fault_tx, fault_rx;
};

/* CPU time of this process's threads, by class, over one transfer. */
struct cpu_use {
    double host_s, host_user_s, host_sys_s;
    double nic_s, nic_user_s, nic_sys_s;
    double client_s; /* curl (user + system), from wait4() */
};

struct run {
    bool ok;
    char reason[200];
    double seconds;
    double mbps; /* 10^6 bytes per second */
    struct cpu_use cpu;
};

struct cell {
    struct run runs[BENCH_MAX_REPEAT];
    unsigned n_runs;
    bool failed;
    const struct run *shown; /* the median run, or the failed one */
};

struct bench {
    struct bench_opts o;
    struct app_runtime rt;
    char netns[64];
    char ca_path[128];
    char upload_path[128];
    char host[INET_ADDRSTRLEN];
    char fault_tx[NIC_FAULT_FMT_LEN], fault_rx[NIC_FAULT_FMT_LEN];
    char expect_hex[2 * 32 + 2]; /* SHA-256 of size zero bytes, hex + '\n' */
    uint16_t ports[APP_SERVER_MAX_LISTENERS];
    FILE *csv;
    sigset_t sigs, old_mask;
    int stop_sig; /* SIGINT/SIGTERM/SIGHUP received */
    pid_t self_tid;
    long clk_tck;
    struct cell cells[APP_SERVER_MAX_LISTENERS][DIR_COUNT];
};

/* ---- options ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: anic bench [options]\n"
            "\n"
            "Measures every selected mode side by side in one run: one process, one\n"
            "private network namespace (anic-bench-PID, created here and deleted at the end),\n"
            "one TUN device, the simulated NIC and the lwIP host with one listener per mode\n"
            "(plain on port 80, TLS mode M on port 4430+M: mbedtls 4431, sw 4432). The\n"
            "client is curl, run inside the namespace (ip netns exec).\n"
            "\n"
            "For each mode: a download (GET /bytes/SIZE, HTTP 200 and SIZE bytes required)\n"
            "and an upload (PUT /upload of a sparse file of SIZE zero bytes; the answer must\n"
            "be the SHA-256 of SIZE zero bytes). Each transfer is timed with CLOCK_MONOTONIC\n"
            "around the curl run, and the CPU time of this process's threads is read from\n"
            "/proc/self/task/*/schedstat (user/system split from .../stat) before and after:\n"
            "  NIC   threads whose name starts with \"nic\" (the simulated device)\n"
            "  host  every other thread (lwIP, driver, TLS, HTTP), except the bench's own\n"
            "        main thread, which only starts curl and waits\n"
            "The NIC's system time includes the peer kernel's TCP work behind each TUN\n"
            "read/write, so NIC user time is also reported on its own. MB/s = 10^6 B/s,\n"
            "s/GB = CPU seconds per 10^9 bytes.\n"
            "\n"
            "  --size BYTES      bytes per transfer (default 256M); suffix K, M, G\n"
            "                      (KiB, MiB, GiB), at most 1T\n"
            "  --modes LIST      comma-separated modes, run in this order\n"
            "                      (default " BENCH_DEFAULT_MODES "; plain = no TLS)\n"
            "  --csv FILE        write every successful measurement to FILE\n"
            "                      (default ./" BENCH_DEFAULT_CSV "; '-' = no CSV)\n"
            "  --mtu N           link MTU (default 1500, 576..9000)\n"
            "  --repeat N        run every transfer N times (1..%u, default 1), rounds\n"
            "                      interleaved over modes; the table shows the run with the\n"
            "                      median throughput (lower median for even N) and its CPU\n"
            "  --fault-tx SPEC   faults NIC -> kernel, as in anic serve, e.g.\n"
            "                      'loss 1%% reorder 2%% gap 3 seed 7' (seeds are printed)\n"
            "  --fault-rx SPEC   faults kernel -> NIC, same vocabulary\n"
            "  -h, --help        this text\n"
            "\n"
            "CSV columns: mode,direction,size_bytes,seconds,mbps,host_cpu_s,nic_cpu_s,\n"
            "nic_user_s,host_cpu_s_per_gb,nic_cpu_s_per_gb,fault_tx,fault_rx\n"
            "(one row per successful transfer; failed ones are only in the table).\n"
            "\n"
            "curl gets --max-time 60 s + SIZE at 10 MB/s. A failed transfer (curl error,\n"
            "HTTP status, wrong size, wrong digest) shows as FAILED with the reason and\n"
            "makes the exit status 1. Exit status 2: bad options. SIGINT/SIGTERM stop the\n"
            "running curl, clean up (namespace, temporary files) and exit 128+signal.\n"
            "Needs root, iproute2 and curl.\n",
            BENCH_MAX_REPEAT);
}

enum {
    OPT_SIZE = 256,
    OPT_MODES,
    OPT_CSV,
    OPT_MTU,
    OPT_REPEAT,
    OPT_FAULT_TX,
    OPT_FAULT_RX,
};

static const struct option bench_opts_long[] = {
    {"size", required_argument, NULL, OPT_SIZE},
    {"modes", required_argument, NULL, OPT_MODES},
    {"csv", required_argument, NULL, OPT_CSV},
    {"mtu", required_argument, NULL, OPT_MTU},
    {"repeat", required_argument, NULL, OPT_REPEAT},
    {"fault-tx", required_argument, NULL, OPT_FAULT_TX},
    {"fault-rx", required_argument, NULL, OPT_FAULT_RX},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int bad(const char *opt, const char *val, const char *why)
{
    fprintf(stderr, "anic bench: invalid value for --%s: '%s'%s%s (see anic bench --help)\n", opt,
            val, why ? ": " : "", why ? why : "");
    return 2;
}

/* Decimal digits with an optional K/M/G/T suffix (binary; "KiB", "MB" etc. also
   accepted and also binary). */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 0:
        break;
    case 'K':
        shift = 10;
        break;
    case 'M':
        shift = 20;
        break;
    case 'G':
        shift = 30;
        break;
    case 'T':
        shift = 40;
        break;
    default:
        return -1;
    }
    if (shift) {
        end++;
        if (!strcasecmp(end, "iB") || !strcasecmp(end, "B"))
            end += strlen(end);
    }
    if (*end)
        return -1;
    if (v > (APP_HTTP_BYTES_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_modes(const char *s, struct bench_opts *o)
{
    char buf[256];
    if (strlen(s) >= sizeof(buf))
        return bad("modes", s, "too long");
    snprintf(buf, sizeof(buf), "%s", s);
    o->n_modes = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int m = app_mode_parse(tok);
        if (m < 0) {
            char why[300];
            snprintf(why, sizeof(why), "unknown mode '%s'", tok);
            return bad("modes", s, why);
        }
        for (unsigned i = 0; i < o->n_modes; i++)
            if (o->modes[i] == (enum tls_mode)m)
                return bad("modes", s, "a mode is listed twice");
        if (o->n_modes == APP_SERVER_MAX_LISTENERS)
            return bad("modes", s, "too many modes");
        o->modes[o->n_modes++] = (enum tls_mode)m;
    }
    if (o->n_modes == 0)
        return bad("modes", s, "no mode");
    return 0;
}

/* Returns 0 to run, 1 for --help (exit 0), 2 for an error (message printed). */
static int parse_opts(int argc, char **argv, struct bench_opts *o)
{
    char err[256];
    unsigned long v;
    int c, rc;

    memset(o, 0, sizeof(*o));
    o->size = BENCH_DEFAULT_SIZE;
    o->csv_path = BENCH_DEFAULT_CSV;
    o->mtu = 1500;
    o->repeat = 1;
    nic_fault_cfg_init(&o->fault_tx);
    nic_fault_cfg_init(&o->fault_rx);
    if ((rc = parse_modes(BENCH_DEFAULT_MODES, o)) != 0)
        return rc;

    optind = 1;
    opterr = 0; /* our own message: argv[0] is "bench" here */
    while ((c = getopt_long(argc, argv, "h", bench_opts_long, NULL)) != -1) {
        switch (c) {
        case OPT_SIZE:
            if (parse_size(optarg, &o->size) < 0 || o->size == 0)
                return bad("size", optarg, "expected 1..1T bytes, suffix K/M/G/T");
            break;
        case OPT_MODES:
            if ((rc = parse_modes(optarg, o)) != 0)
                return rc;
            break;
        case OPT_CSV:
            if (!optarg[0])
                return bad("csv", optarg, "empty file name");
            o->csv_path = optarg;
            break;
        case OPT_MTU:
            if (parse_uint(optarg, 576, 9000, &v) < 0)
                return bad("mtu", optarg, "expected 576..9000");
            o->mtu = (uint32_t)v;
            break;
        case OPT_REPEAT:
            if (parse_uint(optarg, 1, BENCH_MAX_REPEAT, &v) < 0) {
                snprintf(err, sizeof(err), "expected 1..%u", BENCH_MAX_REPEAT);
                return bad("repeat", optarg, err);
            }
            o->repeat = (unsigned)v;
            break;
        case OPT_FAULT_TX:
        case OPT_FAULT_RX:
            if (nic_fault_cfg_parse(c == OPT_FAULT_TX ? &o->fault_tx : &o->fault_rx, optarg, err,
                                    sizeof(err)) < 0) {
                fprintf(stderr, "anic bench: --%s: %s\n",
                        c == OPT_FAULT_TX ? "fault-tx" : "fault-rx", err);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            fprintf(stderr,
                    "anic bench: unknown option or missing value: '%s' (see anic bench --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "anic bench: unexpected argument '%s' (see anic bench --help)\n",
                argv[optind]);
        return 2;
    }
    return 0;
}

/* ---- small helpers ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n;
    do
        n = read(fd, buf, cap - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return n;
}

/* A pending SIGINT/SIGTERM/SIGHUP (they are blocked): remember it. */
static bool stop_requested(struct bench *b)
{
    if (!b->stop_sig) {
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGINT);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGHUP);
        struct timespec zero = {0, 0};
        int sig = sigtimedwait(&stop, NULL, &zero);
        if (sig > 0)
            b->stop_sig = sig;
    }
    return b->stop_sig != 0;
}

/* ---- machine description ---- */

static void cpu_model(char *buf, size_t cap)
{
    snprintf(buf, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "re");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        colon++;
        while (*colon == ' ' || *colon == '\t')
            colon++;
        colon[strcspn(colon, "\n")] = 0;
        snprintf(buf, cap, "%s", colon);
        break;
    }
    fclose(f);
}

/* ---- per-thread CPU ---- */

enum { CLS_SELF, CLS_HOST, CLS_NIC };

struct task_cpu {
    pid_t tid;
    int cls;
    uint64_t run_ns;
    uint64_t utick, stick;
};

struct cpu_snap {
    unsigned n;
    struct task_cpu t[BENCH_MAX_TASKS];
};

static void cpu_snapshot(const struct bench *b, struct cpu_snap *s)
{
    s->n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && s->n < BENCH_MAX_TASKS) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        struct task_cpu *t = &s->t[s->n];
        char path[300], buf[1024];
        memset(t, 0, sizeof(*t));
        t->tid = (pid_t)atoi(de->d_name);
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
        if (read_small(path, buf, sizeof(buf)) < 0)
            continue; /* exited meanwhile */
        if (t->tid == b->self_tid)
            t->cls = CLS_SELF;
        else
            t->cls = strncmp(buf, "nic", 3) == 0 ? CLS_NIC : CLS_HOST;
        snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", de->d_name);
        if (read_small(path, buf, sizeof(buf)) < 0)
            continue;
        t->run_ns = strtoull(buf, NULL, 10);
        snprintf(path, sizeof(path), "/proc/self/task/%s/stat", de->d_name);
        if (read_small(path, buf, sizeof(buf)) < 0)
            continue;
        /* comm may hold spaces and parentheses: fields restart after the last ')'.
           Then: state(3) ... utime(14) stime(15). */
        char *p = strrchr(buf, ')');
        if (!p)
            continue;
        p++;
        for (int field = 3; field <= 13 && p; field++) {
            p = strchr(p + 1, ' ');
        }
        if (!p)
            continue;
        char *end;
        t->utick = strtoull(p, &end, 10);
        t->stick = strtoull(end, NULL, 10);
        s->n++;
    }
    closedir(d);
}

static void cpu_delta(const struct bench *b, const struct cpu_snap *before,
                      const struct cpu_snap *after, struct cpu_use *u)
{
    double tck = (double)b->clk_tck;
    for (unsigned i = 0; i < after->n; i++) {
        const struct task_cpu *a = &after->t[i];
        struct task_cpu z = {0};
        const struct task_cpu *p = &z;
        for (unsigned j = 0; j < before->n; j++)
            if (before->t[j].tid == a->tid)
                p = &before->t[j];
        double run = a->run_ns >= p->run_ns ? (double)(a->run_ns - p->run_ns) * 1e-9 : 0;
        double user = a->utick >= p->utick ? (double)(a->utick - p->utick) / tck : 0;
        double sys = a->stick >= p->stick ? (double)(a->stick - p->stick) / tck : 0;
        if (a->cls == CLS_NIC) {
            u->nic_s += run;
            u->nic_user_s += user;
            u->nic_sys_s += sys;
        } else if (a->cls == CLS_HOST) {
            u->host_s += run;
            u->host_user_s += user;
            u->host_sys_s += sys;
        }
    }
}

/* ---- running curl ---- */

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

/*
 * fork + exec argv with stdout on out_fd and stdin on /dev/null; wait for it,
 * at most watchdog_s seconds (then SIGKILL). SIGINT/SIGTERM/SIGHUP meanwhile
 * are remembered and passed on to the child as SIGTERM. Returns 0 and the wait
 * status, or -1 if fork failed.
 */
static int run_child(struct bench *b, char *const argv[], int out_fd, double watchdog_s,
                     int *status, struct rusage *ru, double *t0, double *t1, bool *killed)
{
    *t0 = now_s();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* Only async-signal-safe calls: we forked a threaded process. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGPIPE, &dfl, NULL);
        sigprocmask(SIG_SETMASK, &b->old_mask, NULL);
        int in = open("/dev/null", O_RDONLY);
        if (in >= 0)
            dup2(in, STDIN_FILENO);
        dup2(out_fd, STDOUT_FILENO);
        execvp(argv[0], argv);
        _exit(127);
    }
    double deadline = *t0 + watchdog_s;
    bool termed = false;
    *killed = false;
    for (;;) {
        pid_t r = wait4(pid, status, WNOHANG, ru);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            *status = -1;
            memset(ru, 0, sizeof(*ru));
            break;
        }
        double left = deadline - now_s();
        if (left <= 0) {
            if (!*killed)
                kill(pid, SIGKILL);
            *killed = true;
            left = 1;
        }
        if (left > 1)
            left = 1; /* safety net should SIGCHLD go elsewhere */
        struct timespec ts = {.tv_sec = (time_t)left,
                              .tv_nsec = (long)((left - (double)(time_t)left) * 1e9)};
        int sig = sigtimedwait(&b->sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
            b->stop_sig = sig;
            if (!termed)
                kill(pid, SIGTERM);
            termed = true;
            if (deadline > now_s() + 5)
                deadline = now_s() + 5;
        }
    }
    *t1 = now_s();
    return 0;
}

/* Last occurrence of the write-out marker. */
static char *find_mark(char *out, size_t n)
{
    char *last = NULL;
    size_t ml = strlen(BENCH_MARK);
    for (char *p = out; (p = memmem(p, n - (size_t)(p - out), BENCH_MARK, ml)) != NULL; p++)
        last = p;
    return last;
}

static void transfer(struct bench *b, unsigned mi, int dir, struct run *r)
{
    enum tls_mode mode = b->o.modes[mi];
    bool tls = mode != TLS_MODE_NONE;
    char url[160], maxtime[32], sizebuf[32];
    uint64_t size = b->o.size;
    double max_time = 60.0 + (double)size / 10e6;

    memset(r, 0, sizeof(*r));
    snprintf(sizebuf, sizeof(sizebuf), "%" PRIu64, size);
    if (dir == DIR_DOWN)
        snprintf(url, sizeof(url), "%s://%s:%u/bytes/%s", tls ? "https" : "http", b->host,
                 b->ports[mi], sizebuf);
    else
        snprintf(url, sizeof(url), "%s://%s:%u/upload", tls ? "https" : "http", b->host,
                 b->ports[mi]);
    snprintf(maxtime, sizeof(maxtime), "%.0f", max_time);

    char *argv[40];
    int n = 0;
    argv[n++] = "ip";
    argv[n++] = "netns";
    argv[n++] = "exec";
    argv[n++] = b->netns;
    argv[n++] = "curl";
    argv[n++] = "-q"; /* no .curlrc */
    argv[n++] = "--silent";
    argv[n++] = "--http1.1";
    argv[n++] = "--noproxy";
    argv[n++] = "*";
    argv[n++] = "--connect-timeout";
    argv[n++] = "10";
    argv[n++] = "--max-time";
    argv[n++] = maxtime;
    if (tls) {
        argv[n++] = "--cacert";
        argv[n++] = b->ca_path;
    }
    if (dir == DIR_DOWN) {
        argv[n++] = "-o";
        argv[n++] = "/dev/null";
    } else {
        argv[n++] = "-T";
        argv[n++] = b->upload_path;
        argv[n++] = "-o";
        argv[n++] = "-";
    }
    argv[n++] = "-w";
    argv[n++] = BENCH_MARK "%{http_code} %{size_download} %{size_upload} %{exitcode} "
                           "%{errormsg}";
    argv[n++] = url;
    argv[n] = NULL;

    int out = memfd_create("anic-bench-curl", MFD_CLOEXEC);
    if (out < 0) {
        snprintf(r->reason, sizeof(r->reason), "memfd_create: %s", strerror(errno));
        return;
    }

    struct cpu_snap before, after;
    struct rusage ru;
    int status = 0;
    double t0, t1;
    bool killed;
    cpu_snapshot(b, &before);
    int rc = run_child(b, argv, out, max_time + BENCH_WATCHDOG_S, &status, &ru, &t0, &t1, &killed);
    cpu_snapshot(b, &after);
    if (rc < 0) {
        snprintf(r->reason, sizeof(r->reason), "fork: %s", strerror(errno));
        close(out);
        return;
    }
    r->seconds = t1 - t0;
    r->mbps = r->seconds > 0 ? (double)size / r->seconds / 1e6 : 0;
    cpu_delta(b, &before, &after, &r->cpu);
    r->cpu.client_s = tv_s(ru.ru_utime) + tv_s(ru.ru_stime);

    char buf[BENCH_OUT_CAP];
    ssize_t got = pread(out, buf, sizeof(buf) - 1, 0);
    close(out);
    if (got < 0)
        got = 0;
    buf[got] = 0;

    if (status < 0) {
        snprintf(r->reason, sizeof(r->reason), "wait for curl failed");
        return;
    }
    if (WIFSIGNALED(status)) {
        snprintf(r->reason, sizeof(r->reason), "curl killed by %s%s", strsignal(WTERMSIG(status)),
                 stop_requested(b) ? " (interrupted)"
                 : killed          ? " (watchdog)"
                                   : "");
        return;
    }
    int ec = WEXITSTATUS(status);
    char *mark = find_mark(buf, (size_t)got);
    int http = 0, cexit = -1, off = 0;
    uint64_t down = 0, up = 0;
    if (!mark || sscanf(mark + strlen(BENCH_MARK), "%d %" SCNu64 " %" SCNu64 " %d %n", &http, &down,
                        &up, &cexit, &off) < 4) {
        snprintf(r->reason, sizeof(r->reason), "exit status %d, no curl output%s", ec,
                 ec == 127 || ec == 255 ? " (ip/curl missing?)" : "");
        return;
    }
    const char *errmsg = mark + strlen(BENCH_MARK) + off;
    if (ec != 0) {
        snprintf(r->reason, sizeof(r->reason), "curl exit %d: %.150s", ec,
                 *errmsg ? errmsg : "(no message)");
        return;
    }
    if (http != 200) {
        snprintf(r->reason, sizeof(r->reason), "HTTP status %d", http);
        return;
    }
    if (dir == DIR_DOWN) {
        if (down != size) {
            snprintf(r->reason, sizeof(r->reason), "got %" PRIu64 " of %" PRIu64 " bytes", down,
                     size);
            return;
        }
    } else {
        if (up != size) {
            snprintf(r->reason, sizeof(r->reason), "sent %" PRIu64 " of %" PRIu64 " bytes", up,
                     size);
            return;
        }
        *mark = 0;
        if (strcmp(buf, b->expect_hex) != 0) {
            buf[strcspn(buf, "\r\n")] = 0;
            snprintf(r->reason, sizeof(r->reason), "SHA-256 mismatch: server said '%.70s'", buf);
            return;
        }
    }
    r->ok = true;
}

/* Wait (bounded) until the server has no connection left, so that one
   transfer's teardown is not charged to the next. */
static void wait_idle(struct bench *b)
{
    double deadline = now_s() + BENCH_IDLE_WAIT_MS / 1000.0;
    for (;;) {
        LOCK_TCPIP_CORE();
        uint64_t active = app_server_counters(b->rt.server)->active;
        UNLOCK_TCPIP_CORE();
        if (active == 0 || now_s() > deadline)
            break;
        sleep_ms(10);
    }
    sleep_ms(BENCH_SETTLE_MS);
}

/* ---- digest and files ---- */

static int zero_digest(uint64_t size, char *hex)
{
    static const unsigned char zero[1 << 16];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    for (uint64_t left = size; ok && left;) {
        size_t n = left < sizeof(zero) ? (size_t)left : sizeof(zero);
        ok = EVP_DigestUpdate(ctx, zero, n) == 1;
        left -= n;
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    for (unsigned i = 0; i < md_len; i++) {
        hex[2 * i] = "0123456789abcdef"[md[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
    }
    hex[2 * md_len] = '\n';
    hex[2 * md_len + 1] = 0;
    return 0;
}

static int make_sparse(const char *path, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "anic bench: create %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        fprintf(stderr, "anic bench: ftruncate %s: %s\n", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    close(fd);
    return 0;
}

/* ---- output ---- */

static void csv_field(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_row(struct bench *b, unsigned mi, int dir, const struct run *r)
{
    if (!b->csv || !r->ok)
        return;
    double gb = (double)b->o.size / 1e9;
    fprintf(b->csv, "%s,%s,%" PRIu64 ",%.6f,%.3f,%.6f,%.6f,%.6f,%.6f,%.6f,",
            app_mode_name(b->o.modes[mi]), dir_name[dir], b->o.size, r->seconds, r->mbps,
            r->cpu.host_s, r->cpu.nic_s, r->cpu.nic_user_s, r->cpu.host_s / gb, r->cpu.nic_s / gb);
    csv_field(b->csv, b->fault_tx);
    fputc(',', b->csv);
    csv_field(b->csv, b->fault_rx);
    fputc('\n', b->csv);
    fflush(b->csv);
}

static void print_run(const struct bench *b, unsigned mi, int dir, unsigned rep,
                      const struct run *r)
{
    double gb = (double)b->o.size / 1e9;
    printf("  %-8s %-8s", app_mode_name(b->o.modes[mi]), dir_name[dir]);
    if (b->o.repeat > 1)
        printf(" run %u/%u", rep + 1, b->o.repeat);
    if (r->ok)
        printf(": %8.1f MB/s in %.3f s, host %.3f s/GB, NIC %.3f s/GB (user %.3f)\n", r->mbps,
               r->seconds, r->cpu.host_s / gb, r->cpu.nic_s / gb, r->cpu.nic_user_s / gb);
    else
        printf(": FAILED after %.3f s: %s\n", r->seconds, r->reason);
    fflush(stdout);
}

static int cmp_mbps(const void *x, const void *y)
{
    const struct run *a = *(const struct run *const *)x, *c = *(const struct run *const *)y;
    return a->mbps < c->mbps ? -1 : a->mbps > c->mbps;
}

static void pick_median(struct cell *c)
{
    const struct run *ok[BENCH_MAX_REPEAT];
    unsigned n = 0;
    c->shown = NULL;
    for (unsigned i = 0; i < c->n_runs; i++) {
        if (!c->runs[i].ok) {
            c->shown = &c->runs[i];
            return;
        }
        ok[n++] = &c->runs[i];
    }
    if (n == 0)
        return;
    qsort(ok, n, sizeof(ok[0]), cmp_mbps);
    c->shown = ok[(n - 1) / 2];
}

/* The shown run of (mode m, dir), if it succeeded. */
static const struct run *good(const struct bench *b, enum tls_mode m, int dir)
{
    for (unsigned i = 0; i < b->o.n_modes; i++)
        if (b->o.modes[i] == m) {
            const struct run *r = b->cells[i][dir].shown;
            return r && r->ok ? r : NULL;
        }
    return NULL;
}

static void ratio_col(double num, double den, bool have)
{
    if (have && den > 0)
        printf(" %8.2fx", num / den);
    else
        printf(" %9s", "-");
}

static void print_table(const struct bench *b)
{
    double gb = (double)b->o.size / 1e9;
    printf("\n");
    if (b->o.repeat > 1)
        printf("median of %u runs (by throughput), CPU of that run\n", b->o.repeat);
    printf("%-8s %-8s %9s %9s %6s %6s %9s %6s %6s %9s %9s %9s %9s\n", "", "", "", "host", "", "",
           "NIC", "NIC", "", "curl", "host CPU", "MB/s", "MB/s");
    printf("%-8s %-8s %9s %9s %6s %6s %9s %6s %6s %9s %9s %9s %9s\n", "mode", "dir", "MB/s", "s/GB",
           "usr", "sys", "s/GB", "usr", "sys", "s/GB", "vs plain", "vs plain", "vs mbedtls");
    for (int dir = 0; dir < DIR_COUNT; dir++) {
        const struct run *plain = good(b, TLS_MODE_NONE, dir);
        const struct run *mbed = good(b, TLS_MODE_MBEDTLS, dir);
        for (unsigned mi = 0; mi < b->o.n_modes; mi++) {
            const struct run *r = b->cells[mi][dir].shown;
            printf("%-8s %-8s", app_mode_name(b->o.modes[mi]), dir_name[dir]);
            if (!r) {
                printf(" %9s\n", "not run");
                continue;
            }
            if (!r->ok) {
                printf(" FAILED: %s\n", r->reason);
                continue;
            }
            const struct cpu_use *u = &r->cpu;
            printf(" %9.1f %9.3f %6.3f %6.3f %9.3f %6.3f %6.3f %9.3f", r->mbps, u->host_s / gb,
                   u->host_user_s / gb, u->host_sys_s / gb, u->nic_s / gb, u->nic_user_s / gb,
                   u->nic_sys_s / gb, u->client_s / gb);
            ratio_col(u->host_s, plain ? plain->cpu.host_s : 0, plain != NULL);
            ratio_col(r->mbps, plain ? plain->mbps : 0, plain != NULL);
            ratio_col(r->mbps, mbed ? mbed->mbps : 0, mbed != NULL);
            printf("\n");
        }
    }
    printf("(MB/s = 10^6 B/s; s/GB = CPU seconds per 10^9 bytes; usr/sys from clock ticks;\n"
           " NIC sys includes the kernel TCP work behind TUN reads/writes; curl = client)\n");

    /* Every later mode against every earlier one, in --modes order. */
    for (int dir = 0; dir < DIR_COUNT; dir++) {
        printf("ratios %s:", dir_name[dir]);
        bool any = false;
        for (unsigned i = 0; i < b->o.n_modes; i++)
            for (unsigned j = 0; j < i; j++) {
                const struct run *x = good(b, b->o.modes[i], dir);
                const struct run *y = good(b, b->o.modes[j], dir);
                if (!x || !y || y->mbps <= 0 || y->cpu.host_s <= 0)
                    continue;
                printf("%s %s/%s throughput %.2fx host CPU/GB %.2fx", any ? ";" : "",
                       app_mode_name(b->o.modes[i]), app_mode_name(b->o.modes[j]),
                       x->mbps / y->mbps, x->cpu.host_s / y->cpu.host_s);
                any = true;
            }
        printf("%s\n", any ? "" : " (no pair of successful modes)");
    }
}

/* ---- main ---- */

static void print_header(struct bench *b)
{
    char model[256];
    struct utsname un;
    cpu_model(model, sizeof(model));
    if (uname(&un) < 0)
        snprintf(un.release, sizeof(un.release), "?");
    printf("anic bench: %" PRIu64 " bytes (%.1f MiB) per transfer, modes ", b->o.size,
           (double)b->o.size / (1 << 20));
    for (unsigned i = 0; i < b->o.n_modes; i++)
        printf("%s%s", i ? "," : "", app_mode_name(b->o.modes[i]));
    printf(", %u run%s each\n", b->o.repeat, b->o.repeat > 1 ? "s" : "");
    printf("  machine: %ld CPUs online, %s, Linux %s\n", sysconf(_SC_NPROCESSORS_ONLN), model,
           un.release);
    printf("  namespace %s, TUN %s, lwIP host %s, MTU %u\n", b->netns, b->rt.cfg.tun_name, b->host,
           b->rt.cfg.mtu);
    printf("  listeners:");
    for (unsigned i = 0; i < b->o.n_modes; i++)
        printf(" %s %s:%u", app_mode_name(b->o.modes[i]),
               b->o.modes[i] == TLS_MODE_NONE ? "http" : "https", b->ports[i]);
    printf("\n  fault-tx: %s\n  fault-rx: %s\n", b->fault_tx, b->fault_rx);
    printf("  csv: %s\n\n", b->csv ? b->o.csv_path : "(none)");
    fflush(stdout);
}

static void run_all(struct bench *b)
{
    for (unsigned rep = 0; rep < b->o.repeat; rep++)
        for (unsigned mi = 0; mi < b->o.n_modes; mi++)
            for (int dir = 0; dir < DIR_COUNT; dir++) {
                struct cell *c = &b->cells[mi][dir];
                if (c->failed)
                    continue; /* one failure decides the cell; do not wait again */
                wait_idle(b);
                if (stop_requested(b))
                    return;
                struct run *r = &c->runs[c->n_runs++];
                transfer(b, mi, dir, r);
                print_run(b, mi, dir, rep, r);
                if (!r->ok)
                    c->failed = true;
                csv_row(b, mi, dir, r);
                if (stop_requested(b))
                    return;
            }
}

int app_bench_main(int argc, char **argv)
{
    static struct bench bench; /* large: cells */
    struct bench *b = &bench;
    char err[512];
    int rc = parse_opts(argc, argv, &b->o);
    if (rc)
        return rc == 1 ? 0 : 2;

    if (geteuid() != 0) {
        fprintf(stderr, "anic bench: needs root (network namespace, TUN device)\n");
        return 1;
    }
    pid_t pid = getpid();
    b->self_tid = gettid();
    b->clk_tck = sysconf(_SC_CLK_TCK);
    if (b->clk_tck <= 0)
        b->clk_tck = 100;
    snprintf(b->netns, sizeof(b->netns), "anic-bench-%d", (int)pid);
    snprintf(b->ca_path, sizeof(b->ca_path), "/tmp/anic-bench-%d-ca.pem", (int)pid);
    snprintf(b->upload_path, sizeof(b->upload_path), "/tmp/anic-bench-%d-upload", (int)pid);

    signal(SIGPIPE, SIG_IGN);
    /* Blocked before any thread exists, so every thread inherits the mask and
       the main thread takes these synchronously (sigtimedwait). */
    sigemptyset(&b->sigs);
    sigaddset(&b->sigs, SIGINT);
    sigaddset(&b->sigs, SIGTERM);
    sigaddset(&b->sigs, SIGHUP);
    sigaddset(&b->sigs, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &b->sigs, &b->old_mask);

    int status = 1;
    bool uploaded = false, runtime = false, tls = false;
    if (zero_digest(b->o.size, b->expect_hex) < 0) {
        fprintf(stderr, "anic bench: SHA-256 (libcrypto) failed\n");
        goto out;
    }
    if (strcmp(b->o.csv_path, "-") != 0) {
        b->csv = fopen(b->o.csv_path, "we");
        if (!b->csv) {
            fprintf(stderr, "anic bench: cannot write %s: %s\n", b->o.csv_path, strerror(errno));
            goto out;
        }
        fprintf(b->csv, "mode,direction,size_bytes,seconds,mbps,host_cpu_s,nic_cpu_s,nic_user_s,"
                        "host_cpu_s_per_gb,nic_cpu_s_per_gb,fault_tx,fault_rx\n");
        fflush(b->csv);
    }
    if (make_sparse(b->upload_path, b->o.size) < 0)
        goto out;
    uploaded = true;

    struct app_runtime_cfg cfg;
    app_runtime_cfg_defaults(&cfg);
    cfg.netns = b->netns;
    cfg.mtu = b->o.mtu;
    cfg.fault_tx = b->o.fault_tx;
    cfg.fault_rx = b->o.fault_rx;
    cfg.ca_out_path = b->ca_path;
    cfg.n_listeners = 0;
    for (unsigned i = 0; i < b->o.n_modes; i++) {
        enum tls_mode m = b->o.modes[i];
        b->ports[i] = m == TLS_MODE_NONE ? 80 : (uint16_t)(4430 + (unsigned)m);
        cfg.listeners[cfg.n_listeners++] = (struct app_listener){b->ports[i], m};
        tls |= m != TLS_MODE_NONE;
    }
    inet_ntop(AF_INET, &cfg.host_ip, b->host, sizeof(b->host));

    if (stop_requested(b))
        goto out;
    if (app_runtime_start(&b->rt, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "anic bench: %s\n", err);
        goto out;
    }
    runtime = true;
    nic_fault_cfg_format(&b->rt.cfg.fault_tx, b->fault_tx, sizeof(b->fault_tx));
    nic_fault_cfg_format(&b->rt.cfg.fault_rx, b->fault_rx, sizeof(b->fault_rx));
    print_header(b);

    run_all(b);

    bool failed = false;
    for (unsigned mi = 0; mi < b->o.n_modes; mi++)
        for (int dir = 0; dir < DIR_COUNT; dir++) {
            pick_median(&b->cells[mi][dir]);
            failed |= b->cells[mi][dir].failed;
        }
    print_table(b);
    status = failed ? 1 : 0;

out:
    if (runtime) {
        app_runtime_stop(&b->rt);
        app_runtime_free(&b->rt); /* deletes the namespace */
    }
    if (tls)
        unlink(b->ca_path);
    if (uploaded)
        unlink(b->upload_path);
    if (b->csv && fclose(b->csv) != 0) {
        fprintf(stderr, "anic bench: write %s failed\n", b->o.csv_path);
        status = 1;
    }
    b->csv = NULL;
    if (stop_requested(b)) {
        printf("anic bench: %s, stopped early\n", strsignal(b->stop_sig));
        status = 128 + b->stop_sig;
    }
    fflush(stdout);
    return status;
}
