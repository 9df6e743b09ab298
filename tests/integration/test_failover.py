# Failover, topology changes and reads from replicas, against a real 3+3 cluster of
# its own (cluster-node-timeout 2000 ms): many clients write and read keys
# whose values encode the key and a sequence number while a master is
# killed, restarted, failed over by hand, paused past the timeouts, and
# while slots with keys in them migrate. For each fault: respgate stays up,
# no reply ever belongs to another request, every acknowledged write is
# readable afterwards (except what the cluster itself may lose when a master
# dies before replicating), and the client-visible errors are counted and
# printed with their time window (pytest -s shows them).

import threading
import time

import pytest
import redis

from conftest import CLUSTER_PASSWORD, needs_redis7, wait_until
from harness.cluster import Cluster, keyslot
from harness.respgate import Respgate, free_port, yaml_config

NODE_TIMEOUT_MS = 2000
CLIENTS = 8
KEYS_PER_CLIENT = 40
LOAD_LIMIT_S = 60  # every load loop stops by then, whatever happens


@pytest.fixture(scope="module")
def fcluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("fcluster"), password=CLUSTER_PASSWORD,
                 node_timeout_ms=NODE_TIMEOUT_MS) as c:
        yield c


def own_respgate(fcluster, tmp_path, read_policy=None, extra="log: {level: info}\n"):
    """A respgate (not yet started: use it with `with`) in front of FCLUSTER, once it is settled."""
    fcluster.wait_state_ok()
    port = free_port()
    text = yaml_config(port, fcluster.seeds, CLUSTER_PASSWORD, None, extra)
    if read_policy:
        text = text.replace("cluster:\n", f"cluster:\n  read_policy: {read_policy}\n", 1)
    return Respgate(tmp_path / "rg", text, port)


@pytest.fixture
def frg(fcluster, tmp_path):
    with own_respgate(fcluster, tmp_path) as rg:
        yield rg


class Load:
    """CLIENTS threads, each writing KEYS_PER_CLIENT keys round robin with
    values "<key>:<seq>" and reading each back."""

    def __init__(self, port, tag):
        self.port, self.tag = port, tag
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}      # key -> (seq, monotonic time of the ack)
        self.doubtful = {}   # key -> seqs whose SET failed: may or may not have run
        self.errors = []     # (start time, text)
        self.mixups = []
        self.latencies = []
        self.ack_times = []
        self.ops = 0
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(CLIENTS)]

    def __enter__(self):
        self.began = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def key(self, cid, i):
        return f"fo:{self.tag}:{cid}:{i}"

    def slots(self):
        """The slots of every key of the load, sorted."""
        return sorted({keyslot(self.key(c, i)) for c in range(CLIENTS) for i in range(KEYS_PER_CLIENT)})

    def run(self, cid):
        r = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=30)
        seq = 0
        while not self.stop.is_set() and time.monotonic() - self.began < LOAD_LIMIT_S:
            key = self.key(cid, seq % KEYS_PER_CLIENT)
            value = f"{key}:{seq}"
            t0 = time.monotonic()
            try:
                r.set(key, value)
                got = r.get(key)
                t1 = time.monotonic()
                with self.lock:
                    self.acked[key] = (seq, t1)
                    self.latencies.append(t1 - t0)
                    self.ack_times.append(t1)
                    self.ops += 1
                    if got is None or not got.decode().startswith(key + ":"):
                        self.mixups.append((key, got))
            except redis.RedisError as e:
                with self.lock:
                    self.errors.append((t0, str(e)))
                    self.doubtful.setdefault(key, set()).add(seq)
                time.sleep(0.01)
            seq += 1

    def wait_ops(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        start = self.ops
        while self.ops - start < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.ops - start >= n

    def report(self, name, fault_at):
        window = (f"{min(t for t, _ in self.errors) - fault_at:+.2f}s .. "
                  f"{max(t for t, _ in self.errors) - fault_at:+.2f}s") if self.errors else "none"
        worst = max(self.latencies) if self.latencies else 0
        print(f"\n{name}: {self.ops} ops, {len(self.errors)} client-visible errors (window {window} from the "
              f"fault), slowest request {worst:.2f}s, {len(self.mixups)} mixed-up replies")
        for t, text in self.errors[:5]:
            print(f"  {t - fault_at:+.2f}s {text}")

    def verify(self, port, lossy_since=None):
        """Every acknowledged write is readable: the key holds that value or a
        later one. LOSSY_SINCE: writes acked after then may be lost with a
        master that died before replicating them. Returns how many were."""
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30)
        lost = []
        for key, (seq, at) in self.acked.items():
            got = r.get(key)
            assert got is not None and got.decode().startswith(key + ":"), (key, got)
            final = int(got.decode().rsplit(":", 1)[1])
            if final < seq and not (final in self.doubtful.get(key, ()) or lossy_since and at >= lossy_since):
                lost.append((key, seq, final))
            elif final < seq:
                lost.append(None)
        bad = [x for x in lost if x]
        assert not bad, f"acknowledged writes lost: {bad[:5]}"
        return len(lost)


def unharmed(load, frg):
    """A fault the cluster handles without losing a master: respgate up, no
    error, no mixed-up reply, every acknowledged write readable."""
    assert frg.proc.poll() is None
    assert not load.mixups and not load.errors
    load.verify(frg.port)


def promoted(fcluster, replica):
    try:
        return replica in fcluster.masters()
    except Exception:
        return False


def in_sync(fcluster, replica):
    try:
        info = fcluster.client(replica).info("replication")
    except redis.RedisError:
        return False
    return info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")


def master_with_replica(fcluster):
    """A master and a replica of it that is in sync: a replica restarted by
    the test before may still be loading its master's data, and a manual
    failover to it would time out."""
    assert wait_until(lambda: any(in_sync(fcluster, r) for r in fcluster.replicas()), 30), "no replica in sync"
    replica = next(r for r in fcluster.replicas() if in_sync(fcluster, r))
    return fcluster.master_of(replica), replica


def test_master_killed_then_restarted(fcluster, frg):
    victim, heir = master_with_replica(fcluster)
    with Load(frg.port, "kill") as load:
        assert load.wait_ops(300)
        killed_at = time.monotonic()
        fcluster.kill(victim)
        assert wait_until(lambda: promoted(fcluster, heir), 30), "the replica was not promoted"
        promoted_at = time.monotonic()
        assert load.wait_ops(300), "no progress after the promotion"
    load.report("master SIGKILL", killed_at)
    resumed = min(t for t in load.ack_times if t > killed_at + 0.5)
    print(f"  promotion seen {promoted_at - killed_at:.2f}s after the kill; first write through respgate after "
          f"the gap {resumed - killed_at:.2f}s after the kill")
    assert frg.proc.poll() is None
    assert not load.mixups
    late = [e for e in load.errors if e[0] > killed_at + 0.5]
    assert not late, f"errors for requests after the failure was seen: {late[:3]}"
    assert max(load.latencies) < NODE_TIMEOUT_MS / 1000 + 3 + 5  # bounded; the figure is printed above
    lost = load.verify(frg.port, lossy_since=killed_at - 1.0)
    print(f"  {lost} acknowledged writes lost with the dead master (not yet replicated)")
    log = frg.log()
    assert f"{heir.addr} is now a master (failover)" in log
    assert f"{victim.addr} is flagged failing" in log
    stats = redis.Redis(host="127.0.0.1", port=frg.port).info("respgate")
    print(f"  respgate counters: {stats}")
    assert stats["requests_waited"] > 0 and stats["requests_expired"] == 0
    assert stats["failover_wait_ms"] == NODE_TIMEOUT_MS + 5000  # read from the nodes' CONFIG

    # The old master comes back and joins as a replica of its heir.
    with Load(frg.port, "rejoin") as load:
        assert load.wait_ops(200)
        back_at = time.monotonic()
        fcluster.restart(victim)
        fcluster.wait_state_ok()
        assert load.wait_ops(200)
    load.report("old master restarted", back_at)
    assert not load.errors and not load.mixups
    load.verify(frg.port)
    # However many connections failed, each worker holds one per node.
    workers = redis.Redis(host="127.0.0.1", port=frg.port).info("server")["respgate_workers"]
    for node in fcluster.masters() + fcluster.replicas():
        named = [c for c in fcluster.client(node).client_list() if c.get("name") == "respgate"]
        assert len(named) <= workers, (node, named)


def test_manual_failover(fcluster, frg):
    master, replica = master_with_replica(fcluster)
    with Load(frg.port, "manual") as load:
        assert load.wait_ops(300)
        at = time.monotonic()
        # Redis abandons a manual failover that has not completed in 5 s (the
        # replica must catch up with a master busy with the load): ask again.
        for _ in range(3):
            assert fcluster.client(replica).execute_command("CLUSTER", "FAILOVER") in ("OK", b"OK", True)
            if wait_until(lambda: promoted(fcluster, replica), 10):
                break
        assert promoted(fcluster, replica), "three manual failovers did not complete"
        fcluster.wait_state_ok()
        assert load.wait_ops(300)
    load.report("CLUSTER FAILOVER", at)
    unharmed(load, frg)


def test_slot_migration_under_load(fcluster, frg):
    with Load(frg.port, "migrate") as load:
        assert load.wait_ops(300)
        dst = fcluster.masters()[0]
        slots = [slot for slot in load.slots() if fcluster.node_for_slot(slot).port != dst.port][:20]
        # One destination, with the highest config epoch before it takes a
        # slot: a new owner that ties with the old one can lose the slot
        # back, keys and all (Cluster.take_highest_epoch).
        fcluster.take_highest_epoch(dst)
        at = time.monotonic()
        # By hand rather than fcluster.move_slots: the masters learn the new
        # owner in any order here, so for a moment the nodes disagree and
        # redirect each other, which respgate must wait out.
        for slot in slots:
            src = fcluster.node_for_slot(slot)
            s, d = fcluster.client(src), fcluster.client(dst)
            d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id)
            s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.node_id)
            while keys := s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                s.execute_command("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "AUTH", CLUSTER_PASSWORD,
                                  "KEYS", *keys)
            for m in fcluster.masters():
                fcluster.client(m).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst.node_id)
        fcluster.wait_state_ok()
        assert load.wait_ops(300)
    load.report(f"{len(slots)} slots migrated", at)
    unharmed(load, frg)


def test_a_master_added_then_removed_under_load(fcluster, frg):
    with Load(frg.port, "grow") as load:
        assert load.wait_ops(300)
        at = time.monotonic()
        new = fcluster.add_master()
        slots = load.slots()[::4]
        owners = {slot: fcluster.node_for_slot(slot) for slot in slots}
        try:
            fcluster.move_slots(slots, new)
            fcluster.wait_state_ok()
            assert load.wait_ops(300)
            assert fcluster.client(new).dbsize() > 0  # the new master serves keys of the load
            for slot in slots:
                fcluster.move_slots([slot], owners[slot])
            fcluster.wait_state_ok()
            # As an operator would: remove the node once nothing is sent to it,
            # i.e. respgate's map (a refresh a second) has no slot on it.
            info = redis.Redis(host="127.0.0.1", port=frg.port)
            assert wait_until(lambda: new.addr not in str(info.info("nodes")), 10)
        finally:
            # Also when failing: a fourth master left in the shared cluster
            # would fail the tests after this one too.
            for slot in slots:  # each a no-op where the slot is back already
                fcluster.move_slots([slot], owners[slot])
            fcluster.remove_node(new)
            fcluster.wait_state_ok()
        assert load.wait_ops(300)
    load.report(f"a master added, {len(slots)} slots moved to it and back, the master removed", at)
    unharmed(load, frg)
    assert f"{new.addr} joined as a master" in frg.log()
    assert wait_until(lambda: f"{new.addr} left" in frg.log(), 5)  # at the next refresh


def test_master_paused_past_the_timeouts(fcluster, frg):
    victim, heir = master_with_replica(fcluster)
    with Load(frg.port, "pause") as load:
        assert load.wait_ops(300)
        paused_at = time.monotonic()
        fcluster.pause(victim)
        try:
            assert wait_until(lambda: promoted(fcluster, heir), 30), "the replica was not promoted"
            assert load.wait_ops(300), "no progress after the promotion"
        finally:
            fcluster.resume(victim)
        fcluster.wait_state_ok()
        assert load.wait_ops(300)
    load.report("master SIGSTOP", paused_at)
    resumed = min(t for t in load.ack_times if t > paused_at + 0.5)
    print(f"  first write through respgate after the gap {resumed - paused_at:.2f}s after the pause")
    assert frg.proc.poll() is None
    assert not load.mixups
    # Requests in flight when it stopped time out (timeouts.backend, 2 s) with
    # "may or may not have run"; later ones wait for the new master.
    late = [e for e in load.errors if e[0] > paused_at + 0.5]
    assert not late, f"errors for requests after the pause began: {late[:3]}"
    load.verify(frg.port, lossy_since=paused_at - 1.0)


def commandstats(fcluster, node, name):
    stats = fcluster.client(node).info("commandstats")
    return stats.get(f"cmdstat_{name}", {}).get("calls", 0)


@pytest.mark.parametrize("policy", ["replica", "prefer-replica"])
def test_reads_from_replicas(fcluster, tmp_path, policy):
    # The faults before leave a rejoined master syncing as a replica for a
    # moment: counting starts once every replica is linked and loaded, so
    # that respgate's map and the harness's agree on who is a replica.
    fcluster.wait_state_ok()
    assert wait_until(lambda: all(
        fcluster.client(n).info("replication").get("master_link_status") == "up" and
        not fcluster.client(n).info("persistence")["loading"] for n in fcluster.replicas()), 30)
    # ... and once no node flags another failing (fail? outlives a pause for
    # a moment): respgate reads from no replica it sees flagged.
    assert wait_until(lambda: not any(
        "fail" in line.split()[2] for n in fcluster.nodes if n.running
        for line in fcluster.client(n).execute_command("CLUSTER", "NODES").splitlines()), 30)
    with own_respgate(fcluster, tmp_path, read_policy=policy, extra="") as rg:
        r = rg.client()
        keys = [f"ro:{i}" for i in range(200)]
        r.mset({k: k for k in keys})
        assert r.wait(1, 2000) == 1  # the replicas have them (WAIT asks the masters written to)
        masters, replicas = fcluster.masters(), fcluster.replicas()
        before = {n.port: commandstats(fcluster, n, "get") for n in masters + replicas}
        for k in keys:
            assert r.get(k) == k.encode()
        assert r.mget(keys) == [k.encode() for k in keys]  # split parts read from replicas too
        after = {n.port: commandstats(fcluster, n, "get") for n in masters + replicas}
        on_replicas = sum(after[n.port] - before[n.port] for n in replicas)
        on_masters = sum(after[n.port] - before[n.port] for n in masters)
        print(f"\n{policy}: {on_replicas} GETs on replicas, {on_masters} on masters")
        if policy == "replica":
            # The faults before may leave a master without a replica (one
            # added and removed, a failover's heir): its keys are read on it.
            served = {fcluster.master_of(n).port for n in replicas}
            lonely = sum(fcluster.node_for_slot(keyslot(k)).port not in served for k in keys)
            assert on_replicas == len(keys) - lonely and on_masters == lonely, fcluster.describe()
        else:
            assert on_replicas > len(keys) // 4 and on_masters > len(keys) // 4
        # Writes still go to the masters, and a replica's reads see them.
        r.set("ro:0", "new")
        assert r.wait(1, 2000) == 1
        assert r.get("ro:0") == b"new"


def test_a_replica_that_stops_answering_falls_back_to_its_master(fcluster, tmp_path):
    with own_respgate(fcluster, tmp_path, read_policy="replica", extra="timeouts: {backend: 500ms}\n") as rg:
        r = rg.client()
        replica = fcluster.replicas()[0]
        master = fcluster.master_of(replica)
        key = next(f"fb:{i}" for i in range(10000)
                   if fcluster.node_for_slot(keyslot(f"fb:{i}")).port == master.port)
        r.set(key, "v")
        assert r.get(key) == b"v"
        fcluster.pause(replica)
        try:
            # In flight on the stopped replica: timed out, sent again (a read is
            # safe to repeat), to the master.
            t0 = time.monotonic()
            for _ in range(20):
                assert r.get(key) == b"v"
            print(f"\n20 reads with the replica stopped took {time.monotonic() - t0:.2f}s")
        finally:
            fcluster.resume(replica)
        assert "no reply within timeouts.backend" in rg.log()
        fcluster.wait_state_ok()


@needs_redis7("SSUBSCRIBE")
def test_shard_subscribers_hear_their_slot_move(fcluster, frg):
    """Redis 7 sends sunsubscribe when a node gives a slot away; the client
    gets it through respgate too, and can subscribe again at the new owner."""
    from test_pubsub import Raw
    fcluster.wait_state_ok()
    channel = "{mv}news"
    slot = keyslot(channel)
    src = fcluster.node_for_slot(slot)
    dst = next(m for m in fcluster.masters() if m.port != src.port)
    sub = Raw(frg.port)
    try:
        sub.send(("SSUBSCRIBE", channel))
        assert sub.read() == [[b"ssubscribe", channel.encode(), 1]]
        fcluster.move_slots([slot], dst)
        fcluster.wait_state_ok()
        assert sub.read() == [[b"sunsubscribe", channel.encode(), 0]]
        for _ in range(20):  # as a client library would after TRYAGAIN, while the map catches up
            sub.send(("SSUBSCRIBE", channel))
            [reply] = sub.read()
            if reply[0] != "error":
                break
            assert reply[1].startswith(b"TRYAGAIN"), reply
            time.sleep(0.1)
        assert reply == [b"ssubscribe", channel.encode(), 1]  # at the new owner
        pub = redis.Redis(host="127.0.0.1", port=frg.port)
        assert wait_until(lambda: pub.execute_command("SPUBLISH", channel, "moved") == 1, 10)
        assert sub.read() == [[b"smessage", channel.encode(), b"moved"]]
    finally:
        sub.close()
        fcluster.move_slots([slot], src)
        fcluster.wait_state_ok()


def test_keyspace_notifications_follow_a_failover(fcluster, frg):
    """A keyspace subscriber hears the promoted master's keys too: respgate
    subscribes there when the map names it."""
    victim, heir = master_with_replica(fcluster)
    r = redis.Redis(host="127.0.0.1", port=frg.port)
    assert r.config_set("notify-keyspace-events", "KA") is True
    sub = r.pubsub()
    try:
        sub.psubscribe("__keyspace@0__:kn:*")
        assert sub.get_message(timeout=5)["type"] == "psubscribe"
        keys = [k for k in (f"kn:{i}" for i in range(2000))
                if fcluster.node_for_slot(keyslot(k)).port == victim.port][:20]
        fcluster.kill(victim)
        assert wait_until(lambda: promoted(fcluster, heir), 30), "the replica was not promoted"
        fcluster.wait_state_ok()
        # The promoted replica has the notify-keyspace-events of CONFIG SET
        # (respgate sets it on replicas too); its keys' events must arrive.
        assert fcluster.client(heir).config_get("notify-keyspace-events")["notify-keyspace-events"] != ""
        seen, deadline = set(), time.monotonic() + 15
        while time.monotonic() < deadline and len(seen) < len(keys):
            for k in keys:
                if k not in seen:
                    r.set(k, "x")  # goes to the new master once respgate has the new map
            m = sub.get_message(timeout=0.5)
            while m:
                if m["type"] == "pmessage":
                    seen.add(m["channel"].decode().split(":", 1)[1])
                m = sub.get_message(timeout=0.1)
        assert seen >= set(keys), f"no events for {sorted(set(keys) - seen)[:5]}"
        assert f"{heir.addr} is now a master (failover)" in frg.log()
    finally:
        sub.close()
        r.config_set("notify-keyspace-events", "")
        fcluster.restart(victim)
        fcluster.wait_state_ok()


def test_a_resp3_subscriber_and_tracker_across_a_failover(fcluster, frg):
    """One RESP3 connection subscribed to a channel and to keyspace events and
    tracking in BCAST mode, as Lettuce's client-side caching is: before and
    after a master dies, messages, keyspace events and invalidations from
    every master arrive on it as push frames, and the replies to the commands
    it sends come in order among them."""
    from test_resp3 import resp3
    from harness.resp import frame
    victim, heir = master_with_replica(fcluster)
    by_master = {}
    for k in (f"kf:{i}" for i in range(3000)):
        keys = by_master.setdefault(fcluster.node_for_slot(keyslot(k)).port, [])
        if len(keys) < 4:
            keys.append(k)
    assert len(by_master) == 3
    r = redis.Redis(host="127.0.0.1", port=frg.port)
    assert r.config_set("notify-keyspace-events", "K$") is True
    c = resp3(frg.port)
    seen = {"events": set(), "invalid": set(), "messages": set(), "flushes": 0}

    def note(push):
        parts = push.split(b"\r\n")
        if push.startswith(b">2\r\n$10\r\ninvalidate\r\n"):
            if parts[3] == b"_":
                seen["flushes"] += 1
            else:
                seen["invalid"] |= {k.decode() for k in parts[5::2] if k}
        elif push.startswith(b">4\r\n$8\r\npmessage\r\n"):
            seen["events"].add(parts[6].split(b":", 1)[1].decode())
        elif push.startswith(b">3\r\n$7\r\nmessage\r\n"):
            seen["messages"].add(parts[6].decode())
        else:
            raise AssertionError(f"unexpected push {push!r}")

    def round_trip(keys, n):
        """Writes KEYS and publishes through another client, then GETs them on
        C: every reply must be the value just written, in order, whatever
        pushes come between them."""
        written = []
        for k in keys:
            try:
                r.set(k, f"{k}:{n}")
                written.append(k)
            except redis.RedisError:
                pass  # the map may still name the dead master for a moment
        try:
            r.publish("kf:news", f"m{n}")
        except redis.RedisError:
            pass
        c.sock.sendall(b"".join(frame("GET", k) for k in written) + frame("PING"))
        replies = []
        while True:
            x = c.reply()
            if x.startswith(b">"):
                note(x)
            elif x == b"+PONG\r\n":
                break
            else:
                replies.append(x)
        assert replies == [b"$%d\r\n%s:%d\r\n" % (len(f"{k}:{n}"), k.encode(), n) for k in written]

    def until(want, first):
        n, deadline = first, time.monotonic() + 20
        while time.monotonic() < deadline and not want():
            round_trip([k for ks in by_master.values() for k in ks], n)
            n += 1
            time.sleep(0.2)
        return n

    try:
        c.sock.sendall(frame("SUBSCRIBE", "kf:news") + frame("PSUBSCRIBE", "__keyspace@0__:kf:*")
                       + frame("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "kf:"))
        assert c.reply() == b">3\r\n$9\r\nsubscribe\r\n$7\r\nkf:news\r\n:1\r\n"
        assert c.reply() == b">3\r\n$10\r\npsubscribe\r\n$19\r\n__keyspace@0__:kf:*\r\n:2\r\n"
        assert c.reply() == b"+OK\r\n"
        every = {k for ks in by_master.values() for k in ks}
        n = until(lambda: seen["events"] >= every and seen["invalid"] >= every and "m0" in seen["messages"], 0)
        assert seen["events"] >= every, f"no keyspace events for {sorted(every - seen['events'])}"
        assert seen["invalid"] >= every, f"no invalidations for {sorted(every - seen['invalid'])}"
        assert "m0" in seen["messages"]
        assert seen["flushes"] == 0

        fcluster.kill(victim)
        assert wait_until(lambda: promoted(fcluster, heir), 30), "the replica was not promoted"
        fcluster.wait_state_ok()
        after = set(by_master[victim.port])
        seen["events"], seen["invalid"], seen["messages"] = set(), set(), set()
        last = until(lambda: seen["events"] >= after and seen["invalid"] >= after and seen["messages"]
                     and seen["flushes"] >= 1, n)
        assert seen["flushes"] >= 1, "the lost tracking feed did not flush the client's cache"
        assert seen["events"] >= after, f"no keyspace events from the new master for {sorted(after - seen['events'])}"
        assert seen["invalid"] >= after, f"no invalidations from the new master for {sorted(after - seen['invalid'])}"
        # A message comes on the subscriber's own connection, not the one
        # the round trip's PONG comes on: the last one published before
        # `seen` was emptied may arrive after it.
        assert seen["messages"] <= {f"m{i}" for i in range(n - 1, last)} and seen["messages"]
        c.sock.sendall(frame("CLIENT", "TRACKINGINFO"))
        info = c.reply()
        while info.startswith(b">"):  # late pushes of the last round
            note(info)
            info = c.reply()
        assert info.startswith(b"%3\r\n$5\r\nflags\r\n~2\r\n$2\r\non\r\n$5\r\nbcast\r\n"), info
    finally:
        c.close()
        r.config_set("notify-keyspace-events", "")
        fcluster.restart(victim)
        fcluster.wait_state_ok()


def test_tracking_follows_a_slot_move(fcluster, frg):
    """A BCAST tracker hears a key's writes before and after its slot moves to
    another master: every master has the client's feed, so the new owner's
    invalidations come as the old one's did, and no flush is needed."""
    from test_resp3 import resp3
    from test_tracking import invalidated, until_pong
    fcluster.wait_state_ok()
    key = "tm:moving"
    slot = keyslot(key)
    src = fcluster.node_for_slot(slot)
    dst = next(m for m in fcluster.masters() if m.port != src.port)
    tracker = resp3(frg.port)
    r = redis.Redis(host="127.0.0.1", port=frg.port)

    def heard_a_write(value):
        for _ in range(50):  # TRYAGAIN or MOVED while respgate's map catches up
            try:
                r.set(key, value)
                break
            except redis.RedisError:
                time.sleep(0.1)
        pushes, deadline = [], time.monotonic() + 10
        while time.monotonic() < deadline and key not in invalidated(pushes):
            pushes += until_pong(tracker)
        return pushes

    try:
        assert tracker.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "tm:") == b"+OK\r\n"
        assert key in invalidated(heard_a_write("before"))
        fcluster.move_slots([slot], dst)
        fcluster.wait_state_ok()
        time.sleep(0.5)
        moved = until_pong(tracker)  # MIGRATE's delete on SRC, RESTORE on DST: invalidations too
        assert set(invalidated(moved)) <= {key}
        after = heard_a_write("after")
        assert key in invalidated(after), "no invalidation from the slot's new owner"
        assert b">2\r\n$10\r\ninvalidate\r\n_\r\n" not in moved + after
        assert fcluster.node_for_slot(slot).port == dst.port
    finally:
        tracker.close()
        fcluster.move_slots([slot], src)
        fcluster.wait_state_ok()
