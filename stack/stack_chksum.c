/* stack_chksum.c - the host's Internet checksum for lwIP (docs/design.md §7).
 *
 * lwIP checksums every TCP segment it sends (during tcp_write's copy) and
 * receives (tcp_input), in software, with a loop that adds one 16-bit word
 * at a time: it was the largest host cost of a download and of an upload.
 * Debian's liblwip calls lwip_standard_chksum through its PLT, so a
 * definition in the program takes its place (ELF symbol interposition, as
 * with malloc); this one adds 64-bit words (AVX2 where the CPU has it). */
#include "stack_chksum.h"

#include <lwip/inet_chksum.h>

#include "nic_csum.h"

/* Set by stack_chksum_interposed() around one lwIP call on this thread. */
static _Thread_local bool probe_armed;
static _Thread_local bool probe_hit;

uint16_t lwip_standard_chksum(const void *dataptr, int len)
{
    if (probe_armed)
        probe_hit = true;
    if (len <= 0)
        return 0;
    /* nic_csum_add is a pure function of the bytes (nic/nic_csum.c): the
       host shares the arithmetic, not any device state. Words are added in
       memory order, which is what lwIP returns for any alignment (it swaps
       back after an odd start). */
    uint32_t sum = nic_csum_add(0, dataptr, (size_t)len);
    while (sum >> 16)
        sum = (sum & 0xffffu) + (sum >> 16);
    return (uint16_t)sum;
}

bool stack_chksum_interposed(void)
{
    static const uint8_t bytes[4] = {0x45, 0x00, 0x12, 0x34};
    probe_hit = false;
    probe_armed = true;
    (void)inet_chksum(bytes, sizeof(bytes));
    probe_armed = false;
    return probe_hit;
}
