/*
 * bench.c - `anic bench`, four measurements:
 *
 * 1. Mode comparison (default): one process, one app_runtime with one
 *    listener per selected mode, curl as the client inside the bench's own
 *    network namespace. For every (mode, direction) it measures wall time
 *    around the curl run and the CPU time of this process's threads by class:
 *
 *      NIC  = threads whose name starts with "nic" (docs/design.md §2)
 *      host = every other thread, except the bench's own (main) thread, which
 *             only forks curl and waits for it
 *
 *    from /proc/self/task/TID/schedstat (ns on CPU) and .../stat (user/system
 *    split, clock ticks). curl's own CPU time comes from wait4().
 *
 * 2. TX loss sweep (--tx-loss-sweep): the same measurement, downloads only,
 *    once per loss value, each with its own app_runtime (the fault stage is
 *    fixed when the NIC is created): start, transfers, stop, free, next. The
 *    offload counters (offload_<policy>.tx_tls_dump_bytes and
 *    .tx_tls_retransmit_bytes) are read around every transfer.
 *
 * 3. RX sweeps (--rx-loss-sweep, --rx-reorder-sweep): the same, uploads only,
 *    one runtime per value of the kernel -> NIC fault stage ('loss P%' or
 *    'reorder P% gap 3'). Besides throughput and CPU, the record layer's
 *    classification of received records (tls_<mode>.rx_records_full_offload,
 *    _partial_offload, _no_offload) and the RX resync counters (offload_rx)
 *    are read around every upload: the share of records the NIC decrypted
 *    and authenticated entirely (docs/design.md §5).
 *
 * 4. Engine microbenchmark (--micro): bench_micro.c, no namespace at all.
 *
 * Signals: SIGINT/SIGTERM/SIGHUP/SIGCHLD are blocked in every thread (they
 * inherit the mask from the main thread, which blocks them before the first
 * runtime starts) and taken synchronously by the main thread with
 * sigtimedwait(), so an interrupt stops curl (by PID), tears the runtime down
 * and deletes the namespace. SIGPIPE is ignored.
 */
#define _GNU_SOURCE
#include "bench_load.h"
#include "bench_nginx.h"
#include "bench.h"
#include "app_http.h"
#include "app_runtime.h"
#include "app_stats.h"
#include "tls_record.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <lwip/tcpip.h>
#include <math.h>
#include <openssl/evp.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_DEFAULT_SIZE   (UINT64_C(256) << 20)
#define BENCH_SWEEP_SIZE     (UINT64_C(64) << 20)  /* a sweep without --size */
#define BENCH_MICRO_SIZE     (UINT64_C(1) << 30)   /* --micro without --size */
#define BENCH_MICRO_REPEAT   3u                    /* --micro without --repeat */
#define BENCH_INSTR_SIZE     (UINT64_C(256) << 20) /* --host-instr without --size */
#define BENCH_INSTR_MODES    "plain,nic"           /* --host-instr without --modes */
#define BENCH_DEFAULT_MODES  "plain,mbedtls,sw,nic,nic-tagcache"
#define BENCH_RX_SWEEP_MODES "plain,mbedtls,sw,nic" /* --rx-*-sweep without --modes */
#define BENCH_DEFAULT_LOSSES "0,0.5,1,2,5"
#define BENCH_REORDER_GAP    3u                   /* --rx-reorder-sweep: 'reorder P% gap 3' */
#define BENCH_MAX_RX_REORDER (UINT64_C(64) << 20) /* --rx-reorder-buf, as anic serve */
#define BENCH_DEFAULT_SEED   UINT64_C(1)
#define BENCH_DEFAULT_CSV    "anic-bench.csv"
#define BENCH_MAX_REPEAT     100u
#define BENCH_MAX_VALUES     16u
#define BENCH_MAX_TASKS      64u
#define BENCH_OUT_CAP        4096u
#define BENCH_WATCHDOG_S     30u /* beyond curl's own --max-time */
#define BENCH_MAXTIME_BASE_S 60.0
#define BENCH_MAXTIME_RATE   10e6 /* B/s assumed without faults; / (1 + P) under P % faults */
#define BENCH_SETTLE_MS      100u
#define BENCH_IDLE_WAIT_MS   3000u
#define BENCH_DESC_BYTES     64u /* a TX descriptor or a completion entry (nic/nic_abi.h) */
#define BENCH_MARK           "\n@@anic-bench@@ "
#define BENCH_MODE_W         12 /* width of a mode name column ("nic-tagcache") */
/* The sweep's target: nic throughput within 11 % of plain at 5 % TX loss. */
#define BENCH_TARGET_LOSS  5.0
#define BENCH_TARGET_RATIO 0.89
/* The RX sweeps' targets: records fully offloaded, and host CPU per byte. */
#define BENCH_RX_TARGET_REORDER     2.0  /* % RX reordering ... */
#define BENCH_RX_TARGET_REORDER_PCT 50.0 /* ... >= this % of records fully offloaded */
#define BENCH_RX_TARGET_LOSS        5.0  /* % RX loss ... */
#define BENCH_RX_TARGET_LOSS_PCT    60.0 /* ... >= this % */
#define BENCH_RX_TARGET_CPU_RATIO   1.15 /* offloaded upload host CPU/B <= this x plain's */
#define BENCH_PAPER_REF                                                                            \
    "paper (ASPLOS'21): 2% RX reordering -> 24% of records fully offloaded; 5% RX loss -> "        \
    "just over 50%"

enum sweep_kind { SWEEP_NONE, SWEEP_TX_LOSS, SWEEP_RX_LOSS, SWEEP_RX_REORDER };
static const char *const sweep_opt[] = {"", "tx-loss-sweep", "rx-loss-sweep", "rx-reorder-sweep"};

enum { DIR_DOWN, DIR_UP, DIR_COUNT };
/* --vs-nginx rows after the anic modes (row index n_modes + NGX_*). */
enum { NGX_HTTP, NGX_HTTPS, NGX_ROWS };
static const char *const ngx_name[NGX_ROWS] = {"nginx-http", "nginx-https"};
#define BENCH_NGX_UPLOAD "upload/body" /* PUT target under nginx's root (DAV) */
static const char *const dir_name[DIR_COUNT] = {"download", "upload"};

struct bench_opts {
    uint64_t size;
    bool size_set;
    enum tls_mode modes[APP_SERVER_MAX_LISTENERS];
    unsigned n_modes;
    bool modes_set;
    const char *csv_path;
    uint32_t mtu;
    uint32_t rcv_wnd;        /* --rcv-wnd (0 = the runtime's default) */
    uint32_t snd_buf;        /* --sndbuf (0 = the runtime's default) */
    int64_t irq_coalesce_us; /* --irq-coalesce-us (-1 = the runtime's default) */
    unsigned repeat;
    bool repeat_set;
    struct nic_fault_cfg fault_tx, fault_rx;
    bool fault_tx_set, fault_rx_set;
    uint32_t rx_reorder_bytes; /* --rx-reorder-buf (cfg.rx_reorder_bytes) */
    uint32_t record_size;      /* --record-size (cfg.record_size; 0 = 16384) */
    bool rx_reorder_set;
    bool rx_hint;                     /* --rx-resync hint */
    bool upload_sha256;               /* --upload-digest sha256 */
    struct tls_offload_policy policy; /* --offload-policy (default always) */
    unsigned offloads;                /* --offloads (APP_OFFLOAD_*) */
    enum sweep_kind sweep;
    double values[BENCH_MAX_VALUES]; /* the sweep's percentages */
    unsigned n_values;
    uint64_t seed;   /* --seed: the runtime's (fault-tx S, fault-rx S+1) */
    bool micro;      /* --micro */
    bool vs_nginx;   /* --vs-nginx */
    bool host_instr; /* --host-instr */
};

/* CPU time of this process's threads, by class, over one transfer. */
struct cpu_use {
    double host_s, host_user_s, host_sys_s;
    double nic_s, nic_user_s, nic_sys_s;
    double client_s; /* curl (user + system), from wait4() */
};

/* Counter deltas over one transfer (app_stats). */
struct ctr_delta {
    bool offload;        /* the mode is nic or nic-tagcache: dump/retransmit are its policy's */
    uint64_t dump_bytes; /* offload_<policy>.tx_tls_dump_bytes */
    uint64_t retx_bytes; /* offload_<policy>.tx_tls_retransmit_bytes */
    /* Host <-> NIC traffic beyond the payload (a PCIe proxy), NIC-wide:
       nic_tls.tx_tls_ooo (PROGRESS descriptors), .tx_tls_dump_packets (DUMP
       descriptors), .tx_tls_tag_reports (completions carrying a tag). */
    uint64_t progress_descs, dump_descs, tag_reports;
    uint64_t tx_records; /* tls_<mode>.tx_records: records the server sealed or framed */
    uint64_t tx_pkts;    /* fault_tx.packets_in: packets the NIC put on the wire */
    uint64_t tx_dropped; /* fault_tx.dropped: ... and the fault stage dropped */
    uint64_t rx_pkts;    /* fault_rx.packets_in: packets the kernel sent to the NIC */
    uint64_t rx_dropped, rx_reordered; /* fault_rx.dropped, .reordered */
    bool records; /* the mode runs anic's record layer (sw, nic, nic-tagcache) */
    uint64_t rec_full, rec_partial, rec_none; /* tls_<mode>.rx_records_{full,partial,no}_offload */
    uint64_t resync_req, resync_ok; /* offload_rx.rx_resync_requests, .TlsRxDeviceResync */
    /* tls_<mode>.tx_bytes_copied, .tx_bytes_plaintext: memcpy'd bytes per payload byte */
    uint64_t tx_copied, tx_plain;
};

struct run {
    bool ok;
    char reason[200];
    double seconds;
    double mbps; /* 10^6 bytes per second */
    struct cpu_use cpu;
    struct ctr_delta ctr;
};

struct cell {
    struct run runs[BENCH_MAX_REPEAT];
    unsigned n_runs;
    bool failed;
    const struct run *shown; /* the median run, or the failed one */
};

struct bench {
    struct bench_opts o;
    struct app_runtime rt;
    bool runtime;      /* rt is up */
    double cur_loss;   /* loss_pct of the running runtime's TX fault stage */
    char rx_fault[64]; /* the running RX stage's loss/reorder, e.g. "reorder 2% gap 3" */
    char netns[64];
    char ca_path[128];
    char upload_path[128];
    char host[INET_ADDRSTRLEN];
    char fault_tx[NIC_FAULT_FMT_LEN], fault_rx[NIC_FAULT_FMT_LEN];
    char expect_hex[2 * 32 + 2]; /* upload digest of size zero bytes, hex + '\n' */
    uint16_t ports[APP_SERVER_MAX_LISTENERS];
    FILE *csv;
    sigset_t sigs, old_mask;
    int stop_sig; /* SIGINT/SIGTERM/SIGHUP received */
    pid_t self_tid;
    long clk_tck;
    struct cell cells[APP_SERVER_MAX_LISTENERS + NGX_ROWS][DIR_COUNT]; /* rows: row_name() */
    /* --vs-nginx: nginx on the namespace's loopback, its files and certificate
       (also anic's, so both serve the same ECDSA P-256 leaf) in ng_dir. */
    struct bench_nginx ng;
    char ng_dir[64], ng_cert[96], ng_key[96];
    /* Sweeps: downloads (TX) or uploads (RX), one runtime per value. */
    struct cell sweep[BENCH_MAX_VALUES][APP_SERVER_MAX_LISTENERS];
    bool sweep_ran[BENCH_MAX_VALUES];
};

/* ---- options ---- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: anic bench [options]\n"
        "       anic bench --tx-loss-sweep [LIST] [options]\n"
        "       anic bench --rx-loss-sweep [LIST] | --rx-reorder-sweep [LIST] [options]\n"
        "       anic bench --micro [--size BYTES] [--repeat N]\n"
        "       anic bench --vs-nginx [options]\n"
        "       anic bench --host-instr [--modes LIST] [--size BYTES]\n"
        "\n"
        "Measures every selected mode side by side in one run: one process, one\n"
        "private network namespace (anic-bench-PID, created here and deleted at the end),\n"
        "one TUN device, the simulated NIC and the lwIP host with one listener per mode\n"
        "(plain on port 80, TLS mode M on port 4430+M: mbedtls 4431, sw 4432, nic 4433,\n"
        "nic-tagcache 4434). The client is curl, run inside the namespace\n"
        "(ip netns exec).\n"
        "\n"
        "For each mode: a download (GET /bytes/SIZE, HTTP 200 and SIZE bytes required)\n"
        "and an upload (PUT /upload?digest=crc32c of a sparse file of SIZE zero bytes;\n"
        "the answer must be the CRC32C of SIZE zero bytes; --upload-digest). Each\n"
        "transfer is timed with CLOCK_MONOTONIC around the curl run (started with\n"
        "posix_spawn), and the CPU time of this process's threads is read from\n"
        "/proc/self/task/*/schedstat (user/system split from .../stat) before and after:\n"
        "  NIC   threads whose name starts with \"nic\" (the simulated device)\n"
        "  host  every other thread (lwIP, driver, TLS, HTTP), except the bench's own\n"
        "        main thread, which only starts curl and waits\n"
        "The NIC's system time includes the peer kernel's TCP work behind each TUN\n"
        "read/write, so NIC user time is also reported on its own. MB/s = 10^6 B/s,\n"
        "s/GB = CPU seconds per 10^9 bytes.\n"
        "\n"
        "  --size BYTES      bytes per transfer (default 256M; 64M with a sweep;\n"
        "                      with --micro: record bytes per engine run, default 1G);\n"
        "                      suffix K, M, G (KiB, MiB, GiB), at most 1T\n"
        "  --modes LIST      comma-separated modes, run in this order\n"
        "                      (default " BENCH_DEFAULT_MODES ";\n"
        "                      plain = no TLS; nic = TX offload, dump resync;\n"
        "                      nic-tagcache = TX offload, tag-cache resync;\n"
        "                      RX sweeps: default " BENCH_RX_SWEEP_MODES ")\n"
        "  --csv FILE        write every successful measurement to FILE\n"
        "                      (default ./" BENCH_DEFAULT_CSV "; '-' = no CSV)\n"
        "  --mtu N           link MTU (default 1500, 576..9000)\n"
        "  --rcv-wnd BYTES   lwIP's TCP receive window per connection (65535..4194240,\n"
        "                      default 524280, as anic serve --help says)\n"
        "  --sndbuf BYTES    lwIP's TCP send buffer per connection (8192..1048576,\n"
        "                      default as anic serve --help says)\n"
        "  --irq-coalesce-us N\n"
        "                    NIC interrupt moderation, as anic serve's (0..100000)\n"
        "  --offloads LIST   segmentation and checksum offloads: tso,gso,lro,csum\n"
        "                      (default) or none\n"
        "  --repeat N        run every transfer N times (1..%u, default 1), rounds\n"
        "                      interleaved over modes; the table shows the run with the\n"
        "                      median throughput (lower median for even N) and its CPU\n"
        "                      (--micro: every engine run N times, default 3, median\n"
        "                      engine time)\n"
        "  --fault-tx SPEC   faults NIC -> kernel, as in anic serve, e.g.\n"
        "                      'loss 1%% reorder 2%% gap 3 seed 7' (seeds are printed)\n"
        "  --fault-rx SPEC   faults kernel -> NIC, same vocabulary\n"
        "  --rx-reorder-buf BYTES\n"
        "                    NIC RX: ciphertext held per flow across a hole (suffix K/M,\n"
        "                      at most 64M; default the runtime's, 256K); 0 = the\n"
        "                      paper's NIC, which keeps nothing and resyncs instead\n"
        "  --record-size BYTES\n"
        "                    plaintext bytes per TLS record the server sends (1..16K,\n"
        "                      suffix K; default 16K); every TLS mode\n"
        "  --upload-digest crc32c|sha256\n"
        "                    what anic's upload handler computes over the body, the\n"
        "                      bench's check that every byte arrived (default crc32c:\n"
        "                      SSE4.2, ~0.07 s/GB on the host thread, less than nginx\n"
        "                      spends storing the body; sha256: 0.5 s/GB with SHA-NI,\n"
        "                      which then bounds an upload on the single host thread)\n"
        "  --rx-resync nic|hint\n"
        "                    how the NIC finds records again after losing track: nic =\n"
        "                      its own search/track/resync request (default), hint =\n"
        "                      the host posts next-record hints\n"
        "  --offload-policy always|after:BYTES|auto[:INSTALL_NS,SW_PS,NIC_PS]\n"
        "                    which nic-mode connections get NIC contexts, from when\n"
        "                      (anic serve --help; default always)\n"
        "  --tx-loss-sweep [LIST]\n"
        "                    downloads only, once per TX loss value in LIST (percent,\n"
        "                      comma-separated, 0..100, default " BENCH_DEFAULT_LOSSES "):\n"
        "                      for each value a fresh runtime (namespace, TUN, NIC,\n"
        "                      host) with --fault-tx 'loss P%%' (seed S), every mode as a\n"
        "                      listener, one download of SIZE per mode. The seed is the\n"
        "                      same at every loss value; the modes of one loss value\n"
        "                      share its fault stage, so each sees a different stretch\n"
        "                      of the same random stream. Reports per (loss, mode):\n"
        "                      MB/s, throughput vs plain at that loss, host and NIC CPU\n"
        "                      s/GB, the measured drop rate and, for nic modes, the\n"
        "                      resync cost: dump bytes per retransmitted byte (deltas\n"
        "                      of offload_<policy>.tx_tls_dump_bytes and\n"
        "                      .tx_tls_retransmit_bytes). Checks the target: nic within\n"
        "                      11%% of plain at 5%% loss. Not with --fault-tx.\n"
        "  --rx-loss-sweep [LIST]\n"
        "  --rx-reorder-sweep [LIST]\n"
        "                    uploads only, once per RX fault value in LIST (percent,\n"
        "                      default " BENCH_DEFAULT_LOSSES "): a fresh runtime per value with\n"
        "                      --fault-rx 'loss P%%' or 'reorder P%% gap %u' (seed S+1),\n"
        "                      one upload of SIZE per mode. Reports per (value, mode):\n"
        "                      MB/s, host and NIC CPU s/GB, host CPU vs plain, the\n"
        "                      measured drop/reorder rate and, for modes with anic's\n"
        "                      record layer (sw, nic, nic-tagcache), the received records\n"
        "                      fully / partially decrypted by the NIC (deltas of\n"
        "                      tls_<mode>.rx_records_{full,partial,no}_offload) and the\n"
        "                      NIC's resync requests / host confirmations (offload_rx).\n"
        "                      Prints the paper's figures and checks the targets: >= %.0f%%\n"
        "                      fully offloaded at %g%% reordering, >= %.0f%% at %g%% loss, host\n"
        "                      CPU per byte of an offloaded upload within %.0f%% of plain.\n"
        "                      Not with --fault-rx.\n"
        "  --seed S          the run's seed, every run and sweep (default %" PRIu64 "):\n"
        "                      fault-tx uses S, fault-rx S+1, unless a SPEC names its own\n"
        "  --micro           microbenchmark of the NIC engine alone: no namespace, no\n"
        "                      TUN, no thread; the bench thread feeds the product's\n"
        "                      driver (stack_driver + the offload hook of\n"
        "                      stack_tls_offload, context via app_tls_offload_ops) and\n"
        "                      times nic_dev_poll_once() with CLOCK_THREAD_CPUTIME_ID\n"
        "                      while pushing 16 KiB TLS records as 1448-byte TCP\n"
        "                      segments, offloaded and not, over a socketpair and over\n"
        "                      /dev/null as the link, and as 64 KiB TSO segments over\n"
        "                      /dev/null in GSO mode; host c/B = host bytes memcpy'd per\n"
        "                      plaintext byte, nic c/B = nic.tx_bytes_copied per record\n"
        "                      byte; compared with\n"
        "                      'openssl speed -evp aes-128-gcm' at 16 KiB. Needs no root.\n"
        "  --host-instr      the host's work per byte as instructions: each mode's\n"
        "                      (default plain,nic) download and upload of SIZE (default\n"
        "                      256M) once under valgrind's callgrind; instructions per\n"
        "                      byte of the host's data path (the stack-irq thread:\n"
        "                      driver, lwIP, tls/), its ratio to plain and the target\n"
        "                      nic / plain <= 1.05x; lwIP's timer thread, the handshake\n"
        "                      workers and the NIC engine apart. Nearly the same every\n"
        "                      run, unlike CPU seconds on a small shared machine, but\n"
        "                      without syscalls and cache misses. Needs valgrind\n"
        "                      (scripts/deps.sh).\n"
        "  --vs-nginx        also measure nginx (Debian nginx-light, started here on the\n"
        "                      namespace's loopback, stopped by PID) as rows nginx-http\n"
        "                      (127.0.0.1:8080) and nginx-https (8443): the same file\n"
        "                      size, the same ECDSA P-256 certificate (anic serves it\n"
        "                      too), TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256; download of\n"
        "                      a file of SIZE bytes, upload = WebDAV PUT of SIZE bytes\n"
        "                      (nginx reads the whole body into a file; its size is\n"
        "                      checked). nginx's host CPU = its processes' CPU time\n"
        "                      (master and workers, kernel TCP work included); adds the\n"
        "                      column MB/s vs nginx (plain vs nginx-http, TLS modes vs\n"
        "                      nginx-https). Files in /dev/shm. Not with the sweeps\n"
        "  -h, --help        this text\n"
        "\n"
        "CSV columns: mode,direction,size_bytes,seconds,mbps,host_cpu_s,nic_cpu_s,\n"
        "nic_user_s,host_cpu_s_per_gb,nic_cpu_s_per_gb,fault_tx,fault_rx,tx_loss_pct,\n"
        "dump_bytes,retransmit_bytes,rx_fault,records_full_pct,records_partial_pct,\n"
        "rx_reorder_bytes,rx_resync,record_size,progress_descs,dump_descs,tag_reports,\n"
        "host_nic_extra_bytes,tx_records,tx_bytes_copied,copies_per_byte (one row per\n"
        "successful transfer, sweeps\n"
        "included; tx_records = records the server sent, TLS modes only;\n"
        "tx_bytes_copied = delta of tls_<mode>.tx_bytes_copied, copies_per_byte = that\n"
        "per application byte sent (downloads of TLS modes; the table's copies/B);\n"
        "mode is nginx-http or nginx-https for the --vs-nginx rows;\n"
        "dump_bytes/retransmit_bytes and the last five only for nic modes;\n"
        "host_nic_extra_bytes = dump bytes + 64 B per PROGRESS/DUMP descriptor and tag\n"
        "report, a PCIe proxy; rx_fault = the RX stage's loss\n"
        "and reorder, e.g. 'reorder 2%% gap 3', or 'none'; records_*_pct only for uploads\n"
        "of sw/nic/nic-tagcache; failed transfers are only in the table). --micro writes\n"
        "no CSV.\n"
        "\n"
        "curl gets --max-time 60 s + SIZE at 10 MB/s / (1 + P), P = loss + reorder %%\n"
        "of the fault stage the data crosses (TX for downloads, RX for uploads): a TCP\n"
        "sender without SACK slows down under loss. A failed transfer (curl error,\n"
        "HTTP status, wrong size, wrong digest) shows as FAILED with the reason and\n"
        "makes the exit status 1. Exit status 2: bad options. SIGINT/SIGTERM stop the\n"
        "running curl, clean up (namespace, temporary files) and exit 128+signal.\n"
        "Needs root, iproute2 and curl (except --micro).\n",
        BENCH_MAX_REPEAT, BENCH_REORDER_GAP, BENCH_RX_TARGET_REORDER_PCT, BENCH_RX_TARGET_REORDER,
        BENCH_RX_TARGET_LOSS_PCT, BENCH_RX_TARGET_LOSS, (BENCH_RX_TARGET_CPU_RATIO - 1) * 100,
        BENCH_DEFAULT_SEED);
}

enum {
    OPT_SIZE = 256,
    OPT_MODES,
    OPT_CSV,
    OPT_MTU,
    OPT_RCV_WND,
    OPT_SNDBUF,
    OPT_IRQ_COALESCE,
    OPT_REPEAT,
    OPT_FAULT_TX,
    OPT_FAULT_RX,
    OPT_SWEEP,
    OPT_RX_LOSS_SWEEP,
    OPT_RX_REORDER_SWEEP,
    OPT_RX_REORDER_BUF,
    OPT_RX_RESYNC,
    OPT_UPLOAD_DIGEST,
    OPT_OFFLOAD_POLICY,
    OPT_RECORD_SIZE,
    OPT_SEED,
    OPT_MICRO,
    OPT_OFFLOADS,
    OPT_VS_NGINX,
    OPT_HOST_INSTR,
};

static const struct option bench_opts_long[] = {
    {"size", required_argument, NULL, OPT_SIZE},
    {"modes", required_argument, NULL, OPT_MODES},
    {"csv", required_argument, NULL, OPT_CSV},
    {"mtu", required_argument, NULL, OPT_MTU},
    {"rcv-wnd", required_argument, NULL, OPT_RCV_WND},
    {"sndbuf", required_argument, NULL, OPT_SNDBUF},
    {"irq-coalesce-us", required_argument, NULL, OPT_IRQ_COALESCE},
    {"repeat", required_argument, NULL, OPT_REPEAT},
    {"fault-tx", required_argument, NULL, OPT_FAULT_TX},
    {"fault-rx", required_argument, NULL, OPT_FAULT_RX},
    {"tx-loss-sweep", optional_argument, NULL, OPT_SWEEP},
    {"rx-loss-sweep", optional_argument, NULL, OPT_RX_LOSS_SWEEP},
    {"rx-reorder-sweep", optional_argument, NULL, OPT_RX_REORDER_SWEEP},
    {"rx-reorder-buf", required_argument, NULL, OPT_RX_REORDER_BUF},
    {"rx-resync", required_argument, NULL, OPT_RX_RESYNC},
    {"upload-digest", required_argument, NULL, OPT_UPLOAD_DIGEST},
    {"offload-policy", required_argument, NULL, OPT_OFFLOAD_POLICY},
    {"record-size", required_argument, NULL, OPT_RECORD_SIZE},
    {"seed", required_argument, NULL, OPT_SEED},
    {"micro", no_argument, NULL, OPT_MICRO},
    {"offloads", required_argument, NULL, OPT_OFFLOADS},
    {"vs-nginx", no_argument, NULL, OPT_VS_NGINX},
    {"host-instr", no_argument, NULL, OPT_HOST_INSTR},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int bad(const char *opt, const char *val, const char *why)
{
    fprintf(stderr, "anic bench: invalid value for --%s: '%s'%s%s (see anic bench --help)\n", opt,
            val, why ? ": " : "", why ? why : "");
    return 2;
}

/* Decimal digits with an optional K/M/G/T suffix (binary; "KiB", "MB" etc. also
   accepted and also binary). */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 0:
        break;
    case 'K':
        shift = 10;
        break;
    case 'M':
        shift = 20;
        break;
    case 'G':
        shift = 30;
        break;
    case 'T':
        shift = 40;
        break;
    default:
        return -1;
    }
    if (shift) {
        end++;
        if (!strcasecmp(end, "iB") || !strcasecmp(end, "B"))
            end += strlen(end);
    }
    if (*end)
        return -1;
    if (v > (APP_HTTP_BYTES_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_modes(const char *s, struct bench_opts *o)
{
    char buf[256];
    if (strlen(s) >= sizeof(buf))
        return bad("modes", s, "too long");
    snprintf(buf, sizeof(buf), "%s", s);
    o->n_modes = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int m = app_mode_parse(tok);
        if (m < 0) {
            char why[300];
            snprintf(why, sizeof(why), "unknown mode '%s'", tok);
            return bad("modes", s, why);
        }
        for (unsigned i = 0; i < o->n_modes; i++)
            if (o->modes[i] == (enum tls_mode)m)
                return bad("modes", s, "a mode is listed twice");
        if (o->n_modes == APP_SERVER_MAX_LISTENERS)
            return bad("modes", s, "too many modes");
        o->modes[o->n_modes++] = (enum tls_mode)m;
    }
    if (o->n_modes == 0)
        return bad("modes", s, "no mode");
    return 0;
}

/* "0,0.5,1%,2,5": percentages 0..100, each at most once, in this order; opt
   names the option in messages. */
static int parse_values(const char *opt, const char *s, struct bench_opts *o)
{
    char buf[256];
    if (strlen(s) >= sizeof(buf))
        return bad(opt, s, "too long");
    snprintf(buf, sizeof(buf), "%s", s);
    o->n_values = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        if (!isdigit((unsigned char)tok[0]) && tok[0] != '.')
            return bad(opt, s, "expected percentages 0..100, e.g. 0,0.5,1,2,5");
        errno = 0;
        double v = strtod(tok, &end);
        if (*end == '%')
            end++;
        if (errno || *end || !isfinite(v) || v < 0 || v > 100)
            return bad(opt, s, "expected percentages 0..100, e.g. 0,0.5,1,2,5");
        for (unsigned i = 0; i < o->n_values; i++)
            if (o->values[i] == v)
                return bad(opt, s, "a value is listed twice");
        if (o->n_values == BENCH_MAX_VALUES) {
            char why[64];
            snprintf(why, sizeof(why), "at most %u values", BENCH_MAX_VALUES);
            return bad(opt, s, why);
        }
        o->values[o->n_values++] = v;
    }
    if (o->n_values == 0)
        return bad(opt, s, "no value");
    return 0;
}

/* Returns 0 to run, 1 for --help (exit 0), 2 for an error (message printed). */
static int parse_opts(int argc, char **argv, struct bench_opts *o)
{
    char err[256];
    unsigned long v;
    int c, rc;

    memset(o, 0, sizeof(*o));
    o->size = BENCH_DEFAULT_SIZE;
    o->csv_path = BENCH_DEFAULT_CSV;
    o->mtu = 1500;
    o->offloads = APP_OFFLOAD_ALL;
    o->irq_coalesce_us = -1;
    o->repeat = 1;
    o->seed = BENCH_DEFAULT_SEED;
    nic_fault_cfg_init(&o->fault_tx);
    nic_fault_cfg_init(&o->fault_rx);
    if ((rc = parse_modes(BENCH_DEFAULT_MODES, o)) != 0)
        return rc;

    optind = 1;
    opterr = 0; /* our own message: argv[0] is "bench" here */
    while ((c = getopt_long(argc, argv, "h", bench_opts_long, NULL)) != -1) {
        switch (c) {
        case OPT_SIZE:
            if (parse_size(optarg, &o->size) < 0 || o->size == 0)
                return bad("size", optarg, "expected 1..1T bytes, suffix K/M/G/T");
            o->size_set = true;
            break;
        case OPT_MODES:
            if ((rc = parse_modes(optarg, o)) != 0)
                return rc;
            o->modes_set = true;
            break;
        case OPT_CSV:
            if (!optarg[0])
                return bad("csv", optarg, "empty file name");
            o->csv_path = optarg;
            break;
        case OPT_OFFLOADS:
            if (app_offloads_parse(optarg, &o->offloads) < 0)
                return bad("offloads", optarg, "expected a list of tso, gso, lro, or none");
            break;
        case OPT_MTU:
            if (parse_uint(optarg, 576, 9000, &v) < 0)
                return bad("mtu", optarg, "expected 576..9000");
            o->mtu = (uint32_t)v;
            break;
        case OPT_RCV_WND:
            if (parse_uint(optarg, 65535, 4194240, &v) < 0)
                return bad("rcv-wnd", optarg, "expected 65535..4194240");
            o->rcv_wnd = (uint32_t)v;
            break;
        case OPT_SNDBUF:
            if (parse_uint(optarg, 8192, 1u << 20, &v) < 0)
                return bad("sndbuf", optarg, "expected 8192..1048576");
            o->snd_buf = (uint32_t)v;
            break;
        case OPT_IRQ_COALESCE:
            if (parse_uint(optarg, 0, 100000, &v) < 0)
                return bad("irq-coalesce-us", optarg, "expected 0..100000");
            o->irq_coalesce_us = (int64_t)v;
            break;
        case OPT_REPEAT:
            if (parse_uint(optarg, 1, BENCH_MAX_REPEAT, &v) < 0) {
                snprintf(err, sizeof(err), "expected 1..%u", BENCH_MAX_REPEAT);
                return bad("repeat", optarg, err);
            }
            o->repeat = (unsigned)v;
            o->repeat_set = true;
            break;
        case OPT_FAULT_TX:
        case OPT_FAULT_RX:
            if (nic_fault_cfg_parse(c == OPT_FAULT_TX ? &o->fault_tx : &o->fault_rx, optarg, err,
                                    sizeof(err)) < 0) {
                fprintf(stderr, "anic bench: --%s: %s\n",
                        c == OPT_FAULT_TX ? "fault-tx" : "fault-rx", err);
                return 2;
            }
            if (c == OPT_FAULT_TX)
                o->fault_tx_set = true;
            else
                o->fault_rx_set = true;
            break;
        case OPT_SWEEP:
        case OPT_RX_LOSS_SWEEP:
        case OPT_RX_REORDER_SWEEP: {
            enum sweep_kind k = c == OPT_SWEEP           ? SWEEP_TX_LOSS
                                : c == OPT_RX_LOSS_SWEEP ? SWEEP_RX_LOSS
                                                         : SWEEP_RX_REORDER;
            if (o->sweep != SWEEP_NONE && o->sweep != k) {
                fprintf(stderr, "anic bench: --%s and --%s are separate runs\n",
                        sweep_opt[o->sweep], sweep_opt[k]);
                return 2;
            }
            /* The list is optional: "--tx-loss-sweep=LIST", or "--tx-loss-sweep
               LIST" when the next word is a number (no positional arguments
               exist, so that word cannot mean anything else). */
            const char *list = optarg;
            if (!list && optind < argc &&
                (isdigit((unsigned char)argv[optind][0]) || argv[optind][0] == '.'))
                list = argv[optind++];
            if ((rc = parse_values(sweep_opt[k], list ? list : BENCH_DEFAULT_LOSSES, o)) != 0)
                return rc;
            o->sweep = k;
            break;
        }
        case OPT_RECORD_SIZE: {
            uint64_t bytes;
            if (parse_size(optarg, &bytes) < 0 || bytes < 1 || bytes > TLS_MAX_PLAINTEXT)
                return bad("record-size", optarg, "expected 1..16K plaintext bytes");
            o->record_size = (uint32_t)bytes;
            break;
        }
        case OPT_RX_REORDER_BUF: {
            uint64_t bytes;
            if (parse_size(optarg, &bytes) < 0 || bytes > BENCH_MAX_RX_REORDER)
                return bad("rx-reorder-buf", optarg, "expected 0..64M bytes, suffix K/M");
            o->rx_reorder_bytes = (uint32_t)bytes;
            o->rx_reorder_set = true;
            break;
        }
        case OPT_RX_RESYNC:
            if (!strcmp(optarg, "nic"))
                o->rx_hint = false;
            else if (!strcmp(optarg, "hint"))
                o->rx_hint = true;
            else
                return bad("rx-resync", optarg, "expected nic or hint");
            break;
        case OPT_UPLOAD_DIGEST:
            if (!strcmp(optarg, "crc32c"))
                o->upload_sha256 = false;
            else if (!strcmp(optarg, "sha256"))
                o->upload_sha256 = true;
            else
                return bad("upload-digest", optarg, "expected crc32c or sha256");
            break;
        case OPT_SEED:
            if (nic_fault_seed_parse(optarg, &o->seed, err, sizeof(err)) < 0) {
                fprintf(stderr, "anic bench: --seed: %s\n", err);
                return 2;
            }
            break;
        case OPT_OFFLOAD_POLICY:
            if (tls_offload_policy_parse(optarg, &o->policy) < 0)
                return bad("offload-policy", optarg,
                           "expected always, after:BYTES or auto[:INSTALL_NS,SW_PS,NIC_PS]");
            break;
        case OPT_MICRO:
            o->micro = true;
            break;
        case OPT_VS_NGINX:
            o->vs_nginx = true;
            break;
        case OPT_HOST_INSTR:
            o->host_instr = true;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            fprintf(stderr,
                    "anic bench: unknown option or missing value: '%s' (see anic bench --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "anic bench: unexpected argument '%s' (see anic bench --help)\n",
                argv[optind]);
        return 2;
    }
    if (o->micro && o->sweep) {
        fprintf(stderr, "anic bench: --micro and --%s are separate runs\n", sweep_opt[o->sweep]);
        return 2;
    }
    if (o->host_instr && (o->micro || o->sweep || o->vs_nginx)) {
        fprintf(stderr, "anic bench: --host-instr is a run of its own (not with --micro, "
                        "--vs-nginx or a sweep)\n");
        return 2;
    }
    if (o->host_instr && !o->modes_set && (rc = parse_modes(BENCH_INSTR_MODES, o)) != 0)
        return rc;
    if (o->vs_nginx && (o->micro || o->sweep)) {
        fprintf(stderr, "anic bench: --vs-nginx is for the mode comparison (not with --micro "
                        "or a sweep)\n");
        return 2;
    }
    if (o->sweep == SWEEP_TX_LOSS && o->fault_tx_set) {
        fprintf(stderr, "anic bench: --fault-tx conflicts with --tx-loss-sweep "
                        "(the sweep sets the TX fault stage; --fault-rx is allowed)\n");
        return 2;
    }
    if ((o->sweep == SWEEP_RX_LOSS || o->sweep == SWEEP_RX_REORDER) && o->fault_rx_set) {
        fprintf(stderr,
                "anic bench: --fault-rx conflicts with --%s "
                "(the sweep sets the RX fault stage; --fault-tx is allowed)\n",
                sweep_opt[o->sweep]);
        return 2;
    }
    if ((o->sweep == SWEEP_RX_LOSS || o->sweep == SWEEP_RX_REORDER) && !o->modes_set &&
        (rc = parse_modes(BENCH_RX_SWEEP_MODES, o)) != 0)
        return rc;
    if (!o->size_set)
        o->size = o->micro        ? BENCH_MICRO_SIZE
                  : o->host_instr ? BENCH_INSTR_SIZE
                  : o->sweep      ? BENCH_SWEEP_SIZE
                                  : BENCH_DEFAULT_SIZE;
    if (o->micro && !o->repeat_set)
        o->repeat = BENCH_MICRO_REPEAT;
    return 0;
}

/* ---- small helpers ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n;
    do
        n = read(fd, buf, cap - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return n;
}

/* A pending SIGINT/SIGTERM/SIGHUP (they are blocked): remember it. */
static bool stop_requested(struct bench *b)
{
    if (!b->stop_sig) {
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGINT);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGHUP);
        struct timespec zero = {0, 0};
        int sig = sigtimedwait(&stop, NULL, &zero);
        if (sig > 0)
            b->stop_sig = sig;
    }
    return b->stop_sig != 0;
}

/* ---- machine description ---- */

static void cpu_model(char *buf, size_t cap)
{
    snprintf(buf, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "re");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        colon++;
        while (*colon == ' ' || *colon == '\t')
            colon++;
        colon[strcspn(colon, "\n")] = 0;
        snprintf(buf, cap, "%s", colon);
        break;
    }
    fclose(f);
}

/* ---- per-thread CPU ---- */

enum { CLS_SELF, CLS_HOST, CLS_NIC };

struct task_cpu {
    pid_t tid;
    int cls;
    uint64_t run_ns;
    uint64_t utick, stick;
};

struct cpu_snap {
    unsigned n;
    struct task_cpu t[BENCH_MAX_TASKS];
};

static void cpu_snapshot(const struct bench *b, struct cpu_snap *s)
{
    s->n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && s->n < BENCH_MAX_TASKS) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        struct task_cpu *t = &s->t[s->n];
        char path[300], buf[1024];
        memset(t, 0, sizeof(*t));
        t->tid = (pid_t)atoi(de->d_name);
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
        if (read_small(path, buf, sizeof(buf)) < 0)
            continue; /* exited meanwhile */
        if (t->tid == b->self_tid)
            t->cls = CLS_SELF;
        else
            t->cls = strncmp(buf, "nic", 3) == 0 ? CLS_NIC : CLS_HOST;
        snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", de->d_name);
        if (read_small(path, buf, sizeof(buf)) < 0)
            continue;
        t->run_ns = strtoull(buf, NULL, 10);
        snprintf(path, sizeof(path), "/proc/self/task/%s/stat", de->d_name);
        if (read_small(path, buf, sizeof(buf)) < 0)
            continue;
        /* comm may hold spaces and parentheses: fields restart after the last ')'.
           Then: state(3) ... utime(14) stime(15). */
        char *p = strrchr(buf, ')');
        if (!p)
            continue;
        p++;
        for (int field = 3; field <= 13 && p; field++) {
            p = strchr(p + 1, ' ');
        }
        if (!p)
            continue;
        char *end;
        t->utick = strtoull(p, &end, 10);
        t->stick = strtoull(end, NULL, 10);
        s->n++;
    }
    closedir(d);
}

static void cpu_delta(const struct bench *b, const struct cpu_snap *before,
                      const struct cpu_snap *after, struct cpu_use *u)
{
    double tck = (double)b->clk_tck;
    for (unsigned i = 0; i < after->n; i++) {
        const struct task_cpu *a = &after->t[i];
        struct task_cpu z = {0};
        const struct task_cpu *p = &z;
        for (unsigned j = 0; j < before->n; j++)
            if (before->t[j].tid == a->tid)
                p = &before->t[j];
        double run = a->run_ns >= p->run_ns ? (double)(a->run_ns - p->run_ns) * 1e-9 : 0;
        double user = a->utick >= p->utick ? (double)(a->utick - p->utick) / tck : 0;
        double sys = a->stick >= p->stick ? (double)(a->stick - p->stick) / tck : 0;
        if (a->cls == CLS_NIC) {
            u->nic_s += run;
            u->nic_user_s += user;
            u->nic_sys_s += sys;
        } else if (a->cls == CLS_HOST) {
            u->host_s += run;
            u->host_user_s += user;
            u->host_sys_s += sys;
        }
    }
}

/* CPU seconds (run time, user, system) of one process's main thread. */
struct proc_cpu {
    double run_s, user_s, sys_s;
};

static void proc_cpu_add(const struct bench *b, pid_t pid, struct proc_cpu *acc)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
    if (read_small(path, buf, sizeof(buf)) < 0)
        return;
    double run = (double)strtoull(buf, NULL, 10) * 1e-9;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (read_small(path, buf, sizeof(buf)) < 0)
        return;
    char *p = strrchr(buf, ')'); /* fields restart after comm: utime(14) stime(15) */
    if (p)
        p++; /* the space before field 3 */
    for (int field = 3; field <= 13 && p; field++)
        p = strchr(p + 1, ' ');
    if (!p)
        return;
    char *end;
    unsigned long long ut = strtoull(p, &end, 10), st = strtoull(end, NULL, 10);
    acc->run_s += run;
    acc->user_s += (double)ut / (double)b->clk_tck;
    acc->sys_s += (double)st / (double)b->clk_tck;
}

/* nginx's master and its workers (single-threaded processes, listed in the
   master's /proc/PID/task/PID/children): their CPU counts as nginx's host
   CPU, kernel TCP work done in their system calls included. */
static void nginx_cpu(const struct bench *b, struct proc_cpu *c)
{
    memset(c, 0, sizeof(*c));
    if (b->ng.pid <= 0)
        return;
    proc_cpu_add(b, b->ng.pid, c);
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)b->ng.pid, (int)b->ng.pid);
    if (read_small(path, buf, sizeof(buf)) < 0)
        return;
    for (char *q = buf, *end; *q; q = end) {
        long pid = strtol(q, &end, 10);
        if (end == q)
            break;
        if (pid > 0)
            proc_cpu_add(b, (pid_t)pid, c);
    }
}

/* ---- running curl ---- */

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

/*
 * Start argv with stdout on out_fd and stdin on /dev/null; wait for it, at
 * most watchdog_s seconds (then SIGKILL). SIGINT/SIGTERM/SIGHUP meanwhile are
 * remembered and passed on to the child as SIGTERM. Returns 0 and the wait
 * status, or -1 with errno if it could not be started.
 *
 * posix_spawn, not fork: glibc's shares the address space until the exec
 * (CLONE_VM | CLONE_VFORK). A fork would write-protect every page of this
 * process, and the running NIC and host would then take a page fault on the
 * first write to each of their buffers. Under a paravirtualised MMU that cost
 * 0.1-0.2 s of the NIC thread per transfer, inside the timed window: 256 MiB
 * uploads ran 30 % slower than the same upload started from a shell.
 */
static int run_child(struct bench *b, char *const argv[], int out_fd, double watchdog_s,
                     int *status, struct rusage *ru, double *t0, double *t1, bool *killed)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t dfl;
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&attr, &b->old_mask);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    pid_t pid;
    *t0 = now_s();
    int err = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (err) {
        errno = err;
        return -1;
    }
    double deadline = *t0 + watchdog_s;
    bool termed = false;
    *killed = false;
    for (;;) {
        pid_t r = wait4(pid, status, WNOHANG, ru);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            *status = -1;
            memset(ru, 0, sizeof(*ru));
            break;
        }
        double left = deadline - now_s();
        if (left <= 0) {
            if (!*killed)
                kill(pid, SIGKILL);
            *killed = true;
            left = 1;
        }
        if (left > 1)
            left = 1; /* safety net should SIGCHLD go elsewhere */
        struct timespec ts = {.tv_sec = (time_t)left,
                              .tv_nsec = (long)((left - (double)(time_t)left) * 1e9)};
        int sig = sigtimedwait(&b->sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
            b->stop_sig = sig;
            if (!termed)
                kill(pid, SIGTERM);
            termed = true;
            if (deadline > now_s() + 5)
                deadline = now_s() + 5;
        }
    }
    *t1 = now_s();
    return 0;
}

/* Last occurrence of the write-out marker. */
static char *find_mark(char *out, size_t n)
{
    char *last = NULL;
    size_t ml = strlen(BENCH_MARK);
    for (char *p = out; (p = memmem(p, n - (size_t)(p - out), BENCH_MARK, ml)) != NULL; p++)
        last = p;
    return last;
}

/* ---- counters around a transfer ---- */

/* app_stats section of a mode's offload policy, or NULL (no TX offload). */
static const char *offload_section(enum tls_mode m)
{
    switch (m) {
    case TLS_MODE_NIC:
        return "offload_dump";
    case TLS_MODE_NIC_TAGCACHE:
        return "offload_tagcache";
    default:
        return NULL;
    }
}

/* app_stats section of a mode that runs anic's record layer (which classifies
   every received record by what the NIC decrypted), or NULL. */
static const char *records_section(enum tls_mode m)
{
    switch (m) {
    case TLS_MODE_SW:
        return "tls_sw";
    case TLS_MODE_NIC:
        return "tls_nic";
    case TLS_MODE_NIC_TAGCACHE:
        return "tls_nic_tagcache";
    default:
        return NULL;
    }
}

/* Absolute counter values now. The driver and offload counters are read
   under the core lock (app_stats.h); the NIC's are its last snapshot
   (published every few ms by the engine thread). */
static void read_counters(struct bench *b, enum tls_mode mode, struct ctr_delta *c)
{
    struct app_stat st[APP_STATS_MAX];
    LOCK_TCPIP_CORE();
    size_t n = app_stats_collect(&b->rt.stats, st);
    UNLOCK_TCPIP_CORE();
    const char *sec = offload_section(mode);
    memset(c, 0, sizeof(*c));
    c->offload = sec != NULL;
    if (sec) {
        c->dump_bytes = app_stats_get(st, n, sec, "tx_tls_dump_bytes");
        c->retx_bytes = app_stats_get(st, n, sec, "tx_tls_retransmit_bytes");
    }
    c->progress_descs = app_stats_get(st, n, "nic_tls", "tx_tls_ooo");
    c->dump_descs = app_stats_get(st, n, "nic_tls", "tx_tls_dump_packets");
    c->tag_reports = app_stats_get(st, n, "nic_tls", "tx_tls_tag_reports");
    const char *tsec = mode == TLS_MODE_MBEDTLS ? "tls_mbedtls" : records_section(mode);
    if (tsec) {
        c->tx_records = app_stats_get(st, n, tsec, "tx_records");
        c->tx_copied = app_stats_get(st, n, tsec, "tx_bytes_copied");
        c->tx_plain = app_stats_get(st, n, tsec, "tx_bytes_plaintext");
    }
    c->tx_pkts = app_stats_get(st, n, "fault_tx", "packets_in");
    c->tx_dropped = app_stats_get(st, n, "fault_tx", "dropped");
    c->rx_pkts = app_stats_get(st, n, "fault_rx", "packets_in");
    c->rx_dropped = app_stats_get(st, n, "fault_rx", "dropped");
    c->rx_reordered = app_stats_get(st, n, "fault_rx", "reordered");
    const char *rsec = records_section(mode);
    c->records = rsec != NULL;
    if (rsec) {
        c->rec_full = app_stats_get(st, n, rsec, "rx_records_full_offload");
        c->rec_partial = app_stats_get(st, n, rsec, "rx_records_partial_offload");
        c->rec_none = app_stats_get(st, n, rsec, "rx_records_no_offload");
    }
    /* One set for every listener; transfers run one at a time, so the delta
       over a transfer is that transfer's. */
    c->resync_req = app_stats_get(st, n, "offload_rx", "rx_resync_requests");
    c->resync_ok = app_stats_get(st, n, "offload_rx", "TlsRxDeviceResync");
}

static uint64_t sub0(uint64_t after, uint64_t before)
{
    return after >= before ? after - before : 0;
}

static void ctr_sub(const struct ctr_delta *after, const struct ctr_delta *before,
                    struct ctr_delta *d)
{
    d->offload = after->offload;
    d->dump_bytes = sub0(after->dump_bytes, before->dump_bytes);
    d->retx_bytes = sub0(after->retx_bytes, before->retx_bytes);
    d->progress_descs = sub0(after->progress_descs, before->progress_descs);
    d->dump_descs = sub0(after->dump_descs, before->dump_descs);
    d->tag_reports = sub0(after->tag_reports, before->tag_reports);
    d->tx_records = sub0(after->tx_records, before->tx_records);
    d->tx_pkts = sub0(after->tx_pkts, before->tx_pkts);
    d->tx_dropped = sub0(after->tx_dropped, before->tx_dropped);
    d->rx_pkts = sub0(after->rx_pkts, before->rx_pkts);
    d->rx_dropped = sub0(after->rx_dropped, before->rx_dropped);
    d->rx_reordered = sub0(after->rx_reordered, before->rx_reordered);
    d->records = after->records;
    d->rec_full = sub0(after->rec_full, before->rec_full);
    d->rec_partial = sub0(after->rec_partial, before->rec_partial);
    d->rec_none = sub0(after->rec_none, before->rec_none);
    d->resync_req = sub0(after->resync_req, before->resync_req);
    d->resync_ok = sub0(after->resync_ok, before->resync_ok);
    d->tx_copied = sub0(after->tx_copied, before->tx_copied);
    d->tx_plain = sub0(after->tx_plain, before->tx_plain);
}

/* Bytes memcpy'd on the TX path per application byte sent; false if the row
   has no such counter (plain, nginx) or sent nothing. */
static bool copies_per_byte(const struct ctr_delta *c, double *out)
{
    if (c->tx_plain == 0)
        return false;
    *out = (double)c->tx_copied / (double)c->tx_plain;
    return true;
}

static uint64_t rec_total(const struct ctr_delta *c)
{
    return c->rec_full + c->rec_partial + c->rec_none;
}

/* Share of received records fully / partially decrypted by the NIC, in %;
   false if the mode has no record layer or received no record. */
static bool rec_pct(const struct ctr_delta *c, double *full, double *partial)
{
    uint64_t t = rec_total(c);
    if (!c->records || t == 0)
        return false;
    *full = 100.0 * (double)c->rec_full / (double)t;
    *partial = 100.0 * (double)c->rec_partial / (double)t;
    return true;
}

/* curl's --max-time: 60 s + SIZE at 10 MB/s / (1 + P), P = loss + reorder %
   of the fault stage the data crosses. The kernel's sender, without SACK
   from lwIP, recovers about one hole per round trip: 5 % RX loss costs an
   order of magnitude in upload throughput. */
static double transfer_max_time(const struct bench *b, int dir)
{
    const struct nic_fault_cfg *f = dir == DIR_DOWN ? &b->rt.cfg.fault_tx : &b->rt.cfg.fault_rx;
    double p = f->loss_pct + f->reorder_pct;
    return BENCH_MAXTIME_BASE_S + (double)b->o.size / (BENCH_MAXTIME_RATE / (1.0 + p));
}

/* Row mi: an anic mode (mi < n_modes) or, with --vs-nginx, nginx-http /
   nginx-https (n_modes + NGX_*). */
static void transfer(struct bench *b, unsigned mi, int dir, struct run *r)
{
    bool ngx = mi >= b->o.n_modes;
    enum tls_mode mode = ngx ? TLS_MODE_NONE : b->o.modes[mi];
    bool tls = ngx ? mi - b->o.n_modes == NGX_HTTPS : mode != TLS_MODE_NONE;
    char url[160], maxtime[32], sizebuf[32];
    uint64_t size = b->o.size;
    double max_time = transfer_max_time(b, dir);
    const char *host = ngx ? BENCH_NGINX_ADDR : b->host;
    unsigned port = ngx ? (tls ? BENCH_NGINX_HTTPS : BENCH_NGINX_HTTP) : b->ports[mi];

    memset(r, 0, sizeof(*r));
    snprintf(sizebuf, sizeof(sizebuf), "%" PRIu64, size);
    if (dir == DIR_DOWN)
        snprintf(url, sizeof(url), "%s://%s:%u/bytes/%s", tls ? "https" : "http", host, port,
                 sizebuf);
    else
        snprintf(url, sizeof(url), "%s://%s:%u/%s", tls ? "https" : "http", host, port,
                 ngx                  ? BENCH_NGX_UPLOAD
                 : b->o.upload_sha256 ? "upload?digest=sha256"
                                      : "upload?digest=crc32c");
    snprintf(maxtime, sizeof(maxtime), "%.0f", max_time);

    char *argv[40];
    int n = 0;
    argv[n++] = "ip";
    argv[n++] = "netns";
    argv[n++] = "exec";
    argv[n++] = b->netns;
    argv[n++] = "curl";
    argv[n++] = "-q"; /* no .curlrc */
    argv[n++] = "--silent";
    argv[n++] = "--http1.1";
    argv[n++] = "--noproxy";
    argv[n++] = "*";
    argv[n++] = "--connect-timeout";
    argv[n++] = "10";
    argv[n++] = "--max-time";
    argv[n++] = maxtime;
    if (tls) {
        argv[n++] = "--cacert";
        argv[n++] = b->ca_path;
    }
    if (dir == DIR_DOWN) {
        argv[n++] = "-o";
        argv[n++] = "/dev/null";
    } else {
        argv[n++] = "-T";
        argv[n++] = b->upload_path;
        argv[n++] = "-o";
        argv[n++] = "-";
    }
    argv[n++] = "-w";
    argv[n++] = BENCH_MARK "%{http_code} %{size_download} %{size_upload} %{exitcode} "
                           "%{errormsg}";
    argv[n++] = url;
    argv[n] = NULL;

    int out = memfd_create("anic-bench-curl", MFD_CLOEXEC);
    if (out < 0) {
        snprintf(r->reason, sizeof(r->reason), "memfd_create: %s", strerror(errno));
        return;
    }

    struct cpu_snap before, after;
    struct rusage ru;
    int status = 0;
    double t0, t1;
    bool killed;
    struct ctr_delta c0, c1;
    struct proc_cpu n0, n1;
    read_counters(b, mode, &c0);
    cpu_snapshot(b, &before);
    nginx_cpu(b, &n0);
    int rc = run_child(b, argv, out, max_time + BENCH_WATCHDOG_S, &status, &ru, &t0, &t1, &killed);
    nginx_cpu(b, &n1);
    cpu_snapshot(b, &after);
    read_counters(b, mode, &c1);
    ctr_sub(&c1, &c0, &r->ctr);
    if (ngx) /* the counters are anic's: nothing of nginx's */
        memset(&r->ctr, 0, sizeof(r->ctr));
    if (rc < 0) {
        snprintf(r->reason, sizeof(r->reason), "start ip netns exec curl: %s", strerror(errno));
        close(out);
        return;
    }
    r->seconds = t1 - t0;
    r->mbps = r->seconds > 0 ? (double)size / r->seconds / 1e6 : 0;
    if (ngx) {
        r->cpu.host_s = n1.run_s - n0.run_s;
        r->cpu.host_user_s = n1.user_s - n0.user_s;
        r->cpu.host_sys_s = n1.sys_s - n0.sys_s;
    } else {
        cpu_delta(b, &before, &after, &r->cpu);
    }
    r->cpu.client_s = tv_s(ru.ru_utime) + tv_s(ru.ru_stime);

    char buf[BENCH_OUT_CAP];
    ssize_t got = pread(out, buf, sizeof(buf) - 1, 0);
    close(out);
    if (got < 0)
        got = 0;
    buf[got] = 0;

    if (status < 0) {
        snprintf(r->reason, sizeof(r->reason), "wait for curl failed");
        return;
    }
    if (WIFSIGNALED(status)) {
        snprintf(r->reason, sizeof(r->reason), "curl killed by %s%s", strsignal(WTERMSIG(status)),
                 stop_requested(b) ? " (interrupted)"
                 : killed          ? " (watchdog)"
                                   : "");
        return;
    }
    int ec = WEXITSTATUS(status);
    char *mark = find_mark(buf, (size_t)got);
    int http = 0, cexit = -1, off = 0;
    uint64_t down = 0, up = 0;
    if (!mark || sscanf(mark + strlen(BENCH_MARK), "%d %" SCNu64 " %" SCNu64 " %d %n", &http, &down,
                        &up, &cexit, &off) < 4) {
        snprintf(r->reason, sizeof(r->reason), "exit status %d, no curl output%s", ec,
                 ec == 127 || ec == 255 ? " (ip/curl missing?)" : "");
        return;
    }
    const char *errmsg = mark + strlen(BENCH_MARK) + off;
    if (ec != 0) {
        snprintf(r->reason, sizeof(r->reason), "curl exit %d: %.150s", ec,
                 *errmsg ? errmsg : "(no message)");
        return;
    }
    /* nginx answers a WebDAV PUT with 201 (created) or 204 (replaced). */
    bool ngx_put = ngx && dir == DIR_UP;
    if (ngx_put ? http != 201 && http != 204 : http != 200) {
        snprintf(r->reason, sizeof(r->reason), "HTTP status %d", http);
        return;
    }
    if (dir == DIR_DOWN) {
        if (down != size) {
            snprintf(r->reason, sizeof(r->reason), "got %" PRIu64 " of %" PRIu64 " bytes", down,
                     size);
            return;
        }
    } else {
        if (up != size) {
            snprintf(r->reason, sizeof(r->reason), "sent %" PRIu64 " of %" PRIu64 " bytes", up,
                     size);
            return;
        }
        *mark = 0;
        if (ngx_put) { /* nginx read the whole body: the file it wrote has SIZE bytes */
            char path[160];
            struct stat sb = {0};
            snprintf(path, sizeof(path), "%s/www/%s", b->ng_dir, BENCH_NGX_UPLOAD);
            bool whole = stat(path, &sb) == 0 && (uint64_t)sb.st_size == size;
            unlink(path); /* tmpfs memory */
            if (!whole) {
                snprintf(r->reason, sizeof(r->reason), "nginx stored %lld of %" PRIu64 " bytes",
                         (long long)sb.st_size, size);
                return;
            }
        } else if (strcmp(buf, b->expect_hex) != 0) {
            buf[strcspn(buf, "\r\n")] = 0;
            snprintf(r->reason, sizeof(r->reason), "%s mismatch: server said '%.70s'",
                     b->o.upload_sha256 ? "SHA-256" : "CRC32C", buf);
            return;
        }
    }
    r->ok = true;
}

/* Wait (bounded) until the server has no connection left, so that one
   transfer's teardown is not charged to the next. */
static void wait_idle(struct bench *b)
{
    double deadline = now_s() + BENCH_IDLE_WAIT_MS / 1000.0;
    for (;;) {
        LOCK_TCPIP_CORE();
        uint64_t active = app_server_counters(b->rt.server)->active;
        UNLOCK_TCPIP_CORE();
        if (active == 0 || now_s() > deadline)
            break;
        sleep_ms(10);
    }
    sleep_ms(BENCH_SETTLE_MS);
}

/* ---- digest and files ---- */

/* What anic's upload handler answers for SIZE zero bytes: the hex digest and
   '\n'. */
static int zero_digest(uint64_t size, bool sha256, char *hex)
{
    static const unsigned char zero[1 << 16];
    if (!sha256) {
        uint32_t crc = 0;
        for (uint64_t left = size; left;) {
            size_t n = left < sizeof(zero) ? (size_t)left : sizeof(zero);
            crc = app_crc32c(crc, zero, n);
            left -= n;
        }
        snprintf(hex, 10, "%08" PRIx32 "\n", crc);
        return 0;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    for (uint64_t left = size; ok && left;) {
        size_t n = left < sizeof(zero) ? (size_t)left : sizeof(zero);
        ok = EVP_DigestUpdate(ctx, zero, n) == 1;
        left -= n;
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    for (unsigned i = 0; i < md_len; i++) {
        hex[2 * i] = "0123456789abcdef"[md[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
    }
    hex[2 * md_len] = '\n';
    hex[2 * md_len + 1] = 0;
    return 0;
}

static int make_sparse(const char *path, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "anic bench: create %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        fprintf(stderr, "anic bench: ftruncate %s: %s\n", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    close(fd);
    /* Read it once: the file system zero-fills a hole's page cache pages on
       the first read, which would otherwise load curl in whichever upload
       comes first (a quarter of both cores in a 3 GiB upload). */
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        static char buf[1 << 20];
        while (read(fd, buf, sizeof(buf)) > 0)
            ;
        close(fd);
    }
    return 0;
}

/* ---- output ---- */

static void csv_field(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* Row mi's name: the anic mode, or nginx-http / nginx-https (--vs-nginx). */
static const char *row_name(const struct bench *b, unsigned mi)
{
    return mi < b->o.n_modes ? app_mode_name(b->o.modes[mi]) : ngx_name[mi - b->o.n_modes];
}

static bool row_tls_records(const struct bench *b, unsigned mi)
{
    return mi < b->o.n_modes && b->o.modes[mi] != TLS_MODE_NONE;
}

static void csv_row(struct bench *b, unsigned mi, int dir, const struct run *r)
{
    if (!b->csv || !r->ok)
        return;
    double gb = (double)b->o.size / 1e9;
    fprintf(b->csv, "%s,%s,%" PRIu64 ",%.6f,%.3f,%.6f,%.6f,%.6f,%.6f,%.6f,", row_name(b, mi),
            dir_name[dir], b->o.size, r->seconds, r->mbps, r->cpu.host_s, r->cpu.nic_s,
            r->cpu.nic_user_s, r->cpu.host_s / gb, r->cpu.nic_s / gb);
    csv_field(b->csv, b->fault_tx);
    fputc(',', b->csv);
    csv_field(b->csv, b->fault_rx);
    fprintf(b->csv, ",%g,", b->cur_loss);
    if (r->ctr.offload)
        fprintf(b->csv, "%" PRIu64 ",%" PRIu64, r->ctr.dump_bytes, r->ctr.retx_bytes);
    else
        fputc(',', b->csv);
    fputc(',', b->csv);
    csv_field(b->csv, b->rx_fault);
    double full, partial;
    if (dir == DIR_UP && rec_pct(&r->ctr, &full, &partial))
        fprintf(b->csv, ",%.3f,%.3f", full, partial);
    else
        fputs(",,", b->csv);
    fprintf(b->csv, ",%" PRIu32 ",%s,%" PRIu32, b->o.rx_reorder_bytes,
            b->o.rx_hint ? "hint" : "nic", b->o.record_size ? b->o.record_size : TLS_MAX_PLAINTEXT);
    /* Extra host <-> NIC bytes: dump payload plus one descriptor or
       completion (64 B, nic/nic_abi.h) per PROGRESS, DUMP and tag report. */
    if (r->ctr.offload)
        fprintf(b->csv, ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64, r->ctr.progress_descs,
                r->ctr.dump_descs, r->ctr.tag_reports,
                r->ctr.dump_bytes + BENCH_DESC_BYTES * (r->ctr.progress_descs + r->ctr.dump_descs +
                                                        r->ctr.tag_reports));
    else
        fputs(",,,,", b->csv);
    if (row_tls_records(b, mi))
        fprintf(b->csv, ",%" PRIu64, r->ctr.tx_records);
    else
        fputc(',', b->csv);
    double cpb;
    if (dir == DIR_DOWN && copies_per_byte(&r->ctr, &cpb))
        fprintf(b->csv, ",%" PRIu64 ",%.4f\n", r->ctr.tx_copied, cpb);
    else
        fputs(",,\n", b->csv);
    fflush(b->csv);
}

static void print_run(const struct bench *b, unsigned mi, int dir, unsigned rep,
                      const struct run *r)
{
    double gb = (double)b->o.size / 1e9;
    printf("  %-*s %-8s", BENCH_MODE_W, row_name(b, mi), dir_name[dir]);
    if (b->o.repeat > 1)
        printf(" run %u/%u", rep + 1, b->o.repeat);
    if (r->ok)
        printf(": %8.1f MB/s in %.3f s, host %.3f s/GB, NIC %.3f s/GB (user %.3f)", r->mbps,
               r->seconds, r->cpu.host_s / gb, r->cpu.nic_s / gb, r->cpu.nic_user_s / gb);
    else
        printf(": FAILED after %.3f s: %s", r->seconds, r->reason);
    if (r->ctr.tx_dropped)
        printf(", dropped %" PRIu64 "/%" PRIu64 " pkts", r->ctr.tx_dropped, r->ctr.tx_pkts);
    if (r->ctr.offload && r->ctr.retx_bytes)
        printf(", retx %" PRIu64 " B, dump %" PRIu64 " B", r->ctr.retx_bytes, r->ctr.dump_bytes);
    if (r->ctr.rx_dropped || r->ctr.rx_reordered)
        printf(", rx dropped %" PRIu64 " reordered %" PRIu64 " of %" PRIu64 " pkts",
               r->ctr.rx_dropped, r->ctr.rx_reordered, r->ctr.rx_pkts);
    double full, partial;
    if (dir == DIR_UP && rec_pct(&r->ctr, &full, &partial))
        printf(", records %" PRIu64 ": full %.1f%% partial %.1f%%, resync req %" PRIu64
               " ok %" PRIu64,
               rec_total(&r->ctr), full, partial, r->ctr.resync_req, r->ctr.resync_ok);
    printf("\n");
    fflush(stdout);
}

static int cmp_mbps(const void *x, const void *y)
{
    const struct run *a = *(const struct run *const *)x, *c = *(const struct run *const *)y;
    return a->mbps < c->mbps ? -1 : a->mbps > c->mbps;
}

static void pick_median(struct cell *c)
{
    const struct run *ok[BENCH_MAX_REPEAT];
    unsigned n = 0;
    c->shown = NULL;
    for (unsigned i = 0; i < c->n_runs; i++) {
        if (!c->runs[i].ok) {
            c->shown = &c->runs[i];
            return;
        }
        ok[n++] = &c->runs[i];
    }
    if (n == 0)
        return;
    qsort(ok, n, sizeof(ok[0]), cmp_mbps);
    c->shown = ok[(n - 1) / 2];
}

/* The shown run of (mode m, dir), if it succeeded. */
static const struct run *good(const struct bench *b, enum tls_mode m, int dir)
{
    for (unsigned i = 0; i < b->o.n_modes; i++)
        if (b->o.modes[i] == m) {
            const struct run *r = b->cells[i][dir].shown;
            return r && r->ok ? r : NULL;
        }
    return NULL;
}

static void ratio_col(double num, double den, bool have)
{
    if (have && den > 0)
        printf(" %8.2fx", num / den);
    else
        printf(" %9s", "-");
}

/* "dump bytes per retransmitted byte", or "-" without retransmissions. */
static void dump_ratio_col(const struct ctr_delta *c, int width)
{
    if (c->offload && c->retx_bytes)
        printf(" %*.3f", width, (double)c->dump_bytes / (double)c->retx_bytes);
    else
        printf(" %*s", width, "-");
}

/* Received records by what the NIC decrypted, for the uploads of modes with
   anic's record layer (compare mode). */
static void print_rx_records(const struct bench *b)
{
    bool header = false;
    for (unsigned mi = 0; mi < b->o.n_modes; mi++) {
        const struct run *r = b->cells[mi][DIR_UP].shown;
        double full, partial;
        if (!r || !r->ok || !rec_pct(&r->ctr, &full, &partial))
            continue;
        if (!header)
            printf("RX records of the upload (deltas of tls_<mode> and offload_rx counters over "
                   "the shown run):\n");
        header = true;
        printf("  %-*s %" PRIu64 " records: fully offloaded %.1f%%, partially %.1f%%, not %.1f%%; "
               "NIC resync requests %" PRIu64 ", confirmed %" PRIu64 "\n",
               BENCH_MODE_W, app_mode_name(b->o.modes[mi]), rec_total(&r->ctr), full, partial,
               100.0 * (double)r->ctr.rec_none / (double)rec_total(&r->ctr), r->ctr.resync_req,
               r->ctr.resync_ok);
    }
}

static unsigned n_rows(const struct bench *b)
{
    return b->o.n_modes + (b->o.vs_nginx ? NGX_ROWS : 0);
}

/* The shown run of nginx row k (NGX_*), if it succeeded. */
static const struct run *good_ngx(const struct bench *b, unsigned k, int dir)
{
    if (!b->o.vs_nginx)
        return NULL;
    const struct run *r = b->cells[b->o.n_modes + k][dir].shown;
    return r && r->ok ? r : NULL;
}

/* One line of the --vs-nginx targets: num / den against want (>= unless
   at_most). */
static void target_line(const char *what, const struct run *num, const struct run *den, bool cpu,
                        double want, bool at_most)
{
    printf("  %-46s", what);
    if (!num || !den || (cpu ? den->cpu.host_s : den->mbps) <= 0) {
        printf(" -\n");
        return;
    }
    double v = cpu ? num->cpu.host_s / den->cpu.host_s : num->mbps / den->mbps;
    bool met = at_most ? v <= want : v >= want;
    printf(" %6.2fx (target %s %.2fx) -> %s\n", v, at_most ? "<=" : ">=", want,
           met ? "met" : "NOT met");
}

static const struct run *good_ngx(const struct bench *b, unsigned k, int dir);

/* A cell's successful runs' host CPU seconds into v, ascending; returns
   how many. */
static unsigned runs_host_sorted(const struct cell *c, double v[BENCH_MAX_REPEAT])
{
    unsigned n = 0;
    for (unsigned k = 0; k < c->n_runs; k++)
        if (c->runs[k].ok) {
            unsigned j = n++;
            for (; j > 0 && v[j - 1] > c->runs[k].cpu.host_s; j--)
                v[j] = v[j - 1];
            v[j] = c->runs[k].cpu.host_s;
        }
    return n;
}

/* Host CPU seconds over the successful runs of mode m's cell dir: the
   median (lower median for an even count), the least and the most; false
   without a run. One transfer's CPU on a shared machine varies more than
   its throughput: the CPU target takes each mode's median, not the CPU of
   the run with the median throughput. */
static bool cell_host_cpu(const struct bench *b, enum tls_mode m, int dir, double *median,
                          double *lo, double *hi)
{
    for (unsigned i = 0; i < b->o.n_modes; i++) {
        if (b->o.modes[i] != m)
            continue;
        double v[BENCH_MAX_REPEAT];
        unsigned n = runs_host_sorted(&b->cells[i][dir], v);
        if (!n)
            return false;
        *median = v[(n - 1) / 2];
        *lo = v[0];
        *hi = v[n - 1];
        return true;
    }
    return false;
}

/* The targets of the data-path work (TSO/GSO/LRO, copies), on the shown
   runs; the NIC engine's target is --micro's. */
static void print_targets(const struct bench *b)
{
    if (!b->o.vs_nginx)
        return;
    printf("targets (shown runs; the NIC engine vs openssl speed: anic bench --micro):\n");
    target_line("nic HTTPS download / nginx HTTPS", good(b, TLS_MODE_NIC, DIR_DOWN),
                good_ngx(b, NGX_HTTPS, DIR_DOWN), false, 1.0, false);
    target_line("plain HTTP download / nginx HTTP", good(b, TLS_MODE_NONE, DIR_DOWN),
                good_ngx(b, NGX_HTTP, DIR_DOWN), false, 0.6, false);
    char what[64];
    snprintf(what, sizeof(what), "nic / mbedtls download, MTU %u", b->o.mtu);
    target_line(what, good(b, TLS_MODE_NIC, DIR_DOWN), good(b, TLS_MODE_MBEDTLS, DIR_DOWN), false,
                5.0, false);
    double hn, hn_lo, hn_hi, hp, hp_lo, hp_hi, gb = (double)b->o.size / 1e9;
    printf("  %-46s", "host CPU s/GB download, nic / plain (medians)");
    if (cell_host_cpu(b, TLS_MODE_NIC, DIR_DOWN, &hn, &hn_lo, &hn_hi) &&
        cell_host_cpu(b, TLS_MODE_NONE, DIR_DOWN, &hp, &hp_lo, &hp_hi) && hn > 0 && hp > 0) {
        printf(" %6.2fx (target <= 1.05x) -> %s\n", hn / hp, hn / hp <= 1.05 ? "met" : "NOT met");
        /* Say how far single runs spread: on a small shared machine one
           mode's runs can differ by more than the two modes' medians. */
        printf("  %-46s nic %.3f-%.3f, plain %.3f-%.3f s/GB\n", "  (its runs, least to most)",
               hn_lo / gb, hn_hi / gb, hp_lo / gb, hp_hi / gb);
        printf("  %-46s anic bench --host-instr)\n", "  (counted, without the noise:");
    } else {
        printf(" -\n");
    }
    target_line("nic HTTPS upload / nginx HTTPS", good(b, TLS_MODE_NIC, DIR_UP),
                good_ngx(b, NGX_HTTPS, DIR_UP), false, 0.8, false);
    /* One curl needs ~1 s/GB of its own, so the nic rows measure it as much
       as anic: say where the server-bound ratios are. */
    printf("  (one curl bounds nic here; with the server the bottleneck: anic bench --load "
           "--flows 16\n   --load-modes mbedtls,plain,nic --rounds 5: nic / mbedtls and host "
           "CPU nic / plain)\n");
}

static void print_table(const struct bench *b)
{
    double gb = (double)b->o.size / 1e9;
    bool ngx = b->o.vs_nginx;
    printf("\n");
    if (b->o.repeat > 1)
        printf("median of %u runs (by throughput), CPU of that run\n", b->o.repeat);
    printf("%-*s %-8s %9s %9s %6s %6s %9s %6s %6s %9s %9s %9s %9s", BENCH_MODE_W, "", "", "",
           "host", "", "", "NIC", "NIC", "", "curl", "host CPU", "MB/s", "MB/s");
    if (ngx)
        printf(" %9s", "MB/s");
    printf(" %8s\n", "copies/B");
    printf("%-*s %-8s %9s %9s %6s %6s %9s %6s %6s %9s %9s %9s %9s", BENCH_MODE_W, "mode", "dir",
           "MB/s", "s/GB", "usr", "sys", "s/GB", "usr", "sys", "s/GB", "vs plain", "vs plain",
           "vs mbedtls");
    if (ngx)
        printf(" %9s", "vs nginx");
    printf(" %8s\n", "TX");
    bool any_retx = false;
    for (int dir = 0; dir < DIR_COUNT; dir++) {
        const struct run *plain = good(b, TLS_MODE_NONE, dir);
        const struct run *mbed = good(b, TLS_MODE_MBEDTLS, dir);
        for (unsigned mi = 0; mi < n_rows(b); mi++) {
            const struct run *r = b->cells[mi][dir].shown;
            bool is_ngx = mi >= b->o.n_modes;
            printf("%-*s %-8s", BENCH_MODE_W, row_name(b, mi), dir_name[dir]);
            if (!r) {
                printf(" %9s\n", "not run");
                continue;
            }
            if (!r->ok) {
                printf(" FAILED: %s\n", r->reason);
                continue;
            }
            const struct cpu_use *u = &r->cpu;
            printf(" %9.1f %9.3f %6.3f %6.3f", r->mbps, u->host_s / gb, u->host_user_s / gb,
                   u->host_sys_s / gb);
            if (is_ngx) /* nginx has no NIC threads: its kernel TCP work is in host sys */
                printf(" %9s %6s %6s", "-", "-", "-");
            else
                printf(" %9.3f %6.3f %6.3f", u->nic_s / gb, u->nic_user_s / gb, u->nic_sys_s / gb);
            printf(" %9.3f", u->client_s / gb);
            ratio_col(u->host_s, plain ? plain->cpu.host_s : 0, plain != NULL);
            ratio_col(r->mbps, plain ? plain->mbps : 0, plain != NULL);
            ratio_col(r->mbps, mbed ? mbed->mbps : 0, mbed != NULL);
            if (ngx) {
                bool tls =
                    is_ngx ? mi - b->o.n_modes == NGX_HTTPS : b->o.modes[mi] != TLS_MODE_NONE;
                const struct run *ref = good_ngx(b, tls ? NGX_HTTPS : NGX_HTTP, dir);
                ratio_col(r->mbps, ref ? ref->mbps : 0, ref != NULL);
            }
            double cpb;
            if (dir == DIR_DOWN && copies_per_byte(&r->ctr, &cpb))
                printf(" %8.2f", cpb);
            else
                printf(" %8s", "-");
            printf("\n");
            any_retx |= r->ctr.offload && r->ctr.retx_bytes;
        }
    }
    printf("(MB/s = 10^6 B/s; s/GB = CPU seconds per 10^9 bytes; usr/sys from clock ticks;\n"
           " NIC sys includes the kernel TCP work behind TUN reads/writes; curl = client;\n"
           " copies/B TX = bytes memcpy'd on the TX path per application byte, downloads,\n"
           " from tls_<mode>.tx_bytes_copied (TLS modes only)");
    if (ngx)
        printf(";\n nginx: host = CPU of its processes, kernel TCP included; vs nginx = plain vs\n"
               " nginx-http, TLS modes vs nginx-https");
    printf(")\n");
    if (any_retx) {
        printf("TX offload resync (deltas of offload_<policy> counters over the shown run):\n");
        for (int dir = 0; dir < DIR_COUNT; dir++)
            for (unsigned mi = 0; mi < b->o.n_modes; mi++) {
                const struct run *r = b->cells[mi][dir].shown;
                if (!r || !r->ok || !r->ctr.offload || !r->ctr.retx_bytes)
                    continue;
                printf("  %-*s %-8s retransmitted %" PRIu64 " B, dumped %" PRIu64
                       " B, dump bytes per retransmitted byte",
                       BENCH_MODE_W, app_mode_name(b->o.modes[mi]), dir_name[dir],
                       r->ctr.retx_bytes, r->ctr.dump_bytes);
                dump_ratio_col(&r->ctr, 1);
                printf("\n");
            }
    }
    print_rx_records(b);
    print_targets(b);

    /* Every later mode against every earlier one, in --modes order. */
    for (int dir = 0; dir < DIR_COUNT; dir++) {
        printf("ratios %s:", dir_name[dir]);
        bool any = false;
        for (unsigned i = 0; i < b->o.n_modes; i++)
            for (unsigned j = 0; j < i; j++) {
                const struct run *x = good(b, b->o.modes[i], dir);
                const struct run *y = good(b, b->o.modes[j], dir);
                if (!x || !y || y->mbps <= 0 || y->cpu.host_s <= 0)
                    continue;
                printf("%s %s/%s throughput %.2fx host CPU/GB %.2fx", any ? ";" : "",
                       app_mode_name(b->o.modes[i]), app_mode_name(b->o.modes[j]),
                       x->mbps / y->mbps, x->cpu.host_s / y->cpu.host_s);
                any = true;
            }
        printf("%s\n", any ? "" : " (no pair of successful modes)");
    }
}

/* ---- the runtime ---- */

/* "loss 2% reorder 1% gap 3", the RX stage's loss and reorder, or "none". */
static void format_rx_fault(const struct nic_fault_cfg *f, char *buf, size_t cap)
{
    int n = 0;
    buf[0] = 0;
    if (f->loss_pct > 0)
        n = snprintf(buf, cap, "loss %g%%", f->loss_pct);
    if (f->reorder_pct > 0 && n >= 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, "%sreorder %g%% gap %u", n ? " " : "", f->reorder_pct,
                 f->reorder_gap);
    if (!buf[0])
        snprintf(buf, cap, "none");
}

/* One runtime (namespace, TUN, NIC, lwIP host, one listener per mode) with
   the given fault stages; --mtu, --rx-reorder-buf, --rx-resync from the
   options. */
static int runtime_up(struct bench *b, const struct nic_fault_cfg *fault_tx,
                      const struct nic_fault_cfg *fault_rx, char *err, size_t errlen)
{
    struct app_runtime_cfg cfg;
    app_runtime_cfg_defaults(&cfg);
    cfg.netns = b->netns;
    cfg.mtu = b->o.mtu;
    if (b->o.rcv_wnd)
        cfg.rcv_wnd = b->o.rcv_wnd;
    if (b->o.snd_buf)
        cfg.snd_buf = b->o.snd_buf;
    if (b->o.irq_coalesce_us >= 0)
        cfg.irq_coalesce_us = (uint32_t)b->o.irq_coalesce_us;
    cfg.offloads = b->o.offloads;
    cfg.fault_tx = *fault_tx;
    cfg.fault_rx = *fault_rx;
    cfg.seed = b->o.seed; /* fault-tx S, fault-rx S+1 where a spec names no seed */
    cfg.seed_set = true;
    cfg.rx_reorder_bytes = b->o.rx_reorder_bytes;
    cfg.rx_hint = b->o.rx_hint;
    cfg.offload_policy = b->o.policy;
    cfg.record_size = b->o.record_size;
    cfg.ca_out_path = b->ca_path;
    if (b->o.vs_nginx) { /* nginx's certificate: the same leaf for both */
        cfg.cert_path = b->ng_cert;
        cfg.key_path = b->ng_key;
    }
    cfg.n_listeners = 0;
    for (unsigned i = 0; i < b->o.n_modes; i++)
        cfg.listeners[cfg.n_listeners++] = (struct app_listener){b->ports[i], b->o.modes[i]};
    inet_ntop(AF_INET, &cfg.host_ip, b->host, sizeof(b->host));
    if (app_runtime_start(&b->rt, &cfg, err, errlen) < 0)
        return -1; /* app_runtime_start cleaned up, namespace included */
    b->runtime = true;
    b->cur_loss = b->rt.cfg.fault_tx.loss_pct;
    nic_fault_cfg_format(&b->rt.cfg.fault_tx, b->fault_tx, sizeof(b->fault_tx));
    nic_fault_cfg_format(&b->rt.cfg.fault_rx, b->fault_rx, sizeof(b->fault_rx));
    format_rx_fault(&b->rt.cfg.fault_rx, b->rx_fault, sizeof(b->rx_fault));
    return 0;
}

/* Close connections, stop threads, free, delete the namespace. */
static void runtime_down(struct bench *b)
{
    if (!b->runtime)
        return;
    app_runtime_stop(&b->rt);
    app_runtime_free(&b->rt);
    b->runtime = false;
}

/* ---- mode comparison ---- */

static void print_machine(const struct bench *b)
{
    char model[256];
    struct utsname un;
    cpu_model(model, sizeof(model));
    if (uname(&un) < 0)
        snprintf(un.release, sizeof(un.release), "?");
    printf("  machine: %ld CPUs online, %s, Linux %s\n", sysconf(_SC_NPROCESSORS_ONLN), model,
           un.release);
}

static void print_modes(const struct bench *b)
{
    for (unsigned i = 0; i < b->o.n_modes; i++)
        printf("%s%s", i ? "," : "", app_mode_name(b->o.modes[i]));
}

static void print_listeners(const struct bench *b)
{
    printf("  listeners:");
    for (unsigned i = 0; i < b->o.n_modes; i++)
        printf(" %s %s:%u", app_mode_name(b->o.modes[i]),
               b->o.modes[i] == TLS_MODE_NONE ? "http" : "https", b->ports[i]);
    printf("\n");
}

/* The NIC's RX configuration, one header line. */
static void print_nic_rx(const struct bench *b)
{
    printf("  NIC RX: rx-reorder-buf %" PRIu32 " B", b->o.rx_reorder_bytes);
    if (b->o.rx_reorder_bytes == 0)
        printf(" (the paper's NIC: no reorder buffer)");
    else if (b->o.rx_reorder_bytes % 1024 == 0)
        printf(" (%" PRIu32 " KiB per flow)", b->o.rx_reorder_bytes / 1024);
    printf(", rx-resync %s\n",
           b->o.rx_hint ? "hint (host posts next-record hints)" : "nic (search/track/request)");
    printf("  TLS records sent: %u plaintext bytes at most\n",
           b->o.record_size ? b->o.record_size : TLS_MAX_PLAINTEXT);
    printf("  uploads checked with %s (--upload-digest)\n",
           b->o.upload_sha256 ? "SHA-256" : "CRC32C");
}

static void print_header(struct bench *b)
{
    printf("anic bench: %" PRIu64 " bytes (%.1f MiB) per transfer, modes ", b->o.size,
           (double)b->o.size / (1 << 20));
    print_modes(b);
    printf(", %u run%s each\n", b->o.repeat, b->o.repeat > 1 ? "s" : "");
    print_machine(b);
    char ol[64];
    printf("  namespace %s, TUN %s, lwIP host %s, MTU %u, offloads %s, rcv-wnd %u, sndbuf %u,"
           " irq-coalesce-us %u\n",
           b->netns, b->rt.cfg.tun_name, b->host, b->rt.cfg.mtu,
           app_offloads_format(b->rt.cfg.offloads, ol, sizeof(ol)), b->rt.cfg.rcv_wnd,
           b->rt.cfg.snd_buf, b->rt.cfg.irq_coalesce_us);
    print_listeners(b);
    print_nic_rx(b);
    printf("  seed %" PRIu64 " (replay: --seed %" PRIu64 ")\n  fault-tx: %s\n  fault-rx: %s\n",
           b->rt.cfg.seed, b->rt.cfg.seed, b->fault_tx, b->fault_rx);
    printf("  csv: %s\n\n", b->csv ? b->o.csv_path : "(none)");
    fflush(stdout);
}

static void run_all(struct bench *b)
{
    for (unsigned rep = 0; rep < b->o.repeat; rep++)
        for (unsigned mi = 0; mi < n_rows(b); mi++)
            for (int dir = 0; dir < DIR_COUNT; dir++) {
                struct cell *c = &b->cells[mi][dir];
                if (c->failed)
                    continue; /* one failure decides the cell; do not wait again */
                wait_idle(b);
                if (stop_requested(b))
                    return;
                struct run *r = &c->runs[c->n_runs++];
                transfer(b, mi, dir, r);
                print_run(b, mi, dir, rep, r);
                if (!r->ok)
                    c->failed = true;
                csv_row(b, mi, dir, r);
                if (stop_requested(b))
                    return;
            }
}

/* Returns the exit status (before signal handling). */
static int run_compare(struct bench *b)
{
    char err[512];
    if (runtime_up(b, &b->o.fault_tx, &b->o.fault_rx, err, sizeof(err)) < 0) {
        fprintf(stderr, "anic bench: %s\n", err);
        return 1;
    }
    /* From this thread, which is in the namespace: nginx is too. Stopped
       before the namespace goes. */
    if (b->o.vs_nginx && bench_nginx_start(&b->ng) < 0) {
        runtime_down(b);
        return 1;
    }
    print_header(b);
    run_all(b);
    bench_nginx_stop(&b->ng);
    runtime_down(b);

    bool failed = false;
    for (unsigned mi = 0; mi < n_rows(b); mi++)
        for (int dir = 0; dir < DIR_COUNT; dir++) {
            pick_median(&b->cells[mi][dir]);
            failed |= b->cells[mi][dir].failed;
        }
    print_table(b);
    return failed ? 1 : 0;
}

/* ---- sweeps ---- */

static bool sweep_rx(const struct bench *b)
{
    return b->o.sweep == SWEEP_RX_LOSS || b->o.sweep == SWEEP_RX_REORDER;
}

/* The swept fault in messages: "loss" (TX sweep, as before), "RX loss",
   "RX reorder". */
static const char *sweep_label(const struct bench *b)
{
    return b->o.sweep == SWEEP_RX_LOSS      ? "RX loss"
           : b->o.sweep == SWEEP_RX_REORDER ? "RX reorder"
                                            : "loss";
}

/* The shown transfer of mode m at value index li, if it succeeded. */
static const struct run *sweep_good(const struct bench *b, unsigned li, enum tls_mode m)
{
    for (unsigned i = 0; i < b->o.n_modes; i++)
        if (b->o.modes[i] == m) {
            const struct run *r = b->sweep[li][i].shown;
            return r && r->ok ? r : NULL;
        }
    return NULL;
}

/* Start a sweep table row: the value and the mode. Returns the run to show,
   or NULL when the row is already complete (not run, or failed). */
static const struct run *sweep_row_start(const struct bench *b, unsigned li, unsigned mi,
                                         int value_w, int col_w)
{
    const struct run *r = b->sweep[li][mi].shown;
    printf("%*g %-*s", value_w, b->o.values[li], BENCH_MODE_W, app_mode_name(b->o.modes[mi]));
    if (!r) {
        printf(" %*s\n", col_w, "not run");
        return NULL;
    }
    if (!r->ok) {
        printf(" FAILED: %s\n", r->reason);
        return NULL;
    }
    return r;
}

/* Median host CPU seconds over the successful runs of mode m at value index
   li (lower median for an even count), or -1 if the shown run failed. The
   CPU target uses it: the run shown is the throughput median, and one
   upload of a few hundred ms is noisy in CPU. */
static double sweep_host_median(const struct bench *b, unsigned li, enum tls_mode m)
{
    for (unsigned i = 0; i < b->o.n_modes; i++) {
        const struct cell *c = &b->sweep[li][i];
        if (b->o.modes[i] != m || !c->shown || !c->shown->ok)
            continue;
        double v[BENCH_MAX_REPEAT];
        unsigned n = runs_host_sorted(c, v);
        return n ? v[(n - 1) / 2] : -1;
    }
    return -1;
}

static const enum tls_mode nic_modes[] = {TLS_MODE_NIC, TLS_MODE_NIC_TAGCACHE};
#define N_NIC_MODES (sizeof(nic_modes) / sizeof(nic_modes[0]))

static void print_sweep_table(const struct bench *b)
{
    double gb = (double)b->o.size / 1e9;
    printf("\nTX loss sweep: one download of %.1f MiB per (loss, mode), fault-tx 'loss P%%' "
           "seed %" PRIu64 "\n",
           (double)b->o.size / (1 << 20), b->o.seed);
    if (b->o.repeat > 1)
        printf("median of %u runs (by throughput), CPU and counters of that run\n", b->o.repeat);
    printf("%6s %-*s %9s %9s %9s %9s %7s %10s %10s %9s\n", "loss", BENCH_MODE_W, "", "", "MB/s",
           "host", "NIC", "dropped", "retx", "dump", "dump B /");
    printf("%6s %-*s %9s %9s %9s %9s %7s %10s %10s %9s\n", "%", BENCH_MODE_W, "mode", "MB/s",
           "vs plain", "s/GB", "s/GB", "pkts %", "MB", "MB", "retx B");
    for (unsigned li = 0; li < b->o.n_values; li++) {
        if (!b->sweep_ran[li])
            continue;
        const struct run *plain = sweep_good(b, li, TLS_MODE_NONE);
        for (unsigned mi = 0; mi < b->o.n_modes; mi++) {
            const struct run *r = sweep_row_start(b, li, mi, 6, 9);
            if (!r)
                continue;
            printf(" %9.1f", r->mbps);
            ratio_col(r->mbps, plain ? plain->mbps : 0, plain != NULL);
            printf(" %9.3f %9.3f", r->cpu.host_s / gb, r->cpu.nic_s / gb);
            if (r->ctr.tx_pkts)
                printf(" %7.2f", 100.0 * (double)r->ctr.tx_dropped / (double)r->ctr.tx_pkts);
            else
                printf(" %7s", "-");
            if (r->ctr.offload)
                printf(" %10.3f %10.3f", (double)r->ctr.retx_bytes / 1e6,
                       (double)r->ctr.dump_bytes / 1e6);
            else
                printf(" %10s %10s", "-", "-");
            dump_ratio_col(&r->ctr, 9);
            printf("\n");
        }
    }
    printf("(host/NIC s/GB = CPU seconds per 10^9 bytes of the thread class; dropped = measured\n"
           " by the fault stage over that transfer; retx/dump = offload_<policy> counters:\n"
           " payload bytes of out-of-sequence segments, record bytes replayed in DUMP\n"
           " descriptors; '-' = not an offload mode, or no retransmission)\n");

    /* The target: nic within 11 % of plain at 5 % loss. */
    bool have_target = false;
    for (unsigned li = 0; li < b->o.n_values; li++) {
        if (b->o.values[li] != BENCH_TARGET_LOSS || !b->sweep_ran[li])
            continue;
        const struct run *plain = sweep_good(b, li, TLS_MODE_NONE);
        for (size_t k = 0; k < N_NIC_MODES; k++) {
            const struct run *r = sweep_good(b, li, nic_modes[k]);
            if (!r || !plain || plain->mbps <= 0)
                continue;
            double ratio = r->mbps / plain->mbps;
            printf("target (nic within %.0f%% of plain at %g%% TX loss): %s %.1f MB/s vs plain "
                   "%.1f MB/s = %.2fx -> %s\n",
                   (1 - BENCH_TARGET_RATIO) * 100, BENCH_TARGET_LOSS, app_mode_name(nic_modes[k]),
                   r->mbps, plain->mbps, ratio, ratio >= BENCH_TARGET_RATIO ? "met" : "NOT met");
            have_target = true;
        }
    }
    if (!have_target)
        printf("target (nic within %.0f%% of plain at %g%% TX loss): not checked (needs loss "
               "%g, plain and a nic mode, all successful)\n",
               (1 - BENCH_TARGET_RATIO) * 100, BENCH_TARGET_LOSS, BENCH_TARGET_LOSS);
}

/* Records-fully-offloaded target of an RX sweep at value `at` (percent):
   every nic mode's share against `want`. */
static void rx_records_target(const struct bench *b, enum sweep_kind kind, double at, double want)
{
    const char *what = kind == SWEEP_RX_REORDER ? "reordering" : "loss";
    printf("target (>= %.0f%% of records fully offloaded at %g%% RX %s):", want, at, what);
    if (b->o.sweep != kind) {
        printf(" not checked in this run (needs --%s with %g)\n", sweep_opt[kind], at);
        return;
    }
    bool any = false;
    for (unsigned li = 0; li < b->o.n_values; li++) {
        if (b->o.values[li] != at || !b->sweep_ran[li])
            continue;
        for (size_t k = 0; k < N_NIC_MODES; k++) {
            const struct run *r = sweep_good(b, li, nic_modes[k]);
            double full, partial;
            if (!r || !rec_pct(&r->ctr, &full, &partial))
                continue;
            printf("%s %s %.1f%% -> %s", any ? ";" : "", app_mode_name(nic_modes[k]), full,
                   full >= want ? "met" : "NOT met");
            any = true;
        }
    }
    if (!any)
        printf(" not checked (needs the value %g and a successful nic mode)", at);
    printf("\n");
}

static void print_rx_sweep_table(const struct bench *b)
{
    double gb = (double)b->o.size / 1e9;
    bool reorder = b->o.sweep == SWEEP_RX_REORDER;
    char gap[32] = "";
    if (reorder)
        snprintf(gap, sizeof(gap), " gap %u", BENCH_REORDER_GAP);
    printf("\n%s sweep: one upload of %.1f MiB per (value, mode), fault-rx '%s P%%%s' seed "
           "%" PRIu64 "\n",
           reorder ? "RX reorder" : "RX loss", (double)b->o.size / (1 << 20),
           reorder ? "reorder" : "loss", gap, b->o.seed + 1);
    print_nic_rx(b);
    if (b->o.repeat > 1)
        printf("median of %u runs (by throughput), CPU and counters of that run\n", b->o.repeat);
    printf("%7s %-*s %8s %9s %8s %9s %8s %7s %7s %7s %13s\n", reorder ? "reorder" : "loss",
           BENCH_MODE_W, "", "", "MB/s", "host", "host CPU", "NIC", reorder ? "reord." : "dropped",
           "records", "records", "NIC resync");
    printf("%7s %-*s %8s %9s %8s %9s %8s %7s %7s %7s %13s\n", "%", BENCH_MODE_W, "mode", "MB/s",
           "vs plain", "s/GB", "vs plain", "s/GB", "pkts %", "full %", "part. %", "req/confirmed");
    for (unsigned li = 0; li < b->o.n_values; li++) {
        if (!b->sweep_ran[li])
            continue;
        const struct run *plain = sweep_good(b, li, TLS_MODE_NONE);
        for (unsigned mi = 0; mi < b->o.n_modes; mi++) {
            const struct run *r = sweep_row_start(b, li, mi, 7, 8);
            if (!r)
                continue;
            printf(" %8.1f", r->mbps);
            ratio_col(r->mbps, plain ? plain->mbps : 0, plain != NULL);
            printf(" %8.3f", r->cpu.host_s / gb);
            ratio_col(r->cpu.host_s, plain ? plain->cpu.host_s : 0, plain != NULL);
            printf(" %8.3f", r->cpu.nic_s / gb);
            uint64_t hit = reorder ? r->ctr.rx_reordered : r->ctr.rx_dropped;
            if (r->ctr.rx_pkts)
                printf(" %7.2f", 100.0 * (double)hit / (double)r->ctr.rx_pkts);
            else
                printf(" %7s", "-");
            double full, partial;
            if (rec_pct(&r->ctr, &full, &partial))
                printf(" %7.1f %7.1f", full, partial);
            else
                printf(" %7s %7s", "-", "-");
            bool nic = false;
            for (size_t k = 0; k < N_NIC_MODES; k++)
                nic |= b->o.modes[mi] == nic_modes[k];
            if (nic) {
                char rs[48];
                snprintf(rs, sizeof(rs), "%" PRIu64 "/%" PRIu64, r->ctr.resync_req,
                         r->ctr.resync_ok);
                printf(" %13s", rs);
            } else {
                printf(" %13s", "-");
            }
            printf("\n");
        }
    }
    printf("(host/NIC s/GB = CPU seconds per 10^9 bytes of the thread class; %s = measured by\n"
           " the RX fault stage over that upload; records full/part. = received records the\n"
           " NIC decrypted and authenticated entirely / in part (the host re-encrypts and\n"
           " decrypts those), deltas of tls_<mode>.rx_records_*_offload; the rest had no\n"
           " help; sw never has any. NIC resync = offload_rx.rx_resync_requests /\n"
           " .TlsRxDeviceResync; '-' = not applicable)\n",
           reorder ? "reord." : "dropped");

    printf("%s\n", BENCH_PAPER_REF);
    printf("targets: >= %.0f%% at %g%% reordering, >= %.0f%% at %g%% loss, host CPU per byte of an "
           "offloaded upload within %.0f%% of plain%s\n",
           BENCH_RX_TARGET_REORDER_PCT, BENCH_RX_TARGET_REORDER, BENCH_RX_TARGET_LOSS_PCT,
           BENCH_RX_TARGET_LOSS, (BENCH_RX_TARGET_CPU_RATIO - 1) * 100,
           b->o.rx_reorder_bytes == 0
               ? " (they are anic's NIC's; this run is the paper's NIC, rx-reorder-buf 0)"
               : "");
    rx_records_target(b, SWEEP_RX_REORDER, BENCH_RX_TARGET_REORDER, BENCH_RX_TARGET_REORDER_PCT);
    rx_records_target(b, SWEEP_RX_LOSS, BENCH_RX_TARGET_LOSS, BENCH_RX_TARGET_LOSS_PCT);
    for (size_t k = 0; k < N_NIC_MODES; k++) {
        bool listed = false;
        for (unsigned mi = 0; mi < b->o.n_modes; mi++)
            listed |= b->o.modes[mi] == nic_modes[k];
        if (!listed)
            continue;
        printf(
            "target (host CPU/B of a %s upload <= %.2fx plain's%s):", app_mode_name(nic_modes[k]),
            BENCH_RX_TARGET_CPU_RATIO, b->o.repeat > 1 ? ", medians of the runs" : "");
        unsigned checked = 0, met = 0;
        for (unsigned li = 0; li < b->o.n_values; li++) {
            if (!b->sweep_ran[li])
                continue;
            double plain = sweep_host_median(b, li, TLS_MODE_NONE);
            double nic = sweep_host_median(b, li, nic_modes[k]);
            if (plain <= 0 || nic < 0)
                continue;
            double ratio = nic / plain;
            printf(" %.2fx@%g%%", ratio, b->o.values[li]);
            checked++;
            met += ratio <= BENCH_RX_TARGET_CPU_RATIO;
        }
        if (checked)
            printf(" -> met at %u of %u values\n", met, checked);
        else
            printf(" not checked (needs plain and %s, both successful)\n",
                   app_mode_name(nic_modes[k]));
    }
}

/* One runtime per value, in order: start, transfers (downloads for the TX
   sweep, uploads for the RX sweeps), stop, free. */
static int run_sweep(struct bench *b)
{
    char err[512], spec[128];
    bool failed = false, rx = sweep_rx(b);
    int dir = rx ? DIR_UP : DIR_DOWN;
    const char *label = sweep_label(b);
    printf("anic bench --%s: %" PRIu64 " bytes (%.1f MiB) per %s, modes ", sweep_opt[b->o.sweep],
           b->o.size, (double)b->o.size / (1 << 20), dir == DIR_UP ? "upload" : "download");
    print_modes(b);
    printf(", %u run%s each\n  %s %%:", b->o.repeat, b->o.repeat > 1 ? "s" : "",
           rx ? label : "TX loss");
    for (unsigned li = 0; li < b->o.n_values; li++)
        printf("%s%g", li ? "," : " ", b->o.values[li]);
    if (b->o.sweep == SWEEP_RX_REORDER)
        printf(" (gap %u)", BENCH_REORDER_GAP);
    printf(", seed %" PRIu64 ": fault-tx %" PRIu64 ", fault-rx %" PRIu64
           " (same at every value; modes of one value share its stage)\n",
           b->o.seed, b->o.seed, b->o.seed + 1);
    print_machine(b);
    printf("  namespace %s (a fresh one per value), MTU %u\n", b->netns, b->o.mtu);
    print_listeners(b);
    print_nic_rx(b);
    printf("  csv: %s\n", b->csv ? b->o.csv_path : "(none)");
    fflush(stdout);

    /* Seeds come from --seed in runtime_up(), so every runtime replays them. */
    for (unsigned li = 0; li < b->o.n_values && !stop_requested(b); li++) {
        struct nic_fault_cfg f;
        if (b->o.sweep == SWEEP_RX_REORDER)
            snprintf(spec, sizeof(spec), "reorder %g%% gap %u", b->o.values[li], BENCH_REORDER_GAP);
        else
            snprintf(spec, sizeof(spec), "loss %g%%", b->o.values[li]);
        if (nic_fault_cfg_parse(&f, spec, err, sizeof(err)) < 0) {
            fprintf(stderr, "anic bench: fault spec '%s': %s\n", spec, err);
            failed = true;
            break;
        }
        if (runtime_up(b, rx ? &b->o.fault_tx : &f, rx ? &f : &b->o.fault_rx, err, sizeof(err)) <
            0) {
            fprintf(stderr, "anic bench: runtime %u of %u (%s %g%%): %s\n", li + 1, b->o.n_values,
                    label, b->o.values[li], err);
            failed = true;
            break;
        }
        b->sweep_ran[li] = true;
        printf("\n%s %g%%: runtime %u/%u up, fault-tx '%s', fault-rx '%s', curl max-time %.0f s\n",
               label, b->o.values[li], li + 1, b->o.n_values, b->fault_tx, b->fault_rx,
               transfer_max_time(b, dir));
        fflush(stdout);
        for (unsigned rep = 0; rep < b->o.repeat && !stop_requested(b); rep++)
            for (unsigned mi = 0; mi < b->o.n_modes; mi++) {
                struct cell *c = &b->sweep[li][mi];
                if (c->failed)
                    continue;
                wait_idle(b);
                if (stop_requested(b))
                    break;
                struct run *r = &c->runs[c->n_runs++];
                transfer(b, mi, dir, r);
                print_run(b, mi, dir, rep, r);
                if (!r->ok)
                    c->failed = true;
                csv_row(b, mi, dir, r);
                if (stop_requested(b))
                    break;
            }
        double t0 = now_s();
        runtime_down(b);
        printf("%s %g%%: runtime stopped and freed, namespace deleted (%.2f s)\n", label,
               b->o.values[li], now_s() - t0);
        for (unsigned mi = 0; mi < b->o.n_modes; mi++) {
            pick_median(&b->sweep[li][mi]);
            failed |= b->sweep[li][mi].failed;
        }
    }
    if (rx)
        print_rx_sweep_table(b);
    else
        print_sweep_table(b);
    return failed ? 1 : 0;
}

/* ---- --vs-nginx set-up ---- */

/* ng_dir in /dev/shm (tmpfs: nginx's upload file costs a copy into memory,
   no disk): the certificate, nginx.conf, www/bytes/SIZE (the /bytes body)
   and www/upload/ for the PUTs. */
static int nginx_prepare(struct bench *b)
{
    char p[160];
    snprintf(b->ng_dir, sizeof(b->ng_dir), "/dev/shm/anic-bench-%d-XXXXXX", (int)getpid());
    if (!mkdtemp(b->ng_dir)) {
        fprintf(stderr, "anic bench: mkdtemp %s: %s\n", b->ng_dir, strerror(errno));
        b->ng_dir[0] = 0;
        return -1;
    }
    chmod(b->ng_dir, 0755); /* nginx's workers run unprivileged */
    b->ng.dir = b->ng_dir;
    b->ng.cert = b->ng_cert;
    b->ng.key = b->ng_key;
    b->ng.who = "anic bench --vs-nginx";
    b->ng.workers = 1;
    if (!bench_find_tool("nginx", b->ng.bin, sizeof(b->ng.bin))) {
        fprintf(stderr, "anic bench: --vs-nginx needs nginx (scripts/deps.sh installs "
                        "nginx-light)\n");
        return -1;
    }
    if (bench_make_cert(b->ng_dir, b->ng_cert, sizeof(b->ng_cert), b->ng_key, sizeof(b->ng_key)) <
        0) {
        fprintf(stderr, "anic bench: cannot make the certificate in %s\n", b->ng_dir);
        return -1;
    }
    snprintf(b->ca_path, sizeof(b->ca_path), "%s", b->ng_cert); /* self-signed: curl's CA */
    snprintf(p, sizeof(p), "%s/www", b->ng_dir);
    int ok = mkdir(p, 0755) == 0;
    snprintf(p, sizeof(p), "%s/www/bytes", b->ng_dir);
    ok = ok && mkdir(p, 0755) == 0;
    snprintf(p, sizeof(p), "%s/www/upload", b->ng_dir);
    ok = ok && mkdir(p, 0777) == 0 && chmod(p, 0777) == 0;
    snprintf(p, sizeof(p), "%s/www/bytes/%" PRIu64, b->ng_dir, b->o.size);
    ok = ok && bench_write_pattern_file(p, b->o.size) == 0 && chmod(p, 0644) == 0;
    if (!ok || bench_nginx_write_conf(&b->ng) < 0) {
        fprintf(stderr, "anic bench: cannot prepare nginx's files in %s\n", b->ng_dir);
        return -1;
    }
    return 0;
}

static void nginx_cleanup(struct bench *b)
{
    bench_nginx_stop(&b->ng);
    char rm[256], out[64];
    if (!b->ng_dir[0] || !bench_find_tool("rm", rm, sizeof(rm)))
        return;
    char *argv[] = {rm, "-rf", "--", b->ng_dir, NULL};
    bench_run_capture(argv, out, sizeof(out), NULL, 30, NULL);
    b->ng_dir[0] = 0;
}

/* ---- main ---- */

int bench_main(int argc, char **argv)
{
    if (bench_load_wanted(argc, argv))
        return bench_load_main(argc, argv); /* bench/bench_load.c */
    static struct bench bench;              /* large: cells */
    struct bench *b = &bench;
    int rc = parse_opts(argc, argv, &b->o);
    if (rc)
        return rc == 1 ? 0 : 2;
    if (b->o.micro)
        return bench_micro_run(b->o.size, b->o.repeat, b->o.mtu);

    if (geteuid() != 0) {
        fprintf(stderr, "anic bench: needs root (network namespace, TUN device)\n");
        return 1;
    }
    if (b->o.host_instr) {
        const char *names[APP_SERVER_MAX_LISTENERS];
        for (unsigned i = 0; i < b->o.n_modes; i++)
            names[i] = app_mode_name(b->o.modes[i]);
        return bench_instr_run(names, b->o.n_modes, b->o.size);
    }
    pid_t pid = getpid();
    b->self_tid = gettid();
    b->clk_tck = sysconf(_SC_CLK_TCK);
    if (b->clk_tck <= 0)
        b->clk_tck = 100;
    snprintf(b->netns, sizeof(b->netns), "anic-bench-%d", (int)pid);
    snprintf(b->ca_path, sizeof(b->ca_path), "/tmp/anic-bench-%d-ca.pem", (int)pid);
    snprintf(b->upload_path, sizeof(b->upload_path), "/tmp/anic-bench-%d-upload", (int)pid);

    signal(SIGPIPE, SIG_IGN);
    /* Blocked before any thread exists, so every thread inherits the mask and
       the main thread takes these synchronously (sigtimedwait). */
    sigemptyset(&b->sigs);
    sigaddset(&b->sigs, SIGINT);
    sigaddset(&b->sigs, SIGTERM);
    sigaddset(&b->sigs, SIGHUP);
    sigaddset(&b->sigs, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &b->sigs, &b->old_mask);

    int status = 1;
    bool uploaded = false, tls = false;
    for (unsigned i = 0; i < b->o.n_modes; i++) {
        enum tls_mode m = b->o.modes[i];
        b->ports[i] = m == TLS_MODE_NONE ? 80 : (uint16_t)(4430 + (unsigned)m);
        tls |= m != TLS_MODE_NONE;
    }
    if (!b->o.rx_reorder_set) {
        struct app_runtime_cfg def;
        app_runtime_cfg_defaults(&def);
        b->o.rx_reorder_bytes = def.rx_reorder_bytes; /* shown in headers and the CSV */
    }
    bool uploads = b->o.sweep != SWEEP_TX_LOSS;
    if (uploads && zero_digest(b->o.size, b->o.upload_sha256, b->expect_hex) < 0) {
        fprintf(stderr, "anic bench: SHA-256 (libcrypto) failed\n");
        goto out;
    }
    if (strcmp(b->o.csv_path, "-") != 0) {
        b->csv = fopen(b->o.csv_path, "we");
        if (!b->csv) {
            fprintf(stderr, "anic bench: cannot write %s: %s\n", b->o.csv_path, strerror(errno));
            goto out;
        }
        fprintf(b->csv, "mode,direction,size_bytes,seconds,mbps,host_cpu_s,nic_cpu_s,nic_user_s,"
                        "host_cpu_s_per_gb,nic_cpu_s_per_gb,fault_tx,fault_rx,tx_loss_pct,"
                        "dump_bytes,retransmit_bytes,rx_fault,records_full_pct,"
                        "records_partial_pct,rx_reorder_bytes,rx_resync,record_size,"
                        "progress_descs,dump_descs,tag_reports,host_nic_extra_bytes,tx_records,"
                        "tx_bytes_copied,copies_per_byte\n");
        fflush(b->csv);
    }
    if (uploads) {
        if (make_sparse(b->upload_path, b->o.size) < 0)
            goto out;
        uploaded = true;
    }
    if (b->o.vs_nginx && nginx_prepare(b) < 0)
        goto out;
    if (stop_requested(b))
        goto out;

    status = b->o.sweep ? run_sweep(b) : run_compare(b);

out:
    bench_nginx_stop(&b->ng); /* before the namespace goes */
    runtime_down(b);          /* after an early stop */
    if (b->o.vs_nginx)
        nginx_cleanup(b); /* ca_path is in ng_dir */
    else if (tls)
        unlink(b->ca_path);
    if (uploaded)
        unlink(b->upload_path);
    if (b->csv && fclose(b->csv) != 0) {
        fprintf(stderr, "anic bench: write %s failed\n", b->o.csv_path);
        status = 1;
    }
    b->csv = NULL;
    if (stop_requested(b)) {
        printf("anic bench: %s, stopped early\n", strsignal(b->stop_sig));
        status = 128 + b->stop_sig;
    }
    fflush(stdout);
    return status;
}
