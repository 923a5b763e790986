/*
 * stack_rto.h - a fine-grained retransmission timer next to lwIP's own, and
 * a retransmission give-up by time (Linux's tcp_retries2) instead of lwIP's
 * retry count.
 *
 * lwIP measures RTO in ticks of its 500 ms slow timer, so on a sub-
 * millisecond link every loss that fast retransmit can't repair (several
 * losses in one window: lwIP has no SACK and no NewReno partial-ACK
 * retransmit) costs >= 0.5-1 s. Shortening the slow timer itself would
 * scale all of lwIP's timers (out-of-order queue expiry, FIN_WAIT_2, ...)
 * and break receivers. Instead this timer, run in the tcpip thread, watches
 * each active pcb with unacknowledged data and, when no ACK progress was
 * made for its RTO (doubling per consecutive expiry, up to 64 x), does what
 * lwIP's RTO does: halve ssthresh, cwnd = 1 MSS, retransmit from the first
 * unacked segment. With >= 1024 connections in flight the first expiry only
 * sends a probe (an empty segment at snd_nxt - 1 that the peer answers with
 * its ACK): then a lost ACK is the usual cause, and the window need not be
 * resent.
 *
 * Adaptive RTO (RFC 6298). The RTO is SRTT + max(1 ms, 4 RTTVAR), clamped
 * to [min_ms, 60 s]; until a connection's first sample it comes from the
 * host's estimator (all connections' samples), min_ms before any sample. One segment per pcb is
 * timed at a time, at the walks' resolution (<= min_ms / 2), and Karn's
 * rule drops the sample of a segment that was retransmitted. A fixed 10 ms
 * RTO fired thousands of times spuriously when queueing on a loaded host
 * raised the RTT above it.
 *
 * Give-up. lwIP drops a connection after TCP_MAXRTX (12) retransmissions,
 * counted in pcb->nrtx by its own RTO and by tcp_rexmit_rto alike; at our
 * fast pace 12 come in ~4.5 s, so a peer silent for a few seconds would be
 * reset (Linux waits ~15 min, tcp_retries2 = 15). So the fast retransmissions
 * do not count toward nrtx, nrtx is held below lwIP's limit, and a pcb is
 * aborted (tcp_abort: its error callback runs) when it made no ACK progress
 * for give_up_ms while having data in flight, counted in rto_give_up.
 *
 * Send-buffer budget. The same walk sizes each established connection's
 * send buffer to a host-wide budget divided among the connections (at
 * least three full TLS records, at most the configured --snd-buf), so that
 * thousands of connections do not queue GBs (stack_rto.c, SND_BUDGET_BYTES).
 * A connection whose buffer it cut is written in bursts
 * (stack_tcp_write_lowat).
 *
 * Cost. No per-pcb table with a fixed size: state lives in a hash keyed by
 * the pcb pointer that grows with the pcbs in flight. The timer walks
 * tcp_active_pcbs (one pointer test for a pcb with nothing in flight) not
 * every millisecond but when the earliest armed deadline is due, and at
 * least every min_ms / 2 to find pcbs that started sending (their first RTO
 * thus comes after min_ms .. 1.5 x min_ms, never earlier).
 */
#ifndef ANIC_STACK_RTO_H
#define ANIC_STACK_RTO_H

#include <lwip/err.h>
#include <stdint.h>

struct tcp_pcb;

/* Counters (/stats section tcp). */
#define STACK_RTO_COUNTERS(X)                                                                      \
    X(fast_rto_fired)  /* retransmissions by this timer */                                         \
    X(rto_probes)      /* first expiries answered with a probe (keep-alive), not resent data */    \
    X(rto_host_queued) /* RTOs not fired: a segment was still in the driver's TX ring */           \
    X(rto_hole_resent) /* first unacked segments resent on duplicate ACKs (hole repair) */         \
    X(rto_give_up)     /* pcbs aborted: no ACK progress for give_up_ms */                          \
    X(rto_scans)       /* walks of tcp_active_pcbs */                                              \
    X(rto_table_grown) /* walk tables doubled during a walk (more pcbs than the last walk saw) */  \
    X(rto_tracked)     /* pcbs with data in flight at the last walk */                             \
    X(rto_rtt_samples) /* RTT samples taken (RFC 6298) */                                          \
    X(rto_rtt_karn)    /* timed segments retransmitted: no sample (Karn) */                        \
    X(rto_srtt_ms)     /* mean SRTT of the connections with a sample, last walk (gauge) */         \
    X(rto_max_ms)      /* largest RTO (with backoff) of those in flight, last walk (gauge) */      \
    X(snd_buf_target)  /* send buffer per connection under the host's budget, last walk (gauge) */ \
    X(snd_buf_sender_target) /* the same for senders, last walk (gauge) */                         \
    X(snd_senders)           /* established ones with data queued or ACKed, last walk (gauge) */   \
    X(write_lowat)      /* free send space that wakes a cut connection's writer; 0: any (gauge) */ \
    X(snd_buf_cut)      /* send buffers made smaller by the budget */                              \
    X(snd_buf_raised)   /* send buffers made larger again (fewer connections) */                   \
    X(tx_kicked)        /* tcp_output of pcbs the full TX ring had refused (TF_NAGLEMEMERR) */     \
    X(tso_resized)      /* segment sizes (pcb->mss) changed by TSO autosizing */                   \
    X(tso_cut_deferred) /* autosizing cuts put off: segments were unsent */                        \
    X(tso_mss_restored) /* mss raised back for a resent segment (stack_tcp_write) */               \
    X(tso_seg_target)   /* largest segment size of an established connection, last walk (gauge) */

#define STACK_RTO_CTR_FIELD(name) uint64_t name;
struct stack_rto_counters {
    STACK_RTO_COUNTERS(STACK_RTO_CTR_FIELD)
};

/* Start/stop the timer (core lock held). min_ms 0 = no fast retransmission
   (lwIP's own RTO only); give_up_ms 0 = lwIP's retry count decides. Both 0:
   not started. */
void stack_rto_start(uint32_t min_ms, uint32_t give_up_ms);
void stack_rto_stop(void);
const struct stack_rto_counters *stack_rto_counters(void);

/* The free send space (tcp_sndbuf) below which a connection with data in
   flight should not be offered more to write: 7/8 of the budget's buffer
   while the budget cuts buffers, else 0 (any space); set by the walk, read
   with the core lock held (as lwIP's callbacks run). A connection with
   nothing in flight is always writable, so no writer waits for an ACK that
   cannot come. */
uint32_t stack_tcp_write_lowat(void);

/* tcp_write for connections whose mss TSO autosizing may cut: lwIP's
   tcp_write asserts, aborting the process, that the last unsent segment
   fits pcb->mss, and a retransmission can move a segment built under a
   larger mss back to the unsent queue; the mss is then raised back to fit
   it (tcp.tso_mss_restored) until the next walk. Core lock held. */
err_t stack_tcp_write(struct tcp_pcb *pcb, const void *buf, u16_t len, u8_t flags);

/* A run of tcp_writes to one pcb with nothing else between them, for a
   writer with many small pieces: stack_tcp_write's work done once, between
   _begin and _end, and lwIP's tcp_write called directly for each piece (the
   last unsent segment fits the mss after the first write). */
void stack_tcp_write_run_begin(struct tcp_pcb *pcb);
void stack_tcp_write_run_end(void);

/* TSO autosizing: the wire MSS and the largest segment (pcb->mss) the
   application gives connections. Off until called, and when seg_max is
   below wire_mss. */
void stack_rto_set_tso(uint16_t wire_mss, uint16_t seg_max);

/* tcp_abort with a RST the peer accepts. lwIP sends it at snd_nxt, which a
   peer whose window is closed (it stopped reading) ignores (RFC 5961 §3.2:
   in window or a challenge ACK), so the peer would hang on. As Linux
   (tcp_acceptable_seq): at snd_nxt if within the peer's window, else at the
   window's right edge. The error callback runs as with tcp_abort. */
void stack_tcp_abort(struct tcp_pcb *pcb);

#endif
