/* stack_host.c - lwIP bring-up and the host interrupt thread. */
#define _GNU_SOURCE
#include "stack_host.h"
#include "stack_chksum.h"
#include "stack_rto.h"

#include <lwip/ip.h>
#include <lwip/ip4_addr.h>
#include <lwip/netif.h>
#include <lwip/priv/tcp_priv.h>
#include <lwip/tcpip.h>
#include <lwip/timeouts.h>
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define IRQ_POLL_BUDGET    64          /* completions per core-lock hold */
#define IRQ_WAIT_MS        100         /* re-check the stop flag this often */
#define HEAP_KEEP_BYTES    (512 << 20) /* M_TRIM_THRESHOLD, see stack_host_lwip_start */
#define HEAP_TOP_PAD_BYTES (16 << 20)  /* M_TOP_PAD: the heap grows in steps this large */

struct stack_host {
    bool rto_started;
    struct nic_dev *dev;
    struct stack_driver *drv;
    pthread_t irq_thread;
    atomic_int stop;
    bool netif_added;
    int thread_nice;
};

static sem_t tcpip_ready;
static pthread_t tcpip_thread;
static bool lwip_started;

static void tcpip_init_done(void *arg)
{
    (void)arg;
    tcpip_thread = pthread_self();
    sem_post(&tcpip_ready);
}

static void *irq_main(void *arg)
{
    struct stack_host *h = arg;
    nic_thread_nice("stack-irq", h->thread_nice);
    while (!atomic_load(&h->stop)) {
        LOCK_TCPIP_CORE();
        unsigned n = stack_driver_poll(h->drv, IRQ_POLL_BUDGET);
        unsigned wait_us = n ? stack_driver_moderation_us(h->drv) : 0;
        UNLOCK_TCPIP_CORE();
        if (wait_us) {
            struct timespec ts = {0, (long)wait_us * 1000};
            nanosleep(&ts, NULL);
        }
        if (n)
            continue;
        nic_dev_irq_arm(h->dev);
        if (stack_driver_pending(h->drv)) {
            nic_dev_irq_disarm(h->dev);
            continue;
        }
        nic_dev_irq_wait(h->dev, IRQ_WAIT_MS);
        nic_dev_irq_disarm(h->dev);
    }
    return NULL;
}

void stack_host_lwip_start(void)
{
    if (lwip_started)
        return;
    /* lwIP's pbufs and segments come from libc malloc (this lwIP build's
       MEM_LIBC_MALLOC). With thousands of connections their send queues
       churn tens of MB at the top of the heap, which glibc's default trim
       handed back to the kernel and faulted in again on every burst: page
       faults per byte sent made the host's CPU per GB ~10x that of 100 flows.
       Freed memory is kept up to HEAP_KEEP_BYTES (RSS stays at the peak the
       queues reached, which lwIP's per-pcb send buffer bounds). */
    mallopt(M_TRIM_THRESHOLD, HEAP_KEEP_BYTES);
    mallopt(M_TOP_PAD, HEAP_TOP_PAD_BYTES);
    sem_init(&tcpip_ready, 0, 0);
    tcpip_init(tcpip_init_done, NULL);
    while (sem_wait(&tcpip_ready) != 0)
        ; /* EINTR */
    pthread_setname_np(tcpip_thread, "lwip-tcpip");
    lwip_started = true;
}

/* lwIP's thread holds the core lock for its timers and for what other
   threads hand it (handshake results): at a lower priority than the
   interrupt thread it would keep that thread waiting for the lock. */
static int tcpip_thread_nice;

static void tcpip_set_nice(void *arg)
{
    (void)arg;
    nic_thread_nice("lwip-tcpip", tcpip_thread_nice);
}

struct stack_host *stack_host_start(struct nic_dev *dev, const struct stack_host_cfg *cfg)
{
    stack_host_lwip_start();
    if (cfg->thread_nice != tcpip_thread_nice) {
        tcpip_thread_nice = cfg->thread_nice;
        (void)tcpip_callback(tcpip_set_nice, NULL);
    }
    struct stack_host *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->dev = dev;
    h->thread_nice = cfg->thread_nice;
    h->drv = stack_driver_create(dev, cfg->mtu);
    if (!h->drv) {
        free(h);
        return NULL;
    }
    stack_driver_set_tso(h->drv, cfg->tso_max);
    stack_chksum_set_offload(cfg->csum_offload); /* the driver follows it */
    if (cfg->rx_buf_size)
        stack_driver_set_rx_buf_size(h->drv, cfg->rx_buf_size);
    ip4_addr_t ip, mask, gw;
    ip.addr = cfg->ip;
    mask.addr = cfg->netmask;
    gw.addr = cfg->gateway;
    LOCK_TCPIP_CORE();
    struct netif *nif = stack_driver_netif(h->drv);
    /* We hold the core lock while delivering, so input can be ip_input
       directly instead of a hop through tcpip_input's mailbox. */
    netif_add(nif, &ip, &mask, &gw, h->drv, stack_driver_netif_init, ip_input);
    netif_set_default(nif);
    netif_set_up(nif);
    netif_set_link_up(nif);
    h->netif_added = true;
    stack_driver_refill(h->drv);
    if (cfg->rto_min_ms || cfg->tcp_retries_ms) {
        stack_rto_start(cfg->rto_min_ms, cfg->tcp_retries_ms);
        h->rto_started = true;
    }
    UNLOCK_TCPIP_CORE();
    if (pthread_create(&h->irq_thread, NULL, irq_main, h) != 0) {
        stack_host_stop(h);
        stack_host_free(h);
        return NULL;
    }
    pthread_setname_np(h->irq_thread, "stack-irq");
    return h;
}

void stack_host_stop(struct stack_host *h)
{
    if (!h)
        return;
    if (!atomic_exchange(&h->stop, 1) && h->irq_thread) {
        nic_dev_irq_kick(h->dev);
        pthread_join(h->irq_thread, NULL);
    }
    if (h->rto_started) {
        LOCK_TCPIP_CORE();
        stack_rto_stop();
        UNLOCK_TCPIP_CORE();
        h->rto_started = false;
    }
    if (h->netif_added) {
        LOCK_TCPIP_CORE();
        netif_remove(stack_driver_netif(h->drv));
        UNLOCK_TCPIP_CORE();
        h->netif_added = false;
    }
}

void stack_host_free(struct stack_host *h)
{
    if (!h)
        return;
    LOCK_TCPIP_CORE();
    stack_driver_destroy(h->drv);
    UNLOCK_TCPIP_CORE();
    free(h);
}

struct stack_driver *stack_host_driver(struct stack_host *h)
{
    return h->drv;
}
