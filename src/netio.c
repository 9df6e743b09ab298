/*
 * netio: direct writes, see netio.h.
 */
#include "netio.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

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
