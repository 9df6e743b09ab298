# The data path against the real 3+3 cluster: every slot reaches the master
# that owns it, values come back byte for byte, pipelines from many clients
# keep their order, and MOVED and ASK never reach the client.

import random
import socket
import threading
import time

import pytest
import redis

from conftest import CLUSTER_PASSWORD
from harness.certs import mode_cluster_lines
from harness.cluster import ClusterError, keyslot


def key_for_slot_table():
    """One key per slot, found by counting: {slot: b"k:N"}."""
    table, n = {}, 0
    while len(table) < 16384:
        k = b"k:%d" % n
        table.setdefault(keyslot(k), k)
        n += 1
    return table


def direct(cluster, slot):
    """A connection straight to the master that CLUSTER NODES says owns SLOT."""
    return cluster.client(cluster.node_for_slot(slot), decode_responses=False)


def read_replies(sock, n):
    """Reads N simple replies (+..., $N..., -...) from SOCK; returns them as bytes."""
    f = sock.makefile("rb")
    out = []
    for _ in range(n):
        line = f.readline()
        if line[:1] == b"$":
            size = int(line[1:])
            out.append(f.read(size + 2)[:-2] if size >= 0 else None)
        else:
            out.append(line.rstrip(b"\r\n"))
    return out


def test_keyslot_agrees_with_the_server(cluster):
    node = cluster.client(cluster.masters()[0], decode_responses=False)
    for key in (b"foo", b"{user1000}.following", b"a{b}c", b"\x00\xff{}", b"k:12345"):
        assert keyslot(key) == node.execute_command("CLUSTER", "KEYSLOT", key)


def test_every_slot_lands_on_its_master(cluster, respgate):
    table = key_for_slot_table()
    r = respgate.client()
    pipe = r.pipeline(transaction=False)
    for slot, key in table.items():
        pipe.set(key, b"v:" + key)
    assert all(pipe.execute())
    # Check on each master directly: the key is there, and only there.
    masters = {m.port: cluster.client(m, decode_responses=False) for m in cluster.masters()}
    by_owner = {}
    for slot, key in table.items():
        by_owner.setdefault(cluster.node_for_slot(slot).port, []).append(key)
    for port, keys in by_owner.items():
        pipe = masters[port].pipeline(transaction=False)
        for k in keys:
            pipe.get(k)
        assert pipe.execute() == [b"v:" + k for k in keys]
    pipe = r.pipeline(transaction=False)
    for key in table.values():
        pipe.get(key)
    assert pipe.execute() == [b"v:" + k for k in table.values()]
    pipe = r.pipeline(transaction=False)
    for key in table.values():
        pipe.delete(key)
    assert pipe.execute() == [1] * 16384


def test_binary_safe_keys_and_a_64mb_value(respgate):
    r = respgate.client()
    key = bytes(range(256)) + b"\r\n{tag}\x00"
    assert r.set(key, b"\x00\r\n$1\r\n*2\r\n") is True
    assert r.get(key) == b"\x00\r\n$1\r\n*2\r\n"
    big = random.Random(7).randbytes(64 << 20)
    assert r.set(b"big{x}", big) is True
    assert r.get(b"big{x}") == big
    assert r.strlen(b"big{x}") == 64 << 20
    assert r.delete(b"big{x}") == 1
    assert r.delete(key) == 1


def test_crossslot_and_same_slot_multi_key(respgate):
    r = respgate.client()
    with pytest.raises(redis.ResponseError, match="^CROSSSLOT Keys in request don't hash to the same slot$"):
        r.execute_command("EVAL", "return 1", 2, "a", "b")
    assert r.mset({"{u}a": 1, "{u}b": 2}) is True
    assert r.mget(["{u}a", "{u}b", "{u}c"]) == [b"1", b"2", None]
    assert r.execute_command("EVAL", "return redis.call('get', KEYS[1])", 1, "{u}a") == b"1"
    assert r.delete("{u}a", "{u}b") == 2


def test_keyless_commands_reach_a_master(respgate):
    r = respgate.client()
    assert r.command_count() >= 200
    assert r.execute_command("EVAL", "return 7", 0) == 7
    assert r.execute_command("ECHO", "x") == b"x"


def test_pipelines_from_fifty_clients_stay_in_order(respgate):
    """10,000 mixed commands over many slots from 50 concurrent clients:
    every reply matches its request (values encode their key), in order."""
    errors = []

    def run(cid):
        rnd = random.Random(cid)
        try:
            with socket.create_connection(("127.0.0.1", respgate.port), timeout=30) as s:
                cmds, want = [], []
                for i in range(200):
                    key = b"p:%d:%d" % (cid, rnd.randrange(1000))
                    op = rnd.randrange(4)
                    if op == 0:
                        val = b"val-of-" + key
                        cmds.append([b"SET", key, val])
                        want.append(b"OK")
                    elif op == 1:
                        cmds.append([b"ECHO", key])
                        want.append(key)
                    elif op == 2:
                        cmds.append([b"SET", key, b"val-of-" + key])
                        cmds.append([b"GET", key])
                        want += [b"OK", b"val-of-" + key]
                    else:
                        cmds.append([b"PING"])
                        want.append(b"+PONG")
                payload = b"".join(b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in c)
                                   for c in cmds)
                s.sendall(payload)
                got = read_replies(s, len(want))
                got = [g[1:] if g and g[:1] == b"+" and w != b"+PONG" else g for g, w in zip(got, want)]
                if got != want:
                    errors.append((cid, next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((cid, repr(e)))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def pick_slot_and_key(cluster, owner_port=None):
    table = key_for_slot_table()
    for slot in range(100, 16384, 97):
        if owner_port is None or cluster.node_for_slot(slot).port == owner_port:
            return slot, table[slot]
    raise AssertionError("no slot found")


def setslot_everywhere(cluster, slot, node_id):
    masters = cluster.masters()
    owner = next(m for m in masters if m.node_id == node_id)
    cluster.take_highest_epoch(owner)
    for m in [owner] + [m for m in masters if m is not owner]:
        cluster.client(m).execute_command("CLUSTER", "SETSLOT", slot, "NODE", node_id)


def settle_slot(cluster, slot, node_id):
    """setslot_everywhere, then the cluster's agreement. Two moves of a slot
    in a row can leave two nodes with the same config epoch, and a loaded
    machine (the aarch64 run under qemu) once kept two masters disagreeing
    for 30 s: the owner is then told again, with a new epoch, and waited for
    once more. What is waited for is the nodes' convergence, not respgate's."""
    setslot_everywhere(cluster, slot, node_id)
    try:
        cluster.wait_state_ok()
    except ClusterError:
        setslot_everywhere(cluster, slot, node_id)
        cluster.wait_state_ok()


def test_moved_after_a_live_slot_move(cluster, respgate):
    r = respgate.client()
    slot, key = pick_slot_and_key(cluster)
    src = cluster.node_for_slot(slot)
    dst = next(m for m in cluster.masters() if m.port != src.port)
    r.delete(key)
    assert r.get(key) is None  # respgate has learned the map and used the source
    other = other_key(slot)
    setslot_everywhere(cluster, slot, dst.node_id)
    try:
        # The source now answers MOVED; respgate follows it, the client never
        # sees it; a split command's part is made again for its new node.
        assert r.mset({key: b"split", other: b"o"}) is True
        assert r.mget([other, key, other]) == [b"o", b"split", b"o"]
        assert r.delete(other) == 1
        for i in range(20):
            assert r.set(key, b"moved-%d" % i) is True
        assert cluster.client(dst, decode_responses=False).get(key) == b"moved-19"
        assert r.get(key) == b"moved-19"
        assert r.delete(key) == 1
    finally:
        settle_slot(cluster, slot, src.node_id)
    assert r.set(key, b"back") is True
    assert cluster.client(src, decode_responses=False).get(key) == b"back"
    r.delete(key)


def test_ask_during_a_migration(cluster, respgate):
    r = respgate.client()
    slot, key = pick_slot_and_key(cluster)
    src = cluster.node_for_slot(slot)
    dst = next(m for m in cluster.masters() if m.port != src.port)
    src_c, dst_c = cluster.client(src, decode_responses=False), cluster.client(dst, decode_responses=False)
    r.delete(key)
    dst_c.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id)
    src_c.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.node_id)
    try:
        # A key the source does not have: it answers ASK, and respgate sends
        # ASKING + the command to the importing node.
        assert r.set(key, b"asked") is True
        assert src_c.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0  # not on the source
        assert dst_c.execute_command("ASKING") is True  # on the connection the next command uses
        assert dst_c.get(key) == b"asked"
        assert r.get(key) == b"asked"
        # Every time, the source answers ASK: a split command's part goes
        # again to the importing node, made afresh from the client's frame.
        other = other_key(slot)
        for _ in range(3):
            assert r.mget([key, other, key]) == [b"asked", None, b"asked"]
        # The slot still belongs to the source for everything else.
        assert cluster.node_for_slot(slot).port == src.port
    finally:
        settle_slot(cluster, slot, dst.node_id)
    # Finish like redis-cli --cluster would, then move it back.
    try:
        assert r.get(key) == b"asked"
    except redis.RedisError as e:  # seen in CI before take_highest_epoch: say what the nodes thought
        raise AssertionError(f"{e}; the owner of slot {slot} (src {src.port}, dst {dst.port}) as each node "
                             f"sees it now: {cluster.slot_owners(slot)}; respgate's log ends: {respgate.log()[-1500:]}")
    assert r.delete(key) == 1
    settle_slot(cluster, slot, src.node_id)


def test_a_slot_the_nodes_disagree_on_for_good(cluster, tmp_path):
    """Each of two masters says the other owns a slot, so no node claims it
    and gossip never settles it (what the lost epoch tie above once left in
    CI). The nodes redirect respgate back and forth: a command fails with
    CLUSTERDOWN at the end of cluster.failover_wait, and a warning tells the
    operator why; the next failures within 10 s are counted in one summary
    line when they are up, not logged one by one."""
    from harness.respgate import Respgate, free_port
    slot, key = pick_slot_and_key(cluster)
    src = cluster.node_for_slot(slot)
    dst = next(m for m in cluster.masters() if m.port != src.port)
    src_c, dst_c = cluster.client(src, decode_responses=False), cluster.client(dst, decode_responses=False)
    src_c.delete(key)
    assert src_c.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    port = free_port()
    conf = (f"listen: [127.0.0.1:{port}]\nworkers: 1\ncluster:\n  seeds: [{cluster.seeds[0]}]\n"
            f"  failover_wait: 1s\n  password: {CLUSTER_PASSWORD}\n" + mode_cluster_lines())
    with Respgate(tmp_path / "split", conf, port) as rg:
        r = rg.client()
        assert r.get(key) is None  # the map is learned and the slot served
        src_c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst.node_id)
        dst_c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", src.node_id)
        try:
            for _ in range(2):
                with pytest.raises(redis.ResponseError,
                                   match=f"^CLUSTERDOWN respgate: slot {slot} was not served within 1000ms "
                                         r"\(cluster.failover_wait\); last tried 127.0.0.1:"):
                    r.get(key)
            assert r.set(other_key(slot), b"x") is True  # the other slots are served meanwhile
            assert r.delete(other_key(slot)) == 1
            warnings = [line for line in rg.log().splitlines() if "warning: " in line]
            assert len(warnings) == 1, warnings
            assert ("warning: slot %d: a request failed, not served within 1000ms (cluster.failover_wait): the "
                    "nodes redirected it to each other (last tried 127.0.0.1:" % slot) in warnings[0]
            assert "they disagree on the slot's owner, see CLUSTER NODES on each" in warnings[0]
        finally:
            settle_slot(cluster, slot, src.node_id)
        assert r.get(key) is None
        # The second failure, held back, is in the summary 10 s after the first line.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "more request" not in rg.log():
            time.sleep(0.2)
        warnings = [line for line in rg.log().splitlines() if "warning: " in line]
        assert len(warnings) == 2, warnings
        assert ("warning: 1 more request failed, not served within 1000ms (cluster.failover_wait), in the last "
                "10s; the last on slot %d; 1 of them redirected between nodes that disagree on their slot's "
                "owner" % slot) in warnings[1]


def other_key(slot):
    return next(k for k in (f"other:{i}" for i in range(100)) if keyslot(k) != slot)


def test_clusterdown_until_a_seed_answers(make_respgate, cluster, tmp_path):
    from harness.respgate import Respgate, free_port
    dead = free_port()
    port = free_port()
    conf = (f"listen: [127.0.0.1:{port}]\ncluster:\n  seeds: [127.0.0.1:{dead}]\n" + mode_cluster_lines() +
            f"  password: {CLUSTER_PASSWORD}\n")
    with Respgate(tmp_path / "down", conf, port) as rg:
        r = rg.client()
        for cmd in (("GET", "x"), ("MULTI",), ("BLPOP", "x", "0"), ("MGET", "a", "b"), ("DBSIZE",)):
            with pytest.raises(redis.ResponseError, match="^CLUSTERDOWN The cluster is down$"):
                r.execute_command(*cmd)
        assert r.ping()
        from test_resp3 import resp3
        tracker = resp3(port)
        assert tracker.call("CLIENT", "TRACKING", "ON", "BCAST") == b"-CLUSTERDOWN The cluster is down\r\n"
        tracker.close()
    assert "topology: cannot connect to 127.0.0.1:%d" % dead in rg.log()


def test_requests_before_the_first_map_wait_for_it(cluster, tmp_path):
    """respgate accepts clients before it has learned the slot map: what they
    send then waits for the map instead of failing with CLUSTERDOWN (while a
    seed may still answer; with every seed down, CLUSTERDOWN as above). The
    seed is paused for a moment so that the request surely comes first."""
    from harness.respgate import Respgate, free_port
    port = free_port()
    seed = next(n for n in cluster.nodes if n.addr == cluster.seeds[0])
    conf = (f"listen: [127.0.0.1:{port}]\ncluster:\n  seeds: [{seed.addr}]\n" + mode_cluster_lines() +
            f"  password: {CLUSTER_PASSWORD}\n")
    cluster.pause(seed)
    try:
        rg = Respgate(tmp_path / "early", conf, port).start()
        r = rg.client()
        from harness.resp import frame
        from test_resp3 import resp3
        tracker = resp3(port)  # HELLO is the session's: answered at once
        timer = threading.Timer(0.5, cluster.resume, (seed,))
        timer.start()
        try:
            t0 = time.monotonic()
            tracker.sock.sendall(frame("CLIENT", "TRACKING", "ON", "BCAST"))  # needs the masters: waits too
            assert r.execute_command("DBSIZE") >= 0
            assert time.monotonic() - t0 >= 0.4  # it did wait for the map
            assert tracker.reply() == b"+OK\r\n"
            tracker.close()
            assert r.set("early:key", "1")
            assert "CLUSTERDOWN" not in rg.log()
        finally:
            timer.join()
            rg.stop()
    finally:
        if seed.paused:
            cluster.resume(seed)


def test_wrong_cluster_password_is_logged(make_respgate, cluster, tmp_path):
    from harness.respgate import Respgate, free_port
    port = free_port()
    conf = (f"listen: [127.0.0.1:{port}]\ncluster:\n  seeds: [{cluster.seeds[0]}]\n  password: wrong-pw\n" +
            mode_cluster_lines())
    with Respgate(tmp_path / "badpw", conf, port) as rg:
        with pytest.raises(redis.ResponseError, match="^CLUSTERDOWN"):
            rg.client().get("x")
    assert "topology: AUTH to %s failed: WRONGPASS" % cluster.seeds[0] in rg.log()
    assert "wrong-pw" not in rg.log()


def test_half_closed_client_gets_every_whole_request_answered(respgate):
    """2,000 forwarded GETs, then shutdown(SHUT_WR): all 2,000 are answered, then EOF."""
    with socket.create_connection(("127.0.0.1", respgate.port), timeout=30) as s:
        s.sendall(b"*3\r\n$3\r\nSET\r\n$8\r\nhalf:{h}\r\n$1\r\nv\r\n" +
                  b"*2\r\n$3\r\nGET\r\n$8\r\nhalf:{h}\r\n" * 2000 + b"*2\r\n$3\r\nGET\r\n$7\r\nhalf:")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data == b"+OK\r\n" + b"$1\r\nv\r\n" * 2000
    respgate.client().delete("half:{h}")


def test_idle_backend_connections_closed_by_the_nodes(cluster, respgate):
    r = respgate.client()
    assert r.set("idle:{i}", "1") is True
    for m in cluster.masters():
        cluster.client(m).execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    # The next request finds its connection closed: a new one, no error.
    assert r.get("idle:{i}") == b"1"
    assert r.delete("idle:{i}") == 1


def test_asking_from_a_client_is_refused(respgate):
    with pytest.raises(redis.ResponseError, match="does not forward 'asking'"):
        respgate.client().execute_command("ASKING")


def test_large_requests_and_replies(respgate):
    r = respgate.client()
    n = 50000
    assert r.execute_command("MSET", *[x for i in range(n) for x in (f"big:{{t}}{i}", str(i))]) is True
    assert r.execute_command("MGET", *[f"big:{{t}}{i}" for i in range(0, n, 7)]) == \
        [str(i).encode() for i in range(0, n, 7)]
    assert r.rpush("big:{t}list", *range(n)) == n
    assert r.lrange("big:{t}list", 0, -1) == [str(i).encode() for i in range(n)]
    assert r.delete(*[f"big:{{t}}{i}" for i in range(n)], "big:{t}list") == n + 1


def test_idle_backend_connections_are_not_timed_out(make_respgate):
    """timeouts.backend bounds replies awaited, not idleness: a connection
    that served requests and then idles past it stays up."""
    rg = make_respgate(extra="timeouts: {backend: 300ms}\n")
    r = rg.client()
    for i in range(100):
        r.set(f"quiet:{i}", i)
    time.sleep(1.0)
    assert r.get("quiet:7") == b"7"
    assert "timeouts.backend" not in rg.log()
    for i in range(100):
        r.delete(f"quiet:{i}")


SPIN_LUA = """
local t = redis.call('TIME')
local began = t[1] * 1000000 + t[2]
repeat
    t = redis.call('TIME')
until t[1] * 1000000 + t[2] - began >= tonumber(ARGV[1])
return 'spun'
"""


def test_a_request_gets_the_whole_backend_timeout(make_respgate):
    """The reply timeout stays armed between requests (no timer work per
    request): a request sent late in the timeout's period, on a connection
    last read long before, still has the whole timeout for its reply."""
    rg = make_respgate(extra="workers: 1\ntimeouts: {backend: 1s}\n")
    r = rg.client()
    for i in range(3):
        assert r.set("spin:{k}", i) is True
    time.sleep(0.7)
    # Sent 0.7 s after the last read, answered 0.6 s later: 1.3 s after it.
    assert r.eval(SPIN_LUA, 1, "spin:{k}", 600000) == b"spun"
    assert "timeouts.backend" not in rg.log()
    # A node silent for longer than that is still found out: its connection
    # moves aside, where the reply is awaited while a new one asks whether
    # the node is alive.
    assert r.eval(SPIN_LUA, 1, "spin:{k}", 1500000) == b"spun"
    assert "no reply within timeouts.backend to 1 request" in rg.log()
    r.delete("spin:{k}")
