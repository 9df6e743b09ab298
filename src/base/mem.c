/*
 * mem: giving memory back, see mem.h.
 */
#include "base/mem.h"
#include "config.h"

#ifdef HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#include <stdio.h>
#elif defined(__GLIBC__)
#include <malloc.h>
#endif

int mem_thread_trim(void)
{
#if defined(HAVE_JEMALLOC)
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
