/*
 * nic_seg.h - segmentation offloads of the NIC engine: TSO cuts a host TCP
 * segment larger than the wire MTU into wire packets (docs/design.md §4).
 */
#ifndef ANIC_NIC_SEG_H
#define ANIC_NIC_SEG_H

#include "nic_csum.h"

#include <stddef.h>
#include <stdint.h>

/* Called once per wire packet, in sequence order; pkt is valid only during
   the call. */
typedef void nic_seg_emit_fn(void *arg, const uint8_t *pkt, size_t len);

/* Cut the TCP segment pkt (parsed as v, payload_len > mss > 0) into packets
   of mss payload bytes (the last one shorter), each with the segment's IPv4
   and TCP headers: IPv4 total length, id (first + i), header checksum, TCP
   seq and checksum rewritten; FIN and PSH only on the last packet. scratch
   holds one wire packet (v->payload_off + mss bytes). Returns the number of
   packets emitted. */
unsigned nic_tso_cut(const uint8_t *pkt, const struct nic_tcp_view *v, uint32_t mss,
                     uint8_t *scratch, nic_seg_emit_fn *emit, void *arg);

#endif
