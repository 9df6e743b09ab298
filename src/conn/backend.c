/*
 * backend: connections to cluster nodes, see backend.h.
 */
#include "conn/backend.h"

#include "base/compat.h"
#include "model/conf.h"
#include "base/log.h"
#include "loop/metrics.h"
#include "base/netio.h"
#include "loop/req.h"
#include "model/shared.h"
#include "model/tls.h"
#include "model/slotmap.h"
#include "loop/worker.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define BACKEND_READ_MAX 16384
#define BACKEND_COPY_MAX 1024 /* request frames up to this size are copied, not referenced */
#define READONLY_FRAME "*1\r\n$8\r\nREADONLY\r\n"
#define STALL_MAX 4 /* stalled connections per backend; past them a reply timeout fails what is in flight */

static void on_sock_read(evutil_socket_t fd, short what, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);
static void on_flush(evutil_socket_t fd, short what, void *arg);
static void on_written(struct bufferevent *bev, void *arg);
static void backend_reset(struct backend *b, const char *why);

/* The node did not answer B's new connection: what stalled on it before
 * will not be answered either, and fails (or, reads, goes again) as WHY. */
static void fail_stalled(struct backend *b, const char *why)
{
    struct backend *s;
    while ((s = TAILQ_FIRST(&b->stalled))) {
        TAILQ_REMOVE(&b->stalled, s, link);
        b->nstalled--;
        s->origin = NULL;
        backend_reset(s, why);
    }
}

/* Counts B where it stands now in /metrics: called where its connection
 * changes (connect, ready, stall, reset), never per request. */
static void gauge_sync(struct backend *b)
{
    if (b->gauge == NULL)
        return;
    int kind = backend_pushes(b) ? MC_PUBSUB : backend_private(b) ? MC_SESSION : MC_SHARED;
    int state = b->stalled_conn ? MS_STALLED
              : b->ready        ? MS_READY
              : b->bev || b->dns ? MS_CONNECTING
                                 : MS_CLOSED;
    int at = kind * MS_STATES + state;
    if (at != b->gauge_at) {
        metrics_node_move(b->gauge, b->gauge_at, at);
        b->gauge_at = (signed char)at;
    }
}

/* Frees B, which holds nothing any more, and uncounts it. */
static void backend_destroy(struct backend *b)
{
    if (b->gauge) {
        metrics_node_move(b->gauge, b->gauge_at, -1);
        metrics_node_unref(&b->w->metrics, b->gauge);
    }
    event_free(b->flush);
    free(b);
}

static struct backend *backend_new(struct worker *w, const char *host, int port)
{
    struct backend *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->w = w;
    b->flush = event_new(w->base, -1, 0, on_flush, b);
    if (b->flush == NULL) {
        free(b);
        return NULL;
    }
    snprintf(b->host, sizeof(b->host), "%s", host);
    b->port = port;
    b->proto = 2;
    TAILQ_INIT(&b->inflight);
    TAILQ_INIT(&b->waiting);
    TAILQ_INIT(&b->stalled);
    b->gauge = metrics_node_ref(&w->metrics, host, port);
    b->gauge_at = -1;
    return b;
}

struct backend *backend_find(struct worker *w, const char *host, int port)
{
    struct backend *b;
    TAILQ_FOREACH(b, &w->backends, link)
        if (b->port == port && b->proto == 2 && strcmp(b->host, host) == 0)
            return b;
    return NULL;
}

struct backend *backend_get(struct worker *w, const struct backend_ops *ops, const char *host, int port)
{
    struct backend *b = backend_find(w, host, port);
    if (b)
        return b;
    if ((b = backend_new(w, host, port))) {
        b->ops = ops;
        TAILQ_INSERT_TAIL(&w->backends, b, link);
        gauge_sync(b);
    }
    return b;
}

/* Shared B's RESP3 twin, made (unconnected) if new; NULL if out of memory.
 * It reports to the same ops and follows B's READONLY. */
static struct backend *resp3_twin(struct backend *b)
{
    if (b->resp3)
        return b->resp3;
    struct backend *t = backend_new(b->w, b->host, b->port);
    if (t == NULL)
        return NULL;
    t->ops = b->ops;
    t->proto = 3;
    t->readonly = b->readonly;
    TAILQ_INSERT_TAIL(&b->w->backends, t, link);
    gauge_sync(t);
    return b->resp3 = t;
}

/* A private backend's end comes at the next loop turn, never under the
 * feet of whoever is using it now. */
static int retiring(const struct backend *b)
{
    if (b->stalled_conn)
        return b->ninflight == 0 || b->bev == NULL;
    return backend_private(b) && (b->broken || (b->released && b->ninflight == 0 && b->nwaiting == 0 && b->dns == NULL));
}

/* How long B may stay silent with replies owed. */
static uint64_t reply_timeout_ms(const struct backend *b)
{
    const struct conf *cf = b->w->conf;
    /* A new connection that asks whether a stalled node is alive waits
     * for longer than the node may answer nobody while a script runs. */
    if (b->nstalled && !b->ready)
        return shared_busy_threshold_ms(b->w->shared) + cf->backend_timeout_ms;
    return cf->backend_timeout_ms;
}

/* Arms B's reply timeout (or disarms it). It stays armed while requests
 * come and go: a persistent read event's timeout restarts at every read,
 * and a fire that finds the connection younger than the timeout (the
 * first request of a busy spell went out after the last read) arms it
 * for the rest (on_reply_timeout). No timer work per request. */
static void set_timeouts(struct backend *b)
{
    struct timeval tv = conf_timeval(reply_timeout_ms(b));
    /* A reply is awaited only while something is in flight; an idle
     * connection may stay quiet forever, and so may a blocking command. */
    b->timer_armed = b->ninflight && !backend_waits_forever(b);
    event_add(b->rev, b->timer_armed ? &tv : NULL);
    netio_set_write_timeout(b->bev, b->tls, &tv);
}

static void push(struct backend *b, struct req *r)
{
    TAILQ_INSERT_TAIL(&b->inflight, r, inflight);
    r->backend = b;
    if (b->ninflight++ == 0) {
        b->busy_since_ms = worker_turn_ms(b->w);
        if (b->rev && !b->timer_armed)
            set_timeouts(b);
    }
}

static struct req *pop(struct backend *b)
{
    struct req *r = TAILQ_FIRST(&b->inflight);
    if (r) {
        TAILQ_REMOVE(&b->inflight, r, inflight);
        r->backend = NULL;
        b->ninflight--; /* the timeout stays armed: see set_timeouts */
        if (retiring(b))
            event_active(b->flush, EV_READ, 0);
    }
    return r;
}

/* The next request B holds, in flight or waiting, taken off; at teardown. */
static struct req *pop_any(struct backend *b)
{
    struct req *r = pop(b);
    if (r == NULL && (r = TAILQ_FIRST(&b->waiting))) {
        TAILQ_REMOVE(&b->waiting, r, inflight);
        b->nwaiting--;
        r->backend = NULL;
    }
    return r;
}

static void forget_dns(struct backend *b);

/* Closes B's socket (or drops its name lookup), leaving its requests where they are. */
static void close_connection(struct backend *b)
{
    forget_dns(b);
    if (b->rev)
        event_free(b->rev);
    netio_tls_free(b->tls);
    if (b->bev)
        bufferevent_free(b->bev);
    b->rev = NULL;
    b->tls = NULL;
    b->bev = NULL;
}

/* Closes B's connection and fails everything in flight with WHY. A
 * NODE_FAULT (the node failed, or broke the protocol) also makes the next
 * connection back off, fails what stalled, and asks for a new map; without
 * it (a reply respgate will not read) the node is taken for well. */
static void backend_reset_as(struct backend *b, const char *why, int node_fault)
{
    struct req *r;
    /* Nothing reached a node that was never connected to: those requests
     * can safely be sent again. Otherwise any of them may have run. */
    int sent = b->connected, was_ready = b->ready;
    size_t inflight = 0, reads = 0, waiting = 0;
    TAILQ_FOREACH(r, &b->inflight, inflight) {
        inflight += req_owned(r) && !r->readonly;
        reads += req_owned(r) && r->readonly; /* they go again */
    }
    TAILQ_FOREACH(r, &b->waiting, inflight)
        waiting += req_owned(r);
    size_t n = inflight + reads + waiting;
    close_connection(b);
    b->connected = 0;
    b->ready = 0;
    gauge_sync(b);
    while ((r = TAILQ_FIRST(&b->waiting))) {
        /* Never written: safe to send again, wherever the slot goes. */
        TAILQ_REMOVE(&b->waiting, r, inflight);
        b->nwaiting--;
        r->backend = NULL;
        b->ops->lost(b, r, 0, why);
    }
    memset(&b->scan, 0, sizeof(b->scan));
    if (inflight)
        log_warning("backend %s:%d: %s; %s %zu request%s in flight%s", b->host, b->port, why,
                    sent || backend_private(b) ? "failing" : "will send again", inflight, inflight == 1 ? "" : "s",
                    waiting ? ", others wait" : "");
    else if (waiting + reads)
        log_warning("backend %s:%d: %s; %zu request%s wait for it or for a new master", b->host, b->port, why,
                    waiting + reads, waiting + reads == 1 ? "" : "s");
    else
        log_notice("backend %s:%d: %s", b->host, b->port, why);
    b->broken = backend_private(b);
    while ((r = pop(b)))
        b->ops->lost(b, r, sent, why);
    if (backend_private(b) || b->stalled_conn) {
        event_active(b->flush, EV_READ, 0); /* retiring */
        if (b->stalled_conn && b->ops->node_down)
            b->ops->node_down(b);
        return;
    }
    /* An idle connection the node closed (its timeout, a restart, CLIENT
     * KILL) says nothing about the node: reconnect at once when needed. */
    if (!node_fault || (sent && was_ready && n == 0)) {
        b->backoff_ms = 0;
        b->retry_after_ms = 0;
        return;
    }
    fail_stalled(b, why);
    /* Back off before the next connection attempt, and look for a new map. */
    b->backoff_ms = b->backoff_ms ? (b->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->backoff_ms * 2)
                                  : BACKOFF_MIN_MS;
    b->retry_after_ms = worker_turn_ms(b->w) + b->backoff_ms;
    if (b->ops->node_down)
        b->ops->node_down(b);
}

static void backend_reset(struct backend *b, const char *why)
{
    backend_reset_as(b, why, 1);
}

/* Sends FRAME (LEN bytes) early on B's new connection, as KIND: REQ_AUTH
 * (its answer makes the connection ready, or fails it) or REQ_SETUP. */
static int add_handshake(struct backend *b, enum req_kind kind, const char *frame, size_t len)
{
    struct req *r = req_new(b->w, kind, NULL);
    if (r == NULL)
        return -1;
    evbuffer_add(r->buf, frame, len);
    bufferevent_write_buffer(b->bev, r->buf);
    push(b, r);
    return 0;
}

void backend_set_readonly(struct backend *b)
{
    if (b->resp3)
        backend_set_readonly(b->resp3);
    if (b->readonly)
        return;
    b->readonly = 1;
    if (b->bev == NULL)
        return; /* the next connection sends it */
    struct req *r = req_new(b->w, REQ_SETUP, NULL);
    if (r == NULL)
        return;
    evbuffer_add(r->buf, READONLY_FRAME, sizeof(READONLY_FRAME) - 1);
    if (backend_send(b, r) < 0)
        req_free(b->w, r);
}

int backend_usable(struct backend *b)
{
    return worker_turn_ms(b->w) >= b->retry_after_ms;
}

/* The first request on a new connection: HELLO 2 (or 3), with AUTH when the
 * cluster has a password, and SETNAME for a name an operator finds in
 * CLIENT LIST. Its answer makes the connection ready (or fails it) and
 * names the node's version; HELLO is also answered while the node loads
 * its data or runs a long script (compat.h: Redis 6.0 and later). A
 * replica that serves reads gets READONLY next. */
static int add_hello(struct backend *b)
{
    const struct conf *cf = b->w->conf;
    struct req *r = req_new(b->w, REQ_AUTH, NULL);
    if (r == NULL)
        return -1;
    int source = b->kind == BACKEND_SOURCE;
    const char *user = source ? cf->migration_username : cf->cluster_username;
    const char *password = source ? cf->migration_password : cf->cluster_password;
    user = user ? user : "default";
    if (password)
        evbuffer_add_printf(r->buf, "*7\r\n$5\r\nHELLO\r\n$1\r\n%d\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n",
                            (int)b->proto, strlen(user), user, strlen(password), password);
    else
        evbuffer_add_printf(r->buf, "*4\r\n$5\r\nHELLO\r\n$1\r\n%d\r\n", (int)b->proto);
    evbuffer_add_printf(r->buf, "$7\r\nSETNAME\r\n$8\r\nrespgate\r\n");
    bufferevent_write_buffer(b->bev, r->buf);
    push(b, r);
    return b->readonly ? add_handshake(b, REQ_SETUP, READONLY_FRAME, sizeof(READONLY_FRAME) - 1) : 0;
}

/* The version in HELLO's answer (LEN bytes at the front of IN: a flat
 * array, or a map, of names and values), or 0. */
static unsigned hello_version(struct evbuffer *in, size_t len)
{
    char head[256];
    size_t n = evbuffer_copyout(in, head, len < sizeof(head) - 1 ? len : sizeof(head) - 1);
    head[n] = '\0';
    const char *v = strstr(head, "$7\r\nversion\r\n$");
    const char *text = v ? strstr(v + 13, "\r\n") : NULL;
    return text ? compat_parse(text + 2, (size_t)(head + n - text - 2)) : 0;
}

/* Connects B to the address SA (LEN bytes) and queues its handshake.
 * Returns 0, or -1 after resetting B. */
static int connect_to(struct backend *b, const struct sockaddr *sa, int len)
{
    const struct conf *cf = b->w->conf;
    struct timeval tv = conf_timeval(cf->connect_timeout_ms);
    b->bev = bufferevent_socket_new(b->w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (b->bev == NULL) {
        backend_reset(b, "out of memory");
        return -1;
    }
    bufferevent_setcb(b->bev, NULL, on_written, on_event, b);
    bufferevent_set_timeouts(b->bev, NULL, &tv); /* the write timeout bounds the connect */
    if (bufferevent_socket_connect(b->bev, sa, len) < 0) {
        bufferevent_free(b->bev);
        b->bev = NULL;
        backend_reset(b, "cannot connect");
        return -1;
    }
    if (add_hello(b) < 0) {
        backend_reset(b, "out of memory");
        return -1;
    }
    gauge_sync(b);
    return 0;
}

/* A host name's lookup for a backend; the backend forgets it (ticket.b =
 * NULL) if it goes first, since a cancelled lookup still calls back later. */
struct backend_dns {
    struct backend *b;
    struct evdns_getaddrinfo_request *req;
};

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct backend_dns *d = arg;
    struct backend *b = d->b;
    free(d);
    if (b == NULL) { /* its backend is gone */
        if (res)
            evutil_freeaddrinfo(res);
        return;
    }
    b->dns = NULL;
    if (result != 0 || res == NULL) {
        log_warning("backend %s:%d: cannot resolve the name: %s", b->host, b->port, evutil_gai_strerror(result));
        if (res)
            evutil_freeaddrinfo(res);
        backend_reset(b, "cannot resolve the host name");
        return;
    }
    /* An IPv4 address first, as most clients do: a node bound to
     * 127.0.0.1 is not listening on ::1, which localhost also names. */
    const struct evutil_addrinfo *ai = res;
    while (ai && ai->ai_family != AF_INET && ai->ai_next)
        ai = ai->ai_next;
    if (ai->ai_family != AF_INET)
        ai = res;
    connect_to(b, ai->ai_addr, (int)ai->ai_addrlen);
    evutil_freeaddrinfo(res);
}

/* Looks B's host name up without blocking the loop (evdns reads
 * /etc/hosts and resolv.conf): a node may be named in CLUSTER NODES, MOVED
 * or ASK (cluster-announce-hostname). Returns 0 (B connects once the name
 * is resolved), or -1 after resetting B. */
static int resolve(struct backend *b)
{
    struct worker *w = b->w;
    if (w->dns == NULL && (w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                                                EVDNS_BASE_DISABLE_WHEN_INACTIVE)) == NULL) {
        log_error("backend %s:%d: cannot start a name resolver", b->host, b->port);
        backend_reset(b, "cannot start a name resolver");
        return -1;
    }
    struct backend_dns *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        backend_reset(b, "out of memory");
        return -1;
    }
    d->b = b;
    b->dns = d;
    char port[8];
    snprintf(port, sizeof(port), "%d", b->port);
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
    struct evdns_getaddrinfo_request *req = evdns_getaddrinfo(w->dns, b->host, port, &hints, on_resolved, d);
    if (b->dns == d) /* still under way; otherwise on_resolved has run already */
        d->req = req;
    gauge_sync(b);
    return b->bev || b->dns ? 0 : -1;
}

/* Drops B's lookup under way, if any. */
static void forget_dns(struct backend *b)
{
    if (b->dns == NULL)
        return;
    struct backend_dns *d = b->dns;
    b->dns = NULL;
    d->b = NULL; /* on_resolved frees it */
    if (d->req)
        evdns_getaddrinfo_cancel(d->req);
}

static int backend_connect(struct backend *b)
{
    if (worker_turn_ms(b->w) < b->retry_after_ms)
        return -EAGAIN;
    if (b->dns)
        return 0; /* the name is being looked up */

    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    char spec[300];
    snprintf(spec, sizeof(spec), strchr(b->host, ':') ? "[%s]:%d" : "%s:%d", b->host, b->port);
    if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &sslen) < 0)
        return resolve(b);
    return connect_to(b, (struct sockaddr *)&ss, sslen);
}

int backend_send(struct backend *b, struct req *r)
{
    int rc;
    if (r->resp3 && b->proto != 3 && !backend_private(b) && (b = resp3_twin(b)) == NULL)
        return -1;
    if (b->broken)
        return -1;
    if (b->bev == NULL && b->dns == NULL && (rc = backend_connect(b)) < 0)
        return rc;
    if (!b->ready) {
        TAILQ_INSERT_TAIL(&b->waiting, r, inflight);
        b->nwaiting++;
        r->backend = b;
        return 0;
    }
    /* A small frame is copied into the connection's buffer, where the
     * frames of one loop turn lie end to end and go out as one piece; a
     * large one is referenced, not copied. */
    struct evbuffer *out = bufferevent_get_output(b->bev);
    size_t len = evbuffer_get_length(r->buf);
    if (len == 0 && r->sink && r->sink->frame) {
        if (r->sink->frame(r, out) < 0)
            return -1;
    } else {
        const void *flat = len <= BACKEND_COPY_MAX ? netio_front(r->buf, len) : NULL;
        if (flat ? evbuffer_add(out, flat, len) < 0 : evbuffer_add_buffer_reference(out, r->buf) < 0)
            return -1;
    }
    push(b, r);
    /* Written at the end of this loop turn, with whatever else is queued. */
    if (b->connected)
        event_active(b->flush, EV_READ, 0); /* a second call before it runs is a no-op */
    return 0;
}

/* The node answered AUTH: what waited goes out, in order. */
static void send_waiting(struct backend *b)
{
    b->ready = 1;
    b->backoff_ms = 0; /* the node works: a failure from now on starts the backoff afresh */
    gauge_sync(b);
    struct req *r;
    while ((r = TAILQ_FIRST(&b->waiting))) {
        TAILQ_REMOVE(&b->waiting, r, inflight);
        b->nwaiting--;
        r->backend = NULL;
        if (!req_wanted(r))
            req_fail(b->w, r, REQ_CLIENT_LEFT); /* its client left meanwhile */
        else if (backend_send(b, r) < 0)
            req_fail(b->w, r, REQ_OUT_OF_MEMORY);
    }
}

/* A private connection that holds no session state (poolable: a blocking
 * command's, or a transaction's that ended cleanly), answered, waits in W's
 * pool for the next private use of the same node: a BRPOP loop or many
 * short transactions do not open a connection each. Returns 0, or -1 if B
 * cannot go there. */
static int pool_put(struct backend *b)
{
    struct worker *w = b->w;
    if (!b->poolable || backend_pushes(b) || b->broken || !b->ready || b->ninflight || b->nwaiting || b->owner == NULL)
        return -1;
    if (b->ops->gone)
        b->ops->gone(b);
    b->owner = NULL;
    b->ops = NULL;
    b->released = 0;
    TAILQ_INSERT_HEAD(&w->idle_private, b, link);
    if (++w->nidle_private > BACKEND_POOL_MAX)
        backend_free_private(TAILQ_LAST(&w->idle_private, backend_list), NULL); /* the longest idle */
    return 0;
}

/* A pooled connection to HOST:PORT, or NULL. */
static struct backend *pool_take(struct worker *w, const char *host, int port, int proto)
{
    struct backend *b;
    TAILQ_FOREACH(b, &w->idle_private, link)
        if (b->port == port && b->proto == proto && strcmp(b->host, host) == 0 && !b->broken)
            break;
    if (b == NULL)
        return NULL;
    TAILQ_REMOVE(&w->idle_private, b, link);
    w->nidle_private--;
    return b;
}

/* A stalled connection is done: its replies came, or it failed. */
static void stall_free(struct backend *s)
{
    if (s->origin) {
        TAILQ_REMOVE(&s->origin->stalled, s, link);
        s->origin->nstalled--;
    }
    close_connection(s);
    struct req *r;
    while ((r = pop_any(s)))
        req_fail(s->w, r, REQ_SHUTTING_DOWN); /* only at worker exit: a reset emptied it otherwise */
    backend_destroy(s);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct backend *b = arg;
    if (b->stalled_conn) {
        if (retiring(b))
            stall_free(b);
        return;
    }
    if (retiring(b)) {
        if (pool_put(b) < 0)
            backend_free_private(b, NULL);
        return;
    }
    if (b->bev == NULL || !b->connected)
        return;
    /* After a busy turn the next one likely reads more clients' requests
     * for this node: one write of both costs the node one read instead of
     * two. A lone client's request never waits. */
    if (worker_hold_flush(b->w, b->flush, what, evbuffer_get_length(bufferevent_get_output(b->bev))))
        return;
    if (netio_flush(b->bev, b->tls) < 0)
        backend_reset(b, netio_error(b->tls));
}

static void on_written(struct bufferevent *bev, void *arg)
{
    /* Drained after the kernel pushed back: direct writes again. */
    bufferevent_disable(bev, EV_WRITE);
}

/* How long what stalled on B may wait for its replies. */
static uint64_t stall_wait_ms(const struct backend *b)
{
    uint64_t wait = shared_failover_wait_ms(b->w->shared, b->w->conf);
    uint64_t pause = compat_failover_pause_ms(b->version) + b->w->conf->backend_timeout_ms;
    return wait > pause ? wait : pause;
}

/* B's replies are overdue: its connection moves aside (backend.h), still
 * reading the replies it is owed, and B opens a new one whose HELLO tells
 * whether the node is alive. Returns 0, or -1 if B is not a master's
 * shared connection that may stall (then it is reset as before). */
static int stall(struct backend *b)
{
    struct worker *w = b->w;
    if (backend_private(b) || b->stalled_conn || b->readonly || !b->ready || b->nstalled >= STALL_MAX)
        return -1; /* a replica's reads go to its master instead */
    if (netio_flush(b->bev, b->tls) < 0) /* what this loop turn queued goes out with the rest */
        return -1;
    struct backend *s = backend_new(w, b->host, b->port);
    if (s == NULL)
        return -1;
    s->ops = b->ops;
    s->rev = event_new(w->base, bufferevent_getfd(b->bev), EV_READ | EV_PERSIST, on_sock_read, s);
    if (s->rev == NULL) {
        backend_destroy(s);
        return -1;
    }
    event_free(b->rev);
    b->rev = NULL;
    s->bev = b->bev;
    s->tls = b->tls;
    b->bev = NULL;
    b->tls = NULL;
    bufferevent_setcb(s->bev, NULL, on_written, on_event, s);
    s->stalled_conn = 1;
    s->origin = b;
    s->connected = s->ready = 1;
    s->version = b->version;
    s->scan = b->scan;
    memset(&b->scan, 0, sizeof(b->scan));
    TAILQ_CONCAT(&s->inflight, &b->inflight, inflight);
    s->ninflight = b->ninflight;
    b->ninflight = 0;
    struct req *r;
    TAILQ_FOREACH(r, &s->inflight, inflight)
        r->backend = s;
    b->connected = b->ready = 0;
    gauge_sync(s);
    gauge_sync(b);
    uint64_t wait = stall_wait_ms(b);
    s->stall_deadline_ms = worker_turn_ms(w) + wait;
    TAILQ_INSERT_TAIL(&b->stalled, s, link);
    b->nstalled++;
    set_timeouts(s); /* each timeouts.backend: stall_check */
    log_warning("backend %s:%d: no reply within timeouts.backend to %zu request%s; they wait (at most %llums) "
                "while a new connection asks whether the node is alive",
                b->host, b->port, s->ninflight, s->ninflight == 1 ? "" : "s", (unsigned long long)wait);
    backend_connect(b); /* on failure it has failed what stalled too */
    return 0;
}

/* Whether W's map flags the node at HOST:PORT as failing. */
static int node_failing(struct worker *w, const char *host, int port)
{
    for (size_t i = 0; w->map && i < w->map->nnodes; i++)
        if (w->map->nodes[i].port == port && strcmp(w->map->nodes[i].host, host) == 0)
            return w->map->nodes[i].failing;
    return 0;
}

/* Every timeouts.backend while stalled connection S waits: it gives up at
 * its deadline, and once the cluster flagged the node failing (then so does
 * its backend's new connection, if the node never answered it). */
static void stall_check(struct backend *s)
{
    if (node_failing(s->w, s->host, s->port)) {
        struct backend *b = s->origin;
        if (b && !b->ready && b->bev)
            backend_reset(b, "the cluster flagged the node failing"); /* S too */
        else
            backend_reset(s, "the cluster flagged the node failing");
    } else if (worker_turn_ms(s->w) >= s->stall_deadline_ms) {
        backend_reset(s, "no reply within cluster.failover_wait");
    }
}

/* B's reply timeout fired. */
static void on_reply_timeout(struct backend *b)
{
    if (b->ninflight == 0 || backend_waits_forever(b)) {
        /* Armed while requests were in flight; event_add(NULL) leaves an
         * old timeout in place, so set_timeouts does not clear it on every
         * request. Clear it now that it fired on an idle connection, or on
         * one whose replies may take forever: a pooled connection that
         * served a transaction, now carrying a blocking command, still has
         * the timeout of its last transaction reply armed. */
        event_del(b->rev);
        event_add(b->rev, NULL);
        b->timer_armed = 0;
        return;
    }
    if (b->stalled_conn) {
        stall_check(b);
        return;
    }
    uint64_t now = worker_turn_ms(b->w), t = reply_timeout_ms(b);
    uint64_t since = b->busy_since_ms > b->last_read_ms ? b->busy_since_ms : b->last_read_ms;
    if (now < since + t) {
        /* Silent for less than the timeout since its first request: the
         * rest of it. */
        struct timeval rest = conf_timeval(since + t - now);
        event_add(b->rev, &rest);
        return;
    }
    if (stall(b) == 0)
        return;
    /* A read goes again once (elsewhere, if a replica timed out: it backs
     * off now); a read slower than the timeout would only time out again. */
    struct req *r;
    TAILQ_FOREACH(r, &b->inflight, inflight) {
        r->readonly &= !r->timed_out;
        r->timed_out = 1;
    }
    backend_reset(b, "no reply within timeouts.backend");
}

static int is_handshake(const struct req *r)
{
    return r && (r->kind == REQ_AUTH || r->kind == REQ_SETUP);
}

/* The reply of LEN bytes (first byte TYPE) at the front of IN answers B's
 * own request R (HELLO, READONLY, ASKING, or one whose reply nobody
 * wants). Returns 0, or -1 if B was reset. */
static int own_reply(struct backend *b, struct req *r, struct evbuffer *in, size_t len, char type)
{
    if (is_handshake(r) && type == '-') {
        char line[256];
        resp_first_line(in, len, line, sizeof(line));
        if (r->kind == REQ_AUTH) {
            log_error("backend %s:%d: AUTH failed: %s (check %s.username and %s.password; "
                      "respgate needs Redis 6.0 or later)",
                      b->host, b->port, line + 1, b->kind == BACKEND_SOURCE ? "migration" : "cluster", b->kind == BACKEND_SOURCE ? "migration" : "cluster");
            req_free(b->w, r);
            b->auth_failed = 1;
            backend_reset(b, "authentication failed");
            return -1;
        }
        log_warning("backend %s:%d: refused %s", b->host, b->port, line + 1);
    }
    if (r->kind == REQ_AUTH) {
        unsigned version = hello_version(in, len);
        if (version != b->version) {
            b->version = version;
            if (b->ops->versioned)
                b->ops->versioned(b);
        }
    }
    evbuffer_drain(in, len);
    int hello = r->kind == REQ_AUTH;
    req_complete(b->w, r);
    if (hello)
        send_waiting(b);
    return 0;
}

/* B's node sends a reply longer than CAP (limits.max_reply_len), which
 * would be read whole before it went on: the request it answers fails,
 * never to be sent again (it ran: its reply came), and the connection
 * closes, since the rest of the reply would follow; what else was in
 * flight is lost as on any closed connection, but the node is well: the
 * next connection does not wait. */
static void too_long(struct backend *b, uint64_t cap)
{
    struct req *r = b->ops->frame || is_handshake(TAILQ_FIRST(&b->inflight)) ? NULL : pop(b);
    if (r)
        req_fail(b->w, r, "ERR respgate: the reply from %s:%d is longer than limits.max_reply_len (%llu bytes); "
                 "the command ran", b->host, b->port, (unsigned long long)cap);
    backend_reset_as(b, "a reply longer than limits.max_reply_len", 0);
}

static void on_sock_read(evutil_socket_t fd, short what, void *arg)
{
    struct backend *b = arg;
    if (what & EV_TIMEOUT) {
        on_reply_timeout(b);
        return;
    }
    int n = netio_read(b->bev, b->tls, BACKEND_READ_MAX);
    if (n == NETIO_AGAIN)
        return;
    b->last_read_ms = worker_turn_ms(b->w);
    if (n <= 0) {
        backend_reset(b, n == 0 ? "connection closed by the node" : netio_error(b->tls));
        return;
    }
    struct evbuffer *in = bufferevent_get_input(b->bev);
    enum resp_status st;
    while ((st = resp_reply_scan(&b->scan, in)) == RESP_FRAME) {
        size_t len = b->scan.len;
        char type = b->scan.type;
        memset(&b->scan, 0, sizeof(b->scan));
        if (b->ops->frame && !is_handshake(TAILQ_FIRST(&b->inflight))) {
            if (b->ops->frame(b, in, len) < 0) {
                backend_reset(b, "a Pub/Sub frame nobody asked for");
                return;
            }
            continue;
        }
        if (type == '>') { /* RESP3 out of band (no Pub/Sub or tracking here): no request's reply */
            evbuffer_drain(in, len);
            continue;
        }
        struct req *r = pop(b);
        if (r == NULL) {
            backend_reset(b, "a reply arrived with no request in flight");
            return;
        }
        if (r->kind == REQ_CLIENT || r->kind == REQ_PART || r->kind == REQ_MIGRATE)
            b->ops->reply(b, r, in, len, type);
        else if (own_reply(b, r, in, len, type) < 0)
            return;
    }
    uint64_t cap = b->w->conf->max_reply_len;
    if (st == RESP_ERROR)
        backend_reset(b, b->scan.error);
    else if (evbuffer_get_length(in) > cap || (b->scan.in_bulk && (uint64_t)b->scan.bulk > cap))
        too_long(b, cap);
    else if (b->rev && netio_tls_buffered(b->tls))
        event_active(b->rev, EV_READ, 0); /* read already, waiting in the TLS session */
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct backend *b = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1, fd = bufferevent_getfd(bev);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        b->auth_failed = 0;
        /* A connection quiet for long by design (a blocking command's, a
         * subscriber's) learns that its node's host vanished from TCP
         * keepalive instead, in about a minute; others after
         * timeouts.tcp_keepalive, as Redis's clients do. */
        unsigned keepalive = (unsigned)(b->w->conf->tcp_keepalive_ms / 1000);
        netio_keepalive(fd, backend_waits_forever(b) || backend_pushes(b) ? (keepalive && keepalive < 30 ? keepalive : 30) : keepalive);
        b->connected = 1;
        b->rev = event_new(b->w->base, bufferevent_getfd(bev), EV_READ | EV_PERSIST, on_sock_read, b);
        if (b->rev == NULL) {
            backend_reset(b, "out of memory");
            return;
        }
        bufferevent_disable(bev, EV_WRITE); /* from now on, direct writes (netio.h) */
        const struct conf *cf = b->w->conf;
        if (cf->cluster_tls && b->kind != BACKEND_SOURCE &&
            (b->tls = netio_tls_new(bev, b->w->tls->cluster, 0, cf->cluster_tls_verify_name ? b->host : NULL)) ==
                NULL) {
            backend_reset(b, "out of memory");
            return;
        }
        set_timeouts(b);
        if (netio_flush(bev, b->tls) < 0) {
            backend_reset(b, netio_error(b->tls));
            return;
        }
        log_debug("backend %s:%d: connected", b->host, b->port);
        return;
    }
    /* The bufferevent connects and writes; reading is on_sock_read's. */
    if (what & BEV_EVENT_TIMEOUT)
        backend_reset(b, b->connected ? "write timed out" : "connect timed out");
    else if (what & BEV_EVENT_EOF)
        backend_reset(b, "connection closed by the node");
    else
        backend_reset(b, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

void backend_fail_lost(struct backend *b, struct req *r, int sent, const char *why)
{
    if (!sent)
        req_fail(b->w, r, "ERR respgate: cannot reach %s:%d (%s)", b->host, b->port, why);
    else
        req_fail(b->w, r, "ERR respgate: connection to cluster node %s:%d lost (%s); " REQ_MAY_HAVE_RUN, b->host,
                 b->port, why);
}

struct req *backend_head(struct backend *b)
{
    return TAILQ_FIRST(&b->inflight);
}

struct req *backend_pop(struct backend *b)
{
    return pop(b);
}

struct backend *backend_open_private(struct worker *w, const struct backend_ops *ops, struct client *c,
                                     const char *host, int port, enum backend_kind kind, int proto)
{
    struct backend *b = kind >= BACKEND_PUSH ? NULL : pool_take(w, host, port, proto);
    if (b) {
        b->ops = ops;
        b->kind = kind;
        b->owner = c;
        b->poolable = backend_waits_forever(b); /* a transaction's, once it ends cleanly */
        return b;
    }
    b = backend_new(w, host, port);
    if (b == NULL)
        return NULL;
    b->ops = ops;
    b->kind = kind;
    b->proto = (uint8_t)proto;
    b->poolable = backend_waits_forever(b);
    b->owner = c;
    gauge_sync(b);
    if (backend_connect(b) < 0) {
        b->broken = 1; /* logged; sends fail, and it retires */
        event_active(b->flush, EV_READ, 0);
    }
    return b;
}

void backend_release(struct backend *b)
{
    b->released = 1;
    if (retiring(b))
        event_active(b->flush, EV_READ, 0);
}

void backend_free_private(struct backend *b, const char *why)
{
    if (b->owner == NULL) { /* pooled */
        TAILQ_REMOVE(&b->w->idle_private, b, link);
        b->w->nidle_private--;
    } else if (b->ops->gone) {
        b->ops->gone(b);
    }
    close_connection(b);
    struct req *r;
    while ((r = pop_any(b))) {
        if (why)
            req_fail(b->w, r, "ERR respgate: %s", why);
        else
            req_fail(b->w, r, "ERR respgate: the connection to %s:%d closed", b->host, b->port);
    }
    backend_destroy(b);
}

void backend_free_all(struct worker *w)
{
    struct backend *b;
    while ((b = TAILQ_FIRST(&w->idle_private)))
        backend_free_private(b, NULL);
    while ((b = TAILQ_FIRST(&w->backends))) {
        TAILQ_REMOVE(&w->backends, b, link);
        struct backend *s;
        while ((s = TAILQ_FIRST(&b->stalled)))
            stall_free(s);
        close_connection(b);
        struct req *r;
        while ((r = pop_any(b)))
            req_fail(w, r, REQ_SHUTTING_DOWN);
        backend_destroy(b);
    }
}
