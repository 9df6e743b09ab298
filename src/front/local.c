/*
 * local: commands answered by respgate itself, see local.h.
 *
 * These are the commands of the client's own session (its connection is to
 * respgate, not to a node) and what a legacy client sends on connect: AUTH,
 * HELLO, CLIENT SETNAME/SETINFO, SELECT 0, PING, INFO. Replies use Redis's
 * exact words, so client libraries that match on error text (Jedis, Lettuce,
 * redis-py) react to respgate as they would to Redis.
 */
#include "config.h"
#include "base/clock.h"

#include "front/local.h"

#include "model/acl.h"
#include "conn/client.h"
#include "model/conf.h"
#include "base/guard.h"
#include "base/log.h"
#include "loop/metrics.h"
#include "loop/req.h"
#include "base/resp.h"
#include "model/shared.h"
#include "path/pubsub.h"
#include "path/tracking.h"
#include "path/session.h"
#include "front/info.h"
#include "loop/worker.h"

#include <limits.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define NAME_MAX_LEN 32      /* longer than any command or option name */

/* What a handler works on: the client, its request, and where the reply goes. */
struct call {
    struct client *c;
    struct req *r;
    const struct resp_req *q;
    struct evbuffer *out;
    int later; /* the reply comes later (INFO's node sections) */
};

struct local_cmd {
    const char *name;
    int arity;    /* Redis's convention: N exactly, -N at least N */
    int pre_auth; /* allowed before AUTH */
    void (*run)(struct call *k);
};

static int arg_is(const struct call *k, size_t i, const char *word)
{
    return resp_arg_is(k->r->buf, k->q, i, word);
}

static void bulk_arg(const struct call *k, size_t i)
{
    resp_add_arg(k->out, k->r->buf, &k->q->argv[i]);
}

static void bulk_str(struct evbuffer *out, const char *s)
{
    resp_add_bulk(out, s, strlen(s));
}

/* ---- PING ECHO QUIT SELECT ---- */

static void local_echo(struct call *k)
{
    bulk_arg(k, 1);
}

static void local_ping(struct call *k)
{
    if (k->q->argc > 2)
        resp_add_error(k->out, "ERR wrong number of arguments for 'ping' command");
    else if (k->q->argc == 2)
        bulk_arg(k, 1);
    else
        resp_add_status(k->out, "PONG");
}

static void local_quit(struct call *k)
{
    resp_add_status(k->out, "OK");
    client_close_soon(k->c);
}

static void local_select(struct call *k)
{
    long long db;
    if (resp_arg_ll(k->r->buf, k->q, 1, LLONG_MIN, LLONG_MAX, &db) < 0)
        resp_add_error(k->out, RESP_NOT_INTEGER);
    else if (db < INT_MIN || db > INT_MAX)
        resp_add_error(k->out, "ERR value is out of range, value must between %d and %d", INT_MIN, INT_MAX);
    else if (db != 0)
        resp_add_error(k->out, "ERR SELECT is not allowed in cluster mode");
    else
        resp_add_status(k->out, "OK");
}

/* ---- authentication ---- */

/* Compares guess A with secret B in time that depends only on B's length,
 * not on where they differ. Returns 1 if equal. */
static int secret_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    volatile unsigned char diff = alen != blen;
    for (size_t i = 0; i < blen; i++)
        diff |= (unsigned char)((i < alen ? a[i] : 0) ^ b[i]);
    return diff == 0;
}

/* Whether C's AUTH waits its turn first: its address failed
 * client.auth_max_failures times in the last minute. Then R is held and
 * comes again once it has waited (client_hold_auth). */
static int auth_waits(struct call *k)
{
    struct client *c = k->c;
    const struct conf *cf = c->w->conf;
    if (c->auth.waited) {
        c->auth.waited = 0;
        return 0;
    }
    char host[64];
    guard_host(c->addr, host, sizeof(host));
    uint64_t ms = guard_auth_wait(c->w->shared->guard, host, clock_us() / 1000, (uint32_t)cf->auth_max_failures,
                                  cf->auth_delay_ms);
    if (ms == 0 || client_hold_auth(c, k->r, ms) < 0)
        return 0;
    k->later = 1;
    return 1;
}

static void auth_failed(struct client *c)
{
    char host[64];
    uint32_t failures, unlogged;
    guard_host(c->addr, host, sizeof(host));
    if ((unlogged = guard_auth_failed(c->w->shared->guard, host, clock_us() / 1000, &failures)) == 0)
        return; /* one line a second per address */
    log_notice("client id=%llu addr=%s: AUTH failed; %u failures from %s in the last minute, %u since the last "
               "line about it",
               (unsigned long long)c->id, c->addr, failures, host, unlogged);
}

/* Checks USER (argument index, or 0 for "default") and PASS (argument index)
 * against the client password. Returns 0 and marks C authenticated, -1, or
 * 1 if the check waits (auth_waits: the reply comes later). */
static int authenticate(struct call *k, size_t user_i, size_t pass_i)
{
    if (auth_waits(k))
        return 1;
    const char *want = k->c->w->conf->client_password;
    const char *user = "default", *pass;
    size_t ulen = 7, plen;
    if ((user_i && (user = resp_arg_view(k->r->buf, k->q, user_i, &ulen)) == NULL) ||
        (pass = resp_arg_view(k->r->buf, k->q, pass_i, &plen)) == NULL)
        return -1; /* out of memory */
    int default_user = ulen == 7 && memcmp(user, "default", 7) == 0;
    const struct acl_user *u = conf_user(k->c->w->conf, user, ulen);
    int ok;
    if (u) /* a user of users: (the default user too, when it names it) */
        ok = acl_password_ok(u, pass, plen);
    else /* With no client password, the default user has nopass, as in Redis. */
        ok = default_user && (want == NULL || secret_equal(pass, plen, want, strlen(want)));
    if (!ok) {
        auth_failed(k->c);
        return -1;
    }
    client_set_authed(k->c, user, ulen);
    return 0;
}

static void local_auth(struct call *k)
{
    if (k->q->argc > 3) {
        resp_add_error(k->out, "ERR syntax error");
    } else if (k->q->argc == 2 && conf_default_open(k->c->w->conf)) {
        resp_add_error(k->out, "ERR AUTH <password> called without any password configured for the default user. "
                               "Are you sure your configuration is correct?");
    } else {
        int rc = authenticate(k, k->q->argc == 3 ? 1 : 0, k->q->argc - 1);
        if (rc < 0)
            resp_add_error(k->out, "WRONGPASS invalid username-password pair or user is disabled.");
        else if (rc == 0)
            resp_add_status(k->out, "OK");
    }
}

/* ---- HELLO ---- */

/* Redis's rule for names: no spaces, newlines or other special characters.
 * Returns the argument's bytes, *LEN of them, or NULL if it breaks the rule
 * (or memory ran out). */
static const char *valid_name(const struct call *k, size_t i, size_t *len)
{
    const char *name = resp_arg_view(k->r->buf, k->q, i, len);
    for (size_t j = 0; name && j < *len; j++)
        if (name[j] < '!' || name[j] > '~')
            return NULL;
    return name;
}

static void set_name(struct call *k, const char *name, size_t len)
{
    free(k->c->name);
    k->c->name = len ? strndup(name, len) : NULL;
}

static void hello_reply(struct call *k)
{
    char version[32];
    shared_redis_version(k->c->w->shared, version, sizeof(version));
    int proto = k->c->proto;
    resp_add_map_head(k->out, proto, 7); /* RESP2: the fields as a flat array, as from Redis */
    bulk_str(k->out, "server");
    bulk_str(k->out, "redis");
    bulk_str(k->out, "version");
    bulk_str(k->out, version[0] ? version : "7.0.0");
    bulk_str(k->out, "proto");
    evbuffer_add_printf(k->out, ":%d\r\n", proto);
    bulk_str(k->out, "id");
    evbuffer_add_printf(k->out, ":%llu\r\n", (unsigned long long)k->c->id);
    bulk_str(k->out, "mode");
    bulk_str(k->out, "standalone");
    bulk_str(k->out, "role");
    bulk_str(k->out, "master");
    bulk_str(k->out, "modules");
    evbuffer_add_printf(k->out, "*0\r\n");
}

static void local_hello(struct call *k)
{
    size_t argc = k->q->argc, i = 1;
    long long ver = k->c->proto;
    if (argc >= 2) {
        if (resp_arg_ll(k->r->buf, k->q, 1, LLONG_MIN, LLONG_MAX, &ver) < 0) {
            resp_add_error(k->out, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (ver < 2 || ver > 3) {
            resp_add_error(k->out, "NOPROTO unsupported protocol version");
            return;
        }
        i = 2;
    }
    size_t auth_at = 0, name_at = 0;
    for (; i < argc; i++) {
        if (arg_is(k, i, "auth") && i + 2 < argc) {
            auth_at = i;
            i += 2;
        } else if (arg_is(k, i, "setname") && i + 1 < argc) {
            name_at = ++i;
        } else {
            size_t len = 0;
            const char *opt = resp_arg_view(k->r->buf, k->q, i, &len);
            resp_add_error(k->out, "ERR Syntax error in HELLO option '%.*s'", resp_quote_len(len), opt ? opt : "");
            return;
        }
    }
    int rc = auth_at ? authenticate(k, auth_at + 1, auth_at + 2) : 0;
    if (rc < 0)
        resp_add_error(k->out, "WRONGPASS invalid username-password pair or user is disabled.");
    if (rc != 0)
        return;
    if (!client_authed(k->c)) {
        resp_add_error(k->out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
                               "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
                               "select the RESP protocol version at the same time");
        return;
    }
    const char *name = NULL;
    size_t name_len = 0;
    if (name_at && (name = valid_name(k, name_at, &name_len)) == NULL) {
        resp_add_error(k->out, "ERR Client names cannot contain spaces, newlines or special characters.");
        return;
    }
    /* A subscriber's and a transaction's node connections speak the
     * protocol they were opened in: it stays while they are in use. */
    if (ver != k->c->proto && (pubsub_subscribed(k->c) || pubsub_pending(k->c) || k->c->txn.pin || k->c->txn.multi)) {
        resp_add_error(k->out, "ERR respgate: HELLO cannot change the protocol of a subscribed client or "
                               "inside a transaction or WATCH (UNSUBSCRIBE, EXEC, DISCARD or UNWATCH first)");
        return;
    }
    if (name_at)
        set_name(k, name, name_len);
    if (ver != k->c->proto) {
        pubsub_reset(k->c); /* its idle Pub/Sub connections spoke the old protocol */
        tracking_reset(k->c); /* invalidations need RESP3 */
    }
    k->c->proto = (uint8_t)ver;
    hello_reply(k);
}

/* ---- CLIENT ---- */

static void local_client_info_line(struct call *k, struct evbuffer *out)
{
    struct client *c = k->c;
    char laddr[64] = "?";
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family != AF_UNIX)
        client_format_addr((struct sockaddr *)&ss, laddr, sizeof(laddr));
    evbuffer_add_printf(out,
                        "id=%llu addr=%s laddr=%s fd=%d name=%s age=%lld idle=0 flags=N db=0 sub=0 psub=0 ssub=0 "
                        "multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 obl=0 oll=0 omem=%zu tot-mem=0 "
                        "events=r cmd=client|info user=%s redir=-1 resp=%d\n",
                        (unsigned long long)c->id, c->addr, laddr, (int)fd, c->name ? c->name : "",
                        (long long)((worker_turn_us(c->w) - c->created_us) / 1000000),
                        evbuffer_get_length(bufferevent_get_output(c->bev)),
                        c->auth.user[0] ? c->auth.user : "default", (int)c->proto);
}

static void local_client_setname(struct call *k)
{
    size_t len;
    const char *name = valid_name(k, 2, &len);
    if (name == NULL) {
        resp_add_error(k->out, "ERR Client names cannot contain spaces, newlines or special characters.");
        return;
    }
    set_name(k, name, len);
    resp_add_status(k->out, "OK");
}

static void local_client_getname(struct call *k)
{
    if (k->c->name)
        bulk_str(k->out, k->c->name);
    else
        resp_add_nil(k->out, k->c->proto);
}

static void local_client_id(struct call *k)
{
    evbuffer_add_printf(k->out, ":%llu\r\n", (unsigned long long)k->c->id);
}

/* CLIENT INFO and CLIENT LIST: only the client's own session. The rest of
 * respgate's clients are other applications' business, and the nodes'
 * are respgate's. */
static void local_client_info(struct call *k)
{
    struct evbuffer *line = evbuffer_new();
    if (line == NULL)
        return;
    local_client_info_line(k, line);
    char head[RESP_HEAD_MAX + 4];
    evbuffer_add(k->out, head, resp_text_head(head, k->c->proto, evbuffer_get_length(line)));
    evbuffer_add_buffer(k->out, line);
    evbuffer_add(k->out, "\r\n", 2);
    evbuffer_free(line);
}

static void local_client_setinfo(struct call *k)
{
    int name = arg_is(k, 2, "lib-name");
    if (!name && !arg_is(k, 2, "lib-ver"))
        resp_add_error(k->out, "ERR syntax error");
    else if (valid_name(k, 3, &(size_t){0}) == NULL)
        resp_add_error(k->out, "ERR %s cannot contain spaces, newlines or special characters.",
                       name ? "lib-name" : "lib-ver");
    else
        resp_add_status(k->out, "OK");
}

static void local_client_no_evict(struct call *k)
{
    if (arg_is(k, 2, "on") || arg_is(k, 2, "off"))
        resp_add_status(k->out, "OK");
    else
        resp_add_error(k->out, "ERR syntax error");
}

static void local_client_reply(struct call *k)
{
    if (arg_is(k, 2, "on")) {
        k->c->reply_mode = CLIENT_REPLY_ON;
        k->r->silent = 0;
        resp_add_status(k->out, "OK");
    } else if (arg_is(k, 2, "off") || arg_is(k, 2, "skip")) {
        k->c->reply_mode = arg_is(k, 2, "off") ? CLIENT_REPLY_OFF : CLIENT_REPLY_SKIP;
        k->r->silent = 1;
    } else {
        resp_add_error(k->out, "ERR syntax error");
    }
}

/* CLIENT TRACKING, TRACKINGINFO, GETREDIR, CACHING: tracking.h's. */
static void local_client_tracking(struct call *k)
{
    k->later = tracking_command(k->c, k->r, k->q);
}

/* The CLIENT subcommands answered here, each with its argument count
 * (Redis's convention: -N is at least N); SYNTAX: a wrong count is Redis's
 * syntax error rather than its arity one. */
static const struct client_sub {
    const char *name;
    int arity;
    int syntax;
    void (*run)(struct call *k);
} client_subs[] = {
    {"caching", 3, 0, local_client_tracking},  {"getname", 2, 0, local_client_getname},      {"getredir", 2, 0, local_client_tracking},
    {"id", 2, 0, local_client_id},             {"info", 2, 0, local_client_info},            {"list", 2, 0, local_client_info},
    {"no-evict", 3, 1, local_client_no_evict}, {"reply", 3, 1, local_client_reply},          {"setinfo", 4, 1, local_client_setinfo},
    {"setname", 3, 0, local_client_setname},   {"tracking", -3, 0, local_client_tracking}, {"trackinginfo", 2, 0, local_client_tracking},
};

static void local_client(struct call *k)
{
    const struct client_sub *s = NULL;
    for (size_t i = 0; i < sizeof(client_subs) / sizeof(client_subs[0]); i++)
        if (arg_is(k, 1, client_subs[i].name))
            s = &client_subs[i];
    if (s && (s->arity > 0 ? k->q->argc == (size_t)s->arity : k->q->argc >= (size_t)-s->arity)) {
        s->run(k);
    } else if (s && s->syntax) {
        resp_add_error(k->out, "ERR syntax error");
    } else if (s) {
        resp_add_error(k->out, "ERR wrong number of arguments for 'client|%s' command", s->name);
    } else {
        char shown[NAME_MAX_LEN + 1];
        resp_arg_printable(k->r->buf, k->q, 1, shown, sizeof(shown));
        resp_add_error(k->out, "ERR respgate answers CLIENT only for the client's own session; 'CLIENT %s' "
                               "is not supported",
                       shown);
    }
}

/* ---- ACL ---- */

/* respgate's users (conf's users:), the default user first, as Redis lists
 * them; without their passwords. */
static void local_acl_users(struct call *k, int describe)
{
    const struct conf *cf = k->c->w->conf;
    int implicit = conf_user(cf, "default", 7) == NULL;
    evbuffer_add_printf(k->out, "*%zu\r\n", cf->users.n + (size_t)implicit);
    if (implicit) {
        const char *line = conf_default_open(cf) ? "user default on nopass ~* &* +@all" : "user default on ~* &* +@all";
        resp_add_bulk(k->out, describe ? line : "default", describe ? strlen(line) : 7);
    }
    for (size_t i = 0; i < cf->users.n; i++) {
        const struct acl_user *u = cf->users.v[i].acl;
        if (!describe) {
            resp_add_bulk(k->out, u->name, strlen(u->name));
            continue;
        }
        struct evbuffer *line = evbuffer_new();
        if (line == NULL)
            continue;
        acl_describe(u, line);
        evbuffer_add_printf(k->out, "$%zu\r\n", evbuffer_get_length(line));
        evbuffer_add_buffer(k->out, line);
        evbuffer_add(k->out, "\r\n", 2);
        evbuffer_free(line);
    }
}

static void local_acl(struct call *k)
{
    if (k->q->argc == 2 && arg_is(k, 1, "whoami")) {
        const char *name = k->c->auth.user[0] ? k->c->auth.user : "default";
        resp_add_bulk(k->out, name, strlen(name));
    } else if (k->q->argc == 2 && (arg_is(k, 1, "list") || arg_is(k, 1, "users"))) {
        local_acl_users(k, arg_is(k, 1, "list"));
    } else {
        resp_add_error(k->out, "ERR respgate answers ACL WHOAMI, ACL LIST and ACL USERS only");
    }
}

/* ---- RESET ---- */

static void local_reset(struct call *k)
{
    struct client *c = k->c;
    free(c->name);
    c->name = NULL;
    c->reply_mode = CLIENT_REPLY_ON;
    k->r->silent = 0;
    c->proto = 2; /* as Redis: RESET returns to RESP2 */
    c->auth.ok = 0; /* as Redis: back to the default user, authenticated only without a password */
    c->auth.user[0] = '\0';
    c->auth.acl_serial = 0;
    session_reset(c); /* as Redis: DISCARD, UNWATCH, and no more subscriptions */
    pubsub_reset(c);
    tracking_reset(c);
    resp_add_status(k->out, "RESET");
}

/* ---- INFO (info.h) ---- */

static void local_info(struct call *k)
{
    k->later = info_run(k->c, k->r, k->q);
}

static const struct local_cmd local_cmds[] = {
    {"acl", -2, 0, local_acl},
    {"auth", -2, 1, local_auth},
    {"client", -2, 0, local_client},
    {"echo", 2, 0, local_echo},
    {"hello", -1, 1, local_hello},
    {"info", -1, 0, local_info},
    {"ping", -1, 0, local_ping},
    {"quit", -1, 1, local_quit},
    {"reset", 1, 1, local_reset},
    {"select", 2, 0, local_select},
};

int local_dispatch(struct client *c, struct req *r, const struct resp_req *q)
{
    struct call k = {c, r, q, r->reply, 0};
    const struct local_cmd *cmd = NULL;
    for (size_t i = 0; i < sizeof(local_cmds) / sizeof(local_cmds[0]) && cmd == NULL; i++)
        if (arg_is(&k, 0, local_cmds[i].name))
            cmd = &local_cmds[i];

    if (!client_authed(c) && (cmd == NULL || !cmd->pre_auth)) {
        resp_add_error(k.out, "NOAUTH Authentication required.");
        return 0;
    }
    if (cmd == NULL) {
        /* A command of the client's own session that this build does not answer. */
        char name[NAME_MAX_LEN + 1];
        resp_add_error(k.out, "ERR respgate does not support '%s'", resp_arg_printable(r->buf, q, 0, name, sizeof(name)));
        return 0;
    }
    if ((cmd->arity > 0 && q->argc != (size_t)cmd->arity) || (cmd->arity < 0 && q->argc < (size_t)-cmd->arity)) {
        resp_add_error(k.out, "ERR wrong number of arguments for '%s' command", cmd->name);
        return 0;
    }
    cmd->run(&k);
    return k.later;
}
