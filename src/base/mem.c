/*
 * mem: libevent's allocator with a per-thread cache of buffer-sized
 * blocks, see mem.h.
 */
#include "base/mem.h"
#include "config.h"

#include <event2/event.h>
#ifdef HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#include <stdio.h>
#endif
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* A cached block is poisoned: a use after free still stops the test build. */
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define MEM_CLASSES 6           /* payloads of 1 KiB, 2, 4, 8, 16 and 32 KiB */
#define MEM_CLASS_MIN 1024
#define MEM_CACHE_BYTES (2u << 20) /* cached per class and thread, at most: 12 MiB in all */
#define UNCLASSED UINT32_MAX

/* Before every block; 32 bytes keep malloc's 16-byte alignment. */
struct mem_head {
    struct mem_head *next; /* in its thread's cache */
    size_t size;           /* the payload's */
    uint32_t cls;          /* its class, or UNCLASSED */
    uint32_t pad[3];
};

static _Thread_local struct {
    struct mem_head *head;
    unsigned n;
} cache[MEM_CLASSES];
static _Thread_local int released; /* the thread is ending: frees go to free() */

static uint32_t class_of(size_t size)
{
    if (size <= MEM_CLASS_MIN / 2 || size > (size_t)MEM_CLASS_MIN << (MEM_CLASSES - 1))
        return UNCLASSED;
    uint32_t c = 0;
    while ((size_t)MEM_CLASS_MIN << c < size)
        c++;
    return c;
}

void *mem_malloc(size_t size)
{
    uint32_t c = class_of(size);
    struct mem_head *h;
    if (c != UNCLASSED && (h = cache[c].head)) {
        cache[c].head = h->next;
        cache[c].n--;
        UNPOISON(h + 1, h->size);
        return h + 1;
    }
    size_t payload = c == UNCLASSED ? size : (size_t)MEM_CLASS_MIN << c;
    if (payload > SIZE_MAX - sizeof(*h) || (h = malloc(sizeof(*h) + payload)) == NULL)
        return NULL;
    h->size = payload;
    h->cls = c;
    return h + 1;
}

void mem_free(void *p)
{
    if (p == NULL)
        return;
    struct mem_head *h = (struct mem_head *)p - 1;
    if (h->cls != UNCLASSED && !released && cache[h->cls].n < (MEM_CACHE_BYTES / MEM_CLASS_MIN >> h->cls)) {
        POISON(p, h->size);
        h->next = cache[h->cls].head;
        cache[h->cls].head = h;
        cache[h->cls].n++;
        return;
    }
    free(h);
}

void *mem_realloc(void *p, size_t size)
{
    if (p == NULL)
        return mem_malloc(size);
    struct mem_head *h = (struct mem_head *)p - 1;
    if (size <= h->size && (h->cls != UNCLASSED || class_of(size) == UNCLASSED) && h->size - size < 4096)
        return p; /* it fits, and keeps little room unused */
    if (h->cls == UNCLASSED && class_of(size) == UNCLASSED) {
        if (size > SIZE_MAX - sizeof(*h) || (h = realloc(h, sizeof(*h) + size)) == NULL)
            return NULL;
        h->size = size;
        return h + 1;
    }
    void *q = mem_malloc(size);
    if (q == NULL)
        return NULL;
    memcpy(q, p, size < h->size ? size : h->size);
    mem_free(p);
    return q;
}

static void free_cached(void)
{
    for (int c = 0; c < MEM_CLASSES; c++) {
        struct mem_head *h;
        while ((h = cache[c].head)) {
            cache[c].head = h->next;
            free(h);
        }
        cache[c].n = 0;
    }
}

void mem_thread_release(void)
{
    released = 1;
    free_cached();
}

int mem_thread_trim(void)
{
    free_cached();
#if defined(HAVE_JEMALLOC)
    /* The thread's cache back to its arena, and every arena's unused
     * pages back to the system. */
    char purge[64];
    snprintf(purge, sizeof(purge), "arena.%u.purge", (unsigned)MALLCTL_ARENAS_ALL);
    mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    return mallctl(purge, NULL, NULL, NULL, 0) == 0;
#elif defined(__GLIBC__)
    /* glibc returns only the top of a heap by itself; pages freed below
     * blocks still in use stay counted in RSS until this. */
    return malloc_trim(0);
#else
    return 0;
#endif
}

size_t mem_thread_cached(void)
{
    size_t n = 0;
    for (int c = 0; c < MEM_CLASSES; c++)
        n += cache[c].n;
    return n;
}

void mem_init(void)
{
#ifndef HAVE_JEMALLOC /* jemalloc's own per-thread caches serve libevent */
    event_set_mem_functions(mem_malloc, mem_realloc, mem_free);
#endif
}
