/* stack_rto.c - millisecond retransmission timer for lwIP pcbs. */
#include "stack_rto.h"

#include <lwip/priv/tcp_priv.h>
#include <lwip/sys.h>
#include <lwip/tcp.h>
#include <lwip/timeouts.h>
#include <stdbool.h>
#include <string.h>

#define RTO_TABLE_SIZE  1024 /* pcbs tracked (open addressing by pointer) */
#define RTO_MAX_BACKOFF 6
#define RTO_PERIOD_MS   1

struct rto_entry {
    const struct tcp_pcb *pcb;
    uint32_t lastack;
    uint32_t since_ms;
    uint32_t seen_round;
    unsigned backoff;
};

static struct rto_entry table[RTO_TABLE_SIZE];
static uint32_t min_rto_ms;
static uint32_t round_no;
static bool running;
static struct stack_rto_counters counters;

static struct rto_entry *lookup(const struct tcp_pcb *pcb)
{
    size_t h = ((uintptr_t)pcb >> 4) % RTO_TABLE_SIZE;
    for (size_t i = 0; i < RTO_TABLE_SIZE; i++) {
        struct rto_entry *e = &table[(h + i) % RTO_TABLE_SIZE];
        if (e->pcb == pcb)
            return e;
        if (!e->pcb || e->seen_round + 1 < round_no) {
            /* free, or a pcb not seen last round (gone): take it */
            e->pcb = pcb;
            e->lastack = pcb->lastack;
            e->since_ms = sys_now();
            e->backoff = 0;
            return e;
        }
    }
    return NULL; /* more active pcbs than we track: lwIP's own RTO covers them */
}

static void fire(struct tcp_pcb *pcb)
{
    /* As lwIP's RTO (tcp_slowtmr): ssthresh = half the flight, cwnd = 1 MSS. */
    tcpwnd_size_t eff_wnd = LWIP_MIN(pcb->cwnd, pcb->snd_wnd);
    pcb->ssthresh = eff_wnd >> 1;
    if (pcb->ssthresh < (tcpwnd_size_t)(pcb->mss << 1))
        pcb->ssthresh = (tcpwnd_size_t)(pcb->mss << 1);
    pcb->cwnd = pcb->mss;
    pcb->bytes_acked = 0;
    tcp_rexmit_rto(pcb);
    counters.fast_rto_fired++;
}

static void tick(void *arg)
{
    (void)arg;
    uint32_t now = sys_now();
    round_no++;
    for (struct tcp_pcb *pcb = tcp_active_pcbs; pcb; pcb = pcb->next) {
        if (!pcb->unacked)
            continue;
        struct rto_entry *e = lookup(pcb);
        if (!e)
            continue;
        e->seen_round = round_no;
        if (e->lastack != pcb->lastack) {
            e->lastack = pcb->lastack;
            e->since_ms = now;
            e->backoff = 0;
            continue;
        }
        if (now - e->since_ms >= (min_rto_ms << e->backoff)) {
            fire(pcb);
            e->since_ms = now;
            if (e->backoff < RTO_MAX_BACKOFF)
                e->backoff++;
        }
    }
    sys_timeout(RTO_PERIOD_MS, tick, NULL);
}

void stack_rto_start(uint32_t min_ms)
{
    if (running || !min_ms)
        return;
    memset(table, 0, sizeof(table));
    min_rto_ms = min_ms;
    running = true;
    sys_timeout(RTO_PERIOD_MS, tick, NULL);
}

void stack_rto_stop(void)
{
    if (!running)
        return;
    sys_untimeout(tick, NULL);
    running = false;
}

const struct stack_rto_counters *stack_rto_counters(void)
{
    return &counters;
}
