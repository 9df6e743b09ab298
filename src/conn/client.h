/*
 * client: one client connection's object: the session's state
 * (authentication, name, whether it is closing), the FIFO of replies it is
 * owed and their delivery in order with back-pressure on its output, and
 * its private connections. Its socket is read by the front that accepted
 * it (front.h), through the ops it was given: the client never names the
 * layers above it.
 */
#ifndef RG_CLIENT_H
#define RG_CLIENT_H

#include "conn/backend.h"
#include "loop/req.h"
#include "base/resp.h"
#include "loop/worker.h"
#include "model/shared.h"

#include <event2/util.h>
#include <stdint.h>
#include <time.h>
#include <sys/queue.h>

/* How long a connection on a proxy-protocol listener may take to send its
 * PROXY header. */
#define CLIENT_PROXY_HEADER_MS 5000

struct worker;
struct ssl_ctx_st;
struct backend;
struct session_spread;
struct subscriber;
struct tracker;
struct bufferevent;
struct evbuffer;
struct event;

#define CLIENT_PAUSE_OUTPUT (256 * 1024) /* output unread past which the front reads no more */
#define CLIENT_MAX_OWED 1024             /* requests in flight per client before it is read no more */

struct client;

/* What the front that accepted a client does for it. */
struct client_ops {
    void (*read)(struct client *c, short what);   /* the socket is readable, or WHAT has EV_TIMEOUT */
    void (*resume)(struct client *c);             /* the resume event: deferred input, a held request, the end */
    void (*input)(struct client *c);              /* the output drained: reading goes on */
    void (*closing)(struct client *c);            /* C is being freed: what the layers above hold for it goes */
    int (*subscribed)(const struct client *c);    /* C listens to channels: pubsub's output limits apply */
};

/* Masters a session's writes went to, remembered for WAIT; past this many,
 * WAIT asks every master. */
#define CLIENT_WROTE_MAX 8

/* Who a client is (client_set_authed, client_acl, client_hold_auth). */
struct client_auth {
    char user[64];            /* the ACL user it authenticated as (users:), "" for the default user */
    const struct acl_user *acl; /* USER in the config of serial ACL_SERIAL, as client_acl found it */
    uint64_t acl_serial;      /* 0: look it up again */
    struct event *timer;      /* closes C at client.auth_timeout unless it authenticates; or NULL */
    struct event *wait;       /* ends the wait of a held AUTH (client_hold_auth); or NULL */
    unsigned ok : 1;          /* AUTH succeeded (see client_authed) */
    unsigned waited : 1;      /* the held AUTH has waited its turn: check it now */
};

/* A client's transaction: MULTI, WATCH and the private connection they
 * pin (session.h owns it). */
struct client_txn {
    struct backend *pin;      /* the private backend of a transaction or WATCH, or NULL */
    int pin_slot;             /* the slot that session is for, -1 before its first key */
    struct session_spread *spread; /* per-slot: the other slots' pins (session.c), or NULL */
    uint32_t count;           /* MULTI: commands sent to the pin so far */
    struct req_list queued;   /* MULTI: commands answered QUEUED before the first key chose a node */
    size_t nqueued;
    unsigned multi : 1;       /* inside MULTI */
    unsigned failed : 1;      /* a command was refused inside MULTI: EXEC aborts */
    unsigned watching : 1;    /* WATCH is in force on the pin */
    unsigned watch_lost : 1;  /* the pin went away while watching: EXEC answers nil */
};

/* The masters a client wrote to since its last WAIT (client_note_write). */
struct client_wrote {
    struct backend *masters[CLIENT_WROTE_MAX];
    uint8_t n;
    unsigned many : 1;        /* more than CLIENT_WROTE_MAX of them */
};

enum client_reply_mode { CLIENT_REPLY_ON = 0, CLIENT_REPLY_OFF, CLIENT_REPLY_SKIP };

/* Where a client is in its life. client_set_state alone changes it and
 * does what the change requires. It only moves on, toward DEAD, except
 * that PAUSED and THROTTLED return to READING. */
enum client_state {
    CLIENT_READING = 0, /* its requests are read as they come (none after its EOF: eof) */
    CLIENT_PAUSED,      /* not read until its unread output drains (CLIENT_PAUSE_OUTPUT) */
    CLIENT_THROTTLED,   /* not read until fewer of its requests are in flight (CLIENT_MAX_OWED) */
    CLIENT_CLOSING,     /* takes nothing more; closes once its output is written */
    CLIENT_LINGERING,   /* closing, all written, our side half-closed: waits for its EOF */
    CLIENT_DEAD,        /* freed at its next resume */
};

struct client {
    TAILQ_ENTRY(client) link;
    struct worker *w;
    const struct client_ops *ops; /* its front's */
    struct bufferevent *bev;
    struct event *resume;    /* runs deferred work: more input, closing, freeing */
    struct event *flush;     /* writes what this loop turn (or two: on_flush) queued, in one go (netio.h) */
    uint64_t read_turn;      /* the last loop turn it was read in (worker_note_read) */
    struct event *rev;       /* the socket's read event (netio_read; the bufferevent only writes) */
    struct netio_tls *tls;   /* on a listener marked tls: the session (netio.h); NULL plain */
    enum client_state state;
    struct req_list owed;    /* requests whose replies are owed, in order */
    size_t nowed;
    size_t held;             /* bytes of replies done but waiting behind an earlier request */
    struct resp_req scan;
    uint64_t id;
    char addr[64];
    char *name;              /* CLIENT SETNAME, or NULL */
    uint64_t created_us;     /* when it connected (clock_us) */
    uint64_t linger_until_us; /* while lingering: free the client after this (clock_us) */
    uint64_t soft_since_us;  /* a subscriber over the soft output limit since then (clock_us), or 0 */
    int reply_mode;          /* enum client_reply_mode */
    uint8_t proto;           /* RESP version, 2 or 3 (HELLO); what its replies are in */
    struct backend_list privates; /* private backend connections (session.h) */
    uint8_t nprivate;
    struct client_auth auth;
    struct client_txn txn;
    struct client_wrote wrote;
    struct subscriber *sub;  /* Pub/Sub state (pubsub.h), or NULL */
    struct tracker *track;   /* CLIENT TRACKING state (tracking.h), or NULL */
    struct req *hold;        /* a request waiting for those before it (dispatch_request), or NULL */
    uint32_t nshared;        /* requests awaiting a reply on shared connections */
    uint32_t npinned;        /* requests awaiting a reply on private connections */
    uint32_t nblocking;      /* blocking commands (and WAITs) sent and not yet answered */
    unsigned eof : 1;        /* the client half-closed: its whole frames are answered, then it closes */
    unsigned proxy_header : 1; /* expects a PROXY protocol header before its first request */
};

/* Moves C to state S, and does what that requires: stops or starts
 * reading, arms the close or the linger, wakes C's resume to free it. A
 * move back from CLOSING or beyond is ignored. */
void client_set_state(struct client *c, enum client_state s);

/* Whether C is closing or gone: it takes no more requests. */
static inline int client_closing(const struct client *c)
{
    return c->state >= CLIENT_CLOSING;
}

/* Whether C may run commands: it authenticated, or no client password is
 * set (now: a reload may have removed it). */
int client_authed(const struct client *c);

/* C authenticated as USER (users:, or "default"): it is no longer closed
 * at client.auth_timeout. */
void client_set_authed(struct client *c, const char *user, size_t len);

/* The ACL user C's commands are checked against, or NULL when none is
 * (users: is empty, or C is the default user and users: does not name it).
 * *GONE is set when C's user is no longer in the configuration. */
struct acl_user;
const struct acl_user *client_acl(struct client *c, int *gone);

/* Holds C's AUTH (or HELLO AUTH) R for MS milliseconds, reading nothing
 * more from C meanwhile, then dispatches it again with C->auth.waited set.
 * Returns 0, or -1 if out of memory (R is not held). */
int client_hold_auth(struct client *c, struct req *r, uint64_t ms);

/* Whether this worker has its first slot map for client C's request R. */
enum client_map {
    CLIENT_MAP_READY = 0, /* it has */
    CLIENT_MAP_HELD,      /* not yet: R is C's held request (C->hold) until it comes (thread.c) */
    CLIENT_MAP_DOWN,      /* never will: every seed failed; the caller answers CLUSTERDOWN */
};
static inline enum client_map client_wait_for_map(struct client *c, struct req *r)
{
    if (c->w->map) /* every request asks: the common case costs one load */
        return CLIENT_MAP_READY;
    if (atomic_load(&c->w->shared->seeds_failed))
        return CLIENT_MAP_DOWN;
    c->hold = r;
    return CLIENT_MAP_HELD;
}

/* C's held request (C->hold), which an import held (migrate.h), may go:
 * it is dispatched again on C's next turn. */
void client_release_hold(struct client *c);

/* Writes SA as "ip:port", "[ip6]:port", or "unix" into BUF. */
struct sockaddr;
void client_format_addr(const struct sockaddr *sa, char *buf, size_t len);

/* Wraps accepted socket FD (peer SA) in a new client of W, read through
 * OPS: one that expects a PROXY header first if PROXY_HEADER, a TLS
 * session with TLS if not NULL. Returns it, counted among W's clients, or
 * NULL if out of memory (FD is closed). */
struct client *client_new(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa, int proxy_header,
                          struct ssl_ctx_st *tls, const struct client_ops *ops);

/* Starts or stops reading C's socket; reading runs under the idle timeout,
 * or, while lingering, the linger timeout. */
void client_reading(struct client *c, int on);

/* Marks C closing: nothing more is read, and it goes once its output is
 * written. Never frees C, so it is safe on the request path (QUIT). */
void client_close_soon(struct client *c);
/* Like client_close_soon, and frees C at once if nothing is owed. */
void client_shutdown(struct client *c);

/* Once a closing client has been sent everything it was owed, half-closes
 * our side and discards whatever it still sends until its EOF (or
 * CLIENT_LINGER_SEC): closing a socket with unread input makes the kernel
 * answer with a reset, and a reset can destroy the last replies (an error
 * saying why, +OK to QUIT) before the client reads them. May free C. */
void client_finish_closing(struct client *c);

void client_free(struct client *c);

/* Remembers that C sent a write to master B (for WAIT). */
void client_note_write(struct client *c, struct backend *b);

/* Moves the replies now at the head of C's FIFO to its output. Never frees
 * C: what follows (closing, more input) runs from its resume event. */
void client_deliver(struct client *c);

/* A private backend of KIND to HOST:PORT for C, in C's protocol
 * (backend_open_private with OPS), listed among C's privates; NULL if out
 * of memory. */
struct backend *client_open_private(struct client *c, const struct backend_ops *ops, const char *host, int port,
                                    enum backend_kind kind);

/* A reply of its own for C that no request asked for (a Pub/Sub message,
 * an invalidation): a new request in C's FIFO before BEFORE, or at its
 * tail but before a request held back (which has not run yet). The caller
 * fills its reply and completes it. NULL if C is going or out of memory. */
struct req *client_push_new(struct client *c, struct req *before);

/* B is no longer one of C's privates: from its ops' gone. */
void client_forget_private(struct client *c, struct backend *b);

/* The sink of a client's own requests (REQ_CLIENT): a reply goes out in
 * its FIFO's order; an orphaned request is freed. */
extern const struct req_sink client_sink;

/* Counts client request R as awaiting a node's reply (in its client's
 * nshared, or npinned when R->pinned), once; its completion uncounts it.
 * A no-op for any other request. */
void client_awaits(struct req *r);

/* Client request R blocks on a node (a blocking command, WAIT): its client
 * counts in INFO's blocked_clients until R completes or the client leaves. */
void client_note_blocking(struct worker *w, struct req *r);

#endif
