/* stack_mem.c - lwIP's heap in size classes (stack_mem.h). */
#define _GNU_SOURCE
#include "stack_mem.h"

#include <lwip/mem.h>
#include <lwip/pbuf.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Under AddressSanitizer, class blocks come from libc (they have redzones,
   the arena's would not) and a block on a free list is poisoned but for its
   header, so an overflow or a use after mem_free is still reported. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define MEM_ARENA_ON       0
#define MEM_POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define MEM_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define MEM_ARENA_ON       1
#define MEM_POISON(p, n)   ((void)(p), (void)(n))
#define MEM_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Every block starts with this header; lwIP gets the bytes after it
   (16-byte aligned, as malloc's). cls tells mem_free where the block goes.
   The header stays intact while the block is on a free list. */
struct mem_hdr {
    uint32_t magic;
    uint32_t cls;  /* class index (| MEM_ARENA for an arena block), or MEM_CLS_LIBC */
    uint64_t size; /* bytes the block holds, header included */
};
_Static_assert(sizeof(struct mem_hdr) == 16, "keeps malloc's 16-byte alignment");

#define MEM_MAGIC    0xa11c8e5du
#define MEM_CLS_LIBC 0xffffffffu
#define MEM_ARENA    0x10000u /* in cls: carved from the arena, never given back */
#define MEM_P_MIN    10       /* the classes cover (2^10, 2^17] bytes, four per power of two */
#define MEM_P_MAX    16
#define MEM_CLASSES  ((MEM_P_MAX - MEM_P_MIN + 1) * 4)
#define MEM_HUGE     (2u << 20) /* a transparent huge page */

_Static_assert(STACK_MEM_CLASS_MIN == (1u << MEM_P_MIN) + 1, "classes start past 2^MEM_P_MIN");
_Static_assert(STACK_MEM_CLASS_MAX == (1u << (MEM_P_MAX + 1)), "classes end at 2^(MEM_P_MAX+1)");
_Static_assert(STACK_MEM_CHUNK_BYTES % MEM_HUGE == 0, "chunks are whole huge pages");

/* A free block's link, after its header. */
struct free_blk {
    struct free_blk *next;
};

static struct {
    pthread_mutex_t lock;
    struct free_blk *free[MEM_CLASSES];
    uint8_t *chunk_cur, *chunk_end; /* the arena chunk being carved */
    size_t arena_max;
    struct stack_mem_counters c;
} M = {.lock = PTHREAD_MUTEX_INITIALIZER, .arena_max = STACK_MEM_ARENA_MAX};

int stack_mem_class_of(size_t n, size_t *block)
{
    if (n < STACK_MEM_CLASS_MIN || n > STACK_MEM_CLASS_MAX)
        return -1;
    size_t m = n - 1; /* 2^p <= m < 2^(p+1), so 2^p < n <= 2^(p+1) */
    int p = 63 - __builtin_clzll(m);
    size_t k = ((m - ((size_t)1 << p)) >> (p - 2)) + 1; /* quarter 1..4 */
    if (block)
        *block = ((size_t)1 << p) + (k << (p - 2));
    return (p - MEM_P_MIN) * 4 + (int)(k - 1);
}

void stack_mem_set_arena_max(size_t bytes)
{
    pthread_mutex_lock(&M.lock);
    M.arena_max = bytes;
    if (bytes < M.c.arena_bytes)
        M.chunk_cur = M.chunk_end; /* no more carving either */
    pthread_mutex_unlock(&M.lock);
}

/* A new chunk of the arena: STACK_MEM_CHUNK_BYTES, huge-page aligned, with
   MADV_HUGEPAGE. False: at the bound or mmap refused. Lock held. */
static bool arena_grow(void)
{
    if (M.c.arena_bytes + STACK_MEM_CHUNK_BYTES > M.arena_max)
        return false;
    size_t len = STACK_MEM_CHUNK_BYTES + MEM_HUGE;
    uint8_t *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return false;
    uint8_t *start = (uint8_t *)(((uintptr_t)raw + MEM_HUGE - 1) & ~(uintptr_t)(MEM_HUGE - 1));
    if (start > raw)
        munmap(raw, (size_t)(start - raw));
    size_t tail = (size_t)((raw + len) - (start + STACK_MEM_CHUNK_BYTES));
    if (tail)
        munmap(start + STACK_MEM_CHUNK_BYTES, tail);
    if (madvise(start, STACK_MEM_CHUNK_BYTES, MADV_HUGEPAGE) == 0)
        M.c.arena_huge_bytes += STACK_MEM_CHUNK_BYTES;
    /* What is left of the previous chunk (< one block) is not used. */
    M.chunk_cur = start;
    M.chunk_end = start + STACK_MEM_CHUNK_BYTES;
    M.c.arena_bytes += STACK_MEM_CHUNK_BYTES;
    return true;
}

/* A new block of a class from the arena, or NULL. Lock held. */
static struct mem_hdr *arena_carve(size_t block)
{
    if (!MEM_ARENA_ON)
        return NULL; /* libc's blocks, which have redzones */
    if ((size_t)(M.chunk_end - M.chunk_cur) < block && !arena_grow()) {
        M.c.arena_full++;
        return NULL;
    }
    struct mem_hdr *h = (struct mem_hdr *)(void *)M.chunk_cur;
    M.chunk_cur += block;
    return h;
}

static void *blk_user(struct mem_hdr *h, uint32_t cls, uint64_t size)
{
    h->magic = MEM_MAGIC;
    h->cls = cls;
    h->size = size;
    return h + 1;
}

/* A block of class cls (block bytes) from its free list or the arena, with
   the counters of a class allocation; NULL if neither has one. Lock held. */
static struct mem_hdr *class_take(int cls, size_t block)
{
    struct mem_hdr *h;
    if (M.free[cls]) {
        struct free_blk *f = M.free[cls];
        h = (struct mem_hdr *)(void *)f - 1;
        MEM_UNPOISON(f, block - sizeof(*h));
        M.free[cls] = f->next;
        M.c.class_reused++;
        M.c.cache_bytes -= block;
    } else if ((h = arena_carve(block))) {
        blk_user(h, (uint32_t)cls | MEM_ARENA, block);
        M.c.class_new++;
    } else {
        return NULL;
    }
    M.c.live_bytes += block;
    if (h->cls & MEM_ARENA)
        M.c.arena_live_bytes += block;
    return h;
}

void *mem_malloc(mem_size_t size)
{
    size_t block = 0, total = (size_t)size + sizeof(struct mem_hdr);
    int cls = stack_mem_class_of(total, &block);
    if (cls >= 0) {
        pthread_mutex_lock(&M.lock);
        struct mem_hdr *h = class_take(cls, block);
        if (h)
            M.c.allocs++;
        pthread_mutex_unlock(&M.lock);
        if (h)
            return blk_user(h, h->cls, block); /* keeps where it came from */
    } else {
        block = total;
    }
    /* libc's: small sizes (one lock per call, not two), or a class block
       past the arena's bound. */
    struct mem_hdr *h = malloc(block);
    pthread_mutex_lock(&M.lock);
    M.c.allocs++;
    if (!h)
        M.c.failed++;
    else if (cls >= 0)
        M.c.class_new++;
    else
        M.c.libc_allocs++;
    if (h)
        M.c.live_bytes += block;
    pthread_mutex_unlock(&M.lock);
    return h ? blk_user(h, cls >= 0 ? (uint32_t)cls : MEM_CLS_LIBC, block) : NULL;
}

void *mem_calloc(mem_size_t count, mem_size_t size)
{
    if (size && count > ((size_t)-1 - sizeof(struct mem_hdr)) / size)
        return NULL;
    void *p = mem_malloc(count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void mem_free(void *rmem)
{
    if (!rmem)
        return;
    struct mem_hdr *h = (struct mem_hdr *)rmem - 1;
    uint32_t cls = h->cls, idx = cls & ~MEM_ARENA;
    if (h->magic != MEM_MAGIC || (idx >= MEM_CLASSES && cls != MEM_CLS_LIBC)) {
        fprintf(stderr, "stack_mem: mem_free(%p): not a block of lwIP's heap\n", rmem);
        abort(); /* heap corruption or a foreign pointer: nothing safe to do */
    }
    h->magic = 0; /* a second free of the block aborts above */
    uint64_t size = h->size;
    pthread_mutex_lock(&M.lock);
    M.c.frees++;
    M.c.live_bytes -= size;
    if (cls != MEM_CLS_LIBC && (cls & MEM_ARENA))
        M.c.arena_live_bytes -= size;
    /* Arena blocks always go onto their list (the arena is bounded); libc's
       while the lists hold less than STACK_MEM_CACHE_MAX. */
    if (cls != MEM_CLS_LIBC &&
        ((cls & MEM_ARENA) || M.c.cache_bytes + size <= STACK_MEM_CACHE_MAX)) {
        struct free_blk *f = (struct free_blk *)(void *)(h + 1);
        f->next = M.free[idx];
        M.free[idx] = f;
        MEM_POISON(f + 1, size - sizeof(*h) - sizeof(*f));
        M.c.cache_bytes += size;
        if (M.c.cache_bytes > M.c.cache_peak)
            M.c.cache_peak = M.c.cache_bytes;
        pthread_mutex_unlock(&M.lock);
        return;
    }
    if (cls != MEM_CLS_LIBC)
        M.c.cache_full++;
    pthread_mutex_unlock(&M.lock);
    free(h);
}

/* This build's mem_trim keeps the block as it is (MEM_LIBC_MALLOC): so
   does this one; pbuf_realloc only shrinks. */
void *mem_trim(void *rmem, mem_size_t new_size)
{
    (void)new_size;
    return rmem;
}

void stack_mem_get_counters(struct stack_mem_counters *out)
{
    pthread_mutex_lock(&M.lock);
    *out = M.c;
    pthread_mutex_unlock(&M.lock);
}

void stack_mem_release_cache(void)
{
    struct free_blk *libc_blocks = NULL;
    pthread_mutex_lock(&M.lock);
    for (int i = 0; i < MEM_CLASSES; i++) {
        struct free_blk **pp = &M.free[i];
        while (*pp) {
            struct free_blk *f = *pp;
            struct mem_hdr *h = (struct mem_hdr *)(void *)f - 1;
            if (h->cls & MEM_ARENA) {
                pp = &f->next;
                continue;
            }
            *pp = f->next;
            M.c.cache_bytes -= h->size;
            f->next = libc_blocks;
            libc_blocks = f;
        }
    }
    pthread_mutex_unlock(&M.lock);
    while (libc_blocks) {
        struct free_blk *f = libc_blocks;
        libc_blocks = f->next;
        struct mem_hdr *h = (struct mem_hdr *)(void *)f - 1;
        MEM_UNPOISON(f, h->size - sizeof(*h));
        free(h);
    }
}

bool stack_mem_interposed(void)
{
    static int state; /* 0 unknown, 1 yes, -1 no */
    if (state == 0) {
        struct stack_mem_counters a, b;
        stack_mem_get_counters(&a);
        struct pbuf *p = pbuf_alloc(PBUF_RAW, 2000, PBUF_RAM);
        stack_mem_get_counters(&b);
        if (p)
            pbuf_free(p);
        state = p && b.allocs > a.allocs ? 1 : -1;
        if (state < 0)
            fprintf(stderr, "stack_mem: lwIP's mem_malloc is not interposed; lwIP's heap is "
                            "libc's malloc\n");
    }
    return state > 0;
}
