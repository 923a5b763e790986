/* Check suite: stack/stack_rto.c's walk over lwIP's active pcbs with
 * connections many and queued (docs/design.md §7), on hand-made pcbs in
 * tcp_active_pcbs (no netif: what they send is refused by routing).
 *
 * - An RTO does not fire while the segment's pbuf is still referenced by the
 *   driver (rto_host_queued), and fires once it is released.
 * - The send-buffer budget: with 8000 established connections each
 *   buffer is cut to the floor (56 KiB) and writers wait for 7/8 of it to
 *   be free (the write low-water mark), and buffers are raised back to the
 *   configured size, with no low-water mark, when only 1000 remain.
 * - The walk's table is sized for the connections the last walk saw: 600
 *   connections that appear between two walks grow it during the walk
 *   (rto_table_grown), every one is tracked and each one's RTO fires once.
 * - The RTO clock runs only while data is in flight: a connection that
 *   was idle for several RTOs and sends again is not fired at by the next
 *   walk, only one RTO after it sent.
 * - Hole repair: duplicate ACKs with no ACK progress resend the first
 *   unacked segment alone, as a fast retransmit, once per lastack, long
 *   before the RTO; without duplicate ACKs nothing is resent. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <lwip/ip_addr.h>
#include <lwip/memp.h>
#include <lwip/pbuf.h>
#include <lwip/priv/tcp_priv.h>
#include <lwip/tcp.h>
#include <lwip/tcpip.h>

#include "stack_rto.h"
#include "test_lwip.h"

#define SND_BUF   (192u * 1024)
#define SND_FLOOR (56u * 1024)

/* An unacked segment of len bytes at seq, as lwIP builds one. */
static struct tcp_seg *fake_seg(uint32_t seq, uint16_t len)
{
    struct tcp_seg *seg = memp_malloc(MEMP_TCP_SEG);
    ck_assert_ptr_nonnull(seg);
    seg->next = NULL;
    seg->p = pbuf_alloc(PBUF_IP, (u16_t)(TCP_HLEN + len), PBUF_RAM);
    ck_assert_ptr_nonnull(seg->p);
    seg->tcphdr = seg->p->payload;
    memset(seg->tcphdr, 0, TCP_HLEN);
    seg->tcphdr->seqno = lwip_htonl(seq);
    TCPH_HDRLEN_FLAGS_SET(seg->tcphdr, 5, TCP_ACK);
    seg->len = len;
    seg->flags = 0;
    seg->chksum = 0;
    seg->chksum_swapped = 0;
    return seg;
}

static struct tcp_pcb *fake_pcb(uint16_t port, uint16_t unacked_len)
{
    struct tcp_pcb *pcb = tcp_new();
    ck_assert_ptr_nonnull(pcb);
    pcb->state = ESTABLISHED;
    IP_ADDR4(&pcb->remote_ip, 10, 0, 0, 1);
    IP_ADDR4(&pcb->local_ip, 10, 0, 0, 2);
    pcb->remote_port = port;
    pcb->local_port = 443;
    pcb->snd_buf = SND_BUF;
    pcb->lastack = pcb->snd_nxt = pcb->snd_lbb = 1000;
    if (unacked_len) {
        struct tcp_seg *seg = fake_seg(1000, unacked_len);
        pcb->unacked = seg;
        pcb->snd_nxt = pcb->snd_lbb = 1000 + unacked_len;
        pcb->snd_buf -= unacked_len;
        pcb->snd_queuelen = (u16_t)pbuf_clen(seg->p);
    }
    TCP_REG_ACTIVE(pcb);
    return pcb;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* The counters as of now (read under the core lock). */
static struct stack_rto_counters snap(void)
{
    LOCK_TCPIP_CORE();
    struct stack_rto_counters c = *stack_rto_counters();
    UNLOCK_TCPIP_CORE();
    return c;
}

/* Wait (core lock not held) until n walks after c0's, at most 4 s. */
static struct stack_rto_counters walks_after(const struct stack_rto_counters *c0, unsigned n)
{
    struct stack_rto_counters c = *c0;
    for (int i = 0; i < 400 && c.rto_scans < c0->rto_scans + n; i++) {
        sleep_ms(10);
        c = snap();
    }
    ck_assert_uint_ge(c.rto_scans, c0->rto_scans + n);
    return c;
}

START_TEST(rto_waits_while_the_driver_holds_the_segment)
{
    tu_lwip_start_once();
    LOCK_TCPIP_CORE();
    struct tcp_pcb *pcb = fake_pcb(40000, 1000);
    struct pbuf *held = pcb->unacked->p;
    pbuf_ref(held); /* as the driver does until the NIC completed it */
    stack_rto_start(10, 0);
    UNLOCK_TCPIP_CORE();

    struct stack_rto_counters c = {0};
    for (int i = 0; i < 200 && c.rto_host_queued < 3; i++) {
        sleep_ms(10);
        c = snap();
    }
    ck_assert_uint_ge(c.rto_host_queued, 3);
    ck_assert_uint_eq(c.fast_rto_fired, 0);
    ck_assert_uint_eq(c.rto_probes, 0);

    LOCK_TCPIP_CORE();
    pbuf_free(held); /* the NIC completed it: now it may be lost */
    UNLOCK_TCPIP_CORE();
    for (int i = 0; i < 200 && c.fast_rto_fired == 0; i++) {
        sleep_ms(10);
        c = snap();
    }
    ck_assert_uint_ge(c.fast_rto_fired, 1);
    ck_assert_uint_eq(c.rto_probes, 0); /* one connection in flight: no probe */

    LOCK_TCPIP_CORE();
    stack_rto_stop();
    tcp_abort(pcb);
    UNLOCK_TCPIP_CORE();
}
END_TEST

/* A connection whose peer sent duplicate ACKs (it holds data past lastack)
   gets its first unacked segment resent after the SRTT (no sample yet: the
   2 ms floor), as lwIP's fast retransmit (TF_INFR, cwnd halved), once for
   this lastack; one without duplicate ACKs waits for its RTO (1 s here). */
START_TEST(hole_repair_resends_the_first_unacked_segment_once)
{
    tu_lwip_start_once();
    LOCK_TCPIP_CORE();
    struct tcp_pcb *hole = fake_pcb(41000, 1000);
    struct tcp_pcb *quiet = fake_pcb(41001, 1000);
    hole->dupacks = 2; /* below lwIP's own fast-retransmit threshold of 3 */
    hole->cwnd = quiet->cwnd = 20 * hole->mss;
    hole->snd_wnd = quiet->snd_wnd = 0xffff;
    stack_rto_start(1000, 0);
    UNLOCK_TCPIP_CORE();

    struct stack_rto_counters c = {0};
    for (int i = 0; i < 100 && c.rto_hole_resent == 0; i++) {
        sleep_ms(5);
        c = snap();
    }
    ck_assert_uint_eq(c.rto_hole_resent, 1);
    ck_assert_uint_eq(c.fast_rto_fired, 0);
    LOCK_TCPIP_CORE();
    /* Requeued for sending (no route here, so it stays unsent). */
    ck_assert_ptr_null(hole->unacked);
    ck_assert_ptr_nonnull(hole->unsent);
    ck_assert_uint_eq(lwip_ntohl(hole->unsent->tcphdr->seqno), 1000);
    ck_assert(hole->flags & TF_INFR);
    ck_assert_uint_eq(hole->ssthresh, 10 * hole->mss);
    ck_assert_ptr_nonnull(quiet->unacked);
    ck_assert_ptr_null(quiet->unsent);
    UNLOCK_TCPIP_CORE();
    sleep_ms(100); /* walks go on: the same lastack is not repaired twice */
    c = snap();
    ck_assert_uint_eq(c.rto_hole_resent, 1);
    ck_assert_uint_eq(c.fast_rto_fired, 0);

    LOCK_TCPIP_CORE();
    stack_rto_stop();
    tcp_abort(hole);
    tcp_abort(quiet);
    UNLOCK_TCPIP_CORE();
}
END_TEST

#define MANY     8000
#define FEW      1000
#define WIRE_MSS 1460
#define TSO_SEG  (44 * WIRE_MSS) /* what anic serve gives at MTU 1500 */

START_TEST(send_buffers_follow_the_budget)
{
    static struct tcp_pcb *pcbs[MANY];
    tu_lwip_start_once();
    LOCK_TCPIP_CORE();
    for (unsigned i = 0; i < MANY; i++) {
        pcbs[i] = fake_pcb((uint16_t)(20000 + i), 0);
        pcbs[i]->mss = TSO_SEG;
    }
    stack_rto_set_tso(WIRE_MSS, TSO_SEG);
    stack_rto_start(10, 0);
    UNLOCK_TCPIP_CORE();

    ck_assert_uint_eq(stack_tcp_write_lowat(), 0); /* no walk yet */
    /* 256 MiB over 8000 is below the floor: every buffer at 56 KiB. */
    struct stack_rto_counters c = {0};
    for (int i = 0; i < 300 && c.snd_buf_cut < MANY; i++) {
        sleep_ms(10);
        c = snap();
    }
    ck_assert_uint_eq(c.snd_buf_target, SND_FLOOR);
    ck_assert_uint_eq(stack_tcp_write_lowat(), SND_FLOOR / 8 * 7);
    ck_assert_uint_eq(c.write_lowat, SND_FLOOR / 8 * 7);
    /* TSO autosizing: segments of half the budget, whole wire MSS. */
    for (int i = 0; i < 300 && c.tso_resized < MANY; i++) {
        sleep_ms(10);
        c = snap();
    }
    ck_assert_uint_eq(c.tso_resized, MANY);
    ck_assert_uint_eq(c.tso_seg_target, SND_FLOOR / 2 / WIRE_MSS * WIRE_MSS);
    LOCK_TCPIP_CORE();
    for (unsigned i = 0; i < MANY; i++) {
        ck_assert_uint_eq(pcbs[i]->snd_buf, SND_FLOOR);
        ck_assert_uint_eq(pcbs[i]->mss, SND_FLOOR / 2 / WIRE_MSS * WIRE_MSS);
    }
    /* 1000 left: 256 MiB / 1000 is above the configured 192 KiB. */
    for (unsigned i = FEW; i < MANY; i++)
        tcp_abort(pcbs[i]);
    UNLOCK_TCPIP_CORE();
    for (int i = 0; i < 300 && c.snd_buf_raised < FEW; i++) {
        sleep_ms(10);
        c = snap();
    }
    LOCK_TCPIP_CORE();
    for (unsigned i = 0; i < FEW; i++) {
        ck_assert_uint_eq(pcbs[i]->snd_buf, SND_BUF);
        ck_assert_uint_eq(pcbs[i]->mss, TSO_SEG); /* the budget is no limit now */
    }
    ck_assert_uint_eq(stack_rto_counters()->tso_seg_target, TSO_SEG);
    ck_assert_uint_eq(stack_tcp_write_lowat(), 0); /* the budget cuts nothing */
    stack_rto_stop();
    stack_rto_set_tso(WIRE_MSS, 0);
    for (unsigned i = 0; i < FEW; i++)
        tcp_abort(pcbs[i]);
    UNLOCK_TCPIP_CORE();
}
END_TEST

/* Of 8000 established connections 1000 send: they share the budget among
   themselves (192 KiB each, the configured size), the idle ones keep the
   share of all (the floor), and one that starts sending is raised by a
   later walk. */
START_TEST(idle_connections_do_not_dilute_the_send_budget)
{
    static struct tcp_pcb *pcbs[MANY];
    tu_lwip_start_once();
    LOCK_TCPIP_CORE();
    for (unsigned i = 0; i < MANY; i++) {
        pcbs[i] = fake_pcb((uint16_t)(20000 + i), i < FEW ? 1000 : 0);
        pcbs[i]->mss = TSO_SEG;
        pcbs[i]->rtime = -1; /* lwIP's own RTO off */
        if (i < FEW)         /* in the driver's ring: no RTO fires */
            pbuf_ref(pcbs[i]->unacked->p);
    }
    stack_rto_set_tso(WIRE_MSS, TSO_SEG);
    stack_rto_start(10, 0);
    UNLOCK_TCPIP_CORE();

    /* The first walk knows no senders yet; the second divides among them. */
    struct stack_rto_counters c0 = snap();
    struct stack_rto_counters c = walks_after(&c0, 3);
    ck_assert_uint_eq(c.snd_senders, FEW);
    ck_assert_uint_eq(c.snd_buf_sender_target, SND_BUF);
    ck_assert_uint_eq(c.snd_buf_target, SND_FLOOR);
    ck_assert_uint_eq(c.write_lowat, SND_FLOOR / 8 * 7);
    LOCK_TCPIP_CORE();
    for (unsigned i = 0; i < MANY; i++) {
        const struct tcp_pcb *pcb = pcbs[i];
        uint32_t cap = (uint32_t)pcb->snd_buf + (pcb->snd_lbb - pcb->lastack);
        ck_assert_uint_eq(cap, i < FEW ? SND_BUF : SND_FLOOR);
        ck_assert_uint_eq(pcb->mss, i < FEW ? TSO_SEG : SND_FLOOR / 2 / WIRE_MSS * WIRE_MSS);
    }
    /* An idle one writes (4 KiB queued): the next walks raise it. */
    struct tcp_pcb *late = pcbs[MANY - 1];
    late->snd_lbb += 4096;
    late->snd_buf -= 4096;
    c0 = *stack_rto_counters();
    UNLOCK_TCPIP_CORE();
    c = walks_after(&c0, 2);
    LOCK_TCPIP_CORE();
    ck_assert_uint_eq(stack_rto_counters()->snd_senders, FEW + 1);
    ck_assert_uint_eq((uint32_t)late->snd_buf + 4096, SND_BUF);
    ck_assert_uint_eq(late->mss, TSO_SEG);
    late->snd_lbb -= 4096; /* as it was, for tcp_abort */
    stack_rto_stop();
    stack_rto_set_tso(WIRE_MSS, 0);
    for (unsigned i = 0; i < MANY; i++) {
        if (i < FEW)
            pbuf_free(pcbs[i]->unacked->p);
        tcp_abort(pcbs[i]);
    }
    UNLOCK_TCPIP_CORE();
}
END_TEST

/* Two connections have a 60,000-byte segment queued, one unsent, one
   unacked, when 8000 others start sending and their share falls to the
   floor. lwIP's tcp_write asserts, aborting the process, that the last
   unsent segment fits pcb->mss ("mss_local is too small"): the unsent one
   keeps its mss until the segment has left; the unacked one is cut, and
   when lwIP's RTO moves its segment back to the unsent queue,
   stack_tcp_write raises its mss back before writing. A third, in that
   state (cut under an unsent 60,000-byte segment) and in lwIP's persist
   timer (a 40,000-byte window, nothing in flight), gets its mss raised by
   the walk: the timer's split asserts that the window fits the mss. */
START_TEST(tso_autosizing_keeps_the_queued_segment_writable)
{
    static struct tcp_pcb *pcbs[MANY];
    static uint8_t data[60000];
    tu_lwip_start_once();
    LOCK_TCPIP_CORE();
    struct tcp_pcb *big = fake_pcb(19999, 0);
    big->mss = TSO_SEG;
    big->snd_wnd = big->snd_wnd_max = 4 * TSO_SEG;
    ck_assert_int_eq(tcp_write(big, data, sizeof(data), TCP_WRITE_FLAG_COPY), ERR_OK);
    ck_assert_ptr_nonnull(big->unsent);
    ck_assert_uint_eq(big->unsent->len, sizeof(data));
    struct tcp_pcb *sent = fake_pcb(19998, sizeof(data));
    sent->mss = TSO_SEG;
    sent->rtime = -1;
    pbuf_ref(sent->unacked->p);
    for (unsigned i = 0; i < MANY; i++) {
        pcbs[i] = fake_pcb((uint16_t)(20000 + i), 1000);
        pcbs[i]->mss = TSO_SEG;
        pcbs[i]->rtime = -1;
        pbuf_ref(pcbs[i]->unacked->p); /* in the driver's ring: no RTO fires */
    }
    struct stack_rto_counters c0 = *stack_rto_counters();
    stack_rto_set_tso(WIRE_MSS, TSO_SEG);
    stack_rto_start(10, 0);
    UNLOCK_TCPIP_CORE();

    struct stack_rto_counters c = walks_after(&c0, 3);
    ck_assert_uint_gt(c.tso_cut_deferred, c0.tso_cut_deferred);
    LOCK_TCPIP_CORE();
    ck_assert_uint_eq(pcbs[0]->mss, SND_FLOOR / 2 / WIRE_MSS * WIRE_MSS); /* the others: cut */
    /* Its pbuf was allocated for the whole mss (4240 bytes spare): held. */
    ck_assert_uint_eq(big->unsent_oversize, TSO_SEG - sizeof(data));
    ck_assert_uint_eq(big->mss, TSO_SEG);
    big->snd_buf = 1000; /* the budget took its free space; as if an ACK gave some back */
    ck_assert_int_eq(stack_tcp_write(big, data, 1000, TCP_WRITE_FLAG_COPY), ERR_OK);
    ck_assert_uint_eq(sent->mss, SND_FLOOR / 2 / WIRE_MSS * WIRE_MSS); /* cut */
    pbuf_free(sent->unacked->p); /* the NIC completed it: lwIP's RTO may resend it */
    tcp_rexmit_rto(sent);
    ck_assert_ptr_nonnull(sent->unsent); /* no route here: it stays queued */
    ck_assert_ptr_null(sent->unacked);
    sent->snd_buf = 1000;
    ck_assert_int_eq(stack_tcp_write(sent, data, 13, TCP_WRITE_FLAG_COPY), ERR_OK);
    ck_assert_uint_eq(sent->mss, sizeof(data));
    ck_assert_uint_eq(stack_rto_counters()->tso_mss_restored, c0.tso_mss_restored + 1);

    struct tcp_pcb *persist = fake_pcb(19997, 0);
    persist->mss = TSO_SEG;
    persist->snd_wnd = persist->snd_wnd_max = 4 * TSO_SEG;
    ck_assert_int_eq(tcp_write(persist, data, sizeof(data), TCP_WRITE_FLAG_COPY), ERR_OK);
    persist->mss = SND_FLOOR / 2 / WIRE_MSS * WIRE_MSS; /* as a cut before a retransmission */
    persist->snd_wnd = 40000;
    persist->persist_backoff = 1;
    c0 = *stack_rto_counters();
    UNLOCK_TCPIP_CORE();
    c = walks_after(&c0, 2);
    LOCK_TCPIP_CORE();
    ck_assert_uint_eq(persist->mss, sizeof(data));
    ck_assert_uint_eq(stack_rto_counters()->tso_mss_restored, c0.tso_mss_restored + 1);
    ck_assert_int_eq(tcp_split_unsent_seg(persist, 40000), ERR_OK); /* the persist timer's */
    ck_assert_uint_eq(persist->unsent->len, 40000);
    stack_rto_stop();
    stack_rto_set_tso(WIRE_MSS, 0);
    for (unsigned i = 0; i < MANY; i++) {
        pbuf_free(pcbs[i]->unacked->p);
        tcp_abort(pcbs[i]);
    }
    tcp_abort(big);
    tcp_abort(sent);
    tcp_abort(persist);
    UNLOCK_TCPIP_CORE();
}
END_TEST

/* The walk sizes its table for the pcbs the last walk visited; 600 that
   appear between two walks grow it during the next one, and every one of
   them keeps its entry (its RTO clock) across the walks after that. */
START_TEST(walk_table_grows_for_connections_added_between_walks)
{
    enum { OLD = 5, NEW = 600 };
    static struct tcp_pcb *pcbs[OLD + NEW];
    tu_lwip_start_once();
    LOCK_TCPIP_CORE();
    for (unsigned i = 0; i < OLD; i++)
        pcbs[i] = fake_pcb((uint16_t)(30000 + i), 1000);
    for (unsigned i = 0; i < OLD; i++)
        pcbs[i]->rtime = -1; /* lwIP's own RTO off: only the walk's fires */
    struct stack_rto_counters c0 = *stack_rto_counters();
    stack_rto_start(2000, 0); /* walks every 1 s (half the RTO) until one is due */
    UNLOCK_TCPIP_CORE();

    struct stack_rto_counters c = snap();
    for (int i = 0; i < 200 && c.rto_scans < c0.rto_scans + 1; i++) {
        sleep_ms(5);
        c = snap();
    }
    ck_assert_uint_eq(c.rto_tracked, OLD);
    LOCK_TCPIP_CORE();
    uint64_t scans = stack_rto_counters()->rto_scans;
    for (unsigned i = OLD; i < OLD + NEW; i++) {
        pcbs[i] = fake_pcb((uint16_t)(30000 + i), 1000);
        pcbs[i]->rtime = -1;
    }
    UNLOCK_TCPIP_CORE();
    for (int i = 0; i < 300 && c.rto_scans < scans + 1; i++) {
        sleep_ms(5);
        c = snap();
    }
    ck_assert_uint_eq(c.rto_scans, scans + 1);
    ck_assert_uint_eq(c.rto_tracked, OLD + NEW);
    ck_assert_uint_ge(c.rto_table_grown, c0.rto_table_grown + 1);
    /* Each one fires once: 2 s after the walk that first saw it. */
    for (int i = 0; i < 600 && c.fast_rto_fired < c0.fast_rto_fired + OLD + NEW; i++) {
        sleep_ms(10);
        c = snap();
    }
    ck_assert_uint_eq(c.fast_rto_fired, c0.fast_rto_fired + OLD + NEW);

    LOCK_TCPIP_CORE();
    stack_rto_stop();
    for (unsigned i = 0; i < OLD + NEW; i++)
        tcp_abort(pcbs[i]);
    UNLOCK_TCPIP_CORE();
}
END_TEST

/* The walk after the last unacked bytes were acknowledged sees the
   connection idle; three RTOs later it sends again. Its RTO must count from
   then, not from its last ACK progress before the idle spell. */
START_TEST(rto_clock_restarts_after_an_idle_spell)
{
    tu_lwip_start_once();
    LOCK_TCPIP_CORE();
    struct tcp_pcb *pcb = fake_pcb(41000, 1000);
    pcb->rtime = -1;          /* lwIP's own RTO off: only the walk's fires */
    stack_rto_start(1000, 0); /* RTO 1 s (no RTT sample beats the floor); walks every 0.5 s */
    UNLOCK_TCPIP_CORE();
    struct stack_rto_counters c = snap();
    for (int i = 0; i < 200 && c.rto_tracked != 1; i++) {
        sleep_ms(5);
        c = snap();
    }
    ck_assert_uint_eq(c.rto_tracked, 1);

    /* All acknowledged: the connection is idle. */
    LOCK_TCPIP_CORE();
    struct tcp_seg *seg = pcb->unacked;
    pcb->unacked = NULL;
    pcb->lastack = pcb->snd_nxt;
    pcb->snd_buf += seg->len;
    pcb->snd_queuelen = 0;
    tcp_seg_free(seg);
    UNLOCK_TCPIP_CORE();
    sleep_ms(3000); /* three RTOs idle */

    /* Right after a walk, it sends 1000 bytes more. */
    uint64_t scans = snap().rto_scans;
    for (int i = 0; i < 400 && snap().rto_scans == scans; i++)
        sleep_ms(2);
    LOCK_TCPIP_CORE();
    pcb->unacked = fake_seg(pcb->lastack, 1000);
    pcb->snd_nxt = pcb->snd_lbb = pcb->lastack + 1000;
    pcb->snd_buf -= 1000;
    pcb->snd_queuelen = (u16_t)pbuf_clen(pcb->unacked->p);
    scans = stack_rto_counters()->rto_scans;
    UNLOCK_TCPIP_CORE();

    /* The next walk (about 0.5 s later) sees it in flight for less than an
       RTO: nothing fires. */
    c = snap();
    for (int i = 0; i < 400 && c.rto_scans < scans + 1; i++) {
        sleep_ms(5);
        c = snap();
    }
    ck_assert_uint_ge(c.rto_scans, scans + 1);
    ck_assert_uint_eq(c.rto_tracked, 1);
    ck_assert_uint_eq(c.fast_rto_fired, 0);
    /* One RTO after it sent, it does. */
    for (int i = 0; i < 400 && c.fast_rto_fired == 0; i++) {
        sleep_ms(5);
        c = snap();
    }
    ck_assert_uint_eq(c.fast_rto_fired, 1);

    LOCK_TCPIP_CORE();
    stack_rto_stop();
    tcp_abort(pcb);
    UNLOCK_TCPIP_CORE();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rto");
    TCase *tc = tcase_create("walk");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, rto_waits_while_the_driver_holds_the_segment);
    tcase_add_test(tc, send_buffers_follow_the_budget);
    tcase_add_test(tc, idle_connections_do_not_dilute_the_send_budget);
    tcase_add_test(tc, tso_autosizing_keeps_the_queued_segment_writable);
    tcase_add_test(tc, hole_repair_resends_the_first_unacked_segment_once);
    tcase_add_test(tc, walk_table_grows_for_connections_added_between_walks);
    tcase_add_test(tc, rto_clock_restarts_after_an_idle_spell);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
