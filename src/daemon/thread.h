/*
 * thread: a worker's thread, from the control thread's side: it sets a
 * worker up with its listeners, starts its thread, posts it what changed
 * (a reload, a new slot map, a drain, a stop), accepts its clients, and
 * takes it down. The worker's context and its loop turn are worker.h's.
 */
#ifndef RG_THREAD_H
#define RG_THREAD_H

#include <stdatomic.h>
#include <stddef.h>

struct event_base;
struct shared;
struct worker;

/* What the control thread and its worker threads share beyond what is in
 * force (shared.h): the sockets a reload bound, and the count that ends
 * the control thread's loop with the last worker's. */
struct thread_ctl {
    struct shared *shared;
    struct event_base *base;   /* the control thread's */
    int *listen_fds_next;      /* a reload's new listen addresses: [worker][address] fds, -1 where kept */
    atomic_int listen_pending; /* workers yet to take listen_fds_next */
    atomic_int nrunning;       /* workers still in their loop */
};

/* Messages for thread_post(); several may be pending at once. */
enum {
    THREAD_RELOAD = 1 << 0, /* take the configuration in force */
    THREAD_DRAIN = 1 << 1,  /* stop accepting; leave once every client is done */
    THREAD_STOP = 1 << 2,   /* leave the loop now */
    THREAD_TOPO = 1 << 3,   /* take the slot map and commands in force */
};

/* Prepares W, worker number ID under CTL, with listeners on FDS (taken
 * over). Returns 0, or -1 after logging why (call thread_deinit then too). */
int thread_init(struct worker *w, struct thread_ctl *ctl, int id, const int *fds, size_t nfds);

/* Starts W's thread. Returns 0, or -1 after logging why. */
int thread_start(struct worker *w);

/* Posts MSG (THREAD_* bits) to W, or to every worker of SH. Any thread. */
void thread_post(struct worker *w, int msg);
void thread_post_all(struct shared *sh, int msg);

/* Waits for W's thread to end (a no-op if it never started). */
void thread_join(struct worker *w);

void thread_deinit(struct worker *w);

#endif
