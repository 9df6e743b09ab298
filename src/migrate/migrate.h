/*
 * migrate: moving a standalone Redis's keys into the cluster while the
 * application already runs through respgate (migration: in the config).
 *
 * Owns the server-wide set of keys written through respgate since the
 * migration began (64-bit fingerprints, appended to migration.state_file's
 * ".keys" twin so a restart forgets none), the imports (PTTL and DUMP on
 * the standalone, then RESTORE ... ABSTTL without REPLACE on the key's
 * master, routed like any request, MOVED and ASK included), the copy
 * mode's walk over the standalone's keys (SCAN, at a bounded rate, its
 * cursor saved in the state file), and the counters INFO and /metrics show.
 *
 * One rule keeps an old copy from ever replacing newer data: a key is
 * imported only if it is not in the written set, and RESTORE without
 * REPLACE refuses a key the cluster already has. So:
 *   - a read in the table of reads (GET, HGETALL, TYPE, EXISTS, ...) whose
 *     reply says "missing" imports its keys and is sent again;
 *   - a write marks its keys written before it goes; one whose reply or
 *     result depends on the old value (INCR, HSET, DEL's count, ...) first
 *     imports its keys, so it applies to the old data; one that replaces
 *     it whole (SET, MSET, SETEX) does not wait;
 *   - FLUSHALL or FLUSHDB through respgate stops every import for good.
 * A key is imported by one request at a time: any other request, on any
 * worker, that needs it waits for that import. The standalone is only ever read: HELLO, PTTL,
 * DUMP, SCAN, DBSIZE. A standalone that cannot be reached never fails a
 * request: the read is answered as the cluster answered it, the write goes
 * on, and both are counted as failed imports.
 */
#ifndef RG_MIGRATE_H
#define RG_MIGRATE_H

#include <stddef.h>

struct client;
struct cmd_spec;
struct conf;
struct evbuffer;
struct req;
struct resp_req;
struct event_base;
struct worker;

/* The process's migration state (the written set, the walk's cursor),
 * loaded from CONF's migration.state_file when it names one (else a later
 * reload may, see migrate_prepare); its saves run on BASE. Returns 0, or
 * -1 after logging why (a state file that cannot be read or made).
 * Control thread, before the workers start. */
int migrate_init(struct event_base *base, const struct conf *conf);

/* Before a reload takes CONF: opens its migration.state_file if none is
 * open yet (a migration begun by a reload). Returns 0, or -1 after logging
 * why (the reload fails). Control thread. */
int migrate_prepare(struct event_base *base, const struct conf *conf);

/* Writes the state file (the walk's cursor, the counts; written keys are
 * appended as they come). Control thread; once a second and at exit. */
void migrate_save(void);

/* Frees the migration state (after a last save); a no-op if none.
 * Control thread, after the workers stopped. */
void migrate_free(void);

/* Logs what a new configuration CONF (OLD: the one before, or NULL at
 * start) changes in the migration. Control thread. */
void migrate_conf_changed(const struct conf *conf, const struct conf *old);

/* Worker W took a new configuration (or started): starts or stops its
 * part of the walk (worker 0 walks). */
void migrate_worker_conf(struct worker *w);

/* At worker exit, before what is in flight fails: imports that end from
 * now on send nothing more, and what waited for them fails. */
void migrate_worker_stop(struct worker *w);
/* ... and once every backend is gone: frees W's migration state. */
void migrate_worker_free(struct worker *w);

/* Before routing C's request R (command CMD, arguments Q) while a
 * migration runs: marks a write's keys written, and for a write that
 * needs its keys' old copies, starts importing them. Returns 1 if R now
 * waits for them (C->hold: it is dispatched again once they are in), 0 if
 * it goes on now; a read that may miss is marked for migrate_missed. */
int migrate_before_routing(struct client *c, struct req *r, const struct cmd_spec *cmd, const struct resp_req *q);

/* R's reply of LEN bytes at the front of IN (first byte TYPE) came from
 * the cluster and R is a read migrate_before_routing marked: if the reply
 * says a key is missing, takes it (kept as R's answer should nothing be
 * imported), imports the keys and sends R again. Returns 1 then, 0 if the
 * reply is R's to complete as usual (IN untouched). */
int migrate_missed(struct worker *w, struct req *r, struct evbuffer *in, size_t len, char type);

/* The migration's lines of INFO respgate under configuration CF, appended
 * to OUT (none when no migration was ever configured). Any thread. */
void migrate_info(const struct conf *cf, struct evbuffer *out);

/* The migration's progress under configuration CF in a few lines for a
 * person (admin's /migration), appended to OUT. Any thread. */
void migrate_status(const struct conf *cf, struct evbuffer *out);

/* The migration's series of /metrics, appended to OUT. Any thread. */
void migrate_metrics(struct evbuffer *out);

#endif
