/*
 * local: the commands respgate answers itself, for the client's own session
 * (PING, ECHO, QUIT, AUTH), and the gate that keeps an unauthenticated client
 * from anything else.
 */
#ifndef RG_LOCAL_H
#define RG_LOCAL_H

#include <stddef.h>

struct client;
struct req;
struct resp_req;

/* Answers request R (frame in R->buf, arguments Q) of client C into
 * R->reply; the router sends here every command the table marks local. */
void local_dispatch(struct client *c, struct req *r, const struct resp_req *q);

#endif
