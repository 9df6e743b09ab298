/*
 * cross: commands whose keys lie in several slots, see cross.h.
 *
 * A command goes through phases, each a batch of steps sent at once and
 * awaited together:
 *   GATHER  read    DUMP each key of another slot
 *           place   RESTORE each value found into a temporary key of the
 *                   run slot ("{tag}respgate:tmp:<pid>:<worker>:<n>:<i>")
 *           run     the client's command, its other slots' keys renamed to
 *                   their temporaries: its reply is the client's
 *           clean   DEL the temporaries
 *   MOVE    read    DUMP and PTTL the source
 *           place   RESTORE the destination (REPLACE for RENAME, or COPY's)
 *           clean   RENAME and RENAMENX: DEL the source
 * A key found missing gets no temporary: the command then reads a key that
 * does not exist, as it would have read the original.
 *
 * Every step goes to its slot's master (a temporary is there, and a copy
 * must be of the latest value) and follows MOVED, ASK and a failover like
 * any request. A step that fails ends the command with its error, after
 * the temporaries placed so far are deleted; a source is deleted last, so
 * a failure never loses it.
 */
#include "path/cross.h"

#include "base/log.h"
#include "base/resp.h"
#include "base/slot.h"
#include "loop/metrics.h"
#include "loop/req.h"
#include "loop/worker.h"
#include "model/cmd.h"
#include "model/conf.h"
#include "model/shared.h"
#include "path/route.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Beyond the longest time a step may wait for a failover, the time a
 * temporary key is given to be deleted by respgate before it expires. */
#define TMP_TTL_SLACK_MS 10000
#define HEAD_MAX 64

enum phase { PHASE_READ = 0, PHASE_PLACE, PHASE_RUN, PHASE_CLEAN };

/* A key of another slot than the run slot. */
struct tmp {
    uint32_t arg;        /* its argument index in the client's frame */
    uint16_t slot;       /* where it lives */
    unsigned placed : 1; /* its temporary exists: deleted at the end */
    struct req *dump;    /* READ..PLACE: its DUMP's reply, NULL if it is missing */
};

struct cross {
    struct req *client;       /* the request answered */
    const struct cmd_spec *cmd;
    struct resp_arg *argv;    /* the client's arguments, in client->buf */
    size_t argc;
    int32_t *tmp_of;          /* [argc]: the temporary an argument names, or -1 */
    struct tmp *tmps;
    size_t ntmps;
    uint16_t run_slot;        /* GATHER: where the command runs */
    uint8_t phase;            /* enum phase */
    uint32_t pending;         /* steps out, plus one while a phase sends */
    struct req *failed;       /* the first step that failed: its error is the reply */
    struct req *ran;          /* GATHER: the command's step, its reply the client's */
    long long pttl;           /* MOVE: the source's PTTL */
    unsigned move : 1;        /* RENAME, RENAMENX, COPY */
    unsigned replace : 1;     /* MOVE: the destination may exist (RENAME, COPY REPLACE) */
    unsigned busy : 1;        /* MOVE: the destination existed */
    char name[96];            /* the temporaries' names up to their index */
    size_t name_len;
};

/* Temporaries made by this thread so far: no two commands share a name. */
static _Thread_local uint64_t tmp_serial;

/* Commands whose first emulation was logged, by command id. */
static atomic_uchar logged[CMD_ID_MAX];

static void advance(struct worker *w, struct cross *x);

static void step_done(struct worker *w, struct req *s);

/* A cross-slot command runs to its end even when its client has left: a
 * half-done RENAME would leave both keys, or temporaries until their TTL. */
static int step_wanted(const struct req *s)
{
    (void)s;
    return 1;
}

static void step_wrote(struct req *s, struct backend *b)
{
    req_wrote(s->parent, b);
}

static const struct req_sink step_sink = {.done = step_done, .wanted = step_wanted, .wrote = step_wrote};

/* Appends "*N" to BUF; then each word or argument as a bulk string. */
static void add_head(struct evbuffer *buf, size_t n)
{
    char head[RESP_HEAD_MAX];
    evbuffer_add(buf, head, resp_head(head, '*', n));
}

static void add_word(struct evbuffer *buf, const char *word)
{
    resp_add_bulk(buf, word, strlen(word));
}

static void add_number(struct evbuffer *buf, long long v)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%lld", v);
    resp_add_bulk(buf, num, (size_t)n);
}

static void add_arg(struct evbuffer *buf, const struct cross *x, size_t i)
{
    resp_add_arg(buf, x->client->buf, &x->argv[i]);
}

static void add_tmp_name(struct evbuffer *buf, const struct cross *x, size_t t)
{
    char name[sizeof(x->name) + 24];
    int n = snprintf(name, sizeof(name), "%.*s%zu", (int)x->name_len, x->name, t);
    resp_add_bulk(buf, name, (size_t)n);
}

/* A step of X to SLOT's master, its INDEXth in the phase, pending. A write
 * counts for WAIT as its client's. NULL if out of memory. */
static struct req *new_step(struct worker *w, struct cross *x, size_t index, int slot, int write)
{
    struct req *s = req_new(w, REQ_PART, &step_sink);
    if (s == NULL)
        return NULL;
    s->parent = x->client;
    s->part = (uint16_t)index;
    s->slot = (uint16_t)slot;
    s->write = write != 0;
    s->readonly = write == 0; /* a read is safe to send again after a lost connection */
    s->master_only = 1;
    x->pending++;
    return s;
}

static void fail_oom(struct cross *x)
{
    if (x->failed == NULL)
        x->failed = x->client; /* its reply is written at the end */
}

/* One pending count of X is done: the last one ends the phase. */
static void release(struct worker *w, struct cross *x)
{
    if (--x->pending == 0)
        advance(w, x);
}

static int reply_is(const struct req *s, const char *start)
{
    char head[HEAD_MAX];
    size_t n = evbuffer_copyout(s->reply, head, sizeof(head) - 1);
    head[n] = '\0';
    return strncmp(head, start, strlen(start)) == 0;
}

static char reply_type(const struct req *s)
{
    char t = 0;
    evbuffer_copyout(s->reply, &t, 1);
    return t;
}

/* The integer reply of S, or -1 if it is none. */
static int reply_integer(const struct req *s, long long *v)
{
    char head[HEAD_MAX], *end;
    size_t n = evbuffer_copyout(s->reply, head, sizeof(head) - 1);
    head[n] = '\0';
    if (head[0] != ':')
        return -1;
    *v = strtoll(head + 1, &end, 10);
    return end == head + 1 || *end != '\r' ? -1 : 0;
}

/* ---- the steps ---- */

/* DUMP the key at argument ARG of X, the INDEXth step, to SLOT. */
static void send_dump(struct worker *w, struct cross *x, size_t index, size_t arg, int slot, const char *verb)
{
    struct req *s = new_step(w, x, index, slot, 0);
    if (s == NULL) {
        fail_oom(x);
        return;
    }
    add_head(s->buf, 2);
    add_word(s->buf, verb);
    add_arg(s->buf, x, arg);
    route_send(w, s, slot);
}

static void read_sources(struct worker *w, struct cross *x)
{
    x->phase = PHASE_READ;
    x->pending = 1;
    if (x->move) {
        int slot = (int)slot_of_arg(x->client->buf, &x->argv[1]);
        send_dump(w, x, 0, 1, slot, "DUMP");
        send_dump(w, x, 1, 1, slot, "PTTL");
    } else {
        for (size_t t = 0; t < x->ntmps && x->failed == NULL; t++)
            send_dump(w, x, t, x->tmps[t].arg, x->tmps[t].slot, "DUMP");
    }
    release(w, x);
}

/* RESTORE KEY_ARG (or temporary T, KEY_ARG < 0) TTL with the payload
 * of temporary T's DUMP (which goes), REPLACE if asked. */
static void send_restore(struct worker *w, struct cross *x, size_t index, int slot, long key_arg, size_t t,
                         long long ttl, int replace)
{
    struct req *dump = x->tmps[t].dump, *s = new_step(w, x, index, slot, 1);
    x->tmps[t].dump = NULL;
    if (s == NULL) {
        req_free(w, dump);
        fail_oom(x);
        return;
    }
    add_head(s->buf, replace ? 5 : 4);
    add_word(s->buf, "RESTORE");
    if (key_arg >= 0)
        add_arg(s->buf, x, (size_t)key_arg);
    else
        add_tmp_name(s->buf, x, t);
    add_number(s->buf, ttl);
    evbuffer_add_buffer(s->buf, dump->reply); /* a bulk reply is the bulk argument, as it is */
    req_free(w, dump);
    if (replace)
        add_word(s->buf, "REPLACE");
    route_send(w, s, slot);
}

static void place(struct worker *w, struct cross *x)
{
    x->phase = PHASE_PLACE;
    x->pending = 1;
    if (x->move) {
        /* PTTL: -1 no TTL (RESTORE's 0), and 0 is "expires now", not "never". */
        long long ttl = x->pttl < 0 ? 0 : x->pttl == 0 ? 1 : x->pttl;
        int slot = (int)slot_of_arg(x->client->buf, &x->argv[2]);
        send_restore(w, x, 0, slot, 2, 0, ttl, x->replace);
    } else {
        long long ttl = (long long)(2 * shared_failover_wait_ms(w->shared, w->conf) + TMP_TTL_SLACK_MS);
        for (size_t t = 0; t < x->ntmps && x->failed == NULL; t++)
            if (x->tmps[t].dump)
                send_restore(w, x, t, x->run_slot, -1, t, ttl, 0);
    }
    release(w, x);
}

/* The client's command in the run slot, each key of another slot renamed
 * to its temporary; in the client's protocol, its reply is the client's. */
static void run(struct worker *w, struct cross *x)
{
    x->phase = PHASE_RUN;
    x->pending = 1;
    struct req *s = new_step(w, x, 0, x->run_slot, (x->cmd->flags & CMDF_WRITE) != 0);
    if (s == NULL) {
        fail_oom(x);
    } else {
        s->resp3 = x->client->resp3;
        add_head(s->buf, x->argc);
        for (size_t i = 0; i < x->argc; i++)
            if (x->tmp_of[i] >= 0)
                add_tmp_name(s->buf, x, (size_t)x->tmp_of[i]);
            else
                add_arg(s->buf, x, i);
        route_send(w, s, x->run_slot);
    }
    release(w, x);
}

/* GATHER: DEL the temporaries placed. MOVE: DEL the source. */
static void clean(struct worker *w, struct cross *x)
{
    x->phase = PHASE_CLEAN;
    x->pending = 1;
    size_t n = 0;
    for (size_t t = 0; t < x->ntmps; t++)
        n += x->tmps[t].placed;
    int move = x->move;
    int slot = move ? (int)slot_of_arg(x->client->buf, &x->argv[1]) : x->run_slot;
    struct req *s = n || move ? new_step(w, x, 0, slot, 1) : NULL;
    if (s) {
        add_head(s->buf, 1 + (move ? 1 : n));
        add_word(s->buf, "DEL");
        if (move)
            add_arg(s->buf, x, 1);
        for (size_t t = 0; t < x->ntmps && !move; t++)
            if (x->tmps[t].placed)
                add_tmp_name(s->buf, x, t);
        route_send(w, s, slot);
    } else if (n || move) {
        fail_oom(x);
    }
    release(w, x);
}

/* ---- the end ---- */

static void cross_free(struct worker *w, struct cross *x)
{
    for (size_t t = 0; t < x->ntmps; t++)
        if (x->tmps[t].dump)
            req_free(w, x->tmps[t].dump);
    if (x->failed && x->failed != x->client)
        req_free(w, x->failed);
    if (x->ran)
        req_free(w, x->ran);
    free(x->argv);
    free(x->tmp_of);
    free(x->tmps);
    free(x);
}

/* MOVE's own reply, once it is done: it ends after READ only when the
 * source is missing. */
static void move_reply(struct cross *x, struct evbuffer *out)
{
    if (x->phase == PHASE_READ && x->cmd->cross != CROSS_COPY) {
        resp_add_error(out, "ERR no such key");
    } else if (x->phase == PHASE_READ) {
        evbuffer_add(out, ":0\r\n", 4);
    } else if (x->cmd->cross == CROSS_RENAME) {
        resp_add_status(out, "OK");
    } else {
        evbuffer_add(out, x->busy ? ":0\r\n" : ":1\r\n", 4);
    }
}

static void finish(struct worker *w, struct cross *x)
{
    struct req *p = x->client;
    evbuffer_drain(p->reply, evbuffer_get_length(p->reply));
    if (x->ran)
        evbuffer_add_buffer(p->reply, x->ran->reply);
    else if (x->failed == p)
        resp_add_error(p->reply, "%s", REQ_OUT_OF_MEMORY);
    else if (x->failed)
        evbuffer_add_buffer(p->reply, x->failed->reply);
    else
        move_reply(x, p->reply);
    p->cross = NULL;
    cross_free(w, x);
    req_complete(w, p);
}

/* The steps of the phase are all answered: on to the next, or the end. */
static void advance(struct worker *w, struct cross *x)
{
    int move = x->move;
    switch (x->phase) {
    case PHASE_READ:
        if (move && x->pttl == -2 && x->tmps[0].dump) { /* gone between DUMP and PTTL */
            req_free(w, x->tmps[0].dump);
            x->tmps[0].dump = NULL;
        }
        if (x->failed || (move && x->tmps[0].dump == NULL))
            finish(w, x);
        else
            place(w, x);
        return;
    case PHASE_PLACE:
        if (move && (x->failed || x->busy || x->cmd->cross == CROSS_COPY))
            finish(w, x);
        else if (move || x->failed)
            clean(w, x); /* the source; or the temporaries placed before the failure */
        else
            run(w, x);
        return;
    case PHASE_RUN:
        clean(w, x);
        return;
    default:
        finish(w, x);
        return;
    }
}

/* S failed: its error is the reply, the first one's only, in Redis's
 * words where one server never fails so. Returns 1 if X keeps S. */
static int note_failure(struct cross *x, struct req *s)
{
    if (x->failed)
        return 0;
    x->failed = s;
    if (x->phase == PHASE_CLEAN && x->move) {
        char line[320];
        resp_first_line(s->reply, evbuffer_get_length(s->reply), line, sizeof(line));
        evbuffer_drain(s->reply, evbuffer_get_length(s->reply));
        resp_add_error(s->reply,
                       "ERR respgate: %s copied the source to the destination in another slot, but could not "
                       "delete the source: %s",
                       x->cmd->name, line[0] == '-' ? line + 1 : line);
    }
    return 1;
}

/* What step S's reply means in X's phase. Returns 1 if X keeps S. */
static int take(struct worker *w, struct cross *x, struct req *s)
{
    char type = reply_type(s);
    int move = x->move;
    switch (x->phase) {
    case PHASE_READ:
        if (type == '-') {
            return note_failure(x, s);
        }
        if (move && s->part == 1) {
            if (reply_integer(s, &x->pttl) < 0)
                x->pttl = -1;
            return 0;
        }
        if (type != '$' || reply_is(s, "$-1"))
            return 0;
        x->tmps[s->part].dump = s;
        return 1;
    case PHASE_PLACE:
        if (type != '-') {
            x->tmps[s->part].placed = !move;
            return 0;
        }
        if (move && !x->replace && reply_is(s, "-BUSYKEY")) {
            x->busy = 1;
            return 0;
        }
        return note_failure(x, s);
    case PHASE_RUN:
        x->ran = s;
        return 1;
    default:
        if (type == '-' && move) {
            return note_failure(x, s);
        }
        if (type == '-') {
            char line[320];
            resp_first_line(s->reply, evbuffer_get_length(s->reply), line, sizeof(line));
            log_warning("%s across slots: the temporary keys in slot %u were not deleted (they expire): %s",
                        x->cmd->name, x->run_slot, line);
        }
        return 0;
    }
}

static void step_done(struct worker *w, struct req *s)
{
    struct cross *x = s->parent->cross;
    if (take(w, x, s) == 0)
        req_free(w, s);
    release(w, x);
}

/* ---- the start ---- */

/* COPY's options, checked as a node checks them before it reads a key: a
 * database a node has (16 by default) but cluster mode forbids is refused
 * in the node's words. Returns NULL, or the error. */
static const char *copy_options(struct cross *x, const struct resp_req *q)
{
    int other_db = 0;
    for (size_t i = 3; i < q->argc; i++) {
        long long db;
        if (resp_arg_is(x->client->buf, q, i, "REPLACE")) {
            x->replace = 1;
        } else if (resp_arg_is(x->client->buf, q, i, "DB") && i + 1 < q->argc) {
            if (resp_arg_ll(x->client->buf, q, ++i, INT32_MIN, INT32_MAX, &db) < 0)
                return RESP_NOT_INTEGER;
            if (db < 0 || db >= 16)
                return "ERR DB index is out of range";
            other_db |= db != 0;
        } else {
            return "ERR syntax error";
        }
    }
    return other_db ? "ERR Copying to another database is not allowed in cluster mode" : NULL;
}

/* The temporaries' names for X, in slot SLOT: unique to this process,
 * worker and command. */
static void name_tmps(struct worker *w, struct cross *x, unsigned slot)
{
    int n = snprintf(x->name, sizeof(x->name), "{%s}" CROSS_TMP_PREFIX "%ld:%d:%" PRIu64 ":", slot_tag(slot),
                     (long)getpid(), w->id, ++tmp_serial);
    x->name_len = n > 0 && (size_t)n < sizeof(x->name) ? (size_t)n : 0;
}

/* The keys of other slots than the run slot, each its own temporary (a key
 * named twice is copied twice, and reads the same). Returns 0, or -1 if
 * out of memory. */
static int plan_tmps(struct cross *x, const size_t *keys, size_t nkeys)
{
    x->tmps = calloc(nkeys, sizeof(*x->tmps));
    if (x->tmps == NULL)
        return -1;
    for (size_t k = 0; k < nkeys; k++) {
        unsigned slot = slot_of_arg(x->client->buf, &x->argv[keys[k]]);
        if (slot == x->run_slot || keys[k] >= x->argc)
            continue;
        x->tmp_of[keys[k]] = (int32_t)x->ntmps;
        x->tmps[x->ntmps].arg = (uint32_t)keys[k];
        x->tmps[x->ntmps].slot = (uint16_t)slot;
        x->ntmps++;
    }
    return 0;
}

/* Counts the emulation of CMD, and logs its first in the process. */
static void note_use(struct worker *w, const struct cmd_spec *cmd)
{
    if (cmd->id == 0 || cmd->id >= CMD_ID_MAX)
        return;
    metrics_add(&w->metrics.cross_slot[cmd->id], 1);
    if (atomic_exchange(&logged[cmd->id], 1))
        return;
    log_notice("%s on keys in several slots: answered by copying them into one slot (cluster.cross_slot: "
               "emulate); not atomic across slots, see respgate(8)",
               cmd->name);
}

void cross_run(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q,
               const size_t *keys, size_t nkeys)
{
    if (cmd->cross == CROSS_NONE || w->conf->cross_slot == CROSS_SLOT_REFUSE || nkeys < 2) {
        req_fail(w, r, REQ_CROSSSLOT);
        return;
    }
    struct cross *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    x->client = r;
    x->cmd = cmd;
    x->argc = q->argc;
    x->argv = malloc(q->argc * sizeof(*x->argv));
    x->tmp_of = malloc(q->argc * sizeof(*x->tmp_of));
    x->pttl = -1;
    if (x->argv == NULL || x->tmp_of == NULL) {
        cross_free(w, x);
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    memcpy(x->argv, q->argv, q->argc * sizeof(*x->argv));
    for (size_t i = 0; i < q->argc; i++)
        x->tmp_of[i] = -1;
    const char *err = NULL;
    x->move = cmd->cross >= CROSS_RENAME;
    if (x->move) {
        x->replace = cmd->cross == CROSS_RENAME;
        err = cmd->cross == CROSS_COPY ? copy_options(x, q) : NULL;
        x->tmps = err ? NULL : calloc(1, sizeof(*x->tmps));
        x->ntmps = x->tmps != NULL;
        if (err == NULL && x->tmps == NULL)
            err = REQ_OUT_OF_MEMORY;
    } else {
        size_t at = cmd->cross == CROSS_GATHER_LAST ? nkeys - 1 : 0;
        x->run_slot = (uint16_t)slot_of_arg(r->buf, &q->argv[keys[at]]);
        name_tmps(w, x, x->run_slot);
        if (x->name_len == 0 || plan_tmps(x, keys, nkeys) < 0)
            err = REQ_OUT_OF_MEMORY;
    }
    if (err) {
        cross_free(w, x);
        req_fail(w, r, "%s", err);
        return;
    }
    note_use(w, cmd);
    r->cross = x;
    read_sources(w, x);
}
