/* app_stats.c - counter collection and formatting. */
#include "app_stats.h"
#include "app_http.h"
#include "app_server.h"
#include "nic_dev.h"
#include "stack_driver.h"
#include "tls_offload.h"
#include "tls_server.h"

#include <string.h>

#define ADD(sec, field_struct, field)                                                              \
    do {                                                                                           \
        if (n < APP_STATS_MAX)                                                                     \
            out[n++] = (struct app_stat){(sec), #field, (field_struct).field};                     \
    } while (0)

size_t app_stats_collect(const struct app_stats_src *src, struct app_stat *out)
{
    size_t n = 0;
    struct nic_counters nc;
    nic_dev_get_counters(src->dev, &nc);
    ADD("nic", nc, tx_desc);
    ADD("nic", nc, tx_bad_desc);
    ADD("nic", nc, tx_tso_segments);
    ADD("nic", nc, tx_tso_packets);
    ADD("nic", nc, rx_lro_merged);
    ADD("nic", nc, rx_lro_packets);
    ADD("nic", nc, rx_lro_no_room);
    ADD("nic", nc, tx_ring_empty_polls);
    ADD("nic", nc, rx_packets);
    ADD("nic", nc, rx_bytes);
    ADD("nic", nc, rx_no_buffer);
    ADD("nic", nc, rx_buf_too_small);
    ADD("nic", nc, rx_csum_bad);
    ADD("nic", nc, rx_malformed);
    ADD("nic", nc, tx_cq_overflow);
    ADD("nic", nc, rx_cq_overflow);
    ADD("nic", nc, tx_cq_backpressure);
    ADD("nic", nc, doorbells);
    ADD("nic", nc, irqs);
    ADD("nic", nc, engine_sleeps);
    ADD("nic", nc, flow_table_full);
    ADD("nic_tls", nc, tx_tls_encrypted_packets);
    ADD("nic_tls", nc, tx_tls_encrypted_bytes);
    ADD("nic_tls", nc, tx_tls_ooo);
    ADD("nic_tls", nc, tx_tls_dump_packets);
    ADD("nic_tls", nc, tx_tls_dump_bytes);
    ADD("nic_tls", nc, tx_tls_resync_bytes);
    ADD("nic_tls", nc, tx_tls_ctx);
    ADD("nic_tls", nc, tx_tls_del);
    ADD("nic_tls", nc, tx_tls_oneshot);
    ADD("nic_tls", nc, tx_tls_tag_reports);
    ADD("nic_tls", nc, tx_tls_seq_mismatch);
    ADD("nic_tls", nc, tx_tls_bad_record);
    ADD("nic_tls", nc, tx_tls_no_ctx);
    ADD("nic_tls", nc, rx_tls_decrypted_packets);
    ADD("nic_tls", nc, rx_tls_decrypted_bytes);
    ADD("nic_tls", nc, rx_tls_resync_req_pkt);
    ADD("nic_tls", nc, rx_tls_resync_req_start);
    ADD("nic_tls", nc, rx_tls_resync_req_end);
    ADD("nic_tls", nc, rx_tls_resync_req_skip);
    ADD("nic_tls", nc, rx_tls_resync_res_ok);
    ADD("nic_tls", nc, rx_tls_resync_res_skip);
    ADD("nic_tls", nc, rx_tls_err);
    ADD("nic_tls", nc, rx_tls_ctx);
    ADD("nic_tls", nc, rx_tls_del);
    ADD("nic_tls", nc, rx_tls_lost);
    ADD("nic_tls", nc, rx_tls_jump);
    ADD("nic_tls", nc, rx_tls_bad_record);
    ADD("nic_tls", nc, rx_tls_reorder_buffered);
    ADD("nic_tls", nc, rx_tls_reorder_drained);
    ADD("nic_tls", nc, rx_tls_reorder_dup);
    ADD("nic_tls", nc, rx_tls_ahead_decrypted);
    ADD("nic_tls", nc, rx_tls_skip_syn);
    ADD("nic_tls", nc, rx_tls_skip_rst);
    ADD("nic_tls", nc, rx_tls_skip_frag);
    ADD("nic_tls", nc, rx_tls_skip_oow);
    ADD("wire", nc, tx_packets);
    ADD("wire", nc, tx_bytes);
    ADD("wire", nc, tun_write_errors);
    ADD("wire", nc, rx_wire_packets);
    ADD("wire", nc, rx_wire_bytes);
    ADD("wire", nc, tun_read_errors);
    ADD("wire", nc, tun_gso_writes);
    ADD("wire", nc, tun_gso_write_packets);
    ADD("wire", nc, tun_gso_reads);
    ADD("wire", nc, tun_gso_read_packets);
    ADD("wire", nc, tun_gso_bad);

    struct nic_fault_stats ft, fr;
    nic_dev_get_fault_stats(src->dev, &ft, &fr);
    const struct nic_fault_stats *fs[2] = {&ft, &fr};
    const char *fsec[2] = {"fault_tx", "fault_rx"};
    for (int i = 0; i < 2; i++) {
        ADD(fsec[i], *fs[i], packets_in);
        ADD(fsec[i], *fs[i], packets_out);
        ADD(fsec[i], *fs[i], bytes_out);
        ADD(fsec[i], *fs[i], dropped);
        ADD(fsec[i], *fs[i], duplicated);
        ADD(fsec[i], *fs[i], reordered);
        ADD(fsec[i], *fs[i], corrupted);
        ADD(fsec[i], *fs[i], tampered);
        ADD(fsec[i], *fs[i], delayed);
        ADD(fsec[i], *fs[i], queue_full_drops);
        ADD(fsec[i], *fs[i], invalid_drops);
        ADD(fsec[i], *fs[i], nomem_drops);
    }

    if (src->drv) {
        struct stack_driver_counters dc;
        stack_driver_get_counters(src->drv, &dc);
        ADD("driver", dc, tx_packets);
        ADD("driver", dc, tx_bytes);
        ADD("driver", dc, tx_copied);
        ADD("driver", dc, tx_ring_full);
        ADD("driver", dc, tx_err_status);
        ADD("driver", dc, tx_completions);
        ADD("driver", dc, rx_packets);
        ADD("driver", dc, rx_bytes);
        ADD("driver", dc, rx_input_drops);
        ADD("driver", dc, rx_csum_ok);
        ADD("driver", dc, rx_decrypted_packets);
        ADD("driver", dc, rx_resync_requests);
        ADD("driver", dc, rx_pool_exhausted);
        ADD("driver", dc, rx_bufs_allocated);
        ADD("driver", dc, polls);
    }

    static const char *const tls_sec[TLS_MODE_COUNT] = {[TLS_MODE_MBEDTLS] = "tls_mbedtls",
                                                        [TLS_MODE_SW] = "tls_sw",
                                                        [TLS_MODE_NIC] = "tls_nic",
                                                        [TLS_MODE_NIC_TAGCACHE] =
                                                            "tls_nic_tagcache"};
    for (int m = TLS_MODE_MBEDTLS; src->tls && m < TLS_MODE_COUNT; m++) {
        const struct tls_counters *tc = tls_server_counters(src->tls, (enum tls_mode)m);
        const char *sec = tls_sec[m];
        ADD(sec, *tc, handshakes_ok);
        ADD(sec, *tc, handshakes_failed);
        ADD(sec, *tc, conns_closed);
        ADD(sec, *tc, tx_records);
        ADD(sec, *tc, tx_bytes_plaintext);
        ADD(sec, *tc, rx_records);
        ADD(sec, *tc, rx_bytes_plaintext);
        ADD(sec, *tc, rx_records_full_offload);
        ADD(sec, *tc, rx_records_partial_offload);
        ADD(sec, *tc, rx_records_no_offload);
        ADD(sec, *tc, rx_tls_view_mismatch);
        ADD(sec, *tc, TlsDecryptError);
        ADD(sec, *tc, alerts_sent);
        ADD(sec, *tc, alerts_received);
        ADD(sec, *tc, close_notify_rx);
        ADD(sec, *tc, rx_malformed);
        ADD(sec, *tc, offload_fallback_sw);
    }
    static const char *const ofl_sec[TLS_TX_RESYNC_COUNT] = {
        [TLS_TX_RESYNC_DUMP] = "offload_dump", [TLS_TX_RESYNC_TAGCACHE] = "offload_tagcache"};
    for (int pol = 0; src->offload && pol < TLS_TX_RESYNC_COUNT; pol++) {
        const struct tls_offload_counters *oc =
            tls_offload_counters(src->offload, (enum tls_tx_resync)pol);
        const char *osec = ofl_sec[pol];
        ADD(osec, *oc, tx_tls_ctx_installed);
        ADD(osec, *oc, tx_tls_ctx_fail);
        ADD(osec, *oc, tx_tls_ctx_install_failed);
        ADD(osec, *oc, tx_tls_ctx_deleted);
        ADD(osec, *oc, tx_tls_ctx_del_deferred);
        ADD(osec, *oc, tx_tls_ctx_del_pending);
        ADD(osec, *oc, tx_tls_sw_fallback_packets);
        ADD(osec, *oc, tx_tls_sw_fallback_bytes);
        ADD(osec, *oc, tx_tls_sw_fallback_nomem);
        ADD(osec, *oc, tx_tls_ooo);
        ADD(osec, *oc, tx_tls_skip_no_sync_data);
        ADD(osec, *oc, tx_tls_drop_no_sync_data);
        ADD(osec, *oc, tx_tls_resync_dump);
        ADD(osec, *oc, tx_tls_resync_tagcache);
        ADD(osec, *oc, tx_tls_tagcache_miss);
        ADD(osec, *oc, tx_tls_dump_bytes);
        ADD(osec, *oc, tx_tls_retransmit_bytes);
        ADD(osec, *oc, tx_tls_tags_cached);
        ADD(osec, *oc, tx_tls_ring_full_drops);
        ADD(osec, *oc, tx_tls_nic_errors);
        ADD(osec, *oc, tx_records);
        ADD(osec, *oc, tx_record_bytes);
        ADD(osec, *oc, records_in_store);
        ADD(osec, *oc, lingering);
    }

    if (src->offload) {
        const struct tls_offload_rx_counters *rc = tls_offload_rx_counters(src->offload);
        ADD("offload_rx", *rc, rx_tls_ctx_installed);
        ADD("offload_rx", *rc, rx_tls_ctx_fail);
        ADD("offload_rx", *rc, rx_tls_ctx_install_failed);
        ADD("offload_rx", *rc, rx_tls_ctx_deleted);
        ADD("offload_rx", *rc, rx_tls_ctx_del_deferred);
        ADD("offload_rx", *rc, rx_tls_ctx_del_pending);
        ADD("offload_rx", *rc, rx_resync_requests);
        ADD("offload_rx", *rc, TlsRxDeviceResync);
        ADD("offload_rx", *rc, rx_resync_denied);
        ADD("offload_rx", *rc, rx_resync_req_dropped);
        ADD("offload_rx", *rc, rx_hints_sent);
    }
    const struct app_http_counters *hc = app_http_global_counters();
    ADD("http", *hc, requests);
    ADD("http", *hc, responses_2xx);
    ADD("http", *hc, responses_4xx);
    ADD("http", *hc, responses_5xx);
    ADD("http", *hc, bad_requests);
    ADD("http", *hc, bytes_body_in);
    ADD("http", *hc, bytes_body_out);
    if (src->server) {
        const struct app_server_counters *sc = app_server_counters(src->server);
        ADD("server", *sc, accepted);
        ADD("server", *sc, active);
        ADD("server", *sc, accept_errors);
        ADD("server", *sc, session_oom);
    }
    return n;
}

uint64_t app_stats_get(const struct app_stat *st, size_t n, const char *section, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(st[i].section, section) && !strcmp(st[i].name, name))
            return st[i].value;
    return 0;
}

size_t app_stats_json(void *ctx, char *buf, size_t cap)
{
    const struct app_stats_src *src = ctx;
    struct app_stat st[APP_STATS_MAX];
    size_t n = app_stats_collect(src, st);
    size_t len = 0;
    const char *sec = NULL;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int w = snprintf(buf + len, len < cap ? cap - len : 0, __VA_ARGS__);                       \
        if (w < 0 || (size_t)w >= cap - len)                                                       \
            return 0;                                                                              \
        len += (size_t)w;                                                                          \
    } while (0)
    PUT("{");
    for (size_t i = 0; i < n; i++) {
        if (!sec || strcmp(sec, st[i].section)) {
            PUT("%s\"%s\": {", sec ? "}, " : "", st[i].section);
            sec = st[i].section;
        } else {
            PUT(", ");
        }
        PUT("\"%s\": %llu", st[i].name, (unsigned long long)st[i].value);
    }
    PUT("%s}\n", sec ? "}" : "");
#undef PUT
    return len;
}

void app_stats_print_table(const struct app_stats_src *src, FILE *f)
{
    struct app_stat st[APP_STATS_MAX];
    size_t n = app_stats_collect(src, st);
    const char *sec = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!sec || strcmp(sec, st[i].section)) {
            sec = st[i].section;
            fprintf(f, "[%s]\n", sec);
        }
        fprintf(f, "  %-28s %20llu\n", st[i].name, (unsigned long long)st[i].value);
    }
}
