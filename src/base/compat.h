/*
 * compat: what differs between the Redis versions respgate stands in for,
 * as data. respgate answers a client as a single node of the cluster's
 * version would (the oldest master's: Redis 6.2 and 7.x differ in error
 * texts, INFO's sections and arguments), and sends the nodes only forms
 * their version knows. Code that builds such a text or frame asks here;
 * nothing else compares versions.
 */
#ifndef RG_COMPAT_H
#define RG_COMPAT_H

#include <stddef.h>

/* A version as one number: 6.2.6 is 60206. 0 is "unknown", answered as the
 * newest version respgate knows. */
#define COMPAT_V(major, minor, patch) ((major) * 10000u + (minor) * 100u + (patch))
#define COMPAT_V6_0 COMPAT_V(6, 0, 0)
#define COMPAT_V7_0 COMPAT_V(7, 0, 0)

/* The version in TEXT ("6.2.6", up to its first character that is neither a
 * digit nor a dot), or 0 if it is none. */
unsigned compat_parse(const char *text, size_t len);

/* Whether a cluster of VERSION has what was new in SINCE (0 counts as new). */
static inline int compat_has(unsigned version, unsigned since)
{
    return version == 0 || version >= since;
}

/* The parts of Redis's error texts that differ by version; callers keep
 * the formats literal (so the compiler checks them) and fill these in. */
struct compat_texts {
    const char *quote;      /* around a name or argument in "unknown command": ` (6.2) or ' (7.0) */
    const char *arg_end;    /* after each argument there: "`, " (6.2) or "' " (7.0) */
    unsigned name_max;      /* how much of the unknown command's name it quotes: 128 bytes (7.0), or 0:
                               the whole name (6.2) */
    int subcommand_table;   /* 7.0: "unknown subcommand 'x'. Try P HELP." and arity errors name
                               "parent|sub"; 6.2: "Unknown subcommand or wrong number of
                               arguments for 'x'. Try P HELP." for both */
    const char *subscribed; /* what subscribed mode allows: "(P)SUBSCRIBE / (P)UNSUBSCRIBE" or
                               "(P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE" */
    const char *noperm;     /* after "NOPERM this user has no permissions to run the '<name>": " command"
                               (7.0, which names "parent|sub") or " command or its subcommand" (6.2,
                               which names the parent) */
};
const struct compat_texts *compat_texts(unsigned version);

/* How long a master of VERSION may keep writes paused after a manual
 * failover (CLUSTER FAILOVER): 6.2 ends the pause only when it times out
 * (CLUSTER_MF_TIMEOUT * 2, 10 s), 7.0 as soon as the failover is over. The
 * paused writes are answered then, with MOVED. */
unsigned compat_failover_pause_ms(unsigned version);

/* Every command respgate itself sends to nodes (not those it forwards for
 * clients), with the oldest version that accepts it in that form. The unit
 * tests check that none is newer than COMPAT_OLDEST, the oldest version
 * respgate supports, unless the code that sends it asks compat_has first. */
#define COMPAT_OLDEST COMPAT_V6_0
struct compat_node_cmd {
    const char *form;  /* as respgate sends it */
    unsigned since;
    const char *where; /* who sends it, and why */
};
extern const struct compat_node_cmd compat_node_cmds[];
extern const size_t compat_node_cmds_len;

#endif
