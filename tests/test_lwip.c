/* lwIP's tcpip thread for the tests; see test_lwip.h. */
#include "test_lwip.h"

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
