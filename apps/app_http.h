/* app_http.h - transport-independent HTTP/1.1 server (RFC 9112): an incremental
 * request parser and a server session that routes requests and streams responses.
 *
 * Data path:
 *
 *   transport (plain TCP or TLS)
 *     --bytes--> app_http_session_input() --> parser --> router
 *                                                          |
 *     <--bytes-- io->send() <-- output buffer / body stream <+
 *
 * Nothing in here does I/O, allocates per byte or knows about lwIP: the transport
 * hands received bytes in and supplies struct app_http_io for the way out. All
 * calls come from one thread.
 */
#ifndef APP_HTTP_H
#define APP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Request limits. Exceeding one is a protocol outcome: the parser reports an
 * error status and the session answers it with Connection: close. */
#define APP_HTTP_HEAD_MAX       8192 /* request line + header fields incl. CRLFs; more -> 431 */
#define APP_HTTP_TARGET_MAX     2048 /* request-target longer than this -> 414 */
#define APP_HTTP_METHOD_MAX     16   /* longer method token -> 400 */
#define APP_HTTP_CHUNK_LINE_MAX 1024 /* chunk-size line incl. extensions; more -> 400 */
/* Content-Length and chunk-size must fit in int64; larger -> 400. */
#define APP_HTTP_LENGTH_MAX ((uint64_t)INT64_MAX)

#define APP_HTTP_BYTES_MAX ((uint64_t)1 << 40) /* largest N of GET /bytes/N */
#define APP_HTTP_STATS_MAX (64 * 1024)         /* buffer handed to io->stats_json */

/* ---- Request parser ------------------------------------------------------ */

enum app_http_body_kind {
    APP_HTTP_BODY_NONE,    /* neither Content-Length nor Transfer-Encoding: no body */
    APP_HTTP_BODY_LENGTH,  /* Content-Length bytes follow (possibly 0) */
    APP_HTTP_BODY_CHUNKED, /* Transfer-Encoding: chunked (RFC 9112 §7.1) */
};

/* The parsed request head. method/target point into the parser's head buffer and
 * stay valid until the parser consumes bytes of the next request. */
struct app_http_request {
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    uint8_t version_minor; /* HTTP/1.x; only major version 1 is accepted */
    bool keep_alive;       /* Connection header applied to the version default */
    bool expect_continue;  /* Expect: 100-continue */
    enum app_http_body_kind body;
    uint64_t content_length; /* valid for APP_HTTP_BODY_LENGTH */
};

/* One call to app_http_parser_feed() reports at most one event. */
enum app_http_parse_event {
    APP_HTTP_PARSE_NEED_MORE, /* every input byte was consumed; feed more */
    APP_HTTP_PARSE_HEAD,      /* head complete: see app_http_parser_request() */
    APP_HTTP_PARSE_BODY,      /* decoded body bytes, pointing into the caller's input */
    APP_HTTP_PARSE_DONE,      /* message complete; the parser expects the next request */
    APP_HTTP_PARSE_ERROR,     /* malformed request; app_http_parser_status(). Sticky. */
};

/* What the parser expects next. Private to app_http.c; here only so that the
 * parser can be embedded without an allocation. */
enum app_http_parse_state {
    APP_HTTP_EXPECT_REQUEST_LINE,
    APP_HTTP_EXPECT_HEADER,
    APP_HTTP_EXPECT_BODY,          /* Content-Length body bytes */
    APP_HTTP_EXPECT_CHUNK_SIZE,    /* hex digits of a chunk-size line */
    APP_HTTP_EXPECT_CHUNK_BWS,     /* blanks after the size: ';' or line end must follow */
    APP_HTTP_EXPECT_CHUNK_EXT,     /* chunk extension, ignored up to line end */
    APP_HTTP_EXPECT_CHUNK_SIZE_LF, /* LF after the CR of a chunk-size line */
    APP_HTTP_EXPECT_CHUNK_DATA,    /* chunk payload */
    APP_HTTP_EXPECT_CHUNK_DATA_CR, /* CR (or bare LF) closing the chunk payload */
    APP_HTTP_EXPECT_CHUNK_DATA_LF, /* LF closing the chunk payload */
    APP_HTTP_EXPECT_TRAILER,       /* trailer fields after the last chunk, skipped */
    APP_HTTP_EXPECT_END,           /* message complete; DONE not yet reported */
    APP_HTTP_EXPECT_NOTHING,       /* failed; status says why */
};

struct app_http_parser {
    /* All fields private. */
    enum app_http_parse_state state;
    uint16_t status;      /* HTTP status for the error, once failed */
    uint32_t head_len;    /* bytes collected in head[] */
    uint32_t line_start;  /* offset in head[] of the line being collected */
    uint32_t line_len;    /* chunk-size line / trailer line bytes so far */
    uint32_t trailer_len; /* trailer section bytes so far */
    bool trailer_cr;      /* previous trailer byte was CR */
    bool seen_length, seen_chunked, conn_close, conn_keep_alive;
    uint64_t remaining; /* body bytes left in the Content-Length body or chunk */
    struct app_http_request req;
    uint8_t head[APP_HTTP_HEAD_MAX];
};

void app_http_parser_init(struct app_http_parser *p);

/* Parse from data[0, len). Sets *consumed to the bytes used; the caller passes the
 * rest in the next call (an event may leave input unconsumed, and DONE or ERROR
 * may be reported with len == 0, so loop until NEED_MORE). For BODY, *body and
 * *body_len give decoded body bytes inside data[]. Never reads outside data[]. */
enum app_http_parse_event app_http_parser_feed(struct app_http_parser *p, const uint8_t *data,
                                               size_t len, size_t *consumed, const uint8_t **body,
                                               size_t *body_len);

/* Valid from the HEAD event until the parser consumes bytes of the next request. */
const struct app_http_request *app_http_parser_request(const struct app_http_parser *p);

/* After ERROR: 400, 414, 431 or 505. 0 while not failed. */
int app_http_parser_status(const struct app_http_parser *p);

/* True when no byte of a request is pending, i.e. EOF now would be clean. */
bool app_http_parser_between_messages(const struct app_http_parser *p);

/* ---- Server session ------------------------------------------------------ */

/* Implemented by the transport (plain TCP or TLS). The callbacks must not call
 * back into the session and must not free it. */
struct app_http_io {
    /* Try to send; returns bytes accepted (0..len). The transport copies what
     * it accepts (e.g. TCP_WRITE_FLAG_COPY): buf is only valid during the call.
     * Must not block. */
    size_t (*send)(void *io_ctx, const void *buf, size_t len);
    /* As send, for bytes that stay unchanged at buf for the life of the
     * process (the /bytes pattern): the transport may keep a reference
     * instead of a copy. May be NULL: send is used. */
    size_t (*send_static)(void *io_ctx, const void *buf, size_t len);
    /* Bytes that send() would accept right now (hint). May be NULL. The session
     * stops sending while it says 0 and waits for app_http_session_on_writable(). */
    size_t (*send_space)(void *io_ctx);
    /* Flush/push what was queued (e.g. tcp_output). May be NULL. */
    void (*flush)(void *io_ctx);
    /* Graceful close after all queued output. Called at most once per session. */
    void (*close)(void *io_ctx);
    /* Write the counters as a JSON object into buf; returns length (<= cap).
     * May be NULL: the session then reports app_http_global_counters(). */
    size_t (*stats_json)(void *io_ctx, char *buf, size_t cap);
    /* A hint: `bytes` more bytes will be sent (tx: a response's head and
     * body) or received (!tx: a request body of known Content-Length), for
     * the transport's offload policy. May be NULL. */
    void (*expect)(void *io_ctx, bool tx, uint64_t bytes);
};

struct app_http_session;

/* io must outlive the session. Returns NULL when out of memory. */
struct app_http_session *app_http_session_new(const struct app_http_io *io, void *io_ctx);

/* Frees the session at any point, also mid-response. Does not call io->close. */
void app_http_session_free(struct app_http_session *s);

/* Feed received bytes. Returns bytes consumed: the caller keeps the rest and
 * re-feeds them after app_http_session_on_writable() made progress (the session
 * stops consuming while a response is still streaming, so a pipelined request
 * waits). Returns -1 once the session wants no more input: it has closed, or it
 * answered an error or a final (Connection: close) request and will call
 * io->close() when that response has been handed to send(). The caller then
 * drops the rest of the input but keeps calling app_http_session_on_writable(). */
long app_http_session_input(struct app_http_session *s, const uint8_t *data, size_t len);

/* Transport has room again: continue streaming. */
void app_http_session_on_writable(struct app_http_session *s);

/* Peer closed its sending side (EOF). Call it only once every received byte was
 * consumed by app_http_session_input() (or it returned -1): the session finishes
 * the response in progress, if any, then closes. */
void app_http_session_on_eof(struct app_http_session *s);

/* No response in progress: nothing waits to be handed to send(). */
bool app_http_session_idle(const struct app_http_session *s);

/* Where a session is, for the transport's timeouts (apps/app_server.c). */
enum app_http_phase {
    APP_HTTP_PHASE_IDLE,       /* between requests: no byte of the next one yet */
    APP_HTTP_PHASE_HEAD,       /* request line / header fields arriving */
    APP_HTTP_PHASE_BODY,       /* request body arriving */
    APP_HTTP_PHASE_RESPONDING, /* output waits to be handed to send() */
    APP_HTTP_PHASE_DONE,       /* closed, or closing once its output is out */
};
enum app_http_phase app_http_session_phase(const struct app_http_session *s);

/* The peer took too long with a request (head or body): answer 408 Request
 * Timeout with Connection: close; io->close() follows once it was sent.
 * Only in APP_HTTP_PHASE_IDLE, _HEAD or _BODY (otherwise nothing happens). */
void app_http_session_timeout(struct app_http_session *s);

/* HTTP counters (/stats section http). */
#define APP_HTTP_COUNTERS(X)                                                                       \
    X(requests)      /* request heads parsed */                                                    \
    X(responses_2xx) /* final responses queued, by status class */                                 \
    X(responses_4xx) /* (100 Continue is not a final response) */                                  \
    X(responses_5xx)                                                                               \
    X(bad_requests)   /* malformed requests answered with 400/414/431/505 */                       \
    X(bytes_body_in)  /* request body bytes consumed (after de-chunking) */                        \
    X(bytes_body_out) /* response body bytes accepted by io->send() */

#define APP_HTTP_CTR_FIELD(name) uint64_t name;
struct app_http_counters {
    APP_HTTP_COUNTERS(APP_HTTP_CTR_FIELD)
};

/* CRC32C (Castagnoli) of data[0, n), continuing crc (0 to start): the
   digest of PUT /upload?digest=crc32c. app_crc32c uses SSE4.2 where the CPU
   has it; app_crc32c_sw is the table-driven reference. */
uint32_t app_crc32c(uint32_t crc, const void *data, size_t n);
uint32_t app_crc32c_sw(uint32_t crc, const void *data, size_t n);

/* Totals over all sessions, since process start. */
const struct app_http_counters *app_http_global_counters(void);

/* This session's share of the totals. */
const struct app_http_counters *app_http_session_counters(const struct app_http_session *s);

/* Format counters as a JSON object into buf, e.g. for io->stats_json. Returns the
 * length, or 0 if it does not fit in cap. */
size_t app_http_counters_json(const struct app_http_counters *c, char *buf, size_t cap);

#endif /* APP_HTTP_H */
