/*
 * test_record.c — Check suite for tls/tls_record.c.
 *
 * The independent reference is mbed TLS: its GCM seals and opens records
 * (mbedtls_gcm_crypt_and_tag / mbedtls_gcm_auth_decrypt), and the NIC's
 * decryption is simulated with the GCM counter-mode keystream computed
 * from mbed TLS AES-ECB on counter blocks. Random choices come from a
 * seeded generator; the seed is printed and can be replayed with
 * ANIC_TEST_SEED=<seed>.
 */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/aes.h>
#include <mbedtls/gcm.h>

#include "test_rng.h"
#include "tls_record.h"

/* ---- keys and the mbed TLS reference ----------------------------------- */

struct ref_key {
    uint8_t key[32];
    size_t key_len;
    uint8_t salt[TLS_SALT_LEN];
};

static struct ref_key make_key(size_t key_len, uint8_t base)
{
    struct ref_key k = {.key_len = key_len};
    for (size_t i = 0; i < key_len; i++)
        k.key[i] = (uint8_t)(base + 7 * i);
    for (size_t i = 0; i < TLS_SALT_LEN; i++)
        k.salt[i] = (uint8_t)(base ^ (0xa5 + i));
    return k;
}

static struct tls_aead *aead_for(const struct ref_key *k)
{
    struct tls_aead *a = tls_aead_new(k->key, k->key_len, k->salt);
    ck_assert_ptr_nonnull(a);
    return a;
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void ref_aad(uint8_t aad[13], uint64_t seq, uint8_t type, size_t len)
{
    be64(aad, seq);
    aad[8] = type;
    aad[9] = 3;
    aad[10] = 3;
    aad[11] = (uint8_t)(len >> 8);
    aad[12] = (uint8_t)len;
}

/* Build a record with mbed TLS. Returns its length. */
static size_t ref_seal(const struct ref_key *k, uint64_t seq, uint8_t type, const uint8_t *pt,
                       size_t len, uint8_t *out)
{
    mbedtls_gcm_context gcm;
    uint8_t iv[12], aad[13];
    size_t frag = 8 + len + 16;

    out[0] = type;
    out[1] = 3;
    out[2] = 3;
    out[3] = (uint8_t)(frag >> 8);
    out[4] = (uint8_t)frag;
    be64(out + 5, seq);
    memcpy(iv, k->salt, 4);
    memcpy(iv + 4, out + 5, 8);
    ref_aad(aad, seq, type, len);

    mbedtls_gcm_init(&gcm);
    ck_assert_int_eq(mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, k->key, k->key_len * 8), 0);
    ck_assert_int_eq(mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, len, iv, 12, aad, 13, pt,
                                               out + 13, 16, out + 13 + len),
                     0);
    mbedtls_gcm_free(&gcm);
    return 13 + len + 16;
}

/* Open a record with mbed TLS into out. Returns the plaintext length or -1. */
static long ref_open(const struct ref_key *k, uint64_t seq, const uint8_t *rec, size_t rec_len,
                     uint8_t *out)
{
    mbedtls_gcm_context gcm;
    uint8_t iv[12], aad[13];

    ck_assert_uint_ge(rec_len, 29);
    size_t len = rec_len - 29;
    ck_assert_uint_eq(((size_t)rec[3] << 8 | rec[4]) + 5, rec_len);
    memcpy(iv, k->salt, 4);
    memcpy(iv + 4, rec + 5, 8);
    ref_aad(aad, seq, rec[0], len);

    mbedtls_gcm_init(&gcm);
    ck_assert_int_eq(mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, k->key, k->key_len * 8), 0);
    int rc =
        mbedtls_gcm_auth_decrypt(&gcm, len, iv, 12, aad, 13, rec + 13 + len, 16, rec + 13, out);
    mbedtls_gcm_free(&gcm);
    return rc == 0 ? (long)len : -1;
}

/* XOR the GCM payload keystream over buf, which holds payload bytes
 * [off, off + len) of the record with this explicit nonce: block k/16 of the
 * payload uses counter block salt || nonce || be32(2 + k/16). */
static void ref_xor_keystream(const struct ref_key *k, const uint8_t nonce[8], size_t off,
                              uint8_t *buf, size_t len)
{
    mbedtls_aes_context aes;
    uint8_t ctr[16], ks[16];
    size_t cur_block = SIZE_MAX;

    mbedtls_aes_init(&aes);
    ck_assert_int_eq(mbedtls_aes_setkey_enc(&aes, k->key, k->key_len * 8), 0);
    memcpy(ctr, k->salt, 4);
    memcpy(ctr + 4, nonce, 8);
    int rc = 0;
    for (size_t i = 0; i < len; i++) {
        size_t pos = off + i, block = pos / 16;
        if (block != cur_block) {
            uint32_t c = (uint32_t)(2 + block);
            ctr[12] = (uint8_t)(c >> 24);
            ctr[13] = (uint8_t)(c >> 16);
            ctr[14] = (uint8_t)(c >> 8);
            ctr[15] = (uint8_t)c;
            rc |= mbedtls_aes_crypt_ecb(&aes, MBEDTLS_AES_ENCRYPT, ctr, ks);
            cur_block = block;
        }
        buf[i] ^= ks[pos % 16];
    }
    mbedtls_aes_free(&aes);
    ck_assert_int_eq(rc, 0); /* one check: every Check assertion costs a pipe write */
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static const uint8_t k_types[] = {TLS_CT_APPDATA, TLS_CT_HANDSHAKE, TLS_CT_ALERT, TLS_CT_CCS};
static const uint64_t k_seqs[] = {0, 1, 0x0123456789abcdefull, UINT64_MAX};

/* Plaintext sizes of the sweep: all of 0..64, then a prime stride (so every
 * residue mod 16 shows up), then 16383 and 16384. */
static size_t sweep_sizes(size_t *out)
{
    size_t n = 0;
    for (size_t s = 0; s <= 64; s++)
        out[n++] = s;
    for (size_t s = 65; s < TLS_MAX_PLAINTEXT - 1; s += 251)
        out[n++] = s;
    out[n++] = TLS_MAX_PLAINTEXT - 1;
    out[n++] = TLS_MAX_PLAINTEXT;
    return n;
}

#define SWEEP_MAX 200

/* ---- whole records ---------------------------------------------------------- */

START_TEST(test_aead_rejects_bad_key_len)
{
    uint8_t key[32] = {0}, salt[4] = {0};
    ck_assert_ptr_null(tls_aead_new(key, 24, salt));
    ck_assert_ptr_null(tls_aead_new(key, 0, salt));
    tls_aead_free(NULL);
}
END_TEST

START_TEST(test_frame_plain_layout)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    static uint8_t pt[TLS_MAX_PLAINTEXT], out[TLS_MAX_RECORD_LEN + 1], sealed[TLS_MAX_RECORD_LEN];
    const size_t sizes[] = {0, 1, 100, TLS_MAX_PLAINTEXT};
    struct ref_key k = make_key(16, 3);
    struct tls_aead *a = aead_for(&k);

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i];
        uint64_t seq = 0x1122334455667788ull + i;
        tu_rng_fill(&r, pt, len);
        memset(out, 0xee, sizeof(out));
        ck_assert_uint_eq(tls_record_frame_plain(seq, TLS_CT_APPDATA, pt, len, out),
                          len + TLS_RECORD_OVERHEAD);
        size_t frag = 8 + len + 16;
        const uint8_t hdr[13] = {
            23,   3,    3,   (uint8_t)(frag >> 8), (uint8_t)frag, 0x11, 0x22, 0x33, 0x44, 0x55,
            0x66, 0x77, 0x88};
        ck_assert_mem_eq(out, hdr, 12);
        ck_assert_uint_eq(out[12], (uint8_t)(0x88 + i));
        if (len)
            ck_assert_mem_eq(out + 13, pt, len);
        ck_assert(all_zero(out + 13 + len, 16));
        ck_assert_uint_eq(out[13 + len + 16], 0xee); /* nothing written past the end */

        /* What the NIC produces from it (GCM over the payload, tag into the
         * blank) is exactly what tls_record_seal produces. */
        size_t rl = ref_seal(&k, seq, TLS_CT_APPDATA, out + 13, len, out);
        ck_assert_uint_eq(tls_record_seal(a, seq, TLS_CT_APPDATA, pt, len, sealed), rl);
        ck_assert_mem_eq(out, sealed, rl);

        /* In place: pt already at its slot. */
        memcpy(out + 13, pt, len);
        ck_assert_uint_eq(tls_record_frame_plain(seq, TLS_CT_ALERT, out + 13, len, out),
                          len + TLS_RECORD_OVERHEAD);
        ck_assert_uint_eq(out[0], TLS_CT_ALERT);
        if (len)
            ck_assert_mem_eq(out + 13, pt, len);
    }
    tls_aead_free(a);
}
END_TEST

START_TEST(test_parse_header)
{
    struct {
        uint8_t h[5];
        long want;
    } cases[] = {
        {{23, 3, 3, 0, 24}, 29},
        {{20, 3, 3, 0, 25}, 30},
        {{21, 3, 3, 0, 40}, 45},
        {{22, 3, 3, 0x40, 0x18}, 5 + 16384 + 24},
        {{23, 3, 3, 0, 23}, -1}, /* too short for nonce + tag */
        {{23, 3, 3, 0, 0}, -1},
        {{23, 3, 3, 0x40, 0x19}, -1}, /* plaintext would exceed 2^14 */
        {{23, 3, 3, 0x41, 0x00}, -1}, /* 2^14 + 256 */
        {{23, 3, 3, 0x41, 0x01}, -1}, /* 2^14 + 257 */
        {{23, 3, 3, 0xff, 0xff}, -1},
        {{19, 3, 3, 0, 40}, -1}, /* unknown content types */
        {{24, 3, 3, 0, 40}, -1},
        {{0, 3, 3, 0, 40}, -1},
        {{23, 3, 1, 0, 40}, -1}, /* TLS 1.0 */
        {{23, 2, 3, 0, 40}, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_int_eq(tls_record_parse_header(cases[i].h), cases[i].want);
}
END_TEST

/* anic seals; the record is byte-identical to mbed TLS's and mbed TLS opens it. */
START_TEST(test_seal_mbedtls_opens)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    static uint8_t pt[TLS_MAX_PLAINTEXT], rec[TLS_MAX_RECORD_LEN], ref[TLS_MAX_RECORD_LEN],
        dec[TLS_MAX_PLAINTEXT];
    size_t sizes[SWEEP_MAX], nsizes = sweep_sizes(sizes);

    for (size_t key_len = 16; key_len <= 32; key_len += 16) {
        struct ref_key k = make_key(key_len, (uint8_t)key_len);
        struct tls_aead *a = aead_for(&k);
        for (size_t i = 0; i < nsizes; i++) {
            for (size_t j = 0; j < sizeof(k_seqs) / sizeof(k_seqs[0]); j++) {
                size_t len = sizes[i];
                uint64_t seq = k_seqs[j];
                uint8_t type = k_types[(i + j) % 4];
                tu_rng_fill(&r, pt, len);
                size_t rl = tls_record_seal(a, seq, type, pt, len, rec);
                ck_assert_uint_eq(rl, len + TLS_RECORD_OVERHEAD);
                ck_assert_uint_eq(rec[0], type);
                ck_assert_uint_eq(ref_seal(&k, seq, type, pt, len, ref), rl);
                ck_assert_mem_eq(rec, ref, rl);
                ck_assert_int_eq(ref_open(&k, seq, rec, rl, dec), (long)len);
                if (len)
                    ck_assert_mem_eq(dec, pt, len);
            }
        }
        tls_aead_free(a);
    }
}
END_TEST

/* mbed TLS seals; anic opens. */
START_TEST(test_mbedtls_seals_anic_opens)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    static uint8_t pt[TLS_MAX_PLAINTEXT], rec[TLS_MAX_RECORD_LEN];
    size_t sizes[SWEEP_MAX], nsizes = sweep_sizes(sizes);

    for (size_t key_len = 16; key_len <= 32; key_len += 16) {
        struct ref_key k = make_key(key_len, (uint8_t)(key_len + 1));
        struct tls_aead *a = aead_for(&k);
        for (size_t i = 0; i < nsizes; i++) {
            for (size_t j = 0; j < sizeof(k_seqs) / sizeof(k_seqs[0]); j++) {
                size_t len = sizes[i];
                uint64_t seq = k_seqs[j];
                uint8_t *out = NULL;
                tu_rng_fill(&r, pt, len);
                size_t rl = ref_seal(&k, seq, k_types[(i + 3 * j) % 4], pt, len, rec);
                ck_assert_int_eq(tls_record_open(a, seq, rec, rl, &out), (long)len);
                ck_assert_ptr_eq(out, rec + TLS_PAYLOAD_OFFSET);
                if (len)
                    ck_assert_mem_eq(out, pt, len);
            }
        }
        tls_aead_free(a);
    }
}
END_TEST

START_TEST(test_seal_in_place)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    static uint8_t pt[TLS_MAX_PLAINTEXT], rec[TLS_MAX_RECORD_LEN], ref[TLS_MAX_RECORD_LEN];
    struct ref_key k = make_key(32, 9);
    struct tls_aead *a = aead_for(&k);
    const size_t sizes[] = {0, 1, 16, 17, 4000, TLS_MAX_PLAINTEXT};

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i];
        tu_rng_fill(&r, pt, len);
        memcpy(rec + TLS_PAYLOAD_OFFSET, pt, len);
        size_t rl = tls_record_seal(a, 42 + i, TLS_CT_APPDATA, rec + TLS_PAYLOAD_OFFSET, len, rec);
        ck_assert_uint_eq(ref_seal(&k, 42 + i, TLS_CT_APPDATA, pt, len, ref), rl);
        ck_assert_mem_eq(rec, ref, rl);
    }
    tls_aead_free(a);
}
END_TEST

/* A record sealed from two spans (staged prefix + the caller's bytes) is the
 * record mbed TLS seals from their concatenation, at every split point kind. */
START_TEST(test_seal2_matches_reference)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    static uint8_t pt[TLS_MAX_PLAINTEXT], rec[TLS_MAX_RECORD_LEN], ref[TLS_MAX_RECORD_LEN];
    struct ref_key k = make_key(16, 3);
    struct tls_aead *a = aead_for(&k);
    const size_t splits[][2] = {{0, 0},  {0, 1},       {1, 0},     {5, 11},    {16, 16},
                                {17, 3}, {320, 16064}, {16383, 1}, {0, 16384}, {16384, 0}};

    for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
        size_t l1 = splits[i][0], l2 = splits[i][1];
        tu_rng_fill(&r, pt, l1 + l2);
        size_t rl = tls_record_seal2(a, 7 + i, TLS_CT_APPDATA, pt, l1, pt + l1, l2, rec);
        ck_assert_uint_eq(ref_seal(&k, 7 + i, TLS_CT_APPDATA, pt, l1 + l2, ref), rl);
        ck_assert_mem_eq(rec, ref, rl);
    }
    tls_aead_free(a);
}
END_TEST

/* Flipping any bit of any byte except the header's length field makes the
 * open fail, and leaves no plaintext behind. */
START_TEST(test_open_tampered_fails)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    static uint8_t pt[1024], good[1024 + TLS_RECORD_OVERHEAD], rec[1024 + TLS_RECORD_OVERHEAD];
    const size_t sizes[] = {0, 1, 15, 16, 17, 64, 1000};

    for (size_t key_len = 16; key_len <= 32; key_len += 16) {
        struct ref_key k = make_key(key_len, 0x40);
        struct tls_aead *a = aead_for(&k);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            size_t len = sizes[i];
            uint64_t seq = 1000 + i;
            tu_rng_fill(&r, pt, len);
            size_t rl = ref_seal(&k, seq, TLS_CT_APPDATA, pt, len, good);
            for (size_t pos = 0; pos < rl; pos++) {
                if (pos == 3 || pos == 4)
                    continue;
                uint8_t *out = NULL;
                memcpy(rec, good, rl);
                rec[pos] ^= (uint8_t)(1u << tu_rng_range(&r, 0, 7));
                ck_assert_msg(tls_record_open(a, seq, rec, rl, &out) == -1,
                              "len %zu: tampered byte %zu accepted", len, pos);
                ck_assert_ptr_null(out);
                if (pos >= TLS_PAYLOAD_OFFSET)
                    ck_assert(all_zero(rec + TLS_PAYLOAD_OFFSET, len));
            }
            /* Wrong sequence number (AAD), wrong length, other key. */
            uint8_t *out = NULL;
            memcpy(rec, good, rl);
            ck_assert_int_eq(tls_record_open(a, seq + 1, rec, rl, &out), -1);
            memcpy(rec, good, rl);
            ck_assert_int_eq(tls_record_open(a, seq, rec, rl - 1, &out), -1);
            ck_assert_int_eq(tls_record_open(a, seq, rec, rl + 1, &out), -1);
            ck_assert_int_eq(tls_record_open(a, seq, rec, 4, &out), -1);
            rec[4] ^= 1;
            ck_assert_int_eq(tls_record_open(a, seq, rec, rl, &out), -1);
            struct ref_key other = make_key(key_len, 0x41);
            struct tls_aead *b = aead_for(&other);
            memcpy(rec, good, rl);
            ck_assert_int_eq(tls_record_open(b, seq, rec, rl, &out), -1);
            tls_aead_free(b);
            /* And the untouched record still opens. */
            memcpy(rec, good, rl);
            ck_assert_int_eq(tls_record_open(a, seq, rec, rl, &out), (long)len);
        }
        tls_aead_free(a);
    }
}
END_TEST

/* xor_keystream equals the keystream built from mbed TLS AES-ECB on the
 * counter blocks, at every offset/length alignment. */
START_TEST(test_xor_keystream_matches_reference)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    static uint8_t buf[TLS_MAX_PLAINTEXT], ref[TLS_MAX_PLAINTEXT];

    for (size_t key_len = 16; key_len <= 32; key_len += 16) {
        struct ref_key k = make_key(key_len, 0x77);
        struct tls_aead *a = aead_for(&k);
        uint8_t nonce[8];
        for (size_t off = 0; off <= 48; off++) {
            for (size_t len = 0; len <= 48; len++) {
                tu_rng_fill(&r, nonce, 8);
                tu_rng_fill(&r, buf, len);
                memcpy(ref, buf, len);
                tls_record_xor_keystream(a, nonce, off, buf, len);
                ref_xor_keystream(&k, nonce, off, ref, len);
                ck_assert_mem_eq(buf, ref, len);
            }
        }
        for (int i = 0; i < 50; i++) {
            size_t off = tu_rng_range(&r, 0, TLS_MAX_PLAINTEXT);
            size_t len = tu_rng_range(&r, 0, TLS_MAX_PLAINTEXT - off);
            tu_rng_fill(&r, nonce, 8);
            tu_rng_fill(&r, buf, len);
            memcpy(ref, buf, len);
            tls_record_xor_keystream(a, nonce, off, buf, len);
            ref_xor_keystream(&k, nonce, off, ref, len);
            ck_assert_mem_eq(buf, ref, len);
        }
        tls_aead_free(a);
    }
}
END_TEST

/* Applied to a range of a sealed record's ciphertext, it yields the plaintext. */
START_TEST(test_xor_keystream_decrypts_record_range)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    static uint8_t pt[TLS_MAX_PLAINTEXT], rec[TLS_MAX_RECORD_LEN], buf[TLS_MAX_PLAINTEXT];
    struct ref_key k = make_key(16, 0x12);
    struct tls_aead *a = aead_for(&k);

    for (int i = 0; i < 200; i++) {
        size_t len = tu_rng_range(&r, 1, i < 100 ? 100 : TLS_MAX_PLAINTEXT);
        size_t from = tu_rng_range(&r, 0, len), to = tu_rng_range(&r, from, len);
        tu_rng_fill(&r, pt, len);
        tls_record_seal(a, (uint64_t)i, TLS_CT_APPDATA, pt, len, rec);
        memcpy(buf, rec + TLS_PAYLOAD_OFFSET + from, to - from);
        tls_record_xor_keystream(a, rec + TLS_HEADER_LEN, from, buf, to - from);
        ck_assert_mem_eq(buf, pt + from, to - from);
    }
    tls_aead_free(a);
}
END_TEST

/* ---- tls_rx: streams of records -------------------------------------------- */

#define STREAM_MAX_RECORDS 64

struct stream {
    uint8_t *bytes; /* records as on the wire (ciphertext) */
    size_t len;
    size_t nrec;
    struct {
        size_t start; /* offset of the header in bytes */
        size_t pt_len;
        uint8_t type;
        uint8_t *pt;
    } rec[STREAM_MAX_RECORDS];
};

/* Build nrec records with mbed TLS, numbered from first_seq. sizes may be
 * NULL for random sizes (mostly small, some up to the maximum). */
static void stream_build(struct stream *s, struct tu_rng *r, const struct ref_key *k,
                         uint64_t first_seq, size_t nrec, const size_t *sizes)
{
    ck_assert_uint_le(nrec, STREAM_MAX_RECORDS);
    memset(s, 0, sizeof(*s));
    s->nrec = nrec;
    s->bytes = malloc(nrec * TLS_MAX_RECORD_LEN + 1);
    ck_assert_ptr_nonnull(s->bytes);
    for (size_t i = 0; i < nrec; i++) {
        size_t len;
        if (sizes) {
            len = sizes[i];
        } else {
            size_t pick = tu_rng_range(r, 0, 9);
            len = pick < 3   ? tu_rng_range(r, 0, 64)
                  : pick < 8 ? tu_rng_range(r, 0, 2000)
                             : tu_rng_range(r, 0, TLS_MAX_PLAINTEXT);
        }
        s->rec[i].start = s->len;
        s->rec[i].pt_len = len;
        s->rec[i].type = k_types[tu_rng_range(r, 0, 3)];
        s->rec[i].pt = malloc(len + 1);
        ck_assert_ptr_nonnull(s->rec[i].pt);
        tu_rng_fill(r, s->rec[i].pt, len);
        s->len += ref_seal(k, first_seq + i, s->rec[i].type, s->rec[i].pt, len, s->bytes + s->len);
    }
}

static void stream_free(struct stream *s)
{
    for (size_t i = 0; i < s->nrec; i++)
        free(s->rec[i].pt);
    free(s->bytes);
}

/* Records delivered by tls_rx. */
struct sink {
    size_t n;
    int stop_after; /* return nonzero after this many records; 0 = never */
    size_t split;   /* records delivered in two pieces */
    struct tls_rx *rx;
    uint64_t offsets[STREAM_MAX_RECORDS]; /* tls_rx_stream_offset inside the callback */
    struct {
        uint8_t type;
        size_t len;
        uint8_t *pt;
    } got[STREAM_MAX_RECORDS];
};

static int sink_fn(void *arg, uint8_t type, const uint8_t *pt, size_t len, const uint8_t *pt2,
                   size_t len2)
{
    struct sink *k = arg;
    ck_assert_uint_lt(k->n, STREAM_MAX_RECORDS);
    k->got[k->n].type = type;
    k->got[k->n].len = len + len2;
    k->got[k->n].pt = malloc(len + len2 + 1);
    ck_assert_ptr_nonnull(k->got[k->n].pt);
    if (len)
        memcpy(k->got[k->n].pt, pt, len);
    if (len2)
        memcpy(k->got[k->n].pt + len, pt2, len2);
    k->split += len2 > 0;
    if (k->rx)
        k->offsets[k->n] = tls_rx_stream_offset(k->rx);
    k->n++;
    return k->stop_after && (int)k->n >= k->stop_after;
}

static void sink_reset(struct sink *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->got[i].pt);
    memset(k, 0, sizeof(*k));
}

/* The first n records of s arrived intact and nothing else. */
static void sink_check(const struct sink *k, const struct stream *s, size_t n)
{
    ck_assert_uint_eq(k->n, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(k->got[i].type, s->rec[i].type);
        ck_assert_uint_eq(k->got[i].len, s->rec[i].pt_len);
        if (s->rec[i].pt_len)
            ck_assert_mem_eq(k->got[i].pt, s->rec[i].pt, s->rec[i].pt_len);
        if (k->rx)
            ck_assert_uint_eq(k->offsets[i], s->rec[i].start + s->rec[i].pt_len + 29);
    }
}

/* The true view of stream offset at (what an honest NIC reports). */
static struct tls_rx_mark true_mark(const struct stream *s, uint64_t first_seq, size_t at)
{
    struct tls_rx_mark m = {first_seq + s->nrec, 0, 0, 0};
    for (size_t i = 0; i < s->nrec; i++) {
        size_t total = s->rec[i].pt_len + TLS_RECORD_OVERHEAD;
        if (at >= s->rec[i].start && at < s->rec[i].start + total) {
            m.record_sn = first_seq + i;
            m.rec_off = (uint32_t)(at - s->rec[i].start);
            m.rec_len = m.rec_off >= TLS_HEADER_LEN ? (uint32_t)total : 0;
            break;
        }
    }
    return m;
}

/* Feed wire[0..len) in chunks whose ends are cuts[0..ncuts) (ascending,
 * the last one == len); flags[i] says chunk i comes marked decrypted with the
 * true view of stream s (records numbered from first_seq) (NULL: none
 * marked). Stops at the first error and returns it. */
static int feed_cuts(struct tls_rx *rx, const uint8_t *wire, const size_t *cuts, size_t ncuts,
                     const bool *flags, const struct stream *s, uint64_t first_seq, struct sink *k)
{
    size_t at = 0;
    for (size_t i = 0; i < ncuts; i++) {
        struct tls_rx_mark m =
            flags && flags[i] ? true_mark(s, first_seq, at) : (struct tls_rx_mark){0, 0, 0, 0};
        int rc =
            tls_rx_feed(rx, wire + at, cuts[i] - at, flags && flags[i] ? &m : NULL, sink_fn, k);
        if (rc)
            return rc;
        at = cuts[i];
    }
    return 0;
}

/* Random chunk ends: a mix of tiny, packet-sized and huge chunks. */
static size_t random_cuts(struct tu_rng *r, size_t len, size_t *cuts, size_t max)
{
    size_t n = 0, at = 0;
    while (at < len) {
        ck_assert_uint_lt(n, max);
        size_t pick = tu_rng_range(r, 0, 9), step;
        step = pick < 2   ? tu_rng_range(r, 1, 8)
               : pick < 8 ? tu_rng_range(r, 1, 1500)
                          : tu_rng_range(r, 1, 40000);
        at = at + step < len ? at + step : len;
        cuts[n++] = at;
    }
    return n;
}

static void check_stats(const struct tls_rx *rx, uint64_t full, uint64_t partial, uint64_t none,
                        uint64_t errors)
{
    struct tls_rx_stats st;
    tls_rx_get_stats(rx, &st);
    ck_assert_uint_eq(st.records_full_offload, full);
    ck_assert_uint_eq(st.records_partial_offload, partial);
    ck_assert_uint_eq(st.records_no_offload, none);
    ck_assert_uint_eq(st.records, full + partial + none);
    ck_assert_uint_eq(st.decrypt_errors, errors);
}

#define MAX_CUTS (STREAM_MAX_RECORDS * TLS_MAX_RECORD_LEN)

START_TEST(test_rx_many_records_one_chunk)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    struct ref_key k = make_key(16, 0x50);
    struct tls_aead *a = aead_for(&k);
    struct stream s;
    struct sink sink = {0};

    stream_build(&s, &r, &k, 1, 40, NULL);
    struct tls_rx *rx = tls_rx_new(a, 1);
    sink.rx = rx;
    ck_assert_int_eq(tls_rx_feed(rx, s.bytes, s.len, NULL, sink_fn, &sink), TLS_RX_OK);
    sink_check(&sink, &s, 40);
    check_stats(rx, 0, 0, 40, 0);
    ck_assert_uint_eq(tls_rx_next_seq(rx), 41);
    ck_assert_uint_eq(tls_rx_stream_offset(rx), s.len);
    struct tls_rx_stats st;
    tls_rx_get_stats(rx, &st);
    uint64_t total = 0;
    for (size_t i = 0; i < s.nrec; i++)
        total += s.rec[i].pt_len;
    ck_assert_uint_eq(st.bytes_plaintext, total);
    /* An empty feed is a no-op. */
    ck_assert_int_eq(tls_rx_feed(rx, s.bytes, 0, NULL, sink_fn, &sink), TLS_RX_OK);

    tls_rx_free(rx);
    sink_reset(&sink);
    stream_free(&s);
    tls_aead_free(a);
}
END_TEST

START_TEST(test_rx_random_chunking)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    static size_t cuts[MAX_CUTS];

    for (int iter = 0; iter < 30; iter++) {
        struct ref_key k = make_key(iter % 2 ? 32 : 16, (uint8_t)iter);
        struct tls_aead *a = aead_for(&k);
        struct stream s;
        struct sink sink = {0};
        uint64_t first = tu_rng_next(&r) >> 1;

        stream_build(&s, &r, &k, first, 30, NULL);
        size_t ncuts = random_cuts(&r, s.len, cuts, MAX_CUTS);
        struct tls_rx *rx = tls_rx_new(a, first);
        sink.rx = rx;
        ck_assert_int_eq(feed_cuts(rx, s.bytes, cuts, ncuts, NULL, NULL, 0, &sink), TLS_RX_OK);
        sink_check(&sink, &s, 30);
        check_stats(rx, 0, 0, 30, 0);
        ck_assert_uint_eq(tls_rx_next_seq(rx), first + 30);
        tls_rx_free(rx);
        sink_reset(&sink);
        stream_free(&s);
        tls_aead_free(a);
    }
}
END_TEST

/* Two chunks, split at every byte of a stream of small records: covers a
 * header split at each of its bytes, nonce and tag splits. Then one byte
 * per chunk. */
START_TEST(test_rx_split_every_byte)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    struct ref_key k = make_key(16, 0x60);
    struct tls_aead *a = aead_for(&k);
    const size_t sizes[] = {0, 1, 33, 100, 16};
    struct stream s;

    stream_build(&s, &r, &k, 7, 5, sizes);
    for (size_t p = 0; p <= s.len; p++) {
        struct sink sink = {0};
        struct tls_rx *rx = tls_rx_new(a, 7);
        size_t cuts[2] = {p, s.len};
        sink.rx = rx;
        ck_assert_int_eq(feed_cuts(rx, s.bytes, cuts, 2, NULL, NULL, 0, &sink), TLS_RX_OK);
        sink_check(&sink, &s, 5);
        check_stats(rx, 0, 0, 5, 0);
        tls_rx_free(rx);
        sink_reset(&sink);
    }

    struct sink sink = {0};
    struct tls_rx *rx = tls_rx_new(a, 7);
    sink.rx = rx;
    for (size_t i = 0; i < s.len; i++)
        ck_assert_int_eq(tls_rx_feed(rx, s.bytes + i, 1, NULL, sink_fn, &sink), TLS_RX_OK);
    sink_check(&sink, &s, 5);
    tls_rx_free(rx);
    sink_reset(&sink);
    stream_free(&s);
    tls_aead_free(a);
}
END_TEST

START_TEST(test_rx_malformed_header)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    struct ref_key k = make_key(16, 0x61);
    struct tls_aead *a = aead_for(&k);
    const size_t sizes[] = {10, 20};
    const uint8_t bad[][5] = {
        {23, 3, 1, 0, 40},                           /* wrong version */
        {23, 2, 3, 0, 40},      {0x18, 3, 3, 0, 40}, /* unknown type */
        {0, 0, 0, 0, 0},        {23, 3, 3, 0, 23},   /* no room for nonce + tag */
        {23, 3, 3, 0x41, 0x01},                      /* > 2^14 + 256 */
        {23, 3, 3, 0x40, 0x19},                      /* would decrypt to > 2^14 */
        {23, 3, 3, 0xff, 0xff},
    };
    struct stream s;

    stream_build(&s, &r, &k, 0, 2, sizes);
    uint8_t *wire = malloc(s.len + 64);
    memcpy(wire, s.bytes, s.len);
    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        memcpy(wire + s.len, bad[b], 5);
        memset(wire + s.len + 5, 0, 40);
        size_t total = s.len + 45;
        /* Whole, and with the cut anywhere around the bad header. */
        for (size_t p = s.len - 3; p <= total; p++) {
            struct sink sink = {0};
            struct tls_rx *rx = tls_rx_new(a, 0);
            size_t cuts[2] = {p, total};
            ck_assert_int_eq(feed_cuts(rx, wire, cuts, 2, NULL, NULL, 0, &sink),
                             TLS_RX_ERR_MALFORMED);
            sink_check(&sink, &s, 2);
            /* Dead: the same error again, whatever is fed. */
            ck_assert_int_eq(tls_rx_feed(rx, s.bytes, s.len, NULL, sink_fn, &sink),
                             TLS_RX_ERR_MALFORMED);
            struct tls_rx_mark any = {0, 0, 0, 0};
            ck_assert_int_eq(tls_rx_feed(rx, s.bytes, 0, &any, sink_fn, &sink),
                             TLS_RX_ERR_MALFORMED);
            ck_assert_uint_eq(sink.n, 2);
            check_stats(rx, 0, 0, 2, 0);
            tls_rx_free(rx);
            sink_reset(&sink);
        }
    }
    ck_assert_str_eq(tls_rx_strerror(TLS_RX_ERR_MALFORMED), "malformed record header");
    free(wire);
    stream_free(&s);
    tls_aead_free(a);
}
END_TEST

/* A tampered byte of record 2 (tag, ciphertext, nonce, type) stops the
 * stream with BAD_MAC; records 0 and 1 are delivered, record 2 never is. */
START_TEST(test_rx_bad_mac)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    static size_t cuts[MAX_CUTS];
    struct ref_key k = make_key(32, 0x62);
    struct tls_aead *a = aead_for(&k);
    const size_t sizes[] = {100, 3000, 200, 50, 0};
    struct stream s;

    stream_build(&s, &r, &k, 5, 5, sizes);
    size_t r2 = s.rec[2].start;
    const size_t where[] = {r2 + 13 + 200 + 15, r2 + 13 + 200, r2 + 13, r2 + 12, r2 + 5, r2};
    for (size_t w = 0; w < sizeof(where) / sizeof(where[0]); w++) {
        for (int mode = 0; mode < 3; mode++) { /* whole, random chunks, bytewise */
            struct sink sink = {0};
            struct tls_rx *rx = tls_rx_new(a, 5);
            uint8_t *wire = malloc(s.len);
            size_t ncuts;
            memcpy(wire, s.bytes, s.len);
            /* The type stays a valid type (20<->21, 22<->23) to reach
             * authentication. */
            wire[where[w]] ^= where[w] == r2 ? 0x01 : 0x20;
            if (mode == 0) {
                cuts[0] = s.len;
                ncuts = 1;
            } else if (mode == 1) {
                ncuts = random_cuts(&r, s.len, cuts, MAX_CUTS);
            } else {
                for (ncuts = 0; ncuts < s.len; ncuts++)
                    cuts[ncuts] = ncuts + 1;
            }
            ck_assert_int_eq(feed_cuts(rx, wire, cuts, ncuts, NULL, NULL, 0, &sink),
                             TLS_RX_ERR_BAD_MAC);
            sink_check(&sink, &s, 2);
            check_stats(rx, 0, 0, 2, 1);
            ck_assert_uint_eq(tls_rx_next_seq(rx), 7);
            ck_assert_int_eq(tls_rx_feed(rx, wire, s.len, NULL, sink_fn, &sink),
                             TLS_RX_ERR_BAD_MAC);
            ck_assert_uint_eq(sink.n, 2);
            check_stats(rx, 0, 0, 2, 1);
            tls_rx_free(rx);
            sink_reset(&sink);
            free(wire);
        }
    }

    /* Out of step: the receiver expects another sequence number. */
    struct sink sink = {0};
    struct tls_rx *rx = tls_rx_new(a, 6);
    ck_assert_int_eq(tls_rx_feed(rx, s.bytes, s.len, NULL, sink_fn, &sink), TLS_RX_ERR_BAD_MAC);
    ck_assert_uint_eq(sink.n, 0);
    tls_rx_free(rx);
    stream_free(&s);
    tls_aead_free(a);
}
END_TEST

START_TEST(test_rx_callback_stops)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    struct ref_key k = make_key(16, 0x63);
    struct tls_aead *a = aead_for(&k);
    struct stream s;

    stream_build(&s, &r, &k, 0, 6, NULL);
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct sink sink = {.stop_after = 3};
        struct tls_rx *rx = tls_rx_new(a, 0);
        if (bytewise) {
            /* The feed that completes record 3 (its last byte) stops. */
            size_t end3 = s.rec[2].start + s.rec[2].pt_len + TLS_RECORD_OVERHEAD;
            for (size_t i = 0; i < end3; i++)
                ck_assert_int_eq(tls_rx_feed(rx, s.bytes + i, 1, NULL, sink_fn, &sink), TLS_RX_OK);
        } else {
            /* The stopping feed itself succeeds; the rest of it is dropped. */
            ck_assert_int_eq(tls_rx_feed(rx, s.bytes, s.len, NULL, sink_fn, &sink), TLS_RX_OK);
        }
        sink_check(&sink, &s, 3);
        check_stats(rx, 0, 0, 3, 0);
        ck_assert_uint_eq(tls_rx_next_seq(rx), 3);
        ck_assert_int_eq(tls_rx_feed(rx, s.bytes, s.len, NULL, sink_fn, &sink), TLS_RX_ERR_STOPPED);
        ck_assert_uint_eq(sink.n, 3);
        tls_rx_free(rx);
        sink_reset(&sink);
    }
    stream_free(&s);
    tls_aead_free(a);
}
END_TEST

/* ---- tls_rx: the NIC's decrypted bit ---------------------------------------- */

/* Simulated NIC: decrypt the payload bytes of wire[from, to) in place,
 * leaving headers, nonces and tags as they are. */
static void nic_decrypt(const struct ref_key *k, const struct stream *s, uint8_t *wire, size_t from,
                        size_t to)
{
    for (size_t i = 0; i < s->nrec; i++) {
        size_t p0 = s->rec[i].start + TLS_PAYLOAD_OFFSET, p1 = p0 + s->rec[i].pt_len;
        size_t a = from > p0 ? from : p0, b = to < p1 ? to : p1;
        if (a < b)
            ref_xor_keystream(k, wire + s->rec[i].start + TLS_HEADER_LEN, a - p0, wire + a, b - a);
    }
}

enum { CLASS_NONE, CLASS_PARTIAL, CLASS_FULL };

/* Expected offload class of record i from the chunking: which of its
 * payload and tag bytes fall in flagged chunks. */
static int expected_class(const struct stream *s, size_t i, const size_t *cuts, size_t ncuts,
                          const bool *flags)
{
    /* Full only if every byte, header included, came marked; otherwise
       partial if any payload or tag byte did. */
    size_t r0 = s->rec[i].start, p0 = r0 + TLS_PAYLOAD_OFFSET,
           p1 = p0 + s->rec[i].pt_len + TLS_TAG_LEN;
    size_t at = 0, dec = 0, dec_all = 0;
    for (size_t c = 0; c < ncuts; c++) {
        size_t a = at > p0 ? at : p0, b = cuts[c] < p1 ? cuts[c] : p1;
        if (a < b && flags[c])
            dec += b - a;
        a = at > r0 ? at : r0;
        if (a < b && flags[c])
            dec_all += b - a;
        at = cuts[c];
    }
    return dec == 0 ? CLASS_NONE : dec_all == p1 - r0 ? CLASS_FULL : CLASS_PARTIAL;
}

/* Build the wire image the NIC would deliver for this chunking (flagged
 * chunks decrypted), optionally garbling the tags of fully flagged
 * records, which the host must ignore. Counts expected classes. */
static uint8_t *nic_wire(const struct ref_key *k, const struct stream *s, const size_t *cuts,
                         size_t ncuts, const bool *flags, bool garble_full_tags, uint64_t counts[3])
{
    uint8_t *wire = malloc(s->len + 1);
    ck_assert_ptr_nonnull(wire);
    memcpy(wire, s->bytes, s->len);
    size_t at = 0;
    for (size_t c = 0; c < ncuts; c++) {
        if (flags[c])
            nic_decrypt(k, s, wire, at, cuts[c]);
        at = cuts[c];
    }
    counts[0] = counts[1] = counts[2] = 0;
    for (size_t i = 0; i < s->nrec; i++) {
        int cls = expected_class(s, i, cuts, ncuts, flags);
        counts[cls]++;
        if (cls == CLASS_FULL && garble_full_tags)
            memset(wire + s->rec[i].start + TLS_PAYLOAD_OFFSET + s->rec[i].pt_len, 0, TLS_TAG_LEN);
    }
    return wire;
}

/* Every byte flagged: records are delivered as the NIC left them, without
 * host crypto. The receiver is given a wrong key and the tags are zeroed:
 * any host-side decryption or authentication would show. */
START_TEST(test_rx_full_offload_no_crypto)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    static size_t cuts[MAX_CUTS];
    static bool flags[MAX_CUTS];
    struct ref_key k = make_key(16, 0x70), wrong = make_key(16, 0x71);
    struct tls_aead *a = aead_for(&wrong);

    for (int iter = 0; iter < 10; iter++) {
        struct stream s;
        struct sink sink = {0};
        uint64_t counts[3];
        stream_build(&s, &r, &k, 1, 20, NULL);
        size_t ncuts;
        if (iter == 0) {
            cuts[0] = s.len;
            ncuts = 1;
        } else {
            ncuts = random_cuts(&r, s.len, cuts, MAX_CUTS);
        }
        for (size_t c = 0; c < ncuts; c++)
            flags[c] = true;
        uint8_t *wire = nic_wire(&k, &s, cuts, ncuts, flags, true, counts);
        ck_assert_uint_eq(counts[CLASS_FULL], 20);
        struct tls_rx *rx = tls_rx_new(a, 1);
        sink.rx = rx;
        ck_assert_int_eq(feed_cuts(rx, wire, cuts, ncuts, flags, &s, 1, &sink), TLS_RX_OK);
        sink_check(&sink, &s, 20);
        check_stats(rx, 20, 0, 0, 0);
        ck_assert_uint_eq(tls_rx_next_seq(rx), 21);
        tls_rx_free(rx);
        sink_reset(&sink);
        free(wire);
        stream_free(&s);
    }
    tls_aead_free(a);
}
END_TEST

/*
 * A 64-byte record X between two small records A and B, chunked
 *   [0, x0 + a) flag fa | [x0 + a, x0 + b) flag fb | [x0 + b, end) flag fa
 * where x0 is X's payload offset and 0 <= a <= b <= 80 index X's 64 payload
 * and 16 tag bytes. Checks delivery and X's offload class; with tamper,
 * flips a byte of X that the host sees as ciphertext (or, with
 * tamper_plain, a byte the NIC decrypted) and expects BAD_MAC with only A
 * delivered.
 */
struct split_case {
    size_t a, b;
    bool fa, fb;
    long tamper; /* byte of X's payload/tag region to flip, or -1 */
};

static void run_split_case(const struct ref_key *k, struct tls_aead *aead, const struct stream *s,
                           const struct split_case *sc)
{
    size_t x0 = s->rec[1].start + TLS_PAYLOAD_OFFSET;
    size_t cuts[3] = {x0 + sc->a, x0 + sc->b, s->len};
    bool flags[3] = {sc->fa, sc->fb, sc->fa};
    uint64_t counts[3];
    uint8_t *wire = nic_wire(k, s, cuts, 3, flags, false, counts);
    struct sink sink = {0};
    struct tls_rx *rx = tls_rx_new(aead, 100);
    sink.rx = rx;

    if (sc->tamper >= 0)
        wire[x0 + (size_t)sc->tamper] ^= 0x01;
    int rc = feed_cuts(rx, wire, cuts, 3, flags, s, 100, &sink);

    uint64_t want[3] = {0, 0, 0};
    if (sc->tamper >= 0) {
        ck_assert_msg(rc == TLS_RX_ERR_BAD_MAC, "a=%zu b=%zu fa=%d tamper=%ld: rc %d", sc->a, sc->b,
                      sc->fa, sc->tamper, rc);
        sink_check(&sink, s, 1);
        want[expected_class(s, 0, cuts, 3, flags)]++;
        check_stats(rx, want[CLASS_FULL], want[CLASS_PARTIAL], want[CLASS_NONE], 1);
    } else {
        ck_assert_msg(rc == TLS_RX_OK, "a=%zu b=%zu fa=%d: rc %d", sc->a, sc->b, sc->fa, rc);
        sink_check(&sink, s, 3);
        check_stats(rx, counts[CLASS_FULL], counts[CLASS_PARTIAL], counts[CLASS_NONE], 0);
    }
    tls_rx_free(rx);
    sink_reset(&sink);
    free(wire);
}

static void build_split_stream(struct stream *s, struct tu_rng *r, const struct ref_key *k)
{
    const size_t sizes[] = {10, 64, 20};
    stream_build(s, r, k, 100, 3, sizes);
}

#define X_LEN  64
#define X_SPAN (X_LEN + TLS_TAG_LEN)

/* Decrypted prefix of every length, decrypted suffix of every length. */
START_TEST(test_rx_partial_prefix_suffix)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    struct ref_key k = make_key(16, 0x72);
    struct tls_aead *a = aead_for(&k);
    struct stream s;

    build_split_stream(&s, &r, &k);
    for (size_t p = 0; p <= X_SPAN; p++) {
        /* decrypted prefix [0, p) */
        struct split_case pre = {.a = 0, .b = p, .fa = false, .fb = true, .tamper = -1};
        /* decrypted suffix [p, 80) */
        struct split_case suf = {.a = p, .b = X_SPAN, .fa = false, .fb = true, .tamper = -1};
        run_split_case(&k, a, &s, &pre);
        run_split_case(&k, a, &s, &suf);
    }
    /* Class checks at the ends: all flagged = full, none = no offload; an
       unmarked header alone makes it partial (the NIC may have parsed a
       different header). */
    {
        size_t x0 = s.rec[1].start + TLS_PAYLOAD_OFFSET;
        size_t cuts[3] = {s.rec[1].start, x0 + X_SPAN, s.len};
        bool flags[3] = {false, true, false};
        ck_assert_int_eq(expected_class(&s, 1, cuts, 3, flags), CLASS_FULL);
        cuts[0] = s.rec[1].start + 1;
        ck_assert_int_eq(expected_class(&s, 1, cuts, 3, flags), CLASS_PARTIAL);
        cuts[0] = x0;
        ck_assert_int_eq(expected_class(&s, 1, cuts, 3, flags), CLASS_PARTIAL);
        cuts[1] = x0 + X_SPAN - 1;
        ck_assert_int_eq(expected_class(&s, 1, cuts, 3, flags), CLASS_PARTIAL);
        cuts[1] = x0;
        ck_assert_int_eq(expected_class(&s, 1, cuts, 3, flags), CLASS_NONE);
    }
    stream_free(&s);
    tls_aead_free(a);
}
END_TEST

/* Every middle range [a, b) decrypted (rest ciphertext), and every middle
 * range ciphertext (rest decrypted). */
START_TEST(test_rx_partial_middle_ranges)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    struct ref_key k = make_key(32, 0x73);
    struct tls_aead *a = aead_for(&k);
    struct stream s;

    build_split_stream(&s, &r, &k);
    for (size_t lo = 0; lo <= X_SPAN; lo++) {
        for (size_t hi = lo; hi <= X_SPAN; hi++) {
            struct split_case dec_mid = {.a = lo, .b = hi, .fa = false, .fb = true, .tamper = -1};
            struct split_case enc_mid = {.a = lo, .b = hi, .fa = true, .fb = false, .tamper = -1};
            run_split_case(&k, a, &s, &dec_mid);
            run_split_case(&k, a, &s, &enc_mid);
        }
    }
    stream_free(&s);
    tls_aead_free(a);
}
END_TEST

/* Mixed records with a tampered byte fail with BAD_MAC and are never
 * delivered: a byte the host received as ciphertext (payload or tag), or a
 * byte the NIC handed over decrypted (re-encryption yields the wrong
 * ciphertext). */
START_TEST(test_rx_partial_tampered)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    struct ref_key k = make_key(16, 0x74);
    struct tls_aead *a = aead_for(&k);
    struct stream s;

    build_split_stream(&s, &r, &k);
    for (size_t p = 1; p < X_SPAN; p++) {
        /* decrypted prefix [0, p), ciphertext [p, 80) */
        struct split_case c = {.a = 0, .b = p, .fa = false, .fb = true};
        c.tamper = (long)p; /* first host-side byte */
        run_split_case(&k, a, &s, &c);
        c.tamper = X_SPAN - 1; /* last tag byte */
        run_split_case(&k, a, &s, &c);
        c.tamper = (long)tu_rng_range(&r, p, X_SPAN - 1);
        run_split_case(&k, a, &s, &c);
        if (p <= X_LEN) {
            c.tamper = (long)tu_rng_range(&r, 0, p - 1); /* a NIC-decrypted payload byte */
            run_split_case(&k, a, &s, &c);
        }
        /* ciphertext prefix [0, p), decrypted suffix [p, 80) */
        struct split_case d = {.a = p, .b = X_SPAN, .fa = false, .fb = true};
        d.tamper = (long)(p - 1);
        run_split_case(&k, a, &s, &d);
        d.tamper = 0;
        run_split_case(&k, a, &s, &d);
        /* the tag arrived flagged but the record is mixed: it is checked */
        d.tamper = X_SPAN - 1;
        run_split_case(&k, a, &s, &d);
    }
    stream_free(&s);
    tls_aead_free(a);
}
END_TEST

/* A marked chunk whose NIC view disagrees with the reassembler's (wrong
 * record number, offset or length) is NIC plaintext that is not believed:
 * every record it touches is re-encrypted and authenticated in software,
 * and it is counted. Honest plaintext then still delivers intact (partial);
 * plaintext the NIC made up fails with bad_record_mac. */
START_TEST(test_rx_view_mismatch_is_distrusted)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    struct ref_key k = make_key(16, 0x74);
    struct tls_aead *a = aead_for(&k);
    const size_t sizes[] = {100, 3000, 50};
    struct stream s;
    stream_build(&s, &r, &k, 9, 3, sizes);
    size_t mid = s.rec[1].start + 1000; /* a chunk boundary inside record 1 */
    size_t cuts[3] = {mid, s.rec[2].start + 10, s.len};
    bool flags[3] = {true, true, true};
    uint64_t counts[3];
    for (int lie = 0; lie < 5; lie++) {
        for (int forge = 0; forge < 2; forge++) {
            uint8_t *wire = nic_wire(&k, &s, cuts, 3, flags, false, counts);
            if (forge)
                wire[mid + 5] ^= 0x20; /* "decrypted" text the sender never sent */
            struct sink sink = {0};
            struct tls_rx *rx = tls_rx_new(a, 9);
            sink.rx = rx;
            struct tls_rx_mark m0 = true_mark(&s, 9, 0), m1 = true_mark(&s, 9, mid),
                               m2 = true_mark(&s, 9, cuts[1]);
            switch (lie) { /* the second chunk's claim */
            case 0:
                break;
            case 1:
                m1.record_sn++;
                break;
            case 2:
                m1.rec_off += 16;
                break;
            case 3:
                m1.rec_len += 100;
                break;
            case 4: /* right place, but another NIC walk than the record's start */
                m1.walk++;
                break;
            }
            ck_assert_int_eq(tls_rx_feed(rx, wire, mid, &m0, sink_fn, &sink), TLS_RX_OK);
            int rc = tls_rx_feed(rx, wire + mid, cuts[1] - mid, &m1, sink_fn, &sink);
            struct tls_rx_stats st;
            tls_rx_get_stats(rx, &st);
            ck_assert_uint_eq(st.view_mismatch, lie ? 1 : 0);
            if (!lie && forge) {
                /* Believed (the view is right): the NIC vouches for it. This
                   is the trust the view check narrows, not removes. */
                ck_assert_int_eq(rc, TLS_RX_OK);
            } else if (forge) {
                ck_assert_int_eq(rc, TLS_RX_ERR_BAD_MAC);
                sink_check(&sink, &s, 1);
            } else {
                ck_assert_int_eq(rc, TLS_RX_OK);
                ck_assert_int_eq(
                    tls_rx_feed(rx, wire + cuts[1], s.len - cuts[1], &m2, sink_fn, &sink),
                    TLS_RX_OK);
                sink_check(&sink, &s, 3);
                /* the lie touched records 1 and 2 */
                check_stats(rx, lie ? 1 : 3, lie ? 2 : 0, 0, 0);
                /* Believed whole, records 1 and 2 end where they lie: only
                   their starts in the earlier chunk (1000 and 10 bytes, the
                   latter inside the nonce) were copied, and each came in two
                   pieces. Distrusted, both were put together in full. */
                struct tls_rx_stats st2;
                tls_rx_get_stats(rx, &st2);
                size_t whole = s.rec[1].pt_len + s.rec[2].pt_len + 2 * TLS_RECORD_OVERHEAD;
                ck_assert_uint_eq(sink.split, lie ? 0 : 2);
                ck_assert_uint_eq(st2.bytes_reassembled, lie ? whole : 1010);
            }
            tls_rx_free(rx);
            sink_reset(&sink);
            free(wire);
        }
    }
    stream_free(&s);
    tls_aead_free(a);
}
END_TEST

/* tls_rx_mark_skip carries a claim forward only as far as it can know. */
START_TEST(test_rx_mark_skip)
{
    struct tls_rx_mark m = {7, 2, 0, 0}, n;
    n = tls_rx_mark_skip(m, 0);
    ck_assert_uint_eq(n.rec_off, 2);
    n = tls_rx_mark_skip(m, 2);
    ck_assert_uint_eq(n.rec_off, 4);
    n = tls_rx_mark_skip(m, 3); /* past the header: its length was unknown */
    ck_assert_uint_eq(n.rec_off, TLS_RX_MARK_UNKNOWN);
    m = (struct tls_rx_mark){7, 100, 500, 0};
    n = tls_rx_mark_skip(m, 399);
    ck_assert_uint_eq(n.rec_off, 499);
    ck_assert_uint_eq(n.record_sn, 7);
    n = tls_rx_mark_skip(m, 400); /* into the next record */
    ck_assert_uint_eq(n.rec_off, TLS_RX_MARK_UNKNOWN);
    n = tls_rx_mark_skip(m, UINT32_MAX); /* a chunk before the packet */
    ck_assert_uint_eq(n.rec_off, TLS_RX_MARK_UNKNOWN);
    n = tls_rx_mark_skip(n, 1);
    ck_assert_uint_eq(n.rec_off, TLS_RX_MARK_UNKNOWN);
}
END_TEST

/* Random streams, random chunking, random decrypted bits: every record is
 * delivered intact and classified as the chunking says. */
START_TEST(test_rx_random_offload_stream)
{
    struct tu_rng r = tu_rng_for(__func__, 0);
    static size_t cuts[MAX_CUTS];
    static bool flags[MAX_CUTS];

    for (int iter = 0; iter < 40; iter++) {
        struct ref_key k = make_key(iter % 2 ? 16 : 32, (uint8_t)(0x80 + iter));
        struct tls_aead *a = aead_for(&k);
        struct stream s;
        struct sink sink = {0};
        uint64_t counts[3];

        stream_build(&s, &r, &k, 1, 30, NULL);
        size_t ncuts = random_cuts(&r, s.len, cuts, MAX_CUTS);
        /* Runs of flags, like a NIC falling out of and back into sync. */
        size_t p_flip = tu_rng_range(&r, 1, 10);
        bool f = tu_rng_range(&r, 0, 1);
        for (size_t c = 0; c < ncuts; c++) {
            if (tu_rng_range(&r, 1, 10) <= p_flip)
                f = !f;
            flags[c] = f;
        }
        uint8_t *wire = nic_wire(&k, &s, cuts, ncuts, flags, true, counts);
        struct tls_rx *rx = tls_rx_new(a, 1);
        sink.rx = rx;
        ck_assert_int_eq(feed_cuts(rx, wire, cuts, ncuts, flags, &s, 1, &sink), TLS_RX_OK);
        sink_check(&sink, &s, 30);
        check_stats(rx, counts[CLASS_FULL], counts[CLASS_PARTIAL], counts[CLASS_NONE], 0);
        tls_rx_free(rx);
        sink_reset(&sink);
        free(wire);
        stream_free(&s);
        tls_aead_free(a);
    }
}
END_TEST

static Suite *record_suite(void)
{
    Suite *s = suite_create("tls_record");
    TCase *tc = tcase_create("record");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_aead_rejects_bad_key_len);
    tcase_add_test(tc, test_frame_plain_layout);
    tcase_add_test(tc, test_parse_header);
    tcase_add_test(tc, test_seal_mbedtls_opens);
    tcase_add_test(tc, test_mbedtls_seals_anic_opens);
    tcase_add_test(tc, test_seal_in_place);
    tcase_add_test(tc, test_seal2_matches_reference);
    tcase_add_test(tc, test_open_tampered_fails);
    tcase_add_test(tc, test_xor_keystream_matches_reference);
    tcase_add_test(tc, test_xor_keystream_decrypts_record_range);
    suite_add_tcase(s, tc);

    TCase *rx = tcase_create("rx");
    tcase_set_timeout(rx, 60);
    tcase_add_test(rx, test_rx_many_records_one_chunk);
    tcase_add_test(rx, test_rx_random_chunking);
    tcase_add_test(rx, test_rx_split_every_byte);
    tcase_add_test(rx, test_rx_malformed_header);
    tcase_add_test(rx, test_rx_bad_mac);
    tcase_add_test(rx, test_rx_callback_stops);
    suite_add_tcase(s, rx);

    TCase *off = tcase_create("rx_offload");
    tcase_set_timeout(off, 60);
    tcase_add_test(off, test_rx_full_offload_no_crypto);
    tcase_add_test(off, test_rx_partial_prefix_suffix);
    tcase_add_test(off, test_rx_partial_middle_ranges);
    tcase_add_test(off, test_rx_partial_tampered);
    tcase_add_test(off, test_rx_random_offload_stream);
    tcase_add_test(off, test_rx_view_mismatch_is_distrusted);
    tcase_add_test(off, test_rx_mark_skip);
    suite_add_tcase(s, off);
    return s;
}

int main(void)
{
    tu_seed_init("test_record");

    SRunner *sr = srunner_create(record_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
