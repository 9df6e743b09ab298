#!/usr/bin/env python3
# Writes fuzz_dispatch's seed corpus (tests/fuzz/corpus/dispatch): one
# input per kind of client and per family of commands, in the target's
# form: a kind byte, a seed byte, N and N bytes the nodes send as they are,
# then the client's bytes. Run it again after changing the form.
import os
import sys

AUTH, AUTH_APP, HELLO3, TRACKING, SUBSCRIBED, MULTI, PER_SLOT, REDIS62 = 1, 2, 4, 8, 16, 32, 64, 128


def frame(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


SEEDS = {
    # issue 27: a long option, then long overlapping prefixes
    "issue27-tracking-bcast-long-option": (AUTH | HELLO3, b"", [("CLIENT", "TRACKING", "ON", "BCAST", "x" * 600)]),
    "issue27-tracking-prefix-overlap": (AUTH | HELLO3, b"", [
        ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "a" * 300, "PREFIX", "a" * 400), ("CLIENT", "TRACKINGINFO")]),
    "tracking-on-off": (AUTH | HELLO3 | TRACKING, b"", [
        ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:"), ("GET", "user:1"), ("CLIENT", "TRACKING", "OFF"),
        ("CLIENT", "CACHING", "yes"), ("CLIENT", "GETREDIR")]),
    "hello-auth-setname": (0, b"", [
        ("HELLO", "3", "AUTH", "default", "client-pw", "SETNAME", "n" * 100), ("CLIENT", "GETNAME"),
        ("HELLO", "2", "bogus"), ("CLIENT", "INFO"), ("CLIENT", "LIST"), ("CLIENT", "ID")]),
    "auth-wrong-then-right": (0, b"", [
        ("AUTH", "nope"), ("GET", "k"), ("AUTH", "app", "app-pw"), ("ACL", "WHOAMI"), ("GET", "app:1"),
        ("GET", "other"), ("FLUSHALL",), ("ACL", "USERS")]),
    "multi-exec": (AUTH, b"", [
        ("MULTI",), ("SET", "{t}a", "1"), ("INCR", "{t}b"), ("EXEC",), ("WATCH", "w"), ("MULTI",), ("GET", "w"),
        ("DISCARD",), ("UNWATCH",)]),
    "multi-crossslot": (AUTH | MULTI, b"", [("SET", "a", "1"), ("SET", "b", "2"), ("EXEC",)]),
    "multi-per-slot": (AUTH | MULTI | PER_SLOT, b"+QUEUED\r\n*2\r\n+OK\r\n:1\r\n", [
        ("SET", "a", "1"), ("SET", "b", "2"), ("INCR", "c"), ("GET", "a"), ("EXEC",), ("MULTI",), ("SET", "a", "1"),
        ("SET", "b", "2"), ("DISCARD",), ("WATCH", "a"), ("MULTI",), ("SET", "b", "1"), ("EXEC",)]),
    "multi-per-slot-resp3": (AUTH | HELLO3 | MULTI | PER_SLOT, b"-ERR x\r\n", [
        ("PING",), ("SET", "a", "1"), ("HGETALL", "b"), ("SET", "k1", "1"), ("SET", "k2", "2"), ("EXEC",)]),
    "multi-per-slot-split": (AUTH | MULTI | PER_SLOT, b"+QUEUED\r\n+QUEUED\r\n*2\r\n$1\r\nx\r\n$-1\r\n", [
        ("MSET", "a", "1", "b", "2"), ("MGET", "b", "a", "c"), ("DEL", "a", "c"), ("MSET", "a", "1", "b"),
        ("EXISTS", "a", "b", "a"), ("EXEC",)]),
    "split-commands": (AUTH, b"", [
        ("MGET", "a", "b", "c", "d"), ("MSET", "a", "1", "b", "2", "c", "3"), ("DEL", "a", "b", "x"),
        ("EXISTS", "a", "b"), ("UNLINK", "q", "r"), ("TOUCH", "a", "z")]),
    "broadcast": (AUTH, b"", [
        ("SCAN", "0", "COUNT", "10"), ("SCAN", "18446744073709551615"), ("SCAN", "16401"), ("KEYS", "*"),
        ("DBSIZE",), ("RANDOMKEY",), ("FLUSHDB",), ("SCRIPT", "LOAD", "return 1"), ("WAIT", "1", "100"),
        ("SLOWLOG", "GET"), ("CONFIG", "SET", "maxmemory", "1")]),
    "info": (AUTH | HELLO3, b"", [
        ("INFO",), ("INFO", "all"), ("INFO", "keyspace", "stats"), ("INFO", "everything"), ("INFO", "bogus"),
        ("INFO", "respgate"), ("INFO", "server", "clients", "memory", "cpu", "replication")]),
    "info-62": (AUTH | REDIS62, b"", [("INFO",), ("INFO", "all"), ("INFO", "commandstats")]),
    "pubsub": (AUTH | SUBSCRIBED, b"", [
        ("SUBSCRIBE", "a", "b"), ("PSUBSCRIBE", "n*"), ("PING",), ("UNSUBSCRIBE",), ("PUNSUBSCRIBE",),
        ("SSUBSCRIBE", "s"), ("GET", "k")]),
    "pubsub-resp3": (AUTH | HELLO3 | SUBSCRIBED, b"", [
        ("SUBSCRIBE", "__keyspace@0__:k"), ("PUBLISH", "ch", "m"), ("PUBSUB", "CHANNELS"), ("GET", "k"),
        ("RESET",)]),
    "pubsub-keyspace-zero-byte": (AUTH, b"", [
        ("SUBSCRIBE", b"__keyspace@0__:\x00pad", b"__keyspace@0__:x\r\n*1\r\n$8\r\nFLUSHALL\r\n"),
        ("UNSUBSCRIBE", b"__keyspace@0__:\x00pad")]),
    "blocking": (AUTH, b"", [
        ("BLPOP", "l", "0.1"), ("BRPOPLPUSH", "a", "b", "1"), ("XREAD", "BLOCK", "10", "STREAMS", "s", "$"),
        ("GET", "k")]),
    "keyed": (AUTH | REDIS62, b"", [
        ("SET", "k", "v", "EX", "10", "GET"), ("EVAL", "return 1", "2", "a", "b"), ("EVAL", "return 1", "-1"),
        ("ZUNIONSTORE", "d", "2", "a", "b"), ("SORT", "l", "BY", "x", "STORE", "d"),
        ("GEORADIUS", "g", "0", "0", "1", "km", "STORE", "z")]),
    # keys in several slots (cross.h): steps that copy, then run, then clean
    "cross-slot": (AUTH, b"", [
        ("RENAME", "a", "b"), ("RENAMENX", "a", "b"), ("COPY", "a", "b", "DB", "1"), ("COPY", "a", "b", "REPLACE"),
        ("SUNIONSTORE", "d", "a", "b", "c"), ("ZUNION", "2", "a", "b", "WITHSCORES"), ("SORT", "a", "STORE", "b"),
        ("PFCOUNT", "a", "b"), ("GEORADIUS", "g", "0", "0", "1", "km", "STOREDIST", "z"),
        ("XREAD", "COUNT", "2", "STREAMS", "a", "b", "a", "0", "0", "$"),
        ("XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", "b", ">", ">"), ("SMOVE", "a", "b", "m"),
        ("LMOVE", "a", "b", "LEFT", "RIGHT"), ("MSETNX", "a", "1", "b", "2"), ("LMPOP", "2", "a", "b", "LEFT")]),
    "cross-slot-blocking": (AUTH, b"$-1\r\n*-1\r\n:7\r\n*2\r\n$1\r\nb\r\n$1\r\nv\r\n", [
        ("BLPOP", "a", "b", "c", "0"), ("BZPOPMIN", "a", "b", "0.5"), ("BRPOP", "a", "b", "x"), ("GET", "a"),
        ("BLMOVE", "a", "b", "LEFT", "RIGHT", "0"), ("BRPOPLPUSH", "a", "b", "1"),
        ("XREAD", "BLOCK", "10", "STREAMS", "a", "b", "$", "$"), ("BLMPOP", "0", "3", "a", "b", "c", "LEFT", "COUNT", "2"),
        ("BZMPOP", "0.5", "2", "a", "b", "MIN")]),
    "cross-slot-resp3": (AUTH | HELLO3, b"-ERR x\r\n$-1\r\n:5\r\n", [
        ("SINTER", "a", "b", "c"), ("RENAME", "a", "b"), ("BITOP", "AND", "d", "a", "b")]),
    "inline-and-errors": (AUTH, b"", [
        b"PING\r\n", b"SET \"a b\" 'c'\r\n", b"*1\r\n$4\r\nPING\r\n", b"*-1\r\n", b"*1\r\n$-1\r\n"]),
    "unknown-and-arity": (AUTH, b"", [
        ("NOSUCH", "a"), ("GET",), ("CLIENT", "NOSUCH"), ("CONFIG", "NOSUCH"), ("CLIENT", "SETNAME", "a b"),
        ("SELECT", "99999999999"), ("SELECT", "0")]),
    "acl-user": (AUTH_APP, b"", [
        ("SET", "app:1", "v"), ("SET", "x", "v"), ("SUBSCRIBE", "news1", "other"), ("PUBLISH", "x", "y"),
        ("FLUSHALL",), ("ACL", "LIST")]),
    "client-reply": (AUTH, b"", [
        ("CLIENT", "REPLY", "OFF"), ("SET", "a", "1"), ("CLIENT", "REPLY", "ON"), ("CLIENT", "REPLY", "SKIP"),
        ("GET", "a"), ("GET", "a"), ("ECHO", "e"), ("QUIT",)]),
    "noauth": (0, b"", [("GET", "k"), ("PING",), ("HELLO",), ("CLIENT", "ID")]),
    # a node that sends what no scanner should take whole
    "node-bad-bulk": (AUTH, b"$99999999999999999999\r\n", [("GET", "a"), ("GET", "b"), ("MGET", "a", "b")]),
    "node-short-frames": (AUTH | SUBSCRIBED, b"*1\r\n:1\r\n*2\r\n:1\r\n*3\r\n", [("SUBSCRIBE", "a"), ("PING",)]),
}


def main(dest):
    os.makedirs(dest, exist_ok=True)
    for name, (kind, node, cmds) in SEEDS.items():
        data = bytes([kind, 0x2A, len(node)]) + node
        data += b"".join(c if isinstance(c, bytes) else frame(*c) for c in cmds)
        with open(os.path.join(dest, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {dest}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                             "corpus", "dispatch"))
