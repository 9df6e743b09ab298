# tests/harness/single.py - one plain redis-server (no cluster) on 127.0.0.1,
# the reference the command-surface tests compare respgate's answers with:
# the same commands must give the same replies through respgate in front of
# the cluster as on a single Redis.
#
#   with Single(tmpdir) as s: s.client().set("k", "v")
#
# Started on a free port, saves nothing, stopped by its PID (also at
# interpreter exit); never killed by name.

import atexit
import os
import subprocess
import time

import redis

from harness.cluster import HOST, REDIS_SERVER, ClusterError, _tail, _terminate, pick_ports


class Single:
    def __init__(self, basedir, password=None):
        self.dir = os.path.join(basedir, "single")
        self.password = password
        self.port = None
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        atexit.register(self.stop)
        self.port = pick_ports(1)[0]
        logfile = os.path.join(self.dir, "redis.log")
        args = [REDIS_SERVER, "--bind", HOST, "--port", str(self.port), "--dir", self.dir,
                "--logfile", logfile, "--save", "", "--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().info("server")["process_id"] == self.proc.pid:
                    return self
            except redis.RedisError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ClusterError(f"redis-server on {self.port} did not start:\n{_tail(logfile)}")
            time.sleep(0.05)

    def client(self, **kwargs):
        return redis.Redis(host=HOST, port=self.port, password=self.password, socket_timeout=10, **kwargs)

    def stop(self):
        if self.proc:
            _terminate([self.proc])
            self.proc = None
