/*
 * stub_backend: the nodes' side of fuzz_dispatch (stub_backend.c), which
 * replaces backend.c: requests wait in their connection's FIFO until the
 * fuzzer answers them.
 */
#ifndef RG_STUB_BACKEND_H
#define RG_STUB_BACKEND_H

#include <stddef.h>

struct worker;

struct evbuffer;
struct resp_req;

/* The node's side: what it sends for the request whose frame is FRAME
 * (arguments Q), or unasked on a push connection (FRAME and Q NULL), on a
 * connection that speaks PROTO: bytes appended to OUT (nothing: it says
 * nothing yet). Returns 0, or -1 to break the connection. */
typedef int stub_reply_fn(void *arg, struct evbuffer *frame, const struct resp_req *q, int proto, struct evbuffer *out);

/* Lets each of W's connections with a request in flight (or a push
 * stream) answer once through REPLY; what it sends is cut into replies by
 * the real reply scanner and handed to the connection's ops as backend.c
 * does (a malformed one breaks the connection), and retires released
 * private connections that are idle. Returns 1 if anything happened, 0
 * when there was nothing to answer. */
int stub_backend_answer(struct worker *w, stub_reply_fn *reply, void *arg);

/* The connections alive, shared and private. */
size_t stub_backend_count(void);

#endif
