/*
 * netio: direct writes, see netio.h.
 */
#include "netio.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

int netio_read(struct bufferevent *bev, size_t max)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[2];
    struct iovec iov[2];
    /* A socket bufferevent keeps its input's end frozen so that only it
     * fills it; thaw it around this read as it does around its own. */
    evbuffer_unfreeze(in, 0);
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)max, v, 2);
    if (nv <= 0) {
        evbuffer_freeze(in, 0);
        return -1;
    }
    for (int i = 0; i < nv; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
    }
    ssize_t n;
    do
        n = readv(bufferevent_getfd(bev), iov, nv);
    while (n < 0 && errno == EINTR);
    int rc = n > 0 ? (int)n : n == 0 ? 0 : (errno == EAGAIN || errno == EWOULDBLOCK) ? NETIO_AGAIN : -1;
    int e = errno;
    size_t left = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < nv; i++) {
        v[i].iov_len = left < v[i].iov_len ? left : v[i].iov_len;
        left -= v[i].iov_len;
    }
    evbuffer_commit_space(in, v, nv);
    evbuffer_freeze(in, 0);
    errno = e;
    return rc;
}

int netio_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    evutil_socket_t fd = bufferevent_getfd(bev);
    int rc = 0;
    /* A socket bufferevent keeps its output's front frozen so that only it
     * drains it; it thaws it the same way around its own writes. */
    evbuffer_unfreeze(out, 1);
    while (evbuffer_get_length(out) > 0) {
        int n = evbuffer_write(out, fd);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            rc = -1;
        if (n <= 0)
            break;
    }
    evbuffer_freeze(out, 1);
    if (rc < 0)
        return -1;
    if (evbuffer_get_length(out) == 0)
        return 0;
    bufferevent_enable(bev, EV_WRITE);
    return 1;
}

void netio_keepalive(int fd, unsigned idle_s)
{
    int on = idle_s > 0, idle = (int)idle_s, intvl = idle_s / 3 ? (int)(idle_s / 3) : 1, cnt = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    if (!on)
        return;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

const void *netio_front(struct evbuffer *b, size_t len)
{
    struct evbuffer_iovec v;
    return evbuffer_peek(b, (ev_ssize_t)len, NULL, &v, 1) == 1 && v.iov_len >= len ? v.iov_base : NULL;
}

void netio_move(struct evbuffer *dst, struct evbuffer *src, size_t len)
{
    const void *p = len <= NETIO_COPY_MAX ? netio_front(src, len) : NULL;
    if (p && evbuffer_add(dst, p, len) == 0)
        evbuffer_drain(src, len);
    else
        evbuffer_remove_buffer(src, dst, len);
}
