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

#endif
