/* nic_tun.c - TUN device creation and kernel-side configuration (ioctl). */
#include "nic_tun.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int set_addr(int sock, const char *name, unsigned long req, uint32_t addr, char *err,
                    size_t errlen)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = addr;
    if (ioctl(sock, req, &ifr) < 0) {
        snprintf(err, errlen, "configure %s: %s", name, strerror(errno));
        return -1;
    }
    return 0;
}

int nic_tun_open(const char *name, uint32_t kernel_addr, unsigned prefix_len, uint32_t mtu,
                 bool gso, char *err, size_t errlen)
{
    if (strlen(name) >= IFNAMSIZ) {
        snprintf(err, errlen, "interface name too long: %s", name);
        return -1;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "/dev/net/tun: %s (needs root and the tun module)", strerror(errno));
        return -1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (gso ? IFF_VNET_HDR : 0);
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        snprintf(err, errlen, "TUNSETIFF %s: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    int hdr_sz = (int)sizeof(struct virtio_net_hdr);
    if (gso && (ioctl(fd, TUNSETVNETHDRSZ, &hdr_sz) < 0 ||
                ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4)) < 0)) {
        snprintf(err, errlen, "TUN offloads on %s: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        close(fd);
        return -1;
    }
    uint32_t mask = prefix_len ? htonl(~0u << (32 - prefix_len)) : 0;
    if (set_addr(sock, name, SIOCSIFADDR, kernel_addr, err, errlen) < 0 ||
        set_addr(sock, name, SIOCSIFNETMASK, mask, err, errlen) < 0)
        goto fail;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    ifr.ifr_mtu = (int)mtu;
    if (ioctl(sock, SIOCSIFMTU, &ifr) < 0) {
        snprintf(err, errlen, "set MTU %u on %s: %s", mtu, name, strerror(errno));
        goto fail;
    }
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0 ||
        (ifr.ifr_flags |= IFF_UP | IFF_RUNNING, ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)) {
        snprintf(err, errlen, "bring up %s: %s", name, strerror(errno));
        goto fail;
    }
    close(sock);
    return fd;
fail:
    close(sock);
    close(fd);
    return -1;
}
