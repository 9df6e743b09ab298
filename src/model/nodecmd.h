/*
 * nodecmd: the commands the nodes know and the generated table does not
 * (a newer Redis, Valkey, a module): learned from a node's COMMAND reply at
 * start-up and after each change of the map, so that respgate routes them
 * by their keys instead of answering "unknown command". Key specs where the
 * node reports them (7.0 and later), first/last/step otherwise (6.2). The
 * generated table stays the source of respgate's policies: a learned
 * command with keys is forwarded to its slot's master, a blocking one gets
 * a connection of its own, one without keys goes to any master, and an
 * administrative or Pub/Sub one, whose effect respgate cannot know, is
 * refused. An immutable table, reference counted like the slot map.
 */
#ifndef RG_NODECMD_H
#define RG_NODECMD_H

#include <stdatomic.h>
#include <stddef.h>

struct cmd_spec;
struct evbuffer;
struct resp_req;
struct redisReply;

struct nodecmd_table {
    atomic_int refs;
    size_t n;
    struct cmd_spec *specs; /* sorted by name: "name", or "parent|sub" of a known parent */
};

/* The commands in COMMAND's reply REPLY that the generated table lacks, as
 * a new table (one reference), or NULL if REPLY is not COMMAND's reply or
 * memory ran out. An empty table is a table. */
struct nodecmd_table *nodecmd_build(const struct redisReply *reply);

struct nodecmd_table *nodecmd_ref(struct nodecmd_table *t);
void nodecmd_unref(struct nodecmd_table *t); /* NULL is a no-op */

/* The learned spec for request REQ (arguments in FRAME): its command, or
 * the subcommand argv[1] names of a command the generated table knows.
 * NULL if T (which may be NULL) has neither. */
const struct cmd_spec *nodecmd_find(const struct nodecmd_table *t, struct evbuffer *frame,
                                    const struct resp_req *req);

#endif
