/* Helpers shared by the device-level Check suites (test_ring, test_rx_offload,
 * test_tx_offload, test_lwip_flags): checks cheap enough for hot loops, the
 * seeded PRNG (test_rng.h), real IPv4/TCP packets with the tests' own RFC 1071 checksum
 * (independent of nic/), and the driver's side of a nic_dev whose TUN is one
 * end of a socketpair. */
#ifndef ANIC_TEST_UTIL_H
#define ANIC_TEST_UTIL_H

#include <check.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nic_abi.h"
#include "nic_dev.h"
#include "test_rng.h" /* the seed and generator (tu_rng_*) */

/* ---- Checks ---- */

/* What the test is doing, appended to TU_CHECK failures; set with TU_CTX(). */
extern char tu_ctx[256];

#define TU_CTX(...) snprintf(tu_ctx, sizeof(tu_ctx), __VA_ARGS__)

/* ck_assert_* records its location on every call (a write to the parent in
   fork mode); these only act on failure, so they are cheap in hot loops. */
#define TU_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg("%s:%d: %s [%s]", __FILE__, __LINE__, #cond, tu_ctx);                     \
    } while (0)

#define TU_CHECK_EQ(a, b)                                                                          \
    do {                                                                                           \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                           \
        if (a_ != b_)                                                                              \
            ck_abort_msg("%s:%d: %s == %s: %" PRIu64 " != %" PRIu64 " [%s]", __FILE__, __LINE__,   \
                         #a, #b, a_, b_, tu_ctx);                                                  \
    } while (0)

/* ---- Packets: IPv4 (RFC 791) / TCP (RFC 793) ---- */

#define TU_IP_HLEN      20u
#define TU_TCP_HLEN     20u                /* without options */
#define TU_IP_CSUM_OFF  10u                /* IPv4 header checksum, in the packet */
#define TU_TCP_CSUM_OFF (TU_IP_HLEN + 16u) /* TCP checksum, in the packet */
#define TU_HOST_IP      0x0a000001u        /* 10.0.0.1: the host side (driver, lwIP) */
#define TU_PEER_IP      0x0a000002u        /* 10.0.0.2: the peer on the wire */
#define TU_HOST_PORT    443u
#define TU_PEER_PORT    40000u

/* TCP header flags (lwIP's headers take the TCP_* names). */
#define TU_TCP_FIN 0x01u
#define TU_TCP_SYN 0x02u
#define TU_TCP_RST 0x04u
#define TU_TCP_PSH 0x08u
#define TU_TCP_ACK 0x10u

/* Big-endian loads and stores. */
void tu_put16(uint8_t *p, uint16_t v);
void tu_put32(uint8_t *p, uint32_t v);
uint16_t tu_get16(const uint8_t *p);
uint32_t tu_get32(const uint8_t *p);

/* RFC 1071, one big-endian byte pair at a time: add len bytes to acc, then
   fold and complement. */
uint32_t tu_csum_add(uint32_t acc, const uint8_t *p, size_t len);
uint16_t tu_csum_fold(uint32_t acc);

/* Checksums over a packet of tot bytes with a 20-byte IPv4 header: 0 when the
   stored checksum verifies, the value to store when its field is 0. */
uint16_t tu_ip_csum(const uint8_t *pkt);
uint16_t tu_tcp_csum(const uint8_t *pkt, size_t tot); /* with the pseudo-header */
/* Recompute and store them. */
void tu_ip_csum_set(uint8_t *pkt);
void tu_tcp_csum_set(uint8_t *pkt, size_t tot);

/* One segment: addresses and ports in host byte order. */
struct tu_tcp {
    uint32_t saddr, daddr;
    uint16_t sport, dport;
    uint16_t ip_id;
    uint32_t seq, ack;
    uint8_t flags;      /* TU_TCP_* */
    const uint8_t *opt; /* TCP options, opt_len a multiple of 4 */
    size_t opt_len;
    const uint8_t *payload;
    size_t len;
};

/* Write s at p: IPv4 (DF, TTL 64) and TCP (window 65535) headers, options,
   payload, both checksums correct. Returns the packet's length. */
size_t tu_build_tcp(uint8_t *p, const struct tu_tcp *s);

/* ---- The wire: the peer's end of the socketpair ---- */

/* Create a device over a SOCK_SEQPACKET socketpair standing in for TUN
   (message boundaries like TUN). cfg holds the sizes; its tun_fd is set here
   (the NIC owns and closes that end) and faults are off. *wire gets the
   other end. */
struct nic_dev *tu_dev_create(struct nic_dev_cfg *cfg, int *wire);

void tu_wire_send(int wire, const uint8_t *pkt, size_t len);
/* One packet the NIC wrote, or 0 when none is queued (never waits). */
size_t tu_wire_recv(int wire, uint8_t *buf, size_t cap);

struct nic_counters tu_counters(struct nic_dev *dev);

/* ---- The driver's side of the queues ---- */

struct tu_drv {
    struct nic_dev *dev;
    const struct nic_queues *q;
    int wire;                                          /* the peer's end */
    uint32_t tx_prod, tx_cq_cons, rx_prod, rx_cq_cons; /* free-running */
};

/* tu_dev_create() into d, indices at 0. */
void tu_drv_open(struct tu_drv *d, struct nic_dev_cfg *cfg);
/* Destroy the device and close the wire, those that are open; d is reset
   (wire -1). */
void tu_drv_close(struct tu_drv *d);

uint32_t tu_load_acq(const uint32_t *p);

/* Free slots as the driver sees them: a ring is full when prod - cons == size. */
uint32_t tu_tx_space(const struct tu_drv *d);
uint32_t tu_rx_space(const struct tu_drv *d);
/* Fill the slot at prod (not visible to the NIC until published). */
void tu_tx_post(struct tu_drv *d, const struct nic_tx_desc *desc);
void tu_rx_post(struct tu_drv *d, uint8_t *buf, uint32_t len, uint64_t cookie);
/* The doorbell: publish prod with release order. */
void tu_tx_publish(struct tu_drv *d);
void tu_rx_publish(struct tu_drv *d);

/* Take the entry at the driver's CQ consumer index if the NIC has handed it
   over (its phase is the one expected for this lap). */
bool tu_cq_take(struct tu_drv *d, bool rx, struct nic_cqe *out);
/* Tell the NIC how far the driver has read (it counts overflow against it). */
void tu_cq_publish(struct tu_drv *d, bool rx);

#endif
