/* guard: protected mode's address test and failed AUTHs per address (guard.h). */
#include "base/guard.h"

#include <stdlib.h>
#include <string.h>

struct guard *guard_new(void)
{
    struct guard *g = calloc(1, sizeof(*g));
    if (g && pthread_mutex_init(&g->lock, NULL) != 0) {
        free(g);
        return NULL;
    }
    return g;
}

void guard_free(struct guard *g)
{
    if (g == NULL)
        return;
    pthread_mutex_destroy(&g->lock);
    free(g);
}

void guard_host(const char *addr, char *host, size_t cap)
{
    const char *start = addr, *end = strrchr(addr, ':');
    if (addr[0] == '[') {
        start = addr + 1;
        end = strchr(start, ']');
    }
    if (end == NULL)
        end = addr + strlen(addr);
    size_t n = (size_t)(end - start);
    if (n >= cap)
        n = cap - 1;
    memcpy(host, start, n);
    host[n] = '\0';
}

int guard_is_local(const char *addr)
{
    char host[64];
    if (strcmp(addr, "unix") == 0)
        return 1;
    guard_host(addr, host, sizeof(host));
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0;
}

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* HOST's entry, or NULL; with MAKE, a new one in a free place or in place
 * of the least recent of its probe window. Called with the lock held. */
static struct guard_entry *entry(struct guard *g, const char *host, int make)
{
    uint32_t h = hash(host);
    struct guard_entry *oldest = NULL, *free_one = NULL;
    for (uint32_t i = 0; i < GUARD_PROBE; i++) {
        struct guard_entry *e = &g->e[(h + i) % GUARD_SLOTS];
        if (e->host[0] == '\0') {
            free_one = free_one ? free_one : e;
            continue;
        }
        if (strcmp(e->host, host) == 0)
            return e;
        if (oldest == NULL || e->last_ms < oldest->last_ms)
            oldest = e;
    }
    if (!make)
        return NULL;
    struct guard_entry *e = free_one ? free_one : oldest;
    memset(e, 0, sizeof(*e));
    size_t n = strlen(host);
    if (n >= sizeof(e->host))
        n = sizeof(e->host) - 1;
    memcpy(e->host, host, n);
    return e;
}

uint32_t guard_auth_failed(struct guard *g, const char *host, uint64_t now_ms, uint32_t *failures)
{
    atomic_fetch_add_explicit(&g->auth_failures, 1, memory_order_relaxed);
    pthread_mutex_lock(&g->lock);
    struct guard_entry *e = entry(g, host, 1);
    if (e->failures == 0 || now_ms - e->since_ms >= GUARD_WINDOW_MS) {
        e->since_ms = now_ms;
        e->failures = 0;
        e->next_auth_ms = 0;
    }
    e->failures++;
    e->last_ms = now_ms;
    e->unlogged++;
    uint32_t log = 0;
    if (e->logged_ms == 0 || now_ms - e->logged_ms >= 1000) {
        log = e->unlogged;
        e->unlogged = 0;
        e->logged_ms = now_ms;
    }
    *failures = e->failures;
    pthread_mutex_unlock(&g->lock);
    return log;
}

uint64_t guard_auth_wait(struct guard *g, const char *host, uint64_t now_ms, uint32_t max_failures,
                         uint64_t delay_ms)
{
    if (max_failures == 0 || delay_ms == 0)
        return 0;
    uint64_t wait = 0;
    pthread_mutex_lock(&g->lock);
    struct guard_entry *e = entry(g, host, 0);
    if (e && e->failures >= max_failures && now_ms - e->since_ms < GUARD_WINDOW_MS) {
        uint64_t at = (e->next_auth_ms > now_ms ? e->next_auth_ms : now_ms) + delay_ms;
        if (at - now_ms > GUARD_MAX_WAITS * delay_ms)
            at = now_ms + GUARD_MAX_WAITS * delay_ms; /* a turn past the cap is not taken from the others */
        else
            e->next_auth_ms = at;
        wait = at - now_ms;
    }
    pthread_mutex_unlock(&g->lock);
    if (wait)
        atomic_fetch_add_explicit(&g->auth_delayed, 1, memory_order_relaxed);
    return wait;
}

int guard_tally(struct guard_tally *t, uint64_t now_ms)
{
    atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
    uint64_t last = atomic_load(&t->logged_ms);
    return (last == 0 || now_ms - last >= 1000) && atomic_compare_exchange_strong(&t->logged_ms, &last, now_ms);
}
