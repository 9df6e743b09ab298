# Moving from one standalone Redis to the cluster through respgate
# (migration: in the config, src/migrate.h): a standalone redis-server full
# of keys of every type, some with TTLs, and an empty 3+3 cluster of this
# module's own behind respgate. read-through imports what a read misses and
# what a write changes; copy also walks the standalone. The standalone is
# only read: its keys are the same at the end, compared key by key.

import os
import random
import signal
import threading
import time
import types
import urllib.request

import pytest
import redis

from conftest import CLUSTER_PASSWORD, wait_until
from harness.cluster import Cluster, keyslot
from harness.respgate import Respgate, free_port, yaml_config
from harness.single import Single

OLD_PASSWORD = "old-pw"
TYPES = ("string", "hash", "list", "set", "zset", "stream")


@pytest.fixture(scope="module")
def mcluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("mcluster"), password=CLUSTER_PASSWORD) as c:
        yield c


@pytest.fixture
def empty(mcluster):
    """The module's cluster, emptied (on each master directly)."""
    mcluster.wait_state_ok()
    for node in mcluster.masters():
        mcluster.client(node).flushall()
    return mcluster


@pytest.fixture
def old(tmp_path):
    with Single(tmp_path, password=OLD_PASSWORD) as s:
        yield s


def key(i):
    return f"k:{TYPES[i % len(TYPES)]}:{i}"


def fill(old, n, seed=1):
    """N keys of every type on OLD, a third of them with a TTL; returns the
    keys that have one."""
    rnd = random.Random(seed)
    c = old.client()
    with_ttl = set()
    p = c.pipeline(transaction=False)
    for i in range(n):
        k, t = key(i), TYPES[i % len(TYPES)]
        if t == "string":
            p.set(k, f"v{i}" * rnd.randint(1, 5))
        elif t == "hash":
            p.hset(k, mapping={f"f{j}": f"{i}.{j}" for j in range(rnd.randint(1, 4))})
        elif t == "list":
            p.rpush(k, *[f"e{j}" for j in range(rnd.randint(1, 4))])
        elif t == "set":
            p.sadd(k, *[f"m{j}" for j in range(rnd.randint(1, 4))])
        elif t == "zset":
            p.zadd(k, {f"z{j}": j * 1.5 for j in range(rnd.randint(1, 4))})
        else:
            p.xadd(k, {"n": str(i)}, id=f"{i + 1}-1")
        if i % 3 == 0:
            p.pexpire(k, rnd.randint(1000, 3600) * 1000)
            with_ttl.add(k)
        if len(p) >= 2000:
            p.execute()
    p.execute()
    return with_ttl


def read(p, k):
    """Queues on pipeline P the read that shows K's whole value."""
    t = k.split(":")[1]
    {"string": lambda: p.get(k), "hash": lambda: p.hgetall(k), "list": lambda: p.lrange(k, 0, -1),
     "set": lambda: p.smembers(k), "zset": lambda: p.zrange(k, 0, -1, withscores=True),
     "stream": lambda: p.xrange(k)}[t]()


def values(client, keys):
    p = client.pipeline(transaction=False)
    for k in keys:
        read(p, k)
    return p.execute()


def snapshot(old):
    """Every key of OLD with its DUMP and whether it has a TTL."""
    c = old.client()
    keys = sorted(c.scan_iter(count=1000))
    p = c.pipeline(transaction=False)
    for k in keys:
        p.dump(k)
        p.pttl(k)
    out = p.execute()
    return {k: (out[2 * i], out[2 * i + 1] > 0) for i, k in enumerate(keys)}


def assert_ttls_kept(old, client, keys):
    """Each of KEYS has a TTL through CLIENT, within a second of the standalone's."""
    p_old, p_new = old.client().pipeline(transaction=False), client.pipeline(transaction=False)
    for k in keys:
        p_old.pttl(k)
        p_new.pttl(k)
    for k, a, b in zip(keys, p_old.execute(), p_new.execute()):
        assert b > 0 and abs(a - b) < 1000, (k, a, b)


def migration_yaml(old, mode, state, extra=""):
    return (f"migration:\n  mode: {mode}\n  source: 127.0.0.1:{old.port}\n  password: {OLD_PASSWORD}\n"
            f"  state_file: {state}\n{extra}")


def start(tmp_path, cluster, old, mode, name="rg", extra="", migration_extra=""):
    port = free_port()
    text = yaml_config(port, cluster.seeds, CLUSTER_PASSWORD, None,
                       migration_yaml(old, mode, tmp_path / "migration.state", migration_extra) + extra)
    return Respgate(tmp_path / name, text, port).start()


def info(rg):
    return rg.client(decode_responses=True).info("respgate")


def test_read_through_answers_old_keys_keeps_ttls_and_never_overwrites(tmp_path, empty, old):
    with_ttl = fill(old, 100000)
    before = snapshot(old)
    assert len(before) == 100000
    rg = start(tmp_path, empty, old, "read-through")
    try:
        c = rg.client(decode_responses=True)
        sample = [key(i) for i in range(0, 100000, 5)]  # 20,000 keys, every type
        assert values(c, sample) == values(old.client(decode_responses=True), sample)
        # Now in the cluster, with their TTLs (within a second).
        assert_ttls_kept(old, c, [k for k in sample if k in with_ttl][:2000])
        on_masters = sum(empty.client(n).dbsize() for n in empty.masters())
        assert on_masters == len(sample)

        # A write that changes a value applies to the old one.
        assert c.incr("counter") == 1  # no old copy: as on an empty Redis
        old.client().set("old-counter", 41)
        assert c.incr("old-counter") == 42
        old.client().set("old-script", 9)  # a script's declared keys count as written
        assert c.eval("return redis.call('INCR', KEYS[1])", 1, "old-script") == 10
        h = key(1)  # a hash not read yet
        assert h not in sample
        c.hset(h, "added", "x")
        expected = dict(old.client(decode_responses=True).hgetall(h), added="x")
        assert c.hgetall(h) == expected
        # DEL counts the old copy, and the key stays deleted.
        d = key(7)
        assert c.delete(d) == 1
        assert c.exists(d) == 0 and c.type(d) == "none"
        # A key written through respgate is never replaced by its old copy.
        w = key(13)
        c.set(w, "new")
        assert c.get(w) == "new"
        # MGET across slots, and EXISTS, import what they miss.
        keys = [key(i) for i in (6, 12, 18, 24)]
        assert c.mget(keys) == old.client(decode_responses=True).mget(keys)
        assert c.exists(key(30), key(36), d) == 2

        stats = info(rg)
        assert stats["migration_mode"] == "read-through"
        assert stats["migration_imported"] >= len(sample)
        assert stats["migration_failed"] == 0
        assert stats["migration_written_keys"] >= 4

        # Restarted, respgate remembers what was deleted and written.
        assert rg.stop() == 0
        rg.start()
        c = rg.client(decode_responses=True)
        assert c.get(d) is None and c.exists(d) == 0
        assert c.get(w) == "new"
    finally:
        rg.stop()
    assert not rg.sanitizer_report(), rg.sanitizer_report()
    # The standalone was only read.
    after = snapshot(old)
    after.pop(b"old-counter")
    after.pop(b"old-script")
    assert after == before


class Load:
    """A client reading and writing through respgate until stopped: reads of
    the standalone's keys must answer their values, its own writes must
    read back, and some old keys are deleted or changed on the way."""

    def __init__(self, rg, old, n, seed, deleted, changed):
        self.rg, self.n, self.rnd = rg, n, random.Random(seed)
        self.old = old.client(decode_responses=True)
        self.errors, self.deleted, self.changed, self.ops = [], deleted, changed, 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        c = self.rg.client(decode_responses=True)
        while not self.stop_flag.is_set():
            try:
                i = self.rnd.randrange(self.n)
                k = key(i)
                if k in self.deleted or k in self.changed:
                    continue
                op = self.rnd.random()
                if op < 0.02 and k.startswith("k:string:"):
                    if c.delete(k) != 1:
                        self.errors.append(f"DEL {k} did not count the old copy")
                    self.deleted.add(k)
                elif op < 0.04 and k.startswith("k:hash:"):
                    c.hset(k, "added", "yes")
                    self.changed[k] = dict(self.old.hgetall(k), added="yes")
                elif op < 0.2:
                    c.set(f"new:{i}", i)
                    if c.get(f"new:{i}") != str(i):
                        self.errors.append(f"new:{i} did not read back")
                else:
                    p = c.pipeline(transaction=False)
                    read(p, k)
                    got = p.execute()[0]
                    want = values(self.old, [k])[0]
                    if got != want:
                        self.errors.append(f"{k}: {got!r} through respgate, {want!r} on the standalone")
                self.ops += 1
            except redis.RedisError as e:
                self.errors.append(f"{type(e).__name__}: {e}")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(30)


def test_copy_walks_every_key_under_load_and_resumes_after_a_restart(tmp_path, empty, old):
    n = 100000
    with_ttl = fill(old, n, seed=2)
    before = snapshot(old)
    admin = free_port()
    rg = start(tmp_path, empty, old, "copy", extra=f"admin:\n  listen: 127.0.0.1:{admin}\n",
               migration_extra="  rate_keys: 15000\n")
    deleted, changed = set(), {}
    try:
        with Load(rg, old, n, 3, deleted, changed) as load:
            assert wait_until(lambda: info(rg)["migration_walk_scanned"] >= 30000, 60), rg.log()[-2000:]
        assert not load.errors, load.errors[:10]
        assert load.ops > 100
        # Stopped halfway, respgate saves the walk's cursor; started again,
        # it goes on from there.
        assert rg.stop() == 0
        stats = info_of_state(tmp_path / "migration.state")
        assert stats["cursor"] != 0 and stats["walk_done"] == 0 and stats["walk_scanned"] >= 30000
        rg.start()
        assert f"walk cursor {stats['cursor']} read" in rg.log()
        with Load(rg, old, n, 4, deleted, changed) as load:
            assert wait_until(lambda: info(rg)["migration_walk_done"] == 1, 120), rg.log()[-2000:]
        assert not load.errors, load.errors[:10]
        stats = info(rg)
        assert stats["migration_walk_scanned"] >= n
        assert stats["migration_failed"] == 0
        assert "walk done" in rg.log()
        # What a person and Prometheus read.
        status = http_get(admin, "/migration")
        assert f"migration: copy, from 127.0.0.1:{old.port}" in status
        assert f"walk: done, {stats['migration_walk_scanned']} keys walked" in status
        assert "failed: 0" in status
        metrics = http_get(admin, "/metrics")
        assert f'respgate_migration_keys_total{{outcome="walk_copied"}} {stats["migration_walk_copied"]}' in metrics
        assert "respgate_migration_walk_left 0" in metrics

        # Every key is in the cluster, read on the masters themselves:
        # deleted ones stay deleted, changed ones keep their change.
        assert deleted and changed
        direct = redis.RedisCluster(host="127.0.0.1", port=empty.masters()[0].port, password=CLUSTER_PASSWORD,
                                    decode_responses=True)
        try:
            keys = [key(i) for i in range(n)]
            got = dict(zip(keys, values(direct, keys)))
            want = dict(zip(keys, values(old.client(decode_responses=True), keys)))
            for k in deleted:
                assert got.pop(k) is None
                want.pop(k)
            for k, v in changed.items():
                assert got.pop(k) == v
                want.pop(k)
            assert got == want
            assert_ttls_kept(old, direct, sorted(with_ttl - deleted - set(changed))[:3000])
        finally:
            direct.close()
    finally:
        rg.stop()
    assert not rg.sanitizer_report(), rg.sanitizer_report()
    assert snapshot(old) == before


def http_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def info_of_state(path):
    """The state file's "name value" lines."""
    with open(path) as f:
        return {name: int(value) for name, value in (line.split() for line in f if line.strip())}


def test_a_standalone_out_of_reach_fails_no_request(tmp_path, empty, old):
    port = old.port
    old.stop()  # nothing listens there now
    rg = start(tmp_path, empty, types.SimpleNamespace(port=port), "read-through")
    try:
        c = rg.client(decode_responses=True)
        assert c.get("some-key") is None
        assert c.hgetall("some-hash") == {}
        assert c.incr("some-counter") == 1
        c.set("some-key", "v")
        assert c.get("some-key") == "v"
        stats = info(rg)
        assert stats["migration_failed"] >= 3
        assert stats["migration_imported"] == 0
    finally:
        rg.stop()
    assert not rg.sanitizer_report(), rg.sanitizer_report()


def test_large_values_are_left_to_writes_and_the_walk(tmp_path, empty, old):
    o = old.client()
    big, big2 = os.urandom(5000).hex(), os.urandom(5000).hex()  # DUMP compresses repeated bytes
    o.set("big", big)
    o.set("big2", big2)
    rg = start(tmp_path, empty, old, "read-through", migration_extra="  max_value_size: 1kb\n")
    try:
        c = rg.client(decode_responses=True)
        assert c.get("big") is None  # a read does not copy it
        assert info(rg)["migration_too_large"] == 1
        assert c.append("big", "z") == 10001  # a write does
        assert c.get("big") == big + "z"
        # copy mode: the walk takes it (a reload turns it on).
        rg.write_config(open(rg.conf_path).read().replace("mode: read-through", "mode: copy"))
        rg.signal(signal.SIGHUP)
        assert wait_until(lambda: info(rg)["migration_walk_done"] == 1, 30), rg.log()[-2000:]
        assert c.get("big2") == big2
        assert info(rg)["migration_walk_copied"] == 1
    finally:
        rg.stop()
    assert not rg.sanitizer_report(), rg.sanitizer_report()


def test_concurrent_writers_kills_and_transactions_keep_old_data(tmp_path, empty, old):
    o = old.client()
    o.mset({f"count:{i}": 1000 for i in range(5)})
    o.mset({f"many:{i}": i for i in range(100)})
    o.hset("h", mapping={"a": 1, "b": 2})
    o.set("kept", "old")
    rg = start(tmp_path, empty, old, "read-through")
    try:
        # 40 clients over both workers INCR the same old counters at once:
        # each write waits for the one import of its key, wherever it runs.
        barrier, errors = threading.Barrier(40), []

        def incr(i):
            c = rg.client()
            try:
                barrier.wait(10)
                c.incr(f"count:{i % 5}")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=incr, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        c = rg.client(decode_responses=True)
        assert [c.get(f"count:{i}") for i in range(5)] == ["1008"] * 5
        # A write of more keys than fit on the stack marks and copies them all.
        assert c.delete(*[f"many:{i}" for i in range(100)]) == 100
        assert c.get("many:80") is None and c.exists("many:99") == 0
        # A field missing from a key the cluster has is not fetched again.
        assert c.hget("h", "zz") is None
        before = info(rg)
        assert c.hget("h", "zz") is None and c.hexists("h", "zz") == 0
        after = info(rg)
        assert after["migration_imported"] + after["migration_present"] == \
            before["migration_imported"] + before["migration_present"]
        # A SET inside a discarded transaction does not hide the old value.
        raw = rg.client()
        raw.execute_command("MULTI")
        raw.execute_command("SET", "kept", "new")
        raw.execute_command("DISCARD")
        assert c.get("kept") == "old"
        # Deleted, then killed: the key is on disk before the DEL went.
        assert c.delete("count:0") == 1
        rg.signal(signal.SIGKILL)
        rg.wait()
        rg.start()
        c = rg.client(decode_responses=True)
        assert c.get("count:0") is None
        assert c.get("count:1") == "1008"
    finally:
        rg.stop()
    assert not rg.sanitizer_report(), rg.sanitizer_report()


def test_a_record_cut_short_in_the_keys_file_is_dropped(tmp_path, empty, old):
    old.client().mset({"a": 1, "b": 2})
    rg = start(tmp_path, empty, old, "read-through")
    try:
        assert rg.client().delete("a") == 1
        assert rg.stop() == 0
        with open(tmp_path / "migration.state.keys", "ab") as f:
            f.write(b"\x01\x02\x03")  # a crash in the middle of a record
        rg.start()
        assert rg.client().delete("b") == 1
        assert rg.stop() == 0
        assert os.path.getsize(tmp_path / "migration.state.keys") == 16
        rg.start()
        c = rg.client()
        assert c.get("a") is None and c.get("b") is None
        assert info(rg)["migration_written_keys"] == 2
    finally:
        rg.stop()
    assert not rg.sanitizer_report(), rg.sanitizer_report()


def test_a_reload_begins_pauses_and_ends_the_migration(tmp_path, empty, old):
    old.client().mset({f"r:{i}": i for i in range(300)})
    port = free_port()
    plain = yaml_config(port, empty.seeds, CLUSTER_PASSWORD, None, "")
    rg = Respgate(tmp_path / "rg", plain, port).start()
    try:
        c = rg.client(decode_responses=True)
        assert c.get("r:1") is None  # no migration yet

        def reload(text, done):
            rg.write_config(text)
            rg.signal(signal.SIGHUP)
            assert wait_until(lambda: rg.log().count(done) == reload.count.get(done, 0) + 1, 10), rg.log()
            reload.count[done] = reload.count.get(done, 0) + 1
        reload.count = {}
        # A state file that cannot be made fails the reload as a whole.
        reload(plain + migration_yaml(old, "read-through", tmp_path / "no-such-dir" / "state"), "reload failed")
        assert c.get("r:1") is None
        # Begun by a reload: its state files open then.
        text = plain + migration_yaml(old, "read-through", tmp_path / "migration.state")
        reload(text, "configuration reloaded")
        assert c.get("r:1") == "1"
        assert os.path.exists(tmp_path / "migration.state.keys")
        # copy walks the rest (at 100 keys a second); read-through pauses
        # it; copy again goes on; off ends the migration.
        slow = text.replace("mode: read-through", "mode: copy") + "  rate_keys: 100\n"
        reload(slow, "configuration reloaded")
        assert wait_until(lambda: info(rg)["migration_walk_scanned"] >= 100, 10), rg.log()[-2000:]
        reload(text, "configuration reloaded")
        time.sleep(2)  # unpaused, the walk would be done by now (a batch out may still end)
        stats = info(rg)
        assert stats["migration_walk_done"] == 0 and stats["migration_walk_scanned"] < 300, stats
        reload(slow, "configuration reloaded")
        assert wait_until(lambda: info(rg)["migration_walk_done"] == 1, 30), rg.log()[-2000:]
        assert c.get("r:299") == "299"
        reload(plain, "configuration reloaded")
        assert "migration: off (was copy)" in rg.log()
        old.client().set("late", "x")
        assert c.get("late") is None  # nothing is looked up any more
    finally:
        rg.stop()
    assert not rg.sanitizer_report(), rg.sanitizer_report()


def test_keys_in_several_slots_read_through(tmp_path, empty, old):
    """Commands whose keys lie in several slots (issue 29) see the old
    data: their keys are imported before their steps run."""
    o = old.client()
    o.sadd("x:s1", "a", "b")
    o.sadd("x:s2", "b", "c")
    o.set("x:src", "v", px=100000)
    o.rpush("x:l1", "e1", "e2")
    o.pfadd("x:h1", "a", "b")
    o.pfadd("x:h2", "c")
    assert len({keyslot(k) for k in ("x:s1", "x:s2", "x:src", "x:dst", "x:l1", "x:l2")}) >= 4
    rg = start(tmp_path, empty, old, "read-through")
    try:
        c = rg.client()
        assert c.sunion("x:s1", "x:s2") == {b"a", b"b", b"c"}  # a read: its keys imported first
        assert c.pfcount("x:h1", "x:h2") == 3
        assert c.rename("x:src", "x:dst") is True
        assert c.get("x:dst") == b"v" and 99000 < c.pttl("x:dst") <= 100000
        assert c.exists("x:src") == 0  # deleted, and not imported again: the old copy is marked gone
        assert c.lmove("x:l1", "x:l2", "LEFT", "RIGHT") == b"e1"
        assert (c.lrange("x:l1", 0, -1), c.lrange("x:l2", 0, -1)) == ([b"e2"], [b"e1"])
    finally:
        rg.stop()
