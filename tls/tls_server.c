/*
 * tls_server.c - the server-wide mbed TLS configuration: RNG, certificate
 * (generated at start: a CA and a leaf for the host's address, or loaded from
 * PEM files), TLS 1.2 with ECDHE + AES-GCM only, and the export-keys hook that
 * hands each connection its keys and writes the NSS key log.
 */
#define _GNU_SOURCE /* mkostemp */
#include "tls_server.h"
#include "tls_internal.h"
#include "tls_record.h"
#include "tls_x25519.h"

#include <errno.h>
#include <fcntl.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Only AEAD suites with ECDHE: the record layer we offload is AES-GCM. */
static const int gcm_suites[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                                 MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                                 MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                                 MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, 0};

/* ECDHE groups, fastest first. mbed TLS 2.28 takes the first group of its
   own list that the client offers, and its default list starts with
   secp521r1: a handshake then costs several times an X25519 one (the
   handshake rate halves). P-256 stays: the leaf key is on it. */
static const mbedtls_ecp_group_id ecdhe_groups[] = {
    MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_SECP521R1, MBEDTLS_ECP_DP_NONE};

static void mbed_err(char *err, size_t errlen, const char *what, int ret)
{
    char buf[128];
    mbedtls_strerror(ret, buf, sizeof(buf));
    snprintf(err, errlen, "%s: %s (-0x%04x)", what, buf, (unsigned)-ret);
}

/* Put len bytes at path without writing through whatever is there: a new
   file in the same directory (mkostemp: O_CREAT | O_EXCL, which never
   follows a link), written and fsync'd, then rename()d over path. rename
   replaces a symlink or file at path instead of following it. */
static int write_file_replace(const char *path, const char *data, size_t len, mode_t mode,
                              char *err, size_t errlen)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof(".tmp-XXXXXX"));
    if (!tmp) {
        snprintf(err, errlen, "write %s: out of memory", path);
        return -1;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp-XXXXXX", sizeof(".tmp-XXXXXX"));
    const char *what = "create a temporary file next to";
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd >= 0) {
        what = "write";
        int ok = fchmod(fd, mode) == 0;
        for (size_t off = 0; ok && off < len;) {
            ssize_t w = write(fd, data + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            ok = w > 0;
            off += ok ? (size_t)w : 0;
        }
        ok = ok && fsync(fd) == 0;
        int saved = errno;
        ok = close(fd) == 0 && ok;
        if (ok) {
            what = "rename a temporary file over";
            ok = rename(tmp, path) == 0;
        } else {
            errno = saved;
        }
        if (ok) {
            free(tmp);
            return 0;
        }
        saved = errno;
        unlink(tmp);
        errno = saved;
    }
    snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
    free(tmp);
    return -1;
}

/* The NSS key log: appended to, created 0600, never through a symlink
   (O_NOFOLLOW). An existing file must be a regular file of ours with a
   single link (not a hard link to someone else's file); if its mode is
   wider than 0600 it is narrowed to 0600. */
static FILE *keylog_open(const char *path, char *err, size_t errlen)
{
    /* O_NONBLOCK: opening a FIFO must not hang; cleared below. */
    int fd = open(
        path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == ELOOP)
            snprintf(err, errlen, "key log %s is a symbolic link: refusing to follow it", path);
        else if (errno == ENXIO) /* a FIFO without reader, a socket */
            snprintf(err, errlen, "key log %s: not a regular file", path);
        else
            snprintf(err, errlen, "open key log %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    const char *bad = NULL;
    if (fstat(fd, &st) != 0)
        bad = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        bad = "not a regular file";
    else if (st.st_uid != geteuid())
        bad = "owned by another user";
    else if (st.st_nlink != 1)
        bad = "has more than one hard link";
    else if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) != 0)
        bad = "cannot narrow its mode to 0600";
    else if (fcntl(fd, F_SETFL, O_WRONLY | O_APPEND) != 0)
        bad = strerror(errno);
    FILE *f = bad ? NULL : fdopen(fd, "a");
    if (!f) {
        snprintf(err, errlen, "key log %s: %s", path, bad ? bad : strerror(errno));
        close(fd);
    }
    return f;
}

static int gen_ec_key(struct tls_server *s, mbedtls_pk_context *pk)
{
    mbedtls_pk_init(pk);
    int ret = mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (ret == 0)
        ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk),
                                  mbedtls_ctr_drbg_random, &s->drbg);
    return ret;
}

/* subjectAltName = IP:addr, DNS:localhost (DER built by hand: mbed TLS 2.28
   has no SAN writer). */
static int set_san(mbedtls_x509write_cert *crt, uint32_t ip_be)
{
    static const char dns[] = "localhost";
    unsigned char der[2 + 6 + 2 + sizeof(dns) - 1];
    size_t n = 0;
    der[n++] = 0x30; /* SEQUENCE */
    der[n++] = (unsigned char)(sizeof(der) - 2);
    der[n++] = 0x87; /* [7] iPAddress */
    der[n++] = 4;
    memcpy(der + n, &ip_be, 4);
    n += 4;
    der[n++] = 0x82; /* [2] dNSName */
    der[n++] = (unsigned char)(sizeof(dns) - 1);
    memcpy(der + n, dns, sizeof(dns) - 1);
    n += sizeof(dns) - 1;
    return mbedtls_x509write_crt_set_extension(crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
                                               MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0,
                                               der, n);
}

static int write_crt(struct tls_server *s, mbedtls_pk_context *subject, mbedtls_pk_context *issuer,
                     const char *subject_name, const char *issuer_name, bool ca, uint32_t ip_be,
                     int serial, unsigned char *pem, size_t pem_len)
{
    mbedtls_x509write_cert crt;
    mbedtls_mpi sn;
    mbedtls_x509write_crt_init(&crt);
    mbedtls_mpi_init(&sn);
    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, subject);
    mbedtls_x509write_crt_set_issuer_key(&crt, issuer);
    int ret = mbedtls_mpi_lset(&sn, serial);
    if (!ret)
        ret = mbedtls_x509write_crt_set_serial(&crt, &sn);
    if (!ret)
        ret = mbedtls_x509write_crt_set_subject_name(&crt, subject_name);
    if (!ret)
        ret = mbedtls_x509write_crt_set_issuer_name(&crt, issuer_name);
    if (!ret)
        ret = mbedtls_x509write_crt_set_validity(&crt, "20200101000000", "20491231235959");
    if (!ret)
        ret = mbedtls_x509write_crt_set_basic_constraints(&crt, ca ? 1 : 0, ca ? 0 : -1);
    if (!ret)
        ret = mbedtls_x509write_crt_set_key_usage(
            &crt, ca ? (MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN)
                     : MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
    if (!ret)
        ret = mbedtls_x509write_crt_set_subject_key_identifier(&crt);
    if (!ret)
        ret = mbedtls_x509write_crt_set_authority_key_identifier(&crt);
    if (!ret && !ca)
        ret = set_san(&crt, ip_be);
    if (!ret)
        ret = mbedtls_x509write_crt_pem(&crt, pem, pem_len, mbedtls_ctr_drbg_random, &s->drbg);
    mbedtls_mpi_free(&sn);
    mbedtls_x509write_crt_free(&crt);
    return ret;
}

/* Generate CA + leaf, load the leaf chain, write the CA PEM to ca_out. */
static int gen_certs(struct tls_server *s, const struct tls_server_cfg *cfg, char *err,
                     size_t errlen)
{
    mbedtls_pk_context ca_key;
    unsigned char ca_pem[4096], leaf_pem[4096];
    int ret = gen_ec_key(s, &ca_key);
    if (!ret)
        ret = gen_ec_key(s, &s->key);
    if (!ret)
        ret = write_crt(s, &ca_key, &ca_key, "CN=anic test CA,O=anic", "CN=anic test CA,O=anic",
                        true, 0, 1, ca_pem, sizeof(ca_pem));
    if (!ret)
        ret = write_crt(s, &s->key, &ca_key, "CN=anic,O=anic", "CN=anic test CA,O=anic", false,
                        cfg->server_ip, 2, leaf_pem, sizeof(leaf_pem));
    mbedtls_pk_free(&ca_key);
    if (ret) {
        mbed_err(err, errlen, "generate certificate", ret);
        return -1;
    }
    ret = mbedtls_x509_crt_parse(&s->chain, leaf_pem, strlen((char *)leaf_pem) + 1);
    if (ret) {
        mbed_err(err, errlen, "parse generated certificate", ret);
        return -1;
    }
    /* The CA is public: 0644, so that clients of any user can use it. */
    return write_file_replace(cfg->ca_out_path, (const char *)ca_pem, strlen((char *)ca_pem), 0644,
                              err, errlen);
}

static int load_certs(struct tls_server *s, const struct tls_server_cfg *cfg, char *err,
                      size_t errlen)
{
    int ret = mbedtls_x509_crt_parse_file(&s->chain, cfg->cert_path);
    if (ret) {
        mbed_err(err, errlen, cfg->cert_path, ret);
        return -1;
    }
    mbedtls_pk_init(&s->key);
    ret = mbedtls_pk_parse_keyfile(&s->key, cfg->key_path, NULL);
    if (ret) {
        mbed_err(err, errlen, cfg->key_path, ret);
        return -1;
    }
    return 0;
}

/* An EC server key as an MBEDTLS_PK_ECDSA context. mbed TLS 2.28 signs with
   an MBEDTLS_PK_ECKEY context (what the PEM parser and key generation give)
   through a temporary ECDSA context whose group is a fresh copy
   (mbedtls_ecdsa_from_keypair): the fixed-point comb table of the generator
   is rebuilt at every signature and thrown away, doubling the cost of the
   handshake's ECDSA P-256 signature (0.67 against 0.33 ms measured here). A
   PK_ECDSA context signs with its own group, which keeps the table built by
   warm_key(). Other keys (RSA) stay as they are. */
static int key_to_ecdsa(struct tls_server *s)
{
    if (mbedtls_pk_get_type(&s->key) != MBEDTLS_PK_ECKEY)
        return 0;
    mbedtls_pk_context k;
    mbedtls_pk_init(&k);
    int ret = mbedtls_pk_setup(&k, mbedtls_pk_info_from_type(MBEDTLS_PK_ECDSA));
    if (ret == 0)
        ret = mbedtls_ecdsa_from_keypair(mbedtls_pk_ec(k), mbedtls_pk_ec(s->key));
    if (ret) {
        mbedtls_pk_free(&k);
        return ret;
    }
    mbedtls_pk_free(&s->key);
    s->key = k; /* the context owns heap memory only through pointers: a move */
    return 0;
}

/* One signature with the server key before any handshake worker runs: an
   EC key's group builds its fixed-point comb table lazily, at the first
   signature, and writes it into the shared key. Built here, once, it is only
   read afterwards (workers sign concurrently), and the first handshake does
   not pay for it. */
static int warm_key(struct tls_server *s)
{
    unsigned char hash[32] = {0}, sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    size_t sig_len = 0;
    return mbedtls_pk_sign(&s->key, MBEDTLS_MD_SHA256, hash, sizeof(hash), sig, &sig_len,
                           mbedtls_ctr_drbg_random, &s->drbg);
}

struct tls_server *tls_server_new(const struct tls_server_cfg *cfg, char *err, size_t errlen)
{
    struct tls_server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (cfg->record_size > TLS_MAX_PLAINTEXT) {
        snprintf(err, errlen, "record size %u: at most %u plaintext bytes", cfg->record_size,
                 TLS_MAX_PLAINTEXT);
        free(s);
        return NULL;
    }
    if (cfg->handshake_workers > TLS_HS_WORKERS_MAX) {
        snprintf(err, errlen, "handshake workers %u: at most %u", cfg->handshake_workers,
                 TLS_HS_WORKERS_MAX);
        free(s);
        return NULL;
    }
    /* X25519 by libcrypto (tls_x25519.c): the call links that file in, so
       its ECDH definitions replace mbed TLS's for the whole process. */
    (void)tls_x25519_ops();
    s->record_size = cfg->record_size ? cfg->record_size : TLS_MAX_PLAINTEXT;
    s->hs_workers = cfg->handshake_workers ? cfg->handshake_workers : 2;
    s->hs_queue_cap = cfg->handshake_queue ? cfg->handshake_queue : 4096;
    s->hs_queue_ms = cfg->handshake_queue_ms;
    mbedtls_entropy_init(&s->entropy);
    mbedtls_ctr_drbg_init(&s->drbg);
    mbedtls_x509_crt_init(&s->chain);
    mbedtls_pk_init(&s->key);
    mbedtls_ssl_config_init(&s->conf);
    s->initialised = true;
    static const unsigned char pers[] = "anic-tls-server";
    int ret =
        mbedtls_ctr_drbg_seed(&s->drbg, mbedtls_entropy_func, &s->entropy, pers, sizeof(pers) - 1);
    if (ret) {
        mbed_err(err, errlen, "seed RNG", ret);
        goto fail;
    }
    if (cfg->cert_path && cfg->key_path) {
        if (load_certs(s, cfg, err, errlen) < 0)
            goto fail;
    } else {
        mbedtls_pk_free(&s->key);
        if (gen_certs(s, cfg, err, errlen) < 0)
            goto fail;
    }
    ret = key_to_ecdsa(s);
    if (ret) {
        mbed_err(err, errlen, "server key as ECDSA", ret);
        goto fail;
    }
    ret = warm_key(s);
    if (ret) {
        mbed_err(err, errlen, "sign with the server key", ret);
        goto fail;
    }
    ret = mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret) {
        mbed_err(err, errlen, "TLS config", ret);
        goto fail;
    }
    mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &s->drbg);
    mbedtls_ssl_conf_min_version(&s->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&s->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&s->conf, gcm_suites);
    mbedtls_ssl_conf_curves(&s->conf, ecdhe_groups);
#ifdef MBEDTLS_SSL_RENEGOTIATION
    /* Renegotiation would re-key under the offload's feet: refuse it. */
    mbedtls_ssl_conf_renegotiation(&s->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
    mbedtls_ssl_conf_export_keys_ext_cb(&s->conf, tls_conn_export_keys, s);
    ret = mbedtls_ssl_conf_own_cert(&s->conf, &s->chain, &s->key);
    if (ret) {
        mbed_err(err, errlen, "certificate/key", ret);
        goto fail;
    }
    if (cfg->keylog_path) {
        s->keylog = keylog_open(cfg->keylog_path, err, errlen);
        if (!s->keylog)
            goto fail;
    }
    return s;
fail:
    tls_server_free(s);
    return NULL;
}

void tls_server_free(struct tls_server *s)
{
    if (!s)
        return;
    if (!tls_conn_hs_stop(s))
        return; /* a handshake callback may still run: leak rather than free under it */
    if (s->keylog)
        fclose(s->keylog);
    if (s->initialised) {
        mbedtls_ssl_config_free(&s->conf);
        mbedtls_pk_free(&s->key);
        mbedtls_x509_crt_free(&s->chain);
        mbedtls_ctr_drbg_free(&s->drbg);
        mbedtls_entropy_free(&s->entropy);
    }
    free(s);
}

void tls_server_set_offload(struct tls_server *s, struct tls_offload *o)
{
    s->offload = o;
}

const struct tls_counters *tls_server_counters(const struct tls_server *s, enum tls_mode mode)
{
    return &s->counters[mode];
}
