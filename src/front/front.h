/*
 * front: the client's side of a request. Accepts a connection into a
 * client (client.h), reads its socket (the PROXY header, inline and
 * multibulk frames, bounded per wake-up, paused by the client's
 * back-pressure), hands each request to dispatch (dispatch.h), and at the
 * client's end takes down what the path keeps for it (Pub/Sub, tracking,
 * the session).
 */
#ifndef RG_FRONT_H
#define RG_FRONT_H

#include <event2/util.h>

struct sockaddr;
struct ssl_ctx_st;
struct worker;

/* Wraps an accepted FD (peer SA, SALEN bytes) in a client of W, or
 * refuses it past client.max_clients or by protected mode, with Redis's
 * error. PROXY_PROTOCOL: its listener expects a PROXY header; TLS: the
 * listener's TLS context, or NULL. */
void front_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen, int proxy_protocol,
                  struct ssl_ctx_st *tls);

#endif
