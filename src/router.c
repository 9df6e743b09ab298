/*
 * router: routing policy, see router.h.
 *
 * A keyed command goes to the master its slot's owner is in this worker's
 * table; every key must hash to the same slot (Redis Cluster's own rule,
 * answered with its own -CROSSSLOT words). MOVED patches the table for that
 * slot and asks the control thread for a fresh map; ASK resends once with
 * ASKING and leaves the table alone. Replies reach the client through its
 * FIFO, so their order is the requests' order whatever the nodes do.
 */
#include "router.h"
#include "pubsub.h"
#include "session.h"

#include "backend.h"
#include "client.h"
#include "cmd.h"
#include "compat.h"
#include "conf.h"
#include "fanout.h"
#include "local.h"
#include "log.h"
#include "nodecmd.h"
#include "req.h"
#include "resp.h"
#include "server.h"
#include "slot.h"
#include "topo.h"
#include "worker.h"
#include "server.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS_ON_STACK 64

/* Redis's replies to an unknown command, and to an unknown subcommand of PARENT. */
static void fail_unknown(struct worker *w, struct req *r, const struct resp_req *q, const struct cmd_spec *parent)
{
    const struct compat_texts *t = compat_texts(w->version);
    char name[129], arg[129], args[300] = "";
    resp_arg_printable(r->buf, &q->argv[0], name, sizeof(name));
    if (parent) {
        for (char *p = name; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        resp_arg_printable(r->buf, &q->argv[1], arg, sizeof(arg));
        if (t->subcommand_table)
            req_fail(w, r, "ERR unknown subcommand '%s'. Try %s HELP.", arg, name);
        else
            req_fail(w, r, "ERR Unknown subcommand or wrong number of arguments for '%s'. Try %s HELP.", arg, name);
        return;
    }
    size_t o = 0;
    for (size_t i = 1; i < q->argc && o < 128; i++)
        o += (size_t)snprintf(args + o, sizeof(args) - o, "%s%s%s", t->quote,
                              resp_arg_printable(r->buf, &q->argv[i], arg, sizeof(arg)), t->arg_end);
    req_fail(w, r, "ERR unknown command %s%s%s, with args beginning with: %s", t->quote, name, t->quote, args);
}

/* Redis's arity error for CMD (arguments Q), as the cluster's version words it. */
static void fail_arity(struct worker *w, struct req *r, const struct resp_req *q, const struct cmd_spec *cmd)
{
    const char *bar = strchr(cmd->name, '|');
    if (bar == NULL || compat_texts(w->version)->subcommand_table) {
        req_fail(w, r, "ERR wrong number of arguments for '%s' command", cmd->name);
        return;
    }
    char parent[64], sub[129];
    size_t n = (size_t)(bar - cmd->name) < sizeof(parent) - 1 ? (size_t)(bar - cmd->name) : sizeof(parent) - 1;
    for (size_t i = 0; i < n; i++)
        parent[i] = (char)toupper((unsigned char)cmd->name[i]);
    parent[n] = '\0';
    req_fail(w, r, "ERR Unknown subcommand or wrong number of arguments for '%s'. Try %s HELP.",
                resp_arg_printable(r->buf, &q->argv[1], sub, sizeof(sub)), parent);
}

static int arity_ok(const struct cmd_spec *cmd, size_t argc)
{
    return cmd->arity >= 0 ? argc == (size_t)cmd->arity : argc >= (size_t)-cmd->arity;
}

int router_any_slot(struct worker *w)
{
    for (int i = 0; i < SLOT_COUNT; i++) {
        w->next_keyless = (w->next_keyless + 997) % SLOT_COUNT; /* 997 is coprime with 16384 */
        if (w->owner[w->next_keyless])
            return w->next_keyless;
    }
    return -1;
}

/* The argument indexes of R's keys: in STACK (KEYS_ON_STACK long) or in
 * a malloc'ed array, at *KEYS. Returns how many, -1 for a request malformed
 * for its key specs (its node will say so), or -2 if out of memory. */
static int find_keys(struct req *r, const struct cmd_spec *cmd, const struct resp_req *q, size_t *stack,
                     size_t **keys)
{
    *keys = stack;
    int n = cmd_keys(cmd, r->buf, q, stack, KEYS_ON_STACK);
    if (n > KEYS_ON_STACK) {
        /* Only a command with many keys pays for the array. */
        if ((*keys = malloc((size_t)n * sizeof(**keys))) == NULL)
            return -2;
        n = cmd_keys(cmd, r->buf, q, *keys, (size_t)n);
    }
    return n;
}

/* The slot of the first of R's N keys, if all N share it; -2 if not. */
static int common_slot(struct req *r, const struct resp_req *q, const size_t *keys, int n)
{
    int slot = (int)slot_of_arg(r->buf, &q->argv[keys[0]]);
    for (int i = 1; i < n; i++)
        if ((int)slot_of_arg(r->buf, &q->argv[keys[i]]) != slot)
            return -2;
    return slot;
}

int router_keys_slot(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    size_t stack[KEYS_ON_STACK], *keys;
    if (q->argc > KEYS_ON_STACK)
        evbuffer_pullup(r->buf, -1);
    int n = find_keys(r, cmd, q, stack, &keys);
    int slot = n == -2 ? -3 : n <= 0 ? -1 : common_slot(r, q, keys, n);
    if (keys != stack)
        free(keys);
    (void)w;
    return slot;
}

/* Routes keyed request R: to the slot of its keys, or, when they are in
 * several slots, split (CMD_SPLIT) or refused with Redis's CROSSSLOT. */
static void route_by_keys(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    size_t stack[KEYS_ON_STACK], *keys;
    /* Safe to send again after a lost connection, and to a replica. */
    r->readonly = (cmd->flags & (CMDF_READONLY | CMDF_WRITE)) == CMDF_READONLY;
    int n = find_keys(r, cmd, q, stack, &keys);
    int slot = n == -2 ? -3 : n <= 0 ? router_any_slot(w) : common_slot(r, q, keys, n);
    if (slot == -2 && cmd->kind == CMD_SPLIT)
        fanout_split(w, r, cmd, q, keys, (size_t)n);
    else if (slot == -2)
        req_fail(w, r, "CROSSSLOT Keys in request don't hash to the same slot");
    else if (slot == -3)
        req_fail(w, r, REQ_OUT_OF_MEMORY);
    else if (slot < 0)
        req_fail(w, r, "CLUSTERDOWN Hash slot not served");
    else
        router_send(w, r, slot);
    if (keys != stack)
        free(keys);
}

/* Parks R to be sent again on the worker's next retry tick. */
static void park(struct worker *w, struct req *r);

long router_masters(struct worker *w, struct router_master **out)
{
    struct router_master *m = NULL;
    size_t n = 0, cap = 0;
    for (int s = 0; s < SLOT_COUNT; s++) {
        struct backend *b = w->owner[s];
        if (b == NULL || (s > 0 && w->owner[s - 1] == b))
            continue;
        size_t i = 0;
        while (i < n && m[i].b != b)
            i++;
        if (i < n)
            continue;
        if (n == cap) {
            struct router_master *bigger = realloc(m, (cap = cap ? cap * 2 : 8) * sizeof(*m));
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

void router_note_moved(struct worker *w, unsigned slot, struct backend *to)
{
    w->owner[slot] = to;
    w->replica[slot] = NULL; /* the slot's replicas are known again with the next map */
    worker_request_refresh(w);
}

/* Where a read of SLOT goes under cluster.read_policy: a replica of its
 * master when one is known and not backing off (replica: always;
 * prefer-replica: for every other slot, so the master serves too), else
 * the master itself. */
static struct backend *read_target(struct worker *w, int slot)
{
    struct backend *rb = w->replica[slot];
    if (rb == NULL || !backend_usable(rb))
        return w->owner[slot];
    /* prefer-replica: half the slots read from the master, so a key's reads
     * always go to the same node and never step back in time. */
    if (w->conf->read_policy == READ_PREFER_REPLICA && (slot & 1))
        return w->owner[slot];
    return rb;
}

void router_send(struct worker *w, struct req *r, int slot)
{
    struct backend *b = r->readonly && !r->master_only && w->owner[slot] ? read_target(w, slot) : w->owner[slot];
    if (b == NULL) {
        req_fail(w, r, "CLUSTERDOWN Hash slot not served");
        return;
    }
    r->slot = (uint16_t)slot;
    client_awaits(r);
    if (r->write) {
        struct client *c = r->kind == REQ_PART ? r->parent->client : r->client;
        if (c)
            client_note_write(c, b);
    }
    int rc = backend_send(b, r);
    if (rc == -EAGAIN) {
        park(w, r); /* the node's connection is backing off: wait for it or a new map, bounded */
    } else if (rc < 0) {
        req_fail(w, r, "CLUSTERDOWN respgate cannot reach %s:%d, the node serving slot %d", b->host, b->port, slot);
    }
}

void router_dispatch(struct client *c, struct req *r, const struct resp_req *q)
{
    struct worker *w = c->w;
    const struct cmd_spec *cmd = cmd_find(r->buf, q);
    if (cmd == NULL || (cmd->nsubs && q->argc > 1)) {
        /* not in the generated table: perhaps in the nodes' own */
        const struct cmd_spec *learned = nodecmd_find(w->learned, r->buf, q);
        cmd = learned ? learned : cmd;
    }

    if (cmd && c->sub) {
        /* Whether C is subscribed, which decides what it may run, is known
         * once its subscription commands are confirmed. */
        char buf[200];
        const char *no;
        if (!pubsub_owns(c, cmd) && pubsub_pending(c)) {
            c->hold = r;
            return;
        }
        if ((no = pubsub_refusal(c, cmd, buf, sizeof(buf)))) {
            req_fail(w, r, "%s", no);
            return;
        }
    }
    /* Inside MULTI, the session's own commands are queued too, except
     * those Redis runs at once. */
    if (cmd && cmd->kind == CMD_LOCAL && !(c->sub && pubsub_owns(c, cmd)) &&
        (!c->multi || strcmp(cmd->name, "quit") == 0 || strcmp(cmd->name, "reset") == 0)) {
        if (local_dispatch(c, r, q) == 0)
            req_complete(w, r);
        return;
    }
    if (!client_authed(c)) {
        req_fail(w, r, "NOAUTH Authentication required.");
        return;
    }
    if (cmd == NULL || (cmd->nsubs && q->argc > 1)) {
        /* cmd_find gives the parent when argv[1] names none of its subcommands */
        c->multi_failed |= c->multi; /* as Redis: EXEC will abort */
        fail_unknown(w, r, q, cmd);
        return;
    }
    if (!arity_ok(cmd, q->argc)) {
        c->multi_failed |= c->multi;
        fail_arity(w, r, q, cmd);
        return;
    }
    if (cmd->kind == CMD_REFUSED && !c->multi) {
        req_fail(w, r, "ERR respgate does not forward '%s': %s", cmd->name, cmd->why);
        return;
    }
    if (w->map == NULL && !atomic_load(&w->srv->seeds_failed)) {
        c->hold = r; /* until the first map, or every seed failed (worker.c) */
        return;
    }
    if (w->map == NULL) {
        c->multi_failed |= c->multi;
        req_fail(w, r, "CLUSTERDOWN The cluster is down");
        return;
    }
    /* Redis runs one connection's commands one after another. Here they
     * run on a shared connection or on a private one (session.h), and the
     * two do not wait for each other: so a command for a private one waits
     * until those before it are answered, a command after one waits for
     * it, and a blocking command waits for everything before it. */
    int session = session_owns(c, cmd, r->buf, q);
    int pinned = session || pubsub_owns(c, cmd);
    int blocks = session && !c->multi && cmd_blocks(cmd, r->buf, q);
    if (pinned ? c->nshared > 0 || (blocks && c->npinned > 0) : c->npinned > 0) {
        c->hold = r;
        return;
    }
    if (session) {
        session_dispatch(c, r, cmd, q);
        return;
    }
    if (pinned) {
        pubsub_dispatch(c, r, cmd, q);
        return;
    }
    r->write = (cmd->flags & CMDF_WRITE) != 0;
    if (cmd->kind == CMD_BROADCAST) {
        fanout_broadcast(w, r, cmd, q);
        return;
    }
    if (cmd->kind == CMD_PUBSUB) { /* PUBLISH, PUBSUB CHANNELS/NUMSUB/NUMPAT */
        int slot = pubsub_slot(w);
        if (slot < 0)
            req_fail(w, r, "CLUSTERDOWN Hash slot not served");
        else
            router_send(w, r, slot);
        return;
    }
    /* Finding an argument in a frame of many chains walks the chains before
     * it; a request with many arguments is made contiguous once instead. */
    if (q->argc > KEYS_ON_STACK)
        evbuffer_pullup(r->buf, -1);
    route_by_keys(w, r, cmd, q);
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
        const struct topo_node *n = &w->map->nodes[i];
        if (n->port == rd->port && n->name[0] && strcmp(n->name, rd->host) == 0)
            return n->host;
    }
    return rd->host;
}

int router_take_redirect(struct backend *from, struct evbuffer *in, size_t len, struct resp_redirect *rd,
                         struct backend **to)
{
    struct worker *w = from->w;
    char line[320];
    resp_first_line(in, len, line, sizeof(line));
    if (line[0] != '-' || resp_parse_redirect(line + 1, strlen(line + 1), rd) < 0)
        return 0;
    evbuffer_drain(in, len);
    atomic_fetch_add_explicit(&w->stats.redirects, 1, memory_order_relaxed);
    /* A node that does not know its own address answers with an empty host. */
    *to = router_backend(w, redirect_host(w, from, rd), rd->port);
    if (*to && !rd->ask)
        router_note_moved(w, rd->slot, *to);
    else if (*to == NULL)
        worker_request_refresh(w);
    return 1;
}

/* Follows the MOVED or ASK RD to TO: R is sent again, or answered. */
static void redirect(struct worker *w, struct req *r, const struct resp_redirect *rd, struct backend *to)
{
    if (++r->redirects > ROUTER_MAX_REDIRECTS) {
        /* The nodes disagree for now (a slot being handed over, one node
         * told before the other): wait for them, as for a failover. */
        log_debug("slot %u: more than %d redirections in a row; the request waits for the nodes to agree", rd->slot,
                  ROUTER_MAX_REDIRECTS);
        r->redirects = 0;
        worker_request_refresh(w);
        park(w, r);
        return;
    }
    if (to == NULL) {
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    if (!rd->ask) {
        router_send(w, r, (int)rd->slot);
        return;
    }
    struct req *asking = req_new(w, REQ_ASKING, NULL);
    if (asking == NULL) {
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    evbuffer_add(asking->buf, "*1\r\n$6\r\nASKING\r\n", 16);
    if (backend_send(to, asking) < 0) {
        req_free(w, asking);
        req_fail(w, r, "CLUSTERDOWN respgate cannot reach %s:%d, the node importing slot %u", to->host, to->port,
                 rd->slot);
        return;
    }
    if (backend_send(to, r) < 0)
        req_fail(w, r, "CLUSTERDOWN respgate cannot reach %s:%d", to->host, to->port);
}

/* Now on W's clock, in milliseconds. */
static uint64_t now_ms(struct worker *w)
{
    struct timeval now;
    event_base_gettimeofday_cached(w->base, &now);
    return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_usec / 1000;
}

static void park(struct worker *w, struct req *r)
{
    static const struct timeval tick = {0, ROUTER_RETRY_MS * 1000};
    if (w->nparked >= ROUTER_MAX_PARKED) {
        req_fail(w, r, "CLUSTERDOWN respgate: %d requests already wait for the cluster", ROUTER_MAX_PARKED);
        return;
    }
    /* A request waits, from the first time it has to, for as long as a
     * failover may take (cluster.failover_wait): a new map sends it on. */
    if (r->deadline_ms == 0)
        r->deadline_ms = now_ms(w) + server_failover_wait_ms(w->srv, w->conf);
    r->parked = 1;
    w->nparked++;
    atomic_fetch_add_explicit(&w->stats.parked, 1, memory_order_relaxed);
    TAILQ_INSERT_TAIL(&w->parked, r, inflight);
    if (!evtimer_pending(w->retry_timer, NULL))
        evtimer_add(w->retry_timer, &tick);
}

void router_on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct req_list due = TAILQ_HEAD_INITIALIZER(due);
    TAILQ_CONCAT(&due, &w->parked, inflight);
    w->nparked = 0;
    uint64_t now = now_ms(w);
    struct req *r;
    while ((r = TAILQ_FIRST(&due))) {
        TAILQ_REMOVE(&due, r, inflight);
        r->parked = 0;
        if (!req_wanted(r)) {
            req_fail(w, r, REQ_CLIENT_LEFT);
        } else if (now >= r->deadline_ms) {
            atomic_fetch_add_explicit(&w->stats.expired, 1, memory_order_relaxed);
            struct backend *b = w->owner[r->slot];
            req_fail(w, r, "CLUSTERDOWN respgate: slot %u was not served within %llums "
                              "(cluster.failover_wait); last tried %s:%d",
                        r->slot, (unsigned long long)server_failover_wait_ms(w->srv, w->conf), b ? b->host : "none",
                        b ? b->port : 0);
        } else {
            atomic_fetch_add_explicit(&w->stats.retries, 1, memory_order_relaxed);
            router_send(w, r, r->slot);
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
static void shared_reply(struct backend *from, struct req *r, struct evbuffer *in, size_t len, char type)
{
    struct worker *w = from->w;
    if (!req_wanted(r)) {
        evbuffer_drain(in, len);
        req_fail(w, r, REQ_CLIENT_LEFT);
        return;
    }
    struct resp_redirect rd;
    struct backend *to;
    if (type == '-' && router_take_redirect(from, in, len, &rd, &to)) {
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
    evbuffer_remove_buffer(in, r->reply, len);
    req_complete(w, r);
}

/* R was on shared connection B when it was lost: a request that never
 * reached the node, or a read, goes again (parked until a connection or a
 * new map, at most failover_wait); a write that may have run fails. */
static void shared_lost(struct backend *b, struct req *r, int sent, const char *why)
{
    if (req_owned(r) && req_wanted(r) && (!sent || r->readonly) && !r->pinned && !b->auth_failed)
        park(b->w, r);
    else
        backend_fail_lost(b, r, sent, why);
}

static void shared_node_down(struct backend *b)
{
    worker_request_refresh(b->w);
}

static const struct backend_ops shared_ops = {
    .reply = shared_reply,
    .lost = shared_lost,
    .node_down = shared_node_down,
};

struct backend *router_backend(struct worker *w, const char *host, int port)
{
    return backend_get(w, &shared_ops, host, port);
}
