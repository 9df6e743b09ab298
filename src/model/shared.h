/*
 * shared: what is in force, for every thread. The control thread publishes
 * the configuration, the TLS contexts, the slot map, the learned commands
 * and what it learned of the nodes; the workers read them, and count into
 * the totals kept here. It knows nothing of the daemon that fills it: the
 * one thing a worker asks of the control thread, a fresh slot map, goes
 * through the hook the daemon registers (shared_request_refresh).
 */
#ifndef RG_SHARED_H
#define RG_SHARED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct conf;
struct tls_ctxs;
struct slotmap;
struct nodecmd_table;
struct guard;
struct worker;

struct shared {
    pthread_mutex_t lock;        /* guards .conf, .tls, .map, .cmds and .redis_version against replacement */
    struct conf *conf;           /* the control thread reads it without the lock: it is the only writer */
    struct tls_ctxs *tls;        /* the TLS contexts .conf asks for (tls.h), made again at every reload */
    struct slotmap *map;         /* the last published, NULL before the first */
    struct nodecmd_table *cmds;  /* the commands the nodes know beyond cmdtab.c, NULL until learned */
    char redis_version[32];      /* the nodes' redis_version, "" until known */
    atomic_int seeds_failed;     /* before the first map: every seed failed once (requests stop waiting) */

    const char *conf_path;
    uint64_t started_us;                    /* clock_us */
    int stopping;                /* 0 running, 1 draining, 2 stopping now: the control thread's alone */
    struct guard *guard;         /* failed AUTHs per address, protected mode's counts (guard.h) */
    struct worker *workers;      /* every worker, for the totals INFO and /metrics add up */
    int nworkers;

    /* Asks the control thread for a fresh slot map; registered by it. */
    void (*refresh)(void *arg);
    void *refresh_arg;

    atomic_uint_fast64_t node_timeout_ms;   /* the nodes' cluster-node-timeout, 0 until known */
    atomic_uint_fast64_t busy_threshold_ms; /* the nodes' lua-time-limit (busy-reply-threshold), 0 until known */
    atomic_uint_fast64_t nclients;          /* over all workers, for max_clients */
    atomic_uint_fast64_t next_client_id;
    atomic_uint_fast64_t rejected_max_clients; /* clients refused at client.max_clients */
    atomic_uint_fast64_t refreshes_ok;      /* CLUSTER NODES answered (topo.c) */
    atomic_uint_fast64_t refreshes_failed;  /* ... or not */
    atomic_uint_fast64_t map_ok_us;         /* when it last answered (clock_us), 0 never */
};

/* Makes SH empty, with CONF (whose reference it takes) in force. */
void shared_init(struct shared *sh, struct conf *conf, const char *conf_path);

/* Drops every reference SH holds. */
void shared_deinit(struct shared *sh);

/* The configuration in force, with a reference the caller drops. Any thread. */
struct conf *shared_conf(struct shared *sh);

/* The TLS contexts in force, with a reference the caller drops. Any thread. */
struct tls_ctxs *shared_tls(struct shared *sh);

/* The slot map in force (with a reference the caller drops), or NULL. Any thread. */
struct slotmap *shared_map(struct shared *sh);

/* The commands learned from the nodes (with a reference the caller drops),
 * or NULL. Any thread. */
struct nodecmd_table *shared_cmds(struct shared *sh);

/* Put CONF and TLS, M, or T in force, each taking the caller's reference
 * and dropping the one it replaces. The control thread, which then tells
 * the workers. */
void shared_set_conf(struct shared *sh, struct conf *conf, struct tls_ctxs *tls);
void shared_set_map(struct shared *sh, struct slotmap *m);
void shared_set_cmds(struct shared *sh, struct nodecmd_table *t);

/* The nodes' Redis version into BUF ("" until known). Any thread. */
void shared_redis_version(struct shared *sh, char *buf, size_t len);
void shared_set_redis_version(struct shared *sh, const char *version);

/* How long requests for a master that stopped answering wait for the
 * cluster to promote another: cluster.failover_wait, or by default the
 * nodes' cluster-node-timeout (15 s until known) plus 5 s. Any thread. */
uint64_t shared_failover_wait_ms(struct shared *sh, const struct conf *cf);

/* How long a node running a script answers nobody: its lua-time-limit
 * (busy-reply-threshold), 5 s until known; after it, the node answers BUSY.
 * Any thread. */
uint64_t shared_busy_threshold_ms(struct shared *sh);

/* Asks the control thread for a fresh slot map (after MOVED, a lost
 * node); nothing before it registered its hook. Any thread. */
void shared_request_refresh(struct shared *sh);

#endif
