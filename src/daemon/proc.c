/*
 * proc: daemonizing, pid file and systemd notification, see proc.h.
 *
 * The notification protocol is one datagram to the unix socket named by
 * $NOTIFY_SOCKET ("@" means the abstract namespace); it is small enough that
 * linking libsystemd for it would not earn its place.
 */
#include "daemon/proc.h"

#include <errno.h>
#include <signal.h>
#include <time.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int ready_fd = -1; /* the child's end of the pipe to the waiting parent */

int proc_daemonize(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return -e;
    }
    if (pid > 0) {
        close(p[1]);
        char ok;
        ssize_t n = read(p[0], &ok, 1);
        if (n == 1)
            _exit(0);
        int st = 0;
        waitpid(pid, &st, 0);
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
    }
    close(p[0]);
    ready_fd = p[1];
    setsid();
    return 0;
}

void proc_daemon_ready(void)
{
    if (ready_fd < 0)
        return;
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
    ssize_t n = write(ready_fd, "1", 1);
    (void)n;
    close(ready_fd);
    ready_fd = -1;
}

int proc_pidfile_write(const char *path)
{
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = write(fd, buf, (size_t)len) == len ? 0 : -EIO;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    return rc;
}

void proc_pidfile_remove(const char *path)
{
    if (path)
        unlink(path);
}

unsigned long proc_raise_nofile(unsigned long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (unsigned long)rl.rlim_cur;
}

int proc_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return 0;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sun.sun_path))
        return -EINVAL;
    memcpy(sun.sun_path, path, len);
    if (path[0] == '@')
        sun.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    int rc = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, salen) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

#define RELOAD_STATE "reload-state"

/* $RUNTIME_DIRECTORY/NAME into BUF; -1 without RUNTIME_DIRECTORY. */
static int runtime_path(const char *name, char *buf, size_t len)
{
    const char *dir = getenv("RUNTIME_DIRECTORY");
    if (dir == NULL || dir[0] == '\0')
        return -1;
    /* systemd lists several directories separated by ':'; the first is ours. */
    size_t n = strcspn(dir, ":");
    return snprintf(buf, len, "%.*s/%s", (int)n, dir, name) < (int)len ? 0 : -1;
}

void proc_reload_state_write(unsigned gen, int ok)
{
    char path[4096], tmp[4200];
    if (runtime_path(RELOAD_STATE, path, sizeof(path)) < 0)
        return;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return;
    fprintf(f, "%ld %u %s\n", (long)getpid(), gen, ok ? "ok" : "failed");
    if (fclose(f) == 0)
        rename(tmp, path);
}

/* The reload state: its line into BUF, "" when there is none. */
static void read_state(const char *path, char *buf, size_t len)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    if (fgets(buf, (int)len, f) == NULL)
        buf[0] = '\0';
    fclose(f);
}

int proc_reload_wait(int pid, unsigned timeout_ms)
{
    char path[4096], before[64], now[64];
    int have = runtime_path(RELOAD_STATE, path, sizeof(path)) == 0;
    if (have)
        read_state(path, before, sizeof(before));
    if (kill((pid_t)pid, SIGHUP) < 0)
        return -errno;
    if (!have)
        return 0;
    for (unsigned waited = 0; waited < timeout_ms; waited += 20) {
        struct timespec tick = {0, 20 * 1000 * 1000};
        nanosleep(&tick, NULL);
        read_state(path, now, sizeof(now));
        /* A line of this process's (not one a previous one left). */
        if (now[0] && strcmp(now, before) != 0 && strtol(now, NULL, 10) == (long)pid)
            return strstr(now, " ok") ? 0 : 1;
        if (kill((pid_t)pid, 0) < 0)
            return -errno;
    }
    return -ETIMEDOUT;
}
