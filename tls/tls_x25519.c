/*
 * tls_x25519.c - the X25519 arithmetic of mbed TLS's ECDHE done by libcrypto.
 *
 * mbed TLS 2.28 computes X25519 with its generic bignum code: 1.06 ms of the
 * 1.7 ms of public-key work a full handshake costs the server here (key
 * generation and shared secret, 0.53 ms each), against ~0.05 ms each for
 * OpenSSL's libcrypto, which anic links anyway (AES-GCM). Debian's mbed TLS
 * offers no hook for it (MBEDTLS_ECDH_*_ALT are build-time options of the
 * library), but libmbedtls calls the two ECDH functions below through its
 * PLT, so the definitions here take their place for every caller in the
 * process. For the X25519 group they fill the same context fields in the
 * same encodings mbed TLS would (the private scalar in d, our u-coordinate in
 * Q.X, the shared secret in z, little-endian on the wire); for every other
 * group they call mbed TLS's own functions (dlsym RTLD_NEXT). The TLS
 * protocol, the transcript and the key schedule stay mbed TLS's.
 * Tested against mbed TLS's own X25519 by tests/test_tls_x25519.c.
 */
#define _GNU_SOURCE /* RTLD_NEXT */
#include "tls_x25519.h"

#include <dlfcn.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#define X25519_LEN 32

typedef int (*ecdh_fn)(mbedtls_ecdh_context *, size_t *, unsigned char *, size_t,
                       int (*)(void *, unsigned char *, size_t), void *);

static _Atomic(uint64_t) x25519_ops; /* handshake halves done here */

uint64_t tls_x25519_ops(void)
{
    return atomic_load_explicit(&x25519_ops, memory_order_relaxed);
}

/* mbed TLS's own function `name` (the next definition after this one). */
static ecdh_fn real_fn(const char *name, _Atomic(ecdh_fn) *cache)
{
    ecdh_fn f = atomic_load_explicit(cache, memory_order_acquire);
    if (!f) {
        f = (ecdh_fn)dlsym(RTLD_NEXT, name);
        atomic_store_explicit(cache, f, memory_order_release);
    }
    return f;
}

static bool is_x25519(const mbedtls_ecdh_context *ctx)
{
    return ctx->grp.id == MBEDTLS_ECP_DP_CURVE25519;
}

/* ServerKeyExchange's ECDH parameters: a fresh X25519 key pair (libcrypto's
   RNG), written as mbed TLS's ecdh_make_params_internal does: the group,
   then the point (one length byte, u little-endian). */
int mbedtls_ecdh_make_params(mbedtls_ecdh_context *ctx, size_t *olen, unsigned char *buf,
                             size_t blen, int (*f_rng)(void *, unsigned char *, size_t),
                             void *p_rng)
{
    static _Atomic(ecdh_fn) real;
    if (!is_x25519(ctx)) {
        ecdh_fn f = real_fn("mbedtls_ecdh_make_params", &real);
        return f ? f(ctx, olen, buf, blen, f_rng, p_rng) : MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE;
    }
    unsigned char priv[X25519_LEN], pub[X25519_LEN];
    size_t priv_len = sizeof(priv), pub_len = sizeof(pub);
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
    int ret = MBEDTLS_ERR_ECP_RANDOM_FAILED;
    if (kc && EVP_PKEY_keygen_init(kc) == 1 && EVP_PKEY_keygen(kc, &key) == 1 &&
        EVP_PKEY_get_raw_private_key(key, priv, &priv_len) == 1 &&
        EVP_PKEY_get_raw_public_key(key, pub, &pub_len) == 1 && priv_len == X25519_LEN &&
        pub_len == X25519_LEN)
        ret = 0;
    EVP_PKEY_free(key);
    EVP_PKEY_CTX_free(kc);
    if (ret == 0)
        ret = mbedtls_mpi_read_binary_le(&ctx->d, priv, sizeof(priv));
    if (ret == 0)
        ret = mbedtls_mpi_read_binary_le(&ctx->Q.X, pub, sizeof(pub));
    if (ret == 0)
        ret = mbedtls_mpi_lset(&ctx->Q.Z, 1);
    OPENSSL_cleanse(priv, sizeof(priv));
    size_t grp_len = 0, pt_len = 0;
    if (ret == 0)
        ret = mbedtls_ecp_tls_write_group(&ctx->grp, &grp_len, buf, blen);
    if (ret == 0)
        ret = mbedtls_ecp_tls_write_point(&ctx->grp, &ctx->Q, ctx->point_format, &pt_len,
                                          buf + grp_len, blen - grp_len);
    if (ret == 0) {
        *olen = grp_len + pt_len;
        atomic_fetch_add_explicit(&x25519_ops, 1, memory_order_relaxed);
    }
    return ret;
}

/* The premaster secret from our d and the peer's Qp (read and checked by
   mbedtls_ecdh_read_public), little-endian as mbed TLS writes it. libcrypto
   refuses an all-zero result (a small-order peer point), as mbed TLS does. */
int mbedtls_ecdh_calc_secret(mbedtls_ecdh_context *ctx, size_t *olen, unsigned char *buf,
                             size_t blen, int (*f_rng)(void *, unsigned char *, size_t),
                             void *p_rng)
{
    static _Atomic(ecdh_fn) real;
    if (!is_x25519(ctx)) {
        ecdh_fn f = real_fn("mbedtls_ecdh_calc_secret", &real);
        return f ? f(ctx, olen, buf, blen, f_rng, p_rng) : MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE;
    }
    if (blen < X25519_LEN)
        return MBEDTLS_ERR_ECP_BAD_INPUT_DATA;
    unsigned char priv[X25519_LEN], peer[X25519_LEN], z[X25519_LEN];
    size_t z_len = sizeof(z);
    int ret = mbedtls_mpi_write_binary_le(&ctx->d, priv, sizeof(priv));
    if (ret == 0)
        ret = mbedtls_mpi_write_binary_le(&ctx->Qp.X, peer, sizeof(peer));
    EVP_PKEY *mine = NULL, *theirs = NULL;
    EVP_PKEY_CTX *dc = NULL;
    if (ret == 0) {
        mine = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, sizeof(priv));
        theirs = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, sizeof(peer));
        dc = mine && theirs ? EVP_PKEY_CTX_new(mine, NULL) : NULL;
        ret = dc && EVP_PKEY_derive_init(dc) == 1 && EVP_PKEY_derive_set_peer(dc, theirs) == 1 &&
                      EVP_PKEY_derive(dc, z, &z_len) == 1 && z_len == X25519_LEN
                  ? 0
                  : MBEDTLS_ERR_ECP_BAD_INPUT_DATA;
    }
    EVP_PKEY_CTX_free(dc);
    EVP_PKEY_free(mine);
    EVP_PKEY_free(theirs);
    OPENSSL_cleanse(priv, sizeof(priv));
    if (ret == 0)
        ret = mbedtls_mpi_read_binary_le(&ctx->z, z, sizeof(z));
    if (ret == 0) {
        memcpy(buf, z, X25519_LEN);
        *olen = X25519_LEN;
        atomic_fetch_add_explicit(&x25519_ops, 1, memory_order_relaxed);
    }
    OPENSSL_cleanse(z, sizeof(z));
    return ret;
}
