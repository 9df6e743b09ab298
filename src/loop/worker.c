/*
 * worker: one worker thread's context and its loop turn, see worker.h.
 */
#include "loop/worker.h"
#include "base/clock.h"

#include "model/conf.h"
#include "base/log.h"
#include "loop/metrics.h"
#include "model/nodecmd.h"
#include "model/tls.h"
#include "model/shared.h"
#include "model/slotmap.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void worker_check_drained(struct worker *w)
{
    if (w->draining && w->nclients == 0)
        event_base_loopexit(w->base, NULL);
}

/* A burst of clients (a pool opening, a storm of reconnections) leaves
 * its memory with the worker when it goes (thread.c gives it back). */
#define WORKER_TRIM_PEAK 1000

void worker_request_refresh(struct worker *w)
{
    shared_request_refresh(w->shared);
}

/* One turn of W's loop: a poll, then every callback it made ready. Each
 * turn is a call of its own, so the worker counts its turns itself:
 * libevent 2.1 has no hook at a turn's start, and telling turns by its
 * cached time needs the precise clock, whose timerfd costs a
 * timerfd_settime(2) every turn. A call that polls again because callbacks
 * were left active counts as one turn: at worst a flush waits a turn it
 * need not have. Returns 0 once the loop is told to stop (or its poll
 * fails). */
int worker_run_turn(struct worker *w)
{
    w->turn_no++;
    w->turn_reads = 0;
    w->turn_us = 0;
    return event_base_loop(w->base, EVLOOP_ONCE | EVLOOP_NO_EXIT_ON_EMPTY) == 0 && !event_base_got_break(w->base) &&
           !event_base_got_exit(w->base);
}

uint64_t worker_turn_us(struct worker *w)
{
    if (w->turn_us == 0)
        w->turn_us = clock_us();
    return w->turn_us;
}

void worker_note_read(struct worker *w, uint64_t *seen)
{
    if (*seen != w->turn_no) {
        *seen = w->turn_no;
        w->turn_reads++;
    }
}

int worker_busy_turn(struct worker *w)
{
    return w->turn_reads > 1;
}

int worker_hold_flush(struct worker *w, struct event *flush, short what, size_t queued)
{
    static const struct timeval zero = {0, 0};
    return !(what & EV_TIMEOUT) && queued < WORKER_HOLD_MAX && worker_busy_turn(w) && event_add(flush, &zero) == 0;
}

void worker_client_came(struct worker *w)
{
    if (w->nclients > w->nclients_peak)
        w->nclients_peak = w->nclients;
}

void worker_client_gone(struct worker *w)
{
    static const struct timeval later = {1, 0};
    if (w->trim && w->nclients_peak >= WORKER_TRIM_PEAK && w->nclients <= w->nclients_peak / 4 && !w->draining &&
        !evtimer_pending(w->trim, NULL))
        evtimer_add(w->trim, &later);
    worker_check_drained(w);
}

int worker_init(struct worker *w, struct shared *shared, int id)
{
    memset(w, 0, sizeof(*w));
    w->wake_fd = -1;
    pthread_mutex_init(&w->metrics.nodes_lock, NULL);
    w->shared = shared;
    w->id = id;
    TAILQ_INIT(&w->clients);
    TAILQ_INIT(&w->backends);
    TAILQ_INIT(&w->req_pool);
    TAILQ_INIT(&w->idle_private);
    w->conf = shared_conf(shared);
    w->tls = shared_tls(shared);
    /* The worker's loop is its thread's alone, so it has no lock: libevent
     * would take one for every event_active and clock read (2% of a
     * worker's CPU at -P 16). Other threads reach it only through the
     * eventfd behind thread_post (thread.h). Its clock is libevent's
     * default, the coarse one (4 ms steps on a kernel of HZ 250), by which
     * a timer may run up to a step early or late: its timers wait 50 ms and
     * more, the migration walk checks its pace by the precise clock
     * (migrate.c), and latencies are taken with the precise clock once per
     * turn (worker_turn_us). */
    struct event_config *ec = event_config_new();
    if (ec && event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK) == 0)
        w->base = event_base_new_with_config(ec);
    if (ec)
        event_config_free(ec);
    if (w->base == NULL) {
        log_error("worker %d: out of memory", id);
        return -1;
    }
    return 0;
}

void worker_deinit(struct worker *w)
{
    if (w->dns)
        evdns_base_free(w->dns, 1); /* lookups still under way call back, cancelled */
    if (w->base)
        event_base_free(w->base);
    conf_unref(w->conf);
    tls_ctxs_unref(w->tls);
    slotmap_unref(w->map);
    nodecmd_unref(w->learned);
    pthread_mutex_destroy(&w->metrics.nodes_lock);
    memset(w, 0, sizeof(*w));
}
