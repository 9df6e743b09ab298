/*
 * cross: commands whose keys lie in several slots, see cross.h.
 *
 * A command goes through phases; each is a batch of steps sent at once,
 * whose replies are kept by index until the last is in, when its family
 * (a row of the table at the end, by enum cmd_cross) decides what comes
 * next: another phase, or the client's reply.
 *
 *   gather    DUMP each key of another slot; RESTORE the values found into
 *             temporary keys of the run slot ("{tag}respgate:tmp:<pid>:
 *             <worker>:<n>:<i>"); run the client's command with those names
 *             in place of the keys (its reply is the client's); DEL them.
 *   copy      RENAME, RENAMENX, COPY: DUMP and PTTL the source; RESTORE the
 *             destination; RENAME and RENAMENX then DEL the source.
 *   pop       SMOVE, LMOVE, RPOPLPUSH: check the source and the
 *             destination's type; take the member or element from the
 *             source; add it to the destination, or put it back.
 *             BLMOVE, BRPOPLPUSH: an empty source is waited on (BLPOP or
 *             BRPOP), and what it gives goes on the same way.
 *   msetnx    EXISTS in each slot; then MSETNX in each.
 *   mpop      LMPOP, ZMPOP: each run of keys in one slot, in the order of
 *             the keys, until one pops.
 *   xread     XREAD, XREADGROUP: one part per slot, at once; their streams
 *             put back in the order of the keys.
 *   bmpop     BLMPOP, BZMPOP: mpop's runs at once, then block's wait.
 *   block     BLPOP, BRPOP, BZPOPMIN, BZPOPMAX: each key popped at once, in
 *             order, until one has an element; else the command blocks on
 *             every slot's master, on connections of the client's own, the
 *             first element wins, the others are unblocked (CLIENT UNBLOCK)
 *             and what they popped meanwhile goes back.
 * A key found missing gets no temporary: the command then reads a key that
 * does not exist, as it would have read the original.
 *
 * Every step goes to its slot's master (a temporary is there, and a copy
 * must be of the latest value) and follows MOVED, ASK and a failover like
 * any request. A step that fails ends the command with its error, after
 * the temporaries placed so far are deleted; a source is deleted or taken
 * from only once what it held is safe, or put back.
 */
#include "path/cross.h"

#include "base/compat.h"
#include "base/log.h"
#include "base/resp.h"
#include "base/slot.h"
#include "conn/backend.h"
#include "conn/client.h"
#include "loop/metrics.h"
#include "loop/req.h"
#include "loop/worker.h"
#include "model/cmd.h"
#include "model/conf.h"
#include "model/shared.h"
#include "path/route.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Beyond the longest time a step may wait for a failover, the time a
 * temporary key is given to be deleted by respgate before it expires. */
#define TMP_TTL_SLACK_MS 10000
#define HEAD_MAX 64
/* Steps of one phase beyond one per key: copy's and pop's fixed ones. */
#define EXTRA_STEPS 4

/* A key of another slot than the run slot (gather). */
struct tmp {
    uint32_t arg;        /* its argument index in the client's frame */
    uint16_t slot;       /* where it lives */
    unsigned placed : 1; /* its temporary exists: deleted at the end */
};

/* A run of keys (msetnx: of one slot; mpop: consecutive, of one slot). */
struct group {
    uint32_t first, n; /* in order[] */
    uint16_t slot;
};

struct cross {
    struct req *client;       /* the request answered */
    const struct cmd_spec *cmd;
    const struct family *family;
    struct resp_arg *argv;    /* the client's arguments, in client->buf */
    size_t argc;
    uint8_t phase;            /* the family's, from 0 */
    uint32_t pending;         /* steps out, plus one while a phase sends */
    struct req **got;         /* [cap]: the replies of this phase's steps, by index */
    size_t nsteps, cap;       /* steps sent in this phase */
    struct req **prev;        /* [cap]: the last phase's, kept while this one sends (the DUMPs it restores) */
    size_t nprev;
    unsigned oom : 1;         /* a step of this phase could not be made */
    unsigned replace : 1;     /* copy: the destination may exist (RENAME, COPY REPLACE) */
    unsigned from_left : 1;   /* pop (LMOVE): where the element is taken from */
    unsigned to_left : 1;     /* ... and put */
    struct req *kept;         /* gather: the command's reply; copy: the dump; pop: the element */
    struct req *failed;       /* gather, pop: the error, answered once the data is put right */
    /* gather */
    int32_t *tmp_of;          /* [argc]: the temporary an argument names, or -1 */
    struct tmp *tmps;
    size_t ntmps;
    uint16_t run_slot;        /* where the command runs */
    char name[96];            /* the temporaries' names up to their index */
    size_t name_len;
    /* msetnx, mpop */
    uint32_t *order;          /* argument indexes of the keys, grouped */
    struct group *groups;
    size_t ngroups, at;       /* mpop: the group tried now */
    size_t nkeys;
    /* block */
    uint32_t *key_args;       /* the keys' argument indexes, in order */
    unsigned waiting : 1;     /* the phase blocks on every slot (block_each) */
    size_t block_at;          /* XREAD: its BLOCK's argument index, 0 none */
    struct waiter *waiters;   /* [ngroups]: each slot's blocking command */
    long winner;              /* the waiter whose reply ends the wait, -1 none yet */
};

/* One slot's blocking command in a wait across slots (block). */
struct waiter {
    struct backend *b;    /* a connection of the client's own, not pooled */
    long long id;         /* its CLIENT ID, to unblock it; 0 until known */
    size_t id_step, step; /* the steps of its CLIENT ID and of its command */
    unsigned answered : 1;
};

/* A way of answering; NEXT runs when a phase's replies are all in, EACH
 * (if set) as each comes in. */
struct family {
    const char *(*start)(struct worker *w, struct cross *x, const size_t *keys, size_t nkeys);
    void (*next)(struct worker *w, struct cross *x);
    void (*each)(struct worker *w, struct cross *x, size_t i);
};

/* Temporaries made by this thread so far: no two commands share a name. */
static _Thread_local uint64_t tmp_serial;

/* Commands whose first emulation was logged, by command id. */
static atomic_uchar logged[CMD_ID_MAX];

/* ---- steps ---- */

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

/* Drops the replies of N steps in GOT. */
static void drop(struct worker *w, struct req **got, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (got[i]) {
            req_free(w, got[i]);
            got[i] = NULL;
        }
}

/* Starts phase PHASE of X: what the last phase's steps answered is in
 * X->prev until the next begins. */
static void begin(struct worker *w, struct cross *x, int phase)
{
    struct req **older = x->prev;
    drop(w, older, x->nprev);
    x->prev = x->got;
    x->nprev = x->nsteps;
    x->got = older;
    x->phase = (uint8_t)phase;
    x->nsteps = 0;
    x->oom = 0;
    x->waiting = 0;
    x->pending = 1;
}

/* The next step of X's phase, to SLOT's master, with ARGC arguments
 * to come in its frame; a write counts for WAIT as its client's. NULL
 * (and X->oom) if out of memory. */
static struct req *step(struct worker *w, struct cross *x, int slot, int write, size_t argc)
{
    struct req *s = x->nsteps < x->cap ? req_new(w, REQ_PART, &step_sink) : NULL;
    if (s == NULL) {
        x->oom = 1;
        return NULL;
    }
    char head[RESP_HEAD_MAX];
    evbuffer_add(s->buf, head, resp_head(head, '*', argc));
    s->parent = x->client;
    s->part = (uint16_t)x->nsteps++;
    s->slot = (uint16_t)slot;
    s->write = write != 0;
    s->readonly = write == 0; /* a read is safe to send again after a lost connection */
    s->master_only = 1;
    x->pending++;
    return s;
}

static void go(struct worker *w, struct req *s)
{
    route_send(w, s, s->slot);
}

/* A blocking connection's reply is its request's, errors and all. */
static void block_reply(struct backend *from, struct req *r, struct evbuffer *in, size_t len, char type)
{
    req_complete_from(from->w, r, in, len, type);
}

static void block_gone(struct backend *b)
{
    client_forget_private(b->owner, b);
}

static const struct backend_ops block_ops = {.reply = block_reply, .lost = backend_fail_lost, .gone = block_gone};

/* The next step of the phase for a private connection: never redirected. */
static struct req *step_on(struct worker *w, struct cross *x, size_t argc)
{
    struct req *s = step(w, x, 0, 0, argc);
    if (s)
        s->pinned = 1;
    return s;
}

static void go_on(struct worker *w, struct backend *b, struct req *s)
{
    if (backend_send(b, s) < 0)
        req_fail(w, s, "ERR respgate: the connection to %s:%d for this blocking command is lost", b->host, b->port);
}

/* The phase has sent its steps: if all are answered, on to the next. */
static void sent(struct worker *w, struct cross *x)
{
    if (--x->pending == 0)
        x->family->next(w, x);
}

static void step_done(struct worker *w, struct req *s)
{
    struct cross *x = s->parent->cross;
    x->got[s->part] = s;
    if (x->family->each)
        x->family->each(w, x, s->part);
    sent(w, x);
}

/* ---- frames ---- */

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

/* Argument I's slot. */
static int slot_at(const struct cross *x, size_t i)
{
    return (int)slot_of_arg(x->client->buf, &x->argv[i]);
}

/* Sends "VERB key" for the key at argument ARG, to its slot. */
static void send_on_key(struct worker *w, struct cross *x, const char *verb, size_t arg, int write)
{
    struct req *s = step(w, x, slot_at(x, arg), write, 2);
    if (s) {
        add_word(s->buf, verb);
        add_arg(s->buf, x, arg);
        go(w, s);
    }
}

/* ---- replies ---- */

/* The type byte of step I's reply; 0 if there is none (out of memory). */
static char type_of(const struct cross *x, size_t i)
{
    char t = 0;
    if (i < x->nsteps && x->got[i])
        evbuffer_copyout(x->got[i]->reply, &t, 1);
    return t;
}

static int starts(const struct cross *x, size_t i, const char *start)
{
    char head[HEAD_MAX];
    if (i >= x->nsteps || x->got[i] == NULL)
        return 0;
    size_t n = evbuffer_copyout(x->got[i]->reply, head, sizeof(head) - 1);
    head[n] = '\0';
    return strncmp(head, start, strlen(start)) == 0;
}

/* Step I's integer reply, or -1 if it is none. */
static int integer_of(const struct cross *x, size_t i, long long *v)
{
    char head[HEAD_MAX], *end;
    if (type_of(x, i) != ':')
        return -1;
    size_t n = evbuffer_copyout(x->got[i]->reply, head, sizeof(head) - 1);
    head[n] = '\0';
    *v = strtoll(head + 1, &end, 10);
    return end == head + 1 || *end != '\r' ? -1 : 0;
}

static int is_nil(const struct cross *x, size_t i)
{
    return starts(x, i, "$-1\r") || starts(x, i, "*-1\r") || starts(x, i, "_\r");
}

/* Whether step I failed: an error, or never sent (out of memory). */
static int failed(const struct cross *x, size_t i)
{
    char t = type_of(x, i);
    return t == '-' || t == 0;
}

/* Step I's reply, taken out of the phase's. */
static struct req *take(struct cross *x, size_t i)
{
    struct req *s = x->got[i];
    x->got[i] = NULL;
    return s;
}

static void cross_free(struct worker *w, struct cross *x)
{
    if (x->got)
        drop(w, x->got, x->nsteps);
    if (x->prev)
        drop(w, x->prev, x->nprev);
    free(x->prev);
    if (x->kept)
        req_free(w, x->kept);
    if (x->failed)
        req_free(w, x->failed);
    free(x->got);
    free(x->argv);
    free(x->tmp_of);
    free(x->tmps);
    free(x->order);
    free(x->groups);
    free(x->waiters);
    free(x->key_args);
    free(x);
}

/* The client's reply is written: it gets it, and X goes. */
static void finish(struct worker *w, struct cross *x)
{
    struct req *p = x->client;
    p->cross = NULL;
    cross_free(w, x);
    req_complete(w, p);
}

/* Answers S's reply (or, S NULL, out of memory). */
static void finish_with(struct worker *w, struct cross *x, struct req *s)
{
    if (s)
        evbuffer_add_buffer(x->client->reply, s->reply);
    else
        resp_add_error(x->client->reply, "%s", REQ_OUT_OF_MEMORY);
    finish(w, x);
}

/* Answers step I's reply. */
static void finish_with_step(struct worker *w, struct cross *x, size_t i)
{
    finish_with(w, x, i < x->nsteps ? x->got[i] : NULL);
}

static void finish_text(struct worker *w, struct cross *x, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void finish_text(struct worker *w, struct cross *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    resp_add_verror(x->client->reply, fmt, ap);
    va_end(ap);
    finish(w, x);
}

static void finish_nil(struct worker *w, struct cross *x)
{
    resp_add_nil(x->client->reply, x->client->resp3 ? 3 : 2);
    finish(w, x);
}

static void finish_integer(struct worker *w, struct cross *x, long long v)
{
    evbuffer_add_printf(x->client->reply, ":%lld\r\n", v);
    finish(w, x);
}

/* The first line of step I's reply without its type byte, for a message. */
static const char *line_of(const struct cross *x, size_t i, char *line, size_t cap)
{
    if (i >= x->nsteps || x->got[i] == NULL)
        return REQ_OUT_OF_MEMORY;
    resp_first_line(x->got[i]->reply, evbuffer_get_length(x->got[i]->reply), line, cap);
    return line[0] ? line + 1 : line;
}

/* ---- gather ---- */

/* Whether R (a DUMP's reply) holds a value: a bulk string, not a nil. */
static int has_payload(const struct req *r)
{
    char head[4] = {0};
    if (r == NULL)
        return 0;
    evbuffer_copyout(r->reply, head, 3);
    return head[0] == '$' && head[1] != '-';
}

enum { GATHER_READ, GATHER_PLACE, GATHER_RUN, GATHER_CLEAN };

static void add_tmp_name(struct evbuffer *buf, const struct cross *x, size_t t)
{
    char name[sizeof(x->name) + 24];
    int n = snprintf(name, sizeof(name), "%.*s%zu", (int)x->name_len, x->name, t);
    resp_add_bulk(buf, name, (size_t)n);
}

/* The temporaries' names for X, in slot SLOT: unique to this process,
 * worker and command. */
static int name_tmps(struct worker *w, struct cross *x, unsigned slot)
{
    int n = snprintf(x->name, sizeof(x->name), "{%s}" CROSS_TMP_PREFIX "%ld:%d:%" PRIu64 ":", slot_tag(slot),
                     (long)getpid(), w->id, ++tmp_serial);
    x->name_len = n > 0 && (size_t)n < sizeof(x->name) ? (size_t)n : 0;
    return x->name_len ? 0 : -1;
}

/* The keys of other slots than the run slot, each its own temporary (a key
 * named twice is copied twice, and reads the same); then their DUMPs. */
static const char *gather_start(struct worker *w, struct cross *x, const size_t *keys, size_t nkeys)
{
    x->run_slot = (uint16_t)slot_at(x, keys[x->cmd->cross == CROSS_GATHER_LAST ? nkeys - 1 : 0]);
    x->tmps = calloc(nkeys, sizeof(*x->tmps));
    x->tmp_of = malloc(x->argc * sizeof(*x->tmp_of));
    if (x->tmps == NULL || x->tmp_of == NULL || name_tmps(w, x, x->run_slot) < 0)
        return REQ_OUT_OF_MEMORY;
    for (size_t i = 0; i < x->argc; i++)
        x->tmp_of[i] = -1;
    for (size_t k = 0; k < nkeys; k++) {
        int slot = slot_at(x, keys[k]);
        if (slot == x->run_slot)
            continue;
        x->tmp_of[keys[k]] = (int32_t)x->ntmps;
        x->tmps[x->ntmps].arg = (uint32_t)keys[k];
        x->tmps[x->ntmps].slot = (uint16_t)slot;
        x->ntmps++;
    }
    begin(w, x, GATHER_READ);
    for (size_t t = 0; t < x->ntmps; t++)
        send_on_key(w, x, "DUMP", x->tmps[t].arg, 0);
    sent(w, x);
    return NULL;
}

/* RESTOREs each value found (step T's DUMP) into temporary T. */
static void gather_place(struct worker *w, struct cross *x)
{
    long long ttl = (long long)(2 * shared_failover_wait_ms(w->shared, w->conf) + TMP_TTL_SLACK_MS);
    begin(w, x, GATHER_PLACE);
    for (size_t t = 0; t < x->nprev; t++) {
        struct req *dump = x->prev[t], *s = has_payload(dump) ? step(w, x, x->run_slot, 1, 4) : NULL;
        if (s) {
            add_word(s->buf, "RESTORE");
            add_tmp_name(s->buf, x, t);
            add_number(s->buf, ttl);
            evbuffer_add_buffer(s->buf, dump->reply); /* a bulk reply is the bulk argument, as it is */
            x->tmps[t].placed = 1; /* deleted at the end even if RESTORE fails: it may have run */
            go(w, s);
        }
    }
    sent(w, x);
}

/* The client's command in the run slot, each key of another slot renamed
 * to its temporary; in the client's protocol, its reply is the client's. */
static void gather_run(struct worker *w, struct cross *x)
{
    begin(w, x, GATHER_RUN);
    struct req *s = step(w, x, x->run_slot, (x->cmd->flags & CMDF_WRITE) != 0, x->argc);
    if (s) {
        s->resp3 = x->client->resp3;
        for (size_t i = 0; i < x->argc; i++)
            if (x->tmp_of[i] >= 0)
                add_tmp_name(s->buf, x, (size_t)x->tmp_of[i]);
            else
                add_arg(s->buf, x, i);
        go(w, s);
    }
    sent(w, x);
}

static void gather_clean(struct worker *w, struct cross *x)
{
    size_t n = 0;
    for (size_t t = 0; t < x->ntmps; t++)
        n += x->tmps[t].placed;
    begin(w, x, GATHER_CLEAN);
    struct req *s = n ? step(w, x, x->run_slot, 1, 1 + n) : NULL;
    if (s) {
        add_word(s->buf, "DEL");
        for (size_t t = 0; t < x->ntmps; t++)
            if (x->tmps[t].placed)
                add_tmp_name(s->buf, x, t);
        go(w, s);
    }
    sent(w, x);
}

static void gather_next(struct worker *w, struct cross *x)
{
    size_t i = 0;
    switch (x->phase) {
    case GATHER_READ: /* a missing key's DUMP is a nil: no temporary */
        while (i < x->nsteps && !failed(x, i))
            i++;
        if (i < x->nsteps || x->oom)
            finish_with(w, x, i < x->nsteps ? x->got[i] : NULL);
        else
            gather_place(w, x);
        return;
    case GATHER_PLACE:
        while (i < x->nsteps && !failed(x, i))
            i++;
        if (i < x->nsteps || x->oom) {
            x->failed = i < x->nsteps ? take(x, i) : NULL;
            x->oom |= x->failed == NULL;
            gather_clean(w, x);
        } else {
            gather_run(w, x);
        }
        return;
    case GATHER_RUN:
        x->kept = x->oom ? NULL : take(x, 0);
        gather_clean(w, x);
        return;
    default:
        if (x->nsteps && failed(x, 0)) {
            char line[320];
            log_warning("%s across slots: the temporary keys in slot %u were not deleted (they expire): %s",
                        x->cmd->name, x->run_slot, line_of(x, 0, line, sizeof(line)));
        }
        finish_with(w, x, x->kept ? x->kept : x->failed);
        return;
    }
}

/* ---- copy: RENAME, RENAMENX, COPY ---- */

enum { COPY_READ, COPY_WRITE, COPY_DELETE };

/* COPY's options, checked as a node checks them before it reads a key: a
 * database a node has (16 by default) but cluster mode forbids is refused
 * in the node's words. Returns NULL, or the error. */
static const char *copy_options(struct cross *x)
{
    int other_db = 0;
    struct resp_req q = {.argv = x->argv, .argc = x->argc};
    for (size_t i = 3; i < x->argc; i++) {
        long long db;
        if (resp_arg_is(x->client->buf, &q, i, "REPLACE")) {
            x->replace = 1;
        } else if (resp_arg_is(x->client->buf, &q, i, "DB") && i + 1 < x->argc) {
            if (resp_arg_ll(x->client->buf, &q, ++i, INT32_MIN, INT32_MAX, &db) < 0)
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

static const char *copy_start(struct worker *w, struct cross *x, const size_t *keys, size_t nkeys)
{
    (void)keys;
    (void)nkeys;
    x->replace = x->cmd->cross == CROSS_RENAME;
    const char *err = x->cmd->cross == CROSS_COPY ? copy_options(x) : NULL;
    if (err)
        return err;
    begin(w, x, COPY_READ);
    send_on_key(w, x, "DUMP", 1, 0);
    send_on_key(w, x, "PTTL", 1, 0);
    sent(w, x);
    return NULL;
}

/* What RENAME, RENAMENX or COPY answers when it did (DONE) or did not. */
static void copy_answer(struct worker *w, struct cross *x, int done)
{
    if (x->cmd->cross == CROSS_RENAME)
        resp_add_status(x->client->reply, "OK");
    else
        evbuffer_add(x->client->reply, done ? ":1\r\n" : ":0\r\n", 4);
    finish(w, x);
}

static void copy_next(struct worker *w, struct cross *x)
{
    long long pttl = -1;
    char line[320];
    switch (x->phase) {
    case COPY_READ:
        if (failed(x, 0) || failed(x, 1)) {
            finish_with_step(w, x, failed(x, 0) ? 0 : 1);
        } else if (!has_payload(x->got[0]) || (integer_of(x, 1, &pttl) == 0 && pttl == -2)) {
            if (x->cmd->cross == CROSS_COPY)
                finish_integer(w, x, 0);
            else
                finish_text(w, x, "ERR no such key");
        } else {
            /* PTTL: -1 no TTL (RESTORE's 0), and 0 is "expires now", not "never". */
            long long ttl = pttl < 0 ? 0 : pttl == 0 ? 1 : pttl;
            x->kept = take(x, 0);
            begin(w, x, COPY_WRITE);
            struct req *s = step(w, x, slot_at(x, 2), 1, x->replace ? 5 : 4);
            if (s) {
                add_word(s->buf, "RESTORE");
                add_arg(s->buf, x, 2);
                add_number(s->buf, ttl);
                evbuffer_add_buffer(s->buf, x->kept->reply);
                if (x->replace)
                    add_word(s->buf, "REPLACE");
                go(w, s);
            }
            sent(w, x);
        }
        return;
    case COPY_WRITE:
        if (!x->replace && starts(x, 0, "-BUSYKEY")) {
            copy_answer(w, x, 0);
        } else if (failed(x, 0)) {
            finish_with_step(w, x, 0);
        } else if (x->cmd->cross == CROSS_COPY) {
            copy_answer(w, x, 1);
        } else {
            begin(w, x, COPY_DELETE); /* only now: the destination holds the value */
            send_on_key(w, x, "DEL", 1, 1);
            sent(w, x);
        }
        return;
    default:
        if (failed(x, 0))
            finish_text(w, x,
                        "ERR respgate: %s copied the source to the destination in another slot, but could not "
                        "delete the source: %s",
                        x->cmd->name, line_of(x, 0, line, sizeof(line)));
        else
            copy_answer(w, x, 1);
        return;
    }
}

/* ---- pop: SMOVE, LMOVE, RPOPLPUSH ---- */

enum { POP_CHECK, POP_TAKE, POP_PUT, POP_BACK, POP_WAIT };

/* Appends a copy of SRC to DST. */
static void add_copy(struct evbuffer *dst, struct evbuffer *src)
{
    struct evbuffer_iovec v[8];
    struct evbuffer_ptr at;
    evbuffer_ptr_set(src, &at, 0, EVBUFFER_PTR_SET);
    size_t left = evbuffer_get_length(src);
    while (left) {
        int n = evbuffer_peek(src, (ev_ssize_t)left, &at, v, 8);
        for (int i = 0; i < n && i < 8 && left; i++) {
            size_t take_n = v[i].iov_len < left ? v[i].iov_len : left;
            evbuffer_add(dst, v[i].iov_base, take_n);
            left -= take_n;
            evbuffer_ptr_set(src, &at, take_n, EVBUFFER_PTR_ADD);
        }
        if (n <= 0)
            break;
    }
}

static int is_smove(const struct cross *x)
{
    return x->cmd->cross == CROSS_SMOVE;
}

/* BLMOVE and BRPOPLPUSH: an empty source waits. */
static int waits(const struct cross *x)
{
    return x->cmd->cross == CROSS_BLMOVE || x->cmd->cross == CROSS_BRPOPLPUSH;
}

/* LMOVE's LEFT or RIGHT at argument I into *LEFT. Returns 0, or -1. */
static int where(struct cross *x, size_t i, int *left)
{
    struct resp_req q = {.argv = x->argv, .argc = x->argc};
    *left = resp_arg_is(x->client->buf, &q, i, "LEFT");
    return *left || resp_arg_is(x->client->buf, &q, i, "RIGHT") ? 0 : -1;
}

static const char *pop_start(struct worker *w, struct cross *x, const size_t *keys, size_t nkeys)
{
    (void)keys;
    (void)nkeys;
    int from_left = 0, to_left = 1;
    double timeout;
    struct resp_req q = {.argv = x->argv, .argc = x->argc};
    int lmove = x->cmd->cross == CROSS_LMOVE || x->cmd->cross == CROSS_BLMOVE;
    if (lmove && (where(x, 3, &from_left) < 0 || where(x, 4, &to_left) < 0))
        return "ERR syntax error";
    if (waits(x) && resp_arg_double(x->client->buf, &q, x->argc - 1, &timeout) < 0)
        return "ERR timeout is not a float or out of range";
    if (waits(x) && timeout < 0)
        return "ERR timeout is negative";
    x->from_left = from_left != 0;
    x->to_left = to_left != 0;
    begin(w, x, POP_CHECK);
    if (is_smove(x)) {
        send_on_key(w, x, "EXISTS", 1, 0);
        struct req *s = step(w, x, slot_at(x, 1), 0, 3);
        if (s) {
            add_word(s->buf, "SISMEMBER");
            add_arg(s->buf, x, 1);
            add_arg(s->buf, x, 3);
            go(w, s);
        }
    } else {
        send_on_key(w, x, "LLEN", 1, 0);
    }
    send_on_key(w, x, "TYPE", 2, 0);
    sent(w, x);
    return NULL;
}

/* Adds the member, or pushes the element (X->kept), to the key at ARG. */
static void pop_add(struct worker *w, struct cross *x, size_t arg, int left)
{
    struct req *s = step(w, x, slot_at(x, arg), 1, 3);
    if (s == NULL)
        return;
    add_word(s->buf, is_smove(x) ? "SADD" : left ? "LPUSH" : "RPUSH");
    add_arg(s->buf, x, arg);
    if (is_smove(x))
        add_arg(s->buf, x, 3);
    else
        add_copy(s->buf, x->kept->reply); /* a bulk reply is the bulk argument */
    go(w, s);
}

/* BLMOVE's empty source: BLPOP or BRPOP on it, on a connection of the
 * client's own, with the client's timeout; the element it gets is pushed
 * to the destination (or back, if the destination refuses it). */
static void pop_wait(struct worker *w, struct cross *x)
{
    struct client *c = x->client->client;
    struct backend *owner = route_owner(w, slot_at(x, 1));
    begin(w, x, POP_WAIT);
    struct backend *b = c && owner ? client_open_private(c, &block_ops, owner->host, owner->port, BACKEND_BLOCKING)
                                   : NULL;
    struct req *s = b ? step_on(w, x, 3) : NULL;
    if (s) {
        add_word(s->buf, x->from_left ? "BLPOP" : "BRPOP");
        add_arg(s->buf, x, 1);
        add_arg(s->buf, x, x->argc - 1);
        go_on(w, b, s);
    } else {
        x->oom = 1;
    }
    if (b)
        backend_release(b);
    sent(w, x);
}

/* CHECK: in Redis's order, a missing source answers 0 (nil) before any
 * type is checked, and an empty list is a missing one. */
static void pop_check(struct worker *w, struct cross *x)
{
    size_t type_at = is_smove(x) ? 2 : 1;
    long long n = 0;
    if (failed(x, 0)) {
        finish_with_step(w, x, 0);
    } else if (integer_of(x, 0, &n) < 0 || n == 0) {
        if (is_smove(x))
            finish_integer(w, x, 0);
        else if (waits(x))
            pop_wait(w, x);
        else
            finish_nil(w, x);
    } else if (is_smove(x) && failed(x, 1)) {
        finish_with_step(w, x, 1);
    } else if (failed(x, type_at)) {
        finish_with_step(w, x, type_at);
    } else if (!starts(x, type_at, "+none\r") && !starts(x, type_at, is_smove(x) ? "+set\r" : "+list\r")) {
        finish_text(w, x, "WRONGTYPE Operation against a key holding the wrong kind of value");
    } else if (is_smove(x) && (integer_of(x, 1, &n) < 0 || n == 0)) {
        finish_integer(w, x, 0);
    } else {
        begin(w, x, POP_TAKE);
        struct req *s = step(w, x, slot_at(x, 1), 1, is_smove(x) ? 3 : 2);
        if (s) {
            add_word(s->buf, is_smove(x) ? "SREM" : x->from_left ? "LPOP" : "RPOP");
            add_arg(s->buf, x, 1);
            if (is_smove(x))
                add_arg(s->buf, x, 3);
            go(w, s);
        }
        sent(w, x);
    }
}

static void pop_next(struct worker *w, struct cross *x)
{
    long long n = 0;
    char put[320], back[320];
    switch (x->phase) {
    case POP_CHECK:
        pop_check(w, x);
        return;
    case POP_WAIT: /* [source, element], or nil at the timeout */
        if (failed(x, 0)) {
            finish_with_step(w, x, 0);
        } else if (is_nil(x, 0)) {
            finish_nil(w, x);
        } else {
            struct req *got = take(x, 0);
            size_t avail = evbuffer_get_length(got->reply);
            const char *r = (const char *)evbuffer_pullup(got->reply, -1), *eol = r ? memchr(r, '\n', avail) : NULL;
            size_t head = eol ? (size_t)(eol + 1 - r) : 0, key = eol ? resp_flat_value(r + head, avail - head) : 0;
            if (key == 0) {
                req_free(w, got);
                finish_text(w, x, "ERR respgate: unexpected %s reply from a node", x->cmd->name);
                return;
            }
            evbuffer_drain(got->reply, head + key); /* the element, a bulk string */
            x->kept = got;
            begin(w, x, POP_PUT);
            pop_add(w, x, 2, x->to_left);
            sent(w, x);
        }
        return;
    case POP_TAKE: /* another client may have taken it first */
        if (failed(x, 0))
            finish_with_step(w, x, 0);
        else if (is_smove(x) && (integer_of(x, 0, &n) < 0 || n == 0))
            finish_integer(w, x, 0);
        else if (!is_smove(x) && is_nil(x, 0))
            finish_nil(w, x);
        else {
            x->kept = take(x, 0);
            begin(w, x, POP_PUT);
            pop_add(w, x, 2, x->to_left);
            sent(w, x);
        }
        return;
    case POP_PUT:
        if (!failed(x, 0)) {
            if (is_smove(x))
                finish_integer(w, x, 1);
            else
                finish_with(w, x, x->kept);
            return;
        }
        x->failed = x->oom ? NULL : take(x, 0);
        begin(w, x, POP_BACK); /* where it came from, at the same end */
        pop_add(w, x, 1, x->from_left);
        sent(w, x);
        return;
    default:
        if (!failed(x, 0)) {
            finish_with(w, x, x->failed); /* as it was: the destination's error is the answer */
            return;
        }
        if (x->failed)
            resp_first_line(x->failed->reply, evbuffer_get_length(x->failed->reply), put, sizeof(put));
        finish_text(w, x,
                    "ERR respgate: %s took the %s from the source but could neither add it to the destination "
                    "(%s) nor put it back (%s)",
                    x->cmd->name, is_smove(x) ? "member" : "element",
                    x->failed ? put + (put[0] != 0) : REQ_OUT_OF_MEMORY, line_of(x, 0, back, sizeof(back)));
        return;
    }
}

/* ---- msetnx, mpop: keys in groups by slot ---- */

/* Whether the key at argument ARG is already in group G (so far). */
static int in_group(const struct cross *x, const struct group *g, size_t arg)
{
    struct resp_req q = {.argv = x->argv, .argc = x->argc};
    size_t len, glen;
    const char *name = resp_arg_view(x->client->buf, &q, arg, &len);
    for (size_t k = 0; name && k < g->n; k++) {
        const char *other = resp_arg_view(x->client->buf, &q, x->order[g->first + k], &glen);
        if (other && glen == len && memcmp(other, name, len) == 0)
            return 1;
    }
    return 0;
}

/* Groups X's NKEYS keys into X->groups: runs of consecutive keys of one
 * slot (GROUP_RUNS), or one group per slot, in the order of its first key,
 * with a key named again put in a group of its own (GROUP_DISTINCT: a
 * reply that names a key then tells which of the two it is). Returns 0,
 * or -1 if out of memory. */
enum { GROUP_BY_SLOT, GROUP_RUNS, GROUP_DISTINCT };
static int group_keys(struct cross *x, const size_t *keys, size_t nkeys, int how)
{
    int consecutive = how == GROUP_RUNS;
    uint16_t *slot = malloc(nkeys * sizeof(*slot));
    x->order = malloc(nkeys * sizeof(*x->order));
    x->groups = malloc(nkeys * sizeof(*x->groups));
    if (slot == NULL || x->order == NULL || x->groups == NULL) {
        free(slot);
        return -1;
    }
    for (size_t k = 0; k < nkeys; k++) {
        x->order[k] = (uint32_t)keys[k];
        slot[k] = (uint16_t)slot_at(x, keys[k]);
    }
    uint32_t *placed = consecutive ? NULL : calloc(nkeys, sizeof(*placed));
    size_t n = 0;
    if (!consecutive && placed == NULL) {
        free(slot);
        return -1;
    }
    for (size_t k = 0; k < nkeys; k++) {
        if (consecutive) {
            if (x->ngroups == 0 || x->groups[x->ngroups - 1].slot != slot[k])
                x->groups[x->ngroups++] = (struct group){.first = (uint32_t)k, .n = 0, .slot = slot[k]};
            x->groups[x->ngroups - 1].n++;
            continue;
        }
        if (placed[k])
            continue;
        struct group *g = &x->groups[x->ngroups++];
        *g = (struct group){.first = (uint32_t)n, .n = 0, .slot = slot[k]};
        for (size_t j = k; j < nkeys; j++) /* quadratic in the number of slots named: bounded by the frame */
            if (!placed[j] && slot[j] == slot[k] && (how != GROUP_DISTINCT || !in_group(x, g, keys[j]))) {
                placed[j] = 1;
                x->order[n++] = (uint32_t)keys[j];
                g->n++;
            }
    }
    free(placed);
    free(slot);
    return 0;
}

enum { MSETNX_CHECK, MSETNX_SET };

static const char *msetnx_start(struct worker *w, struct cross *x, const size_t *keys, size_t nkeys)
{
    if ((x->argc - 1) % 2 != 0)
        return "ERR wrong number of arguments for 'msetnx' command";
    if (group_keys(x, keys, nkeys, GROUP_BY_SLOT) < 0)
        return REQ_OUT_OF_MEMORY;
    begin(w, x, MSETNX_CHECK);
    for (size_t g = 0; g < x->ngroups; g++) {
        const struct group *gr = &x->groups[g];
        struct req *s = step(w, x, gr->slot, 0, 1 + gr->n);
        if (s == NULL)
            break;
        add_word(s->buf, "EXISTS");
        for (size_t k = 0; k < gr->n; k++)
            add_arg(s->buf, x, x->order[gr->first + k]);
        go(w, s);
    }
    sent(w, x);
    return NULL;
}

static void msetnx_next(struct worker *w, struct cross *x)
{
    size_t i = 0, set = 0;
    long long n, sum = 0;
    char line[320];
    while (i < x->nsteps && !failed(x, i) && integer_of(x, i, &n) == 0 && (sum += n, 1))
        i++;
    if (x->phase == MSETNX_CHECK) {
        if (i < x->nsteps || x->oom)
            finish_with_step(w, x, i);
        else if (sum > 0)
            finish_integer(w, x, 0);
        else {
            begin(w, x, MSETNX_SET);
            for (size_t g = 0; g < x->ngroups; g++) {
                const struct group *gr = &x->groups[g];
                struct req *s = step(w, x, gr->slot, 1, 1 + 2 * gr->n);
                if (s == NULL)
                    break;
                add_word(s->buf, "MSETNX");
                for (size_t k = 0; k < gr->n; k++) {
                    add_arg(s->buf, x, x->order[gr->first + k]);
                    add_arg(s->buf, x, x->order[gr->first + k] + 1);
                }
                go(w, s);
            }
            sent(w, x);
        }
        return;
    }
    for (size_t j = 0; j < x->nsteps; j++)
        set += integer_of(x, j, &n) == 0 && n == 1;
    if (set == x->ngroups)
        finish_integer(w, x, 1);
    else if (set == 0 && i == x->nsteps && !x->oom)
        finish_integer(w, x, 0); /* another client created one meanwhile: nothing was set */
    else if (set == 0)
        finish_with_step(w, x, i);
    else
        finish_text(w, x, "ERR respgate: msetnx set the keys of %zu of the %zu slots it names, not the others: %s",
                    set, x->ngroups,
                    i < x->nsteps || x->oom ? line_of(x, i, line, sizeof(line))
                                            : "another client created one of their keys between the check and the set");
}

/* Sends the run of keys at X->at, as the client's command, or as VERB
 * (BLMPOP's LMPOP at once), with its options. */
static void mpop_send(struct worker *w, struct cross *x, const char *verb)
{
    const struct group *g = &x->groups[x->at];
    size_t after = x->order[x->nkeys - 1] + 1; /* the options, after the last key */
    size_t rest = x->argc > after ? x->argc - after : 0;
    begin(w, x, 0);
    struct req *s = step(w, x, g->slot, 1, 2 + g->n + rest);
    if (s) {
        s->resp3 = x->client->resp3;
        if (verb)
            add_word(s->buf, verb);
        else
            add_arg(s->buf, x, 0);
        add_number(s->buf, g->n);
        for (size_t k = 0; k < g->n; k++)
            add_arg(s->buf, x, x->order[g->first + k]);
        for (size_t i = after; i < x->argc; i++)
            add_arg(s->buf, x, i);
        go(w, s);
    }
    sent(w, x);
}

static const char *mpop_start(struct worker *w, struct cross *x, const size_t *keys, size_t nkeys)
{
    if (group_keys(x, keys, nkeys, GROUP_RUNS) < 0)
        return REQ_OUT_OF_MEMORY;
    mpop_send(w, x, NULL);
    return NULL;
}

/* The first run of keys that pops answers; an error (its options', or a
 * key's WRONGTYPE, in the order of the keys) too. */
static void mpop_next(struct worker *w, struct cross *x)
{
    if (!failed(x, 0) && is_nil(x, 0) && ++x->at < x->ngroups)
        mpop_send(w, x, NULL);
    else
        finish_with_step(w, x, 0);
}

/* ---- xread: XREAD, XREADGROUP, one part per slot ---- */

enum { XREAD_CHECK, XREAD_PARTS };
static void block_wait(struct worker *w, struct cross *x);
static void block_each(struct worker *w, struct cross *x, size_t i);

/* XREADGROUP's group name's argument, or 0 (the parts will say why). */
static size_t xread_group(struct cross *x, size_t options)
{
    struct resp_req q = {.argv = x->argv, .argc = x->argc};
    for (size_t i = 1; i + 2 < options; i++)
        if (resp_arg_is(x->client->buf, &q, i, "GROUP"))
            return i + 1;
    return 0;
}

static void xread_parts(struct worker *w, struct cross *x)
{
    size_t options = x->argc - 2 * x->nkeys; /* the command's name, its options and STREAMS */
    begin(w, x, XREAD_PARTS);
    for (size_t g = 0; g < x->ngroups; g++) {
        const struct group *gr = &x->groups[g];
        struct req *s = step(w, x, gr->slot, (x->cmd->flags & CMDF_WRITE) != 0,
                             options - (x->block_at ? 2 : 0) + 2 * gr->n);
        if (s == NULL)
            break;
        s->resp3 = x->client->resp3;
        for (size_t i = 0; i < options; i++) /* at once first: without BLOCK */
            if (!x->block_at || (i != x->block_at && i != x->block_at + 1))
                add_arg(s->buf, x, i);
        for (size_t k = 0; k < gr->n; k++)
            add_arg(s->buf, x, x->order[gr->first + k]);
        for (size_t k = 0; k < gr->n; k++)
            add_arg(s->buf, x, x->order[gr->first + k] + x->nkeys);
        go(w, s);
    }
    sent(w, x);
}

/* XREAD's and XREADGROUP's streams must pair with IDs: Redis's own check,
 * which the parts, each balanced, would not make. XREADGROUP first asks
 * each stream's groups (XINFO GROUPS, which changes nothing): one Redis
 * refuses the whole command, delivering nothing, when a key has no such
 * group, which parallel parts cannot. */
static const char *xread_start(struct worker *w, struct cross *x, const size_t *keys, size_t nkeys)
{
    if (x->argc - keys[0] != 2 * nkeys)
        return x->cmd->flags & CMDF_WRITE
                   ? "ERR Unbalanced 'xreadgroup' list of streams: for each stream key an ID or '>' must be specified."
                   : "ERR Unbalanced 'xread' list of streams: for each stream key an ID or '$' must be specified.";
    if (group_keys(x, keys, nkeys, GROUP_DISTINCT) < 0)
        return REQ_OUT_OF_MEMORY;
    struct resp_req q = {.argv = x->argv, .argc = x->argc};
    for (size_t i = 1; i + 2 < keys[0]; i++)
        if (resp_arg_is(x->client->buf, &q, i, "BLOCK"))
            x->block_at = i; /* XREAD BLOCK (cross_waits): at once first, then on every slot */
    x->winner = -1;
    if (x->block_at && (x->waiters = calloc(x->ngroups, sizeof(*x->waiters))) == NULL)
        return REQ_OUT_OF_MEMORY;
    x->at = (x->cmd->flags & CMDF_WRITE) ? xread_group(x, keys[0]) : 0;
    if (x->at == 0) {
        xread_parts(w, x);
        return NULL;
    }
    begin(w, x, XREAD_CHECK);
    for (size_t k = 0; k < nkeys; k++) {
        struct req *s = step(w, x, slot_at(x, keys[k]), 0, 3);
        if (s == NULL)
            break;
        add_word(s->buf, "XINFO");
        add_word(s->buf, "GROUPS");
        add_arg(s->buf, x, keys[k]);
        go(w, s);
    }
    sent(w, x);
    return NULL;
}

/* Whether step I's XINFO GROUPS reply names group G (LEN bytes). */
static int names_group(struct cross *x, size_t i, const char *g, size_t len)
{
    char head[64];
    int n = snprintf(head, sizeof(head), "$4\r\nname\r\n$%zu\r\n", len);
    struct evbuffer *r = x->got[i]->reply;
    struct evbuffer_ptr at = evbuffer_search(r, head, (size_t)n, NULL);
    while (at.pos >= 0) {
        char *found = len + 2 <= evbuffer_get_length(r) - (size_t)at.pos - (size_t)n ? malloc(len + 2) : NULL;
        int same = 0;
        if (found) {
            struct evbuffer_ptr v = at;
            evbuffer_ptr_set(r, &v, (size_t)n, EVBUFFER_PTR_ADD);
            same = evbuffer_copyout_from(r, &v, found, len + 2) == (ev_ssize_t)(len + 2) &&
                   memcmp(found, g, len) == 0 && memcmp(found + len, "\r\n", 2) == 0;
            free(found);
        }
        if (same)
            return 1;
        evbuffer_ptr_set(r, &at, 1, EVBUFFER_PTR_ADD);
        at = evbuffer_search(r, head, (size_t)n, &at);
    }
    return 0;
}

/* The first stream, in the order of the keys, that is not a stream or has
 * no such group answers as one Redis would; else the parts go. */
static void xread_check(struct worker *w, struct cross *x)
{
    struct resp_req q = {.argv = x->argv, .argc = x->argc};
    size_t glen, klen;
    const char *g = resp_arg_view(x->client->buf, &q, x->at, &glen);
    for (size_t k = 0; k < x->nsteps; k++) {
        if (g == NULL || (failed(x, k) && !starts(x, k, "-ERR no such key"))) {
            finish_with_step(w, x, g ? k : x->nsteps);
            return;
        }
        if (failed(x, k) || !names_group(x, k, g, glen)) {
            /* the key: the K-th of the request's, in the order of the steps */
            size_t arg = x->argc - 2 * x->nkeys + k;
            const char *key = resp_arg_view(x->client->buf, &q, arg, &klen);
            g = resp_arg_view(x->client->buf, &q, x->at, &glen); /* the frame may have moved */
            finish_text(w, x, "NOGROUP No such key '%.*s' or consumer group '%.*s' in XREADGROUP with GROUP option",
                        key ? (int)strnlen(key, klen) : 0, key ? key : "", g ? (int)strnlen(g, glen) : 0,
                        g ? g : "");
            return;
        }
    }
    if (x->oom)
        finish_with(w, x, NULL);
    else
        xread_parts(w, x);
}

/* One stream of a part's reply: its key's argument index, and its bytes. */
struct stream_reply {
    uint32_t arg;
    const char *at;
    size_t len;
};

static int by_arg(const void *a, const void *b)
{
    const struct stream_reply *x = a, *y = b;
    return (x->arg > y->arg) - (x->arg < y->arg);
}

/* The key at the start of value AT (a bulk string), or NULL. */
static const char *key_of(const char *at, size_t avail, size_t *len)
{
    size_t n = resp_flat_element(at, avail);
    const char *eol = n && at[0] == '$' ? memchr(at, '\n', n) : NULL;
    if (eol == NULL || n < (size_t)(eol + 1 - at) + 2)
        return NULL;
    *len = n - (size_t)(eol + 1 - at) - 2;
    return eol + 1;
}

/* Part I's streams (an array of [key, entries], or a map), each matched
 * to its group's next key of that name, into OUT. Returns how many, or
 * -1 for a reply that is none of these. */
static long xread_streams(struct cross *x, size_t i, struct stream_reply *out)
{
    struct evbuffer *r = x->got[i]->reply;
    size_t avail = evbuffer_get_length(r), pos, n = 0, next = 0;
    const char *s = (const char *)evbuffer_pullup(r, -1), *eol = s ? memchr(s, '\n', avail) : NULL;
    int map = s && s[0] == '%';
    char *end;
    long long count = s && eol ? strtoll(s + 1, &end, 10) : -1;
    if (count < 0 || (s[0] != '*' && !map))
        return -1;
    const struct group *g = &x->groups[i];
    struct resp_req q = {.argv = x->argv, .argc = x->argc};
    for (pos = (size_t)(eol + 1 - s); n < (size_t)count; n++) {
        size_t klen, len = resp_flat_value(s + pos, avail - pos), head = map ? 0 : 4;
        if (map && len)
            len += resp_flat_value(s + pos + len, avail - pos - len);
        const char *key = len > head ? key_of(s + pos + head, len - head, &klen) : NULL;
        if (key == NULL || (!map && memcmp(s + pos, "*2\r\n", 4) != 0))
            return -1;
        int matched = 0;
        while (!matched && next < g->n) { /* the streams come in the order of the part's keys */
            size_t alen;
            const char *name = resp_arg_view(x->client->buf, &q, x->order[g->first + next++], &alen);
            matched = name && alen == klen && memcmp(name, key, klen) == 0;
        }
        if (!matched)
            return -1;
        out[n] = (struct stream_reply){.arg = x->order[g->first + next - 1], .at = s + pos, .len = len};
        pos += len;
    }
    return (long)n;
}

/* The parts' streams, in the order of the keys; nil if none has any;
 * the first part's error (in the order of the keys) if one failed. */
static void xread_next(struct worker *w, struct cross *x)
{
    size_t i = 0, total = 0;
    if (x->waiting) { /* XREAD BLOCK: the first slot with entries, or every slot's nil */
        if (x->winner >= 0)
            finish_with_step(w, x, x->waiters[x->winner].step);
        else if (x->ngroups && !x->oom && x->waiters[0].b)
            finish_with_step(w, x, x->waiters[0].step);
        else
            finish_with(w, x, NULL);
        return;
    }
    if (x->phase == XREAD_CHECK) {
        xread_check(w, x);
        return;
    }
    while (i < x->nsteps && !failed(x, i))
        i++;
    if (i < x->nsteps || x->oom) {
        finish_with_step(w, x, i);
        return;
    }
    struct stream_reply *all = calloc(x->nkeys, sizeof(*all));
    int map = 0;
    for (i = 0; all && i < x->nsteps; i++) {
        if (is_nil(x, i))
            continue;
        map |= starts(x, i, "%");
        long n = xread_streams(x, i, all + total);
        if (n < 0 || total + (size_t)n > x->nkeys) {
            free(all);
            finish_text(w, x, "ERR respgate: unexpected %s reply from a node", x->cmd->name);
            return;
        }
        total += (size_t)n;
    }
    if (all == NULL) {
        finish_with(w, x, NULL);
    } else if (total == 0 && x->block_at) {
        free(all);
        block_wait(w, x);
    } else if (total == 0) {
        free(all);
        finish_with_step(w, x, 0); /* a nil, in the client's protocol */
    } else {
        qsort(all, total, sizeof(*all), by_arg);
        if (map)
            resp_add_map_head(x->client->reply, 3, total);
        else
            evbuffer_add_printf(x->client->reply, "*%zu\r\n", total);
        for (i = 0; i < total; i++)
            evbuffer_add(x->client->reply, all[i].at, all[i].len);
        free(all);
        finish(w, x);
    }
}

/* ---- block: BLPOP, BRPOP, BZPOPMIN, BZPOPMAX on keys in several slots ---- */

enum { BLOCK_TRY, BLOCK_WAIT, BLOCK_BACK };
#define CROSS_BLOCK_SLOTS_MAX 8
#define CROSS_BLOCK_SLOTS_TEXT "8"

/* The command without its B (LPOP, ZPOPMIN, ...): what pops at once. */
static const char *twin(const struct cross *x)
{
    return x->cmd->name + 1;
}

static int pops_zset(const struct cross *x)
{
    return (x->cmd->acl & CMD_ACL_SORTEDSET) != 0;
}

/* Pops the key at X->at at once, in the client's protocol. */
static void block_try(struct worker *w, struct cross *x)
{
    begin(w, x, BLOCK_TRY);
    struct req *s = step(w, x, slot_at(x, x->key_args[x->at]), 1, 2);
    if (s) {
        s->resp3 = x->client->resp3;
        add_word(s->buf, twin(x));
        add_arg(s->buf, x, x->key_args[x->at]);
        go(w, s);
    }
    sent(w, x);
}

/* Redis checks the timeout before any key. */
static const char *block_start(struct worker *w, struct cross *x, const size_t *keys, size_t nkeys)
{
    struct resp_req q = {.argv = x->argv, .argc = x->argc};
    double timeout;
    if (resp_arg_double(x->client->buf, &q, x->argc - 1, &timeout) < 0)
        return "ERR timeout is not a float or out of range";
    if (timeout < 0)
        return "ERR timeout is negative";
    x->key_args = malloc(nkeys * sizeof(*x->key_args));
    if (x->key_args == NULL || group_keys(x, keys, nkeys, GROUP_BY_SLOT) < 0 ||
        (x->waiters = calloc(x->ngroups, sizeof(*x->waiters))) == NULL)
        return REQ_OUT_OF_MEMORY;
    if (x->ngroups > CROSS_BLOCK_SLOTS_MAX) /* a connection of the client's own to each */
        return "ERR respgate: a blocking command may wait on keys in " CROSS_BLOCK_SLOTS_TEXT " slots at most";
    for (size_t k = 0; k < nkeys; k++) /* tried in the order of the keys */
        x->key_args[k] = (uint32_t)keys[k];
    x->winner = -1;
    x->at = 0;
    block_try(w, x);
    return NULL;
}

/* Unblocks waiter G (its command not answered yet, its id known) with
 * CLIENT UNBLOCK on its node's shared connection: its command answers
 * nil, or an element it was handed meanwhile. */
static void unblock(struct worker *w, struct cross *x, size_t g)
{
    struct waiter *wt = &x->waiters[g];
    if (wt->answered || wt->id == 0)
        return;
    struct req *s = step(w, x, x->groups[g].slot, 0, 3);
    if (s) {
        add_word(s->buf, "CLIENT");
        add_word(s->buf, "UNBLOCK");
        add_number(s->buf, wt->id);
        go(w, s);
    }
    wt->id = 0; /* once */
}

/* Blocks on every slot's master at once, each on a connection of the
 * client's own (never pooled: CLIENT UNBLOCK names it): CLIENT ID, then
 * the command with that slot's keys and the client's timeout. */
static void block_wait(struct worker *w, struct cross *x)
{
    struct client *c = x->client->client;
    int xread = x->cmd->cross == CROSS_XREAD, mpop = x->cmd->cross == CROSS_BMPOP;
    size_t options = x->argc - 2 * x->nkeys; /* XREAD's name, options (BLOCK too) and STREAMS */
    size_t after = x->key_args ? x->key_args[x->nkeys - 1] + 1 : x->argc; /* BLMPOP's options */
    for (size_t g = 0; g < x->ngroups; g++)
        if (route_owner(w, x->groups[g].slot) == NULL) { /* before any waits: none is left blocked */
            finish_text(w, x, "%s", REQ_SLOT_NOT_SERVED);
            return;
        }
    begin(w, x, BLOCK_WAIT);
    x->waiting = 1;
    for (size_t g = 0; c && g < x->ngroups; g++) {
        const struct group *gr = &x->groups[g];
        struct backend *owner = route_owner(w, gr->slot);
        struct backend *b = owner ? client_open_private(c, &block_ops, owner->host, owner->port, BACKEND_BLOCKING)
                                  : NULL;
        struct req *id = b ? step_on(w, x, 2) : NULL;
        size_t argc = xread ? options + 2 * gr->n : mpop ? 3 + gr->n + (x->argc - after) : 2 + gr->n;
        struct req *cmd = id ? step_on(w, x, argc) : NULL;
        if (b == NULL || id == NULL || cmd == NULL) {
            x->oom = 1;
            if (id)
                req_fail(w, id, REQ_OUT_OF_MEMORY);
            if (b)
                backend_release(b);
            break;
        }
        b->poolable = 0;
        x->waiters[g] = (struct waiter){.b = b, .id_step = id->part, .step = cmd->part};
        add_word(id->buf, "CLIENT");
        add_word(id->buf, "ID");
        cmd->resp3 = x->client->resp3;
        for (size_t i = 0; xread && i < options; i++)
            add_arg(cmd->buf, x, i);
        if (!xread)
            add_arg(cmd->buf, x, 0);
        if (mpop) { /* BLMPOP timeout numkeys ... */
            add_arg(cmd->buf, x, 1);
            add_number(cmd->buf, (long long)gr->n);
        }
        for (size_t k = 0; k < gr->n; k++)
            add_arg(cmd->buf, x, x->order[gr->first + k]);
        for (size_t k = 0; xread && k < gr->n; k++) /* each stream's ID */
            add_arg(cmd->buf, x, x->order[gr->first + k] + x->nkeys);
        for (size_t i = after; mpop && i < x->argc; i++)
            add_arg(cmd->buf, x, i);
        if (!xread && !mpop)
            add_arg(cmd->buf, x, x->argc - 1);
        go_on(w, b, id);
        go_on(w, b, cmd);
        backend_release(b); /* closed once it has answered */
    }
    if (c == NULL)
        x->oom = 1;
    sent(w, x);
}

/* WAIT: each reply as it comes. The first element (or error) ends the
 * wait: every other slot's command is unblocked. */
static void block_each(struct worker *w, struct cross *x, size_t i)
{
    if (!x->waiting)
        return;
    for (size_t g = 0; g < x->ngroups; g++) {
        struct waiter *wt = &x->waiters[g];
        if (wt->b == NULL)
            continue;
        if (i == wt->id_step) {
            long long id = 0;
            wt->id = integer_of(x, i, &id) == 0 && id > 0 ? id : 0;
            if (x->winner >= 0)
                unblock(w, x, g);
        } else if (i == wt->step) {
            wt->answered = 1;
            if (x->winner < 0 && !is_nil(x, i)) {
                x->winner = (long)g;
                for (size_t o = 0; o < x->ngroups; o++)
                    unblock(w, x, o);
            }
        }
    }
}

/* Whether R's reply is an array with elements. */
static int has_array(const struct req *r)
{
    char head[3] = {0};
    evbuffer_copyout(r->reply, head, 2);
    return head[0] == '*' && head[1] != '-' && head[1] != '0';
}

/* Puts back what waiter G's command popped after another had won: the
 * element at the end it came from, the member with its score. */
static void mpop_put_back(struct worker *w, struct cross *x, size_t g, const char *s, size_t avail, size_t pos);

static void put_back(struct worker *w, struct cross *x, size_t g, struct req *got)
{
    struct evbuffer *r = got->reply;
    size_t avail = evbuffer_get_length(r), pos, n[3] = {0};
    const char *s = (const char *)evbuffer_pullup(r, -1), *eol = s ? memchr(s, '\n', avail) : NULL;
    if (eol == NULL || s[0] != '*')
        return;
    pos = (size_t)(eol + 1 - s);
    if (x->cmd->cross == CROSS_BMPOP) {
        mpop_put_back(w, x, g, s, avail, pos);
        return;
    }
    size_t want = pops_zset(x) ? 3 : 2, at[3];
    for (size_t e = 0; e < want; e++) {
        at[e] = pos;
        n[e] = resp_flat_value(s + pos, avail - pos);
        if (n[e] == 0)
            return;
        pos += n[e];
    }
    struct req *p = step(w, x, x->groups[g].slot, 1, pops_zset(x) ? 4 : 3);
    if (p == NULL)
        return;
    add_word(p->buf, pops_zset(x) ? "ZADD" : twin(x)[0] == 'l' ? "LPUSH" : "RPUSH");
    evbuffer_add(p->buf, s + at[0], n[0]); /* the key, a bulk string */
    if (pops_zset(x)) {
        const char *score = s + at[2];
        if (score[0] == ',') /* RESP3's double: its text, as a bulk string */
            resp_add_bulk(p->buf, score + 1, n[2] - 3);
        else
            evbuffer_add(p->buf, score, n[2]);
    }
    evbuffer_add(p->buf, s + at[1], n[1]);
    go(w, p);
}

/* The wait is won (X->kept): what the other slots' commands popped before
 * they were unblocked goes back. */
static void block_back(struct worker *w, struct cross *x)
{
    begin(w, x, BLOCK_BACK);
    for (size_t g = 0; g < x->ngroups; g++) {
        size_t i = x->waiters[g].step;
        if ((long)g != x->winner && x->waiters[g].b && i < x->nprev && x->prev[i] && has_array(x->prev[i]))
            put_back(w, x, g, x->prev[i]);
    }
    sent(w, x);
}

static void block_next(struct worker *w, struct cross *x)
{
    switch (x->phase) {
    case BLOCK_TRY:
        if (failed(x, 0)) {
            finish_with_step(w, x, 0);
        } else if (is_nil(x, 0) || (pops_zset(x) && starts(x, 0, "*0\r"))) {
            if (++x->at < x->nkeys)
                block_try(w, x);
            else
                block_wait(w, x);
        } else { /* [key, element], or [key, member, score] from ZPOPMIN's pair */
            struct req *s = x->got[0];
            evbuffer_add_printf(x->client->reply, "*%d\r\n", pops_zset(x) ? 3 : 2);
            add_arg(x->client->reply, x, x->key_args[x->at]);
            if (pops_zset(x)) {
                char head[HEAD_MAX];
                size_t n = evbuffer_copyout(s->reply, head, sizeof(head) - 1);
                const char *eol = memchr(head, '\n', n);
                evbuffer_drain(s->reply, eol ? (size_t)(eol + 1 - head) : 0);
            }
            finish_with(w, x, s);
        }
        return;
    case BLOCK_WAIT:
        if (x->winner < 0 && x->ngroups && !x->oom && x->waiters[0].b) {
            finish_with_step(w, x, x->waiters[0].step); /* every slot timed out: its nil */
            return;
        }
        if (x->winner < 0) {
            finish_with(w, x, NULL);
            return;
        }
        x->kept = take(x, x->waiters[x->winner].step);
        block_back(w, x);
        return;
    default:
        for (size_t i = 0; i < x->nsteps; i++)
            if (failed(x, i)) {
                char line[320];
                log_warning("%s across slots: an element popped after another slot's had won could not be put "
                            "back: %s",
                            x->cmd->name, line_of(x, i, line, sizeof(line)));
            }
        finish_with(w, x, x->kept);
        return;
    }
}

/* ---- bmpop: BLMPOP, BZMPOP on keys in several slots ---- */

/* Each run of consecutive keys of one slot is popped at once, in order,
 * as LMPOP or ZMPOP (mpop's), then comes the wait of the blocking pops.
 * The timeout comes first, and Redis checks it first. */
static void bmpop_try(struct worker *w, struct cross *x)
{
    mpop_send(w, x, twin(x));
}

static const char *bmpop_start(struct worker *w, struct cross *x, const size_t *keys, size_t nkeys)
{
    struct resp_req q = {.argv = x->argv, .argc = x->argc};
    double timeout;
    if (resp_arg_double(x->client->buf, &q, 1, &timeout) < 0)
        return "ERR timeout is not a float or out of range";
    if (timeout < 0)
        return "ERR timeout is negative";
    x->key_args = malloc(nkeys * sizeof(*x->key_args));
    if (x->key_args == NULL || group_keys(x, keys, nkeys, GROUP_RUNS) < 0)
        return REQ_OUT_OF_MEMORY;
    for (size_t k = 0; k < nkeys; k++)
        x->key_args[k] = (uint32_t)keys[k];
    x->winner = -1;
    x->at = 0;
    bmpop_try(w, x);
    return NULL;
}

/* Every run was empty: the keys grouped by slot instead, one wait each. */
static void bmpop_wait(struct worker *w, struct cross *x)
{
    size_t *keys = malloc(x->nkeys * sizeof(*keys));
    for (size_t k = 0; keys && k < x->nkeys; k++)
        keys[k] = x->key_args[k];
    free(x->order);
    free(x->groups);
    x->order = NULL;
    x->groups = NULL;
    x->ngroups = 0;
    int grouped = keys ? group_keys(x, keys, x->nkeys, GROUP_BY_SLOT) : -1;
    free(keys);
    if (grouped < 0 || (x->waiters = calloc(x->ngroups, sizeof(*x->waiters))) == NULL) {
        finish_with(w, x, NULL);
        return;
    }
    if (x->ngroups > CROSS_BLOCK_SLOTS_MAX) {
        finish_text(w, x, "ERR respgate: a blocking command may wait on keys in " CROSS_BLOCK_SLOTS_TEXT
                          " slots at most");
        return;
    }
    block_wait(w, x);
}

static void bmpop_next(struct worker *w, struct cross *x)
{
    if (x->phase != BLOCK_TRY || x->waiting) {
        block_next(w, x);
    } else if (!failed(x, 0) && is_nil(x, 0)) {
        if (++x->at < x->ngroups)
            bmpop_try(w, x);
        else
            bmpop_wait(w, x);
    } else {
        finish_with_step(w, x, 0);
    }
}

/* What a slot's BLMPOP or BZMPOP popped after another's had won, at S
 * (AVAIL bytes; the array's elements from POS: the key, then the
 * elements or [member, score] pairs) goes back: pushed in reverse at the
 * end it came from, or added with its score. */
static void mpop_put_back(struct worker *w, struct cross *x, size_t g, const char *s, size_t avail, size_t pos)
{
    size_t klen = resp_flat_value(s + pos, avail - pos), at = pos + klen, count = 0;
    const char *eol = klen ? memchr(s + at, '\n', avail - at) : NULL;
    char *end;
    if (eol == NULL || s[at] != '*' || (count = (size_t)strtoull(s + at + 1, &end, 10)) == 0 || count > avail)
        return;
    size_t first = (size_t)(eol + 1 - s), *spans = calloc(count, sizeof(*spans)), n = 0;
    for (size_t p = first; spans && n < count; n++) {
        spans[n] = p;
        size_t len = resp_flat_value(s + p, avail - p);
        if (len == 0)
            break;
        p += len;
    }
    struct resp_req q = {.argv = x->argv, .argc = x->argc};
    int left = resp_arg_is(x->client->buf, &q, x->key_args[x->nkeys - 1] + 1, "LEFT");
    struct req *r = n == count ? step(w, x, x->groups[g].slot, 1, 2 + (pops_zset(x) ? 2 : 1) * count) : NULL;
    if (r) {
        add_word(r->buf, pops_zset(x) ? "ZADD" : left ? "LPUSH" : "RPUSH");
        evbuffer_add(r->buf, s + pos, klen); /* the key, a bulk string */
        for (size_t i = 0; i < count; i++) {
            size_t e = pops_zset(x) ? spans[i] : spans[count - 1 - i], len = resp_flat_value(s + e, avail - e);
            if (!pops_zset(x)) {
                evbuffer_add(r->buf, s + e, len);
                continue;
            }
            /* a [member, score] pair: ZADD takes the score first */
            const char *m = memchr(s + e, '\n', len);
            size_t mpos = m ? (size_t)(m + 1 - s) : e, mlen = resp_flat_value(s + mpos, avail - mpos);
            const char *score = s + mpos + mlen;
            size_t slen = resp_flat_value(score, avail - mpos - mlen);
            if (score[0] == ',')
                resp_add_bulk(r->buf, score + 1, slen - 3);
            else
                evbuffer_add(r->buf, score, slen);
            evbuffer_add(r->buf, s + mpos, mlen);
        }
        go(w, r);
    }
    free(spans);
}

/* ---- the start ---- */

static const struct family families[] = {
    [CROSS_GATHER] = {gather_start, gather_next},   [CROSS_GATHER_LAST] = {gather_start, gather_next},
    [CROSS_RENAME] = {copy_start, copy_next},       [CROSS_RENAMENX] = {copy_start, copy_next},
    [CROSS_COPY] = {copy_start, copy_next},         [CROSS_SMOVE] = {pop_start, pop_next},
    [CROSS_LMOVE] = {pop_start, pop_next},          [CROSS_RPOPLPUSH] = {pop_start, pop_next},
    [CROSS_BLMOVE] = {pop_start, pop_next},         [CROSS_BRPOPLPUSH] = {pop_start, pop_next},
    [CROSS_MSETNX] = {msetnx_start, msetnx_next},   [CROSS_MPOP] = {mpop_start, mpop_next},
    [CROSS_XREAD] = {xread_start, xread_next, block_each},
    [CROSS_BMPOP] = {bmpop_start, bmpop_next, block_each},      [CROSS_BLOCK] = {block_start, block_next, block_each},
};

int cross_waits(const struct cmd_spec *cmd)
{
    /* XREADGROUP BLOCK is not: a slot's entries delivered after another's
     * won would stay pending in its group, where one Redis delivers none. */
    return cmd->cross == CROSS_BLOCK || cmd->cross == CROSS_BLMOVE || cmd->cross == CROSS_BRPOPLPUSH ||
           cmd->cross == CROSS_BMPOP || (cmd->cross == CROSS_XREAD && !(cmd->flags & CMDF_WRITE));
}

/* Counts the emulation of CMD, and logs its first in the process. */
static void note_use(struct worker *w, const struct cmd_spec *cmd)
{
    if (cmd->id == 0 || cmd->id >= CMD_ID_MAX)
        return;
    metrics_add(&w->metrics.cross_slot[cmd->id], 1);
    if (atomic_exchange(&logged[cmd->id], 1))
        return;
    log_notice("%s on keys in several slots: answered by steps in each slot (cluster.cross_slot: emulate); not "
               "atomic across slots, see respgate(8)",
               cmd->name);
}

void cross_run(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q,
               const size_t *keys, size_t nkeys)
{
    if (cmd->cross == CROSS_NONE || cmd->cross >= sizeof(families) / sizeof(families[0]) ||
        w->conf->cross_slot == CROSS_SLOT_REFUSE || nkeys < 2) {
        req_fail(w, r, REQ_CROSSSLOT);
        return;
    }
    if (!compat_has(w->version, cmd->since)) { /* the nodes lack it (LMPOP on 6.2): theirs is the answer */
        route_send(w, r, (int)slot_of_arg(r->buf, &q->argv[keys[0]]));
        return;
    }
    struct cross *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    x->client = r;
    x->cmd = cmd;
    x->family = &families[cmd->cross];
    x->argc = q->argc;
    x->nkeys = nkeys;
    /* block, XREAD BLOCK: CLIENT ID, the command and UNBLOCK per slot */
    x->cap = (cmd->cross == CROSS_BLOCK || cmd->cross == CROSS_XREAD || cmd->cross == CROSS_BMPOP ? 3 : 1) * nkeys +
             EXTRA_STEPS;
    x->argv = malloc(q->argc * sizeof(*x->argv));
    x->got = calloc(x->cap, sizeof(*x->got));
    x->prev = calloc(x->cap, sizeof(*x->prev));
    if (x->argv == NULL || x->got == NULL || x->prev == NULL) {
        cross_free(w, x);
        req_fail(w, r, REQ_OUT_OF_MEMORY);
        return;
    }
    memcpy(x->argv, q->argv, q->argc * sizeof(*x->argv));
    r->cross = x; /* before the first step: it may be answered at once */
    const char *err = x->family->start(w, x, keys, nkeys);
    if (err) { /* checked before any step was sent */
        r->cross = NULL;
        cross_free(w, x);
        req_fail(w, r, "%s", err);
        return;
    }
    note_use(w, cmd);
}
