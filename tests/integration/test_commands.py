# The command surface against the real 3+3 cluster: multi-key commands split
# by slot, cluster-wide commands merged over the masters, SCAN's one cursor,
# scripts and functions on every master, and the refusals. Where a single
# Redis gives an answer, the same commands are run against a plain
# redis-server and the replies must be equal.

import os
import re
import threading
import time

import pytest
import redis

from conftest import needs_redis7
from harness.cluster import REDIS_VERSION, keyslot

# Keys that hash to many slots, on every master (test_keys_cover_every_master).
KEYS = [f"key:{i}" for i in range(60)]




@pytest.fixture
def r(respgate):
    c = respgate.client()
    c.flushall()
    return c


def run(client, script):
    """Each command's reply, or ("error", text): what a client sees."""
    out = []
    for cmd in script:
        try:
            out.append(client.execute_command(*cmd))
        except redis.ResponseError as e:
            out.append(("error", str(e)))
    return out


def master_ports(cluster, keys):
    return {cluster.node_for_slot(keyslot(k)).port for k in keys}


def test_keys_cover_every_master(cluster):
    assert len({keyslot(k) for k in KEYS}) == len(KEYS)
    assert master_ports(cluster, KEYS) == {m.port for m in cluster.masters()}


def test_multi_key_commands_answer_as_a_single_redis(cluster, r, single):
    s = single.client()
    s.flushall()
    pairs = [a for i, k in enumerate(KEYS) for a in (k, f"v{i}")]
    script = [
        ("MSET", *pairs),
        ("MGET", *KEYS, "missing", KEYS[0], KEYS[-1]),
        ("EXISTS", *KEYS[:10], "missing", KEYS[0]),
        ("TOUCH", *KEYS[5:25], "missing"),
        ("DEL", *KEYS[:20], "missing", KEYS[0]),
        ("UNLINK", *KEYS[20:40], KEYS[21]),
        ("MGET", *KEYS),
        ("DBSIZE",),
        ("MSET", "a", "1", "b", "2", "a", "3", "{a}c", "4"),
        ("MGET", "a", "b", "{a}c", "a"),
        ("RPUSH", "list", "x"),
        ("MGET", "list", "a", KEYS[59]),
        ("EXISTS", "list", "list", "a", "zz"),
        ("DEL", "list", "a", "b", "{a}c"),
        ("MSETNX", "{t}x", "1", "{t}y", "2"),
        ("MGET", "{t}x", "{t}y"),
        ("DBSIZE",),
        ("MGET", "one-key"),
        # A part's reply too long to stage beside staged ones, and an MSET
        # frame that spans read chains (its parts move, not copied).
        ("SET", KEYS[3], "x" * 9000),
        ("MGET", *KEYS[:8], "missing"),
        ("MSET", KEYS[0], "y" * 100000, KEYS[1], "z", KEYS[2], "w" * 20000),
        ("MGET", *KEYS[:4]),
        ("DEL", *KEYS),
        ("DBSIZE",),
    ]
    via_respgate, on_single = run(r, script), run(s, script)
    assert via_respgate == on_single
    assert via_respgate[1][:3] == [b"v0", b"v1", b"v2"]  # the comparison saw real values


def test_a_failing_part_fails_the_whole_reply(cluster, r):
    """One master refuses writes (maxmemory 1): MSET over all masters is one
    error, never an OK; MGET still gives one element per key."""
    victim = cluster.masters()[0]
    admin = cluster.client(victim)
    admin.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.ResponseError) as e:
            r.mset({k: "v" for k in KEYS})
        assert "maxmemory" in str(e.value)
        values = r.mget(KEYS)
        assert len(values) == len(KEYS)
        on_victim = [k for k in KEYS if cluster.node_for_slot(keyslot(k)).port == victim.port]
        assert on_victim and all(values[KEYS.index(k)] is None for k in on_victim)
    finally:
        admin.config_set("maxmemory", 0)
    assert r.mset({k: "v" for k in KEYS}) is True


# Multi-key commands neither split nor answered by copying into one slot
# (test_cross_slot.py has those). A script's keys must share a slot, as on
# a cluster.
@pytest.mark.parametrize("cmd", [
    ("EVAL", "return 1", "2", "a", "b"),
    ("FCALL", "f", "2", "a", "b"),
])
def test_other_multi_key_commands_need_one_slot(r, cmd):
    assert keyslot("a") != keyslot("b")
    with pytest.raises(redis.ResponseError, match="^CROSSSLOT Keys in request don't hash to the same slot$"):
        r.execute_command(*cmd)


def test_same_slot_multi_key_commands_run(r):
    r.sadd("{s}a", "m")
    assert r.smove("{s}a", "{s}b", "m") is True
    assert r.rename("{s}b", "{s}c") is True
    assert r.smembers("{s}c") == {b"m"}
    assert r.sunionstore("{s}d", ["{s}c", "{s}a"]) == 1


def test_dbsize_keys_randomkey_and_flushes(cluster, r):
    assert r.dbsize() == 0
    assert r.randomkey() is None
    assert r.keys("*") == []
    r.mset({k: k for k in KEYS})
    assert r.dbsize() == len(KEYS)
    assert sorted(r.keys("*")) == sorted(k.encode() for k in KEYS)
    assert sorted(r.keys("key:1*")) == sorted(k.encode() for k in KEYS if k.startswith("key:1"))
    assert r.randomkey().decode() in KEYS
    assert r.flushdb() is True
    assert r.dbsize() == 0
    r.mset({k: k for k in KEYS})
    assert r.execute_command("FLUSHALL", "ASYNC") is True
    for m in cluster.masters():
        assert cluster.client(m).dbsize() == 0


def test_info_sums_the_masters(cluster, r):
    r.mset({k: k for k in KEYS})
    r.set(KEYS[0], "x", ex=1000)
    per_master = [cluster.client(m).dbsize() for m in cluster.masters()]
    assert sum(per_master) == len(KEYS) and all(per_master)
    keyspace = r.info("keyspace")
    assert keyspace["db0"]["keys"] == len(KEYS) and keyspace["db0"]["expires"] == 1
    nodes = r.info("nodes")
    assert sorted(v["addr"] for v in nodes.values()) == sorted(m.addr for m in cluster.masters())
    assert sorted(v["keys"] for v in nodes.values()) == sorted(per_master)
    stats = r.info("stats")
    direct = sum(cluster.client(m).info("stats")["keyspace_hits"] for m in cluster.masters())
    assert stats["keyspace_hits"] <= direct  # summed over the masters, read just before them
    everything = r.info()
    assert everything["redis_mode"] == "standalone" and everything["db0"]["keys"] == len(KEYS)
    assert "used_memory" in everything and "master0" not in everything  # the nodes section only on request


def test_scan_finds_every_one_of_100000_keys_exactly_once(r):
    expected = [f"scan:{i}".encode() for i in range(100_000)]
    pipe = r.pipeline(transaction=False)
    for i in range(0, len(expected), 1000):
        pipe.mset({k: "1" for k in expected[i:i + 1000]})
    assert all(x is True for x in pipe.execute())
    assert r.dbsize() == len(expected)

    seen, cursor, calls = [], 0, 0
    while True:
        cursor, keys = r.scan(cursor, count=1000)
        seen.extend(keys)
        calls += 1
        assert calls < 5000
        if cursor == 0:
            break
    assert len(seen) == len(expected)
    assert set(seen) == set(expected)

    r.rpush("scan:list", "x")
    assert set(r.scan_iter(match="scan:9999*", count=500)) == {k for k in expected if k.startswith(b"scan:9999")}
    assert list(r.scan_iter(_type="list", count=5000)) == [b"scan:list"]
    for bad in ("nope", "-1", "18446744073709551616"):
        with pytest.raises(redis.ResponseError, match="^invalid cursor$"):
            r.execute_command("SCAN", bad)


def test_scripts_are_loaded_on_every_master(cluster, r):
    r.script_flush()
    sha = r.script_load("return redis.call('set', KEYS[1], ARGV[1])")
    for m in cluster.masters():
        assert cluster.client(m).script_exists(sha) == [True]
    for k in KEYS:
        assert r.evalsha(sha, 1, k, "by-script") == b"OK"
    assert r.mget(KEYS) == [b"by-script"] * len(KEYS)
    assert r.script_exists(sha, "0" * 40) == [True, False]
    # Loaded only where every master has it.
    cluster.client(cluster.masters()[1]).script_flush()
    assert r.script_exists(sha) == [False]
    assert r.script_flush() is True
    for m in cluster.masters():
        assert cluster.client(m).script_exists(sha) == [False]


@needs_redis7("FUNCTION")
def test_functions_are_loaded_on_every_master(cluster, r):
    code = ("#!lua name=rglib\n"
            "redis.register_function('rgset', function(keys, args) return redis.call('set', keys[1], args[1]) end)")
    assert r.execute_command("FUNCTION", "LOAD", "REPLACE", code) == b"rglib"
    for k in KEYS:
        assert r.execute_command("FCALL", "rgset", 1, k, "by-function") == b"OK"
    assert r.mget(KEYS) == [b"by-function"] * len(KEYS)
    assert r.execute_command("FUNCTION", "DELETE", "rglib") == b"OK"
    for m in cluster.masters():
        assert cluster.client(m).execute_command("FUNCTION", "LIST") == []
    with pytest.raises(redis.ResponseError, match="Library not found"):
        r.execute_command("FUNCTION", "DELETE", "rglib")


def test_config_set_reaches_every_node(cluster, r):
    old = r.config_get("slowlog-max-len")["slowlog-max-len"]
    try:
        assert r.config_set("slowlog-max-len", 333) is True
        for m in cluster.masters() + cluster.replicas():
            assert cluster.client(m).config_get("slowlog-max-len")["slowlog-max-len"] == "333"
        assert r.config_get("slowlog-max-len")["slowlog-max-len"] == "333"
        # each version's own words
        text = "Unknown option or number of arguments" if REDIS_VERSION >= (7, 0) else "Unsupported CONFIG parameter"
        with pytest.raises(redis.ResponseError, match=text):
            r.config_set("no-such-option", 1)
    finally:
        r.config_set("slowlog-max-len", old)


def test_slowlog_is_merged_over_the_masters(cluster, r):
    old = r.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    try:
        assert r.config_set("slowlog-log-slower-than", 0) is True
        assert r.slowlog_reset() is True
        for k in KEYS:
            r.get(k)
        entries = r.slowlog_get(1000)
        logged = {e["command"] for e in entries}
        assert {f"GET {k}".encode() for k in KEYS} <= logged
        assert r.slowlog_len() >= len(KEYS)
    finally:
        r.config_set("slowlog-log-slower-than", old)
    assert isinstance(r.execute_command("LATENCY", "RESET"), int)


def test_wait_asks_the_masters_this_session_wrote_to(cluster, r):
    # Each master has one replica: one acknowledgement is what WAIT can get.
    r.set(KEYS[0], "1")
    assert r.wait(1, 5000) == 1
    r.mset({k: "1" for k in KEYS})
    assert r.wait(1, 5000) == 1
    assert r.wait(2, 100) == 1  # times out: nobody has two replicas
    # WAIT holds a connection other clients share: even "forever" is bounded
    # (half of timeouts.backend), and the count says what was reached.
    r.set(KEYS[1], "2")
    assert r.wait(2, 0) == 1


def test_a_split_mset_missing_its_last_value_writes_nothing(r):
    assert keyslot("a") != keyslot("b")
    with pytest.raises(redis.ResponseError, match="^wrong number of arguments for 'mset' command$"):
        r.execute_command("MSET", "a", "1", "b")
    assert r.exists("a", "b") == 0


@pytest.mark.parametrize("cmd", [
    ("MONITOR",), ("SYNC",), ("PSYNC", "?", "-1"), ("CLUSTER", "NODES"), ("MOVE", "k", "1"),
    ("SWAPDB", "0", "1"), ("DEBUG", "SLEEP", "0"), ("SHUTDOWN",), ("REPLICAOF", "NO", "ONE"),
])
def test_refused_commands_say_which_and_why(respgate, cmd):
    r = respgate.client()
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command(*cmd)
    text = str(e.value)
    assert text.startswith(f"respgate does not forward '{cmd[0].lower()}")
    assert r.ping() is True


def test_script_kill_reaches_a_busy_master(cluster, make_respgate):
    """A long keyless EVAL, then SCRIPT KILL from another client of the same
    worker: the kill must not queue behind the script on the shared
    connection (the node reads nothing there until the script ends). It
    goes on a connection of its own, the script dies, and the master serves
    again at once, as with a single Redis."""
    masters = [cluster.client(m) for m in cluster.masters()]
    for m in masters:
        m.config_set("lua-time-limit", 100)  # busy-reply-threshold: BUSY after 100 ms
    try:
        rg = make_respgate(extra="workers: 1\n")
        runner, killer = rg.client(), rg.client()
        outcome = []

        def run_script():
            try:
                outcome.append(runner.eval("while true do end", 0))
            except redis.ResponseError as e:
                outcome.append(e)

        t = threading.Thread(target=run_script)
        t.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                assert killer.script_kill() is True
                break
            except redis.ResponseError as e:
                assert "NOTBUSY" in str(e)  # the script had not started yet
        t.join(10)
        assert not t.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], redis.ResponseError), outcome
        assert "killed" in str(outcome[0]).lower()
        for i in range(30):  # every master serves again at once
            assert killer.set(f"after-kill:{i}", i) is True
        assert "may or may not have run" not in rg.log()
    finally:
        for m in masters:
            m.config_set("lua-time-limit", 5000)


def test_requests_behind_a_long_script_wait_for_the_node(cluster, make_respgate):
    """A script runs past timeouts.backend and past the node's
    busy-reply-threshold. respgate's reply timeout does not fail what is
    queued behind it ("may or may not have run"): the connection stalls, a
    new one finds the node alive, the script and the GET queued behind it
    are answered when it ends, and a request sent once the node answers
    BUSY gets that answer, the node's own, as from a single Redis."""
    key = "{busy}k"
    node = cluster.client(cluster.node_for_slot(keyslot(key)))
    node.set(key, "v")
    node.config_set("lua-time-limit", 1500)
    try:
        rg = make_respgate(extra="workers: 1\ntimeouts: {backend: 500ms}\n")
        a, b, c = rg.client(), rg.client(), rg.client()
        assert b.get(key) == b"v"  # the worker's connection to the node is up
        script = ("local t = redis.call('TIME') local stop = t[1] * 1000000 + t[2] + 3000000 "
                  "while true do t = redis.call('TIME') "
                  "if t[1] * 1000000 + t[2] > stop then break end end return 'done'")
        out = {}

        def run(name, fn):
            try:
                out[name] = fn()
            except redis.RedisError as e:
                out[name] = e

        threads = [threading.Thread(target=run, args=("eval", lambda: a.eval(script, 1, key)))]
        threads[0].start()
        time.sleep(0.1)
        threads.append(threading.Thread(target=run, args=("queued", lambda: b.get(key))))
        threads[1].start()
        time.sleep(2.0)  # past the threshold: the node answers BUSY to a new connection
        run("busy", lambda: c.get(key))
        for t in threads:
            t.join(10)
        assert out["eval"] == b"done", out
        assert out["queued"] == b"v", out
        assert isinstance(out["busy"], redis.ResponseError) and str(out["busy"]).startswith("BUSY"), out
        assert c.get(key) == b"v"
        assert "may or may not have run" not in rg.log()
        assert "they wait" in rg.log()
    finally:
        node.config_set("lua-time-limit", 5000)


def test_a_command_only_the_nodes_know_is_routed_by_its_keys(make_respgate):
    """A respgate built with a table that lacks GETEX (as the table lacks the
    commands of a newer Redis) learns it from the nodes' COMMAND and routes
    it by its key: every GETEX reaches its slot's master at once, with no
    MOVED to follow; what the nodes do not know either keeps Redis's error."""
    from harness.respgate import BINARY
    binary = os.path.join(os.path.dirname(os.path.dirname(BINARY)), "tests", "respgate-without-getex")
    assert os.access(binary, os.X_OK), f"build it: make -C {os.path.dirname(os.path.dirname(BINARY))} check"
    rg = make_respgate(binary=binary)
    deadline = time.monotonic() + 10
    learned = re.compile(r"the nodes know \d+ commands? respgate's table lacks, routed by their keys: (.*)")
    while not learned.search(rg.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    names = learned.search(rg.log()).group(1).split()
    # 6.2 has STRALGO, which 7.0 dropped; never its guards against HTTP (POST, Host:)
    assert names == (["getex"] if REDIS_VERSION >= (7, 0) else ["getex", "stralgo"]), names
    r = rg.client()
    keys = {f"learned:{i}": str(i) for i in range(60)}
    r.mset(keys)
    before = r.info("respgate")["redirections"]
    for k, v in keys.items():
        assert r.execute_command("GETEX", k, "EX", "100") == v.encode()
        assert 0 < r.ttl(k) <= 100
    assert r.info("respgate")["redirections"] == before  # each went to its slot's master
    with pytest.raises(redis.ResponseError, match="unknown command"):
        r.execute_command("NOSUCHCOMMAND", "x")
