/*
 * stack_host.h - the host: lwIP (tcpip thread) + our netif driver + the
 * interrupt thread ("stack-irq") that takes the core lock to process NIC
 * completions. Application code runs in lwIP callbacks under the core lock.
 */
#ifndef ANIC_STACK_HOST_H
#define ANIC_STACK_HOST_H

#include "stack_driver.h"

#include <stdint.h>

struct stack_host;

struct stack_host_cfg {
    uint32_t ip, netmask, gateway; /* lwIP's address, network byte order */
    uint32_t mtu;
    uint32_t tso_max;     /* TSO: largest TCP segment to the NIC (stack_driver_set_tso); 0 = off */
    uint32_t rx_buf_size; /* LRO: RX buffer size (stack_driver_set_rx_buf_size); 0 = the MTU */
    bool csum_offload;    /* checksum offload (stack_chksum_set_offload) */
    /* Fine-grained RTO floor in ms (stack_rto.h); 0 = lwIP's 500 ms ticks only. */
    uint32_t rto_min_ms;
    /* Abort a connection whose data saw no ACK progress for this long (ms),
       as Linux's tcp_retries2 does; 0 = lwIP's own 12 retransmissions. */
    uint32_t tcp_retries_ms;
    /* The nice of the interrupt thread and lwIP's thread relative to the
       process (0 = same). */
    int thread_nice;
};

/* Starts lwIP once per process (tcpip_init) and waits until its thread
   runs; later calls return at once. Not thread-safe: call it from the main
   thread before any other lwIP use (stack_host_start calls it; so does
   `anic bench --micro`, which drives a driver without a host). */
void stack_host_lwip_start(void);

/* Starts lwIP once per process (stack_host_lwip_start), adds the netif, posts RX
   buffers and starts the interrupt thread. */
struct stack_host *stack_host_start(struct nic_dev *dev, const struct stack_host_cfg *cfg);
/* Stops the interrupt thread and removes the netif. The NIC must be stopped
   afterwards by the caller; call stack_host_free after that. */
void stack_host_stop(struct stack_host *h);
void stack_host_free(struct stack_host *h);

struct stack_driver *stack_host_driver(struct stack_host *h);

#endif
