/* tls_internal.h - shared between tls_server.c and tls_conn.c only. */
#ifndef ANIC_TLS_INTERNAL_H
#define ANIC_TLS_INTERNAL_H

#include "tls_server.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

struct tls_conn;

/* The handshake workers (tls_conn.c): a pool of threads per server runs
   mbed TLS handshakes off lwIP's core lock; started at the first handshake.
   A connection is queued at most once, so one worker at a time owns its
   mbed TLS context. Shared server state the workers touch: the DRBG (locked
   by mbed TLS, MBEDTLS_THREADING_C), the key (its comb table is built once
   before any worker starts: warm_key in tls_server.c), the key log
   (flockfile). */
#define TLS_HS_WORKERS_MAX 16
struct tls_hs_worker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th[TLS_HS_WORKERS_MAX];
    unsigned n_th; /* threads running */
    bool started, stop;
    /* Queued for the workers: [0] later steps of started handshakes, served
       first (a started handshake finishes before new ones start), [1] new
       ClientHellos, at most queue_cap of them (more are refused). */
    struct tls_conn *todo[2], *todo_tail[2];
    unsigned n_new;        /* entries in todo[1] */
    struct tls_conn *done; /* handshake step over, for the tcpip thread */
    bool posted;           /* a drain callback is in lwIP's mailbox */
};

struct tls_server {
    bool initialised;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt chain;
    mbedtls_pk_context key;
    mbedtls_ssl_config conf;
    FILE *keylog;
    size_t record_size; /* TX record plaintext limit (tls_server_cfg.record_size) */
    struct tls_offload *offload;
    struct tls_counters counters[TLS_MODE_COUNT];
    struct tls_hs_worker hs;
    unsigned hs_workers, hs_queue_cap; /* tls_server_cfg.handshake_workers / _queue */
    uint32_t hs_queue_ms;              /* tls_server_cfg.handshake_queue_ms */
};

/* Stop the handshake worker (tls_server_free). False if a callback of it may
   still run: the server must then not be freed. */
bool tls_conn_hs_stop(struct tls_server *s);

/* mbed TLS 2.28 only has a per-config export hook: tls_conn.c points it at
   the connection whose handshake step is running (a thread-local, set by the
   handshake worker). */
int tls_conn_export_keys(void *p_expkey, const unsigned char *ms, const unsigned char *kb,
                         size_t maclen, size_t keylen, size_t ivlen,
                         const unsigned char client_random[32],
                         const unsigned char server_random[32], mbedtls_tls_prf_types tls_prf_type);

#endif
