/*
 * session: the commands that hold a backend connection of their own, a
 * private backend (backend.h) owned by the client: transactions (MULTI, EXEC,
 * DISCARD, WATCH, UNWATCH) and blocking commands (BLPOP, BLMOVE, BZPOPMIN,
 * XREAD BLOCK, ...). Owns the client's transaction state.
 *
 * A transaction is pinned to the master of the slot of its first key (WATCH's
 * or the first queued command's); every later command must hash to that same
 * slot, or it gets -CROSSSLOT and EXEC aborts with Redis's EXECABORT. With
 * cluster.cross_slot_transactions: per-slot, a command of another slot goes
 * to a pin of that slot's own, behind its own MULTI; EXEC waits until every
 * queued command is answered (a refusal aborts them all), sends EXEC on
 * every pin, and puts the replies back in the order queued: atomic within
 * each slot, not across slots. A command split by slot (MGET, MSET, ...)
 * goes as one part to each slot's MULTI, merged at EXEC. Such a
 * transaction may not WATCH.
 * Commands queued before the first key are answered QUEUED here and sent
 * behind MULTI once the node is known. The pin is released after EXEC,
 * DISCARD, or UNWATCH outside MULTI, and its connection, which then holds
 * nothing of the session, goes to the worker's pool (backend.h). A blocking
 * command gets a private connection of its own with no reply timeout, back
 * to the pool once answered, closed when its client leaves (which unblocks
 * it on the node at once).
 */
#ifndef RG_SESSION_H
#define RG_SESSION_H

struct client;
struct evbuffer;
struct cmd_spec;
struct req;
struct resp_req;

/* Private connections one client may hold at once (a pin, blocking commands). */
#define SESSION_PRIVATE_MAX 8
/* Slots a transaction may span beyond its first (cluster.cross_slot_transactions: per-slot). */
#define SESSION_SPREAD_MAX 16
#define SPREAD_MAX_TEXT "17"
/* Commands queued inside MULTI before its first key. */
#define SESSION_QUEUED_MAX 1024

/* Whether client C's request for CMD (arguments Q in FRAME) is the
 * session's business: a transaction command, anything inside MULTI, or a
 * command that blocks. */
int session_owns(const struct client *c, const struct cmd_spec *cmd, struct evbuffer *frame,
                 const struct resp_req *q);

/* Handles request R of client C (command CMD, arguments Q). R is in C's
 * FIFO; it is answered now or when its reply arrives. */
void session_dispatch(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q);

/* The ops of a session's private connections (a transaction's pin, or
 * one beside a busy node's shared connection): replies are the client's,
 * a MOVED fails the command (TRYAGAIN), nothing is sent again, and a lost
 * pin ends its transaction and WATCH. */
struct backend_ops;
extern const struct backend_ops session_private_ops;

/* Forgets C's transaction and WATCH; the pin closes once drained (RESET). */
void session_reset(struct client *c);

/* Ends C's blocking commands now (closing their connections unblocks them
 * on their nodes), answering them with an error saying WHY: C sent EOF
 * (Redis drops a client at EOF), or respgate drains. */
void session_cancel_blocking(struct client *c, const char *why);

/* Frees C's session: queued commands and private connections; at client_free. */
void session_end(struct client *c);

#endif
