/*
 * netio: direct writes, see netio.h.
 */
#include "base/netio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define TLS_WRITE_MAX 16384 /* one record: what one SSL_write takes */
#define NETIO_ERR_MAX 160

struct netio_tls {
    SSL *ssl;
    struct bufferevent *bev;
    struct event *wev;       /* EV_WRITE on the socket while OpenSSL waits to write */
    struct timeval wtimeout; /* its timeout; 0: none */
    unsigned flush_on_read : 1; /* a write waits for the peer's handshake: the next read retries it */
    unsigned failed : 1;     /* the session is broken: no close_notify */
    unsigned shut : 1;       /* close_notify sent (or no longer possible) */
    char err[NETIO_ERR_MAX];
};

static int tlsio_flush(struct netio_tls *t);

/* The peer's socket can take more: what waited goes out, and the owner
 * hears of it as a plain bufferevent's would tell it. */
static void on_tls_writable(evutil_socket_t fd, short what, void *arg)
{
    struct netio_tls *t = arg;
    struct bufferevent *bev = t->bev;
    bufferevent_data_cb readcb, writecb;
    bufferevent_event_cb eventcb;
    void *cbarg;
    bufferevent_getcb(bev, &readcb, &writecb, &eventcb, &cbarg);
    if (what & EV_TIMEOUT) {
        snprintf(t->err, sizeof(t->err), "write timed out");
        if (eventcb)
            eventcb(bev, BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT, cbarg);
        return;
    }
    int rc = tlsio_flush(t);
    if (rc < 0) {
        if (eventcb)
            eventcb(bev, BEV_EVENT_WRITING | BEV_EVENT_ERROR, cbarg);
        return;
    }
    size_t low = 0;
    bufferevent_getwatermark(bev, EV_WRITE, &low, NULL);
    if (writecb && evbuffer_get_length(bufferevent_get_output(bev)) <= low)
        writecb(bev, cbarg); /* last: it may free BEV and T */
}

static void want_write(struct netio_tls *t)
{
    if (!event_pending(t->wev, EV_WRITE, NULL))
        event_add(t->wev, t->wtimeout.tv_sec || t->wtimeout.tv_usec ? &t->wtimeout : NULL);
}

/* The outcome of an SSL call that returned R: NETIO_AGAIN (and what it
 * waits for arranged), 0 for the peer's close, or -1 (why in T->err). */
static int tlsio_outcome(struct netio_tls *t, int r, int writing)
{
    int e = SSL_get_error(t->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        if (writing)
            t->flush_on_read = 1;
        return NETIO_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        /* On the read side only a handshake or an alert can want this;
         * the retry then comes with the next read. */
        want_write(t);
        return NETIO_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        t->failed = 1;
        if (errno == 0 || errno == EPIPE)
            return 0; /* the peer went away */
        snprintf(t->err, sizeof(t->err), "%s", strerror(errno));
        return -1;
    default: {
        t->failed = 1;
        unsigned long code = ERR_peek_last_error();
        char why[128] = "TLS error";
        if (code)
            ERR_error_string_n(code, why, sizeof(why));
        long v = SSL_get_verify_result(t->ssl);
        if (v != X509_V_OK)
            snprintf(t->err, sizeof(t->err), "TLS: %s (%s)", X509_verify_cert_error_string(v), why);
        else
            snprintf(t->err, sizeof(t->err), "TLS: %s", why);
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
    }
}

/* Runs T's handshake on. 0 once it is done, else as tlsio_outcome. */
static int tlsio_handshake(struct netio_tls *t, int writing)
{
    if (SSL_is_init_finished(t->ssl))
        return 0;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1)
        return 0;
    int rc = tlsio_outcome(t, r, writing);
    if (rc == 0) { /* a close before the handshake ended */
        snprintf(t->err, sizeof(t->err), "TLS: the peer closed the connection during the handshake");
        t->failed = 1;
        errno = ECONNRESET;
        return -1;
    }
    return rc;
}

/* Writes T's output through OpenSSL: 0 all gone, 1 some left, -1 failed. */
static int tlsio_flush(struct netio_tls *t)
{
    struct evbuffer *out = bufferevent_get_output(t->bev);
    t->flush_on_read = 0;
    int rc = tlsio_handshake(t, 1);
    if (rc < 0 && rc != NETIO_AGAIN)
        return -1;
    if (rc == NETIO_AGAIN) {
        t->flush_on_read = !event_pending(t->wev, EV_WRITE, NULL);
        return evbuffer_get_length(out) > 0;
    }
    evbuffer_unfreeze(out, 1);
    size_t len;
    while ((len = evbuffer_get_length(out)) > 0) {
        size_t n = len < TLS_WRITE_MAX ? len : TLS_WRITE_MAX;
        /* One record from many small replies: a copy, cheap beside the
         * encryption, where a record per chain would be a write(2) each. */
        const unsigned char *p = evbuffer_pullup(out, (ev_ssize_t)n);
        if (p == NULL) {
            snprintf(t->err, sizeof(t->err), "out of memory");
            rc = -1;
            break;
        }
        ERR_clear_error();
        int r = SSL_write(t->ssl, p, (int)n);
        if (r > 0) {
            evbuffer_drain(out, (size_t)r);
            continue;
        }
        rc = tlsio_outcome(t, r, 1);
        if (rc == 0) {
            snprintf(t->err, sizeof(t->err), "the peer closed the connection");
            rc = -1;
        }
        break;
    }
    evbuffer_freeze(out, 1);
    if (rc < 0 && rc != NETIO_AGAIN)
        return -1;
    if (evbuffer_get_length(out) == 0) {
        event_del(t->wev);
        return 0;
    }
    return 1;
}

static int tlsio_read(struct netio_tls *t, size_t max)
{
    if (t->flush_on_read && tlsio_flush(t) < 0)
        return -1;
    int rc = tlsio_handshake(t, 0);
    if (rc != 0)
        return rc;
    if (t->flush_on_read && tlsio_flush(t) < 0) /* the handshake just ended: what waited for it */
        return -1;
    struct evbuffer *in = bufferevent_get_input(t->bev);
    struct evbuffer_iovec v[2];
    evbuffer_unfreeze(in, 0);
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)max, v, 2);
    if (nv <= 0) {
        evbuffer_freeze(in, 0);
        snprintf(t->err, sizeof(t->err), "out of memory");
        return -1;
    }
    size_t got = 0;
    int cap = 0, more = 1;
    rc = 0;
    for (int i = 0; i < nv && more; i++) {
        size_t filled = 0;
        while (filled < v[i].iov_len && got + filled < max) {
            ERR_clear_error();
            size_t want = v[i].iov_len - filled;
            int r = SSL_read(t->ssl, (char *)v[i].iov_base + filled, (int)(want < INT32_MAX ? want : INT32_MAX));
            if (r <= 0) {
                rc = tlsio_outcome(t, r, 0);
                more = 0;
                break;
            }
            filled += (size_t)r;
        }
        v[i].iov_len = filled;
        got += filled;
        cap = i + 1;
    }
    evbuffer_commit_space(in, v, cap);
    evbuffer_freeze(in, 0);
    if (got > 0)
        return (int)got; /* an EOF or error after data shows at the next read */
    return rc;
}

struct netio_tls *netio_tls_new(struct bufferevent *bev, struct ssl_ctx_st *ctx, int server, const char *host)
{
    struct netio_tls *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->bev = bev;
    t->ssl = SSL_new(ctx);
    evutil_socket_t fd = bufferevent_getfd(bev);
    t->wev = event_new(bufferevent_get_base(bev), fd, EV_WRITE, on_tls_writable, t);
    if (t->ssl == NULL || t->wev == NULL || !SSL_set_fd(t->ssl, fd)) {
        netio_tls_free(t);
        return NULL;
    }
    if (server) {
        SSL_set_accept_state(t->ssl);
        return t;
    }
    SSL_set_connect_state(t->ssl);
    if (host) {
        unsigned char ip[16];
        int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
        X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
        if (!(is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host) : X509_VERIFY_PARAM_set1_host(param, host, 0)) ||
            (!is_ip && !SSL_set_tlsext_host_name(t->ssl, host))) {
            netio_tls_free(t);
            return NULL;
        }
    }
    return t;
}

/* Sends T's close_notify, once, if the session is sound: one try, with
 * whatever the socket takes. */
static void close_notify(struct netio_tls *t)
{
    if (t->shut || t->failed || !SSL_is_init_finished(t->ssl))
        return;
    t->shut = 1;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

int netio_shutdown(struct bufferevent *bev, struct netio_tls *t)
{
    if (t)
        close_notify(t);
    return shutdown(bufferevent_getfd(bev), SHUT_WR) < 0 ? -1 : 0;
}

void netio_tls_free(struct netio_tls *t)
{
    if (t == NULL)
        return;
    if (t->ssl) {
        close_notify(t);
        SSL_free(t->ssl);
    }
    ERR_clear_error();
    if (t->wev)
        event_free(t->wev);
    free(t);
}

int netio_tls_buffered(const struct netio_tls *t)
{
    return t && SSL_has_pending(t->ssl);
}

int netio_tls_ready(const struct netio_tls *t)
{
    return t == NULL || SSL_is_init_finished(t->ssl);
}

const char *netio_error(const struct netio_tls *t)
{
    /* A copy: callers free T (closing the connection) before they log. */
    static _Thread_local char why[NETIO_ERR_MAX];
    snprintf(why, sizeof(why), "%s", t && t->err[0] ? t->err : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    return why;
}

void netio_set_write_timeout(struct bufferevent *bev, struct netio_tls *t, const struct timeval *tv)
{
    if (t == NULL) {
        bufferevent_set_timeouts(bev, NULL, tv);
        return;
    }
    if (tv)
        t->wtimeout = *tv;
    else
        memset(&t->wtimeout, 0, sizeof(t->wtimeout));
    if (event_pending(t->wev, EV_WRITE, NULL)) {
        event_del(t->wev);
        want_write(t);
    }
}

int netio_read(struct bufferevent *bev, struct netio_tls *t, size_t max)
{
    if (t)
        return tlsio_read(t, max);
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[2]; /* on Linux, libevent's name for struct iovec */
    /* A socket bufferevent keeps its input's end frozen so that only it
     * fills it; thaw it around this read as it does around its own. */
    evbuffer_unfreeze(in, 0);
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)max, v, 2);
    if (nv <= 0) {
        evbuffer_freeze(in, 0);
        return -1;
    }
    /* read(2) when the space is one piece, as it nearly always is (the
     * input was drained): the kernel then has no iovec to copy in. */
    ssize_t n;
    do
        n = nv == 1 ? read(bufferevent_getfd(bev), v[0].iov_base, v[0].iov_len) : readv(bufferevent_getfd(bev), v, nv);
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

/* Writes what OUT's first NETIO_WRITE_IOV chains hold to FD, with
 * write(2) when that is one chain (one reply, or a burst copied into one)
 * and writev(2) otherwise. Returns the bytes written, or -1 (errno);
 * *ALL says whether that was everything those chains hold. */
#define NETIO_WRITE_IOV 64
static ssize_t write_chains(struct evbuffer *out, int fd, int *all)
{
    struct evbuffer_iovec v[NETIO_WRITE_IOV]; /* struct iovec, on Linux */
    int nv = evbuffer_peek(out, -1, NULL, v, NETIO_WRITE_IOV);
    nv = nv < NETIO_WRITE_IOV ? nv : NETIO_WRITE_IOV;
    size_t total = 0;
    for (int i = 0; i < nv; i++)
        total += v[i].iov_len;
    ssize_t n;
    do
        n = nv == 1 ? write(fd, v[0].iov_base, v[0].iov_len) : writev(fd, v, nv);
    while (n < 0 && errno == EINTR);
    *all = n >= 0 && (size_t)n == total;
    return n;
}

int netio_flush(struct bufferevent *bev, struct netio_tls *t)
{
    if (t)
        return event_pending(t->wev, EV_WRITE, NULL) ? 1 : tlsio_flush(t);
    struct evbuffer *out = bufferevent_get_output(bev);
    int fd = bufferevent_getfd(bev);
    int rc = 0;
    /* A socket bufferevent keeps its output's front frozen so that only it
     * drains it; it thaws it the same way around its own writes. */
    evbuffer_unfreeze(out, 1);
    while (evbuffer_get_length(out) > 0) {
        int all;
        ssize_t n = write_chains(out, fd, &all);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            rc = -1;
        if (n > 0)
            evbuffer_drain(out, (size_t)n);
        if (!all)
            break; /* the kernel took less: it would take nothing now */
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
