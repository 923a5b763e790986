/*
 * app_runtime.h - wires the layers together for one process: private
 * network namespace -> TUN -> NIC (engine thread) -> lwIP host + driver ->
 * TLS servers -> HTTP server. Used by `anic serve` and `anic bench`.
 */
#ifndef ANIC_APP_RUNTIME_H
#define ANIC_APP_RUNTIME_H

#include "app_server.h"
#include "app_stats.h"
#include "nic_fault.h"
#include "tls_offload.h"
#include "tls_server.h"
#include "tls_slots.h"

#include <stdbool.h>
#include <stdint.h>

struct app_runtime_cfg {
    const char *netns;
    const char *tun_name;
    uint32_t kernel_ip, host_ip; /* network byte order */
    unsigned prefix_len;
    uint32_t mtu;
    uint32_t snd_buf;
    uint32_t rcv_wnd;         /* TCP receive window per connection (stack_tcp_set_rcv_wnd) */
    uint32_t rto_min_ms;      /* see stack_host_cfg */
    uint32_t peer_rto_min_ms; /* the kernel peer's route rto_min (0 = kernel default) */
    uint32_t tcp_retries_ms;  /* give up on a peer that acks nothing for this long (0 = lwIP's) */
    int packet_nice; /* nice of nic-engine and stack-irq relative to the process (--packet-nice) */
    struct app_server_limits limits; /* timeouts and the connection cap */
    unsigned send_slots;             /* connections sending bulk at once (tls_slots.h; 0 = off;
                                        APP_SEND_SLOTS_AUTO, the default: app_send_slots_cfg) */
    uint32_t tx_ring_size, rx_ring_size, max_flows;
    uint32_t nic_contexts;     /* NIC flow-context table size (0 = max_flows) */
    uint32_t nic_ctx_cache;    /* contexts resident on the NIC (0 = all) */
    uint32_t nic_fetch_ns;     /* latency of one context fetch */
    uint32_t irq_coalesce_us;  /* NIC interrupt moderation (nic_dev_cfg.irq_coalesce_ns) */
    uint32_t nic_scratch_kb;   /* NIC shared scratch + RX reorder pool */
    uint32_t rx_reorder_bytes; /* NIC RX: ciphertext held per flow across holes */
    bool rx_hint;              /* RX resync by host hints instead of NIC search */
    struct tls_offload_policy offload_policy;    /* which connections get NIC contexts, from when */
    uint32_t record_size;                        /* TLS plaintext bytes per TX record (0 = 16384) */
    unsigned handshake_workers, handshake_queue; /* see tls_server_cfg (0 = 2, 4096) */
    unsigned offloads;                           /* APP_OFFLOAD_* bits (default: all) */
    struct nic_fault_cfg fault_tx, fault_rx;     /* a seed in a spec wins over the run's */
    uint64_t seed; /* the run's one seed (--seed): fault-tx S, fault-rx S+1 */
    bool seed_set; /* false: app_runtime_seed_faults() chooses one */
    const char *pcap_path, *keylog_path, *cert_path, *key_path, *ca_out_path;
    struct app_listener listeners[APP_SERVER_MAX_LISTENERS];
    unsigned n_listeners;
};

struct app_runtime {
    struct app_runtime_cfg cfg;
    bool netns_created;
    struct nic_dev *dev;
    struct stack_host *host;
    struct tls_server *tls;
    struct stack_tls_offload *nic_offload; /* the driver's half of the offload */
    struct tls_offload *offload;           /* tls/'s half, on nic_offload's ops */
    struct app_server *server;
    struct app_stats_src stats;
};

/* Segmentation and checksum offloads between host and NIC (docs/design.md §4, §7). */
#define APP_OFFLOAD_TSO 0x1u /* lwIP hands the NIC segments up to 64 KiB; the NIC cuts them */
#define APP_OFFLOAD_GSO 0x2u /* TUN reads and writes TCP super-packets (IFF_VNET_HDR) */
#define APP_OFFLOAD_LRO 0x4u /* the NIC merges in-order packets of a flow into one host buffer */
/* the NIC computes the TCP checksums sent; lwIP trusts those it verified received */
#define APP_OFFLOAD_CSUM 0x8u
#define APP_OFFLOAD_ALL  (APP_OFFLOAD_TSO | APP_OFFLOAD_GSO | APP_OFFLOAD_LRO | APP_OFFLOAD_CSUM)

/* Parse a comma-separated list of offload names ("tso", "gso", "lro", "csum"; "none" = no
   offloads) into APP_OFFLOAD_* bits. Returns -1 on an unknown name. */
int app_offloads_parse(const char *list, unsigned *out);
/* The names of the bits set, comma-separated, or "none". */
const char *app_offloads_format(unsigned offloads, char *buf, size_t len);

/* Defaults: namespace "anic", TUN anic0, 10.77.0.1/24 <-> 10.77.0.2, MTU 1500,
   HTTP 80 + HTTPS 443 (nic, dump resync), no faults; timeouts as nginx's
   (header 60 s, keep-alive 75 s, body 60 s, send 60 s; handshake 10 s), no
   connection cap, retransmission give-up after 900 s (Linux: ~15 min). */
void app_runtime_cfg_defaults(struct app_runtime_cfg *cfg);

/* --send-slots auto: the limit applies only while more connections send
   bulk data than the NIC keeps flow contexts resident (--nic-ctx-cache, or
   the whole context table), and then it is a sixteenth of that (at least
   4). Below that many senders, spreading the sends evicts nothing. */
#define APP_SEND_SLOTS_AUTO (~0u)
/* --irq-coalesce-us: see nic_dev_cfg.irq_coalesce_ns. */
#define APP_IRQ_COALESCE_US_DEFAULT 100u
/* The send-slots configuration for cfg's NIC and a --send-slots value. */
struct tls_slots_cfg app_send_slots_cfg(const struct app_runtime_cfg *cfg, unsigned send_slots);

/* The one place fault seeds come from: without cfg->seed_set a random seed
   (32 bits, short enough to retype) becomes cfg->seed; then a stage whose
   spec named no seed gets fault-tx = seed, fault-rx = seed + 1 (mod 2^64).
   app_runtime_start() calls it on its copy; callers that print the seed
   before the start may call it first (it is idempotent). */
void app_runtime_seed_faults(struct app_runtime_cfg *cfg);

/* tls/'s offload operations implemented by the driver (stack/stack_tls_offload.c). */
extern const struct tls_offload_ops app_tls_offload_ops;

/* Moves the calling thread into a new namespace: threads created afterwards
   inherit it. Sequential runtimes in one process are fine (anic bench). */
int app_runtime_start(struct app_runtime *rt, const struct app_runtime_cfg *cfg, char *err,
                      size_t errlen);
/* Close connections, stop threads. Counters stay readable. */
void app_runtime_stop(struct app_runtime *rt);
/* Free everything and delete the namespace. */
void app_runtime_free(struct app_runtime *rt);

/* "plain" is TLS_MODE_NONE. */
const char *app_mode_name(enum tls_mode mode);
int app_mode_parse(const char *s); /* an enum tls_mode, or -1 if unknown */

#endif
