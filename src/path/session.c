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
#include "base/log.h"
#include "loop/req.h"
#include "base/resp.h"
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
    req_complete_from(w, r, in, len, type);
}

/* A session's connection is closed or pooled: a transaction's pin, lost,
 * ends its transaction and WATCH (session_end clears c->txn.pin before it
 * releases a pin it is done with). */
static void private_gone(struct backend *b)
{
    struct client *c = b->owner;
    client_forget_private(c, b);
    if (c->txn.pin == b) {
        c->txn.pin = NULL;
        session_lost_pin(c);
    }
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
    }
    return 0;
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
    c->txn.multi = c->txn.failed = c->txn.watching = c->txn.watch_lost = 0;
    c->txn.pin_slot = -1;
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
    if (slot == ROUTE_KEYS_CROSS || (slot >= 0 && c->txn.pin_slot >= 0 && slot != c->txn.pin_slot)) {
        refuse_queued(c, r, REQ_CROSSSLOT);
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
        if (send_pinned(c, c->txn.pin, r) < 0)
            c->txn.failed = 1;
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
    if (slot == ROUTE_KEYS_CROSS)
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
