/*
 * pubsub: subscriptions. A subscriber gets private backends (backend.h) in
 * push mode, where frames are not matched one to one with requests: its
 * ordinary channels and patterns live on one connection to the Pub/Sub node,
 * the master of slot 0 (PUBLISH is spread to every node by the cluster bus,
 * so one node sees every message, once); its shard channels on one
 * connection to their slots' master; and its keyspace-notification channels
 * and patterns (__keyspace@..., __keyevent@..., which a node only sends for
 * its own keys) also on one connection to every other master. Owns the
 * subscriber's state (counts, subscribed mode, keyspace names) and the
 * delivery of messages into the client's reply FIFO, where they keep their
 * place behind earlier replies.
 */
#ifndef RG_PUBSUB_H
#define RG_PUBSUB_H

#include <stddef.h>

struct backend;
struct client;
struct cmd_spec;
struct evbuffer;
struct req;
struct resp_req;
struct worker;

/* Keyspace-notification names one client may subscribe to. */
#define PUBSUB_KEYSPACE_MAX 64

/* Whether client C's request for CMD is Pub/Sub's: a subscription command,
 * or PING while C may be subscribed. */
int pubsub_owns(const struct client *c, const struct cmd_spec *cmd);

/* The slot whose master is the Pub/Sub node (slot 0's, else any master's),
 * where PUBLISH and PUBSUB CHANNELS/NUMSUB/NUMPAT go; -1 if none. */
int pubsub_slot(struct worker *w);

/* Whether C has subscription requests awaiting their confirmations: its
 * next command must wait for them to know whether C is subscribed. */
int pubsub_pending(const struct client *c);

/* Whether C is subscribed to anything, as its nodes confirmed. */
int pubsub_subscribed(const struct client *c);

/* NULL, or the error for CMD while C is subscribed (Redis's words). */
const char *pubsub_refusal(const struct client *c, const struct cmd_spec *cmd, char *buf, size_t cap);

/* Handles request R of client C (command CMD, arguments Q); see dispatch.h. */
void pubsub_dispatch(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q);

/* W took a new slot map: keyspace subscriptions follow the masters (a new
 * master gets them, a demoted one's are closed). */
void pubsub_map_changed(struct worker *w);

/* Forgets C's subscriptions and closes their connections (RESET, client_free). */
void pubsub_reset(struct client *c);

#endif
