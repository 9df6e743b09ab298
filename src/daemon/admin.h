/*
 * admin: the HTTP endpoint on admin.listen (libevent's evhttp, on the
 * control thread's event base): GET /healthz for a load balancer or
 * KeepAlived's vrrp_script, GET /metrics for Prometheus, GET /migration for
 * a person following a migration (migrate.h). It reads what the workers and
 * the topology publish (atomics and the published slot map) and never
 * touches the request path. Other paths get 404, other methods 405,
 * malformed requests evhttp's 400; at most ADMIN_MAX_CONNECTIONS
 * connections are served at once, each for at most ADMIN_TIMEOUT_S idle.
 */
#ifndef RG_ADMIN_H
#define RG_ADMIN_H

#include <stddef.h>

struct conf_addr;
struct event_base;
struct shared;
struct admin;

#define ADMIN_MAX_CONNECTIONS 16
#define ADMIN_TIMEOUT_S 5

/* Listens on A, on BASE (the control thread's), telling what SHARED holds.
 * Returns the endpoint, or NULL after logging why (the address cannot be
 * bound, or out of memory). */
struct admin *admin_start(struct event_base *base, struct shared *shared, const struct conf_addr *a);

/* Stops listening and frees D; NULL is a no-op. */
void admin_stop(struct admin *d);

/* The health SH shows, as /healthz tells it: 1 if healthy, else 0; WHY (LEN
 * bytes) gets the one line that says why, either way. */
int admin_health(struct shared *sh, char *why, size_t len);

#endif
