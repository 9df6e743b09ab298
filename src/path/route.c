/*
 * route: where a worker's requests go, see route.h.
 *
 * A keyed command goes to the master its slot's owner is in this worker's
 * table; MOVED patches the table for that slot and asks the control thread
 * for a fresh map; ASK resends once with ASKING and leaves the table
 * alone. A request that cannot be served now (TRYAGAIN, LOADING,
 * CLUSTERDOWN, a node backing off) is parked and sent again every
 * ROUTE_RETRY_MS until cluster.failover_wait ends.
 */
#include "path/route.h"

#include "conn/backend.h"
#include "model/cmd.h"
#include "model/conf.h"
#include "base/compat.h"
#include "base/log.h"
#include "loop/req.h"
#include "base/resp.h"
#include "model/shared.h"
#include "base/slot.h"
#include "model/slotmap.h"
#include "loop/worker.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The slot tables hold 16-bit indexes into to[], not pointers: 64 KiB
 * for both instead of 256, so that the line a request's slot looks up is
 * more often in cache (with random keys, every lookup is a fresh line). */
struct route {
    uint16_t owner[SLOT_COUNT];   /* where each slot's requests go: to[owner[s]] */
    uint16_t replica[SLOT_COUNT]; /* a replica of that master for reads (read_policy), or 0 */
    struct backend **to;          /* every backend a slot went to; to[0] is NULL */
    size_t nto, capto;
    int next_keyless;                    /* spreads keyless requests over the masters */
    struct req_list parked;              /* requests waiting to be sent again */
    size_t nparked;
    struct event *retry_timer;
    /* Waits that failed (fail_overdue) are logged one line per
     * ROUTE_EXPIRED_LOG_MS at most: the first at once, those after it in a
     * summary when that time is up. */
    struct event *failed_timer;          /* writes the summary */
    uint64_t failed_quiet_until_ms;      /* no line before then */
    size_t nfailed, nfailed_bounced;     /* failed since the last line; of them, bounced between nodes */
    uint16_t failed_slot;                /* the last one's slot */
    route_missed_fn *missed;             /* the migration's hook (route_set_missed), or NULL */
    int stopped;                         /* route_stop: a request sent from now on fails (worker exit) */
};

static void on_retry(evutil_socket_t fd, short what, void *arg);
static void on_failed_summary(evutil_socket_t fd, short what, void *arg);

void route_set_missed(struct worker *w, route_missed_fn *fn)
{
    w->route->missed = fn;
}

int route_init(struct worker *w)
{
    struct route *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -1;
    TAILQ_INIT(&t->parked);
    t->retry_timer = evtimer_new(w->base, on_retry, w);
    t->failed_timer = evtimer_new(w->base, on_failed_summary, w);
    t->to = calloc(t->capto = 16, sizeof(*t->to));
    t->nto = 1;
    if (t->retry_timer == NULL || t->failed_timer == NULL || t->to == NULL) {
        if (t->retry_timer)
            event_free(t->retry_timer);
        if (t->failed_timer)
            event_free(t->failed_timer);
        free(t->to);
        free(t);
        return -1;
    }
    w->route = t;
    return 0;
}

void route_stop(struct worker *w)
{
    struct route *t = w->route;
    struct req *r;
    if (t)
        t->stopped = 1;
    while (t && (r = TAILQ_FIRST(&t->parked))) {
        TAILQ_REMOVE(&t->parked, r, inflight);
        r->parked = 0;
        t->nparked--;
        req_fail(w, r, REQ_SHUTTING_DOWN);
    }
}

void route_free(struct worker *w)
{
    if (w->route == NULL)
        return;
    event_free(w->route->retry_timer);
    event_free(w->route->failed_timer);
    free(w->route->to);
    free(w->route);
    w->route = NULL;
}

/* The master SLOT's requests go to, or NULL. */
static inline struct backend *owner_at(const struct route *t, int slot)
{
    return t->to[t->owner[slot]];
}

/* The index of B in T's to[], added if new; 0 for NULL, or when out of
 * memory (the slot then counts as unserved, and says so). */
static uint16_t index_of(struct route *t, struct backend *b)
{
    if (b == NULL)
        return 0;
    for (size_t i = 1; i < t->nto; i++)
        if (t->to[i] == b)
            return (uint16_t)i;
    if (t->nto == t->capto) {
        struct backend **more = t->capto < UINT16_MAX ? realloc(t->to, 2 * t->capto * sizeof(*more)) : NULL;
        if (more == NULL) {
            log_error("routing: out of memory for node %s:%d; its slots go unserved until the next map", b->host,
                      b->port);
            return 0;
        }
        t->to = more;
        t->capto = 2 * t->capto > UINT16_MAX ? UINT16_MAX : 2 * t->capto;
    }
    t->to[t->nto] = b;
    return (uint16_t)t->nto++;
}

struct backend *route_owner(struct worker *w, int slot)
{
    return slot >= 0 && slot < SLOT_COUNT ? owner_at(w->route, slot) : NULL;
}

/* Reads may go to replicas (cluster.read_policy): each slot gets one of its
 * master's replicas that is not flagged failing, spread over them by slot. */
static void apply_replicas(struct worker *w, const struct slotmap *m)
{
    int policy = w->conf->read_policy;
    for (int s = 0; s < SLOT_COUNT; s++) {
        w->route->replica[s] = 0;
        if (policy == READ_MASTER || m->owner[s] < 0)
            continue;
        size_t n = 0, pick;
        for (size_t i = 0; i < m->nnodes; i++)
            n += m->nodes[i].master == m->owner[s] && !m->nodes[i].is_master && !m->nodes[i].failing;
        if (n == 0)
            continue;
        pick = (size_t)s % n;
        for (size_t i = 0; i < m->nnodes; i++) {
            const struct slotmap_node *r = &m->nodes[i];
            if (r->master != m->owner[s] || r->is_master || r->failing || pick-- > 0)
                continue;
            struct backend *b = route_backend(w, r->host, r->port);
            if ((w->route->replica[s] = index_of(w->route, b)))
                backend_set_readonly(b);
            break;
        }
    }
}

int route_apply_map(struct worker *w, const struct slotmap *m)
{
    uint16_t *by_node = calloc(m->nnodes + 1, sizeof(*by_node));
    if (by_node == NULL)
        return -1;
    for (size_t i = 0; i < m->nnodes; i++)
        if (m->nodes[i].is_master)
            by_node[i] = index_of(w->route, route_backend(w, m->nodes[i].host, m->nodes[i].port));
    for (int s = 0; s < SLOT_COUNT; s++)
        w->route->owner[s] = m->owner[s] >= 0 ? by_node[m->owner[s]] : 0;
    free(by_node);
    apply_replicas(w, m);
    if (!TAILQ_EMPTY(&w->route->parked))
        event_active(w->route->retry_timer, EV_TIMEOUT, 0); /* what waited for this map goes now */
    return 0;
}

int route_any_slot(struct worker *w)
{
    for (int i = 0; i < SLOT_COUNT; i++) {
        w->route->next_keyless = (w->route->next_keyless + 997) % SLOT_COUNT; /* 997 is coprime with 16384 */
        if (w->route->owner[w->route->next_keyless])
            return w->route->next_keyless;
    }
    return -1;
}

int route_find_keys(struct evbuffer *frame, const struct cmd_spec *cmd, const struct resp_req *q, size_t *stack,
                     size_t **keys)
{
    *keys = stack;
    int n = cmd_keys(cmd, frame, q, stack, ROUTE_KEYS_ON_STACK);
    if (n > ROUTE_KEYS_ON_STACK) {
        /* Only a command with many keys pays for the array. */
        if ((*keys = malloc((size_t)n * sizeof(**keys))) == NULL)
            return ROUTE_KEYS_NOMEM;
        n = cmd_keys(cmd, frame, q, *keys, (size_t)n);
    }
    return n;
}

int route_common_slot(struct req *r, const struct resp_req *q, const size_t *keys, int n)
{
    int slot = (int)slot_of_arg(r->buf, &q->argv[keys[0]]);
    for (int i = 1; i < n; i++)
        if ((int)slot_of_arg(r->buf, &q->argv[keys[i]]) != slot)
            return ROUTE_KEYS_CROSS;
    return slot;
}

int route_keys_slot(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    size_t stack[ROUTE_KEYS_ON_STACK], *keys;
    if (q->argc > ROUTE_KEYS_ON_STACK)
        evbuffer_pullup(r->buf, -1);
    int n = route_find_keys(r->buf, cmd, q, stack, &keys);
    int slot = n > 0 ? route_common_slot(r, q, keys, n) : n == ROUTE_KEYS_NOMEM ? n : ROUTE_KEYS_NONE;
    if (keys != stack)
        free(keys);
    (void)w;
    return slot;
}

/* Parks R to be sent again on the worker's next retry tick. */
static void park(struct worker *w, struct req *r);

long route_masters(struct worker *w, struct route_master **out)
{
    struct route_master *m = NULL;
    size_t n = 0, cap = 0;
    for (int s = 0; s < SLOT_COUNT; s++) {
        struct backend *b = owner_at(w->route, s);
        if (b == NULL || (s > 0 && w->route->owner[s - 1] == w->route->owner[s]))
            continue;
        size_t i = 0;
        while (i < n && m[i].b != b)
            i++;
        if (i < n)
            continue;
        if (n == cap) {
            struct route_master *bigger = realloc(m, (cap = cap ? cap * 2 : 8) * sizeof(*m));
            if (bigger == NULL) {
                free(m);
                return -1;
            }
            m = bigger;
        }
        m[n].b = b;
        m[n++].first = (uint16_t)s;
    }
    *out = m;
    return (long)n;
}

void route_note_moved(struct worker *w, unsigned slot, struct backend *to)
{
    w->route->owner[slot] = index_of(w->route, to);
    w->route->replica[slot] = 0; /* the slot's replicas are known again with the next map */
    worker_request_refresh(w);
}

/* Where a read of SLOT goes under cluster.read_policy: a replica of its
 * master when one is known and not backing off (replica: always;
 * prefer-replica: for every other slot, so the master serves too), else
 * the master itself. */
static struct backend *read_target(struct worker *w, int slot)
{
    struct backend *rb = w->route->to[w->route->replica[slot]];
    if (rb == NULL || !backend_usable(rb))
        return owner_at(w->route, slot);
    /* prefer-replica: half the slots read from the master, so a key's reads
     * always go to the same node and never step back in time. */
    if (w->conf->read_policy == READ_PREFER_REPLICA && (slot & 1))
        return owner_at(w->route, slot);
    return rb;
}

void route_send(struct worker *w, struct req *r, int slot)
{
    if (w->route->stopped) { /* a step of a request answered by the worker's exit (cross.h) */
        req_fail(w, r, REQ_SHUTTING_DOWN);
        return;
    }
    struct backend *b = r->readonly && !r->master_only && w->route->owner[slot] ? read_target(w, slot) : owner_at(w->route, slot);
    if (b == NULL) {
        req_fail(w, r, REQ_SLOT_NOT_SERVED);
        return;
    }
    r->slot = (uint16_t)slot;
    if (r->write)
        req_wrote(r, b);
    int rc = backend_send(b, r);
    if (rc == -EAGAIN) {
        park(w, r); /* the node's connection is backing off: wait for it or a new map, bounded */
    } else if (rc < 0) {
        req_fail(w, r, "CLUSTERDOWN respgate cannot reach %s:%d, the node serving slot %d", b->host, b->port, slot);
    }
}

/* Where a MOVED or ASK from FROM sends a request: its address, or FROM's
 * when it names none; a node's name (cluster-announce-hostname) becomes
 * the address the map has for that node, so that the node keeps one
 * backend; a name the map does not know yet is looked up (backend.c). */
static const char *redirect_host(struct worker *w, const struct backend *from, const struct resp_redirect *rd)
{
    if (rd->host[0] == '\0')
        return from->host;
    for (size_t i = 0; w->map && i < w->map->nnodes; i++) {
        const struct slotmap_node *n = &w->map->nodes[i];
        if (n->port == rd->port && n->name[0] && strcmp(n->name, rd->host) == 0)
            return n->host;
    }
    return rd->host;
}

int route_take_redirect(struct backend *from, struct evbuffer *in, size_t len, struct resp_redirect *rd,
                         struct backend **to)
{
    struct worker *w = from->w;
    char line[320];
    resp_first_line(in, len, line, sizeof(line));
    if (line[0] != '-' || resp_parse_redirect(line + 1, strlen(line + 1), rd) < 0)
        return 0;
    evbuffer_drain(in, len);
    atomic_fetch_add_explicit(&w->stats.redirects, 1, memory_order_relaxed);
    metrics_add(rd->ask ? &w->stats.asks : &w->stats.moved, 1);
    /* A node that does not know its own address answers with an empty host. */
    *to = route_backend(w, redirect_host(w, from, rd), rd->port);
    if (*to && !rd->ask)
        route_note_moved(w, rd->slot, *to);
    else if (*to == NULL)
        worker_request_refresh(w);
    return 1;
}

/* Follows the MOVED or ASK RD to TO: R is sent again, or answered. */
static void redirect(struct worker *w, struct req *r, const struct resp_redirect *rd, struct backend *to)
{
    if (++r->redirects > ROUTE_MAX_REDIRECTS) {
        /* The nodes disagree for now (a slot being handed over, one node
         * told before the other): wait for them, as for a failover. */
        log_debug("slot %u: more than %d redirections in a row; the request waits for the nodes to agree", rd->slot,
                  ROUTE_MAX_REDIRECTS);
        r->redirects = 0;
        r->bounced = 1;
        worker_request_refresh(w);
        park(w, r);
        return;
    }
    if (to == NULL) {
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    if (!rd->ask) {
        route_send(w, r, (int)rd->slot);
        return;
    }
    struct req *asking = req_new(w, REQ_ASKING, NULL);
    if (asking == NULL) {
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    evbuffer_add(asking->buf, "*1\r\n$6\r\nASKING\r\n", 16);
    asking->resp3 = r->resp3; /* on the connection R goes on */
    if (backend_send(to, asking) < 0) {
        req_free(w, asking);
        req_fail(w, r, "CLUSTERDOWN respgate cannot reach %s:%d, the node importing slot %u", to->host, to->port,
                 rd->slot);
        return;
    }
    if (backend_send(to, r) < 0)
        req_fail(w, r, "CLUSTERDOWN respgate cannot reach %s:%d", to->host, to->port);
}

static void park(struct worker *w, struct req *r)
{
    static const struct timeval tick = {0, ROUTE_RETRY_MS * 1000};
    if (w->route->nparked >= ROUTE_MAX_PARKED) {
        req_fail(w, r, "CLUSTERDOWN respgate: %d requests already wait for the cluster", ROUTE_MAX_PARKED);
        return;
    }
    /* A request waits, from the first time it has to, for as long as a
     * failover may take (cluster.failover_wait): a new map sends it on. */
    if (r->deadline_ms == 0)
        r->deadline_ms = worker_turn_ms(w) + shared_failover_wait_ms(w->shared, w->conf);
    r->parked = 1;
    w->route->nparked++;
    atomic_fetch_add_explicit(&w->stats.parked, 1, memory_order_relaxed);
    TAILQ_INSERT_TAIL(&w->route->parked, r, inflight);
    if (!evtimer_pending(w->route->retry_timer, NULL))
        evtimer_add(w->route->retry_timer, &tick);
}

/* R waited for the cluster as long as it may: it fails, and the operator
 * hears of it with the likeliest cause. Nodes that redirect a slot to each
 * other for the whole wait disagree on its owner, which gossip may never
 * repair (a slot no node claims any more): nothing respgate can do. */
static void fail_overdue(struct worker *w, struct req *r, uint64_t now)
{
    struct route *t = w->route;
    struct backend *b = owner_at(t, r->slot);
    const char *host = b ? b->host : "none";
    int port = b ? b->port : 0;
    unsigned long long wait_ms = shared_failover_wait_ms(w->shared, w->conf);
    atomic_fetch_add_explicit(&w->stats.expired, 1, memory_order_relaxed);
    if (now >= t->failed_quiet_until_ms) {
        if (r->bounced)
            log_warning("slot %u: a request failed, not served within %llums (cluster.failover_wait): the nodes "
                        "redirected it to each other (last tried %s:%d); they disagree on the slot's owner, see "
                        "CLUSTER NODES on each",
                        r->slot, wait_ms, host, port);
        else
            log_warning("slot %u: a request failed, not served within %llums (cluster.failover_wait); last tried "
                        "%s:%d",
                        r->slot, wait_ms, host, port);
        t->failed_quiet_until_ms = now + ROUTE_EXPIRED_LOG_MS;
    } else {
        t->nfailed++;
        t->nfailed_bounced += r->bounced;
        t->failed_slot = r->slot;
        if (!evtimer_pending(t->failed_timer, NULL)) {
            struct timeval tv = conf_timeval(t->failed_quiet_until_ms - now);
            evtimer_add(t->failed_timer, &tv);
        }
    }
    req_fail(w, r, "CLUSTERDOWN respgate: slot %u was not served within %llums (cluster.failover_wait); last tried "
                   "%s:%d",
             r->slot, wait_ms, host, port);
}

static void on_failed_summary(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct route *t = w->route;
    log_warning("%zu more request%s failed, not served within %llums (cluster.failover_wait), in the last %ds; the "
                "last on slot %u; %zu of them redirected between nodes that disagree on their slot's owner",
                t->nfailed, t->nfailed == 1 ? "" : "s",
                (unsigned long long)shared_failover_wait_ms(w->shared, w->conf), ROUTE_EXPIRED_LOG_MS / 1000,
                t->failed_slot, t->nfailed_bounced);
    t->nfailed = t->nfailed_bounced = 0;
    t->failed_quiet_until_ms = worker_turn_ms(w) + ROUTE_EXPIRED_LOG_MS;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct req_list due = TAILQ_HEAD_INITIALIZER(due);
    TAILQ_CONCAT(&due, &w->route->parked, inflight);
    w->route->nparked = 0;
    uint64_t now = worker_turn_ms(w);
    struct req *r;
    while ((r = TAILQ_FIRST(&due))) {
        TAILQ_REMOVE(&due, r, inflight);
        r->parked = 0;
        if (!req_wanted(r)) {
            req_fail(w, r, REQ_CLIENT_LEFT);
        } else if (now >= r->deadline_ms) {
            fail_overdue(w, r, now);
        } else {
            atomic_fetch_add_explicit(&w->stats.retries, 1, memory_order_relaxed);
            r->bounced = 0; /* what it waits for next may be another thing */
            route_send(w, r, r->slot);
        }
    }
}

/* Errors that say the command did not run and may run later: a resend is
 * safe, writes included. All but TRYAGAIN and LOADING say the map is
 * wrong or changing: a demoted master (READONLY), a replica whose master is
 * down (MASTERDOWN), a cluster that lost a master (CLUSTERDOWN). */
static int retryable(const char *line, int *refresh)
{
    static const char *const codes[] = {"-TRYAGAIN ", "-LOADING ", "-CLUSTERDOWN ", "-READONLY ", "-MASTERDOWN "};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strncmp(line, codes[i], strlen(codes[i])) == 0) {
            *refresh = i >= 2;
            return 1;
        }
    return 0;
}

/* A shared connection's reply for R. */
static void route_reply(struct backend *from, struct req *r, struct evbuffer *in, size_t len, char type)
{
    struct worker *w = from->w;
    if (!req_wanted(r)) {
        evbuffer_drain(in, len);
        req_fail(w, r, REQ_CLIENT_LEFT);
        return;
    }
    struct resp_redirect rd;
    struct backend *to;
    if (type == '-' && route_take_redirect(from, in, len, &rd, &to)) {
        redirect(w, r, &rd, to);
        return;
    }
    if (type == '-') {
        char line[320];
        resp_first_line(in, len, line, sizeof(line));
        int refresh = 0;
        if (retryable(line, &refresh)) {
            evbuffer_drain(in, len);
            r->master_only |= from->readonly; /* a replica that cannot serve: its master will */
            if (refresh)
                worker_request_refresh(w);
            park(w, r);
            return;
        }
    }
    if (r->miss && w->route->missed && w->route->missed(w, r, in, len, type))
        return; /* a read that missed during a migration: sent again once its keys are in */
    req_complete_from(w, r, in, len, type);
}

/* R was on shared connection B when it was lost: a request that never
 * reached the node, or a read, goes again (parked until a connection or a
 * new map, at most failover_wait); a write that may have run fails. */
static void route_lost(struct backend *b, struct req *r, int sent, const char *why)
{
    if (req_owned(r) && req_wanted(r) && (!sent || r->readonly) && !r->pinned && !b->auth_failed)
        park(b->w, r);
    else
        backend_fail_lost(b, r, sent, why);
}

static void route_node_down(struct backend *b)
{
    worker_request_refresh(b->w);
}

void route_note_version(struct worker *w)
{
    unsigned oldest = 0;
    for (size_t i = 0; w->map && i < w->map->nnodes; i++) {
        const struct slotmap_node *n = &w->map->nodes[i];
        struct backend *b = n->is_master ? backend_find(w, n->host, n->port) : NULL;
        if (b && b->version && (oldest == 0 || b->version < oldest))
            oldest = b->version;
    }
    if (oldest == 0) { /* no backend has answered yet: the topology connection's node */
        char text[32];
        shared_redis_version(w->shared, text, sizeof(text));
        oldest = compat_parse(text, strlen(text));
    }
    w->version = oldest;
}

static void route_versioned(struct backend *b)
{
    route_note_version(b->w);
}

static const struct backend_ops route_ops = {
    .reply = route_reply,
    .lost = route_lost,
    .node_down = route_node_down,
    .versioned = route_versioned,
};

struct backend *route_backend(struct worker *w, const char *host, int port)
{
    return backend_get(w, &route_ops, host, port);
}
