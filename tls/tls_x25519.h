/* tls_x25519.h - mbed TLS's X25519 ECDHE computed by libcrypto (see
   tls_x25519.c): the file defines mbedtls_ecdh_make_params and
   mbedtls_ecdh_calc_secret, which take the place of mbed TLS's own. */
#ifndef ANIC_TLS_X25519_H
#define ANIC_TLS_X25519_H

#include <stdint.h>

/* X25519 key generations plus shared secrets computed here so far (all
   threads). Also what makes the linker take tls_x25519.o from the archive:
   tls_server_new() calls it. */
uint64_t tls_x25519_ops(void);

#endif
