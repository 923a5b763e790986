/*
 * Check suite for the counter registry of apps/app_stats.c: every counter of
 * every layer's list (the X-macros next to the counter structs) is a /stats
 * counter in its section, nothing else is, values come from the right
 * struct, and looking up a name that is no counter is an error (a typo never
 * reads as 0). Uses a NIC device on a socketpair, the driver and both
 * halves of the TLS offload; no root.
 */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lwip/tcpip.h>

#include "app_http.h"
#include "app_runtime.h" /* app_tls_offload_ops */
#include "app_server.h"
#include "app_stats.h"
#include "stack_mem.h"
#include "stack_rto.h"
#include "nic_dev.h"
#include "stack_driver.h"
#include "stack_tls_offload.h"
#include "test_lwip.h"
#include "test_util.h"
#include "tls_offload.h"
#include "tls_server.h"
#include "tls_slots.h"

static struct {
    int wire;
    struct nic_dev *dev;
    struct stack_driver *drv;
    struct stack_tls_offload *nic_offload;
    struct tls_offload *offload;
    struct app_stats_src src;
} S;

static void setup(void)
{
    tu_lwip_start_once();
    struct nic_dev_cfg cfg = {.tx_ring_size = 64, .rx_ring_size = 64, .mtu = 1500, .max_flows = 4};
    S.dev = tu_dev_create(&cfg, &S.wire);
    LOCK_TCPIP_CORE();
    S.drv = stack_driver_create(S.dev, 1500);
    ck_assert_ptr_nonnull(S.drv);
    S.nic_offload = stack_tls_offload_new(S.drv, 4);
    ck_assert_ptr_nonnull(S.nic_offload);
    S.offload = tls_offload_new(&app_tls_offload_ops, S.nic_offload);
    ck_assert_ptr_nonnull(S.offload);
    S.src = (struct app_stats_src){
        .dev = S.dev, .drv = S.drv, .offload = S.offload, .nic_offload = S.nic_offload};
}

static void teardown(void)
{
    tls_offload_free(S.offload);
    stack_tls_offload_free(S.nic_offload);
    stack_driver_destroy(S.drv);
    UNLOCK_TCPIP_CORE();
    nic_dev_destroy(S.dev);
    close(S.wire);
}

#define ONE(name)   +1
#define COUNT(LIST) (0 LIST(ONE))

/* Every counter of every list is known in each section that shows it, and
   the registry holds exactly those. */
START_TEST(lists_are_the_registry)
{
#define KNOWN(name) ck_assert_msg(app_stats_known(sec, #name), "%s.%s unknown", sec, #name);
    const char *sec;
    sec = "nic";
    NIC_COUNTERS_NIC(KNOWN)
    sec = "nic_tls";
    NIC_COUNTERS_TLS(KNOWN)
    sec = "wire";
    NIC_COUNTERS_WIRE(KNOWN)
    const char *faults[] = {"fault_tx", "fault_rx"};
    for (int i = 0; i < 2; i++) {
        sec = faults[i];
        NIC_FAULT_COUNTERS(KNOWN)
    }
    sec = "driver";
    STACK_DRIVER_COUNTERS(KNOWN)
    sec = "tcp";
    STACK_RTO_COUNTERS(KNOWN)
    const char *modes[] = {"tls_mbedtls", "tls_sw", "tls_nic", "tls_nic_tagcache"};
    for (int i = 0; i < 4; i++) {
        sec = modes[i];
        TLS_COUNTERS(KNOWN)
    }
    const char *policies[] = {"offload_dump", "offload_tagcache"};
    for (int i = 0; i < 2; i++) {
        sec = policies[i];
        STACK_TLS_TX_COUNTERS(KNOWN)
        TLS_OFFLOAD_TX_COUNTERS(KNOWN)
    }
    sec = "offload_rx";
    STACK_TLS_RX_COUNTERS(KNOWN)
    TLS_OFFLOAD_RX_COUNTERS(KNOWN)
    sec = "http";
    APP_HTTP_COUNTERS(KNOWN)
    sec = "server";
    APP_SERVER_COUNTERS(KNOWN)
    sec = "mem";
    STACK_MEM_COUNTERS(KNOWN)
    sec = "send_slots";
    TLS_SLOTS_COUNTERS(KNOWN)
#undef KNOWN
    size_t want = COUNT(NIC_COUNTERS_NIC) + COUNT(NIC_COUNTERS_TLS) + COUNT(NIC_COUNTERS_WIRE) +
                  2 * COUNT(NIC_FAULT_COUNTERS) + COUNT(STACK_DRIVER_COUNTERS) +
                  COUNT(STACK_RTO_COUNTERS) + 4 * COUNT(TLS_COUNTERS) +
                  2 * (COUNT(STACK_TLS_TX_COUNTERS) + COUNT(TLS_OFFLOAD_TX_COUNTERS)) +
                  COUNT(STACK_TLS_RX_COUNTERS) + COUNT(TLS_OFFLOAD_RX_COUNTERS) +
                  COUNT(APP_HTTP_COUNTERS) + COUNT(APP_SERVER_COUNTERS) +
                  COUNT(STACK_MEM_COUNTERS) + COUNT(TLS_SLOTS_COUNTERS);
    ck_assert_uint_eq(app_stats_count(), want);
    ck_assert_uint_le(app_stats_count(), APP_STATS_MAX);
    /* a name of one section is not a counter of another */
    ck_assert(!app_stats_known("nic", "tx_tls_ctx_fail"));
    ck_assert(!app_stats_known("offload", "tx_tls_ctx_fail"));
}
END_TEST

/* Collected: the sections whose sources exist, every entry a known counter,
   values from the right struct (one offload policy counts, the other not). */
START_TEST(collect_reads_the_structs)
{
    ck_assert_ptr_null(tls_tx_offload_start(S.offload, TLS_TX_RESYNC_TAGCACHE, NULL, NULL, 20, NULL,
                                            0, 0)); /* bad key length: counted */
    struct app_stat st[APP_STATS_MAX];
    size_t n = app_stats_collect(&S.src, st);
    size_t want = app_stats_count() - 4 * COUNT(TLS_COUNTERS) - COUNT(APP_SERVER_COUNTERS) -
                  COUNT(TLS_SLOTS_COUNTERS);
    ck_assert_uint_eq(n, want); /* no TLS server, no HTTP server (so no send slots) */
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(app_stats_known(st[i].section, st[i].name), "%s.%s", st[i].section,
                      st[i].name);
    ck_assert_uint_eq(app_stats_get(st, n, "offload_tagcache", "tx_tls_ctx_fail"), 1);
    ck_assert_uint_eq(app_stats_get(st, n, "offload_dump", "tx_tls_ctx_fail"), 0);
    uint64_t v = 99;
    ck_assert_int_eq(app_stats_lookup(st, n, "offload_tagcache", "tx_tls_ctx_fail", &v), 1);
    ck_assert_uint_eq(v, 1);
    /* known, but this run has no TLS server: absent, 0 */
    v = 99;
    ck_assert_int_eq(app_stats_lookup(st, n, "tls_nic", "handshakes_ok", &v), 0);
    ck_assert_uint_eq(v, 0);
    char js[16384];
    size_t len = app_stats_json(&S.src, js, sizeof(js));
    ck_assert_uint_gt(len, 0);
    ck_assert_ptr_nonnull(strstr(js, "\"offload_tagcache\": {\"tx_tls_ctx_installed\": 0, "));
    ck_assert_ptr_nonnull(strstr(js, "\"tx_tls_ctx_fail\": 1"));
    ck_assert_ptr_null(strstr(js, "\"server\""));
}
END_TEST

/* A typo is an error: lookup says so, app_stats_get aborts. */
START_TEST(typo_lookup_fails)
{
    struct app_stat st[APP_STATS_MAX];
    size_t n = app_stats_collect(&S.src, st);
    uint64_t v = 7;
    ck_assert(!app_stats_known("offload_rx", "TlsRxDeviceResyn"));
    ck_assert_int_eq(app_stats_lookup(st, n, "offload_rx", "TlsRxDeviceResyn", &v), -1);
    ck_assert_int_eq(app_stats_lookup(st, n, "ofload_rx", "TlsRxDeviceResync", &v), -1);
    ck_assert_uint_eq(v, 7); /* untouched */
}
END_TEST

START_TEST(typo_get_aborts)
{
    struct app_stat st[APP_STATS_MAX];
    size_t n = app_stats_collect(&S.src, st);
    app_stats_get(st, n, "fault_rx", "reorderd"); /* aborts */
}
END_TEST

static Suite *stats_suite(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("registry");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, lists_are_the_registry);
    tcase_add_test(tc, collect_reads_the_structs);
    tcase_add_test(tc, typo_lookup_fails);
    tcase_add_test_raise_signal(tc, typo_get_aborts, SIGABRT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(stats_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
