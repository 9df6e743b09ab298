/*
 * daemon: the whole process once configured. Owns the control thread's
 * event_base (signals, reload, shutdown), the listening sockets and the
 * workers, and publishes what is in force to them (shared.h).
 */
#ifndef RG_DAEMON_H
#define RG_DAEMON_H

#include "model/shared.h"
#include "daemon/thread.h"

#include <stdint.h>

struct conf;
struct topo;
struct admin;
struct event_base;
struct event;

struct daemon {
    struct shared shared;        /* what is in force, for the workers (shared.h) */
    struct topo *topo;
    struct admin *admin;         /* the admin.listen endpoint, or NULL (admin.h) */

    struct event_base *base;
    struct event *sig_events[4];
    struct event *deadline;      /* shutdown: stop waiting for the workers */
    unsigned reloads;            /* SIGHUPs handled (proc_reload_state_write) */
    struct thread_ctl ctl;       /* what the workers' threads share with this one (thread.h) */

    int *listen_fds;             /* [worker][listen address] */
    uint64_t listen_passed;      /* bit N: listen address N's socket came from systemd */
};

/* Binds the listeners and prepares the workers for CONF (the server takes
 * the reference). Returns 0, or -1 after logging why. */
int daemon_init(struct daemon *s, struct conf *conf, const char *conf_path);

/* Starts the workers, notifies systemd, and runs until a signal stops it.
 * Returns the process's exit code. */
int daemon_run(struct daemon *s);

void daemon_deinit(struct daemon *s);

#endif
