/* stack_chksum.h - the host's Internet checksum for lwIP (docs/design.md §7). */
#ifndef ANIC_STACK_CHKSUM_H
#define ANIC_STACK_CHKSUM_H

#include <stdbool.h>
#include <stdint.h>

/* lwIP's checksum primitive, defined here so that it replaces the one in
   Debian's liblwip (which calls it through its PLT): the ones'-complement
   sum of len bytes in memory order, folded to 16 bits, not complemented;
   0 for len <= 0. Same results as lwIP's, for any length and alignment. */
uint16_t lwip_standard_chksum(const void *dataptr, int len);

/* True when lwIP's own checksum code runs lwip_standard_chksum above (the
   dynamic linker bound liblwip's calls to it); false means lwIP still uses
   its built-in loop (correct, only slower). Cheap: one 4-byte inet_chksum. */
bool stack_chksum_interposed(void);

/* Checksum offload (docs/design.md §7), process-wide as lwIP's checksum
   code is, off by default: while on, tcp_write's copy through
   stack_tcp_write does not sum the payload, the driver sets NIC_TXF_CSUM
   on every DATA descriptor (the NIC fills the TCP checksum), and lwIP does
   not sum again a received packet the NIC verified (stack_chksum_rx_trust). */
void stack_chksum_set_offload(bool on);
bool stack_chksum_offload(void);

/* Around one tcp_write on this thread: with the offload on, its copies
   (lwip_chksum_copy) skip the sum. */
void stack_chksum_copy_begin(void);
void stack_chksum_copy_end(void);

/* Before lwIP's input of one packet the NIC verified (NIC_RXF_CSUM_OK), on
   this thread, with the offload on (else a no-op): lwIP's next pseudo-header checksum (tcp_input's
   check, the first one of a TCP segment's input) reports it valid without summing.
   stack_chksum_rx_trust_end() after the input withdraws what was not used
   and returns whether the check was skipped. */
void stack_chksum_rx_trust(void);
bool stack_chksum_rx_trust_end(void);

#endif
