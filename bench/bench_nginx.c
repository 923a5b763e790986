/* bench_nginx.c - nginx for the benchmarks and shared process helpers; see bench_nginx.h. */
#define _GNU_SOURCE
#include "bench_nginx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static bool stopped(const volatile sig_atomic_t *stop)
{
    return stop && *stop;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms, const volatile sig_atomic_t *stop)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stopped(stop)) {
    }
}

bool bench_find_tool(const char *name, char *out, size_t cap)
{
    static const char *const dirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                       "/usr/bin",        "/sbin",          "/bin"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(out, cap, "%s/%s", dirs[i], name);
        if (access(out, X_OK) == 0)
            return true;
    }
    return false;
}

void bench_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

unsigned bench_nofile_max(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max == RLIM_INFINITY)
        return BENCH_NOFILE;
    return rl.rlim_max < BENCH_NOFILE ? (unsigned)rl.rlim_max : BENCH_NOFILE;
}

int bench_run_capture(char *const argv[], char *out, size_t cap, const char *err_path,
                      double timeout_s, const volatile sig_atomic_t *stop)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    /* posix_spawn, not fork (see run_child in bench.c): a fork would cost the
       running NIC and host a page fault on their next write to every page.
       No PR_SET_PDEATHSIG then: what runs here (wrk -d, nginx -t, openssl)
       stops by itself, and is killed at the deadline. */
    bench_raise_nofile(); /* inherited: wrk holds one socket per connection */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    if (err_path)
        posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    else
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int err = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (err) {
        close(p[0]);
        errno = err;
        return -1;
    }
    size_t len = 0;
    double deadline = now_s() + timeout_s;
    bool killed = false;
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0 || stopped(stop)) {
            kill(pid, SIGKILL);
            killed = true;
            break;
        }
        struct pollfd pf = {p[0], POLLIN, 0};
        int r = poll(&pf, 1, left > 0.2 ? 200 : 1 + (int)(left * 1000));
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0)
            continue;
        char tmp[4096];
        ssize_t n = read(p[0], tmp, sizeof(tmp));
        if (n <= 0)
            break;
        size_t take = cap - 1 - len < (size_t)n ? cap - 1 - len : (size_t)n;
        memcpy(out + len, tmp, take);
        len += take;
    }
    out[len] = 0;
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (killed)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int bench_write_pattern_file(const char *path, uint64_t n)
{
    FILE *f = fopen(path, "we");
    if (!f)
        return -1;
    uint8_t period[251 * 64];
    for (size_t i = 0; i < sizeof(period); i++)
        period[i] = (uint8_t)(i % 251);
    for (uint64_t left = n; left;) {
        size_t k = left < sizeof(period) ? (size_t)left : sizeof(period);
        if (fwrite(period, 1, k, f) != k) {
            fclose(f);
            return -1;
        }
        left -= k;
    }
    return fclose(f) == 0 ? 0 : -1;
}

int bench_make_cert(const char *dir, char *cert, size_t cert_cap, char *key, size_t key_cap)
{
    char openssl[256], out[256];
    if (!bench_find_tool("openssl", openssl, sizeof(openssl)))
        return -1;
    snprintf(cert, cert_cap, "%s/cert.pem", dir);
    snprintf(key, key_cap, "%s/key.pem", dir);
    char *argv[] = {openssl,
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=anic-load",
                    "-addext",
                    "subjectAltName=IP:10.77.0.2,IP:127.0.0.1",
                    "-keyout",
                    key,
                    "-out",
                    cert,
                    NULL};
    return bench_run_capture(argv, out, sizeof(out), NULL, 30, NULL) == 0 ? 0 : -1;
}

int bench_nginx_write_conf(struct bench_nginx *n)
{
    snprintf(n->conf, sizeof(n->conf), "%s/nginx.conf", n->dir);
    FILE *f = fopen(n->conf, "we");
    if (!f)
        return -1;
    /* Everything nginx writes stays in the temporary directory. Timeouts as
       anic's defaults; keep-alive without a request cap, as anic. */
    fprintf(f,
            "daemon off;\n"
            "master_process on;\n"
            "worker_processes %u;\n"
            "worker_rlimit_nofile %u;\n"
            "pid %s/nginx.pid;\n"
            "error_log %s/error.log warn;\n"
            "events { worker_connections %u; }\n"
            "http {\n"
            "  access_log off;\n"
            "  sendfile on;\n"
            "  keepalive_requests 1000000000;\n"
            "  keepalive_timeout 75s;\n"
            "  client_body_temp_path %s/tmp-body;\n"
            "  proxy_temp_path %s/tmp-proxy;\n"
            "  fastcgi_temp_path %s/tmp-fastcgi;\n"
            "  uwsgi_temp_path %s/tmp-uwsgi;\n"
            "  scgi_temp_path %s/tmp-scgi;\n"
            "  types { }\n"
            "  default_type application/octet-stream;\n"
            "  server {\n"
            "    listen %s:%d backlog=16384;\n"
            "    listen %s:%d ssl backlog=16384;\n"
            "    ssl_certificate %s;\n"
            "    ssl_certificate_key %s;\n"
            "    ssl_protocols TLSv1.2;\n"
            "    ssl_ciphers %s;\n"
            "    ssl_session_tickets off;\n"
            "    root %s/www;\n"
            /* Upload sink: WebDAV PUT reads the whole body (into a temporary
               file, then renamed to www/upload/NAME), answers 201 or 204. */
            "    location /upload/ {\n"
            "      dav_methods PUT;\n"
            "      client_max_body_size 0;\n"
            "    }\n"
            "  }\n"
            "}\n",
            n->workers, bench_nofile_max(), n->dir, n->dir, bench_nofile_max() / 2, n->dir, n->dir,
            n->dir, n->dir, n->dir, BENCH_NGINX_ADDR, BENCH_NGINX_HTTP, BENCH_NGINX_ADDR,
            BENCH_NGINX_HTTPS, n->cert, n->key, BENCH_CIPHER, n->dir);
    return fclose(f) == 0 ? 0 : -1;
}

static bool port_open(const char *addr, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Started from the thread that is in the namespace: nginx is too. */
int bench_nginx_start(struct bench_nginx *n)
{
    char errlog[160];
    snprintf(errlog, sizeof(errlog), "%s/nginx.stderr", n->dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        bench_raise_nofile();
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int nul = open("/dev/null", O_RDWR);
        int efd = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(efd >= 0 ? efd : nul, 2);
        execl(n->bin, n->bin, "-p", n->dir, "-c", n->conf, (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    n->pid = pid;
    for (int i = 0; i < 100; i++) { /* <= 5 s */
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            n->pid = 0;
            fprintf(stderr, "%s: nginx exited at start (see %s)\n", n->who, errlog);
            return -1;
        }
        if (port_open(BENCH_NGINX_ADDR, BENCH_NGINX_HTTP) &&
            port_open(BENCH_NGINX_ADDR, BENCH_NGINX_HTTPS))
            return 0;
        sleep_ms(50, n->stop);
    }
    fprintf(stderr, "%s: nginx did not listen within 5 s\n", n->who);
    return -1;
}

void bench_nginx_stop(struct bench_nginx *n)
{
    if (n->pid <= 0)
        return;
    kill(n->pid, SIGTERM);
    int st;
    pid_t w = 0;
    for (int i = 0; i < 100 && (w = waitpid(n->pid, &st, WNOHANG)) == 0; i++)
        sleep_ms(50, n->stop);
    if (w == 0) {
        kill(n->pid, SIGKILL);
        waitpid(n->pid, &st, 0);
    }
    n->pid = 0;
}
