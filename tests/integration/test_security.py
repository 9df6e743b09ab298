# What respgate does about clients that have not shown they may use it:
# protected mode (no client password: only 127.0.0.1, ::1 and unix-socket
# clients, as Redis judges them), failed AUTHs counted, logged at most once
# a second per address and, past client.auth_max_failures in a minute,
# answered one per client.auth_delay; and a connection that never
# authenticates closed at client.auth_timeout.

import re
import signal
import socket
import time

import pytest

from conftest import wait_until
from harness.resp import RawConnection, frame
from harness.respgate import free_port

DENIED = b"-DENIED respgate is running in protected mode"


class Line(RawConnection):
    """A raw connection whose replies are one line each (the tests here need no more)."""

    def __init__(self, port, source=None, family=socket.AF_INET, unix=None, timeout=10):
        if unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix)
        else:
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            if source:
                self.sock.bind((source, 0))
            self.sock.connect(("::1" if family == socket.AF_INET6 else "127.0.0.1", port))
        self.f = self.sock.makefile("rb")

    def reply(self):
        return self.f.readline()

    def closed(self):
        """Whether respgate closed the connection (reads to EOF)."""
        try:
            return self.f.read() is not None
        except (ConnectionResetError, socket.timeout):
            return False


def info_field(port, name, password=None):
    c = Line(port)
    if password:
        assert c.call("AUTH", password) == b"+OK\r\n"
    c.sock.sendall(frame("INFO", "respgate"))
    head = c.f.readline()
    body = c.f.read(int(head[1:]) + 2).decode()
    c.close()
    return int(re.search(rf"^{name}:(\d+)", body, re.M).group(1))


@pytest.fixture
def everywhere(make_respgate, tmp_path):
    """A respgate without a client password listening on 127.0.0.1, ::1 and a unix socket."""
    rg = make_respgate(start=False)
    v6, path = free_port(), str(tmp_path / "rg.sock")
    text = open(rg.conf_path).read().replace(f"listen: [127.0.0.1:{rg.port}]",
                                             f'listen: [127.0.0.1:{rg.port}, "[::1]:{v6}", "unix:{path}"]')
    rg.write_config(text)
    rg.v6, rg.unix = v6, path
    return rg.start()


def test_protected_mode_accepts_local_clients_only(everywhere):
    rg = everywhere
    for c in (Line(rg.port), Line(rg.v6, family=socket.AF_INET6), Line(0, unix=rg.unix)):
        assert c.call("PING") == b"+PONG\r\n"
        c.close()
    # 127.0.0.2 is on loopback, but Redis does not count it as local either.
    far = Line(rg.port, source="127.0.0.2")
    far.sock.sendall(frame("PING"))
    assert far.reply().startswith(DENIED)
    assert far.closed()
    assert "refused client addr=127.0.0.2:" in rg.log() and "protected mode" in rg.log()
    assert "protected mode: no client.password is set" not in rg.log()  # every listener is local
    assert info_field(rg.port, "rejected_protected_mode") == 1


def test_protected_mode_judges_the_address_behind_a_proxy(make_respgate):
    """Through a proxy-protocol listener the client's own address counts, not
    the proxy's: an application host is refused, the proxy's health check
    (PROXY LOCAL) and a local client are not."""
    rg = make_respgate(start=False)
    proxied = free_port()
    text = open(rg.conf_path).read().replace(f"listen: [127.0.0.1:{rg.port}]",
                                             f'listen: [127.0.0.1:{rg.port}, "127.0.0.1:{proxied} proxy-protocol"]')
    rg.write_config(text)
    rg.start()
    c = Line(proxied)
    c.sock.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 54321 6380\r\n" + frame("PING"))
    assert c.reply().startswith(DENIED)
    assert c.closed()
    c = Line(proxied)
    c.sock.sendall(b"PROXY TCP4 127.0.0.1 127.0.0.1 54321 6380\r\n" + frame("PING"))
    assert c.reply() == b"+PONG\r\n"
    c.close()
    c = Line(proxied)
    c.sock.sendall(b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00" + frame("PING"))
    assert c.reply() == b"+PONG\r\n"
    c.close()


def test_protected_mode_off_or_a_password(make_respgate):
    """protected_mode: no lets anyone in; with a client password, a far
    client gets NOAUTH (it may authenticate), not DENIED. Both by reload;
    the log says when a listener others can reach is protected."""
    rg = make_respgate(start=False)
    base = open(rg.conf_path).read().replace(f"listen: [127.0.0.1:{rg.port}]", f"listen: [0.0.0.0:{rg.port}]")
    rg.write_config(base)
    rg.start()
    assert "protected mode: no client.password is set, so 0.0.0.0:%d accepts" % rg.port in rg.log()
    far = Line(rg.port, source="127.0.0.2")
    assert far.call("PING").startswith(DENIED)
    rg.write_config(base + "protected_mode: no\n")
    rg.signal(signal.SIGHUP)
    assert wait_until(lambda: rg.log().count("configuration reloaded") == 1, 10)
    far = Line(rg.port, source="127.0.0.2")
    assert far.call("PING") == b"+PONG\r\n"
    far.close()
    rg.write_config(base + 'client:\n  password: "s3cret"\n')
    rg.signal(signal.SIGHUP)
    assert wait_until(lambda: rg.log().count("configuration reloaded") == 2, 10)
    far = Line(rg.port, source="127.0.0.2")
    assert far.call("PING") == b"-NOAUTH Authentication required.\r\n"
    assert far.call("AUTH", "s3cret") == b"+OK\r\n"
    assert far.call("PING") == b"+PONG\r\n"
    far.close()


def test_failed_auth_is_counted_logged_and_slowed(make_respgate):
    rg = make_respgate(client_password="right", start=False)
    text = open(rg.conf_path).read().replace('  password: "right"\n',
                                             '  password: "right"\n  auth_max_failures: 5\n  auth_delay: 300ms\n')
    rg.write_config(text)
    rg.start()
    far = Line(rg.port, source="127.0.0.2")
    # Five failures, pipelined: at once, and one log line for them all.
    far.sock.sendall(b"".join(frame("AUTH", f"guess{i}") for i in range(5)))
    for _ in range(5):
        assert far.reply() == b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    assert wait_until(lambda: "addr=127.0.0.2:" in rg.log(), 5)
    lines = [ln for ln in rg.log().splitlines() if "AUTH failed" in ln]
    assert len(lines) == 1, lines
    assert "1 failures from 127.0.0.2 in the last minute" in lines[0]
    # Past five, each AUTH from the address waits its turn, 300 ms apart,
    # pipelined or not, and nothing else on the connection runs meanwhile.
    t0 = time.monotonic()
    far.sock.sendall(frame("AUTH", "guess5") + frame("AUTH", "guess6") + frame("PING"))
    assert far.reply().startswith(b"-WRONGPASS")
    assert far.reply().startswith(b"-WRONGPASS")
    assert far.reply() == b"-NOAUTH Authentication required.\r\n"
    assert time.monotonic() - t0 >= 0.55  # two turns (a lower bound: a slow machine only adds)
    # The right password too waits its turn, then works.
    t0 = time.monotonic()
    assert far.call("AUTH", "right") == b"+OK\r\n"
    assert time.monotonic() - t0 >= 0.25
    assert far.call("PING") == b"+PONG\r\n"
    # Another address is not slowed, and the counts are in INFO.
    near = Line(rg.port)
    assert near.call("AUTH", "nope").startswith(b"-WRONGPASS")
    assert near.call("HELLO", "3", "AUTH", "default", "nope").startswith(b"-WRONGPASS")
    assert near.call("AUTH", "right") == b"+OK\r\n"
    near.close()
    assert info_field(rg.port, "auth_failures", "right") == 9
    assert info_field(rg.port, "auth_delayed", "right") == 3
    far.close()


def test_a_client_that_never_authenticates_is_closed(make_respgate):
    rg = make_respgate(client_password="right", start=False)
    text = open(rg.conf_path).read().replace('  password: "right"\n', '  password: "right"\n  auth_timeout: 1s\n')
    rg.write_config(text + "log: {level: info}\n")
    rg.start()
    silent, noisy, good = Line(rg.port), Line(rg.port), Line(rg.port)
    assert good.call("AUTH", "right") == b"+OK\r\n"
    t0 = time.monotonic()
    for _ in range(3):  # NOAUTH replies do not keep a connection open
        assert noisy.call("GET", "k") == b"-NOAUTH Authentication required.\r\n"
        time.sleep(0.2)
    assert silent.closed() and noisy.closed()
    assert time.monotonic() - t0 >= 0.5
    assert good.call("PING") == b"+PONG\r\n"  # authenticated: stays
    good.close()
    assert rg.log().count("not authenticated within client.auth_timeout (1000 ms)") == 2
    assert info_field(rg.port, "auth_timeouts", "right") == 2


# ACL users: the same users on respgate (users:) and on a single Redis (ACL
# SETUSER), and the same commands sent to both, byte for byte.
USERS = {
    "reader": "on >rpw allkeys allchannels +@read +ping -@dangerous",
    "app": "on >apw ~app:* ~{app}* allchannels +@all -@dangerous",
    "news": "on >npw resetkeys resetchannels &news:* &__keyspace@0__:news:* +@pubsub +ping",
}
AS_READER = [
    ("GET", "app:1"), ("SET", "app:1", "v"), ("DEL", "app:1"), ("MGET", "app:1", "other"), ("KEYS", "*"),
    ("CONFIG", "GET", "maxmemory"), ("PING",), ("HGETALL", "app:h"), ("FLUSHALL",), ("INCR", "n"),
]
AS_APP = [
    ("SET", "app:1", "v"), ("GET", "app:1"), ("SET", "other", "v"), ("GET", "other"),
    ("MGET", "app:1", "app:2"), ("MGET", "app:1", "other", "app:2"), ("MSET", "app:3", "x", "other", "y"),
    ("DEL", "app:1", "other"), ("EXISTS", "other"),
    ("EVAL", "return 1", "1", "other"), ("EVAL", "return redis.call('get', KEYS[1])", "1", "app:3"),
    ("MULTI",), ("SET", "{app}a", "1"), ("SET", "other", "1"), ("EXEC",),
    ("MULTI",), ("SET", "{app}a", "1"), ("INCR", "{app}a"), ("EXEC",),
    ("FLUSHALL",), ("KEYS", "*"), ("CONFIG", "SET", "maxmemory", "0"), ("PING",), ("DEL", "app:3", "{app}a"),
]
AS_NEWS = [
    ("PUBLISH", "news:1", "hi"), ("PUBLISH", "other", "hi"), ("GET", "news:1"),
    ("SUBSCRIBE", "news:a", "other"), ("PSUBSCRIBE", "news:*x"), ("PSUBSCRIBE", "__keyspace@0__:news:*"),
    ("SUBSCRIBE", "news:b"), ("PING",), ("UNSUBSCRIBE",), ("PUNSUBSCRIBE",),
]


@pytest.fixture(scope="module")
def acl_single(tmp_path_factory):
    from harness.single import Single
    with Single(str(tmp_path_factory.mktemp("acl_single")), password="dpw") as s:
        r = s.client()
        for name, rules in USERS.items():
            assert r.execute_command("ACL", "SETUSER", name, *rules.split())
        yield s


def acl_respgate(make_respgate):
    rg = make_respgate(client_password="dpw", start=False)
    rg.write_config(open(rg.conf_path).read() + "users:\n" +
                    "".join(f'  {name}: "{rules}"\n' for name, rules in USERS.items()))
    return rg.start()


def test_acl_users_answer_as_a_single_redis(make_respgate, acl_single):
    from test_resp3 import Raw
    rg = acl_respgate(make_respgate)
    for user, password, script in [("reader", "rpw", AS_READER), ("app", "apw", AS_APP), ("news", "npw", AS_NEWS)]:
        via, one = Raw(rg.port), Raw(acl_single.port)
        for c in (via, one):
            assert c.call("AUTH", user, password) == b"+OK\r\n"
        for cmd in script:
            got, want = via.call(*cmd), one.call(*cmd)
            assert got == want, f"as {user}, {cmd}: through respgate {got!r}, on a single Redis {want!r}"
        via.close()
        one.close()
    # The refusals above did refuse: the reader wrote nothing, the app no key outside its patterns.
    admin = Raw(rg.port)
    assert admin.call("AUTH", "dpw") == b"+OK\r\n"
    assert admin.call("EXISTS", "other", "n") == b":0\r\n"
    admin.close()


def test_acl_logins_whoami_list_and_reload(make_respgate):
    from test_resp3 import Raw
    rg = acl_respgate(make_respgate)
    c = Raw(rg.port)
    assert c.call("AUTH", "app", "wrong") == b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    assert c.call("AUTH", "nobody", "apw") == b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    assert c.call("HELLO", "3", "AUTH", "app", "apw").startswith(b"%7\r\n")
    assert c.call("ACL", "WHOAMI") == b"$3\r\napp\r\n"
    # ACL LIST is @dangerous: the app may not, as in Redis; the default user may.
    assert c.call("ACL", "LIST") == b"-NOPERM this user has no permissions to run the 'acl|list' command\r\n" \
        or c.call("ACL", "LIST").startswith(b"-NOPERM")
    d = Raw(rg.port)
    assert d.call("AUTH", "default", "dpw") == b"+OK\r\n"
    listing = d.call("ACL", "LIST")
    assert b"user app on ~app:* ~{app}* &* +@all -@dangerous" in listing
    assert b"user default on ~* &* +@all" in listing
    assert b"apw" not in listing and b"rpw" not in listing and b"dpw" not in listing
    assert b"user=app " in c.call("CLIENT", "INFO")
    # The default user still works with client.password.
    assert d.call("SET", "anything", "1") == b"+OK\r\n"
    assert d.call("DEL", "anything") == b":1\r\n"
    # A reload changes what a logged-in user may do at once; a user removed
    # is refused and its connection closed.
    text = open(rg.conf_path).read()
    rg.write_config(text.replace("+@all -@dangerous", "+@read"))
    rg.signal(signal.SIGHUP)
    assert wait_until(lambda: rg.log().count("configuration reloaded") == 1, 10)
    assert c.call("SET", "app:x", "1").startswith(b"-NOPERM this user has no permissions to run the 'set'")
    rg.write_config(text.replace('  app: "on >apw ~app:* ~{app}* allchannels +@all -@dangerous"\n', ""))
    rg.signal(signal.SIGHUP)
    assert wait_until(lambda: rg.log().count("configuration reloaded") == 2, 10)
    assert c.call("GET", "app:x") == b"-NOPERM respgate: user 'app' is no longer in the configuration\r\n"
    with pytest.raises(AssertionError):
        c.call("PING")  # closed
    assert d.call("PING") == b"+PONG\r\n"


def test_acl_config_errors(tmp_path):
    import subprocess
    from harness.respgate import BINARY
    for rules, why in [("on >x +nosuch", "Unknown command or category name in ACL"),
                       ("on %R~x", "not supported"),
                       ("on >hunter2 bogus", "modifier 'bogus': Syntax error")]:
        path = tmp_path / "bad.yml"
        path.write_text(f'cluster: {{seeds: [127.0.0.1:7000]}}\nusers:\n  app: "{rules}"\n')
        out = subprocess.run([BINARY, "-t", "-c", str(path)], capture_output=True, text=True, timeout=10)
        assert out.returncode == 78, out
        assert why in out.stderr and "users.app" in out.stderr, out.stderr
        assert "hunter2" not in out.stderr
    path.write_text('cluster: {seeds: [127.0.0.1:7000]}\nclient: {password: x}\nusers:\n  default: "on >y +@all"\n')
    out = subprocess.run([BINARY, "-t", "-c", str(path)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 78 and "not in both" in out.stderr, out.stderr
