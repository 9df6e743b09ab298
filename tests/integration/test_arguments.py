# Hostile arguments to the commands respgate answers itself: lengths around
# each power of two up to 64 KiB, in every place a handler reads an option,
# a name or a number. Each reply must be the very bytes a single Redis of
# the cluster's version sends, and respgate must go on serving. Issue 27:
# `HELLO 3` then `CLIENT TRACKING ON BCAST <a few hundred bytes>` wrote a
# zero byte past a 16-byte stack buffer and took the daemon down.
import re

import pytest

from harness.cluster import REDIS_VERSION
from test_resp3 import Raw, resp3

LENGTHS = [n + d for n in (16, 32, 128, 512, 1024, 4096, 65536) for d in (-1, 0, 1)]




def word(n, fill="x"):
    return fill * n


def script():
    """The commands, each run through respgate and on the single Redis."""
    cmds = []
    for n in LENGTHS:
        cmds += [
            # an unknown option of every length, then as a PREFIX
            ("CLIENT", "TRACKING", "ON", "BCAST", word(n)),
            ("CLIENT", "TRACKING", "ON", word(n)),
            ("CLIENT", "TRACKING", word(n)),
            ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", word(n, "p")),
            ("CLIENT", "TRACKINGINFO"),
            ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", word(n, "q"), "PREFIX", word(n + 7, "q")),
            ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", word(n, "p")[:-1] + "z"),
            ("CLIENT", "TRACKING", "OFF"),
            ("CLIENT", "CACHING", word(n)),
            # names: valid, and with a space at the end
            ("CLIENT", "SETNAME", word(n, "n")),
            ("CLIENT", "GETNAME"),
            ("CLIENT", "SETNAME", word(n, "n")[:-1] + " "),
            ("CLIENT", "SETINFO", "LIB-NAME", word(n, "l")),
            ("CLIENT", "SETINFO", word(n), "x"),
            ("CLIENT", "NO-EVICT", word(n)),
            ("CLIENT", word(n)),
            ("HELLO", "{proto}", "SETNAME", word(n, "h")),
            ("CLIENT", "GETNAME"),
            ("HELLO", "{proto}", word(n)),
            ("HELLO", word(n)),
            ("SELECT", word(n, "9")),
            ("ECHO", word(n)),
            ("PING", word(n)),
            ("INFO", word(n)),
            (word(n),),
            (word(n), word(n, "a"), "b", word(300, "c")),
            ("nosuch", "", "", word(n, "d")),
        ]
    # bytes that are not text, a zero byte, CR and LF, as Redis quotes them
    cmds += [(b"bin\x01\x7f\xffname", b"arg\x00zero", b"a\r\nb"), (b"\x00lead",), ("nosuch", b"\xfe" * 200)]
    return cmds


@pytest.mark.parametrize("proto", [3, 2])
def test_long_arguments_answer_as_a_single_redis(respgate, single, proto):
    via = resp3(respgate.port) if proto == 3 else Raw(respgate.port)
    one = resp3(single.port) if proto == 3 else Raw(single.port)
    compared = 0
    for cmd in script():
        cmd = tuple(a.format(proto=proto) if a == "{proto}" else a for a in cmd)
        got, want = (re.sub(rb"\$2\r\nid\r\n:\d+", b"id", r) for r in (via.call(*cmd), one.call(*cmd)))
        if cmd[0] == "CLIENT" and cmd[1].startswith("x"):
            # respgate answers CLIENT's subcommands for the client's own
            # session only, and says so in its own words
            assert got.startswith(b"-ERR respgate") and want.startswith(b"-ERR"), (got[:80], want[:80])
            continue
        if cmd[:2] == ("CLIENT", "NO-EVICT") and REDIS_VERSION < (7, 0):
            # 7.0's, which respgate answers whatever the nodes' version
            assert got == b"-ERR syntax error\r\n", got[:80]
            continue
        if cmd[:2] == ("CLIENT", "SETINFO"):
            # Redis 7.2's, which respgate answers for the clients that send
            # it (Lettuce): a valid name is taken, a bad option refused
            assert got == (b"+OK\r\n" if cmd[2] == "LIB-NAME" else b"-ERR syntax error\r\n"), got[:80]
            continue
        if cmd[0] == "CLIENT" and cmd[1] in ("TRACKING", "TRACKINGINFO") and proto == 2:
            # tracking needs RESP3 through respgate (test_tracking.py); only
            # the syntax errors, found first, are Redis's
            if want == b"-ERR syntax error\r\n":
                assert got == want, (cmd[:4], got[:80])
            continue
        assert got == want, f"{[a[:20] for a in cmd]}: through respgate {got[:200]!r}, on a single Redis {want[:200]!r}"
        compared += 1
    assert compared > len(script()) // 2
    # the same connection, and a new one, are served
    assert via.call("PING") == b"+PONG\r\n"
    fresh = Raw(respgate.port)
    assert fresh.call("SET", "after-arguments", "1") == b"+OK\r\n"
    fresh.close()
    via.close()
    one.close()


def test_keyspace_channel_names_cannot_smuggle_commands_to_the_masters(respgate):
    """A keyspace channel's name goes to every master, on connections with
    respgate's own credentials. A name with a zero byte was written there
    with its whole length but only up to the zero, so the master read the
    next name's bytes as commands: here a FLUSHALL, on a RESP3 connection,
    where a subscriber may run it. Every key must survive."""
    keys = [f"smuggle:{i}" for i in range(30)]  # on every master
    c = resp3(respgate.port)
    for k in keys:
        assert c.call("SET", k, "1") == b"+OK\r\n"
    second = b"__keyspace@0__:A\r\n$1\r\nb\r\n*1\r\n$8\r\nFLUSHALL\r\n"
    # The first name's length makes the master's read of it end just
    # before the \r\n inside the second.
    swallowed = len(b"__keyspace@0__:\r\n") + len(b"$%d\r\n" % len(second)) + len(b"__keyspace@0__:A")
    first = b"__keyspace@0__:\x00" + b"p" * (swallowed - 16)
    assert len(first) == swallowed
    reply = c.call("SUBSCRIBE", first, second)
    assert reply.startswith(b">3\r\n$9\r\nsubscribe\r\n"), reply
    assert c.reply().startswith(b">3\r\n$9\r\nsubscribe\r\n")
    c.call("UNSUBSCRIBE")
    c.close()
    check = Raw(respgate.port)
    assert check.call("EXISTS", *keys) == b":%d\r\n" % len(keys)
    assert check.call("DEL", *keys) == b":%d\r\n" % len(keys)
    check.close()
