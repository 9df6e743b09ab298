/*
 * thread: a worker's thread, see thread.h.
 */
#include "daemon/thread.h"

#include "base/log.h"
#include "base/mem.h"
#include "model/conf.h"
#include "model/nodecmd.h"
#include "model/shared.h"
#include "model/slotmap.h"
#include "model/tls.h"
#include "loop/req.h"
#include "loop/worker.h"
#include "conn/backend.h"
#include "conn/client.h"
#include "path/pubsub.h"
#include "path/route.h"
#include "path/session.h"
#include "path/tracking.h"
#include "migrate/migrate.h"
#include "front/front.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct worker *w = arg;
    size_t i = 0;
    while (i < w->nlisteners && w->listeners[i] != l)
        i++;
    /* The listeners are the listen addresses, in order (not reloaded). */
    const struct conf_addr *a = i < w->conf->listen.n ? &w->conf->listen.v[i] : NULL;
    front_accept(w, fd, sa, salen, a && a->proxy_protocol, a && a->tls ? w->tls->listen : NULL);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i])
            evconnlistener_enable(w->listeners[i]);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct worker *w = arg;
    int e = EVUTIL_SOCKET_ERROR();
    /* Out of descriptors, most likely: the pending connection keeps the socket
     * readable, so retrying at once would spin. Pause accepting briefly. */
    static const struct timeval pause = {0, 100000};
    log_warning("worker %d: accept failed: %s; pausing accepts for 100ms", w->id,
                evutil_socket_error_to_string(e));
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i])
            evconnlistener_disable(w->listeners[i]);
    event_add(w->accept_pause, &pause);
}

static void close_listeners(struct worker *w)
{
    if (w->accept_pause)
        event_del(w->accept_pause);
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i])
            evconnlistener_free(w->listeners[i]);
    free(w->listeners);
    w->listeners = NULL;
    w->nlisteners = 0;
}

/* A reload changed the listen addresses from OLD to NEW: the listeners of
 * the addresses kept move to their new places, those of the addresses gone
 * close, and the new ones take the sockets the control thread bound. */
static void take_listeners(struct worker *w, const struct conf_addrs *old, const struct conf_addrs *new)
{
    struct thread_ctl *ctl = w->ctl;
    struct evconnlistener **next = calloc(new->n ? new->n : 1, sizeof(*next));
    for (size_t a = 0; a < new->n; a++) {
        int *fd = &ctl->listen_fds_next[(size_t)w->id * new->n + a];
        for (size_t o = 0; next && o < old->n && o < w->nlisteners; o++)
            if (w->listeners[o] && conf_addr_same(&old->v[o], &new->v[a])) {
                next[a] = w->listeners[o];
                w->listeners[o] = NULL;
            }
        if (next && next[a] == NULL && *fd >= 0 && !w->draining) {
            next[a] = evconnlistener_new(w->base, on_accept, w, LEV_OPT_CLOSE_ON_FREE, 0, *fd);
            if (next[a]) {
                evconnlistener_set_error_cb(next[a], on_accept_error);
                *fd = -1; /* the listener's now */
            }
        }
        if (*fd >= 0) {
            if (next && next[a] == NULL)
                log_error("worker %d: cannot watch a new listening socket", w->id);
            close(*fd);
            *fd = -1;
        }
    }
    /* Out of memory, the listeners no longer match the new listen's order:
     * this worker stops accepting (the others go on) rather than guess. */
    if (next == NULL)
        log_error("worker %d: out of memory applying listen; this worker accepts no more connections", w->id);
    for (size_t o = 0; o < w->nlisteners; o++) /* those of the addresses gone */
        if (w->listeners[o])
            evconnlistener_free(w->listeners[o]);
    free(w->listeners);
    w->listeners = next;
    w->nlisteners = next ? new->n : 0;
    atomic_fetch_sub(&ctl->listen_pending, 1);
}

/* A burst of clients (a pool opening, a storm of reconnections) leaves
 * its memory with the worker when it goes: what its buffers freed stays
 * in the allocator's caches and free pages (bench/README.md, "Memory
 * given back after a burst of clients"). Once a worker that had
 * WORKER_TRIM_PEAK clients or more is down to a quarter of them, it gives
 * that back a second later (worker_client_gone arms this timer), when the
 * rest of the burst has usually gone too. */
#define THREAD_TRIM_POOL 1024 /* request objects kept for reuse then (req.h) */

static void on_trim(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    /* Clients that came back meanwhile (an application restarted) will
     * use the memory again: it stays, until they go. */
    if (w->nclients > w->nclients_peak / 4)
        return;
    req_pool_shrink(w, THREAD_TRIM_POOL);
    int released = mem_thread_trim();
    log_info("worker %d: %zu clients at most, now %zu: memory given back%s", w->id, w->nclients_peak, w->nclients,
             released ? "" : " (the allocator had no free page to release)");
    w->nclients_peak = w->nclients;
}

static void start_drain(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = 1;
    close_listeners(w);
    struct client *c, *next;
    for (c = TAILQ_FIRST(&w->clients); c; c = next) {
        next = TAILQ_NEXT(c, link);
        session_cancel_blocking(c, "respgate is shutting down");
        client_shutdown(c);
    }
    worker_check_drained(w);
}

/* Takes the server's current map: each slot's owner becomes this worker's
 * backend for that node. Existing connections are kept and reused. */
/* Requests that came before the first map wait for it (dispatch_request
 * holds their clients): the map, or the news that every seed failed, sends
 * them on. */
static void release_first_map_waits(struct worker *w)
{
    struct client *c;
    TAILQ_FOREACH(c, &w->clients, link)
        if (c->hold)
            event_active(c->resume, EV_READ, 0);
}

static void apply_commands(struct worker *w)
{
    struct nodecmd_table *t = shared_cmds(w->shared);
    nodecmd_unref(w->learned);
    w->learned = t;
}

static void apply_map(struct worker *w)
{
    struct slotmap *m = shared_map(w->shared);
    if (m == NULL) {
        release_first_map_waits(w); /* every seed failed */
        return;
    }
    if (w->map == NULL)
        release_first_map_waits(w);
    if (route_apply_map(w, m) < 0) {
        log_error("worker %d: out of memory applying a new slot map", w->id);
        slotmap_unref(m);
        return;
    }
    slotmap_unref(w->map);
    w->map = m;
    route_note_version(w);
    pubsub_map_changed(w);
    tracking_map_changed(w);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    uint64_t n;
    (void)what;
    while (read(fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
        ; /* a nonblocking eventfd: one read takes every post */
    int msgs = atomic_exchange(&w->pending, 0);
    if (msgs & THREAD_STOP) {
        event_base_loopbreak(w->base);
        return;
    }
    if (msgs & THREAD_RELOAD) {
        struct conf *c = shared_conf(w->shared);
        int policy_changed = c->read_policy != w->conf->read_policy;
        if (!conf_addrs_equal(&c->listen, &w->conf->listen))
            take_listeners(w, &w->conf->listen, &c->listen);
        conf_unref(w->conf);
        w->conf = c;
        tls_ctxs_unref(w->tls);
        w->tls = shared_tls(w->shared); /* made with C: new connections take renewed certificates */
        /* Connections already open keep their credentials (a node keeps a
         * connection authenticated when its password changes); new ones use
         * the new ones. A new read policy picks the replicas again. */
        if (policy_changed && w->map && route_apply_map(w, w->map) < 0)
            log_error("worker %d: out of memory applying cluster.read_policy", w->id);
        migrate_worker_conf(w);
    }
    if (msgs & THREAD_TOPO) {
        apply_commands(w);
        apply_map(w);
    }
    if (msgs & THREAD_DRAIN)
        start_drain(w);
}

int thread_init(struct worker *w, struct thread_ctl *ctl, int id, const int *fds, size_t nfds)
{
    if (worker_init(w, ctl->shared, id) < 0)
        return -1;
    w->ctl = ctl;
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->wake = w->base && w->wake_fd >= 0 ? event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, on_wake, w) : NULL;
    if (w->wake)
        event_add(w->wake, NULL);
    w->accept_pause = evtimer_new(w->base, on_accept_resume, w);
    w->trim = evtimer_new(w->base, on_trim, w);
    w->listeners = calloc(nfds ? nfds : 1, sizeof(*w->listeners));
    if (w->wake == NULL || w->accept_pause == NULL || w->trim == NULL || w->listeners == NULL || route_init(w) < 0) {
        log_error("worker %d: out of memory", id);
        return -1;
    }
    for (size_t i = 0; i < nfds; i++) {
        /* backlog 0: the socket is already listening */
        w->listeners[i] = evconnlistener_new(w->base, on_accept, w, LEV_OPT_CLOSE_ON_FREE, 0, fds[i]);
        if (w->listeners[i] == NULL) {
            log_error("worker %d: cannot watch a listening socket", id);
            return -1;
        }
        w->nlisteners++;
        evconnlistener_set_error_cb(w->listeners[i], on_accept_error);
    }
    return 0;
}

static void *thread_main(void *arg)
{
    struct worker *w = arg;
    migrate_worker_conf(w);
    while (worker_run_turn(w))
        ;
    /* Whatever is left at the deadline or on an immediate stop goes now. */
    while (!TAILQ_EMPTY(&w->clients))
        client_free(TAILQ_FIRST(&w->clients));
    close_listeners(w);
    migrate_worker_stop(w);
    route_stop(w);
    backend_free_all(w);
    migrate_worker_free(w);
    req_pool_shrink(w, 0);
    if (atomic_fetch_sub(&w->ctl->nrunning, 1) == 1)
        event_base_loopexit(w->ctl->base, NULL); /* the last worker ends the control thread's loop */
    return NULL;
}

int thread_start(struct worker *w)
{
    if (pthread_create(&w->thread, NULL, thread_main, w) != 0) {
        log_error("worker %d: cannot start a thread", w->id);
        return -1;
    }
    w->started = 1;
    return 0;
}

void thread_post(struct worker *w, int msg)
{
    atomic_fetch_or(&w->pending, msg);
    uint64_t one = 1;
    /* It fails only when the counter is full, and then a wake is due anyway. */
    if (write(w->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_error("worker %d: cannot wake it: %s", w->id, strerror(errno));
}

void thread_post_all(struct shared *sh, int msg)
{
    for (int i = 0; i < sh->nworkers; i++)
        thread_post(&sh->workers[i], msg);
}

void thread_join(struct worker *w)
{
    if (w->started)
        pthread_join(w->thread, NULL);
    w->started = 0;
}

void thread_deinit(struct worker *w)
{
    close_listeners(w);
    if (w->wake)
        event_free(w->wake);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    if (w->accept_pause)
        event_free(w->accept_pause);
    if (w->trim)
        event_free(w->trim);
    route_free(w);
    worker_deinit(w);
}
