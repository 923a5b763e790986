/* Check suite for nic/nic_fault.c and nic_fault_spec.c: spec parsing, determinism, fault rates,
 * tamper checksum validity, reorder/delay/rate timing, bounds. Time is driven
 * explicitly through now_ns; nothing sleeps. */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nic_fault.h"

#define MS UINT64_C(1000000)
#define US UINT64_C(1000)

static uint8_t out_buf[NIC_FAULT_MAX_PKT];

/* For hot loops: ck_assert_* records its location through the runner on
 * every call, which dominates 200k-packet runs; this only acts on failure. */
#define FAST_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg("%s:%d: %s", __FILE__, __LINE__, #cond);                                  \
    } while (0)

static struct nic_fault *make(const char *spec)
{
    struct nic_fault_cfg cfg;
    char err[128];
    int rc = nic_fault_cfg_parse(&cfg, spec, err, sizeof(err));
    ck_assert_msg(rc == 0, "parse '%s': %s", spec, err);
    struct nic_fault *f = nic_fault_create(&cfg);
    ck_assert_ptr_nonnull(f);
    return f;
}

static struct nic_fault_stats stats(const struct nic_fault *f)
{
    struct nic_fault_stats st;
    nic_fault_get_stats(f, &st);
    return st;
}

/* Every packet in is out, dropped or still queued (a duplicate adds one out). */
static void check_conservation(const struct nic_fault *f)
{
    struct nic_fault_stats st = stats(f);
    ck_assert_uint_eq(nic_fault_queued(f), 0);
    ck_assert_uint_eq(st.packets_in + st.duplicated, st.packets_out + st.dropped +
                                                         st.blackout_drops + st.queue_full_drops +
                                                         st.invalid_drops + st.nomem_drops);
}

/* Plain test packet: 4-byte big-endian id, then a pattern mixed from the
 * whole id, so a bit flipped in the id field still shows in the pattern. */
static size_t make_pkt(uint8_t *buf, uint32_t id, size_t len)
{
    FAST_CHECK(len >= 4);
    buf[0] = (uint8_t)(id >> 24);
    buf[1] = (uint8_t)(id >> 16);
    buf[2] = (uint8_t)(id >> 8);
    buf[3] = (uint8_t)id;
    for (size_t i = 4; i < len; i++) {
        uint64_t x =
            (id + UINT64_C(1)) * UINT64_C(0x9e3779b97f4a7c15) ^ i * UINT64_C(0xbf58476d1ce4e5b9);
        x ^= x >> 29;
        x *= UINT64_C(0x94d049bb133111eb);
        buf[i] = (uint8_t)(x ^ x >> 32);
    }
    return len;
}

static uint32_t pkt_id(const uint8_t *buf)
{
    return (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
}

/* ---- Independent checksum (RFC 1071, byte-pair loop over one flat buffer) ---- */

static uint16_t ref_csum(const uint8_t *data, size_t len)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += (i & 1) ? data[i] : (uint32_t)data[i] << 8;
    while (sum > 0xffff)
        sum = (sum >> 16) + (sum & 0xffff);
    return (uint16_t)~sum;
}

/* True if the TCP checksum of an IPv4/TCP packet verifies. */
static bool ref_tcp_csum_ok(const uint8_t *pkt)
{
    size_t ihl = (pkt[0] & 15u) * 4, tot = (size_t)pkt[2] << 8 | pkt[3];
    size_t seg = tot - ihl;
    static uint8_t flat[12 + NIC_FAULT_MAX_PKT];
    memcpy(flat, pkt + 12, 8);
    flat[8] = 0;
    flat[9] = 6;
    flat[10] = (uint8_t)(seg >> 8);
    flat[11] = (uint8_t)seg;
    memcpy(flat + 12, pkt + ihl, seg);
    return ref_csum(flat, 12 + seg) == 0;
}

/* IPv4/TCP packet with valid checksums. opt_len: TCP options (multiple of 4). */
static size_t make_tcp(uint8_t *buf, uint32_t id, size_t opt_len, size_t payload_len)
{
    size_t ihl = 20, thl = 20 + opt_len, tot = ihl + thl + payload_len;
    memset(buf, 0, tot);
    buf[0] = 0x45;
    buf[2] = (uint8_t)(tot >> 8);
    buf[3] = (uint8_t)tot;
    buf[4] = (uint8_t)(id >> 8); /* IP id */
    buf[5] = (uint8_t)id;
    buf[6] = 0x40; /* DF */
    buf[8] = 64;
    buf[9] = 6;
    memcpy(buf + 12, (uint8_t[]){10, 0, 0, 1, 10, 0, 0, 2}, 8);
    uint16_t ipc = ref_csum(buf, ihl);
    buf[10] = (uint8_t)(ipc >> 8);
    buf[11] = (uint8_t)ipc;
    uint8_t *t = buf + ihl;
    t[0] = 0x30, t[1] = 0x39, t[2] = 0x01, t[3] = 0xbb; /* ports 12345 -> 443 */
    t[4] = (uint8_t)(id >> 24), t[5] = (uint8_t)(id >> 16), t[6] = (uint8_t)(id >> 8);
    t[7] = (uint8_t)id; /* seq */
    t[12] = (uint8_t)((thl / 4) << 4);
    t[13] = 0x18; /* PSH|ACK */
    t[14] = 0xff;
    for (size_t i = 20; i < thl; i++)
        t[i] = 1; /* NOP options */
    for (size_t i = 0; i < payload_len; i++)
        t[thl + i] = (uint8_t)(id + 7 * i);
    uint8_t flat[12 + 65535];
    memcpy(flat, buf + 12, 8);
    flat[8] = 0, flat[9] = 6, flat[10] = (uint8_t)((thl + payload_len) >> 8);
    flat[11] = (uint8_t)(thl + payload_len);
    memcpy(flat + 12, t, thl + payload_len);
    uint16_t c = ref_csum(flat, 12 + thl + payload_len);
    t[16] = (uint8_t)(c >> 8);
    t[17] = (uint8_t)c;
    FAST_CHECK(ref_tcp_csum_ok(buf));
    return tot;
}

static unsigned bits_differ(const uint8_t *a, const uint8_t *b, size_t len, size_t *first_bit)
{
    unsigned n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned x = a[i] ^ b[i];
        if (x && first_bit && n == 0)
            *first_bit = i * 8 + (unsigned)__builtin_ctz(x);
        n += (unsigned)__builtin_popcount(x);
    }
    return n;
}

/* ---- Parsing ---- */

#define EXAMPLE_SPEC                                                                               \
    "loss 1% duplicate 0.5% reorder 5% gap 3 corrupt 0.1% tamper 0.2% delay 2ms 1ms rate 1gbit "   \
    "seed 7"

START_TEST(parse_full_example)
{
    struct nic_fault_cfg c;
    char err[128];
    ck_assert_int_eq(nic_fault_cfg_parse(&c, EXAMPLE_SPEC, err, sizeof(err)), 0);
    ck_assert_double_eq(c.loss_pct, 1);
    ck_assert_double_eq(c.duplicate_pct, 0.5);
    ck_assert_double_eq(c.reorder_pct, 5);
    ck_assert_uint_eq(c.reorder_gap, 3);
    ck_assert_uint_eq(c.reorder_timeout_ns, 2 * MS);
    ck_assert_double_eq(c.corrupt_pct, 0.1);
    ck_assert_double_eq(c.tamper_pct, 0.2);
    ck_assert_uint_eq(c.delay_ns, 2 * MS);
    ck_assert_uint_eq(c.jitter_ns, 1 * MS);
    ck_assert_uint_eq(c.rate_bps, 1000000000);
    ck_assert_uint_eq(c.seed, 7);
    ck_assert(c.seed_set);
    ck_assert(!nic_fault_cfg_is_passthrough(&c));
}
END_TEST

START_TEST(parse_units)
{
    static const struct {
        const char *spec;
        uint64_t delay, jitter, rate;
    } cases[] = {
        {"delay 5", 5 * MS, 0, 0},
        {"delay 1.5ms", 1500 * US, 0, 0},
        {"delay 250us 10us", 250 * US, 10 * US, 0},
        {"delay 1s .5s", 1000 * MS, 500 * MS, 0},
        {"delay 100ns", 100, 0, 0},
        {"delay 0 3", 0, 3 * MS, 0},
        {"rate 1500", 0, 0, 1500},
        {"rate 64bit", 0, 0, 64},
        {"rate 100kbit", 0, 0, 100000},
        {"rate 2.5mbit", 0, 0, 2500000},
        {"rate 10Gbit", 0, 0, 10000000000},
        {"rate 100bps", 0, 0, 800},
        {"rate 1kbps", 0, 0, 8000},
        {"rate 1mbps", 0, 0, 8000000},
        {"rate 1gbps", 0, 0, 8000000000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct nic_fault_cfg c;
        char err[128];
        ck_assert_msg(nic_fault_cfg_parse(&c, cases[i].spec, err, sizeof(err)) == 0, "%s: %s",
                      cases[i].spec, err);
        ck_assert_uint_eq(c.delay_ns, cases[i].delay);
        ck_assert_uint_eq(c.jitter_ns, cases[i].jitter);
        ck_assert_uint_eq(c.rate_bps, cases[i].rate);
    }
}
END_TEST

START_TEST(parse_percent_forms_and_misc)
{
    struct nic_fault_cfg c;
    char err[128];
    ck_assert_int_eq(nic_fault_cfg_parse(&c, " \tloss 1\n corrupt 0.5% tamper 100% ", err, 128), 0);
    ck_assert_double_eq(c.loss_pct, 1);
    ck_assert_double_eq(c.corrupt_pct, 0.5);
    ck_assert_double_eq(c.tamper_pct, 100);
    ck_assert(!c.seed_set);

    ck_assert_int_eq(nic_fault_cfg_parse(&c, "reorder 10 timeout 5ms gap 7", err, 128), 0);
    ck_assert_double_eq(c.reorder_pct, 10);
    ck_assert_uint_eq(c.reorder_gap, 7);
    ck_assert_uint_eq(c.reorder_timeout_ns, 5 * MS);

    ck_assert_int_eq(nic_fault_cfg_parse(&c, "reorder 10%", err, 128), 0);
    ck_assert_uint_eq(c.reorder_gap, NIC_FAULT_DEFAULT_GAP);

    ck_assert_int_eq(nic_fault_cfg_parse(&c, "seed 18446744073709551615", err, 128), 0);
    ck_assert_uint_eq(c.seed, UINT64_MAX);
    ck_assert_int_eq(nic_fault_cfg_parse(&c, "seed 0x10", err, 128), 0);
    ck_assert_uint_eq(c.seed, 16);
    ck_assert_int_eq(nic_fault_cfg_parse(&c, "seed 010", err, 128), 0);
    ck_assert_uint_eq(c.seed, 10);               /* decimal, not octal */
    ck_assert(nic_fault_cfg_is_passthrough(&c)); /* seed alone adds no fault */

    const char *pass[] = {"", "   ", "none", " none ", NULL};
    for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++) {
        c.loss_pct = 50;
        ck_assert_int_eq(nic_fault_cfg_parse(&c, pass[i], err, 128), 0);
        ck_assert(nic_fault_cfg_is_passthrough(&c));
        ck_assert_uint_eq(c.reorder_gap, NIC_FAULT_DEFAULT_GAP);
    }
}
END_TEST

START_TEST(parse_errors)
{
    /* Each bad spec must fail, name the offending token and leave cfg alone. */
    static const struct {
        const char *spec, *needle;
    } bad[] = {
        {"bogus 1%", "bogus"},
        {"loss", "loss"},
        {"loss 1% delay", "delay"},
        {"loss 101%", "101%"},
        {"loss -1%", "-1%"},
        {"loss 1x%", "1x%"},
        {"loss 1%%", "1%%"},
        {"loss nan", "nan"},
        {"loss inf%", "inf%"},
        {"loss 0x10", "0x10"},
        {"loss delay", "delay"},
        {"duplicate 100.01", "100.01"},
        {"corrupt abc", "abc"},
        {"tamper 1e3", "1e3"},
        {"gap 3", "gap"},
        {"loss 1% gap 3", "gap"},
        {"timeout 1ms", "timeout"},
        {"reorder 5% gap", "gap"},
        {"reorder 5% gap 0", "0"},
        {"reorder 5% gap 65536", "65536"},
        {"reorder 5% gap x", "x"},
        {"reorder 5% gap -1", "-1"},
        {"reorder 5% gap 3 gap 4", "gap"},
        {"reorder 5% timeout 2hours", "2hours"},
        {"delay", "delay"},
        {"delay 2hours", "2hours"},
        {"delay -1ms", "-1ms"},
        {"delay 3601s", "3601s"},
        {"delay 2ms 1ms 3ms", "3ms"},
        {"delay 2ms 1x", "1x"},
        {"rate", "rate"},
        {"rate 1gbits", "1gbits"},
        {"rate 0", "0"},
        {"rate 0.5bit", "0.5bit"},
        {"rate 2000tbit", "2000tbit"},
        {"rate fast", "fast"},
        {"seed", "seed"},
        {"seed -1", "-1"},
        {"seed 12abc", "12abc"},
        {"seed 18446744073709551616", "18446744073709551616"},
        {"seed 1.5", "1.5"},
        {"loss 1% loss 2%", "loss"},
        {"none loss 1%", "none"},
        {"loss 1% none", "none"},
        {"loss 1% 2%", "2%"},
        {"loss 1111111111111111111111111111111111111111111111111111111111111111111111%", "111"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct nic_fault_cfg c;
        nic_fault_cfg_init(&c);
        c.loss_pct = 42;
        char err[160] = "unset";
        ck_assert_msg(nic_fault_cfg_parse(&c, bad[i].spec, err, sizeof(err)) == -1, "'%s' accepted",
                      bad[i].spec);
        ck_assert_msg(strstr(err, bad[i].needle) != NULL, "'%s': message '%s' lacks '%s'",
                      bad[i].spec, err, bad[i].needle);
        ck_assert_double_eq(c.loss_pct, 42);
    }
    /* A NULL or zero-length err buffer is allowed. */
    struct nic_fault_cfg c;
    ck_assert_int_eq(nic_fault_cfg_parse(&c, "bogus", NULL, 0), -1);
}
END_TEST

static void assert_cfg_eq(const struct nic_fault_cfg *a, const struct nic_fault_cfg *b)
{
    ck_assert(a->loss_pct == b->loss_pct);
    ck_assert(a->duplicate_pct == b->duplicate_pct);
    ck_assert(a->corrupt_pct == b->corrupt_pct);
    ck_assert(a->tamper_pct == b->tamper_pct);
    ck_assert(a->reorder_pct == b->reorder_pct);
    ck_assert_uint_eq(a->reorder_gap, b->reorder_gap);
    ck_assert_uint_eq(a->reorder_timeout_ns, b->reorder_timeout_ns);
    ck_assert_uint_eq(a->delay_ns, b->delay_ns);
    ck_assert_uint_eq(a->jitter_ns, b->jitter_ns);
    ck_assert_uint_eq(a->rate_bps, b->rate_bps);
    ck_assert_uint_eq(a->blackout_ns, b->blackout_ns);
    ck_assert_uint_eq(a->blackout_after, b->blackout_after);
    ck_assert_int_eq(a->seed_set, b->seed_set);
    if (a->seed_set)
        ck_assert_uint_eq(a->seed, b->seed);
}

static void roundtrip(const struct nic_fault_cfg *c)
{
    char buf[NIC_FAULT_FMT_LEN], err[128];
    struct nic_fault_cfg back;
    nic_fault_cfg_format(c, buf, sizeof(buf));
    ck_assert_msg(nic_fault_cfg_parse(&back, buf, err, sizeof(err)) == 0, "'%s': %s", buf, err);
    assert_cfg_eq(c, &back);
}

START_TEST(format_roundtrip)
{
    const char *specs[] = {
        EXAMPLE_SPEC,
        "",
        "seed 0",
        "delay 1.5ms 7us rate 12345bit",
        "delay 0 1ns",
        "reorder 0 gap 9",
        "reorder 100 timeout 1s",
        "loss 100 rate 8gbps",
        "rate 1000tbit delay 3600s 3600s",
        "blackout 6s after 2000",
        "blackout 1ns",
        "loss 1% reorder 5% gap 3 timeout 1s duplicate 1% corrupt 1% tamper 1% delay 3600s 3600s "
        "rate 1000001bit blackout 3599999999999ns after 18446744073709551615 seed "
        "18446744073709551615",
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        struct nic_fault_cfg c;
        char err[128];
        ck_assert_int_eq(nic_fault_cfg_parse(&c, specs[i], err, sizeof(err)), 0);
        roundtrip(&c);
    }
    /* Values no short spec spells still read back exactly. */
    struct nic_fault_cfg c;
    nic_fault_cfg_init(&c);
    c.loss_pct = 100.0 / 3;
    c.duplicate_pct = 1e-20;
    c.corrupt_pct = 0.1 + 0.2;
    c.reorder_timeout_ns = 1234567;
    c.jitter_ns = 999;
    c.rate_bps = 1000001;
    c.seed = UINT64_MAX;
    c.seed_set = true;
    roundtrip(&c);

    char buf[NIC_FAULT_FMT_LEN];
    nic_fault_cfg_init(&c);
    nic_fault_cfg_format(&c, buf, sizeof(buf));
    ck_assert_str_eq(buf, "none");
    ck_assert_int_eq(nic_fault_cfg_parse(&c, "loss 1% seed 7", NULL, 0), 0);
    nic_fault_cfg_format(&c, buf, sizeof(buf));
    ck_assert_str_eq(buf, "loss 1% seed 7");
    nic_fault_cfg_format(&c, buf, 5); /* truncates, still terminated */
    ck_assert_str_eq(buf, "loss");
}
END_TEST

START_TEST(format_longest_fits)
{
    /* The longest text nic_fault_cfg_format writes: five percentages that
     * print with %.17g (a subnormal: 23 characters), the largest gap, times
     * that print only in ns, a rate that prints only in bits, a 20-digit
     * seed. It must fit NIC_FAULT_FMT_LEN and read back to the same config. */
    static const char spec[] = "loss 4.9406564584124654e-324 duplicate 4.9406564584124654e-324 "
                               "corrupt 4.9406564584124654e-324 tamper 4.9406564584124654e-324 "
                               "reorder 4.9406564584124654e-324 gap 65535 timeout 3599999999999ns "
                               "delay 3599999999999ns 3599999999999ns rate 999999999999999bit "
                               "blackout 3599999999999ns after 18446744073709551615 "
                               "seed 18446744073709551615";
    struct nic_fault_cfg c;
    char err[128], full[1024];
    ck_assert_msg(nic_fault_cfg_parse(&c, spec, err, sizeof(err)) == 0, "%s", err);
    nic_fault_cfg_format(&c, full, sizeof(full));
    ck_assert_uint_eq(strlen(full), 336);
    ck_assert_uint_lt(strlen(full), NIC_FAULT_FMT_LEN);
    roundtrip(&c);
}
END_TEST

START_TEST(parse_blackout)
{
    struct nic_fault_cfg c;
    char err[128];
    ck_assert_int_eq(nic_fault_cfg_parse(&c, "blackout 6s after 2000 loss 1%", err, sizeof(err)),
                     0);
    ck_assert_uint_eq(c.blackout_ns, UINT64_C(6000000000));
    ck_assert_uint_eq(c.blackout_after, 2000);
    ck_assert(c.loss_pct == 1);
    ck_assert(!nic_fault_cfg_is_passthrough(&c));
    ck_assert_int_eq(nic_fault_cfg_parse(&c, "blackout 250", err, sizeof(err)), 0);
    ck_assert_uint_eq(c.blackout_ns, UINT64_C(250000000)); /* bare number: ms */
    ck_assert_uint_eq(c.blackout_after, 0);
    static const char *const bad[] = {
        "blackout",          "blackout 0",
        "blackout 1s after", "blackout 1s after -1",
        "after 5",           "blackout 1s after 2 after 3",
        "blackout 3601s",    "blackout 1s blackout 2s",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        ck_assert_msg(nic_fault_cfg_parse(&c, bad[i], err, sizeof(err)) < 0, "accepted '%s'",
                      bad[i]);
        ck_assert_msg(err[0] != 0, "no message for '%s'", bad[i]);
    }
}
END_TEST

START_TEST(create_rejects_bad_cfg_and_chooses_seed)
{
    struct nic_fault_cfg c;
    nic_fault_cfg_init(&c);
    c.loss_pct = 150;
    ck_assert_ptr_null(nic_fault_create(&c));
    nic_fault_cfg_init(&c);
    c.jitter_ns = NIC_FAULT_MAX_TIME_NS + 1;
    ck_assert_ptr_null(nic_fault_create(&c));
    nic_fault_cfg_init(&c);
    c.reorder_gap = 0;
    ck_assert_ptr_null(nic_fault_create(&c));

    nic_fault_cfg_init(&c);
    c.loss_pct = 1;
    struct nic_fault *f = nic_fault_create(&c);
    ck_assert_ptr_nonnull(f);
    struct nic_fault_cfg eff;
    nic_fault_get_cfg(f, &eff);
    ck_assert(eff.seed_set);
    char buf[NIC_FAULT_FMT_LEN];
    nic_fault_cfg_format(&eff, buf, sizeof(buf));
    ck_assert_ptr_nonnull(strstr(buf, "seed "));
    nic_fault_destroy(f);
    nic_fault_destroy(NULL);
}
END_TEST

/* ---- Data path ---- */

START_TEST(passthrough_preserves_order_and_bytes)
{
    struct nic_fault *f = make("seed 1");
    uint8_t in[2000];
    uint32_t next = 0;
    for (uint32_t i = 0; i < 3000; i++) {
        size_t len = make_pkt(in, i, 20 + (i * 37) % 1480);
        nic_fault_push(f, in, len, i);
        if (i % 3 == 2) { /* pop in bursts so the queue holds several */
            size_t n;
            while ((n = nic_fault_pop(f, i, out_buf, sizeof(out_buf)))) {
                uint8_t exp[2000];
                ck_assert_uint_eq(n, make_pkt(exp, next, 20 + (next * 37) % 1480));
                ck_assert_mem_eq(out_buf, exp, n);
                next++;
            }
        }
    }
    ck_assert_uint_eq(next, 3000);
    ck_assert_uint_eq(nic_fault_next_deadline(f), UINT64_MAX);
    struct nic_fault_stats st = stats(f);
    ck_assert_uint_eq(st.packets_in, 3000);
    ck_assert_uint_eq(st.packets_out, 3000);
    ck_assert_uint_eq(st.dropped + st.duplicated + st.reordered + st.corrupted + st.tampered +
                          st.delayed + st.queue_full_drops,
                      0);
    check_conservation(f);
    nic_fault_destroy(f);
}
END_TEST

/* The blackout starts with packet after + 1 and drops everything pushed for
 * its duration, measured from that push; then packets flow again. */
START_TEST(blackout_drops_a_window)
{
    struct nic_fault *f = make("blackout 100us after 10 seed 3");
    uint8_t in[64];
    uint32_t next_out = 0;
    const uint64_t step = 1000; /* 1 us between pushes */
    for (uint32_t i = 0; i < 400; i++) {
        nic_fault_push(f, in, make_pkt(in, i, sizeof(in)), 5000 + i * step);
        size_t n;
        while ((n = nic_fault_pop(f, 5000 + i * step, out_buf, sizeof(out_buf)))) {
            uint32_t id = pkt_id(out_buf);
            /* Packets 0..9 pass, 10..109 (pushed within 100 us of packet 10) are
               dropped, the rest pass, in order. */
            uint32_t want = next_out < 10 ? next_out : next_out + 100;
            ck_assert_uint_eq(id, want);
            next_out++;
        }
    }
    struct nic_fault_stats st = stats(f);
    ck_assert_uint_eq(st.blackout_drops, 100);
    ck_assert_uint_eq(st.packets_out, 300);
    ck_assert_uint_eq(st.dropped, 0);
    check_conservation(f);
    nic_fault_destroy(f);

    /* The window starts at the first packet after `after`, however late. */
    f = make("blackout 1ms after 2 seed 3");
    nic_fault_push(f, in, make_pkt(in, 0, sizeof(in)), 0);
    nic_fault_push(f, in, make_pkt(in, 1, sizeof(in)), 1);
    nic_fault_push(f, in, make_pkt(in, 2, sizeof(in)), UINT64_C(5000000000)); /* starts here */
    nic_fault_push(f, in, make_pkt(in, 3, sizeof(in)), UINT64_C(5000999999));
    nic_fault_push(f, in, make_pkt(in, 4, sizeof(in)), UINT64_C(5001000000)); /* ended */
    ck_assert_uint_eq(stats(f).blackout_drops, 2);
    uint32_t ids[3], k = 0;
    size_t n;
    while ((n = nic_fault_pop(f, UINT64_C(6000000000), out_buf, sizeof(out_buf))) && k < 3)
        ids[k++] = pkt_id(out_buf);
    ck_assert_uint_eq(k, 3);
    ck_assert_uint_eq(ids[0], 0);
    ck_assert_uint_eq(ids[1], 1);
    ck_assert_uint_eq(ids[2], 4);
    check_conservation(f);
    nic_fault_destroy(f);
}
END_TEST

START_TEST(invalid_lengths_counted)
{
    struct nic_fault *f = make("");
    static uint8_t big[NIC_FAULT_MAX_PKT + 1];
    nic_fault_push(f, big, 0, 0);
    nic_fault_push(f, big, sizeof(big), 0);
    nic_fault_push(f, big, NIC_FAULT_MAX_PKT, 0); /* largest legal packet */
    ck_assert_uint_eq(nic_fault_pop(f, 0, out_buf, sizeof(out_buf)), NIC_FAULT_MAX_PKT);
    ck_assert_uint_eq(stats(f).invalid_drops, 2);
    check_conservation(f);
    nic_fault_destroy(f);
}
END_TEST

/* Event-driven run: packet i arrives at i * gap_ns, pops happen at every
 * deadline. Appends each output (len, bytes) to log if given. */
struct out_log {
    uint8_t *data;
    size_t len, cap;
};

static void log_append(struct out_log *l, const void *p, size_t n)
{
    if (l->len + n > l->cap) {
        l->cap = (l->len + n) * 2;
        l->data = realloc(l->data, l->cap);
        ck_assert_ptr_nonnull(l->data);
    }
    memcpy(l->data + l->len, p, n);
    l->len += n;
}

static void run_mixed(uint64_t seed, struct out_log *log, struct nic_fault_stats *st)
{
    char spec[256];
    snprintf(spec, sizeof(spec),
             "loss 2%% duplicate 2%% reorder 5%% gap 3 corrupt 1%% tamper 2%% delay 1ms 500us "
             "rate 100mbit seed %" PRIu64,
             seed);
    struct nic_fault *f = make(spec);
    uint8_t in[1600];
    const uint32_t count = 20000;
    uint64_t now = 0;
    for (uint32_t i = 0; i < count || nic_fault_queued(f);) {
        uint64_t arrive = i < count ? i * 10 * US : UINT64_MAX;
        uint64_t due = nic_fault_next_deadline(f);
        if (arrive <= due) {
            now = arrive;
            nic_fault_push(f, in, make_tcp(in, i, (i % 3) * 4, i % 1400), now);
            i++;
            continue;
        }
        if (due > now)
            now = due;
        size_t n;
        while ((n = nic_fault_pop(f, now, out_buf, sizeof(out_buf)))) {
            uint32_t len32 = (uint32_t)n;
            log_append(log, &len32, sizeof(len32));
            log_append(log, out_buf, n);
        }
    }
    *st = stats(f);
    check_conservation(f);
    nic_fault_destroy(f);
}

START_TEST(same_seed_same_output)
{
    struct out_log a = {0}, b = {0}, c = {0};
    struct nic_fault_stats sa, sb, sc;
    run_mixed(7, &a, &sa);
    run_mixed(7, &b, &sb);
    run_mixed(8, &c, &sc);
    ck_assert_uint_eq(a.len, b.len);
    ck_assert(memcmp(a.data, b.data, a.len) == 0);
    ck_assert(memcmp(&sa, &sb, sizeof(sa)) == 0);
    /* Every fault actually fired. */
    ck_assert(sa.dropped && sa.duplicated && sa.reordered && sa.corrupted && sa.tampered &&
              sa.delayed);
    /* Another seed makes other decisions. */
    ck_assert(a.len != c.len || memcmp(a.data, c.data, a.len) != 0);
    ck_assert(sa.dropped != sc.dropped || sa.duplicated != sc.duplicated ||
              sa.corrupted != sc.corrupted || sa.reordered != sc.reordered);
    free(a.data);
    free(b.data);
    free(c.data);
}
END_TEST

#define RATE_N 200000u

/* Pushes RATE_N small packets at time 0, popping after each, then drains.
 * Returns the number of outputs that differ from their input. */
static unsigned run_rate(struct nic_fault *f, bool tcp)
{
    uint8_t in[128], exp[128];
    unsigned changed = 0;
    for (uint32_t i = 0; i < RATE_N; i++) {
        size_t len = tcp ? make_tcp(in, i, 0, 24) : make_pkt(in, i, 64);
        nic_fault_push(f, in, len, 0);
        for (int k = 0; k < 2; k++) { /* at most one packet plus a copy or release */
            size_t n = nic_fault_pop(f, 0, out_buf, sizeof(out_buf));
            if (!n)
                break;
            uint32_t id = tcp ? (uint32_t)out_buf[24] << 24 | (uint32_t)out_buf[25] << 16 |
                                    (uint32_t)out_buf[26] << 8 | out_buf[27]
                              : pkt_id(out_buf);
            size_t elen = tcp ? make_tcp(exp, id, 0, 24) : make_pkt(exp, id, 64);
            FAST_CHECK(n == elen);
            changed += memcmp(exp, out_buf, n) != 0;
        }
    }
    while (nic_fault_pop(f, UINT64_MAX, out_buf, sizeof(out_buf)))
        ;
    check_conservation(f);
    return changed;
}

static void assert_pct_near(uint64_t count, double pct, double tol)
{
    double got = 100.0 * (double)count / RATE_N;
    ck_assert_msg(got >= pct - tol && got <= pct + tol, "rate %.3f%% not within %.2f of %.2f%%",
                  got, tol, pct);
}

START_TEST(fault_rates_within_tolerance)
{
    struct nic_fault *f = make("loss 2% seed 11");
    ck_assert_uint_eq(run_rate(f, false), 0);
    assert_pct_near(stats(f).dropped, 2, 0.3);
    nic_fault_destroy(f);

    f = make("duplicate 3% seed 12");
    run_rate(f, false);
    assert_pct_near(stats(f).duplicated, 3, 0.3);
    ck_assert_uint_eq(stats(f).packets_out, RATE_N + stats(f).duplicated);
    nic_fault_destroy(f);

    f = make("corrupt 1% seed 13");
    unsigned changed = run_rate(f, false);
    assert_pct_near(stats(f).corrupted, 1, 0.15);
    ck_assert_uint_eq(changed, stats(f).corrupted); /* never a no-op flip */
    nic_fault_destroy(f);

    f = make("reorder 5% gap 3 seed 14");
    run_rate(f, false);
    assert_pct_near(stats(f).reordered, 5, 0.3);
    nic_fault_destroy(f);

    f = make("tamper 2% seed 15");
    changed = run_rate(f, true);
    assert_pct_near(stats(f).tampered, 2, 0.3);
    ck_assert_uint_eq(changed, stats(f).tampered);
    nic_fault_destroy(f);

    f = make("loss 0% duplicate 100% seed 16"); /* 100% is always */
    run_rate(f, false);
    ck_assert_uint_eq(stats(f).duplicated, RATE_N);
    nic_fault_destroy(f);
}
END_TEST

START_TEST(duplicate_copy_follows_original)
{
    struct nic_fault *f = make("duplicate 100% delay 1ms seed 3");
    uint8_t in[100];
    for (uint32_t i = 0; i < 10; i++)
        nic_fault_push(f, in, make_pkt(in, i, 60 + i), i * US);
    ck_assert_uint_eq(nic_fault_queued(f), 10);
    for (uint32_t i = 0; i < 10; i++) {
        for (int copy = 0; copy < 2; copy++) {
            size_t n = nic_fault_pop(f, 2 * MS, out_buf, sizeof(out_buf));
            ck_assert_uint_eq(n, 60 + i);
            ck_assert_uint_eq(pkt_id(out_buf), i);
            if (copy == 0)
                ck_assert_uint_le(nic_fault_next_deadline(f), 2 * MS); /* copy is due */
        }
    }
    ck_assert_uint_eq(nic_fault_pop(f, 2 * MS, out_buf, sizeof(out_buf)), 0);
    ck_assert_uint_eq(stats(f).packets_out, 20);
    check_conservation(f);
    nic_fault_destroy(f);
}
END_TEST

START_TEST(corrupt_flips_exactly_one_bit)
{
    struct nic_fault *f = make("corrupt 100% seed 5");
    uint8_t in[1600];
    unsigned hit_first = 0, hit_last = 0;
    for (uint32_t i = 0; i < 5000; i++) {
        size_t len = make_pkt(in, i, 4 + i % 1500);
        nic_fault_push(f, in, len, 0);
        ck_assert_uint_eq(nic_fault_pop(f, 0, out_buf, sizeof(out_buf)), len);
        size_t bit = 0;
        ck_assert_uint_eq(bits_differ(in, out_buf, len, &bit), 1);
        hit_first += bit / 8 == 0;
        hit_last += bit / 8 == len - 1;
    }
    ck_assert(hit_first && hit_last); /* the whole packet is a target */
    ck_assert_uint_eq(stats(f).corrupted, 5000);
    nic_fault_destroy(f);
}
END_TEST

START_TEST(tamper_keeps_tcp_checksum_valid)
{
    struct nic_fault *f = make("tamper 100% seed 9");
    uint8_t in[1600];
    for (uint32_t i = 0; i < 5000; i++) {
        size_t opt = (i % 11) * 4, payload = 1 + i % 1400;
        size_t len = make_tcp(in, i, opt, payload);
        size_t pay_off = 20 + 20 + opt;
        if (i % 2) { /* link padding beyond the IP total length stays untouched */
            memset(in + len, 0xee, 6);
            len += 6;
        }
        nic_fault_push(f, in, len, 0);
        ck_assert_uint_eq(nic_fault_pop(f, 0, out_buf, sizeof(out_buf)), len);
        ck_assert(ref_tcp_csum_ok(out_buf));
        ck_assert_mem_eq(out_buf, in, 20);                /* IP header */
        ck_assert_mem_eq(out_buf + 20, in + 20, 16);      /* TCP header up to checksum */
        ck_assert_mem_eq(out_buf + 38, in + 38, opt + 2); /* urgent pointer, options */
        ck_assert_uint_eq(bits_differ(in + pay_off, out_buf + pay_off, len - pay_off, NULL), 1);
        size_t bit = 0;
        bits_differ(in + pay_off, out_buf + pay_off, len - pay_off, &bit);
        ck_assert_uint_lt(bit / 8, payload);
    }
    ck_assert_uint_eq(stats(f).tampered, 5000);
    nic_fault_destroy(f);
}
END_TEST

START_TEST(tamper_skips_non_candidates)
{
    struct nic_fault *f = make("tamper 100% seed 10");
    uint8_t pkts[6][128];
    size_t lens[6];
    lens[0] = make_tcp(pkts[0], 1, 0, 0);  /* no payload */
    lens[1] = make_tcp(pkts[1], 2, 8, 0);  /* options only */
    lens[2] = make_tcp(pkts[2], 3, 0, 40); /* UDP */
    pkts[2][9] = 17;
    lens[3] = make_tcp(pkts[3], 4, 0, 40); /* first fragment (MF) */
    pkts[3][6] = 0x20;
    lens[4] = make_tcp(pkts[4], 5, 0, 40); /* total length beyond the buffer */
    lens[4] -= 10;
    lens[5] = make_pkt(pkts[5], 0x60000000, 16); /* IPv6-looking, too short */
    for (int i = 0; i < 6; i++) {
        nic_fault_push(f, pkts[i], lens[i], 0);
        ck_assert_uint_eq(nic_fault_pop(f, 0, out_buf, sizeof(out_buf)), lens[i]);
        ck_assert_mem_eq(out_buf, pkts[i], lens[i]);
    }
    ck_assert_uint_eq(stats(f).tampered, 0);
    nic_fault_destroy(f);
}
END_TEST

/* fmt: a printf format taking the seed (uint64_t). Finds a seed whose first
 * packet is held: pushed at 0, pop(0) yields nothing. */
static struct nic_fault *make_first_held(const char *fmt, uint64_t *seed_out)
{
    uint8_t in[64];
    for (uint64_t seed = 1; seed < 1000; seed++) {
        char spec[128];
        snprintf(spec, sizeof(spec), fmt, seed);
        struct nic_fault *f = make(spec);
        nic_fault_push(f, in, make_pkt(in, 0, 64), 0);
        if (nic_fault_pop(f, 0, out_buf, sizeof(out_buf)) == 0) {
            *seed_out = seed;
            return f;
        }
        nic_fault_destroy(f);
    }
    ck_abort_msg("no seed holds the first packet");
    return NULL;
}

/* Scans seeds for one where packet 0 is held and packets 1..gap are not
 * (each pops right after its push, all at time 0); then packet 0 must come
 * out right after packet gap, and not before. */
static void check_gap(unsigned gap)
{
    uint8_t in[64];
    for (uint64_t seed = 1; seed < 5000; seed++) {
        char spec[128];
        snprintf(spec, sizeof(spec), "reorder 30%% gap %u seed %" PRIu64, gap, seed);
        struct nic_fault *f = make(spec);
        nic_fault_push(f, in, make_pkt(in, 0, 64), 0);
        bool ok = nic_fault_pop(f, 0, out_buf, sizeof(out_buf)) == 0;
        for (uint32_t k = 1; k <= gap && ok; k++) {
            nic_fault_push(f, in, make_pkt(in, k, 64), 0);
            ok = nic_fault_pop(f, 0, out_buf, sizeof(out_buf)) != 0;
            if (ok) /* an early release of packet 0 fails here */
                ck_assert_uint_eq(pkt_id(out_buf), k);
        }
        if (ok) {
            ck_assert_uint_eq(nic_fault_next_deadline(f), 0); /* release due now */
            ck_assert_uint_eq(nic_fault_pop(f, 0, out_buf, sizeof(out_buf)), 64);
            ck_assert_uint_eq(pkt_id(out_buf), 0);
            ck_assert_uint_eq(nic_fault_pop(f, 0, out_buf, sizeof(out_buf)), 0);
            ck_assert_uint_eq(stats(f).reordered, 1);
            check_conservation(f);
            nic_fault_destroy(f);
            return;
        }
        nic_fault_destroy(f);
    }
    ck_abort_msg("no seed gives the hold-then-%u-pass pattern", gap);
}

START_TEST(reorder_releases_after_gap)
{
    check_gap(1);
    check_gap(3);
    check_gap(6);
}
END_TEST

START_TEST(reorder_releases_after_timeout)
{
    uint64_t seed;
    /* No later traffic: released exactly at the default 2 ms timeout. */
    struct nic_fault *f = make_first_held("reorder 50%% seed %" PRIu64, &seed);
    ck_assert_uint_eq(nic_fault_next_deadline(f), 2 * MS);
    ck_assert_uint_eq(nic_fault_pop(f, 2 * MS - 1, out_buf, sizeof(out_buf)), 0);
    ck_assert_uint_eq(nic_fault_pop(f, 2 * MS, out_buf, sizeof(out_buf)), 64);
    ck_assert_uint_eq(pkt_id(out_buf), 0);
    ck_assert_uint_eq(nic_fault_next_deadline(f), UINT64_MAX);
    check_conservation(f);
    nic_fault_destroy(f);

    /* Custom timeout; one later packet, short of the gap, does not release it. */
    uint8_t in[64];
    f = make_first_held("reorder 50%% gap 100 timeout 5ms seed %" PRIu64, &seed);
    nic_fault_push(f, in, make_pkt(in, 1, 64), 1 * MS); /* may be held too */
    while (nic_fault_pop(f, 1 * MS, out_buf, sizeof(out_buf)))
        ck_assert_uint_eq(pkt_id(out_buf), 1);
    ck_assert_uint_eq(nic_fault_pop(f, 5 * MS - 1, out_buf, sizeof(out_buf)), 0);
    ck_assert_uint_eq(nic_fault_pop(f, 5 * MS, out_buf, sizeof(out_buf)), 64);
    ck_assert_uint_eq(pkt_id(out_buf), 0);
    while (nic_fault_pop(f, 6 * MS, out_buf, sizeof(out_buf)))
        ck_assert_uint_eq(pkt_id(out_buf), 1);
    check_conservation(f);
    nic_fault_destroy(f);

    /* Everything held (100%): released by timeout only, in arrival order. */
    f = make("reorder 100% delay 1ms seed 4");
    for (uint32_t i = 0; i < 100; i++)
        nic_fault_push(f, in, make_pkt(in, i, 64), i * US);
    for (uint32_t i = 0; i < 100; i++) {
        uint64_t due = 1 * MS + i * US + 2 * MS;
        ck_assert_uint_le(nic_fault_next_deadline(f), due);
        ck_assert_uint_eq(nic_fault_pop(f, due - 1, out_buf, sizeof(out_buf)), 0);
        ck_assert_uint_eq(nic_fault_pop(f, due, out_buf, sizeof(out_buf)), 64);
        ck_assert_uint_eq(pkt_id(out_buf), i);
    }
    ck_assert_uint_eq(stats(f).reordered, 100);
    check_conservation(f);
    nic_fault_destroy(f);
}
END_TEST

START_TEST(delay_jitter_keeps_order_and_bounds)
{
    const uint64_t delay = 10 * MS, jitter = 5 * MS, spacing = 50 * US;
    const uint32_t count = 5000;
    struct nic_fault *f = make("delay 10ms 5ms seed 21");
    uint8_t in[64];
    uint64_t now = 0, min_lat = UINT64_MAX, max_lat = 0;
    uint32_t next_in = 0, next_out = 0;
    while (next_out < count) {
        uint64_t arrive = next_in < count ? next_in * spacing : UINT64_MAX;
        uint64_t due = nic_fault_next_deadline(f);
        if (arrive <= due) {
            now = arrive;
            nic_fault_push(f, in, make_pkt(in, next_in++, 64), now);
            continue;
        }
        ck_assert_uint_ge(due, now); /* nothing was left due at now */
        if (due > now)
            ck_assert_uint_eq(nic_fault_pop(f, due - 1, out_buf, sizeof(out_buf)), 0);
        now = due;
        ck_assert_uint_eq(nic_fault_pop(f, now, out_buf, sizeof(out_buf)), 64);
        uint32_t id = pkt_id(out_buf);
        ck_assert_uint_eq(id, next_out++); /* jitter never reorders */
        uint64_t lat = now - id * spacing;
        ck_assert_uint_ge(lat, delay - jitter);
        ck_assert_uint_le(lat, delay + jitter);
        min_lat = lat < min_lat ? lat : min_lat;
        max_lat = lat > max_lat ? lat : max_lat;
    }
    ck_assert_uint_gt(max_lat - min_lat, jitter); /* jitter really varies */
    ck_assert_uint_eq(stats(f).delayed, count);
    check_conservation(f);
    nic_fault_destroy(f);

    /* Jitter larger than delay clamps at arrival, never earlier. */
    f = make("delay 1ms 5ms seed 22");
    for (uint32_t i = 0; i < 1000; i++) {
        uint64_t t = 100 * MS + i * 10 * MS; /* spaced beyond any jitter */
        nic_fault_push(f, in, make_pkt(in, i, 64), t);
        uint64_t due = nic_fault_next_deadline(f);
        ck_assert_uint_ge(due, t);
        ck_assert_uint_le(due, t + 6 * MS);
        ck_assert_uint_eq(nic_fault_pop(f, due, out_buf, sizeof(out_buf)), 64);
    }
    check_conservation(f);
    nic_fault_destroy(f);
}
END_TEST

START_TEST(rate_spacing)
{
    uint8_t in[2000];
    /* 1250 bytes at 1 Mbit/s = 10 ms each, back to back from t = 0. */
    struct nic_fault *f = make("rate 1mbit seed 1");
    for (uint32_t i = 0; i < 10; i++)
        nic_fault_push(f, in, make_pkt(in, i, 1250), 0);
    for (uint32_t i = 0; i < 10; i++) {
        uint64_t due = (i + 1) * 10 * MS;
        ck_assert_uint_eq(nic_fault_next_deadline(f), due);
        ck_assert_uint_eq(nic_fault_pop(f, due - 1, out_buf, sizeof(out_buf)), 0);
        ck_assert_uint_eq(nic_fault_pop(f, due, out_buf, sizeof(out_buf)), 1250);
        ck_assert_uint_eq(pkt_id(out_buf), i);
    }
    /* An idle wire starts serialising at arrival again. */
    nic_fault_push(f, in, make_pkt(in, 10, 1250), 500 * MS);
    ck_assert_uint_eq(nic_fault_next_deadline(f), 510 * MS);
    nic_fault_destroy(f);

    /* Fractional ns per packet: no drift over many packets. */
    f = make("rate 3mbit seed 1");
    for (uint64_t k = 1; k <= 3000; k++) {
        nic_fault_push(f, in, make_pkt(in, (uint32_t)k, 1000), 0);
        uint64_t due = k * 8000 * 1000000000ull / 3000000; /* floor(k * 8000 bit / 3 Mbit/s) */
        ck_assert_uint_eq(nic_fault_next_deadline(f), due);
        ck_assert_uint_eq(nic_fault_pop(f, due, out_buf, sizeof(out_buf)), 1000);
    }
    nic_fault_destroy(f);

    /* Delay plus rate: serialisation starts after the delay. */
    f = make("delay 5ms rate 8mbps seed 1"); /* 8 MB/s: 1000 bytes = 125 us */
    for (uint32_t i = 0; i < 4; i++)
        nic_fault_push(f, in, make_pkt(in, i, 1000), 0);
    for (uint32_t i = 0; i < 4; i++) {
        uint64_t due = 5 * MS + (i + 1) * 125 * US;
        ck_assert_uint_eq(nic_fault_next_deadline(f), due);
        ck_assert_uint_eq(nic_fault_pop(f, due - 1, out_buf, sizeof(out_buf)), 0);
        ck_assert_uint_eq(nic_fault_pop(f, due, out_buf, sizeof(out_buf)), 1000);
    }
    ck_assert_uint_eq(stats(f).delayed, 4);
    check_conservation(f);
    nic_fault_destroy(f);
}
END_TEST

START_TEST(queue_full_counted)
{
    struct nic_fault *f = make("delay 1s duplicate 50% seed 2");
    uint8_t in[64];
    const uint32_t extra = 100;
    for (uint32_t i = 0; i < NIC_FAULT_QUEUE_CAP + extra; i++)
        nic_fault_push(f, in, make_pkt(in, i, 64), 0);
    struct nic_fault_stats st = stats(f);
    ck_assert_uint_eq(st.queue_full_drops, extra);
    ck_assert_uint_eq(nic_fault_queued(f), NIC_FAULT_QUEUE_CAP);
    ck_assert_uint_eq(nic_fault_pop(f, 1000 * MS - 1, out_buf, sizeof(out_buf)), 0);
    uint32_t expect = 0;
    size_t n;
    while ((n = nic_fault_pop(f, 1000 * MS, out_buf, sizeof(out_buf)))) {
        uint32_t id = pkt_id(out_buf);
        ck_assert(id == expect || id == expect + 1); /* original, or its copy */
        expect = id;
    }
    ck_assert_uint_eq(expect, NIC_FAULT_QUEUE_CAP - 1);
    check_conservation(f);
    /* Room again after draining. */
    nic_fault_push(f, in, make_pkt(in, 1, 64), 2000 * MS);
    ck_assert_uint_eq(nic_fault_queued(f), 1);
    nic_fault_destroy(f); /* frees the queued packet */
}
END_TEST

START_TEST(destroy_frees_queued_packets)
{
    /* Held, delayed, large and small packets, plus an owed duplicate copy. */
    struct nic_fault *f = make("reorder 50% duplicate 50% delay 1ms seed 6");
    static uint8_t in[NIC_FAULT_MAX_PKT];
    for (uint32_t i = 0; i < 200; i++)
        nic_fault_push(f, in, make_pkt(in, i, i % 2 ? 64 : 9000), i * US);
    nic_fault_pop(f, 1 * MS + 50 * US, out_buf, sizeof(out_buf));
    nic_fault_destroy(f); /* ASan reports any leak */
}
END_TEST

static Suite *fault_suite(void)
{
    Suite *s = suite_create("nic_fault");
    TCase *parse = tcase_create("parse");
    tcase_add_test(parse, parse_full_example);
    tcase_add_test(parse, parse_units);
    tcase_add_test(parse, parse_percent_forms_and_misc);
    tcase_add_test(parse, parse_errors);
    tcase_add_test(parse, format_roundtrip);
    tcase_add_test(parse, format_longest_fits);
    tcase_add_test(parse, parse_blackout);
    tcase_add_test(parse, create_rejects_bad_cfg_and_chooses_seed);
    suite_add_tcase(s, parse);

    TCase *path = tcase_create("datapath");
    tcase_set_timeout(path, 30); /* sanitizer builds are slower */
    tcase_add_test(path, passthrough_preserves_order_and_bytes);
    tcase_add_test(path, invalid_lengths_counted);
    tcase_add_test(path, blackout_drops_a_window);
    tcase_add_test(path, same_seed_same_output);
    tcase_add_test(path, fault_rates_within_tolerance);
    tcase_add_test(path, duplicate_copy_follows_original);
    tcase_add_test(path, corrupt_flips_exactly_one_bit);
    tcase_add_test(path, tamper_keeps_tcp_checksum_valid);
    tcase_add_test(path, tamper_skips_non_candidates);
    tcase_add_test(path, reorder_releases_after_gap);
    tcase_add_test(path, reorder_releases_after_timeout);
    tcase_add_test(path, delay_jitter_keeps_order_and_bounds);
    tcase_add_test(path, rate_spacing);
    tcase_add_test(path, queue_full_counted);
    tcase_add_test(path, destroy_frees_queued_packets);
    suite_add_tcase(s, path);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fault_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
