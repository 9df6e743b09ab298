/*
 * check_mem: the per-thread block cache behind libevent's allocations:
 * blocks come back from the cache, classes are kept apart, the cache is
 * bounded and can be emptied, realloc keeps the bytes, and an evbuffer
 * works through it.
 */
#include "base/mem.h"
#include "unit.h"

#include <event2/buffer.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* Runs FN on a thread of its own: a new thread starts with an empty cache. */
static void in_a_thread(void *(*fn)(void *))
{
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, fn, NULL), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
}

START_TEST(test_blocks_come_back)
{
    mem_thread_release();
    void *a = mem_malloc(1024);
    ck_assert_ptr_nonnull(a);
    memset(a, 0xab, 1024); /* the whole payload is usable */
    mem_free(a);
    /* released: the thread no longer caches */
    ck_assert_uint_eq(mem_thread_cached(), 0);
}
END_TEST

static void *worker_like(void *arg)
{
    (void)arg;
    /* A new thread caches what it frees, and hands it out again. */
    void *a = mem_malloc(1000);
    mem_free(a);
    ck_assert_uint_eq(mem_thread_cached(), 1);
    void *b = mem_malloc(700); /* the same class: 513 to 1024 bytes */
    ck_assert_ptr_eq(a, b);
    ck_assert_uint_eq(mem_thread_cached(), 0);
    void *c = mem_malloc(1025); /* the next class */
    ck_assert_ptr_ne(b, c);
    mem_free(b);
    mem_free(c);
    ck_assert_uint_eq(mem_thread_cached(), 2);
    /* Small and large sizes are not cached. */
    void *s = mem_malloc(100), *l = mem_malloc(40000);
    mem_free(s);
    mem_free(l);
    ck_assert_uint_eq(mem_thread_cached(), 2);
    /* At most 2 MiB per class: 64 blocks of 32 KiB, 2048 of 1 KiB. */
    static void *many[2100];
    for (int i = 0; i < 300; i++)
        many[i] = mem_malloc(32768);
    for (int i = 0; i < 300; i++)
        mem_free(many[i]);
    ck_assert_uint_eq(mem_thread_cached(), 2 + 64);
    for (int i = 0; i < 2100; i++)
        many[i] = mem_malloc(1000);
    ck_assert_uint_eq(mem_thread_cached(), 1 + 64); /* the first took the cached 1 KiB block */
    for (int i = 0; i < 2100; i++)
        mem_free(many[i]);
    ck_assert_uint_eq(mem_thread_cached(), 1 + 64 + 2048);
    /* A trim empties the cache, which then fills again. */
    mem_thread_trim();
    ck_assert_uint_eq(mem_thread_cached(), 0);
    void *again = mem_malloc(1000);
    mem_free(again);
    ck_assert_uint_eq(mem_thread_cached(), 1);
    mem_thread_release();
    ck_assert_uint_eq(mem_thread_cached(), 0);
    return NULL;
}

START_TEST(test_per_thread_cache)
{
    in_a_thread(worker_like);
}
END_TEST

static void *realloc_keeps_bytes(void *arg)
{
    (void)arg;
    unsigned char *p = mem_malloc(600);
    for (int i = 0; i < 600; i++)
        p[i] = (unsigned char)i;
    p = mem_realloc(p, 5000); /* to another class */
    for (int i = 0; i < 600; i++)
        ck_assert_uint_eq(p[i], (unsigned char)i);
    p = mem_realloc(p, 100000); /* to malloc's own */
    for (int i = 0; i < 600; i++)
        ck_assert_uint_eq(p[i], (unsigned char)i);
    p = mem_realloc(p, 99000); /* shrinks in place */
    p = mem_realloc(p, 50); /* and back to a small block */
    for (int i = 0; i < 50; i++)
        ck_assert_uint_eq(p[i], (unsigned char)i);
    mem_free(p);
    ck_assert_ptr_null(mem_malloc(SIZE_MAX - 8));
    mem_free(NULL);
    mem_thread_release();
    return NULL;
}

START_TEST(test_realloc)
{
    in_a_thread(realloc_keeps_bytes);
}
END_TEST

START_TEST(test_evbuffers_through_it)
{
    /* Forked: this process's libevent allocates through mem_* from now on. */
    mem_init();
    struct evbuffer *a = evbuffer_new(), *b = evbuffer_new();
    char chunk[3000];
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(evbuffer_add(a, chunk, sizeof(chunk)), 0);
    ck_assert_int_eq(evbuffer_remove_buffer(a, b, 150000), 150000);
    ck_assert_uint_eq(evbuffer_get_length(a) + evbuffer_get_length(b), 300000);
    evbuffer_drain(b, 150000);
    ck_assert_uint_gt(mem_thread_cached(), 0); /* the chains went to the cache */
    ck_assert_int_eq(evbuffer_expand(a, 1 << 20), 0);
    evbuffer_free(a);
    evbuffer_free(b);
    mem_thread_release();
}
END_TEST

static Suite *mem_suite(void)
{
    Suite *s = suite_create("mem");
    TCase *tc = tcase_create("cache");
    tcase_add_test(tc, test_blocks_come_back);
    tcase_add_test(tc, test_per_thread_cache);
    tcase_add_test(tc, test_realloc);
    tcase_add_test(tc, test_evbuffers_through_it);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(mem_suite)
