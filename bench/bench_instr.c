/*
 * bench_instr.c - `anic bench --host-instr`: the host's work per byte as
 * instructions, not CPU seconds. Each mode's download and upload runs once
 * under valgrind's callgrind (`anic bench --modes M --tx-loss-sweep 0` or
 * `--rx-loss-sweep 0`, one curl transfer each, in the child bench's own
 * namespace), one output file per thread; the threads are told apart by
 * their start routines: the host's data path (irq_main: the stack-irq
 * thread, whose instructions per byte the ratio compares), the NIC engine
 * (engine_main), the bench's own main thread (bench_main, left out), the
 * TLS handshake workers (hs_main: work per connection, shown apart) and the
 * rest, shown as timers (lwIP's thread: work per second).
 *
 * Why: on a small shared machine, host CPU seconds per byte measure the
 * neighbours as much as the host: a nic-mode transfer puts the NIC's AES
 * and the client's on the same two cores, and the host's runs then differ
 * by 2-4x from run to run. Instruction counts are the same every run and
 * count only the host's own work. They leave out the kernel (syscalls) and
 * cache misses, which the seconds of `anic bench` include.
 */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define INSTR_MAX_MODES 8
#define INSTR_WATCHDOG  600 /* seconds per valgrind run, then it is killed */
#define INSTR_TARGET    1.05

enum { DIR_DOWN, DIR_UP, DIR_N };
static const char *const dir_name[DIR_N] = {"download", "upload"};
static const char *const dir_sweep[DIR_N] = {"--tx-loss-sweep", "--rx-loss-sweep"};

/* Instructions of one run, by thread class. */
struct instr_run {
    uint64_t datapath;  /* the stack-irq thread: the driver, lwIP's input and output, tls/ */
    uint64_t other;     /* the host's other threads: lwIP's timers, per second, not per byte */
    uint64_t handshake; /* the TLS handshake workers: per connection */
    uint64_t nic;
    bool ok;
};

static bool have_valgrind(void)
{
    return system("valgrind --version >/dev/null 2>&1") == 0;
}

/* The run's total instructions ("summary:" or "totals:") in *ir, and which
   start routine the thread's file names. False: unreadable. */
enum thread_kind { TK_OTHER, TK_DATAPATH, TK_HANDSHAKE, TK_NIC, TK_BENCH };

static bool read_thread_file(const char *path, uint64_t *ir, enum thread_kind *kind)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char line[4096];
    bool have = false;
    *kind = TK_OTHER;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long v;
        if (!have &&
            (sscanf(line, "summary: %llu", &v) == 1 || sscanf(line, "totals: %llu", &v) == 1)) {
            *ir = v;
            have = true;
        }
        /* fn=(id) name or cfn=(id) name: a name is written once per file,
           where it first occurs; a thread's start routine occurs only in
           its own thread's file. */
        const char *name = NULL;
        if (!strncmp(line, "cfn=(", 5) || !strncmp(line, "fn=(", 4))
            name = strchr(line, ')');
        if (!name)
            continue;
        name++;
        while (*name == ' ')
            name++;
        if (!strncmp(name, "irq_main\n", 9))
            *kind = TK_DATAPATH;
        else if (!strncmp(name, "engine_main\n", 12))
            *kind = TK_NIC;
        else if (!strncmp(name, "bench_main\n", 11))
            *kind = TK_BENCH;
        else if (!strncmp(name, "hs_main\n", 8))
            *kind = TK_HANDSHAKE;
    }
    fclose(f);
    return have;
}

/* Runs one transfer under callgrind; its per-thread files go to dir as
   PREFIX.PID-TT. The child's output goes to log. */
static bool run_one(const char *exe, const char *dir, const char *mode, int d, uint64_t size,
                    const char *log, struct instr_run *r)
{
    char out_file[512], size_arg[32];
    snprintf(out_file, sizeof(out_file), "--callgrind-out-file=%s/%s-%s.%%p", dir, mode,
             dir_name[d]);
    snprintf(size_arg, sizeof(size_arg), "%" PRIu64, size);
    char *const argv[] = {"valgrind", "--tool=callgrind", "--separate-threads=yes",
                          out_file,   (char *)exe,        "bench",
                          "--modes",  (char *)mode,       (char *)dir_sweep[d],
                          "0",        "--size",           size_arg,
                          "--csv",    "/dev/null",        NULL};
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        FILE *lf = freopen(log, "a", stdout);
        if (lf && dup2(fileno(stdout), 2) >= 0) {
            execvp("valgrind", argv);
            perror("anic bench --host-instr: exec valgrind");
        }
        _exit(127);
    }
    int status = 0;
    time_t t0 = time(NULL);
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            return false;
        if (time(NULL) - t0 > INSTR_WATCHDOG) {
            kill(pid, SIGTERM);
            waitpid(pid, &status, 0);
            fprintf(stderr, "anic bench --host-instr: %s %s ran over %d s, stopped\n", mode,
                    dir_name[d], INSTR_WATCHDOG);
            return false;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr,
                "anic bench --host-instr: %s %s under valgrind failed (status %d); see %s\n", mode,
                dir_name[d], status, log);
        return false;
    }
    char prefix[128];
    int plen = snprintf(prefix, sizeof(prefix), "%s-%s.", mode, dir_name[d]);
    DIR *dd = opendir(dir);
    if (!dd)
        return false;
    struct dirent *de;
    bool nic_seen = false, datapath_seen = false;
    while ((de = readdir(dd))) {
        if (strncmp(de->d_name, prefix, (size_t)plen) != 0 || !strchr(de->d_name + plen, '-'))
            continue; /* the per-thread files are PREFIX.PID-TT */
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        uint64_t ir = 0;
        enum thread_kind k;
        if (!read_thread_file(path, &ir, &k))
            continue;
        if (k == TK_NIC) {
            r->nic += ir;
            nic_seen = true;
        } else if (k == TK_HANDSHAKE) {
            r->handshake += ir;
        } else if (k == TK_DATAPATH) {
            r->datapath += ir;
            datapath_seen = true;
        } else if (k == TK_OTHER) {
            r->other += ir;
        }
    }
    closedir(dd);
    r->ok = nic_seen && datapath_seen && r->datapath > 0;
    if (!r->ok)
        fprintf(stderr, "anic bench --host-instr: %s %s: no NIC or stack-irq thread in %s\n", mode,
                dir_name[d], dir);
    return r->ok;
}

static void rm_tree(const char *dir)
{
    DIR *dd = opendir(dir);
    if (dd) {
        struct dirent *de;
        while ((de = readdir(dd))) {
            if (de->d_name[0] == '.')
                continue;
            char path[1024];
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            unlink(path);
        }
        closedir(dd);
    }
    rmdir(dir);
}

int bench_instr_run(const char *const *modes, unsigned n_modes, uint64_t size)
{
    if (n_modes > INSTR_MAX_MODES) {
        fprintf(stderr, "anic bench --host-instr: at most %d modes\n", INSTR_MAX_MODES);
        return 2;
    }
    if (!have_valgrind()) {
        fprintf(stderr, "anic bench --host-instr: needs valgrind (scripts/deps.sh installs it)\n");
        return 1;
    }
    char exe[4096]; /* valgrind runs this binary: /proc/self/exe would be valgrind's */
    ssize_t exe_len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (exe_len <= 0) {
        fprintf(stderr, "anic bench --host-instr: /proc/self/exe: %s\n", strerror(errno));
        return 1;
    }
    exe[exe_len] = 0;
    char dir[] = "/tmp/anic-bench-instr.XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "anic bench --host-instr: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char log[600];
    snprintf(log, sizeof(log), "%s.log", dir);
    unlink(log);
    static struct instr_run runs[INSTR_MAX_MODES][DIR_N];
    memset(runs, 0, sizeof(runs));
    bool all_ok = true;
    for (unsigned m = 0; m < n_modes; m++) {
        for (int d = 0; d < DIR_N; d++) {
            fprintf(stderr, "  %-12s %-8s under callgrind ...\n", modes[m], dir_name[d]);
            if (!run_one(exe, dir, modes[m], d, size, log, &runs[m][d]))
                all_ok = false;
        }
    }
    rm_tree(dir);

    int plain = -1, nic = -1;
    for (unsigned m = 0; m < n_modes; m++) {
        if (!strcmp(modes[m], "plain"))
            plain = (int)m;
        if (!strcmp(modes[m], "nic"))
            nic = (int)m;
    }
    printf("\nhost instructions per byte: one transfer of %" PRIu64
           " B per row under valgrind's callgrind, user\n"
           "space only (no syscalls, no cache misses). data path = the stack-irq thread (driver,\n"
           "lwIP input and output, tls/); timers = the host's other threads (lwIP's timers: work\n"
           "per second, and a nic run lasts longer under valgrind); handshake = the TLS workers\n"
           "(per connection); NIC = the engine thread\n",
           size);
    printf("%-12s %-8s %14s %8s %9s %12s %12s %8s\n", "mode", "dir", "data path", "instr/B",
           "vs plain", "timers", "handshake", "NIC i/B");
    for (unsigned m = 0; m < n_modes; m++) {
        for (int d = 0; d < DIR_N; d++) {
            const struct instr_run *r = &runs[m][d];
            printf("%-12s %-8s ", modes[m], dir_name[d]);
            if (!r->ok) {
                printf("%14s\n", "failed");
                continue;
            }
            printf("%14" PRIu64 " %8.3f", r->datapath, (double)r->datapath / (double)size);
            const struct instr_run *p = plain >= 0 ? &runs[plain][d] : NULL;
            if (p && p->ok)
                printf(" %8.3fx", (double)r->datapath / (double)p->datapath);
            else
                printf(" %9s", "-");
            printf(" %12" PRIu64 " %12" PRIu64 " %8.3f\n", r->other, r->handshake,
                   (double)r->nic / (double)size);
        }
    }
    if (plain >= 0 && nic >= 0) {
        const struct instr_run *n = &runs[nic][DIR_DOWN], *p = &runs[plain][DIR_DOWN];
        printf("target: host data-path instructions per byte, download, nic / plain ");
        if (n->ok && p->ok) {
            double ratio = (double)n->datapath / (double)p->datapath;
            printf("%.3fx (target <= %.2fx) -> %s\n", ratio, INSTR_TARGET,
                   ratio <= INSTR_TARGET ? "met" : "NOT met");
        } else {
            printf("-\n");
        }
    }
    if (!all_ok)
        fprintf(stderr, "anic bench --host-instr: some runs failed; their output: %s\n", log);
    else
        unlink(log);
    return all_ok ? 0 : 1;
}
