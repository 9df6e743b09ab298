/*
 * router: the policy that turns a client's request into a reply: answer it
 * here, refuse it, or send it to the node that owns its keys' slot; and, for
 * each reply, follow MOVED and ASK (bounded), or hand it to the client.
 */
#ifndef RG_ROUTER_H
#define RG_ROUTER_H

#include <event2/util.h>
#include <stddef.h>
#include <stdint.h>

struct backend;
struct client;
struct evbuffer;
struct req;
struct resp_req;
struct worker;

/* Redirections one request may follow before it fails. */
#define ROUTER_MAX_REDIRECTS 5
/* Requests that wait (TRYAGAIN, LOADING, CLUSTERDOWN, a master that does
 * not answer) are tried again ROUTER_RETRY_MS apart until the failover wait
 * ends; at most ROUTER_MAX_PARKED wait per worker. */
#define ROUTER_RETRY_MS 100
#define ROUTER_MAX_PARKED 65536

/* Handles request R of client C, whose frame is in R->buf with arguments
 * SCAN. R is in C's FIFO; it is answered now or when its reply arrives; or
 * it must wait for the requests before it: then it is C->hold, and C reads
 * nothing more until it is dispatched again. */
void router_dispatch(struct client *c, struct req *r, const struct resp_req *scan);

/* The slot of R's keys under CMD (arguments Q): >= 0; -1 for no keys; -2
 * for keys in several slots; -3 if out of memory. */
struct cmd_spec;
int router_keys_slot(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q);

/* A slot whose master serves a request without keys (they are spread over
 * the masters), or -1 if no slot is served. */
int router_any_slot(struct worker *w);

/* One master as seen from a worker's slot table. */
struct router_master {
    struct backend *b;
    uint16_t first; /* the lowest slot it serves */
};

/* The masters serving slots in W's table, in the order of their first slot,
 * into *OUT (malloc'ed, the caller frees). Returns how many, or -1 if out
 * of memory. */
long router_masters(struct worker *w, struct router_master **out);

/* A node said SLOT is served by TO now (MOVED): W sends there from now on
 * and asks for a fresh map. */
void router_note_moved(struct worker *w, unsigned slot, struct backend *to);

/* Sends R to the master serving SLOT in W's table; parks it while that
 * node's connection backs off, or fails it. R is answered either way. */
void router_send(struct worker *w, struct req *r, int slot);

/* W's shared connection to HOST:PORT (backend_get with the router's ops:
 * replies follow MOVED and ASK, waits and retries are the router's).
 * NULL if out of memory. */
struct backend *router_backend(struct worker *w, const char *host, int port);

/* If the reply of LEN bytes at the front of IN, from FROM, is a MOVED or
 * an ASK: takes it off IN into *RD, applies a MOVED to W's slot table
 * (and asks for a fresh map), and sets *TO to the node it names (NULL if
 * out of memory). Returns 1 then, else 0 (IN untouched). Every kind of
 * connection reads its redirections through this one place. */
struct resp_redirect;
int router_take_redirect(struct backend *from, struct evbuffer *in, size_t len, struct resp_redirect *rd,
                         struct backend **to);

/* The worker's retry timer: sends the parked requests again. */
void router_on_retry(evutil_socket_t fd, short what, void *arg);

#endif
