/* stack_demux.c - the pcb index of stack_demux.h, kept by standing in for
 * lwIP's tcp_alloc and tcp_free (ELF symbol interposition, as
 * stack_chksum.c does for lwIP's checksum). */
#define _GNU_SOURCE
#include "stack_demux.h"

#include <dlfcn.h>
#include <lwip/ip_addr.h>
#include <lwip/priv/tcp_priv.h>
#include <lwip/tcp.h>
#include <stdio.h>
#include <stdlib.h>

struct demux_node {             /* what a lookup by tuple reads comes first */
    struct demux_node *next;    /* in buckets, by tuple */
    struct stack_demux_key key; /* the pcb's tuple when it was indexed */
    struct tcp_pcb *pcb;
    struct demux_node *pnext; /* in pbuckets, by pcb address */
    struct tcp_pcb *pred;     /* predecessor hint (stack_demux_pred) */
    bool has_pred;
    struct stack_demux_user user;
};

static struct {
    struct demux_node **buckets;
    struct demux_node **pbuckets; /* the same nodes by pcb address */
    size_t nbuckets;              /* a power of two, or 0 before the first pcb */
    size_t count;                 /* nodes in buckets */
    struct tcp_pcb **pending;     /* alive, no remote port when last looked at */
    size_t npending, pending_cap;
    bool untrusted; /* an allocation failed: a pcb may be missing */
} ix;

static struct tcp_pcb *(*lwip_tcp_alloc)(u8_t prio);
static void (*lwip_tcp_free)(struct tcp_pcb *pcb);

static void resolve(void)
{
    if (lwip_tcp_alloc)
        return;
    lwip_tcp_alloc = (struct tcp_pcb * (*)(u8_t)) dlsym(RTLD_NEXT, "tcp_alloc");
    lwip_tcp_free = (void (*)(struct tcp_pcb *))dlsym(RTLD_NEXT, "tcp_free");
    if (!lwip_tcp_alloc || !lwip_tcp_free) {
        fprintf(stderr, "stack_demux: lwIP's tcp_alloc/tcp_free not found (%s)\n", dlerror());
        abort();
    }
}

static size_t key_hash(const struct stack_demux_key *k)
{
    uint64_t h = (uint64_t)k->remote_ip << 32 | (uint32_t)k->remote_port << 16 | k->local_port;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (size_t)h;
}

static bool key_eq(const struct stack_demux_key *a, const struct stack_demux_key *b)
{
    return a->remote_ip == b->remote_ip && a->remote_port == b->remote_port &&
           a->local_port == b->local_port;
}

/* The tuple a segment must carry to match pcb; false while it has none
   (no remote port, or not IPv4: the driver's wire is IPv4 only). */
static bool pcb_key(const struct tcp_pcb *pcb, struct stack_demux_key *k)
{
    if (pcb->remote_port == 0 || !IP_IS_V4_VAL(pcb->remote_ip))
        return false;
    *k = (struct stack_demux_key){.remote_ip = ip4_addr_get_u32(ip_2_ip4(&pcb->remote_ip)),
                                  .remote_port = pcb->remote_port,
                                  .local_port = pcb->local_port};
    return true;
}

static size_t ptr_hash(const struct tcp_pcb *pcb)
{
    uint64_t h = (uint64_t)(uintptr_t)pcb;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (size_t)h;
}

static bool grow(void)
{
    size_t n = ix.nbuckets ? ix.nbuckets * 2 : 1024;
    struct demux_node **b = calloc(n, sizeof(*b)), **pb = calloc(n, sizeof(*pb));
    if (!b || !pb) {
        free(b);
        free(pb);
        return false;
    }
    for (size_t i = 0; i < ix.nbuckets; i++) {
        for (struct demux_node *d = ix.buckets[i], *next; d; d = next) {
            next = d->next;
            size_t s = key_hash(&d->key) & (n - 1), ps = ptr_hash(d->pcb) & (n - 1);
            d->next = b[s];
            b[s] = d;
            d->pnext = pb[ps];
            pb[ps] = d;
        }
    }
    free(ix.buckets);
    free(ix.pbuckets);
    ix.buckets = b;
    ix.pbuckets = pb;
    ix.nbuckets = n;
    return true;
}

static struct demux_node *node_of(const struct tcp_pcb *pcb)
{
    if (!ix.nbuckets || !pcb)
        return NULL;
    for (struct demux_node *d = ix.pbuckets[ptr_hash(pcb) & (ix.nbuckets - 1)]; d; d = d->pnext)
        if (d->pcb == pcb)
            return d;
    return NULL;
}

static void index_add(struct tcp_pcb *pcb, const struct stack_demux_key *k)
{
    if (ix.count >= ix.nbuckets && !grow() && !ix.nbuckets) {
        ix.untrusted = true;
        return;
    }
    struct demux_node *d = malloc(sizeof(*d));
    if (!d) {
        ix.untrusted = true;
        return;
    }
    size_t s = key_hash(k) & (ix.nbuckets - 1), ps = ptr_hash(pcb) & (ix.nbuckets - 1);
    *d =
        (struct demux_node){.next = ix.buckets[s], .pnext = ix.pbuckets[ps], .pcb = pcb, .key = *k};
    ix.buckets[s] = d;
    ix.pbuckets[ps] = d;
    ix.count++;
}

static void pending_add(struct tcp_pcb *pcb)
{
    if (ix.npending == ix.pending_cap) {
        size_t cap = ix.pending_cap ? ix.pending_cap * 2 : 64;
        struct tcp_pcb **p = realloc(ix.pending, cap * sizeof(*p));
        if (!p) {
            ix.untrusted = true;
            return;
        }
        ix.pending = p;
        ix.pending_cap = cap;
    }
    ix.pending[ix.npending++] = pcb;
}

/* Forgets pcb, which lwIP is about to free. */
static void forget(struct tcp_pcb *pcb)
{
    struct demux_node *d = node_of(pcb);
    if (d) {
        struct demux_node **pp = &ix.buckets[key_hash(&d->key) & (ix.nbuckets - 1)];
        while (*pp != d)
            pp = &(*pp)->next;
        *pp = d->next;
        pp = &ix.pbuckets[ptr_hash(pcb) & (ix.nbuckets - 1)];
        while (*pp != d)
            pp = &(*pp)->pnext;
        *pp = d->pnext;
        free(d);
        ix.count--;
        return;
    }
    for (size_t i = 0; i < ix.npending; i++) {
        if (ix.pending[i] == pcb) {
            ix.pending[i] = ix.pending[--ix.npending];
            return;
        }
    }
}

/* lwIP calls these two through its PLT: every TCP pcb it creates or frees
   passes here. */
struct tcp_pcb *tcp_alloc(u8_t prio)
{
    resolve();
    struct tcp_pcb *pcb = lwip_tcp_alloc(prio);
    if (pcb)
        pending_add(pcb);
    return pcb;
}

void tcp_free(struct tcp_pcb *pcb)
{
    resolve();
    forget(pcb);
    lwip_tcp_free(pcb);
}

void stack_demux_sync(void)
{
    for (size_t i = 0; i < ix.npending;) {
        struct stack_demux_key k;
        if (pcb_key(ix.pending[i], &k)) {
            index_add(ix.pending[i], &k);
            ix.pending[i] = ix.pending[--ix.npending];
        } else {
            i++;
        }
    }
}

/* Whether lwIP's own calls reach tcp_alloc and tcp_free above (a liblwip
   linked with -Bsymbolic would bind them inside the library, and the index
   would miss every pcb). Asked once: lwIP's tcp_new allocates through
   tcp_alloc, and tcp_close of the new pcb frees it through tcp_free. */
static bool interposed(void)
{
    static int state; /* 0 unknown, 1 yes, -1 no */
    if (state == 0) {
        size_t before = ix.npending;
        struct tcp_pcb *pcb = tcp_new();
        bool seen = pcb && ix.npending == before + 1 && ix.pending[before] == pcb;
        if (pcb)
            (void)tcp_close(pcb);
        state = seen && ix.npending == before ? 1 : -1;
        if (state < 0)
            fprintf(stderr, "stack_demux: lwIP's tcp_alloc/tcp_free are not interposed; "
                            "lwIP's own pcb walks are used\n");
    }
    return state > 0;
}

bool stack_demux_trusted(void)
{
    return !ix.untrusted && interposed();
}

/* The states of a pcb on tcp_active_pcbs (between lwIP calls). */
static bool state_active(enum tcp_state st)
{
    return st != CLOSED && st != LISTEN && st != TIME_WAIT;
}

/* The pcb of bucket chain d with tuple k that is not in TIME_WAIT. */
static struct tcp_pcb *chain_find_active(const struct demux_node *d,
                                         const struct stack_demux_key *k)
{
    for (; d; d = d->next)
        if (key_eq(&d->key, k) && state_active(d->pcb->state))
            return d->pcb;
    return NULL;
}

struct tcp_pcb *stack_demux_find_active(const struct stack_demux_key *k)
{
    if (!ix.nbuckets)
        return NULL;
    return chain_find_active(ix.buckets[key_hash(k) & (ix.nbuckets - 1)], k);
}

void stack_demux_find_active_many(const struct stack_demux_key *keys, size_t n,
                                  struct tcp_pcb **out)
{
    struct demux_node *const *head[STACK_DEMUX_MANY_MAX];
    if (n > STACK_DEMUX_MANY_MAX)
        n = STACK_DEMUX_MANY_MAX;
    if (!ix.nbuckets) {
        for (size_t i = 0; i < n; i++)
            out[i] = NULL;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        head[i] = &ix.buckets[key_hash(&keys[i]) & (ix.nbuckets - 1)];
        __builtin_prefetch(head[i]);
    }
    for (size_t i = 0; i < n; i++)
        if (*head[i])
            __builtin_prefetch(*head[i]);
    for (size_t i = 0; i < n; i++) {
        const struct demux_node *d = *head[i];
        if (d && key_eq(&d->key, &keys[i]))
            __builtin_prefetch(&d->pcb->state);
    }
    for (size_t i = 0; i < n; i++)
        out[i] = chain_find_active(*head[i], &keys[i]);
}

struct tcp_pcb *stack_demux_find_timewait(const struct stack_demux_key *k)
{
    if (!ix.nbuckets)
        return NULL;
    for (struct demux_node *d = ix.buckets[key_hash(k) & (ix.nbuckets - 1)]; d; d = d->next)
        if (key_eq(&d->key, k) && d->pcb->state == TIME_WAIT)
            return d->pcb;
    return NULL;
}

void stack_demux_set_pred(struct tcp_pcb *pcb, struct tcp_pcb *pred)
{
    struct demux_node *d = node_of(pcb);
    if (d) {
        d->pred = pred;
        d->has_pred = true;
    }
}

/* The hint holds if pred is alive (so reading it is safe) and links to
   pcb: pcbs off the active list link elsewhere (lwIP clears a removed
   pcb's link, and a TIME_WAIT or bound pcb links within its own list). */
bool stack_demux_pred(const struct tcp_pcb *pcb, struct tcp_pcb **pred)
{
    const struct demux_node *d = node_of(pcb);
    if (!d || !d->has_pred || !state_active(pcb->state))
        return false;
    if (!d->pred) {
        if (tcp_active_pcbs != pcb)
            return false;
    } else if (!node_of(d->pred) || d->pred->next != pcb || !state_active(d->pred->state)) {
        return false;
    }
    *pred = d->pred;
    return true;
}

void stack_demux_prefetch_pred(const struct tcp_pcb *pcb, int level)
{
    if (!ix.nbuckets)
        return;
    if (level == 0) {
        __builtin_prefetch(&ix.pbuckets[ptr_hash(pcb) & (ix.nbuckets - 1)]);
        return;
    }
    const struct demux_node *d = node_of(pcb);
    if (d && d->has_pred && d->pred) {
        __builtin_prefetch(&ix.pbuckets[ptr_hash(d->pred) & (ix.nbuckets - 1)]);
        __builtin_prefetch(&d->pred->next);
        __builtin_prefetch(&d->pred->state);
    }
}

bool stack_demux_has(const struct stack_demux_key *k)
{
    if (!ix.nbuckets)
        return false;
    for (struct demux_node *d = ix.buckets[key_hash(k) & (ix.nbuckets - 1)]; d; d = d->next)
        if (key_eq(&d->key, k))
            return true;
    return false;
}

void stack_demux_sizes(uint64_t *indexed, uint64_t *pending)
{
    *indexed = ix.count;
    *pending = ix.npending;
}

struct stack_demux_user *stack_demux_user(const struct tcp_pcb *pcb)
{
    struct demux_node *d = node_of(pcb);
    return d ? &d->user : NULL;
}
