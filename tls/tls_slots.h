/*
 * tls_slots.h - send slots: at most `limit` connections send bulk data at
 * once, the others wait in one first-come, first-served line
 * (docs/design.md §7, "Send slots").
 *
 * With thousands of connections downloading at once, every one of them
 * holding a send buffer's worth in flight spreads the working set (lwIP's
 * queues, the record store, the NIC's context cache, the peers' socket
 * buffers) far past any cache, and every byte costs more. A slot is a turn
 * to send: its holder sends until it has had turn_bytes acknowledged, or
 * for turn_ms, or until it stalls (no ACK progress for stall_ms) or has
 * nothing more to send; then the slot goes to the head of the line and the
 * connection, if it still has data, joins the line's tail. Small sends need
 * no slot: a connection that was idle (nothing queued or in flight) may
 * send free_bytes before it must queue, so a short response is never held
 * behind bulk transfers.
 *
 * tls_slots.c keeps the line and the holders and counts; the connection
 * layer (tls_conn.c) asks before it offers send space, hands a slot to the
 * connection it names and ends turns. Everything runs under lwIP's core
 * lock; the state is one per process, as the resources it protects are.
 */
#ifndef ANIC_TLS_SLOTS_H
#define ANIC_TLS_SLOTS_H

#include <stdbool.h>
#include <stdint.h>

/* Counters (section send_slots; docs/design.md §9). */
#define TLS_SLOTS_COUNTERS(X)                                                                      \
    X(limit)        /* slots (gauge; 0: off) */                                                    \
    X(held)         /* slots held now (gauge) */                                                   \
    X(held_peak)    /* most held at once */                                                        \
    X(waiting)      /* connections in the line now (gauge) */                                      \
    X(waiting_peak) /* most in the line at once */                                                 \
    X(granted)      /* slots taken at once (a slot was free, nobody waiting) */                    \
    X(queued)       /* connections that joined the line */                                         \
    X(handed)       /* slots handed to the head of the line */                                     \
    X(ended_bytes)  /* turns that ended after turn_bytes were acknowledged */                      \
    X(ended_time)   /* turns that ended after turn_ms */                                           \
    X(ended_stall)  /* turns that ended after stall_ms without ACK progress */                     \
    X(ended_idle)   /* turns that ended with nothing left to send */                               \
    X(ended_closed) /* turns and waits that ended with their connection */                         \
    X(free_sends)   /* idle connections that began a send of at most free_bytes without a slot */  \
    X(engaged)      /* with engage_at: 1 while the limit applies (gauge) */                        \
    X(engagements)  /* with engage_at: times the limit began to apply */

#define TLS_SLOTS_CTR_FIELD(name) uint64_t name;
struct tls_slots_counters {
    TLS_SLOTS_COUNTERS(TLS_SLOTS_CTR_FIELD)
};

struct tls_slots_cfg {
    unsigned limit;      /* 0: off (every connection sends at will; the default) */
    uint64_t turn_bytes; /* a turn ends once this much of it was acknowledged */
    uint32_t turn_ms;    /* ... or after this long */
    uint32_t stall_ms;   /* ... or after this long without ACK progress */
    uint32_t free_bytes; /* sent from idle without a slot */
    /* 0: the limit always applies. Else it applies only once more than
       engage_at connections hold turns at once (until then every request
       is granted), and it stops applying when at most engage_at / 2 hold
       or wait. anic's --send-slots auto sets it to the flow contexts the
       NIC keeps resident: below that, no context is evicted by spreading
       the sends, so no one need wait. */
    unsigned engage_at;
};

#define TLS_SLOTS_DEFAULT_TURN_BYTES (1u << 20)
#define TLS_SLOTS_DEFAULT_TURN_MS    200
#define TLS_SLOTS_DEFAULT_STALL_MS   50
#define TLS_SLOTS_DEFAULT_FREE_BYTES (64u << 10)

enum tls_slot_state { TLS_SLOT_NONE, TLS_SLOT_WAIT, TLS_SLOT_HOLD };
enum tls_slot_end {
    TLS_SLOT_END_BYTES,
    TLS_SLOT_END_TIME,
    TLS_SLOT_END_STALL,
    TLS_SLOT_END_IDLE,
    TLS_SLOT_END_CLOSED
};

/* A connection's place; zero-initialised is TLS_SLOT_NONE. */
struct tls_slot {
    uint8_t state;                /* enum tls_slot_state */
    struct tls_slot *prev, *next; /* in the line, or among the holders */
    uint64_t acked0;              /* acked bytes when the turn began */
    uint64_t acked_seen;          /* acked bytes at the last progress */
    uint32_t since_ms, seen_ms;   /* when the turn began, when acked_seen moved */
};

/* Replaces the configuration; a zero member other than limit and engage_at keeps its
   current value (at first the TLS_SLOTS_DEFAULT_* ones). Call with no
   connection holding or waiting: at a server's start, or between the
   bench's cells. */
void tls_slots_configure(const struct tls_slots_cfg *cfg);
const struct tls_slots_cfg *tls_slots_cfg(void);
const struct tls_slots_counters *tls_slots_counters(void);

/* Whether a connection that wants to send bulk data may: true if it holds
   a slot, or takes a free one (nobody waiting); otherwise it joins the line
   (once) and gets false. acked: its bytes acknowledged so far; now_ms:
   sys_now(). */
bool tls_slot_request(struct tls_slot *s, uint64_t acked, uint32_t now_ms);
/* free_bytes accounting for a connection without a slot: counts the start
   of one free send (the caller saw the connection idle). */
void tls_slot_note_free_send(void);
/* Whether the holder's turn is used up by bytes or time. */
bool tls_slot_used(const struct tls_slot *s, uint64_t acked, uint32_t now_ms);
/* Ends s's turn (a holder) or its wait (in the line), counted by why. */
void tls_slot_end(struct tls_slot *s, enum tls_slot_end why);
/* The head of the line, taken out of it (state NONE), if a slot is free;
   else NULL. The caller grants it (tls_slot_grant) if it still wants to
   send, or lets it go. */
struct tls_slot *tls_slots_pop(void);
/* Makes s (state NONE) a holder, counted as handed from the line. */
void tls_slot_grant(struct tls_slot *s, uint64_t acked, uint32_t now_ms);
/* Ends the turns of holders that stalled or used their time. acked_of
   returns a holder's acknowledged bytes. Returns turns ended. */
unsigned tls_slots_sweep(uint32_t now_ms, uint64_t (*acked_of)(const struct tls_slot *s));
/* Whether someone waits while a slot is free (the caller should pop). */
bool tls_slots_free_for_line(void);
/* Whether anyone is in the line. */
bool tls_slots_line_waiting(void);

#endif
