#!/usr/bin/python3
"""gen-cmdtab.py: writes src/model/cmdtab.c, respgate's command table, from a real
redis-server's COMMAND reply (arity, flags, key specifications, subcommands)
and the handling policy below.

    gen-cmdtab.py [--output FILE] [--doc FILE]
                                       start a throwaway redis-server, write the table
                                       (and the command list for the docs)
    gen-cmdtab.py --port P [--host H]  ask the redis-server already running there
    gen-cmdtab.py --check FILE [--check-doc FILE]
                                       regenerate; exit 1 with a diff if a FILE differs

A server it starts listens on a free loopback port, saves nothing, and is
stopped by its PID however this script ends. The output is sorted, so the
same server version always gives the same bytes. Any flag, key spec form or
key spec this script does not know about stops it: a new server version must
be looked at, not silently half-understood.
"""

import argparse
import difflib
import os
import socket
import subprocess
import sys
import tempfile
import time

import redis

REDIS_SERVER = "/usr/bin/redis-server"
OUTPUT_NAME = "src/model/cmdtab.c"

# COMMAND's flags, in cmd.h's bit order (CMDF_<NAME>).
COMMAND_FLAGS = [
    "write", "readonly", "denyoom", "module", "admin", "pubsub", "noscript", "blocking", "loading",
    "stale", "skip_monitor", "skip_slowlog", "asking", "fast", "no_auth", "may_replicate",
    "no_mandatory_keys", "no_async_loading", "no_multi", "movablekeys", "allow_busy",
]

# ACL categories, in cmd.h's bit order (CMD_ACL_<NAME>) and ACL CAT's.
ACL_CATEGORIES = [
    "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap", "hyperloglog", "geo",
    "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous", "connection", "transaction", "scripting",
]

# Key spec flags (CMD_KSF_<NAME>).
KEYSPEC_FLAGS = ["RO", "RW", "OW", "RM", "access", "update", "insert", "delete", "not_key",
                 "incomplete", "variable_flags"]

# Handling kind by command name ("parent|sub" for one subcommand), with how
# the nodes' replies are merged where several nodes answer (enum cmd_merge).
# Unlisted: a subcommand takes its parent's row if the parent has one;
# otherwise blocking commands are CMD_PINNED, commands with keys CMD_FORWARD,
# the rest CMD_KEYLESS.
POLICY = {
    "ping": ("CMD_LOCAL", None,
        "answered for the client's own connection"),
    "echo": ("CMD_LOCAL", None,
        "answered for the client's own connection"),
    "quit": ("CMD_LOCAL", None,
        "closes the client's own connection"),
    "auth": ("CMD_LOCAL", None,
        "respgate's client password, not a node's"),
    "hello": ("CMD_LOCAL", None,
        "protocol and auth of the client's own session"),
    "select": ("CMD_LOCAL", None,
        "a cluster has database 0 only; answered locally"),
    "reset": ("CMD_LOCAL", None,
        "resets the client's own session"),
    "client": ("CMD_LOCAL", None,
        "the client's own connection is to respgate"),
    "client|kill": ("CMD_REFUSED", None,
        "respgate answers CLIENT only for the client's own session; the nodes' clients are respgate's"),
    "client|pause": ("CMD_REFUSED", None,
        "it would pause one node's clients, which are respgate's connections"),
    "client|unpause": ("CMD_REFUSED", None,
        "it would pause one node's clients, which are respgate's connections"),
    "client|unblock": ("CMD_REFUSED", None,
        "respgate answers CLIENT only for the client's own session; the nodes' clients are respgate's"),
    "client|tracking": ("CMD_LOCAL", None,
        "BCAST mode for RESP3 clients, from every master (respgate(8))"),
    "client|trackinginfo": ("CMD_LOCAL", None,
        "the client's tracking, as the masters confirmed it"),
    "client|caching": ("CMD_LOCAL", None,
        "Redis's errors: OPTIN and OPTOUT are not supported"),
    "client|getredir": ("CMD_LOCAL", None,
        "0 while tracking (no redirection), else -1"),
    "client|help": ("CMD_REFUSED", None,
        "respgate answers CLIENT only for the client's own session"),
    "monitor": ("CMD_REFUSED", None,
        "it streams one node's commands, and the client's server is the whole cluster"),
    "sync": ("CMD_REFUSED", None,
        "it is the replication protocol between nodes"),
    "psync": ("CMD_REFUSED", None,
        "it is the replication protocol between nodes"),
    "replconf": ("CMD_REFUSED", None,
        "it is the replication protocol between nodes"),
    "debug": ("CMD_REFUSED", None,
        "it can crash or stall a node of the cluster"),
    "shutdown": ("CMD_REFUSED", None,
        "it would stop one node of the cluster behind respgate's back"),
    "replicaof": ("CMD_REFUSED", None,
        "it would change the cluster's topology behind respgate's back"),
    "slaveof": ("CMD_REFUSED", None,
        "it would change the cluster's topology behind respgate's back"),
    "move": ("CMD_REFUSED", None,
        "a Redis Cluster has database 0 only"),
    "swapdb": ("CMD_REFUSED", None,
        "a Redis Cluster has database 0 only"),
    "failover": ("CMD_REFUSED", None,
        "it would change the cluster's topology behind respgate's back"),
    "cluster": ("CMD_REFUSED", None,
        "the cluster's topology is respgate's business; the client sees one server"),
    "cluster|keyslot": ("CMD_KEYLESS", None,
        "a pure function of its argument"),
    "readwrite": ("CMD_REFUSED", None,
        "replica reads are respgate's read_policy, not a client's choice"),
    "readonly": ("CMD_REFUSED", None,
        "replica reads are respgate's read_policy, not a client's choice"),
    "asking": ("CMD_REFUSED", None,
        "respgate follows ASK redirections itself"),
    "save": ("CMD_REFUSED", None,
        "it would act on one node of the cluster, not on the whole of it"),
    "bgsave": ("CMD_REFUSED", None,
        "it would act on one node of the cluster, not on the whole of it"),
    "bgrewriteaof": ("CMD_REFUSED", None,
        "it would act on one node of the cluster, not on the whole of it"),
    "lastsave": ("CMD_REFUSED", None,
        "it reports one node's state, not the cluster's"),
    "acl": ("CMD_REFUSED", None,
        "respgate's users are in its configuration (users:); the nodes' are managed on each node"),
    "acl|whoami": ("CMD_LOCAL", None, "the user the client authenticated as"),
    "acl|list": ("CMD_LOCAL", None, "respgate's users (users:), without their passwords"),
    "acl|users": ("CMD_LOCAL", None, "the names of respgate's users"),
    "module": ("CMD_REFUSED", None,
        "it would load code into one node of the cluster"),
    "latency|reset": ("CMD_BROADCAST", "MERGE_SUM",
        "every node's events: counts summed"),
    "latency|latest": ("CMD_BROADCAST", "MERGE_CONCAT",
        "every node's events: arrays joined"),
    "latency|history": ("CMD_BROADCAST", "MERGE_CONCAT",
        "every node's events: arrays joined"),
    "latency": ("CMD_KEYLESS", None,
        "DOCTOR, GRAPH, HISTOGRAM, HELP: one node's view"),
    "slowlog|get": ("CMD_BROADCAST", "MERGE_CONCAT",
        "every node's entries, joined"),
    "slowlog|len": ("CMD_BROADCAST", "MERGE_SUM",
        "every node's entries, counted"),
    "slowlog|reset": ("CMD_BROADCAST", "MERGE_ALL",
        "every node's log emptied"),
    "slowlog": ("CMD_KEYLESS", None,
        "HELP"),
    "config|set": ("CMD_BROADCAST", "MERGE_ALL",
        "applied on every node, all or the first error"),
    "config|resetstat": ("CMD_BROADCAST", "MERGE_ALL",
        "every node's statistics"),
    "config|rewrite": ("CMD_BROADCAST", "MERGE_ALL",
        "every node's file"),
    "config": ("CMD_KEYLESS", None,
        "GET, HELP: the nodes share one configuration"),
    "info": ("CMD_LOCAL", None,
        "respgate answers as the one server the client sees"),
    "dbsize": ("CMD_BROADCAST", "MERGE_SUM",
        "a sum over masters"),
    "flushall": ("CMD_BROADCAST", "MERGE_ALL",
        "every master"),
    "flushdb": ("CMD_BROADCAST", "MERGE_ALL",
        "every master"),
    "keys": ("CMD_BROADCAST", "MERGE_CONCAT",
        "a union over masters"),
    "scan": ("CMD_BROADCAST", "MERGE_SCAN",
        "one cursor that walks the masters in turn"),
    "randomkey": ("CMD_BROADCAST", "MERGE_NONNIL",
        "any master's key, nil only if all are empty"),
    "script|load": ("CMD_BROADCAST", "MERGE_ALL",
        "on every master, so EVALSHA works for any key"),
    "script|exists": ("CMD_BROADCAST", "MERGE_AND",
        "loaded only if loaded on every master"),
    "script|flush": ("CMD_BROADCAST", "MERGE_ALL",
        "every master"),
    "script|kill": ("CMD_BROADCAST", "MERGE_ANY_OK",
        "wherever the script runs"),
    "script|debug": ("CMD_REFUSED", None,
        "a debugging session needs a connection of its own"),
    "script": ("CMD_KEYLESS", None,
        "HELP"),
    "function|load": ("CMD_BROADCAST", "MERGE_ALL",
        "libraries must be on every master"),
    "function|delete": ("CMD_BROADCAST", "MERGE_ALL",
        "every master"),
    "function|flush": ("CMD_BROADCAST", "MERGE_ALL",
        "every master"),
    "function|restore": ("CMD_BROADCAST", "MERGE_ALL",
        "every master"),
    "function|kill": ("CMD_BROADCAST", "MERGE_ANY_OK",
        "wherever the function runs"),
    "function": ("CMD_KEYLESS", None,
        "LIST, DUMP, STATS, HELP: the masters hold the same libraries"),
    "wait": ("CMD_BROADCAST", "MERGE_MIN",
        "the masters this session wrote to; the fewest acks"),
    "command": ("CMD_KEYLESS", None,
        "the nodes' command table is the same everywhere"),
    "mget": ("CMD_SPLIT", "MERGE_KEYORDER",
        "one fragment per slot, values put back in key order"),
    "mset": ("CMD_SPLIT", "MERGE_ALL",
        "one fragment per slot; OK or the first error"),
    "del": ("CMD_SPLIT", "MERGE_SUM",
        "one fragment per slot, counts summed"),
    "unlink": ("CMD_SPLIT", "MERGE_SUM",
        "one fragment per slot, counts summed"),
    "exists": ("CMD_SPLIT", "MERGE_SUM",
        "one fragment per slot, counts summed"),
    "touch": ("CMD_SPLIT", "MERGE_SUM",
        "one fragment per slot, counts summed"),
    "multi": ("CMD_PINNED", None,
        "a transaction holds one backend connection"),
    "exec": ("CMD_PINNED", None,
        "a transaction holds one backend connection"),
    "discard": ("CMD_PINNED", None,
        "a transaction holds one backend connection"),
    "watch": ("CMD_PINNED", None,
        "watched keys live on one backend connection"),
    "unwatch": ("CMD_PINNED", None,
        "watched keys live on one backend connection"),
    "subscribe": ("CMD_PUBSUB", None,
        "on the subscriber's own connection to the Pub/Sub node; PUBLISH reaches every node"),
    "psubscribe": ("CMD_PUBSUB", None,
        "on the subscriber's own connection; keyspace-notification patterns on every master"),
    "unsubscribe": ("CMD_PUBSUB", None,
        "on the subscriber's own connection"),
    "punsubscribe": ("CMD_PUBSUB", None,
        "on the subscriber's own connection"),
    "ssubscribe": ("CMD_PUBSUB", None,
        "on the subscriber's own connection to the master of the channels' slot"),
    "sunsubscribe": ("CMD_PUBSUB", None,
        "on the subscriber's own connection to the master of the channels' slot"),
    "publish": ("CMD_PUBSUB", None,
        "to the Pub/Sub node, whose count is respgate's subscribers; the cluster bus takes it to every node"),
    "pubsub|channels": ("CMD_PUBSUB", None,
        "from the Pub/Sub node, which holds every subscription respgate makes"),
    "pubsub|numsub": ("CMD_PUBSUB", None,
        "from the Pub/Sub node, which holds every subscription respgate makes"),
    "pubsub|numpat": ("CMD_PUBSUB", None,
        "from the Pub/Sub node, which holds every subscription respgate makes"),
    "pubsub|shardchannels": ("CMD_BROADCAST", "MERGE_CONCAT",
        "each master holds the shard channels of its slots"),
}

# Which session or Pub/Sub operation a command is (enum cmd_op), and the
# contexts it may run in (CMD_CTX_*), by command name: what session.c,
# pubsub.c and router.c decide by, instead of comparing names.
#   SUBSCRIBED: allowed while a RESP2 client is subscribed (Redis's list);
#   MULTI_NOW: run at once inside MULTI, not queued (QUIT, RESET);
#   QUEUEABLE: a local or Pub/Sub command a transaction may queue;
#   REPLICAS_TOO: a broadcast the replicas get as well (a replica takes its
#   master's place in a failover, with its configuration).
OPS = {
    "config|set": ("CMD_OP_NONE", ["REPLICAS_TOO"]),
    "config|resetstat": ("CMD_OP_NONE", ["REPLICAS_TOO"]),
    "config|rewrite": ("CMD_OP_NONE", ["REPLICAS_TOO"]),
    "multi": ("CMD_OP_MULTI", []),
    "exec": ("CMD_OP_EXEC", []),
    "discard": ("CMD_OP_DISCARD", []),
    "watch": ("CMD_OP_WATCH", []),
    "unwatch": ("CMD_OP_UNWATCH", []),
    "subscribe": ("CMD_OP_SUBSCRIBE", ["SUBSCRIBED"]),
    "psubscribe": ("CMD_OP_PSUBSCRIBE", ["SUBSCRIBED"]),
    "unsubscribe": ("CMD_OP_UNSUBSCRIBE", ["SUBSCRIBED"]),
    "punsubscribe": ("CMD_OP_PUNSUBSCRIBE", ["SUBSCRIBED"]),
    "ssubscribe": ("CMD_OP_SSUBSCRIBE", ["SUBSCRIBED"]),
    "sunsubscribe": ("CMD_OP_SUNSUBSCRIBE", ["SUBSCRIBED"]),
    "ping": ("CMD_OP_PING", ["SUBSCRIBED", "QUEUEABLE"]),
    "quit": ("CMD_OP_NONE", ["SUBSCRIBED", "MULTI_NOW"]),
    "reset": ("CMD_OP_NONE", ["SUBSCRIBED", "MULTI_NOW"]),
    "echo": ("CMD_OP_NONE", ["QUEUEABLE"]),
    "publish": ("CMD_OP_NONE", ["QUEUEABLE"]),
    "pubsub|channels": ("CMD_OP_NONE", ["QUEUEABLE"]),
    "pubsub|numsub": ("CMD_OP_NONE", ["QUEUEABLE"]),
    "pubsub|numpat": ("CMD_OP_NONE", ["QUEUEABLE"]),
    "pubsub|shardchannels": ("CMD_OP_NONE", ["QUEUEABLE"]),
    "pubsub|shardnumsub": ("CMD_OP_NONE", ["QUEUEABLE"]),
    "pubsub|help": ("CMD_OP_NONE", ["QUEUEABLE"]),
}

# Key specs that Redis cannot describe (begin_search "unknown"), or whose
# literal reading would mislead a router, by (command, spec index): the quirk
# cmd.c applies instead (enum cmd_quirk).
QUIRKS = {
    # BY/GET patterns name keys only once the sorted values are known.
    ("sort", 1): "CMD_KQ_PATTERNS",
    # STORE may come anywhere among SORT's options: cmd.c parses them.
    ("sort", 2): "CMD_KQ_SORT_STORE",
    # BY/GET patterns name keys only once the sorted values are known.
    ("sort_ro", 1): "CMD_KQ_PATTERNS",
    # MIGRATE ... "" db timeout KEYS k1 k2: the empty key argument is no key.
    ("migrate", 0): "CMD_KQ_PLACEHOLDER",
}


def pairs(flat):
    """A RESP2 map (a flat array of names and values) as a dict."""
    return dict(zip(flat[::2], flat[1::2]))


class GenError(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(host, port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = redis.Redis(host=host, port=port, decode_responses=True, socket_timeout=10)
            r.ping()
            return r
        except redis.ConnectionError:
            if proc is not None and proc.poll() is not None:
                return None
            if time.monotonic() > deadline:
                raise GenError(f"no redis-server answers on {host}:{port}")
            time.sleep(0.05)


def fetch(host, port):
    """(version, COMMAND reply) from the server at HOST:PORT."""
    r = connect(host, port)
    # redis-py parses COMMAND into a dict without the key specs: take it raw.
    r.set_response_callback("COMMAND", lambda response, **options: response)
    version = r.info("server")["redis_version"]
    reply = r.execute_command("COMMAND")
    r.close()
    return version, reply


def fetch_from_throwaway():
    """Starts a redis-server that saves nothing on a free loopback port, asks
    it, and stops it by PID."""
    with tempfile.TemporaryDirectory(prefix="gen-cmdtab-") as tmp:
        for _ in range(5):
            port = free_port()
            log = open(os.path.join(tmp, "redis.log"), "w")
            proc = subprocess.Popen(
                [REDIS_SERVER, "--save", "", "--appendonly", "no", "--port", str(port),
                 "--bind", "127.0.0.1", "--daemonize", "no", "--dir", tmp],
                stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
            try:
                if connect("127.0.0.1", port, proc=proc) is None:
                    continue  # lost the port to someone else: try another
                return fetch("127.0.0.1", port)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log.close()
        with open(os.path.join(tmp, "redis.log")) as f:
            raise GenError("redis-server did not start:\n" + f.read())


def c_ident(name):
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def c_flags(names, known, prefix, what):
    for n in names:
        if n not in known:
            raise GenError(f"unknown {what} flag {n!r}: add it to gen-cmdtab.py and cmd.h")
    return " | ".join(prefix + n.upper() for n in sorted(set(names), key=known.index)) or "0"


def c_keyspec(cmd, i, ks, used_quirks):
    d = pairs(ks)
    bs, fk = pairs(d["begin_search"]), pairs(d["find_keys"])
    bspec, fspec = pairs(bs["spec"]), pairs(fk["spec"])
    fields = [".flags = " + c_flags(d["flags"], KEYSPEC_FLAGS, "CMD_KSF_", "key spec")]
    if bs["type"] == "index":
        fields += [".bs = CMD_BS_INDEX", f".pos = {bspec['index']}"]
    elif bs["type"] == "keyword":
        kw = bspec["keyword"]
        if not kw.isalnum() or len(kw) >= 16:
            raise GenError(f"{cmd}: unexpected keyword {kw!r}")
        fields += [".bs = CMD_BS_KEYWORD", f'.keyword = "{kw.upper()}"', f".startfrom = {bspec['startfrom']}"]
    elif bs["type"] == "unknown":
        fields.append(".bs = CMD_BS_UNKNOWN")
    else:
        raise GenError(f"{cmd}: unknown begin_search type {bs['type']!r}")
    if fk["type"] == "range":
        fields += [".fk = CMD_FK_RANGE", f".lastkey = {fspec['lastkey']}", f".keystep = {fspec['keystep']}",
                   f".limit = {fspec['limit']}"]
    elif fk["type"] == "keynum":
        fields += [".fk = CMD_FK_KEYNUM", f".keynumidx = {fspec['keynumidx']}",
                   f".firstkey = {fspec['firstkey']}", f".keystep = {fspec['keystep']}"]
    elif fk["type"] == "unknown":
        fields.append(".fk = CMD_FK_UNKNOWN")
    else:
        raise GenError(f"{cmd}: unknown find_keys type {fk['type']!r}")
    quirk = QUIRKS.get((cmd, i))
    if quirk:
        used_quirks.add((cmd, i))
        fields.append(f".quirk = {quirk}")
    elif "unknown" in (bs["type"], fk["type"]):
        raise GenError(f"{cmd}: key spec {i} is not describable ({d.get('notes', 'no notes')}): "
                       "add a QUIRKS row")
    for n, v in list(bspec.items()) + list(fspec.items()):
        if isinstance(v, int) and not -32768 <= v <= 32767:
            raise GenError(f"{cmd}: {n} {v} does not fit int16_t")
    return "    {" + fields[0] + ",\n     " + ", ".join(fields[1:]) + "},"


def kind_of(entry, parent_row=None):
    """(kind, merge, note) for ENTRY: its POLICY row, its parent's, or the default."""
    name, flags, keyspecs = entry[0], entry[2], entry[8]
    row = POLICY.get(name, parent_row)
    if row is None:
        if "blocking" in flags:
            row = ("CMD_PINNED", None, "blocks: needs a connection of its own")
        elif keyspecs:
            row = ("CMD_FORWARD", None, "to the master of its keys' slot")
        else:
            row = ("CMD_KEYLESS", None, "no keys: any master")
    kind, merge, note = row
    merge = merge or "MERGE_NONE"
    if (kind in ("CMD_SPLIT", "CMD_BROADCAST")) != (merge != "MERGE_NONE"):
        raise GenError(f"{name}: {kind} with {merge}")
    return kind, merge, note


def generate(version, reply):
    out = [f"/* generated by tools/gen-cmdtab.py from redis-server {version}; do not edit */",
           "/*",
           " * cmdtab: the command table (see cmd.h), from this server's COMMAND reply and",
           " * the handling policy in tools/gen-cmdtab.py. Regenerate with",
           " * `/usr/bin/python3 tools/gen-cmdtab.py --output src/model/cmdtab.c`.",
           " */",
           '#include "model/cmd.h"',
           "",
           "#include <stddef.h>",
           ""]
    used_quirks, idents, docs = set(), set(), []
    counts = {"commands": 0, "subcommands": 0}
    ids = {}  # a spec's number, from 1 in the table's order (acl.c's bitmaps)

    def emit_keyspecs(entry):
        name = entry[0]
        if not entry[8]:
            return "NULL"
        ident = "ks_" + c_ident(name)
        if ident in idents:
            raise GenError(f"{name}: identifier {ident} used twice")
        idents.add(ident)
        out.append(f"static const struct cmd_keyspec {ident}[] = {{")
        out.extend(c_keyspec(name, i, ks, used_quirks) for i, ks in enumerate(entry[8]))
        out.append("};")
        return ident

    def row(entry, policy, ks_ident, subs_ident, nsubs):
        name, arity, flags = entry[0], entry[1], entry[2]
        kind, merge, note = policy
        if name != name.lower() or '"' in name or "\\" in name:
            raise GenError(f"unexpected command name {name!r}")
        if '"' in note or "\\" in note:
            raise GenError(f"{name}: a note with quotes or backslashes")
        why = f'"{note}"' if kind == "CMD_REFUSED" else "NULL"
        docs.append((name.replace("|", " "), kind, merge, note))
        op, ctx = OPS.get(name, ("CMD_OP_NONE", []))
        ctx = " | ".join("CMD_CTX_" + c for c in ctx) or "0"
        return (f'    {{"{name}", {arity}, {c_flags(flags, COMMAND_FLAGS, "CMDF_", "command")}, {kind}, {merge}, '
                f"{op}, {ctx}, {len(entry[8])}, {nsubs}, {ks_ident}, {subs_ident}, {why}, "
                f"{c_flags([c.lstrip('@') for c in entry[6]], ACL_CATEGORIES, 'CMD_ACL_', 'ACL category')}, "
                f"{ids.setdefault(name, len(ids) + 1)}}},")

    table = []
    for entry in sorted(reply, key=lambda e: e[0]):
        counts["commands"] += 1
        policy = kind_of(entry)
        ks_ident = emit_keyspecs(entry)
        subs_ident, subs = "NULL", sorted(entry[9], key=lambda e: e[0])
        if subs:
            sub_rows = []
            for sub in subs:
                if not sub[0].startswith(entry[0] + "|"):
                    raise GenError(f"subcommand {sub[0]!r} of {entry[0]!r}")
                if sub[9]:
                    raise GenError(f"{sub[0]}: subcommands of subcommands")
                counts["subcommands"] += 1
                sub_kind = kind_of(sub, POLICY.get(entry[0]) if entry[0] in POLICY else None)
                sub_rows.append(row(sub, sub_kind, emit_keyspecs(sub), "NULL", 0))
            subs_ident = "subs_" + c_ident(entry[0])
            out.append(f"static const struct cmd_spec {subs_ident}[] = {{")
            out.extend(sub_rows)
            out.append("};")
        table.append(row(entry, policy, ks_ident, subs_ident, len(subs)))
        if out[-1] != "":
            out.append("")

    stale = set(QUIRKS) - used_quirks
    if stale:
        raise GenError(f"QUIRKS rows that match no key spec: {sorted(stale)}")
    known = {e[0] for e in reply} | {s[0] for e in reply for s in e[9]}
    unknown = set(POLICY) - known
    if unknown:
        raise GenError(f"POLICY rows for commands the server does not have: {sorted(unknown)}")
    unknown = set(OPS) - known
    if unknown:
        raise GenError(f"OPS rows for commands the server does not have: {sorted(unknown)}")

    out.append(f"/* {counts['commands']} commands, {counts['subcommands']} subcommands. */")
    out.append("const struct cmd_spec cmd_table[] = {")
    out.extend(table)
    out.append("};")
    out.append("const size_t cmd_table_len = sizeof(cmd_table) / sizeof(cmd_table[0]);")
    out.append(f'const char cmd_table_source[] = "redis-server {version}";')
    out.append(f"const size_t cmd_spec_count = {len(ids) + 1};")
    return "\n".join(out) + "\n", render_docs(version, docs), counts


KIND_DOC = {
    "CMD_FORWARD": ("forwarded", "to the master that serves its keys' slot; keys in several slots get `-CROSSSLOT`"),
    "CMD_KEYLESS": ("any master", "no keys: sent to one master, spread over them"),
    "CMD_SPLIT": ("split", "keys in several slots: one part per slot, sent in parallel, replies merged"),
    "CMD_BROADCAST": ("broadcast", "sent to every master serving slots, replies merged"),
    "CMD_PINNED": ("pinned", "holds a backend connection of its own: a transaction on the master of its first "
                   "key's slot (every command in it must hash to that slot), a blocking command on a connection "
                   "of its own while it blocks"),
    "CMD_PUBSUB": ("pub/sub", "subscriptions on a connection of the subscriber's own: ordinary channels and "
                   "patterns on the Pub/Sub node (the master of slot 0), keyspace notifications "
                   "(`__keyspace@`/`__keyevent@`) on every master, shard channels on their slot's master"),
    "CMD_LOCAL": ("local", "answered by respgate for the client's own session"),
    "CMD_REFUSED": ("refused", "never forwarded: `-ERR respgate does not forward '<command>': <why>`"),
}
MERGE_DOC = {
    "MERGE_NONE": "",
    "MERGE_SUM": "integers summed",
    "MERGE_ALL": "all must succeed; else the first error",
    "MERGE_ANY_OK": "one success is enough",
    "MERGE_CONCAT": "arrays joined",
    "MERGE_KEYORDER": "values back in key order",
    "MERGE_AND": "1 only where every master says 1",
    "MERGE_MIN": "the smallest count",
    "MERGE_NONNIL": "the first that is not nil",
    "MERGE_SCAN": "one cursor walks the masters in turn",
}


def render_docs(version, docs):
    """The command list for doc/commands.md."""
    lines = ["# Commands and how respgate handles them", "",
             f"Generated by `tools/gen-cmdtab.py --doc doc/commands.md` from redis-server {version}, with the",
             "same table respgate is built with (`src/model/cmdtab.c`); do not edit. A test fails when it is not current.",
             "", "| Handling | Meaning |", "|---|---|"]
    lines += [f"| {label} | {text} |" for label, text in KIND_DOC.values()]
    lines += ["", "Where several nodes answer, an error from any of them is the reply, never a shortened answer.",
              "", "| Command | Handling | Replies | Why |", "|---|---|---|---|"]
    for name, kind, merge, note in sorted(docs):
        lines.append(f"| `{name.upper()}` | {KIND_DOC[kind][0]} | {MERGE_DOC[merge]} | {note} |")
    return "\n".join(lines) + "\n"


def check(path, text, how):
    """0 if PATH holds TEXT; else 1, with a diff and how to regenerate it."""
    try:
        with open(path) as f:
            old = f.read()
    except OSError as e:
        print(f"gen-cmdtab: {e}", file=sys.stderr)
        return 2
    if old == text:
        return 0
    sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True), path, "regenerated"))
    print(f"gen-cmdtab: {path} is not current: regenerate it with /usr/bin/python3 tools/gen-cmdtab.py {how} {path}",
          file=sys.stderr)
    return 1


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv):
    ap = argparse.ArgumentParser(description="Generate respgate's command table from redis-server's COMMAND.")
    ap.add_argument("--host", default="127.0.0.1", help="with --port: the server's address")
    ap.add_argument("--port", type=int, help="ask a running redis-server instead of starting one")
    ap.add_argument("--output", metavar="FILE", help="write the table here instead of stdout")
    ap.add_argument("--doc", metavar="FILE", help="also write the command list (doc/commands.md) here")
    ap.add_argument("--check", metavar="FILE", help="exit 1, showing a diff, if the table FILE is not current")
    ap.add_argument("--check-doc", metavar="FILE", help="exit 1, showing a diff, if the list FILE is not current")
    args = ap.parse_args(argv)
    try:
        version, reply = fetch(args.host, args.port) if args.port else fetch_from_throwaway()
        text, doc, counts = generate(version, reply)
    except (GenError, redis.RedisError, OSError) as e:
        print(f"gen-cmdtab: {e}", file=sys.stderr)
        return 2
    if args.check or args.check_doc:
        rc = check(args.check, text, "--output") if args.check else 0
        return max(rc, check(args.check_doc, doc, "--doc") if args.check_doc else 0)
    if args.output:
        write(args.output, text)
    else:
        sys.stdout.write(text)
    if args.doc:
        write(args.doc, doc)
    print(f"gen-cmdtab: {counts['commands']} commands, {counts['subcommands']} subcommands "
          f"from redis-server {version}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
