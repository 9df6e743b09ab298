/*
 * proc: daemonizing, pid file and systemd notification, see proc.h.
 *
 * The notification protocol is one datagram to the unix socket named by
 * $NOTIFY_SOCKET ("@" means the abstract namespace); it is small enough that
 * linking libsystemd for it would not earn its place.
 */
#include "proc.h"

#include <errno.h>
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
