/*
 * fuzz: what the libFuzzer targets share. Each target checks properties,
 * not just survival: a resumable scanner fed in pieces must cut the same
 * frames as when fed whole, inside the bytes it was given. FUZZ_CHECK
 * aborts, so a broken property is a crash libFuzzer saves.
 */
#ifndef RG_FUZZ_H
#define RG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/buffer.h>

#define FUZZ_CHECK(cond)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond);                              \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Appends the next piece of a stream to IN as a chain of its own, the way
 * socket reads land: 1 to 16 bytes chosen by *SEED, or everything left when
 * *SEED is 0 (the whole stream at once). Returns the bytes appended. */
static inline size_t fuzz_feed(struct evbuffer *in, const uint8_t *next, size_t left, unsigned *seed)
{
    size_t n = left;
    if (*seed != 0) {
        *seed = *seed * 1103515245u + 12345u;
        n = 1 + (*seed >> 16) % 16;
        if (n > left)
            n = left;
    }
    struct evbuffer *piece = evbuffer_new();
    FUZZ_CHECK(piece != NULL);
    evbuffer_add(piece, next, n);
    evbuffer_add_buffer(in, piece);
    evbuffer_free(piece);
    return n;
}

/* FNV-1a over N bytes, folded into H: a cheap digest of what a scan saw. */
static inline uint64_t fuzz_mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

#endif
