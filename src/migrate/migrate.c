/*
 * migrate: a standalone Redis's keys into the cluster, see migrate.h.
 *
 * An import (struct migrate_fetch) runs on one worker: for each key, PTTL
 * and DUMP go to the standalone on the worker's connection to it; once all
 * are answered, each key found goes to its master as RESTORE key ms
 * payload ABSTTL (the payload is DUMP's reply as it came, a bulk string);
 * once those are answered, whoever asked goes on.
 *
 * The workers share two sets of key fingerprints under one mutex, taken
 * only while a migration runs, by writes, misses and imports (never by a
 * read that hits): the keys written during the migration (each appended
 * to the ".keys" file before its write is sent, so a killed respgate
 * forgets none), and the keys an import is fetching right now. A key is
 * claimed by one import at a time: a request that needs a key another
 * import has claimed waits for it (on its own worker, until that import
 * ends; for another worker's, a few milliseconds at a time), and claiming
 * and marking written happen under the lock together, so no old copy can
 * be restored after a write to its key was let through.
 */
#include "migrate/migrate.h"
#include "base/clock.h"

#include "conn/backend.h"
#include "conn/client.h"
#include "model/cmd.h"
#include "model/conf.h"
#include "base/fpset.h"
#include "base/log.h"
#include "loop/metrics.h"
#include "base/netio.h"
#include "loop/req.h"
#include "base/resp.h"
#include "path/route.h"
#include "base/slot.h"
#include "loop/worker.h"

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
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* Keys longer than this are not imported (counted as failed): a key is
 * copied into every frame an import sends. */
#define MIGRATE_KEY_MAX 65536
/* Keys one import fetches at most (a request's index among them is 16 bits). */
#define FETCH_KEYS_MAX 65535
/* Keys the walk asks SCAN for at a time. */
#define WALK_BATCH 100
/* A progress line every this many keys walked. */
#define WALK_LOG_EVERY 10000
/* How long the walk waits after the standalone failed it... */
#define WALK_RETRY_MS 1000
/* ... and how many times it tries a batch whose keys failed before it
 * moves on (logged). */
#define WALK_TRIES 10
/* How often a request waiting for another worker's import looks again. */
#define CROSS_WAIT_US 2000
/* Keys each worker remembers finding in the cluster (a read's or a write's
 * import: RESTORE answered OK or BUSYKEY), so that a field's miss on a key
 * the cluster has (HGET, SISMEMBER) does not fetch it again; lossy. */
#define PRESENT_SLOTS 65536

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

/* migration.mode's values, by enum migration_mode. */
static const char *const mode_names[] = {"off", "read-through", "copy"};

/* Why copying stopped for good, if it did (saved in the state file). */
enum migrate_stop { STOP_NO = 0, STOP_FLUSHED, STOP_FULL, STOP_UNSAVED };
static const char *const stop_names[] = {"no", "flushed", "max_written_keys", "state_file"};

struct migrate {
    pthread_mutex_t lock;     /* guards the two sets and stop */
    struct fpset written;     /* keys written during the migration */
    struct fpset claimed;     /* keys an import is fetching now */
    size_t max;               /* migration.max_written_keys */
    int stop;                 /* enum migrate_stop */
    atomic_int ready;         /* the state files are open: a migration may run (its mode on) */
    char *state_path;         /* migration.state_file as first opened, NULL = none yet */
    int keys_fd;              /* its ".keys" twin, open for appending; -1 */
    struct event *save_timer;
    /* The walk's progress, published by worker 0, saved by the control thread. */
    atomic_uint_fast64_t cursor;
    atomic_int walk_done;
    atomic_uint_fast64_t total;  /* the standalone's DBSIZE when the walk began, 0 unknown */
    atomic_uint_fast64_t count[MC_COUNT];
};

/* The process's one migration (one state file): made by migrate_init on
 * the control thread before the workers start, freed by migrate_free
 * after they stopped; NULL outside, and in a program that never asks. */
static struct migrate *migration;

/* Stops copying for good, for WHY (logged once). M->lock held. */
static void stop_copying(struct migrate *m, enum migrate_stop why, const char *say)
{
    if (m->stop == STOP_NO)
        log_error("migration: %s; nothing more is copied from the standalone", say);
    if (m->stop == STOP_NO || why == STOP_FLUSHED)
        m->stop = (int)why;
}

static int stopped(struct migrate *m)
{
    pthread_mutex_lock(&m->lock);
    int s = m->stop != STOP_NO;
    pthread_mutex_unlock(&m->lock);
    return s;
}

/* Appends the N fingerprints FPS to the ".keys" file: before the writes
 * that marked them are sent, so that a killed respgate forgets none. A
 * failure stops copying (a restart could no longer tell those keys). */
static void append_written(struct migrate *m, const uint64_t *fps, size_t n)
{
    size_t len = n * sizeof(*fps), done = 0;
    while (done < len) {
        ssize_t put = write(m->keys_fd, (const char *)fps + done, len - done);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0) {
            char say[300];
            snprintf(say, sizeof(say), "cannot append to %s.keys (%s)", m->state_path,
                     put < 0 ? strerror(errno) : "nothing written");
            pthread_mutex_lock(&m->lock);
            stop_copying(m, STOP_UNSAVED, say);
            pthread_mutex_unlock(&m->lock);
            return;
        }
        done += (size_t)put;
    }
}

/* Marks FP written. Returns 1 if it was not yet, 0 if it was, -1 if it
 * cannot be (copying stops then). M->lock held. */
static int mark_written(struct migrate *m, uint64_t fp)
{
    if (fpset_has(&m->written, fp))
        return 0;
    if (m->written.n >= m->max) {
        char say[200];
        snprintf(say, sizeof(say), "migration.max_written_keys (%zu) keys were written during the migration "
                                   "(raise it and restart to go on)", m->max);
        stop_copying(m, STOP_FULL, say);
        return -1;
    }
    if (fpset_add(&m->written, fp) < 0) {
        stop_copying(m, STOP_FULL, "out of memory remembering a written key");
        return -1;
    }
    return 1;
}

/* ---- the state file ---- */

static void on_save(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    migrate_save();
}

/* Reads the state file's "name value" lines into M. Returns 0 (a missing
 * file is a new migration), or -errno. */
static int load_state(struct migrate *m)
{
    FILE *f = fopen(m->state_path, "r");
    if (f == NULL)
        return errno == ENOENT ? 0 : -errno;
    char name[32];
    unsigned long long v;
    while (fscanf(f, "%31s %llu", name, &v) == 2) {
        if (strcmp(name, "cursor") == 0)
            atomic_store(&m->cursor, v);
        else if (strcmp(name, "walk_done") == 0)
            atomic_store(&m->walk_done, v != 0);
        else if (strcmp(name, "stop") == 0 && v < sizeof(stop_names) / sizeof(stop_names[0]))
            m->stop = v == STOP_FLUSHED ? STOP_FLUSHED : STOP_NO; /* the others may go with a restart */
        else if (strcmp(name, "total") == 0)
            atomic_store(&m->total, v);
        for (int i = 0; i < MC_COUNT; i++)
            if (strcmp(name, count_names[i]) == 0)
                atomic_store(&m->count[i], v);
    }
    fclose(f);
    return 0;
}

/* Loads the written keys of M's ".keys" file and opens it for appending;
 * a record cut short (a crash mid-write) is cut off. Returns 0, or -errno. */
static int load_keys(struct migrate *m)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s.keys", m->state_path);
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    uint64_t buf[4096];
    ssize_t got;
    size_t rest = 0, whole = 0;
    while ((got = read(fd, (char *)buf + rest, sizeof(buf) - rest)) > 0) {
        size_t have = rest + (size_t)got, n = have / sizeof(uint64_t);
        for (size_t i = 0; i < n; i++)
            if (buf[i] && fpset_add(&m->written, buf[i]) < 0) {
                close(fd);
                return -ENOMEM;
            }
        whole += n;
        rest = have % sizeof(uint64_t);
        memmove(buf, (char *)buf + n * sizeof(uint64_t), rest);
    }
    if (got < 0 || (rest && ftruncate(fd, (off_t)(whole * sizeof(uint64_t))) < 0)) {
        int e = errno;
        close(fd);
        return -e;
    }
    m->keys_fd = fd;
    return 0;
}

static void make_miss_table(void);
static pthread_once_t miss_once = PTHREAD_ONCE_INIT;

/* Opens S's migration state at PATH: the written keys, the walk's cursor
 * and the counts; a migration may run from then on. Returns 0, or -1
 * after logging why (nothing is kept then). Control thread. */
static int open_state(struct migrate *m, struct event_base *base, const char *path)
{
    if ((m->state_path = strdup(path)) == NULL)
        return -1;
    int rc = load_keys(m);
    if (rc < 0)
        log_error("migration.state_file: cannot read %s.keys: %s", path, strerror(-rc));
    else if ((rc = load_state(m)) < 0)
        log_error("migration.state_file: cannot read %s: %s", path, strerror(-rc));
    else if ((m->save_timer = event_new(base, -1, EV_PERSIST, on_save, NULL)) == NULL)
        rc = -1;
    if (rc < 0) {
        if (m->keys_fd >= 0)
            close(m->keys_fd);
        m->keys_fd = -1;
        fpset_clear(&m->written);
        for (int i = 0; i < MC_COUNT; i++)
            atomic_store(&m->count[i], 0);
        atomic_store(&m->cursor, 0);
        atomic_store(&m->walk_done, 0);
        atomic_store(&m->total, 0);
        m->stop = STOP_NO;
        free(m->state_path);
        m->state_path = NULL;
        return -1;
    }
    struct timeval second = {1, 0};
    event_add(m->save_timer, &second);
    if (m->written.n || atomic_load(&m->cursor))
        log_notice("migration: %zu written keys and walk cursor %llu%s read from %s", m->written.n,
                   (unsigned long long)atomic_load(&m->cursor), atomic_load(&m->walk_done) ? " (walk done)" : "",
                   m->state_path);
    atomic_store_explicit(&m->ready, 1, memory_order_release);
    return 0;
}

int migrate_init(struct event_base *base, const struct conf *conf)
{
    struct migrate *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -1;
    pthread_once(&miss_once, make_miss_table);
    pthread_mutex_init(&m->lock, NULL);
    m->keys_fd = -1;
    m->max = conf->migration_max_written_keys;
    migration = m;
    return conf->migration_state_file ? open_state(m, base, conf->migration_state_file) : 0;
}

int migrate_prepare(struct event_base *base, const struct conf *conf)
{
    struct migrate *m = migration;
    if (m == NULL || conf->migration_state_file == NULL)
        return 0;
    if (!atomic_load(&m->ready))
        return open_state(m, base, conf->migration_state_file);
    if (strcmp(conf->migration_state_file, m->state_path) != 0)
        log_warning("migration.state_file: changed, but respgate keeps %s until a restart", m->state_path);
    return 0;
}

void migrate_save(void)
{
    struct migrate *m = migration;
    if (m == NULL || !atomic_load(&m->ready))
        return;
    pthread_mutex_lock(&m->lock);
    int stop = m->stop;
    pthread_mutex_unlock(&m->lock);
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.new", m->state_path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        log_error("migration.state_file: cannot write %s: %s", tmp, strerror(errno));
        return;
    }
    fprintf(f, "cursor %llu\nwalk_done %d\nstop %d\ntotal %llu\n", (unsigned long long)atomic_load(&m->cursor),
            atomic_load(&m->walk_done), stop, (unsigned long long)atomic_load(&m->total));
    for (int i = 0; i < MC_COUNT; i++)
        fprintf(f, "%s %llu\n", count_names[i], (unsigned long long)atomic_load(&m->count[i]));
    if (fclose(f) != 0 || rename(tmp, m->state_path) != 0)
        log_error("migration.state_file: cannot write %s: %s", m->state_path, strerror(errno));
}

void migrate_free(void)
{
    struct migrate *m = migration;
    if (m == NULL)
        return;
    migrate_save();
    if (m->save_timer)
        event_free(m->save_timer);
    if (m->keys_fd >= 0)
        close(m->keys_fd);
    fpset_clear(&m->written);
    fpset_clear(&m->claimed);
    free(m->state_path);
    pthread_mutex_destroy(&m->lock);
    free(m);
    migration = NULL;
}

void migrate_conf_changed(const struct conf *conf, const struct conf *old)
{
    struct migrate *m = migration;
    int was = old ? old->migration_mode : MIGRATION_OFF;
    if (m == NULL || conf->migration_mode == was)
        return;
    char src[CONF_HOST_MAX + 16] = "";
    if (conf->migration_source)
        conf_addr_str(conf->migration_source, src, sizeof(src));
    if (conf->migration_mode != MIGRATION_OFF && !atomic_load(&m->ready))
        return; /* conf.c requires state_file, and migrate_prepare opened it */
    pthread_mutex_lock(&m->lock);
    size_t n = m->written.n;
    int stop = m->stop;
    pthread_mutex_unlock(&m->lock);
    if (conf->migration_mode == MIGRATION_OFF) {
        log_notice("migration: off (was %s); keys written from now on are not remembered", mode_names[was]);
        return;
    }
    if (old && was == MIGRATION_OFF && n)
        log_warning("migration: %s again; keys written while it was off were not remembered, and a deleted one may "
                    "come back from the standalone", mode_names[conf->migration_mode]);
    log_notice("migration: %s from %s (%zu keys remembered as written%s%s)", mode_names[conf->migration_mode], src, n,
               stop ? "; copying stopped: " : "", stop ? stop_names[stop] : "");
}

/* Whether W runs a migration now. */
static int active(const struct worker *w)
{
    return w->conf->migration_mode >= MIGRATION_READ_THROUGH && migration &&
           atomic_load_explicit(&migration->ready, memory_order_acquire);
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

/* A nil: "$-1", "*-1" or RESP3's "_". */
static int reply_nil(struct evbuffer *in, size_t len, char type)
{
    return type == '_' || reply_is(in, len, "$-1\r\n", 5) || reply_is(in, len, "*-1\r\n", 5);
}

/* An empty array, map or set: "*0", "%0" or "~0". */
static int reply_empty(struct evbuffer *in, size_t len, char type)
{
    char head[4];
    return len == 4 && (type == '*' || type == '%' || type == '~') && evbuffer_copyout(in, head, 4) == 4 &&
           memcmp(head + 1, "0\r\n", 3) == 0;
}

/* Whether the reply of LEN bytes at the front of IN (first byte TYPE) is
 * MISS's "missing" for a request of NKEYS keys. */
static int reply_missing(enum miss miss, struct evbuffer *in, size_t len, char type, size_t nkeys)
{
    char head[24] = "";
    switch (miss) {
    case MISS_NIL: return reply_nil(in, len, type);
    case MISS_EMPTY: return reply_empty(in, len, type);
    case MISS_NIL_OR_EMPTY: return reply_nil(in, len, type) || reply_empty(in, len, type);
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
        /* A nil element: $-1, _, or GEOPOS's *-1 in RESP2. */
        return evbuffer_search_range(in, "\r\n$-1\r\n", 7, NULL, &end).pos >= 0 ||
               evbuffer_search_range(in, "\r\n_\r\n", 5, NULL, &end).pos >= 0 ||
               evbuffer_search_range(in, "\r\n*-1\r\n", 7, NULL, &end).pos >= 0;
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
        if (resp_arg_is(frame, q, i, "nx") || resp_arg_is(frame, q, i, "xx") || resp_arg_is(frame, q, i, "get") ||
            resp_arg_is(frame, q, i, "keepttl"))
            return 0;
    }
    return 1;
}

/* ---- the keys of a request ---- */

struct keyref {
    const char *name;
    size_t len;
    uint64_t fp;             /* 0 once left out */
};

struct keylist {
    size_t n;
    struct keyref *k;        /* stack, or allocated past ROUTE_KEYS_ON_STACK */
    struct keyref stack[ROUTE_KEYS_ON_STACK];
};

/* Room in L for N keys. Returns 0, or -1 if out of memory. */
static int keylist_init(struct keylist *l, size_t n)
{
    l->n = 0;
    l->k = n <= ROUTE_KEYS_ON_STACK ? l->stack : malloc(n * sizeof(*l->k));
    return l->k ? 0 : -1;
}

static void keylist_free(struct keylist *l)
{
    if (l->k != l->stack)
        free(l->k);
}

/* Adds key NAME (LEN bytes) to L; a key too long to import is left out
 * and counted as failed. */
static void keylist_add(struct migrate *m, struct keylist *l, const char *name, size_t len)
{
    if (len > MIGRATE_KEY_MAX) {
        atomic_fetch_add(&m->count[MC_FAILED], 1);
        return;
    }
    l->k[l->n++] = (struct keyref){name, len, fpset_fingerprint(name, len)};
}

/* The keys of request frame FRAME (arguments Q, command CMD) into L (its
 * names are views into FRAME, made contiguous). Returns 0, or -1 (L empty)
 * for a frame malformed for its key specs or out of memory. */
static int keys_of(struct migrate *m, const struct cmd_spec *cmd, struct evbuffer *frame, const struct resp_req *q,
                   struct keylist *l)
{
    size_t stack[ROUTE_KEYS_ON_STACK], *idx;
    int n = route_find_keys(frame, cmd, q, stack, &idx);
    if (n < 0 || keylist_init(l, (size_t)n) < 0) {
        if (idx != stack)
            free(idx);
        return keylist_init(l, 0), -1;
    }
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *name = resp_arg_view(frame, q, idx[i], &len);
        if (name)
            keylist_add(m, l, name, len);
    }
    if (idx != stack)
        free(idx);
    return 0;
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
    unsigned nrestored;   /* keys the cluster took or had */
    unsigned nfailed;
    size_t bytes;         /* DUMP payloads, for the walk's rate */
    uint64_t next_cursor; /* WALK: SCAN's cursor after this batch ... */
    size_t walked;        /* ... and the keys SCAN returned */
    struct fetch_key k[];
};
TAILQ_HEAD(fetch_list, migrate_fetch);

/* A worker's part: its connection to the standalone, its imports, the
 * requests waiting for another worker's import, and on worker 0 the walk. */
struct migrate_worker {
    struct backend *source;
    struct fetch_list fetches;
    struct migrate_fetch *cross; /* holds (as its waiters) requests waiting for another worker's import */
    struct event *cross_timer;
    uint64_t *present;    /* PRESENT_SLOTS fingerprints of keys found in the cluster, lossy */
    struct event *walk_timer;
    int walking;          /* a batch (or its SCAN) is out */
    int stopping;         /* the worker is leaving: nothing more is sent */
    unsigned tries;       /* times the batch at the cursor failed */
    uint64_t batch_us;    /* when the batch began (clock_us) */
    uint64_t next_us;     /* the next batch starts no sooner (clock_us), however early its timer runs */
    uint64_t logged;      /* keys walked at the last progress line */
};

static struct migrate_worker *part_of(struct worker *w)
{
    struct migrate_worker *mw = w->migrate;
    if (mw)
        return mw;
    if ((mw = calloc(1, sizeof(*mw))) == NULL || (mw->present = calloc(PRESENT_SLOTS, sizeof(uint64_t))) == NULL ||
        (mw->cross = calloc(1, sizeof(*mw->cross))) == NULL) {
        if (mw) {
            free(mw->present);
            free(mw);
        }
        return NULL;
    }
    TAILQ_INIT(&mw->fetches);
    TAILQ_INIT(&mw->cross->waiters);
    mw->cross->w = w;
    return w->migrate = mw;
}

static int known_present(const struct migrate_worker *mw, uint64_t fp)
{
    return mw->present[fp & (PRESENT_SLOTS - 1)] == fp;
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
    struct migrate_worker *mw = part_of(w);
    if (a == NULL || mw == NULL)
        return NULL;
    if (mw->source == NULL || mw->source->port != a->port || strcmp(mw->source->host, a->host) != 0) {
        mw->source = backend_get(w, &source_ops, a->host, a->port);
        if (mw->source)
            mw->source->kind = BACKEND_SOURCE;
    }
    return mw->source;
}

/* The import of W that is fetching FP, or NULL. */
static struct migrate_fetch *fetching(struct worker *w, uint64_t fp)
{
    struct migrate_fetch *f;
    TAILQ_FOREACH(f, &w->migrate->fetches, link)
        for (unsigned i = 0; i < f->nkeys; i++)
            if (f->k[i].fp == fp)
                return f;
    return NULL;
}

/* The import of W that one of L's keys waits for: one of W's own, or W's
 * stand-in for another worker's (M->lock held); NULL if none. */
static struct migrate_fetch *blocking(struct worker *w, struct migrate *m, const struct keylist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        struct migrate_fetch *f = fetching(w, l->k[i].fp);
        if (f)
            return f;
    }
    for (size_t i = 0; i < l->n; i++)
        if (fpset_has(&m->claimed, l->k[i].fp))
            return w->migrate->cross;
    return NULL;
}

static void on_cross_timer(evutil_socket_t fd, short what, void *arg);

/* R waits for import F (see blocking). */
static void wait_for(struct worker *w, struct migrate_fetch *f, struct req *r)
{
    struct migrate_worker *mw = w->migrate;
    r->fetch = f;
    TAILQ_INSERT_TAIL(&f->waiters, r, inflight);
    if (f == mw->cross && (mw->cross_timer || (mw->cross_timer = evtimer_new(w->base, on_cross_timer, w))) &&
        !evtimer_pending(mw->cross_timer, NULL)) {
        struct timeval tv = {0, CROSS_WAIT_US};
        evtimer_add(mw->cross_timer, &tv);
    }
}

/* A new import on W for WHY of the keys of L still there (fp not 0), which
 * the caller claimed; NULL if out of memory. */
static struct migrate_fetch *fetch_new(struct worker *w, enum fetch_why why, struct req *r, const struct keylist *l)
{
    size_t n = 0, names = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->k[i].fp) {
            n++;
            names += l->k[i].len;
        }
    struct migrate_fetch *f = calloc(1, sizeof(*f) + n * sizeof(f->k[0]) + names);
    if (f == NULL)
        return NULL;
    f->w = w;
    f->why = (uint8_t)why;
    f->r = r;
    TAILQ_INIT(&f->waiters);
    char *room = (char *)&f->k[n];
    for (size_t i = 0; i < l->n; i++) {
        if (l->k[i].fp == 0)
            continue;
        struct fetch_key *k = &f->k[f->nkeys++];
        memcpy(room, l->k[i].name, l->k[i].len);
        k->name = room;
        k->len = l->k[i].len;
        k->fp = l->k[i].fp;
        room += l->k[i].len;
    }
    TAILQ_INSERT_TAIL(&w->migrate->fetches, f, link);
    if (r)
        r->fetch = f;
    return f;
}

/* Gives L's claimed keys back (after an import could not be made). */
static void unclaim(struct migrate *m, const struct keylist *l)
{
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < l->n; i++)
        if (l->k[i].fp)
            fpset_del(&m->claimed, l->k[i].fp);
    pthread_mutex_unlock(&m->lock);
}

/* Claims L's keys that are to be fetched (fp not 0; the others are left
 * out), at most FETCH_KEYS_MAX of them (the rest are counted as failed).
 * M->lock held. */
static void claim(struct migrate *m, struct keylist *l)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->k[i].fp == 0)
            continue;
        if (n == FETCH_KEYS_MAX || fpset_add(&m->claimed, l->k[i].fp) < 0) {
            l->k[i].fp = 0;
            atomic_fetch_add(&m->count[MC_FAILED], 1);
            continue;
        }
        n++;
    }
}

static void fetch_step(struct migrate_fetch *f);

/* A request of F for key I, answered through SINK; NULL if out of memory. */
static struct req *sub_new(struct migrate_fetch *f, unsigned i, const struct req_sink *sink)
{
    struct req *s = req_new(f->w, REQ_MIGRATE, sink);
    if (s) {
        s->fetch = f;
        s->part = (uint16_t)i;
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
    f->nfailed++;
    if (f->w->migrate->stopping)
        return; /* cut off by respgate's own exit: walked again after the restart */
    atomic_fetch_add(&migration->count[MC_FAILED], 1);
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
        k->expire_ms = (int64_t)(clock_wall_us() / 1000 + (uint64_t)ms + (ms == 0)); /* 0 would mean none */
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
    struct migrate *m = migration;
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
        struct req *pttl = src ? sub_new(f, i, &pttl_sink) : NULL;
        struct req *dump = pttl ? sub_new(f, i, &dump_sink) : NULL;
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

/* Sends RESTORE for each key of F the standalone has, with its absolute
 * expiry, unless copying stopped (or the worker is leaving). Its keys are
 * F's own (claimed): nobody wrote them meanwhile. */
static void fetch_restore(struct migrate_fetch *f)
{
    struct worker *w = f->w;
    struct migrate *m = migration;
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
        } else if (stop) {
            k->state = K_SKIPPED;
            f->nfailed++;
        } else if (f->why == FETCH_READ && evbuffer_get_length(dump->reply) > w->conf->migration_max_value_size) {
            k->state = K_SKIPPED;
            atomic_fetch_add(&m->count[MC_TOO_LARGE], 1);
        } else {
            struct req *s = sub_new(f, i, &restore_sink);
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
                route_send(w, s, (int)slot_of(k->name, k->len)); /* answered now or later */
            }
        }
        if (dump)
            req_free(w, dump);
    }
}

static void walk_batch_done(struct worker *w, struct migrate_fetch *f);

/* R waited for an import: it goes on now. A read is sent again (FINAL:
 * and answered whatever it gets; else it may miss and wait again); a held
 * write is dispatched again (dispatch.h). */
static void resume(struct worker *w, struct req *r, int final)
{
    r->fetch = NULL;
    if (!req_wanted(r)) {
        req_fail(w, r, REQ_CLIENT_LEFT);
    } else if (w->migrate->stopping) {
        req_fail(w, r, REQ_SHUTTING_DOWN);
    } else if (r->miss) {
        r->miss = final ? 0 : r->miss;
        r->master_only = 1;
        r->redirects = 0;
        evbuffer_drain(r->reply, evbuffer_get_length(r->reply));
        route_send(w, r, r->slot);
    } else {
        client_release_hold(r->client);
    }
}

static void on_cross_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    struct req_list due = TAILQ_HEAD_INITIALIZER(due);
    TAILQ_CONCAT(&due, &w->migrate->cross->waiters, inflight);
    struct req *r;
    while ((r = TAILQ_FIRST(&due))) {
        TAILQ_REMOVE(&due, r, inflight);
        resume(w, r, 0);
    }
}

/* F is over: its keys go back, whoever waited goes on, and F is freed. */
static void fetch_end(struct migrate_fetch *f)
{
    struct worker *w = f->w;
    struct migrate *m = migration;
    struct migrate_worker *mw = w->migrate;
    TAILQ_REMOVE(&mw->fetches, f, link);
    pthread_mutex_lock(&m->lock);
    for (unsigned i = 0; i < f->nkeys; i++)
        fpset_del(&m->claimed, f->k[i].fp);
    pthread_mutex_unlock(&m->lock);
    for (unsigned i = 0; f->why != FETCH_WALK && i < f->nkeys; i++)
        if (f->k[i].state == K_DONE)
            mw->present[f->k[i].fp & (PRESENT_SLOTS - 1)] = f->k[i].fp;
    struct req *r;
    while ((r = TAILQ_FIRST(&f->waiters))) {
        TAILQ_REMOVE(&f->waiters, r, inflight);
        resume(w, r, 1);
    }
    if (f->why == FETCH_WALK) {
        walk_batch_done(w, f);
    } else if (f->why == FETCH_WRITE) {
        resume(w, f->r, 1);
    } else if (f->nrestored) {
        resume(w, f->r, 1);
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
    if (!f->restoring) {
        /* Held while the RESTOREs go: one answered at once (a slot not
         * served) must not end F under the loop. */
        f->pending++;
        fetch_restore(f);
        f->pending--;
    }
    if (f->pending == 0)
        fetch_end(f);
}

/* Starts F: asks the standalone (held, as in fetch_step), then goes on. */
static void fetch_start(struct migrate_fetch *f)
{
    f->pending++;
    fetch_ask(f);
    f->pending--;
    fetch_step(f);
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
    struct migrate *m = migration;
    enum miss miss = (enum miss)r->miss;
    /* A hit costs this: the reply's first bytes against the table's
     * answer (EXISTS's count against its frame's head). */
    if (!active(w) || !reply_missing(miss, in, len, type, miss == MISS_FEWER ? args_of(r) : 0))
        return 0;
    struct migrate_worker *mw = part_of(w);
    if (mw == NULL)
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
        pthread_mutex_lock(&m->lock);
        struct migrate_fetch *busy = m->stop ? NULL : blocking(w, m, &keys);
        size_t want = 0;
        for (size_t i = 0; i < keys.n && !busy && !m->stop; i++) {
            if (fpset_has(&m->written, keys.k[i].fp) || known_present(mw, keys.k[i].fp))
                keys.k[i].fp = 0; /* the cluster's answer is the truth for it */
            else
                want++;
        }
        if (!busy && !m->stop && want)
            claim(m, &keys);
        int stop = m->stop != STOP_NO;
        pthread_mutex_unlock(&m->lock);
        struct migrate_fetch *f = NULL;
        if (busy) {
            wait_for(w, busy, r);
        } else if (stop || want == 0 || (f = fetch_new(w, FETCH_READ, r, &keys)) == NULL) {
            if (!stop && want)
                unclaim(m, &keys);
            r->miss = 0;
            req_complete(w, r);
        } else {
            fetch_start(f);
        }
        keylist_free(&keys);
    }
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

/* CMD (FLUSHALL or FLUSHDB) from client C emptied the cluster: copying
 * stops for good, or the standalone's keys would come back. */
static void flushed(struct migrate *m, const struct cmd_spec *cmd, const struct client *c)
{
    char say[200];
    snprintf(say, sizeof(say), "%s from client %s: the cluster's keys are gone, so the standalone's would come back",
             cmd->name, c->addr);
    pthread_mutex_lock(&m->lock);
    stop_copying(m, STOP_FLUSHED, say);
    pthread_mutex_unlock(&m->lock);
}

/* Marks a write's KEYS written (on disk before the write goes), and claims
 * for an import those whose old copies it needs (none if WHOLE), leaving
 * their fingerprints in KEYS and zeroing the rest; *WANT is how many.
 * Returns the import one of them waits for instead, or NULL. */
static struct migrate_fetch *mark_keys(struct migrate *m, struct worker *w, struct keylist *keys, int whole,
                                       size_t *want)
{
    uint64_t stack[ROUTE_KEYS_ON_STACK];
    uint64_t *marked = keys->n <= ROUTE_KEYS_ON_STACK ? stack : malloc(keys->n * sizeof(uint64_t));
    size_t nmarked = 0;
    *want = 0;
    pthread_mutex_lock(&m->lock);
    struct migrate_fetch *busy = m->stop || marked == NULL ? NULL : blocking(w, m, keys);
    /* Marked and claimed under the lock together: an import that has not
     * claimed a key by now never will, and one that has is waited for. */
    for (size_t i = 0; i < keys->n && !busy && !m->stop && marked; i++) {
        int rc = mark_written(m, keys->k[i].fp);
        if (rc == 1)
            marked[nmarked++] = keys->k[i].fp;
        if (rc == 1 && !whole)
            (*want)++;
        else
            keys->k[i].fp = 0;
    }
    if (busy || m->stop)
        *want = 0;
    if (*want)
        claim(m, keys);
    pthread_mutex_unlock(&m->lock);
    if (nmarked)
        append_written(m, marked, nmarked);
    if (marked != stack)
        free(marked);
    return busy;
}

int migrate_before_routing(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q)
{
    struct worker *w = c->w;
    struct migrate *m = migration;
    if (!active(w))
        return 0;
    /* A read that may take keys in several slots is answered by steps
     * (DUMP, ...; cross.h) that a missed read could not send again: its
     * keys are imported before it runs, as a write's are. */
    if (!is_write(cmd) && cmd->cross == CROSS_NONE) {
        if ((r->miss = (uint8_t)miss_of(cmd)) != 0)
            route_set_missed(w, migrate_missed);
        return 0;
    }
    if (strcmp(cmd->name, "flushall") == 0 || strcmp(cmd->name, "flushdb") == 0) {
        flushed(m, cmd, c);
        return 0;
    }
    struct migrate_worker *mw = part_of(w);
    struct keylist keys;
    if (cmd->nkeyspecs == 0 || mw == NULL || keys_of(m, cmd, r->buf, q, &keys) < 0)
        return 0;
    /* One that replaces its value whole needs no old copy; but not in a
     * transaction, which may be discarded after the key was marked. */
    int whole = !c->txn.multi && replaces_whole(cmd, r->buf, q), held = 0;
    size_t want = 0;
    struct migrate_fetch *busy = mark_keys(m, w, &keys, whole, &want);
    struct migrate_fetch *f = NULL;
    if (busy) { /* an import of one of its keys is under way: the write goes after it */
        atomic_fetch_add(&m->count[MC_WRITES_WAITED], 1);
        c->hold = r;
        wait_for(w, busy, r);
        held = 1;
    } else if (want && (f = fetch_new(w, FETCH_WRITE, r, &keys)) == NULL) {
        unclaim(m, &keys);
    } else if (f) {
        atomic_fetch_add(&m->count[MC_WRITES_WAITED], 1);
        c->hold = r;
        fetch_start(f); /* may release R already, if nothing could be asked */
        held = 1;
    }
    keylist_free(&keys);
    return held;
}

/* ---- the walk (copy mode, worker 0) ---- */

static void walk_next(struct worker *w, uint64_t after_us);
static void walk_arm(struct worker *w, uint64_t after_us);

static int walking_allowed(struct worker *w)
{
    struct migrate *m = migration;
    return w->id == 0 && active(w) && w->conf->migration_mode == MIGRATION_COPY && !atomic_load(&m->walk_done) &&
           !stopped(m);
}

static void walk_log(struct worker *w, const char *what)
{
    struct migrate *m = migration;
    char src[CONF_HOST_MAX + 16] = "";
    if (w->conf->migration_source)
        conf_addr_str(w->conf->migration_source, src, sizeof(src));
    unsigned long long total = atomic_load(&m->total), scanned = atomic_load(&m->count[MC_WALK_SCANNED]);
    log_notice("migration: %s: %llu keys walked of about %llu on %s; copied %llu, already in the cluster %llu, "
               "written through respgate %llu, failed %llu",
               what, scanned, total > scanned ? total : scanned, src,
               (unsigned long long)atomic_load(&m->count[MC_WALK_COPIED]),
               (unsigned long long)atomic_load(&m->count[MC_PRESENT]),
               (unsigned long long)atomic_load(&m->count[MC_SKIPPED_WRITTEN]),
               (unsigned long long)atomic_load(&m->count[MC_FAILED]));
}

/* The batch F (SCAN's keys at the cursor) is over: the cursor moves on,
 * unless a key failed and the batch has tries left. */
static void walk_batch_done(struct worker *w, struct migrate_fetch *f)
{
    struct migrate *m = migration;
    struct migrate_worker *mw = w->migrate;
    mw->walking = 0;
    if (mw->stopping)
        return; /* the batch is walked again after a restart */
    if (f->nfailed && ++mw->tries < WALK_TRIES) {
        walk_next(w, WALK_RETRY_MS * 1000);
        return;
    }
    if (f->nfailed)
        log_warning("migration: %u keys at walk cursor %llu could not be copied in %d tries; the walk goes on "
                    "(a read or a write still copies them)",
                    f->nfailed, (unsigned long long)atomic_load(&m->cursor), WALK_TRIES);
    mw->tries = 0;
    atomic_fetch_add(&m->count[MC_WALK_SCANNED], f->walked);
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
    uint64_t due = keys_us > bytes_us ? keys_us : bytes_us, spent = clock_us() - mw->batch_us;
    walk_next(w, due > spent ? due - spent : 0);
}

/* The decimal at P, up to END: its value into *V and where its digits end
 * into *NEXT. Returns 0, or -1 if there are no digits or too many. */
static int scan_digits(const char *p, const char *end, uint64_t *v, const char **next)
{
    uint64_t x = 0;
    const char *q = p;
    for (; q < end && *q >= '0' && *q <= '9'; q++) {
        if (x > (UINT64_MAX - 9) / 10)
            return -1;
        x = x * 10 + (uint64_t)(*q - '0');
    }
    *v = x;
    *next = q;
    return q == p ? -1 : 0;
}

/* The header "TYPE<digits>CRLF" at P, within END: its number into *N and
 * where its payload starts into *AT. Returns 0, or -1. */
static int scan_header(const char *p, const char *end, char type, uint64_t *n, const char **at)
{
    const char *q;
    if (p >= end || *p != type || scan_digits(p + 1, end, n, &q) < 0 || end - q < 2 || q[0] != '\r' || q[1] != '\n')
        return -1;
    *at = q + 2;
    return 0;
}

/* The bulk string at P, within END: its bytes into *DATA and *LEN, and
 * where the next element starts into *NEXT. Returns 0, or -1. */
static int scan_bulk(const char *p, const char *end, const char **data, size_t *len, const char **next)
{
    uint64_t n;
    const char *at;
    if (scan_header(p, end, '$', &n, &at) < 0 || n > (uint64_t)(end - at) || (uint64_t)(end - at) - n < 2 ||
        at[n] != '\r' || at[n + 1] != '\n')
        return -1;
    *data = at;
    *len = (size_t)n;
    *next = at + n + 2;
    return 0;
}

/* SCAN's reply "*2 $N cursor *K $N key ..." in S (LEN bytes at P): its
 * cursor into *CURSOR and its keys into L (pointing into P). Each length
 * is checked against what is left before it is used: the standalone's
 * bytes are a peer's like any other. Returns 0, or -1 if it is not that. */
static int parse_scan(struct migrate *m, const char *p, size_t len, uint64_t *cursor, struct keylist *l)
{
    const char *end = p + len, *at, *data, *digits_end;
    uint64_t n;
    size_t dlen;
    if (scan_header(p, end, '*', &n, &at) < 0 || n != 2 || scan_bulk(at, end, &data, &dlen, &at) < 0 ||
        scan_digits(data, data + dlen, cursor, &digits_end) < 0 || digits_end != data + dlen ||
        scan_header(at, end, '*', &n, &at) < 0 || n > 100000 || keylist_init(l, (size_t)n) < 0)
        return -1;
    for (uint64_t i = 0; i < n; i++) {
        if (scan_bulk(at, end, &data, &dlen, &at) < 0) {
            keylist_free(l);
            return -1;
        }
        keylist_add(m, l, data, dlen);
    }
    return 0;
}

/* SCAN's reply in S: its keys not written and not claimed elsewhere make
 * a batch; a batch with a key another import is fetching is asked again
 * shortly (the standalone does not change, so SCAN answers the same). */
static void on_scan(struct worker *w, struct req *s)
{
    struct migrate *m = migration;
    struct migrate_worker *mw = w->migrate;
    size_t len = evbuffer_get_length(s->reply);
    const char *p = (const char *)evbuffer_pullup(s->reply, -1);
    uint64_t cursor = 0;
    struct keylist keys;
    if (p == NULL || parse_scan(m, p, len, &cursor, &keys) < 0) {
        char line[160] = "";
        resp_first_line(s->reply, len, line, sizeof(line));
        log_warning("migration: SCAN on the standalone failed (%s); the walk tries again in %d ms",
                    line[0] == '-' ? line + 1 : "an unexpected reply", WALK_RETRY_MS);
        req_free(w, s);
        mw->walking = 0;
        walk_next(w, WALK_RETRY_MS * 1000);
        return;
    }
    pthread_mutex_lock(&m->lock);
    int busy = 0;
    for (size_t i = 0; i < keys.n && !busy; i++)
        busy = fpset_has(&m->claimed, keys.k[i].fp);
    size_t skipped = 0;
    for (size_t i = 0; i < keys.n && !busy; i++)
        if (fpset_has(&m->written, keys.k[i].fp)) {
            keys.k[i].fp = 0;
            skipped++;
        }
    if (!busy)
        claim(m, &keys);
    pthread_mutex_unlock(&m->lock);
    struct migrate_fetch *f = NULL;
    if (!busy && walking_allowed(w) && (f = fetch_new(w, FETCH_WALK, NULL, &keys))) {
        atomic_fetch_add(&m->count[MC_SKIPPED_WRITTEN], skipped);
        f->next_cursor = cursor;
        f->walked = keys.n;
        fetch_start(f);
    } else {
        if (!busy)
            unclaim(m, &keys);
        mw->walking = 0;
        walk_next(w, busy ? CROSS_WAIT_US : WALK_RETRY_MS * 1000);
    }
    keylist_free(&keys);
    req_free(w, s);
}

static void on_dbsize(struct worker *w, struct req *s)
{
    long long n;
    if (reply_int(s, &n) == ':' && n >= 0)
        atomic_store(&migration->total, (uint64_t)n);
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
    struct migrate *m = migration;
    struct migrate_worker *mw = w->migrate;
    struct backend *src = source_of(w);
    if (mw->walking || mw->stopping || !walking_allowed(w) || src == NULL)
        return;
    /* The worker's loop keeps a coarse clock (worker.c), by which a timer
     * may run a few milliseconds early: the rates are kept by this one. */
    uint64_t now = clock_us();
    if (now < mw->next_us) {
        walk_arm(w, mw->next_us - now);
        return;
    }
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
    mw->batch_us = clock_us();
}

static void walk_arm(struct worker *w, uint64_t after_us)
{
    struct migrate_worker *mw = w->migrate;
    if (mw->stopping || (mw->walk_timer == NULL && (mw->walk_timer = evtimer_new(w->base, on_walk_timer, w)) == NULL))
        return;
    struct timeval tv = {(time_t)(after_us / 1000000), (suseconds_t)(after_us % 1000000)};
    evtimer_add(mw->walk_timer, &tv);
}

static void walk_next(struct worker *w, uint64_t after_us)
{
    w->migrate->next_us = clock_us() + after_us;
    walk_arm(w, after_us);
}

void migrate_worker_conf(struct worker *w)
{
    struct migrate_worker *mw;
    if (w->id != 0 || !walking_allowed(w) || (mw = part_of(w)) == NULL)
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
    on_cross_timer(-1, 0, w); /* fails what waits for other workers */
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
    if (mw->cross_timer)
        event_free(mw->cross_timer);
    free(mw->cross);
    free(mw->present);
    free(mw);
    w->migrate = NULL;
}

/* ---- what INFO and /metrics show ---- */

/* The walk's keys still to visit, estimated from the standalone's DBSIZE. */
/* What the three views of a migration show (INFO, /migration, /metrics),
 * read once: the counts are atomics, the written set and the stop are the
 * lock's. */
struct snapshot {
    int ready;              /* a state file is open */
    int stop;               /* enum migrate_stop */
    size_t nwritten, max;
    uint64_t count[MC_COUNT];
    unsigned long long cursor, total, left;
    int walk_done;
};

/* The process's migration now, into SS. Returns 0, or -1 if there is none
 * (never configured, or out of memory at start). Any thread. */
static int snapshot(struct snapshot *ss)
{
    struct migrate *m = migration;
    if (m == NULL)
        return -1;
    pthread_mutex_lock(&m->lock);
    ss->nwritten = m->written.n;
    ss->max = m->max;
    ss->stop = m->stop;
    pthread_mutex_unlock(&m->lock);
    ss->ready = atomic_load(&m->ready);
    for (int i = 0; i < MC_COUNT; i++)
        ss->count[i] = atomic_load(&m->count[i]);
    ss->cursor = atomic_load(&m->cursor);
    ss->total = atomic_load(&m->total);
    ss->walk_done = atomic_load(&m->walk_done);
    uint64_t scanned = ss->count[MC_WALK_SCANNED];
    ss->left = ss->walk_done || ss->total < scanned ? 0 : ss->total - scanned;
    return 0;
}

void migrate_info(const struct conf *cf, struct evbuffer *out)
{
    struct snapshot ss;
    if (snapshot(&ss) < 0 || (cf->migration_mode == MIGRATION_OFF && !ss.ready))
        return;
    evbuffer_add_printf(out, "migration_mode:%s\r\nmigration_stopped:%s\r\n", mode_names[cf->migration_mode],
                        stop_names[ss.stop]);
    for (int i = 0; i < MC_COUNT; i++)
        evbuffer_add_printf(out, "migration_%s:%llu\r\n", count_names[i], (unsigned long long)ss.count[i]);
    evbuffer_add_printf(out,
                        "migration_written_keys:%zu\r\nmigration_walk_cursor:%llu\r\nmigration_walk_done:%d\r\n"
                        "migration_walk_left_estimate:%llu\r\n",
                        ss.nwritten, ss.cursor, ss.walk_done, ss.left);
}

void migrate_status(const struct conf *cf, struct evbuffer *out)
{
    char src[CONF_HOST_MAX + 16] = "none";
    if (cf->migration_source)
        conf_addr_str(cf->migration_source, src, sizeof(src));
    evbuffer_add_printf(out, "migration: %s, from %s\n", mode_names[cf->migration_mode], src);
    struct snapshot ss;
    if (snapshot(&ss) < 0 || !ss.ready) {
        evbuffer_add_printf(out, "no migration.state_file is open: nothing was migrated\n");
        return;
    }
    const uint64_t *c = ss.count;
    if (ss.walk_done)
        evbuffer_add_printf(out, "walk: done, %llu keys walked\n", (unsigned long long)c[MC_WALK_SCANNED]);
    else if (c[MC_WALK_SCANNED] || cf->migration_mode == MIGRATION_COPY)
        evbuffer_add_printf(out, "walk: %llu keys walked of about %llu (cursor %llu), about %llu left%s\n",
                            (unsigned long long)c[MC_WALK_SCANNED], ss.total, ss.cursor, ss.left,
                            cf->migration_mode == MIGRATION_COPY ? "" : "; paused (mode is not copy)");
    else
        evbuffer_add_printf(out, "walk: not started (mode copy starts it)\n");
    evbuffer_add_printf(out,
                        "copied: %llu by the walk, %llu for reads and writes\n"
                        "left alone: %llu already in the cluster, %llu written through respgate, %llu too large "
                        "for a read\n"
                        "not on the standalone: %llu\nfailed: %llu\n"
                        "reads that missed: %llu; writes that waited for their keys: %llu\n"
                        "keys remembered as written: %zu of at most %zu\n",
                        (unsigned long long)c[MC_WALK_COPIED], (unsigned long long)c[MC_IMPORTED],
                        (unsigned long long)c[MC_PRESENT], (unsigned long long)c[MC_SKIPPED_WRITTEN],
                        (unsigned long long)c[MC_TOO_LARGE], (unsigned long long)c[MC_ABSENT],
                        (unsigned long long)c[MC_FAILED], (unsigned long long)c[MC_READS_MISSED],
                        (unsigned long long)c[MC_WRITES_WAITED], ss.nwritten, ss.max);
    static const char *const why[] = {"", "the cluster was flushed through respgate",
                                      "migration.max_written_keys reached", "migration.state_file cannot be written"};
    if (ss.stop)
        evbuffer_add_printf(out, "stopped: %s; nothing more is copied\n", why[ss.stop]);
}

void migrate_metrics(struct evbuffer *out)
{
    struct snapshot ss;
    if (snapshot(&ss) < 0)
        return;
    evbuffer_add_printf(out, "# HELP respgate_migration_keys_total Keys the migration from a standalone Redis "
                             "handled, by outcome (migrate.h).\n# TYPE respgate_migration_keys_total counter\n");
    for (int i = 0; i < MC_COUNT; i++)
        evbuffer_add_printf(out, "respgate_migration_keys_total{outcome=\"%s\"} %llu\n", count_names[i],
                            (unsigned long long)ss.count[i]);
    evbuffer_add_printf(out, "# HELP respgate_migration_written_keys Keys written during the migration, never copied.\n"
                             "# TYPE respgate_migration_written_keys gauge\nrespgate_migration_written_keys %zu\n"
                             "# HELP respgate_migration_walk_left Keys the walk has still to visit, estimated.\n"
                             "# TYPE respgate_migration_walk_left gauge\nrespgate_migration_walk_left %llu\n",
                        ss.nwritten, ss.left);
}
