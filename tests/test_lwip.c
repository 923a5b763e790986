/* lwIP's tcpip thread for the tests; see test_lwip.h. */
#include "test_lwip.h"
#include "stack_driver.h"

#include <lwip/ip.h>
#include <lwip/netif.h>
#include <lwip/tcpip.h>
#include <semaphore.h>
#include <stdbool.h>

static sem_t tcpip_ready;

static void tcpip_done(void *arg)
{
    (void)arg;
    sem_post(&tcpip_ready);
}

void tu_lwip_start_once(void)
{
    static bool started;
    if (started)
        return;
    sem_init(&tcpip_ready, 0, 0);
    tcpip_init(tcpip_done, NULL);
    while (sem_wait(&tcpip_ready) != 0)
        ; /* EINTR */
    started = true;
}

struct tcp_pcb *tu_lwip_netif_listen(struct stack_driver *drv, uint16_t port, tcp_accept_fn accept,
                                     bool *netif_added)
{
    ip4_addr_t ip, mask, gw;
    IP4_ADDR(&ip, 10, 0, 0, 1);
    IP4_ADDR(&mask, 255, 255, 255, 0);
    IP4_ADDR(&gw, 10, 0, 0, 2);
    struct netif *nif = stack_driver_netif(drv);
    *netif_added = netif_add(nif, &ip, &mask, &gw, drv, stack_driver_netif_init, ip_input) != NULL;
    if (!*netif_added)
        return NULL;
    netif_set_default(nif);
    netif_set_up(nif);
    netif_set_link_up(nif);
    stack_driver_refill(drv);
    struct tcp_pcb *pcb = tcp_new(), *lpcb = NULL;
    if (!pcb)
        return NULL;
    if (tcp_bind(pcb, IP4_ADDR_ANY, port) == ERR_OK)
        lpcb = tcp_listen(pcb);
    if (!lpcb) {
        tcp_close(pcb);
        return NULL;
    }
    tcp_accept(lpcb, accept);
    return lpcb;
}
