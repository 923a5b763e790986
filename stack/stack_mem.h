/*
 * stack_mem.h - lwIP's heap in size classes.
 *
 * This lwIP build takes its heap from libc (MEM_LIBC_MALLOC: mem_malloc is
 * malloc). Its largest users are the PBUF_RAM pbufs that tcp_write copies
 * the send stream into (this build always copies: LWIP_NETIF_TX_SINGLE_PBUF),
 * 1 to 64 KiB each, freed in the order the peers' ACKs arrive. With
 * thousands of connections, hundreds of MB of them are live at once and are
 * freed in no order, and glibc's size-sorted large bins turned each malloc
 * into a list walk: _int_malloc was 21 % of the stack-irq thread's time with
 * 10,000 concurrent downloads, and single polls of 64 ACKs took 10-20 ms.
 *
 * stack_mem.c stands in for lwIP's mem_malloc, mem_calloc, mem_free and
 * mem_trim (ELF symbol interposition, as stack_demux.c does for tcp_alloc).
 * Sizes from STACK_MEM_CLASS_MIN to STACK_MEM_CLASS_MAX bytes are rounded up
 * to one of four classes per power of two (at most 25 % rounding); a freed
 * block of a class goes onto that class's free list (last in, first out)
 * and is handed out again in O(1). New class blocks are carved from an
 * arena of 32 MiB chunks, huge-page aligned and advised as transparent huge
 * pages (MADV_HUGEPAGE): the send queues of 10,000 connections are ~500 MB
 * touched in no order, where 4 KiB pages cost a TLB miss per page and a
 * page fault per first touch. The arena never shrinks and is bounded
 * (STACK_MEM_ARENA_MAX, 1 GiB); past it class blocks come from libc, and
 * those go back to libc once the lists hold STACK_MEM_CACHE_MAX. Other sizes
 * go to libc as before. Under AddressSanitizer every block comes from libc
 * (redzones) and free blocks are poisoned. Thread-safe (one mutex).
 */
#ifndef ANIC_STACK_MEM_H
#define ANIC_STACK_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STACK_MEM_CLASS_MIN   1025u        /* smaller: libc's own fast bins */
#define STACK_MEM_CLASS_MAX   (128u << 10) /* larger: libc */
#define STACK_MEM_CACHE_MAX   (256u << 20) /* libc's class blocks kept on the free lists */
#define STACK_MEM_ARENA_MAX   (1ull << 30) /* the arena's bound (the default) */
#define STACK_MEM_CHUNK_BYTES (32u << 20)  /* the arena grows by this much */

/* Counters (/stats section mem). */
#define STACK_MEM_COUNTERS(X)                                                                      \
    X(allocs)           /* lwIP heap allocations (mem_malloc, mem_calloc) */                       \
    X(class_reused)     /* of them, served from a class's free list */                             \
    X(class_new)        /* of them, a new class block from libc (the free list was empty) */       \
    X(libc_allocs)      /* of them, sizes outside the classes, passed to libc */                   \
    X(failed)           /* allocations libc refused (lwIP sees NULL: ERR_MEM) */                   \
    X(frees)            /* mem_free calls */                                                       \
    X(cache_full)       /* libc class blocks freed to libc: the lists held STACK_MEM_CACHE_MAX */  \
    X(arena_full)       /* class blocks from libc: the arena was at its bound (or mmap failed) */  \
    X(arena_bytes)      /* bytes the arena mapped (gauge) */                                       \
    X(arena_huge_bytes) /* of them, advised as transparent huge pages (gauge) */                   \
    X(arena_live_bytes) /* arena blocks allocated and not freed (gauge; outside mallinfo) */       \
    X(live_bytes)       /* bytes (class-rounded) allocated and not freed (gauge) */                \
    X(cache_bytes)      /* bytes on the free lists (gauge) */                                      \
    X(cache_peak)       /* most bytes the free lists held (gauge) */

#define STACK_MEM_CTR_FIELD(name) uint64_t name;
struct stack_mem_counters {
    STACK_MEM_COUNTERS(STACK_MEM_CTR_FIELD)
};

/* A snapshot of the counters. */
void stack_mem_get_counters(struct stack_mem_counters *out);

/* Whether lwIP's own allocations reach this allocator (a liblwip linked
   with -Bsymbolic would bind mem_malloc inside the library). Asked once by
   allocating a PBUF_RAM pbuf; prints a line to stderr if not. */
bool stack_mem_interposed(void);

/* The size class a request of n bytes is served from: its index, and
   through *block the bytes the block holds (n rounded up). -1: not a class
   size (libc). For tests. */
int stack_mem_class_of(size_t n, size_t *block);

/* Give the free lists' libc blocks back to libc (the arena's stay: it
   never shrinks). For tests and leak checks. */
void stack_mem_release_cache(void);

/* The arena's bound in bytes (default STACK_MEM_ARENA_MAX; 0: every class
   block from libc). Below what is mapped, the current chunk is not carved
   further either. For tests. */
void stack_mem_set_arena_max(size_t bytes);

#endif
