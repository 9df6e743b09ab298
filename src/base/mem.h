/*
 * mem: giving memory back. respgate allocates with jemalloc (Debian's
 * libjemalloc, what Redis ships with); builds with sanitizers use theirs.
 * jemalloc's per-thread caches serve the buffer chains libevent takes and
 * frees each loop turn, and they replaced a block cache of respgate's own:
 * as fast at -P 16, and after 10,000 clients came and went it held 12.7
 * MiB where the cache and malloc_trim kept 27.5 (bench/README.md).
 */
#ifndef RG_MEM_H
#define RG_MEM_H

/* Gives the memory the calling thread's allocator keeps but does not use
 * back to the system: jemalloc's thread cache goes back to its arena and
 * every arena's unused pages are purged (glibc's malloc_trim without
 * jemalloc). Costs a walk of every arena: for after a burst, not for every
 * turn. Returns whether it released anything it could. */
int mem_thread_trim(void);

#endif
