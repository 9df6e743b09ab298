# Nodes that announce host names (cluster-announce-hostname with
# cluster-preferred-endpoint-type hostname, as in containers and clouds):
# their MOVED and ASK name the node, not its address. respgate follows a
# name the map knows to that node's address (one connection per node), and
# looks a name the map does not know yet up without blocking (evdns, here
# from /etc/hosts). Redis 7.0 only: 6.2 announces no host names.

import time

import pytest
import redis

from conftest import CLUSTER_PASSWORD, needs_redis7
from harness.cluster import Cluster, keyslot
from harness.respgate import Respgate, free_port, yaml_config

pytestmark = needs_redis7("cluster-announce-hostname")


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("named"), password=CLUSTER_PASSWORD,
                 extra_config=["cluster-announce-hostname localhost",
                               "cluster-preferred-endpoint-type hostname"]) as c:
        yield c


def start(cluster, tmp_path):
    port = free_port()
    text = yaml_config(port, cluster.seeds, CLUSTER_PASSWORD, None, "log: {level: debug}\n")
    # A map fetched once: the MOVED below reaches respgate before any refresh.
    text = text.replace("cluster:\n", "cluster:\n  refresh_interval: 1h\n", 1)
    return Respgate(tmp_path / "rg", text, port).start()


def test_the_nodes_name_themselves(named):
    """What the tests below rely on: a node's MOVED names localhost."""
    moved = []
    for m in named.masters():
        try:
            named.client(m).get("name-check")
        except redis.ResponseError as e:
            moved.append(str(e))
    assert moved and all(" localhost:" in e for e in moved), moved


def test_moved_naming_a_known_node_is_followed(named, tmp_path):
    rg = start(named, tmp_path)
    try:
        r = rg.client()
        key = "named:moved"
        slot = keyslot(key)
        src = named.node_for_slot(slot)
        dst = next(m for m in named.masters() if m is not src)
        r.set(key, "v")
        named.move_slots([slot], dst)
        named.wait_state_ok()
        assert r.get(key) == b"v"  # MOVED <slot> localhost:<dst port>, followed
        assert r.set(key, "w") is True
        info = r.info("respgate")
        assert info["redirections"] >= 1
        log = rg.log()
        assert "CLUSTERDOWN" not in log
        # the name the map has for dst became dst's address: no second connection
        assert f"backend localhost:{dst.port}" not in log
    finally:
        rg.stop()
        named.move_slots([slot], src)
        named.wait_state_ok()


def test_moved_naming_a_node_the_map_does_not_know_is_resolved(named, tmp_path):
    rg = start(named, tmp_path)
    new = None
    try:
        r = rg.client()
        key = "named:new"
        slot = keyslot(key)
        src = named.node_for_slot(slot)
        r.set(key, "v")
        new = named.add_master()  # after respgate's only map
        named.move_slots([slot], new)
        named.wait_state_ok()
        assert r.get(key) == b"v"
        deadline = time.monotonic() + 5
        while f"backend localhost:{new.port}: connected" not in rg.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"backend localhost:{new.port}: connected" in rg.log()
        assert "cannot resolve" not in rg.log()
    finally:
        rg.stop()
        if new:
            named.move_slots([slot], src)
            named.wait_state_ok()
            named.remove_node(new)
