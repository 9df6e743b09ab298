/*
 * fanout: one client request that several nodes answer. A multi-key command
 * whose keys live in several slots is split into one part per slot (MGET,
 * MSET, DEL, ...); a command every master must see goes to each of them
 * (DBSIZE, FLUSHALL, SCRIPT LOAD, KEYS, WAIT, ...); SCAN walks the masters
 * one after another behind one cursor. Owns the parts (REQ_PART requests,
 * routed like any request, MOVED and ASK included) and the merge of their
 * replies into the one reply the client gets (enum cmd_merge). A failed
 * part makes the whole reply an error: never a silently short answer.
 */
#ifndef RG_FANOUT_H
#define RG_FANOUT_H

#include <stddef.h>

struct cmd_spec;
struct req;
struct resp_req;
struct worker;

/* Splits client request R (frame in R->buf, arguments Q, command CMD) whose
 * NKEYS keys, at argument indexes KEYS, are in more than one slot: one part
 * per slot, each with its keys in request order. R's frame is used up. */
void fanout_split(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q,
                  const size_t *keys, size_t nkeys);

/* Sends client request R (a CMD_BROADCAST command CMD, arguments Q) to the
 * masters it concerns: every master serving slots; for WAIT, those the
 * session wrote to since its last WAIT; for SCAN, the one its cursor names. */
void fanout_broadcast(struct worker *w, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q);

/* Sends FRAME (LEN bytes: INFO as every version knows it) to every master
 * for client request R; each reply is folded into IN (info_part, the parts
 * numbered in slot order) and the last one writes R's reply (info_finish).
 * Returns 0, and owns IN from then on; -1 (IN untouched) if there is no
 * master or no memory. */
struct info;
int fanout_info(struct worker *w, struct req *r, struct info *in, const char *frame, size_t len);

#endif
