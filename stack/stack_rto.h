/*
 * stack_rto.h - a fine-grained retransmission timer next to lwIP's own.
 *
 * lwIP measures RTO in ticks of its 500 ms slow timer, so on a sub-
 * millisecond link every loss that fast retransmit can't repair (several
 * losses in one window: lwIP has no SACK and no NewReno partial-ACK
 * retransmit) costs >= 0.5-1 s. Shortening the slow timer itself would
 * scale all of lwIP's timers (out-of-order queue expiry, FIN_WAIT_2, ...)
 * and break receivers. Instead this timer, run every millisecond in the
 * tcpip thread, watches each active pcb with unacknowledged data and, when
 * no ACK progress was made for min_ms (doubling per consecutive expiry, up
 * to 64 x), does what lwIP's RTO does: halve ssthresh, cwnd = 1 MSS,
 * retransmit from the first unacked segment.
 */
#ifndef ANIC_STACK_RTO_H
#define ANIC_STACK_RTO_H

#include <stdint.h>

struct stack_rto_counters {
    uint64_t fast_rto_fired;
};

/* Start/stop the timer (core lock held). min_ms 0 = disabled. */
void stack_rto_start(uint32_t min_ms);
void stack_rto_stop(void);
const struct stack_rto_counters *stack_rto_counters(void);

#endif
