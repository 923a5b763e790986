/*
 * nic_link.h - the simulated wire between the NIC engine and the TUN device:
 * one fault stage per direction (netem vocabulary, nic_fault.h) and a pcap
 * tap that records the wire as the peer sees it (TX after its fault stage,
 * RX before its fault stage). Used by the engine thread only.
 */
#ifndef ANIC_NIC_LINK_H
#define ANIC_NIC_LINK_H

#include "nic_csum.h"
#include "nic_fault.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nic_link;

struct nic_link_counters {
    uint64_t tx_packets, tx_bytes, tx_write_errors;
    uint64_t rx_packets, rx_bytes, rx_read_errors, rx_truncated;
    uint64_t rx_reads_empty; /* TUN reads that found nothing queued (EAGAIN): the cost of polling */
    /* GSO (tun_gso): TX writes of an in-order run merged into one super-packet
       and the wire packets in them; RX super-packets read and split, the wire
       packets they became, and reads dropped because they could not be split
       or their checksum request was out of bounds. */
    uint64_t tx_gso_writes, tx_gso_packets, rx_gso_reads, rx_gso_packets, rx_gso_bad;
    uint64_t tx_tso_merged; /* TSO segments appended to the previous one's super-packet */
    uint64_t tx_copied;     /* TX bytes memcpy'd: fault stage in and out, GSO merge, headers */
};

/* Takes ownership of tun_fd (must be non-blocking). pcap_path may be NULL.
   tun_gso: the fd was opened with nic_tun_open(gso = true): every read and
   write carries a struct virtio_net_hdr. The fault stages and the pcap tap
   still see single wire packets: super-packets the kernel sends are split
   before them, and each in-order run of TCP packets leaving them is merged
   into one write (nic_link_tx_flush ends a run). */
struct nic_link *nic_link_create(int tun_fd, const struct nic_fault_cfg *fault_tx,
                                 const struct nic_fault_cfg *fault_rx, const char *pcap_path,
                                 uint32_t mtu, bool tun_gso, char *err, size_t errlen);
void nic_link_destroy(struct nic_link *link);

/* NIC -> wire. The packet is copied or written out before return. */
void nic_link_send(struct nic_link *link, const uint8_t *pkt, size_t len, uint64_t now_ns);

/* NIC -> wire, a TCP segment longer than mss (parsed as v) that TSO would
   cut: with a GSO TUN and nothing that sees wire packets one by one (no TX
   fault stage, no pcap), written as the one super-packet the cut packets
   would have been merged into, without cutting. Its TCP checksum is not
   read: the kernel is told to complete it, as the cut would have computed
   every packet's. Returns false, having sent nothing, if the caller must
   cut it. */
bool nic_link_send_tso(struct nic_link *link, const uint8_t *pkt, const struct nic_tcp_view *v,
                       uint32_t mss);

/* Where the engine may build the next TX packet of up to len bytes (GSO
   only; NULL: use its own buffer). Passed to nic_link_send or
   nic_link_send_tso, a packet built there joins a GSO run by reference
   instead of being copied: the slot stays put until the run is written. */
uint8_t *nic_link_tx_slot(struct nic_link *link, size_t len);

/* Release TX packets whose fault-stage departure time has come, and write
   out the run being merged (GSO). Returns the count of packets released. */
unsigned nic_link_tx_flush(struct nic_link *link, uint64_t now_ns);

/* Wire -> NIC: the next packet due, written into buf. Reads the TUN device as
   needed. Returns its length, 0 if none is ready. A packet larger than cap is
   dropped and counted (rx_truncated). */
size_t nic_link_recv(struct nic_link *link, uint8_t *buf, size_t cap, uint64_t now_ns);

/* Wire -> NIC, a GSO super-packet whole (docs/design.md §6 "No split when
   no one looks"). Possible only with a GSO TUN, no RX fault stage, no pcap
   and no split packets waiting (nic_link_super_ok). */
struct nic_link_super {
    uint8_t *pkt; /* the IP packet in the link's read buffer, valid until the next read */
    size_t len;
    struct nic_tcp_view v;
    uint32_t mss;        /* gso_size: payload of every wire packet but the last */
    uint32_t pkts;       /* wire packets it stands for */
    uint64_t wire_bytes; /* their bytes */
};

enum nic_link_super_read {
    NIC_LINK_SUPER_NONE,   /* nothing to read */
    NIC_LINK_SUPER_QUEUED, /* a frame that is not a super-packet: nic_link_recv has it */
    NIC_LINK_SUPER_WHOLE   /* *sp describes a TCPv4 super-packet of more than one packet */
};

bool nic_link_super_ok(const struct nic_link *link);
/* One read from TUN (bounded: one frame). A super-packet is not split nor
   counted yet: the caller either takes it whole (nic_link_super_take) or has
   it split as any other read (nic_link_super_split), before the next read. */
enum nic_link_super_read nic_link_recv_super(struct nic_link *link, struct nic_link_super *sp,
                                             uint64_t now_ns);
void nic_link_super_take(struct nic_link *link, const struct nic_link_super *sp);
void nic_link_super_split(struct nic_link *link, const struct nic_link_super *sp);

/* Earliest time a held packet (either direction) becomes due; UINT64_MAX if none. */
uint64_t nic_link_next_deadline(const struct nic_link *link);

int nic_link_fd(const struct nic_link *link);

void nic_link_get_counters(const struct nic_link *link, struct nic_link_counters *out);
void nic_link_get_fault_stats(const struct nic_link *link, struct nic_fault_stats *tx,
                              struct nic_fault_stats *rx);

#endif
