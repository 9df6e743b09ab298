# tests/harness/respgate.py - a respgate process for tests.
#
# Writes a config file, starts the respgate binary on a free port on
# 127.0.0.1, waits until it accepts connections and logs that it is ready, and
# stops it by PID (SIGTERM, then SIGKILL after a grace period), also at
# interpreter exit. The binary is $RESPGATE_BIN, else build/test/src/respgate.

import atexit
import json
import os
import signal
import socket
import subprocess
import time

import redis

from . import certs
from .cluster import pick_ports

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("RESPGATE_BIN", os.path.join(TOP, "build", "test", "src", "respgate"))
READY_TIMEOUT = 15.0
STOP_GRACE = 15.0

_live = set()


@atexit.register
def _stop_all():
    for p in list(_live):
        p.stop()


def live_logs(lines=80):
    """(port, the last LINES lines of its log) of every respgate running
    now: what a failed test shows of them."""
    return [(p.port, "\n".join(p.log().splitlines()[-lines:])) for p in list(_live)]


def free_port():
    return pick_ports(1)[0]


def yaml_config(port, seeds, cluster_password=None, client_password=None, extra="", cluster_tls=None, listen=None):
    """A respgate config as YAML text; EXTRA is appended verbatim. Two
    workers unless EXTRA says: what crosses between workers is tested
    whatever `auto` picks on the machine (one on 2 CPUs). CLUSTER_TLS: the
    harness.certs.Certs of a TLS cluster (under RESPGATE_TEST_TLS=1, the
    shared one); LISTEN: the listen list's entries, instead of PORT's."""
    entries = listen or [f"127.0.0.1:{port}"]
    quoted = [json.dumps(e) if " " in e else e for e in entries]
    lines = [f"listen: [{', '.join(quoted)}]"] + ([] if "workers:" in extra else ["workers: 2"])
    lines += ["cluster:", f"  seeds: [{', '.join(seeds)}]"]
    if cluster_tls is None and certs.TLS_MODE:
        cluster_tls = certs.shared()
    if cluster_tls:
        lines += certs.cluster_tls_yaml(cluster_tls)
    if cluster_password:
        lines.append(f'  password: "{cluster_password}"')
    if client_password:
        lines += ["client:", f'  password: "{client_password}"']
    return "\n".join(lines) + "\n" + extra


class Respgate:
    """One respgate process. `conf_text` is the whole config; `port` the one it listens on."""

    def __init__(self, basedir, conf_text, port, args=(), env=None, binary=None):
        self.binary = binary or BINARY
        self.basedir = str(basedir)
        os.makedirs(self.basedir, exist_ok=True)
        self.port = port
        self.conf_path = os.path.join(self.basedir, "respgate.yml")
        self.log_path = os.path.join(self.basedir, "respgate.out")
        self.args = list(args)
        self.env = env
        self.proc = None
        self.write_config(conf_text)

    def write_config(self, text):
        with open(self.conf_path, "w") as f:
            f.write(text)
        os.chmod(self.conf_path, 0o600)

    @property
    def pid(self):
        return self.proc.pid

    def start(self, wait=True):
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "-c", self.conf_path] + self.args, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        out.close()
        _live.add(self)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"respgate exited with {self.proc.returncode}:\n{self.log()}")
            if self._answers():
                return
            time.sleep(0.02)
        raise RuntimeError(f"respgate not ready after {READY_TIMEOUT}s:\n{self.log()}")

    def _answers(self):
        # Any reply to PING (+PONG, or -NOAUTH with client auth) means the
        # listener is up and a worker is serving.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                return s.recv(64)[:1] in (b"+", b"-")
        except OSError:
            return False

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=STOP_GRACE):
        return self.proc.wait(timeout)

    def stop(self):
        """SIGTERM, wait, SIGKILL if needed. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _live.discard(self)
        return self.proc.returncode

    def client(self, password=None, **kwargs):
        return redis.Redis(host="127.0.0.1", port=self.port, password=password, socket_timeout=10, **kwargs)

    def sanitizer_report(self):
        """What AddressSanitizer, LeakSanitizer or UBSan said in the log
        (the test build has them), or "" for nothing."""
        lines = [line for line in self.log().splitlines()
                 if "Sanitizer" in line or "runtime error:" in line]
        return "\n".join(lines[:20])

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, *exc):
        self.stop()
        report = self.sanitizer_report()
        if report and exc_type is None:
            raise AssertionError(f"respgate's sanitizers reported:\n{report}")
