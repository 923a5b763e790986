/*
 * stack_demux.h - an exact index of lwIP's TCP pcbs by connection tuple.
 *
 * lwIP 2.1.3 finds a segment's pcb by walking tcp_active_pcbs, then
 * tcp_tw_pcbs, then the listeners. A segment of no connection (a SYN, or an
 * ACK or RST of a connection already gone) walks both lists to their ends:
 * with thousands of connections, a connection storm or a SYN flood costs a
 * walk of every pcb per packet, on the thread that delivers everyone's data.
 *
 * Debian's liblwip allocates and frees every TCP pcb through tcp_alloc and
 * tcp_free, called through its PLT (checked: no other call site allocates
 * or frees MEMP_TCP_PCB), so stack_demux.c defines both, in front of the
 * library's, and sees every pcb born and freed. A pcb is indexed by (remote
 * IPv4 address, remote port, local port) once it has a remote port: at the
 * next stack_demux_sync, which the driver calls before it looks a segment up
 * (lwIP sets a pcb's tuple in the same call that allocates or connects it).
 * A pcb without a remote port matches no segment. So a tuple the index does
 * not hold belongs to no pcb on either list (docs/design.md §7).
 *
 * Locking: everything here runs under lwIP's core lock, as lwIP's own calls.
 */
#ifndef ANIC_STACK_DEMUX_H
#define ANIC_STACK_DEMUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tcp_pcb;

/* A segment's connection tuple from the pcb's point of view (network order
   address, host order ports). */
struct stack_demux_key {
    uint32_t remote_ip;
    uint16_t remote_port, local_port;
};

/* Indexes the pcbs born or connected since the last call. */
void stack_demux_sync(void);

/* False if the index cannot be trusted (it failed to allocate, or lwIP's
   calls do not reach the definitions here: checked once, with the core
   lock held, by creating and closing a pcb): every lookup must then go
   lwIP's own way. */
bool stack_demux_trusted(void);

/* A pcb with this tuple that is not in TIME_WAIT (so on tcp_active_pcbs),
   else NULL. Call stack_demux_sync first. */
struct tcp_pcb *stack_demux_find_active(const struct stack_demux_key *k);

/* stack_demux_find_active for each of keys[0, n) into out[0, n), n at
   most STACK_DEMUX_MANY_MAX. With thousands of connections each lookup
   misses the cache three times (bucket, node, pcb): each level's loads are
   started for the whole batch before any is read, so they overlap. */
#define STACK_DEMUX_MANY_MAX 64
void stack_demux_find_active_many(const struct stack_demux_key *keys, size_t n,
                                  struct tcp_pcb **out);

/* The pcb with this tuple in TIME_WAIT, else NULL. Call stack_demux_sync
   first. */
struct tcp_pcb *stack_demux_find_timewait(const struct stack_demux_key *k);

/* Predecessor hints, so that the driver can move a pcb to the front of
   tcp_active_pcbs without walking the list to it. set_pred records that
   pred (NULL: none, pcb was the head) preceded pcb. stack_demux_pred
   returns it only if that still holds, checked without touching freed
   memory: the hint's pcb is alive and links to pcb, which is active. */
void stack_demux_set_pred(struct tcp_pcb *pcb, struct tcp_pcb *pred);
bool stack_demux_pred(const struct tcp_pcb *pcb, struct tcp_pcb **pred);
/* Hints for a batch about to ask stack_demux_pred: level 0 starts loading
   the index slot of pcb, level 1 (once level 0's loads are done, as a
   level-0 pass over the whole batch makes likely) the hint's predecessor
   and its index slot. Read nothing the lookup itself would not. */
void stack_demux_prefetch_pred(const struct tcp_pcb *pcb, int level);

/* Whether any pcb (active or TIME_WAIT) has this tuple. */
bool stack_demux_has(const struct stack_demux_key *k);

/* State the driver keeps per pcb, gone with it (stack_driver.c's receive
   window): NULL if pcb is not indexed. */
#define STACK_DEMUX_MARK_HOLE 0x01u /* the connection has queued a segment out of order */
#define STACK_DEMUX_MARK_SEQ0 0x02u /* seq0 holds rcv_nxt at accept */
#define STACK_DEMUX_MARK_WIDE 0x04u /* its window may grow past RCV_WND_LOSSY */
struct stack_demux_user {
    uint8_t marks;
    uint32_t seq0;
};
struct stack_demux_user *stack_demux_user(const struct tcp_pcb *pcb);

/* Pcbs indexed, and pcbs alive but not indexed (no remote port yet). */
void stack_demux_sizes(uint64_t *indexed, uint64_t *pending);

#endif
