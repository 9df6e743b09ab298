/*
 * migrate: a standalone Redis's keys into the cluster, see migrate.h.
 *
 * An import (struct migrate_fetch) runs on one worker: for each key, PTTL
 * and DUMP go to the standalone on the worker's connection to it; once all
 * are answered, each key found goes to its master as RESTORE key ms
 * payload ABSTTL (the payload is DUMP's reply as it came, a bulk string);
 * once those are answered, whoever asked goes on. The written set is
 * shared by the workers under a mutex taken only while a migration runs,
 * by writes and by imports, never by a read that hits.
 */
#include "migrate.h"

#include "backend.h"
#include "client.h"
#include "cmd.h"
#include "conf.h"
#include "log.h"
#include "netio.h"
#include "req.h"
#include "resp.h"
#include "route.h"
#include "server.h"
#include "slot.h"
#include "worker.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

/* Keys longer than this are not imported (counted as failed): a key is
 * copied into every frame an import sends. */
#define MIGRATE_KEY_MAX 65536
/* Keys the walk asks SCAN for at a time. */
#define WALK_BATCH 100
/* A progress line every this many keys walked. */
#define WALK_LOG_EVERY 10000
/* How long the walk waits after the standalone failed it. */
#define WALK_RETRY_MS 1000

/* What the migration counts: INFO's migration_NAME, /metrics' outcome
 * label, and the state file's lines, so a restart goes on counting. */
enum migrate_count {
    MC_READS_MISSED,    /* reads the cluster answered "missing", looked up on the standalone */
    MC_WRITES_WAITED,   /* writes that waited for their keys' old copies */
    MC_IMPORTED,        /* keys copied for a read or a write */
    MC_PRESENT,         /* keys the cluster had already (RESTORE said BUSYKEY) */
    MC_ABSENT,          /* keys the standalone does not have */
    MC_SKIPPED_WRITTEN, /* keys left alone: written through respgate during the migration */
    MC_TOO_LARGE,       /* keys a read did not copy: larger than migration.max_value_size */
    MC_FAILED,          /* keys that could not be copied (the standalone unreachable, RESTORE refused) */
    MC_WALK_SCANNED,    /* keys the walk visited */
    MC_WALK_COPIED,     /* keys the walk copied */
    MC_COUNT
};
static const char *const count_names[MC_COUNT] = {
    "reads_missed", "writes_waited", "imported", "present", "absent", "skipped_written", "too_large", "failed",
    "walk_scanned", "walk_copied"};

/* ---- the written set: fingerprints of keys, open addressing ---- */

struct migrate {
    pthread_mutex_t lock;     /* guards the set, unsaved[] and the flags below */
    uint64_t *set;            /* 0 = empty */
    size_t cap, n, max;
    uint64_t *unsaved;        /* added since the last save, in order */
    size_t nunsaved, capunsaved;
    int full;                 /* max_written_keys reached: no import from now on */
    int flushed;              /* FLUSHALL/FLUSHDB went through: no import from now on */
    int state_dirty;
    char *state_path;         /* migration.state_file at start, NULL = none */
    int keys_fd;              /* its ".keys" twin, open for appending; -1 */
    struct event *save_timer;
    /* The walk's progress, published by worker 0, saved by the control thread. */
    atomic_uint_fast64_t cursor;
    atomic_int walk_done;
    atomic_uint_fast64_t total;  /* the standalone's DBSIZE when the walk began, 0 unknown */
    atomic_uint_fast64_t count[MC_COUNT]; /* what INFO and /metrics show, saved in the state file */
};

static uint64_t fingerprint(const char *key, size_t len)
{
    /* FNV-1a, then a 64-bit avalanche so that nearby keys spread over the
     * table; a collision only makes one key count as written. */
    uint64_t h = 0xcbf29ce484222325ull ^ len;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h ? h : 1;
}

/* Whether FP is in M's set. M->lock held. */
static int set_has(const struct migrate *m, uint64_t fp)
{
    if (m->cap == 0)
        return 0;
    for (size_t i = fp & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->set[i] == fp)
            return 1;
        if (m->set[i] == 0)
            return 0;
    }
}

/* Puts FP in M's set (kept at most half full). Returns 1 if added, 0 if
 * there already, -1 if the set is full or out of memory. M->lock held. */
static int set_add(struct migrate *m, uint64_t fp)
{
    if (set_has(m, fp))
        return 0;
    if (m->n >= m->max)
        return -1;
    if (2 * (m->n + 1) > m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 4096;
        uint64_t *set = calloc(cap, sizeof(*set));
        if (set == NULL)
            return -1;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->set[i] == 0)
                continue;
            size_t j = m->set[i] & (cap - 1);
            while (set[j])
                j = (j + 1) & (cap - 1);
            set[j] = m->set[i];
        }
        free(m->set);
        m->set = set;
        m->cap = cap;
    }
    size_t i = fp & (m->cap - 1);
    while (m->set[i])
        i = (i + 1) & (m->cap - 1);
    m->set[i] = fp;
    m->n++;
    return 1;
}

/* Whether imports stopped for good (the set is full, or the cluster was flushed). */
static int stopped(struct migrate *m)
{
    pthread_mutex_lock(&m->lock);
    int s = m->full || m->flushed;
    pthread_mutex_unlock(&m->lock);
    return s;
}

static int written(struct migrate *m, uint64_t fp)
{
    pthread_mutex_lock(&m->lock);
    int has = set_has(m, fp);
    pthread_mutex_unlock(&m->lock);
    return has;
}

/* Marks FP written. Returns 1 if it was not yet, 0 if it was, -1 if the
 * set is full: imports stop then (logged once). M->lock held. */
static int mark_written(struct migrate *m, uint64_t fp)
{
    int rc = m->full ? -1 : set_add(m, fp);
    if (rc < 0 && !m->full) {
        m->full = 1;
        m->state_dirty = 1;
        log_error("migration: migration.max_written_keys (%zu) keys were written during the migration; nothing more "
                  "is copied from the standalone (raise it and restart to go on)", m->max);
    }
    if (rc == 1) {
        if (m->nunsaved == m->capunsaved) {
            size_t cap = m->capunsaved ? 2 * m->capunsaved : 1024;
            uint64_t *more = realloc(m->unsaved, cap * sizeof(*more));
            if (more == NULL) { /* cannot be saved: stop rather than forget it at restart */
                m->full = 1;
                log_error("migration: out of memory remembering a written key; nothing more is copied");
                return -1;
            }
            m->unsaved = more;
            m->capunsaved = cap;
        }
        m->unsaved[m->nunsaved++] = fp;
    }
    return rc;
}

/* ---- the state file ---- */

static void on_save(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    migrate_save(arg);
}

/* Reads the state file's "name value" lines into M. */
static void load_state(struct migrate *m)
{
    FILE *f = fopen(m->state_path, "r");
    if (f == NULL)
        return;
    char name[32];
    unsigned long long v;
    while (fscanf(f, "%31s %llu", name, &v) == 2) {
        if (strcmp(name, "cursor") == 0)
            atomic_store(&m->cursor, v);
        else if (strcmp(name, "walk_done") == 0)
            atomic_store(&m->walk_done, v != 0);
        else if (strcmp(name, "flushed") == 0)
            m->flushed = v != 0;
        else if (strcmp(name, "total") == 0)
            atomic_store(&m->total, v);
        for (int i = 0; i < MC_COUNT; i++)
            if (strcmp(name, count_names[i]) == 0)
                atomic_store(&m->count[i], v);
    }
    fclose(f);
}

/* Loads the written keys of M's ".keys" file and opens it for appending.
 * Returns 0, or -errno. */
static int load_keys(struct migrate *m)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s.keys", m->state_path);
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    uint64_t buf[4096];
    ssize_t got;
    size_t rest = 0;
    while ((got = read(fd, (char *)buf + rest, sizeof(buf) - rest)) > 0) {
        size_t have = rest + (size_t)got, n = have / sizeof(uint64_t);
        for (size_t i = 0; i < n; i++)
            if (buf[i] && set_add(m, buf[i]) < 0)
                m->full = 1;
        rest = have % sizeof(uint64_t); /* a record cut by a crash mid-write */
        memmove(buf, (char *)buf + n * sizeof(uint64_t), rest);
    }
    if (got < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    m->keys_fd = fd;
    return 0;
}

static void make_miss_table(void);
static pthread_once_t miss_once = PTHREAD_ONCE_INIT;

int migrate_init(struct server *s, const struct conf *conf)
{
    struct migrate *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -1;
    pthread_once(&miss_once, make_miss_table);
    pthread_mutex_init(&m->lock, NULL);
    m->keys_fd = -1;
    m->max = conf->migration_max_written_keys;
    s->migrate = m;
    if (conf->migration_state_file == NULL)
        return 0;
    if ((m->state_path = strdup(conf->migration_state_file)) == NULL)
        return -1;
    int rc = load_keys(m);
    if (rc < 0) {
        log_error("migration.state_file: cannot open %s.keys: %s", m->state_path, strerror(-rc));
        return -1;
    }
    load_state(m);
    if ((m->save_timer = event_new(s->base, -1, EV_PERSIST, on_save, s)) == NULL)
        return -1;
    struct timeval second = {1, 0};
    event_add(m->save_timer, &second);
    if (m->n || atomic_load(&m->cursor))
        log_notice("migration: %zu written keys and walk cursor %llu%s read from %s", m->n,
                   (unsigned long long)atomic_load(&m->cursor), atomic_load(&m->walk_done) ? " (walk done)" : "",
                   m->state_path);
    return 0;
}

/* Writes the state file whole, through a new file renamed over it. */
static void write_state(struct migrate *m, int flushed, int full)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.new", m->state_path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        log_error("migration.state_file: cannot write %s: %s", tmp, strerror(errno));
        return;
    }
    fprintf(f, "cursor %llu\nwalk_done %d\nflushed %d\nfull %d\ntotal %llu\n",
            (unsigned long long)atomic_load(&m->cursor), atomic_load(&m->walk_done), flushed, full,
            (unsigned long long)atomic_load(&m->total));
    for (int i = 0; i < MC_COUNT; i++)
        fprintf(f, "%s %llu\n", count_names[i], (unsigned long long)atomic_load(&m->count[i]));
    if (fclose(f) != 0 || rename(tmp, m->state_path) != 0)
        log_error("migration.state_file: cannot write %s: %s", m->state_path, strerror(errno));
}

void migrate_save(struct server *s)
{
    struct migrate *m = s->migrate;
    if (m == NULL || m->state_path == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    uint64_t *keys = m->unsaved;
    size_t n = m->nunsaved;
    m->unsaved = NULL;
    m->nunsaved = m->capunsaved = 0;
    int flushed = m->flushed, full = m->full;
    m->state_dirty = 0;
    pthread_mutex_unlock(&m->lock);
    size_t done = 0;
    while (done < n * sizeof(*keys)) {
        ssize_t put = write(m->keys_fd, (char *)keys + done, n * sizeof(*keys) - done);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0) {
            log_error("migration.state_file: cannot append to %s.keys: %s", m->state_path, strerror(errno));
            break;
        }
        done += (size_t)put;
    }
    free(keys);
    write_state(m, flushed, full);
}

void migrate_free(struct server *s)
{
    struct migrate *m = s->migrate;
    if (m == NULL)
        return;
    migrate_save(s);
    if (m->save_timer)
        event_free(m->save_timer);
    if (m->keys_fd >= 0)
        close(m->keys_fd);
    free(m->set);
    free(m->unsaved);
    free(m->state_path);
    pthread_mutex_destroy(&m->lock);
    free(m);
    s->migrate = NULL;
}

void migrate_conf_changed(struct server *s, const struct conf *conf, const struct conf *old)
{
    static const char *const modes[] = {"off", "read-through", "copy"};
    struct migrate *m = s->migrate;
    int was = old ? old->migration_mode : MIGRATION_OFF;
    if (m == NULL || conf->migration_mode == was)
        return;
    char src[CONF_HOST_MAX + 16] = "";
    if (conf->migration_source)
        conf_addr_str(conf->migration_source, src, sizeof(src));
    if (conf->migration_mode != MIGRATION_OFF && m->state_path == NULL) {
        log_error("migration: migration.state_file is read at start only: restart respgate to begin the migration");
        return;
    }
    if (conf->migration_mode == MIGRATION_OFF) {
        log_notice("migration: off (was %s); keys written from now on are not remembered", modes[was]);
        return;
    }
    if (old && was == MIGRATION_OFF && m->n)
        log_warning("migration: %s again; keys written while it was off were not remembered, and a deleted one may "
                    "come back from the standalone", modes[conf->migration_mode]);
    log_notice("migration: %s from %s (%zu keys remembered as written%s)", modes[conf->migration_mode], src, m->n,
               m->flushed ? "; the cluster was flushed during the migration, so nothing is copied" : "");
}

/* Whether W runs a migration now. */
static int active(const struct worker *w)
{
    return w->conf->migration_mode >= MIGRATION_READ_THROUGH && w->srv->migrate &&
           w->srv->migrate->state_path != NULL;
}

/* ---- the table of reads and their "missing" answers ---- */

enum miss {
    MISS_NONE = 0,
    MISS_NIL,          /* $-1, *-1, _ */
    MISS_EMPTY,        /* an empty array, map or set */
    MISS_NIL_OR_EMPTY, /* either (HRANDFIELD, SRANDMEMBER with or without a count) */
    MISS_ZERO,         /* :0 */
    MISS_TYPE_NONE,    /* +none */
    MISS_NO_TTL,       /* :-2 */
    MISS_EMPTY_STRING, /* $0 */
    MISS_ANY_NIL,      /* an array with a nil element (MGET, HMGET) */
    MISS_FEWER,        /* :N below the number of keys (EXISTS) */
    MISS_SCAN_END,     /* cursor 0 and no element (HSCAN, SSCAN, ZSCAN) */
};

static const struct {
    const char *name;
    uint8_t miss;
} reads[] = {
    {"get", MISS_NIL}, {"mget", MISS_ANY_NIL}, {"getrange", MISS_EMPTY_STRING}, {"substr", MISS_EMPTY_STRING},
    {"strlen", MISS_ZERO}, {"getbit", MISS_ZERO}, {"bitcount", MISS_ZERO}, {"exists", MISS_FEWER},
    {"type", MISS_TYPE_NONE}, {"ttl", MISS_NO_TTL}, {"pttl", MISS_NO_TTL}, {"expiretime", MISS_NO_TTL},
    {"pexpiretime", MISS_NO_TTL}, {"dump", MISS_NIL}, {"object|encoding", MISS_NIL}, {"memory|usage", MISS_NIL},
    {"hget", MISS_NIL}, {"hmget", MISS_ANY_NIL}, {"hgetall", MISS_EMPTY}, {"hkeys", MISS_EMPTY},
    {"hvals", MISS_EMPTY}, {"hlen", MISS_ZERO}, {"hexists", MISS_ZERO}, {"hstrlen", MISS_ZERO},
    {"hrandfield", MISS_NIL_OR_EMPTY}, {"hscan", MISS_SCAN_END}, {"lrange", MISS_EMPTY}, {"llen", MISS_ZERO},
    {"lindex", MISS_NIL}, {"lpos", MISS_NIL_OR_EMPTY}, {"smembers", MISS_EMPTY}, {"scard", MISS_ZERO},
    {"sismember", MISS_ZERO}, {"srandmember", MISS_NIL_OR_EMPTY}, {"sscan", MISS_SCAN_END},
    {"sinter", MISS_EMPTY}, {"sunion", MISS_EMPTY}, {"sdiff", MISS_EMPTY}, {"zrange", MISS_EMPTY},
    {"zrangebyscore", MISS_EMPTY}, {"zrevrange", MISS_EMPTY}, {"zrevrangebyscore", MISS_EMPTY},
    {"zrangebylex", MISS_EMPTY}, {"zrevrangebylex", MISS_EMPTY}, {"zcard", MISS_ZERO}, {"zcount", MISS_ZERO},
    {"zlexcount", MISS_ZERO}, {"zscore", MISS_NIL}, {"zmscore", MISS_ANY_NIL}, {"zrank", MISS_NIL},
    {"zrevrank", MISS_NIL}, {"zrandmember", MISS_NIL_OR_EMPTY}, {"zscan", MISS_SCAN_END}, {"xrange", MISS_EMPTY},
    {"xrevrange", MISS_EMPTY}, {"xlen", MISS_ZERO}, {"pfcount", MISS_ZERO}, {"geopos", MISS_ANY_NIL},
    {"geodist", MISS_NIL}, {"geohash", MISS_ANY_NIL}, {"geosearch", MISS_EMPTY}, {"sort_ro", MISS_EMPTY},
};

/* By command id (cmd.h), made once. */
static uint8_t *miss_by_id;

static void make_miss_table(void)
{
    miss_by_id = calloc(cmd_spec_count, 1);
    for (size_t i = 0; miss_by_id && i < sizeof(reads) / sizeof(reads[0]); i++) {
        const char *bar = strchr(reads[i].name, '|');
        const struct cmd_spec *c = cmd_lookup(reads[i].name, bar ? (size_t)(bar - reads[i].name) : strlen(reads[i].name));
        if (c && bar)
            c = cmd_lookup_sub(c, bar + 1, strlen(bar + 1));
        if (c && c->id && c->id < cmd_spec_count)
            miss_by_id[c->id] = reads[i].miss;
    }
}

static enum miss miss_of(const struct cmd_spec *cmd)
{
    return miss_by_id && cmd->id && cmd->id < cmd_spec_count ? (enum miss)miss_by_id[cmd->id] : MISS_NONE;
}

/* Whether the reply of LEN bytes at the front of IN is WANT (N bytes):
 * its length is compared first, so most replies cost no copy. */
static int reply_is(struct evbuffer *in, size_t len, const char *want, size_t n)
{
    char head[16];
    return len == n && evbuffer_copyout(in, head, n) == (ev_ssize_t)n && memcmp(head, want, n) == 0;
}

/* Whether the reply of LEN bytes at the front of IN (first byte TYPE) is
 * MISS's "missing" for a request of NKEYS keys. */
static int reply_missing(enum miss miss, struct evbuffer *in, size_t len, char type, size_t nkeys)
{
    int nil = type == '_' || reply_is(in, len, "$-1\r\n", 5) || reply_is(in, len, "*-1\r\n", 5);
    int empty = len == 4 && (type == '*' || type == '%' || type == '~') &&
                (reply_is(in, len, "*0\r\n", 4) || reply_is(in, len, "%0\r\n", 4) || reply_is(in, len, "~0\r\n", 4));
    char head[24] = "";
    switch (miss) {
    case MISS_NIL: return nil;
    case MISS_EMPTY: return empty;
    case MISS_NIL_OR_EMPTY: return nil || empty;
    case MISS_ZERO: return reply_is(in, len, ":0\r\n", 4);
    case MISS_TYPE_NONE: return reply_is(in, len, "+none\r\n", 7);
    case MISS_NO_TTL: return reply_is(in, len, ":-2\r\n", 5);
    case MISS_EMPTY_STRING: return reply_is(in, len, "$0\r\n\r\n", 6);
    case MISS_SCAN_END: return reply_is(in, len, "*2\r\n$1\r\n0\r\n*0\r\n", 15);
    case MISS_FEWER:
        if (type != ':')
            return 0;
        evbuffer_copyout(in, head, len < sizeof(head) - 1 ? len : sizeof(head) - 1);
        return strtoull(head + 1, NULL, 10) < nkeys;
    case MISS_ANY_NIL: {
        if (type != '*' && type != '~')
            return 0;
        struct evbuffer_ptr end;
        evbuffer_ptr_set(in, &end, len, EVBUFFER_PTR_SET);
        return evbuffer_search_range(in, "\r\n$-1\r\n", 7, NULL, &end).pos >= 0 ||
               evbuffer_search_range(in, "\r\n_\r\n", 5, NULL, &end).pos >= 0;
    }
    default: return 0;
    }
}

/* Whether write CMD (arguments Q of FRAME) replaces its keys' values whole,
 * with a reply that does not depend on them: then it needs no import. */
static int replaces_whole(const struct cmd_spec *cmd, struct evbuffer *frame, const struct resp_req *q)
{
    if (strcmp(cmd->name, "mset") == 0 || strcmp(cmd->name, "setex") == 0 || strcmp(cmd->name, "psetex") == 0)
        return 1;
    if (strcmp(cmd->name, "set") != 0)
        return 0;
    for (size_t i = 3; i < q->argc; i++) { /* NX, XX, GET and KEEPTTL depend on the old value */
        char opt[8];
        size_t n = resp_arg_copy(frame, &q->argv[i], opt, sizeof(opt) - 1);
        opt[n < sizeof(opt) - 1 ? n : sizeof(opt) - 1] = '\0';
        if (strcasecmp(opt, "nx") == 0 || strcasecmp(opt, "xx") == 0 || strcasecmp(opt, "get") == 0 ||
            strcasecmp(opt, "keepttl") == 0)
            return 0;
    }
    return 1;
}

/* ---- imports ---- */

enum fetch_why { FETCH_READ, FETCH_WRITE, FETCH_WALK };
enum key_state { K_ASKING, K_ABSENT, K_FAILED, K_SKIPPED, K_RESTORING, K_DONE };

struct fetch_key {
    char *name;
    size_t len;
    uint64_t fp;
    int64_t expire_ms;  /* unix ms to RESTORE with ABSTTL; 0 none; -2 absent */
    struct req *dump;   /* DUMP's answer, held for RESTORE */
    uint8_t state;
};

struct migrate_fetch {
    TAILQ_ENTRY(migrate_fetch) link;
    struct worker *w;
    uint8_t why;          /* enum fetch_why */
    uint8_t restoring;    /* the RESTOREs are out */
    struct req *r;        /* READ: the read to send again; WRITE: the held write */
    struct req_list waiters; /* requests that need one of its keys: they go on once it ends */
    unsigned pending;     /* its requests not yet answered */
    unsigned nkeys;
    unsigned nrestored;   /* keys the cluster took */
    size_t bytes;         /* DUMP payloads, for the walk's rate */
    uint64_t next_cursor; /* WALK: SCAN's cursor after this batch */
    struct fetch_key k[];
};
TAILQ_HEAD(fetch_list, migrate_fetch);

/* A worker's part: its connection to the standalone, its imports, and on
 * worker 0 the walk. */
struct migrate_worker {
    struct backend *source;
    struct fetch_list fetches;
    struct event *walk_timer;
    int walking;          /* a batch (or its SCAN) is out */
    int stopping;         /* the worker is leaving: nothing more is sent */
    uint64_t batch_us;    /* when it began */
    uint64_t logged;      /* keys walked at the last progress line */
};

static uint64_t wall_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
}

static struct migrate_worker *worker_state(struct worker *w)
{
    if (w->migrate == NULL && (w->migrate = calloc(1, sizeof(*w->migrate))))
        TAILQ_INIT(&w->migrate->fetches);
    return w->migrate;
}

static void source_reply(struct backend *b, struct req *r, struct evbuffer *in, size_t len, char type)
{
    req_complete_from(b->w, r, in, len, type);
}

static const struct backend_ops source_ops = {.reply = source_reply, .lost = backend_fail_lost};

/* W's connection to the standalone of its configuration, or NULL. */
static struct backend *source_of(struct worker *w)
{
    const struct conf_addr *a = w->conf->migration_source;
    struct migrate_worker *mw = worker_state(w);
    if (a == NULL || mw == NULL)
        return NULL;
    if (mw->source == NULL || mw->source->port != a->port || strcmp(mw->source->host, a->host) != 0) {
        mw->source = backend_get(w, &source_ops, a->host, a->port);
        if (mw->source)
            mw->source->source = 1;
    }
    return mw->source;
}

/* The import of W that is fetching FP, or NULL. */
static struct migrate_fetch *fetching(struct worker *w, uint64_t fp)
{
    struct migrate_fetch *f;
    if (w->migrate == NULL)
        return NULL;
    TAILQ_FOREACH(f, &w->migrate->fetches, link)
        for (unsigned i = 0; i < f->nkeys; i++)
            if (f->k[i].fp == fp)
                return f;
    return NULL;
}

static void fetch_step(struct migrate_fetch *f);

/* A request of F for key I (or -1), answered through SINK, with FRAME's
 * LEN bytes; NULL if out of memory. */
static struct req *sub_new(struct migrate_fetch *f, int i, const struct req_sink *sink)
{
    struct req *s = req_new(f->w, REQ_MIGRATE, sink);
    if (s) {
        s->fetch = f;
        s->part = (uint16_t)(i < 0 ? 0 : i);
    }
    return s;
}

/* Appends a bulk string of LEN bytes to OUT. */
static void add_bulk(struct evbuffer *out, const char *s, size_t len)
{
    char head[RESP_HEAD_MAX];
    evbuffer_add(out, head, resp_head(head, '$', len));
    evbuffer_add(out, s, len);
    evbuffer_add(out, "\r\n", 2);
}

/* The first byte of R's reply, and its integer when it is one. */
static char reply_int(struct req *r, long long *v)
{
    char line[32] = "";
    size_t n = evbuffer_copyout(r->reply, line, sizeof(line) - 1);
    line[n] = '\0';
    *v = line[0] == ':' ? strtoll(line + 1, NULL, 10) : 0;
    return line[0];
}

static void key_failed(struct migrate_fetch *f, struct fetch_key *k, const char *what, struct req *s)
{
    char line[160] = "";
    if (s)
        resp_first_line(s->reply, evbuffer_get_length(s->reply), line, sizeof(line));
    k->state = K_FAILED;
    atomic_fetch_add(&f->w->srv->migrate->count[MC_FAILED], 1);
    log_info("migration: %s of key '%.*s' failed: %s", what, (int)(k->len < 64 ? k->len : 64), k->name,
             line[0] ? line + 1 : "the standalone cannot be reached");
}

static void on_pttl(struct worker *w, struct req *s)
{
    struct migrate_fetch *f = s->fetch;
    struct fetch_key *k = &f->k[s->part];
    long long ms;
    char t = reply_int(s, &ms);
    if (t != ':') {
        if (k->state == K_ASKING)
            key_failed(f, k, "PTTL", s);
    } else if (ms == -2) {
        k->expire_ms = -2;
    } else if (ms >= 0) {
        k->expire_ms = (int64_t)(wall_us() / 1000 + (uint64_t)ms + (ms == 0)); /* 0 would mean none */
    }
    req_free(w, s);
    f->pending--;
    fetch_step(f);
}

static void on_dump(struct worker *w, struct req *s)
{
    struct migrate_fetch *f = s->fetch;
    struct fetch_key *k = &f->k[s->part];
    char first = 0;
    evbuffer_copyout(s->reply, &first, 1);
    size_t len = evbuffer_get_length(s->reply);
    if (first == '$' && len == 5) { /* $-1: no such key */
        req_free(w, s);
    } else if (first != '$') {
        if (k->state == K_ASKING)
            key_failed(f, k, "DUMP", s);
        req_free(w, s);
    } else {
        k->dump = s;
        f->bytes += len;
    }
    f->pending--;
    fetch_step(f);
}

static void on_restore(struct worker *w, struct req *s)
{
    struct migrate_fetch *f = s->fetch;
    struct fetch_key *k = &f->k[s->part];
    struct migrate *m = w->srv->migrate;
    char line[16] = "";
    evbuffer_copyout(s->reply, line, sizeof(line) - 1);
    if (line[0] == '+') {
        k->state = K_DONE;
        f->nrestored++;
        atomic_fetch_add(f->why == FETCH_WALK ? &m->count[MC_WALK_COPIED] : &m->count[MC_IMPORTED], 1);
    } else if (strncmp(line, "-BUSYKEY", 8) == 0) {
        k->state = K_DONE; /* the cluster has it already: its copy stands */
        f->nrestored++;
        atomic_fetch_add(&m->count[MC_PRESENT], 1);
    } else {
        key_failed(f, k, "RESTORE", s);
    }
    req_free(w, s);
    f->pending--;
    fetch_step(f);
}

static const struct req_sink pttl_sink = {.done = on_pttl};
static const struct req_sink dump_sink = {.done = on_dump};
static const struct req_sink restore_sink = {.done = on_restore};

/* Sends PTTL and DUMP of each key of F to the standalone. */
static void fetch_ask(struct migrate_fetch *f)
{
    struct backend *src = source_of(f->w);
    for (unsigned i = 0; i < f->nkeys; i++) {
        struct fetch_key *k = &f->k[i];
        struct req *pttl = src ? sub_new(f, (int)i, &pttl_sink) : NULL;
        struct req *dump = pttl ? sub_new(f, (int)i, &dump_sink) : NULL;
        if (dump) {
            evbuffer_add(pttl->buf, "*2\r\n$4\r\nPTTL\r\n", 14);
            add_bulk(pttl->buf, k->name, k->len);
            evbuffer_add(dump->buf, "*2\r\n$4\r\nDUMP\r\n", 14);
            add_bulk(dump->buf, k->name, k->len);
        }
        if (dump && backend_send(src, pttl) == 0) {
            f->pending++;
            if (backend_send(src, dump) == 0) {
                f->pending++;
                continue;
            }
            req_free(f->w, dump);
            key_failed(f, k, "DUMP", NULL);
            continue;
        }
        if (pttl)
            req_free(f->w, pttl);
        if (dump)
            req_free(f->w, dump);
        key_failed(f, k, "PTTL", NULL);
    }
}

/* Sends RESTORE for each key of F found on the standalone and still
 * missing from the written set (unless F is a write's, which marked its
 * keys itself), with its absolute expiry. */
static void fetch_restore(struct migrate_fetch *f)
{
    struct worker *w = f->w;
    struct migrate *m = w->srv->migrate;
    int stop = stopped(m) || w->migrate->stopping;
    f->restoring = 1;
    for (unsigned i = 0; i < f->nkeys; i++) {
        struct fetch_key *k = &f->k[i];
        struct req *dump = k->dump;
        k->dump = NULL;
        if (k->state != K_ASKING) {
        } else if (dump == NULL || k->expire_ms == -2) {
            k->state = K_ABSENT;
            atomic_fetch_add(&m->count[MC_ABSENT], 1);
        } else if (stop || (f->why != FETCH_WRITE && written(m, k->fp))) {
            /* Written since it was asked for: the cluster's copy is newer. */
            k->state = K_SKIPPED;
            atomic_fetch_add(&m->count[MC_SKIPPED_WRITTEN], 1);
        } else if (f->why == FETCH_READ && evbuffer_get_length(dump->reply) > w->conf->migration_max_value_size) {
            k->state = K_SKIPPED;
            atomic_fetch_add(&m->count[MC_TOO_LARGE], 1);
        } else {
            struct req *s = sub_new(f, (int)i, &restore_sink);
            if (s == NULL) {
                key_failed(f, k, "RESTORE", NULL);
            } else {
                char ttl[24];
                int n = snprintf(ttl, sizeof(ttl), "%" PRId64, k->expire_ms);
                evbuffer_add_printf(s->buf, "*%d\r\n$7\r\nRESTORE\r\n", k->expire_ms ? 5 : 4);
                add_bulk(s->buf, k->name, k->len);
                add_bulk(s->buf, ttl, (size_t)n);
                evbuffer_add_buffer(s->buf, dump->reply);
                if (k->expire_ms)
                    evbuffer_add(s->buf, "$6\r\nABSTTL\r\n", 12);
                k->state = K_RESTORING;
                f->pending++;
                route_send(w, s, (int)slot_of(k->name, k->len)); /* answered either way */
            }
        }
        if (dump)
            req_free(w, dump);
    }
}

static void walk_batch_done(struct worker *w, struct migrate_fetch *f);

/* R waited for an import of its worker: it goes on now. */
static void resume(struct worker *w, struct req *r)
{
    r->fetch = NULL;
    if (!req_wanted(r)) {
        req_fail(w, r, REQ_CLIENT_LEFT);
    } else if (w->migrate->stopping) {
        req_fail(w, r, REQ_SHUTTING_DOWN);
    } else if (r->miss) { /* a read: sent again, and answered whatever it gets */
        r->miss = 0;
        r->master_only = 1;
        r->redirects = 0;
        evbuffer_drain(r->reply, evbuffer_get_length(r->reply));
        route_send(w, r, r->slot);
    } else { /* a held write: dispatched again (router.h) */
        client_release_hold(r->client);
    }
}

/* F is over: whoever waited goes on, and F is freed. */
static void fetch_end(struct migrate_fetch *f)
{
    struct worker *w = f->w;
    TAILQ_REMOVE(&w->migrate->fetches, f, link);
    struct req *r;
    while ((r = TAILQ_FIRST(&f->waiters))) {
        TAILQ_REMOVE(&f->waiters, r, inflight);
        resume(w, r);
    }
    if (f->why == FETCH_WALK) {
        walk_batch_done(w, f);
    } else if (f->why == FETCH_WRITE) {
        f->r->miss = 0;
        resume(w, f->r);
    } else if (f->nrestored) {
        resume(w, f->r);
    } else { /* nothing came over: the cluster's answer stands */
        f->r->fetch = NULL;
        f->r->miss = 0;
        req_complete(w, f->r);
    }
    free(f);
}

static void fetch_step(struct migrate_fetch *f)
{
    if (f->pending)
        return;
    if (!f->restoring)
        fetch_restore(f);
    if (f->pending == 0)
        fetch_end(f);
}

/* A new import on W for WHY of NKEYS keys (their names NAMES bytes in all). */
static struct migrate_fetch *fetch_new(struct worker *w, enum fetch_why why, struct req *r, size_t nkeys, size_t names)
{
    struct migrate_worker *mw = worker_state(w);
    struct migrate_fetch *f = mw ? calloc(1, sizeof(*f) + nkeys * sizeof(f->k[0]) + names) : NULL;
    if (f == NULL)
        return NULL;
    f->w = w;
    f->why = (uint8_t)why;
    f->r = r;
    TAILQ_INIT(&f->waiters);
    TAILQ_INSERT_TAIL(&mw->fetches, f, link);
    if (r)
        r->fetch = f;
    return f;
}

/* Adds key NAME (LEN bytes, FP) to F, copied after its keys. */
static void fetch_add(struct migrate_fetch *f, const char *name, size_t len, uint64_t fp, char **room)
{
    struct fetch_key *k = &f->k[f->nkeys++];
    memcpy(*room, name, len);
    k->name = *room;
    k->len = len;
    k->fp = fp;
    *room += len;
}

static char *fetch_room(struct migrate_fetch *f, size_t nkeys)
{
    return (char *)&f->k[nkeys];
}

/* ---- keys of a request ---- */

struct keylist {
    size_t n;
    size_t total;          /* their bytes */
    const char *name[ROUTE_KEYS_ON_STACK];
    size_t len[ROUTE_KEYS_ON_STACK];
    uint64_t fp[ROUTE_KEYS_ON_STACK];
};

/* The keys of request frame FRAME (arguments Q, command CMD): at most
 * ROUTE_KEYS_ON_STACK of them, each at most MIGRATE_KEY_MAX bytes (longer
 * ones are left out and counted as failed). FRAME is made contiguous. */
static int keys_of(struct migrate *m, const struct cmd_spec *cmd, struct evbuffer *frame, const struct resp_req *q,
                   struct keylist *out)
{
    size_t idx[ROUTE_KEYS_ON_STACK];
    int n = cmd_keys(cmd, frame, q, idx, ROUTE_KEYS_ON_STACK);
    if (n < 0)
        return -1;
    if (n > ROUTE_KEYS_ON_STACK)
        n = ROUTE_KEYS_ON_STACK;
    /* Keys come before values (SET key value, MSET k v k v): only the
     * bytes up to the last key are made contiguous. */
    size_t upto = 0;
    for (int i = 0; i < n; i++)
        if (q->argv[idx[i]].off + q->argv[idx[i]].len > upto)
            upto = q->argv[idx[i]].off + q->argv[idx[i]].len;
    const char *flat = (const char *)evbuffer_pullup(frame, (ev_ssize_t)upto);
    out->n = out->total = 0;
    for (int i = 0; i < n && flat; i++) {
        const struct resp_arg *a = &q->argv[idx[i]];
        if (a->len > MIGRATE_KEY_MAX) {
            atomic_fetch_add(&m->count[MC_FAILED], 1);
            continue;
        }
        out->name[out->n] = flat + a->off;
        out->len[out->n] = a->len;
        out->fp[out->n] = fingerprint(flat + a->off, a->len);
        out->total += a->len;
        out->n++;
    }
    return 0;
}

/* ---- reads ---- */

/* How many keys request R has, read from its frame's "*N" (EXISTS: all
 * its arguments are keys); SIZE_MAX when its frame is not in R->buf. */
static size_t args_of(struct req *r)
{
    char head[24] = "";
    evbuffer_copyout(r->buf, head, sizeof(head) - 1);
    return head[0] == '*' ? (size_t)strtoull(head + 1, NULL, 10) - 1 : SIZE_MAX;
}

int migrate_missed(struct worker *w, struct req *r, struct evbuffer *in, size_t len, char type)
{
    struct migrate *m = w->srv->migrate;
    enum miss miss = (enum miss)r->miss;
    /* A hit costs this: the reply's first bytes against the table's
     * answer (EXISTS's count against its frame's head). */
    if (!active(w) || !reply_missing(miss, in, len, type, miss == MISS_FEWER ? args_of(r) : 0))
        return 0;
    /* The request's frame: a split command's part writes its own. */
    struct evbuffer *frame = r->buf, *made = NULL;
    if (evbuffer_get_length(r->buf) == 0 && r->sink && r->sink->frame) {
        if ((made = evbuffer_new()) == NULL || r->sink->frame(r, made) < 0) {
            if (made)
                evbuffer_free(made);
            return 0;
        }
        frame = made;
    }
    const struct conf *cf = w->conf;
    const struct resp_limits lim = {cf->max_bulk_len, cf->max_inline_len, cf->max_multibulk_len};
    struct resp_req q = {0};
    struct keylist keys;
    const struct cmd_spec *cmd = NULL;
    int took = 0;
    if (resp_req_scan(&q, frame, &lim, 0) == RESP_FRAME && (cmd = cmd_find(frame, &q)) &&
        reply_missing(miss, in, len, type, q.argc - 1) && keys_of(m, cmd, frame, &q, &keys) == 0) {
        took = 1;
        atomic_fetch_add(&m->count[MC_READS_MISSED], 1);
        netio_move(r->reply, in, len); /* the answer, should nothing come over */
        struct migrate_fetch *busy = NULL;
        size_t want = 0, names = 0;
        int stop = stopped(m);
        for (size_t i = 0; i < keys.n && !stop; i++) {
            struct migrate_fetch *f = fetching(w, keys.fp[i]);
            if (f) {
                busy = f;
                break;
            }
            if (written(m, keys.fp[i])) {
                keys.fp[i] = 0; /* the cluster's answer is the truth for it */
                continue;
            }
            want++;
            names += keys.len[i];
        }
        struct migrate_fetch *f = NULL;
        if (busy) { /* another import of this worker fetches one of its keys: wait for it */
            r->fetch = busy;
            TAILQ_INSERT_TAIL(&busy->waiters, r, inflight);
        } else if (want == 0 || stop || (f = fetch_new(w, FETCH_READ, r, want, names)) == NULL) {
            r->miss = 0;
            req_complete(w, r);
        } else {
            char *room = fetch_room(f, want);
            for (size_t i = 0; i < keys.n; i++)
                if (keys.fp[i])
                    fetch_add(f, keys.name[i], keys.len[i], keys.fp[i], &room);
            fetch_ask(f);
            fetch_step(f);
        }
    }
    if (!took)
        r->miss = 0;
    resp_req_deinit(&q);
    if (made)
        evbuffer_free(made);
    return took;
}

/* ---- writes ---- */

static int is_write(const struct cmd_spec *cmd)
{
    /* Scripts and functions (but EVAL_RO and FCALL_RO) may write any key
     * they declare. */
    return (cmd->flags & CMDF_WRITE) || ((cmd->acl & CMD_ACL_SCRIPTING) && !(cmd->flags & CMDF_READONLY));
}

int migrate_before_routing(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    struct worker *w = c->w;
    struct migrate *m = w->srv->migrate;
    if (!is_write(cmd)) {
        r->miss = (uint8_t)miss_of(cmd);
        return 0;
    }
    if (strcmp(cmd->name, "flushall") == 0 || strcmp(cmd->name, "flushdb") == 0) {
        pthread_mutex_lock(&m->lock);
        if (!m->flushed)
            log_warning("migration: %s from client %s: the standalone's keys are no longer copied", cmd->name,
                        c->addr);
        m->flushed = 1;
        pthread_mutex_unlock(&m->lock);
        return 0;
    }
    if (cmd->nkeyspecs == 0)
        return 0;
    struct keylist keys;
    if (keys_of(m, cmd, r->buf, q, &keys) < 0 || keys.n == 0)
        return 0;
    for (size_t i = 0; i < keys.n; i++) {
        struct migrate_fetch *f = fetching(w, keys.fp[i]);
        if (f) { /* its old copy is on its way: the write goes after it */
            atomic_fetch_add(&m->count[MC_WRITES_WAITED], 1);
            c->hold = r;
            r->fetch = f;
            TAILQ_INSERT_TAIL(&f->waiters, r, inflight);
            return 1;
        }
    }
    /* Marked before the import starts: a read's or the walk's import that
     * checks later leaves these keys to this write. */
    int whole = replaces_whole(cmd, r->buf, q), rc = 0;
    size_t want = 0, names = 0;
    pthread_mutex_lock(&m->lock);
    int stop = m->full || m->flushed;
    for (size_t i = 0; i < keys.n && !stop && rc >= 0; i++) {
        rc = mark_written(m, keys.fp[i]);
        if (rc == 1 && !whole) {
            want++;
            names += keys.len[i];
        } else {
            keys.fp[i] = 0;
        }
    }
    pthread_mutex_unlock(&m->lock);
    struct migrate_fetch *f;
    if (stop || rc < 0 || want == 0 || (f = fetch_new(w, FETCH_WRITE, r, want, names)) == NULL)
        return 0;
    atomic_fetch_add(&m->count[MC_WRITES_WAITED], 1);
    char *room = fetch_room(f, want);
    for (size_t i = 0; i < keys.n; i++)
        if (keys.fp[i])
            fetch_add(f, keys.name[i], keys.len[i], keys.fp[i], &room);
    c->hold = r;
    fetch_ask(f);
    fetch_step(f); /* may dispatch R already, if nothing could be asked */
    return 1;
}

/* ---- the walk (copy mode, worker 0) ---- */

static void walk_next(struct worker *w, uint64_t after_us);

static void on_walk_timer(evutil_socket_t fd, short what, void *arg);

static int walking_allowed(struct worker *w)
{
    struct migrate *m = w->srv->migrate;
    return w->id == 0 && active(w) && w->conf->migration_mode == MIGRATION_COPY && !atomic_load(&m->walk_done) &&
           !stopped(m);
}

static void walk_log(struct worker *w, const char *what)
{
    struct migrate *m = w->srv->migrate;
    char src[CONF_HOST_MAX + 16] = "";
    if (w->conf->migration_source)
        conf_addr_str(w->conf->migration_source, src, sizeof(src));
    unsigned long long total = atomic_load(&m->total), scanned = atomic_load(&m->count[MC_WALK_SCANNED]);
    log_notice("migration: %s: %llu keys walked of about %llu on %s; copied %llu, already in the cluster %llu, "
               "written through respgate %llu, failed %llu",
               what, scanned, total > scanned ? total : scanned, src, (unsigned long long)atomic_load(&m->count[MC_WALK_COPIED]),
               (unsigned long long)atomic_load(&m->count[MC_PRESENT]), (unsigned long long)atomic_load(&m->count[MC_SKIPPED_WRITTEN]),
               (unsigned long long)atomic_load(&m->count[MC_FAILED]));
}

static void walk_batch_done(struct worker *w, struct migrate_fetch *f)
{
    struct migrate *m = w->srv->migrate;
    struct migrate_worker *mw = w->migrate;
    mw->walking = 0;
    atomic_fetch_add(&m->count[MC_WALK_SCANNED], f->nkeys);
    atomic_store(&m->cursor, f->next_cursor);
    if (f->next_cursor == 0) {
        atomic_store(&m->walk_done, 1);
        walk_log(w, "walk done");
        return;
    }
    if (atomic_load(&m->count[MC_WALK_SCANNED]) - mw->logged >= WALK_LOG_EVERY) {
        mw->logged = atomic_load(&m->count[MC_WALK_SCANNED]);
        walk_log(w, "walking");
    }
    /* The next batch starts when this one's keys (SCAN's COUNT, which its
     * replies come near) and bytes fit the rates. */
    uint64_t keys_us = (uint64_t)WALK_BATCH * 1000000 / w->conf->migration_rate_keys;
    uint64_t bytes_us = (uint64_t)f->bytes * 1000000 / w->conf->migration_rate_bytes;
    uint64_t due = keys_us > bytes_us ? keys_us : bytes_us, spent = wall_us() - mw->batch_us;
    walk_next(w, due > spent ? due - spent : 0);
}

/* SCAN's reply in S: its cursor and keys start a batch. */
static void on_scan(struct worker *w, struct req *s)
{
    struct migrate *m = w->srv->migrate;
    struct migrate_worker *mw = w->migrate;
    size_t len = evbuffer_get_length(s->reply);
    const char *p = (const char *)evbuffer_pullup(s->reply, -1), *end = p + len;
    unsigned long long cursor = 0, n = 0;
    int ok = p && len > 4 && memcmp(p, "*2\r\n$", 5) == 0;
    if (ok) { /* *2 $N cursor *K $N key ... */
        p = strchr(p + 5, '\n') + 1;
        cursor = strtoull(p, NULL, 10);
        p = strchr(p, '\n') + 1;
        ok = *p == '*' && (n = strtoull(p + 1, NULL, 10)) <= 100000;
        p = strchr(p, '\n') + 1;
    }
    struct migrate_fetch *f = NULL;
    if (ok && walking_allowed(w) && (f = fetch_new(w, FETCH_WALK, NULL, n, len))) {
        char *room = fetch_room(f, n);
        size_t nkeys = 0;
        for (unsigned long long i = 0; i < n && p < end && *p == '$'; i++) {
            size_t klen = strtoull(p + 1, NULL, 10);
            const char *key = strchr(p, '\n') + 1;
            if (key + klen + 2 > end)
                break;
            uint64_t fp = fingerprint(key, klen);
            nkeys++;
            if (written(m, fp) || klen > MIGRATE_KEY_MAX)
                atomic_fetch_add(klen > MIGRATE_KEY_MAX ? &m->count[MC_FAILED] : &m->count[MC_SKIPPED_WRITTEN], 1);
            else
                fetch_add(f, key, klen, fp, &room);
            p = key + klen + 2;
        }
        f->next_cursor = cursor;
        /* Keys left to another import were still walked. */
        atomic_fetch_add(&m->count[MC_WALK_SCANNED], nkeys - f->nkeys);
        req_free(w, s);
        fetch_ask(f);
        fetch_step(f);
        return;
    }
    if (!ok) {
        char line[160] = "";
        resp_first_line(s->reply, len, line, sizeof(line));
        log_warning("migration: SCAN on the standalone failed (%s); the walk tries again in %d ms",
                    line[0] == '-' ? line + 1 : "an unexpected reply", WALK_RETRY_MS);
    }
    req_free(w, s);
    mw->walking = 0;
    walk_next(w, WALK_RETRY_MS * 1000);
}

static void on_dbsize(struct worker *w, struct req *s)
{
    long long n;
    if (reply_int(s, &n) == ':' && n >= 0)
        atomic_store(&w->srv->migrate->total, (uint64_t)n);
    req_free(w, s);
    walk_log(w, "walk starts");
}

static const struct req_sink scan_sink = {.done = on_scan};
static const struct req_sink dbsize_sink = {.done = on_dbsize};

static void on_walk_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    struct migrate *m = w->srv->migrate;
    struct migrate_worker *mw = w->migrate;
    struct backend *src = source_of(w);
    if (mw->walking || mw->stopping || !walking_allowed(w) || src == NULL)
        return;
    if (w->map == NULL) { /* RESTORE needs to know where each slot is */
        walk_next(w, WALK_RETRY_MS * 1000);
        return;
    }
    if (atomic_load(&m->total) == 0) {
        struct req *d = req_new(w, REQ_MIGRATE, &dbsize_sink);
        if (d) {
            evbuffer_add(d->buf, "*1\r\n$6\r\nDBSIZE\r\n", 16);
            if (backend_send(src, d) < 0)
                req_free(w, d);
        }
    }
    struct req *s = req_new(w, REQ_MIGRATE, &scan_sink);
    if (s == NULL) {
        walk_next(w, WALK_RETRY_MS * 1000);
        return;
    }
    char cursor[24], count[24];
    int cl = snprintf(cursor, sizeof(cursor), "%llu", (unsigned long long)atomic_load(&m->cursor));
    uint64_t per = w->conf->migration_rate_keys < WALK_BATCH ? w->conf->migration_rate_keys : WALK_BATCH;
    int nl = snprintf(count, sizeof(count), "%llu", (unsigned long long)per);
    evbuffer_add(s->buf, "*4\r\n$4\r\nSCAN\r\n", 14);
    add_bulk(s->buf, cursor, (size_t)cl);
    evbuffer_add(s->buf, "$5\r\nCOUNT\r\n", 11);
    add_bulk(s->buf, count, (size_t)nl);
    if (backend_send(src, s) < 0) {
        req_free(w, s);
        walk_next(w, WALK_RETRY_MS * 1000);
        return;
    }
    mw->walking = 1;
    mw->batch_us = wall_us();
}

static void walk_next(struct worker *w, uint64_t after_us)
{
    struct migrate_worker *mw = w->migrate;
    if (mw->stopping || (mw->walk_timer == NULL && (mw->walk_timer = evtimer_new(w->base, on_walk_timer, w)) == NULL))
        return;
    struct timeval tv = {(time_t)(after_us / 1000000), (suseconds_t)(after_us % 1000000)};
    evtimer_add(mw->walk_timer, &tv);
}

void migrate_worker_conf(struct worker *w)
{
    struct migrate_worker *mw;
    if (w->id != 0 || !walking_allowed(w) || (mw = worker_state(w)) == NULL)
        return;
    if (!mw->walking && (mw->walk_timer == NULL || !evtimer_pending(mw->walk_timer, NULL)))
        walk_next(w, 0);
}

void migrate_worker_stop(struct worker *w)
{
    struct migrate_worker *mw = w->migrate;
    if (mw == NULL)
        return;
    mw->stopping = 1;
    if (mw->walk_timer)
        event_free(mw->walk_timer);
    mw->walk_timer = NULL;
}

void migrate_worker_free(struct worker *w)
{
    struct migrate_worker *mw = w->migrate;
    if (mw == NULL)
        return;
    /* Imports end as their requests fail with the backends; none should
     * be left, but whatever is goes here. */
    struct migrate_fetch *f;
    while ((f = TAILQ_FIRST(&mw->fetches))) {
        TAILQ_REMOVE(&mw->fetches, f, link);
        for (unsigned i = 0; i < f->nkeys; i++)
            if (f->k[i].dump)
                req_free(w, f->k[i].dump);
        free(f);
    }
    free(mw);
    w->migrate = NULL;
}

/* ---- what INFO and /metrics show ---- */

/* The walk's keys still to visit, estimated from the standalone's DBSIZE. */
static unsigned long long walk_left(struct migrate *m)
{
    uint64_t total = atomic_load(&m->total), scanned = atomic_load(&m->count[MC_WALK_SCANNED]);
    return atomic_load(&m->walk_done) || total < scanned ? 0 : (unsigned long long)(total - scanned);
}

void migrate_info(struct server *s, struct evbuffer *out)
{
    struct migrate *m = s->migrate;
    struct conf *cf = server_conf(s);
    static const char *const modes[] = {"off", "read-through", "copy"};
    if (m && (cf->migration_mode != MIGRATION_OFF || m->state_path)) {
        pthread_mutex_lock(&m->lock);
        size_t nwritten = m->n;
        int flushed = m->flushed, full = m->full;
        pthread_mutex_unlock(&m->lock);
        evbuffer_add_printf(out, "migration_mode:%s\r\nmigration_stopped:%s\r\n", modes[cf->migration_mode],
                            flushed ? "flushed" : full ? "max_written_keys" : "no");
        for (int i = 0; i < MC_COUNT; i++)
            evbuffer_add_printf(out, "migration_%s:%llu\r\n", count_names[i],
                                (unsigned long long)atomic_load(&m->count[i]));
        evbuffer_add_printf(out,
                            "migration_written_keys:%zu\r\nmigration_walk_cursor:%llu\r\nmigration_walk_done:%d\r\n"
                            "migration_walk_left_estimate:%llu\r\n",
                            nwritten, (unsigned long long)atomic_load(&m->cursor), atomic_load(&m->walk_done),
                            walk_left(m));
    }
    conf_unref(cf);
}

void migrate_metrics(struct server *s, struct evbuffer *out)
{
    struct migrate *m = s->migrate;
    if (m == NULL)
        return;
    evbuffer_add_printf(out, "# HELP respgate_migration_keys_total Keys the migration from a standalone Redis "
                             "handled, by outcome (migrate.h).\n# TYPE respgate_migration_keys_total counter\n");
    for (int i = 0; i < MC_COUNT; i++)
        evbuffer_add_printf(out, "respgate_migration_keys_total{outcome=\"%s\"} %llu\n", count_names[i],
                            (unsigned long long)atomic_load(&m->count[i]));
    pthread_mutex_lock(&m->lock);
    size_t n = m->n;
    pthread_mutex_unlock(&m->lock);
    evbuffer_add_printf(out, "# HELP respgate_migration_written_keys Keys written during the migration, never copied.\n"
                             "# TYPE respgate_migration_written_keys gauge\nrespgate_migration_written_keys %zu\n"
                             "# HELP respgate_migration_walk_left Keys the walk has still to visit, estimated.\n"
                             "# TYPE respgate_migration_walk_left gauge\nrespgate_migration_walk_left %llu\n",
                        n, walk_left(m));
}
