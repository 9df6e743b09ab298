/*
 * thread: a worker's thread, from the control thread's side: it sets a
 * worker up with its listeners, starts its thread, posts it what changed
 * (a reload, a new slot map, a drain, a stop), accepts its clients, and
 * takes it down. The worker's context and its loop turn are worker.h's.
 */
#ifndef RG_THREAD_H
#define RG_THREAD_H

#include <stddef.h>

struct server;
struct worker;

/* Messages for thread_post(); several may be pending at once. */
enum {
    THREAD_RELOAD = 1 << 0, /* take the configuration in force */
    THREAD_DRAIN = 1 << 1,  /* stop accepting; leave once every client is done */
    THREAD_STOP = 1 << 2,   /* leave the loop now */
    THREAD_TOPO = 1 << 3,   /* take the slot map and commands in force */
};

/* Prepares W, worker number ID of SRV, with listeners on FDS (taken
 * over). Returns 0, or -1 after logging why (call thread_deinit then too). */
int thread_init(struct worker *w, struct server *srv, int id, const int *fds, size_t nfds);

/* Starts W's thread. Returns 0, or -1 after logging why. */
int thread_start(struct worker *w);

/* Posts MSG (THREAD_* bits) to W. Any thread. */
void thread_post(struct worker *w, int msg);

/* Waits for W's thread to end (a no-op if it never started). */
void thread_join(struct worker *w);

void thread_deinit(struct worker *w);

#endif
