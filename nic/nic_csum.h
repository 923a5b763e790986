/* nic_csum.h - Internet checksum (RFC 1071) helpers for IPv4/TCP packets. */
#ifndef ANIC_NIC_CSUM_H
#define ANIC_NIC_CSUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NIC_IPPROTO_TCP 6
#define NIC_MAX_PACKET  65535u /* largest IPv4 packet */

/* TCP header flag bits (RFC 793). */
#define NIC_TCP_FIN 0x01
#define NIC_TCP_SYN 0x02
#define NIC_TCP_RST 0x04
#define NIC_TCP_PSH 0x08
#define NIC_TCP_ACK 0x10

/* Parsed view of an IPv4/TCP packet; offsets into the packet. */
struct nic_tcp_view {
    size_t ip_hlen, tcp_off, tcp_hlen, payload_off, payload_len;
    uint32_t saddr, daddr; /* network byte order */
    uint16_t sport, dport; /* network byte order */
    uint32_t seq;          /* host byte order */
    uint32_t ack;          /* host byte order */
    uint16_t window;       /* host byte order, unscaled */
    uint8_t tcp_flags;
};

/* Ones-complement sum of data, folded into 32 bits (not yet complemented). */
uint32_t nic_csum_add(uint32_t sum, const uint8_t *data, size_t len);
uint16_t nic_csum_fold(uint32_t sum);

/* What a received frame is, as far as its headers tell (checksums aside). */
enum nic_ip_kind {
    NIC_IP_TCP,       /* a whole IPv4 TCP segment, lengths consistent */
    NIC_IP_OTHER,     /* well-formed IPv4 but not that: other protocol, fragment */
    NIC_IP_MALFORMED, /* not IPv4, IP header or total length inconsistent with the
                         frame, or a TCP header that does not fit */
};

/* Classify pkt and, for NIC_IP_TCP, fill v (when v is not NULL). */
enum nic_ip_kind nic_ip_classify(const uint8_t *pkt, size_t len, struct nic_tcp_view *v);

/* Fill v if pkt is a well-formed IPv4 TCP packet (lengths consistent, not a
   fragment). Returns false otherwise. Checksums are not checked. */
bool nic_parse_tcp(const uint8_t *pkt, size_t len, struct nic_tcp_view *v);
/* True if pkt is an IPv4 fragment (first or later) of a TCP segment. */
bool nic_is_tcp_fragment(const uint8_t *pkt, size_t len);

/* True if both the IPv4 header checksum and the TCP checksum verify. */
bool nic_tcp_csum_ok(const uint8_t *pkt, const struct nic_tcp_view *v);

/* Recompute and store the TCP checksum (after the payload was changed). */
void nic_tcp_csum_fix(uint8_t *pkt, const struct nic_tcp_view *v);

#endif
