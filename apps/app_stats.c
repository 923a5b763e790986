/*
 * app_stats.c - counter collection and formatting. Every section is one
 * entry of app_sections[], built from the layers' counter lists (X-macros
 * next to each struct): names and values come from the same list, so
 * /stats, the exit table and lookups cannot disagree with the structs.
 * scripts/check_docs.sh reads the `static const char *const sec_` arrays and
 * the app_sections[] lines to compare docs/design.md §9 with /stats.
 */
#include "app_stats.h"
#include "app_http.h"
#include "app_server.h"
#include "nic_dev.h"
#include "stack_driver.h"
#include "stack_mem.h"
#include "stack_rto.h"
#include "stack_tls_offload.h"
#include "tls_offload.h"
#include "tls_server.h"
#include "tls_slots.h"

#include <stdlib.h>
#include <string.h>

/* Everything read once per collection, so that sections of one source come
   from one snapshot. */
struct app_stats_raw {
    const struct app_stats_src *src;
    struct nic_counters nic;
    struct nic_fault_stats fault[2]; /* tx, rx */
    struct stack_driver_counters drv;
};

#define APP_NAME(name) #name,
#define APP_VAL(name)  v[i++] = c->name;

static const char *const sec_nic[] = {NIC_COUNTERS_NIC(APP_NAME)};
static const char *const sec_nic_tls[] = {NIC_COUNTERS_TLS(APP_NAME)};
static const char *const sec_wire[] = {NIC_COUNTERS_WIRE(APP_NAME)};
static const char *const sec_fault[] = {NIC_FAULT_COUNTERS(APP_NAME)};
static const char *const sec_driver[] = {STACK_DRIVER_COUNTERS(APP_NAME)};
static const char *const sec_tls[] = {TLS_COUNTERS(APP_NAME)};
static const char *const sec_offload_tx[] = {STACK_TLS_TX_COUNTERS(APP_NAME)
                                                 TLS_OFFLOAD_TX_COUNTERS(APP_NAME)};
static const char *const sec_offload_rx[] = {STACK_TLS_RX_COUNTERS(APP_NAME)
                                                 TLS_OFFLOAD_RX_COUNTERS(APP_NAME)};
static const char *const sec_http[] = {APP_HTTP_COUNTERS(APP_NAME)};
static const char *const sec_server[] = {APP_SERVER_COUNTERS(APP_NAME)};
static const char *const sec_tcp[] = {STACK_RTO_COUNTERS(APP_NAME)};
static const char *const sec_mem[] = {STACK_MEM_COUNTERS(APP_NAME)};
static const char *const sec_send_slots[] = {TLS_SLOTS_COUNTERS(APP_NAME)};

/* Each fills v in its list's order and returns false when the source is
   absent (that section is then left out). */
static bool fill_nic(const struct app_stats_raw *r, int inst, uint64_t *v)
{
    const struct nic_counters *c = &r->nic;
    size_t i = 0;
    (void)inst;
    NIC_COUNTERS_NIC(APP_VAL)
    return true;
}

static bool fill_nic_tls(const struct app_stats_raw *r, int inst, uint64_t *v)
{
    const struct nic_counters *c = &r->nic;
    size_t i = 0;
    (void)inst;
    NIC_COUNTERS_TLS(APP_VAL)
    return true;
}

static bool fill_wire(const struct app_stats_raw *r, int inst, uint64_t *v)
{
    const struct nic_counters *c = &r->nic;
    size_t i = 0;
    (void)inst;
    NIC_COUNTERS_WIRE(APP_VAL)
    return true;
}

static bool fill_fault(const struct app_stats_raw *r, int inst, uint64_t *v)
{
    const struct nic_fault_stats *c = &r->fault[inst];
    size_t i = 0;
    NIC_FAULT_COUNTERS(APP_VAL)
    return true;
}

static bool fill_driver(const struct app_stats_raw *r, int inst, uint64_t *v)
{
    const struct stack_driver_counters *c = &r->drv;
    size_t i = 0;
    (void)inst;
    if (!r->src->drv)
        return false;
    STACK_DRIVER_COUNTERS(APP_VAL)
    return true;
}

static bool fill_tls(const struct app_stats_raw *r, int inst, uint64_t *v)
{
    if (!r->src->tls)
        return false;
    const struct tls_counters *c = tls_server_counters(r->src->tls, (enum tls_mode)inst);
    size_t i = 0;
    TLS_COUNTERS(APP_VAL)
    return true;
}

static bool fill_offload_tx(const struct app_stats_raw *r, int inst, uint64_t *v)
{
    if (!r->src->offload || !r->src->nic_offload)
        return false;
    size_t i = 0;
    {
        const struct stack_tls_tx_counters *c =
            stack_tls_offload_tx_counters(r->src->nic_offload, (enum stack_tls_tx_resync)inst);
        STACK_TLS_TX_COUNTERS(APP_VAL)
    }
    {
        const struct tls_offload_counters *c =
            tls_offload_counters(r->src->offload, (enum tls_tx_resync)inst);
        TLS_OFFLOAD_TX_COUNTERS(APP_VAL)
    }
    return true;
}

static bool fill_offload_rx(const struct app_stats_raw *r, int inst, uint64_t *v)
{
    if (!r->src->offload || !r->src->nic_offload)
        return false;
    size_t i = 0;
    {
        const struct stack_tls_rx_counters *c = stack_tls_offload_rx_counters(r->src->nic_offload);
        STACK_TLS_RX_COUNTERS(APP_VAL)
    }
    {
        const struct tls_offload_rx_counters *c = tls_offload_rx_counters(r->src->offload);
        TLS_OFFLOAD_RX_COUNTERS(APP_VAL)
    }
    return true;
}

static bool fill_http(const struct app_stats_raw *r, int inst, uint64_t *v)
{
    const struct app_http_counters *c = app_http_global_counters();
    size_t i = 0;
    (void)r;
    (void)inst;
    APP_HTTP_COUNTERS(APP_VAL)
    return true;
}

static bool fill_server(const struct app_stats_raw *r, int inst, uint64_t *v)
{
    if (!r->src->server)
        return false;
    const struct app_server_counters *c = app_server_counters(r->src->server);
    size_t i = 0;
    (void)inst;
    APP_SERVER_COUNTERS(APP_VAL)
    return true;
}

static bool fill_tcp(const struct app_stats_raw *r, int inst, uint64_t *v)
{
    (void)inst;
    if (!r->src->drv)
        return false;
    const struct stack_rto_counters *c = stack_rto_counters();
    size_t i = 0;
    STACK_RTO_COUNTERS(APP_VAL)
    return true;
}

static bool fill_mem(const struct app_stats_raw *r, int inst, uint64_t *v)
{
    (void)inst;
    if (!r->src->drv)
        return false;
    struct stack_mem_counters m;
    stack_mem_get_counters(&m);
    const struct stack_mem_counters *c = &m;
    size_t i = 0;
    STACK_MEM_COUNTERS(APP_VAL)
    return true;
}

static bool fill_send_slots(const struct app_stats_raw *r, int inst, uint64_t *v)
{
    (void)inst;
    if (!r->src->server)
        return false;
    const struct tls_slots_counters *c = tls_slots_counters();
    size_t i = 0;
    TLS_SLOTS_COUNTERS(APP_VAL)
    return true;
}

struct app_stat_section {
    const char *name;
    const char *const *names;
    size_t n;
    bool (*fill)(const struct app_stats_raw *r, int inst, uint64_t *v);
    int inst; /* fault direction, TLS mode or TX policy */
};

#define SEC(name, arr, fill, inst)                                                                 \
    {                                                                                              \
        name, arr, sizeof(arr) / sizeof(arr[0]), fill, inst                                        \
    }

/* The sections of /stats, in order (one per line: scripts/check_docs.sh). */
static const struct app_stat_section app_sections[] = {
    SEC("nic", sec_nic, fill_nic, 0),
    SEC("nic_tls", sec_nic_tls, fill_nic_tls, 0),
    SEC("wire", sec_wire, fill_wire, 0),
    SEC("fault_tx", sec_fault, fill_fault, 0),
    SEC("fault_rx", sec_fault, fill_fault, 1),
    SEC("driver", sec_driver, fill_driver, 0),
    SEC("tcp", sec_tcp, fill_tcp, 0),
    SEC("mem", sec_mem, fill_mem, 0),
    SEC("tls_mbedtls", sec_tls, fill_tls, TLS_MODE_MBEDTLS),
    SEC("tls_sw", sec_tls, fill_tls, TLS_MODE_SW),
    SEC("tls_nic", sec_tls, fill_tls, TLS_MODE_NIC),
    SEC("tls_nic_tagcache", sec_tls, fill_tls, TLS_MODE_NIC_TAGCACHE),
    SEC("offload_dump", sec_offload_tx, fill_offload_tx, TLS_TX_RESYNC_DUMP),
    SEC("offload_tagcache", sec_offload_tx, fill_offload_tx, TLS_TX_RESYNC_TAGCACHE),
    SEC("offload_rx", sec_offload_rx, fill_offload_rx, 0),
    SEC("http", sec_http, fill_http, 0),
    SEC("server", sec_server, fill_server, 0),
    SEC("send_slots", sec_send_slots, fill_send_slots, 0),
};

#define APP_SECTIONS (sizeof(app_sections) / sizeof(app_sections[0]))
#define APP_SEC_MAX  64 /* longest list */

size_t app_stats_collect(const struct app_stats_src *src, struct app_stat *out)
{
    struct app_stats_raw r = {.src = src};
    nic_dev_get_counters(src->dev, &r.nic);
    nic_dev_get_fault_stats(src->dev, &r.fault[0], &r.fault[1]);
    if (src->drv)
        stack_driver_get_counters(src->drv, &r.drv);
    size_t n = 0;
    for (size_t s = 0; s < APP_SECTIONS; s++) {
        const struct app_stat_section *sec = &app_sections[s];
        uint64_t v[APP_SEC_MAX];
        if (sec->n > APP_SEC_MAX || !sec->fill(&r, sec->inst, v))
            continue;
        for (size_t i = 0; i < sec->n && n < APP_STATS_MAX; i++)
            out[n++] = (struct app_stat){sec->name, sec->names[i], v[i]};
    }
    return n;
}

bool app_stats_known(const char *section, const char *name)
{
    for (size_t s = 0; s < APP_SECTIONS; s++) {
        if (strcmp(app_sections[s].name, section))
            continue;
        for (size_t i = 0; i < app_sections[s].n; i++)
            if (!strcmp(app_sections[s].names[i], name))
                return true;
    }
    return false;
}

size_t app_stats_count(void)
{
    size_t n = 0;
    for (size_t s = 0; s < APP_SECTIONS; s++)
        n += app_sections[s].n;
    return n;
}

int app_stats_lookup(const struct app_stat *st, size_t n, const char *section, const char *name,
                     uint64_t *value)
{
    if (!app_stats_known(section, name))
        return -1;
    *value = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(st[i].section, section) && !strcmp(st[i].name, name)) {
            *value = st[i].value;
            return 1;
        }
    }
    return 0;
}

uint64_t app_stats_get(const struct app_stat *st, size_t n, const char *section, const char *name)
{
    uint64_t v;
    if (app_stats_lookup(st, n, section, name, &v) < 0) {
        fprintf(stderr, "app_stats_get: no counter %s.%s (docs/design.md §9)\n", section, name);
        abort();
    }
    return v;
}

size_t app_stats_json(void *ctx, char *buf, size_t cap)
{
    const struct app_stats_src *src = ctx;
    struct app_stat st[APP_STATS_MAX];
    size_t n = app_stats_collect(src, st);
    size_t len = 0;
    const char *sec = NULL;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int w = snprintf(buf + len, len < cap ? cap - len : 0, __VA_ARGS__);                       \
        if (w < 0 || (size_t)w >= cap - len)                                                       \
            return 0;                                                                              \
        len += (size_t)w;                                                                          \
    } while (0)
    PUT("{");
    for (size_t i = 0; i < n; i++) {
        if (!sec || strcmp(sec, st[i].section)) {
            PUT("%s\"%s\": {", sec ? "}, " : "", st[i].section);
            sec = st[i].section;
        } else {
            PUT(", ");
        }
        PUT("\"%s\": %llu", st[i].name, (unsigned long long)st[i].value);
    }
    PUT("%s}\n", sec ? "}" : "");
#undef PUT
    return len;
}

void app_stats_print_table(const struct app_stats_src *src, FILE *f)
{
    struct app_stat st[APP_STATS_MAX];
    size_t n = app_stats_collect(src, st);
    const char *sec = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!sec || strcmp(sec, st[i].section)) {
            sec = st[i].section;
            fprintf(f, "[%s]\n", sec);
        }
        fprintf(f, "  %-28s %20llu\n", st[i].name, (unsigned long long)st[i].value);
    }
}
