/* fuzz_tls_rx.c - libFuzzer target: the TLS record reassembler (tls_rx_feed in
 * tls/tls_record.c) fed a record stream in chunks of the fuzzer's choosing.
 *
 * The fuzzer cannot forge AES-GCM records, so the input is a program that
 * builds the stream: valid records sealed here under a fixed key, raw bytes,
 * and bit flips anywhere in what was built so far. Input layout:
 *
 *   fuzz_util.h split header (chunk lengths)
 *   byte  marks: per chunk i, bits 2*(i%4)..+1: 0 or 3 wire bytes (mark NULL),
 *         1 honest NIC (payload decrypted here, true view), 2 NIC plaintext
 *         with a view that differs from the true one
 *   byte  stop: the record callback stops the rx at delivery number stop
 *         (0 = never)
 *   byte  keys: bit 0 AES-256 (else AES-128); bit 7 first record number
 *         2^64 - 1 - (bits 1..6), else bits 1..6 (sequence numbers wrap)
 *   ops   until the input ends, each one byte op then its operands:
 *           op % 4 == 0  record: type (1), length (2) mod 64
 *           op % 4 == 1  record: type (1), length (2) mod 2^14 + 1
 *           op % 4 == 2  raw bytes: count (1), then that many bytes
 *           op % 4 == 3  flip: position (2) mod stream length, bit (1)
 *         Record k is sealed with sequence number first + k; its plaintext is
 *         a pattern of k.
 *
 * Ground truth: the records the rx may deliver are the longest prefix of the
 * final stream that equals sealed records 0, 1, 2, ... byte for byte (any
 * other bytes there fail authentication). Properties, for the stream fed
 * whole without marks, in the fuzzer's chunks without marks, and in the
 * fuzzer's chunks with marks (inside that prefix only):
 *   - exactly those records are delivered (up to the stop), in order, each
 *     with its type and plaintext, at its stream offset, with the next
 *     sequence number advanced;
 *   - the outcome after the prefix is predicted from the bytes there: a bad
 *     header is MALFORMED, a complete record BAD_MAC, else OK (incomplete);
 *   - errors and stops are sticky; counters add up (records by offload kind,
 *     plaintext bytes, decrypt errors, distrusted views).
 */
#include "fuzz_util.h"
#include "tls_record.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STREAM_CAP  (48 * 1024) /* a few records of the maximum size */
#define RECORDS_MAX 48
#define FEEDS_MAX   1024

/* ---- Building the stream -------------------------------------------------- */

struct sealed {
    size_t at;  /* offset in sealed_bytes */
    size_t len; /* whole record */
    uint8_t type;
    size_t pt_len;
};

struct build {
    uint8_t stream[STREAM_CAP];
    size_t len;
    uint8_t sealed_bytes[STREAM_CAP];
    size_t sealed_len;
    struct sealed rec[RECORDS_MAX];
    size_t nrec;
    uint64_t first_seq;
};

static void record_plaintext(uint8_t *pt, size_t len, size_t k)
{
    for (size_t i = 0; i < len; i++)
        pt[i] = (uint8_t)(i * 7 + k * 13 + 1);
}

/* Runs the op program; stops at the end of input or when a buffer is full. */
static void build_stream(struct build *b, struct tls_aead *aead, const uint8_t *p, size_t n)
{
    static uint8_t pt[TLS_MAX_PLAINTEXT];
    size_t i = 0;

    b->len = b->sealed_len = b->nrec = 0;
    while (i < n) {
        uint8_t op = p[i++];
        switch (op % 4) {
        case 0:
        case 1: {
            if (n - i < 3 || b->nrec == RECORDS_MAX)
                return;
            uint8_t type = (uint8_t)(TLS_CT_CCS + p[i] % 4);
            size_t v = (size_t)p[i + 1] << 8 | p[i + 2];
            size_t len = op % 4 == 0 ? v % 64 : v % (TLS_MAX_PLAINTEXT + 1);
            i += 3;
            if (len + TLS_RECORD_OVERHEAD > STREAM_CAP - b->len)
                return;
            struct sealed *r = &b->rec[b->nrec];
            record_plaintext(pt, len, b->nrec);
            *r = (struct sealed){
                .at = b->sealed_len, .len = len + TLS_RECORD_OVERHEAD, .type = type, .pt_len = len};
            size_t w = tls_record_seal(aead, b->first_seq + b->nrec, type, pt, len,
                                       b->sealed_bytes + r->at);
            FUZZ_CHECK(w == r->len, "seal wrote %zu of %zu", w, r->len);
            memcpy(b->stream + b->len, b->sealed_bytes + r->at, r->len);
            b->len += r->len;
            b->sealed_len += r->len;
            b->nrec++;
            break;
        }
        case 2: {
            if (i == n)
                return;
            size_t c = p[i++];
            if (c > n - i)
                c = n - i;
            if (c > STREAM_CAP - b->len)
                return;
            memcpy(b->stream + b->len, p + i, c);
            b->len += c;
            i += c;
            break;
        }
        default:
            if (n - i < 3)
                return;
            if (b->len > 0)
                b->stream[((size_t)p[i] << 8 | p[i + 1]) % b->len] ^=
                    (uint8_t)(1u << (p[i + 2] % 8));
            i += 3;
            break;
        }
    }
}

/* Header check written independently of tls_record_parse_header. */
static bool header_valid(const uint8_t *h)
{
    size_t frag = (size_t)h[3] << 8 | h[4];
    return h[0] >= 20 && h[0] <= 23 && h[1] == 3 && h[2] == 3 && frag >= 8 + 16 &&
           frag <= 8 + TLS_MAX_PLAINTEXT + 16;
}

struct expect {
    size_t authentic;          /* records in the authentic prefix */
    size_t prefix_len;         /* its length in bytes */
    size_t start[RECORDS_MAX]; /* stream offset of each of them */
    int tail_rc;               /* outcome of the bytes after the prefix */
    size_t tail_rec_len;       /* the record starting there, if its header is valid; else 0 */
};

static void expect_outcome(const struct build *b, struct expect *e)
{
    size_t pos = 0, k = 0;

    while (k < b->nrec && b->rec[k].len <= b->len - pos &&
           memcmp(b->stream + pos, b->sealed_bytes + b->rec[k].at, b->rec[k].len) == 0) {
        e->start[k] = pos;
        pos += b->rec[k].len;
        k++;
    }
    e->authentic = k;
    e->prefix_len = pos;
    size_t left = b->len - pos;
    e->tail_rec_len = 0;
    if (left >= TLS_HEADER_LEN && header_valid(b->stream + pos))
        e->tail_rec_len = TLS_HEADER_LEN + ((size_t)b->stream[pos + 3] << 8 | b->stream[pos + 4]);
    if (left < TLS_HEADER_LEN)
        e->tail_rc = TLS_RX_OK;
    else if (!header_valid(b->stream + pos))
        e->tail_rc = TLS_RX_ERR_MALFORMED;
    else if (TLS_HEADER_LEN + ((size_t)b->stream[pos + 3] << 8 | b->stream[pos + 4]) <= left)
        e->tail_rc = TLS_RX_ERR_BAD_MAC; /* complete, and not sealed record k */
    else
        e->tail_rc = TLS_RX_OK;
}

/* ---- Feeding -------------------------------------------------------------- */

enum mark_mode { MARK_WIRE, MARK_HONEST, MARK_WRONG_VIEW };

struct run {
    struct tls_aead *aead;
    const struct build *b;
    const struct expect *e;
    struct tls_rx *rx;
    size_t stop_at; /* 0 = never */
    size_t delivered;
    uint64_t pt_bytes;
    struct fuzz_buf log; /* type, length, plaintext per delivery */
    size_t fed_wrong_views;
    int first_err;
    const char *what;
};

static int on_record(void *arg, uint8_t type, const uint8_t *pt, size_t len1, const uint8_t *pt2,
                     size_t len2)
{
    static uint8_t want[TLS_MAX_PLAINTEXT];
    struct run *r = arg;
    const struct build *b = r->b;
    size_t d = r->delivered, len = len1 + len2;

    FUZZ_CHECK(d < r->e->authentic, "%s: delivered record %zu, only %zu authentic", r->what, d,
               r->e->authentic);
    const struct sealed *s = &b->rec[d];
    FUZZ_CHECK(type == s->type && len == s->pt_len,
               "%s: record %zu is type %u len %zu, sealed %u %zu", r->what, d, type, len, s->type,
               s->pt_len);
    record_plaintext(want, len, d);
    FUZZ_CHECK((len1 == 0 || memcmp(pt, want, len1) == 0) &&
                   (len2 == 0 || memcmp(pt2, want + len1, len2) == 0),
               "%s: record %zu plaintext differs", r->what, d);
    FUZZ_CHECK(tls_rx_stream_offset(r->rx) == r->e->start[d] + s->len,
               "%s: record %zu delivered at offset %llu, ends at %zu", r->what, d,
               (unsigned long long)tls_rx_stream_offset(r->rx), r->e->start[d] + s->len);
    FUZZ_CHECK(tls_rx_next_seq(r->rx) == b->first_seq + d + 1, "%s: next seq after %zu", r->what,
               d);
    uint64_t hdr[2] = {type, len};
    fuzz_buf_put(&r->log, hdr, sizeof(hdr));
    fuzz_buf_put(&r->log, pt, len1);
    fuzz_buf_put(&r->log, pt2, len2);
    r->delivered++;
    r->pt_bytes += len;
    return r->stop_at != 0 && r->delivered == r->stop_at;
}

/* The honest NIC's view of stream byte pos: inside the authentic prefix or
 * the record right after it. */
static struct tls_rx_mark true_view(const struct run *r, size_t pos)
{
    const struct expect *e = r->e;
    size_t k = 0, start = e->prefix_len, len = e->tail_rec_len;

    if (pos < e->prefix_len) {
        while (k + 1 < e->authentic && e->start[k + 1] <= pos)
            k++;
        start = e->start[k];
        len = r->b->rec[k].len;
    } else {
        k = e->authentic;
    }
    uint32_t off = (uint32_t)(pos - start);
    return (struct tls_rx_mark){.record_sn = r->b->first_seq + k,
                                .rec_off = off,
                                .rec_len = off < TLS_HEADER_LEN ? 0 : (uint32_t)len};
}

/* Could an honest NIC mark stream[pos, pos + n)? It must have walked every
 * byte with a known record layout and authenticated every record ending in
 * it: the authentic prefix, and the record after it as long as its end (its
 * failing tag) is not in the chunk. */
static bool honest_markable(const struct expect *e, size_t pos, size_t n)
{
    return n > 0 && (pos + n <= e->prefix_len ||
                     (e->tail_rec_len && pos + n < e->prefix_len + e->tail_rec_len));
}

/* chunk[] = stream[pos, pos + n) as the NIC hands it up: payload bytes of the
 * authentic records decrypted, the record after them XORed with its
 * keystream, headers, nonces and tags as they were. */
static void nic_decrypt(const struct run *r, size_t pos, size_t n, uint8_t *chunk)
{
    static uint8_t pt[TLS_MAX_PLAINTEXT];
    const struct build *b = r->b;

    memcpy(chunk, b->stream + pos, n);
    for (size_t k = 0; k < r->e->authentic; k++) {
        size_t s = r->e->start[k] + TLS_PAYLOAD_OFFSET, e = s + b->rec[k].pt_len;
        size_t from = s > pos ? s : pos, to = e < pos + n ? e : pos + n;
        if (from >= to)
            continue;
        record_plaintext(pt, b->rec[k].pt_len, k);
        memcpy(chunk + (from - pos), pt + (from - s), to - from);
    }
    if (r->e->tail_rec_len) {
        size_t s = r->e->prefix_len + TLS_PAYLOAD_OFFSET,
               e = r->e->prefix_len + r->e->tail_rec_len - TLS_TAG_LEN;
        size_t from = s > pos ? s : pos, to = e < pos + n ? e : pos + n;
        if (from < to)
            tls_record_xor_keystream(r->aead, b->stream + r->e->prefix_len + TLS_HEADER_LEN,
                                     from - s, chunk + (from - pos), to - from);
    }
}

/* One tls_rx_feed; tracks the first error (or the stop), which must stick. */
static void run_feed(struct run *r, const uint8_t *p, size_t n, const struct tls_rx_mark *mark)
{
    int rc = tls_rx_feed(r->rx, p, n, mark, on_record, r);

    FUZZ_CHECK(rc == TLS_RX_OK || rc == TLS_RX_ERR_BAD_MAC || rc == TLS_RX_ERR_MALFORMED ||
                   rc == TLS_RX_ERR_STOPPED,
               "%s: rc %d", r->what, rc);
    if (r->first_err) {
        FUZZ_CHECK(rc == r->first_err, "%s: error %d not sticky (now %d)", r->what, r->first_err,
                   rc);
        return;
    }
    FUZZ_CHECK(rc != TLS_RX_ERR_STOPPED, "%s: stopped without a stop", r->what);
    if (rc != TLS_RX_OK)
        r->first_err = rc;
    else if (r->stop_at && r->delivered == r->stop_at)
        r->first_err = TLS_RX_ERR_STOPPED; /* the stopping feed is OK, later ones say so */
}

static void run_stream(struct run *r, struct tls_aead *aead, struct fuzz_split split, uint8_t marks,
                       bool use_marks)
{
    static uint8_t chunk[STREAM_CAP];
    const struct build *b = r->b;
    size_t pos = 0, i = 0;

    r->aead = aead;
    r->rx = tls_rx_new(aead, b->first_seq);
    FUZZ_CHECK(r->rx != NULL, "tls_rx_new failed");
    while (pos < b->len) {
        /* Tiny chunks over large records cost one feed per byte: past
           FEEDS_MAX chunks the rest goes in one. */
        size_t n = i < FEEDS_MAX ? fuzz_split_next(&split, b->len - pos) : b->len - pos;
        enum mark_mode mode =
            use_marks ? (enum mark_mode)((marks >> (2 * (i % 4))) & 3) : MARK_WIRE;
        i++;
        if (mode > MARK_WRONG_VIEW || n == 0 ||
            (mode == MARK_HONEST && !honest_markable(r->e, pos, n)))
            mode = MARK_WIRE;
        if (mode == MARK_WIRE) {
            run_feed(r, b->stream + pos, n, NULL);
        } else {
            struct tls_rx_mark m = true_view(r, pos);
            if (mode == MARK_WRONG_VIEW) {
                switch (i % 4) {
                case 0:
                    m.record_sn++;
                    break;
                case 1:
                    m.rec_off = m.rec_off + 1;
                    break;
                case 2:
                    m.rec_len ^= 1;
                    break;
                default:
                    m.rec_off = TLS_RX_MARK_UNKNOWN;
                    break;
                }
                if (!r->first_err) /* a dead rx looks at nothing */
                    r->fed_wrong_views++;
            }
            nic_decrypt(r, pos, n, chunk);
            run_feed(r, chunk, n, &m);
        }
        pos += n;
    }
}

static void run_check(struct run *r, bool marked)
{
    const struct expect *e = r->e;
    size_t want = e->authentic;
    int want_rc = e->tail_rc;
    struct tls_rx_stats st;

    if (r->stop_at && r->stop_at <= e->authentic) {
        want = r->stop_at;
        want_rc = TLS_RX_ERR_STOPPED;
    }
    FUZZ_CHECK(r->delivered == want, "%s: %zu records delivered, %zu expected", r->what,
               r->delivered, want);
    FUZZ_CHECK(r->first_err == want_rc, "%s: outcome %d (%s), expected %d (%s)", r->what,
               r->first_err, tls_rx_strerror(r->first_err), want_rc, tls_rx_strerror(want_rc));
    tls_rx_get_stats(r->rx, &st);
    FUZZ_CHECK(st.records == r->delivered && st.bytes_plaintext == r->pt_bytes,
               "%s: stats records %llu bytes %llu", r->what, (unsigned long long)st.records,
               (unsigned long long)st.bytes_plaintext);
    FUZZ_CHECK(st.records_full_offload + st.records_partial_offload + st.records_no_offload ==
                   st.records,
               "%s: offload kinds do not add up", r->what);
    FUZZ_CHECK(st.decrypt_errors == (r->first_err == TLS_RX_ERR_BAD_MAC), "%s: decrypt_errors %llu",
               r->what, (unsigned long long)st.decrypt_errors);
    FUZZ_CHECK(st.view_mismatch == r->fed_wrong_views, "%s: view_mismatch %llu, fed %zu", r->what,
               (unsigned long long)st.view_mismatch, r->fed_wrong_views);
    if (!marked)
        FUZZ_CHECK(st.records_no_offload == st.records, "%s: offload counted without marks",
                   r->what);
}

/* ---- Entry ---------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t key[32] = "anic fuzz key, never a real one";
    static const uint8_t salt[4] = {0xa1, 0xc0, 0xff, 0xee};
    static struct tls_aead *aead128, *aead256;
    static struct build b;
    struct fuzz_split split;
    const uint8_t *p;
    size_t n;

    if (!aead128) {
        aead128 = tls_aead_new(key, 16, salt);
        aead256 = tls_aead_new(key, 32, salt);
        FUZZ_CHECK(aead128 && aead256, "tls_aead_new failed");
    }
    fuzz_split_input(data, size, &split, &p, &n);
    if (n < 3)
        return 0;
    uint8_t marks = p[0], stop = p[1], keys = p[2];
    struct tls_aead *aead = keys & 1 ? aead256 : aead128;
    uint64_t low = (keys >> 1) & 0x3f;
    b.first_seq = keys & 0x80 ? UINT64_MAX - low : low;
    build_stream(&b, aead, p + 3, n - 3);

    struct expect e;
    expect_outcome(&b, &e);

    struct run runs[3] = {
        {.b = &b, .e = &e, .stop_at = stop, .what = "whole, no marks"},
        {.b = &b, .e = &e, .stop_at = stop, .what = "chunks, no marks"},
        {.b = &b, .e = &e, .stop_at = stop, .what = "chunks, NIC marks"},
    };
    run_stream(&runs[0], aead, fuzz_split_restart(&split, FUZZ_SPLIT_WHOLE), 0, false);
    run_stream(&runs[1], aead, fuzz_split_restart(&split, FUZZ_SPLIT_CHOSEN), 0, false);
    run_stream(&runs[2], aead, fuzz_split_restart(&split, FUZZ_SPLIT_CHOSEN), marks, true);
    for (size_t i = 0; i < 3; i++) {
        run_check(&runs[i], i == 2);
        FUZZ_CHECK(fuzz_buf_eq(&runs[0].log, &runs[i].log), "%s: deliveries differ", runs[i].what);
    }
    for (size_t i = 0; i < 3; i++) {
        tls_rx_free(runs[i].rx);
        fuzz_buf_free(&runs[i].log);
    }
    return 0;
}
