/*
 * prom: the Prometheus text of /metrics, see prom.h.
 */
#include "daemon/prom.h"
#include "base/clock.h"

#include "config.h"

#include "base/guard.h"
#include "loop/metrics.h"
#include "model/cmd.h"
#include "loop/worker.h"
#include "migrate/migrate.h"
#include "model/shared.h"
#include "model/slotmap.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const family_names[MF_COUNT] = {
    [MF_NONE] = "none",         [MF_READ] = "read",     [MF_WRITE] = "write",
    [MF_MULTI_NODE] = "multi_node", [MF_BLOCKING] = "blocking", [MF_TRANSACTION] = "transaction",
    [MF_PUBSUB] = "pubsub",     [MF_LOCAL] = "local",   [MF_OTHER] = "other",
};

static uint64_t load(const atomic_uint_fast64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP respgate_%s %s\n# TYPE respgate_%s %s\n", name, help, name, type);
}

static void one(struct evbuffer *out, const char *name, const char *type, const char *help, uint64_t v)
{
    head(out, name, type, help);
    evbuffer_add_printf(out, "respgate_%s %" PRIu64 "\n", name, v);
}

/* The per-family counters and latency histograms, summed over the workers. */
static void render_families(struct shared *sh, struct evbuffer *out)
{
    struct metrics_family_stats sum[MF_COUNT] = {0};
    for (int w = 0; w < sh->nworkers; w++)
        for (int f = 1; f < MF_COUNT; f++) {
            const struct metrics_family_stats *x = &sh->workers[w].metrics.family[f];
            metrics_add(&sum[f].requests, load(&x->requests));
            metrics_add(&sum[f].errors, load(&x->errors));
            metrics_add(&sum[f].sum_us, load(&x->sum_us));
            for (int b = 0; b <= METRICS_BUCKETS; b++)
                metrics_add(&sum[f].bucket[b], load(&x->bucket[b]));
        }
    head(out, "requests_total", "counter", "Requests answered, by command family.");
    for (int f = 1; f < MF_COUNT; f++)
        evbuffer_add_printf(out, "respgate_requests_total{family=\"%s\"} %" PRIu64 "\n", family_names[f],
                            load(&sum[f].requests));
    head(out, "request_errors_total", "counter", "Requests answered with an error reply, by command family.");
    for (int f = 1; f < MF_COUNT; f++)
        evbuffer_add_printf(out, "respgate_request_errors_total{family=\"%s\"} %" PRIu64 "\n", family_names[f],
                            load(&sum[f].errors));
    head(out, "request_duration_seconds", "histogram",
         "From a request's last byte read to its reply queued for the client, by command family.");
    for (int f = 1; f < MF_COUNT; f++) {
        uint64_t cum = 0;
        for (int b = 0; b <= METRICS_BUCKETS; b++) {
            cum += load(&sum[f].bucket[b]);
            if (b < METRICS_BUCKETS)
                evbuffer_add_printf(out, "respgate_request_duration_seconds_bucket{family=\"%s\",le=\"%g\"} %" PRIu64
                                         "\n",
                                    family_names[f], (double)metrics_bucket_us[b] / 1e6, cum);
            else
                evbuffer_add_printf(out,
                                    "respgate_request_duration_seconds_bucket{family=\"%s\",le=\"+Inf\"} %" PRIu64
                                    "\n",
                                    family_names[f], cum);
        }
        evbuffer_add_printf(out, "respgate_request_duration_seconds_sum{family=\"%s\"} %.6f\n", family_names[f],
                            (double)load(&sum[f].sum_us) / 1e6);
        evbuffer_add_printf(out, "respgate_request_duration_seconds_count{family=\"%s\"} %" PRIu64 "\n",
                            family_names[f], cum);
    }
}

/* The slot map's shape and age. */
static void render_map(struct shared *sh, struct evbuffer *out)
{
    struct slotmap *m = shared_map(sh);
    size_t masters = 0;
    for (size_t i = 0; m && i < m->nnodes; i++)
        masters += m->nodes[i].is_master;
    one(out, "slots_served", "gauge", "Slots with a master in the slot map.", m ? m->nassigned : 0);
    one(out, "cluster_masters", "gauge", "Masters in the slot map.", masters);
    one(out, "cluster_nodes", "gauge", "Nodes in the slot map.", m ? m->nnodes : 0);
    slotmap_unref(m);
    uint64_t ok = load(&sh->map_ok_us), now = clock_us();
    head(out, "slot_map_age_seconds", "gauge", "Time since CLUSTER NODES last answered (NaN before it ever did).");
    if (ok)
        evbuffer_add_printf(out, "respgate_slot_map_age_seconds %.3f\n", (double)(now - ok) / 1e6);
    else
        evbuffer_add_printf(out, "respgate_slot_map_age_seconds NaN\n");
    head(out, "topology_refreshes_total", "counter", "CLUSTER NODES asked, by result.");
    evbuffer_add_printf(out, "respgate_topology_refreshes_total{result=\"ok\"} %" PRIu64 "\n",
                        load(&sh->refreshes_ok));
    evbuffer_add_printf(out, "respgate_topology_refreshes_total{result=\"failed\"} %" PRIu64 "\n",
                        load(&sh->refreshes_failed));
}

static const char *const kind_names[MC_KINDS] = {"shared", "session", "pubsub"};
static const char *const state_names[MS_STATES] = {"closed", "connecting", "ready", "stalled"};

/* Backend connections per node, summed over the workers: each node once,
 * in the order of the first worker that has it. */
static void render_backends(struct shared *sh, struct evbuffer *out)
{
    struct sum {
        char host[256];
        int port;
        int conns[MC_KINDS * MS_STATES];
    } *sums = NULL;
    size_t nsums = 0, cap = 0;
    for (int i = 0; i < sh->nworkers; i++) {
        struct worker_metrics *m = &sh->workers[i].metrics;
        pthread_mutex_lock(&m->nodes_lock);
        for (struct metrics_node *n = m->nodes; n; n = n->next) {
            size_t j = 0;
            while (j < nsums && !(sums[j].port == n->port && strcmp(sums[j].host, n->host) == 0))
                j++;
            if (j == nsums) {
                if (nsums == cap) {
                    struct sum *more = realloc(sums, (cap = cap ? cap * 2 : 8) * sizeof(*sums));
                    if (more == NULL)
                        break; /* out of memory: the nodes so far */
                    sums = more;
                }
                memset(&sums[j], 0, sizeof(sums[j]));
                memcpy(sums[j].host, n->host, sizeof(n->host));
                sums[j].port = n->port;
                nsums++;
            }
            for (int k = 0; k < MC_KINDS * MS_STATES; k++)
                sums[j].conns[k] += atomic_load_explicit(&n->conns[k], memory_order_relaxed);
        }
        pthread_mutex_unlock(&m->nodes_lock);
    }
    head(out, "backend_connections", "gauge",
         "Connections to cluster nodes, by node, kind (shared, a session's, a subscriber's) and state.");
    for (size_t j = 0; j < nsums; j++) {
        /* A label value escapes what Prometheus's text format would misread. */
        char node[600], *p = node;
        int v6 = strchr(sums[j].host, ':') != NULL;
        if (v6)
            *p++ = '[';
        for (const char *h = sums[j].host; *h && p < node + sizeof(node) - 16; h++) {
            if (*h == '"' || *h == '\\' || *h == '\n')
                *p++ = '\\';
            *p++ = *h == '\n' ? 'n' : *h;
        }
        snprintf(p, node + sizeof(node) - p, v6 ? "]:%d" : ":%d", sums[j].port);
        for (int k = 0; k < MC_KINDS * MS_STATES; k++)
            evbuffer_add_printf(out, "respgate_backend_connections{node=\"%s\",kind=\"%s\",state=\"%s\"} %d\n",
                                node, kind_names[k / MS_STATES], state_names[k % MS_STATES],
                                sums[j].conns[k] > 0 ? sums[j].conns[k] : 0);
    }
    free(sums);
}

/* One series per command that may be answered by copying keys into one
 * slot (cross.h): a bounded label set, from the table. */
static void render_cross_slot(struct shared *sh, struct evbuffer *out)
{
    head(out, "cross_slot_emulated_total", "counter",
         "Commands on keys in several slots answered by copying them into one slot, by command.");
    for (size_t i = 0; i < cmd_table_len; i++) {
        const struct cmd_spec *cmd = &cmd_table[i];
        if (cmd->cross == CROSS_NONE)
            continue;
        uint64_t n = 0;
        for (int w = 0; w < sh->nworkers; w++)
            n += load(&sh->workers[w].metrics.cross_slot[cmd->id]);
        evbuffer_add_printf(out, "respgate_cross_slot_emulated_total{command=\"%s\"} %" PRIu64 "\n", cmd->name, n);
    }
}

void prom_render(struct shared *sh, struct evbuffer *out)
{
    uint64_t moved = 0, ask = 0, parked = 0, retries = 0, expired = 0, in = 0, sent = 0;
    int64_t blocked = 0;
    for (int i = 0; i < sh->nworkers; i++) {
        const struct worker *w = &sh->workers[i];
        ask += load(&w->stats.asks);
        moved += load(&w->stats.moved);
        parked += load(&w->stats.parked);
        retries += load(&w->stats.retries);
        expired += load(&w->stats.expired);
        blocked += atomic_load_explicit(&w->stats.blocked, memory_order_relaxed);
        in += load(&w->metrics.bytes_in);
        sent += load(&w->metrics.bytes_out);
    }
    char version[32];
    shared_redis_version(sh, version, sizeof(version));
    head(out, "info", "gauge", "respgate's version, and the nodes' Redis version.");
    evbuffer_add_printf(out, "respgate_info{version=\"%s\",redis_version=\"%s\"} 1\n", PACKAGE_VERSION, version);
    one(out, "clients_connected", "gauge", "Client connections open.", load(&sh->nclients));
    head(out, "clients_rejected_total", "counter", "Client connections refused, by reason.");
    evbuffer_add_printf(out, "respgate_clients_rejected_total{reason=\"max_clients\"} %" PRIu64 "\n",
                        load(&sh->rejected_max_clients));
    evbuffer_add_printf(out, "respgate_clients_rejected_total{reason=\"protected_mode\"} %" PRIu64 "\n",
                        load(&sh->guard->protected_refused.count));
    evbuffer_add_printf(out, "respgate_clients_rejected_total{reason=\"tls_handshake\"} %" PRIu64 "\n",
                        load(&sh->guard->tls_refused.count));
    evbuffer_add_printf(out, "respgate_clients_rejected_total{reason=\"auth_timeout\"} %" PRIu64 "\n",
                        load(&sh->guard->auth_timeouts));
    one(out, "auth_failures_total", "counter", "AUTH and HELLO AUTH refused for a wrong password.",
        load(&sh->guard->auth_failures));
    one(out, "auth_delayed_total", "counter",
        "AUTHs answered late: their address failed client.auth_max_failures times in a minute.",
        load(&sh->guard->auth_delayed));
    one(out, "clients_blocked", "gauge", "Clients waiting on a blocking command or WAIT.",
        blocked > 0 ? (uint64_t)blocked : 0);
    render_families(sh, out);
    head(out, "redirections_total", "counter", "MOVED and ASK replies followed.");
    evbuffer_add_printf(out, "respgate_redirections_total{kind=\"moved\"} %" PRIu64 "\n", moved);
    evbuffer_add_printf(out, "respgate_redirections_total{kind=\"ask\"} %" PRIu64 "\n", ask);
    one(out, "requests_waited_total", "counter",
        "Times a request had to wait for the cluster (TRYAGAIN, a node down, a failover).", parked);
    one(out, "requests_resent_total", "counter", "Times a waiting request was sent again.", retries);
    one(out, "requests_expired_total", "counter", "Requests failed at cluster.failover_wait.", expired);
    one(out, "client_bytes_received_total", "counter", "Bytes read from clients.", in);
    one(out, "client_bytes_sent_total", "counter", "Bytes of replies queued for clients.", sent);
    render_cross_slot(sh, out);
    render_backends(sh, out);
    render_map(sh, out);
    migrate_metrics(out);
}
