/*
 * client: one client connection's object, see client.h.
 *
 * Output is bounded twice: past CLIENT_PAUSE_OUTPUT bytes the front reads
 * the client no more until the output drains (back-pressure), and past
 * client.output_buffer_limit it is closed, as Redis's
 * client-output-buffer-limit does.
 */
#include "conn/client.h"

#include "model/acl.h"
#include "model/conf.h"
#include "base/log.h"
#include "loop/metrics.h"
#include "base/netio.h"
#include "model/shared.h"
#include "loop/worker.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CLIENT_CLOSE_TIMEOUT_SEC 10 /* how long a closing client may take to read its last replies */
#define CLIENT_LINGER_SEC 1         /* how long to wait for the peer's EOF after ours */

static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);
static void on_flush(evutil_socket_t fd, short what, void *arg);

void client_reading(struct client *c, int on)
{
    if (!on) {
        event_del(c->rev);
        return;
    }
    uint64_t ms = c->state == CLIENT_LINGERING ? CLIENT_LINGER_SEC * 1000 : c->w->conf->idle_timeout_ms;
    if ((c->proxy_header || !netio_tls_ready(c->tls)) && (ms == 0 || ms > CLIENT_PROXY_HEADER_MS))
        ms = CLIENT_PROXY_HEADER_MS; /* the header or the handshake comes first, or the connection goes */
    struct timeval tv = conf_timeval(ms);
    if (ms == 0)
        event_del(c->rev); /* event_add(NULL) would keep an earlier timeout */
    event_add(c->rev, ms ? &tv : NULL);
    if (netio_tls_buffered(c->tls))
        event_active(c->rev, EV_READ, 0); /* read already, waiting in the TLS session */
}

void client_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%d", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%d", host, ntohs(in6->sin6_port));
    } else {
        snprintf(buf, len, "unix");
    }
}

static void on_auth_wait(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    c->auth.waited = 1;
    event_active(c->resume, EV_READ, 0); /* release_hold */
}

void client_set_authed(struct client *c, const char *user, size_t len)
{
    int is_default = len == 7 && memcmp(user, "default", 7) == 0;
    if (is_default || len >= sizeof(c->auth.user))
        len = 0;
    memcpy(c->auth.user, user, len);
    c->auth.user[len] = '\0';
    c->auth.acl_serial = 0;
    c->auth.ok = 1;
    if (c->auth.timer)
        evtimer_del(c->auth.timer);
}

int client_hold_auth(struct client *c, struct req *r, uint64_t ms)
{
    if (c->auth.wait == NULL && (c->auth.wait = evtimer_new(c->w->base, on_auth_wait, c)) == NULL)
        return -1;
    struct timeval tv = conf_timeval(ms);
    c->hold = r;
    evtimer_add(c->auth.wait, &tv);
    return 0;
}

static void on_rev(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    c->ops->read(c, what);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    c->ops->resume(c);
}

struct client *client_new(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa, int proxy_header,
                          struct ssl_ctx_st *tls, const struct client_ops *ops)
{
    struct client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        evutil_closesocket(fd);
        return NULL;
    }
    c->w = w;
    c->ops = ops;
    c->id = atomic_fetch_add(&w->shared->next_client_id, 1) + 1;
    c->created_us = worker_turn_us(w);
    c->proto = 2;
    client_format_addr(sa, c->addr, sizeof(c->addr));
    if (sa->sa_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* A client that vanished behind a VIP or a NAT is found and closed. */
        netio_keepalive(fd, (unsigned)(w->conf->tcp_keepalive_ms / 1000));
    }
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->resume = event_new(w->base, -1, 0, on_resume, c);
    c->flush = event_new(w->base, -1, 0, on_flush, c);
    c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_rev, c);
    TAILQ_INIT(&c->owed);
    TAILQ_INIT(&c->privates);
    TAILQ_INIT(&c->txn.queued);
    c->txn.pin_slot = -1;
    c->proxy_header = proxy_header != 0; /* before client_reading(): it bounds the wait for the header */
    if (c->bev && tls)
        c->tls = netio_tls_new(c->bev, tls, 1, NULL);
    if (c->bev == NULL || c->resume == NULL || c->flush == NULL || c->rev == NULL || (tls && c->tls == NULL)) {
        if (c->bev)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        if (c->resume)
            event_free(c->resume);
        if (c->flush)
            event_free(c->flush);
        if (c->rev)
            event_free(c->rev);
        free(c);
        return NULL;
    }
    bufferevent_setcb(c->bev, NULL, on_write, on_event, c);
    /* A new bufferevent has EV_WRITE on: it would write the output itself
     * (plaintext under TLS) whenever a loop turn ends with some left. */
    bufferevent_disable(c->bev, EV_WRITE);
    client_reading(c, 1); /* the bufferevent writes only, and EV_WRITE only while the kernel pushes back */
    TAILQ_INSERT_TAIL(&w->clients, c, link);
    w->nclients++;
    worker_client_came(w);
    return c;
}

int client_authed(const struct client *c)
{
    return c->auth.ok || conf_default_open(c->w->conf);
}

const struct acl_user *client_acl(struct client *c, int *gone)
{
    const struct conf *cf = c->w->conf;
    *gone = 0;
    if (cf->users.n == 0)
        return NULL;
    if (c->auth.acl_serial != cf->serial) { /* a reload since: the user's rules may have changed */
        const char *name = c->auth.user[0] ? c->auth.user : "default";
        c->auth.acl = conf_user(cf, name, strlen(name));
        c->auth.acl_serial = cf->serial;
    }
    *gone = c->auth.acl == NULL && c->auth.user[0] != '\0';
    return c->auth.acl;
}

void client_free(struct client *c)
{
    struct worker *w = c->w;
    log_debug("client id=%llu addr=%s closed", (unsigned long long)c->id, c->addr);
    TAILQ_REMOVE(&w->clients, c, link);
    w->nclients--;
    atomic_fetch_sub(&w->shared->nclients, 1);
    if (c->nblocking)
        atomic_fetch_sub_explicit(&w->stats.blocked, 1, memory_order_relaxed);
    /* A request answered, or held back before it was routed, is the
     * client's; any other is out somewhere and completes later, orphaned:
     * its sink frees it then. */
    struct req *r;
    while ((r = TAILQ_FIRST(&c->owed))) {
        TAILQ_REMOVE(&c->owed, r, owed);
        if (r->done || (r == c->hold && r->fetch == NULL)) /* one an import holds is the import's */
            req_free(w, r);
        else
            r->client = NULL;
    }
    c->ops->closing(c); /* closes private connections: a node unblocks their commands */
    netio_tls_free(c->tls);
    bufferevent_free(c->bev);
    event_free(c->resume);
    event_free(c->flush);
    event_free(c->rev);
    if (c->auth.timer)
        event_free(c->auth.timer);
    if (c->auth.wait)
        event_free(c->auth.wait);
    resp_req_deinit(&c->scan);
    free(c->name);
    free(c);
    worker_client_gone(w);
}


void client_set_state(struct client *c, enum client_state s)
{
    if (s == c->state || (c->state >= CLIENT_CLOSING && s < c->state))
        return;
    enum client_state was = c->state;
    c->state = s;
    switch (s) {
    case CLIENT_READING:
        if (was == CLIENT_PAUSED)
            bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        if (!c->eof)
            client_reading(c, 1);
        break;
    case CLIENT_PAUSED: /* the write callback says when the output is down to half */
        bufferevent_setwatermark(c->bev, EV_WRITE, CLIENT_PAUSE_OUTPUT / 2, 0);
        client_reading(c, 0);
        break;
    case CLIENT_THROTTLED:
        client_reading(c, 0);
        break;
    case CLIENT_CLOSING: {
        struct timeval tv = {CLIENT_CLOSE_TIMEOUT_SEC, 0};
        if (netio_tls_ready(c->tls))
            client_reading(c, 0); /* else the reads go on, for the handshake its last words wait for */
        netio_set_write_timeout(c->bev, c->tls, &tv);
        /* The flush ends in client_finish_closing: with nothing owed, C
         * closes now, not at the timeout. */
        event_active(c->flush, EV_READ, 0);
        break;
    }
    case CLIENT_LINGERING:
        c->linger_until_us = worker_turn_us(c->w) + CLIENT_LINGER_SEC * 1000000ull;
        if (c->eof)
            client_set_state(c, CLIENT_DEAD); /* its EOF came already */
        else
            client_reading(c, 1);
        break;
    case CLIENT_DEAD:
        event_active(c->resume, EV_READ, 0);
        break;
    }
}

void client_finish_closing(struct client *c)
{
    if (c->state != CLIENT_CLOSING || c->nowed || evbuffer_get_length(bufferevent_get_output(c->bev)) != 0)
        return;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (netio_shutdown(c->bev, c->tls) < 0) {
        client_free(c);
        return;
    }
    evbuffer_drain(in, evbuffer_get_length(in));
    client_set_state(c, CLIENT_LINGERING);
}

void client_close_soon(struct client *c)
{
    client_set_state(c, CLIENT_CLOSING);
}

void client_shutdown(struct client *c)
{
    client_close_soon(c);
    client_finish_closing(c);
}

void client_release_hold(struct client *c)
{
    event_active(c->resume, EV_READ, 0); /* on_resume */
}

void client_note_write(struct client *c, struct backend *b)
{
    if (c->wrote.n && c->wrote.masters[c->wrote.n - 1] == b)
        return; /* the common case: the same master as the last write */
    for (size_t i = 0; i < c->wrote.n; i++)
        if (c->wrote.masters[i] == b)
            return;
    if (c->wrote.n < CLIENT_WROTE_MAX)
        c->wrote.masters[c->wrote.n++] = b;
    else
        c->wrote.many = 1;
}

/* Whether C, a subscriber, is past Redis's pubsub output limits: the hard
 * one, or the soft one for too long. Logs why. */
static int subscriber_too_slow(struct client *c, size_t unread)
{
    const struct conf *cf = c->w->conf;
    uint64_t now = worker_turn_us(c->w);
    if (unread <= cf->pubsub_output_soft_limit) {
        c->soft_since_us = 0;
        return 0;
    }
    if (c->soft_since_us == 0)
        c->soft_since_us = now;
    const char *which = unread > cf->pubsub_output_limit ? "client.pubsub_output_limit"
                        : (now - c->soft_since_us) / 1000 >= cf->pubsub_output_soft_ms
                            ? "client.pubsub_output_soft_limit for client.pubsub_output_soft_time"
                            : NULL;
    if (which)
        log_notice("client id=%llu addr=%s closed: a subscriber that reads too slowly, %zu bytes of messages "
                   "unread (%s)",
                   (unsigned long long)c->id, c->addr, unread, which);
    return which != NULL;
}

struct backend *client_open_private(struct client *c, const struct backend_ops *ops, const char *host, int port,
                                    enum backend_kind kind)
{
    struct backend *b = backend_open_private(c->w, ops, c, host, port, kind, c->proto);
    if (b) {
        TAILQ_INSERT_TAIL(&c->privates, b, link);
        /* Push connections are one per master at most: only sessions',
         * which a client opens at will, count against its limit. */
        c->nprivate += !backend_pushes(b);
    }
    return b;
}

void client_forget_private(struct client *c, struct backend *b)
{
    TAILQ_REMOVE(&c->privates, b, link);
    c->nprivate -= !backend_pushes(b);
}

struct req *client_push_new(struct client *c, struct req *before)
{
    struct req *r = client_closing(c) ? NULL : req_new(c->w, REQ_CLIENT, &client_sink);
    if (r == NULL)
        return NULL;
    r->client = c;
    if (before == NULL)
        before = c->hold;
    if (before)
        TAILQ_INSERT_BEFORE(before, r, owed);
    else
        TAILQ_INSERT_TAIL(&c->owed, r, owed);
    c->nowed++;
    return r;
}

void client_awaits(struct req *r)
{
    if (r->sink != &client_sink || r->client == NULL || r->counted)
        return;
    r->counted = 1;
    if (r->pinned)
        r->client->npinned++;
    else
        r->client->nshared++;
}

void client_note_blocking(struct worker *w, struct req *r)
{
    if (r->blocking || r->client == NULL)
        return;
    r->blocking = 1;
    if (r->client->nblocking++ == 0)
        atomic_fetch_add_explicit(&w->stats.blocked, 1, memory_order_relaxed);
}

/* R, of client C, is answered with a reply whose first byte is FIRST:
 * counted, and no longer blocking or awaited. */
static void owed_answered(struct worker *w, struct client *c, struct req *r, char first)
{
    r->done = 1;
    if (r->family) {
        uint64_t now = worker_turn_us(w);
        metrics_observe(&w->metrics, (enum metrics_family)r->family, now > r->start_us ? now - r->start_us : 0,
                        first == '-');
    }
    if (r->blocking && --c->nblocking == 0)
        atomic_fetch_sub_explicit(&w->stats.blocked, 1, memory_order_relaxed);
    r->blocking = 0;
    if (r->counted) {
        r->counted = 0;
        if ((r->pinned ? --c->npinned : --c->nshared) == 0 && c->hold)
            event_active(c->resume, EV_READ, 0);
    }
}

static void owed_done(struct worker *w, struct req *r)
{
    struct client *c = r->client;
    if (c == NULL) {
        req_free(w, r);
        return;
    }
    char first = 0;
    evbuffer_copyout(r->reply, &first, 1);
    owed_answered(w, c, r, first);
    c->held += evbuffer_get_length(r->reply);
    client_deliver(c);
}

/* Whether C has more replies unread than its limit allows: then it is
 * marked dead, and why is logged. */
static int output_full(struct client *c, struct evbuffer *out)
{
    /* The limit is on replies the client has not read yet: one reply,
     * however large, always goes out to a client that reads. */
    size_t unread = evbuffer_get_length(out);
    int sub = c->ops->subscribed(c);
    if (sub ? !subscriber_too_slow(c, unread) : unread <= c->w->conf->output_buffer_limit)
        return 0;
    if (!sub)
        log_notice("client id=%llu addr=%s closed: it reads too slowly, %zu bytes of replies unread "
                   "(client.output_buffer_limit)",
                   (unsigned long long)c->id, c->addr, unread);
    client_set_state(c, CLIENT_DEAD);
    return 1;
}

/* A node's reply for R: one that is next in line for its client goes from
 * the node's buffer to the client's directly, without a stop in R->reply
 * (the path nearly every reply takes). */
static void owed_take(struct worker *w, struct req *r, struct evbuffer *in, size_t len, char type)
{
    struct client *c = r->client;
    if (c && c->state != CLIENT_DEAD && !r->silent && TAILQ_FIRST(&c->owed) == r &&
        !output_full(c, bufferevent_get_output(c->bev))) {
        owed_answered(w, c, r, type);
        TAILQ_REMOVE(&c->owed, r, owed);
        c->nowed--;
        metrics_add(&w->metrics.bytes_out, len);
        netio_move(bufferevent_get_output(c->bev), in, len);
        req_free(w, r);
        client_deliver(c);
        return;
    }
    netio_move(r->reply, in, len);
    owed_done(w, r);
}

static int owed_wanted(const struct req *r)
{
    return r->client != NULL;
}

static void owed_wrote(struct req *r, struct backend *b)
{
    if (r->client)
        client_note_write(r->client, b);
}

const struct req_sink client_sink = {.done = owed_done, .wanted = owed_wanted, .wrote = owed_wrote, .take = owed_take};

void client_deliver(struct client *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct req *r;
    while (c->state != CLIENT_DEAD && (r = TAILQ_FIRST(&c->owed)) && r->done) {
        if (output_full(c, out))
            break;
        TAILQ_REMOVE(&c->owed, r, owed);
        c->nowed--;
        c->held -= evbuffer_get_length(r->reply);
        if (!r->silent) {
            metrics_add(&c->w->metrics.bytes_out, evbuffer_get_length(r->reply));
            evbuffer_add_buffer(out, r->reply);
        }
        req_free(c->w, r);
    }
    /* Replies held behind a slow request count too: they are memory the
     * client's pipeline pins, whether or not it reads. */
    if (c->state != CLIENT_DEAD && c->held > c->w->conf->output_buffer_limit) {
        log_notice("client id=%llu addr=%s closed: %zu bytes of replies wait behind a slow request "
                   "(client.output_buffer_limit)",
                   (unsigned long long)c->id, c->addr, c->held);
        client_set_state(c, CLIENT_DEAD);
    }
    if (c->state == CLIENT_THROTTLED && c->nowed <= CLIENT_MAX_OWED / 2) {
        client_set_state(c, CLIENT_READING);
        event_active(c->resume, EV_READ, 0);
    }
    if (c->state == CLIENT_DEAD || (client_closing(c) && c->nowed == 0))
        event_active(c->resume, EV_READ, 0);
    if (evbuffer_get_length(out) > 0)
        event_active(c->flush, EV_READ, 0); /* once per loop turn however often asked */
}

/* All output so far is written (or below the pause watermark): what waited
 * for that may go on. */
static void output_drained(struct client *c)
{
    if (client_closing(c)) {
        client_finish_closing(c);
        return;
    }
    if (c->state == CLIENT_PAUSED) {
        client_set_state(c, CLIENT_READING);
        c->ops->input(c);
    }
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    /* Replies still owed after a busy turn likely come in the next one
     * (a pipeline's keys lie on several nodes): written together, they
     * cost the client one read instead of two. */
    if (c->nowed > 0 && !client_closing(c) &&
        worker_hold_flush(c->w, c->flush, what, evbuffer_get_length(bufferevent_get_output(c->bev))))
        return;
    int rc = netio_flush(c->bev, c->tls);
    if (rc < 0) {
        log_debug("client id=%llu addr=%s: write failed: %s", (unsigned long long)c->id, c->addr,
                  netio_error(c->tls));
        client_free(c);
    }
    else if (rc == 0)
        output_drained(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE); /* direct writes again */
    output_drained(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct client *c = arg;
    /* The bufferevent only writes: a write error, or a write timeout. */
    log_debug("client id=%llu addr=%s: %s", (unsigned long long)c->id, c->addr,
              (what & BEV_EVENT_TIMEOUT) ? "write timed out" : "write failed");
    client_free(c);
}
