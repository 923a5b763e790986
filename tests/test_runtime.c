/* test_runtime.c - Check suite for apps/app_runtime.c's wiring that needs no
 * namespace: the one seed (app_runtime_seed_faults, nic_fault_seed_parse)
 * and the offload operations table tls/ is given (app_tls_offload_ops),
 * driven against a real driver and NIC over a socketpair. No root. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lwip/tcpip.h>

#include "app_runtime.h"
#include "nic_fault.h"
#include "stack_driver.h"
#include "stack_tls_offload.h"
#include "test_lwip.h"
#include "test_util.h"

/* ---- the one seed ---- */

static struct app_runtime_cfg seeded(uint64_t seed, const char *tx, const char *rx)
{
    struct app_runtime_cfg c;
    app_runtime_cfg_defaults(&c);
    c.seed = seed;
    c.seed_set = true;
    char err[160];
    ck_assert_msg(nic_fault_cfg_parse(&c.fault_tx, tx, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(nic_fault_cfg_parse(&c.fault_rx, rx, err, sizeof(err)) == 0, "%s", err);
    return c;
}

START_TEST(seed_gives_tx_s_rx_s_plus_1)
{
    struct app_runtime_cfg c = seeded(7, "loss 1%", "");
    app_runtime_seed_faults(&c);
    ck_assert(c.fault_tx.seed_set && c.fault_rx.seed_set);
    ck_assert_uint_eq(c.fault_tx.seed, 7);
    ck_assert_uint_eq(c.fault_rx.seed, 8);
    ck_assert_uint_eq(c.seed, 7);
    ck_assert_double_eq(c.fault_tx.loss_pct, 1); /* the spec itself is kept */
    /* Modulo 2^64. */
    c = seeded(UINT64_MAX, "", "");
    app_runtime_seed_faults(&c);
    ck_assert_uint_eq(c.fault_tx.seed, UINT64_MAX);
    ck_assert_uint_eq(c.fault_rx.seed, 0);
}
END_TEST

START_TEST(spec_seed_wins)
{
    struct app_runtime_cfg c = seeded(7, "loss 1% seed 99", "");
    app_runtime_seed_faults(&c);
    ck_assert_uint_eq(c.fault_tx.seed, 99);
    ck_assert_uint_eq(c.fault_rx.seed, 8);
    c = seeded(7, "", "reorder 5% seed 0");
    app_runtime_seed_faults(&c);
    ck_assert_uint_eq(c.fault_tx.seed, 7);
    ck_assert_uint_eq(c.fault_rx.seed, 0);
}
END_TEST

START_TEST(unset_seed_is_chosen_once)
{
    struct app_runtime_cfg c;
    app_runtime_cfg_defaults(&c);
    ck_assert(!c.seed_set && !c.fault_tx.seed_set && !c.fault_rx.seed_set);
    app_runtime_seed_faults(&c);
    ck_assert(c.seed_set);
    ck_assert_uint_le(c.seed, UINT32_MAX); /* short enough to retype */
    ck_assert_uint_eq(c.fault_tx.seed, c.seed);
    ck_assert_uint_eq(c.fault_rx.seed, c.seed + 1);
    struct app_runtime_cfg again = c;
    app_runtime_seed_faults(&again); /* idempotent: nothing is drawn twice */
    ck_assert_uint_eq(again.seed, c.seed);
    ck_assert_uint_eq(again.fault_tx.seed, c.fault_tx.seed);
    ck_assert_uint_eq(again.fault_rx.seed, c.fault_rx.seed);
}
END_TEST

START_TEST(seed_strings)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0},
        {"7", 7},
        {"010", 10}, /* decimal, never octal */
        {"0x10", 16},
        {"0XfF", 255},
        {"18446744073709551615", UINT64_MAX},
        {"0xffffffffffffffff", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t v = 1;
        char err[160] = "";
        ck_assert_msg(nic_fault_seed_parse(good[i].s, &v, err, sizeof(err)) == 0, "'%s': %s",
                      good[i].s, err);
        ck_assert_uint_eq(v, good[i].v);
    }
    static const char *const bad[] = {"",
                                      "-1",
                                      "+1",
                                      " 1",
                                      "1 ",
                                      "12abc",
                                      "1.5",
                                      "0x",
                                      "0xg",
                                      "0x-1",
                                      "abc",
                                      "18446744073709551616",
                                      "0x10000000000000000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 42;
        char err[160] = "";
        ck_assert_msg(nic_fault_seed_parse(bad[i], &v, err, sizeof(err)) == -1, "'%s' accepted",
                      bad[i]);
        ck_assert_uint_eq(v, 42); /* untouched */
        char quoted[64];
        snprintf(quoted, sizeof(quoted), "'%s'", bad[i]);
        ck_assert_msg(strstr(err, quoted) && strstr(err, "seed"), "'%s': message '%s'", bad[i],
                      err);
    }
    /* The spec's "seed S" takes the same strings. */
    struct nic_fault_cfg c;
    char err[160];
    ck_assert_int_eq(nic_fault_cfg_parse(&c, "seed 0x10", err, sizeof(err)), 0);
    ck_assert_uint_eq(c.seed, 16);
    ck_assert_int_eq(nic_fault_cfg_parse(&c, "seed 0x", err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "'0x'"));
    /* A NULL or zero-length err buffer is allowed. */
    uint64_t v = 0;
    ck_assert_int_eq(nic_fault_seed_parse("x", &v, NULL, 0), -1);
}
END_TEST

/* ---- the offload operations table ---- */

/* Every entry is the driver's function of that name (a swapped pair, e.g.
   confirm and deny, would still type-check). */
START_TEST(ops_table_is_the_driver)
{
    const struct tls_offload_ops *o = &app_tls_offload_ops;
    ck_assert(o->tx_add == stack_tls_tx_add);
    ck_assert(o->tx_del == stack_tls_tx_del);
    ck_assert(o->rx_add == stack_tls_rx_add);
    ck_assert(o->rx_del == stack_tls_rx_del);
    ck_assert(o->rx_resync_confirm == stack_tls_rx_resync_confirm);
    ck_assert(o->rx_resync_deny == stack_tls_rx_resync_deny);
    ck_assert(o->rx_hint == stack_tls_rx_hint);
}
END_TEST

static bool no_record(void *host_flow, uint32_t seq, bool bytes, struct stack_tls_record *out)
{
    (void)host_flow, (void)seq, (void)bytes, (void)out;
    return false;
}

static uint32_t frame_end(void *host_flow)
{
    (void)host_flow;
    return 0;
}

static void tag_report(void *host_flow, uint64_t record_sn, const uint8_t *tag)
{
    (void)host_flow, (void)record_sn, (void)tag;
}

static void install_done(void *host_flow, bool ok)
{
    (void)host_flow, (void)ok;
}

static void resync_request(void *host_flow, uint32_t seq)
{
    (void)host_flow, (void)seq;
}

static const struct stack_tls_host_ops host_ops = {no_record, frame_end, tag_report, install_done,
                                                   resync_request};

/* Through the table, adds reach the driver with their policy and post the
   installs; the RX answers are posted. */
START_TEST(ops_table_reaches_the_device)
{
    tu_lwip_start_once();
    int wire = -1;
    struct nic_dev_cfg cfg = {.tx_ring_size = 64, .rx_ring_size = 64, .mtu = 1500, .max_flows = 4};
    struct nic_dev *dev = tu_dev_create(&cfg, &wire);
    LOCK_TCPIP_CORE();
    struct stack_driver *drv = stack_driver_create(dev, 1500);
    ck_assert_ptr_nonnull(drv);
    struct stack_tls_offload *o = stack_tls_offload_new(drv, 4);
    ck_assert_ptr_nonnull(o);
    static const uint8_t key[16] = {1, 2, 3};
    struct stack_tls_params p = {.saddr = 0x0100000a,
                                 .daddr = 0x0200000a,
                                 .sport = 0xbb01,
                                 .dport = 0x409c,
                                 .start_seq = 1000,
                                 .key = key,
                                 .key_len = sizeof(key),
                                 .policy = STACK_TLS_TX_RESYNC_TAGCACHE,
                                 .rx_wnd_right_edge = 1000 + 65535};
    const struct tls_offload_ops *ops = &app_tls_offload_ops;
    struct stack_tls_flow *tx = ops->tx_add(o, &p, &host_ops, NULL);
    ck_assert_ptr_nonnull(tx);
    ck_assert_uint_eq(
        stack_tls_offload_tx_counters(o, STACK_TLS_TX_RESYNC_TAGCACHE)->tx_tls_ctx_installed, 1);
    ck_assert_uint_eq(
        stack_tls_offload_tx_counters(o, STACK_TLS_TX_RESYNC_DUMP)->tx_tls_ctx_installed, 0);
    struct stack_tls_flow *rx = ops->rx_add(o, &p, &host_ops, NULL);
    ck_assert_ptr_nonnull(rx);
    ck_assert_uint_eq(stack_tls_offload_rx_counters(o)->rx_tls_ctx_installed, 1);
    ck_assert_int_eq(ops->rx_resync_confirm(o, rx, 2000, 1), 0);
    ck_assert_int_eq(ops->rx_resync_deny(o, rx, 3000), 0);
    ck_assert_int_eq(ops->rx_hint(o, rx, 4000, 2), 0);
    ops->tx_del(o, tx);
    ops->rx_del(o, rx);
    stack_tls_offload_free(o);
    stack_driver_destroy(drv);
    UNLOCK_TCPIP_CORE();
    nic_dev_destroy(dev);
    close(wire);
}
END_TEST

static Suite *runtime_suite(void)
{
    Suite *s = suite_create("app_runtime");
    TCase *tc = tcase_create("seed");
    tcase_add_test(tc, seed_gives_tx_s_rx_s_plus_1);
    tcase_add_test(tc, spec_seed_wins);
    tcase_add_test(tc, unset_seed_is_chosen_once);
    tcase_add_test(tc, seed_strings);
    suite_add_tcase(s, tc);
    tc = tcase_create("offload_ops");
    tcase_add_test(tc, ops_table_is_the_driver);
    tcase_add_test(tc, ops_table_reaches_the_device);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(runtime_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
