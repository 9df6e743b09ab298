/*
 * backend: one connection from a worker to one cluster node, shared by all
 * of the worker's clients (multiplexed, pipelined). Owns the connection, its
 * FIFO of requests in flight, authentication at connect, and the reconnect
 * backoff. Replies are matched to requests strictly in FIFO order; anything
 * that could break that order (a timeout, a protocol error, a lost
 * connection) closes the connection and fails what was in flight, so a late
 * reply can never reach a later request.
 */
#ifndef RG_BACKEND_H
#define RG_BACKEND_H

#include "req.h"
#include "resp.h"

#include <stddef.h>
#include <sys/queue.h>
#include <sys/time.h>

struct worker;
struct bufferevent;

struct backend {
    TAILQ_ENTRY(backend) link;  /* in the worker's list */
    struct worker *w;
    char host[256];
    int port;
    struct bufferevent *bev;    /* NULL while there is no connection */
    struct req_list inflight;
    size_t ninflight;
    struct resp_reply scan;     /* the reply being read */
    struct timeval retry_after; /* no new connection before this */
    unsigned backoff_ms;
    struct event *flush;        /* writes what this loop turn queued, in one go */
    struct event *rev;          /* the socket's read event once connected (netio_read) */
    unsigned connected : 1;     /* the connection was established: requests may have run */
};

TAILQ_HEAD(backend_list, backend);

/* W's backend for HOST:PORT, created (unconnected) if new; NULL if out of memory. */
struct backend *backend_get(struct worker *w, const char *host, int port);

/* Sends R (its buf, by reference: it stays for a resend) and puts it in
 * flight; connects first if needed. Returns 0; -EAGAIN while the connection
 * backs off after a failure (try again shortly); -1 if the node cannot be
 * reached. R is untouched on failure. */
int backend_send(struct backend *b, struct req *r);

/* Closes every backend of W, failing what was in flight; at worker exit. */
void backend_free_all(struct worker *w);

#endif
