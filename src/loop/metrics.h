/*
 * metrics: what the request path counts for /metrics (admin.h; prom.h
 * renders the text). Each worker owns its counters and is their only
 * writer, so counting is a relaxed load and store, no lock and no
 * read-modify-write; the admin thread reads them whenever it is asked.
 * Request latency is the time from a request's last byte read to its reply
 * queued for the client (CLOCK_MONOTONIC, a vDSO call, not a syscall).
 */
#ifndef RG_METRICS_H
#define RG_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "model/cmd.h"

/* What a request is, for counting: from its command's table row. */
enum metrics_family {
    MF_NONE = 0,    /* not counted: a Pub/Sub message, an empty or refused frame */
    MF_READ,        /* forwarded reads */
    MF_WRITE,       /* forwarded writes */
    MF_MULTI_NODE,  /* split by slot or sent to every master */
    MF_BLOCKING,    /* on a connection of its own while it blocks */
    MF_TRANSACTION, /* MULTI, EXEC, DISCARD, WATCH, UNWATCH */
    MF_PUBSUB,      /* subscriptions, PUBLISH, PUBSUB */
    MF_LOCAL,       /* answered by respgate (PING, AUTH, HELLO, CLIENT, INFO, ...) */
    MF_OTHER,       /* the rest, unknown commands included */
    MF_COUNT
};

/* Latency bucket bounds, in microseconds; one more bucket is +Inf. */
#define METRICS_BUCKETS 14
extern const uint64_t metrics_bucket_us[METRICS_BUCKETS];

struct metrics_family_stats {
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t errors;  /* answered with an error reply */
    atomic_uint_fast64_t sum_us;
    atomic_uint_fast64_t bucket[METRICS_BUCKETS + 1]; /* not cumulative: render sums them */
};

/* Backend connections, by what they serve and where they stand. */
enum metrics_conn_kind { MC_SHARED, MC_SESSION, MC_PUBSUB, MC_KINDS };
enum metrics_conn_state { MS_CLOSED, MS_CONNECTING, MS_READY, MS_STALLED, MS_STATES };

/* A worker's backend connections to one node, counted by kind and state.
 * The worker changes the counts (at connection events, never per request);
 * the list itself changes under the worker's nodes_lock, which /metrics
 * holds while it reads. */
struct metrics_node {
    struct metrics_node *next;
    char host[256];
    int port;
    unsigned refs; /* backends counted here: the worker's only */
    atomic_int conns[MC_KINDS * MS_STATES]; /* by kind * MS_STATES + state */
};

struct worker_metrics {
    struct metrics_family_stats family[MF_COUNT];
    atomic_uint_fast64_t cross_slot[CMD_ID_MAX]; /* answered by copying keys into one slot (cross.h) */
    atomic_uint_fast64_t bytes_in;  /* read from clients */
    atomic_uint_fast64_t bytes_out; /* replies queued for clients */
    pthread_mutex_t nodes_lock;
    struct metrics_node *nodes;
};

/* The family of a request for command CMD (NULL: unknown). */
enum metrics_family metrics_family(const struct cmd_spec *cmd);

/* Adds N to the counter C that only the calling thread writes. */
static inline void metrics_add(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

/* One request of FAMILY answered after US microseconds, with an error
 * reply or not. */
void metrics_observe(struct worker_metrics *m, enum metrics_family family, uint64_t us, int error);

/* The entry of M for HOST:PORT, made if new, with one more reference;
 * NULL if out of memory (the connection goes uncounted). */
struct metrics_node *metrics_node_ref(struct worker_metrics *m, const char *host, int port);

/* Drops a reference to N; the last one removes it. */
void metrics_node_unref(struct worker_metrics *m, struct metrics_node *n);

/* Moves one connection of N from count FROM to count TO (-1: none), each
 * an index kind * MS_STATES + state. */
void metrics_node_move(struct metrics_node *n, int from, int to);

#endif
