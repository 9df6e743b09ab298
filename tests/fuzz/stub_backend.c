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

#include "conn/backend.h"
#include "conn/client.h"
#include "loop/req.h"
#include "loop/worker.h"
#include "base/resp.h"

#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STUB_MAX 4096
#define FUZZ_STUB_CHECK(cond)                                                                                          \
    do {                                                                                                               \
        if (!(cond))                                                                                                   \
            abort();                                                                                                   \
    } while (0)

/* Every backend made, shared and private, until freed, with what its
 * node sent that is not yet a whole reply: a reply may come in pieces. */
static struct backend *all[STUB_MAX];
static struct stub_conn {
    struct evbuffer *in;
    struct resp_reply scan;
} conns[STUB_MAX];
static size_t nall;

static int alive(const struct backend *b)
{
    for (size_t i = 0; i < nall; i++)
        if (all[i] == b)
            return 1;
    return 0;
}

static struct stub_conn *conn_of(const struct backend *b)
{
    for (size_t i = 0; i < nall; i++)
        if (all[i] == b)
            return &conns[i];
    abort();
}

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
    if ((conns[nall].in = evbuffer_new()) == NULL) {
        free(b);
        return NULL;
    }
    memset(&conns[nall].scan, 0, sizeof(conns[nall].scan));
    all[nall++] = b;
    return b;
}

static void stub_destroy(struct backend *b)
{
    for (size_t i = 0; i < nall; i++)
        if (all[i] == b) {
            evbuffer_free(conns[i].in);
            all[i] = all[--nall];
            conns[i] = conns[nall];
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
    if (r->resp3 && b->proto != 3 && !backend_private(b)) {
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
                                     const char *host, int port, enum backend_kind kind, int proto)
{
    struct backend *b = stub_new(w, ops, host, port);
    if (b == NULL)
        return NULL;
    b->proto = (uint8_t)proto;
    b->kind = kind;
    b->owner = c;
    return b;
}

void backend_release(struct backend *b)
{
    b->released = 1; /* retired by stub_backend_answer once nothing is in flight */
}

/* Fails what B holds with WHY. */
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
    if (!backend_private(b) || !(b->released || b->broken) || b->ninflight)
        return 0;
    if (b->owner && b->ops->gone)
        b->ops->gone(b);
    stub_destroy(b);
    return 1;
}

/* The head request of B as the node would read it: its frame into FRAME
 * (R->buf, or made by its sink for a split's part) and scanned into Q.
 * Returns 0, or -1 when there is none (an unasked push). */
static int head_frame(struct backend *b, struct evbuffer *frame, struct resp_req *q)
{
    static const struct resp_limits lim = {1u << 30, 1u << 20, 1u << 20};
    struct req *r = TAILQ_FIRST(&b->inflight);
    if (r == NULL)
        return -1;
    if (evbuffer_get_length(r->buf))
        evbuffer_add_buffer_reference(frame, r->buf);
    else if (r->sink && r->sink->frame && r->sink->frame(r, frame) < 0)
        return -1;
    return resp_req_scan(q, frame, &lim, 0) == RESP_FRAME ? 0 : -1;
}

/* Fails what B holds as a connection that broke: backend.c's reset
 * (what its node sent and was not read is gone with it). */
static void reset(struct backend *b, const char *why)
{
    struct stub_conn *sc = conn_of(b);
    evbuffer_drain(sc->in, evbuffer_get_length(sc->in));
    memset(&sc->scan, 0, sizeof(sc->scan));
    struct req *r;
    while ((r = backend_pop(b)))
        b->ops->lost(b, r, 1, why);
    if (backend_private(b))
        b->broken = 1;
}

/* What the node sent, after what it sent before, as backend.c's read
 * callback hands it on: each whole reply to the head request's ops, or to
 * the push stream's; a part of one waits for the rest. */
static void deliver(struct backend *b, struct evbuffer *sent)
{
    /* A callback may make or free other connections, which moves their
     * entries in conns[]: B's is looked up again after each. */
    struct evbuffer *in = conn_of(b)->in;
    evbuffer_add_buffer(in, sent);
    struct resp_reply *scan;
    enum resp_status st;
    while ((st = resp_reply_scan(scan = &conn_of(b)->scan, in)) == RESP_FRAME) {
        size_t len = scan->len;
        char type = scan->type;
        memset(scan, 0, sizeof(*scan));
        if (b->ops->frame) {
            if (b->ops->frame(b, in, len) < 0) {
                reset(b, "a Pub/Sub frame nobody asked for");
                return;
            }
        } else if (type == '>') { /* out of band on a connection without push: dropped, as backend.c does */
            evbuffer_drain(in, len);
        } else {
            struct req *r = backend_pop(b);
            if (r == NULL) {
                reset(b, "a reply arrived with no request in flight");
                return;
            }
            if (r->kind == REQ_CLIENT || r->kind == REQ_PART || r->kind == REQ_MIGRATE) {
                b->ops->reply(b, r, in, len, type);
            } else { /* one of respgate's own (ASKING, READONLY) */
                evbuffer_drain(in, len);
                req_complete(b->w, r);
            }
        }
        if (!alive(b) || b->broken) /* a callback closed it */
            return;
    }
    if (st == RESP_ERROR)
        reset(b, scan->error);
}

int stub_backend_answer(struct worker *w, stub_reply_fn *reply, void *arg)
{
    int acted = 0;
    /* A callback may make or free backends: walk a copy, and check each is
     * still there before touching it. */
    static struct backend *snap[STUB_MAX];
    size_t n = nall;
    memcpy(snap, all, n * sizeof(*snap));
    for (size_t i = 0; i < n; i++) {
        struct backend *b = snap[i];
        if (!alive(b) || b->w != w)
            continue;
        if (retire(b)) {
            acted = 1;
            continue;
        }
        if ((b->ninflight == 0 && !backend_pushes(b)) || b->broken)
            continue;
        struct evbuffer *frame = evbuffer_new(), *out = evbuffer_new();
        struct resp_req q = {0};
        FUZZ_STUB_CHECK(frame && out);
        int asked = head_frame(b, frame, &q) == 0;
        if (reply(arg, asked ? frame : NULL, asked ? &q : NULL, b->proto, out) < 0) {
            reset(b, "lost by the fuzzer");
            acted = 1;
        } else if (evbuffer_get_length(out) && (asked || backend_pushes(b))) {
            deliver(b, out);
            acted = 1;
        }
        resp_req_deinit(&q);
        evbuffer_free(frame);
        evbuffer_free(out);
    }
    return acted;
}
