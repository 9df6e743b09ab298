/*
 * netio: a connection's reads and writes, plain or TLS. A bufferevent left
 * to itself writes only after the loop reports the socket writable, which
 * costs two epoll_ctl calls and a loop turn per reply on a request-response
 * connection. respgate keeps EV_WRITE disabled, writes directly at the end
 * of a burst, and enables EV_WRITE only while the kernel will not take more.
 *
 * A TLS connection (struct netio_tls, made once its socket is connected)
 * goes through the same two calls, so the request path does not know which
 * it has: the bufferevent still holds the plaintext input and output, and
 * its callbacks are called as a plain one's would be (the write callback
 * once the output drains to its low watermark, the event callback on a
 * write error or timeout), but OpenSSL reads and writes the socket, and
 * the bufferevent's own EV_WRITE is never enabled (it would write
 * plaintext). The handshake runs inside the first reads and writes.
 */
#ifndef RG_NETIO_H
#define RG_NETIO_H

#include <stddef.h>

struct bufferevent;
struct evbuffer;
struct ssl_ctx_st;
struct timeval;
struct netio_tls;

/* Starts TLS on BEV's connected socket, with a new session from CTX: as
 * the server (SERVER 1) or as the client. HOST (client side): the address
 * or name the peer's certificate must carry, also sent as SNI when a name;
 * NULL checks none. NULL if out of memory. */
struct netio_tls *netio_tls_new(struct bufferevent *bev, struct ssl_ctx_st *ctx, int server, const char *host);

/* Frees T (NULL is a no-op), first sending close_notify if the session is
 * sound; the socket is BEV's to close. Before freeing BEV. */
void netio_tls_free(struct netio_tls *t);

/* Ends the writing half of BEV's connection: TLS T's close_notify (if
 * T), then shutdown(SHUT_WR). Returns 0, or -1 (errno). */
int netio_shutdown(struct bufferevent *bev, struct netio_tls *t);

/* Whether T holds bytes it read and decrypted but nobody has read yet: the
 * socket will not report them, so the reader must read again. */
int netio_tls_buffered(const struct netio_tls *t);

/* Whether T's handshake is done (the peer is verified, if asked). */
int netio_tls_ready(const struct netio_tls *t);

/* Why the last netio_read or netio_flush on T (NULL: a plain socket)
 * failed, for a log line: the calling thread's copy, valid after T is
 * freed, until its next call. */
const char *netio_error(const struct netio_tls *t);

/* The write timeout of BEV (TLS T, or NULL): how long output may wait for
 * the socket before the event callback hears BEV_EVENT_TIMEOUT. NULL: none. */
void netio_set_write_timeout(struct bufferevent *bev, struct netio_tls *t, const struct timeval *tv);

/* Reads at most MAX bytes from BEV's socket (through TLS T, or NULL) into
 * its input, with one readv(2): libevent's own read asks ioctl(FIONREAD)
 * first, a syscall per read that the caller's fixed size makes
 * unnecessary. Returns the bytes read, 0 at EOF, NETIO_AGAIN when nothing
 * is there (or T's handshake goes on), or -1 on an error (netio_error). */
#define NETIO_AGAIN (-2)
int netio_read(struct bufferevent *bev, struct netio_tls *t, size_t max);

/* Writes as much of BEV's output as the socket (through TLS T, or NULL)
 * takes now. Returns 0 if all of it went out, 1 if some is left (the
 * bufferevent's write callback runs once it drains), or -1 on an error
 * (netio_error). */
int netio_flush(struct bufferevent *bev, struct netio_tls *t);

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
