/*
 * info: INFO answered as a single node would, see info.h.
 */
#include "config.h"
#include "base/clock.h"

#include "front/info.h"

#include "conn/client.h"
#include "base/compat.h"
#include "model/cmd.h"
#include "model/conf.h"
#include "path/fanout.h"
#include "base/guard.h"
#include "migrate/migrate.h"
#include "loop/req.h"
#include "base/resp.h"
#include "model/shared.h"
#include "model/slotmap.h"
#include "loop/worker.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

enum {
    SEC_SERVER, SEC_CLIENTS, SEC_MEMORY, SEC_PERSISTENCE, SEC_STATS, SEC_REPLICATION, SEC_CPU, SEC_MODULES,
    SEC_COMMANDSTATS, SEC_ERRORSTATS, SEC_LATENCYSTATS, SEC_CLUSTER, SEC_KEYSPACE, SEC_RESPGATE, SEC_NODES,
    SEC_COUNT
};

#define IN_DEFAULT 1 /* in INFO, INFO default */
#define IN_ALL 2     /* in INFO all, INFO everything */

enum from {
    FROM_FIRST,    /* the first master's text, respgate's values on top (own_value) */
    FROM_SUM,      /* every master's, merged (merge_field) */
    FROM_RESPGATE, /* respgate's alone */
};

/* In a node's order, which is the order of the answer. */
static const struct section {
    const char *name, *title;
    uint8_t in, from;
    unsigned since;
} sections[SEC_COUNT] = {
    [SEC_SERVER] = {"server", "Server", IN_DEFAULT | IN_ALL, FROM_FIRST, 0},
    [SEC_CLIENTS] = {"clients", "Clients", IN_DEFAULT | IN_ALL, FROM_FIRST, 0},
    [SEC_MEMORY] = {"memory", "Memory", IN_DEFAULT | IN_ALL, FROM_SUM, 0},
    [SEC_PERSISTENCE] = {"persistence", "Persistence", IN_DEFAULT | IN_ALL, FROM_SUM, 0},
    [SEC_STATS] = {"stats", "Stats", IN_DEFAULT | IN_ALL, FROM_SUM, 0},
    [SEC_REPLICATION] = {"replication", "Replication", IN_DEFAULT | IN_ALL, FROM_FIRST, 0},
    [SEC_CPU] = {"cpu", "CPU", IN_DEFAULT | IN_ALL, FROM_FIRST, 0},
    [SEC_MODULES] = {"modules", "Modules", IN_DEFAULT | IN_ALL, FROM_FIRST, 0},
    [SEC_COMMANDSTATS] = {"commandstats", "Commandstats", IN_ALL, FROM_SUM, 0},
    [SEC_ERRORSTATS] = {"errorstats", "Errorstats", IN_DEFAULT | IN_ALL, FROM_SUM, 0},
    [SEC_LATENCYSTATS] = {"latencystats", "Latencystats", IN_ALL, FROM_SUM, COMPAT_V7_0},
    [SEC_CLUSTER] = {"cluster", "Cluster", IN_DEFAULT | IN_ALL, FROM_FIRST, 0},
    [SEC_KEYSPACE] = {"keyspace", "Keyspace", IN_DEFAULT | IN_ALL, FROM_SUM, 0},
    [SEC_RESPGATE] = {"respgate", "Respgate", IN_DEFAULT | IN_ALL, FROM_RESPGATE, 0},
    [SEC_NODES] = {"nodes", "Nodes", 0, FROM_RESPGATE, 0}, /* only when named */
};

/* How one field's values from the masters become one. */
enum rule { R_SUM, R_MIN, R_MAX, R_FIRST, R_WORST };
enum type { T_INT, T_DOUBLE, T_TEXT, T_LIST };

#define SUB_MAX 8
#define NO_PART UINT_MAX

struct info_field {
    uint8_t sec, type, rule, nsub;
    unsigned from;          /* R_FIRST, R_WORST: the part the value came from */
    char key[64];
    long long i;
    double d;
    char text[96];
    struct {                /* T_LIST: "name=value,..." (commandstats, keyspace, ...) */
        char name[16];
        double v;
        uint8_t is_int;
    } sub[SUB_MAX];
};

struct info {
    struct worker *w;
    unsigned want;          /* a bit per section */
    unsigned version;
    struct info_field *fields;
    size_t nfields, capfields;
    char *first;            /* the text of the master first in slot order, of those answered */
    unsigned first_index;
    struct evbuffer *nodes; /* SEC_NODES: a line per master */
};

/* ---- the request ---- */

/* The sections request R (arguments Q) names, for a cluster of VERSION. */
static unsigned wanted(const struct req *r, const struct resp_req *q, unsigned version)
{
    unsigned want = 0;
    for (size_t i = q->argc == 1 ? 0 : 1; i < q->argc; i++) { /* a bare INFO: as "default" */
        uint8_t group = i == 0 || resp_arg_is(r->buf, q, i, "default") ? IN_DEFAULT
                        : resp_arg_is(r->buf, q, i, "all") || resp_arg_is(r->buf, q, i, "everything") ? IN_ALL : 0;
        for (unsigned s = 0; s < SEC_COUNT; s++)
            if (compat_has(version, sections[s].since) &&
                ((sections[s].in & group) || (!group && resp_arg_is(r->buf, q, i, sections[s].name))))
                want |= 1u << s;
    }
    return want;
}

/* ---- respgate's own values ---- */

static void cpu_seconds(char *buf, size_t len, const struct timeval *tv)
{
    snprintf(buf, len, "%ld.%06ld", (long)tv->tv_sec, (long)tv->tv_usec);
}

/* respgate's value for KEY of section SEC into BUF: returns 1 if written,
 * 0 if the node's value stands, -1 if the line is dropped. */
/* respgate's own value of KEY in INFO's server section into BUF (LEN
 * bytes): 1 if it has one, 0 if the first master's stands. */
static int own_server_value(const struct info *in, const char *key, char *buf, size_t len)
{
    struct shared *sh = in->w->shared;
    const struct conf *cf = in->w->conf;
    long long up = (long long)((clock_us() - sh->started_us) / 1000000);
    struct utsname u;
    if (strcmp(key, "redis_version") == 0 && in->first == NULL) { /* else the node's stands */
        shared_redis_version(sh, buf, len);
        if (buf[0] == '\0')
            snprintf(buf, len, "unknown");
        return 1;
    }
    if (strcmp(key, "redis_mode") == 0)
        return snprintf(buf, len, "standalone"), 1;
    if (strcmp(key, "os") == 0 && uname(&u) == 0)
        return snprintf(buf, len, "%s %s %s", u.sysname, u.release, u.machine), 1;
    if (strcmp(key, "arch_bits") == 0)
        return snprintf(buf, len, "%d", (int)(sizeof(void *) * 8)), 1;
    if (strcmp(key, "multiplexing_api") == 0)
        return snprintf(buf, len, "epoll"), 1;
    if (strcmp(key, "process_id") == 0)
        return snprintf(buf, len, "%d", (int)getpid()), 1;
    if (strcmp(key, "tcp_port") == 0)
        return snprintf(buf, len, "%d", cf->listen.n && !cf->listen.v[0].is_unix ? cf->listen.v[0].port : 0), 1;
    if (strcmp(key, "uptime_in_seconds") == 0)
        return snprintf(buf, len, "%lld", up), 1;
    if (strcmp(key, "uptime_in_days") == 0)
        return snprintf(buf, len, "%lld", up / 86400), 1;
    if (strcmp(key, "executable") == 0)
        return snprintf(buf, len, "respgate"), 1;
    if (strcmp(key, "config_file") == 0)
        return snprintf(buf, len, "%s", sh->conf_path ? sh->conf_path : ""), 1;
    if (strcmp(key, "io_threads_active") == 0)
        return snprintf(buf, len, "0"), 1;
    return 0;
}

static int own_value(const struct info *in, unsigned sec, const char *key, char *buf, size_t len)
{
    struct worker *w = in->w;
    struct shared *sh = w->shared;
    const struct conf *cf = w->conf;
    struct rusage ru;
    switch (sec) {
    case SEC_SERVER:
        return own_server_value(in, key, buf, len);
    case SEC_CLIENTS:
        if (strcmp(key, "connected_clients") == 0)
            return snprintf(buf, len, "%llu", (unsigned long long)atomic_load(&sh->nclients)), 1;
        if (strcmp(key, "maxclients") == 0)
            return snprintf(buf, len, "%llu", (unsigned long long)cf->max_clients), 1;
        if (strcmp(key, "blocked_clients") == 0) {
            long long blocked = 0;
            for (int i = 0; i < sh->nworkers; i++)
                blocked += atomic_load_explicit(&sh->workers[i].stats.blocked, memory_order_relaxed);
            return snprintf(buf, len, "%lld", blocked), 1;
        }
        if (strcmp(key, "cluster_connections") == 0 || strcmp(key, "tracking_clients") == 0)
            return snprintf(buf, len, "0"), 1;
        return 0;
    case SEC_REPLICATION:
        if (strcmp(key, "role") == 0)
            return snprintf(buf, len, "master"), 1;
        if (strcmp(key, "connected_slaves") == 0)
            return snprintf(buf, len, "0"), 1;
        return strncmp(key, "slave", 5) == 0 && isdigit((unsigned char)key[5]) ? -1 : 0;
    case SEC_CPU:
        if (strncmp(key, "used_cpu_", 9) != 0 || getrusage(strstr(key, "_children") ? RUSAGE_CHILDREN : RUSAGE_SELF, &ru))
            return 0;
        cpu_seconds(buf, len, strstr(key, "_sys") ? &ru.ru_stime : &ru.ru_utime);
        return 1;
    case SEC_CLUSTER:
        return strcmp(key, "cluster_enabled") == 0 ? (snprintf(buf, len, "0"), 1) : 0;
    default:
        return 0;
    }
}

/* The fields respgate writes for a section when no master answered. */
static const char *const fallback[SEC_COUNT][12] = {
    [SEC_SERVER] = {"redis_version", "redis_mode", "os", "arch_bits", "multiplexing_api", "process_id", "tcp_port",
                    "uptime_in_seconds", "uptime_in_days", "executable", "config_file"},
    [SEC_CLIENTS] = {"connected_clients", "maxclients", "blocked_clients"},
    [SEC_REPLICATION] = {"role", "connected_slaves"},
    [SEC_CPU] = {"used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children"},
    [SEC_CLUSTER] = {"cluster_enabled"},
};

/* The commands on keys in several slots answered by copying (cross.h), by
 * name, as "cross_slot_emulated:rename=2,sunionstore=1". */
static void cross_slot_info(struct shared *sh, struct evbuffer *out)
{
    evbuffer_add_printf(out, "cross_slot_emulated:");
    const char *sep = "";
    for (size_t i = 0; i < cmd_table_len; i++) {
        const struct cmd_spec *cmd = &cmd_table[i];
        uint64_t n = 0;
        for (int k = 0; cmd->cross && k < sh->nworkers; k++)
            n += atomic_load_explicit(&sh->workers[k].metrics.cross_slot[cmd->id], memory_order_relaxed);
        if (n) {
            evbuffer_add_printf(out, "%s%s=%llu", sep, cmd->name, (unsigned long long)n);
            sep = ",";
        }
    }
    evbuffer_add_printf(out, "\r\n");
}

static void respgate_section(const struct info *in, struct evbuffer *out)
{
    struct shared *sh = in->w->shared;
    uint64_t redirects = 0, retries = 0, parked = 0, expired = 0;
    for (int i = 0; i < sh->nworkers; i++) {
        const struct worker_stats *st = &sh->workers[i].stats;
        redirects += atomic_load_explicit(&st->redirects, memory_order_relaxed);
        retries += atomic_load_explicit(&st->retries, memory_order_relaxed);
        parked += atomic_load_explicit(&st->parked, memory_order_relaxed);
        expired += atomic_load_explicit(&st->expired, memory_order_relaxed);
    }
    evbuffer_add_printf(out,
                        "redirections:%llu\r\nrequests_waited:%llu\r\nrequests_resent:%llu\r\n"
                        "requests_expired:%llu\r\nfailover_wait_ms:%llu\r\ncluster_version:%u.%u.%u\r\n",
                        (unsigned long long)redirects, (unsigned long long)parked, (unsigned long long)retries,
                        (unsigned long long)expired, (unsigned long long)shared_failover_wait_ms(sh, in->w->conf),
                        in->version / 10000, in->version / 100 % 100, in->version % 100);
    const struct guard *g = sh->guard;
    evbuffer_add_printf(out, "auth_failures:%llu\r\nauth_delayed:%llu\r\nauth_timeouts:%llu\r\n"
                             "rejected_protected_mode:%llu\r\nrejected_tls_handshake:%llu\r\n",
                        (unsigned long long)atomic_load(&g->auth_failures),
                        (unsigned long long)atomic_load(&g->auth_delayed),
                        (unsigned long long)atomic_load(&g->auth_timeouts),
                        (unsigned long long)atomic_load(&g->protected_refused.count),
                        (unsigned long long)atomic_load(&g->tls_refused.count));
    cross_slot_info(sh, out);
    migrate_info(in->w->conf, out);
}

/* ---- merging the masters' fields ---- */

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

static uint8_t rule_for(const char *key, uint8_t type)
{
    static const char *const largest[] = {"loading", "async_loading", "aof_enabled", "current_cow_size_age",
                                          "latest_fork_usec", "io_threads_active", "number_of_cached_scripts",
                                          "number_of_functions", "number_of_libraries"};
    if (type == T_TEXT)
        return ends_with(key, "_status") ? R_WORST : R_FIRST;
    if (type == T_DOUBLE)
        return ends_with(key, "_kbps") ? R_SUM : R_FIRST;
    /* a save is complete everywhere only when the oldest one is */
    if (strcmp(key, "rdb_last_save_time") == 0)
        return R_MIN;
    /* the host's memory, counted once per node, would mislead */
    if (strcmp(key, "total_system_memory") == 0)
        return R_FIRST;
    for (size_t i = 0; i < sizeof(largest) / sizeof(largest[0]); i++)
        if (strcmp(key, largest[i]) == 0)
            return R_MAX;
    /* states and durations, not counts: -1 for "none" must not add up */
    if (ends_with(key, "_in_progress") || ends_with(key, "_scheduled") || ends_with(key, "_time_sec") ||
        ends_with(key, "_perc"))
        return R_MAX;
    return R_SUM;
}

/* A node's integer. One past long long (6.2 wraps a few size_t fields,
 * like used_memory_dataset, under load) stays an integer, at the bound
 * strtoll clamps it to, so that the masters' values of a field stay of one
 * kind; sums saturate there too. */
static int parse_int(const char *s, long long *v)
{
    char *end;
    if (*s == '\0')
        return 0;
    *v = strtoll(s, &end, 10);
    return *end == '\0';
}

/* V, a sum of the nodes' numbers, as a long long, bounded (0 for NaN). */
static long long bounded_ll(double v)
{
    return v != v ? 0 : v >= 0x1p63 ? LLONG_MAX : v <= -0x1p63 ? LLONG_MIN : (long long)v;
}

static int parse_double(const char *s, double *v)
{
    char *end;
    if (*s == '\0')
        return 0;
    *v = strtod(s, &end);
    return *end == '\0';
}

static struct info_field *field_of(struct info *in, unsigned sec, const char *key, size_t klen)
{
    for (size_t i = 0; i < in->nfields; i++)
        if (in->fields[i].sec == sec && strncmp(in->fields[i].key, key, klen) == 0 && in->fields[i].key[klen] == '\0')
            return &in->fields[i];
    if (klen >= sizeof(in->fields[0].key))
        return NULL; /* no such field in Redis */
    if (in->nfields == in->capfields) {
        size_t cap = in->capfields ? in->capfields * 2 : 64;
        struct info_field *bigger = realloc(in->fields, cap * sizeof(*bigger));
        if (bigger == NULL)
            return NULL;
        in->fields = bigger;
        in->capfields = cap;
    }
    struct info_field *f = &in->fields[in->nfields++];
    memset(f, 0, sizeof(*f));
    f->sec = (uint8_t)sec;
    f->from = NO_PART;
    memcpy(f->key, key, klen);
    f->key[klen] = '\0';
    return f;
}

/* "name=value,..." of one master into F. */
static void merge_list(struct info_field *f, char *val)
{
    double expires = 0;
    struct {
        char *name;
        double v;
        int is_int;
    } pairs[SUB_MAX];
    size_t n = 0;
    char *save = NULL;
    for (char *p = strtok_r(val, ",", &save); p && n < SUB_MAX; p = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(p, '=');
        long long iv;
        if (eq == NULL)
            continue;
        *eq = '\0';
        pairs[n].name = p;
        pairs[n].is_int = parse_int(eq + 1, &iv);
        pairs[n].v = pairs[n].is_int ? (double)iv : strtod(eq + 1, NULL);
        if (strcmp(p, "expires") == 0)
            expires = pairs[n].v;
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        size_t s = 0;
        while (s < f->nsub && strcmp(f->sub[s].name, pairs[i].name) != 0)
            s++;
        if (s == f->nsub) {
            if (f->nsub == SUB_MAX || strlen(pairs[i].name) >= sizeof(f->sub[0].name))
                continue;
            snprintf(f->sub[s].name, sizeof(f->sub[s].name), "%s", pairs[i].name);
            f->sub[s].is_int = (uint8_t)pairs[i].is_int;
            f->sub[s].v = 0;
            f->nsub++;
        }
        if (f->sec == SEC_LATENCYSTATS)
            f->sub[s].v = pairs[i].v > f->sub[s].v ? pairs[i].v : f->sub[s].v; /* the slowest master's */
        else if (f->sec == SEC_KEYSPACE && strcmp(pairs[i].name, "avg_ttl") == 0)
            f->sub[s].v += pairs[i].v * expires; /* weighted by expires, divided at the end */
        else
            f->sub[s].v += pairs[i].v; /* usec_per_call is written again from calls and usec */
    }
}

/* One "key:value" line of section SEC from the INDEXth master. */
static int merge_field(struct info *in, unsigned sec, const char *key, size_t klen, char *val, unsigned index)
{
    struct info_field *f = field_of(in, sec, key, klen);
    if (f == NULL)
        return klen >= sizeof(in->fields[0].key) ? 0 : -1;
    long long iv = 0;
    double dv = 0;
    uint8_t type = (sec == SEC_COMMANDSTATS || sec == SEC_ERRORSTATS || sec == SEC_LATENCYSTATS ||
                    sec == SEC_KEYSPACE) && strchr(val, '=') ? T_LIST
                   : parse_int(val, &iv) ? T_INT : parse_double(val, &dv) ? T_DOUBLE : T_TEXT;
    if (f->from == NO_PART && f->nsub == 0 && f->i == 0 && f->d == 0 && f->text[0] == '\0') {
        f->type = type;
        f->rule = rule_for(f->key, type);
    } else if (f->type != type) {
        return 0; /* masters disagree on what the field is: the first kind stays */
    }
    int first = index < f->from;
    switch (type) {
    case T_LIST:
        merge_list(f, val);
        break;
    case T_INT:
        if (f->rule == R_SUM) {
            if (__builtin_add_overflow(f->i, iv, &f->i))
                f->i = iv > 0 ? LLONG_MAX : LLONG_MIN;
        } else if ((f->rule == R_MIN && (f->from == NO_PART || iv < f->i)) ||
                 (f->rule == R_MAX && (f->from == NO_PART || iv > f->i)) || (f->rule == R_FIRST && first))
            f->i = iv;
        break;
    case T_DOUBLE:
        if (f->rule == R_SUM)
            f->d += dv;
        else if (first)
            f->d = dv;
        break;
    default:
        /* R_WORST: "ok" unless a master says otherwise */
        if ((f->rule == R_FIRST && first) ||
            (f->rule == R_WORST && (f->from == NO_PART || (strcmp(f->text, "ok") == 0 && strcmp(val, "ok") != 0))))
            snprintf(f->text, sizeof(f->text), "%s", val);
        break;
    }
    if (first)
        f->from = index;
    return 0;
}

/* Redis's bytesToHuman. */
static void human(char *buf, size_t len, long long n)
{
    static const char units[] = "KMGTP";
    double d = (double)n;
    if (n < 1024) {
        snprintf(buf, len, "%lldB", n);
        return;
    }
    size_t u = 0;
    for (d /= 1024; d >= 1024 && u + 1 < sizeof(units) - 1; u++)
        d /= 1024;
    snprintf(buf, len, "%.2f%c", d, units[u]);
}

static void write_field(const struct info *in, const struct info_field *f, struct evbuffer *out)
{
    char buf[64];
    switch (f->type) {
    case T_INT:
        evbuffer_add_printf(out, "%s:%lld\r\n", f->key, f->i);
        return;
    case T_DOUBLE:
        evbuffer_add_printf(out, "%s:%.2f\r\n", f->key, f->d);
        return;
    case T_TEXT:
        if (ends_with(f->key, "_human")) {
            /* from the summed bytes, not one master's text */
            for (size_t i = 0; i < in->nfields; i++) {
                const struct info_field *base = &in->fields[i];
                size_t n = strlen(base->key);
                if (base->sec == f->sec && base->type == T_INT && n + 6 == strlen(f->key) &&
                    strncmp(base->key, f->key, n) == 0) {
                    human(buf, sizeof(buf), base->i);
                    evbuffer_add_printf(out, "%s:%s\r\n", f->key, buf);
                    return;
                }
            }
        }
        evbuffer_add_printf(out, "%s:%s\r\n", f->key, f->text);
        return;
    default:
        break;
    }
    double calls = 0, usec = 0, expires = 0;
    for (size_t s = 0; s < f->nsub; s++) {
        calls = strcmp(f->sub[s].name, "calls") == 0 ? f->sub[s].v : calls;
        usec = strcmp(f->sub[s].name, "usec") == 0 ? f->sub[s].v : usec;
        expires = strcmp(f->sub[s].name, "expires") == 0 ? f->sub[s].v : expires;
    }
    evbuffer_add_printf(out, "%s:", f->key);
    for (size_t s = 0; s < f->nsub; s++) {
        double v = f->sub[s].v;
        const char *name = f->sub[s].name;
        if (f->sec == SEC_KEYSPACE && strcmp(name, "avg_ttl") == 0)
            evbuffer_add_printf(out, "%s%s=%lld", s ? "," : "", name, expires > 0 ? bounded_ll(v / expires) : 0);
        else if (strcmp(name, "usec_per_call") == 0)
            evbuffer_add_printf(out, "%s%s=%.2f", s ? "," : "", name, calls > 0 ? usec / calls : 0);
        else if (f->sub[s].is_int)
            evbuffer_add_printf(out, "%s%s=%lld", s ? "," : "", name, bounded_ll(v));
        else
            evbuffer_add_printf(out, "%s%s=%.3f", s ? "," : "", name, v);
    }
    evbuffer_add(out, "\r\n", 2);
}

static int section_of_title(const char *line)
{
    for (unsigned s = 0; s < SEC_COUNT; s++)
        if (strcmp(line + 2, sections[s].title) == 0)
            return (int)s;
    return -1;
}

/* Folds the INFO text in REPLY, from the master at HOST:PORT that is the
 * INDEXth in slot order, into IN. Returns NULL, or an error text. */
static const char *info_part(void *state, unsigned index, struct evbuffer *reply, const char *host, int port)
{
    struct info *in = state;
    size_t len = evbuffer_get_length(reply);
    char *text = malloc(len + 1);
    if (text == NULL)
        return REQ_OUT_OF_MEMORY;
    evbuffer_remove(reply, text, len);
    text[len] = '\0';
    if (text[0] != '$') {
        free(text);
        return "ERR respgate: unexpected INFO reply from a node";
    }
    /* Merging cuts the lines apart: the first master's text is kept whole. */
    char *copy = index < in->first_index ? strdup(text) : NULL;
    long long keys = 0, expires = 0, used_memory = 0, commands = 0, ops = 0;
    int sec = -1;
    char *p = strchr(text, '\n'), *next;
    for (p = p ? p + 1 : NULL; p && *p; p = next) {
        if ((next = strchr(p, '\n')))
            *next++ = '\0';
        p[strcspn(p, "\r")] = '\0';
        if (p[0] == '#') {
            sec = p[1] == ' ' ? section_of_title(p) : -1;
            continue;
        }
        char *colon = strchr(p, ':');
        if (colon == NULL || sec < 0)
            continue;
        *colon = '\0';
        long long v = 0;
        if (sec == SEC_KEYSPACE && strncmp(p, "db", 2) == 0) {
            sscanf(colon + 1, "keys=%lld,expires=%lld", &keys, &expires);
        } else if (parse_int(colon + 1, &v)) {
            used_memory += strcmp(p, "used_memory") == 0 ? v : 0;
            commands += strcmp(p, "total_commands_processed") == 0 ? v : 0;
            ops += strcmp(p, "instantaneous_ops_per_sec") == 0 ? v : 0;
        }
        if (sections[sec].from == FROM_SUM && (in->want & (1u << sec)) &&
            merge_field(in, (unsigned)sec, p, (size_t)(colon - p), colon + 1, index) < 0) {
            free(text);
            free(copy);
            return REQ_OUT_OF_MEMORY;
        }
    }
    free(text);
    if (copy) {
        free(in->first);
        in->first = copy;
        in->first_index = index;
    }
    if (in->nodes)
        evbuffer_add_printf(in->nodes,
                            "master%u:addr=%s:%d,keys=%lld,expires=%lld,used_memory=%lld,"
                            "total_commands_processed=%lld,instantaneous_ops_per_sec=%lld\r\n",
                            index, host, port, keys, expires, used_memory, commands, ops);
    return NULL;
}

/* Section SEC from the first master's text, with respgate's values. */
static void first_section(const struct info *in, unsigned sec, struct evbuffer *out)
{
    char value[256];
    const char *p = NULL;
    if (in->first) {
        char title[32];
        snprintf(title, sizeof(title), "# %s\r\n", sections[sec].title);
        p = strstr(in->first, title);
        p = p ? p + strlen(title) : NULL;
    }
    if (p == NULL) {
        for (size_t i = 0; i < 12 && fallback[sec][i]; i++)
            if (own_value(in, sec, fallback[sec][i], value, sizeof(value)) > 0)
                evbuffer_add_printf(out, "%s:%s\r\n", fallback[sec][i], value);
    }
    while (p && *p && *p != '#' && *p != '\r') {
        const char *eol = strstr(p, "\r\n"), *colon = memchr(p, ':', eol ? (size_t)(eol - p) : 0);
        if (eol == NULL)
            break;
        char key[64];
        int have = colon && (size_t)(colon - p) < sizeof(key);
        if (have)
            snprintf(key, sizeof(key), "%.*s", (int)(colon - p), p);
        int local = have ? own_value(in, sec, key, value, sizeof(value)) : 0;
        if (local > 0)
            evbuffer_add_printf(out, "%s:%s\r\n", key, value);
        else if (local == 0)
            evbuffer_add(out, p, (size_t)(eol + 2 - p));
        p = eol + 2;
    }
    if (sec == SEC_SERVER)
        evbuffer_add_printf(out, "respgate_version:%s\r\nrespgate_workers:%d\r\n", PACKAGE_VERSION,
                            in->w->shared->nworkers);
}

/* Writes IN's whole answer to OUT, as a bulk string (PROTO 2) or a
 * verbatim text (PROTO 3), as Redis does. */
static void info_finish(void *state, struct evbuffer *out, int proto)
{
    struct info *in = state;
    struct evbuffer *text = evbuffer_new();
    if (text == NULL) {
        resp_add_error(out, REQ_OUT_OF_MEMORY);
        return;
    }
    for (unsigned s = 0; s < SEC_COUNT; s++) {
        if (!(in->want & (1u << s)))
            continue;
        evbuffer_add_printf(text, "# %s\r\n", sections[s].title);
        if (s == SEC_RESPGATE)
            respgate_section(in, text);
        else if (s == SEC_NODES && in->nodes)
            evbuffer_add_buffer(text, in->nodes);
        else if (sections[s].from == FROM_FIRST)
            first_section(in, s, text);
        for (size_t i = 0; sections[s].from == FROM_SUM && i < in->nfields; i++)
            if (in->fields[i].sec == s)
                write_field(in, &in->fields[i], text);
        evbuffer_add(text, "\r\n", 2);
    }
    /* Sections end with a blank line; Redis's text ends with the last line's CRLF. */
    size_t n = evbuffer_get_length(text), body = n >= 2 ? n - 2 : 0;
    char head[RESP_HEAD_MAX + 4];
    evbuffer_add(out, head, resp_text_head(head, proto, body));
    evbuffer_remove_buffer(text, out, body);
    evbuffer_add(out, "\r\n", 2);
    evbuffer_free(text);
}

static void info_free(void *state) /* NULL is a no-op */
{
    struct info *in = state;
    if (in == NULL)
        return;
    if (in->nodes)
        evbuffer_free(in->nodes);
    free(in->fields);
    free(in->first);
    free(in);
}

static const struct fanout_fold info_fold = {.part = info_part, .finish = info_finish, .free = info_free};

int info_run(struct client *c, struct req *r, const struct resp_req *q)
{
    struct worker *w = c->w;
    if (q->argc > 2 && !compat_has(w->version, COMPAT_V7_0)) {
        resp_add_error(r->reply, "ERR syntax error"); /* 6.2 takes one section */
        return 0;
    }
    struct info *in = calloc(1, sizeof(*in));
    if (in == NULL) {
        resp_add_error(r->reply, REQ_OUT_OF_MEMORY);
        return 0;
    }
    in->w = w;
    in->version = w->version;
    in->want = wanted(r, q, w->version);
    in->first_index = NO_PART;
    unsigned from_nodes = 0, all = 0;
    for (unsigned s = 0; s < SEC_COUNT; s++)
        if (in->want & (1u << s)) {
            from_nodes |= sections[s].from != FROM_RESPGATE || s == SEC_NODES;
            all |= !(sections[s].in & IN_DEFAULT) && s != SEC_NODES;
        }
    /* Before this worker's first map, the masters are unknown: INFO waits
     * for it as routed commands do, rather than answer without the nodes'
     * sections. */
    if (from_nodes && client_wait_for_map(c, r) == CLIENT_MAP_HELD) {
        info_free(in);
        return 1;
    }
    if (in->want & (1u << SEC_NODES) && (in->nodes = evbuffer_new()) == NULL)
        from_nodes = 0;
    /* "INFO" and "INFO all" mean the same to every version */
    static const char info_default[] = "*1\r\n$4\r\nINFO\r\n", info_all[] = "*2\r\n$4\r\nINFO\r\n$3\r\nall\r\n";
    if (from_nodes && w->map &&
        fanout_fold(w, r, &info_fold, in, all ? info_all : info_default, all ? sizeof(info_all) - 1 : sizeof(info_default) - 1) == 0)
        return 1; /* fanout owns IN now */
    info_finish(in, r->reply, c->proto);
    info_free(in);
    return 0;
}
