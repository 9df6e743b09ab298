/*
 * tracking: client-side caching through feeds to every master, see
 * tracking.h.
 *
 * A CLIENT TRACKING command goes to every feed, as one request each; the
 * client's reply waits for all of them (the first error, else +OK) and, as a
 * pinned request, holds the client's later commands until then: once the
 * client has its +OK, every master tracks its prefixes, and no change to a
 * key it reads afterwards can go unannounced.
 */
#include "path/tracking.h"

#include "conn/backend.h"
#include "conn/client.h"
#include "base/log.h"
#include "loop/req.h"
#include "base/resp.h"
#include "path/route.h"
#include "model/shared.h"
#include "loop/worker.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TRACKING_PREFIX_MAX 128 /* prefixes one client may track */
#define TRACKING_RETRY_SEC 1    /* a lost feed's master is tried again after this */

struct prefix {
    size_t len;
    char *bytes;
};

struct tracker {
    struct client *c;
    size_t nprefix;
    struct prefix prefix[TRACKING_PREFIX_MAX]; /* as the masters confirmed them, in Redis's order */
    struct event *retry;                       /* reopens lost feeds */
    unsigned on : 1;                           /* the masters confirmed CLIENT TRACKING ON */
    unsigned dismissed : 1;                    /* a first CLIENT TRACKING ON failed: tracking_reset soon */
};

static const char FLUSH_ALL[] = ">2\r\n$10\r\ninvalidate\r\n_\r\n";

static int frame(struct backend *b, struct evbuffer *in, size_t len);
static void feed_gone(struct backend *b);
static const struct backend_ops feed_ops = {.frame = frame, .lost = backend_fail_lost, .gone = feed_gone};

/* ---- to the client ---- */

/* Queues LEN bytes of DATA (or of IN) as a push of their own for C. */
static void push(struct client *c, const char *data, struct evbuffer *in, size_t len)
{
    struct req *r = client_push_new(c, NULL);
    if (r == NULL) {
        if (in)
            evbuffer_drain(in, len);
        return;
    }
    if (in)
        evbuffer_remove_buffer(in, r->reply, len);
    else
        evbuffer_add(r->reply, data, len);
    req_complete(c->w, r);
}

/* A frame on feed B: an invalidation push for its client, or the reply
 * of the CLIENT TRACKING request at the head of B's FIFO. */
static int frame(struct backend *b, struct evbuffer *in, size_t len)
{
    char type = 0;
    evbuffer_copyout(in, &type, 1);
    if (type == '>') {
        static const char inval[] = ">2\r\n$10\r\ninvalidate\r\n";
        char head[sizeof(inval)] = {0};
        evbuffer_copyout(in, head, sizeof(inval) - 1);
        if (memcmp(head, inval, sizeof(inval) - 1) == 0 && b->owner && b->owner->track && b->owner->track->on)
            push(b->owner, NULL, in, len);
        else
            evbuffer_drain(in, len); /* a push for no one: tracking ended, or not an invalidation */
        return 0;
    }
    struct req *r = backend_pop(b);
    if (r == NULL)
        return -1;
    req_complete_from(b->w, r, in, len, type);
    return 0;
}

/* ---- the feeds ---- */

static int is_error(struct evbuffer *reply)
{
    char t = 0;
    return evbuffer_copyout(reply, &t, 1) == 1 && t == '-';
}

static void remember(struct tracker *t, struct client *c, struct req *cmd, const struct resp_req *q);

/* One feed's answer to a client's CLIENT TRACKING (P->parent), or to the
 * replay that brings a new feed up to date (no parent). */
static void feed_done(struct worker *w, struct req *p)
{
    struct req *r = p->parent;
    struct client *c = p->client;
    if (r && is_error(p->reply) && !is_error(r->reply)) {
        evbuffer_drain(r->reply, evbuffer_get_length(r->reply));
        evbuffer_add_buffer(r->reply, p->reply);
    }
    if (r == NULL && c && c->track && c->track->on) {
        if (is_error(p->reply))
            log_warning("client id=%llu addr=%s: a master refused its tracking prefixes again; its cache is "
                        "flushed, and that master's changes are not announced",
                        (unsigned long long)c->id, c->addr);
        push(c, FLUSH_ALL, NULL, sizeof(FLUSH_ALL) - 1); /* what changed before this feed is unknown */
    }
    req_free(w, p);
    if (r == NULL || --r->expect > 0)
        return;
    if (evbuffer_get_length(r->reply) == 0)
        resp_add_status(r->reply, "OK");
    struct tracker *t = c ? c->track : NULL;
    if (t && !is_error(r->reply)) {
        t->on = 1;
    } else if (t && !t->on && !t->dismissed) {
        /* Not tracking after all: the feeds close from the timer, as
         * this may be one of their own callbacks. */
        t->dismissed = 1;
        struct timeval now = {0, 0};
        evtimer_add(t->retry, &now);
    }
    req_complete(w, r);
}

static const struct req_sink feed_sink = {.done = feed_done};

/* Sends FRAME's bytes (a copy) on feed B, for client request R (or NULL). */
static void feed_send(struct client *c, struct backend *b, struct evbuffer *frame, struct req *r)
{
    struct req *p = req_new(c->w, REQ_DROP, &feed_sink);
    if (p == NULL)
        return;
    p->client = c;
    p->parent = r;
    p->pinned = 1;
    if (r)
        r->expect++;
    /* A copy each (a reference would not do: backend_send may reference
     * the request's buffer in turn, and libevent does not reference a
     * reference); out of memory, the pullup is NULL. */
    size_t len = evbuffer_get_length(frame);
    const void *flat = evbuffer_pullup(frame, -1);
    if (flat == NULL || evbuffer_add(p->buf, flat, len) < 0 || backend_send(b, p) < 0)
        req_fail(c->w, p, "ERR respgate: cannot reach the master %s:%d to track its keys", b->host, b->port);
}

/* CLIENT TRACKING ON BCAST with T's prefixes, for a feed that has none. */
static struct evbuffer *replay_frame(const struct tracker *t)
{
    struct evbuffer *f = evbuffer_new();
    if (f == NULL)
        return NULL;
    evbuffer_add_printf(f, "*%zu\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\nON\r\n$5\r\nBCAST\r\n", 4 + 2 * t->nprefix);
    for (size_t i = 0; i < t->nprefix; i++) {
        evbuffer_add(f, "$6\r\nPREFIX\r\n", 12);
        resp_add_bulk(f, t->prefix[i].bytes, t->prefix[i].len);
    }
    return f;
}

static int is_feed(const struct backend *b)
{
    return b->kind == BACKEND_FEED;
}

/* Opens a feed to every master of C's that has none; one opened while C
 * tracks is brought up to date. Returns how many masters there are. */
static long ensure_feeds(struct client *c)
{
    struct tracker *t = c->track;
    struct route_master *m = NULL;
    long n = route_masters(c->w, &m);
    for (long i = 0; i < n; i++) {
        struct backend *b;
        int have = 0;
        TAILQ_FOREACH(b, &c->privates, link)
            have |= is_feed(b) && !b->broken && backend_same_node(b, m[i].b);
        if (have)
            continue;
        struct backend *f = client_open_private(c, &feed_ops, m[i].b->host, m[i].b->port, BACKEND_FEED);
        if (f && t->on && !f->broken) {
            struct evbuffer *on = replay_frame(t);
            if (on) {
                feed_send(c, f, on, NULL);
                evbuffer_free(on);
            }
        }
    }
    free(m);
    return n;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct tracker *t = arg;
    if (t->dismissed && !t->on)
        tracking_reset(t->c); /* frees T and this event: libevent allows it in its own callback */
    else if (t->on)
        ensure_feeds(t->c);
}

static void close_feeds(struct client *c)
{
    struct backend *b, *next;
    for (b = TAILQ_FIRST(&c->privates); b; b = next) {
        next = TAILQ_NEXT(b, link);
        if (is_feed(b))
            backend_free_private(b, "tracking ended");
    }
}

/* Feed B is going: deliberately (the client stops tracking, the node is no
 * longer a master), or lost. A lost one's master is tried again soon, and
 * the client flushes its cache once the new feed is up (ensure_feeds). */
static void feed_gone(struct backend *b)
{
    struct client *c = b->owner;
    client_forget_private(c, b);
    struct tracker *t = c->track;
    if (t == NULL || !t->on || !b->broken)
        return;
    log_notice("client id=%llu addr=%s: its tracking feed from %s:%d was lost; it is opened again, and the "
               "client's cache flushed",
               (unsigned long long)c->id, c->addr, b->host, b->port);
    push(c, FLUSH_ALL, NULL, sizeof(FLUSH_ALL) - 1);
    struct timeval tv = {TRACKING_RETRY_SEC, 0};
    if (t->retry && !evtimer_pending(t->retry, NULL))
        evtimer_add(t->retry, &tv);
}

void tracking_map_changed(struct worker *w)
{
    struct client *c;
    TAILQ_FOREACH(c, &w->clients, link) {
        if (c->track == NULL || !c->track->on)
            continue;
        struct route_master *m = NULL;
        long n = route_masters(w, &m);
        struct backend *b, *next;
        for (b = TAILQ_FIRST(&c->privates); b; b = next) {
            next = TAILQ_NEXT(b, link);
            long i = 0;
            while (is_feed(b) && i < n && !backend_same_node(b, m[i].b))
                i++;
            if (is_feed(b) && i == n) /* no longer a master: its keys' new master has a feed */
                backend_free_private(b, NULL);
        }
        free(m);
        ensure_feeds(c);
    }
}

void tracking_reset(struct client *c)
{
    struct tracker *t = c->track;
    if (t == NULL)
        return;
    t->on = 0;
    close_feeds(c);
    c->track = NULL;
    for (size_t i = 0; i < t->nprefix; i++)
        free(t->prefix[i].bytes);
    if (t->retry)
        event_free(t->retry);
    free(t);
}

/* ---- commands ---- */

static int prefix_cmp(const struct prefix *a, const char *bytes, size_t len)
{
    int d = memcmp(a->bytes, bytes, a->len < len ? a->len : len);
    return d ? d : (a->len > len) - (a->len < len);
}

/* The prefixes of CMD (arguments Q), which every master accepted, join T's. */
static void remember(struct tracker *t, struct client *c, struct req *cmd, const struct resp_req *q)
{
    for (size_t i = 3; i + 1 < q->argc; i++) {
        if (!resp_arg_is(cmd->buf, q, i, "prefix"))
            continue;
        size_t len;
        const char *buf = resp_arg_view(cmd->buf, q, ++i, &len);
        if (buf == NULL)
            continue;
        size_t at = 0;
        while (at < t->nprefix && prefix_cmp(&t->prefix[at], buf, len) < 0)
            at++;
        if (at < t->nprefix && prefix_cmp(&t->prefix[at], buf, len) == 0)
            continue;
        char *bytes = t->nprefix < TRACKING_PREFIX_MAX ? malloc(len ? len : 1) : NULL;
        if (bytes == NULL) {
            log_warning("client id=%llu addr=%s: a tracking prefix was not kept; a master that replaces a lost "
                        "one will not announce its keys", (unsigned long long)c->id, c->addr);
            continue;
        }
        memcpy(bytes, buf, len);
        memmove(&t->prefix[at + 1], &t->prefix[at], (t->nprefix - at) * sizeof(t->prefix[0]));
        t->prefix[at] = (struct prefix){len, bytes};
        t->nprefix++;
    }
}

static const char *check_options(struct client *c, struct req *r, const struct resp_req *q, int on,
                                 size_t *nprefix)
{
    int bcast = 0, optin = 0, optout = 0, noloop = 0, redirect = 0;
    *nprefix = 0;
    for (size_t i = 3; i < q->argc; i++) {
        int more = i + 1 < q->argc;
        if (resp_arg_is(r->buf, q, i, "redirect") && more) {
            redirect = 1;
            i++;
        } else if (resp_arg_is(r->buf, q, i, "bcast")) {
            bcast = 1;
        } else if (resp_arg_is(r->buf, q, i, "optin")) {
            optin = 1;
        } else if (resp_arg_is(r->buf, q, i, "optout")) {
            optout = 1;
        } else if (resp_arg_is(r->buf, q, i, "noloop")) {
            noloop = 1;
        } else if (resp_arg_is(r->buf, q, i, "prefix") && more) {
            i++;
            (*nprefix)++;
        } else {
            return "ERR syntax error";
        }
    }
    if (!on)
        return NULL;
    if (!bcast && *nprefix)
        return "ERR PREFIX option requires BCAST mode to be enabled";
    if (!bcast && c->track && c->track->on)
        return "ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then "
               "re-enabling it with a different mode.";
    if (redirect)
        return "ERR respgate: CLIENT TRACKING REDIRECT is not supported; use RESP3 (HELLO 3) and receive "
               "invalidations on the tracking connection itself";
    if (c->proto != 3)
        return "ERR respgate: CLIENT TRACKING needs RESP3 (HELLO 3): invalidations arrive as push messages";
    if (!bcast)
        return "ERR respgate: CLIENT TRACKING supports BCAST mode only: a node tracks the keys respgate's "
               "shared connections read, not this client's";
    if (optin || optout)
        return "ERR OPTIN and OPTOUT are not compatible with BCAST";
    if (noloop)
        return "ERR respgate: CLIENT TRACKING NOLOOP is not supported: a node cannot tell this client's writes "
               "from others'";
    /* Before overlap(), which compares every prefix with every other. */
    if ((c->track ? c->track->nprefix : 0) + *nprefix > TRACKING_PREFIX_MAX)
        return "ERR respgate: more than 128 tracking prefixes for one client";
    return NULL;
}

static struct tracker *tracker_of(struct client *c)
{
    if (c->track)
        return c->track;
    struct tracker *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->c = c;
    t->retry = evtimer_new(c->w->base, on_retry, t);
    c->track = t;
    return t;
}

/* Whether one of A and B (LEN bytes each) starts with the other. */
static int overlaps(const char *a, size_t alen, const char *b, size_t blen)
{
    return memcmp(a, b, alen < blen ? alen : blen) == 0;
}

/* Whether a prefix in Q overlaps one of T's or another in Q: then Redis's
 * refusal is in OUT. */
static int overlap(const struct tracker *t, struct req *r, const struct resp_req *q, struct evbuffer *out)
{
    for (size_t i = 3; i + 1 < q->argc; i++) {
        size_t alen, blen;
        const char *a, *b;
        if (!resp_arg_is(r->buf, q, i, "prefix") || (a = resp_arg_view(r->buf, q, ++i, &alen)) == NULL)
            continue;
        for (size_t k = 0; k < t->nprefix; k++)
            if (overlaps(a, alen, t->prefix[k].bytes, t->prefix[k].len)) {
                resp_add_error(out, "ERR Prefix '%.*s' overlaps with an existing prefix '%.*s'. Prefixes for a "
                               "single client must not overlap.", resp_quote_len(alen), a, resp_quote_len(t->prefix[k].len),
                               t->prefix[k].bytes);
                return 1;
            }
        for (size_t j = i + 1; j + 1 < q->argc; j++) {
            if (!resp_arg_is(r->buf, q, j, "prefix") || (b = resp_arg_view(r->buf, q, ++j, &blen)) == NULL)
                continue;
            if (overlaps(a, alen, b, blen)) {
                resp_add_error(out, "ERR Prefix '%.*s' overlaps with another provided prefix '%.*s'. Prefixes "
                               "for a single client must not overlap.", resp_quote_len(alen), a, resp_quote_len(blen), b);
                return 1;
            }
        }
    }
    return 0;
}

static int tracking_on_off(struct client *c, struct req *r, const struct resp_req *q)
{
    int on = resp_arg_is(r->buf, q, 2, "on");
    if (!on && !resp_arg_is(r->buf, q, 2, "off")) {
        resp_add_error(r->reply, "ERR syntax error");
        return 0;
    }
    size_t nprefix;
    const char *refusal = check_options(c, r, q, on, &nprefix);
    if (refusal) {
        resp_add_error(r->reply, "%s", refusal);
        return 0;
    }
    if (!on) {
        tracking_reset(c);
        resp_add_status(r->reply, "OK");
        return 0;
    }
    enum client_map map = client_wait_for_map(c, r); /* the masters are unknown before it */
    if (map == CLIENT_MAP_DOWN)
        resp_add_error(r->reply, "CLUSTERDOWN The cluster is down");
    if (map != CLIENT_MAP_READY)
        return map == CLIENT_MAP_HELD;
    struct tracker *t = tracker_of(c);
    if (t == NULL || t->retry == NULL) {
        resp_add_error(r->reply, REQ_OUT_OF_MEMORY);
        return 0;
    }
    if (ensure_feeds(c) <= 0) {
        resp_add_error(r->reply, "CLUSTERDOWN respgate: no master is known");
        return 0;
    }
    if (overlap(t, r, q, r->reply))
        return 0;
    struct evbuffer *f = evbuffer_new();
    if (f == NULL) {
        resp_add_error(r->reply, REQ_OUT_OF_MEMORY);
        return 0;
    }
    t->dismissed = 0;
    remember(t, c, r, q); /* so that a feed opened before the answers gets them too */
    evbuffer_add_printf(f, "*%zu\r\n", q->argc);
    for (size_t i = 0; i < q->argc; i++)
        resp_add_arg(f, r->buf, &q->argv[i]);
    r->expect = 1; /* until every feed was sent its copy */
    r->pinned = 1;
    client_awaits(r);
    struct backend *b, *next;
    for (b = TAILQ_FIRST(&c->privates); b; b = next) {
        next = TAILQ_NEXT(b, link);
        if (is_feed(b) && !b->broken)
            feed_send(c, b, f, r);
    }
    evbuffer_free(f);
    if (--r->expect == 0) { /* no feed took it; else R completes in feed_done */
        if (evbuffer_get_length(r->reply) == 0)
            resp_add_error(r->reply, "CLUSTERDOWN respgate: no master could be reached to track its keys");
        req_complete(c->w, r);
    }
    return 1;
}

static void tracking_info(struct client *c, struct evbuffer *out)
{
    struct tracker *t = c->track;
    int on = t && t->on;
    resp_add_map_head(out, c->proto, 3);
    resp_add_bulk(out, "flags", 5);
    resp_add_set_head(out, c->proto, on ? 2 : 1);
    if (on) {
        resp_add_bulk(out, "on", 2);
        resp_add_bulk(out, "bcast", 5);
    } else {
        resp_add_bulk(out, "off", 3);
    }
    resp_add_bulk(out, "redirect", 8);
    evbuffer_add_printf(out, ":%d\r\n", on ? 0 : -1);
    resp_add_bulk(out, "prefixes", 8);
    evbuffer_add_printf(out, "*%zu\r\n", on ? t->nprefix : 0);
    for (size_t i = 0; on && i < t->nprefix; i++)
        resp_add_bulk(out, t->prefix[i].bytes, t->prefix[i].len);
}

int tracking_command(struct client *c, struct req *r, const struct resp_req *q)
{
    int on = c->track && c->track->on;
    if (resp_arg_is(r->buf, q, 1, "tracking"))
        return tracking_on_off(c, r, q);
    if (resp_arg_is(r->buf, q, 1, "trackinginfo"))
        tracking_info(c, r->reply);
    else if (resp_arg_is(r->buf, q, 1, "getredir"))
        evbuffer_add_printf(r->reply, ":%d\r\n", on ? 0 : -1);
    else if (!on)
        resp_add_error(r->reply, "ERR CLIENT CACHING can be called only when the client is in tracking mode with "
                                 "OPTIN or OPTOUT mode enabled");
    else if (resp_arg_is(r->buf, q, 2, "yes"))
        resp_add_error(r->reply, "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.");
    else if (resp_arg_is(r->buf, q, 2, "no"))
        resp_add_error(r->reply, "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.");
    else
        resp_add_error(r->reply, "ERR syntax error");
    return 0;
}
