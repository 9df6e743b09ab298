/*
 * fpset: a set of 64-bit fingerprints, see fpset.h.
 */
#include "base/fpset.h"

#include <stdlib.h>

uint64_t fpset_fingerprint(const void *key, size_t len)
{
    /* FNV-1a, then a 64-bit avalanche so that keys alike in all but their
     * last bytes spread over the table. A collision makes two keys one. */
    const unsigned char *p = key;
    uint64_t h = 0xcbf29ce484222325ull ^ len;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h ? h : 1;
}

int fpset_has(const struct fpset *s, uint64_t fp)
{
    if (s->cap == 0)
        return 0;
    for (size_t i = fp & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (s->v[i] == fp)
            return 1;
        if (s->v[i] == 0)
            return 0;
    }
}

static void put(uint64_t *v, size_t cap, uint64_t fp)
{
    size_t i = fp & (cap - 1);
    while (v[i])
        i = (i + 1) & (cap - 1);
    v[i] = fp;
}

int fpset_add(struct fpset *s, uint64_t fp)
{
    if (fpset_has(s, fp))
        return 0;
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        uint64_t *v = calloc(cap, sizeof(*v));
        if (v == NULL)
            return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->v[i])
                put(v, cap, s->v[i]);
        free(s->v);
        s->v = v;
        s->cap = cap;
    }
    put(s->v, s->cap, fp);
    s->n++;
    return 1;
}

int fpset_del(struct fpset *s, uint64_t fp)
{
    if (s->cap == 0)
        return 0;
    size_t mask = s->cap - 1, i = fp & mask;
    while (s->v[i] != fp) {
        if (s->v[i] == 0)
            return 0;
        i = (i + 1) & mask;
    }
    s->v[i] = 0;
    s->n--;
    /* Entries after the hole that could not sit in their own slot move
     * back into it, so that no search stops early at the hole. */
    for (size_t j = (i + 1) & mask; s->v[j]; j = (j + 1) & mask) {
        size_t home = s->v[j] & mask;
        int between = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (between) {
            s->v[i] = s->v[j];
            s->v[j] = 0;
            i = j;
        }
    }
    return 1;
}

void fpset_clear(struct fpset *s)
{
    free(s->v);
    s->v = NULL;
    s->cap = s->n = 0;
}
