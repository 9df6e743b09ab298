/*
 * fpset: a set of 64-bit fingerprints (of keys), open addressing with
 * linear probing, kept at most half full; 0 is never a member. Owns its
 * table and nothing else; no lock (its user holds one where it is shared).
 */
#ifndef RG_FPSET_H
#define RG_FPSET_H

#include <stddef.h>
#include <stdint.h>

struct fpset {
    uint64_t *v;  /* cap slots, 0 = empty */
    size_t cap;   /* a power of two, or 0 before the first add */
    size_t n;
};

/* A key's fingerprint: never 0. */
uint64_t fpset_fingerprint(const void *key, size_t len);

/* Whether FP is in S. */
int fpset_has(const struct fpset *s, uint64_t fp);

/* Adds FP (not 0) to S. Returns 1 if added, 0 if there already, -1 if out of memory. */
int fpset_add(struct fpset *s, uint64_t fp);

/* Removes FP from S. Returns 1 if it was there, else 0. */
int fpset_del(struct fpset *s, uint64_t fp);

/* Frees S's table; S is empty and usable again. */
void fpset_clear(struct fpset *s);

#endif
