/*
 * server: the whole daemon once configured. Owns the control thread's
 * event_base (signals, reload, shutdown), the listening sockets, the workers,
 * the current configuration, and the counters every worker shares.
 */
#ifndef RG_SERVER_H
#define RG_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct conf;
struct tls_ctxs;
struct slotmap;
struct nodecmd_table;
struct topo;
struct admin;
struct guard;
struct migrate;
struct worker;
struct event_base;
struct event;

struct server {
    const char *conf_path;

    pthread_mutex_t conf_lock;   /* guards .conf, .tls and .map against their replacement */
    struct conf *conf;
    struct tls_ctxs *tls;        /* the TLS contexts .conf asks for (tls.h), made again at every reload */
    struct slotmap *map;         /* the last published, NULL before the first */
    struct nodecmd_table *cmds;  /* the commands the nodes know beyond cmdtab.c, NULL until learned */
    atomic_int seeds_failed;     /* before the first map: every seed failed once (requests stop waiting) */
    char redis_version[32];      /* the nodes' redis_version, "" until known */
    time_t started;
    struct topo *topo;
    struct admin *admin;         /* the admin.listen endpoint, or NULL (admin.h) */
    struct guard *guard;         /* failed AUTHs per address, protected mode's counts (guard.h) */
    struct migrate *migrate;     /* a migration's written keys, walk and counts (migrate.h) */

    struct event_base *base;
    struct event *sig_events[4];
    struct event *deadline;      /* shutdown: stop waiting for the workers */
    int stopping;                /* 0 running, 1 draining, 2 stopping now */
    unsigned reloads;            /* SIGHUPs handled (proc_reload_state_write) */
    atomic_int nrunning;         /* workers still in their loop */

    struct worker *workers;
    int nworkers;
    int *listen_fds;             /* [worker][listen address] */
    uint64_t listen_passed;      /* bit N: listen address N's socket came from systemd */
    int *listen_fds_next;        /* a reload's new listen addresses: [worker][address] fds, -1 where kept */
    atomic_int listen_pending;   /* workers yet to take listen_fds_next */

    atomic_uint_fast64_t node_timeout_ms; /* the nodes' cluster-node-timeout, 0 until known */
    atomic_uint_fast64_t busy_threshold_ms; /* the nodes' lua-time-limit (busy-reply-threshold), 0 until known */
    atomic_uint_fast64_t nclients;       /* over all workers, for max_clients */
    atomic_uint_fast64_t next_client_id;
    atomic_uint_fast64_t rejected_max_clients; /* clients refused at client.max_clients */
    atomic_uint_fast64_t refreshes_ok;     /* CLUSTER NODES answered (topo.c) */
    atomic_uint_fast64_t refreshes_failed; /* ... or not */
    atomic_uint_fast64_t map_ok_us;        /* when it last answered (metrics_now_us), 0 never */
};

/* Binds the listeners and prepares the workers for CONF (the server takes
 * the reference). Returns 0, or -1 after logging why. */
int server_init(struct server *s, struct conf *conf, const char *conf_path);

/* Starts the workers, notifies systemd, and runs until a signal stops it.
 * Returns the process's exit code. */
int server_run(struct server *s);

void server_deinit(struct server *s);

/* The configuration in force, with a reference the caller drops. Any thread. */
struct conf *server_conf(struct server *s);

/* The TLS contexts in force, with a reference the caller drops. Any thread. */
struct tls_ctxs *server_tls(struct server *s);

/* The slot map in force (with a reference the caller drops), or NULL. Any thread. */
struct slotmap *server_map(struct server *s);

/* Makes M (whose reference it takes) the map in force and tells the workers. */
void server_publish_map(struct server *s, struct slotmap *m);

/* The commands learned from the nodes (with a reference the caller drops),
 * or NULL. Any thread. */
struct nodecmd_table *server_cmds(struct server *s);

/* Makes T (whose reference it takes) the learned commands and tells the workers. */
void server_publish_cmds(struct server *s, struct nodecmd_table *t);

/* Before the first map, every seed failed: requests that waited for the
 * map get CLUSTERDOWN, and so do later ones until a map arrives. */
void server_seeds_failed(struct server *s);

/* The nodes' Redis version into BUF ("" until known). Any thread. */
void server_redis_version(struct server *s, char *buf, size_t len);
void server_set_redis_version(struct server *s, const char *version);

/* How long requests for a master that stopped answering wait for the
 * cluster to promote another: cluster.failover_wait, or by default the
 * nodes' cluster-node-timeout (15 s until known) plus 5 s. Any thread. */
uint64_t server_failover_wait_ms(struct server *s, const struct conf *cf);

/* How long a node running a script answers nobody: its lua-time-limit
 * (busy-reply-threshold), 5 s until known; after it, the node answers BUSY.
 * Any thread. */
uint64_t server_busy_threshold_ms(struct server *s);

/* Called by a worker's thread as its loop ends. */
void server_worker_done(struct server *s);

#endif
