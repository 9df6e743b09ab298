/*
 * The dispatcher and every handler below it (local, session, pubsub,
 * tracking, fanout, info, route, acl, migrate's hooks) over arbitrary
 * command streams from one client, with the nodes played by the fuzzer at
 * the backend_ops seam (stub_backend.c). The client is a real one, on one
 * end of a socketpair, read by front.c and written by client.c as in the
 * daemon.
 *
 * An input is: one byte of the client's kind (which preamble it sends
 * first: AUTH as the default user or an ACL user, HELLO 3, MULTI,
 * SUBSCRIBE, CLIENT TRACKING; cluster.cross_slot_transactions per-slot;
 * and the cluster's version), one byte that
 * seeds the nodes' replies, one byte N and N bytes the nodes send as they
 * are (among their replies), then the client's bytes
 * (tests/fuzz/dispatch_seeds.py writes seeds in this form). Properties, besides
 * no crash and no sanitizer report: every request completes once (a
 * worker torn down leaves no request and no connection behind, and
 * LeakSanitizer sees nothing).
 */
#include "conn/client.h"
#include "model/conf.h"
#include "fuzz.h"
#include "base/guard.h"
#include "base/log.h"
#include "migrate/migrate.h"
#include "loop/req.h"
#include "base/resp.h"
#include "path/route.h"
#include "daemon/thread.h"
#include "front/front.h"
#include "model/shared.h"
#include "stub_backend.h"
#include "model/tls.h"
#include "model/slotmap.h"
#include "loop/worker.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char config[] = "listen: [127.0.0.1:6380]\n"
                             "cluster:\n"
                             "  seeds: [127.0.0.1:7000]\n"
                             "  password: cluster-pw\n"
                             "  failover_wait: 1s\n"
                             "client:\n"
                             "  password: client-pw\n"
                             "  auth_timeout: 0\n"
                             "users:\n"
                             "  app: \"on >app-pw ~app:* &news* +@all -flushall -debug\"\n";

/* Three masters and their replicas, as CLUSTER NODES says it. */
static const char nodes[] =
    "a000000000000000000000000000000000000000 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n"
    "b000000000000000000000000000000000000000 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n"
    "c000000000000000000000000000000000000000 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383\n"
    "d000000000000000000000000000000000000000 127.0.0.1:7003@17003 slave a000000000000000000000000000000000000000 "
    "0 0 1 connected\n"
    "e000000000000000000000000000000000000000 127.0.0.1:7004@17004 slave b000000000000000000000000000000000000000 "
    "0 0 2 connected\n"
    "f000000000000000000000000000000000000000 127.0.0.1:7005@17005 slave c000000000000000000000000000000000000000 "
    "0 0 3 connected\n";

/* Whether FUZZ_DISPATCH_SHOW is set: then what the client and the nodes
 * are sent goes to stderr, to see what an input does. */
static int showing(void)
{
    static int show = -1;
    if (show < 0)
        show = getenv("FUZZ_DISPATCH_SHOW") != NULL;
    return show;
}

/* What a node may answer besides what the command would get: every RESP2
 * and RESP3 type, redirections to known and unknown nodes, the errors
 * respgate retries, Pub/Sub frames, replies shaped for SCAN, INFO and
 * subscriptions, and a few that are well-formed but wrong for any
 * command. */
static const char *const hostile[] = {
    "+OK\r\n", ":1\r\n", ":0\r\n", "$-1\r\n", "$3\r\nabc\r\n", "$0\r\n\r\n", "*-1\r\n", "*0\r\n",
    "*2\r\n$1\r\na\r\n$1\r\nb\r\n", "-ERR fuzzed\r\n", "-MOVED 3999 127.0.0.1:7001\r\n",
    "-MOVED 12 127.0.0.1:7999\r\n", "-ASK 5000 127.0.0.1:7002\r\n", "-ASK 16383 [::1]:7000\r\n", "-MOVED 99999 x:0\r\n",
    "-TRYAGAIN Multiple keys request during rehashing of slot\r\n", "-CLUSTERDOWN The cluster is down\r\n",
    "-LOADING Redis is loading the dataset in memory\r\n", "-BUSY Redis is busy running a script.\r\n",
    "-MASTERDOWN Link with MASTER is down\r\n", "-NOSCRIPT No matching script.\r\n", "+QUEUED\r\n",
    "*3\r\n+OK\r\n:1\r\n$-1\r\n", "*2\r\n$1\r\n0\r\n*2\r\n$1\r\nk\r\n$1\r\nj\r\n", "*2\r\n$2\r\n17\r\n*0\r\n",
    "*2\r\n$20\r\n18446744073709551616\r\n*0\r\n", "*2\r\n:5\r\n*1\r\n$1\r\nk\r\n",
    "$40\r\n# Server\r\nredis_version:7.0.15\r\nrole:master\r\n\r\n",
    "$52\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb1:keys=x\r\n\r\n",
    "$27\r\n# Stats\r\nfoo:1\r\nbar:-2.5e3\r\n\r\n", "%1\r\n+a\r\n:1\r\n", "~2\r\n:1\r\n:2\r\n", "_\r\n", ",1.5\r\n",
    "#t\r\n", "(12345678901234567890\r\n", "=7\r\ntxt:abc\r\n", "|1\r\n+a\r\n:1\r\n+OK\r\n",
    "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n", "*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:2\r\n",
    "*3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n", "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n", "*1\r\n:1\r\n",
    "*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n", "*3\r\n$10\r\nssubscribe\r\n$2\r\nch\r\n:1\r\n",
    "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$2\r\nch\r\n$2\r\nhi\r\n",
    ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", ">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n",
    ">2\r\n$10\r\ninvalidate\r\n_\r\n", "*2\r\n$4\r\npong\r\n$0\r\n\r\n", "*3\r\n$7\r\nmessage\r\n$-1\r\n:7\r\n",
    "*1\r\n*2\r\n$1\r\na\r\n*0\r\n", "*2\r\n*2\r\n:1\r\n:2\r\n$1\r\nz\r\n",
};

/* A node's INFO, with every section respgate merges. */
static const char info_text[] =
    "# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\nos:Linux\r\narch_bits:64\r\nprocess_id:7\r\n"
    "tcp_port:7000\r\nuptime_in_seconds:100\r\nuptime_in_days:0\r\nhz:10\r\nexecutable:/usr/bin/redis-server\r\n\r\n"
    "# Clients\r\nconnected_clients:3\r\nblocked_clients:0\r\nmaxclients:10000\r\n\r\n"
    "# Memory\r\nused_memory:1000000\r\nused_memory_human:976.56K\r\nused_memory_peak:2000000\r\n"
    "used_memory_dataset:18446744073708732482\r\nused_memory_scripts:9223372036854775807\r\n"
    "mem_fragmentation_ratio:1.50\r\nmaxmemory_policy:noeviction\r\n\r\n"
    "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:5\r\n\r\n"
    "# Stats\r\ntotal_connections_received:10\r\ntotal_commands_processed:100\r\ninstantaneous_ops_per_sec:3\r\n"
    "keyspace_hits:4\r\nkeyspace_misses:1\r\n\r\n"
    "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=7003,state=online,offset=1,lag=0\r\n"
    "master_repl_offset:1\r\n\r\n"
    "# CPU\r\nused_cpu_sys:1.5\r\nused_cpu_user:2.25\r\n\r\n"
    "# Modules\r\n\r\n# Errorstats\r\nerrorstat_ERR:count=2\r\n\r\n"
    "# Commandstats\r\ncmdstat_get:calls=9223372036854775807,usec=1e300,usec_per_call=0.5,rejected_calls=0\r\n\r\n"
    "# Cluster\r\ncluster_enabled:1\r\n\r\n"
    "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=5\r\n";

struct nodes {
    unsigned seed;
    const uint8_t *raw; /* the input's bytes a node sends as they are */
    size_t left;
};

static unsigned next(struct nodes *n)
{
    n->seed = n->seed * 1103515245u + 12345u;
    return n->seed >> 16;
}

static void add(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, s, strlen(s));
}

/* The bulk string of argument I of Q in FRAME, or a nil. */
static void add_arg(struct evbuffer *out, struct evbuffer *frame, const struct resp_req *q, size_t i, int proto)
{
    if (i < q->argc)
        resp_add_arg(out, frame, &q->argv[i]);
    else
        resp_add_nil(out, proto);
}

/* What a node answers the command of Q, in a shape its callers expect. */
static void plausible(struct nodes *n, struct evbuffer *frame, const struct resp_req *q, int proto,
                      struct evbuffer *out)
{
    static const char *const integers[] = {"del", "unlink", "exists", "touch", "incr", "decr", "incrby", "dbsize",
                                           "publish", "spublish", "wait", "hset", "sadd", "lpush", "rpush", "expire",
                                           "ttl", "pttl", "strlen", "llen", "scard", "zcard", "eval", "evalsha",
                                           "fcall", "pubsub", NULL};
    static const char *const bulks[] = {"get", "getdel", "getex", "hget", "lpop", "rpop", "lindex", "getrange",
                                        "randomkey", "echo", "dump", "srandmember", "type", "getset", NULL};
    static const char *const kinds[] = {"subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe",
                                        "sunsubscribe", NULL};
    for (size_t i = 0; integers[i]; i++)
        if (resp_arg_is(frame, q, 0, integers[i])) {
            evbuffer_add_printf(out, ":%u\r\n", next(n) % 4);
            return;
        }
    for (size_t i = 0; bulks[i]; i++)
        if (resp_arg_is(frame, q, 0, bulks[i])) {
            if (next(n) % 4 == 0)
                resp_add_nil(out, proto);
            else
                add(out, "$5\r\nvalue\r\n");
            return;
        }
    for (size_t i = 0; kinds[i]; i++)
        if (resp_arg_is(frame, q, 0, kinds[i])) {
            resp_add_push_head(out, proto, 3);
            resp_add_bulk(out, kinds[i], strlen(kinds[i]));
            add_arg(out, frame, q, 1, proto);
            evbuffer_add_printf(out, ":%u\r\n", i < 3 ? 1 + next(n) % 3 : next(n) % 2);
            return;
        }
    if (resp_arg_is(frame, q, 0, "mget") || resp_arg_is(frame, q, 0, "hmget")) {
        size_t k = q->argc - (resp_arg_is(frame, q, 0, "mget") ? 1 : 2);
        evbuffer_add_printf(out, "*%zu\r\n", k);
        for (size_t i = 0; i < k; i++)
            next(n) % 3 ? add(out, "$1\r\nv\r\n") : resp_add_nil(out, proto);
    } else if (resp_arg_is(frame, q, 0, "scan")) {
        add(out, next(n) % 2 ? "*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n" : "*2\r\n$2\r\n17\r\n*1\r\n$1\r\nc\r\n");
    } else if (resp_arg_is(frame, q, 0, "keys") || resp_arg_is(frame, q, 0, "slowlog") ||
               resp_arg_is(frame, q, 0, "latency")) {
        add(out, "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
    } else if (resp_arg_is(frame, q, 0, "info")) {
        evbuffer_add_printf(out, "$%zu\r\n%s\r\n", sizeof(info_text) - 1, info_text);
    } else if (resp_arg_is(frame, q, 0, "ping")) {
        add(out, next(n) % 2 ? "+PONG\r\n" : "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    } else if (resp_arg_is(frame, q, 0, "exec")) {
        add(out, next(n) % 4 ? "*2\r\n+OK\r\n:1\r\n" : "*-1\r\n");
    } else if (resp_arg_is(frame, q, 0, "script") || resp_arg_is(frame, q, 0, "function")) {
        add(out, "$40\r\n0123456789012345678901234567890123456789\r\n");
    } else if (resp_arg_is(frame, q, 0, "blpop") || resp_arg_is(frame, q, 0, "brpop") ||
               resp_arg_is(frame, q, 0, "bzpopmin")) {
        add(out, next(n) % 2 ? "*2\r\n$1\r\nl\r\n$1\r\nv\r\n" : "*-1\r\n");
    } else if (resp_arg_is(frame, q, 0, "pttl")) {
        add(out, ":-1\r\n");
    } else {
        add(out, next(n) % 6 ? "+OK\r\n" : "+QUEUED\r\n");
    }
}

/* What a node sends: mostly what the command would get, now and then
 * something hostile, a piece of the input's own bytes, or a broken
 * connection. */
static int make_reply(void *arg, struct evbuffer *frame, const struct resp_req *q, int proto, struct evbuffer *out)
{
    struct nodes *n = arg;
    unsigned roll = next(n) % 32;
    if (roll == 0)
        return -1;
    if (roll == 1 && n->left) {
        size_t take = 1 + next(n) % 64;
        take = take < n->left ? take : n->left;
        evbuffer_add(out, n->raw, take);
        n->raw += take, n->left -= take;
    } else if (q == NULL) { /* a push stream with nothing asked: a message now and then */
        if (roll % 4 == 0)
            add(out, proto == 3 && roll % 8 == 0 ? ">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n"
                     : proto == 3 ? ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
                                  : "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
    } else if (roll < 7) {
        add(out, hostile[next(n) % (sizeof(hostile) / sizeof(hostile[0]))]);
    } else {
        plausible(n, frame, q, proto, out);
    }
    return 0;
}

/* The nodes' side of the stub (stub_reply_fn), shown with FUZZ_DISPATCH_SHOW. */
static int node_reply(void *arg, struct evbuffer *frame, const struct resp_req *q, int proto, struct evbuffer *out)
{
    int rc = make_reply(arg, frame, q, proto, out);
    if (showing()) {
        char name[32];
        fprintf(stderr, "[node] %s -> ", q ? resp_arg_printable(frame, q, 0, name, sizeof(name)) : "(push)");
        if (rc < 0)
            fprintf(stderr, "(connection lost)\n");
        else /* on one line, so that the client's bytes stand apart */
            for (const char *p = (const char *)evbuffer_pullup(out, -1), *end = p + evbuffer_get_length(out); p <= end;
                 p++)
                p == end ? fputc('\n', stderr) : *p == '\r' ? fputs("\\r", stderr) : *p == '\n' ? fputs("\\n", stderr)
                                                                                     : fputc(*p, stderr);
    }
    return rc;
}

static struct shared shared;
static struct thread_ctl ctl = {.shared = &shared};
static struct slotmap *map;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    log_set_level(LOGL_ERROR); /* the log lines are the daemon's business, not the fuzzer's */
    log_open("/dev/null");
    struct conf_diag diag = {0};
    struct conf *conf = conf_parse("fuzz.yml", config, sizeof(config) - 1, &diag);
    FUZZ_CHECK(conf != NULL);
    conf_diag_free(&diag);
    shared_init(&shared, conf, "fuzz.yml"); /* no refresh hook: the map is the fuzzer's */
    char err[128];
    shared.tls = tls_ctxs_new(shared.conf, err, sizeof(err));
    shared.guard = guard_new();
    map = slotmap_parse(nodes, sizeof(nodes) - 1, "127.0.0.1", err, sizeof(err));
    FUZZ_CHECK(shared.tls != NULL && shared.guard != NULL && map != NULL);
    return 0;
}

/* The preambles, one per bit of the kind byte, in this order. */
static const char *const preambles[] = {
    "*2\r\n$4\r\nAUTH\r\n$9\r\nclient-pw\r\n",
    "*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$6\r\napp-pw\r\n",
    "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n",
    "*4\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\nON\r\n$5\r\nBCAST\r\n",
    "*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n",
    "*1\r\n$5\r\nMULTI\r\n",
};

/* One turn of W's loop that never blocks (worker_run_turn's, without the
 * wait). */
static void turn(struct worker *w)
{
    w->turn_no++;
    w->turn_reads = 0;
    w->turn_us = 0;
    event_base_loop(w->base, EVLOOP_NONBLOCK);
}

/* Time passes: every timer pending on BASE runs now, as if its time had
 * come (a parked request's retry, a tracking feed's, a held AUTH's).
 * Returns how many ran. */
#define TIMERS_MAX 256
struct timers {
    struct event *ev[TIMERS_MAX];
    int n;
};

static int note_timer(const struct event_base *base, const struct event *ev, void *arg)
{
    struct timers *t = arg;
    (void)base;
    if (event_get_fd(ev) == -1 && event_pending(ev, EV_TIMEOUT, NULL) && t->n < TIMERS_MAX)
        t->ev[t->n++] = (struct event *)ev;
    return 0;
}

static int time_passes(struct event_base *base)
{
    struct timers t = {.n = 0};
    event_base_foreach_event(base, note_timer, &t); /* which must not change an event: activated after */
    for (int i = 0; i < t.n; i++)
        event_active(t.ev[i], EV_TIMEOUT, 1);
    return t.n;
}

/* Reads what the client was sent, and drops it (or shows it). Returns the
 * bytes read. */
static size_t drain(int fd)
{
    int show = showing();
    char buf[65536];
    size_t total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        total += (size_t)n;
        if (show)
            fwrite(buf, 1, (size_t)n, stderr);
    }
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned kind = data[0];
    struct nodes nd = {.seed = data[1] | 1u << 8};
    size_t raw = size > 2 ? data[2] : 0;
    if (size < 3 + raw)
        return 0;
    nd.raw = data + 3, nd.left = raw;
    data += 3 + raw, size -= 3 + raw;

    struct worker w;
    FUZZ_CHECK(thread_init(&w, &ctl, 0, NULL, 0) == 0);
    w.version = kind & 0x80 ? 60206 : 70015;
    /* bit 6: transactions over several slots run per slot (one config
     * object, one thread: set for this input only) */
    w.conf->cross_slot_transactions = kind & 0x40 ? CROSS_TXN_PER_SLOT : CROSS_TXN_REFUSE;
    w.map = slotmap_ref(map);
    FUZZ_CHECK(route_apply_map(&w, map) == 0);

    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(40000), .sin_addr = {htonl(INADDR_LOOPBACK)}};
    front_accept(&w, sv[0], (struct sockaddr *)&sa, sizeof(sa), 0, NULL);

    for (size_t i = 0; i < sizeof(preambles) / sizeof(preambles[0]); i++)
        if (kind & (1u << i))
            FUZZ_CHECK(write(sv[1], preambles[i], strlen(preambles[i])) == (ssize_t)strlen(preambles[i]));
    /* The stream goes in pieces, so a frame is also scanned across reads. */
    size_t sent = 0, got = 0;
    int ticks = 0;
    for (int round = 0; round < 256; round++) {
        if (sent < size) {
            size_t piece = size - sent < 4096 ? size - sent : 4096;
            ssize_t n = write(sv[1], data + sent, piece);
            if (n > 0)
                sent += (size_t)n;
        }
        turn(&w);
        int acted = stub_backend_answer(&w, node_reply, &nd);
        got += drain(sv[1]);
        if (!acted && sent == size && round > 8 && (ticks++ >= 16 || time_passes(w.base) == 0))
            break;
    }
    (void)got;

    /* The daemon's teardown order (worker.c's worker_main). */
    while (!TAILQ_EMPTY(&w.clients))
        client_free(TAILQ_FIRST(&w.clients));
    turn(&w);
    route_stop(&w);
    backend_free_all(&w);
    stub_backend_answer(&w, node_reply, &nd); /* retires what the clients released */
    FUZZ_CHECK(stub_backend_count() == 0);
    migrate_worker_free(&w);
    req_pool_shrink(&w, 0);
    close(sv[1]);
    atomic_store(&shared.nclients, 0);
    thread_deinit(&w);
    return 0;
}
