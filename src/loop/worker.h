/*
 * worker: one worker thread's context: its event_base, clients, backends
 * and counters, and the services of a loop turn (its clock, held
 * flushes). The request path runs entirely inside one worker and takes no
 * lock; other threads talk to a worker only through thread_post()
 * (thread.h, which owns the thread's life).
 */
#ifndef RG_WORKER_H
#define RG_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "loop/metrics.h"

struct thread_ctl;
struct shared;
struct conf;
struct tls_ctxs;
struct client;
struct event_base;
struct evdns_base;
struct event;
struct evconnlistener;
struct route;
struct migrate_worker;

TAILQ_HEAD(client_list, client);
TAILQ_HEAD(backend_list, backend); /* conn/backend.h */
TAILQ_HEAD(req_list, req);         /* req.h */

struct worker {
    struct thread_ctl *ctl;         /* the control thread's, for the thread's life only (thread.h) */
    struct shared *shared;          /* what is in force (shared.h) */
    int id;
    pthread_t thread;
    int started;
    struct event_base *base;
    struct evdns_base *dns;         /* resolves node names (backend.c), made at the first one; NULL before */
    struct conf *conf;              /* this worker's reference to the config in force */
    struct tls_ctxs *tls;           /* ... and to its TLS contexts (tls.h) */

    struct evconnlistener **listeners;
    size_t nlisteners;

    struct event *accept_pause;     /* re-enables accepting after an error */
    struct event *wake;             /* reads wake_fd, which worker_post() writes to */
    int wake_fd;                    /* an eventfd: the one way in from other threads (the loop has no lock) */
    atomic_int pending;             /* WORKER_* bits posted and not yet handled */
    int draining;                   /* stops accepting; the loop ends with the last client */

    struct client_list clients;
    size_t nclients;
    size_t nclients_peak;           /* the most at once since memory was last given back */
    struct event *trim;             /* gives it back, once a burst of clients has left */

    struct slotmap *map;            /* the map in force here, NULL before the first */
    struct nodecmd_table *learned;  /* commands the nodes know beyond cmdtab.c (nodecmd.h), or NULL */
    unsigned version;               /* the cluster's Redis version (compat.h): its oldest master's, 0 unknown */
    struct route *route;            /* the slot table and what waits for the cluster (route.h) */
    struct migrate_worker *migrate; /* its imports and connection to a migration's standalone (migrate.h), or NULL */
    struct backend_list backends;   /* one connection per node */
    struct backend_list idle_private; /* clean private connections, answered, for reuse */
    size_t nidle_private;
    struct worker_stats {           /* read by any worker's INFO */
        atomic_uint_fast64_t redirects; /* MOVED and ASK followed */
        atomic_uint_fast64_t moved;     /* of them, MOVED (metrics.h) */
        atomic_uint_fast64_t asks;      /* ... and ASK */
        atomic_uint_fast64_t parked;    /* times a request had to wait (TRYAGAIN, a node down, ...) */
        atomic_uint_fast64_t retries;   /* times a waiting request was sent again */
        atomic_uint_fast64_t expired;   /* requests failed at cluster.failover_wait */
        atomic_int_fast64_t blocked;    /* clients with a blocking command or WAIT out (INFO's blocked_clients) */
    } stats;
    struct worker_metrics metrics;  /* read by /metrics (metrics.h) */
    struct req_list req_pool;       /* recycled request objects */
    size_t req_pooled;
    uint64_t turn_no;               /* the current loop turn's number, counted from 1 (worker_run_turn) */
    uint64_t turn_us;               /* ... and its time (worker_turn_us), 0 until asked */
    unsigned turn_reads;            /* clients read in that turn (worker_busy_turn) */
};

/* Prepares W, worker number ID, with its own event_base and a reference
 * to what is in force in SHARED. Returns 0, or -1 after logging why (call
 * worker_deinit then too). */
int worker_init(struct worker *w, struct shared *shared, int id);

/* Frees what worker_init made and what W holds; its connections are gone. */
void worker_deinit(struct worker *w);

/* Runs one turn of W's loop. Returns 0 once the loop is told to stop (or
 * its poll fails). */
int worker_run_turn(struct worker *w);

/* The time of this loop turn (clock_us, read at its first use in
 * the turn): the start and end of a request's latency. */
uint64_t worker_turn_us(struct worker *w);
static inline uint64_t worker_turn_ms(struct worker *w)
{
    return worker_turn_us(w) / 1000;
}

/* A client's socket was read in this loop turn. *SEEN is the client's
 * own record of the last turn it was counted in (0 at first): a client
 * read twice in one turn (TLS records) counts once. */
void worker_note_read(struct worker *w, uint64_t *seen);

/* Whether this loop turn read more than one client. */
int worker_busy_turn(struct worker *w);

/* Whether a connection's flush event FLUSH, run with WHAT and QUEUED
 * bytes to write, waits for the next loop turn: after a busy turn, the
 * next one (which polls without waiting) usually adds more to the same
 * write, so the peer reads once instead of twice. If so, FLUSH is now a
 * zero timer. Never when FLUSH runs from that timer (WHAT has EV_TIMEOUT):
 * no write waits twice. Only while QUEUED is below WORKER_HOLD_MAX: a
 * large write saves nothing by waiting, and bytes held count against a
 * client's output limit. */
#define WORKER_HOLD_MAX 16384
int worker_hold_flush(struct worker *w, struct event *flush, short what, size_t queued);

/* Called when a client came (it is counted in W->nclients), and when one
 * is gone: a draining worker finishes, and one that had a burst of
 * clients gives the memory they held back (worker.c). */
void worker_client_came(struct worker *w);
void worker_client_gone(struct worker *w);

/* A draining worker with no client left ends its loop. */
void worker_check_drained(struct worker *w);

/* Asks the control thread for a fresh slot map (after MOVED, a lost node). */
void worker_request_refresh(struct worker *w);

#endif
