/*
 * listen: listening sockets. Binding happens once, in the main thread before
 * the workers start, so that a port in use is a start-up error with a clear
 * message; each worker then accepts on its own socket (TCP, SO_REUSEPORT, so
 * the kernel spreads connections) or on its own dup of the shared unix socket.
 */
#ifndef RG_LISTEN_H
#define RG_LISTEN_H

#include "model/conf.h"

/* Binds and listens on A (non-blocking, close-on-exec). TCP sockets share
 * their port (SO_REUSEPORT) with the other sockets of this process for A:
 * NTH counts them, and the first (0) fails if anyone else holds the port.
 * Returns the fd, or -errno with a reason in ERR. A unix socket left behind
 * by a dead process is replaced; one that still answers is "in use". */
int listen_bind(const struct conf_addr *a, int nth, char *err, size_t errlen);

/* A listening socket for A that systemd passed (socket activation:
 * LISTEN_PID names this process, LISTEN_FDS counts the sockets from fd 3),
 * taken out of the passed set; -1 if none listens on A. The first call reads
 * the environment and unsets it. Such a socket outlives this process: a
 * restart loses no connection attempt. */
int listen_inherited(const struct conf_addr *a);

/* Closes the passed sockets no address took, logging each; returns how many. */
int listen_inherited_unused(void);

/* Removes A's socket file (unix sockets only); for shutdown. */
void listen_unlink(const struct conf_addr *a);

#endif
