# A reload under load keeps every client: while clients write and read
# through respgate, the cluster's password changes on every node and in
# respgate's file together with the seeds, a limit, the read policy and the
# log level; SIGHUP applies them. No client sees an error or loses its
# connection (each keeps its CLIENT ID), and connections opened after the
# reload authenticate with the new password.

import os
import signal
import threading
import time

import pytest
import redis

from conftest import CLUSTER_PASSWORD, wait_until
from harness.cluster import Cluster
from harness.respgate import Respgate, free_port, yaml_config

NEW_PASSWORD = "rotated-" + CLUSTER_PASSWORD


@pytest.fixture(scope="module")
def rcluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("rcluster"), password=CLUSTER_PASSWORD) as c:
        yield c


def test_a_reload_under_load_keeps_every_client(rcluster, tmp_path):
    port = free_port()
    seeds = rcluster.seeds
    config = lambda seeds, password, level, max_clients, policy: yaml_config(
        port, seeds, password, None,
        f"log: {{level: {level}}}\nclient: {{max_clients: {max_clients}}}\n").replace(
        "cluster:\n", f"cluster:\n  read_policy: {policy}\n", 1)
    with Respgate(tmp_path / "rg", config(seeds[:1], CLUSTER_PASSWORD, "notice", 1000, "master"), port) as rg:
        stop = threading.Event()
        lock = threading.Lock()
        errors, ids, ops = [], {}, [0]

        def load(n):
            r = redis.Redis(port=port, socket_timeout=5, single_connection_client=True)
            first = r.client_id()
            deadline = time.monotonic() + 40
            i = 0
            while not stop.is_set() and time.monotonic() < deadline:
                i += 1
                try:
                    r.set(f"rl:{n}:{i % 20}", i)
                    # After the reload reads may go to replicas, a little behind.
                    got = r.get(f"rl:{n}:{i % 20}")
                    assert got is None or int(got) <= i, got
                    with lock:
                        ops[0] += 1
                except Exception as e:  # every error counts, whatever its kind
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}")
            try:
                ids[n] = (first, r.client_id())
            except Exception as e:
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")

        threads = [threading.Thread(target=load, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        try:
            assert wait_until(lambda: ops[0] > 300, 15)
            # The nodes first, then respgate: its open connections stay
            # authenticated, as a node keeps them when its password changes.
            for n in rcluster.nodes:
                c = rcluster.client(n)
                c.config_set("masterauth", NEW_PASSWORD)
                c.config_set("requirepass", NEW_PASSWORD)
            rcluster.password = NEW_PASSWORD
            rg.write_config(config(seeds[1:], NEW_PASSWORD, "info", 2000, "prefer-replica"))
            rg.signal(signal.SIGHUP)
            assert wait_until(lambda: "configuration reloaded" in rg.log(), 10), rg.log()
            before = ops[0]
            assert wait_until(lambda: ops[0] > before + 300, 15)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        print(f"\n{ops[0]} SET+GET pairs, {len(errors)} errors")
        assert errors == []
        assert len(ids) == 6 and all(a == b for a, b in ids.values()), ids
        log = rg.log()
        assert "takes effect only after a restart" not in log, log
        # New connections use the new password: a blocking command opens one.
        r = redis.Redis(port=port, socket_timeout=5)
        assert r.blpop("rl:nothing", 0.2) is None
        assert "AUTH failed" not in rg.log()
        # The new read policy is in force: reads reach the replicas now.
        def replica_gets():
            total = 0
            for n in rcluster.replicas():
                stats = rcluster.client(n).info("commandstats")
                total += stats.get("cmdstat_get", {}).get("calls", 0)
            return total
        before = replica_gets()
        for i in range(100):
            r.get(f"rl:0:{i % 20}")
        assert replica_gets() > before


def test_a_reload_moves_the_admin_endpoint(cluster, tmp_path):
    import http.client

    def status(p):
        try:
            c = http.client.HTTPConnection("127.0.0.1", p, timeout=2)
            c.request("GET", "/healthz")
            return c.getresponse().status
        except OSError:
            return None

    port, a1, a2 = free_port(), free_port(), free_port()
    text = lambda admin: yaml_config(port, cluster.seeds, CLUSTER_PASSWORD, None, f'admin: {{listen: "{admin}"}}\n')
    with Respgate(tmp_path / "rg", text(f"127.0.0.1:{a1}"), port) as rg:
        c = redis.Redis(port=port, socket_timeout=5, single_connection_client=True)
        first = c.client_id()
        assert wait_until(lambda: status(a1) == 200, 10)
        rg.write_config(text(f"127.0.0.1:{a2}"))
        rg.signal(signal.SIGHUP)
        assert wait_until(lambda: status(a2) == 200, 10), rg.log()
        assert status(a1) is None
        rg.write_config(text(""))
        rg.signal(signal.SIGHUP)
        assert wait_until(lambda: status(a2) is None, 10), rg.log()
        assert c.client_id() == first


def test_a_failed_reload_keeps_the_log_where_it_was(cluster, tmp_path):
    import socket

    port = free_port()
    base = yaml_config(port, cluster.seeds, CLUSTER_PASSWORD, None)
    new_log = tmp_path / "new.log"
    with socket.socket() as taken, Respgate(tmp_path / "rg", base, port) as rg:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        # The new log file opens, then the admin endpoint cannot listen: the
        # reload fails as a whole, and the log goes back to where it was.
        rg.write_config(base + f'log: {{file: "{new_log}"}}\nadmin: {{listen: 127.0.0.1:{busy}}}\n')
        rg.signal(signal.SIGHUP)
        assert wait_until(lambda: "reload failed" in rg.log(), 10), rg.log()
        assert "reload failed" not in new_log.read_text()
        # A log file that cannot open fails the reload too, and nothing else.
        rg.write_config(base + f'log: {{file: "{tmp_path}/no/such/dir/x.log"}}\n')
        rg.signal(signal.SIGHUP)
        assert wait_until(lambda: rg.log().count("reload failed") == 2, 10), rg.log()
        assert "cannot open" in rg.log() and rg.client().ping()
        rg.write_config(base + 'log: {level: debug}\n')
        rg.signal(signal.SIGHUP)
        assert wait_until(lambda: "configuration reloaded" in rg.log(), 10), rg.log()
        assert "configuration reloaded" not in new_log.read_text()


def test_a_reload_adds_and_removes_listeners(cluster, tmp_path):
    import socket

    def refused(p):
        try:
            socket.create_connection(("127.0.0.1", p), timeout=2).close()
            return False
        except ConnectionRefusedError:
            return True

    first, second = free_port(), free_port()
    sock = str(tmp_path / "rg.sock")
    base = yaml_config(first, cluster.seeds, CLUSTER_PASSWORD, None)
    with Respgate(tmp_path / "rg", base, first) as rg:
        old = redis.Redis(port=first, socket_timeout=5, single_connection_client=True)
        oid = old.client_id()
        rg.write_config(base.replace(f"listen: [127.0.0.1:{first}]",
                                     f'listen: [127.0.0.1:{first}, 127.0.0.1:{second}, "unix:{sock}"]'))
        rg.signal(signal.SIGHUP)
        assert wait_until(lambda: "configuration reloaded" in rg.log(), 10), rg.log()
        assert redis.Redis(port=second, socket_timeout=5).ping()
        assert redis.Redis(unix_socket_path=sock, socket_timeout=5).ping()
        # Each worker listens on the new address: many connections all get in.
        assert all(redis.Redis(port=second, socket_timeout=5).ping() for _ in range(20))
        rg.write_config(base.replace(f"listen: [127.0.0.1:{first}]", f"listen: [127.0.0.1:{second}]"))
        rg.signal(signal.SIGHUP)
        assert wait_until(lambda: rg.log().count("configuration reloaded") == 2, 10), rg.log()
        assert wait_until(lambda: refused(first), 10)
        assert not os.path.exists(sock)
        # A connection accepted on a listener that went stays, with its session.
        assert old.client_id() == oid and old.set("kept", 1)
        assert redis.Redis(port=second, socket_timeout=5).get("kept") == b"1"
        assert "takes effect only after a restart" not in rg.log()
    assert rg.proc.returncode == 0


def test_reload_helper_returns_once_the_reload_is_done(cluster, tmp_path):
    # ExecReload=respgate --reload $MAINPID: systemctl reload returns when the
    # reload has ended, and fails when the file was refused.
    import subprocess

    from harness.respgate import BINARY

    runtime = tmp_path / "run"
    runtime.mkdir()
    env = dict(os.environ, RUNTIME_DIRECTORY=str(runtime))
    port = free_port()
    text = yaml_config(port, cluster.seeds, CLUSTER_PASSWORD, None)
    with Respgate(tmp_path / "rg", text, port, env=env) as rg:
        reload = lambda: subprocess.run([BINARY, "--reload", str(rg.pid)], env=env, capture_output=True, text=True,
                                        timeout=40)
        p = reload()
        assert p.returncode == 0, p.stderr
        assert rg.log().count("configuration reloaded") == 1  # already there when it returned
        rg.write_config(text + "nonsense: 1\n")
        p = reload()
        assert p.returncode == 1 and "refused" in p.stderr, (p.returncode, p.stderr)
        assert "reload failed" in rg.log()
        rg.write_config(text)
        assert reload().returncode == 0
        assert rg.log().count("configuration reloaded") == 2
        # Without RUNTIME_DIRECTORY it can only send the signal.
        p = subprocess.run([BINARY, "--reload", str(rg.pid)], capture_output=True, text=True, timeout=40,
                           env={k: v for k, v in os.environ.items() if k != "RUNTIME_DIRECTORY"})
        assert p.returncode == 0
        assert wait_until(lambda: rg.log().count("configuration reloaded") == 3, 10)
    p = subprocess.run([BINARY, "--reload", "999999999"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "No such process" in p.stderr
