/*
 * bench_load.h - `anic bench --load`: many-connection HTTP(S) load with wrk,
 * anic against nginx in the same run, on the same machine and files.
 *
 * One network namespace (created by the anic runtime, deleted at the end)
 * holds both servers: anic on its TUN host address (plain 80, sw 443, nic
 * 4432) and an nginx started by the bench on 127.0.0.1 (8080 plain, 8443
 * TLS) with its own configuration in a temporary directory, the same ECDSA
 * P-256 certificate, TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256 and the same
 * /bytes/N bodies as files. wrk runs inside the namespace, bounded per cell.
 * nginx is stopped by its PID.
 */
#ifndef ANIC_BENCH_LOAD_H
#define ANIC_BENCH_LOAD_H

#include <stdbool.h>

/* True if argv asks for the load benchmark (--load). */
bool bench_load_wanted(int argc, char **argv);
/* `anic bench --load [options]`; returns an exit status. */
int bench_load_main(int argc, char **argv);

#endif
