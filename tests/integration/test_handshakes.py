# What legacy clients send on connect, answered as a Redis server would:
# the exact byte sequences of Lettuce, Jedis and node-redis handshakes (with
# and without client authentication), redis-py itself, and the session
# commands they rely on (CLIENT, SELECT, RESET, INFO, HELLO).


import pytest
import redis

from conftest import CLIENT_PASSWORD
from harness.cluster import REDIS_VERSION
from harness.resp import RawConnection, frame


class Conn(RawConnection):
    """A raw connection that reads whole replies (nested arrays included; a
    RESP3 map as the flat list of its keys and values, as in RESP2)."""

    def reply(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b"-", b":"):
            return (t + rest).decode()
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2].decode()
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        if t == b"%":
            return [self.reply() for _ in range(2 * int(rest))]
        raise AssertionError(f"unexpected reply line {line!r}")



@pytest.fixture
def authed(make_respgate):
    return make_respgate(client_password=CLIENT_PASSWORD)


def hello_fields(reply):
    return dict(zip(reply[0::2], reply[1::2]))


@pytest.mark.parametrize("with_auth", [False, True])
def test_lettuce(make_respgate, with_auth):
    """Lettuce 6: HELLO 3 with AUTH and SETNAME first, then commands in RESP3."""
    rg = make_respgate(client_password=CLIENT_PASSWORD if with_auth else None)
    c = Conn(rg.port)
    if with_auth:
        assert c.call("PING") == "-NOAUTH Authentication required."
        reply = c.call("HELLO", 3, "AUTH", "default", CLIENT_PASSWORD, "SETNAME", "lettuce#1")
    else:
        reply = c.call("HELLO", 3, "SETNAME", "lettuce#1")
    fields = hello_fields(reply)
    assert fields["proto"] == ":3"
    assert fields["server"] == "redis"
    assert fields["id"] == c.call("CLIENT", "ID")
    assert c.call("PING") == "+PONG"
    assert c.call("SET", "lettuce:k", "v") == "+OK"
    assert c.call("GET", "lettuce:k") == "v"
    assert c.call("CLIENT", "GETNAME") == "lettuce#1"
    assert c.call("DEL", "lettuce:k") == ":1"
    c.close()


@pytest.mark.parametrize("with_auth", [False, True])
def test_jedis(make_respgate, with_auth):
    """Jedis 5: AUTH, CLIENT SETNAME, CLIENT SETINFO LIB-NAME/LIB-VER, then commands."""
    rg = make_respgate(client_password=CLIENT_PASSWORD if with_auth else None)
    c = Conn(rg.port)
    if with_auth:
        assert c.call("AUTH", CLIENT_PASSWORD) == "+OK"
    assert c.call("CLIENT", "SETNAME", "jedis-app") == "+OK"
    assert c.call("CLIENT", "SETINFO", "LIB-NAME", "jedis") == "+OK"
    assert c.call("CLIENT", "SETINFO", "LIB-VER", "5.0.2") == "+OK"
    assert c.call("SELECT", 0) == "+OK"
    assert c.call("SET", "jedis:k", "v") == "+OK"
    assert c.call("DEL", "jedis:k") == ":1"
    c.close()


def test_node_redis_and_hello_2(authed):
    """node-redis 4 speaks RESP2; clients that ask HELLO 2 get Redis's field list."""
    c = Conn(authed.port)
    assert c.call("HELLO", 2).startswith("-NOAUTH HELLO must be called with the client already authenticated")
    fields = hello_fields(c.call("HELLO", 2, "AUTH", "default", CLIENT_PASSWORD, "SETNAME", "node-redis"))
    assert fields["server"] == "redis"
    assert fields["version"] == ".".join(map(str, REDIS_VERSION))  # the nodes'
    assert fields["proto"] == ":2"
    assert fields["mode"] == "standalone"
    assert fields["role"] == "master"
    assert fields["modules"] == []
    assert fields["id"] == c.call("CLIENT", "ID")
    assert c.call("CLIENT", "GETNAME") == "node-redis"
    assert c.call("HELLO", "x") == "-ERR Protocol version is not an integer or out of range"
    assert c.call("HELLO", 2, "BOGUS") == "-ERR Syntax error in HELLO option 'BOGUS'"
    assert c.call("HELLO", 2, "AUTH", "default", "wrong") == \
        "-WRONGPASS invalid username-password pair or user is disabled."
    assert c.call("HELLO", 2, "SETNAME", "has space") == \
        "-ERR Client names cannot contain spaces, newlines or special characters."
    c.close()


def test_redis_py_with_password_and_name(authed):
    r = redis.Redis(port=authed.port, password=CLIENT_PASSWORD, client_name="py-app", socket_timeout=10)
    assert r.client_getname() == "py-app"
    assert r.set("py:k", "v") is True
    assert r.get("py:k") == b"v"
    assert r.client_id() > 0
    info = r.client_info()
    assert info["name"] == "py-app" and info["db"] == 0
    with pytest.raises(redis.ResponseError, match="^SELECT is not allowed in cluster mode$"):
        r.execute_command("SELECT", 1)
    r.delete("py:k")


def test_info_for_health_checks(respgate):
    """Spring Boot reads redis_version; ioredis waits for loading:0."""
    info = respgate.client().info()
    assert info["redis_version"] == ".".join(map(str, REDIS_VERSION))
    assert info["redis_mode"] == "standalone"
    assert info["loading"] == 0
    assert info["respgate_version"]
    server = respgate.client().info("server")
    assert "redis_version" in server and "loading" not in server


def test_client_reply_off_skip_on(respgate):
    c = Conn(respgate.port)
    c.sock.sendall(frame("CLIENT", "REPLY", "OFF") + frame("SET", "reply:k", "1") + frame("PING")
                   + frame("CLIENT", "REPLY", "ON") + frame("GET", "reply:k")
                   + frame("CLIENT", "REPLY", "SKIP") + frame("PING") + frame("ECHO", "last"))
    assert c.reply() == "+OK"  # CLIENT REPLY ON
    assert c.reply() == "1"
    assert c.reply() == "last"
    assert c.call("DEL", "reply:k") == ":1"
    c.close()


def test_reset(authed):
    c = Conn(authed.port)
    assert c.call("AUTH", CLIENT_PASSWORD) == "+OK"
    assert c.call("CLIENT", "SETNAME", "before") == "+OK"
    assert c.call("RESET") == "+RESET"
    assert c.call("PING") == "-NOAUTH Authentication required."
    assert c.call("AUTH", CLIENT_PASSWORD) == "+OK"
    assert c.call("CLIENT", "GETNAME") is None
    c.close()


def test_time_and_command_come_from_a_node(respgate):
    r = respgate.client()
    seconds, micros = r.time()
    assert seconds > 1_700_000_000 and 0 <= micros < 1_000_000
    assert r.command_count() >= 200


def test_dbsize_is_the_sum_over_masters(cluster, respgate):
    r = respgate.client()
    for i in range(30):
        r.set(f"dbsize:{i}", i)
    direct = sum(cluster.client(m).dbsize() for m in cluster.masters())
    assert r.dbsize() == direct >= 30
    for i in range(30):
        r.delete(f"dbsize:{i}")
    assert r.dbsize() == direct - 30


def test_real_node_redis_client(authed):
    """Debian's node-redis 4 (RESP2): connects with a password and a name,
    pipelines 500 SETs and GETs, reads INFO, runs a transaction, subscribes on
    a second connection and hears a message, quits."""
    import json
    import os
    import subprocess
    script = os.path.join(os.path.dirname(__file__), "node_redis_client.js")
    env = dict(os.environ, NODE_PATH="/usr/share/nodejs")
    out = subprocess.run(["node", script, str(authed.port), CLIENT_PASSWORD], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"name": "node-app", "ping": "PONG", "values_ok": True, "del": 500,
                      "info_version": result["info_version"], "errors": [],
                      "multi": ["OK", 2, "2", 1], "message": "hello", "after_unsubscribe": "PONG"}
    assert result["info_version"] == ".".join(map(str, REDIS_VERSION))
