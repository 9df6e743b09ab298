/*
 * mem: libevent's allocator. Every request costs libevent a few buffer
 * chains of 1 KiB to 32 KiB (a frame's copy, a read, a burst of replies),
 * allocated in one loop turn and freed in the next; glibc serves those
 * sizes from its bins under an arena lock, outside its per-thread cache,
 * and that was a tenth of respgate's CPU at -P 16 (bench/README.md). Here
 * each thread keeps up to 2 MiB of freed blocks of each power-of-two size
 * from 1 KiB to 32 KiB (12 MiB at most) and hands them out again; other
 * sizes, and blocks past a class's cap, go to malloc and free. The cap is
 * in bytes because a split MGET at -P 16 from 50 clients holds thousands of
 * 1 KiB chains at once: a cap of 64 blocks missed almost every time. A block freed by another thread
 * joins that thread's cache: the caches are per thread, never shared, so
 * nothing is locked.
 */
#ifndef RG_MEM_H
#define RG_MEM_H

#include <stddef.h>

/* Makes libevent allocate through mem_*; before any other libevent call. */
void mem_init(void);

void *mem_malloc(size_t size);
void *mem_realloc(void *p, size_t size);
void mem_free(void *p);

/* Frees the calling thread's cached blocks; at thread exit. */
void mem_thread_release(void);

/* Frees the calling thread's cached blocks and has malloc give free pages
 * back to the system (glibc's malloc_trim; elsewhere, only the blocks are
 * freed); the cache fills again as it is used. Costs a walk of every
 * arena, each under its lock: for after a burst, not for every turn.
 * Returns whether malloc released memory to the system. */
int mem_thread_trim(void);

/* Blocks in the calling thread's cache (for tests). */
size_t mem_thread_cached(void);

#endif
