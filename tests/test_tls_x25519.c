/*
 * test_tls_x25519.c - Check suite for tls/tls_x25519.c: the ECDHE functions
 * that replace mbed TLS's for X25519 must interoperate with mbed TLS's own
 * client half and agree with mbed TLS's own arithmetic (called through
 * dlsym RTLD_NEXT), pass every other group through to mbed TLS, and refuse a
 * small-order peer point.
 */
#define _GNU_SOURCE
#include <check.h>
#include <dlfcn.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/entropy.h>
#include <stdlib.h>
#include <string.h>

#include "tls_x25519.h"

typedef int (*ecdh_fn)(mbedtls_ecdh_context *, size_t *, unsigned char *, size_t,
                       int (*)(void *, unsigned char *, size_t), void *);

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;

static void setup(void)
{
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    ck_assert_int_eq(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                                           (const unsigned char *)"x25519", 6),
                     0);
}

static void teardown(void)
{
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
}

/* One ECDHE exchange: the server half through the functions under test, the
   client half through mbed TLS (read_params, make_public). Returns the
   server's secret in zs, the client's in zc (calc_secret under test) and
   mbed TLS's own client computation in zr. */
static void exchange(mbedtls_ecp_group_id gid, unsigned char *zs, size_t *ls, unsigned char *zc,
                     size_t *lc, unsigned char *zr, size_t *lr)
{
    mbedtls_ecdh_context srv, cli;
    mbedtls_ecdh_init(&srv);
    mbedtls_ecdh_init(&cli);
    unsigned char params[256], pub[256];
    size_t plen = 0, publen = 0;
    ck_assert_int_eq(mbedtls_ecdh_setup(&srv, gid), 0);
    ck_assert_int_eq(mbedtls_ecdh_make_params(&srv, &plen, params, sizeof(params),
                                              mbedtls_ctr_drbg_random, &drbg),
                     0);
    const unsigned char *p = params;
    ck_assert_int_eq(mbedtls_ecdh_read_params(&cli, &p, params + plen), 0);
    ck_assert_ptr_eq(p, params + plen);
    ck_assert_int_eq(
        mbedtls_ecdh_make_public(&cli, &publen, pub, sizeof(pub), mbedtls_ctr_drbg_random, &drbg),
        0);
    ck_assert_int_eq(mbedtls_ecdh_read_public(&srv, pub, publen), 0);
    ck_assert_int_eq(mbedtls_ecdh_calc_secret(&srv, ls, zs, 66, mbedtls_ctr_drbg_random, &drbg), 0);
    ck_assert_int_eq(mbedtls_ecdh_calc_secret(&cli, lc, zc, 66, mbedtls_ctr_drbg_random, &drbg), 0);
    ecdh_fn real = (ecdh_fn)dlsym(RTLD_NEXT, "mbedtls_ecdh_calc_secret");
    ck_assert_ptr_nonnull(real);
    ck_assert_ptr_ne((void *)real, (void *)mbedtls_ecdh_calc_secret);
    ck_assert_int_eq(real(&cli, lr, zr, 66, mbedtls_ctr_drbg_random, &drbg), 0);
    mbedtls_ecdh_free(&srv);
    mbedtls_ecdh_free(&cli);
}

START_TEST(x25519_agrees_with_mbedtls)
{
    for (int i = 0; i < 20; i++) {
        unsigned char zs[66], zc[66], zr[66];
        size_t ls = 0, lc = 0, lr = 0;
        uint64_t ops = tls_x25519_ops();
        exchange(MBEDTLS_ECP_DP_CURVE25519, zs, &ls, zc, &lc, zr, &lr);
        /* make_params and two calc_secrets ran here, not in mbed TLS */
        ck_assert_uint_eq(tls_x25519_ops() - ops, 3);
        ck_assert_uint_eq(ls, 32);
        ck_assert_uint_eq(lc, 32);
        ck_assert_uint_eq(lr, 32);
        ck_assert_mem_eq(zs, zc, 32);
        ck_assert_mem_eq(zs, zr, 32);
    }
}
END_TEST

START_TEST(other_groups_are_mbedtls)
{
    unsigned char zs[66], zc[66], zr[66];
    size_t ls = 0, lc = 0, lr = 0;
    uint64_t ops = tls_x25519_ops();
    exchange(MBEDTLS_ECP_DP_SECP256R1, zs, &ls, zc, &lc, zr, &lr);
    ck_assert_uint_eq(tls_x25519_ops(), ops);
    ck_assert_uint_eq(ls, 32);
    ck_assert_mem_eq(zs, zc, 32);
    ck_assert_mem_eq(zs, zr, 32);
}
END_TEST

START_TEST(small_order_point_refused)
{
    mbedtls_ecdh_context srv;
    mbedtls_ecdh_init(&srv);
    unsigned char params[128], z[66];
    size_t plen = 0, zl = 0;
    ck_assert_int_eq(mbedtls_ecdh_setup(&srv, MBEDTLS_ECP_DP_CURVE25519), 0);
    ck_assert_int_eq(mbedtls_ecdh_make_params(&srv, &plen, params, sizeof(params),
                                              mbedtls_ctr_drbg_random, &drbg),
                     0);
    unsigned char zero[33] = {32}; /* u = 0: every scalar gives an all-zero secret */
    ck_assert_int_eq(mbedtls_ecdh_read_public(&srv, zero, sizeof(zero)), 0);
    ck_assert_int_ne(
        mbedtls_ecdh_calc_secret(&srv, &zl, z, sizeof(z), mbedtls_ctr_drbg_random, &drbg), 0);
    mbedtls_ecdh_free(&srv);
}
END_TEST

static Suite *x25519_suite(void)
{
    Suite *s = suite_create("x25519");
    TCase *tc = tcase_create("ecdhe");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, x25519_agrees_with_mbedtls);
    tcase_add_test(tc, other_groups_are_mbedtls);
    tcase_add_test(tc, small_order_point_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(x25519_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
