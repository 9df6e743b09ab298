/*
 * nodecmd: commands learned from the nodes, see nodecmd.h.
 */
#include "model/nodecmd.h"

#include "model/cmd.h"
#include "base/resp.h"

#include <ctype.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 64 /* "parent|sub", longer than any Redis command's */

static const struct {
    const char *name;
    uint32_t bit;
} cmd_flags[] = {
    {"write", CMDF_WRITE}, {"readonly", CMDF_READONLY}, {"denyoom", CMDF_DENYOOM}, {"module", CMDF_MODULE},
    {"admin", CMDF_ADMIN}, {"pubsub", CMDF_PUBSUB}, {"noscript", CMDF_NOSCRIPT}, {"blocking", CMDF_BLOCKING},
    {"loading", CMDF_LOADING}, {"ok-loading", CMDF_LOADING}, {"stale", CMDF_STALE}, {"ok-stale", CMDF_STALE},
    {"skip_monitor", CMDF_SKIP_MONITOR}, {"skip_slowlog", CMDF_SKIP_SLOWLOG}, {"asking", CMDF_ASKING},
    {"fast", CMDF_FAST}, {"no_auth", CMDF_NO_AUTH}, {"may_replicate", CMDF_MAY_REPLICATE},
    {"no_mandatory_keys", CMDF_NO_MANDATORY_KEYS}, {"no_async_loading", CMDF_NO_ASYNC_LOADING},
    {"no_multi", CMDF_NO_MULTI}, {"movablekeys", CMDF_MOVABLEKEYS}, {"allow_busy", CMDF_ALLOW_BUSY},
};

static const struct {
    const char *name;
    uint16_t bit;
} keyspec_flags[] = {
    {"RO", CMD_KSF_RO}, {"RW", CMD_KSF_RW}, {"OW", CMD_KSF_OW}, {"RM", CMD_KSF_RM},
    {"access", CMD_KSF_ACCESS}, {"update", CMD_KSF_UPDATE}, {"insert", CMD_KSF_INSERT},
    {"delete", CMD_KSF_DELETE}, {"not_key", CMD_KSF_NOT_KEY}, {"incomplete", CMD_KSF_INCOMPLETE},
    {"variable_flags", CMD_KSF_VARIABLE_FLAGS},
};

static int is_text(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static int text_is(const redisReply *r, const char *s)
{
    return is_text(r) && strcmp(r->str, s) == 0;
}

/* The value after NAME in R, a flat array of names and values, or NULL. */
static const redisReply *field(const redisReply *r, const char *name)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (text_is(r->element[i], name))
            return r->element[i + 1];
    return NULL;
}

static long long number(const redisReply *r, long long otherwise)
{
    return r && r->type == REDIS_REPLY_INTEGER ? r->integer : otherwise;
}

/* One key spec of COMMAND's reply into KS. Returns 0, or -1 for a spec
 * respgate cannot follow ("unknown"), where first/last/step stand in. */
static int parse_keyspec(const redisReply *r, struct cmd_keyspec *ks)
{
    const redisReply *flags = field(r, "flags"), *bs = field(r, "begin_search"), *fk = field(r, "find_keys");
    const redisReply *bspec = field(bs, "spec"), *fspec = field(fk, "spec");
    memset(ks, 0, sizeof(*ks));
    for (size_t i = 0; flags && flags->type == REDIS_REPLY_ARRAY && i < flags->elements; i++)
        for (size_t j = 0; j < sizeof(keyspec_flags) / sizeof(keyspec_flags[0]); j++)
            if (text_is(flags->element[i], keyspec_flags[j].name))
                ks->flags |= keyspec_flags[j].bit;
    if (text_is(field(bs, "type"), "index")) {
        ks->bs = CMD_BS_INDEX;
        ks->pos = (int16_t)number(field(bspec, "index"), 0);
    } else if (text_is(field(bs, "type"), "keyword") && is_text(field(bspec, "keyword"))) {
        ks->bs = CMD_BS_KEYWORD;
        char *kw = strdup(field(bspec, "keyword")->str);
        if (kw == NULL)
            return -1;
        for (char *p = kw; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        ks->keyword = kw;
        ks->startfrom = (int16_t)number(field(bspec, "startfrom"), 1);
    } else {
        return -1;
    }
    if (text_is(field(fk, "type"), "range")) {
        ks->fk = CMD_FK_RANGE;
        ks->lastkey = (int16_t)number(field(fspec, "lastkey"), 0);
        ks->keystep = (int16_t)number(field(fspec, "keystep"), 1);
        ks->limit = (int16_t)number(field(fspec, "limit"), 0);
    } else if (text_is(field(fk, "type"), "keynum")) {
        ks->fk = CMD_FK_KEYNUM;
        ks->keynumidx = (int16_t)number(field(fspec, "keynumidx"), 0);
        ks->firstkey = (int16_t)number(field(fspec, "firstkey"), 1);
        ks->keystep = (int16_t)number(field(fspec, "keystep"), 1);
    } else {
        free((char *)ks->keyword);
        ks->keyword = NULL;
        return -1;
    }
    return 0;
}

static void free_spec(struct cmd_spec *c)
{
    for (size_t i = 0; c->keyspecs && i < c->nkeyspecs; i++)
        free((char *)c->keyspecs[i].keyword);
    free((void *)c->keyspecs);
    free((char *)c->name);
}

/* COMMAND's entry R for NAME into C: its keys, and respgate's handling of
 * it (nodecmd.h). Returns 0 or -1. */
static int parse_command(const redisReply *r, const char *name, struct cmd_spec *c)
{
    memset(c, 0, sizeof(*c));
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 6 || (c->name = strdup(name)) == NULL)
        return -1;
    c->arity = (int)number(r->element[1], -1);
    const redisReply *flags = r->element[2];
    for (size_t i = 0; flags->type == REDIS_REPLY_ARRAY && i < flags->elements; i++)
        for (size_t j = 0; j < sizeof(cmd_flags) / sizeof(cmd_flags[0]); j++)
            if (text_is(flags->element[i], cmd_flags[j].name))
                c->flags |= cmd_flags[j].bit;
    const redisReply *cats = r->elements > 6 ? r->element[6] : NULL;
    for (size_t i = 0; cats && cats->type == REDIS_REPLY_ARRAY && i < cats->elements; i++)
        for (int j = 0; j < CMD_ACL_COUNT; j++)
            if (cats->element[i]->type == REDIS_REPLY_STATUS && cats->element[i]->len == strlen(cmd_acl_names[j]) + 1 &&
                memcmp(cats->element[i]->str + 1, cmd_acl_names[j], cats->element[i]->len - 1) == 0)
                c->acl |= 1u << j;
    const redisReply *specs = r->elements > 8 ? r->element[8] : NULL;
    size_t n = specs && specs->type == REDIS_REPLY_ARRAY ? specs->elements : 0;
    struct cmd_keyspec *ks = calloc(n ? n : 1, sizeof(*ks));
    if (ks == NULL)
        return -1;
    c->keyspecs = ks;
    size_t got = 0;
    while (got < n && parse_keyspec(specs->element[got], &ks[got]) == 0)
        got++;
    c->nkeyspecs = (uint8_t)got;
    long long first = number(r->element[3], 0), last = number(r->element[4], 0), step = number(r->element[5], 1);
    if (got < n) { /* a spec it cannot follow: the legacy range stands in for them all */
        for (size_t i = 0; i < got; i++)
            free((char *)ks[i].keyword);
        memset(ks, 0, n * sizeof(*ks));
        c->nkeyspecs = 0;
    }
    if (c->nkeyspecs == 0 && first > 0) { /* 6.2: first, last (negative: from the end), step */
        ks[0].bs = CMD_BS_INDEX;
        ks[0].pos = (int16_t)first;
        ks[0].fk = CMD_FK_RANGE;
        ks[0].lastkey = (int16_t)(last >= 0 ? last - first : last);
        ks[0].keystep = (int16_t)(step > 0 ? step : 1);
        c->nkeyspecs = 1;
    }
    if (c->flags & (CMDF_ADMIN | CMDF_PUBSUB)) {
        c->kind = CMD_REFUSED;
        c->why = c->flags & CMDF_PUBSUB ? "a Pub/Sub command of the nodes' that respgate does not know how to route"
                                        : "an administrative command of the nodes' that would act on one node only";
    } else if (c->flags & CMDF_BLOCKING) {
        c->kind = CMD_PINNED;
    } else {
        c->kind = c->nkeyspecs ? CMD_FORWARD : CMD_KEYLESS;
    }
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct cmd_spec *)a)->name, ((const struct cmd_spec *)b)->name);
}

/* Adds NAME's entry R to T (room for it is there) if the generated table
 * lacks it. Returns 0 or -1. */
static int learn(struct nodecmd_table *t, const redisReply *r, const char *name)
{
    /* 6.2 lists its guards against HTTP sent to its port, which close the
     * connection: forwarded, they would close a connection many clients share. */
    if (strcmp(name, "post") == 0 || strcmp(name, "host:") == 0)
        return 0;
    const char *bar = strchr(name, '|');
    const struct cmd_spec *known = bar ? cmd_lookup(name, (size_t)(bar - name)) : cmd_lookup(name, strlen(name));
    if (bar ? known == NULL || cmd_lookup_sub(known, bar + 1, strlen(bar + 1)) : known != NULL)
        return 0; /* the generated table's, or a subcommand of a command it lacks (the parent's row routes it) */
    if (parse_command(r, name, &t->specs[t->n]) < 0) {
        free_spec(&t->specs[t->n]);
        return -1;
    }
    t->n++;
    return 0;
}

struct nodecmd_table *nodecmd_build(const redisReply *reply)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        return NULL;
    size_t room = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        room += 1 + (e->type == REDIS_REPLY_ARRAY && e->elements > 9 && e->element[9]->type == REDIS_REPLY_ARRAY
                         ? e->element[9]->elements
                         : 0);
    }
    struct nodecmd_table *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->specs = calloc(room ? room : 1, sizeof(*t->specs))) == NULL) {
        free(t);
        return NULL;
    }
    atomic_init(&t->refs, 1);
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 6 || !is_text(e->element[0]))
            continue;
        if (learn(t, e, e->element[0]->str) < 0)
            goto fail;
        const redisReply *subs = e->elements > 9 ? e->element[9] : NULL;
        for (size_t j = 0; subs && subs->type == REDIS_REPLY_ARRAY && j < subs->elements; j++) {
            const redisReply *s = subs->element[j];
            if (s->type == REDIS_REPLY_ARRAY && s->elements >= 6 && is_text(s->element[0]) &&
                strchr(s->element[0]->str, '|') && learn(t, s, s->element[0]->str) < 0)
                goto fail;
        }
    }
    qsort(t->specs, t->n, sizeof(*t->specs), by_name);
    return t;
fail:
    nodecmd_unref(t);
    return NULL;
}

struct nodecmd_table *nodecmd_ref(struct nodecmd_table *t)
{
    if (t)
        atomic_fetch_add(&t->refs, 1);
    return t;
}

void nodecmd_unref(struct nodecmd_table *t)
{
    if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    for (size_t i = 0; i < t->n; i++)
        free_spec(&t->specs[i]);
    free(t->specs);
    free(t);
}

/* Argument I of REQ, lower case, into BUF (CAP bytes); its length, or 0 if
 * it does not fit. */
static size_t lower_arg(struct evbuffer *frame, const struct resp_req *req, size_t i, char *buf, size_t cap)
{
    size_t n;
    if (resp_arg_str(frame, req, i, buf, cap, &n) < 0 || n == 0)
        return 0;
    for (size_t j = 0; j < n; j++)
        buf[j] = (char)tolower((unsigned char)buf[j]);
    buf[n] = '\0';
    return n;
}

const struct cmd_spec *nodecmd_find(const struct nodecmd_table *t, struct evbuffer *frame,
                                    const struct resp_req *req)
{
    char name[NAME_MAX_LEN];
    size_t n;
    if (t == NULL || t->n == 0 || req->argc == 0 || (n = lower_arg(frame, req, 0, name, sizeof(name))) == 0)
        return NULL;
    const struct cmd_spec *parent = cmd_lookup(name, n);
    if (parent && (parent->nsubs == 0 || req->argc < 2))
        return NULL;
    if (parent) {
        name[n++] = '|';
        if (lower_arg(frame, req, 1, name + n, sizeof(name) - n) == 0)
            return NULL;
    }
    struct cmd_spec key = {.name = name};
    return bsearch(&key, t->specs, t->n, sizeof(*t->specs), by_name);
}
