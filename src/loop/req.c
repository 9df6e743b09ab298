/*
 * req: request objects and their per-worker pool, see req.h.
 */
#include "loop/req.h"

#include "base/netio.h"
#include "loop/worker.h"

#include "base/resp.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kept for reuse per worker; more are freed. 50 clients pipelining 16 MGETs
 * of 10 keys have 8,800 requests out (each MGET and its 10 parts). */
#define REQ_POOL_MAX 16384

struct req *req_new(struct worker *w, enum req_kind kind, const struct req_sink *sink)
{
    struct req *r = TAILQ_FIRST(&w->req_pool);
    if (r) {
        TAILQ_REMOVE(&w->req_pool, r, owed);
        w->req_pooled--;
    } else {
        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return NULL;
        r->buf = evbuffer_new();
        r->reply = evbuffer_new();
        if (r->buf == NULL || r->reply == NULL) {
            if (r->buf)
                evbuffer_free(r->buf);
            if (r->reply)
                evbuffer_free(r->reply);
            free(r);
            return NULL;
        }
    }
    r->kind = (uint8_t)kind;
    r->sink = sink;
    return r;
}

void req_complete(struct worker *w, struct req *r)
{
    if (r->sink)
        r->sink->done(w, r);
    else
        req_free(w, r);
}

void req_complete_from(struct worker *w, struct req *r, struct evbuffer *in, size_t len, char type)
{
    if (r->sink && r->sink->take) {
        r->sink->take(w, r, in, len, type);
        return;
    }
    netio_move(r->reply, in, len);
    req_complete(w, r);
}

void req_fail(struct worker *w, struct req *r, const char *fmt, ...)
{
    va_list ap;
    evbuffer_drain(r->reply, evbuffer_get_length(r->reply));
    va_start(ap, fmt);
    resp_add_verror(r->reply, fmt, ap);
    va_end(ap);
    req_complete(w, r);
}

int req_wanted(const struct req *r)
{
    return r->sink == NULL || r->sink->wanted == NULL || r->sink->wanted(r);
}

void req_free(struct worker *w, struct req *r)
{
    if (w->req_pooled >= REQ_POOL_MAX) {
        evbuffer_free(r->buf);
        evbuffer_free(r->reply);
        free(r);
        return;
    }
    /* Draining frees the chains: a pooled request holds no payload memory. */
    evbuffer_drain(r->buf, evbuffer_get_length(r->buf));
    evbuffer_drain(r->reply, evbuffer_get_length(r->reply));
    struct evbuffer *buf = r->buf, *reply = r->reply;
    memset(r, 0, sizeof(*r));
    r->buf = buf;
    r->reply = reply;
    TAILQ_INSERT_HEAD(&w->req_pool, r, owed);
    w->req_pooled++;
}

void req_pool_shrink(struct worker *w, size_t keep)
{
    struct req *r;
    /* From the tail: the requests used longest ago. */
    while (w->req_pooled > keep && (r = TAILQ_LAST(&w->req_pool, req_list))) {
        TAILQ_REMOVE(&w->req_pool, r, owed);
        evbuffer_free(r->buf);
        evbuffer_free(r->reply);
        free(r);
        w->req_pooled--;
    }
}
