/*
 * tls_record.h — anic's TLS 1.2 AES-GCM record layer (RFC 5246 §6.2.3.3, RFC 5288).
 *
 * Used after an mbed TLS handshake has exported the session keys, in the
 * style of Linux kernel TLS. Pure: bytes in, bytes out; no I/O, no threads,
 * no global state. One struct tls_aead per direction; neither it nor a
 * struct tls_rx may be used from two threads at once.
 *
 * A record on the wire (all integers big-endian):
 *
 *   0      1    3        5                 13                  13+n        13+n+16
 *   +------+----+--------+-----------------+-------------------+-----------+
 *   | type | 03 03 | len | explicit nonce  | payload (n bytes) | tag (16)  |
 *   +------+----+--------+-----------------+-------------------+-----------+
 *    <---------- never encrypted ---------> <-- AES-CTR ------>  GHASH tag
 *
 *   len            = 8 + n + 16, n <= 2^14 (TLS_MAX_PLAINTEXT)
 *   explicit nonce = the record sequence number (as OpenSSL and kTLS do)
 *   GCM nonce      = salt (4, implicit IV from the key block) || explicit nonce
 *   AAD            = seq (8) || type || 03 03 || n (2)
 *
 * GCM counter blocks: J0 = nonce || 00000001 masks the tag; payload byte k
 * is XORed with byte k % 16 of AES(nonce || be32(2 + k / 16)).
 */
#ifndef ANIC_TLS_RECORD_H
#define ANIC_TLS_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS_HEADER_LEN         5
#define TLS_EXPLICIT_NONCE_LEN 8
#define TLS_TAG_LEN            16
#define TLS_SALT_LEN           4 /* implicit part of the GCM nonce (RFC 5288 §3) */
#define TLS_RECORD_OVERHEAD    (TLS_HEADER_LEN + TLS_EXPLICIT_NONCE_LEN + TLS_TAG_LEN)
/* Offset of the first payload byte from the start of the record. */
#define TLS_PAYLOAD_OFFSET (TLS_HEADER_LEN + TLS_EXPLICIT_NONCE_LEN)
#define TLS_MAX_PLAINTEXT  16384
/* Largest header length field any peer may send (what the NIC's header
 * search accepts); an AES-GCM record is stricter, see tls_record_parse_header. */
#define TLS_MAX_FRAGMENT_LEN (TLS_MAX_PLAINTEXT + 256)
/* Largest complete AES-GCM record, header included. */
#define TLS_MAX_RECORD_LEN (TLS_MAX_PLAINTEXT + TLS_RECORD_OVERHEAD)
#define TLS_VERSION_MAJOR  3 /* TLS 1.2 = 3.3 */
#define TLS_VERSION_MINOR  3

enum tls_content_type {
    TLS_CT_CCS = 20,
    TLS_CT_ALERT = 21,
    TLS_CT_HANDSHAKE = 22,
    TLS_CT_APPDATA = 23,
};

/* ---- AEAD: one direction's key ---------------------------------------- */

/* One direction: salt plus reusable libcrypto contexts holding the key
 * schedule (the raw key is not kept). Per record only the IV is set. */
struct tls_aead;

/* key_len must be 16 (AES-128-GCM) or 32 (AES-256-GCM). Returns NULL on a
 * bad key length or allocation failure. The key and salt are copied. */
struct tls_aead *tls_aead_new(const uint8_t *key, size_t key_len, const uint8_t salt[4]);
/* Frees a (NULL is fine), wiping key material. */
void tls_aead_free(struct tls_aead *a);

/* ---- Whole records ------------------------------------------------------ */

/* Validate a record header: known content type, version 3.3, and a length
 * field that an AES-GCM record can have, i.e. within
 * [TLS_EXPLICIT_NONCE_LEN + TLS_TAG_LEN, TLS_EXPLICIT_NONCE_LEN + TLS_MAX_PLAINTEXT + TLS_TAG_LEN]
 * (anything longer would decrypt to more than 2^14 bytes, RFC 5246 §6.2.1).
 * Returns the total record length (header included) or -1. */
long tls_record_parse_header(const uint8_t hdr[TLS_HEADER_LEN]);

/* Write the header and explicit nonce (seq) of a record of type with len
 * bytes of plaintext: the first TLS_PAYLOAD_OFFSET bytes of out. */
void tls_record_write_header(uint8_t *out, uint64_t seq, uint8_t type, size_t len);

/* Seal one record into out, which needs len + TLS_RECORD_OVERHEAD bytes.
 * len <= TLS_MAX_PLAINTEXT. pt must not overlap out, except that it may be
 * exactly out + TLS_PAYLOAD_OFFSET (sealing in place). Returns the record
 * length, len + TLS_RECORD_OVERHEAD. */
size_t tls_record_seal(struct tls_aead *a, uint64_t seq, uint8_t type, const uint8_t *pt,
                       size_t len, uint8_t *out);
/* The same for the plaintext pt[0..len) followed by pt2[0..len2) (a staged
 * prefix and the caller's bytes): one record of len + len2 <=
 * TLS_MAX_PLAINTEXT bytes. Neither may overlap out. */
size_t tls_record_seal2(struct tls_aead *a, uint64_t seq, uint8_t type, const uint8_t *pt,
                        size_t len, const uint8_t *pt2, size_t len2, uint8_t *out);

/* Build the plaintext form the NIC will encrypt: header, explicit nonce
 * (= seq), plaintext, TLS_TAG_LEN zero bytes. Same size and overlap rules as
 * tls_record_seal. Returns len + TLS_RECORD_OVERHEAD. */
size_t tls_record_frame_plain(uint64_t seq, uint8_t type, const uint8_t *pt, size_t len,
                              uint8_t *out);

/* Open a complete record of exactly rec_len bytes in place (rec points at
 * the header; the nonce comes from the record, seq only enters the AAD).
 * On success returns the plaintext length and sets *pt = rec +
 * TLS_PAYLOAD_OFFSET. Returns -1 if the header is malformed, rec_len does
 * not match it, or authentication fails; then the payload bytes of rec are
 * zeroed so no unauthenticated plaintext is left behind. */
long tls_record_open(struct tls_aead *a, uint64_t seq, uint8_t *rec, size_t rec_len, uint8_t **pt);

/* XOR the GCM keystream of the record with this explicit nonce over its
 * payload bytes [off, off + len), in place (off + len <= TLS_MAX_PLAINTEXT).
 * CTR is its own inverse: this both decrypts ciphertext and re-encrypts
 * bytes the NIC decrypted. The tag is not involved. */
void tls_record_xor_keystream(struct tls_aead *a, const uint8_t explicit_nonce[8], size_t off,
                              uint8_t *buf, size_t len);

/* ---- Receive-side stream reassembler ----------------------------------- */

/*
 * struct tls_rx turns a TCP byte stream, fed in order in chunks of any size,
 * into authenticated records. It buffers at most one record
 * (TLS_MAX_RECORD_LEN bytes). A record that lies whole inside one chunk is
 * handled without copying it first.
 *
 * Each chunk may carry the NIC's "decrypted" mark (docs/design.md §5) together
 * with the NIC's view of where the chunk's first byte lies: which record,
 * which offset in it, and that record's length. A mark is *trusted* only if
 * that view equals the reassembler's own and, after the record's first
 * byte, names the same NIC walk as the record's earlier marked bytes;
 * otherwise the chunk's payload bytes are still NIC plaintext, but nothing
 * the NIC claims about them is believed (view_mismatch). Per record:
 *   every byte, header included, in trusted marked chunks
 *                -> payload delivered as is, tag ignored, no host crypto
 *                   (records_full_offload);
 *   no byte marked -> decrypted and authenticated in software
 *                   (records_no_offload);
 *   otherwise    -> marked payload bytes are re-encrypted with the keystream
 *                   (CTR is its own inverse), then the record is decrypted and
 *                   authenticated in software (records_partial_offload).
 *                   Marked tag bytes are the original tag (the NIC leaves
 *                   tags as they are) and are used unchanged.
 * Why this suffices: the NIC marks a packet only if it walked all of it in
 * one pass (walk) of its record state and authenticated every record ending
 * in it, and within a walk it decrypts each stream byte at most once. With
 * the views equal at every marked chunk, one walk for the whole record and
 * every byte marked, the NIC's record is byte for byte the host's record,
 * and the NIC checked its tag. Any other record is authenticated here,
 * whatever the NIC was fed.
 */
struct tls_rx;

enum tls_rx_err {
    TLS_RX_OK = 0,
    TLS_RX_ERR_BAD_MAC = -1,   /* authentication failed: send bad_record_mac */
    TLS_RX_ERR_MALFORMED = -2, /* bad content type, version or length field */
    TLS_RX_ERR_STOPPED = -3,   /* fed again after the record callback stopped the rx */
};

/* Counters. records = records_full_offload + records_partial_offload +
 * records_no_offload = records delivered; a record that fails
 * authentication counts only in decrypt_errors. bytes_plaintext sums the
 * delivered plaintext lengths. */
struct tls_rx_stats {
    uint64_t view_mismatch; /* marked chunks whose NIC view disagreed (distrusted) */
    uint64_t records;
    uint64_t records_full_offload;
    uint64_t records_partial_offload;
    uint64_t records_no_offload;
    uint64_t decrypt_errors;
    uint64_t bytes_plaintext;
    uint64_t bytes_reassembled; /* record bytes copied into the reassembly buffer */
};

/* Called once per authenticated record, in order. Its plaintext is
 * pt[0..len) followed by pt2[0..len2) (either may be empty), both valid only
 * during the call. len2 > 0 only for a record the NIC decrypted whole that
 * ended in a later chunk than the one it began in: the bytes of the earlier
 * chunks come from the reassembly buffer, the rest from where they lie in
 * the last chunk, not copied. Return 0 to continue, nonzero to stop. */
typedef int (*tls_rx_record_fn)(void *arg, uint8_t type, const uint8_t *pt, size_t len,
                                const uint8_t *pt2, size_t len2);

/* a is borrowed and must outlive the rx. first_seq = number of the first
 * record that will be fed. Returns NULL on allocation failure. */
struct tls_rx *tls_rx_new(struct tls_aead *a, uint64_t first_seq);
/* Frees rx (NULL is fine), wiping buffered plaintext. */
void tls_rx_free(struct tls_rx *rx);

/* The NIC's claim about a chunk it marked decrypted (every record byte in
 * it decrypted, every record ending in it authenticated), stated for the
 * chunk's first byte. A claim that cannot be stated (e.g. the chunk does not
 * start where the NIC's packet started) uses rec_off = TLS_RX_MARK_UNKNOWN:
 * such bytes are NIC plaintext that is never trusted. */
struct tls_rx_mark {
    uint64_t record_sn; /* the record the byte belongs to */
    uint32_t rec_off;   /* its offset in that record (0 = first header byte) */
    uint32_t rec_len;   /* the record's total length; 0 while rec_off < 5 */
    uint32_t walk;      /* the NIC pass that decrypted it (docs/design.md §8.1) */
};
#define TLS_RX_MARK_UNKNOWN UINT32_MAX

/* The claim for the byte skip bytes after the one m was stated for (a chunk
 * that starts inside the NIC's packet, e.g. after TCP trimmed an overlap).
 * Conservative: UNKNOWN once the claim cannot be carried that far. */
struct tls_rx_mark tls_rx_mark_skip(struct tls_rx_mark m, uint32_t skip);

/* Feed len bytes of TCP payload, in stream order. mark: NULL for bytes as
 * they came off the wire, else the NIC's claim (see struct tls_rx_mark).
 * Calls fn for each record completed by this chunk.
 * Returns TLS_RX_OK or a negative enum tls_rx_err:
 *   TLS_RX_ERR_BAD_MAC    no plaintext of the failing record was delivered;
 *   TLS_RX_ERR_MALFORMED  see tls_record_parse_header.
 * Errors are sticky: the rx is dead and every later feed returns the same
 * code without looking at its data.
 * If fn returns nonzero, the feed returns TLS_RX_OK at once, the rest of the
 * chunk is dropped, and the rx is stopped: later feeds return
 * TLS_RX_ERR_STOPPED (the caller asked for no more records). */
int tls_rx_feed(struct tls_rx *rx, const uint8_t *data, size_t len, const struct tls_rx_mark *mark,
                tls_rx_record_fn fn, void *arg);

void tls_rx_get_stats(const struct tls_rx *rx, struct tls_rx_stats *out);
/* Number of the next record to complete (inside fn: the one after the
 * record being delivered). */
uint64_t tls_rx_next_seq(const struct tls_rx *rx);
/* Stream bytes consumed since tls_rx_new. Inside fn this is the offset just
 * past the delivered record, so that record started at
 * tls_rx_stream_offset(rx) - (len + TLS_RECORD_OVERHEAD). */
uint64_t tls_rx_stream_offset(const struct tls_rx *rx);
/* The record being reassembled, once its header is complete: its start
   offset in the stream and total length. False between records. */
bool tls_rx_current_record(const struct tls_rx *rx, uint64_t *start_off, size_t *rec_len);
/* Short description of a tls_rx_feed return value. */
const char *tls_rx_strerror(int err);

#endif /* ANIC_TLS_RECORD_H */
