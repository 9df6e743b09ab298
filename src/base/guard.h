/*
 * guard: what respgate does about clients that have yet to show they may
 * use it. Protected mode's test of a client's address, and failed AUTHs
 * counted per client address in a bounded table that every worker shares:
 * it says when a failure is worth a log line (once a second per address)
 * and how long an AUTH from an address that keeps failing waits for its
 * answer. Pure but for its lock: the caller passes the time.
 */
#ifndef RG_GUARD_H
#define RG_GUARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Failures count within a minute of an address's first one. */
#define GUARD_WINDOW_MS 60000
/* Addresses remembered; past this many, the one failing least recently
 * among those its hash may use is forgotten. */
#define GUARD_SLOTS 1024
#define GUARD_PROBE 8
/* No AUTH waits longer than this many auth_delays. */
#define GUARD_MAX_WAITS 10

struct guard_entry {
    char host[48];          /* the address without its port; "" = free */
    uint64_t since_ms;      /* its first failure of the window */
    uint64_t last_ms;       /* its last failure */
    uint64_t logged_ms;     /* its last log line */
    uint64_t next_auth_ms;  /* once it is delayed: when its next AUTH may be answered */
    uint32_t failures;      /* in the window */
    uint32_t unlogged;      /* failures since its last log line */
};

/* Refusals of one kind, counted, with a log line at most once a second. */
struct guard_tally {
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t logged_ms;
};

struct guard {
    pthread_mutex_t lock;
    struct guard_entry e[GUARD_SLOTS];
    atomic_uint_fast64_t auth_failures;  /* AUTH and HELLO AUTH refused */
    atomic_uint_fast64_t auth_delayed;   /* AUTHs answered late */
    atomic_uint_fast64_t auth_timeouts;  /* connections closed at client.auth_timeout */
    struct guard_tally protected_refused; /* clients refused by protected mode */
    struct guard_tally tls_refused;       /* clients whose TLS handshake failed (certificate, version, not TLS) */
};

/* A new guard, or NULL if out of memory. */
struct guard *guard_new(void);
void guard_free(struct guard *g); /* NULL is a no-op */

/* Whether the client at ADDR ("ip:port", "[ip6]:port" or "unix", as
 * client_format_addr writes it) is local to protected mode: 127.0.0.1, ::1
 * or a unix socket, as Redis judges (127.0.0.2 is not). */
int guard_is_local(const char *addr);

/* ADDR's host part, without port or brackets, into HOST (CAP bytes). */
void guard_host(const char *addr, char *host, size_t cap);

/* Counts a failed AUTH from HOST at NOW_MS. Returns 0 if it needs no log
 * line (HOST had one within the second), else the failures since that
 * line, this one included; *FAILURES is HOST's count in the window. */
uint32_t guard_auth_failed(struct guard *g, const char *host, uint64_t now_ms, uint32_t *failures);

/* How long an AUTH from HOST at NOW_MS waits before it is checked: 0 while
 * HOST failed fewer than MAX_FAILURES times in the window (or MAX_FAILURES
 * is 0), else its turn, AUTHs from HOST being answered one per DELAY_MS,
 * and none waiting longer than GUARD_MAX_WAITS delays. */
uint64_t guard_auth_wait(struct guard *g, const char *host, uint64_t now_ms, uint32_t max_failures,
                         uint64_t delay_ms);

/* Counts a refusal of T's kind at NOW_MS; returns whether it gets a log
 * line (one a second for the kind, over every worker). */
int guard_tally(struct guard_tally *t, uint64_t now_ms);

#endif
