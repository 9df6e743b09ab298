/*
 * local: commands answered by respgate itself, see local.h.
 *
 * Replies use Redis's exact words, so client libraries that match on error
 * text (Jedis, Lettuce, redis-py) react to respgate as they would to Redis.
 */
#include "local.h"

#include "client.h"
#include "conf.h"
#include "log.h"
#include "resp.h"
#include "worker.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <stddef.h>
#include <string.h>

#define NAME_MAX_LEN 32    /* longer than any command name */
#define SECRET_MAX_LEN 512 /* AUTH arguments longer than this cannot match */

struct local_cmd {
    const char *name;
    int arity;     /* Redis's convention: N exactly, -N at least N */
    int pre_auth;  /* allowed before AUTH */
    void (*run)(struct client *c, struct evbuffer *frame, const struct resp_req *req, struct evbuffer *out);
};

static void cmd_echo(struct client *c, struct evbuffer *frame, const struct resp_req *req, struct evbuffer *out)
{
    evbuffer_add_printf(out, "$%zu\r\n", req->argv[1].len);
    resp_arg_append(out, frame, &req->argv[1]);
    evbuffer_add(out, "\r\n", 2);
}

static void cmd_ping(struct client *c, struct evbuffer *frame, const struct resp_req *req, struct evbuffer *out)
{
    if (req->argc == 1) {
        resp_add_status(out, "PONG");
        return;
    }
    if (req->argc > 2) {
        resp_add_error(out, "ERR wrong number of arguments for 'ping' command");
        return;
    }
    cmd_echo(c, frame, req, out);
}

static void cmd_quit(struct client *c, struct evbuffer *frame, const struct resp_req *req, struct evbuffer *out)
{
    resp_add_status(out, "OK");
    client_close_soon(c);
}

int local_secret_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    /* The loop runs over the configured secret B only, so its time says
     * nothing about the guess A. */
    volatile unsigned char diff = alen != blen;
    for (size_t i = 0; i < blen; i++)
        diff |= (unsigned char)((i < alen ? a[i] : 0) ^ b[i]);
    return diff == 0;
}

static void cmd_auth(struct client *c, struct evbuffer *frame, const struct resp_req *req, struct evbuffer *out)
{
    const char *want = c->w->conf->client_password;
    char user[SECRET_MAX_LEN], pass[SECRET_MAX_LEN];
    size_t ulen = 7, plen;

    if (req->argc > 3) {
        resp_add_error(out, "ERR syntax error");
        return;
    }
    memcpy(user, "default", 7);
    if (req->argc == 3)
        ulen = resp_arg_copy(frame, &req->argv[1], user, sizeof(user));
    plen = resp_arg_copy(frame, &req->argv[req->argc - 1], pass, sizeof(pass));

    int default_user = ulen == 7 && memcmp(user, "default", 7) == 0;
    if (want == NULL) {
        /* No client password: the default user has nopass, as in Redis. */
        if (req->argc == 2)
            resp_add_error(out, "ERR AUTH <password> called without any password configured for the default "
                                "user. Are you sure your configuration is correct?");
        else if (default_user)
            c->authed = 1, resp_add_status(out, "OK");
        else
            resp_add_error(out, "WRONGPASS invalid username-password pair or user is disabled.");
        return;
    }
    if (default_user && plen <= sizeof(pass) && local_secret_equal(pass, plen, want, strlen(want))) {
        c->authed = 1;
        resp_add_status(out, "OK");
    } else {
        log_info("client id=%llu addr=%s: AUTH failed", (unsigned long long)c->id, c->addr);
        resp_add_error(out, "WRONGPASS invalid username-password pair or user is disabled.");
    }
    memset(pass, 0, sizeof(pass));
}

static const struct local_cmd local_cmds[] = {
    {"ping", -1, 0, cmd_ping},
    {"echo", 2, 0, cmd_echo},
    {"quit", -1, 1, cmd_quit},
    {"auth", -2, 1, cmd_auth},
};

/* Copies the command name, lower-cased, into NAME; returns its length, or 0
 * if it is too long to be any command. */
static size_t command_name(struct evbuffer *frame, const struct resp_req *req, char *name)
{
    size_t len = resp_arg_copy(frame, &req->argv[0], name, NAME_MAX_LEN - 1);
    if (len >= NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        name[i] = (char)tolower((unsigned char)name[i]);
    name[len] = '\0';
    return len;
}

/* Writes NAME fit for an error text: printable, and cut short. */
static void printable_name(const char *name, size_t len, char *dst, size_t cap)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = isprint((unsigned char)name[i]) ? name[i] : '?';
    dst[n] = '\0';
}

void local_dispatch(struct client *c, struct evbuffer *frame, const struct resp_req *req, struct evbuffer *out)
{
    char name[NAME_MAX_LEN];
    size_t len = command_name(frame, req, name);
    const struct local_cmd *cmd = NULL;

    for (size_t i = 0; len && i < sizeof(local_cmds) / sizeof(local_cmds[0]); i++)
        if (strcmp(name, local_cmds[i].name) == 0)
            cmd = &local_cmds[i];

    if (!client_authed(c) && (cmd == NULL || !cmd->pre_auth)) {
        resp_add_error(out, "NOAUTH Authentication required.");
        return;
    }
    if (cmd == NULL) {
        /* A command of the client's own session that this build does not answer yet. */
        char shown[NAME_MAX_LEN + 1], raw[NAME_MAX_LEN];
        size_t rlen = resp_arg_copy(frame, &req->argv[0], raw, sizeof(raw));
        printable_name(raw, rlen < sizeof(raw) ? rlen : sizeof(raw), shown, sizeof(shown));
        resp_add_error(out, "ERR respgate does not support '%s' yet", shown);
        return;
    }
    if ((cmd->arity > 0 && req->argc != (size_t)cmd->arity) || (cmd->arity < 0 && req->argc < (size_t)-cmd->arity)) {
        resp_add_error(out, "ERR wrong number of arguments for '%s' command", cmd->name);
        return;
    }
    cmd->run(c, frame, req, out);
}
