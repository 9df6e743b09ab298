/*
 * metrics: the request path's counters, see metrics.h.
 */
#include "loop/metrics.h"

#include "model/cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* 100 µs to 10 s, about three per decade. */
const uint64_t metrics_bucket_us[METRICS_BUCKETS] = {100,    250,    500,     1000,    2500,    5000,    10000,
                                                      25000, 50000, 100000, 250000, 500000, 1000000, 10000000};

enum metrics_family metrics_family(const struct cmd_spec *cmd)
{
    if (cmd == NULL)
        return MF_OTHER;
    if (cmd->kind == CMD_LOCAL)
        return MF_LOCAL;
    if (cmd->kind == CMD_PUBSUB)
        return MF_PUBSUB;
    if (cmd->op >= CMD_OP_MULTI && cmd->op <= CMD_OP_UNWATCH)
        return MF_TRANSACTION;
    if (cmd->flags & CMDF_BLOCKING)
        return MF_BLOCKING;
    if (cmd->kind == CMD_SPLIT || cmd->kind == CMD_BROADCAST)
        return MF_MULTI_NODE;
    if (cmd->flags & CMDF_WRITE)
        return MF_WRITE;
    if (cmd->flags & CMDF_READONLY)
        return MF_READ;
    return MF_OTHER;
}

void metrics_observe(struct worker_metrics *m, enum metrics_family family, uint64_t us, int error)
{
    struct metrics_family_stats *f = &m->family[family];
    size_t b = 0;
    while (b < METRICS_BUCKETS && us > metrics_bucket_us[b])
        b++;
    metrics_add(&f->requests, 1);
    metrics_add(&f->sum_us, us);
    metrics_add(&f->bucket[b], 1);
    if (error)
        metrics_add(&f->errors, 1);
}

struct metrics_node *metrics_node_ref(struct worker_metrics *m, const char *host, int port)
{
    struct metrics_node *n;
    for (n = m->nodes; n; n = n->next)
        if (n->port == port && strcmp(n->host, host) == 0)
            break;
    if (n == NULL) {
        if ((n = calloc(1, sizeof(*n))) == NULL)
            return NULL;
        snprintf(n->host, sizeof(n->host), "%s", host);
        n->port = port;
        pthread_mutex_lock(&m->nodes_lock);
        n->next = m->nodes;
        m->nodes = n;
        pthread_mutex_unlock(&m->nodes_lock);
    }
    n->refs++;
    return n;
}

void metrics_node_unref(struct worker_metrics *m, struct metrics_node *n)
{
    if (--n->refs)
        return;
    pthread_mutex_lock(&m->nodes_lock);
    struct metrics_node **p = &m->nodes;
    while (*p != n)
        p = &(*p)->next;
    *p = n->next;
    pthread_mutex_unlock(&m->nodes_lock);
    free(n);
}

void metrics_node_move(struct metrics_node *n, int from, int to)
{
    atomic_int *c = n->conns;
    if (from >= 0)
        atomic_store_explicit(&c[from], atomic_load_explicit(&c[from], memory_order_relaxed) - 1,
                              memory_order_relaxed);
    if (to >= 0)
        atomic_store_explicit(&c[to], atomic_load_explicit(&c[to], memory_order_relaxed) + 1, memory_order_relaxed);
}
