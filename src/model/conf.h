/*
 * conf: the configuration file (YAML) -> an immutable, reference-counted
 * struct conf.
 *
 * Every key is a row in one table (conf.c) with its type, bounds, default and
 * whether a reload (SIGHUP) may change it. Problems are reported all at once,
 * each as "FILE:LINE:COLUMN: KEY: what is wrong", into a struct conf_diag the
 * caller prints; nothing here logs or exits. Secrets are never copied into a
 * message.
 */
#ifndef RG_CONF_H
#define RG_CONF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#define CONF_DEFAULT_PATH SYSCONFDIR "/respgate/respgate.yml"
#define CONF_HOST_MAX 256

/* A listening or backend address: host:port, [v6]:port, or unix:/path. */
struct conf_addr {
    char host[CONF_HOST_MAX]; /* IP literal or name, brackets stripped; or the socket path */
    int port;                 /* 0 for a unix socket */
    int is_unix;
    int proxy_protocol;       /* listen: its clients come through a proxy that sends a PROXY header */
    int tls;                  /* listen: its clients speak TLS (tls: holds the certificate) */
};

/* A user of users: (acl.h), its rules kept as written to compare reloads. */
struct acl_user;
struct conf_user {
    char *rules;
    struct acl_user *acl;
};
struct conf_users {
    struct conf_user *v;
    size_t n;
};
#define CONF_USERS_MAX 1024

/* Addresses a list may hold (listen's are bits of a 64-bit mask in daemon.c). */
#define CONF_ADDRS_MAX 64

struct conf_addrs {
    struct conf_addr *v;
    size_t n;
};

enum read_policy { READ_MASTER = 0, READ_PREFER_REPLICA, READ_REPLICA };
/* cluster.cross_slot (cross.h): keys in several slots, answered as one Redis, or refused. */
enum cross_slot_mode { CROSS_SLOT_EMULATE = 0, CROSS_SLOT_REFUSE };
/* cluster.cross_slot_transactions (session.h): a transaction over several slots refused, or run per slot. */
enum cross_slot_txn_mode { CROSS_TXN_REFUSE = 0, CROSS_TXN_PER_SLOT };
enum tls_auth_clients { TLS_AUTH_NO = 0, TLS_AUTH_OPTIONAL, TLS_AUTH_YES };
enum tls_version { TLS_V1_2 = 0, TLS_V1_3 };
/* migration.mode (migrate.h): copy does what read-through does, and walks. */
enum migration_mode { MIGRATION_OFF = 0, MIGRATION_READ_THROUGH, MIGRATION_COPY };

struct conf {
    atomic_int refs;
    uint64_t serial;             /* unique per parsed config: an address may be reused, this never is */

    struct conf_addrs listen;
    uint64_t workers;            /* 0 = one per core */

    struct conf_addrs seeds;
    char *cluster_username;      /* NULL = plain AUTH password */
    char *cluster_password;      /* NULL = the cluster has no requirepass */
    uint64_t refresh_interval_ms;
    uint64_t failover_wait_ms;   /* 0 = cluster-node-timeout + 5 s */
    int read_policy;             /* enum read_policy */
    int cross_slot;              /* enum cross_slot_mode */
    int cross_slot_transactions; /* enum cross_slot_txn_mode */
    int cluster_tls;             /* 1: the nodes speak TLS (tls-port, tls-cluster yes) */
    char *cluster_tls_ca_file;   /* NULL = the system's CAs */
    char *cluster_tls_cert_file; /* a client certificate for the nodes' tls-auth-clients; NULL = none */
    char *cluster_tls_key_file;
    int cluster_tls_verify_name; /* 1: a node's certificate must name the address respgate connects to */

    /* The TLS listeners' (listen entries marked tls) certificate and policy. */
    char *tls_cert_file;
    char *tls_key_file;
    char *tls_ca_file;           /* verifies client certificates; NULL = none */
    int tls_auth_clients;        /* enum tls_auth_clients */
    int tls_min_version;         /* enum tls_version */
    char *tls_ciphers;           /* TLS 1.2's cipher list; NULL = OpenSSL's default */
    char *tls_ciphersuites;      /* TLS 1.3's; NULL = OpenSSL's default */

    char *client_password;       /* NULL = clients need not AUTH */
    struct conf_users users;     /* users: (acl.h); none = only the default user, who may run everything */
    uint64_t max_clients;
    uint64_t idle_timeout_ms;    /* 0 = never */
    uint64_t auth_timeout_ms;    /* a client that must AUTH and has not by then is closed; 0 = never */
    uint64_t auth_max_failures;  /* failed AUTHs from one address in a minute before AUTH waits; 0 = never */
    uint64_t auth_delay_ms;      /* how long it waits then */
    int protected_mode;          /* 1: without client.password, only loopback and unix-socket clients */
    uint64_t output_buffer_limit;
    uint64_t pubsub_output_limit;      /* a subscriber's, at once */
    uint64_t pubsub_output_soft_limit; /* ... or for longer than pubsub_output_soft_ms */
    uint64_t pubsub_output_soft_ms;

    uint64_t connect_timeout_ms;
    uint64_t backend_timeout_ms;
    uint64_t shutdown_timeout_ms;
    uint64_t tcp_keepalive_ms;   /* TCP keepalive on client and node connections, 0 = off */

    uint64_t max_bulk_len;
    uint64_t max_inline_len;
    uint64_t max_multibulk_len;
    uint64_t max_reply_len;      /* the longest reply a node may send, read whole before it is passed on */

    int log_level;               /* enum log_level */
    char *log_file;              /* NULL = stderr */

    /* migration: (migrate.h): moving a standalone Redis's keys into the cluster. */
    int migration_mode;          /* enum migration_mode */
    struct conf_addr *migration_source; /* the standalone Redis, NULL = none */
    char *migration_username;    /* NULL = plain AUTH password */
    char *migration_password;    /* NULL = it has no requirepass */
    char *migration_state_file;  /* keys written during the migration and the walk's cursor */
    uint64_t migration_max_value_size; /* larger values are copied by the walk only */
    uint64_t migration_rate_keys;      /* the walk's keys per second */
    uint64_t migration_rate_bytes;     /* ... and bytes per second */
    uint64_t migration_max_written_keys; /* keys remembered as written; past it, nothing more is copied */

    struct conf_addr *admin;     /* NULL = no admin listener */
    char *pidfile;               /* NULL = none */
};

/* What a load had to say: errors (the config is refused) and warnings. */
struct conf_diag {
    char **errors;
    size_t nerrors;
    char **warnings;
    size_t nwarnings;
};

void conf_diag_free(struct conf_diag *d);

/* Reads and checks PATH. Returns a new conf with one reference, or NULL with
 * at least one error in DIAG (which the caller frees). */
struct conf *conf_load(const char *path, struct conf_diag *diag);

/* Same as conf_load over TEXT; NAME stands for the file in messages. */
struct conf *conf_parse(const char *name, const char *text, size_t len, struct conf_diag *diag);

/* Carries every key a reload may not change from OLD into NEW, with a warning
 * in DIAG for each one the new file changed. */
void conf_keep_fixed(struct conf *newc, const struct conf *old, struct conf_diag *diag);

/* The user NAME (LEN bytes) of users:, or NULL. */
const struct acl_user *conf_user(const struct conf *c, const char *name, size_t len);

/* Whether the default user needs no password: no client.password, and
 * users: does not name it or names it with nopass (and on). */
int conf_default_open(const struct conf *c);

struct conf *conf_ref(struct conf *c);
void conf_unref(struct conf *c); /* NULL is a no-op */

/* Helpers shared with the options and the tests. Each returns 0 or -1. */
int conf_parse_duration_ms(const char *s, uint64_t *out);
int conf_parse_size(const char *s, uint64_t *out);
#define CONF_ADDR_UNIX 1    /* unix:/path is allowed */
#define CONF_ADDR_NUMERIC 2 /* the host must be an IP address (for listening) */
#define CONF_ADDR_OPTIONS 4 /* "ADDRESS proxy-protocol tls" (either or both) is allowed (listen) */
int conf_parse_addr(const char *s, int flags, struct conf_addr *out);
/* A duration key's milliseconds as the struct timeval libevent takes. */
static inline struct timeval conf_timeval(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* Writes "host:port", "[v6]:port" or "unix:/path" into BUF. */
const char *conf_addr_str(const struct conf_addr *a, char *buf, size_t len);

/* Whether A and B are the same socket address (their options aside). */
int conf_addr_same(const struct conf_addr *a, const struct conf_addr *b);

/* Whether lists A and B are equal, options included. */
int conf_addrs_equal(const struct conf_addrs *a, const struct conf_addrs *b);

#endif
