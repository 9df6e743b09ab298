/*
 * The dispatcher and every handler below it (local, session, pubsub,
 * tracking, fanout, info, route, acl, migrate's hooks) over arbitrary
 * command streams from one client, with the nodes played by the fuzzer at
 * the backend_ops seam (stub_backend.c). The client is a real one, on one
 * end of a socketpair, read and written by client.c as in the daemon.
 *
 * An input is: one byte of the client's kind (which preamble it sends
 * first: AUTH as the default user or an ACL user, HELLO 3, MULTI,
 * SUBSCRIBE, CLIENT TRACKING; and the cluster's version), one byte that
 * seeds the nodes' replies, then the client's bytes. Properties, besides
 * no crash and no sanitizer report: every request completes once (a
 * worker torn down leaves no request and no connection behind, and
 * LeakSanitizer sees nothing).
 */
#include "client.h"
#include "conf.h"
#include "fuzz.h"
#include "guard.h"
#include "log.h"
#include "migrate.h"
#include "req.h"
#include "route.h"
#include "server.h"
#include "stub_backend.h"
#include "tls.h"
#include "topo.h"
#include "worker.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char config[] = "listen: [127.0.0.1:6380]\n"
                             "cluster:\n"
                             "  seeds: [127.0.0.1:7000]\n"
                             "  password: cluster-pw\n"
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

/* What a node may answer: every RESP2 and RESP3 type, redirections to
 * known and unknown nodes, the errors respgate retries, Pub/Sub frames,
 * replies shaped for SCAN, INFO and the confirmations of subscriptions,
 * and a few that are well-formed but wrong for any command. */
static const char *const replies[] = {
    "+OK\r\n", ":1\r\n", ":0\r\n", "$-1\r\n", "$3\r\nabc\r\n", "$0\r\n\r\n", "*-1\r\n", "*0\r\n",
    "*2\r\n$1\r\na\r\n$1\r\nb\r\n", "-ERR fuzzed\r\n", "-MOVED 3999 127.0.0.1:7001\r\n",
    "-MOVED 12 127.0.0.1:7999\r\n", "-ASK 5000 127.0.0.1:7002\r\n", "-ASK 16383 [::1]:7000\r\n", "-MOVED 99999 x:0\r\n",
    "-TRYAGAIN Multiple keys request during rehashing of slot\r\n", "-CLUSTERDOWN The cluster is down\r\n",
    "-LOADING Redis is loading the dataset in memory\r\n", "-BUSY Redis is busy running a script.\r\n",
    "-NOSCRIPT No matching script.\r\n", "+QUEUED\r\n", "*3\r\n+OK\r\n:1\r\n$-1\r\n",
    "*2\r\n$1\r\n0\r\n*2\r\n$1\r\nk\r\n$1\r\nj\r\n", "*2\r\n$2\r\n17\r\n*0\r\n", "*2\r\n$20\r\n18446744073709551616\r\n*0\r\n",
    "*2\r\n:5\r\n*1\r\n$1\r\nk\r\n", "$40\r\n# Server\r\nredis_version:7.0.15\r\nrole:master\r\n\r\n",
    "$52\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb1:keys=x\r\n\r\n",
    "$27\r\n# Stats\r\nfoo:1\r\nbar:-2.5e3\r\n\r\n", "%1\r\n+a\r\n:1\r\n", "~2\r\n:1\r\n:2\r\n", "_\r\n", ",1.5\r\n",
    "#t\r\n", "(12345678901234567890\r\n", "=7\r\ntxt:abc\r\n", "|1\r\n+a\r\n:1\r\n+OK\r\n",
    "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n", "*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:2\r\n",
    "*3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n", "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
    "*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n", "*3\r\n$10\r\nssubscribe\r\n$2\r\nch\r\n:1\r\n",
    "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$2\r\nch\r\n$2\r\nhi\r\n",
    ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", ">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n",
    ">2\r\n$10\r\ninvalidate\r\n_\r\n", "*2\r\n$4\r\npong\r\n$0\r\n\r\n", "*3\r\n$7\r\nmessage\r\n$-1\r\n:7\r\n",
    "*1\r\n*2\r\n$1\r\na\r\n*0\r\n", "$-5\r\n", "*2\r\n*2\r\n:1\r\n:2\r\n$1\r\nz\r\n",
};

struct replies {
    unsigned seed;
};

static const char *pick(void *arg, size_t *len)
{
    struct replies *p = arg;
    p->seed = p->seed * 1103515245u + 12345u;
    unsigned i = (p->seed >> 16) % (sizeof(replies) / sizeof(replies[0]) + 1);
    if (i == sizeof(replies) / sizeof(replies[0]))
        return NULL; /* now and then the connection is lost */
    *len = strlen(replies[i]);
    return replies[i];
}

static struct server srv;
static struct slotmap *map;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    log_set_level(LOGL_ERROR); /* the log lines are the daemon's business, not the fuzzer's */
    log_open("/dev/null");
    struct conf_diag diag = {0};
    srv.conf = conf_parse("fuzz.yml", config, sizeof(config) - 1, &diag);
    FUZZ_CHECK(srv.conf != NULL);
    conf_diag_free(&diag);
    pthread_mutex_init(&srv.conf_lock, NULL);
    char err[128];
    srv.tls = tls_ctxs_new(srv.conf, err, sizeof(err));
    srv.base = event_base_new();
    srv.topo = topo_new(&srv); /* asked for refreshes, never run: no socket */
    srv.guard = guard_new();
    map = slotmap_parse(nodes, sizeof(nodes) - 1, "127.0.0.1", err, sizeof(err));
    FUZZ_CHECK(srv.tls != NULL && srv.topo != NULL && srv.guard != NULL && map != NULL);
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

/* Reads and drops what the client was sent. Returns the bytes read. */
static size_t drain(int fd)
{
    char buf[65536];
    size_t total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        total += (size_t)n;
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned kind = data[0];
    struct replies rp = {data[1] | 1u << 8};
    data += 2, size -= 2;

    struct worker w;
    FUZZ_CHECK(worker_init(&w, &srv, 0, NULL, 0) == 0);
    w.version = kind & 0x80 ? 60206 : 70015;
    w.map = slotmap_ref(map);
    FUZZ_CHECK(route_apply_map(&w, map) == 0);

    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(40000), .sin_addr = {htonl(INADDR_LOOPBACK)}};
    client_accept(&w, sv[0], (struct sockaddr *)&sa, sizeof(sa), 0, NULL);

    for (size_t i = 0; i < sizeof(preambles) / sizeof(preambles[0]); i++)
        if (kind & (1u << i))
            FUZZ_CHECK(write(sv[1], preambles[i], strlen(preambles[i])) == (ssize_t)strlen(preambles[i]));
    /* The stream goes in pieces, so a frame is also scanned across reads. */
    size_t sent = 0, got = 0;
    for (int round = 0; round < 256; round++) {
        if (sent < size) {
            size_t piece = size - sent < 4096 ? size - sent : 4096;
            ssize_t n = write(sv[1], data + sent, piece);
            if (n > 0)
                sent += (size_t)n;
        }
        turn(&w);
        int acted = stub_backend_answer(&w, pick, &rp);
        got += drain(sv[1]);
        if (!acted && sent == size && round > 8)
            break;
    }
    (void)got;

    /* The daemon's teardown order (worker.c's worker_main). */
    while (!TAILQ_EMPTY(&w.clients))
        client_free(TAILQ_FIRST(&w.clients));
    turn(&w);
    route_stop(&w);
    backend_free_all(&w);
    stub_backend_answer(&w, pick, &rp); /* retires what the clients released */
    FUZZ_CHECK(stub_backend_count() == 0);
    migrate_worker_free(&w);
    req_pool_shrink(&w, 0);
    close(sv[1]);
    atomic_store(&srv.nclients, 0);
    worker_deinit(&w);
    return 0;
}
