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
struct evbuffer;
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

/* A merge its caller does itself (INFO's, info.h), on STATE: PART folds
 * the reply of the master at HOST:PORT that is the INDEXth in slot order
 * and returns NULL or an error text; FINISH writes the whole answer to
 * OUT in protocol PROTO (2 or 3); FREE drops STATE. */
struct fanout_fold {
    const char *(*part)(void *state, unsigned index, struct evbuffer *reply, const char *host, int port);
    void (*finish)(void *state, struct evbuffer *out, int proto);
    void (*free)(void *state);
};

/* Sends FRAME (LEN bytes) to every master for client request R, and folds
 * their replies into STATE with FOLD; the last one writes R's reply.
 * Returns 0, and owns STATE from then on; -1 (STATE untouched) if there
 * is no master or no memory. */
int fanout_fold(struct worker *w, struct req *r, const struct fanout_fold *fold, void *state, const char *frame,
                size_t len);

#endif
