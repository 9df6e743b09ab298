/*
 * topo: topology discovery, see topo.h.
 *
 * One connection at a time, kept open between refreshes (a refresh is then
 * one round trip): netio reads and writes it (plain or TLS, as the workers'
 * connections), hiredis's reader parses the replies. Sources are tried in turn: the nodes of the last
 * map, masters first, then the configured seeds; a source that fails sends
 * the next attempt to the next one, and once every source has failed in a
 * row the attempts back off up to refresh_interval.
 */
#include "daemon/topo.h"
#include "base/clock.h"
#include "model/slotmap.h"

#include "model/cmd.h"
#include "model/nodecmd.h"

#include "model/conf.h"
#include "base/log.h"
#include "loop/metrics.h"
#include "base/netio.h"
#include "daemon/thread.h"
#include "model/shared.h"
#include "model/tls.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPO_MIN_GAP_MS 100   /* refreshes asked for by workers: at most one per this */
#define TOPO_BACKOFF_MIN_MS 100
#define TOPO_PENDING_MAX 8    /* commands a connection has in flight at most (attempt() sends 6) */
#define TOPO_READ_MAX 65536

struct topo;
typedef void topo_reply_fn(struct topo *t, redisReply *reply, const char *priv);

/* The control plane's connection to one node; replies come in the order
 * of the commands. */
struct topo_link {
    struct bufferevent *bev;
    struct netio_tls *tls;
    struct event *rev;
    redisReader *reader;
    struct {
        topo_reply_fn *fn;
        const char *priv;
    } pending[TOPO_PENDING_MAX];
    unsigned head, npending;
    unsigned connected : 1;
};

struct topo {
    struct shared *shared;
    struct event_base *base;
    struct event *timer;     /* the next attempt: periodic, retry or debounced */
    struct event *kick;      /* activated by topo_request_refresh() */
    struct event *deadline;  /* the attempt under way must finish by then */
    struct topo_link *link;  /* NULL between connections */
    uint64_t link_gen;       /* counts links: a callback that dropped its own is seen by the reader */
    struct evdns_base *dns;  /* looks seed names up without blocking; NULL before the first */
    char src_host[SLOTMAP_ADDR_MAX];
    int src_port;
    int inflight;
    atomic_int wanted;
    size_t next_source;
    int failures;            /* in a row */
    struct slotmap *cur;
    uint64_t version;
    int want_commands;       /* ask COMMAND after the next CLUSTER NODES: at start, after a change */
    uint64_t last_start_us;
};

/* ---- refreshing ---- */

static void schedule(struct topo *t, uint64_t ms)
{
    struct timeval tv = conf_timeval(ms);
    evtimer_add(t->timer, &tv);
}

/* Closes T's connection; what it still owes is forgotten, uncalled. */
static void drop_connection(struct topo *t)
{
    struct topo_link *l = t->link;
    t->link = NULL;
    if (l == NULL)
        return;
    if (l->rev)
        event_free(l->rev);
    netio_tls_free(l->tls);
    if (l->bev)
        bufferevent_free(l->bev);
    if (l->reader)
        redisReaderFree(l->reader);
    free(l);
}

static const struct slotmap_node *find_node(const struct slotmap *m, const char *id)
{
    for (size_t i = 0; i < m->nnodes; i++)
        if (strcmp(m->nodes[i].id, id) == 0)
            return &m->nodes[i];
    return NULL;
}

/* A line for what an operator wants to know of a change: nodes that
 * became masters or replicas, failed or recovered, moved; slot ranges that
 * changed owner (the first few). */
static void report_changes(const struct slotmap *old, const struct slotmap *m)
{
    for (size_t i = 0; i < m->nnodes; i++) {
        const struct slotmap_node *n = &m->nodes[i], *o = find_node(old, n->id);
        if (o == NULL) {
            log_notice("topology: node %.8s %s:%d joined as a %s", n->id, n->host, n->port,
                       n->is_master ? "master" : "replica");
            continue;
        }
        if (o->is_master != n->is_master)
            log_notice("topology: node %.8s %s:%d is now a %s (failover)", n->id, n->host, n->port,
                       n->is_master ? "master" : "replica");
        if (o->failing != n->failing)
            log_notice("topology: node %.8s %s:%d %s", n->id, n->host, n->port,
                       n->failing ? "is flagged failing" : "is no longer flagged failing");
        if (strcmp(o->host, n->host) != 0 || o->port != n->port)
            log_notice("topology: node %.8s moved from %s:%d to %s:%d", n->id, o->host, o->port, n->host, n->port);
    }
    for (size_t i = 0; i < old->nnodes; i++)
        if (find_node(m, old->nodes[i].id) == NULL)
            log_notice("topology: node %.8s %s:%d left", old->nodes[i].id, old->nodes[i].host, old->nodes[i].port);
    int ranges = 0;
    for (int s = 0; s < SLOT_COUNT && ranges < 8; s++) {
        const char *a = old->owner[s] >= 0 ? old->nodes[old->owner[s]].id : "", *b = m->owner[s] >= 0 ? m->nodes[m->owner[s]].id : "";
        if (strcmp(a, b) == 0)
            continue;
        int e = s;
        while (e + 1 < SLOT_COUNT) {
            const char *a2 = old->owner[e + 1] >= 0 ? old->nodes[old->owner[e + 1]].id : "";
            const char *b2 = m->owner[e + 1] >= 0 ? m->nodes[m->owner[e + 1]].id : "";
            if (strcmp(a2, a) != 0 || strcmp(b2, b) != 0)
                break;
            e++;
        }
        const struct slotmap_node *to = m->owner[s] >= 0 ? &m->nodes[m->owner[s]] : NULL;
        if (to)
            log_notice("topology: slots %d-%d moved from %.8s to %.8s at %s:%d", s, e, a[0] ? a : "nobody", b, to->host,
                       to->port);
        else
            log_notice("topology: slots %d-%d lost their master %.8s", s, e, a);
        ranges++;
        s = e;
    }
}

static void publish(struct topo *t, struct slotmap *m)
{
    if (slotmap_same(t->cur, m)) {
        slotmap_unref(m);
        return;
    }
    size_t masters = 0, moved = 0;
    for (size_t i = 0; i < m->nnodes; i++)
        masters += m->nodes[i].is_master;
    for (int s = 0; t->cur && s < SLOT_COUNT; s++) {
        int a = t->cur->owner[s], b = m->owner[s];
        moved += (a < 0) != (b < 0) ||
                 (a >= 0 && b >= 0 && strcmp(t->cur->nodes[a].id, m->nodes[b].id) != 0);
    }
    m->version = ++t->version;
    if (t->cur) {
        log_notice("topology changed (version %llu): %zu masters, %zu nodes, %zu/%d slots assigned, %zu slots "
                   "changed owner",
                   (unsigned long long)m->version, masters, m->nnodes, m->nassigned, SLOT_COUNT, moved);
        report_changes(t->cur, m);
    }
    else
        log_notice("topology learned from %s:%d: %zu masters, %zu nodes, %zu/%d slots assigned", t->src_host,
                   t->src_port, masters, m->nnodes, m->nassigned, SLOT_COUNT);
    slotmap_unref(t->cur);
    t->cur = slotmap_ref(m);
    t->want_commands = 1; /* a node of a new version may have joined */
    shared_set_map(t->shared, m); /* takes our reference */
    thread_post_all(t->shared, THREAD_TOPO);
}

static void attempt_done(struct topo *t, int ok)
{
    const struct conf *cf = t->shared->conf;
    t->inflight = 0;
    event_del(t->deadline);
    if (ok) {
        metrics_add(&t->shared->refreshes_ok, 1);
        atomic_store_explicit(&t->shared->map_ok_us, clock_us(), memory_order_relaxed);
        t->failures = 0;
        schedule(t, atomic_exchange(&t->wanted, 0) ? TOPO_MIN_GAP_MS : cf->refresh_interval_ms);
        return;
    }
    metrics_add(&t->shared->refreshes_failed, 1);
    t->failures++;
    t->next_source++;
    size_t sources = (t->cur ? t->cur->nnodes : 0) + cf->seeds.n;
    if ((size_t)t->failures < sources) {
        schedule(t, 0); /* the next source may answer */
        return;
    }
    int rounds = t->failures - (int)sources; /* every source has failed: back off */
    if (t->cur == NULL)
        if (atomic_exchange(&t->shared->seeds_failed, 1) == 0)
            thread_post_all(t->shared, THREAD_TOPO);
    uint64_t ms = (uint64_t)TOPO_BACKOFF_MIN_MS << (rounds < 10 ? rounds : 10);
    schedule(t, ms < cf->refresh_interval_ms ? ms : cf->refresh_interval_ms);
}

/* The nodes' own command table: what the generated one lacks is learned
 * (nodecmd.h), so that commands of newer nodes are routed by their keys. */
static void on_command(struct topo *t, redisReply *r, const char *priv)
{
    struct nodecmd_table *learned = nodecmd_build(r);
    if (learned == NULL) {
        log_warning("topology: COMMAND from %s:%d: not a command table (or out of memory)", t->src_host, t->src_port);
        return;
    }
    struct nodecmd_table *old = shared_cmds(t->shared);
    if (old == NULL || old->n != learned->n) {
        char names[160] = "";
        for (size_t i = 0, o = 0; i < learned->n && o + 1 < sizeof(names); i++)
            o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s", i ? " " : "", learned->specs[i].name);
        log_notice("topology: the nodes know %zu command%s respgate's table lacks%s%s", learned->n,
                   learned->n == 1 ? "" : "s", learned->n ? ", routed by their keys: " : "", names);
    }
    nodecmd_unref(old);
    shared_set_cmds(t->shared, learned);
    thread_post_all(t->shared, THREAD_TOPO);
}

static int link_command(struct topo *t, topo_reply_fn *fn, const char *priv, const char *fmt, ...);
static void link_lost(struct topo *t, const char *why);

static void on_nodes(struct topo *t, redisReply *reply, const char *priv)
{
    if (reply->type != REDIS_REPLY_STRING) {
        log_warning("topology: CLUSTER NODES from %s:%d failed: %.200s", t->src_host, t->src_port,
                    reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply type");
        link_lost(t, NULL);
        return;
    }
    char err[160];
    struct slotmap *m = slotmap_parse(reply->str, reply->len, t->src_host, err, sizeof(err));
    if (m == NULL) {
        log_warning("topology: %s:%d: %s", t->src_host, t->src_port, err);
        link_lost(t, NULL);
        return;
    }
    publish(t, m);
    if (t->want_commands && link_command(t, on_command, NULL, "COMMAND") == 0)
        t->want_commands = 0;
    attempt_done(t, 1);
}

/* The nodes' version, for HELLO and INFO, asked once per connection. */
static void on_info(struct topo *t, redisReply *reply, const char *priv)
{
    if (reply->type != REDIS_REPLY_STRING)
        return;
    const char *v = strstr(reply->str, "redis_version:");
    if (v) {
        char version[32];
        v += strlen("redis_version:");
        size_t n = strcspn(v, "\r\n");
        snprintf(version, sizeof(version), "%.*s", (int)(n < sizeof(version) ? n : sizeof(version) - 1), v);
        shared_set_redis_version(t->shared, version);
    }
}

/* A millisecond setting of the nodes from CONFIG GET's [name, value]
 * into *MS, logged when it changes. PRIV names it. */
static void on_node_ms(struct topo *t, redisReply *reply, const char *priv)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    atomic_uint_fast64_t *into = strcmp(priv, "lua-time-limit") == 0 ? &t->shared->busy_threshold_ms
                                                                        : &t->shared->node_timeout_ms;
    uint64_t ms = strtoull(reply->element[1]->str, NULL, 10);
    if (ms > 0 && ms != atomic_exchange(into, ms))
        log_info("topology: the nodes' %s is %llums", priv, (unsigned long long)ms);
}

static void on_auth(struct topo *t, redisReply *reply, const char *priv)
{
    if (reply->type != REDIS_REPLY_ERROR)
        return;
    log_error("topology: AUTH to %s:%d failed: %.200s (check cluster.username and cluster.password)", t->src_host,
              t->src_port, reply->str);
    link_lost(t, NULL); /* CLUSTER NODES then fails too */
}

/* ---- the connection ---- */

/* T's connection is gone (WHY, for the log; NULL when said already): the
 * attempt under way has failed. */
static void link_lost(struct topo *t, const char *why)
{
    int connected = t->link && t->link->connected;
    drop_connection(t);
    if (why)
        log_warning("topology: %s %s:%d: %s", connected ? "connection lost to" : "cannot connect to", t->src_host,
                    t->src_port, why);
    if (t->inflight)
        attempt_done(t, 0);
}

/* Queues a command (hiredis's format) whose reply goes to FN, and writes
 * it at once if connected. Returns 0, or -1 (out of memory, or too many
 * pending). */
__attribute__((format(printf, 4, 5))) static int link_command(struct topo *t, topo_reply_fn *fn, const char *priv,
                                                               const char *fmt, ...)
{
    struct topo_link *l = t->link;
    if (l == NULL || l->npending == TOPO_PENDING_MAX)
        return -1;
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return -1;
    int rc = evbuffer_add(bufferevent_get_output(l->bev), cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (rc < 0)
        return -1;
    unsigned at = (l->head + l->npending++) % TOPO_PENDING_MAX;
    l->pending[at].fn = fn;
    l->pending[at].priv = priv;
    if (l->connected && netio_flush(l->bev, l->tls) < 0) {
        link_lost(t, netio_error(l->tls));
        return -1;
    }
    return 0;
}

static void on_link_read(evutil_socket_t fd, short what, void *arg)
{
    struct topo *t = arg;
    struct topo_link *l = t->link;
    int n = netio_read(l->bev, l->tls, TOPO_READ_MAX);
    if (n == NETIO_AGAIN)
        return;
    if (n <= 0) {
        link_lost(t, n == 0 ? "the node closed the connection" : netio_error(l->tls));
        return;
    }
    struct evbuffer *in = bufferevent_get_input(l->bev);
    struct evbuffer_iovec v[8];
    int nv = evbuffer_peek(in, -1, NULL, v, 8);
    for (int i = 0; i < nv && i < 8; i++)
        redisReaderFeed(l->reader, v[i].iov_base, v[i].iov_len);
    size_t fed = 0;
    for (int i = 0; i < nv && i < 8; i++)
        fed += v[i].iov_len;
    evbuffer_drain(in, fed);
    uint64_t gen = t->link_gen;
    void *reply;
    for (;;) {
        if (redisReaderGetReply(l->reader, &reply) != REDIS_OK) {
            link_lost(t, "a reply respgate cannot parse");
            return;
        }
        if (reply == NULL)
            break;
        if (l->npending == 0) {
            freeReplyObject(reply);
            link_lost(t, "a reply nobody asked for");
            return;
        }
        topo_reply_fn *fn = l->pending[l->head].fn;
        const char *priv = l->pending[l->head].priv;
        l->head = (l->head + 1) % TOPO_PENDING_MAX;
        l->npending--;
        fn(t, reply, priv);
        freeReplyObject(reply);
        if (t->link_gen != gen || t->link == NULL)
            return; /* FN dropped the connection */
    }
    if (evbuffer_get_length(in) > 0 || netio_tls_buffered(l->tls))
        event_active(l->rev, EV_READ, 0); /* more than 8 chains, or read already by TLS */
}

static void on_link_written(struct bufferevent *bev, void *arg)
{
    bufferevent_disable(bev, EV_WRITE); /* direct writes again (netio.h) */
}

static void on_link_event(struct bufferevent *bev, short what, void *arg)
{
    struct topo *t = arg;
    struct topo_link *l = t->link;
    const struct conf *cf = t->shared->conf;
    if (!(what & BEV_EVENT_CONNECTED)) {
        int dns = bufferevent_socket_get_dns_error(bev);
        link_lost(t, dns ? evutil_gai_strerror(dns)
                         : (what & BEV_EVENT_TIMEOUT) ? "timed out"
                         : (what & BEV_EVENT_EOF) ? "the node closed the connection"
                                                  : netio_error(l->tls));
        return;
    }
    evutil_socket_t fd = bufferevent_getfd(bev);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    netio_keepalive(fd, (unsigned)(cf->tcp_keepalive_ms / 1000));
    bufferevent_disable(bev, EV_WRITE);
    l->connected = 1;
    l->rev = event_new(t->base, fd, EV_READ | EV_PERSIST, on_link_read, t);
    if (l->rev == NULL || event_add(l->rev, NULL) < 0) {
        link_lost(t, "out of memory");
        return;
    }
    if (cf->cluster_tls) {
        struct tls_ctxs *ctxs = shared_tls(t->shared);
        l->tls = netio_tls_new(bev, ctxs->cluster, 0, cf->cluster_tls_verify_name ? t->src_host : NULL);
        tls_ctxs_unref(ctxs); /* the session keeps its context */
        if (l->tls == NULL) {
            link_lost(t, "out of memory");
            return;
        }
    }
    if (netio_flush(bev, l->tls) < 0)
        link_lost(t, netio_error(l->tls));
}

/* Opens T's connection to its source; the commands queued meanwhile go
 * once it is connected. Returns 0, or -1 (said why). */
static int link_open(struct topo *t)
{
    struct topo_link *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -1;
    t->link = l;
    t->link_gen++;
    if (t->dns == NULL)
        t->dns = evdns_base_new(t->base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    struct timeval tv = conf_timeval(t->shared->conf->connect_timeout_ms);
    l->reader = redisReaderCreate();
    l->bev = bufferevent_socket_new(t->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (l->reader == NULL || l->bev == NULL) {
        drop_connection(t);
        return -1;
    }
    bufferevent_setcb(l->bev, NULL, on_link_written, on_link_event, t);
    bufferevent_set_timeouts(l->bev, NULL, &tv); /* bounds the connect */
    if (bufferevent_socket_connect_hostname(l->bev, t->dns, AF_UNSPEC, t->src_host, t->src_port) < 0) {
        int dns = bufferevent_socket_get_dns_error(l->bev);
        log_warning("topology: cannot connect to %s:%d: %s", t->src_host, t->src_port,
                    dns ? evutil_gai_strerror(dns) : netio_error(NULL));
        drop_connection(t);
        return -1;
    }
    return 0;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct topo *t = arg;
    log_warning("topology: no answer from %s:%d in time", t->src_host, t->src_port);
    drop_connection(t);
    attempt_done(t, 0);
}

/* Picks the next source: the last map's masters, its other nodes, then the seeds. */
static void pick_source(struct topo *t)
{
    const struct conf *cf = t->shared->conf;
    size_t nmap = t->cur ? t->cur->nnodes : 0, total = nmap + cf->seeds.n;
    size_t i = t->next_source % total;
    if (i < nmap) {
        /* masters first: order the map's nodes by role on the fly */
        size_t seen = 0;
        for (int pass = 0; pass < 2; pass++)
            for (size_t j = 0; j < nmap; j++)
                if (t->cur->nodes[j].is_master == (pass == 0) && seen++ == i) {
                    snprintf(t->src_host, sizeof(t->src_host), "%s", t->cur->nodes[j].host);
                    t->src_port = t->cur->nodes[j].port;
                    return;
                }
    }
    const struct conf_addr *a = &cf->seeds.v[i - nmap];
    snprintf(t->src_host, sizeof(t->src_host), "%s", a->host);
    t->src_port = a->port;
}

static void attempt(struct topo *t)
{
    const struct conf *cf = t->shared->conf;
    if (t->inflight)
        return;
    evtimer_del(t->timer);
    atomic_store(&t->wanted, 0);
    t->last_start_us = clock_us();
    if (t->link == NULL) {
        pick_source(t);
        if (link_open(t) < 0) {
            t->inflight = 1;
            attempt_done(t, 0);
            return;
        }
        if (cf->cluster_password && cf->cluster_username)
            link_command(t, on_auth, NULL, "AUTH %s %s", cf->cluster_username, cf->cluster_password);
        else if (cf->cluster_password)
            link_command(t, on_auth, NULL, "AUTH %s", cf->cluster_password);
        link_command(t, on_info, NULL, "INFO server");
        /* One parameter each: 6.2 takes no more (compat.h) */
        link_command(t, on_node_ms, "cluster-node-timeout", "CONFIG GET cluster-node-timeout");
        link_command(t, on_node_ms, "lua-time-limit", "CONFIG GET lua-time-limit");
    }
    t->inflight = 1;
    if (link_command(t, on_nodes, NULL, "CLUSTER NODES") < 0) {
        link_lost(t, t->link ? "out of memory" : NULL);
        return;
    }
    struct timeval tv = conf_timeval(cf->connect_timeout_ms + cf->backend_timeout_ms);
    evtimer_add(t->deadline, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    attempt(arg);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct topo *t = arg;
    if (t->inflight)
        return; /* `wanted` stays set: attempt_done schedules the next one soon */
    uint64_t ms = (clock_us() - t->last_start_us) / 1000;
    schedule(t, ms >= TOPO_MIN_GAP_MS ? 0 : TOPO_MIN_GAP_MS - ms);
}

void topo_request_refresh(struct topo *t)
{
    if (atomic_exchange(&t->wanted, 1) == 0)
        event_active(t->kick, EV_READ, 0);
}

struct topo *topo_new(struct event_base *base, struct shared *shared)
{
    struct topo *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->shared = shared;
    t->base = base;
    t->timer = evtimer_new(t->base, on_timer, t);
    t->deadline = evtimer_new(t->base, on_deadline, t);
    t->kick = event_new(t->base, -1, 0, on_kick, t);
    t->want_commands = 1;
    if (t->timer == NULL || t->deadline == NULL || t->kick == NULL) {
        topo_free(t);
        return NULL;
    }
    schedule(t, 0);
    return t;
}

void topo_free(struct topo *t)
{
    if (t == NULL)
        return;
    drop_connection(t);
    if (t->timer)
        event_free(t->timer);
    if (t->deadline)
        event_free(t->deadline);
    if (t->kick)
        event_free(t->kick);
    if (t->dns)
        evdns_base_free(t->dns, 1);
    slotmap_unref(t->cur);
    free(t);
}
