# INFO through respgate answers as a single node of the cluster's version
# does (Redis 6.2 or 7.0, whichever REDIS_SERVER runs): the same sections for
# every form of the command, each with at least the node's fields, Redis's
# error for what the version refuses, counters summed over the masters, and
# blocked_clients counting respgate's own blocked clients.

import socket
import threading
import time

import pytest
import redis

from conftest import CLIENT_PASSWORD
from harness.cluster import REDIS_VERSION

FORMS = [(), ("default",), ("all",), ("everything",), ("server",), ("clients",), ("persistence",),
         ("replication",), ("cpu",), ("cluster",), ("commandstats",), ("errorstats",), ("latencystats",),
         ("nosuch",), ("server", "clients"), ("default", "commandstats"), ("keyspace", "memory", "stats")]
GROUPS = ("default", "all", "everything")  # respgate's own section is in these
# Fields whose presence depends on what ran or what is stored, not on the version.
VARIABLE = ("cmdstat_", "errorstat_", "latency_percentiles_usec_", "db")




def command_text(port, *args):
    """One command on a new connection: its bulk reply as text, or ("error", text)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(a)}\r\n{a}\r\n".encode() for a in args))
        f = sock.makefile("rb")
        head = f.readline()
        if head.startswith(b"-"):
            return ("error", head[1:].decode().strip())
        assert head.startswith(b"$"), head
        return f.read(int(head[1:]) + 2)[:-2].decode()


def raw_info(port, *args):
    """INFO's text as sections: [(title, [field names])], or ("error", text)."""
    text = command_text(port, "INFO", *args)
    if isinstance(text, tuple):
        return (text[0], text[1].removeprefix("ERR "))
    sections = []
    for line in text.split("\r\n"):
        if line.startswith("# "):
            sections.append((line[2:], []))
        elif ":" in line:
            sections[-1][1].append(line.split(":", 1)[0])
    return sections


def test_every_form_of_info_answers_as_a_single_node(respgate, single):
    r = respgate.client()
    s = single.client()
    for c in (r, s):  # something in commandstats and errorstats on both
        c.set("info:k", "v")
        with pytest.raises(redis.ResponseError):
            c.execute_command("INCR", "info:k")
    for form in FORMS:
        want, got = raw_info(single.port, *form), raw_info(respgate.port, *form)
        if want and want[0] == "error":
            assert got == want, form
            continue
        adds = ["Respgate"] if not form or set(form) & set(GROUPS) else []
        titles = [t for t, _ in want] + adds
        assert [t for t, _ in got] == titles, form
        for (title, fields), (_, ours) in zip(want, got):
            missing = [f for f in fields if not f.startswith(VARIABLE) and f not in ours]
            assert not missing, (form, title, missing)
    if REDIS_VERSION < (7, 0):
        assert raw_info(respgate.port, "server", "clients") == ("error", "syntax error")


def test_ioredis_ready_check(respgate):
    """What ioredis does before it reports ready: a bare INFO, then it reads
    `loading`. On a 6.2 cluster this was `-ERR syntax error`."""
    body = command_text(respgate.port, "INFO")
    fields = dict(line.split(":", 1) for line in body.split("\r\n") if ":" in line)
    assert fields["loading"] == "0"
    assert fields["redis_mode"] == "standalone"
    assert fields["redis_version"] == ".".join(map(str, REDIS_VERSION))


def test_persistence_and_stats_are_summed_over_the_masters(cluster, respgate):
    r = respgate.client()
    masters = [cluster.client(m) for m in cluster.masters()]
    r.flushall()
    for m in masters:  # flushes count as changes; start from a known sum
        m.execute_command("SAVE")
    r.mset({f"persist:{i}": i for i in range(30)})
    direct = sum(m.info("persistence")["rdb_changes_since_last_save"] for m in masters)
    assert direct == 30
    assert r.info("persistence")["rdb_changes_since_last_save"] == direct
    assert r.info("persistence")["rdb_last_save_time"] == min(
        m.info("persistence")["rdb_last_save_time"] for m in masters)
    before = sum(m.info("stats")["total_commands_processed"] for m in masters)
    ours = r.info("stats")["total_commands_processed"]
    after = sum(m.info("stats")["total_commands_processed"] for m in masters)
    assert before <= ours <= after
    memory = r.info("memory")
    assert memory["used_memory"] >= max(m.info("memory")["used_memory"] for m in masters)
    assert memory["used_memory_human"].endswith(("K", "M", "G"))


def blocked(r):
    return r.info("clients")["blocked_clients"]


def wait_for(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("command", [
    ("BLPOP", "info:list", "0"),
    ("XREAD", "BLOCK", "0", "STREAMS", "info:stream", "$"),
    ("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "info:stream", ">"),
])
def test_blocked_clients_counts_respgates_blocked_clients(respgate, command):
    r = respgate.client()
    r.delete("info:list", "info:stream")
    r.xgroup_create("info:stream", "g", id="$", mkstream=True)
    assert blocked(r) == 0
    result = []
    waiter = respgate.client()
    t = threading.Thread(target=lambda: result.append(waiter.execute_command(*command)))
    t.start()
    try:
        assert wait_for(lambda: blocked(r) == 1), "the blocked client was not counted"
    finally:
        # respgate counts the client once it sent the command; the node may
        # run an XADD that overtakes it before XREAD ... $ blocks, which then
        # waits for a newer entry: write again until it returns (bounded).
        deadline = time.monotonic() + 10
        while t.is_alive() and time.monotonic() < deadline:
            r.rpush("info:list", "x")
            r.xadd("info:stream", {"f": "v"})
            t.join(0.5)
    assert result and not t.is_alive()
    assert wait_for(lambda: blocked(r) == 0)


def test_a_client_leaving_while_blocked_is_no_longer_counted(respgate):
    r = respgate.client()
    sock = socket.create_connection(("127.0.0.1", respgate.port), timeout=10)
    sock.sendall(b"*3\r\n$5\r\nBLPOP\r\n$10\r\ninfo:never\r\n$1\r\n0\r\n")
    assert wait_for(lambda: blocked(r) == 1)
    sock.close()
    assert wait_for(lambda: blocked(r) == 0)


def test_info_with_a_client_password(make_respgate):
    rg = make_respgate(client_password=CLIENT_PASSWORD)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=rg.port).info()
    assert "redis_version" in rg.client(password=CLIENT_PASSWORD).info()
