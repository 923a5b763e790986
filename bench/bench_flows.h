/*
 * bench_flows.h - the many-flow client of `anic bench --load --flows`: N
 * concurrent long-lived HTTP(S) downloads or uploads over the kernel's
 * sockets, with OpenSSL as the TLS client, in a child process (this
 * program again, `anic FLOWS_CLIENT_CMD ...`, so its CPU time is not the
 * server's). It first opens every connection and
 * completes every handshake (bounded by setup_s), then starts all transfers
 * at once, warms up for warm_s and measures payload bytes over measure_s.
 * Each connection repeats GET /bytes/SIZE (download) or PUT /upload?digest=crc32c
 * (the server's cheap digest; the answer is not checked) of SIZE
 * bytes (upload) on one keep-alive connection. With active < n, only that
 * many transfer at once: a connection that finished a transfer waits idle
 * at the back of a queue and hands its turn to the one at the front, so
 * every connection stays established and takes turns (the many idle
 * keep-alive connections of a real server). With a rate, the client reads
 * (or writes) body bytes no faster than that, all connections together: a
 * connection that would go past it stops until the budget has grown.
 *
 * The child reports on a pipe, one line each: "START\n" when the measured
 * window begins and "END bytes secs established failed transfers errors
 * served peak\n" when it ends (served: connections that completed a
 * transfer in the window; peak: the most transfers in progress at once),
 * so that the caller samples its counters at the same moments. Every wait
 * is bounded; the child exits after END (or on its deadline).
 */
#ifndef ANIC_BENCH_FLOWS_H
#define ANIC_BENCH_FLOWS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct flows_cfg {
    uint32_t addr; /* server, network byte order */
    uint16_t port;
    bool tls;
    bool upload;
    unsigned n;       /* concurrent connections */
    unsigned active;  /* transfers at once, 1..n; the others wait idle, in turns */
    uint64_t size;    /* bytes per transfer */
    double setup_s;   /* at most this long for connecting and handshakes */
    double warm_s;    /* transfers run this long before the window */
    double measure_s; /* the measured window */
    uint64_t rate;    /* payload bytes/s of all connections together, from the start of the
                         transfers (0 = as fast as they go): compares modes at one load */
};

struct flows_result {
    bool ok;        /* END was read */
    uint64_t bytes; /* payload bytes in the window (received bodies, or sent bodies) */
    double secs;    /* the window's length as the child measured it */
    unsigned established, failed;
    uint64_t transfers, errors; /* completed transfers, connections failed after setup */
    unsigned served;            /* connections that completed a transfer in the window */
    unsigned peak;              /* the most transfers in progress at once */
};

/* The hidden subcommand that runs the client. */
#define FLOWS_CLIENT_CMD "bench-flows-client"

/* Start the client; *rd gets the read end of its report pipe. -1 with errno:
   not started. */
pid_t flows_spawn(const struct flows_cfg *c, int *rd);
/* main() of FLOWS_CLIENT_CMD (argv[0] is the subcommand): runs the client
   with the configuration flows_spawn put in argv, reporting on fd 3. Returns
   only on bad arguments. */
int flows_client_main(int argc, char **argv);
/* Read one report line into buf (bounded by timeout_s). False: none. */
bool flows_read_line(int rd, char *buf, size_t cap, double timeout_s);
/* Parse the END line. */
bool flows_parse_end(const char *line, struct flows_result *r);

#endif
