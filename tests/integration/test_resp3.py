# RESP3 end to end: a client that says HELLO 3 gets, through respgate in
# front of the cluster, the very bytes a single Redis of the same version
# sends it, for commands over every data type (the nodes answer in RESP3 on
# connections of their own) and for what respgate composes itself (HELLO,
# CLIENT, INFO, split MGET, merged replies, nils); HELLO 2 goes back.

from conftest import CLIENT_PASSWORD, needs_redis7
from harness.cluster import REDIS_VERSION, keyslot
from harness.resp import RawConnection, frame


class Raw(RawConnection):
    """A raw connection that returns each reply's bytes, whole and as sent,
    for every RESP2 and RESP3 type (attributes and push frames included)."""

    def _one(self, out):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise AssertionError(f"connection closed or cut line: {line!r}")
        out.append(line)
        t, n = line[:1], line[1:-2]
        if t in b"+-:,#(_":
            return
        if t in b"$=!":
            if int(n) >= 0:
                out.append(self.f.read(int(n) + 2))
            return
        if t in b"*~>":
            for _ in range(max(int(n), 0)):
                self._one(out)
            return
        if t == b"%":
            for _ in range(2 * int(n)):
                self._one(out)
            return
        if t == b"|":
            for _ in range(2 * int(n)):
                self._one(out)
            self._one(out)  # the value the attributes describe
            return
        raise AssertionError(f"unknown reply type in {line!r}")

    def reply(self):
        out = []
        self._one(out)
        return b"".join(out)


def resp3(port, password=None):
    c = Raw(port)
    hello = c.call("HELLO", 3, "AUTH", "default", password) if password else c.call("HELLO", 3)
    assert hello.startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"), hello
    return c


V7 = REDIS_VERSION >= (7, 0)

# Every data type, with replies of every RESP3 type: maps (HGETALL, CONFIG
# GET, XINFO), sets (SMEMBERS, SINTER), doubles (ZSCORE, INCRBYFLOAT is a
# bulk), nulls, booleans and big numbers and verbatim strings from scripts.
# Keys hash to many slots; multi-key commands use one hash tag.
SCRIPT = [
    ("PING",), ("PING", "hi"), ("ECHO", "x"),
    # strings
    ("SET", "s:1", "v1"), ("GET", "s:1"), ("GET", "s:missing"), ("SET", "s:2", "10", "NX"),
    ("SET", "s:2", "11", "NX"), ("SET", "s:2", "12", "XX", "GET"), ("INCR", "s:2"), ("INCRBY", "s:2", "5"),
    ("DECR", "s:2"), ("INCRBYFLOAT", "s:3", "1.5"), ("INCRBYFLOAT", "s:3", "2.25"), ("APPEND", "s:1", "xy"),
    ("STRLEN", "s:1"), ("GETRANGE", "s:1", "0", "1"), ("SETRANGE", "s:1", "1", "Z"), ("GETDEL", "s:3"),
    ("GETEX", "s:1", "PERSIST"), ("SETNX", "s:4", "a"), ("SETEX", "s:5", "100", "b"), ("TTL", "s:5"),
    ("PTTL", "s:missing"), ("EXISTS", "s:1"), ("TYPE", "s:1"), ("TYPE", "s:missing"),
    ("MSET", "s:a", "1", "s:b", "2", "s:c", "3"), ("MGET", "s:a", "s:missing", "s:b", "s:c", "s:1"),
    ("MGET", "s:missing"), ("DEL", "s:a", "s:b", "s:missing"), ("EXISTS", "s:a", "s:c", "s:c"),
    ("SETBIT", "b:1", "7", "1"), ("GETBIT", "b:1", "7"), ("BITCOUNT", "b:1"), ("BITPOS", "b:1", "1"),
    ("BITFIELD", "b:2", "INCRBY", "u8", "0", "200", "GET", "u8", "0"),
    # lists
    ("RPUSH", "l:1", "a", "b", "c", "d"), ("LPUSH", "l:1", "z"), ("LRANGE", "l:1", "0", "-1"),
    ("LLEN", "l:1"), ("LINDEX", "l:1", "1"), ("LINDEX", "l:1", "99"), ("LPOP", "l:1"), ("RPOP", "l:1", "2"),
    ("LPOS", "l:1", "b"), ("LPOS", "l:1", "nope"), ("LINSERT", "l:1", "BEFORE", "b", "q"), ("LSET", "l:1", "0", "A"),
    ("LREM", "l:1", "1", "q"), ("LTRIM", "l:1", "0", "5"), ("LRANGE", "l:1", "0", "-1"), ("LPOP", "l:missing"),
    ("RPOPLPUSH", "{t}l1", "{t}l2"), ("RPUSH", "{t}l1", "x", "y"), ("LMOVE", "{t}l1", "{t}l2", "LEFT", "RIGHT"),
    ("LRANGE", "{t}l2", "0", "-1"), ("BLPOP", "{t}l1", "1"), ("BLPOP", "{t}empty", "0.01"),
    ("BRPOPLPUSH", "{t}l2", "{t}l1", "1"), ("BLMOVE", "{t}l1", "{t}l2", "RIGHT", "LEFT", "1"),
    # hashes
    ("HSET", "h:1", "f1", "v1", "f2", "v2", "n", "5"), ("HGET", "h:1", "f1"), ("HGET", "h:1", "nope"),
    ("HGETALL", "h:1"), ("HGETALL", "h:missing"), ("HMGET", "h:1", "f1", "nope", "f2"), ("HKEYS", "h:1"),
    ("HVALS", "h:1"), ("HLEN", "h:1"), ("HEXISTS", "h:1", "f2"), ("HINCRBY", "h:1", "n", "3"),
    ("HINCRBYFLOAT", "h:1", "n", "0.5"), ("HSETNX", "h:1", "f1", "x"), ("HDEL", "h:1", "f2", "nope"),
    ("HSTRLEN", "h:1", "f1"), ("HSET", "h:2", "only", "one"), ("HRANDFIELD", "h:2"),
    ("HRANDFIELD", "h:2", "1", "WITHVALUES"), ("HRANDFIELD", "h:2", "-2", "WITHVALUES"), ("HSCAN", "h:2", "0"),
    # sets (of integers: an intset answers in order, a hash table in its seed's order)
    ("SADD", "{t}s1", "1", "2", "3"), ("SADD", "{t}s2", "2", "3", "4"), ("SMEMBERS", "{t}s1"),
    ("SMEMBERS", "{t}missing"), ("SISMEMBER", "{t}s1", "1"), ("SMISMEMBER", "{t}s1", "1", "9"),
    ("SCARD", "{t}s1"), ("SINTER", "{t}s1", "{t}s2"), ("SUNION", "{t}s1", "{t}s2"), ("SDIFF", "{t}s1", "{t}s2"),
    ("SINTERSTORE", "{t}s3", "{t}s1", "{t}s2"), ("SMOVE", "{t}s1", "{t}s2", "1"), ("SREM", "{t}s1", "2", "99"),
    ("SADD", "st:1", "only"), ("SRANDMEMBER", "st:1"), ("SRANDMEMBER", "st:1", "-2"), ("SPOP", "st:1"),
    ("SPOP", "st:1"), ("SSCAN", "{t}s2", "0"),
    # sorted sets
    ("ZADD", "{t}z1", "1", "a", "2.5", "b", "3", "c"), ("ZADD", "{t}z2", "1", "b", "10", "d"),
    ("ZSCORE", "{t}z1", "b"), ("ZSCORE", "{t}z1", "nope"), ("ZMSCORE", "{t}z1", "a", "nope"),
    ("ZRANGE", "{t}z1", "0", "-1"), ("ZRANGE", "{t}z1", "0", "-1", "WITHSCORES"),
    ("ZREVRANGE", "{t}z1", "0", "1", "WITHSCORES"), ("ZRANGEBYSCORE", "{t}z1", "2", "+inf", "WITHSCORES"),
    ("ZINCRBY", "{t}z1", "0.25", "a"), ("ZRANK", "{t}z1", "c"), ("ZREVRANK", "{t}z1", "c"), ("ZCARD", "{t}z1"),
    ("ZCOUNT", "{t}z1", "-inf", "+inf"), ("ZPOPMIN", "{t}z2"), ("ZPOPMAX", "{t}z2", "5"), ("ZPOPMIN", "{t}z2"),
    ("ZUNIONSTORE", "{t}z3", "2", "{t}z1", "{t}z1"), ("ZRANGE", "{t}z3", "0", "-1", "WITHSCORES"),
    ("ZADD", "{t}z4", "INCR", "2", "x"), ("ZADD", "{t}z4", "NX", "5", "x"), ("ZRANDMEMBER", "{t}z4", "1", "WITHSCORES"),
    ("BZPOPMIN", "{t}z4", "1"), ("BZPOPMAX", "{t}z4", "0.01"), ("ZADD", "{t}z5", "inf", "top"),
    ("ZSCORE", "{t}z5", "top"), ("ZRANGE", "{t}z5", "0", "-1", "WITHSCORES"), ("ZSCAN", "{t}z1", "0"),
    # hyperloglog, geo
    ("PFADD", "hll:1", "a", "b", "c"), ("PFCOUNT", "hll:1"), ("GEOADD", "g:1", "13.361389", "38.115556", "Palermo"),
    ("GEOPOS", "g:1", "Palermo", "nope"), ("GEOHASH", "g:1", "Palermo"),
    # streams
    ("XADD", "x:1", "1-1", "a", "1"), ("XADD", "x:1", "2-1", "b", "2"), ("XLEN", "x:1"),
    ("XRANGE", "x:1", "-", "+"), ("XREVRANGE", "x:1", "+", "-", "COUNT", "1"),
    ("XREAD", "COUNT", "1", "STREAMS", "x:1", "0"), ("XREAD", "STREAMS", "x:1", "$"),
    ("XGROUP", "CREATE", "x:1", "g", "0"), ("XREADGROUP", "GROUP", "g", "c1", "COUNT", "1", "STREAMS", "x:1", ">"),
    ("XPENDING", "x:1", "g"), ("XACK", "x:1", "g", "1-1"), ("XINFO", "STREAM", "x:1"), ("XINFO", "GROUPS", "x:1"),
    ("XREAD", "BLOCK", "10", "STREAMS", "x:missing", "$"), ("XTRIM", "x:1", "MAXLEN", "1"), ("XDEL", "x:1", "2-1"),
    # keys
    ("EXPIRE", "s:1", "100"), ("TTL", "s:1"), ("PERSIST", "s:1"), ("TTL", "s:1"), ("RENAME", "{t}s3", "{t}s9"),
    ("RENAME", "{t}nope", "{t}x"), ("COPY", "{t}s9", "{t}s10"), ("OBJECT", "ENCODING", "l:1"),
    ("DUMP", "s:missing"), ("TOUCH", "s:1", "h:1", "s:missing"), ("UNLINK", "s:4", "s:5"),
    # scripts returning every type (Lua in RESP3)
    ("EVAL", "return {1, 'two', {3}}", "0"), ("EVAL", "return redis.call('get', KEYS[1])", "1", "s:1"),
    ("EVAL", "return redis.call('get', KEYS[1])", "1", "s:missing"), ("EVAL", "return true", "0"),
    ("EVAL", "return false", "0"), ("EVAL", "redis.setresp(3); return true", "0"),
    ("EVAL", "redis.setresp(3); return false", "0"), ("EVAL", "redis.setresp(3); return redis.call('hgetall', KEYS[1])", "1", "h:1"),
    ("EVAL", "redis.setresp(3); return redis.call('smembers', KEYS[1])", "1", "{t}s2"),
    ("EVAL", "return {double=3.5}", "0"), ("EVAL", "return {map={a=1}}", "0"),
    ("EVAL", "return {set={x=true}}", "0"), ("EVAL", "return {big_number='123456789012345678901234'}", "0"),
    ("EVAL", "return {err='ERR my error'}", "0"), ("EVAL", "return redis.status_reply('FINE')", "0"),
    ("EVAL", "redis.setresp(3); return redis.call('zscore', KEYS[1], 'b')", "1", "{t}z1"),
    # transactions
    ("MULTI",), ("SET", "{m}a", "1"), ("INCR", "{m}a"), ("HSET", "{m}h", "k", "v"), ("HGETALL", "{m}h"),
    ("ZADD", "{m}z", "1", "x"), ("ZSCORE", "{m}z", "x"), ("GET", "{m}missing"), ("EXEC",),
    ("MULTI",), ("SET", "{m}b", "1"), ("DISCARD",), ("GET", "{m}b"),
    # errors
    ("GET",), ("LPUSH", "s:1", "x"), ("NOSUCHCOMMAND",), ("HGET", "h:1"), ("INCR", "l:1"),
    # cleanup, answered the same
    ("DEL", "s:1", "s:2", "s:c", "b:1", "b:2", "l:1", "h:1", "h:2", "hll:1", "g:1", "x:1", "st:1"),
]

SCRIPT_V7 = [
    ("LMPOP", "1", "{t}l2", "LEFT"), ("LMPOP", "1", "{t}empty", "LEFT"), ("ZMPOP", "1", "{t}z1", "MIN", "COUNT", "2"),
    ("SINTERCARD", "2", "{t}s1", "{t}s2"), ("ZINTERCARD", "2", "{t}z1", "{t}z3"),
    ("CONFIG", "GET", "hash-max-listpack-entries"), ("CONFIG", "GET", "list-max-listpack-size"),
    ("EXPIRETIME", "{t}s9"), ("OBJECT", "ENCODING", "{t}z1"),
    ("FUNCTION", "LOAD", "#!lua name=rg3\nredis.register_function('rg3', function(k, a) return {map={x=1}} end)"),
    ("FCALL", "rg3", "0"), ("FUNCTION", "DELETE", "rg3"),
    ("XAUTOCLAIM", "x:2", "g", "c1", "0", "0-0"),
]


def run(conn, script):
    return [conn.call(*cmd) for cmd in script]


def test_hello_3_and_back(make_respgate):
    rg = make_respgate(client_password=CLIENT_PASSWORD)
    c = Raw(rg.port)
    assert c.call("HELLO", 3).startswith(b"-NOAUTH HELLO must be called with the client already authenticated")
    assert c.call("HELLO", 4) == b"-NOPROTO unsupported protocol version\r\n"
    assert c.call("HELLO", 1) == b"-NOPROTO unsupported protocol version\r\n"
    version = ".".join(map(str, REDIS_VERSION)).encode()
    hello = c.call("HELLO", 3, "AUTH", "default", CLIENT_PASSWORD, "SETNAME", "lettuce#1")
    client_id = int(c.call("CLIENT", "ID")[1:-2])
    expect = (b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$" + str(len(version)).encode() + b"\r\n" +
              version + b"\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:" + str(client_id).encode() +
              b"\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n")
    assert hello == expect
    assert c.call("HELLO") == expect  # no version: the session's protocol
    assert c.call("CLIENT", "GETNAME") == b"$9\r\nlettuce#1\r\n"
    assert c.call("CLIENT", "SETNAME", "") == b"+OK\r\n"
    assert c.call("CLIENT", "GETNAME") == b"_\r\n"
    assert c.call("GET", "resp3:missing") == b"_\r\n"
    info = c.call("CLIENT", "INFO")
    assert info.startswith(b"=") and b"\r\ntxt:id=%d " % client_id in info and b" resp=3\n" in info, info
    text = c.call("INFO", "server")
    assert text.split(b"\r\n", 1)[1].startswith(b"txt:# Server\r\n"), text
    assert int(text[1:text.index(b"\r\n")]) == len(text.split(b"\r\n", 1)[1]) - 2  # the length counts "txt:"
    everything = c.call("INFO")
    assert everything.startswith(b"=") and b"\r\ntxt:# Server\r\n" in everything and b"# Keyspace" in everything
    assert c.call("HELLO", 2).startswith(b"*14\r\n")
    assert c.call("GET", "resp3:missing") == b"$-1\r\n"
    assert c.call("CLIENT", "GETNAME") == b"$-1\r\n"
    assert c.call("HELLO", 3) == expect.replace(b"$9\r\nlettuce#1", b"")  # unchanged but the name
    assert c.call("RESET") == b"+RESET\r\n"  # as Redis: back to RESP2
    assert c.call("AUTH", CLIENT_PASSWORD) == b"+OK\r\n"
    assert c.call("GET", "resp3:missing") == b"$-1\r\n"
    c.close()


def test_replies_are_a_single_redis_bytes(respgate, single):
    """Over 150 commands in RESP3, through respgate in front of the cluster
    and on a single Redis of the same version: the same bytes."""
    script = SCRIPT + (SCRIPT_V7 if V7 else [])
    assert len(script) >= 150
    slots = {keyslot(a) for cmd in script for a in cmd[1:2] if ":" in a or "{" in a}
    assert len(slots) > 20  # the keys are spread over the cluster
    via = resp3(respgate.port)
    on_single = resp3(single.port)
    assert via.call("FLUSHALL") == on_single.call("FLUSHALL") == b"+OK\r\n"
    got, want = run(via, script), run(on_single, script)
    for cmd, g, w in zip(script, got, want):
        assert g == w, f"{cmd}: through respgate {g!r}, on a single Redis {w!r}"
    # The comparison saw RESP3's own types, not RESP2's.
    seen = {r[:1] for r in want}
    # 6.2's Lua has no big_number conversion; its script answers that line with a plain reply.
    want_types = {b"%", b"~", b",", b"_", b"#"} | ({b"("} if V7 else set())
    assert want_types <= seen, b" ".join(sorted(seen))
    via.close()
    on_single.close()


def test_a_resp2_client_beside_a_resp3_one(respgate):
    """The nodes' connections per protocol: a RESP2 client's replies stay
    RESP2 while a RESP3 client's are RESP3, interleaved, on the same keys."""
    two, three = Raw(respgate.port), resp3(respgate.port)
    assert two.call("HSET", "mix:h", "a", "1") == b":1\r\n"
    for _ in range(50):
        assert three.call("HGETALL", "mix:h") == b"%1\r\n$1\r\na\r\n$1\r\n1\r\n"
        assert two.call("HGETALL", "mix:h") == b"*2\r\n$1\r\na\r\n$1\r\n1\r\n"
        assert three.call("GET", "mix:nope") == b"_\r\n"
        assert two.call("GET", "mix:nope") == b"$-1\r\n"
    # A pipeline of both kinds over every master.
    keys = [f"mix:{i}" for i in range(40)]
    three.sock.sendall(b"".join(frame("ZADD", k, "1.5", "m") for k in keys))
    assert [three.reply() for _ in keys] == [b":1\r\n"] * len(keys)
    three.sock.sendall(b"".join(frame("ZSCORE", k, "m") for k in keys))
    two.sock.sendall(b"".join(frame("ZSCORE", k, "m") for k in keys))
    assert [three.reply() for _ in keys] == [b",1.5\r\n"] * len(keys)
    assert [two.reply() for _ in keys] == [b"$3\r\n1.5\r\n"] * len(keys)
    strings = [f"mixs:{i}" for i in range(6)]
    assert two.call("MSET", *[a for k in strings for a in (k, k)]) == b"+OK\r\n"
    values = b"".join(b"$6\r\n%s\r\n" % k.encode() for k in strings)
    assert three.call("MGET", *strings, "mix:nope") == b"*7\r\n" + values + b"_\r\n"  # split over the masters
    assert two.call("MGET", *strings, "mix:nope") == b"*7\r\n" + values + b"$-1\r\n"
    two.close()
    three.close()


def test_pubsub_in_resp3_as_a_single_redis(respgate, single):
    """Confirmations are push frames, and a RESP3 subscriber runs any command
    (no subscribed mode): the same bytes as from a single Redis."""
    script = [("SUBSCRIBE", "ps3:a", "ps3:b", "ps3:a"), ("GET", "ps3:x"), ("PING",), ("PING", "hi"),
              ("SET", "ps3:k", "v"), ("GET", "ps3:k"), ("HSET", "ps3:h", "f", "1"), ("HGETALL", "ps3:h"),
              ("PSUBSCRIBE", "ps3:p*"), ("UNSUBSCRIBE", "ps3:a", "ps3:zz"), ("PUNSUBSCRIBE",), ("UNSUBSCRIBE",),
              ("PING",), ("UNSUBSCRIBE",), ("PUNSUBSCRIBE", "nothing"), ("DEL", "ps3:k", "ps3:h")]
    replies = 3 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 2 + 1 + 1 + 1 + 1 + 1 + 1
    out = []
    for port in (single.port, respgate.port):
        c = resp3(port)
        c.sock.sendall(b"".join(frame(*cmd) for cmd in script))
        out.append([c.reply() for _ in range(replies)])
        c.close()
    assert out[0][0] == b">3\r\n$9\r\nsubscribe\r\n$5\r\nps3:a\r\n:1\r\n"  # the comparison saw RESP3's push
    assert out[0][4] == b"+PONG\r\n" and out[0][9] == b"%1\r\n$1\r\nf\r\n$1\r\n1\r\n"
    for i, (want, got) in enumerate(zip(*out)):
        assert got == want, f"reply {i}: through respgate {got!r}, on a single Redis {want!r}"


def test_messages_and_keyspace_events_are_push_frames(cluster, respgate):
    """A RESP3 subscriber gets its channel's messages and keyspace events from
    every master as push frames, on the connection it sends commands on; the
    replies to those commands come in order among them."""
    from test_commands import KEYS
    admin = Raw(respgate.port)
    assert admin.call("CONFIG", "SET", "notify-keyspace-events", "K$") == b"+OK\r\n"
    try:
        sub = resp3(respgate.port)
        sub.sock.sendall(frame("SUBSCRIBE", "ps3:news") + frame("PSUBSCRIBE", "__keyspace@0__:key:*"))
        assert sub.reply() == b">3\r\n$9\r\nsubscribe\r\n$8\r\nps3:news\r\n:1\r\n"
        assert sub.reply() == b">3\r\n$10\r\npsubscribe\r\n$20\r\n__keyspace@0__:key:*\r\n:2\r\n"
        for i, k in enumerate(KEYS):
            assert admin.call("SET", k, "1") == b"+OK\r\n"
            assert admin.call("PUBLISH", "ps3:news", f"m{i}") == b":1\r\n"
            sub.sock.sendall(frame("GET", k))
        pushes, replies = [], []
        while len(replies) < len(KEYS) or len(pushes) < 2 * len(KEYS):
            r = sub.reply()
            (pushes if r.startswith(b">") else replies).append(r)
        assert replies == [b"$1\r\n1\r\n"] * len(KEYS)
        messages = [p for p in pushes if p.startswith(b">3\r\n$7\r\nmessage\r\n")]
        assert messages == [b">3\r\n$7\r\nmessage\r\n$8\r\nps3:news\r\n$%d\r\nm%d\r\n" % (len(str(i)) + 1, i)
                            for i in range(len(KEYS))]
        events = sorted(p.split(b"\r\n")[6].split(b":", 1)[1].decode() for p in pushes
                        if p.startswith(b">4\r\n$8\r\npmessage\r\n"))
        assert events == sorted(KEYS)  # one "set" each, from all three masters
        assert len(pushes) == 2 * len(KEYS)
        sub.close()
    finally:
        assert admin.call("CONFIG", "SET", "notify-keyspace-events", "") == b"+OK\r\n"
        admin.close()


def test_replies_respgate_merges_are_resp3(respgate, single):
    """What respgate puts together from every master (KEYS, SCAN, DBSIZE,
    RANDOMKEY, SCRIPT EXISTS, EXISTS and DEL over slots) in RESP3, as a
    single Redis answers it (key order aside, which no Redis promises)."""
    from test_commands import KEYS
    via, one = resp3(respgate.port), resp3(single.port)
    for c in (via, one):
        assert c.call("FLUSHALL") == b"+OK\r\n"
        assert c.call("RANDOMKEY") == b"_\r\n"
        assert c.call("MSET", *[a for k in KEYS for a in (k, "v")]) == b"+OK\r\n"

    def elements(reply):
        parts = reply.split(b"\r\n")
        return parts[0], sorted(parts[1:-1])

    for cmd in [("KEYS", "key:*"), ("DBSIZE",), ("EXISTS", *KEYS[:20], "nope"), ("SCRIPT", "EXISTS", "x" * 40),
                ("MGET", *KEYS[:5], "nope"), ("DEL", *KEYS[:30], "nope")]:
        got, want = via.call(*cmd), one.call(*cmd)
        assert elements(got) == elements(want), f"{cmd}: {got!r} against {want!r}"
    keys, cursor = set(), b"0"
    for _ in range(1000):
        reply = via.call("SCAN", cursor, "COUNT", "100")
        assert reply.startswith(b"*2\r\n$")
        parts = reply.split(b"\r\n")
        cursor = parts[2]
        keys |= set(parts[5::2])
        if cursor == b"0":
            break
    assert keys == {k.encode() for k in KEYS[30:]}
    assert via.call("RANDOMKEY").startswith(b"$")
    via.close()
    one.close()
