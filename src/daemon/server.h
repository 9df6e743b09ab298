/*
 * server: the whole daemon once configured. Owns the control thread's
 * event_base (signals, reload, shutdown), the listening sockets and the
 * workers, and publishes what is in force to them (shared.h).
 */
#ifndef RG_SERVER_H
#define RG_SERVER_H

#include "model/shared.h"

#include <stdatomic.h>
#include <stdint.h>

struct conf;
struct slotmap;
struct nodecmd_table;
struct topo;
struct admin;
struct event_base;
struct event;

struct server {
    struct shared shared;        /* what is in force, for the workers (shared.h) */
    struct topo *topo;
    struct admin *admin;         /* the admin.listen endpoint, or NULL (admin.h) */

    struct event_base *base;
    struct event *sig_events[4];
    struct event *deadline;      /* shutdown: stop waiting for the workers */
    int stopping;                /* 0 running, 1 draining, 2 stopping now */
    unsigned reloads;            /* SIGHUPs handled (proc_reload_state_write) */
    atomic_int nrunning;         /* workers still in their loop */

    int *listen_fds;             /* [worker][listen address] */
    uint64_t listen_passed;      /* bit N: listen address N's socket came from systemd */
    int *listen_fds_next;        /* a reload's new listen addresses: [worker][address] fds, -1 where kept */
    atomic_int listen_pending;   /* workers yet to take listen_fds_next */
};

/* Binds the listeners and prepares the workers for CONF (the server takes
 * the reference). Returns 0, or -1 after logging why. */
int server_init(struct server *s, struct conf *conf, const char *conf_path);

/* Starts the workers, notifies systemd, and runs until a signal stops it.
 * Returns the process's exit code. */
int server_run(struct server *s);

void server_deinit(struct server *s);

/* Makes M (whose reference it takes) the map in force and tells the workers. */
void server_publish_map(struct server *s, struct slotmap *m);

/* Makes T (whose reference it takes) the learned commands and tells the workers. */
void server_publish_cmds(struct server *s, struct nodecmd_table *t);

/* Before the first map, every seed failed: requests that waited for the
 * map get CLUSTERDOWN, and so do later ones until a map arrives. */
void server_seeds_failed(struct server *s);

/* Called by a worker's thread as its loop ends. */
void server_worker_done(struct server *s);

#endif
