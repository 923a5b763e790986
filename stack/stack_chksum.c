/* stack_chksum.c - the host's Internet checksum for lwIP (docs/design.md §7).
 *
 * lwIP checksums every TCP segment it sends (during tcp_write's copy) and
 * receives (tcp_input), in software, with a loop that adds one 16-bit word
 * at a time: it was the largest host cost of a download and of an upload.
 * Debian's liblwip calls lwip_standard_chksum through its PLT, so a
 * definition in the program takes its place (ELF symbol interposition, as
 * with malloc); this one adds 64-bit words (AVX2 where the CPU has it). */
#include "stack_chksum.h"

#include <dlfcn.h>
#include <lwip/inet_chksum.h>
#include <stdatomic.h>
#include <string.h>

#include "nic_csum.h"

/* Set by stack_chksum_interposed() around one lwIP call on this thread. */
static _Thread_local bool probe_armed;
static _Thread_local bool probe_hit;

static atomic_bool offload_on;
static _Thread_local bool copy_skip; /* stack_chksum_copy_begin .. _end */
static _Thread_local bool rx_trust;  /* stack_chksum_rx_trust .. first pseudo check */
static _Thread_local bool rx_armed;  /* stack_chksum_rx_trust .. _end */

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

void stack_chksum_set_offload(bool on)
{
    atomic_store_explicit(&offload_on, on, memory_order_relaxed);
}

bool stack_chksum_offload(void)
{
    return atomic_load_explicit(&offload_on, memory_order_relaxed);
}

void stack_chksum_copy_begin(void)
{
    copy_skip = stack_chksum_offload();
}

void stack_chksum_copy_end(void)
{
    copy_skip = false;
}

/* lwIP's copy-and-sum (LWIP_CHECKSUM_ON_COPY: tcp_write sums the payload
   as it copies it into the segment), replaced as lwip_standard_chksum is.
   Without the sum the segment's TCP checksum is wrong until the NIC
   writes it (NIC_TXF_CSUM), which it does for every packet of ours. */
u16_t lwip_chksum_copy(void *dst, const void *src, u16_t len)
{
    memcpy(dst, src, len);
    if (copy_skip)
        return 0;
    return lwip_standard_chksum(dst, len);
}

void stack_chksum_rx_trust(void)
{
    rx_armed = true;
    rx_trust = stack_chksum_offload();
}

bool stack_chksum_rx_trust_end(void)
{
    bool used = rx_armed && stack_chksum_offload() && !rx_trust;
    rx_armed = rx_trust = false;
    return used;
}

typedef u16_t pseudo_fn(struct pbuf *, u8_t, u16_t, const ip_addr_t *, const ip_addr_t *);

/* lwIP's pseudo-header checksum over a pbuf chain, replaced so that the
   check of a NIC-verified segment is skipped (once, see rx_trust); every
   other call goes to lwIP's own. 0 is what a valid segment sums to. */
u16_t ip_chksum_pseudo(struct pbuf *p, u8_t proto, u16_t proto_len, const ip_addr_t *src,
                       const ip_addr_t *dest)
{
    static pseudo_fn *lwip_own;
    if (rx_trust) {
        rx_trust = false;
        return 0;
    }
    pseudo_fn *f = __atomic_load_n(&lwip_own, __ATOMIC_ACQUIRE);
    if (!f) {
        f = (pseudo_fn *)dlsym(RTLD_NEXT, "ip_chksum_pseudo");
        if (!f) /* no liblwip after us to find (never with Debian's) */
            return inet_chksum_pseudo(p, proto, proto_len, ip_2_ip4(src), ip_2_ip4(dest));
        __atomic_store_n(&lwip_own, f, __ATOMIC_RELEASE);
    }
    return f(p, proto, proto_len, src, dest);
}
