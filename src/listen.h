/*
 * listen: listening sockets. Binding happens once, in the main thread before
 * the workers start, so that a port in use is a start-up error with a clear
 * message; each worker then accepts on its own socket (TCP, SO_REUSEPORT, so
 * the kernel spreads connections) or on its own dup of the shared unix socket.
 */
#ifndef RG_LISTEN_H
#define RG_LISTEN_H

#include "conf.h"

/* Binds and listens on A (non-blocking, close-on-exec). TCP sockets share
 * their port (SO_REUSEPORT) with the other sockets of this process for A:
 * NTH counts them, and the first (0) fails if anyone else holds the port.
 * Returns the fd, or -errno with a reason in ERR. A unix socket left behind
 * by a dead process is replaced; one that still answers is "in use". */
int listen_bind(const struct conf_addr *a, int nth, char *err, size_t errlen);

/* Removes A's socket file (unix sockets only); for shutdown. */
void listen_unlink(const struct conf_addr *a);

#endif
