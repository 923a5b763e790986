/*
 * bench_nginx.h - the nginx the benchmarks compare anic with, and the small
 * process helpers they share (bench_load.c, bench.c).
 *
 * nginx (Debian nginx-light) runs with its own configuration in a temporary
 * directory, on the loopback of the bench's network namespace (it is started
 * from the thread that entered the namespace, so it inherits it), with the
 * same ECDSA P-256 certificate as anic, TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256
 * only, and www/ under the directory as its root. It is stopped by its PID.
 */
#ifndef ANIC_BENCH_NGINX_H
#define ANIC_BENCH_NGINX_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_NGINX_HTTP  8080
#define BENCH_NGINX_HTTPS 8443
#define BENCH_NGINX_ADDR  "127.0.0.1" /* the namespace's own loopback */
#define BENCH_NOFILE      65536       /* fds for wrk and nginx at 5000 connections */
#define BENCH_CIPHER      "ECDHE-ECDSA-AES128-GCM-SHA256"

struct bench_nginx {
    const char *dir;  /* temporary directory: nginx.conf, logs, www/ (the caller's) */
    const char *cert; /* PEM certificate and key (bench_make_cert) */
    const char *key;
    const char *who;                   /* message prefix, e.g. "anic bench --load" */
    const volatile sig_atomic_t *stop; /* set by a signal handler; NULL = none */
    unsigned workers;
    char conf[96];
    char bin[256];
    pid_t pid; /* 0 = not running */
};

/* out = the first executable DIR/name of the usual bin directories. */
bool bench_find_tool(const char *name, char *out, size_t cap);
/* Soft fd limit up to the hard one: wrk and nginx need one per connection. */
void bench_raise_nofile(void);
/* The hard fd limit, capped at BENCH_NOFILE. */
unsigned bench_nofile_max(void);
/* Start argv (posix_spawn, no PATH search) with stdout into a pipe (read into out, NUL-terminated)
   and stderr into err_path (or /dev/null). Bounded: killed after timeout_s or
   when *stop is set. Returns the exit status, 128 + signal, or -1. */
int bench_run_capture(char *const argv[], char *out, size_t cap, const char *err_path,
                      double timeout_s, const volatile sig_atomic_t *stop);
/* The /bytes/N body: byte i is i % 251 (apps/app_http.c). */
int bench_write_pattern_file(const char *path, uint64_t n);
/* One ECDSA P-256 certificate (DIR/cert.pem, DIR/key.pem) for both servers. */
int bench_make_cert(const char *dir, char *cert, size_t cert_cap, char *key, size_t key_cap);
/* Writes DIR/nginx.conf (n->conf): DIR/www as the root (GET of files), and
   PUT /upload/NAME (WebDAV) stores the body as DIR/www/upload/NAME, which
   must be a directory nginx's workers may write. */
int bench_nginx_write_conf(struct bench_nginx *n);
/* Starts nginx and waits (<= 5 s) until both ports accept. */
int bench_nginx_start(struct bench_nginx *n);
/* By PID: SIGTERM, bounded wait, then SIGKILL. No-op when not running. */
void bench_nginx_stop(struct bench_nginx *n);

#endif
