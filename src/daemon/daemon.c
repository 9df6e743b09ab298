/*
 * daemon: start-up, signals, reload and shutdown of the whole process, see
 * daemon.h.
 *
 * Signals only schedule work on the control thread's event_base: TERM/INT
 * drain (a second one stops at once), HUP reloads, USR1 reopens the log.
 */
#include "config.h"

#include "daemon/daemon.h"

#include "daemon/admin.h"

#include "model/nodecmd.h"
#include "model/shared.h"

#include "model/conf.h"
#include "model/tls.h"
#include "daemon/topo.h"
#include "model/slotmap.h"
#include "base/guard.h"
#include "daemon/listen.h"
#include "base/log.h"
#include "migrate/migrate.h"
#include "daemon/proc.h"
#include "daemon/thread.h"
#include "loop/worker.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_AUTO_WORKERS 64

static void post_all(struct daemon *s, int msg)
{
    thread_post_all(&s->shared, msg);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *s = arg;
    log_warning("shutdown: timeouts.shutdown passed with clients still owed replies; closing them");
    post_all(s, THREAD_STOP);
}

static const char *signal_name(int sig)
{
    return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP" : "SIGUSR1";
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *s = arg;
    if (s->shared.stopping) {
        log_notice("received %s again: stopping now", signal_name((int)sig));
        s->shared.stopping = 2;
        post_all(s, THREAD_STOP);
        return;
    }
    s->shared.stopping = 1;
    proc_notify("STOPPING=1");
    log_notice("received %s: no new connections; finishing what is in flight (at most %llums)", signal_name((int)sig),
               (unsigned long long)s->shared.conf->shutdown_timeout_ms);
    struct timeval tv = conf_timeval(s->shared.conf->shutdown_timeout_ms);
    evtimer_add(s->deadline, &tv);
    post_all(s, THREAD_DRAIN);
}

/* Binds the addresses of C's listen that the running configuration lacks,
 * one socket per worker (a dup per worker for a unix socket), into
 * s->ctl.listen_fds_next for the workers to take on THREAD_RELOAD. Returns 0,
 * or -1 after logging why (nothing changes then). */
static int prepare_listeners(struct daemon *s, const struct conf *c)
{
    const struct conf_addrs *old = &s->shared.conf->listen, *l = &c->listen;
    if (atomic_load(&s->ctl.listen_pending) > 0) {
        log_error("listen: the previous change is still being applied; try the reload again");
        return -1;
    }
    free(s->ctl.listen_fds_next);
    s->ctl.listen_fds_next = malloc((size_t)s->shared.nworkers * (l->n ? l->n : 1) * sizeof(int));
    if (s->ctl.listen_fds_next == NULL)
        return -1;
    for (size_t i = 0; i < (size_t)s->shared.nworkers * l->n; i++)
        s->ctl.listen_fds_next[i] = -1;
    uint64_t passed = 0;
    for (size_t a = 0; a < l->n; a++) {
        size_t o = 0;
        while (o < old->n && !conf_addr_same(&old->v[o], &l->v[a]))
            o++;
        if (o < old->n) {
            passed |= (s->listen_passed >> (o < 63 ? o : 63) & 1) << (a < 63 ? a : 63);
            continue; /* the workers keep its listeners */
        }
        for (int w = 0; w < s->shared.nworkers; w++) {
            char err[256];
            int fd = l->v[a].is_unix && w > 0 ? fcntl(s->ctl.listen_fds_next[a], F_DUPFD_CLOEXEC, 0)
                                              : listen_bind(&l->v[a], w, err, sizeof(err));
            if (fd < 0) {
                log_error("%s", l->v[a].is_unix && w > 0 ? strerror(errno) : err);
                for (size_t i = 0; i < (size_t)s->shared.nworkers * l->n; i++)
                    if (s->ctl.listen_fds_next[i] >= 0)
                        close(s->ctl.listen_fds_next[i]);
                free(s->ctl.listen_fds_next);
                s->ctl.listen_fds_next = NULL;
                return -1;
            }
            s->ctl.listen_fds_next[(size_t)w * l->n + a] = fd;
        }
    }
    for (size_t o = 0; o < old->n; o++) {
        size_t a = 0;
        while (a < l->n && !conf_addr_same(&old->v[o], &l->v[a]))
            a++;
        if (a == l->n && !(s->listen_passed & (1ull << (o < 63 ? o : 63))))
            listen_unlink(&old->v[o]); /* a unix socket that goes */
    }
    s->listen_passed = passed;
    atomic_store(&s->ctl.listen_pending, s->shared.nworkers);
    char addrs[512] = "", one[CONF_HOST_MAX + 16];
    for (size_t i = 0, o = 0; i < l->n && o < sizeof(addrs); i++)
        o += (size_t)snprintf(addrs + o, sizeof(addrs) - o, "%s%s", i ? " " : "",
                              conf_addr_str(&l->v[i], one, sizeof(one)));
    log_notice("listen: now %s; connections already open stay", addrs);
    return 0;
}

/* Whether C's admin.listen differs from the running one. */
static int moved_admin(const struct daemon *s, const struct conf *c)
{
    const struct conf_addr *a = c->admin, *b = s->shared.conf->admin;
    return !((a == NULL && b == NULL) || (a && b && memcmp(a, b, sizeof(*a)) == 0));
}

/* Protected mode in force (no client password) on a listener that others
 * than local clients can reach: the operator learns why they are refused
 * before they are. */
static void note_protected_mode(const struct conf *c)
{
    if (!c->protected_mode || !conf_default_open(c))
        return;
    for (size_t i = 0; i < c->listen.n; i++) {
        const struct conf_addr *a = &c->listen.v[i];
        if (a->is_unix || strcmp(a->host, "127.0.0.1") == 0 || strcmp(a->host, "::1") == 0)
            continue;
        char buf[CONF_HOST_MAX + 16];
        log_notice("protected mode: no client.password is set, so %s accepts clients from 127.0.0.1, ::1 and unix "
                   "sockets only (set client.password, or protected_mode: no on a trusted network)",
                   conf_addr_str(a, buf, sizeof(buf)));
        return;
    }
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *s = arg;
    struct conf_diag d = {0};
    proc_notify("RELOADING=1");
    log_notice("received SIGHUP: reloading %s", s->shared.conf_path);

    struct conf *c = conf_load(s->shared.conf_path, &d);
    if (c)
        conf_keep_fixed(c, s->shared.conf, &d);
    int log_changed = c && ((c->log_file == NULL) != (s->shared.conf->log_file == NULL) ||
                            (c->log_file && strcmp(c->log_file, s->shared.conf->log_file) != 0));
    /* Errors past the file's own (d.errors) fail the reload as they do. */
    int failed = c == NULL || d.nerrors, rc, log_switched = 0;
    /* Certificates are read again even if the file did not change: a
     * renewed one is taken by this reload. */
    struct tls_ctxs *tls = NULL;
    char tls_err[512];
    if (!failed && (tls = tls_ctxs_new(c, tls_err, sizeof(tls_err))) == NULL)
        log_error("%s", tls_err), failed = 1;
    if (!failed && log_changed) {
        if ((rc = log_open(c->log_file)) < 0)
            log_error("log.file: cannot open %s: %s", c->log_file, strerror(-rc)), failed = 1;
        else
            log_switched = 1;
    }
    for (size_t i = 0; i < d.nwarnings; i++)
        log_warning("%s", d.warnings[i]);
    for (size_t i = 0; i < d.nerrors; i++)
        log_error("%s", d.errors[i]);

    /* A new admin endpoint opens before the old one closes: one that cannot
     * listen fails the reload, and the old one goes on serving. */
    int new_admin = !failed && moved_admin(s, c);
    struct admin *next_admin = NULL;
    if (new_admin && c->admin && (next_admin = admin_start(s->base, &s->shared, c->admin)) == NULL)
        failed = 1;
    if (!failed && !conf_addrs_equal(&c->listen, &s->shared.conf->listen) && prepare_listeners(s, c) < 0)
        failed = 1;
    if (!failed && migrate_prepare(s->base, c) < 0)
        failed = 1;
    if (failed && next_admin) {
        admin_stop(next_admin);
        next_admin = NULL;
    }
    if (failed) {
        if (log_switched && (rc = log_open(s->shared.conf->log_file)) < 0) /* back to the log in force */
            log_error("log.file: cannot reopen %s: %s", s->shared.conf->log_file ? s->shared.conf->log_file : "stderr",
                      strerror(-rc));
        log_error("reload failed; the running configuration stays in force");
        conf_unref(c);
        tls_ctxs_unref(tls);
    } else {
        log_set_level((enum log_level)c->log_level);
        if (new_admin) {
            admin_stop(s->admin);
            s->admin = next_admin;
            if (next_admin == NULL)
                log_notice("admin endpoint closed (admin.listen is empty)");
        }
        struct conf *old = conf_ref(s->shared.conf);
        shared_set_conf(&s->shared, c, tls);
        migrate_conf_changed(c, old);
        conf_unref(old);
        post_all(s, THREAD_RELOAD);
        log_notice("configuration reloaded");
        note_protected_mode(c);
    }
    proc_reload_state_write(++s->reloads, !failed);
    conf_diag_free(&d);
    proc_notify("READY=1");
}

static void on_reopen(evutil_socket_t sig, short what, void *arg)
{
    int rc = log_reopen();
    if (rc < 0)
        log_error("cannot reopen the log file: %s", strerror(-rc));
    else
        log_notice("log file reopened");
}

static int bind_listeners(struct daemon *s)
{
    const struct conf_addrs *l = &s->shared.conf->listen;
    char err[256];
    s->listen_fds = malloc((size_t)s->shared.nworkers * l->n * sizeof(int));
    if (s->listen_fds == NULL)
        return -1;
    for (size_t i = 0; i < (size_t)s->shared.nworkers * l->n; i++)
        s->listen_fds[i] = -1;
    for (size_t a = 0; a < l->n; a++) {
        /* A socket systemd holds for us (respgate.socket) survives restarts:
         * every worker accepts on a dup of it. */
        int passed = listen_inherited(&l->v[a]);
        if (passed >= 0) {
            s->listen_passed |= 1ull << (a < 63 ? a : 63);
            for (int w = 0; w < s->shared.nworkers; w++) {
                int fd = w == 0 ? passed : fcntl(passed, F_DUPFD_CLOEXEC, 0);
                if (fd < 0) {
                    log_error("%s", strerror(errno));
                    return -1;
                }
                s->listen_fds[(size_t)w * l->n + a] = fd;
            }
            continue;
        }
        for (int w = 0; w < s->shared.nworkers; w++) {
            int fd;
            /* One unix socket, a dup per worker; one TCP socket per worker,
             * sharing the port so the kernel balances accepts. */
            if (l->v[a].is_unix && w > 0)
                fd = fcntl(s->listen_fds[a], F_DUPFD_CLOEXEC, 0);
            else
                fd = listen_bind(&l->v[a], w, err, sizeof(err));
            if (fd < 0) {
                log_error("%s", l->v[a].is_unix && w > 0 ? strerror(errno) : err);
                return -1;
            }
            s->listen_fds[(size_t)w * l->n + a] = fd;
        }
    }
    return 0;
}

/* The workers' way to the control thread's discovery (shared.h). Before
 * daemon_run starts it, and after it stopped, nothing is refreshed. */
static void ask_refresh(void *arg)
{
    struct daemon *s = arg;
    if (s->topo)
        topo_request_refresh(s->topo);
}

int daemon_init(struct daemon *s, struct conf *conf, const char *conf_path)
{
    memset(s, 0, sizeof(*s));
    shared_init(&s->shared, conf, conf_path);
    s->shared.refresh = ask_refresh;
    s->shared.refresh_arg = s;
    s->ctl.shared = &s->shared;
    signal(SIGPIPE, SIG_IGN);

    /* auto: one worker per two CPUs. A request costs the kernel's TCP
     * about as much CPU as it costs the worker, and a worker's batches to
     * the nodes shrink as the clients spread over more workers (each has
     * its own connections): on 2 CPUs a second worker raised the CPU per
     * request by a tenth to a quarter and served no more (bench/README.md). */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    long half = ncpu / 2;
    s->shared.nworkers = conf->workers ? (int)conf->workers
                                : (int)(half < 1 ? 1 : half > MAX_AUTO_WORKERS ? MAX_AUTO_WORKERS : half);

    if (evthread_use_pthreads() < 0 || (s->ctl.base = s->base = event_base_new()) == NULL ||
        (s->deadline = evtimer_new(s->base, on_deadline, s)) == NULL) {
        log_error("cannot set up the event loop");
        return -1;
    }
    static const struct {
        int sig;
        event_callback_fn fn;
    } sigs[] = {{SIGTERM, on_stop}, {SIGINT, on_stop}, {SIGHUP, on_reload}, {SIGUSR1, on_reopen}};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        s->sig_events[i] = evsignal_new(s->base, sigs[i].sig, sigs[i].fn, s);
        if (s->sig_events[i] == NULL || evsignal_add(s->sig_events[i], NULL) < 0) {
            log_error("cannot handle signal %d", sigs[i].sig);
            return -1;
        }
    }

    if ((s->shared.guard = guard_new()) == NULL || migrate_init(s->base, conf) < 0)
        return -1;
    migrate_conf_changed(conf, NULL);
    char tls_err[512];
    if ((s->shared.tls = tls_ctxs_new(conf, tls_err, sizeof(tls_err))) == NULL) {
        log_error("%s", tls_err);
        return -1;
    }
    if (bind_listeners(s) < 0)
        return -1;
    listen_inherited_unused();
    note_protected_mode(conf);
    if (conf->admin && (s->admin = admin_start(s->base, &s->shared, conf->admin)) == NULL)
        return -1;
    s->shared.workers = calloc((size_t)s->shared.nworkers, sizeof(*s->shared.workers));
    if (s->shared.workers == NULL)
        return -1;
    for (int i = 0; i < s->shared.nworkers; i++)
        s->shared.workers[i].wake_fd = -1; /* worker_deinit closes it, also for those never set up */
    size_t nl = conf->listen.n;
    for (int i = 0; i < s->shared.nworkers; i++) {
        if (thread_init(&s->shared.workers[i], &s->ctl, i, &s->listen_fds[(size_t)i * nl], nl) < 0)
            return -1;
        for (size_t a = 0; a < nl; a++)
            s->listen_fds[(size_t)i * nl + a] = -1; /* the worker's listeners own them now */
    }
    return 0;
}


int daemon_run(struct daemon *s)
{
    /* Workers never see the signals: only the control thread handles them. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    atomic_store(&s->ctl.nrunning, s->shared.nworkers);
    int started = 0;
    for (; started < s->shared.nworkers; started++)
        if (thread_start(&s->shared.workers[started]) < 0)
            break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < s->shared.nworkers) {
        atomic_fetch_sub(&s->ctl.nrunning, s->shared.nworkers - started);
        for (int i = 0; i < started; i++)
            thread_post(&s->shared.workers[i], THREAD_STOP);
        for (int i = 0; i < started; i++)
            thread_join(&s->shared.workers[i]);
        return 1;
    }

    char addrs[512] = "", one[CONF_HOST_MAX + 16];
    for (size_t i = 0, o = 0; i < s->shared.conf->listen.n && o < sizeof(addrs); i++)
        o += (size_t)snprintf(addrs + o, sizeof(addrs) - o, "%s%s%s", i ? " " : "",
                              conf_addr_str(&s->shared.conf->listen.v[i], one, sizeof(one)),
                              s->listen_passed & (1ull << (i < 63 ? i : 63)) ? " (from systemd)" : "");
    proc_daemon_ready();
    log_notice("respgate " PACKAGE_VERSION " ready: listening on %s with %d worker%s", addrs, s->shared.nworkers,
               s->shared.nworkers == 1 ? "" : "s");
    proc_notify("READY=1");

    s->topo = topo_new(s->base, &s->shared);
    if (s->topo == NULL) {
        log_error("cannot start topology discovery: out of memory");
        post_all(s, THREAD_STOP);
    }
    event_base_dispatch(s->base);
    for (int i = 0; i < s->shared.nworkers; i++)
        thread_join(&s->shared.workers[i]);
    topo_free(s->topo);
    s->topo = NULL;
    for (size_t i = 0; i < s->shared.conf->listen.n; i++)
        if (!(s->listen_passed & (1ull << (i < 63 ? i : 63))))
            listen_unlink(&s->shared.conf->listen.v[i]); /* systemd's socket files are systemd's */
    log_notice("stopped");
    return 0;
}

void daemon_deinit(struct daemon *s)
{
    for (int i = 0; s->shared.workers && i < s->shared.nworkers; i++)
        thread_deinit(&s->shared.workers[i]);
    free(s->shared.workers);
    if (s->listen_fds)
        for (size_t i = 0; i < (size_t)s->shared.nworkers * s->shared.conf->listen.n; i++)
            if (s->listen_fds[i] >= 0)
                close(s->listen_fds[i]);
    free(s->listen_fds);
    if (s->ctl.listen_fds_next)
        for (size_t i = 0; i < (size_t)s->shared.nworkers * s->shared.conf->listen.n; i++)
            if (s->ctl.listen_fds_next[i] >= 0)
                close(s->ctl.listen_fds_next[i]);
    free(s->ctl.listen_fds_next);
    for (size_t i = 0; i < sizeof(s->sig_events) / sizeof(s->sig_events[0]); i++)
        if (s->sig_events[i])
            event_free(s->sig_events[i]);
    if (s->deadline)
        event_free(s->deadline);
    admin_stop(s->admin);
    guard_free(s->shared.guard);
    migrate_free(); /* saves what it has not yet */
    if (s->base)
        event_base_free(s->base);
    shared_deinit(&s->shared);
    memset(s, 0, sizeof(*s));
}
