/* nic_link.c - wire between the NIC engine and TUN: fault stages + pcap tap. */
#include "nic_link.h"

#include <errno.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define LINK_MAX_PACKET 65535u

struct nic_link {
    int tun_fd;
    uint32_t mtu;
    struct nic_fault *fault_tx; /* NULL = passthrough */
    struct nic_fault *fault_rx;
    pcap_t *pcap;
    pcap_dumper_t *dumper;
    struct nic_link_counters counters;
    uint8_t scratch[LINK_MAX_PACKET]; /* fault-stage staging, one packet */
};

static void link_tap(struct nic_link *link, const uint8_t *pkt, size_t len)
{
    if (!link->dumper)
        return;
    struct pcap_pkthdr hdr;
    gettimeofday(&hdr.ts, NULL);
    hdr.caplen = (bpf_u_int32)len;
    hdr.len = (bpf_u_int32)len;
    pcap_dump((u_char *)link->dumper, &hdr, pkt);
}

struct nic_link *nic_link_create(int tun_fd, const struct nic_fault_cfg *fault_tx,
                                 const struct nic_fault_cfg *fault_rx, const char *pcap_path,
                                 uint32_t mtu, char *err, size_t errlen)
{
    struct nic_link *link = calloc(1, sizeof(*link));
    if (!link) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    link->tun_fd = tun_fd;
    link->mtu = mtu;
    if (!nic_fault_cfg_is_passthrough(fault_tx) && !(link->fault_tx = nic_fault_create(fault_tx)))
        goto oom;
    if (!nic_fault_cfg_is_passthrough(fault_rx) && !(link->fault_rx = nic_fault_create(fault_rx)))
        goto oom;
    if (pcap_path) {
        link->pcap = pcap_open_dead(DLT_RAW, (int)LINK_MAX_PACKET);
        if (!link->pcap)
            goto oom;
        link->dumper = pcap_dump_open(link->pcap, pcap_path);
        if (!link->dumper) {
            snprintf(err, errlen, "pcap %s: %s", pcap_path, pcap_geterr(link->pcap));
            link->tun_fd = -1; /* the caller keeps its fd on failure */
            nic_link_destroy(link);
            return NULL;
        }
    }
    return link;
oom:
    snprintf(err, errlen, "out of memory");
    link->tun_fd = -1;
    nic_link_destroy(link);
    return NULL;
}

void nic_link_destroy(struct nic_link *link)
{
    if (!link)
        return;
    if (link->dumper)
        pcap_dump_close(link->dumper);
    if (link->pcap)
        pcap_close(link->pcap);
    nic_fault_destroy(link->fault_tx);
    nic_fault_destroy(link->fault_rx);
    if (link->tun_fd >= 0)
        close(link->tun_fd);
    free(link);
}

static void link_write(struct nic_link *link, const uint8_t *pkt, size_t len)
{
    link_tap(link, pkt, len);
    ssize_t n = write(link->tun_fd, pkt, len);
    if (n != (ssize_t)len) {
        link->counters.tx_write_errors++;
        return;
    }
    link->counters.tx_packets++;
    link->counters.tx_bytes += len;
}

void nic_link_send(struct nic_link *link, const uint8_t *pkt, size_t len, uint64_t now_ns)
{
    if (!link->fault_tx) {
        link_write(link, pkt, len);
        return;
    }
    nic_fault_push(link->fault_tx, pkt, len, now_ns);
    nic_link_tx_flush(link, now_ns);
}

unsigned nic_link_tx_flush(struct nic_link *link, uint64_t now_ns)
{
    unsigned sent = 0;
    if (!link->fault_tx)
        return 0;
    size_t len;
    while ((len = nic_fault_pop(link->fault_tx, now_ns, link->scratch, sizeof(link->scratch)))) {
        link_write(link, link->scratch, len);
        sent++;
    }
    return sent;
}

/* One read from TUN into buf; returns length or 0 when nothing is queued. */
static size_t link_read(struct nic_link *link, uint8_t *buf, size_t cap)
{
    for (;;) {
        ssize_t n = read(link->tun_fd, buf, cap);
        if (n > 0) {
            link->counters.rx_packets++;
            link->counters.rx_bytes += (uint64_t)n;
            link_tap(link, buf, (size_t)n);
            return (size_t)n;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            link->counters.rx_read_errors++;
        return 0;
    }
}

size_t nic_link_recv(struct nic_link *link, uint8_t *buf, size_t cap, uint64_t now_ns)
{
    if (!link->fault_rx) {
        /* The TUN MTU equals ours, so a buffer of at least MTU bytes holds any
           packet the kernel hands us: read straight into it (the "DMA"). */
        if (cap >= link->mtu)
            return link_read(link, buf, cap);
        for (;;) {
            size_t n = link_read(link, link->scratch, sizeof(link->scratch));
            if (n <= cap) {
                memcpy(buf, link->scratch, n);
                return n;
            }
            link->counters.rx_truncated++; /* dropped; try the next one */
        }
    }
    /* Feed everything the kernel has queued into the fault stage, then take
       the next packet that is due. Bounded: the stage counts its own overflow. */
    for (int i = 0; i < 64; i++) {
        size_t n = link_read(link, link->scratch, sizeof(link->scratch));
        if (!n)
            break;
        nic_fault_push(link->fault_rx, link->scratch, n, now_ns);
    }
    for (;;) {
        size_t n = nic_fault_pop(link->fault_rx, now_ns, link->scratch, sizeof(link->scratch));
        if (!n)
            return 0;
        if (n > cap) {
            link->counters.rx_truncated++;
            continue;
        }
        memcpy(buf, link->scratch, n);
        return n;
    }
}

uint64_t nic_link_next_deadline(const struct nic_link *link)
{
    uint64_t t = UINT64_MAX;
    if (link->fault_tx) {
        uint64_t d = nic_fault_next_deadline(link->fault_tx);
        if (d < t)
            t = d;
    }
    if (link->fault_rx) {
        uint64_t d = nic_fault_next_deadline(link->fault_rx);
        if (d < t)
            t = d;
    }
    return t;
}

int nic_link_fd(const struct nic_link *link)
{
    return link->tun_fd;
}

void nic_link_get_counters(const struct nic_link *link, struct nic_link_counters *out)
{
    *out = link->counters;
}

void nic_link_get_fault_stats(const struct nic_link *link, struct nic_fault_stats *tx,
                              struct nic_fault_stats *rx)
{
    memset(tx, 0, sizeof(*tx));
    memset(rx, 0, sizeof(*rx));
    if (link->fault_tx)
        nic_fault_get_stats(link->fault_tx, tx);
    if (link->fault_rx)
        nic_fault_get_stats(link->fault_rx, rx);
}
