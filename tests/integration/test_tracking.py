# Client-side caching through respgate: CLIENT TRACKING in BCAST mode for a
# RESP3 client, with invalidations from every master as push frames on the
# client's own connection. The failover case is in test_failover.py.

from test_resp3 import Raw, resp3
from test_commands import KEYS


def until_pong(c):
    """Sends PING on C and reads up to its +PONG: the pushes that came before it."""
    c.sock.sendall(b"*1\r\n$4\r\nPING\r\n")
    pushes = []
    while True:
        r = c.reply()
        if r == b"+PONG\r\n":
            return pushes
        assert r.startswith(b">"), r
        pushes.append(r)


def invalidated(pushes):
    keys = []
    for p in pushes:
        assert p.startswith(b">2\r\n$10\r\ninvalidate\r\n"), p
        parts = p.split(b"\r\n")[3:-1]
        assert parts[0].startswith(b"*"), p
        keys += [k.decode() for k in parts[2::2]]
    return keys


SCRIPT = [
    ("CLIENT", "TRACKINGINFO"), ("CLIENT", "GETREDIR"), ("CLIENT", "CACHING", "yes"),
    ("CLIENT", "TRACKING", "maybe"), ("CLIENT", "TRACKING", "ON", "BOGUS"),
    ("CLIENT", "TRACKING", "ON", "PREFIX", "a"), ("CLIENT", "TRACKING", "ON", "BCAST", "OPTIN"),
    ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "a", "PREFIX", "ab"),
    ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:", "PREFIX", "cart:"),
    ("CLIENT", "TRACKINGINFO"), ("CLIENT", "GETREDIR"),
    ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:1"),
    ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "c"),
    ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "order:"),
    ("CLIENT", "TRACKING", "ON"),
    ("CLIENT", "TRACKINGINFO"),
    ("CLIENT", "CACHING", "yes"), ("CLIENT", "CACHING", "no"), ("CLIENT", "CACHING", "maybe"),
    ("CLIENT", "TRACKING", "OFF"), ("CLIENT", "TRACKINGINFO"), ("CLIENT", "GETREDIR"),
]


def test_tracking_commands_answer_as_a_single_redis(respgate, single):
    """CLIENT TRACKING's options and errors, TRACKINGINFO, GETREDIR and CACHING,
    byte for byte as a single Redis answers them in RESP3."""
    via, one = resp3(respgate.port), resp3(single.port)
    for cmd in SCRIPT:
        got, want = via.call(*cmd), one.call(*cmd)
        assert got == want, f"{cmd}: through respgate {got!r}, on a single Redis {want!r}"
    via.close()
    one.close()


def test_what_respgate_cannot_track_is_refused_clearly(respgate):
    two = Raw(respgate.port)
    assert two.call("CLIENT", "TRACKING", "ON", "BCAST").startswith(b"-ERR respgate: CLIENT TRACKING needs RESP3")
    assert two.call("CLIENT", "TRACKINGINFO").startswith(b"*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n")
    three = resp3(respgate.port)
    for opts, why in [((), b"BCAST mode only"), (("BCAST", "NOLOOP"), b"NOLOOP is not supported"),
                      (("BCAST", "REDIRECT", "7"), b"REDIRECT is not supported"), (("OPTIN",), b"BCAST mode only")]:
        reply = three.call("CLIENT", "TRACKING", "ON", *opts)
        assert reply.startswith(b"-ERR respgate: CLIENT TRACKING ") and why in reply, reply
    assert three.call("CLIENT", "GETREDIR") == b":-1\r\n"
    two.close()
    three.close()


def test_invalidations_from_every_master_in_order_with_replies(respgate):
    """A BCAST tracker hears of every write to its prefixes, whichever master
    owns the key, as push frames among the replies to its own commands; keys
    outside its prefixes, and anything after TRACKING OFF, say nothing."""
    tracker, writer = resp3(respgate.port), Raw(respgate.port)
    assert tracker.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "key:", "PREFIX", "other:") == b"+OK\r\n"
    for k in KEYS:
        assert writer.call("SET", k, "1") == b"+OK\r\n"
        assert writer.call("SET", "x" + k, "1") == b"+OK\r\n"  # not tracked
    got = []
    for k in KEYS:
        tracker.sock.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k.encode()))
        r = tracker.reply()
        while r.startswith(b">"):
            got.append(r)
            r = tracker.reply()
        assert r == b"$1\r\n1\r\n", r
    got += until_pong(tracker)
    assert sorted(invalidated(got)) == sorted(KEYS)  # one each, from all three masters
    assert writer.call("DEL", KEYS[0]) == b":1\r\n"
    assert invalidated(until_pong(tracker) or [tracker.reply()]) == [KEYS[0]]
    assert tracker.call("CLIENT", "TRACKING", "OFF") == b"+OK\r\n"
    assert writer.call("SET", KEYS[1], "2") == b"+OK\r\n"
    assert until_pong(tracker) == []
    tracker.close()
    writer.close()


def test_flushall_invalidates_everything(respgate):
    tracker, writer = resp3(respgate.port), Raw(respgate.port)
    assert tracker.call("CLIENT", "TRACKING", "ON", "BCAST") == b"+OK\r\n"
    assert writer.call("FLUSHALL") == b"+OK\r\n"
    pushes = until_pong(tracker)
    while not pushes:
        pushes = until_pong(tracker)
    assert set(pushes) == {b">2\r\n$10\r\ninvalidate\r\n_\r\n"}
    tracker.close()
    writer.close()


def test_at_most_128_prefixes_from_the_first_command_on(respgate):
    """The prefix limit holds for a client's first CLIENT TRACKING too, and is
    checked before the prefixes are compared with each other (each with
    every other: 100,000 of them stalled the worker)."""
    c = resp3(respgate.port)
    many = [a for i in range(100000) for a in ("PREFIX", f"p{i:06d}:")]
    assert c.call("CLIENT", "TRACKING", "ON", "BCAST", *many) == \
        b"-ERR respgate: more than 128 tracking prefixes for one client\r\n"
    few = [a for i in range(128) for a in ("PREFIX", f"p{i:03d}:")]
    assert c.call("CLIENT", "TRACKING", "ON", "BCAST", *few) == b"+OK\r\n"
    assert c.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "q:") == \
        b"-ERR respgate: more than 128 tracking prefixes for one client\r\n"
    c.close()
