/*
 * local: the commands respgate answers itself, for the client's own session
 * (AUTH, HELLO, CLIENT, SELECT, RESET, PING, ECHO, QUIT, INFO), and the gate
 * that keeps an unauthenticated client from the rest.
 */
#ifndef RG_LOCAL_H
#define RG_LOCAL_H

struct client;
struct req;
struct resp_req;

/* Answers request R (frame in R->buf, arguments Q) of client C into
 * R->reply; dispatch sends here every command the table marks local.
 * Returns 0 when R is answered, 1 when its answer comes later (INFO asks
 * the masters for some sections). */
int local_dispatch(struct client *c, struct req *r, const struct resp_req *q);


#endif
