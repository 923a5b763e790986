/* fuzz_http.c - libFuzzer target: the HTTP/1.1 request parser and server session
 * of apps/app_http.c, fed by a hostile client in chunks of its choosing.
 *
 * Input: fuzz_util.h's chunked format (split bytes, then the client's byte
 * stream). Properties checked:
 *   parser   - every contract of app_http_parser_feed (consumption, bounds of
 *              BODY pointers, head fields within the limits, Content-Length
 *              bodies exactly that long, sticky errors with a known status);
 *              and the same stream fed whole, one byte at a time and in the
 *              fuzzer's chunks gives the same events at the same stream
 *              offsets and the same body bytes.
 *   session  - the bytes the server sends, its close and its counters do not
 *              depend on how the input was split nor on how much each send()
 *              accepted; the output is capped (SESSION_OUT_BUDGET), after which
 *              the transport stays full and both runs must stall alike.
 */
#include "app_http.h"
#include "fuzz_util.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- Parser --------------------------------------------------------------- */

struct parse_run {
    struct app_http_parser p;
    struct fuzz_buf log;    /* events with their stream offsets */
    struct fuzz_buf bodies; /* all decoded body bytes, in order */
    uint64_t off;           /* stream bytes consumed */
    uint64_t body_total;    /* body bytes of the current message */
    enum app_http_body_kind kind;
    uint64_t content_length;
    bool failed;
};

static bool is_tchar(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void check_head(struct parse_run *r)
{
    const struct app_http_request *q = app_http_parser_request(&r->p);
    const char *head = (const char *)r->p.head, *head_end = head + sizeof(r->p.head);

    FUZZ_CHECK(q->method_len >= 1 && q->method_len <= APP_HTTP_METHOD_MAX, "method_len %zu",
               q->method_len);
    FUZZ_CHECK(q->target_len >= 1 && q->target_len <= APP_HTTP_TARGET_MAX, "target_len %zu",
               q->target_len);
    FUZZ_CHECK(q->method >= head && q->method + q->method_len <= head_end, "method outside head");
    FUZZ_CHECK(q->target >= head && q->target + q->target_len <= head_end, "target outside head");
    for (size_t i = 0; i < q->method_len; i++)
        FUZZ_CHECK(is_tchar((uint8_t)q->method[i]), "method byte 0x%02x", (uint8_t)q->method[i]);
    for (size_t i = 0; i < q->target_len; i++)
        FUZZ_CHECK(q->target[i] > ' ' && q->target[i] < 0x7f, "target byte 0x%02x",
                   (uint8_t)q->target[i]);
    FUZZ_CHECK(q->version_minor <= 9, "version 1.%u", q->version_minor);
    FUZZ_CHECK(q->body == APP_HTTP_BODY_NONE || q->body == APP_HTTP_BODY_LENGTH ||
                   q->body == APP_HTTP_BODY_CHUNKED,
               "body kind %d", (int)q->body);
    FUZZ_CHECK(q->body != APP_HTTP_BODY_LENGTH || q->content_length <= APP_HTTP_LENGTH_MAX,
               "content_length %llu", (unsigned long long)q->content_length);

    uint8_t tag = 'H';
    fuzz_buf_put(&r->log, &tag, 1);
    fuzz_buf_u64(&r->log, r->off);
    fuzz_buf_u64(&r->log, q->method_len);
    fuzz_buf_put(&r->log, q->method, q->method_len);
    fuzz_buf_u64(&r->log, q->target_len);
    fuzz_buf_put(&r->log, q->target, q->target_len);
    uint8_t flags[4] = {q->version_minor, q->keep_alive, q->expect_continue, (uint8_t)q->body};
    fuzz_buf_put(&r->log, flags, sizeof(flags));
    fuzz_buf_u64(&r->log, q->body == APP_HTTP_BODY_LENGTH ? q->content_length : 0);
    r->kind = q->body;
    r->content_length = q->content_length;
    r->body_total = 0;
}

/* Feed one chunk, handling every event until the parser wants more. */
static void parse_chunk(struct parse_run *r, const uint8_t *d, size_t n)
{
    /* Each event either consumes input or (DONE) ends a message that did. */
    size_t budget = 2 * n + 4;

    while (!r->failed) {
        size_t used = SIZE_MAX, body_len = SIZE_MAX;
        const uint8_t *body = d;
        enum app_http_parse_event ev = app_http_parser_feed(&r->p, d, n, &used, &body, &body_len);

        FUZZ_CHECK(budget-- > 0, "no progress: event %d at offset %llu", (int)ev,
                   (unsigned long long)r->off);
        FUZZ_CHECK(used <= n, "consumed %zu of %zu", used, n);
        FUZZ_CHECK(ev == APP_HTTP_PARSE_BODY || (body == NULL && body_len == 0),
                   "body set on event %d", (int)ev);
        r->off += used;
        switch (ev) {
        case APP_HTTP_PARSE_NEED_MORE:
            FUZZ_CHECK(used == n, "NEED_MORE left %zu bytes", n - used);
            return;
        case APP_HTTP_PARSE_HEAD:
            check_head(r);
            break;
        case APP_HTTP_PARSE_BODY:
            FUZZ_CHECK(body_len > 0 && body >= d && body + body_len <= d + used,
                       "BODY [%p, +%zu) not inside the consumed input [%p, +%zu)", (void *)body,
                       body_len, (void *)d, used);
            FUZZ_CHECK(r->kind != APP_HTTP_BODY_NONE, "BODY without a body");
            fuzz_buf_put(&r->bodies, body, body_len);
            r->body_total += body_len;
            FUZZ_CHECK(r->kind != APP_HTTP_BODY_LENGTH || r->body_total <= r->content_length,
                       "body longer than Content-Length");
            break;
        case APP_HTTP_PARSE_DONE: {
            FUZZ_CHECK(r->kind != APP_HTTP_BODY_LENGTH || r->body_total == r->content_length,
                       "body %llu bytes, Content-Length %llu", (unsigned long long)r->body_total,
                       (unsigned long long)r->content_length);
            FUZZ_CHECK(app_http_parser_between_messages(&r->p), "DONE but not between messages");
            uint8_t tag = 'D';
            fuzz_buf_put(&r->log, &tag, 1);
            fuzz_buf_u64(&r->log, r->off);
            fuzz_buf_u64(&r->log, r->body_total);
            r->kind = APP_HTTP_BODY_NONE;
            break;
        }
        case APP_HTTP_PARSE_ERROR: {
            int st = app_http_parser_status(&r->p);
            FUZZ_CHECK(st == 400 || st == 414 || st == 431 || st == 505, "error status %d", st);
            uint8_t tag = 'E';
            fuzz_buf_put(&r->log, &tag, 1);
            fuzz_buf_u64(&r->log, r->off);
            fuzz_buf_u64(&r->log, (uint64_t)st);
            /* Sticky: nothing more is consumed. */
            static const uint8_t more[] = "GET / HTTP/1.1\r\n\r\n";
            ev = app_http_parser_feed(&r->p, more, sizeof(more) - 1, &used, &body, &body_len);
            FUZZ_CHECK(ev == APP_HTTP_PARSE_ERROR && used == 0, "error not sticky");
            FUZZ_CHECK(app_http_parser_status(&r->p) == st, "status changed");
            r->failed = true;
            return;
        }
        default:
            FUZZ_CHECK(false, "unknown event %d", (int)ev);
        }
        d += used;
        n -= used;
    }
}

static void parse_run(struct parse_run *r, const uint8_t *d, size_t n, struct fuzz_split split)
{
    size_t off = 0;

    app_http_parser_init(&r->p);
    r->log = (struct fuzz_buf){0};
    r->bodies = (struct fuzz_buf){0};
    r->off = r->body_total = r->content_length = 0;
    r->kind = APP_HTTP_BODY_NONE;
    r->failed = false;
    while (off < n && !r->failed) {
        size_t c = fuzz_split_next(&split, n - off);
        parse_chunk(r, d + off, c);
        off += c;
    }
    uint8_t end[2] = {'Z', app_http_parser_between_messages(&r->p)};
    fuzz_buf_put(&r->log, end, sizeof(end));
    fuzz_buf_u64(&r->log, r->off);
}

static void parse_compare(const struct parse_run *a, const struct parse_run *b, const char *what)
{
    FUZZ_CHECK(fuzz_buf_eq(&a->log, &b->log),
               "%s: events differ from the whole-input run at log byte %zu (lengths %zu, %zu)",
               what, fuzz_buf_diff_at(&a->log, &b->log), a->log.len, b->log.len);
    FUZZ_CHECK(fuzz_buf_eq(&a->bodies, &b->bodies),
               "%s: body bytes differ from the whole-input run at byte %zu", what,
               fuzz_buf_diff_at(&a->bodies, &b->bodies));
}

/* ---- Session -------------------------------------------------------------- */

#define SESSION_OUT_BUDGET (64 * 1024)

struct sess_ctx {
    struct fuzz_buf out;
    size_t budget_left;
    const uint8_t *caps; /* per-send acceptance caps, cyclic; NULL = unlimited */
    size_t ncaps, next_cap;
    unsigned closes;
};

struct sess_result {
    struct sess_ctx ctx;
    struct app_http_counters ctr;
    uint64_t consumed;
    bool dropped; /* input returned -1 */
    bool stalled; /* output budget exhausted with a response pending */
};

static size_t sess_send(void *arg, const void *buf, size_t len)
{
    struct sess_ctx *c = arg;
    size_t n = len < c->budget_left ? len : c->budget_left;

    FUZZ_CHECK(c->closes == 0, "send after close");
    if (c->caps) {
        size_t cap = ((size_t)c->caps[c->next_cap] + 1) * 16;
        c->next_cap = (c->next_cap + 1) % c->ncaps;
        n = n < cap ? n : cap;
    }
    fuzz_buf_put(&c->out, buf, n);
    c->budget_left -= n;
    return n;
}

static size_t sess_send_space(void *arg)
{
    return ((struct sess_ctx *)arg)->budget_left;
}

static void sess_close(void *arg)
{
    struct sess_ctx *c = arg;
    FUZZ_CHECK(c->closes == 0, "io->close called twice");
    c->closes++;
}

static size_t sess_stats(void *arg, char *buf, size_t cap)
{
    static const char json[] = "{\"fuzz\":1}";
    FUZZ_CHECK(cap >= sizeof(json), "stats cap %zu", cap);
    memcpy(buf, json, sizeof(json) - 1);
    return sizeof(json) - 1;
}

static const struct app_http_io sess_io = {
    .send = sess_send,
    .send_space = sess_send_space,
    .close = sess_close,
    .stats_json = sess_stats,
};

/* Let the session stream until it is idle; false if the budget ran out first. */
static bool sess_drain(struct app_http_session *s, struct sess_ctx *c)
{
    for (unsigned i = 0; i < SESSION_OUT_BUDGET / 16 + 2; i++) {
        if (app_http_session_idle(s))
            return true;
        if (c->budget_left == 0)
            return false;
        app_http_session_on_writable(s);
    }
    FUZZ_CHECK(false, "session neither idle nor sending");
}

static void sess_run(struct sess_result *res, const uint8_t *d, size_t n, struct fuzz_split split,
                     const uint8_t *caps, size_t ncaps)
{
    *res = (struct sess_result){0};
    res->ctx.budget_left = SESSION_OUT_BUDGET;
    res->ctx.caps = ncaps ? caps : NULL;
    res->ctx.ncaps = ncaps;

    struct app_http_session *s = app_http_session_new(&sess_io, &res->ctx);
    FUZZ_CHECK(s != NULL, "app_http_session_new failed");
    size_t off = 0;
    while (off < n && !res->dropped && !res->stalled) {
        size_t end = off + fuzz_split_next(&split, n - off);
        for (;;) {
            long r = app_http_session_input(s, d + off, end - off);
            if (r < 0) {
                res->dropped = true;
                break;
            }
            FUZZ_CHECK((size_t)r <= end - off, "input consumed %ld of %zu", r, end - off);
            off += (size_t)r;
            if (off == end)
                break;
            /* Back-pressure: only a response in progress may leave input. */
            FUZZ_CHECK(!app_http_session_idle(s), "idle session left %zu bytes", end - off);
            if (!sess_drain(s, &res->ctx)) {
                res->stalled = true;
                break;
            }
        }
    }
    if (!res->stalled) {
        app_http_session_on_eof(s);
        if (sess_drain(s, &res->ctx))
            FUZZ_CHECK(res->ctx.closes == 1, "idle after EOF but not closed");
        else
            res->stalled = true;
    }
    res->consumed = off;
    res->ctr = *app_http_session_counters(s);
    app_http_session_free(s);
    if (res->ctx.out.len > 0) {
        static const char status_line[] = "HTTP/1.1 ";
        size_t k = res->ctx.out.len < 9 ? res->ctx.out.len : 9;
        FUZZ_CHECK(memcmp(res->ctx.out.p, status_line, k) == 0, "output starts with '%.*s'", (int)k,
                   (const char *)res->ctx.out.p);
    }
}

static void sess_compare(const struct sess_result *a, const struct sess_result *b)
{
    FUZZ_CHECK(fuzz_buf_eq(&a->ctx.out, &b->ctx.out),
               "server output differs at byte %zu (lengths %zu, %zu)",
               fuzz_buf_diff_at(&a->ctx.out, &b->ctx.out), a->ctx.out.len, b->ctx.out.len);
    FUZZ_CHECK(a->ctx.closes == b->ctx.closes, "closes %u vs %u", a->ctx.closes, b->ctx.closes);
    FUZZ_CHECK(a->dropped == b->dropped && a->stalled == b->stalled, "dropped %d/%d stalled %d/%d",
               a->dropped, b->dropped, a->stalled, b->stalled);
    /* After -1 the caller knows only that the session wants no more input. */
    FUZZ_CHECK(a->dropped || a->consumed == b->consumed, "consumed %llu vs %llu",
               (unsigned long long)a->consumed, (unsigned long long)b->consumed);
    FUZZ_CHECK(memcmp(&a->ctr, &b->ctr, sizeof(a->ctr)) == 0, "session counters differ");
}

/* ---- Entry ---------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct parse_run whole, bytes, chosen; /* 8 KiB head buffers: not on the stack */
    struct fuzz_split split;
    const uint8_t *stream;
    size_t n;

    fuzz_split_input(data, size, &split, &stream, &n);

    parse_run(&whole, stream, n, fuzz_split_restart(&split, FUZZ_SPLIT_WHOLE));
    parse_run(&bytes, stream, n, fuzz_split_restart(&split, FUZZ_SPLIT_BYTES));
    parse_run(&chosen, stream, n, fuzz_split_restart(&split, FUZZ_SPLIT_CHOSEN));
    parse_compare(&whole, &bytes, "one byte at a time");
    parse_compare(&whole, &chosen, "fuzzer's chunks");
    struct parse_run *runs[] = {&whole, &bytes, &chosen};
    for (size_t i = 0; i < 3; i++) {
        fuzz_buf_free(&runs[i]->log);
        fuzz_buf_free(&runs[i]->bodies);
    }

    struct sess_result a, b;
    sess_run(&a, stream, n, fuzz_split_restart(&split, FUZZ_SPLIT_WHOLE), NULL, 0);
    sess_run(&b, stream, n, fuzz_split_restart(&split, FUZZ_SPLIT_CHOSEN), split.lens, split.nlens);
    sess_compare(&a, &b);
    fuzz_buf_free(&a.ctx.out);
    fuzz_buf_free(&b.ctx.out);
    return 0;
}
