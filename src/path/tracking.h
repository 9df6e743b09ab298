/*
 * tracking: client-side caching (CLIENT TRACKING) for RESP3 clients, in
 * BCAST mode. A tracking client gets a feed: a private push-mode connection
 * to every master, each in CLIENT TRACKING ON BCAST with the client's
 * prefixes, so that each master tells it of changes to its own keys; their
 * invalidation pushes join the client's reply FIFO. The feeds follow the
 * masters. A feed opened after the client's tracking began (a new master,
 * a lost feed replaced) first sends the client a null invalidation, flush
 * everything, as Redis does after FLUSHALL: changes made while that master
 * had no feed are unknown. Owns the client's tracking state and CLIENT
 * TRACKING, TRACKINGINFO, GETREDIR and CACHING.
 *
 * The default, OPTIN and OPTOUT modes track the keys a connection read:
 * through respgate the node sees its shared connections read, not the
 * client, so they are refused; so are REDIRECT (RESP2's way) and NOLOOP
 * (the node cannot tell the client's writes from others').
 */
#ifndef RG_TRACKING_H
#define RG_TRACKING_H

struct client;
struct evbuffer;
struct req;
struct resp_req;
struct worker;

/* CLIENT TRACKING, CLIENT TRACKINGINFO, CLIENT GETREDIR or CLIENT CACHING
 * (argument 1) for C: request R, arguments Q. Returns 0 when R->reply
 * holds the answer, 1 when R completes later (the masters confirm). */
int tracking_command(struct client *c, struct req *r, const struct resp_req *q);

/* W took a new slot map: feeds follow the masters. */
void tracking_map_changed(struct worker *w);

/* C stops tracking and its feeds close (RESET, HELLO changing protocol,
 * client_free). */
void tracking_reset(struct client *c);

#endif
