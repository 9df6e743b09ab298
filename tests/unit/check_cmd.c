/* Unit tests for cmd: table lookup (any case, subcommands), arity, flags and
 * kinds, and the keys of real requests for every key-spec form redis-server
 * 7.0 uses. Expected keys are what redis-server 7.0.15's COMMAND GETKEYS
 * answered for the same requests, except where cmd.h says otherwise. */
#include "model/cmd.h"
#include "base/resp.h"
#include "unit.h"

#include <event2/buffer.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const struct resp_limits lim = {512u << 20, 64 << 10, 1048576};

#define REQ(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A request for the NULL-terminated ARGV: a multibulk frame, each argument
 * in its own evbuffer chain, scanned. */
struct req {
    struct evbuffer *frame;
    struct resp_req r;
};

static void req_init(struct req *q, const char *const *argv)
{
    size_t argc = 0;
    while (argv[argc])
        argc++;
    q->frame = evbuffer_new();
    evbuffer_add_printf(q->frame, "*%zu\r\n", argc);
    for (size_t i = 0; i < argc; i++) {
        struct evbuffer *piece = evbuffer_new();
        evbuffer_add_printf(piece, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
        evbuffer_add_buffer(q->frame, piece); /* moves the chain, keeping it separate */
        evbuffer_free(piece);
    }
    memset(&q->r, 0, sizeof(q->r));
    ck_assert_int_eq(resp_req_scan(&q->r, q->frame, &lim, 0), RESP_FRAME);
    ck_assert_uint_eq(q->r.argc, argc);
}

static void req_deinit(struct req *q)
{
    resp_req_deinit(&q->r);
    evbuffer_free(q->frame);
}

/* The names of the keys cmd_keys finds in ARGV, space-separated, into OUT;
 * returns cmd_keys's result. */
static int keys_of(const char *const *argv, char *out, size_t cap)
{
    struct req q;
    size_t keys[16];
    req_init(&q, argv);
    const struct cmd_spec *c = cmd_find(q.frame, &q.r);
    ck_assert_msg(c != NULL, "no spec for %s", argv[0]);
    int n = cmd_keys(c, q.frame, &q.r, keys, 16);
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n && i < 16; i++) {
        char name[64];
        ck_assert_uint_lt(keys[i], q.r.argc);
        ck_assert_int_eq(resp_arg_str(q.frame, &q.r, keys[i], name, sizeof(name), NULL), 0);
        used += (size_t)snprintf(out + used, cap - used, "%s%s", i ? " " : "", name);
    }
    req_deinit(&q);
    return n;
}

/* Expects the keys of request ARGV to be WANT (names, space-separated), or
 * the request to be malformed when WANT is NULL. */
static void keys_are(const char *const *argv, const char *want)
{
    char got[256];
    int n = keys_of(argv, got, sizeof(got));
    if (want == NULL) {
        ck_assert_msg(n == -1, "%s: want malformed, got %d keys \"%s\"", argv[0], n, got);
        return;
    }
    ck_assert_msg(n >= 0 && strcmp(got, want) == 0, "%s %s: want \"%s\", got %d \"%s\"", argv[0],
                  argv[1] ? argv[1] : "", want, n, got);
}

#define MALFORMED(argv) keys_are(argv, NULL)

START_TEST(test_lookup)
{
    const struct cmd_spec *c = cmd_lookup("get", 3);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->name, "get");
    ck_assert_ptr_eq(cmd_lookup("GeT", 3), c);
    ck_assert_ptr_eq(cmd_lookup("GETxyz", 3), c);
    ck_assert_ptr_null(cmd_lookup("ge", 2));
    ck_assert_ptr_null(cmd_lookup("gets", 4));
    ck_assert_ptr_null(cmd_lookup("", 0));
    ck_assert_ptr_null(cmd_lookup("nosuchcommand", 13));
    ck_assert_ptr_null(cmd_lookup("ge\0", 3));
    ck_assert_str_eq(cmd_lookup("GEORADIUSBYMEMBER_RO", 20)->name, "georadiusbymember_ro");
    ck_assert_str_eq(cmd_lookup("zunionstore", 11)->name, "zunionstore");
    /* Every row by its own name, in upper case too (the hash index). */
    for (size_t i = 0; i < cmd_table_len; i++) {
        char upper[64];
        size_t n = strlen(cmd_table[i].name);
        ck_assert_uint_lt(n, sizeof(upper));
        for (size_t j = 0; j < n; j++)
            upper[j] = (char)toupper((unsigned char)cmd_table[i].name[j]);
        ck_assert_ptr_eq(cmd_lookup(cmd_table[i].name, n), &cmd_table[i]);
        ck_assert_ptr_eq(cmd_lookup(upper, n), &cmd_table[i]);
        if (n > 1)
            ck_assert_ptr_ne(cmd_lookup(cmd_table[i].name, n - 1), &cmd_table[i]); /* not by a prefix */
    }

    const struct cmd_spec *config = cmd_lookup("CONFIG", 6);
    ck_assert_ptr_nonnull(config);
    ck_assert_uint_gt(config->nsubs, 0);
    ck_assert_str_eq(cmd_lookup_sub(config, "Get", 3)->name, "config|get");
    ck_assert_str_eq(cmd_lookup_sub(config, "RESETSTAT", 9)->name, "config|resetstat");
    ck_assert_ptr_null(cmd_lookup_sub(config, "ge", 2));
    ck_assert_ptr_null(cmd_lookup_sub(config, "config|get", 10));
    ck_assert_ptr_null(cmd_lookup_sub(c, "get", 3));
    ck_assert_ptr_null(cmd_lookup_sub(NULL, "get", 3));
    ck_assert_ptr_null(cmd_lookup("config|get", 10));
    ck_assert_str_eq(cmd_lookup_sub(cmd_lookup("object", 6), "ENCODING", 8)->name, "object|encoding");
    ck_assert_str_eq(cmd_lookup_sub(cmd_lookup("memory", 6), "usage", 5)->name, "memory|usage");
    ck_assert_str_eq(cmd_lookup_sub(cmd_lookup("cluster", 7), "COUNT-FAILURE-REPORTS", 21)->name,
                     "cluster|count-failure-reports");
}
END_TEST

/* Every row is found by its own name in upper case: the table is sorted as
 * the lookup expects, names are lower case, and specs are where they say. */
START_TEST(test_table_consistent)
{
    size_t subs = 0;
    ck_assert_uint_ge(cmd_table_len, 200);
    ck_assert_str_eq(cmd_table_source, "redis-server 7.0.15");
    for (size_t i = 0; i < cmd_table_len; i++) {
        const struct cmd_spec *c = &cmd_table[i];
        char upper[64];
        size_t len = strlen(c->name);
        ck_assert_uint_lt(len, sizeof(upper));
        for (size_t j = 0; j <= len; j++) {
            ck_assert_msg(c->name[j] < 'A' || c->name[j] > 'Z', "%s", c->name);
            upper[j] = (char)(c->name[j] >= 'a' && c->name[j] <= 'z' ? c->name[j] - 'a' + 'A' : c->name[j]);
        }
        ck_assert_ptr_eq(cmd_lookup(upper, len), c);
        if (i > 0)
            ck_assert_int_lt(strcmp(cmd_table[i - 1].name, c->name), 0);
        ck_assert(c->nkeyspecs == 0 || c->keyspecs != NULL);
        ck_assert(c->nsubs == 0 || c->subs != NULL);
        for (size_t s = 0; s < c->nsubs; s++) {
            const char *sub = c->subs[s].name + len + 1;
            ck_assert(strncmp(c->subs[s].name, c->name, len) == 0 && c->subs[s].name[len] == '|');
            ck_assert_ptr_eq(cmd_lookup_sub(c, sub, strlen(sub)), &c->subs[s]);
            ck_assert(c->subs[s].nkeyspecs == 0 || c->subs[s].keyspecs != NULL);
            ck_assert_uint_eq(c->subs[s].nsubs, 0);
            subs++;
        }
    }
    ck_assert_uint_ge(subs, 100);
}
END_TEST

START_TEST(test_find)
{
    const struct {
        const char *const *argv;
        const char *want;
    } cases[] = {
        {REQ("get", "k"), "get"},
        {REQ("GET", "k"), "get"},
        {REQ("object", "encoding", "k"), "object|encoding"},
        {REQ("OBJECT", "Encoding", "k"), "object|encoding"},
        {REQ("memory", "USAGE", "k", "SAMPLES", "5"), "memory|usage"},
        {REQ("CONFIG", "GET", "maxmemory"), "config|get"},
        {REQ("client", "list"), "client|list"},
        {REQ("OBJECT", "nosuchsub", "k"), "object"},    /* the parent: the server says what is wrong */
        {REQ("OBJECT"), "object"},
        {REQ("get", "encoding"), "get"},                /* no subcommands: argv[1] is just an argument */
        {REQ("nosuchcommand", "x"), NULL},
        {REQ("georadiusbymember_ro_and_then_some_more_text", "x"), NULL},
        {REQ("ge"), NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct req q;
        req_init(&q, cases[i].argv);
        const struct cmd_spec *c = cmd_find(q.frame, &q.r);
        if (cases[i].want == NULL)
            ck_assert_msg(c == NULL, "%s found", cases[i].argv[0]);
        else
            ck_assert_msg(c != NULL && strcmp(c->name, cases[i].want) == 0, "%s: want %s", cases[i].argv[0],
                          cases[i].want);
        req_deinit(&q);
    }

    /* An empty request names no command. */
    struct req q;
    q.frame = evbuffer_new();
    evbuffer_add(q.frame, "*0\r\n", 4);
    memset(&q.r, 0, sizeof(q.r));
    ck_assert_int_eq(resp_req_scan(&q.r, q.frame, &lim, 0), RESP_FRAME);
    ck_assert_ptr_null(cmd_find(q.frame, &q.r));
    req_deinit(&q);
}
END_TEST

/* Arity and flags as redis-server 7.0.15 reported them in COMMAND INFO. */
START_TEST(test_arity_and_flags)
{
    static const struct {
        const char *name;
        int arity;
    } arities[] = {
        {"get", 2},      {"set", -3},        {"eval", -3},       {"xread", -4},       {"xreadgroup", -7},
        {"migrate", -6}, {"mset", -3},       {"georadius", -6},  {"zunionstore", -4}, {"sort", -2},
        {"bitfield", -2}, {"object", -2},    {"memory", -2},     {"ping", -1},        {"discard", 1},
    };
    for (size_t i = 0; i < sizeof(arities) / sizeof(arities[0]); i++) {
        const struct cmd_spec *c = cmd_lookup(arities[i].name, strlen(arities[i].name));
        ck_assert_msg(c && c->arity == arities[i].arity, "%s", arities[i].name);
    }
    ck_assert_int_eq(cmd_lookup_sub(cmd_lookup("object", 6), "encoding", 8)->arity, 3);
    ck_assert_int_eq(cmd_lookup_sub(cmd_lookup("config", 6), "get", 3)->arity, -3);
    ck_assert_int_eq(cmd_lookup_sub(cmd_lookup("memory", 6), "usage", 5)->arity, -3);

    ck_assert_uint_eq(cmd_lookup("get", 3)->flags, CMDF_READONLY | CMDF_FAST);
    ck_assert_uint_eq(cmd_lookup("set", 3)->flags, CMDF_WRITE | CMDF_DENYOOM);
    ck_assert_uint_eq(cmd_lookup("xread", 5)->flags, CMDF_READONLY | CMDF_BLOCKING | CMDF_MOVABLEKEYS);
    ck_assert_uint_eq(cmd_lookup("discard", 7)->flags,
                      CMDF_NOSCRIPT | CMDF_LOADING | CMDF_STALE | CMDF_FAST | CMDF_ALLOW_BUSY);
    ck_assert(cmd_lookup("auth", 4)->flags & CMDF_NO_AUTH);
    ck_assert(cmd_lookup("eval", 4)->flags & CMDF_NO_MANDATORY_KEYS);
    ck_assert(cmd_lookup("save", 4)->flags & CMDF_NO_MULTI);

    const struct cmd_spec *migrate = cmd_lookup("migrate", 7);
    ck_assert_uint_eq(migrate->nkeyspecs, 2);
    ck_assert_uint_eq(migrate->keyspecs[1].bs, CMD_BS_KEYWORD);
    ck_assert_str_eq(migrate->keyspecs[1].keyword, "KEYS");
    ck_assert_int_eq(migrate->keyspecs[1].startfrom, -2);
    ck_assert(migrate->keyspecs[1].flags & CMD_KSF_INCOMPLETE);
    ck_assert(cmd_lookup("ssubscribe", 10)->keyspecs[0].flags & CMD_KSF_NOT_KEY);
}
END_TEST

START_TEST(test_kinds)
{
    static const struct {
        const char *name, *sub;
        enum cmd_kind kind;
        enum cmd_merge merge;
    } kinds[] = {
        {"ping", NULL, CMD_LOCAL, MERGE_NONE},
        {"client", "list", CMD_LOCAL, MERGE_NONE},
        {"hello", NULL, CMD_LOCAL, MERGE_NONE},
        {"monitor", NULL, CMD_REFUSED, MERGE_NONE},
        {"cluster", "nodes", CMD_REFUSED, MERGE_NONE},
        {"cluster", "keyslot", CMD_KEYLESS, MERGE_NONE},
        {"move", NULL, CMD_REFUSED, MERGE_NONE},
        {"acl", "whoami", CMD_LOCAL, MERGE_NONE},
        {"acl", "setuser", CMD_REFUSED, MERGE_NONE},
        {"config", "get", CMD_KEYLESS, MERGE_NONE},
        {"config", "set", CMD_BROADCAST, MERGE_ALL},
        {"scan", NULL, CMD_BROADCAST, MERGE_SCAN},
        {"keys", NULL, CMD_BROADCAST, MERGE_CONCAT},
        {"dbsize", NULL, CMD_BROADCAST, MERGE_SUM},
        {"script", "exists", CMD_BROADCAST, MERGE_AND},
        {"script", "help", CMD_KEYLESS, MERGE_NONE},
        {"wait", NULL, CMD_BROADCAST, MERGE_MIN},
        {"command", "docs", CMD_KEYLESS, MERGE_NONE},
        {"mget", NULL, CMD_SPLIT, MERGE_KEYORDER},
        {"mset", NULL, CMD_SPLIT, MERGE_ALL},
        {"del", NULL, CMD_SPLIT, MERGE_SUM},
        {"msetnx", NULL, CMD_FORWARD, MERGE_NONE},
        {"multi", NULL, CMD_PINNED, MERGE_NONE},
        {"ssubscribe", NULL, CMD_PUBSUB, MERGE_NONE},
        {"subscribe", NULL, CMD_PUBSUB, MERGE_NONE},
        {"pubsub", "numpat", CMD_PUBSUB, MERGE_NONE},
        {"pubsub", "shardchannels", CMD_BROADCAST, MERGE_CONCAT},
        {"blpop", NULL, CMD_PINNED, MERGE_NONE},
        {"xread", NULL, CMD_PINNED, MERGE_NONE},
        {"bzmpop", NULL, CMD_PINNED, MERGE_NONE},
        {"get", NULL, CMD_FORWARD, MERGE_NONE},
        {"migrate", NULL, CMD_FORWARD, MERGE_NONE},
        {"eval", NULL, CMD_FORWARD, MERGE_NONE},
        {"object", "encoding", CMD_FORWARD, MERGE_NONE},
        {"object", "help", CMD_KEYLESS, MERGE_NONE},
        {"publish", NULL, CMD_PUBSUB, MERGE_NONE},
        {"time", NULL, CMD_KEYLESS, MERGE_NONE},
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        const struct cmd_spec *c = cmd_lookup(kinds[i].name, strlen(kinds[i].name));
        if (c && kinds[i].sub)
            c = cmd_lookup_sub(c, kinds[i].sub, strlen(kinds[i].sub));
        ck_assert_msg(c && c->kind == kinds[i].kind && c->merge == kinds[i].merge, "%s %s", kinds[i].name,
                      kinds[i].sub ? kinds[i].sub : "");
    }
}
END_TEST

START_TEST(test_keys_index_range)
{
    keys_are(REQ("GET", "k"), "k");
    keys_are(REQ("SET", "k", "v", "EX", "10"), "k");
    keys_are(REQ("BITFIELD", "k", "GET", "u8", "0", "SET", "u8", "0", "1"), "k");
    keys_are(REQ("MSET", "a", "1", "b", "2"), "a b");
    keys_are(REQ("MSET", "a", "1", "b"), "a b");
    keys_are(REQ("MGET", "a", "b", "c"), "a b c");
    keys_are(REQ("DEL", "a", "b"), "a b");
    keys_are(REQ("BLPOP", "a", "b", "0"), "a b");
    keys_are(REQ("LCS", "a", "b"), "a b");
    keys_are(REQ("BITOP", "AND", "d", "a", "b"), "d a b");
    keys_are(REQ("SINTERSTORE", "d", "a", "b"), "d a b");
    keys_are(REQ("LMOVE", "a", "b", "LEFT", "RIGHT"), "a b");
    keys_are(REQ("COPY", "a", "b"), "a b");
    keys_are(REQ("RENAME", "a", "b"), "a b");
    keys_are(REQ("OBJECT", "ENCODING", "k"), "k");
    keys_are(REQ("object", "freq", "k"), "k");
    keys_are(REQ("MEMORY", "USAGE", "k", "SAMPLES", "5"), "k");
    keys_are(REQ("SSUBSCRIBE", "a", "b"), "a b"); /* shard channels: not keys, but hashed like them */
    keys_are(REQ("PING"), "");
    keys_are(REQ("OBJECT", "HELP"), "");
    MALFORMED(REQ("GET"));
    MALFORMED(REQ("BLPOP", "0"));
}
END_TEST

START_TEST(test_keys_numkeys)
{
    keys_are(REQ("EVAL", "return 1", "2", "a", "b", "x", "y"), "a b");
    keys_are(REQ("EVAL", "return 1", "0"), "");
    keys_are(REQ("EVAL", "return 1", "0", "x"), "");
    keys_are(REQ("EVALSHA", "sha", "1", "a", "x"), "a");
    keys_are(REQ("EVAL_RO", "return 1", "1", "a"), "a");
    keys_are(REQ("FCALL", "f", "2", "a", "b", "x"), "a b");
    keys_are(REQ("FCALL_RO", "f", "1", "a"), "a");
    keys_are(REQ("ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"), "d a b");
    keys_are(REQ("ZINTERSTORE", "d", "1", "a"), "d a");
    keys_are(REQ("ZINTER", "2", "a", "b"), "a b");
    keys_are(REQ("ZUNION", "2", "a", "b", "WITHSCORES"), "a b");
    keys_are(REQ("ZDIFF", "2", "a", "b", "WITHSCORES"), "a b");
    keys_are(REQ("LMPOP", "2", "a", "b", "LEFT"), "a b");
    keys_are(REQ("BLMPOP", "0", "2", "a", "b", "LEFT", "COUNT", "2"), "a b");
    keys_are(REQ("ZMPOP", "1", "a", "MIN"), "a");
    keys_are(REQ("BZMPOP", "0.5", "2", "a", "b", "MAX"), "a b");
    keys_are(REQ("SINTERCARD", "2", "a", "b", "LIMIT", "1"), "a b");

    MALFORMED(REQ("EVAL", "return 1", "x", "a"));
    MALFORMED(REQ("EVAL", "return 1", "-1", "a"));
    MALFORMED(REQ("EVAL", "return 1", "3", "a", "b"));
    MALFORMED(REQ("EVAL", "return 1", "1"));
    MALFORMED(REQ("EVAL", "return 1"));
    MALFORMED(REQ("EVAL", "return 1", "01", "a"));
    MALFORMED(REQ("EVAL", "return 1", "+1", "a"));
    MALFORMED(REQ("EVAL", "return 1", "", "a"));
    MALFORMED(REQ("EVAL", "return 1", " 1", "a"));
    MALFORMED(REQ("EVAL", "return 1", "99999999999999999999", "a"));
    MALFORMED(REQ("EVAL", "return 1", "9223372036854775807", "a"));
    MALFORMED(REQ("ZUNIONSTORE", "d", "3", "a", "b"));
    MALFORMED(REQ("ZUNIONSTORE", "d", "two", "a", "b"));
    MALFORMED(REQ("LMPOP", "x", "a", "LEFT"));
    MALFORMED(REQ("SINTERCARD", "-2", "a", "b"));
}
END_TEST

START_TEST(test_keys_keyword)
{
    keys_are(REQ("XREAD", "COUNT", "1", "STREAMS", "a", "b", "0", "0"), "a b");
    keys_are(REQ("xread", "block", "0", "streams", "a", "$"), "a");
    keys_are(REQ("XREAD", "STREAMS", "streams", "0"), "streams");
    keys_are(REQ("XREAD", "STREAMS", "a", "b", "0"), "a"); /* unbalanced: the server says so */
    keys_are(REQ("XREAD", "COUNT", "1", "STREAMS"), "");    /* no keyword with arguments after it */
    MALFORMED(REQ("XREAD", "COUNT", "STREAMS", "a"));
    keys_are(REQ("XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "a", "b", ">", ">"), "a b");
    keys_are(REQ("XREADGROUP", "GROUP", "streams", "c", "STREAMS", "a", ">"), "a");

    keys_are(REQ("GEORADIUS", "k", "0", "0", "1", "km"), "k");
    keys_are(REQ("GEORADIUS", "k", "0", "0", "1", "km", "STORE", "d"), "k d");
    keys_are(REQ("GEORADIUS", "k", "0", "0", "1", "km", "ASC", "STOREDIST", "d"), "k d");
    keys_are(REQ("GEORADIUS", "k", "0", "0", "1", "km", "STORE"), "k");
    keys_are(REQ("GEORADIUSBYMEMBER", "k", "m", "1", "km", "store", "d"), "k d");
    keys_are(REQ("GEORADIUSBYMEMBER", "k", "m", "1", "km", "COUNT", "5", "STOREDIST", "d"), "k d");

    /* MIGRATE: the single key form, and the KEYS form whose key argument is
     * an empty placeholder; KEYS is searched backward from the end. */
    keys_are(REQ("MIGRATE", "h", "6379", "k", "0", "5000"), "k");
    keys_are(REQ("MIGRATE", "h", "6379", "k", "0", "5000", "COPY", "REPLACE"), "k");
    keys_are(REQ("MIGRATE", "h", "6379", "", "0", "5000", "COPY", "KEYS", "a", "b"), "a b");
    keys_are(REQ("MIGRATE", "h", "6379", "", "0", "5000", "AUTH", "keys", "KEYS", "a", "b"), "a b");
    keys_are(REQ("migrate", "h", "6379", "", "0", "5000", "keys", "a"), "a");
    keys_are(REQ("MIGRATE", "h", "6379", "k", "0", "5000", "KEYS"), "k");
    keys_are(REQ("MIGRATE", "keys", "6379", "k", "0", "5000"), "k"); /* argument 1 is never searched */

    struct req q;
    size_t keys[4];
    req_init(&q, REQ("MIGRATE", "h", "6379", "", "0", "5000"));
    ck_assert_int_eq(cmd_keys(cmd_find(q.frame, &q.r), q.frame, &q.r, keys, 4), 1);
    ck_assert_uint_eq(keys[0], 3); /* a key called "" */
    req_deinit(&q);
}
END_TEST

START_TEST(test_keys_sort)
{
    keys_are(REQ("SORT", "k"), "k");
    keys_are(REQ("SORT", "k", "BY", "w_*", "GET", "#", "GET", "x_*", "STORE", "d"), "k d");
    keys_are(REQ("SORT", "k", "LIMIT", "0", "1", "STORE", "d", "ALPHA", "DESC"), "k d");
    keys_are(REQ("sort", "k", "store", "d"), "k d");
    keys_are(REQ("SORT", "k", "GET", "store", "LIMIT", "0", "1"), "k");
    keys_are(REQ("SORT", "k", "BY", "store", "STORE", "store"), "k store");
    keys_are(REQ("SORT", "k", "STORE", "a", "STORE", "b"), "k b");
    keys_are(REQ("SORT", "k", "STORE"), "k");
    keys_are(REQ("SORT", "k", "NOSUCHOPTION", "STORE", "d"), "k");
    keys_are(REQ("SORT", "k", "LIMIT", "0"), "k");
    keys_are(REQ("SORT_RO", "k", "BY", "w_*", "GET", "#"), "k");
}
END_TEST

/* Positions, and MAX: the count is all keys, only MAX filled. */
START_TEST(test_keys_positions_and_max)
{
    struct req q;
    size_t keys[8];
    req_init(&q, REQ("ZUNIONSTORE", "d", "3", "a", "b", "c"));
    const struct cmd_spec *c = cmd_find(q.frame, &q.r);
    ck_assert_int_eq(cmd_keys(c, q.frame, &q.r, keys, 8), 4);
    ck_assert_uint_eq(keys[0], 1);
    ck_assert_uint_eq(keys[1], 3);
    ck_assert_uint_eq(keys[2], 4);
    ck_assert_uint_eq(keys[3], 5);

    memset(keys, 0xff, sizeof(keys));
    ck_assert_int_eq(cmd_keys(c, q.frame, &q.r, keys, 2), 4);
    ck_assert_uint_eq(keys[1], 3);
    ck_assert_uint_eq(keys[2], (size_t)-1);
    ck_assert_int_eq(cmd_keys(c, q.frame, &q.r, NULL, 0), 4);
    req_deinit(&q);

    req_init(&q, REQ("MSET", "a", "1", "b", "2", "c", "3"));
    ck_assert_int_eq(cmd_keys(cmd_find(q.frame, &q.r), q.frame, &q.r, keys, 8), 3);
    ck_assert_uint_eq(keys[0], 1);
    ck_assert_uint_eq(keys[1], 3);
    ck_assert_uint_eq(keys[2], 5);
    req_deinit(&q);
}
END_TEST

/* Every command and subcommand, with 1 to 9 arguments that are all "1" or
 * all "STORE": whatever cmd_keys answers stays inside the request (the
 * sanitizers watch the reads). */
START_TEST(test_keys_every_command_stays_inside)
{
    static const char *const fill[] = {"1", "STORE", "-1", "KEYS", "STREAMS", ""};
    for (size_t i = 0; i < cmd_table_len; i++) {
        for (size_t s = 0; s <= cmd_table[i].nsubs; s++) {
            const struct cmd_spec *c = s < cmd_table[i].nsubs ? &cmd_table[i].subs[s] : &cmd_table[i];
            for (size_t f = 0; f < sizeof(fill) / sizeof(fill[0]); f++) {
                for (size_t argc = 1; argc < 10; argc++) {
                    const char *argv[11];
                    argv[0] = c->name;
                    for (size_t a = 1; a < argc; a++)
                        argv[a] = fill[f];
                    argv[argc] = NULL;
                    struct req q;
                    size_t keys[16];
                    req_init(&q, argv);
                    int n = cmd_keys(c, q.frame, &q.r, keys, 16);
                    ck_assert_int_ge(n, -1);
                    for (int k = 0; k < n && k < 16; k++)
                        ck_assert_msg(keys[k] >= 1 && keys[k] < argc, "%s argc %zu", c->name, argc);
                    req_deinit(&q);
                }
            }
        }
    }
}
END_TEST

static Suite *cmd_suite(void)
{
    Suite *s = suite_create("cmd");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, test_lookup);
    tcase_add_test(tc, test_table_consistent);
    tcase_add_test(tc, test_find);
    tcase_add_test(tc, test_arity_and_flags);
    tcase_add_test(tc, test_kinds);
    suite_add_tcase(s, tc);
    tc = tcase_create("keys");
    tcase_add_test(tc, test_keys_index_range);
    tcase_add_test(tc, test_keys_numkeys);
    tcase_add_test(tc, test_keys_keyword);
    tcase_add_test(tc, test_keys_sort);
    tcase_add_test(tc, test_keys_positions_and_max);
    tcase_add_test(tc, test_keys_every_command_stays_inside);
    suite_add_tcase(s, tc);
    return s;
}

UNIT_MAIN(cmd_suite)
