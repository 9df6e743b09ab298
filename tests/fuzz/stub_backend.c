/*
 * stub_backend: backend.h without sockets, for fuzz_dispatch. Linked before
 * librespgate.a, it stands in for the whole of backend.c, so that every
 * module above the backend_ops seam runs as it does in the daemon, and the
 * nodes' side is played by the fuzzer: a request sent stays in its
 * connection's FIFO until stub_backend_answer() gives it a reply through
 * the ops its opener passed (reply, or frame for a push connection) or loses
 * it (lost), exactly the calls backend.c makes.
 */
#include "stub_backend.h"

#include "backend.h"
#include "client.h"
#include "req.h"
#include "worker.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STUB_MAX 4096

static struct backend *all[STUB_MAX]; /* every backend made, shared and private, until freed */
static size_t nall;

static struct backend *stub_new(struct worker *w, const struct backend_ops *ops, const char *host, int port)
{
    if (nall == STUB_MAX)
        return NULL;
    struct backend *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->w = w;
    b->ops = ops;
    snprintf(b->host, sizeof(b->host), "%s", host);
    b->port = port;
    b->proto = 2;
    b->ready = b->connected = 1;
    b->version = w->version;
    TAILQ_INIT(&b->inflight);
    TAILQ_INIT(&b->waiting);
    TAILQ_INIT(&b->stalled);
    all[nall++] = b;
    return b;
}

static void stub_destroy(struct backend *b)
{
    for (size_t i = 0; i < nall; i++)
        if (all[i] == b) {
            all[i] = all[--nall];
            break;
        }
    free(b);
}

struct backend *backend_find(struct worker *w, const char *host, int port)
{
    struct backend *b;
    TAILQ_FOREACH(b, &w->backends, link)
        if (b->port == port && strcmp(b->host, host) == 0)
            return b;
    return NULL;
}

struct backend *backend_get(struct worker *w, const struct backend_ops *ops, const char *host, int port)
{
    struct backend *b = backend_find(w, host, port);
    if (b == NULL && (b = stub_new(w, ops, host, port)) != NULL)
        TAILQ_INSERT_TAIL(&w->backends, b, link);
    return b;
}

int backend_send(struct backend *b, struct req *r)
{
    if (r->resp3 && b->proto != 3 && !b->priv) {
        if (b->resp3 == NULL && (b->resp3 = stub_new(b->w, b->ops, b->host, b->port)) == NULL)
            return -1;
        b->resp3->proto = 3;
        b->resp3->readonly = b->readonly;
        b = b->resp3;
    }
    if (b->broken)
        return -1;
    if (evbuffer_get_length(r->buf) == 0 && r->sink && r->sink->frame) {
        /* A frame made at each send (a split command's part): made, as it
         * would be written, and thrown away. */
        struct evbuffer *out = evbuffer_new();
        int rc = out ? r->sink->frame(r, out) : -1;
        if (out)
            evbuffer_free(out);
        if (rc < 0)
            return -1;
    }
    TAILQ_INSERT_TAIL(&b->inflight, r, inflight);
    r->backend = b;
    b->ninflight++;
    return 0;
}

void backend_set_readonly(struct backend *b)
{
    b->readonly = 1;
    if (b->resp3)
        b->resp3->readonly = 1;
}

int backend_usable(struct backend *b)
{
    return !b->broken;
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
    struct req *r = TAILQ_FIRST(&b->inflight);
    if (r) {
        TAILQ_REMOVE(&b->inflight, r, inflight);
        r->backend = NULL;
        b->ninflight--;
    }
    return r;
}

struct backend *backend_open_private(struct worker *w, const struct backend_ops *ops, struct client *c,
                                     const char *host, int port, int flags)
{
    struct backend *b = stub_new(w, ops, host, port);
    if (b == NULL)
        return NULL;
    b->proto = flags & BACKEND_RESP3 ? 3 : 2;
    b->priv = 1;
    b->no_timeout = (flags & BACKEND_BLOCKING) != 0;
    b->push = (flags & BACKEND_PUSH) != 0;
    b->owner = c;
    return b;
}

void backend_release(struct backend *b)
{
    b->released = 1; /* retired by stub_backend_answer once nothing is in flight */
}

/* Fails what B holds with TEXT (a printf format taking no argument). */
static void fail_all(struct backend *b, const char *why)
{
    struct req *r;
    while ((r = backend_pop(b)))
        req_fail(b->w, r, "ERR respgate: %s", why);
}

void backend_free_private(struct backend *b, const char *why)
{
    if (b->owner && b->ops->gone)
        b->ops->gone(b);
    fail_all(b, why ? why : "the connection closed");
    stub_destroy(b);
}

void backend_free_all(struct worker *w)
{
    struct backend *b;
    while ((b = TAILQ_FIRST(&w->backends))) {
        TAILQ_REMOVE(&w->backends, b, link);
        if (b->resp3) {
            fail_all(b->resp3, REQ_SHUTTING_DOWN);
            stub_destroy(b->resp3);
        }
        fail_all(b, REQ_SHUTTING_DOWN);
        stub_destroy(b);
    }
}

size_t stub_backend_count(void)
{
    return nall;
}

/* Retires private B when it is released and idle, as backend.c's flush
 * does: it tells its opener, then goes. */
static int retire(struct backend *b)
{
    if (!b->priv || !(b->released || b->broken) || b->ninflight)
        return 0;
    if (b->owner && b->ops->gone)
        b->ops->gone(b);
    stub_destroy(b);
    return 1;
}

/* The reply REPLY (LEN bytes, a whole RESP value) for B's head request, or
 * for B's push stream, as backend.c's read callback hands it on. */
static void deliver(struct backend *b, const char *reply, size_t len)
{
    struct evbuffer *in = evbuffer_new();
    if (in == NULL)
        return;
    evbuffer_add(in, reply, len);
    if (b->ops->frame) {
        if (b->ops->frame(b, in, len) < 0) { /* backend.c resets the connection */
            struct req *r;
            while ((r = backend_pop(b)))
                b->ops->lost(b, r, 1, "a Pub/Sub frame nobody asked for");
            if (b->priv)
                b->broken = 1;
        }
    } else if (reply[0] == '>') {
        /* out of band on a connection without push: dropped, as backend.c does */
    } else {
        struct req *r = backend_pop(b);
        if (r && (r->kind == REQ_CLIENT || r->kind == REQ_PART || r->kind == REQ_MIGRATE))
            b->ops->reply(b, r, in, len, reply[0]);
        else if (r)
            req_complete(b->w, r); /* one of respgate's own (ASKING, READONLY) */
    }
    evbuffer_free(in);
}

int stub_backend_answer(struct worker *w, const char *(*pick)(void *arg, size_t *len), void *arg)
{
    int acted = 0;
    /* A callback may make or free backends: walk a copy, and check each is
     * still there before touching it. */
    struct backend *snap[STUB_MAX];
    size_t n = nall;
    memcpy(snap, all, n * sizeof(*snap));
    for (size_t i = 0; i < n; i++) {
        struct backend *b = snap[i];
        int alive = 0;
        for (size_t j = 0; j < nall && !alive; j++)
            alive = all[j] == b;
        if (!alive || b->w != w)
            continue;
        if (retire(b)) {
            acted = 1;
            continue;
        }
        if (b->ninflight == 0 && !b->push)
            continue;
        size_t len;
        const char *reply = pick(arg, &len);
        if (reply == NULL) { /* the connection is lost */
            struct req *r = backend_pop(b);
            if (r) {
                b->ops->lost(b, r, 1, "lost by the fuzzer");
                acted = 1;
            }
            continue;
        }
        if (b->ninflight == 0 && (!b->push || reply[0] != '>'))
            continue; /* only pushes come unasked */
        deliver(b, reply, len);
        acted = 1;
    }
    return acted;
}
