/*
 * req: one request's life, from the client's frame to the reply owed to it.
 *
 * A request sits on two lists at once: its client's FIFO of owed replies
 * (replies go out strictly in that order), and, while a backend has it in
 * flight, that backend's FIFO. A client that leaves orphans its requests
 * (client = NULL); their replies are read and dropped. Internal requests
 * (AUTH at connect, ASKING before a resend) have no client and no owed slot.
 * Objects are recycled through a small per-worker pool, evbuffers included.
 *
 * A request's end belongs to its owner, whoever created it: its sink says
 * what happens once its reply (or an error) is in. The client's sink
 * delivers it in order; a fan-out part's merges it into its parent; an
 * internal request (no sink) is freed. Code below the owner only calls
 * req_complete() or req_fail(), and never frees a request it was handed.
 */
#ifndef RG_REQ_H
#define RG_REQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "loop/worker.h"

struct client;
struct req;
struct backend;
struct fanout;
struct cross;
struct session_exec;
struct session_split;
struct migrate_fetch;
struct evbuffer;
struct worker;

enum req_kind {
    REQ_CLIENT = 0,  /* a client's request */
    REQ_AUTH,        /* AUTH sent when a backend connection opens */
    REQ_ASKING,      /* ASKING sent before a request redirected by -ASK */
    REQ_PART,        /* one node's share of a client request several nodes answer */
    REQ_DROP,        /* sent for a session whose client was already answered (MULTI, QUEUED) */
    REQ_SETUP,       /* CLIENT SETNAME, READONLY on a new connection: an error is logged, no more */
    REQ_MIGRATE,     /* a migration's own (migrate.h): PTTL, DUMP, SCAN on the standalone, RESTORE on a master */
};

/* What becomes of a request once it is answered, chosen by its creator. */
struct req_sink {
    /* R's reply (or error) is in R->reply: R belongs to the sink again. */
    void (*done)(struct worker *w, struct req *r);
    /* Whether anyone still waits for R's reply: one nobody waits for is
     * neither sent again nor answered, only freed. */
    int (*wanted)(const struct req *r);
    /* R, a write, goes to node B (WAIT asks the nodes a session wrote to).
     * NULL: nobody asks. */
    void (*wrote)(struct req *r, struct backend *b);
    /* R's reply is the LEN bytes at the front of IN (first byte TYPE):
     * take them and complete R, maybe with no copy into R->reply (a
     * client's reply that is next in line goes straight to its socket's
     * buffer). NULL: they move into R->reply, then done. */
    void (*take)(struct worker *w, struct req *r, struct evbuffer *in, size_t len, char type);
    /* R's frame is its owner's to write when R->buf is empty: appends it to
     * OUT, at every send (a split's part is made from its parent's frame,
     * so it holds no buffer of its own). Returns 0, or -1 if out of memory.
     * NULL: R->buf holds the frame. */
    int (*frame)(const struct req *r, struct evbuffer *out);
};

struct req {
    TAILQ_ENTRY(req) owed;      /* in the client's FIFO */
    TAILQ_ENTRY(req) inflight;  /* in a backend's FIFO, or the worker's parked list */
    const struct req_sink *sink; /* NULL: an internal request, freed when done */
    struct client *client;      /* NULL once orphaned, or for internal requests */
    struct backend *backend;    /* where it is in flight, or NULL */
    struct evbuffer *buf;       /* the request frame, kept for a resend (or see req_sink.frame) */
    struct evbuffer *reply;     /* the reply, once done */
    struct req *parent;         /* REQ_PART: the client request it is part of */
    union {                     /* the state of the module that answers a client request in parts */
        struct fanout *fan;     /* several nodes answer it (fanout.h) */
        struct cross *cross;    /* its keys lie in several slots: answered by steps (cross.h) */
        struct session_exec *exec; /* EXEC of a transaction over several slots (session.h) */
        struct session_split *split; /* a split command queued in such a transaction (session.h) */
    };
    struct migrate_fetch *fetch; /* the import it waits for, or that sent it (migrate.h) */
    uint16_t part;              /* REQ_PART: its index among its parent's parts */
    uint32_t expect;            /* on a push-mode backend: confirmations still due */
    uint8_t until;              /* ... or: until that count is zero (enum in pubsub.c) */
    uint16_t slot;
    uint8_t kind;
    uint8_t redirects;
    uint64_t deadline_ms;       /* once it waited: when it stops waiting (ms, worker_turn_us's clock) */
    uint64_t start_us;          /* a client's: the loop turn its frame was read in (worker_turn_us) */
    uint8_t family;             /* a client's: enum metrics_family, 0 when not counted */
    uint8_t miss;               /* a read during a migration: what its reply says when a key is missing (migrate.c) */
    unsigned done : 1;
    unsigned silent : 1;        /* CLIENT REPLY OFF/SKIP: the reply is dropped */
    unsigned parked : 1;        /* waiting on the worker's retry timer */
    unsigned bounced : 1;       /* parked, the last time, after the nodes redirected it to each other */
    unsigned write : 1;         /* the command writes (WAIT asks where writes went) */
    unsigned pinned : 1;        /* sent on its session's private backend: never redirected or retried */
    unsigned counted : 1;       /* in its client's nshared or npinned */
    unsigned readonly : 1;      /* the command only reads: safe to send again, may go to a replica */
    unsigned master_only : 1;   /* a replica refused it (MASTERDOWN, LOADING): the master's then */
    unsigned timed_out : 1;     /* timed out once already: a read is not sent a third time */
    unsigned blocking : 1;      /* its client counts as blocked until it completes (INFO's blocked_clients) */
    unsigned resp3 : 1;         /* answered in RESP3: sent on a node connection that speaks it */
    unsigned shard_sub : 1;     /* SSUBSCRIBE/SUNSUBSCRIBE: its confirmations are sunsubscribe/ssubscribe frames */
};

/* A request of KIND from W's pool, with empty buffers, answered through
 * SINK (NULL for an internal request); NULL if out of memory. */
struct req *req_new(struct worker *w, enum req_kind kind, const struct req_sink *sink);
/* Back to W's pool (or freed past the pool's size). */
void req_free(struct worker *w, struct req *r);
/* R's reply is in R->reply: hands R to its sink (or frees it). */
void req_complete(struct worker *w, struct req *r);
/* R's reply is the LEN bytes at the front of IN, first byte TYPE, as a
 * node sent it: consumes them and completes R (see struct req_sink). */
void req_complete_from(struct worker *w, struct req *r, struct evbuffer *in, size_t len, char type);
/* Replaces R's reply with the error "CODE text" of FMT and completes R. */
void req_fail(struct worker *w, struct req *r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Whether R's reply is still wanted (see struct req_sink); internal
 * requests always are. */
int req_wanted(const struct req *r);
/* R, a write, is sent to B: tells its owner (struct req_sink). */
static inline void req_wrote(struct req *r, struct backend *b)
{
    if (r->sink && r->sink->wrote)
        r->sink->wrote(r, b);
}
/* Whether R is a request someone outside the connection owns (a client's,
 * a part): one a lost connection may send again or must answer. */
static inline int req_owned(const struct req *r)
{
    return r->sink != 0;
}
/* The error text for a command cut off by a lost connection. */
#define REQ_MAY_HAVE_RUN "the command may or may not have run"
/* Redis Cluster's own answers, in its words. */
#define REQ_CROSSSLOT "CROSSSLOT Keys in request don't hash to the same slot"
#define REQ_SLOT_NOT_SERVED "CLUSTERDOWN Hash slot not served"
/* What is left at worker exit completes with. */
#define REQ_SHUTTING_DOWN "ERR respgate: shutting down"
/* The error a request nobody waits for completes with. */
#define REQ_CLIENT_LEFT "ERR respgate: the client left"
/* The reply when memory runs out. */
#define REQ_OUT_OF_MEMORY "ERR respgate: out of memory"

/* Frees all but KEEP of the requests in W's pool: 0 at worker exit. */
void req_pool_shrink(struct worker *w, size_t keep);

#endif
