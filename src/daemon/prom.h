/*
 * prom: the Prometheus text of /metrics (admin.h), read from every worker's
 * counters (metrics.h), the slot map and the migration.
 */
#ifndef RG_PROM_H
#define RG_PROM_H

struct evbuffer;
struct shared;

/* Appends every metric SH shows in Prometheus text format 0.0.4 to OUT.
 * Any thread. */
void prom_render(struct shared *sh, struct evbuffer *out);

#endif
