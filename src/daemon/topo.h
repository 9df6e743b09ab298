/*
 * topo: the control plane. Learns the cluster's topology from CLUSTER NODES
 * (hiredis, asynchronous, on the control thread's event_base; never a
 * blocking call), builds an immutable slot map, and publishes it to the
 * workers when it changed. Refreshes on a timer, and at once when a worker
 * asks (after MOVED or a lost backend), one refresh in flight at a time.
 */
#ifndef RG_TOPO_H
#define RG_TOPO_H

struct server;
struct topo;

/* Starts discovering on S's event_base. Returns NULL on allocation failure. */
struct topo *topo_new(struct server *s);
void topo_free(struct topo *t);

/* Asks for a refresh soon. Any thread. */
void topo_request_refresh(struct topo *t);

#endif
