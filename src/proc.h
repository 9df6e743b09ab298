/*
 * proc: the process's dealings with its surroundings: going to the
 * background, the pid file, and systemd's readiness protocol.
 */
#ifndef RG_PROC_H
#define RG_PROC_H

#include <stddef.h>

/* Forks into the background. The parent waits until the child calls
 * proc_daemon_ready() and exits 0, or exits with the child's exit code if it
 * dies first; only the child returns (0). Returns -errno if fork fails. */
int proc_daemonize(void);
/* Tells the waiting parent that start-up succeeded; detaches stdio. */
void proc_daemon_ready(void);

/* Writes the current pid to PATH. Returns 0 or -errno. */
int proc_pidfile_write(const char *path);
void proc_pidfile_remove(const char *path);

/* Raises the soft limit on open files towards WANT (up to the hard limit).
 * Returns the limit now in force. */
unsigned long proc_raise_nofile(unsigned long want);

/* Sends STATE (e.g. "READY=1") to systemd when NOTIFY_SOCKET is set. Returns
 * 0 (also when not under systemd) or -errno. */
int proc_notify(const char *state);

#endif
