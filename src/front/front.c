/*
 * front: the client's side of a request, see front.h.
 *
 * Reading is bounded per wake-up (CLIENT_BATCH frames) so one pipelining
 * client cannot starve the others on its worker; what is left is picked up
 * by the client's resume event on the next loop turn.
 */
#include "front/front.h"
#include "base/clock.h"

#include "base/guard.h"
#include "base/log.h"
#include "base/netio.h"
#include "base/proxyproto.h"
#include "base/resp.h"
#include "model/conf.h"
#include "model/shared.h"
#include "loop/metrics.h"
#include "loop/req.h"
#include "loop/worker.h"
#include "conn/client.h"
#include "path/pubsub.h"
#include "path/session.h"
#include "path/tracking.h"
#include "front/dispatch.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLIENT_BATCH 128
#define CLIENT_READ_MAX 16384         /* bytes per read(2), as libevent's */
#define CLIENT_QUERY_MAX (1ull << 30) /* unprocessed input per client, as Redis's client-query-buffer-limit */

/* Protected mode: with no client password, a client that is not local gets
 * a DENIED error, as from Redis, and is closed. Returns 1 if C was refused. */
static int refused_by_protected_mode(struct client *c)
{
    const struct conf *cf = c->w->conf;
    if (!cf->protected_mode || !conf_default_open(cf) || guard_is_local(c->addr))
        return 0;
    if (guard_tally(&c->w->shared->guard->protected_refused, clock_ms()))
        log_warning("refused client addr=%s: protected mode, as no client.password is set (set one, or "
                    "protected_mode: no on a trusted network); one line a second at most", c->addr);
    resp_add_error(bufferevent_get_output(c->bev),
                   "DENIED respgate is running in protected mode because protected mode is enabled and no password "
                   "is set for the default user. In this mode connections are only accepted from the loopback "
                   "interface and unix sockets. To accept clients from other hosts, set client.password in "
                   "respgate's configuration, or set protected_mode: no if the network is trusted, then reload "
                   "respgate.");
    client_close_soon(c);
    event_active(c->flush, EV_READ, 0);
    return 1;
}

static void on_auth_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    if (client_authed(c) || client_closing(c))
        return;
    atomic_fetch_add_explicit(&c->w->shared->guard->auth_timeouts, 1, memory_order_relaxed);
    log_info("client id=%llu addr=%s closed: not authenticated within client.auth_timeout (%llu ms)",
             (unsigned long long)c->id, c->addr, (unsigned long long)c->w->conf->auth_timeout_ms);
    client_set_state(c, CLIENT_DEAD);
}

/* Turns the inline request in R->buf into a multibulk frame and rescans it,
 * so everything after this sees one format. Returns NULL, or the protocol
 * error to answer. */
static const char *normalize_inline(struct client *c, struct req *r, const struct resp_limits *lim)
{
    size_t len = c->scan.inline_len;
    struct evbuffer *mb = evbuffer_new();
    const char *line = (const char *)evbuffer_pullup(r->buf, (ev_ssize_t)len);
    int argc = mb && (line || len == 0) ? resp_inline_to_multibulk(line ? line : "", len, mb) : -1;
    evbuffer_drain(r->buf, evbuffer_get_length(r->buf));
    if (mb) {
        evbuffer_add_buffer(r->buf, mb);
        evbuffer_free(mb);
    }
    resp_req_reset(&c->scan);
    if (argc < 0)
        return "Protocol error: unbalanced quotes in request";
    /* Well formed by construction, but the limits still apply. */
    if (argc > 0 && resp_req_scan(&c->scan, r->buf, lim, 0) != RESP_FRAME)
        return c->scan.error ? c->scan.error : "Protocol error: invalid inline request";
    return NULL;
}

/* Owes C one last reply, the error WHY, and starts closing. */
static void fail_and_close(struct client *c, const char *why)
{
    struct req *r = req_new(c->w, REQ_CLIENT, &client_sink);
    if (r) {
        r->client = c;
        TAILQ_INSERT_TAIL(&c->owed, r, owed);
        c->nowed++;
        req_fail(c->w, r, "ERR %s", why);
    }
    client_close_soon(c);
}

/* A listener with proxy-protocol: C's first bytes must be a PROXY header,
 * which gives C the address of the client behind the proxy. Returns 1 once
 * it is read, 0 while it is incomplete, -1 if C is refused for it. */
static int read_proxy_header(struct client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    unsigned char buf[PROXYPROTO_MAX];
    size_t n = evbuffer_copyout(in, buf, sizeof(buf));
    struct proxyproto_result pr;
    char why[128];
    int rc = proxyproto_parse(buf, n, &pr, why, sizeof(why));
    if (rc == 0 && !c->eof)
        return 0;
    if (rc == 0 && n == 0) { /* a connection that only checked the port */
        client_set_state(c, CLIENT_DEAD);
        return -1;
    }
    if (rc <= 0) {
        log_notice("client id=%llu addr=%s closed: %s, on a listener that expects one (proxy-protocol)",
                   (unsigned long long)c->id, c->addr, rc == 0 ? "a PROXY protocol header cut off" : why);
        client_set_state(c, CLIENT_DEAD);
        return -1;
    }
    evbuffer_drain(in, (size_t)rc);
    c->proxy_header = 0;
    client_reading(c, 1); /* the idle timeout, instead of the header's */
    if (!pr.local) {
        char proxy[sizeof(c->addr)];
        memcpy(proxy, c->addr, sizeof(proxy));
        client_format_addr((const struct sockaddr *)&pr.src, c->addr, sizeof(c->addr));
        log_debug("client id=%llu addr=%s through the proxy at %s (PROXY v%d)", (unsigned long long)c->id, c->addr,
                  proxy, pr.version);
    }
    return refused_by_protected_mode(c) ? -1 : 1; /* judged by the client's address, not the proxy's */
}

/* Whether C must stop reading for now: its unread output passed
 * CLIENT_PAUSE_OUTPUT (reading resumes once it drains), or it has
 * CLIENT_MAX_OWED requests in flight (client_deliver resumes it). */
static int back_pressure(struct client *c, struct evbuffer *out)
{
    if (evbuffer_get_length(out) >= CLIENT_PAUSE_OUTPUT) {
        client_set_state(c, CLIENT_PAUSED);
        return 1;
    }
    if (c->nowed >= CLIENT_MAX_OWED) {
        client_set_state(c, CLIENT_THROTTLED);
        return 1;
    }
    return 0;
}

/* The frame C's scan found at the front of IN becomes a request, owed in
 * order and dispatched; an empty one gets no reply, as in Redis. Returns
 * 0, or -1 once C owes an error and is closing. */
static int take_request(struct client *c, struct evbuffer *in, const struct resp_limits *lim)
{
    struct req *r = req_new(c->w, REQ_CLIENT, &client_sink);
    if (r == NULL) {
        fail_and_close(c, "respgate: out of memory");
        return -1;
    }
    evbuffer_remove_buffer(in, r->buf, c->scan.frame_len);
    const char *bad = c->scan.is_inline ? normalize_inline(c, r, lim) : NULL;
    if (bad) {
        req_free(c->w, r);
        fail_and_close(c, bad);
        return -1;
    }
    if (c->scan.argc == 0) {
        req_free(c->w, r);
        return 0;
    }
    r->client = c;
    r->resp3 = c->proto == 3;
    r->start_us = worker_turn_us(c->w);
    r->silent = c->reply_mode != CLIENT_REPLY_ON;
    if (c->reply_mode == CLIENT_REPLY_SKIP)
        c->reply_mode = CLIENT_REPLY_ON;
    TAILQ_INSERT_TAIL(&c->owed, r, owed);
    c->nowed++;
    dispatch_request(c, r, &c->scan);
    return 0;
}

/* Handles the frames waiting in the input, CLIENT_BATCH at most. Never frees
 * C; what must follow runs from its resume event. */
static void process_input(struct client *c)
{
    if (c->proxy_header && read_proxy_header(c) <= 0)
        return;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const struct conf *cf = c->w->conf;
    const struct resp_limits lim = {cf->max_bulk_len, cf->max_inline_len, cf->max_multibulk_len};

    for (int n = 0; n < CLIENT_BATCH && !client_closing(c) && !c->hold; n++) {
        if (back_pressure(c, out))
            return;
        enum resp_status st = resp_req_scan(&c->scan, in, &lim, !client_authed(c));
        if (st == RESP_PARTIAL && c->eof) {
            client_close_soon(c); /* what is left was cut off by EOF: never run it */
            break;
        }
        if (st == RESP_PARTIAL && evbuffer_get_length(in) > CLIENT_QUERY_MAX) {
            log_notice("client id=%llu addr=%s closed: over 1 GiB of input not yet a whole request",
                       (unsigned long long)c->id, c->addr);
            client_set_state(c, CLIENT_DEAD);
            break;
        }
        if (st == RESP_PARTIAL)
            return;
        if (st == RESP_ERROR) {
            log_info("client id=%llu addr=%s: %s; closing", (unsigned long long)c->id, c->addr, c->scan.error);
            fail_and_close(c, c->scan.error);
            break;
        }
        if (take_request(c, in, &lim) < 0)
            break;
        resp_req_reset(&c->scan);
    }
    if (c->hold)
        return; /* resumed once the requests it waits for are answered */
    if (client_closing(c) || evbuffer_get_length(in) > 0)
        event_active(c->resume, EV_READ, 0);
}

/* Dispatches C's held request again (it waited for the requests before
 * it); it may be held once more. */
static void release_hold(struct client *c)
{
    struct req *r = c->hold;
    struct resp_req q = {0};
    const struct conf *cf = c->w->conf;
    const struct resp_limits lim = {cf->max_bulk_len, cf->max_inline_len, cf->max_multibulk_len};
    c->hold = NULL;
    if (resp_req_scan(&q, r->buf, &lim, 0) == RESP_FRAME)
        dispatch_request(c, r, &q); /* the frame was scanned whole once: it scans again */
    else
        req_fail(c->w, r, "ERR respgate: cannot rescan a held request");
    resp_req_deinit(&q);
}

/* C's read failed, in its TLS handshake unless WAS_READY: a line says
 * why (a refused handshake at notice, one a second at most), and C goes. */
static void read_failed(struct client *c, int was_ready)
{
    if (!was_ready && guard_tally(&c->w->shared->guard->tls_refused, clock_ms()))
        log_notice("client id=%llu addr=%s refused: TLS handshake failed: %s (at most one such line a second)",
                   (unsigned long long)c->id, c->addr, netio_error(c->tls));
    else if (!was_ready)
        log_debug("client id=%llu addr=%s refused: TLS handshake failed: %s", (unsigned long long)c->id, c->addr,
                  netio_error(c->tls));
    else
        log_debug("client id=%llu addr=%s: read failed: %s", (unsigned long long)c->id, c->addr,
                  netio_error(c->tls));
    client_free(c);
}

/* C's socket is readable, or its read timed out (WHAT has EV_TIMEOUT). */
static void sock_read(struct client *c, short what)
{
    if ((what & EV_TIMEOUT) && c->state != CLIENT_LINGERING && (c->npinned > 0 || pubsub_subscribed(c))) {
        client_reading(c, 1); /* waiting on a blocking command or for messages is not being idle (as in Redis) */
        return;
    }
    if (what & EV_TIMEOUT) {
        log_debug("client id=%llu addr=%s: %s", (unsigned long long)c->id, c->addr,
                  c->state == CLIENT_LINGERING ? "no EOF after ours" : "idle timeout");
        client_free(c);
        return;
    }
    int was_ready = netio_tls_ready(c->tls);
    int n = netio_read(c->bev, c->tls, CLIENT_READ_MAX);
    if (!was_ready && netio_tls_ready(c->tls)) {
        if (c->state == CLIENT_CLOSING) { /* its last words waited for the handshake: they go now */
            client_reading(c, 0);
            event_active(c->flush, EV_READ, 0);
        } else {
            client_reading(c, 1); /* the idle timeout, instead of the handshake's */
        }
    }
    if (n == NETIO_AGAIN)
        return;
    if (n < 0) {
        read_failed(c, was_ready);
        return;
    }
    if (c->state == CLIENT_CLOSING) { /* read for the handshake only: nothing more is taken */
        struct evbuffer *in = bufferevent_get_input(c->bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    if (c->state == CLIENT_LINGERING) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        if (n == 0 || worker_turn_us(c->w) > c->linger_until_us)
            client_free(c); /* its EOF; or a peer that keeps sending does not keep its session */
        return;
    }
    if (n == 0) {
        /* A half-closed client is done: answer every whole request it sent
         * (process_input goes on without reading), never what EOF cut off. */
        log_debug("client id=%llu addr=%s sent EOF", (unsigned long long)c->id, c->addr);
        c->eof = 1;
        session_cancel_blocking(c, "the client closed its connection");
        client_reading(c, 0);
        event_active(c->resume, EV_READ, 0);
        return;
    }
    metrics_add(&c->w->metrics.bytes_in, (uint64_t)n);
    worker_note_read(c->w, &c->read_turn);
    process_input(c);
    if (netio_tls_buffered(c->tls) && event_pending(c->rev, EV_READ, NULL))
        event_active(c->rev, EV_READ, 0); /* read already, waiting in the TLS session */
}

/* C's resume event: its held request, its input, its end. */
static void resume(struct client *c)
{
    /* A held AUTH waits for its timer, and a write for its import
     * (migrate.h), whatever else wakes C. */
    if (c->hold && c->state != CLIENT_DEAD && c->hold->fetch == NULL && !(c->auth.wait && evtimer_pending(c->auth.wait, NULL)))
        release_hold(c);
    if (c->state == CLIENT_DEAD)
        client_free(c);
    else if (c->hold)
        return;
    else if (client_closing(c))
        client_finish_closing(c);
    else if (c->state == CLIENT_READING)
        process_input(c);
}

/* What the client object leaves to the layers above when it goes. */
static void closing(struct client *c)
{
    pubsub_reset(c);
    tracking_reset(c);
    session_end(c);
}

static const struct client_ops front_ops = {
    .read = sock_read,
    .resume = resume,
    .input = process_input,
    .closing = closing,
    .subscribed = pubsub_subscribed,
};

void front_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen, int proxy_protocol,
                  struct ssl_ctx_st *tls)
{
    struct shared *sh = w->shared;
    const struct conf *cf = w->conf;

    int refused = atomic_fetch_add(&sh->nclients, 1) >= cf->max_clients;
    struct client *c = client_new(w, fd, sa, proxy_protocol, tls, &front_ops);
    if (c == NULL) {
        log_error("cannot accept a client: out of memory");
        atomic_fetch_sub(&sh->nclients, 1);
        return;
    }
    if (refused) {
        /* Redis's words. The client still gets a session, just long enough
         * to read them. */
        atomic_fetch_add_explicit(&sh->rejected_max_clients, 1, memory_order_relaxed);
        log_info("refused client id=%llu addr=%s: client.max_clients (%llu) reached", (unsigned long long)c->id,
                 c->addr, (unsigned long long)cf->max_clients);
        resp_add_error(bufferevent_get_output(c->bev), "ERR max number of clients reached");
        client_close_soon(c);
        event_active(c->flush, EV_READ, 0);
        return;
    }
    log_debug("client id=%llu addr=%s connected", (unsigned long long)c->id, c->addr);
    if (!c->proxy_header && refused_by_protected_mode(c))
        return;
    if (cf->client_password && cf->auth_timeout_ms) {
        struct timeval tv = conf_timeval(cf->auth_timeout_ms);
        if ((c->auth.timer = evtimer_new(w->base, on_auth_timeout, c)) != NULL)
            evtimer_add(c->auth.timer, &tv);
    }
}

