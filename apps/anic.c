/* anic.c - the `anic` command: serve, bench. */
#define _GNU_SOURCE
#include "bench.h"
#include "app_runtime.h"
#include "bench_flows.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage_main(FILE *f)
{
    fprintf(f, "usage: anic <command> [options]\n"
               "\n"
               "anic is a userspace TCP/IP host (lwIP) on a simulated smart NIC with\n"
               "autonomous TLS offload, attached to a Linux TUN device.\n"
               "\n"
               "commands:\n"
               "  serve    run the HTTPS/HTTP server in a private network namespace\n"
               "  bench    measure throughput and per-thread CPU of every mode, one run\n"
               "           ('anic bench --load': wrk against anic and nginx, many connections;\n"
               "           'anic bench --vs-nginx': nginx rows next to the modes;\n"
               "           'anic bench --load --conn-rate': new TLS connections per second;\n"
               "           'anic bench --load --flows 10,100,1000': many long-lived flows)\n"
               "  pattern N  write the N bytes GET /bytes/N serves (byte i = i %% 251) to\n"
               "           stdout, e.g. 'anic pattern 1000000 | sha256sum'\n"
               "  help     this text; 'anic <command> --help' for a command's options\n");
}

static void usage_serve(FILE *f)
{
    fprintf(
        f,
        "usage: anic serve [options]\n"
        "\n"
        "Creates network namespace NETNS (it must not exist), a TUN device in it, the\n"
        "simulated NIC and the lwIP host, and serves until SIGINT/SIGTERM (or --duration).\n"
        "Clients run inside the namespace: ip netns exec NETNS curl ...\n"
        "On exit prints every counter and deletes the namespace.\n"
        "\n"
        "  --tls MODE          record layer on the HTTPS port: nic (default) | sw | mbedtls\n"
        "                        nic: the NIC encrypts and decrypts records (autonomous TX\n"
        "                        and RX offload)\n"
        "                        sw: anic's kTLS-style record layer, host AES-GCM (libcrypto)\n"
        "                        mbedtls: the stock mbed TLS record layer\n"
        "  --tx-resync POLICY  how the NIC recovers for retransmissions: dump (default,\n"
        "                        replay the record prefix, as mlx5) | tagcache (NIC reports\n"
        "                        tags; retransmissions seek the keystream, no dump)\n"
        "  --https-port N      HTTPS port (default 443; 0 = none)\n"
        "  --http-port N       plain HTTP port (default 80; 0 = none)\n"
        "  --listen PORT:MODE  an extra listener (MODE plain|mbedtls|sw|nic|nic-tagcache);\n"
        "                        repeatable\n"
        "  --netns NAME        network namespace to create (default anic)\n"
        "  --tun NAME          TUN device name (default anic0)\n"
        "  --kernel-addr A/P   kernel side of the TUN (default 10.77.0.1/24)\n"
        "  --host-addr A       lwIP host address (default 10.77.0.2)\n"
        "  --mtu N             link MTU (default 1500, 576..9000)\n"
        "  --sndbuf BYTES      TCP send buffer per connection (default 196608)\n"
        "  --rcv-wnd BYTES     TCP receive window per connection (65535..4194240,\n"
        "                        default 524280; 65535 = lwIP's TCP_WND; beyond it needs\n"
        "                        the peer's window scaling. Past 131070 only after 4 MiB\n"
        "                        received without a hole, and never after one; held at\n"
        "                        65535 while a hole is open, docs/design.md §5)\n"
        "  --rx-resync MODE    how the NIC finds records again after losing track: nic\n"
        "                        (default: magic-pattern search, host confirms) | hint\n"
        "                        (no search; tls/ tells the NIC where records start)\n"
        "  --offload-policy P  which NIC-mode connections get NIC contexts: always (default)\n"
        "                        | after:BYTES (each direction from its first record\n"
        "                        boundary past BYTES payload bytes) | auto[:INSTALL_NS,\n"
        "                        SW_PS,NIC_PS] (when the announced or transferred bytes\n"
        "                        repay the install; cost model in README.md)\n"
        "  --rx-reorder-buf B  NIC RX: ciphertext bytes held per flow across a hole, so\n"
        "                        reordering and loss don't lose sync (default 262144;\n"
        "                        0 = the paper's NIC)\n"
        "  --record-size N     plaintext bytes per TLS record sent (1..16384, default 16384;\n"
        "                        every TLS mode)\n"
        "  --offloads LIST     segmentation offloads between host and NIC, comma-separated:\n"
        "                        tso (lwIP hands the NIC segments up to 64 KiB, the NIC\n"
        "                        cuts them into wire packets), gso (TUN reads and writes\n"
        "                        TCP super-packets, split and merged around the fault\n"
        "                        stage), lro (the NIC merges in-order packets of a flow\n"
        "                        into one host packet up to 64 KiB), csum (the NIC\n"
        "                        computes the TCP checksums sent, lwIP trusts those it\n"
        "                        verified received); none = off (default: all)\n"
        "  --no-tso, --no-gso, --no-lro, --no-csum  leave one out\n"
        "  --nic-contexts N    flow contexts the NIC holds (default 1024, as many as the host\n"
        "                        uses); fewer: installs fail and connections fall back to\n"
        "                        host crypto (counted *_ctx_install_failed)\n"
        "  --nic-flows N       flow ids of the driver and NIC flow-table slots (1..65536,\n"
        "                        default 1024); a TLS connection offloaded both ways uses two\n"
        "  --nic-ctx-cache N   flow contexts resident on the NIC (LRU); the rest live in host\n"
        "                        blocks the driver hands over at install and are fetched on\n"
        "                        use (default 0 = all resident)\n"
        "  --irq-coalesce-us N adaptive interrupt moderation: while the NIC interrupts the\n"
        "                        host often, completions wait up to N us for more (default\n"
        "                        100; 0 = an interrupt for every engine round with work)\n"
        "  --nic-fetch-ns NS   latency of one context fetch, the engine waits (default 1000;\n"
        "                        0..1000000)\n"
        "  --nic-scratch-kb K  the NIC's shared scratch and RX reorder pool (256..4194304,\n"
        "                        default 16384): bounds what all flows hold across holes\n"
        "  --peer-rto-min-ms N rto_min of the kernel peer's route in the namespace (default 5;\n"
        "                        0 = Linux's 200 ms)\n"
        "  --rto-min-ms N      floor of the adaptive retransmission timeout (RFC 6298 SRTT +\n"
        "                        4 RTTVAR, at most 1 s; default 10;\n"
        "                        0 = lwIP's own 500 ms ticks: a loss that fast retransmit\n"
        "                        can't repair then costs >= 0.5 s)\n"
        "  --packet-nice N     run nic-engine and stack-irq at nice -N relative to the process\n"
        "                        (0..20, default 10; 0 = same): the packet path preempts\n"
        "                        other work on the machine, as the kernel's softirq does\n"
        "  --handshake-timeout S  TLS handshake must finish within S seconds of accept\n"
        "                        (default 10; 0 = none)\n"
        "  --header-timeout S  a request head must arrive within S seconds of its first byte\n"
        "                        (a connection's first request: of accept), else 408 (default 60)\n"
        "  --keepalive-timeout S  close a connection idle between requests for S (default 75)\n"
        "  --body-timeout S    408 when a request body stops arriving for S (default 60)\n"
        "  --send-timeout S    abort when the peer acknowledges no output for S (default 60)\n"
        "                        (S may have decimals, e.g. 0.5; 0 = no such timeout)\n"
        "  --max-conns N       open connections; more are refused with RST at accept\n"
        "                        (default 0 = no cap)\n"
        "  --send-slots N|auto at most N connections send bulk data at once, the others\n"
        "                        wait in line for a turn (1 MiB or 200 ms); a send of at\n"
        "                        most 64 KiB from idle needs none. auto (the default): no\n"
        "                        limit until more connections send bulk than the NIC keeps\n"
        "                        contexts resident (--nic-ctx-cache, else --nic-contexts),\n"
        "                        then a sixteenth of that (at least 4); 0 = never a limit\n"
        "                        (counters send_slots.*; README.md)\n"
        "  --handshake-workers N  threads running TLS handshakes off the core lock (1..16,\n"
        "                        default 2)\n"
        "  --handshake-queue N new handshakes that may wait for a worker (default 4096);\n"
        "                        more are refused with RST (tls_<mode>.handshakes_queue_full),\n"
        "                        as are new ones while the oldest waiting one has waited half\n"
        "                        of --handshake-timeout (handshakes_queue_late)\n"
        "  --tcp-retries-time S give up on a peer that acknowledges none of our data for S\n"
        "                        seconds, as Linux's tcp_retries2 (default 900; 0 = lwIP's\n"
        "                        12 retransmissions, which the fast RTO uses up in ~4.5 s)\n"
        "  --cert FILE --key FILE\n"
        "                      PEM certificate chain and key instead of a generated one\n"
        "  --ca-out FILE       where the generated CA is written (default /tmp/anic-ca.pem;\n"
        "                        a new file renamed over it: never written through a link)\n"
        "  --keylog FILE       append NSS key-log lines (CLIENT_RANDOM) for Wireshark/tshark;\n"
        "                        mode 0600, never through a symlink, must be ours\n"
        "  --pcap FILE         record the wire as the peer sees it (raw IP pcap)\n"
        "  --fault-tx SPEC     faults NIC -> kernel, netem vocabulary, e.g.\n"
        "                        'loss 1%% duplicate 0.5%% reorder 5%% gap 3 corrupt 0.1%%\n"
        "                         tamper 0.1%% delay 2ms 1ms rate 1gbit seed 7'\n"
        "  --fault-rx SPEC     faults kernel -> NIC, same vocabulary\n"
        "  --seed S            the run's seed (decimal or 0x-hex): fault-tx uses S, fault-rx\n"
        "                        S+1, unless a SPEC names its own 'seed'; default random,\n"
        "                        printed at start for replay\n"
        "  --duration SECONDS  exit by itself after this long (default: run until signalled)\n"
        "  --ready-file FILE   create FILE once the server accepts connections\n"
        "  -h, --help          this text\n");
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* Seconds (decimals allowed), 0 .. max_s, into milliseconds. */
static int parse_secs_ms(const char *s, uint32_t max_s, uint32_t *ms)
{
    char *end;
    errno = 0;
    if (!(*s >= '0' && *s <= '9'))
        return -1;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || v > max_s)
        return -1;
    *ms = (uint32_t)(v * 1000.0 + 0.5); /* to the nearest millisecond */
    return 0;
}

static int parse_addr_prefix(const char *s, uint32_t *addr, unsigned *prefix)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", s);
    char *slash = strchr(buf, '/');
    uint32_t p = 24;
    if (slash) {
        *slash = 0;
        if (parse_u32(slash + 1, 8, 30, &p) < 0)
            return -1;
    }
    struct in_addr a;
    if (inet_pton(AF_INET, buf, &a) != 1)
        return -1;
    *addr = a.s_addr;
    *prefix = p;
    return 0;
}

enum {
    OPT_TLS = 256,
    OPT_HTTPS_PORT,
    OPT_HTTP_PORT,
    OPT_LISTEN,
    OPT_NETNS,
    OPT_TUN,
    OPT_KERNEL_ADDR,
    OPT_HOST_ADDR,
    OPT_MTU,
    OPT_SNDBUF,
    OPT_RCV_WND,
    OPT_CERT,
    OPT_KEY,
    OPT_CA_OUT,
    OPT_KEYLOG,
    OPT_PCAP,
    OPT_FAULT_TX,
    OPT_FAULT_RX,
    OPT_DURATION,
    OPT_READY_FILE,
    OPT_TX_RESYNC,
    OPT_RTO_MIN,
    OPT_PACKET_NICE,
    OPT_PEER_RTO_MIN,
    OPT_RX_RESYNC,
    OPT_OFFLOAD_POLICY,
    OPT_RX_REORDER,
    OPT_NIC_CONTEXTS,
    OPT_NIC_FLOWS,
    OPT_NIC_CTX_CACHE,
    OPT_NIC_FETCH_NS,
    OPT_IRQ_COALESCE,
    OPT_NIC_SCRATCH_KB,
    OPT_HS_TIMEOUT,
    OPT_HEADER_TIMEOUT,
    OPT_IDLE_TIMEOUT,
    OPT_BODY_TIMEOUT,
    OPT_SEND_TIMEOUT,
    OPT_MAX_CONNS,
    OPT_SEND_SLOTS,
    OPT_HS_WORKERS,
    OPT_HS_QUEUE,
    OPT_TCP_RETRIES,
    OPT_RECORD_SIZE,
    OPT_OFFLOADS,
    OPT_NO_TSO,
    OPT_NO_GSO,
    OPT_NO_LRO,
    OPT_NO_CSUM,
    OPT_SEED,
};

static const struct option serve_opts[] = {
    {"tls", required_argument, NULL, OPT_TLS},
    {"https-port", required_argument, NULL, OPT_HTTPS_PORT},
    {"http-port", required_argument, NULL, OPT_HTTP_PORT},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"netns", required_argument, NULL, OPT_NETNS},
    {"tun", required_argument, NULL, OPT_TUN},
    {"kernel-addr", required_argument, NULL, OPT_KERNEL_ADDR},
    {"host-addr", required_argument, NULL, OPT_HOST_ADDR},
    {"mtu", required_argument, NULL, OPT_MTU},
    {"sndbuf", required_argument, NULL, OPT_SNDBUF},
    {"rcv-wnd", required_argument, NULL, OPT_RCV_WND},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"ca-out", required_argument, NULL, OPT_CA_OUT},
    {"keylog", required_argument, NULL, OPT_KEYLOG},
    {"pcap", required_argument, NULL, OPT_PCAP},
    {"fault-tx", required_argument, NULL, OPT_FAULT_TX},
    {"fault-rx", required_argument, NULL, OPT_FAULT_RX},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"ready-file", required_argument, NULL, OPT_READY_FILE},
    {"tx-resync", required_argument, NULL, OPT_TX_RESYNC},
    {"rto-min-ms", required_argument, NULL, OPT_RTO_MIN},
    {"packet-nice", required_argument, NULL, OPT_PACKET_NICE},
    {"peer-rto-min-ms", required_argument, NULL, OPT_PEER_RTO_MIN},
    {"rx-resync", required_argument, NULL, OPT_RX_RESYNC},
    {"offload-policy", required_argument, NULL, OPT_OFFLOAD_POLICY},
    {"rx-reorder-buf", required_argument, NULL, OPT_RX_REORDER},
    {"nic-contexts", required_argument, NULL, OPT_NIC_CONTEXTS},
    {"nic-flows", required_argument, NULL, OPT_NIC_FLOWS},
    {"nic-ctx-cache", required_argument, NULL, OPT_NIC_CTX_CACHE},
    {"nic-fetch-ns", required_argument, NULL, OPT_NIC_FETCH_NS},
    {"irq-coalesce-us", required_argument, NULL, OPT_IRQ_COALESCE},
    {"nic-scratch-kb", required_argument, NULL, OPT_NIC_SCRATCH_KB},
    {"handshake-timeout", required_argument, NULL, OPT_HS_TIMEOUT},
    {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
    {"keepalive-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"body-timeout", required_argument, NULL, OPT_BODY_TIMEOUT},
    {"send-timeout", required_argument, NULL, OPT_SEND_TIMEOUT},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"send-slots", required_argument, NULL, OPT_SEND_SLOTS},
    {"handshake-workers", required_argument, NULL, OPT_HS_WORKERS},
    {"handshake-queue", required_argument, NULL, OPT_HS_QUEUE},
    {"tcp-retries-time", required_argument, NULL, OPT_TCP_RETRIES},
    {"record-size", required_argument, NULL, OPT_RECORD_SIZE},
    {"offloads", required_argument, NULL, OPT_OFFLOADS},
    {"no-tso", no_argument, NULL, OPT_NO_TSO},
    {"no-gso", no_argument, NULL, OPT_NO_GSO},
    {"no-lro", no_argument, NULL, OPT_NO_LRO},
    {"no-csum", no_argument, NULL, OPT_NO_CSUM},
    {"seed", required_argument, NULL, OPT_SEED},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int bad(const char *opt, const char *val)
{
    fprintf(stderr, "anic serve: invalid value for --%s: '%s' (see anic serve --help)\n", opt, val);
    return 2;
}

static void print_banner(const struct app_runtime *rt, const struct app_runtime_cfg *cfg)
{
    char k[INET_ADDRSTRLEN], h[INET_ADDRSTRLEN], ft[NIC_FAULT_FMT_LEN], fr[NIC_FAULT_FMT_LEN];
    inet_ntop(AF_INET, &cfg->kernel_ip, k, sizeof(k));
    inet_ntop(AF_INET, &cfg->host_ip, h, sizeof(h));
    nic_fault_cfg_format(&rt->cfg.fault_tx, ft, sizeof(ft));
    nic_fault_cfg_format(&rt->cfg.fault_rx, fr, sizeof(fr));
    printf("anic: serving in network namespace '%s' on %s (MTU %u)\n", cfg->netns, cfg->tun_name,
           cfg->mtu);
    printf("  kernel side %s/%u, lwIP host %s\n", k, cfg->prefix_len, h);
    for (unsigned i = 0; i < cfg->n_listeners; i++) {
        const struct app_listener *l = &cfg->listeners[i];
        printf("  %s://%s:%u/  (%s)\n", l->mode == TLS_MODE_NONE ? "http" : "https", h, l->port,
               app_mode_name(l->mode));
    }
    if (rt->tls)
        printf("  CA certificate: %s\n", cfg->cert_path ? cfg->cert_path : cfg->ca_out_path);
    char ol[64];
    printf("  seed: %" PRIu64 " (replay: anic serve --seed %" PRIu64
           " with the same options; a fault stage without its own seed uses %" PRIu64
           " for TX, %" PRIu64 " for RX)\n",
           rt->cfg.seed, rt->cfg.seed, rt->cfg.seed, rt->cfg.seed + 1);
    printf("  fault-tx: %s\n  fault-rx: %s\n  offloads: %s\n", ft, fr,
           app_offloads_format(cfg->offloads, ol, sizeof(ol)));
    if (cfg->pcap_path)
        printf("  pcap: %s\n", cfg->pcap_path);
    if (cfg->keylog_path)
        printf("  key log: %s\n", cfg->keylog_path);
    printf("  try: ip netns exec %s curl --cacert %s https://%s/bytes/1000000 | sha256sum\n",
           cfg->netns, cfg->cert_path ? cfg->cert_path : cfg->ca_out_path, h);
    fflush(stdout);
}

static int cmd_serve(int argc, char **argv)
{
    struct app_runtime_cfg cfg;
    app_runtime_cfg_defaults(&cfg);
    int tls_mode = TLS_MODE_NIC;
    bool tagcache = false;
    uint32_t https_port = 443, http_port = 80, duration = 0, u;
    struct app_listener extra[APP_SERVER_MAX_LISTENERS];
    unsigned n_extra = 0;
    const char *ready_file = NULL;
    char err[256];
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", serve_opts, NULL)) != -1) {
        switch (c) {
        case OPT_TLS:
            tls_mode = app_mode_parse(optarg);
            if (tls_mode <= TLS_MODE_NONE)
                return bad("tls", optarg);
            break;
        case OPT_HTTPS_PORT:
            if (parse_u32(optarg, 0, 65535, &https_port) < 0)
                return bad("https-port", optarg);
            break;
        case OPT_HTTP_PORT:
            if (parse_u32(optarg, 0, 65535, &http_port) < 0)
                return bad("http-port", optarg);
            break;
        case OPT_LISTEN: {
            char buf[64];
            snprintf(buf, sizeof(buf), "%s", optarg);
            char *colon = strchr(buf, ':');
            uint32_t port;
            int mode;
            if (!colon || n_extra >= APP_SERVER_MAX_LISTENERS - 2)
                return bad("listen", optarg);
            *colon = 0;
            if (parse_u32(buf, 1, 65535, &port) < 0 || (mode = app_mode_parse(colon + 1)) < 0)
                return bad("listen", optarg);
            extra[n_extra++] = (struct app_listener){(uint16_t)port, (enum tls_mode)mode};
            break;
        }
        case OPT_NETNS:
            cfg.netns = optarg;
            break;
        case OPT_TUN:
            cfg.tun_name = optarg;
            break;
        case OPT_KERNEL_ADDR:
            if (parse_addr_prefix(optarg, &cfg.kernel_ip, &cfg.prefix_len) < 0)
                return bad("kernel-addr", optarg);
            break;
        case OPT_HOST_ADDR: {
            struct in_addr a;
            if (inet_pton(AF_INET, optarg, &a) != 1)
                return bad("host-addr", optarg);
            cfg.host_ip = a.s_addr;
            break;
        }
        case OPT_MTU:
            if (parse_u32(optarg, 576, 9000, &cfg.mtu) < 0)
                return bad("mtu", optarg);
            break;
        case OPT_SNDBUF:
            if (parse_u32(optarg, 8192, 1u << 20, &cfg.snd_buf) < 0)
                return bad("sndbuf", optarg);
            break;
        case OPT_RCV_WND:
            if (parse_u32(optarg, 65535, 4194240, &cfg.rcv_wnd) < 0)
                return bad("rcv-wnd", optarg);
            break;
        case OPT_CERT:
            cfg.cert_path = optarg;
            break;
        case OPT_KEY:
            cfg.key_path = optarg;
            break;
        case OPT_CA_OUT:
            cfg.ca_out_path = optarg;
            break;
        case OPT_KEYLOG:
            cfg.keylog_path = optarg;
            break;
        case OPT_PCAP:
            cfg.pcap_path = optarg;
            break;
        case OPT_FAULT_TX:
        case OPT_FAULT_RX:
            if (nic_fault_cfg_parse(c == OPT_FAULT_TX ? &cfg.fault_tx : &cfg.fault_rx, optarg, err,
                                    sizeof(err)) < 0) {
                fprintf(stderr, "anic serve: --%s: %s\n",
                        c == OPT_FAULT_TX ? "fault-tx" : "fault-rx", err);
                return 2;
            }
            break;
        case OPT_SEED:
            if (nic_fault_seed_parse(optarg, &cfg.seed, err, sizeof(err)) < 0) {
                fprintf(stderr, "anic serve: --seed: %s\n", err);
                return 2;
            }
            cfg.seed_set = true;
            break;
        case OPT_DURATION:
            if (parse_u32(optarg, 1, 86400, &duration) < 0)
                return bad("duration", optarg);
            break;
        case OPT_READY_FILE:
            ready_file = optarg;
            break;
        case OPT_PEER_RTO_MIN:
            if (parse_u32(optarg, 0, 200, &cfg.peer_rto_min_ms) < 0)
                return bad("peer-rto-min-ms", optarg);
            break;
        case OPT_RX_RESYNC:
            if (!strcmp(optarg, "nic"))
                cfg.rx_hint = false;
            else if (!strcmp(optarg, "hint"))
                cfg.rx_hint = true;
            else
                return bad("rx-resync", optarg);
            break;
        case OPT_OFFLOAD_POLICY:
            if (tls_offload_policy_parse(optarg, &cfg.offload_policy) < 0)
                return bad("offload-policy", optarg);
            break;
        case OPT_RECORD_SIZE:
            if (parse_u32(optarg, 1, 16384, &cfg.record_size) < 0)
                return bad("record-size", optarg);
            break;
        case OPT_NIC_CONTEXTS:
            if (parse_u32(optarg, 1, 1u << 16, &cfg.nic_contexts) < 0)
                return bad("nic-contexts", optarg);
            break;
        case OPT_NIC_FLOWS:
            if (parse_u32(optarg, 1, 1u << 16, &cfg.max_flows) < 0)
                return bad("nic-flows", optarg);
            break;
        case OPT_NIC_CTX_CACHE:
            if (parse_u32(optarg, 0, 1u << 16, &cfg.nic_ctx_cache) < 0)
                return bad("nic-ctx-cache", optarg);
            break;
        case OPT_IRQ_COALESCE:
            if (parse_u32(optarg, 0, 100000, &cfg.irq_coalesce_us) < 0)
                return bad("irq-coalesce-us", optarg);
            break;
        case OPT_NIC_FETCH_NS:
            if (parse_u32(optarg, 0, 1000000, &cfg.nic_fetch_ns) < 0)
                return bad("nic-fetch-ns", optarg);
            break;
        case OPT_NIC_SCRATCH_KB:
            if (parse_u32(optarg, 256, 4u << 20, &cfg.nic_scratch_kb) < 0)
                return bad("nic-scratch-kb", optarg);
            break;
        case OPT_OFFLOADS:
            if (app_offloads_parse(optarg, &cfg.offloads) < 0)
                return bad("offloads", optarg);
            break;
        case OPT_NO_TSO:
            cfg.offloads &= ~APP_OFFLOAD_TSO;
            break;
        case OPT_NO_GSO:
            cfg.offloads &= ~APP_OFFLOAD_GSO;
            break;
        case OPT_NO_LRO:
            cfg.offloads &= ~APP_OFFLOAD_LRO;
            break;
        case OPT_NO_CSUM:
            cfg.offloads &= ~APP_OFFLOAD_CSUM;
            break;
        case OPT_RX_REORDER:
            if (parse_u32(optarg, 0, 64u << 20, &cfg.rx_reorder_bytes) < 0)
                return bad("rx-reorder-buf", optarg);
            break;
        case OPT_HS_TIMEOUT:
            if (parse_secs_ms(optarg, 3600, &cfg.limits.handshake_ms) < 0)
                return bad("handshake-timeout", optarg);
            break;
        case OPT_HEADER_TIMEOUT:
            if (parse_secs_ms(optarg, 3600, &cfg.limits.header_ms) < 0)
                return bad("header-timeout", optarg);
            break;
        case OPT_IDLE_TIMEOUT:
            if (parse_secs_ms(optarg, 86400, &cfg.limits.idle_ms) < 0)
                return bad("keepalive-timeout", optarg);
            break;
        case OPT_BODY_TIMEOUT:
            if (parse_secs_ms(optarg, 3600, &cfg.limits.body_ms) < 0)
                return bad("body-timeout", optarg);
            break;
        case OPT_SEND_TIMEOUT:
            if (parse_secs_ms(optarg, 3600, &cfg.limits.send_ms) < 0)
                return bad("send-timeout", optarg);
            break;
        case OPT_MAX_CONNS:
            if (parse_u32(optarg, 0, 1000000, &cfg.limits.max_conns) < 0)
                return bad("max-conns", optarg);
            break;
        case OPT_SEND_SLOTS:
            if (strcmp(optarg, "auto") == 0)
                u = APP_SEND_SLOTS_AUTO;
            else if (parse_u32(optarg, 0, 1000000, &u) < 0)
                return bad("send-slots", optarg);
            cfg.send_slots = u;
            break;
        case OPT_HS_WORKERS:
            if (parse_u32(optarg, 1, 16, &u) < 0)
                return bad("handshake-workers", optarg);
            cfg.handshake_workers = u;
            break;
        case OPT_HS_QUEUE:
            if (parse_u32(optarg, 1, 1000000, &u) < 0)
                return bad("handshake-queue", optarg);
            cfg.handshake_queue = u;
            break;
        case OPT_TCP_RETRIES:
            if (parse_secs_ms(optarg, 86400, &cfg.tcp_retries_ms) < 0)
                return bad("tcp-retries-time", optarg);
            break;
        case OPT_RTO_MIN:
            if (parse_u32(optarg, 0, 5000, &cfg.rto_min_ms) < 0)
                return bad("rto-min-ms", optarg);
            break;
        case OPT_PACKET_NICE: {
            uint32_t v;
            if (parse_u32(optarg, 0, 20, &v) < 0)
                return bad("packet-nice", optarg);
            cfg.packet_nice = -(int)v;
            break;
        }
        case OPT_TX_RESYNC:
            if (!strcmp(optarg, "dump"))
                tagcache = false;
            else if (!strcmp(optarg, "tagcache"))
                tagcache = true;
            else
                return bad("tx-resync", optarg);
            break;
        case 'h':
            usage_serve(stdout);
            return 0;
        default:
            usage_serve(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "anic serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (tagcache && tls_mode == TLS_MODE_NIC)
        tls_mode = TLS_MODE_NIC_TAGCACHE;
    if (!cfg.cert_path != !cfg.key_path) {
        fprintf(stderr, "anic serve: --cert and --key go together\n");
        return 2;
    }
    cfg.n_listeners = 0;
    if (http_port)
        cfg.listeners[cfg.n_listeners++] =
            (struct app_listener){(uint16_t)http_port, TLS_MODE_NONE};
    if (https_port)
        cfg.listeners[cfg.n_listeners++] =
            (struct app_listener){(uint16_t)https_port, (enum tls_mode)tls_mode};
    for (unsigned i = 0; i < n_extra; i++)
        cfg.listeners[cfg.n_listeners++] = extra[i];
    if (cfg.n_listeners == 0) {
        fprintf(stderr, "anic serve: no listener (both ports 0)\n");
        return 2;
    }

    /* Signals are taken synchronously by this thread; block them before any
       thread exists so that none of ours is interrupted. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct app_runtime rt;
    if (app_runtime_start(&rt, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "anic serve: %s\n", err);
        return 1;
    }
    print_banner(&rt, &cfg);
    if (ready_file) {
        FILE *f = fopen(ready_file, "w");
        if (f)
            fclose(f);
    }
    struct timespec ts = {.tv_sec = duration ? (time_t)duration : 0};
    int sig;
    do {
        sig = duration ? sigtimedwait(&set, NULL, &ts) : sigwaitinfo(&set, NULL);
    } while (sig < 0 && errno == EINTR);
    printf("anic: %s, shutting down\n", sig > 0 ? strsignal(sig) : "duration elapsed");
    app_runtime_stop(&rt);
    app_stats_print_table(&rt.stats, stdout);
    app_runtime_free(&rt);
    fflush(stdout);
    return 0;
}

/* The /bytes/N body, for checking downloads with standard tools. */
static int cmd_pattern(int argc, char **argv)
{
    char *end;
    errno = 0;
    unsigned long long n = argc == 2 ? strtoull(argv[1], &end, 10) : 0;
    if (argc != 2 || errno || end == argv[1] || *end) {
        fprintf(stderr, "usage: anic pattern N\n");
        return 2;
    }
    static unsigned char period[251 * 64];
    for (size_t i = 0; i < sizeof(period); i++)
        period[i] = (unsigned char)(i % 251);
    while (n) {
        size_t chunk = n < sizeof(period) ? (size_t)n : sizeof(period);
        if (fwrite(period, 1, chunk, stdout) != chunk)
            return 1;
        n -= chunk;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve"))
        return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "pattern"))
        return cmd_pattern(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench"))
        return bench_main(argc - 1, argv + 1);
    if (!strcmp(cmd, FLOWS_CLIENT_CMD)) /* internal: anic bench's many-flow client */
        return flows_client_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage_main(stdout);
        return 0;
    }
    fprintf(stderr, "anic: unknown command '%s'\n\n", cmd);
    usage_main(stderr);
    return 2;
}
