/*
 * slotmap: an immutable, reference-counted view of the cluster: its nodes
 * and each slot's master, as CLUSTER NODES told it. topo.h builds one at
 * each change and publishes it; every thread reads the one in force.
 */
#ifndef RG_SLOTMAP_H
#define RG_SLOTMAP_H

#include "base/slot.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SLOTMAP_ID_LEN 40
#define SLOTMAP_ADDR_MAX 256

struct slotmap_node {
    char id[SLOTMAP_ID_LEN + 1];
    char host[SLOTMAP_ADDR_MAX];
    char name[SLOTMAP_ADDR_MAX]; /* its cluster-announce-hostname (7.0), "" if none */
    int port;
    int master;      /* index of its master for a replica, -1 for a master */
    unsigned is_master : 1;
    unsigned failing : 1; /* flagged fail or fail? */
};

/* A view of the cluster; NODES and OWNER never change once published. */
struct slotmap {
    atomic_int refs;
    uint64_t version;             /* increases with every published map */
    size_t nnodes;
    struct slotmap_node *nodes;
    int16_t owner[SLOT_COUNT];    /* index in nodes of the slot's master, -1 if none */
    size_t nassigned;             /* slots with an owner */
};

struct slotmap *slotmap_ref(struct slotmap *m);
void slotmap_unref(struct slotmap *m); /* NULL is a no-op */

/* Parses CLUSTER NODES output (TEXT, LEN bytes) into a new map. SOURCE_HOST
 * stands in for the address of a node that does not know its own ("myself"
 * with an empty host). Returns the map, or NULL with a reason in ERR. */
struct slotmap *slotmap_parse(const char *text, size_t len, const char *source_host, char *err, size_t errlen);

/* Whether A and B hold the same nodes, roles and owners (NULL: never). */
int slotmap_same(const struct slotmap *a, const struct slotmap *b);

#endif
