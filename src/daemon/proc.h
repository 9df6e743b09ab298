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

/* Records that reload number GEN ended, OK or not, in
 * $RUNTIME_DIRECTORY/reload-state (systemd's RuntimeDirectory=), for
 * proc_reload_wait. A no-op without RUNTIME_DIRECTORY. */
void proc_reload_state_write(unsigned gen, int ok);

/* Sends SIGHUP to PID and waits, at most TIMEOUT_MS, until its reload ended
 * (the reload state changes): for ExecReload=, so that "systemctl reload"
 * returns once the reload is done, and fails when the file was refused.
 * Returns 0 when it succeeded (or, without RUNTIME_DIRECTORY, once the
 * signal is sent), 1 when it was refused, or -errno (-ETIMEDOUT, -ESRCH). */
int proc_reload_wait(int pid, unsigned timeout_ms);

#endif
