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

#include "backend.h"
#include "client.h"
#include "cmd.h"
#include "conf.h"
#include "local.h"
#include "log.h"
#include "req.h"
#include "resp.h"
#include "slot.h"
#include "topo.h"
#include "worker.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS_ON_STACK 64

static void part_done(struct worker *w, struct req *part);

void router_complete(struct worker *w, struct req *r)
{
    if (r->kind == REQ_PART) {
        part_done(w, r);
        return;
    }
    r->done = 1;
    if (r->client) {
        r->client->held += evbuffer_get_length(r->reply);
        client_deliver(r->client);
    }
    else
        req_free(w, r);
}

void router_fail(struct worker *w, struct req *r, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    evbuffer_drain(r->reply, evbuffer_get_length(r->reply));
    resp_add_error(r->reply, "%s", msg);
    router_complete(w, r);
}

/* Redis's replies to an unknown command, and to an unknown subcommand of PARENT. */
static void fail_unknown(struct worker *w, struct req *r, const struct resp_req *q, const struct cmd_spec *parent)
{
    char name[129], arg[129], args[300] = "";
    resp_arg_printable(r->buf, &q->argv[0], name, sizeof(name));
    if (parent) {
        for (char *p = name; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        router_fail(w, r, "ERR unknown subcommand '%s'. Try %s HELP.",
                    resp_arg_printable(r->buf, &q->argv[1], arg, sizeof(arg)), name);
        return;
    }
    size_t o = 0;
    for (size_t i = 1; i < q->argc && o < 128; i++)
        o += (size_t)snprintf(args + o, sizeof(args) - o, "'%s' ", resp_arg_printable(r->buf, &q->argv[i], arg, sizeof(arg)));
    router_fail(w, r, "ERR unknown command '%s', with args beginning with: %s", name, args);
}

static int arity_ok(const struct cmd_spec *cmd, size_t argc)
{
    return cmd->arity >= 0 ? argc == (size_t)cmd->arity : argc >= (size_t)-cmd->arity;
}

/* A slot for a request with no keys: any master will do, so spread them. */
static int any_slot(struct worker *w)
{
    for (int i = 0; i < SLOT_COUNT; i++) {
        w->next_keyless = (w->next_keyless + 997) % SLOT_COUNT; /* 997 is coprime with 16384 */
        if (w->owner[w->next_keyless])
            return w->next_keyless;
    }
    return -1;
}

/* The slot of R's keys, -1 for no keys, or -2 after answering CROSSSLOT. */
static int keys_slot(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    size_t stack[KEYS_ON_STACK], *keys = stack;
    int n = cmd_keys(cmd, r->buf, q, keys, KEYS_ON_STACK);
    if (n > KEYS_ON_STACK) {
        /* Only a command with many keys pays for the array. */
        keys = malloc((size_t)n * sizeof(*keys));
        if (keys == NULL) {
            router_fail(w, r, "ERR respgate: out of memory");
            return -2;
        }
        n = cmd_keys(cmd, r->buf, q, keys, (size_t)n);
    }
    int slot = n > 0 ? (int)slot_of_arg(r->buf, &q->argv[keys[0]]) : -1;
    for (int i = 1; i < n; i++) {
        if ((int)slot_of_arg(r->buf, &q->argv[keys[i]]) != slot) {
            router_fail(w, r, "CROSSSLOT Keys in request don't hash to the same slot");
            slot = -2;
            break;
        }
    }
    if (keys != stack)
        free(keys);
    return slot;
}

/* Parks R to be sent again on the worker's next retry tick. */
static void park(struct worker *w, struct req *r);

static void send_to_slot(struct worker *w, struct req *r, int slot)
{
    struct backend *b = w->owner[slot];
    if (b == NULL) {
        router_fail(w, r, "CLUSTERDOWN Hash slot not served");
        return;
    }
    r->slot = (uint16_t)slot;
    int rc = backend_send(b, r);
    if (rc == -EAGAIN && r->retries < ROUTER_MAX_RETRIES) {
        r->retries++;
        park(w, r); /* the node's connection is backing off: wait, bounded */
    } else if (rc < 0) {
        router_fail(w, r, "CLUSTERDOWN respgate cannot reach %s:%d, the node serving slot %d", b->host, b->port, slot);
    }
}

/* ---- fan-out: one request to every master, integer replies summed ---- */

/* Drops one of P's pending counts; the last completes P. */
static void fanout_release(struct worker *w, struct req *p)
{
    if (--p->pending > 0)
        return;
    if (evbuffer_get_length(p->reply) == 0)
        evbuffer_add_printf(p->reply, ":%lld\r\n", p->sum);
    router_complete(w, p);
}

/* A part's reply is in PART->reply: fold it into its parent, and complete the
 * parent when it was the last. The first error wins over the sum. */
static void part_done(struct worker *w, struct req *part)
{
    struct req *p = part->parent;
    char head[64] = "";
    size_t n = evbuffer_copyout(part->reply, head, sizeof(head) - 1);
    head[n > 0 ? n : 0] = '\0';
    if (head[0] == ':') {
        p->sum += strtoll(head + 1, NULL, 10);
    } else if (evbuffer_get_length(p->reply) == 0) {
        evbuffer_add_buffer(p->reply, part->reply);
    }
    req_free(w, part);
    fanout_release(w, p);
}

static void send_to_all_masters(struct worker *w, struct req *r)
{
    const struct slotmap *m = w->map;
    size_t sent = 0;
    /* The masters that serve slots: a failed old master still says "master". */
    unsigned char *serving = calloc(m->nnodes + 1, 1);
    if (serving == NULL) {
        router_fail(w, r, "ERR respgate: out of memory");
        return;
    }
    for (int s = 0; s < SLOT_COUNT; s++)
        if (m->owner[s] >= 0)
            serving[m->owner[s]] = 1;
    r->pending = 1; /* held while sending, so a part failing at once cannot complete R early */
    for (size_t i = 0; i < m->nnodes; i++) {
        if (!serving[i])
            continue;
        struct backend *b = backend_get(w, m->nodes[i].host, m->nodes[i].port);
        struct req *part = req_new(w, REQ_PART);
        if (b == NULL || part == NULL) {
            if (part)
                req_free(w, part);
            continue;
        }
        part->parent = r;
        r->pending++;
        sent++;
        /* A copy: a buffer made of references cannot be referenced again
         * (backend_send does), and these requests are a few bytes. */
        size_t n = evbuffer_get_length(r->buf);
        evbuffer_add(part->buf, evbuffer_pullup(r->buf, (ev_ssize_t)n), n);
        if (backend_send(b, part) < 0)
            router_fail(w, part, "CLUSTERDOWN respgate cannot reach %s:%d", b->host, b->port);
    }
    free(serving);
    if (sent == 0)
        resp_add_error(r->reply, "CLUSTERDOWN The cluster is down");
    fanout_release(w, r);
}

void router_dispatch(struct client *c, struct req *r, const struct resp_req *q)
{
    struct worker *w = c->w;
    const struct cmd_spec *cmd = cmd_find(r->buf, q);

    if (cmd && cmd->kind == CMD_LOCAL) {
        local_dispatch(c, r, q);
        router_complete(w, r);
        return;
    }
    if (!client_authed(c)) {
        router_fail(w, r, "NOAUTH Authentication required.");
        return;
    }
    if (cmd == NULL || (cmd->nsubs && q->argc > 1)) {
        /* cmd_find gives the parent when argv[1] names none of its subcommands */
        fail_unknown(w, r, q, cmd);
        return;
    }
    if (!arity_ok(cmd, q->argc)) {
        router_fail(w, r, "ERR wrong number of arguments for '%s' command", cmd->name);
        return;
    }
    switch (cmd->kind) {
    case CMD_REFUSED:
        router_fail(w, r, "ERR respgate does not forward '%s': it would act on one node of the cluster, not on the "
                       "whole of it",
                    cmd->name);
        return;
    case CMD_BROADCAST:
        /* COMMAND's answer is the same on every node. */
        if (strncmp(cmd->name, "command", 7) == 0 && (cmd->name[7] == '\0' || cmd->name[7] == '|'))
            break;
        if (strcmp(cmd->name, "dbsize") == 0) {
            if (w->map)
                send_to_all_masters(w, r);
            else
                router_fail(w, r, "CLUSTERDOWN The cluster is down");
            return;
        }
        /* fallthrough */
    case CMD_PINNED:
        router_fail(w, r, "ERR respgate does not support '%s' yet", cmd->name);
        return;
    default:
        break;
    }
    if (w->map == NULL) {
        router_fail(w, r, "CLUSTERDOWN The cluster is down");
        return;
    }
    /* Finding an argument in a frame of many chains walks the chains before
     * it; a request with many arguments is made contiguous once instead. */
    if (q->argc > KEYS_ON_STACK)
        evbuffer_pullup(r->buf, -1);
    int slot = keys_slot(w, r, cmd, q);
    if (slot == -2)
        return;
    if (slot == -1 && (slot = any_slot(w)) < 0) {
        router_fail(w, r, "CLUSTERDOWN Hash slot not served");
        return;
    }
    send_to_slot(w, r, slot);
}

/* Follows a MOVED or ASK: R is sent again, or answered. */
static void redirect(struct backend *from, struct req *r, const struct resp_redirect *rd)
{
    struct worker *w = from->w;
    if (++r->redirects > ROUTER_MAX_REDIRECTS) {
        log_warning("slot %u: more than %d redirections; the cluster's view keeps changing", rd->slot,
                    ROUTER_MAX_REDIRECTS);
        router_fail(w, r, "TRYAGAIN respgate: too many redirections for slot %u", rd->slot);
        return;
    }
    /* A node that does not know its own address answers with an empty host. */
    struct backend *to = backend_get(w, rd->host[0] ? rd->host : from->host, rd->port);
    if (to == NULL) {
        router_fail(w, r, "ERR respgate: out of memory");
        return;
    }
    if (!rd->ask) {
        w->owner[rd->slot] = to;
        worker_request_refresh(w);
        send_to_slot(w, r, (int)rd->slot);
        return;
    }
    struct req *asking = req_new(w, REQ_ASKING);
    if (asking == NULL) {
        router_fail(w, r, "ERR respgate: out of memory");
        return;
    }
    evbuffer_add(asking->buf, "*1\r\n$6\r\nASKING\r\n", 16);
    if (backend_send(to, asking) < 0) {
        req_free(w, asking);
        router_fail(w, r, "CLUSTERDOWN respgate cannot reach %s:%d, the node importing slot %u", to->host, to->port,
                    rd->slot);
        return;
    }
    if (backend_send(to, r) < 0)
        router_fail(w, r, "CLUSTERDOWN respgate cannot reach %s:%d", to->host, to->port);
}

static void park(struct worker *w, struct req *r)
{
    static const struct timeval tick = {0, ROUTER_RETRY_MS * 1000};
    r->parked = 1;
    TAILQ_INSERT_TAIL(&w->parked, r, inflight);
    if (!evtimer_pending(w->retry_timer, NULL))
        evtimer_add(w->retry_timer, &tick);
}

void router_on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct req_list due = TAILQ_HEAD_INITIALIZER(due);
    TAILQ_CONCAT(&due, &w->parked, inflight);
    struct req *r;
    while ((r = TAILQ_FIRST(&due))) {
        TAILQ_REMOVE(&due, r, inflight);
        r->parked = 0;
        if (r->client == NULL)
            req_free(w, r);
        else
            send_to_slot(w, r, r->slot);
    }
}

void router_retry(struct worker *w, struct req *r, struct backend *b, const char *why)
{
    if (r->client == NULL) {
        req_free(w, r);
    } else if (r->retries < ROUTER_MAX_RETRIES) {
        r->retries++;
        park(w, r);
    } else {
        router_fail(w, r, "CLUSTERDOWN respgate cannot reach %s:%d (%s)", b->host, b->port, why);
    }
}

/* Errors that say the command did not run and may run later: a resend is
 * safe, writes included. */
static int retryable(const char *line)
{
    return strncmp(line, "-TRYAGAIN", 9) == 0 || strncmp(line, "-LOADING", 8) == 0 ||
           strncmp(line, "-CLUSTERDOWN", 12) == 0;
}

void router_reply(struct backend *from, struct req *r, struct evbuffer *in, size_t len, char type)
{
    struct worker *w = from->w;
    if (r->kind == REQ_PART) {
        evbuffer_remove_buffer(in, r->reply, len);
        part_done(w, r);
        return;
    }
    if (r->client == NULL) {
        evbuffer_drain(in, len); /* its client left */
        req_free(w, r);
        return;
    }
    if (type == '-') {
        char line[320];
        size_t n = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
        evbuffer_copyout(in, line, n);
        line[n] = '\0';
        line[strcspn(line, "\r\n")] = '\0';
        struct resp_redirect rd;
        if (resp_parse_redirect(line + 1, strlen(line + 1), &rd) == 0) {
            evbuffer_drain(in, len);
            redirect(from, r, &rd);
            return;
        }
        if (retryable(line) && r->retries < ROUTER_MAX_RETRIES) {
            r->retries++;
            evbuffer_drain(in, len);
            if (line[1] == 'C')
                worker_request_refresh(w);
            park(w, r);
            return;
        }
    }
    evbuffer_remove_buffer(in, r->reply, len);
    router_complete(w, r);
}
