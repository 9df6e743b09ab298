# TLS on both sides: clients reach respgate over TLS (redis-py with ssl,
# redis-cli --tls, Python's ssl module for the refusals), and respgate
# reaches a cluster whose nodes speak TLS only (port 0, tls-port,
# tls-cluster yes, tls-replication yes, tls-auth-clients yes: respgate's
# client certificate is required). Certificates are made by the test
# (harness/certs.py). The whole data-path, failover and Pub/Sub modules also
# run with TLS to the nodes under RESPGATE_TEST_TLS=1 (dev/test does).

import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest
import redis

from conftest import CLUSTER_PASSWORD, needs_redis7, wait_until
from harness.certs import Certs
from harness.cluster import Cluster, keyslot
from harness.respgate import Respgate, free_port, yaml_config


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tcluster(tmp_path_factory, certs):
    with Cluster(tmp_path_factory.mktemp("tcluster"), password=CLUSTER_PASSWORD, tls=certs,
                 tls_auth_clients="yes") as c:
        yield c


class TlsRespgate:
    """A respgate with a plain listener (port) and a TLS one (tls_port) in
    front of the TLS cluster."""

    def __init__(self, rg, tls_port, certs):
        self.rg, self.tls_port, self.certs = rg, tls_port, certs

    def __getattr__(self, name):
        return getattr(self.rg, name)

    def tls_client(self, **kwargs):
        options = dict(host="127.0.0.1", port=self.tls_port, ssl=True, ssl_ca_certs=self.certs.ca,
                       socket_timeout=10)
        options.update(kwargs)
        return redis.Redis(**options)


@pytest.fixture
def make_tls_respgate(tmp_path, tcluster, certs):
    started = []

    def make(tls_lines=(), cluster_lines=(), extra="", start=True):
        tcluster.wait_state_ok()
        port, tls_port = free_port(), free_port()
        text = yaml_config(port, tcluster.seeds, CLUSTER_PASSWORD, None, extra, cluster_tls=certs,
                           listen=[f"127.0.0.1:{port}", f"127.0.0.1:{tls_port} tls"])
        text = text.replace("cluster:\n", "cluster:\n" + "".join(f"  {line}\n" for line in cluster_lines), 1)
        text += f"tls:\n  cert_file: {certs.server}\n  key_file: {certs.server_key}\n"
        text += "".join(f"  {line}\n" for line in tls_lines)
        rg = Respgate(tmp_path / f"trg{len(started)}", text, port)
        started.append(rg)
        if start:
            rg.start()
        return TlsRespgate(rg, tls_port, certs)

    yield make
    for rg in started:
        rg.stop()
    reports = [r for r in (rg.sanitizer_report() for rg in started) if r]
    assert not reports, "respgate's sanitizers reported:\n" + "\n".join(reports)


def keys_on_every_master(tcluster, prefix, n=3):
    """N keys per master of TCLUSTER (by slot)."""
    owners = {}
    i = 0
    while len(owners) < len(tcluster.masters()) or min(len(v) for v in owners.values()) < n:
        key = f"{prefix}{i}"
        owners.setdefault(tcluster.node_for_slot(keyslot(key)).port, []).append(key)
        i += 1
    return [k for keys in owners.values() for k in keys[:n]]


def test_data_path_over_tls_on_both_sides(make_tls_respgate, tcluster):
    rg = make_tls_respgate()
    c = rg.tls_client()
    keys = keys_on_every_master(tcluster, "tls:dp:")
    for k in keys:
        assert c.set(k, f"v-{k}") is True
    assert [c.get(k) for k in keys] == [f"v-{k}".encode() for k in keys]
    assert c.mget(keys) == [f"v-{k}".encode() for k in keys]  # split over the three masters
    assert c.delete(*keys) == len(keys)
    # A pipeline of a thousand, and values much larger than a TLS record
    # (16 KB), both ways: replies are cut across records and reads.
    p = c.pipeline(transaction=False)
    for i in range(1000):
        p.incr(f"tls:dp:n{i % 50}")
    assert p.execute()[-50:] == [20] * 50
    big = os.urandom(3 * 1024 * 1024 + 7)
    assert c.set("tls:dp:big", big) is True
    assert c.get("tls:dp:big") == big
    p = c.pipeline(transaction=False)
    for _ in range(5):
        p.get("tls:dp:big")
    assert p.execute() == [big] * 5
    # A transaction, and a blocking command: connections of their own to a node.
    t = c.pipeline(transaction=True)
    t.set("{tls:tx}a", "1").incr("{tls:tx}a").get("{tls:tx}a")
    assert t.execute() == [True, 2, b"2"]
    got = []
    waiter = threading.Thread(target=lambda: got.append(rg.tls_client().blpop("tls:dp:list", timeout=10)))
    waiter.start()
    time.sleep(0.3)
    assert rg.tls_client().rpush("tls:dp:list", "x") == 1
    waiter.join(15)
    assert got == [(b"tls:dp:list", b"x")]
    # The plain listener reaches the same TLS cluster.
    assert rg.client().get("{tls:tx}a") == b"2"
    assert "redis_version" in c.info("server")


def test_redis_cli_over_tls(make_tls_respgate, certs):
    rg = make_tls_respgate()
    cli = ["redis-cli", "--tls", "--cacert", certs.ca, "-h", "127.0.0.1", "-p", str(rg.tls_port)]
    out = subprocess.run(cli + ["SET", "tls:cli", "hello"], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "OK", out.stderr
    out = subprocess.run(cli + ["GET", "tls:cli"], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "hello", out.stderr
    # redis-benchmark's pipelines of random keys: each one's replies come
    # from every master, and go back in order through TLS (a bufferevent's
    # own write once sent them in plaintext between the records).
    out = subprocess.run(["redis-benchmark", "--tls", "--cacert", certs.ca, "-p", str(rg.tls_port), "-t", "get,set",
                          "-c", "20", "-P", "16", "-n", "20000", "-r", "100000", "-q"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.count("requests per second") == 2, out.stdout[-500:] + out.stderr
    assert rg.client().info("respgate")["rejected_tls_handshake"] == 0
    # Without --tls, redis-cli's plain RESP is not a TLS handshake: refused.
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(rg.tls_port), "PING"], capture_output=True,
                         text=True, timeout=30)
    assert "PONG" not in out.stdout


def handshake(port, ca, cert=None, key=None):
    """PING over a TLS connection to PORT; the reply, or the error seen."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"PING\r\n")
                data = s.recv(64)
                return data if data else "closed"
    except (ssl.SSLError, OSError) as e:
        return e


def test_client_certificates_are_verified(make_tls_respgate, certs):
    rg = make_tls_respgate(tls_lines=[f"ca_file: {certs.ca}", "auth_clients: yes"])
    assert handshake(rg.tls_port, certs.ca, certs.client, certs.client_key) == b"+PONG\r\n"
    # TLS 1.3 ends the client's half of the handshake before the server has
    # checked its certificate: the refusal shows at the first read.
    no_cert = handshake(rg.tls_port, certs.ca)
    assert not isinstance(no_cert, bytes), no_cert
    rogue = handshake(rg.tls_port, certs.ca, certs.rogue, certs.rogue_key)
    assert not isinstance(rogue, bytes), rogue
    assert wait_until(lambda: rg.client().info("respgate")["rejected_tls_handshake"] == 2, 5)
    assert "refused: TLS handshake failed" in rg.log() and "certificate" in rg.log(), rg.log()
    # optional: no certificate is fine, an untrusted one is not.
    rg2 = make_tls_respgate(tls_lines=[f"ca_file: {certs.ca}", "auth_clients: optional"])
    assert handshake(rg2.tls_port, certs.ca) == b"+PONG\r\n"
    assert not isinstance(handshake(rg2.tls_port, certs.ca, certs.rogue, certs.rogue_key), bytes)
    assert handshake(rg2.tls_port, certs.ca, certs.client, certs.client_key) == b"+PONG\r\n"


def test_tls_versions_and_plain_clients(make_tls_respgate, certs):
    rg = make_tls_respgate(tls_lines=["min_version: TLSv1.3"])
    ctx = ssl.create_default_context(cafile=certs.ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", rg.tls_port), timeout=10) as raw:
            ctx.wrap_socket(raw, server_hostname="127.0.0.1").close()
    assert handshake(rg.tls_port, certs.ca) == b"+PONG\r\n"
    # Plain bytes on the TLS port are no handshake: respgate closes without
    # answering them, and goes on serving.
    with socket.create_connection(("127.0.0.1", rg.tls_port), timeout=10) as s:
        s.sendall(b"PING\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert b"PONG" not in data
    assert rg.tls_client().ping() is True
    info = rg.client().info("respgate")
    assert info["rejected_tls_handshake"] >= 2, info


def test_nodes_certificates_are_verified(make_tls_respgate, certs):
    # A CA that did not sign the nodes' certificates: every connection to a
    # node fails its handshake, and a client gets an error, not a hang.
    rg = make_tls_respgate(start=False)
    rg.write_config(open(rg.conf_path).read().replace(f"tls_ca_file: {certs.ca}", f"tls_ca_file: {certs.other_ca}"))
    rg.start()
    assert wait_until(lambda: "certificate verify failed" in rg.log(), 10), rg.log()
    with pytest.raises(redis.RedisError):
        rg.client().set("tls:unverified", "x")


def test_nodes_names_are_checked(tmp_path_factory, tmp_path, certs):
    # Nodes whose certificate names elsewhere.invalid, not the 127.0.0.1
    # respgate connects to: refused with cluster.tls_verify_name yes (the
    # default), accepted with no (the CA still signed it).
    named = type("Named", (), {})()
    named.__dict__.update(certs.__dict__)
    named.server, named.server_key = certs.wrong_name, certs.wrong_name_key
    with Cluster(tmp_path_factory.mktemp("named"), masters=3, replicas=0, password=CLUSTER_PASSWORD,
                 tls=named) as c:
        for verify, works in (("yes", False), ("no", True)):
            port = free_port()
            text = yaml_config(port, c.seeds, CLUSTER_PASSWORD, cluster_tls=certs).replace(
                "cluster:\n", f"cluster:\n  tls_verify_name: {verify}\n", 1)
            with Respgate(tmp_path / f"rg-{verify}", text, port) as rg:
                if works:
                    assert rg.client().set("tls:named", "x") is True
                else:
                    assert wait_until(lambda: "mismatch" in rg.log(), 10), rg.log()
                    with pytest.raises(redis.RedisError):
                        rg.client().set("tls:named", "x")


def test_pubsub_over_tls(make_tls_respgate, tcluster):
    rg = make_tls_respgate()
    sub = rg.tls_client().pubsub()
    sub.subscribe("tls:news")
    sub.psubscribe("tls:n*")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    assert sub.get_message(timeout=5)["type"] == "psubscribe"
    pub = rg.tls_client()
    for i in range(50):
        assert pub.publish("tls:news", f"m{i}") == 2
    got = []
    while len(got) < 100:
        m = sub.get_message(timeout=5)
        assert m is not None, f"only {len(got)} messages"
        got.append((m["type"], m["data"]))
    assert [d for t, d in got if t == "message"] == [f"m{i}".encode() for i in range(50)]
    assert [d for t, d in got if t == "pmessage"] == [f"m{i}".encode() for i in range(50)]


def peer_serial(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return format(int(s.getpeercert()["serialNumber"], 16), "X")


def test_certificates_reload_on_sighup_without_dropping_clients(make_tls_respgate, certs, tmp_path):
    # respgate reads its own copies, so the test can replace them.
    cert, key = str(tmp_path / "live.crt"), str(tmp_path / "live.key")
    shutil.copy(certs.server, cert)
    shutil.copy(certs.server_key, key)
    rg = make_tls_respgate(start=False)
    text = open(rg.conf_path).read().replace(certs.server_key, key).replace(certs.server, cert)
    rg.write_config(text)
    rg.start()
    old = certs.serial(certs.server).upper()
    assert peer_serial(rg.tls_port, certs.ca) == old.lstrip("0")
    held = rg.tls_client()
    assert held.set("tls:reload", "before") is True
    sub = rg.tls_client().pubsub()
    sub.subscribe("tls:reload")
    assert sub.get_message(timeout=5)["type"] == "subscribe"

    new_crt, new_key = certs.issue("renewed", "127.0.0.1", san="IP:127.0.0.1,DNS:localhost")
    shutil.copy(new_crt, cert)
    shutil.copy(new_key, key)
    rg.signal(signal.SIGHUP)
    assert wait_until(lambda: "configuration reloaded" in rg.log(), 10), rg.log()
    new = certs.serial(new_crt).upper()
    assert new != old
    assert peer_serial(rg.tls_port, certs.ca) == new.lstrip("0")
    # The connections made before are the same ones, still served.
    assert held.get("tls:reload") == b"before"
    assert held.client_id() == held.client_id()
    assert rg.tls_client().publish("tls:reload", "after") == 1
    m = sub.get_message(timeout=5)
    assert m and m["data"] == b"after"

    # A key that does not match fails the reload; the running one stays.
    shutil.copy(certs.client_key, key)
    rg.signal(signal.SIGHUP)
    assert wait_until(lambda: "reload failed" in rg.log(), 10), rg.log()
    assert "tls.key_file" in rg.log() and "does not match" in rg.log(), rg.log()
    assert peer_serial(rg.tls_port, certs.ca) == new.lstrip("0")
    assert held.get("tls:reload") == b"before"


def test_config_check_names_tls_problems(tmp_path, certs):
    port = free_port()
    bad = yaml_config(port, ["127.0.0.1:7000"], listen=[f"127.0.0.1:{port} tls"]) + \
        f"tls:\n  cert_file: {tmp_path}/missing.crt\n  key_file: {certs.server_key}\n"
    rg = Respgate(tmp_path / "bad", bad, port)
    rg.start(wait=False)
    assert rg.wait(15) != 0
    assert "tls.cert_file: cannot load" in rg.log() and "missing.crt" in rg.log(), rg.log()


def test_moved_and_failover_over_tls(tmp_path_factory, tmp_path, certs):
    # Its own cluster: a master dies here.
    with Cluster(tmp_path_factory.mktemp("tfail"), password=CLUSTER_PASSWORD, tls=certs,
                 tls_auth_clients="yes") as c:
        port, tls_port = free_port(), free_port()
        text = yaml_config(port, c.seeds, CLUSTER_PASSWORD, cluster_tls=certs,
                           listen=[f"127.0.0.1:{port}", f"127.0.0.1:{tls_port} tls"])
        text += f"tls:\n  cert_file: {certs.server}\n  key_file: {certs.server_key}\n"
        with Respgate(tmp_path / "rg", text, port) as plain:
            rg = TlsRespgate(plain, tls_port, certs)
            cl = rg.tls_client(socket_timeout=30)
            keys = keys_on_every_master(c, "tls:fo:", 5)
            for k in keys:
                assert cl.set(k, "v0") is True
            # MOVED: a slot with a key in it moves to another master.
            moving = keys[0]
            slot = keyslot(moving)
            src = c.node_for_slot(slot)
            dst = next(m for m in c.masters() if m is not src)
            c.move_slots([slot], dst)
            assert cl.get(moving) == b"v0"
            assert cl.set(moving, "v1") is True
            assert c.client(dst).get(moving) == "v1"
            assert plain.client().info("respgate")["redirections"] >= 1

            sub = rg.tls_client().pubsub()
            sub.subscribe("tls:fo:chan")
            assert sub.get_message(timeout=5)["type"] == "subscribe"
            # A plain subscriber too, on the same channel, so on the same node.
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            raw.sendall(b"SUBSCRIBE tls:fo:chan\r\n")
            assert raw.recv(100).startswith(b"*3\r\n$9\r\nsubscribe")
            sub_node = next(m for m in c.masters() if c.client(m).pubsub_numsub("tls:fo:chan")[0][1] == 2)

            # Failover: the subscribers' node dies (any but DST's, else the master
            # of the first key not on DST).
            victim = sub_node if sub_node is not dst else c.node_for_slot(
                keyslot(next(k for k in keys if c.node_for_slot(keyslot(k)) is not dst)))
            victim_key = next(k for k in keys if c.node_for_slot(keyslot(k)) is victim)
            c.kill(victim)
            if victim is sub_node:
                # Its subscriptions died with it: the client is closed at once
                # (not at the 10 s close timeout), so that it subscribes again.
                raw.settimeout(5)
                assert raw.recv(100) == b""
            raw.close()
            deadline = time.monotonic() + 60
            while True:
                try:
                    assert cl.set(victim_key, "after") is True
                    break
                except redis.RedisError:
                    assert time.monotonic() < deadline, "no write succeeded within 60 s of the failover"
                    time.sleep(0.2)
            c.wait_state_ok()
            promoted = c.node_for_slot(keyslot(victim_key))
            assert promoted is not victim and promoted.running
            assert cl.get(victim_key) == b"after"
            others = [k for k in keys if c.node_for_slot(keyslot(k)) is not promoted]
            assert others and [cl.get(k) for k in others] == [b"v1" if k == moving else b"v0" for k in others]
            # The TLS subscriber was closed with it: redis-py 4.3 says so and
            # does not subscribe again by itself (Lettuce and Jedis do), so
            # the test does, as an application would. Messages go on (the
            # count PUBLISH answers is the node's own, so it is not asked).
            if victim is sub_node:
                with pytest.raises(redis.ConnectionError):
                    sub.get_message(timeout=5)
                sub = rg.tls_client().pubsub()
                sub.subscribe("tls:fo:chan")
                assert sub.get_message(timeout=5)["type"] == "subscribe"
            deadline = time.monotonic() + 30
            got = None
            pub = rg.tls_client()
            while got is None and time.monotonic() < deadline:
                pub.publish("tls:fo:chan", "after")
                while (m := sub.get_message(timeout=1)) is not None:
                    if m["type"] == "message":
                        got = m["data"]
                        break
            assert got == b"after"
            assert plain.sanitizer_report() == ""
