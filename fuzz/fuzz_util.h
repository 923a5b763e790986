/* fuzz_util.h - helpers shared by the libFuzzer targets in fuzz/.
 *
 * Header-only so that a target stays one .c file (see fuzz/CMakeLists.txt).
 *
 * Chunked input. Targets that feed a byte stream in pieces, as a peer or the
 * network would, read their input as
 *
 *   byte 0       k = byte0 & 15: number of split bytes that follow
 *   bytes 1..k   chunk lengths, used in turn and cyclically (see fuzz_split_next)
 *   rest         the stream
 *
 * k == 0 feeds the stream in one piece. A seed that is a plain stream is
 * therefore that stream prefixed with one 0x00 byte.
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A property violation: print why and abort, which libFuzzer reports as a
 * crash with a reproducer (assert() is compiled out under NDEBUG). */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                     \
    } while (0)

__attribute__((noreturn, format(printf, 4, 5))) static inline void
fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: property violated: %s: ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* ---- Chunk splitting ------------------------------------------------------ */

enum fuzz_split_mode {
    FUZZ_SPLIT_WHOLE,  /* the whole stream in one chunk */
    FUZZ_SPLIT_BYTES,  /* one byte per chunk */
    FUZZ_SPLIT_CHOSEN, /* the lengths from the input's split bytes */
};

struct fuzz_split {
    enum fuzz_split_mode mode;
    const uint8_t *lens; /* split bytes */
    size_t nlens, next;
    bool owe_byte; /* an empty chunk was handed out: a 1-byte one follows */
};

/* Splits data[0, size) into the split bytes (*split) and the stream. */
static inline void fuzz_split_input(const uint8_t *data, size_t size, struct fuzz_split *split,
                                    const uint8_t **stream, size_t *stream_len)
{
    size_t k = size ? data[0] & 15u : 0;
    if (k + 1 > size)
        k = size ? size - 1 : 0;
    *split = (struct fuzz_split){.mode = FUZZ_SPLIT_CHOSEN, .lens = data + 1, .nlens = k};
    if (k == 0)
        split->mode = FUZZ_SPLIT_WHOLE;
    *stream = size ? data + 1 + k : data;
    *stream_len = size ? size - 1 - k : 0;
}

/* The same split restarted, or another mode over the same split bytes. */
static inline struct fuzz_split fuzz_split_restart(const struct fuzz_split *s,
                                                   enum fuzz_split_mode mode)
{
    if (mode == FUZZ_SPLIT_CHOSEN && s->nlens == 0)
        mode = FUZZ_SPLIT_WHOLE;
    return (struct fuzz_split){.mode = mode, .lens = s->lens, .nlens = s->nlens};
}

/* Length of the next chunk when left bytes remain (left > 0). A split byte b
 * means b bytes for b < 0xc0 and (b - 0xbf) * 256 bytes (256..16384)
 * otherwise, so that both tiny pieces and whole large records occur; b == 0 is
 * an empty chunk followed by a 1-byte one. Progress is guaranteed. */
static inline size_t fuzz_split_next(struct fuzz_split *s, size_t left)
{
    size_t n;
    switch (s->mode) {
    case FUZZ_SPLIT_WHOLE:
        return left;
    case FUZZ_SPLIT_BYTES:
        return 1;
    case FUZZ_SPLIT_CHOSEN:
    default:
        if (s->owe_byte) {
            s->owe_byte = false;
            return 1;
        }
        uint8_t b = s->lens[s->next];
        s->next = (s->next + 1) % s->nlens;
        n = b < 0xc0 ? b : (size_t)(b - 0xbf) * 256;
        if (n == 0)
            s->owe_byte = true;
        return n < left ? n : left;
    }
}

/* ---- Growable byte buffer (transcripts of what a run observed) ------------ */

struct fuzz_buf {
    uint8_t *p;
    size_t len, cap;
};

static inline void fuzz_buf_put(struct fuzz_buf *b, const void *src, size_t n)
{
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        FUZZ_CHECK(p != NULL, "out of memory (%zu bytes)", cap);
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len += n;
}

static inline void fuzz_buf_u64(struct fuzz_buf *b, uint64_t v)
{
    fuzz_buf_put(b, &v, sizeof(v));
}

static inline void fuzz_buf_free(struct fuzz_buf *b)
{
    free(b->p);
    *b = (struct fuzz_buf){0};
}

static inline bool fuzz_buf_eq(const struct fuzz_buf *a, const struct fuzz_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* Offset of the first differing byte (for messages). */
static inline size_t fuzz_buf_diff_at(const struct fuzz_buf *a, const struct fuzz_buf *b)
{
    size_t i = 0;
    while (i < a->len && i < b->len && a->p[i] == b->p[i])
        i++;
    return i;
}

#endif /* FUZZ_UTIL_H */
