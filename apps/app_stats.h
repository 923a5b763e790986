/*
 * app_stats.h - every counter of every layer, by section, as JSON (GET
 * /stats) or as a table (on exit). Names: docs/design.md §9.
 */
#ifndef ANIC_APP_STATS_H
#define ANIC_APP_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct nic_dev;
struct stack_driver;
struct tls_server;
struct app_server;

struct app_stats_src {
    struct nic_dev *dev;
    struct stack_driver *drv;              /* read under the core lock */
    struct tls_server *tls;                /* NULL: no TLS listener */
    struct tls_offload *offload;           /* NULL: no NIC-mode listener */
    struct stack_tls_offload *nic_offload; /* the driver's half of offload */
    struct app_server *server;
};

struct app_stat {
    const char *section;
    const char *name;
    uint64_t value;
};

#define APP_STATS_MAX 448

/* Fill out[] (APP_STATS_MAX entries); returns the count. */
size_t app_stats_collect(const struct app_stats_src *src, struct app_stat *out);
size_t app_stats_json(void *src, char *buf, size_t cap); /* src: struct app_stats_src* */
void app_stats_print_table(const struct app_stats_src *src, FILE *f);
/* Whether section.name is a counter of /stats (docs/design.md §9),
   whatever the run's listeners. */
bool app_stats_known(const char *section, const char *name);
/* Counters all sections hold together (every source present). */
size_t app_stats_count(void);
/* *value = section.name in st[]: 1 found, 0 its section is absent in this
   run (value 0), -1 no such counter (a typo: an error, never a silent 0). */
int app_stats_lookup(const struct app_stat *st, size_t n, const char *section, const char *name,
                     uint64_t *value);
/* As app_stats_lookup, and a name that is no counter aborts with a message
   naming it. */
uint64_t app_stats_get(const struct app_stat *st, size_t n, const char *section, const char *name);

#endif
