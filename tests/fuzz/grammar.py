#!/usr/bin/env python3
# tests/fuzz/grammar.py - a grammar-driven fuzzer against a running respgate.
#
# The libFuzzer targets next to this file fuzz the parsers one by one; this
# one fuzzes the whole process as a client sees it: the dispatcher, every
# local handler, routing, fan-out, sessions, Pub/Sub and tracking, with real
# nodes behind them. It draws commands from respgate's own generated table
# (src/model/cmdtab.c) and its local tables (src/front/local.c), read at run time so that
# a command added there is fuzzed without touching this file; arguments
# follow the nodes' COMMAND DOCS where the cluster has them (Redis 7.0) and
# the table's arity where it has not, drawn from Redis's option words,
# awkward numbers, keys with and without hash tags, and byte strings of
# lengths around each power of two up to 1 MiB.
#
# Commands go out in pipelined batches, hand-encoded (multibulk, sometimes
# inline), on raw sockets of four kinds: RESP2, RESP3 (HELLO 3), RESP3 with
# CLIENT TRACKING ON BCAST, and never authenticated. Replies are read by a
# small RESP2/RESP3 reader while the batch is still being written, so that
# back-pressure never passes for a hang. After each batch respgate must still
# be running and answer AUTH + PING on a fresh connection; a batch whose
# replies stop coming is a hang; a reply that is not RESP is a finding too.
# A finding's batch is saved under build/fuzz/live-crashes/ and ends the run.
#
#   tests/fuzz/grammar.py SECONDS [--seed N] [--mix all|resp2|resp3] [--batches N]
#       starts a cluster and an ASan respgate (tests/harness), fuzzes it,
#       checks the sanitizers' silence, exits 1 on a finding
#   tests/fuzz/grammar.py --replay FILE
#       sends a saved batch to a fresh cluster and respgate
#
# run() is the driver the integration test calls (test_fuzz_grammar.py).

import argparse
import collections
import math
import os
import random
import re
import select
import shutil
import socket
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CRASH_DIR = os.path.join(TOP, "build", "fuzz", "live-crashes")

# A batch is a hang when neither direction moves for QUIET seconds (a reply
# that is merely slow, a blocking command's 10 ms, an ASan build's big
# merge, all make some progress well within it), or when it takes CAP.
QUIET = 10.0
CAP = 60.0
PROBE_TIMEOUT = 5.0

# ---- the command table ------------------------------------------------------

_ROW = re.compile(r'^\s*\{"([a-z0-9_|-]+)",\s*(-?\d+),\s*[^,{}]*,\s*(CMD_[A-Z_]+)\s*,', re.M)
_LOCAL_ROW = re.compile(r'\{"([a-z0-9_-]+)",\s*(-?\d+)\s*,')


def load_table(top=TOP):
    """{name: (arity, policy)} of src/model/cmdtab.c's rows, subcommands as "parent|sub"."""
    with open(os.path.join(top, "src", "model", "cmdtab.c")) as f:
        rows = {m.group(1): (int(m.group(2)), m.group(3)) for m in _ROW.finditer(f.read())}
    if len(rows) < 100:
        raise RuntimeError(f"src/model/cmdtab.c: only {len(rows)} commands recognized; has its row format changed?")
    return rows


def _c_table(text, name):
    m = re.search(r"\b" + name + r"\[\]\s*=\s*\{(.*?)\n\};", text, re.S)
    if not m:
        raise RuntimeError(f"src/front/local.c: no table {name}[]")
    return {n: int(a) for n, a in _LOCAL_ROW.findall(m.group(1))}


def load_local(top=TOP):
    """{name: arity} of what respgate answers itself: src/front/local.c's
    local_cmds[] and client_subs[] (the latter as "client|sub")."""
    with open(os.path.join(top, "src", "front", "local.c")) as f:
        text = f.read()
    names = _c_table(text, "local_cmds")
    # A CLIENT subcommand's arity counts the subcommand but not "client".
    names.update({f"client|{s}": (a + 1 if a > 0 else a - 1) for s, a in _c_table(text, "client_subs").items()})
    return names


# ---- what is never sent, and what is sent only defused -----------------------
#
# The fuzzer must not destroy the test it runs in: nothing that stops or
# reconfigures a node or the cluster, changes the nodes' configuration or
# credentials, or cuts and freezes other clients (the liveness probe among
# them). Most of these respgate refuses today; they stay out so that a
# respgate that one day forwards one cannot take the cluster down mid-run.
EXCLUDED = {
    "shutdown": "stops a node",
    "debug": "DEBUG SEGFAULT, SLEEP, RELOAD... on a node",
    "failover": "reconfigures replication",
    "replicaof": "reconfigures replication",
    "slaveof": "reconfigures replication",
    "sync": "makes the connection a replication stream",
    "psync": "makes the connection a replication stream",
    "replconf": "replication handshake",
    "migrate": "moves keys to another server",
    "save": "disk I/O on a node: slows the run, proves nothing about respgate",
    "bgsave": "forks a node",
    "bgrewriteaof": "forks a node",
    "cluster|failover": "reconfigures the cluster",
    "cluster|reset": "reconfigures the cluster",
    "cluster|forget": "reconfigures the cluster",
    "cluster|setslot": "reconfigures the cluster",
    "cluster|addslots": "reconfigures the cluster",
    "cluster|addslotsrange": "reconfigures the cluster",
    "cluster|delslots": "reconfigures the cluster",
    "cluster|delslotsrange": "reconfigures the cluster",
    "cluster|flushslots": "reconfigures the cluster",
    "cluster|meet": "reconfigures the cluster",
    "cluster|replicate": "reconfigures the cluster",
    "cluster|bumpepoch": "reconfigures the cluster",
    "cluster|set-config-epoch": "reconfigures the cluster",
    "cluster|saveconfig": "writes a node's nodes.conf",
    "config|set": "broadcast: could change a node's password, limits or persistence",
    "config|rewrite": "writes every node's config file",
    "config|resetstat": "resets counters other tests read",
    "acl|setuser": "the nodes' users",
    "acl|deluser": "the nodes' users",
    "acl|load": "the nodes' users",
    "acl|save": "the nodes' users",
    "client|kill": "would cut other clients, the probe among them",
    "client|pause": "would freeze every client",
    "module|load": "loads code from a path",
    "module|loadex": "loads code from a path",
    "module|unload": "unloads code",
    "script|debug": "puts a node connection into the Lua debugger",
}

# Commands that block until a timeout, which 0 makes forever: their timeout
# is drawn like any argument, then replaced by 10 ms unless it is one a node
# refuses (garbage, negative, NaN, out of range). {name: index in argv}; -1
# is the last argument.
TIMEOUT_AT = {"blpop": -1, "brpop": -1, "bzpopmin": -1, "bzpopmax": -1, "blmove": -1, "brpoplpush": -1,
              "blmpop": 1, "bzmpop": 1}
# Milliseconds, not seconds: WAIT's and WAITAOF's last argument, and
# XREAD's and XREADGROUP's BLOCK wherever it is.
MS_TIMEOUT_AT = {"wait": -1, "waitaof": -1}
BLOCK_OPTION = {"xread", "xreadgroup"}
# Counts that make a node allocate in proportion to them: a negative
# SRANDMEMBER count of 2^31 answers two billion elements, SETBIT 2^31
# allocates 256 MiB on a master and its replica. Clamped where a node would
# accept them (past that range a node refuses them, cheaply): {name: (from,
# to, the clamp)}.
CLAMPED = {"srandmember": (1000, 2 ** 62, 1000), "hrandfield": (1000, 2 ** 62, 1000),
           "zrandmember": (1000, 2 ** 62, 1000), "setbit": (2 ** 20, 2 ** 33, 2 ** 20),
           "setrange": (2 ** 20, 2 ** 33, 2 ** 20), "bitfield": (2 ** 20, 2 ** 33, 2 ** 20)}


def excluded(argv):
    """Whether ARGV (bytes) names an EXCLUDED command or subcommand."""
    name = argv[0].lower().decode("latin-1")
    if name in EXCLUDED:
        return True
    return len(argv) > 1 and f"{name}|{argv[1].lower().decode('latin-1')}" in EXCLUDED


def _number(arg):
    """ARG's value as a node's strtold() reads a timeout (hex too: "0x10" is
    16 s), or None if it is no finite number."""
    text = arg.decode("latin-1").strip()
    hexa = re.match(r"[-+]?0[xX]", text)
    try:
        v = float.fromhex(text) if hexa else float(text)
    except (ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def defuse(argv):
    """ARGV with its blocking timeouts and amplifying counts made harmless (above)."""
    name = argv[0].lower().decode("latin-1")
    argv = list(argv)

    def short(i, forever, small):
        if len(argv) > 2 or (len(argv) == 2 and i == 1):
            v = _number(argv[i])
            if v is not None and 0 <= v < forever:
                argv[i] = small

    if name in TIMEOUT_AT:
        short(TIMEOUT_AT[name], 1e16, b"0.01")
    if name in MS_TIMEOUT_AT:
        short(MS_TIMEOUT_AT[name], 1e19, b"10")
    if name in BLOCK_OPTION:
        for i in range(1, len(argv) - 1):
            if argv[i].lower() == b"block":
                short(i + 1, 1e19, b"10")
    if name in CLAMPED:
        low, high, clamp = CLAMPED[name]
        for i in range(1, len(argv)):
            v = _number(argv[i])
            if v is not None and low < abs(v) < high:
                argv[i] = b"%d" % (-clamp if v < 0 else clamp)
    return argv


# ---- argument pools ----------------------------------------------------------

WORDS = """NX XX GT LT CH INCR GET KEEPTTL EX PX EXAT PXAT PERSIST WITHSCORES LIMIT COUNT MATCH TYPE BCAST
PREFIX OPTIN OPTOUT NOLOOP REDIRECT ON OFF SKIP YES NO AUTH SETNAME BLOCK STREAMS ID MAXLEN MINID WITHVALUES
REV BYSCORE BYLEX ASC DESC STORE ALPHA BY REPLACE ABSTTL IDLETIME FREQ SCHEDULE ASYNC SYNC LIB-NAME LIB-VER
DEFAULT ALL EVERYTHING WEIGHTS AGGREGATE SUM MIN MAX WITHCOORD WITHDIST WITHHASH STOREDIST FROMMEMBER
FROMLONLAT BYRADIUS BYBOX ANY M KM FT MI NOMKSTREAM JUSTID FORCE RETRYCOUNT LASTID ENTRIESREAD GROUP NOACK
IDX MINMATCHLEN WITHMATCHLEN LEN RANK LEFT RIGHT BEFORE AFTER OVERFLOW WRAP SAT FAIL INCRBY SAMPLES FULL
NOSAVE TIMEOUT SERVER CLIENTS MEMORY STATS REPLICATION KEYSPACE COMMANDSTATS RESPGATE USAGE HELP LOAD
FLUSH EXISTS LIST INFO GETNAME TRACKING CACHING TRACKINGINFO GETREDIR NO-EVICT REPLY SETINFO WHOAMI USERS
CAT KEYS FILTERBY MODULE ACLCAT PATTERN NUMSUB NUMPAT CHANNELS SHARDCHANNELS SHARDNUMSUB DOCS GETKEYS
WITHCODE u8 i8 u64 i64 i65 #1 ~""".split()

INTS = [0, -1, 1, 2, 3, 7, 8, 9, 15, 16, 17, 100, 255, 256, 1000, 1023, 1024, 1025, 16383, 16384, 65535, 65536,
        2 ** 31 - 1, 2 ** 31, -2 ** 31, 2 ** 32, 2 ** 63 - 1, 2 ** 63, -2 ** 63, -2 ** 63 - 1, 2 ** 64]
ODD_NUMBERS = ["1e308", "inf", "-inf", "+inf", "nan", "1.5", "-0.5", "  1", "+1", "01", "", "-0", "0x10", "1e",
               "3.14159", "1.7976931348623157e309", ".5", "5.", "1,5", "(1", "(-inf", "[a", "-", "+", "1 ", "0e0"]
PATTERNS = ["*", "fz:*", "user:?", "[a-z]*", "\\", "[", "[^", "*{a}*", "**********************a", "?" * 40,
            "[\\", "h[^e]llo", "*\x00*"]
STREAM_IDS = ["0", "0-0", "0-1", "*", "$", ">", "-", "+", "1-*", "18446744073709551615-18446744073709551615",
              "1-", "-1", "9999999999999-0", "(0-1"]
SCRIPTS = ["return 1", "return redis.call('get', KEYS[1])", "return {1, 2, {3, 'x'}, nil, 'y'}",
           "return redis.error_reply('fz')", "return redis.status_reply('fz')",
           "redis.call('set', KEYS[1], ARGV[1]) return redis.call('incr', KEYS[2] or KEYS[1])",
           "return redis.call('ping')", "return 3.99", "return {err='x'}", "return redis.setresp(3)",
           "#!lua flags=no-writes\nreturn 1", "return KEYS", "return ARGV", "syntax error (", ""]
SHA1 = ["e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0" * 40, "x" * 40, "abc"]
LIBRARY = ("#!lua name=fz\nredis.register_function('fzf', function(keys, args) return #keys end)\n"
           "redis.register_function{function_name='fzro', callback=function(keys, args) return args end,"
           " flags={'no-writes'}}")
SECTIONS = ["server", "clients", "memory", "stats", "replication", "cpu", "keyspace", "respgate", "all",
            "default", "everything", "commandstats", "errorstats", "latencystats", "cluster", "modules", "bogus"]
KEY_BASES = ["k", "fz:", "user:", "cart:", "order:", "{a}", "s", "l", "z", "h", "x"]
TAGS = ["", "{a}", "{b}", "{user1000}", "{}", "{", "}", "{x}{y}", "}{a}", "{\x00}", "{" + "t" * 70 + "}"]
TRACK_PREFIXES = ["fz:", "user:", "cart:", "order:", "", "k", "{a}"]


class Gen:
    """Draws commands. RND is a random.Random; DOCS {name: doc} from
    load_docs() (empty: arity only); PASSWORD the real one, used in AUTH and
    HELLO only when WITH_PASSWORD is set."""

    def __init__(self, rnd, table, local, docs, password):
        self.rnd = rnd
        self.docs = docs
        self.password = password
        self.with_password = True
        self.entries = dict(table)
        for name, arity in local.items():
            self.entries.setdefault(name, (arity, "CMD_LOCAL"))
        self.names = sorted(n for n in self.entries if n not in EXCLUDED)
        # respgate parses the arguments of what it answers, merges, splits or
        # pins itself; what it forwards it only routes. Its own code gets the
        # larger share.
        weight = {"CMD_LOCAL": 4, "CMD_BROADCAST": 2, "CMD_PINNED": 2, "CMD_PUBSUB": 2, "CMD_SPLIT": 2}
        # Except QUIT, which loses the rest of its batch, and RESET, which
        # leaves the rest unauthenticated.
        weight.update({"quit": 0.2, "reset": 1})
        self.weights = [weight.get(n, weight.get(self.entries[n][1], 1)) for n in self.names]
        self.longest = 20  # log2 of the longest argument drawn
        self.tag = ""

    # values

    def chance(self, p):
        return self.rnd.random() < p

    def pick(self, seq):
        return seq[self.rnd.randrange(len(seq))]

    def sized(self, top=20):
        """Bytes of a length around a power of two (2^k - 1, 2^k, 2^k + 1),
        short ones likelier than long ones, of one of several textures."""
        top = min(top, self.longest)
        k = min(self.rnd.randrange(top + 1), self.rnd.randrange(top + 1))
        n = max(0, (1 << k) + self.rnd.choice((-1, 0, 1)))
        texture = self.rnd.randrange(6)
        if texture == 0:
            return self.rnd.randbytes(n)
        if texture == 1:
            return b"a" * n
        if texture == 2:
            return (b"\r\n" * (n // 2 + 1))[:n]
        if texture == 3:
            return (b" \"'\\ x" * (n // 6 + 1))[:n]
        if texture == 4:
            return (b"9" * n)
        return (b"fz:" + b"b" * n)[:n]

    def number(self):
        if self.chance(0.7):
            return str(self.pick(INTS)).encode()
        return self.pick(ODD_NUMBERS).encode()

    def key(self):
        tag = self.tag if self.chance(0.7) else self.pick(TAGS)
        base = self.pick(KEY_BASES)
        if self.chance(0.05):
            return self.sized(12)
        return (base + str(self.rnd.randrange(12)) + tag).encode("latin-1")

    def word(self):
        w = self.pick(WORDS)
        if self.chance(0.1):
            w = "".join(c.upper() if self.chance(0.5) else c.lower() for c in w)
        return w.encode()

    def short(self):
        return self.pick([b"a", b"foo", b"", b" ", b'"', b"'", b"\r\n", b"a b", b"\x00", b"\xff\xfe", b"\\",
                          b"fz:1", b"user:1", self.rnd.randbytes(self.rnd.randrange(1, 17))])

    def value(self):
        r = self.rnd.random()
        if r < 0.2:
            return self.word()
        if r < 0.4:
            return self.number()
        if r < 0.65:
            return self.short()
        if r < 0.8:
            return self.key()
        return self.sized()

    def hinted(self, name):
        """A value for a string argument called NAME in COMMAND DOCS."""
        n = name.lower()
        if n in ("id", "start", "end", "min-id", "threshold", "last-id", "lastid"):
            return self.pick(STREAM_IDS).encode()
        if n == "script":
            return self.pick(SCRIPTS).encode()
        if n == "sha1":
            return self.pick(SHA1).encode()
        if n == "function-code":
            return LIBRARY.encode()
        if n == "function":
            return self.pick([b"fzf", b"fzro", b"nope"])
        if n in ("channel", "shardchannel"):
            return ("ch" + self.pick(TAGS)).encode("latin-1") if self.chance(0.8) else self.value()
        if n == "prefix":
            return self.pick(TRACK_PREFIXES).encode() if self.chance(0.6) else self.sized(11)
        if n == "section":
            return self.pick(SECTIONS).encode()
        if n in ("password", "username"):
            return self.secret()
        if n in ("min", "max"):
            return self.pick(ODD_NUMBERS + ["-inf", "+inf", "(1", "[a", "0"]).encode()
        if n == "protover":
            return self.pick([b"2", b"3", b"1", b"4", b"-1", b"3.0", b"", b"99999999999999999999"])
        return self.value()

    def secret(self):
        if self.with_password and self.password and self.chance(0.3):
            return self.password.encode()
        return self.pick([b"default", b"wrong", b"", self.sized(10)])

    # commands

    def command(self):
        """(entry name, argv) of one command, argv a list of bytes."""
        while True:
            name = self.rnd.choices(self.names, self.weights)[0]
            argv = self.draw(name)
            if name == "client|tracking" or (name == "client" and len(argv) > 1 and argv[1].lower() == b"tracking"):
                argv = self.tracking_options(argv)
            if self.chance(0.25):
                argv = self.mutate(argv)
            argv = defuse(argv)
            if argv and not excluded(argv):
                return name, argv

    def draw(self, name):
        self.tag = self.pick(TAGS[:4])
        parent, _, sub = name.partition("|")
        head = [parent.encode(), sub.encode()] if sub else [parent.encode()]
        if self.chance(0.1):
            head[0] = bytes(c ^ 0x20 if 97 <= c <= 122 and self.chance(0.5) else c for c in head[0])
        doc = self.doc(name)
        if doc is not None and self.chance(0.75):
            return head + self.args(doc.get("arguments", []))
        arity = self.entries[name][0]
        n = arity - len(head) if arity > 0 else -arity - len(head) + min(self.rnd.randrange(8), self.rnd.randrange(8))
        if self.chance(0.1):
            n += self.rnd.choice((-1, 1))
        argv = head + [self.value() for _ in range(max(0, n))]
        # Most commands name their key first; a random value there mostly
        # tests the nodes' argument checks, not respgate's routing.
        if len(argv) > len(head) and self.entries[name][1] in ("CMD_FORWARD", "CMD_SPLIT") and self.chance(0.8):
            argv[len(head)] = self.key()
        return argv

    def doc(self, name):
        parent, _, sub = name.partition("|")
        d = self.docs.get(parent)
        if d is not None and sub:
            d = d.get("subcommands", {}).get(name)
        return d

    def args(self, specs):
        out = []
        for a in specs:
            flags = a.get("flags", [])
            if "optional" in flags and self.chance(0.5):
                continue
            reps = 1
            if "multiple" in flags:
                reps = 1 + min(self.rnd.randrange(5), self.rnd.randrange(5))
            for i in range(reps):
                if a.get("token") and (i == 0 or "multiple_token" in flags):
                    out.append(a["token"].encode())
                out += self.arg(a)
        return out

    def arg(self, a):
        t = a.get("type")
        if t == "pure-token":
            return []
        if t == "oneof":
            subs = a.get("arguments") or []
            return self.args([dict(self.pick(subs), flags=[])]) if subs else []
        if t == "block":
            return self.args(a.get("arguments") or [])
        if self.chance(0.08):
            return [self.value()]
        if t == "key":
            return [self.key()]
        if t in ("integer", "unix-time"):
            return [self.number() if self.chance(0.3) else str(self.pick(INTS[:12])).encode()]
        if t == "double":
            return [self.number() if self.chance(0.5) else str(self.rnd.uniform(-200, 200)).encode()]
        if t == "pattern":
            return [self.pick(PATTERNS).encode("latin-1")]
        return [self.hinted(a.get("name", ""))]

    def tracking_options(self, argv):
        """CLIENT TRACKING's options with, often, a long argument among them:
        respgate copies them into buffers of its own, which is where a
        length goes wrong (the stack buffer overflow in src/path/tracking.c that
        "HELLO 3" then "CLIENT TRACKING ON BCAST <300 bytes>" caused)."""
        if self.chance(0.5):
            opts = [self.pick([b"ON", b"on", b"OFF"])]
            for _ in range(self.rnd.randrange(5)):
                w = self.pick([b"BCAST", b"PREFIX", b"OPTIN", b"OPTOUT", b"NOLOOP", b"REDIRECT"])
                opts.append(w)
                if w in (b"PREFIX", b"REDIRECT"):
                    opts.append(self.hinted("prefix") if w == b"PREFIX" else self.number())
            argv = argv[:2] + opts
        if self.chance(0.4):
            at = self.rnd.randrange(2, len(argv) + 1)
            # Where a handler reads a word it expects to be short: after ON,
            # BCAST, PREFIX or REDIRECT.
            after = [i + 1 for i in range(2, len(argv))
                     if argv[i].upper() in (b"ON", b"BCAST", b"PREFIX", b"REDIRECT")]
            if after and self.chance(0.6):
                at = self.pick(after)
            long_arg = self.sized(13)
            if self.chance(0.5) and at < len(argv):
                argv = argv[:at] + [long_arg] + argv[at + 1:]
            else:
                argv = argv[:at] + [long_arg] + argv[at:]
        return argv

    def mutate(self, argv):
        argv = list(argv)
        op = self.rnd.randrange(6)
        at = self.rnd.randrange(1, len(argv) + 1)
        if op == 0 and at < len(argv):
            argv[at] = self.value()
        elif op == 1:
            argv.insert(at, self.value() if self.chance(0.6) else self.word())
        elif op == 2 and len(argv) > 1 and at < len(argv):
            del argv[at]
        elif op == 3:
            argv += argv[max(1, at):]
        elif op == 4 and at < len(argv):
            argv[at] = self.sized()
        else:
            argv = argv[:at]
        return argv

    def tracking_on(self):
        """A CLIENT TRACKING ON for a tracking connection's start: BCAST and
        a few prefixes, sometimes with an option made long or mangled."""
        argv = [b"CLIENT", b"TRACKING", b"ON", b"BCAST"]
        for _ in range(self.rnd.randrange(3)):
            argv += [b"PREFIX", self.hinted("prefix")]
        if self.chance(0.3):
            argv = self.tracking_options(argv)
        return argv


# ---- encoding ---------------------------------------------------------------


def multibulk(argv):
    return b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in argv)


_PLAIN = re.compile(rb"^[!#-&(-\[\]-~]+$")  # printable, no space, no quotes, no backslash


def inline(argv):
    """ARGV as an inline command, quoted as sdssplitargs reads it, or None
    if it would be too long for one."""
    parts = []
    for a in argv:
        if _PLAIN.match(a):
            parts.append(a)
        else:
            parts.append(b'"' + b"".join(bytes([c]) if 32 < c < 127 and c not in b'"\\' else b"\\x%02x" % c
                                         for c in a) + b'"')
    line = b" ".join(parts)
    return line + b"\r\n" if len(line) < 16384 else None


# Requests Redis refuses with a protocol error and closes the connection for:
# a batch ending with one must see the connection closed.
MALFORMED = [b"*abc\r\n", b"*1\r\n:5\r\n", b"*1\r\n$abc\r\n", b"*1048577\r\n", b"*1\r\n$536870913\r\n",
             b"*2\r\n$3\r\nGET\r\n$-5\r\n", b'SET "abc\r\n', b"SET 'a\r\n", b'GET "a"b\r\n',
             b"PING " + b"x" * 70000 + b"\r\n"]


# ---- replies ----------------------------------------------------------------


class Incomplete(Exception):
    pass


class BadReply(Exception):
    pass


AGGREGATES = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}
LINES = b"+-:_,#("  # types whose payload is their one line


def parse(buf, pos, depth=0):
    """One reply of BUF at POS: ((type byte, value), next position). Value:
    bytes, an int, None, or a list of (type, value). Raises Incomplete or
    BadReply."""
    if depth > 64:
        raise BadReply("nested deeper than 64")
    end = buf.find(b"\r\n", pos)
    if end < 0:
        # A node's error may quote an argument (a 1 MiB group name in
        # NOGROUP's), so a line may be as long as the longest one sent.
        if len(buf) - pos > (4 << 20):
            raise BadReply(f"no CRLF in {len(buf) - pos} bytes at {bytes(buf[pos:pos + 40])!r}")
        raise Incomplete
    t, line = buf[pos], bytes(buf[pos + 1:end])
    if t in (ord("$"), ord("!"), ord("=")):
        n = _length(line, t)
        if n < 0:
            return (t, None), end + 2
        if len(buf) < end + 2 + n + 2:
            raise Incomplete
        if buf[end + 2 + n:end + 4 + n] != b"\r\n":
            raise BadReply(f"bulk of {n} bytes not followed by CRLF")
        return (t, bytes(buf[end + 2:end + 2 + n])), end + 4 + n
    if t in AGGREGATES:
        n = _length(line, t)
        if n < 0:
            return (t, None), end + 2
        items, at = [], end + 2
        for _ in range(n * AGGREGATES[t]):
            item, at = parse(buf, at, depth + 1)
            items.append(item)
        if t == ord("|"):  # an attribute precedes the reply it annotates
            return parse(buf, at, depth + 1)
        return (t, items), at
    if t in LINES:
        if t == ord(":") and not re.fullmatch(rb"[-+]?\d+", line):
            raise BadReply(f"integer reply {line[:40]!r}")
        if (t == ord("_") and line) or (t == ord("#") and line not in (b"t", b"f")):
            raise BadReply(f"{chr(t)!r} reply {line[:40]!r}")
        return (t, line), end + 2
    raise BadReply(f"type byte {bytes([t])!r} at {bytes(buf[pos:pos + 40])!r}")


def _length(line, t):
    if not re.fullmatch(rb"-?\d+", line):
        raise BadReply(f"length {line[:40]!r} after {bytes([t])!r}")
    n = int(line)
    if n < -1:
        raise BadReply(f"length {n}")
    return n


RESP3_ONLY = {ord(c) for c in "%~>_,#(=!|"}


def _resp3_type(item):
    """The first RESP3-only type byte in ITEM (type, value), or None."""
    t, v = item
    if t in RESP3_ONLY:
        return t
    if t == ord("*") and v:
        for x in v:
            found = _resp3_type(x)
            if found:
                return found
    return None


def _is_hello3(item):
    t, v = item
    return t == ord("%") and any(k == (ord("$"), b"proto") for k in v[0::2])


def exchange(sock, payload, want, check_proto=False, quiet=QUIET, cap=CAP):
    """Writes PAYLOAD to SOCK (non-blocking) while reading replies, until WANT:
    ("token", b) a bulk or status reply B; ("count", n) N replies that are
    not pushes; ("eof",) the peer closing. Returns (outcome, counts) with
    outcome "done", "eof" (closed before WANT), "hang" (nothing moved for
    QUIET seconds, or CAP passed) or "bad: why"; counts: replies, errors,
    pushes, last (the last reply's value). CHECK_PROTO: the connection speaks
    RESP2 from the start, RESP3 from a HELLO 3 reply (a map with "proto")
    until a +RESET, and PAYLOAD has no other HELLO and no CLIENT REPLY; a
    RESP3-only type while it speaks RESP2 is then bad."""
    proto = 2
    counts = {"replies": 0, "errors": 0, "pushes": 0, "last": None}
    view, sent = memoryview(payload), 0
    buf, pos = bytearray(), 0
    start = last = time.monotonic()
    writable = True
    while True:
        wr = [sock] if writable and sent < len(payload) else []
        r, w, _ = select.select([sock], wr, [], 0.2)
        moved = False
        if w:
            try:
                n = sock.send(view[sent:sent + 262144])
                sent += n
                moved = n > 0
            except BlockingIOError:
                pass
            except OSError:
                writable = False  # closed on us: what it said before is still to read
        if r:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data == b"":
                return ("done" if want[0] == "eof" else "eof"), counts
            if data:
                buf += data
                moved = True
                while True:
                    try:
                        (t, v), pos = parse(buf, pos)
                    except Incomplete:
                        break
                    except BadReply as e:
                        return f"bad: {e}", counts
                    if check_proto:
                        if _is_hello3((t, v)):
                            proto = 3
                        elif t == ord("+") and v == b"RESET":
                            proto = 2
                        elif proto == 2 and _resp3_type((t, v)):
                            return f"bad: {chr(_resp3_type((t, v)))!r} reply on a RESP2 connection", counts
                    if t == ord(">"):
                        counts["pushes"] += 1
                        continue
                    counts["replies"] += 1
                    counts["errors"] += t in (ord("-"), ord("!"))
                    counts["last"] = v[:60] if isinstance(v, bytes) else v
                    if want[0] == "token" and t in (ord("$"), ord("+")) and v == want[1]:
                        return "done", counts
                    if want[0] == "count" and counts["replies"] >= want[1]:
                        return "done", counts
                if pos > (1 << 20):
                    del buf[:pos]
                    pos = 0
        now = time.monotonic()
        if moved:
            last = now
        elif now - last > quiet or now - start > cap:
            return "hang", counts


# ---- the driver ---------------------------------------------------------------

MIXES = {
    "all": {"resp2": 3, "resp3": 3, "tracking": 2, "noauth": 1},
    "resp2": {"resp2": 4, "noauth": 1},
    "resp3": {"resp3": 3, "tracking": 2},
}


def connect(host, port, timeout=PROBE_TIMEOUT):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def call(host, port, password, *commands, timeout=PROBE_TIMEOUT):
    """Sends COMMANDS (argv lists) on a fresh connection, after AUTH when
    PASSWORD; returns the last reply (type, value), or None."""
    try:
        with connect(host, port, timeout) as s:
            cmds = ([[b"AUTH", password.encode()]] if password else []) + [list(c) for c in commands]
            buf, pos, last = bytearray(), 0, None
            s.sendall(b"".join(multibulk(c) for c in cmds))
            deadline = time.monotonic() + timeout
            got = 0
            while got < len(cmds):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([s], [], [], left)[0]:
                    return None
                data = s.recv(1 << 20)
                if not data:
                    return None
                buf += data
                while got < len(cmds):
                    try:
                        last, pos = parse(buf, pos)
                    except Incomplete:
                        break
                    if last[0] != ord(">"):
                        got += 1
            return last
    except (OSError, BadReply):
        return None


def load_docs(host, port, password):
    """The nodes' COMMAND DOCS through respgate, as {name: doc}, a doc a dict
    with "arguments" a list of dicts and "subcommands" {name: doc}; {} when
    the cluster has none (Redis 6.2)."""
    reply = call(host, port, password, [b"COMMAND", b"DOCS"], timeout=30)
    if not reply or reply[0] not in (ord("*"), ord("%")) or not reply[1]:
        return {}
    return _named_docs(reply[1])


def _named_docs(items):
    return {items[i][1].decode("latin-1").lower(): _doc(items[i + 1][1]) for i in range(0, len(items) - 1, 2)}


def _doc(items):
    """A flat [key, value, ...] reply (RESP2's map) as a dict."""
    d = {}
    for i in range(0, len(items or []) - 1, 2):
        key, v = items[i][1].decode("latin-1"), items[i + 1][1]
        if key == "arguments":
            d[key] = [_doc(a[1]) for a in v or []]
        elif key == "subcommands":
            d[key] = _named_docs(v or [])
        elif key == "flags":
            d[key] = [f[1].decode("latin-1") for f in v or []]
        elif isinstance(v, bytes):
            d[key] = v.decode("latin-1")
    return d


def _alive(pid):
    if pid is None:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _new_log_lines(path, offset):
    """(lines of PATH from OFFSET that a sanitizer wrote, new offset)."""
    if not path:
        return [], offset
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read()
    except OSError:
        return [], offset
    lines = [ln for ln in text.decode("latin-1").splitlines() if "Sanitizer" in ln or "runtime error:" in ln]
    return lines, offset + len(text)


def sent_names(argv, entries):
    """The names of ENTRIES that ARGV, as sent, is: its command's, and its
    subcommand's when it has one ("parent|sub")."""
    words = [a.lower().decode("latin-1") for a in argv[:2]]
    names = [words[0]] + (["|".join(words)] if len(words) > 1 else [])
    return [n for n in names if n in entries]


def describe(argv, limit=80):
    parts = []
    for a in argv:
        shown = repr(a[:limit])[2:-1]
        parts.append(shown + (f"...({len(a)} bytes)" if len(a) > limit else ""))
    return " ".join(parts)


def save_finding(crash_dir, what, detail, kind, seed, batch_no, session, batch, commands, prev_session):
    """Writes the session's bytes (what this connection sent, the batch
    last) to CRASH_DIR; returns the path of the .resp file."""
    os.makedirs(crash_dir, exist_ok=True)
    stem = os.path.join(crash_dir, f"{what}-seed{seed}-batch{batch_no}-{int(time.time())}")
    with open(stem + ".resp", "wb") as f:
        f.write(session)
    if prev_session:
        with open(stem + "-previous.resp", "wb") as f:
            f.write(prev_session)
    with open(stem + ".txt", "w") as f:
        f.write(f"{what}: {detail}\nconnection kind: {kind}; seed {seed}; batch {batch_no}\n"
                f"{stem}.resp: every byte this connection sent, the failing batch last "
                f"({len(batch)} bytes); replay: tests/fuzz/grammar.py --replay {stem}.resp\n\n")
        for i, line in enumerate(commands, 1):
            f.write(f"{i:4d} {line}\n")
    return stem + ".resp"


Batch = collections.namedtuple("Batch", "data want lines fuzzed inline check_proto")


def compose(gen, rnd, kind, pw, token):
    """One Batch for a connection of KIND: its bytes, what exchange() waits
    for, a line per command, the fuzzed commands' argvs, how many of them
    went inline, whether exchange() can check the protocol. TOKEN: bytes no
    reply to a fuzzed command can be.

    A prologue puts the connection in its kind's state, then come the
    fuzzed commands, then an epilogue whose reply says that all before it
    was answered: RESET undoes whatever the batch did to the session
    (MULTI, subscriptions, CLIENT REPLY OFF, tracking, RESP3), a second one
    answers even after CLIENT REPLY SKIP, and the ECHO of TOKEN is the end.
    A connection that never authenticates cannot change its state, so there
    every command gets exactly one reply, and those are counted instead.
    Now and then the epilogue is a malformed request instead, after which
    the connection must be closed."""
    gen.with_password = kind != "noauth"
    # Before AUTH a bulk over 16 KiB closes the connection; let most
    # batches of a connection that never authenticates live to the end.
    gen.longest = 20 if kind != "noauth" or rnd.random() < 0.1 else 13
    pro = []
    if kind != "noauth" and pw:
        pro.append([b"AUTH", pw])
    if kind in ("resp3", "tracking"):
        pro.append([b"HELLO", b"3"])
    if kind == "tracking":
        pro.append(gen.tracking_on())
    lines = [describe(c) for c in pro]
    body, fuzzed, inlined, check_proto = [], [], 0, True
    for _ in range(1 + min(rnd.randrange(64), rnd.randrange(64))):
        _, argv = gen.command()
        if argv[0].lower() == b"hello" or [a.lower() for a in argv[:2]] == [b"client", b"reply"]:
            check_proto = False
        enc = inline(argv) if rnd.random() < 0.08 and argv[0] else None
        inlined += enc is not None
        fuzzed.append(argv)
        body.append(enc or multibulk(argv))
        lines.append(("(inline) " if enc else "") + describe(argv))
    if rnd.random() < 0.03:
        epi = rnd.choice(MALFORMED)
        lines.append("(malformed) " + describe([epi]))
        want = ("eof",)
    elif kind == "noauth":
        epi = b""
        want = ("count", len(pro) + len(body))
    else:
        epi = b"".join(multibulk(c) for c in [[b"RESET"], [b"RESET"]] + ([[b"AUTH", pw]] if pw else [])
                       + [[b"ECHO", token]])
        lines.append("(epilogue) RESET, RESET, AUTH, ECHO " + token.decode())
        want = ("token", token)
    return Batch(b"".join(multibulk(c) for c in pro) + b"".join(body) + epi, want, lines, fuzzed, inlined,
                 check_proto)


CLEAN_UP = ([b"FLUSHALL"], [b"SCRIPT", b"FLUSH"], [b"FUNCTION", b"FLUSH"])


def run(host, port, password, seconds, seed, log=print, *, mix="all", pid=None, log_path=None,
        crash_dir=CRASH_DIR, max_batches=None, top=TOP):
    """Fuzzes the respgate at HOST:PORT (client password PASSWORD, or None)
    for SECONDS (and at most MAX_BATCHES batches) from SEED, saying what it
    does through LOG (a callable taking a str, or None). MIX names the
    connection kinds' shares (MIXES). PID: respgate's process, checked after
    every batch; LOG_PATH: its output, checked for sanitizer reports. The
    respgate should run with client.auth_max_failures: 0, since this sends
    wrong passwords on purpose and would slow its own AUTHs otherwise.

    Stops at the first finding. Returns the stats: commands, batches,
    inline (commands sent inline), replies, errors, pushes, closed
    (batches that ended with the connection closed), closed_after {the
    last reply before it: n}, bytes, connections
    {kind: n}, covered (sorted names sent), table_names, coverage (share of
    the table's names covered), seconds, seed, finding (None, or a dict
    what, detail, path)."""
    say = log or (lambda s: None)
    rnd = random.Random(seed)
    table = load_table(top)
    gen = Gen(rnd, table, load_local(top), load_docs(host, port, password), password)
    say(f"grammar: {len(table)} table names, {len(gen.names)} drawn ({len(EXCLUDED)} excluded), "
        f"COMMAND DOCS for {len(gen.docs)} commands, seed {seed}, mix {mix}")
    kinds = MIXES[mix]
    stats = {"commands": 0, "batches": 0, "inline": 0, "replies": 0, "errors": 0, "pushes": 0, "closed": 0,
             "bytes": 0, "closed_after": {}, "connections": {k: 0 for k in kinds}, "seed": seed, "finding": None}
    covered = set()
    log_offset = os.path.getsize(log_path) if log_path and os.path.exists(log_path) else 0
    deadline = time.monotonic() + seconds
    began = time.monotonic()
    sock, kind, session, prev_session, flushed_at = None, None, b"", b"", 0
    pw = password.encode() if password else None

    def finding(what, detail, batch, commands):
        if pid is not None and what != "crash":
            # An ASan report takes a moment to write; a process that is on
            # its way out was a crash, whatever was seen first.
            for _ in range(100):
                if not _alive(pid):
                    what, detail = "crash", f"respgate exited; before that: {detail}"
                    break
                time.sleep(0.1)
        path = save_finding(crash_dir, what, detail, kind, seed, stats["batches"], session, batch, commands,
                            prev_session)
        stats["finding"] = {"what": what, "detail": detail, "path": path}
        say(f"grammar: FINDING {what}: {detail}; batch saved in {path}")

    while time.monotonic() < deadline and (max_batches is None or stats["batches"] < max_batches):
        if sock is None:
            kind = rnd.choices(list(kinds), list(kinds.values()))[0]
            try:
                sock = connect(host, port)
            except OSError as e:
                finding("unresponsive", f"cannot connect: {e}", b"", [])
                break
            sock.setblocking(False)
            stats["connections"][kind] += 1
            prev_session, session = session, b""
        b = compose(gen, rnd, kind, pw, b"fz-end-%d-%d" % (seed, stats["batches"]))
        batch, want, lines = b.data, b.want, b.lines
        for argv in b.fuzzed:
            covered.update(sent_names(argv, gen.entries))
        session += batch
        stats["batches"] += 1
        stats["commands"] += len(b.fuzzed)
        stats["inline"] += b.inline
        stats["bytes"] += len(batch)
        outcome, counts = exchange(sock, batch, want, b.check_proto)
        for k in ("replies", "errors", "pushes"):
            stats[k] += counts[k]
        if outcome == "hang":
            finding("hang", f"nothing moved for {QUIET:.0f} s waiting for {want} on a {kind} connection, "
                    f"{counts['replies']} replies read", batch, lines)
            break
        if outcome.startswith("bad"):
            finding("bad-reply", f"{outcome[5:]}, after {counts['replies']} replies", batch, lines)
            break
        if outcome == "eof" or want[0] == "eof":
            stats["closed"] += 1
            why = "malformed request" if want[0] == "eof" else repr(counts["last"])[:60]
            stats["closed_after"][why] = stats["closed_after"].get(why, 0) + 1
            sock.close()
            sock = None
        elif rnd.random() < 0.3:
            sock.close()
            sock = None
        # Replies go out in bursts, so the culprit is the command after the
        # last reply read, or a later one.
        where = f"after {counts['replies']} replies: the culprit is command {counts['replies'] + 1} or a later one"
        # Still there, and still serving a newcomer?
        if not _alive(pid):
            finding("crash", f"respgate exited {where}", batch, lines)
            break
        pong = call(host, port, password, [b"PING"])
        if pong != (ord("+"), b"PONG"):
            finding("unresponsive", f"AUTH + PING on a fresh connection answered {pong!r} "
                    f"within {PROBE_TIMEOUT:.0f} s, {where}", batch, lines)
            break
        reports, log_offset = _new_log_lines(log_path, log_offset)
        if reports:
            finding("sanitizer", reports[0], batch, lines)
            break
        # Appended values, stored scripts and functions only grow: start
        # over now and then so that the nodes' memory stays small.
        if stats["bytes"] - flushed_at > (64 << 20):
            flushed_at = stats["bytes"]
            call(host, port, password, *CLEAN_UP, timeout=30)
    if sock is not None:
        sock.close()
    if stats["finding"] is None:
        # The cluster may serve other tests next: nothing of the fuzzer's stays.
        call(host, port, password, *CLEAN_UP, timeout=30)
    stats["seconds"] = round(time.monotonic() - began, 1)
    stats["covered"] = sorted(covered)
    stats["table_names"] = len(table)
    stats["coverage"] = len(covered & set(table)) / len(table)
    say("grammar: " + summary(stats))
    return stats


def summary(stats):
    conns = ", ".join(f"{k} {v}" for k, v in stats["connections"].items())
    found = stats["finding"]
    return (f"{stats['commands']} commands ({stats['inline']} inline) in {stats['batches']} batches, "
            f"{stats['seconds']} s, {stats['bytes'] / 1048576:.1f} MiB sent; "
            f"{len(set(stats['covered']))} names covered, {stats['coverage']:.0%} of the table's "
            f"{stats['table_names']}; {stats['replies']} replies ({stats['errors']} errors), "
            f"{stats['pushes']} pushes; {stats['closed']} closed; connections: {conns}; seed {stats['seed']}; "
            + (f"FINDING {found['what']}: {found['detail']} ({found['path']})" if found else "no finding"))


# ---- standalone: a cluster, an ASan respgate, and the fuzzer -----------------

CLUSTER_PASSWORD = "cluster-pw"
CLIENT_PASSWORD = "client-pw"


def fuzz_config(port, seeds, cluster_password, client_password, extra=""):
    """respgate's config for fuzzing: the harness's, with the slowing of
    failed AUTHs off (run()'s wrong passwords would slow its own)."""
    sys.path.insert(0, os.path.join(TOP, "tests"))
    from harness.respgate import yaml_config
    text = yaml_config(port, seeds, cluster_password, client_password, extra)
    return text.replace("\nclient:\n", "\nclient:\n  auth_max_failures: 0\n", 1)


def replay(path, respgate_port, password, pid):
    """Sends the bytes of PATH on one connection, reads for a while, and says
    whether respgate survived and still answers."""
    with open(path, "rb") as f:
        data = f.read()
    s = connect("127.0.0.1", respgate_port)
    s.setblocking(False)
    outcome, counts = exchange(s, data, ("eof",), quiet=5.0, cap=30.0)
    s.close()
    # Waiting for the end of a connection that respgate keeps open ends as
    # a "hang": here it only means that it said nothing more.
    outcome = {"hang": "still open", "done": "closed by respgate"}.get(outcome, outcome)
    time.sleep(0.5)
    pong = call("127.0.0.1", respgate_port, password, [b"PING"])
    ok = _alive(pid) and pong == (ord("+"), b"PONG")
    print(f"grammar: replayed {len(data)} bytes: {outcome}, {counts['replies']} replies; respgate "
          + ("alive and answering" if ok else f"NOT answering (alive: {_alive(pid)}, PING: {pong!r})"))
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description="grammar-driven fuzzing of a running ASan respgate")
    ap.add_argument("seconds", nargs="?", type=float, default=60)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--mix", choices=sorted(MIXES), default="all")
    ap.add_argument("--batches", type=int, default=None, help="stop after this many batches")
    ap.add_argument("--replay", metavar="FILE", help="send a saved batch instead of fuzzing")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % 1000000007

    sys.path.insert(0, os.path.join(TOP, "tests"))
    from harness.cluster import Cluster
    from harness.respgate import Respgate, free_port

    work = tempfile.mkdtemp(prefix="respgate-fuzz-live-")
    ok = False
    try:
        with Cluster(os.path.join(work, "cluster"), password=CLUSTER_PASSWORD) as cluster:
            port = free_port()
            rg = Respgate(os.path.join(work, "respgate"),
                          fuzz_config(port, cluster.seeds, CLUSTER_PASSWORD, CLIENT_PASSWORD), port)
            rg.start()
            try:
                if args.replay:
                    ok = replay(args.replay, port, CLIENT_PASSWORD, rg.pid)
                else:
                    stats = run("127.0.0.1", port, CLIENT_PASSWORD, args.seconds, seed, print, mix=args.mix,
                                pid=rg.pid, log_path=rg.log_path, max_batches=args.batches)
                    ok = stats["finding"] is None
            finally:
                code = rg.stop()
            report = rg.sanitizer_report()
            if report:
                print("grammar: respgate's sanitizers reported:\n" + report)
                ok = False
            if code not in (0, None) and ok:
                print(f"grammar: respgate exited with {code} when stopped")
                ok = False
            if not ok:
                os.makedirs(CRASH_DIR, exist_ok=True)
                what = "replay" if args.replay else f"seed{seed}"
                kept = os.path.join(CRASH_DIR, f"respgate-{what}-{int(time.time())}.log")
                shutil.copyfile(rg.log_path, kept)
                print(f"grammar: respgate's log kept in {kept}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
