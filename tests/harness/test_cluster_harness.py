# tests/harness/test_cluster_harness.py - tests of the cluster harness itself.
#
# Runs against real redis-server processes: checks that a started cluster has
# the promised shape (slots, roles, auth, replication), that the failure
# helpers do what failover tests will rely on, that clusters started at the
# same time do not collide, and that stop() leaves no process behind.
#
#   /usr/bin/python3 -m pytest -q tests/harness

import os
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from . import cluster as harness
from .cluster import Cluster


def assert_all_gone(pids):
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def set_some_key_on(master):
    """SET a key in one of this master's slots (trying keys until one is not MOVED)."""
    for i in range(200):
        try:
            return master.set(f"harness:key:{i}", "x")
        except redis.ResponseError as e:
            if not str(e).startswith("MOVED"):
                raise
    raise AssertionError("no key of 200 hashed to this master")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


def test_slots_covered_by_three_masters_with_one_replica_each(cluster):
    expected_pairs = {cluster.nodes[(i + 1) % 3].port: cluster.nodes[3 + i].port for i in range(3)}
    views = []
    for node in cluster.nodes:
        # Raw CLUSTER SLOTS, so this does not just re-check the harness's own parsing.
        ranges = sorted(cluster.client(node).execute_command("CLUSTER", "SLOTS"))
        assert sum(r[1] - r[0] + 1 for r in ranges) == harness.SLOT_COUNT
        assert all(len(r) == 4 for r in ranges)  # start, end, master, one replica
        assert {r[2][1]: r[3][1] for r in ranges} == expected_pairs
        views.append(ranges)
    assert all(v == views[0] for v in views)
    assert [n.port for n in cluster.masters()] == [n.port for n in cluster.nodes[:3]]
    assert [n.port for n in cluster.replicas()] == [n.port for n in cluster.nodes[3:]]
    assert cluster.seeds == [f"127.0.0.1:{n.port}" for n in cluster.nodes[:3]]


def test_auth_is_required(cluster):
    with socket.create_connection(("127.0.0.1", cluster.nodes[0].port), timeout=5) as s:
        s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
        assert s.recv(100).startswith(b"-NOAUTH")
    with pytest.raises(redis.ResponseError, match="WRONGPASS"):
        redis.Redis(port=cluster.nodes[0].port, password="wrong").ping()


def test_set_works_on_owner_and_is_moved_elsewhere(cluster):
    key = "harness:moved"
    slot = cluster.client(cluster.nodes[0]).execute_command("CLUSTER", "KEYSLOT", key)
    owner = cluster.node_for_slot(slot)
    assert cluster.client(owner).set(key, "v") is True
    assert cluster.client(owner).get(key) == "v"
    for other in cluster.nodes:
        if other is owner:
            continue
        with pytest.raises(redis.ResponseError) as err:
            cluster.client(other).set(key, "w")
        assert str(err.value) == f"MOVED {slot} 127.0.0.1:{owner.port}"


def test_replicas_authenticate_to_their_masters(cluster):
    for replica in cluster.replicas():
        master = cluster.master_of(replica)
        info = cluster.client(replica).info("replication")
        assert info["role"] == "slave"
        assert info["master_port"] == master.port
        assert info["master_link_status"] == "up"
        # WAIT returns how many replicas acknowledged this client's writes.
        m = cluster.client(master)
        set_some_key_on(m)
        assert m.execute_command("WAIT", 1, 2000) == 1


def test_stop_kills_every_node_and_is_idempotent(tmp_path):
    c = Cluster(tmp_path).start()
    pids = [n.pid for n in c.nodes]
    c.pause(c.nodes[4])  # a stopped (SIGSTOP) node must be stopped for good too
    c.stop()
    assert_all_gone(pids)
    c.stop()


def test_two_clusters_at_once_do_not_collide(tmp_path):
    a, b = Cluster(tmp_path / "a"), Cluster(tmp_path / "b")
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Cluster.start, (a, b)))
        ports_a = {p for n in a.nodes for p in (n.port, n.port + 10000)}
        ports_b = {p for n in b.nodes for p in (n.port, n.port + 10000)}
        assert not ports_a & ports_b
        key = "harness:which-cluster"
        slot = a.client(a.nodes[0]).execute_command("CLUSTER", "KEYSLOT", key)
        a.client(a.node_for_slot(slot)).set(key, "a")
        assert b.client(b.node_for_slot(slot)).get(key) is None
    finally:
        a.stop()
        b.stop()
    assert_all_gone([n.pid for n in a.nodes + b.nodes])


def test_port_taken_after_picking_is_retried(tmp_path, monkeypatch):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real_pick = harness.pick_ports
    calls = []

    def pick_with_taken_port(count):
        calls.append(count)
        ports = real_pick(count)
        return [taken] + ports[1:] if len(calls) == 1 else ports

    monkeypatch.setattr(harness, "pick_ports", pick_with_taken_port)
    try:
        with Cluster(tmp_path) as c:
            assert len(calls) == 2
            assert taken not in [n.port for n in c.nodes]
            assert len(c.masters()) == 3
    finally:
        squatter.close()


def test_failover_helpers(tmp_path):
    with Cluster(tmp_path) as c:
        old_master = c.nodes[0]
        replica = next(r for r in c.replicas() if c.master_of(r) is old_master)
        c.kill(old_master)
        c.wait_state_ok()
        assert c.node_for_slot(0) is replica
        assert replica.role == "master"
        c.restart(old_master)
        c.wait_state_ok()
        assert old_master in c.replicas()
        assert c.master_of(old_master) is replica
        assert len(c.masters()) == 3
