/* test_http.c - Check suite for apps/app_http.c: parser framing, routing,
 * streaming under back-pressure, error answers, and fuzzing.
 *
 * A fake transport captures the output and accepts a configurable amount: a
 * "window" refilled each time the test calls on_writable (like a TCP send
 * buffer being acked), optionally capped per send() call at a fixed or random
 * size. Every random choice comes from a seeded generator; the seed is printed
 * and can be set with ANIC_TEST_SEED (test_rng.h).
 */
#include <check.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "app_http.h"
#include "test_rng.h"

#define STEP_MAX (10 * 1000 * 1000) /* driver loop bound: a stall fails, never hangs */

/* A function, not a macro: arguments are often random draws. */
static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* For hot paths (every send, every driver step): a passing ck_assert records a
 * checkpoint, which costs a write per call. This only acts on failure. */
#define FAST_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg("check failed: %s", #cond);                                               \
    } while (0)

/* ---- Growable byte buffer -------------------------------------------------- */

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        FAST_CHECK(b->p != NULL);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    ck_assert(n >= 0 && (size_t)n < sizeof(tmp));
    buf_add(b, tmp, (size_t)n);
}

static void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- Fake transport ---------------------------------------------------------- */

#define FAKE_CAPTURE_MAX ((size_t)64 << 20)

struct fake_io {
    struct buf out;    /* captured bytes (first FAKE_CAPTURE_MAX, or 64 in discard mode) */
    size_t sent_total; /* all bytes accepted */
    size_t window;     /* send() accepts this many more bytes until the next refill */
    size_t refill;     /* window after fake_refill(); SIZE_MAX: unlimited */
    size_t call_max;   /* cap per send() call; 0: none */
    bool call_random;  /* per call accept a random 0..call_max instead */
    bool discard;      /* keep only the first bytes (fuzzing) */
    struct tu_rng rng;
    int closes, flushes;
    const char *stats; /* stats_json answer */
    size_t stats_len;
};

static size_t fake_send(void *ctx, const void *data, size_t len)
{
    struct fake_io *f = ctx;
    size_t n = min_size(len, f->window);

    FAST_CHECK(f->closes == 0); /* no send after close */
    FAST_CHECK(len > 0);
    if (f->call_max) {
        size_t cap = f->call_random ? tu_rng_below(&f->rng, f->call_max + 1) : f->call_max;
        n = min_size(n, cap);
    }
    if (f->window != SIZE_MAX)
        f->window -= n;
    size_t keep = f->discard ? 64 : FAKE_CAPTURE_MAX;
    if (f->out.len < keep)
        buf_add(&f->out, data, min_size(n, keep - f->out.len));
    f->sent_total += n;
    return n;
}

static size_t fake_send_space(void *ctx)
{
    struct fake_io *f = ctx;
    return f->window; /* a hint: with call_max, send() may take less */
}

static void fake_flush(void *ctx)
{
    struct fake_io *f = ctx;
    f->flushes++;
}

static void fake_close(void *ctx)
{
    struct fake_io *f = ctx;
    f->closes++;
    FAST_CHECK(f->closes == 1);
}

static size_t fake_stats_json(void *ctx, char *buf, size_t cap)
{
    struct fake_io *f = ctx;
    size_t n = min_size(f->stats_len, cap);
    memcpy(buf, f->stats, n);
    return n;
}

static const struct app_http_io fake_ops = {
    .send = fake_send,
    .send_space = fake_send_space,
    .flush = fake_flush,
    .close = fake_close,
    .stats_json = fake_stats_json,
};

/* Only the mandatory callbacks. */
static const struct app_http_io fake_ops_minimal = {
    .send = fake_send,
    .close = fake_close,
};

static void fake_init(struct fake_io *f, size_t refill, size_t call_max, bool call_random)
{
    memset(f, 0, sizeof(*f));
    f->refill = f->window = refill;
    f->call_max = call_max;
    f->call_random = call_random;
    f->rng.s = tu_seed ^ 0x5eed;
    f->stats = "{\"fake\":1}";
    f->stats_len = strlen(f->stats);
}

static void fake_refill(struct fake_io *f)
{
    f->window = f->refill;
}

/* ---- Driver -------------------------------------------------------------------- */

/* Let the session send until it is idle or closed. */
static void drain(struct fake_io *f, struct app_http_session *s)
{
    for (long steps = 0; !app_http_session_idle(s) && f->closes == 0; steps++) {
        FAST_CHECK(steps < STEP_MAX);
        fake_refill(f);
        app_http_session_on_writable(s);
    }
}

/* Feed data[0, len) in pieces of at most feed_max bytes, re-feeding what the
 * session did not take after on_writable, as a transport would. Returns the
 * bytes consumed (less than len when the session stopped taking input). */
static size_t feed(struct fake_io *f, struct app_http_session *s, const void *data, size_t len,
                   size_t feed_max)
{
    const uint8_t *d = data;
    size_t off = 0;

    for (long steps = 0; off < len; steps++) {
        size_t n = min_size(len - off, feed_max);
        FAST_CHECK(steps < STEP_MAX);
        long r = app_http_session_input(s, d + off, n);
        if (r < 0)
            break;
        FAST_CHECK((size_t)r <= n);
        off += (size_t)r;
        if ((size_t)r < n) { /* busy streaming: let the transport drain */
            fake_refill(f);
            app_http_session_on_writable(s);
        }
    }
    drain(f, s);
    return off;
}

/* ---- Response parsing ---------------------------------------------------------- */

struct resp {
    int status;
    int interim; /* 1xx responses before this one */
    bool has_length;
    uint64_t length;
    char connection[32], content_type[64], allow[32], server[16];
    const uint8_t *body;
    size_t body_len;
};

static const uint8_t *find(const uint8_t *p, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(p + i, needle, n) == 0)
            return p + i;
    return NULL;
}

static void copy_value(char *dst, size_t cap, const uint8_t *v, size_t n)
{
    n = min_size(n, cap - 1);
    memcpy(dst, v, n);
    dst[n] = 0;
}

/* Parse the response at p[*off]; no_body for answers to HEAD. Returns false if
 * there is no complete response there. */
static bool parse_response(const uint8_t *p, size_t len, size_t *off, bool no_body, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    for (;;) {
        const uint8_t *h = p + *off;
        const uint8_t *end = find(h, len - *off, "\r\n\r\n");
        if (end == NULL)
            return false;
        ck_assert_msg(len - *off > 13 && memcmp(h, "HTTP/1.1 ", 9) == 0 && h[12] == ' ',
                      "bad status line");
        r->status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
        const uint8_t *line = find(h, (size_t)(end - h) + 2, "\r\n") + 2;
        while (line < end + 2) {
            const uint8_t *eol = find(line, (size_t)(end + 2 - line), "\r\n");
            const uint8_t *colon = memchr(line, ':', (size_t)(eol - line));
            ck_assert_ptr_nonnull(colon);
            size_t name_len = (size_t)(colon - line);
            const uint8_t *v = colon + 1;
            while (*v == ' ')
                v++;
            size_t vn = (size_t)(eol - v);
            if (name_len == 14 && strncasecmp((const char *)line, "Content-Length", 14) == 0) {
                r->has_length = true;
                r->length = strtoull((const char *)v, NULL, 10);
            } else if (name_len == 10 && strncasecmp((const char *)line, "Connection", 10) == 0) {
                copy_value(r->connection, sizeof(r->connection), v, vn);
            } else if (name_len == 12 && strncasecmp((const char *)line, "Content-Type", 12) == 0) {
                copy_value(r->content_type, sizeof(r->content_type), v, vn);
            } else if (name_len == 5 && strncasecmp((const char *)line, "Allow", 5) == 0) {
                copy_value(r->allow, sizeof(r->allow), v, vn);
            } else if (name_len == 6 && strncasecmp((const char *)line, "Server", 6) == 0) {
                copy_value(r->server, sizeof(r->server), v, vn);
            }
            line = eol + 2;
        }
        size_t head_end = (size_t)(end + 4 - p);
        if (r->status < 200) {
            r->interim++;
            *off = head_end;
            continue;
        }
        ck_assert(r->has_length);
        ck_assert_str_eq(r->server, "anic");
        r->body = p + head_end;
        r->body_len = no_body ? 0 : (size_t)r->length;
        if (len - head_end < r->body_len)
            return false;
        *off = head_end + r->body_len;
        return true;
    }
}

static void sha256_hex(const void *data, size_t len, char hex[65])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    ck_assert_int_eq(EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL), 1);
    ck_assert_uint_eq(md_len, 32);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void check_digest(const struct resp *r, const void *data, size_t len)
{
    char hex[65];
    sha256_hex(data, len, hex);
    ck_assert_int_eq(r->status, 200);
    ck_assert_uint_eq(r->body_len, 65);
    ck_assert_str_eq(r->content_type, "text/plain");
    ck_assert(memcmp(r->body, hex, 64) == 0);
    ck_assert_int_eq(r->body[64], '\n');
}

static void check_pattern(const uint8_t *body, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (body[i] != (uint8_t)(i % 251))
            ck_abort_msg("body byte %zu is %u, want %zu", i, body[i], i % 251);
}

/* One session, one request, one expected response; closes iff want_close. */
static void expect_single(const void *req, size_t len, size_t feed_max, int status, bool want_close)
{
    struct fake_io f;
    struct resp r;
    size_t off = 0;

    fake_init(&f, SIZE_MAX, 0, false);
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    ck_assert_ptr_nonnull(s);
    feed(&f, s, req, len, feed_max);
    ck_assert_msg(parse_response(f.out.p, f.out.len, &off, false, &r), "no response");
    ck_assert_int_eq(r.status, status);
    ck_assert_uint_eq(off, f.out.len); /* exactly one response */
    ck_assert_int_eq(f.closes, want_close ? 1 : 0);
    ck_assert_str_eq(r.connection, want_close ? "close" : "keep-alive");
    app_http_session_free(s);
    buf_free(&f.out);
}

/* ---- /bytes/N -------------------------------------------------------------------- */

static const uint64_t bytes_sizes[] = {0, 1, 250, 251, 252, 16384, 1 << 20};

struct io_mode {
    size_t refill, call_max;
    bool call_random;
};

static const struct io_mode io_modes[] = {
    {SIZE_MAX, 0, false}, /* unlimited */
    {4096, 0, false},     /* TCP-like window */
    {SIZE_MAX, 1000, false},
    {SIZE_MAX, 97, true}, /* random small, including 0 */
    {7, 3, true},
};

START_TEST(test_bytes_body_exact)
{
    uint64_t n = bytes_sizes[_i / 5];
    const struct io_mode *m = &io_modes[_i % 5];
    struct fake_io f;
    struct resp r;
    size_t off = 0;
    char req[64];

    fake_init(&f, m->refill, m->call_max, m->call_random);
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    int len = snprintf(req, sizeof(req), "GET /bytes/%" PRIu64 " HTTP/1.1\r\nHost: t\r\n\r\n", n);
    feed(&f, s, req, (size_t)len, SIZE_MAX);
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.length, n);
    ck_assert_str_eq(r.connection, "keep-alive");
    ck_assert_str_eq(r.content_type, "application/octet-stream");
    ck_assert_uint_eq(off, f.out.len);
    check_pattern(r.body, r.body_len);
    ck_assert_int_eq(f.closes, 0);
    ck_assert(app_http_session_idle(s));
    ck_assert_uint_eq(app_http_session_counters(s)->bytes_body_out, n);
    ck_assert_uint_eq(app_http_session_counters(s)->responses_2xx, 1);
    app_http_session_free(s);
    buf_free(&f.out);
}
END_TEST

START_TEST(test_bytes_head_and_limits)
{
    struct fake_io f;
    struct resp r;
    size_t off = 0;
    static const char req[] = "HEAD /bytes/1099511627776 HTTP/1.1\r\n\r\n"
                              "HEAD /bytes/5 HTTP/1.1\r\n\r\n"
                              "GET /bytes/5?x=1 HTTP/1.1\r\n\r\n"
                              "GET http://example/bytes/3 HTTP/1.1\r\n\r\n"
                              "GET /bytes/0007 HTTP/1.1\r\n\r\n";

    fake_init(&f, SIZE_MAX, 0, false);
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    feed(&f, s, req, sizeof(req) - 1, SIZE_MAX);
    ck_assert(parse_response(f.out.p, f.out.len, &off, true, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.length, (uint64_t)1 << 40);
    ck_assert(parse_response(f.out.p, f.out.len, &off, true, &r));
    ck_assert_uint_eq(r.length, 5);
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    ck_assert_uint_eq(r.length, 5);
    check_pattern(r.body, r.body_len);
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    ck_assert_uint_eq(r.length, 3);
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    ck_assert_uint_eq(r.length, 7);
    check_pattern(r.body, r.body_len);
    ck_assert_uint_eq(off, f.out.len);
    ck_assert_int_eq(f.closes, 0);
    app_http_session_free(s);
    buf_free(&f.out);
}
END_TEST

START_TEST(test_bytes_bad_count_is_400)
{
    static const char *const targets[] = {
        "/bytes/",
        "/bytes/-1",
        "/bytes/abc",
        "/bytes/1x",
        "/bytes/+5",
        "/bytes/0x10",
        "/bytes/1e3",
        "/bytes/1099511627777",
        "/bytes/5/",
        "/bytes/5.0",
        "/bytes/99999999999999999999999999",
    };
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        char req[128];
        int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n\r\n", targets[i]);
        expect_single(req, (size_t)n, SIZE_MAX, 400, true);
    }
}
END_TEST

/* Freeing mid-stream (huge body, small window) must not leak or touch io. */
START_TEST(test_free_mid_stream)
{
    struct fake_io f;
    static const char req[] = "GET /bytes/1099511627776 HTTP/1.1\r\n\r\n";

    fake_init(&f, 1000, 0, false);
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    ck_assert_int_eq(app_http_session_input(s, (const uint8_t *)req, sizeof(req) - 1),
                     sizeof(req) - 1);
    for (int i = 0; i < 100; i++) {
        fake_refill(&f);
        app_http_session_on_writable(s);
    }
    ck_assert(!app_http_session_idle(s));
    ck_assert_uint_eq(f.sent_total, 100 * 1000 + 1000);
    /* Busy: a pipelined request is not consumed. */
    ck_assert_int_eq(app_http_session_input(s, (const uint8_t *)req, sizeof(req) - 1), 0);
    app_http_session_free(s);
    ck_assert_int_eq(f.closes, 0);
    buf_free(&f.out);
}
END_TEST

/* ---- /upload ---------------------------------------------------------------------- */

static const size_t upload_sizes[] = {0, 1, 55, 64, 1000, 100000};

START_TEST(test_upload_content_length)
{
    size_t n = upload_sizes[_i / 5];
    const struct io_mode *m = &io_modes[_i % 5];
    struct tu_rng rng = {tu_seed + (uint64_t)_i};
    uint8_t *data = malloc(n + 1);
    struct buf req = {0};
    struct fake_io f;
    struct resp r;
    size_t off = 0;

    tu_rng_fill(&rng, data, n);
    buf_printf(&req, "%s /upload HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", _i & 1 ? "PUT" : "POST",
               n);
    buf_add(&req, data, n);
    fake_init(&f, m->refill, m->call_max, m->call_random);
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    /* Random feed sizes, as segments would arrive. */
    size_t pos = 0;
    while (pos < req.len) {
        size_t k = min_size(1 + tu_rng_below(&rng, 3000), req.len - pos);
        ck_assert_uint_eq(feed(&f, s, req.p + pos, k, SIZE_MAX), k);
        pos += k;
    }
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    check_digest(&r, data, n);
    ck_assert_str_eq(r.connection, "keep-alive");
    ck_assert_uint_eq(off, f.out.len);
    ck_assert_uint_eq(app_http_session_counters(s)->bytes_body_in, n);
    app_http_session_free(s);
    buf_free(&f.out);
    buf_free(&req);
    free(data);
}
END_TEST

/* CRC32C: RFC 3720 B.4's vectors and the check value of "123456789"; the
   SSE4.2 path (one chain, and three chains joined for 12 KiB and 768-byte
   blocks) equals
   the table-driven one at every length and alignment, and continuing a CRC
   over a split gives the CRC of the whole. */
START_TEST(test_crc32c_vectors_and_paths_agree)
{
    static const uint8_t zeros[32],
        ones[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    ck_assert_uint_eq(app_crc32c(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(app_crc32c_sw(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(app_crc32c(0, zeros, sizeof(zeros)), 0x8A9136AAu);
    ck_assert_uint_eq(app_crc32c(0, ones, sizeof(ones)), 0x62A8AB43u);
    ck_assert_uint_eq(app_crc32c(0, NULL, 0), 0);
    struct tu_rng rng = {tu_seed};
    static uint8_t data[520];
    tu_rng_fill(&rng, data, sizeof(data));
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= 512; n++) {
            uint32_t want = app_crc32c_sw(0, data + off, n);
            ck_assert_uint_eq(app_crc32c(0, data + off, n), want);
            size_t cut = n ? tu_rng_below(&rng, (uint32_t)n + 1) : 0;
            ck_assert_uint_eq(app_crc32c(app_crc32c(0, data + off, cut), data + off + cut, n - cut),
                              want);
        }
    /* Around and across the three-chain blocks (3 x 4096 bytes, then
       3 x 256 for what is left). */
    static const size_t big[] = {767,   768,           769,           1536 + 5,
                                 12287, 12288,         12289,         12288 + 768 + 3,
                                 16384, 24576 + 8 + 3, 3 * 12288 + 5, 100000};
    uint8_t *buf = malloc(100000 + 8);
    tu_rng_fill(&rng, buf, 100000 + 8);
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
        for (size_t off = 0; off < 8; off += 3) {
            uint32_t want = app_crc32c_sw(0, buf + off, big[i]);
            ck_assert_uint_eq(app_crc32c(0, buf + off, big[i]), want);
            size_t cut = tu_rng_below(&rng, (uint32_t)big[i] + 1);
            ck_assert_uint_eq(
                app_crc32c(app_crc32c(0, buf + off, cut), buf + off + cut, big[i] - cut), want);
        }
    free(buf);
}
END_TEST

/* PUT /upload?digest=crc32c answers the body's CRC32C as 8 hex digits;
   digest=sha256 is the default's SHA-256; another digest is a 400 that closes
   without reading the body. The parameter is found among others. */
START_TEST(test_upload_digest_parameter)
{
    size_t n = upload_sizes[_i];
    struct tu_rng rng = {tu_seed + (uint64_t)_i};
    uint8_t *data = malloc(n + 1);
    tu_rng_fill(&rng, data, n);
    static const char *const targets[] = {"/upload?digest=crc32c", "/upload?a=1&digest=crc32c&b",
                                          "/upload?digest=sha256"};
    for (size_t t = 0; t < sizeof(targets) / sizeof(targets[0]); t++) {
        struct buf req = {0};
        struct fake_io f;
        struct resp r;
        size_t off = 0;
        buf_printf(&req, "PUT %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", targets[t], n);
        buf_add(&req, data, n);
        fake_init(&f, io_modes[0].refill, io_modes[0].call_max, io_modes[0].call_random);
        struct app_http_session *s = app_http_session_new(&fake_ops, &f);
        ck_assert_uint_eq(feed(&f, s, req.p, req.len, SIZE_MAX), req.len);
        ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
        if (strstr(targets[t], "sha256")) {
            check_digest(&r, data, n);
        } else {
            char want[16];
            snprintf(want, sizeof(want), "%08" PRIx32 "\n", app_crc32c_sw(0, data, n));
            ck_assert_int_eq(r.status, 200);
            ck_assert_uint_eq(r.body_len, 9);
            ck_assert(memcmp(r.body, want, 9) == 0);
        }
        ck_assert_str_eq(r.connection, "keep-alive");
        app_http_session_free(s);
        buf_free(&f.out);
        buf_free(&req);
    }
    free(data);
    static const char bad[] = "PUT /upload?digest=md5 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    expect_single(bad, sizeof(bad) - 1, SIZE_MAX, 400, true);
}
END_TEST

/* Chunked encoding of data with random chunk sizes, hex case, extensions and
 * a trailer. */
static void chunked_request(struct buf *req, const uint8_t *data, size_t n, struct tu_rng *rng)
{
    size_t pos = 0;
    buf_str(req, "PUT /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    while (pos < n) {
        size_t k = min_size(n - pos, 1 + tu_rng_below(rng, 300));
        switch (tu_rng_below(rng, 4)) {
        case 0:
            buf_printf(req, "%zx\r\n", k);
            break;
        case 1:
            buf_printf(req, "%zX;name=value;x\r\n", k);
            break;
        case 2:
            buf_printf(req, "000%zx \t; ext=\"q\"\r\n", k);
            break;
        default:
            buf_printf(req, "%zx\n", k); /* bare LF */
            break;
        }
        buf_add(req, data + pos, k);
        buf_str(req, tu_rng_below(rng, 2) ? "\r\n" : "\n");
        pos += k;
    }
    buf_str(req, tu_rng_below(rng, 2) ? "0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n" : "0\r\n\r\n");
}

START_TEST(test_upload_chunked)
{
    size_t n = upload_sizes[_i / 5];
    const struct io_mode *m = &io_modes[_i % 5];
    struct tu_rng rng = {tu_seed + 1000 + (uint64_t)_i};
    uint8_t *data = malloc(n + 1);
    struct buf req = {0};
    struct fake_io f;
    struct resp r;
    size_t off = 0;

    tu_rng_fill(&rng, data, n);
    chunked_request(&req, data, n, &rng);
    fake_init(&f, m->refill, m->call_max, m->call_random);
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    feed(&f, s, req.p, req.len, 1 + tu_rng_below(&rng, 1500));
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    check_digest(&r, data, n);
    ck_assert_uint_eq(off, f.out.len);
    ck_assert_uint_eq(app_http_session_counters(s)->bytes_body_in, n);
    app_http_session_free(s);
    buf_free(&f.out);
    buf_free(&req);
    free(data);
}
END_TEST

/* The same small chunked upload split in two at every byte position. */
START_TEST(test_upload_chunked_every_split)
{
    static const char req[] = "POST /upload HTTP/1.1\r\n"
                              "transfer-encoding: Chunked\r\n\r\n"
                              "5\r\nhello\r\n"
                              "1;ext\r\n \r\n"
                              "0A\r\nworld!!!!!\r\n"
                              "0\r\nTrailer: t\r\n\r\n";
    static const char body[] = "hello world!!!!!";

    for (size_t split = 0; split <= sizeof(req) - 1; split++) {
        struct fake_io f;
        struct resp r;
        size_t off = 0;

        fake_init(&f, SIZE_MAX, 0, false);
        struct app_http_session *s = app_http_session_new(&fake_ops, &f);
        ck_assert_int_eq(app_http_session_input(s, (const uint8_t *)req, split), (long)split);
        ck_assert_int_eq(
            app_http_session_input(s, (const uint8_t *)req + split, sizeof(req) - 1 - split),
            (long)(sizeof(req) - 1 - split));
        ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
        check_digest(&r, body, sizeof(body) - 1);
        ck_assert_uint_eq(off, f.out.len);
        app_http_session_free(s);
        buf_free(&f.out);
    }
}
END_TEST

START_TEST(test_upload_expect_continue)
{
    static const char req[] = "PUT /upload HTTP/1.1\r\nExpect: 100-continue\r\n"
                              "Content-Length: 3\r\n\r\nabc";
    struct fake_io f;
    struct resp r;
    size_t off = 0;

    fake_init(&f, SIZE_MAX, 5, true);
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    feed(&f, s, req, sizeof(req) - 1, 1);
    ck_assert(f.out.len > 25 && memcmp(f.out.p, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    ck_assert_int_eq(r.interim, 1);
    check_digest(&r, "abc", 3);
    ck_assert_uint_eq(off, f.out.len);
    /* Body bytes exclude the interim response and headers. */
    ck_assert_uint_eq(app_http_session_counters(s)->bytes_body_out, 65);
    app_http_session_free(s);
    buf_free(&f.out);
}
END_TEST

/* ---- Pipelining, keep-alive, close ---------------------------------------------------- */

static const char pipeline[] = "GET /bytes/10 HTTP/1.1\r\n\r\n"
                               "PUT /upload HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                               "HEAD /bytes/7 HTTP/1.1\r\n\r\n"
                               "\r\n" /* stray CRLF between requests (RFC 9112 §2.2) */
                               "POST /nope HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "3\r\nabc\r\n0\r\n\r\n"
                               "GET /bytes/3000 HTTP/1.1\r\nConnection: close\r\n\r\n"
                               "GET /bytes/1 HTTP/1.1\r\n\r\n"; /* after close: ignored */

static void check_pipeline(const struct fake_io *f)
{
    struct resp r;
    size_t off = 0;

    ck_assert(parse_response(f->out.p, f->out.len, &off, false, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.length, 10);
    check_pattern(r.body, r.body_len);
    ck_assert(parse_response(f->out.p, f->out.len, &off, false, &r));
    check_digest(&r, "hello", 5);
    ck_assert(parse_response(f->out.p, f->out.len, &off, true, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.length, 7);
    ck_assert(parse_response(f->out.p, f->out.len, &off, false, &r));
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(r.connection, "keep-alive");
    ck_assert(parse_response(f->out.p, f->out.len, &off, false, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.length, 3000);
    check_pattern(r.body, r.body_len);
    ck_assert_str_eq(r.connection, "close");
    ck_assert_uint_eq(off, f->out.len);
    FAST_CHECK(f->closes == 1);
}

START_TEST(test_pipelined_one_chunk)
{
    const struct io_mode *m = &io_modes[_i];
    struct fake_io f;

    fake_init(&f, m->refill, m->call_max, m->call_random);
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    feed(&f, s, pipeline, sizeof(pipeline) - 1, SIZE_MAX);
    check_pipeline(&f);
    ck_assert_int_eq(app_http_session_input(s, (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18), -1);
    app_http_session_free(s);
    buf_free(&f.out);
}
END_TEST

START_TEST(test_one_byte_at_a_time)
{
    struct fake_io f;

    fake_init(&f, SIZE_MAX, 1, false);
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    feed(&f, s, pipeline, sizeof(pipeline) - 1, 1);
    check_pipeline(&f);
    app_http_session_free(s);
    buf_free(&f.out);
}
END_TEST

START_TEST(test_keep_alive_vs_close)
{
#define REQ(s) s, sizeof(s) - 1
    expect_single(REQ("GET /bytes/1 HTTP/1.1\r\n\r\n"), SIZE_MAX, 200, false);
    expect_single(REQ("GET /bytes/1 HTTP/1.1\r\nConnection: close\r\n\r\n"), SIZE_MAX, 200, true);
    expect_single(REQ("GET /bytes/1 HTTP/1.1\r\nconnection: TE, Close\r\n\r\n"), 3, 200, true);
    expect_single(REQ("GET /bytes/1 HTTP/1.0\r\n\r\n"), SIZE_MAX, 200, true);
    expect_single(REQ("GET /bytes/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 1, 200, false);
    expect_single(REQ("GET /bytes/1 HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), 1, 200,
                  true);
    expect_single(REQ("GET /bytes/1 HTTP/1.9\n\n"), SIZE_MAX, 200, false); /* bare LF */
    expect_single(REQ("GET /nope HTTP/1.0\r\n\r\n"), SIZE_MAX, 404, true);
#undef REQ
}
END_TEST

/* The phases the server's timeouts read, and the 408 they trigger. */
START_TEST(test_phase_and_timeout)
{
    struct fake_io f;
    struct resp r;
    size_t off = 0;

    fake_init(&f, SIZE_MAX, 0, false);
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    ck_assert_int_eq(app_http_session_phase(s), APP_HTTP_PHASE_IDLE);
    /* One byte of a request line: the head is arriving. */
    ck_assert_int_eq(app_http_session_input(s, (const uint8_t *)"G", 1), 1);
    ck_assert_int_eq(app_http_session_phase(s), APP_HTTP_PHASE_HEAD);
    static const char rest[] = "ET /bytes/10 HTTP/1.1\r\nHost: x\r\n";
    ck_assert_int_eq(app_http_session_input(s, (const uint8_t *)rest, sizeof(rest) - 1),
                     sizeof(rest) - 1);
    ck_assert_int_eq(app_http_session_phase(s), APP_HTTP_PHASE_HEAD);
    ck_assert_int_eq(app_http_session_input(s, (const uint8_t *)"\r\n", 2), 2);
    drain(&f, s);
    ck_assert_int_eq(app_http_session_phase(s), APP_HTTP_PHASE_IDLE); /* answered, keep-alive */
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    ck_assert_int_eq(r.status, 200);
    /* A body that stops: BODY; the timeout answers 408 and closes. */
    static const char put[] = "PUT /upload HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789";
    ck_assert_int_eq(app_http_session_input(s, (const uint8_t *)put, sizeof(put) - 1),
                     sizeof(put) - 1);
    ck_assert_int_eq(app_http_session_phase(s), APP_HTTP_PHASE_BODY);
    uint64_t r4 = app_http_session_counters(s)->responses_4xx;
    app_http_session_timeout(s);
    drain(&f, s);
    ck_assert_int_eq(f.closes, 1);
    ck_assert_int_eq(app_http_session_phase(s), APP_HTTP_PHASE_DONE);
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    ck_assert_int_eq(r.status, 408);
    ck_assert_str_eq(r.connection, "close");
    ck_assert_uint_eq(app_http_session_counters(s)->responses_4xx, r4 + 1);
    ck_assert_uint_eq(off, f.out.len); /* nothing after the 408 */
    app_http_session_timeout(s);       /* done: nothing more happens */
    ck_assert_uint_eq(off, f.out.len);
    app_http_session_free(s);
    buf_free(&f.out);

    /* While a response streams the session is RESPONDING; a timeout call does nothing. */
    fake_init(&f, 1000, 0, false);
    s = app_http_session_new(&fake_ops, &f);
    static const char get[] = "GET /bytes/100000 HTTP/1.1\r\n\r\n";
    ck_assert_int_eq(app_http_session_input(s, (const uint8_t *)get, sizeof(get) - 1),
                     sizeof(get) - 1);
    ck_assert_int_eq(app_http_session_phase(s), APP_HTTP_PHASE_RESPONDING);
    size_t before = f.sent_total;
    app_http_session_timeout(s);
    ck_assert_uint_eq(f.sent_total, before);
    ck_assert_int_eq(f.closes, 0);
    drain(&f, s);
    off = 0;
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 100000);
    app_http_session_free(s);
    buf_free(&f.out);
}
END_TEST

START_TEST(test_eof)
{
    struct fake_io f;
    struct resp r;
    size_t off = 0;
    static const char req[] = "GET /bytes/100000 HTTP/1.1\r\n\r\n";

    /* Idle: EOF closes at once. */
    fake_init(&f, SIZE_MAX, 0, false);
    struct app_http_session *s = app_http_session_new(&fake_ops_minimal, &f);
    app_http_session_on_eof(s);
    ck_assert_int_eq(f.closes, 1);
    ck_assert_int_eq(app_http_session_input(s, (const uint8_t *)req, sizeof(req) - 1), -1);
    app_http_session_free(s);

    /* Mid-response: the response is finished first. */
    fake_init(&f, 1000, 0, false);
    s = app_http_session_new(&fake_ops_minimal, &f);
    ck_assert_int_eq(app_http_session_input(s, (const uint8_t *)req, sizeof(req) - 1),
                     sizeof(req) - 1);
    app_http_session_on_eof(s);
    ck_assert_int_eq(f.closes, 0);
    drain(&f, s);
    ck_assert_int_eq(f.closes, 1);
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    ck_assert_uint_eq(r.body_len, 100000);
    check_pattern(r.body, r.body_len);
    ck_assert_str_eq(r.connection, "keep-alive"); /* EOF came after the head was sent */
    app_http_session_free(s);
    buf_free(&f.out);

    /* Mid-request: nothing to answer. */
    fake_init(&f, SIZE_MAX, 0, false);
    s = app_http_session_new(&fake_ops, &f);
    ck_assert_int_eq(app_http_session_input(s, (const uint8_t *)"PUT /upload HTTP/1.1\r\n", 22),
                     22);
    app_http_session_on_eof(s);
    ck_assert_int_eq(f.closes, 1);
    ck_assert_uint_eq(f.out.len, 0);
    app_http_session_free(s);
}
END_TEST

/* ---- Routing: index, stats, 404, 405 ------------------------------------------------ */

START_TEST(test_index_and_stats)
{
    struct fake_io f;
    struct resp r;
    size_t off = 0;
    static const char req[] = "GET / HTTP/1.1\r\n\r\n"
                              "HEAD / HTTP/1.1\r\n\r\n"
                              "GET /stats HTTP/1.1\r\n\r\n"
                              "HEAD /stats HTTP/1.1\r\n\r\n";

    fake_init(&f, SIZE_MAX, 11, true);
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    feed(&f, s, req, sizeof(req) - 1, SIZE_MAX);
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, "text/html; charset=utf-8");
    ck_assert_ptr_nonnull(find(r.body, r.body_len, "/bytes/N"));
    ck_assert_ptr_nonnull(find(r.body, r.body_len, "/upload"));
    ck_assert_ptr_nonnull(find(r.body, r.body_len, "/stats"));
    uint64_t index_len = r.length;
    ck_assert(parse_response(f.out.p, f.out.len, &off, true, &r));
    ck_assert_uint_eq(r.length, index_len);
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    ck_assert_str_eq(r.content_type, "application/json");
    ck_assert_uint_eq(r.body_len, strlen(f.stats));
    ck_assert(memcmp(r.body, f.stats, r.body_len) == 0);
    ck_assert(parse_response(f.out.p, f.out.len, &off, true, &r));
    ck_assert_uint_eq(r.length, strlen(f.stats));
    ck_assert_uint_eq(off, f.out.len);
    app_http_session_free(s);
    buf_free(&f.out);
}
END_TEST

/* A large stats document streamed in small pieces; and the built-in JSON when the
 * transport has no stats_json. */
START_TEST(test_stats_large_and_default)
{
    struct fake_io f;
    struct resp r;
    size_t off = 0;
    static const char req[] = "GET /stats HTTP/1.1\r\n\r\n";
    size_t big_len = APP_HTTP_STATS_MAX;
    char *big = malloc(big_len);

    memset(big, 'x', big_len);
    big[0] = '{';
    big[big_len - 1] = '}';
    fake_init(&f, 4000, 700, true);
    f.stats = big;
    f.stats_len = big_len + 100; /* the fake clamps to cap */
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    feed(&f, s, req, sizeof(req) - 1, SIZE_MAX);
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    ck_assert_uint_eq(r.body_len, big_len);
    ck_assert(memcmp(r.body, big, big_len) == 0);
    app_http_session_free(s);
    buf_free(&f.out);
    free(big);

    off = 0;
    fake_init(&f, SIZE_MAX, 0, false);
    s = app_http_session_new(&fake_ops_minimal, &f);
    feed(&f, s, req, sizeof(req) - 1, SIZE_MAX);
    ck_assert(parse_response(f.out.p, f.out.len, &off, false, &r));
    ck_assert(r.body_len > 20 && memcmp(r.body, "{\"requests\":", 12) == 0);
    ck_assert_int_eq(r.body[r.body_len - 1], '}');
    app_http_session_free(s);
    buf_free(&f.out);
}
END_TEST

START_TEST(test_404_405)
{
    struct fake_io f;
    struct resp r;
    size_t off = 0;
    static const char req[] = "GET /nope HTTP/1.1\r\n\r\n"
                              "POST /nope HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"
                              "DELETE /upload HTTP/1.1\r\n\r\n"
                              "GET /upload HTTP/1.1\r\n\r\n"
                              "PUT /bytes/5 HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"
                              "POST / HTTP/1.1\r\n\r\n"
                              "HEAD /upload HTTP/1.1\r\n\r\n"
                              "BREW /stats HTTP/1.1\r\n\r\n"
                              "GET /bytes HTTP/1.1\r\n\r\n"
                              "GET /stats/ HTTP/1.1\r\n\r\n"
                              "GET /bytes/2 HTTP/1.1\r\n\r\n";
    static const struct {
        int status;
        const char *allow;
        bool head;
    } want[] = {
        {404, "", false},          {404, "", false},          {405, "PUT, POST", false},
        {405, "PUT, POST", false}, {405, "GET, HEAD", false}, {405, "GET, HEAD", false},
        {405, "PUT, POST", true},  {405, "GET, HEAD", false}, {404, "", false},
        {404, "", false},          {200, "", false},
    };

    fake_init(&f, SIZE_MAX, 0, false);
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    feed(&f, s, req, sizeof(req) - 1, 7);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        ck_assert_msg(parse_response(f.out.p, f.out.len, &off, want[i].head, &r), "resp %zu", i);
        ck_assert_int_eq(r.status, want[i].status);
        ck_assert_str_eq(r.allow, want[i].allow);
        ck_assert_str_eq(r.connection, "keep-alive");
    }
    ck_assert_uint_eq(off, f.out.len);
    ck_assert_int_eq(f.closes, 0);
    app_http_session_free(s);
    buf_free(&f.out);
}
END_TEST

/* ---- Malformed requests ---------------------------------------------------------------- */

struct bad_case {
    const char *req;
    size_t len;
    int status;
};

#define BAD(s, st)                                                                                 \
    {                                                                                              \
        s, sizeof(s) - 1, st                                                                       \
    }

static const struct bad_case bad_cases[] = {
    /* request line syntax */
    BAD("GET / HTTP/1.1 extra\r\n\r\n", 400),
    BAD("GET  / HTTP/1.1\r\n\r\n", 400),
    BAD("GET /\r\n\r\n", 400),
    BAD("GET / \r\n\r\n", 400),
    BAD("GET / HTTP/1.1x\r\n\r\n", 400),
    BAD("GET / HTTP/1.12\r\n\r\n", 400),
    BAD("GET / http/1.1\r\n\r\n", 400),
    BAD("GET / HTTP/1\r\n\r\n", 400),
    BAD("/ HTTP/1.1\r\n\r\n", 400),
    BAD(" GET / HTTP/1.1\r\n\r\n", 400),
    BAD("G(T / HTTP/1.1\r\n\r\n", 400),
    BAD("ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n", 400), /* method > 16 */
    BAD("GET \x80 HTTP/1.1\r\n\r\n", 400),
    /* control characters and NUL in the request line */
    BAD("G\0T / HTTP/1.1\r\n\r\n", 400),
    BAD("GET /a\0b HTTP/1.1\r\n\r\n", 400),
    BAD("GET /a\x01 HTTP/1.1\r\n\r\n", 400),
    BAD("GET /a\x7f HTTP/1.1\r\n\r\n", 400),
    BAD("GET\t/ HTTP/1.1\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\r\n\r\n", 400),
    BAD("GET /\r HTTP/1.1\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\0\r\n\r\n", 400),
    /* versions */
    BAD("GET / HTTP/0.9\r\n\r\n", 400),
    BAD("GET / HTTP/2.0\r\n\r\n", 505),
    BAD("GET / HTTP/3.0\r\n\r\n", 505),
    /* header syntax, control characters, obs-fold */
    BAD("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nX-A : b\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\n: b\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nX(A): b\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nX-A: a\x01\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nX-A: a\x7f\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nX\0A: b\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nX-A: a\r\n  folded\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\nX-A: a\r\n\tfolded\r\n\r\n", 400),
    BAD("GET / HTTP/1.1\r\n \r\n\r\n", 400),
    /* Content-Length */
    BAD("PUT /upload HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nContent-Length:\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
    BAD("PUT /upload HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\nhello", 400),
    BAD("PUT /upload HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    /* Transfer-Encoding */
    BAD("PUT /upload HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunkedx\r\n\r\n", 400),
    /* chunk size */
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\rx", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a\0\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "ffffffffffffffffffffffff\r\n",
        400),
    /* missing CRLF after chunk data */
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\rX", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n", 400),
    /* bad trailer */
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: \0\r\n\r\n", 400),
    BAD("PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\rb\r\n\r\n", 400),
};

START_TEST(test_malformed)
{
    const struct bad_case *c = &bad_cases[_i];
    const struct app_http_counters *g = app_http_global_counters();
    uint64_t bad_before = g->bad_requests;

    /* whole, and one byte at a time; then followed by a valid request that must
     * not be answered */
    expect_single(c->req, c->len, SIZE_MAX, c->status, true);
    expect_single(c->req, c->len, 1, c->status, true);
    struct buf b = {0};
    buf_add(&b, c->req, c->len);
    buf_str(&b, "\r\n\r\nGET /bytes/1 HTTP/1.1\r\n\r\n");
    expect_single(b.p, b.len, SIZE_MAX, c->status, true);
    buf_free(&b);
    ck_assert_uint_eq(g->bad_requests, bad_before + 3);
}
END_TEST

START_TEST(test_uri_too_long)
{
    struct buf b = {0};

    /* 2048 is fine (404), 2049 is not, and neither is a target beyond the head. */
    for (size_t len = 2040; len <= 2060; len++) {
        buf_str(&b, "GET /");
        for (size_t i = 1; i < len; i++)
            buf_str(&b, "a");
        buf_str(&b, " HTTP/1.1\r\n\r\n");
        expect_single(b.p, b.len, len == 2048 ? 1 : SIZE_MAX,
                      len <= APP_HTTP_TARGET_MAX ? 404 : 414, len > APP_HTTP_TARGET_MAX);
        b.len = 0;
    }
    buf_str(&b, "GET /");
    for (size_t i = 0; i < 9000; i++)
        buf_str(&b, "b");
    expect_single(b.p, b.len, SIZE_MAX, 414, true);
    expect_single(b.p, b.len, 1, 414, true);
    buf_free(&b);
}
END_TEST

/* A head of exactly APP_HTTP_HEAD_MAX bytes: one more byte gives 431. */
static void head_of_size(struct buf *b, size_t total)
{
    static const char start[] = "GET /nope HTTP/1.1\r\nX: ";
    size_t fill = total - (sizeof(start) - 1) - 4;
    b->len = 0;
    buf_str(b, start);
    for (size_t i = 0; i < fill; i++)
        buf_str(b, "v");
    buf_str(b, "\r\n\r\n");
    ck_assert_uint_eq(b->len, total);
}

START_TEST(test_header_too_large)
{
    struct buf b = {0};

    head_of_size(&b, APP_HTTP_HEAD_MAX);
    expect_single(b.p, b.len, SIZE_MAX, 404, false);
    expect_single(b.p, b.len, 1, 404, false);
    head_of_size(&b, APP_HTTP_HEAD_MAX + 1);
    expect_single(b.p, b.len, SIZE_MAX, 431, true);
    expect_single(b.p, b.len, 1, 431, true);

    /* many small fields */
    b.len = 0;
    buf_str(&b, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 1000; i++)
        buf_printf(&b, "X-%d: y\r\n", i);
    buf_str(&b, "\r\n");
    expect_single(b.p, b.len, 100, 431, true);

    /* endless empty lines before the request line are bounded too */
    b.len = 0;
    for (int i = 0; i < 5000; i++)
        buf_str(&b, "\r\n");
    expect_single(b.p, b.len, SIZE_MAX, 431, true);

    /* trailer section */
    b.len = 0;
    buf_str(&b, "PUT /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    for (int i = 0; i < 1000; i++)
        buf_printf(&b, "X-%d: y\r\n", i);
    buf_str(&b, "\r\n");
    expect_single(b.p, b.len, SIZE_MAX, 431, true);
    buf_free(&b);
}
END_TEST

/* ---- Parser API directly ---------------------------------------------------------------- */

START_TEST(test_parser_events)
{
    static const char req[] = "\r\nPOST /x?y HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n"
                              "7fffffffffffffff\r\nab";
    struct app_http_parser *p = malloc(sizeof(*p));
    const uint8_t *d = (const uint8_t *)req;
    size_t len = sizeof(req) - 1, off = 0, used, body_len, body_total = 0;
    const uint8_t *body;
    int heads = 0;

    app_http_parser_init(p);
    ck_assert(app_http_parser_between_messages(p));
    while (off < len) { /* byte by byte */
        enum app_http_parse_event ev = app_http_parser_feed(p, d + off, 1, &used, &body, &body_len);
        off += used;
        ck_assert_int_ne(ev, APP_HTTP_PARSE_ERROR);
        ck_assert_int_ne(ev, APP_HTTP_PARSE_DONE);
        if (ev == APP_HTTP_PARSE_HEAD) {
            const struct app_http_request *r = app_http_parser_request(p);
            heads++;
            ck_assert_uint_eq(r->method_len, 4);
            ck_assert(memcmp(r->method, "POST", 4) == 0);
            ck_assert_uint_eq(r->target_len, 4);
            ck_assert(memcmp(r->target, "/x?y", 4) == 0);
            ck_assert_int_eq(r->version_minor, 1);
            ck_assert(r->keep_alive);
            ck_assert(r->expect_continue);
            ck_assert_int_eq(r->body, APP_HTTP_BODY_CHUNKED);
        }
        if (ev == APP_HTTP_PARSE_BODY)
            body_total += body_len;
    }
    ck_assert_int_eq(heads, 1);
    ck_assert_uint_eq(body_total, 2); /* 2^63 - 1 is a legal chunk size */
    ck_assert(!app_http_parser_between_messages(p));
    ck_assert_int_eq(app_http_parser_status(p), 0);

    /* Pipelined: DONE leaves the next request's bytes unconsumed. */
    static const char two[] =
        "GET /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nxyGET /b HTTP/1.0\r\n\r\n";
    app_http_parser_init(p);
    d = (const uint8_t *)two;
    len = sizeof(two) - 1;
    ck_assert_int_eq(app_http_parser_feed(p, d, len, &used, &body, &body_len), APP_HTTP_PARSE_HEAD);
    off = used;
    ck_assert_int_eq(app_http_parser_feed(p, d + off, len - off, &used, &body, &body_len),
                     APP_HTTP_PARSE_BODY);
    ck_assert_uint_eq(body_len, 2);
    ck_assert(memcmp(body, "xy", 2) == 0);
    off += used;
    ck_assert_int_eq(app_http_parser_feed(p, d + off, len - off, &used, &body, &body_len),
                     APP_HTTP_PARSE_DONE);
    ck_assert_uint_eq(used, 0);
    ck_assert(app_http_parser_between_messages(p));
    ck_assert_int_eq(app_http_parser_feed(p, d + off, len - off, &used, &body, &body_len),
                     APP_HTTP_PARSE_HEAD);
    off += used;
    ck_assert(!app_http_parser_request(p)->keep_alive);
    ck_assert_int_eq(app_http_parser_request(p)->body, APP_HTTP_BODY_NONE);
    ck_assert_int_eq(app_http_parser_feed(p, d + off, len - off, &used, &body, &body_len),
                     APP_HTTP_PARSE_DONE);
    ck_assert_int_eq(app_http_parser_feed(p, NULL, 0, &used, &body, &body_len),
                     APP_HTTP_PARSE_NEED_MORE);
    ck_assert_uint_eq(off, len);

    /* Errors are sticky. */
    ck_assert_int_eq(app_http_parser_feed(p, (const uint8_t *)"X\0", 2, &used, &body, &body_len),
                     APP_HTTP_PARSE_NEED_MORE);
    ck_assert_int_eq(app_http_parser_feed(p, (const uint8_t *)"\n", 1, &used, &body, &body_len),
                     APP_HTTP_PARSE_ERROR);
    ck_assert_int_eq(app_http_parser_status(p), 400);
    ck_assert_int_eq(app_http_parser_feed(p, d, len, &used, &body, &body_len),
                     APP_HTTP_PARSE_ERROR);
    ck_assert_uint_eq(used, 0);
    free(p);
}
END_TEST

START_TEST(test_counters)
{
    struct app_http_counters before = *app_http_global_counters();
    const struct app_http_counters *g = app_http_global_counters();
    struct fake_io f;
    char json[512];
    static const char req[] = "GET /bytes/100 HTTP/1.1\r\n\r\n"
                              "PUT /upload HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                              "GET /nope HTTP/1.1\r\n\r\n"
                              "GET / HTTP/7.0\r\n\r\n";

    fake_init(&f, SIZE_MAX, 0, false);
    struct app_http_session *s = app_http_session_new(&fake_ops, &f);
    feed(&f, s, req, sizeof(req) - 1, SIZE_MAX);
    const struct app_http_counters *c = app_http_session_counters(s);
    ck_assert_uint_eq(c->requests, 3);
    ck_assert_uint_eq(c->responses_2xx, 2);
    ck_assert_uint_eq(c->responses_4xx, 1);
    ck_assert_uint_eq(c->responses_5xx, 1);
    ck_assert_uint_eq(c->bad_requests, 1);
    ck_assert_uint_eq(c->bytes_body_in, 3);
    /* 100 pattern bytes + 65 digest + "404 Not Found\n" + "505 HTTP Version Not Supported\n" */
    ck_assert_uint_eq(c->bytes_body_out, 100 + 65 + 14 + 31);
    ck_assert_uint_eq(g->requests - before.requests, c->requests);
    ck_assert_uint_eq(g->bytes_body_out - before.bytes_body_out, c->bytes_body_out);
    size_t n = app_http_counters_json(c, json, sizeof(json));
    ck_assert_uint_gt(n, 0);
    ck_assert_str_eq(json, "{\"requests\":3,\"responses_2xx\":2,\"responses_4xx\":1,"
                           "\"responses_5xx\":1,\"bad_requests\":1,\"bytes_body_in\":3,"
                           "\"bytes_body_out\":210}");
    ck_assert_uint_eq(app_http_counters_json(c, json, 10), 0);
    app_http_session_free(s);
    buf_free(&f.out);
}
END_TEST

/* ---- Fuzzing --------------------------------------------------------------------------- */

/* Feed data in random pieces through a random transport, maybe EOF, drain a
 * bounded number of steps, free. Whatever happens, nothing may crash or leak,
 * output must start with a status line and close happens at most once (the
 * fake asserts that, and that nothing is sent after it). */
static void fuzz_one(const uint8_t *data, size_t len, struct tu_rng *rng)
{
    struct fake_io f;
    size_t off = 0;
    bool stopped = false;

    /* One choice per statement, so the sequence does not depend on argument order. */
    size_t refill = 1 + tu_rng_below(rng, 65536);
    size_t call_max = tu_rng_below(rng, 4) ? 0 : 1 + tu_rng_below(rng, 64);
    bool call_random = tu_rng_below(rng, 2);
    const struct app_http_io *ops = tu_rng_below(rng, 4) ? &fake_ops : &fake_ops_minimal;
    fake_init(&f, refill, call_max, call_random);
    f.discard = true;
    f.rng.s = tu_rng_next(rng);
    struct app_http_session *s = app_http_session_new(ops, &f);
    FAST_CHECK(s != NULL);
    for (int steps = 0; off < len && steps < 1000; steps++) {
        size_t n = tu_rng_below(rng, 3) ? len - off : 1 + tu_rng_below(rng, len - off);
        long r = app_http_session_input(s, data + off, n);
        if (r < 0) {
            stopped = true;
            break;
        }
        off += (size_t)r;
        if ((size_t)r < n) {
            fake_refill(&f);
            app_http_session_on_writable(s);
        }
    }
    if ((off == len || stopped) && tu_rng_below(rng, 2))
        app_http_session_on_eof(s);
    for (int i = 0; i < 16 && !app_http_session_idle(s) && f.closes == 0; i++) {
        fake_refill(&f);
        app_http_session_on_writable(s);
    }
    if (f.out.len >= 9)
        FAST_CHECK(memcmp(f.out.p, "HTTP/1.1 ", 9) == 0);
    app_http_session_free(s);
    buf_free(&f.out);
}

static const char *const fuzz_tokens[] = {
    "GET ",
    "PUT ",
    "POST ",
    "HEAD ",
    "/",
    "/bytes/",
    "/upload",
    "/stats",
    " HTTP/1.1",
    " HTTP/1.0",
    "\r\n",
    "\n",
    "\r",
    "\0",
    ":",
    " ",
    "\t",
    "Content-Length: ",
    "Transfer-Encoding: chunked",
    "Connection: close",
    "Expect: 100-continue",
    "0",
    "1",
    "5",
    "ff",
    "FFFFFFFFFFFFFFFFFF",
    ";",
    "12345",
    "999999999999999",
    "\r\n\r\n",
    "0\r\n\r\n",
    "?",
    "\x80",
    "\x7f",
};
#define FUZZ_TOKENS (sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]))

static void add_token(struct buf *b, struct tu_rng *rng)
{
    const char *t = fuzz_tokens[tu_rng_below(rng, FUZZ_TOKENS)];
    buf_add(b, t, t[0] ? strlen(t) : 1);
}

START_TEST(test_fuzz_random)
{
    struct tu_rng rng = {tu_seed ^ 0xf022};
    struct buf b = {0};

    for (int iter = 0; iter < 20000; iter++) {
        b.len = 0;
        size_t n = tu_rng_below(&rng, 600);
        if (iter % 2) {
            for (size_t i = 0; i < n; i++) {
                uint8_t c = (uint8_t)tu_rng_next(&rng);
                buf_add(&b, &c, 1);
            }
        } else {
            while (b.len < n)
                add_token(&b, &rng);
        }
        fuzz_one(b.p ? b.p : (const uint8_t *)"", b.len, &rng);
    }
    buf_free(&b);
}
END_TEST

static const char *const fuzz_corpus[] = {
    "GET /bytes/1000 HTTP/1.1\r\nHost: x\r\n\r\n",
    "HEAD /bytes/12 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    "PUT /upload HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world",
    "POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nT: x\r\n\r\nGET /stats HTTP/1.1\r\n\r\n",
    "GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n",
    "PUT /upload HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
    "GET /bytes/3 HTTP/1.1\r\n\r\n",
    "DELETE /upload HTTP/1.1\r\nContent-Length: 2\r\n\r\nxxGET /bytes/0 HTTP/1.1\r\n\r\n",
};
#define FUZZ_CORPUS (sizeof(fuzz_corpus) / sizeof(fuzz_corpus[0]))

static void mutate(struct buf *b, struct tu_rng *rng)
{
    size_t pos = tu_rng_below(rng, b->len + 1);
    switch (tu_rng_below(rng, 6)) {
    case 0: /* flip a bit */
        if (b->len)
            b->p[tu_rng_below(rng, b->len)] ^= (uint8_t)(1u << tu_rng_below(rng, 8));
        break;
    case 1: /* random byte */
        if (b->len)
            b->p[tu_rng_below(rng, b->len)] = (uint8_t)tu_rng_next(rng);
        break;
    case 2: { /* insert a token */
        struct buf t = {0};
        add_token(&t, rng);
        buf_add(&t, b->p + pos, b->len - pos);
        b->len = pos;
        buf_add(b, t.p, t.len);
        buf_free(&t);
        break;
    }
    case 3: { /* delete a range */
        size_t n = tu_rng_below(rng, b->len - pos + 1);
        memmove(b->p + pos, b->p + pos + n, b->len - pos - n);
        b->len -= n;
        break;
    }
    case 4: { /* duplicate a range */
        size_t n = tu_rng_below(rng, min_size(b->len - pos, (size_t)64) + 1);
        struct buf t = {0};
        buf_add(&t, b->p + pos, b->len - pos);
        b->len = pos + n;
        buf_add(b, t.p, t.len);
        buf_free(&t);
        break;
    }
    default: /* truncate */
        b->len = pos;
        break;
    }
}

START_TEST(test_fuzz_mutated)
{
    struct tu_rng rng = {tu_seed ^ 0x3a7e};
    struct buf b = {0};

    for (int iter = 0; iter < 20000; iter++) {
        b.len = 0;
        buf_str(&b, fuzz_corpus[tu_rng_below(&rng, FUZZ_CORPUS)]);
        if (tu_rng_below(&rng, 2))
            buf_str(&b, fuzz_corpus[tu_rng_below(&rng, FUZZ_CORPUS)]);
        for (size_t k = 1 + tu_rng_below(&rng, 4); k > 0; k--)
            mutate(&b, &rng);
        fuzz_one(b.p ? b.p : (const uint8_t *)"", b.len, &rng);
    }
    buf_free(&b);
}
END_TEST

/* ---- Runner ---------------------------------------------------------------------------- */

static Suite *http_suite(void)
{
    Suite *s = suite_create("app_http");
    TCase *tc;

    tc = tcase_create("bytes");
    tcase_add_loop_test(tc, test_bytes_body_exact, 0,
                        (int)(sizeof(bytes_sizes) / sizeof(bytes_sizes[0]) * 5));
    tcase_add_test(tc, test_bytes_head_and_limits);
    tcase_add_test(tc, test_bytes_bad_count_is_400);
    tcase_add_test(tc, test_free_mid_stream);
    suite_add_tcase(s, tc);

    tc = tcase_create("upload");
    tcase_add_loop_test(tc, test_upload_content_length, 0,
                        (int)(sizeof(upload_sizes) / sizeof(upload_sizes[0]) * 5));
    tcase_add_loop_test(tc, test_upload_chunked, 0,
                        (int)(sizeof(upload_sizes) / sizeof(upload_sizes[0]) * 5));
    tcase_add_test(tc, test_upload_chunked_every_split);
    tcase_add_test(tc, test_upload_expect_continue);
    tcase_add_test(tc, test_crc32c_vectors_and_paths_agree);
    tcase_add_loop_test(tc, test_upload_digest_parameter, 0,
                        (int)(sizeof(upload_sizes) / sizeof(upload_sizes[0])));
    suite_add_tcase(s, tc);

    tc = tcase_create("connection");
    tcase_add_loop_test(tc, test_pipelined_one_chunk, 0,
                        (int)(sizeof(io_modes) / sizeof(io_modes[0])));
    tcase_add_test(tc, test_one_byte_at_a_time);
    tcase_add_test(tc, test_keep_alive_vs_close);
    tcase_add_test(tc, test_eof);
    tcase_add_test(tc, test_phase_and_timeout);
    suite_add_tcase(s, tc);

    tc = tcase_create("routing");
    tcase_add_test(tc, test_index_and_stats);
    tcase_add_test(tc, test_stats_large_and_default);
    tcase_add_test(tc, test_404_405);
    tcase_add_test(tc, test_counters);
    suite_add_tcase(s, tc);

    tc = tcase_create("malformed");
    tcase_add_loop_test(tc, test_malformed, 0, (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(tc, test_uri_too_long);
    tcase_add_test(tc, test_header_too_large);
    tcase_add_test(tc, test_parser_events);
    suite_add_tcase(s, tc);

    tc = tcase_create("fuzz");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fuzz_random);
    tcase_add_test(tc, test_fuzz_mutated);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    tu_seed_init_default("test_http", 0x616e6963u); /* "anic" */

    SRunner *sr = srunner_create(http_suite());
    /* No fork: one process, so ASan/LSan see every test and counters are global. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
