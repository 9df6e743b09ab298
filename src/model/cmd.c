/*
 * cmd: command lookup and key finding, see cmd.h. The table itself is in
 * the generated cmdtab.c.
 *
 * Key finding follows Redis 7's key-spec semantics, with two deliberate
 * differences: a numkeys of 0 gives no keys rather than an invalid spec (Redis
 * falls back to its command-specific code, which says the same), and the
 * quirks the generator attaches where the specs alone would mislead a router.
 * Arguments are read with resp.h's argument reader.
 */
#include "model/cmd.h"

#include "base/resp.h"

#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

const char *const cmd_acl_names[CMD_ACL_COUNT] = {
    "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap", "hyperloglog", "geo",
    "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous", "connection", "transaction",
    "scripting",
};

#define NAME_MAX_LEN 32    /* longer than any command or subcommand name */

/* Compares NAME (LEN bytes, any case) with the lower-case table name T the
 * way the generator sorted the table: bytewise, a prefix first. */
static int name_cmp(const char *name, size_t len, const char *t)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char a = (unsigned char)name[i], b = (unsigned char)t[i];
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a - 'A' + 'a');
        if (b == '\0' || a != b)
            return b == '\0' ? 1 : (int)a - (int)b;
    }
    return t[len] == '\0' ? 0 : -1;
}

/* Binary search of the N rows of TABLE, comparing NAME with each row's name
 * past its first SKIP bytes (a subcommand's "parent|"). */
static const struct cmd_spec *search(const struct cmd_spec *table, size_t n, size_t skip, const char *name,
                                     size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = name_cmp(name, len, table[mid].name + skip);
        if (d == 0)
            return &table[mid];
        if (d < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* The top-level table by name hash, open addressing: every request looks
 * its command up, and a binary search's eight compares were 1.5% of a
 * worker's CPU at -P 16. Built once, then only read. */
#define NAME_INDEX_SIZE 1024 /* a power of two, over twice the table */
static uint16_t name_index[NAME_INDEX_SIZE]; /* a row + 1; 0 is empty */
static pthread_once_t name_index_once = PTHREAD_ONCE_INIT;

/* FNV-1a of NAME in lower case. */
static uint32_t name_hash(const char *name, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        unsigned char a = (unsigned char)name[i];
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a - 'A' + 'a');
        h = (h ^ a) * 16777619u;
    }
    return h;
}

static void build_name_index(void)
{
    for (size_t i = 0; i < cmd_table_len && cmd_table_len < NAME_INDEX_SIZE / 2; i++) {
        uint32_t h = name_hash(cmd_table[i].name, strlen(cmd_table[i].name)) & (NAME_INDEX_SIZE - 1);
        while (name_index[h])
            h = (h + 1) & (NAME_INDEX_SIZE - 1);
        name_index[h] = (uint16_t)(i + 1);
    }
}

const struct cmd_spec *cmd_lookup(const char *name, size_t len)
{
    pthread_once(&name_index_once, build_name_index);
    if (cmd_table_len >= NAME_INDEX_SIZE / 2)
        return search(cmd_table, cmd_table_len, 0, name, len); /* a table grown past the index */
    for (uint32_t h = name_hash(name, len) & (NAME_INDEX_SIZE - 1); name_index[h]; h = (h + 1) & (NAME_INDEX_SIZE - 1))
        if (name_cmp(name, len, cmd_table[name_index[h] - 1].name) == 0)
            return &cmd_table[name_index[h] - 1];
    return NULL;
}

const struct cmd_spec *cmd_lookup_sub(const struct cmd_spec *parent, const char *name, size_t len)
{
    if (parent == NULL || parent->nsubs == 0)
        return NULL;
    return search(parent->subs, parent->nsubs, strlen(parent->name) + 1, name, len);
}

const struct cmd_spec *cmd_find(struct evbuffer *frame, const struct resp_req *req)
{
    char name[NAME_MAX_LEN];
    if (req->argc == 0)
        return NULL;
    size_t len;
    const struct cmd_spec *c = resp_arg_str(frame, req, 0, name, sizeof(name), &len) < 0 ? NULL : cmd_lookup(name, len);
    if (c == NULL || c->nsubs == 0 || req->argc < 2)
        return c;
    const struct cmd_spec *sub =
        resp_arg_str(frame, req, 1, name, sizeof(name), &len) < 0 ? NULL : cmd_lookup_sub(c, name, len);
    return sub ? sub : c;
}

/* The keys one spec finds: FIRST, FIRST + STEP, ... up to LAST. */
struct span {
    size_t first, last, step;
};

/* SORT's STORE destination: SORT's own option syntax read left to right, the
 * last STORE winning. Returns 1 and the span, or 0 (no STORE, or options SORT
 * itself would refuse: the server then replies with its own error). */
static int sort_store(struct evbuffer *frame, const struct resp_req *req, struct span *s)
{
    static const struct {
        const char *word;
        size_t nargs;
    } opts[] = {{"ASC", 0}, {"DESC", 0}, {"ALPHA", 0}, {"LIMIT", 2}, {"BY", 1}, {"GET", 1}, {"STORE", 1}};
    size_t store = 0;
    for (size_t j = 2; j < req->argc; j++) {
        size_t o = 0, nopts = sizeof(opts) / sizeof(opts[0]);
        while (o < nopts && !resp_arg_is(frame, req, j, opts[o].word))
            o++;
        if (o == nopts || req->argc - j - 1 < opts[o].nargs)
            return 0;
        if (strcmp(opts[o].word, "STORE") == 0)
            store = j + 1;
        j += opts[o].nargs;
    }
    if (store == 0)
        return 0;
    s->first = s->last = store;
    s->step = 1;
    return 1;
}

/* Where spec KS begins its search in REQ: 1 and *FIRST, 0 if its keyword is
 * absent. A keyword is searched as Redis does: forward from .startfrom up to
 * the second last argument, or backward from argc + .startfrom down to
 * argument 2, so a keyword always has an argument after it. */
static int begin_search(const struct cmd_keyspec *ks, struct evbuffer *frame, const struct resp_req *req,
                        long long *first)
{
    long long argc = (long long)req->argc;
    if (ks->bs == CMD_BS_INDEX) {
        *first = ks->pos;
        return 1;
    }
    if (ks->startfrom > 0) {
        for (long long i = ks->startfrom; i < argc - 1; i++)
            if (resp_arg_is(frame, req, (size_t)i, ks->keyword))
                return *first = i + 1, 1;
    } else {
        for (long long i = argc + ks->startfrom; i > 1; i--)
            if (i < argc && resp_arg_is(frame, req, (size_t)i, ks->keyword))
                return *first = i + 1, 1;
    }
    return 0;
}

/* The keys spec KS finds in REQ: 1 and the span, 0 if none, -1 if the
 * request is malformed for the spec. */
static int spec_span(const struct cmd_keyspec *ks, struct evbuffer *frame, const struct resp_req *req,
                     struct span *s)
{
    long long argc = (long long)req->argc, first, last, step = ks->keystep > 0 ? ks->keystep : 1;

    if (ks->quirk == CMD_KQ_PATTERNS)
        return 0;
    if (ks->quirk == CMD_KQ_SORT_STORE)
        return sort_store(frame, req, s);
    if (ks->bs == CMD_BS_UNKNOWN || ks->fk == CMD_FK_UNKNOWN)
        return 0; /* the generator refuses these without a quirk */
    if (begin_search(ks, frame, req, &first) == 0)
        return 0;

    if (ks->fk == CMD_FK_RANGE) {
        if (ks->lastkey >= 0) {
            last = first + ks->lastkey;
        } else {
            long long limit = ks->limit > 1 ? ks->limit : 1;
            last = first + (argc - first) / limit + ks->lastkey;
        }
    } else {
        long long numkeys, at = first + ks->keynumidx;
        if (at < 1 || at >= argc || resp_arg_ll(frame, req, (size_t)at, 0, argc, &numkeys) < 0)
            return -1;
        if (numkeys == 0)
            return 0;
        first += ks->firstkey;
        last = first + (numkeys - 1) * step;
    }
    if (first < 1 || first >= argc || last >= argc || last < first)
        return -1;
    s->first = (size_t)first;
    s->last = (size_t)last;
    s->step = (size_t)step;
    return 1;
}

int cmd_keys(const struct cmd_spec *c, struct evbuffer *frame, const struct resp_req *req, size_t *keys,
             size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nkeyspecs; i++) {
        const struct cmd_keyspec *ks = &c->keyspecs[i];
        struct span s, next;
        int rc = spec_span(ks, frame, req, &s);
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue;
        if (ks->quirk == CMD_KQ_PLACEHOLDER && req->argv[s.first].len == 0 && i + 1 < c->nkeyspecs &&
            spec_span(&c->keyspecs[i + 1], frame, req, &next) > 0)
            continue;
        for (size_t k = s.first; k <= s.last; k += s.step) {
            if (n < max)
                keys[n] = k;
            n++;
        }
    }
    return n > INT_MAX ? INT_MAX : (int)n;
}

int cmd_blocks(const struct cmd_spec *c, struct evbuffer *frame, const struct resp_req *req)
{
    if (!(c->flags & CMDF_BLOCKING))
        return 0;
    if (strcmp(c->name, "xread") != 0 && strcmp(c->name, "xreadgroup") != 0)
        return 1;
    for (size_t i = 1; i < req->argc && !resp_arg_is(frame, req, i, "STREAMS"); i++)
        if (resp_arg_is(frame, req, i, "BLOCK"))
            return 1;
    return 0;
}
