/* test_mem.c - lwIP's heap in size classes (stack/stack_mem.h): the class
 * table, that lwIP's own pbuf allocations reach it, reuse, the bound on
 * what the free lists keep, and that every counter says what happened. */
#include "stack_mem.h"

#include <check.h>
#include <lwip/mem.h>
#include <lwip/pbuf.h>
#include <stdlib.h>
#include <string.h>

/* Under AddressSanitizer class blocks come from libc, never the arena
   (stack_mem.h). */
#if defined(__SANITIZE_ADDRESS__)
#define ARENA 0
#else
#define ARENA 1
#endif

static struct stack_mem_counters snap(void)
{
    struct stack_mem_counters c;
    stack_mem_get_counters(&c);
    return c;
}

START_TEST(classes_cover_1025_to_128k_four_per_power_of_two)
{
    size_t block = 0;
    ck_assert_int_eq(stack_mem_class_of(1024, NULL), -1);
    ck_assert_int_eq(stack_mem_class_of(STACK_MEM_CLASS_MAX + 1, NULL), -1);
    ck_assert_int_eq(stack_mem_class_of(1025, &block), 0);
    ck_assert_uint_eq(block, 1280);
    ck_assert_int_eq(stack_mem_class_of(1280, &block), 0);
    ck_assert_int_eq(stack_mem_class_of(1281, &block), 1);
    ck_assert_uint_eq(block, 1536);
    ck_assert_int_eq(stack_mem_class_of(2048, &block), 3);
    ck_assert_uint_eq(block, 2048);
    ck_assert_int_eq(stack_mem_class_of(2049, &block), 4);
    ck_assert_uint_eq(block, 2560);
    ck_assert_int_eq(stack_mem_class_of(STACK_MEM_CLASS_MAX, &block), 27);
    ck_assert_uint_eq(block, STACK_MEM_CLASS_MAX);
    int prev = -1;
    size_t prev_block = 0;
    for (size_t n = STACK_MEM_CLASS_MIN; n <= STACK_MEM_CLASS_MAX; n++) {
        int c = stack_mem_class_of(n, &block);
        if (block < n || (block - n) * 4 > n || c < prev || c > prev + 1 ||
            (c == prev && block != prev_block))
            ck_abort_msg("n %zu: class %d block %zu (previous %d, %zu)", n, c, block, prev,
                         prev_block);
        prev = c;
        prev_block = block;
    }
}
END_TEST

/* lwIP's pbuf_alloc reaches mem_malloc here; a freed block of a class is
   the next one handed out for that class, and the gauges return. */
START_TEST(lwip_pbufs_are_served_and_reused)
{
    ck_assert(stack_mem_interposed());
    stack_mem_release_cache();
    struct stack_mem_counters a = snap();
    struct pbuf *p = pbuf_alloc(PBUF_RAW, 17000, PBUF_RAM);
    ck_assert_ptr_nonnull(p);
    memset(p->payload, 0xa5, 17000);
    struct stack_mem_counters b = snap();
    ck_assert_uint_eq(b.allocs - a.allocs, 1);
    ck_assert_uint_eq(b.class_new - a.class_new, 1);
    ck_assert_uint_eq(b.class_reused - a.class_reused, 0);
    ck_assert_uint_eq(b.live_bytes - a.live_bytes, 20480); /* class (16384, 20480] */
    /* room for what lwIP asked, after the block's 16-byte header */
    ck_assert_uint_ge(b.live_bytes - a.live_bytes - 16, 17000 + sizeof(struct pbuf));
    ck_assert_uint_eq(b.arena_live_bytes - a.arena_live_bytes, ARENA ? 20480 : 0);
    void *first = p;
    pbuf_free(p);
    struct stack_mem_counters c = snap();
    ck_assert_uint_eq(c.frees - a.frees, 1);
    ck_assert_uint_eq(c.live_bytes, a.live_bytes);
    ck_assert_uint_eq(c.arena_live_bytes, a.arena_live_bytes);
    ck_assert_uint_eq(c.cache_bytes - a.cache_bytes, 20480);
    p = pbuf_alloc(PBUF_RAW, 16500, PBUF_RAM); /* same class */
    ck_assert_ptr_eq(p, first);
    struct stack_mem_counters d = snap();
    ck_assert_uint_eq(d.class_reused - a.class_reused, 1);
    ck_assert_uint_eq(d.class_new - a.class_new, 1);
    ck_assert_uint_eq(d.cache_bytes, a.cache_bytes);
    pbuf_free(p);

    /* Small sizes stay libc's. */
    p = pbuf_alloc(PBUF_RAW, 100, PBUF_RAM);
    ck_assert_ptr_nonnull(p);
    pbuf_free(p);
    struct stack_mem_counters e = snap();
    ck_assert_uint_eq(e.libc_allocs - d.libc_allocs, 1);
    ck_assert_uint_eq(e.live_bytes, a.live_bytes);
    /* The class block came from the arena's first chunk; it stays listed. */
    ck_assert_uint_eq(e.arena_bytes, ARENA ? STACK_MEM_CHUNK_BYTES : 0);
    stack_mem_release_cache(); /* only libc's blocks go */
    ck_assert_uint_eq(snap().cache_bytes, ARENA ? e.cache_bytes : 0);
}
END_TEST

/* The arena grows by huge-page-aligned chunks up to its bound; past it,
   class blocks come from libc (arena_full), and arena blocks are reused. */
START_TEST(arena_grows_in_chunks_up_to_its_bound)
{
    enum { BLOCK = STACK_MEM_CLASS_MAX, MAX_BLOCKS = 2 * (STACK_MEM_CHUNK_BYTES / BLOCK) };
    ck_assert(stack_mem_interposed()); /* its probe took a block of the first chunk */
    stack_mem_set_arena_max(2 * STACK_MEM_CHUNK_BYTES);
    static void *blocks[MAX_BLOCKS + 1];
    struct stack_mem_counters a = snap();
    size_t n = 0, chunk_starts = 0;
    while (n <= MAX_BLOCKS && snap().arena_full == a.arena_full) {
        uint64_t mapped = snap().arena_bytes;
        blocks[n] = mem_malloc(BLOCK - 16);
        ck_assert_ptr_nonnull(blocks[n]);
        memset(blocks[n], 0x5a, BLOCK - 16);
        if (snap().arena_bytes > mapped) { /* a new chunk: starts on a huge page */
            ck_assert_uint_eq(((uintptr_t)blocks[n] - 16) % (2u << 20), 0);
            chunk_starts++;
        }
        n++;
    }
    struct stack_mem_counters b = snap();
    ck_assert_uint_eq(chunk_starts, 1);
    ck_assert_uint_eq(b.arena_full - a.arena_full, 1);
    ck_assert_uint_eq(b.arena_bytes, 2 * STACK_MEM_CHUNK_BYTES);
    /* every chunk but the probe's few KiB and one block's tail is used */
    ck_assert_uint_ge(n - 1, MAX_BLOCKS - 2);
    ck_assert_uint_eq(b.class_new - a.class_new, n);
    for (size_t i = 0; i < n; i++)
        mem_free(blocks[i]);
    struct stack_mem_counters c = snap();
    ck_assert_uint_eq(c.cache_bytes - b.cache_bytes, (uint64_t)BLOCK * n);
    ck_assert_uint_eq(c.cache_full, a.cache_full);
    void *again = mem_malloc(BLOCK - 16); /* the last freed: LIFO */
    ck_assert_ptr_eq(again, blocks[n - 1]);
    mem_free(again);
    stack_mem_set_arena_max(STACK_MEM_ARENA_MAX);
}
END_TEST

START_TEST(calloc_zeroes_and_refuses_overflow)
{
    uint8_t *m = mem_malloc(3000);
    memset(m, 0xff, 3000);
    mem_free(m);
    uint8_t *z = mem_calloc(10, 300); /* the same block again, zeroed */
    ck_assert_ptr_eq(z, m);
    for (size_t i = 0; i < 3000; i++)
        ck_assert_uint_eq(z[i], 0);
    mem_free(z);
    ck_assert_ptr_null(mem_calloc((size_t)-1 / 2, 4));
}
END_TEST

/* The free lists keep at most STACK_MEM_CACHE_MAX bytes; beyond, blocks go
   back to libc, each counted. */
START_TEST(free_lists_are_bounded)
{
    enum { BLOCK = STACK_MEM_CLASS_MAX, KEPT = STACK_MEM_CACHE_MAX / BLOCK, EXTRA = 40 };
    stack_mem_set_arena_max(0); /* libc's blocks only */
    stack_mem_release_cache();
    static void *blocks[KEPT + EXTRA];
    struct stack_mem_counters a = snap();
    for (size_t i = 0; i < KEPT + EXTRA; i++) {
        blocks[i] = mem_malloc(BLOCK - 16); /* 16: the block's header */
        ck_assert_ptr_nonnull(blocks[i]);
    }
    struct stack_mem_counters b = snap();
    ck_assert_uint_eq(b.class_new - a.class_new, KEPT + EXTRA);
    ck_assert_uint_eq(b.live_bytes - a.live_bytes, (uint64_t)BLOCK * (KEPT + EXTRA));
    for (size_t i = 0; i < KEPT + EXTRA; i++)
        mem_free(blocks[i]);
    struct stack_mem_counters c = snap();
    ck_assert_uint_eq(c.cache_full - a.cache_full, EXTRA);
    ck_assert_uint_eq(c.cache_bytes, STACK_MEM_CACHE_MAX);
    ck_assert_uint_ge(c.cache_peak, STACK_MEM_CACHE_MAX);
    ck_assert_uint_eq(c.live_bytes, a.live_bytes);
    stack_mem_release_cache();
    ck_assert_uint_eq(snap().cache_bytes, 0);
    stack_mem_set_arena_max(STACK_MEM_ARENA_MAX);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stack_mem");
    TCase *tc = tcase_create("mem");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, classes_cover_1025_to_128k_four_per_power_of_two);
    tcase_add_test(tc, lwip_pbufs_are_served_and_reused);
    tcase_add_test(tc, calloc_zeroes_and_refuses_overflow);
    if (ARENA)
        tcase_add_test(tc, arena_grows_in_chunks_up_to_its_bound);
    tcase_add_test(tc, free_lists_are_bounded);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
