/*
 * topo: the control plane. Learns the cluster's topology from CLUSTER NODES
 * (hiredis, asynchronous, on the control thread's event_base; never a
 * blocking call), builds an immutable slot map, and publishes it to the
 * workers when it changed. Refreshes on a timer, and at once when a worker
 * asks (after MOVED or a lost backend), one refresh in flight at a time.
 */
#ifndef RG_TOPO_H
#define RG_TOPO_H

struct event_base;
struct shared;
struct topo;

/* Starts discovering on BASE (the control thread's), publishing what it
 * learns in SHARED and telling the workers (thread.h). Returns NULL on
 * allocation failure. */
struct topo *topo_new(struct event_base *base, struct shared *shared);
void topo_free(struct topo *t);

/* Asks for a refresh soon. Any thread. */
void topo_request_refresh(struct topo *t);

#endif
