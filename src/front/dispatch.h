/*
 * dispatch: the top of the request path. Decides what becomes of a client's
 * request: answered here (local.h), refused, or handed to the module that
 * owns its kind: session.h (transactions, blocking commands), pubsub.h,
 * fanout.h (several nodes answer), or route.h (one slot's master). Nothing
 * below it calls it; replies come back through each request's sink (req.h).
 */
#ifndef RG_DISPATCH_H
#define RG_DISPATCH_H

struct client;
struct req;
struct resp_req;

/* Handles request R of client C, whose frame is in R->buf with arguments
 * SCAN. R is in C's FIFO; it is answered now or when its reply arrives; or
 * it must wait for the requests before it: then it is C->hold, and C reads
 * nothing more until it is dispatched again. */
void dispatch_request(struct client *c, struct req *r, const struct resp_req *scan);

#endif
