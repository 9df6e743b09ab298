/*
 * info: INFO as a single node of the cluster's version answers it. Owns the
 * table of INFO's sections (which are in "default", which only in "all",
 * which version has them, where each one's fields come from), the sections
 * respgate writes itself, and the merge of the masters' answers:
 *
 * - respgate's own: server, clients, replication, cpu and cluster are the
 *   first master's text with respgate's values where they describe the
 *   server the client talks to (redis_mode, process_id, connected_clients,
 *   blocked_clients, role, used_cpu_*, cluster_enabled, ...); respgate and
 *   nodes are respgate's alone;
 * - summed over the masters: memory, persistence, stats, commandstats,
 *   errorstats, latencystats (the largest percentile) and keyspace, by the
 *   rules in info.c (integers summed, a few taken as the smallest or the
 *   largest, *_human written again from the sum, other texts the first
 *   master's).
 *
 * The masters are asked "INFO" or "INFO all", which every version knows; a
 * client of a 6.2 cluster gets 6.2's answers (one argument at most, no
 * latencystats).
 */
#ifndef RG_INFO_H
#define RG_INFO_H

#include <stddef.h>

struct client;
struct req;
struct resp_req;

/* Answers client C's INFO request R (arguments Q) into R->reply, or asks
 * the masters for it. Returns 0 if answered now, 1 if the reply comes
 * later (R completes through fanout, or waits as C's held request for the
 * worker's first slot map). */
int info_run(struct client *c, struct req *r, const struct resp_req *q);

#endif
