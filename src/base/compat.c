/*
 * compat: differences between Redis versions, see compat.h.
 */
#include "base/compat.h"

#include <ctype.h>

unsigned compat_parse(const char *text, size_t len)
{
    unsigned part[3] = {0, 0, 0}, n = 0;
    size_t i = 0;
    int digits = 0;
    for (; i < len && n < 3; i++) {
        if (isdigit((unsigned char)text[i]) && part[n] < 100) {
            part[n] = part[n] * 10 + (unsigned)(text[i] - '0');
            digits = 1;
        } else if (text[i] == '.' && digits) {
            n++;
            digits = 0;
        } else {
            break;
        }
    }
    if (n == 0 && !digits)
        return 0;
    return COMPAT_V(part[0], part[1], part[2]);
}

static const struct compat_texts texts_6 = {"`", "`, ", 0, 0, "(P)SUBSCRIBE / (P)UNSUBSCRIBE",
                                           "' command or its subcommand"};
static const struct compat_texts texts_7 = {"'", "' ", 128, 1, "(P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE", "' command"};

const struct compat_texts *compat_texts(unsigned version)
{
    return compat_has(version, COMPAT_V7_0) ? &texts_7 : &texts_6;
}

unsigned compat_failover_pause_ms(unsigned version)
{
    return compat_has(version, COMPAT_V7_0) ? 0 : 10000;
}

const struct compat_node_cmd compat_node_cmds[] = {
    {"HELLO 2 [AUTH user pass] SETNAME respgate", COMPAT_V6_0,
     "backend.c: a new connection's handshake; its answer names the node's version"},
    {"READONLY", COMPAT_V(3, 0, 0), "backend.c: a replica that serves reads (cluster.read_policy)"},
    {"ASKING", COMPAT_V(3, 0, 0), "route.c: before a request redirected by -ASK"},
    {"INFO / INFO all", COMPAT_V(2, 6, 0),
     "info.c: the masters' sections for a client's INFO (one section list per version: 6.2 takes one argument)"},
    {"WAIT numreplicas timeout", COMPAT_V(3, 0, 0), "fanout.c: a client's WAIT, on the masters it wrote to"},
    {"MULTI / DISCARD", COMPAT_V(1, 2, 0), "session.c: a transaction's start, replayed on its pinned connection"},
    {"AUTH [user] pass", COMPAT_V6_0, "topo.c: the topology connection (hiredis)"},
    {"INFO server", COMPAT_V(2, 6, 0), "topo.c: the nodes' version before any backend connected"},
    {"CONFIG GET cluster-node-timeout", COMPAT_V(3, 0, 0),
     "topo.c: the default cluster.failover_wait (one parameter: 6.2 takes no more)"},
    {"CONFIG GET lua-time-limit", COMPAT_V(3, 0, 0),
     "topo.c: how long a busy node answers nobody (7.0 calls it busy-reply-threshold, and knows both names)"},
    {"CLUSTER NODES", COMPAT_V(3, 0, 0), "topo.c: the slot map"},
    {"DUMP / PTTL / RESTORE key ttl payload [REPLACE] / DEL", COMPAT_V(3, 0, 0),
     "cross.c: a value copied into another slot (a command on keys in several slots)"},
    {"EXISTS / TYPE / LLEN / SISMEMBER / SREM / SADD / LPOP / RPOP / LPUSH / RPUSH / ZADD / MSETNX", COMPAT_V(2, 4, 0),
     "cross.c: the steps of SMOVE, LMOVE, MSETNX and the blocking pops across slots"},
    {"ZPOPMIN / ZPOPMAX / XINFO GROUPS / CLIENT ID / CLIENT UNBLOCK", COMPAT_V(5, 0, 0),
     "cross.c: BZPOPMIN at once, XREADGROUP's group check, unblocking the slots a wait did not win"},
    {"BLPOP / BRPOP key timeout", COMPAT_V(2, 0, 0), "cross.c: BLMOVE waiting on its source"},
};
const size_t compat_node_cmds_len = sizeof(compat_node_cmds) / sizeof(compat_node_cmds[0]);
