/* Helpers shared by the device-level Check suites; see test_util.h. */
#include "test_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

char tu_ctx[256];

/* ---- Packets ---- */

void tu_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void tu_put32(uint8_t *p, uint32_t v)
{
    tu_put16(p, (uint16_t)(v >> 16));
    tu_put16(p + 2, (uint16_t)v);
}

uint16_t tu_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

uint32_t tu_get32(const uint8_t *p)
{
    return (uint32_t)tu_get16(p) << 16 | tu_get16(p + 2);
}

uint32_t tu_csum_add(uint32_t acc, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        acc += (uint32_t)p[i] << 8 | p[i + 1];
    if (len & 1)
        acc += (uint32_t)p[len - 1] << 8;
    return acc;
}

uint16_t tu_csum_fold(uint32_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffffu) + (acc >> 16);
    return (uint16_t)~acc;
}

uint16_t tu_ip_csum(const uint8_t *pkt)
{
    return tu_csum_fold(tu_csum_add(0, pkt, TU_IP_HLEN));
}

uint16_t tu_tcp_csum(const uint8_t *pkt, size_t tot)
{
    uint8_t ph[12]; /* pseudo-header: addresses, 0, protocol, TCP length */
    memcpy(ph, pkt + 12, 8);
    ph[8] = 0;
    ph[9] = 6;
    tu_put16(ph + 10, (uint16_t)(tot - TU_IP_HLEN));
    return tu_csum_fold(
        tu_csum_add(tu_csum_add(0, ph, sizeof(ph)), pkt + TU_IP_HLEN, tot - TU_IP_HLEN));
}

void tu_ip_csum_set(uint8_t *pkt)
{
    tu_put16(pkt + TU_IP_CSUM_OFF, 0);
    tu_put16(pkt + TU_IP_CSUM_OFF, tu_ip_csum(pkt));
}

void tu_tcp_csum_set(uint8_t *pkt, size_t tot)
{
    tu_put16(pkt + TU_TCP_CSUM_OFF, 0);
    tu_put16(pkt + TU_TCP_CSUM_OFF, tu_tcp_csum(pkt, tot));
}

size_t tu_build_tcp(uint8_t *p, const struct tu_tcp *s)
{
    size_t thl = TU_TCP_HLEN + s->opt_len;
    size_t tot = TU_IP_HLEN + thl + s->len;
    memset(p, 0, TU_IP_HLEN + thl);
    p[0] = 0x45; /* IPv4, 5 words */
    tu_put16(p + 2, (uint16_t)tot);
    tu_put16(p + 4, s->ip_id);
    tu_put16(p + 6, 0x4000); /* DF, not a fragment */
    p[8] = 64;
    p[9] = 6; /* TCP */
    tu_put32(p + 12, s->saddr);
    tu_put32(p + 16, s->daddr);
    uint8_t *t = p + TU_IP_HLEN;
    tu_put16(t, s->sport);
    tu_put16(t + 2, s->dport);
    tu_put32(t + 4, s->seq);
    tu_put32(t + 8, s->ack);
    t[12] = (uint8_t)((thl / 4) << 4);
    t[13] = s->flags;
    tu_put16(t + 14, 65535);
    if (s->opt_len)
        memcpy(t + TU_TCP_HLEN, s->opt, s->opt_len);
    if (s->len)
        memcpy(t + thl, s->payload, s->len);
    tu_ip_csum_set(p);
    tu_tcp_csum_set(p, tot);
    return tot;
}

/* ---- The wire ---- */

struct nic_dev *tu_dev_create(struct nic_dev_cfg *cfg, int *wire)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
    cfg->tun_fd = sv[0];
    nic_fault_cfg_init(&cfg->fault_tx);
    nic_fault_cfg_init(&cfg->fault_rx);
    *wire = sv[1];
    char err[128] = "";
    struct nic_dev *dev = nic_dev_create(cfg, err, sizeof(err));
    ck_assert_msg(dev != NULL, "nic_dev_create: %s", err);
    return dev;
}

void tu_wire_send(int wire, const uint8_t *pkt, size_t len)
{
    ssize_t n = send(wire, pkt, len, 0);
    if (n != (ssize_t)len)
        ck_abort_msg("send %zu bytes: %zd (%s) [%s]", len, n, strerror(errno), tu_ctx);
}

size_t tu_wire_recv(int wire, uint8_t *buf, size_t cap)
{
    ssize_t n = recv(wire, buf, cap, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            ck_abort_msg("recv: %s [%s]", strerror(errno), tu_ctx);
        return 0;
    }
    TU_CHECK(n > 0);
    return (size_t)n;
}

struct nic_counters tu_counters(struct nic_dev *dev)
{
    struct nic_counters c;
    nic_dev_get_counters(dev, &c);
    return c;
}

/* ---- The driver's side of the queues ---- */

void tu_drv_open(struct tu_drv *d, struct nic_dev_cfg *cfg)
{
    memset(d, 0, sizeof(*d));
    d->dev = tu_dev_create(cfg, &d->wire);
    d->q = nic_dev_queues(d->dev);
}

void tu_drv_close(struct tu_drv *d)
{
    if (d->dev)
        nic_dev_destroy(d->dev);
    if (d->wire >= 0)
        close(d->wire);
    memset(d, 0, sizeof(*d));
    d->wire = -1;
}

uint32_t tu_load_acq(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

uint32_t tu_tx_space(const struct tu_drv *d)
{
    uint32_t in_use = d->tx_prod - tu_load_acq(&d->q->tx_idx->cons);
    TU_CHECK(in_use <= d->q->tx_size);
    return d->q->tx_size - in_use;
}

uint32_t tu_rx_space(const struct tu_drv *d)
{
    uint32_t in_use = d->rx_prod - tu_load_acq(&d->q->rx_idx->cons);
    TU_CHECK(in_use <= d->q->rx_size);
    return d->q->rx_size - in_use;
}

void tu_tx_post(struct tu_drv *d, const struct nic_tx_desc *desc)
{
    TU_CHECK(tu_tx_space(d) > 0);
    d->q->tx_ring[nic_ring_slot(d->tx_prod, d->q->tx_size)] = *desc;
    d->tx_prod++;
}

void tu_rx_post(struct tu_drv *d, uint8_t *buf, uint32_t len, uint64_t cookie)
{
    TU_CHECK(tu_rx_space(d) > 0);
    struct nic_rx_desc *r = &d->q->rx_ring[nic_ring_slot(d->rx_prod, d->q->rx_size)];
    memset(r, 0, sizeof(*r));
    r->addr = (uint64_t)(uintptr_t)buf;
    r->len = len;
    r->cookie = cookie;
    d->rx_prod++;
}

void tu_tx_publish(struct tu_drv *d)
{
    __atomic_store_n(&d->q->tx_idx->prod, d->tx_prod, __ATOMIC_RELEASE);
    nic_dev_doorbell(d->dev);
}

void tu_rx_publish(struct tu_drv *d)
{
    __atomic_store_n(&d->q->rx_idx->prod, d->rx_prod, __ATOMIC_RELEASE);
    nic_dev_doorbell(d->dev);
}

bool tu_cq_take(struct tu_drv *d, bool rx, struct nic_cqe *out)
{
    struct nic_cqe *cq = rx ? d->q->rx_cq : d->q->tx_cq;
    uint32_t size = rx ? d->q->rx_cq_size : d->q->tx_cq_size;
    uint32_t *cons = rx ? &d->rx_cq_cons : &d->tx_cq_cons;
    const struct nic_cqe *e = &cq[nic_ring_slot(*cons, size)];
    if (__atomic_load_n(&e->phase, __ATOMIC_ACQUIRE) != nic_cq_phase(*cons, size))
        return false;
    *out = *e;
    (*cons)++;
    return true;
}

void tu_cq_publish(struct tu_drv *d, bool rx)
{
    struct nic_ring_idx *idx = rx ? d->q->rx_cq_idx : d->q->tx_cq_idx;
    __atomic_store_n(&idx->cons, rx ? d->rx_cq_cons : d->tx_cq_cons, __ATOMIC_RELEASE);
}
