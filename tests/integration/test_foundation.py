# The foundation, end to end: a real respgate process (started in front of a
# real 3+3 Redis Cluster with passwords) driven by real clients (redis-py,
# redis-cli, raw sockets): local commands, client AUTH, protocol errors,
# signals (drain, reload, log reopen), systemd readiness, daemon mode, limits.

import os
import signal
import socket
import subprocess
import time

import pytest
import redis

from conftest import CLIENT_PASSWORD, CLUSTER_PASSWORD
from harness.cluster import REDIS_VERSION
from harness.respgate import BINARY, Respgate, free_port

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def raw(port, data, timeout=5.0, shut_wr=False):
    """Sends DATA, reads until the server closes or TIMEOUT passes. Returns (bytes, closed).
    A reset counts as a failure: respgate must close cleanly, after every reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if shut_wr:
            s.shutdown(socket.SHUT_WR)
        got, deadline = b"", time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return got, False
            if not chunk:
                return got, True
            got += chunk
        return got, False


def read_exactly(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, f"closed after {len(buf)} of {n} bytes"
        buf += chunk
    return buf


def cli(port, *args, password=None):
    cmd = ["redis-cli", "-p", str(port)]
    if password:
        cmd += ["-a", password, "--no-auth-warning"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30)


def wait_for(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# ---- local commands ----

def test_ping_echo_quit_with_redis_py(respgate):
    r = respgate.client()
    assert r.ping() is True
    assert r.echo(b"bin\x00ary\r\n") == b"bin\x00ary\r\n"
    out, _ = raw(respgate.port, b"*2\r\n$4\r\nPING\r\n$5\r\nhello\r\n", timeout=0.5)
    assert out == b"$5\r\nhello\r\n"
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'echo' command"):
        r.execute_command("ECHO")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'ping' command"):
        r.execute_command("PING", "a", "b")


def test_redis_cli(respgate):
    assert cli(respgate.port, "ping").stdout == "PONG\n"
    assert cli(respgate.port, "echo", "hi there").stdout == "hi there\n"


def test_refused_and_unknown_commands_get_clear_errors(respgate):
    out, closed = raw(respgate.port, b"*1\r\n$7\r\nMONITOR\r\n*3\r\n$6\r\nNOSUCH\r\n$1\r\na\r\n$1\r\nb\r\n"
                                     b"*2\r\n$6\r\nCONFIG\r\n$3\r\nFOO\r\n*1\r\n$3\r\nGET\r\n*1\r\n$4\r\nPING\r\n",
                      timeout=1)
    # In the words of the cluster's version (6.2 quotes with backticks)
    unknown = (b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n"
               b"-ERR unknown subcommand 'FOO'. Try CONFIG HELP.\r\n" if REDIS_VERSION >= (7, 0) else
               b"-ERR unknown command `NOSUCH`, with args beginning with: `a`, `b`, \r\n"
               b"-ERR Unknown subcommand or wrong number of arguments for 'FOO'. Try CONFIG HELP.\r\n")
    assert out == (b"-ERR respgate does not forward 'monitor': it streams one node's commands, and the client's "
                   b"server is the whole cluster\r\n" + unknown +
                   b"-ERR wrong number of arguments for 'get' command\r\n"
                   b"+PONG\r\n")
    assert not closed


def test_quit_replies_then_closes(respgate):
    out, closed = raw(respgate.port, b"*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n")
    assert out == b"+OK\r\n"
    assert closed


def test_inline_commands(respgate):
    out, _ = raw(respgate.port, b"PING\r\necho \"a b\"\nPING 'x y'\r\n\r\n", timeout=1)
    assert out == b"+PONG\r\n$3\r\na b\r\n$3\r\nx y\r\n"


def test_pipeline_of_ten_thousand_in_order(respgate):
    n = 10000
    req = b"".join(b"*2\r\n$4\r\nECHO\r\n$%d\r\n%d\r\n" % (len(str(i)), i) for i in range(n))
    want = b"".join(b"$%d\r\n%d\r\n" % (len(str(i)), i) for i in range(n))
    with socket.create_connection(("127.0.0.1", respgate.port), timeout=10) as s:
        s.sendall(req)
        assert read_exactly(s, len(want)) == want


def test_half_closed_client_gets_whole_commands_only(respgate):
    out, closed = raw(respgate.port, b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$5\r\nab", shut_wr=True)
    assert out == b"+PONG\r\n"
    assert closed


# ---- client authentication ----

def test_auth_required(make_respgate):
    rg = make_respgate(client_password=CLIENT_PASSWORD)
    out, closed = raw(rg.port, b"*1\r\n$4\r\nPING\r\n"
                               b"*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n"
                               b"*3\r\n$4\r\nAUTH\r\n$7\r\nsomeone\r\n$9\r\nclient-pw\r\n"
                               b"*2\r\n$4\r\nAUTH\r\n$9\r\nclient-pw\r\n"
                               b"*1\r\n$4\r\nPING\r\n", timeout=1)
    assert out == (b"-NOAUTH Authentication required.\r\n"
                   b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
                   b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
                   b"+OK\r\n+PONG\r\n")
    assert not closed
    # Both AUTH forms, as Jedis and Lettuce send them.
    assert rg.client(password=CLIENT_PASSWORD).ping()
    assert rg.client(username="default", password=CLIENT_PASSWORD).ping()
    assert cli(rg.port, "ping", password=CLIENT_PASSWORD).stdout == "PONG\n"
    with pytest.raises(redis.ResponseError, match="WRONGPASS"):  # redis-py 4.3's class for it
        rg.client(password="nope").ping()


def test_auth_without_client_password_answers_like_redis(respgate):
    out, _ = raw(respgate.port, b"*2\r\n$4\r\nAUTH\r\n$1\r\nx\r\n"
                                b"*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$1\r\nx\r\n"
                                b"*3\r\n$4\r\nAUTH\r\n$5\r\nother\r\n$1\r\nx\r\n", timeout=1)
    assert out == (b"-ERR AUTH <password> called without any password configured for the default user. "
                   b"Are you sure your configuration is correct?\r\n"
                   b"+OK\r\n"
                   b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")


def test_unauthenticated_limits_and_no_password_in_logs(make_respgate):
    rg = make_respgate(client_password=CLIENT_PASSWORD, extra="log: {level: debug}\n")
    out, closed = raw(rg.port, b"*11\r\n")
    assert out == b"-ERR Protocol error: unauthenticated multibulk length\r\n" and closed
    out, closed = raw(rg.port, b"*2\r\n$4\r\nAUTH\r\n$16385\r\n")
    assert out == b"-ERR Protocol error: unauthenticated bulk length\r\n" and closed
    raw(rg.port, b"*2\r\n$4\r\nAUTH\r\n$13\r\nguess-attempt\r\n", timeout=0.5)
    rg.stop()
    log = rg.log()
    assert "AUTH failed" in log
    for secret in (CLIENT_PASSWORD, CLUSTER_PASSWORD, "guess-attempt"):
        assert secret not in log


# ---- hostile input ----

@pytest.mark.parametrize("data, error", [
    (b"*abc\r\n", b"invalid multibulk length"),
    (b"*-1x\r\n", b"invalid multibulk length"),
    (b"*1\r\n$-5\r\n", b"invalid bulk length"),
    (b"*1\r\n$1\x00\r\n", b"invalid bulk length"),
    (b"*1\r\n$99999999999999999999\r\n", b"invalid bulk length"),
    (b"*1\r\n$536870913\r\n", b"invalid bulk length"),
    (b"*2\r\n*1\r\n$1\r\na\r\n", b"expected '$', got '*'"),
    (b"*1\r\n$3\r\nfooXY", b"expected CRLF after bulk data"),
    (b"ECHO \"unbalanced\r\n", b"unbalanced quotes in request"),
    (b"*" + b"1" * 70000, b"too big mbulk count string"),
    (b"x" * 70000, b"too big inline request"),
], ids=lambda v: v[:24].decode("latin-1") if isinstance(v, bytes) else None)
def test_protocol_errors_close_the_connection(respgate, data, error):
    out, closed = raw(respgate.port, b"*1\r\n$4\r\nPING\r\n" + data)
    assert out == b"+PONG\r\n-ERR Protocol error: " + error + b"\r\n"
    assert closed
    assert respgate.client().ping()  # and respgate is unharmed


def test_max_clients(make_respgate):
    rg = make_respgate(extra="client: {max_clients: 2}\n")
    a = rg.client()
    # The harness's readiness probe may not be closed on respgate's side yet.
    wait_for(lambda: a.info("clients")["connected_clients"] == 1, "the readiness probe to be gone")
    b = rg.client()
    assert a.ping() and b.ping()
    out, closed = raw(rg.port, b"*1\r\n$4\r\nPING\r\n")
    assert out == b"-ERR max number of clients reached\r\n" and closed
    a.connection_pool.disconnect()  # (Redis.close() keeps the pool's sockets in redis-py 4.3)
    wait_for(lambda: raw(rg.port, b"*1\r\n$4\r\nPING\r\n", timeout=1)[0] == b"+PONG\r\n", "a free slot")


def keepalive_timers(pid, port=None):
    """The keepalive timers (seconds left) of respgate PID's TCP sockets, from
    ss: those whose local port is PORT, or its connections to other ports."""
    out = subprocess.run(["ss", "-tnopH", "state", "established"], capture_output=True, text=True,
                         timeout=10).stdout
    timers = {}
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        fields = line.split()
        local, peer = fields[2], fields[3]
        mine = local.rsplit(":", 1)[1] == str(port)
        if (port is not None) == mine:
            timer = next((f for f in fields if f.startswith("timer:(keepalive")), None)
            timers[(local, peer)] = timer
    return timers


def test_tcp_keepalive_on_client_and_node_connections(make_respgate):
    rg = make_respgate(extra="timeouts: {tcp_keepalive: 60s}\n")
    r = rg.client()
    assert r.set("ka", 1)
    clients = keepalive_timers(rg.pid, rg.port)
    nodes = keepalive_timers(rg.pid)
    assert clients and all(clients.values()), clients
    assert nodes and all(nodes.values()), nodes
    assert all(int(t.split(",")[1].rstrip("sec").split("min")[0] or 0) <= 60 for t in clients.values()), clients
    off = make_respgate(extra="timeouts: {tcp_keepalive: 0}\n")
    c = off.client()
    assert c.ping()
    timers = keepalive_timers(off.pid, off.port)
    assert timers and not any(timers.values()), timers


def test_idle_timeout(make_respgate):
    rg = make_respgate(extra="client: {idle_timeout: 300ms}\n")
    with socket.create_connection(("127.0.0.1", rg.port), timeout=5) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert read_exactly(s, 7) == b"+PONG\r\n"
        assert s.recv(1) == b""  # closed by respgate once idle


def test_connect_close_flood_leaves_no_descriptor(respgate):
    fd_dir = f"/proc/{respgate.pid}/fd"
    before = len(os.listdir(fd_dir))
    for i in range(2000):
        with socket.create_connection(("127.0.0.1", respgate.port), timeout=5) as s:
            s.sendall(b"*2\r\n$4\r\nECHO\r\n$10\r\nhalf" if i % 2 else b"PIN")
    assert respgate.client().ping()
    wait_for(lambda: len(os.listdir(fd_dir)) <= before + 1, "descriptors to be released")


# ---- command line and config ----

def test_check_sample_config():
    out = subprocess.run([BINARY, "-t", "-c", os.path.join(TOP, "etc", "respgate.yml")],
                         capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (0, "configuration ok\n"), out.stderr


def test_bad_config_exit_78(tmp_path):
    conf = tmp_path / "bad.yml"
    conf.write_text("listen: 127.0.0.1:99999\ncluster: {seeds: [127.0.0.1:1]}\nbogus: 1\n")
    for args in (["-t"], []):
        out = subprocess.run([BINARY, "-c", str(conf)] + args, capture_output=True, text=True, timeout=10)
        assert out.returncode == 78
        assert f"{conf}:1:9: listen: expected an IP address and port like" in out.stderr
        assert f"{conf}:3:1: bogus: unknown key" in out.stderr


def test_usage_version_help():
    out = subprocess.run([BINARY, "--nope"], capture_output=True, text=True)
    assert out.returncode == 64 and "unknown option --nope" in out.stderr
    out = subprocess.run([BINARY, "-V"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("respgate ")
    out = subprocess.run([BINARY, "-h"], capture_output=True, text=True)
    assert out.returncode == 0 and "Usage: respgate" in out.stdout


def test_port_in_use_is_a_startup_error(respgate, tmp_path):
    # By another program, and by a second respgate (whose SO_REUSEPORT
    # sockets must not quietly share the first one's port).
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        other = Respgate(tmp_path / "other", f"listen: [127.0.0.1:{port}]\ncluster: {{seeds: [127.0.0.1:1]}}\n", port)
        other.start(wait=False)
        assert other.wait(10) == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in other.log()

    second = Respgate(tmp_path / "second", open(respgate.conf_path).read(), respgate.port)
    second.start(wait=False)
    assert second.wait(10) == 1
    assert f"cannot listen on 127.0.0.1:{respgate.port}: Address already in use" in second.log()
    assert respgate.client().ping()


# ---- signals ----

def test_sigterm_drains_and_exits_zero(make_respgate):
    rg = make_respgate()
    idle = socket.create_connection(("127.0.0.1", rg.port), timeout=5)
    idle.sendall(b"*1\r\n$4\r\nPING\r\n")
    assert read_exactly(idle, 7) == b"+PONG\r\n"  # accepted, not just in the backlog
    rg.signal(signal.SIGTERM)
    assert rg.wait(10) == 0
    assert idle.recv(1) == b""
    idle.close()
    assert "received SIGTERM" in rg.log() and "stopped" in rg.log()


def test_second_signal_stops_at_once(make_respgate):
    rg = make_respgate(extra="timeouts: {shutdown: 1h}\n")
    # A client that never reads keeps respgate draining: it is owed more
    # replies than the kernel's socket buffers hold.
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", rg.port))
    payload = b"x" * (1 << 20)
    req = b"*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n" % (len(payload), payload)
    s.settimeout(2)
    try:
        for _ in range(16):
            s.sendall(req)
    except socket.timeout:
        pass  # respgate stopped reading: its output is full, as intended
    time.sleep(0.5)
    rg.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert rg.proc.poll() is None, "exited while replies were still owed"
    rg.signal(signal.SIGINT)
    assert rg.wait(10) == 0
    assert "received SIGINT again: stopping now" in rg.log()
    s.close()


def test_sighup_reloads_and_keeps_old_config_on_error(make_respgate):
    rg = make_respgate(client_password="first")
    assert rg.client(password="first").ping()
    text = open(rg.conf_path).read()

    rg.write_config(text.replace('"first"', '"second"').replace("workers: 2", "workers: 3"))
    rg.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in rg.log(), "the reload")
    assert "workers: changed, but takes effect only after a restart" in rg.log()
    assert rg.client(password="second").ping()
    with pytest.raises(redis.ResponseError, match="WRONGPASS"):
        rg.client(password="first").ping()

    rg.write_config(text.replace('"first"', '"third"') + "nonsense: 1\n")
    rg.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in rg.log(), "the failed reload")
    assert "nonsense: unknown key" in rg.log()
    assert rg.client(password="second").ping()  # the old config stays in force

    # Removing the password frees even a connection that never authenticated.
    waiting = socket.create_connection(("127.0.0.1", rg.port), timeout=5)
    waiting.sendall(b"*1\r\n$4\r\nPING\r\n")
    assert waiting.recv(64) == b"-NOAUTH Authentication required.\r\n"
    rg.write_config(text.replace('client:\n  password: "first"\n', ""))
    rg.signal(signal.SIGHUP)
    wait_for(lambda: rg.log().count("configuration reloaded") == 2, "the second reload")
    waiting.sendall(b"*1\r\n$4\r\nPING\r\n")
    assert waiting.recv(64) == b"+PONG\r\n"
    waiting.close()
    assert rg.stop() == 0


def test_sigusr1_reopens_log_file(make_respgate, tmp_path):
    logfile = tmp_path / "respgate.log"
    rg = make_respgate(extra=f"log: {{file: {logfile}}}\n")
    assert "ready" in logfile.read_text()
    os.rename(logfile, str(logfile) + ".1")
    rg.signal(signal.SIGUSR1)
    wait_for(lambda: logfile.exists() and "log file reopened" in logfile.read_text(), "a new log file")
    assert rg.stop() == 0
    assert "stopped" in logfile.read_text()
    assert "stopped" not in open(str(logfile) + ".1").read()


# ---- systemd and daemon mode ----

def test_systemd_notify(make_respgate, tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(10)
        rg = make_respgate(env=dict(os.environ, NOTIFY_SOCKET=path), start=False)
        rg.start()
        assert sock.recv(256) == b"READY=1"
        rg.signal(signal.SIGHUP)
        assert sock.recv(256) == b"RELOADING=1"
        assert sock.recv(256) == b"READY=1"
        rg.signal(signal.SIGTERM)
        assert sock.recv(256) == b"STOPPING=1"
        assert rg.wait(10) == 0


def test_daemonize_and_pidfile(make_respgate, tmp_path):
    pidfile = tmp_path / "respgate.pid"
    rg = make_respgate(args=["--daemonize", "--pidfile", str(pidfile)], start=False)
    rg.start(wait=False)
    assert rg.wait(15) == 0  # the parent returns once the daemon is ready
    pid = int(pidfile.read_text())
    try:
        assert pid != rg.pid
        c = redis.Redis(port=rg.port, socket_timeout=5)
        assert c.ping()
        c.close()
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), "the daemon to exit")
    assert not pidfile.exists()


def test_daemon_startup_failure_is_reported_by_the_parent(tmp_path):
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        conf = tmp_path / "r.yml"
        conf.write_text(f"listen: [127.0.0.1:{port}]\ncluster: {{seeds: [127.0.0.1:1]}}\n")
        out = subprocess.run([BINARY, "-c", str(conf), "--daemonize"], capture_output=True, text=True, timeout=15)
    assert out.returncode == 1
    assert "Address already in use" in out.stderr


def test_unix_socket_listener(tmp_path):
    port = free_port()
    path = str(tmp_path / "respgate.sock")
    rg = Respgate(tmp_path / "ux", f"listen: [127.0.0.1:{port}, unix:{path}]\ncluster: {{seeds: [127.0.0.1:1]}}\n",
                  port)
    with rg:
        c = redis.Redis(unix_socket_path=path, socket_timeout=5)
        assert c.ping() is True
        assert c.echo(b"over unix") == b"over unix"
        assert cli(port, "ping").stdout == "PONG\n"
        c.connection_pool.disconnect()
    assert rg.proc.returncode == 0
    assert not os.path.exists(path)  # removed at shutdown
