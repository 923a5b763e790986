/* test_lwip.h - lwIP's tcpip thread for the suites that need lwIP (pbufs,
 * pcbs, the core lock): test_lwip_flags, test_tx_offload, test_tls_offload,
 * test_stats, test_runtime. */
#ifndef ANIC_TEST_LWIP_H
#define ANIC_TEST_LWIP_H

#include <lwip/tcp.h>
#include <stdbool.h>
#include <stdint.h>

/* Start lwIP (tcpip_init) and wait until its thread runs. Once per process:
   later calls return at once (Check forks a process per test; with
   CK_FORK=no every test shares the first start). */
void tu_lwip_start_once(void);

struct stack_driver;

/* With the core lock held: adds drv's netif as 10.0.0.1/24 (gateway
   10.0.0.2), makes it the default and up, posts RX buffers, then listens
   on port with accept. *netif_added says whether the netif must be removed
   at teardown. Returns the listener, or NULL. */
struct tcp_pcb *tu_lwip_netif_listen(struct stack_driver *drv, uint16_t port, tcp_accept_fn accept,
                                     bool *netif_added);

#endif
