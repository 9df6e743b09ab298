#!/usr/bin/python3
"""gen-cmdtab.py: writes src/cmdtab.c, respgate's command table, from a real
redis-server's COMMAND reply (arity, flags, key specifications, subcommands)
and the handling policy below.

    gen-cmdtab.py [--output FILE]      start a throwaway redis-server, write the table
    gen-cmdtab.py --port P [--host H]  ask the redis-server already running there
    gen-cmdtab.py --check FILE         regenerate; exit 1 with a diff if FILE differs

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
OUTPUT_NAME = "src/cmdtab.c"

# COMMAND's flags, in cmd.h's bit order (CMDF_<NAME>).
COMMAND_FLAGS = [
    "write", "readonly", "denyoom", "module", "admin", "pubsub", "noscript", "blocking", "loading",
    "stale", "skip_monitor", "skip_slowlog", "asking", "fast", "no_auth", "may_replicate",
    "no_mandatory_keys", "no_async_loading", "no_multi", "movablekeys", "allow_busy",
]

# Key spec flags (CMD_KSF_<NAME>).
KEYSPEC_FLAGS = ["RO", "RW", "OW", "RM", "access", "update", "insert", "delete", "not_key",
                 "incomplete", "variable_flags"]

# Handling kind by command name ("parent|sub" for one subcommand). Unlisted:
# a subcommand takes its parent's row if the parent has one; otherwise
# blocking commands are CMD_PINNED, commands with keys CMD_FORWARD, the rest
# CMD_KEYLESS.
POLICY = {
    "ping": "CMD_LOCAL",          # answered for the client's own connection
    "echo": "CMD_LOCAL",          # answered for the client's own connection
    "quit": "CMD_LOCAL",          # closes the client's own connection
    "auth": "CMD_LOCAL",          # respgate's client password, not a node's
    "hello": "CMD_LOCAL",         # protocol and auth of the client's own session
    "select": "CMD_LOCAL",        # a cluster has database 0 only; answered locally
    "reset": "CMD_LOCAL",         # resets the client's own session
    "client": "CMD_LOCAL",        # the client's own connection is to respgate
    "monitor": "CMD_REFUSED",     # one node's stream of every command; not a proxy session
    "sync": "CMD_REFUSED",        # replication protocol
    "psync": "CMD_REFUSED",       # replication protocol
    "replconf": "CMD_REFUSED",    # replication protocol
    "debug": "CMD_REFUSED",       # can crash or stall a node
    "shutdown": "CMD_REFUSED",    # stops a node behind the proxy's back
    "replicaof": "CMD_REFUSED",   # changes the cluster's topology
    "slaveof": "CMD_REFUSED",     # changes the cluster's topology
    "move": "CMD_REFUSED",        # a cluster has database 0 only
    "swapdb": "CMD_REFUSED",      # a cluster has database 0 only
    "failover": "CMD_REFUSED",    # changes the cluster's topology
    "cluster": "CMD_REFUSED",     # the whole family for now: topology belongs to respgate
    "readwrite": "CMD_REFUSED",   # replica reads are respgate's policy, not the client's
    "readonly": "CMD_REFUSED",    # replica reads are respgate's policy, not the client's
    "asking": "CMD_REFUSED",      # respgate follows ASK itself; on a shared connection it would leak
    "save": "CMD_REFUSED",        # admin operation on one node
    "bgsave": "CMD_REFUSED",      # admin operation on one node
    "bgrewriteaof": "CMD_REFUSED",  # admin operation on one node
    "lastsave": "CMD_REFUSED",    # one node's state, meaningless through a proxy
    "acl": "CMD_REFUSED",         # refused for now: users differ per node
    "module": "CMD_REFUSED",      # loads code into one node
    "latency": "CMD_BROADCAST",   # every node's state (placeholder: later issues decide)
    "slowlog": "CMD_BROADCAST",   # every node's state (placeholder)
    "config": "CMD_BROADCAST",    # every node's state (placeholder)
    "info": "CMD_LOCAL",          # respgate answers as the one server the client sees
    "dbsize": "CMD_BROADCAST",    # a sum over masters (placeholder)
    "flushall": "CMD_BROADCAST",  # every master (placeholder)
    "flushdb": "CMD_BROADCAST",   # every master (placeholder)
    "keys": "CMD_BROADCAST",      # a union over masters (placeholder)
    "scan": "CMD_BROADCAST",      # a cursor over masters (placeholder)
    "randomkey": "CMD_BROADCAST",  # any master's (placeholder)
    "script": "CMD_BROADCAST",    # scripts must be on every master (placeholder)
    "function": "CMD_BROADCAST",  # libraries must be on every master (placeholder)
    "wait": "CMD_BROADCAST",      # replication of the session's writes (placeholder)
    "command": "CMD_BROADCAST",   # the nodes' command table (placeholder)
    "mget": "CMD_SPLIT",          # keys in many slots: one fragment per slot, replies merged
    "mset": "CMD_SPLIT",          # keys in many slots: one fragment per slot
    "del": "CMD_SPLIT",           # keys in many slots: counts summed
    "unlink": "CMD_SPLIT",        # keys in many slots: counts summed
    "exists": "CMD_SPLIT",        # keys in many slots: counts summed
    "touch": "CMD_SPLIT",         # keys in many slots: counts summed
    "multi": "CMD_PINNED",        # a transaction holds one backend connection
    "exec": "CMD_PINNED",         # a transaction holds one backend connection
    "discard": "CMD_PINNED",      # a transaction holds one backend connection
    "watch": "CMD_PINNED",        # watched keys live on one backend connection
    "unwatch": "CMD_PINNED",      # watched keys live on one backend connection
    "subscribe": "CMD_PINNED",    # a subscriber holds a backend connection
    "psubscribe": "CMD_PINNED",   # a subscriber holds a backend connection
    "unsubscribe": "CMD_PINNED",  # a subscriber holds a backend connection
    "punsubscribe": "CMD_PINNED",  # a subscriber holds a backend connection
    "ssubscribe": "CMD_PINNED",   # a shard subscriber holds a backend connection
    "sunsubscribe": "CMD_PINNED",  # a shard subscriber holds a backend connection
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


def kind_of(entry, parent_kind=None):
    name, flags, keyspecs = entry[0], entry[2], entry[8]
    if name in POLICY:
        return POLICY[name]
    if parent_kind is not None:
        return parent_kind
    if "blocking" in flags:
        return "CMD_PINNED"
    return "CMD_FORWARD" if keyspecs else "CMD_KEYLESS"


def generate(version, reply):
    out = [f"/* generated by tools/gen-cmdtab.py from redis-server {version}; do not edit */",
           "/*",
           " * cmdtab: the command table (see cmd.h), from this server's COMMAND reply and",
           " * the handling policy in tools/gen-cmdtab.py. Regenerate with",
           " * `/usr/bin/python3 tools/gen-cmdtab.py --output src/cmdtab.c`.",
           " */",
           '#include "cmd.h"',
           "",
           "#include <stddef.h>",
           ""]
    used_quirks, idents = set(), set()
    counts = {"commands": 0, "subcommands": 0}

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

    def row(entry, kind, ks_ident, subs_ident, nsubs):
        name, arity, flags = entry[0], entry[1], entry[2]
        if name != name.lower() or '"' in name or "\\" in name:
            raise GenError(f"unexpected command name {name!r}")
        return (f'    {{"{name}", {arity}, {c_flags(flags, COMMAND_FLAGS, "CMDF_", "command")}, {kind}, '
                f"{len(entry[8])}, {nsubs}, {ks_ident}, {subs_ident}}},")

    table = []
    for entry in sorted(reply, key=lambda e: e[0]):
        counts["commands"] += 1
        kind = kind_of(entry)
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
                sub_kind = kind_of(sub, POLICY.get(entry[0]))
                sub_rows.append(row(sub, sub_kind, emit_keyspecs(sub), "NULL", 0))
            subs_ident = "subs_" + c_ident(entry[0])
            out.append(f"static const struct cmd_spec {subs_ident}[] = {{")
            out.extend(sub_rows)
            out.append("};")
        table.append(row(entry, kind, ks_ident, subs_ident, len(subs)))
        if out[-1] != "":
            out.append("")

    stale = set(QUIRKS) - used_quirks
    if stale:
        raise GenError(f"QUIRKS rows that match no key spec: {sorted(stale)}")
    known = {e[0] for e in reply} | {s[0] for e in reply for s in e[9]}
    unknown = set(POLICY) - known
    if unknown:
        raise GenError(f"POLICY rows for commands the server does not have: {sorted(unknown)}")

    out.append(f"/* {counts['commands']} commands, {counts['subcommands']} subcommands. */")
    out.append("const struct cmd_spec cmd_table[] = {")
    out.extend(table)
    out.append("};")
    out.append("const size_t cmd_table_len = sizeof(cmd_table) / sizeof(cmd_table[0]);")
    out.append(f'const char cmd_table_source[] = "redis-server {version}";')
    return "\n".join(out) + "\n", counts


def main(argv):
    ap = argparse.ArgumentParser(description="Generate respgate's command table from redis-server's COMMAND.")
    ap.add_argument("--host", default="127.0.0.1", help="with --port: the server's address")
    ap.add_argument("--port", type=int, help="ask a running redis-server instead of starting one")
    ap.add_argument("--output", metavar="FILE", help="write here instead of stdout")
    ap.add_argument("--check", metavar="FILE", help="exit 1, showing a diff, if FILE is not current")
    args = ap.parse_args(argv)
    try:
        version, reply = fetch(args.host, args.port) if args.port else fetch_from_throwaway()
        text, counts = generate(version, reply)
    except (GenError, redis.RedisError, OSError) as e:
        print(f"gen-cmdtab: {e}", file=sys.stderr)
        return 2
    if args.check:
        try:
            with open(args.check) as f:
                old = f.read()
        except OSError as e:
            print(f"gen-cmdtab: {e}", file=sys.stderr)
            return 2
        if old == text:
            return 0
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                   args.check, "regenerated"))
        print(f"gen-cmdtab: {args.check} is not current: regenerate it with "
              f"/usr/bin/python3 tools/gen-cmdtab.py --output {args.check}", file=sys.stderr)
        return 1
    if args.output:
        tmp = args.output + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, args.output)
    else:
        sys.stdout.write(text)
    print(f"gen-cmdtab: {counts['commands']} commands, {counts['subcommands']} subcommands "
          f"from redis-server {version}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
