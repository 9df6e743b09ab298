/*
 * topo: the control plane. Learns the cluster's topology from CLUSTER NODES
 * (hiredis, asynchronous, on the control thread's event_base; never a
 * blocking call), builds an immutable slot map, and publishes it to the
 * workers when it changed. Refreshes on a timer, and at once when a worker
 * asks (after MOVED or a lost backend), one refresh in flight at a time.
 */
#ifndef RG_TOPO_H
#define RG_TOPO_H

#include "base/slot.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct server;
struct topo;

#define TOPO_ID_LEN 40
#define TOPO_ADDR_MAX 256

struct topo_node {
    char id[TOPO_ID_LEN + 1];
    char host[TOPO_ADDR_MAX];
    char name[TOPO_ADDR_MAX]; /* its cluster-announce-hostname (7.0), "" if none */
    int port;
    int master;      /* index of its master for a replica, -1 for a master */
    unsigned is_master : 1;
    unsigned failing : 1; /* flagged fail or fail? */
};

/* An immutable, reference-counted view of the cluster. */
struct slotmap {
    atomic_int refs;
    uint64_t version;             /* increases with every published map */
    size_t nnodes;
    struct topo_node *nodes;
    int16_t owner[SLOT_COUNT];    /* index in nodes of the slot's master, -1 if none */
    size_t nassigned;             /* slots with an owner */
};

struct slotmap *slotmap_ref(struct slotmap *m);
void slotmap_unref(struct slotmap *m); /* NULL is a no-op */

/* Parses CLUSTER NODES output (TEXT, LEN bytes) into a new map. SOURCE_HOST
 * stands in for the address of a node that does not know its own ("myself"
 * with an empty host). Returns the map, or NULL with a reason in ERR. */
struct slotmap *slotmap_parse(const char *text, size_t len, const char *source_host, char *err, size_t errlen);

/* Starts discovering on S's event_base. Returns NULL on allocation failure. */
struct topo *topo_new(struct server *s);
void topo_free(struct topo *t);

/* Asks for a refresh soon. Any thread. */
void topo_request_refresh(struct topo *t);

#endif
