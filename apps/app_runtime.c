/* app_runtime.c - bring the whole data path up and down in the right order. */
#define _GNU_SOURCE
#include "app_runtime.h"
#include "app_netns.h"
#include "nic_dev.h"
#include "nic_tun.h"
#include "stack_host.h"
#include "stack_rto.h"
#include "stack_tls_offload.h"
#include "tls_slots.h"

#include <arpa/inet.h>
#include <lwip/priv/tcp_priv.h>
#include <lwip/tcpip.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

void app_runtime_cfg_defaults(struct app_runtime_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->netns = "anic";
    cfg->tun_name = "anic0";
    cfg->kernel_ip = inet_addr("10.77.0.1");
    cfg->host_ip = inet_addr("10.77.0.2");
    cfg->prefix_len = 24;
    cfg->mtu = 1500;
    cfg->snd_buf = 192 * 1024;
    cfg->rcv_wnd = 524280; /* 65535 << 3; past lwIP's own 65535 (docs/design.md §5, §7) */
    cfg->rto_min_ms = 10;
    cfg->peer_rto_min_ms = 5;
    cfg->tcp_retries_ms = 900 * 1000;
    cfg->packet_nice = -10;
    cfg->limits = (struct app_server_limits){
        .handshake_ms = 10 * 1000,
        .header_ms = 60 * 1000,
        .idle_ms = 75 * 1000,
        .body_ms = 60 * 1000,
        .send_ms = 60 * 1000,
    };
    cfg->tx_ring_size = 1024;
    cfg->rx_ring_size = 1024;
    cfg->max_flows = 1024;
    cfg->send_slots = APP_SEND_SLOTS_AUTO;
    cfg->rx_reorder_bytes = 256 * 1024;
    cfg->nic_fetch_ns = NIC_FETCH_NS_DEFAULT;
    cfg->irq_coalesce_us = APP_IRQ_COALESCE_US_DEFAULT;
    cfg->nic_scratch_kb = NIC_SCRATCH_DEFAULT / 1024;
    cfg->offloads = APP_OFFLOAD_ALL;
    nic_fault_cfg_init(&cfg->fault_tx);
    nic_fault_cfg_init(&cfg->fault_rx);
    cfg->ca_out_path = "/tmp/anic-ca.pem";
    cfg->listeners[0] = (struct app_listener){80, TLS_MODE_NONE};
    cfg->listeners[1] = (struct app_listener){443, TLS_MODE_NIC};
    cfg->n_listeners = 2;
}

struct tls_slots_cfg app_send_slots_cfg(const struct app_runtime_cfg *cfg, unsigned send_slots)
{
    if (send_slots != APP_SEND_SLOTS_AUTO)
        return (struct tls_slots_cfg){.limit = send_slots};
    unsigned resident = cfg->nic_ctx_cache  ? cfg->nic_ctx_cache
                        : cfg->nic_contexts ? cfg->nic_contexts
                                            : cfg->max_flows;
    unsigned limit = resident / 16 > 4 ? resident / 16 : 4;
    return (struct tls_slots_cfg){.limit = limit, .engage_at = resident};
}

static const struct {
    const char *name;
    unsigned bit;
} offload_names[] = {{"tso", APP_OFFLOAD_TSO},
                     {"gso", APP_OFFLOAD_GSO},
                     {"lro", APP_OFFLOAD_LRO},
                     {"csum", APP_OFFLOAD_CSUM}};

int app_offloads_parse(const char *list, unsigned *out)
{
    if (strcmp(list, "none") == 0) {
        *out = 0;
        return 0;
    }
    unsigned bits = 0;
    const char *p = list;
    for (;;) {
        size_t n = strcspn(p, ",");
        size_t i = 0;
        while (i < sizeof(offload_names) / sizeof(offload_names[0]) &&
               (strlen(offload_names[i].name) != n || strncmp(p, offload_names[i].name, n) != 0))
            i++;
        if (i == sizeof(offload_names) / sizeof(offload_names[0]))
            return -1;
        bits |= offload_names[i].bit;
        if (!p[n])
            break;
        p += n + 1;
    }
    *out = bits;
    return 0;
}

const char *app_offloads_format(unsigned offloads, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof(offload_names) / sizeof(offload_names[0]); i++) {
        if (!(offloads & offload_names[i].bit))
            continue;
        int w = snprintf(buf + used, len - used, "%s%s", used ? "," : "", offload_names[i].name);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
    }
    if (!used)
        snprintf(buf, len, "none");
    return buf;
}

const char *app_mode_name(enum tls_mode mode)
{
    switch (mode) {
    case TLS_MODE_NONE:
        return "plain";
    case TLS_MODE_MBEDTLS:
        return "mbedtls";
    case TLS_MODE_SW:
        return "sw";
    case TLS_MODE_NIC:
        return "nic";
    case TLS_MODE_NIC_TAGCACHE:
        return "nic-tagcache";
    case TLS_MODE_COUNT:
        break;
    }
    return "?";
}

int app_mode_parse(const char *s)
{
    if (!strcmp(s, "plain"))
        return TLS_MODE_NONE;
    if (!strcmp(s, "mbedtls"))
        return TLS_MODE_MBEDTLS;
    if (!strcmp(s, "sw"))
        return TLS_MODE_SW;
    if (!strcmp(s, "nic"))
        return TLS_MODE_NIC;
    if (!strcmp(s, "nic-tagcache"))
        return TLS_MODE_NIC_TAGCACHE;
    return -1;
}

/* tls/ reaches the device only through this table (docs/design.md §4). */
const struct tls_offload_ops app_tls_offload_ops = {
    .tx_add = stack_tls_tx_add,
    .tx_del = stack_tls_tx_del,
    .rx_add = stack_tls_rx_add,
    .rx_del = stack_tls_rx_del,
    .rx_resync_confirm = stack_tls_rx_resync_confirm,
    .rx_resync_deny = stack_tls_rx_resync_deny,
    .rx_hint = stack_tls_rx_hint,
};

static uint64_t random_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof(s), 0) != sizeof(s))
        s = (uint64_t)time(NULL);
    return s & 0xffffffffull; /* short enough to retype */
}

void app_runtime_seed_faults(struct app_runtime_cfg *cfg)
{
    if (!cfg->seed_set) {
        cfg->seed = random_seed();
        cfg->seed_set = true;
    }
    if (!cfg->fault_tx.seed_set) {
        cfg->fault_tx.seed = cfg->seed;
        cfg->fault_tx.seed_set = true;
    }
    if (!cfg->fault_rx.seed_set) {
        cfg->fault_rx.seed = cfg->seed + 1;
        cfg->fault_rx.seed_set = true;
    }
}

/* The kernel is our peer. Linux's 200 ms minimum RTO would make every loss
   its Reno recovery can't repair (lwIP offers no SACK) cost 200 ms on a
   0.1 ms link; lower it on the route to our subnet, inside our namespace. */
static int set_peer_route(const struct app_runtime_cfg *cfg)
{
    char net[32], rto[16];
    struct in_addr a = {.s_addr = cfg->kernel_ip & htonl(~0u << (32 - cfg->prefix_len))};
    snprintf(net, sizeof(net), "%s/%u", inet_ntoa(a), cfg->prefix_len);
    snprintf(rto, sizeof(rto), "%ums", cfg->peer_rto_min_ms);
    char *argv[] = {"ip",      "route", "replace",  net, "dev", (char *)cfg->tun_name,
                    "rto_min", rto,     "quickack", "1", NULL};
    return app_netns_run_here(argv);
}

/* The kernel's queue of packets for our NIC (the TUN device's ring, 500 by
   default) is the wire's buffer: when the NIC thread is starved of CPU, a
   burst overflows it (counted by the kernel only: ip -s link, TX dropped).
   wrk exiting with 1000 connections sends 1000 RSTs at once; a lost RST is
   never resent, and its connection then waits for a timeout. */
#define APP_TUN_TXQUEUELEN "10000"
static int set_tun_queue(const struct app_runtime_cfg *cfg)
{
    char *argv[] = {
        "ip", "link", "set", "dev", (char *)cfg->tun_name, "txqueuelen", APP_TUN_TXQUEUELEN, NULL};
    return app_netns_run_here(argv);
}

int app_runtime_start(struct app_runtime *rt, const struct app_runtime_cfg *cfg, char *err,
                      size_t errlen)
{
    memset(rt, 0, sizeof(*rt));
    rt->cfg = *cfg;
    app_runtime_seed_faults(&rt->cfg);
    if (app_netns_create_enter(cfg->netns, err, errlen) < 0)
        return -1;
    rt->netns_created = true;
    app_netns_cleanup_on_crash(cfg->netns);
    bool gso = (cfg->offloads & APP_OFFLOAD_GSO) != 0;
    int fd =
        nic_tun_open(cfg->tun_name, cfg->kernel_ip, cfg->prefix_len, cfg->mtu, gso, err, errlen);
    if (fd < 0)
        goto fail;
    if (set_tun_queue(cfg) != 0)
        fprintf(stderr, "anic: warning: could not lengthen the TUN device's queue\n");
    if (cfg->peer_rto_min_ms && set_peer_route(cfg) != 0)
        fprintf(stderr, "anic: warning: could not set rto_min on the kernel's route\n");
    struct nic_dev_cfg dc = {
        .tun_fd = fd,
        .tun_gso = gso,
        .lro = (cfg->offloads & APP_OFFLOAD_LRO) != 0,
        .rx_csum_trusted = (cfg->offloads & APP_OFFLOAD_CSUM) != 0,
        .rx_pause = true,
        .tx_ring_size = cfg->tx_ring_size,
        .rx_ring_size = cfg->rx_ring_size,
        .mtu = cfg->mtu,
        .max_flows = cfg->nic_contexts ? cfg->nic_contexts : cfg->max_flows,
        .rx_reorder_bytes = cfg->rx_reorder_bytes,
        .ctx_cache = cfg->nic_ctx_cache,
        .fetch_ns = cfg->nic_fetch_ns,
        .scratch_bytes = (uint64_t)cfg->nic_scratch_kb * 1024u,
        .fault_tx = rt->cfg.fault_tx,
        .fault_rx = rt->cfg.fault_rx,
        .pcap_path = cfg->pcap_path,
        .thread_nice = cfg->packet_nice,
        .irq_coalesce_ns = cfg->irq_coalesce_us * 1000u,
    };
    rt->dev = nic_dev_create(&dc, err, errlen);
    if (!rt->dev) {
        close(fd);
        goto fail;
    }
    if (nic_dev_start(rt->dev) < 0) {
        snprintf(err, errlen, "cannot start the NIC engine thread");
        goto fail;
    }
    struct stack_host_cfg hc = {
        .ip = cfg->host_ip,
        .netmask = htonl(~0u << (32 - cfg->prefix_len)),
        .gateway = cfg->kernel_ip,
        .mtu = cfg->mtu,
        .tso_max = (cfg->offloads & APP_OFFLOAD_TSO) ? 65535 : 0,
        .csum_offload = (cfg->offloads & APP_OFFLOAD_CSUM) != 0,
        .rx_buf_size = (cfg->offloads & APP_OFFLOAD_LRO) ? 65535 : 0,
        .rto_min_ms = cfg->rto_min_ms,
        .tcp_retries_ms = cfg->tcp_retries_ms,
        .thread_nice = cfg->packet_nice,
    };
    stack_tcp_set_rcv_wnd(cfg->rcv_wnd);
    rt->host = stack_host_start(rt->dev, &hc);
    if (!rt->host) {
        snprintf(err, errlen, "cannot start the lwIP host");
        goto fail;
    }
    /* With TSO, lwIP's MSS is a whole number of wire MSS (no short packet in
       the middle of a stream) within the largest segment the driver takes. */
    uint32_t wire_mss = cfg->mtu - 40, mss = wire_mss;
    uint32_t tso_max = stack_driver_tso_max(stack_host_driver(rt->host));
    if (tso_max > cfg->mtu)
        mss = (tso_max - 40) / wire_mss * wire_mss;
    stack_rto_set_tso((uint16_t)wire_mss, (uint16_t)mss);
    LOCK_TCPIP_CORE();
    struct tls_slots_cfg slots = app_send_slots_cfg(cfg, cfg->send_slots);
    tls_slots_configure(&slots);
    UNLOCK_TCPIP_CORE();
    struct app_server_cfg sc = {.snd_buf = cfg->snd_buf,
                                .mss = (uint16_t)mss,
                                .limits = cfg->limits,
                                .stats_json = app_stats_json,
                                .stats_ctx = &rt->stats};
    bool need_tls = false, need_offload = false;
    for (unsigned i = 0; i < cfg->n_listeners; i++) {
        sc.listeners[sc.n_listeners++] = cfg->listeners[i];
        need_tls |= cfg->listeners[i].mode != TLS_MODE_NONE;
        need_offload |= tls_mode_offloads(cfg->listeners[i].mode);
    }
    if (need_tls) {
        struct tls_server_cfg tc = {
            .cert_path = cfg->cert_path,
            .key_path = cfg->key_path,
            .ca_out_path = cfg->ca_out_path,
            .server_ip = cfg->host_ip,
            .keylog_path = cfg->keylog_path,
            .record_size = cfg->record_size,
            .handshake_workers = cfg->handshake_workers,
            .handshake_queue = cfg->handshake_queue,
            /* queued handshakes must leave time to finish before the timeout */
            .handshake_queue_ms = cfg->limits.handshake_ms / 2,
        };
        rt->tls = tls_server_new(&tc, err, errlen);
        if (!rt->tls)
            goto fail;
    }
    if (need_offload) {
        LOCK_TCPIP_CORE();
        rt->nic_offload = stack_tls_offload_new(stack_host_driver(rt->host), cfg->max_flows);
        if (rt->nic_offload)
            rt->offload = tls_offload_new(&app_tls_offload_ops, rt->nic_offload);
        UNLOCK_TCPIP_CORE();
        if (!rt->offload) {
            snprintf(err, errlen, "out of memory (offload)");
            goto fail;
        }
        tls_offload_set_rx_hint(rt->offload, cfg->rx_hint);
        tls_offload_set_policy(rt->offload, &cfg->offload_policy);
        tls_server_set_offload(rt->tls, rt->offload);
    }
    sc.tls = rt->tls;
    rt->stats.dev = rt->dev;
    rt->stats.drv = stack_host_driver(rt->host);
    rt->stats.tls = rt->tls;
    rt->stats.offload = rt->offload;
    rt->stats.nic_offload = rt->nic_offload;
    LOCK_TCPIP_CORE();
    rt->server = app_server_start(&sc, err, errlen);
    UNLOCK_TCPIP_CORE();
    if (!rt->server)
        goto fail;
    rt->stats.server = rt->server;
    return 0;
fail:
    app_runtime_stop(rt);
    app_runtime_free(rt);
    return -1;
}

void app_runtime_stop(struct app_runtime *rt)
{
    if (rt->server) {
        LOCK_TCPIP_CORE();
        app_server_stop(rt->server);
        UNLOCK_TCPIP_CORE();
        rt->server = NULL;
        rt->stats.server = NULL;
    }
    if (rt->host)
        stack_host_stop(rt->host);
    if (rt->dev)
        nic_dev_stop(rt->dev);
}

void app_runtime_free(struct app_runtime *rt)
{
    if (rt->host) {
        /* Connections are gone; what is left are half-closed pcbs draining
           and offloaded flows lingering on theirs: abort them all (lingering
           flows stop from their error callback). */
        LOCK_TCPIP_CORE();
        while (tcp_active_pcbs)
            tcp_abort(tcp_active_pcbs);
        tls_offload_free(rt->offload);
        stack_tls_offload_free(rt->nic_offload);
        UNLOCK_TCPIP_CORE();
        rt->offload = NULL;
        rt->nic_offload = NULL;
        rt->stats.offload = NULL;
        rt->stats.nic_offload = NULL;
        stack_host_free(rt->host);
        rt->host = NULL;
        rt->stats.drv = NULL;
    }
    tls_server_free(rt->tls);
    rt->tls = NULL;
    if (rt->dev) {
        nic_dev_destroy(rt->dev);
        rt->dev = NULL;
    }
    if (rt->netns_created) {
        app_netns_delete(rt->cfg.netns);
        rt->netns_created = false;
    }
}
