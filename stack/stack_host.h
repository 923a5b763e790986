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
    /* Period of TCP's slow timer (RTO, persist, TIME_WAIT, poll callbacks).
       lwIP runs it every 500 ms; RTOs are whole ticks, so on a sub-ms link a
       lost retransmission costs >= 1 s. A shorter tick scales every TCP timer
       down with it (RTT is measured in ticks too). 0 = lwIP's own only. */
    uint32_t tcp_tick_ms;
};

/* Starts lwIP once per process (tcpip_init), adds the netif, posts RX
   buffers and starts the interrupt thread. */
struct stack_host *stack_host_start(struct nic_dev *dev, const struct stack_host_cfg *cfg);
/* Stops the interrupt thread and removes the netif. The NIC must be stopped
   afterwards by the caller; call stack_host_free after that. */
void stack_host_stop(struct stack_host *h);
void stack_host_free(struct stack_host *h);

struct stack_driver *stack_host_driver(struct stack_host *h);

/* CPU time (ns) of the host threads we know: lwIP's tcpip thread and ours. */
uint64_t stack_host_cpu_ns(const struct stack_host *h);

#endif
