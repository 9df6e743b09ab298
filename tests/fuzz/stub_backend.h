/*
 * stub_backend: the nodes' side of fuzz_dispatch (stub_backend.c), which
 * replaces backend.c: requests wait in their connection's FIFO until the
 * fuzzer answers them.
 */
#ifndef RG_STUB_BACKEND_H
#define RG_STUB_BACKEND_H

#include <stddef.h>

struct worker;

/* Gives each of W's connections with a request in flight (or a push
 * stream) one reply chosen by PICK (a whole RESP value and its length, or
 * NULL to lose the head request as a dropped connection does), and retires
 * released private connections that are idle. Returns 1 if anything
 * happened, 0 when there was nothing to answer. */
int stub_backend_answer(struct worker *w, const char *(*pick)(void *arg, size_t *len), void *arg);

/* The connections alive, shared and private. */
size_t stub_backend_count(void);

#endif
