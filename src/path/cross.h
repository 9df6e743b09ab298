/*
 * cross: a client's command whose keys lie in several slots, answered as one
 * Redis answers it (cluster.cross_slot: emulate). Redis's own code does the
 * work: a value that lives in another slot is brought, with DUMP and
 * RESTORE, into a temporary key of the slot where the command runs, and the
 * real command runs there on it (enum cmd_cross says how, per command).
 * Owns the steps (REQ_PART requests, routed like any other, MOVED, ASK and
 * the wait for a failover included), the temporary keys, and the one reply
 * the client gets.
 *
 * Not atomic across slots: another client may write the same keys between
 * the steps (respgate(8) says what it can see then). A source is never
 * lost: RENAME deletes it only once the destination holds its value. A
 * temporary key carries a TTL, so none outlives a respgate that died
 * between the steps for long.
 */
#ifndef RG_CROSS_H
#define RG_CROSS_H

#include <stddef.h>
#include <stdint.h>

struct cmd_spec;
struct req;
struct resp_req;
struct worker;

/* Answers client request R (command CMD, arguments Q, frame in R->buf),
 * whose NKEYS keys, at argument indexes KEYS, lie in more than one slot,
 * the way CMD->cross says. R is answered either way. */
void cross_run(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q,
               const size_t *keys, size_t nkeys);

/* Whether cross_run answers CMD when it blocks (BLPOP, BLMOVE, ...): the
 * others would block a shared connection, and are refused (XREAD BLOCK). */
int cross_waits(const struct cmd_spec *cmd);

/* The prefix of every temporary key's name after its hash tag: a key of
 * the application never starts "{...}" with it. */
#define CROSS_TMP_PREFIX "respgate:tmp:"

#endif
