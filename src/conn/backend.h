/*
 * backend: one connection from a worker to one cluster node, shared by all
 * of the worker's clients (multiplexed, pipelined). Owns the connection, its
 * FIFO of requests in flight, authentication at connect, and the reconnect
 * backoff. Replies are matched to requests strictly in FIFO order; anything
 * that could break that order (a timeout, a protocol error, a lost
 * connection) closes the connection and fails what was in flight, so a late
 * reply can never reach a later request.
 *
 * A master that is slow to answer (a script running, writes paused by a
 * manual failover, a slow command) is not taken for down at the first
 * reply timeout: the connection stalls. It moves aside, still reading the
 * replies it is owed, and a new connection asks the node HELLO. A node that
 * answers is alive, and the stalled requests wait for their replies (up to
 * cluster.failover_wait, or as long as 6.2 pauses writes in a manual
 * failover) while new ones go on the new connection, where the node can
 * answer BUSY; one that does not answer within its busy-reply-threshold is
 * down, and what stalled fails as a lost connection's requests do.
 *
 * A private backend belongs to one client session instead (a transaction, a
 * blocking command; see session.h): it is never shared, never reconnects
 * (what a node remembers about a connection, a WATCH or a MULTI, would be
 * lost), never retries, and frees itself once released and drained, or once
 * broken; a clean one (a blocking command's, answered; a transaction's,
 * ended) waits in a small per-worker pool for the next one to that node.
 */
#ifndef RG_BACKEND_H
#define RG_BACKEND_H

#include "loop/req.h"
#include "loop/worker.h"
#include "base/resp.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/time.h>

struct worker;
struct client;
struct bufferevent;
struct evbuffer;
struct metrics_node;

struct backend;

/* What a connection reports, to whoever opened it: its kind (shared,
 * a session's, a subscriber's) is the ops it was opened with. */
struct backend_ops {
    /* The reply of LEN bytes (first byte TYPE) at the front of IN is R's,
     * the request just taken off B's FIFO: consume it, and complete R or
     * send it again. */
    void (*reply)(struct backend *b, struct req *r, struct evbuffer *in, size_t len, char type);
    /* Set for a connection whose frames are not all replies (Pub/Sub):
     * each frame after the handshake comes here instead of to reply.
     * Returns 0, or -1 for a frame nobody asked for (B resets). */
    int (*frame)(struct backend *b, struct evbuffer *in, size_t len);
    /* B's connection is gone with R on it (taken off B): SENT says R may
     * have reached the node. Send R again or fail it; WHY says what
     * happened. */
    void (*lost)(struct backend *b, struct req *r, int sent, const char *why);
    /* A private B is no longer its opener's: it is freed, or back in the
     * worker's pool. NULL: nothing to do. */
    void (*gone)(struct backend *b);
    /* B's node failed to answer or refused the connection (not a quiet
     * close of an idle one): the map may be out of date. NULL: nothing. */
    void (*node_down)(struct backend *b);
    /* B's node told its Redis version (B->version), a new one. NULL:
     * nothing to do. */
    void (*versioned)(struct backend *b);
};

/* What a connection is for, set by its opener: the one field that tells
 * connections apart (never the identity of their ops). */
enum backend_kind {
    BACKEND_SHARED = 0, /* a worker's to a node, for all its clients (route.c) */
    BACKEND_SOURCE,     /* the standalone a migration reads (migrate.c): its own credentials, never TLS */
    BACKEND_PIN,        /* private from here on: a transaction's or WATCH's (session.c) */
    BACKEND_BLOCKING,   /* a blocking command's (session.c): no reply timeout, TCP keepalive */
    BACKEND_BESIDE,     /* a script kill beside a busy shared connection (fanout.c): as a blocking one */
    BACKEND_PUSH,       /* a subscriber's (pubsub.c): TCP keepalive, never pooled */
    BACKEND_FEED,       /* a tracker's invalidations (tracking.c): as a subscriber's */
};

struct backend {
    TAILQ_ENTRY(backend) link;  /* in the worker's list; private: in its client's */
    struct worker *w;
    const struct backend_ops *ops;
    enum backend_kind kind;
    char host[256];
    int port;
    struct bufferevent *bev;    /* NULL while there is no connection */
    struct netio_tls *tls;      /* cluster.tls: the session on it (netio.h), NULL before it connected */
    struct backend_dns *dns;    /* the host name's lookup under way (backend.c), or NULL */
    struct req_list inflight;
    size_t ninflight;
    struct req_list waiting;    /* sent once the node answered AUTH (or PING): never written yet */
    size_t nwaiting;
    struct resp_reply scan;     /* the reply being read */
    uint64_t retry_after_ms;    /* no new connection before this (worker_turn_ms), 0 none */
    unsigned backoff_ms;
    unsigned version;           /* the node's Redis version from HELLO (compat.h), 0 until known */
    uint8_t proto;              /* the RESP version its HELLO asked for: 2, or 3 */
    struct backend *resp3;      /* shared, RESP2: its RESP3 twin to the same node, made on first use */
    struct backend_list stalled; /* shared: its stalled connections, still awaited (see above) */
    unsigned nstalled;
    struct backend *origin;     /* stalled: the shared backend it moved aside from, NULL once detached */
    uint64_t stall_deadline_ms; /* stalled: when what it holds fails after all (worker_turn_ms) */
    struct event *flush;        /* writes what this loop turn (or two: on_flush) queued, in one go */
    struct event *rev;          /* the socket's read event once connected (netio_read) */
    struct client *owner;       /* private: the client it belongs to; NULL while pooled */
    struct metrics_node *gauge; /* where /metrics counts it (metrics.h), or NULL */
    signed char gauge_at;       /* its count there, -1 none */
    unsigned connected : 1;     /* the connection was established: requests may have run */
    unsigned ready : 1;         /* the node answered the connection's AUTH or PING */
    unsigned readonly : 1;      /* reads go to this replica: READONLY on every connection */
    unsigned auth_failed : 1;   /* the node refused AUTH: what waits fails at once */
    unsigned released : 1;      /* private: frees itself once nothing is in flight */
    unsigned poolable : 1;      /* private: holds no session state once answered (backend pool) */
    unsigned broken : 1;        /* private: the connection is gone; sends fail */
    unsigned extra : 1;         /* push (pubsub.c): keyspace notifications from a master besides the main one */
    unsigned stalled_conn : 1;  /* a stalled connection: reads the replies it is owed, takes no request */
    unsigned timer_armed : 1;   /* the read event carries the reply timeout */
    uint64_t busy_since_ms;     /* when the first request now in flight went out (worker_turn_ms) */
    uint64_t last_read_ms;      /* when the socket was last read (worker_turn_ms) */
    uint32_t nchan, npat, nshard; /* push (pubsub.c): the node's subscription counts on this connection */
};


/* W's shared backend for HOST:PORT, or NULL if it has none. A node has one
 * shared connection per worker for each protocol its clients speak: the
 * RESP2 one is found here and holds the slots; a RESP3 request sent to it
 * goes to its twin (see backend_send). */
struct backend *backend_find(struct worker *w, const char *host, int port);

/* W's shared backend for HOST:PORT, created (unconnected, reporting to
 * OPS) if new; NULL if out of memory. */
struct backend *backend_get(struct worker *w, const struct backend_ops *ops, const char *host, int port);

/* Sends R (its buf, by reference: it stays for a resend) and puts it in
 * flight; connects first if needed. On a shared B, a RESP3 request
 * (R->resp3) goes on B's RESP3 twin instead, made now if new. Returns 0; -EAGAIN while the connection
 * backs off after a failure (try again shortly); -1 if the node cannot be
 * reached. R is untouched on failure. */
int backend_send(struct backend *b, struct req *r);

/* Private connections kept per worker for reuse once answered: those of
 * blocking commands, and of transactions that ended with EXEC, DISCARD or
 * UNWATCH (so the node holds no MULTI or WATCH for them). */
#define BACKEND_POOL_MAX 32

/* Whether B is private to one client; whether its replies may take
 * forever (no reply timeout); whether it carries pushes (never pooled). */
static inline int backend_private(const struct backend *b)
{
    return b->kind >= BACKEND_PIN;
}
static inline int backend_waits_forever(const struct backend *b)
{
    return b->kind == BACKEND_BLOCKING || b->kind == BACKEND_BESIDE;
}
static inline int backend_pushes(const struct backend *b)
{
    return b->kind >= BACKEND_PUSH;
}

/* A private backend to HOST:PORT for client C, of KIND (BACKEND_PIN or
 * after), speaking PROTO (2, or 3 for a RESP3 client), reporting to OPS:
 * from the pool, or new and connecting at once. NULL if out of memory; a
 * backend that could not connect is returned broken (it retires by
 * itself). The opener keeps track of it until OPS->gone. */
struct backend *backend_open_private(struct worker *w, const struct backend_ops *ops, struct client *c,
                                     const char *host, int port, enum backend_kind kind, int proto);

/* Fails R, taken off B when its connection was lost (WHY): a request that
 * never reached the node cannot reach it, one that did may have run. For
 * ops->lost when nothing is sent again. */
void backend_fail_lost(struct backend *b, struct req *r, int sent, const char *why);

/* The request at the head of B's FIFO, or NULL; and taking it off. */
struct req *backend_head(struct backend *b);
struct req *backend_pop(struct backend *b);

/* Gives private backend B up: it frees itself once nothing is in flight,
 * or with its client. */
void backend_release(struct backend *b);

/* Closes private backend B now; what is in flight is failed (with WHY, if
 * not NULL) or, orphaned, dropped. Never call it from B's own callbacks. */
void backend_free_private(struct backend *b, const char *why);

/* Makes B a replica that serves reads: READONLY now, if connected, and at
 * every new connection. */
void backend_set_readonly(struct backend *b);

/* Whether backends A and B go to the same node. */
static inline int backend_same_node(const struct backend *a, const struct backend *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* Whether B can take a request now: not backing off after a failure. */
int backend_usable(struct backend *b);

/* Closes every backend of W, failing what was in flight; at worker exit. */
void backend_free_all(struct worker *w);

#endif
