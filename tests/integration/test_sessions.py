# Commands that hold a backend connection of their own, against the real 3+3
# cluster: transactions (MULTI/EXEC/DISCARD/WATCH) answer as a single Redis
# does within one slot and abort like Redis Cluster across slots; blocking
# commands wait without holding anybody else up, honour a timeout of 0, and
# free their connection on the node as soon as their client leaves.

import socket
import threading
import time

import pytest
import redis

from harness.cluster import keyslot




def comparable(reply):
    """REPLY with errors (also inside EXEC's array) as ("error", text)."""
    if isinstance(reply, Exception):
        return ("error", str(reply))
    if isinstance(reply, list):
        return [comparable(x) for x in reply]
    return reply


def run(client, script):
    out = []
    for cmd in script:
        try:
            out.append(comparable(client.execute_command(*cmd)))
        except redis.ResponseError as e:
            out.append(("error", str(e)))
    return out


def raw(client, *args):
    """ARGS on CLIENT's one connection, the reply without redis-py's parsing."""
    client.connection.send_command(*args)
    return client.connection.read_response()


def test_transactions_answer_as_a_single_redis(respgate, single):
    r = respgate.client(single_connection_client=True)
    s = single.client(single_connection_client=True)
    for c in (r, s):
        c.delete("{t}a", "{t}b", "{t}n")
    script = [
        ("MULTI",), ("SET", "{t}a", "1"), ("INCR", "{t}a"), ("GET", "{t}a"), ("EXEC",),
        ("MULTI",), ("PING",), ("TIME",), ("SET", "{t}b", "x"), ("EXEC",),
        ("MULTI",), ("EXEC",),
        ("MULTI",), ("MULTI",), ("SET", "{t}n", "1"), ("DISCARD",), ("GET", "{t}n"),
        ("EXEC",), ("DISCARD",),
        ("MULTI",), ("SET", "{t}n", "1"), ("NOSUCHCOMMAND",), ("EXEC",), ("GET", "{t}n"),
        ("MULTI",), ("GET",), ("EXEC",),
        ("MULTI",), ("LPUSH", "{t}a", "x"), ("GET", "{t}a"), ("EXEC",),
        ("WATCH", "{t}a"), ("UNWATCH",),
        ("MULTI",), ("WATCH", "{t}a"), ("DISCARD",),
    ]
    via_respgate, on_single = run(r, script), run(s, script)
    # TIME's reply differs, as it should: compare its shape only.
    assert len(via_respgate[9]) == 3 and len(via_respgate[9][1]) == 2
    via_respgate[9][1] = on_single[9][1] = None
    assert via_respgate == on_single
    assert via_respgate[4] == [b"OK", 2, b"2"]  # the comparison saw the transaction run


def test_a_transaction_across_slots_aborts(respgate):
    r = respgate.client(single_connection_client=True)
    assert keyslot("a") != keyslot("b")
    r.delete("a")
    assert raw(r, "MULTI") == b"OK"
    assert raw(r, "SET", "a", "1") == b"QUEUED"
    with pytest.raises(redis.ResponseError, match="^CROSSSLOT Keys in request don't hash to the same slot "
                                                  r"\(respgate: .* cluster.cross_slot_transactions is per-slot\)$"):
        raw(r, "SET", "b", "1")
    with pytest.raises(redis.ResponseError, match="^Transaction discarded because of previous errors.$"):
        raw(r, "EXEC")
    assert r.exists("a") == 0
    # A command for the whole cluster cannot be part of one node's transaction.
    assert raw(r, "MULTI") == b"OK"
    with pytest.raises(redis.ResponseError, match="'dbsize' concerns the whole cluster"):
        raw(r, "DBSIZE")
    with pytest.raises(redis.ResponseError, match="^Transaction discarded"):
        raw(r, "EXEC")
    assert r.ping() is True


def test_watch_aborts_when_another_client_writes(respgate):
    r, other = respgate.client(), respgate.client()
    r.set("{w}k", "0")
    with r.pipeline() as pipe:
        pipe.watch("{w}k")
        assert pipe.get("{w}k") == b"0"
        other.set("{w}k", "changed")
        pipe.multi()
        pipe.set("{w}k", "mine")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get("{w}k") == b"changed"
    with r.pipeline() as pipe:
        pipe.watch("{w}k", "{w}j")
        pipe.multi()
        pipe.set("{w}k", "mine")
        pipe.incr("{w}j")
        assert pipe.execute() == [True, 1]
    assert r.mget("{w}k", "{w}j") == [b"mine", b"1"]
    r.delete("{w}j")


def test_pipelined_transactions_from_a_client_library(respgate):
    r = respgate.client()
    with r.pipeline(transaction=True) as pipe:
        pipe.set("{p}a", "1").incrby("{p}a", 41).get("{p}a").delete("{p}a")
        assert pipe.execute() == [True, 42, b"42", 1]
    with r.pipeline(transaction=True) as pipe:
        pipe.set("{p}a", "1").set("{q}b", "2")
        with pytest.raises(redis.ResponseError):
            pipe.execute()
    assert r.exists("{p}a", "{q}b") == 0


def blocked_clients(cluster, key):
    return cluster.client(cluster.node_for_slot(keyslot(key))).info("clients")["blocked_clients"]


def wait_for(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_blocking_commands_wait_without_holding_others_up(cluster, respgate):
    r = respgate.client()
    r.delete("bl:list", "bl:dst", "bl:zset")
    result = {}

    def block():
        result["blpop"] = respgate.client().blpop(["bl:list"], timeout=0)

    t = threading.Thread(target=block)
    t.start()
    try:
        assert wait_for(lambda: blocked_clients(cluster, "bl:list") == 1)
        # Everyone else goes on meanwhile, on the same worker's shared connections.
        for i in range(200):
            r.set(f"bl:other:{i}", i)
        assert r.get("bl:other:199") == b"199"
        r.rpush("bl:list", "woken")
    finally:
        t.join(10)
    assert result["blpop"] == (b"bl:list", b"woken")
    assert r.blpop(["bl:list"], timeout=0.2) is None
    r.rpush("{bl}src", "m")
    assert r.blmove("{bl}src", "{bl}dst", 1, "LEFT", "RIGHT") == b"m"
    r.zadd("bl:zset", {"z": 1})
    assert r.bzpopmin("bl:zset", 1) == (b"bl:zset", b"z", 1.0)
    r.xadd("bl:stream", {"f": "v"}, id="1-1")
    assert r.xread({"bl:stream": "0"}) == [[b"bl:stream", [(b"1-1", {b"f": b"v"})]]]
    assert r.xread({"bl:stream": "$"}, block=100) == []
    # BLPOP, BLMOVE and XREAD BLOCK across slots wait (test_cross_slot.py); XREADGROUP BLOCK is refused.
    with pytest.raises(redis.ResponseError, match="^CROSSSLOT"):
        r.xreadgroup("g", "c", {"a": ">", "b": ">"}, block=100)
    r.delete("bl:stream", "{bl}dst", *[f"bl:other:{i}" for i in range(200)])


def test_timeout_zero_outlives_the_backend_timeout(cluster, make_respgate):
    rg = make_respgate(extra="timeouts: {backend: 300ms}\n")
    r = rg.client()
    r.delete("bl:late")
    result = {}
    t = threading.Thread(target=lambda: result.update(v=rg.client().blpop(["bl:late"], timeout=0)))
    t.start()
    try:
        assert wait_for(lambda: blocked_clients(cluster, "bl:late") == 1)
        time.sleep(1.0)  # over three times timeouts.backend
        assert blocked_clients(cluster, "bl:late") == 1
        r.rpush("bl:late", "x")
    finally:
        t.join(10)
    assert result["v"] == (b"bl:late", b"x")


def test_a_client_leaving_mid_blpop_frees_its_connection_at_once(cluster, respgate):
    s = socket.create_connection(("127.0.0.1", respgate.port))
    s.sendall(b"*3\r\n$5\r\nBLPOP\r\n$7\r\nbl:gone\r\n$1\r\n0\r\n")
    assert wait_for(lambda: blocked_clients(cluster, "bl:gone") == 1)
    s.close()
    assert wait_for(lambda: blocked_clients(cluster, "bl:gone") == 0, timeout=2.0)
    # Nothing popped the list for the departed client.
    r = respgate.client()
    r.rpush("bl:gone", "kept")
    assert r.lrange("bl:gone", 0, -1) == [b"kept"]
    r.delete("bl:gone")


def test_a_blocked_connection_runs_nothing_else_until_unblocked(cluster, respgate):
    """As on Redis: what a client pipelines after BLPOP runs after it."""
    r = respgate.client()
    r.delete("bl:q")
    s = socket.create_connection(("127.0.0.1", respgate.port))
    try:
        s.sendall(b"*3\r\n$5\r\nBLPOP\r\n$4\r\nbl:q\r\n$1\r\n0\r\n"
                  b"*3\r\n$5\r\nRPUSH\r\n$4\r\nbl:q\r\n$4\r\nmine\r\n")
        assert wait_for(lambda: blocked_clients(cluster, "bl:q") == 1)
        assert r.llen("bl:q") == 0  # the RPUSH behind the BLPOP has not run
        r.rpush("bl:q", "other")
        f = s.makefile("rb")
        assert [f.readline() for _ in range(6)] == [b"*2\r\n", b"$4\r\n", b"bl:q\r\n", b"$5\r\n",
                                                   b"other\r\n", b":1\r\n"]
    finally:
        s.close()
    assert r.lrange("bl:q", 0, -1) == [b"mine"]
    r.delete("bl:q")


def pipelined(port, commands):
    """Sends COMMANDS in one write; returns the raw replies (one line each)."""
    frame = b"".join(b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in c)
                     for c in commands)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(frame)
        f = s.makefile("rb")
        out = []
        for _ in commands:
            line = f.readline()
            out.append(line + (f.readline() if line[:1] == b"$" and line != b"$-1\r\n" else b""))
        return out


def test_commands_around_a_watch_run_in_order(respgate, single):
    """WATCH k; GET k; SET k b; MULTI; SET k c; EXEC in one write: the SET
    after WATCH touches the key, so EXEC aborts; the same as on Redis."""
    commands = [(b"SET", b"{o}k", b"a"), (b"WATCH", b"{o}k"), (b"GET", b"{o}k"), (b"SET", b"{o}k", b"b"),
                (b"MULTI",), (b"SET", b"{o}k", b"c"), (b"EXEC",), (b"GET", b"{o}k")]
    expected = [b"+OK\r\n", b"+OK\r\n", b"$1\r\na\r\n", b"+OK\r\n", b"+OK\r\n", b"+QUEUED\r\n", b"*-1\r\n",
                b"$1\r\nb\r\n"]
    assert pipelined(single.port, commands) == expected
    for _ in range(20):
        assert pipelined(respgate.port, commands) == expected


def test_a_blocking_loop_reuses_its_connections(cluster, respgate):
    """BRPOP q 0.01 in a loop: answered blocking connections wait in a pool,
    so the node does not see a new connection per call."""
    r = respgate.client()
    key = "bl:loop"
    node = cluster.client(cluster.node_for_slot(keyslot(key)))
    r.delete(key)
    before = node.info("stats")["total_connections_received"]
    for _ in range(30):
        assert r.brpop([key], timeout=0.01) is None
    r.rpush(key, "x")
    assert r.brpop([key], timeout=0) == (key.encode(), b"x")
    opened = node.info("stats")["total_connections_received"] - before
    assert opened <= 3, opened  # the node's own CLIENT LIST check opens one too


def test_short_transactions_reuse_their_connections(cluster, respgate):
    """Transactions that end with EXEC, DISCARD or UNWATCH leave nothing on
    their connection: the next one takes it from the pool."""
    r = respgate.client()
    key = "{tx}loop"
    node = cluster.client(cluster.node_for_slot(keyslot(key)))
    before = node.info("stats")["total_connections_received"]
    for i in range(30):
        with r.pipeline(transaction=True) as pipe:
            pipe.set(key, i).incr(key)
            assert pipe.execute() == [True, i + 1]
    with r.pipeline() as pipe:
        pipe.watch(key)
        pipe.multi()
        pipe.set(key, "w")
        assert pipe.execute() == [True]
    opened = node.info("stats")["total_connections_received"] - before
    assert opened <= 3, opened
    # A connection left in MULTI by RESET is not reused: the next transaction is clean.
    raw = respgate.client(single_connection_client=True)
    assert raw.execute_command("MULTI") == b"OK"
    raw.connection.send_command("SET", key, "lost")
    assert raw.connection.read_response() == b"QUEUED"
    assert raw.execute_command("RESET") in ("RESET", b"RESET")
    with r.pipeline(transaction=True) as pipe:
        pipe.get(key)
        assert pipe.execute() == [b"w"]
    r.delete(key)


def test_a_blocking_command_on_a_pooled_transaction_connection_never_times_out(make_respgate):
    """A transaction's connection, pooled once EXEC answered, still had the
    reply timeout of its last reply armed; a blocking command that took it
    from the pool within timeouts.backend failed with "no reply within
    timeouts.backend" before its own timeout ended (the cause of issue 9's
    intermittent BLPOP/BRPOPLPUSH/BZPOPMIN failures). Now a connection that
    carries a blocking command ignores reply timeouts."""
    rg = make_respgate(extra="timeouts: {backend: 1s}\n")
    r = rg.client()
    key = "{pooltimer}list"
    r.delete(key)
    for _ in range(3):
        with r.pipeline(transaction=True) as pipe:
            pipe.set("{pooltimer}x", 1).incr("{pooltimer}x")
            assert pipe.execute() == [True, 2]
        # The stale timer fires 1 s after EXEC's reply, while BLPOP still
        # waits (it ends 0.5 + 1.5 = 2 s after it).
        time.sleep(0.5)
        assert r.blpop([key], timeout=1.5) is None
    assert "no reply within timeouts.backend" not in rg.log()
