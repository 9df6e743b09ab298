# respgate behind Nginx's stream proxy, as the deployment runs it: two
# respgates listening with proxy-protocol, and Debian's nginx running
# etc/nginx-respgate.conf (with loopback addresses and free ports put in).
# Clients through Nginx are seen with their own addresses; when one respgate
# is killed under load, its clients reconnect through Nginx to the other and
# every write acknowledged before or after stays readable.

import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest
import redis

from conftest import CLUSTER_PASSWORD, wait_until
from harness.respgate import Respgate, free_port, yaml_config

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


class Nginx:
    """Debian's nginx in the foreground, running etc/nginx-respgate.conf with
    LISTEN and the two UPSTREAMS put in; stopped by its PID."""

    def __init__(self, basedir, listen, upstreams):
        self.dir = str(basedir)
        os.makedirs(self.dir, exist_ok=True)
        stream = open(os.path.join(TOP, "etc", "nginx-respgate.conf")).read()
        stream = stream.replace("10.0.0.10:6379", f"127.0.0.1:{listen}")
        stream = stream.replace("10.0.0.11:6380", f"127.0.0.1:{upstreams[0]}")
        stream = stream.replace("10.0.0.12:6380", f"127.0.0.1:{upstreams[1]}")
        assert "10.0.0." not in re.sub(r"#.*", "", stream)
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(f"load_module {MODULE};\n"
                    f"daemon off;\nmaster_process off;\npid {self.dir}/nginx.pid;\n"
                    f"error_log {self.dir}/error.log info;\n"
                    "events { worker_connections 512; }\n" + stream)
        self.port = listen
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "out"), "wb"))
        if not wait_until(lambda: self.proc.poll() is not None or self._listening(), 10):
            raise RuntimeError("nginx did not listen")
        if self.proc.poll() is not None:
            raise RuntimeError("nginx exited: " + open(os.path.join(self.dir, "out")).read())
        return self

    def _listening(self):
        import socket
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def gateways(cluster, tmp_path):
    if not os.path.exists(NGINX) or not os.path.exists(MODULE):
        pytest.fail(f"nginx with the stream module is needed ({NGINX}, {MODULE}): dev/deps installs them")
    ports = [free_port(), free_port()]
    rgs = []
    try:
        for i, port in enumerate(ports):
            text = yaml_config(port, cluster.seeds, CLUSTER_PASSWORD, None, "log: {level: debug}\n")
            text = text.replace(f"listen: [127.0.0.1:{port}]", f'listen: ["127.0.0.1:{port} proxy-protocol"]')
            rg = Respgate(tmp_path / f"rg{i}", text, port)
            rg.start(wait=False)
            rgs.append(rg)
        for rg in rgs:
            assert wait_until(lambda: "ready: listening" in rg.log(), 10), rg.log()
        with Nginx(tmp_path / "nginx", free_port(), ports) as ngx:
            yield ngx, rgs
    finally:
        for rg in rgs:
            rg.stop()


def test_clients_through_nginx_are_seen_with_their_own_address(gateways):
    ngx, rgs = gateways
    r = redis.Redis(port=ngx.port, socket_timeout=5)
    info = r.client_info()
    conn = r.connection_pool.get_connection("PING")
    try:
        conn.send_command("CLIENT", "INFO")
        line = conn.read_response().decode()
        local = conn._sock.getsockname()
    finally:
        r.connection_pool.release(conn)
    assert f"addr=127.0.0.1:{local[1]} " in line, (line, local)
    assert info["addr"].startswith("127.0.0.1:")
    assert r.set("through-nginx", 1) and r.get("through-nginx") == b"1"


def test_clients_go_on_through_the_other_gateway_when_one_dies(gateways):
    ngx, rgs = gateways
    stop = threading.Event()
    lock = threading.Lock()
    acked, errors, ops = {}, [], [0]

    def load(n):
        r = redis.Redis(port=ngx.port, socket_timeout=5, socket_connect_timeout=5)
        seq = 0
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            seq += 1
            key = f"ngx:{n}:{seq % 50}"
            try:
                r.set(key, seq)
                with lock:
                    acked[key] = seq
                    ops[0] += 1
            except redis.ConnectionError as e:
                with lock:
                    errors.append((time.monotonic(), str(e)))
                r.connection_pool.disconnect()  # the next command opens a new connection
                time.sleep(0.05)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: ops[0] > 400, 15)
        # Both gateways carry clients before one dies.
        assert all("through the proxy" in rg.log() for rg in rgs), "nginx used one gateway only"
        victim = rgs[0]
        killed, before = time.monotonic(), ops[0]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        assert wait_until(lambda: ops[0] > before + 800, 20), "the clients did not go on"
    finally:
        stop.set()
        for t in threads:
            t.join(40)
    late = [e for e in errors if e[0] > killed + 5]
    print(f"\n{ops[0]} writes acknowledged; {len(errors)} connection errors, all within "
          f"{max((e[0] - killed for e in errors), default=0):.2f} s of the kill")
    assert not late, late[:3]
    # Every acknowledged write is readable through the surviving gateway.
    r = redis.Redis(port=ngx.port, socket_timeout=5)
    for key, seq in acked.items():
        assert int(r.get(key)) >= seq
