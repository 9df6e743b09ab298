/*
 * session: transactions and blocking commands on private backends, see
 * session.h.
 *
 * Everything a pinned session sends goes to its private backend directly
 * (backend_send), never through route_send: a resend to another node would
 * run a command outside its transaction. What the node answers is the
 * client's answer, except for the requests sent on the client's behalf
 * after it was answered here (REQ_DROP: the MULTI and QUEUED of commands
 * queued before the first key).
 */
#include "path/session.h"

#include "conn/backend.h"
#include "conn/client.h"
#include "model/cmd.h"
#include "model/conf.h"
#include "base/log.h"
#include "loop/req.h"
#include "base/resp.h"
#include "base/slot.h"
#include "path/cross.h"
#include "path/route.h"
#include "loop/worker.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char EXECABORT[] = "EXECABORT Transaction discarded because of previous errors.";

static void session_lost_pin(struct client *c);

/* A reply on one of a session's connections: what the node answers, but a
 * command of a pinned session runs where its session is, or fails. */
static void pinned_reply(struct backend *from, struct req *r, struct evbuffer *in, size_t len, char type)
{
    struct worker *w = from->w;
    struct resp_redirect rd;
    struct backend *to;
    if (!req_wanted(r)) {
        evbuffer_drain(in, len);
        req_fail(w, r, REQ_CLIENT_LEFT);
        return;
    }
    if (type == '-' && route_take_redirect(from, in, len, &rd, &to)) {
        if (rd.ask)
            worker_request_refresh(w);
        req_fail(w, r, "TRYAGAIN respgate: slot %u moved away from %s:%d during this session", rd.slot, from->host,
                 from->port);
        return;
    }
    /* A node that refused to queue a command aborts its EXEC; a
     * transaction over several slots must abort on every slot's pin. */
    if (type == '-' && r->kind == REQ_CLIENT && r->client && r->client->txn.multi)
        r->client->txn.failed = 1;
    req_complete_from(w, r, in, len, type);
}

/* A session's connection is closed or pooled: a transaction's pin, lost,
 * ends its transaction and WATCH (session_end clears c->txn.pin before it
 * releases a pin it is done with). */
static void spread_forget(struct client *c, struct backend *b);

static void private_gone(struct backend *b)
{
    struct client *c = b->owner;
    client_forget_private(c, b);
    if (c->txn.pin == b) {
        c->txn.pin = NULL;
        session_lost_pin(c);
    }
    spread_forget(c, b);
}

/* A transaction's or WATCH's pin, or a connection beside a busy node's
 * shared one (SCRIPT KILL); and a blocking command's, the same but closed
 * when its client half-closes. */
const struct backend_ops session_private_ops = {.reply = pinned_reply, .lost = backend_fail_lost,
                                                .gone = private_gone};
static const struct backend_ops blocking_ops = {.reply = pinned_reply, .lost = backend_fail_lost,
                                                .gone = private_gone};

static int is_session_op(enum cmd_op op)
{
    return op >= CMD_OP_MULTI && op <= CMD_OP_UNWATCH;
}

int session_owns(const struct client *c, const struct cmd_spec *cmd, struct evbuffer *frame,
                 const struct resp_req *q)
{
    return c->txn.multi || (cmd->kind == CMD_PINNED && (is_session_op(cmd->op) || cmd_blocks(cmd, frame, q)));
}

/* Answers R with the status or error TEXT ("-..." or "+..."). */
static void answer(struct worker *w, struct req *r, const char *text)
{
    if (text[0] == '-')
        req_fail(w, r, "%s", text + 1);
    else {
        resp_add_status(r->reply, text + 1);
        req_complete(w, r);
    }
}

/* Sends R on C's private backend B as the session's. Returns 0, or -1
 * after answering R with an error. */
static int send_pinned(struct client *c, struct backend *b, struct req *r)
{
    r->pinned = 1;
    if (backend_send(b, r) == 0) {
        client_awaits(r);
        return 0;
    }
    req_fail(c->w, r, "ERR respgate: the connection to %s:%d for this session is lost", b->host, b->port);
    return -1;
}

/* R goes to C's pin when it takes it (the node's answer is the one that
 * counts), or is answered TEXT here. */
static void pass_or_answer(struct client *c, struct req *r, const char *text)
{
    r->pinned = 1;
    if (c->txn.pin && backend_send(c->txn.pin, r) == 0)
        client_awaits(r);
    else
        answer(c->w, r, text);
}

/* Sends a request of FRAME (LEN bytes) on B whose reply nobody awaits. */
static int send_dropped(struct client *c, struct backend *b, const char *frame, size_t len)
{
    struct req *d = req_new(c->w, REQ_DROP, NULL);
    if (d == NULL)
        return -1;
    evbuffer_add(d->buf, frame, len);
    d->pinned = 1;
    if (backend_send(b, d) < 0) {
        req_free(c->w, d);
        return -1;
    }
    return 0;
}

/* Opens C's pin to the master of SLOT and replays what the transaction
 * queued so far behind MULTI. Returns 0, or -1 (C's transaction failed). */
static int open_pin(struct client *c, int slot, int in_multi)
{
    struct worker *w = c->w;
    struct backend *owner = slot >= 0 ? route_owner(w, slot) : NULL;
    if (owner == NULL || c->nprivate >= SESSION_PRIVATE_MAX)
        return -1;
    c->txn.pin = client_open_private(c, &session_private_ops, owner->host, owner->port, BACKEND_PIN);
    if (c->txn.pin == NULL)
        return -1;
    c->txn.pin_slot = slot;
    if (c->txn.pin->broken)
        return -1; /* it retires by itself */
    if (!in_multi)
        return 0;
    if (send_dropped(c, c->txn.pin, "*1\r\n$5\r\nMULTI\r\n", 15) < 0)
        return -1;
    struct req *d;
    while ((d = TAILQ_FIRST(&c->txn.queued))) {
        TAILQ_REMOVE(&c->txn.queued, d, inflight);
        c->txn.nqueued--;
        d->pinned = 1;
        if (backend_send(c->txn.pin, d) < 0) {
            req_free(w, d);
            return -1;
        }
        c->txn.count++;
    }
    return 0;
}

/* ---- a transaction over several slots (cluster.cross_slot_transactions: per-slot) ---- */

static const char TXN_CROSSSLOT[] = "CROSSSLOT Keys in request don't hash to the same slot (respgate: the commands of "
                                    "a transaction must share a slot unless cluster.cross_slot_transactions is "
                                    "per-slot)";

/* A command split by slot (MGET, MSET, DEL, ...) inside a transaction over
 * several slots: one part in each slot's MULTI, merged at EXEC. */
struct split_info {
    uint8_t merge;         /* enum cmd_merge */
    uint32_t nkeys;
    uint8_t *part_of_key;  /* MERGE_KEYORDER: [nkeys], the part each key is in */
};

/* The pins of a transaction's other slots, each behind its own MULTI, and
 * for each reply EXEC will give (one per queued command, one per part of
 * a split one), which pin it comes from, in the order queued. */
struct session_spread {
    struct backend *pins[SESSION_SPREAD_MAX];
    uint16_t slots[SESSION_SPREAD_MAX];
    uint8_t npins;
    uint8_t *of;    /* per reply: 0 the transaction's first pin, i + 1 pins[i] */
    uint32_t *grp;  /* per reply: 0 a command's own; k + 1 a part of splits[k] */
    size_t n, cap;
    struct split_info *splits;
    size_t nsplits;
};

/* Records that the next reply comes from pin WHICH, a part of split GRP
 * (or 0). Returns 0, or -1 if out of memory. */
static int spread_note(struct session_spread *sp, uint8_t which, uint32_t grp)
{
    if (sp->n == sp->cap) {
        size_t cap = sp->cap ? 2 * sp->cap : 64;
        uint8_t *of = realloc(sp->of, cap);
        if (of)
            sp->of = of;
        uint32_t *g = of ? realloc(sp->grp, cap * sizeof(*g)) : NULL;
        if (g == NULL)
            return -1;
        sp->grp = g;
        sp->cap = cap;
    }
    sp->of[sp->n] = which;
    sp->grp[sp->n++] = grp;
    return 0;
}

static void splits_free(struct split_info *splits, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(splits[i].part_of_key);
    free(splits);
}

static void spread_forget(struct client *c, struct backend *b)
{
    struct session_spread *sp = c->txn.spread;
    for (size_t i = 0; sp && i < sp->npins; i++)
        if (sp->pins[i] == b) {
            sp->pins[i] = NULL;
            c->txn.failed |= c->txn.multi; /* its slot's commands are gone with it */
        }
}

/* Ends C's spread: each pin is released, its connection pooled if CLEAN
 * (it was told EXEC or DISCARD). */
static void spread_end(struct client *c, int clean)
{
    struct session_spread *sp = c->txn.spread;
    c->txn.spread = NULL;
    for (size_t i = 0; sp && i < sp->npins; i++)
        if (sp->pins[i]) {
            sp->pins[i]->poolable = (unsigned)clean;
            backend_release(sp->pins[i]);
        }
    if (sp) {
        free(sp->of);
        free(sp->grp);
        splits_free(sp->splits, sp->nsplits);
    }
    free(sp);
}

static void end_session(struct client *c, int clean);
static void refuse_queued(struct client *c, struct req *r, const char *text);

/* C's pin for SLOT among its spread's, opened behind MULTI if new; NULL
 * (the transaction fails) if it cannot be. *WHICH is its index + 1. */
/* C's spread, made if new with the first slot's replies so far. NULL if
 * out of memory. */
static struct session_spread *spread_get(struct client *c)
{
    struct session_spread *sp = c->txn.spread;
    if (sp)
        return sp;
    if ((sp = calloc(1, sizeof(*sp))) == NULL)
        return NULL;
    c->txn.spread = sp;
    for (uint32_t i = 0; i < c->txn.count; i++)
        if (spread_note(sp, 0, 0) < 0)
            return NULL;
    return sp;
}

static struct backend *spread_pin(struct client *c, int slot, uint8_t *which, const char **why)
{
    struct session_spread *sp = spread_get(c);
    if (sp == NULL)
        return *why = REQ_OUT_OF_MEMORY, NULL;
    for (uint8_t i = 0; i < sp->npins; i++)
        if (sp->slots[i] == slot && sp->pins[i])
            return *which = (uint8_t)(i + 1), sp->pins[i];
    struct backend *owner = route_owner(c->w, slot);
    if (sp->npins == SESSION_SPREAD_MAX)
        return *why = "ERR respgate: a transaction may span " SPREAD_MAX_TEXT " slots at most", NULL;
    struct backend *b = owner ? client_open_private(c, &session_private_ops, owner->host, owner->port, BACKEND_PIN)
                              : NULL;
    if (b == NULL || b->broken || send_dropped(c, b, "*1\r\n$5\r\nMULTI\r\n", 15) < 0) {
        if (b && !b->broken)
            backend_release(b);
        return *why = "CLUSTERDOWN respgate cannot reach the node serving this slot", NULL;
    }
    sp->pins[sp->npins] = b;
    sp->slots[sp->npins] = (uint16_t)slot;
    *which = ++sp->npins;
    return b;
}

/* Queues R, of SLOT, on its slot's pin in a transaction over several slots. */
static void spread_queue(struct client *c, struct req *r, int slot)
{
    uint8_t which = 0;
    const char *why = NULL;
    if (c->txn.watching) {
        refuse_queued(c, r, "ERR respgate: a transaction that WATCHes keys runs on their slot only "
                            "(cluster.cross_slot_transactions: per-slot cannot keep a WATCH across slots)");
        return;
    }
    struct backend *b = spread_pin(c, slot, &which, &why);
    if (b == NULL || spread_note(c->txn.spread, which, 0) < 0) {
        refuse_queued(c, r, why ? why : REQ_OUT_OF_MEMORY);
        return;
    }
    if (send_pinned(c, b, r) < 0)
        c->txn.failed = 1;
}

/* A split command's parts, queued in their slots' MULTIs: the command
 * answers QUEUED once every part is, or the first part's error. */
struct session_split {
    size_t pending;
    struct req *error;
};

static void split_release(struct worker *w, struct req *r)
{
    struct session_split *sp = r->split;
    if (--sp->pending > 0)
        return;
    r->split = NULL;
    evbuffer_drain(r->reply, evbuffer_get_length(r->reply));
    if (sp->error) {
        if (r->client)
            r->client->txn.failed = 1;
        evbuffer_add_buffer(r->reply, sp->error->reply);
        req_free(w, sp->error);
    } else {
        resp_add_status(r->reply, "QUEUED");
    }
    free(sp);
    req_complete(w, r);
}

static void split_part_done(struct worker *w, struct req *part)
{
    struct req *r = part->parent;
    struct session_split *sp = r->split;
    char t = 0;
    evbuffer_copyout(part->reply, &t, 1);
    if (t != '+' && sp->error == NULL)
        sp->error = part;
    else
        req_free(w, part);
    split_release(w, r);
}

static int split_part_wanted(const struct req *part)
{
    (void)part;
    return 1; /* a part queued on a node is answered there, whoever waits */
}

static const struct req_sink split_part_sink = {.done = split_part_done, .wanted = split_part_wanted};

/* Queues R, a command split by slot (MGET, MSET, DEL, ... command CMD,
 * arguments Q) whose keys lie in several slots, in a transaction over
 * several slots: one part per slot, in that slot's MULTI, with the keys
 * (and values) of that slot in the request's order; EXEC merges them. */
static void spread_split(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    struct worker *w = c->w;
    size_t stack[ROUTE_KEYS_ON_STACK], *keys;
    int n = c->txn.watching ? -1 : route_find_keys(r->buf, cmd, q, stack, &keys);
    if (n < 0) {
        refuse_queued(c, r, c->txn.watching ? "ERR respgate: a transaction that WATCHes keys runs on their slot "
                                               "only (cluster.cross_slot_transactions: per-slot cannot keep a "
                                               "WATCH across slots)"
                                             : REQ_OUT_OF_MEMORY);
        return;
    }
    size_t step = cmd->nkeyspecs && cmd->keyspecs[0].keystep > 1 ? (size_t)cmd->keyspecs[0].keystep : 1;
    struct split_info info = {.merge = cmd->merge, .nkeys = (uint32_t)n, .part_of_key = calloc((size_t)n, 1)};
    uint16_t slot[SESSION_SPREAD_MAX + 1];
    struct backend *pin[SESSION_SPREAD_MAX + 1];
    uint8_t which[SESSION_SPREAD_MAX + 1];
    size_t nparts = 0, count[SESSION_SPREAD_MAX + 1] = {0};
    const char *why = info.part_of_key ? NULL : REQ_OUT_OF_MEMORY;
    /* MSET with a key and no value: one Redis queues it and EXEC answers
     * its arity error; so does one MSET of the first slot's (as a key and
     * a value and a key of that slot, which writes nothing). */
    int odd = step > 1 && (q->argc - 1) % step != 0;
    for (int k = 0; odd && k < n && !why; k++)
        info.part_of_key[k] = 0;
    if (odd && !why) {
        slot[nparts] = (uint16_t)(c->txn.pin ? c->txn.pin_slot : (int)slot_of_arg(r->buf, &q->argv[keys[0]]));
        count[nparts++] = 1;
        info.merge = MERGE_ALL;
    }
    for (int k = 0; !odd && k < n && !why; k++) { /* the parts, in the order their slots first appear */
        uint16_t s = (uint16_t)slot_of_arg(r->buf, &q->argv[keys[k]]);
        size_t p = 0;
        while (p < nparts && slot[p] != s)
            p++;
        if (p == nparts && nparts == SESSION_SPREAD_MAX + 1) {
            why = "ERR respgate: a transaction may span " SPREAD_MAX_TEXT " slots at most";
            break; /* no part of its own to count it in */
        }
        if (p == nparts)
            slot[nparts++] = s;
        info.part_of_key[k] = (uint8_t)p;
        count[p]++;
    }
    for (size_t p = 0; p < nparts && !why; p++) { /* each part's pin: the first slot's, or its own */
        if (c->txn.pin == NULL && open_pin(c, slot[p], 1) < 0)
            why = "CLUSTERDOWN respgate cannot reach the node serving this slot";
        else if (slot[p] == c->txn.pin_slot)
            pin[p] = c->txn.pin, which[p] = 0;
        else
            pin[p] = spread_pin(c, slot[p], &which[p], &why);
    }
    struct session_spread *sp = why ? NULL : spread_get(c);
    struct split_info *grown = sp ? realloc(sp->splits, (sp->nsplits + 1) * sizeof(*grown)) : NULL;
    if (grown)
        sp->splits = grown;
    for (size_t p = 0; grown && p < nparts; p++)
        if (spread_note(sp, which[p], (uint32_t)sp->nsplits + 1) < 0)
            grown = NULL;
    struct session_split *state = grown ? calloc(1, sizeof(*state)) : NULL;
    if (state == NULL) {
        free(info.part_of_key);
        refuse_queued(c, r, why ? why : REQ_OUT_OF_MEMORY);
        if (keys != stack)
            free(keys);
        return;
    }
    sp->splits[sp->nsplits++] = info;
    state->pending = nparts + 1; /* held while sending */
    r->split = state;
    r->pinned = 1;
    client_awaits(r);
    for (size_t p = 0; p < nparts; p++) {
        struct req *part = req_new(w, REQ_PART, &split_part_sink);
        if (part == NULL) {
            c->txn.failed = 1;
            state->pending--;
            continue;
        }
        char head[RESP_HEAD_MAX], key[SLOT_TAG_MAX + 8];
        evbuffer_add(part->buf, head, resp_head(head, '*', odd ? 4 : 1 + count[p] * step));
        resp_add_arg(part->buf, r->buf, &q->argv[0]);
        int klen = snprintf(key, sizeof(key), "{%s}", slot_tag(slot[p]));
        for (int i = 0; odd && i < 3; i++)
            resp_add_bulk(part->buf, i == 1 ? "v" : key, i == 1 ? 1 : (size_t)klen);
        for (int k = 0; !odd && k < n; k++)
            for (size_t i = 0; info.part_of_key[k] == p && i < step && keys[k] + i < q->argc; i++)
                resp_add_arg(part->buf, r->buf, &q->argv[keys[k] + i]);
        part->parent = r;
        part->pinned = 1;
        if (backend_send(pin[p], part) < 0)
            req_fail(w, part, "ERR respgate: the connection to the node of slot %u for this transaction is lost",
                     slot[p]);
    }
    if (keys != stack)
        free(keys);
    split_release(w, r);
}

/* EXEC of a transaction over several slots: each pin's EXEC, their replies
 * put back in the order the commands were queued. */
struct session_exec {
    struct req **replies; /* [nparts], by pin: the first pin's, then the spread's */
    size_t nparts, pending;
    uint8_t *of;          /* as session_spread's, taken from it */
    uint32_t *grp;
    size_t n;
    struct split_info *splits;
    size_t nsplits;
    uint16_t *slots;      /* [nparts]: each pin's slot, for an error */
};

static void exec_free(struct worker *w, struct session_exec *e)
{
    for (size_t i = 0; i < e->nparts; i++)
        if (e->replies[i])
            req_free(w, e->replies[i]);
    free(e->replies);
    free(e->slots);
    free(e->of);
    free(e->grp);
    splits_free(e->splits, e->nsplits);
    free(e);
}

/* The EXEC replies, merged into OUT: arrays of each pin's commands'
 * replies, walked with resp_flat_value, in the order queued. Returns
 * NULL, or the error to answer instead (in WHY, CAP bytes). */
/* One reply inside a node's EXEC reply. */
struct span {
    const char *at;
    size_t len;
};

/* The one reply of a split command from its NPARTS parts' replies, as
 * fanout merges a split command's: the first error; else the integers
 * summed (DEL, EXISTS, ...), one OK (MSET), or the values in the order of
 * the keys (MGET). */
static void split_merge(const struct split_info *info, const struct span *parts, size_t nparts,
                        struct evbuffer *out)
{
    long long sum = 0;
    for (size_t p = 0; p < nparts; p++)
        if (parts[p].len && parts[p].at[0] == '-') {
            evbuffer_add(out, parts[p].at, parts[p].len);
            return;
        }
    if (info->merge == MERGE_SUM) {
        for (size_t p = 0; p < nparts; p++)
            sum += parts[p].len && parts[p].at[0] == ':' ? strtoll(parts[p].at + 1, NULL, 10) : 0;
        evbuffer_add_printf(out, ":%lld\r\n", sum);
        return;
    }
    if (info->merge != MERGE_KEYORDER) { /* MERGE_ALL: every part said OK */
        evbuffer_add(out, parts[0].at, parts[0].len);
        return;
    }
    size_t at[SESSION_SPREAD_MAX + 1];
    for (size_t p = 0; p < nparts; p++) { /* past each part's "*N" */
        const char *eol = memchr(parts[p].at, '\n', parts[p].len);
        at[p] = eol ? (size_t)(eol + 1 - parts[p].at) : parts[p].len;
    }
    evbuffer_add_printf(out, "*%u\r\n", info->nkeys);
    for (uint32_t k = 0; k < info->nkeys; k++) {
        size_t p = info->part_of_key[k] < nparts ? info->part_of_key[k] : 0;
        size_t len = at[p] < parts[p].len ? resp_flat_value(parts[p].at + at[p], parts[p].len - at[p]) : 0;
        if (len == 0) {
            evbuffer_add(out, "$-1\r\n", 5); /* a part shorter than its keys: cannot happen from a node */
            continue;
        }
        evbuffer_add(out, parts[p].at + at[p], len);
        at[p] += len;
    }
}

static const char *exec_merge(struct session_exec *e, struct evbuffer *out, char *why, size_t cap)
{
    struct span *spans = calloc(e->n ? e->n : 1, sizeof(*spans));
    size_t *next = calloc(e->nparts, sizeof(*next)), *first = calloc(e->nparts + 1, sizeof(*first)), ran = 0;
    const char *err = spans && next && first ? NULL : REQ_OUT_OF_MEMORY;
    char line[200] = "";
    int failed_slot = -1;
    for (size_t i = 0; i < e->n && !err; i++)
        first[e->of[i] + 1]++;
    for (size_t p = 0; p < e->nparts && !err; p++)
        first[p + 1] += first[p]; /* where each pin's replies go in spans */
    for (size_t p = 0; p < e->nparts && !err; p++) {
        struct evbuffer *r = e->replies[p] ? e->replies[p]->reply : NULL;
        size_t avail = r ? evbuffer_get_length(r) : 0, count = first[p + 1] - first[p];
        const char *s = avail ? (const char *)evbuffer_pullup(r, -1) : NULL, *eol = s ? memchr(s, '\n', avail) : NULL;
        char *end = NULL;
        if (s == NULL || s[0] != '*' || eol == NULL || strtoull(s + 1, &end, 10) != count || end[0] != '\r') {
            if (failed_slot < 0) {
                failed_slot = e->slots[p];
                if (r)
                    resp_first_line(r, avail, line, sizeof(line));
                else
                    snprintf(line, sizeof(line), "-%s", REQ_OUT_OF_MEMORY);
            }
            continue;
        }
        ran++;
        size_t pos = (size_t)(eol + 1 - s);
        for (size_t k = 0; k < count && !err; k++) {
            size_t len = resp_flat_value(s + pos, avail - pos);
            if (len == 0)
                err = "ERR respgate: unexpected EXEC reply from a node";
            spans[first[p] + k] = (struct span){s + pos, len};
            pos += len;
        }
    }
    if (!err && failed_slot >= 0 && ran == 0) {
        snprintf(why, cap, "%s", line[0] == '-' ? line + 1 : line); /* nothing ran: the node's own words */
        err = why;
    } else if (!err && failed_slot >= 0) {
        snprintf(why, cap, "ERR respgate: the transaction ran on %zu of the %zu slots it spans; slot %d answered: %s",
                 ran, e->nparts, failed_slot, line[0] == '-' ? line + 1 : line);
        err = why;
    } else if (!err) {
        struct evbuffer *body = evbuffer_new();
        size_t ncmds = 0;
        for (size_t i = 0, j; body && i < e->n; i = j, ncmds++) {
            struct span parts[SESSION_SPREAD_MAX + 1];
            size_t nparts = 0;
            for (j = i; j < e->n && (j == i || (e->grp[i] && e->grp[j] == e->grp[i])); j++)
                if (nparts < SESSION_SPREAD_MAX + 1)
                    parts[nparts++] = spans[first[e->of[j]] + next[e->of[j]]++];
            if (e->grp[i] == 0)
                evbuffer_add(body, parts[0].at, parts[0].len);
            else
                split_merge(&e->splits[e->grp[i] - 1], parts, nparts, body);
        }
        if (body) {
            evbuffer_add_printf(out, "*%zu\r\n", ncmds);
            evbuffer_add_buffer(out, body);
            evbuffer_free(body);
        } else {
            err = REQ_OUT_OF_MEMORY;
        }
    }
    free(spans);
    free(next);
    free(first);
    return err;
}

/* One of R's EXEC parts is done (or was never sent): the last one merges. */
static void exec_release(struct worker *w, struct req *r)
{
    struct session_exec *e = r->exec;
    if (--e->pending > 0)
        return;
    char why[400];
    r->exec = NULL;
    evbuffer_drain(r->reply, evbuffer_get_length(r->reply));
    const char *err = exec_merge(e, r->reply, why, sizeof(why));
    exec_free(w, e);
    if (err)
        req_fail(w, r, "%s", err);
    else
        req_complete(w, r);
}

static void exec_part_done(struct worker *w, struct req *part)
{
    part->parent->exec->replies[part->part] = part;
    exec_release(w, part->parent);
}

static int exec_part_wanted(const struct req *part)
{
    (void)part;
    return 1; /* every slot's EXEC is read, whoever waits */
}

static const struct req_sink exec_sink = {.done = exec_part_done, .wanted = exec_part_wanted};

/* Ends C's transaction over several slots with DISCARD on every pin, and
 * answers R with TEXT. */
static void spread_discard(struct client *c, struct req *r, const char *text)
{
    struct session_spread *sp = c->txn.spread;
    int clean = !c->txn.pin || send_dropped(c, c->txn.pin, "*1\r\n$7\r\nDISCARD\r\n", 17) == 0;
    for (size_t i = 0; i < sp->npins; i++)
        if (sp->pins[i] && send_dropped(c, sp->pins[i], "*1\r\n$7\r\nDISCARD\r\n", 17) < 0)
            clean = 0;
    end_session(c, clean);
    if (text[0] == '+') {
        resp_add_status(r->reply, text + 1);
        req_complete(c->w, r);
    } else {
        req_fail(c->w, r, "%s", text);
    }
}

/* EXEC of C's transaction over several slots (R): once every queued
 * command is answered (a refusal must abort them all), EXEC on each pin. */
static void spread_exec(struct client *c, struct req *r)
{
    struct worker *w = c->w;
    struct session_spread *sp = c->txn.spread;
    if (c->npinned > 0) {
        c->hold = r; /* dispatched again once the queued commands are answered */
        return;
    }
    size_t nparts = 1 + sp->npins;
    struct session_exec *e = c->txn.failed || c->txn.pin == NULL ? NULL : calloc(1, sizeof(*e));
    if (e && ((e->replies = calloc(nparts, sizeof(*e->replies))) == NULL ||
              (e->slots = calloc(nparts, sizeof(*e->slots))) == NULL)) {
        exec_free(w, e);
        spread_discard(c, r, REQ_OUT_OF_MEMORY);
        return;
    }
    if (e == NULL) {
        spread_discard(c, r, EXECABORT);
        return;
    }
    e->nparts = nparts;
    e->pending = nparts + 1; /* held while sending */
    e->of = sp->of;
    e->grp = sp->grp;
    e->n = sp->n;
    e->splits = sp->splits;
    e->nsplits = sp->nsplits;
    sp->of = NULL;
    sp->grp = NULL;
    sp->splits = NULL;
    sp->nsplits = 0;
    r->exec = e;
    r->pinned = 1;
    client_awaits(r);
    for (size_t p = 0; p < nparts; p++) {
        struct backend *b = p == 0 ? c->txn.pin : sp->pins[p - 1];
        struct req *x = req_new(w, REQ_PART, &exec_sink);
        e->slots[p] = (uint16_t)(p == 0 ? c->txn.pin_slot : sp->slots[p - 1]);
        if (x == NULL) {
            e->pending--; /* its reply stays missing: the merge says so */
            continue;
        }
        x->parent = r;
        x->part = (uint16_t)p;
        x->pinned = 1;
        evbuffer_add(x->buf, "*1\r\n$4\r\nEXEC\r\n", 14);
        if (b == NULL || backend_send(b, x) < 0)
            req_fail(w, x, "ERR respgate: the connection to the node of slot %u for this transaction is lost",
                     e->slots[p]);
    }
    end_session(c, 1);
    exec_release(w, r);
}

/* Forgets C's transaction and WATCH. CLEAN: the pin was told to end them
 * (EXEC, DISCARD, UNWATCH), so once it has answered it holds no state of
 * the session and may serve another from the worker's pool. */
static void end_session(struct client *c, int clean)
{
    struct req *d;
    while ((d = TAILQ_FIRST(&c->txn.queued))) {
        TAILQ_REMOVE(&c->txn.queued, d, inflight);
        req_free(c->w, d);
    }
    c->txn.nqueued = 0;
    c->txn.count = 0;
    c->txn.multi = c->txn.failed = c->txn.watching = c->txn.watch_lost = 0;
    c->txn.pin_slot = -1;
    spread_end(c, clean);
    struct backend *pin = c->txn.pin;
    c->txn.pin = NULL;
    if (pin) {
        pin->poolable = (unsigned)clean;
        backend_release(pin);
    }
}

void session_reset(struct client *c)
{
    end_session(c, 0);
}

/* Refuses R inside MULTI with TEXT (Redis queues nothing then, and EXEC aborts). */
static void refuse_queued(struct client *c, struct req *r, const char *text)
{
    c->txn.failed = 1;
    req_fail(c->w, r, "%s", text);
}

/* A command inside MULTI: checked here, queued on the node. */
static void queue(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    struct worker *w = c->w;
    if (cmd->kind == CMD_LOCAL && !(cmd->ctx & CMD_CTX_QUEUEABLE)) {
        refuse_queued(c, r, "ERR respgate: this command cannot be part of a transaction");
        return;
    }
    if (cmd->kind == CMD_REFUSED) {
        char text[200];
        snprintf(text, sizeof(text), "ERR respgate does not forward '%s': %s", cmd->name, cmd->why);
        refuse_queued(c, r, text);
        return;
    }
    if (cmd->kind == CMD_PUBSUB && !(cmd->ctx & CMD_CTX_QUEUEABLE)) {
        refuse_queued(c, r, "ERR respgate: subscriptions cannot be part of a transaction");
        return;
    }
    if (cmd->kind == CMD_BROADCAST) {
        char text[160];
        snprintf(text, sizeof(text), "ERR respgate: '%s' concerns the whole cluster; it cannot be part of a "
                                     "transaction, which runs on one node",
                 cmd->name);
        refuse_queued(c, r, text);
        return;
    }
    if (c->txn.pin_slot >= 0 && c->txn.pin == NULL) {
        refuse_queued(c, r, "ERR respgate: the connection to the node of this transaction is lost");
        return;
    }
    int slot = route_keys_slot(w, r, cmd, q);
    if (slot == ROUTE_KEYS_CROSS && cmd->kind == CMD_SPLIT &&
        w->conf->cross_slot_transactions == CROSS_TXN_PER_SLOT) { /* a part in each slot's MULTI */
        spread_split(c, r, cmd, q);
        return;
    }
    if (slot == ROUTE_KEYS_CROSS) { /* one command's keys: a slot's MULTI cannot hold it */
        refuse_queued(c, r, REQ_CROSSSLOT);
        return;
    }
    if (slot >= 0 && c->txn.pin_slot >= 0 && slot != c->txn.pin_slot) {
        if (w->conf->cross_slot_transactions == CROSS_TXN_PER_SLOT)
            spread_queue(c, r, slot);
        else
            refuse_queued(c, r, TXN_CROSSSLOT);
        return;
    }
    if (slot == ROUTE_KEYS_NOMEM) {
        refuse_queued(c, r, REQ_OUT_OF_MEMORY);
        return;
    }
    if (c->txn.pin == NULL && slot >= 0 && open_pin(c, slot, 1) < 0) {
        refuse_queued(c, r, "CLUSTERDOWN respgate cannot reach the node serving this slot");
        return;
    }
    if (c->txn.pin) {
        if ((c->txn.spread && spread_note(c->txn.spread, 0, 0) < 0) || send_pinned(c, c->txn.pin, r) < 0)
            c->txn.failed = 1;
        c->txn.count++;
        return;
    }
    /* No key yet, so no node: keep the frame for later, answer as Redis would. */
    struct req *d = c->txn.nqueued < SESSION_QUEUED_MAX ? req_new(w, REQ_DROP, NULL) : NULL;
    if (d == NULL) {
        refuse_queued(c, r, "ERR respgate: too many commands queued before the transaction's first key");
        return;
    }
    evbuffer_add_buffer(d->buf, r->buf);
    TAILQ_INSERT_TAIL(&c->txn.queued, d, inflight);
    c->txn.nqueued++;
    answer(w, r, "+QUEUED");
}

static void exec(struct client *c, struct req *r)
{
    struct worker *w = c->w;
    if (c->txn.watch_lost) {
        /* The node forgot the WATCH with its connection: abort, as when a
         * watched key changed, so the client retries. */
        session_reset(c);
        evbuffer_add(r->reply, c->proto == 3 ? "_\r\n" : "*-1\r\n", c->proto == 3 ? 3 : 5);
        req_complete(w, r);
        return;
    }
    if (c->txn.spread) {
        spread_exec(c, r);
        return;
    }
    if (c->txn.failed) {
        end_session(c, c->txn.pin && send_dropped(c, c->txn.pin, "*1\r\n$7\r\nDISCARD\r\n", 17) == 0);
        req_fail(w, r, "%s", EXECABORT);
        return;
    }
    if (c->txn.pin == NULL && TAILQ_EMPTY(&c->txn.queued)) {
        session_reset(c);
        evbuffer_add(r->reply, "*0\r\n", 4);
        req_complete(w, r);
        return;
    }
    if (c->txn.pin == NULL && open_pin(c, route_any_slot(w), 1) < 0) {
        session_reset(c);
        req_fail(w, r, "%s", EXECABORT);
        return;
    }
    send_pinned(c, c->txn.pin, r);
    end_session(c, 1);
}

/* A session command inside MULTI. */
static void in_multi(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    switch ((enum cmd_op)cmd->op) {
    case CMD_OP_EXEC:
        exec(c, r);
        return;
    case CMD_OP_DISCARD:
        if (c->txn.spread) {
            spread_discard(c, r, "+OK");
            return;
        }
        pass_or_answer(c, r, "+OK");
        end_session(c, 1);
        return;
    case CMD_OP_MULTI:
        req_fail(c->w, r, "ERR MULTI calls can not be nested");
        return;
    case CMD_OP_WATCH:
        req_fail(c->w, r, "ERR WATCH inside MULTI is not allowed");
        return;
    default:
        queue(c, r, cmd, q);
        return;
    }
}

/* WATCH, on the pin of SLOT (opened now if the session has none). */
static void watch(struct client *c, struct req *r, int slot)
{
    if (c->txn.pin && slot != c->txn.pin_slot) {
        req_fail(c->w, r, REQ_CROSSSLOT);
        return;
    }
    if (c->txn.pin == NULL && open_pin(c, slot, 0) < 0) {
        req_fail(c->w, r, "CLUSTERDOWN respgate cannot reach the node serving this slot");
        return;
    }
    if (send_pinned(c, c->txn.pin, r) == 0)
        c->txn.watching = 1;
}

/* A blocking command: a connection of its own to SLOT's master, as long as
 * it blocks. */
static void block(struct client *c, struct req *r, int slot)
{
    struct worker *w = c->w;
    if (c->eof || w->draining) {
        req_fail(w, r, "ERR respgate: %s; a blocking command would wait for nobody",
                 c->eof ? "the client closed its connection" : "respgate is shutting down");
        return;
    }
    if (c->nprivate >= SESSION_PRIVATE_MAX) {
        req_fail(w, r, "ERR respgate: %d commands already block on this connection", SESSION_PRIVATE_MAX);
        return;
    }
    struct backend *owner = route_owner(w, slot);
    struct backend *b = client_open_private(c, &blocking_ops, owner->host, owner->port, BACKEND_BLOCKING);
    if (b == NULL) {
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    client_note_blocking(w, r);
    send_pinned(c, b, r);
    backend_release(b); /* to the pool once answered; closed if its client leaves */
}

/* A blocking command on keys in several slots: answered by steps in each
 * (cross.h), which block on connections of the client's own. */
static void block_across(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    struct worker *w = c->w;
    if (c->eof || w->draining) {
        req_fail(w, r, "ERR respgate: %s; a blocking command would wait for nobody",
                 c->eof ? "the client closed its connection" : "respgate is shutting down");
        return;
    }
    size_t stack[ROUTE_KEYS_ON_STACK], *keys;
    int n = route_find_keys(r->buf, cmd, q, stack, &keys);
    if (n < 2) {
        req_fail(w, r, n == ROUTE_KEYS_NOMEM ? REQ_OUT_OF_MEMORY : REQ_CROSSSLOT);
    } else {
        r->pinned = 1; /* what comes after it waits for it */
        client_awaits(r);
        client_note_blocking(w, r);
        cross_run(w, r, cmd, q, keys, (size_t)n);
    }
    if (keys != stack)
        free(keys);
}

void session_dispatch(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    struct worker *w = c->w;
    if (c->txn.multi) {
        in_multi(c, r, cmd, q);
        return;
    }
    switch ((enum cmd_op)cmd->op) {
    case CMD_OP_MULTI:
        /* Answered here, so the session is in MULTI whatever the node
         * says; a MULTI the pin did not take makes EXEC abort. */
        c->txn.multi = 1;
        if (c->txn.pin && send_dropped(c, c->txn.pin, "*1\r\n$5\r\nMULTI\r\n", 15) < 0)
            c->txn.failed = 1;
        answer(w, r, "+OK");
        return;
    case CMD_OP_EXEC:
        req_fail(w, r, "ERR EXEC without MULTI");
        return;
    case CMD_OP_DISCARD:
        req_fail(w, r, "ERR DISCARD without MULTI");
        return;
    case CMD_OP_UNWATCH:
        pass_or_answer(c, r, "+OK");
        end_session(c, 1);
        return;
    default:
        break;
    }
    int slot = route_keys_slot(w, r, cmd, q);
    if (slot == ROUTE_KEYS_CROSS && cmd->op != CMD_OP_WATCH && cross_waits(cmd))
        block_across(c, r, cmd, q);
    else if (slot == ROUTE_KEYS_CROSS)
        req_fail(w, r, REQ_CROSSSLOT);
    else if (slot < 0 || route_owner(w, slot) == NULL)
        req_fail(w, r, slot == ROUTE_KEYS_NOMEM ? REQ_OUT_OF_MEMORY : REQ_SLOT_NOT_SERVED);
    else if (cmd->op == CMD_OP_WATCH)
        watch(c, r, slot);
    else
        block(c, r, slot);
}

static void session_lost_pin(struct client *c)
{
    log_info("client id=%llu addr=%s: the connection of its transaction was lost", (unsigned long long)c->id,
             c->addr);
    if (c->txn.watching)
        c->txn.watch_lost = 1;
    if (c->txn.multi)
        c->txn.failed = 1;
}

void session_cancel_blocking(struct client *c, const char *why)
{
    struct backend *b, *next;
    for (b = TAILQ_FIRST(&c->privates); b; b = next) {
        next = TAILQ_NEXT(b, link);
        if (b->kind == BACKEND_BLOCKING)
            backend_free_private(b, why);
    }
}

void session_end(struct client *c)
{
    session_reset(c);
    struct backend *b;
    while ((b = TAILQ_FIRST(&c->privates)))
        backend_free_private(b, NULL);
}
