/*
 * tls_record.c — TLS 1.2 AES-GCM records (RFC 5246 §6.2.3.3, RFC 5288) and
 * the receive-side reassembler that honours the NIC's "decrypted" bit.
 *
 * Crypto is libcrypto EVP. Each struct tls_aead creates its contexts once
 * and keys them once; per record only the IV is set, which is cheap.
 */
#include "tls_record.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define GCM_IV_LEN            (TLS_SALT_LEN + TLS_EXPLICIT_NONCE_LEN) /* 96-bit nonce */
#define GCM_BLOCK_LEN         16
#define GCM_FIRST_PAYLOAD_CTR 2  /* counter 1 (J0) masks the tag */
#define TLS_AAD_LEN           13 /* seq(8) type(1) version(2) length(2) */

struct tls_aead {
    EVP_CIPHER_CTX *seal; /* AES-GCM, encrypt direction */
    EVP_CIPHER_CTX *open; /* AES-GCM, decrypt direction */
    EVP_CIPHER_CTX *ctr;  /* AES-CTR: the bare GCM payload keystream */
    uint8_t salt[TLS_SALT_LEN];
};

/* ---- helpers ------------------------------------------------------------ */

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

/* libcrypto calls on a keyed context cannot fail short of a libcrypto bug
 * or memory corruption: treat failure like a failed assertion. */
static void crypto_check(int ok, const char *what)
{
    if (ok != 1) {
        fprintf(stderr, "tls_record: libcrypto %s failed\n", what);
        abort();
    }
}

void tls_record_write_header(uint8_t *out, uint64_t seq, uint8_t type, size_t len)
{
    out[0] = type;
    out[1] = TLS_VERSION_MAJOR;
    out[2] = TLS_VERSION_MINOR;
    put_be16(out + 3, (uint16_t)(TLS_EXPLICIT_NONCE_LEN + len + TLS_TAG_LEN));
    put_be64(out + TLS_HEADER_LEN, seq);
}

/* RFC 5246 §6.2.3.3: additional_data = seq_num + type + version + length. */
static void build_aad(uint8_t aad[TLS_AAD_LEN], uint64_t seq, uint8_t type, size_t len)
{
    put_be64(aad, seq);
    aad[8] = type;
    aad[9] = TLS_VERSION_MAJOR;
    aad[10] = TLS_VERSION_MINOR;
    put_be16(aad + 11, (uint16_t)len);
}

static void build_iv(const struct tls_aead *a, uint8_t iv[GCM_IV_LEN],
                     const uint8_t explicit_nonce[TLS_EXPLICIT_NONCE_LEN])
{
    memcpy(iv, a->salt, TLS_SALT_LEN);
    memcpy(iv + TLS_SALT_LEN, explicit_nonce, TLS_EXPLICIT_NONCE_LEN);
}

/* ---- AEAD ----------------------------------------------------------------- */

struct tls_aead *tls_aead_new(const uint8_t *key, size_t key_len, const uint8_t salt[4])
{
    const EVP_CIPHER *gcm, *ctr;

    if (key_len == 16) {
        gcm = EVP_aes_128_gcm();
        ctr = EVP_aes_128_ctr();
    } else if (key_len == 32) {
        gcm = EVP_aes_256_gcm();
        ctr = EVP_aes_256_ctr();
    } else {
        return NULL;
    }

    struct tls_aead *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    memcpy(a->salt, salt, TLS_SALT_LEN);
    a->seal = EVP_CIPHER_CTX_new();
    a->open = EVP_CIPHER_CTX_new();
    a->ctr = EVP_CIPHER_CTX_new();
    if (!a->seal || !a->open || !a->ctr || EVP_EncryptInit_ex(a->seal, gcm, NULL, key, NULL) != 1 ||
        EVP_DecryptInit_ex(a->open, gcm, NULL, key, NULL) != 1 ||
        EVP_EncryptInit_ex(a->ctr, ctr, NULL, key, NULL) != 1) {
        tls_aead_free(a);
        return NULL;
    }
    return a;
}

void tls_aead_free(struct tls_aead *a)
{
    if (!a)
        return;
    /* EVP_CIPHER_CTX_free wipes the key schedules. */
    EVP_CIPHER_CTX_free(a->seal);
    EVP_CIPHER_CTX_free(a->open);
    EVP_CIPHER_CTX_free(a->ctr);
    OPENSSL_cleanse(a, sizeof(*a));
    free(a);
}

/* AES-GCM encrypt the plaintext in[0..len) followed by in2[0..len2) -> out
   (in == out allowed), writing the tag. */
static void gcm_seal(struct tls_aead *a, uint64_t seq, uint8_t type,
                     const uint8_t explicit_nonce[TLS_EXPLICIT_NONCE_LEN], const uint8_t *in,
                     size_t len, const uint8_t *in2, size_t len2, uint8_t *out,
                     uint8_t tag[TLS_TAG_LEN])
{
    uint8_t iv[GCM_IV_LEN], aad[TLS_AAD_LEN];
    int outl;

    build_iv(a, iv, explicit_nonce);
    build_aad(aad, seq, type, len + len2);
    crypto_check(EVP_EncryptInit_ex(a->seal, NULL, NULL, NULL, iv), "GCM set IV");
    crypto_check(EVP_EncryptUpdate(a->seal, NULL, &outl, aad, TLS_AAD_LEN), "GCM AAD");
    if (len > 0) {
        crypto_check(EVP_EncryptUpdate(a->seal, out, &outl, in, (int)len), "GCM encrypt");
        assert((size_t)outl == len);
    }
    if (len2 > 0) {
        crypto_check(EVP_EncryptUpdate(a->seal, out + len, &outl, in2, (int)len2), "GCM encrypt");
        assert((size_t)outl == len2);
    }
    len += len2;
    crypto_check(EVP_EncryptFinal_ex(a->seal, out + len, &outl), "GCM final");
    crypto_check(EVP_CIPHER_CTX_ctrl(a->seal, EVP_CTRL_GCM_GET_TAG, TLS_TAG_LEN, tag),
                 "GCM get tag");
}

/* AES-GCM decrypt len bytes in -> out (in == out allowed) and check tag.
 * Returns false on authentication failure, with out[0..len) zeroed. */
static bool gcm_open(struct tls_aead *a, uint64_t seq, uint8_t type,
                     const uint8_t explicit_nonce[TLS_EXPLICIT_NONCE_LEN], const uint8_t *in,
                     size_t len, const uint8_t tag[TLS_TAG_LEN], uint8_t *out)
{
    uint8_t iv[GCM_IV_LEN], aad[TLS_AAD_LEN], tag_copy[TLS_TAG_LEN];
    int outl;

    /* The tag may sit right behind in == out; copy it before decrypting. */
    memcpy(tag_copy, tag, TLS_TAG_LEN);
    build_iv(a, iv, explicit_nonce);
    build_aad(aad, seq, type, len);
    crypto_check(EVP_DecryptInit_ex(a->open, NULL, NULL, NULL, iv), "GCM set IV");
    crypto_check(EVP_DecryptUpdate(a->open, NULL, &outl, aad, TLS_AAD_LEN), "GCM AAD");
    if (len > 0) {
        crypto_check(EVP_DecryptUpdate(a->open, out, &outl, in, (int)len), "GCM decrypt");
        assert((size_t)outl == len);
    }
    crypto_check(EVP_CIPHER_CTX_ctrl(a->open, EVP_CTRL_GCM_SET_TAG, TLS_TAG_LEN, tag_copy),
                 "GCM set tag");
    if (EVP_DecryptFinal_ex(a->open, out + len, &outl) <= 0) {
        OPENSSL_cleanse(out, len);
        return false;
    }
    return true;
}

/* ---- whole records ---------------------------------------------------------- */

long tls_record_parse_header(const uint8_t hdr[TLS_HEADER_LEN])
{
    size_t frag_len = (size_t)hdr[3] << 8 | hdr[4];

    if (hdr[0] < TLS_CT_CCS || hdr[0] > TLS_CT_APPDATA)
        return -1;
    if (hdr[1] != TLS_VERSION_MAJOR || hdr[2] != TLS_VERSION_MINOR)
        return -1;
    if (frag_len < TLS_EXPLICIT_NONCE_LEN + TLS_TAG_LEN ||
        frag_len > TLS_EXPLICIT_NONCE_LEN + TLS_MAX_PLAINTEXT + TLS_TAG_LEN)
        return -1;
    return (long)(TLS_HEADER_LEN + frag_len);
}

size_t tls_record_seal(struct tls_aead *a, uint64_t seq, uint8_t type, const uint8_t *pt,
                       size_t len, uint8_t *out)
{
    uint8_t *payload = out + TLS_PAYLOAD_OFFSET;

    assert(len <= TLS_MAX_PLAINTEXT);
    tls_record_write_header(out, seq, type, len);
    gcm_seal(a, seq, type, out + TLS_HEADER_LEN, pt, len, NULL, 0, payload, payload + len);
    return len + TLS_RECORD_OVERHEAD;
}

size_t tls_record_seal2(struct tls_aead *a, uint64_t seq, uint8_t type, const uint8_t *pt,
                        size_t len, const uint8_t *pt2, size_t len2, uint8_t *out)
{
    uint8_t *payload = out + TLS_PAYLOAD_OFFSET;

    assert(len + len2 <= TLS_MAX_PLAINTEXT);
    tls_record_write_header(out, seq, type, len + len2);
    gcm_seal(a, seq, type, out + TLS_HEADER_LEN, pt, len, pt2, len2, payload, payload + len + len2);
    return len + len2 + TLS_RECORD_OVERHEAD;
}

size_t tls_record_frame_plain(uint64_t seq, uint8_t type, const uint8_t *pt, size_t len,
                              uint8_t *out)
{
    uint8_t *payload = out + TLS_PAYLOAD_OFFSET;

    assert(len <= TLS_MAX_PLAINTEXT);
    tls_record_write_header(out, seq, type, len);
    if (pt != payload && len > 0)
        memcpy(payload, pt, len);
    memset(payload + len, 0, TLS_TAG_LEN);
    return len + TLS_RECORD_OVERHEAD;
}

long tls_record_open(struct tls_aead *a, uint64_t seq, uint8_t *rec, size_t rec_len, uint8_t **pt)
{
    if (rec_len < TLS_HEADER_LEN)
        return -1;
    long want = tls_record_parse_header(rec);
    if (want < 0 || (size_t)want != rec_len)
        return -1;

    size_t len = rec_len - TLS_RECORD_OVERHEAD;
    uint8_t *payload = rec + TLS_PAYLOAD_OFFSET;
    if (!gcm_open(a, seq, rec[0], rec + TLS_HEADER_LEN, payload, len, payload + len, payload))
        return -1;
    *pt = payload;
    return (long)len;
}

void tls_record_xor_keystream(struct tls_aead *a, const uint8_t explicit_nonce[8], size_t off,
                              uint8_t *buf, size_t len)
{
    uint8_t ctr_block[GCM_BLOCK_LEN];
    int outl;

    assert(off <= TLS_MAX_PLAINTEXT && len <= TLS_MAX_PLAINTEXT - off);
    if (len == 0)
        return;
    build_iv(a, ctr_block, explicit_nonce);
    put_be32(ctr_block + GCM_IV_LEN, (uint32_t)(GCM_FIRST_PAYLOAD_CTR + off / GCM_BLOCK_LEN));
    /* Setting the IV also resets the partial-block position. */
    crypto_check(EVP_EncryptInit_ex(a->ctr, NULL, NULL, NULL, ctr_block), "CTR set IV");

    size_t skip = off % GCM_BLOCK_LEN;
    if (skip > 0) {
        uint8_t discard[GCM_BLOCK_LEN] = {0};
        crypto_check(EVP_EncryptUpdate(a->ctr, discard, &outl, discard, (int)skip), "CTR skip");
    }
    crypto_check(EVP_EncryptUpdate(a->ctr, buf, &outl, buf, (int)len), "CTR xor");
    assert((size_t)outl == len);
}

/* ---- receive-side reassembler ------------------------------------------------ */

enum rx_offload {
    RX_OFFLOAD_NONE,
    RX_OFFLOAD_PARTIAL,
    RX_OFFLOAD_FULL,
};

struct tls_rx {
    struct tls_aead *aead; /* borrowed */
    uint64_t seq;          /* number of the record being received */
    uint64_t stream_off;   /* stream bytes consumed */
    int err;               /* sticky: TLS_RX_OK or a TLS_RX_ERR_* */

    /* The record being reassembled in buf. rec_len == 0 means the header is
     * not complete yet (RX_EXPECT_HEADER); otherwise have < rec_len bytes
     * of a rec_len-byte record are in buf. */
    size_t have;
    size_t rec_len;
    /* dec_seen: some payload/tag byte of this record came marked decrypted.
     * sw_auth: some byte (header included) came unmarked, or marked with a
     * view the reassembler does not share: the record is authenticated in
     * software. Once sw_auth is set buf holds pure ciphertext (marked payload
     * bytes are re-encrypted as they arrive); before, buf holds NIC
     * plaintext from the payload start up to have. */
    bool dec_seen;
    bool sw_auth;
    /* The NIC walk of the record's trusted bytes (valid while have > 0 and
     * !sw_auth), and of the chunk being fed (valid while it is trusted). */
    uint32_t rec_walk;
    uint32_t chunk_walk;

    struct tls_rx_stats stats;
    uint8_t buf[TLS_MAX_RECORD_LEN];
};

struct tls_rx *tls_rx_new(struct tls_aead *a, uint64_t first_seq)
{
    assert(a);
    struct tls_rx *rx = calloc(1, sizeof(*rx));
    if (!rx)
        return NULL;
    rx->aead = a;
    rx->seq = first_seq;
    return rx;
}

void tls_rx_free(struct tls_rx *rx)
{
    if (!rx)
        return;
    OPENSSL_cleanse(rx, sizeof(*rx));
    free(rx);
}

void tls_rx_get_stats(const struct tls_rx *rx, struct tls_rx_stats *out)
{
    *out = rx->stats;
}

uint64_t tls_rx_next_seq(const struct tls_rx *rx)
{
    return rx->seq;
}

uint64_t tls_rx_stream_offset(const struct tls_rx *rx)
{
    return rx->stream_off;
}

bool tls_rx_current_record(const struct tls_rx *rx, uint64_t *start_off, size_t *rec_len)
{
    if (rx->rec_len == 0)
        return false;
    *start_off = rx->stream_off - rx->have;
    *rec_len = rx->rec_len;
    return true;
}

const char *tls_rx_strerror(int err)
{
    switch (err) {
    case TLS_RX_OK:
        return "ok";
    case TLS_RX_ERR_BAD_MAC:
        return "record authentication failed (bad_record_mac)";
    case TLS_RX_ERR_MALFORMED:
        return "malformed record header";
    case TLS_RX_ERR_STOPPED:
        return "fed after the record callback stopped the stream";
    default:
        return "unknown tls_rx error";
    }
}

static int rx_fail(struct tls_rx *rx, int err)
{
    rx->err = err;
    if (err == TLS_RX_ERR_BAD_MAC)
        rx->stats.decrypt_errors++;
    return err;
}

static int rx_deliver(struct tls_rx *rx, enum rx_offload how, uint8_t type, const uint8_t *pt,
                      size_t len, const uint8_t *pt2, size_t len2, tls_rx_record_fn fn, void *arg)
{
    rx->seq++;
    rx->stats.records++;
    rx->stats.bytes_plaintext += len + len2;
    switch (how) {
    case RX_OFFLOAD_FULL:
        rx->stats.records_full_offload++;
        break;
    case RX_OFFLOAD_PARTIAL:
        rx->stats.records_partial_offload++;
        break;
    case RX_OFFLOAD_NONE:
        rx->stats.records_no_offload++;
        break;
    }
    if (fn(arg, type, pt, len, pt2, len2) != 0)
        return rx_fail(rx, TLS_RX_ERR_STOPPED);
    return TLS_RX_OK;
}

/* Return value of a feed that ended early: a stop requested by the
 * callback is not an error for the feed that delivered the record. */
static int rx_feed_result(int rc)
{
    return rc == TLS_RX_ERR_STOPPED ? TLS_RX_OK : rc;
}

/* Fast path: the whole record rec[0..rec_len) is inside one chunk. */
static int rx_whole_record(struct tls_rx *rx, const uint8_t *rec, size_t rec_len, bool decrypted,
                           tls_rx_record_fn fn, void *arg)
{
    size_t len = rec_len - TLS_RECORD_OVERHEAD;
    const uint8_t *payload = rec + TLS_PAYLOAD_OFFSET;

    if (decrypted) /* the NIC decrypted and authenticated it: zero copy */
        return rx_deliver(rx, RX_OFFLOAD_FULL, rec[0], payload, len, NULL, 0, fn, arg);

    uint8_t *out = rx->buf + TLS_PAYLOAD_OFFSET;
    if (!gcm_open(rx->aead, rx->seq, rec[0], rec + TLS_HEADER_LEN, payload, len, payload + len,
                  out))
        return rx_fail(rx, TLS_RX_ERR_BAD_MAC);
    return rx_deliver(rx, RX_OFFLOAD_NONE, rec[0], out, len, NULL, 0, fn, arg);
}

/* XOR the keystream over buf[from, to) (record offsets), clipped to the
 * payload: turns NIC-decrypted bytes back into ciphertext. */
static void rx_reencrypt(struct tls_rx *rx, size_t from, size_t to)
{
    size_t payload_end = rx->rec_len - TLS_TAG_LEN;

    if (to > payload_end)
        to = payload_end;
    if (from >= to)
        return;
    tls_record_xor_keystream(rx->aead, rx->buf + TLS_HEADER_LEN, from - TLS_PAYLOAD_OFFSET,
                             rx->buf + from, to - from);
}

enum rx_chunk {
    CHUNK_WIRE,     /* bytes as they came off the wire */
    CHUNK_TRUSTED,  /* NIC plaintext, with a view equal to ours */
    CHUNK_DISTRUST, /* NIC plaintext, with a view we do not share */
};

/* Append n bytes of the current record to buf. */
static void rx_append(struct tls_rx *rx, const uint8_t *src, size_t n, enum rx_chunk kind)
{
    size_t from = rx->have, to = from + n;

    memcpy(rx->buf + from, src, n);
    rx->stats.bytes_reassembled += n;
    rx->have = to;
    if (kind == CHUNK_TRUSTED && from == 0)
        rx->rec_walk = rx->chunk_walk; /* a trusted chunk that runs into this record */
    if (kind != CHUNK_TRUSTED && !rx->sw_auth) {
        /* Software authenticates this record: what the NIC decrypted so
           far goes back to ciphertext. */
        if (rx->dec_seen)
            rx_reencrypt(rx, TLS_PAYLOAD_OFFSET, from);
        rx->sw_auth = true;
    }
    if (kind == CHUNK_WIRE || to <= TLS_PAYLOAD_OFFSET) /* header, nonce: never encrypted */
        return;
    if (from < TLS_PAYLOAD_OFFSET)
        from = TLS_PAYLOAD_OFFSET;
    rx->dec_seen = true;
    if (rx->sw_auth)
        rx_reencrypt(rx, from, to);
}

/* The buffered record is complete: authenticate unless fully offloaded. */
static int rx_finish_buffered(struct tls_rx *rx, tls_rx_record_fn fn, void *arg)
{
    uint8_t *rec = rx->buf;
    size_t len = rx->rec_len - TLS_RECORD_OVERHEAD;
    uint8_t *payload = rec + TLS_PAYLOAD_OFFSET;
    enum rx_offload how = !rx->sw_auth   ? RX_OFFLOAD_FULL
                          : rx->dec_seen ? RX_OFFLOAD_PARTIAL
                                         : RX_OFFLOAD_NONE;

    rx->have = 0;
    rx->rec_len = 0;
    rx->dec_seen = false;
    rx->sw_auth = false;
    if (how != RX_OFFLOAD_FULL && !gcm_open(rx->aead, rx->seq, rec[0], rec + TLS_HEADER_LEN,
                                            payload, len, payload + len, payload))
        return rx_fail(rx, TLS_RX_ERR_BAD_MAC);
    /* buf is not touched again before fn returns. */
    return rx_deliver(rx, how, rec[0], payload, len, NULL, 0, fn, arg);
}

/* The buffered record ends with tail[0..n), and the NIC decrypted and
   authenticated it whole (every chunk trusted, one walk): delivered as what
   buf holds followed by the rest of the payload where it lies in tail. */
static int rx_finish_split(struct tls_rx *rx, const uint8_t *tail, size_t n, tls_rx_record_fn fn,
                           void *arg)
{
    size_t have = rx->have, payload_end = rx->rec_len - TLS_TAG_LEN;
    const uint8_t *pt = rx->buf + TLS_PAYLOAD_OFFSET, *pt2 = tail;
    size_t len = 0, len2 = 0;
    if (have < TLS_PAYLOAD_OFFSET) { /* the nonce's end is in tail */
        pt2 = tail + (TLS_PAYLOAD_OFFSET - have);
        len2 = payload_end - TLS_PAYLOAD_OFFSET;
    } else if (have < payload_end) {
        len = have - TLS_PAYLOAD_OFFSET;
        len2 = payload_end - have;
    } else { /* only tag bytes in tail */
        len = payload_end - TLS_PAYLOAD_OFFSET;
    }
    assert(have + n == rx->rec_len && (size_t)(pt2 - tail) + len2 <= n);
    rx->have = 0;
    rx->rec_len = 0;
    rx->dec_seen = false;
    rx->sw_auth = false;
    /* buf is not touched again before fn returns. */
    return rx_deliver(rx, RX_OFFLOAD_FULL, rx->buf[0], pt, len, pt2, len2, fn, arg);
}

/* What a chunk's mark is worth: trusted only if the NIC's view of its first
   byte is exactly ours (record number, offset, and the record's length) and,
   inside a record, it comes from the same NIC walk as the record's earlier
   bytes: marks of two walks would put together bytes that no single tag
   check of the NIC covered. */
static enum rx_chunk rx_classify(struct tls_rx *rx, const struct tls_rx_mark *mark)
{
    if (!mark)
        return CHUNK_WIRE;
    if (mark->record_sn == rx->seq && mark->rec_off == rx->have && mark->rec_len == rx->rec_len &&
        (rx->have == 0 || rx->sw_auth || mark->walk == rx->rec_walk)) {
        rx->chunk_walk = mark->walk;
        return CHUNK_TRUSTED;
    }
    rx->stats.view_mismatch++;
    return CHUNK_DISTRUST;
}

struct tls_rx_mark tls_rx_mark_skip(struct tls_rx_mark m, uint32_t skip)
{
    if (skip == 0 || m.rec_off == TLS_RX_MARK_UNKNOWN)
        return m;
    uint64_t off = (uint64_t)m.rec_off + skip;
    /* Without the record's length the claim reaches only to the header's end. */
    uint64_t limit = m.rec_len ? m.rec_len : TLS_HEADER_LEN;
    m.rec_off = off < limit ? (uint32_t)off : TLS_RX_MARK_UNKNOWN;
    return m;
}

int tls_rx_feed(struct tls_rx *rx, const uint8_t *data, size_t len, const struct tls_rx_mark *mark,
                tls_rx_record_fn fn, void *arg)
{
    assert(fn);
    if (rx->err)
        return rx->err;

    enum rx_chunk kind = rx_classify(rx, mark);
    while (len > 0) {
        /* Fast path: a record boundary and the whole record in this chunk
           (not for distrusted NIC plaintext, which goes through buf). */
        if (rx->have == 0 && len >= TLS_HEADER_LEN && kind != CHUNK_DISTRUST) {
            long rec_len = tls_record_parse_header(data);
            if (rec_len < 0)
                return rx_fail(rx, TLS_RX_ERR_MALFORMED);
            if ((size_t)rec_len <= len) {
                rx->stream_off += (size_t)rec_len;
                int rc = rx_whole_record(rx, data, (size_t)rec_len, kind == CHUNK_TRUSTED, fn, arg);
                if (rc)
                    return rx_feed_result(rc);
                data += rec_len;
                len -= (size_t)rec_len;
                continue;
            }
        }

        /* Slow path: collect the header, then the body, in buf. */
        size_t want = (rx->rec_len ? rx->rec_len : TLS_HEADER_LEN) - rx->have;
        size_t n = len < want ? len : want;
        if (rx->rec_len && n == want && kind == CHUNK_TRUSTED && !rx->sw_auth) {
            /* The end of a record the NIC decrypted whole: not copied. */
            rx->stream_off += n;
            int rc = rx_finish_split(rx, data, n, fn, arg);
            if (rc)
                return rx_feed_result(rc);
            data += n;
            len -= n;
            continue;
        }
        rx_append(rx, data, n, kind);
        rx->stream_off += n;
        data += n;
        len -= n;

        if (rx->rec_len == 0) {
            if (rx->have < TLS_HEADER_LEN)
                continue; /* chunk exhausted mid-header */
            long rec_len = tls_record_parse_header(rx->buf);
            if (rec_len < 0)
                return rx_fail(rx, TLS_RX_ERR_MALFORMED);
            rx->rec_len = (size_t)rec_len;
        } else if (rx->have == rx->rec_len) {
            int rc = rx_finish_buffered(rx, fn, arg);
            if (rc)
                return rx_feed_result(rc);
        }
    }
    return TLS_RX_OK;
}
