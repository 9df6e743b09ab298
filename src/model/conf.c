/*
 * conf: YAML configuration -> struct conf. See conf.h for the contract.
 *
 * The file is loaded whole with libyaml's document API, then walked once:
 * every mapping key is resolved to a row of `keys[]` by its dotted path, its
 * value parsed by the row's type, and the rows never seen get their default
 * (parsed by the same code, so a default cannot disagree with the docs).
 */
#include "model/conf.h"

#include "model/acl.h"

#include "base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <yaml.h>

#define CONF_FILE_MAX (1u << 20)

enum ktype {
    T_ADDRS,    /* a list of addresses (or one), unix sockets allowed */
    T_SEEDS,    /* a list of host:port (or one) */
    T_ADDR_OPT, /* one address, "" = none */
    T_STR,      /* "" = none */
    T_SECRET,   /* like T_STR, never echoed in a message */
    T_DURATION, /* milliseconds */
    T_SIZE,     /* bytes */
    T_COUNT,    /* a plain number */
    T_ENUM,     /* one of names[], stored as its index */
    T_USERS,    /* a mapping of user names to ACL rules (acl.h) */
};

struct key {
    const char *name; /* dotted path */
    enum ktype type;
    size_t off;
    uint64_t min, max;          /* numeric bounds */
    const char *def;            /* NULL = required */
    int reloadable;
    int auto_ok;                /* "auto" means 0 */
    const char *const *names;   /* T_ENUM */
};

static const char *const read_policies[] = {"master", "prefer-replica", "replica", NULL};
static const char *const no_yes[] = {"no", "yes", NULL};
static const char *const no_optional_yes[] = {"no", "optional", "yes", NULL};
static const char *const tls_versions[] = {"TLSv1.2", "TLSv1.3", NULL};
static const char *const cross_slot_modes[] = {"emulate", "refuse", NULL};
static const char *const cross_slot_txn_modes[] = {"refuse", "per-slot", NULL};
static const char *const migration_modes[] = {"off", "read-through", "copy", NULL};

#define OFF(f) offsetof(struct conf, f)
#define MS(x) ((uint64_t)(x))
#define SEC(x) ((uint64_t)(x) * 1000)
#define KB(x) ((uint64_t)(x) << 10)
#define MB(x) ((uint64_t)(x) << 20)
#define GB(x) ((uint64_t)(x) << 30)

/* The table every key of the file, the man page and etc/respgate.yml follow. */
static const struct key keys[] = {
    {"listen", T_ADDRS, OFF(listen), 0, 0, "127.0.0.1:6380", 1, 0, NULL},
    {"workers", T_COUNT, OFF(workers), 1, 256, "auto", 0, 1, NULL},
    {"cluster.seeds", T_SEEDS, OFF(seeds), 0, 0, NULL, 1, 0, NULL},
    {"cluster.username", T_STR, OFF(cluster_username), 0, 0, "", 1, 0, NULL},
    {"cluster.password", T_SECRET, OFF(cluster_password), 0, 0, "", 1, 0, NULL},
    {"cluster.refresh_interval", T_DURATION, OFF(refresh_interval_ms), MS(100), SEC(3600), "1s", 1, 0, NULL},
    {"cluster.failover_wait", T_DURATION, OFF(failover_wait_ms), MS(0), SEC(3600), "auto", 1, 1, NULL},
    {"cluster.read_policy", T_ENUM, OFF(read_policy), 0, 0, "master", 1, 0, read_policies},
    {"cluster.cross_slot", T_ENUM, OFF(cross_slot), 0, 0, "emulate", 1, 0, cross_slot_modes},
    {"cluster.cross_slot_transactions", T_ENUM, OFF(cross_slot_transactions), 0, 0, "refuse", 1, 0,
     cross_slot_txn_modes},
    {"cluster.tls", T_ENUM, OFF(cluster_tls), 0, 0, "no", 0, 0, no_yes},
    {"cluster.tls_ca_file", T_STR, OFF(cluster_tls_ca_file), 0, 0, "", 1, 0, NULL},
    {"cluster.tls_cert_file", T_STR, OFF(cluster_tls_cert_file), 0, 0, "", 1, 0, NULL},
    {"cluster.tls_key_file", T_STR, OFF(cluster_tls_key_file), 0, 0, "", 1, 0, NULL},
    {"cluster.tls_verify_name", T_ENUM, OFF(cluster_tls_verify_name), 0, 0, "yes", 1, 0, no_yes},
    {"tls.cert_file", T_STR, OFF(tls_cert_file), 0, 0, "", 1, 0, NULL},
    {"tls.key_file", T_STR, OFF(tls_key_file), 0, 0, "", 1, 0, NULL},
    {"tls.ca_file", T_STR, OFF(tls_ca_file), 0, 0, "", 1, 0, NULL},
    {"tls.auth_clients", T_ENUM, OFF(tls_auth_clients), 0, 0, "no", 1, 0, no_optional_yes},
    {"tls.min_version", T_ENUM, OFF(tls_min_version), 0, 0, "TLSv1.2", 1, 0, tls_versions},
    {"tls.ciphers", T_STR, OFF(tls_ciphers), 0, 0, "", 1, 0, NULL},
    {"tls.ciphersuites", T_STR, OFF(tls_ciphersuites), 0, 0, "", 1, 0, NULL},
    {"client.password", T_SECRET, OFF(client_password), 0, 0, "", 1, 0, NULL},
    {"client.max_clients", T_COUNT, OFF(max_clients), 1, 1000000, "10000", 1, 0, NULL},
    {"client.idle_timeout", T_DURATION, OFF(idle_timeout_ms), 0, SEC(31 * 86400), "0", 1, 0, NULL},
    {"client.auth_timeout", T_DURATION, OFF(auth_timeout_ms), 0, SEC(3600), "10s", 1, 0, NULL},
    {"client.auth_max_failures", T_COUNT, OFF(auth_max_failures), 0, 1000000, "10", 1, 0, NULL},
    {"client.auth_delay", T_DURATION, OFF(auth_delay_ms), 0, SEC(60), "1s", 1, 0, NULL},
    {"client.output_buffer_limit", T_SIZE, OFF(output_buffer_limit), KB(64), GB(64), "64mb", 1, 0, NULL},
    {"client.pubsub_output_limit", T_SIZE, OFF(pubsub_output_limit), KB(64), GB(64), "32mb", 1, 0, NULL},
    {"client.pubsub_output_soft_limit", T_SIZE, OFF(pubsub_output_soft_limit), KB(64), GB(64), "8mb", 1, 0, NULL},
    {"client.pubsub_output_soft_time", T_DURATION, OFF(pubsub_output_soft_ms), 0, SEC(3600), "60s", 1, 0, NULL},
    {"timeouts.connect", T_DURATION, OFF(connect_timeout_ms), MS(10), SEC(600), "1s", 1, 0, NULL},
    {"timeouts.backend", T_DURATION, OFF(backend_timeout_ms), MS(10), SEC(3600), "2s", 1, 0, NULL},
    {"timeouts.shutdown", T_DURATION, OFF(shutdown_timeout_ms), MS(0), SEC(3600), "10s", 1, 0, NULL},
    {"timeouts.tcp_keepalive", T_DURATION, OFF(tcp_keepalive_ms), MS(0), SEC(7200), "300s", 1, 0, NULL},
    {"limits.max_bulk_len", T_SIZE, OFF(max_bulk_len), 1, GB(4), "512mb", 1, 0, NULL},
    {"limits.max_inline_len", T_SIZE, OFF(max_inline_len), 256, MB(512), "64kb", 1, 0, NULL},
    {"limits.max_multibulk_len", T_COUNT, OFF(max_multibulk_len), 1, INT_MAX, "1048576", 1, 0, NULL},
    {"limits.max_reply_len", T_SIZE, OFF(max_reply_len), MB(1), GB(16), "1gb", 1, 0, NULL},
    {"log.level", T_ENUM, OFF(log_level), 0, 0, "notice", 1, 0, log_level_names},
    {"log.file", T_STR, OFF(log_file), 0, 0, "", 1, 0, NULL},
    {"migration.mode", T_ENUM, OFF(migration_mode), 0, 0, "off", 1, 0, migration_modes},
    {"migration.source", T_ADDR_OPT, OFF(migration_source), 0, 0, "", 1, 0, NULL},
    {"migration.username", T_STR, OFF(migration_username), 0, 0, "", 1, 0, NULL},
    {"migration.password", T_SECRET, OFF(migration_password), 0, 0, "", 1, 0, NULL},
    {"migration.state_file", T_STR, OFF(migration_state_file), 0, 0, "", 1, 0, NULL},
    {"migration.max_value_size", T_SIZE, OFF(migration_max_value_size), 0, GB(4), "8mb", 1, 0, NULL},
    {"migration.rate_keys", T_COUNT, OFF(migration_rate_keys), 1, 10000000, "5000", 1, 0, NULL},
    {"migration.rate_bytes", T_SIZE, OFF(migration_rate_bytes), KB(1), GB(4), "32mb", 1, 0, NULL},
    {"migration.max_written_keys", T_COUNT, OFF(migration_max_written_keys), 1024, 1u << 30, "4194304", 0, 0, NULL},
    {"admin.listen", T_ADDR_OPT, OFF(admin), 0, 0, "", 1, 0, NULL},
    {"users", T_USERS, OFF(users), 0, 0, "", 1, 0, NULL},
    {"protected_mode", T_ENUM, OFF(protected_mode), 0, 0, "yes", 1, 0, no_yes},
    {"pidfile", T_STR, OFF(pidfile), 0, 0, "", 0, 0, NULL},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* ---- diagnostics ---- */

__attribute__((format(printf, 3, 0))) static void diag_add(char ***list, size_t *n, const char *fmt, va_list ap)
{
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        return;
    char **grown = realloc(*list, (*n + 1) * sizeof(**list));
    if (grown == NULL) {
        free(msg);
        return;
    }
    grown[(*n)++] = msg;
    *list = grown;
}

__attribute__((format(printf, 2, 3))) static void diag_error(struct conf_diag *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_add(&d->errors, &d->nerrors, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 2, 3))) static void diag_warning(struct conf_diag *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_add(&d->warnings, &d->nwarnings, fmt, ap);
    va_end(ap);
}

void conf_diag_free(struct conf_diag *d)
{
    for (size_t i = 0; i < d->nerrors; i++)
        free(d->errors[i]);
    for (size_t i = 0; i < d->nwarnings; i++)
        free(d->warnings[i]);
    free(d->errors);
    free(d->warnings);
    memset(d, 0, sizeof(*d));
}

/* ---- scalar syntax, shared with the rest of the program ---- */

static int parse_u64(const char *s, const char **end, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *end = s;
    *out = v;
    return 0;
}

struct unit {
    const char *suffix;
    uint64_t mult;
};

static int parse_with_units(const char *s, const struct unit *units, int bare_ok, uint64_t *out)
{
    const char *end;
    uint64_t v;
    if (parse_u64(s, &end, &v) < 0)
        return -1;
    if (*end == '\0') {
        if (!bare_ok && v != 0)
            return -1;
        *out = v;
        return 0;
    }
    for (const struct unit *u = units; u->suffix; u++) {
        if (strcasecmp(end, u->suffix) == 0) {
            if (v > UINT64_MAX / u->mult)
                return -1;
            *out = v * u->mult;
            return 0;
        }
    }
    return -1;
}

int conf_parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct unit units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {NULL, 0}};
    return parse_with_units(s, units, 0, out);
}

int conf_parse_size(const char *s, uint64_t *out)
{
    /* Redis's convention: k/m/g are powers of 1000, kb/mb/gb of 1024. */
    static const struct unit units[] = {
        {"b", 1}, {"k", 1000}, {"kb", KB(1)}, {"m", 1000000}, {"mb", MB(1)},
        {"g", 1000000000}, {"gb", GB(1)}, {NULL, 0}};
    return parse_with_units(s, units, 1, out);
}

static int parse_addr(const char *s, int flags, struct conf_addr *out);

int conf_parse_addr(const char *s, int flags, struct conf_addr *out)
{
    const char *space = strchr(s, ' ');
    if (space == NULL || !(flags & CONF_ADDR_OPTIONS))
        return parse_addr(s, flags, out);
    char addr[CONF_HOST_MAX + 16];
    if ((size_t)(space - s) >= sizeof(addr))
        return -1;
    memcpy(addr, s, (size_t)(space - s));
    addr[space - s] = '\0';
    if (parse_addr(addr, flags, out) < 0)
        return -1;
    /* Options: words after the address, each at most once, in any order. */
    for (const char *w = space + 1; *w;) {
        size_t n = strcspn(w, " ");
        if (n == 14 && memcmp(w, "proxy-protocol", 14) == 0 && !out->proxy_protocol)
            out->proxy_protocol = 1;
        else if (n == 3 && memcmp(w, "tls", 3) == 0 && !out->tls && !out->is_unix)
            out->tls = 1;
        else
            return -1;
        w += n;
        if (*w == ' ' && *++w == '\0')
            return -1;
    }
    return 0;
}

static int parse_addr(const char *s, int flags, struct conf_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (strncmp(s, "unix:", 5) == 0) {
        const char *path = s + 5;
        if (!(flags & CONF_ADDR_UNIX) || path[0] != '/' || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return -1;
        strcpy(out->host, path);
        out->is_unix = 1;
        return 0;
    }
    const char *host = s, *colon;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            return -1; /* a bare IPv6 literal needs brackets */
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= sizeof(out->host))
        return -1;
    const char *end;
    uint64_t port;
    if (parse_u64(colon + 1, &end, &port) < 0 || *end != '\0' || port == 0 || port > 65535)
        return -1;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    for (size_t i = 0; i < hlen; i++) {
        char c = out->host[i];
        if (!(c == '.' || c == '-' || c == ':' || c == '_' || (c >= '0' && c <= '9') ||
              (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return -1;
    }
    if (flags & CONF_ADDR_NUMERIC) {
        unsigned char ip[16];
        if (inet_pton(strchr(out->host, ':') ? AF_INET6 : AF_INET, out->host, ip) != 1)
            return -1;
    }
    out->port = (int)port;
    return 0;
}

int conf_addr_same(const struct conf_addr *a, const struct conf_addr *b)
{
    return a->is_unix == b->is_unix && a->port == b->port && strcmp(a->host, b->host) == 0;
}

int conf_addrs_equal(const struct conf_addrs *a, const struct conf_addrs *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof(*a->v)) == 0);
}

const char *conf_addr_str(const struct conf_addr *a, char *buf, size_t len)
{
    if (a->is_unix)
        snprintf(buf, len, "unix:%s", a->host);
    else if (strchr(a->host, ':'))
        snprintf(buf, len, "[%s]:%d", a->host, a->port);
    else
        snprintf(buf, len, "%s:%d", a->host, a->port);
    if (a->proxy_protocol)
        snprintf(buf + strlen(buf), len - strlen(buf), " proxy-protocol");
    if (a->tls)
        snprintf(buf + strlen(buf), len - strlen(buf), " tls");
    return buf;
}

/* ---- typed fields: parse, free, compare, copy ---- */

static void *field(struct conf *c, const struct key *k)
{
    return (char *)c + k->off;
}

static const void *cfield(const struct conf *c, const struct key *k)
{
    return (const char *)c + k->off;
}

static const char *expected(const struct key *k)
{
    switch (k->type) {
    case T_ADDRS:
        return "expected an IP address and port like 127.0.0.1:6380, or unix:/path, each optionally followed by "
               "\" proxy-protocol\" and (TCP only) \" tls\", or a list of them";
    case T_SEEDS: return "expected an address like 10.0.0.1:6379, or a list of them";
    case T_ADDR_OPT: return "expected an IP address and port like 127.0.0.1:9121, or \"\"";
    case T_STR:
    case T_SECRET: return "expected a string";
    case T_DURATION: return k->auto_ok ? "expected a duration like 500ms or 2s, or auto"
                                       : "expected a duration like 500ms or 2s";
    case T_SIZE: return "expected a size like 64kb or 512mb";
    case T_COUNT: return k->auto_ok ? "expected a number or auto" : "expected a number";
    case T_ENUM: break;
    case T_USERS: return "expected a mapping of user names to ACL rules, like app: \"on >password ~app:* +@all\"";
    }
    return "expected one of the listed words";
}

/* Writes V in the largest unit of its key's type that it is a whole number of. */
static void format_bound(const struct key *k, uint64_t v, char *buf, size_t len)
{
    static const struct unit durations[] = {{"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}, {NULL, 0}};
    static const struct unit sizes[] = {{"gb", GB(1)}, {"mb", MB(1)}, {"kb", KB(1)}, {"", 1}, {NULL, 0}};
    const struct unit *u = k->type == T_DURATION ? durations : k->type == T_SIZE ? sizes : NULL;
    while (u && u->suffix && v != 0 && v % u->mult != 0)
        u++;
    if (u && u->suffix)
        snprintf(buf, len, "%llu%s", (unsigned long long)(v / u->mult), v ? u->suffix : "");
    else
        snprintf(buf, len, "%llu", (unsigned long long)v);
}

/* Parses one scalar S into the field of K. Returns 0, or -1 with WHY filled. */
static int parse_scalar(const struct key *k, const char *s, struct conf *c, char *why, size_t wlen)
{
    void *f = field(c, k);
    switch (k->type) {
    case T_STR:
    case T_SECRET: {
        char **p = f;
        free(*p);
        *p = s[0] ? strdup(s) : NULL;
        return 0;
    }
    case T_ADDR_OPT: {
        struct conf_addr **p = f, a;
        free(*p);
        *p = NULL;
        if (s[0] == '\0')
            return 0;
        if (conf_parse_addr(s, CONF_ADDR_NUMERIC, &a) < 0)
            goto bad;
        *p = malloc(sizeof(a));
        if (*p == NULL)
            goto nomem;
        **p = a;
        return 0;
    }
    case T_ADDRS:
    case T_SEEDS: {
        struct conf_addrs *l = f;
        struct conf_addr a;
        if (l->n == CONF_ADDRS_MAX) {
            snprintf(why, wlen, "at most %d addresses", CONF_ADDRS_MAX);
            return -1;
        }
        if (conf_parse_addr(s, k->type == T_ADDRS ? CONF_ADDR_UNIX | CONF_ADDR_NUMERIC | CONF_ADDR_OPTIONS : 0,
                            &a) < 0)
            goto bad;
        struct conf_addr *v = realloc(l->v, (l->n + 1) * sizeof(*v));
        if (v == NULL)
            goto nomem;
        v[l->n++] = a;
        l->v = v;
        return 0;
    }
    case T_DURATION:
    case T_SIZE:
    case T_COUNT: {
        uint64_t v;
        const char *end;
        int rc;
        if (k->auto_ok && strcmp(s, "auto") == 0) {
            *(uint64_t *)f = 0;
            return 0;
        }
        if (k->type == T_DURATION)
            rc = conf_parse_duration_ms(s, &v);
        else if (k->type == T_SIZE)
            rc = conf_parse_size(s, &v);
        else
            rc = (parse_u64(s, &end, &v) < 0 || *end != '\0') ? -1 : 0;
        if (rc < 0)
            goto bad;
        if (v < k->min || v > k->max) {
            char lo[32], hi[32];
            format_bound(k, k->min, lo, sizeof(lo));
            format_bound(k, k->max, hi, sizeof(hi));
            snprintf(why, wlen, "%.64s is out of range (%s to %s%s)", s, lo, hi,
                     k->auto_ok ? ", or auto" : "");
            return -1;
        }
        *(uint64_t *)f = v;
        return 0;
    }
    case T_USERS: /* only its default, "" (none), is a scalar: load_users reads the mapping */
        return s[0] == '\0' ? 0 : (snprintf(why, wlen, "%s", expected(k)), -1);
    case T_ENUM:
        for (int i = 0; k->names[i]; i++) {
            if (strcmp(s, k->names[i]) == 0) {
                *(int *)f = i;
                return 0;
            }
        }
        {
            size_t o = (size_t)snprintf(why, wlen, "expected one of");
            for (int i = 0; k->names[i] && o < wlen; i++)
                o += (size_t)snprintf(why + o, wlen - o, "%s %s", i ? "," : "", k->names[i]);
            if (o < wlen)
                snprintf(why + o, wlen - o, ", got \"%.64s\"", s);
        }
        return -1;
    }
bad:
    if (k->type == T_SECRET)
        snprintf(why, wlen, "%s", expected(k));
    else
        snprintf(why, wlen, "%s, got \"%.64s\"", expected(k), s);
    return -1;
nomem:
    snprintf(why, wlen, "out of memory");
    return -1;
}

static void free_field(struct conf *c, const struct key *k)
{
    void *f = field(c, k);
    switch (k->type) {
    case T_ADDRS:
    case T_SEEDS: {
        struct conf_addrs *l = f;
        free(l->v);
        l->v = NULL;
        l->n = 0;
        break;
    }
    case T_ADDR_OPT:
    case T_STR:
    case T_SECRET:
        free(*(void **)f);
        *(void **)f = NULL;
        break;
    case T_USERS: {
        struct conf_users *u = f;
        for (size_t i = 0; i < u->n; i++) {
            free(u->v[i].rules);
            acl_user_free(u->v[i].acl);
        }
        free(u->v);
        u->v = NULL;
        u->n = 0;
        break;
    }
    default:
        break;
    }
}

static int equal_field(const struct conf *a, const struct conf *b, const struct key *k)
{
    const void *fa = cfield(a, k), *fb = cfield(b, k);
    switch (k->type) {
    case T_ADDRS:
    case T_SEEDS: {
        const struct conf_addrs *la = fa, *lb = fb;
        return la->n == lb->n && memcmp(la->v, lb->v, la->n * sizeof(*la->v)) == 0;
    }
    case T_ADDR_OPT: {
        const struct conf_addr *pa = *(struct conf_addr *const *)fa, *pb = *(struct conf_addr *const *)fb;
        return (!pa && !pb) || (pa && pb && memcmp(pa, pb, sizeof(*pa)) == 0);
    }
    case T_STR:
    case T_SECRET: {
        const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;
        return (!sa && !sb) || (sa && sb && strcmp(sa, sb) == 0);
    }
    case T_ENUM:
        return *(const int *)fa == *(const int *)fb;
    case T_USERS: {
        const struct conf_users *ua = fa, *ub = fb;
        if (ua->n != ub->n)
            return 0;
        for (size_t i = 0; i < ua->n; i++)
            if (strcmp(ua->v[i].acl->name, ub->v[i].acl->name) != 0 || strcmp(ua->v[i].rules, ub->v[i].rules) != 0)
                return 0;
        return 1;
    }
    default:
        return *(const uint64_t *)fa == *(const uint64_t *)fb;
    }
}

/* Replaces the field of K in DST by a copy of SRC's. Returns 0 or -1. */
static int copy_field(struct conf *dst, const struct conf *src, const struct key *k)
{
    void *fd = field(dst, k);
    const void *fs = cfield(src, k);
    free_field(dst, k);
    switch (k->type) {
    case T_ADDRS:
    case T_SEEDS: {
        const struct conf_addrs *ls = fs;
        struct conf_addrs *ld = fd;
        ld->v = malloc(ls->n * sizeof(*ls->v) + 1);
        if (ld->v == NULL)
            return -1;
        memcpy(ld->v, ls->v, ls->n * sizeof(*ls->v));
        ld->n = ls->n;
        return 0;
    }
    case T_ADDR_OPT: {
        const struct conf_addr *p = *(struct conf_addr *const *)fs;
        if (p == NULL)
            return 0;
        struct conf_addr *q = malloc(sizeof(*q));
        if (q == NULL)
            return -1;
        *q = *p;
        *(struct conf_addr **)fd = q;
        return 0;
    }
    case T_STR:
    case T_SECRET: {
        const char *s = *(char *const *)fs;
        if (s == NULL)
            return 0;
        return (*(char **)fd = strdup(s)) ? 0 : -1;
    }
    case T_ENUM:
        *(int *)fd = *(const int *)fs;
        return 0;
    case T_USERS: {
        const struct conf_users *us = fs;
        struct conf_users *ud = fd;
        char why[256];
        if ((ud->v = calloc(us->n + 1, sizeof(*ud->v))) == NULL)
            return -1;
        for (; ud->n < us->n; ud->n++) {
            struct conf_user *d = &ud->v[ud->n];
            const struct conf_user *src_user = &us->v[ud->n];
            if ((d->rules = strdup(src_user->rules)) == NULL ||
                (d->acl = acl_user_new(src_user->acl->name, src_user->rules, why, sizeof(why))) == NULL) {
                free(d->rules);
                return -1;
            }
        }
        return 0;
    }
    default:
        *(uint64_t *)fd = *(const uint64_t *)fs;
        return 0;
    }
}

/* ---- walking the document ---- */

struct loader {
    const char *name;
    yaml_document_t *doc;
    struct conf *conf;
    struct conf_diag *diag;
    int seen_line[NKEYS];    /* line of the key's first appearance, 0 = unseen */
    int seen_col[NKEYS];
    int section_line[NKEYS]; /* same, for a section, indexed by its first row */
};

static const char *node_kind(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a value";
}

static const struct key *find_key(const char *path)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, path) == 0)
            return &keys[i];
    return NULL;
}

/* Returns the index of the first row under section PATH, or -1. */
static int find_section(const char *path)
{
    size_t len = strlen(path);
    for (size_t i = 0; i < NKEYS; i++)
        if (strncmp(keys[i].name, path, len) == 0 && keys[i].name[len] == '.')
            return (int)i;
    return -1;
}

#define LINE(n) ((int)(n)->start_mark.line + 1)
#define COL(n) ((int)(n)->start_mark.column + 1)

/* YAML's null, written plainly (~, null), means "not set": the same as "". */
static void null_to_empty(yaml_node_t *n)
{
    const char *v = (const char *)n->data.scalar.value;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0)) {
        n->data.scalar.value[0] = '\0';
        n->data.scalar.length = 0;
    }
}

static int scalar_ok(struct loader *L, const char *path, yaml_node_t *n)
{
    null_to_empty(n);
    if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length) {
        diag_error(L->diag, "%s:%d:%d: %s: contains a NUL byte", L->name, LINE(n), COL(n), path);
        return 0;
    }
    return 1;
}

/* users: a mapping of names to rules, each made a user as it is read. */
static void load_users(struct loader *L, const struct key *k, yaml_node_t *v)
{
    struct conf_users *u = field(L->conf, k);
    char why[256];
    if (v->type == YAML_SCALAR_NODE && (null_to_empty(v), v->data.scalar.length == 0))
        return; /* "users:" alone: none */
    if (v->type != YAML_MAPPING_NODE) {
        diag_error(L->diag, "%s:%d:%d: %s: %s, got %s", L->name, LINE(v), COL(v), k->name, expected(k), node_kind(v));
        return;
    }
    size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    if (n > CONF_USERS_MAX) {
        diag_error(L->diag, "%s:%d:%d: %s: at most %d users", L->name, LINE(v), COL(v), k->name, CONF_USERS_MAX);
        return;
    }
    if ((u->v = calloc(n + 1, sizeof(*u->v))) == NULL) {
        diag_error(L->diag, "%s: out of memory", L->name);
        return;
    }
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key), *vn = yaml_document_get_node(L->doc, p->value);
        if (kn->type != YAML_SCALAR_NODE || vn->type != YAML_SCALAR_NODE) {
            yaml_node_t *bad = kn->type != YAML_SCALAR_NODE ? kn : vn;
            diag_error(L->diag, "%s:%d:%d: %s: %s, got %s", L->name, LINE(bad), COL(bad), k->name, expected(k),
                       node_kind(bad));
            continue;
        }
        const char *name = (const char *)kn->data.scalar.value, *rules = (const char *)vn->data.scalar.value;
        if (conf_user(L->conf, name, strlen(name))) {
            diag_error(L->diag, "%s:%d:%d: %s.%s: duplicate user", L->name, LINE(kn), COL(kn), k->name, name);
            continue;
        }
        struct conf_user *cu = &u->v[u->n];
        if ((cu->acl = acl_user_new(name, rules, why, sizeof(why))) == NULL) {
            diag_error(L->diag, "%s:%d:%d: %s.%.64s: %s", L->name, LINE(vn), COL(vn), k->name, name, why);
            continue;
        }
        if ((cu->rules = strdup(rules)) == NULL) {
            acl_user_free(cu->acl);
            diag_error(L->diag, "%s: out of memory", L->name);
            continue;
        }
        u->n++;
    }
}

static void load_value(struct loader *L, const struct key *k, yaml_node_t *v)
{
    char why[256];
    int is_list = k->type == T_ADDRS || k->type == T_SEEDS;
    if (k->type == T_USERS) {
        load_users(L, k, v);
        return;
    }

    if (v->type == YAML_SCALAR_NODE) {
        if (!scalar_ok(L, k->name, v))
            return;
        const char *s = (const char *)v->data.scalar.value;
        if (is_list && s[0] == '\0') {
            diag_error(L->diag, "%s:%d:%d: %s: expected at least one address", L->name, LINE(v), COL(v), k->name);
        } else if (parse_scalar(k, s, L->conf, why, sizeof(why)) < 0) {
            diag_error(L->diag, "%s:%d:%d: %s: %s", L->name, LINE(v), COL(v), k->name, why);
        }
        return;
    }
    if (!is_list || v->type != YAML_SEQUENCE_NODE) {
        diag_error(L->diag, "%s:%d:%d: %s: %s, got %s", L->name, LINE(v), COL(v), k->name, expected(k), node_kind(v));
        return;
    }
    if (v->data.sequence.items.top == v->data.sequence.items.start) {
        diag_error(L->diag, "%s:%d:%d: %s: expected at least one address", L->name, LINE(v), COL(v), k->name);
        return;
    }
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t *e = yaml_document_get_node(L->doc, *it);
        if (e->type != YAML_SCALAR_NODE) {
            diag_error(L->diag, "%s:%d:%d: %s: %s, got %s", L->name, LINE(e), COL(e), k->name, expected(k), node_kind(e));
        } else if (scalar_ok(L, k->name, e) &&
                   parse_scalar(k, (const char *)e->data.scalar.value, L->conf, why, sizeof(why)) < 0) {
            diag_error(L->diag, "%s:%d:%d: %s: %s", L->name, LINE(e), COL(e), k->name, why);
        }
    }
}

static void load_mapping(struct loader *L, yaml_node_t *map, const char *prefix)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, p->value);
        if (kn->type != YAML_SCALAR_NODE) {
            diag_error(L->diag, "%s:%d:%d: %s%s: expected a key name, got %s", L->name, LINE(kn), COL(kn),
                       prefix, prefix[0] ? "" : "(top level)", node_kind(kn));
            continue;
        }
        char path[128];
        snprintf(path, sizeof(path), "%s%s", prefix, (const char *)kn->data.scalar.value);

        /* "cluster.seeds:" at the top is not a way to spell a nested key. */
        const struct key *k = strchr((const char *)kn->data.scalar.value, '.') ? NULL : find_key(path);
        int sec = k || strchr((const char *)kn->data.scalar.value, '.') ? -1 : find_section(path);
        int *seen = k ? &L->seen_line[k - keys] : sec >= 0 ? &L->section_line[sec] : NULL;
        if (seen == NULL) {
            diag_error(L->diag, "%s:%d:%d: %s: unknown key", L->name, LINE(kn), COL(kn), path);
            continue;
        }
        if (*seen) {
            diag_error(L->diag, "%s:%d:%d: %s: duplicate key (first set on line %d)", L->name, LINE(kn), COL(kn),
                       path, *seen);
            continue;
        }
        *seen = LINE(kn);
        if (k)
            L->seen_col[k - keys] = COL(kn);
        if (k) {
            load_value(L, k, vn);
        } else if (vn->type == YAML_MAPPING_NODE) {
            strcat(path, ".");
            load_mapping(L, vn, path);
        } else if (vn->type != YAML_SCALAR_NODE || (null_to_empty(vn), vn->data.scalar.length != 0)) {
            /* "cluster:" (or "cluster: ~") is an empty section, not an error. */
            diag_error(L->diag, "%s:%d:%d: %s: expected a mapping of keys, got %s", L->name, LINE(vn), COL(vn),
                       path, node_kind(vn));
        }
    }
}

const struct acl_user *conf_user(const struct conf *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->users.n; i++)
        if (strlen(c->users.v[i].acl->name) == len && memcmp(c->users.v[i].acl->name, name, len) == 0)
            return c->users.v[i].acl;
    return NULL;
}

int conf_default_open(const struct conf *c)
{
    if (c->client_password)
        return 0;
    const struct acl_user *d = c->users.n ? conf_user(c, "default", 7) : NULL;
    return d == NULL || (d->on && d->nopass);
}

/* Rules that involve more than one key. */
static void check_together(struct loader *L)
{
    const struct key *users = find_key("users");
    if (L->conf->client_password && conf_user(L->conf, "default", 7))
        diag_error(L->diag, "%s:%d:%d: users.default: set the default user's password here or in client.password, "
                   "not in both", L->name, L->seen_line[users - keys], L->seen_col[users - keys]);
    const struct key *user = find_key("cluster.username");
    size_t i = (size_t)(user - keys);
    if (L->conf->cluster_username && L->conf->cluster_password == NULL)
        diag_error(L->diag, "%s:%d:%d: cluster.username: needs cluster.password (without it no AUTH is sent)",
                   L->name, L->seen_line[i], L->seen_col[i]);
    const struct conf *c = L->conf;
    int tls_listeners = 0;
    for (size_t a = 0; a < c->listen.n; a++) {
        tls_listeners += c->listen.v[a].tls;
        char buf[CONF_HOST_MAX + 32];
        if (c->listen.v[a].tls && c->listen.v[a].proxy_protocol)
            diag_error(L->diag, "%s: listen: %s: a PROXY header before TLS is not supported; let the proxy end TLS, "
                       "or drop one of the two", L->name, conf_addr_str(&c->listen.v[a], buf, sizeof(buf)));
    }
    if (tls_listeners && (c->tls_cert_file == NULL || c->tls_key_file == NULL))
        diag_error(L->diag, "%s: listen: an address marked tls needs tls.cert_file and tls.key_file", L->name);
    if (c->tls_auth_clients != TLS_AUTH_NO && c->tls_ca_file == NULL)
        diag_error(L->diag, "%s: tls.auth_clients: verifying client certificates needs tls.ca_file", L->name);
    if ((c->cluster_tls_cert_file == NULL) != (c->cluster_tls_key_file == NULL))
        diag_error(L->diag, "%s: cluster.tls_cert_file and cluster.tls_key_file go together", L->name);
    if (c->migration_mode != MIGRATION_OFF && (c->migration_source == NULL || c->migration_state_file == NULL))
        diag_error(L->diag, "%s: migration.mode: a migration needs migration.source and migration.state_file "
                   "(where the keys written during it are remembered)", L->name);
    if (c->migration_username && c->migration_password == NULL)
        diag_error(L->diag, "%s: migration.username: needs migration.password", L->name);
}

static void apply_defaults(struct loader *L)
{
    char why[256];
    for (size_t i = 0; i < NKEYS; i++) {
        if (L->seen_line[i])
            continue;
        if (keys[i].def == NULL) {
            diag_error(L->diag, "%s: %s: required key is missing", L->name, keys[i].name);
        } else if (parse_scalar(&keys[i], keys[i].def, L->conf, why, sizeof(why)) < 0) {
            diag_error(L->diag, "%s: %s: bad built-in default: %s", L->name, keys[i].name, why);
        }
    }
}

struct conf *conf_parse(const char *name, const char *text, size_t len, struct conf_diag *diag)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    struct loader L = {.name = name, .doc = &doc, .diag = diag};

    L.conf = calloc(1, sizeof(*L.conf));
    if (L.conf == NULL || !yaml_parser_initialize(&parser)) {
        diag_error(diag, "%s: out of memory", name);
        free(L.conf);
        return NULL;
    }
    atomic_init(&L.conf->refs, 1);
    static atomic_uint_fast64_t serials;
    L.conf->serial = atomic_fetch_add(&serials, 1) + 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        diag_error(diag, "%s:%d:%d: syntax error: %s%s%s", name, (int)parser.problem_mark.line + 1,
                   (int)parser.problem_mark.column + 1, parser.problem ? parser.problem : "invalid YAML",
                   parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        conf_unref(L.conf);
        return NULL;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE)
        load_mapping(&L, root, "");
    else if (root && !(root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0))
        diag_error(diag, "%s:%d:%d: expected a mapping of keys at the top level, got %s", name, LINE(root),
                   COL(root), node_kind(root));
    yaml_document_delete(&doc);

    /* A second document ("---") would be silently ignored: refuse it. */
    if (diag->nerrors == 0 && yaml_parser_load(&parser, &doc)) {
        yaml_node_t *extra = yaml_document_get_root_node(&doc);
        if (extra)
            diag_error(diag, "%s:%d:%d: only one YAML document is allowed", name, LINE(extra), COL(extra));
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);

    apply_defaults(&L);
    check_together(&L);
    if (diag->nerrors) {
        conf_unref(L.conf);
        return NULL;
    }
    return L.conf;
}

struct conf *conf_load(const char *path, struct conf_diag *diag)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        diag_error(diag, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    char *text = NULL;
    size_t len = 0;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        diag_error(diag, "%s: not a regular file", path);
    } else if ((uint64_t)st.st_size > CONF_FILE_MAX) {
        diag_error(diag, "%s: larger than %u bytes", path, CONF_FILE_MAX);
    } else if ((text = malloc((size_t)st.st_size + 1)) == NULL) {
        diag_error(diag, "%s: out of memory", path);
    } else {
        len = fread(text, 1, (size_t)st.st_size, f);
        if (ferror(f))
            diag_error(diag, "%s: read error: %s", path, strerror(errno));
    }
    fclose(f);
    if (diag->nerrors) {
        free(text);
        return NULL;
    }
    struct conf *c = conf_parse(path, text, len, diag);
    free(text);
    if (c && (st.st_mode & S_IROTH) && (c->cluster_password || c->client_password || c->users.n))
        diag_warning(diag, "%s: holds a password but is readable by other users (chmod o-r %s)", path, path);
    return c;
}

void conf_keep_fixed(struct conf *newc, const struct conf *old, struct conf_diag *diag)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        if (k->reloadable || equal_field(newc, old, k))
            continue;
        diag_warning(diag, "%s: changed, but takes effect only after a restart; keeping the running value", k->name);
        if (copy_field(newc, old, k) < 0)
            diag_error(diag, "%s: out of memory", k->name);
    }
}

struct conf *conf_ref(struct conf *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void conf_unref(struct conf *c)
{
    if (c == NULL || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < NKEYS; i++)
        free_field(c, &keys[i]);
    free(c);
}
