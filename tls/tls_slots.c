/* tls_slots.c - send slots: the line and the holders (see tls_slots.h). */
#include "tls_slots.h"

#include <limits.h>
#include <stddef.h>

struct slot_list {
    struct tls_slot *head, *tail;
};

static struct {
    struct tls_slots_cfg cfg;
    struct slot_list line, holders;
    struct tls_slots_counters c; /* c.engaged: the limit applies (always, without engage_at) */
} slots = {.cfg = {.turn_bytes = TLS_SLOTS_DEFAULT_TURN_BYTES,
                   .turn_ms = TLS_SLOTS_DEFAULT_TURN_MS,
                   .stall_ms = TLS_SLOTS_DEFAULT_STALL_MS,
                   .free_bytes = TLS_SLOTS_DEFAULT_FREE_BYTES}};

static void list_append(struct slot_list *l, struct tls_slot *s)
{
    s->prev = l->tail;
    s->next = NULL;
    if (l->tail)
        l->tail->next = s;
    else
        l->head = s;
    l->tail = s;
}

static void list_remove(struct slot_list *l, struct tls_slot *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        l->tail = s->prev;
    s->prev = s->next = NULL;
}

void tls_slots_configure(const struct tls_slots_cfg *cfg)
{
    slots.cfg.limit = cfg->limit;
    slots.cfg.engage_at = cfg->engage_at;
    slots.c.engaged = cfg->limit && !cfg->engage_at;
    if (cfg->turn_bytes)
        slots.cfg.turn_bytes = cfg->turn_bytes;
    if (cfg->turn_ms)
        slots.cfg.turn_ms = cfg->turn_ms;
    if (cfg->stall_ms)
        slots.cfg.stall_ms = cfg->stall_ms;
    if (cfg->free_bytes)
        slots.cfg.free_bytes = cfg->free_bytes;
    slots.c.limit = cfg->limit;
}

const struct tls_slots_cfg *tls_slots_cfg(void)
{
    return &slots.cfg;
}

const struct tls_slots_counters *tls_slots_counters(void)
{
    return &slots.c;
}

/* The slots that may be held now: unbounded until the limit engages. */
static unsigned cur_limit(void)
{
    return slots.c.engaged || !slots.cfg.engage_at ? slots.cfg.limit : UINT_MAX;
}

static void engage_check(void)
{
    if (!slots.cfg.engage_at)
        return;
    if (!slots.c.engaged && slots.c.held > slots.cfg.engage_at) {
        slots.c.engaged = 1;
        slots.c.engagements++;
    } else if (slots.c.engaged && slots.c.held + slots.c.waiting <= slots.cfg.engage_at / 2) {
        slots.c.engaged = 0;
    }
}

static void hold(struct tls_slot *s, uint64_t acked, uint32_t now_ms)
{
    s->state = TLS_SLOT_HOLD;
    s->acked0 = s->acked_seen = acked;
    s->since_ms = s->seen_ms = now_ms;
    list_append(&slots.holders, s);
    if (++slots.c.held > slots.c.held_peak)
        slots.c.held_peak = slots.c.held;
    engage_check();
}

bool tls_slot_request(struct tls_slot *s, uint64_t acked, uint32_t now_ms)
{
    if (!slots.cfg.limit || s->state == TLS_SLOT_HOLD)
        return true;
    if (s->state == TLS_SLOT_WAIT)
        return false;
    if (slots.c.held < cur_limit() && !slots.line.head) {
        hold(s, acked, now_ms);
        slots.c.granted++;
        return true;
    }
    s->state = TLS_SLOT_WAIT;
    list_append(&slots.line, s);
    slots.c.queued++;
    if (++slots.c.waiting > slots.c.waiting_peak)
        slots.c.waiting_peak = slots.c.waiting;
    return false;
}

void tls_slot_note_free_send(void)
{
    slots.c.free_sends++;
}

bool tls_slot_used(const struct tls_slot *s, uint64_t acked, uint32_t now_ms)
{
    return s->state == TLS_SLOT_HOLD &&
           (acked - s->acked0 >= slots.cfg.turn_bytes || now_ms - s->since_ms >= slots.cfg.turn_ms);
}

void tls_slot_end(struct tls_slot *s, enum tls_slot_end why)
{
    if (s->state == TLS_SLOT_WAIT) {
        list_remove(&slots.line, s);
        slots.c.waiting--;
        s->state = TLS_SLOT_NONE;
        if (why == TLS_SLOT_END_CLOSED)
            slots.c.ended_closed++;
        engage_check();
        return;
    }
    if (s->state != TLS_SLOT_HOLD)
        return;
    list_remove(&slots.holders, s);
    slots.c.held--;
    s->state = TLS_SLOT_NONE;
    switch (why) {
    case TLS_SLOT_END_BYTES:
        slots.c.ended_bytes++;
        break;
    case TLS_SLOT_END_TIME:
        slots.c.ended_time++;
        break;
    case TLS_SLOT_END_STALL:
        slots.c.ended_stall++;
        break;
    case TLS_SLOT_END_IDLE:
        slots.c.ended_idle++;
        break;
    case TLS_SLOT_END_CLOSED:
        slots.c.ended_closed++;
        break;
    }
    engage_check();
}

bool tls_slots_free_for_line(void)
{
    return slots.line.head && slots.c.held < cur_limit();
}

bool tls_slots_line_waiting(void)
{
    return slots.line.head != NULL;
}

struct tls_slot *tls_slots_pop(void)
{
    if (!tls_slots_free_for_line())
        return NULL;
    struct tls_slot *s = slots.line.head;
    list_remove(&slots.line, s);
    slots.c.waiting--;
    s->state = TLS_SLOT_NONE; /* still wanted: its grant re-checks engagement */
    return s;
}

void tls_slot_grant(struct tls_slot *s, uint64_t acked, uint32_t now_ms)
{
    if (s->state != TLS_SLOT_NONE)
        return;
    hold(s, acked, now_ms);
    slots.c.handed++;
}

unsigned tls_slots_sweep(uint32_t now_ms, uint64_t (*acked_of)(const struct tls_slot *s))
{
    unsigned ended = 0;
    for (struct tls_slot *s = slots.holders.head, *next; s; s = next) {
        next = s->next;
        uint64_t acked = acked_of(s);
        if (acked != s->acked_seen) {
            s->acked_seen = acked;
            s->seen_ms = now_ms;
        }
        if (tls_slot_used(s, acked, now_ms)) {
            tls_slot_end(s, acked - s->acked0 >= slots.cfg.turn_bytes ? TLS_SLOT_END_BYTES
                                                                      : TLS_SLOT_END_TIME);
            ended++;
        } else if (now_ms - s->seen_ms >= slots.cfg.stall_ms) {
            tls_slot_end(s, TLS_SLOT_END_STALL);
            ended++;
        }
    }
    return ended;
}
