# Resource bounds under hostile or careless clients, against the real cluster:
# a client that pipelines a million GETs and never reads, 10,000 idle
# connections and the max_clients refusal, a connect/close flood, and a
# backend that stops answering (every request has a timeout; a late reply
# never reaches a later request).

import os
import re
import resource
import socket
import time

import pytest
import redis

from harness.cluster import Cluster


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def client_sockets(pid, port):
    """How many of pid's descriptors are accepted connections on port: the
    descriptors a client leak would leave. Node connections come and go with
    the topology and are not counted."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                listening = fields[3] == "0A"
                if local_port == port and not listening and fields[9] in inodes:
                    count += 1
    return count


def ping(port, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        return s.recv(64)


def test_a_client_that_never_reads(make_respgate):
    """A million pipelined GETs, never read: respgate stops reading from that
    client (or closes it), its memory stays bounded, others are served."""
    # The sanitizers' build keeps freed memory in quarantine, 256 MB by
    # default, and RSS would count that churn; with a small quarantine it
    # measures what respgate holds.
    asan = ":".join(o for o in [os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=8"] if o)
    respgate = make_respgate(env={**os.environ, "ASAN_OPTIONS": asan})
    base = rss_kb(respgate.pid)
    req = b"*2\r\n$3\r\nGET\r\n$9\r\nkey:12345\r\n" * 10000  # one chunk: 10,000 GETs
    s = socket.create_connection(("127.0.0.1", respgate.port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    sent, deadline, peak = 0, time.monotonic() + 20, base
    view = memoryview(req)
    offset = 0
    while sent < 1_000_000 and time.monotonic() < deadline:
        try:
            n = s.send(view[offset:])
        except BlockingIOError:
            time.sleep(0.01)  # respgate is not reading: that is the point
            peak = max(peak, rss_kb(respgate.pid))
            assert ping(respgate.port) == b"+PONG\r\n"  # others are still served
            continue
        except (BrokenPipeError, ConnectionResetError):
            break  # closed by respgate: also acceptable
        offset += n
        if offset == len(req):
            offset = 0
            sent += 10000
    peak = max(peak, rss_kb(respgate.pid))
    s.close()
    print(f"sent {sent} GETs without reading; respgate RSS {base} kB -> peak {peak} kB")
    assert peak - base < 128 * 1024
    assert ping(respgate.port) == b"+PONG\r\n"


def test_ten_thousand_idle_clients_and_max_clients(make_respgate):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 10200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 10200, "the test needs 10,200 descriptors"
    rg = make_respgate(extra="client: {max_clients: 10000}\nlog: {level: info}\n")
    base = rss_kb(rg.pid)
    socks = []
    try:
        for _ in range(10000):
            s = socket.create_connection(("127.0.0.1", rg.port), timeout=10)
            socks.append(s)
        for s in socks[::100]:  # they are live sessions, not just backlog entries
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert s.recv(16) == b"+PONG\r\n"
        # Settle: every connection accepted and counted.
        deadline = time.monotonic() + 10
        while fd_count(rg.pid) < 10000 and time.monotonic() < deadline:
            time.sleep(0.05)
        one_more = socket.create_connection(("127.0.0.1", rg.port), timeout=10)
        one_more.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert one_more.recv(64) == b"-ERR max number of clients reached\r\n"
        assert one_more.recv(64) == b""
        one_more.close()
        grown = rss_kb(rg.pid) - base
        print(f"10,000 idle clients: respgate RSS grew by {grown} kB ({grown * 1024 // 10000} bytes each)")
        assert grown < 200 * 1024
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ping(rg.port) != b"+PONG\r\n":
        time.sleep(0.05)
    assert ping(rg.port) == b"+PONG\r\n"
    # The burst gone, each of the two workers (it had thousands) gives back
    # the memory its clients held, once (bench/run shows what that saves).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and rg.log().count("memory given back") < 2:
        time.sleep(0.1)
    given = re.findall(r"worker (\d): (\d+) clients at most, now (\d+): memory given back", rg.log())
    assert sorted(w for w, _, _ in given) == ["0", "1"], given
    assert all(int(peak) >= 1000 and int(now) <= int(peak) // 4 for _, peak, now in given), given
    assert sum(int(peak) for _, peak, _ in given) >= 10000
    assert ping(rg.port) == b"+PONG\r\n"


def test_connect_close_flood_with_half_sent_commands(respgate):
    r = respgate.client()
    r.set("flood:k", "0")
    before = client_sockets(respgate.pid, respgate.port)
    assert before == 1
    for i in range(5000):
        with socket.create_connection(("127.0.0.1", respgate.port), timeout=5) as s:
            # A SET cut off mid-argument must never run.
            s.sendall(b"*3\r\n$3\r\nSET\r\n$7\r\nflood:k\r\n$5\r\nbad" if i % 2 else b"*1\r\n$4\r\nPI")
    deadline = time.monotonic() + 10
    while client_sockets(respgate.pid, respgate.port) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client_sockets(respgate.pid, respgate.port) == 1
    assert r.get("flood:k") == b"0"
    r.delete("flood:k")


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory):
    """A cluster of this module's own, since its masters get paused."""
    with Cluster(tmp_path_factory.mktemp("pausable"), password="pause-pw") as c:
        yield c


def test_backend_timeout_and_no_late_reply(own_cluster, tmp_path):
    """A master that stops answering: past timeouts.backend its connection
    stalls and a new one asks HELLO; with no answer within the node's
    busy-reply-threshold (lua-time-limit, lowered to 1 s here) plus
    timeouts.backend, the node counts as down and the write in flight fails.
    Its late reply never reaches a later request."""
    from harness.respgate import Respgate, free_port
    for n in own_cluster.masters():
        own_cluster.client(n).config_set("lua-time-limit", 1000)
    port = free_port()
    conf = (f"listen: [127.0.0.1:{port}]\ncluster: {{seeds: [{own_cluster.seeds[0]}], password: pause-pw}}\n"
            "timeouts: {backend: 500ms}\n")
    with Respgate(tmp_path / "rg", conf, port) as rg:
        r = rg.client()
        assert r.set("late:{a}", "first") is True
        assert r.set("late:{a}2", "second") is True
        slot = own_cluster.client(own_cluster.masters()[0]).execute_command("CLUSTER", "KEYSLOT", "late:{a}")
        master = own_cluster.node_for_slot(slot)
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        # This client's worker has a connection to the master, ready (else the
        # SET below would wait for the node to answer AUTH, never sent).
        s.sendall(b"*2\r\n$3\r\nGET\r\n$8\r\nlate:{a}\r\n")
        assert s.recv(4096) == b"$5\r\nfirst\r\n"
        own_cluster.pause(master)
        try:
            t0 = time.monotonic()
            # A write: a read that timed out would be sent again, as reads are.
            s.sendall(b"*3\r\n$3\r\nSET\r\n$8\r\nlate:{a}\r\n$5\r\nthird\r\n")
            reply = s.recv(4096)
            waited = time.monotonic() - t0
        finally:
            own_cluster.resume(master)
        assert reply.startswith(b"-ERR respgate: connection to cluster node ")
        assert b"no reply within timeouts.backend" in reply
        assert 1.4 < waited < 4  # 0.5 s, then 1 s + 0.5 s for the new connection's HELLO
        # The node answers the timed-out SET now; that reply must not reach the next request.
        s.sendall(b"*2\r\n$3\r\nGET\r\n$9\r\nlate:{a}2\r\n")
        assert s.recv(4096) == b"$6\r\nsecond\r\n"
        s.close()
        assert "no reply within timeouts.backend" in rg.log()
        assert "while a new connection asks whether the node is alive" in rg.log()
    for n in own_cluster.masters():
        own_cluster.client(n).config_set("lua-time-limit", 5000)


def test_all_seeds_down_at_start_then_up(own_cluster, tmp_path):
    from harness.respgate import Respgate, free_port
    port = free_port()
    seeds = ", ".join(own_cluster.seeds)
    conf = (f"listen: [127.0.0.1:{port}]\ncluster: {{seeds: [{seeds}], password: pause-pw}}\n"
            "timeouts: {connect: 200ms, backend: 300ms}\n")
    nodes = [n for n in own_cluster.nodes if n.running]
    for n in nodes:
        own_cluster.pause(n)
    try:
        rg = Respgate(tmp_path / "rg", conf, port).start()
        r = rg.client()
        with pytest.raises(Exception, match="CLUSTERDOWN The cluster is down"):
            r.get("x")
        time.sleep(1.0)  # past the discovery deadline, short of cluster-node-timeout
    finally:
        for n in nodes:
            own_cluster.resume(n)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if r.set("seeds:up", "1"):
                    break
            except Exception:  # noqa: BLE001 - CLUSTERDOWN until a seed answers
                time.sleep(0.1)
        assert r.get("seeds:up") == b"1"
        assert "topology: no answer from" in rg.log()
        assert "topology learned from" in rg.log()
    finally:
        rg.stop()
    own_cluster.wait_state_ok()


def test_replies_held_behind_a_slow_request_are_bounded(own_cluster, tmp_path):
    """Replies that wait behind an earlier, slow request count toward
    client.output_buffer_limit: the pipeline cannot pin unbounded memory."""
    from harness.respgate import Respgate, free_port
    port = free_port()
    conf = (f"listen: [127.0.0.1:{port}]\ncluster: {{seeds: [{own_cluster.seeds[0]}], password: pause-pw}}\n"
            "client: {output_buffer_limit: 1mb}\ntimeouts: {backend: 10s}\n")
    with Respgate(tmp_path / "rg", conf, port) as rg:
        r = rg.client()
        probe = own_cluster.client(own_cluster.masters()[0])
        slow_key, big_key = "held:{a}", "held:{b}"
        slow_node = own_cluster.node_for_slot(probe.execute_command("CLUSTER", "KEYSLOT", slow_key))
        assert own_cluster.node_for_slot(probe.execute_command("CLUSTER", "KEYSLOT", big_key)).port != slow_node.port
        assert r.set(big_key, b"x" * 100_000) is True
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        own_cluster.pause(slow_node)
        try:
            s.sendall(b"*2\r\n$3\r\nGET\r\n$8\r\nheld:{a}\r\n" + b"*2\r\n$3\r\nGET\r\n$8\r\nheld:{b}\r\n" * 50)
            deadline = time.monotonic() + 10
            while "wait behind a slow request" not in rg.log() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            own_cluster.resume(slow_node)
        assert "bytes of replies wait behind a slow request (client.output_buffer_limit)" in rg.log()
        assert s.recv(65536) == b""  # closed, nothing delivered out of order
        s.close()
        assert r.delete(big_key) == 1
    own_cluster.wait_state_ok()


def test_a_reply_longer_than_max_reply_len(make_respgate):
    """A node's reply past limits.max_reply_len fails the request it answers,
    once, with an error that names the limit, and closes that connection
    with a warning; the value is intact on the node, and the other requests,
    before and after, are served."""
    rg = make_respgate(extra="limits:\n  max_reply_len: 1mb\n")
    r = redis.Redis(port=rg.port, socket_timeout=10)
    big = b"x" * (2 << 20)
    assert r.set("reply-len:big", big) is True
    assert r.set("reply-len:small", b"y") is True
    assert r.strlen("reply-len:big") == len(big)
    with pytest.raises(redis.ResponseError) as e:
        r.get("reply-len:big")
    assert "longer than limits.max_reply_len (1048576 bytes); the command ran" in str(e.value)
    assert r.get("reply-len:small") == b"y"
    assert r.getrange("reply-len:big", 0, 9) == b"x" * 10
    assert re.search(r"backend 127\.0\.0\.1:\d+: a reply longer than limits\.max_reply_len", rg.log())
