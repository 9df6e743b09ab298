/*
 * pubsub: subscriptions on push-mode private backends, see pubsub.h.
 *
 * A subscription command is sent on its connection as a pinned request that
 * expects as many confirmation frames as it names channels, or, named none
 * (UNSUBSCRIBE), frames until the node's count of that kind is zero; the
 * frames become its reply. Every other frame is a message, queued for the
 * client as a reply of its own. The node's counts, read from the
 * confirmations, say whether the client is in subscribed mode; while
 * confirmations are due, the client's other commands wait (dispatch), so the
 * mode is known when they are looked at, as in Redis.
 *
 * Keyspace notifications come from every master, so their names are also
 * subscribed on an extra connection to each master but the Pub/Sub node.
 * A client's confirmation waits until every extra confirmed what it was
 * sent: once a client has its confirmation, as with one Redis, no event
 * of a key written after it is missed.
 */
#include "path/pubsub.h"

#include "conn/backend.h"
#include "conn/client.h"
#include "base/compat.h"
#include "model/cmd.h"
#include "base/log.h"
#include "loop/req.h"
#include "base/resp.h"
#include "path/route.h"
#include "loop/worker.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum until { UNTIL_COUNTED = 0, UNTIL_NO_CHANNELS, UNTIL_NO_PATTERNS, UNTIL_NO_SHARD };

struct subscriber {
    struct backend *main;  /* channels and patterns, on the Pub/Sub node */
    struct backend *shard; /* shard channels, on their slots' master */
    size_t nkeyspace;
    char *keyspace[PUBSUB_KEYSPACE_MAX]; /* 'c' or 'p', then the name: what the extras hold */
    uint32_t extras_due;   /* subscription commands sent to the extras, not yet confirmed */
    struct req_list gated; /* the client's replies that wait for them, in order */
};

static int is_subscription(enum cmd_op op)
{
    return op >= CMD_OP_SUBSCRIBE && op <= CMD_OP_SUNSUBSCRIBE;
}

static int awaiting(const struct backend *b)
{
    return b && b->ninflight > 0;
}

static int counts(const struct backend *b)
{
    return b && (b->nchan || b->npat || b->nshard);
}

int pubsub_pending(const struct client *c)
{
    return c->sub && (awaiting(c->sub->main) || awaiting(c->sub->shard));
}

int pubsub_subscribed(const struct client *c)
{
    return c->sub && (counts(c->sub->main) || counts(c->sub->shard));
}

int pubsub_owns(const struct client *c, const struct cmd_spec *cmd)
{
    if (is_subscription(cmd->op))
        return 1;
    /* RESP2's subscribed PING answers on the Pub/Sub connection ("pong"
     * array, in order with the messages); RESP3 has no subscribed mode. */
    return c->sub && c->proto != 3 && cmd->op == CMD_OP_PING && (pubsub_pending(c) || pubsub_subscribed(c));
}

const char *pubsub_refusal(const struct client *c, const struct cmd_spec *cmd, char *buf, size_t cap)
{
    if (c->proto == 3 || !pubsub_subscribed(c) || (cmd->ctx & CMD_CTX_SUBSCRIBED))
        return NULL; /* a RESP3 client may run anything while subscribed, as with Redis */
    snprintf(buf, cap, "ERR Can't execute '%s': only %s / PING / QUIT / RESET are allowed in this context", cmd->name,
             compat_texts(c->w->version)->subscribed);
    return buf;
}

/* ---- frames from the nodes ---- */

/* Whether a message on extra B (keyspace notifications only) is still
 * wanted: an UNSUBSCRIBE confirmed by the Pub/Sub node may not have reached
 * the extra yet. */
static int extra_wanted(struct client *c, struct evbuffer *in, size_t len, int pattern)
{
    struct subscriber *s = c->sub;
    char buf[600];
    size_t n = evbuffer_copyout(in, buf, len < sizeof(buf) - 1 ? len : sizeof(buf) - 1);
    buf[n] = '\0';
    /* "*3\r\n$7\r\nmessage\r\n$<n>\r\n<name>" or "*4\r\n$8\r\npmessage\r\n$<n>\r\n<pattern>" */
    char *p = strstr(buf, "message\r\n$");
    long long nlen = p ? strtoll(p + 10, &p, 10) : -1;
    if (nlen < 0 || p == NULL || p[0] != '\r' || (size_t)(p + 2 - buf) + (size_t)nlen > n)
        return 0;
    for (size_t j = 0; s && j < s->nkeyspace; j++)
        if (s->keyspace[j][0] == (pattern ? 'p' : 'c') && strlen(s->keyspace[j] + 1) == (size_t)nlen &&
            memcmp(s->keyspace[j] + 1, p + 2, (size_t)nlen) == 0)
            return 1;
    return 0;
}

/* Queues the message at the front of IN (LEN bytes), from B, as a reply of
 * its own for B's client: behind what the client is owed, but before the
 * confirmations of a subscription command B has not answered yet and
 * before a request held back, as the node sent it before those. */
static void deliver(struct backend *b, struct evbuffer *in, size_t len, int pattern)
{
    struct client *c = b->owner;
    struct req *head = backend_head(b), *before = NULL;
    if (head && head->sink == &client_sink && head->client == c && evbuffer_get_length(head->reply) == 0)
        before = head;
    struct req *r = b->extra && !extra_wanted(c, in, len, pattern) ? NULL : client_push_new(c, before);
    if (r == NULL) {
        evbuffer_drain(in, len);
        return;
    }
    evbuffer_remove_buffer(in, r->reply, len);
    req_complete(c->w, r);
}

/* The count that ends a confirmation frame FRAME (LEN bytes): its last
 * line is ":<count>". Returns it, or -1. */
static long long last_count(const char *frame, size_t len)
{
    if (len < 4 || frame[len - 2] != '\r')
        return -1;
    size_t i = len - 2;
    while (i > 0 && frame[i - 1] != '\n')
        i--;
    if (frame[i] != ':')
        return -1;
    return strtoll(frame + i + 1, NULL, 10);
}

static int confirmation(struct backend *b, struct evbuffer *in, size_t len);

/* The frame of LEN bytes at the front of IN arrived on push-mode backend B:
 * a confirmation for the request at the head of B's FIFO, or a message for
 * B's client. Returns 0, or -1 if B must be reset (a frame nobody asked for). */
static int push_frame(struct backend *b, struct evbuffer *in, size_t len)
{
    /* After the type byte: '*' from a RESP2 connection, '>' from RESP3. */
    static const char msg[] = "3\r\n$7\r\nmessage\r\n", pmsg[] = "4\r\n$8\r\npmessage\r\n",
                      smsg[] = "3\r\n$8\r\nsmessage\r\n";
    char head[32];
    size_t n = evbuffer_copyout(in, head, sizeof(head) - 1);
    head[n] = '\0';
    int array = head[0] == '*' || head[0] == '>';
    if (array && (strncmp(head + 1, msg, sizeof(msg) - 1) == 0 || strncmp(head + 1, smsg, sizeof(smsg) - 1) == 0)) {
        deliver(b, in, len, 0);
        return 0;
    }
    if (array && strncmp(head + 1, pmsg, sizeof(pmsg) - 1) == 0) {
        deliver(b, in, len, 1);
        return 0;
    }
    struct req *r = backend_head(b);
    /* A node that gives a slot away tells its shard subscribers with a
     * sunsubscribe nobody asked for (Redis 7): the client gets it too. */
    static const char sunsub[] = "3\r\n$12\r\nsunsubscribe\r\n";
    if (array && strncmp(head + 1, sunsub, sizeof(sunsub) - 1) == 0 && (r == NULL || !r->shard_sub)) {
        if (confirmation(b, in, len) < 0)
            return -1;
        deliver(b, in, len, 0);
        worker_request_refresh(b->w); /* the slot has a new owner */
        return 0;
    }
    if (r == NULL)
        return -1;
    /* Not an array: +PONG for a PING that came after the last unsubscribe,
     * or an error, which ends its request. */
    if (array && confirmation(b, in, len) < 0)
        return -1;
    struct resp_redirect rd;
    struct backend *to;
    if (head[0] == '-' && route_take_redirect(b, in, len, &rd, &to)) {
        /* A client never sees MOVED; its next try goes where the node said. */
        if (rd.ask)
            worker_request_refresh(b->w);
        if (r->sink == &client_sink)
            resp_add_error(r->reply, "TRYAGAIN respgate: the channels' slot moved away from %s:%d", b->host, b->port);
    } else if (r->sink == &client_sink && r->client) {
        evbuffer_remove_buffer(in, r->reply, len);
    } else {
        evbuffer_drain(in, len);
    }
    int done = head[0] == '-' ? 1
               : r->until == UNTIL_COUNTED ? --r->expect == 0
               : r->until == UNTIL_NO_CHANNELS ? b->nchan == 0
               : r->until == UNTIL_NO_PATTERNS ? b->npat == 0
                                               : b->nshard == 0;
    if (!done)
        return 0;
    backend_pop(b);
    struct subscriber *s = b->owner->sub;
    if (r->sink == &client_sink && r->client && s && s->extras_due > 0)
        TAILQ_INSERT_TAIL(&s->gated, r, inflight); /* until the extras confirm */
    else
        req_complete(b->w, r);
    return 0;
}

/* Completes the replies that waited for the extras' confirmations. */
static void release_gated(struct client *c, struct subscriber *s)
{
    struct req *r;
    while ((r = TAILQ_FIRST(&s->gated))) {
        TAILQ_REMOVE(&s->gated, r, inflight);
        req_complete(c->w, r);
    }
}

/* A subscription command on an extra is confirmed, or its connection is
 * gone (the client's extras are freed before the client). */
static void extra_done(struct worker *w, struct req *d)
{
    struct client *c = d->client;
    req_free(w, d);
    if (c->sub && --c->sub->extras_due == 0)
        release_gated(c, c->sub);
}

static const struct req_sink extra_sink = {.done = extra_done};

/* Reads the counts off the confirmation (or "pong") frame of LEN bytes at
 * the front of IN, into B. Returns 0, or -1 if it is neither. */
static int confirmation(struct backend *b, struct evbuffer *in, size_t len)
{
    /* A confirmation ("*3 kind channel count") or PING's "*2 pong arg":
     * small frames, made contiguous to read their kind and count. */
    const char *f = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
    const char *kind = f ? memchr(f, '\n', len) : NULL;
    kind = kind ? memchr(kind + 1, '\n', len - (size_t)(kind + 1 - f)) : NULL;
    if (kind == NULL)
        return -1;
    kind++;
    size_t rest = len - (size_t)(kind - f); /* a node's frame may end anywhere */
#define KIND_IS(word) (rest >= sizeof(word) - 1 && memcmp(kind, word, sizeof(word) - 1) == 0)
    if (!KIND_IS("pong\r\n")) {
        long long count = last_count(f, len);
        if (count < 0)
            return -1;
        uint32_t c = (uint32_t)count;
        if (KIND_IS("subscribe\r\n") || KIND_IS("unsubscribe\r\n"))
            b->nchan = c >= b->npat ? c - b->npat : 0;
        else if (KIND_IS("psubscribe\r\n") || KIND_IS("punsubscribe\r\n"))
            b->npat = c >= b->nchan ? c - b->nchan : 0;
        else if (KIND_IS("ssubscribe\r\n") || KIND_IS("sunsubscribe\r\n"))
            b->nshard = c;
        else
            return -1;
    }
#undef KIND_IS
    return 0;
}

static void push_gone(struct backend *b);

static const struct backend_ops push_ops = {.frame = push_frame, .lost = backend_fail_lost, .gone = push_gone};

/* ---- commands ---- */

static int is_keyspace(const char *name, size_t len)
{
    return (len >= 11 && memcmp(name, "__keyspace@", 11) == 0) || (len >= 11 && memcmp(name, "__keyevent@", 11) == 0);
}

static struct subscriber *subscriber_of(struct client *c)
{
    if (c->sub == NULL && (c->sub = calloc(1, sizeof(*c->sub))) != NULL)
        TAILQ_INIT(&c->sub->gated);
    return c->sub;
}

int pubsub_slot(struct worker *w)
{
    return route_owner(w, 0) ? 0 : route_any_slot(w);
}

/* Sends R on push-mode backend B, expecting EXPECT confirmations, or until
 * UNTIL. Returns 0, or -1 after answering R with an error. */
static int send_on(struct client *c, struct backend *b, struct req *r, uint32_t expect, enum until until)
{
    r->expect = expect;
    r->until = (uint8_t)until;
    r->pinned = 1;
    if (b && backend_send(b, r) == 0) {
        client_awaits(r);
        return 0;
    }
    req_fail(c->w, r, "ERR respgate: the Pub/Sub connection of this client is lost");
    return -1;
}

/* A push-mode connection for C to the master serving SLOT. */
static struct backend *open_push(struct client *c, int slot, int extra)
{
    struct backend *owner = slot >= 0 ? route_owner(c->w, slot) : NULL;
    if (owner == NULL)
        return NULL;
    struct backend *b = client_open_private(c, &push_ops, owner->host, owner->port, BACKEND_PUSH);
    if (b)
        b->extra = (unsigned)extra;
    return b;
}

/* A subscription command for one of C's extras; its confirmations are
 * dropped, but the client's wait for them (extra_sink). */
static struct req *new_extra_request(struct client *c)
{
    struct req *d = req_new(c->w, REQ_DROP, &extra_sink);
    if (d) {
        d->client = c;
        d->pinned = 1;
    }
    return d;
}

static void send_extra_request(struct client *c, struct backend *b, struct req *d)
{
    if (backend_send(b, d) < 0)
        req_free(c->w, d);
    else
        c->sub->extras_due++;
}

/* Sends FRAME (a copy) to C's extras, expecting EXPECT confirmations or
 * until UNTIL; their confirmations are dropped. */
static void send_to_extras(struct client *c, struct evbuffer *frame, uint32_t expect, enum until until)
{
    struct backend *b;
    TAILQ_FOREACH(b, &c->privates, link) {
        if (!b->extra || b->broken)
            continue;
        struct req *d = new_extra_request(c);
        if (d == NULL)
            return;
        size_t len = evbuffer_get_length(frame);
        const void *flat = evbuffer_pullup(frame, -1); /* NULL out of memory */
        if (flat == NULL || evbuffer_add(d->buf, flat, len) < 0) {
            req_free(c->w, d);
            return;
        }
        d->expect = expect;
        d->until = (uint8_t)until;
        send_extra_request(c, b, d);
    }
}

/* Opens an extra on every master but the Pub/Sub node that has none, and
 * subscribes it to C's keyspace names. */
static void ensure_extras(struct client *c)
{
    struct subscriber *s = c->sub;
    struct route_master *m = NULL;
    long n = route_masters(c->w, &m);
    for (long i = 0; i < n; i++) {
        struct backend *b;
        int have = s->main && backend_same_node(s->main, m[i].b);
        TAILQ_FOREACH(b, &c->privates, link)
            have |= b->extra && !b->broken && backend_same_node(b, m[i].b);
        if (have || s->nkeyspace == 0)
            continue;
        struct backend *x = open_push(c, m[i].first, 1);
        if (x == NULL)
            continue;
        for (int pattern = 0; pattern < 2; pattern++) {
            struct req *d = new_extra_request(c);
            if (d == NULL)
                break;
            size_t k = 0;
            for (size_t j = 0; j < s->nkeyspace; j++)
                k += s->keyspace[j][0] == (pattern ? 'p' : 'c');
            if (k == 0) {
                req_free(c->w, d);
                continue;
            }
            evbuffer_add_printf(d->buf, "*%zu\r\n$%d\r\n%s\r\n", k + 1, pattern ? 10 : 9,
                                pattern ? "PSUBSCRIBE" : "SUBSCRIBE");
            for (size_t j = 0; j < s->nkeyspace; j++)
                if (s->keyspace[j][0] == (pattern ? 'p' : 'c'))
                    evbuffer_add_printf(d->buf, "$%zu\r\n%s\r\n", strlen(s->keyspace[j] + 1), s->keyspace[j] + 1);
            d->expect = (uint32_t)k;
            send_extra_request(c, x, d);
        }
    }
    free(m);
}

/* Remembers (SUBSCRIBE) or forgets (UNSUBSCRIBE) C's keyspace names among
 * Q's arguments, all of that KIND when Q names none; appends the ones
 * concerned to FRAME's arguments. Returns how many. */
static size_t keyspace_names(struct client *c, struct req *r, const struct resp_req *q, char kind, int add,
                             struct evbuffer *frame)
{
    struct subscriber *s = c->sub;
    size_t k = 0;
    if (!add && q->argc == 1) {
        for (size_t j = 0; j < s->nkeyspace;)
            if (s->keyspace[j][0] == kind) {
                free(s->keyspace[j]);
                s->keyspace[j] = s->keyspace[--s->nkeyspace];
                k++;
            } else {
                j++;
            }
        return k;
    }
    for (size_t i = 1; i < q->argc; i++) {
        char name[512];
        size_t len;
        /* Names are kept as C strings: one too long or with a zero byte
         * stays on the Pub/Sub node only, like one past the limit. */
        if (resp_arg_str(r->buf, q, i, name, sizeof(name), &len) < 0 || memchr(name, '\0', len) ||
            !is_keyspace(name, len))
            continue;
        size_t j = 0;
        while (j < s->nkeyspace && !(s->keyspace[j][0] == kind && strcmp(s->keyspace[j] + 1, name) == 0))
            j++;
        if (add && j == s->nkeyspace && s->nkeyspace < PUBSUB_KEYSPACE_MAX) {
            char *e = malloc(len + 2);
            if (e == NULL)
                continue;
            e[0] = kind;
            memcpy(e + 1, name, len + 1);
            s->keyspace[s->nkeyspace++] = e;
        } else if (!add && j < s->nkeyspace) {
            free(s->keyspace[j]);
            s->keyspace[j] = s->keyspace[--s->nkeyspace];
        } else if (add && j == s->nkeyspace) {
            log_warning("client id=%llu addr=%s: more than %d keyspace-notification subscriptions; '%s' is "
                        "subscribed on the Pub/Sub node only",
                        (unsigned long long)c->id, c->addr, PUBSUB_KEYSPACE_MAX, name);
            continue;
        }
        resp_add_bulk(frame, name, len);
        k++;
    }
    return k;
}

/* Redis's answer to an unsubscription from nothing, without a node: one
 * confirmation of KIND per name, count 0 (a nil name if none). */
static void nothing_subscribed(struct client *c, struct req *r, const struct resp_req *q, const char *kind)
{
    for (size_t i = 1; i < q->argc || i == 1; i++) {
        resp_add_push_head(r->reply, c->proto, 3);
        resp_add_bulk(r->reply, kind, strlen(kind));
        if (i < q->argc)
            resp_add_arg(r->reply, r->buf, &q->argv[i]);
        else
            resp_add_nil(r->reply, c->proto);
        evbuffer_add(r->reply, ":0\r\n", 4);
    }
    req_complete(c->w, r);
}

/* SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE. */
static void channels(struct client *c, struct req *r, const struct resp_req *q, enum cmd_op op)
{
    struct subscriber *s = c->sub;
    int add = op == CMD_OP_SUBSCRIBE || op == CMD_OP_PSUBSCRIBE;
    int pattern = op == CMD_OP_PSUBSCRIBE || op == CMD_OP_PUNSUBSCRIBE;
    if (s->main == NULL && add && (s->main = open_push(c, pubsub_slot(c->w), 0)) == NULL) {
        req_fail(c->w, r, "CLUSTERDOWN respgate cannot reach the Pub/Sub node");
        return;
    }
    if (s->main == NULL) {
        /* Nothing subscribed: Redis's answer, without a node. */
        nothing_subscribed(c, r, q, pattern ? "punsubscribe" : "unsubscribe");
        return;
    }
    struct evbuffer *names = evbuffer_new();
    size_t k = names ? keyspace_names(c, r, q, pattern ? 'p' : 'c', add, names) : 0;
    enum until all = pattern ? UNTIL_NO_PATTERNS : UNTIL_NO_CHANNELS;
    if (send_on(c, s->main, r, (uint32_t)(q->argc - 1), q->argc == 1 ? all : UNTIL_COUNTED) == 0 && k > 0) {
        if (add)
            ensure_extras(c); /* new extras get every name; then the others get these */
        const char *verb = op == CMD_OP_SUBSCRIBE ? "SUBSCRIBE" : op == CMD_OP_PSUBSCRIBE ? "PSUBSCRIBE"
                           : op == CMD_OP_UNSUBSCRIBE ? "UNSUBSCRIBE" : "PUNSUBSCRIBE";
        char head[64];
        int hn = q->argc == 1 ? snprintf(head, sizeof(head), "*1\r\n$%zu\r\n%s\r\n", strlen(verb), verb)
                              : snprintf(head, sizeof(head), "*%zu\r\n$%zu\r\n%s\r\n", k + 1, strlen(verb), verb);
        if (q->argc == 1)
            evbuffer_drain(names, evbuffer_get_length(names));
        evbuffer_prepend(names, head, (size_t)hn);
        send_to_extras(c, names, (uint32_t)k, q->argc == 1 ? all : UNTIL_COUNTED);
    }
    if (names)
        evbuffer_free(names);
}

/* SSUBSCRIBE, SUNSUBSCRIBE: one connection, to one node. */
static void shard_channels(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q,
                           enum cmd_op op)
{
    struct subscriber *s = c->sub;
    struct worker *w = c->w;
    int slot = route_keys_slot(w, r, cmd, q);
    if (slot == ROUTE_KEYS_CROSS || slot == ROUTE_KEYS_NOMEM) {
        req_fail(w, r, slot == ROUTE_KEYS_CROSS ? REQ_CROSSSLOT : REQ_OUT_OF_MEMORY);
        return;
    }
    if (slot >= 0 && route_owner(w, slot) == NULL) {
        req_fail(w, r, REQ_SLOT_NOT_SERVED);
        return;
    }
    if (slot >= 0 && s->shard && !backend_same_node(s->shard, route_owner(w, slot)) &&
        (s->shard->broken || (s->shard->nshard == 0 && s->shard->ninflight == 0)))
        backend_free_private(s->shard, NULL); /* nothing on it: go where the channels are now */
    if (slot >= 0 && s->shard && !backend_same_node(s->shard, route_owner(w, slot))) {
        req_fail(w, r, "ERR respgate: the shard channels of one connection must live on one node; these live on "
                          "%s:%d, earlier ones on %s:%d",
                    route_owner(w, slot)->host, route_owner(w, slot)->port, s->shard->host, s->shard->port);
        return;
    }
    if (s->shard == NULL && op == CMD_OP_SSUBSCRIBE && (s->shard = open_push(c, slot, 0)) == NULL) {
        req_fail(w, r, "CLUSTERDOWN respgate cannot reach the node serving this slot");
        return;
    }
    if (s->shard == NULL) {
        nothing_subscribed(c, r, q, "sunsubscribe");
        return;
    }
    r->shard_sub = 1;
    send_on(c, s->shard, r, (uint32_t)(q->argc - 1), q->argc == 1 ? UNTIL_NO_SHARD : UNTIL_COUNTED);
}

void pubsub_dispatch(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    struct worker *w = c->w;
    enum cmd_op op = (enum cmd_op)cmd->op;
    if (subscriber_of(c) == NULL) {
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    struct subscriber *s = c->sub;
    if (!is_subscription(op)) { /* PING while subscribed, in the order of the confirmations */
        int main = s->main && (counts(s->main) || awaiting(s->main) || !s->shard);
        send_on(c, main ? s->main : s->shard, r, 1, UNTIL_COUNTED);
        return;
    }
    if (op == CMD_OP_SSUBSCRIBE || op == CMD_OP_SUNSUBSCRIBE)
        shard_channels(c, r, cmd, q, op);
    else
        channels(c, r, q, op);
}

void pubsub_map_changed(struct worker *w)
{
    struct client *c;
    TAILQ_FOREACH(c, &w->clients, link) {
        if (c->sub == NULL || c->sub->nkeyspace == 0)
            continue;
        struct route_master *m = NULL;
        long n = route_masters(w, &m);
        struct backend *b, *next;
        for (b = TAILQ_FIRST(&c->privates); b; b = next) {
            next = TAILQ_NEXT(b, link);
            long i = 0;
            while (b->extra && i < n && !backend_same_node(b, m[i].b))
                i++;
            if (b->extra && i == n) /* no longer a master: the new one sends its keys' events */
                backend_free_private(b, NULL);
        }
        free(m);
        ensure_extras(c);
    }
}

/* B, a push-mode backend of its client, is going away. */
static void push_gone(struct backend *b)
{
    struct client *c = b->owner;
    client_forget_private(c, b);
    struct subscriber *s = c->sub;
    if (s == NULL || (b != s->main && b != s->shard))
        return; /* an extra: ensure_extras opens another when the map changes */
    if (b == s->main)
        s->main = NULL;
    else
        s->shard = NULL;
    if (b->nchan || b->npat || b->nshard) {
        /* Its subscriptions are gone with it: close, so the client library
         * reconnects and subscribes again, as after a server restart. */
        log_notice("client id=%llu addr=%s: its Pub/Sub connection to %s:%d was lost; closing the client so that "
                   "it subscribes again",
                   (unsigned long long)c->id, c->addr, b->host, b->port);
        client_close_soon(c);
    }
}

void pubsub_reset(struct client *c)
{
    struct subscriber *s = c->sub;
    if (s == NULL)
        return;
    c->sub = NULL;
    release_gated(c, s); /* orphaned by client_free, or answered before RESET's reply */
    struct backend *b, *next;
    for (b = TAILQ_FIRST(&c->privates); b; b = next) {
        next = TAILQ_NEXT(b, link);
        if (b->kind == BACKEND_PUSH)
            backend_free_private(b, "RESET ended the subscriptions");
    }
    for (size_t j = 0; j < s->nkeyspace; j++)
        free(s->keyspace[j]);
    free(s);
}
