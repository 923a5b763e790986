/* Check suite: tls/tls_slots.c, the send slots' line and holders, on a
 * scripted pattern of connections with exact counters:
 *
 * - Off (limit 0) every request is granted and nothing is counted.
 * - With 2 slots and 5 connections the first two take slots at once, the
 *   other three wait in line in the order they asked; a waiter asking again
 *   keeps its place; slots go to the head of the line as turns end.
 * - A turn ends after turn_bytes acknowledged or turn_ms, by the sweep:
 *   holders that stall (no ACK progress for stall_ms) or used their time,
 *   each counted by why; one that makes progress keeps its slot.
 * - A waiter that closes leaves the line (not handed a slot); a holder
 *   that closes frees its slot.
 * - Nobody waiting: a free slot is taken at once, never queued behind
 *   nobody.
 * - With engage_at (anic's --send-slots auto) every request is granted
 *   until more than engage_at hold; then the limit applies, and it stops
 *   applying once at most engage_at / 2 hold or wait. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "tls_slots.h"

#define TURN_BYTES 1000u
#define TURN_MS    200u
#define STALL_MS   50u

static void configure(unsigned limit)
{
    tls_slots_configure(&(struct tls_slots_cfg){.limit = limit,
                                                .turn_bytes = TURN_BYTES,
                                                .turn_ms = TURN_MS,
                                                .stall_ms = STALL_MS,
                                                .free_bytes = 100});
}

/* Counters since the last call. */
static struct tls_slots_counters base;
static struct tls_slots_counters delta(void)
{
    struct tls_slots_counters now = *tls_slots_counters(), d;
    const uint64_t *a = (const uint64_t *)&now, *b = (const uint64_t *)&base;
    uint64_t *o = (uint64_t *)&d;
    for (size_t i = 0; i < sizeof(d) / sizeof(uint64_t); i++)
        o[i] = a[i] - b[i];
    base = now;
    return d;
}

static uint64_t acked[8];
static struct tls_slot conns[8];

static uint64_t acked_of(const struct tls_slot *s)
{
    return acked[s - conns];
}

static void reset(unsigned limit)
{
    for (int i = 0; i < 8; i++) {
        tls_slot_end(&conns[i], TLS_SLOT_END_CLOSED);
        acked[i] = 0;
    }
    memset(conns, 0, sizeof(conns));
    configure(limit);
    delta();
}

START_TEST(off_grants_everything)
{
    reset(0);
    for (int i = 0; i < 8; i++)
        ck_assert(tls_slot_request(&conns[i], 0, 0));
    struct tls_slots_counters d = delta();
    ck_assert_uint_eq(d.granted + d.queued + d.held, 0);
    ck_assert_ptr_null(tls_slots_pop());
}
END_TEST

START_TEST(line_is_first_come_first_served)
{
    reset(2);
    ck_assert(tls_slot_request(&conns[0], 0, 0));
    ck_assert(tls_slot_request(&conns[1], 0, 0));
    ck_assert(!tls_slot_request(&conns[2], 0, 0));
    ck_assert(!tls_slot_request(&conns[3], 0, 0));
    ck_assert(!tls_slot_request(&conns[4], 0, 0));
    ck_assert(!tls_slot_request(&conns[2], 0, 0)); /* asking again keeps its place */
    ck_assert(tls_slot_request(&conns[0], 0, 0));  /* a holder keeps its slot */
    struct tls_slots_counters d = delta();
    ck_assert_uint_eq(d.granted, 2);
    ck_assert_uint_eq(d.queued, 3);
    ck_assert_uint_eq(tls_slots_counters()->held, 2);
    ck_assert_uint_eq(tls_slots_counters()->waiting, 3);
    ck_assert_ptr_null(tls_slots_pop()); /* no slot free */

    /* conns[1]'s turn is used by bytes: the slot goes to conns[2], then [3]. */
    acked[1] = TURN_BYTES;
    ck_assert(tls_slot_used(&conns[1], acked[1], 10));
    tls_slot_end(&conns[1], TLS_SLOT_END_BYTES);
    struct tls_slot *s = tls_slots_pop();
    ck_assert_ptr_eq(s, &conns[2]);
    tls_slot_grant(s, acked[2], 10);
    ck_assert_ptr_null(tls_slots_pop()); /* both slots held again */
    ck_assert(tls_slot_request(&conns[2], acked[2], 11));
    ck_assert(!tls_slot_request(&conns[1], acked[1], 11)); /* back of the line */
    tls_slot_end(&conns[0], TLS_SLOT_END_IDLE);
    s = tls_slots_pop();
    ck_assert_ptr_eq(s, &conns[3]);
    tls_slot_grant(s, 0, 12);
    d = delta();
    ck_assert_uint_eq(d.handed, 2);
    ck_assert_uint_eq(d.ended_bytes, 1);
    ck_assert_uint_eq(d.ended_idle, 1);
    ck_assert_uint_eq(d.queued, 1);
    ck_assert_uint_eq(tls_slots_counters()->held, 2);
    ck_assert_uint_eq(tls_slots_counters()->waiting, 2); /* [4], [1] */
    ck_assert_uint_le(tls_slots_counters()->held_peak, 2);
}
END_TEST

START_TEST(sweep_ends_stalled_and_expired_turns)
{
    reset(3);
    for (int i = 0; i < 3; i++)
        ck_assert(tls_slot_request(&conns[i], 0, 1000));
    ck_assert(!tls_slot_request(&conns[3], 0, 1000));
    /* [0] progresses steadily, [1] stalls, [2] progresses slowly. */
    for (uint32_t t = 1000; t < 1000 + STALL_MS; t += 10) {
        acked[0] += 10;
        if (t % 40 == 0)
            acked[2] += 1;
        ck_assert_uint_eq(tls_slots_sweep(t, acked_of), 0u);
    }
    ck_assert_uint_eq(tls_slots_sweep(1000 + STALL_MS + 1, acked_of), 1u); /* [1] */
    ck_assert_uint_eq(conns[1].state, TLS_SLOT_NONE);
    ck_assert_uint_eq(conns[0].state, TLS_SLOT_HOLD);
    ck_assert_uint_eq(conns[2].state, TLS_SLOT_HOLD);
    struct tls_slot *s = tls_slots_pop();
    ck_assert_ptr_eq(s, &conns[3]);
    tls_slot_grant(s, 0, 1000 + STALL_MS + 1);
    /* [0] reaches turn_bytes: ended by bytes; [2] keeps crawling until its
       time is up: ended by time. [3] never moves: stalled. */
    acked[0] = TURN_BYTES;
    ck_assert_uint_eq(tls_slots_sweep(1000 + STALL_MS + 2, acked_of), 1u);
    for (uint32_t t = 1000 + STALL_MS + 2; t < 1000 + TURN_MS; t += 10)
        acked[2] += 1, tls_slots_sweep(t, acked_of);
    acked[2] += 1;
    ck_assert_uint_eq(tls_slots_sweep(1000 + TURN_MS, acked_of), 1u);
    struct tls_slots_counters d = delta();
    ck_assert_uint_eq(d.ended_stall, 2); /* [1], then [3] (granted at 1051, still at 0 bytes) */
    ck_assert_uint_eq(d.ended_bytes, 1);
    ck_assert_uint_eq(d.ended_time, 1);
    ck_assert_uint_eq(d.handed, 1);
    ck_assert_uint_eq(tls_slots_counters()->held, 0);
}
END_TEST

START_TEST(closing_leaves_the_line_and_frees_the_slot)
{
    reset(1);
    ck_assert(tls_slot_request(&conns[0], 0, 0));
    ck_assert(!tls_slot_request(&conns[1], 0, 0));
    ck_assert(!tls_slot_request(&conns[2], 0, 0));
    tls_slot_end(&conns[1], TLS_SLOT_END_CLOSED); /* a waiter closes */
    tls_slot_end(&conns[0], TLS_SLOT_END_CLOSED); /* the holder closes */
    tls_slot_end(&conns[0], TLS_SLOT_END_CLOSED); /* twice: nothing more */
    struct tls_slot *s = tls_slots_pop();
    ck_assert_ptr_eq(s, &conns[2]); /* not the closed waiter */
    tls_slot_grant(s, 0, 0);
    ck_assert_ptr_null(tls_slots_pop());
    struct tls_slots_counters d = delta();
    ck_assert_uint_eq(d.ended_closed, 2);
    ck_assert_uint_eq(d.handed, 1);
    ck_assert_uint_eq(tls_slots_counters()->held, 1);
    ck_assert_uint_eq(tls_slots_counters()->waiting, 0);
    /* With the line empty and the slot freed, the next one takes it at once. */
    tls_slot_end(&conns[2], TLS_SLOT_END_IDLE);
    ck_assert(tls_slot_request(&conns[5], 0, 0));
    d = delta();
    ck_assert_uint_eq(d.granted, 1);
    ck_assert_uint_eq(d.queued, 0);
}
END_TEST

START_TEST(many_connections_never_exceed_the_limit)
{
    enum { LIMIT = 3, ROUNDS = 2000 };
    reset(LIMIT);
    uint32_t now = 0;
    /* 8 connections ask in a fixed pseudo-random pattern; each turn ends
       by bytes after three grants; the head of the line is served whenever
       a slot frees. */
    uint32_t x = 12345;
    unsigned served[8] = {0};
    uint64_t most = 0;
    for (int r = 0; r < ROUNDS; r++, now++) {
        x = x * 1103515245u + 12345u;
        int i = (int)(x >> 16) % 8;
        if (tls_slot_request(&conns[i], acked[i], now)) {
            acked[i] += TURN_BYTES / 3 + 1; /* a turn takes three requests */
            if (tls_slot_used(&conns[i], acked[i], now)) {
                tls_slot_end(&conns[i], TLS_SLOT_END_BYTES);
                served[i]++;
            }
        }
        struct tls_slot *s;
        while ((s = tls_slots_pop()))
            tls_slot_grant(s, acked[s - conns], now);
        uint64_t held = tls_slots_counters()->held;
        ck_assert_uint_le(held, LIMIT);
        most = held > most ? held : most;
    }
    ck_assert_uint_eq(most, LIMIT);
    for (int i = 0; i < 8; i++)
        ck_assert_uint_gt(served[i], 0); /* nobody starves */
}
END_TEST

START_TEST(engage_at_limits_only_past_it)
{
    enum { LIMIT = 2, ENGAGE_AT = 4 };
    reset(LIMIT);
    tls_slots_configure(&(struct tls_slots_cfg){.limit = LIMIT, .engage_at = ENGAGE_AT});
    ck_assert_uint_eq(tls_slots_counters()->engaged, 0);
    for (int i = 0; i < 4; i++) /* up to engage_at: granted, past the limit */
        ck_assert(tls_slot_request(&conns[i], 0, 0));
    ck_assert_uint_eq(tls_slots_counters()->engaged, 0);
    ck_assert(tls_slot_request(&conns[4], 0, 0)); /* the fifth engages the limit */
    ck_assert_uint_eq(tls_slots_counters()->engaged, 1);
    ck_assert(!tls_slot_request(&conns[5], 0, 0)); /* 5 hold, limit 2: the line */
    ck_assert(!tls_slot_request(&conns[6], 0, 0));
    ck_assert_ptr_null(tls_slots_pop());
    for (int i = 0; i < 3; i++) /* 2 hold, 2 wait: still engaged (4 > 4 / 2) */
        tls_slot_end(&conns[i], TLS_SLOT_END_BYTES);
    ck_assert_ptr_null(tls_slots_pop()); /* both slots held */
    tls_slot_end(&conns[3], TLS_SLOT_END_BYTES);
    struct tls_slot *s = tls_slots_pop();
    ck_assert_ptr_eq(s, &conns[5]);
    tls_slot_grant(s, 0, 0);
    ck_assert_ptr_null(tls_slots_pop()); /* 2 hold, 1 waits: engaged */
    ck_assert_uint_eq(tls_slots_counters()->engaged, 1);
    tls_slot_end(&conns[5], TLS_SLOT_END_CLOSED); /* 1 holds, 1 waits: disengaged */
    ck_assert_uint_eq(tls_slots_counters()->engaged, 0);
    s = tls_slots_pop();
    ck_assert_ptr_eq(s, &conns[6]);
    tls_slot_grant(s, 0, 0);
    for (int i = 0; i < 3; i++) /* granted at once again; the fifth holder engages */
        ck_assert(tls_slot_request(&conns[i], 0, 0));
    struct tls_slots_counters d = delta();
    ck_assert_uint_eq(d.engagements, 2);
    ck_assert_uint_eq(tls_slots_counters()->engaged, 1);
    ck_assert_uint_eq(d.granted, 8);
    ck_assert_uint_eq(d.queued, 2);
    ck_assert_uint_eq(d.handed, 2);
    ck_assert_uint_eq(d.ended_bytes, 4);
    ck_assert_uint_eq(tls_slots_counters()->held, 5);
    ck_assert_uint_eq(tls_slots_counters()->held_peak, 5);
    ck_assert(!tls_slot_request(&conns[7], 0, 0)); /* engaged: the line */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("slots");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, off_grants_everything);
    tcase_add_test(tc, line_is_first_come_first_served);
    tcase_add_test(tc, sweep_ends_stalled_and_expired_turns);
    tcase_add_test(tc, closing_leaves_the_line_and_frees_the_slot);
    tcase_add_test(tc, many_connections_never_exceed_the_limit);
    tcase_add_test(tc, engage_at_limits_only_past_it);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
