/* app_http.c - HTTP/1.1 request parser and server session; see app_http.h.
 *
 * Parser: the request line and header fields are copied into a fixed head buffer
 * (APP_HTTP_HEAD_MAX) one line at a time and each line is checked as soon as its
 * LF arrives, so input may be split anywhere. Body bytes are never copied: BODY
 * events point into the caller's input. Chunk-size lines are parsed byte by byte
 * with bounded length.
 *
 * Session: one request at a time. The response goes out as a small header block
 * (plus a small body: error page, digest) through out[], then an optional body
 * stream (generated /bytes pattern or a memory blob). Nothing more is parsed until
 * the response has been handed to send(); that is the pipelining back-pressure.
 */
#include "app_http.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---- Character classes (RFC 9110 §5.6.2, §5.5) ------------------------- */

static bool is_tchar(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Control characters, including NUL and DEL. HT is handled by callers. */
static bool is_ctl(uint8_t c)
{
    return c < 0x20 || c == 0x7f;
}

static bool is_blank(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool span_ieq(const uint8_t *s, size_t n, const char *lit)
{
    return n == strlen(lit) && strncasecmp((const char *)s, lit, n) == 0;
}

/* ---- Parser --------------------------------------------------------------- */

static void parser_reset_message(struct app_http_parser *p)
{
    p->state = APP_HTTP_EXPECT_REQUEST_LINE;
    p->head_len = 0;
    p->line_start = 0;
    p->line_len = 0;
    p->trailer_len = 0;
    p->trailer_cr = false;
    p->seen_length = p->seen_chunked = p->conn_close = p->conn_keep_alive = false;
    p->remaining = 0;
}

void app_http_parser_init(struct app_http_parser *p)
{
    memset(&p->req, 0, sizeof(p->req));
    p->status = 0;
    parser_reset_message(p);
}

static enum app_http_parse_event parser_fail(struct app_http_parser *p, uint16_t status)
{
    p->state = APP_HTTP_EXPECT_NOTHING;
    p->status = status;
    return APP_HTTP_PARSE_ERROR;
}

/* request-line = method SP request-target SP HTTP-version (RFC 9112 §3) */
static enum app_http_parse_event parse_request_line(struct app_http_parser *p, const uint8_t *l,
                                                    size_t n)
{
    struct app_http_request *r = &p->req;
    size_t i = 0;

    /* RFC 9112 §2.2: a server SHOULD ignore empty lines before the request line.
     * They still count against APP_HTTP_HEAD_MAX, so they cannot go on forever. */
    if (n == 0)
        return APP_HTTP_PARSE_NEED_MORE;

    memset(r, 0, sizeof(*r));
    while (i < n && is_tchar(l[i]))
        i++;
    if (i == 0 || i > APP_HTTP_METHOD_MAX || i == n || l[i] != ' ')
        return parser_fail(p, 400);
    r->method = (const char *)l;
    r->method_len = i;

    size_t t = ++i;
    while (i < n && l[i] > ' ' && l[i] < 0x7f)
        i++;
    if (i == t || i == n || l[i] != ' ')
        return parser_fail(p, 400);
    if (i - t > APP_HTTP_TARGET_MAX)
        return parser_fail(p, 414);
    r->target = (const char *)l + t;
    r->target_len = i - t;

    /* HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive (RFC 9112 §2.3) */
    const uint8_t *v = l + i + 1;
    if (n - (i + 1) != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return parser_fail(p, 400);
    if (v[5] == '0')
        return parser_fail(p, 400);
    if (v[5] != '1')
        return parser_fail(p, 505);
    r->version_minor = (uint8_t)(v[7] - '0');
    p->state = APP_HTTP_EXPECT_HEADER;
    return APP_HTTP_PARSE_NEED_MORE;
}

/* Content-Length = 1*DIGIT; a list or a repeated field is rejected outright
 * rather than checked for equal members (RFC 9112 §6.3 item 5 allows that). */
static enum app_http_parse_event parse_content_length(struct app_http_parser *p, const uint8_t *v,
                                                      size_t n)
{
    uint64_t x = 0;

    if (p->seen_length || n == 0)
        return parser_fail(p, 400);
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return parser_fail(p, 400);
        unsigned d = v[i] - '0';
        if (x > (APP_HTTP_LENGTH_MAX - d) / 10)
            return parser_fail(p, 400);
        x = x * 10 + d;
    }
    p->seen_length = true;
    p->req.content_length = x;
    return APP_HTTP_PARSE_NEED_MORE;
}

/* Connection = #connection-option; only "close" and "keep-alive" matter. */
static void parse_connection(struct app_http_parser *p, const uint8_t *v, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i++;
        while (s < e && is_blank(v[s]))
            s++;
        while (e > s && is_blank(v[e - 1]))
            e--;
        if (span_ieq(v + s, e - s, "close"))
            p->conn_close = true;
        else if (span_ieq(v + s, e - s, "keep-alive"))
            p->conn_keep_alive = true;
    }
}

/* field-line = field-name ":" OWS field-value OWS (RFC 9112 §5) */
static enum app_http_parse_event parse_header_line(struct app_http_parser *p, const uint8_t *l,
                                                   size_t n)
{
    struct app_http_request *r = &p->req;
    size_t i = 0;

    if (n == 0) {
        /* End of head: decide the message body length (RFC 9112 §6.3). */
        if (p->seen_length && p->seen_chunked)
            return parser_fail(p, 400);
        r->keep_alive = !p->conn_close && (r->version_minor >= 1 || p->conn_keep_alive);
        if (p->seen_chunked) {
            r->body = APP_HTTP_BODY_CHUNKED;
            p->remaining = 0;
            p->line_len = 0;
            p->state = APP_HTTP_EXPECT_CHUNK_SIZE;
        } else if (p->seen_length) {
            r->body = APP_HTTP_BODY_LENGTH;
            p->remaining = r->content_length;
            p->state = p->remaining ? APP_HTTP_EXPECT_BODY : APP_HTTP_EXPECT_END;
        } else {
            r->body = APP_HTTP_BODY_NONE;
            p->state = APP_HTTP_EXPECT_END;
        }
        return APP_HTTP_PARSE_HEAD;
    }
    /* obs-fold: RFC 9112 §5.2 lets a server reject it with 400. */
    if (is_blank(l[0]))
        return parser_fail(p, 400);
    while (i < n && is_tchar(l[i]))
        i++;
    /* No whitespace between name and colon (RFC 9112 §5.1). */
    if (i == 0 || i == n || l[i] != ':')
        return parser_fail(p, 400);
    size_t name_len = i;
    size_t v = i + 1, e = n;
    for (size_t k = v; k < e; k++)
        if (is_ctl(l[k]) && l[k] != '\t')
            return parser_fail(p, 400);
    while (v < e && is_blank(l[v]))
        v++;
    while (e > v && is_blank(l[e - 1]))
        e--;

    if (span_ieq(l, name_len, "content-length"))
        return parse_content_length(p, l + v, e - v);
    if (span_ieq(l, name_len, "transfer-encoding")) {
        /* Only a single "chunked" coding is supported; anything else would
         * leave the body length unknown. */
        if (p->seen_chunked || !span_ieq(l + v, e - v, "chunked"))
            return parser_fail(p, 400);
        p->seen_chunked = true;
    } else if (span_ieq(l, name_len, "connection")) {
        parse_connection(p, l + v, e - v);
    } else if (span_ieq(l, name_len, "expect")) {
        if (span_ieq(l + v, e - v, "100-continue"))
            r->expect_continue = true;
    }
    return APP_HTTP_PARSE_NEED_MORE;
}

/* For a request line that overflowed the head buffer: is it the target that is
 * too long (414) rather than the head in general (431)? */
static bool request_line_target_too_long(const uint8_t *l, size_t n)
{
    const uint8_t *sp = memchr(l, ' ', MIN(n, (size_t)APP_HTTP_METHOD_MAX + 1));

    if (sp == NULL)
        return false;
    size_t t = (size_t)(sp - l) + 1;
    const uint8_t *end = memchr(l + t, ' ', n - t);
    size_t target_len = end ? (size_t)(end - (l + t)) : n - t;
    return target_len > APP_HTTP_TARGET_MAX;
}

/* Copy input up to and including the next LF into head[] and check that line. */
static enum app_http_parse_event collect_head_line(struct app_http_parser *p, const uint8_t *data,
                                                   size_t len, size_t *off)
{
    size_t room = APP_HTTP_HEAD_MAX - p->head_len;
    size_t n = MIN(len - *off, room);
    const uint8_t *lf = n ? memchr(data + *off, '\n', n) : NULL;
    size_t take = lf ? (size_t)(lf - (data + *off)) + 1 : n;

    memcpy(p->head + p->head_len, data + *off, take);
    p->head_len += (uint32_t)take;
    *off += take;
    if (lf == NULL) {
        if (p->head_len < APP_HTTP_HEAD_MAX)
            return APP_HTTP_PARSE_NEED_MORE;
        const uint8_t *l = p->head + p->line_start;
        size_t ln = p->head_len - p->line_start;
        if (p->state == APP_HTTP_EXPECT_REQUEST_LINE && request_line_target_too_long(l, ln))
            return parser_fail(p, 414);
        return parser_fail(p, 431);
    }

    const uint8_t *l = p->head + p->line_start;
    size_t ln = p->head_len - p->line_start - 1; /* without LF */
    if (ln > 0 && l[ln - 1] == '\r')
        ln--; /* CRLF or bare LF (RFC 9112 §2.2); a CR anywhere else is a CTL */
    p->line_start = p->head_len;
    if (p->state == APP_HTTP_EXPECT_REQUEST_LINE)
        return parse_request_line(p, l, ln);
    return parse_header_line(p, l, ln);
}

/* chunk-size line ended: a zero size starts the trailer section. */
static void chunk_size_line_done(struct app_http_parser *p)
{
    if (p->remaining == 0) {
        p->line_len = 0;
        p->trailer_len = 0;
        p->trailer_cr = false;
        p->state = APP_HTTP_EXPECT_TRAILER;
    } else {
        p->state = APP_HTTP_EXPECT_CHUNK_DATA;
    }
}

static void chunk_next_size(struct app_http_parser *p)
{
    p->remaining = 0;
    p->line_len = 0;
    p->state = APP_HTTP_EXPECT_CHUNK_SIZE;
}

/* One byte of chunk framing (RFC 9112 §7.1):
 *   chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   last-chunk = 1*"0" [ chunk-ext ] CRLF, then trailer-section CRLF */
static enum app_http_parse_event chunk_framing_byte(struct app_http_parser *p, uint8_t c)
{
    switch (p->state) {
    case APP_HTTP_EXPECT_CHUNK_SIZE: {
        int d = hex_value(c);
        if (++p->line_len > APP_HTTP_CHUNK_LINE_MAX)
            return parser_fail(p, 400);
        if (d >= 0) {
            if (p->remaining > (APP_HTTP_LENGTH_MAX - (uint64_t)d) / 16)
                return parser_fail(p, 400);
            p->remaining = p->remaining * 16 + (uint64_t)d;
            return APP_HTTP_PARSE_NEED_MORE;
        }
        if (p->line_len == 1) /* at least one digit */
            return parser_fail(p, 400);
        if (is_blank(c))
            p->state = APP_HTTP_EXPECT_CHUNK_BWS;
        else if (c == ';')
            p->state = APP_HTTP_EXPECT_CHUNK_EXT;
        else if (c == '\r')
            p->state = APP_HTTP_EXPECT_CHUNK_SIZE_LF;
        else if (c == '\n')
            chunk_size_line_done(p);
        else
            return parser_fail(p, 400);
        return APP_HTTP_PARSE_NEED_MORE;
    }
    case APP_HTTP_EXPECT_CHUNK_BWS:
        if (++p->line_len > APP_HTTP_CHUNK_LINE_MAX)
            return parser_fail(p, 400);
        if (c == ';')
            p->state = APP_HTTP_EXPECT_CHUNK_EXT;
        else if (c == '\r')
            p->state = APP_HTTP_EXPECT_CHUNK_SIZE_LF;
        else if (c == '\n')
            chunk_size_line_done(p);
        else if (!is_blank(c))
            return parser_fail(p, 400);
        return APP_HTTP_PARSE_NEED_MORE;
    case APP_HTTP_EXPECT_CHUNK_EXT:
        if (++p->line_len > APP_HTTP_CHUNK_LINE_MAX)
            return parser_fail(p, 400);
        if (c == '\r')
            p->state = APP_HTTP_EXPECT_CHUNK_SIZE_LF;
        else if (c == '\n')
            chunk_size_line_done(p);
        else if (is_ctl(c) && c != '\t')
            return parser_fail(p, 400);
        return APP_HTTP_PARSE_NEED_MORE;
    case APP_HTTP_EXPECT_CHUNK_SIZE_LF:
        if (c != '\n')
            return parser_fail(p, 400);
        chunk_size_line_done(p);
        return APP_HTTP_PARSE_NEED_MORE;
    case APP_HTTP_EXPECT_CHUNK_DATA_CR:
        if (c == '\r')
            p->state = APP_HTTP_EXPECT_CHUNK_DATA_LF;
        else if (c == '\n')
            chunk_next_size(p);
        else
            return parser_fail(p, 400);
        return APP_HTTP_PARSE_NEED_MORE;
    case APP_HTTP_EXPECT_CHUNK_DATA_LF:
        if (c != '\n')
            return parser_fail(p, 400);
        chunk_next_size(p);
        return APP_HTTP_PARSE_NEED_MORE;
    case APP_HTTP_EXPECT_TRAILER:
        /* Trailer fields are skipped, but bounded like the head. */
        if (++p->trailer_len > APP_HTTP_HEAD_MAX)
            return parser_fail(p, 431);
        if (p->trailer_cr && c != '\n')
            return parser_fail(p, 400);
        if (c == '\n') {
            if (p->line_len == 0)
                p->state = APP_HTTP_EXPECT_END;
            p->line_len = 0;
            p->trailer_cr = false;
        } else if (c == '\r') {
            p->trailer_cr = true;
        } else if (is_ctl(c) && c != '\t') {
            return parser_fail(p, 400);
        } else {
            p->line_len++;
        }
        return APP_HTTP_PARSE_NEED_MORE;
    default:
        assert(!"not a chunk framing state");
        return parser_fail(p, 400);
    }
}

enum app_http_parse_event app_http_parser_feed(struct app_http_parser *p, const uint8_t *data,
                                               size_t len, size_t *consumed, const uint8_t **body,
                                               size_t *body_len)
{
    enum app_http_parse_event ev = APP_HTTP_PARSE_NEED_MORE;
    size_t off = 0;

    *body = NULL;
    *body_len = 0;
    while (ev == APP_HTTP_PARSE_NEED_MORE) {
        switch (p->state) {
        case APP_HTTP_EXPECT_END:
            parser_reset_message(p);
            ev = APP_HTTP_PARSE_DONE;
            break;
        case APP_HTTP_EXPECT_NOTHING:
            ev = APP_HTTP_PARSE_ERROR;
            break;
        case APP_HTTP_EXPECT_REQUEST_LINE:
        case APP_HTTP_EXPECT_HEADER:
            if (off == len)
                goto out;
            ev = collect_head_line(p, data, len, &off);
            break;
        case APP_HTTP_EXPECT_BODY:
        case APP_HTTP_EXPECT_CHUNK_DATA: {
            if (off == len)
                goto out;
            size_t n = (size_t)MIN((uint64_t)(len - off), p->remaining);
            *body = data + off;
            *body_len = n;
            off += n;
            p->remaining -= n;
            if (p->remaining == 0)
                p->state = p->state == APP_HTTP_EXPECT_BODY ? APP_HTTP_EXPECT_END
                                                            : APP_HTTP_EXPECT_CHUNK_DATA_CR;
            ev = APP_HTTP_PARSE_BODY;
            break;
        }
        default:
            if (off == len)
                goto out;
            ev = chunk_framing_byte(p, data[off++]);
            break;
        }
    }
out:
    *consumed = off;
    return ev;
}

const struct app_http_request *app_http_parser_request(const struct app_http_parser *p)
{
    return &p->req;
}

int app_http_parser_status(const struct app_http_parser *p)
{
    return p->state == APP_HTTP_EXPECT_NOTHING ? p->status : 0;
}

bool app_http_parser_between_messages(const struct app_http_parser *p)
{
    return p->state == APP_HTTP_EXPECT_REQUEST_LINE && p->head_len == 0;
}

/* ---- Counters ------------------------------------------------------------ */

static struct app_http_counters global_counters;

const struct app_http_counters *app_http_global_counters(void)
{
    return &global_counters;
}

size_t app_http_counters_json(const struct app_http_counters *c, char *buf, size_t cap)
{
    int n = snprintf(buf, cap,
                     "{\"requests\":%" PRIu64 ",\"responses_2xx\":%" PRIu64
                     ",\"responses_4xx\":%" PRIu64 ",\"responses_5xx\":%" PRIu64
                     ",\"bad_requests\":%" PRIu64 ",\"bytes_body_in\":%" PRIu64
                     ",\"bytes_body_out\":%" PRIu64 "}",
                     c->requests, c->responses_2xx, c->responses_4xx, c->responses_5xx,
                     c->bad_requests, c->bytes_body_in, c->bytes_body_out);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

/* ---- Session ------------------------------------------------------------- */

/* Headers and small bodies (error page, digest, 100 Continue) fit in this. */
#define OUT_CAP 1024

/* /bytes/N body: byte i is i % 251. The buffer holds whole periods, so a send
 * can start at any phase (pos % 251) and still cover many periods at once. */
#define PATTERN_PERIOD 251
#define PATTERN_LEN    (PATTERN_PERIOD * 256) /* ~63 KiB: sends of several whole records */

static uint8_t pattern[PATTERN_LEN];

static void pattern_init(void)
{
    if (pattern[PATTERN_PERIOD - 1] != 0)
        return; /* already done: byte 250 is nonzero once filled */
    for (size_t i = 0; i < PATTERN_LEN; i++)
        pattern[i] = (uint8_t)(i % PATTERN_PERIOD);
}

/* What the request being received will be answered with, decided at its head. */
enum route {
    ROUTE_INDEX,
    ROUTE_BYTES,
    ROUTE_UPLOAD,
    ROUTE_STATS,
    ROUTE_ERROR, /* error page with route_status */
};

enum body_stream_kind {
    BODY_STREAM_NONE,
    BODY_STREAM_PATTERN, /* /bytes/N: generated from pattern[] */
    BODY_STREAM_MEMORY,  /* mem[pos, pos + left); freed at the end if owned */
};

struct body_stream {
    enum body_stream_kind kind;
    uint64_t pos;  /* body bytes already sent */
    uint64_t left; /* body bytes still to send */
    const uint8_t *mem;
    uint8_t *owned;
};

struct app_http_session {
    const struct app_http_io *io;
    void *io_ctx;
    struct app_http_parser parser;

    /* Current request, from its head on. */
    enum route route;
    uint16_t route_status;
    const char *route_allow; /* Allow header value for 405 */
    uint64_t bytes_n;
    bool is_head;
    bool keep_alive;
    bool digest_failed;
    bool digest_crc32c; /* /upload?digest=crc32c: CRC32C, else SHA-256 */
    uint32_t crc;       /* running CRC32C of the body */
    EVP_MD_CTX *sha;    /* allocated at the first SHA-256 upload, reused afterwards */

    /* out[out_pos, out_len) waits for send(); its first out_meta bytes are not
     * response body (status lines, headers), the rest is. */
    uint8_t out[OUT_CAP];
    size_t out_pos, out_len, out_meta;
    struct body_stream body;

    bool resp_active;     /* final response queued, not yet fully handed to send() */
    bool close_when_done; /* io->close() once output has drained */
    bool input_done;      /* nothing more will be parsed */
    bool closed;          /* io->close() has been called */
    struct app_http_counters ctr;
};

#define COUNT(s, field, n)                                                                         \
    do {                                                                                           \
        (s)->ctr.field += (n);                                                                     \
        global_counters.field += (n);                                                              \
    } while (0)

static const char index_html[] =
    "<!DOCTYPE html>\n"
    "<html><head><title>anic</title></head><body>\n"
    "<h1>anic HTTP server</h1>\n"
    "<ul>\n"
    "<li><code>GET /bytes/N</code> &mdash; N bytes (0 &le; N &le; 2<sup>40</sup>), "
    "byte i = i mod 251 (<code>HEAD</code> too)</li>\n"
    "<li><code>PUT /upload</code>, <code>POST /upload</code> &mdash; SHA-256 of the body "
    "as hex; <code>/upload?digest=crc32c</code>: its CRC32C (Castagnoli), 8 hex digits, "
    "a cheaper check for benchmarks</li>\n"
    "<li><code>GET /stats</code> &mdash; counters as JSON</li>\n"
    "<li><code>GET /</code> &mdash; this page</li>\n"
    "</ul>\n"
    "</body></html>\n";

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 505:
        return "HTTP Version Not Supported";
    default:
        assert(!"status without reason phrase");
        return "Unknown";
    }
}

struct app_http_session *app_http_session_new(const struct app_http_io *io, void *io_ctx)
{
    assert(io != NULL && io->send != NULL && io->close != NULL);
    struct app_http_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->io = io;
    s->io_ctx = io_ctx;
    app_http_parser_init(&s->parser);
    pattern_init();
    return s;
}

static void body_stream_release(struct body_stream *b)
{
    free(b->owned);
    memset(b, 0, sizeof(*b));
}

void app_http_session_free(struct app_http_session *s)
{
    if (s == NULL)
        return;
    body_stream_release(&s->body);
    EVP_MD_CTX_free(s->sha);
    free(s);
}

/* Append to out[]. Sizes are bounded by construction (headers + small body), so
 * running out of room is a bug. */
static void out_append(struct app_http_session *s, const void *p, size_t n, bool meta)
{
    if (s->out_pos > 0) {
        memmove(s->out, s->out + s->out_pos, s->out_len - s->out_pos);
        s->out_len -= s->out_pos;
        s->out_pos = 0;
    }
    assert(n <= OUT_CAP - s->out_len);
    assert(!meta || s->out_meta == s->out_len); /* meta bytes precede body bytes */
    memcpy(s->out + s->out_len, p, n);
    s->out_len += n;
    if (meta)
        s->out_meta += n;
}

static void do_close(struct app_http_session *s)
{
    s->closed = true;
    s->input_done = true;
    s->io->close(s->io_ctx);
}

/* Hand out[] and then the body stream to send() until it pushes back. */
static void pump(struct app_http_session *s)
{
    bool sent = false;

    if (s->closed)
        return;
    for (;;) {
        size_t space = s->io->send_space ? s->io->send_space(s->io_ctx) : SIZE_MAX;
        const uint8_t *p;
        size_t n;
        bool from_out = s->out_pos < s->out_len;

        if (space == 0)
            break;
        if (from_out) {
            p = s->out + s->out_pos;
            n = MIN(s->out_len - s->out_pos, space);
        } else if (s->body.left > 0 && s->body.kind == BODY_STREAM_PATTERN) {
            size_t phase = (size_t)(s->body.pos % PATTERN_PERIOD);
            p = pattern + phase;
            n = (size_t)MIN((uint64_t)MIN(PATTERN_LEN - phase, space), s->body.left);
        } else if (s->body.left > 0) {
            p = s->body.mem + s->body.pos;
            n = (size_t)MIN((uint64_t)space, s->body.left);
        } else {
            break;
        }

        /* pattern[] never changes once built: the transport may reference it. */
        bool stat = !from_out && s->body.kind == BODY_STREAM_PATTERN && s->io->send_static;
        size_t acc = stat ? s->io->send_static(s->io_ctx, p, n) : s->io->send(s->io_ctx, p, n);
        assert(acc <= n);
        if (acc > 0)
            sent = true;
        if (from_out) {
            size_t meta = MIN(acc, s->out_meta);
            s->out_meta -= meta;
            COUNT(s, bytes_body_out, acc - meta);
            s->out_pos += acc;
            if (s->out_pos == s->out_len)
                s->out_pos = s->out_len = 0;
        } else {
            s->body.pos += acc;
            s->body.left -= acc;
            COUNT(s, bytes_body_out, acc);
        }
        if (acc < n)
            break;
    }
    if (sent && s->io->flush)
        s->io->flush(s->io_ctx);

    bool drained = s->out_len == 0 && s->body.left == 0;
    if (s->resp_active && drained) {
        s->resp_active = false;
        body_stream_release(&s->body);
    }
    if (!s->resp_active && drained && s->close_when_done)
        do_close(s);
}

/* Queue status line and headers of the final response. The body, if any, follows
 * through out_append(.., false) or s->body. With close, no further request is
 * parsed and the transport closes after this response. */
static void respond(struct app_http_session *s, int status, const char *content_type,
                    uint64_t content_length, bool close)
{
    char h[512];
    int n = snprintf(h, sizeof(h),
                     "HTTP/1.1 %d %s\r\n"
                     "Server: anic\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %" PRIu64 "\r\n"
                     "Connection: %s\r\n"
                     "%s%s%s"
                     "\r\n",
                     status, reason_phrase(status), content_type, content_length,
                     close ? "close" : "keep-alive", status == 405 ? "Allow: " : "",
                     status == 405 ? s->route_allow : "", status == 405 ? "\r\n" : "");
    assert(n > 0 && (size_t)n < sizeof(h));
    if (s->io->expect)
        s->io->expect(s->io_ctx, true, (uint64_t)n + (s->is_head ? 0 : content_length));
    out_append(s, h, (size_t)n, true);

    if (status >= 500)
        COUNT(s, responses_5xx, 1);
    else if (status >= 400)
        COUNT(s, responses_4xx, 1);
    else if (status >= 200 && status < 300)
        COUNT(s, responses_2xx, 1);
    s->resp_active = true;
    if (close) {
        s->close_when_done = true;
        s->input_done = true;
    }
}

/* Small text/plain error page. 404 and 405 keep the connection (the framing is
 * intact); every other error closes it. */
static void respond_error(struct app_http_session *s, int status, bool is_head)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, reason_phrase(status));
    bool close = !(status == 404 || status == 405) || !s->keep_alive;

    assert(n > 0 && (size_t)n < sizeof(body));
    respond(s, status, "text/plain", (uint64_t)n, close);
    if (!is_head)
        out_append(s, body, (size_t)n, false);
    pump(s);
}

static void respond_memory(struct app_http_session *s, const char *content_type, const void *mem,
                           size_t len, uint8_t *owned)
{
    respond(s, 200, content_type, len, !s->keep_alive);
    if (s->is_head) {
        free(owned);
    } else {
        s->body.kind = BODY_STREAM_MEMORY;
        s->body.mem = mem;
        s->body.owned = owned;
        s->body.pos = 0;
        s->body.left = len;
    }
    pump(s);
}

static void respond_stats(struct app_http_session *s)
{
    uint8_t *buf = malloc(APP_HTTP_STATS_MAX);
    size_t n;

    if (buf == NULL) {
        respond_error(s, 500, s->is_head);
        return;
    }
    if (s->io->stats_json)
        n = s->io->stats_json(s->io_ctx, (char *)buf, APP_HTTP_STATS_MAX);
    else
        n = app_http_counters_json(&global_counters, (char *)buf, APP_HTTP_STATS_MAX);
    n = MIN(n, (size_t)APP_HTTP_STATS_MAX); /* do not trust the hint past cap */
    respond_memory(s, "application/json", buf, n, buf);
}

/* ---- CRC32C (Castagnoli, reflected polynomial 0x82F63B78, as iSCSI) ---- */

static uint32_t crc32c_table[256];

static void crc32c_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[i] = c;
    }
}

uint32_t app_crc32c_sw(uint32_t crc, const void *data, size_t n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc32c_table_init);
    const uint8_t *p = data;
    crc = ~crc;
    while (n--)
        crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
/* SSE4.2's crc32 instruction computes exactly this CRC, 8 bytes at a time.
   It takes 3 cycles but can start every cycle, so three independent chains
   over the thirds of a block run faster than one (13.8 GB/s over a 64 MiB
   buffer, memory-bound, against ~7; SHA-256 with SHA-NI: 2). The chains are
   joined by linearity: with R(c, d) the register after data d from register
   c, R(c, A B) = S(R(c, A), |B|) ^ R(0, B), where S(x, L) = R(x, L zero
   bytes) is linear in x and so a table lookup per byte of x. */
/* Lanes: bytes per chain; a block is three lanes. The long lane does the
   bulk; what is left (under 12 KiB: most of a 16 KiB record delivered in
   pieces) goes through the short lane before the single chain. */
#define CRC32C_LANE_LONG  4096u
#define CRC32C_LANE_SHORT 256u
static const size_t crc32c_lanes[2] = {CRC32C_LANE_LONG, CRC32C_LANE_SHORT};

/* S(x, crc32c_lanes[l]), per byte k of x */
static uint32_t crc32c_shift_tab[2][4][256];

__attribute__((target("sse4.2"))) static uint32_t crc32c_run(uint32_t c32, const uint8_t *p,
                                                             size_t n)
{
    uint64_t c = c32;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
    }
    c32 = (uint32_t)c;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}

static void crc32c_shift_init(void)
{
    static const uint8_t zeros[CRC32C_LANE_LONG]; /* the longest lane */
    for (unsigned l = 0; l < 2; l++)
        for (unsigned k = 0; k < 4; k++)
            for (uint32_t v = 0; v < 256; v++)
                crc32c_shift_tab[l][k][v] = crc32c_run(v << (8 * k), zeros, crc32c_lanes[l]);
}

static uint32_t crc32c_shift(unsigned l, uint32_t x)
{
    const uint32_t(*t)[256] = crc32c_shift_tab[l];
    return t[0][x & 0xff] ^ t[1][(x >> 8) & 0xff] ^ t[2][(x >> 16) & 0xff] ^ t[3][x >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *data,
                                                               size_t n)
{
    const uint8_t *p = data;
    uint32_t c = ~crc;
    if (n >= 3 * crc32c_lanes[1]) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, crc32c_shift_init);
    }
    for (unsigned l = 0; l < 2; l++) {
        size_t lane = crc32c_lanes[l];
        for (; n >= 3 * lane; n -= 3 * lane, p += 3 * lane) {
            uint64_t a = c, b = 0, d = 0;
            for (size_t i = 0; i < lane; i += 8) {
                uint64_t wa, wb, wd;
                memcpy(&wa, p + i, 8);
                memcpy(&wb, p + lane + i, 8);
                memcpy(&wd, p + 2 * lane + i, 8);
                a = __builtin_ia32_crc32di(a, wa);
                b = __builtin_ia32_crc32di(b, wb);
                d = __builtin_ia32_crc32di(d, wd);
            }
            c = crc32c_shift(l, crc32c_shift(l, (uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)d;
        }
    }
    return ~crc32c_run(c, p, n);
}
#endif

uint32_t app_crc32c(uint32_t crc, const void *data, size_t n)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2"))
        return crc32c_sse42(crc, data, n);
#endif
    return app_crc32c_sw(crc, data, n);
}

static void respond_digest(struct app_http_session *s)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];

    if (s->digest_crc32c) {
        md_len = 4;
        for (unsigned i = 0; i < 4; i++)
            md[i] = (uint8_t)(s->crc >> (24 - 8 * i));
    } else if (s->digest_failed || EVP_DigestFinal_ex(s->sha, md, &md_len) != 1) {
        respond_error(s, 500, false);
        return;
    }
    for (unsigned i = 0; i < md_len; i++) {
        hex[2 * i] = "0123456789abcdef"[md[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
    }
    hex[2 * md_len] = '\n';
    respond(s, 200, "text/plain", 2 * md_len + 1, !s->keep_alive);
    out_append(s, hex, 2 * md_len + 1, false);
    pump(s);
}

static void respond_bytes(struct app_http_session *s)
{
    respond(s, 200, "application/octet-stream", s->bytes_n, !s->keep_alive);
    if (!s->is_head) {
        s->body.kind = BODY_STREAM_PATTERN;
        s->body.pos = 0;
        s->body.left = s->bytes_n;
    }
    pump(s);
}

/* The path of an origin-form or absolute-form (RFC 9112 §3.2) target, without
 * the query. */
static void target_path(const char *t, size_t n, const char **path, size_t *path_len)
{
    if (n > 0 && t[0] != '/') {
        const char *scheme_end = NULL;
        for (size_t i = 0; i + 3 <= n && scheme_end == NULL; i++)
            if (memcmp(t + i, "://", 3) == 0)
                scheme_end = t + i;
        if (scheme_end != NULL) {
            const char *auth = scheme_end + 3;
            const char *slash = memchr(auth, '/', n - (size_t)(auth - t));
            if (slash == NULL) {
                *path = "/";
                *path_len = 1;
                return;
            }
            n -= (size_t)(slash - t);
            t = slash;
        }
    }
    const char *q = memchr(t, '?', n);
    *path = t;
    *path_len = q ? (size_t)(q - t) : n;
}

static bool span_eq(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* The value of query parameter name in target t[0, n) (after its '?'), or
   NULL; *len gets its length. No percent-decoding: the values we take are
   plain words. */
static const char *query_param(const char *t, size_t n, const char *name, size_t *len)
{
    const char *q = memchr(t, '?', n);
    if (!q)
        return NULL;
    size_t name_len = strlen(name);
    const char *end = t + n;
    for (const char *p = q + 1; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > name_len && memcmp(p, name, name_len) == 0 && p[name_len] == '=') {
            *len = (size_t)(stop - p) - name_len - 1;
            return p + name_len + 1;
        }
        p = stop + 1;
    }
    return NULL;
}

/* N of /bytes/N: 1*DIGIT, at most APP_HTTP_BYTES_MAX. */
static bool parse_bytes_count(const char *s, size_t n, uint64_t *out)
{
    uint64_t x = 0;

    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(s[i] - '0');
        if (x > APP_HTTP_BYTES_MAX) /* checked per digit, so x*10 cannot overflow */
            return false;
    }
    *out = x;
    return true;
}

static void route_error(struct app_http_session *s, int status, const char *allow)
{
    s->route = ROUTE_ERROR;
    s->route_status = (uint16_t)status;
    s->route_allow = allow;
}

/* Request head complete: decide the answer. Body bytes follow (if any). */
static void on_request_head(struct app_http_session *s, const struct app_http_request *r)
{
    const char *path;
    size_t path_len;
    bool get = span_eq(r->method, r->method_len, "GET");
    bool head = span_eq(r->method, r->method_len, "HEAD");
    bool put_post =
        span_eq(r->method, r->method_len, "PUT") || span_eq(r->method, r->method_len, "POST");
    static const char bytes_prefix[] = "/bytes/";

    COUNT(s, requests, 1);
    if (s->io->expect && r->body == APP_HTTP_BODY_LENGTH && r->content_length > 0)
        s->io->expect(s->io_ctx, false, r->content_length);
    s->is_head = head;
    s->keep_alive = r->keep_alive;
    s->digest_failed = false;
    target_path(r->target, r->target_len, &path, &path_len);

    if (span_eq(path, path_len, "/")) {
        if (get || head)
            s->route = ROUTE_INDEX;
        else
            route_error(s, 405, "GET, HEAD");
    } else if (span_eq(path, path_len, "/stats")) {
        if (get || head)
            s->route = ROUTE_STATS;
        else
            route_error(s, 405, "GET, HEAD");
    } else if (span_eq(path, path_len, "/upload")) {
        if (put_post)
            s->route = ROUTE_UPLOAD;
        else
            route_error(s, 405, "PUT, POST");
    } else if (path_len >= sizeof(bytes_prefix) - 1 &&
               memcmp(path, bytes_prefix, sizeof(bytes_prefix) - 1) == 0) {
        size_t skip = sizeof(bytes_prefix) - 1;
        if (!(get || head)) {
            route_error(s, 405, "GET, HEAD");
        } else if (parse_bytes_count(path + skip, path_len - skip, &s->bytes_n)) {
            s->route = ROUTE_BYTES;
        } else {
            /* Bad parameter: answer now and close, no need to read a body. */
            COUNT(s, bad_requests, 1);
            respond_error(s, 400, head);
            return;
        }
    } else {
        route_error(s, 404, NULL);
    }

    if (s->route == ROUTE_UPLOAD) {
        size_t dlen = 0;
        const char *d = query_param(r->target, r->target_len, "digest", &dlen);
        s->digest_crc32c = d && span_eq(d, dlen, "crc32c");
        s->crc = 0;
        if (d && !s->digest_crc32c && !span_eq(d, dlen, "sha256")) {
            /* Bad parameter: answer now and close, no need to read a body. */
            COUNT(s, bad_requests, 1);
            respond_error(s, 400, false);
            return;
        }
        if (!s->digest_crc32c) {
            if (s->sha == NULL)
                s->sha = EVP_MD_CTX_new();
            if (s->sha == NULL || EVP_DigestInit_ex(s->sha, EVP_sha256(), NULL) != 1) {
                respond_error(s, 500, false);
                return;
            }
        }
        /* RFC 9110 §10.1.1: tell a waiting client to send the body. */
        bool body_follows = r->body == APP_HTTP_BODY_CHUNKED ||
                            (r->body == APP_HTTP_BODY_LENGTH && r->content_length > 0);
        if (r->expect_continue && r->version_minor >= 1 && body_follows) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            out_append(s, cont, sizeof(cont) - 1, true);
            pump(s);
        }
    }
}

static void on_request_body(struct app_http_session *s, const uint8_t *p, size_t n)
{
    COUNT(s, bytes_body_in, n);
    if (s->route == ROUTE_UPLOAD && s->digest_crc32c)
        s->crc = app_crc32c(s->crc, p, n);
    else if (s->route == ROUTE_UPLOAD && !s->digest_failed)
        if (EVP_DigestUpdate(s->sha, p, n) != 1)
            s->digest_failed = true;
    /* Other routes discard the body: reading it keeps the framing right. */
}

static void on_request_done(struct app_http_session *s)
{
    switch (s->route) {
    case ROUTE_INDEX:
        respond_memory(s, "text/html; charset=utf-8", index_html, sizeof(index_html) - 1, NULL);
        break;
    case ROUTE_BYTES:
        respond_bytes(s);
        break;
    case ROUTE_UPLOAD:
        respond_digest(s);
        break;
    case ROUTE_STATS:
        respond_stats(s);
        break;
    case ROUTE_ERROR:
        respond_error(s, s->route_status, s->is_head);
        break;
    }
}

long app_http_session_input(struct app_http_session *s, const uint8_t *data, size_t len)
{
    size_t off = 0;

    while (!s->input_done && !s->resp_active) {
        const uint8_t *body;
        size_t used, body_len;
        enum app_http_parse_event ev = app_http_parser_feed(
            &s->parser, len > off ? data + off : NULL, len - off, &used, &body, &body_len);

        off += used;
        if (ev == APP_HTTP_PARSE_NEED_MORE)
            break;
        switch (ev) {
        case APP_HTTP_PARSE_HEAD:
            on_request_head(s, app_http_parser_request(&s->parser));
            break;
        case APP_HTTP_PARSE_BODY:
            on_request_body(s, body, body_len);
            break;
        case APP_HTTP_PARSE_DONE:
            on_request_done(s);
            break;
        case APP_HTTP_PARSE_ERROR:
            COUNT(s, bad_requests, 1);
            s->keep_alive = false;
            respond_error(s, app_http_parser_status(&s->parser), false);
            break;
        case APP_HTTP_PARSE_NEED_MORE:
            break;
        }
    }
    return s->input_done ? -1 : (long)off;
}

void app_http_session_on_writable(struct app_http_session *s)
{
    pump(s);
}

void app_http_session_on_eof(struct app_http_session *s)
{
    /* A partial request can never complete now; a response in progress is still
     * finished before the close. */
    s->input_done = true;
    s->close_when_done = true;
    pump(s);
}

bool app_http_session_idle(const struct app_http_session *s)
{
    return !s->resp_active && s->out_len == 0;
}

enum app_http_phase app_http_session_phase(const struct app_http_session *s)
{
    if (s->resp_active || s->out_len > 0)
        return APP_HTTP_PHASE_RESPONDING;
    if (s->input_done)
        return APP_HTTP_PHASE_DONE;
    switch (s->parser.state) {
    case APP_HTTP_EXPECT_REQUEST_LINE:
        return s->parser.head_len ? APP_HTTP_PHASE_HEAD : APP_HTTP_PHASE_IDLE;
    case APP_HTTP_EXPECT_HEADER:
        return APP_HTTP_PHASE_HEAD;
    default:
        return APP_HTTP_PHASE_BODY;
    }
}

void app_http_session_timeout(struct app_http_session *s)
{
    enum app_http_phase ph = app_http_session_phase(s);
    if (ph != APP_HTTP_PHASE_IDLE && ph != APP_HTTP_PHASE_HEAD && ph != APP_HTTP_PHASE_BODY)
        return;
    s->keep_alive = false;
    respond_error(s, 408, false);
}

const struct app_http_counters *app_http_session_counters(const struct app_http_session *s)
{
    return &s->ctr;
}
