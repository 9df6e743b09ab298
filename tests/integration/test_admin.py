# The admin endpoint (admin.listen): /healthz says whether respgate can serve
# every slot, and flips when the whole cluster stops answering and when it
# comes back; /metrics is Prometheus text whose counters agree with the
# requests sent; bad requests get 400/404/405 and the endpoint has its own
# connection limit.

import http.client
import socket
import time

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from conftest import CLUSTER_PASSWORD, wait_until
from harness.cluster import Cluster
from harness.respgate import Respgate, free_port, yaml_config


def get(port, path, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def metrics(port):
    status, text = get(port, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def sample(m, name, **labels):
    return m[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def admin_rg(make_respgate):
    port = free_port()
    rg = make_respgate(extra=f"admin: {{listen: 127.0.0.1:{port}}}\n")
    rg.admin_port = port
    assert wait_until(lambda: get(port, "/healthz")[0] == 200, 10)
    return rg


def test_healthz_says_ok_with_every_slot_served(admin_rg):
    status, text = get(admin_rg.admin_port, "/healthz")
    assert status == 200 and text.startswith("ok: 16384 slots on 3 masters"), text
    assert get(admin_rg.admin_port, "/healthz", "HEAD")[0] == 200


def test_metrics_agree_with_the_requests_sent(admin_rg):
    r = admin_rg.client()
    r.ping()
    before = metrics(admin_rg.admin_port)
    for i in range(50):
        r.set(f"adm:{i}", i)
    for i in range(30):
        r.get(f"adm:{i}")
    r.mget([f"adm:{i}" for i in range(10)])
    with pytest.raises(redis.ResponseError):
        r.execute_command("NOSUCHCOMMAND")
    with pytest.raises(redis.ResponseError):
        r.execute_command("INCR", "adm:0", "extra")  # a write's arity error, answered by respgate
    after = metrics(admin_rg.admin_port)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("respgate_requests_total", family="write") == 51
    assert delta("respgate_requests_total", family="read") == 30
    assert delta("respgate_requests_total", family="multi_node") == 1
    assert delta("respgate_requests_total", family="other") == 1
    assert delta("respgate_request_errors_total", family="other") == 1
    assert delta("respgate_request_errors_total", family="write") == 1
    assert delta("respgate_request_errors_total", family="read") == 0
    assert delta("respgate_request_duration_seconds_count", family="write") == 51
    assert delta("respgate_request_duration_seconds_bucket", family="read", le="+Inf") == 30
    assert delta("respgate_request_duration_seconds_sum", family="read") > 0
    # Buckets are cumulative.
    les = sorted((float(dict(k[1])["le"]), v) for k, v in after.items()
                 if k[0] == "respgate_request_duration_seconds_bucket" and dict(k[1])["family"] == "write")
    assert [v for _, v in les] == sorted(v for _, v in les)
    assert sample(after, "respgate_clients_connected") >= 1
    assert sample(after, "respgate_slots_served") == 16384
    assert sample(after, "respgate_cluster_masters") == 3
    assert 0 <= sample(after, "respgate_slot_map_age_seconds") < 5
    assert sample(after, "respgate_topology_refreshes_total", result="ok") >= 1
    assert delta("respgate_client_bytes_received_total") > 0
    assert delta("respgate_client_bytes_sent_total") > 0


def connections(m, kind, state):
    """{node: count} of respgate_backend_connections for KIND and STATE."""
    return {dict(k[1])["node"]: v for k, v in m.items()
            if k[0] == "respgate_backend_connections" and dict(k[1])["kind"] == kind
            and dict(k[1])["state"] == state}


def test_metrics_count_backend_connections_per_node(admin_rg, cluster):
    r = admin_rg.client()
    for i in range(60):
        r.set(f"conn:{i}", i)  # reaches every master, on each worker that serves this client
    port = admin_rg.admin_port
    masters = {n.addr for n in cluster.masters()}
    ready = connections(metrics(port), "shared", "ready")
    assert {n for n, v in ready.items() if v >= 1} == masters, ready
    assert sum(connections(metrics(port), "session", "ready").values()) == 0
    # A blocking command takes a connection of its own, kept once answered.
    assert r.blpop(["conn:list"], timeout=0.1) is None
    session = connections(metrics(port), "session", "ready")
    assert sum(session.values()) == 1 and set(session) <= masters, session
    # A subscriber's connection counts while it lasts.
    sub = admin_rg.client().pubsub()
    sub.subscribe("conn:channel")
    assert wait_until(lambda: sub.get_message(timeout=0.2) is not None, 5)
    assert wait_until(lambda: sum(connections(metrics(port), "pubsub", "ready").values()) == 1, 5)
    sub.close()
    assert wait_until(lambda: sum(connections(metrics(port), "pubsub", "ready").values()) == 0, 5)
    assert all(v == 0 for v in connections(metrics(port), "shared", "stalled").values())


def test_bad_requests_get_http_errors(admin_rg):
    port = admin_rg.admin_port
    assert get(port, "/nope")[0] == 404
    assert get(port, "/healthz", "POST")[0] == 405
    assert get(port, "/metrics", "DELETE")[0] == 405
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x00\x01garbage that is no HTTP\r\n\r\n")
        head = s.recv(64)
        assert head == b"" or head.startswith(b"HTTP/1.1 400"), head
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        head = s.recv(64)
        assert head == b"" or head.startswith(b"HTTP/1.1 4"), head
    assert get(port, "/healthz")[0] == 200  # still serving
    assert admin_rg.client().ping()


def test_admin_connections_are_limited(admin_rg):
    port = admin_rg.admin_port
    held = []
    try:
        for _ in range(16):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/healthz")
            resp = c.getresponse()
            resp.read()
            assert resp.status == 200
            held.append(c)  # kept alive, still counted
        assert get(port, "/healthz")[0] == 503
    finally:
        for c in held:
            c.close()
    assert wait_until(lambda: get(port, "/healthz")[0] == 200, 10)


@pytest.fixture(scope="module")
def hcluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("hcluster"), password=CLUSTER_PASSWORD) as c:
        yield c


def test_healthz_follows_the_whole_cluster_stopping_and_returning(hcluster, tmp_path):
    port, admin = free_port(), free_port()
    text = yaml_config(port, hcluster.seeds, CLUSTER_PASSWORD, None, f"admin: {{listen: 127.0.0.1:{admin}}}\n")
    with Respgate(tmp_path / "rg", text, port) as rg:
        assert wait_until(lambda: get(admin, "/healthz")[0] == 200, 10)
        nodes = [n for n in hcluster.nodes if n.running]
        for n in nodes:
            hcluster.pause(n)
        stopped = time.monotonic()
        try:
            assert wait_until(lambda: get(admin, "/healthz")[0] == 503, 10)
            down_after = time.monotonic() - stopped
            status, why = get(admin, "/healthz")
            assert status == 503 and "CLUSTER NODES" in why, why
        finally:
            for n in nodes:
                hcluster.resume(n)
        resumed = time.monotonic()
        assert wait_until(lambda: get(admin, "/healthz")[0] == 200, 10)
        up_after = time.monotonic() - resumed
        print(f"\n/healthz: 503 {down_after:.2f} s after the cluster stopped, 200 {up_after:.2f} s after it resumed")
        assert rg.client().set("back", 1)


def test_info_waits_for_the_first_map(hcluster, tmp_path):
    """INFO right after start, before any node has answered CLUSTER NODES,
    waits for the map instead of answering without the nodes' sections
    (ioredis waits for loading:0, Spring Boot reads it)."""
    import threading

    port = free_port()
    nodes = [n for n in hcluster.nodes if n.running]
    for n in nodes:
        hcluster.pause(n)
    got = {}
    try:
        rg = Respgate(tmp_path / "rg", yaml_config(port, hcluster.seeds, CLUSTER_PASSWORD, None), port)
        rg.start()
        t = threading.Thread(target=lambda: got.update(info=rg.client().info()))
        t.start()
        time.sleep(1)
        assert "info" not in got  # no map yet: INFO waits
    finally:
        for n in nodes:
            hcluster.resume(n)
    try:
        t.join(20)
        assert got["info"]["loading"] == 0 and got["info"]["redis_mode"] == "standalone"
    finally:
        rg.stop()
