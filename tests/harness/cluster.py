# tests/harness/cluster.py - a throwaway local Redis Cluster for respgate.
#
# Starts real redis-server processes (3 masters + 3 replicas by default) on
# 127.0.0.1 with free ports picked at run time and a password, wires them into
# a cluster without `redis-cli --cluster create` (which sleeps), and waits
# until every node agrees the cluster is healthy. Used two ways:
#
#   * from tests:  with Cluster(tmpdir) as c: ... c.seeds, c.client(port), ...
#   * by hand:     /usr/bin/python3 tests/harness/cluster.py up --dir DIR
#                  (stays in the foreground; Ctrl-C / SIGTERM stops the nodes)
#
# Needs Debian's python3 with python3-redis and /usr/bin/redis-server (7.0).
# Every process it starts is tracked by PID and stopped by stop(), at
# interpreter exit, or on SIGINT/SIGTERM in the CLI; it never kills by name.

import argparse
import atexit
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import redis

try:
    from . import certs as _certs
except ImportError:  # run as a script: tests/harness/cluster.py up
    import certs as _certs

REDIS_SERVER = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")


def _server_version(binary):
    """(major, minor, patch) of BINARY, from `redis-server --version`."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return (0, 0, 0)
    m = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


# The version of the redis-server the tests run (REDIS_SERVER: Debian's 7.0,
# or 6.2.6 from dev/redis62).
REDIS_VERSION = _server_version(REDIS_SERVER)
HOST = "127.0.0.1"
DEFAULT_PASSWORD = "respgate-test-pw"
BUS_PORT_OFFSET = 10000  # Redis's default cluster bus port is port + 10000
SLOT_COUNT = 16384
POLL_INTERVAL = 0.05
START_ATTEMPTS = 5  # port races are rare; more than a few in a row means a real problem
STOP_GRACE = 3.0


class ClusterError(RuntimeError):
    """The cluster could not be started, or did not reach the awaited state."""


class _PortConflict(Exception):
    """A node could not bind a port that was free when it was picked."""


# One line of CLUSTER NODES, reduced to what the harness looks at.
NodeEntry = collections.namedtuple("NodeEntry", "node_id port flags master_id config_epoch slots")


def pick_ports(count):
    """Return `count` ports P, free now on 127.0.0.1 together with P + 10000.

    All probe sockets stay bound until the whole set is chosen, so no port
    (or bus port) is handed out twice within one set. Another process may
    still take one before redis-server binds it; start() retries for that.
    """
    held, ports = [], []
    try:
        for _ in range(100 * count):
            if len(ports) == count:
                return ports
            probe = socket.socket()
            held.append(probe)
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
            if port + BUS_PORT_OFFSET > 65535:
                continue
            bus = socket.socket()
            held.append(bus)
            try:
                bus.bind((HOST, port + BUS_PORT_OFFSET))
            except OSError:
                continue
            ports.append(port)
        raise ClusterError(f"found only {len(ports)} of {count} free port pairs (P, P+{BUS_PORT_OFFSET})")
    finally:
        for s in held:
            s.close()


def crc16(data):
    """CRC16/XMODEM, the cluster spec's key hash."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def keyslot(key):
    """The slot of KEY (bytes or str), {hash tags} included."""
    if isinstance(key, str):
        key = key.encode()
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    return crc16(key) % SLOT_COUNT


def slot_ranges(masters):
    """Split the slots into `masters` contiguous ranges, as redis-cli does."""
    bounds = [round(i * SLOT_COUNT / masters) for i in range(masters + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


def parse_cluster_nodes(text):
    """Parse CLUSTER NODES output into {node_id: NodeEntry}."""
    view = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        node_id, addr, flags, master_id = fields[:4]
        # addr is ip:port@busport[,hostname]; a node still in handshake may show ":0@0".
        port = int(addr.split("@")[0].rsplit(":", 1)[1] or 0)
        slots = []
        for item in fields[8:]:
            if item.startswith("["):  # a slot being migrated/imported, not owned
                continue
            lo, _, hi = item.partition("-")
            slots.append((int(lo), int(hi or lo)))
        view[node_id] = NodeEntry(node_id, port, set(flags.split(",")),
                                  None if master_id == "-" else master_id, int(fields[6]), slots)
    return view


def slot_map(view):
    """Sorted (first, last, owner_id) ranges of a CLUSTER NODES view."""
    return sorted((lo, hi, e.node_id) for e in view.values() for lo, hi in e.slots)


def _tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e})\n"


def _close_clients(node):
    for client in (node.admin, node.changer):
        if client:
            client.close()
    node.admin = node.changer = None


def _terminate(procs, grace=STOP_GRACE):
    """SIGTERM the processes, SIGKILL whatever is left after `grace` s, reap all."""
    live = [p for p in procs if p.poll() is None]
    for p in live:
        p.send_signal(signal.SIGTERM)
        p.send_signal(signal.SIGCONT)  # a paused node only acts on SIGTERM once continued
    deadline = time.monotonic() + grace
    for p in live:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Node:
    """One redis-server of the cluster; `role` is as last seen in CLUSTER NODES."""

    def __init__(self, port, basedir):
        self.port = port
        self.dir = os.path.join(basedir, f"node-{port}")
        self.conf = os.path.join(self.dir, "redis.conf")
        self.logfile = os.path.join(self.dir, "redis.log")
        self.proc = None
        self.node_id = None
        self.role = None
        self.paused = False
        self.admin = None    # the harness's own clients, see Cluster._admin
        self.changer = None  # and Cluster._change

    @property
    def addr(self):
        return f"{HOST}:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def running(self):
        """Alive and not paused, i.e. expected to answer."""
        return self.proc is not None and self.proc.poll() is None and not self.paused

    def __repr__(self):
        return f"<Node {self.addr} pid={self.pid} {self.role} {(self.node_id or '?')[:8]}>"


class Cluster:
    def __init__(self, basedir, masters=3, replicas=1, password=DEFAULT_PASSWORD,
                 node_timeout_ms=2000, username=None, extra_config=(), tls=None, tls_auth_clients="optional"):
        # tls=False: plain even under RESPGATE_TEST_TLS=1
        self.basedir = os.path.abspath(basedir)
        self.n_masters = masters
        self.n_replicas = masters * replicas
        self.password = password
        self.username = username
        self.node_timeout_ms = node_timeout_ms
        self.extra_config = list(extra_config)  # more lines for every node's config
        # tls: a harness.certs.Certs; the nodes then speak TLS only (port 0,
        # tls-port, tls-cluster and tls-replication yes), and node.port is
        # the TLS port.
        self.tls = tls if tls is not None else (_certs.shared() if _certs.TLS_MODE else None)
        self.tls_auth_clients = tls_auth_clients
        self.nodes = []  # the first n_masters are the initial masters
        self.startup_seconds = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def seeds(self):
        """Addresses of the initial masters (they stay valid seeds after a failover)."""
        return [n.addr for n in self.nodes[:self.n_masters]]

    # --- starting -----------------------------------------------------------

    def start(self):
        if self.nodes:
            raise ClusterError("cluster already started")
        began = time.monotonic()
        os.makedirs(self.basedir, exist_ok=True)
        atexit.register(self.stop)
        try:
            self._spawn_all()
            self._build()
        except BaseException:
            # Nobody calls stop() after a failed start (__exit__ and fixture
            # finalizers don't run when setup raises), so do it here.
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _spawn_all(self):
        total = self.n_masters + self.n_replicas
        for attempt in range(1, START_ATTEMPTS + 1):
            self.nodes = [Node(port, self.basedir) for port in pick_ports(total)]
            try:
                for node in self.nodes:
                    self._write_config(node)
                    self._spawn(node)
                for node in self.nodes:
                    self._wait_ready(node)
                return
            except _PortConflict as conflict:
                _terminate([n.proc for n in self.nodes if n.proc])
                for node in self.nodes:
                    shutil.rmtree(node.dir, ignore_errors=True)
                self.nodes = []
                if attempt == START_ATTEMPTS:
                    raise ClusterError(f"ports kept getting taken, gave up after {attempt} attempts: {conflict}")

    def _write_config(self, node):
        # A leftover nodes-PORT.conf from an earlier run in the same basedir
        # would make the node rejoin that old cluster: start from an empty dir.
        shutil.rmtree(node.dir, ignore_errors=True)
        os.makedirs(node.dir)
        if self.tls:
            ports = ["port 0", f"tls-port {node.port}", f"tls-cert-file {self.tls.server}",
                     f"tls-key-file {self.tls.server_key}", f"tls-ca-cert-file {self.tls.ca}",
                     "tls-cluster yes", "tls-replication yes", f"tls-auth-clients {self.tls_auth_clients}"]
        else:
            ports = [f"port {node.port}"]
        lines = [
            f"bind {HOST}",
            *ports,
            "protected-mode yes",
            "daemonize no",
            f"dir {node.dir}",
            f"logfile {node.logfile}",
            "cluster-enabled yes",
            f"cluster-config-file nodes-{node.port}.conf",
            f"cluster-node-timeout {self.node_timeout_ms}",
            f"requirepass {self.password}",
            f"masterauth {self.password}",
            "appendonly no",
            'save ""',
            # Diskless full sync waits 5 s by default for more replicas to
            # join; that would be most of the start-up time.
            "repl-diskless-sync-delay 0",
        ]
        lines += self.extra_config
        if self.username:
            lines += [f"user {self.username} on >{self.password} ~* &* +@all",
                      f"masteruser {self.username}"]
        with open(node.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _spawn(self, node):
        node.paused = False
        _close_clients(node)
        # Early errors (bad config) go to stderr, so send it to the log too.
        # The nodes stay in the harness's process group on purpose: a Ctrl-C
        # or a group-wide kill (timeout(1), a CI runner) reaches them as well,
        # so they go down even if the harness dies before it can stop them.
        with open(node.logfile, "ab") as log:
            node.proc = subprocess.Popen([REDIS_SERVER, node.conf], cwd=node.dir,
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)

    def _wait_ready(self, node, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            if node.proc.poll() is not None:
                tail = _tail(node.logfile)
                if "Address already in use" in tail:
                    raise _PortConflict(f"{node.addr} (or its bus port) was taken")
                raise ClusterError(f"redis-server {node.addr} exited with status "
                                   f"{node.proc.returncode} while starting; log tail:\n{tail}")
            try:
                # Check the PID: if our node lost a bind race, whoever won
                # (maybe a node of another test cluster, same password) answers.
                if self._admin(node).info("server")["process_id"] == node.pid:
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"redis-server {node.addr} (pid {node.pid}) did not answer "
                                   f"within {timeout} s; log tail:\n{_tail(node.logfile)}")
            time.sleep(POLL_INTERVAL)

    def _build(self):
        masters, replicas = self.nodes[:self.n_masters], self.nodes[self.n_masters:]
        for epoch, node in enumerate(self.nodes, 1):
            node.node_id = self._cmd(node, "CLUSTER", "MYID")
            # Distinct config epochs up front, as redis-cli does, so the nodes
            # need no epoch-collision rounds before they settle.
            self._change(node, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for node, (lo, hi) in zip(masters, slot_ranges(self.n_masters)):
            self._change(node, "CLUSTER", "ADDSLOTS", *range(lo, hi + 1))  # ADDSLOTSRANGE is 7.0 only
            node.role = "master"
        # Meeting only the first node would leave the rest to gossip, which
        # takes 1-2 s; a MEET per pair has the mesh complete in ~0.1 s.
        for i, node in enumerate(self.nodes):
            for other in self.nodes[i + 1:]:
                self._change(node, "CLUSTER", "MEET", HOST, other.port)
        ids = {n.node_id for n in self.nodes}
        self._poll("every node to know all nodes", lambda: self._problem_unknown_nodes(ids))
        # Replica i follows master i+1: crossed over as in the real deployment,
        # where the replica on a host never backs up that same host's master.
        replicas_of = {m.node_id: [] for m in masters}
        for i, node in enumerate(replicas):
            master = masters[(i + 1) % self.n_masters]
            self._change(node, "CLUSTER", "REPLICATE", master.node_id)
            replicas_of[master.node_id].append(node.node_id)
            node.role = "replica"
        self._poll("replicas to sync with their masters", lambda: self._problem_unlinked(replicas))
        # CLUSTER SLOTS leaves out replicas whose replication offset is still 0
        # (taken for not synced yet), and an idle master first moves it with
        # its replication PING, 10 s later. A write that replicates, harmless
        # on these empty masters, moves it now.
        for node in masters:
            self._cmd(node, "FLUSHALL")
        # CLUSTER SLOTS shape: [first, last, master id, sorted replica ids].
        expected = sorted([lo, hi, m.node_id, sorted(replicas_of[m.node_id])]
                          for m, (lo, hi) in zip(masters, slot_ranges(self.n_masters)))
        self._poll("the cluster to converge", lambda: self._problem_not_converged(expected))

    # --- checks (each returns None when fine, else what is still wrong) -----

    def _problem_unknown_nodes(self, ids):
        for node in self.nodes:
            view = parse_cluster_nodes(self._cmd(node, "CLUSTER", "NODES"))
            missing = ids - set(view)
            if missing:
                return f"{node.addr} does not know {len(missing)} node(s) yet"
            pending = [e.node_id for e in view.values() if e.flags & {"handshake", "noaddr"}]
            if pending:
                return f"{node.addr} is still in handshake with {len(pending)} node(s)"
        return None

    def _problem_unlinked(self, replicas):
        for node in replicas:
            link = self._admin(node).info("replication").get("master_link_status")
            if link != "up":
                return f"replica {node.addr} has master_link_status:{link}"
        return None

    def _problem_not_converged(self, expected):
        for node in self.nodes:
            problem = self._problem_state_ok(node)
            if problem:
                return problem
            seen = sorted([lo, hi, master[2], sorted(r[2] for r in replicas)]
                          for lo, hi, master, *replicas in self._cmd(node, "CLUSTER", "SLOTS"))
            if seen != expected:
                return f"{node.addr} does not yet show the expected masters and replicas in CLUSTER SLOTS"
        return None

    def _problem_view_differs(self, node):
        mine = slot_map(parse_cluster_nodes(self._cmd(node, "CLUSTER", "NODES")))
        return None if mine == slot_map(self._view()) else f"{node.addr} does not know every slot's owner yet"

    def _problem_epochs_unsettled(self):
        seen = None
        for node in self.nodes:
            if not node.running:
                continue
            info = self._cmd(node, "CLUSTER", "INFO")
            current = next(l for l in info.splitlines() if l.startswith("cluster_current_epoch:"))
            view = parse_cluster_nodes(self._cmd(node, "CLUSTER", "NODES"))
            epochs = sorted(e.config_epoch for e in view.values() if e.slots)
            if len(set(epochs)) != len(epochs):
                return f"{node.addr} sees masters with the same config epoch: {epochs}"
            if seen is not None and (current, epochs) != seen:
                return f"{node.addr} sees {current} and config epochs {epochs}, another node {seen}"
            seen = (current, epochs)
        return None

    def _problem_state_ok(self, node):
        state = self._cmd(node, "CLUSTER", "INFO").splitlines()[0]
        return None if state == "cluster_state:ok" else f"{node.addr} reports {state}"

    def _problem_not_serving(self):
        live = {n.node_id: n for n in self.nodes if n.running}
        if not live:
            return "no node is running"
        maps = {}
        for node in live.values():
            problem = self._problem_state_ok(node)
            if problem:
                return problem
            maps[node.addr] = slot_map(parse_cluster_nodes(self._cmd(node, "CLUSTER", "NODES")))
        first_addr, first_map = next(iter(maps.items()))
        for addr, other in maps.items():
            if other != first_map:
                return f"{addr} and {first_addr} disagree on slot owners"
        if sum(hi - lo + 1 for lo, hi, _ in first_map) != SLOT_COUNT:
            return "not all slots are assigned"
        for lo, hi, owner in first_map:
            if owner not in live:
                return f"slots {lo}-{hi} are owned by a node that is down or paused"
        return None

    def _poll(self, what, check, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                problem = check()
            except redis.RedisError as e:
                problem = f"{type(e).__name__}: {e}"
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out after {timeout} s waiting for {what}: {problem}\n"
                                   + self._log_tails())
            time.sleep(POLL_INTERVAL)

    def _log_tails(self):
        return "".join(f"--- {n.logfile} (pid {n.pid}) ---\n{_tail(n.logfile, 10)}"
                       for n in self.nodes)

    # --- talking to nodes ---------------------------------------------------

    def _admin(self, node):
        # Short timeouts: a paused or dying node must not stall a poll loop.
        if node.admin is None:
            node.admin = self.client(node, socket_timeout=2, socket_connect_timeout=1)
        return node.admin

    def _cmd(self, node, *args):
        return self._admin(node).execute_command(*args)

    def _change(self, node, *args):
        # A command that changes the node's cluster config answers only after
        # nodes.conf is written and fsynced, which took over 2 s in CI on a
        # disk still flushing the Redis build: a long timeout, and no retry.
        if node.changer is None:
            node.changer = self.client(node, socket_timeout=30, socket_connect_timeout=1)
        return node.changer.execute_command(*args)

    def client(self, node_or_port, **kwargs):
        """A new authenticated (non-cluster) redis.Redis talking to one node."""
        port = node_or_port.port if isinstance(node_or_port, Node) else node_or_port
        options = dict(host=HOST, port=port, username=self.username, password=self.password,
                       decode_responses=True, socket_timeout=5)
        if self.tls:
            options.update(ssl=True, ssl_ca_certs=self.tls.ca, ssl_certfile=self.tls.client,
                           ssl_keyfile=self.tls.client_key)
        options.update(kwargs)
        return redis.Redis(**options)

    def _view(self):
        """CLUSTER NODES as seen by the first running node that answers; updates roles."""
        for node in self.nodes:
            if not node.running:
                continue
            try:
                view = parse_cluster_nodes(self._cmd(node, "CLUSTER", "NODES"))
            except redis.RedisError:
                continue
            for n in self.nodes:
                if n.node_id in view:
                    n.role = "replica" if "slave" in view[n.node_id].flags else "master"
            return view
        raise ClusterError("no running node answers CLUSTER NODES")

    def slot_owners(self, slot):
        """{port: the port of SLOT's owner in that node's CLUSTER NODES} for
        every running node: what a test prints when the nodes may disagree."""
        owners = {}
        for node in self.nodes:
            if not node.running:
                continue
            try:
                view = parse_cluster_nodes(self._cmd(node, "CLUSTER", "NODES"))
            except redis.RedisError as e:
                owners[node.port] = str(e)
                continue
            owner = next((i for lo, hi, i in slot_map(view) if lo <= slot <= hi), None)
            owners[node.port] = self._by_id(owner).port if owner else None
        return owners

    def _by_id(self, node_id):
        return next(n for n in self.nodes if n.node_id == node_id)

    def masters(self):
        """Nodes that currently own slots (a failed old master owns none)."""
        view = self._view()
        return [n for n in self.nodes if n.node_id in view and view[n.node_id].slots]

    def replicas(self):
        view = self._view()
        return [n for n in self.nodes if n.node_id in view and "slave" in view[n.node_id].flags]

    def master_of(self, replica):
        return self._by_id(self._view()[replica.node_id].master_id)

    def node_for_slot(self, slot):
        for lo, hi, owner in slot_map(self._view()):
            if lo <= slot <= hi:
                return self._by_id(owner)
        raise ClusterError(f"slot {slot} is not assigned")

    # --- failure injection --------------------------------------------------

    def kill(self, node, sig=signal.SIGKILL):
        """Send `sig` and wait (bounded) for the node to exit."""
        node.proc.send_signal(sig)
        if node.paused:
            node.proc.send_signal(signal.SIGCONT)
            node.paused = False
        try:
            node.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{node!r} did not exit within 10 s of signal {sig}") from None

    def pause(self, node):
        node.proc.send_signal(signal.SIGSTOP)
        node.paused = True

    def resume(self, node):
        node.proc.send_signal(signal.SIGCONT)
        node.paused = False

    def restart(self, node):
        """Stop the node if needed and start it again on the same port and dir.

        It keeps its node ID (nodes-PORT.conf) but, with persistence off, not
        its data. Call wait_state_ok() to wait for the cluster to settle.
        """
        _terminate([node.proc])
        self._spawn(node)
        try:
            self._wait_ready(node)
        except _PortConflict:
            raise ClusterError(f"cannot restart {node.addr}: its port was taken meanwhile") from None

    def add_master(self):
        """Start one more node and have it join as a master without slots."""
        node = Node(pick_ports(1)[0], self.basedir)
        self._write_config(node)
        self._spawn(node)
        self.nodes.append(node)
        self._wait_ready(node)
        node.node_id = self._cmd(node, "CLUSTER", "MYID")
        for other in self.nodes[:-1]:
            if other.running:
                self._change(other, "CLUSTER", "MEET", HOST, node.port)
        ids = {n.node_id for n in self.nodes if n.running}
        self._poll("every node to know the new one", lambda: self._problem_unknown_nodes(ids))
        self._poll("the new node to find the cluster ok", lambda: self._problem_state_ok(node))
        self._poll("the new node to know every slot's owner", lambda: self._problem_view_differs(node))
        node.role = "master"
        return node

    def move_slots(self, slots, dst):
        """Migrate SLOTS (with their keys) to master DST, as redis-cli --cluster
        reshard does: IMPORTING/MIGRATING, MIGRATE in batches, then NODE on
        the destination first, the source next, the others last. The
        destination first takes the highest config epoch (take_highest_epoch)."""
        self.take_highest_epoch(dst)
        for slot in slots:
            src = self.node_for_slot(slot)
            if src is dst:
                continue
            self._change(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id)
            self._change(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst.node_id)
            while keys := self._change(src, "CLUSTER", "GETKEYSINSLOT", slot, 100):
                self._change(src, "MIGRATE", HOST, dst.port, "", 0, 5000, "AUTH", self.password, "KEYS", *keys)
            self._change(dst, "CLUSTER", "SETSLOT", slot, "NODE", dst.node_id)
            for node in [src] + [m for m in self.masters() if m is not dst and m is not src]:
                try:
                    self._change(node, "CLUSTER", "SETSLOT", slot, "NODE", dst.node_id)
                except redis.ResponseError as e:
                    # A master that gave its last slot away turns into a
                    # replica of the taker (Redis 7): it learns by gossip.
                    if "only with masters" not in str(e):
                        raise

    def remove_node(self, node):
        """Forget NODE (which must own no slots; by then Redis may have made
        it a replica) everywhere, then stop it."""
        for other in self.nodes:
            if other is not node and other.running:
                self._change(other, "CLUSTER", "FORGET", node.node_id)
        _terminate([node.proc])
        _close_clients(node)
        self.nodes.remove(node)

    def take_highest_epoch(self, node, timeout=30.0):
        """Make master NODE's config epoch the highest, before it takes a
        slot: its claim then wins in gossip over the old owner's replica,
        which goes on claiming the slot for its master until it hears
        otherwise (a node that gives a slot up to a higher epoch deletes its
        keys). The bump waits until every running node has the same current
        epoch and sees distinct config epochs: bumped from a current epoch
        that has not yet heard of the last bump, NODE ties with that bump's
        master, the tie is broken by node ID, and if the old owner wins, its
        replica takes the slot back, keys and all (seen in CI on 6.2)."""
        self._poll("the nodes to agree on distinct config epochs", self._problem_epochs_unsettled, timeout)
        self._change(node, "CLUSTER", "BUMPEPOCH")

    def wait_state_ok(self, timeout=30.0):
        """Wait until every running node says cluster_state:ok, they all agree on
        who owns which slot, and every slot is owned by a running node."""
        self._poll("cluster_state:ok on all running nodes", self._problem_not_serving, timeout)

    # --- stopping -----------------------------------------------------------

    def stop(self, cleanup=False):
        """Stop every node this harness started (by PID). Safe to call again."""
        _terminate([n.proc for n in self.nodes if n.proc])
        for node in self.nodes:
            _close_clients(node)
        atexit.unregister(self.stop)
        if cleanup:
            shutil.rmtree(self.basedir, ignore_errors=True)

    # --- CLI support ----------------------------------------------------------

    def describe(self):
        view = self._view()
        rows = [("ROLE", "ADDRESS", "PID", "NODE ID", "SLOTS / MASTER")]
        for node in self.nodes:
            entry = view[node.node_id]
            if entry.master_id:
                detail = f"replica of {self._by_id(entry.master_id).addr}"
            else:
                detail = " ".join(f"{lo}-{hi}" for lo, hi in entry.slots)
            rows.append((node.role, node.addr, str(node.pid), node.node_id[:8], detail))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4]
                         for row in rows)

    def state(self):
        return {
            "pid": os.getpid(),
            "password": self.password,
            "username": self.username,
            "seeds": self.seeds,
            "nodes": [{"addr": n.addr, "port": n.port, "pid": n.pid, "node_id": n.node_id,
                       "role": n.role, "dir": n.dir, "logfile": n.logfile} for n in self.nodes],
        }


class _Shutdown(Exception):
    pass


def _write_json_atomically(path, data):
    # Readers may poll for the file: let them never see it half written.
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run a local Redis Cluster for respgate.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the cluster and keep it up until SIGINT/SIGTERM")
    up.add_argument("--dir", required=True, help="directory for node configs, data and logs")
    up.add_argument("--password", default=DEFAULT_PASSWORD)
    up.add_argument("--node-timeout", type=int, default=2000, metavar="MS",
                    help="cluster-node-timeout in milliseconds (default 2000)")
    up.add_argument("--state-file", help="write ports, pids, password and seeds here as JSON "
                    "once the cluster is up; removed again on shutdown")
    args = parser.parse_args(argv)

    def on_signal(signum, frame):
        # Ignore repeats so a second Ctrl-C cannot cut the orderly stop short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Shutdown(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    cluster = Cluster(args.dir, password=args.password, node_timeout_ms=args.node_timeout)
    try:
        if args.state_file and os.path.exists(args.state_file):
            os.remove(args.state_file)  # a stale file must not look like a cluster that is up
        cluster.start()
        print(f"Redis Cluster up in {cluster.startup_seconds:.2f} s "
              f"(password {args.password!r}, dir {cluster.basedir})")
        print(cluster.describe())
        print(f"seeds: {','.join(cluster.seeds)}")
        print(f"try:   redis-cli -c -p {cluster.nodes[0].port} -a {args.password!r} --no-auth-warning")
        if args.state_file:
            _write_json_atomically(args.state_file, cluster.state())
            print(f"state: {args.state_file}")
        print("SIGINT (Ctrl-C) or SIGTERM stops every node.", flush=True)
        while True:
            signal.pause()
    except _Shutdown as why:
        print(f"{why}: stopping the cluster", flush=True)
        return 0
    except (ClusterError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        if args.state_file:
            try:
                os.remove(args.state_file)
            except FileNotFoundError:
                pass


if __name__ == "__main__":
    sys.exit(main())
