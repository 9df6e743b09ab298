/*
 * netio: writing a bufferevent's output at once. A bufferevent left to
 * itself writes only after the loop reports the socket writable, which costs
 * two epoll_ctl calls and a loop turn per reply on a request-response
 * connection. respgate keeps EV_WRITE disabled, writes directly at the end
 * of a burst, and enables EV_WRITE only while the kernel will not take more.
 */
#ifndef RG_NETIO_H
#define RG_NETIO_H

#include <stddef.h>

struct bufferevent;
struct evbuffer;

/* Reads at most MAX bytes from BEV's socket into its input, with one
 * readv(2): libevent's own read asks ioctl(FIONREAD) first, a syscall per
 * read that the caller's fixed size makes unnecessary. Returns the bytes
 * read, 0 at EOF, NETIO_AGAIN when nothing is there, or -1 on an error
 * (errno says which). */
#define NETIO_AGAIN (-2)
int netio_read(struct bufferevent *bev, size_t max);

/* Writes as much of BEV's output as the socket takes now. Returns 0 if all
 * of it went out, 1 if some is left (EV_WRITE is then enabled, and the
 * bufferevent's write callback runs once it drains), or -1 on a socket error. */
int netio_flush(struct bufferevent *bev);

/* The first LEN bytes of B when its first chain holds them all, else NULL. */
const void *netio_front(struct evbuffer *b, size_t len);

/* Moves the first LEN bytes of SRC to the end of DST. A short run that lies
 * in SRC's first chain is copied, so that many replies share DST's chains
 * (one iovec for a burst) and no read-sized chain travels with a few bytes
 * in it; a longer one moves as whole chains where it can, copying nothing. */
#define NETIO_COPY_MAX 4096
void netio_move(struct evbuffer *dst, struct evbuffer *src, size_t len);

/* Turns TCP keepalive on for socket FD: the first probe after IDLE_S
 * seconds of silence, then every IDLE_S / 3 (at least 1), 3 unanswered
 * ones and the kernel closes it (Redis's tcp-keepalive). IDLE_S 0: off. */
void netio_keepalive(int fd, unsigned idle_s);

#endif
