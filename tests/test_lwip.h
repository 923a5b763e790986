/* test_lwip.h - lwIP's tcpip thread for the suites that need lwIP (pbufs,
 * pcbs, the core lock): test_lwip_flags, test_tx_offload, test_tls_offload,
 * test_stats, test_runtime. */
#ifndef ANIC_TEST_LWIP_H
#define ANIC_TEST_LWIP_H

/* Start lwIP (tcpip_init) and wait until its thread runs. Once per process:
   later calls return at once (Check forks a process per test; with
   CK_FORK=no every test shares the first start). */
void tu_lwip_start_once(void);

#endif
