/*
 * route: where a worker's requests go, below dispatch and the modules it
 * hands requests to, above backend. Owns the worker's slot table (each
 * slot's master and, for reads under cluster.read_policy, a replica), the
 * ops of the shared connections to the nodes (replies follow MOVED and
 * ASK; TRYAGAIN, LOADING, CLUSTERDOWN, READONLY and MASTERDOWN wait; a lost
 * connection's reads and unsent requests go again), and the requests that
 * wait for the cluster (parked, sent again on a timer until
 * cluster.failover_wait). MOVED and ASK are read in one place for every
 * kind of connection (route_take_redirect).
 */
#ifndef RG_ROUTE_H
#define RG_ROUTE_H

#include <stddef.h>
#include <stdint.h>

struct backend;
struct cmd_spec;
struct evbuffer;
struct req;
struct resp_redirect;
struct resp_req;
struct slotmap;
struct worker;

/* Redirections one request may follow in a row before it waits. */
#define ROUTE_MAX_REDIRECTS 5
/* Requests that wait (TRYAGAIN, LOADING, CLUSTERDOWN, a master that does
 * not answer) are tried again ROUTE_RETRY_MS apart until the failover wait
 * ends; at most ROUTE_MAX_PARKED wait per worker. */
#define ROUTE_RETRY_MS 100
/* Requests that fail at the end of the wait are logged in one line per
 * ROUTE_EXPIRED_LOG_MS per worker at most; those held back are counted in
 * a summary when that time is up. */
#define ROUTE_EXPIRED_LOG_MS 10000
#define ROUTE_MAX_PARKED 65536
/* Keys looked up without an allocation. */
#define ROUTE_KEYS_ON_STACK 64

/* W's routing state, made on W's event base. Returns 0, or -1 if out of memory. */
int route_init(struct worker *w);
/* Fails what waits, at worker exit (before the backends go), and what is
 * sent from then on. */
void route_stop(struct worker *w);
/* Frees W's routing state; a no-op if there is none. */
void route_free(struct worker *w);

/* A read marked by a migration (R->miss) whose reply of LEN bytes at the
 * front of IN (first byte TYPE) came from the cluster: returns 1 if the
 * hook took it (R goes again once its keys are imported), 0 if R
 * completes with it as usual (IN untouched). migrate.h registers
 * migrate_missed as W's hook when it marks a read. */
typedef int route_missed_fn(struct worker *w, struct req *r, struct evbuffer *in, size_t len, char type);
void route_set_missed(struct worker *w, route_missed_fn *fn);

/* Takes map M: each slot's master (and replica for reads) becomes W's
 * shared connection to that node; existing connections are kept. What
 * waited goes again now. Returns 0, or -1 if out of memory (the old table
 * stays). */
int route_apply_map(struct worker *w, const struct slotmap *m);

/* Works out W->version again, the cluster's Redis version (compat.h): the
 * oldest its masters' shared connections learned, or before any did, the
 * topology's node's. Called when a connection learned its node's version,
 * and when the masters changed. */
void route_note_version(struct worker *w);

/* The master serving SLOT in W's table, or NULL. */
struct backend *route_owner(struct worker *w, int slot);

/* A slot whose master serves a request without keys (they are spread over
 * the masters), or -1 if no slot is served. */
int route_any_slot(struct worker *w);

/* One master as seen from a worker's slot table. */
struct route_master {
    struct backend *b;
    uint16_t first; /* the lowest slot it serves */
};

/* The masters serving slots in W's table, in the order of their first slot,
 * into *OUT (malloc'ed, the caller frees). Returns how many, or -1 if out
 * of memory. */
long route_masters(struct worker *w, struct route_master **out);

/* A node said SLOT is served by TO now (MOVED): W sends there from now on
 * and asks for a fresh map. */
void route_note_moved(struct worker *w, unsigned slot, struct backend *to);

/* What the key functions below return instead of a count or a slot (a
 * slot is 0 or more), the same for all three. */
enum route_keys {
    ROUTE_KEYS_NONE = -1,  /* no keys, or a request malformed for its key specs (its node will say so) */
    ROUTE_KEYS_CROSS = -2, /* keys in more than one slot */
    ROUTE_KEYS_NOMEM = -3, /* out of memory */
};

/* The argument indexes of the keys of request FRAME under CMD (arguments
 * Q): in STACK (ROUTE_KEYS_ON_STACK long) or in a malloc'ed array, at
 * *KEYS. Returns how many, ROUTE_KEYS_NONE for a request malformed for
 * its key specs, or ROUTE_KEYS_NOMEM. */
int route_find_keys(struct evbuffer *frame, const struct cmd_spec *cmd, const struct resp_req *q, size_t *stack,
                    size_t **keys);

/* The slot of the first of R's N keys, if all N share it; else
 * ROUTE_KEYS_CROSS. */
int route_common_slot(struct req *r, const struct resp_req *q, const size_t *keys, int n);

/* The slot of R's keys under CMD (arguments Q), or ROUTE_KEYS_NONE,
 * ROUTE_KEYS_CROSS or ROUTE_KEYS_NOMEM. */
int route_keys_slot(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q);

/* Sends R to the master serving SLOT in W's table (or, a read, to its
 * replica); parks it while that node's connection backs off, or fails it.
 * R is answered either way. */
void route_send(struct worker *w, struct req *r, int slot);

/* W's shared connection to HOST:PORT, with route's ops. NULL if out of memory. */
struct backend *route_backend(struct worker *w, const char *host, int port);

/* If the reply of LEN bytes at the front of IN, from FROM, is a MOVED or
 * an ASK: takes it off IN into *RD, applies a MOVED to W's slot table
 * (and asks for a fresh map), and sets *TO to the node it names (NULL if
 * out of memory). Returns 1 then, else 0 (IN untouched). */
int route_take_redirect(struct backend *from, struct evbuffer *in, size_t len, struct resp_redirect *rd,
                        struct backend **to);

#endif
