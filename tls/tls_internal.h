/* tls_internal.h - shared between tls_server.c and tls_conn.c only. */
#ifndef ANIC_TLS_INTERNAL_H
#define ANIC_TLS_INTERNAL_H

#include "tls_server.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <stdbool.h>
#include <stdio.h>

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
};

/* mbed TLS 2.28 only has a per-config export hook: tls_conn.c points it at
   the connection whose handshake step is running (all under the core lock). */
int tls_conn_export_keys(void *p_expkey, const unsigned char *ms, const unsigned char *kb,
                         size_t maclen, size_t keylen, size_t ivlen,
                         const unsigned char client_random[32],
                         const unsigned char server_random[32], mbedtls_tls_prf_types tls_prf_type);

#endif
