# Pub/Sub through respgate against the real 3+3 cluster: subscribed mode
# answers as a single Redis does, every message arrives once, keyspace
# notifications come from every master, shard channels follow their slot,
# and a subscriber that does not read is closed at Redis's pubsub limits
# while respgate's memory stays bounded.

import os
import socket
import time

import pytest
import redis

from conftest import needs_redis7
from harness.cluster import keyslot
from harness.resp import frame

from test_commands import KEYS




def read_reply(f):
    """One whole RESP2 reply from file F, as Python values (errors as ("error", text))."""
    line = f.readline()
    if not line:
        raise EOFError("connection closed")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest
    if t == b"-":
        return ("error", rest)
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [read_reply(f) for _ in range(n)]
    raise ValueError(f"not RESP: {line!r}")


class Raw:
    """A plain socket that speaks RESP, for exact replies and pipelines."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def send(self, *commands):
        self.sock.sendall(b"".join(frame(*c) for c in commands))

    def read(self, n=1):
        return [read_reply(self.file) for _ in range(n)]

    def close(self):
        self.sock.close()


def test_subscribed_mode_answers_as_a_single_redis(respgate, single):
    script = [("SUBSCRIBE", "ps:a", "ps:b", "ps:a"), ("GET", "x"), ("PING",), ("PING", "hi"), ("ECHO", "x"),
              ("PSUBSCRIBE", "ps:p*"), ("UNSUBSCRIBE", "ps:a", "ps:zz"), ("PUNSUBSCRIBE",), ("UNSUBSCRIBE",),
              ("PING",), ("GET", "ps:none"), ("UNSUBSCRIBE",), ("PUNSUBSCRIBE", "nothing")]
    replies = 3 + 1 + 1 + 1 + 1 + 1 + 2 + 1 + 1 + 1 + 1 + 1 + 1
    out = []
    for port in (single.port, respgate.port):
        c = Raw(port)
        c.send(*script)
        out.append(c.read(replies))
        c.close()
    assert out[0][0] == [b"subscribe", b"ps:a", 1]  # the comparison saw subscribed mode
    assert out[1] == out[0]


def test_messages_arrive_once_and_in_order(respgate):
    sub = respgate.client().pubsub()
    sub.subscribe("ps:news")
    sub.psubscribe("ps:n*")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    assert sub.get_message(timeout=5)["type"] == "psubscribe"
    pub = respgate.client()
    for i in range(100):
        # Channel and pattern both match: one message each, as on Redis.
        assert pub.publish("ps:news", f"m{i}") == 2
    got = []
    while len(got) < 200:
        m = sub.get_message(timeout=5)
        assert m is not None, f"only {len(got)} messages"
        got.append((m["type"], m["data"]))
    assert [d for t, d in got if t == "message"] == [f"m{i}".encode() for i in range(100)]
    assert [d for t, d in got if t == "pmessage"] == [f"m{i}".encode() for i in range(100)]
    assert sub.get_message(timeout=0.5) is None  # nothing twice
    numsub = dict(pub.pubsub_numsub("ps:news"))
    assert numsub[b"ps:news"] == 1
    assert b"ps:news" in pub.pubsub_channels("ps:*")
    assert pub.pubsub_numpat() >= 1
    sub.close()


def test_keyspace_notifications_come_from_every_master(cluster, respgate):
    r = respgate.client()
    assert r.config_set("notify-keyspace-events", "KEA") is True
    try:
        for m in cluster.masters():
            assert cluster.client(m).config_get("notify-keyspace-events")["notify-keyspace-events"] != ""
        r.delete(*KEYS)
        sub = respgate.client().pubsub()
        sub.psubscribe("__keyspace@0__:key:*")
        assert sub.get_message(timeout=5)["type"] == "psubscribe"
        # Every connection of the subscriber is ready once a PING went round.
        sub.ping()
        while (m := sub.get_message(timeout=5)) is not None and m["type"] != "pong":
            pass
        for k in KEYS:
            r.set(k, "1", px=200)
        events = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(e == b"expired" for _, e in events) < len(KEYS):
            m = sub.get_message(timeout=1)
            if m and m["type"] == "pmessage":
                events.append((m["channel"].decode().split(":", 1)[1], m["data"]))
        sets = sorted(k for k, e in events if e == b"set")
        expired = sorted(k for k, e in events if e == b"expired")
        assert sets == sorted(KEYS)  # once each, from all three masters
        assert expired == sorted(KEYS)  # expirations too: what Spring Session listens to
        sub.close()
    finally:
        r.config_set("notify-keyspace-events", "")


def test_a_confirmed_keyspace_subscription_misses_no_event(cluster, respgate):
    # As with one Redis: once PSUBSCRIBE is confirmed, a key written on any
    # master is notified, with no PING or pause in between.
    r = respgate.client()
    assert r.config_set("notify-keyspace-events", "KA") is True
    try:
        # One key per master, by slot.
        owners, keys = set(), []
        for i in range(1000):
            k = f"ks:{i}"
            owner = cluster.node_for_slot(keyslot(k)).port
            if owner not in owners:
                owners.add(owner)
                keys.append(k)
            if len(keys) == len(cluster.masters()):
                break
        assert len(keys) == 3
        for round in range(10):
            sub = respgate.client().pubsub()
            sub.psubscribe("__keyspace@0__:ks:*")
            assert sub.get_message(timeout=5)["type"] == "psubscribe"
            for k in keys:
                r.set(k, round)
            got = set()
            deadline = time.monotonic() + 5
            while len(got) < len(keys) and time.monotonic() < deadline:
                m = sub.get_message(timeout=1)
                if m and m["type"] == "pmessage" and m["data"] == b"set":
                    got.add(m["channel"].decode().split(":", 1)[1])
            assert got == set(keys), f"round {round}"
            sub.close()
    finally:
        r.config_set("notify-keyspace-events", "")


@needs_redis7("SSUBSCRIBE")
def test_shard_channels_follow_their_slot(cluster, respgate):
    sub = Raw(respgate.port)
    sub.send(("SSUBSCRIBE", "{sh}a", "{sh}b"))
    assert sub.read(2) == [[b"ssubscribe", b"{sh}a", 1], [b"ssubscribe", b"{sh}b", 2]]
    pub = respgate.client()
    assert pub.execute_command("SPUBLISH", "{sh}a", "hello") == 1
    assert sub.read() == [[b"smessage", b"{sh}a", b"hello"]]
    other = next(c for c in ("a", "b", "c", "d") if cluster.node_for_slot(keyslot(c)).port !=
                 cluster.node_for_slot(keyslot("{sh}a")).port)
    sub.send(("SSUBSCRIBE", other))
    [(kind, text)] = sub.read()
    assert kind == "error" and b"must live on one node" in text
    sub.send(("SSUBSCRIBE", "{sh}a", other))
    assert sub.read() == [("error", b"CROSSSLOT Keys in request don't hash to the same slot")]
    sub.send(("PING",))
    assert sub.read() == [[b"pong", b""]]  # subscribed mode, on the shard connection
    sub.send(("SUNSUBSCRIBE",))
    frames = sub.read(2)
    assert [f[0] for f in frames] == [b"sunsubscribe"] * 2
    assert {f[1] for f in frames} == {b"{sh}a", b"{sh}b"} and [f[2] for f in frames] == [1, 0]
    sub.send(("GET", "x"))
    assert sub.read() == [None]
    # Nothing subscribed any more: shard channels on another node are fine now.
    sub.send(("SSUBSCRIBE", other))
    assert sub.read() == [[b"ssubscribe", other.encode(), 1]]
    assert pub.execute_command("SPUBLISH", other, "there") == 1
    assert sub.read() == [[b"smessage", other.encode(), b"there"]]
    sub.close()


def test_a_quiet_subscriber_is_not_idle(make_respgate):
    rg = make_respgate(extra="client:\n  idle_timeout: 300ms\n")
    sub = Raw(rg.port)
    sub.send(("SUBSCRIBE", "ps:quiet"))
    assert sub.read() == [[b"subscribe", b"ps:quiet", 1]]
    time.sleep(1.0)  # over three idle timeouts
    assert rg.client().publish("ps:quiet", "still here") == 1
    assert sub.read() == [[b"message", b"ps:quiet", b"still here"]]
    sub.close()
    idle = Raw(rg.port)
    time.sleep(1.0)
    idle.send(("PING",))
    with pytest.raises((EOFError, ConnectionError)):
        idle.read()  # an idle client that is not subscribed is closed, as before
    idle.close()


def test_reset_ends_the_subscriptions(respgate):
    c = Raw(respgate.port)
    c.send(("SUBSCRIBE", "ps:r"), ("RESET",), ("GET", "ps:r-none"))
    assert c.read(3) == [[b"subscribe", b"ps:r", 1], b"RESET", None]
    assert respgate.client().publish("ps:r", "x") == 0
    c.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_a_subscriber_that_does_not_read_is_closed_at_the_pubsub_limit(make_respgate):
    rg = make_respgate(extra="client:\n  pubsub_output_limit: 4mb\n  pubsub_output_soft_limit: 1mb\n")
    slow = socket.create_connection(("127.0.0.1", rg.port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(frame("SUBSCRIBE", "ps:flood"))
    time.sleep(0.3)
    before = rss_kib(rg.pid)
    pub = rg.client()
    payload = os.urandom(64 * 1024)
    receivers = []
    for _ in range(1000):  # 64 MB, far past the limit
        receivers.append(pub.publish("ps:flood", payload))
        if receivers[-1] == 0:
            break
    assert receivers[0] == 1 and receivers[-1] == 0  # the subscriber went away
    assert "a subscriber that reads too slowly" in rg.log()
    assert "client.pubsub_output_limit" in rg.log()
    assert rss_kib(rg.pid) - before < 128 * 1024
    # Others were served all along, and still are.
    assert pub.ping() is True
    slow.close()
