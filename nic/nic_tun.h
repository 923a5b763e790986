/* nic_tun.h - the Linux TUN device at the far end of the simulated wire. */
#ifndef ANIC_NIC_TUN_H
#define ANIC_NIC_TUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Create TUN device `name` (IFF_TUN | IFF_NO_PI) in the calling thread's
   network namespace, give its kernel side addr/prefix, set the MTU, bring it
   up. gso: also IFF_VNET_HDR with TUNSETOFFLOAD TUN_F_CSUM | TUN_F_TSO4, so
   every read and write carries a struct virtio_net_hdr and the kernel sends
   and takes TCP super-packets of up to 64 KiB (nic_link.c splits and merges
   them). Returns a non-blocking fd, or -1 with a message in err. */
int nic_tun_open(const char *name, uint32_t kernel_addr, unsigned prefix_len, uint32_t mtu,
                 bool gso, char *err, size_t errlen);

#endif
