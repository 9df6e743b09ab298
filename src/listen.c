/*
 * listen: binding listening sockets, see listen.h.
 */
#include "listen.h"

#include <errno.h>
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
