/*
 * admin: /healthz and /metrics over HTTP, see admin.h.
 */
#include "daemon/admin.h"
#include "base/clock.h"

#include "model/conf.h"
#include "base/log.h"
#include "loop/metrics.h"
#include "migrate/migrate.h"
#include "daemon/prom.h"
#include "model/shared.h"
#include "base/slot.h"
#include "model/slotmap.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct admin {
    struct shared *shared;
    struct evhttp *http;
    struct evhttp_connection *conns[ADMIN_MAX_CONNECTIONS]; /* those served, until they close */
};

/* How old the map may be before /healthz fails: one and a half refresh
 * intervals, so that one late refresh is not a failure. */
static uint64_t stale_after_us(const struct conf *cf)
{
    return (uint64_t)cf->refresh_interval_ms * 1500;
}

/* The first run of slots whose master is flagged failing in M, into WHY;
 * returns how many slots such masters serve. */
static size_t failing_slots(const struct slotmap *m, char *why, size_t len)
{
    size_t n = 0;
    for (int s = 0; s < SLOT_COUNT; s++) {
        const struct slotmap_node *o = m->owner[s] >= 0 ? &m->nodes[m->owner[s]] : NULL;
        if (o == NULL || !o->failing)
            continue;
        if (n++ == 0)
            snprintf(why, len, "the master of slot %d, %s:%d, is flagged failing", s, o->host, o->port);
    }
    return n;
}

int admin_health(struct shared *sh, char *why, size_t len)
{
    if (sh->stopping) {
        snprintf(why, len, "draining: respgate is shutting down");
        return 0;
    }
    struct slotmap *m = shared_map(sh);
    if (m == NULL) {
        snprintf(why, len, "no slot map yet: no seed has answered CLUSTER NODES");
        return 0;
    }
    struct conf *cf = shared_conf(sh);
    uint64_t ok = atomic_load_explicit(&sh->map_ok_us, memory_order_relaxed), now = clock_us();
    uint64_t age_ms = ok && now > ok ? (now - ok) / 1000 : 0;
    size_t masters = 0, failing;
    for (size_t i = 0; i < m->nnodes; i++)
        masters += m->nodes[i].is_master;
    int healthy = 0;
    if (now - ok > stale_after_us(cf))
        snprintf(why, len, "the slot map is %llums old: no node answered CLUSTER NODES since (cluster.refresh_interval "
                           "is %llums)",
                 (unsigned long long)age_ms, (unsigned long long)cf->refresh_interval_ms);
    else if (m->nassigned < SLOT_COUNT)
        snprintf(why, len, "%zu of %d slots have no master", SLOT_COUNT - m->nassigned, SLOT_COUNT);
    else if ((failing = failing_slots(m, why, len)) > 0)
        (void)failing;
    else {
        healthy = 1;
        snprintf(why, len, "ok: %d slots on %zu masters, slot map %llums old", SLOT_COUNT, masters,
                 (unsigned long long)age_ms);
    }
    conf_unref(cf);
    slotmap_unref(m);
    return healthy;
}

static void forget_connection(struct evhttp_connection *evcon, void *arg)
{
    struct admin *d = arg;
    for (size_t i = 0; i < ADMIN_MAX_CONNECTIONS; i++)
        if (d->conns[i] == evcon)
            d->conns[i] = NULL;
}

/* Counts REQ's connection among those served. Returns 0, or -1 if there
 * are ADMIN_MAX_CONNECTIONS others already. */
static int track(struct admin *d, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    size_t free_at = ADMIN_MAX_CONNECTIONS;
    for (size_t i = 0; i < ADMIN_MAX_CONNECTIONS; i++) {
        if (d->conns[i] == evcon)
            return 0;
        if (d->conns[i] == NULL && free_at == ADMIN_MAX_CONNECTIONS)
            free_at = i;
    }
    if (free_at == ADMIN_MAX_CONNECTIONS)
        return -1;
    d->conns[free_at] = evcon;
    evhttp_connection_set_closecb(evcon, forget_connection, d);
    return 0;
}

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        /* evhttp would send the body after a HEAD's headers: the length only. */
        char len[24];
        snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
        evhttp_add_header(h, "Content-Length", len);
        evbuffer_drain(body, evbuffer_get_length(body));
    }
    evhttp_send_reply(req, code, reason, body);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct admin *d = arg;
    struct evbuffer *body = evbuffer_new();
    if (body == NULL) {
        evhttp_send_error(req, 500, "Out of memory");
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (track(d, req) < 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        evbuffer_add_printf(body, "too many admin connections (%d)\n", ADMIN_MAX_CONNECTIONS);
        reply(req, 503, "Service Unavailable", "text/plain", body);
    } else if (path == NULL ||
               (strcmp(path, "/healthz") != 0 && strcmp(path, "/metrics") != 0 && strcmp(path, "/migration") != 0)) {
        evbuffer_add_printf(body, "not found: the paths are /healthz, /metrics and /migration\n");
        reply(req, 404, "Not Found", "text/plain", body);
    } else if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        evbuffer_add_printf(body, "method not allowed: use GET\n");
        reply(req, 405, "Method Not Allowed", "text/plain", body);
    } else if (strcmp(path, "/healthz") == 0) {
        char why[300];
        int ok = admin_health(d->shared, why, sizeof(why));
        evbuffer_add_printf(body, "%s\n", why);
        reply(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "text/plain", body);
    } else if (strcmp(path, "/migration") == 0) {
        struct conf *cf = shared_conf(d->shared);
        migrate_status(cf, body);
        conf_unref(cf);
        reply(req, 200, "OK", "text/plain; charset=utf-8", body);
    } else {
        prom_render(d->shared, body);
        reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
    }
    evbuffer_free(body);
}

struct admin *admin_start(struct event_base *base, struct shared *shared, const struct conf_addr *a)
{
    char where[CONF_HOST_MAX + 16];
    conf_addr_str(a, where, sizeof(where));
    struct admin *d = calloc(1, sizeof(*d));
    if (d == NULL || (d->http = evhttp_new(base)) == NULL) {
        log_error("admin.listen %s: out of memory", where);
        free(d);
        return NULL;
    }
    d->shared = shared;
    /* Every method reaches on_request, which answers 405 itself. */
    evhttp_set_allowed_methods(d->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_timeout(d->http, ADMIN_TIMEOUT_S);
    evhttp_set_max_headers_size(d->http, 8192);
    evhttp_set_max_body_size(d->http, 4096);
    evhttp_set_gencb(d->http, on_request, d);
    if (evhttp_bind_socket_with_handle(d->http, a->host, (ev_uint16_t)a->port) == NULL) {
        log_error("admin.listen %s: cannot listen: %s", where, strerror(errno));
        admin_stop(d);
        return NULL;
    }
    log_notice("admin endpoint on http://%s (/healthz, /metrics, /migration)", where);
    return d;
}

void admin_stop(struct admin *d)
{
    if (d == NULL)
        return;
    evhttp_free(d->http);
    free(d);
}
