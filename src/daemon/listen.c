/*
 * listen: binding listening sockets, see listen.h.
 */
#include "daemon/listen.h"

#include "base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_BACKLOG 511 /* Redis's tcp-backlog default */

static int bind_unix(const struct conf_addr *a, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strcpy(sun.sun_path, a->host); /* length checked by conf */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        if (errno != EADDRINUSE)
            goto fail;
        /* A live owner answers a connect; a stale file from a crash does not. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int alive = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0;
        if (probe >= 0)
            close(probe);
        struct stat st;
        if (alive || lstat(a->host, &st) < 0 || !S_ISSOCK(st.st_mode)) {
            errno = EADDRINUSE;
            goto fail;
        }
        unlink(a->host);
        if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
            goto fail;
    }
    if (listen(fd, LISTEN_BACKLOG) < 0)
        goto fail;
    return fd;
fail:;
    int e = errno;
    snprintf(err, errlen, "cannot listen on unix:%s: %s", a->host, strerror(e));
    if (fd >= 0)
        close(fd);
    return -e;
}

int listen_bind(const struct conf_addr *a, int nth, char *err, size_t errlen)
{
    if (a->is_unix)
        return bind_unix(a, err, errlen);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", a->port);
    int rc = getaddrinfo(a->host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: the host must be an IP address (%s)", a->host, a->port,
                 gai_strerror(rc));
        return -EINVAL;
    }
    /* SO_REUSEPORT would let this socket share the port with another
     * process of the same user (a second respgate) without an error. Binding
     * a plain socket first says whether anyone holds the port already. */
    if (nth == 0) {
        int probe = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
        int held = probe < 0 || setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
                   (ai->ai_family == AF_INET6 && setsockopt(probe, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
                   bind(probe, ai->ai_addr, ai->ai_addrlen) < 0;
        int e = errno;
        if (probe >= 0)
            close(probe);
        if (held) {
            snprintf(err, errlen, "cannot listen on %s:%d: %s", a->host, a->port, strerror(e));
            freeaddrinfo(ai);
            return -e;
        }
    }
    int one = 1, fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        (ai->ai_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s:%d: %s", a->host, a->port, strerror(e));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -e;
    }
    freeaddrinfo(ai);
    return fd;
}

void listen_unlink(const struct conf_addr *a)
{
    struct stat st;
    if (a->is_unix && lstat(a->host, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(a->host);
}

#define INHERITED_MAX 64
#define SD_LISTEN_FDS_START 3

static int inherited[INHERITED_MAX];
static int ninherited = -1; /* -1: the environment not read yet */

static void read_environment(void)
{
    ninherited = 0;
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    long n = pid && fds && strtol(pid, NULL, 10) == (long)getpid() ? strtol(fds, NULL, 10) : 0;
    for (long i = 0; i < n && i < 1024; i++) {
        int fd = SD_LISTEN_FDS_START + (int)i, fl = fcntl(fd, F_GETFL);
        if (i >= INHERITED_MAX) {
            log_warning("systemd passed socket fd %d, past the %d respgate takes; closing it", fd, INHERITED_MAX);
            close(fd);
            continue;
        }
        /* systemd passes blocking sockets (unless NonBlocking=yes): a
         * worker's accept loop would then block on the next accept. */
        fcntl(fd, F_SETFL, fl < 0 ? O_NONBLOCK : fl | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        inherited[ninherited++] = fd;
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

/* Whether listening socket FD is bound to A. */
static int bound_to(int fd, const struct conf_addr *a)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int type = 0, listening = 0;
    socklen_t tl = sizeof(type), ll = sizeof(listening);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) < 0 || type != SOCK_STREAM || !listening)
        return 0;
    if (a->is_unix)
        return ss.ss_family == AF_UNIX && strcmp(((struct sockaddr_un *)&ss)->sun_path, a->host) == 0;
    unsigned char want[16];
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        return ntohs(sin->sin_port) == a->port && inet_pton(AF_INET, a->host, want) == 1 &&
               memcmp(want, &sin->sin_addr, 4) == 0;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        return ntohs(sin6->sin6_port) == a->port && inet_pton(AF_INET6, a->host, want) == 1 &&
               memcmp(want, &sin6->sin6_addr, 16) == 0;
    }
    return 0;
}

int listen_inherited(const struct conf_addr *a)
{
    if (ninherited < 0)
        read_environment();
    for (int i = 0; i < ninherited; i++)
        if (inherited[i] >= 0 && bound_to(inherited[i], a)) {
            int fd = inherited[i];
            inherited[i] = -1;
            return fd;
        }
    return -1;
}

int listen_inherited_unused(void)
{
    int n = 0;
    for (int i = 0; i < ninherited; i++)
        if (inherited[i] >= 0) {
            log_warning("systemd passed socket fd %d, which listens on no address of listen; closing it",
                        inherited[i]);
            close(inherited[i]);
            inherited[i] = -1;
            n++;
        }
    return n;
}
