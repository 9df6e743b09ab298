/*
 * dispatch: what becomes of a client's request, see dispatch.h.
 *
 * Checked in Redis's order (known command, authenticated, arity), then
 * answered here (local), or handed to the module that owns its kind: a
 * session's (transactions, blocking commands), Pub/Sub's, a fan-out's, or
 * route's, for a command whose keys share one slot. Keys in several slots
 * are split (CMD_SPLIT), answered by steps in one slot (cross.h), or
 * refused with Redis Cluster's -CROSSSLOT words.
 */
#include "front/dispatch.h"

#include "model/acl.h"
#include "conn/client.h"
#include "model/cmd.h"
#include "base/compat.h"
#include "model/conf.h"
#include "path/cross.h"
#include "path/fanout.h"
#include "front/local.h"
#include "loop/metrics.h"
#include "migrate/migrate.h"
#include "model/nodecmd.h"
#include "path/pubsub.h"
#include "loop/req.h"
#include "base/resp.h"
#include "path/route.h"
#include "model/shared.h"
#include "path/session.h"
#include "loop/worker.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The bytes of VIEW (LEN of them) that Redis's "%.*s" of at most MAX
 * shows: up to the first zero byte. */
static int shown(const char *view, size_t len, size_t max)
{
    return resp_quote_len(strnlen(view, len < max ? len : max));
}

/* Redis's replies to an unknown command, and to an unknown subcommand of PARENT. */
static void fail_unknown(struct worker *w, struct req *r, const struct resp_req *q, const struct cmd_spec *parent)
{
    const struct compat_texts *t = compat_texts(w->version);
    if (parent) {
        char name[129], arg[129];
        resp_arg_printable(r->buf, q, 0, name, sizeof(name));
        for (char *p = name; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        resp_arg_printable(r->buf, q, 1, arg, sizeof(arg));
        if (t->subcommand_table)
            req_fail(w, r, "ERR unknown subcommand '%s'. Try %s HELP.", arg, name);
        else
            req_fail(w, r, "ERR Unknown subcommand or wrong number of arguments for '%s'. Try %s HELP.", arg, name);
        return;
    }
    /* Redis's loop: each argument quoted, cut to what is left of 128
     * bytes, until 128 are written; bytes as they are, CR and LF as
     * spaces (resp_add_error). */
    size_t nlen, len;
    const char *name = resp_arg_view(r->buf, q, 0, &nlen), *arg;
    if (name == NULL) {
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    char args[128 + 8];
    size_t o = 0;
    args[0] = '\0';
    for (size_t i = 1; i < q->argc && o < 128; i++)
        if ((arg = resp_arg_view(r->buf, q, i, &len)) != NULL)
            o += (size_t)snprintf(args + o, sizeof(args) - o, "%s%.*s%s", t->quote, shown(arg, len, 128 - o), arg,
                                  t->arg_end);
    req_fail(w, r, "ERR unknown command %s%.*s%s, with args beginning with: %s", t->quote,
             shown(name, nlen, t->name_max ? t->name_max : nlen), name, t->quote, args);
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
                resp_arg_printable(r->buf, q, 1, sub, sizeof(sub)), parent);
}

static int arity_ok(const struct cmd_spec *cmd, size_t argc)
{
    return cmd->arity >= 0 ? argc == (size_t)cmd->arity : argc >= (size_t)-cmd->arity;
}

/* Routes keyed request R: to the slot of its keys, or, when they are in
 * several slots, split (CMD_SPLIT) or answered by steps (cross.h). */
static void dispatch_by_keys(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    size_t stack[ROUTE_KEYS_ON_STACK], *keys;
    /* Safe to send again after a lost connection, and to a replica. */
    r->readonly = (cmd->flags & (CMDF_READONLY | CMDF_WRITE)) == CMDF_READONLY;
    int n = route_find_keys(r->buf, cmd, q, stack, &keys);
    int slot = n > 0 ? route_common_slot(r, q, keys, n) : n == ROUTE_KEYS_NOMEM ? n : route_any_slot(w);
    if (slot == ROUTE_KEYS_CROSS && cmd->kind == CMD_SPLIT)
        fanout_split(w, r, cmd, q, keys, (size_t)n);
    else if (slot == ROUTE_KEYS_CROSS)
        cross_run(w, r, cmd, q, keys, (size_t)n);
    else if (slot == ROUTE_KEYS_NOMEM)
        req_fail(w, r, REQ_OUT_OF_MEMORY);
    else if (slot < 0)
        req_fail(w, r, REQ_SLOT_NOT_SERVED);
    else
        route_send(w, r, slot);
    if (keys != stack)
        free(keys);
}

/* The spec of R's command (arguments Q): the generated table's, or one the
 * nodes taught (nodecmd.h); the parent when argv[1] names none of its
 * subcommands; NULL if unknown. */
static const struct cmd_spec *command_of(struct worker *w, struct req *r, const struct resp_req *q)
{
    const struct cmd_spec *cmd = cmd_find(r->buf, q);
    if (cmd == NULL || (cmd->nsubs && q->argc > 1)) {
        const struct cmd_spec *learned = nodecmd_find(w->learned, r->buf, q);
        cmd = learned ? learned : cmd;
    }
    return cmd;
}

/* Whether subscriber C's request R waits (held) or is refused: whether C is
 * subscribed, which decides what it may run, is known once its subscription
 * commands are confirmed. */
static int subscriber_stops(struct client *c, struct req *r, const struct cmd_spec *cmd)
{
    char buf[200];
    const char *no;
    if (!pubsub_owns(c, cmd) && pubsub_pending(c)) {
        c->hold = r;
        return 1;
    }
    if ((no = pubsub_refusal(c, cmd, buf, sizeof(buf)))) {
        req_fail(c->w, r, "%s", no);
        return 1;
    }
    return 0;
}

/* Whether U may not use a channel that R (command CMD, arguments Q) names:
 * SUBSCRIBE's, SSUBSCRIBE's and PSUBSCRIBE's (patterns, compared as such),
 * PUBLISH's and SPUBLISH's, the commands Redis checks. */
static int channels_refused(const struct acl_user *u, struct req *r, const struct cmd_spec *cmd,
                                const struct resp_req *q)
{
    static const struct {
        const char *name;
        int all, pattern; /* every argument, or the first only */
    } named[] = {{"subscribe", 1, 0}, {"ssubscribe", 1, 0}, {"psubscribe", 1, 1}, {"publish", 0, 0}, {"spublish", 0, 0}};
    size_t i = 0;
    while (i < sizeof(named) / sizeof(named[0]) && strcmp(cmd->name, named[i].name) != 0)
        i++;
    if (i == sizeof(named) / sizeof(named[0]) || q->argc < 2)
        return 0;
    for (size_t a = 1; a < (named[i].all ? q->argc : 2); a++) {
        size_t len;
        const char *channel = resp_arg_view(r->buf, q, a, &len);
        if (channel == NULL || !acl_channel_ok(u, channel, len, named[i].pattern))
            return 1;
    }
    return 0;
}

/* Whether C's ACL user (users:) may not run R (command CMD, arguments Q):
 * the command, then each of its keys, as Redis checks them. Answers R with
 * Redis's NOPERM then; inside MULTI, EXEC will abort. Returns 1 if so. */
static int stopped_by_acl(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    struct worker *w = c->w;
    int gone;
    const struct acl_user *u = client_acl(c, &gone);
    if (u == NULL && !gone)
        return 0;
    if (gone) { /* Redis closes a deleted user's connections */
        req_fail(w, r, "NOPERM respgate: user '%s' is no longer in the configuration", c->auth.user);
        client_close_soon(c);
        return 1;
    }
    if (!(cmd->flags & CMDF_NO_AUTH) && !acl_may_run(u, cmd)) {
        char name[64];
        const char *bar = strchr(cmd->name, '|');
        size_t n = bar && !compat_texts(w->version)->subcommand_table ? (size_t)(bar - cmd->name) : strlen(cmd->name);
        snprintf(name, sizeof(name), "%.*s", (int)n, cmd->name);
        c->txn.failed |= c->txn.multi;
        req_fail(w, r, "NOPERM this user has no permissions to run the '%s%s", name, compat_texts(w->version)->noperm);
        return 1;
    }
    if (!u->channels.all && channels_refused(u, r, cmd, q)) {
        c->txn.failed |= c->txn.multi;
        req_fail(w, r, "NOPERM this user has no permissions to access one of the channels used as arguments");
        return 1;
    }
    if (u->keys.all)
        return 0;
    size_t stack[ROUTE_KEYS_ON_STACK], *keys;
    int n = route_find_keys(r->buf, cmd, q, stack, &keys);
    if (n == ROUTE_KEYS_NOMEM) {
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return 1;
    }
    int refused = 0;
    for (int i = 0; i < n && !refused; i++) {
        size_t len;
        const char *key = resp_arg_view(r->buf, q, keys[i], &len);
        refused = key == NULL || !acl_key_ok(u, key, len);
    }
    if (keys != stack)
        free(keys);
    if (refused) {
        c->txn.failed |= c->txn.multi;
        req_fail(w, r, "NOPERM this user has no permissions to access one of the keys used as arguments");
    }
    return refused;
}

/* Redis's checks of a command to forward, in its order, and whether there
 * is a map to route by. Returns 0 if R may go on; 1 if it was answered, or
 * is held until the first map. */
static int stopped_before_routing(struct client *c, struct req *r, const struct resp_req *q,
                                  const struct cmd_spec *cmd)
{
    struct worker *w = c->w;
    if (!client_authed(c)) {
        req_fail(w, r, "NOAUTH Authentication required.");
        return 1;
    }
    if (cmd == NULL || (cmd->nsubs && q->argc > 1)) {
        c->txn.failed |= c->txn.multi; /* as Redis: EXEC will abort */
        fail_unknown(w, r, q, cmd);
        return 1;
    }
    if (!arity_ok(cmd, q->argc)) {
        c->txn.failed |= c->txn.multi;
        fail_arity(w, r, q, cmd);
        return 1;
    }
    if (w->conf->users.n && stopped_by_acl(c, r, cmd, q))
        return 1;
    if (cmd->kind == CMD_REFUSED && !c->txn.multi) {
        req_fail(w, r, "ERR respgate does not forward '%s': %s", cmd->name, cmd->why);
        return 1;
    }
    enum client_map map = client_wait_for_map(c, r);
    if (map == CLIENT_MAP_DOWN) {
        c->txn.failed |= c->txn.multi;
        req_fail(w, r, "CLUSTERDOWN The cluster is down");
    }
    return map != CLIENT_MAP_READY;
}

/* Sends R on to the module its kind belongs to. */
static void hand_over(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q,
                      int session, int pinned)
{
    struct worker *w = c->w;
    if (session) {
        session_dispatch(c, r, cmd, q);
        return;
    }
    if (pinned) {
        pubsub_dispatch(c, r, cmd, q);
        return;
    }
    r->write = (cmd->flags & CMDF_WRITE) != 0;
    client_awaits(r); /* on a shared connection: a pinned command waits for it */
    if (cmd->kind == CMD_BROADCAST) {
        fanout_broadcast(w, r, cmd, q);
        return;
    }
    if (cmd->kind == CMD_PUBSUB) { /* PUBLISH, PUBSUB CHANNELS/NUMSUB/NUMPAT */
        int slot = pubsub_slot(w);
        if (slot < 0)
            req_fail(w, r, REQ_SLOT_NOT_SERVED);
        else
            route_send(w, r, slot);
        return;
    }
    /* Finding an argument in a frame of many chains walks the chains before
     * it; a request with many arguments is made contiguous once instead. */
    if (q->argc > ROUTE_KEYS_ON_STACK)
        evbuffer_pullup(r->buf, -1);
    dispatch_by_keys(w, r, cmd, q);
}

void dispatch_request(struct client *c, struct req *r, const struct resp_req *q)
{
    const struct cmd_spec *cmd = command_of(c->w, r, q);
    r->family = (uint8_t)metrics_family(cmd);
    if (cmd && c->sub && subscriber_stops(c, r, cmd))
        return;
    /* Inside MULTI, the session's own commands are queued too, except
     * those Redis runs at once. */
    if (cmd && cmd->kind == CMD_LOCAL && !(c->sub && pubsub_owns(c, cmd)) &&
        (!c->txn.multi || (cmd->ctx & CMD_CTX_MULTI_NOW))) {
        if (c->w->conf->users.n && client_authed(c) && arity_ok(cmd, q->argc) && stopped_by_acl(c, r, cmd, q))
            return;
        if (local_dispatch(c, r, q) == 0)
            req_complete(c->w, r);
        return;
    }
    if (stopped_before_routing(c, r, q, cmd))
        return;
    if (c->w->conf->migration_mode != MIGRATION_OFF && migrate_before_routing(c, r, cmd, q))
        return; /* a write waiting for its keys' old copies (migrate.h) */
    /* Redis runs one connection's commands one after another. Here they
     * run on a shared connection or on a private one (session.h), and the
     * two do not wait for each other: so a command for a private one waits
     * until those before it are answered, a command after one waits for
     * it, and a blocking command waits for everything before it. */
    int session = session_owns(c, cmd, r->buf, q);
    int pinned = session || pubsub_owns(c, cmd);
    int blocks = session && !c->txn.multi && cmd_blocks(cmd, r->buf, q);
    if (pinned ? c->nshared > 0 || (blocks && c->npinned > 0) : c->npinned > 0) {
        c->hold = r;
        return;
    }
    hand_over(c, r, cmd, q, session, pinned);
}
